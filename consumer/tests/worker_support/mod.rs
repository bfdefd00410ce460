//! Consumer workers run in the test's own process against real local servers: dynalite
//! and ferrokinesis with their clients, a worker's flags, BTCUSDT trades written one
//! record each, and the count read back from Redis. The tests that drive
//! `worker::run` (shard ends, recreated streams, worker faults) share it.

use std::ops::RangeInclusive;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use clap::Parser;
use redis::AsyncCommands;
use tradeflow_consumer::config::Config;
use tradeflow_consumer::lease::{Lease, LeaseTable};
use tradeflow_shared::testkit::{self, Service};

/// dynalite and ferrokinesis (volatile) with their clients.
pub struct Aws {
    pub dynalite: Service,
    pub emulator: Service,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Aws {
    pub async fn start() -> Aws {
        testkit::local_aws_env();
        let dynalite = testkit::dynalite();
        let emulator = testkit::ferrokinesis_volatile(&[]);
        let (kinesis, dynamodb) =
            testkit::clients_at(&emulator.endpoint(), &dynalite.endpoint()).await;
        Aws {
            dynalite,
            emulator,
            kinesis,
            dynamodb,
        }
    }

    /// A worker's flags: `stream`, application `<stream>-app`, these servers, a 100 ms
    /// idle poll, then `extra`.
    pub fn config(&self, redis_url: &str, stream: &str, worker: &str, extra: &[&str]) -> Config {
        let app = format!("{stream}-app");
        let (kinesis, dynamodb) = (self.emulator.endpoint(), self.dynalite.endpoint());
        let mut args = vec![
            "tradeflow-consumer",
            "--stream",
            stream,
            "--application-name",
            &app,
            "--worker-id",
            worker,
            "--redis-url",
            redis_url,
            "--kinesis-endpoint",
            &kinesis,
            "--dynamodb-endpoint",
            &dynamodb,
            "--idle-interval",
            "100ms",
            "--idle-max-wait",
            "400ms",
        ];
        args.extend_from_slice(extra);
        Config::try_parse_from(args).expect("consumer flags")
    }

    /// The lease table the worker of `stream` uses.
    pub fn table(&self, stream: &str) -> LeaseTable {
        LeaseTable::new(self.dynamodb.clone(), format!("{stream}-app"))
    }

    pub async fn create_stream(&self, stream: &str, shards: i32) {
        testkit::create_active_stream(&self.kinesis, stream, shards)
            .await
            .unwrap();
    }

    /// BTCUSDT trades with these ids, one record each, in order.
    pub async fn put(&self, stream: &str, ids: RangeInclusive<u64>) {
        for id in ids {
            self.kinesis
                .put_record()
                .stream_name(stream)
                .partition_key("BTCUSDT")
                .data(trade(id))
                .send()
                .await
                .unwrap();
        }
    }
}

/// One BTCUSDT trade as Binance sends it.
pub fn trade(id: u64) -> Blob {
    Blob::new(format!(
        r#"{{"e":"trade","E":1717000000001,"s":"BTCUSDT","t":{id},"p":"61234.5","q":"0.1","T":1717000000001,"m":false,"M":true}}"#
    ))
}

pub async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// BTCUSDT's trade count (0 before the first).
pub async fn count(con: &mut redis::aio::MultiplexedConnection) -> i64 {
    let c: Option<i64> = con.get("symbol:BTCUSDT").await.unwrap();
    c.unwrap_or(0)
}

/// Polls BTCUSDT's count until it is `want` or 15 s pass; returns the last one seen.
pub async fn wait_count(con: &mut redis::aio::MultiplexedConnection, want: i64) -> i64 {
    let mut c = 0;
    for _ in 0..150 {
        c = count(con).await;
        if c == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

/// The lease row of `shard`, if the table can be read and has one.
pub async fn lease(table: &LeaseTable, shard: &str) -> Option<Lease> {
    table
        .list()
        .await
        .ok()?
        .into_iter()
        .find(|l| l.shard_id == shard)
}
