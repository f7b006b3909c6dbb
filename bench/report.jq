# bench/report.jq: results JSON of bench/run.sh (after stats.jq) -> Markdown.
#   jq -r --arg png NAME.png --arg json NAME.json -f report.jq NAME.json

def rnd($n): if . == null then null else (. * pow(10; $n) | round) / pow(10; $n) end;
def num: if . == null then "–" else tostring end;
# thousands separators for a whole number
def grp: if . == null then "–"
         else (round | tostring | explode | reverse | [recurse(.[3:]; length > 0) | .[0:3]]
               | map(reverse | implode) | reverse | join(",")) end;
def ms: if . == null then "–" else (. / 1000) | (if . < 1 then rnd(3) else rnd(2) end) | tostring end;
def us2: rnd(2) | num;
def pct0: rnd(0) | num;
def rtxt: if . == null then "–" else (rnd(2) | tostring) + "×" end;
def rbare: if . == null then "–" else (rnd(2) | tostring) end;
# "median (min–max)" of a stat object, each formatted with f; one value when
# there is one repetition or no spread
def mr(f): if . == null or (.n // 0) == 0 then "–"
           elif .n == 1 or .min == .max then (.median | f)
           else "\(.median | f) (\(.min | f)–\(.max | f))" end;
# a ratio entry: "ratio of medians · paired median (min–max)"
def rcell($k): if . == null then "–"
               elif .status == "unavailable" then "unavailable"
               elif .status == "n/a" then "n/a"
               elif .status != "ok" then "–"
               else .[$k] as $x
                    | if $x.of_medians == null then "–"
                      elif ($x.paired.n // 0) <= 1 then ($x.of_medians | rtxt)
                      else "\($x.of_medians | rtxt) · \($x.paired.median | rtxt) (\($x.paired.min | rbare)–\($x.paired.max | rbare))" end
               end;

.meta as $m
| .runs as $runs
| .summary as $sum
| .ratios as $rat
| ($m.servers // []) as $servers
| ($servers | map(.name)) as $names_present
| (["floor", "nginx", "h2o", "hyper", "grpcgo"] | map(select(. as $p | $names_present | index([$p])))) as $peers
| ($servers | map(select(.name == "ringd")) | length > 0) as $has_ringd
| $m.scenarios as $scen
| {"h1-c64": "HTTP/1.1 wrk, 64 conns",
   "h1-c64-p16": "HTTP/1.1 wrk, 64 conns, pipeline 16",
   "h1-c256": "HTTP/1.1 wrk, 256 conns",
   "h1-c1024": "HTTP/1.1 wrk, 1024 conns",
   "h1-rate": "HTTP/1.1 h2load, 64 conns, fixed rate",
   "h2-c16-m10": "h2c h2load, -c16 -m10",
   "h2-c4-m100": "h2c h2load, -c4 -m100",
   "tls-h1-c64": "HTTPS/1.1 wrk, 64 conns",
   "tls-h2-c16-m10": "h2 over TLS h2load, -c16 -m10",
   "tls-handshakes": "TLS full handshakes (s_time -new), 1 conn at a time",
   "grpc-c16-m10": "gRPC GetUser over h2c, h2load -d, -c16 -m10"} as $names
| def sname: $names[.] // .;
  def s($sc; $sv): [$sum[] | select(.scenario == $sc and .server == $sv)] | .[0];
  def r($sc; $peer): [$rat[] | select(.scenario == $sc and .peer == $peer)] | .[0];
  def other_pct: if .other_cpu_s == null or (.duration_s // 0) == 0 then null else .other_cpu_s * 100 / .duration_s end;
  def what: {ringd: "`ringd serve --shards 1 --max-conns 8192` on the demo DB",
             nginx: "nginx \($m.versions.nginx), 1 worker, `return 200` with the body",
             h2o: "h2o \($m.versions.h2o), 1 thread, the body from one file",
             floor: "bench/floor: bare io_uring responder, 1 thread, a canned 200 with the body",
             hyper: "bench/peers/hyper: the seed's stack (hyper), `GET /users/{id}` from ringd's DB",
             grpcgo: "bench/peers/grpc-go: grpc-go (Debian's 1.33), GOMAXPROCS=1, the demo records as User messages from memory (gRPC scenarios only)"}[.] // "";

"# ringd benchmark \($m.name)",
"",
"- commit `\($m.commit)`, \($m.date), mode `\($m.mode)`: \($m.reps) round(s) × \($m.duration_s) s per measurement, each on a freshly started server \(if $m.warmup_s > 0 then "after \($m.warmup_s) s of warm-up with the same load" else "without warm-up" end)",
"- \($m.cpu), \($m.online_cpus) CPUs online, kernel \($m.kernel)\(if $m.host then ", clocksource \($m.host.clocksource), THP \($m.host.transparent_hugepage.enabled)" else "" end); server pinned to CPU \($m.server_cpu), load generator to CPU \($m.load_cpu) (more in *Host* below)",
( ["nginx", "h2o", "floor"] | map(select(. as $p | $names_present | index([$p]))) ) as $canned
| "- demo DB of \($m.users) users\(if ($canned | length) > 0 then "; \($canned | join(", ")) answer\(if ($canned | length) == 1 then "s" else "" end) every path with the same \($m.peer_body_bytes)-byte JSON body (ringd's record for user \($m.sample_id // "N/2+1"))" else "" end)",
"- wrk \($m.versions.wrk), h2load \($m.versions.h2load); net.core.somaxconn \($m.somaxconn)",
"- order: rounds; in each, every scenario in turn on every server, one after the other, the server list rotated by one per round (ringd's round k sits next to each peer's round k)",
"- raw figures (every repetition): [\($json)](\($json)); how each figure is measured: [bench/README.md](../README.md)",
"",
( [$runs[] | select((other_pct // 0) > 10)] as $noisy
  | if ($noisy | length) > 0 then
      "> **Warning: the machine was not idle.** In \($noisy | length) of \($runs | length) measurements other work used more than 10% of a CPU (see *Every measurement*): \([$noisy[] | "\(.server) \(.scenario) r\(.round)"] | join(", ")). Treat those figures as noisy.", ""
    else empty end ),
"## Servers",
"",
"| server | what | h2c | TLS | answer to `/users/\($m.sample_id // "N/2+1")` | status |",
"| --- | --- | --- | --- | ---: | --- |",
( $servers[] | "| \(.name) | \(.name | what) | \(if .h2c then "yes" else "no: h2c scenarios n/a" end) | \(if .tls then "yes" else "no: tls-* scenarios n/a" end) | "
    + (if .response_bytes == null then "–" else "\(.response_bytes) bytes" end)
    + (if .same_bytes_as_ringd == true then ", same bytes as ringd" elif .same_bytes_as_ringd == false then ", **differs from ringd**" else "" end)
    + " | \(if .status == "ok" then "measured" else "**\(.status)**: \(.reason // "")" end) |" ),
"",
"![requests/s and p99 per scenario and server, median and range](\($png))",
"",
"## Figures",
"",
"Each cell: the median over the rounds, then (min–max) when they differ. Errors are summed over the rounds.",
"",
"| scenario | server | rounds | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | load-gen CPU % | other CPU % |",
"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
( $scen[] as $sc | $servers[] | select(.status != "unavailable") | .name as $sv | s($sc; $sv) | select(. != null)
  | if .status == "n/a" then "| \($sc | sname) | \($sv) | n/a (\(if ($sc | startswith("grpc-")) then "no gRPC" elif $sv == "grpcgo" then "gRPC only" elif ($sc | startswith("tls-")) then "no TLS" else "no HTTP/2" end)) | | | | | | | | |"
    elif .status == "failed" then "| \($sc | sname) | \($sv) | – | **failed**: \(.problems | join("; ")) | | | | | | | |"
    elif .with_figures == 0 then "| \($sc | sname) | \($sv) | 0 of \(.runs) | **no figures**: \(.problems | join("; ")) | | | | | | | |"
    else "| \($sc | sname) | \($sv) | \(if .with_figures == .runs then "\(.runs)" else "\(.with_figures) of \(.runs)" end) | "
      + "\(.rps | mr(grp)) | \(.p50_us | mr(ms)) | \(.p99_us | mr(ms)) | \(.p999_us | mr(ms)) | \(.errors) | "
      + "\(.server_cpu_us_per_req | mr(us2)) | \(.load_cpu_pct | mr(pct0))"
      + (if (.load_cpu_pct.median // 0) >= 90 then " (saturated)" else "" end)
      + " | \(.other_cpu_pct | mr(pct0)) |"
    end ),
"",
( $m.h1_rate as $rate
  | if $rate == null then empty else
      ([$sum[] | select(.scenario == "h1-rate" and .rps.median != null and .rps.median < 0.95 * $rate.offered_rps) | .server]) as $slow
      | "Fixed rate (`h1-rate`): \($rate.offered_rps | grp) req/s offered, \($rate.connections) connections × `h2load --rps \($rate.per_connection_rps)` each (\($rate.source)); latency from each request's send to its response, no correction for requests held back."
        + (if ($slow | length) > 0 then " **Did not keep up** (median req/s under 95% of the rate): \($slow | join(", "))." else "" end),
        ""
    end ),
"With a saturated load generator the requests/s figure measures the client, not the server: rank by server CPU µs/req there. wrk reports no usable latency percentiles for pipelined runs (see bench/README.md).",
"",
( if $has_ringd and ($servers | any(.name != "ringd" and .status == "ok")) then
  "## Ratios ringd ÷ peer",
  "",
  "Each cell: the ratio of the medians · the paired ratio, median (min–max) over the rounds, where ringd's round k is divided by the peer's round k, measured next to it in time (the steadier figure on a noisy host).",
  "",
  ( ["server CPU µs/req", "server_cpu_us_per_req", "lower is better"],
    ["req/s", "rps", "higher is better"],
    ["p99", "p99_us", "lower is better"],
    ["p99.9", "p999_us", "lower is better"]
    | . as [$title, $k, $better]
    | "### \($title) (\($better))",
      "",
      "| scenario | " + ($peers | map("÷ \(.)") | join(" | ")) + " |",
      "| --- | " + ($peers | map("---:") | join(" | ")) + " |",
      ( $scen[] as $sc
        | ($peers | map(r($sc; .) | rcell($k))) as $cells
        # rows with nothing to compare (pipelined latency, h2c without an h2c peer) are left out
        | select($cells | any(. != "–" and . != "n/a" and . != "unavailable"))
        | "| \($sc | sname) | " + ($cells | join(" | ")) + " |" ),
      "" )
  else empty end ),
( if $has_ringd then
  def verdict: if . == "met" then "met" elif . == "not met" then "**not met**" else "n/a" end;
  "## Targets",
  "",
  "Checked against the ratio of the medians; the paired ratio (median and range over the rounds) is shown beside it.",
  "",
  "| issue | target | measured | paired | status |",
  "| --- | --- | ---: | ---: | --- |",
  ( .targets[]
    | "| \(.issue) | \(.text) | \(if .unit == "%" then (if .measured == null then "–" else "\(.measured | rnd(2))%" end) else (.measured | rtxt) end) | "
      + (if (.paired.n // 0) > 1 then "\(.paired.median | rtxt) (\(.paired.min | rbare)–\(.paired.max | rbare))" else "–" end)
      + " | \(.status | verdict)\(if .note then " (\(.note))" else "" end) |" ),
  ""
  else empty end ),
( .profile as $p
  | if ($p | length) == 0 then empty else
    "## Profile",
    "",
    ( if $p.error then "Instruction counts (\($p.tool)): none, \($p.error | split("\n") | .[0])", "", "```", ($p.error | split("\n") | .[1:][]), "```", ""
      elif $p.phases then
        "Instruction counts (\($p.tool), \($p.server)): \($p.note). Fixed mix, each phase measured alone: `h1` = HTTP/1.1 requests over 8 connections (`h2load --h1 -c8 -n N`), `h2` = h2c over 4 connections × 10 streams (`h2load -c4 -m10 -n N`), random `/users/{id}`.",
        "",
        "| phase | requests | instructions | instructions/request |",
        "| --- | ---: | ---: | ---: |",
        ( $p.phases[] | "| \(.phase) | \(.requests | grp) | \(.instructions | grp) | \(.instructions_per_request | grp) |" ),
        "",
        ( $p.phases[] | "Top functions by own instructions, \(.phase):", "", "```", (.top | rtrimstr("\n")), "```", "" )
      else empty end ),
    ( if $p.perf_record then
        "Sampled CPU time (`perf record -e cpu-clock`, user and kernel, the server at full load: `h1` = wrk -c64, `h2` = h2load -c16 -m10). On a VM without hardware counters, time spent with interrupts off is reported at the point they are re-enabled (e.g. `pvm_irq_enable`).",
        "",
        ( $p.perf_record[] | "Top functions, \(.phase) (\(.seconds) s):", "", "```", (.top | rtrimstr("\n")), "```", "" ),
        ( [$p.perf_record[] | select(.phase == "h1" and .store_share_pct != null)] | .[0] // empty
          | "Store share, h1 phase (\($m.users) users): **\(.store_share_pct)%** of the samples, the sum of liblmdb's and of ringd's `store_*` / `index_*` functions (code inlined into other functions is not counted):",
            "",
            "```",
            (if (.store_samples | length) == 0 then "(no such samples)" else .store_samples[] end),
            "```",
            "" )
      else empty end )
    end ),
( ($m.host // null) as $h
  | if $h == null then empty else
    "## Host",
    "",
    "| | |",
    "| --- | --- |",
    "| CPU | \($h.cpu), \($h.online_cpus) online; server on CPU \($m.server_cpu), load generator on CPU \($m.load_cpu) |",
    "| kernel | \($h.kernel) `\($h.kernel_version)` |",
    "| clocksource | \($h.clocksource) |",
    "| transparent huge pages | enabled `\($h.transparent_hugepage.enabled)`, defrag `\($h.transparent_hugepage.defrag)` |",
    "| net.core.somaxconn | \($h.somaxconn) |",
    "| tools | wrk \($m.versions.wrk), h2load \($m.versions.h2load), nginx \($m.versions.nginx), h2o \($m.versions.h2o), \($m.versions.floor)\(if $m.versions.hyper then ", hyper " + $m.versions.hyper else "" end)\(if $m.hyper_build_s != null then " (built in \($m.hyper_build_s) s)" else "" end) |",
    "",
    "CPU vulnerabilities (`/sys/devices/system/cpu/vulnerabilities/*`):",
    "",
    "| name | value |",
    "| --- | --- |",
    ( $h.vulnerabilities | to_entries[] | "| \(.key) | \(.value) |" ),
    ""
    end ),
"## Every measurement",
"",
"<details><summary>\($runs | length) measurements in the order they ran</summary>",
"",
"Steal: CPU seconds the host took from the VM during the measurement kept (attempts: a measurement with more than \($m.steal_max_pct // 2)% of the CPUs stolen is taken again, at most twice).",
"",
"| # | t s | round | scenario | server | req/s | p99 ms | server CPU µs/req | load-gen CPU % | other CPU % | steal s (attempts) |",
"| ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
( $runs | sort_by(.seq // 0)[]
  | "| \(.seq // "–") | \(.t_s // "–") | \(.round // "–") | \(.scenario) | \(.server) | "
    + (if (.requests // 0) > 0 then "\(.rps | grp) | \(.p99_us | ms) | \(.server_cpu_us_per_req | us2) | \(.load_cpu_pct | pct0) | \(other_pct | pct0) |"
    + " \(.steal_s // "–")\(if (.attempts // 1) > 1 then " (\(.attempts))" else "" end) |"
       else "no figures (\(if .failed_to_start then "did not start" elif .server_died then "exited" else "see the load generator's output" end)) | | | | | |" end) ),
"",
"</details>",
"",
"## Commands",
"",
"Exactly as run (load generators under `/usr/bin/time`, everything pinned with `taskset`):",
"",
"<details><summary>\(.commands | length) commands</summary>",
"",
"```",
(.commands[]),
"```",
"",
"</details>"
