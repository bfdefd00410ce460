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
    let per_symbol = [k.stats(&s), k.dedupe(&s), k.gaps(&s), k.evicted(&s)];
    for name in &per_symbol {
        let kind = name
            .strip_prefix("P:")
            .and_then(|r| r.strip_suffix("BTCUSDT"))
            .unwrap_or_else(|| panic!("{name}"));
        let lua = format!("prefix .. '{kind}' .. part");
        assert!(lua_has(&lua), "no `{lua}` in the scripts for {name}");
    }
    let minute = k.minute(&s, 7);
    assert_eq!(minute, "P:min:BTCUSDT:7");
    assert!(lua_has("prefix .. 'min:' .. part .. ':'"));
    assert_eq!(k.count(&s), format!("{COUNT_PREFIX}BTCUSDT"));
    assert!(lua_has(&format!("'{COUNT_PREFIX}' .. name")));
    // On one Redis the batch script names the shard-level keys from the prefix.
    assert_eq!(k.symbols(), "P:symbols");
    assert!(lua_has("prefix .. 'symbols'"));
    assert_eq!(k.dead_letter(), "P:dead_letter");
    assert!(lua_has("prefix .. 'dead_letter'"));
}
