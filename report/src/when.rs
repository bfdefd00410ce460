//! Points in time given on the command line (`--since`, `--until`), in one of three
//! forms: RFC 3339 (`2024-06-01T12:00:00Z`, an offset such as `+02:00`, or a bare date
//! `2024-06-01` meaning its UTC midnight), Unix milliseconds (`1717243200000`), or a
//! duration back from now (`2h`, `90m`, `1d`: humantime's units, as the report's other
//! duration flags take them). Resolved against "now" only when used, so one clock
//! reading serves both flags.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Milliseconds since the Unix epoch.
    At(u64),
    /// This long before now.
    Ago(Duration),
}

impl When {
    pub fn resolve(self, now_ms: u64) -> u64 {
        match self {
            When::At(ms) => ms,
            When::Ago(d) => now_ms.saturating_sub(d.as_millis() as u64),
        }
    }
}

impl FromStr for When {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(When::At)
                .map_err(|_| format!("{s:?} is too large for Unix milliseconds"));
        }
        // A date starts with four digits and a dash; a duration never does.
        if s.len() >= 10 && s.as_bytes()[4] == b'-' {
            return rfc3339_ms(s).map(When::At);
        }
        humantime::parse_duration(s).map(When::Ago).map_err(|_| {
            format!(
                "{s:?} is not a time: give RFC 3339 (2024-06-01T12:00:00Z), Unix milliseconds, \
                 or a duration back from now (2h, 90m, 1d)"
            )
        })
    }
}

fn rfc3339_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 time (e.g. 2024-06-01T12:00:00Z)");
    if !s.is_ascii() {
        return Err(bad());
    }
    let full;
    let (utc, offset_s) = if s.len() == 10 {
        full = format!("{s}T00:00:00Z");
        (full.as_str(), 0i64)
    } else {
        split_offset(s).ok_or_else(bad)?
    };
    let t = humantime::parse_rfc3339_weak(utc).map_err(|_| bad())?;
    let ms = t.duration_since(UNIX_EPOCH).map_err(|_| bad())?.as_millis() as i64;
    u64::try_from(ms - offset_s * 1000).map_err(|_| format!("{s:?} is before 1970"))
}

/// The time without its offset (read as UTC) and the offset in seconds east of UTC;
/// `Z` and no offset at all are UTC. `None` for an offset out of range.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    let Some(at) = s.len().checked_sub(6) else {
        return Some((s, 0));
    };
    let (head, tail) = s.split_at(at);
    let t = tail.as_bytes();
    // `-HH:MM` after the time; a date alone (`2024-06-01`) never gets here.
    if !matches!(t[0], b'+' | b'-') || t[3] != b':' || head.len() < 16 {
        return Some((s, 0));
    }
    let hh: i64 = tail[1..3].parse().ok()?;
    let mm: i64 = tail[4..6].parse().ok()?;
    if hh > 23 || mm > 59 {
        return None;
    }
    let sign = if t[0] == b'+' { 1 } else { -1 };
    Some((head, sign * (hh * 3600 + mm * 60)))
}

/// The last millisecond RFC 3339 can print (9999-12-31T23:59:59.999Z).
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// A time for people: `2024-06-01T12:00:00Z` (Unix ms past year 9999, which a flag may
/// give, as a number: RFC 3339 cannot print it).
pub fn utc(ms: u64) -> String {
    if ms > MAX_RFC3339_MS {
        return format!("{ms} ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339_or_beyond_it_as_numbers() {
        assert_eq!(utc(1_717_243_200_000), "2024-06-01T12:00:00Z");
        assert_eq!(utc(u64::MAX), "18446744073709551615 ms");
    }

    fn at(s: &str) -> u64 {
        match s.parse::<When>().unwrap() {
            When::At(ms) => ms,
            w => panic!("{s}: {w:?}"),
        }
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(at("1717243200000"), 1_717_243_200_000);
        assert_eq!(at("2024-06-01T12:00:00Z"), 1_717_243_200_000);
        assert_eq!(at("2024-06-01 12:00:00"), 1_717_243_200_000);
        assert_eq!(at("2024-06-01T14:00:00+02:00"), 1_717_243_200_000);
        assert_eq!(at("2024-06-01T10:30:00-01:30"), 1_717_243_200_000);
        assert_eq!(at("2024-06-01T12:00:00.250Z"), 1_717_243_200_250);
        assert_eq!(at("2024-06-01"), 1_717_200_000_000);
        let ago: When = "2h".parse().unwrap();
        assert_eq!(ago, When::Ago(Duration::from_secs(7_200)));
        assert_eq!(ago.resolve(10_000_000), 2_800_000);
        assert_eq!("1d".parse::<When>().unwrap().resolve(1), 0);
        assert_eq!(When::At(5).resolve(99), 5);
    }

    #[test]
    fn bad_times_say_which_forms_exist() {
        for bad in [
            "",
            "yesterday",
            "2024-06-01T12:00:00+0é:00",
            "2024-13-01T00:00:00Z",
            "2024-06-01T12:00:00+25:00",
        ] {
            let e = bad.parse::<When>().unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
        assert!("99999999999999999999999".parse::<When>().is_err());
    }
}
