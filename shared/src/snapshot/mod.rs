//! The snapshot read: what the report, its live page and the tests read back from Redis,
//! through the same key layout ([`Keys`]) the consumer's sink writes. Never `KEYS`: the
//! symbols index lists the symbols.
//!
//! Round trips per snapshot: two on one Redis (`SMEMBERS`, then one `MULTI` with `MGET`
//! and every symbol's `HMGET`: a consistent snapshot); two on a cluster too (`SMEMBERS`,
//! then one small `MULTI` per symbol — `GET` + `HMGET`, both in the symbol's slot — all
//! sent at once, so the nodes answer in parallel). On a cluster each symbol is
//! consistent in itself; the whole is not one instant (no transaction spans slots).

use std::ops::RangeInclusive;

use futures_util::future::join_all;
use redis::{FromRedisValue, Value};

use crate::redact::{redact_url, scrub_text, url_password};
use crate::redis_conn::{ConnError, RedisConn};
use crate::redis_keys::{KeyError, Keys, Layout};
use crate::Symbol;

mod candles;
pub use candles::{CandleError, MAX_CANDLES};

/// One symbol's totals as read from Redis (strings exactly as stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolTotals {
    pub symbol: String,
    pub count: u64,
    /// Base quantity, 8 decimals.
    pub base: String,
    /// Quote volume, 16 decimals.
    pub quote: String,
    pub last_price: Option<String>,
    pub last_time_ms: Option<u64>,
    /// Why this symbol's figures could not be read — a value tradeflow did not write in
    /// one of its keys (the `symbol:` namespace is shared with legacy jobs) — naming the
    /// key; its figures are then zero and must not be shown as counts.
    pub unreadable: Option<String>,
}

/// Why a read failed; never shows the password.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Connect(#[from] ConnError),
    #[error("Redis at {url} failed: {message}")]
    Redis { url: String, message: String },
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
}

type Stats = (Option<String>, Option<String>, Option<String>, Option<u64>);

/// One symbol's count and stats as read, or why they could not be read.
type Read = Result<(u64, Stats), String>;

/// A connection for reading, with the redacted URL for errors.
#[derive(Clone)]
pub struct Reader {
    con: RedisConn,
    keys: Keys,
    url: String,
    password: Option<String>,
}

impl Reader {
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, ReadError> {
        Self::connect_with_ca(url, None, key_prefix).await
    }

    /// The same; `ca_file` trusts a private CA for `rediss://` (one Redis or a cluster).
    pub async fn connect_with_ca(
        url: &str,
        ca_file: Option<&std::path::Path>,
        key_prefix: &str,
    ) -> Result<Self, ReadError> {
        let keys = Keys::new(key_prefix)?;
        let redacted = redact_url(url);
        let password = url_password(url);
        let con = RedisConn::connect(url, ca_file).await?;
        let keys = keys.with_layout(con.layout());
        Ok(Reader {
            con,
            keys,
            url: redacted,
            password,
        })
    }

    /// A Redis error as a [`ReadError`], the password scrubbed from its message.
    pub fn error(&self, e: redis::RedisError) -> ReadError {
        ReadError::Redis {
            url: self.url.clone(),
            message: scrub_text(&e.to_string(), self.password.as_deref()),
        }
    }

    /// The shared connection and the key layout, for the report's own writes (`reset`);
    /// errors go through [`Reader::error`] (redacted).
    pub fn connection(&self) -> (RedisConn, &Keys) {
        (self.con.clone(), &self.keys)
    }

    /// Every symbol in the index (sorted), checked as symbols before they name keys.
    pub async fn symbols(&self) -> Result<Vec<Symbol>, ReadError> {
        let mut con = self.con.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.symbols())
            .query_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        names.sort();
        names
            .iter()
            .map(|n| {
                Symbol::new(n).map_err(|_| {
                    ReadError::Protocol(format!("symbols index holds {n:?}, not a symbol"))
                })
            })
            .collect()
    }

    /// Every known symbol's totals: one MULTI/EXEC on one Redis (a consistent snapshot),
    /// one per symbol on a cluster (see the module docs).
    pub async fn snapshot(&self) -> Result<Vec<SymbolTotals>, ReadError> {
        let symbols = self.symbols().await?;
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let reads = match self.keys.layout() {
            Layout::Single => self.read_at_once(&symbols).await?,
            Layout::Cluster => self.read_per_symbol(&symbols).await?,
        };
        Ok(symbols
            .into_iter()
            .zip(reads)
            .map(|(symbol, read)| {
                let (count, stats, unreadable) = match read {
                    Ok((count, stats)) => (count, stats, None),
                    Err(why) => (0, (None, None, None, None), Some(why)),
                };
                let (base, quote, last_price, last_time_ms) = stats;
                SymbolTotals {
                    symbol: symbol.to_string(),
                    count,
                    base: base.unwrap_or_else(|| "0.00000000".into()),
                    quote: quote.unwrap_or_else(|| "0.0000000000000000".into()),
                    last_price,
                    last_time_ms,
                    unreadable,
                }
            })
            .collect())
    }

    /// One symbol's count (`GET`/`MGET` reply) and stats (`HMGET` reply), each checked
    /// on its own: a foreign value marks its symbol instead of failing the snapshot.
    fn parse_symbol(&self, sym: &Symbol, count: Value, stats: Value) -> Read {
        let count_key = self.keys.count(sym);
        let count = match count {
            Value::Nil => 0,
            Value::ServerError(e) => return Err(format!("{count_key}: {e:?}")),
            v => u64::from_redis_value(v.clone())
                .map_err(|_| format!("{count_key} holds {}, not a count", shown(&v)))?,
        };
        let stats_key = self.keys.stats(sym);
        let stats = match stats {
            Value::ServerError(e) => return Err(format!("{stats_key}: {e:?}")),
            v => Stats::from_redis_value(v.clone())
                .map_err(|_| format!("{stats_key} holds {}, not our stats", shown(&v)))?,
        };
        Ok((count, stats))
    }

    fn stats_cmd(&self, pipe: &mut redis::Pipeline, s: &Symbol) {
        pipe.cmd("HMGET")
            .arg(self.keys.stats(s))
            .arg("base")
            .arg("quote")
            .arg("last_price")
            .arg("last_time_ms");
    }

    async fn read_at_once(&self, symbols: &[Symbol]) -> Result<Vec<Read>, ReadError> {
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        let count_keys: Vec<String> = symbols.iter().map(|s| self.keys.count(s)).collect();
        pipe.cmd("MGET").arg(&count_keys);
        for s in symbols {
            self.stats_cmd(&mut pipe, s);
        }
        let mut con = self.con.clone();
        let mut all: Vec<Value> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| self.error(e))?;
        if all.len() != symbols.len() + 1 {
            return Err(ReadError::Protocol(format!(
                "snapshot: {} replies for {} commands",
                all.len(),
                symbols.len() + 1
            )));
        }
        let counts = match all.remove(0) {
            Value::Array(c) if c.len() == symbols.len() => c,
            other => {
                return Err(ReadError::Protocol(format!(
                    "MGET answered {}",
                    shown(&other)
                )))
            }
        };
        Ok(symbols
            .iter()
            .zip(counts)
            .zip(all)
            .map(|((s, c), st)| self.parse_symbol(s, c, st))
            .collect())
    }

    async fn read_per_symbol(&self, symbols: &[Symbol]) -> Result<Vec<Read>, ReadError> {
        let reads = symbols.iter().map(|s| {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .ignore_errors()
                .cmd("GET")
                .arg(self.keys.count(s));
            self.stats_cmd(&mut pipe, s);
            let mut con = self.con.clone();
            async move { pipe.query_async::<Vec<Value>>(&mut con).await }
        });
        let mut out = Vec::with_capacity(symbols.len());
        for (s, r) in symbols.iter().zip(join_all(reads).await) {
            let mut r = r.map_err(|e| self.error(e))?.into_iter();
            let (Some(count), Some(stats), None) = (r.next(), r.next(), r.next()) else {
                return Err(ReadError::Protocol(format!(
                    "snapshot of {s}: not two replies"
                )));
            };
            out.push(self.parse_symbol(s, count, stats));
        }
        Ok(out)
    }

    /// Trades per minute of each of `symbols` over `minutes` (`count` of their minute
    /// buckets, 0 where none): one pipeline on one Redis; on a cluster one per symbol
    /// (its buckets share its slot), all sent at once.
    pub async fn minute_counts(
        &self,
        symbols: &[Symbol],
        minutes: RangeInclusive<u64>,
    ) -> Result<Vec<Vec<u64>>, ReadError> {
        if symbols.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = |syms: &[Symbol]| {
            let mut pipe = redis::pipe();
            for s in syms {
                for m in minutes.clone() {
                    pipe.cmd("HGET").arg(self.keys.minute(s, m)).arg("count");
                }
            }
            pipe
        };
        let counts: Vec<Option<u64>> = match self.keys.layout() {
            Layout::Single => pipeline(symbols)
                .query_async(&mut self.con.clone())
                .await
                .map_err(|e| self.error(e))?,
            Layout::Cluster => {
                let pipes: Vec<_> = symbols
                    .iter()
                    .map(|s| pipeline(std::slice::from_ref(s)))
                    .collect();
                let reads = pipes.iter().map(|p| {
                    let mut con = self.con.clone();
                    async move { p.query_async::<Vec<Option<u64>>>(&mut con).await }
                });
                let mut all = Vec::new();
                for r in join_all(reads).await {
                    all.extend(r.map_err(|e| self.error(e))?);
                }
                all
            }
        };
        let per = minutes.count();
        if counts.len() != per * symbols.len() {
            return Err(ReadError::Protocol(format!(
                "minute buckets: {} replies for {} commands",
                counts.len(),
                per * symbols.len()
            )));
        }
        Ok(counts
            .chunks(per)
            .map(|c| c.iter().map(|v| v.unwrap_or(0)).collect())
            .collect())
    }
}

/// A reply as shown in a reason: short, so a large foreign value cannot flood a report.
fn shown(v: &Value) -> String {
    let text = match v {
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::SimpleString(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    };
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}
