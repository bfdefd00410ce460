//! Reading totals back from Redis (never `KEYS`: the symbols index lists them) and the
//! `reset` that zeroes totals while keeping the dedupe state.

use redis::aio::ConnectionManager;

use super::format::SymbolTotals;
use crate::apply::redis_sink::classify;
use crate::apply::{Keys, SinkError};

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

/// A connection for reading, with the redacted URL for errors.
#[derive(Clone)]
pub struct Reader {
    con: ConnectionManager,
    keys: Keys,
    url: String,
    password: Option<String>,
}

impl Reader {
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, SinkError> {
        let keys = Keys::new(key_prefix)?;
        let redacted = crate::apply::redact_url(url);
        let password = crate::apply::redact::url_password(url);
        let client = redis::Client::open(url).map_err(|e| {
            SinkError::Config(format!(
                "Redis URL {redacted}: {}",
                crate::apply::redact::scrub_text(&e.to_string(), password.as_deref())
            ))
        })?;
        let con = ConnectionManager::new(client)
            .await
            .map_err(|e| classify(&redacted, password.as_deref(), &e))?;
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
    pub(crate) fn connection(&self) -> (ConnectionManager, &Keys) {
        (self.con.clone(), &self.keys)
    }

    pub(crate) fn error(&self, e: redis::RedisError) -> SinkError {
        self.err(e)
    }

    /// Every known symbol's totals, read in one MULTI/EXEC (a consistent snapshot).
    pub async fn snapshot(&self) -> Result<Vec<SymbolTotals>, SinkError> {
        let mut con = self.con.clone();
        let mut symbols: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.symbols())
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        symbols.sort();
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let count_keys: Vec<String> = symbols.iter().map(|s| format!("symbol:{s}")).collect();
        pipe.cmd("MGET").arg(&count_keys);
        for s in &symbols {
            pipe.cmd("HMGET")
                .arg(format!("{}stats:{s}", self.keys.prefix()))
                .arg("base")
                .arg("quote")
                .arg("last_price")
                .arg("last_time_ms");
        }
        type Stats = (Option<String>, Option<String>, Option<String>, Option<u64>);
        let (counts, stats): (Vec<Option<u64>>, Vec<Stats>) = {
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
            (counts, stats)
        };
        Ok(symbols
            .into_iter()
            .zip(counts)
            .zip(stats)
            .map(
                |((symbol, count), (base, quote, last_price, last_time_ms))| SymbolTotals {
                    symbol,
                    count: count.unwrap_or(0),
                    base: base.unwrap_or_else(|| "0.00000000".into()),
                    quote: quote.unwrap_or_else(|| "0.0000000000000000".into()),
                    last_price,
                    last_time_ms,
                },
            )
            .collect())
    }

    /// Zeroes counts and volumes of every symbol; returns how many were reset.
    pub async fn reset(&self) -> Result<u64, SinkError> {
        let mut con = self.con.clone();
        redis::Script::new(RESET_LUA)
            .arg(self.keys.prefix())
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))
    }
}
