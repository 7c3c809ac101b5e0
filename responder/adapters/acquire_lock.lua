-- Take a lock, or renew it when the same token holds it (a step's recovery after its
-- worker died: the step is the token, so it can go on where it stopped).
--
-- KEYS[1]  the lock (string: its holder's token)
-- ARGV[1]  the token
-- ARGV[2]  the lock's TTL, ms
-- Returns  1 when the token holds the lock now, 0 when another does
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
