//! The Redis Cluster path of [`RedisSink::apply`]: every symbol's part of a batch at once
//! (each atomic in its slot), `WAIT` for the replicas, then the shard's position (see
//! the parent module and the README's "Redis Cluster").

use std::time::Instant;

use redis::cluster_routing::Slot;
use redis::Value;
use tradeflow_shared::redis_keys::Keys;
use tradeflow_shared::Symbol;

use super::wire::{behind, parse_reply, push_poison, push_segments};
use super::{foreign, ApplyOutcome, Job, RedisSink, SinkError};
use crate::apply::fold::{self, PoisonEntry, Segment, SymbolDelta, MINUTE_MS};

impl RedisSink {
    /// A batch on a cluster: symbols (concurrently, each in its slot), `WAIT`, position.
    pub(super) async fn apply_cluster(
        &self,
        job: &Job<'_>,
    ) -> Result<(ApplyOutcome, Vec<PoisonEntry>), SinkError> {
        let Job { batch, last, .. } = *job;
        let mut outcome = ApplyOutcome::default();
        let started = Instant::now();
        let parts = futures_util::future::join_all(
            batch.symbols.iter().map(|s| self.apply_symbol_cluster(s)),
        )
        .await;
        let mut rounds = 0;
        // Symbols whose keys hold foreign values: their trades go to the dead letters.
        let mut kept_aside = Vec::new();
        let mut applied_syms = Vec::with_capacity(batch.symbols.len());
        for (s, part) in batch.symbols.iter().zip(parts) {
            let (part, r) = part?;
            rounds = rounds.max(r);
            match part {
                SymbolPart::Applied {
                    applied,
                    dups,
                    late,
                } => {
                    outcome.trades_applied += applied;
                    outcome.duplicates += dups;
                    outcome.late_dropped += late;
                    applied_syms.push(&s.symbol);
                }
                SymbolPart::Foreign(reason) => {
                    foreign::warn(job.stream, job.shard_id, &s.symbol, &reason, s.trades.len());
                    kept_aside.extend(foreign::kept_aside(s, &reason, last));
                }
            }
        }
        outcome.foreign_trades = kept_aside.len() as u64;
        self.count_round_trips(&mut outcome, rounds);
        if self.wait_replicas > 0 && !applied_syms.is_empty() {
            self.wait_for_replicas(&applied_syms).await?;
            self.count_round_trips(&mut outcome, 1);
        }
        let mut inv = self.scripts.position.prepare_invoke();
        inv.key(job.pos_key)
            .key(self.keys.dead_letter())
            .key(self.keys.symbols())
            .arg(last.seq.as_str())
            .arg(last.sub)
            .arg(self.dead_letter_maxlen)
            .arg(job.stream)
            .arg(job.shard_id)
            .arg(job.expected.map(|p| p.seq.as_str()).unwrap_or(""))
            .arg(job.expected.map(|p| p.sub).unwrap_or(0));
        push_poison(&mut inv, &batch.poison, &kept_aside);
        inv.arg(applied_syms.len());
        for s in applied_syms {
            inv.arg(s.as_str());
        }
        let mut con = self.con.clone();
        let reply: Vec<Value> = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.classify(&e))?;
        self.count_round_trips(&mut outcome, 1);
        metrics::histogram!("tradeflow_consumer_redis_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        let (status, nums, rest) = parse_reply(&reply)?;
        match status {
            0 => outcome.poison = nums[2],
            // The symbols were all duplicates then; nothing else to do.
            1 => outcome.batch_skipped = outcome.trades_applied == 0,
            3 => return Err(behind(&rest)),
            _ => {
                return Err(SinkError::Protocol(format!(
                    "position script replied {reply:?}"
                )))
            }
        }
        outcome.duplicates += batch.in_batch_duplicates;
        Ok((outcome, kept_aside))
    }

    /// Waits until `wait_replicas` replicas of each primary the symbols were written to
    /// hold those writes: one `WAIT` per slot, all at once, each at that slot's primary
    /// (the symbol script always writes, so it covers whoever wrote the trades first).
    async fn wait_for_replicas(&self, symbols: &[&Symbol]) -> Result<(), SinkError> {
        let mut slots = std::collections::HashSet::new();
        let keys: Vec<String> = symbols
            .iter()
            .map(|s| self.keys.count(s))
            .filter(|k| slots.insert(Slot::for_key(k)))
            .collect();
        let acks = futures_util::future::join_all(keys.iter().map(|k| {
            self.con
                .wait_replicas_at(k, self.wait_replicas, self.wait_timeout)
        }))
        .await;
        for (key, acked) in keys.iter().zip(acks) {
            let acked = acked.map_err(|e| self.classify(&e))?;
            if acked < self.wait_replicas as i64 {
                return Err(SinkError::Unavailable {
                    url: self.url.to_string(),
                    kind: "replication",
                    message: format!(
                        "{acked} of {} replicas of the primary of {key} acknowledged the batch within {:?}; retrying it",
                        self.wait_replicas, self.wait_timeout
                    ),
                });
            }
        }
        Ok(())
    }

    /// One symbol's part of a batch on a cluster, re-sent one trade per segment if it
    /// straddles what was seen. Returns what happened and the round trips used.
    async fn apply_symbol_cluster(&self, s: &SymbolDelta) -> Result<(SymbolPart, u32), SinkError> {
        let mut singles = false;
        for round in 1..=2 {
            let single_segs;
            let segs: &[Segment] = if singles {
                single_segs = fold::single_segments(&s.trades);
                &single_segs
            } else {
                &s.segments
            };
            let mut inv = self.scripts.symbol.prepare_invoke();
            // Every key the script touches is declared (see symbol.lua: migrations).
            inv.key(self.keys.count(&s.symbol))
                .key(self.keys.stats(&s.symbol))
                .key(self.keys.dedupe(&s.symbol))
                .key(self.keys.gaps(&s.symbol))
                .key(self.keys.evicted(&s.symbol));
            for key in bucket_keys(&self.keys, &s.symbol, segs) {
                inv.key(key);
            }
            inv.arg(self.keys.prefix())
                .arg(&self.bucket_ttls)
                .arg(self.max_gaps)
                .arg(s.symbol.as_str());
            push_segments(&mut inv, segs);
            let mut con = self.con.clone();
            let reply: Vec<Value> = inv
                .invoke_async(&mut con)
                .await
                .map_err(|e| self.classify(&e))?;
            let (status, nums, rest) = parse_reply(&reply)?;
            match status {
                0 => {
                    let part = SymbolPart::Applied {
                        applied: nums[0],
                        dups: nums[1],
                        late: nums[3],
                    };
                    return Ok((part, round));
                }
                4 => {
                    let reason = rest.into_iter().next().unwrap_or_default();
                    return Ok((SymbolPart::Foreign(reason), round));
                }
                // A single trade never straddles: the second round cannot split.
                2 if !singles => singles = true,
                _ => break,
            }
        }
        Err(SinkError::Protocol(format!(
            "symbol script for {} kept asking to split",
            s.symbol
        )))
    }
}

/// The kline buckets (minute, hour, day) the segments' minutes fall in, each once, and
/// the pending hours (written only when those hours are not rolled up yet).
pub(super) fn bucket_keys(keys: &Keys, sym: &Symbol, segs: &[Segment]) -> Vec<String> {
    let mut minutes: Vec<u64> = segs
        .iter()
        .flat_map(|g| g.minutes.iter().map(|m| m.open_time_ms / MINUTE_MS))
        .collect();
    minutes.sort_unstable();
    minutes.dedup();
    let mut hours: Vec<u64> = minutes.iter().map(|m| m / 60).collect();
    hours.dedup();
    let mut days: Vec<u64> = minutes.iter().map(|m| m / 1440).collect();
    days.dedup();
    let mut out: Vec<String> = minutes.iter().map(|m| keys.minute(sym, *m)).collect();
    out.push(keys.pending(sym));
    out.extend(hours.iter().map(|h| keys.hour(sym, *h)));
    out.extend(days.iter().map(|d| keys.day(sym, *d)));
    out
}

/// What the symbol script did with one symbol's part of a batch.
enum SymbolPart {
    Applied {
        applied: u64,
        dups: u64,
        late: u64,
    },
    /// A key of the symbol holds a foreign value (the reason): nothing written.
    Foreign(String),
}
