/* objects.c - git objects in the "objects" database, and the insertion log.
 *
 * A record is  type(1) encoding(1) size(8, BE)  then
 *   encoding 0 (raw):        the content
 *   encoding 1 (zstd):       one zstd frame of the content
 *   encoding 2 (zstd delta): base id(20) depth(1), then one zstd frame made
 *                            with the base's full content as zstd "prefix"
 * (docs/storage.md has the byte layout and the reasons.) A delta is built
 * against the caller's hint (git's own delta base on import) only when that
 * base is already stored, so a record can always be decoded from the store
 * alone; depth is stored so the chain bound is checked without walking it.
 *
 * A put is one write transaction for the whole batch: ids are verified
 * before it starts, existing ids are skipped with one lookup before any
 * compression, and count, fingerprint, log, sequence and stored bytes are
 * written at the end of the same transaction. Reads decode a chain
 * iteratively from the nearest cached (or full) base towards the object.
 * zstd frames carry their XXH64 checksum and every decode is checked
 * against the recorded size, so a damaged record reads as GUTS_ECORRUPT and
 * never as wrong content (a full SHA-1 rehash is fsck's job).
 */
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

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
/* Raw records up to this size are rehashed (SHA-1) on every read, since
 * they carry no zstd checksum: that covers every tiny object at ~0.3 us
 * each; bigger raw ones (incompressible blobs) are checked by length and
 * left to fsck, as rehashing them would double the cost of an export. */
#define STORE_RAW_VERIFY_MAX ((size_t)64 << 10)
/* A put's record buffer above this size is released after the batch so one
 * huge blob does not pin its buffer for the handle's lifetime. */
#define STORE_BUF_KEEP ((size_t)16 << 20)

int rec_parse(const MDB_val *v, rec_hdr *h)
{
    const uint8_t *p = v->mv_data;
    size_t n = v->mv_size;
    if (n < REC_HDR) goto bad;
    h->type = p[0];
    h->enc = p[1];
    h->size = be64_get(p + 2);
    h->depth = 0;
    if (h->type < GUTS_OBJ_COMMIT || h->type > GUTS_OBJ_TAG) goto bad;
    if (h->size > GUTS_OBJ_MAX_DEFAULT) goto bad;
    switch (h->enc) {
    case ENC_RAW:
        if (n - REC_HDR != h->size) goto bad;
        h->payload = p + REC_HDR;
        h->plen = n - REC_HDR;
        return GUTS_OK;
    case ENC_ZSTD:
        if (n == REC_HDR) goto bad;
        h->payload = p + REC_HDR;
        h->plen = n - REC_HDR;
        return GUTS_OK;
    case ENC_ZSTD_DELTA:
        if (n <= REC_DELTA_HDR) goto bad;
        memcpy(h->base.b, p + REC_HDR, GUTS_ID_LEN);
        h->depth = p[REC_HDR + GUTS_ID_LEN];
        if (h->depth < 1 || h->depth > STORE_DELTA_DEPTH_MAX) goto bad;
        h->payload = p + REC_DELTA_HDR;
        h->plen = n - REC_DELTA_HDR;
        return GUTS_OK;
    default:
        goto bad;
    }
bad:
    store_seterr("malformed object record (%zu bytes)", n);
    return GUTS_ECORRUPT;
}

static int corrupt(const guts_id *id, const char *why)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    store_seterr("object %s: %s", hex, why);
    return GUTS_ECORRUPT;
}

/* Decode one record into a new buffer; prefix is the base content for a
 * delta and must be NULL otherwise. */
static int rec_decode(guts_repo *r, const guts_id *id, const rec_hdr *h, const uint8_t *prefix,
                      size_t prefix_len, uint8_t **out)
{
    uint8_t *buf = malloc(h->size ? h->size : 1);
    if (!buf) return GUTS_ENOMEM;
    if (h->enc == ENC_RAW) {
        memcpy(buf, h->payload, h->size);
        /* Raw records have no zstd checksum: small ones are rehashed. */
        if (h->size <= STORE_RAW_VERIFY_MAX) {
            guts_id got;
            if (guts_obj_hash(h->type, buf, h->size, &got) != GUTS_OK || guts_id_cmp(&got, id)) {
                free(buf);
                return corrupt(id, "raw content does not hash to its id");
            }
        }
        *out = buf;
        return GUTS_OK;
    }
    size_t rc = ZSTD_DCtx_refPrefix(r->dctx, h->enc == ENC_ZSTD_DELTA ? prefix : NULL,
                                    h->enc == ENC_ZSTD_DELTA ? prefix_len : 0);
    if (!ZSTD_isError(rc)) rc = ZSTD_decompressDCtx(r->dctx, buf, h->size, h->payload, h->plen);
    if (ZSTD_isError(rc) || rc != h->size) {
        /* A failed frame may leave the prefix referenced: drop it. */
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        ZSTD_DCtx_refPrefix(r->dctx, NULL, 0);
        free(buf);
        return corrupt(id, ZSTD_isError(rc) ? ZSTD_getErrorName(rc) : "decoded size differs");
    }
    *out = buf;
    return GUTS_OK;
}

/* Full content of a stored object, read in txn. Delta chains are walked
 * iteratively up to the first cached base (or a full record), then decoded
 * back down; intermediate contents go into the cache as they are bases. */
static int obj_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, int *type, uint8_t **out,
                      size_t *len)
{
    rec_hdr chain[STORE_DELTA_DEPTH_MAX + 1];
    guts_id ids[STORE_DELTA_DEPTH_MAX + 1];
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    int rc = mdb_get(txn, r->se->objects, &k, &v);
    if (rc == MDB_NOTFOUND) return GUTS_ENOTFOUND;
    if (rc) return store_mdb_err(rc, "read object");
    if ((rc = rec_parse(&v, &chain[0]))) return corrupt(id, "malformed record");
    ids[0] = *id;
    *type = chain[0].type;
    size_t clen;
    const uint8_t *cached = cache_get(&r->cache, id, &clen);
    if (cached) {
        if (clen != chain[0].size) return corrupt(id, "cached size differs");
        uint8_t *copy = malloc(clen ? clen : 1);
        if (!copy) return GUTS_ENOMEM;
        memcpy(copy, cached, clen);
        *out = copy;
        *len = clen;
        return GUTS_OK;
    }
    const uint8_t *base = NULL;
    size_t blen = 0;
    int top = 0;
    while (chain[top].enc == ENC_ZSTD_DELTA) {
        const guts_id *bid = &chain[top].base;
        if ((base = cache_get(&r->cache, bid, &blen))) break;
        if (top == STORE_DELTA_DEPTH_MAX) return corrupt(id, "delta chain too deep");
        k.mv_data = (void *)bid->b;
        rc = mdb_get(txn, r->se->objects, &k, &v);
        if (rc == MDB_NOTFOUND) return corrupt(&ids[top], "delta base missing");
        if (rc) return store_mdb_err(rc, "read delta base");
        top++;
        ids[top] = *bid;
        if ((rc = rec_parse(&v, &chain[top]))) return corrupt(bid, "malformed record");
        /* Depth strictly decreases along a chain: also rules out cycles. */
        if (chain[top].depth != chain[top - 1].depth - 1)
            return corrupt(&ids[top - 1], "delta depth inconsistent");
    }
    uint8_t *owned = NULL; /* content of ids[j + 1], ours */
    for (int j = top; j >= 0; j--) {
        uint8_t *cur;
        rc = rec_decode(r, &ids[j], &chain[j], base, blen, &cur);
        if (owned) cache_give(&r->cache, &ids[j + 1], owned, blen);
        owned = NULL;
        if (rc) return rc;
        owned = cur;
        base = cur;
        blen = chain[j].size;
    }
    *out = owned;
    *len = blen;
    return GUTS_OK;
}

int guts_repo_get(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len)
{
    if (!r || !id || !type || !data || !len) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    uint8_t *buf = NULL;
    size_t n = 0;
    int t = 0;
    rc = obj_decode(r, txn, id, &t, &buf, &n);
    store_read_end(r, txn);
    if (rc) return rc;
    *type = t;
    *data = buf;
    *len = n;
    return GUTS_OK;
}

int guts_repo_has(guts_repo *r, const guts_id *id)
{
    if (!r || !id) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    rc = mdb_get(txn, r->se->objects, &k, &v);
    store_read_end(r, txn);
    if (rc == 0) return 1;
    if (rc == MDB_NOTFOUND) return 0;
    return store_mdb_err(rc, "read object");
}

int guts_repo_stat(guts_repo *r, const guts_id *id, int *type, uint64_t *size)
{
    if (!r || !id) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    rc = mdb_get(txn, r->se->objects, &k, &v);
    if (rc == 0) {
        rec_hdr h;
        rc = rec_parse(&v, &h);
        if (rc == 0) {
            if (type) *type = h.type;
            if (size) *size = h.size;
        } else {
            corrupt(id, "malformed record");
        }
    } else {
        rc = rc == MDB_NOTFOUND ? GUTS_ENOTFOUND : store_mdb_err(rc, "read object");
    }
    store_read_end(r, txn);
    return rc;
}

/* ---- put ------------------------------------------------------------------ */

typedef struct put_ctx {
    const guts_obj *objs;
    size_t n;
    size_t *map; /* open addressing: index + 1 of an object with that id */
    size_t mask;
    size_t added;
} put_ctx;

static size_t map_slot(const guts_id *id)
{
    uint64_t h;
    memcpy(&h, id->b + 4, sizeof h);
    return (size_t)h;
}

static const guts_obj *batch_find(const put_ctx *c, const guts_id *id)
{
    for (size_t s = map_slot(id) & c->mask;; s = (s + 1) & c->mask) {
        if (!c->map[s]) return NULL;
        const guts_obj *o = &c->objs[c->map[s] - 1];
        if (memcmp(o->id.b, id->b, GUTS_ID_LEN) == 0) return o;
    }
}

static int ensure_buf(guts_repo *r, size_t need)
{
    if (r->bufcap >= need) return GUTS_OK;
    free(r->buf);
    r->buf = malloc(need);
    r->bufcap = r->buf ? need : 0;
    return r->buf ? GUTS_OK : GUTS_ENOMEM;
}

static unsigned ceil_log2(uint64_t x)
{
    unsigned l = 0;
    while (l < 63 && ((uint64_t)1 << l) < x) l++;
    return l;
}

/* Compress o as a delta against its hinted base if that base is stored and
 * the chain stays within bounds. Returns the record length, 0 when no useful
 * delta was made, or a negative error. */
static long try_delta(guts_repo *r, MDB_txn *txn, const put_ctx *c, const guts_obj *o)
{
    const guts_id *bid = o->base;
    if (!bid || guts_id_is_zero(bid) || guts_id_cmp(bid, &o->id) == 0) return 0;
    if (o->len < STORE_ZSTD_MIN_LEN) return 0;
    MDB_val k = {GUTS_ID_LEN, (void *)bid->b}, v;
    int rc = mdb_get(txn, r->se->objects, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return store_mdb_err(rc, "read delta base");
    rec_hdr bh;
    if (rec_parse(&v, &bh)) return 0; /* a damaged base is fsck's to report */
    if (bh.depth + 1 > STORE_DELTA_DEPTH_MAX) return 0;
    if (bh.size + o->len > ((uint64_t)1 << STORE_DELTA_WINDOWLOG)) return 0;
    const uint8_t *base = NULL;
    uint8_t *owned = NULL;
    size_t blen = 0;
    const guts_obj *bo = batch_find(c, bid);
    if (bo) {
        base = bo->data;
        blen = bo->len;
        /* A base is often the base of more objects, in later batches too:
         * keep a copy (only bases: copying every object costs ~10%). */
        cache_copy(&r->cache, bid, base, blen);
    } else if (!(base = cache_get(&r->cache, bid, &blen))) {
        int t;
        rc = obj_decode(r, txn, bid, &t, &owned, &blen);
        /* A base that no longer decodes is fsck's to report; the new object
         * is still stored, without it. */
        if (rc == GUTS_ECORRUPT) return 0;
        if (rc) return rc;
        base = owned;
    }
    long out = 0;
    unsigned wlog = ceil_log2(blen + o->len);
    if (wlog < STORE_WINDOWLOG_MIN) wlog = STORE_WINDOWLOG_MIN;
    size_t zr = ZSTD_CCtx_setParameter(r->cctx, ZSTD_c_windowLog, (int)wlog);
    /* zstd's regular match finder indexes only the end of a large prefix
     * (its hash tables hold a few hundred KiB of positions); the long
     * distance matcher indexes all of it, as `zstd --patch-from` does. */
    int ldm = blen >= STORE_LDM_MIN_BASE;
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(r->cctx, ZSTD_c_enableLongDistanceMatching, ldm);
    if (!ZSTD_isError(zr)) zr = ZSTD_CCtx_refPrefix(r->cctx, base, blen);
    if (!ZSTD_isError(zr))
        zr = ZSTD_compress2(r->cctx, r->buf + REC_DELTA_HDR, r->bufcap - REC_DELTA_HDR, o->data,
                            o->len);
    if (ZSTD_isError(zr)) {
        ZSTD_CCtx_reset(r->cctx, ZSTD_reset_session_only);
    } else if (zr + REC_DELTA_HDR < o->len + REC_HDR) {
        uint8_t *p = r->buf;
        p[0] = (uint8_t)o->type;
        p[1] = ENC_ZSTD_DELTA;
        be64_put(p + 2, o->len);
        memcpy(p + REC_HDR, bid->b, GUTS_ID_LEN);
        p[REC_HDR + GUTS_ID_LEN] = (uint8_t)(bh.depth + 1);
        out = (long)(zr + REC_DELTA_HDR);
    }
    ZSTD_CCtx_setParameter(r->cctx, ZSTD_c_windowLog, 0);
    ZSTD_CCtx_setParameter(r->cctx, ZSTD_c_enableLongDistanceMatching, 0);
    if (owned) cache_give(&r->cache, bid, owned, blen);
    return out;
}

/* Build o's record in r->buf; returns its length or a negative error. */
static long encode(guts_repo *r, MDB_txn *txn, const put_ctx *c, const guts_obj *o)
{
    long n = try_delta(r, txn, c, o);
    if (n != 0) return n;
    uint8_t *p = r->buf;
    p[0] = (uint8_t)o->type;
    be64_put(p + 2, o->len);
    if (o->len >= STORE_ZSTD_MIN_LEN) {
        size_t zr = ZSTD_CCtx_refPrefix(r->cctx, NULL, 0);
        if (!ZSTD_isError(zr))
            zr = ZSTD_compress2(r->cctx, p + REC_HDR, r->bufcap - REC_HDR, o->data, o->len);
        if (ZSTD_isError(zr)) {
            ZSTD_CCtx_reset(r->cctx, ZSTD_reset_session_only);
        } else if (zr < o->len) {
            p[1] = ENC_ZSTD;
            return (long)(REC_HDR + zr);
        }
    }
    p[1] = ENC_RAW;
    if (o->len) memcpy(p + REC_HDR, o->data, o->len);
    return (long)(REC_HDR + o->len);
}

static int put_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    put_ctx *c = arg;
    store_env *se = r->se;
    c->added = 0;
    uint64_t count, seq, stored;
    guts_fp fp;
    int rc;
    if ((rc = store_meta_get_u64(r, txn, "count", &count)) ||
        (rc = store_meta_get_u64(r, txn, "seq", &seq)) ||
        (rc = store_meta_get_u64(r, txn, "stored_bytes", &stored)) ||
        (rc = store_meta_get_fp(r, txn, "fp", &fp)))
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        const guts_obj *o = &c->objs[i];
        MDB_val k = {GUTS_ID_LEN, (void *)o->id.b}, v;
        rc = mdb_get(txn, se->objects, &k, &v);
        if (rc == 0) continue;
        if (rc != MDB_NOTFOUND) return rc;
        if ((rc = ensure_buf(r, REC_DELTA_HDR + ZSTD_compressBound(o->len)))) return rc;
        long n = encode(r, txn, c, o);
        if (n < 0) return (int)n;
        v.mv_size = (size_t)n;
        v.mv_data = r->buf;
        if ((rc = mdb_put(txn, se->objects, &k, &v, 0))) return rc;
        uint8_t sk[8];
        be64_put(sk, seq);
        MDB_val lk = {8, sk};
        if ((rc = mdb_put(txn, se->log, &lk, &k, MDB_APPEND))) return rc;
        seq++;
        count++;
        stored += (uint64_t)n;
        guts_fp_add(&fp, guts_fp_of_id(&o->id));
        c->added++;
    }
    if (c->added == 0) return GUTS_OK;
    if ((rc = store_meta_put_u64(r, txn, "count", count)) ||
        (rc = store_meta_put_u64(r, txn, "seq", seq)) ||
        (rc = store_meta_put_u64(r, txn, "stored_bytes", stored)) ||
        (rc = store_meta_put_fp(r, txn, "fp", fp)))
        return rc;
    return GUTS_OK;
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
            store_seterr("object %s: invalid type %d or data", hex, o->type);
            return GUTS_EINVAL;
        }
        if (o->len > GUTS_OBJ_MAX_DEFAULT) {
            if (bad) *bad = i;
            store_seterr("object %s: %zu bytes is over the limit", hex, o->len);
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
            store_seterr("object %s: content does not hash to its id", hex);
            return GUTS_EHASH;
        }
        total += o->len;
    }
    put_ctx c = {.objs = objs, .n = n};
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    c.map = calloc(cap, sizeof *c.map);
    if (!c.map) return GUTS_ENOMEM;
    c.mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s = map_slot(&objs[i].id) & c.mask;
        while (c.map[s] && memcmp(objs[c.map[s] - 1].id.b, objs[i].id.b, GUTS_ID_LEN) != 0)
            s = (s + 1) & c.mask;
        if (!c.map[s]) c.map[s] = i + 1;
    }
    /* If the map fills, grow by at least what this batch could take: raw
     * size plus per-record and B-tree overhead (generous: ~2x). */
    int rc = store_write(r, 2 * total + 256 * n, put_fn, &c);
    free(c.map);
    if (r->bufcap > STORE_BUF_KEEP) {
        free(r->buf);
        r->buf = NULL;
        r->bufcap = 0;
    }
    if (rc == GUTS_OK && added) *added = c.added;
    return rc;
}

/* ---- iteration ------------------------------------------------------------ */

int guts_repo_ids(guts_repo *r, const guts_id *from, const guts_id *to,
                  int (*cb)(const guts_id *id, void *ctx), void *ctx)
{
    if (!r || !cb) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, r->se->objects, &cur))) {
        store_read_end(r, txn);
        return store_mdb_err(rc, "cursor");
    }
    MDB_val k = {0, NULL}, v;
    MDB_cursor_op op = MDB_FIRST;
    if (from) {
        k.mv_size = GUTS_ID_LEN;
        k.mv_data = (void *)from->b;
        op = MDB_SET_RANGE;
    }
    int out = GUTS_OK;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size != GUTS_ID_LEN) {
            out = GUTS_ECORRUPT;
            store_seterr("object key of %zu bytes", k.mv_size);
            break;
        }
        guts_id id;
        memcpy(id.b, k.mv_data, GUTS_ID_LEN);
        if (to && guts_id_cmp(&id, to) >= 0) break;
        if ((out = cb(&id, ctx)) != 0) break;
    }
    if (rc && rc != MDB_NOTFOUND) out = store_mdb_err(rc, "iterate objects");
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return out;
}

int guts_repo_recent(guts_repo *r, size_t max, guts_id *out, size_t *n)
{
    if (!r || !n || (!out && max)) return GUTS_EINVAL;
    *n = 0;
    if (max == 0) return GUTS_OK;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, r->se->log, &cur))) {
        store_read_end(r, txn);
        return store_mdb_err(rc, "cursor");
    }
    MDB_val k, v;
    MDB_cursor_op op = MDB_LAST;
    int res = GUTS_OK;
    while (*n < max && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_PREV;
        if (v.mv_size != GUTS_ID_LEN) {
            res = GUTS_ECORRUPT;
            store_seterr("log entry of %zu bytes", v.mv_size);
            break;
        }
        memcpy(out[(*n)++].b, v.mv_data, GUTS_ID_LEN);
    }
    if (res == GUTS_OK && rc && rc != MDB_NOTFOUND) res = store_mdb_err(rc, "read log");
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return res;
}
