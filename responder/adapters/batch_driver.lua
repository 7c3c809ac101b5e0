-- Many calls of one script as one: the worker's batch reads (writes, marks) its ~100
-- incidents in a pipeline of a few commands rather than of ~100 EVALSHA, whose
-- per-command cost in redis-py (a reply read under its own timeout each) was about a
-- tenth of a worker's CPU per signal. Each call runs as it would alone (its own KEYS and
-- ARGV, its own reply), in order.
-- Not a script of its own: RedisStore's _batched puts it after the script it drives,
-- which it wraps as `local function one(KEYS, ARGV) <script> end`.
--
-- KEYS[1..]        every call's keys, in order
-- ARGV[1]          c, the number of calls
-- ARGV[2..2c+1]    per call, two counts: how many keys it has, then how many arguments
-- ARGV[2c+2..]     every call's arguments, in order
-- Returns          the list of the calls' replies, in order
local out, k, a = {}, 0, 1 + 2 * tonumber(ARGV[1])
for c = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[2 * c]), tonumber(ARGV[2 * c + 1])
  local keys, args = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i] end
  for i = 1, na do args[i] = ARGV[a + i] end
  k, a = k + nk, a + na
  out[c] = one(keys, args)
end
return out
