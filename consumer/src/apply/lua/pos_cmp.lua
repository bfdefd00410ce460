-- tradeflow: shard positions, shared by the apply scripts.
-- Sequence numbers: decimal strings without leading zeros, compared as big integers.
local function pos_cmp(seq_a, sub_a, seq_b, sub_b)
  if #seq_a ~= #seq_b then return (#seq_a < #seq_b) and -1 or 1 end
  if seq_a ~= seq_b then return (seq_a < seq_b) and -1 or 1 end
  local x, y = tonumber(sub_a), tonumber(sub_b)
  if x == y then return 0 end
  return (x < y) and -1 or 1
end

