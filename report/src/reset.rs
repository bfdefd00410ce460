//! `reset`: zeroes every symbol's count and volumes and deletes its candles (kline
//! buckets of every minute, hour and day, and the hours pending their roll-up), in one atomic step per Redis (per symbol on
//! a cluster), so counts and candles restart together: a trade applied before the reset
//! is in neither, one applied after it is in both. The dedupe state (`dedupe:`, `gaps:`)
//! and shard positions stay, so trades already counted are not counted again and new
//! ones are.
//!
//! The buckets are found by a `SCAN` inside the script (the only way to list them
//! without an index, and atomic with the zeroing): it blocks Redis for one pass over
//! its keyspace — about 0.1 s per 100,000 keys — which an operator's rare reset can
//! afford and a writer's hot path never pays.

use futures_util::future::join_all;
use tradeflow_shared::redis_keys::Layout;
use tradeflow_shared::snapshot::{ReadError, Reader};

/// What a reset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOutcome {
    /// Symbols whose counts and volumes were zeroed.
    pub symbols: u64,
    /// Kline buckets deleted.
    pub buckets: u64,
}

/// Deletes every key matching ARGV[i], i >= `first`, with a SCAN pass each; the count.
const DELETE_MATCHING_LUA: &str = r#"
local function delete_matching(first)
  local n = 0
  for i = first, #ARGV do
    local cursor = '0'
    repeat
      local r = redis.call('SCAN', cursor, 'MATCH', ARGV[i], 'COUNT', 1000)
      cursor = r[1]
      for _, k in ipairs(r[2]) do n = n + redis.call('DEL', k) end
    until cursor == '0'
  end
  return n
end
"#;

/// One Redis: every symbol and every bucket in one atomic script. ARGV[1] the prefix,
/// then the buckets' patterns. Key names as in `redis_keys` (a unit test checks them).
const RESET_BODY: &str = r#"
local prefix = ARGV[1]
local syms = redis.call('SMEMBERS', prefix .. 'symbols')
for _, s in ipairs(syms) do
  redis.call('SET', 'symbol:' .. s, 0)
  redis.call('HSET', prefix .. 'stats:' .. s, 'base', '0.00000000',
             'quote', '0.0000000000000000')
end
return {#syms, delete_matching(2)}
"#;

/// The same for one symbol on a cluster: KEYS[1] = `symbol:<SYM>`, KEYS[2] = its stats,
/// KEYS[3] its pending hours, ARGV its buckets' patterns (all in its slot, on the node
/// running the script).
const RESET_SYMBOL_BODY: &str = r#"
redis.call('SET', KEYS[1], 0)
redis.call('HSET', KEYS[2], 'base', '0.00000000', 'quote', '0.0000000000000000')
redis.call('DEL', KEYS[3])
return {1, delete_matching(1)}
"#;

/// Zeroes counts and volumes of every symbol and deletes its candles.
pub async fn reset(reader: &Reader) -> Result<ResetOutcome, ReadError> {
    let (con, keys) = reader.connection();
    let outcome = |(symbols, buckets): (u64, u64)| ResetOutcome { symbols, buckets };
    if keys.layout() == Layout::Single {
        let script = redis::Script::new(&format!("{DELETE_MATCHING_LUA}{RESET_BODY}"));
        let mut inv = script.prepare_invoke();
        inv.arg(keys.prefix());
        for kind in ["min:", "hour:", "day:", "pending:"] {
            inv.arg(format!("{}{kind}*", keys.prefix()));
        }
        return inv
            .invoke_async(&mut con.clone())
            .await
            .map(outcome)
            .map_err(|e| reader.error(e));
    }
    let symbols = reader.symbols().await?;
    let script = redis::Script::new(&format!("{DELETE_MATCHING_LUA}{RESET_SYMBOL_BODY}"));
    let resets = symbols.iter().map(|s| {
        let mut inv = script.prepare_invoke();
        inv.key(keys.count(s))
            .key(keys.stats(s))
            .key(keys.pending(s));
        for pattern in keys.bucket_patterns(s) {
            inv.arg(pattern);
        }
        let mut con = con.clone();
        async move { inv.invoke_async::<(u64, u64)>(&mut con).await }
    });
    let mut total = ResetOutcome {
        symbols: 0,
        buckets: 0,
    };
    for r in join_all(resets).await {
        let (s, b) = r.map_err(|e| reader.error(e))?;
        total.symbols += s;
        total.buckets += b;
    }
    Ok(total)
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
        let lua = super::RESET_BODY;
        assert_eq!(k.symbols(), "P:symbols");
        assert!(lua.contains("prefix .. 'symbols'"));
        assert_eq!(k.count(&s), format!("{COUNT_PREFIX}BTCUSDT"));
        assert!(lua.contains(&format!("'{COUNT_PREFIX}' .. s")));
        assert_eq!(k.stats(&s), "P:stats:BTCUSDT");
        assert!(lua.contains("prefix .. 'stats:' .. s"));
        // The single-Redis patterns cover each symbol's own.
        for (p, kind) in k.bucket_patterns(&s).iter().zip(["min:", "hour:", "day:"]) {
            assert_eq!(p, &format!("P:{kind}BTCUSDT:*"));
        }
    }
}
