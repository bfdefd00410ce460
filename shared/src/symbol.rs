//! A trading pair's name, validated once at decode time and kept inline (no allocation
//! per trade). The same validation protects Redis keys: a symbol never contains spaces,
//! control characters, `*`, `?`, braces, `:` or anything else that could break a key,
//! a glob or a line-oriented reader.

use std::fmt;

/// Longest accepted symbol in bytes. Binance spot symbols are far shorter; newer ones
/// may contain non-ASCII letters (e.g. Chinese names), so the limit is in UTF-8 bytes.
pub const MAX_SYMBOL_BYTES: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_SYMBOL_BYTES],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("empty symbol")]
    Empty,
    #[error("symbol longer than {MAX_SYMBOL_BYTES} bytes")]
    TooLong,
    #[error("symbol has a character that is not an upper-case letter or digit")]
    BadChar,
}

impl Symbol {
    /// Accepts letters and digits only, no ASCII lower case (Binance sends `s` upper case).
    pub fn new(s: &str) -> Result<Self, SymbolError> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        if s.len() > MAX_SYMBOL_BYTES {
            return Err(SymbolError::TooLong);
        }
        // Nearly every symbol is A-Z and 0-9: checked while copying, in one pass (for
        // ASCII, "alphanumeric, not lower case" is exactly that); Unicode rules only
        // for a symbol with another byte.
        let mut bytes = [0u8; MAX_SYMBOL_BYTES];
        let mut plain = true;
        for (to, &b) in bytes.iter_mut().zip(s.as_bytes()) {
            *to = b;
            plain &= b.is_ascii_uppercase() || b.is_ascii_digit();
        }
        let ok = plain
            || (!s.is_ascii()
                && s.chars()
                    .all(|c| c.is_alphanumeric() && !c.is_lowercase() && !c.is_control()));
        if !ok {
            return Err(SymbolError::BadChar);
        }
        Ok(Symbol {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Built only from a &str in `new`, so always valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

/// Hashes the used bytes only (not the 32-byte array): symbols key the hot per-trade
/// maps. Consistent with `Eq`: equal symbols have equal used bytes.
impl std::hash::Hash for Symbol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.bytes[..self.len as usize]);
        state.write_u8(0xff);
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_symbols() {
        for s in ["BTCUSDT", "1000SATSUSDT", "币安人生USDT", "ETHBTC"] {
            assert_eq!(Symbol::new(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn rejects_key_breakers() {
        for s in [
            "",
            "BTC USDT",
            "BTC\nUSDT",
            "BTC*",
            "{BTC}",
            "btcusdt",
            "A:B",
            "BTC\u{0}",
        ] {
            assert!(Symbol::new(s).is_err(), "{s:?} accepted");
        }
        assert_eq!(Symbol::new(&"A".repeat(10_000)), Err(SymbolError::TooLong));
    }

    /// The ASCII fast path accepts exactly what the Unicode rule accepts.
    #[test]
    fn ascii_fast_path_matches_the_unicode_rule() {
        for b in 0u8..=0x7f {
            let c = b as char;
            let unicode = c.is_alphanumeric() && !c.is_lowercase() && !c.is_control();
            let s = format!("AB{c}9");
            assert_eq!(Symbol::new(&s).is_ok(), unicode, "{b:#x}");
        }
    }
}
