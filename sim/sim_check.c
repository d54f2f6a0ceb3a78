/* sim_check.c - the invariant checker, as a store wrapper.
 *
 * Every core in guts-sim reaches its store through this wrapper, so the
 * checks see every write the protocol makes, at the moment it makes it:
 *  - put: every object is hashed; a batch the store accepts while an object
 *    does not hash to its id is a violation (the store must refuse it);
 *    objects read back are hashed too, which catches a store that corrupts.
 *  - refs_put: a record with a direct target needs that target's closure
 *    (commit -> tree and parents, tree -> entries but gitlinks, tag ->
 *    object) already stored; and a record may only replace a smaller one in
 *    the merge order (guts_ref_cmp): the CRDT register only grows, whatever
 *    order updates arrive in. The second check is what catches a merge that
 *    is not commutative, long before the end-of-run convergence check.
 * The closure walk is the checker's own (not the core's), with its own
 * per-repository cache of ids known complete: objects are never removed, so
 * a complete closure stays complete, and a fast-forward walks only the new
 * commits.
 *
 * --broken-merge is here too: the link step wraps guts_ref_merge
 * (-Wl,--wrap=guts_ref_merge, guts-sim only), and the wrapper lets the
 * incoming record win when the switch is on. No core code knows about it.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "guts/refmerge.h"
#include "guts/gitobj.h"
#include "sim.h"

/* ---- An id set (open addressing) ------------------------------------------ */

typedef struct cset {
    guts_id *slot;
    uint8_t *used;
    size_t n, cap;
} cset;

static size_t cset_hash(const guts_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof(h)); /* SHA-1 bytes are already uniform */
    return (size_t)(h ^ (h >> 29));
}

static int cset_add(cset *s, const guts_id *id)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        guts_id *slot = malloc(nc * sizeof(guts_id));
        uint8_t *used = calloc(nc, 1);
        if (!slot || !used) {
            free(slot);
            free(used);
            return GUTS_ENOMEM;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->used[i]) continue;
            size_t j = cset_hash(&s->slot[i]) & (nc - 1);
            while (used[j])
                j = (j + 1) & (nc - 1);
            used[j] = 1;
            slot[j] = s->slot[i];
        }
        free(s->slot);
        free(s->used);
        s->slot = slot;
        s->used = used;
        s->cap = nc;
    }
    size_t j = cset_hash(id) & (s->cap - 1);
    for (; s->used[j]; j = (j + 1) & (s->cap - 1))
        if (memcmp(&s->slot[j], id, sizeof(*id)) == 0) return 0;
    s->used[j] = 1;
    s->slot[j] = *id;
    s->n++;
    return 1;
}

static void cset_free(cset *s)
{
    free(s->slot);
    free(s->used);
    memset(s, 0, sizeof(*s));
}

/* ---- The wrapper ----------------------------------------------------------- */

/* Ids known complete, sorted: one immutable array per distinct content,
 * counted, shared by every node whose cache for a repository holds exactly
 * those ids (the nodes of a run converge to the same ones). Per node a
 * hash set at half load took 2.7 KB for the ~50 ids of guts-sim's default
 * repository, 27 MB at 10,000 nodes. */
typedef struct idvec {
    struct idvec *next; /* in its pool bucket */
    uint64_t hash;
    size_t n;
    uint32_t refs;
    guts_id ids[];
} idvec;

struct sim_idpool {
    idvec **bucket;
    size_t cap, n; /* cap: a power of two */
};

int sim_idpool_new(sim_idpool **out)
{
    sim_idpool *p = calloc(1, sizeof(*p));
    if (!p || !(p->bucket = calloc(64, sizeof(idvec *)))) {
        free(p);
        return GUTS_ENOMEM;
    }
    p->cap = 64;
    *out = p;
    return GUTS_OK;
}

void sim_idpool_free(sim_idpool *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->cap; i++)
        for (idvec *v = p->bucket[i], *next; v; v = next) {
            next = v->next;
            free(v);
        }
    free(p->bucket);
    free(p);
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(guts_id));
}

static int idvec_has(const idvec *v, const guts_id *id)
{
    return v && bsearch(id, v->ids, v->n, sizeof(guts_id), id_cmp) != NULL;
}

static void idvec_drop(sim_idpool *p, idvec *v)
{
    if (!v || --v->refs) return;
    idvec **pp = &p->bucket[v->hash & (p->cap - 1)];
    while (*pp != v)
        pp = &(*pp)->next;
    *pp = v->next;
    p->n--;
    free(v);
}

static int idpool_grow(sim_idpool *p)
{
    size_t nc = 2 * p->cap;
    idvec **b = calloc(nc, sizeof(idvec *));
    if (!b) return GUTS_ENOMEM;
    for (size_t i = 0; i < p->cap; i++)
        for (idvec *v = p->bucket[i], *next; v; v = next) {
            next = v->next;
            v->next = b[v->hash & (nc - 1)];
            b[v->hash & (nc - 1)] = v;
        }
    free(p->bucket);
    p->bucket = b;
    p->cap = nc;
    return GUTS_OK;
}

/* *cur becomes the pooled array of its ids and add[0..k) (none of them in
 * *cur; sorted here). */
static int idvec_merge(sim_idpool *p, idvec **cur, guts_id *add, size_t k)
{
    if (!k) return GUTS_OK;
    if (p->n >= p->cap && idpool_grow(p)) return GUTS_ENOMEM;
    qsort(add, k, sizeof(*add), id_cmp);
    const idvec *o = *cur;
    size_t no = o ? o->n : 0, i = 0, j = 0, n = 0;
    idvec *v = malloc(sizeof(*v) + (no + k) * sizeof(guts_id));
    if (!v) return GUTS_ENOMEM;
    while (i < no || j < k)
        v->ids[n++] = j >= k || (i < no && id_cmp(&o->ids[i], &add[j]) < 0) ? o->ids[i++] : add[j++];
    v->n = n;
    v->hash = XXH3_64bits(v->ids, n * sizeof(guts_id));
    idvec **b = &p->bucket[v->hash & (p->cap - 1)], *e = *b;
    while (e && !(e->hash == v->hash && e->n == n &&
                  memcmp(e->ids, v->ids, n * sizeof(guts_id)) == 0))
        e = e->next;
    if (e) { /* another node holds the same ids */
        free(v);
        v = e;
    } else {
        v->refs = 0;
        v->next = *b;
        *b = v;
        p->n++;
    }
    v->refs++;
    idvec_drop(p, *cur);
    *cur = v;
    return GUTS_OK;
}

typedef struct crepo {
    char *key;
    idvec *complete; /* pooled, NULL: none yet */
} crepo;

struct sim_cstore {
    guts_core_store in;
    uint32_t node;
    sim_violations *v;
    int *dirty;
    sim_idpool *ids;
    const guts_mempool *pool; /* NULL, or the one under every node's store */
    crepo *repos;
    size_t nrepos, caprepos;
};

static crepo *crepo_get(sim_cstore *cs, const char *key)
{
    for (size_t i = 0; i < cs->nrepos; i++)
        if (strcmp(cs->repos[i].key, key) == 0) return &cs->repos[i];
    if (cs->nrepos == cs->caprepos) {
        size_t nc = cs->caprepos ? 2 * cs->caprepos : 1; /* most runs have one */
        crepo *p = realloc(cs->repos, nc * sizeof(crepo));
        if (!p) return NULL;
        cs->repos = p;
        cs->caprepos = nc;
    }
    crepo *r = &cs->repos[cs->nrepos];
    memset(r, 0, sizeof(*r));
    if (!(r->key = strdup(key))) return NULL;
    cs->nrepos++;
    return r;
}

static int w_repos(void *ctx, int (*cb)(const char *key, void *arg), void *arg)
{
    sim_cstore *cs = ctx;
    return cs->in.repos(cs->in.ctx, cb, arg);
}

static int w_create(void *ctx, const char *key)
{
    sim_cstore *cs = ctx;
    int rc = cs->in.create(cs->in.ctx, key);
    if (rc == GUTS_OK) *cs->dirty = 1;
    return rc;
}

static int w_info(void *ctx, const char *key, guts_repo_info *out)
{
    sim_cstore *cs = ctx;
    return cs->in.info(cs->in.ctx, key, out);
}

static int w_ids(void *ctx, const char *key, const guts_id *from, const guts_id *to,
                 int (*cb)(const guts_id *id, void *arg), void *arg)
{
    sim_cstore *cs = ctx;
    return cs->in.ids(cs->in.ctx, key, from, to, cb, arg);
}

static int w_has(void *ctx, const char *key, const guts_id *id)
{
    sim_cstore *cs = ctx;
    return cs->in.has(cs->in.ctx, key, id);
}

static int w_get(void *ctx, const char *key, const guts_id *id, int *type, void **data, size_t *len)
{
    sim_cstore *cs = ctx;
    int rc = cs->in.get(cs->in.ctx, key, id, type, data, len);
    if (rc == GUTS_OK && !guts_mempool_proves(cs->pool, id, *type, *data, *len)) {
        guts_id h;
        if (guts_obj_hash(*type, *data, *len, &h) != GUTS_OK || guts_id_cmp(&h, id) != 0) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(id, hex);
            cs->v->bad_object++;
            sim_violation_note(cs->v, cs->node, "%s: stored object %s does not hash to its id", key,
                               hex);
        }
    }
    return rc;
}

static int w_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad)
{
    sim_cstore *cs = ctx;
    size_t first_bad = SIZE_MAX;
    for (size_t i = 0; i < n && first_bad == SIZE_MAX; i++) {
        guts_id h;
        if (guts_mempool_proves(cs->pool, &objs[i].id, objs[i].type, objs[i].data, objs[i].len))
            continue;
        if (guts_obj_hash(objs[i].type, objs[i].data, objs[i].len, &h) != GUTS_OK ||
            guts_id_cmp(&h, &objs[i].id) != 0)
            first_bad = i;
    }
    size_t a = 0;
    int rc = cs->in.put(cs->in.ctx, key, objs, n, &a, bad);
    if (added) *added = a;
    if (rc == GUTS_OK && first_bad != SIZE_MAX) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&objs[first_bad].id, hex);
        cs->v->bad_object++;
        sim_violation_note(cs->v, cs->node,
                           "%s: store accepted object %s whose content hashes "
                           "elsewhere",
                           key, hex);
    }
    if (rc == GUTS_OK && a) *cs->dirty = 1;
    return rc;
}

static int w_recent(void *ctx, const char *key, size_t max, guts_id *out, size_t *n)
{
    sim_cstore *cs = ctx;
    return cs->in.recent(cs->in.ctx, key, max, out, n);
}

static int w_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    sim_cstore *cs = ctx;
    return cs->in.refs(cs->in.ctx, key, with_tombstones, cb, arg);
}

static int w_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    sim_cstore *cs = ctx;
    return cs->in.ref_get(cs->in.ctx, key, name, out);
}

/* ---- Closure walk ---------------------------------------------------------- */

typedef struct stack {
    guts_id *ids;
    size_t n, cap;
} stack;

static int spush(stack *s, const guts_id *id)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        guts_id *p = realloc(s->ids, nc * sizeof(guts_id));
        if (!p) return GUTS_ENOMEM;
        s->ids = p;
        s->cap = nc;
    }
    s->ids[s->n++] = *id;
    return GUTS_OK;
}

/* Push what a stored object refers to. */
static int refs_of(stack *s, int type, const uint8_t *d, size_t len)
{
    guts_id id;
    int rc = GUTS_OK;
    if (type == GUTS_OBJ_COMMIT || type == GUTS_OBJ_TAG) {
        size_t pos = 0;
        int kind, k;
        while (!rc && (k = guts_obj_link_next(type, d, len, &pos, &kind, &id)) != 0)
            if (k == 1) rc = spush(s, &id);
    } else if (type == GUTS_OBJ_TREE) {
        size_t pos = 0;
        guts_tree_entry e;
        while (!rc && guts_tree_entry_next(d, len, &pos, &e) == 1)
            if (e.type != GUTS_OBJ_COMMIT) rc = spush(s, &e.id);
    }
    return rc;
}

/* 1 complete, 0 not (*missing gets one absent id), <0 error. */
static int closure_complete(sim_cstore *cs, crepo *cr, const char *key, const guts_id *target,
                            guts_id *missing)
{
    if (idvec_has(cr->complete, target)) return 1;
    stack st = {0};
    cset seen = {0};
    int rc = spush(&st, target), complete = 1;
    while (!rc && st.n) {
        guts_id id = st.ids[--st.n];
        if (idvec_has(cr->complete, &id)) continue;
        int added = cset_add(&seen, &id);
        if (added <= 0) {
            rc = added;
            continue;
        }
        int type;
        void *data;
        size_t len;
        int g = cs->in.get(cs->in.ctx, key, &id, &type, &data, &len);
        if (g == GUTS_ENOTFOUND) {
            complete = 0;
            *missing = id;
            break;
        }
        if (g) {
            rc = g;
            break;
        }
        rc = refs_of(&st, type, data, len);
        free(data);
    }
    if (!rc && complete) { /* what the walk saw is complete too */
        size_t k = 0;
        for (size_t i = 0; i < seen.cap; i++)
            if (seen.used[i]) seen.slot[k++] = seen.slot[i];
        rc = idvec_merge(cs->ids, &cr->complete, seen.slot, k);
    }
    free(st.ids);
    cset_free(&seen);
    return rc ? rc : complete;
}

static int w_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    sim_cstore *cs = ctx;
    crepo *cr = crepo_get(cs, key);
    guts_ref *cur = malloc(sizeof(guts_ref));
    if (!cr || !cur) {
        free(cur);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const guts_ref *r = &refs[i];
        if (cs->in.ref_get(cs->in.ctx, key, r->name, cur) == GUTS_OK && guts_ref_cmp(r, cur) < 0) {
            cs->v->ref_backwards++;
            sim_violation_note(
                cs->v, cs->node, "%s: ref %s went backwards (clock %llu replaced by %llu)", key,
                r->name, (unsigned long long)cur->clock, (unsigned long long)r->clock);
        }
        if (r->symref[0] || guts_id_is_zero(&r->target)) continue;
        guts_id missing;
        int c = closure_complete(cs, cr, key, &r->target, &missing);
        if (c < 0) {
            cs->v->store_error++;
            sim_violation_note(cs->v, cs->node, "%s: closure walk failed: %s", key,
                               guts_strerror(c));
        } else if (c == 0) {
            char hex[GUTS_HEX_LEN + 1], mh[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&r->target, hex);
            guts_id_to_hex(&missing, mh);
            cs->v->open_closure++;
            sim_violation_note(cs->v, cs->node, "%s: ref %s -> %s applied, closure lacks %s", key,
                               r->name, hex, mh);
        }
    }
    free(cur);
    int rc = cs->in.refs_put(cs->in.ctx, key, refs, n);
    if (rc == GUTS_OK && n) *cs->dirty = 1;
    return rc;
}

/* Large objects pass straight through (the checks look at refs and
 * closures, which staging never changes). */
static int w_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got)
{
    sim_cstore *cs = ctx;
    return cs->in.read(cs->in.ctx, key, id, off, buf, len, got);
}

static int w_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored)
{
    sim_cstore *cs = ctx;
    int rc = cs->in.stage_write(cs->in.ctx, key, id, type, size, off, data, len, stored);
    if (rc == GUTS_OK && stored && *stored) *cs->dirty = 1;
    return rc;
}

static int w_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    sim_cstore *cs = ctx;
    return cs->in.stage_list(cs->in.ctx, key, out, max, n);
}

static int w_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    sim_cstore *cs = ctx;
    return cs->in.stage_drop(cs->in.ctx, key, id);
}

static int w_verify(void *ctx, const char *key, const guts_id *id)
{
    sim_cstore *cs = ctx;
    return cs->in.verify(cs->in.ctx, key, id);
}

static int w_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    sim_cstore *cs = ctx;
    return cs->in.drop(cs->in.ctx, key, ids, n, dropped);
}

int sim_cstore_new(const guts_core_store *inner, const guts_mempool *pool, uint32_t node,
                   sim_violations *v, int *dirty, sim_idpool *ids, sim_cstore **out)
{
    sim_cstore *cs = calloc(1, sizeof(*cs));
    if (!cs) return GUTS_ENOMEM;
    cs->in = *inner;
    cs->node = node;
    cs->v = v;
    cs->dirty = dirty;
    cs->ids = ids;
    cs->pool = pool;
    *out = cs;
    return GUTS_OK;
}

void sim_cstore_free(sim_cstore *cs)
{
    if (!cs) return;
    for (size_t i = 0; i < cs->nrepos; i++) {
        free(cs->repos[i].key);
        idvec_drop(cs->ids, cs->repos[i].complete);
    }
    free(cs->repos);
    free(cs);
}

const guts_core_store *sim_cstore_inner(const sim_cstore *cs)
{
    return &cs->in;
}

void sim_cstore_iface(sim_cstore *cs, guts_core_store *out)
{
    out->ctx = cs;
    out->repos = w_repos;
    out->create = w_create;
    out->info = w_info;
    out->ids = w_ids;
    out->has = w_has;
    out->get = w_get;
    out->put = w_put;
    out->recent = w_recent;
    out->refs = w_refs;
    out->ref_get = w_ref_get;
    out->refs_put = w_refs_put;
    out->read = w_read;
    out->stage_write = w_stage_write;
    out->stage_list = w_stage_list;
    out->stage_drop = w_stage_drop;
    out->verify = cs->in.verify && cs->in.drop ? w_verify : NULL;
    out->drop = cs->in.verify && cs->in.drop ? w_drop : NULL;
}

/* ---- --broken-merge -------------------------------------------------------- */

static int broken_merge;

void sim_broken_merge_set(int on)
{
    broken_merge = on;
}

/* Declared here only: the linker provides these names for guts-sim, which
 * is linked with -Wl,--wrap=guts_ref_merge (see CMakeLists.txt). */
int __real_guts_ref_merge(const guts_ref *cur, const guts_ref *in, guts_ref_ancestor_fn is_ancestor,
                          void *ctx, guts_ref *result, guts_ref *conflict, int *has_conflict);
int __wrap_guts_ref_merge(const guts_ref *cur, const guts_ref *in, guts_ref_ancestor_fn is_ancestor,
                          void *ctx, guts_ref *result, guts_ref *conflict, int *has_conflict);

int __wrap_guts_ref_merge(const guts_ref *cur, const guts_ref *in, guts_ref_ancestor_fn is_ancestor,
                          void *ctx, guts_ref *result, guts_ref *conflict, int *has_conflict)
{
    if (broken_merge && cur && strcmp(cur->name, in->name) == 0) {
        /* "last arrival wins": depends on delivery order, so not commutative */
        *has_conflict = 0;
        *result = *in;
        return GUTS_OK;
    }
    return __real_guts_ref_merge(cur, in, is_ancestor, ctx, result, conflict, has_conflict);
}
