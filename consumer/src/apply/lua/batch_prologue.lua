-- tradeflow: apply one folded batch of one shard, exactly once, atomically, on one
-- Redis (every key of the batch on one server).
-- Layout of ARGV (built by redis_sink/single.rs; see apply/mod.rs for the data model):
--  1 prefix            2 position key        3 first seq   4 first sub
--  5 last seq          6 last sub            7 TTLs (s) of minute, hour and day
--     buckets: `m:h:d`
--  8 dead-letter maxlen 9 stream name        10 shard id   11 max gaps per symbol
--  12 expected seq      13 expected sub: the last position this applier applied to
--     this shard ('' if none); a stored position below it means Redis lost writes
--  14 number of poison records P, then P × {seq, sub, kind, reason, data}
--  then number of symbols S, then S symbols (layout: parse_symbol in common.lua)
-- Returns {status, applied, duplicates, poison written, late dropped, split symbols...}
--  status 0 = applied, 1 = whole batch at/below the stored position (skipped),
--  2 = some symbols' segments straddle what was seen: nothing written, re-send those
--      symbols one trade per segment (the reply ends with their names),
--  3 = the stored position is behind the expected one (Redis lost its last writes):
--      nothing written; the reply ends with the stored seq and sub ('' if none) and the
--      applier must re-read the shard from there,
--  4 = some symbols' keys hold foreign values: nothing written; the reply ends with
--      {name, reason} pairs, and the applier re-sends the batch with those symbols'
--      trades as poison records.
-- A key of the whole batch (symbols index, dead letters) holding a foreign value is an
-- error reply starting with FOREIGN, before any write.

local prefix = ARGV[1]
local ttls = ARGV[7]
local max_gaps = tonumber(ARGV[11])
local function sym_part(name) return name end

