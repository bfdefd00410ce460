//! Every metric the producer exports, named in one place (`tradeflow_producer_` prefix,
//! `_total` counters, base units), with the helpers that record them.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub const TRADES_IN: &str = "tradeflow_producer_trades_received_total";
pub const TRADES_ACCEPTED: &str = "tradeflow_producer_trades_accepted_total";
pub const DUPLICATES: &str = "tradeflow_producer_duplicate_trades_total";
pub const GAPS: &str = "tradeflow_producer_trade_gaps_total";
pub const MISSING: &str = "tradeflow_producer_missing_trades_total";
pub const BAD_INPUT: &str = "tradeflow_producer_bad_input_total";
pub const PUT_CALLS: &str = "tradeflow_producer_put_records_calls_total";
pub const PUT_SECONDS: &str = "tradeflow_producer_put_records_seconds";
pub const ENTRIES_FAILED: &str = "tradeflow_producer_entries_failed_total";
pub const ENTRIES_RETRIED: &str = "tradeflow_producer_entries_retried_total";
pub const THROTTLES: &str = "tradeflow_producer_throttles_total";
pub const RECORDS_WRITTEN: &str = "tradeflow_producer_records_written_total";
pub const TRADES_WRITTEN: &str = "tradeflow_producer_trades_written_total";
pub const BYTES_WRITTEN: &str = "tradeflow_producer_bytes_written_total";
pub const PAYLOAD_UNITS: &str = "tradeflow_producer_put_payload_units_total";
pub const BUFFER_RECORDS: &str = "tradeflow_producer_buffer_records";
pub const DROPPED: &str = "tradeflow_producer_dropped_total";
pub const LOST: &str = "tradeflow_producer_lost_total";
pub const LAST_TRADE_AGE: &str = "tradeflow_producer_last_written_trade_age_seconds";
pub const LAST_TRADE_TIME: &str = "tradeflow_producer_last_written_trade_timestamp_seconds";
pub const SHARD_REFRESHES: &str = "tradeflow_producer_shard_map_refreshes_total";

pub const BACKFILLED: &str = "tradeflow_producer_backfilled_trades_total";
pub const BACKFILL_FAILURES: &str = "tradeflow_producer_backfill_failures_total";
pub const BACKFILL_REQUESTS: &str = "tradeflow_producer_backfill_requests_total";

pub const WS_CONNECTIONS: &str = "tradeflow_producer_ws_connections";
pub const WS_RECONNECTS: &str = "tradeflow_producer_ws_reconnects_total";
pub const WS_ROTATIONS: &str = "tradeflow_producer_ws_rotations_total";
pub const WS_MESSAGES: &str = "tradeflow_producer_ws_messages_total";
pub const WS_CONNECT_FAILURES: &str = "tradeflow_producer_ws_connect_failures_total";
pub const WS_HELD_LIMIT: &str = "tradeflow_producer_ws_held_limit_total";

/// Every counter and its `# HELP` text.
const COUNTERS: &[(&str, &str)] = &[
    (TRADES_IN, "Trades received from the source"),
    (
        TRADES_ACCEPTED,
        "Trades accepted for writing (after dedupe)",
    ),
    (
        DUPLICATES,
        "Trades dropped because their id was already seen",
    ),
    (GAPS, "Times a symbol's trade ids jumped forward"),
    (
        MISSING,
        "Trade ids skipped over by gaps (what backfill could not fill)",
    ),
    (
        BACKFILLED,
        "Missed trades fetched over REST (historicalTrades) and written in their place",
    ),
    (BACKFILL_FAILURES, "Gaps not (fully) backfilled, by reason"),
    (BACKFILL_REQUESTS, "historicalTrades requests, by outcome"),
    (
        BAD_INPUT,
        "Source lines or messages that were not trades, by kind",
    ),
    (PUT_CALLS, "PutRecords calls, by outcome"),
    (
        ENTRIES_FAILED,
        "PutRecords entries that failed, by error code",
    ),
    (
        ENTRIES_RETRIED,
        "PutRecords entries sent again, by error code",
    ),
    (THROTTLES, "Throttled PutRecords calls or entries"),
    (RECORDS_WRITTEN, "Kinesis records written"),
    (TRADES_WRITTEN, "Trades written (aggregated or not)"),
    (
        BYTES_WRITTEN,
        "Record data plus partition key bytes written",
    ),
    (PAYLOAD_UNITS, "PUT payload units (25 KB each) written"),
    (DROPPED, "Trades dropped by the overflow policy, by reason"),
    (LOST, "Accepted trades given up at the drain deadline"),
    (SHARD_REFRESHES, "Shard map refreshes (ListShards)"),
    (WS_RECONNECTS, "Websocket reconnections, by reason"),
    (
        WS_ROTATIONS,
        "Planned connection replacements (24 h cut, serverShutdown), by reason",
    ),
    (WS_MESSAGES, "Websocket messages received"),
    (WS_CONNECT_FAILURES, "Failed websocket connection attempts"),
    (
        WS_HELD_LIMIT,
        "Rotations where the replacement held its limit of trades, by action taken",
    ),
];

/// Every gauge and its `# HELP` text.
const GAUGES: &[(&str, &str)] = &[
    (BUFFER_RECORDS, "Trades accepted but not yet written"),
    (
        LAST_TRADE_AGE,
        "Age of the newest written trade at write time",
    ),
    (LAST_TRADE_TIME, "Trade time of the newest written trade"),
    (WS_CONNECTIONS, "Websocket connections open to the exchange"),
];

/// Registers descriptions (shown as `# HELP` in a scrape).
pub fn describe() {
    tradeflow_shared::retry::describe();
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    describe_histogram!(PUT_SECONDS, "PutRecords call latency");
    // Counters of rare events exist at 0 from the start, so `increase()` in alerts sees
    // the first one and a scrape shows they are exported.
    for name in [
        TRADES_IN,
        TRADES_ACCEPTED,
        DUPLICATES,
        GAPS,
        MISSING,
        THROTTLES,
        RECORDS_WRITTEN,
        TRADES_WRITTEN,
        BYTES_WRITTEN,
        PAYLOAD_UNITS,
        LOST,
        WS_CONNECT_FAILURES,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(BUFFER_RECORDS).set(0.0);
    gauge!(WS_CONNECTIONS).set(0.0);
}

pub fn bad_input(source: &'static str, kind: &'static str) {
    counter!(BAD_INPUT, "source" => source, "kind" => kind).increment(1);
}

pub fn buffer(records: usize) {
    gauge!(BUFFER_RECORDS).set(records as f64);
}

pub fn dropped(reason: &'static str, n: u64) {
    counter!(DROPPED, "reason" => reason).increment(n);
}

pub fn put_call(outcome: &'static str, seconds: f64) {
    counter!(PUT_CALLS, "outcome" => outcome).increment(1);
    histogram!(PUT_SECONDS).record(seconds);
}

pub fn entry_failed(code: &str, n: u64) {
    let code = bounded_code(code);
    counter!(ENTRIES_FAILED, "code" => code).increment(n);
    if code == "ProvisionedThroughputExceededException" {
        counter!(THROTTLES, "scope" => "entry").increment(n);
    }
}

pub fn entries_retried(code: &str, n: u64) {
    counter!(ENTRIES_RETRIED, "code" => bounded_code(code)).increment(n);
}

/// Keeps the label set bounded whatever the service answers.
pub fn bounded_code(code: &str) -> &'static str {
    match code {
        "ProvisionedThroughputExceededException" => "ProvisionedThroughputExceededException",
        "InternalFailure" => "InternalFailure",
        "KMSThrottlingException" => "KMSThrottlingException",
        "ThrottlingException" => "ThrottlingException",
        "ResourceNotFoundException" => "ResourceNotFoundException",
        "ServiceUnavailable" => "ServiceUnavailable",
        "timeout" => "timeout",
        "dispatch" => "dispatch",
        _ => "other",
    }
}

/// Records written: count, trades, bytes, 25 KB payload units and the newest trade time.
pub fn written(records: u64, trades: u64, bytes: u64, units: u64, newest_trade_ms: u64) {
    counter!(RECORDS_WRITTEN).increment(records);
    counter!(TRADES_WRITTEN).increment(trades);
    counter!(BYTES_WRITTEN).increment(bytes);
    counter!(PAYLOAD_UNITS).increment(units);
    if newest_trade_ms > 0 {
        let now = tradeflow_shared::telemetry::now_ms();
        gauge!(LAST_TRADE_TIME).set(newest_trade_ms as f64 / 1000.0);
        gauge!(LAST_TRADE_AGE).set(now.saturating_sub(newest_trade_ms) as f64 / 1000.0);
    }
}

pub fn throttled_call() {
    counter!(THROTTLES, "scope" => "call").increment(1);
}

pub fn counter_shard_refresh() {
    counter!(SHARD_REFRESHES).increment(1);
}

pub fn lost(n: u64) {
    if n > 0 {
        counter!(LOST).increment(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_described_once() {
        let mut names: Vec<&str> = COUNTERS.iter().chain(GAUGES).map(|(n, _)| *n).collect();
        names.push(PUT_SECONDS);
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a series described twice");
    }
}
