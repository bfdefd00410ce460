//! Trade decoding (`tradeflow_shared::decode_event`): the raw trade object and the
//! combined-stream envelope, plus `decode_bytes` as the consumer calls it.

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use tradeflow_benches::{combined, trade_jsons};
use tradeflow_shared::{decode_bytes, decode_event, Event};

const N: usize = 1000;

fn count_trades<'a>(
    evs: impl Iterator<Item = Result<Event<'a>, tradeflow_shared::DecodeError>>,
) -> u64 {
    evs.filter(|e| matches!(e, Ok(Event::Trade { .. }))).count() as u64
}

fn decode(c: &mut Criterion) {
    let plain = trade_jsons(N, 1);
    let wrapped: Vec<String> = plain.iter().map(|j| combined(j, "btcusdt")).collect();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("plain_json", |b| {
        b.iter(|| count_trades(plain.iter().map(|j| decode_event(black_box(j)))))
    });
    g.bench_function("combined_wrapper", |b| {
        b.iter(|| count_trades(wrapped.iter().map(|j| decode_event(black_box(j)))))
    });
    g.bench_function("plain_bytes", |b| {
        b.iter(|| count_trades(plain.iter().map(|j| decode_bytes(black_box(j.as_bytes())))))
    });
    g.finish();
}

tradeflow_benches::criterion_main!("decode", decode, &["decode"]);
