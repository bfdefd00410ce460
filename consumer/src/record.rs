//! From Kinesis records to user records: KPL de-aggregation (sub-sequence numbers are
//! the index inside the aggregate) and trade decoding. Anything that is not a valid
//! trade becomes a poison item carrying its reason; nothing here can fail a batch.

use tradeflow_shared::kpl;
use tradeflow_shared::{decode_bytes, Event, Position, SequenceNumber, Trade};

/// How much of a poison record is kept aside (the rest is cut, and says so).
pub const POISON_KEEP_BYTES: usize = 4096;

/// One user record, decoded, at its position in the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub pos: Position,
    pub item: Item,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Trade(Trade),
    /// Not a countable trade: kept aside with its reason.
    Poison(Poison),
    /// Well-formed but not a trade (a control reply, another event type): passed over.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Bounded label for metrics.
    pub kind: &'static str,
    /// Human-readable reason for the log and the dead-letter entry.
    pub reason: String,
    /// The record's data, cut to `POISON_KEEP_BYTES`.
    pub data: Vec<u8>,
}

impl Poison {
    fn new(kind: &'static str, reason: String, data: &[u8]) -> Self {
        Poison {
            kind,
            reason,
            data: data[..data.len().min(POISON_KEEP_BYTES)].to_vec(),
        }
    }
}

/// Decodes one Kinesis record (plain or KPL aggregate) into its user records, appended
/// to `out`. A record that carries the KPL magic but fails its digest or protobuf is a
/// poison record of its own (not silently treated as a trade).
pub fn decode_record(seq: &SequenceNumber, data: &[u8], out: &mut Vec<DecodedRecord>) {
    decode_checked(seq.clone(), data, kpl::check(data), out);
}

/// As `decode_record`, with the KPL check already made: the readers check a whole page
/// at once with `kpl::check_many` (digests side by side), then decode record by record.
/// The number is moved into a plain record's position (shared by an aggregate's).
pub fn decode_checked(
    seq: SequenceNumber,
    data: &[u8],
    check: kpl::Check<'_>,
    out: &mut Vec<DecodedRecord>,
) {
    let broken = match check {
        kpl::Check::Plain => {
            out.push(DecodedRecord {
                pos: Position::new(seq, 0),
                item: decode_user_record(data),
            });
            return;
        }
        kpl::Check::Aggregate(v) => {
            // Decoded as they are read; a fault found at the end takes them back.
            let first = out.len();
            let mut sub = 0u64;
            let read = v.each_data(|user| {
                out.push(DecodedRecord {
                    pos: Position::new(seq.clone(), sub),
                    item: decode_user_record(user),
                });
                sub += 1;
            });
            match read {
                Ok(_) => return,
                Err(e) => {
                    out.truncate(first);
                    e
                }
            }
        }
        kpl::Check::Broken(e) => e,
    };
    out.push(DecodedRecord {
        pos: Position::new(seq, 0),
        item: Item::Poison(Poison::new("kpl_aggregate", broken.to_string(), data)),
    });
}

fn decode_user_record(data: &[u8]) -> Item {
    match decode_bytes(data) {
        Ok(Event::Trade { trade, .. }) => Item::Trade(trade),
        Ok(_) => Item::Ignored,
        Err(e) => Item::Poison(Poison::new(e.kind(), e.to_string(), data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kpl::Aggregator;

    const T1: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":1717000000120,"m":true,"M":true}"#;
    const T2: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":2,"p":"1.5","q":"2","T":1717000000120,"m":true,"M":true}"#;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn plain_record_is_one_user_record_at_sub_zero() {
        let mut out = Vec::new();
        decode_record(&seq("7"), T1.as_bytes(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pos, Position::new(seq("7"), 0));
        assert!(matches!(out[0].item, Item::Trade(t) if t.trade_id == 1));
    }

    #[test]
    fn aggregate_gives_sub_sequence_numbers_in_order() {
        let mut a = Aggregator::new();
        a.push("BTCUSDT", T1.as_bytes());
        a.push("BTCUSDT", b"garbage");
        a.push("BTCUSDT", T2.as_bytes());
        let mut out = Vec::new();
        decode_record(&seq("9"), &a.finish(), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].pos, Position::new(seq("9"), 2));
        assert!(matches!(&out[1].item, Item::Poison(p) if p.kind == "json"));
        assert!(matches!(out[2].item, Item::Trade(t) if t.trade_id == 2));
    }

    #[test]
    fn corrupt_aggregate_is_one_poison_record() {
        let mut a = Aggregator::new();
        a.push("K", T1.as_bytes());
        let mut bytes = a.finish();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        let mut out = Vec::new();
        decode_record(&seq("9"), &bytes, &mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0].item, Item::Poison(p) if p.kind == "kpl_aggregate"));
    }

    #[test]
    fn poison_data_is_bounded() {
        let big = vec![b'x'; 100_000];
        let mut out = Vec::new();
        decode_record(&seq("1"), &big, &mut out);
        match &out[0].item {
            Item::Poison(p) => assert_eq!(p.data.len(), POISON_KEEP_BYTES),
            other => panic!("{other:?}"),
        }
    }
}
