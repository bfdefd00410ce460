//! Rolling closed hours up: the apply script writes only minute buckets for hours not
//! rolled up yet (the hot path stays one bucket per minute touched) and notes those
//! hours in the symbol's `pending` set; this step, run by every consumer about once a
//! minute, rolls each pending hour up to the current one into its hour and day bucket
//! and moves the symbol's `sealed` watermark, atomically per symbol (`seal.lua`). A
//! trade applied later for an hour at or below the watermark is merged into its hour
//! and day bucket directly, so every bucket stays exact whenever it runs; the reader
//! takes hours above the watermark from their minutes. Idempotent: consumers racing
//! on a symbol find nothing pending the second time.

use redis::Value;
use tradeflow_shared::Symbol;

use super::{RedisSink, SinkError};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealOutcome {
    /// Hours rolled up (over all symbols).
    pub hours: u64,
    /// Symbols whose keys hold a foreign value (left pending, warned).
    pub foreign: u64,
}

/// How often a symbol is retried when an apply adds a pending hour under the script.
const RACE_RETRIES: usize = 5;

impl RedisSink {
    /// Rolls every symbol's pending hours up to `up_to_hour` (Unix hours) into hour and
    /// day buckets.
    pub async fn seal_hours(&self, up_to_hour: u64) -> Result<SealOutcome, SinkError> {
        let mut con = self.con.clone();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.symbols())
            .query_async(&mut con)
            .await
            .map_err(|e| self.classify(&e))?;
        let mut out = SealOutcome::default();
        for name in names {
            let Ok(sym) = Symbol::new(&name) else {
                continue; // the snapshot reader reports a foreign index member
            };
            match self.seal_symbol(&sym, up_to_hour).await? {
                Ok(n) => out.hours += n,
                Err(why) => {
                    tracing::warn!(symbol = %sym, reason = %why, "hours not rolled up: a key holds a foreign value");
                    out.foreign += 1;
                }
            }
        }
        Ok(out)
    }

    /// One symbol: hours sealed, or why a key of it holds a foreign value.
    async fn seal_symbol(
        &self,
        sym: &Symbol,
        up_to: u64,
    ) -> Result<Result<u64, String>, SinkError> {
        let pending = self.keys.pending(sym);
        for _ in 0..RACE_RETRIES {
            let mut con = self.con.clone();
            let hours: Vec<u64> = match redis::cmd("ZRANGEBYSCORE")
                .arg(&pending)
                .arg("-inf")
                .arg(up_to)
                .query_async::<Vec<String>>(&mut con)
                .await
            {
                Ok(h) => h.iter().filter_map(|h| h.parse().ok()).collect(),
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    return Ok(Err(format!("{pending}: {e}")))
                }
                Err(e) => return Err(self.classify(&e)),
            };
            if hours.is_empty() {
                return Ok(Ok(0));
            }
            let mut inv = self.scripts.seal.prepare_invoke();
            inv.key(self.keys.dedupe(sym)).key(&pending);
            let mut days: Vec<u64> = Vec::new();
            for h in &hours {
                for m in h * 60..h * 60 + 60 {
                    inv.key(self.keys.minute(sym, m));
                }
                inv.key(self.keys.hour(sym, *h));
                if !days.contains(&(h / 24)) {
                    days.push(h / 24);
                    inv.key(self.keys.day(sym, h / 24));
                }
            }
            let layout = match self.keys.layout() {
                tradeflow_shared::redis_keys::Layout::Single => "single",
                tradeflow_shared::redis_keys::Layout::Cluster => "cluster",
            };
            inv.arg(self.keys.prefix())
                .arg(&self.bucket_ttls)
                .arg(layout)
                .arg(sym.as_str())
                .arg(up_to)
                .arg(hours.len());
            for h in &hours {
                inv.arg(h);
            }
            let reply: Vec<Value> = inv
                .invoke_async(&mut con)
                .await
                .map_err(|e| self.classify(&e))?;
            match reply.as_slice() {
                [Value::Int(1), Value::Int(n)] => return Ok(Ok(*n as u64)),
                [Value::Int(0)] => continue,
                [Value::Int(2), Value::BulkString(why)] => {
                    return Ok(Err(String::from_utf8_lossy(why).into_owned()))
                }
                other => {
                    return Err(SinkError::Protocol(format!(
                        "seal script replied {other:?}"
                    )))
                }
            }
        }
        Err(SinkError::Unavailable {
            url: self.url.to_string(),
            kind: "contention",
            message: format!("{sym}: pending hours kept changing; next pass"),
        })
    }
}
