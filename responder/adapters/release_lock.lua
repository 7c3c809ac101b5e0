-- Release a lock only if the token still holds it.
--
-- KEYS[1]  the lock (string: its holder's token)
-- ARGV[1]  the token
-- Returns  1 when it was released, 0 when another token holds it or nobody does
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
