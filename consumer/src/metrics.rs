//! The consumer's metrics, described in one place so a scrape carries HELP text and a
//! reader of this file sees everything the consumer exports. Each event is counted
//! where it happens (`lease`, `shard::reader`, `apply`, `worker`).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_gauge!(
        "tradeflow_consumer_leases_held",
        "Leases this worker holds."
    );
    describe_counter!(
        "tradeflow_consumer_leases_taken_total",
        "Leases taken (free or expired)."
    );
    describe_counter!(
        "tradeflow_consumer_leases_stolen_total",
        "Leases stolen from a more loaded worker."
    );
    describe_counter!(
        "tradeflow_consumer_leases_lost_total",
        "Leases this worker lost (renewal failed or taken away)."
    );
    describe_counter!(
        "tradeflow_consumer_leases_released_total",
        "Leases given up on graceful shutdown."
    );
    describe_counter!(
        "tradeflow_consumer_lease_renewals_total",
        "Successful lease renewals."
    );
    describe_counter!(
        "tradeflow_consumer_checkpoints_total",
        "Checkpoints written to the lease table."
    );
    describe_counter!(
        "tradeflow_consumer_checkpoint_failures_total",
        "Checkpoint writes that failed, by reason."
    );
    describe_counter!(
        "tradeflow_consumer_dynamodb_requests_total",
        "DynamoDB requests, by operation."
    );
    describe_counter!(
        "tradeflow_consumer_getrecords_total",
        "GetRecords calls, by shard."
    );
    describe_histogram!(
        "tradeflow_consumer_getrecords_seconds",
        Unit::Seconds,
        "GetRecords latency."
    );
    describe_counter!(
        "tradeflow_consumer_getrecords_throttled_total",
        "GetRecords calls throttled."
    );
    describe_counter!(
        "tradeflow_consumer_getrecords_errors_total",
        "GetRecords calls that failed and were retried."
    );
    describe_counter!(
        "tradeflow_consumer_expired_iterators_total",
        "Shard iterators that expired and were renewed."
    );
    describe_gauge!(
        "tradeflow_consumer_millis_behind_latest",
        "How far each shard's reader is behind the tip, in milliseconds."
    );
    describe_counter!(
        "tradeflow_consumer_records_read_total",
        "Kinesis records read, by shard."
    );
    describe_counter!(
        "tradeflow_consumer_shards_ended_total",
        "Shards read to their end and checkpointed SHARD_END."
    );
}
