/* test_deploy.c - deploy/prometheus and deploy/grafana: promtool accepts the rules and their unit tests pass, and every
 * metric the dashboard's and the rules' queries name is exported by the real binary (one real scrape). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/server.h"
#include "tests/support/tmpdir.h"

#define RULES RINGD_SOURCE_DIR "/deploy/prometheus/ringd-rules.yml"
#define DASHBOARD RINGD_SOURCE_DIR "/deploy/grafana/ringd.json"

static void need_promtool(void)
{
    if (ts_sh("command -v promtool >/dev/null 2>&1") != 0)
        cr_skip_test("promtool is not installed (Debian package prometheus, see build.sh)");
}

Test(deploy, promtool_check_rules)
{
    need_promtool();
    cr_assert_eq(ts_sh("promtool check rules " RULES), 0, "promtool check rules");
}

Test(deploy, promtool_test_rules)
{
    need_promtool();
    cr_assert_eq(ts_sh("cd " RINGD_SOURCE_DIR "/deploy/prometheus && promtool test rules ringd-rules.test.yml"), 0,
                 "promtool test rules: every alert fires on its input series and stays silent on healthy ones");
}

/* A broken rule file fails the check: the test above can fail. */
Test(deploy, promtool_rejects_a_broken_rule)
{
    need_promtool();
    char dir[256];
    ts_mkdtemp(dir, sizeof(dir), "rules");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "sed 's/expr: job:ringd_lookup_errors:ratio_rate5m > 0.01/expr: job:ringd_lookup_errors:ratio_rate5m >/' %s "
             ">%s/bad.yml && ! promtool check rules %s/bad.yml >/dev/null 2>&1",
             RULES, dir, dir);
    int rc = ts_sh(cmd);
    ts_rmtree(dir);
    cr_assert_eq(rc, 0, "a syntax error in a rule is caught");
}

Test(deploy, dashboard_and_rules_name_exported_metrics, .timeout = 120)
{
    struct test_server ts;
    cr_assert_eq(ts_launch(&ts, 100, NULL), 0);
    /* Traffic on the routes, so that the series with labels exist. */
    struct ts_response r;
    cr_assert_eq(ts_get(ts.port, "/users/1", NULL, &r), 0);
    cr_assert_eq(ts_get(ts.port, "/users/100000", NULL, &r), 0);
    char *text = ts_metrics_text(ts.port);
    cr_assert_not_null(text);
    char scrape[400];
    snprintf(scrape, sizeof(scrape), "%s/scrape.txt", ts.dir);
    FILE *f = fopen(scrape, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    char cmd[4096];
    /* ringd_feed_*: exported only once `ringd follow` keeps a feed in the store (README, Following PostgreSQL). */
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/deploy/query_metrics.py %s %s %s ringd_feed_lag_seconds",
             RINGD_SOURCE_DIR, scrape, DASHBOARD, RULES);
    int rc = ts_sh(cmd);
    /* And the checker itself fails on a metric that does not exist. */
    char bad[400];
    snprintf(bad, sizeof(bad), "%s/bad.json", ts.dir);
    snprintf(cmd, sizeof(cmd),
             "sed 's/ringd_bytes_sent_total/ringd_bytes_sent_typo_total/' %s >%s && ! /usr/bin/python3 "
             "%s/tests/deploy/query_metrics.py %s %s %s ringd_feed_lag_seconds >/dev/null",
             DASHBOARD, bad, RINGD_SOURCE_DIR, scrape, bad, RULES);
    int rc_bad = ts_sh(cmd);
    cr_assert_eq(ts_stop(&ts), 0);
    cr_assert_eq(rc, 0, "every query's metrics are in the scrape (see above)");
    cr_assert_eq(rc_bad, 0, "a misspelt metric is caught");
}
