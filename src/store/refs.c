/* refs.c - ref records: live refs, Lamport clocks and tombstones.
 *
 * Two databases keyed by the full ref name (no NUL): "refs" holds what git
 * would see (20-byte id, or "ref: <name>" for a symbolic HEAD) and
 * "refclock" holds clock(8, BE) writer(16) for every record ever written,
 * deletions included, so a replicated deletion cannot be undone by an older
 * update arriving late. The store applies records as given; choosing the
 * winner (highest clock, then writer) is the protocol's job.
 *
 * The refs digest is a sum mod 2^128 of one XXH3-128 term per record, kept
 * in meta and updated by subtracting the old record's term and adding the new
 * one in the same transaction: two nodes compare ref state in 16 bytes.
 *
 * Import marks (below) are this env's own memory of what each git
 * directory's last import left, written in the transaction of the import's
 * ref records; they are no ref state and never leave the env.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"

#define SYMREF_PREFIX "ref: "
#define SYMREF_PREFIX_LEN 5
#define REFCLOCK_LEN (8 + GUTS_NODE_ID_LEN)

/* Fill out from the two databases; name must already be checked. Returns
 * GUTS_ENOTFOUND when no record exists, or a raw LMDB code. */
static int ref_load(guts_repo *r, MDB_txn *txn, const char *name, size_t nlen, guts_ref *out)
{
    MDB_val k = {nlen, (void *)name}, v;
    int rc = mdb_get(txn, r->se->refclock, &k, &v);
    if (rc == MDB_NOTFOUND) return GUTS_ENOTFOUND;
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    memcpy(out->name, name, nlen);
    if (v.mv_size != REFCLOCK_LEN) {
        guts_errmsg_set("ref %s: clock record of %zu bytes", out->name, v.mv_size);
        return GUTS_ECORRUPT;
    }
    out->clock = be64_get(v.mv_data);
    memcpy(out->writer.b, (uint8_t *)v.mv_data + 8, GUTS_NODE_ID_LEN);
    rc = mdb_get(txn, r->se->refs, &k, &v);
    if (rc == MDB_NOTFOUND) return GUTS_OK; /* tombstone */
    if (rc) return rc;
    const char *p = v.mv_data;
    /* "ref: refs/heads/main" is 20 bytes too: a value is symbolic when it
     * reads "ref: refs/<valid name>". An id would have to start with those
     * 10 bytes (2^80 work to craft) and continue as a valid name. */
    if (v.mv_size > SYMREF_PREFIX_LEN + 5 && v.mv_size - SYMREF_PREFIX_LEN <= GUTS_REFNAME_MAX &&
        memcmp(p, SYMREF_PREFIX "refs/", SYMREF_PREFIX_LEN + 5) == 0 &&
        memchr(p, 0, v.mv_size) == NULL) {
        memcpy(out->symref, p + SYMREF_PREFIX_LEN, v.mv_size - SYMREF_PREFIX_LEN);
        if (guts_refname_check(out->symref) == GUTS_OK) return GUTS_OK;
        memset(out->symref, 0, sizeof out->symref);
    }
    if (v.mv_size == GUTS_ID_LEN) {
        memcpy(out->target.b, p, GUTS_ID_LEN);
        if (!guts_id_is_zero(&out->target)) return GUTS_OK;
    }
    guts_errmsg_set("ref %s: malformed value of %zu bytes", out->name, v.mv_size);
    return GUTS_ECORRUPT;
}

static int name_len(const char *name, size_t *len)
{
    if (guts_refname_check(name) != GUTS_OK) {
        guts_errmsg_set("invalid ref name");
        return GUTS_EINVAL;
    }
    *len = strlen(name);
    return GUTS_OK;
}

int guts_repo_ref_get(guts_repo *r, const char *name, guts_ref *out)
{
    if (!r || !out) return GUTS_EINVAL;
    size_t nlen;
    int rc = name_len(name, &nlen);
    if (rc) return rc;
    MDB_txn *txn;
    if ((rc = store_read_begin(r, &txn))) return rc;
    rc = ref_load(r, txn, name, nlen, out);
    store_read_end(r, txn);
    return store_mdb_err(rc, "read ref");
}

int guts_repo_refs(guts_repo *r, int with_tombstones, int (*cb)(const guts_ref *ref, void *ctx),
                   void *ctx)
{
    if (!r || !cb) return GUTS_EINVAL;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = store_read_cursor(r, r->se->refclock, &txn, &cur);
    if (rc) return rc;
    guts_ref ref;
    MDB_val k, v;
    MDB_cursor_op op = MDB_FIRST;
    int out = GUTS_OK;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        char name[GUTS_REFNAME_MAX + 1];
        if (k.mv_size == 0 || k.mv_size > GUTS_REFNAME_MAX) {
            guts_errmsg_set("ref key of %zu bytes", k.mv_size);
            out = GUTS_ECORRUPT;
            break;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (guts_refname_check(name) != GUTS_OK || strlen(name) != k.mv_size) {
            guts_errmsg_set("malformed ref key");
            out = GUTS_ECORRUPT;
            break;
        }
        if ((out = ref_load(r, txn, name, k.mv_size, &ref))) {
            out = store_mdb_err(out, "read ref");
            break;
        }
        if (!with_tombstones && guts_id_is_zero(&ref.target) && !ref.symref[0]) continue;
        if ((out = cb(&ref, ctx)) != 0) break;
    }
    if (out == GUTS_OK && rc && rc != MDB_NOTFOUND) out = store_mdb_err(rc, "iterate refs");
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return out;
}

typedef struct refs_ctx {
    const guts_ref *refs;
    size_t n;
} refs_ctx;

/* The record as stored: a symbolic ref keeps no target. */
static void normalize(const guts_ref *in, guts_ref *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out->name, in->name, strnlen(in->name, GUTS_REFNAME_MAX));
    size_t sl = strnlen(in->symref, GUTS_REFNAME_MAX);
    memcpy(out->symref, in->symref, sl);
    if (!sl) out->target = in->target;
    out->clock = in->clock;
    out->writer = in->writer;
}

static int refs_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    refs_ctx *c = arg;
    store_env *se = r->se;
    guts_fp digest;
    uint64_t clock;
    int rc;
    if ((rc = store_meta_get_fp(r, txn, "refs_digest", &digest)) ||
        (rc = store_meta_get_u64(r, txn, "clock", &clock)))
        return rc;
    guts_ref rec, old;
    for (size_t i = 0; i < c->n; i++) {
        normalize(&c->refs[i], &rec);
        size_t nlen = strlen(rec.name);
        rc = ref_load(r, txn, rec.name, nlen, &old);
        if (rc == GUTS_OK)
            guts_fp_sub(&digest, guts_ref_digest_term(&old));
        else if (rc != GUTS_ENOTFOUND)
            return rc;
        MDB_val k = {nlen, rec.name}, v;
        uint8_t val[SYMREF_PREFIX_LEN + GUTS_REFNAME_MAX];
        if (rec.symref[0]) {
            size_t sl = strlen(rec.symref);
            memcpy(val, SYMREF_PREFIX, SYMREF_PREFIX_LEN);
            memcpy(val + SYMREF_PREFIX_LEN, rec.symref, sl);
            v.mv_size = SYMREF_PREFIX_LEN + sl;
            v.mv_data = val;
            rc = mdb_put(txn, se->refs, &k, &v, 0);
        } else if (!guts_id_is_zero(&rec.target)) {
            v.mv_size = GUTS_ID_LEN;
            v.mv_data = rec.target.b;
            rc = mdb_put(txn, se->refs, &k, &v, 0);
        } else {
            rc = mdb_del(txn, se->refs, &k, NULL);
            if (rc == MDB_NOTFOUND) rc = 0;
        }
        if (rc) return rc;
        uint8_t cl[REFCLOCK_LEN];
        be64_put(cl, rec.clock);
        memcpy(cl + 8, rec.writer.b, GUTS_NODE_ID_LEN);
        v.mv_size = REFCLOCK_LEN;
        v.mv_data = cl;
        if ((rc = mdb_put(txn, se->refclock, &k, &v, 0))) return rc;
        guts_fp_add(&digest, guts_ref_digest_term(&rec));
        if (rec.clock > clock) clock = rec.clock;
    }
    if ((rc = store_meta_put_fp(r, txn, "refs_digest", digest)) ||
        (rc = store_meta_put_u64(r, txn, "clock", clock)))
        return rc;
    return GUTS_OK;
}

/* Reject what no record may hold; the structs are fixed arrays, so the NUL
 * must be inside them. */
static int refs_check(const guts_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const guts_ref *f = &refs[i];
        if (strnlen(f->name, sizeof f->name) > GUTS_REFNAME_MAX ||
            strnlen(f->symref, sizeof f->symref) > GUTS_REFNAME_MAX ||
            guts_refname_check(f->name) != GUTS_OK) {
            guts_errmsg_set("invalid ref name");
            return GUTS_EINVAL;
        }
        if (f->symref[0] && (strcmp(f->name, "HEAD") != 0 || strncmp(f->symref, "refs/", 5) != 0 ||
                             guts_refname_check(f->symref) != GUTS_OK)) {
            guts_errmsg_set("ref %s: only HEAD may be symbolic, to a refs/ name", f->name);
            return GUTS_EINVAL;
        }
    }
    return GUTS_OK;
}

int guts_repo_refs_put(guts_repo *r, const guts_ref *refs, size_t n)
{
    if (!r || (!refs && n)) return GUTS_EINVAL;
    int rc = refs_check(refs, n);
    if (rc || n == 0) return rc;
    refs_ctx c = {refs, n};
    return store_write(r, 4096 * n, refs_fn, &c);
}

/* ---- Import marks ----------------------------------------------------------
 *
 * "imports" is keyed source(16) then XXH3-64 of the ref name (8, BE): a
 * fixed 24 bytes whatever the name's length (LMDB keys stop at 511 bytes).
 * A mark's value is clock(8, BE) writer(16) target(20) name; the name in
 * the value tells a hash collision (a mark of another name: treated as no
 * mark, the cautious reading). The key source(16) alone holds the source's
 * path, for people reading the env.
 */
#define MARK_KEY_LEN (GUTS_IMPORT_SRC_LEN + 8)
#define MARK_HDR (8 + GUTS_NODE_ID_LEN + GUTS_ID_LEN)
#define MARK_PATH_MAX 4096

static void mark_key(uint8_t key[MARK_KEY_LEN], const uint8_t src[GUTS_IMPORT_SRC_LEN],
                     const char *name)
{
    memcpy(key, src, GUTS_IMPORT_SRC_LEN);
    be64_put(key + GUTS_IMPORT_SRC_LEN, XXH3_64bits(name, strlen(name)));
}

int guts_repo_import_marks(guts_repo *r, const uint8_t src[GUTS_IMPORT_SRC_LEN],
                           int (*cb)(const guts_import_mark *m, void *ctx), void *ctx)
{
    if (!r || !src || !cb) return GUTS_EINVAL;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = store_read_cursor(r, r->se->imports, &txn, &cur);
    if (rc) return rc;
    guts_import_mark *m = malloc(sizeof *m);
    if (!m) {
        mdb_cursor_close(cur);
        store_read_end(r, txn);
        return GUTS_ENOMEM;
    }
    MDB_val k = {GUTS_IMPORT_SRC_LEN, (void *)src}, v;
    int out = GUTS_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < GUTS_IMPORT_SRC_LEN || memcmp(k.mv_data, src, GUTS_IMPORT_SRC_LEN) != 0)
            break;
        if (k.mv_size == GUTS_IMPORT_SRC_LEN) continue; /* the source's path */
        size_t nl = v.mv_size - MARK_HDR;
        if (k.mv_size != MARK_KEY_LEN || v.mv_size <= MARK_HDR || nl > GUTS_REFNAME_MAX) {
            guts_errmsg_set("import mark of %zu bytes under a %zu-byte key", v.mv_size, k.mv_size);
            out = GUTS_ECORRUPT;
            break;
        }
        const uint8_t *p = v.mv_data;
        memset(m, 0, sizeof *m);
        memcpy(m->name, p + MARK_HDR, nl);
        if (strlen(m->name) != nl || guts_refname_check(m->name) != GUTS_OK) {
            guts_errmsg_set("import mark with a malformed ref name");
            out = GUTS_ECORRUPT;
            break;
        }
        m->clock = be64_get(p);
        memcpy(m->writer.b, p + 8, GUTS_NODE_ID_LEN);
        memcpy(m->target.b, p + 8 + GUTS_NODE_ID_LEN, GUTS_ID_LEN);
        if ((out = cb(m, ctx)) != 0) break;
    }
    if (out == GUTS_OK && rc && rc != MDB_NOTFOUND) out = store_mdb_err(rc, "iterate import marks");
    free(m);
    mdb_cursor_close(cur);
    store_read_end(r, txn);
    return out;
}

typedef struct import_ctx {
    refs_ctx refs;
    const uint8_t *src;
    const char *path;
    const guts_import_mark *marks;
    size_t nmarks;
    guts_fp *digest; /* in: the ref state decided on; out: the state written */
} import_ctx;

static int import_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    import_ctx *c = arg;
    guts_fp now;
    int rc = store_meta_get_fp(r, txn, "refs_digest", &now);
    if (rc) return rc;
    if (!guts_fp_eq(now, *c->digest)) {
        guts_errmsg_set("refs changed since they were read");
        return GUTS_ECONFLICT;
    }
    if (c->refs.n && (rc = refs_fn(r, txn, &c->refs))) return rc;
    if ((rc = store_meta_get_fp(r, txn, "refs_digest", &now))) return rc;
    *c->digest = now;
    uint8_t key[MARK_KEY_LEN], val[MARK_HDR + GUTS_REFNAME_MAX];
    MDB_val k = {GUTS_IMPORT_SRC_LEN, key}, v = {strlen(c->path), (void *)c->path};
    memcpy(key, c->src, GUTS_IMPORT_SRC_LEN);
    if ((rc = mdb_put(txn, r->se->imports, &k, &v, 0))) return rc;
    for (size_t i = 0; i < c->nmarks; i++) {
        const guts_import_mark *m = &c->marks[i];
        mark_key(key, c->src, m->name);
        k.mv_size = MARK_KEY_LEN;
        if (m->forget) {
            rc = mdb_del(txn, r->se->imports, &k, NULL);
            if (rc == MDB_NOTFOUND) rc = 0;
        } else {
            size_t nl = strlen(m->name);
            be64_put(val, m->clock);
            memcpy(val + 8, m->writer.b, GUTS_NODE_ID_LEN);
            memcpy(val + 8 + GUTS_NODE_ID_LEN, m->target.b, GUTS_ID_LEN);
            memcpy(val + MARK_HDR, m->name, nl);
            v.mv_size = MARK_HDR + nl;
            v.mv_data = val;
            rc = mdb_put(txn, r->se->imports, &k, &v, 0);
        }
        if (rc) return rc;
    }
    return GUTS_OK;
}

int guts_repo_import_put(guts_repo *r, const uint8_t src[GUTS_IMPORT_SRC_LEN], const char *path,
                         guts_fp *digest, const guts_ref *refs, size_t n,
                         const guts_import_mark *marks, size_t nmarks)
{
    if (!r || !src || !path || !digest || (!refs && n) || (!marks && nmarks)) return GUTS_EINVAL;
    if (strnlen(path, MARK_PATH_MAX + 1) > MARK_PATH_MAX) {
        guts_errmsg_set("import source path over %d bytes", MARK_PATH_MAX);
        return GUTS_EINVAL;
    }
    int rc = refs_check(refs, n);
    for (size_t i = 0; i < nmarks && !rc; i++) {
        if (strnlen(marks[i].name, sizeof marks[i].name) > GUTS_REFNAME_MAX ||
            guts_refname_check(marks[i].name) != GUTS_OK) {
            guts_errmsg_set("invalid ref name in an import mark");
            rc = GUTS_EINVAL;
        }
    }
    if (rc || (n == 0 && nmarks == 0)) return rc;
    /* A replayed transaction (map growth) starts from the caller's digest
     * again: import_fn only sets it once everything is written. */
    guts_fp want = *digest;
    import_ctx c = {{refs, n}, src, path, marks, nmarks, &want};
    rc = store_write(r, 4096 * (n + nmarks) + MARK_PATH_MAX, import_fn, &c);
    if (rc == GUTS_OK) *digest = want;
    return rc;
}
