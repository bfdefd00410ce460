//! Decoding and rendering trades; the fast path is checked against serde in
//! `fast_path`.

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
    let mut w = Wire::default();
    match fast::parse(input, &mut w) {
        Some(json) => {
            proptest::prop_assert_eq!(classify(w, json), serde, "{}", input);
            Ok(true)
        }
        None => Ok(false),
    }
}

mod fast_path;

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
