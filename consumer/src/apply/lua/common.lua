-- tradeflow: what the apply scripts share (one symbol's exactly-once logic). Each
-- script is <prologue> .. common.lua .. <main>; the prologue defines `prefix`, `ttls`,
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

-- The kline buckets: per symbol a hash per minute, hour and day (kline.rs FIELDS),
-- each living its TTL after its last write. Volumes are integers of units (1e-8 base,
-- 1e-16 quote) kept as two limbs, `hi` × 1e14 + `lo`, added as Lua numbers (exact:
-- every limb stays below 2^53) — no decimal string arithmetic per bucket. The hot
-- path writes only minute buckets: hours are rolled up into hour and day buckets
-- once closed (seal.lua), and a trade for an hour already rolled up (at or below the
-- symbol's `sealed` hour) is merged into its hour and day bucket directly.
local KFIELDS = {'count', 'base_hi', 'base_lo', 'quote_hi', 'quote_lo', 'tbase_hi',
                 'tbase_lo', 'tquote_hi', 'tquote_lo', 'open', 'open_id', 'close',
                 'close_id', 'high', 'low'}
local LIMB = 1e14
local BUCKETS = {}
do
  local m, h, d = string.match(ttls, '^(%d+):(%d+):(%d+)$')
  BUCKETS = {{kind = 'min:', per = 1, ttl = m}, {kind = 'hour:', per = 60, ttl = h},
             {kind = 'day:', per = 1440, ttl = d}}
end

-- The key of the bucket of kind BUCKETS[k] holding `minute` (a Unix minute).
local function bucket_key(k, part, minute)
  local b = BUCKETS[k]
  return prefix .. b.kind .. part .. ':' .. fmt(math.floor(minute / b.per))
end

-- Parses one symbol of the batch starting at ARGV[i]: {name, segments}; returns the
-- symbol and the index after it. Layout: symbol, number of segments G,
-- G × {lo, hi, count, base units, quote units, last price, last time ms,
--      number of minutes M, M × {minute, count, base hi, base lo, quote hi, quote lo,
--      taker-buy base hi, lo, taker-buy quote hi, lo, open, open id, close, close id,
--      high, low}}
-- (a minute's kline: volumes in limbs of units, prices as decimals).
local function parse_symbol(i)
  local sym = {name = ARGV[i], segs = {}}
  local n_seg = tonumber(ARGV[i + 1]); i = i + 2
  for g = 1, n_seg do
    local seg = {lo = tonumber(ARGV[i]), hi = tonumber(ARGV[i + 1]), count = ARGV[i + 2],
                 base = ARGV[i + 3], quote = ARGV[i + 4], price = ARGV[i + 5],
                 time = ARGV[i + 6], mins = {}}
    local n_min = tonumber(ARGV[i + 7]); i = i + 8
    for m = 1, n_min do
      seg.mins[m] = {minute = tonumber(ARGV[i]), count = tonumber(ARGV[i + 1]),
                     base_hi = tonumber(ARGV[i + 2]), base_lo = tonumber(ARGV[i + 3]),
                     quote_hi = tonumber(ARGV[i + 4]), quote_lo = tonumber(ARGV[i + 5]),
                     tbase_hi = tonumber(ARGV[i + 6]), tbase_lo = tonumber(ARGV[i + 7]),
                     tquote_hi = tonumber(ARGV[i + 8]), tquote_lo = tonumber(ARGV[i + 9]),
                     open = ARGV[i + 10], open_id = tonumber(ARGV[i + 11]),
                     close = ARGV[i + 12], close_id = tonumber(ARGV[i + 13]),
                     high = ARGV[i + 14], low = ARGV[i + 15]}
      i = i + 16
    end
    sym.segs[g] = seg
  end
  return sym, i
end

-- Foreign values. `symbol:` is shared with the legacy reporting jobs, and anyone can
-- write any key. Redis does not roll back a script that fails half way, so everything
-- the writes rely on (types, integers, decimal shapes) is checked by load_state and
-- check_writes, read only, before any write: a symbol whose keys hold something else
-- is answered as foreign (its trades are kept aside by the caller) instead of failing
-- mid-batch.
local DEC8 = '^%d+%.' .. string.rep('%d', 8) .. '$'
local DEC16 = '^%d+%.' .. string.rep('%d', 16) .. '$'

-- What INCRBY/HINCRBY accept, with room left to add a batch (at most 18 digits).
local function is_count(v)
  return v == '0' or (string.match(v, '^%-?[1-9]%d*$') ~= nil and #v <= 19)
end

-- A trade id as this script writes it (exact as a Lua number: at most 2^53).
local function is_id(v)
  return v == '0' or (string.match(v, '^[1-9]%d*$') ~= nil and #v <= 16
                      and tonumber(v) <= 9007199254740992)
end

-- A value quoted for a reason: bounded, printable.
local function show(v)
  if #v > 40 then v = string.sub(v, 1, 40) .. '...' end
  return '"' .. string.gsub(v, '[^%w%p ]', '?') .. '"'
end

-- A command's reply, or nil and the server's error (WRONGTYPE) without failing.
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then return nil, r.err end
  return r
end

-- nil if every member of the range set `key` is `lo:hi` with score lo and lo <= hi,
-- else why not.
local function check_ranges(key)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for k = 1, #all, 2 do
    local a, b = string.match(all[k], '^(%d+):(%d+)$')
    if not a or not is_id(a) or not is_id(b) or tonumber(a) > tonumber(b)
       or tonumber(all[k + 1]) ~= tonumber(a) then
      return key .. ' holds member ' .. show(all[k]) .. ', not a trade-id range'
    end
  end
  return nil
end

-- What one symbol's classification starts from, read and checked before any write:
-- hwm (nil before its first trade), the number of gaps and evicted ranges (and their
-- members when lookups will parse them). Returns the state, or nil and why a key of
-- the symbol holds a foreign value.
local function load_state(sym)
  local name, part = sym.name, sym_part(sym.name)
  local st = {name = name, ckey = 'symbol:' .. name, skey = prefix .. 'stats:' .. part,
              dkey = prefix .. 'dedupe:' .. part, gkey = prefix .. 'gaps:' .. part,
              ekey = prefix .. 'evicted:' .. part, pkey = prefix .. 'pending:' .. part,
              bk = {}, bk_order = {}, pend = {}, sealed = -1}
  local d, err = try('HMGET', st.dkey, 'hwm', 'sealed')
  if err then return nil, st.dkey .. ': ' .. err end
  if d[1] then
    if not is_id(d[1]) then return nil, st.dkey .. ' field hwm holds ' .. show(d[1]) .. ', not a trade id' end
    st.hwm = tonumber(d[1])
  end
  if d[2] then
    if not is_id(d[2]) then return nil, st.dkey .. ' field sealed holds ' .. show(d[2]) .. ', not an hour' end
    st.sealed = tonumber(d[2])
  end
  st.ngaps, err = try('ZCARD', st.gkey)
  if err then return nil, st.gkey .. ': ' .. err end
  st.nevicted, err = try('ZCARD', st.ekey)
  if err then return nil, st.ekey .. ': ' .. err end
  -- Range members are parsed only by lookups at/below hwm: checked when there are any.
  local below = false
  for _, seg in ipairs(sym.segs) do
    if st.hwm and seg.lo <= st.hwm then below = true end
  end
  if below then
    local why = check_ranges(st.gkey) or check_ranges(st.ekey)
    if why then return nil, why end
  end
  return st
end

-- Compares two decimals as the scripts store prices (DEC8): -1, 0 or 1.
local function dec_cmp(a, b)
  local ai, af = string.match(a, '^0*(%d-)%.(%d+)$')
  local bi, bf = string.match(b, '^0*(%d-)%.(%d+)$')
  if #ai ~= #bi then return #ai < #bi and -1 or 1 end
  if ai ~= bi then return ai < bi and -1 or 1 end
  if af ~= bf then return af < bf and -1 or 1 end
  return 0
end

-- A decimal with exactly `scale` places (a bucket written before limbs) as limbs.
local function dec_limbs(v)
  local digits = string.gsub(v, '%.', '')
  local n = #digits
  if n <= 14 then return 0, tonumber(digits) end
  return tonumber(string.sub(digits, 1, n - 14)), tonumber(string.sub(digits, n - 13))
end

-- A bucket is a hash of two fields: `count` (a plain integer, what most readers
-- want) and `k`, the rest of the kline in KFIELDS order separated by spaces:
-- integers for limbs and ids, DEC8 decimals for prices ('-' for prices and ids while
-- the bucket holds only minutes from before klines). A hash of 15 fields cost Redis
-- 15 conversions each way per bucket and batch; this costs 2.
local PACKED = '^' .. string.rep('(%d+) ', 8) .. string.rep('([%d%.%-]+) ', 5) .. '([%d%.%-]+)$'
local NUMERIC = {'base_hi', 'base_lo', 'quote_hi', 'quote_lo', 'tbase_hi', 'tbase_lo',
                 'tquote_hi', 'tquote_lo'}
local PRICED = {'open', 'open_id', 'close', 'close_id', 'high', 'low'}

-- A bucket kept as a hash (written before buckets were packed: the 15 fields, or
-- `count`, `base` and `quote` decimals from before klines) as a bucket table, or nil
-- and why it holds a foreign value. The next write packs it.
local function read_hash_bucket(key, b)
  local r, err = try('HMGET', key, unpack(KFIELDS))
  if err then return nil, key .. ': ' .. err end
  b.fresh = r[1] == nil
  b.legacy = true
  for f = 1, #KFIELDS do
    local v, name = r[f], KFIELDS[f]
    if v then
      local ok
      if name == 'open' or name == 'close' or name == 'high' or name == 'low' then
        ok = string.match(v, DEC8) ~= nil
        b[name] = v
      else
        ok = is_id(v)
        b[name] = tonumber(v)
        if ok and string.sub(name, -3) == '_lo' then ok = b[name] < LIMB end
      end
      if not ok then
        return nil, key .. ' field ' .. name .. ' holds ' .. show(v) .. ', not what tradeflow writes'
      end
    end
  end
  b.count = b.count or 0
  if not b.fresh and not b.base_hi then
    local legacy
    legacy, err = try('HMGET', key, 'base', 'quote')
    if err then return nil, key .. ': ' .. err end
    if legacy[1] and string.match(legacy[1], DEC8) then b.base_hi, b.base_lo = dec_limbs(legacy[1]) end
    if legacy[2] and string.match(legacy[2], DEC16) then b.quote_hi, b.quote_lo = dec_limbs(legacy[2]) end
  end
  for _, v in ipairs({'base', 'quote', 'tbase', 'tquote'}) do
    b[v .. '_hi'] = b[v .. '_hi'] or 0
    b[v .. '_lo'] = b[v .. '_lo'] or 0
  end
  return b
end

-- A bucket's `k` as the bucket table's fields, or nil if it is not one.
local function unpack_bucket(v, b)
  local f = {string.match(v, PACKED)}
  if #f ~= 14 then return nil end
  for k = 1, 8 do
    local n = tonumber(f[k])
    if #f[k] > 16 or n > 9007199254740992 then return nil end
    b[NUMERIC[k]] = n
  end
  if b.base_lo >= LIMB or b.quote_lo >= LIMB or b.tbase_lo >= LIMB or b.tquote_lo >= LIMB then return nil end
  if f[9] == '-' then
    for k = 9, 14 do if f[k] ~= '-' then return nil end end
    return b
  end
  for k = 9, 13, 2 do if not string.match(f[k], DEC8) then return nil end end
  if not string.match(f[14], DEC8) or not is_id(f[10]) or not is_id(f[12]) then return nil end
  for k = 9, 14 do b[PRICED[k - 8]] = f[k] end
  b.open_id, b.close_id = tonumber(f[10]), tonumber(f[12])
  return b
end

-- Reads and checks one kline bucket (read only). Returns the bucket {key, ttl, fields
-- as numbers and price strings, fresh = held no trade}, or nil and why it holds a
-- foreign value. A bucket written before `k` (15 fields, or `count`, `base` and
-- `quote` decimals from before klines) is read as such; the next write packs it.
local function read_bucket(key, ttl)
  local b = {key = key, ttl = ttl}
  local r, err = try('HMGET', key, 'count', 'k')
  if err then return nil, key .. ': ' .. err end
  if r[1] and not r[2] then return read_hash_bucket(key, b) end
  if not r[1] then
    if r[2] then return nil, key .. ' holds field k without count, not what tradeflow writes' end
    b.fresh = true
    b.count, b.base_hi, b.base_lo, b.quote_hi, b.quote_lo = 0, 0, 0, 0, 0
    b.tbase_hi, b.tbase_lo, b.tquote_hi, b.tquote_lo = 0, 0, 0, 0
    return b
  end
  b.fresh = false
  if not is_id(r[1]) then
    return nil, key .. ' field count holds ' .. show(r[1]) .. ', not what tradeflow writes'
  end
  b.count = tonumber(r[1])
  if not unpack_bucket(r[2], b) then
    return nil, key .. ' field k holds ' .. show(r[2]) .. ', not a kline tradeflow writes'
  end
  return b
end

-- read_bucket into st.bk. Returns nil, or why the bucket holds a foreign value.
local function load_bucket(st, key, ttl)
  local b, why = read_bucket(key, ttl)
  if not b then return why end
  st.bk[key] = b
  st.bk_order[#st.bk_order + 1] = b
  return nil
end

-- Read only, for a symbol that will write: checks the keys the writes add to — the
-- count, the stored volumes and the segments' kline buckets — and keeps the values
-- (apply_amounts keeps them up to date, so phase 2 reads none of them again).
-- Returns nil, or why a key holds a foreign value.
local function check_writes(sym, st)
  local part = sym_part(sym.name)
  local v, err = try('GET', st.ckey)
  if err then return st.ckey .. ': ' .. err end
  if v and not is_count(v) then return st.ckey .. ' holds ' .. show(v) .. ', not an integer' end
  local s
  s, err = try('HMGET', st.skey, 'base', 'quote')
  if err then return st.skey .. ': ' .. err end
  if s[1] and not string.match(s[1], DEC8) then return st.skey .. ' field base holds ' .. show(s[1]) .. ', not a decimal with 8 places' end
  if s[2] and not string.match(s[2], DEC16) then return st.skey .. ' field quote holds ' .. show(s[2]) .. ', not a decimal with 16 places' end
  st.base, st.quote = s[1] or nil, s[2] or nil
  local pending_checked = false
  for _, seg in ipairs(sym.segs) do
    for _, m in ipairs(seg.mins) do
      local hour = math.floor(m.minute / 60)
      local mkey = bucket_key(1, part, m.minute)
      m.bucket = st.bk[mkey]
      if not m.bucket then
        local why = load_bucket(st, mkey, BUCKETS[1].ttl)
        if why then return why end
        m.bucket = st.bk[mkey]
      end
      if hour <= st.sealed then
        -- A late trade for an hour rolled up: merged into its hour and day too.
        local hkey = bucket_key(2, part, m.minute)
        local dkey = bucket_key(3, part, m.minute)
        for _, k in ipairs({{hkey, BUCKETS[2].ttl}, {dkey, BUCKETS[3].ttl}}) do
          if not st.bk[k[1]] then
            local why = load_bucket(st, k[1], k[2])
            if why then return why end
          end
        end
        m.hour_bucket, m.day_bucket = st.bk[hkey], st.bk[dkey]
      elseif not pending_checked then
        -- A new minute of an hour not rolled up is noted there: its type is checked
        -- (whenever such a minute is written, so a foreign value there is reported
        -- before the roll-up meets it).
        local _, perr = try('ZCARD', st.pkey)
        if perr then return st.pkey .. ': ' .. perr end
        pending_checked = true
      end
    end
  end
  return nil
end

-- The range of sorted set `key` that starts at or below `lo`, if any: {member, lo, hi}.
local function range_at(key, lo)
  local r = redis.call('ZREVRANGEBYSCORE', key, fmt(lo), '-inf', 'LIMIT', 0, 1)
  if #r == 0 then return nil end
  local a, b = string.match(r[1], '^(%d+):(%d+)$')
  return {r[1], tonumber(a), tonumber(b)}
end

-- How lo..hi meets the ranges of `key`: 'in' one of them (returned too), 'part' (meets
-- some without lying inside one), or 'out'.
local function meets(key, lo, hi)
  local g = range_at(key, lo)
  if g and g[3] >= lo then
    if g[3] >= hi then return 'in', g end
    return 'part'
  end
  if lo < hi then
    local inner = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(lo), fmt(hi), 'LIMIT', 0, 1)
    if #inner > 0 then return 'part' end
  end
  return 'out'
end

-- 'above' | 'gap' | 'dup' | 'late' | 'split'. At/below hwm, ids are applied unless in
-- a kept gap (applied now) or an evicted one (never applied: `late`); ids of ranges
-- evicted from both sets long ago count as duplicates.
local function classify(st, lo, hi)
  if st.hwm == nil or lo > st.hwm then return 'above' end
  if hi > st.hwm then return 'split' end
  local k, g = meets(st.gkey, lo, hi)
  if k == 'in' then return 'gap', g end
  if k == 'part' then return 'split' end
  if st.nevicted > 0 then
    k = meets(st.ekey, lo, hi)
    if k == 'in' then return 'late' end
    if k == 'part' then return 'split' end
  end
  return 'dup'
end

-- Read only: whether any segment straddles what was seen (nothing may be written
-- then), and whether any would be written (only then are the written keys checked: a
-- batch of duplicates writes nothing and needs no check).
local function survey(sym, st)
  local writes = false
  for _, seg in ipairs(sym.segs) do
    local k = classify(st, seg.lo, seg.hi)
    if k == 'split' then return true, writes end
    if k == 'above' or k == 'gap' then writes = true end
  end
  return false, writes
end

-- Phase 1 for one symbol: 'foreign' and why, 'split', or the state to apply from.
local function prepare(sym)
  local st, why = load_state(sym)
  if not st then return 'foreign', why end
  local split, writes = survey(sym, st)
  if split then return 'split' end
  if writes then
    why = check_writes(sym, st)
    if why then return 'foreign', why end
  end
  return 'ok', st
end

local function add_gap(st, lo, hi)
  redis.call('ZADD', st.gkey, fmt(lo), fmt(lo) .. ':' .. fmt(hi))
  st.ngaps = st.ngaps + 1
  if st.ngaps > max_gaps then
    -- Oldest (lowest) gaps go first, into the evicted set: a trade arriving for one
    -- later is `late`, not applied. That set is bounded the same way.
    local popped = redis.call('ZPOPMIN', st.gkey, st.ngaps - max_gaps)
    st.ngaps = max_gaps
    for k = 1, #popped, 2 do
      redis.call('ZADD', st.ekey, popped[k + 1], popped[k])
    end
    st.nevicted = redis.call('ZCARD', st.ekey)
    if st.nevicted > max_gaps then
      redis.call('ZREMRANGEBYRANK', st.ekey, 0, st.nevicted - max_gaps - 1)
      st.nevicted = max_gaps
    end
  end
end

-- Adds the kline `m` (of trades never applied to `b`: a minute of a segment, or a
-- minute bucket rolled up) to bucket `b`: sums (limbs carried), and open/close by
-- trade id, so a trade filling a gap moves them correctly.
local function merge(b, m)
  b.count = b.count + m.count
  local h, l = b.base_hi + m.base_hi, b.base_lo + m.base_lo
  if l >= LIMB then l = l - LIMB; h = h + 1 end
  b.base_hi, b.base_lo = h, l
  h, l = b.quote_hi + m.quote_hi, b.quote_lo + m.quote_lo
  if l >= LIMB then l = l - LIMB; h = h + 1 end
  b.quote_hi, b.quote_lo = h, l
  h, l = b.tbase_hi + m.tbase_hi, b.tbase_lo + m.tbase_lo
  if l >= LIMB then l = l - LIMB; h = h + 1 end
  b.tbase_hi, b.tbase_lo = h, l
  h, l = b.tquote_hi + m.tquote_hi, b.tquote_lo + m.tquote_lo
  if l >= LIMB then l = l - LIMB; h = h + 1 end
  b.tquote_hi, b.tquote_lo = h, l
  -- A minute bucket from before klines has no prices to give.
  if m.open_id then
    if not b.open_id or m.open_id < b.open_id then b.open_id, b.open = m.open_id, m.open end
    if not b.close_id or m.close_id > b.close_id then b.close_id, b.close = m.close_id, m.close end
    if not b.high or dec_cmp(m.high, b.high) > 0 then b.high = m.high end
    if not b.low or dec_cmp(m.low, b.low) < 0 then b.low = m.low end
  end
  b.dirty = true
end

local function apply_amounts(st, seg)
  redis.call('INCRBY', st.ckey, seg.count)
  st.base = add_dec(st.base, seg.base, 8)
  st.quote = add_dec(st.quote, seg.quote, 16)
  redis.call('HSET', st.skey, 'base', st.base, 'quote', st.quote)
  for _, m in ipairs(seg.mins) do
    local mb = m.bucket
    -- A new minute (or one from before klines) of an hour not rolled up yet.
    if mb.fresh or not mb.open_id then st.pend[math.floor(m.minute / 60)] = true; mb.fresh = false end
    merge(mb, m)
    if m.hour_bucket then
      merge(m.hour_bucket, m)
      merge(m.day_bucket, m)
    end
  end
end

-- Writes the buckets the symbol's segments changed: one HSET and EXPIRE each,
-- however many segments and minutes fell in it (a bucket lives its TTL after its last
-- trade), and notes the hours of new minute buckets not rolled up yet.
local function flush_buckets(st)
  for _, b in ipairs(st.bk_order) do
    if b.dirty then
      local v = string.format('%d %d %d %d %d %d %d %d', b.base_hi, b.base_lo, b.quote_hi,
                              b.quote_lo, b.tbase_hi, b.tbase_lo, b.tquote_hi, b.tquote_lo)
      -- Prices stay absent in a bucket holding only minutes from before klines.
      if b.open_id then
        v = v .. string.format(' %s %d %s %d %s %s', b.open, b.open_id, b.close, b.close_id,
                               b.high, b.low)
      else
        v = v .. ' - - - - - -'
      end
      -- A bucket of the older layout loses its other fields.
      if b.legacy then redis.call('DEL', b.key); b.legacy = false end
      redis.call('HSET', b.key, 'count', fmt(b.count), 'k', v)
      redis.call('EXPIRE', b.key, b.ttl)
      b.dirty = false
    end
  end
  for hour, _ in pairs(st.pend) do
    if hour > st.sealed then redis.call('ZADD', st.pkey, fmt(hour), fmt(hour)) end
  end
  st.pend = {}
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
      redis.call('HSET', st.skey, 'last_price', seg.price,
                 'last_time_ms', seg.time, 'last_trade_id', fmt(seg.hi))
      apply_amounts(st, seg)
      applied = applied + n; touched = true
    elseif kind == 'gap' then
      redis.call('ZREM', st.gkey, g[1])
      st.ngaps = st.ngaps - 1
      if g[2] < seg.lo then add_gap(st, g[2], seg.lo - 1) end
      if seg.hi < g[3] then add_gap(st, seg.hi + 1, g[3]) end
      apply_amounts(st, seg)
      applied = applied + n; touched = true
    elseif kind == 'dup' then
      dups = dups + n
    else
      late = late + n
    end
  end
  flush_buckets(st)
  return applied, dups, late, touched
end
