-- Whether the queue still holds a signal of an ordering key numbered below a given one:
-- asked before a signal that waited long for an earlier one goes ahead of it. Handled
-- entries are deleted from the stream, so one found is not applied yet (merely late);
-- none found means the gap will never fill (lost), and waiting longer is pointless.
--
-- KEYS[1]  the queue (stream; fields signal, order, seq)
-- ARGV[1]  the ordering key
-- ARGV[2]  the sequence number: entries of the key numbered below it are looked for
-- ARGV[3]  the most entries looked at, oldest first (a bound on the script's time)
-- Returns  1 when such an entry is queued, 0 when none is among those looked at
local key, below, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local start, seen = '-', 0
while seen < most do
  local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 500)
  if #chunk == 0 then return 0 end
  for _, entry in ipairs(chunk) do
    local fields, order, seq = entry[2], nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'order' then order = fields[i + 1]
      elseif fields[i] == 'seq' then seq = tonumber(fields[i + 1]) end
    end
    if order == key and seq ~= nil and seq < below then return 1 end
  end
  seen = seen + #chunk
  start = '(' .. chunk[#chunk][1]
end
return 0
