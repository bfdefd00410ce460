//! The consumer's per-batch work without I/O: `apply::fold` of 500 decoded records into
//! per-symbol deltas, and decoding + `fold` together ("decode + aggregate"), for plain
//! records and for KPL aggregates. Decoding is the readers' own path,
//! `HandedOut::take_parts`: sequence numbers parsed, the page's KPL digests checked
//! together, each record decoded, records already handed out filtered.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tradeflow_benches::{sequence_number, trade_jsons};
use tradeflow_consumer::apply::fold;
use tradeflow_consumer::record::DecodedRecord;
use tradeflow_consumer::shard::page::HandedOut;
use tradeflow_shared::kpl::Aggregator;
use tradeflow_shared::SequenceNumber;

/// Records per GetRecords batch applied at once (the producer's PutRecords size).
const BATCH: usize = 500;

fn decode_all(records: &[(String, Vec<u8>)]) -> Vec<DecodedRecord> {
    HandedOut::default()
        .take_parts(
            records
                .iter()
                .map(|(s, d)| (SequenceNumber::parse(s), d.as_slice())),
        )
        .records
}

fn fold_benches(c: &mut Criterion) {
    let jsons = trade_jsons(BATCH, 11);
    let plain: Vec<(String, Vec<u8>)> = jsons
        .iter()
        .enumerate()
        .map(|(i, j)| {
            (
                sequence_number(i as u64).to_string(),
                j.clone().into_bytes(),
            )
        })
        .collect();
    // The same trades as KPL aggregates of 100 user records each.
    let aggregated: Vec<(String, Vec<u8>)> = jsons
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let mut a = Aggregator::new();
            for j in chunk {
                a.push("BTCUSDT", j.as_bytes());
            }
            (sequence_number(i as u64).to_string(), a.finish())
        })
        .collect();
    let decoded = decode_all(&plain);

    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("fold_only", BATCH), |b| {
        b.iter(|| fold(black_box(&decoded)).trade_count())
    });
    g.bench_function(BenchmarkId::new("decode_record_only", BATCH), |b| {
        b.iter(|| decode_all(black_box(&plain)).len())
    });
    g.bench_function(BenchmarkId::new("decode_and_aggregate_plain", BATCH), |b| {
        b.iter(|| fold(&decode_all(black_box(&plain))).trade_count())
    });
    g.bench_function(BenchmarkId::new("decode_and_aggregate_kpl", BATCH), |b| {
        b.iter(|| fold(&decode_all(black_box(&aggregated))).trade_count())
    });
    g.finish();
}

tradeflow_benches::criterion_main!("fold", fold_benches, &["fold"]);
