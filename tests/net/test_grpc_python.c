/* test_grpc_python.c - ringd's gRPC service through a real gRPC client: Python grpcio with stubs generated at
 * test time (protoc + grpc_python_plugin) from proto/ringd/v1/users.proto and grpc-proto's health.proto.
 * The checks themselves are in tests/net/grpc_client.py (every status, batches with found, missing and
 * duplicate ids, nested/array/non-ASCII records against the HTTP answer, concurrency on one channel, a drain). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/import.h"
#include "tests/support/server.h"
#include "tests/support/tlsclient.h"

#define PY "/usr/bin/python3" /* Debian's, with python3-grpcio (the PATH one may be another) */

static struct test_server ts;

static void stop(void)
{
    ts_stop(&ts);
}

/* Records that are not demo-shaped: nested objects, arrays, non-ASCII text, escapes, numbers of every kind. */
static const char special[] =
    "{\"id\":900001,\"name\":\"Zo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\",\"address\":{\"city\":\"M\xc3\xbcnchen\","
    "\"geo\":{\"lat\":48.137,\"lon\":11.575},\"lines\":[\"a\",\"b\\\"q\\\"\",\"\\u00e9\\n\"]},\"tags\":[1,-2.5,true,false,null,"
    "[[]],{}],\"big\":12345678901234,\"empty\":\"\",\"none\":null}\n"
    "{\"id\":900002,\"matrix\":[[1,2],[3,[4,{\"x\":\"\xce\xb1\xce\xb2\"}]]],\"ok\":false}\n"
    "{\"id\":18446744073709551615,\"note\":\"the largest id\"}\n";
#define SPECIAL_IDS "900001,900002,18446744073709551615"

/* Python stubs for users.proto and health.proto into dir/stubs. */
static void make_stubs(const char *dir)
{
    /* health.proto is copied under health/v1/ so its module does not collide with the grpc package. */
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "set -e; d=%s/stubs; mkdir -p $d/protos/health/v1; "
             "cp /usr/share/grpc-proto/grpc/health/v1/health.proto $d/protos/health/v1/; "
             "/usr/bin/protoc -I %s/proto -I $d/protos -I /usr/include --python_out=$d --grpc_python_out=$d "
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin ringd/v1/users.proto health/v1/health.proto",
             dir, RINGD_SOURCE_DIR);
    cr_assert_eq(ts_sh(cmd), 0, "protoc generates the stubs (protobuf-compiler, protobuf-compiler-grpc, grpc-proto)");
}

Test(grpc_python, real_client, .fini = stop, .timeout = 300)
{
    cr_assert_eq(ts_prepare(&ts, 1000), 0);
    cr_assert_eq(ts_import_in_child(ts.dir, ts.db, special, false), 0, "the special records import");
    const char *args[] = {"--shards", "1", NULL}; /* one shard: the drain check watches it through one connection */
    cr_assert_eq(ts_start(&ts, args), 0, "server starts");

    make_stubs(ts.dir); /* generated now, into the test's directory */
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s/tests/net/grpc_client.py %s/stubs %d %d %s", PY, RINGD_SOURCE_DIR, ts.dir, ts.port,
             (int)ts.pid, SPECIAL_IDS);
    int failed = ts_sh(cmd);
    cr_assert_eq(failed, 0, "grpc_client.py: %d failed checks (see its output)", failed);
    /* The client drained the server: it exits 0 (no sanitizer report). */
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}

/* The same service over TLS (ALPN h2), counted as protocol="grpc_tls". */
Test(grpc_python, over_tls, .fini = stop, .timeout = 300)
{
    cr_assert_eq(ts_prepare(&ts, 1000), 0);
    cr_assert_eq(tc_make_cert(ts.dir, "srv", "localhost", "ec"), 0, "openssl req");
    char crt[400], key[400];
    snprintf(crt, sizeof(crt), "%s/srv.crt", ts.dir);
    snprintf(key, sizeof(key), "%s/srv.key", ts.dir);
    const char *args[] = {"--tls-listen", "127.0.0.1:0", "--tls-cert", crt, "--tls-key", key, NULL};
    cr_assert_eq(ts_start(&ts, args), 0, "server starts");
    cr_assert_gt(ts.tls_port, 0);
    make_stubs(ts.dir);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s %s/tests/net/grpc_tls_client.py %s/stubs %d %s", PY, RINGD_SOURCE_DIR, ts.dir, ts.tls_port, crt);
    int failed = ts_sh(cmd);
    cr_assert_eq(failed, 0, "grpc_tls_client.py: %d failed checks (see its output)", failed);
    char *m = ts_metrics_text(ts.port);
    cr_assert_not_null(m);
    cr_expect_eq(
        ts_metric_in(m, "ringd_requests_processed_total{protocol=\"grpc_tls\",route=\"ringd.v1.Users/GetUser\",code=\"OK\"}"), 1,
        "%s", m);
    cr_expect_eq(
        ts_metric_in(m,
                     "ringd_requests_processed_total{protocol=\"grpc_tls\",route=\"ringd.v1.Users/GetUser\",code=\"NOT_FOUND\"}"),
        1);
    cr_expect_eq(ts_metric_in(m, "ringd_requests_processed_total{protocol=\"grpc\",route=\"ringd.v1.Users/GetUser\",code=\"OK\"}"),
                 0, "none of them counted as cleartext");
    free(m);
    cr_assert_eq(ts_stop(&ts), 0, "server exit status");
}
