-- A thread several incidents share (ActionLedger.*_shared_thread), one hash, each
-- operation one call: refs, creating and shown (RedisKeys.shared_thread), and m:<member>
-- per incident attached, with what it wants shown.
--
-- KEYS[1]    the thread's hash
-- ARGV[1]    the operation: join, leave, settle or close
-- ARGV[2]    the hash's TTL, s (from each write)
-- ARGV[3..]  the operation's own:
--              join    ARGV[3] the member
--                      ARGV[4] what it wants shown (JSON)
--              leave   ARGV[3..] the members that leave
--              settle  ARGV[3..] field, value pairs (an empty value deletes the field)
--              close   ARGV[3] the closed thread's id: the record goes if it is its and
--                      has no member
-- Returns    join, leave: the hash as field, value pairs ({} once it is gone); settle,
--            close: {}
local key, op, ttl = KEYS[1], ARGV[1], ARGV[2]
if op == 'join' then
  redis.call('HSET', key, 'm:' .. ARGV[3], ARGV[4])
  redis.call('EXPIRE', key, ttl)
  return redis.call('HGETALL', key)
end
if redis.call('EXISTS', key) == 0 then return {} end
if op == 'leave' then
  for i = 3, #ARGV do redis.call('HDEL', key, 'm:' .. ARGV[i]) end
  if redis.call('EXISTS', key) == 1 then redis.call('EXPIRE', key, ttl) end
  return redis.call('HGETALL', key)
end
if op == 'settle' then
  for i = 3, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', key, ARGV[i])
    else
      redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    end
  end
  if redis.call('EXISTS', key) == 1 then redis.call('EXPIRE', key, ttl) end
  return {}
end
if op == 'close' then
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'm:' then return {} end
  end
  local refs = redis.call('HGET', key, 'refs')
  if refs and tostring(cjson.decode(refs)['id']) == ARGV[3] then redis.call('DEL', key) end
  return {}
end
return redis.error_reply('unknown op ' .. op)
