/* changes.c - the change log (see changes.h): writers record each transaction's changed ids, shards read them into an overlay. */
#include "store/changes.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/key.h"
#include "store/store.h"

#define TRIM_PER_COMMIT 64    /* entries one commit deletes at most: amortised, the log still shrinks */
#define OVERLAY_MIN_CAP 1024u /* slots: 8 KiB, a quiet feed's set stays in L1/L2 */
#define OVERLAY_FILTER_WORDS(cap) ((cap) / 8) /* 64 bits per 8 slots: >= 16 bits per id at load 1/2 */
#define OVERLAY_MAX_WALK 16384u /* entries one sync reads at most (a shard parked for long): more and it gives up */

/* ---- writer side ---- */

void store_changes_note(struct store_changes *c, uint64_t id)
{
    if (c->all)
        return;
    if (id == STORE_CHANGES_ALL || c->n >= STORE_CHANGES_MAX_IDS) {
        c->all = true;
        return;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->ids = xrealloc(c->ids, c->cap * sizeof(*c->ids));
    }
    c->ids[c->n++] = id;
}

void store_changes_note_all(struct store_changes *c)
{
    c->all = true;
}

void store_changes_clear(struct store_changes *c)
{
    c->n = 0;
    c->all = false;
}

void store_changes_free(struct store_changes *c)
{
    free(c->ids);
    memset(c, 0, sizeof(*c));
}

/* Deletes up to TRIM_PER_COMMIT entries at or below bound, oldest first. */
static int changes_trim(MDB_txn *txn, MDB_dbi dbi, uint64_t bound)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    for (int i = 0; i < TRIM_PER_COMMIT; i++) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc != 0 || store_key_decode(&k) > bound)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_commit(MDB_txn *txn, const struct store *s, struct store_changes *c)
{
    return store_commit_keep(txn, s, c, STORE_CHANGES_KEEP);
}

int store_commit_keep(MDB_txn *txn, const struct store *s, struct store_changes *c, uint64_t keep)
{
    int rc = 0;
    if (s->has_changes) {
        uint64_t t = (uint64_t)mdb_txn_id(txn);
        uint64_t any = STORE_CHANGES_ALL;
        MDB_val key, val = {0, NULL};
        if (c != NULL && c->all) {
            val.mv_size = sizeof(any);
            val.mv_data = &any;
        } else if (c != NULL && c->n > 0) {
            val.mv_size = c->n * sizeof(*c->ids);
            val.mv_data = c->ids;
        }
        size_t slot;
        store_key_encode(t, &slot, &key);
        /* Transaction ids only grow: the entry goes at the end of the tree. */
        rc = mdb_put(txn, s->changes, &key, &val, MDB_APPEND);
        if (rc == MDB_KEYEXIST)
            rc = mdb_put(txn, s->changes, &key, &val, 0);
        if (rc == 0 && t > keep)
            rc = changes_trim(txn, s->changes, t - keep);
    }
    if (c != NULL)
        store_changes_clear(c);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* ---- reader side ---- */

static inline size_t overlay_slot(size_t cap, uint64_t id)
{
    /* Fibonacci hashing (as the index does): sequential ids spread out. */
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (cap - 1);
}

/* The filter word of id and its two bits: from a second multiplicative hash,
 * so that ids sharing a slot neighbourhood do not share filter bits too. */
static inline size_t overlay_filter_word(size_t cap, uint64_t id, uint64_t *bits)
{
    uint64_t h = (id ^ (id >> 31)) * UINT64_C(0xD6E8FEB86659FD93);
    *bits = (UINT64_C(1) << (h >> 58)) | (UINT64_C(1) << ((h >> 52) & 63));
    return (size_t)h & (OVERLAY_FILTER_WORDS(cap) - 1);
}

/* Adds id (a change since the last sync: a value looked up before it is
 * stale) and returns its slot. */
static size_t overlay_insert(struct store_overlay *o, uint64_t id)
{
    size_t h = overlay_slot(o->cap, id);
    while (o->slots[h] != 0) {
        if (o->slots[h] == id) {
            o->vals[h].data = NULL;
            return h;
        }
        h = (h + 1) & (o->cap - 1);
    }
    o->slots[h] = id;
    o->vals[h].data = NULL;
    uint64_t bits;
    o->filter[overlay_filter_word(o->cap, id, &bits)] |= bits;
    o->n++;
    return h;
}

/* The slot of id, or SIZE_MAX when it did not change. */
static inline size_t overlay_find(const struct store_overlay *o, uint64_t id)
{
    if (o->n == 0)
        return SIZE_MAX;
    uint64_t bits;
    if ((o->filter[overlay_filter_word(o->cap, id, &bits)] & bits) != bits)
        return SIZE_MAX;
    for (size_t h = overlay_slot(o->cap, id);; h = (h + 1) & (o->cap - 1)) {
        uint64_t k = o->slots[h];
        if (k == id)
            return h;
        if (k == 0)
            return SIZE_MAX;
    }
}

struct store_overlay_val *store_overlay_find(struct store_overlay *o, uint64_t id)
{
    size_t h = id == 0 ? SIZE_MAX : overlay_find(o, id);
    return h == SIZE_MAX ? NULL : &o->vals[h];
}

void store_overlay_prefetch(const struct store_overlay *o, uint64_t id)
{
    if (o->n == 0)
        return;
    uint64_t bits;
    __builtin_prefetch(&o->filter[overlay_filter_word(o->cap, id, &bits)]);
}

/* Makes room for one more id (load <= 1/2). Returns false past STORE_OVERLAY_MAX_IDS. */
static bool overlay_reserve(struct store_overlay *o)
{
    if (o->n + 1 > STORE_OVERLAY_MAX_IDS)
        return false;
    if (o->cap != 0 && (o->n + 1) * 2 <= o->cap)
        return true;
    struct store_overlay old = *o;
    o->cap = o->cap ? o->cap * 2 : OVERLAY_MIN_CAP;
    o->slots = xcalloc(o->cap, sizeof(*o->slots));
    o->vals = xcalloc(o->cap, sizeof(*o->vals));
    o->filter = xcalloc(OVERLAY_FILTER_WORDS(o->cap), sizeof(*o->filter));
    o->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i] != 0)
            o->vals[overlay_insert(o, old.slots[i])] = old.vals[i]; /* a move, not a change: the value stays */
    free(old.slots);
    free(old.vals);
    free(old.filter);
    return true;
}

static void overlay_reset(struct store_overlay *o, uint64_t base)
{
    if (o->n > 0) {
        memset(o->slots, 0, o->cap * sizeof(*o->slots));
        memset(o->vals, 0, o->cap * sizeof(*o->vals));
        memset(o->filter, 0, OVERLAY_FILTER_WORDS(o->cap) * sizeof(*o->filter));
    }
    o->n = 0;
    o->base = base;
    o->upto = base;
    o->usable = true;
}

/* The log could not tell: unusable for this base until the index changes. */
static void overlay_give_up(struct store_overlay *o, uint64_t base, uint64_t upto)
{
    if (o->usable || o->base != base)
        o->gaps++;
    o->base = base;
    o->upto = upto;
    o->usable = false;
}

void store_overlay_sync(struct store_overlay *o, MDB_txn *txn, const struct store *s, uint64_t base, uint64_t upto)
{
    if (!s->has_changes || base == 0 || upto < base) {
        o->usable = false;
        o->base = 0;
        return;
    }
    if (o->base == base && !o->usable && o->upto <= upto)
        return; /* gave up on this base already: entries do not come back */
    if (!o->usable || o->base != base || o->upto > upto)
        overlay_reset(o, base);
    if (o->upto == upto)
        return;
    MDB_cursor *cur;
    if (upto - o->upto > OVERLAY_MAX_WALK || mdb_cursor_open(txn, s->changes, &cur) != 0) {
        overlay_give_up(o, base, upto);
        return;
    }
    uint64_t want = o->upto + 1;
    size_t slot;
    MDB_val k, v;
    store_key_encode(want, &slot, &k);
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    bool ok = true;
    for (; rc == 0 && want <= upto; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), want++) {
        if (store_key_decode(&k) != want || v.mv_size % sizeof(uint64_t) != 0) {
            ok = false; /* a transaction without an entry (an older writer, or trimmed) */
            break;
        }
        const unsigned char *p = v.mv_data;
        for (size_t i = 0; i < v.mv_size / sizeof(uint64_t); i++) {
            uint64_t id;
            memcpy(&id, p + i * sizeof(id), sizeof(id)); /* map data is not guaranteed aligned */
            if (id == STORE_CHANGES_ALL || !overlay_reserve(o)) {
                ok = false;
                break;
            }
            overlay_insert(o, id);
        }
        if (!ok)
            break;
    }
    mdb_cursor_close(cur);
    if (!ok || want != upto + 1) {
        overlay_give_up(o, base, upto);
        return;
    }
    o->upto = upto;
}

void store_overlay_free(struct store_overlay *o)
{
    free(o->slots);
    free(o->vals);
    free(o->filter);
    memset(o, 0, sizeof(*o));
}
