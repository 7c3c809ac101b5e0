-- Take an incident's follow-up lease, or renew it for the token that holds it, and read
-- the incident's processed cursor in the same step (Store.lease_follow_ups): the holder
-- follows up from there, so events another replica followed up while it waited for the
-- lease are not handed to the stages again. Runs batched (batch_driver.lua).
--
-- KEYS[1]  the lease (string: its holder's token)
-- KEYS[2]  the incident's processed cursor (string)
-- ARGV[1]  the token
-- ARGV[2]  the lease's TTL, ms
-- ARGV[3]  '1': only renew (a lease given up meanwhile is not taken again)
-- Returns  the processed cursor when the token holds the lease now, -1 when another
--          does (or, renewing, nobody)
local held = false
if ARGV[3] ~= '1' then held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) end
if not held then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
