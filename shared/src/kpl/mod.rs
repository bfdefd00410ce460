//! The KPL aggregated-record format: magic `F3 89 9A C2` ‖ protobuf `AggregatedRecord`
//! ‖ MD5(protobuf). Written by hand (three small messages) to avoid a protobuf build
//! step; compatible with the reference `aws_kinesis_agg` libraries.
//!
//! Decoding never panics on arbitrary bytes. Data without the magic is one plain
//! record ([`Check::Plain`]). Data with the magic that is too short or fails its digest
//! is [`Check::Broken`], and a verified aggregate whose protobuf is malformed is an
//! error from [`Verified::records`]: the consumer keeps either aside as one poison
//! record (dead-lettered, never counted) rather than reading it as a plain record, as
//! the KCL would — its bytes are not a trade either way, and a bad digest is how
//! corruption is told from data.

use md5::{Digest, Md5};

mod aggregator;
mod md5_lanes;
pub use aggregator::Aggregator;
pub use md5_lanes::{md5_many, side_by_side_available};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("no KPL magic")]
    NoMagic,
    #[error("too short for a KPL aggregate")]
    TooShort,
    #[error("MD5 digest mismatch")]
    BadDigest,
    #[error("malformed protobuf: {0}")]
    BadProtobuf(&'static str),
}

/// Is this data meant to be an aggregate (starts with the magic)?
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// What a Kinesis record's data is, once its digest has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<'a> {
    /// No KPL magic: one plain user record.
    Plain,
    /// Magic and a matching digest: an aggregate to split.
    Aggregate(Verified<'a>),
    /// Magic, but too short or a wrong digest.
    Broken(AggregateError),
}

/// An aggregate whose digest matched. Only `check`/`check_many` make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    body: &'a [u8],
}

/// Checks one record's data.
pub fn check(data: &[u8]) -> Check<'_> {
    check_with(data, md5_one)
}

/// Checks the records of a page (a GetRecords answer, a fan-out event) together: their
/// digests are computed side by side (see `md5_lanes`), several times faster than one
/// by one. Same answers as `check` on each.
pub fn check_many<'a>(datas: &[&'a [u8]]) -> Vec<Check<'a>> {
    let bodies: Vec<&[u8]> = datas.iter().filter_map(|d| framed_body(d).ok()).collect();
    let mut digests = md5_many(&bodies).into_iter();
    datas
        .iter()
        .map(|d| {
            check_with(d, |_| {
                digests
                    .next()
                    .expect("one digest for every framed body, in order")
            })
        })
        .collect()
}

/// The protobuf body between magic and digest, if the data has that frame.
fn framed_body(data: &[u8]) -> Result<&[u8], AggregateError> {
    if !has_magic(data) {
        return Err(AggregateError::NoMagic);
    }
    if data.len() < MAGIC.len() + DIGEST_LEN {
        return Err(AggregateError::TooShort);
    }
    Ok(&data[MAGIC.len()..data.len() - DIGEST_LEN])
}

fn check_with<'a>(data: &'a [u8], digest_of: impl FnOnce(&[u8]) -> [u8; 16]) -> Check<'a> {
    match framed_body(data) {
        Err(AggregateError::NoMagic) => Check::Plain,
        Err(e) => Check::Broken(e),
        Ok(body) => {
            if digest_of(body) == data[data.len() - DIGEST_LEN..] {
                Check::Aggregate(Verified { body })
            } else {
                Check::Broken(AggregateError::BadDigest)
            }
        }
    }
}

fn md5_one(body: &[u8]) -> [u8; 16] {
    Md5::digest(body).into()
}

/// Splits an aggregate into its user records, in order (the index is the sub-sequence
/// number).
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord<'_>>, AggregateError> {
    match check(data) {
        Check::Plain => Err(AggregateError::NoMagic),
        Check::Broken(e) => Err(e),
        Check::Aggregate(v) => v.records(),
    }
}

impl<'a> Verified<'a> {
    /// The user records, in order (the index is the sub-sequence number).
    pub fn records(&self) -> Result<Vec<UserRecord<'a>>, AggregateError> {
        let mut pks: Vec<&str> = Vec::new();
        let mut ehks: Vec<&str> = Vec::new();
        let mut raw: Vec<(u64, Option<u64>, &[u8])> = Vec::new();
        let mut r = Reader::new(self.body);
        while !r.done() {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, 2) => pks.push(r.string()?),
                (2, 2) => ehks.push(r.string()?),
                (3, 2) => raw.push(parse_record(r.bytes()?)?),
                _ => r.skip(wire)?,
            }
        }
        raw.into_iter()
            .map(|(pk, ehk, data)| {
                let partition_key = *pks.get(pk as usize).ok_or(AggregateError::BadProtobuf(
                    "partition key index out of range",
                ))?;
                let explicit_hash_key = match ehk {
                    Some(i) => Some(
                        *ehks
                            .get(i as usize)
                            .ok_or(AggregateError::BadProtobuf("hash key index out of range"))?,
                    ),
                    None => None,
                };
                Ok(UserRecord {
                    partition_key,
                    explicit_hash_key,
                    data,
                })
            })
            .collect()
    }
}

impl<'a> Verified<'a> {
    /// Each user record's data in order, to `f`, in one pass and without collecting
    /// (the consumer's path: it needs the data only). The aggregate is checked as
    /// [`Verified::records`] checks it, but the key tables may follow the records, so
    /// an index out of range is known only at the end: on `Err` the caller drops what
    /// `f` was given. `Ok` is the number of records.
    pub fn each_data(&self, mut f: impl FnMut(&'a [u8])) -> Result<usize, AggregateError> {
        let (mut pks, mut ehks, mut n) = (0u64, 0u64, 0usize);
        // The first record whose index is out of range for the tables as they end up:
        // kept as the highest index seen (one is out of range iff the highest is).
        let (mut top_pk, mut top_ehk) = (None::<u64>, None::<u64>);
        let mut r = Reader::new(self.body);
        while !r.done() {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, 2) => {
                    r.string()?;
                    pks += 1;
                }
                (2, 2) => {
                    r.string()?;
                    ehks += 1;
                }
                (3, 2) => {
                    let (pk, ehk, data) = parse_record(r.bytes()?)?;
                    top_pk = top_pk.max(Some(pk));
                    top_ehk = top_ehk.max(ehk);
                    f(data);
                    n += 1;
                }
                _ => r.skip(wire)?,
            }
        }
        if top_pk.is_some_and(|i| i >= pks) {
            return Err(AggregateError::BadProtobuf(
                "partition key index out of range",
            ));
        }
        if top_ehk.is_some_and(|i| i >= ehks) {
            return Err(AggregateError::BadProtobuf("hash key index out of range"));
        }
        Ok(n)
    }
}

fn parse_record(buf: &[u8]) -> Result<(u64, Option<u64>, &[u8]), AggregateError> {
    let mut r = Reader::new(buf);
    let (mut pk, mut ehk, mut data) = (None, None, None);
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 0) => pk = Some(r.varint()?),
            (2, 0) => ehk = Some(r.varint()?),
            (3, 2) => data = Some(r.bytes()?),
            _ => r.skip(wire)?, // tags (4) and unknown fields
        }
    }
    Ok((
        pk.ok_or(AggregateError::BadProtobuf(
            "record without partition key index",
        ))?,
        ehk,
        data.ok_or(AggregateError::BadProtobuf("record without data"))?,
    ))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn varint(&mut self) -> Result<u64, AggregateError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(AggregateError::BadProtobuf("truncated varint"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(AggregateError::BadProtobuf("varint too long"))
    }
    fn key(&mut self) -> Result<(u64, u8), AggregateError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }
    fn bytes(&mut self) -> Result<&'a [u8], AggregateError> {
        let len = self.varint()?;
        let end = (self.pos as u64)
            .checked_add(len)
            .filter(|&e| e <= self.buf.len() as u64)
            .ok_or(AggregateError::BadProtobuf("length past end"))? as usize;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn string(&mut self) -> Result<&'a str, AggregateError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| AggregateError::BadProtobuf("bad UTF-8"))
    }
    fn skip(&mut self, wire: u8) -> Result<(), AggregateError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            _ => Err(AggregateError::BadProtobuf("unsupported wire type")),
        }
    }
    fn advance(&mut self, n: usize) -> Result<(), AggregateError> {
        if self.pos + n > self.buf.len() {
            return Err(AggregateError::BadProtobuf("truncated field"));
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The same body with its partition key table (field 1) after the records: legal
    /// protobuf, and the case where an index can only be checked at the end.
    fn tables_moved_last(body: &[u8]) -> Vec<u8> {
        let (mut tables, mut rest) = (Vec::new(), Vec::new());
        let mut r = Reader::new(body);
        while !r.done() {
            let start = r.pos;
            let Ok((field, wire)) = r.key() else {
                return body.to_vec();
            };
            if r.skip(wire).is_err() {
                return body.to_vec();
            }
            let out = if field == 1 { &mut tables } else { &mut rest };
            out.extend_from_slice(&body[start..r.pos]);
        }
        rest.extend_from_slice(&tables);
        rest
    }

    #[test]
    fn a_key_index_past_a_table_that_comes_last_is_still_an_error() {
        let mut a = Aggregator::new();
        a.push("K", b"one");
        a.push("K", b"two");
        let bytes = a.finish();
        let body = tables_moved_last(&bytes[MAGIC.len()..bytes.len() - DIGEST_LEN]);
        let mut seen = Vec::new();
        assert_eq!(Verified { body: &body }.each_data(|d| seen.push(d)), Ok(2));
        assert_eq!(seen, [&b"one"[..], b"two"]);
        // Only the key table removed: both records now point past an empty table.
        let no_keys: Vec<u8> = {
            let mut r = Reader::new(&body);
            let mut out = Vec::new();
            while !r.done() {
                let start = r.pos;
                let (field, wire) = r.key().unwrap();
                r.skip(wire).unwrap();
                if field != 1 {
                    out.extend_from_slice(&body[start..r.pos]);
                }
            }
            out
        };
        let v = Verified { body: &no_keys };
        assert!(v.records().is_err());
        assert_eq!(
            v.each_data(|_| ()),
            Err(AggregateError::BadProtobuf(
                "partition key index out of range"
            ))
        );
    }

    #[test]
    fn round_trip() {
        let mut a = Aggregator::new();
        a.push("BTCUSDT", b"one");
        a.push("ETHUSDT", b"two");
        a.push("BTCUSDT", b"");
        let predicted = a.size();
        let bytes = a.finish();
        assert_eq!(bytes.len(), predicted);
        let recs = deaggregate(&bytes).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].partition_key, "BTCUSDT");
        assert_eq!(recs[1].data, b"two");
        assert_eq!(recs[2].partition_key, "BTCUSDT");
        assert!(a.is_empty());
    }

    #[test]
    fn finishing_together_gives_the_same_bytes() {
        let build = |n: usize| {
            let mut a = Aggregator::new();
            for i in 0..n {
                a.push(&format!("K{}", i % 3), format!("record {i}").as_bytes());
            }
            a
        };
        let sizes = [1, 5, 40, 300, 2];
        let alone: Vec<Vec<u8>> = sizes.iter().map(|&n| build(n).finish()).collect();
        let mut aggs: Vec<Aggregator> = sizes.iter().map(|&n| build(n)).collect();
        assert_eq!(Aggregator::finish_all(aggs.iter_mut()), alone);
        assert!(aggs.iter().all(Aggregator::is_empty));
    }

    #[test]
    fn size_with_is_an_upper_bound() {
        let mut a = Aggregator::new();
        for i in 0..300 {
            let key = format!("K{}", i % 7);
            let data = vec![b'x'; i * 3];
            let bound = a.size_with(&key, &data);
            a.push(&key, &data);
            assert!(a.size() <= bound);
        }
    }

    #[test]
    fn corrupt_aggregates_are_rejected() {
        let mut a = Aggregator::new();
        a.push("K", b"data");
        let good = a.finish();
        let mut bad_digest = good.clone();
        *bad_digest.last_mut().unwrap() ^= 1;
        assert_eq!(deaggregate(&bad_digest), Err(AggregateError::BadDigest));
        assert_eq!(deaggregate(b"plain"), Err(AggregateError::NoMagic));
        assert_eq!(deaggregate(&MAGIC), Err(AggregateError::TooShort));
        // Valid digest over a broken protobuf.
        let body = [0x1a, 0x05, 0x08];
        let mut bad_pb = MAGIC.to_vec();
        bad_pb.extend_from_slice(&body);
        bad_pb.extend_from_slice(&Md5::digest(body));
        assert!(matches!(
            deaggregate(&bad_pb),
            Err(AggregateError::BadProtobuf(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = deaggregate(&data);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = deaggregate(&with_magic);
            // With a valid digest the protobuf parser itself is exercised.
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&data);
            framed.extend_from_slice(&Md5::digest(&data));
            let _ = deaggregate(&framed);
        }

        #[test]
        fn a_page_checked_together_equals_each_alone(pages in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(("[A-Z]{1,4}", proptest::collection::vec(any::<u8>(), 0..300)), 0..12)), 0..20)) {
            // Good aggregates, corrupted ones, plain data and short frames, mixed.
            let datas: Vec<Vec<u8>> = pages.iter().map(|(kind, recs)| {
                let mut a = Aggregator::new();
                for (k, d) in recs { a.push(k, d); }
                let mut bytes = a.finish();
                match kind % 5 {
                    0 => { let i = bytes.len() / 2; bytes[i] ^= 0x40; bytes }
                    1 => recs.first().map(|(_, d)| d.clone()).unwrap_or_default(),
                    2 => MAGIC[..].iter().chain(&[1, 2, 3]).copied().collect(),
                    _ => bytes,
                }
            }).collect();
            let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
            let alone: Vec<Check> = refs.iter().map(|d| check(d)).collect();
            prop_assert_eq!(check_many(&refs), alone);
        }

        #[test]
        fn each_data_agrees_with_records(
            recs in proptest::collection::vec(("[A-Z]{1,4}", proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            tables_last in any::<bool>(),
        ) {
            // A real aggregate's body, its key table moved after the records or not,
            // then a few bytes changed: same data, or an error, from both readers.
            let mut a = Aggregator::new();
            for (k, d) in &recs { a.push(k, d); }
            let bytes = a.finish();
            let mut body = bytes[MAGIC.len()..bytes.len() - DIGEST_LEN].to_vec();
            if tables_last {
                body = tables_moved_last(&body);
            }
            for (at, x) in &flips {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] ^= x;
                }
            }
            let v = Verified { body: &body };
            let mut seen = Vec::new();
            let each = v.each_data(|d| seen.push(d));
            match v.records() {
                Ok(all) => {
                    prop_assert_eq!(each, Ok(all.len()));
                    let want: Vec<&[u8]> = all.iter().map(|u| u.data).collect();
                    prop_assert_eq!(seen, want);
                }
                Err(_) => prop_assert!(each.is_err()),
            }
        }

        #[test]
        fn round_trips_arbitrary_records(recs in proptest::collection::vec(("[A-Z]{1,8}", proptest::collection::vec(any::<u8>(), 0..64)), 1..40)) {
            let mut a = Aggregator::new();
            for (k, d) in &recs { a.push(k, d); }
            let bytes = a.finish();
            let out = deaggregate(&bytes).unwrap();
            prop_assert_eq!(out.len(), recs.len());
            for (o, (k, d)) in out.iter().zip(&recs) {
                prop_assert_eq!(o.partition_key, k.as_str());
                prop_assert_eq!(o.data, d.as_slice());
            }
        }
    }
}
