-- The incident, its processed cursor and the timeline events from the cursor on, read in
-- one step (Store.unprocessed).
--
-- KEYS[1]  the incident
-- KEYS[2]  its processed cursor (string)
-- KEYS[3]  its timeline (list)
-- ARGV     none
-- Returns  {the incident json (nil when gone), the cursor (0 when unset), the events from
--          the cursor on}
local processed = tonumber(redis.call('GET', KEYS[2]) or '0')
return {redis.call('GET', KEYS[1]), processed, redis.call('LRANGE', KEYS[3], processed, -1)}
