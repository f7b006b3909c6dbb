/* feed.c - a feed's state under metadata keys (see feed.h): the keys, the follower's lock and heartbeat, the lag serve reports. */
#include "store/feed.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define K_LSN "feed.lsn"
#define K_COMMIT "feed.commit_us"
#define K_SYNCED "feed.synced_us"
#define K_CAUGHT_UP "feed.caught_up"
#define K_TXNS "feed.txns"
#define K_ROWS "feed.rows"
#define K_SKIPPED "feed.skipped"
#define K_SLOT "feed.slot"
#define K_TABLE "feed.table"

uint64_t store_feed_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static MDB_val feed_key(const char *k)
{
    MDB_val v = {strlen(k), (void *)k};
    return v;
}

/* Reads a u64 key; absent reads as 0 (*found false). */
static int feed_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t *out, bool *found)
{
    MDB_val key = feed_key(k), val;
    *out = 0;
    if (found != NULL)
        *found = false;
    int rc = mdb_get(txn, dbi, &key, &val);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (val.mv_size == sizeof(uint64_t)) {
        memcpy(out, val.mv_data, sizeof(uint64_t)); /* map data is not guaranteed aligned */
        if (found != NULL)
            *found = true;
    }
    return 0;
}

static int feed_get_text(MDB_txn *txn, MDB_dbi dbi, const char *k, char *out, size_t cap)
{
    MDB_val key = feed_key(k), val;
    out[0] = '\0';
    int rc = mdb_get(txn, dbi, &key, &val);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    size_t n = val.mv_size < cap - 1 ? val.mv_size : cap - 1;
    memcpy(out, val.mv_data, n);
    out[n] = '\0';
    return 0;
}

int store_feed_read(MDB_txn *txn, const struct store *s, struct store_feed *f)
{
    memset(f, 0, sizeof(*f));
    uint64_t caught = 0;
    int rc;
    if ((rc = feed_get_u64(txn, s->meta, K_LSN, &f->lsn, &f->present)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_COMMIT, &f->commit_us, NULL)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_SYNCED, &f->synced_us, NULL)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_CAUGHT_UP, &caught, NULL)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_TXNS, &f->txns, NULL)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_ROWS, &f->rows, NULL)) != 0 ||
        (rc = feed_get_u64(txn, s->meta, K_SKIPPED, &f->skipped, NULL)) != 0 ||
        (rc = feed_get_text(txn, s->meta, K_SLOT, f->slot, sizeof(f->slot))) != 0 ||
        (rc = feed_get_text(txn, s->meta, K_TABLE, f->table, sizeof(f->table))) != 0)
        return rc;
    f->caught_up = caught != 0;
    return 0;
}

static int feed_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *k, uint64_t v)
{
    MDB_val key = feed_key(k), val = {sizeof(v), &v};
    return mdb_put(txn, dbi, &key, &val, 0);
}

static int feed_put_text(MDB_txn *txn, MDB_dbi dbi, const char *k, const char *v)
{
    MDB_val key = feed_key(k), val = {strlen(v), (void *)v};
    return mdb_put(txn, dbi, &key, &val, 0);
}

int store_feed_write(MDB_txn *txn, const struct store *s, const struct store_feed *f)
{
    int rc;
    if ((rc = feed_put_text(txn, s->meta, K_SLOT, f->slot)) != 0 || (rc = feed_put_text(txn, s->meta, K_TABLE, f->table)) != 0)
        return rc;
    if (!f->present) {
        MDB_val key = feed_key(K_LSN);
        rc = mdb_del(txn, s->meta, &key, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    if ((rc = feed_put_u64(txn, s->meta, K_LSN, f->lsn)) != 0 || (rc = feed_put_u64(txn, s->meta, K_COMMIT, f->commit_us)) != 0 ||
        (rc = feed_put_u64(txn, s->meta, K_SYNCED, f->synced_us)) != 0 ||
        (rc = feed_put_u64(txn, s->meta, K_CAUGHT_UP, f->caught_up ? 1 : 0)) != 0 ||
        (rc = feed_put_u64(txn, s->meta, K_TXNS, f->txns)) != 0 || (rc = feed_put_u64(txn, s->meta, K_ROWS, f->rows)) != 0 ||
        (rc = feed_put_u64(txn, s->meta, K_SKIPPED, f->skipped)) != 0)
        return rc;
    return 0;
}

static int feed_lock_path(const char *dir, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/%s", dir, STORE_FEED_LOCK_FILE);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int store_feed_lock(const char *dir)
{
    char path[PATH_MAX];
    if (feed_lock_path(dir, path, sizeof(path)) != 0)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    /* An OFD lock belongs to this open file description: it goes away with
     * the process however it ends (kill -9 included), never with a stray
     * close of another fd on the same file, as a POSIX lock would. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int e = errno;
        close(fd);
        return e == EAGAIN || e == EACCES ? -EBUSY : -e;
    }
    return fd;
}

void store_feed_heartbeat(int lock_fd)
{
    if (lock_fd >= 0)
        futimens(lock_fd, NULL);
}

void store_feed_probe(const char *dir, bool *alive, uint64_t *heartbeat_us)
{
    char path[PATH_MAX];
    *alive = false;
    *heartbeat_us = 0;
    if (feed_lock_path(dir, path, sizeof(path)) != 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
        *alive = fl.l_type != F_UNLCK;
    struct stat st;
    if (fstat(fd, &st) == 0)
        *heartbeat_us = (uint64_t)st.st_mtim.tv_sec * 1000000u + (uint64_t)st.st_mtim.tv_nsec / 1000u;
    close(fd);
}

void store_feed_view_of(const struct store_feed *f, bool alive, uint64_t heartbeat_us, struct store_feed_view *v)
{
    memset(v, 0, sizeof(*v));
    v->present = f->present;
    v->alive = alive;
    if (!f->present)
        return;
    v->lsn = f->lsn;
    v->commit_us = f->commit_us;
    v->skipped = f->skipped;
    v->txns = f->txns;
    v->rows = f->rows;
    if (alive && f->caught_up)
        return; /* since_us 0: caught up */
    uint64_t since = f->synced_us;
    /* A follower that died while caught up was current until its last
     * heartbeat; one that was behind says so in the store itself. */
    if (f->caught_up && heartbeat_us > since)
        since = heartbeat_us;
    v->since_us = since > 0 ? since : 1;
}

void store_feed_observe(struct store_reader *r, const char *dir, struct store_feed_view *v)
{
    bool parked = !r->active;
    if (parked && store_reader_refresh(r) != 0)
        return; /* keep the last view: the next refresh tries again */
    struct store_feed f;
    int rc = store_feed_read(r->txn, r->store, &f);
    if (parked)
        store_reader_park(r);
    if (rc != 0)
        return;
    bool alive = false;
    uint64_t hb = 0;
    if (f.present)
        store_feed_probe(dir, &alive, &hb);
    store_feed_view_of(&f, alive, hb, v);
}

double store_feed_lag_seconds(const struct store_feed_view *v, uint64_t now_us)
{
    if (!v->present || v->since_us == 0 || now_us <= v->since_us)
        return 0;
    return (double)(now_us - v->since_us) / 1e6;
}
