-- Set an entry aside in the dead-letter stream (WorkQueue.dead_letter), atomically.
-- The signals of its key that wait behind it must not wait for good: when it was next,
-- the cursor moves past it (and past others dead-lettered early); else its number is
-- remembered as skipped, for the cursor to step over when it gets there.
--
-- KEYS[1]  the queue (stream)
-- KEYS[2]  the dead-letter stream
-- KEYS[3]  the ordering record, when the entry has a place in an ordering key
-- KEYS[4]  its skipped set, likewise
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3]  its payload
-- ARGV[4]  the reason
-- ARGV[5]  deliveries: how many times it was delivered
-- ARGV[6]  now, epoch ms
-- ARGV[7]  the dead-letter stream's cap, entries (approximate: MAXLEN ~)
-- ARGV[8]  the entry's sequence number in its ordering key (0: none)
-- ARGV[9]  the ordering record's TTL, s
-- Returns  1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'entry_id', ARGV[2], 'signal', ARGV[3],
           'reason', ARGV[4], 'deliveries', ARGV[5], 'dead_at', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local seq = tonumber(ARGV[8])
if seq > 0 and #KEYS >= 4 then
  local done = tonumber(redis.call('HGET', KEYS[3], 'done') or '0')
  if seq == done + 1 then
    done = seq
    while redis.call('SREM', KEYS[4], done + 1) == 1 do done = done + 1 end
    redis.call('HSET', KEYS[3], 'done', done)
  elseif seq > done then
    redis.call('SADD', KEYS[4], seq)
    redis.call('EXPIRE', KEYS[4], ARGV[9])
  end
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
return 1
