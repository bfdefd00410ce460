
local name, upto, n = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local part = sym_part(name)
local dkey, pkey = prefix .. 'dedupe:' .. part, prefix .. 'pending:' .. part
local declared = {}
for _, k in ipairs(KEYS) do declared[k] = true end
local function key(k)
  if not declared[k] then error('undeclared key ' .. k) end
  return k
end

-- The caller's view of what is pending must still hold: an apply in between may have
-- added an hour (this script then runs again with it).
local now, err = try('ZRANGEBYSCORE', key(pkey), '-inf', fmt(upto))
if err then return {2, pkey .. ': ' .. err} end
if #now ~= n then return {0} end
for i = 1, n do
  if tonumber(now[i]) ~= tonumber(ARGV[6 + i]) then return {0} end
end
local d
d, err = try('HMGET', key(dkey), 'sealed')
if err then return {2, dkey .. ': ' .. err} end
if d[1] and not is_id(d[1]) then return {2, dkey .. ' field sealed holds ' .. show(d[1]) .. ', not an hour'} end
local sealed = tonumber(d[1] or '-1')

-- Phase 1 (read only): every minute of the pending hours, and the hour and day
-- buckets they go into.
local st = {bk = {}, bk_order = {}}
local rolled = {}
for i = 1, n do
  local hour = tonumber(now[i])
  for minute = hour * 60, hour * 60 + 59 do
    local m, why = read_bucket(key(bucket_key(1, part, minute)), 0)
    if not m then return {2, why} end
    if m.count > 0 then
      local targets = {}
      for k = 2, 3 do
        targets[k - 1] = key(bucket_key(k, part, minute))
        if not st.bk[targets[k - 1]] then
          why = load_bucket(st, targets[k - 1], BUCKETS[k].ttl)
          if why then return {2, why} end
        end
      end
      rolled[#rolled + 1] = {m, targets[1], targets[2]}
    end
  end
end

-- Phase 2: merge, write, and move the watermark: from now on a trade of these hours
-- is merged into their hour and day buckets as it is applied.
for _, r in ipairs(rolled) do
  merge(st.bk[r[2]], r[1])
  merge(st.bk[r[3]], r[1])
end
st.pend, st.pkey, st.sealed = {}, pkey, upto
flush_buckets(st)
for i = 1, n do redis.call('ZREM', pkey, now[i]) end
if upto > sealed then redis.call('HSET', dkey, 'sealed', fmt(upto)) end
return {1, n}
