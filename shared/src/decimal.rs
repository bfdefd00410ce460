//! Exact decimal amounts. Binance sends prices and quantities as decimal strings with at
//! most 8 fractional digits, so a value is kept as an integer count of 1e-8 units and a
//! price × quantity as an integer count of 1e-16 units. No floating point anywhere.

use std::fmt;

/// Fractional digits of a Binance price or quantity.
pub const SCALE: u32 = 8;
/// 10^SCALE.
pub const ONE: u64 = 100_000_000;

/// A non-negative decimal with exactly 8 fractional digits, stored as units of 1e-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed8(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("empty decimal")]
    Empty,
    #[error("invalid character in decimal")]
    InvalidChar,
    #[error("more than 8 fractional digits")]
    TooPrecise,
    #[error("decimal too large")]
    Overflow,
}

impl Fixed8 {
    /// Parses `"67012.01000000"`, `"0.0015"`, `"12"`. Rejects signs, exponents, spaces,
    /// more than 8 fractional digits (never rounds: rounding would make sums inexact).
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(DecimalError::Empty);
        }
        let (int_part, frac_part) = match b.iter().position(|&c| c == b'.') {
            Some(dot) => (&b[..dot], &b[dot + 1..]),
            None => (b, &b[..0]),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DecimalError::Empty);
        }
        // Trailing zeros beyond 8 digits are harmless; anything else would need rounding.
        let mut frac_digits = frac_part.len();
        while frac_digits > SCALE as usize && frac_part[frac_digits - 1] == b'0' {
            frac_digits -= 1;
        }
        if frac_digits > SCALE as usize {
            return Err(DecimalError::TooPrecise);
        }
        let mut units: u64 = 0;
        for &c in int_part {
            let d = digit(c)?;
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(d))
                .ok_or(DecimalError::Overflow)?;
        }
        let mut frac: u64 = 0;
        for &c in &frac_part[..frac_digits] {
            frac = frac * 10 + digit(c)?;
        }
        for &c in &frac_part[frac_digits..] {
            digit(c)?;
        }
        frac *= 10u64.pow(SCALE - frac_digits as u32);
        units
            .checked_mul(ONE)
            .and_then(|u| u.checked_add(frac))
            .map(Fixed8)
            .ok_or(DecimalError::Overflow)
    }

    pub fn units(self) -> u64 {
        self.0
    }

    /// Exact product in units of 1e-16 (cannot overflow: u64 × u64 fits u128).
    pub fn times(self, other: Fixed8) -> u128 {
        self.0 as u128 * other.0 as u128
    }
}

fn digit(c: u8) -> Result<u64, DecimalError> {
    if c.is_ascii_digit() {
        Ok((c - b'0') as u64)
    } else {
        Err(DecimalError::InvalidChar)
    }
}

impl Fixed8 {
    /// Appends the same text as `Display` (`int.8 digits`), without core::fmt.
    pub fn push_to(&self, out: &mut String) {
        let mut buf = itoa::Buffer::new();
        out.push_str(buf.format(self.0 / ONE));
        out.push('.');
        let frac = buf.format(self.0 % ONE);
        out.extend(std::iter::repeat_n('0', 8 - frac.len()));
        out.push_str(frac);
    }
}

impl fmt::Display for Fixed8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / ONE, self.0 % ONE)
    }
}

/// Formats an integer count of 10^-scale units as a plain decimal string with exactly
/// `scale` fractional digits: `format_scaled(1_500, 3) == "1.500"`.
pub fn format_scaled(units: u128, scale: u32) -> String {
    if scale == 0 {
        return units.to_string();
    }
    let pow = 10u128.pow(scale);
    format!(
        "{}.{:0width$}",
        units / pow,
        units % pow,
        width = scale as usize
    )
}

/// Adds two non-negative decimal strings of any length exactly (the form Redis holds
/// totals in). Both must have the same number of fractional digits. Used by tests and
/// readers to check sums that may exceed u128.
pub fn add_decimal_strings(a: &str, b: &str) -> Option<String> {
    let (ai, af) = a.split_once('.').unwrap_or((a, ""));
    let (bi, bf) = b.split_once('.').unwrap_or((b, ""));
    if af.len() != bf.len() {
        return None;
    }
    let digits_a: Vec<u8> = ai.bytes().chain(af.bytes()).collect();
    let digits_b: Vec<u8> = bi.bytes().chain(bf.bytes()).collect();
    if !digits_a.iter().chain(&digits_b).all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits_a.len().max(digits_b.len());
    let mut out = Vec::with_capacity(n + 1);
    let mut carry = 0u8;
    for i in 0..n {
        let da = digits_a
            .len()
            .checked_sub(i + 1)
            .map_or(0, |j| digits_a[j] - b'0');
        let db = digits_b
            .len()
            .checked_sub(i + 1)
            .map_or(0, |j| digits_b[j] - b'0');
        let s = da + db + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    let frac = af.len();
    let split = out.len() - frac;
    let int = std::str::from_utf8(&out[..split])
        .ok()?
        .trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac == 0 {
        Some(int.to_string())
    } else {
        Some(format!(
            "{}.{}",
            int,
            std::str::from_utf8(&out[split..]).ok()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binance_strings() {
        assert_eq!(
            Fixed8::parse("67012.01000000").unwrap().0,
            6_701_201_000_000
        );
        assert_eq!(Fixed8::parse("0.00150000").unwrap().0, 150_000);
        assert_eq!(Fixed8::parse("12").unwrap().0, 1_200_000_000);
        assert_eq!(Fixed8::parse(".5").unwrap().0, 50_000_000);
        assert_eq!(Fixed8::parse("1.").unwrap().0, 100_000_000);
        assert_eq!(Fixed8::parse("0.123456780000").unwrap().0, 12_345_678);
    }

    #[test]
    fn rejects_what_would_be_inexact_or_invalid() {
        assert_eq!(Fixed8::parse(""), Err(DecimalError::Empty));
        assert_eq!(Fixed8::parse("."), Err(DecimalError::Empty));
        assert_eq!(Fixed8::parse("-1"), Err(DecimalError::InvalidChar));
        assert_eq!(Fixed8::parse("1e5"), Err(DecimalError::InvalidChar));
        assert_eq!(Fixed8::parse(" 1"), Err(DecimalError::InvalidChar));
        assert_eq!(Fixed8::parse("0.123456789"), Err(DecimalError::TooPrecise));
        assert_eq!(
            Fixed8::parse("99999999999999999999"),
            Err(DecimalError::Overflow)
        );
        assert_eq!(Fixed8::parse("1.2.3"), Err(DecimalError::InvalidChar));
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(Fixed8(150_000).to_string(), "0.00150000");
        assert_eq!(format_scaled(1_500, 3), "1.500");
        assert_eq!(format_scaled(7, 0), "7");
        let q = Fixed8::parse("67012.01")
            .unwrap()
            .times(Fixed8::parse("0.0015").unwrap());
        assert_eq!(format_scaled(q, 16), "100.5180150000000000");
    }

    #[test]
    fn adds_decimal_strings_without_float_drift() {
        assert_eq!(add_decimal_strings("1000.0", "0.1").unwrap(), "1000.1");
        assert_eq!(
            add_decimal_strings("99999999999999999999999999999999999999999.99", "0.01").unwrap(),
            "100000000000000000000000000000000000000000.00"
        );
        assert_eq!(add_decimal_strings("0", "0").unwrap(), "0");
        assert!(add_decimal_strings("1.0", "1.00").is_none());
    }
}
