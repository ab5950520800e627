-- wrk script: POST /v1/events with NDJSON batches of BATCH events (default
-- 1,000), every event id unique (thread, request, index), spread over
-- CUSTOMERS customers and eight weeks of timestamps.
local batch = tonumber(os.getenv("BATCH") or "1000")
local customers = tonumber(os.getenv("CUSTOMERS") or "10000")
local types = {"app_open", "session_start", "page_view"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  n = 0
  math.randomseed(tid * 104729)
end

request = function()
  n = n + 1
  local lines = {}
  for i = 1, batch do
    local t = 1790000000 - math.random(0, 8 * 7 * 86400)
    lines[i] = string.format(
      '{"event_id":"w%d-%d-%d","customer_id":"load-%05d","type":"%s","timestamp":"%s"}',
      tid, n, i, math.random(0, customers - 1), types[(i % 3) + 1], os.date("!%Y-%m-%dT%H:%M:%SZ", t))
  end
  return wrk.format(nil, "/v1/events", nil, table.concat(lines, "\n"))
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d events_per_s=%.0f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, summary.requests * batch / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
