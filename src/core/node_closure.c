/* node_closure.c - walks of a repository's object graph in the store: the
 * closure check that gates applying a ref record, and the ancestry oracle
 * of the ref merge (refmerge.h).
 *
 * The walk is costly on a first sync (it reads every commit and tree once),
 * so ids found complete are remembered per repository (the "complete"
 * cache), seeded with the targets of the refs already stored: an applied
 * ref's closure is complete by this very rule, and objects are not
 * removed behind the core's back: a damaged object dropped, or a store
 * write that failed (a grouping store then drops puts that returned
 * GUTS_OK), empties the cache (node_store.c). A fast-forward then walks
 * only the new commits. Blobs are never
 * read: a tree entry's mode says it is a blob, and presence is enough (the
 * mode is read as git reads it, an octal number, by guts_tree_entry_next:
 * "040000" is a subtree as much as "40000" is).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "guts/gitobj.h"

/* A walk item: an id and whether a tree entry told us it is a blob. */
typedef struct witem {
    guts_id id;
    int blob;
} witem;

typedef struct walk {
    witem *stack;
    size_t n, cap;
    int err;
} walk;

static void wpush(walk *w, const guts_id *id, int blob)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        witem *p = realloc(w->stack, nc * sizeof(witem));
        if (!p) {
            w->err = GUTS_ENOMEM;
            return;
        }
        w->stack = p;
        w->cap = nc;
    }
    w->stack[w->n].id = *id;
    w->stack[w->n].blob = blob;
    w->n++;
}

/* Push the ids an object refers to. Malformed content refers to nothing
 * (its hash was verified; git fsck would judge its format). */
static void children_of(walk *w, int type, const uint8_t *d, size_t len, int parents_only)
{
    guts_id id;
    if (type == GUTS_OBJ_COMMIT || type == GUTS_OBJ_TAG) {
        size_t pos = 0;
        int kind, rc;
        while ((rc = guts_obj_link_next(type, d, len, &pos, &kind, &id)) != 0)
            if (rc == 1 && !(parents_only && kind == GUTS_LINK_TREE)) wpush(w, &id, 0);
    } else if (type == GUTS_OBJ_TREE) {
        size_t pos = 0;
        guts_tree_entry e;
        while (guts_tree_entry_next(d, len, &pos, &e) == 1)
            if (e.type != GUTS_OBJ_COMMIT) /* a gitlink is another repository's */
                wpush(w, &e.id, e.type == GUTS_OBJ_BLOB);
    }
}

static void children(walk *w, int type, const uint8_t *d, size_t len)
{
    children_of(w, type, d, len, 0);
}

static int seed_cb(const guts_ref *ref, void *arg)
{
    lrepo *r = arg;
    if (!guts_id_is_zero(&ref->target) && !ref->symref[0])
        guts_idset_insert(&r->complete, &ref->target);
    return 0;
}

static void complete_seed(guts_core *c, lrepo *r)
{
    if (r->complete.n == 0)
        c->st.refs(c->st.ctx, r->key, 0, seed_cb, r);
}

/* id -> index map over a caller's node array (the tracker's and each
 * walk's), whose nodes each begin with their id, stride bytes apart: open
 * addressing, a slot holding index + 1 (0 empty) and, in its high half,
 * bits of the id beside those of guts_id_hash, so a probe reads a node's
 * id (a cache miss in a large array) only when they match. 16 bytes a
 * node at load 1/2, not a second copy of its id. */
typedef struct idmap {
    uint64_t *slots;
    size_t n, mask; /* mask + 1 slots; 0 with none */
    size_t stride;
} idmap;

static const guts_id *idmap_id(const idmap *m, const void *nodes, uint32_t i)
{
    return (const guts_id *)((const char *)nodes + (size_t)i * m->stride);
}

static uint64_t idmap_tag(const guts_id *id)
{
    uint32_t t;
    memcpy(&t, id->b + 12, sizeof(t));
    return (uint64_t)t << 32;
}

static void idmap_place(uint64_t *slots, size_t mask, const guts_id *id, uint32_t idx)
{
    size_t j = guts_id_hash(id) & mask;
    while (slots[j])
        j = (j + 1) & mask;
    slots[j] = idmap_tag(id) | ((uint64_t)idx + 1);
}

/* Index of id among nodes, or -1. */
static long idmap_get(const idmap *m, const void *nodes, const guts_id *id)
{
    if (!m->slots)
        return -1;
    uint64_t tag = idmap_tag(id);
    for (size_t j = guts_id_hash(id) & m->mask; m->slots[j]; j = (j + 1) & m->mask) {
        uint32_t i = (uint32_t)m->slots[j] - 1;
        if ((m->slots[j] >> 32 << 32) == tag &&
            memcmp(idmap_id(m, nodes, i), id, sizeof(*id)) == 0)
            return (long)i;
    }
    return -1;
}

/* Add the node at idx, of id (not present). id is the caller's copy, not
 * read back from a node just written (map_insert in group.c says why).
 * Nodes are added in order (idx is the count so far), so growing re-places
 * nodes 0..n-1 reading them in order, not at random through the slots. */
static int idmap_put(idmap *m, const void *nodes, const guts_id *id, uint32_t idx)
{
    assert(idx == m->n);
    if (2 * (m->n + 1) > (m->slots ? m->mask + 1 : 0)) {
        size_t nc = m->slots ? 2 * (m->mask + 1) : 512;
        uint64_t *sl = calloc(nc, sizeof(*sl));
        if (!sl)
            return GUTS_ENOMEM;
        for (uint32_t i = 0; i < m->n; i++)
            idmap_place(sl, nc - 1, idmap_id(m, nodes, i), i);
        free(m->slots);
        m->slots = sl;
        m->mask = nc - 1;
    }
    idmap_place(m->slots, m->mask, id, idx);
    m->n++;
    return GUTS_OK;
}

static void idmap_free(idmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* ---- The closure learnt as objects arrive ---------------------------------
 *
 * A pull stores objects in the server's order (by id), not bottom-up, and
 * the walk below would then read back every tree and commit the pull has
 * just verified (half of a fresh node's time on many small objects). The
 * store tells the core of each object it stores, with its content
 * (guts_rec_seen), so the links are counted as they arrive instead: an
 * object is complete once stored with every child complete, each child
 * that is not yet keeps a list of the parents waiting on it, and a child
 * completing counts its parents down (bottom-up, whatever the order of
 * arrival). Complete trees, commits and tags join the complete cache, so
 * the walk of a ref whose whole history came in the pull stops at once.
 * Only what this tracker saw counts: a child stored before it (an earlier
 * pull) leaves its parents waiting, and the walk settles them as before.
 * Bounded by CORE_TRACK_MAX objects (then dropped until the pulls of the
 * repository end); freed when they end, or with the complete cache. */

#define TRACK_NONE UINT32_MAX

/* One object, its fields beside its id: a lookup's read of the id brings
 * the rest into the cache with it (32 bytes, two to a cache line; 202,000
 * nodes are 6.5 MB, far beyond the caches). */
typedef struct tnode {
    guts_id id;
    uint32_t missing; /* children not known complete; TRACK_NONE: not stored */
    uint32_t head;    /* first edge of the parents waiting on it */
    uint8_t blob;     /* a blob, or in the complete cache already: not put in it */
} tnode;

/* An object told of and not yet counted: its children are kids.stack[k0,
 * k0 + nk). */
typedef struct tseen {
    guts_id id;
    uint32_t k0, nk;
    uint32_t node; /* its node once looked up; TRACK_NONE: told twice */
    uint8_t blob;
} tseen;

struct ctrack {
    tnode *nodes;
    size_t n, cap;
    idmap map;
    uint32_t (*edges)[2]; /* waiting parent, next edge of the same child */
    size_t nedges, capedges;
    tseen *seen;    /* the batch: objects told of since the last count */
    size_t nseen, capseen;
    walk kids;      /* the children of the batch's objects */
    uint32_t *todo; /* nodes completed, their parents not yet counted down */
    size_t ntodo, captodo;
    guts_ids done; /* the batch's complete trees, commits and tags */
    size_t own;    /* ids this tracker put in the complete cache */
};

void closure_track_free(lrepo *r)
{
    ctrack *t = r->track;
    if (t) {
        free(t->nodes);
        idmap_free(&t->map);
        free(t->edges);
        free(t->seen);
        free(t->kids.stack);
        free(t->todo);
        free(t->done.v);
        free(t);
    }
    r->track = NULL;
    r->track_off = 0;
}

/* Give up on tracking until the repository's pulls end (the walk does it). */
static void track_off(lrepo *r)
{
    closure_track_free(r);
    r->track_off = 1;
}

/* Node of id, added (not stored, nothing waiting) when new; -1 past the
 * bound or without memory. */
static long track_node(ctrack *t, const guts_id *id)
{
    long found = idmap_get(&t->map, t->nodes, id);
    if (found >= 0)
        return found;
    if (t->n >= CORE_TRACK_MAX)
        return -1;
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 256;
        tnode *nn = realloc(t->nodes, nc * sizeof(*nn));
        if (!nn)
            return -1;
        t->nodes = nn;
        t->cap = nc;
    }
    size_t i = t->n++;
    t->nodes[i] = (tnode){.id = *id, .missing = TRACK_NONE, .head = TRACK_NONE};
    if (idmap_put(&t->map, t->nodes, id, (uint32_t)i)) {
        t->n--;
        return -1;
    }
    return (long)i;
}

/* The lookups of a batch are independent, so each starts loading what a
 * later one reads: its map slot TRACK_AHEAD lookups ahead, the node that
 * slot names half as far ahead (by then the slot is in the cache). The map
 * and the nodes are megabytes read at random, a cache and TLB miss each;
 * one at a time, the lookups waited for every miss in turn. */
#define TRACK_AHEAD 16

/* Objects told of before they are counted: a rec_put's records, bounded
 * so the batch's children stay a few hundred KB. */
#define TRACK_BATCH 4096

static void track_prefetch_slot(const ctrack *t, const guts_id *id)
{
    if (t->map.slots)
        __builtin_prefetch(&t->map.slots[guts_id_hash(id) & t->map.mask]);
}

static void track_prefetch_node(const ctrack *t, const guts_id *id)
{
    if (!t->map.slots)
        return;
    uint64_t sl = t->map.slots[guts_id_hash(id) & t->map.mask];
    if (sl && (sl >> 32 << 32) == idmap_tag(id))
        __builtin_prefetch(&t->nodes[(uint32_t)sl - 1]);
}

/* Both prefetches for item k of a batch of n whose k-th id is idof(k). */
#define TRACK_PREFETCH(t, k, n, idof)                                                              \
    do {                                                                                           \
        if ((k) + TRACK_AHEAD < (n))                                                               \
            track_prefetch_slot((t), (idof((k) + TRACK_AHEAD)));                                   \
        if ((k) + TRACK_AHEAD / 2 < (n))                                                           \
            track_prefetch_node((t), (idof((k) + TRACK_AHEAD / 2)));                               \
    } while (0)

static int track_todo(ctrack *t, uint32_t i)
{
    if (t->ntodo == t->captodo) {
        size_t nc = t->captodo ? 2 * t->captodo : 256;
        uint32_t *p = realloc(t->todo, nc * sizeof(*p));
        if (!p)
            return GUTS_ENOMEM;
        t->todo = p;
        t->captodo = nc;
    }
    t->todo[t->ntodo++] = i;
    return GUTS_OK;
}

/* Node i (stored, nothing missing) is complete: so are the parents it was
 * the last missing child of, transitively. Trees, commits and tags among
 * them go to done, for the complete cache (track_cache). */
static int track_complete(ctrack *t, uint32_t i)
{
    if (track_todo(t, i))
        return GUTS_ENOMEM;
    while (t->ntodo) {
        tnode *nk = &t->nodes[t->todo[--t->ntodo]];
        if (!nk->blob && guts_ids_push(&t->done, &nk->id))
            return GUTS_ENOMEM;
        for (uint32_t e = nk->head; e != TRACK_NONE; e = t->edges[e][1]) {
            uint32_t p = t->edges[e][0];
            if (--t->nodes[p].missing == 0 && track_todo(t, p))
                return GUTS_ENOMEM;
        }
        nk->head = TRACK_NONE;
    }
    return GUTS_OK;
}

/* Parent p waits on node ki. */
static int track_edge(ctrack *t, uint32_t p, uint32_t ki)
{
    if (t->nedges == t->capedges) {
        size_t nc = t->capedges ? 2 * t->capedges : 256;
        if (nc > 2 * (size_t)CORE_TRACK_MAX)
            return GUTS_ENOMEM;
        uint32_t(*ne)[2] = realloc(t->edges, nc * sizeof(*ne));
        if (!ne)
            return GUTS_ENOMEM;
        t->edges = ne;
        t->capedges = nc;
    }
    t->edges[t->nedges][0] = p;
    t->edges[t->nedges][1] = t->nodes[ki].head;
    t->nodes[ki].head = (uint32_t)t->nedges++;
    t->nodes[p].missing++;
    return GUTS_OK;
}

/* Put the batch's complete trees, commits and tags in the complete cache
 * (up to its bound), room made first so the prefetches hold. */
static int track_cache(lrepo *r, ctrack *t)
{
    size_t n = t->done.n, room = CORE_COMPLETE_MAX - r->complete.n;
    t->done.n = 0;
    if (r->complete.n >= CORE_COMPLETE_MAX || !n)
        return GUTS_OK;
    if (guts_idset_reserve(&r->complete, r->complete.n + (n < room ? n : room)))
        return GUTS_ENOMEM;
    for (size_t k = 0; k < n && r->complete.n < CORE_COMPLETE_MAX; k++) {
        if (k + TRACK_AHEAD < n)
            guts_idset_prefetch(&r->complete, &t->done.v[k + TRACK_AHEAD]);
        int added = guts_idset_insert(&r->complete, &t->done.v[k]);
        if (added < 0)
            return GUTS_ENOMEM;
        t->own += (size_t)added;
    }
    return GUTS_OK;
}

#define SEEN_ID(k) (&t->seen[k].id)
#define KID_ID(k) (&t->kids.stack[k].id)

/* Count the batch: the objects told of since the last count, in three
 * passes whose lookups are each independent of the one before (so they
 * can be prefetched, above). (1) Each object's node, marked stored and
 * holding one count for itself, so nothing completes it before (3); told
 * twice, it is skipped. (2) Each child's node: unless complete, its parent
 * waits on it. (3) Each object drops its own count, and is complete when
 * no child is missing. The result is that of counting the objects one by
 * one: an object is complete once stored with every child complete. */
static int track_count(lrepo *r, ctrack *t)
{
    size_t ns = t->nseen, nk = t->kids.n;
    t->nseen = 0;
    t->kids.n = 0;
    if (t->kids.err)
        return t->kids.err;
    for (size_t j = 0; j < ns; j++) {
        TRACK_PREFETCH(t, j, ns, SEEN_ID);
        long i = track_node(t, &t->seen[j].id);
        if (i < 0)
            return GUTS_ENOMEM;
        tnode *nd = &t->nodes[i];
        if (nd->missing != TRACK_NONE) {
            t->seen[j].node = TRACK_NONE; /* told twice */
            continue;
        }
        nd->missing = 1;
        nd->blob = t->seen[j].blob;
        t->seen[j].node = (uint32_t)i;
    }
    /* A child new to the tracker may be complete from before it began (or
     * from a walk since); the cache needs no probe while every id in it is
     * one this tracker put there, all of them nodes. */
    int others = r->complete.n != t->own;
    size_t j = 0;
    for (size_t k = 0; k < nk; k++) {
        while (k >= (size_t)t->seen[j].k0 + t->seen[j].nk)
            j++;
        if (t->seen[j].node == TRACK_NONE)
            continue;
        TRACK_PREFETCH(t, k, nk, KID_ID);
        const guts_id *kid = &t->kids.stack[k].id;
        size_t n0 = t->n;
        long ki = track_node(t, kid);
        if (ki < 0)
            return GUTS_ENOMEM;
        tnode *kn = &t->nodes[ki];
        if ((size_t)ki == n0 && others && guts_idset_has(&r->complete, kid)) {
            kn->missing = 0; /* complete before the tracker began */
            kn->blob = 1;    /* (in the cache already) */
        }
        if (kn->missing != 0 && track_edge(t, t->seen[j].node, (uint32_t)ki))
            return GUTS_ENOMEM;
    }
    for (j = 0; j < ns; j++) {
        if (j + TRACK_AHEAD / 2 < ns && t->seen[j + TRACK_AHEAD / 2].node != TRACK_NONE)
            __builtin_prefetch(&t->nodes[t->seen[j + TRACK_AHEAD / 2].node]);
        uint32_t i = t->seen[j].node;
        if (i != TRACK_NONE && --t->nodes[i].missing == 0 && track_complete(t, i))
            return GUTS_ENOMEM;
    }
    int rc = track_cache(r, t);
    if (t->done.cap > TRACK_BATCH) { /* one object can complete a whole history: not kept */
        free(t->done.v);
        t->done = (guts_ids){0};
    }
    return rc;
}

#undef SEEN_ID
#undef KID_ID

int closure_track_begin(guts_core *c, lrepo *r)
{
    if (!r->track && !r->track_off) {
        complete_seed(c, r); /* not from closure_seen: the store is busy then */
        r->track = calloc(1, sizeof(ctrack));
        if (r->track)
            r->track->map.stride = sizeof(tnode);
    }
    return r->track != NULL;
}

void closure_seen(void *arg, const guts_id *id, int type, const void *data, size_t len)
{
    lrepo *r = arg;
    ctrack *t = r->track;
    if (!t)
        return;
    if (t->nseen == t->capseen) {
        size_t nc = t->capseen ? 2 * t->capseen : 256;
        tseen *p = realloc(t->seen, nc * sizeof(*p));
        if (!p) {
            track_off(r);
            return;
        }
        t->seen = p;
        t->capseen = nc;
    }
    size_t k0 = t->kids.n;
    if (type != GUTS_OBJ_BLOB)
        children(&t->kids, type, data, len);
    if (t->kids.n > UINT32_MAX) {
        track_off(r);
        return;
    }
    t->seen[t->nseen++] = (tseen){.id = *id,
                                  .k0 = (uint32_t)k0,
                                  .nk = (uint32_t)(t->kids.n - k0),
                                  .blob = type == GUTS_OBJ_BLOB};
    if (t->nseen >= TRACK_BATCH || t->kids.err)
        closure_track_count(r);
}

void closure_track_count(lrepo *r)
{
    if (r->track && track_count(r, r->track) != GUTS_OK)
        track_off(r);
}

/* Walk target's closure, down to ids already known complete.
 *
 * Every object reached is a node; "bad" nodes are missing ones and ones an
 * earlier walk of this pass found incomplete (not walked again: a pass over
 * many refs sharing history costs one walk of that history, not one per
 * ref). Badness then flows from children to parents over the reversed
 * edges; every node left good has a complete closure and joins the
 * repository's complete cache, bad ones join the pass's incomplete set.
 * Missing ids go into want (deduplicated, at most cap). */
int refs_closure(guts_core *c, lrepo *r, guts_idset *incomplete, const guts_id *target,
                 guts_id *want, size_t cap, size_t *nwant, int *complete)
{
    closure_track_count(r);
    complete_seed(c, r);
    *complete = 1;
    if (guts_idset_has(&r->complete, target))
        return GUTS_OK;
    walk w = {0};
    idmap map = {.stride = sizeof(guts_id)};
    guts_id *nodes = NULL;
    enum { N_BAD = 1, N_BLOB = 2 };
    uint8_t *bad = NULL; /* N_BAD, N_BLOB per node */
    size_t nnodes = 0, capnodes = 0;
    uint32_t (*edges)[2] = NULL; /* parent index, child index */
    size_t nedges = 0, capedges = 0;
    /* children pushed from a node are tagged with its index + 1 */
    uint32_t *from = NULL;
    size_t capfrom = 0;
    int rc = GUTS_OK;
    wpush(&w, target, 0);
    if (!w.err && (from = malloc(64 * sizeof(uint32_t))) != NULL) {
        capfrom = 64;
        from[0] = 0;
    } else {
        rc = GUTS_ENOMEM;
    }
    while (!rc && w.n && !w.err) {
        w.n--;
        witem it = w.stack[w.n];
        uint32_t parent = from[w.n];
        if (guts_idset_has(&r->complete, &it.id))
            continue;
        long idx = idmap_get(&map, nodes, &it.id);
        int isnew = idx < 0;
        if (isnew) {
            if (nnodes == capnodes) {
                size_t nc = capnodes ? 2 * capnodes : 256;
                guts_id *nn = realloc(nodes, nc * sizeof(guts_id));
                uint8_t *nb = nn ? realloc(bad, nc) : NULL;
                if (nn)
                    nodes = nn;
                if (!nb) {
                    rc = GUTS_ENOMEM;
                    break;
                }
                bad = nb;
                capnodes = nc;
            }
            idx = (long)nnodes;
            nodes[nnodes] = it.id;
            bad[nnodes] = it.blob ? N_BLOB : 0;
            nnodes++;
            if (idmap_put(&map, nodes, &it.id, (uint32_t)idx)) {
                rc = GUTS_ENOMEM;
                break;
            }
        }
        if (parent) {
            if (nedges == capedges) {
                size_t nc = capedges ? 2 * capedges : 256;
                uint32_t(*ne)[2] = realloc(edges, nc * sizeof(*edges));
                if (!ne) {
                    rc = GUTS_ENOMEM;
                    break;
                }
                edges = ne;
                capedges = nc;
            }
            edges[nedges][0] = parent - 1;
            edges[nedges][1] = (uint32_t)idx;
            nedges++;
        }
        if (!isnew)
            continue; /* seen before in this walk */
        if (guts_idset_has(incomplete, &it.id)) {
            bad[idx] |= N_BAD;
            *complete = 0;
            continue;
        }
        /* a blob needs only a lookup; anything else is read (and a read
         * that finds nothing is the lookup: one store call per object) */
        int type, grc = GUTS_OK;
        void *data = NULL;
        size_t len;
        int has = it.blob ? c->st.has(c->st.ctx, r->key, &it.id)
                          : (grc = c->st.get(c->st.ctx, r->key, &it.id, &type, &data, &len)) ==
                                GUTS_OK;
        if (has < 0) {
            rc = has;
            break;
        }
        if (!has && grc != GUTS_OK && grc != GUTS_ENOTFOUND) {
            bad[idx] |= N_BAD; /* unreadable: never complete, never wanted */
            *complete = 0;
            continue;
        }
        if (!has) {
            bad[idx] |= N_BAD;
            *complete = 0;
            int dup = 0;
            for (size_t i = 0; i < *nwant; i++)
                dup |= guts_id_cmp(&want[i], &it.id) == 0;
            if (!dup && *nwant < cap)
                want[(*nwant)++] = it.id;
            continue;
        }
        if (it.blob)
            continue;
        size_t before = w.n;
        children(&w, type, data, len);
        free(data);
        if (w.err)
            break;
        if (w.cap > capfrom) {
            uint32_t *nf = realloc(from, w.cap * sizeof(uint32_t));
            if (!nf) {
                rc = GUTS_ENOMEM;
                break;
            }
            from = nf;
            capfrom = w.cap;
        }
        for (size_t i = before; i < w.n; i++)
            from[i] = (uint32_t)idx + 1;
    }
    if (!rc && w.err)
        rc = w.err;
    if (!rc && !*complete) {
        /* reversed edges (CSR): parents of each child, then a BFS from the
         * bad nodes up to every ancestor */
        uint32_t *start = calloc(nnodes + 1, sizeof(uint32_t));
        uint32_t *par = malloc((nedges ? nedges : 1) * sizeof(uint32_t));
        uint32_t *queue = malloc((nnodes ? nnodes : 1) * sizeof(uint32_t));
        if (!start || !par || !queue) {
            rc = GUTS_ENOMEM;
        } else {
            for (size_t e = 0; e < nedges; e++)
                start[edges[e][1] + 1]++;
            for (size_t i = 0; i < nnodes; i++)
                start[i + 1] += start[i];
            uint32_t *fill = calloc(nnodes ? nnodes : 1, sizeof(uint32_t));
            if (!fill) {
                rc = GUTS_ENOMEM;
            } else {
                for (size_t e = 0; e < nedges; e++) {
                    uint32_t ch = edges[e][1];
                    par[start[ch] + fill[ch]++] = edges[e][0];
                }
                free(fill);
                size_t qh = 0, qt = 0;
                for (size_t i = 0; i < nnodes; i++)
                    if (bad[i] & N_BAD)
                        queue[qt++] = (uint32_t)i;
                while (qh < qt) {
                    uint32_t n = queue[qh++];
                    for (uint32_t k = start[n]; k < start[n + 1]; k++) {
                        if (!(bad[par[k]] & N_BAD)) {
                            bad[par[k]] |= N_BAD;
                            queue[qt++] = par[k];
                        }
                    }
                }
            }
        }
        free(start);
        free(par);
        free(queue);
    }
    if (!rc) {
        size_t good = 0;
        for (size_t i = 0; i < nnodes; i++)
            good += !(bad[i] & (N_BAD | N_BLOB));
        if (r->complete.n + good > CORE_COMPLETE_MAX)
            guts_idset_free(&r->complete);
        /* Blobs stay out of the complete cache: a blob is a leaf, checked
         * by one lookup whenever a walk meets it again, so caching it saves
         * little and would double the cache (half the objects of a
         * repository are blobs; 21 bytes each at load 1/2). */
        for (size_t i = 0; i < nnodes; i++) {
            if (bad[i] & N_BAD)
                guts_idset_insert(incomplete, &nodes[i]);
            else if (!(bad[i] & N_BLOB))
                guts_idset_insert(&r->complete, &nodes[i]);
        }
    }
    free(w.stack);
    free(from);
    free(nodes);
    free(bad);
    free(edges);
    idmap_free(&map);
    return rc;
}

/* ---- Ancestry oracle for the merge --------------------------------------- */

int refs_is_ancestor(void *ctx, const guts_id *anc, const guts_id *desc)
{
    refs_anc_ctx *x = ctx;
    walk w = {0};
    guts_idset seen = {0};
    int found = 0;
    size_t steps = 0;
    wpush(&w, desc, 0);
    while (w.n && !w.err && !found && steps < CORE_ANCESTRY_MAX) {
        witem it = w.stack[--w.n];
        if (guts_idset_insert(&seen, &it.id) <= 0)
            continue;
        steps++;
        int type;
        void *data;
        size_t len;
        if (x->c->st.get(x->c->st.ctx, x->r->key, &it.id, &type, &data, &len) != GUTS_OK)
            continue; /* unknown: treat as not an ancestor (a conflict is kept) */
        if (type == GUTS_OBJ_COMMIT) {
            walk p = {0};
            children_of(&p, type, data, len, 1);
            for (size_t i = 0; i < p.n; i++) {
                if (guts_id_cmp(&p.stack[i].id, anc) == 0)
                    found = 1;
                wpush(&w, &p.stack[i].id, 0);
            }
            free(p.stack);
        }
        free(data);
    }
    free(w.stack);
    guts_idset_free(&seen);
    return found;
}
