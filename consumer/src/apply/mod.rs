//! Exact totals in Redis, each trade counted exactly once.
//!
//! Reading Kinesis is at-least-once (replays after a crash, two workers on one shard
//! after a steal, reshards, the producer writing a trade twice with new sequence
//! numbers or out of order). This module makes the *effects* exactly-once: a trade is
//! identified by (symbol, trade id), and Redis itself remembers which ids it applied,
//! in the same atomic script that changes the totals.
//!
//! # Flow
//! [`fold`] (pure) turns a batch of decoded records into, per symbol, the trades sorted
//! by id and cut into *segments* (maximal runs of consecutive ids) with their summed
//! deltas, plus the poison records and the batch's first/last position.
//! [`RedisSink::apply`] sends it in one `EVALSHA` of the batch script (`lua/`).
//!
//! # Data model (prefix `P`, default `tradeflow:`, configurable)
//! | key | type | content |
//! |---|---|---|
//! | `symbol:<SYM>` | string | trade count, plain integer (legacy `MGET`); nothing else lives under `symbol:` |
//! | `P stats:<SYM>` | hash | `base` traded quantity, decimal string with exactly 8 decimals; `quote` volume (Σ price × qty), exactly 16 decimals; `last_price` (8 decimals), `last_time_ms`, `last_trade_id` — of the highest trade id applied |
//! | `P min:<SYM>:<unix minute>` | hash | the kline of the trades whose trade time falls in that minute (UTC): `count`; volumes as integers of units in two limbs, `hi` × 1e14 + `lo` — `base_hi`/`base_lo` and `tbase_*` (taker-buy base, trades with `m` = false) in 1e-8, `quote_*` and `tquote_*` in 1e-16; `open`/`close` (8 dec.) with `open_id`/`close_id`, the prices of its lowest and highest trade id; `high`, `low`. TTL (`minute_ttl`) refreshed on each write, so a bucket lives `minute_ttl` after its last trade |
//! | `P hour:<SYM>:<unix hour>`, `P day:<SYM>:<unix day>` | hash | the same kline per hour and per UTC day, for the hours rolled up (`hour_ttl`, `day_ttl`) |
//! | `P pending:<SYM>` | sorted set | hours (member = score) with minute buckets not rolled up yet |
//! | `P symbols` | set | every symbol applied (readers never need `KEYS`) |
//! | `P dedupe:<SYM>` | hash | `hwm`: highest trade id applied; `sealed`: the hour up to which hours are rolled up (`floor`, written by earlier versions, is no longer read) |
//! | `P gaps:<SYM>` | sorted set | id ranges below `hwm` never applied, member `lo:hi`, score `lo`; at most 1,000 per symbol |
//! | `P evicted:<SYM>` | sorted set | like `gaps`: ranges evicted from it (never applied); at most 1,000 per symbol |
//! | `P pos:<stream>:<shard>` | hash | `seq`, `sub`: highest position applied for the shard ([`RedisSink::stored_position`]) |
//! | `P dead_letter` | stream | poison records: `stream shard seq sub kind reason data` (data ≤ 4 KiB), `XADD MAXLEN ~ dead_letter_maxlen` |
//!
//! # Why each trade counts once
//! Per symbol, the script keeps `hwm` and the gaps below it. A segment entirely above
//! `hwm` is applied (a jump above `hwm + 1` records the skipped ids as a gap; the very
//! first segment of a symbol records `0..lo-1` as a gap, since those were never seen
//! either). A segment entirely inside one gap is applied and the gap split. A segment
//! entirely at/below `hwm` and outside every gap is a duplicate: skipped, counted. A
//! segment that straddles (partly seen, partly not) makes the script answer "split"
//! *before writing anything*; the sink re-sends those symbols one trade per segment
//! (a single id never straddles) — a second round trip only on that rare path.
//! So replays with other batch boundaries, racing workers (scripts run atomically),
//! producer duplicates with new sequence numbers, out-of-order ids and reshards (a
//! child shard continues the same per-symbol state) all leave the totals exact.
//!
//! Gaps are bounded: beyond 1,000 ranges for a symbol the lowest move to `evicted`
//! (bounded the same way); a trade that later arrives in an evicted range is **not
//! applied** and is counted `late_dropped` (`tradeflow_consumer_late_trades_dropped_total`),
//! while a redelivery of a trade applied long ago, however old, stays a duplicate.
//! A range evicted from both sets is forgotten: a trade for it counts as a duplicate.
//! Binance ids are consecutive, so real gaps are rare; this only bounds memory against
//! pathological input.
//!
//! # Foreign values
//! Before writing anything the scripts read and check every key a symbol's writes rely
//! on (types, integers, decimal shapes, gap ranges): Redis does not roll back a script
//! that fails half way, and `symbol:` is shared with legacy jobs. A symbol whose keys
//! hold something else gets none of its trades applied; they are kept aside as poison
//! (kind `foreign_value`) and the rest of the batch goes on — see
//! `redis_sink::foreign`. A foreign value in a key of the whole batch (symbols index,
//! dead letters, position) fails the batch before any write (`SinkError::Fatal`, kind
//! `foreign_value`).
//!
//! Per shard, `pos` is advanced in the same script. A batch whose last position is at or
//! below it is skipped whole without touching any symbol (fast path for replays).
//! This relies on one invariant of the caller: an applier starts a shard at a point
//! where everything before is applied (a checkpoint, written only after `apply`, or
//! [`RedisSink::stored_position`]) and applies its batches in order. Trades are
//! protected by the per-symbol dedupe even without it; the fast path and the poison
//! dedupe need it.
//! Poison records are dead-lettered only when their position is above `pos`, so a
//! replay never writes them twice. Because the counts and `pos` share one script and
//! one AOF, after Redis loses its last second of writes (`appendfsync everysec`) the
//! two are still consistent: the worker resumes from `stored_position` when it is
//! behind the DynamoDB checkpoint.
//!
//! # Candles
//! Each segment carries, per minute it touches, the kline of its trades there
//! ([`tradeflow_shared::kline::Kline`], built in [`fold`]); the script merges it into
//! the minute's bucket only when it applies the segment (never for duplicates), so the
//! buckets are exactly once like the totals: volumes added as two-limb Lua numbers
//! (exact, no string arithmetic), `open`/`close` replaced when the segment holds a
//! lower/higher trade id (a late trade filling a gap moves them correctly), `high`/`low`
//! by decimal comparison. The hot path writes one bucket per minute touched: a new
//! minute notes its hour in `pending`, and about once a minute every worker rolls the
//! closed pending hours up into hour and day buckets and moves the symbol's `sealed`
//! hour ([`RedisSink::seal_hours`], atomic per symbol). A trade for an hour at or below
//! `sealed` is merged into its minute, hour and day bucket directly; readers take hours
//! above it from their minutes. So every candle is exact whenever the roll-up runs.
//! A minute bucket written before klines were kept (`count`, decimal `base`/`quote`)
//! keeps those (converted to limbs on its next write); its other fields start from the
//! next trades.

//! # Why the numbers are exact
//! Rust sums each segment in integer units (u128: base in 1e-8, quote in 1e-16) and
//! sends them as decimal integer strings; Lua adds them to the stored decimal strings
//! digit-wise (7-digit limbs, each well below 2^53), never as Lua numbers. The totals
//! have no upper bound (strings grow), so ten years of the busiest symbol cannot
//! overflow; the count is a 64-bit integer (10 years × 1,000/s = 3.2e11). Trade ids
//! above 2^53 (exact limit of Lua numbers) are poison (`trade_id_range`).
//!
//! # Cost per batch
//! One round trip (`EVALSHA`; `NOSCRIPT` after a restart reloads transparently). Work
//! is O(records) in Rust and O(segments + minutes + poison) commands in Lua for the
//! symbols *in the batch* only — normally per symbol: `HMGET` dedupe, `HSET` hwm,
//! `HSET` last, `INCRBY` count, `HMGET`+`HSET` stats, 3 commands per minute bucket
//! touched (`HMGET` in the checks, one `HSET` of all fields and one `EXPIRE` per
//! symbol, however many segments fell in it; the same for its hour and day bucket only
//! when the hour is already rolled up), one `ZADD` per new minute,
//! `SADD`, plus the checks (`GET` count, two `ZCARD`). Gap lookups (`O(log gaps)`) and the
//! check of every gap range (`O(gaps)`, at most 2,000) happen only for symbols with
//! segments at/below `hwm`.
//!
//! # On a Redis Cluster
//! Keys carry hash tags ([`keys::Layout::Cluster`]) and a batch takes three steps —
//! each symbol in its slot, `WAIT` for replicas, then the shard's position — described
//! in [`redis_sink`] and in the README ("Redis Cluster").

pub mod fold;
#[cfg(test)]
mod lua_keys;
pub mod redis_sink;

pub use fold::{fold, BatchDelta, PoisonEntry, Segment, SymbolDelta, TradeLite};
pub use redis_sink::{
    ApplyOutcome, RedisSink, SealOutcome, ShardEndCheck, SinkConfig, SinkError, MAX_GAPS_PER_SYMBOL,
};
pub use tradeflow_shared::redact::redact_url;
pub use tradeflow_shared::redis_conn::{RedisConn, Target};
pub use tradeflow_shared::redis_keys::{self as keys, KeyError, Keys, Layout};
