-- tradeflow: what the apply scripts share (one symbol's exactly-once logic). Each
-- script is <prologue> .. common.lua .. <main>; the prologue defines `prefix`, `ttl`,
-- `max_gaps` and `sym_part(name)`, the symbol's part of its key names: the bare name
-- on one Redis, `{symbol:<name>}` on a cluster, so that every key of a symbol hashes to
-- the slot of its legacy count key `symbol:<name>` and one script can touch them all.
-- Amounts are added as decimal strings (never as Lua numbers, which are doubles).
-- Trade ids are below 2^53 (checked in Rust), so they are exact as Lua numbers.

local function fmt(n)
  return string.format('%.0f', n)
end

-- Exact sum of two non-negative integer strings, in limbs of 7 digits (< 2^53).
local function add_int(a, b)
  local out = {}
  local ia, ib, carry = #a, #b, 0
  while ia > 0 or ib > 0 or carry > 0 do
    local va, vb = 0, 0
    if ia > 0 then
      local s = math.max(1, ia - 6)
      va = tonumber(string.sub(a, s, ia)); ia = s - 1
    end
    if ib > 0 then
      local s = math.max(1, ib - 6)
      vb = tonumber(string.sub(b, s, ib)); ib = s - 1
    end
    local v = va + vb + carry
    if v >= 10000000 then carry = 1; v = v - 10000000 else carry = 0 end
    out[#out + 1] = string.format('%07d', v)
  end
  local r = {}
  for i = #out, 1, -1 do r[#r + 1] = out[i] end
  local s = string.gsub(table.concat(r), '^0+', '')
  if s == '' then s = '0' end
  return s
end

-- `stored` is a decimal string with exactly `scale` fractional digits (or nil);
-- `units` an integer string of 10^-scale units. Returns the exact decimal sum.
local function add_dec(stored, units, scale)
  local digits = '0'
  if stored then digits = string.gsub(stored, '%.', '') end
  local s = add_int(digits, units)
  if #s <= scale then s = string.rep('0', scale + 1 - #s) .. s end
  return string.sub(s, 1, #s - scale) .. '.' .. string.sub(s, #s - scale + 1)
end

-- Parses one symbol of the batch starting at ARGV[i]: {name, segments}; returns the
-- symbol and the index after it. Layout: symbol, number of segments G,
-- G × {lo, hi, count, base units, quote units, last price, last time ms,
--      number of minutes M, M × {minute, count, base units, quote units}}.
local function parse_symbol(i)
  local sym = {name = ARGV[i], segs = {}}
  local n_seg = tonumber(ARGV[i + 1]); i = i + 2
  for g = 1, n_seg do
    local seg = {lo = tonumber(ARGV[i]), hi = tonumber(ARGV[i + 1]), count = ARGV[i + 2],
                 base = ARGV[i + 3], quote = ARGV[i + 4], price = ARGV[i + 5],
                 time = ARGV[i + 6], mins = {}}
    local n_min = tonumber(ARGV[i + 7]); i = i + 8
    for m = 1, n_min do
      seg.mins[m] = {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]}
      i = i + 4
    end
    sym.segs[g] = seg
  end
  return sym, i
end

-- Dedupe state of one symbol: hwm (nil before its first trade), floor (highest id of
-- an evicted gap, nil if none), and its gaps sorted set.
local function load_state(name)
  local st = redis.call('HMGET', prefix .. 'dedupe:' .. sym_part(name), 'hwm', 'floor')
  return {name = name, hwm = tonumber(st[1]), floor = tonumber(st[2]),
          dkey = prefix .. 'dedupe:' .. sym_part(name), gkey = prefix .. 'gaps:' .. sym_part(name)}
end

-- The gap containing `lo`, if any: {member, glo, ghi}.
local function gap_at(st, lo)
  local r = redis.call('ZREVRANGEBYSCORE', st.gkey, fmt(lo), '-inf', 'LIMIT', 0, 1)
  if #r == 0 then return nil end
  local a, b = string.match(r[1], '^(%d+):(%d+)$')
  return {r[1], tonumber(a), tonumber(b)}
end

-- 'above' | 'gap' | 'dup' | 'late' | 'split'
local function classify(st, lo, hi)
  if st.hwm == nil or lo > st.hwm then return 'above' end
  if hi > st.hwm then return 'split' end
  local g = gap_at(st, lo)
  if g and g[3] >= lo then
    if g[3] >= hi then return 'gap', g end
    return 'split'
  end
  if lo < hi then
    local inner = redis.call('ZRANGEBYSCORE', st.gkey, '(' .. fmt(lo), fmt(hi), 'LIMIT', 0, 1)
    if #inner > 0 then return 'split' end
  end
  if st.floor and lo <= st.floor then
    if hi <= st.floor then return 'late' end
    return 'split'
  end
  return 'dup'
end

-- Read only: true if any segment straddles what was seen (nothing may be written then).
local function needs_split(sym, st)
  for _, seg in ipairs(sym.segs) do
    if classify(st, seg.lo, seg.hi) == 'split' then return true end
  end
  return false
end

local function add_gap(st, lo, hi)
  redis.call('ZADD', st.gkey, fmt(lo), fmt(lo) .. ':' .. fmt(hi))
  local n = redis.call('ZCARD', st.gkey)
  if n > max_gaps then
    -- Oldest (lowest) gaps go first; a trade arriving for one later is `late`.
    local popped = redis.call('ZPOPMIN', st.gkey, n - max_gaps)
    for k = 1, #popped, 2 do
      local _, b = string.match(popped[k], '^(%d+):(%d+)$')
      b = tonumber(b)
      if st.floor == nil or b > st.floor then st.floor = b end
    end
    redis.call('HSET', st.dkey, 'floor', fmt(st.floor))
  end
end

local function apply_amounts(name, seg)
  redis.call('INCRBY', 'symbol:' .. name, seg.count)
  local skey = prefix .. 'stats:' .. sym_part(name)
  local cur = redis.call('HMGET', skey, 'base', 'quote')
  redis.call('HSET', skey, 'base', add_dec(cur[1] or nil, seg.base, 8),
             'quote', add_dec(cur[2] or nil, seg.quote, 16))
  for _, m in ipairs(seg.mins) do
    local mkey = prefix .. 'min:' .. sym_part(name) .. ':' .. m[1]
    local mc = redis.call('HMGET', mkey, 'base', 'quote')
    redis.call('HINCRBY', mkey, 'count', m[2])
    redis.call('HSET', mkey, 'base', add_dec(mc[1] or nil, m[3], 8),
               'quote', add_dec(mc[2] or nil, m[4], 16))
    -- Refreshed on every write: a bucket lives `ttl` after its last trade.
    redis.call('EXPIRE', mkey, ttl)
  end
end

-- Applies one symbol's segments. Classification is redone against the live state
-- (segments of a symbol are ascending and disjoint, so an earlier one never changes a
-- later one's answer except through gap eviction, which can only turn it into `late`).
-- Returns applied, duplicates, late, and whether anything was written.
local function apply_symbol(sym, st)
  local applied, dups, late = 0, 0, 0
  local touched = false
  for _, seg in ipairs(sym.segs) do
    local kind, g = classify(st, seg.lo, seg.hi)
    local n = tonumber(seg.count)
    if kind == 'above' then
      if st.hwm == nil then
        -- Ids below the first one seen were never applied: they stay welcome.
        if seg.lo > 0 then add_gap(st, 0, seg.lo - 1) end
      elseif seg.lo > st.hwm + 1 then
        add_gap(st, st.hwm + 1, seg.lo - 1)
      end
      st.hwm = seg.hi
      redis.call('HSET', st.dkey, 'hwm', fmt(st.hwm))
      redis.call('HSET', prefix .. 'stats:' .. sym_part(sym.name), 'last_price', seg.price,
                 'last_time_ms', seg.time, 'last_trade_id', fmt(seg.hi))
      apply_amounts(sym.name, seg)
      applied = applied + n; touched = true
    elseif kind == 'gap' then
      redis.call('ZREM', st.gkey, g[1])
      if g[2] < seg.lo then add_gap(st, g[2], seg.lo - 1) end
      if seg.hi < g[3] then add_gap(st, seg.hi + 1, g[3]) end
      apply_amounts(sym.name, seg)
      applied = applied + n; touched = true
    elseif kind == 'dup' then
      dups = dups + n
    else
      late = late + n
    end
  end
  return applied, dups, late, touched
end
