-- wrk load for bench/intake.py: Alertmanager v4 webhooks with exactly one alert each.
--
-- 90% of requests carry one of 1,000 "hot" fingerprints (repeats once seen); 10% carry a
-- fingerprint never sent before (a new signal, which the service queues). Each thread stops
-- itself once it has had its share of the total; the runner stops wrk when every thread
-- said so on stderr, and done() prints one JSON line for it on stdout.
--
--   wrk -t2 -c32 -d300s --latency -s bench/intake_load.lua URL -- TOTAL THREADS NONCE
--
-- TOTAL: requests in all, THREADS: wrk's -t, NONCE: 1..4095, different for every run
-- against the same store, so that "fresh" fingerprints are fresh.

local ffi = require("ffi") -- wrk embeds LuaJIT

local HOT_ALERTS = 1000
local FRESH_RATIO = 0.10
local THREAD_DONE = "intake-load: thread done"
local RESULT = "intake-load-result: "

-- One alert, firing since a fixed time: a hot fingerprint sent again is a plain repeat.
local BODY = table.concat({
  '{"receiver":"responder","status":"firing","alerts":[{"status":"firing",',
  '"labels":{"alertname":"%s","service":"%s","namespace":"bench","severity":"%s"},',
  '"annotations":{"summary":"bench alert %s"},',
  '"startsAt":"2026-11-29T03:02:11.482Z","endsAt":"0001-01-01T00:00:00Z",',
  '"generatorURL":"http://prometheus.bench.invalid:9090/graph","fingerprint":"%s"}],',
  '"groupLabels":{"alertname":"%s","service":"%s"},',
  '"commonLabels":{"alertname":"%s","service":"%s","namespace":"bench"},',
  '"commonAnnotations":{},"externalURL":"http://alertmanager.bench.invalid:9093",',
  '"version":"4","groupKey":"{}/{}:{alertname=\\"%s\\", service=\\"%s\\"}",',
  '"truncatedAlerts":0}',
})

ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } intake_load_timespec;
  int clock_gettime(int clock_id, intake_load_timespec *tp);
]])
local timespec = ffi.new("intake_load_timespec")
local CLOCK_MONOTONIC = 1

local function now_s()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- Main state: number the threads and keep them for done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

-- Thread states. Globals, so that done() can read them with thread:get().
id = 0
share = 0
responses = 0
non_2xx = 0
first_sent_s = 0
last_response_s = 0
local fresh_sent = 0
local nonce = 0

function init(args)
  local total, thread_count = tonumber(args[1]), tonumber(args[2])
  nonce = tonumber(args[3])
  if not (total and thread_count and nonce) then
    error("usage: wrk ... -s intake_load.lua URL -- TOTAL THREADS NONCE")
  end
  share = math.floor(total / thread_count)
  if id < total % thread_count then
    share = share + 1
  end
  math.randomseed(nonce * 256 + id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local k, fingerprint
  if math.random() < FRESH_RATIO then
    k = fresh_sent
    fingerprint = string.format("f%03x%02x%010x", nonce, id, fresh_sent)
    fresh_sent = fresh_sent + 1
  else
    k = math.random(0, HOT_ALERTS - 1)
    fingerprint = string.format("%016x", k)
  end
  if first_sent_s == 0 then
    first_sent_s = now_s()
  end
  -- 100 incident groups (alertname x service), as a handful of real services would make
  local alertname = "BenchAlert" .. (k % 50)
  local service = "bench-svc-" .. (k % 20)
  local severity = (k % 3 == 0) and "critical" or "warning"
  local body = string.format(
    BODY,
    alertname, service, severity, fingerprint, fingerprint,
    alertname, service, alertname, service, alertname, service
  )
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  responses = responses + 1
  last_response_s = now_s()
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
  if responses == share then
    io.stderr:write(THREAD_DONE, "\n")
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local non2xx, first, last = 0, math.huge, 0
  for _, thread in ipairs(threads) do
    non2xx = non2xx + thread:get("non_2xx")
    local t0, t1 = thread:get("first_sent_s"), thread:get("last_response_s")
    if t0 > 0 and t0 < first then
      first = t0
    end
    if t1 > last then
      last = t1
    end
  end
  local window_s = last > first and last - first or 0
  local e = summary.errors
  io.write(RESULT, string.format(
    '{"requests":%d,"window_s":%.6f,"wrk_duration_s":%.6f,"non_2xx":%d,'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"mean":%.1f,"max":%.0f}}\n',
    summary.requests, window_s, summary.duration / 1e6, non2xx,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max
  ))
end
