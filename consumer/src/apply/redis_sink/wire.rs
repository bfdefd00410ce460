//! What the apply scripts take and answer: the poison records and segments as ARGV,
//! the reply `{status, applied, duplicates, poison, late, rest…}` parsed back.

use redis::Value;
use tradeflow_shared::kline::limbs;
use tradeflow_shared::{Position, SequenceNumber};

use super::SinkError;
use crate::apply::fold::{PoisonEntry, Segment, MINUTE_MS};

/// The "behind" reply's stored position (`''` when Redis holds none).
pub(super) fn behind(rest: &[String]) -> SinkError {
    let stored = match rest {
        [seq, _] if seq.is_empty() => None,
        [seq, sub] => match (SequenceNumber::parse(seq), sub.parse()) {
            (Ok(seq), Ok(sub)) => Some(Position::new(seq, sub)),
            _ => return SinkError::Protocol(format!("stored position {seq:?} {sub:?}")),
        },
        _ => return SinkError::Protocol(format!("behind reply {rest:?}")),
    };
    SinkError::Behind { stored }
}

/// The poison records (the batch's, then trades kept aside), as both apply scripts take
/// them: count P, then P × {seq, sub, kind, reason, data}.
pub(super) fn push_poison(
    inv: &mut redis::ScriptInvocation<'_>,
    batch: &[PoisonEntry],
    more: &[PoisonEntry],
) {
    inv.arg(batch.len() + more.len());
    for p in batch.iter().chain(more) {
        inv.arg(p.pos.seq.as_str())
            .arg(p.pos.sub)
            .arg(p.kind)
            .arg(&p.reason)
            .arg(&p.data[..]);
    }
}

pub(super) fn push_segments(inv: &mut redis::ScriptInvocation<'_>, segs: &[Segment]) {
    inv.arg(segs.len());
    for g in segs {
        inv.arg(g.first_id)
            .arg(g.last_id)
            .arg(g.count)
            .arg(g.base_units.to_string())
            .arg(g.quote_units.to_string())
            .arg(g.last_price.to_string())
            .arg(g.last_time_ms)
            .arg(g.minutes.len());
        for m in &g.minutes {
            inv.arg(m.open_time_ms / MINUTE_MS).arg(m.count);
            for v in [m.base, m.quote, m.taker_base, m.taker_quote] {
                let (hi, lo) = limbs(v);
                inv.arg(hi.to_string()).arg(lo.to_string());
            }
            inv.arg(m.open.to_string())
                .arg(m.open_id)
                .arg(m.close.to_string())
                .arg(m.close_id)
                .arg(m.high.to_string())
                .arg(m.low.to_string());
        }
    }
}

pub(super) type Reply = (i64, [u64; 4], Vec<String>);

pub(super) fn parse_reply(reply: &[Value]) -> Result<Reply, SinkError> {
    let bad = || SinkError::Protocol(format!("apply script replied {reply:?}"));
    if reply.len() < 5 {
        return Err(bad());
    }
    let int = |v: &Value| match v {
        Value::Int(n) if *n >= 0 => Ok(*n),
        _ => Err(bad()),
    };
    let status = int(&reply[0])?;
    let mut nums = [0u64; 4];
    for (i, n) in nums.iter_mut().enumerate() {
        *n = int(&reply[i + 1])? as u64;
    }
    let mut split = Vec::new();
    for v in &reply[5..] {
        match v {
            Value::BulkString(b) => split.push(String::from_utf8_lossy(b).into_owned()),
            _ => return Err(bad()),
        }
    }
    if status > 4 {
        return Err(bad());
    }
    Ok((status, nums, split))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_parsing() {
        let r = vec![
            Value::Int(2),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::BulkString(b"BTCUSDT".to_vec()),
        ];
        let (s, _, split) = parse_reply(&r).unwrap();
        assert_eq!((s, split), (2, vec!["BTCUSDT".to_string()]));
        assert!(parse_reply(&[Value::Nil]).is_err());
    }
}
