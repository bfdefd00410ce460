//! One way to reach Redis for the consumer's sink and the report: a single server through a
//! self-reconnecting [`ConnectionManager`], or a Redis Cluster through the `redis`
//! crate's own cluster client (slot routing, MOVED/ASK redirections, TRYAGAIN and
//! failover retries are the crate's, not ours).
//!
//! A cluster is named by `redis+cluster://[user:password@]host:port[,host:port…]` (or
//! `rediss+cluster://` for TLS): the seed nodes, from which the client learns the rest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use crate::redact::{redact_url, scrub_text, url_password};
use crate::redis_keys::Layout;

/// Why a connection could not be made. Each side turns it into its own error (the
/// consumer's sink classifies the Redis error as retryable or not); neither `Display`
/// nor `Debug` shows the password.
#[derive(thiserror::Error)]
pub enum ConnError {
    /// The URL or the CA file is unusable.
    #[error("{0}")]
    Config(String),
    /// Redis refused or did not answer.
    #[error("Redis at {url}: {}", scrub_text(&.error.to_string(), .password.as_deref()))]
    Redis {
        /// Redacted.
        url: String,
        /// To scrub the server's and the client's messages (never shown).
        password: Option<String>,
        error: RedisError,
    },
}

impl std::fmt::Debug for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Config(m) => f.debug_tuple("Config").field(m).finish(),
            ConnError::Redis { url, error, .. } => f
                .debug_struct("Redis")
                .field("url", url)
                .field("kind", &error.kind())
                .field("message", &self.to_string())
                .finish(),
        }
    }
}

/// What `--redis-url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://…` or `rediss://…`: one server.
    Single(String),
    /// `redis+cluster://…`: seed node URLs, each `redis[s]://[user:password@]host:port`.
    Cluster(Vec<String>),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, ConnError> {
        let bad = |why: &str| {
            ConnError::Config(format!(
                "Redis URL {}: {why}",
                scrub_text(&redact_url(url), url_password(url).as_deref())
            ))
        };
        let (scheme, rest) = match url.split_once("://") {
            Some(("redis+cluster", rest)) => ("redis", rest),
            Some(("rediss+cluster", rest)) => ("rediss", rest),
            Some(_) => return Ok(Target::Single(url.to_string())),
            None => return Err(bad("no scheme (redis://, rediss://, redis+cluster://)")),
        };
        // Credentials apply to every node; a path (database) has no meaning on a cluster.
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        if hosts.contains('/') || hosts.contains('?') {
            return Err(bad("a cluster URL takes no database or options"));
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect();
        if nodes.is_empty() {
            return Err(bad("no seed node"));
        }
        Ok(Target::Cluster(nodes))
    }

    pub fn layout(&self) -> Layout {
        match self {
            Target::Single(_) => Layout::Single,
            Target::Cluster(_) => Layout::Cluster,
        }
    }
}

/// A cluster call that makes no progress for this long is abandoned and the cluster
/// connection rebuilt. After a failover the crate's cluster client was once seen to send
/// nothing for minutes, every request ending in its own timeout and the next one stuck
/// again; a fresh client learns the topology anew. Longer than the client's own retry
/// sequence during a migration (~15 s), shorter than its overall timeout (30 s).
const CLUSTER_STUCK_AFTER: Duration = Duration::from_secs(20);

/// A connection to one Redis or to a cluster; cheap to clone (both are multiplexed).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(Arc<ClusterHandle>),
}

/// The cluster connection in use, and the client to make a new one with.
pub struct ClusterHandle {
    client: ClusterClient,
    con: Mutex<ClusterConnection>,
}

impl ClusterHandle {
    fn current(&self) -> ClusterConnection {
        self.con.lock().expect("cluster connection").clone()
    }

    /// Runs one call on the current connection; when it makes no progress, replaces the
    /// connection and fails the call (retryable: every caller retries).
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        match tokio::time::timeout(CLUSTER_STUCK_AFTER, f).await {
            Ok(r) => r,
            Err(_) => {
                metrics::counter!("tradeflow_consumer_redis_reconnects_total").increment(1);
                match self.client.get_async_connection().await {
                    Ok(fresh) => {
                        *self.con.lock().expect("cluster connection") = fresh;
                        tracing::warn!(
                            "Redis Cluster call made no progress for {CLUSTER_STUCK_AFTER:?}; cluster connection rebuilt"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis Cluster reconnect failed; will retry")
                    }
                }
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "Redis Cluster call made no progress; connection rebuilt",
                )))
            }
        }
    }
}

impl RedisConn {
    /// Connects (errors redacted); `ca_file` trusts a private CA for `rediss`.
    pub async fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<RedisConn, ConnError> {
        let redacted = redact_url(url);
        let password = url_password(url);
        let failed = |error: RedisError| ConnError::Redis {
            url: redacted.clone(),
            password: password.clone(),
            error,
        };
        let config_err = |e: RedisError| {
            ConnError::Config(format!(
                "Redis URL {redacted}: {}",
                scrub_text(&e.to_string(), password.as_deref())
            ))
        };
        let certs = match ca_file {
            None => None,
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    ConnError::Config(format!("Redis CA file {}: {e}", path.display()))
                })?),
            }),
        };
        match Target::parse(url)? {
            Target::Single(url) => {
                let client = match certs {
                    None => redis::Client::open(url.as_str()),
                    Some(c) => redis::Client::build_with_tls(url.as_str(), c),
                }
                .map_err(config_err)?;
                let mcfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                let con = ConnectionManager::new_with_config(client, mcfg)
                    .await
                    .map_err(failed)?;
                Ok(RedisConn::Single(con))
            }
            Target::Cluster(nodes) => {
                // Redirections and failovers are retried by the client; its default
                // backoff starts at 1.28 s, far too slow for a failover of a few seconds.
                let mut b = ClusterClientBuilder::new(nodes)
                    .connection_timeout(Duration::from_secs(5))
                    .response_timeout(Duration::from_secs(10))
                    .overall_response_timeout(Some(Duration::from_secs(30)))
                    .retries(12)
                    .min_retry_wait(50)
                    .max_retry_wait(2_000);
                if let Some(c) = certs {
                    b = b.certs(c);
                }
                let client = b.build().map_err(config_err)?;
                let con = client.get_async_connection().await.map_err(failed)?;
                Ok(RedisConn::Cluster(Arc::new(ClusterHandle {
                    client,
                    con: Mutex::new(con),
                })))
            }
        }
    }

    pub fn layout(&self) -> Layout {
        match self {
            RedisConn::Single(_) => Layout::Single,
            RedisConn::Cluster(_) => Layout::Cluster,
        }
    }

    /// Every key matching `pattern` on the server where `anchor` lives (a cluster: at
    /// that slot's primary), by `SCAN`.
    pub async fn scan_at(&self, anchor: &str, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.query_at(anchor, cmd).await?;
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// `WAIT replicas timeout` where `key` lives: on a cluster, at the primary serving
    /// its slot only (a primary the batch did not write to has nothing to wait for, and
    /// one without replicas must not stall other slots' writers); on one Redis, there.
    /// Returns how many replicas hold everything this connection wrote there.
    pub async fn wait_replicas_at(
        &self,
        key: &str,
        replicas: usize,
        timeout: Duration,
    ) -> redis::RedisResult<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(timeout.as_millis() as u64);
        self.query_at(key, cmd).await
    }

    /// `cmd` sent to the primary serving `key`'s slot (on one Redis: there).
    async fn query_at<T: FromRedisValue>(&self, key: &str, cmd: Cmd) -> redis::RedisResult<T> {
        match self {
            RedisConn::Single(c) => cmd.query_async(&mut c.clone()).await,
            RedisConn::Cluster(h) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let mut c = h.current();
                let v = h
                    .call(c.route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    ))
                    .await?;
                // An error reply (a node that stopped being the primary mid-failover
                // refuses WAIT) is the server's error, not a reply of the wrong type.
                Ok(T::from_redis_value(v.extract_error()?)?)
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(h) => {
                let h = h.clone();
                Box::pin(async move {
                    let mut c = h.current();
                    h.call(c.req_packed_command(cmd)).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(h) => {
                let h = h.clone();
                Box::pin(async move {
                    let mut c = h.current();
                    h.call(c.req_packed_commands(pipeline, offset, count)).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(h) => h.current().get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert_eq!(
            Target::parse("redis://h:1/2").unwrap(),
            Target::Single("redis://h:1/2".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://a:1,b:2").unwrap(),
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            Target::parse("rediss+cluster://u:p@w@a:1, b:2/").unwrap(),
            Target::Cluster(vec![
                "rediss://u:p@w@a:1".into(),
                "rediss://u:p@w@b:2".into()
            ])
        );
        for bad in ["redis+cluster://", "redis+cluster://a:1/0", "h:1"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let e = Target::parse("redis+cluster://:secret@a:1/3").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
