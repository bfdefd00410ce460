//! KPL aggregation and de-aggregation (`tradeflow_shared::kpl`), in bytes/s of the
//! aggregate.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use tradeflow_benches::trade_jsons;
use tradeflow_shared::kpl::{check_many, deaggregate, md5_many, Aggregator, Check};

fn build(records: &[String]) -> Vec<u8> {
    let mut a = Aggregator::new();
    for r in records {
        // Partition key = symbol, as the producer does.
        let key = &r[r.find(r#""s":""#).map_or(0, |i| i + 5)..][..7];
        a.push(key, r.as_bytes());
    }
    a.finish()
}

fn kpl(c: &mut Criterion) {
    let mut g = c.benchmark_group("kpl");
    // ~25 KiB (a typical linger-bounded aggregate) and ~160 KiB (a busy one).
    for n in [170usize, 1000] {
        let records = trade_jsons(n, 3);
        let agg = build(&records);
        g.throughput(Throughput::Bytes(agg.len() as u64));
        g.bench_with_input(BenchmarkId::new("deaggregate", n), &agg, |b, agg| {
            b.iter(|| deaggregate(black_box(agg)).map(|v| v.len()).unwrap_or(0))
        });
        // The floor of any verifying de-aggregation: MD5 over the protobuf body, which
        // the format requires checking (a bad digest means "not an aggregate").
        g.bench_with_input(BenchmarkId::new("md5_of_body", n), &agg, |b, agg| {
            use md5::Digest;
            b.iter(|| md5::Md5::digest(black_box(&agg[4..agg.len() - 16]))[0])
        });
        g.bench_with_input(BenchmarkId::new("aggregate", n), &records, |b, recs| {
            b.iter(|| build(black_box(recs)).len())
        });
    }
    g.finish();

    // A GetRecords page of aggregates, as the consumer sees it: digests checked side by
    // side (`check_many`), then each split. `one_by_one` is the same page without that.
    let mut g = c.benchmark_group("kpl_page");
    for (per_agg, aggs) in [(170usize, 40usize), (1000, 8)] {
        let page: Vec<Vec<u8>> = (0..aggs)
            .map(|i| build(&trade_jsons(per_agg, 3 + i as u64)))
            .collect();
        let refs: Vec<&[u8]> = page.iter().map(|a| a.as_slice()).collect();
        let bytes: usize = refs.iter().map(|a| a.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        let id = format!("{aggs}x{per_agg}");
        g.bench_with_input(
            BenchmarkId::new("deaggregate_page", &id),
            &refs,
            |b, refs| {
                b.iter(|| {
                    check_many(black_box(refs))
                        .iter()
                        .map(|c| match c {
                            Check::Aggregate(v) => v.records().map_or(0, |r| r.len()),
                            _ => 0,
                        })
                        .sum::<usize>()
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("one_by_one", &id), &refs, |b, refs| {
            b.iter(|| {
                black_box(refs)
                    .iter()
                    .map(|a| deaggregate(a).map_or(0, |r| r.len()))
                    .sum::<usize>()
            })
        });
        let bodies: Vec<&[u8]> = refs.iter().map(|a| &a[4..a.len() - 16]).collect();
        g.bench_with_input(
            BenchmarkId::new("md5_many_of_bodies", &id),
            &bodies,
            |b, bodies| b.iter(|| md5_many(black_box(bodies)).len()),
        );
    }
    g.finish();
}

tradeflow_benches::criterion_main!("kpl", kpl, &["kpl", "kpl_page"]);
