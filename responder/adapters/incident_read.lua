-- Read phase of Store.mutate_incidents, for one item: the incident its lookups find, with
-- what the mutators need. The timeline length is the incident's version: every change
-- appends at least one event. All keys share one hash tag, so the keys derived here sit
-- in the slot of KEYS. Runs batched (batch_driver.lua): KEYS and ARGV are one call's.
--
-- KEYS[1..n]      one key per lookup: an index key (holds an incident id), or for a
--                 lookup by id the incident key itself
-- KEYS[n+1..n+m]  the dedupe records of the signals being handled
-- KEYS[n+m+1]     the ordering record of the item's key, when it has one
-- ARGV[1]         n, the number of lookups
-- ARGV[2]         m, the number of signal records
-- ARGV[3]         the incident key prefix
-- ARGV[4..n+3]    per lookup: "index" or "id"
-- ARGV[n+4..]     fingerprints of the alerts whose records are wanted
-- Returns         {the ordering cursor ("done", 0 when none), m records of 5 values
--                 (status and order observed, status, order and incident handled), id,
--                 incident json, timeline length, one alert json per fingerprint}; ""
--                 for what is missing, and the list ends after the signal records when
--                 no lookup finds an incident
local n, m, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {0}
if #KEYS > n + m then
  out[1] = tonumber(redis.call('HGET', KEYS[n + m + 1], 'done') or '0')
end
for i = n + 1, n + m do
  local record = redis.call('HMGET', KEYS[i], 'status', 'order', 'handled_status',
                           'handled_order', 'handled_incident')
  for j = 1, 5 do out[#out + 1] = record[j] or '' end
end
local id = false
for i = 1, n do
  if ARGV[3 + i] == 'id' then
    if redis.call('EXISTS', KEYS[i]) == 1 then
      id = string.sub(KEYS[i], #prefix + 1)
      break
    end
  else
    local found = redis.call('GET', KEYS[i])
    if found then
      id = found
      break
    end
  end
end
if not id then return out end
local key = prefix .. id
local raw = redis.call('GET', key)
if not raw then return out end
out[#out + 1] = id
out[#out + 1] = raw
out[#out + 1] = redis.call('LLEN', key .. ':timeline')
for i = n + 4, #ARGV do
  out[#out + 1] = redis.call('HGET', key .. ':alerts', ARGV[i]) or ''
end
return out
