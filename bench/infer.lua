-- wrk script: POST the same OIP v2 infer body on every request and, when the run ends,
-- print one machine-readable line (latencies in microseconds) for bench/bench.py to parse.
-- BENCH_BODY names the file holding the JSON request body.

local path = os.getenv("BENCH_BODY")
local file = assert(io.open(path, "rb"), "cannot open BENCH_BODY " .. tostring(path))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
    "\"non_2xx\":%d,\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d," ..
    "\"timeouts\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"mean_us\":%.1f," ..
    "\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
