/* fetch_pack.c - the pack of a fetch or an upload-pack: the objects the
 * walk selected (fetch.c), encoded and written to git.
 *
 * The pack holds whole objects, each deflated at the caller's level, except
 * where the store keeps an object as a zstd delta against a base that goes
 * in the same pack, or that the local repository has (a thin pack, as git's
 * own fetch sends): that object goes as a git delta (REF_DELTA, pack.c)
 * against the same base. Else, in a thin pack, a tree or blob whose path
 * the local repository has a version of (in a have's tree) goes as a delta
 * against that version (path_delta). It streams straight into
 * `git index-pack --stdin --fix-thin`, which runs in parallel with us on another
 * core and writes the .pack and .idx; under GUTS_GIT_UNPACK_LIMIT objects it
 * goes to `git unpack-objects` instead, as git's own fetch does. Each object
 * read from the store is hashed before it is written: a damaged store fails
 * the fetch instead of handing git a wrong object (guts-node's upload-pack
 * skips that: see guts_git_serve). A large pack's entries
 * are encoded on several threads (see "encoders" below).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"
#include "fetch_int.h"
#include "pack.h"
#include "packcache.h"

/* May an object go as a git delta against base (guts_pack_delta_of)? When
 * the base goes in the same pack, if index-pack reads it (unpack-objects
 * gets whole objects then); and, the pack being thin, when the local
 * repository has the base (a tree or blob of an edge commit): git's own
 * fetch does the same and `index-pack --fix-thin` (or unpack-objects, which
 * reads bases from the repository) completes it. A one-line change to a
 * large file then costs a delta, not the file. Only reads the walk's sets,
 * so encoders on several threads may ask at once. */
static int base_ok(const guts_id *base, void *ctx)
{
    const walk *w = ctx;
    size_t slot = guts_idset_find(&w->objs, base);
    if (slot == SIZE_MAX) return 0;
    uint8_t f = w->objs.flags[slot];
    return (f & O_SEND) ? w->indexed : w->thin && (f & O_KNOWN) != 0;
}

/* A git delta for entry i (type, data/len) against the receiver's version
 * of the same path (fetch_base_by_path), read through r: for an object the
 * store keeps whole or against a base that may not be used, as git deltas
 * a changed tree against the one it replaces. The base is known, never in
 * the pack, so no chain can close a cycle. GUTS_ENOTFOUND: none (or no
 * shorter than half the object). */
static int path_delta(walk *w, guts_repo *r, size_t i, int type, const void *data, size_t len,
                      guts_id *base, uint8_t **delta, size_t *dlen)
{
    if (type != GUTS_OBJ_TREE && type != GUTS_OBJ_BLOB) return GUTS_ENOTFOUND;
    const guts_id *b = fetch_base_by_path(w, w->send_key[i], type == GUTS_OBJ_TREE);
    int btype;
    void *bdata;
    size_t blen;
    if (!b || guts_repo_get(r, b, &btype, &bdata, &blen) != GUTS_OK) return GUTS_ENOTFOUND;
    int rc = btype == type ? guts_pack_delta(bdata, blen, data, len, len / 2, delta, dlen)
                           : GUTS_ENOTFOUND;
    free(bdata);
    *base = *b;
    return rc;
}

/* Is id's content hashed before it goes? Every object's in a fetch; in a
 * clone (w->rehash off: fetch_write_pack) only the wants': index-pack
 * --check-self-contained-and-connected hashes every entry and dies when an
 * object some entry names is not in the pack, so a damaged object (which
 * would arrive under another id) fails the clone there, except one no
 * entry names: a ref's own target. */
static int is_rehashed(const walk *w, const guts_id *id)
{
    if (w->rehash) return 1;
    size_t slot = guts_idset_find(&w->objs, id);
    return slot != SIZE_MAX && (w->objs.flags[slot] & O_TIP);
}

/* guts_pack_delta_of, from the walk's decoded base when it kept one. */
static int stored_delta(walk *w, guts_repo *r, const guts_id *id, const guts_id *stored_base,
                        int type, const void *data, size_t len, guts_id *base, uint8_t **delta,
                        size_t *dlen)
{
    const kept_obj *b = guts_id_cmp(stored_base, id) ? fetch_kept(w, stored_base) : NULL;
    if (!b)
        return guts_pack_delta_of(r, id, stored_base, type, data, len, base_ok, w, base, delta,
                                  dlen);
    if (b->type != type || !base_ok(stored_base, w)) return GUTS_ENOTFOUND;
    *base = *stored_base;
    return guts_pack_delta(b->data, b->len, data, len, len / 2, delta, dlen);
}

/* The copies of a zstd frame make the git delta when they leave at most
 * a quarter of the object to inserts: the store's zstd deltas made from
 * git's copies (an import's) or its own scan's (docs/storage.md, "Copies
 * found before zstd"). Else the frame is zstd's own matcher's, whose
 * matches against a large prefix are short and few (a 646 KB file of
 * zlib: 137 KB covered, where the scan makes a delta of a few KB), and the
 * writer's thread scans the base as before. So does a frame with a match
 * inside the object (its bytes are not in the literals): its copies from
 * the base, read again from the decoded frame, made the git delta for a
 * quarter of zlib's 893 such entries and were read in vain for the rest
 * (performance.md, fourteenth pass). */
#define COPIES_INSERTS_DIV 4

/* Might the entry go against the receiver's version of its path
 * (path_delta)? Only in a fetch with haves: never in a clone. */
static int has_path_base(const walk *w, size_t i, int type)
{
    return (type == GUTS_OBJ_TREE || type == GUTS_OBJ_BLOB) &&
           fetch_base_by_path(w, w->send_key[i], type == GUTS_OBJ_TREE) != NULL;
}

/* The entry against its stored base by the writer's deflater thread
 * (guts_packw_delta_or_whole: the delta is built there), or whole: the
 * base's content is read here, from the walk's kept copy or the store.
 * take: GUTS_PACKW_TAKE_DATA when data is the caller's to hand over. */
static int delta_on_writer(walk *w, guts_repo *r, guts_packw *p, const guts_id *id,
                           const guts_id *stored_base, int type, const void *data, size_t len,
                           int take)
{
    const void *bdata = NULL;
    void *got = NULL;
    size_t blen = 0;
    int btype = -1;
    if (guts_id_cmp(stored_base, id) != 0 && base_ok(stored_base, w)) {
        const kept_obj *b = fetch_kept(w, stored_base);
        if (b) {
            btype = b->type;
            bdata = b->data;
            blen = b->len;
        } else if (guts_repo_get(r, stored_base, &btype, &got, &blen) == GUTS_OK) {
            bdata = got;
        }
    }
    if (btype != type) {
        free(got);
        got = NULL;
        blen = 0;
    }
    return guts_packw_delta_or_whole(p, type, stored_base, bdata, blen, data, len,
                                     take | (got ? GUTS_PACKW_TAKE_BASE : 0));
}

/* Entry id, a REF_DELTA against its stored base written from its zstd
 * frame's copies and literals (guts_repo_get_lits): its content is never
 * decoded, so nothing is copied from the base, checksummed or deflated
 * but the delta. Only for an object not rehashed (is_rehashed): index-pack
 * hashes what the delta makes; and a base that may be used (base_ok).
 * GUTS_ENOTFOUND when the record is not such a delta, its base may not be
 * used or the delta is not under half the object (encode_one decodes it
 * instead); the writer's errors. *bytes gets the content's size. */
static int lits_entry(walk *w, guts_repo *r, guts_packw *p, const guts_id *id, uint64_t *bytes)
{
    int type;
    size_t len, blen, ncopies, nlits, dlen;
    guts_id base;
    guts_copy *copies;
    uint8_t *lits, *delta;
    int rc = guts_repo_get_lits(r, id, COPIES_INSERTS_DIV, &type, &len, &base, &blen, &copies,
                                &ncopies, &lits, &nlits);
    if (rc) return rc == GUTS_ENOMEM ? rc : GUTS_ENOTFOUND;
    rc = guts_id_cmp(&base, id) != 0 && base_ok(&base, w)
             ? guts_pack_delta_lits(blen, len, lits, nlits, copies, ncopies, len / 2, &delta, &dlen)
             : GUTS_ENOTFOUND;
    free(copies);
    free(lits);
    if (rc) return rc;
    rc = guts_packw_ref_delta(p, &base, delta, dlen);
    free(delta);
    if (rc == GUTS_OK) *bytes = len;
    return rc == GUTS_ENOTFOUND ? GUTS_EIO : rc;
}

/* encode_one's answer for a large object and an in-memory writer: the
 * pack writer streams it itself. */
#define ENC_LARGE 1

static int pack_err(char *err, int rc)
{
    if (rc == GUTS_EIO) return guts_git_errf(err, rc, "writing the pack: %s", strerror(errno));
    return guts_git_errf(err, rc, "writing the pack: %s", guts_strerror(rc));
}

/* Send entry i of the pack, read from r (the walk's handle or an encoder's
 * own), into p: as a git delta where the store keeps a delta against a
 * base that may be used (base_ok), else whole. The content is hashed first:
 * a damaged store fails the fetch instead of handing git a wrong object.
 * *bytes gets the content's size. ENC_LARGE: a large object and p is in
 * memory (the caller streams it). */
static int encode_one(walk *w, guts_repo *r, guts_packw *p, size_t i, uint64_t *bytes, char *err)
{
    const guts_id *id = &w->send[i];
    int type;
    void *data;
    size_t len;
    uint64_t size;
    guts_id stored_base = *id;
    int rc;
    const kept_obj *k = fetch_kept(w, id);
    /* Tried before guts_repo_head: most of a clone's entries go this way,
     * and it reads the record head would have read (one LMDB lookup less
     * for each of them; one more for the objects it does not take). */
    if (!k && p->async && !is_rehashed(w, id)) {
        rc = lits_entry(w, r, p, id, bytes);
        if (rc != GUTS_ENOTFOUND) return rc ? pack_err(err, rc) : GUTS_OK;
    }
    if (guts_repo_head(r, id, &type, &size, &stored_base) == GUTS_OK && size >= GUTS_LARGE_MIN) {
        if (p->mem) return ENC_LARGE;
        /* piece by piece, rehashed by the store */
        rc = guts_packw_stream(p, r, id, type, size);
        if (rc == GUTS_EIO) return pack_err(err, rc);
        if (rc) return fetch_corrupt_err(err, id, guts_store_errmsg());
        *bytes = size;
        return GUTS_OK;
    }
    guts_copy *copies = NULL;
    size_t ncopies = 0;
    if (k) {
        type = k->type;
        data = k->data;
        len = k->len;
    } else {
        /* On the writer's thread, an object stored whole comes with the
         * matches its zstd frame made inside it: its deflate stream is made
         * of them (guts_packw_object_copies). */
        rc = p->async ? guts_repo_get_copies(r, id, &type, &data, &len, &copies, &ncopies)
                      : guts_repo_get(r, id, &type, &data, &len);
        if (rc) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(id, hex);
            if (rc == GUTS_ENOTFOUND)
                return guts_git_errf(err, rc, "object %s is not in the store", hex);
            return guts_git_errf(err, rc, "read %s from the store: %s (%s)", hex,
                                 guts_strerror(rc), guts_store_errmsg());
        }
    }
    guts_id h;
    if (is_rehashed(w, id) && (guts_obj_hash(type, data, len, &h) || guts_id_cmp(&h, id))) {
        if (!k) free(data);
        free(copies);
        return fetch_corrupt_err(err, id, "content does not hash to its id");
    }
    uint8_t *delta = NULL;
    size_t dlen = 0;
    guts_id base;
    if (copies) { /* the writer's thread frees both */
        rc = guts_packw_object_copies(p, type, data, len, copies, ncopies, GUTS_PACKW_TAKE_DATA);
        if (rc) return pack_err(err, rc);
        *bytes = len;
        return GUTS_OK;
    }
    if (p->async && !has_path_base(w, i, type)) { /* the writer's thread frees data */
        rc = delta_on_writer(w, r, p, id, &stored_base, type, data, len,
                             k ? 0 : GUTS_PACKW_TAKE_DATA);
        if (rc) return pack_err(err, rc);
        *bytes = len;
        return GUTS_OK;
    }
    if (stored_delta(w, r, id, &stored_base, type, data, len, &base, &delta, &dlen) == GUTS_OK ||
        path_delta(w, r, i, type, data, len, &base, &delta, &dlen) == GUTS_OK) {
        rc = guts_packw_ref_delta(p, &base, delta, dlen);
        free(delta);
    } else {
        rc = guts_packw_object(p, type, data, len);
    }
    if (!k) free(data);
    if (rc) return pack_err(err, rc);
    *bytes = len;
    return GUTS_OK;
}


/* ---- encoders on several threads ---------------------------------------------- */

/* Most of a clone's time is the helper reading, hashing and re-deltifying
 * objects while index-pack waits for them, so a large pack is encoded by
 * several threads: the objects are split into parts by the path they were
 * met under (fetch_path_key; commits, tags and root trees are part 0), so
 * the versions of one file, which the store
 * keeps as delta chains, land in one part and its encoder's cache decodes
 * each chain once. Each encoder reads through its own repository handle
 * (handles are single-threaded; the env is shared) and collects whole
 * entries in memory; the pack writer, the calling thread, appends each
 * collection whole as it comes, encodes part 0 itself between them, and
 * streams large objects. A pack's entries may come in any order (index-pack
 * resolves a REF_DELTA wherever its base is), so no encoder waits for
 * another. */

/* Encoders at most: past a few, index-pack (which hashes every object) and
 * the writer are the limit. */
#define FETCH_ENCODERS_MAX 4
/* Fewer objects than this are encoded by the calling thread alone: threads
 * and cold caches would cost more than they save. */
#define FETCH_PARALLEL_MIN 1024
/* An encoder hands over what it collected once it passes this. */
#define FETCH_CHUNK_BYTES (256u << 10)
/* Collections waiting for the writer: with FETCH_CHUNK_BYTES, each waiting
 * encoder holds at most this many MiB / 4, and blocks after. */
#define FETCH_QUEUE_MAX 16

/* A collection of whole entries, or one large object the writer streams. */
typedef struct chunk {
    uint8_t *buf; /* malloc'd, or NULL */
    size_t len;
    size_t large; /* index into send of a large object, or SIZE_MAX */
    uint64_t objects, bytes;
} chunk;

typedef struct encoders {
    walk *w;
    unsigned nparts;
    pthread_mutex_t mu;
    pthread_cond_t ready, room;
    chunk q[FETCH_QUEUE_MAX];
    size_t qhead, qn;
    unsigned running; /* encoder threads not finished */
    int stop;         /* the writer failed: encoders give up */
} encoders;

typedef struct encoder {
    encoders *e;
    guts_repo *r;
    unsigned part;
    int rc;
    char err[GUTS_GIT_ERR_MAX];
    pthread_t t;
} encoder;

static int queue_put(encoders *e, chunk *c)
{
    pthread_mutex_lock(&e->mu);
    while (e->qn == FETCH_QUEUE_MAX && !e->stop)
        pthread_cond_wait(&e->room, &e->mu);
    int stopped = e->stop;
    if (!stopped) {
        e->q[(e->qhead + e->qn) % FETCH_QUEUE_MAX] = *c;
        e->qn++;
        pthread_cond_signal(&e->ready);
    }
    pthread_mutex_unlock(&e->mu);
    if (stopped) free(c->buf);
    memset(c, 0, sizeof *c);
    c->large = SIZE_MAX;
    return stopped ? GUTS_EIO : GUTS_OK;
}

/* The next collection; wait: block until one comes or every encoder is done.
 * 0: none (and with wait, none will come). */
static int queue_get(encoders *e, chunk *c, int wait)
{
    pthread_mutex_lock(&e->mu);
    while (wait && e->qn == 0 && e->running > 0)
        pthread_cond_wait(&e->ready, &e->mu);
    int got = e->qn > 0;
    if (got) {
        *c = e->q[e->qhead];
        e->qhead = (e->qhead + 1) % FETCH_QUEUE_MAX;
        e->qn--;
        pthread_cond_signal(&e->room);
    }
    pthread_mutex_unlock(&e->mu);
    return got;
}

static void encoders_stop(encoders *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->room);
    pthread_mutex_unlock(&e->mu);
}

/* The part an object goes to. */
static unsigned part_of(const walk *w, size_t i, unsigned nparts)
{
    assert(nparts > 0 && i < w->nsend);
    return w->send_key[i] % nparts;
}

/* Encode part k of the pack with r into p (in memory), handing each
 * collection to give(ctx, chunk). */
static int encode_part(walk *w, guts_repo *r, unsigned k, unsigned nparts, guts_packw *p,
                       int (*give)(void *ctx, chunk *c), void *ctx, char *err)
{
    chunk c = {.large = SIZE_MAX};
    int rc = GUTS_OK, held = 0;
    for (size_t i = 0; i < w->nsend && !rc; i++) {
        if (part_of(w, i, nparts) != k) continue;
        /* One read transaction per collection, not per object. */
        if (!held && (rc = guts_repo_read_hold(r))) {
            rc = guts_git_errf(err, rc, "reading the store: %s (%s)", guts_strerror(rc),
                             guts_store_errmsg());
            break;
        }
        held = 1;
        uint64_t bytes = 0;
        rc = encode_one(w, r, p, i, &bytes, err);
        if (rc == ENC_LARGE) {
            rc = GUTS_OK;
            chunk big = {.large = i};
            if (p->len && (rc = guts_packw_take(p, &c.buf, &c.len)))
                rc = guts_git_errf(err, rc, "out of memory");
            if (!rc && c.objects) rc = give(ctx, &c);
            if (!rc) rc = give(ctx, &big);
        } else if (!rc) {
            c.objects++;
            c.bytes += bytes;
            if (p->len < FETCH_CHUNK_BYTES) continue;
            if ((rc = guts_packw_take(p, &c.buf, &c.len)))
                rc = guts_git_errf(err, rc, "out of memory");
            else
                rc = give(ctx, &c);
        }
        guts_repo_read_release(r);
        held = 0;
    }
    if (held) guts_repo_read_release(r);
    if (!rc && c.objects) {
        if ((rc = guts_packw_take(p, &c.buf, &c.len)))
            rc = guts_git_errf(err, rc, "out of memory");
        else
            rc = give(ctx, &c);
    }
    free(c.buf);
    return rc;
}

static int give_queue(void *ctx, chunk *c)
{
    return queue_put(ctx, c);
}

static void *encoder_main(void *arg)
{
    encoder *k = arg;
    encoders *e = k->e;
    guts_packw p;
    k->rc = guts_packw_open_mem(&p, e->w->zlevel);
    if (k->rc)
        k->rc = guts_git_errf(k->err, k->rc, "out of memory");
    else
        k->rc = encode_part(e->w, k->r, k->part, e->nparts, &p, give_queue, e, k->err);
    guts_packw_free(&p);
    if (k->rc) encoders_stop(e); /* the fetch fails: no use going on */
    pthread_mutex_lock(&e->mu);
    e->running--;
    pthread_cond_signal(&e->ready);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* The writer's side: the pack on its file and what has gone into it. */
typedef struct writer {
    walk *w;
    encoders *e;
    guts_packw *p;
    guts_git_fetch_stats *st;
    char *err;
} writer;

/* Append one collection (or stream its large object) to the pack. */
static int write_chunk(writer *wr, chunk *c)
{
    walk *w = wr->w;
    int rc = GUTS_OK;
    if (c->large != SIZE_MAX) {
        uint64_t bytes = 0;
        rc = encode_one(w, w->r, wr->p, c->large, &bytes, wr->err);
        c->objects = 1;
        c->bytes = bytes;
    } else if ((rc = guts_packw_append(wr->p, c->buf, c->len))) {
        rc = pack_err(wr->err, rc);
    }
    free(c->buf);
    if (!rc) {
        wr->st->objects += c->objects;
        wr->st->bytes += c->bytes;
        guts_progress_show(&w->writing, wr->st->objects, w->nsend, wr->st->bytes, 0);
    }
    memset(c, 0, sizeof *c);
    c->large = SIZE_MAX;
    return rc;
}

/* The writer's own part: each collection is written at once, then whatever
 * the other encoders have ready. */
static int give_write(void *ctx, chunk *c)
{
    writer *wr = ctx;
    int rc = write_chunk(wr, c);
    chunk q;
    while (!rc && queue_get(wr->e, &q, 0))
        rc = write_chunk(wr, &q);
    return rc;
}

/* Every entry of the pack into p, by nparts encoders (this thread is part
 * 0), each but this one on its own thread and repository handle. */
static int encode_parallel(walk *w, guts_packw *p, unsigned nparts, guts_git_fetch_stats *st)
{
    encoders e = {.w = w, .nparts = nparts};
    encoder k[FETCH_ENCODERS_MAX];
    writer wr = {.w = w, .e = &e, .p = p, .st = st, .err = w->err};
    unsigned started = 0;
    int rc = GUTS_OK;
    memset(k, 0, sizeof k);
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.ready, NULL);
    pthread_cond_init(&e.room, NULL);
    for (unsigned i = 1; i < nparts && !rc; i++) {
        k[i].e = &e;
        k[i].part = i;
        if ((rc = guts_repo_open(w->data, w->key, 0, &k[i].r))) {
            rc = guts_git_errf(w->err, rc, "opening %s again: %s (%s)", w->key, guts_strerror(rc),
                             guts_store_errmsg());
            break;
        }
        pthread_mutex_lock(&e.mu);
        e.running++;
        pthread_mutex_unlock(&e.mu);
        if (pthread_create(&k[i].t, NULL, encoder_main, &k[i]) != 0) {
            pthread_mutex_lock(&e.mu);
            e.running--;
            pthread_mutex_unlock(&e.mu);
            rc = guts_git_errf(w->err, GUTS_ENOMEM, "cannot start an encoder thread");
            break;
        }
        started = i;
    }
    guts_packw own;
    int orc = guts_packw_open_mem(&own, w->zlevel);
    if (!rc && orc) rc = guts_git_errf(w->err, orc, "out of memory");
    if (!rc) rc = encode_part(w, w->r, 0, nparts, &own, give_write, &wr, w->err);
    chunk c;
    while (!rc && queue_get(&e, &c, 1))
        rc = write_chunk(&wr, &c);
    if (rc) encoders_stop(&e);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(k[i].t, NULL);
    while (queue_get(&e, &c, 0)) /* left by a failure */
        free(c.buf);
    /* The encoder that failed, not one that stopped for it (no message). */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (unsigned i = 1; i <= started && !rc; i++)
            if (k[i].rc && (k[i].err[0] || pass == 1)) {
                rc = k[i].rc;
                memcpy(w->err, k[i].err, GUTS_GIT_ERR_MAX);
                if (!w->err[0]) guts_git_errf(w->err, rc, "an encoder stopped");
            }
    for (unsigned i = 1; i < nparts; i++)
        if (k[i].r) guts_repo_close(k[i].r);
    guts_packw_free(&own);
    pthread_cond_destroy(&e.ready);
    pthread_cond_destroy(&e.room);
    pthread_mutex_destroy(&e.mu);
    return rc;
}

/* How many encoders for this pack: one per CPU, within the limits. */
static unsigned encoders_for(const walk *w)
{
    if (w->nsend < FETCH_PARALLEL_MIN || !w->data || !w->key) return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2) return 1;
    return cpus > FETCH_ENCODERS_MAX ? FETCH_ENCODERS_MAX : (unsigned)cpus;
}

/* ---- pack ------------------------------------------------------------------ */

/* Entries read in one read transaction on the single encoder's path (as
 * encode_part's collections): a transaction per store read was 3% of a
 * cold clone's instructions (mdb_txn_begin, its reader slot, the abort). */
#define FETCH_HOLD_ENTRIES 256

/* The read transaction of fetch_pack_entries (the walk's w->holding, the
 * walk being done), dropped before the pack thread waits for the
 * writer's (before_wait): a slow client must not keep it open (nor the
 * map from growing). */
static void hold_drop(void *ctx)
{
    walk *w = ctx;
    if (w->holding) guts_repo_read_release(w->r);
    w->holding = 0;
}

int fetch_pack_entries(walk *w, guts_packw *p, guts_git_fetch_stats *st)
{
    unsigned nparts = encoders_for(w);
    if (nparts > 1) return encode_parallel(w, p, nparts, st);
    /* best effort: each read begins its own when none is held */
    p->before_wait = hold_drop;
    p->before_wait_ctx = w;
    int rc = GUTS_OK;
    for (size_t i = 0; i < w->nsend && !rc; i++) {
        uint64_t bytes = 0;
        if (!w->holding) w->holding = guts_repo_read_hold(w->r) == GUTS_OK;
        rc = encode_one(w, w->r, p, i, &bytes, w->err);
        if ((i + 1) % FETCH_HOLD_ENTRIES == 0 || rc) hold_drop(w);
        if (rc) break;
        st->bytes += bytes;
        st->objects++;
        guts_progress_show(&w->writing, i + 1, w->nsend, st->bytes, 0);
    }
    hold_drop(w);
    p->before_wait = NULL;
    return rc;
}

/* git index-pack --stdin for a pack (a clone's checked self-contained and
 * connected, a fetch's completed if thin), or, unindexed, unpack-objects. */
static int pack_proc_start(guts_proc *proc, int indexed, int self_contained, char *err)
{
    char *argv_index[] = {"git", "index-pack", "--stdin", "--keep=fetched by git-remote-guts",
                          NULL,  NULL};
    char *argv_unpack[] = {"git", "unpack-objects", "-q", NULL};
    if (indexed)
        argv_index[4] = self_contained ? "--check-self-contained-and-connected" : "--fix-thin";
    return guts_proc_start(proc, indexed ? argv_index : argv_unpack, GUTS_PROC_PIPE,
                           indexed ? GUTS_PROC_PIPE : GUTS_PROC_NULL, err);
}

/* The pack has gone in whole: end its input and wait for the process. */
static int pack_proc_finish(guts_proc *proc, int indexed, guts_git_fetch_stats *st, char *err)
{
    /* index-pack names the pack it kept ("keep\t<hash>") once its input
     * ends: only then is its stdout read, and it is one short line. */
    char line[128] = "";
    size_t ll = 0;
    close(proc->in);
    proc->in = -1;
    while (indexed && ll + 1 < sizeof line) {
        ssize_t n = read(proc->out, line + ll, sizeof line - 1 - ll);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        ll += (size_t)n;
    }
    line[ll] = 0;
    int status;
    int rc = guts_proc_wait(proc, &status, err);
    if (!rc && status) rc = guts_git_errf(err, GUTS_EIO, "%s failed (exit %d)", proc->what, status);
    if (!rc && indexed) {
        if (strncmp(line, "keep\t", 5) != 0 || ll < 5 + GUTS_HEX_LEN)
            rc = guts_git_errf(err, GUTS_EIO, "%s said \"%.60s\", not keep\\t<hash>", proc->what,
                               line);
        else
            memcpy(st->keep, line + 5, GUTS_HEX_LEN);
    }
    return rc;
}

static void pack_proc_end(guts_proc *proc)
{
    if (proc->pid > 0) {
        int status;
        char ignore[GUTS_GIT_ERR_MAX];
        guts_proc_wait(proc, &status, ignore);
    }
}

/* The pack's bytes to index-pack and, for the pack cache, to its file.
 * A cached pack's index-pack starts with its first bytes (proc.pid < 0
 * until then): when there is no such pack, none was started. */
typedef struct tee {
    guts_proc proc;
    guts_packcache *cache; /* or NULL */
    uint64_t bytes;
    char *err;
} tee;

static int tee_sink(void *ctx, const void *buf, size_t n)
{
    tee *t = ctx;
    int rc = t->proc.pid < 0 ? pack_proc_start(&t->proc, 1, 1, t->err) : GUTS_OK;
    if (!rc) rc = guts_write_all(t->proc.in, buf, n);
    if (!rc && t->cache) guts_packcache_write(t->cache, buf, n);
    t->bytes += n;
    return rc;
}

int fetch_send_cached(guts_packcache *cache, int *connected, guts_git_fetch_stats *st, char *err)
{
    tee t = {.proc = {.pid = -1, .in = -1, .out = -1}, .err = err};
    err[0] = 0;
    int rc = guts_packcache_send(cache, tee_sink, &t);
    if (rc == GUTS_OK) {
        st->pack_bytes = t.bytes;
        rc = pack_proc_finish(&t.proc, 1, st, err);
        if (!rc) *connected = 1;
    } else if (rc == GUTS_ECORRUPT) {
        rc = guts_git_errf(err, rc, "a cached pack was damaged (removed): try again");
    } else if (rc != GUTS_ENOTFOUND && t.proc.pid < 0) {
        rc = GUTS_ENOTFOUND; /* not a byte went out: the cache is best effort */
        err[0] = 0;
    } else if (rc != GUTS_ENOTFOUND && !err[0]) {
        rc = guts_git_errf(err, rc, "sending a cached pack: %s", guts_strerror(rc));
    }
    pack_proc_end(&t.proc);
    return rc;
}

/* A clone's pack (no haves) holds the whole closure of the wants: index-pack
 * can check that as it indexes, which spares git its own connectivity walk
 * afterwards. A fetch's pack leaves out what the local repository has, so
 * it is not self-contained and is not checked here. A clone's pack of
 * GUTS_GIT_UNPACK_LIMIT objects or more also goes to cache, if any: the
 * next clone of the same wants sends that file (fetch_send_cached). */
int fetch_write_pack(walk *w, int self_contained, int *connected, guts_packcache *cache,
                     guts_git_fetch_stats *st)
{
    int indexed = w->indexed = w->nsend >= GUTS_GIT_UNPACK_LIMIT;
    /* index-pack checks a whole pack's links (is_rehashed): SHA-1 of 125 MB
     * of content less for a clone of zlib */
    if (indexed && self_contained) w->rehash = 0;
    guts_packw p = {.fd = -1};
    tee t = {.proc = {.pid = -1, .in = -1, .out = -1}, .err = w->err};
    int rc = pack_proc_start(&t.proc, indexed, self_contained, w->err);
    if (rc) goto out;
    /* A pack of fewer than GUTS_GIT_UNPACK_LIMIT objects (a fetch of a few
     * commits) is deflated as git would: costing nothing measurable, level 0
     * would leave it several times git's size. */
    if (!indexed && w->zlevel < REMOTE_SMALL_PACK_LEVEL) w->zlevel = REMOTE_SMALL_PACK_LEVEL;
    /* no object list beside it: only guts-node starts a pack from an
     * earlier one (guts_packcache_find_base) */
    if (indexed && self_contained && cache && guts_packcache_begin(cache) == GUTS_OK)
        t.cache = cache;
    if ((rc = guts_packw_open(&p, -1, w->zlevel, 0, (uint32_t)w->nsend))) {
        rc = pack_err(w->err, rc);
        goto out;
    }
    p.sink = tee_sink;
    p.sink_ctx = &t;
    if ((rc = fetch_pack_entries(w, &p, st))) goto out;
    uint8_t sum[GUTS_ID_LEN];
    if ((rc = guts_packw_finish(&p, sum))) {
        rc = pack_err(w->err, rc);
        goto out;
    }
    st->pack_bytes = p.total;
    guts_progress_show(&w->writing, w->nsend, w->nsend, st->bytes, 1);
    rc = pack_proc_finish(&t.proc, indexed, st, w->err);
    if (!rc) *connected = indexed && self_contained;
    if (!rc && t.cache) guts_packcache_commit(t.cache);
out:
    pack_proc_end(&t.proc);
    guts_packw_free(&p);
    return rc;
}
