//! Building KPL aggregates (the producer's side of the format in `kpl`).

use super::{md5_many, md5_one, DIGEST_LEN, MAGIC};

/// Builds aggregates. User records keep their order; partition keys are interned.
#[derive(Debug, Default)]
pub struct Aggregator {
    keys: Vec<String>,
    records: Vec<u8>,
    count: usize,
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes the finished aggregate would have if `data` under `key` were added now
    /// (an upper bound: it assumes the key is new).
    pub fn size_with(&self, key: &str, data: &[u8]) -> usize {
        self.size() + field_len(key.len()) + field_len(record_len(self.keys.len() as u64, data))
    }

    /// Size of the finished aggregate (magic + protobuf + digest).
    pub fn size(&self) -> usize {
        let keys: usize = self.keys.iter().map(|k| field_len(k.len())).sum();
        MAGIC.len() + keys + self.records.len() + DIGEST_LEN
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, key: &str, data: &[u8]) {
        let idx = match self.keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key.to_string());
                self.keys.len() - 1
            }
        } as u64;
        put_varint(&mut self.records, (3 << 3) | 2);
        put_varint(&mut self.records, record_len(idx, data) as u64);
        put_varint(&mut self.records, 1 << 3);
        put_varint(&mut self.records, idx);
        put_varint(&mut self.records, (3 << 3) | 2);
        put_varint(&mut self.records, data.len() as u64);
        self.records.extend_from_slice(data);
        self.count += 1;
    }

    /// The finished aggregate; the aggregator is emptied.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.take_framed();
        let digest = md5_one(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        out
    }

    /// Finishes several aggregates (a PutRecords batch's), their digests computed side
    /// by side (`md5_many`); same bytes as `finish` on each.
    pub fn finish_all<'a>(aggs: impl IntoIterator<Item = &'a mut Aggregator>) -> Vec<Vec<u8>> {
        let mut outs: Vec<Vec<u8>> = aggs.into_iter().map(Aggregator::take_framed).collect();
        let digests = {
            let bodies: Vec<&[u8]> = outs.iter().map(|o| &o[MAGIC.len()..]).collect();
            md5_many(&bodies)
        };
        for (out, digest) in outs.iter_mut().zip(digests) {
            out.extend_from_slice(&digest);
        }
        outs
    }

    /// Magic and protobuf body, room left for the digest; the aggregator is emptied.
    fn take_framed(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&MAGIC);
        for k in &self.keys {
            put_varint(&mut out, (1 << 3) | 2);
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
        }
        out.extend_from_slice(&self.records);
        self.keys.clear();
        self.records.clear();
        self.count = 0;
        out
    }
}

fn record_len(idx: u64, data: &[u8]) -> usize {
    1 + varint_len(idx) + field_len(data.len())
}

fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
