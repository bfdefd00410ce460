//! What the run reads from its child processes (producer, consumers; started and
//! stopped as `testkit::Process`, JSON logs appended to one file per name across
//! restarts): the /metrics address they logged, and metric sums from a scrape.

use std::time::Duration;

use tradeflow_shared::testkit::{self, Process};

/// How long one scrape may take (a paused consumer accepts and never answers).
const SCRAPE_LIMIT: Duration = Duration::from_secs(5);

/// The address a process logged for its /metrics server (JSON logs).
/// The latest one when the process was restarted (its log is appended to).
pub fn metrics_addr(p: &Process) -> Option<String> {
    p.last_in_log(metrics_addr_in)
}

/// The /metrics address in one JSON log line, if it is the line that says it.
pub fn metrics_addr_in(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if !v["message"].as_str()?.starts_with("serving /metrics") {
        return None;
    }
    v["local"].as_str().map(str::to_string)
}

/// Sum of every series of `metric` in one scrape of `http://addr/metrics`.
pub async fn scrape(addr: &str, metric: &str) -> Option<f64> {
    let addr = addr.to_string();
    let get =
        tokio::task::spawn_blocking(move || testkit::scrape_metrics_within(&addr, SCRAPE_LIMIT));
    let body = tokio::time::timeout(SCRAPE_LIMIT, get)
        .await
        .ok()?
        .ok()?
        .ok()?;
    Some(testkit::sum_metric(&body, metric))
}

/// Consumer counters worth showing next to a difference (current processes only).
const CONSUMER_COUNTERS: [&str; 4] = [
    "tradeflow_consumer_late_trades_dropped_total",
    "tradeflow_consumer_poison_records_total",
    "tradeflow_consumer_duplicates_skipped_total",
    "tradeflow_consumer_redis_rewinds_total",
];

/// Each of [`CONSUMER_COUNTERS`], summed over the consumers' current processes.
pub async fn consumer_counters(consumers: &[Process]) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    for metric in CONSUMER_COUNTERS {
        let mut sum = 0;
        for c in consumers {
            if let Some(addr) = metrics_addr(c) {
                sum += scrape(&addr, metric).await.unwrap_or(0.0) as u64;
            }
        }
        out.push((metric, sum));
    }
    out
}

/// A counter of the producer, 0 when it cannot be read.
pub async fn producer_counter(addr: &str, metric: &str) -> u64 {
    scrape(addr, metric).await.unwrap_or(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_metrics_line() {
        let line = r#"{"message":"serving /metrics","local":"127.0.0.1:4000"}"#;
        assert_eq!(metrics_addr_in(line).as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(metrics_addr_in(r#"{"message":"other"}"#), None);
        assert_eq!(metrics_addr_in("not json"), None);
    }
}
