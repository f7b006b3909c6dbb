#!/usr/bin/python3
"""query_metrics.py - every metric a Grafana dashboard's or a Prometheus rule file's queries name must be in a scrape.

usage: query_metrics.py SCRAPE DASHBOARD.json RULES.yml [ALLOWED_ABSENT ...]

Reads the metric names of a real /metrics scrape (sample lines), collects the
PromQL of every dashboard target and template variable and of every rule, strips
what is not a metric name (strings, label matchers, ranges, by/without lists,
functions, keywords, numbers, recording-rule names the same file records), and
fails when a name remains that the scrape lacks (except ALLOWED_ABSENT, metrics
only exported in some set-ups, e.g. the feed's), or when a query names no metric.
Exit status 0 when every query checks out, 1 otherwise (with the reasons).
"""
import json
import re
import sys

FUNCS = set("""abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count
count_over_time count_values day_of_month day_of_week delta deriv exp floor group histogram_quantile holt_winters
hour idelta increase irate label_join label_replace label_values ln log10 log2 max max_over_time min min_over_time
minute month predict_linear quantile quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev
stdvar sum sum_over_time time timestamp topk vector year by without on ignoring group_left group_right bool and or
unless offset inf nan""".split())


def scrape_names(path):
    names = set()
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def metric_names(expr):
    e = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", expr)  # Grafana: label_values(metric, label)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)               # strings
    e = re.sub(r"\{[^}]*\}", "", e)                           # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                          # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\b\d+(\.\d+)?([eE][-+]?\d+)?\b", "", e)     # numbers
    e = re.sub(r"\$\w+", "", e)                               # Grafana variables
    return [t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e) if t not in FUNCS]


def dashboard_exprs(path):
    d = json.load(open(path, encoding="utf-8"))
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append(("panel '%s'" % p.get("title"), t["expr"]))
            walk(p.get("panels", []))

    walk(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append(("variable '%s'" % v["name"], q))
    return out


def rule_exprs(path):
    import yaml  # python3-yaml; optional: the rules are checked only when it is there
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    out, recorded = [], set()
    for g in doc["groups"]:
        for r in g["rules"]:
            if "record" in r:
                recorded.add(r["record"])
            out.append(("rule '%s'" % r.get("record", r.get("alert")), r["expr"]))
    return out, recorded


def main():
    scrape, dashboard, rules = sys.argv[1:4]
    allowed = set(sys.argv[4:])
    have = scrape_names(scrape)
    bad = []
    queries = dashboard_exprs(dashboard)
    if not queries:
        bad.append("the dashboard has no queries")
    recorded = set()
    try:
        rq, recorded = rule_exprs(rules)
        queries += rq
    except ImportError:
        print("python3-yaml missing: rules not checked against the scrape")
    for where, expr in queries:
        names = metric_names(expr)
        if not names:
            bad.append("%s names no metric: %s" % (where, expr))
        for n in names:
            if n not in have and n not in recorded and n not in allowed:
                bad.append("%s: %s is not in the scrape" % (where, n))
    for b in bad:
        print(b)
    print("%d queries checked against %d exported series names" % (len(queries), len(have)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
