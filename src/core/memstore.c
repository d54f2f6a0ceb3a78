/* memstore.c - an in-memory store behind the core's store interface.
 *
 * Tests and the simulator run many cores in one process; giving each an
 * LMDB env would make thousands of nodes impossible. This store keeps the
 * same semantics as store.h where the core can observe them: put verifies
 * every id first and stores nothing on a mismatch, the set fingerprint and
 * the refs digest are kept incrementally, tombstones are ref records with a
 * zero target, and "recent" is insertion order, newest first.
 *
 * Objects live in one array per repository kept sorted by id (a batch is
 * sorted and merged in, O(n + b log b)), so range walks for reconciliation
 * are a binary search and a scan. Refs are a small array sorted by name,
 * each record compact (a guts_ref is 2 KiB of fixed arrays: guts-sim keeps
 * one store per node, and 16 of those per repository were a third of a
 * node's memory); it is expanded into a guts_ref when read.
 *
 * Stores made with a pool (guts_memstore_new_pooled) keep object contents
 * there, one copy per id for all of them: contents are immutable and named
 * by their hash, so sharing them is invisible to every caller (guts-sim's
 * nodes all hold the same objects: ~4 KB per node of 45). Such a store owns
 * only the contents it damaged (guts_memstore_damage copies before it
 * flips), listed in `owned`.
 */
#include <stdlib.h>
#include <string.h>

#include "guts/core.h"

typedef struct mobj {
    guts_id id;
    int type;
    size_t len;
    uint8_t *data;
} mobj;

/* A large object being received (memory: the bytes so far). */
typedef struct mstage {
    guts_stage st;
    uint8_t *data;
    uint64_t touched;
} mstage;

/* A ref record as stored: names on the heap, the digest term kept. */
typedef struct mref {
    char *name;
    char *symref; /* NULL unless symbolic */
    guts_id target;
    uint64_t clock;
    guts_node_id writer;
    guts_fp term; /* guts_ref_digest_term() of the record */
} mref;

typedef struct mrepo {
    char key[GUTS_KEY_MAX + 1];
    mstage stage[GUTS_STAGE_MAX];
    size_t nstage;
    mobj *objs; /* sorted by id */
    size_t nobjs, capobjs;
    guts_id *log; /* insertion order */
    size_t nlog, caplog;
    mref *refs; /* sorted by name; tombstones included */
    size_t nrefs, caprefs;
    guts_fp fp, rdigest;
    uint64_t txnid, clock, bytes, tombstones;
} mrepo;

struct guts_memstore {
    mrepo **repos; /* sorted by key */
    size_t n, cap;
    guts_mempool *pool; /* NULL: every object's contents owned */
    uint8_t **owned;    /* pooled store: the contents it owns (damaged copies) */
    size_t nowned;
};

/* One object's contents in a pool. */
typedef struct pent {
    guts_id id;
    size_t len;
    uint8_t data[];
} pent;

/* Open addressing by id, never shrinking: entries live as long as the
 * pool (a simulation creates few distinct objects, and every node has
 * them). */
struct guts_mempool {
    pent **slots;
    size_t n, cap;
};

int guts_mempool_new(guts_mempool **out)
{
    *out = calloc(1, sizeof(guts_mempool));
    return *out ? GUTS_OK : GUTS_ENOMEM;
}

void guts_mempool_free(guts_mempool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->cap; i++)
        free(p->slots[i]);
    free(p->slots);
    free(p);
}

static size_t pool_home(const guts_id *id, size_t cap)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof(h)); /* hash bytes are uniform already */
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* The pool's copy of (id, data, len), added if new; NULL without memory. */
static uint8_t *pool_get(guts_mempool *p, const guts_id *id, const void *data, size_t len)
{
    if (2 * (p->n + 1) > p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 1024;
        pent **ns = calloc(nc, sizeof(pent *));
        if (!ns)
            return NULL;
        for (size_t i = 0; i < p->cap; i++) {
            if (!p->slots[i])
                continue;
            size_t j = pool_home(&p->slots[i]->id, nc);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = p->slots[i];
        }
        free(p->slots);
        p->slots = ns;
        p->cap = nc;
    }
    size_t j = pool_home(id, p->cap);
    for (; p->slots[j]; j = (j + 1) & (p->cap - 1))
        if (guts_id_cmp(&p->slots[j]->id, id) == 0)
            return p->slots[j]->data;
    pent *e = malloc(sizeof(pent) + (len ? len : 1));
    if (!e)
        return NULL;
    e->id = *id;
    e->len = len;
    memcpy(e->data, data, len);
    p->slots[j] = e;
    p->n++;
    return e->data;
}

/* Free contents d of a store's object: only what the store owns. */
static void obj_data_free(guts_memstore *m, uint8_t *d)
{
    if (!m->pool) {
        free(d);
        return;
    }
    for (size_t i = 0; i < m->nowned; i++) {
        if (m->owned[i] == d) {
            free(d);
            m->owned[i] = m->owned[--m->nowned];
            return;
        }
    }
}

int guts_memstore_new(guts_memstore **out)
{
    *out = calloc(1, sizeof(guts_memstore));
    return *out ? GUTS_OK : GUTS_ENOMEM;
}

int guts_memstore_new_pooled(guts_mempool *pool, guts_memstore **out)
{
    int rc = guts_memstore_new(out);
    if (rc == GUTS_OK)
        (*out)->pool = pool;
    return rc;
}

void guts_memstore_free(guts_memstore *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        mrepo *r = m->repos[i];
        for (size_t j = 0; j < r->nobjs; j++)
            obj_data_free(m, r->objs[j].data);
        free(r->objs);
        for (size_t j = 0; j < r->nstage; j++)
            free(r->stage[j].data);
        free(r->log);
        for (size_t j = 0; j < r->nrefs; j++) {
            free(r->refs[j].name);
            free(r->refs[j].symref);
        }
        free(r->refs);
        free(r);
    }
    free(m->repos);
    free(m->owned);
    free(m);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return GUTS_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return GUTS_ENOMEM;
    *arr = p;
    *cap = nc;
    return GUTS_OK;
}

/* Index of key, or of where it would go (with *found 0). */
static size_t repo_pos(const guts_memstore *m, const char *key, int *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->repos[mid]->key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static mrepo *repo_find(const guts_memstore *m, const char *key)
{
    int found;
    size_t i = repo_pos(m, key, &found);
    return found ? m->repos[i] : NULL;
}

/* First object index with id >= *id. */
static size_t obj_lower(const mrepo *r, const guts_id *id)
{
    size_t lo = 0, hi = r->nobjs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (guts_id_cmp(&r->objs[mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const mobj *obj_find(const mrepo *r, const guts_id *id)
{
    size_t i = obj_lower(r, id);
    if (i < r->nobjs && guts_id_cmp(&r->objs[i].id, id) == 0)
        return &r->objs[i];
    return NULL;
}

static int m_repos(void *ctx, int (*cb)(const char *key, void *arg), void *arg)
{
    guts_memstore *m = ctx;
    for (size_t i = 0; i < m->n; i++) {
        int rc = cb(m->repos[i]->key, arg);
        if (rc)
            return rc;
    }
    return GUTS_OK;
}

static int m_create(void *ctx, const char *key)
{
    guts_memstore *m = ctx;
    if (guts_repo_key_check(key) != GUTS_OK)
        return GUTS_EINVAL;
    int found;
    size_t pos = repo_pos(m, key, &found);
    if (found)
        return GUTS_OK;
    if (grow((void **)&m->repos, &m->cap, m->n + 1, sizeof(mrepo *)))
        return GUTS_ENOMEM;
    mrepo *r = calloc(1, sizeof(mrepo));
    if (!r)
        return GUTS_ENOMEM;
    strcpy(r->key, key);
    memmove(m->repos + pos + 1, m->repos + pos, (m->n - pos) * sizeof(mrepo *));
    m->repos[pos] = r;
    m->n++;
    return GUTS_OK;
}

static int m_info(void *ctx, const char *key, guts_repo_info *out)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->objects = r->nobjs;
    out->refs = r->nrefs - r->tombstones;
    out->tombstones = r->tombstones;
    out->fp = r->fp;
    out->refs_digest = r->rdigest;
    out->clock = r->clock;
    out->txnid = r->txnid;
    out->stored_bytes = r->bytes;
    return GUTS_OK;
}

static int m_ids(void *ctx, const char *key, const guts_id *from, const guts_id *to,
                 int (*cb)(const guts_id *id, void *arg), void *arg)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    size_t i = from ? obj_lower(r, from) : 0;
    for (; i < r->nobjs; i++) {
        if (to && guts_id_cmp(&r->objs[i].id, to) >= 0)
            break;
        int rc = cb(&r->objs[i].id, arg);
        if (rc)
            return rc;
    }
    return GUTS_OK;
}

static int m_has(void *ctx, const char *key, const guts_id *id)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    return obj_find(r, id) != NULL;
}

static int m_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                 size_t *len)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    const mobj *o = obj_find(r, id);
    if (!o)
        return GUTS_ENOTFOUND;
    *data = malloc(o->len ? o->len : 1);
    if (!*data)
        return GUTS_ENOMEM;
    memcpy(*data, o->data, o->len);
    *type = o->type;
    *len = o->len;
    return GUTS_OK;
}

static int cmp_mobj(const void *a, const void *b)
{
    return guts_id_cmp(&((const mobj *)a)->id, &((const mobj *)b)->id);
}

static int m_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad)
{
    mrepo *r = repo_find(ctx, key);
    if (added)
        *added = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    for (size_t i = 0; i < n; i++) {
        guts_id h;
        int rc = guts_obj_hash(objs[i].type, objs[i].data, objs[i].len, &h);
        if (rc != GUTS_OK || guts_id_cmp(&h, &objs[i].id) != 0) {
            if (bad)
                *bad = i;
            return rc != GUTS_OK ? rc : GUTS_EHASH;
        }
    }
    mobj *fresh = calloc(n ? n : 1, sizeof(mobj));
    if (!fresh)
        return GUTS_ENOMEM;
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (obj_find(r, &objs[i].id))
            continue;
        fresh[nf].id = objs[i].id;
        fresh[nf].type = objs[i].type;
        fresh[nf].len = objs[i].len;
        nf++;
    }
    qsort(fresh, nf, sizeof(mobj), cmp_mobj);
    size_t w = 0; /* drop duplicates inside the batch */
    for (size_t i = 0; i < nf; i++)
        if (w == 0 || guts_id_cmp(&fresh[w - 1].id, &fresh[i].id) != 0)
            fresh[w++] = fresh[i];
    nf = w;
    int rc = grow((void **)&r->objs, &r->capobjs, r->nobjs + nf, sizeof(mobj));
    if (!rc)
        rc = grow((void **)&r->log, &r->caplog, r->nlog + nf, sizeof(guts_id));
    size_t nlog = r->nlog;
    /* copy contents and log in batch order, like the LMDB store */
    for (size_t j = 0; !rc && j < n; j++) {
        mobj probe = {.id = objs[j].id};
        mobj *f = bsearch(&probe, fresh, nf, sizeof(mobj), cmp_mobj);
        if (!f || f->data)
            continue;
        guts_memstore *m = ctx;
        if (m->pool) {
            f->data = pool_get(m->pool, &f->id, objs[j].data, objs[j].len);
        } else {
            f->data = malloc(objs[j].len ? objs[j].len : 1);
            if (f->data)
                memcpy(f->data, objs[j].data, objs[j].len);
        }
        if (!f->data) {
            rc = GUTS_ENOMEM;
            break;
        }
        r->log[nlog++] = f->id;
    }
    if (rc) {
        for (size_t i = 0; i < nf; i++)
            obj_data_free(ctx, fresh[i].data);
        free(fresh);
        return rc;
    }
    r->nlog = nlog;
    for (size_t i = 0; i < nf; i++) {
        guts_fp_add(&r->fp, guts_fp_of_id(&fresh[i].id));
        r->bytes += fresh[i].len;
    }
    /* merge from the back */
    size_t a = r->nobjs, b = nf, d = r->nobjs + nf;
    while (b > 0) {
        if (a > 0 && guts_id_cmp(&r->objs[a - 1].id, &fresh[b - 1].id) > 0)
            r->objs[--d] = r->objs[--a];
        else
            r->objs[--d] = fresh[--b];
    }
    r->nobjs += nf;
    free(fresh);
    if (nf)
        r->txnid++;
    if (added)
        *added = nf;
    return GUTS_OK;
}

static int m_recent(void *ctx, const char *key, size_t max, guts_id *out, size_t *n)
{
    const mrepo *r = repo_find(ctx, key);
    *n = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    for (size_t i = 0; *n < max && i < r->nlog; i++)
        if (obj_find(r, &r->log[r->nlog - 1 - i])) /* not dropped */
            out[(*n)++] = r->log[r->nlog - 1 - i];
    return GUTS_OK;
}

static int m_verify(void *ctx, const char *key, const guts_id *id)
{
    const mrepo *r = repo_find(ctx, key);
    const mobj *o = r ? obj_find(r, id) : NULL;
    if (!o) return GUTS_ENOTFOUND;
    guts_id got;
    int rc = guts_obj_hash(o->type, o->data, o->len, &got);
    if (rc == GUTS_OK && guts_id_cmp(&got, id) != 0) rc = GUTS_ECORRUPT;
    return rc;
}

static int m_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    mrepo *r = repo_find(ctx, key);
    *dropped = 0;
    if (!r) return GUTS_ENOTFOUND;
    for (size_t k = 0; k < n; k++) {
        mobj *o = (mobj *)obj_find(r, &ids[k]);
        if (!o) continue;
        size_t i = (size_t)(o - r->objs);
        guts_fp_sub(&r->fp, guts_fp_of_id(&o->id));
        r->bytes = r->bytes > o->len ? r->bytes - o->len : 0;
        obj_data_free(ctx, o->data);
        memmove(r->objs + i, r->objs + i + 1, (r->nobjs - i - 1) * sizeof(mobj));
        r->nobjs--;
        r->txnid++;
        (*dropped)++;
    }
    return GUTS_OK;
}

int guts_memstore_damage(guts_memstore *m, const char *key, const guts_id *id)
{
    const mrepo *r = repo_find(m, key);
    mobj *o = r ? (mobj *)obj_find(r, id) : NULL;
    if (!o) return GUTS_ENOTFOUND;
    if (o->len == 0) return GUTS_EINVAL;
    if (m->pool) { /* the pool's copy is every store's: damage a copy of our own */
        int own = 0;
        for (size_t i = 0; i < m->nowned && !own; i++)
            own = m->owned[i] == o->data;
        if (!own) {
            uint8_t **no = realloc(m->owned, (m->nowned + 1) * sizeof(*no));
            uint8_t *d = malloc(o->len);
            if (!no || !d) {
                if (no) m->owned = no;
                free(d);
                return GUTS_ENOMEM;
            }
            m->owned = no;
            memcpy(d, o->data, o->len);
            o->data = d;
            m->owned[m->nowned++] = d;
        }
    }
    o->data[0] ^= 0xff;
    return GUTS_OK;
}

static size_t ref_pos(const mrepo *r, const char *name, int *found)
{
    size_t lo = 0, hi = r->nrefs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(r->refs[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static int is_tombstone(const mref *ref)
{
    return ref->symref == NULL && guts_id_is_zero(&ref->target);
}

static void ref_expand(const mref *m, guts_ref *out)
{
    memset(out, 0, sizeof(*out));
    strcpy(out->name, m->name);
    if (m->symref) strcpy(out->symref, m->symref);
    out->target = m->target;
    out->clock = m->clock;
    out->writer = m->writer;
}

static int m_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    guts_ref ref;
    for (size_t i = 0; i < r->nrefs; i++) {
        if (!with_tombstones && is_tombstone(&r->refs[i]))
            continue;
        ref_expand(&r->refs[i], &ref);
        int rc = cb(&ref, arg);
        if (rc)
            return rc;
    }
    return GUTS_OK;
}

static int m_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    const mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    int found;
    size_t i = ref_pos(r, name, &found);
    if (!found)
        return GUTS_ENOTFOUND;
    ref_expand(&r->refs[i], out);
    return GUTS_OK;
}

static int m_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    mrepo *r = repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    for (size_t i = 0; i < n; i++)
        if (guts_refname_check(refs[i].name) != GUTS_OK)
            return GUTS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        /* the new record, built first: nothing changes when memory runs out */
        mref nr;
        memset(&nr, 0, sizeof(nr));
        guts_ref full = refs[i];
        if (full.symref[0]) /* as the LMDB store: symbolic refs have no target */
            memset(&full.target, 0, sizeof(guts_id));
        nr.name = strdup(full.name);
        nr.symref = full.symref[0] ? strdup(full.symref) : NULL;
        if (!nr.name || (full.symref[0] && !nr.symref)) {
            free(nr.name);
            free(nr.symref);
            return GUTS_ENOMEM;
        }
        nr.target = full.target;
        nr.clock = full.clock;
        nr.writer = full.writer;
        nr.term = guts_ref_digest_term(&full);
        int found;
        size_t pos = ref_pos(r, full.name, &found);
        if (found) {
            guts_fp_sub(&r->rdigest, r->refs[pos].term);
            if (is_tombstone(&r->refs[pos]))
                r->tombstones--;
            free(r->refs[pos].name);
            free(r->refs[pos].symref);
        } else {
            if (grow((void **)&r->refs, &r->caprefs, r->nrefs + 1, sizeof(mref))) {
                free(nr.name);
                free(nr.symref);
                return GUTS_ENOMEM;
            }
            memmove(r->refs + pos + 1, r->refs + pos, (r->nrefs - pos) * sizeof(mref));
            r->nrefs++;
        }
        r->refs[pos] = nr;
        guts_fp_add(&r->rdigest, nr.term);
        if (is_tombstone(&nr))
            r->tombstones++;
        if (nr.clock > r->clock)
            r->clock = nr.clock;
    }
    if (n)
        r->txnid++;
    return GUTS_OK;
}

/* Records: this store keeps raw content, so it reads every object as a raw
 * record, and decodes what it is given (zstd, or a delta against a base
 * stored here or earlier in the call) into content for m_put. */
static int m_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf)
{
    int type;
    size_t len;
    int rc = m_get(ctx, key, id, &type, buf, &len);
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    out->id = *id;
    out->type = type;
    out->enc = GUTS_REC_RAW;
    out->size = len;
    out->data = *buf;
    out->len = len;
    return GUTS_OK;
}

static int m_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                     size_t *added, size_t *bad)
{
    mrepo *r = repo_find(ctx, key);
    if (added)
        *added = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    guts_obj *objs = calloc(n ? n : 1, sizeof(guts_obj));
    void **bufs = calloc(n ? n : 1, sizeof(void *));
    size_t *from = calloc(n ? n : 1, sizeof(size_t)); /* record index of objs[k] */
    int rc = objs && bufs && from ? GUTS_OK : GUTS_ENOMEM;
    size_t no = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const guts_rec *rec = &recs[i];
        if (nobase)
            nobase[i] = 0;
        const void *base = NULL;
        size_t blen = 0;
        if (rec->enc == GUTS_REC_DELTA) {
            const mobj *b = obj_find(r, &rec->base);
            if (b) {
                base = b->data;
                blen = b->len;
            }
            for (size_t k = 0; !base && k < no; k++) {
                if (guts_id_cmp(&objs[k].id, &rec->base) == 0) {
                    base = objs[k].data;
                    blen = objs[k].len;
                }
            }
            if (!base) {
                if (nobase)
                    nobase[i] = 1;
                continue;
            }
        }
        rc = guts_rec_decode(rec, base, blen, &bufs[no]);
        if (rc) {
            if (bad)
                *bad = i;
            break;
        }
        objs[no].id = rec->id;
        objs[no].type = rec->type;
        objs[no].data = bufs[no];
        objs[no].len = (size_t)rec->size;
        from[no] = i;
        no++;
    }
    if (!rc) {
        size_t b = 0;
        rc = m_put(ctx, key, objs, no, added, &b);
        if (rc && bad)
            *bad = from[b];
    }
    for (size_t k = 0; bufs && k < no; k++)
        free(bufs[k]);
    free(objs);
    free(bufs);
    free(from);
    return rc;
}

/* ---- Large objects: the same contract as store.h's staging, in memory ---- */

static int m_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got)
{
    const mrepo *r = repo_find(ctx, key);
    const mobj *o = r ? obj_find(r, id) : NULL;
    *got = 0;
    if (!o)
        return GUTS_ENOTFOUND;
    if (off > o->len)
        return GUTS_EINVAL;
    size_t n = o->len - off < len ? (size_t)(o->len - off) : len;
    if (n)
        memcpy(buf, o->data + off, n);
    *got = n;
    return GUTS_OK;
}

static mstage *stage_find(mrepo *r, const guts_id *id)
{
    for (size_t i = 0; i < r->nstage; i++)
        if (guts_id_cmp(&r->stage[i].st.id, id) == 0)
            return &r->stage[i];
    return NULL;
}

static void stage_remove(mrepo *r, mstage *m)
{
    free(m->data);
    *m = r->stage[--r->nstage];
}

static int m_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    mrepo *r = repo_find(ctx, key);
    mstage *m = r ? stage_find(r, id) : NULL;
    if (m)
        stage_remove(r, m);
    return GUTS_OK;
}

static int m_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored)
{
    mrepo *r = repo_find(ctx, key);
    *stored = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    if (!guts_otype_name(type))
        return GUTS_EINVAL;
    if (size > GUTS_OBJ_MAX_DEFAULT || off > size || len > size - off)
        return GUTS_ETOOBIG;
    mstage *m = stage_find(r, id);
    if (obj_find(r, id)) {
        if (m)
            stage_remove(r, m);
        return GUTS_OK;
    }
    if (off == 0) {
        if (m)
            stage_remove(r, m);
        if (r->nstage == GUTS_STAGE_MAX) { /* drop the least recently written */
            mstage *old = &r->stage[0];
            for (size_t i = 1; i < r->nstage; i++)
                if (r->stage[i].touched < old->touched)
                    old = &r->stage[i];
            stage_remove(r, old);
        }
        m = &r->stage[r->nstage++];
        memset(m, 0, sizeof(*m));
        m->st = (guts_stage){.id = *id, .type = type, .size = size};
    } else if (!m || m->st.have != off || m->st.type != type || m->st.size != size) {
        return GUTS_EINVAL;
    }
    uint8_t *p = realloc(m->data, (size_t)(off + len) ? (size_t)(off + len) : 1);
    if (!p)
        return GUTS_ENOMEM;
    m->data = p;
    if (len)
        memcpy(p + off, data, len);
    m->st.have = off + len;
    m->touched = ++r->txnid;
    if (m->st.have < size)
        return GUTS_OK;
    guts_obj o = {.id = *id, .type = type, .data = m->data, .len = (size_t)size};
    size_t added = 0;
    int rc = m_put(ctx, key, &o, 1, &added, NULL);
    stage_remove(r, m);
    if (rc == GUTS_OK)
        *stored = added == 1;
    return rc;
}

static int m_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    mrepo *r = repo_find(ctx, key);
    *n = 0;
    if (!r)
        return GUTS_OK;
    uint64_t last = 0;
    while (*n < max) { /* least recently written first */
        const mstage *next = NULL;
        for (size_t i = 0; i < r->nstage; i++)
            if (r->stage[i].touched > last && (!next || r->stage[i].touched < next->touched))
                next = &r->stage[i];
        if (!next)
            break;
        out[(*n)++] = next->st;
        last = next->touched;
    }
    return GUTS_OK;
}

void guts_memstore_iface(guts_memstore *m, guts_core_store *out)
{
    memset(out, 0, sizeof(*out));
    out->ctx = m;
    out->repos = m_repos;
    out->create = m_create;
    out->info = m_info;
    out->ids = m_ids;
    out->has = m_has;
    out->get = m_get;
    out->put = m_put;
    out->recent = m_recent;
    out->refs = m_refs;
    out->ref_get = m_ref_get;
    out->refs_put = m_refs_put;
    out->rec_get = m_rec_get;
    out->rec_put = m_rec_put;
    out->read = m_read;
    out->stage_write = m_stage_write;
    out->stage_list = m_stage_list;
    out->stage_drop = m_stage_drop;
    out->verify = m_verify;
    out->drop = m_drop;
}
