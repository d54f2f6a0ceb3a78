/* objects.c - git objects in the "objects" database: the record format, the
 * read path (get, verify, has, stat, drop), records read for replication,
 * and iteration over ids and the insertion log.
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
 * Writing records is objects_put.c.
 *
 * Reads decode a chain
 * iteratively from the nearest cached (or full) base towards the object.
 * zstd frames carry their XXH64 checksum and every decode is checked
 * against the recorded size, so a damaged record reads as GUTS_ECORRUPT and
 * never as wrong content (a full SHA-1 rehash is fsck's job).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guts/delta.h"
#include "internal.h"

/* Raw records up to this size are rehashed (SHA-1) on every read, since
 * they carry no zstd checksum: that covers every tiny object at ~0.3 us
 * each; bigger raw ones (incompressible blobs) are checked by length and
 * left to fsck, as rehashing them would double the cost of an export. */
#define STORE_RAW_VERIFY_MAX ((size_t)64 << 10)

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
    case ENC_PIECES:
        /* Content in "pieces" (pieces.c); only this piece size is written. */
        if (n != REC_PIECES_LEN || h->size < 1 ||
            ((uint32_t)p[REC_HDR] << 24 | (uint32_t)p[REC_HDR + 1] << 16 |
             (uint32_t)p[REC_HDR + 2] << 8 | p[REC_HDR + 3]) != GUTS_PIECE_BYTES)
            goto bad;
        h->payload = NULL;
        h->plen = 0;
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
    guts_errmsg_set("malformed object record (%zu bytes)", n);
    return GUTS_ECORRUPT;
}

int store_corrupt(const guts_id *id, const char *why)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    guts_errmsg_set("object %s: %s", hex, why);
    return GUTS_ECORRUPT;
}

int store_rec_find(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v, rec_hdr *h)
{
    int rc = store_obj_lookup(r, txn, id, v);
    if (rc == MDB_NOTFOUND) return GUTS_ENOTFOUND;
    if (rc) return store_mdb_err(rc, "read object");
    if (rec_parse(v, h)) return store_corrupt(id, "malformed record");
    return GUTS_OK;
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
                return store_corrupt(id, "raw content does not hash to its id");
            }
        }
        *out = buf;
        return GUTS_OK;
    }
    size_t rc = guts_zstd_decode_prefixed(r->dctx, buf, h->size, h->payload, h->plen,
                                          h->enc == ENC_ZSTD_DELTA ? prefix : NULL,
                                          h->enc == ENC_ZSTD_DELTA ? prefix_len : 0);
    if (ZSTD_isError(rc) || rc != h->size) {
        /* A failed frame may leave the prefix referenced: drop it. */
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        ZSTD_DCtx_refPrefix(r->dctx, NULL, 0);
        free(buf);
        return store_corrupt(id, ZSTD_isError(rc) ? ZSTD_getErrorName(rc) : "decoded size differs");
    }
    *out = buf;
    return GUTS_OK;
}

/* The matches guts_repo_get_copies gives, collected. */
typedef struct copies_out {
    guts_copy *v;
    size_t n, cap;
} copies_out;

static int copies_add(void *ctx, size_t at, size_t from, size_t len)
{
    copies_out *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        guts_copy *v = realloc(c->v, cap * sizeof *v);
        if (!v) return 1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (guts_copy){at, from, len};
    return 0;
}

/* The matches of a record stored whole (h, decoded into cur) inside
 * itself into cc; else cc->v stays NULL. */
static void self_copies(const rec_hdr *h, const uint8_t *cur, copies_out *cc)
{
    if (guts_zstd_self_copies(h->payload, h->plen, cur, h->size, copies_add, cc)) {
        free(cc->v);
        cc->v = NULL;
        cc->n = 0;
        return;
    }
    if (!cc->v) cc->v = malloc(sizeof *cc->v); /* no match: still known */
}

/* The content of id, whose record h the caller has found, decoded down its
 * delta chain (see obj_decode); cc as there. */
static int chain_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, const rec_hdr *h,
                        uint8_t **out, size_t *len, copies_out *cc)
{
    rec_hdr chain[STORE_DELTA_DEPTH_MAX + 1];
    guts_id ids[STORE_DELTA_DEPTH_MAX + 1];
    MDB_val v;
    int rc;
    chain[0] = *h;
    ids[0] = *id;
    const uint8_t *base = NULL;
    size_t blen = 0;
    int top = 0;
    while (chain[top].enc == ENC_ZSTD_DELTA) {
        const guts_id *bid = &chain[top].base;
        if ((base = cache_get(&r->cache, bid, &blen))) break;
        if (top == STORE_DELTA_DEPTH_MAX) return store_corrupt(id, "delta chain too deep");
        rc = store_obj_lookup(r, txn, bid, &v);
        if (rc == MDB_NOTFOUND) return store_corrupt(&ids[top], "delta base missing");
        if (rc) return store_mdb_err(rc, "read delta base");
        top++;
        ids[top] = *bid;
        if ((rc = rec_parse(&v, &chain[top]))) return store_corrupt(bid, "malformed record");
        /* Depth strictly decreases along a chain: also rules out cycles. */
        if (chain[top].depth != chain[top - 1].depth - 1)
            return store_corrupt(&ids[top - 1], "delta depth inconsistent");
    }
    uint8_t *owned = NULL; /* content of ids[j + 1], ours */
    int j = top;
    if (!base && chain[top].enc == ENC_PIECES) { /* a large object, or its base */
        if ((rc = pieces_decode(r, txn, &ids[top], chain[top].size, &owned))) return rc;
        base = owned;
        blen = (size_t)chain[top].size;
        j = top - 1;
    }
    for (; j >= 0; j--) {
        uint8_t *cur;
        rc = rec_decode(r, &ids[j], &chain[j], base, blen, &cur);
        if (!rc && j == 0 && cc && chain[0].enc == ENC_ZSTD) self_copies(&chain[0], cur, cc);
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

/* Full content of a stored object, read in txn. Delta chains are walked
 * iteratively up to the first cached base (or a full record), then decoded
 * back down; intermediate contents go into the cache as they are bases.
 * cc (may be NULL): the copies of id's own record, when decoded here or
 * when both it and its base are cached. */
static int obj_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, int *type, uint8_t **out,
                      size_t *len, copies_out *cc)
{
    MDB_val v;
    rec_hdr h;
    int rc = store_rec_find(r, txn, id, &v, &h);
    if (rc) return rc;
    *type = h.type;
    size_t clen;
    const uint8_t *cached = cache_get(&r->cache, id, &clen);
    if (!cached) return chain_decode(r, txn, id, &h, out, len, cc);
    if (clen != h.size) return store_corrupt(id, "cached size differs");
    uint8_t *copy = malloc(clen ? clen : 1);
    if (!copy) return GUTS_ENOMEM;
    memcpy(copy, cached, clen);
    *out = copy;
    *len = clen;
    return GUTS_OK;
}

int store_obj_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, int *type, uint8_t **out,
                     size_t *len)
{
    return obj_decode(r, txn, id, type, out, len, NULL);
}

int store_obj_decode_found(guts_repo *r, MDB_txn *txn, const guts_id *id, const rec_hdr *h,
                           uint8_t **out, size_t *len)
{
    return chain_decode(r, txn, id, h, out, len, NULL);
}

/* One read transaction around obj_decode (cc may be NULL). */
static int repo_get(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len,
                    copies_out *cc)
{
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    uint8_t *buf = NULL;
    size_t n = 0;
    int t = 0;
    rc = obj_decode(r, txn, id, &t, &buf, &n, cc);
    store_read_end(r, txn);
    if (rc) return rc;
    *type = t;
    *data = buf;
    *len = n;
    return GUTS_OK;
}

int guts_repo_get_copies(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len,
                         guts_copy **copies, size_t *ncopies)
{
    if (!r || !id || !type || !data || !len || !copies || !ncopies) return GUTS_EINVAL;
    copies_out cc = {0};
    int rc = repo_get(r, id, type, data, len, &cc);
    if (rc) {
        free(cc.v);
        return rc;
    }
    *copies = cc.v;
    *ncopies = cc.n;
    return GUTS_OK;
}

int guts_repo_get_lits(guts_repo *r, const guts_id *id, unsigned inserts_div, int *type,
                       size_t *len, guts_id *base, size_t *blen, guts_copy **copies,
                       size_t *ncopies, uint8_t **lits, size_t *nlits)
{
    if (!r || !id || !type || !len || !base || !blen || !copies || !ncopies || !lits || !nlits)
        return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rec_hdr h, bh;
    copies_out cc = {0};
    uint8_t *buf = NULL;
    size_t n = 0;
    rc = store_rec_find(r, txn, id, &v, &h);
    if (rc == GUTS_OK && (h.enc != ENC_ZSTD_DELTA || h.size >= GUTS_LARGE_MIN)) rc = GUTS_ENOTFOUND;
    if (rc == GUTS_OK) rc = store_rec_find(r, txn, &h.base, &v, &bh);
    if (rc == GUTS_OK && bh.type != h.type) rc = GUTS_ENOTFOUND;
    size_t max = inserts_div ? (size_t)h.size / inserts_div : (size_t)h.size;
    if (rc == GUTS_OK && !(buf = malloc(max ? max : 1))) rc = GUTS_ENOMEM;
    if (rc == GUTS_OK)
        rc = guts_zstd_lits_copies(h.payload, h.plen, (size_t)bh.size, (size_t)h.size, max, buf,
                                   &n, copies_add, &cc);
    store_read_end(r, txn);
    if (rc) {
        free(buf);
        free(cc.v);
        return rc == GUTS_ECORRUPT ? GUTS_ENOTFOUND : rc;
    }
    *type = h.type;
    *len = (size_t)h.size;
    *base = h.base;
    *blen = (size_t)bh.size;
    *copies = cc.v;
    *ncopies = cc.n;
    *lits = buf;
    *nlits = n;
    return GUTS_OK;
}

int guts_repo_get(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len)
{
    if (!r || !id || !type || !data || !len) return GUTS_EINVAL;
    return repo_get(r, id, type, data, len, NULL);
}

static int verify_discard(const void *data, size_t len, void *ctx)
{
    (void)data;
    (void)len;
    (void)ctx;
    return 0;
}

/* A server checks every object it sends (node_sync.c): one read
 * transaction; a raw record is hashed where it lies (no copy, no cache),
 * anything else decoded once; a large object streamed. */
int guts_repo_verify(guts_repo *r, const guts_id *id)
{
    if (!r || !id) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rec_hdr h;
    uint8_t *data = NULL;
    size_t len = 0;
    int type = 0, large = 0;
    guts_id got;
    rc = store_rec_find(r, txn, id, &v, &h);
    if (rc == GUTS_OK && h.enc == ENC_RAW) {
        type = h.type;
        rc = guts_obj_hash(h.type, h.payload, h.size, &got);
    } else if (rc == GUTS_OK && !(large = h.size >= GUTS_LARGE_MIN)) {
        rc = store_obj_decode(r, txn, id, &type, &data, &len);
        if (rc == GUTS_OK) rc = guts_obj_hash(type, data, len, &got);
        free(data);
    }
    store_read_end(r, txn);
    if (rc) return rc;
    if (large) return guts_repo_stream(r, id, verify_discard, NULL);
    return guts_id_cmp(&got, id) != 0 ? store_corrupt(id, "content does not hash to its id")
                                      : GUTS_OK;
}

typedef struct drop_ctx {
    const guts_id *ids;
    size_t n, dropped;
} drop_ctx;

static int drop_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    drop_ctx *c = arg;
    store_set set;
    int rc = store_set_load(r, txn, &set);
    if (rc) return rc;
    c->dropped = 0;
    for (size_t i = 0; i < c->n; i++) {
        MDB_val k = {GUTS_ID_LEN, (void *)c->ids[i].b}, v;
        rc = mdb_get(txn, r->se->objects, &k, &v);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) return rc;
        uint64_t bytes = v.mv_size;
        rec_hdr h;
        /* a row too damaged to parse may still own pieces: delete any */
        if ((rec_parse(&v, &h) || h.enc == ENC_PIECES) &&
            (rc = pieces_del(r, txn, &c->ids[i], &bytes)))
            return rc;
        if ((rc = mdb_del(txn, r->se->objects, &k, NULL))) return rc;
        set.count = set.count ? set.count - 1 : 0;
        set.stored = set.stored > bytes ? set.stored - bytes : 0;
        guts_fp_sub(&set.fp, guts_fp_of_id(&c->ids[i]));
        c->dropped++;
    }
    set.added = c->dropped; /* store_set_save writes only when non-zero */
    return store_set_save(r, txn, &set);
}

int guts_repo_drop(guts_repo *r, const guts_id *ids, size_t n, size_t *dropped)
{
    if (dropped) *dropped = 0;
    if (!r || (!ids && n)) return GUTS_EINVAL;
    if (n == 0) return GUTS_OK;
    drop_ctx c = {ids, n, 0};
    int rc = store_write(r, 0, drop_fn, &c);
    if (rc == GUTS_OK && dropped) *dropped = c.dropped;
    return rc;
}

int guts_repo_has(guts_repo *r, const guts_id *id)
{
    if (!r || !id) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rc = store_obj_lookup(r, txn, id, &v);
    store_read_end(r, txn);
    if (rc == 0) return 1;
    if (rc == MDB_NOTFOUND) return 0;
    return store_mdb_err(rc, "read object");
}

int guts_repo_head(guts_repo *r, const guts_id *id, int *type, uint64_t *size, guts_id *base)
{
    if (!r || !id) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rec_hdr h;
    rc = store_rec_find(r, txn, id, &v, &h);
    if (rc == GUTS_OK) {
        if (type) *type = h.type;
        if (size) *size = h.size;
        if (base) *base = h.enc == ENC_ZSTD_DELTA ? h.base : *id;
    }
    store_read_end(r, txn);
    return rc;
}

int guts_repo_stat(guts_repo *r, const guts_id *id, int *type, uint64_t *size)
{
    return guts_repo_head(r, id, type, size, NULL);
}

/* ---- records (replication) ------------------------------------------------ */

/* Records travel between nodes as stored: the sender reads them without
 * decompressing, the receiver decodes each once (against its own copy of
 * the base, which has the same id and so the same content) to verify the id,
 * and keeps the payload as received. One SHA-1 and one decompression per
 * object; no compression unless a delta chain would grow past its bound. */

int guts_repo_rec_get(guts_repo *r, const guts_id *id, guts_rec *out, void **buf)
{
    if (!r || !id || !out || !buf) return GUTS_EINVAL;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rec_hdr h;
    rc = store_rec_find(r, txn, id, &v, &h);
    if (rc == GUTS_OK) {
        memset(out, 0, sizeof *out);
        out->id = *id;
        out->type = h.type;
        out->enc = h.enc;
        out->size = h.size;
        *buf = NULL;
    }
    /* a large object's record is its head only: no payload to copy */
    if (rc == GUTS_OK && h.enc != ENC_PIECES) {
        uint8_t *copy = malloc(v.mv_size);
        if (!copy) {
            rc = GUTS_ENOMEM;
        } else {
            memcpy(copy, v.mv_data, v.mv_size);
            out->base = h.base;
            out->depth = (unsigned)h.depth;
            out->data = copy + (h.payload - (const uint8_t *)v.mv_data);
            out->len = h.plen;
            *buf = copy;
        }
    }
    store_read_end(r, txn);
    return rc;
}

/* ---- iteration ------------------------------------------------------------ */

int guts_repo_ids(guts_repo *r, const guts_id *from, const guts_id *to,
                  int (*cb)(const guts_id *id, void *ctx), void *ctx)
{
    if (!r || !cb) return GUTS_EINVAL;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = store_read_cursor(r, r->se->objects, &txn, &cur);
    if (rc) return rc;
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
            guts_errmsg_set("object key of %zu bytes", k.mv_size);
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
    MDB_cursor *cur;
    int rc = store_read_cursor(r, r->se->log, &txn, &cur);
    if (rc) return rc;
    MDB_val k, v;
    MDB_cursor_op op = MDB_LAST;
    int res = GUTS_OK;
    while (*n < max && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_PREV;
        if (v.mv_size != GUTS_ID_LEN) {
            res = GUTS_ECORRUPT;
            guts_errmsg_set("log entry of %zu bytes", v.mv_size);
            break;
        }
        MDB_val ok = {GUTS_ID_LEN, v.mv_data}, ov;
        if (mdb_get(txn, r->se->objects, &ok, &ov) == MDB_NOTFOUND)
            continue; /* dropped as damaged (guts_repo_drop) */
        memcpy(out[(*n)++].b, v.mv_data, GUTS_ID_LEN);
    }
    if (res == GUTS_OK && rc && rc != MDB_NOTFOUND) res = store_mdb_err(rc, "read log");
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return res;
}

_Static_assert(GUTS_REC_RAW == ENC_RAW && GUTS_REC_ZSTD == ENC_ZSTD &&
                   GUTS_REC_DELTA == ENC_ZSTD_DELTA,
               "store.h record encodings are the stored encoding byte");
