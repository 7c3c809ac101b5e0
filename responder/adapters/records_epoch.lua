-- Since when the records are complete (Store.records_since, RedisKeys.epoch): the
-- server's run_id changes with every start of a Redis process, so a restart, or a
-- failover to another server, starts anew. INFO in the script: the id read and the epoch
-- moved in one step, whichever replica looks first.
--
-- KEYS[1]  the epoch (hash: run_id, since)
-- ARGV[1]  now, epoch ms: the epoch's start, should it begin now
-- Returns  {since, epoch ms; 1 when this call began it, else 0}
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
local seen = redis.call('HMGET', KEYS[1], 'run_id', 'since')
if seen[1] == run_id and seen[2] then
  return {seen[2], 0}
end
redis.call('HSET', KEYS[1], 'run_id', run_id, 'since', ARGV[1])
return {ARGV[1], 1}
