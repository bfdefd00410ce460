//! Kinesis sequence numbers: decimal strings of up to 128 digits. They are compared as
//! big integers (shorter is smaller, then lexically), never parsed into floats or i64.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Shared text: every user record of a KPL aggregate carries its record's number, so a
/// clone must not allocate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sequence number: {0:?}")]
pub struct BadSequenceNumber(pub String);

impl SequenceNumber {
    pub fn parse(s: &str) -> Result<Self, BadSequenceNumber> {
        Self::parse_bytes(s.as_bytes())
    }

    /// As [`SequenceNumber::parse`], from the bytes of a JSON body (the lean reader
    /// parses one per plain record: its digits are checked eight at a time).
    pub fn parse_bytes(b: &[u8]) -> Result<Self, BadSequenceNumber> {
        if b.is_empty() || b.len() > 128 || !all_digits(b) {
            return Err(BadSequenceNumber(
                String::from_utf8_lossy(b).chars().take(140).collect(),
            ));
        }
        let start = b.iter().position(|&c| c != b'0').unwrap_or(b.len());
        let digits = if start == b.len() {
            "0"
        } else {
            std::str::from_utf8(&b[start..]).expect("ASCII digits are UTF-8")
        };
        Ok(SequenceNumber(digits.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether every byte is an ASCII digit, eight at a time: a byte is a digit iff its high
/// nibble is 3 and adding 6 keeps it 3 (0x30–0x39; a byte of 0x3a–0x3f carries into 4).
fn all_digits(b: &[u8]) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    const SIXES: u64 = 0x0606_0606_0606_0606;
    let (words, rest) = b.as_chunks::<8>();
    words.iter().all(|w| {
        let x = u64::from_le_bytes(*w);
        // Every byte is 0x3_ before the add, so it cannot carry into the next one.
        x & HIGH == THREES && x.wrapping_add(SIXES) & HIGH == THREES
    }) && rest.iter().all(u8::is_ascii_digit)
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

/// A position inside a shard: a record's sequence number and, for KPL aggregates, the
/// index of the user record inside it. Ordered lexicographically on (sequence, sub).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub seq: SequenceNumber,
    pub sub: u64,
}

impl Position {
    pub fn new(seq: SequenceNumber, sub: u64) -> Self {
        Position { seq, sub }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.seq, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> SequenceNumber {
        SequenceNumber::parse(x).unwrap()
    }

    #[test]
    fn compares_as_big_integers() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692538361571095921575989136588899";
        assert!(s(a) < s(b));
        assert!(s("9") < s("10"));
        assert!(s("0009") == s("9"));
        // Would be equal as f64.
        assert!(s("12345678901234567890123") < s("12345678901234567890124"));
    }

    #[test]
    fn positions_order_by_sub_within_a_record() {
        let p = |q: &str, sub| Position::new(s(q), sub);
        assert!(p("5", 3) < p("5", 4));
        assert!(p("5", 900) < p("6", 0));
    }

    #[test]
    fn digits_eight_at_a_time_equal_one_at_a_time() {
        // Every byte value at every place of a word, and the bytes around '0'..='9'.
        for len in [1, 7, 8, 9, 16, 56, 57] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut b = vec![b'7'; len];
                    b[at] = byte;
                    assert_eq!(
                        all_digits(&b),
                        byte.is_ascii_digit(),
                        "{byte:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(all_digits(b""));
    }

    #[test]
    fn bytes_and_text_parse_alike() {
        for x in [
            "0",
            "000",
            "0007",
            "49590338271490256608559692538361571095921575989136588898",
        ] {
            assert_eq!(
                SequenceNumber::parse_bytes(x.as_bytes()),
                SequenceNumber::parse(x)
            );
        }
        assert_eq!(s("000").as_str(), "0");
        assert_eq!(s("0007").as_str(), "7");
        let bad = SequenceNumber::parse_bytes(b"12\xff").unwrap_err();
        assert!(bad.0.starts_with("12"));
    }

    #[test]
    fn rejects_non_numbers() {
        assert!(SequenceNumber::parse("").is_err());
        assert!(SequenceNumber::parse("12a").is_err());
        assert!(SequenceNumber::parse("TRIM_HORIZON").is_err());
        assert!(SequenceNumber::parse(&"1".repeat(129)).is_err());
    }
}
