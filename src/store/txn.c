/* txn.c - transactions, map growth and the meta counters.
 *
 * LMDB's map has a fixed size; a write that does not fit fails with
 * MDB_MAP_FULL and the whole transaction is lost. store_write() therefore
 * runs a write as a function that can be replayed: on MDB_MAP_FULL it aborts,
 * grows the map (doubling, or more when the caller says the batch is large)
 * and runs the function again. Another process that grew the map makes our
 * next txn_begin fail with MDB_MAP_RESIZED; we adopt the new size
 * (mdb_env_set_mapsize(env, 0)) and retry. Both remaps are only legal while
 * this process has no transaction on the env, which the readers counter
 * checks: remapping under a live read txn would leave its pointers dangling.
 *
 * A disk that fills up during a commit does not always say ENOSPC: LMDB
 * reports a short pwrite(2) as EIO. A commit that fails with EIO while the
 * filesystem has less room than the write needs is therefore taken for a
 * full disk (GUTS_EFULL), so the node can wait for space instead of
 * treating the store as broken. Either way LMDB has not written its meta
 * page, so nothing of the transaction is visible.
 */
#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

#include "internal.h"

/* A failing map growth or resize is retried a bounded number of times: each
 * round at least doubles the map, so 64 rounds exceed any address space. */
#define STORE_WRITE_ROUNDS_MAX 64

int store_nosync_end(store_env *se)
{
    if (!se->nosync) return GUTS_OK;
    /* Flush first: the mark goes only once every commit is on the disk. */
    int rc = 0;
    if (atomic_load(&se->synced) != atomic_load(&se->commits)) rc = mdb_env_sync(se->env, 1);
    if (rc) return store_mdb_err(rc, "flush before ending no-flush commits");
    if ((rc = mdb_env_set_flags(se->env, MDB_NOSYNC, 0))) return store_mdb_err(rc, "set sync flag");
    se->nosync = 0;
    if (store_mark_clear(se->dir) != GUTS_OK) {
        /* left behind, the mark would have a later boot set the env
         * aside: flushed from now on, it goes at the first open after this
         * process, or with a write from another one */
        guts_errmsg_set("%s: cannot remove %s: %s", se->key, STORE_NOSYNC_MARK, strerror(errno));
        return GUTS_EIO;
    }
    return GUTS_OK;
}

static int adopt_resize(store_env *se)
{
    if (atomic_load(&se->readers) > 0) {
        guts_errmsg_set("map resized by another process while a read is open here");
        return GUTS_EAGAIN;
    }
    int rc = mdb_env_set_mapsize(se->env, 0);
    if (rc) atomic_store(&se->broken, 1);
    return store_mdb_err(rc, "adopt new map size");
}

static int check_broken(store_env *se)
{
    if (!atomic_load(&se->broken)) return GUTS_OK;
    guts_errmsg_set("environment %s lost its map after a failed resize; reopen it", se->key);
    return GUTS_ESTORE;
}

int store_read_begin(guts_repo *r, MDB_txn **txn)
{
    if (r->held) {
        *txn = r->held;
        return GUTS_OK;
    }
    store_env *se = r->se;
    int brc = check_broken(se);
    if (brc) return brc;
    for (int i = 0; i < STORE_WRITE_ROUNDS_MAX; i++) {
        int rc = mdb_txn_begin(se->env, NULL, MDB_RDONLY, txn);
        if (rc == 0) {
            atomic_fetch_add(&se->readers, 1);
            return GUTS_OK;
        }
        if (rc != MDB_MAP_RESIZED) return store_mdb_err(rc, "begin read txn");
        if ((rc = adopt_resize(se))) return rc;
    }
    guts_errmsg_set("map keeps being resized");
    return GUTS_EAGAIN;
}

void store_read_end(guts_repo *r, MDB_txn *txn)
{
    if (txn == r->held) return;
    mdb_txn_abort(txn);
    atomic_fetch_sub(&r->se->readers, 1);
}

int guts_repo_read_hold(guts_repo *r)
{
    if (!r || r->held) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc == GUTS_OK) r->held = txn;
    return rc;
}

void guts_repo_read_release(guts_repo *r)
{
    if (!r || !r->held) return;
    MDB_txn *txn = r->held;
    r->held = NULL;
    store_read_end(r, txn);
}

static int grow(store_env *se, size_t hint)
{
    MDB_envinfo info;
    int rc = mdb_env_info(se->env, &info);
    if (rc) return store_mdb_err(rc, "env info");
    size_t cur = info.me_mapsize, max = se->max_mapsize;
    if (cur >= max) {
        guts_errmsg_set("map of %zu bytes is at its limit", cur);
        return GUTS_EFULL;
    }
    /* max(2 * cur, cur + hint), clamped: a batch bigger than the map gets
     * room for itself in one step instead of several replays. */
    size_t next = cur > max / 2 ? max : cur * 2;
    if (hint > cur) next = hint > max - cur ? max : cur + hint;
    if (atomic_load(&se->readers) > 0) {
        guts_errmsg_set("map full while a read txn is open in this process");
        return GUTS_EAGAIN;
    }
    rc = mdb_env_set_mapsize(se->env, next);
    if (rc) {
        /* LMDB has unmapped the old map already: map the old size again,
         * or the env is unusable for the rest of this process. */
        if (mdb_env_set_mapsize(se->env, cur) != 0) atomic_store(&se->broken, 1);
        guts_errmsg_set("grow map to %zu bytes: %s", next, mdb_strerror(rc));
        return GUTS_EFULL;
    }
    return GUTS_OK;
}

/* 1 when the filesystem of se has less than need bytes (plus a margin of
 * 1 MiB for LMDB's own pages) available to us. */
static int fs_short(store_env *se, size_t need)
{
    mdb_filehandle_t fd;
    struct statvfs sv;
    if (mdb_env_get_fd(se->env, &fd) != 0 || fstatvfs(fd, &sv) != 0) return 0;
    return (unsigned long long)sv.f_bavail * sv.f_frsize < (unsigned long long)need + (1u << 20);
}

int store_write(guts_repo *r, size_t grow_hint, int (*fn)(guts_repo *r, MDB_txn *txn, void *arg),
                void *arg)
{
    store_env *se = r->se;
    int grc = store_group_commit(r); /* writes keep their order */
    if (grc) return grc;
    for (int round = 0; round < STORE_WRITE_ROUNDS_MAX; round++) {
        MDB_txn *txn;
        int rc = check_broken(se);
        if (rc) return rc;
        rc = mdb_txn_begin(se->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) {
            if ((rc = adopt_resize(se))) return rc;
            continue;
        }
        if (rc) return store_mdb_err(rc, "begin write txn");
        uint64_t id = mdb_txn_id(txn);
        if (se->nosync && id != se->own_txnid + 1) {
            /* another process committed since our last commit (an import
             * or a push into the replica): its commit is flushed, and
             * ours flush from now on, so that what it wrote is never
             * under pages of ours not on the disk, nor under the mark */
            mdb_txn_abort(txn);
            if ((rc = store_nosync_end(se))) return rc;
            continue;
        }
        rc = fn(r, txn, arg);
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
            if (rc == 0) {
                atomic_fetch_add(&se->commits, 1);
                se->own_txnid = id;
                if (!se->nosync) return store_mark_settle(se->dir);
            }
        } else {
            mdb_txn_abort(txn);
        }
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow(se, grow_hint))) return rc;
            continue;
        }
        if (rc == EIO && fs_short(se, grow_hint)) rc = ENOSPC;
        return store_mdb_err(rc, "write txn");
    }
    guts_errmsg_set("write retried too often");
    return GUTS_EFULL;
}

static int meta_get(guts_repo *r, MDB_txn *txn, const char *k, size_t want, uint8_t *out)
{
    MDB_val key = {strlen(k), (void *)k}, v;
    int rc = mdb_get(txn, r->se->meta, &key, &v);
    if (rc == MDB_NOTFOUND) {
        memset(out, 0, want);
        return GUTS_OK;
    }
    if (rc) return rc;
    if (v.mv_size != want) {
        guts_errmsg_set("meta %s has %zu bytes, not %zu", k, v.mv_size, want);
        return GUTS_ECORRUPT;
    }
    memcpy(out, v.mv_data, want);
    return GUTS_OK;
}

static int meta_put(guts_repo *r, MDB_txn *txn, const char *k, size_t n, const uint8_t *b)
{
    MDB_val key = {strlen(k), (void *)k}, v = {n, (void *)b};
    return mdb_put(txn, r->se->meta, &key, &v, 0);
}

int store_meta_get_u64(guts_repo *r, MDB_txn *txn, const char *k, uint64_t *v)
{
    uint8_t b[8];
    int rc = meta_get(r, txn, k, 8, b);
    if (rc == 0) *v = be64_get(b);
    return rc;
}

int store_meta_put_u64(guts_repo *r, MDB_txn *txn, const char *k, uint64_t v)
{
    uint8_t b[8];
    be64_put(b, v);
    return meta_put(r, txn, k, 8, b);
}

int store_meta_get_fp(guts_repo *r, MDB_txn *txn, const char *k, guts_fp *v)
{
    uint8_t b[16];
    int rc = meta_get(r, txn, k, 16, b);
    if (rc == 0) *v = fp_get(b);
    return rc;
}

int store_meta_put_fp(guts_repo *r, MDB_txn *txn, const char *k, guts_fp v)
{
    uint8_t b[16];
    fp_put(b, v);
    return meta_put(r, txn, k, 16, b);
}

int store_read_cursor(guts_repo *r, MDB_dbi dbi, MDB_txn **txn, MDB_cursor **cur)
{
    int rc = store_read_begin(r, txn);
    if (rc) return rc;
    if ((rc = mdb_cursor_open(*txn, dbi, cur))) {
        store_read_end(r, *txn);
        return store_mdb_err(rc, "cursor");
    }
    return 0;
}

int store_set_load(guts_repo *r, MDB_txn *txn, store_set *s)
{
    int rc;
    s->added = 0;
    s->log = NULL;
    if ((rc = store_meta_get_u64(r, txn, "count", &s->count)) ||
        (rc = store_meta_get_u64(r, txn, "seq", &s->seq)) ||
        (rc = store_meta_get_u64(r, txn, "stored_bytes", &s->stored)) ||
        (rc = store_meta_get_fp(r, txn, "fp", &s->fp)))
        return rc;
    return 0;
}

int store_set_add(guts_repo *r, MDB_txn *txn, store_set *s, const guts_id *id, size_t rowlen)
{
    uint8_t sk[8];
    be64_put(sk, s->seq);
    MDB_val lk = {8, sk}, k = {GUTS_ID_LEN, (void *)id->b};
    int rc = s->log ? mdb_cursor_put(s->log, &lk, &k, MDB_APPEND)
                    : mdb_put(txn, r->se->log, &lk, &k, MDB_APPEND);
    if (rc) return rc;
    s->seq++;
    s->count++;
    s->stored += rowlen;
    guts_fp_add(&s->fp, guts_fp_of_id(id));
    s->added++;
    return 0;
}

int store_set_save(guts_repo *r, MDB_txn *txn, const store_set *s)
{
    int rc;
    if (s->added == 0) return 0;
    if ((rc = store_meta_put_u64(r, txn, "count", s->count)) ||
        (rc = store_meta_put_u64(r, txn, "seq", s->seq)) ||
        (rc = store_meta_put_u64(r, txn, "stored_bytes", s->stored)) ||
        (rc = store_meta_put_fp(r, txn, "fp", s->fp)))
        return rc;
    return 0;
}

int guts_repo_info_get(guts_repo *r, guts_repo_info *out)
{
    if (!r || !out) return GUTS_EINVAL;
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_stat so, sr, sc;
    if ((rc = mdb_stat(txn, r->se->objects, &so)) || (rc = mdb_stat(txn, r->se->refs, &sr)) ||
        (rc = mdb_stat(txn, r->se->refclock, &sc)) ||
        (rc = store_meta_get_fp(r, txn, "fp", &out->fp)) ||
        (rc = store_meta_get_fp(r, txn, "refs_digest", &out->refs_digest)) ||
        (rc = store_meta_get_u64(r, txn, "clock", &out->clock)) ||
        (rc = store_meta_get_u64(r, txn, "stored_bytes", &out->stored_bytes))) {
        store_read_end(r, txn);
        return store_mdb_err(rc, "read info");
    }
    if ((rc = stage_totals(r, txn, &out->staged, &out->staged_bytes))) {
        store_read_end(r, txn);
        return store_mdb_err(rc, "read staging");
    }
    out->objects = so.ms_entries;
    out->refs = sr.ms_entries;
    out->tombstones = sc.ms_entries >= sr.ms_entries ? sc.ms_entries - sr.ms_entries : 0;
    out->txnid = mdb_txn_id(txn);
    store_read_end(r, txn);
    return GUTS_OK;
}

int guts_repo_txnid(guts_repo *r, uint64_t *out)
{
    if (!r || !out) return GUTS_EINVAL;
    int rc = check_broken(r->se);
    if (rc) return rc;
    MDB_envinfo info;
    rc = mdb_env_info(r->se->env, &info);
    if (rc) return store_mdb_err(rc, "env info");
    *out = info.me_last_txnid;
    return GUTS_OK;
}

int guts_repo_is_nosync(const guts_repo *r)
{
    unsigned fl = 0;
    return r && mdb_env_get_flags(r->se->env, &fl) == 0 && (fl & MDB_NOSYNC) ? 1 : 0;
}

int guts_repo_sync_on(guts_repo *r)
{
    if (!r) return GUTS_EINVAL;
    int rc = check_broken(r->se);
    return rc ? rc : store_nosync_end(r->se);
}

int guts_repo_sync(guts_repo *r)
{
    if (!r) return GUTS_EINVAL;
    /* No guts_errmsg_set, no mdb_env_info (it reads the meta pages, which a
     * remap on the writer's thread may move): this runs on a flusher. */
    store_env *se = r->se;
    if (atomic_load(&se->broken)) return GUTS_EIO;
    uint64_t n = atomic_load(&se->commits); /* these have written their pages */
    if (mdb_env_sync(se->env, 1) != 0) return GUTS_EIO;
    atomic_store(&se->synced, n);
    return GUTS_OK;
}
