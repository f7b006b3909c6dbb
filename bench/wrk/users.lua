-- bench/wrk/users.lua: GET /users/{id} with uniformly random ids.
--   env WRK_USERS=1000000 WRK_DEPTH=1 wrk -t1 -c64 -d10s -s users.lua http://127.0.0.1:29080
-- WRK_USERS: ids are drawn from 1..WRK_USERS.
-- WRK_DEPTH: requests per write; > 1 pipelines that many requests in one write.
-- WRK_POOL: how many requests are prepared in init() and replayed (see below).
-- Settings come from the environment, not script arguments, because wrk
-- runs done() in a Lua state where init() was never called.
-- done() prints one line "WRKJSON {...}" that run.sh parses.
-- Note: with WRK_DEPTH > 1 wrk records one latency sample per batch (from the
-- write until the last of its responses), not one per request.

local users = tonumber(os.getenv("WRK_USERS")) or 1000000
local depth = tonumber(os.getenv("WRK_DEPTH")) or 1
-- WRK_POOL: requests prepared before the run (default 1,048,576), replayed in
-- order and then again from the start. Formatting a request in Lua costs the
-- load generator more than answering it costs a fast server: with request()
-- building every batch, one wrk thread topped out near 385,000 req/s pipelined
-- and set the pace of the fastest servers. A prepared pool makes request() one
-- table read; a pool as large as the user base keeps the ids as spread over
-- the store as drawing them per request did.
local pool_requests = tonumber(os.getenv("WRK_POOL")) or 1048576

local pool, npool, next_i = {}, 0, 0

function init(args)
   -- fixed seed: every server gets the same id sequence
   math.randomseed(4242)
   npool = math.max(1, math.ceil(pool_requests / depth))
   local batch = {}
   for b = 1, npool do
      for i = 1, depth do
         batch[i] = wrk.format("GET", "/users/" .. math.random(users))
      end
      pool[b] = table.concat(batch, "", 1, depth)
   end
end

function request()
   next_i = next_i % npool + 1
   return pool[next_i]
end

-- Latency percentiles: wrk corrects its histogram for coordinated omission
-- before done() runs (stats_correct in wrk.c adds, for each sample n >= 2E,
-- copies at n-E, n-2E, ... with E = runtime / (requests / connections)), and
-- Debian's wrk 4.1 gives Lua no access to the raw histogram. Without
-- pipelining that gives wrk's usual (--latency) figures. With pipelining E
-- is DEPTH times too small, the copies land below the recorded minimum and
-- wrk's percentile() returns 0 or nonsense: run.sh reports no percentiles
-- for pipelined runs.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"depth":%d,"lat_min_us":%d,"lat_max_us":%d,' ..
      '"lat_p50_us":%d,"lat_p99_us":%d,"lat_p999_us":%d}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      depth, latency.min, latency.max,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
