-- Atomic dedupe-and-queue for one webhook's signals (Store.observe).
-- Mirrors responder.domain.signal.dedupe_outcome; the contract tests hold both to it.
--
-- KEYS[1]      the queue stream
-- KEYS[2..n]   one dedupe record (hash) per signal
-- ARGV[1]      now, epoch ms          ARGV[2]  record TTL, seconds
-- ARGV[3]      approximate stream cap
-- then per signal, three values: status, order (epoch ms of the occurrence), payload
-- Returns one outcome per signal: "new", "changed" or "repeat".
local now = ARGV[1]
local ttl = tonumber(ARGV[2])
local maxlen = ARGV[3]
local out = {}
for i = 2, #KEYS do
  local a = 4 + (i - 2) * 3
  local status, order, payload = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local key = KEYS[i]
  local prev = redis.call('HMGET', key, 'status', 'order')
  local outcome
  if not prev[1] then
    outcome = 'new'
  else
    local prev_status, prev_order = prev[1], tonumber(prev[2])
    if prev_status == status then
      if status == 'firing' and order > prev_order then outcome = 'changed' else outcome = 'repeat' end
    elseif order < prev_order then
      outcome = 'repeat'
    elseif status == 'firing' and order == prev_order then
      outcome = 'repeat'
    else
      outcome = 'changed'
    end
  end
  if outcome == 'repeat' then
    redis.call('HINCRBY', key, 'repeats', 1)
    redis.call('HSET', key, 'last_seen', now)
  else
    redis.call('HSET', key, 'status', status, 'order', order, 'last_seen', now, 'repeats', 0)
    redis.call('HSETNX', key, 'first_seen', now)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'signal', payload)
  end
  redis.call('EXPIRE', key, ttl)
  out[#out + 1] = outcome
end
return out
