/* index.c - the snapshot index (layouts, build, lookup) and the thread that keeps it current. See index.h for why.
 *
 * Layout. An entry ("ref") is one 64-bit word saying where a record lives:
 *
 *   63            40 39                                  0
 *  +----------------+-------------------------------------+
 *  | length (24 b)  | offset of the value in the map (40) |
 *  +----------------+-------------------------------------+
 *
 * 0 means "no such user"; REF_ASK means "exists, but too large (>= 16 MiB) to
 * describe here: ask LMDB". LMDB does not say where its map starts
 * (MDB_envinfo.me_mapaddr is only set for MDB_FIXEDMAP), so offsets count from
 * an origin STORE_MAP_SIZE below the first record seen: every value lies in
 * the one mapping of STORE_MAP_SIZE bytes, so every offset is in
 * (0, 2 * STORE_MAP_SIZE), well inside 40 bits. Each ref is range-checked all
 * the same; one that does not fit becomes REF_ASK.
 *
 * Two shapes, whichever is smaller:
 *   dense - refs[id - base] for every id in [base, base + n): ids that were
 *           handed out by a sequence cost 8 bytes a user;
 *   hash  - open addressing, linear probing, pairs {id, ref}, capacity a power
 *           of two at least twice the users (load <= 1/2: a hit is almost
 *           always the first probe, a miss the first or second); id 0 marks
 *           an empty pair (user ids are 1 .. 2^64-1).
 * Memory comes straight from mmap, rounded to 2 MiB and marked MADV_HUGEPAGE:
 * a random lookup then costs no TLB miss for the index itself.
 */
#include "store/index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/key.h"

#define REF_OFF_BITS 40
#define REF_OFF_MASK ((UINT64_C(1) << REF_OFF_BITS) - 1)
#define REF_LEN_MAX ((UINT64_C(1) << (64 - REF_OFF_BITS)) - 1)
#define REF_ASK UINT64_MAX
#define HUGE_PAGE (2u << 20)
#define MIN_BUILD_GAP_NS UINT64_C(1000000000) /* builds at least 1 s apart ... */
#define BUILD_GAP_FACTOR 10                   /* ... and 10 x the last build's time */
#define SHARD_WAIT_MS 5                       /* poll interval while shards move off an old index */
#define INDEXER_NICE 10                       /* the build yields to the shards when CPUs are short */
#define INDEX_MAX_PIN_NS UINT64_C(5000000000) /* an index holding back newer snapshots this long is rebuilt now */

struct store_index {
    uint64_t txn_id;
    uintptr_t origin; /* refs count from here (see the layout above) */
    bool dense;
    uint64_t base;      /* dense: the id of refs[0] */
    uint64_t n;         /* dense: entries in refs; hash: pairs (a power of two) */
    unsigned shift;     /* hash: 64 - log2(n) */
    uint64_t *words;    /* dense: n refs; hash: 2n words, {id, ref} pairs */
    size_t mapped;      /* bytes of the mmap behind words */
    uint64_t entries;   /* users indexed */
    uint64_t unresolved; /* of which REF_ASK: LMDB answers for them */
    MDB_txn *pin;        /* a read transaction of snapshot txn_id, open while the index exists */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fibonacci hashing: spreads sequential ids over the whole table. */
static inline uint64_t hash_slot(const struct store_index *x, uint64_t id)
{
    return (id * UINT64_C(0x9E3779B97F4A7C15)) >> x->shift;
}

static inline int ref_resolve(const struct store_index *x, uint64_t ref, const char **val, size_t *len)
{
    if (ref == 0)
        return MDB_NOTFOUND;
    if (ref == REF_ASK)
        return 1;
    *val = (const char *)(x->origin + (ref & REF_OFF_MASK));
    *len = (size_t)(ref >> REF_OFF_BITS);
    return 0;
}

uint64_t store_index_txn(const struct store_index *x)
{
    return x->txn_id;
}

uint64_t store_indexer_pin_ns(struct store_indexer *ix)
{
    uint64_t since = atomic_load_explicit(&ix->pin_since_ns, memory_order_relaxed);
    uint64_t now = now_ns();
    return since != 0 && now > since ? now - since : 0;
}

int store_index_get(const struct store_index *x, uint64_t txn_id, uint64_t id, const char **val, size_t *len)
{
    if (x == NULL || x->txn_id != txn_id)
        return 1;
    if (x->dense) {
        uint64_t i = id - x->base; /* ids below base wrap around to a huge i */
        return i < x->n ? ref_resolve(x, x->words[i], val, len) : MDB_NOTFOUND;
    }
    uint64_t mask = x->n - 1;
    for (uint64_t h = hash_slot(x, id);; h = (h + 1) & mask) {
        uint64_t k = x->words[2 * h];
        if (k == id)
            return ref_resolve(x, x->words[2 * h + 1], val, len);
        if (k == 0)
            return MDB_NOTFOUND;
    }
}

void store_index_prefetch(const struct store_index *x, uint64_t id)
{
    if (x == NULL)
        return;
    if (x->dense) {
        uint64_t i = id - x->base;
        if (i < x->n)
            __builtin_prefetch(&x->words[i]);
    } else {
        __builtin_prefetch(&x->words[2 * hash_slot(x, id)]);
    }
}

void store_index_prefetch_record(const struct store_index *x, uint64_t txn_id, uint64_t id)
{
    const char *val;
    size_t len;
    if (store_index_get(x, txn_id, id, &val, &len) != 0)
        return;
    /* A record is ~100-200 bytes: its first two cache lines. */
    __builtin_prefetch(val);
    __builtin_prefetch(val + 64);
}

static void index_free(struct store_index *x)
{
    if (x == NULL)
        return;
    if (x->words != NULL)
        munmap(x->words, x->mapped);
    /* No shard holds the index any more: its records may be reused now. */
    if (x->pin != NULL)
        mdb_txn_abort(x->pin);
    free(x);
}

static void index_put(struct store_index *x, uint64_t id, uint64_t ref)
{
    if (x->dense) {
        x->words[id - x->base] = ref;
        return;
    }
    uint64_t mask = x->n - 1;
    uint64_t h = hash_slot(x, id);
    while (x->words[2 * h] != 0 && x->words[2 * h] != id)
        h = (h + 1) & mask;
    x->words[2 * h] = id;
    x->words[2 * h + 1] = ref;
}

/* Builds the index of the snapshot txn reads. Returns it, or NULL with *why
 * set ("too_large", "no_memory", "lmdb") and *need the bytes it would take. */
static struct store_index *index_build(MDB_txn *txn, MDB_dbi dbi, uint64_t max_bytes, const char **why, uint64_t *need)
{
    struct store_index *x = NULL;
    MDB_cursor *cur = NULL;
    MDB_stat st;
    MDB_val k, v;
    *need = 0;
    *why = "lmdb";
    if (mdb_stat(txn, dbi, &st) != 0 || mdb_cursor_open(txn, dbi, &cur) != 0)
        return NULL;
    uint64_t lo = 0, hi = 0;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    uintptr_t first = 0;
    if (rc == 0) {
        lo = store_key_decode(&k);
        first = (uintptr_t)v.mv_data;
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        hi = store_key_decode(&k);
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto fail;

    x = xcalloc(1, sizeof(*x));
    x->txn_id = (uint64_t)mdb_txn_id(txn);
    x->origin = first > STORE_MAP_SIZE ? first - STORE_MAP_SIZE : 0;
    uint64_t users = st.ms_entries;
    /* Dense costs 8 bytes per id in [lo, hi]; hash 16 per pair, >= 2 pairs per user. */
    uint64_t span = rc == MDB_NOTFOUND ? 0 : hi - lo + 1;
    uint64_t dense_bytes = span > UINT64_MAX / 16 ? UINT64_MAX : span * 8;
    uint64_t pairs = 16;
    unsigned bits = 4;
    while (pairs < users * 2 && bits < 62) {
        pairs <<= 1;
        bits++;
    }
    uint64_t hash_bytes = pairs * 16;
    x->dense = dense_bytes <= hash_bytes;
    uint64_t bytes = x->dense ? dense_bytes : hash_bytes;
    if (bytes == 0)
        bytes = 8; /* an empty store: a valid index that answers "not found" */
    *need = bytes;
    if (bytes > max_bytes || bytes > SIZE_MAX - HUGE_PAGE) {
        *why = "too_large";
        goto fail;
    }
    x->mapped = (size_t)((bytes + HUGE_PAGE - 1) & ~(uint64_t)(HUGE_PAGE - 1));
    void *mem = mmap(NULL, x->mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        *why = "no_memory";
        goto fail;
    }
    madvise(mem, x->mapped, MADV_HUGEPAGE); /* best effort: without THP it is only slower */
    x->words = mem;
    if (x->dense) {
        x->base = lo;
        x->n = span;
    } else {
        x->n = pairs;
        x->shift = 64 - bits;
    }

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id = store_key_decode(&k);
        if (id == 0)
            continue; /* not a valid user id (and not a key this store writes) */
        uintptr_t p = (uintptr_t)v.mv_data;
        uint64_t ref = REF_ASK;
        if (p > x->origin && p - x->origin <= REF_OFF_MASK && v.mv_size <= REF_LEN_MAX)
            ref = ((uint64_t)v.mv_size << REF_OFF_BITS) | (uint64_t)(p - x->origin);
        else
            x->unresolved++;
        index_put(x, id, ref);
        x->entries++;
    }
    if (rc != MDB_NOTFOUND) {
        *why = "lmdb";
        goto fail;
    }
    mdb_cursor_close(cur);
    return x;

fail:
    if (cur != NULL)
        mdb_cursor_close(cur);
    index_free(x);
    return NULL;
}

const struct store_index *store_indexer_acquire(struct store_indexer *ix, unsigned shard)
{
    if (!ix->_started)
        return NULL;
    /* Epoch first, pointer second (the indexer stores them the other way
     * round): a shard that records epoch e may hold the index of epoch e or
     * newer, never one retired before e. */
    uint64_t e = atomic_load(&ix->_epoch);
    struct store_index *x = atomic_load(&ix->_current);
    atomic_store_explicit(&ix->_seen[shard].epoch, e, memory_order_release);
    return x;
}

void store_indexer_leave(struct store_indexer *ix, unsigned shard)
{
    if (ix->_started)
        atomic_store_explicit(&ix->_seen[shard].epoch, UINT64_MAX, memory_order_release);
}

/* Publishes x and returns once no shard can still hold the index it replaced,
 * or when asked to stop; frees the replaced one either way (at stop every
 * shard has ended). Called with _mu held. */
static void publish(struct store_indexer *ix, struct store_index *x)
{
    struct store_index *old = atomic_exchange(&ix->_current, x);
    uint64_t e = atomic_fetch_add(&ix->_epoch, 1) + 1;
    while (old != NULL && !ix->_stop) {
        unsigned behind = 0;
        for (unsigned i = 0; i < ix->nshards; i++)
            if (atomic_load_explicit(&ix->_seen[i].epoch, memory_order_acquire) < e)
                behind++;
        if (behind == 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SHARD_WAIT_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ix->_cv, &ix->_mu, &ts);
    }
    index_free(old);
}

/* Tracks since when the published index's snapshot is older than the
 * newest one t (the pin then holds pages back), for the metrics and the
 * INDEX_MAX_PIN bound. Returns that time (0: not behind). */
static uint64_t pin_track(struct store_indexer *ix, uint64_t t, uint64_t now)
{
    uint64_t pub = atomic_load_explicit(&ix->txn_id, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&ix->pin_since_ns, memory_order_relaxed);
    if (pub == 0 || t == pub) {
        if (since != 0)
            atomic_store_explicit(&ix->pin_since_ns, 0, memory_order_relaxed);
        return 0;
    }
    if (since == 0) {
        since = now;
        atomic_store_explicit(&ix->pin_since_ns, since, memory_order_relaxed);
    }
    if (now - since > atomic_load_explicit(&ix->pin_max_ns, memory_order_relaxed))
        atomic_store_explicit(&ix->pin_max_ns, now - since, memory_order_relaxed);
    return since;
}

/* One look at the store: when its newest snapshot is not the indexed one and
 * the last build is long enough ago (or the published index has held back
 * newer snapshots for INDEX_MAX_PIN), index it. Called with _mu held; drops
 * it while building. */
static void index_step(struct store_indexer *ix, MDB_txn *txn, uint64_t *built_txn, uint64_t *next_ns)
{
    pthread_mutex_unlock(&ix->_mu);
    int rc = mdb_txn_renew(txn);
    if (rc != 0) {
        pthread_mutex_lock(&ix->_mu);
        log_warn("store_index_renew_failed", "err=\"%s\"", mdb_strerror(rc));
        return;
    }
    uint64_t t = (uint64_t)mdb_txn_id(txn);
    mdb_txn_reset(txn); /* only a look: a build reads through a transaction of its own, its pin */
    uint64_t start = now_ns();
    uint64_t since = pin_track(ix, t, start);
    bool overdue = since != 0 && start - since >= INDEX_MAX_PIN_NS;
    if (t == *built_txn || (start < *next_ns && !overdue)) {
        pthread_mutex_lock(&ix->_mu);
        return;
    }
    /* The index's pointers stay valid while this transaction is open: it
     * lives as long as the index (index_free ends it). */
    MDB_txn *pin = NULL;
    rc = mdb_txn_begin(ix->store->env, NULL, MDB_RDONLY, &pin);
    if (rc != 0) {
        *next_ns = start + MIN_BUILD_GAP_NS;
        pthread_mutex_lock(&ix->_mu);
        log_warn("store_index_pin_failed", "err=\"%s\"", mdb_strerror(rc));
        return;
    }
    t = (uint64_t)mdb_txn_id(pin);
    const char *why;
    uint64_t need;
    struct store_index *x = index_build(pin, ix->store->users, ix->max_bytes, &why, &need);
    uint64_t took = now_ns() - start;
    if (x != NULL)
        x->pin = pin;
    else
        mdb_txn_abort(pin);
    *built_txn = t;
    *next_ns = now_ns() + (took * BUILD_GAP_FACTOR > MIN_BUILD_GAP_NS ? took * BUILD_GAP_FACTOR : MIN_BUILD_GAP_NS);
    pthread_mutex_lock(&ix->_mu);
    bool first = atomic_load_explicit(&ix->builds, memory_order_relaxed) == 0;
    atomic_store_explicit(&ix->pin_since_ns, 0, memory_order_relaxed); /* the next look says whether it is behind */
    if (x != NULL) {
        atomic_store_explicit(&ix->txn_id, t, memory_order_relaxed);
        atomic_store_explicit(&ix->entries, x->entries, memory_order_relaxed);
        atomic_store_explicit(&ix->bytes, x->mapped, memory_order_relaxed);
        atomic_store_explicit(&ix->build_ns, took, memory_order_relaxed);
        atomic_fetch_add_explicit(&ix->builds, 1, memory_order_relaxed);
        /* One line for the first build; later ones (after each import) at debug. */
        log_write(first ? LOG_INFO : LOG_DEBUG, "store_index_built",
                  "txn=%llu users=%llu unresolved=%llu layout=%s bytes=%zu ms=%.1f", (unsigned long long)t,
                  (unsigned long long)x->entries, (unsigned long long)x->unresolved, x->dense ? "dense" : "hash",
                  x->mapped, (double)took / 1e6);
    } else {
        atomic_store_explicit(&ix->txn_id, 0, memory_order_relaxed);
        atomic_store_explicit(&ix->entries, 0, memory_order_relaxed);
        atomic_store_explicit(&ix->bytes, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&ix->skipped, 1, memory_order_relaxed);
        log_warn("store_index_skipped", "txn=%llu reason=%s need_bytes=%llu max_bytes=%llu", (unsigned long long)t, why,
                 (unsigned long long)need, (unsigned long long)ix->max_bytes);
    }
    publish(ix, x);
}

static void *indexer_main(void *arg)
{
    struct store_indexer *ix = arg;
    /* A build is background work: when CPUs are short the shards go first. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), INDEXER_NICE);
    pthread_setname_np(pthread_self(), "ringd-index");
    pthread_mutex_lock(&ix->_mu);
    while (!ix->_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)ix->refresh_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&ix->_cv, &ix->_mu, &ts);
        if (!ix->_stop)
            index_step(ix, ix->_txn, &ix->_built_txn, &ix->_next_ns);
    }
    pthread_mutex_unlock(&ix->_mu);
    return NULL;
}

int store_indexer_start(struct store_indexer *ix, struct store *s, unsigned nshards, unsigned refresh_ms,
                        uint64_t max_bytes)
{
    memset(ix, 0, sizeof(*ix));
    ix->store = s;
    ix->nshards = nshards;
    ix->refresh_ms = refresh_ms;
    ix->max_bytes = max_bytes;
    if (max_bytes == 0)
        return 0;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &ix->_txn);
    if (rc != 0)
        return rc;
    mdb_txn_reset(ix->_txn);
    ix->_seen = xaligned_zalloc(64, sizeof(struct store_index_seen) * nshards);
    pthread_mutex_init(&ix->_mu, NULL);
    pthread_cond_init(&ix->_cv, NULL);
    /* The first index is built here, before any shard runs, so the server
     * answers from it from its first request on (and under valgrind, whose
     * threads take turns, the indexer thread might otherwise wait long). */
    pthread_mutex_lock(&ix->_mu);
    index_step(ix, ix->_txn, &ix->_built_txn, &ix->_next_ns);
    pthread_mutex_unlock(&ix->_mu);
    ix->_started = true; /* before the thread and the shards: they read it unlocked */
    rc = pthread_create(&ix->_thread, NULL, indexer_main, ix);
    if (rc != 0) {
        ix->_started = false;
        index_free(atomic_exchange(&ix->_current, NULL));
        pthread_cond_destroy(&ix->_cv);
        pthread_mutex_destroy(&ix->_mu);
        free(ix->_seen);
        ix->_seen = NULL;
        mdb_txn_abort(ix->_txn);
        ix->_txn = NULL;
        return rc;
    }
    return 0;
}

void store_indexer_stop(struct store_indexer *ix)
{
    if (!ix->_started)
        return;
    pthread_mutex_lock(&ix->_mu);
    ix->_stop = true;
    pthread_cond_broadcast(&ix->_cv);
    pthread_mutex_unlock(&ix->_mu);
    pthread_join(ix->_thread, NULL);
    index_free(atomic_exchange(&ix->_current, NULL));
    mdb_txn_abort(ix->_txn);
    ix->_txn = NULL;
    pthread_cond_destroy(&ix->_cv);
    pthread_mutex_destroy(&ix->_mu);
    free(ix->_seen);
    ix->_seen = NULL;
    ix->_started = false;
}
