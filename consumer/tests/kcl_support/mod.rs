//! What the KCL migration test needs around the real KCL 3.x worker: the servers
//! (redis-server, dynalite, kinesis-mock — it fills `ChildShards`, as the KCL expects),
//! trades written straight to the stream, the Python KCL application
//! (`kcl_counter.py` on kcl-rs, from the venv scripts/install-tools makes) and
//! tradeflow-consumer as child processes stopped by pid, reshards, and reads of Redis
//! and of the raw lease table.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tradeflow_shared::testkit::{self, Service};

use crate::e2e_support::{bin, redis_counts, Proc};

pub const STREAM: &str = "crypto";
/// The KCL application name, hence the lease table both applications share.
pub const APP: &str = "crypto-counter";
pub const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "LTCUSDT"];

pub type Item = HashMap<String, AttributeValue>;

pub struct Migration {
    pub redis: Service,
    pub dynamodb: Service,
    pub kinesis: Service,
    pub dir: tempfile::TempDir,
    pub kin: aws_sdk_kinesis::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    /// Trades written so far, per symbol.
    pub written: BTreeMap<String, u64>,
    next_id: u64,
}

impl Migration {
    pub async fn start() -> Migration {
        testkit::local_aws_env();
        let kinesis = testkit::kinesis_mock();
        let dynamodb = testkit::dynalite();
        let redis = testkit::redis();
        let (kin, ddb) = testkit::clients_at(&kinesis.endpoint(), &dynamodb.endpoint()).await;
        testkit::create_active_stream(&kin, STREAM, 2)
            .await
            .expect("stream");
        Migration {
            redis,
            dynamodb,
            kinesis,
            dir: tempfile::tempdir().expect("temp dir"),
            kin,
            ddb,
            written: SYMBOLS.iter().map(|s| (s.to_string(), 0)).collect(),
            next_id: 1,
        }
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis.port)
    }

    /// Writes `n` trades (plain JSON records, one per trade, spread over the shards by
    /// their partition keys), round robin over the symbols.
    pub async fn write_trades(&mut self, n: u64) {
        let mut batch = Vec::new();
        for _ in 0..n {
            let id = self.next_id;
            self.next_id += 1;
            let sym = SYMBOLS[(id % SYMBOLS.len() as u64) as usize];
            let t = 1_717_000_000_000 + id;
            let json = format!(
                r#"{{"e":"trade","E":{t},"s":"{sym}","t":{id},"p":"100.5","q":"0.00100000","T":{t},"m":false,"M":true}}"#
            );
            batch.push(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(json))
                    .partition_key(format!("pk-{id}"))
                    .build()
                    .expect("entry"),
            );
            *self.written.get_mut(sym).expect("symbol") += 1;
            if batch.len() == 250 {
                self.put(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            self.put(batch).await;
        }
    }

    async fn put(&self, entries: Vec<PutRecordsRequestEntry>) {
        let out = self
            .kin
            .put_records()
            .stream_name(STREAM)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(
            out.failed_record_count(),
            Some(0),
            "PutRecords had failures"
        );
    }

    /// Splits `shard` at the middle of its hash range; returns the two children.
    pub async fn split(&self, shard: &str) -> (String, String) {
        let before = self.open_shards().await;
        let s = self
            .shards()
            .await
            .into_iter()
            .find(|s| s.shard_id() == shard)
            .expect("shard listed");
        let range = s.hash_key_range().expect("hash range");
        let lo: u128 = range.starting_hash_key().parse().expect("hash key");
        let hi: u128 = range.ending_hash_key().parse().expect("hash key");
        self.kin
            .split_shard()
            .stream_name(STREAM)
            .shard_to_split(shard)
            .new_starting_hash_key((lo + (hi - lo) / 2 + 1).to_string())
            .send()
            .await
            .expect("SplitShard");
        self.wait_active().await;
        let mut new: Vec<String> = self
            .open_shards()
            .await
            .into_iter()
            .filter(|s| !before.contains(s))
            .collect();
        new.sort();
        assert_eq!(new.len(), 2, "split made {new:?}");
        (new[0].clone(), new[1].clone())
    }

    /// Merges two adjacent open shards; returns the child.
    pub async fn merge(&self, a: &str, b: &str) -> String {
        let before = self.open_shards().await;
        self.kin
            .merge_shards()
            .stream_name(STREAM)
            .shard_to_merge(a)
            .adjacent_shard_to_merge(b)
            .send()
            .await
            .expect("MergeShards");
        self.wait_active().await;
        let new: Vec<String> = self
            .open_shards()
            .await
            .into_iter()
            .filter(|s| !before.contains(s))
            .collect();
        assert_eq!(new.len(), 1, "merge made {new:?}");
        new[0].clone()
    }

    async fn shards(&self) -> Vec<aws_sdk_kinesis::types::Shard> {
        self.kin
            .list_shards()
            .stream_name(STREAM)
            .send()
            .await
            .expect("ListShards")
            .shards()
            .to_vec()
    }

    async fn open_shards(&self) -> Vec<String> {
        self.shards()
            .await
            .into_iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .map(|s| s.shard_id().to_string())
            .collect()
    }

    async fn wait_active(&self) {
        testkit::wait_stream_active(&self.kin, STREAM, Duration::from_secs(30))
            .await
            .expect("stream ACTIVE after a reshard");
    }

    /// `symbol:<SYM>` for every symbol.
    pub async fn counts(&self) -> BTreeMap<String, u64> {
        redis_counts(&self.redis_url(), SYMBOLS).await
    }

    /// Waits until Redis counts exactly what was written, then watches `settle` longer
    /// for anything counted twice. Returns the last counts seen.
    pub async fn wait_counted(&self, limit: Duration, settle: Duration) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + limit;
        let mut got = self.counts().await;
        while got != self.written && Instant::now() < deadline {
            if got.iter().any(|(s, n)| *n > self.written[s]) {
                break; // counted twice already: no point waiting
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            got = self.counts().await;
        }
        let until = Instant::now() + settle;
        while got == self.written && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            got = self.counts().await;
        }
        got
    }

    /// [`Migration::wait_counted`] (`limit_s` and `settle_s` in seconds), then Redis must
    /// count exactly what was written (`what` and `p`'s log say where otherwise).
    pub async fn assert_counted(&self, what: &str, p: &Proc, limit_s: u64, settle_s: u64) {
        let limit = Duration::from_secs(limit_s);
        let got = self
            .wait_counted(limit, Duration::from_secs(settle_s))
            .await;
        assert_eq!(
            got,
            self.written,
            "{what} (written {:?}):\n{}",
            self.written,
            p.output()
        );
    }

    /// Every item of the lease table, raw, by `leaseKey`.
    pub async fn items(&self) -> BTreeMap<String, Item> {
        let mut out = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(APP)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("Scan");
            for item in page.items() {
                let key = item["leaseKey"].as_s().expect("leaseKey").clone();
                out.insert(key, item.clone());
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return out,
            }
        }
    }

    /// The KCL 3.x application (kcl-rs), counting into Redis as the legacy consumer did.
    pub fn kcl(&self, name: &str, worker: &str) -> Proc {
        let python = testkit::tools_dir().join("kcl-rs/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/install-tools",
            python.display()
        );
        // `env -i`: the KCL sees only these variables (no stray AWS_ENDPOINT_URL or
        // credentials from the test's environment); every endpoint is on loopback.
        let closed = testkit::free_port(); // CloudWatch: nobody listens; metrics are dropped
        let args: Vec<String> = vec![
            "-i".into(),
            format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
            format!("HOME={}", self.dir.path().display()),
            format!("AWS_ENDPOINT_URL_KINESIS={}", self.kinesis.endpoint()),
            format!("AWS_ENDPOINT_URL_DYNAMODB={}", self.dynamodb.endpoint()),
            format!("AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:{closed}"),
            "AWS_REGION=eu-west-1".into(),
            "AWS_EC2_METADATA_DISABLED=true".into(),
            "RUST_LOG=warn,kcl::metrics=error,kcl::coordinator::scheduler=info".into(),
            python.display().to_string(),
            script().display().to_string(),
            STREAM.into(),
            APP.into(),
            worker.into(),
            self.redis_url(),
            "TRIM_HORIZON".into(),
        ];
        Proc::spawn(
            name,
            &PathBuf::from("/usr/bin/env"),
            &args,
            &[],
            self.dir.path(),
        )
    }

    /// tradeflow-consumer on the KCL's table, stream and Redis.
    pub fn tradeflow(&self, name: &str) -> Proc {
        let flags = [
            "--initial-position",
            "trim-horizon",
            "--shard-sync-interval",
            "5s",
        ];
        let env = testkit::binary_env(
            &self.kinesis.endpoint(),
            &self.dynamodb.endpoint(),
            &self.redis_url(),
        );
        Proc::spawn(
            name,
            &bin("tradeflow-consumer"),
            &testkit::consumer_args(STREAM, APP, name, &flags),
            &env,
            self.dir.path(),
        )
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kcl_support/kcl_counter.py")
}

pub fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

/// Polls `f` every 250 ms (each look reads the lease table or Redis) until it holds, or
/// panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait_until_every(what, limit, Duration::from_millis(250), f).await
}
