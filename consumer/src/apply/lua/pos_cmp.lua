-- tradeflow: shard positions, shared by the apply scripts.
-- Sequence numbers: decimal strings without leading zeros, compared as big integers.
-- A stored position as tradeflow writes it: both fields digits, or neither set.
local function pos_ok(seq, sub)
  if not seq and not sub then return true end
  return seq and sub and string.match(seq, '^%d+$') ~= nil and string.match(sub, '^%d+$') ~= nil
end

local function pos_cmp(seq_a, sub_a, seq_b, sub_b)
  if #seq_a ~= #seq_b then return (#seq_a < #seq_b) and -1 or 1 end
  if seq_a ~= seq_b then return (seq_a < seq_b) and -1 or 1 end
  local x, y = tonumber(sub_a), tonumber(sub_b)
  if x == y then return 0 end
  return (x < y) and -1 or 1
end

-- Redis lost writes: the stored position (false/nil if none) is below the one this
-- applier already applied to the shard (`exp_seq` '' if none).
local function is_behind(stored_seq, stored_sub, exp_seq, exp_sub)
  return exp_seq ~= '' and (not stored_seq or pos_cmp(stored_seq, stored_sub, exp_seq, exp_sub) < 0)
end

