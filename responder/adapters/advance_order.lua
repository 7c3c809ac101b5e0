-- Move an ordering cursor forward (never back), over the numbers dead-lettered early: for
-- the signals of an item that wrote no incident (an incident write moves it itself).
--
-- KEYS[1]  the ordering record (hash; field done)
-- KEYS[2]  its skipped set
-- ARGV[1]  the sequence number applied
-- ARGV[2]  the ordering record's TTL, s
-- Returns  the cursor (done) after the move
local done = tonumber(redis.call('HGET', KEYS[1], 'done') or '0')
local to = tonumber(ARGV[1])
if to > done then done = to end
while redis.call('SREM', KEYS[2], done + 1) == 1 do done = done + 1 end
redis.call('HSET', KEYS[1], 'done', done)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return done
