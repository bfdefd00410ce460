//! The bench's own Redis connection (counts and INFO), on one Redis or a cluster,
//! counting the commands it sends so they can be taken out of the server's total.

use std::collections::BTreeMap;

use tradeflow_shared::testkit::RedisCluster;

use super::run::{setup, Result};

/// Our own Redis connection (counts and INFO), counting the commands it sends so they
/// can be taken out of the server's total.
pub struct Redis {
    con: Con,
    /// Commands of ours sent to one Redis (not counted on a cluster).
    pub sent: u64,
}

enum Con {
    Single(redis::Connection),
    /// The cluster client (KEYS fans out to every primary, MGET splits by slot) and a
    /// direct connection to each primary for its INFO.
    Cluster {
        con: Box<redis::cluster::ClusterConnection>,
        primaries: Vec<redis::Connection>,
    },
}

impl Redis {
    pub fn open(url: &str) -> Result<Self> {
        let con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .map_err(setup)?;
        Ok(Redis {
            con: Con::Single(con),
            sent: 0,
        })
    }

    pub fn open_cluster(c: &RedisCluster) -> Result<Self> {
        let url = |i: usize| format!("redis://127.0.0.1:{}", c.nodes[i].port);
        let all: Vec<String> = (0..c.nodes.len()).map(url).collect();
        let con = redis::cluster::ClusterClient::new(all)
            .and_then(|cl| cl.get_connection())
            .map_err(setup)?;
        let primaries = c
            .primaries()
            .into_iter()
            .map(|i| {
                redis::Client::open(url(i))
                    .and_then(|cl| cl.get_connection())
                    .map_err(setup)
            })
            .collect::<Result<_>>()?;
        Ok(Redis {
            con: Con::Cluster {
                con: Box::new(con),
                primaries,
            },
            sent: 0,
        })
    }

    /// Sends one of our own commands (counted on one Redis; on a cluster our kinds are
    /// taken out by name, see `commands_processed`).
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T> {
        match &mut self.con {
            Con::Single(c) => {
                self.sent += 1;
                cmd.query(c)
            }
            Con::Cluster { con, .. } => cmd.query(con.as_mut()),
        }
        .map_err(setup)
    }

    /// `symbol:<SYMBOL>` counts (the seed's key family) of this db.
    pub fn counts(&mut self) -> Result<BTreeMap<String, u64>> {
        let keys: Vec<String> = self.query(redis::cmd("KEYS").arg("symbol:*"))?;
        if keys.is_empty() {
            return Ok(BTreeMap::new());
        }
        let vals: Vec<Option<u64>> = self.query(redis::cmd("MGET").arg(&keys))?;
        Ok(keys
            .into_iter()
            .zip(vals)
            .map(|(k, v)| (k, v.unwrap_or(0)))
            .collect())
    }

    /// Commands the server(s) processed for others. One Redis: its total less ours. A
    /// cluster: the primaries' totals less the calls of our own kinds (KEYS, MGET and
    /// INFO reach several nodes each, so they are not counted one by one).
    pub fn commands_processed(&mut self) -> Result<f64> {
        let field = |info: &str, key: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().trim_start_matches("calls=").parse().ok())
                .unwrap_or(0.0)
        };
        match &mut self.con {
            Con::Single(c) => {
                self.sent += 1;
                let info: String = redis::cmd("INFO").arg("stats").query(c).map_err(setup)?;
                Ok(field(&info, "total_commands_processed:"))
            }
            Con::Cluster { primaries, .. } => {
                let mut n = 0.0;
                for c in primaries {
                    let info: String = redis::cmd("INFO")
                        .arg("everything")
                        .query(c)
                        .map_err(setup)?;
                    n += field(&info, "total_commands_processed:");
                    for ours in ["cmdstat_keys:", "cmdstat_mget:", "cmdstat_info:"] {
                        n -= field(&info, ours);
                    }
                }
                Ok(n)
            }
        }
    }
}

/// Trades counted over every symbol.
pub fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}
