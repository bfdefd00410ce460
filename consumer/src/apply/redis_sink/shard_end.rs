//! Before a SHARD_END checkpoint. Every other checkpoint is only a hint: a worker that
//! takes a shard resumes from Redis's own position, and an apply that finds Redis behind
//! what it applied re-reads from there. SHARD_END is final — nobody reads the parent
//! again and its children are read next — so Redis must be known to hold the parent's
//! last writes, durably, before it is written:
//! - the shard's position in Redis is at least what this worker applied (else Redis
//!   lost writes: [`SinkError::Behind`], re-read from there);
//! - on one Redis, `WAITAOF` (Redis >= 7.2): fsynced to the local AOF when AOF is on,
//!   and held by the replicas the primary has (up to `--redis-wait-replicas`). Sent on
//!   the same connection right after the position is written again, so it covers every
//!   write before it, whoever made it;
//! - on a cluster, the replicas already hold every symbol write a position covers (the
//!   batch's `WAIT`), so a primary's crash and failover lose nothing of the parent.
//!
//! What cannot be confirmed is said, not waited for forever: Redis older than 7.2 has
//! no `WAITAOF`, and a Redis with neither AOF nor a replica has nothing durable to
//! wait for ([`ShardEndCheck::Unconfirmed`]; the README's guarantee names both).

use redis::Value;
use tradeflow_shared::Position;

use super::scripts::SHARD_END_LUA;
use super::wire::behind;
use super::{RedisSink, SinkError};
use crate::apply::keys::Layout;

/// What [`RedisSink::check_shard_end`] could establish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEndCheck {
    /// Redis holds the parent's last writes, durably.
    Durable,
    /// Redis holds them, but cannot say whether durably (why).
    Unconfirmed(&'static str),
}

impl RedisSink {
    /// Checks that Redis holds, durably, everything applied to the shard through
    /// `applied_through` (see the module docs). A retryable error (durability not
    /// acknowledged in `--redis-wait-timeout`) means: try again.
    pub async fn check_shard_end(
        &self,
        stream: &str,
        shard_id: &str,
        applied_through: Option<&Position>,
    ) -> Result<ShardEndCheck, SinkError> {
        let key = self.keys.position(stream, shard_id)?;
        let mut fence = redis::cmd("EVAL");
        fence
            .arg(SHARD_END_LUA)
            .arg(1)
            .arg(&key)
            .arg(applied_through.map(|p| p.seq.as_str()).unwrap_or(""))
            .arg(applied_through.map(|p| p.sub).unwrap_or(0));
        let mut con = self.con.clone();
        if self.con.layout() == Layout::Cluster {
            let reply: Vec<Value> = fence
                .query_async(&mut con)
                .await
                .map_err(|e| self.classify(&e))?;
            fenced(&reply)?;
            return Ok(ShardEndCheck::Durable);
        }
        let (local, replicas) = match self.durability_wanted().await? {
            Ok(wanted) => wanted,
            Err(why) => {
                let reply: Vec<Value> = fence
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.classify(&e))?;
                fenced(&reply)?;
                return Ok(ShardEndCheck::Unconfirmed(why));
            }
        };
        // One pipeline: the same connection, so WAITAOF counts from the fence's write.
        let (reply, acked): (Vec<Value>, (i64, i64)) = redis::pipe()
            .add_command(fence)
            .cmd("WAITAOF")
            .arg(local)
            .arg(replicas)
            .arg(self.wait_timeout.as_millis().max(1) as u64)
            .query_async(&mut con)
            .await
            .map_err(|e| self.classify(&e))?;
        fenced(&reply)?;
        if acked.0 < local as i64 || acked.1 < replicas as i64 {
            return Err(SinkError::Unavailable {
                url: self.url.to_string(),
                kind: "durability",
                message: format!(
                    "the end of shard {shard_id} is not yet durable: AOF fsynced {}/{local}, replicas {}/{replicas} within {:?}; SHARD_END waits",
                    acked.0, acked.1, self.wait_timeout
                ),
            });
        }
        Ok(ShardEndCheck::Durable)
    }

    /// `(numlocal, numreplicas)` for WAITAOF on this server, or why it cannot be used.
    async fn durability_wanted(&self) -> Result<Result<(usize, usize), &'static str>, SinkError> {
        let mut con = self.con.clone();
        let probe: redis::RedisResult<Value> = redis::cmd("WAITAOF")
            .arg(0)
            .arg(0)
            .arg(1)
            .query_async(&mut con)
            .await;
        if let Err(e) = probe {
            if e.code() == Some("ERR") && e.to_string().to_lowercase().contains("unknown command") {
                return Ok(Err("Redis older than 7.2 has no WAITAOF"));
            }
            return Err(self.classify(&e));
        }
        let info = |section: &'static str| {
            let mut con = self.con.clone();
            async move {
                redis::cmd("INFO")
                    .arg(section)
                    .query_async::<String>(&mut con)
                    .await
            }
        };
        let persistence = info("persistence").await.map_err(|e| self.classify(&e))?;
        let replication = info("replication").await.map_err(|e| self.classify(&e))?;
        let local = usize::from(info_field(&persistence, "aof_enabled") == Some(1));
        let connected = info_field(&replication, "connected_slaves").unwrap_or(0);
        let replicas = self.wait_replicas.min(connected as usize);
        if local == 0 && replicas == 0 {
            return Ok(Err("Redis has neither AOF nor a replica"));
        }
        Ok(Ok((local, replicas)))
    }
}

/// The fence script's reply: done, or Redis is behind.
fn fenced(reply: &[Value]) -> Result<(), SinkError> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    };
    match reply.first() {
        Some(Value::Int(0)) => Ok(()),
        Some(Value::Int(3)) => Err(behind(&reply[1..].iter().map(text).collect::<Vec<_>>())),
        _ => Err(SinkError::Protocol(format!(
            "shard end script replied {reply:?}"
        ))),
    }
}

/// An integer field of an INFO section (`name:value` lines).
fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=x\r\n";
        assert_eq!(info_field(info, "connected_slaves"), Some(2));
        assert_eq!(info_field(info, "aof_enabled"), None);
        assert_eq!(info_field("aof_enabled:1\r\n", "aof_enabled"), Some(1));
    }

    #[test]
    fn fence_replies() {
        assert!(fenced(&[Value::Int(0)]).is_ok());
        let e = fenced(&[
            Value::Int(3),
            Value::BulkString(b"".to_vec()),
            Value::BulkString(b"".to_vec()),
        ])
        .unwrap_err();
        assert!(matches!(e, SinkError::Behind { stored: None }), "{e:?}");
        assert!(fenced(&[Value::Nil]).is_err());
    }
}
