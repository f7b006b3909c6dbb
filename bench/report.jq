# bench/report.jq: results JSON of bench/run.sh -> Markdown.
#   jq -r --arg png NAME.png --arg json NAME.json -f report.jq NAME.json

def rnd($n): if . == null then null else (. * pow(10; $n) | round) / pow(10; $n) end;
def num: if . == null then "–" else tostring end;
# thousands separators for a whole number
def grp: if . == null then "–"
         else (round | tostring | explode | reverse | [recurse(.[3:]; length > 0) | .[0:3]]
               | map(reverse | implode) | reverse | join(",")) end;
def ms: if . == null then "–" else (. / 1000) | (if . < 1 then rnd(3) else rnd(2) end) | tostring end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else ($a / $b) end;
# CPU used by neither server nor load generator, in % of one CPU
def noise: if .other_cpu_s == null or (.duration_s // 0) == 0 then null else .other_cpu_s * 100 / .duration_s end;
def rtxt: if . == null then "–" else (rnd(2) | tostring) + "×" end;

.meta as $m
| .runs as $runs
| ([$runs[].server]) as $ran
| (["ringd", "nginx", "h2o", "floor", "hyper"] | map(select(. as $s | $ran | index([$s])))) as $present
| ["h1-c64", "h1-c64-p16", "h1-c256", "h1-c1024", "h2-c16-m10", "h2-c4-m100"] as $order
| ([$runs[].scenario]) as $have
| [$order[] | select(. as $s | $have | index([$s]))] as $scen
| {"h1-c64": "HTTP/1.1 wrk, 64 conns",
   "h1-c64-p16": "HTTP/1.1 wrk, 64 conns, pipeline 16",
   "h1-c256": "HTTP/1.1 wrk, 256 conns",
   "h1-c1024": "HTTP/1.1 wrk, 1024 conns",
   "h2-c16-m10": "h2c h2load, -c16 -m10",
   "h2-c4-m100": "h2c h2load, -c4 -m100"} as $names
| def run($sc; $sv): [$runs[] | select(.scenario == $sc and .server == $sv)] | .[0];
  def fig($sc; $sv; f): (run($sc; $sv) // {}) | f;

"# ringd benchmark \($m.name)",
"",
"- commit `\($m.commit)`, \($m.date), mode `\($m.mode)`, \($m.duration_s) s per scenario",
"- \($m.cpu), \($m.online_cpus) CPUs online, kernel \($m.kernel); server pinned to CPU \($m.server_cpu), load generator to CPU \($m.load_cpu)",
"- demo DB of \($m.users) users; peers answer every path with the same \($m.peer_body_bytes)-byte JSON body",
"- wrk \($m.versions.wrk), h2load \($m.versions.h2load), nginx \($m.versions.nginx) (1 worker), h2o \($m.versions.h2o) (1 thread); ringd with `--shards 1`; net.core.somaxconn \($m.somaxconn)",
"- servers measured: \($present | join(", ")); raw figures: [\($json)](\($json)); how each figure is measured: [bench/README.md](../README.md)",
"",
( [$runs[] | select((noise // 0) > 10)] as $noisy
  | if ($noisy | length) > 0 then
      "> **Warning: the machine was not idle.** In \($noisy | length) of \($runs | length) runs other work used more than 10% of a CPU (column *other CPU %*): \([$noisy[] | "\(.server) \(.scenario)"] | join(", ")). Treat those rows as noisy and rerun on an idle machine.", ""
    else empty end ),
"![requests/s and p99 per scenario and server](\($png))",
"",
"## Figures",
"",
"| scenario | server | req/s | p50 ms | p99 ms | p99.9 ms | errors (socket + non-2xx) | server CPU µs/req | load-gen CPU % | other CPU % |",
"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
( $scen[] as $sc | $present[] as $sv | run($sc; $sv) | select(. != null)
  | "| \($names[$sc] // $sc) | \($sv) | \(.rps | grp) | \(.p50_us | ms) | \(.p99_us | ms) | \(.p999_us | ms) | "
    + (if .requests == null then "no figures" else "\(.errors // 0) (\(.errors_socket // 0) + \(.errors_status // 0))" end)
    + " | \(.server_cpu_us_per_req | rnd(2) | num) | \(.load_cpu_pct | rnd(0) | num)"
    + (if (.load_cpu_pct // 0) >= 90 then " (saturated)" else "" end)
    + " | \(noise | rnd(0) | num) |" ),
"",
( ($m.servers // []) | map(select(.h2c == false and .status == "ok") | .name) as $h1only
  | if ($h1only | length) > 0 then "\($h1only | join(" and ")) \(if ($h1only | length) == 1 then "speaks" else "speak" end) no HTTP/2: their h2c rows are n/a (not run).", "" else empty end ),
( ($m.servers // [])[] | select(.status != "ok") | "**\(.name): \(.status)**: \(.reason)", "" ),
"With a saturated load generator the requests/s figure measures the client, not the server: rank by server CPU µs/req there. wrk reports no usable latency percentiles for pipelined runs (see bench/README.md).",
"",
( if ($present | index("ringd")) and (($present | index("nginx")) or ($present | index("h2o"))) then
  "## Ratios ringd / peer",
  "",
  "| scenario | req/s ÷ nginx | req/s ÷ h2o | p99 ÷ nginx | p99 ÷ h2o | CPU/req ÷ nginx | CPU/req ÷ h2o |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ( $scen[] as $sc
    | [ ratio(fig($sc; "ringd"; .rps); fig($sc; "nginx"; .rps)),
        ratio(fig($sc; "ringd"; .rps); fig($sc; "h2o"; .rps)),
        ratio(fig($sc; "ringd"; .p99_us); fig($sc; "nginx"; .p99_us)),
        ratio(fig($sc; "ringd"; .p99_us); fig($sc; "h2o"; .p99_us)),
        ratio(fig($sc; "ringd"; .server_cpu_us_per_req); fig($sc; "nginx"; .server_cpu_us_per_req)),
        ratio(fig($sc; "ringd"; .server_cpu_us_per_req); fig($sc; "h2o"; .server_cpu_us_per_req)) ]
    | "| \($names[$sc] // $sc) | " + (map(rtxt) | join(" | ")) + " |" ),
  "",
  "Higher is better for req/s; lower is better for p99 and CPU/req.",
  ""
  else empty end ),
( if $present | index("ringd") then
  def verdict(c): if c == null then "n/a (peer not measured)" elif c then "met" else "**not met**" end;
  ratio(fig("h1-c64-p16"; "ringd"; .rps); fig("h1-c64-p16"; "nginx"; .rps)) as $p16
  | ratio(fig("h1-c64"; "ringd"; .server_cpu_us_per_req); fig("h1-c64"; "nginx"; .server_cpu_us_per_req)) as $c64
  | ratio(fig("h1-c64"; "ringd"; .p99_us); fig("h1-c64"; "nginx"; .p99_us)) as $l64
  | ratio(fig("h2-c16-m10"; "ringd"; .server_cpu_us_per_req); fig("h2-c16-m10"; "h2o"; .server_cpu_us_per_req)) as $h2
  | run("h1-c1024"; "ringd") as $k
  | "## Targets (issue 6)",
    "",
    "| target | measured | status |",
    "| --- | --- | --- |",
    "| pipeline 16: ringd req/s ≥ 4× nginx | \($p16 | rtxt) | \(verdict(if $p16 == null then null else $p16 >= 4 end)) |",
    "| 64 conns, no pipelining: ringd CPU/req ≤ 0.9× nginx | \($c64 | rtxt) | \(verdict(if $c64 == null then null else $c64 <= 0.9 end)) |",
    "| 64 conns, no pipelining: ringd p99 ≤ nginx p99 | \($l64 | rtxt) | \(verdict(if $l64 == null then null else $l64 <= 1 end)) |",
    "| h2c -c16 -m10: ringd CPU/req ≤ 0.8× h2o | \($h2 | rtxt) | \(verdict(if $h2 == null then null else $h2 <= 0.8 end)) |",
    "| 1024 conns: no errors, p99 reported | \(if $k == null or $k.requests == null then "no figures" else "\($k.errors) errors, p99 \($k.p99_us | ms) ms" end) | \(verdict(if $k == null or $k.requests == null then false else ($k.errors == 0 and $k.p99_us != null) end)) |",
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
        ( $p.perf_record[] | "Top functions, \(.phase) (\(.seconds) s):", "", "```", (.top | rtrimstr("\n")), "```", "" )
      else empty end )
    end ),
"## Commands",
"",
"Exactly as run (load generators under `/usr/bin/time`, everything pinned with `taskset`):",
"",
"```",
(.commands[]),
"```"
