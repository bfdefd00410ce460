-- tradeflow (Redis Cluster): apply one symbol's part of a folded batch, exactly once,
-- atomically. Every key it touches carries the hash tag {symbol:<name>}, the slot of
-- the legacy count key symbol:<name>, so the script runs on one node. KEYS: every key
-- it touches (count, stats, dedupe, gaps, evicted, each minute, hour and day bucket of
-- the segments),
-- KEYS[1] the count key.
-- ARGV: 1 prefix, 2 TTLs (s) of minute, hour and day buckets (`m:h:d`), 3 max gaps per symbol, then one symbol (layout:
-- parse_symbol in common.lua).
-- Returns {status, applied, duplicates, 0, late dropped}: status 0 = done (possibly
-- nothing new), 2 = a segment straddles what was seen: nothing written, re-send the
-- symbol one trade per segment, 4 = a key of the symbol holds a foreign value: nothing
-- written, the reply ends with the reason (the caller keeps its trades aside).

local prefix = ARGV[1]
local ttls = ARGV[2]
local max_gaps = tonumber(ARGV[3])
local function sym_part(name) return '{symbol:' .. name .. '}' end

