-- tradeflow: roll one symbol's closed hours up into hour and day buckets (seal.lua),
-- on one Redis or a cluster (every key in the symbol's slot). KEYS: every key it
-- touches (dedupe, pending, the minutes, hours and days of the hours sealed).
-- ARGV: 1 prefix, 2 TTLs (s) of minute, hour and day buckets (`m:h:d`), 3 `cluster` or
-- `single`, 4 symbol, 5 the hour to seal up to (Unix hours), 6 the number of pending
-- hours N at or below it the caller saw, then those N hours, ascending.
-- Returns {1, hours sealed}, {0} when the pending hours changed since the caller read
-- them (read again and retry), or {2, why} when a key holds a foreign value (nothing
-- written).

local prefix = ARGV[1]
local ttls = ARGV[2]
local max_gaps = 0
local cluster = ARGV[3] == 'cluster'
local function sym_part(name)
  if cluster then return '{symbol:' .. name .. '}' end
  return name
end
