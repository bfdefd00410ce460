//! The Redis key layout, in one place: the consumer's sink writes these names and the
//! report (through [`crate::snapshot`]) reads them. The sink's Lua scripts build the same
//! names from the prefix (`consumer/src/apply/lua/`; a consumer unit test checks their
//! spelling against [`Keys`]).
//!
//! Two layouts. On one Redis the names are those of the README's data model. On a Redis
//! Cluster every key of a symbol carries the hash tag `{symbol:<SYM>}` — the whole name
//! of its legacy count key `symbol:<SYM>`, which keeps its name (reporting jobs read it) —
//! so all of a symbol's keys share that key's slot and one script can update them
//! atomically; the per-shard positions, the symbols index and the dead-letter stream
//! share the tag `{meta}`.
//!
//! Every key part that comes from data (symbol, stream, shard) is checked here too, even
//! though symbols are validated at decode time: a name that could break a key, a glob
//! or a line-oriented reader never reaches Redis.

use crate::Symbol;

/// The legacy per-symbol trade count key prefix (fixed: the reporting jobs read it).
pub const COUNT_PREFIX: &str = "symbol:";
pub const DEFAULT_PREFIX: &str = "tradeflow:";
const MAX_PREFIX_BYTES: usize = 64;
const MAX_PART_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key prefix {0:?} is invalid (printable ASCII without spaces or glob characters, at most 64 bytes, not under `symbol:`)")]
    Prefix(String),
    #[error("{what} {value:?} cannot be part of a Redis key")]
    Part { what: &'static str, value: String },
}

/// Where the keys live: one Redis, or a Redis Cluster (hash-tagged names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    Single,
    Cluster,
}

/// Names of every key tradeflow writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    layout: Layout,
}

impl Keys {
    pub fn new(prefix: &str) -> Result<Self, KeyError> {
        let ok = prefix.len() <= MAX_PREFIX_BYTES
            && prefix.bytes().all(|b| b.is_ascii_graphic() && !is_glob(b))
            && !prefix.starts_with(COUNT_PREFIX);
        if !ok {
            return Err(KeyError::Prefix(prefix.chars().take(80).collect()));
        }
        Ok(Keys {
            prefix: prefix.to_string(),
            layout: Layout::Single,
        })
    }

    /// The same names, laid out for `layout`.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The symbol's part of its key names: `SYM`, or `{symbol:SYM}` on a cluster.
    fn sym(&self, sym: &Symbol) -> String {
        match self.layout {
            Layout::Single => sym.as_str().to_string(),
            Layout::Cluster => format!("{{{COUNT_PREFIX}{sym}}}"),
        }
    }

    /// The shard-level keys' part after the prefix: `` or `{meta}:` on a cluster.
    fn meta(&self) -> &'static str {
        match self.layout {
            Layout::Single => "",
            Layout::Cluster => "{meta}:",
        }
    }

    /// `symbol:<SYM>`: the trade count, a plain integer.
    pub fn count(&self, sym: &Symbol) -> String {
        format!("{COUNT_PREFIX}{sym}")
    }

    /// `<p>stats:<SYM>` hash: `base` (8 decimals), `quote` (16 decimals), `last_price`,
    /// `last_time_ms`, `last_trade_id`.
    pub fn stats(&self, sym: &Symbol) -> String {
        format!("{}stats:{}", self.prefix, self.sym(sym))
    }

    /// `<p>dedupe:<SYM>` hash: `hwm` (highest trade id applied). (Versions before the
    /// `evicted` set also wrote `floor`; it is no longer read.)
    pub fn dedupe(&self, sym: &Symbol) -> String {
        format!("{}dedupe:{}", self.prefix, self.sym(sym))
    }

    /// `<p>gaps:<SYM>` sorted set: member `lo:hi`, score `lo`: id ranges below `hwm`
    /// never applied.
    pub fn gaps(&self, sym: &Symbol) -> String {
        format!("{}gaps:{}", self.prefix, self.sym(sym))
    }

    /// `<p>evicted:<SYM>` sorted set, like `gaps`: gap ranges evicted from it (never
    /// applied; a trade arriving for one is `late`), at most as many as gaps.
    pub fn evicted(&self, sym: &Symbol) -> String {
        format!("{}evicted:{}", self.prefix, self.sym(sym))
    }

    /// `<p>min:<SYM>:<unix minute>` hash: the minute's kline (`count` and `k`, see
    /// `crate::kline::FIELDS`).
    pub fn minute(&self, sym: &Symbol, minute: u64) -> String {
        format!("{}min:{}:{minute}", self.prefix, self.sym(sym))
    }

    /// `<p>hour:<SYM>:<unix hour>` hash: the hour's kline, like `minute`.
    pub fn hour(&self, sym: &Symbol, hour: u64) -> String {
        format!("{}hour:{}:{hour}", self.prefix, self.sym(sym))
    }

    /// `<p>day:<SYM>:<unix day>` hash: the UTC day's kline, like `minute`.
    pub fn day(&self, sym: &Symbol, day: u64) -> String {
        format!("{}day:{}:{day}", self.prefix, self.sym(sym))
    }

    /// `<p>pending:<SYM>` sorted set: hours (member and score) with minute buckets not
    /// yet rolled up into hour and day buckets.
    pub fn pending(&self, sym: &Symbol) -> String {
        format!("{}pending:{}", self.prefix, self.sym(sym))
    }

    /// The bucket of `bucket` kind number `n` (Unix minutes, hours or days).
    pub fn bucket(&self, sym: &Symbol, bucket: crate::kline::Bucket, n: u64) -> String {
        match bucket {
            crate::kline::Bucket::Minute => self.minute(sym, n),
            crate::kline::Bucket::Hour => self.hour(sym, n),
            crate::kline::Bucket::Day => self.day(sym, n),
        }
    }

    /// The `SCAN MATCH` patterns of all of a symbol's kline buckets.
    pub fn bucket_patterns(&self, sym: &Symbol) -> [String; 3] {
        let s = self.sym(sym);
        ["min", "hour", "day"].map(|k| format!("{}{k}:{s}:*", self.prefix))
    }

    /// `<p>symbols` set: every symbol ever applied.
    pub fn symbols(&self) -> String {
        format!("{}{}symbols", self.prefix, self.meta())
    }

    /// `<p>dead_letter` stream: poison records.
    pub fn dead_letter(&self) -> String {
        format!("{}{}dead_letter", self.prefix, self.meta())
    }

    /// `<p>stream:<stream>` string: the creation time (Unix ms) of the stream the
    /// positions `<p>pos:<stream>:*` belong to (a stream deleted and created again
    /// under the same name starts over; see `crate::stream_identity`).
    pub fn stream_created(&self, stream: &str) -> Result<String, KeyError> {
        check_part("stream", stream)?;
        Ok(format!("{}{}stream:{stream}", self.prefix, self.meta()))
    }

    /// The `SCAN MATCH` pattern of every position of `stream` (the prefix has no glob
    /// characters: checked in `new`; braces are not special to Redis's glob).
    pub fn positions_of(&self, stream: &str) -> Result<String, KeyError> {
        check_part("stream", stream)?;
        Ok(format!("{}{}pos:{stream}:*", self.prefix, self.meta()))
    }

    /// `<p>pos:<stream>:<shard>` hash: `seq`, `sub` — the highest position applied.
    pub fn position(&self, stream: &str, shard: &str) -> Result<String, KeyError> {
        check_part("stream", stream)?;
        check_part("shard id", shard)?;
        Ok(format!(
            "{}{}pos:{stream}:{shard}",
            self.prefix,
            self.meta()
        ))
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            prefix: DEFAULT_PREFIX.to_string(),
            layout: Layout::Single,
        }
    }
}

fn is_glob(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b'\\')
}

/// Kinesis stream names and shard ids are `[A-Za-z0-9_.-]+`; nothing else is let in.
pub fn check_part(what: &'static str, value: &str) -> Result<(), KeyError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_PART_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Part {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

/// A symbol is safe by construction; checked again here, since a key broken by one
/// bad name would corrupt others.
pub fn check_symbol(sym: &Symbol) -> Result<(), KeyError> {
    let s = sym.as_str();
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() && !c.is_lowercase() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(KeyError::Part {
            what: "symbol",
            value: s.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::default();
        let s = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(k.count(&s), "symbol:BTCUSDT");
        assert_eq!(k.stats(&s), "tradeflow:stats:BTCUSDT");
        assert_eq!(k.minute(&s, 7), "tradeflow:min:BTCUSDT:7");
        assert_eq!(
            k.position("trades", "shardId-000000000001").unwrap(),
            "tradeflow:pos:trades:shardId-000000000001"
        );
    }

    #[test]
    fn cluster_layout_shares_the_count_keys_slot() {
        let k = Keys::default().with_layout(Layout::Cluster);
        let s = Symbol::new("BTCUSDT").unwrap();
        assert_eq!(k.count(&s), "symbol:BTCUSDT");
        assert_eq!(k.stats(&s), "tradeflow:stats:{symbol:BTCUSDT}");
        assert_eq!(k.dedupe(&s), "tradeflow:dedupe:{symbol:BTCUSDT}");
        assert_eq!(k.gaps(&s), "tradeflow:gaps:{symbol:BTCUSDT}");
        assert_eq!(k.evicted(&s), "tradeflow:evicted:{symbol:BTCUSDT}");
        assert_eq!(k.minute(&s, 7), "tradeflow:min:{symbol:BTCUSDT}:7");
        assert_eq!(k.symbols(), "tradeflow:{meta}:symbols");
        assert_eq!(k.dead_letter(), "tradeflow:{meta}:dead_letter");
        assert_eq!(
            k.position("trades", "shardId-000000000001").unwrap(),
            "tradeflow:{meta}:pos:trades:shardId-000000000001"
        );
    }

    #[test]
    fn rejects_key_breakers() {
        for p in ["symbol:", "a b", "x*", "a\n", "{t}"] {
            assert!(Keys::new(p).is_err(), "{p:?}");
        }
        assert!(Keys::new("").is_ok());
        assert!(Keys::new("tf-test:").is_ok());
        let k = Keys::default();
        for bad in ["", "a:b", "s*", "x y", "a\r\n", "é"] {
            assert!(k.position(bad, "shardId-1").is_err(), "{bad:?}");
            assert!(k.position("s", bad).is_err(), "{bad:?}");
        }
        assert!(check_symbol(&Symbol::new("币安人生USDT").unwrap()).is_ok());
    }
}
