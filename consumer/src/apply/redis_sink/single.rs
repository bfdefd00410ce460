//! The one-Redis path of [`RedisSink::apply`]: the whole batch in one script, re-sent
//! without the symbols whose keys hold foreign values or with straddling symbols one
//! trade per segment (see the parent module and `apply/mod.rs`).

use std::time::Instant;

use redis::{RedisError, Value};
use tradeflow_shared::Symbol;

use super::wire::{behind, parse_reply, push_poison, push_segments};
use super::{classify, foreign, ApplyOutcome, Job, RedisSink, SinkError};
use crate::apply::fold::{self, PoisonEntry};

/// Rounds of "split needed" before giving up; each round turns more symbols into one
/// trade per segment, which can never need splitting, so two rounds suffice unless
/// another worker keeps changing the same symbols in between.
const MAX_SPLIT_ROUNDS: usize = 6;

impl RedisSink {
    pub(super) async fn apply_single(
        &self,
        job: &Job<'_>,
    ) -> Result<(ApplyOutcome, Vec<PoisonEntry>), SinkError> {
        let Job {
            stream,
            shard_id,
            expected,
            batch,
            pos_key,
            first,
            last,
        } = *job;
        let mut singles: Vec<Symbol> = Vec::new();
        // Symbols whose keys hold foreign values: sent as poison, not as trades.
        let mut foreign_syms: Vec<Symbol> = Vec::new();
        let mut kept_aside: Vec<PoisonEntry> = Vec::new();
        let mut outcome = ApplyOutcome::default();
        for _ in 0..MAX_SPLIT_ROUNDS {
            let mut inv = self.scripts.batch.prepare_invoke();
            inv.arg(self.keys.prefix())
                .arg(pos_key)
                .arg(first.seq.as_str())
                .arg(first.sub)
                .arg(last.seq.as_str())
                .arg(last.sub)
                .arg(&self.bucket_ttls)
                .arg(self.dead_letter_maxlen)
                .arg(stream)
                .arg(shard_id)
                .arg(self.max_gaps)
                .arg(expected.map(|p| p.seq.as_str()).unwrap_or(""))
                .arg(expected.map(|p| p.sub).unwrap_or(0));
            push_poison(&mut inv, &batch.poison, &kept_aside);
            inv.arg(batch.symbols.len() - foreign_syms.len());
            for s in batch
                .symbols
                .iter()
                .filter(|s| !foreign_syms.contains(&s.symbol))
            {
                inv.arg(s.symbol.as_str());
                if singles.contains(&s.symbol) {
                    let segs = fold::single_segments(&s.trades);
                    push_segments(&mut inv, &segs);
                } else {
                    push_segments(&mut inv, &s.segments);
                }
            }
            let mut con = self.con.clone();
            let started = Instant::now();
            let reply: Result<Vec<Value>, RedisError> = inv.invoke_async(&mut con).await;
            metrics::counter!("tradeflow_consumer_redis_round_trips_total").increment(1);
            outcome.round_trips += 1;
            let reply = reply.map_err(|e| classify(&self.url, self.password.as_deref(), &e))?;
            metrics::histogram!("tradeflow_consumer_redis_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            let (status, nums, split) = parse_reply(&reply)?;
            match status {
                0 => {
                    outcome.trades_applied = nums[0];
                    outcome.duplicates = nums[1] + batch.in_batch_duplicates;
                    outcome.poison = nums[2];
                    outcome.late_dropped = nums[3];
                    outcome.foreign_trades = kept_aside.len() as u64;
                    return Ok((outcome, kept_aside));
                }
                1 => {
                    outcome.batch_skipped = true;
                    return Ok((outcome, Vec::new()));
                }
                3 => return Err(behind(&split)),
                4 => {
                    if split.is_empty() {
                        return Err(SinkError::Protocol("foreign reply without symbols".into()));
                    }
                    for pair in split.chunks(2) {
                        let [name, reason] = pair else {
                            return Err(SinkError::Protocol(format!("foreign reply {split:?}")));
                        };
                        let sym = batch
                            .symbols
                            .iter()
                            .find(|s| {
                                s.symbol.as_str() == name.as_str()
                                    && !foreign_syms.contains(&s.symbol)
                            })
                            .ok_or_else(|| {
                                SinkError::Protocol(format!("foreign symbol {name:?}"))
                            })?;
                        foreign::warn(stream, shard_id, &sym.symbol, reason, sym.trades.len());
                        foreign_syms.push(sym.symbol);
                        kept_aside.extend(foreign::kept_aside(sym, reason, last));
                    }
                }
                _ => {
                    let mut grew = false;
                    for name in split {
                        let sym = Symbol::new(&name)
                            .map_err(|_| SinkError::Protocol(format!("split symbol {name:?}")))?;
                        if !singles.contains(&sym) {
                            singles.push(sym);
                            grew = true;
                        }
                    }
                    if !grew {
                        return Err(SinkError::Protocol(
                            "script asked to split one-trade segments".into(),
                        ));
                    }
                    tracing::debug!(
                        stream,
                        shard_id,
                        symbols = singles.len(),
                        "segments overlap applied ids; re-sending one trade per segment"
                    );
                }
            }
        }
        Err(SinkError::Unavailable {
            url: self.url.to_string(),
            kind: "contention",
            message: "segments kept overlapping concurrent writes; retry the batch".into(),
        })
    }
}
