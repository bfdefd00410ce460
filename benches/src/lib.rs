//! Benchmarks of tradeflow (see benches/README.md): shared inputs for the bench
//! targets, the smoke/full mode switch of the hand-written bench binaries, and the
//! JSON export of results to `target/bench-results/<name>.json`.

pub mod e2e;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tradeflow_shared::{SequenceNumber, SEED_SYMBOLS};

/// A small deterministic generator (xorshift64*), so every run measures the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Upper-case seed symbols, as Binance sends them in `s`.
pub fn seed_symbols() -> Vec<String> {
    SEED_SYMBOLS
        .iter()
        .map(|s| s.to_ascii_uppercase())
        .collect()
}

/// `n` trades in Binance's current wire format over the 14 seed symbols, with
/// per-symbol consecutive ids, 8-decimal prices and quantities like the real stream.
pub fn trade_jsons(n: usize, seed: u64) -> Vec<String> {
    let symbols = seed_symbols();
    let mut rng = Rng::new(seed);
    let mut next_id = vec![3_600_000_000u64; symbols.len()];
    let t0 = 1_717_000_000_000u64;
    (0..n)
        .map(|i| {
            // Skewed like the real mix: BTCUSDT and ETHUSDT dominate.
            let s = match rng.below(10) {
                0..=3 => 0,
                4..=5 => 1,
                _ => rng.below(symbols.len() as u64) as usize,
            };
            next_id[s] += 1;
            let price_units = 1_000_000 + rng.below(7_000_000_000_000);
            let qty_units = 1 + rng.below(500_000_000);
            let t = t0 + i as u64 / 4;
            format!(
                r#"{{"e":"trade","E":{},"s":"{}","t":{},"p":"{}.{:08}","q":"{}.{:08}","T":{},"m":{},"M":true}}"#,
                t + 3,
                symbols[s],
                next_id[s],
                price_units / 100_000_000,
                price_units % 100_000_000,
                qty_units / 100_000_000,
                qty_units % 100_000_000,
                t,
                rng.below(2) == 0
            )
        })
        .collect()
}

/// The combined-stream envelope Binance sends on `/stream?streams=…`.
pub fn combined(json: &str, symbol_lower: &str) -> String {
    format!(r#"{{"stream":"{symbol_lower}@trade","data":{json}}}"#)
}

/// A realistic 56-digit Kinesis sequence number, distinct per `i`.
pub fn sequence_number(i: u64) -> SequenceNumber {
    SequenceNumber::parse(&format!(
        "4959033827149025660855969253836157109592157598{i:010}"
    ))
    .expect("digits")
}

#[doc(hidden)]
pub use criterion as __criterion;

/// The `main` of a criterion bench binary (harness = false): runs `target` with
/// [`criterion()`], prints the summary, and exports `groups` as `<name>.json`
/// ([`export_criterion`]).
#[macro_export]
macro_rules! criterion_main {
    ($name:literal, $target:path, $groups:expr) => {
        $crate::__criterion::criterion_group! {
            name = benches;
            config = $crate::criterion();
            targets = $target
        }

        fn main() {
            benches();
            $crate::criterion().final_summary();
            $crate::export_criterion($name, $groups);
        }
    };
}

/// Criterion with short runs (the machine is shared; figures are for comparison, not
/// for asserting), still overridable from the command line.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args()
}

/// Hand-written bench binaries (harness = false) do a full run only when cargo bench
/// passes `--bench`; under `cargo test` (no argument) they do a tiny smoke run.
pub fn full_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The workspace target directory: `CARGO_TARGET_DIR`, else three levels above the
/// running bench executable (`target/<profile>/deps/<exe>`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Writes `results` to `target/bench-results/<name>.json`, stamped with the time and
/// the machine, and says where.
pub fn write_results(name: &str, results: Value) {
    let dir = target_dir().join("bench-results");
    let doc = json!({
        "bench": name,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "machine": machine(),
        "results": results,
    });
    let path = dir.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default()));
    match written {
        Ok(()) => println!("results written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({ "cpus": cpus, "cpu_model": cpu_model, "mem_total_kib": mem_kib })
}

/// After a criterion run (`cargo bench`), collects every benchmark of `groups` from
/// `target/criterion/<group>/…/new/{benchmark,estimates}.json`, prints one line each
/// (time and throughput) and writes them to `target/bench-results/<name>.json`.
/// Does nothing in criterion's test mode (no `--bench`), where nothing is measured.
pub fn export_criterion(name: &str, groups: &[&str]) {
    if !full_mode() {
        return;
    }
    let root = target_dir().join("criterion");
    let mut out = Vec::new();
    for g in groups {
        let mut found = Vec::new();
        find_new_dirs(&root.join(g), &mut found);
        found.sort();
        for dir in found {
            if let Some(v) = read_one(&dir) {
                out.push(v);
            }
        }
    }
    println!("\n== {name}: summary ==");
    for v in &out {
        println!(
            "{:<44} {:>12.1} ns/iter  {}",
            v["id"].as_str().unwrap_or(""),
            v["mean_ns"].as_f64().unwrap_or(0.0),
            v["throughput_human"].as_str().unwrap_or("")
        );
    }
    write_results(name, Value::Array(out));
}

fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if p.file_name().is_some_and(|n| n == "new") {
            if p.join("estimates.json").is_file() {
                out.push(p);
            }
        } else if p.file_name().is_some_and(|n| n != "report" && n != "base") {
            find_new_dirs(&p, out);
        }
    }
}

fn read_one(dir: &Path) -> Option<Value> {
    let read = |f: &str| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(dir.join(f)).ok()?).ok()
    };
    let bench = read("benchmark.json")?;
    let est = read("estimates.json")?;
    let mean_ns = est["mean"]["point_estimate"].as_f64()?;
    let median_ns = est["median"]["point_estimate"].as_f64().unwrap_or(mean_ns);
    let (per_iter, unit) = match &bench["throughput"] {
        Value::Object(m) if m.contains_key("Elements") => {
            (m["Elements"].as_f64().unwrap_or(0.0), "elements")
        }
        Value::Object(m) if m.contains_key("Bytes") => {
            (m["Bytes"].as_f64().unwrap_or(0.0), "bytes")
        }
        _ => (0.0, ""),
    };
    let per_sec = if mean_ns > 0.0 && per_iter > 0.0 {
        per_iter * 1e9 / mean_ns
    } else {
        0.0
    };
    let human = match unit {
        "elements" => format!(
            "{:.3} M/s ({:.1} ns each)",
            per_sec / 1e6,
            mean_ns / per_iter
        ),
        "bytes" => format!("{:.3} GB/s", per_sec / 1e9),
        _ => String::new(),
    };
    Some(json!({
        "id": bench["full_id"],
        "mean_ns": mean_ns,
        "median_ns": median_ns,
        "throughput_unit": unit,
        "per_iter": per_iter,
        "per_second": per_sec,
        "throughput_human": human,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_trades_decode() {
        for j in trade_jsons(200, 7) {
            let ev = tradeflow_shared::decode_event(&j).expect(&j);
            assert!(matches!(ev, tradeflow_shared::Event::Trade { .. }));
            let c = combined(&j, "btcusdt");
            assert!(matches!(
                tradeflow_shared::decode_event(&c),
                Ok(tradeflow_shared::Event::Trade { .. })
            ));
        }
    }

    #[test]
    fn sequence_numbers_ascend() {
        assert!(sequence_number(1) < sequence_number(2));
        assert_eq!(sequence_number(1).as_str().len(), 56);
    }
}
