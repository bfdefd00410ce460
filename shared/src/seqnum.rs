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
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadSequenceNumber(s.chars().take(140).collect()));
        }
        let trimmed = s.trim_start_matches('0');
        Ok(SequenceNumber(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        }))
    }

    /// As [`SequenceNumber::parse`], from the bytes of a JSON body.
    pub fn parse_bytes(b: &[u8]) -> Result<Self, BadSequenceNumber> {
        match std::str::from_utf8(b) {
            Ok(s) => Self::parse(s),
            Err(_) => Err(BadSequenceNumber(
                String::from_utf8_lossy(&b[..b.len().min(140)]).into_owned(),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    fn rejects_non_numbers() {
        assert!(SequenceNumber::parse("").is_err());
        assert!(SequenceNumber::parse("12a").is_err());
        assert!(SequenceNumber::parse("TRIM_HORIZON").is_err());
        assert!(SequenceNumber::parse(&"1".repeat(129)).is_err());
    }
}
