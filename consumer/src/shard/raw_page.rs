//! A GetRecords answer's records read straight from its JSON body (issue #24: the
//! SDK's response model was the largest share of the consumer's CPU per plain trade —
//! a `String` per field, a `Vec` per record's data, a timestamp parse — of which the
//! readers use two fields). Each record's `Data` is base64-decoded into one buffer for
//! the whole page and its `SequenceNumber` kept; every other field is skipped. The body
//! with the `Records` array emptied is what the SDK then parses for the rest
//! (`NextShardIterator`, `MillisBehindLatest`, `ChildShards`), so those keep the SDK's
//! own handling.
//!
//! Anything unexpected (not JSON, a field of another type, an escape other than `\/`)
//! is an error, and the caller leaves the body to the SDK as before. Pure.

use std::ops::Range;

use tradeflow_shared::seqnum::{BadSequenceNumber, SequenceNumber};

use super::page::RecordParts;

/// The records of one page: their data side by side in `data`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawPage {
    pub data: Vec<u8>,
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Parsed here, once (one allocation a record): a number that does not parse is
    /// the page reader's to report, not a reason to leave the body to the SDK.
    pub sequence_number: Result<SequenceNumber, BadSequenceNumber>,
    /// Where its data is in [`RawPage::data`].
    pub data: Range<usize>,
}

impl RawPage {
    /// Each record's sequence number and data, the numbers moved out.
    pub fn drain(&mut self) -> impl Iterator<Item = RecordParts<'_>> {
        let data = &self.data;
        self.records
            .drain(..)
            .map(move |r| (r.sequence_number, &data[r.data]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GetRecords body not read at byte {at}: {what}")]
pub struct RawError {
    pub at: usize,
    pub what: &'static str,
}

/// The page's records, and the body with its `Records` array emptied.
pub fn parse(body: &[u8]) -> Result<(RawPage, Vec<u8>), RawError> {
    let mut p = Parser { b: body, i: 0 };
    let mut page = RawPage {
        // Base64 is 4 bytes for 3: the data fits in three quarters of the body, so it is
        // never regrown (a copy, and fresh pages faulted in, per doubling). The rest of
        // the reservation is address space only, never touched.
        data: Vec::with_capacity(body.len() / 4 * 3),
        records: Vec::new(),
    };
    let mut span = None;
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if !p.eat(b'}') {
        loop {
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            if key == b"Records" {
                if span.is_some() {
                    return Err(p.err("Records twice"));
                }
                let start = p.i;
                p.records(&mut page)?;
                span = Some(start..p.i);
            } else {
                p.skip_value(0)?;
            }
            p.ws();
            if p.eat(b',') {
                p.ws();
                continue;
            }
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != body.len() {
        return Err(p.err("bytes after the object"));
    }
    let span = span.ok_or_else(|| p.err("no Records"))?;
    let mut stripped = Vec::with_capacity(body.len() - span.len() + 2);
    stripped.extend_from_slice(&body[..span.start]);
    stripped.extend_from_slice(b"[]");
    stripped.extend_from_slice(&body[span.end..]);
    Ok((page, stripped))
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// Nesting deeper than this is not a GetRecords answer.
const MAX_DEPTH: usize = 32;

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> RawError {
        RawError { at: self.i, what }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), RawError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err("unexpected byte"))
        }
    }

    /// A string's raw bytes between the quotes, and whether it holds an escape.
    fn raw_string(&mut self) -> Result<(&'a [u8], bool), RawError> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.i..];
            // SIMD search: a page's strings are mostly base64, up to ~1 MiB each.
            let Some(n) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(self.err("unterminated string"));
            };
            self.i += n;
            if self.b[self.i] == b'"' {
                let s = &self.b[start..self.i];
                self.i += 1;
                return Ok((s, escaped));
            }
            escaped = true;
            self.i += 2; // the backslash and the escaped byte
            if self.i > self.b.len() {
                return Err(self.err("unterminated escape"));
            }
        }
    }

    /// A string that must not need unescaping (keys, sequence numbers); `\/` is the
    /// one escape a server may add to base64 and is undone where data is decoded.
    fn string(&mut self) -> Result<&'a [u8], RawError> {
        match self.raw_string()? {
            (s, false) => Ok(s),
            (_, true) => Err(self.err("escape in a key or sequence number")),
        }
    }

    fn records(&mut self, page: &mut RawPage) -> Result<(), RawError> {
        self.expect(b'[')?;
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.record(page)?;
            self.ws();
            if self.eat(b',') {
                self.ws();
                continue;
            }
            return self.expect(b']');
        }
    }

    fn record(&mut self, page: &mut RawPage) -> Result<(), RawError> {
        self.expect(b'{')?;
        let (mut seq, mut data) = (None, None);
        self.ws();
        if !self.eat(b'}') {
            loop {
                let key = self.string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
                match key {
                    b"Data" if data.is_none() => {
                        let (s, escaped) = self.raw_string()?;
                        data = Some(self.decode_into(&mut page.data, s, escaped)?);
                    }
                    b"SequenceNumber" if seq.is_none() => {
                        seq = Some(SequenceNumber::parse_bytes(self.string()?));
                    }
                    b"Data" | b"SequenceNumber" => return Err(self.err("field twice")),
                    _ => self.skip_value(0)?,
                }
                self.ws();
                if self.eat(b',') {
                    self.ws();
                    continue;
                }
                self.expect(b'}')?;
                break;
            }
        }
        match (seq, data) {
            (Some(sequence_number), Some(data)) => {
                page.records.push(RawRecord {
                    sequence_number,
                    data,
                });
                Ok(())
            }
            _ => Err(self.err("a record without Data or SequenceNumber")),
        }
    }

    /// Base64 `s` decoded onto the end of `out`; its range there.
    fn decode_into(
        &self,
        out: &mut Vec<u8>,
        s: &[u8],
        escaped: bool,
    ) -> Result<Range<usize>, RawError> {
        let unescaped;
        let s = if escaped {
            // Only `\/` can appear in base64; anything else is not a record's data.
            let mut v = Vec::with_capacity(s.len());
            let mut it = s.iter();
            while let Some(&c) = it.next() {
                if c == b'\\' {
                    match it.next() {
                        Some(b'/') => v.push(b'/'),
                        _ => return Err(self.err("escape in Data")),
                    }
                } else {
                    v.push(c);
                }
            }
            unescaped = v;
            &unescaped[..]
        } else {
            s
        };
        let start = out.len();
        let n = base64_simd::STANDARD
            .decoded_length(s)
            .map_err(|_| self.err("Data is not base64"))?;
        out.resize(start + n, 0);
        let written = base64_simd::STANDARD
            .decode(s, base64_simd::Out::from_slice(&mut out[start..]))
            .map_err(|_| self.err("Data is not base64"))?
            .len();
        out.truncate(start + written);
        Ok(start..start + written)
    }

    /// Any JSON value, passed over.
    fn skip_value(&mut self, depth: usize) -> Result<(), RawError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        match self.b.get(self.i) {
            Some(b'"') => self.raw_string().map(|_| ()),
            Some(&open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.raw_string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    if self.eat(b',') {
                        self.ws();
                        continue;
                    }
                    return self.expect(close);
                }
            }
            Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b't' | b'f' | b'n') => {
                let n = self.b[self.i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')))
                    .unwrap_or(self.b.len() - self.i);
                self.i += n;
                Ok(())
            }
            _ => Err(self.err("not a JSON value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        base64_simd::STANDARD.encode_to_string(data)
    }

    #[test]
    fn records_and_the_body_without_them() {
        let body = format!(
            r#"{{"MillisBehindLatest":0, "Records":[{{"ApproximateArrivalTimestamp":1.7E9,"Data":"{}","PartitionKey":"k","SequenceNumber":"4960","EncryptionType":"NONE"}},
              {{"SequenceNumber":"4961","Data":"{}","Nested":{{"a":[1,{{"b":"\""}}]}}}}],"NextShardIterator":"it-1","ChildShards":[]}}"#,
            b64(b"hello"),
            b64(&[0xff, 0, 7])
        );
        let (mut page, stripped) = parse(body.as_bytes()).unwrap();
        let got: Vec<(String, &[u8])> = page
            .drain()
            .map(|(s, d)| (s.unwrap().to_string(), d))
            .collect();
        assert_eq!(
            got,
            [
                ("4960".into(), &b"hello"[..]),
                ("4961".into(), &[0xff, 0, 7][..])
            ]
        );
        let v: serde_json::Value = serde_json::from_slice(&stripped).unwrap();
        assert_eq!(v["Records"], serde_json::json!([]));
        assert_eq!(v["NextShardIterator"], "it-1");
        assert_eq!(v["MillisBehindLatest"], 0);
    }

    #[test]
    fn an_escaped_slash_in_data_and_an_empty_page() {
        let data = [0xfb_u8, 0xff, 0xbf]; // "+/+/" in base64
        let escaped = b64(&data).replace('/', "\\/");
        let body = format!(r#"{{"Records":[{{"Data":"{escaped}","SequenceNumber":"1"}}]}}"#);
        let (mut page, _) = parse(body.as_bytes()).unwrap();
        assert_eq!(page.drain().next().unwrap().1, &data);
        let (page, stripped) = parse(br#"{"Records":[],"NextShardIterator":null}"#).unwrap();
        assert!(page.records.is_empty());
        assert_eq!(stripped, br#"{"Records":[],"NextShardIterator":null}"#);
    }

    #[test]
    fn a_sequence_number_that_does_not_parse_is_kept_as_its_error() {
        let body = format!(
            r#"{{"Records":[{{"Data":"{}","SequenceNumber":"12x"}},{{"Data":"{}","SequenceNumber":"007"}}]}}"#,
            b64(b"a"),
            b64(b"b")
        );
        let (mut page, _) = parse(body.as_bytes()).unwrap();
        let got: Vec<_> = page.drain().collect();
        assert_eq!(got[0].0, Err(BadSequenceNumber("12x".into())));
        assert_eq!(got[1].0.as_ref().unwrap().as_str(), "7");
        assert!(page.records.is_empty());
    }

    #[test]
    fn anything_unexpected_is_an_error_for_the_sdk_to_handle() {
        for body in [
            &br#"{"Records":[{"Data":"aGk=","SequenceNumber":"1"}]"#[..], // cut short
            br#"{"Records":[{"Data":"aGk=","SequenceNumber":"1"}],"#,
            br#"{"Records":[{"Data":"a\u0041==","SequenceNumber":"1"}]}"#,
            br#"{"Records":[{"Data":"not base64!","SequenceNumber":"1"}]}"#,
            br#"{"Records":[{"SequenceNumber":"1"}]}"#,
            br#"{"Records":[{"Data":"aGk=","SequenceNumber":1}]}"#,
            br#"{"Records":[{"Data":"aGk=","Data":"aGk=","SequenceNumber":"1"}]}"#,
            br#"{"NextShardIterator":"x"}"#,
            br#"{"Records":[],"Records":[]}"#,
            b"<html>",
            b"",
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
