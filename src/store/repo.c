/* repo.c - repository envs: DATA/repos/OWNER/NAME, one LMDB env per
 * repository, opened once per process and shared between the handles of
 * one key (guts_repo_open, guts_repo_close); removing, setting aside and
 * verifying repositories.
 *
 * LMDB forbids opening one env twice in a process (closing either copy drops
 * the other's POSIX locks), so guts_data keeps the envs it has open and
 * guts_repo_open shares one env between handles of the same key. Handles
 * carry their own zstd contexts and cache, so each is single-threaded while
 * the env (MDB_NOTLS) may be used from several threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static int repo_path(const guts_data *d, const char *key, char **out)
{
    size_t n = strlen(d->path) + strlen("/repos/") + strlen(key) + 1;
    char *p = malloc(n);
    if (!p) return GUTS_ENOMEM;
    snprintf(p, n, "%s/repos/%s", d->path, key);
    *out = p;
    return GUTS_OK;
}

/* guts_repo_verify_many's map from the dirs checked back to the keys. */
typedef struct verify_many {
    const size_t *at; /* dirs[j] is keys[at[j]] */
    guts_repo_verify_fn cb;
    void *ctx;
} verify_many;

static void verify_many_cb(size_t j, int rc, const char *why, void *ctx)
{
    verify_many *v = ctx;
    v->cb(v->at[j], rc, why, v->ctx);
}

int guts_repo_verify_many(guts_data *d, const char *const *keys, size_t n, guts_repo_verify_fn cb,
                          void *ctx)
{
    if (!d || (!keys && n) || !cb) return GUTS_EINVAL;
    char **dirs = calloc(n ? n : 1, sizeof *dirs);
    size_t *at = calloc(n ? n : 1, sizeof *at);
    int rc = dirs && at ? GUTS_OK : GUTS_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n && rc == GUTS_OK; i++) {
        if (guts_repo_key_check(keys[i]) != GUTS_OK) {
            cb(i, GUTS_EINVAL, "not a repository key", ctx);
            continue;
        }
        rc = repo_path(d, keys[i], &dirs[m]);
        if (rc == GUTS_OK) at[m++] = i;
    }
    if (rc == GUTS_OK) {
        verify_many v = {.at = at, .cb = cb, .ctx = ctx};
        store_env_walk_many((const char *const *)dirs, m, d->initial_mapsize, verify_many_cb, &v);
    }
    for (size_t j = 0; j < m; j++)
        free(dirs[j]);
    free(dirs);
    free(at);
    return rc;
}

/* Open the named dbs and check the schema. The first try is a read txn, so
 * opening an existing repository never waits for another process's long
 * write; only a new env (or one missing a db) takes a write txn to create
 * them. Returns MDB_NOTFOUND from the read try when a write is needed. */
static int env_init_txn(store_env *se, int readonly)
{
    MDB_txn *txn;
    int rc = MDB_MAP_RESIZED;
    for (int i = 0; i < 8 && rc == MDB_MAP_RESIZED; i++) {
        rc = mdb_txn_begin(se->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
        if (rc == MDB_MAP_RESIZED) mdb_env_set_mapsize(se->env, 0);
    }
    if (rc) return store_mdb_err(rc, "begin init txn");
    unsigned fl = readonly ? 0 : MDB_CREATE;
    /* The first five are in every env since schema 1; pieces and stage
     * came with large objects and imports with import's ref rules, so an
     * older env may lack them. */
    static const char *const names[] = {"objects", "refs",  "refclock", "log",
                                        "meta",    "pieces", "stage",   "imports"};
    MDB_dbi *const dbis[] = {&se->objects, &se->refs,  &se->refclock, &se->log,
                             &se->meta,    &se->pieces, &se->stage,   &se->imports};
    int found = 0, missing = -1;
    for (int i = 0; i < 8; i++) {
        rc = mdb_dbi_open(txn, names[i], fl, dbis[i]);
        if (rc == MDB_NOTFOUND && readonly) {
            if (missing < 0) missing = i;
            continue;
        }
        if (rc) {
            mdb_txn_abort(txn);
            return store_mdb_err(rc, "open databases");
        }
        if (i < 5) found++;
    }
    if (missing >= 0) {
        mdb_txn_abort(txn);
        /* None of the five: a new env (or one whose creation was cut
         * short), created now. Some of them: the others were lost. */
        if (found > 0 && missing < 5) {
            guts_errmsg_set("database %s is missing", names[missing]);
            return GUTS_EDAMAGED;
        }
        return MDB_NOTFOUND;
    }
    MDB_val k = {6, "schema"}, v;
    rc = mdb_get(txn, se->meta, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 4) {
            mdb_txn_abort(txn);
            guts_errmsg_set("meta schema has %zu bytes", v.mv_size);
            return GUTS_ECORRUPT;
        }
        const uint8_t *p = v.mv_data;
        uint32_t schema = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (schema > STORE_SCHEMA_PIECES) {
            mdb_txn_abort(txn);
            guts_errmsg_set("schema %u is newer than %u", schema, STORE_SCHEMA_PIECES);
            return GUTS_EVERSION;
        }
    } else if (rc == MDB_NOTFOUND && readonly) {
        mdb_txn_abort(txn);
        return MDB_NOTFOUND;
    } else if (rc == MDB_NOTFOUND) {
        uint8_t b[4] = {0, 0, 0, STORE_SCHEMA};
        v.mv_size = 4;
        v.mv_data = b;
        rc = mdb_put(txn, se->meta, &k, &v, 0);
        if (rc) {
            mdb_txn_abort(txn);
            return store_mdb_err(rc, "write schema");
        }
    } else {
        mdb_txn_abort(txn);
        return store_mdb_err(rc, "read schema");
    }
    /* Commit even the read txn: dbi handles opened in it then stay open. */
    rc = mdb_txn_commit(txn);
    return store_mdb_err(rc, "commit init txn");
}

static int env_init(store_env *se)
{
    int rc = env_init_txn(se, 1);
    if (rc == MDB_NOTFOUND) rc = env_init_txn(se, 0);
    return rc;
}

/* A new env is made whole (meta pages, schema, flushed) in a directory of
 * a temporary name beside dir, a dot name that listings skip, and renamed
 * into place: a kill at any moment leaves no repository or one that
 * opens, never a directory or a data.mdb without its meta pages. When
 * another process made dir first, its env is kept and ours discarded. A
 * maker killed before its rename leaves the temporary directory behind:
 * guts_data_repos removes it once its maker is gone. */
static int env_create(guts_data *d, const char *dir)
{
    static atomic_uint seq;
    char tmp[4096];
    const char *slash = strrchr(dir, '/');
    int n = snprintf(tmp, sizeof tmp, "%.*s/.%s.new-%ld-%u", (int)(slash - dir), dir, slash + 1,
                     (long)getpid(), atomic_fetch_add(&seq, 1));
    if (n < 0 || n >= (int)sizeof tmp) {
        guts_errmsg_set("data dir path too long");
        return GUTS_EINVAL;
    }
    int rc = store_mkdirs(tmp, tmp);
    if (rc) return rc;
    store_env *se = calloc(1, sizeof *se);
    int mrc = se ? mdb_env_create(&se->env) : ENOMEM;
    if (mrc) {
        free(se);
        (void)store_env_remove(tmp);
        return store_mdb_err(mrc, "create env");
    }
    if ((mrc = mdb_env_set_maxdbs(se->env, STORE_REPO_MAXDBS)) ||
        (mrc = mdb_env_set_mapsize(se->env, d->initial_mapsize)) ||
        (mrc = mdb_env_open(se->env, tmp, MDB_NOTLS, 0600)))
        rc = store_mdb_err(mrc, "open env");
    else
        rc = env_init(se);
    mdb_env_close(se->env);
    free(se);
    if (rc == GUTS_OK && rename(tmp, dir) == 0) return GUTS_OK;
    /* not renamed: ours is removed (another process's env is in place, or
     * the error says why), before the error is set */
    int err = rc == GUTS_OK ? errno : 0;
    (void)store_env_remove(tmp);
    if (err == EEXIST || err == ENOTEMPTY) return GUTS_OK;
    if (err) {
        guts_errmsg_set("rename %s to %s: %s", tmp, dir, strerror(err));
        return GUTS_EIO;
    }
    return rc;
}

static int env_open(guts_data *d, const char *key, unsigned flags, store_env **out)
{
    char *dir = NULL, *file = NULL;
    int rc = repo_path(d, key, &dir);
    if (rc) return rc;
    file = store_path_join(dir, "data.mdb");
    if (!file) {
        free(dir);
        return GUTS_ENOMEM;
    }
    struct stat st;
    /* GUTS_REPO_NOSYNC only for an env made now: one with a flushed past
     * keeps flushing every commit. */
    int created = 0, marked = 0;
    long marker = 0;
    const unsigned nosync = (flags & GUTS_REPO_NOSYNC) ? MDB_NOSYNC : 0;
    if (stat(file, &st) != 0) {
        created = 1;
        if (!(flags & GUTS_REPO_CREATE)) {
            guts_errmsg_set("repository %s not found", key);
            rc = GUTS_ENOTFOUND;
            goto out;
        }
        if ((rc = env_create(d, dir))) goto out;
    } else {
        /* An existing env is checked before LMDB maps it (envcheck.c). */
        char why[STORE_WHY_MAX];
        rc = store_env_check_file(dir, why, sizeof why);
        if (rc == GUTS_OK) marked = store_mark_check(dir, &marker, why, sizeof why);
        if (rc == GUTS_OK && (flags & GUTS_REPO_VERIFY))
            rc = store_env_walk(dir, d->initial_mapsize, why, sizeof why);
        if (rc) {
            guts_errmsg_set("%s", why);
            goto out;
        }
    }
    store_env *se = calloc(1, sizeof *se);
    if (!se) {
        rc = GUTS_ENOMEM;
        goto out;
    }
    snprintf(se->key, sizeof se->key, "%s", key);
    se->max_mapsize = d->max_mapsize;
    int mrc = mdb_env_create(&se->env);
    if (mrc) {
        free(se);
        rc = store_mdb_err(mrc, "create env");
        goto out;
    }
    /* MDB_NOTLS: read txns belong to the txn object, not the thread, so one
     * thread may nest a read inside an iteration callback. */
    if ((mrc = mdb_env_set_assert(se->env, store_assert)) ||
        (mrc = mdb_env_set_maxdbs(se->env, STORE_REPO_MAXDBS)) ||
        (mrc = mdb_env_set_mapsize(se->env, d->initial_mapsize)) ||
        (mrc = mdb_env_open(se->env, dir, MDB_NOTLS | (created ? nosync : 0), 0600))) {
        mdb_env_close(se->env);
        free(se);
        rc = store_mdb_err(mrc, "open env");
        goto out;
    }
    /* A process killed inside a read txn leaves its reader slot behind,
     * pinning old pages (and, 126 times over, all slots): clear them. */
    int dead = 0;
    mdb_reader_check(se->env, &dead);
    if ((rc = env_init(se))) {
        mdb_env_close(se->env);
        free(se);
        goto out;
    }
    /* env_init may have written the schema unflushed (into a directory
     * env_create could not replace): at worst one flush too many */
    atomic_store(&se->commits, created);
    se->dir = dir;
    dir = NULL;
    MDB_envinfo info;
    if (created && nosync) {
        /* the mark on the disk before any commit without a flush; without
         * it, none */
        se->nosync = store_mark_write(se->dir) == GUTS_OK &&
                     mdb_env_info(se->env, &info) == 0;
        se->own_txnid = se->nosync ? (uint64_t)info.me_last_txnid : 0;
        if (!se->nosync) {
            mdb_env_set_flags(se->env, MDB_NOSYNC, 0);
            mdb_env_sync(se->env, 1);
            (void)store_mark_clear(se->dir);
        }
    } else if (marked == 1 && store_mark_gone(marker)) {
        /* this boot's mark, left by a process that died in a first copy:
         * the kernel holds its writes; flushed, the env needs no mark */
        if (mdb_env_sync(se->env, 1) == 0) (void)store_mark_clear(se->dir);
    }
    *out = se;
out:
    free(dir);
    free(file);
    return rc;
}

int guts_repo_open(guts_data *d, const char *key, unsigned flags, guts_repo **out)
{
    if (!d || !out) return GUTS_EINVAL;
    *out = NULL;
    if (guts_repo_key_check(key) != GUTS_OK) {
        guts_errmsg_set("invalid repository key");
        return GUTS_EINVAL;
    }
    guts_repo *r = calloc(1, sizeof *r);
    if (!r) return GUTS_ENOMEM;
    r->d = d;
    r->stage_have = UINT64_MAX;
    int rc = GUTS_ENOMEM;
    r->cctx = store_cctx_new();
    r->dctx = ZSTD_createDCtx();
    if (!r->cctx || !r->dctx || cache_init(&r->cache, d->cache_bytes)) goto fail;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_windowLogMax, STORE_DELTA_WINDOWLOG))) {
        rc = GUTS_EINVAL;
        goto fail;
    }
    pthread_mutex_lock(&d->lock);
    store_env *se;
    for (se = d->envs; se; se = se->next)
        if (strcmp(se->key, key) == 0) break;
    if (se) {
        rc = GUTS_OK;
    } else if ((rc = env_open(d, key, flags, &se)) == GUTS_OK) {
        se->next = d->envs;
        d->envs = se;
    }
    if (rc == GUTS_OK) {
        se->users++;
        d->refs++;
    }
    pthread_mutex_unlock(&d->lock);
    if (rc) goto fail;
    r->se = se;
    *out = r;
    return GUTS_OK;
fail:
    ZSTD_freeCCtx(r->cctx);
    ZSTD_freeDCtx(r->dctx);
    cache_free(&r->cache);
    free(r);
    return rc;
}

ZSTD_CCtx *store_cctx_new(void)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (!c) return NULL;
    /* Frame checksums: a damaged record reads as GUTS_ECORRUPT, not as
     * wrong content. */
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, STORE_ZSTD_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1))) {
        ZSTD_freeCCtx(c);
        return NULL;
    }
    return c;
}

void guts_repo_close(guts_repo *r)
{
    if (!r) return;
    guts_repo_read_release(r);
    hasher_stop(r->hasher);
    group_free(&r->grp); /* a group not committed is discarded */
    guts_data *d = r->d;
    pthread_mutex_lock(&d->lock);
    store_env *se = r->se;
    if (--se->users == 0) {
        for (store_env **pp = &d->envs; *pp; pp = &(*pp)->next) {
            if (*pp == se) {
                *pp = se->next;
                break;
            }
        }
        /* An env without flushes is flushed before it closes; a failing
         * flush leaves its last commits to the kernel and its mark (a
         * replica, set aside and pulled again should a system crash come
         * first). */
        (void)store_nosync_end(se);
        free(se->dir);
        mdb_env_close(se->env);
        free(se);
    }
    int last = --d->refs == 0;
    pthread_mutex_unlock(&d->lock);
    if (last) store_data_free(d);
    ZSTD_freeCCtx(r->cctx);
    free(r->arena.buf);
    free(r->seqs);
    ZSTD_freeDCtx(r->dctx);
    EVP_MD_CTX_free(r->stage_sha);
    cache_free(&r->cache);
    free(r);
}

const char *guts_repo_key(const guts_repo *r)
{
    return r->se->key;
}

/* 1 if this process has key's env open: its directory must stay. */
static int env_in_use(guts_data *d, const char *key)
{
    pthread_mutex_lock(&d->lock);
    int busy = 0;
    for (store_env *se = d->envs; se; se = se->next)
        if (strcmp(se->key, key) == 0) busy = 1;
    pthread_mutex_unlock(&d->lock);
    return busy;
}

/* A repository about to be moved or removed: a valid key whose env this
 * process does not hold open. */
static int key_not_in_use(guts_data *d, const char *key)
{
    if (guts_repo_key_check(key) != GUTS_OK) {
        guts_errmsg_set("invalid repository key");
        return GUTS_EINVAL;
    }
    if (env_in_use(d, key)) {
        guts_errmsg_set("repository %s is open in this process", key);
        return GUTS_EAGAIN;
    }
    return GUTS_OK;
}

int guts_repo_remove(guts_data *d, const char *key)
{
    if (!d) return GUTS_EINVAL;
    int ck = key_not_in_use(d, key);
    if (ck) return ck;
    char *dir;
    int rc = repo_path(d, key, &dir);
    if (rc) return rc;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(dir);
        guts_errmsg_set("repository %s not found", key);
        return GUTS_ENOTFOUND;
    }
    rc = store_env_remove(dir);
    if (rc == GUTS_OK) {
        /* The owner dir goes when it is empty; another repo keeps it. */
        char *slash = strrchr(dir, '/');
        *slash = '\0';
        if (rmdir(dir) != 0 && errno != ENOTEMPTY && errno != EEXIST) {
            guts_errmsg_set("rmdir %s: %s", dir, strerror(errno));
            rc = GUTS_EIO;
        }
    }
    free(dir);
    return rc;
}


int guts_repo_set_aside(guts_data *d, const char *key, const char *suffix, char *to, size_t tolen)
{
    if (!d || !suffix || !*suffix || strchr(suffix, '/') || strlen(suffix) > 64) return GUTS_EINVAL;
    int ck = key_not_in_use(d, key);
    if (ck) return ck;
    char from[4096], dst[4096], owner[4096];
    const char *slash = strchr(key, '/');
    snprintf(from, sizeof from, "%s/repos/%s", d->path, key);
    if (snprintf(owner, sizeof owner, "%s/damaged/%.*s", d->path, (int)(slash - key), key) >=
        (int)sizeof owner - GUTS_KEY_PART_MAX - 80) {
        guts_errmsg_set("data dir path too long");
        return GUTS_EINVAL;
    }
    int rc = store_mkdirs(owner, owner);
    if (rc) return rc;
    for (int i = 1; i < 100; i++) {
        int len = i == 1 ? snprintf(dst, sizeof dst, "%s/%s.%s", owner, slash + 1, suffix)
                         : snprintf(dst, sizeof dst, "%s/%s.%s-%d", owner, slash + 1, suffix, i);
        if (len < 0 || len >= (int)sizeof dst) break;
        struct stat st;
        if (lstat(dst, &st) == 0) continue;
        if (rename(from, dst) != 0) {
            if (errno == ENOENT) {
                guts_errmsg_set("repository %s not found", key);
                return GUTS_ENOTFOUND;
            }
            guts_errmsg_set("rename %s to %s: %s", from, dst, strerror(errno));
            return GUTS_EIO;
        }
        if (to) snprintf(to, tolen, "%s", dst);
        /* The owner dir under repos/ goes when this was its last repository. */
        char *cut = strrchr(from, '/');
        *cut = 0;
        rmdir(from);
        return GUTS_OK;
    }
    guts_errmsg_set("%s: too many damaged copies set aside", owner);
    return GUTS_EEXIST;
}
