-- Take one slot of the action budget's sliding window if one is free
-- (Store.spend_budget): the actions older than the window go first.
--
-- KEYS[1]  the budget (sorted set: one member per action taken, by epoch ms)
-- ARGV[1]  now, epoch ms
-- ARGV[2]  the window, ms
-- ARGV[3]  the limit: the most actions in a window
-- ARGV[4]  the member to add (the taker's token and the time)
-- Returns  1 when a slot was taken, 0 when the window is full
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
