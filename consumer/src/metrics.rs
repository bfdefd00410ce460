//! The consumer's metrics, described in one place so a scrape carries HELP text and a
//! reader of this file sees everything the consumer exports. Each event is counted
//! where it happens (`lease`, `shard::reader`, `apply`, `worker`).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    tradeflow_shared::retry::describe();
    describe_counter!(
        "tradeflow_consumer_roll_ups_total",
        "Symbol-hours rolled up from minute buckets into hour and day buckets."
    );
    describe_counter!(
        "tradeflow_consumer_roll_up_failures_total",
        "Roll-up passes or symbols that failed (reason: redis, foreign_value); retried next pass."
    );
    describe_gauge!(
        "tradeflow_consumer_lease_table_other_rows",
        "Rows of the lease table that are not leases (KCL 3.x metadata), left untouched."
    );
    describe_counter!(
        "tradeflow_consumer_leases_inferred_finished_total",
        "Lease rows created at SHARD_END for shards a previous owner finished (from the lineage)."
    );
    describe_counter!(
        "tradeflow_consumer_read_budget_waits_total",
        "GetRecords calls that waited for room in the read budget."
    );
    describe_counter!(
        "tradeflow_consumer_redis_reconnects_total",
        "Redis Cluster connections rebuilt after a call made no progress."
    );
    describe_gauge!(
        "tradeflow_consumer_shards_lineage_unknown",
        "Listed shards without a lease row whose lineage the table cannot settle (no row written)."
    );
    describe_counter!(
        "tradeflow_consumer_shard_task_failures_total",
        "Shard tasks that failed or panicked (their lease is given up), by reason."
    );
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
    describe_counter!(
        "tradeflow_consumer_records_after_shard_end_total",
        "User records found on a second look after the service had reported the shard's end (an emulator race; 0 on Kinesis)."
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
    describe_counter!(
        "tradeflow_consumer_stream_resets_total",
        "Starts with --reset-recreated-stream that found the stream recreated and forgot the old stream's positions."
    );
    describe_counter!(
        "tradeflow_consumer_shard_ends_unconfirmed_total",
        "SHARD_END checkpoints written without Redis confirming the shard's last writes durable (Redis < 7.2 has no WAITAOF, or it has neither AOF nor a replica)."
    );
    describe_counter!(
        "tradeflow_consumer_leases_created_total",
        "Lease rows created for newly discovered shards."
    );
    describe_counter!(
        "tradeflow_consumer_leases_deleted_total",
        "Finished lease rows deleted because their shard aged out of the stream."
    );
    describe_counter!(
        "tradeflow_consumer_lease_renewal_failures_total",
        "Lease renewals that failed (the lease is lost if none succeeds within the failover time)."
    );
    describe_counter!(
        "tradeflow_consumer_lease_rows_unreadable_total",
        "Lease table rows that could not be parsed (skipped, never taken)."
    );
    describe_gauge!(
        "tradeflow_consumer_shards_discovered",
        "Shards listed by the last shard sync."
    );
    describe_counter!(
        "tradeflow_consumer_kinesis_requests_total",
        "Kinesis control-plane requests (ListShards), by operation."
    );
    describe_counter!(
        "tradeflow_consumer_bad_sequence_numbers_total",
        "Records whose sequence number could not be parsed (skipped)."
    );
    describe_counter!(
        "tradeflow_consumer_trades_applied_total",
        "Trades applied to the Redis totals (each exactly once)."
    );
    describe_counter!(
        "tradeflow_consumer_duplicates_skipped_total",
        "Redelivered trades recognised and skipped by the exactly-once sink."
    );
    describe_counter!(
        "tradeflow_consumer_late_trades_dropped_total",
        "Trades that arrived for a trade-id gap evicted long ago (not applied)."
    );
    describe_counter!(
        "tradeflow_consumer_batches_skipped_total",
        "Batches entirely at or below the shard's applied position (replays)."
    );
    describe_counter!(
        "tradeflow_consumer_poison_records_total",
        "Records that are not valid trades, kept aside in the dead-letter stream, by kind."
    );
    describe_histogram!(
        "tradeflow_consumer_redis_batch_seconds",
        Unit::Seconds,
        "Time to apply one batch to Redis."
    );
    describe_counter!(
        "tradeflow_consumer_redis_errors_total",
        "Redis errors while applying batches, by kind (the shard pauses and retries)."
    );
    describe_counter!(
        "tradeflow_consumer_redis_round_trips_total",
        "Redis round trips made by the sink."
    );
    describe_counter!(
        "tradeflow_consumer_redis_rewinds_total",
        "Shards re-read because Redis held less than was applied (it lost writes)."
    );
    describe_counter!(
        "tradeflow_consumer_fanout_subscriptions_total",
        "Enhanced fan-out subscriptions opened (SubscribeToShard; renewed every 5 minutes)."
    );
    describe_counter!(
        "tradeflow_consumer_fanout_errors_total",
        "Enhanced fan-out subscriptions that failed or ended early, by kind (retried with backoff)."
    );
    // Counters of rare events exist at 0 from the start, so `increase()` in alerts sees
    // the first one and a scrape shows they are exported.
    for name in [
        "tradeflow_consumer_leases_taken_total",
        "tradeflow_consumer_leases_stolen_total",
        "tradeflow_consumer_leases_lost_total",
        "tradeflow_consumer_leases_released_total",
        "tradeflow_consumer_expired_iterators_total",
        "tradeflow_consumer_getrecords_throttled_total",
        "tradeflow_consumer_getrecords_errors_total",
        "tradeflow_consumer_shards_ended_total",
        "tradeflow_consumer_shard_ends_unconfirmed_total",
        "tradeflow_consumer_trades_applied_total",
        "tradeflow_consumer_duplicates_skipped_total",
        "tradeflow_consumer_late_trades_dropped_total",
        "tradeflow_consumer_batches_skipped_total",
        "tradeflow_consumer_lease_renewal_failures_total",
        "tradeflow_consumer_redis_round_trips_total",
        "tradeflow_consumer_redis_rewinds_total",
        "tradeflow_consumer_records_after_shard_end_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("tradeflow_consumer_leases_held").set(0.0);
}
