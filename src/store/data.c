/* data.c - the data directory: its layout, the node identity, the list of
 * repositories and the daemon lock.
 *
 * DATA/node is a tiny LMDB env holding the node id (16 random bytes from
 * getrandom(), made once) and the incarnation counter. DATA/repos/OWNER/NAME
 * is one LMDB env per repository; the key is checked before any path is
 * built because keys arrive from the network.
 *
 * The repository envs themselves are opened and closed by repo.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int store_mdb_err(int rc, const char *what)
{
    if (rc == 0) return GUTS_OK;
    if (rc < 0 && rc >= GUTS_EDAMAGED) return rc; /* already a GUTS_E* code */
    guts_errmsg_set("%s: %s", what, mdb_strerror(rc));
    if (rc == ENOSPC || rc == MDB_MAP_FULL || rc == EDQUOT) return GUTS_EFULL;
    if (rc == ENOMEM) return GUTS_ENOMEM;
    /* LMDB's own structure is broken: the env, not one record. */
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID) return GUTS_EDAMAGED;
    if (rc == MDB_VERSION_MISMATCH) return GUTS_EVERSION;
    if (rc > 0) return GUTS_EIO;
    return GUTS_ESTORE;
}

/* The directory path exists and is one (named `shown` in messages; NULL for
 * the data dir itself). GUTS_ENOTFOUND when the data dir is absent,
 * GUTS_EINVAL when one of its parts is (not a data dir), GUTS_EIO with the
 * errno text otherwise (permission denied, not a directory, ...). */
static int dir_present(const char *path, const char *shown)
{
    struct stat st;
    int e = stat(path, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (e == 0) return GUTS_OK;
    if (e == ENOENT && !shown) {
        guts_errmsg_set("it does not exist");
        return GUTS_ENOTFOUND;
    }
    if (e == ENOENT) {
        guts_errmsg_set("not a guts data directory (it has no %s/)", shown);
        return GUTS_EINVAL;
    }
    if (shown)
        guts_errmsg_set("%s: %s", shown, strerror(e));
    else
        guts_errmsg_set("%s", strerror(e));
    return GUTS_EIO;
}

/* mkdir -p with mode 0700 for every directory it creates. Failures name
 * `shown` (NULL: the data dir itself, which the caller names) and carry
 * the errno text. */
int store_mkdirs(const char *path, const char *shown)
{
    char *p = strdup(path);
    if (!p) return GUTS_ENOMEM;
    int rc = GUTS_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                if (c != '\0')
                    guts_errmsg_set("cannot create %s: %s", p, strerror(errno));
                else if (shown)
                    guts_errmsg_set("%s: %s", shown, strerror(errno));
                else
                    guts_errmsg_set("%s", strerror(errno));
                rc = GUTS_EIO;
                break;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    if (rc == GUTS_OK) rc = dir_present(path, shown);
    return rc;
}

char *store_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static int fill_random(uint8_t *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(b + got, n - got, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            guts_errmsg_set("getrandom: %s", strerror(errno));
            return GUTS_EIO;
        }
        got += (size_t)k;
    }
    return GUTS_OK;
}

/* Read the node id, creating it in the same write txn if absent, so two
 * processes opening a fresh data dir at once agree on one id. */
static int node_init(guts_data *d)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(d->node_env, NULL, 0, &txn);
    if (rc) return store_mdb_err(rc, "node txn");
    rc = mdb_dbi_open(txn, "node", MDB_CREATE, &d->node_dbi);
    if (rc) goto fail;
    MDB_val k = {2, "id"}, v;
    rc = mdb_get(txn, d->node_dbi, &k, &v);
    if (rc == 0) {
        if (v.mv_size != GUTS_NODE_ID_LEN) {
            mdb_txn_abort(txn);
            guts_errmsg_set("node id has %zu bytes", v.mv_size);
            return GUTS_ECORRUPT;
        }
        memcpy(d->node_id.b, v.mv_data, GUTS_NODE_ID_LEN);
        /* Commit, not abort: an aborted txn would close the dbi it opened. */
        rc = mdb_txn_commit(txn);
        return store_mdb_err(rc, "node commit");
    }
    if (rc != MDB_NOTFOUND) goto fail;
    int grc = fill_random(d->node_id.b, GUTS_NODE_ID_LEN);
    if (grc) {
        mdb_txn_abort(txn);
        return grc;
    }
    v.mv_size = GUTS_NODE_ID_LEN;
    v.mv_data = d->node_id.b;
    rc = mdb_put(txn, d->node_dbi, &k, &v, 0);
    if (rc) goto fail;
    rc = mdb_txn_commit(txn);
    return store_mdb_err(rc, "node commit");
fail:
    mdb_txn_abort(txn);
    return store_mdb_err(rc, "node init");
}

int guts_data_open(const char *path, unsigned flags, guts_data **out)
{
    if (!path || !*path || !out) return GUTS_EINVAL;
    *out = NULL;
    guts_data *d = calloc(1, sizeof *d);
    if (!d) return GUTS_ENOMEM;
    d->initial_mapsize = STORE_MAPSIZE_DEFAULT;
    d->max_mapsize = STORE_MAPSIZE_MAX;
    d->cache_bytes = STORE_CACHE_BYTES;
    d->refs = 1;
    d->lock_fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    char *node = NULL, *repos = NULL;
    int rc = GUTS_ENOMEM;
    d->path = strdup(path);
    node = store_path_join(path, "node");
    repos = store_path_join(path, "repos");
    if (!d->path || !node || !repos) goto fail;
    /* Without GUTS_DATA_CREATE nothing is made: a mistyped --data must not
     * become a new data dir with a node identity of its own. */
    if (flags & GUTS_DATA_CREATE) {
        if ((rc = store_mkdirs(path, NULL)) || (rc = store_mkdirs(node, "node")) ||
            (rc = store_mkdirs(repos, "repos")))
            goto fail;
    } else if ((rc = dir_present(path, NULL)) || (rc = dir_present(node, "node")) ||
               (rc = dir_present(repos, "repos"))) {
        goto fail;
    }
    int mrc = mdb_env_create(&d->node_env);
    if (mrc) {
        d->node_env = NULL;
        rc = store_mdb_err(mrc, "node env");
        goto fail;
    }
    if ((mrc = mdb_env_set_maxdbs(d->node_env, 2)) ||
        (mrc = mdb_env_set_mapsize(d->node_env, STORE_NODE_MAPSIZE)) ||
        (mrc = mdb_env_open(d->node_env, node, MDB_NOTLS, 0600))) {
        rc = store_mdb_err(mrc, "node");
        goto fail;
    }
    if ((rc = node_init(d))) goto fail;
    free(node);
    free(repos);
    *out = d;
    return GUTS_OK;
fail:
    free(node);
    free(repos);
    guts_data_close(d);
    return rc;
}

void store_data_free(guts_data *d)
{
    pthread_mutex_destroy(&d->lock);
    free(d->path);
    free(d);
}

void guts_data_close(guts_data *d)
{
    if (!d) return;
    if (d->lock_fd >= 0) close(d->lock_fd); /* releases the flock */
    d->lock_fd = -1;
    if (d->node_env) mdb_env_close(d->node_env);
    d->node_env = NULL;
    /* Repo handles still open keep the rest alive until they close. */
    pthread_mutex_lock(&d->lock);
    int last = --d->refs == 0;
    pthread_mutex_unlock(&d->lock);
    if (last) store_data_free(d);
}

const char *guts_data_path(const guts_data *d)
{
    return d->path;
}

const guts_node_id *guts_data_node_id(const guts_data *d)
{
    return &d->node_id;
}

int guts_data_incarnation_next(guts_data *d, uint64_t *out)
{
    if (!d || !out) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = mdb_txn_begin(d->node_env, NULL, 0, &txn);
    if (rc) return store_mdb_err(rc, "node txn");
    MDB_val k = {11, "incarnation"}, v;
    uint64_t inc = 0;
    rc = mdb_get(txn, d->node_dbi, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        inc = be64_get(v.mv_data);
    } else if (rc == 0) {
        mdb_txn_abort(txn);
        guts_errmsg_set("incarnation has %zu bytes", v.mv_size);
        return GUTS_ECORRUPT;
    } else if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc, "read incarnation");
    }
    inc++;
    uint8_t b[8];
    be64_put(b, inc);
    v.mv_size = 8;
    v.mv_data = b;
    rc = mdb_put(txn, d->node_dbi, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(txn);
        return store_mdb_err(rc, "write incarnation");
    }
    rc = mdb_txn_commit(txn);
    if (rc) return store_mdb_err(rc, "commit incarnation");
    *out = inc;
    return GUTS_OK;
}

void guts_data_set_initial_mapsize(guts_data *d, size_t bytes)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    /* Floor: creating the five databases needs a few pages. */
    if (bytes < 16 * page) bytes = 16 * page;
    d->initial_mapsize = (bytes + page - 1) / page * page;
}

void guts_data_set_max_mapsize(guts_data *d, size_t bytes)
{
    d->max_mapsize = bytes > STORE_MAPSIZE_MAX ? STORE_MAPSIZE_MAX : bytes;
}

void guts_data_set_cache_bytes(guts_data *d, size_t bytes)
{
    d->cache_bytes = bytes;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_env_remove(const char *dir)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", STORE_NOSYNC_MARK};
    char f[4096];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        if (snprintf(f, sizeof f, "%s/%s", dir, files[i]) >= (int)sizeof f) {
            guts_errmsg_set("path too long: %s", dir);
            return GUTS_EINVAL;
        }
        if (unlink(f) != 0 && errno != ENOENT) {
            guts_errmsg_set("unlink %s: %s", f, strerror(errno));
            return GUTS_EIO;
        }
    }
    if (rmdir(dir) != 0) {
        guts_errmsg_set("rmdir %s: %s", dir, strerror(errno));
        return GUTS_EIO;
    }
    return GUTS_OK;
}

/* A dot-named env left by a process killed while making it, between its
 * mkdir and its rename (repo.c's env_create: OWNER/.NAME.new-PID-SEQ), is
 * removed once its maker is gone and it is a minute old. The age guards
 * a maker alive in another pid namespace sharing this data dir, for which
 * kill() says ESRCH: a live maker renames its env within milliseconds. */
#define STALE_NEW_ENV_S 60

static void stale_new_env_remove(const char *owner, const char *name)
{
    const char *tail = NULL;
    for (const char *p = strstr(name, ".new-"); p; p = strstr(p + 1, ".new-"))
        tail = p + 5;
    if (name[0] != '.' || !tail || tail - 5 < name + 2) return; /* NAME not empty */
    char *end;
    long pid = strtol(tail, &end, 10);
    if (pid <= 0 || end == tail || *end != '-' || !end[1] ||
        strspn(end + 1, "0123456789") != strlen(end + 1))
        return;
    if (pid == (long)getpid() || !store_mark_gone(pid)) return;
    char dir[4096];
    struct stat st;
    if (snprintf(dir, sizeof dir, "%s/%s", owner, name) >= (int)sizeof dir ||
        lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        time(NULL) - st.st_mtime < STALE_NEW_ENV_S)
        return;
    (void)store_env_remove(dir);
}

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int strvec_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) return GUTS_ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return GUTS_ENOMEM;
    s->n++;
    return GUTS_OK;
}

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

int guts_data_repos(guts_data *d, int (*cb)(const char *key, void *ctx), void *ctx)
{
    if (!d || !cb) return GUTS_EINVAL;
    char *repos = store_path_join(d->path, "repos");
    if (!repos) return GUTS_ENOMEM;
    strvec keys = {0};
    int rc = GUTS_OK;
    DIR *top = opendir(repos);
    if (!top) {
        guts_errmsg_set("opendir %s: %s", repos, strerror(errno));
        free(repos);
        return GUTS_EIO;
    }
    struct dirent *e;
    while (rc == GUTS_OK && (e = readdir(top))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > GUTS_KEY_PART_MAX) continue;
        char *owner = store_path_join(repos, e->d_name);
        if (!owner) {
            rc = GUTS_ENOMEM;
            break;
        }
        DIR *od = opendir(owner);
        struct dirent *f;
        while (od && rc == GUTS_OK && (f = readdir(od))) {
            if (f->d_name[0] == '.') stale_new_env_remove(owner, f->d_name);
            if (f->d_name[0] == '.' || strlen(f->d_name) > GUTS_KEY_PART_MAX) continue;
            char key[GUTS_KEY_MAX + 1], file[4096];
            if (snprintf(key, sizeof key, "%s/%s", e->d_name, f->d_name) >= (int)sizeof key ||
                guts_repo_key_check(key) != GUTS_OK)
                continue;
            struct stat st;
            snprintf(file, sizeof file, "%s/%s/data.mdb", owner, f->d_name);
            if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            rc = strvec_push(&keys, key);
        }
        if (od) closedir(od);
        free(owner);
    }
    closedir(top);
    free(repos);
    if (rc == GUTS_OK) {
        if (keys.n) qsort(keys.v, keys.n, sizeof *keys.v, cmp_str);
        for (size_t i = 0; i < keys.n && rc == 0; i++)
            rc = cb(keys.v[i], ctx);
    }
    strvec_free(&keys);
    return rc;
}

/* The lock is an flock on DATA/node/daemon.lock: the kernel drops it when
 * the holder exits, however it exits, so a killed node never leaves a
 * stale lock behind (a pid file alone would need a liveness guess). The
 * file holds the holder's pid for the message of the one refused. */
int guts_data_lock(guts_data *d, long *holder)
{
    if (!d || !holder) return GUTS_EINVAL;
    *holder = 0;
    if (d->lock_fd >= 0) return GUTS_OK;
    char *file = store_path_join(d->path, "node/" STORE_LOCK_FILE);
    if (!file) return GUTS_ENOMEM;
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        guts_errmsg_set("%s: %s", file, strerror(errno));
        free(file);
        return GUTS_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            /* The holder writes its pid right after locking: an empty read
             * is a holder in that instant, reported as pid 0 (unknown). */
            char buf[32];
            ssize_t k = pread(fd, buf, sizeof buf - 1, 0);
            if (k > 0) {
                buf[k] = 0;
                char *end;
                long pid = strtol(buf, &end, 10);
                if (end != buf && (*end == '\n' || *end == 0) && pid > 0) *holder = pid;
            }
            guts_errmsg_set("%s is locked by pid %ld", file, *holder);
        } else {
            guts_errmsg_set("flock %s: %s", file, strerror(e));
        }
        close(fd);
        free(file);
        return e == EWOULDBLOCK ? GUTS_EAGAIN : GUTS_EIO;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        guts_errmsg_set("%s: %s", file, strerror(errno));
        close(fd);
        free(file);
        return GUTS_EIO;
    }
    free(file);
    d->lock_fd = fd;
    return GUTS_OK;
}
