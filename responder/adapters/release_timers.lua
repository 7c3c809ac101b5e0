-- Move due timers onto the queue, each atomically with its removal; and queue a follow-up
-- of each incident whose check came while events of it are still not followed up (their
-- worker died before it did). The check is done then: that follow-up is an entry like any
-- other (tried again, dead-lettered in the end), and the incident's next write checks
-- anew. (Store.release_due_timers)
--
-- KEYS[1]  the timers (sorted set: timer JSON by when due, epoch ms)
-- KEYS[2]  the queue (stream)
-- KEYS[3]  the follow-up check (sorted set: incident ids by when to check, epoch ms)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  at most this many timers, and this many checks
-- ARGV[3]  now, ISO 8601 (the follow-up signal's due_at and received_at)
-- ARGV[4]  the incident key prefix (an incident's keys are derived from its id)
-- Returns  how many timers and checks were due
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, timer in ipairs(due) do
  if redis.call('ZREM', KEYS[1], timer) == 1 then
    redis.call('XADD', KEYS[2], '*', 'signal', timer)
  end
end
local late = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(late) do
  local key = ARGV[4] .. id
  local processed = tonumber(redis.call('GET', key .. ':processed') or '0')
  local waiting = false
  for _, event in ipairs(redis.call('LRANGE', key .. ':timeline', processed, -1)) do
    if not string.find(event, '"kind":"notification.', 1, true) then
      waiting = true
      break
    end
  end
  if not waiting then
    redis.call('ZREM', KEYS[3], id)
  else
    local timer = cjson.encode({source = 'timer', kind = 'follow_up', incident_id = id,
                                step = 'unprocessed', due_at = ARGV[3], received_at = ARGV[3]})
    redis.call('XADD', KEYS[2], '*', 'signal', timer)
    redis.call('ZREM', KEYS[3], id)
  end
end
return #due + #late
