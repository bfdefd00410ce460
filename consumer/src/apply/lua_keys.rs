//! The Lua scripts build key names from the prefix themselves; this checks they spell
//! the names of the one Rust key layout (`tradeflow_shared::redis_keys`).

use tradeflow_shared::redis_keys::{Keys, COUNT_PREFIX};
use tradeflow_shared::Symbol;

const LUA: &[(&str, &str)] = &[
    ("common.lua", include_str!("lua/common.lua")),
    ("batch.lua", include_str!("lua/batch.lua")),
    ("symbol.lua", include_str!("lua/symbol.lua")),
];

fn lua_has(fragment: &str) -> bool {
    LUA.iter().any(|(_, text)| text.contains(fragment))
}

#[test]
fn lua_spells_the_rust_key_layout() {
    let k = Keys::new("P:").unwrap();
    let s = Symbol::new("BTCUSDT").unwrap();
    // `<prefix><kind><symbol part>`: the kind between them must be the Lua's.
    let per_symbol = [
        k.stats(&s),
        k.dedupe(&s),
        k.gaps(&s),
        k.evicted(&s),
        k.pending(&s),
    ];
    for name in &per_symbol {
        let kind = name
            .strip_prefix("P:")
            .and_then(|r| r.strip_suffix("BTCUSDT"))
            .unwrap_or_else(|| panic!("{name}"));
        let lua = format!("prefix .. '{kind}' .. part");
        assert!(lua_has(&lua), "no `{lua}` in the scripts for {name}");
    }
    // Kline buckets: `<prefix><kind><symbol part>:<n>` for the kinds of BUCKETS.
    assert_eq!(k.minute(&s, 7), "P:min:BTCUSDT:7");
    assert_eq!(k.hour(&s, 7), "P:hour:BTCUSDT:7");
    assert_eq!(k.day(&s, 7), "P:day:BTCUSDT:7");
    for (kind, per) in [("min:", 1), ("hour:", 60), ("day:", 1440)] {
        assert!(lua_has(&format!("kind = '{kind}', per = {per},")), "{kind}");
    }
    assert!(lua_has(
        "prefix .. b.kind .. part .. ':' .. fmt(math.floor(minute / b.per))"
    ));
    // The bucket fields, in the order the reader takes them.
    let fields: Vec<String> = tradeflow_shared::kline::FIELDS
        .iter()
        .map(|f| format!("'{f}'"))
        .collect();
    let lua_fields: String = LUA[0]
        .1
        .split("local KFIELDS = {")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .expect("KFIELDS in common.lua")
        .split_whitespace()
        .collect();
    assert_eq!(lua_fields, fields.join(","));
    assert_eq!(k.count(&s), format!("{COUNT_PREFIX}BTCUSDT"));
    assert!(lua_has(&format!("'{COUNT_PREFIX}' .. name")));
    // On one Redis the batch script names the shard-level keys from the prefix.
    assert_eq!(k.symbols(), "P:symbols");
    assert!(lua_has("prefix .. 'symbols'"));
    assert_eq!(k.dead_letter(), "P:dead_letter");
    assert!(lua_has("prefix .. 'dead_letter'"));
}
