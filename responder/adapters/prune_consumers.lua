-- Delete the consumers of the queue's group that hold nothing and were idle long enough,
-- atomically (WorkQueue.prune_consumers): a consumer that takes an entry between a look
-- and a delete would lose it from the group's pending list.
--
-- KEYS[1]    the queue (stream)
-- ARGV[1]    the consumer group
-- ARGV[2]    idle at least this long, ms
-- ARGV[3..]  only these consumer names (none: any)
-- Returns    how many consumers went
local only = {}
for i = 3, #ARGV do only[ARGV[i]] = true end
local gone = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2])
     and (#ARGV < 3 or only[info['name']]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone = gone + 1
  end
end
return gone
