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
    if let Some((wire, json)) = fast::parse(text) {
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
mod tests {
    use super::*;

    const CURRENT: &str = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":3612345678,"p":"67012.01000000","q":"0.00150000","T":1717000000120,"m":true,"M":true}"#;

    fn trade_of(ev: Event<'_>) -> Trade {
        match ev {
            Event::Trade { trade, .. } => trade,
            other => panic!("not a trade: {other:?}"),
        }
    }

    #[test]
    fn decodes_current_format() {
        let ev = decode_event(CURRENT).unwrap();
        let Event::Trade { trade, json } = ev else {
            panic!()
        };
        assert_eq!(json, CURRENT);
        assert_eq!(trade.symbol.as_str(), "BTCUSDT");
        assert_eq!(trade.trade_id, 3_612_345_678);
        assert_eq!(trade.price, Fixed8(6_701_201_000_000));
        assert_eq!(trade.qty, Fixed8(150_000));
        assert_eq!(trade.trade_time_ms, 1_717_000_000_120);
        assert_eq!(trade.event_time_ms, 1_717_000_000_123);
        assert!(trade.buyer_is_maker);
    }

    #[test]
    fn decodes_old_format_with_order_ids() {
        let old = r#"{"e":"trade","E":1600000000000,"s":"ETHBTC","t":12,"p":"0.03","q":"1.5","b":88,"a":50,"T":1600000000000,"m":false,"M":true}"#;
        let t = trade_of(decode_event(old).unwrap());
        assert_eq!(t.symbol.as_str(), "ETHBTC");
        assert_eq!(t.qty, Fixed8(150_000_000));
        assert!(!t.buyer_is_maker);
    }

    #[test]
    fn ignores_unknown_fields() {
        let s = r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1717000000120,"m":true,"M":true,"X":"MARKET","zz":{"nested":[1,2]}}"#;
        assert_eq!(trade_of(decode_event(s).unwrap()).trade_id, 1);
    }

    #[test]
    fn unwraps_combined_stream() {
        let s = format!(r#"{{"stream":"btcusdt@trade","data":{CURRENT}}}"#);
        match decode_event(&s).unwrap() {
            Event::Trade { trade, json } => {
                assert_eq!(json, CURRENT);
                assert_eq!(trade.trade_id, 3_612_345_678);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn control_reply_and_shutdown_are_not_trades() {
        assert_eq!(
            decode_event(r#"{"result":null,"id":1}"#).unwrap(),
            Event::ControlReply
        );
        assert_eq!(
            decode_event(r#"{"e":"serverShutdown","E":1717000000000}"#).unwrap(),
            Event::ServerShutdown
        );
        assert_eq!(
            decode_event(r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}"#)
                .unwrap(),
            Event::ServerShutdown
        );
        assert!(matches!(
            decode_event(r#"{"e":"aggTrade","a":5}"#).unwrap(),
            Event::Other { .. }
        ));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases: &[(&str, &str)] = &[
            ("{not json", "json"),
            (r#"{"e":"trade","s":"BTCUSDT"}"#, "missing_field"),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1717000000120,"m":true}"#,
                "price",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":1.5,"q":"1","T":1717000000120,"m":true}"#,
                "json",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTC USDT","t":1,"p":"1","q":"1","T":1717000000120,"m":true}"#,
                "symbol",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"0","q":"1","T":1717000000120,"m":true}"#,
                "not_positive",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"100000000000","q":"100000000000","T":1717000000120,"m":true}"#,
                "absurd_value",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1717000000120,"m":true}"#,
                "json",
            ),
            (
                r#"{"e":"trade","E":1717000000123,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":5,"m":true}"#,
                "time",
            ),
            ("[]", "json"),
            ("null", "json"),
        ];
        for (input, kind) in cases {
            let err = decode_event(input).expect_err(input);
            assert_eq!(err.kind(), *kind, "{input}: {err}");
        }
        assert_eq!(decode_bytes(&[0xff, 0xfe]).unwrap_err(), DecodeError::Utf8);
    }

    #[test]
    fn microsecond_times_become_millis() {
        let s = r#"{"e":"trade","E":1717000000123456,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1717000000120456,"m":true}"#;
        let t = trade_of(decode_event(s).unwrap());
        assert_eq!(t.trade_time_ms, 1_717_000_000_120);
    }

    /// Fast path and serde path must agree exactly wherever the fast path answers.
    fn same_as_serde(input: &str) -> Result<bool, proptest::test_runner::TestCaseError> {
        let serde = decode_event_serde(input);
        match fast::parse(input) {
            Some((w, json)) => {
                proptest::prop_assert_eq!(classify(w, json), serde, "{}", input);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    mod fast_path {
        use super::*;
        use proptest::prelude::*;

        /// A trade object with its fields in any order, optional unknown fields and
        /// JSON whitespace, built from raw values so invalid ones occur too.
        fn trade_text() -> impl Strategy<Value = String> {
            let ws = prop::sample::select(vec!["", "", "", " ", "\n", "\t ", "\r\n"]);
            let num = prop_oneof![
                (1_230_768_000_000u64..1_800_000_000_000).prop_map(|v| v.to_string()),
                any::<u64>().prop_map(|v| v.to_string()),
                Just("0".to_string()),
                Just("-1".to_string()),
                Just("1.5".to_string()),
                Just("1e3".to_string()),
                Just("null".to_string()),
                Just("18446744073709551616".to_string()),
                Just("0123".to_string()),
                Just("\"7\"".to_string()),
            ];
            let dec = prop_oneof![
                (0u64..10_000_000, 0u64..100_000_000).prop_map(|(i, f)| format!("\"{i}.{f:08}\"")),
                Just("\"0.00000000\"".to_string()),
                Just("\"1.123456789\"".to_string()),
                Just("\"abc\"".to_string()),
                Just("\"1\\u0030\"".to_string()),
                Just("1.5".to_string()),
            ];
            let sym = prop_oneof![
                "[A-Z0-9]{1,12}".prop_map(|s| format!("\"{s}\"")),
                Just("\"btc usdt\"".to_string()),
                Just("\"\"".to_string()),
                Just("\"BTC\\u0055SDT\"".to_string()),
                Just("\"ÉTHBTC\"".to_string()),
            ];
            let ev = prop_oneof![
                8 => Just("\"trade\"".to_string()),
                1 => Just("\"aggTrade\"".to_string()),
                1 => Just("\"serverShutdown\"".to_string()),
                1 => Just("null".to_string()),
            ];
            let boolean = prop_oneof![
                Just("true".to_string()),
                Just("false".to_string()),
                Just("1".to_string()),
                Just("null".to_string()),
            ];
            let extra = prop_oneof![
                Just(("M", "true".to_string())),
                (0u64..1000).prop_map(|v| ("b", v.to_string())),
                Just(("a", "-5".to_string())),
                Just(("X", "\"MARKET\"".to_string())),
                Just(("zz", "{\"n\":[1]}".to_string())),
                Just(("id", "1".to_string())),
                Just(("t", "2".to_string())),
                Just(("x", "01".to_string())),
            ];
            (
                ev,
                num.clone(),
                sym,
                num.clone(),
                dec.clone(),
                dec,
                num,
                boolean,
                prop::collection::vec(extra, 0..3),
                prop::collection::vec(0u8..6, 8),
                prop::collection::vec(any::<u32>(), 11),
                ws,
            )
                .prop_map(|(e, ev_t, s, t, p, q, tt, m, extra, keep, order, ws)| {
                    let mut fields: Vec<(&str, String)> = vec![
                        ("e", e),
                        ("E", ev_t),
                        ("s", s),
                        ("t", t),
                        ("p", p),
                        ("q", q),
                        ("T", tt),
                        ("m", m),
                    ];
                    // Mostly complete objects; sometimes a field is missing.
                    for (i, k) in keep.iter().enumerate().rev() {
                        if *k == 0 {
                            fields.remove(i);
                        }
                    }
                    fields.extend(extra);
                    // Any order: sort by random keys.
                    let mut keyed: Vec<_> = fields.into_iter().zip(order).collect();
                    keyed.sort_by_key(|(_, k)| *k);
                    let fields: Vec<_> = keyed.into_iter().map(|(f, _)| f).collect();
                    let body: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                        .collect();
                    format!("{ws}{{{}}}{ws}", body.join(","))
                })
        }

        fn valid_trade() -> impl Strategy<Value = String> {
            (
                "[A-Z0-9]{2,12}",
                1u64..1 << 53,
                1u64..10_000_000_000_000,
                1u64..10_000_000_000_000,
                1_230_768_000_000u64..7_000_000_000_000,
                any::<bool>(),
            )
                .prop_map(|(s, id, p, q, t, m)| {
                    Trade {
                        symbol: Symbol::new(&s).unwrap(),
                        trade_id: id,
                        price: Fixed8(p),
                        qty: Fixed8(q),
                        trade_time_ms: t,
                        event_time_ms: t + 1,
                        buyer_is_maker: m,
                    }
                    .to_json()
                })
        }

        fn mutate(s: &str, at: usize, how: u8, c: char) -> String {
            let mut b: Vec<char> = s.chars().collect();
            let at = at % (b.len() + 1);
            match how % 4 {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => b.insert(at, c),
                2 if at < b.len() => b[at] = c,
                _ => {
                    let tail: String = b[at..].iter().collect();
                    b.extend(tail.chars().take(5));
                }
            }
            b.into_iter().collect()
        }

        fn wrap(s: &str, how: u8) -> String {
            match how % 4 {
                0 => format!(r#"{{"stream":"btcusdt@trade","data":{s}}}"#),
                1 => format!(r#"{{ "data" : {s} , "stream" : "x@trade" }}"#),
                2 => format!(r#"{{"stream":"!serverShutdown","data":{s}}}"#),
                _ => format!(r#"{{"stream":"a","data":{s},"extra":1}}"#),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn valid_trades_take_the_fast_path(s in valid_trade(), how in any::<u8>()) {
                prop_assert!(same_as_serde(&s)?, "fast path declined {}", s);
                let w = wrap(&s, how % 2);
                prop_assert!(same_as_serde(&w)?, "fast path declined {}", w);
            }

            #[test]
            fn generated_objects_agree(s in trade_text(), how in any::<u8>()) {
                same_as_serde(&s)?;
                same_as_serde(&wrap(&s, how))?;
            }

            #[test]
            fn mutated_trades_agree(
                s in valid_trade(),
                at in any::<usize>(),
                how in any::<u8>(),
                c in prop::sample::select(vec!['"', '{', '}', ',', ':', '\\', ' ', '0', '9', '-', '.', 'e', 'n', 'x', '\u{1}', 'É', '[']),
                wrapped in any::<bool>(),
            ) {
                let m = mutate(&s, at, how, c);
                same_as_serde(&m)?;
                if wrapped {
                    same_as_serde(&wrap(&m, how))?;
                    same_as_serde(&mutate(&wrap(&s, how), at, how / 4, c))?;
                }
            }
        }
    }

    #[test]
    fn to_json_round_trips() {
        let t = trade_of(decode_event(CURRENT).unwrap());
        assert_eq!(trade_of(decode_event(&t.to_json()).unwrap()), t);
    }

    proptest::proptest! {
        #[test]
        fn to_json_is_the_formatted_text(id: u64, e: u64, tt: u64, p: u64, q: u64, m: bool, sym in "[A-Z0-9]{1,12}") {
            let t = Trade {
                symbol: Symbol::new(&sym).unwrap(),
                trade_id: id,
                price: Fixed8(p),
                qty: Fixed8(q),
                trade_time_ms: tt,
                event_time_ms: e,
                buyer_is_maker: m,
            };
            // The hand-written form equals the obvious core::fmt one.
            let want = format!(
                r#"{{"e":"trade","E":{e},"s":"{sym}","t":{id},"p":"{}","q":"{}","T":{tt},"m":{m},"M":true}}"#,
                Fixed8(p),
                Fixed8(q),
            );
            proptest::prop_assert_eq!(t.to_json(), want);
        }
    }
}
