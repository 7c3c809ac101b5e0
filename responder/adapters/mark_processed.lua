-- Move an incident's processed cursor forward (never back), and give it the incident's
-- remaining lifetime (Store.mark_processed). Once every event past the cursor needs no
-- follow-up (what a sink did: a "notification." event), the incident leaves the
-- follow-up check. Runs batched (batch_driver.lua): KEYS and ARGV are one call's.
--
-- KEYS[1]  the incident's processed cursor (string)
-- KEYS[2]  the incident
-- KEYS[3]  its timeline (list)
-- KEYS[4]  the follow-up check (sorted set, RedisKeys.follow_ups)
-- ARGV[1]  the seq to move the cursor to (a timeline position)
-- ARGV[2]  the incident id
-- Returns  1
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], wanted)
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
  current = wanted
end
-- events past the cursor that need no follow-up (what a sink did) do not keep it there
for _, event in ipairs(redis.call('LRANGE', KEYS[3], current, -1)) do
  if not string.find(event, '"kind":"notification.', 1, true) then return 1 end
end
redis.call('ZREM', KEYS[4], ARGV[2])
return 1
