//! Hostile records for the consumer: each one is written straight into the stream as
//! one Kinesis record and must be kept aside (dead-lettered) with the expected reason
//! kind — never counted, never a panic, never a stuck shard.

use md5::{Digest, Md5};
use tradeflow_shared::kpl::{Aggregator, MAGIC};

/// Kinesis caps a record's data plus partition key at 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One bad record: its name, its data, and what the consumer must make of it.
pub struct Entry {
    pub name: &'static str,
    pub data: Vec<u8>,
    /// The poison kind (`DecodeError::kind`, `kpl_aggregate`, `trade_id_range`).
    pub kind: &'static str,
    /// Where the poison user record sits inside the Kinesis record (KPL sub-sequence
    /// number; 0 for plain records).
    pub sub: u64,
    /// Good trades inside the same record (a partly bad aggregate), by symbol.
    pub good_inside: Vec<(String, u64)>,
}

fn entry(name: &'static str, data: impl Into<Vec<u8>>, kind: &'static str) -> Entry {
    Entry {
        name,
        data: data.into(),
        kind,
        sub: 0,
        good_inside: Vec::new(),
    }
}

/// A trade object with the given fields substituted verbatim (raw JSON values).
fn trade_with(s: &str, t: &str, p: &str, q: &str, tt: &str, m: &str) -> String {
    format!(
        r#"{{"e":"trade","E":1717000000123,"s":{s},"t":{t},"p":{p},"q":{q},"T":{tt},"m":{m},"M":true}}"#
    )
}

fn with_symbol(sym: &str) -> String {
    trade_with(sym, "1", r#""1.5""#, r#""2""#, "1717000000120", "true")
}

fn with_id(t: &str) -> String {
    trade_with(r#""HUGE""#, t, r#""1""#, r#""1""#, "1717000000120", "true")
}

fn with_price_qty(p: &str, q: &str) -> String {
    trade_with(r#""BADPQ""#, "1", p, q, "1717000000120", "true")
}

/// A plain, valid trade as Binance sends it.
pub fn good_trade(symbol: &str, id: u64) -> String {
    trade_with(
        &format!("\"{symbol}\""),
        &id.to_string(),
        r#""10.5""#,
        r#""0.25""#,
        "1717000000120",
        "false",
    )
}

/// A KPL frame around `body` with a correct digest (so only the protobuf is judged).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

/// The corpus. `partition_key_len` is subtracted from the oversized entries so they are
/// the largest record Kinesis accepts.
pub fn corpus(partition_key_len: usize) -> Vec<Entry> {
    let max = MAX_RECORD_BYTES - partition_key_len;
    let mut v = vec![
        entry("invalid_json", "{not json", "json"),
        entry("not_an_object", "[1,2,3]", "json"),
        entry("lone_space", " ", "json"),
        entry("truncated_trade", &good_trade("TRUNC", 1)[..40], "json"),
        entry("missing_fields", r#"{"e":"trade"}"#, "missing_field"),
        entry(
            "wrong_type_price_number",
            with_price_qty("1.5", r#""2""#),
            "json",
        ),
        entry(
            "wrong_type_id_string",
            trade_with(
                r#""WT""#,
                r#""7""#,
                r#""1""#,
                r#""1""#,
                "1717000000120",
                "true",
            ),
            "json",
        ),
        entry(
            "wrong_type_maker_string",
            trade_with(
                r#""WT""#,
                "7",
                r#""1""#,
                r#""1""#,
                "1717000000120",
                r#""yes""#,
            ),
            "json",
        ),
        entry(
            "negative_price",
            with_price_qty(r#""-1.5""#, r#""2""#),
            "price",
        ),
        entry(
            "negative_qty",
            with_price_qty(r#""1.5""#, r#""-2""#),
            "quantity",
        ),
        entry(
            "zero_qty",
            with_price_qty(r#""1.5""#, r#""0""#),
            "not_positive",
        ),
        entry(
            "exponent_price",
            with_price_qty(r#""1e5""#, r#""2""#),
            "price",
        ),
        entry(
            "absurd_value",
            with_price_qty(r#""99999999999""#, r#""99999999999""#),
            "absurd_value",
        ),
        entry(
            "huge_price_digits",
            with_price_qty(&format!("\"{}\"", "9".repeat(400)), r#""1""#),
            "price",
        ),
        entry("huge_trade_id", with_id(&"9".repeat(400)), "json"),
        entry("huge_float_id", with_id("1e400"), "json"),
        entry(
            "trade_id_above_2_pow_53",
            with_id("9007199254740993"),
            "trade_id_range",
        ),
        entry(
            "time_in_1970",
            trade_with(r#""TIME""#, "1", r#""1""#, r#""1""#, "1", "true"),
            "time",
        ),
        entry("deep_nesting_array", "[".repeat(100_000), "json"),
        entry(
            "deep_nesting_in_field",
            format!(r#"{{"e":"trade","x":{}"#, "[".repeat(100_000)),
            "json",
        ),
        entry(
            "deep_nesting_objects",
            format!(r#"{{"e":"trade","x":{}"#, r#"{"a":"#.repeat(50_000)),
            "json",
        ),
        entry(
            "invalid_utf8",
            b"{\"e\":\"trade\",\"s\":\"\xff\xfe\xc0\xaf\"}".to_vec(),
            "utf8",
        ),
        entry("symbol_space", with_symbol(r#""BTC USDT""#), "symbol"),
        entry("symbol_newline", with_symbol(r#""BTC\nUSDT""#), "symbol"),
        entry("symbol_raw_newline", with_symbol("\"BTC\nUSDT\""), "json"),
        entry("symbol_star", with_symbol(r#""*""#), "symbol"),
        entry("symbol_braces", with_symbol(r#""{BTCUSDT}""#), "symbol"),
        entry("symbol_lowercase", with_symbol(r#""btcusdt""#), "symbol"),
        entry("symbol_empty", with_symbol(r#""""#), "symbol"),
        entry(
            "symbol_10kb",
            with_symbol(&format!("\"{}\"", "A".repeat(10 * 1024))),
            "symbol",
        ),
        entry(
            "combined_envelope_array_data",
            r#"{"stream":"btcusdt@trade","data":[1]}"#,
            "json",
        ),
        entry(
            "combined_envelope_nested",
            format!(
                r#"{{"stream":"x","data":{{"stream":"y","data":{}}}}}"#,
                good_trade("NEST", 1)
            ),
            "json",
        ),
        // The largest record Kinesis takes: a trade-looking object padded to 1 MiB.
        entry(
            "oversized_padded_object",
            {
                let head = r#"{"e":"trade","pad":""#;
                let tail = r#""}"#;
                let mut s = String::with_capacity(max);
                s.push_str(head);
                s.push_str(&"x".repeat(max - head.len() - tail.len()));
                s.push_str(tail);
                s
            },
            "missing_field",
        ),
        entry("oversized_open_brackets", "[".repeat(max), "json"),
        entry(
            "oversized_unterminated_string",
            {
                let mut s = String::from(r#"{"e":"trade","s":""#);
                s.push_str(&"A".repeat(max - s.len()));
                s
            },
            "json",
        ),
    ];

    // KPL aggregates gone wrong.
    let mut agg = Aggregator::new();
    agg.push("K", good_trade("KPLBAD", 1).as_bytes());
    let good_agg = agg.finish();
    let mut bad_magic = good_agg.clone();
    bad_magic[3] ^= 0x01; // no longer the magic: read as a plain (binary) record
    v.push(entry("kpl_bad_magic", bad_magic, "utf8"));
    let mut bad_md5 = good_agg.clone();
    *bad_md5.last_mut().expect("digest") ^= 0xff;
    v.push(entry("kpl_bad_md5", bad_md5, "kpl_aggregate"));
    v.push(entry(
        "kpl_bad_protobuf",
        framed(&[0x1a, 0x05, 0x08]),
        "kpl_aggregate",
    ));
    v.push(entry(
        "kpl_huge_length_varint",
        framed(&[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]),
        "kpl_aggregate",
    ));
    v.push(entry("kpl_too_short", MAGIC.to_vec(), "kpl_aggregate"));
    let mut truncated = good_agg;
    truncated.truncate(truncated.len() / 2);
    v.push(entry("kpl_truncated", truncated, "kpl_aggregate"));

    // A valid aggregate with one bad user record between two good ones: only the bad
    // one is kept aside, the good ones are counted.
    let mut mixed = Aggregator::new();
    mixed.push("K", good_trade("KPLMIX", 1).as_bytes());
    mixed.push("K", with_symbol(r#""BAD SYM""#).as_bytes());
    mixed.push("K", good_trade("KPLMIX", 2).as_bytes());
    v.push(Entry {
        name: "kpl_mixed_bad_user_record",
        data: mixed.finish(),
        kind: "symbol",
        sub: 1,
        good_inside: vec![("KPLMIX".into(), 1), ("KPLMIX".into(), 2)],
    });
    v
}
