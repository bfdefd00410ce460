//! The report's integration tests in one binary (compiled and linked once): each file
//! below is a module. They fill Redis through the consumer's real sink (a
//! dev-dependency) or, where only the key layout matters, write the keys directly, and
//! run the `tradeflow-report` binary against real local servers. Tests here share one
//! process: no global recorder or subscriber installs, no process-wide state.

mod cdp;
mod cli_help;
mod kline_seed;
mod report_candles;
mod report_cluster;
mod report_prices;
mod report_reconcile;
mod report_redis;
mod report_slack;
mod report_slack_errors;
mod report_tls;
mod report_web;
mod report_web_candles;
mod report_web_click;

// The consumer's sink-test helpers (trades at positions, batches, expected exact sums),
// shared rather than copied.
#[path = "../../consumer/tests/redis_common/mod.rs"]
mod redis_common;
