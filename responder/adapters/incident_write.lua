-- Write phase of Store.mutate_incidents, for one incident: compare, then write it all.
-- KEYS[1] incident        KEYS[2] timeline        KEYS[3] alerts hash    KEYS[4] processed
-- KEYS[5] all incidents   KEYS[6] open   KEYS[7] acked   KEYS[8] resolved (sorted sets)
-- KEYS[9] the group index
-- KEYS[10 .. 9+p]         PagerDuty index keys
-- KEYS[10+p ..]           dedupe records of the signals applied (marked handled)
-- ARGV[1] expected timeline length (-1: a new incident)   ARGV[2] incident id
-- ARGV[3] incident json   ARGV[4] status   ARGV[5] opened-at ms   ARGV[6] "1" when active
-- ARGV[7] TTL of a resolved incident, s   ARGV[8] TTL of PagerDuty index keys, s
-- ARGV[9] forget resolved incidents opened before this, ms
-- ARGV[10] p   ARGV[11] e, the number of events, then the e events;
-- then per signal record: the status and order handled; then pairs of alert
-- fingerprint and alert json, to the end.
-- Returns {"conflict"} when someone else wrote first, else {"ok", processed cursor}.
local expected = tonumber(ARGV[1])
local id = ARGV[2]
if expected == -1 then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end
  local owner = redis.call('GET', KEYS[9])
  if owner and owner ~= id then return {'conflict'} end
elseif redis.call('LLEN', KEYS[2]) ~= expected then
  return {'conflict'}
end
local p, e = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('SET', KEYS[1], ARGV[3])
for i = 12, 11 + e do
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
local a = 12 + e
for i = 10 + p, #KEYS do
  -- only on a live record: one that expired is not brought back without its TTL
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'handled_status', ARGV[a], 'handled_order', ARGV[a + 1])
  end
  a = a + 2
end
for i = a, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
for i = 10, 9 + p do
  redis.call('SET', KEYS[i], id, 'EX', ARGV[8])
end
local status, opened = ARGV[4], ARGV[5]
redis.call('ZADD', KEYS[5], opened, id)
local sets = {open = KEYS[6], acked = KEYS[7], resolved = KEYS[8]}
for name, key in pairs(sets) do
  if name == status then redis.call('ZADD', key, opened, id) else redis.call('ZREM', key, id) end
end
if ARGV[6] == '1' then
  redis.call('SET', KEYS[9], id)
else
  if redis.call('GET', KEYS[9]) == id then redis.call('DEL', KEYS[9]) end
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
  -- forget resolved incidents past retention (their keys have expired), a few at a time
  local old = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', ARGV[9], 'LIMIT', 0, 100)
  for _, old_id in ipairs(old) do
    redis.call('ZREM', KEYS[5], old_id)
    redis.call('ZREM', KEYS[8], old_id)
  end
end
return {'ok', tonumber(redis.call('GET', KEYS[4]) or '0')}
