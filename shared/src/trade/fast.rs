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

/// Collects the fields of `text` if it is a plain trade object or a plain
/// combined-stream envelope around one; `None` means "ask serde". The second element
/// is the JSON of the trade object (the `data` part of an envelope).
pub(super) fn parse(text: &str) -> Option<(Wire<'_>, &str)> {
    let mut p = Parser { text, i: 0 };
    p.ws();
    if p.peek()? != b'{' {
        return None;
    }
    let start = p.i;
    let (wire, json) = match p.object() {
        Some(w) => (w, text),
        None => {
            p.i = start;
            p.envelope()?
        }
    };
    p.ws();
    (p.i == text.len()).then_some((wire, json))
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
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let bytes = self.text.as_bytes();
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
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 || (n > 1 && self.text.as_bytes()[start] == b'0') {
            return None;
        }
        Some(v)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        if self.text.get(self.i..)?.starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

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

    /// A trade-like object: only the trade fields and unknown scalars. Envelope and
    /// control-reply fields (`stream`, `data`, `id`) go to serde.
    fn object(&mut self) -> Option<Wire<'a>> {
        self.eat(b'{')?;
        let mut w = Wire::default();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(w);
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
                return Some(w);
            }
        }
    }

    /// `{"stream":"<name>","data":{trade}}` (any order, unknown scalars skipped).
    fn envelope(&mut self) -> Option<(Wire<'a>, &'a str)> {
        self.eat(b'{')?;
        let mut stream_seen = false;
        let mut data: Option<(Wire<'a>, &'a str)> = None;
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
                    let w = self.object()?;
                    data = Some((w, self.text.get(start..self.i)?));
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
