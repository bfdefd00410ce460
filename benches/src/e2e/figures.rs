//! The figures of one end-to-end run and what is derived from them (per million
//! trades, per shard and second, cores used), with their JSON. Pure: the runner fills
//! [`Phase`] and [`Baseline`].

use serde_json::{json, Value};

/// Raw measurements of one producer → Kinesis → consumer(s) → Redis pass.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// "aggregated" (KPL) or "plain" (one trade per Kinesis record).
    pub label: String,
    pub shards: u32,
    pub consumers: u32,
    pub trades: u64,
    /// From the producer's start until Redis held exactly `trades`.
    pub seconds: f64,
    pub producer_cpu: f64,
    pub producer_rss_kib: u64,
    /// All consumer processes together, over the same window.
    pub consumer_cpu: f64,
    /// The largest peak RSS among the consumer processes.
    pub consumer_rss_kib: u64,
    /// How long the consumers ran (start → counts exact), for the per-second rates.
    pub consumer_seconds: f64,
    pub emulator_cpu: f64,
    pub dynamodb_emulator_cpu: f64,
    pub redis_cpu: f64,
    /// `tradeflow_consumer_redis_round_trips_total`, all consumers.
    pub redis_round_trips: f64,
    /// Redis `total_commands_processed` delta, the bench's own commands removed.
    pub redis_commands: f64,
    /// `tradeflow_consumer_getrecords_total`, all shards and consumers.
    pub getrecords_calls: f64,
    /// `tradeflow_consumer_dynamodb_requests_total` of put_item + update_item.
    pub dynamodb_writes: f64,
    /// `tradeflow_producer_put_payload_units_total` at the producer's last scrape ...
    pub payload_units: f64,
    /// ... and `tradeflow_producer_trades_written_total` in that same scrape.
    pub trades_written_at_scrape: f64,
    pub put_records_calls: f64,
}

/// The Python per-record consumer (the seed's way) over `records` records.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    pub records: u64,
    /// CPU while reading and counting (its own getrusage around the loop).
    pub cpu_seconds: f64,
    /// Its whole life from /proc, interpreter start and imports included.
    pub cpu_seconds_total: f64,
    pub rss_kib: u64,
    pub seconds: f64,
    pub redis_commands: f64,
    pub getrecords_calls: f64,
}

pub(crate) fn per_million(x: f64, trades: f64) -> f64 {
    if trades > 0.0 {
        x / trades * 1e6
    } else {
        0.0
    }
}

pub(crate) fn ratio(x: f64, over: f64) -> f64 {
    if over > 0.0 {
        x / over
    } else {
        0.0
    }
}

impl Phase {
    pub fn trades_per_sec(&self) -> f64 {
        ratio(self.trades as f64, self.seconds)
    }
    pub fn producer_cpu_per_m(&self) -> f64 {
        per_million(self.producer_cpu, self.trades as f64)
    }
    pub fn consumer_cpu_per_m(&self) -> f64 {
        per_million(self.consumer_cpu, self.trades as f64)
    }
    /// Cores busy on average: CPU seconds over wall seconds.
    pub fn producer_cores(&self) -> f64 {
        ratio(self.producer_cpu, self.seconds)
    }
    /// Over the consumers' own run (they may start after the producer finished).
    pub fn consumer_cores(&self) -> f64 {
        ratio(self.consumer_cpu, self.consumer_seconds)
    }
    pub fn emulator_cores(&self) -> f64 {
        ratio(self.emulator_cpu, self.seconds)
    }
    pub fn redis_round_trips_per_m(&self) -> f64 {
        per_million(self.redis_round_trips, self.trades as f64)
    }
    pub fn redis_commands_per_m(&self) -> f64 {
        per_million(self.redis_commands, self.trades as f64)
    }
    pub fn getrecords_per_shard_sec(&self) -> f64 {
        ratio(
            self.getrecords_calls,
            f64::from(self.shards) * self.consumer_seconds,
        )
    }
    pub fn dynamodb_writes_per_shard_min(&self) -> f64 {
        ratio(
            self.dynamodb_writes,
            f64::from(self.shards) * self.consumer_seconds / 60.0,
        )
    }
    /// A ratio from one scrape, so a scrape that missed the last PutRecords still
    /// gives the right figure.
    pub fn payload_units_per_m(&self) -> f64 {
        per_million(self.payload_units, self.trades_written_at_scrape)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "shards": self.shards,
            "consumers": self.consumers,
            "trades": self.trades,
            "seconds": self.seconds,
            "trades_per_sec": self.trades_per_sec(),
            "producer_cpu_seconds": self.producer_cpu,
            "producer_cpu_seconds_per_million": self.producer_cpu_per_m(),
            "producer_peak_rss_kib": self.producer_rss_kib,
            "producer_cores": self.producer_cores(),
            "consumer_cpu_seconds": self.consumer_cpu,
            "consumer_cpu_seconds_per_million": self.consumer_cpu_per_m(),
            "consumer_peak_rss_kib": self.consumer_rss_kib,
            "consumer_cores": self.consumer_cores(),
            "emulator_cpu_seconds": self.emulator_cpu,
            "emulator_cores": self.emulator_cores(),
            "dynamodb_emulator_cpu_seconds": self.dynamodb_emulator_cpu,
            "redis_cpu_seconds": self.redis_cpu,
            "redis_round_trips_per_million": self.redis_round_trips_per_m(),
            "redis_commands_per_million": self.redis_commands_per_m(),
            "getrecords_per_shard_per_sec": self.getrecords_per_shard_sec(),
            "dynamodb_writes_per_shard_per_min": self.dynamodb_writes_per_shard_min(),
            "put_payload_units_per_million": self.payload_units_per_m(),
            "put_records_calls": self.put_records_calls,
        })
    }
}

impl Baseline {
    pub fn cpu_per_m(&self) -> f64 {
        per_million(self.cpu_seconds, self.records as f64)
    }
    pub fn cpu_total_per_m(&self) -> f64 {
        per_million(self.cpu_seconds_total, self.records as f64)
    }
    pub fn records_per_sec(&self) -> f64 {
        ratio(self.records as f64, self.seconds)
    }
    pub fn redis_commands_per_m(&self) -> f64 {
        per_million(self.redis_commands, self.records as f64)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "cpu_seconds_loop": self.cpu_seconds,
            "cpu_seconds_per_million_loop": self.cpu_per_m(),
            "cpu_seconds_total": self.cpu_seconds_total,
            "cpu_seconds_per_million_total": self.cpu_total_per_m(),
            "peak_rss_kib": self.rss_kib,
            "redis_commands_per_million": self.redis_commands_per_m(),
            "getrecords_calls": self.getrecords_calls,
        })
    }
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A plain 4-shard run, for the tests of the figures, goals and tables.
#[cfg(test)]
pub(crate) fn sample_phase() -> Phase {
    Phase {
        label: "plain".into(),
        shards: 4,
        consumers: 1,
        trades: 200_000,
        seconds: 20.0,
        producer_cpu: 2.0,
        producer_rss_kib: 20 * 1024,
        consumer_cpu: 1.0,
        consumer_rss_kib: 30 * 1024,
        consumer_seconds: 25.0,
        emulator_cpu: 30.0,
        redis_round_trips: 400.0,
        getrecords_calls: 200.0,
        dynamodb_writes: 100.0,
        payload_units: 1_000.0,
        trades_written_at_scrape: 100_000.0,
        ..Phase::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_figures() {
        let p = sample_phase();
        assert_eq!(p.trades_per_sec(), 10_000.0);
        assert_eq!(p.producer_cpu_per_m(), 10.0);
        assert_eq!(p.consumer_cpu_per_m(), 5.0);
        assert_eq!(p.consumer_cores(), 0.04);
        assert_eq!(p.emulator_cores(), 1.5);
        assert_eq!(p.redis_round_trips_per_m(), 2_000.0);
        assert_eq!(p.getrecords_per_shard_sec(), 2.0);
        assert_eq!(p.dynamodb_writes_per_shard_min(), 60.0);
        // From the scrape's own ratio, not the full trade count.
        assert_eq!(p.payload_units_per_m(), 10_000.0);
        assert_eq!(Phase::default().trades_per_sec(), 0.0);
        assert_eq!(p.to_json()["consumer_cpu_seconds_per_million"], 5.0);
    }
}
