-- tradeflow: before a shard's SHARD_END checkpoint (redis_sink/shard_end.rs). KEYS: 1 the
-- shard's position hash. ARGV: 1 the position this worker applied through ('' if
-- none), 2 its sub-sequence.
-- Returns {0} when Redis holds at least that position. The position is then written
-- again as it is: a write of this connection after everything applied to the shard, so
-- that WAITAOF on this connection covers all of it. {3, stored seq, stored sub} when it
-- holds less (it lost writes: the shard is re-read from there), nothing written.

local v = redis.call('HMGET', KEYS[1], 'seq', 'sub')
local seq, sub = v[1], v[2]
if not pos_ok(seq, sub) then
  return redis.error_reply('FOREIGN ' .. KEYS[1] .. ' does not hold a position; nothing written, repair the key')
end
if is_behind(seq, sub, ARGV[1], ARGV[2]) then
  return {3, seq or '', sub or ''}
end
if seq then redis.call('HSET', KEYS[1], 'seq', seq, 'sub', sub) end
return {0}
