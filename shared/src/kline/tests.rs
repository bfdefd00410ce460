use super::*;

fn p(s: &str) -> Fixed8 {
    Fixed8::parse(s).unwrap()
}

#[test]
fn intervals_parse_and_roll_up_from_the_longest_divisor() {
    for i in Interval::ALL {
        assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
    }
    assert!("1w".parse::<Interval>().is_err());
    assert_eq!(Interval::M15.source(), Bucket::Minute);
    assert_eq!(Interval::H4.source(), Bucket::Hour);
    assert_eq!(Interval::D1.source(), Bucket::Day);
    assert_eq!(Interval::H4.start_of(5 * HOUR_MS + 7), 4 * HOUR_MS);
}

#[test]
fn merge_takes_open_and_close_by_trade_id_not_by_order() {
    let t0 = 1_717_000_000_000 - 1_717_000_000_000 % DAY_MS;
    let a = Kline::of_trade(MINUTE_MS, 10, p("5"), p("1"), t0 + 1_000, false);
    let b = Kline::of_trade(MINUTE_MS, 11, p("7"), p("2"), t0 + 61_000, true);
    let c = Kline::of_trade(MINUTE_MS, 9, p("3"), p("0.5"), t0 + 2_000, false);
    let one = roll_up(Interval::H1, &[b, a, c]);
    let other = roll_up(Interval::H1, &[c, b, a]);
    assert_eq!(one, other);
    let k = one[0];
    assert_eq!(
        (k.open, k.close, k.high, k.low),
        (p("3"), p("7"), p("7"), p("3"))
    );
    assert_eq!(
        (k.count, k.base, k.taker_base),
        (3, 350_000_000, 150_000_000)
    );
    assert_eq!(k.quote, (5 + 14) * 10u128.pow(16) + 15 * 10u128.pow(15));
    assert_eq!(k.close_time_ms(), t0 + HOUR_MS - 1);
}

#[test]
fn binance_arrays_round_trip() {
    let k = Kline::of_trade(
        MINUTE_MS,
        3,
        p("0.01634790"),
        p("0.12"),
        1_499_040_000_000,
        false,
    );
    let v = k.to_binance_array();
    assert_eq!(v[0], 1_499_040_000_000u64);
    assert_eq!(v[6], 1_499_040_059_999u64);
    assert_eq!(v[8], 1);
    let back = Kline::from_binance_array(&v, MINUTE_MS).unwrap();
    assert_eq!(
        back,
        Kline {
            open_id: 0,
            close_id: 0,
            ..k
        }
    );
    // Binance's own example, 8-decimal quote volumes.
    let bin: serde_json::Value = serde_json::from_str(
        r#"[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]"#,
    )
    .unwrap();
    let week = Kline::from_binance_array(&bin, 604_800_000).unwrap();
    assert_eq!(
        (week.count, week.quote),
        (308, 243_419_055_334 * 10u128.pow(8))
    );
    let e = Kline::from_binance_array(&bin, MINUTE_MS).unwrap_err();
    assert!(e.contains("closes at"), "{e}");
    assert!(Kline::from_binance_array(&serde_json::json!([1, 2]), MINUTE_MS).is_err());
}

#[test]
fn stored_fields_parse_or_name_the_bad_one() {
    let f = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    let ok = f(&[
        "2",
        "0",
        "150000000",
        "750",
        "0",
        "0",
        "50000000",
        "250",
        "0",
        "5.00000000",
        "1",
        "5.00000000",
        "2",
        "5.00000000",
        "5.00000000",
    ]);
    let k = Kline::from_fields(0, MINUTE_MS, &ok).unwrap().unwrap();
    assert_eq!(
        (k.count, k.base, k.open_id, k.close_id),
        (2, 150_000_000, 1, 2)
    );
    assert_eq!(k.quote, 750 * LIMB);
    assert_eq!(limbs(k.quote), (750, 0));
    let mut bad = ok.clone();
    bad[13] = Some("x".into());
    assert!(Kline::from_fields(0, MINUTE_MS, &bad)
        .unwrap_err()
        .contains("high"));
    let mut lo = ok.clone();
    lo[2] = Some(LIMB.to_string());
    assert!(Kline::from_fields(0, MINUTE_MS, &lo)
        .unwrap_err()
        .contains("base_lo"));
    let mut legacy = ok.clone();
    for v in legacy.iter_mut().skip(1) {
        *v = None;
    }
    assert!(Kline::from_fields(0, MINUTE_MS, &legacy)
        .unwrap_err()
        .contains("base_hi"));
    assert_eq!(
        Kline::from_fields(0, MINUTE_MS, &vec![None; 15]).unwrap(),
        None
    );
}

#[test]
fn stored_buckets_parse_in_either_layout() {
    let k = Kline::of_trade(
        MINUTE_MS,
        7,
        Fixed8(500_000_000),
        Fixed8(150_000_000),
        61_000,
        false,
    );
    let packed = k.packed();
    assert_eq!(
        packed,
        "0 150000000 750 0 0 150000000 750 0 5.00000000 7 5.00000000 7 5.00000000 5.00000000"
    );
    let mut f = vec![None; 16];
    f[0] = Some("1".to_string());
    f[1] = Some(packed.clone());
    assert_eq!(Kline::from_stored(60_000, MINUTE_MS, &f).unwrap(), Some(k));
    // The older layout: 15 fields of their own, no `k`.
    let mut old = vec![Some("1".to_string()), None];
    old.extend(packed.split(' ').map(|v| Some(v.to_string())));
    assert_eq!(
        Kline::from_stored(60_000, MINUTE_MS, &old).unwrap(),
        Some(k)
    );
    // A `k` that is not one names the field or its value.
    f[1] = Some("1 2 3".into());
    assert!(Kline::from_stored(60_000, MINUTE_MS, &f)
        .unwrap_err()
        .contains("field k"));
    f[1] = Some("0 1 0 1 0 0 0 0 1e5 1 1e5 1 1e5 1e5".into());
    assert!(Kline::from_stored(60_000, MINUTE_MS, &f)
        .unwrap_err()
        .contains("open"));
    // Only minutes from before klines: no prices to give.
    f[1] = Some("0 1 0 1 0 0 0 0 - - - - - -".into());
    assert!(Kline::from_stored(60_000, MINUTE_MS, &f)
        .unwrap_err()
        .contains("open"));
    assert_eq!(
        Kline::from_stored(0, MINUTE_MS, &vec![None; 16]).unwrap(),
        None
    );
}

#[test]
fn units_parse_exactly() {
    assert_eq!(parse_units("1.5", 8), Some(150_000_000));
    assert_eq!(parse_units("0.00000001", 8), Some(1));
    assert_eq!(parse_units("2", 16), Some(2 * 10u128.pow(16)));
    assert_eq!(parse_units("1.000000001", 8), None);
    assert_eq!(parse_units("-1", 8), None);
    assert_eq!(parse_units(".5", 8), None);
}
