
local sym = parse_symbol(4)

-- Every key this script touches must be declared: a slot being migrated then answers
-- TRYAGAIN (or ASK) unless all of them are on this node, and the script never runs
-- with part of a symbol's state gone (it would write some keys and then fail on a
-- moved one, with no rollback).
local declared = {}
for _, k in ipairs(KEYS) do declared[k] = true end
local function must_be_declared(k)
  if not declared[k] then error('undeclared key ' .. k) end
end
must_be_declared('symbol:' .. sym.name)
for _, kind in ipairs({'stats:', 'dedupe:', 'gaps:', 'evicted:', 'pending:'}) do
  must_be_declared(prefix .. kind .. sym_part(sym.name))
end
for _, seg in ipairs(sym.segs) do
  for _, m in ipairs(seg.mins) do
    for _, b in ipairs(BUCKETS) do
      must_be_declared(prefix .. b.kind .. sym_part(sym.name) .. ':' ..
                       fmt(math.floor(m.minute / b.per)))
    end
  end
end

local kind, st = prepare(sym)
if kind == 'foreign' then return {4, 0, 0, 0, 0, st} end
if kind == 'split' then return {2, 0, 0, 0, 0} end
local applied, dups, late, touched = apply_symbol(sym, st)
if not touched and st.hwm then
  -- Nothing new (duplicates, late): still write, the same hwm again. WAIT counts the
  -- replicas that hold what this connection wrote; without a write of its own here,
  -- another worker's earlier write of these trades (its WAIT not yet satisfied) would
  -- not be waited for, and the position could move past trades only this primary holds.
  redis.call('HSET', st.dkey, 'hwm', fmt(st.hwm))
end
return {0, applied, dups, 0, late}
