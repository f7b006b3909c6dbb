/* h2retry.h - test support: an HTTP/2 (h2c, prior knowledge) load client that retries what RFC 9113 8.7 says is safe to retry.
 *
 * h2load counts as failed every request nghttp2 had queued but not yet sent
 * when a GOAWAY arrived (nghttp2 refuses to start streams after any GOAWAY),
 * and never reconnects. A production client (browsers, gRPC, Envoy) re-issues
 * such requests on a new connection: they never reached the server. This
 * client does that, and nothing more: a request whose HEADERS went out and
 * that the server then dropped (reset, or the connection ended without a
 * GOAWAY that excludes it) is a failure, never retried. */
#ifndef RINGD_TEST_H2RETRY_H
#define RINGD_TEST_H2RETRY_H

#include <stdbool.h>

struct h2retry_stats {
    long issued;      /* distinct requests the load asked for */
    long ok;          /* answered 200 */
    long non2xx;      /* answered with another status */
    long failed;      /* sent and lost: reset, or the connection ended under them */
    long refused;     /* refusals that were re-issued: not sent before a GOAWAY, REFUSED_STREAM, or above its last id */
    long given_up;    /* refused more than 8 times: counted here, not in failed */
    long goaways;     /* GOAWAY frames received */
    long connections; /* connections made */
    long connect_errors;
    long unanswered; /* still open when the run's grace ran out */
};

/* Runs conns connections to 127.0.0.1:port, each keeping up to streams
 * requests for path in flight, for seconds seconds; a connection that got a
 * GOAWAY takes no new request, finishes what it has and is replaced. After
 * the duration no new request starts; what is in flight or owed a retry gets
 * up to 10 more seconds. Fills *st (every request ends in exactly one of ok,
 * non2xx, failed, given_up, unanswered). Returns 0, or -1 when no connection
 * could be made at all. Blocking: run it in a child process while the test
 * restarts the server. */
int h2retry_run(int port, const char *path, int conns, int streams, int seconds, struct h2retry_stats *st);

/* One line, "h2retry: issued N ok N non2xx N failed N refused N given_up N goaways N connections N connect_errors N unanswered N".
 */
void h2retry_format(const struct h2retry_stats *st, char *out, int cap);

#endif
