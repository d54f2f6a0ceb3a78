/* objects_put.c - writing git objects into the "objects" database: the put
 * planner (guts_repo_put) and replicated records (guts_repo_rec_put).
 *
 * The record format and the read path are objects.c. A put is one write
 * transaction for the whole batch (or, on a handle that groups its puts,
 * a read transaction, its records going to the group: group.c): ids are
 * verified before it starts, existing ids are skipped with one lookup
 * before any compression, and count, fingerprint, log, sequence and stored
 * bytes are written at the end of the same transaction. (Compressing on up to four
 * threads gained nothing measurable on 2 cores - zlib's import 0.7-1.1 s
 * either way, 202,000 small objects 3.8 s on one thread, 4.8-5.3 s on
 * two - and was removed.)
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "guts/delta.h"
#include "internal.h"

/* Objects shorter than this are stored raw without trying zstd: a frame
 * with its checksum costs 13+ bytes, more than such an object can save. */
#define STORE_ZSTD_MIN_LEN 24
/* zstd's smallest window (ZSTD_WINDOWLOG_MIN, which zstd.h only exposes to
 * static linking). */
#define STORE_WINDOWLOG_MIN 10
/* Bases at least this large are matched with zstd's long distance matcher
 * (see try_delta). Measured on random content with 3 changed bytes: without
 * it a 1 MB pair still deltas to 154 bytes but a 4 MB one to 262 KB; with it
 * 4 MB gives 468 bytes, while below 1 MB it only costs time (2x). */
#define STORE_LDM_MIN_BASE ((size_t)1 << 20)
/* A delta given to zstd as sequences (delta_by_sequences) may leave at most
 * 1/STORE_SEQ_LITS_DIV of the object as literals; past that, zstd's own
 * match finder (which also finds short matches, and matches within the
 * object) is run instead, at the cost of indexing the base. zlib's store
 * in pages and the import's CPU (10 alternating runs): 2 2,765; 4 2,581,
 * 0.527 s; 8 2,396, 0.528 s; 16 2,318, 0.558 s (2,303 with zstd's matcher
 * alone, 2,759 with git's deltas taken whatever they insert). */
#define STORE_SEQ_LITS_DIV 8
/* A put's record arena is kept between puts up to this size (the
 * compressed output of a 16 MiB import batch fits) and released above it,
 * so a huge blob pins nothing and a node with many repositories open keeps
 * at most 4 MiB per handle. */
#define STORE_BUF_KEEP ((size_t)4 << 20)
/* Received contents at least this large are kept in the cache as likely
 * bases (guts_repo_rec_put); below it a content costs the cache (entry,
 * hashing, eviction) about what decoding it again costs. */
#define STORE_REC_CACHE_MIN 512
/* Bytes of a large object written per transaction by guts_repo_put: four
 * pieces, so LMDB's dirty pages (heap until commit) stay a few MiB. */
#define STORE_PUT_STAGE_BYTES (4 * GUTS_PIECE_BYTES)

/* ---- put ------------------------------------------------------------------ */

/* A put runs in three phases inside its write transaction:
 *   A  skip present and duplicate ids; choose each object's base (stored,
 *      or earlier in the batch) and fetch the base's content; bound the
 *      chain depth from above;
 *   B  compress every object on its own, against its base;
 *   C  write records in batch order, fixing each delta's depth from its
 *      base's actual record, plus log and counters.
 * Phase B touches neither LMDB nor the cache, only the batch, the fetched
 * bases, the compression context and the arena. */

#define NO_INDEX ((size_t)-1)

typedef struct put_item {
    uint8_t skip;       /* present already, or a repeat of an earlier id */
    uint8_t delta;      /* phase A: try the base; after B: record is a delta */
    uint8_t planned;    /* depth bound if a delta (>= the actual depth) */
    uint8_t depth;      /* actual depth of the record written (phase C) */
    uint8_t base_depth; /* depth of a base stored before this put */
    size_t base_idx;    /* base earlier in this batch, or NO_INDEX */
    const uint8_t *base;
    size_t blen;
    size_t off, len; /* record in its arena */
} put_item;

typedef struct put_ctx {
    guts_repo *r;
    const guts_obj *objs;
    size_t n;
    size_t *map; /* open addressing: first index + 1 of each id in the batch */
    size_t mask;
    put_item *items;
    /* Base contents copied from the cache or decoded for this put. */
    guts_id *pool_ids;
    uint8_t **pool;
    size_t *pool_lens;
    size_t npool;
    size_t *pmap; /* open addressing over pool_ids, same size as map */
    size_t added;
} put_ctx;

/* Index of the first object in the batch with this id, or NO_INDEX. */
static size_t batch_first(const put_ctx *c, const guts_id *id)
{
    for (size_t s = store_id_slot(id) & c->mask;; s = (s + 1) & c->mask) {
        if (!c->map[s]) return NO_INDEX;
        size_t i = c->map[s] - 1;
        if (memcmp(c->objs[i].id.b, id->b, GUTS_ID_LEN) == 0) return i;
    }
}

/* The pool slot of id: its index + 1 in *slot, 0 if free. */
static size_t *pool_slot(put_ctx *c, const guts_id *id)
{
    for (size_t s = store_id_slot(id) & c->mask;; s = (s + 1) & c->mask) {
        if (!c->pmap[s] || memcmp(c->pool_ids[c->pmap[s] - 1].b, id->b, GUTS_ID_LEN) == 0)
            return &c->pmap[s];
    }
}

static void pool_release(put_ctx *c, guts_repo *r)
{
    /* They are bases: later puts and reads will likely want them again. */
    for (size_t i = 0; i < c->npool; i++)
        cache_give(&r->cache, &c->pool_ids[i], c->pool[i], c->pool_lens[i]);
    c->npool = 0;
    if (c->pmap) memset(c->pmap, 0, (c->mask + 1) * sizeof *c->pmap);
}

/* Content of a base stored before this put, kept in the pool until the put
 * ends. Returns 0, GUTS_ECORRUPT (the base does not decode: skip the delta)
 * or another error. */
static int pool_fetch(put_ctx *c, MDB_txn *txn, const guts_id *bid, const uint8_t **out,
                      size_t *len)
{
    guts_repo *r = c->r;
    size_t *slot = pool_slot(c, bid);
    if (*slot) {
        *out = c->pool[*slot - 1];
        *len = c->pool_lens[*slot - 1];
        return GUTS_OK;
    }
    uint8_t *buf;
    size_t blen;
    const uint8_t *cached = cache_get(&r->cache, bid, &blen);
    if (cached) {
        /* A copy: decoding other bases below may evict this entry. */
        if (!(buf = malloc(blen ? blen : 1))) return GUTS_ENOMEM;
        memcpy(buf, cached, blen);
    } else {
        int t, rc = store_obj_decode(r, txn, bid, &t, &buf, &blen);
        if (rc) return rc;
    }
    size_t k = c->npool++;
    c->pool_ids[k] = *bid;
    c->pool[k] = buf;
    c->pool_lens[k] = blen;
    *slot = k + 1;
    *out = buf;
    *len = blen;
    return GUTS_OK;
}

/* Phase A. Returns 0, a GUTS_E* code or a raw LMDB code. */
static int put_plan(put_ctx *c, MDB_txn *txn)
{
    for (size_t i = 0; i < c->n; i++) {
        put_item *it = &c->items[i];
        const guts_obj *o = &c->objs[i];
        memset(it, 0, sizeof *it);
        it->base_idx = NO_INDEX;
        if (batch_first(c, &o->id) != i) {
            it->skip = 1;
            continue;
        }
        MDB_val v;
        int rc = store_obj_lookup(c->r, txn, &o->id, &v);
        if (rc == 0) {
            it->skip = 1;
            continue;
        }
        if (rc != MDB_NOTFOUND) return rc;
        const guts_id *bid = o->base;
        if (!bid || guts_id_is_zero(bid) || guts_id_cmp(bid, &o->id) == 0 ||
            o->len < STORE_ZSTD_MIN_LEN)
            continue;
        size_t j = batch_first(c, bid);
        unsigned planned;
        if (j != NO_INDEX && j < i && !c->items[j].skip) {
            /* Stored by this put before o: use its content directly. */
            planned = c->items[j].planned + 1u;
            it->base_idx = j;
            it->base = c->objs[j].data;
            it->blen = c->objs[j].len;
        } else {
            rc = store_obj_lookup(c->r, txn, bid, &v);
            if (rc == MDB_NOTFOUND) continue; /* not stored (or later in the batch) */
            if (rc) return rc;
            rec_hdr bh;
            if (rec_parse(&v, &bh) || bh.enc == ENC_PIECES)
                continue; /* damaged (fsck's to report), or large: never a base */
            planned = (unsigned)bh.depth + 1u;
            if (planned > STORE_DELTA_DEPTH_MAX ||
                bh.size + o->len > ((uint64_t)1 << STORE_DELTA_WINDOWLOG))
                continue;
            it->base_depth = (uint8_t)bh.depth;
            if (j != NO_INDEX) { /* same content is in the batch: no decoding */
                it->base = c->objs[j].data;
                it->blen = c->objs[j].len;
            } else {
                rc = pool_fetch(c, txn, bid, &it->base, &it->blen);
                if (rc == GUTS_ECORRUPT) continue; /* store o without it */
                if (rc) return rc;
            }
        }
        if (planned > STORE_DELTA_DEPTH_MAX ||
            (uint64_t)it->blen + o->len > ((uint64_t)1 << STORE_DELTA_WINDOWLOG))
            continue;
        it->delta = 1;
        it->planned = (uint8_t)planned;
    }
    return GUTS_OK;
}

static unsigned ceil_log2(uint64_t x)
{
    unsigned l = 0;
    while (l < 63 && ((uint64_t)1 << l) < x)
        l++;
    return l;
}

/* A delta's zstd sequences, from guts_delta_scan's copies: a copy is a
 * match reaching back into the base (zstd's prefix, right before the
 * content), the bytes between copies are literals. */
typedef struct seq_ctx {
    ZSTD_Sequence *s;
    size_t n, cap, bn;
    size_t lit;      /* content before lit is in sequences */
    size_t lits;     /* literal bytes so far */
    size_t max_lits; /* more: zstd's own match finder is run instead */
} seq_ctx;

static int seq_copy(void *ctx, size_t at, size_t from, size_t len)
{
    seq_ctx *q = ctx;
    /* What zstd is promised: it does not check sequences itself (its check,
     * ZSTD_c_validateSequences, refuses offsets into a prefix in 1.5.4). */
    if (at < q->lit || from >= q->bn || len > q->bn - from || len < GUTS_DELTA_BLOCK ||
        q->n == q->cap)
        return -1;
    q->lits += at - q->lit;
    if (q->lits > q->max_lits) return -1;
    q->s[q->n++] = (ZSTD_Sequence){.offset = (unsigned)(q->bn + at - from),
                                   .litLength = (unsigned)(at - q->lit),
                                   .matchLength = (unsigned)len};
    q->lit = at + len;
    return 0;
}

/* The sequences of o->gdelta, a git delta (src/git/pack.c describes the
 * format) from base: every copy is checked against o's content and the
 * base (the delta comes from a file, and the base the store holds need not
 * be the one git used), so what zstd is given is right whatever the delta
 * says. Copies under GUTS_GD_MIN_COPY bytes become literals. GUTS_EINVAL
 * when the delta does not describe o from base. */
#define GUTS_GD_MIN_COPY 8
static int seqs_of_git_delta(seq_ctx *q, const uint8_t *base, const guts_obj *o)
{
    const uint8_t *d = o->gdelta, *data = o->data;
    size_t n = o->gdlen, pos = 0, at = 0;
    uint64_t src, dst;
    if (guts_gd_sizes(d, n, &pos, &src, &dst) || src != q->bn || dst != o->len) return GUTS_EINVAL;
    guts_gd_op op;
    while (pos < n) {
        if (guts_gd_next(d, n, &pos, &op) || op.len > o->len - at) return GUTS_EINVAL;
        if (op.copy) {
            if (op.off > q->bn || op.len > q->bn - op.off || memcmp(base + op.off, data + at, op.len) != 0)
                return GUTS_EINVAL;
            if (op.len >= GUTS_GD_MIN_COPY) {
                if (q->n == q->cap) return GUTS_EINVAL;
                q->lits += at - q->lit;
                q->s[q->n++] = (ZSTD_Sequence){.offset = (unsigned)(q->bn + at - op.off),
                                               .litLength = (unsigned)(at - q->lit),
                                               .matchLength = (unsigned)op.len};
                q->lit = at + op.len;
            }
        } /* an insert's bytes: zstd takes them from o's content */
        at += op.len;
    }
    return at == o->len ? GUTS_OK : GUTS_EINVAL;
}

/* o compressed against it->base from known copies: o->gdelta's when they
 * check, else those guts_delta_scan finds. They go to zstd as sequences
 * whose offsets reach back past o's start into the base: the frame any
 * zstd decoder given the base as prefix reads (single-segment, as
 * ZSTD_compress2's against a prefix are), so reads need nothing new. No
 * prefix is referenced while compressing: zstd would index all of it for
 * a match finder it does not run here (ZSTD_compressSequences only
 * entropy-codes and checksums), and that indexing was most of an
 * import's CPU (docs/performance.md). 0 when the copies leave over
 * 1/STORE_SEQ_LITS_DIV of o as literals, or on no memory; else
 * ZSTD_compressSequences' result. */
static size_t delta_by_sequences(guts_repo *r, const guts_obj *o, const put_item *it, uint8_t *out,
                                 size_t cap)
{
    /* The scan's copies are at least a block long, a git delta's that
     * become sequences at least GUTS_GD_MIN_COPY. */
    size_t need = o->len / (o->gdelta ? GUTS_GD_MIN_COPY : GUTS_DELTA_BLOCK) + 2;
    if (need > r->seqcap) {
        ZSTD_Sequence *ns = realloc(r->seqs, need * sizeof *ns);
        if (!ns) return 0;
        r->seqs = ns;
        r->seqcap = need;
    }
    seq_ctx q = {.s = r->seqs, .cap = need, .bn = it->blen, .max_lits = o->len / STORE_SEQ_LITS_DIV};
    int ok = o->gdelta && seqs_of_git_delta(&q, it->base, o) == GUTS_OK;
    if (!ok) {
        q.n = q.lit = q.lits = 0;
        ok = guts_delta_scan(it->base, it->blen, o->data, o->len, seq_copy, &q) == GUTS_OK;
    }
    if (!ok || q.lits + (o->len - q.lit) > q.max_lits) return 0;
    size_t zr = ZSTD_compressSequences(r->cctx, out, cap, q.s, q.n, o->data, o->len);
    /* Unlike ZSTD_compress2, it leaves the context mid-frame, where no
     * parameter can be set for the next object. */
    ZSTD_CCtx_reset(r->cctx, ZSTD_reset_session_only);
    return zr;
}

/* Compress o into p (room for REC_DELTA_HDR + ZSTD_compressBound(o->len)):
 * against its base when that pays, else plain zstd when that pays, else
 * raw. Clears it->delta when the base was not used. Returns the length. */
static size_t encode(guts_repo *r, const guts_obj *o, put_item *it, uint8_t *p, size_t cap)
{
    ZSTD_CCtx *cctx = r->cctx;
    p[0] = (uint8_t)o->type;
    be64_put(p + 2, o->len);
    if (it->delta) {
        it->delta = 0;
        unsigned wlog = ceil_log2((uint64_t)it->blen + o->len);
        if (wlog < STORE_WINDOWLOG_MIN) wlog = STORE_WINDOWLOG_MIN;
        size_t zr = delta_by_sequences(r, o, it, p + REC_DELTA_HDR, cap - REC_DELTA_HDR);
        if (zr == 0) {
            /* zstd's regular match finder indexes only the end of a large
             * prefix; the long distance matcher indexes all of it, as
             * `zstd --patch-from` does. */
            int ldm = it->blen >= STORE_LDM_MIN_BASE;
            zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, (int)wlog);
            if (!ZSTD_isError(zr))
                zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, ldm);
            if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_refPrefix(cctx, it->base, it->blen);
            if (!ZSTD_isError(zr))
                zr = ZSTD_compress2(cctx, p + REC_DELTA_HDR, cap - REC_DELTA_HDR, o->data, o->len);
        }
        if (ZSTD_isError(zr)) ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 0);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 0);
        if (!ZSTD_isError(zr) && zr + REC_DELTA_HDR < o->len + REC_HDR) {
            p[1] = ENC_ZSTD_DELTA;
            memcpy(p + REC_HDR, o->base->b, GUTS_ID_LEN);
            p[REC_HDR + GUTS_ID_LEN] = 0; /* depth: set in phase C */
            it->delta = 1;
            return zr + REC_DELTA_HDR;
        }
    }
    if (o->len >= STORE_ZSTD_MIN_LEN) {
        size_t zr = ZSTD_CCtx_refPrefix(cctx, NULL, 0);
        if (!ZSTD_isError(zr))
            zr = ZSTD_compress2(cctx, p + REC_HDR, cap - REC_HDR, o->data, o->len);
        if (ZSTD_isError(zr)) {
            ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
        } else if (zr < o->len) {
            p[1] = ENC_ZSTD;
            return REC_HDR + zr;
        }
    }
    p[1] = ENC_RAW;
    assert(REC_HDR + o->len <= cap); /* callers size p for the raw form at least */
    if (o->len) memcpy(p + REC_HDR, o->data, o->len);
    return REC_HDR + o->len;
}

/* Phase B: compress every object not skipped into the arena. */
static int put_compress(put_ctx *c)
{
    guts_repo *r = c->r;
    store_arena *a = &r->arena;
    a->used = 0;
    for (size_t i = 0; i < c->n; i++) {
        put_item *it = &c->items[i];
        if (it->skip) continue;
        const guts_obj *o = &c->objs[i];
        size_t need = REC_DELTA_HDR + ZSTD_compressBound(o->len);
        if (a->cap - a->used < need) {
            size_t cap = a->cap ? 2 * a->cap : (size_t)1 << 20;
            while (cap - a->used < need)
                cap *= 2;
            uint8_t *nb = realloc(a->buf, cap);
            if (!nb) return GUTS_ENOMEM;
            a->buf = nb;
            a->cap = cap;
        }
        it->off = a->used;
        it->len = encode(r, o, it, a->buf + a->used, a->cap - a->used);
        a->used += it->len;
    }
    return GUTS_OK;
}

/* What the next batch most likely builds on: an import lists each delta
 * family depth first (a base, then what is built on it), so at a batch's
 * end the family still open is the last object and its chain of bases in
 * this batch. Those are copied to the cache; copying every base of the
 * batch cost an import of zlib 10% of its CPU (page faults of fresh
 * buffers) for bases that nothing after the batch needed. A base missed
 * here is decoded from the store when asked for. */
static void put_cache_tail(put_ctx *c)
{
    size_t i = c->n;
    while (i > 0 && c->items[i - 1].skip)
        i--;
    for (unsigned hops = 0; i > 0 && hops <= STORE_DELTA_DEPTH_MAX; hops++) {
        const guts_obj *o = &c->objs[i - 1];
        cache_copy(&c->r->cache, &o->id, o->data, o->len);
        const put_item *it = &c->items[i - 1];
        i = it->delta && it->base_idx != NO_INDEX ? it->base_idx + 1 : 0;
    }
}

/* Record i of phase C, its delta depth set from its base's actual record
 * (in batch order, a base's depth is set before its deltas'). */
static uint8_t *put_record(put_ctx *c, size_t i)
{
    put_item *it = &c->items[i];
    uint8_t *rec = c->r->arena.buf + it->off;
    if (it->delta) {
        unsigned bd = it->base_idx != NO_INDEX ? c->items[it->base_idx].depth : it->base_depth;
        it->depth = (uint8_t)(bd + 1); /* <= planned <= STORE_DELTA_DEPTH_MAX */
        rec[REC_HDR + GUTS_ID_LEN] = it->depth;
    }
    return rec;
}

/* Phase C. Returns 0, a GUTS_E* code or a raw LMDB code. */
static int put_write(put_ctx *c, MDB_txn *txn)
{
    guts_repo *r = c->r;
    store_env *se = r->se;
    store_set set;
    int rc;
    if ((rc = store_set_load(r, txn, &set))) return rc;
    for (size_t i = 0; i < c->n; i++) {
        put_item *it = &c->items[i];
        if (it->skip) continue;
        const guts_obj *o = &c->objs[i];
        uint8_t *rec = put_record(c, i);
        MDB_val k = {GUTS_ID_LEN, (void *)o->id.b}, v = {it->len, rec};
        if ((rc = mdb_put(txn, se->objects, &k, &v, 0)) ||
            (rc = store_set_add(r, txn, &set, &o->id, it->len)))
            return rc;
    }
    c->added = set.added;
    put_cache_tail(c);
    return store_set_save(r, txn, &set);
}

static int put_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    put_ctx *c = arg;
    (void)r;
    c->added = 0;
    int rc = put_plan(c, txn);
    if (rc == 0) rc = put_compress(c);
    if (rc == 0) rc = put_write(c, txn);
    pool_release(c, c->r);
    return rc;
}

/* A grouped put (guts_repo_group): phases A and B in a read transaction,
 * and phase C into the group instead of the store. */
static int put_grouped(put_ctx *c)
{
    guts_repo *r = c->r;
    store_group *g = &r->grp;
    MDB_txn *txn;
    size_t n0;
    int rc = group_put_begin(r, &txn, &n0);
    if (rc) return rc;
    c->added = 0;
    rc = put_plan(c, txn);
    if (rc == 0) rc = put_compress(c);
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        if (c->items[i].skip) continue;
        if ((rc = group_add(g, &c->objs[i].id, put_record(c, i), c->items[i].len, NULL, 0)) == 0)
            c->added++;
    }
    if (rc == 0) put_cache_tail(c);
    pool_release(c, r);
    return group_put_end(r, txn, n0, rc, "grouped put");
}

int guts_repo_put(guts_repo *r, const guts_obj *objs, size_t n, size_t *added, size_t *bad)
{
    if (added) *added = 0;
    if (!r || (!objs && n)) return GUTS_EINVAL;
    if (n == 0) return GUTS_OK;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const guts_obj *o = &objs[i];
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&o->id, hex);
        if (!guts_otype_name(o->type) || (!o->data && o->len)) {
            if (bad) *bad = i;
            guts_errmsg_set("object %s: invalid type %d or data", hex, o->type);
            return GUTS_EINVAL;
        }
        if (o->len > GUTS_OBJ_MAX_DEFAULT) {
            if (bad) *bad = i;
            guts_errmsg_set("object %s: %zu bytes is over the limit", hex, o->len);
            return GUTS_ETOOBIG;
        }
        guts_id got;
        int rc = guts_obj_hash(o->type, o->data, o->len, &got);
        if (rc) {
            if (bad) *bad = i;
            return rc;
        }
        if (guts_id_cmp(&got, &o->id) != 0) {
            if (bad) *bad = i;
            guts_errmsg_set("object %s: content does not hash to its id", hex);
            return GUTS_EHASH;
        }
        total += o->len;
    }
    /* Large objects go in pieces first, each in transactions of its own
     * (pieces.c); the batch below then finds them present. */
    size_t large = 0;
    for (size_t i = 0; i < n; i++) {
        const guts_obj *o = &objs[i];
        if (o->len < GUTS_LARGE_MIN) continue;
        int stored = 0, rc = GUTS_OK;
        for (size_t off = 0; off < o->len && rc == GUTS_OK; off += STORE_PUT_STAGE_BYTES) {
            size_t k = o->len - off < STORE_PUT_STAGE_BYTES ? o->len - off : STORE_PUT_STAGE_BYTES;
            rc = guts_repo_stage_write(r, &o->id, o->type, o->len, off,
                                       (const uint8_t *)o->data + off, k, &stored);
        }
        if (rc) {
            if (bad) *bad = i;
            return rc;
        }
        large += (size_t)stored;
    }
    put_ctx c = {.r = r, .objs = objs, .n = n};
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    c.mask = cap - 1;
    c.map = calloc(cap, sizeof *c.map);
    c.pmap = calloc(cap, sizeof *c.pmap);
    c.items = malloc(n * sizeof *c.items);
    c.pool_ids = malloc(n * sizeof *c.pool_ids);
    c.pool = malloc(n * sizeof *c.pool);
    c.pool_lens = malloc(n * sizeof *c.pool_lens);
    int rc = GUTS_ENOMEM;
    if (!c.map || !c.pmap || !c.items || !c.pool_ids || !c.pool || !c.pool_lens) goto out;
    for (size_t i = 0; i < n; i++) {
        size_t s = store_id_slot(&objs[i].id) & c.mask;
        while (c.map[s] && memcmp(objs[c.map[s] - 1].id.b, objs[i].id.b, GUTS_ID_LEN) != 0)
            s = (s + 1) & c.mask;
        if (!c.map[s]) c.map[s] = i + 1;
    }
    /* If the map fills, grow by at least what this batch could take: raw
     * size plus per-record and B-tree overhead (generous: ~2x). */
    rc = r->grouped ? put_grouped(&c) : store_write(r, 2 * total + 256 * n, put_fn, &c);
out:
    free(c.map);
    free(c.pmap);
    free(c.items);
    free(c.pool_ids);
    free(c.pool);
    free(c.pool_lens);
    if (r->arena.cap > STORE_BUF_KEEP) {
        free(r->arena.buf);
        memset(&r->arena, 0, sizeof r->arena);
    }
    if (rc == GUTS_OK && added) *added = c.added + large;
    return rc;
}

/* ---- records (replication): the receiving side -------------------------- */

/* objects.c has the sending side and why records travel as stored. */

/* A content handed to the hasher, or one the cache let go of since: told
 * to seen (idx set) and freed (own) once the hasher is past seq. */
typedef struct rput_wait {
    uint64_t seq;
    const uint8_t *data; /* the content of record idx */
    uint8_t *own;
    size_t idx; /* SIZE_MAX: a free only */
} rput_wait;

typedef struct rput_ctx {
    const guts_rec *recs;
    size_t n;
    uint8_t *nobase;
    const guts_rec_seen *seen;
    guts_id last; /* grouped: the objects tree's last id in the read snapshot */
    int empty;    /* grouped: that tree is empty */
    size_t added, bad;
    int big;         /* enough to hash to hand over (STORE_HASH_CALL_MIN) */
    store_hasher *h; /* this call's hasher, or NULL: every hash inline */
    rput_wait *w;    /* in seq order; w0 the first not yet done */
    size_t w0, nw, wcap;
} rput_ctx;

/* Tell (when tell) and free what the hasher is done with: every entry up
 * to seq done. */
static void rput_reap(rput_ctx *c, uint64_t done, int tell)
{
    while (c->w0 < c->nw && c->w[c->w0].seq <= done) {
        rput_wait *w = &c->w[c->w0++];
        if (w->idx != SIZE_MAX && tell && c->seen) {
            const guts_rec *rec = &c->recs[w->idx];
            c->seen->fn(c->seen->arg, &rec->id, rec->type, w->data, (size_t)rec->size);
        }
        free(w->own);
    }
    if (c->w0 == c->nw) c->w0 = c->nw = 0;
}

/* Reap what the hasher has done so far. */
static void rput_reap_done(rput_ctx *c)
{
    uint64_t done = hasher_done(c->h);
    rput_reap(c, done, hasher_bad(c->h) == SIZE_MAX); /* bad covers up to done */
}

/* Defer telling record idx (data) and freeing own until the hasher has
 * done everything handed over so far. No memory to remember it: wait for
 * the hasher and do both now. */
static void rput_defer(rput_ctx *c, const uint8_t *data, uint8_t *own, size_t idx)
{
    if (c->nw == c->wcap) {
        size_t cap = c->wcap ? 2 * c->wcap : 256;
        rput_wait *nw = realloc(c->w, cap * sizeof *nw);
        if (!nw) {
            int tell = hasher_wait(c->h) == SIZE_MAX;
            rput_reap(c, UINT64_MAX, tell);
            if (idx != SIZE_MAX && tell && c->seen) {
                const guts_rec *rec = &c->recs[idx];
                c->seen->fn(c->seen->arg, &rec->id, rec->type, data, (size_t)rec->size);
            }
            free(own);
            return;
        }
        c->w = nw;
        c->wcap = cap;
    }
    c->w[c->nw++] = (rput_wait){.seq = c->h->submitted, .data = data, .own = own, .idx = idx};
}

/* The cache's drop hook while a call hands contents over: what it evicts
 * may be a content the hasher has yet to read. */
static void rput_drop(void *arg, uint8_t *data)
{
    rput_ctx *c = arg;
    if (c->w0 == c->nw && hasher_done(c->h) == c->h->submitted)
        free(data);
    else
        rput_defer(c, NULL, data, SIZE_MAX);
}

/* Whether the hasher found a record of this call bad (the call fails:
 * the rest need no decoding). */
static int rput_failed(rput_ctx *c)
{
    return c->h && hasher_bad(c->h) != SIZE_MAX;
}

/* Before a call's records: its hasher, when it has enough to hand over. */
static void rput_begin(guts_repo *r, rput_ctx *c)
{
    c->h = NULL;
    if (!c->big || (!r->hasher && hasher_start(&r->hasher) != GUTS_OK)) return;
    c->h = r->hasher;
    hasher_reset(c->h);
    r->cache.drop = rput_drop;
    r->cache.drop_arg = c;
}

/* After a call's records (rc: the loop's result): wait for its hashes,
 * tell and free what they held. A failed hash fails the call (what it
 * wrote is undone by the caller, as for an inline failure), and every
 * content the call cached is forgotten: it may be wrong, and a delta's
 * base is read from the cache first. */
static int rput_end(guts_repo *r, rput_ctx *c, int rc)
{
    if (!c->h) return rc;
    size_t bad = hasher_wait(c->h);
    rput_reap(c, UINT64_MAX, bad == SIZE_MAX);
    r->cache.drop = NULL;
    r->cache.drop_arg = NULL;
    free(c->w);
    c->w = NULL;
    c->w0 = c->nw = c->wcap = 0;
    c->h = NULL;
    if (bad == SIZE_MAX) return rc;
    for (size_t i = 0; i < c->n; i++)
        cache_forget(&r->cache, &c->recs[i].id);
    if (rc == 0 || bad < c->bad) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&c->recs[bad].id, hex);
        guts_errmsg_set("record %s: content does not hash to its id", hex);
        c->bad = bad;
        rc = GUTS_EHASH;
    }
    return rc;
}

/* Write one record (hdr + optional delta header + payload): into the
 * write transaction txn, or into r's group when set is NULL (a grouped
 * handle; txn is then a read transaction). MDB_KEYEXIST (nothing written)
 * when the id is stored already: in a transaction the put is the lookup. */
static int rput_write(guts_repo *r, MDB_txn *txn, store_set *set, const guts_id *id,
                      const uint8_t *head, size_t hlen, const void *payload, size_t plen)
{
    if (!set) return group_add(&r->grp, id, head, hlen, payload, plen);
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v = {hlen + plen, NULL};
    int rc = mdb_put(txn, r->se->objects, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc) return rc;
    memcpy(v.mv_data, head, hlen);
    if (plen) memcpy((uint8_t *)v.mv_data + hlen, payload, plen);
    return store_set_add(r, txn, set, id, hlen + plen);
}

/* id's record in a grouped call (rput_grouped): past the objects tree's
 * last id in the call's snapshot only the group can hold it, so no B-tree
 * search. A pull's records mostly come in id order onto a tree they
 * extend, and so do the bases of a split pull's held deltas (in a later
 * part): ~100,000 searches that found nothing at 202,000 objects
 * (docs/performance.md). */
static int rput_lookup(guts_repo *r, MDB_txn *txn, const rput_ctx *c, const guts_id *id,
                       MDB_val *v)
{
    if (!c->empty && guts_id_cmp(id, &c->last) <= 0) return store_obj_lookup(r, txn, id, v);
    const group_ent *e = group_find(&r->grp, id);
    if (!e) return MDB_NOTFOUND;
    v->mv_data = e->rec;
    v->mv_size = e->len;
    return 0;
}

/* Record i of c: verified (decoded and hashed) and written by rput_write.
 * Returns 0 (stored, or skipped: c->nobase[i] set when its base is
 * missing), MDB_KEYEXIST (stored already), a GUTS_E* code (c->bad = i) or
 * a raw LMDB code. */
static int rput_one(guts_repo *r, MDB_txn *txn, store_set *set, rput_ctx *c, size_t i)
{
    const guts_rec *rec = &c->recs[i];
    int held = c->nobase && c->nobase[i]; /* absent when it was held */
    if (c->nobase) c->nobase[i] = 0;
    MDB_val v;
    int rc;
    if (c->h && c->nw > c->w0) rput_reap_done(c);
    /* In a transaction no lookup of the id first: records that are stored
     * already are rare in a pull (reconciliation asked for missing ones),
     * and the put finds them (MDB_NOOVERWRITE) at the price of one wasted
     * decode, where a lookup cost every record a B-tree search. A group
     * has no such put: it looks up, mostly in its own table. */
    if (!set) {
        /* a held delta put again: only the group can hold it, but for a
         * store meanwhile that the group's commit skips (the held deltas'
         * ids lie below the tree's last id: ~50,000 searches into random
         * leaves a first copy of 202,000 objects, docs/performance.md) */
        if (held)
            rc = group_find(&r->grp, &rec->id) ? 0 : MDB_NOTFOUND;
        else
            rc = rput_lookup(r, txn, c, &rec->id, &v);
        if (rc != MDB_NOTFOUND) return rc ? rc : MDB_KEYEXIST;
    }
    const uint8_t *base = NULL;
    size_t blen = 0;
    uint8_t *owned_base = NULL;
    unsigned depth = 0;
    if (rec->enc == GUTS_REC_DELTA) {
        if (guts_id_cmp(&rec->base, &rec->id) == 0) {
            c->bad = i;
            guts_errmsg_set("record is a delta against itself");
            return GUTS_EHASH;
        }
        rc = set ? store_obj_lookup(r, txn, &rec->base, &v) : rput_lookup(r, txn, c, &rec->base, &v);
        if (rc == MDB_NOTFOUND) {
            if (c->nobase) c->nobase[i] = 1;
            return 0;
        }
        if (rc) return rc;
        rec_hdr bh;
        if (rec_parse(&v, &bh)) return store_corrupt(&rec->base, "malformed record");
        if (bh.enc == ENC_PIECES && bh.size + rec->size > ((uint64_t)1 << STORE_DELTA_WINDOWLOG)) {
            /* No store makes such a delta (window bound): refuse to
             * assemble a huge base for it. */
            c->bad = i;
            guts_errmsg_set("record is a delta against a large object");
            return GUTS_EHASH;
        }
        depth = (unsigned)bh.depth + 1;
        if (!(base = cache_get(&r->cache, &rec->base, &blen))) {
            /* found above: no second lookup */
            if ((rc = store_obj_decode_found(r, txn, &rec->base, &bh, &owned_base, &blen)))
                return rc;
            base = owned_base;
        }
    }
    uint8_t *content;
    rc = guts_rec_unpack_with(r->dctx, rec, base, blen, &content);
    /* The base is likely the base of the next record too. */
    if (owned_base) cache_give(&r->cache, &rec->base, owned_base, blen);
    const uint8_t *cdata = content ? content : rec->data; /* a raw record's is its payload */
    uint64_t seq = 0;
    int handed = rc == 0 && c->h && rec->size >= STORE_HASH_ASYNC_MIN &&
                 hasher_submit(c->h, i, rec->type, cdata, (size_t)rec->size, &rec->id, &seq);
    if (rc == 0 && !handed) rc = guts_rec_verify(rec, cdata);
    if (rc) {
        free(content);
        c->bad = i;
        return rc;
    }
    uint8_t head[REC_DELTA_HDR];
    head[0] = (uint8_t)rec->type;
    head[1] = (uint8_t)rec->enc;
    be64_put(head + 2, rec->size);
    if (rec->enc != GUTS_REC_DELTA || depth <= STORE_DELTA_DEPTH_MAX) {
        size_t hlen = REC_HDR;
        if (rec->enc == GUTS_REC_DELTA) {
            memcpy(head + REC_HDR, rec->base.b, GUTS_ID_LEN);
            head[REC_HDR + GUTS_ID_LEN] = (uint8_t)depth;
            hlen = REC_DELTA_HDR;
        }
        rc = rput_write(r, txn, set, &rec->id, head, hlen, rec->data, rec->len);
    } else {
        /* Too deep here: store the content on its own, as put does. */
        guts_obj o = {.id = rec->id, .type = rec->type, .data = content, .len = (size_t)rec->size};
        put_item it = {0};
        size_t cap = REC_DELTA_HDR + ZSTD_compressBound(o.len);
        uint8_t *p = malloc(cap);
        if (!p) {
            if (handed) /* the hasher may be reading it */
                rput_defer(c, NULL, content, SIZE_MAX);
            else
                free(content);
            return GUTS_ENOMEM;
        }
        size_t reclen = encode(r, &o, &it, p, cap);
        rc = rput_write(r, txn, set, &rec->id, p, reclen, NULL, 0);
        free(p);
    }
    /* seen is told only of verified contents: a handed-over one once the
     * hasher is past it */
    if (rc == 0 && c->seen) {
        if (handed)
            rput_defer(c, cdata, NULL, i);
        else
            c->seen->fn(c->seen->arg, &rec->id, rec->type, cdata, rec->size);
    }
    /* A base of the next records, likely; small contents are cheaper to
     * decode again than to keep (many tiny entries cost the cache more
     * than they save). A handed-over content the cache lets go of is
     * freed once hashed (rput_drop). */
    if (rc == 0 && content && rec->size >= STORE_REC_CACHE_MIN)
        cache_give(&r->cache, &rec->id, content, (size_t)rec->size);
    else if (handed && content)
        rput_defer(c, NULL, content, SIZE_MAX);
    else
        free(content);
    return rc;
}

static int rput_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    rput_ctx *c = arg;
    store_set set;
    int rc;
    c->added = 0;
    if ((rc = store_set_load(r, txn, &set))) return rc;
    rput_begin(r, c);
    for (size_t i = 0; i < c->n && !rput_failed(c); i++) {
        rc = rput_one(r, txn, &set, c, i);
        if (rc == MDB_KEYEXIST) rc = 0;
        if (rc) break;
        c->added = set.added;
    }
    if ((rc = rput_end(r, c, rc))) return rc;
    return store_set_save(r, txn, &set);
}

/* A grouped handle (guts_repo_group): the records are verified in a read
 * transaction and go to the group, as put_grouped's. */
static int rput_grouped(guts_repo *r, rput_ctx *c)
{
    MDB_txn *txn;
    size_t n0;
    c->added = 0;
    int rc = group_put_begin(r, &txn, &n0);
    if (rc) return rc;
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, r->se->objects, &cur)) == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        c->empty = rc == MDB_NOTFOUND;
        if (rc == 0) memcpy(c->last.b, k.mv_data, GUTS_ID_LEN);
        rc = c->empty ? 0 : rc;
        mdb_cursor_close(cur);
    }
    if (rc == 0) rput_begin(r, c);
    for (size_t i = 0; i < c->n && (rc == 0 || rc == MDB_KEYEXIST) && !rput_failed(c); i++) {
        /* The next record's lookups: the group's map and the cache are
         * too large to stay in a core's cache beside the rest of a pull's
         * work, and each first probe was a miss (docs/performance.md). */
        if (i + 2 < c->n && c->recs[i + 2].enc == GUTS_REC_DELTA)
            cache_prefetch(&r->cache, &c->recs[i + 2].base, 0);
        if (i + 1 < c->n) {
            const guts_rec *next = &c->recs[i + 1];
            group_prefetch(&r->grp, &next->id);
            if (next->enc == GUTS_REC_DELTA) {
                group_prefetch(&r->grp, &next->base);
                cache_prefetch(&r->cache, &next->base, 1);
            }
        }
        size_t before = r->grp.n;
        rc = rput_one(r, txn, NULL, c, i);
        c->added += r->grp.n - before;
    }
    if (rc == MDB_KEYEXIST) rc = 0;
    rc = rput_end(r, c, rc);
    if (rc) c->added = 0;
    return group_put_end(r, txn, n0, rc, "grouped record put");
}

int guts_repo_rec_put(guts_repo *r, const guts_rec *recs, size_t n, uint8_t *nobase,
                      const guts_rec_seen *seen, size_t *added, size_t *bad)
{
    if (added) *added = 0;
    if (!r || (!recs && n)) return GUTS_EINVAL;
    if (n == 0) return GUTS_OK;
    size_t total = 0;
    uint64_t tohash = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = guts_rec_check(&recs[i]);
        if (rc) {
            if (bad) *bad = i;
            return rc;
        }
        total += recs[i].len;
        if (recs[i].size >= STORE_HASH_ASYNC_MIN) tohash += recs[i].size;
    }
    rput_ctx c = {.recs = recs, .n = n, .nobase = nobase, .seen = seen};
    c.bad = SIZE_MAX;
    c.big = tohash >= STORE_HASH_CALL_MIN;
    /* The map grows by at least this batch's records plus B-tree overhead;
     * a rare too-deep delta stored whole may need more, which a retry
     * with a bigger map covers. */
    int rc = r->grouped ? rput_grouped(r, &c) : store_write(r, 2 * total + 256 * n, rput_fn, &c);
    if (rc && bad) *bad = c.bad == SIZE_MAX ? 0 : c.bad;
    if (rc == GUTS_OK && added) *added = c.added;
    return rc;
}
