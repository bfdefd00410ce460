-- tradeflow (Redis Cluster): after every symbol of a batch is applied (and replicated,
-- see redis_sink/cluster.rs), advance the shard's position, keep the batch's poison records
-- aside exactly once and register its symbols. KEYS (one slot, hash tag {meta}):
-- 1 position hash, 2 dead-letter stream, 3 symbols set.
-- ARGV: 1 last seq, 2 last sub, 3 dead-letter maxlen, 4 stream, 5 shard, 6 expected
-- seq ('' if none), 7 expected sub, 8 number of poison records P, P × {seq, sub, kind,
-- reason, data}, then number of symbols S, S × symbol.
-- Returns {status, 0, 0, poison written, 0[, stored seq, stored sub]} with the statuses
-- of batch.lua: 0 advanced, 1 at/below the stored position (nothing to do), 3 the
-- stored position is behind the expected one (this node lost writes: re-read from it).

local pos_key, dl_key, symbols_key = KEYS[1], KEYS[2], KEYS[3]
local last_seq, last_sub = ARGV[1], ARGV[2]
-- A foreign value in one of these keys fails the call before any write (no rollback).
local stored
for _, c in ipairs({{'SCARD', symbols_key}, {'XLEN', dl_key}, {'HMGET', pos_key, 'seq', 'sub'}}) do
  local r = redis.pcall(unpack(c))
  if type(r) == 'table' and r.err then
    return redis.error_reply('FOREIGN ' .. c[2] .. ' holds a foreign value (' .. r.err ..
                             '); nothing written, repair the key')
  end
  stored = r
end
local stored_seq, stored_sub = stored[1], stored[2]
if not pos_ok(stored_seq, stored_sub) then
  return redis.error_reply('FOREIGN ' .. pos_key .. ' does not hold a position; nothing written, repair the key')
end
local exp_seq, exp_sub = ARGV[6], ARGV[7]
if is_behind(stored_seq, stored_sub, exp_seq, exp_sub) then
  return {3, 0, 0, 0, 0, stored_seq or '', stored_sub or ''}
end

local poison_start, n_poison, i = poison_args(8)
local n_sym = tonumber(ARGV[i]); i = i + 1
-- Registered even when the batch is old: its symbols were applied before this call.
for s = 0, n_sym - 1 do redis.call('SADD', symbols_key, ARGV[i + s]) end

if stored_seq and pos_cmp(last_seq, last_sub, stored_seq, stored_sub) <= 0 then
  return {1, 0, 0, 0, 0}
end
local written = dead_letter(dl_key, ARGV[3], ARGV[4], ARGV[5], poison_start, n_poison,
                            stored_seq, stored_sub)
redis.call('HSET', pos_key, 'seq', last_seq, 'sub', last_sub)
return {0, 0, 0, written, 0}
