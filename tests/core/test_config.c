/* test_config.c - core/config.c: `ringd serve` flags, RINGD_* variables (flags win), bad values, addresses. */
#include "core/config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const env_names[] = {
    "RINGD_LISTEN",          "RINGD_ADMIN_LISTEN",        "RINGD_DB",
    "RINGD_SHARDS",          "RINGD_MAX_CONNS",           "RINGD_HEADER_TIMEOUT_MS",
    "RINGD_IDLE_TIMEOUT_MS", "RINGD_WRITE_TIMEOUT_MS",    "RINGD_DRAIN_TIMEOUT_MS",
    "RINGD_REFRESH_MS",      "RINGD_H2_MAX_STREAMS",      "RINGD_PAUSED_BUDGET_MB",
    "RINGD_REUSE_PORT_JOIN", "RINGD_TLS_LISTEN",          "RINGD_TLS_CERT",
    "RINGD_TLS_KEY",         "RINGD_TLS_TICKET_KEY_FILE", "RINGD_MAX_FEED_LAG_MS",
    "RINGD_DRAIN_GRACE_MS",  "RINGD_CGROUP_DIR",
    "RINGD_ACCESS_LOG",      "RINGD_ACCESS_LOG_SAMPLE",   "RINGD_SLOW_MS",
};

static void clean_env(void)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
}

static struct config c;
static char err[256];

/* Parses "serve" + the given flags (NULL-terminated). */
static int parse_argv(const char *const *flags)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "serve";
    for (int i = 0; flags != NULL && flags[i] != NULL; i++)
        argv[argc++] = (char *)flags[i];
    argv[argc] = NULL;
    err[0] = '\0';
    return config_parse_serve(&c, argc, argv, err, sizeof(err));
}
#define PARSE(...) parse_argv((const char *const[]){__VA_ARGS__, NULL})

static void fmt(const struct sockaddr_storage *ss, char *out, size_t n)
{
    config_format_addr(ss, out, n);
}

Test(config, defaults, .init = clean_env)
{
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    char a[64];
    fmt(&c.listen_addr, a, sizeof(a));
    cr_assert_str_eq(a, "0.0.0.0:8080");
    cr_assert_eq(c.listen_len, sizeof(struct sockaddr_in));
    cr_assert_str_eq(c.db, "./ringd-data");
    cr_assert(c.db_is_default);
    cr_assert_not(c.admin_enabled);
    struct cpus_limit cl;
    cpus_detect(&cl);
    cr_assert_eq(c.shards, cl.count, "the default is the detected limit (tests/core/test_cpus.c checks that)");
    cr_assert_not(c.shards_given);
    cr_assert_eq(c.drain_grace_ms, 0, "no grace unless asked for: a drain closes the listeners at once");
    cr_assert_eq(c.max_conns, 10000);
    cr_assert_eq(c.header_timeout_ms, 10000);
    cr_assert_eq(c.idle_timeout_ms, 60000);
    cr_assert_eq(c.drain_timeout_ms, 5000);
    cr_assert_gt(c.write_timeout_ms, 0);
    cr_assert_gt(c.refresh_ms, 0);
    cr_assert_eq(c.paused_budget_mb, 64);
}

Test(config, drain_grace_and_shards_given, .init = clean_env)
{
    cr_assert_eq(PARSE("--drain-grace-ms", "1500", "--shards", "3"), 0, "%s", err);
    cr_assert_eq(c.drain_grace_ms, 1500);
    cr_assert_eq(c.shards, 3);
    cr_assert(c.shards_given, "the start-up log says the flag decided");
    setenv("RINGD_DRAIN_GRACE_MS", "250", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_eq(c.drain_grace_ms, 250);
    cr_assert_neq(PARSE("--drain-grace-ms", "-1"), 0);
}

/* A container's quota (RINGD_CGROUP_DIR stands for its cgroup) sizes the default, not the host's CPUs. */
Test(config, default_shards_follow_the_cgroup_quota, .init = clean_env)
{
    char dir[] = "/tmp/ringd-cgXXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char file[64];
    snprintf(file, sizeof(file), "%s/cpu.max", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("50000 100000\n", f); /* half a CPU: one shard */
    fclose(f);
    setenv("RINGD_CGROUP_DIR", dir, 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_expect_eq(c.shards, 1);
    cr_expect_str_eq(c.cpus.decided_by, c.cpus.affinity > 1 ? "cpu_max" : "affinity");
    cr_assert_eq(PARSE("--shards", "2"), 0, "%s", err);
    cr_expect_eq(c.shards, 2, "the flag wins over the quota");
    unsetenv("RINGD_CGROUP_DIR");
    unlink(file);
    rmdir(dir);
}

Test(config, access_log, .init = clean_env)
{
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_null(c.access_log, "off by default");
    cr_assert_eq(c.access_log_sample, 1);
    cr_assert_eq(c.slow_ms, 100);
    cr_assert_eq(PARSE("--access-log", "/var/log/ringd.log", "--access-log-sample", "100", "--slow-ms", "0"), 0, "%s", err);
    cr_assert_str_eq(c.access_log, "/var/log/ringd.log");
    cr_assert_eq(c.access_log_sample, 100);
    cr_assert_eq(c.slow_ms, 0);
    cr_assert_eq(PARSE("--access-log", "-"), 0, "%s", err);
    cr_assert_str_eq(c.access_log, "-");
    setenv("RINGD_ACCESS_LOG", "/tmp/a.log", 1);
    setenv("RINGD_ACCESS_LOG_SAMPLE", "7", 1);
    setenv("RINGD_SLOW_MS", "25", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_str_eq(c.access_log, "/tmp/a.log");
    cr_assert_eq(c.access_log_sample, 7);
    cr_assert_eq(c.slow_ms, 25);
    cr_assert_eq(PARSE("--access-log-sample", "0"), -1, "one in zero means nothing");
    cr_assert_eq(PARSE("--access-log", ""), -1);
}

Test(config, reuse_port_join_is_asked_for, .init = clean_env)
{
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_not(c.reuse_port_join, "joining another process's port is never the default");
    cr_assert_eq(PARSE("--reuse-port-join", "--shards", "1"), 0, "%s", err);
    cr_assert(c.reuse_port_join);
    cr_assert_eq(c.shards, 1, "the flag takes no value");
    cr_assert_eq(PARSE("--reuse-port-join=0"), 0, "%s", err);
    cr_assert_not(c.reuse_port_join);
    setenv("RINGD_REUSE_PORT_JOIN", "1", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert(c.reuse_port_join);
    setenv("RINGD_REUSE_PORT_JOIN", "maybe", 1);
    cr_assert_eq(parse_argv(NULL), -1);
    cr_assert(strstr(err, "RINGD_REUSE_PORT_JOIN") != NULL, "%s", err);
}

Test(config, paused_budget, .init = clean_env)
{
    cr_assert_eq(PARSE("--paused-budget-mb", "8"), 0, "%s", err);
    cr_assert_eq(c.paused_budget_mb, 8);
    setenv("RINGD_PAUSED_BUDGET_MB", "16", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_eq(c.paused_budget_mb, 16);
    cr_assert_eq(PARSE("--paused-budget-mb", "0"), -1, "a zero budget would close every paused connection");
}

Test(config, flags, .init = clean_env)
{
    cr_assert_eq(PARSE("--listen", "127.0.0.1:0", "--db", "/tmp/x", "--shards", "2", "--max-conns", "5", "--header-timeout-ms",
                       "200", "--idle-timeout-ms", "300", "--drain-timeout-ms", "0", "--refresh-ms", "7", "--admin-listen",
                       "127.0.0.1:9100"),
                 0, "%s", err);
    char a[64];
    fmt(&c.listen_addr, a, sizeof(a));
    cr_assert_str_eq(a, "127.0.0.1:0");
    cr_assert_str_eq(c.db, "/tmp/x");
    cr_assert_not(c.db_is_default);
    cr_assert_eq(c.shards, 2);
    cr_assert_eq(c.max_conns, 5);
    cr_assert_eq(c.header_timeout_ms, 200);
    cr_assert_eq(c.idle_timeout_ms, 300);
    cr_assert_eq(c.drain_timeout_ms, 0);
    cr_assert_eq(c.refresh_ms, 7);
    cr_assert(c.admin_enabled);
    fmt(&c.admin_addr, a, sizeof(a));
    cr_assert_str_eq(a, "127.0.0.1:9100");
}

Test(config, flag_equals_form, .init = clean_env)
{
    cr_assert_eq(PARSE("--shards=3", "--listen=[::1]:0", "--db=/d"), 0, "%s", err);
    cr_assert_eq(c.shards, 3);
    cr_assert_eq(c.listen_addr.ss_family, AF_INET6);
    cr_assert_str_eq(c.db, "/d");
}

Test(config, env_vars, .init = clean_env)
{
    setenv("RINGD_LISTEN", "127.0.0.1:1234", 1);
    setenv("RINGD_DB", "/env/db", 1);
    setenv("RINGD_SHARDS", "4", 1);
    setenv("RINGD_MAX_CONNS", "77", 1);
    setenv("RINGD_HEADER_TIMEOUT_MS", "1500", 1);
    setenv("RINGD_IDLE_TIMEOUT_MS", "2500", 1);
    setenv("RINGD_DRAIN_TIMEOUT_MS", "3500", 1);
    setenv("RINGD_ADMIN_LISTEN", "[::1]:9", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    char a[64];
    fmt(&c.listen_addr, a, sizeof(a));
    cr_assert_str_eq(a, "127.0.0.1:1234");
    cr_assert_str_eq(c.db, "/env/db");
    cr_assert_not(c.db_is_default);
    cr_assert_eq(c.shards, 4);
    cr_assert_eq(c.max_conns, 77);
    cr_assert_eq(c.header_timeout_ms, 1500);
    cr_assert_eq(c.idle_timeout_ms, 2500);
    cr_assert_eq(c.drain_timeout_ms, 3500);
    cr_assert(c.admin_enabled);
    fmt(&c.admin_addr, a, sizeof(a));
    cr_assert_str_eq(a, "[::1]:9");
}

Test(config, max_feed_lag, .init = clean_env)
{
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_eq(c.max_feed_lag_ms, 0, "off by default");
    setenv("RINGD_MAX_FEED_LAG_MS", "1500", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert_eq(c.max_feed_lag_ms, 1500);
    cr_assert_eq(PARSE("--max-feed-lag-ms", "250"), 0, "%s", err);
    cr_assert_eq(c.max_feed_lag_ms, 250, "the flag wins");
    cr_assert_eq(PARSE("--max-feed-lag-ms", "soon"), -1);
    cr_assert_eq(PARSE("--max-feed-lag-ms", "86400001"), -1);
}

Test(config, flags_win_over_env, .init = clean_env)
{
    setenv("RINGD_SHARDS", "4", 1);
    setenv("RINGD_LISTEN", "127.0.0.1:1234", 1);
    setenv("RINGD_MAX_CONNS", "77", 1);
    cr_assert_eq(PARSE("--shards", "1", "--listen", "127.0.0.2:99"), 0, "%s", err);
    cr_assert_eq(c.shards, 1);
    char a[64];
    fmt(&c.listen_addr, a, sizeof(a));
    cr_assert_str_eq(a, "127.0.0.2:99");
    cr_assert_eq(c.max_conns, 77, "untouched by flags: the env value stays");
}

Test(config, empty_env_is_unset, .init = clean_env)
{
    setenv("RINGD_SHARDS", "", 1);
    setenv("RINGD_DB", "", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert(c.db_is_default);
}

Test(config, bad_env_value_names_the_variable, .init = clean_env)
{
    setenv("RINGD_MAX_CONNS", "lots", 1);
    cr_assert_eq(parse_argv(NULL), -1);
    cr_assert_not_null(strstr(err, "RINGD_MAX_CONNS"), "%s", err);
    /* A bad env value is an error even when the flag would override it: it is reported, not ignored. */
}

Test(config, bad_values, .init = clean_env)
{
    static const char *const bad[][2] = {
        {"--shards", "0"},
        {"--shards", "257"},
        {"--shards", "abc"},
        {"--shards", "-1"},
        {"--shards", "+2"},
        {"--shards", " 2"},
        {"--shards", "2 "},
        {"--shards", "2x"},
        {"--shards", ""},
        {"--shards", "99999999999999999999999"},
        {"--max-conns", "0"},
        {"--max-conns", "4294967297"},
        {"--header-timeout-ms", "5"},
        {"--idle-timeout-ms", "1.5"},
        {"--drain-timeout-ms", "-5"},
        {"--refresh-ms", "0"},
        {"--db", ""},
        {"--listen", ""},
        {"--listen", "127.0.0.1"},
        {"--listen", "127.0.0.1:"},
        {"--listen", "127.0.0.1:65536"},
        {"--listen", "127.0.0.1:99999999999999999999"},
        {"--listen", "127.0.0.1:-1"},
        {"--listen", "127.0.0.1:80x"},
        {"--listen", "256.0.0.1:80"},
        {"--listen", "example.invalid:80"},
        {"--listen", "[::1]"},
        {"--listen", "[::1:80"},
        {"--listen", "[::1]80"},
        {"--listen", "[127.0.0.1]:80x"},
        {"--listen", "[zz::1]:80"},
        {"--admin-listen", "nope"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = PARSE(bad[i][0], bad[i][1]);
        cr_assert_eq(rc, -1, "%s '%s' accepted", bad[i][0], bad[i][1]);
        cr_assert_neq(err[0], '\0', "%s '%s': no message", bad[i][0], bad[i][1]);
    }
}

Test(config, usage_errors, .init = clean_env)
{
    cr_assert_eq(PARSE("--shards"), -1, "missing value");
    cr_assert_neq(err[0], '\0');
    cr_assert_eq(PARSE("--bogus"), -1);
    cr_assert_not_null(strstr(err, "--bogus"), "%s", err);
    cr_assert_eq(PARSE("positional"), -1);
    cr_assert_eq(PARSE("--listen-x=1"), -1);
}

Test(config, help, .init = clean_env)
{
    cr_redirect_stdout();
    cr_assert_eq(PARSE("--help"), 1);
    cr_assert_eq(PARSE("--shards", "2", "-h"), 1);
}

static int addr(const char *s, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = config_parse_addr(s, &ss, &len);
    if (rc == 0) {
        config_format_addr(&ss, out, n);
        cr_assert_eq(len, ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    }
    return rc;
}

Test(config, addresses)
{
    static const char *const cases[][2] = {
        {"127.0.0.1:8080", "127.0.0.1:8080"},
        {"0.0.0.0:0", "0.0.0.0:0"},
        {"[::1]:0", "[::1]:0"},
        {"[::]:443", "[::]:443"},
        {"[fe80::1]:65535", "[fe80::1]:65535"},
        {":8081", "0.0.0.0:8081"},
        {"8082", "0.0.0.0:8082"},
        {"localhost:9", "127.0.0.1:9"},
        {"10.1.2.3:1", "10.1.2.3:1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[80];
        cr_assert_eq(addr(cases[i][0], out, sizeof(out)), 0, "%s rejected", cases[i][0]);
        cr_assert_str_eq(out, cases[i][1], "%s", cases[i][0]);
    }
    struct sockaddr_storage ss;
    socklen_t len;
    cr_assert_eq(config_parse_addr("[::1]:0", &ss, &len), 0);
    cr_assert_eq(ss.ss_family, AF_INET6);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    cr_assert_eq(ntohs(in6->sin6_port), 0);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
}

Test(config, tls_flags, .init = clean_env)
{
    cr_assert_eq(PARSE("--tls-listen", "127.0.0.1:8443", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"), 0, "%s", err);
    cr_assert(c.tls_enabled);
    cr_assert(c.listen_enabled, "cleartext stays on beside TLS");
    char a[64];
    fmt(&c.tls_addr, a, sizeof(a));
    cr_assert_str_eq(a, "127.0.0.1:8443");
    cr_assert_str_eq(c.tls_cert, "/c.pem");
    cr_assert_str_eq(c.tls_key, "/k.pem");
    cr_assert_null(c.tls_ticket_key_file);

    cr_assert_eq(
        PARSE("--listen", "none", "--tls-listen", ":443", "--tls-cert", "c", "--tls-key", "k", "--tls-ticket-key-file", "t"), 0,
        "%s", err);
    cr_assert_not(c.listen_enabled);
    cr_assert_str_eq(c.tls_ticket_key_file, "t");

    setenv("RINGD_TLS_LISTEN", "[::1]:4443", 1);
    setenv("RINGD_TLS_CERT", "/env.crt", 1);
    setenv("RINGD_TLS_KEY", "/env.key", 1);
    setenv("RINGD_TLS_TICKET_KEY_FILE", "/env.tk", 1);
    setenv("RINGD_LISTEN", "none", 1);
    cr_assert_eq(parse_argv(NULL), 0, "%s", err);
    cr_assert(c.tls_enabled);
    cr_assert_not(c.listen_enabled);
    cr_assert_str_eq(c.tls_ticket_key_file, "/env.tk");
    cr_assert_eq(PARSE("--listen", "127.0.0.1:1"), 0, "%s", err);
    cr_assert(c.listen_enabled, "a flag wins over RINGD_LISTEN=none");
}

Test(config, tls_flags_come_together, .init = clean_env)
{
    cr_assert_eq(PARSE("--tls-listen", "127.0.0.1:0"), -1);
    cr_assert_not_null(strstr(err, "--tls-cert and --tls-key"), "%s", err);
    cr_assert_eq(PARSE("--tls-listen", "127.0.0.1:0", "--tls-cert", "c"), -1);
    cr_assert_eq(PARSE("--tls-cert", "c", "--tls-key", "k"), -1);
    cr_assert_not_null(strstr(err, "need --tls-listen"), "%s", err);
    cr_assert_eq(PARSE("--tls-ticket-key-file", "t"), -1);
    cr_assert_eq(PARSE("--listen", "none"), -1);
    cr_assert_not_null(strstr(err, "nothing would be served"), "%s", err);
    cr_assert_eq(PARSE("--tls-listen", "nowhere:1", "--tls-cert", "c", "--tls-key", "k"), -1);
    cr_assert_eq(PARSE("--tls-listen", "127.0.0.1:0", "--tls-cert", "", "--tls-key", "k"), -1);
}
