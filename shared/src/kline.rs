//! Klines (candles) as Binance defines them, kept exactly: what the consumer's apply
//! script writes per minute, hour and day (`redis_keys::Keys::{minute, hour, day}`),
//! what the report reads back and rolls up to longer intervals, and what it compares
//! with the exchange's own `GET /api/v3/klines`.
//!
//! A kline of an interval holds the trades whose trade time `T` falls in it (UTC,
//! intervals aligned on the Unix epoch like Binance's): their number, base volume,
//! quote volume (Σ price × qty), taker-buy base and quote volume (trades whose buyer is
//! not the maker, `m` = false), and open/high/low/close, where open and close are the
//! prices of the trades with the lowest and the highest trade id. Everything here is
//! integer arithmetic: volumes in units of 1e-8 (base) and 1e-16 (quote), prices in
//! [`Fixed8`]. Merging two klines of disjoint trades is exact and order-free, so longer
//! intervals are roll-ups of shorter ones.

use std::fmt;
use std::str::FromStr;

use crate::decimal::format_scaled;
use crate::Fixed8;

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

/// The buckets Redis holds: one hash per symbol and minute, hour and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn ms(self) -> u64 {
        match self {
            Bucket::Minute => MINUTE_MS,
            Bucket::Hour => HOUR_MS,
            Bucket::Day => DAY_MS,
        }
    }
}

/// The intervals tradeflow serves: Binance's, those that are whole numbers of one
/// stored bucket and aligned on the epoch (Binance's `3d`, `1w` and `1M` are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
}

impl Interval {
    pub const ALL: [Interval; 12] = [
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
    ];

    /// Binance's name (`1m`, `5m`, `1h`, `1d`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
        }
    }

    pub fn ms(self) -> u64 {
        match self {
            Interval::M1 => MINUTE_MS,
            Interval::M3 => 3 * MINUTE_MS,
            Interval::M5 => 5 * MINUTE_MS,
            Interval::M15 => 15 * MINUTE_MS,
            Interval::M30 => 30 * MINUTE_MS,
            Interval::H1 => HOUR_MS,
            Interval::H2 => 2 * HOUR_MS,
            Interval::H4 => 4 * HOUR_MS,
            Interval::H6 => 6 * HOUR_MS,
            Interval::H8 => 8 * HOUR_MS,
            Interval::H12 => 12 * HOUR_MS,
            Interval::D1 => DAY_MS,
        }
    }

    /// The stored bucket it is rolled up from: the longest that divides it (hours and
    /// days are kept far longer than minutes).
    pub fn source(self) -> Bucket {
        if self.ms().is_multiple_of(DAY_MS) {
            Bucket::Day
        } else if self.ms().is_multiple_of(HOUR_MS) {
            Bucket::Hour
        } else {
            Bucket::Minute
        }
    }

    /// The start of the interval holding `time_ms`.
    pub fn start_of(self, time_ms: u64) -> u64 {
        time_ms - time_ms % self.ms()
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Interval::ALL.iter().map(|i| i.as_str()).collect();
                format!("interval {s:?} is not one of {}", names.join(", "))
            })
    }
}

/// One candle. `open_id`/`close_id` are the trade ids open and close were taken from
/// (0 in a kline parsed from the exchange, which does not give them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kline {
    pub open_time_ms: u64,
    pub interval_ms: u64,
    pub open: Fixed8,
    pub high: Fixed8,
    pub low: Fixed8,
    pub close: Fixed8,
    pub open_id: u64,
    pub close_id: u64,
    pub count: u64,
    /// Base volume in units of 1e-8.
    pub base: u128,
    /// Quote volume (Σ price × qty) in units of 1e-16.
    pub quote: u128,
    /// Taker-buy base volume (trades with `m` = false), 1e-8.
    pub taker_base: u128,
    /// Taker-buy quote volume, 1e-16.
    pub taker_quote: u128,
}

/// The fields of a kline, in the order [`Kline::from_fields`] takes them. Volumes are
/// integers of units (1e-8 base, 1e-16 quote) in two limbs, `hi` × [`LIMB`] + `lo`, so
/// the apply script adds them as Lua numbers, exactly (each limb < 2^53).
///
/// A stored bucket is a hash of two fields: `count`, and `k` — the other 14 fields in
/// this order, separated by spaces (prices and ids `-` while the bucket holds only
/// minutes from before klines): two fields cost Redis far less per batch than 15.
/// Buckets written before `k` hold these as 15 fields of their own (read as well; the
/// consumer's next write packs them).
pub const FIELDS: [&str; 15] = [
    "count",
    "base_hi",
    "base_lo",
    "quote_hi",
    "quote_lo",
    "tbase_hi",
    "tbase_lo",
    "tquote_hi",
    "tquote_lo",
    "open",
    "open_id",
    "close",
    "close_id",
    "high",
    "low",
];

/// The low limb's range of a stored volume.
pub const LIMB: u128 = 100_000_000_000_000;

/// A volume in units as the (hi, lo) limbs the buckets store.
pub fn limbs(units: u128) -> (u128, u128) {
    (units / LIMB, units % LIMB)
}

impl Kline {
    /// The kline of one trade.
    pub fn of_trade(
        interval_ms: u64,
        id: u64,
        price: Fixed8,
        qty: Fixed8,
        time_ms: u64,
        buyer_is_maker: bool,
    ) -> Self {
        let quote = price.times(qty);
        let (tb, tq) = if buyer_is_maker {
            (0, 0)
        } else {
            (qty.0 as u128, quote)
        };
        Kline {
            open_time_ms: time_ms - time_ms % interval_ms,
            interval_ms,
            open: price,
            high: price,
            low: price,
            close: price,
            open_id: id,
            close_id: id,
            count: 1,
            base: qty.0 as u128,
            quote,
            taker_base: tb,
            taker_quote: tq,
        }
    }

    /// Binance's close time: the last millisecond of the interval.
    pub fn close_time_ms(&self) -> u64 {
        self.open_time_ms + self.interval_ms - 1
    }

    /// Adds the trades of `other` (disjoint from this kline's; any interval inside
    /// this one's). Exact and order-free.
    pub fn merge(&mut self, other: &Kline) {
        if other.open_id < self.open_id {
            self.open_id = other.open_id;
            self.open = other.open;
        }
        if other.close_id > self.close_id {
            self.close_id = other.close_id;
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.count += other.count;
        self.base += other.base;
        self.quote += other.quote;
        self.taker_base += other.taker_base;
        self.taker_quote += other.taker_quote;
    }

    /// Parses a stored bucket (`HMGET` of [`FIELDS`]); `None` when it holds no trade.
    /// An error names the field that is not what the consumer writes.
    pub fn from_fields(
        open_time_ms: u64,
        interval_ms: u64,
        f: &[Option<String>],
    ) -> Result<Option<Kline>, String> {
        if f.len() != FIELDS.len() {
            return Err(format!("{} fields, not {}", f.len(), FIELDS.len()));
        }
        let Some(count) = &f[0] else {
            return Ok(None);
        };
        let count: u64 = count
            .parse()
            .map_err(|_| format!("field count holds {count:?}, not a count"))?;
        if count == 0 {
            return Ok(None);
        }
        let need = |i: usize| {
            f[i].as_deref().ok_or_else(|| {
                format!(
                    "field {} is missing (a bucket written before klines were kept?)",
                    FIELDS[i]
                )
            })
        };
        let int = |i: usize| -> Result<u128, String> {
            let v = need(i)?;
            v.parse()
                .map_err(|_| format!("field {} holds {v:?}, not an integer", FIELDS[i]))
        };
        let units = |i: usize| -> Result<u128, String> {
            let (hi, lo) = (int(i)?, int(i + 1)?);
            if lo >= LIMB {
                return Err(format!(
                    "field {} holds {lo}, not below {LIMB}",
                    FIELDS[i + 1]
                ));
            }
            hi.checked_mul(LIMB)
                .and_then(|h| h.checked_add(lo))
                .ok_or_else(|| format!("field {} holds {hi}, too large", FIELDS[i]))
        };
        let price = |i: usize| -> Result<Fixed8, String> {
            let v = need(i)?;
            Fixed8::parse(v).map_err(|_| format!("field {} holds {v:?}, not a price", FIELDS[i]))
        };
        let id = |i: usize| -> Result<u64, String> {
            let v = need(i)?;
            v.parse()
                .map_err(|_| format!("field {} holds {v:?}, not a trade id", FIELDS[i]))
        };
        Ok(Some(Kline {
            open_time_ms,
            interval_ms,
            count,
            base: units(1)?,
            quote: units(3)?,
            taker_base: units(5)?,
            taker_quote: units(7)?,
            open: price(9)?,
            open_id: id(10)?,
            close: price(11)?,
            close_id: id(12)?,
            high: price(13)?,
            low: price(14)?,
        }))
    }

    /// What a reader asks a bucket for (`HMGET`): `count`, `k`, then the older
    /// layout's fields after `count`, so one command reads either layout.
    pub fn stored_fields() -> Vec<&'static str> {
        let mut f = vec!["count", "k"];
        f.extend_from_slice(&FIELDS[1..]);
        f
    }

    /// Parses a stored bucket, `HMGET` of [`Kline::stored_fields`]; `None` when it
    /// holds no trade.
    pub fn from_stored(
        open_time_ms: u64,
        interval_ms: u64,
        f: &[Option<String>],
    ) -> Result<Option<Kline>, String> {
        if f.len() != FIELDS.len() + 1 {
            return Err(format!("{} fields, not {}", f.len(), FIELDS.len() + 1));
        }
        let Some(k) = &f[1] else {
            let mut old = vec![f[0].clone()];
            old.extend_from_slice(&f[2..]);
            return Self::from_fields(open_time_ms, interval_ms, &old);
        };
        let parts: Vec<&str> = k.split(' ').collect();
        if parts.len() != FIELDS.len() - 1 {
            return Err(format!(
                "field k holds {} values, not {}",
                parts.len(),
                FIELDS.len() - 1
            ));
        }
        let mut all = vec![f[0].clone()];
        all.extend(parts.iter().map(|p| (*p != "-").then(|| (*p).to_string())));
        Self::from_fields(open_time_ms, interval_ms, &all)
    }

    /// The `k` field the consumer stores for this kline (see [`FIELDS`]).
    pub fn packed(&self) -> String {
        let (bh, bl) = limbs(self.base);
        let (qh, ql) = limbs(self.quote);
        let (tbh, tbl) = limbs(self.taker_base);
        let (tqh, tql) = limbs(self.taker_quote);
        format!(
            "{bh} {bl} {qh} {ql} {tbh} {tbl} {tqh} {tql} {} {} {} {} {} {}",
            self.open, self.open_id, self.close, self.close_id, self.high, self.low
        )
    }

    /// Binance's kline array: `[open time, open, high, low, close, volume, close time,
    /// quote asset volume, number of trades, taker buy base asset volume, taker buy
    /// quote asset volume, ignore]`, decimals as strings. The quote volumes keep their
    /// 16 exact decimals (Binance prints 8).
    pub fn to_binance_array(&self) -> serde_json::Value {
        serde_json::json!([
            self.open_time_ms,
            self.open.to_string(),
            self.high.to_string(),
            self.low.to_string(),
            self.close.to_string(),
            format_scaled(self.base, 8),
            self.close_time_ms(),
            format_scaled(self.quote, 16),
            self.count,
            format_scaled(self.taker_base, 8),
            format_scaled(self.taker_quote, 16),
            "0"
        ])
    }

    /// Parses one of Binance's kline arrays (as `GET /api/v3/klines` answers). Decimals
    /// of any precision up to 8 (base, prices) or 16 (quote) are taken exactly.
    pub fn from_binance_array(v: &serde_json::Value, interval_ms: u64) -> Result<Kline, String> {
        let a = v
            .as_array()
            .filter(|a| a.len() >= 11)
            .ok_or_else(|| format!("a kline is an array of 12 fields, not {}", short(v)))?;
        let int = |i: usize| {
            a[i].as_u64()
                .ok_or_else(|| format!("kline field {i} is {}, not an integer", short(&a[i])))
        };
        let text = |i: usize| {
            a[i].as_str()
                .ok_or_else(|| format!("kline field {i} is {}, not a decimal string", short(&a[i])))
        };
        let units = |i: usize, scale: u32| -> Result<u128, String> {
            let t = text(i)?;
            parse_units(t, scale).ok_or_else(|| format!("kline field {i} is {t:?}, not a decimal"))
        };
        let price = |i: usize| -> Result<Fixed8, String> {
            let t = text(i)?;
            Fixed8::parse(t).map_err(|_| format!("kline field {i} is {t:?}, not a price"))
        };
        let open_time_ms = int(0)?;
        let close_time = int(6)?;
        if close_time != open_time_ms + interval_ms - 1 {
            return Err(format!(
                "kline opening at {open_time_ms} closes at {close_time}, not after {interval_ms} ms"
            ));
        }
        Ok(Kline {
            open_time_ms,
            interval_ms,
            open: price(1)?,
            high: price(2)?,
            low: price(3)?,
            close: price(4)?,
            open_id: 0,
            close_id: 0,
            base: units(5, 8)?,
            quote: units(7, 16)?,
            count: int(8)?,
            taker_base: units(9, 8)?,
            taker_quote: units(10, 16)?,
        })
    }
}

/// Rolls stored buckets (each of one interval that divides `interval`, any order) up
/// into `interval`'s candles, ascending by open time.
pub fn roll_up(interval: Interval, buckets: &[Kline]) -> Vec<Kline> {
    let mut out: Vec<Kline> = Vec::new();
    let mut sorted: Vec<&Kline> = buckets.iter().collect();
    sorted.sort_by_key(|k| k.open_time_ms);
    for b in sorted {
        let start = interval.start_of(b.open_time_ms);
        match out.last_mut() {
            Some(k) if k.open_time_ms == start => k.merge(b),
            _ => {
                let mut k = *b;
                k.open_time_ms = start;
                k.interval_ms = interval.ms();
                out.push(k);
            }
        }
    }
    out
}

/// A non-negative decimal with at most `scale` fractional digits, in units of
/// 10^-scale; `None` for anything else or beyond u128.
pub fn parse_units(s: &str, scale: u32) -> Option<u128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || frac.len() > scale as usize
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut n: u128 = int.parse().ok()?;
    for _ in 0..scale {
        n = n.checked_mul(10)?;
    }
    let mut f: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..scale as usize {
        f *= 10;
    }
    n.checked_add(f)
}

fn short(v: &serde_json::Value) -> String {
    let t = v.to_string();
    match t.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

#[cfg(test)]
mod tests;
