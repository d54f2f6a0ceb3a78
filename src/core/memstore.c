/* memstore.c - an in-memory store behind the core's store interface: its
 * pool, repositories and objects, and the interface table. Refs are
 * memstore_refs.c, records and large objects memstore_recs.c; the shared
 * structures are in memstore_int.h.
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
 * Every store keeps its objects (id, type, length and contents in one
 * allocation) in a pool: its own (guts_memstore_new) or one shared with
 * other stores (guts_memstore_new_pooled), one copy per id for all of them:
 * contents are immutable and named by their hash, so sharing them is
 * invisible to every caller (guts-sim's nodes all hold the same objects:
 * ~4 KB per node of 45). A store's sorted array and insertion log are 8
 * bytes an object each (60 with the ids and lengths inline: 3 KB a
 * simulated node); a pool's entries outlive a drop, so the log never
 * dangles. A store owns only the objects it damaged (guts_memstore_damage
 * copies before it flips), listed in `owned`. The pool takes only objects
 * whose hash a put checked, so a put of an object the pool holds byte for
 * byte skips the hash (guts_mempool_proves: the nodes of a run store the
 * same objects).
 */
#include <stdlib.h>
#include <string.h>

#include "memstore_int.h"

/* Open addressing by id, never shrinking: entries live as long as the
 * pool (a simulation creates few distinct objects, and every node has
 * them). */
struct guts_mempool {
    mobj **slots;
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

static const mobj *pool_find(const guts_mempool *p, const guts_id *id)
{
    if (!p->cap)
        return NULL;
    for (size_t j = pool_home(id, p->cap); p->slots[j]; j = (j + 1) & (p->cap - 1))
        if (guts_id_cmp(&p->slots[j]->id, id) == 0)
            return p->slots[j];
    return NULL;
}

int guts_mempool_proves(const guts_mempool *pool, const guts_id *id, int type, const void *data,
                        size_t len)
{
    const mobj *e = pool ? pool_find(pool, id) : NULL;
    return e && e->type == type && e->len == len && (!len || memcmp(e->data, data, len) == 0);
}

/* A new object (id, type, data, len); NULL without memory. */
static mobj *obj_new(const guts_id *id, int type, const void *data, size_t len)
{
    mobj *e = malloc(sizeof(mobj) + (len ? len : 1));
    if (!e)
        return NULL;
    e->id = *id;
    e->type = type;
    e->len = len;
    memcpy(e->data, data, len);
    return e;
}

/* The pool's copy of (id, type, data, len), added if new; NULL without
 * memory. Only for an object whose hash was checked. */
static mobj *pool_get(guts_mempool *p, const guts_id *id, int type, const void *data, size_t len)
{
    if (2 * (p->n + 1) > p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 1024;
        mobj **ns = calloc(nc, sizeof(mobj *));
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
            return p->slots[j];
    mobj *e = obj_new(id, type, data, len);
    if (!e)
        return NULL;
    p->slots[j] = e;
    p->n++;
    return e;
}

/* Free a store's object d if the store owns it (a damaged copy); the
 * pool's stay. */
static void obj_free(guts_memstore *m, mobj *d)
{
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
    guts_mempool *pool;
    if (guts_mempool_new(&pool) != GUTS_OK)
        return GUTS_ENOMEM;
    if (guts_memstore_new_pooled(pool, out) != GUTS_OK) {
        guts_mempool_free(pool);
        return GUTS_ENOMEM;
    }
    (*out)->own_pool = 1;
    return GUTS_OK;
}

int guts_memstore_new_pooled(guts_mempool *pool, guts_memstore **out)
{
    *out = calloc(1, sizeof(guts_memstore));
    if (!*out)
        return GUTS_ENOMEM;
    (*out)->pool = pool;
    return GUTS_OK;
}

void guts_memstore_free(guts_memstore *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        mrepo *r = m->repos[i];
        for (size_t j = 0; j < r->nobjs; j++)
            obj_free(m, r->objs[j]);
        free(r->objs);
        for (size_t j = 0; j < r->nstage; j++)
            free(r->stage[j].data);
        free(r->stage);
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
    if (m->own_pool)
        guts_mempool_free(m->pool);
    free(m);
}

int memstore_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return GUTS_OK;
    size_t nc = *cap ? *cap : 4;
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
typedef struct repo_key {
    const guts_memstore *m;
    const char *key;
} repo_key;

static int repo_cmp(const void *ctx, size_t i)
{
    const repo_key *k = ctx;
    return strcmp(k->m->repos[i]->key, k->key);
}

static size_t repo_pos(const guts_memstore *m, const char *key, int *found)
{
    repo_key k = {m, key};
    return guts_lower_bound(m->n, repo_cmp, &k, found);
}

mrepo *memstore_repo_find(const guts_memstore *m, const char *key)
{
    int found;
    size_t i = repo_pos(m, key, &found);
    return found ? m->repos[i] : NULL;
}

/* First object index with id >= *id. */
typedef struct obj_key {
    const mrepo *r;
    const guts_id *id;
} obj_key;

static int obj_cmp(const void *ctx, size_t i)
{
    const obj_key *k = ctx;
    return guts_id_cmp(&k->r->objs[i]->id, k->id);
}

static size_t obj_lower(const mrepo *r, const guts_id *id)
{
    obj_key k = {r, id};
    return guts_lower_bound(r->nobjs, obj_cmp, &k, NULL);
}

/* Index of id in r->objs, or SIZE_MAX. */
static size_t obj_index(const mrepo *r, const guts_id *id)
{
    obj_key k = {r, id};
    int found;
    size_t i = guts_lower_bound(r->nobjs, obj_cmp, &k, &found);
    return found ? i : SIZE_MAX;
}

const mobj *memstore_obj_find(const mrepo *r, const guts_id *id)
{
    size_t i = obj_index(r, id);
    return i != SIZE_MAX ? r->objs[i] : NULL;
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
    if (memstore_grow((void **)&m->repos, &m->cap, m->n + 1, sizeof(mrepo *)))
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
    const mrepo *r = memstore_repo_find(ctx, key);
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
    const mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    size_t i = from ? obj_lower(r, from) : 0;
    for (; i < r->nobjs; i++) {
        if (to && guts_id_cmp(&r->objs[i]->id, to) >= 0)
            break;
        int rc = cb(&r->objs[i]->id, arg);
        if (rc)
            return rc;
    }
    return GUTS_OK;
}

static int m_has(void *ctx, const char *key, const guts_id *id)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    return memstore_obj_find(r, id) != NULL;
}

int memstore_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                 size_t *len)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    const mobj *o = memstore_obj_find(r, id);
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

/* An object of a put's batch not in the store yet, and the store's object
 * made of it (NULL until made). */
typedef struct fresh_obj {
    const guts_obj *o;
    mobj *e;
} fresh_obj;

static int cmp_fresh(const void *a, const void *b)
{
    return guts_id_cmp(&((const fresh_obj *)a)->o->id, &((const fresh_obj *)b)->o->id);
}

int memstore_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad)
{
    mrepo *r = memstore_repo_find(ctx, key);
    if (added)
        *added = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    guts_memstore *m = ctx;
    for (size_t i = 0; i < n; i++) {
        if (guts_mempool_proves(m->pool, &objs[i].id, objs[i].type, objs[i].data, objs[i].len))
            continue;
        guts_id h;
        int rc = guts_obj_hash(objs[i].type, objs[i].data, objs[i].len, &h);
        if (rc != GUTS_OK || guts_id_cmp(&h, &objs[i].id) != 0) {
            if (bad)
                *bad = i;
            return rc != GUTS_OK ? rc : GUTS_EHASH;
        }
    }
    fresh_obj *fresh = calloc(n ? n : 1, sizeof(fresh_obj));
    if (!fresh)
        return GUTS_ENOMEM;
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        if (memstore_obj_find(r, &objs[i].id))
            continue;
        fresh[nf++].o = &objs[i];
    }
    qsort(fresh, nf, sizeof(fresh_obj), cmp_fresh);
    size_t w = 0; /* drop duplicates inside the batch */
    for (size_t i = 0; i < nf; i++)
        if (w == 0 || guts_id_cmp(&fresh[w - 1].o->id, &fresh[i].o->id) != 0)
            fresh[w++] = fresh[i];
    nf = w;
    int rc = memstore_grow((void **)&r->objs, &r->capobjs, r->nobjs + nf, sizeof(mobj *));
    if (!rc)
        rc = memstore_grow((void **)&r->log, &r->caplog, r->nlog + nf, sizeof(mobj *));
    size_t nlog = r->nlog;
    /* copy contents and log in batch order, like the LMDB store */
    for (size_t j = 0; !rc && j < n; j++) {
        fresh_obj probe = {.o = &objs[j]};
        fresh_obj *f = bsearch(&probe, fresh, nf, sizeof(fresh_obj), cmp_fresh);
        if (!f || f->e)
            continue;
        const guts_obj *o = &objs[j];
        f->e = pool_get(m->pool, &o->id, o->type, o->data, o->len);
        if (!f->e) {
            rc = GUTS_ENOMEM;
            break;
        }
        r->log[nlog++] = f->e;
    }
    if (rc) { /* what the pool took stays there */
        free(fresh);
        return rc;
    }
    r->nlog = nlog;
    for (size_t i = 0; i < nf; i++) {
        guts_fp_add(&r->fp, guts_fp_of_id(&fresh[i].e->id));
        r->bytes += fresh[i].e->len;
    }
    /* merge from the back */
    size_t a = r->nobjs, b = nf, d = r->nobjs + nf;
    while (b > 0) {
        if (a > 0 && guts_id_cmp(&r->objs[a - 1]->id, &fresh[b - 1].e->id) > 0)
            r->objs[--d] = r->objs[--a];
        else
            r->objs[--d] = fresh[--b].e;
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
    const mrepo *r = memstore_repo_find(ctx, key);
    *n = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    for (size_t i = 0; *n < max && i < r->nlog; i++)
        if (memstore_obj_find(r, &r->log[r->nlog - 1 - i]->id)) /* not dropped */
            out[(*n)++] = r->log[r->nlog - 1 - i]->id;
    return GUTS_OK;
}

static int m_verify(void *ctx, const char *key, const guts_id *id)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    const mobj *o = r ? memstore_obj_find(r, id) : NULL;
    if (!o) return GUTS_ENOTFOUND;
    guts_id got;
    int rc = guts_obj_hash(o->type, o->data, o->len, &got);
    if (rc == GUTS_OK && guts_id_cmp(&got, id) != 0) rc = GUTS_ECORRUPT;
    return rc;
}

static int m_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    mrepo *r = memstore_repo_find(ctx, key);
    *dropped = 0;
    if (!r) return GUTS_ENOTFOUND;
    for (size_t k = 0; k < n; k++) {
        size_t i = obj_index(r, &ids[k]);
        if (i == SIZE_MAX) continue;
        mobj *o = r->objs[i];
        guts_fp_sub(&r->fp, guts_fp_of_id(&o->id));
        r->bytes = r->bytes > o->len ? r->bytes - o->len : 0;
        obj_free(ctx, o);
        memmove(r->objs + i, r->objs + i + 1, (r->nobjs - i - 1) * sizeof(mobj *));
        r->nobjs--;
        r->txnid++;
        (*dropped)++;
    }
    return GUTS_OK;
}

int guts_memstore_damage(guts_memstore *m, const char *key, const guts_id *id)
{
    const mrepo *r = memstore_repo_find(m, key);
    size_t i = r ? obj_index(r, id) : SIZE_MAX;
    if (i == SIZE_MAX) return GUTS_ENOTFOUND;
    mobj *o = r->objs[i];
    if (o->len == 0) return GUTS_EINVAL;
    { /* the pool's copy may be other stores': damage a copy of our own */
        int own = 0;
        for (size_t k = 0; k < m->nowned && !own; k++)
            own = m->owned[k] == o;
        if (!own) {
            mobj **no = realloc(m->owned, (m->nowned + 1) * sizeof(mobj *));
            mobj *d = obj_new(&o->id, o->type, o->data, o->len);
            if (!no || !d) {
                if (no) m->owned = no;
                free(d);
                return GUTS_ENOMEM;
            }
            m->owned = no;
            r->objs[i] = o = d;
            m->owned[m->nowned++] = d;
        }
    }
    o->data[0] ^= 0xff;
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
    out->get = memstore_get;
    out->put = memstore_put;
    out->recent = m_recent;
    out->refs = memstore_refs;
    out->ref_get = memstore_ref_get;
    out->refs_put = memstore_refs_put;
    out->rec_get = memstore_rec_get;
    out->rec_put = memstore_rec_put;
    out->read = memstore_read;
    out->stage_write = memstore_stage_write;
    out->stage_list = memstore_stage_list;
    out->stage_drop = memstore_stage_drop;
    out->verify = m_verify;
    out->drop = m_drop;
}
