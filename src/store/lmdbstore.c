/* lmdbstore.c - the core's store interface over the LMDB store (store.h).
 *
 * A thin adapter: each vtable call maps to the guts_repo_* function of the
 * same name. Repository environments are opened on first use and kept open
 * (opening an env costs a few system calls and file descriptors; the daemon
 * touches the same repositories over and over), in a small array sorted by
 * key. Creation goes through GUTS_REPO_CREATE; nothing else creates.
 *
 * The first open of each repository verifies it (GUTS_REPO_VERIFY: every
 * page read by a child process), once per process: this is what lets a
 * node serve a data dir holding a damaged file. A fork copies the page
 * tables of every env open, so at start the owner checks every repository
 * in one child before any is open (guts_core_lmdbstore_verify_all); those
 * found healthy are then opened without a check of their own. A damaged repository goes
 * to the owner's hook, which sets it aside (it then reads as absent and is
 * pulled afresh from peers), or is remembered and refused from then on.
 *
 * Flushes off the loop (guts_core_lmdbstore_flush_start, issue 20). A
 * fresh node pulling many small repositories spent its time in the disk
 * flushes of their commits, several per repository, one after another on
 * the event loop's thread. With the flusher started, an env this adapter
 * creates is created GUTS_REPO_NOSYNC: its commits only write to the page
 * cache, and a pool of threads flushes it (guts_repo_sync) after each
 * commit, many envs at once, while the loop goes on. Its whole first copy
 * is written so (until its refs, which come last, or a poll tick without
 * a write: guts_core_lmdbstore_tick); then, once a flush covers the env's
 * last commit, it goes back to flushing every commit, and only then does
 * unsynced() let the core announce it. So what a process crash leaves is
 * always whole (the kernel holds the writes), and what a system crash can
 * cost is a replica never flushed, which no peer was told about: its
 * unflushed mark has the next open take it for damage (set aside, pulled
 * again). Envs that existed before keep flushing every commit, so data a
 * user imported is never behind a flush of ours (an import into the same
 * key during its first pull ends the mode: docs/storage.md). The threads touch only
 * the handle of a job and the queue under its mutex; every other field
 * is the loop thread's.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "guts/lmdbstore.h"

/* Grouped puts (guts_repo_group): a pull's records are held and committed
 * together, per this many bytes of records, before any other write (the
 * refs a pull applies: so a ref never lands before its closure), and
 * before anything reads counters or listings (l_info, l_ids, l_recent:
 * the core refreshes a repository at every session's end), so the core
 * and other processes see what they saw before, only committed in fewer
 * transactions. The daemon's poll reads counters as committed
 * (guts_core_lmdbstore_info_committed) and commits nothing. One commit per frame of
 * up to 1024 small records cost a replica of 202,000 objects ~14% of its
 * CPU (docs/performance.md). What a group holds is lost to a crash of
 * the process; nothing refers to it yet, and the next pull fetches it.
 * 1 MiB, not 2: with a split pull's held deltas beside it, a 2 MiB group
 * and its commit's dirty pages took a fresh node of 202,000 small objects
 * to 60-64 MB of RssAnon (54 MB with 1 MiB, for the same time). */
#define LMDBSTORE_GROUP_BYTES ((size_t)1 << 20)

/* Flusher threads: flushes of different files overlap in the disk's
 * queue and the filesystem's journal commits (ext4 joins concurrent
 * fsyncs into one), so a handful of threads turns N flushes into about
 * N / threads waits; more buys little on one disk. */
#define LMDBSTORE_FLUSHERS_MAX 16

/* A flush asked of the pool, and then its result. A write through the
 * repository while the job waits or runs counts in `asked`; a thread that
 * starts the flush copies it to `covered` (both under the pool's mutex):
 * every commit counted by then has written its pages, so the flush covers
 * it, and asked == covered at the end means nothing was left out. */
typedef struct flush_job {
    guts_repo *repo;
    char *key;
    int rc;
    uint64_t asked, covered;
    struct flush_job *next;
} flush_job;

typedef struct open_repo {
    char *key;
    guts_repo *repo;
    flush_job *job; /* its flush waiting, running or done, not yet taken back */
    int ungrouped;  /* full: puts write at once, until a write succeeds */
    int filling;    /* a replica's first copy: unflushed commits until it ends */
    int wrote_tick; /* committed since the last guts_core_lmdbstore_tick */
} open_repo;

typedef struct flusher {
    pthread_t th[LMDBSTORE_FLUSHERS_MAX];
    size_t nth;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    flush_job *todo, *todo_tail; /* FIFO */
    flush_job *done;             /* any order */
    guts_repo *busy[LMDBSTORE_FLUSHERS_MAX];
    int stop;
    void (*notify)(void *arg);
    void *arg;
} flusher;

struct guts_core_lmdbstore {
    guts_data *data;
    open_repo *open;
    size_t n, cap;
    guts_core_lmdbstore_damaged_fn on_damaged;
    void *damaged_arg;
    char **refused; /* damaged and still in place: never opened again */
    size_t nrefused;
    char **verified; /* checked by verify_all, not yet opened; sorted */
    size_t nverified;
    flusher *fl; /* NULL: every commit flushes, as the store does alone */
};

int guts_core_lmdbstore_new(guts_data *d, guts_core_lmdbstore **out)
{
    if (!d || !out)
        return GUTS_EINVAL;
    guts_core_lmdbstore *s = calloc(1, sizeof(*s));
    if (!s)
        return GUTS_ENOMEM;
    s->data = d;
    *out = s;
    return GUTS_OK;
}

static void flush_stop(guts_core_lmdbstore *s);

void guts_core_lmdbstore_free(guts_core_lmdbstore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        guts_repo_group_commit(s->open[i].repo);
    flush_stop(s);
    for (size_t i = 0; i < s->n; i++) {
        guts_repo_close(s->open[i].repo);
        free(s->open[i].key);
    }
    free(s->open);
    for (size_t i = 0; i < s->nrefused; i++)
        free(s->refused[i]);
    free(s->refused);
    for (size_t i = 0; i < s->nverified; i++)
        free(s->verified[i]);
    free(s->verified);
    free(s);
}

void guts_core_lmdbstore_on_damaged(guts_core_lmdbstore *s, guts_core_lmdbstore_damaged_fn fn,
                                    void *arg)
{
    s->on_damaged = fn;
    s->damaged_arg = arg;
}

static int refused(const guts_core_lmdbstore *s, const char *key)
{
    for (size_t i = 0; i < s->nrefused; i++)
        if (strcmp(s->refused[i], key) == 0) return 1;
    return 0;
}

/* key's env is damaged: the hook sets it aside (then it is absent), or it
 * is refused for the life of this store. */
static int damaged(guts_core_lmdbstore *s, const char *key, const char *why)
{
    if (s->on_damaged && s->on_damaged(key, why, s->damaged_arg) == 0)
        return GUTS_ENOTFOUND;
    char **p = realloc(s->refused, (s->nrefused + 1) * sizeof(char *));
    if (p) {
        s->refused = p;
        if ((p[s->nrefused] = strdup(key))) s->nrefused++;
    }
    return GUTS_EDAMAGED;
}

typedef struct open_key {
    const guts_core_lmdbstore *s;
    const char *key;
} open_key;

static int open_cmp(const void *ctx, size_t i)
{
    const open_key *k = ctx;
    return strcmp(k->s->open[i].key, k->key);
}

static size_t pos_of(const guts_core_lmdbstore *s, const char *key, int *found)
{
    open_key k = {s, key};
    return guts_lower_bound(s->n, open_cmp, &k, found);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if verify_all found key healthy (and it is not yet opened); it then
 * leaves the set: the check is once per process. */
static int take_verified(guts_core_lmdbstore *s, const char *key)
{
    char **p = s->nverified ? bsearch(&key, s->verified, s->nverified, sizeof(char *), cmp_key)
                            : NULL;
    if (!p) return 0;
    free(*p);
    size_t i = (size_t)(p - s->verified);
    memmove(p, p + 1, (s->nverified - i - 1) * sizeof(char *));
    s->nverified--;
    return 1;
}

/* verify_all's list of keys and what their check found. */
typedef struct verify_all {
    guts_core_lmdbstore *s;
    char **keys;
    size_t n, cap;
    unsigned char *ok;
    size_t ndamaged;
} verify_all;

static int list_key(const char *key, void *arg)
{
    verify_all *v = arg;
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 64;
        char **p = realloc(v->keys, nc * sizeof(char *));
        if (!p) return GUTS_ENOMEM;
        v->keys = p;
        v->cap = nc;
    }
    if (!(v->keys[v->n] = strdup(key))) return GUTS_ENOMEM;
    v->n++;
    return 0;
}

static void verified_one(size_t i, int rc, const char *why, void *arg)
{
    verify_all *v = arg;
    if (rc == GUTS_OK) {
        v->ok[i] = 1;
    } else if (rc == GUTS_EDAMAGED) {
        /* The set-aside key is absent from now on; a refused one too. */
        damaged(v->s, v->keys[i], why);
        v->ndamaged++;
    }
    /* Not checked (GUTS_EIO): its first open checks it alone. */
}

int guts_core_lmdbstore_verify_all(guts_core_lmdbstore *s, size_t *checked, size_t *ndamaged)
{
    verify_all v = {.s = s};
    int rc = guts_data_repos(s->data, list_key, &v);
    if (rc == GUTS_OK && !(v.ok = calloc(v.n ? v.n : 1, 1))) rc = GUTS_ENOMEM;
    if (rc == GUTS_OK)
        rc = guts_repo_verify_many(s->data, (const char *const *)v.keys, v.n, verified_one, &v);
    size_t nok = 0;
    for (size_t i = 0; i < v.n; i++)
        nok += rc == GUTS_OK && v.ok[i];
    char **set = nok ? realloc(s->verified, (s->nverified + nok) * sizeof(char *)) : NULL;
    if (set) s->verified = set;
    for (size_t i = 0; i < v.n; i++) {
        if (set && rc == GUTS_OK && v.ok[i])
            s->verified[s->nverified++] = v.keys[i];
        else
            free(v.keys[i]);
    }
    if (set) qsort(s->verified, s->nverified, sizeof(char *), cmp_key);
    free(v.keys);
    free(v.ok);
    if (checked) *checked = v.n;
    if (ndamaged) *ndamaged = v.ndamaged;
    return rc;
}

/* The open handle of key, opening (and with create, creating) it. */
static int get_repo(guts_core_lmdbstore *s, const char *key, int create, guts_repo **out)
{
    int found;
    size_t i = pos_of(s, key, &found);
    if (found) {
        *out = s->open[i].repo;
        return GUTS_OK;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        open_repo *p = realloc(s->open, nc * sizeof(open_repo));
        if (!p)
            return GUTS_ENOMEM;
        s->open = p;
        s->cap = nc;
    }
    if (refused(s, key)) return GUTS_EDAMAGED;
    char *k = strdup(key);
    if (!k)
        return GUTS_ENOMEM;
    guts_repo *r;
    unsigned verify = take_verified(s, key) ? 0 : GUTS_REPO_VERIFY;
    /* An env made here is a replica: it may wait for the flusher. */
    unsigned mk = create ? GUTS_REPO_CREATE | (s->fl ? GUTS_REPO_NOSYNC : 0) : 0;
    int rc = guts_repo_open(s->data, key, verify | mk, &r);
    if (rc == GUTS_EDAMAGED) {
        rc = damaged(s, key, guts_store_errmsg());
        /* Set aside: a create makes a fresh env in its place. */
        if (rc == GUTS_ENOTFOUND && create) rc = guts_repo_open(s->data, key, mk, &r);
    }
    if (rc) {
        free(k);
        return rc;
    }
    memmove(s->open + i + 1, s->open + i, (s->n - i) * sizeof(open_repo));
    s->open[i].key = k;
    s->open[i].repo = r;
    s->open[i].job = NULL;
    s->open[i].ungrouped = 0;
    s->open[i].filling = guts_repo_is_nosync(r); /* made now, marked */
    s->open[i].wrote_tick = 0;
    s->n++;
    guts_repo_group(r, LMDBSTORE_GROUP_BYTES);
    *out = r;
    return GUTS_OK;
}

int guts_core_lmdbstore_txnid(guts_core_lmdbstore *s, const char *key, uint64_t *out)
{
    guts_repo *r;
    int rc = get_repo(s, key, 0, &r);
    return rc ? rc : guts_repo_txnid(r, out);
}

int guts_core_lmdbstore_info_committed(guts_core_lmdbstore *s, const char *key,
                                       guts_repo_info *out)
{
    guts_repo *r;
    int rc = get_repo(s, key, 0, &r);
    return rc ? rc : guts_repo_info_get(r, out);
}

/* ---- The flusher ------------------------------------------------------------ */

static open_repo *entry_of(guts_core_lmdbstore *s, const char *key)
{
    int found;
    size_t i = pos_of(s, key, &found);
    return found ? &s->open[i] : NULL;
}

static void *flusher_main(void *arg)
{
    flusher *f = arg;
    pthread_mutex_lock(&f->mu);
    size_t me = 0;
    while (me < f->nth && !pthread_equal(f->th[me], pthread_self()))
        me++;
    for (;;) {
        while (!f->stop && !f->todo)
            pthread_cond_wait(&f->work, &f->mu);
        if (f->stop) break;
        flush_job *j = f->todo;
        f->todo = j->next;
        if (!f->todo) f->todo_tail = NULL;
        f->busy[me] = j->repo;
        j->covered = j->asked;
        pthread_mutex_unlock(&f->mu);
        j->rc = guts_repo_sync(j->repo);
        pthread_mutex_lock(&f->mu);
        f->busy[me] = NULL;
        j->next = f->done;
        f->done = j;
        pthread_cond_broadcast(&f->idle);
        if (f->notify) f->notify(f->arg);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Queue a flush of e's repository (the owner's thread, e->job NULL). */
static void flush_ask(guts_core_lmdbstore *s, open_repo *e)
{
    flush_job *j = calloc(1, sizeof *j);
    if (!j || !(j->key = strdup(e->key))) {
        free(j);
        return; /* no memory: it stays unflushed and unannounced; the next write asks again */
    }
    j->repo = e->repo;
    j->asked = 1;
    e->job = j;
    flusher *f = s->fl;
    pthread_mutex_lock(&f->mu);
    if (f->todo_tail)
        f->todo_tail->next = j;
    else
        f->todo = j;
    f->todo_tail = j;
    pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->mu);
}

/* After a write through r that failed or committed: a full store (a
 * group's commit failed and dropped it) stops grouping, so that each put
 * fails or succeeds as it did without groups (the core's full state and
 * its probe go by what a put returns), and the first write that succeeds
 * starts it again. */
static void regroup(open_repo *e, int rc)
{
    if (rc == GUTS_EFULL && !e->ungrouped) {
        e->ungrouped = 1;
        guts_repo_group(e->repo, 0);
    } else if (rc == GUTS_OK && e->ungrouped) {
        e->ungrouped = 0;
        guts_repo_group(e->repo, LMDBSTORE_GROUP_BYTES);
    }
}

/* After a write through r: an env that commits without flushing needs a
 * flush (one job at a time per env; its result asks again if needed). */
static int wrote(void *ctx, guts_repo *r, int rc)
{
    guts_core_lmdbstore *s = ctx;
    open_repo *e = entry_of(s, guts_repo_key(r));
    if (e) regroup(e, rc);
    if (!s->fl || !guts_repo_is_nosync(r)) return rc;
    if (!e) return rc;
    e->wrote_tick = 1;
    if (!e->job) {
        flush_ask(s, e);
    } else {
        pthread_mutex_lock(&s->fl->mu);
        e->job->asked++;
        pthread_mutex_unlock(&s->fl->mu);
    }
    return rc;
}

int guts_core_lmdbstore_flush_start(guts_core_lmdbstore *s, size_t threads,
                                    void (*notify)(void *arg), void *arg)
{
    if (!s || s->fl || threads == 0 || threads > LMDBSTORE_FLUSHERS_MAX) return GUTS_EINVAL;
    flusher *f = calloc(1, sizeof *f);
    if (!f) return GUTS_ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->work, NULL);
    pthread_cond_init(&f->idle, NULL);
    f->notify = notify;
    f->arg = arg;
    /* Under the mutex: a thread finds its own slot in th[] only once all
     * are started. */
    pthread_mutex_lock(&f->mu);
    for (; f->nth < threads; f->nth++)
        if (pthread_create(&f->th[f->nth], NULL, flusher_main, f) != 0) break;
    pthread_mutex_unlock(&f->mu);
    s->fl = f;
    if (f->nth == 0) {
        flush_stop(s);
        return GUTS_ENOMEM;
    }
    return GUTS_OK;
}

/* Join the threads, then flush what is left on this thread: a node that
 * stops leaves nothing unflushed behind. */
static void flush_stop(guts_core_lmdbstore *s)
{
    flusher *f = s->fl;
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->work);
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < f->nth; i++)
        pthread_join(f->th[i], NULL);
    for (flush_job *j = f->todo, *next; j; j = next) {
        next = j->next;
        free(j->key);
        free(j);
    }
    for (flush_job *j = f->done, *next; j; j = next) {
        next = j->next;
        free(j->key);
        free(j);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (guts_repo_is_nosync(s->open[i].repo)) guts_repo_sync_on(s->open[i].repo);
    }
    pthread_cond_destroy(&f->work);
    pthread_cond_destroy(&f->idle);
    pthread_mutex_destroy(&f->mu);
    free(f);
    s->fl = NULL;
}

size_t guts_core_lmdbstore_flushed(guts_core_lmdbstore *s, void (*cb)(const char *key, void *arg),
                                   void *arg)
{
    flusher *f = s ? s->fl : NULL;
    if (!f) return 0;
    pthread_mutex_lock(&f->mu);
    flush_job *list = f->done;
    f->done = NULL;
    pthread_mutex_unlock(&f->mu);
    size_t durable = 0;
    for (flush_job *j = list, *next; j; j = next) {
        next = j->next;
        open_repo *e = j->repo ? entry_of(s, j->key) : NULL;
        if (e && e->job == j) {
            e->job = NULL;
            if (j->rc == GUTS_OK && j->covered == j->asked && e->filling &&
                guts_repo_is_nosync(e->repo)) {
                /* flushed so far, but the first copy goes on: its next
                 * commit asks again (no fdatasync on the loop per group) */
            } else if (j->rc == GUTS_OK && j->covered == j->asked &&
                       guts_repo_sync_on(e->repo) == GUTS_OK) {
                /* durable up to its last commit, which flushes from now on */
                durable++;
                if (cb) cb(j->key, arg);
            } else {
                /* written again meanwhile, or the flush failed: once more
                 * (a failing disk fails the next synchronous write too) */
                flush_ask(s, e);
            }
        }
        free(j->key);
        free(j);
    }
    return durable;
}

void guts_core_lmdbstore_tick(guts_core_lmdbstore *s)
{
    if (!s || !s->fl) return;
    for (size_t i = 0; i < s->n; i++) {
        open_repo *e = &s->open[i];
        if (e->filling && !e->wrote_tick) {
            e->filling = 0; /* a copy without refs, or one that stopped */
            if (!e->job) flush_ask(s, e);
        }
        e->wrote_tick = 0;
    }
}

static int l_unsynced(void *ctx, const char *key)
{
    guts_core_lmdbstore *s = ctx;
    if (!s->fl) return 0;
    open_repo *e = entry_of(s, key);
    return e && guts_repo_is_nosync(e->repo);
}

/* ---- The core's store interface ---------------------------------------------- */

static int l_repos(void *ctx, int (*cb)(const char *key, void *arg), void *arg)
{
    guts_core_lmdbstore *s = ctx;
    return guts_data_repos(s->data, cb, arg);
}

/* No flush asked here: the core creates a repository right before its
 * first write, whose flush covers the creation too. */
static int l_create(void *ctx, const char *key)
{
    guts_repo *r;
    return get_repo(ctx, key, 1, &r);
}

/* wrote(), for a write that may only have gone to r's group: a flush is
 * asked only when the env committed since t0 (asking for none would let
 * the flusher end the env's unflushed state before its commits). */
static int wrote_since(void *ctx, guts_repo *r, uint64_t t0, int rc)
{
    uint64_t t1;
    if (rc == GUTS_OK && (guts_repo_txnid(r, &t1) || t1 == t0)) return rc;
    return wrote(ctx, r, rc);
}

/* key's handle, its group committed: for reads of counters and listings,
 * which see only what is committed. */
static int committed(void *ctx, const char *key, guts_repo **r)
{
    uint64_t t0;
    int rc = get_repo(ctx, key, 0, r);
    if (rc || (rc = guts_repo_txnid(*r, &t0))) return rc;
    return wrote_since(ctx, *r, t0, guts_repo_group_commit(*r));
}

static int l_info(void *ctx, const char *key, guts_repo_info *out)
{
    guts_repo *r;
    int rc = committed(ctx, key, &r);
    return rc ? rc : guts_repo_info_get(r, out);
}

/* A listing of a range the group holds nothing of needs no commit: each
 * part of a split first copy starts with the listing of its range, and a
 * commit (and its flush) per part, 256 of them, was most of a fresh
 * node's wall time on many small objects (docs/performance.md). */
static int l_ids(void *ctx, const char *key, const guts_id *from, const guts_id *to,
                 int (*cb)(const guts_id *id, void *arg), void *arg)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    if (!rc && guts_repo_group_holds(r, from, to)) rc = committed(ctx, key, &r);
    return rc ? rc : guts_repo_ids(r, from, to, cb, arg);
}

static int l_has(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_has(r, id);
}

static int l_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                 size_t *len)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_get(r, id, type, data, len);
}

static int l_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad)
{
    guts_repo *r;
    uint64_t t0;
    int rc = get_repo(ctx, key, 0, &r);
    if (rc || (rc = guts_repo_txnid(r, &t0))) return rc;
    return wrote_since(ctx, r, t0, guts_repo_put(r, objs, n, added, bad));
}

static int l_recent(void *ctx, const char *key, size_t max, guts_id *out, size_t *n)
{
    guts_repo *r;
    *n = 0;
    int rc = committed(ctx, key, &r);
    return rc ? rc : guts_repo_recent(r, max, out, n);
}

static int l_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_refs(r, with_tombstones, cb, arg);
}

static int l_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_ref_get(r, name, out);
}

static int l_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    if (rc) return rc;
    open_repo *e = entry_of(ctx, key);
    if (e) e->filling = 0; /* refs come last: the first copy is over */
    return wrote(ctx, r, guts_repo_refs_put(r, refs, n));
}

static int l_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_rec_get(r, id, out, buf);
}

static int l_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                     const guts_rec_seen *seen, size_t *added, size_t *bad)
{
    guts_repo *r;
    uint64_t t0;
    int rc = get_repo(ctx, key, 0, &r);
    if (rc || (rc = guts_repo_txnid(r, &t0))) return rc;
    return wrote_since(ctx, r, t0, guts_repo_rec_put(r, recs, n, nobase, seen, added, bad));
}

static int l_verify(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_verify(r, id);
}

static int l_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    guts_repo *r;
    *dropped = 0;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : wrote(ctx, r, guts_repo_drop(r, ids, n, dropped));
}

static int l_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_read(r, id, off, buf, len, got);
}

static int l_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc
              : wrote(ctx, r, guts_repo_stage_write(r, id, type, size, off, data, len, stored));
}

static int l_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    guts_repo *r;
    *n = 0;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_stage_list(r, out, max, n);
}

static int l_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : wrote(ctx, r, guts_repo_stage_drop(r, id));
}

void guts_core_lmdbstore_iface(guts_core_lmdbstore *s, guts_core_store *out)
{
    memset(out, 0, sizeof(*out));
    out->ctx = s;
    out->repos = l_repos;
    out->create = l_create;
    out->info = l_info;
    out->ids = l_ids;
    out->has = l_has;
    out->get = l_get;
    out->put = l_put;
    out->recent = l_recent;
    out->refs = l_refs;
    out->ref_get = l_ref_get;
    out->refs_put = l_refs_put;
    out->rec_get = l_rec_get;
    out->verify = l_verify;
    out->drop = l_drop;
    out->rec_put = l_rec_put;
    out->read = l_read;
    out->stage_write = l_stage_write;
    out->stage_list = l_stage_list;
    out->stage_drop = l_stage_drop;
    out->unsynced = l_unsynced;
}
