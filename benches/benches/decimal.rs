//! Exact decimal arithmetic (`tradeflow_shared::decimal`): parsing Binance's 8-decimal
//! strings, formatting scaled totals, and adding arbitrary-length decimal strings.

use criterion::{Criterion, Throughput};
use std::hint::black_box;
use tradeflow_benches::Rng;
use tradeflow_shared::decimal::{add_decimal_strings, format_scaled};
use tradeflow_shared::Fixed8;

const N: usize = 1000;

fn decimal(c: &mut Criterion) {
    let mut rng = Rng::new(5);
    let strings: Vec<String> = (0..N)
        .map(|_| Fixed8(rng.below(7_000_000_000_000)).to_string())
        .collect();
    // Totals as Redis holds them: quote volume with 16 decimals, ~12 integer digits.
    let totals: Vec<(String, String)> = (0..N)
        .map(|_| {
            let a = (rng.next_u64() as u128) * 1_000_000 + rng.below(1_000_000) as u128;
            let b = (rng.next_u64() as u128) * 1_000 + rng.below(1_000) as u128;
            (format_scaled(a, 16), format_scaled(b, 16))
        })
        .collect();
    let units: Vec<u128> = totals
        .iter()
        .map(|_| (rng.next_u64() as u128) << 20)
        .collect();
    let mut g = c.benchmark_group("decimal");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("fixed8_parse", |b| {
        b.iter(|| {
            strings
                .iter()
                .map(|s| Fixed8::parse(black_box(s)).map_or(0, |f| f.0))
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.bench_function("fixed8_times", |b| {
        let fs: Vec<Fixed8> = strings.iter().map(|s| Fixed8::parse(s).unwrap()).collect();
        b.iter(|| {
            fs.windows(2)
                .map(|w| black_box(w[0]).times(black_box(w[1])))
                .fold(0u128, u128::wrapping_add)
        })
    });
    g.bench_function("format_scaled_16", |b| {
        b.iter(|| {
            units
                .iter()
                .map(|&u| format_scaled(black_box(u), 16).len())
                .sum::<usize>()
        })
    });
    g.bench_function("add_decimal_strings_16", |b| {
        b.iter(|| {
            totals
                .iter()
                .map(|(a, b)| {
                    add_decimal_strings(black_box(a), black_box(b)).map_or(0, |s| s.len())
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

tradeflow_benches::criterion_main!("decimal", decimal, &["decimal"]);
