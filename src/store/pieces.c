/* pieces.c - large objects: stored in pieces, staged while they arrive, read
 * by range.
 *
 * An object of GUTS_LARGE_MIN bytes or more is one row in "objects" (type,
 * encoding 3, size, piece size) and size / GUTS_PIECE_BYTES pieces (rounded
 * up) in "pieces", keyed id(20) index(4, BE), each compressed on its own.
 * One whole value of hundreds of MB would be, in LMDB, one overflow page run
 * that a write transaction allocates on the heap (dirty pages live in memory
 * until the commit unless MDB_WRITEMAP) and that a reader or a sender must
 * decode whole; a piece bounds both to GUTS_PIECE_BYTES.
 *
 * Pieces are written before their object exists: "stage" holds, per object
 * being received, its type, size, bytes staged, stored bytes and the txn id
 * of its last write. A write continues the SHA-1 kept in the repo handle
 * (or, after a restart or another object, rehashes the staged pieces once);
 * the write that completes the object verifies the id and turns the stage
 * row into the object row in the same transaction, with count, fingerprint,
 * log and stored bytes. Until then nothing of it is visible as an object,
 * so nothing unverified is ever stored as one, and a transfer cut anywhere
 * resumes at the staged length. The SHA-1 context is copied before each
 * write and adopted only after the commit, so a replayed or failed
 * transaction never leaves it ahead of the disk.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PIECE_KEY_LEN (GUTS_ID_LEN + 4)
/* Piece value: encoding(1) then the bytes. */
#define PIECE_RAW 0
#define PIECE_ZSTD 1
/* Stage row: type(1) size(8) have(8) stored(8) touched(8), integers BE. */
#define STAGE_ROW_LEN 33

typedef struct stage_row {
    int type;
    uint64_t size, have, stored, touched;
} stage_row;

static void piece_key(uint8_t *k, const guts_id *id, uint64_t idx)
{
    memcpy(k, id->b, GUTS_ID_LEN);
    for (int i = 0; i < 4; i++)
        k[GUTS_ID_LEN + i] = (uint8_t)(idx >> (24 - 8 * i));
}

/* Length of piece idx of an object of size bytes. */
static size_t piece_len(uint64_t size, uint64_t idx)
{
    uint64_t start = idx * GUTS_PIECE_BYTES;
    return size - start < GUTS_PIECE_BYTES ? (size_t)(size - start) : GUTS_PIECE_BYTES;
}

/* Decode piece idx (want bytes) of id into out. */
static int piece_read(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t idx, size_t want,
                      uint8_t *out)
{
    uint8_t k[PIECE_KEY_LEN];
    piece_key(k, id, idx);
    MDB_val key = {sizeof k, k}, v;
    int rc = mdb_get(txn, r->se->pieces, &key, &v);
    if (rc == MDB_NOTFOUND) return store_corrupt(id, "piece missing");
    if (rc) return store_mdb_err(rc, "read piece");
    const uint8_t *p = v.mv_data;
    if (v.mv_size < 1) return store_corrupt(id, "empty piece");
    if (p[0] == PIECE_RAW) {
        if (v.mv_size - 1 != want) return store_corrupt(id, "piece has the wrong length");
        memcpy(out, p + 1, want);
        return GUTS_OK;
    }
    if (p[0] != PIECE_ZSTD) return store_corrupt(id, "piece of unknown encoding");
    size_t zr = ZSTD_DCtx_refPrefix(r->dctx, NULL, 0);
    if (!ZSTD_isError(zr)) zr = ZSTD_decompressDCtx(r->dctx, out, want, p + 1, v.mv_size - 1);
    if (ZSTD_isError(zr) || zr != want) {
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        return store_corrupt(id, "piece does not decode to its length");
    }
    return GUTS_OK;
}

/* Write piece idx (zstd when it pays, else raw); *delta gets the change in
 * stored bytes (the old value of a rewritten piece subtracted). */
static int piece_write(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t idx,
                       const uint8_t *data, size_t len, int64_t *delta)
{
    uint8_t k[PIECE_KEY_LEN];
    piece_key(k, id, idx);
    MDB_val key = {sizeof k, k}, v;
    int rc = mdb_get(txn, r->se->pieces, &key, &v);
    if (rc == 0)
        *delta -= (int64_t)v.mv_size;
    else if (rc != MDB_NOTFOUND)
        return rc;
    size_t cap = 1 + ZSTD_compressBound(len);
    uint8_t *z = malloc(cap);
    if (!z) return GUTS_ENOMEM;
    size_t zr = ZSTD_CCtx_refPrefix(r->cctx, NULL, 0);
    if (!ZSTD_isError(zr)) zr = ZSTD_compress2(r->cctx, z + 1, cap - 1, data, len);
    if (ZSTD_isError(zr)) ZSTD_CCtx_reset(r->cctx, ZSTD_reset_session_only);
    if (!ZSTD_isError(zr) && zr < len) {
        z[0] = PIECE_ZSTD;
        v.mv_size = 1 + zr;
        v.mv_data = z;
        rc = mdb_put(txn, r->se->pieces, &key, &v, 0);
    } else {
        v.mv_size = 1 + len;
        rc = mdb_put(txn, r->se->pieces, &key, &v, MDB_RESERVE);
        if (rc == 0) {
            ((uint8_t *)v.mv_data)[0] = PIECE_RAW;
            memcpy((uint8_t *)v.mv_data + 1, data, len);
        }
    }
    free(z);
    if (rc == 0) *delta += (int64_t)v.mv_size;
    return rc;
}

int pieces_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t size, uint8_t **out)
{
    if (size > GUTS_OBJ_MAX_DEFAULT) return store_corrupt(id, "too large");
    uint8_t *buf = malloc((size_t)size);
    if (!buf) return GUTS_ENOMEM;
    for (uint64_t i = 0; i * GUTS_PIECE_BYTES < size; i++) {
        int rc = piece_read(r, txn, id, i, piece_len(size, i), buf + i * GUTS_PIECE_BYTES);
        if (rc) {
            free(buf);
            return rc;
        }
    }
    *out = buf;
    return GUTS_OK;
}

/* ---- Range reads ----------------------------------------------------------- */

int guts_repo_read(guts_repo *r, const guts_id *id, uint64_t off, void *buf, size_t len,
                   size_t *got)
{
    if (!r || !id || !got || (!buf && len)) return GUTS_EINVAL;
    *got = 0;
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rec_hdr h;
    rc = store_rec_find(r, txn, id, &v, &h);
    if (rc == GUTS_OK && off > h.size) {
        guts_errmsg_set("read at %llu past the end of a %llu-byte object", (unsigned long long)off,
                     (unsigned long long)h.size);
        rc = GUTS_EINVAL;
    }
    if (rc) {
        store_read_end(r, txn);
        return rc;
    }
    size_t n = h.size - off < len ? (size_t)(h.size - off) : len;
    if (h.enc != ENC_PIECES) {
        store_read_end(r, txn);
        /* Decoded whole (under GUTS_LARGE_MIN unless stored by an older
         * version); the cache keeps it for the next range, as a sender
         * reads it chunk by chunk. */
        size_t clen;
        const uint8_t *cached = cache_get(&r->cache, id, &clen);
        if (cached && clen == h.size) {
            if (n) memcpy(buf, cached + off, n);
            *got = n;
            return GUTS_OK;
        }
        int type;
        void *data;
        size_t dlen;
        if ((rc = guts_repo_get(r, id, &type, &data, &dlen))) return rc;
        if (n) memcpy(buf, (uint8_t *)data + off, n);
        cache_give(&r->cache, id, data, dlen);
        *got = n;
        return GUTS_OK;
    }
    uint8_t *scratch = NULL;
    uint8_t *dst = buf;
    uint64_t pos = off, end = off + n;
    while (rc == GUTS_OK && pos < end) {
        uint64_t idx = pos / GUTS_PIECE_BYTES, start = idx * GUTS_PIECE_BYTES;
        size_t plen = piece_len(h.size, idx);
        size_t skip = (size_t)(pos - start);
        size_t take = end - pos < plen - skip ? (size_t)(end - pos) : plen - skip;
        if (skip == 0 && take == plen) { /* a whole piece: straight into buf */
            rc = piece_read(r, txn, id, idx, plen, dst);
        } else {
            if (!scratch && !(scratch = malloc(GUTS_PIECE_BYTES))) {
                rc = GUTS_ENOMEM;
                break;
            }
            rc = piece_read(r, txn, id, idx, plen, scratch);
            if (rc == GUTS_OK) memcpy(dst, scratch + skip, take);
        }
        dst += take;
        pos += take;
    }
    free(scratch);
    store_read_end(r, txn);
    if (rc == GUTS_OK) *got = n;
    return rc;
}

typedef struct sha_hdr {
    char b[GUTS_OBJ_HEADER_MAX];
    size_t len;
} sha_hdr;

/* git's object header "<type> <size>\0" (the NUL included). */
static int obj_header(int type, uint64_t size, sha_hdr *h)
{
    h->len = guts_obj_header(type, size, h->b);
    return h->len ? GUTS_OK : GUTS_EINVAL;
}

/* Type, size and encoding of a stored object. */
static int obj_head(guts_repo *r, const guts_id *id, rec_hdr *h)
{
    MDB_txn *txn;
    int rc = store_read_begin(r, &txn);
    if (rc) return rc;
    MDB_val v;
    rc = store_rec_find(r, txn, id, &v, h);
    store_read_end(r, txn);
    return rc;
}

int guts_repo_stream(guts_repo *r, const guts_id *id,
                     int (*cb)(const void *data, size_t len, void *ctx), void *ctx)
{
    if (!r || !id || !cb) return GUTS_EINVAL;
    rec_hdr h;
    int rc = obj_head(r, id, &h);
    if (rc) return rc;
    sha_hdr hdr;
    if (obj_header(h.type, h.size, &hdr)) return store_corrupt(id, "bad type");
    uint8_t *whole = NULL, *buf = NULL;
    if (h.enc != ENC_PIECES) { /* one record: decoded once, handed out in slices */
        int type;
        size_t len;
        if ((rc = guts_repo_get(r, id, &type, (void **)&whole, &len))) return rc;
    } else if (!(buf = malloc(GUTS_PIECE_BYTES))) {
        return GUTS_ENOMEM;
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (!sha || EVP_DigestInit_ex(sha, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(sha, hdr.b, hdr.len) != 1) {
        rc = GUTS_ENOMEM;
        goto out;
    }
    for (uint64_t off = 0; off < h.size;) {
        size_t got = h.size - off < GUTS_PIECE_BYTES ? (size_t)(h.size - off) : GUTS_PIECE_BYTES;
        const uint8_t *p = buf;
        if (whole)
            p = whole + off;
        else if ((rc = guts_repo_read(r, id, off, buf, GUTS_PIECE_BYTES, &got)))
            goto out;
        if (got == 0) {
            rc = store_corrupt(id, "content ends early");
            goto out;
        }
        if (EVP_DigestUpdate(sha, p, got) != 1) {
            rc = GUTS_EIO;
            goto out;
        }
        if ((rc = cb(p, got, ctx))) goto out;
        off += got;
    }
    guts_id got_id;
    unsigned hl = 0;
    if (EVP_DigestFinal_ex(sha, got_id.b, &hl) != 1 || hl != GUTS_ID_LEN)
        rc = GUTS_EIO;
    else if (guts_id_cmp(&got_id, id) != 0)
        rc = store_corrupt(id, "content does not hash to its id");
out:
    EVP_MD_CTX_free(sha);
    free(buf);
    free(whole);
    return rc;
}

/* ---- Staging --------------------------------------------------------------- */

static int stage_get(guts_repo *r, MDB_txn *txn, const guts_id *id, stage_row *s)
{
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    int rc = mdb_get(txn, r->se->stage, &k, &v);
    if (rc) return rc;
    const uint8_t *p = v.mv_data;
    if (v.mv_size != STAGE_ROW_LEN) return store_corrupt(id, "malformed stage row");
    s->type = p[0];
    s->size = be64_get(p + 1);
    s->have = be64_get(p + 9);
    s->stored = be64_get(p + 17);
    s->touched = be64_get(p + 25);
    if (!guts_otype_name(s->type) || s->size > GUTS_OBJ_MAX_DEFAULT || s->have > s->size)
        return store_corrupt(id, "malformed stage row");
    return GUTS_OK;
}

static int stage_put(guts_repo *r, MDB_txn *txn, const guts_id *id, const stage_row *s)
{
    uint8_t b[STAGE_ROW_LEN];
    b[0] = (uint8_t)s->type;
    be64_put(b + 1, s->size);
    be64_put(b + 9, s->have);
    be64_put(b + 17, s->stored);
    be64_put(b + 25, s->touched);
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v = {sizeof b, b};
    return mdb_put(txn, r->se->stage, &k, &v, 0);
}

/* Delete id's stage row and, unless keep_pieces (they belong to a stored
 * large object), every piece keyed by id. */
int pieces_del(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t *bytes)
{
    MDB_cursor *cur;
    int rc;
    if ((rc = mdb_cursor_open(txn, r->se->pieces, &cur))) return rc;
    for (;;) {
        uint8_t pk[PIECE_KEY_LEN];
        piece_key(pk, id, 0);
        MDB_val key = {sizeof pk, pk}, v;
        rc = mdb_cursor_get(cur, &key, &v, MDB_SET_RANGE);
        if (rc || key.mv_size != PIECE_KEY_LEN || memcmp(key.mv_data, id->b, GUTS_ID_LEN) != 0)
            break;
        if (bytes) *bytes += v.mv_size;
        if ((rc = mdb_cursor_del(cur, 0))) break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int stage_del(guts_repo *r, MDB_txn *txn, const guts_id *id, int keep_pieces)
{
    MDB_val k = {GUTS_ID_LEN, (void *)id->b};
    int rc = mdb_del(txn, r->se->stage, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return rc;
    return keep_pieces ? GUTS_OK : pieces_del(r, txn, id, NULL);
}

int stage_totals(guts_repo *r, MDB_txn *txn, uint64_t *n, uint64_t *bytes)
{
    *n = *bytes = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, r->se->stage, &cur);
    if (rc) return rc;
    MDB_val k, v;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        (*n)++;
        if (v.mv_size == STAGE_ROW_LEN) *bytes += be64_get((const uint8_t *)v.mv_data + 9);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Make room for one more staged object: drop the least recently written
 * while GUTS_STAGE_MAX are staged. */
static int stage_evict(guts_repo *r, MDB_txn *txn)
{
    for (;;) {
        MDB_stat st;
        int rc = mdb_stat(txn, r->se->stage, &st);
        if (rc || st.ms_entries < GUTS_STAGE_MAX) return rc;
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(txn, r->se->stage, &cur))) return rc;
        MDB_val k, v;
        guts_id oldest = {{0}};
        uint64_t best = UINT64_MAX;
        while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
            uint64_t t = v.mv_size == STAGE_ROW_LEN ? be64_get((const uint8_t *)v.mv_data + 25) : 0;
            if (k.mv_size == GUTS_ID_LEN && t < best) {
                best = t;
                memcpy(oldest.b, k.mv_data, GUTS_ID_LEN);
            }
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND) return rc;
        if (best == UINT64_MAX) return store_corrupt(&oldest, "malformed stage");
        if ((rc = stage_del(r, txn, &oldest, 0))) return rc;
    }
}

typedef struct swrite {
    const guts_id *id;
    int type;
    uint64_t size, off;
    const uint8_t *data;
    size_t len;
    EVP_MD_CTX *sha; /* out: the hash state after this write */
    int stored, present, bad;
} swrite;

/* Rehash the staged prefix [0, have) of id into sha (after a restart). */
static int rehash_staged(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t have,
                         EVP_MD_CTX *sha)
{
    uint8_t *buf = malloc(GUTS_PIECE_BYTES);
    if (!buf) return GUTS_ENOMEM;
    int rc = GUTS_OK;
    for (uint64_t i = 0; rc == GUTS_OK && i * GUTS_PIECE_BYTES < have; i++) {
        size_t n = piece_len(have, i);
        rc = piece_read(r, txn, id, i, n, buf);
        if (rc == GUTS_OK && EVP_DigestUpdate(sha, buf, n) != 1) rc = GUTS_EIO;
    }
    free(buf);
    return rc;
}

/* Write data at pos into pieces; the first piece may be a partial one
 * already staged (read back and completed). */
static int pieces_append(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t pos,
                         const uint8_t *data, size_t len, int64_t *delta)
{
    int rc = GUTS_OK;
    if (pos % GUTS_PIECE_BYTES && len) {
        uint64_t idx = pos / GUTS_PIECE_BYTES;
        size_t have = (size_t)(pos % GUTS_PIECE_BYTES), take = GUTS_PIECE_BYTES - have;
        if (take > len) take = len;
        uint8_t *buf = malloc(GUTS_PIECE_BYTES);
        if (!buf) return GUTS_ENOMEM;
        rc = piece_read(r, txn, id, idx, have, buf);
        if (rc == GUTS_OK) {
            memcpy(buf + have, data, take);
            rc = piece_write(r, txn, id, idx, buf, have + take, delta);
        }
        free(buf);
        pos += take;
        data += take;
        len -= take;
    }
    while (rc == GUTS_OK && len) {
        size_t take = len < GUTS_PIECE_BYTES ? len : GUTS_PIECE_BYTES;
        rc = piece_write(r, txn, id, pos / GUTS_PIECE_BYTES, data, take, delta);
        pos += take;
        data += take;
        len -= take;
    }
    return rc;
}

/* Completion: the stage row becomes the object row, with log and counters. */
static int stage_finish(guts_repo *r, MDB_txn *txn, const guts_id *id, const stage_row *s)
{
    store_set set;
    int rc;
    if ((rc = store_set_load(r, txn, &set))) return rc;
    uint8_t row[REC_PIECES_LEN];
    row[0] = (uint8_t)s->type;
    row[1] = ENC_PIECES;
    be64_put(row + 2, s->size);
    for (int i = 0; i < 4; i++)
        row[REC_HDR + i] = (uint8_t)((uint32_t)GUTS_PIECE_BYTES >> (24 - 8 * i));
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v = {sizeof row, row};
    rc = mdb_del(txn, r->se->stage, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) return rc;
    uint8_t schema[4] = {0, 0, 0, STORE_SCHEMA_PIECES};
    MDB_val sck = {6, "schema"}, scv = {4, schema};
    if ((rc = mdb_put(txn, r->se->objects, &k, &v, MDB_NOOVERWRITE)) ||
        (rc = store_set_add(r, txn, &set, id, s->stored + sizeof row)) ||
        (rc = store_set_save(r, txn, &set)) || (rc = mdb_put(txn, r->se->meta, &sck, &scv, 0)))
        return rc;
    return GUTS_OK;
}

static int stage_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    swrite *w = arg;
    w->stored = w->present = w->bad = 0;
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(w->id, hex);
    MDB_val k = {GUTS_ID_LEN, (void *)w->id->b}, v;
    int rc = mdb_get(txn, r->se->objects, &k, &v);
    if (rc == 0) { /* stored meanwhile (another peer, an import) */
        w->present = 1;
        rec_hdr h;
        return stage_del(r, txn, w->id, rec_parse(&v, &h) || h.enc == ENC_PIECES);
    }
    if (rc != MDB_NOTFOUND) return rc;
    stage_row s;
    rc = stage_get(r, txn, w->id, &s);
    if (rc && rc != MDB_NOTFOUND) return rc;
    int have_row = rc == 0;
    if (w->off == 0) {
        if ((rc = stage_del(r, txn, w->id, 0))) return rc;
        if ((rc = stage_evict(r, txn))) return rc;
        s = (stage_row){.type = w->type, .size = w->size};
        sha_hdr hdr;
        if (obj_header(w->type, w->size, &hdr) ||
            EVP_DigestInit_ex(w->sha, EVP_sha1(), NULL) != 1 ||
            EVP_DigestUpdate(w->sha, hdr.b, hdr.len) != 1)
            return GUTS_EIO;
    } else {
        if (!have_row || s.have != w->off || s.type != w->type || s.size != w->size) {
            guts_errmsg_set("object %s: %llu bytes staged, a write at %llu cannot continue them", hex,
                         have_row ? (unsigned long long)s.have : 0ull, (unsigned long long)w->off);
            return GUTS_EINVAL;
        }
        if (r->stage_sha && r->stage_have == s.have && guts_id_cmp(&r->stage_id, w->id) == 0) {
            if (EVP_MD_CTX_copy_ex(w->sha, r->stage_sha) != 1) return GUTS_ENOMEM;
        } else {
            sha_hdr hdr;
            if (obj_header(s.type, s.size, &hdr) ||
                EVP_DigestInit_ex(w->sha, EVP_sha1(), NULL) != 1 ||
                EVP_DigestUpdate(w->sha, hdr.b, hdr.len) != 1)
                return GUTS_EIO;
            if ((rc = rehash_staged(r, txn, w->id, s.have, w->sha))) return rc;
        }
    }
    int64_t delta = 0;
    if ((rc = pieces_append(r, txn, w->id, w->off, w->data, w->len, &delta))) return rc;
    if (w->len && EVP_DigestUpdate(w->sha, w->data, w->len) != 1) return GUTS_EIO;
    s.have = w->off + w->len;
    s.stored = (uint64_t)((int64_t)s.stored + delta);
    s.touched = mdb_txn_id(txn);
    if (s.have < s.size) return stage_put(r, txn, w->id, &s);
    EVP_MD_CTX *fin = EVP_MD_CTX_new();
    guts_id got;
    unsigned hl = 0;
    int ok = fin && EVP_MD_CTX_copy_ex(fin, w->sha) == 1 &&
             EVP_DigestFinal_ex(fin, got.b, &hl) == 1 && hl == GUTS_ID_LEN;
    EVP_MD_CTX_free(fin);
    if (!ok) return GUTS_EIO;
    if (guts_id_cmp(&got, w->id) != 0) {
        w->bad = 1;
        guts_errmsg_set("object %s: content does not hash to its id", hex);
        return GUTS_EHASH;
    }
    if ((rc = stage_finish(r, txn, w->id, &s))) return rc;
    w->stored = 1;
    return GUTS_OK;
}

static int drop_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    const guts_id *id = arg;
    stage_row s;
    int rc = stage_get(r, txn, id, &s);
    if (rc == MDB_NOTFOUND) return GUTS_OK; /* pieces without a row: an object's */
    return rc ? rc : stage_del(r, txn, id, 0);
}

int guts_repo_stage_drop(guts_repo *r, const guts_id *id)
{
    if (!r || !id) return GUTS_EINVAL;
    if (r->stage_sha && guts_id_cmp(&r->stage_id, id) == 0) r->stage_have = UINT64_MAX;
    return store_write(r, 0, drop_fn, (void *)id);
}

int guts_repo_stage_write(guts_repo *r, const guts_id *id, int type, uint64_t size, uint64_t off,
                          const void *data, size_t len, int *stored)
{
    if (stored) *stored = 0;
    if (!r || !id || (!data && len) || !guts_otype_name(type)) return GUTS_EINVAL;
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    if (size > GUTS_OBJ_MAX_DEFAULT || off > size || len > size - off) {
        guts_errmsg_set("object %s: %zu bytes at %llu do not fit a %llu-byte object (limit %llu)", hex,
                     len, (unsigned long long)off, (unsigned long long)size,
                     (unsigned long long)GUTS_OBJ_MAX_DEFAULT);
        return GUTS_ETOOBIG;
    }
    swrite w = {.id = id, .type = type, .size = size, .off = off, .data = data, .len = len};
    if (!(w.sha = EVP_MD_CTX_new())) return GUTS_ENOMEM;
    /* Pieces of len bytes plus the B-tree pages they touch. */
    int rc = store_write(r, 2 * len + ((size_t)1 << 20), stage_fn, &w);
    if (rc == GUTS_OK && !w.stored && !w.present) { /* adopt the committed hash state */
        EVP_MD_CTX_free(r->stage_sha);
        r->stage_sha = w.sha;
        r->stage_id = *id;
        r->stage_have = off + len;
        w.sha = NULL;
    } else if (guts_id_cmp(&r->stage_id, id) == 0) {
        r->stage_have = UINT64_MAX;
    }
    EVP_MD_CTX_free(w.sha);
    if (rc == GUTS_EHASH && w.bad) {
        /* Nothing unverified becomes an object; the staged bytes are
         * worthless too (which of them is wrong cannot be known). */
        const char *msg = guts_store_errmsg();
        char keep[256];
        snprintf(keep, sizeof keep, "%s", msg);
        guts_repo_stage_drop(r, id);
        guts_errmsg_set("%s", keep);
    }
    if (rc == GUTS_OK && stored) *stored = w.stored;
    return rc;
}

int guts_repo_stage_list(guts_repo *r, guts_stage *out, size_t max, size_t *n)
{
    if (!r || !n || (!out && max)) return GUTS_EINVAL;
    *n = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = store_read_cursor(r, r->se->stage, &txn, &cur);
    if (rc) return rc;
    uint64_t touched[GUTS_STAGE_MAX];
    MDB_val k, v;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        guts_id id;
        stage_row s;
        if (k.mv_size != GUTS_ID_LEN) continue;
        memcpy(id.b, k.mv_data, GUTS_ID_LEN);
        if (stage_get(r, txn, &id, &s)) continue; /* malformed: never resumed */
        /* insertion into the first min(max, GUTS_STAGE_MAX), oldest first */
        size_t lim = max < GUTS_STAGE_MAX ? max : GUTS_STAGE_MAX, i = *n;
        if (i == lim && (i == 0 || s.touched >= touched[i - 1])) continue;
        if (i == lim) i--;
        while (i > 0 && touched[i - 1] > s.touched) {
            out[i] = out[i - 1];
            touched[i] = touched[i - 1];
            i--;
        }
        out[i] = (guts_stage){.id = id, .type = s.type, .size = s.size, .have = s.have};
        touched[i] = s.touched;
        if (*n < lim) (*n)++;
    }
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return rc == MDB_NOTFOUND ? GUTS_OK : store_mdb_err(rc, "list staging");
}
