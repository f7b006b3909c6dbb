/* tls.c - OpenSSL 3.0 over the shard's byte path: contexts built and published off the shards, shared rotating
 * ticket keys, and the per-connection engine on one custom BIO (see tls.h for the design). */
#include "net/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* TLS 1.2: forward-secret AEAD suites only, ECDSA before RSA, AES-128 first (as fast, and as strong as needed).
 * TLS 1.3: the same order. The server's preference decides (SSL_OP_CIPHER_SERVER_PREFERENCE). */
#define TLS12_CIPHERS                                                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                                     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"
#define TLS_RETIRED_POLL_MS 1000

/* ALPN, in the server's order of preference (wire format: length-prefixed names). */
static const unsigned char alpn_protos[] = "\x02h2\x08http/1.1";

/* What new handshakes use: immutable once published. */
struct tls_snapshot {
    SSL_CTX *ctx; /* a reference of its own (SSL_CTX_free on reclaim) */
    unsigned nkeys;
    struct tls_ticket_key keys[TLS_MAX_TICKET_KEYS]; /* [0] encrypts, all decrypt */
    int64_t not_after;
    uint64_t _retired_gen; /* main thread: the generation that replaced it */
    struct tls_snapshot *_next_retired;
};

/* The generation a shard last took, on its own cache line (written once per publication). */
struct tls_seen {
    _Alignas(64) _Atomic uint64_t gen;
};

struct tls_server {
    struct tls_config cfg;
    BIO_METHOD *bio_method; /* read-only after start-up */
    _Atomic(struct tls_snapshot *) current;
    _Atomic uint64_t gen;          /* bumped after each publication of current */
    struct tls_seen *seen;         /* cfg.nshards entries */
    struct tls_snapshot *retired;  /* main thread only: replaced, maybe still in a shard's view */
    struct timespec next_rotation; /* CLOCK_MONOTONIC */
    _Atomic uint64_t reloads_ok, reloads_failed, rotations;
    _Atomic int64_t not_after;
};

struct tls_shard {
    struct tls_server *srv;
    unsigned id;
    uint64_t gen;
    const struct tls_snapshot *snap; /* valid until this shard publishes a later generation */
};

struct tls_conn {
    SSL *ssl;
    struct tls_shard *sh; /* the ticket keys, through the shard's current snapshot */
    const unsigned char *in;
    size_t in_len;
    struct buf wire;
    bool seen_bytes; /* some ciphertext arrived: the first byte was checked */
    bool established;
    bool failed;
    bool notify_sent;
    uint8_t error; /* enum metrics_tls_error, after TLS_HS_FAILED */
};

/* ---------- the BIO: ciphertext in from the caller's window, out into the wire buffer ---------- */

static int bio_write(BIO *b, const char *data, int len)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    buf_append(&t->wire, data, (size_t)len);
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    struct tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b); /* non-blocking: the record waits for the next recv */
        return -1;
    }
    size_t n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* writes are appended at once: flushing is a no-op */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---------- ticket keys ---------- */

int tls_ticket_keys_load(const char *path, struct tls_ticket_key *keys, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char raw[TLS_TICKET_KEY_BYTES * TLS_MAX_TICKET_KEYS + 1];
    size_t n = fread(raw, 1, sizeof(raw), f);
    fclose(f);
    if (n == 0 || n % TLS_TICKET_KEY_BYTES != 0 || n > TLS_TICKET_KEY_BYTES * TLS_MAX_TICKET_KEYS) {
        snprintf(err, errlen, "%s: %zu bytes; a ticket key file holds 1 to %d keys of %d bytes (e.g. openssl rand %d > FILE)", path,
                 n, TLS_MAX_TICKET_KEYS, TLS_TICKET_KEY_BYTES, TLS_TICKET_KEY_BYTES);
        return -1;
    }
    int count = (int)(n / TLS_TICKET_KEY_BYTES);
    for (int i = 0; i < count; i++) {
        const unsigned char *p = raw + (size_t)i * TLS_TICKET_KEY_BYTES;
        memcpy(keys[i].name, p, 16);
        memcpy(keys[i].hmac, p + 16, 32);
        memcpy(keys[i].aes, p + 48, 32);
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    return count;
}

static void random_key(struct tls_ticket_key *k)
{
    if (RAND_bytes((unsigned char *)k, sizeof(*k)) != 1) {
        log_error("tls_random_failed", "%s", "what=\"ticket key\"");
        abort(); /* no entropy: nothing sensible to serve with */
    }
}

static int set_mac_key(EVP_MAC_CTX *hctx, const struct tls_ticket_key *k)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL asks for a key to seal a new ticket (enc = 1) or to open one (enc = 0). The keys come from the
 * shard's snapshot, the same on every shard, so a ticket from one shard resumes on any other (and on another
 * instance with the same --tls-ticket-key-file). Returns 1 (ok), 2 (ok, but issue a fresh ticket: it was
 * sealed with an older key), 0 (unknown key: full handshake), -1 (error). */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct tls_conn *t = SSL_get_app_data(ssl);
    const struct tls_snapshot *snap = t->sh->snap;
    if (enc) {
        const struct tls_ticket_key *k = &snap->keys[0];
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(key_name, k->name, 16);
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || set_mac_key(hctx, k) != 1)
            return -1;
        return 1;
    }
    for (unsigned i = 0; i < snap->nkeys; i++) {
        const struct tls_ticket_key *k = &snap->keys[i];
        if (memcmp(key_name, k->name, 16) != 0)
            continue;
        if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || set_mac_key(hctx, k) != 1)
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

/* ---------- contexts ---------- */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen,
                   void *arg)
{
    (void)ssl, (void)arg;
    unsigned char *chosen;
    /* The first of ours the client also offers (our preference: h2). No overlap: carry on without ALPN,
     * which means HTTP/1.1, rather than failing the handshake. */
    if (SSL_select_next_proto(&chosen, outlen, alpn_protos, sizeof(alpn_protos) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* The oldest error of OpenSSL's queue as text, and clears the queue. */
static void ssl_err_text(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(out, outlen, "unknown error");
    else
        ERR_error_string_n(e, out, outlen);
    ERR_clear_error();
}

/* Whether the key is one we serve; describes it into what. */
static bool key_type_ok(EVP_PKEY *pk, char *what, size_t whatlen)
{
    int bits = EVP_PKEY_get_bits(pk);
    if (EVP_PKEY_is_a(pk, "RSA")) {
        snprintf(what, whatlen, "rsa-%d", bits);
        return bits >= 2048;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &gl);
        snprintf(what, whatlen, "ecdsa-%s", group);
        return strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0;
    }
    snprintf(what, whatlen, "%s", EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "unknown");
    return false;
}

/* Unix time of an ASN1_TIME, or 0. */
static int64_t asn1_unix(const ASN1_TIME *at)
{
    struct tm tm;
    if (at == NULL || ASN1_TIME_to_tm(at, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Builds and checks a context from the configured files. Returns it (one reference), or NULL with err. */
static SSL_CTX *build_ctx(const struct tls_config *cfg, int64_t *not_after, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_err_text(why, sizeof(why));
        snprintf(err, errlen, "SSL_CTX_new: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* IGNORE_UNEXPECTED_EOF: a client that vanishes without close_notify is ordinary (counted by conn.c);
     * NO_RENEGOTIATION: a client-initiated renegotiation is CPU for free; tickets are stateless, so the
     * session cache (a lock shared by the shards) stays off. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* an idle connection keeps no 16 KiB record buffers */
    SSL_CTX_set_read_ahead(ctx, 1);                  /* take a whole recv at once, not 5 bytes then the rest */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1); /* one ticket per handshake (OpenSSL's default is two) */
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_timeout(ctx, TLS_TICKET_ROTATE_S); /* the ticket lifetime hint: a key decrypts for at least this */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ringd", 5);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        ssl_err_text(why, sizeof(why));
        snprintf(err, errlen, "cipher configuration: %s", why);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        ssl_err_text(why, sizeof(why));
        snprintf(err, errlen, "certificate %s: %s", cfg->cert_file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        ssl_err_text(why, sizeof(why));
        if (mismatch)
            snprintf(err, errlen, "key %s does not match certificate %s", cfg->key_file, cfg->cert_file);
        else
            snprintf(err, errlen, "key %s: %s", cfg->key_file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err_text(why, sizeof(why));
        snprintf(err, errlen, "key %s does not match certificate %s: %s", cfg->key_file, cfg->cert_file, why);
        goto fail;
    }
    char keytype[80];
    if (!key_type_ok(SSL_CTX_get0_privatekey(ctx), keytype, sizeof(keytype))) {
        snprintf(err, errlen, "key %s is %s; ringd serves ECDSA P-256/P-384 or RSA of 2048 bits or more", cfg->key_file, keytype);
        goto fail;
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char subject[256] = "", serial[80] = "";
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(serial, sizeof(serial), "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    *not_after = asn1_unix(X509_get0_notAfter(x));
    log_info("tls_context_loaded", "cert=%s key=%s key_type=%s subject=\"%s\" serial=%s not_after=%lld", cfg->cert_file,
             cfg->key_file, keytype, subject, serial, (long long)*not_after);
    return ctx;

fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static void snapshot_free(struct tls_snapshot *snap)
{
    SSL_CTX_free(snap->ctx);
    OPENSSL_cleanse(snap->keys, sizeof(snap->keys));
    free(snap);
}

/* Makes snap the one new handshakes use; the old one waits until every shard has moved past it. */
static void publish(struct tls_server *ts, struct tls_snapshot *snap)
{
    struct tls_snapshot *old = atomic_load_explicit(&ts->current, memory_order_relaxed);
    atomic_store_explicit(&ts->current, snap, memory_order_release);
    /* A shard that reads the new generation (acquire) then reads current and finds snap or a later one. */
    uint64_t gen = atomic_fetch_add_explicit(&ts->gen, 1, memory_order_acq_rel) + 1;
    atomic_store_explicit(&ts->not_after, snap->not_after, memory_order_relaxed);
    old->_retired_gen = gen;
    old->_next_retired = ts->retired;
    ts->retired = old;
}

static void schedule_rotation(struct tls_server *ts)
{
    clock_gettime(CLOCK_MONOTONIC, &ts->next_rotation);
    ts->next_rotation.tv_sec += TLS_TICKET_ROTATE_S;
}

/* The keys for a new snapshot: from the file, or (none configured) the current ones. Returns the count or -1. */
static int keys_for(struct tls_server *ts, const struct tls_snapshot *cur, struct tls_ticket_key *keys, char *err, size_t errlen)
{
    if (ts->cfg.ticket_key_file != NULL)
        return tls_ticket_keys_load(ts->cfg.ticket_key_file, keys, err, errlen);
    memcpy(keys, cur->keys, sizeof(cur->keys[0]) * cur->nkeys);
    return (int)cur->nkeys;
}

struct tls_server *tls_server_new(const struct tls_config *cfg, char *err, size_t errlen)
{
    struct tls_server *ts = xcalloc(1, sizeof(*ts));
    ts->cfg = *cfg;
    struct tls_snapshot *snap = xcalloc(1, sizeof(*snap));
    if (cfg->ticket_key_file != NULL) {
        int n = tls_ticket_keys_load(cfg->ticket_key_file, snap->keys, err, errlen);
        if (n < 0)
            goto fail;
        snap->nkeys = (unsigned)n;
    } else {
        random_key(&snap->keys[0]);
        snap->nkeys = 1;
    }
    snap->ctx = build_ctx(cfg, &snap->not_after, err, errlen);
    if (snap->ctx == NULL)
        goto fail;
    ts->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringd-wire");
    if (ts->bio_method == NULL) {
        snprintf(err, errlen, "BIO_meth_new failed");
        goto fail;
    }
    BIO_meth_set_write(ts->bio_method, bio_write);
    BIO_meth_set_read(ts->bio_method, bio_read);
    BIO_meth_set_ctrl(ts->bio_method, bio_ctrl);
    BIO_meth_set_create(ts->bio_method, bio_create);
    ts->seen = xaligned_zalloc(64, sizeof(struct tls_seen) * cfg->nshards);
    atomic_store(&ts->current, snap);
    atomic_store(&ts->not_after, snap->not_after);
    schedule_rotation(ts);
    log_info("tls_ticket_keys", "source=%s keys=%u rotate_s=%d", cfg->ticket_key_file ? cfg->ticket_key_file : "random",
             snap->nkeys, cfg->ticket_key_file ? 0 : TLS_TICKET_ROTATE_S);
    return ts;

fail:
    if (snap->ctx != NULL)
        SSL_CTX_free(snap->ctx);
    free(snap);
    free(ts);
    return NULL;
}

int tls_server_reload(struct tls_server *ts)
{
    char err[512];
    struct tls_snapshot *cur = atomic_load_explicit(&ts->current, memory_order_relaxed);
    struct tls_snapshot *snap = xcalloc(1, sizeof(*snap));
    int n = keys_for(ts, cur, snap->keys, err, sizeof(err));
    if (n < 0)
        goto fail;
    snap->nkeys = (unsigned)n;
    snap->ctx = build_ctx(&ts->cfg, &snap->not_after, err, sizeof(err));
    if (snap->ctx == NULL)
        goto fail;
    publish(ts, snap);
    atomic_fetch_add_explicit(&ts->reloads_ok, 1, memory_order_relaxed);
    log_info("tls_reloaded", "generation=%llu", (unsigned long long)atomic_load(&ts->gen));
    return 0;

fail:
    free(snap);
    atomic_fetch_add_explicit(&ts->reloads_failed, 1, memory_order_relaxed);
    log_error("tls_reload_failed", "err=\"%s\" note=\"still serving the previous certificate\"", err);
    return -1;
}

/* The hourly rotation: a fresh key encrypts, the one before still decrypts. With a key file, the file is
 * read again instead and published only if it changed (the operator rotates it for every instance). */
static void rotate(struct tls_server *ts)
{
    struct tls_snapshot *cur = atomic_load_explicit(&ts->current, memory_order_relaxed);
    struct tls_snapshot *snap = xcalloc(1, sizeof(*snap));
    if (ts->cfg.ticket_key_file != NULL) {
        char err[512];
        int n = tls_ticket_keys_load(ts->cfg.ticket_key_file, snap->keys, err, sizeof(err));
        if (n < 0 || ((unsigned)n == cur->nkeys && memcmp(snap->keys, cur->keys, sizeof(snap->keys[0]) * (size_t)n) == 0)) {
            if (n < 0)
                log_warn("tls_ticket_key_file_unreadable", "err=\"%s\" note=\"keeping the keys in use\"", err);
            OPENSSL_cleanse(snap->keys, sizeof(snap->keys));
            free(snap);
            return;
        }
        snap->nkeys = (unsigned)n;
    } else {
        random_key(&snap->keys[0]);
        snap->keys[1] = cur->keys[0];
        snap->nkeys = 2;
    }
    SSL_CTX_up_ref(cur->ctx);
    snap->ctx = cur->ctx;
    snap->not_after = cur->not_after;
    publish(ts, snap);
    atomic_fetch_add_explicit(&ts->rotations, 1, memory_order_relaxed);
    log_info("tls_ticket_key_rotated", "keys=%u", snap->nkeys);
}

unsigned tls_server_maintain(struct tls_server *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec >= ts->next_rotation.tv_sec) {
        rotate(ts);
        schedule_rotation(ts);
    }
    /* Free what every shard has moved past: a shard that took generation g no longer looks at anything
     * retired at or before g. */
    uint64_t min_seen = UINT64_MAX;
    for (unsigned i = 0; i < ts->cfg.nshards; i++) {
        uint64_t g = atomic_load_explicit(&ts->seen[i].gen, memory_order_acquire);
        min_seen = g < min_seen ? g : min_seen;
    }
    struct tls_snapshot **pp = &ts->retired;
    while (*pp != NULL) {
        struct tls_snapshot *r = *pp;
        if (r->_retired_gen <= min_seen) {
            *pp = r->_next_retired;
            snapshot_free(r);
        } else {
            pp = &r->_next_retired;
        }
    }
    if (ts->retired != NULL)
        return TLS_RETIRED_POLL_MS;
    int64_t left_ms = (int64_t)(ts->next_rotation.tv_sec - now.tv_sec) * 1000;
    return left_ms > 0 && left_ms < 3600000 ? (unsigned)left_ms : 3600000;
}

void tls_server_stats(const struct tls_server *ts, struct tls_stats *st)
{
    st->reloads_ok = atomic_load_explicit(&ts->reloads_ok, memory_order_relaxed);
    st->reloads_failed = atomic_load_explicit(&ts->reloads_failed, memory_order_relaxed);
    st->key_rotations = atomic_load_explicit(&ts->rotations, memory_order_relaxed);
    st->cert_not_after = atomic_load_explicit(&ts->not_after, memory_order_relaxed);
}

void tls_server_free(struct tls_server *ts)
{
    if (ts == NULL)
        return;
    while (ts->retired != NULL) {
        struct tls_snapshot *r = ts->retired;
        ts->retired = r->_next_retired;
        snapshot_free(r);
    }
    snapshot_free(atomic_load(&ts->current));
    BIO_meth_free(ts->bio_method);
    free(ts->seen);
    free(ts);
}

bool tls_probe_ktls(void)
{
    /* The ULP is looked up before the socket's state is checked: ENOENT means the kernel has no TLS
     * module; ENOTCONN (this socket is not connected) means it has one. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_info("ktls_probe", "available=false err=\"%s\" note=\"TLS runs in user space\"", strerror(errno));
        return false;
    }
    int rc = setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls"));
    int e = rc == 0 ? 0 : errno;
    close(fd);
    bool available = rc == 0 || e == ENOTCONN;
    log_info("ktls_probe", "available=%s err=\"%s\" note=\"TLS runs in user space (memory BIO on the io_uring path)\"",
             available ? "true" : "false", e == 0 ? "none" : strerror(e));
    return available;
}

/* ---------- shards ---------- */

struct tls_shard *tls_shard_new(struct tls_server *ts, unsigned shard_id)
{
    struct tls_shard *sh = xcalloc(1, sizeof(*sh));
    sh->srv = ts;
    sh->id = shard_id;
    sh->gen = UINT64_MAX;
    tls_shard_sync(sh);
    return sh;
}

void tls_shard_sync(struct tls_shard *sh)
{
    struct tls_server *ts = sh->srv;
    uint64_t gen = atomic_load_explicit(&ts->gen, memory_order_acquire);
    if (gen == sh->gen)
        return;
    sh->snap = atomic_load_explicit(&ts->current, memory_order_acquire);
    sh->gen = gen;
    /* Release: our switch to the new snapshot happens before the main thread may free the old one. */
    atomic_store_explicit(&ts->seen[sh->id].gen, gen, memory_order_release);
}

void tls_shard_free(struct tls_shard *sh)
{
    free(sh);
}

/* ---------- connections ---------- */

struct tls_conn *tls_conn_new(struct tls_shard *sh)
{
    struct tls_conn *t = xcalloc(1, sizeof(*t));
    t->sh = sh;
    t->ssl = SSL_new(sh->snap->ctx); /* the SSL keeps its context alive, whatever is reloaded later */
    BIO *bio = t->ssl != NULL ? BIO_new(sh->srv->bio_method) : NULL;
    if (bio == NULL) {
        log_error("out_of_memory", "%s", "what=\"SSL_new\"");
        abort();
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways: one reference, freed with the SSL */
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    buf_free(&t->wire);
    free(t);
}

void tls_conn_input(struct tls_conn *t, const void *data, size_t len)
{
    t->in = data;
    t->in_len = len;
}

/* Why the handshake failed, from OpenSSL's error queue (then cleared). */
static enum metrics_tls_error classify(void)
{
    enum metrics_tls_error why = TLS_ERR_PROTOCOL;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        if (ERR_GET_LIB(e) != ERR_LIB_SSL)
            continue;
        switch (ERR_GET_REASON(e)) {
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_UNSUPPORTED_SSL_VERSION:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
            why = TLS_ERR_VERSION;
            break;
        case SSL_R_NO_SHARED_CIPHER:
        case SSL_R_NO_SHARED_GROUPS:
            why = TLS_ERR_CIPHER;
            break;
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
            why = TLS_ERR_HTTP;
            break;
        case SSL_R_WRONG_VERSION_NUMBER:
            why = TLS_ERR_NOT_TLS;
            break;
        default:
            break;
        }
    }
    return why;
}

static void fail(struct tls_conn *t, enum metrics_tls_error why)
{
    t->failed = true;
    t->error = (uint8_t)why;
}

enum tls_hs tls_conn_handshake(struct tls_conn *t)
{
    if (t->failed)
        return TLS_HS_FAILED;
    if (!t->seen_bytes && t->in_len > 0) {
        t->seen_bytes = true;
        /* A TLS connection opens with a handshake record (content type 22). Anything else is not TLS: a
         * plain HTTP request (an upper-case method) or garbage. OpenSSL would answer either with an alert
         * a plain-text client cannot read; conn.c answers the former with a readable 400 instead. */
        unsigned char first = t->in[0];
        if (first != 0x16) {
            fail(t, first >= 'A' && first <= 'Z' ? TLS_ERR_HTTP : TLS_ERR_NOT_TLS);
            return TLS_HS_FAILED;
        }
    }
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->established = true;
        return TLS_HS_DONE;
    }
    if (SSL_get_error(t->ssl, rc) == SSL_ERROR_WANT_READ)
        return TLS_HS_MORE; /* queues no error: nothing to clear */
    fail(t, classify());
    return TLS_HS_FAILED;
}

ssize_t tls_conn_read(struct tls_conn *t, char *out, size_t cap)
{
    if (t->failed)
        return TLS_READ_ERROR;
    /* The input used up and nothing buffered in OpenSSL (read-ahead keeps
     * what follows a record): no record can come out, and skipping the
     * SSL_read that would only say so saves a good part of a small request's
     * TLS work. */
    if (t->in_len == 0 && !SSL_has_pending(t->ssl))
        return TLS_READ_MORE;
    int n = SSL_read(t->ssl, out, (int)(cap < INT32_MAX ? cap : INT32_MAX));
    if (n > 0)
        return n;
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return TLS_READ_MORE; /* queues no error: nothing to clear */
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return TLS_READ_CLOSED;
    }
    ERR_clear_error();
    t->failed = true; /* OpenSSL forbids SSL_shutdown after a fatal error: no close_notify either */
    return TLS_READ_ERROR;
}

int tls_conn_write(struct tls_conn *t, const void *p, size_t n)
{
    if (t->failed || !t->established)
        return -1;
    size_t written = 0;
    /* The BIO takes everything at once, so SSL_write_ex never stops short unless the SSL failed. */
    if (SSL_write_ex(t->ssl, p, n, &written) != 1 || written != n) {
        ERR_clear_error();
        t->failed = true;
        return -1;
    }
    return 0;
}

bool tls_conn_close_notify(struct tls_conn *t)
{
    if (!tls_conn_owes_close_notify(t))
        return false;
    t->notify_sent = true;
    size_t before = t->wire.len;
    SSL_shutdown(t->ssl); /* writes close_notify; we do not wait for the client's */
    ERR_clear_error();
    return t->wire.len > before;
}

struct buf *tls_conn_wire(struct tls_conn *t)
{
    return &t->wire;
}

bool tls_conn_established(const struct tls_conn *t)
{
    return t->established;
}

bool tls_conn_failed(const struct tls_conn *t)
{
    return t->failed;
}

bool tls_conn_owes_close_notify(const struct tls_conn *t)
{
    return t->established && !t->failed && !t->notify_sent;
}

bool tls_conn_peer_closed(const struct tls_conn *t)
{
    return (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

bool tls_conn_alpn_h2(const struct tls_conn *t)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

bool tls_conn_resumed(const struct tls_conn *t)
{
    return SSL_session_reused(t->ssl) == 1;
}

enum metrics_tls_version tls_conn_version(const struct tls_conn *t)
{
    return SSL_version(t->ssl) == TLS1_3_VERSION ? TLS_V13 : TLS_V12;
}

enum metrics_tls_error tls_conn_error(const struct tls_conn *t)
{
    return (enum metrics_tls_error)t->error;
}
