//! After the run: reads every shard of the stream (closed ones too) from its start and
//! counts the distinct trades it holds, per symbol. Tells a trade the producer never
//! wrote apart from one written but never counted.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use tradeflow_shared::kpl::{deaggregate, has_magic};
use tradeflow_shared::{decode_bytes, Event};

/// Distinct (symbol, trade id) in the data of one Kinesis record.
pub fn trades_in_record(data: &[u8], out: &mut BTreeSet<(String, u64)>) {
    let mut one = |bytes: &[u8]| {
        if let Ok(Event::Trade { trade, .. }) = decode_bytes(bytes) {
            out.insert((trade.symbol.as_str().to_string(), trade.trade_id));
        }
    };
    if has_magic(data) {
        if let Ok(records) = deaggregate(data) {
            records.iter().for_each(|r| one(r.data));
        }
    } else {
        one(data);
    }
}

/// What the stream holds after the run.
#[derive(Debug, Default)]
pub struct StreamAudit {
    /// Per symbol, distinct trades.
    pub counts: BTreeMap<String, u64>,
    /// Records of closed shards stored after the shard's ending sequence number (a
    /// reader stops at the end, so nobody ever reads them: an emulator fault).
    pub past_end: u64,
}

/// Kinesis sequence numbers are decimal big integers: compare by length, then text.
fn seq_gt(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// An SDK error as the reason the stream could not be read, naming the call.
fn why<E: std::error::Error>(call: &'static str) -> impl FnOnce(E) -> String {
    move |e| {
        format!(
            "{call}: {:?}",
            aws_sdk_kinesis::error::DisplayErrorContext(e)
        )
    }
}

/// Reads the whole stream, or says why it could not.
pub async fn stream_counts(k: &Client, stream: &str) -> Result<StreamAudit, String> {
    let mut seen = BTreeSet::new();
    let mut past_end = 0;
    let shards = k
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(why("ListShards"))?;
    for s in shards.shards() {
        let end = s
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .map(str::to_string);
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(s.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(why("GetShardIterator"))?
            .shard_iterator
            .map(|s| s.to_string());
        while let Some(cur) = it.take() {
            let out = k
                .get_records()
                .shard_iterator(cur)
                .limit(10_000)
                .send()
                .await
                .map_err(why("GetRecords"))?;
            for r in out.records() {
                if end
                    .as_deref()
                    .is_some_and(|e| seq_gt(r.sequence_number(), e))
                {
                    past_end += 1;
                }
                trades_in_record(r.data().as_ref(), &mut seen);
            }
            let caught_up = out.records().is_empty() && out.millis_behind_latest() == Some(0);
            if !caught_up {
                it = out.next_shard_iterator().map(str::to_string);
            }
        }
    }
    let mut counts = BTreeMap::new();
    for (sym, _) in seen {
        *counts.entry(sym).or_insert(0) += 1;
    }
    Ok(StreamAudit { counts, past_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeflow_shared::kpl::Aggregator;

    const A: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":10,"p":"2.5","q":"1","T":1717000000120,"m":true,"M":true}"#;
    const B: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":11,"p":"2.5","q":"1","T":1717000000120,"m":true,"M":true}"#;

    #[test]
    fn plain_and_aggregated_records_counted_once() {
        let mut seen = BTreeSet::new();
        trades_in_record(A.as_bytes(), &mut seen);
        let mut agg = Aggregator::new();
        agg.push("BTCUSDT", A.as_bytes());
        agg.push("BTCUSDT", B.as_bytes());
        trades_in_record(&agg.finish(), &mut seen);
        trades_in_record(b"not a trade", &mut seen);
        assert_eq!(seen.len(), 2);
    }
}
