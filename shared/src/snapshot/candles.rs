//! Candles read back: a symbol's stored kline buckets (minute, hour, day) over a time
//! range, rolled up to the interval asked for. Bounded: at most [`MAX_CANDLES`] candles
//! a read (Binance's own limit per klines call), read with `HMGET`s pipelined in chunks
//! — never a scan. On a cluster every bucket of a symbol is in its slot, so a chunk is
//! one node's pipeline.

use redis::Value;

use super::{shown, ReadError, Reader};
use crate::kline::{roll_up, Bucket, Interval, Kline, FIELDS};
use crate::Symbol;

/// The most candles one read returns (as Binance's `limit` maximum).
pub const MAX_CANDLES: u64 = 1000;
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
        for chunk in numbers.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            // A key of another type fails its own HMGET only, so the error can name it.
            pipe.ignore_errors();
            for n in chunk {
                pipe.cmd("HMGET")
                    .arg(self.keys.bucket(sym, bucket, *n))
                    .arg(&FIELDS[..]);
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
                let fields: Vec<Option<String>> =
                    redis::from_redis_value(reply.clone()).map_err(|_| CandleError::Foreign {
                        key: key(),
                        why: format!("HMGET answered {}", shown(&reply)),
                    })?;
                let open = n * bucket.ms();
                match Kline::from_fields(open, bucket.ms(), &fields) {
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
        let buckets = self
            .buckets(sym, src, first / src.ms(), end / src.ms())
            .await?;
        Ok(roll_up(interval, &buckets))
    }
}
