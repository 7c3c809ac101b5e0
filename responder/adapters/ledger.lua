-- Claim the idempotency record of one side effect (ActionLedger.claim_effect).
-- KEYS[1] the record (hash)   ARGV[1] owner   ARGV[2] now, ms   ARGV[3] lease, ms
-- ARGV[4] record TTL, s
-- Returns {status, data}: start | done | busy | recover.
local state = redis.call('HGET', KEYS[1], 'state')
local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
if not state then
  redis.call('HSET', KEYS[1], 'state', 'applying', 'owner', ARGV[1], 'lease', now + lease,
             'data', '{}')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'start', '{}'}
end
local data = redis.call('HGET', KEYS[1], 'data') or '{}'
if state == 'done' then return {'done', data} end
if tonumber(redis.call('HGET', KEYS[1], 'lease') or '0') > now then return {'busy', data} end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease', now + lease)
return {'recover', data}
