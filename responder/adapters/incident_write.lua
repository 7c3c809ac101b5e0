-- Write phase of Store.mutate_incidents, for one incident: compare, then write it all
-- (incident, events, alerts, indexes, the signals' handled marks, the ordering cursor).
-- Runs batched (batch_driver.lua): KEYS and ARGV are one call's. Below, the counts p, e
-- and q are ARGV[10], ARGV[11] and ARGV[15]; w is 1 with a cap (ARGV[16] > 0), else 0;
-- r is the number of signal records, the KEYS left.
--
-- KEYS[1]                the incident
-- KEYS[2]                its timeline
-- KEYS[3]                its alerts hash
-- KEYS[4]                its processed cursor
-- KEYS[5]                all incidents (sorted set)
-- KEYS[6]                open incidents (sorted set)
-- KEYS[7]                acked incidents (sorted set)
-- KEYS[8]                resolved incidents (sorted set)
-- KEYS[9]                the group index
-- KEYS[10]               incidents whose events are not all followed up yet (sorted set,
--                        by when to check that they were: see RedisKeys.follow_ups)
-- KEYS[11..10+p]         PagerDuty index keys
-- KEYS[11+p..10+p+q]     index keys of further groups it answers to (an alert storm's:
--                        those it collects), to set while active, to free once resolved
-- KEYS[11+p+q]           with a cap: the pack's window of new incidents (sorted set)
-- KEYS[11+p+q+w..]       dedupe records of the signals applied (marked handled)
-- KEYS[#KEYS-1]          with an ordering cursor to advance (ARGV[12]): the ordering record
-- KEYS[#KEYS]            likewise: its skipped set
-- ARGV[1]                expected timeline length (-1: a new incident)
-- ARGV[2]                incident id
-- ARGV[3]                incident json
-- ARGV[4]                status
-- ARGV[5]                opened-at, epoch ms
-- ARGV[6]                "1" when active
-- ARGV[7]                TTL of a resolved incident, s
-- ARGV[8]                TTL of PagerDuty index keys, s
-- ARGV[9]                forget resolved incidents opened before this, epoch ms
-- ARGV[10]               p, the number of PagerDuty index keys
-- ARGV[11]               e, the number of events
-- ARGV[12]               the ordering cursor to advance to ("0": none; else the last two
--                        KEYS are the ordering record and its skipped set)
-- ARGV[13]               TTL of the ordering record, s
-- ARGV[14]               when to check that the events written are followed up, epoch ms
--                        (0: they need none: what a notification sink did is told by the
--                        sinks themselves)
-- ARGV[15]               q, the number of further groups' index keys
-- ARGV[16]               the cap of new incidents in the window (0: this write opens none
--                        that counts)
-- ARGV[17]               the window, ms
-- ARGV[18]               now, epoch ms
-- ARGV[19]               "" or the SHA-1 of the incident JSON this write was made on (a
--                        write chained on another of the same round: that one must have
--                        been made)
-- ARGV[20..19+e]         the e events (JSON)
-- ARGV[20+e..19+e+2r]    per signal record, two: the status and the order (ms) handled
-- ARGV[20+e+2r..]        pairs of alert fingerprint and alert json, to the end
-- Returns                {"conflict"} when someone else wrote first, {"capped"} when the
--                        pack opened its cap of incidents within the window already
--                        (nothing written), else {"ok", processed cursor}
local expected = tonumber(ARGV[1])
local id = ARGV[2]
if expected == -1 then
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end
  local owner = redis.call('GET', KEYS[9])
  if owner and owner ~= id then return {'conflict'} end
elseif redis.call('LLEN', KEYS[2]) ~= expected then
  return {'conflict'}
end
if ARGV[19] ~= '' and redis.sha1hex(redis.call('GET', KEYS[1]) or '') ~= ARGV[19] then
  return {'conflict'}
end
local p, e, q = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[15])
local first_record = 11 + p + q
local cap = tonumber(ARGV[16])
if cap > 0 then
  -- a sliding window across every replica, counted only by writes that are made
  local window, now = KEYS[11 + p + q], tonumber(ARGV[18])
  first_record = first_record + 1
  redis.call('ZREMRANGEBYSCORE', window, '-inf', now - tonumber(ARGV[17]))
  if redis.call('ZCARD', window) >= cap then return {'capped'} end
  redis.call('ZADD', window, now, id)
  redis.call('PEXPIRE', window, ARGV[17])
end
local advance = tonumber(ARGV[12])
local last_record = #KEYS
if advance > 0 then
  last_record = #KEYS - 2
  -- the ordering cursor only moves forward, and steps over numbers dead-lettered early
  local ordering, skipped = KEYS[#KEYS - 1], KEYS[#KEYS]
  local done = tonumber(redis.call('HGET', ordering, 'done') or '0')
  if advance > done then done = advance end
  while redis.call('SREM', skipped, done + 1) == 1 do done = done + 1 end
  redis.call('HSET', ordering, 'done', done)
  redis.call('EXPIRE', ordering, ARGV[13])
end
redis.call('SET', KEYS[1], ARGV[3])
for i = 20, 19 + e do
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
-- the worker follows its events up next; should it die first, the check finds them
if tonumber(ARGV[14]) > 0 then redis.call('ZADD', KEYS[10], ARGV[14], id) end
local a = 20 + e
for i = first_record, last_record do
  -- only on a live record: one that expired is not brought back without its TTL
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'handled_status', ARGV[a], 'handled_order', ARGV[a + 1],
               'handled_incident', id)
  end
  a = a + 2
end
for i = a, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
for i = 11, 10 + p do
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
  for i = 11 + p, 10 + p + q do redis.call('SET', KEYS[i], id) end
  -- a resolved incident opened again (flapping) lives while active again, as before
  if redis.call('PTTL', KEYS[2]) > 0 then
    for i = 2, 4 do redis.call('PERSIST', KEYS[i]) end
    redis.call('PERSIST', KEYS[1] .. ':ledger')
  end
else
  if redis.call('GET', KEYS[9]) == id then redis.call('DEL', KEYS[9]) end
  for i = 11 + p, 10 + p + q do
    if redis.call('GET', KEYS[i]) == id then redis.call('DEL', KEYS[i]) end
  end
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
  -- its ledger, effect records and delivery states (RedisKeys.ledger; the key is derived
  -- like incident_read.lua's, in the incident's slot), expires with it
  redis.call('EXPIRE', KEYS[1] .. ':ledger', ARGV[7])
  -- forget resolved incidents past retention (their keys have expired), a few at a time;
  -- one opened before the horizon but resolved since is still kept: it stays listed
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #id)
  local old = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', ARGV[9], 'LIMIT', 0, 100)
  for _, old_id in ipairs(old) do
    if redis.call('EXISTS', prefix .. old_id) == 0 then
      redis.call('ZREM', KEYS[5], old_id)
      redis.call('ZREM', KEYS[8], old_id)
    end
  end
end
return {'ok', tonumber(redis.call('GET', KEYS[4]) or '0')}
