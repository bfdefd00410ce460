-- tradeflow: poison records into the dead-letter stream, shared by the batch script
-- (one Redis) and the position script (cluster). Needs pos_cmp.lua before it.

-- Where the poison records are in ARGV: their number P at `i`, then P × 5 values.
-- Returns the index of the first record, P, and the index after the last.
local function poison_args(i)
  local n = tonumber(ARGV[i])
  return i + 1, n, i + 1 + 5 * n
end

-- The batch's P poison records are in ARGV from `first` on, 5 each: {seq, sub, kind,
-- reason, data}. Only those above the stored position are written (HMGET gave false
-- for a shard with no position yet), so a replay never writes one twice. Returns how
-- many were written.
local function dead_letter(dl_key, maxlen, stream_name, shard, first, n, stored_seq, stored_sub)
  local written = 0
  for p = 0, n - 1 do
    local j = first + 5 * p
    if not stored_seq or pos_cmp(ARGV[j], ARGV[j + 1], stored_seq, stored_sub) > 0 then
      redis.call('XADD', dl_key, 'MAXLEN', '~', maxlen, '*', 'stream', stream_name,
                 'shard', shard, 'seq', ARGV[j], 'sub', ARGV[j + 1], 'kind', ARGV[j + 2],
                 'reason', ARGV[j + 3], 'data', ARGV[j + 4])
      written = written + 1
    end
  end
  return written
end

