//! The trade event and its decoding from Binance's JSON, as sent on `<symbol>@trade`
//! streams, raw or wrapped in a combined-stream envelope. Decoding borrows from the
//! input; unknown fields are ignored (Binance adds fields over time) and the removed
//! `b`/`a` order-id fields of old captures are accepted.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::{DecimalError, Fixed8};

mod fast;
use crate::symbol::{Symbol, SymbolError};

/// The largest quote value (price × quantity, in quote currency) accepted for one
/// trade. Anything above is an absurd record, kept aside rather than counted.
pub const MAX_TRADE_QUOTE_UNITS: u128 = 1_000_000_000_000 * 10u128.pow(16);

/// One executed trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    pub symbol: Symbol,
    pub trade_id: u64,
    pub price: Fixed8,
    pub qty: Fixed8,
    /// Trade time in milliseconds since the epoch (microsecond inputs are converted).
    pub trade_time_ms: u64,
    /// Event time in milliseconds since the epoch.
    pub event_time_ms: u64,
    pub buyer_is_maker: bool,
}

impl Trade {
    /// Price × quantity in units of 1e-16.
    pub fn quote_units(&self) -> u128 {
        self.price.times(self.qty)
    }

    /// Renders the trade in Binance's current wire format (used by the local exchange,
    /// the synthetic source and tests).
    pub fn to_json(&self) -> String {
        // Written by hand (no core::fmt): the synthetic source makes one per trade.
        let mut out = String::with_capacity(160);
        let mut num = itoa::Buffer::new();
        out.push_str(r#"{"e":"trade","E":"#);
        out.push_str(num.format(self.event_time_ms));
        out.push_str(r#","s":""#);
        out.push_str(self.symbol.as_str());
        out.push_str(r#"","t":"#);
        out.push_str(num.format(self.trade_id));
        out.push_str(r#","p":""#);
        self.price.push_to(&mut out);
        out.push_str(r#"","q":""#);
        self.qty.push_to(&mut out);
        out.push_str(r#"","T":"#);
        out.push_str(num.format(self.trade_time_ms));
        out.push_str(if self.buyer_is_maker {
            r#","m":true,"M":true}"#
        } else {
            r#","m":false,"M":true}"#
        });
        out
    }
}

/// What one websocket message or one Kinesis user record turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A trade; `json` is the trade object exactly as Binance sent it (the `data` part
    /// of a combined-stream message).
    Trade { trade: Trade, json: &'a str },
    /// The reply to SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS: `{"result":…,"id":…}`.
    ControlReply,
    /// `serverShutdown`: the server will close this connection soon.
    ServerShutdown,
    /// A well-formed event of another type (aggTrade, …), not counted as a trade.
    Other { event_type: Cow<'a, str> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid symbol: {0}")]
    Symbol(#[from] SymbolError),
    #[error("invalid price: {0}")]
    Price(DecimalError),
    #[error("invalid quantity: {0}")]
    Qty(DecimalError),
    #[error("non-positive price or quantity")]
    NotPositive,
    #[error("absurd trade value (price × quantity above the sanity bound)")]
    Absurd,
    #[error("implausible trade time {0}")]
    Time(u64),
    #[error("not valid UTF-8")]
    Utf8,
}

impl DecodeError {
    /// A short, bounded label for metrics (never the offending data).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "json",
            DecodeError::Missing(_) => "missing_field",
            DecodeError::Symbol(_) => "symbol",
            DecodeError::Price(_) => "price",
            DecodeError::Qty(_) => "quantity",
            DecodeError::NotPositive => "not_positive",
            DecodeError::Absurd => "absurd_value",
            DecodeError::Time(_) => "time",
            DecodeError::Utf8 => "utf8",
        }
    }
}

#[derive(Deserialize, Default)]
struct Wire<'a> {
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    #[serde(rename = "E", default)]
    event_time: Option<u64>,
    #[serde(borrow, default)]
    s: Option<Cow<'a, str>>,
    #[serde(default)]
    t: Option<u64>,
    #[serde(borrow, default)]
    p: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    q: Option<Cow<'a, str>>,
    #[serde(rename = "T", default)]
    trade_time: Option<u64>,
    #[serde(default)]
    m: Option<bool>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Decodes bytes (a Kinesis record) as an event.
pub fn decode_bytes(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8)?;
    decode_event(text)
}

/// Decodes one message: a raw trade, a combined-stream envelope, a control reply, or a
/// `serverShutdown` notice.
pub fn decode_event(text: &str) -> Result<Event<'_>, DecodeError> {
    // Almost every message is a plain trade: parse it by hand (about 4× faster), and
    // let serde handle everything else. Both feed the same `classify`.
    let mut wire = Wire::default();
    if let Some(json) = fast::parse(text, &mut wire) {
        return classify(wire, json);
    }
    decode_event_serde(text)
}

/// The general path: any JSON serde accepts, and its precise errors.
fn decode_event_serde(text: &str) -> Result<Event<'_>, DecodeError> {
    // serde would also accept a JSON array for a struct; only objects are events.
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::Json("not a JSON object".into()));
    }
    let wire: Wire<'_> = serde_json::from_str(text).map_err(json_err)?;
    if let Some(data) = wire.data {
        // Combined stream: `{"stream":"btcusdt@trade","data":{...}}`. The payload is
        // decoded on its own; the stream name is only a hint.
        if wire.stream.as_deref() == Some("!serverShutdown") {
            return Ok(Event::ServerShutdown);
        }
        if !data.get().starts_with('{') {
            return Err(DecodeError::Json(
                "combined-stream data is not an object".into(),
            ));
        }
        let inner: Wire<'_> = serde_json::from_str(data.get()).map_err(json_err)?;
        if inner.data.is_some() {
            return Err(DecodeError::Json("nested combined-stream envelope".into()));
        }
        return classify(inner, data.get());
    }
    classify(wire, text)
}

fn classify<'a>(w: Wire<'a>, json: &'a str) -> Result<Event<'a>, DecodeError> {
    match w.e.as_deref() {
        Some("trade") => {}
        Some("serverShutdown") => return Ok(Event::ServerShutdown),
        Some(_) => {
            return Ok(Event::Other {
                event_type: w.e.unwrap_or_default(),
            })
        }
        None if w.id.is_some() => return Ok(Event::ControlReply),
        None => return Err(DecodeError::Missing("e")),
    }
    let symbol = Symbol::new(&w.s.ok_or(DecodeError::Missing("s"))?)?;
    let trade_id = w.t.ok_or(DecodeError::Missing("t"))?;
    let price =
        Fixed8::parse(&w.p.ok_or(DecodeError::Missing("p"))?).map_err(DecodeError::Price)?;
    let qty = Fixed8::parse(&w.q.ok_or(DecodeError::Missing("q"))?).map_err(DecodeError::Qty)?;
    if price.0 == 0 || qty.0 == 0 {
        return Err(DecodeError::NotPositive);
    }
    if price.times(qty) > MAX_TRADE_QUOTE_UNITS {
        return Err(DecodeError::Absurd);
    }
    let trade_time_ms = to_millis(w.trade_time.ok_or(DecodeError::Missing("T"))?)?;
    let event_time_ms = match w.event_time {
        Some(e) => to_millis(e)?,
        None => trade_time_ms,
    };
    let trade = Trade {
        symbol,
        trade_id,
        price,
        qty,
        trade_time_ms,
        event_time_ms,
        buyer_is_maker: w.m.ok_or(DecodeError::Missing("m"))?,
    };
    Ok(Event::Trade { trade, json })
}

/// Accepts milliseconds or microseconds (`timeUnit=MICROSECOND`) between 2009 and 2200.
fn to_millis(t: u64) -> Result<u64, DecodeError> {
    const MIN_MS: u64 = 1_230_768_000_000; // 2009-01-01
    const MAX_MS: u64 = 7_258_118_400_000; // 2200-01-01
    let ms = if t >= MAX_MS { t / 1000 } else { t };
    if (MIN_MS..MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(DecodeError::Time(t))
    }
}

fn json_err(e: serde_json::Error) -> DecodeError {
    // serde_json's message names the line and column, never echoes the input.
    DecodeError::Json(e.to_string())
}

#[cfg(test)]
mod tests;
