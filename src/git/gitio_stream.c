/* gitio_stream.c - the import's contents: the planned objects read from
 * the repository's packs (packread.c), each with git's delta when its pack
 * holds one, and the rest (loose objects, objects of GUTS_LARGE_MIN bytes
 * and more, packs the reader skips) from one `git cat-file --batch`; all
 * written to the store.
 *
 * A feeder thread writes ids to cat-file while this thread reads the
 * contents, so neither side can block the other on a full pipe; a storer
 * thread commits one batch while the next is read. Batches are bounded in
 * count and in bytes (GITIO_BATCH_OBJECTS, GITIO_BATCH_BYTES), which bounds
 * memory too; an object larger than a batch is streamed to the store in
 * pieces (GITIO_LARGE_STEP).
 */
#include "gitio_int.h"
#include "pack.h"
#include "packread.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct feeder {
    int fd;
    const iobj *o;
    const uint32_t *order;
    size_t n;
    int rc;
} feeder;

/* Writer thread: every needed id, one a line, to cat-file's stdin. */
static void *feed_ids(void *arg)
{
    feeder *f = arg;
    enum { CHUNK = 64 * 1024 };
    char *buf = malloc(CHUNK);
    size_t len = 0;
    f->rc = buf ? GUTS_OK : GUTS_ENOMEM;
    for (size_t i = 0; buf && i < f->n && !f->rc; i++) {
        guts_id_to_hex(&f->o[f->order[i]].id, buf + len);
        len += GUTS_HEX_LEN;
        buf[len++] = '\n';
        if (len + GUTS_HEX_LEN + 1 > CHUNK || i + 1 == f->n) {
            f->rc = guts_write_all(f->fd, buf, len);
            len = 0;
        }
    }
    free(buf);
    close(f->fd); /* EOF tells cat-file to finish */
    f->fd = -1;
    return NULL;
}

/* A batch of objects on its way to guts_repo_put. Contents live in an arena
 * reused from batch to batch (no page faults after the first); an object too
 * big for it gets a buffer of its own. */
typedef struct batch {
    guts_obj objs[GITIO_BATCH_OBJECTS];
    void *own[GITIO_BATCH_OBJECTS]; /* malloc'ed content, or NULL if in the arena */
    uint8_t *arena;
    size_t n, bytes, used;
} batch;

/* Where the next object's content of size bytes goes: the arena when it
 * fits, else a buffer of its own (recorded to be freed). NULL: no memory. */
static void *batch_slot(batch *b, size_t size)
{
    assert(b->n < GITIO_BATCH_OBJECTS); /* the caller flushes a full batch first */
    if (b->used + size <= GITIO_BATCH_BYTES) {
        void *p = b->arena + b->used;
        b->used += size;
        b->own[b->n] = NULL;
        return p;
    }
    b->own[b->n] = malloc(size ? size : 1);
    return b->own[b->n];
}

/* A batch arena, in huge pages where the kernel offers them: filling
 * 2 x 16 MiB of fresh 4 KiB pages cost an import of zlib 8,192 page faults,
 * about 4% of its CPU on this VM; huge pages need 16. */
static uint8_t *arena_new(void)
{
    void *p = NULL;
#ifdef MADV_HUGEPAGE
    if (posix_memalign(&p, GITIO_ARENA_ALIGN, GITIO_BATCH_BYTES) == 0) {
        (void)madvise(p, GITIO_BATCH_BYTES, MADV_HUGEPAGE); /* only a hint */
        return p;
    }
#endif
    p = malloc(GITIO_BATCH_BYTES);
    return p;
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->own[i]);
    b->n = b->bytes = b->used = 0;
}

static int batch_store(guts_repo *repo, batch *b, uint64_t *added_total, char *err)
{
    size_t added = 0, bad = 0;
    int rc = GUTS_OK;
    if (b->n) {
        rc = guts_repo_put(repo, b->objs, b->n, &added, &bad);
        if (rc) {
            char hex[GUTS_HEX_LEN + 1] = "?";
            if (bad < b->n) guts_id_to_hex(&b->objs[bad].id, hex);
            if (rc == GUTS_EHASH)
                guts_git_errf(err, rc, "object %s from git does not hash to its id", hex);
            else
                guts_git_errf(err, rc, "storing a batch of %zu objects (near %s): %s", b->n, hex,
                     guts_strerror(rc));
        }
        *added_total += added;
    }
    batch_clear(b);
    return rc;
}

/* The storing thread: compressing and committing a batch (zstd, SHA-1,
 * LMDB) overlaps with reading the next one from git, so cat-file is never
 * left waiting on a full pipe while we compress. Two batches alternate.
 * The puts are grouped (guts_repo_group): a batch's records stay in memory
 * and are written in one transaction per GUTS_GROUP_BYTES of them, before
 * a large object and at the end, which keeps zlib's store at 1.27x its
 * pack instead of 2.08x (docs/performance.md). */
typedef struct storer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    guts_repo *repo;
    batch *pending; /* handed over, not yet taken */
    int busy;       /* storing a batch */
    int quit;
    int rc;
    uint64_t added;
    char err[GUTS_GITIO_ERR_MAX];
} storer;

static void *store_batches(void *arg)
{
    storer *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->pending) break;
        batch *b = s->pending;
        s->pending = NULL;
        s->busy = 1;
        int failed = s->rc != GUTS_OK;
        pthread_mutex_unlock(&s->mu);
        char err[GUTS_GITIO_ERR_MAX];
        int rc = failed ? GUTS_OK : batch_store(s->repo, b, &s->added, err);
        if (failed) batch_clear(b);
        pthread_mutex_lock(&s->mu);
        if (rc && !s->rc) {
            s->rc = rc;
            memcpy(s->err, err, sizeof err);
        }
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Wait until the storer is idle (so both batches are free again); hand it
 * b if b is not NULL. Returns the storer's first error, if any, with its
 * message copied to err (unless err is NULL). */
static int storer_submit(storer *s, batch *b, char *err)
{
    pthread_mutex_lock(&s->mu);
    while (s->pending || s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->rc;
    if (rc && err) memcpy(err, s->err, GUTS_GITIO_ERR_MAX);
    if (!rc && b) {
        s->pending = b;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The group's bound: GUTS_GROUP_BYTES, or $GUTS_IMPORT_GROUP_BYTES (a
 * smaller one makes a test's kills find imports committed in part, or
 * bounds memory). */
static size_t group_bytes(void)
{
    const char *e = getenv("GUTS_IMPORT_GROUP_BYTES");
    char *end;
    if (!e || *e < '1' || *e > '9') return GUTS_GROUP_BYTES;
    errno = 0;
    unsigned long long v = strtoull(e, &end, 10);
    return errno || *end || v > SIZE_MAX ? GUTS_GROUP_BYTES : (size_t)v;
}

/* Write what the storer's puts hold (the storer idle). */
static int group_commit(guts_repo *repo, char *err)
{
    int rc = guts_repo_group_commit(repo);
    if (rc)
        guts_git_errf(err, rc, "committing imported objects: %s (%s)", guts_strerror(rc),
                      guts_store_errmsg());
    return rc;
}

/* Parse "<id> <type> <size>" of a --batch header and check it against what
 * the listing said about this object. */
int gitio_check_header(char *line, const iobj *o)
{
    guts_id id;
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL, *end;
    if (!sp1 || !sp2) return GUTS_EINVAL;
    if (guts_id_from_hex(line, (size_t)(sp1 - line), &id) || guts_id_cmp(&id, &o->id))
        return GUTS_EINVAL;
    if (guts_otype_parse(sp1 + 1, (size_t)(sp2 - sp1 - 1)) != o->type) return GUTS_EINVAL;
    errno = 0;
    if (sp2[1] < '0' || sp2[1] > '9') return GUTS_EINVAL;
    unsigned long long sz = strtoull(sp2 + 1, &end, 10);
    if (errno || *end || sz != o->size) return GUTS_EINVAL;
    return GUTS_OK;
}

/* A large object from cat-file straight into the store's staging, a few
 * pieces per write transaction: it is never held whole (the store hashes
 * it as it goes and stores it once the last bytes verify). The storer
 * thread must be idle (the repo handle is single-threaded). */
static int stream_large(guts_repo *repo, rd *r, const iobj *o, const char *gitdir, uint64_t *added,
                        char *err)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&o->id, hex);
    uint8_t *buf = malloc(GITIO_LARGE_STEP);
    if (!buf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", hex);
    int rc = GUTS_OK, stored = 0;
    char nl = 0;
    for (uint64_t off = 0; off < o->size && !rc; off += GITIO_LARGE_STEP) {
        size_t k = o->size - off < GITIO_LARGE_STEP ? (size_t)(o->size - off) : GITIO_LARGE_STEP;
        if (gitio_rd_exact(r, buf, k)) {
            rc =
                guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
            break;
        }
        rc = guts_repo_stage_write(repo, &o->id, o->type, o->size, off, buf, k, &stored);
        if (rc == GUTS_EHASH)
            guts_git_errf(err, rc, "object %s from git does not hash to its id", hex);
        else if (rc)
            guts_git_errf(err, rc, "storing object %s: %s (%s)", hex, guts_strerror(rc),
                 guts_store_errmsg());
    }
    free(buf);
    if (!rc && (gitio_rd_exact(r, &nl, 1) || nl != '\n'))
        rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
    if (!rc) *added += (uint64_t)stored;
    return rc;
}

/* Object o from the packs into batch b (room for it checked by the
 * caller), with its git delta when its pack holds one against the base the
 * listing named: the store turns that delta's copies into its own zstd
 * delta (objects_put.c) instead of finding them again. */
static int read_packed(guts_packs *ps, batch *b, const iobj *o, char *err)
{
    char hex[GUTS_HEX_LEN + 1];
    int type;
    const uint8_t *data, *gd;
    size_t len, gdlen;
    int rc = guts_packs_read(ps, &o->id, &type, &data, &len, &gd, &gdlen, err);
    if (rc) return rc;
    guts_id_to_hex(&o->id, hex);
    if (type != o->type || len != o->size)
        return guts_git_errf(err, GUTS_ECORRUPT, "object %s: its pack and git cat-file disagree",
                             hex);
    int base = !guts_id_is_zero(&o->base_id);
    if (!base) gdlen = 0, gd = NULL;
    uint8_t *slot = batch_slot(b, len + gdlen);
    if (!slot) return guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", hex);
    memcpy(slot, data, len);
    if (gd) memcpy(slot + len, gd, gdlen);
    b->objs[b->n++] = (guts_obj){.id = o->id,
                                 .type = o->type,
                                 .data = slot,
                                 .len = len,
                                 .base = base ? &o->base_id : NULL,
                                 .gdelta = gd ? slot + len : NULL,
                                 .gdlen = gdlen};
    b->bytes += len + gdlen;
    return GUTS_OK;
}

int gitio_stream_objects(guts_repo *repo, const char *gitdir, ilist *L, const uint32_t *order,
                         size_t nneed, guts_progress *pg, guts_gitio_stats *st, char *err)
{
    char *argv[] = {"git",      "-C",      (char *)gitdir, "--no-replace-objects",
                    "cat-file", "--batch", "--buffer",     NULL};
    proc p = {.pid = -1, .in = -1, .out = -1, .errfd = -1};
    guts_packs packs;
    uint8_t *from_pack = NULL; /* per planned object: read from a pack */
    uint32_t *rest = NULL;     /* the others, in plan order: cat-file's */
    size_t nrest = 0;
    pthread_t feed_th, store_th;
    feeder f;
    storer s = {.repo = repo};
    batch *bs[2] = {NULL, NULL}, *b;
    rd r = {.fd = -1};
    char line[GITIO_LINE_MAX], hex[GUTS_HEX_LEN + 1];
    int rc, fed = 0, stored = 0, cur = 0;
    if (nneed == 0) return GUTS_OK;
    if ((rc = guts_packs_open(&packs, gitdir, err))) return rc;
    from_pack = calloc(nneed, 1);
    rest = malloc(nneed * sizeof *rest);
    if (!from_pack || !rest) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        goto early;
    }
    for (size_t i = 0; i < nneed; i++) {
        const iobj *o = &L->o[order[i]];
        if (o->size < GUTS_LARGE_MIN && guts_packs_has(&packs, &o->id)) from_pack[i] = 1;
        else rest[nrest++] = order[i];
    }
    f = (feeder){.fd = -1, .o = L->o, .order = rest, .n = nrest};
    if (nrest) {
        rc = gitio_proc_start(&p, "git cat-file --batch", argv, PROC_PIPE, 1, err);
        if (rc) goto early;
        f.fd = p.in;
        p.in = -1; /* the feeder closes it */
        r.fd = p.out;
    }
    r.buf = malloc(GITIO_IOBUF);
    for (int i = 0; i < 2; i++)
        if ((bs[i] = calloc(1, sizeof *bs[i]))) bs[i]->arena = arena_new();
    if (!r.buf || !bs[0] || !bs[1] || !bs[0]->arena || !bs[1]->arena) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        if (f.fd >= 0) close(f.fd);
        goto out;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    guts_repo_group(repo, group_bytes());
    if (nrest && pthread_create(&feed_th, NULL, feed_ids, &f) != 0) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "cannot start a thread");
        close(f.fd);
        goto out;
    }
    fed = 1;
    if (pthread_create(&store_th, NULL, store_batches, &s) != 0) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "cannot start a thread");
        goto out;
    }
    stored = 1;
    b = bs[cur];
    for (size_t i = 0; i < nneed && !rc; i++) {
        const iobj *o = &L->o[order[i]];
        guts_id_to_hex(&o->id, hex);
        if (from_pack[i]) {
            if (b->n == GITIO_BATCH_OBJECTS || (b->n && b->bytes + o->size > GITIO_BATCH_BYTES)) {
                if ((rc = storer_submit(&s, b, err))) break;
                cur ^= 1;
                b = bs[cur];
            }
            if ((rc = read_packed(&packs, b, o, err))) break;
            st->bytes += o->size;
            guts_progress_show(pg, i + 1, nneed, st->bytes, 0);
            continue;
        }
        int k = gitio_rd_line(&r, line, sizeof line);
        if (k <= 0) {
            rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s stopped before object %s", gitdir,
                      hex);
            break;
        }
        if (gitio_check_header(line, o) != GUTS_OK) {
            rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: for %s it said \"%.100s\"",
                      gitdir, hex, line);
            break;
        }
        if (o->size > GUTS_OBJ_MAX_DEFAULT || o->size > SIZE_MAX - 1) {
            rc =
                guts_git_errf(err, GUTS_ETOOBIG, "object %s in %s is %llu bytes, over the %llu limit", hex,
                     gitdir, (unsigned long long)o->size, (unsigned long long)GUTS_OBJ_MAX_DEFAULT);
            break;
        }
        if (o->size >= GUTS_LARGE_MIN) {
            /* Hand over what is gathered, wait until the storer is idle. */
            if (b->n) {
                if ((rc = storer_submit(&s, b, err))) break;
                cur ^= 1;
                b = bs[cur];
            }
            if ((rc = storer_submit(&s, NULL, err))) break;
            if ((rc = group_commit(repo, err))) break;
            if ((rc = stream_large(repo, &r, o, gitdir, &s.added, err))) break;
            st->bytes += o->size;
            guts_progress_show(pg, i + 1, nneed, st->bytes, 0);
            continue;
        }
        if (b->n == GITIO_BATCH_OBJECTS || (b->n && b->bytes + o->size > GITIO_BATCH_BYTES)) {
            if ((rc = storer_submit(&s, b, err))) break;
            cur ^= 1;
            b = bs[cur];
        }
        void *data = batch_slot(b, (size_t)o->size);
        char nl = 0;
        if (!data) {
            rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", hex);
            break;
        }
        b->objs[b->n] = (guts_obj){.id = o->id,
                                   .type = o->type,
                                   .data = data,
                                   .len = (size_t)o->size,
                                   .base = guts_id_is_zero(&o->base_id) ? NULL : &o->base_id};
        b->n++;
        if (gitio_rd_exact(&r, data, o->size) || gitio_rd_exact(&r, &nl, 1) || nl != '\n') {
            rc =
                guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
            break;
        }
        b->bytes += o->size;
        st->bytes += o->size;
        guts_progress_show(pg, i + 1, nneed, st->bytes, 0);
    }
    if (!rc) rc = storer_submit(&s, b, err);
    if (stored) {
        int src = storer_submit(&s, NULL, rc ? NULL : err); /* wait for the last batch */
        if (!rc) rc = src;
        pthread_mutex_lock(&s.mu);
        s.quit = 1;
        pthread_cond_broadcast(&s.cv);
        pthread_mutex_unlock(&s.mu);
        pthread_join(store_th, NULL);
    }
    /* What was stored before a failure is good: keep it. */
    {
        char cerr[GUTS_GITIO_ERR_MAX];
        int crc = group_commit(repo, cerr);
        if (crc && !rc) {
            rc = crc;
            memcpy(err, cerr, sizeof cerr);
        }
    }
    st->objects_added = s.added;
out:
    guts_repo_group(repo, 0); /* committed above; nothing to write here */
    if (rc && p.pid > 0) kill(p.pid, SIGTERM);
    for (int i = 0; i < 2; i++)
        if (bs[i]) {
            batch_clear(bs[i]);
            free(bs[i]->arena);
            free(bs[i]);
        }
    free(r.buf);
    if (fed && nrest) pthread_join(feed_th, NULL);
    if (fed) {
        pthread_mutex_destroy(&s.mu);
        pthread_cond_destroy(&s.cv);
    }
    if (nrest) {
        char werr[GUTS_GITIO_ERR_MAX], mine[GUTS_GITIO_ERR_MAX];
        int wrc = gitio_proc_wait(&p, werr);
        if (!rc && wrc) rc = guts_git_errf(err, wrc, "%s", werr);
        /* A short read usually means git gave up: say why, not just where. */
        else if (rc == GUTS_EIO && wrc && !strstr(werr, "killed by signal")) {
            memcpy(mine, err, sizeof mine);
            guts_git_errf(err, rc, "%.200s; %.250s", mine, werr);
        }
    }
    if (!rc && fed && nrest && f.rc)
        rc = guts_git_errf(err, f.rc, "writing ids to git cat-file --batch failed");
early:
    guts_packs_close(&packs);
    free(from_pack);
    free(rest);
    return rc;
}
