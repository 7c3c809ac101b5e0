-- The action ledger's records (ActionLedger: claim_effect, note_effect, finish_effect,
-- release_effect, delivery_state, save_delivery_state), each operation one call.
--
-- Where a record lives: the effect records and delivery states of an incident are the
-- fields of one hash, its ledger (RedisKeys.ledger): field <suffix> for the effect
-- <incident>:<suffix>, field delivery:<sink> for a sink's delivery state. The ledger lives
-- as the incident does: no TTL while it is active; incident_write.lua gives it the
-- incident's TTL when it resolves, and a record written after that gives it what the
-- incident has left. An effect key that names no incident has a hash of its own
-- (RedisKeys.effect, field 'effect'); that hash, or the ledger of an incident that is gone,
-- gets ARGV[3] seconds when it is written without a TTL.
--
-- KEYS[1]    the record's hash
-- KEYS[2]    where the layout before the ledger kept the record (RedisKeys.effect,
--            RedisKeys.delivery; the same key as KEYS[1] for a key naming no incident): a
--            record found there is moved into KEYS[1] when it is next touched (an effect
--            claimed, noted, finished or released; a delivery state saved)
-- KEYS[3]    the incident, when the key names one
-- ARGV[1]    the operation: claim, note, finish, release, save or read
-- ARGV[2]    the record's field
-- ARGV[3]    TTL of a record of no incident, s
-- ARGV[4..]  the operation's own:
--              claim    ARGV[4] the owner
--                       ARGV[5] now, epoch ms
--                       ARGV[6] the lease, ms
--              note     ARGV[4] the owner
--                       ARGV[5] the data (JSON)
--              finish   ARGV[4] the data: what it did (JSON)
--              release  ARGV[4] the owner
--              save     ARGV[4] a sink's delivery state (JSON)
--              read     none
-- Returns    claim: {status, data, claimed}, status start | done | busy | recover;
--            note, release: 1 when noted (released), else 0; finish, save: 1;
--            read: the delivery state, or nil

-- An effect record is one field, one string (a field costs its entry: few, short fields;
-- the hash is a hashtable once a value is longer than hash-max-listpack-value, 64 bytes,
-- as a Slack message's record and a delivery state are):
--   d<claimed>,<data>                          done
--   a<claimed>,<lease>,<#owner>:<owner><data>  applying: held by owner until lease
-- claimed: epoch ms of the first claim ('' when unknown: written before it was kept);
-- lease: epoch ms; data: the JSON the owner noted, or what the effect did. A done record
-- keeps no owner or lease: nobody holds it any more.
local home, old, incident = KEYS[1], KEYS[2], KEYS[3]
local op, field, fallback_s = ARGV[1], ARGV[2], ARGV[3]

local function applying(claimed, lease, owner, data)
  return 'a' .. claimed .. ',' .. lease .. ',' .. #owner .. ':' .. owner .. data
end

local function decode(value)
  local state, claimed, rest = string.match(value, '^(%a)(%d*),(.*)$')
  if state == 'd' then return {done = true, claimed = claimed, data = rest} end
  local lease, n, held = string.match(rest, '^(%d+),(%d+):(.*)$')
  n = tonumber(n)
  return {done = false, claimed = claimed, lease = lease,
          owner = string.sub(held, 1, n), data = string.sub(held, n + 1)}
end

-- After a write: the incident's lifetime (none while it is active, what it has left once
-- it is resolved); with no incident, a hash without a TTL gets the fallback.
local function follow_incident()
  local ttl = -2
  if incident then ttl = redis.call('PTTL', incident) end
  if ttl == -2 then
    if redis.call('PTTL', home) == -1 then redis.call('EXPIRE', home, fallback_s) end
  elseif ttl == -1 then
    redis.call('PERSIST', home)
  else
    redis.call('PEXPIRE', home, ttl)
  end
end

-- The effect record, or nil; one the layout before the ledger kept (a hash of its own:
-- state, owner, lease, claimed, data) is moved into the ledger.
local function load()
  local value = redis.call('HGET', home, field)
  if value then return value end
  local state = redis.call('HGET', old, 'state')
  if not state then return nil end
  local f = redis.call('HMGET', old, 'owner', 'lease', 'claimed', 'data')
  local claimed, data = f[3] or '', f[4] or '{}'
  if state == 'done' then
    value = 'd' .. claimed .. ',' .. data
  else
    value = applying(claimed, f[2] or '0', f[1] or '', data)
  end
  local ttl = redis.call('PTTL', old)
  redis.call('DEL', old)
  redis.call('HSET', home, field, value)
  -- in place (a key naming no incident): it keeps its TTL
  if old == home and ttl > 0 then redis.call('PEXPIRE', home, ttl) end
  follow_incident()
  return value
end

-- claim: ARGV[4] owner   ARGV[5] now, ms   ARGV[6] lease, ms
-- Returns {status, data, claimed}: status start | done | busy | recover.
if op == 'claim' then
  local owner, now, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  local value = load()
  if not value then
    redis.call('HSET', home, field, applying(now, now + lease, owner, '{}'))
    follow_incident()
    return {'start', '{}', tostring(now)}
  end
  -- a record written before it followed its incident (it had a TTL of its own) does now
  follow_incident()
  local r = decode(value)
  if r.done then return {'done', r.data, r.claimed} end
  if tonumber(r.lease) > now then return {'busy', r.data, r.claimed} end
  redis.call('HSET', home, field, applying(r.claimed, now + lease, owner, r.data))
  return {'recover', r.data, r.claimed}
end

-- note: ARGV[4] owner   ARGV[5] data. Only while the owner holds it. Returns 1 if noted.
if op == 'note' then
  local value = load()
  if not value then return 0 end
  local r = decode(value)
  if r.done or r.owner ~= ARGV[4] then return 0 end
  redis.call('HSET', home, field, applying(r.claimed, r.lease, r.owner, ARGV[5]))
  return 1
end

-- finish: ARGV[4] data. Done, with what it did (a record never claimed is written too).
if op == 'finish' then
  local value = load()
  local claimed = ''
  if value then claimed = decode(value).claimed end
  redis.call('HSET', home, field, 'd' .. claimed .. ',' .. ARGV[4])
  follow_incident()
  return 1
end

-- release: ARGV[4] owner. An unfinished claim the owner holds goes. Returns 1 if it went.
if op == 'release' then
  local value = load()
  if not value then return 0 end
  local r = decode(value)
  if r.done or r.owner ~= ARGV[4] then return 0 end
  return redis.call('HDEL', home, field)
end

-- save: ARGV[4] a sink's delivery state (JSON); the one the old layout kept goes.
if op == 'save' then
  redis.call('HSET', home, field, ARGV[4])
  if old ~= home then redis.call('DEL', old) end
  follow_incident()
  return 1
end

-- read: a sink's delivery state, or the one the old layout kept, or nil.
if op == 'read' then
  return redis.call('HGET', home, field) or redis.call('GET', old)
end

return redis.error_reply('unknown ledger operation ' .. tostring(op))
