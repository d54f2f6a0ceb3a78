/* node_store.c - the store as the core sees it: c->st wraps the driver's
 * store so that an announced repository is created only when a pull writes
 * to it, a full store is noticed, a damaged object is dropped, and an
 * object over the size cap is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* ---- Lazy creation --------------------------------------------------------
 *
 * A repository a peer announces is tracked at once (so it can be pulled) but
 * created in the store only when a pull brings its first object or ref: a
 * stranger announcing keys costs a node an lrepo in memory (bounded by
 * CORE_REPOS_MAX), never an environment on disk. The core reaches the store
 * only through c->st, whose functions below read an unstored repository as
 * empty and create it before the first write. */

static lrepo *unstored(guts_core *c, const char *key)
{
    lrepo *r = core_repo_find(c, key);
    return r && r->unstored ? r : NULL;
}

/* Before a write: create the repository if it is not stored yet. */
static int materialize(guts_core *c, const char *key)
{
    lrepo *r = unstored(c, key);
    if (!r) return GUTS_OK;
    int rc = c->real.create(c->real.ctx, key);
    if (rc) return rc;
    core_repo_remote_release(c, r);
    core_log(c, GUTS_LOG_INFO, "new repository %s", key);
    core_event(c, GUTS_EV_REPO_ADDED, key, NULL, NULL, NULL, NULL, NULL);
    return GUTS_OK;
}

/* ---- Full store -----------------------------------------------------------
 *
 * When the disk or the LMDB map cannot grow, the store refuses a write with
 * GUTS_EFULL and stores nothing of it (its transaction is aborted). The
 * core then stops starting pulls, says so once, and keeps serving (reads
 * need no space); every GUTS_CORE_FULL_RETRY_MS one round of pulls is let
 * through as a probe, and the first write that succeeds ends the state,
 * said once too. Every write goes through the wrappers below, so this is
 * the one place that sees both outcomes. */

int core_store_full(const guts_core *c)
{
    return c->full && c->now < c->full_retry;
}

/* A store that groups puts (lmdbstore: guts_repo_group) drops a group whose
 * commit fails, and that commit runs in whatever call comes next: a write,
 * or a read of counters or listings. Puts that returned GUTS_OK may then be
 * gone, so what the closure cache says of key's repository is forgotten
 * (else a ref could be written over objects that are not there). */
static int store_failed(guts_core *c, const char *key, int rc)
{
    if (rc == GUTS_EFULL || rc == GUTS_EAGAIN || rc == GUTS_ENOMEM || rc == GUTS_EIO ||
        rc == GUTS_ESTORE) {
        lrepo *r = core_repo_find(c, key);
        if (r) {
            guts_idset_free(&r->complete);
            closure_track_free(r);
        }
    }
    return rc;
}

static int wrote(guts_core *c, const char *key, int rc, size_t n)
{
    store_failed(c, key, rc);
    if (rc == GUTS_EFULL) {
        c->ctr.writes_full++;
        c->full_retry = c->now + GUTS_CORE_FULL_RETRY_MS;
        if (!c->full)
            core_log(c, GUTS_LOG_ERROR,
                     "store full (disk or LMDB map cannot grow) writing %s: not taking new "
                     "objects, still serving; retrying every %u s",
                     key, GUTS_CORE_FULL_RETRY_MS / 1000);
        c->full = 1;
    } else if (rc == GUTS_OK && n && c->full) {
        c->full = 0;
        core_log(c, GUTS_LOG_INFO, "store writable again (%s): taking new objects", key);
    }
    return rc;
}

/* ---- Damaged stored objects ---------------------------------------------- */

/* A record that no longer hashes to its id (a damaged disk) would reach
 * every puller forever. A puller that finds one says so (DAMAGED,
 * serve_damaged) and it is checked here and dropped: the repository's
 * count and fingerprint then stop claiming it, so the next announce
 * differs from a healthy peer's and the ordinary pull fetches a verified
 * copy. Only a hash failure drops; any other error (store busy, no
 * memory) leaves the object. */
int core_obj_damaged(guts_core *c, const char *key, const guts_id *id)
{
    if (!c->st.verify || c->st.verify(c->st.ctx, key, id) != GUTS_ECORRUPT) return 0;
    size_t dropped = 0;
    int rc = c->st.drop(c->st.ctx, key, id, 1, &dropped);
    c->ctr.objects_damaged++;
    lrepo *r = core_repo_find(c, key);
    if (rc == GUTS_OK && dropped && r) {
        core_repo_refresh(c, r);        /* announce the new fingerprint */
        guts_idset_free(&r->complete); /* closures it was in are not whole now */
        closure_track_free(r);
    }
    if (c->damaged.n >= CORE_REFUSED_MAX) guts_idset_free(&c->damaged);
    if (guts_idset_insert(&c->damaged, id) == 1) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        if (rc == GUTS_OK)
            core_log(c, GUTS_LOG_WARN,
                     "object %s in %s is damaged (fails its hash, as a peer said): dropped, to "
                     "be fetched again from a peer",
                     hex, key);
        else
            core_log(c, GUTS_LOG_WARN,
                     "object %s in %s is damaged (fails its hash, as a peer said); dropping it "
                     "failed: %s",
                     hex, key, guts_strerror(rc));
    }
    return 1;
}

/* ---- Object size cap ------------------------------------------------------ */

int core_obj_refused(guts_core *c, const char *key, const guts_id *id, uint64_t size)
{
    if (size <= c->cfg.obj_max) return 0;
    c->ctr.objects_too_big++;
    if (c->refused.n >= CORE_REFUSED_MAX) guts_idset_free(&c->refused);
    if (guts_idset_insert(&c->refused, id) == 1) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        core_log(c, GUTS_LOG_WARN,
                 "object %s in %s refused: %llu bytes, over the %llu-byte object limit "
                 "(--max-object)",
                 hex, key, (unsigned long long)size, (unsigned long long)c->cfg.obj_max);
    }
    return 1;
}

void core_wants_trim(guts_core *c, guts_id *ids, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (!guts_idset_has(&c->refused, &ids[i])) ids[k++] = ids[i];
    *n = k;
}

static int st_repos(void *ctx, int (*cb)(const char *key, void *arg), void *arg)
{
    guts_core *c = ctx;
    return c->real.repos(c->real.ctx, cb, arg);
}

static int st_create(void *ctx, const char *key)
{
    guts_core *c = ctx;
    return c->real.create(c->real.ctx, key);
}

static int st_info(void *ctx, const char *key, guts_repo_info *out)
{
    guts_core *c = ctx;
    return store_failed(c, key, c->real.info(c->real.ctx, key, out));
}

static int st_ids(void *ctx, const char *key, const guts_id *from, const guts_id *to,
                  int (*cb)(const guts_id *id, void *arg), void *arg)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_OK;
    return store_failed(c, key, c->real.ids(c->real.ctx, key, from, to, cb, arg));
}

static int st_has(void *ctx, const char *key, const guts_id *id)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return 0;
    return c->real.has(c->real.ctx, key, id);
}

static int st_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                  size_t *len)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_ENOTFOUND;
    return c->real.get(c->real.ctx, key, id, type, data, len);
}

static int st_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                  size_t *bad)
{
    guts_core *c = ctx;
    int rc = n ? materialize(c, key) : GUTS_OK;
    return wrote(c, key, rc ? rc : c->real.put(c->real.ctx, key, objs, n, added, bad), n);
}

static int st_recent(void *ctx, const char *key, size_t max, guts_id *out, size_t *n)
{
    guts_core *c = ctx;
    if (unstored(c, key)) {
        *n = 0;
        return GUTS_OK;
    }
    return store_failed(c, key, c->real.recent(c->real.ctx, key, max, out, n));
}

static int st_refs(void *ctx, const char *key, int with_tombstones,
                   int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_OK;
    return c->real.refs(c->real.ctx, key, with_tombstones, cb, arg);
}

static int st_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_ENOTFOUND;
    return c->real.ref_get(c->real.ctx, key, name, out);
}

static int st_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    guts_core *c = ctx;
    int rc = n ? materialize(c, key) : GUTS_OK;
    return wrote(c, key, rc ? rc : c->real.refs_put(c->real.ctx, key, refs, n), n);
}

static int st_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_ENOTFOUND;
    return c->real.rec_get(c->real.ctx, key, id, out, buf);
}

static int st_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                      const guts_rec_seen *seen, size_t *added, size_t *bad)
{
    guts_core *c = ctx;
    int rc = n ? materialize(c, key) : GUTS_OK;
    return wrote(c, key,
                 rc ? rc : c->real.rec_put(c->real.ctx, key, recs, n, nobase, seen, added, bad),
                 n);
}

static int st_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                   size_t len, size_t *got)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_ENOTFOUND;
    return c->real.read(c->real.ctx, key, id, off, buf, len, got);
}

static int st_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                          uint64_t off, const void *data, size_t len, int *stored)
{
    guts_core *c = ctx;
    int rc = materialize(c, key);
    return rc ? rc : c->real.stage_write(c->real.ctx, key, id, type, size, off, data, len, stored);
}

static int st_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    guts_core *c = ctx;
    *n = 0;
    if (unstored(c, key)) return GUTS_OK;
    return c->real.stage_list(c->real.ctx, key, out, max, n);
}

static int st_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_OK;
    return c->real.stage_drop(c->real.ctx, key, id);
}

static int st_verify(void *ctx, const char *key, const guts_id *id)
{
    guts_core *c = ctx;
    if (unstored(c, key)) return GUTS_ENOTFOUND;
    return c->real.verify(c->real.ctx, key, id);
}

static int st_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    guts_core *c = ctx;
    *dropped = 0;
    if (unstored(c, key)) return GUTS_OK;
    return c->real.drop(c->real.ctx, key, ids, n, dropped);
}

void core_store_wrap(guts_core *c)
{
    c->st = c->real;
    c->st.ctx = c;
    c->st.repos = st_repos;
    c->st.create = st_create;
    c->st.info = st_info;
    c->st.ids = st_ids;
    c->st.has = st_has;
    c->st.get = st_get;
    c->st.put = st_put;
    c->st.recent = st_recent;
    c->st.refs = st_refs;
    c->st.ref_get = st_ref_get;
    c->st.refs_put = st_refs_put;
    c->st.rec_get = c->real.rec_get ? st_rec_get : NULL;
    c->st.rec_put = c->real.rec_put ? st_rec_put : NULL;
    c->st.read = st_read;
    c->st.stage_write = st_stage_write;
    c->st.stage_list = st_stage_list;
    c->st.stage_drop = st_stage_drop;
    c->st.verify = c->real.verify && c->real.drop ? st_verify : NULL;
    c->st.drop = c->real.verify && c->real.drop ? st_drop : NULL;
}
