/* h1_parser.c - HTTP/1.1 request-head parsing: picohttpparser for the syntax, then the
 * framing rules it leaves to the caller (Content-Length, Transfer-Encoding,
 * Host, Connection, size limits). Never copies: every field points into the
 * caller's buffer. */
#include "net/h1_parser.h"

#include <string.h>
#include <strings.h>

/* Whether header name h is lit (lower case letters and '-'), ignoring case.
 * Names were checked to be tchars first, and for tchars c | 0x20 equals a
 * lower-case letter or '-' only when c is that letter (either case) or '-'. */
static inline bool name_is(const struct phr_header *h, const char *lit, size_t litlen)
{
    if (h->name_len != litlen)
        return false;
    for (size_t i = 0; i < litlen; i++)
        if ((h->name[i] | 0x20) != lit[i])
            return false;
    return true;
}
#define NAME_IS(h, lit) name_is((h), lit, sizeof(lit) - 1)

/* Calls fn for each comma-separated token of a header value, trimmed of OWS. */
static void each_token(const char *v, size_t len, void (*fn)(const char *, size_t, void *), void *arg)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end > start)
            fn(v + start, end - start, arg);
    }
}

struct conn_tokens {
    bool close, keep_alive, upgrade;
};

static void connection_token(const char *t, size_t len, void *arg)
{
    struct conn_tokens *ct = arg;
    if (len == 5 && strncasecmp(t, "close", 5) == 0)
        ct->close = true;
    else if (len == 10 && strncasecmp(t, "keep-alive", 10) == 0)
        ct->keep_alive = true;
    else if (len == 7 && strncasecmp(t, "upgrade", 7) == 0)
        ct->upgrade = true;
}

struct expect_tokens {
    bool cont, unknown;
};

static void expect_token(const char *t, size_t len, void *arg)
{
    struct expect_tokens *et = arg;
    if (len == 12 && strncasecmp(t, "100-continue", 12) == 0)
        et->cont = true;
    else
        et->unknown = true;
}

/* Content-Length: 1*DIGIT. Returns 0 and sets *out (saturated at UINT64_MAX),
 * -400 when not decimal. The size limit is checked by the caller once every
 * framing header has been seen, so that CL with TE or differing CLs get 400. */
static int parse_content_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0)
        return -400;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -400;
        unsigned d = (unsigned)(v[i] - '0');
        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
    }
    *out = n;
    return 0;
}

/* RFC 9110 tchar (DIGIT, ALPHA and !#$%&'*+-.^_`|~): what a field name or a
 * method may contain, as a bitmap over the byte values (none above 0x7f). */
static const uint64_t tchar_map[4] = {UINT64_C(0x03ff6cfa00000000), UINT64_C(0x57ffffffc7fffffe), 0, 0};

static inline bool is_tchar(unsigned char c)
{
    return (tchar_map[c >> 6] >> (c & 63)) & 1;
}

/* picohttpparser skips one empty line before the request line (RFC 9112 2.2). */
static size_t leading_empty_line(const char *buf, size_t len)
{
    if (len >= 1 && buf[0] == '\n')
        return 1;
    if (len >= 2 && buf[0] == '\r' && buf[1] == '\n')
        return 2;
    return 0;
}

static int pico(const char *buf, size_t len, struct h1_request *req)
{
    req->num_headers = H1_MAX_HEADERS + 1;
    return phr_parse_request(buf, len, &req->method, &req->method_len, &req->path, &req->path_len, &req->minor_version,
                             req->headers, &req->num_headers, 0);
}

/* After phr_parse_request said -1 on buf[0..len): 431 when it failed only
 * because a header beyond H1_MAX_HEADERS began (the first H1_MAX_HEADERS + 1
 * header lines are well-formed), else 400. Deciding on the same lines whatever
 * follows them keeps the answer the same for every read split. */
static int classify_failure(const char *buf, size_t len, size_t lead, struct h1_request *req)
{
    size_t lines = 0;
    for (size_t i = lead; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (lines > 0 && (buf[i - 1] == '\n' || (buf[i - 1] == '\r' && i >= 2 && buf[i - 2] == '\n')))
            return -400;                   /* end of head before the header limit: a syntax error */
        if (++lines == H1_MAX_HEADERS + 2) /* the request line and H1_MAX_HEADERS + 1 header lines */
            return pico(buf, i + 1, req) == -2 ? -431 : -400;
        if (i + 1 < len && (buf[i + 1] == ' ' || buf[i + 1] == '\t'))
            return -400; /* obs-fold within the allowed fields: picohttpparser took it as a field */
    }
    return -400;
}

/* The request line must end within H1_MAX_REQUEST_LINE bytes (plus CRLF).
 * Returns 0 when that holds or cannot be decided yet, else -414, or -400 when
 * a syntax error shows up within the part of the line that may be examined.
 * Only the first H1_MAX_REQUEST_LINE + 2 bytes are ever looked at, so the
 * answer does not depend on how the bytes were split across reads. */
static int check_request_line(const char *buf, size_t len, size_t lead, struct h1_request *req)
{
    const size_t limit = H1_MAX_REQUEST_LINE + 2;
    size_t avail = len - lead;
    size_t scan = avail < limit ? avail : limit;
    const char *nl = memchr(buf + lead, '\n', scan);
    size_t examined;
    if (nl == NULL) {
        if (avail < limit)
            return 0;
        examined = lead + limit;
    } else {
        size_t line = (size_t)(nl - (buf + lead));
        if (line > 0 && nl[-1] == '\r')
            line--;
        if (line <= H1_MAX_REQUEST_LINE)
            return 0;
        examined = (size_t)(nl + 1 - buf);
    }
    return pico(buf, examined, req) == -1 ? -400 : -414;
}

/* After phr_parse_request said -1 (it accepts only "HTTP/1." versions): -505
 * when buf[lead..len) begins with a well-formed request line, method SP
 * target SP "HTTP/" DIGIT "." DIGIT line-end, whose major version is not 1
 * (RFC 9110 15.6.6: HTTP/2.0 or HTTP/3.1 there is a version we do not speak,
 * not a syntax error); 0 when the bytes so far are a prefix of such a line
 * (the verdict waits for the line end, whatever the read split); else -400. */
static int unsupported_version(const char *buf, size_t len, size_t lead)
{
    size_t i = lead, start = lead;
    while (i < len && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == len)
        return 0;
    if (i == start || buf[i++] != ' ')
        return -400;
    start = i;
    while (i < len && (unsigned char)buf[i] > ' ' && buf[i] != 0x7f)
        i++;
    if (i == len)
        return 0;
    if (i == start || buf[i++] != ' ')
        return -400;
    static const char shape[] = "HTTP/9.9\r\n"; /* 9: any digit; the CR is optional */
    char major = 0;
    for (size_t k = 0; k < sizeof(shape) - 1; k++, i++) {
        if (i == len)
            return 0;
        char want = shape[k], c = buf[i];
        if (want == '9') {
            if (c < '0' || c > '9')
                return -400;
            if (major == 0)
                major = c;
        } else if (want == '\r' && c == '\n') {
            break; /* bare LF ends the line too */
        } else if (c != want) {
            return -400;
        }
    }
    return major == '1' ? -400 : -505;
}

/* Absolute-form targets ("http://host/p") route like their path ("/p"). */
static void strip_absolute_form(struct h1_request *req)
{
    const char *p = req->path;
    size_t n = req->path_len, skip;
    if (n >= 7 && strncasecmp(p, "http://", 7) == 0)
        skip = 7;
    else if (n >= 8 && strncasecmp(p, "https://", 8) == 0)
        skip = 8;
    else
        return;
    const char *slash = memchr(p + skip, '/', n - skip);
    if (slash == NULL) {
        req->path = "/";
        req->path_len = 1;
    } else {
        req->path_len = n - (size_t)(slash - p);
        req->path = slash;
    }
}

int h1_parse(const char *buf, size_t len, struct h1_request *req)
{
    size_t lead = leading_empty_line(buf, len);
    /* Nothing past H1_MAX_HEAD can belong to an acceptable head. */
    size_t win = len < H1_MAX_HEAD ? len : H1_MAX_HEAD;
    int head = pico(buf, win, req);
    if (head <= 0) {
        /* The request line's limit first: its verdict depends only on the
         * line's first H1_MAX_REQUEST_LINE + 2 bytes, so a head split across
         * reads gets the answer the whole head gets below. */
        int rc = check_request_line(buf, len, lead, req);
        if (rc != 0)
            return rc;
        if (head == 0 || head == -2)
            return win >= H1_MAX_HEAD ? -431 : 0;
        int v = unsupported_version(buf, win, lead);
        return v != -400 ? v : classify_failure(buf, win, lead, req);
    }

    /* A whole head: its request line is method SP target SP "HTTP/1.x" CRLF
     * (picohttpparser accepts no other), so the length follows from the fields. */
    size_t line_len = (size_t)(req->path + req->path_len - req->method) + sizeof(" HTTP/1.1") - 1;
    if (line_len > H1_MAX_REQUEST_LINE)
        return -414;
    if (req->num_headers > H1_MAX_HEADERS || (size_t)head - lead - line_len > H1_MAX_HEADER_BYTES)
        return -431;
    if (req->method_len == 0)
        return -400;
    for (size_t k = 0; k < req->method_len; k++)
        if (!is_tchar((unsigned char)req->method[k]))
            return -400;
    if (req->path_len == 0)
        return -400;
    if (req->path[0] != '/' && req->path[0] != '*') {
        if (req->path[0] != 'h' && req->path[0] != 'H')
            return -400;
        strip_absolute_form(req);
        if (req->path[0] != '/')
            return -400;
    }
    if (req->minor_version > 1)
        req->minor_version = 1; /* HTTP/1.x, x > 1: served as HTTP/1.1 (RFC 9112 2.3) */

    if (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0)
        req->method_kind = H1_GET;
    else if (req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0)
        req->method_kind = H1_HEAD;
    else
        req->method_kind = H1_OTHER;

    struct conn_tokens ct = {false, false, false};
    bool has_cl = false, has_te = false, cl_differ = false, has_upgrade_h2c = false;
    struct expect_tokens et = {false, false};
    unsigned hosts = 0;
    req->content_length = 0;
    req->user_id = NULL;
    req->user_id_len = 0;
    req->request_id = NULL;
    req->request_id_len = 0;
    req->traceparent = NULL;
    req->traceparent_len = 0;
    req->h2_settings = NULL;
    req->h2_settings_len = 0;

    for (size_t i = 0; i < req->num_headers; i++) {
        struct phr_header *h = &req->headers[i];
        if (h->name == NULL || h->name_len == 0)
            return -400; /* obs-fold continuation line */
        /* Every byte of a name is a tchar: picohttpparser rejects any other
         * (space before the colon included) with -1, which
         * tests/net/test_h1_parser.c pins for all 256 byte values. */
        /* picohttpparser drops leading OWS only; the field value excludes trailing OWS too (RFC 9110 5.5). */
        while (h->value_len > 0 && (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
            h->value_len--;
        switch (h->name_len) {
        case 4:
            if (NAME_IS(h, "host")) {
                if (h->value_len == 0)
                    return -400; /* an empty Host names no authority (nginx: 400 too) */
                hosts++;
            }
            break;
        case 6:
            if (NAME_IS(h, "expect"))
                each_token(h->value, h->value_len, expect_token, &et);
            break;
        case 7:
            if (NAME_IS(h, "user-id")) {
                if (req->user_id != NULL)
                    return -400; /* which one is the caller? Neither is used */
                req->user_id = h->value;
                req->user_id_len = h->value_len;
            } else if (NAME_IS(h, "upgrade")) {
                has_upgrade_h2c = h->value_len == 3 && strncasecmp(h->value, "h2c", 3) == 0;
            }
            break;
        case 10:
            if (NAME_IS(h, "connection"))
                each_token(h->value, h->value_len, connection_token, &ct);
            break;
        case 11:
            if (NAME_IS(h, "traceparent")) {
                if (req->traceparent == NULL) {
                    req->traceparent = h->value;
                    req->traceparent_len = h->value_len;
                } else {
                    req->traceparent_len = 0; /* repeated: invalid (W3C Trace Context 3.2), so ignored */
                }
            }
            break;
        case 12:
            if (NAME_IS(h, "x-request-id")) {
                if (req->request_id == NULL) {
                    req->request_id = h->value;
                    req->request_id_len = h->value_len;
                } else {
                    req->request_id_len = 0; /* repeated: which one? Neither: a generated id */
                }
            }
            break;
        case 14:
            if (NAME_IS(h, "content-length")) {
                uint64_t v = 0;
                if (parse_content_length(h->value, h->value_len, &v) != 0)
                    return -400;
                if (has_cl && v != req->content_length)
                    cl_differ = true;
                has_cl = true;
                req->content_length = v;
            } else if (NAME_IS(h, "http2-settings")) {
                req->h2_settings = h->value;
                req->h2_settings_len = h->value_len;
            }
            break;
        case 17:
            if (NAME_IS(h, "transfer-encoding"))
                has_te = true;
            break;
        }
    }
    if (has_te)
        return has_cl ? -400 : -501;
    if (cl_differ)
        return -400;
    if (req->minor_version == 1 && hosts != 1)
        return -400;
    if (hosts > 1)
        return -400;
    if (req->content_length > H1_MAX_BODY)
        return -413;
    if (et.unknown)
        return -417; /* RFC 9110 10.1.1: an expectation we cannot meet */
    req->expect_continue = et.cont && req->minor_version == 1;
    req->keep_alive = req->minor_version == 1 ? !ct.close : (ct.keep_alive && !ct.close);
    req->upgrade_h2c = has_upgrade_h2c && ct.upgrade && req->h2_settings != NULL;
    return head;
}
