-- bench.lua - the wrk script of tests/bench/run: the method and body come
-- from BENCH_METHOD and BENCH_BODY; done() prints one JSON line of figures.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"seconds":%.6f,"status_errors":%d,"socket_errors":%d,' ..
      '"latency_p50_us":%d,"latency_p99_us":%d}\n',
      summary.requests, summary.duration / 1e6, e.status,
      e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
