-- wrk script: POST /v1/decisions for a random customer of the simulated
-- population (sim-00000 .. sim-<CUSTOMERS-1>), 7-day window, no quiet hours.
local customers = tonumber(os.getenv("CUSTOMERS") or "1000")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(seed * 7919)
end

request = function()
  local id = string.format("sim-%05d", math.random(0, customers - 1))
  local body = '{"customer_id":"' .. id .. '","quiet_hours":null}'
  return wrk.format(nil, "/v1/decisions", nil, body)
end

-- Non-2xx answers are counted by wrk ("Non-2xx or 3xx responses").
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d errors=%d non2xx_in_status=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
