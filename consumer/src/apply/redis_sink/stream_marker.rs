//! Which stream the shard positions belong to: its creation time, kept beside them (in
//! the `{meta}` slot on a cluster). A stream deleted and created again under the same
//! name starts its shard ids over, and positions of the old one would make the readers
//! resume from records that do not exist (see `crate::stream_identity`).

use super::{RedisSink, SinkError};

impl RedisSink {
    /// The creation time (Unix ms) recorded for `stream`, if any.
    pub async fn stream_created(&self, stream: &str) -> Result<Option<u64>, SinkError> {
        let key = self.keys.stream_created(stream)?;
        let mut con = self.con.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .map_err(|e| self.classify(&e))?;
        v.map(|v| {
            v.parse()
                .map_err(|_| SinkError::Protocol(format!("{key} holds {v:?}, not a time")))
        })
        .transpose()
    }

    /// Records `created_ms` as the creation time of `stream`.
    pub async fn set_stream_created(&self, stream: &str, created_ms: u64) -> Result<(), SinkError> {
        let key = self.keys.stream_created(stream)?;
        let mut con = self.con.clone();
        redis::cmd("SET")
            .arg(&key)
            .arg(created_ms)
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.classify(&e))
    }

    /// Deletes every shard position of `stream`; returns how many there were. The
    /// totals and the per-symbol dedupe state stay: trades counted before are still
    /// recognised when read again.
    pub async fn forget_positions(&self, stream: &str) -> Result<usize, SinkError> {
        let pattern = self.keys.positions_of(stream)?;
        // The positions all live where the `{meta}` keys do.
        let anchor = self.keys.stream_created(stream)?;
        let keys = self
            .con
            .scan_at(&anchor, &pattern)
            .await
            .map_err(|e| self.classify(&e))?;
        let mut con = self.con.clone();
        for key in &keys {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut con)
                .await
                .map_err(|e| self.classify(&e))?;
        }
        Ok(keys.len())
    }
}
