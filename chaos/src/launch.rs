//! The run's own binaries as child processes (`testkit::Process`, logs in the run's
//! folder): the consumers with the fleet tests' short timings, and the producer reading
//! the exchange. Both log JSON and serve /metrics on a free port.

use std::path::Path;

use tradeflow_shared::testkit::{self, consumer_args, Process};

use crate::run::{APP, STREAM};

/// Consumer `c<i>`, not started yet (its faults restart it).
pub fn consumer(i: usize, bin: &Path, env: &[(String, String)], dir: &Path) -> Process {
    let name = format!("c{i}");
    let args = consumer_args(
        STREAM,
        APP,
        &name,
        &[
            "--take-interval",
            "1s",
            "--shard-sync-interval",
            "2s",
            "--log-format",
            "json",
        ],
    );
    Process::new(&name, bin, dir).args(&args).envs(env)
}

/// The producer on the exchange's websocket `ws_addr`, aggregating, for `symbols`.
pub fn producer(
    bin: &Path,
    ws_addr: &str,
    symbols: &[String],
    env: &[(String, String)],
    dir: &Path,
) -> Process {
    let args = testkit::strings(&[
        "--stream",
        STREAM,
        "--source",
        "binance",
        "--binance-url",
        &format!("ws://{ws_addr}"),
        "--symbols",
        &symbols.join(","),
        "--aggregate",
        "--linger",
        "50ms",
        "--retry-max",
        "1s",
        "--shard-refresh",
        "2s",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    Process::new("producer", bin, dir).args(&args).envs(env)
}
