/* pack.c - git packfiles from the store (pack.h).
 *
 * Deltas: git's format (gitformat-pack) is the base's and the result's
 * sizes as little-endian base-128 varints, then instructions: a byte with
 * the top bit set copies from the base (bits 0-3 say which of 4 offset
 * bytes follow, bits 4-6 which of 3 size bytes, a size of 0 meaning
 * 0x10000), a byte 1..127 inserts that many literal bytes that follow it.
 * The copies are guts_delta_scan's (src/base/delta.c), the store's too.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guts/delta.h"
#include "pack.h"

/* ---- Writing ---------------------------------------------------------------- */

int guts_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return GUTS_EIO;
        p += k;
        n -= (size_t)k;
    }
    return GUTS_OK;
}

/* Hand bytes to the sink, or the fd. */
static int emit(guts_packw *w, const void *data, size_t len)
{
    return w->sink ? w->sink(w->sink_ctx, data, len) : guts_write_all(w->fd, data, len);
}

static int flush(guts_packw *w)
{
    if (!w->len) return GUTS_OK;
    if (EVP_DigestUpdate(w->sha, w->buf, w->len) != 1) return GUTS_ENOMEM;
    int rc = emit(w, w->buf, w->len);
    w->total += w->len;
    w->len = 0;
    return rc;
}

/* Room for need more bytes: a file writer writes out what it holds, an
 * in-memory one grows (its entries must stay whole until taken). */
static int make_room(guts_packw *w, size_t need)
{
    if (w->len + need <= w->cap) return GUTS_OK;
    if (!w->mem) return flush(w);
    size_t c = w->cap;
    while (c < w->len + need)
        c *= 2;
    uint8_t *nb = realloc(w->buf, c);
    if (!nb) return GUTS_ENOMEM;
    w->buf = nb;
    w->cap = c;
    return GUTS_OK;
}

static int put(guts_packw *w, const void *p, size_t n)
{
    int rc = make_room(w, n);
    if (rc) return rc;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    if (w->with_crc) w->crc = (uint32_t)crc32(w->crc, p, (uInt)n);
    return GUTS_OK;
}

static int begin(guts_packw *w, int type, uint64_t size)
{
    uint8_t hdr[16];
    size_t h = 0;
    uint64_t sz = size;
    hdr[h++] = (uint8_t)((type << 4) | (sz & 0x0f));
    sz >>= 4;
    while (sz) {
        hdr[h - 1] |= 0x80;
        hdr[h++] = (uint8_t)(sz & 0x7f);
        sz >>= 7;
    }
    w->crc = (uint32_t)crc32(0, NULL, 0);
    if (!w->mem && w->len >= GUTS_PACK_FLUSH_BYTES) {
        int rc = flush(w);
        if (rc) return rc;
    }
    return put(w, hdr, h);
}

/* Deflate len more bytes of the entry straight into the buffer with zlib
 * (after deflateReset at the entry's start); Z_FINISH ends it. */
static int deflate_more(guts_packw *w, const void *data, size_t len, int mode)
{
    int rc;
    if (len > UINT_MAX) return GUTS_ETOOBIG;
    w->z.next_in = (Bytef *)(uintptr_t)data;
    w->z.avail_in = (uInt)len;
    for (;;) {
        if (w->len == w->cap && (rc = make_room(w, w->mem ? w->cap : 1))) return rc;
        size_t before = w->len, room = w->cap - w->len;
        if (room > UINT_MAX) room = UINT_MAX;
        w->z.next_out = w->buf + w->len;
        w->z.avail_out = (uInt)room;
        int zr = deflate(&w->z, mode);
        w->len = before + (room - w->z.avail_out);
        if (w->with_crc)
            w->crc = (uint32_t)crc32(w->crc, w->buf + before, (uInt)(w->len - before));
        if (mode == Z_FINISH ? zr == Z_STREAM_END : w->z.avail_in == 0 && w->z.avail_out > 0)
            return GUTS_OK;
        if (zr != Z_OK && zr != Z_BUF_ERROR) return GUTS_ENOMEM;
    }
}

/* n bytes that may not fit the buffer of a file writer: what it holds
 * goes out first, then these straight from p. */
static int put_large(guts_packw *w, const uint8_t *p, size_t n)
{
    if (w->mem || n <= w->cap) return put(w, p, n);
    int rc = flush(w);
    if (rc) return rc;
    if (w->with_crc) w->crc = (uint32_t)crc32(w->crc, p, (uInt)n);
    if (EVP_DigestUpdate(w->sha, p, n) != 1) return GUTS_ENOMEM;
    w->total += n;
    return emit(w, p, n);
}

/* The whole content of an entry, deflated into the buffer: by the fast
 * encoder at GUTS_PACK_FAST, through a buffer of its own when the
 * writer's cannot hold its bound (zlib's level 1 took 3% of a cold zlib
 * clone's node CPU for its 3 entries of 1.0-1.2 MB). */
static int deflate_whole(guts_packw *w, const void *data, size_t len)
{
    if (w->fast.tab && len < GUTS_PACK_BUF) {
        size_t need = guts_deflate_bound(len);
        int rc = make_room(w, need);
        if (rc) return rc;
        if (w->len + need <= w->cap) {
            size_t n = guts_deflate_fast(&w->fast, data, len, w->buf + w->len);
            if (w->with_crc) w->crc = (uint32_t)crc32(w->crc, w->buf + w->len, (uInt)n);
            w->len += n;
            return GUTS_OK;
        }
    }
    uint8_t *t;
    if (w->fast.tab && len <= GUTS_DEFLATE_MAX && (t = malloc(guts_deflate_bound(len)))) {
        int rc = put_large(w, t, guts_deflate_fast(&w->fast, data, len, t));
        free(t);
        return rc;
    }
    if (deflateReset(&w->z) != Z_OK) return GUTS_ENOMEM;
    return deflate_more(w, data, len, Z_FINISH);
}

/* The compressor at level (GUTS_PACK_FAST: the fast encoder, and zlib at
 * level 1 for what it does not take). */
static int compressors_init(guts_packw *w, int level, int mem_level)
{
    if (level == GUTS_PACK_FAST) {
        if (guts_deflate_init(&w->fast)) return GUTS_ENOMEM;
        level = 1;
    }
    if (deflateInit2(&w->z, level, Z_DEFLATED, 15, mem_level, Z_DEFAULT_STRATEGY) != Z_OK)
        return GUTS_ENOMEM;
    w->zinit = 1;
    return GUTS_OK;
}

/* ---- The deflater thread (guts_packw_async) ----------------------------------- */

/* An entry waiting for the thread: a whole object (with its own matches
 * when copies is set), a REF_DELTA, or an object with its base's content
 * (blen bytes; else 0) for the thread to try a delta against. The
 * contents are the caller's buffers it handed over (taken, freed with the
 * job) or copies (in copy). */
typedef struct packw_job {
    struct packw_job *next;
    int type;
    guts_id base;
    const uint8_t *bdata, *data;
    size_t len, blen;
    guts_copy *copies; /* the object's own matches (freed with it), or NULL */
    size_t ncopies;
    void *taken[2];
    uint8_t copy[];
} packw_job;

static void job_free(packw_job *j)
{
    free(j->copies);
    free(j->taken[0]);
    free(j->taken[1]);
    free(j);
}

/* Content queued before the thread is woken (it then writes all there is). */
#define PACKW_ASYNC_BATCH (256u << 10)

struct packw_async {
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t more; /* a job came, or stop */
    pthread_cond_t less; /* a job was done */
    packw_job *head, *tail;
    size_t queued; /* bytes of content in the queue */
    int busy;      /* the thread is writing a job */
    int stop;
    int rc; /* the first write error */
};

static int write_whole(guts_packw *w, int type, const guts_id *base, const void *data, size_t len)
{
    int rc = begin(w, type, len);
    if (!rc && type == GUTS_PACK_REF_DELTA && base) rc = put(w, base->b, GUTS_ID_LEN);
    return rc ? rc : deflate_whole(w, data, len);
}

/* A REF_DELTA against base when guts_pack_delta finds one under half of
 * len (blen: the base's content is there), else whole. */
static int write_entry(guts_packw *w, int type, const guts_id *base, const uint8_t *bdata,
                       size_t blen, const uint8_t *data, size_t len)
{
    uint8_t *delta;
    size_t dlen;
    if (blen && guts_pack_delta(bdata, blen, data, len, len / 2, &delta, &dlen) == GUTS_OK) {
        int rc = write_whole(w, GUTS_PACK_REF_DELTA, base, delta, dlen);
        free(delta);
        return rc;
    }
    return write_whole(w, type, base, data, len);
}

/* A whole entry deflated from the object's own matches (c, n; its zstd
 * frame's): guts_deflate_copies, else the fast encoder as any. */
static int write_self(guts_packw *w, int type, const uint8_t *data, size_t len,
                      const guts_copy *c, size_t n)
{
    int rc = begin(w, type, len);
    if (rc) return rc;
    if (w->fast.tab && len < GUTS_PACK_BUF) {
        size_t need = guts_deflate_bound(len);
        if ((rc = make_room(w, need))) return rc;
        size_t k;
        if (w->len + need <= w->cap && (k = guts_deflate_copies(data, len, c, n, w->buf + w->len))) {
            if (w->with_crc) w->crc = (uint32_t)crc32(w->crc, w->buf + w->len, (uInt)k);
            w->len += k;
            return GUTS_OK;
        }
    }
    return deflate_whole(w, data, len);
}

static void *async_main(void *arg)
{
    guts_packw *w = arg;
    struct packw_async *a = w->async;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->head && !a->stop)
            pthread_cond_wait(&a->more, &a->mu);
        packw_job *j = a->head;
        if (!j) break;
        if (!(a->head = j->next)) a->tail = NULL;
        a->busy = 1;
        int failed = a->rc;
        pthread_mutex_unlock(&a->mu);
        int rc = failed      ? GUTS_OK
                 : j->copies ? write_self(w, j->type, j->data, j->len, j->copies, j->ncopies)
                             : write_entry(w, j->type, &j->base, j->bdata, j->blen, j->data,
                                           j->len);
        pthread_mutex_lock(&a->mu);
        if (rc) a->rc = rc;
        a->queued -= j->len + j->blen;
        a->busy = 0;
        job_free(j);
        pthread_cond_broadcast(&a->less);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Wait until the thread has written everything queued; its error, if any.
 * GUTS_OK at once when there is no thread. */
static int async_drain(guts_packw *w)
{
    struct packw_async *a = w->async;
    if (!a) return GUTS_OK;
    if (w->before_wait) w->before_wait(w->before_wait_ctx);
    pthread_mutex_lock(&a->mu);
    pthread_cond_signal(&a->more);
    while (a->head || a->busy)
        pthread_cond_wait(&a->less, &a->mu);
    int rc = a->rc;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* Queue an entry for the thread (write_entry's), waiting while the queue
 * is full; take as guts_packw_delta_or_whole's. */
static int async_put(guts_packw *w, int type, const guts_id *base, const void *bdata, size_t blen,
                     const void *data, size_t len, int take, packw_job *with)
{
    struct packw_async *a = w->async;
    size_t bcopy = (take & GUTS_PACKW_TAKE_BASE) ? 0 : blen;
    size_t dcopy = (take & GUTS_PACKW_TAKE_DATA) ? 0 : len;
    packw_job *j = malloc(sizeof *j + bcopy + dcopy);
    if (!j) {
        if (take & GUTS_PACKW_TAKE_BASE) free((void *)(uintptr_t)bdata);
        if (take & GUTS_PACKW_TAKE_DATA) free((void *)(uintptr_t)data);
        if (with) free(with->copies);
        return GUTS_ENOMEM;
    }
    memset(j, 0, sizeof *j);
    if (with) {
        j->copies = with->copies;
        j->ncopies = with->ncopies;
    }
    j->type = type;
    if (base) j->base = *base;
    j->len = len;
    j->blen = blen;
    j->bdata = bcopy ? memcpy(j->copy, bdata, bcopy) : bdata;
    j->data = dcopy ? memcpy(j->copy + bcopy, data, dcopy) : data;
    if (take & GUTS_PACKW_TAKE_BASE) j->taken[0] = (void *)(uintptr_t)bdata;
    if (take & GUTS_PACKW_TAKE_DATA) j->taken[1] = (void *)(uintptr_t)data;
    len += blen;
    pthread_mutex_lock(&a->mu);
    if (a->queued && a->queued + len > GUTS_PACK_ASYNC_MAX && !a->rc && w->before_wait)
        w->before_wait(w->before_wait_ctx);
    while (a->queued && a->queued + len > GUTS_PACK_ASYNC_MAX && !a->rc) {
        pthread_cond_signal(&a->more);
        pthread_cond_wait(&a->less, &a->mu);
    }
    int rc = a->rc;
    if (!rc) {
        if (a->tail)
            a->tail->next = j;
        else
            a->head = j;
        a->tail = j;
        a->queued += len;
        /* woken by the batch, not by each entry: a wake-up per small
         * entry cost more than deflating it */
        if (a->queued >= PACKW_ASYNC_BATCH) pthread_cond_signal(&a->more);
    }
    pthread_mutex_unlock(&a->mu);
    if (rc) job_free(j);
    return rc;
}

int guts_packw_async(guts_packw *w)
{
    if (w->mem) return GUTS_EINVAL;
    if (w->async) return GUTS_OK;
    struct packw_async *a = calloc(1, sizeof *a);
    if (!a) return GUTS_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->more, NULL);
    pthread_cond_init(&a->less, NULL);
    w->async = a;
    if (pthread_create(&a->t, NULL, async_main, w) != 0) {
        w->async = NULL;
        pthread_cond_destroy(&a->more);
        pthread_cond_destroy(&a->less);
        pthread_mutex_destroy(&a->mu);
        free(a);
        return GUTS_ENOMEM;
    }
    return GUTS_OK;
}

/* Stop and join the thread; entries still queued are dropped. */
static void async_stop(guts_packw *w)
{
    struct packw_async *a = w->async;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stop = 1;
    a->rc = a->rc ? a->rc : GUTS_EIO; /* nothing more is written */
    pthread_cond_signal(&a->more);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->t, NULL);
    w->async = NULL;
    pthread_cond_destroy(&a->more);
    pthread_cond_destroy(&a->less);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- Entries ------------------------------------------------------------------ */

int guts_packw_open(guts_packw *w, int fd, int level, int with_crc, uint32_t nobjects)
{
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->with_crc = with_crc;
    w->cap = GUTS_PACK_BUF;
    w->buf = malloc(w->cap);
    w->sha = EVP_MD_CTX_new();
    if (!w->buf || !w->sha || EVP_DigestInit_ex(w->sha, EVP_sha1(), NULL) != 1) return GUTS_ENOMEM;
    /* Level 0 only stores: its hash table is never read, but deflateReset
     * clears it for every entry (64 KiB at the default memLevel, most of
     * the cost of a small entry). The smallest table makes the same bytes. */
    int rc = compressors_init(w, level, level == 0 ? 1 : 8);
    if (rc) return rc;
    uint8_t head[12] = {'P', 'A', 'C', 'K'};
    guts_pack_be32(head + 4, 2);
    guts_pack_be32(head + 8, nobjects);
    return put(w, head, sizeof head);
}

int guts_packw_open_mem(guts_packw *w, int level)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->mem = 1;
    w->cap = GUTS_PACK_MEM_START;
    w->buf = malloc(w->cap);
    if (!w->buf) return GUTS_ENOMEM;
    return compressors_init(w, level, 8);
}

int guts_packw_take(guts_packw *w, uint8_t **buf, size_t *len)
{
    uint8_t *fresh = malloc(GUTS_PACK_MEM_START);
    if (!fresh) return GUTS_ENOMEM;
    *buf = w->buf;
    *len = w->len;
    w->buf = fresh;
    w->cap = GUTS_PACK_MEM_START;
    w->len = 0;
    return GUTS_OK;
}

int guts_packw_append(guts_packw *w, const void *data, size_t len)
{
    if (w->mem) return GUTS_EINVAL;
    int rc = async_drain(w);
    if (rc) return rc;
    if (w->len + len <= w->cap) return put(w, data, len);
    rc = flush(w);
    if (rc) return rc;
    if (EVP_DigestUpdate(w->sha, data, len) != 1) return GUTS_ENOMEM;
    if ((rc = emit(w, data, len))) return rc;
    w->total += len;
    return GUTS_OK;
}

uint64_t guts_packw_offset(const guts_packw *w)
{
    return w->total + w->len;
}

int guts_packw_object(guts_packw *w, int type, const void *data, size_t len)
{
    return w->async ? async_put(w, type, NULL, NULL, 0, data, len, 0, NULL)
                    : write_whole(w, type, NULL, data, len);
}

int guts_packw_ref_delta(guts_packw *w, const guts_id *base, const void *delta, size_t len)
{
    return w->async ? async_put(w, GUTS_PACK_REF_DELTA, base, NULL, 0, delta, len, 0, NULL)
                    : write_whole(w, GUTS_PACK_REF_DELTA, base, delta, len);
}

int guts_packw_delta_or_whole(guts_packw *w, int type, const guts_id *base, const void *bdata,
                              size_t blen, const void *data, size_t len, int take)
{
    if (w->async) return async_put(w, type, base, bdata, blen, data, len, take, NULL);
    int rc = write_entry(w, type, base, bdata, blen, data, len);
    if (take & GUTS_PACKW_TAKE_BASE) free((void *)(uintptr_t)bdata);
    if (take & GUTS_PACKW_TAKE_DATA) free((void *)(uintptr_t)data);
    return rc;
}

int guts_packw_object_copies(guts_packw *w, int type, const void *data, size_t len,
                             guts_copy *copies, size_t ncopies, int take)
{
    if (w->async) {
        packw_job with = {.copies = copies, .ncopies = ncopies};
        return async_put(w, type, NULL, NULL, 0, data, len, take & GUTS_PACKW_TAKE_DATA, &with);
    }
    int rc = write_self(w, type, data, len, copies, ncopies);
    free(copies);
    if (take & GUTS_PACKW_TAKE_DATA) free((void *)(uintptr_t)data);
    return rc;
}

static int stream_cb(const void *data, size_t len, void *ctx)
{
    return deflate_more(ctx, data, len, Z_NO_FLUSH);
}

int guts_packw_stream(guts_packw *w, guts_repo *r, const guts_id *id, int type, uint64_t size)
{
    int rc = async_drain(w);
    if (!rc) rc = begin(w, type, size);
    if (!rc && deflateReset(&w->z) != Z_OK) rc = GUTS_ENOMEM;
    if (!rc) rc = guts_repo_stream(r, id, stream_cb, w);
    return rc ? rc : deflate_more(w, NULL, 0, Z_FINISH);
}

int guts_packw_finish(guts_packw *w, uint8_t sum[20])
{
    if (w->mem) return GUTS_EINVAL;
    unsigned sl = 0;
    int rc = async_drain(w);
    if (!rc) rc = flush(w);
    if (rc) return rc;
    if (EVP_DigestFinal_ex(w->sha, sum, &sl) != 1 || sl != 20) return GUTS_ENOMEM;
    rc = emit(w, sum, 20);
    if (!rc) w->total += 20;
    return rc;
}

void guts_packw_free(guts_packw *w)
{
    async_stop(w);
    if (w->zinit) deflateEnd(&w->z);
    guts_deflate_free(&w->fast);
    free(w->buf);
    EVP_MD_CTX_free(w->sha);
    w->zinit = 0;
    w->buf = NULL;
    w->sha = NULL;
}

int guts_pack_delta_of(guts_repo *r, const guts_id *id, const guts_id *stored_base, int type,
                       const void *data, size_t len, int (*in_pack)(const guts_id *base, void *ctx),
                       void *ctx, guts_id *base, uint8_t **delta, size_t *dlen)
{
    if (guts_id_cmp(stored_base, id) == 0) return GUTS_ENOTFOUND;
    if (in_pack && !in_pack(stored_base, ctx)) return GUTS_ENOTFOUND;
    int btype;
    void *bdata;
    size_t blen;
    if (guts_repo_get(r, stored_base, &btype, &bdata, &blen) != GUTS_OK) return GUTS_ENOTFOUND;
    int rc = btype == type ? guts_pack_delta(bdata, blen, data, len, len / 2, delta, dlen)
                           : GUTS_ENOTFOUND;
    free(bdata);
    *base = *stored_base;
    return rc;
}

/* ---- Deltas ----------------------------------------------------------------- */

#define COPY_MAX 0xffffffu /* 3 size bytes */

typedef struct dbuf {
    uint8_t *p;
    size_t n, cap;
} dbuf;

/* Append; 0, or -1 once the buffer would pass its cap. */
static int dput(dbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) return -1;
    memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

static int put_varint(dbuf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    return dput(b, t, n);
}

static int put_insert(dbuf *b, const uint8_t *d, size_t n)
{
    while (n) {
        uint8_t k = (uint8_t)(n > 127 ? 127 : n);
        if (dput(b, &k, 1) || dput(b, d, k)) return -1;
        d += k;
        n -= k;
    }
    return 0;
}

static int put_copy(dbuf *b, size_t off, size_t n)
{
    while (n) {
        size_t k = n > COPY_MAX ? COPY_MAX : n;
        uint8_t t[8], op = 0x80;
        size_t m = 1;
        for (int i = 0; i < 4; i++)
            if ((off >> (8 * i)) & 0xff) {
                op |= (uint8_t)(1u << i);
                t[m++] = (uint8_t)(off >> (8 * i));
            }
        if (k != 0x10000)
            for (int i = 0; i < 3; i++)
                if ((k >> (8 * i)) & 0xff) {
                    op |= (uint8_t)(0x10u << i);
                    t[m++] = (uint8_t)(k >> (8 * i));
                }
        t[0] = op;
        if (dput(b, t, m)) return -1;
        off += k;
        n -= k;
    }
    return 0;
}

/* guts_delta_scan's copies as git delta instructions, dst's bytes before
 * each as inserts. */
typedef struct gitdelta {
    dbuf b;
    const uint8_t *dst;
    size_t lit; /* dst[lit, at) is inserted before the next copy */
} gitdelta;

static int git_copy(void *ctx, size_t at, size_t from, size_t len)
{
    gitdelta *g = ctx;
    if (put_insert(&g->b, g->dst + g->lit, at - g->lit) || put_copy(&g->b, from, len)) return -1;
    g->lit = at + len;
    return 0;
}

int guts_pack_delta_lits(size_t bn, size_t dn, const uint8_t *lits, size_t nlits,
                         const guts_copy *copies, size_t ncopies, size_t max, uint8_t **out,
                         size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (max == 0) return GUTS_ENOTFOUND;
    dbuf b = {malloc(max), 0, max};
    if (!b.p) return GUTS_ENOMEM;
    size_t at = 0, used = 0; /* content placed, literals used */
    int bad = put_varint(&b, bn) || put_varint(&b, dn);
    for (size_t i = 0; i < ncopies && !bad; i++) {
        const guts_copy *c = &copies[i];
        size_t ins = c->at - at;
        bad = c->at < at || c->at > dn || ins > nlits - used || c->len > dn - c->at ||
              c->from > bn || c->len > bn - c->from || put_insert(&b, lits + used, ins) ||
              put_copy(&b, c->from, c->len);
        used += ins;
        at = c->at + c->len;
    }
    if (bad || nlits - used != dn - at || put_insert(&b, lits + used, dn - at)) {
        free(b.p);
        return GUTS_ENOTFOUND;
    }
    *out = b.p;
    *outlen = b.n;
    return GUTS_OK;
}

int guts_pack_delta(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn, size_t max,
                    uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (max == 0) return GUTS_ENOTFOUND;
    gitdelta g = {{malloc(max), 0, max}, dst, 0};
    if (!g.b.p) return GUTS_ENOMEM;
    int rc = put_varint(&g.b, bn) || put_varint(&g.b, dn) ? GUTS_ENOTFOUND
             : guts_delta_scan(base, bn, dst, dn, git_copy, &g);
    if (!rc && put_insert(&g.b, dst + g.lit, dn - g.lit)) rc = GUTS_ENOTFOUND; /* not shorter than max */
    if (rc) {
        free(g.b.p);
        return rc;
    }
    *out = g.b.p;
    *outlen = g.b.n;
    return GUTS_OK;
}
