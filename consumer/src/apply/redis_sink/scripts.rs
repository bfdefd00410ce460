//! The Lua scripts, assembled from `../lua/` (shared pieces first, the script's own
//! part last), and the handles the sink keeps of those it loads at connect.

use redis::Script;

/// One Redis: the whole batch in one script.
const BATCH_LUA: &str = concat!(
    include_str!("../lua/batch_prologue.lua"),
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/common.lua"),
    include_str!("../lua/dead_letter.lua"),
    include_str!("../lua/batch.lua"),
);
/// Redis Cluster: one symbol's part of a batch, in that symbol's slot.
const SYMBOL_LUA: &str = concat!(
    include_str!("../lua/symbol_prologue.lua"),
    include_str!("../lua/common.lua"),
    include_str!("../lua/symbol.lua"),
);
/// One Redis and a cluster: roll a symbol's closed hours up into hour and day buckets.
const SEAL_LUA: &str = concat!(
    include_str!("../lua/seal_prologue.lua"),
    include_str!("../lua/common.lua"),
    include_str!("../lua/seal.lua"),
);
/// Redis Cluster: the shard's position, dead letters and symbols index (slot `{meta}`).
const POSITION_LUA: &str = concat!(
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/dead_letter.lua"),
    include_str!("../lua/position.lua"),
);
/// Before a SHARD_END checkpoint: the fence on the shard's position (`shard_end.rs`).
pub(super) const SHARD_END_LUA: &str = concat!(
    include_str!("../lua/pos_cmp.lua"),
    include_str!("../lua/shard_end.lua"),
);

/// The scripts, loaded at connect (the batch script on one Redis, the other two on a
/// cluster).
pub(super) struct Scripts {
    pub(super) batch: Script,
    pub(super) symbol: Script,
    pub(super) position: Script,
    pub(super) seal: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            batch: Script::new(BATCH_LUA),
            symbol: Script::new(SYMBOL_LUA),
            position: Script::new(POSITION_LUA),
            seal: Script::new(SEAL_LUA),
        }
    }
}
