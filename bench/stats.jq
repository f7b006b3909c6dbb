# bench/stats.jq: results JSON of bench/run.sh (meta, runs, profile, commands)
# -> the same plus what is computed from the runs:
#   summary: per scenario and server, median, min and max of every figure
#            over the repetitions (rounds)
#   ratios:  per scenario and peer, ringd's figure over the peer's: the ratio
#            of the medians, and the "paired" ratios (ringd's round k over the
#            peer's round k, measured next to each other in time)
#   targets: the goals checked against the medians
#   jq -f stats.jq RESULTS.json

def median: sort | if length == 0 then null
                   elif length % 2 == 1 then .[(length - 1) / 2]
                   else (.[length / 2 - 1] + .[length / 2]) / 2 end;
# median, min, max and count of the non-null numbers of an array
def stat: map(select(. != null)) | if length == 0 then {median: null, min: null, max: null, n: 0}
                                   else {median: median, min: min, max: max, n: length} end;
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b end;
def has_figures: (.requests // 0) > 0;
# CPU used by neither server nor load generator, in % of one CPU
def other_pct: if .other_cpu_s == null or (.duration_s // 0) == 0 then null else .other_cpu_s * 100 / .duration_s end;
def applies($srv; $sc):
    if $sc | startswith("grpc-") then ($srv.grpc // false)
    else (($srv.grpc_only // false) | not)
         and (($sc | startswith("h2-") | not) or $srv.h2c) and (($sc | startswith("tls-") | not) or ($srv.tls // false)) end;

def metrics: ["rps", "p50_us", "p99_us", "p999_us", "server_cpu_us_per_req", "load_cpu_pct", "other_cpu_pct"];

. as $doc
| .meta as $m
| [.runs[] | . + {other_cpu_pct: other_pct}] as $runs
| ($m.servers // []) as $servers
| ($m.scenarios // []) as $scen
| ($m.reps // 1) as $reps
| [ $scen[] as $sc | $servers[] as $srv
    | [$runs[] | select(.scenario == $sc and .server == $srv.name)] as $rs
    | {scenario: $sc, server: $srv.name}
      + if ($srv.status == "unavailable") then {status: "unavailable"}
        elif (applies($srv; $sc) | not) then {status: "n/a"}
        elif $srv.status == "failed" then {status: "failed", runs: 0, with_figures: 0, problems: [$srv.reason // "failed"]}
        else
          ([$rs[] | select(has_figures)]) as $ok
          | {status: (if ($ok | length) == $reps and ($rs | length) == $reps then "measured"
                      elif ($ok | length) > 0 then "partial" else "no figures" end),
             runs: ($rs | length), with_figures: ($ok | length),
             errors: ([$ok[].errors // 0] | add // 0),
             problems: [$rs[] | select(has_figures | not)
                        | "round \(.round // "?"): " + (if .failed_to_start then "did not start"
                                                        elif .server_died then "exited"
                                                        else "no figures" end)]}
          + (reduce metrics[] as $k ({}; . + {($k): ([$ok[] | .[$k]] | stat)}))
        end ] as $summary
| def sum($sc; $sv): [$summary[] | select(.scenario == $sc and .server == $sv)] | .[0];
  def run($sc; $sv; $r): [$runs[] | select(.scenario == $sc and .server == $sv and (.round // 1) == $r and has_figures)] | .[0];
  [ $scen[] as $sc | $servers[] | select(.name != "ringd") | .name as $peer
    | sum($sc; "ringd") as $a | sum($sc; $peer) as $b
    | {scenario: $sc, peer: $peer}
      + if $a == null then {status: "no ringd"}
        elif $b.status == "unavailable" or $b.status == "n/a" then {status: $b.status}
        elif $a.status == "n/a" then {status: "n/a"}
        else
          {status: (if ($a.with_figures // 0) > 0 and ($b.with_figures // 0) > 0 then "ok" else "no figures" end)}
          + (reduce ("rps", "p99_us", "p999_us", "server_cpu_us_per_req") as $k ({};
              . + {($k): {of_medians: ratio($a[$k].median; $b[$k].median),
                          paired: ([range(1; $reps + 1) as $r
                                    | ratio(run($sc; "ringd"; $r)[$k]; run($sc; $peer; $r)[$k])] | stat)}}))
        end ] as $ratios
| def rat($sc; $peer): [$ratios[] | select(.scenario == $sc and .peer == $peer)] | .[0];
  def verdict($t; $v): if $v == null then "n/a"
                       elif ($t.op == "<=" and $v <= $t.limit) or ($t.op == ">=" and $v >= $t.limit) then "met"
                       else "not met" end;
  ([$doc.profile.perf_record[]? | select(.phase == "h1")] | .[0]) as $prof_h1
  | [ {issue: 9, text: "HTTP/1.1 64 conns: CPU/req ≤ 0.8× nginx", scenario: "h1-c64", peer: "nginx", metric: "server_cpu_us_per_req", op: "<=", limit: 0.8},
      {issue: 9, text: "HTTP/1.1 64 conns: CPU/req ≤ 1.15× floor", scenario: "h1-c64", peer: "floor", metric: "server_cpu_us_per_req", op: "<=", limit: 1.15},
      {issue: 9, text: "HTTP/1.1 1024 conns: CPU/req ≤ 0.85× nginx", scenario: "h1-c1024", peer: "nginx", metric: "server_cpu_us_per_req", op: "<=", limit: 0.85},
      {issue: 9, text: "HTTP/1.1 1024 conns: req/s ≥ nginx's", scenario: "h1-c1024", peer: "nginx", metric: "rps", op: ">=", limit: 1},
      {issue: 9, text: "HTTP/1.1 pipeline 16: req/s ≥ 3× nginx's", scenario: "h1-c64-p16", peer: "nginx", metric: "rps", op: ">=", limit: 3},
      {issue: 9, text: "fixed rate (h1-rate): p99 ≤ nginx's", scenario: "h1-rate", peer: "nginx", metric: "p99_us", op: "<=", limit: 1},
      {issue: 9, text: "fixed rate (h1-rate): p99.9 ≤ nginx's", scenario: "h1-rate", peer: "nginx", metric: "p999_us", op: "<=", limit: 1},
      {issue: 9, text: "store share of CPU in the profile with 1,000,000 users ≤ 4%", kind: "store_share", unit: "%", op: "<=", limit: 4},
      {issue: 10, text: "h2c -c16 -m10: CPU/req ≤ 0.8× h2o", scenario: "h2-c16-m10", peer: "h2o", metric: "server_cpu_us_per_req", op: "<=", limit: 0.8},
      {issue: 10, text: "h2c -c4 -m100: CPU/req ≤ 0.8× h2o", scenario: "h2-c4-m100", peer: "h2o", metric: "server_cpu_us_per_req", op: "<=", limit: 0.8},
      {issue: 12, text: "HTTPS/1.1 keep-alive 64 conns: CPU/req ≤ 0.85× nginx", scenario: "tls-h1-c64", peer: "nginx", metric: "server_cpu_us_per_req", op: "<=", limit: 0.85},
      {issue: 12, text: "HTTPS/1.1 keep-alive 64 conns: CPU/req ≤ 0.85× h2o", scenario: "tls-h1-c64", peer: "h2o", metric: "server_cpu_us_per_req", op: "<=", limit: 0.85},
      {issue: 12, text: "h2 over TLS -c16 -m10: CPU/req ≤ 0.85× nginx", scenario: "tls-h2-c16-m10", peer: "nginx", metric: "server_cpu_us_per_req", op: "<=", limit: 0.85},
      {issue: 12, text: "h2 over TLS -c16 -m10: CPU/req ≤ 0.85× h2o", scenario: "tls-h2-c16-m10", peer: "h2o", metric: "server_cpu_us_per_req", op: "<=", limit: 0.85},
      {issue: 12, text: "full handshakes per CPU-second ≥ nginx's (CPU per handshake ≤ 1×)", scenario: "tls-handshakes", peer: "nginx", metric: "server_cpu_us_per_req", op: "<=", limit: 1} ]
  | map(. as $t
        | if $t.kind == "store_share" then
            ($prof_h1.store_share_pct // null) as $v
            | $t + {measured: $v, paired: null}
              + if $v == null then {status: "n/a", note: "no perf record profile"}
                elif $m.users != 1000000 then {status: "n/a", note: "measured with \($m.users) users; the target is for 1,000,000"}
                else {status: verdict($t; $v)} end
          else
            rat($t.scenario; $t.peer) as $r
            | ($r[$t.metric].of_medians // null) as $v
            | $t + {measured: $v, paired: ($r[$t.metric].paired // null), status: verdict($t; $v)}
              + if $r == null then {note: "\($t.peer) not measured"}
                elif $r.status == "unavailable" then {note: "\($t.peer) unavailable"}
                elif $v == null then {note: "no figures"}
                else {} end
          end) as $targets
| $doc + {summary: $summary, ratios: $ratios, targets: $targets}
