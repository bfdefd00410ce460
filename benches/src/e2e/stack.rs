//! The servers of one end-to-end configuration (testkit: redis-server or a Redis
//! Cluster, dynalite, ferrokinesis on free loopback ports, stopped on drop) and where
//! the binaries and the Python venv are.

use std::path::{Path, PathBuf};

use tradeflow_shared::testkit::{self, RedisCluster, Service};

use super::procstat::Tracker;
use super::redis::Redis;
use super::run::{setup, E2eError, Result};

/// Where the binaries and the Python venv are.
#[derive(Clone, Debug)]
pub struct Paths {
    pub producer: PathBuf,
    pub consumer: PathBuf,
    pub python: PathBuf,
    pub baseline_script: PathBuf,
    pub logs: PathBuf,
}

impl Paths {
    /// The binaries of the bench's own profile (`target/<profile>/`), which `cargo
    /// build` (tests) or `cargo build --release` (`cargo bench`) must have built.
    pub fn discover(bin_dir: &Path, logs: &Path) -> Result<Self> {
        let root = testkit::workspace_root();
        let p = Paths {
            producer: bin_dir.join("tradeflow-producer"),
            consumer: bin_dir.join("tradeflow-consumer"),
            python: testkit::tools_dir().join("python-bench/bin/python"),
            baseline_script: root.join("benches/baseline/seed_consumer.py"),
            logs: logs.to_path_buf(),
        };
        for b in [&p.producer, &p.consumer] {
            if !b.is_file() {
                return Err(E2eError::Setup(format!(
                    "{} is missing: build it first with `cargo build{} -p tradeflow-producer -p tradeflow-consumer`",
                    b.display(),
                    if bin_dir.ends_with("release") { " --release" } else { "" }
                )));
            }
        }
        Ok(p)
    }
}

/// Where the consumers count: one redis-server, or a Redis Cluster.
pub enum RedisSide {
    Single(Service),
    /// 3 primaries with a replica each (the consumers `WAIT` for the replicas).
    Cluster(RedisCluster),
}

/// Redis, dynalite and ferrokinesis for one configuration.
pub struct Stack {
    pub redis: RedisSide,
    pub dynalite: Service,
    pub kinesis: Service,
}

impl Stack {
    pub fn start() -> Self {
        Self::start_with(RedisSide::Single(testkit::redis()))
    }

    /// The same stack counting into a Redis Cluster of 3 primaries, a replica each.
    pub fn start_cluster() -> Self {
        Self::start_with(RedisSide::Cluster(RedisCluster::start(3, 1)))
    }

    fn start_with(redis: RedisSide) -> Self {
        testkit::local_aws_env();
        Stack {
            redis,
            dynalite: testkit::dynalite(),
            // In memory: its write-ahead log (records as JSON number arrays) grew to
            // 18 GB over a 1M-trade run and bounded its throughput. No periodic
            // snapshots either: they re-serialise every stored record and stall
            // PutRecords for seconds once a few hundred MB are held.
            kinesis: testkit::ferrokinesis_volatile(&[
                "--create-stream-ms",
                "0",
                "--shard-limit",
                "500",
                "--snapshot-interval-secs",
                "0",
            ]),
        }
    }

    pub(crate) fn redis_url(&self, db: u32) -> String {
        match &self.redis {
            RedisSide::Single(r) => format!("redis://127.0.0.1:{}/{db}", r.port),
            // A cluster has database 0 only: a phase on a cluster gets a stack of its own.
            RedisSide::Cluster(c) => {
                assert_eq!(db, 0, "a Redis Cluster has database 0 only");
                c.url()
            }
        }
    }

    /// The emulators, then every Redis process (one, or each node of a cluster).
    pub(crate) fn trackers(&self) -> Vec<Tracker> {
        let redis: Vec<&Service> = match &self.redis {
            RedisSide::Single(r) => vec![r],
            RedisSide::Cluster(c) => c.nodes.iter().collect(),
        };
        [&self.kinesis, &self.dynalite]
            .into_iter()
            .chain(redis)
            .map(|s| Tracker::new(s.pid().unwrap_or(0)))
            .collect()
    }

    pub(crate) fn open_redis(&self, db: u32) -> Result<Redis> {
        match &self.redis {
            RedisSide::Single(_) => Redis::open(&self.redis_url(db)),
            RedisSide::Cluster(c) => Redis::open_cluster(c),
        }
    }
}

/// Creates the stream with the SDK the binaries use and waits until it is ACTIVE.
pub fn create_stream(endpoint: &str, name: &str, shards: u32) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(setup)?;
    rt.block_on(testkit::create_stream_at(endpoint, name, shards as i32))
        .map_err(setup)
}
