/* reader.c - per-shard long-lived read transactions (renew, park) and the lookup on the request path. */
#include "store/store.h"

#include "store/index.h"
#include "store/key.h"

#include <errno.h>
#include <string.h>

/* Brings the overlay to the changes between r->index's snapshot and r's
 * (a few entries per refresh under a busy feed: one cursor walk). */
static void reader_sync_overlay(struct store_reader *r)
{
    if (r->index == NULL) {
        r->overlay.usable = false;
        return;
    }
    uint64_t base = store_index_txn(r->index);
    if (base == r->txn_id) {
        r->overlay.usable = false; /* the index answers directly; keep the set for a later base */
        r->overlay.base = 0;
        return;
    }
    store_overlay_sync(&r->overlay, r->txn, r->store, base, r->txn_id);
}

int store_reader_open(struct store_reader *r, struct store *s)
{
    r->store = s;
    r->txn = NULL;
    r->active = false;
    r->indexed = false;
    r->via = STORE_VIA_LMDB;
    r->txn_id = 0;
    r->index = NULL;
    memset(&r->overlay, 0, sizeof(r->overlay));
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != 0) {
        r->txn = NULL;
        return rc;
    }
    r->active = true;
    r->txn_id = (uint64_t)mdb_txn_id(r->txn);
    return 0;
}

/* reset + renew keeps the reader slot and the txn's memory: no allocation and
 * no lock-table search, just a new snapshot id. */
int store_reader_refresh(struct store_reader *r)
{
    if (r->txn == NULL)
        return EINVAL;
    if (r->active) {
        mdb_txn_reset(r->txn);
        r->active = false;
        r->txn_id = 0;
    }
    int rc = mdb_txn_renew(r->txn);
    if (rc != 0)
        return rc; /* stays parked: the next store_get tries again */
    r->active = true;
    r->txn_id = (uint64_t)mdb_txn_id(r->txn);
    reader_sync_overlay(r);
    return 0;
}

void store_reader_park(struct store_reader *r)
{
    if (r->txn != NULL && r->active) {
        mdb_txn_reset(r->txn);
        r->active = false;
        r->txn_id = 0;
    }
}

uint64_t store_reader_txn_id(const struct store_reader *r)
{
    return r->txn_id;
}

void store_reader_close(struct store_reader *r)
{
    if (r->txn != NULL)
        mdb_txn_abort(r->txn); /* valid on a reset read txn too */
    r->txn = NULL;
    r->active = false;
    r->txn_id = 0;
    store_overlay_free(&r->overlay);
}

/* The snapshot the held index may answer for r's: its own, or an older one
 * the overlay covers (then unchanged ids only); 0: none. */
static inline uint64_t reader_index_base(const struct store_reader *r)
{
    if (r->index == NULL || !r->active)
        return 0;
    uint64_t base = store_index_txn(r->index);
    if (base == r->txn_id || store_overlay_covers(&r->overlay, base, r->txn_id))
        return base;
    return 0;
}

void store_prefetch(const struct store_reader *r, uint64_t id)
{
    if (r->active && r->index != NULL) {
        store_index_prefetch(r->index, id);
        if (r->overlay.usable)
            store_overlay_prefetch(&r->overlay, id);
    }
}

void store_prefetch_record(const struct store_reader *r, uint64_t id)
{
    /* A changed id's old record is still mapped (pinned): the hint is harmless. */
    uint64_t base = reader_index_base(r);
    if (base != 0)
        store_index_prefetch_record(r->index, base, id);
}

static int reader_lmdb_get(struct store_reader *r, uint64_t id, const char **val, size_t *len)
{
    size_t slot;
    MDB_val key, data;
    store_key_encode(id, &slot, &key);
    int rc = mdb_get(r->txn, r->store->users, &key, &data);
    if (rc != 0)
        return rc;
    *val = data.mv_data;
    *len = data.mv_size;
    return 0;
}

/* The raw value of id (both forms, store.h's layout). */
static int store_get_value(struct store_reader *r, uint64_t id, const char **val, size_t *len)
{
    if (!r->active) {
        int rc = store_reader_refresh(r);
        if (rc != 0)
            return rc;
    }
    int rc;
    r->indexed = false;
    r->via = STORE_VIA_LMDB;
    if (r->index != NULL) {
        /* The index answers for its own snapshot, and for a newer one the
         * ids no transaction since has touched (changes.h): their records
         * are the same bytes, kept in place by the index's pinned snapshot. */
        uint64_t base = reader_index_base(r);
        r->via = STORE_VIA_FALLBACK;
        /* On a newer snapshot than the index's, an id changed since has an
         * entry in the overlay (id 0 cannot be listed: it goes to LMDB). */
        bool from_index = base != 0 && base == r->txn_id;
        struct store_overlay_val *changed = NULL;
        if (base != 0 && base != r->txn_id && id != 0) {
            changed = store_overlay_find(&r->overlay, id);
            from_index = changed == NULL;
        }
        if (from_index) {
            rc = store_index_get(r->index, base, id, val, len);
            if (rc != 1) {
                r->indexed = true;
                r->via = base == r->txn_id ? STORE_VIA_INDEX : STORE_VIA_OVERLAY;
                return rc;
            }
        } else if (changed != NULL && changed->data == NULL) {
            /* The first lookup since the id's last change: LMDB, kept for the next ones. */
            rc = reader_lmdb_get(r, id, val, len);
            if (rc == 0 || rc == MDB_NOTFOUND) {
                changed->data = rc == 0 ? *val : "";
                changed->len = rc == 0 ? *len : STORE_OVERLAY_ABSENT;
            }
            return rc;
        } else if (changed != NULL) {
            r->via = STORE_VIA_CHANGED;
            if (changed->len == STORE_OVERLAY_ABSENT)
                return MDB_NOTFOUND;
            *val = changed->data;
            *len = changed->len;
            return 0;
        }
    }
    return reader_lmdb_get(r, id, val, len);
}

int store_get_user(struct store_reader *r, uint64_t id, struct store_user *u)
{
    const char *val;
    size_t len;
    int rc = store_get_value(r, id, &val, &len);
    if (rc != 0)
        return rc;
    return store_value_split(val, len, u);
}

int store_get(struct store_reader *r, uint64_t id, const char **val, size_t *len)
{
    struct store_user u;
    int rc = store_get_user(r, id, &u);
    if (rc != 0)
        return rc;
    *val = u.json;
    *len = u.json_len;
    return 0;
}
