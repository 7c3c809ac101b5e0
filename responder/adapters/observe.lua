-- Atomic dedupe-and-queue for the signals of one or more webhooks (Store.observe;
-- RedisStore's Coalescer sends those of concurrent webhooks as one call).
-- Mirrors responder.domain.signal.dedupe_outcome; the contract tests hold both to it.
-- Handled entries are deleted from the stream, so its length is the backlog: an accepted
-- signal is never trimmed. A queued signal with an ordering key gets the key's next
-- sequence number: the workers apply the signals of one key in that order.
--
-- KEYS[1]     the queue stream
-- KEYS[2i]    per signal i (from 1): its dedupe record (hash)
-- KEYS[2i+1]  its ordering record (hash: seq, the last sequence number given out; done,
--             the last applied); the queue again, unused, when it has no ordering key
-- ARGV[1]     now, epoch ms
-- ARGV[2]     record TTL, s (dedupe and ordering records)
-- ARGV[3]     the most unhandled entries the queue may hold
-- ARGV[4i]    per signal i (from 1): its status
-- ARGV[4i+1]  its order: epoch ms of the occurrence
-- ARGV[4i+2]  its payload (queued as is)
-- ARGV[4i+3]  its ordering key ("" for none)
-- Returns     one outcome per signal: "new", "changed" or "repeat"; or {"full"}, changing
--             nothing, when the queue already holds ARGV[3] entries
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[3]) then return {'full'} end
local now = ARGV[1]
local ttl = tonumber(ARGV[2])
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local a = 4 + (i - 1) * 4
  local status, order, payload, okey = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local key = KEYS[2 * i]
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
    if okey == '' then
      redis.call('XADD', KEYS[1], '*', 'signal', payload)
    else
      local ordering = KEYS[2 * i + 1]
      local seq = redis.call('HINCRBY', ordering, 'seq', 1)
      redis.call('EXPIRE', ordering, ttl)
      redis.call('XADD', KEYS[1], '*', 'signal', payload, 'order', okey, 'seq', seq)
    end
  end
  redis.call('EXPIRE', key, ttl)
  out[#out + 1] = outcome
end
return out
