//! `reset`: zeroes every symbol's count and volumes. The dedupe state (`dedupe:`,
//! `gaps:`) and shard positions stay, so trades already counted are not counted again
//! and new ones are. Minute buckets are left to expire.

use futures_util::future::join_all;
use tradeflow_shared::redis_keys::Layout;
use tradeflow_shared::snapshot::{ReadError, Reader};

/// One Redis: every symbol in one atomic script. Key names as in `redis_keys` (a unit
/// test checks the spelling).
pub(crate) const RESET_LUA: &str = r#"
local prefix = ARGV[1]
local syms = redis.call('SMEMBERS', prefix .. 'symbols')
for _, s in ipairs(syms) do
  redis.call('SET', 'symbol:' .. s, 0)
  redis.call('HSET', prefix .. 'stats:' .. s, 'base', '0.00000000',
             'quote', '0.0000000000000000')
end
return #syms
"#;

/// The same for one symbol on a cluster: KEYS[1] = `symbol:<SYM>`, KEYS[2] = its stats.
const RESET_SYMBOL_LUA: &str = r#"
redis.call('SET', KEYS[1], 0)
redis.call('HSET', KEYS[2], 'base', '0.00000000', 'quote', '0.0000000000000000')
return 1
"#;

/// Zeroes counts and volumes of every symbol; returns how many were reset.
/// On a cluster each symbol is reset atomically (count and volumes together), all
/// symbols at once, not as one transaction.
pub async fn reset(reader: &Reader) -> Result<u64, ReadError> {
    let (con, keys) = reader.connection();
    if keys.layout() == Layout::Single {
        return redis::Script::new(RESET_LUA)
            .arg(keys.prefix())
            .invoke_async(&mut con.clone())
            .await
            .map_err(|e| reader.error(e));
    }
    let symbols = reader.symbols().await?;
    let script = redis::Script::new(RESET_SYMBOL_LUA);
    let resets = symbols.iter().map(|s| {
        let mut inv = script.prepare_invoke();
        inv.key(keys.count(s)).key(keys.stats(s));
        let mut con = con.clone();
        async move { inv.invoke_async::<i64>(&mut con).await }
    });
    let mut n = 0;
    for r in join_all(resets).await {
        n += r.map_err(|e| reader.error(e))? as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use tradeflow_shared::redis_keys::{Keys, COUNT_PREFIX};
    use tradeflow_shared::Symbol;

    /// The script spells on one Redis the names `Keys` makes (prefix + part).
    #[test]
    fn script_spells_the_key_layout() {
        let k = Keys::new("P:").unwrap();
        let s = Symbol::new("BTCUSDT").unwrap();
        let lua = super::RESET_LUA;
        assert_eq!(k.symbols(), "P:symbols");
        assert!(lua.contains("prefix .. 'symbols'"));
        assert_eq!(k.count(&s), format!("{COUNT_PREFIX}BTCUSDT"));
        assert!(lua.contains(&format!("'{COUNT_PREFIX}' .. s")));
        assert_eq!(k.stats(&s), "P:stats:BTCUSDT");
        assert!(lua.contains("prefix .. 'stats:' .. s"));
    }
}
