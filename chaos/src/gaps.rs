//! "The longest time any shard had no reader", from what the consumers logged and what
//! the run did to them. A reader of a shard runs from its worker's `reading shard` log
//! line until its `shard task ended` line, or until the run killed, stopped or paused
//! that worker (a SIGSTOPped worker holds the lease but reads nothing). A shard needs a
//! reader from the first time one started on it (children wait for their parents by
//! design, which is not an outage) until it ended (`ShardEnd`) or the run's end.
//! Pure: events in, durations out.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A worker started reading the shard.
    Start,
    /// A worker's reader of the shard ended; `finished` when the shard is closed and
    /// fully read (it needs no reader any more).
    Stop { finished: bool },
}

/// One reader event, from a consumer's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderEvent {
    pub t_ms: u64,
    pub worker: String,
    pub shard: String,
    pub kind: EventKind,
}

/// The run made a worker stop reading everything at `t_ms` (kill -9, SIGTERM), or
/// froze it until `until_ms` (SIGSTOP … SIGCONT: its readers carry on afterwards unless
/// they log that they ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDown {
    pub t_ms: u64,
    pub worker: String,
    pub until_ms: Option<u64>,
}

/// Per shard, its longest stretch without a reader (ms), and the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub shard: String,
    pub from_ms: u64,
    pub ms: u64,
}

/// The longest reader gap of each shard that ever had a reader.
pub fn reader_gaps(events: &[ReaderEvent], downs: &[WorkerDown], end_ms: u64) -> Vec<Gap> {
    // Per shard: reader intervals (worker, from, to), first start, finish time.
    struct Shard {
        intervals: Vec<(String, u64, u64)>,
        open: BTreeMap<String, u64>,
        first: u64,
        finished: Option<u64>,
    }
    let mut evs: Vec<&ReaderEvent> = events.iter().collect();
    evs.sort_by_key(|e| e.t_ms);
    let mut shards: BTreeMap<String, Shard> = BTreeMap::new();
    for e in evs {
        let s = shards.entry(e.shard.clone()).or_insert(Shard {
            intervals: Vec::new(),
            open: BTreeMap::new(),
            first: e.t_ms,
            finished: None,
        });
        match e.kind {
            EventKind::Start => {
                if let Some(prev) = s.open.insert(e.worker.clone(), e.t_ms) {
                    s.intervals.push((e.worker.clone(), prev, e.t_ms));
                }
            }
            EventKind::Stop { finished } => {
                if let Some(start) = s.open.remove(&e.worker) {
                    s.intervals.push((e.worker.clone(), start, e.t_ms));
                }
                if finished {
                    s.finished = Some(s.finished.map_or(e.t_ms, |f| f.min(e.t_ms)));
                }
            }
        }
    }
    for s in shards.values_mut() {
        for (w, start) in std::mem::take(&mut s.open) {
            s.intervals.push((w, start, end_ms));
        }
        s.intervals = s
            .intervals
            .drain(..)
            .flat_map(|(w, a, b)| cut_by_downs(&w, a, b, downs))
            .map(|(a, b)| (String::new(), a, b))
            .collect();
    }
    let mut out = Vec::new();
    for (shard, mut s) in shards {
        let until = s.finished.unwrap_or(end_ms).max(s.first);
        s.intervals.sort();
        let (mut covered_to, mut best) = (
            s.first,
            Gap {
                shard: shard.clone(),
                from_ms: s.first,
                ms: 0,
            },
        );
        for (_, a, b) in s.intervals {
            if a >= until {
                break;
            }
            if a > covered_to && a - covered_to > best.ms {
                best = Gap {
                    shard: shard.clone(),
                    from_ms: covered_to,
                    ms: a - covered_to,
                };
            }
            covered_to = covered_to.max(b);
        }
        if until > covered_to && until - covered_to > best.ms {
            best = Gap {
                shard: shard.clone(),
                from_ms: covered_to,
                ms: until - covered_to,
            };
        }
        out.push(best);
    }
    out
}

/// The parts of a reader interval `[a, b)` of `worker` during which the worker was
/// neither killed nor frozen.
fn cut_by_downs(worker: &str, a: u64, b: u64, downs: &[WorkerDown]) -> Vec<(u64, u64)> {
    let mut ds: Vec<&WorkerDown> = downs
        .iter()
        .filter(|d| d.worker == worker && d.t_ms >= a && d.t_ms < b)
        .collect();
    ds.sort_by_key(|d| d.t_ms);
    let mut out = Vec::new();
    let mut from = a;
    for d in ds {
        if d.t_ms < from {
            continue;
        }
        out.push((from, d.t_ms));
        match d.until_ms {
            Some(u) if u < b => from = u,
            _ => return out,
        }
    }
    out.push((from, b));
    out
}

/// Reader events from one worker's JSON log (tracing's flattened JSON lines); other
/// lines are skipped.
pub fn parse_log(worker: &str, text: &str) -> Vec<ReaderEvent> {
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let msg = v["message"].as_str()?;
            let kind = match msg {
                "reading shard" => EventKind::Start,
                "shard task ended" => EventKind::Stop {
                    finished: v["exit"].as_str() == Some("ShardEnd"),
                },
                m if m.starts_with("shard task failed") => EventKind::Stop { finished: false },
                _ => return None,
            };
            let t = humantime::parse_rfc3339_weak(v["timestamp"].as_str()?).ok()?;
            Some(ReaderEvent {
                t_ms: t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64,
                worker: worker.to_string(),
                shard: v["shard"].as_str()?.to_string(),
                kind,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, w: &str, s: &str, kind: EventKind) -> ReaderEvent {
        ReaderEvent {
            t_ms: t,
            worker: w.into(),
            shard: s.into(),
            kind,
        }
    }
    const STOP: EventKind = EventKind::Stop { finished: false };
    const END: EventKind = EventKind::Stop { finished: true };

    #[test]
    fn handover_gap_is_the_time_between_readers() {
        let e = [
            ev(100, "a", "s1", EventKind::Start),
            ev(1_000, "a", "s1", STOP),
            ev(3_500, "b", "s1", EventKind::Start),
        ];
        let g = reader_gaps(&e, &[], 10_000);
        assert_eq!(
            g,
            vec![Gap {
                shard: "s1".into(),
                from_ms: 1_000,
                ms: 2_500
            }]
        );
    }

    #[test]
    fn a_killed_worker_stops_reading_when_killed_not_when_it_logs() {
        // Killed at 2,000 (no log line); b takes over at 6,000.
        let e = [
            ev(0, "a", "s1", EventKind::Start),
            ev(6_000, "b", "s1", EventKind::Start),
        ];
        let d = [WorkerDown {
            t_ms: 2_000,
            worker: "a".into(),
            until_ms: None,
        }];
        let g = reader_gaps(&e, &d, 10_000);
        assert_eq!(g[0].ms, 4_000);
        assert_eq!(g[0].from_ms, 2_000);
    }

    #[test]
    fn overlapping_readers_leave_no_gap_and_a_finished_shard_needs_none() {
        let e = [
            ev(0, "a", "p", EventKind::Start),
            ev(500, "b", "p", EventKind::Start),
            ev(900, "a", "p", STOP),
            ev(1_000, "b", "p", END),
            // The child starts later: waiting for the parent is not a gap.
            ev(4_000, "c", "child", EventKind::Start),
        ];
        let g = reader_gaps(&e, &[], 10_000);
        assert_eq!(g.iter().map(|g| g.ms).collect::<Vec<_>>(), vec![0, 0]);
    }

    #[test]
    fn a_paused_worker_reads_again_after_sigcont() {
        let e = [
            ev(0, "a", "s1", EventKind::Start),
            ev(9_000, "a", "s1", STOP),
        ];
        let d = [WorkerDown {
            t_ms: 1_000,
            worker: "a".into(),
            until_ms: Some(4_000),
        }];
        let g = reader_gaps(&e, &d, 9_000);
        assert_eq!((g[0].from_ms, g[0].ms), (1_000, 3_000));
    }

    #[test]
    fn a_reader_missing_at_the_end_counts_until_the_end() {
        let e = [ev(0, "a", "s", EventKind::Start), ev(1_000, "a", "s", STOP)];
        assert_eq!(reader_gaps(&e, &[], 5_000)[0].ms, 4_000);
    }

    #[test]
    fn parses_the_consumers_json_lines() {
        let text = concat!(
            r#"{"timestamp":"2026-11-23T21:42:11.250Z","level":"INFO","message":"reading shard","shard":"shardId-000000000001"}"#,
            "\n",
            r#"{"timestamp":"2026-11-23T21:42:12.000Z","level":"INFO","message":"shard task ended","shard":"shardId-000000000001","exit":"ShardEnd"}"#,
            "\nnot json\n",
            r#"{"timestamp":"2026-11-23T21:42:12.000Z","level":"INFO","message":"other","shard":"x"}"#,
        );
        let e = parse_log("c0", text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].t_ms - e[0].t_ms, 750);
        assert_eq!(e[1].kind, END);
        assert_eq!(e[0].worker, "c0");
    }
}
