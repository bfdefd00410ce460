
local pos_key = ARGV[2]
local last_seq, last_sub = ARGV[5], ARGV[6]
local dl_max = ARGV[8]
local stream_name, shard = ARGV[9], ARGV[10]

-- A key of the whole batch holding a foreign value: an error before any write.
local function foreign_key(key, what)
  return redis.error_reply('FOREIGN ' .. key .. ' ' .. what .. '; nothing written, repair the key')
end

-- Fast path: the whole batch is at or below what this shard already applied.
local stored, perr = try('HMGET', pos_key, 'seq', 'sub')
if perr then return foreign_key(pos_key, 'holds a foreign value (' .. perr .. ')') end
local stored_seq, stored_sub = stored[1], stored[2]
if not pos_ok(stored_seq, stored_sub) then
  return foreign_key(pos_key, 'holds seq ' .. show(tostring(stored_seq)) .. ', sub ' ..
                     show(tostring(stored_sub)) .. ', not a position')
end
local exp_seq, exp_sub = ARGV[12], ARGV[13]
if is_behind(stored_seq, stored_sub, exp_seq, exp_sub) then
  return {3, 0, 0, 0, 0, stored_seq or '', stored_sub or ''}
end
if stored_seq and pos_cmp(last_seq, last_sub, stored_seq, stored_sub) <= 0 then
  return {1, 0, 0, 0, 0}
end

-- Parse the batch.
local poison_start, n_poison, i = poison_args(14)
local n_sym = tonumber(ARGV[i]); i = i + 1
local symbols = {}
for s = 1, n_sym do
  symbols[s], i = parse_symbol(i)
end

-- Phase 1 (read only): nothing is written unless every symbol can be applied whole,
-- so a crash or an error can never leave a batch half applied behind an advanced
-- position. A key of the whole batch holding a foreign value fails it (retried until
-- a human repairs it); a symbol whose keys do makes it answer "foreign" (re-sent
-- without it); a straddling segment makes it answer "split".
local symbols_key = prefix .. 'symbols'
local dl_key = prefix .. 'dead_letter'
for _, k in ipairs({{symbols_key, 'SCARD'}, {dl_key, 'XLEN'}}) do
  local _, err = try(k[2], k[1])
  if err then return foreign_key(k[1], 'holds a foreign value (' .. err .. ')') end
end
local states, foreign, split = {}, {}, {}
for s = 1, n_sym do
  local kind, x = prepare(symbols[s])
  if kind == 'foreign' then
    foreign[#foreign + 1] = symbols[s].name
    foreign[#foreign + 1] = x
  elseif kind == 'split' then
    split[#split + 1] = symbols[s].name
  else
    states[s] = x
  end
end
if #foreign > 0 then
  local r = {4, 0, 0, 0, 0}
  for _, v in ipairs(foreign) do r[#r + 1] = v end
  return r
end
if #split > 0 then
  local r = {2, 0, 0, 0, 0}
  for _, name in ipairs(split) do r[#r + 1] = name end
  return r
end

-- Phase 2: apply.
local applied, dups, late = 0, 0, 0
for s = 1, n_sym do
  local a, d, l, touched = apply_symbol(symbols[s], states[s])
  applied, dups, late = applied + a, dups + d, late + l
  if touched then redis.call('SADD', symbols_key, symbols[s].name) end
end

-- Poison records newer than the stored position: kept aside exactly once.
local written = dead_letter(dl_key, dl_max, stream_name, shard, poison_start, n_poison,
                            stored_seq, stored_sub)

redis.call('HSET', pos_key, 'seq', last_seq, 'sub', last_sub)
return {0, applied, dups, written, late}
