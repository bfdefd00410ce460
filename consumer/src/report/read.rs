//! Reading totals back from Redis (never `KEYS`: the symbols index lists them) and the
//! `reset` that zeroes totals while keeping the dedupe state.
//!
//! Round trips per snapshot: two on one Redis (`SMEMBERS`, then one `MULTI` with `MGET`
//! and every symbol's `HMGET`: a consistent snapshot); two on a cluster too (`SMEMBERS`,
//! then one small `MULTI` per symbol — `GET` + `HMGET`, both in the symbol's slot — all
//! sent at once, so the nodes answer in parallel). On a cluster each symbol is
//! consistent in itself; the whole is not one instant (no transaction spans slots).

use futures_util::future::join_all;
use tradeflow_shared::Symbol;

use super::format::SymbolTotals;
use crate::apply::redis_sink::classify;
use crate::apply::{Keys, Layout, RedisConn, SinkError};

/// Zeroes every symbol's count and volumes in one atomic script. The dedupe state
/// (`dedupe:`, `gaps:`) and shard positions stay, so trades already counted are not
/// counted again and new ones are. Minute buckets are left to expire.
const RESET_LUA: &str = r#"
local prefix = ARGV[1]
local syms = redis.call('SMEMBERS', prefix .. 'symbols')
for _, s in ipairs(syms) do
  redis.call('SET', 'symbol:' .. s, 0)
  redis.call('HSET', prefix .. 'stats:' .. s, 'base', '0.00000000',
             'quote', '0.0000000000000000')
end
return #syms
"#;

/// The same for one symbol on a cluster: KEYS[1] = `symbol:<SYM>`, KEYS[2] = its stats.
const RESET_SYMBOL_LUA: &str = r#"
redis.call('SET', KEYS[1], 0)
redis.call('HSET', KEYS[2], 'base', '0.00000000', 'quote', '0.0000000000000000')
return 1
"#;

type Stats = (Option<String>, Option<String>, Option<String>, Option<u64>);

/// A connection for reading, with the redacted URL for errors.
#[derive(Clone)]
pub struct Reader {
    con: RedisConn,
    keys: Keys,
    url: String,
    password: Option<String>,
}

impl Reader {
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, SinkError> {
        Self::connect_with_ca(url, None, key_prefix).await
    }

    /// The same; `ca_file` trusts a private CA for `rediss://` (one Redis or a cluster).
    pub async fn connect_with_ca(
        url: &str,
        ca_file: Option<&std::path::Path>,
        key_prefix: &str,
    ) -> Result<Self, SinkError> {
        let keys = Keys::new(key_prefix)?;
        let redacted = crate::apply::redact_url(url);
        let password = crate::apply::redact::url_password(url);
        let con = RedisConn::connect(url, ca_file).await?;
        let keys = keys.with_layout(con.layout());
        Ok(Reader {
            con,
            keys,
            url: redacted,
            password,
        })
    }

    fn err(&self, e: redis::RedisError) -> SinkError {
        classify(&self.url, self.password.as_deref(), &e)
    }

    /// The shared connection and the key layout, for other read-only views (the web
    /// page's minute buckets); errors go through [`Reader::error`] (redacted).
    pub(crate) fn connection(&self) -> (RedisConn, &Keys) {
        (self.con.clone(), &self.keys)
    }

    pub(crate) fn error(&self, e: redis::RedisError) -> SinkError {
        self.err(e)
    }

    /// Every symbol in the index (sorted), checked as symbols before they name keys.
    async fn symbols(&self) -> Result<Vec<Symbol>, SinkError> {
        let mut con = self.con.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.symbols())
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        names.sort();
        names
            .iter()
            .map(|n| {
                Symbol::new(n).map_err(|_| {
                    SinkError::Protocol(format!("symbols index holds {n:?}, not a symbol"))
                })
            })
            .collect()
    }

    /// Every known symbol's totals: one MULTI/EXEC on one Redis (a consistent snapshot),
    /// one per symbol on a cluster (see the module docs).
    pub async fn snapshot(&self) -> Result<Vec<SymbolTotals>, SinkError> {
        let symbols = self.symbols().await?;
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let (counts, stats) = match self.keys.layout() {
            Layout::Single => self.read_at_once(&symbols).await?,
            Layout::Cluster => self.read_per_symbol(&symbols).await?,
        };
        Ok(symbols
            .into_iter()
            .zip(counts)
            .zip(stats)
            .map(
                |((symbol, count), (base, quote, last_price, last_time_ms))| SymbolTotals {
                    symbol: symbol.to_string(),
                    count: count.unwrap_or(0),
                    base: base.unwrap_or_else(|| "0.00000000".into()),
                    quote: quote.unwrap_or_else(|| "0.0000000000000000".into()),
                    last_price,
                    last_time_ms,
                },
            )
            .collect())
    }

    fn stats_cmd(&self, pipe: &mut redis::Pipeline, s: &Symbol) {
        pipe.cmd("HMGET")
            .arg(self.keys.stats(s))
            .arg("base")
            .arg("quote")
            .arg("last_price")
            .arg("last_time_ms");
    }

    async fn read_at_once(
        &self,
        symbols: &[Symbol],
    ) -> Result<(Vec<Option<u64>>, Vec<Stats>), SinkError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let count_keys: Vec<String> = symbols.iter().map(|s| self.keys.count(s)).collect();
        pipe.cmd("MGET").arg(&count_keys);
        for s in symbols {
            self.stats_cmd(&mut pipe, s);
        }
        let mut con = self.con.clone();
        let mut all: Vec<redis::Value> =
            pipe.query_async(&mut con).await.map_err(|e| self.err(e))?;
        if all.is_empty() {
            return Err(SinkError::Protocol("empty snapshot reply".into()));
        }
        let counts = redis::from_redis_value(all.remove(0))
            .map_err(|e| SinkError::Protocol(e.to_string()))?;
        let stats = all
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<Vec<Stats>, _>>()
            .map_err(|e| SinkError::Protocol(e.to_string()))?;
        Ok((counts, stats))
    }

    async fn read_per_symbol(
        &self,
        symbols: &[Symbol],
    ) -> Result<(Vec<Option<u64>>, Vec<Stats>), SinkError> {
        let reads = symbols.iter().map(|s| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("GET").arg(self.keys.count(s));
            self.stats_cmd(&mut pipe, s);
            let mut con = self.con.clone();
            async move {
                let r: (Option<u64>, Stats) = pipe.query_async(&mut con).await?;
                Ok::<_, redis::RedisError>(r)
            }
        });
        let mut counts = Vec::with_capacity(symbols.len());
        let mut stats = Vec::with_capacity(symbols.len());
        for r in join_all(reads).await {
            let (c, st) = r.map_err(|e| self.err(e))?;
            counts.push(c);
            stats.push(st);
        }
        Ok((counts, stats))
    }

    /// Zeroes counts and volumes of every symbol; returns how many were reset.
    /// On a cluster each symbol is reset atomically (count and volumes together), all
    /// symbols at once, not as one transaction.
    pub async fn reset(&self) -> Result<u64, SinkError> {
        let mut con = self.con.clone();
        if self.keys.layout() == Layout::Single {
            return redis::Script::new(RESET_LUA)
                .arg(self.keys.prefix())
                .invoke_async(&mut con)
                .await
                .map_err(|e| self.err(e));
        }
        let symbols = self.symbols().await?;
        let script = redis::Script::new(RESET_SYMBOL_LUA);
        let resets = symbols.iter().map(|s| {
            let mut inv = script.prepare_invoke();
            inv.key(self.keys.count(s)).key(self.keys.stats(s));
            let mut con = self.con.clone();
            async move { inv.invoke_async::<i64>(&mut con).await }
        });
        let mut n = 0;
        for r in join_all(resets).await {
            n += r.map_err(|e| self.err(e))? as u64;
        }
        Ok(n)
    }
}
