//! A hand-written fast path for the one shape that matters for throughput: a Binance
//! trade object (fields in any order, unknown scalar fields skipped, strings without
//! escapes), raw or inside a combined-stream envelope.
//!
//! It only *parses*: the fields it collects go through the same `classify` as the
//! serde path, so validation and its errors are shared. Whenever the input is not
//! plainly that shape (escapes, nested unknown values, floats, nulls, duplicate known
//! fields, control replies, trailing garbage, …) it answers `None` and the caller
//! asks serde, so the two paths can only differ in speed (proptest in
//! `super::tests::fast_path`).

use std::borrow::Cow;

use super::Wire;

/// Collects the fields of `text` into `w` (which must start as `Wire::default()`) if
/// it is a plain trade object or a plain combined-stream envelope around one, and
/// answers the JSON of the trade object (the `data` part of an envelope); `None` means
/// "ask serde" (`w` is then partly filled: throw it away). `w` is filled in place, not
/// returned: it is ~200 bytes, and moving it through the calls was 15 % of a decode.
pub(super) fn parse<'a>(text: &'a str, w: &mut Wire<'a>) -> Option<&'a str> {
    let mut p = Parser { text, i: 0 };
    p.ws();
    if p.peek()? != b'{' {
        return None;
    }
    let start = p.i;
    if p.canonical(w).is_some() && p.i == text.len() {
        return Some(text);
    }
    p.i = start;
    *w = Wire::default();
    let json = match p.object(w) {
        Some(()) => text,
        None => {
            p.i = start;
            *w = Wire::default();
            p.envelope(w)?
        }
    };
    p.ws();
    (p.i == text.len()).then_some(json)
}

struct Parser<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.bump()? == c).then_some(())
    }

    /// JSON whitespace only (what serde_json skips), not Unicode spaces.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters (serde rejects the latter).
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let bytes = self.text.as_bytes();
        // Eight bytes at a time to the first byte that ends or breaks a plain string.
        while let Some(chunk) = bytes.get(self.i..self.i + 8) {
            match first_special(chunk) {
                Some(at) => {
                    self.i += at;
                    break;
                }
                None => self.i += 8,
            }
        }
        loop {
            match *bytes.get(self.i)? {
                b'"' => {
                    let s = self.text.get(start..self.i)?;
                    self.i += 1;
                    return Some(s);
                }
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    /// A non-negative integer as serde_json reads a u64: no sign, no leading zero, no
    /// overflow (fraction/exponent fail the delimiter check that follows every value).
    #[inline(always)]
    fn uint(&mut self) -> Option<u64> {
        let b = &self.text.as_bytes()[self.i..];
        // Eight digits at a time (SWAR), then one at a time: up to 19 digits cannot
        // overflow a u64, so only a 20th digit is checked. (A checked multiply per
        // digit was a fifth of a trade's decode.)
        let (mut n, mut v) = (0usize, 0u64);
        while n < 16 {
            match b.get(n..n + 8) {
                Some(chunk) => match eight_digits(chunk) {
                    Some(d) => {
                        v = v * 100_000_000 + d;
                        n += 8;
                    }
                    None => break,
                },
                None => break,
            }
        }
        while n < 19 && b.get(n).is_some_and(u8::is_ascii_digit) {
            v = v * 10 + u64::from(b[n] - b'0');
            n += 1;
        }
        if let Some(c @ b'0'..=b'9') = b.get(n).copied() {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            n += 1;
        }
        if n == 0 || (n > 1 && b[0] == b'0') || b.get(n).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(v)
    }

    #[inline(always)]
    fn literal(&mut self, word: &str) -> Option<()> {
        // `i` is always on a char boundary and `word` is whole characters.
        if self.text.as_bytes()[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    #[inline(always)]
    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal("true").map(|_| true),
            b'f' => self.literal("false").map(|_| false),
            _ => None,
        }
    }

    /// Skips an unknown field's value when it is a plain scalar (string, integer,
    /// boolean, null); anything else goes to serde.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' => {
                self.i += 1;
                self.skip_digits()
            }
            b'0'..=b'9' => self.skip_digits(),
            _ => None,
        }
    }

    fn skip_digits(&mut self) -> Option<()> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - start;
        (n == 1 || (n > 1 && self.text.as_bytes()[start] != b'0')).then_some(())
    }

    /// After a value: `,` (more members) → true, `}` → false.
    fn more(&mut self) -> Option<bool> {
        self.ws();
        match self.bump()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    fn key(&mut self) -> Option<&'a str> {
        self.ws();
        let k = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(k)
    }

    /// Exactly Binance's own layout, `{"e":"trade","E":…,"s":"…","t":…,"p":"…","q":"…",
    /// "T":…,"m":…[,"M":…]}` with no whitespace: the fields are read at their known
    /// places, without parsing or matching keys (about half the cost of `object`).
    /// Anything else answers `None` (with `w` partly filled) and goes to `object`.
    fn canonical(&mut self, w: &mut Wire<'a>) -> Option<()> {
        const TRADE: &str = r#"{"e":"trade","E":"#;
        self.literal(TRADE)?;
        w.e = Some(Cow::Borrowed("trade"));
        w.event_time = Some(self.uint()?);
        self.literal(r#","s":"#)?;
        w.s = Some(Cow::Borrowed(self.string()?));
        self.literal(r#","t":"#)?;
        w.t = Some(self.uint()?);
        self.literal(r#","p":"#)?;
        w.p = Some(Cow::Borrowed(self.string()?));
        self.literal(r#","q":"#)?;
        w.q = Some(Cow::Borrowed(self.string()?));
        self.literal(r#","T":"#)?;
        w.trade_time = Some(self.uint()?);
        self.literal(r#","m":"#)?;
        w.m = Some(self.boolean()?);
        if self.literal(r#","M":"#).is_some() {
            self.boolean()?;
        }
        self.literal("}")
    }

    /// A trade-like object: only the trade fields and unknown scalars. Envelope and
    /// control-reply fields (`stream`, `data`, `id`) go to serde.
    fn object(&mut self, w: &mut Wire<'a>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut seen = 0u8;
        loop {
            let key = self.key()?;
            let bit = match key {
                "e" => 1,
                "E" => 2,
                "s" => 4,
                "t" => 8,
                "p" => 16,
                "q" => 32,
                "T" => 64,
                "m" => 128,
                "stream" | "data" | "id" => return None,
                _ => 0,
            };
            // serde rejects a repeated known field; let it say so.
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match key {
                "e" => w.e = Some(Cow::Borrowed(self.string()?)),
                "E" => w.event_time = Some(self.uint()?),
                "s" => w.s = Some(Cow::Borrowed(self.string()?)),
                "t" => w.t = Some(self.uint()?),
                "p" => w.p = Some(Cow::Borrowed(self.string()?)),
                "q" => w.q = Some(Cow::Borrowed(self.string()?)),
                "T" => w.trade_time = Some(self.uint()?),
                "m" => w.m = Some(self.boolean()?),
                _ => self.skip_scalar()?,
            }
            if !self.more()? {
                return Some(());
            }
        }
    }

    /// `{"stream":"<name>","data":{trade}}` (any order, unknown scalars skipped).
    fn envelope(&mut self, w: &mut Wire<'a>) -> Option<&'a str> {
        self.eat(b'{')?;
        let mut stream_seen = false;
        let mut data: Option<&'a str> = None;
        loop {
            match self.key()? {
                "stream" if !stream_seen => {
                    stream_seen = true;
                    if self.string()? == "!serverShutdown" {
                        return None;
                    }
                }
                "data" if data.is_none() => {
                    let start = self.i;
                    if self.canonical(w).is_none() {
                        self.i = start;
                        *w = Wire::default();
                        self.object(w)?;
                    }
                    data = Some(self.text.get(start..self.i)?);
                }
                "stream" | "data" | "id" | "e" | "E" | "s" | "t" | "p" | "q" | "T" | "m" => {
                    return None
                }
                _ => self.skip_scalar()?,
            }
            if !self.more()? {
                return data;
            }
        }
    }
}

/// The value of eight ASCII digits (`chunk[0]` the most significant), or `None` if any
/// byte is not a digit: the classic SWAR conversion, three multiplies for eight digits.
fn eight_digits(chunk: &[u8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let x = u64::from_le_bytes(chunk.try_into().ok()?);
    // Every byte is 0x30..=0x39: high nibble 3, and still 3 after adding 6.
    if x & HIGH != ZEROS || x.wrapping_add(0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    let x = x - ZEROS;
    let x = x.wrapping_mul(10).wrapping_add(x >> 8);
    let lo = (x & 0x0000_00ff_0000_00ff).wrapping_mul(100 + (1_000_000 << 32));
    let hi = ((x >> 16) & 0x0000_00ff_0000_00ff).wrapping_mul(1 + (10_000 << 32));
    Some(lo.wrapping_add(hi) >> 32)
}

/// Where the first `"`, `\\` or control character of eight bytes is, if any (SWAR: a
/// byte is flagged when it equals one of them or is below 0x20; the lowest flag is exact).
fn first_special(chunk: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes(chunk.try_into().ok()?);
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let flags = zero_in(x ^ (ONES * u64::from(b'"')))
        | zero_in(x ^ (ONES * u64::from(b'\\')))
        | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

#[cfg(test)]
mod tests {
    use super::{eight_digits, first_special, Parser, Wire};

    #[test]
    fn binance_layout_takes_the_canonical_path() {
        let reference = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":3612345678,"p":"67012.01000000","q":"0.00150000","T":1717000000120,"m":true,"M":true}"#;
        let without_m = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"1","q":"2","T":1717000000120,"m":false}"#;
        for text in [reference, without_m] {
            let mut w = Wire::default();
            let mut p = Parser { text, i: 0 };
            assert!(p.canonical(&mut w).is_some(), "{text}");
            assert_eq!(w.s.as_deref(), Some("BTCUSDT"));
        }
        // Another order, or whitespace, is the general path's (still fast, not canonical).
        for text in [
            r#"{"E":1717000000123,"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"2","T":1717000000120,"m":false}"#,
            r#"{"e":"trade", "E":1717000000123,"s":"BTCUSDT","t":1,"p":"1","q":"2","T":1717000000120,"m":false}"#,
        ] {
            let mut p = Parser { text, i: 0 };
            assert!(p.canonical(&mut Wire::default()).is_none(), "{text}");
            assert!(super::parse(text, &mut Wire::default()).is_some(), "{text}");
        }
    }

    #[test]
    fn first_special_finds_the_first_quote_backslash_or_control_byte() {
        let naive = |c: &[u8]| c.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut cases: Vec<[u8; 8]> = vec![*b"BTCUSDT\"", *b"abcdefgh", *b"\"\"\"\"\"\"\"\""];
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut c = *b"ABCDEFGH";
                c[at] = b;
                cases.push(c);
                // A flagged byte before an arbitrary one: the lowest flag must be exact.
                let mut d = [b; 8];
                d[at] = 0x00;
                cases.push(d);
            }
        }
        for c in cases {
            assert_eq!(first_special(&c), naive(&c), "{c:?}");
        }
    }

    #[test]
    fn eight_digits_match_the_plain_conversion() {
        for v in (0..100_000_000u64)
            .step_by(9_973)
            .chain([0, 1, 10_000_000, 99_999_999])
        {
            let s = format!("{v:08}");
            assert_eq!(eight_digits(s.as_bytes()), Some(v), "{s}");
        }
        for bad in ["1234567a", "/2345678", ":2345678", "1234 678", "12345678"] {
            let expect = bad
                .parse::<u64>()
                .ok()
                .filter(|_| bad.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(eight_digits(bad.as_bytes()), expect, "{bad}");
        }
    }
}
