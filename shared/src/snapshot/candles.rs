//! Candles read back: a symbol's stored kline buckets (minute, hour, day) over a time
//! range, rolled up to the interval asked for. Bounded: at most [`MAX_CANDLES`] candles
//! a read (Binance's own limit per klines call), read with `HMGET`s pipelined in chunks
//! — never a scan. On a cluster every bucket of a symbol is in its slot, so a chunk is
//! one node's pipeline.

use redis::Value;

use super::{shown, ReadError, Reader};
use crate::kline::{roll_up, Bucket, Interval, Kline, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::Symbol;

/// The most candles one read returns (as Binance's `limit` maximum).
pub const MAX_CANDLES: u64 = 1000;
/// Minute buckets one read may roll up for hours not rolled up yet (normally only the
/// current hour; more while no consumer runs): a week.
pub const MAX_OPEN_MINUTES: u64 = 7 * 1440;
/// Commands per pipeline: bounded replies, several round trips for long ranges.
const CHUNK: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum CandleError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{count} {interval} candles asked for; at most {max} a read (narrow the range)")]
    TooMany {
        count: u64,
        interval: Interval,
        max: u64,
    },
    #[error("{hours} hours not rolled up into hour buckets yet (read from minutes, at most {} at once): is a consumer running?", MAX_OPEN_MINUTES / 60)]
    NotRolledUp { hours: u64 },
    #[error("{key} does not hold a kline tradeflow wrote: {why}")]
    Foreign { key: String, why: String },
}

impl Reader {
    /// The stored buckets of kind `bucket` numbered `first..=last` (Unix minutes, hours
    /// or days) of `sym` that hold trades, ascending.
    pub async fn buckets(
        &self,
        sym: &Symbol,
        bucket: Bucket,
        first: u64,
        last: u64,
    ) -> Result<Vec<Kline>, CandleError> {
        let mut out = Vec::new();
        let numbers: Vec<u64> = (first..=last).collect();
        let fields = Kline::stored_fields();
        for chunk in numbers.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            // A key of another type fails its own HMGET only, so the error can name it.
            pipe.ignore_errors();
            for n in chunk {
                pipe.cmd("HMGET")
                    .arg(self.keys.bucket(sym, bucket, *n))
                    .arg(&fields[..]);
            }
            let replies: Vec<Value> = pipe
                .query_async(&mut self.con.clone())
                .await
                .map_err(|e| self.error(e))?;
            if replies.len() != chunk.len() {
                return Err(ReadError::Protocol(format!(
                    "kline buckets: {} replies for {} commands",
                    replies.len(),
                    chunk.len()
                ))
                .into());
            }
            for (n, reply) in chunk.iter().zip(replies) {
                let key = || self.keys.bucket(sym, bucket, *n);
                if let Value::ServerError(e) = &reply {
                    return Err(CandleError::Foreign {
                        key: key(),
                        why: format!("HMGET failed: {} {}", e.code(), e.details().unwrap_or("")),
                    });
                }
                let values: Vec<Option<String>> =
                    redis::from_redis_value(reply.clone()).map_err(|_| CandleError::Foreign {
                        key: key(),
                        why: format!("HMGET answered {}", shown(&reply)),
                    })?;
                let open = n * bucket.ms();
                match Kline::from_stored(open, bucket.ms(), &values) {
                    Ok(Some(k)) => out.push(k),
                    Ok(None) => {}
                    Err(why) => return Err(CandleError::Foreign { key: key(), why }),
                }
            }
        }
        Ok(out)
    }

    /// The `interval` candles of `sym` whose open time lies in `from_ms..=to_ms`, rolled
    /// up from the stored buckets; intervals without a trade are left out (as Binance
    /// does). At most [`MAX_CANDLES`] candles may be asked for.
    pub async fn candles(
        &self,
        sym: &Symbol,
        interval: Interval,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Kline>, CandleError> {
        let first = interval.start_of(from_ms);
        if to_ms < first {
            return Ok(Vec::new());
        }
        let last = interval.start_of(to_ms);
        let count = (last - first) / interval.ms() + 1;
        if count > MAX_CANDLES {
            return Err(CandleError::TooMany {
                count,
                interval,
                max: MAX_CANDLES,
            });
        }
        let src = interval.source();
        let end = last + interval.ms() - 1;
        if src == Bucket::Minute {
            let buckets = self
                .buckets(sym, src, first / MINUTE_MS, end / MINUTE_MS)
                .await?;
            return Ok(roll_up(interval, &buckets));
        }
        // Hours and days: the buckets hold the hours rolled up (at or below the
        // symbol's `sealed` watermark); the hours above it come from their minutes.
        let sealed = self.sealed_hour(sym).await?;
        let (h0, h1) = (first / HOUR_MS, end / HOUR_MS);
        let mut buckets = Vec::new();
        if let Some(s) = sealed.filter(|s| *s >= h0) {
            buckets = match src {
                Bucket::Day => {
                    self.buckets(sym, src, first / DAY_MS, s.min(h1) / 24)
                        .await?
                }
                _ => self.buckets(sym, Bucket::Hour, h0, s.min(h1)).await?,
            };
        }
        let open_from = sealed.map_or(h0, |s| h0.max(s + 1));
        if open_from <= h1 {
            let minutes = (h1 - open_from + 1) * 60;
            if minutes > MAX_OPEN_MINUTES {
                return Err(CandleError::NotRolledUp {
                    hours: h1 - open_from + 1,
                });
            }
            buckets.extend(
                self.buckets(sym, Bucket::Minute, open_from * 60, h1 * 60 + 59)
                    .await?,
            );
        }
        Ok(roll_up(interval, &buckets))
    }

    /// The symbol's `sealed` watermark: hours at or below it are in hour and day
    /// buckets.
    async fn sealed_hour(&self, sym: &Symbol) -> Result<Option<u64>, CandleError> {
        let key = self.keys.dedupe(sym);
        let v: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("sealed")
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| self.error(e))?;
        v.map(|v| {
            v.parse().map_err(|_| CandleError::Foreign {
                key,
                why: format!("field sealed holds {v:?}, not an hour"),
            })
        })
        .transpose()
    }
}
