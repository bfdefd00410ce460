//! The fast path must agree with serde wherever it answers: valid trades in every
//! layout, generated objects with odd values, and mutated texts.

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
