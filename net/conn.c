/* conn.c - a connection's bytes in: keep partial requests, detect HTTP/2, hand the rest to HTTP/1.1 or HTTP/2. */
#include "net/conn.h"

#include <string.h>

#include "core/shard.h"
#include "net/h1.h"
#include "net/h1_parser.h"
#include "net/h2.h"

/* Runs the connection's protocol over data[0..len); returns the bytes consumed. */
static size_t process(struct conn *c, const char *data, size_t len)
{
    if (c->proto == CONN_H1 && !c->seen_request && c->h2 == NULL && len > 0 && data[0] == 'P') {
        /* Prior knowledge: the preface opens the connection. Wait for all 24 bytes if they may still be it. */
        size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
        if (memcmp(data, H2_PREFACE, n) == 0) {
            if (len < H2_PREFACE_LEN)
                return 0;
            if (h2_start(c) != 0) {
                shard_close_conn(c->shard, c, CLOSE_ERROR);
                return len;
            }
        } else if (n >= 4 && memcmp(data, "PRI ", 4) == 0) {
            /* The PRI method exists only to open the preface (RFC 9113 11.6): a broken one is an HTTP/2 error. */
            h2_refuse_preface(c);
            return len;
        }
    }
    if (c->proto == CONN_H2)
        return h2_process(c, data, len);
    size_t used = h1_process(c, data, len);
    if (c->proto == CONN_H2 && used < len) /* upgraded mid-read: the rest is HTTP/2 */
        used += h2_process(c, data + used, len - used);
    return used;
}

/* Whether the bytes added at buf[old..len) may end a request head or push it
 * past a size limit, i.e. whether parsing again can tell anything new. Keeps
 * a head trickled in byte by byte from being re-parsed from the start on every
 * read (quadratic work). The parser's verdict for a prefix is the same as for
 * the whole (h1_parser.c), so deferring the parse never changes the answer. */
static bool head_may_be_complete(const char *buf, size_t old, size_t len)
{
    if ((old <= H1_MAX_REQUEST_LINE + 2 && len > H1_MAX_REQUEST_LINE + 2) || len >= H1_MAX_HEAD)
        return true;
    size_t from = old >= 3 ? old - 3 : 0;
    for (size_t i = from; i + 1 < len; i++)
        if (buf[i] == '\n' && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')))
            return true;
    return false;
}

/* Drops the first used bytes of c->in. A buffer that grew while parsing was
 * paused is freed once empty, so a connection that caught up holds no input
 * memory between requests. */
static void in_consume(struct conn *c, size_t used)
{
    buf_consume(&c->in, used);
    if (c->in.len == 0 && c->in.cap > CONN_IN_KEEP)
        buf_free(&c->in);
}

void conn_on_data(struct conn *c, const char *data, size_t len)
{
    if (c->_closing)
        return;
    if (c->close_after_send && c->proto == CONN_H1)
        return; /* the last response is written: lingering, ignore the rest */
    if (c->proto == CONN_H1 && c->in.len == 0 && c->body_left == 0)
        c->request_start_ms = c->shard->clock.now_ms; /* a new head starts */
    if (c->in.len == 0 && !c->paused) {
        /* Fast path: parse straight from the provided buffer; copy only a partial tail. */
        size_t used = process(c, data, len);
        if (used < len && !c->_closing)
            buf_append(&c->in, data + used, len - used);
    } else {
        size_t old = c->in.len;
        buf_append(&c->in, data, len);
        if (c->proto == CONN_H1 && c->body_left == 0 && !head_may_be_complete(c->in.data, old, c->in.len))
            return; /* a head trickling in: no re-parse until it can have ended */
        if (!c->paused) {
            size_t used = process(c, c->in.data, c->in.len);
            in_consume(c, used);
        }
    }
    if (!c->_closing && c->in.len > CONN_IN_MAX)
        shard_close_conn(c->shard, c, CLOSE_ERROR);
}

uint64_t conn_user_hint(const struct conn *c, const char *data, size_t len)
{
    /* Only a request that starts these bytes: the common case, and certain. */
    if (c->proto != CONN_H1 || c->in.len != 0 || c->body_left != 0 || c->_closing || c->paused)
        return 0;
    return h1_user_hint(data, len);
}

void conn_resume(struct conn *c)
{
    if (!c->paused || c->_closing)
        return;
    c->paused = false;
    if (c->in.len == 0)
        return;
    size_t used = process(c, c->in.data, c->in.len);
    in_consume(c, used);
}

bool conn_is_idle(const struct conn *c)
{
    if (c->in.len != 0 || c->body_left != 0 || c->out.len != 0 || c->_send_inflight)
        return false;
    return c->proto == CONN_H1 || h2_idle(c);
}

void conn_begin_drain(struct conn *c)
{
    if (c->proto == CONN_H2) {
        h2_drain(c);
        return;
    }
    /* HTTP/1.1: the response being worked on carries Connection: close (h1.c checks the shard's draining flag). */
}

bool conn_done(const struct conn *c)
{
    if (c->proto == CONN_H2)
        return h2_done(c);
    return c->close_after_send;
}

void conn_release(struct conn *c)
{
    if (c->h2 != NULL)
        h2_free(c);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->_sending);
}
