//! Cuts bytes read from a file into lines, holding at most one line's worth: a line
//! longer than the limit (a binary file, a log without newlines, a corrupt capture) is
//! reported as [`Line::TooLong`] and its bytes are skipped up to the next newline, so
//! a file source never buffers more than the limit whatever it reads.

/// The longest line a file source accepts. A Binance trade event is under 1 KiB; a
/// combined-stream envelope a little more.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n` (bytes as read: not checked to be UTF-8).
    Bytes(Vec<u8>),
    /// A line over the limit, skipped; `bytes` is its length without the `\n`.
    TooLong { bytes: u64 },
}

#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    partial: Vec<u8>,
    /// Bytes so far of an over-long line being skipped.
    skipping: Option<u64>,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max,
            partial: Vec::new(),
            skipping: None,
        }
    }

    /// Bytes held for the line not yet complete (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Forgets the incomplete line (the file was rotated or truncated under it).
    pub fn clear(&mut self) {
        self.partial.clear();
        self.skipping = None;
    }

    /// Takes `data`; every line it completes goes to `out`, in order.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let chunk = &data[..nl.unwrap_or(data.len())];
            if let Some(n) = self.skipping.as_mut() {
                *n += chunk.len() as u64;
            } else if self.partial.len() + chunk.len() > self.max {
                self.skipping = Some((self.partial.len() + chunk.len()) as u64);
                self.partial = Vec::new(); // gives the memory back, not just the length
            } else {
                self.partial.extend_from_slice(chunk);
            }
            let Some(i) = nl else { return };
            out.push(self.take());
            data = &data[i + 1..];
        }
    }

    /// The file ended: its last line, if it had no `\n`.
    pub fn finish(&mut self) -> Option<Line> {
        (self.skipping.is_some() || !self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        match self.skipping.take() {
            Some(bytes) => Line::TooLong { bytes },
            None => Line::Bytes(std::mem::take(&mut self.partial)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, parts: &[&[u8]]) -> (Vec<Line>, Option<Line>) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for p in parts {
            s.push(p, &mut out);
            assert!(s.buffered() <= max);
        }
        (out, s.finish())
    }

    fn b(s: &str) -> Line {
        Line::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_across_reads() {
        let (out, last) = split(16, &[b"ab", b"c\nde\n\nf", b"g\nh"]);
        assert_eq!(out, [b("abc"), b("de"), b(""), b("fg")]);
        assert_eq!(last, Some(b("h")));
        assert_eq!(split(16, &[b"x\n"]).1, None);
    }

    #[test]
    fn an_over_long_line_is_skipped_to_its_newline_and_never_held() {
        // Exactly the limit passes; one more byte is too long, however it arrives.
        let (out, _) = split(4, &[b"abcd\nabcde\nab", b"cde", b"f\nok\n"]);
        assert_eq!(
            out,
            [
                b("abcd"),
                Line::TooLong { bytes: 5 },
                Line::TooLong { bytes: 6 },
                b("ok")
            ]
        );
        // Megabytes without a newline: nothing held, one report at the newline.
        let mut s = LineSplitter::new(1024);
        let mut out = Vec::new();
        let junk = vec![0xffu8; 64 * 1024];
        for _ in 0..160 {
            s.push(&junk, &mut out);
            assert!(out.is_empty());
            assert_eq!(s.buffered(), 0);
        }
        s.push(b"\n{}\n", &mut out);
        assert_eq!(
            out,
            [
                Line::TooLong {
                    bytes: 160 * 64 * 1024
                },
                b("{}")
            ]
        );
        // A file ending inside an over-long line.
        assert_eq!(
            split(2, &[b"abc"]),
            (vec![], Some(Line::TooLong { bytes: 3 }))
        );
    }

    #[test]
    fn clear_forgets_the_incomplete_line() {
        let mut s = LineSplitter::new(4);
        let mut out = Vec::new();
        s.push(b"abcdef", &mut out);
        s.clear();
        s.push(b"xy\n", &mut out);
        assert_eq!(out, [b("xy")]);
    }
}
