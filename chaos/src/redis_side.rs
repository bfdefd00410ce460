//! The Redis the run counts into: one `redis-server`, or a Redis Cluster of 3 primaries
//! with a replica each (`--redis-cluster`). Its fault, and how the verdict reads it back
//! — by the key names of the README's data model, with a client of its own, never
//! through the product's reader.

use std::collections::{BTreeMap, BTreeSet};

use redis::aio::ConnectionLike;
use tradeflow_exchange::SymbolTotals;
use tradeflow_shared::testkit::{self, RedisCluster, Service};

use crate::verify::Observed;

pub enum RedisUnderTest {
    Single(Service),
    Cluster { cluster: RedisCluster },
}

impl RedisUnderTest {
    pub fn start(cluster: bool) -> RedisUnderTest {
        if cluster {
            RedisUnderTest::Cluster {
                cluster: RedisCluster::start(3, 1),
            }
        } else {
            RedisUnderTest::Single(testkit::redis())
        }
    }

    /// What the consumers are given as `--redis-url`.
    pub fn url(&self) -> String {
        match self {
            RedisUnderTest::Single(s) => format!("redis://127.0.0.1:{}", s.port),
            RedisUnderTest::Cluster { cluster } => cluster.url(),
        }
    }

    /// One Redis: restarted (SIGTERM, AOF replayed). A cluster: 1,000 slots migrated
    /// from one primary to the next while the consumers write, then one primary killed
    /// and replaced by its replica (and restarted as a replica). Blocks until the
    /// cluster is whole again. Returns what was done.
    pub fn fault(&mut self, pick: usize) -> &'static str {
        match self {
            RedisUnderTest::Single(s) => {
                s.restart();
                "restart"
            }
            RedisUnderTest::Cluster { cluster } => {
                let p = cluster.primaries();
                let (from, to) = (p[pick % p.len()], p[(pick + 1) % p.len()]);
                cluster.reshard(from, to, 1000);
                let p = cluster.primaries();
                cluster.fail_over(p[(pick + 2) % p.len()]);
                "slot migration, then failover"
            }
        }
    }

    /// The servers' logs, for a failed run.
    pub fn logs(&self) -> Vec<(String, String)> {
        match self {
            RedisUnderTest::Single(s) => vec![("redis".into(), s.log())],
            RedisUnderTest::Cluster { cluster } => cluster
                .nodes
                .iter()
                .map(|n| (format!("redis-{}", n.port), n.log()))
                .collect(),
        }
    }

    /// Redis's totals for every symbol of the truth and every symbol Redis knows.
    pub async fn read(&self, truth: &BTreeMap<String, SymbolTotals>) -> BTreeMap<String, Observed> {
        match self.connect().await {
            Ok(Conn::Single(mut c)) => read_with(&mut c, false, truth).await,
            Ok(Conn::Cluster(mut c)) => read_with(&mut c, true, truth).await,
            Err(_) => BTreeMap::new(),
        }
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        Ok(match self {
            RedisUnderTest::Single(_) => Conn::Single(
                redis::Client::open(self.url())?
                    .get_multiplexed_async_connection()
                    .await?,
            ),
            RedisUnderTest::Cluster { cluster } => {
                let nodes: Vec<String> = cluster
                    .nodes
                    .iter()
                    .map(|n| format!("redis://127.0.0.1:{}", n.port))
                    .collect();
                Conn::Cluster(
                    redis::cluster::ClusterClient::new(nodes)?
                        .get_async_connection()
                        .await?,
                )
            }
        })
    }
}

enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Reads with the README's key names: `tradeflow:symbols` and `tradeflow:stats:SYM` on
/// one Redis, `tradeflow:{meta}:symbols` and `tradeflow:stats:{symbol:SYM}` on a cluster.
async fn read_with<C: ConnectionLike + Send>(
    con: &mut C,
    cluster: bool,
    truth: &BTreeMap<String, SymbolTotals>,
) -> BTreeMap<String, Observed> {
    let index = if cluster {
        "tradeflow:{meta}:symbols"
    } else {
        "tradeflow:symbols"
    };
    let known: Vec<String> = redis::cmd("SMEMBERS")
        .arg(index)
        .query_async(con)
        .await
        .unwrap_or_default();
    let all: BTreeSet<String> = truth.keys().cloned().chain(known).collect();
    let mut out = BTreeMap::new();
    for sym in all {
        let stats = if cluster {
            format!("tradeflow:stats:{{symbol:{sym}}}")
        } else {
            format!("tradeflow:stats:{sym}")
        };
        let count: Option<u64> = redis::cmd("GET")
            .arg(format!("symbol:{sym}"))
            .query_async(con)
            .await
            .unwrap_or(None);
        let (base, quote): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(stats)
            .arg("base")
            .arg("quote")
            .query_async(con)
            .await
            .unwrap_or((None, None));
        if count.is_some() || truth.contains_key(&sym) {
            out.insert(
                sym,
                Observed {
                    count: count.unwrap_or(0),
                    base,
                    quote,
                },
            );
        }
    }
    out
}
