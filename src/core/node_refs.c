/* node_refs.c - applying ref records received from peers.
 *
 * A ref record is applied only when the closure of its target is in the
 * store (commit -> tree and parents; tree -> entries except gitlinks, mode
 * 160000; tag -> its object), so an export is always fsck-clean. Records
 * whose closure is incomplete wait in the repository's pending list; the
 * session asks its peer for the missing ids with WANT and retries as they
 * arrive, and every later session end retries too.
 *
 * The walk is costly on a first sync (it reads every commit and tree once),
 * so ids found complete are remembered per repository (the "complete"
 * cache), seeded with the targets of the refs already stored: an applied
 * ref's closure is complete by this very rule, and objects are never
 * removed. A fast-forward then walks only the new commits. Blobs are never
 * read: a tree entry's mode says it is a blob, and presence is enough (the
 * mode is read as git reads it, an octal number, by guts_tree_entry_next:
 * "040000" is a subtree as much as "40000" is).
 *
 * The merge itself is h4's CRDT rule (refmerge.h): the winner is written,
 * and a divergent loser is written as a conflict record, itself merged with
 * any conflict record already under that name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "guts/gitobj.h"

/* ---- idset: open addressing on the id's first bytes ---------------------- */

static size_t id_hash(const guts_id *id)
{
    uint64_t h;
    memcpy(&h, id->b + 4, sizeof(h));
    return (size_t)(h * 0x9e3779b97f4a7c15ull >> 7);
}

static int idset_grow(idset *s)
{
    size_t nc = s->cap ? 2 * s->cap : 32;
    guts_id *slots = calloc(nc, sizeof(guts_id));
    uint8_t *used = calloc(nc, 1);
    if (!slots || !used) {
        free(slots);
        free(used);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->used[i])
            continue;
        size_t j = id_hash(&s->slots[i]) & (nc - 1);
        while (used[j])
            j = (j + 1) & (nc - 1);
        used[j] = 1;
        slots[j] = s->slots[i];
    }
    free(s->slots);
    free(s->used);
    s->slots = slots;
    s->used = used;
    s->cap = nc;
    return GUTS_OK;
}

int idset_has(const idset *s, const guts_id *id)
{
    if (!s->cap)
        return 0;
    size_t j = id_hash(id) & (s->cap - 1);
    while (s->used[j]) {
        if (memcmp(&s->slots[j], id, sizeof(*id)) == 0)
            return 1;
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

/* 1 added, 0 already there, <0 error. */
int idset_add(idset *s, const guts_id *id)
{
    if ((s->n + 1) * 2 > s->cap && idset_grow(s))
        return GUTS_ENOMEM;
    size_t j = id_hash(id) & (s->cap - 1);
    while (s->used[j]) {
        if (memcmp(&s->slots[j], id, sizeof(*id)) == 0)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->used[j] = 1;
    s->slots[j] = *id;
    s->n++;
    return 1;
}

void idset_clear(idset *s)
{
    free(s->slots);
    free(s->used);
    memset(s, 0, sizeof(*s));
}

/* ---- Compact ref records ------------------------------------------------- */

void cref_free(cref *r)
{
    free(r->name);
    free(r->symref);
    r->name = r->symref = NULL;
}

int cref_from_wire(cref *out, const guts_wire_ref *w)
{
    memset(out, 0, sizeof(*out));
    if (!w->name || guts_refname_check(w->name) != GUTS_OK)
        return GUTS_EINVAL;
    if (w->symref && (strlen(w->symref) > GUTS_REFNAME_MAX || guts_refname_check(w->symref)))
        return GUTS_EINVAL;
    out->name = strdup(w->name);
    out->symref = w->symref && w->symref[0] ? strdup(w->symref) : NULL;
    if (!out->name || (w->symref && w->symref[0] && !out->symref)) {
        cref_free(out);
        return GUTS_ENOMEM;
    }
    if (!out->symref) /* a symbolic ref has no target (the store drops it too) */
        out->target = w->target;
    out->clock = w->clock;
    out->writer = w->writer;
    return GUTS_OK;
}

void cref_to_ref(const cref *in, guts_ref *out)
{
    memset(out, 0, sizeof(*out));
    strcpy(out->name, in->name);
    if (in->symref)
        strcpy(out->symref, in->symref);
    out->target = in->target;
    out->clock = in->clock;
    out->writer = in->writer;
}

void repo_free_state(lrepo *r)
{
    for (size_t i = 0; i < r->npending; i++)
        cref_free(&r->pending[i]);
    free(r->pending);
    r->pending = NULL;
    r->npending = r->cappending = 0;
    idset_clear(&r->complete);
}

static int cref_cmp(const cref *x, const cref *y)
{
    guts_ref *t = malloc(2 * sizeof(guts_ref));
    if (!t)
        return strcmp(x->name, y->name); /* only equality matters to callers */
    cref_to_ref(x, t);
    cref_to_ref(y, t + 1);
    int rc = guts_ref_cmp(t, t + 1);
    free(t);
    return rc;
}

/* Pending records are kept per (name, record), not per name: keeping only
 * the greater record of a name let one whose target can never arrive (a
 * byte flipped in transit, or a forged record) shadow the valid record
 * behind it forever. Each record now waits on its own closure, the merge
 * rule orders whichever complete, and one that never completes is dropped
 * after CORE_REF_TRIES_MAX sessions (refs_apply_pending). */
void refs_take(guts_core *c, lrepo *r, cref *refs, size_t n)
{
    (void)c;
    for (size_t i = 0; i < n; i++) {
        size_t same = 0, worst = SIZE_MAX;
        int dup = 0;
        for (size_t j = 0; j < r->npending && !dup; j++) {
            if (strcmp(r->pending[j].name, refs[i].name) != 0)
                continue;
            if (cref_cmp(&r->pending[j], &refs[i]) == 0) {
                dup = 1;
                break;
            }
            same++;
            /* the one tried most, the lesser on a tie, makes room */
            if (worst == SIZE_MAX || r->pending[j].tries > r->pending[worst].tries ||
                (r->pending[j].tries == r->pending[worst].tries &&
                 cref_cmp(&r->pending[j], &r->pending[worst]) < 0))
                worst = j;
        }
        if (dup) {
            cref_free(&refs[i]);
            continue;
        }
        if (same >= CORE_REFS_PER_NAME_MAX) {
            cref_free(&r->pending[worst]);
            r->pending[worst] = refs[i];
            continue;
        }
        if (r->npending >= CORE_REFS_PENDING_MAX) {
            cref_free(&refs[i]);
            continue;
        }
        if (r->npending == r->cappending) {
            size_t nc = r->cappending ? 2 * r->cappending : 16;
            cref *p = realloc(r->pending, nc * sizeof(cref));
            if (!p) {
                cref_free(&refs[i]);
                continue;
            }
            r->pending = p;
            r->cappending = nc;
        }
        r->pending[r->npending++] = refs[i];
    }
}

/* ---- Object parsing ------------------------------------------------------ */

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
        idset_add(&r->complete, &ref->target);
    return 0;
}

/* id -> index map for one walk: open addressing over indexes into the
 * walk's own node array (slot = index + 1, 0 empty), so a node costs 8
 * bytes here at load 1/2 instead of a second copy of its id (a walk of
 * 200,000 objects took ~10 MB more with copies). */
typedef struct idmap {
    uint32_t *slots;
    size_t n, cap;
} idmap;

static int idmap_grow(idmap *m, const guts_id *nodes)
{
    size_t nc = m->cap ? 2 * m->cap : 256;
    uint32_t *sl = calloc(nc, sizeof(uint32_t));
    if (!sl)
        return GUTS_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i])
            continue;
        size_t j = id_hash(&nodes[m->slots[i] - 1]) & (nc - 1);
        while (sl[j])
            j = (j + 1) & (nc - 1);
        sl[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = sl;
    m->cap = nc;
    return GUTS_OK;
}

/* Index of id among nodes, or -1. */
static long idmap_get(const idmap *m, const guts_id *nodes, const guts_id *id)
{
    if (!m->cap)
        return -1;
    size_t j = id_hash(id) & (m->cap - 1);
    while (m->slots[j]) {
        if (memcmp(&nodes[m->slots[j] - 1], id, sizeof(*id)) == 0)
            return (long)m->slots[j] - 1;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

/* Add nodes[idx] (not present). */
static int idmap_put(idmap *m, const guts_id *nodes, uint32_t idx)
{
    if ((m->n + 1) * 2 > m->cap && idmap_grow(m, nodes))
        return GUTS_ENOMEM;
    size_t j = id_hash(&nodes[idx]) & (m->cap - 1);
    while (m->slots[j])
        j = (j + 1) & (m->cap - 1);
    m->slots[j] = idx + 1;
    m->n++;
    return GUTS_OK;
}

static void idmap_free(idmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
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
static int closure(guts_core *c, lrepo *r, idset *incomplete, const guts_id *target,
                   guts_id *want, size_t cap, size_t *nwant, int *complete)
{
    if (r->complete.n == 0)
        c->st.refs(c->st.ctx, r->key, 0, seed_cb, r);
    *complete = 1;
    if (idset_has(&r->complete, target))
        return GUTS_OK;
    walk w = {0};
    idmap map = {0};
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
        if (idset_has(&r->complete, &it.id))
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
            if (idmap_put(&map, nodes, (uint32_t)idx)) {
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
        if (idset_has(incomplete, &it.id)) {
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
            idset_clear(&r->complete);
        /* Blobs stay out of the complete cache: a blob is a leaf, checked
         * by one lookup whenever a walk meets it again, so caching it saves
         * little and would double the cache (half the objects of a
         * repository are blobs; 21 bytes each at load 1/2). */
        for (size_t i = 0; i < nnodes; i++) {
            if (bad[i] & N_BAD)
                idset_add(incomplete, &nodes[i]);
            else if (!(bad[i] & N_BLOB))
                idset_add(&r->complete, &nodes[i]);
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

typedef struct anc_ctx {
    guts_core *c;
    lrepo *r;
} anc_ctx;

static int is_ancestor(void *ctx, const guts_id *anc, const guts_id *desc)
{
    anc_ctx *x = ctx;
    walk w = {0};
    idset seen = {0};
    int found = 0;
    size_t steps = 0;
    wpush(&w, desc, 0);
    while (w.n && !w.err && !found && steps < CORE_ANCESTRY_MAX) {
        witem it = w.stack[--w.n];
        if (idset_add(&seen, &it.id) <= 0)
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
    idset_clear(&seen);
    return found;
}

/* ---- Applying ------------------------------------------------------------ */

/* Records to write, flushed in one refs_put (one write transaction, one
 * fsync) per this many: applying a clone's 1,000 refs one transaction each
 * would stall the node for seconds. Lookups scan the batch linearly. */
#define REFS_BATCH 256

/* What a queued record is, for the event made once it is written. */
enum { BATCH_QUIET = 0, BATCH_REF, BATCH_CONFLICT };

typedef struct batch {
    guts_ref *recs;
    guts_id *aux;  /* BATCH_REF: the old target */
    uint8_t *what; /* BATCH_* */
    size_t n;
    size_t ref_events, ref_more; /* this pass: REF_UPDATED events made, and not */
} batch;

/* A conflict record new on this node (made here or received), once
 * written: one line with what settles it, and the count. ref: "" when the
 * name was cut. */
static void conflict_note(guts_core *c, lrepo *r, const char *ref, const guts_ref *conf,
                          const guts_id *winner)
{
    char lost[GUTS_HEX_LEN + 1], won[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&conf->target, lost);
    guts_id_to_hex(winner, won);
    c->ctr.conflicts++;
    core_log(c, GUTS_LOG_WARN,
             "conflict on %s in %s: %.12s lost to %.12s and is kept as %s (guts conflicts %s; "
             "guts resolve settles it)",
             ref[0] ? ref : "a ref", r->key, lost, guts_id_is_zero(winner) ? "a delete" : won,
             conf->name, r->key);
}

/* The events of written records: conflicts always, ref updates up to
 * GUTS_CORE_REF_EVENTS_MAX a pass (the rest counted in ref_more). */
static void batch_events(guts_core *c, lrepo *r, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const guts_ref *rec = &b->recs[i];
        if (b->what[i] == BATCH_CONFLICT) {
            /* The winner as stored now: later records of this batch (the
             * ref's own, when the conflict record came first) are in. */
            char ref[GUTS_REFNAME_MAX + 1]; /* "" when the record's name was cut */
            guts_ref win;
            guts_id winner = {{0}};
            if (guts_ref_conflict_ref(rec->name, ref) == GUTS_OK &&
                c->st.ref_get(c->st.ctx, r->key, ref, &win) == GUTS_OK && !win.symref[0])
                winner = win.target;
            conflict_note(c, r, ref, rec, &winner);
            core_event(c, GUTS_EV_CONFLICT, r->key, ref, &rec->target, &winner, &rec->writer,
                       rec->name);
        } else if (b->what[i] == BATCH_REF) {
            if (b->ref_events == GUTS_CORE_REF_EVENTS_MAX) {
                b->ref_more++;
                continue;
            }
            b->ref_events++;
            guts_id now = {{0}};
            if (!rec->symref[0]) now = rec->target;
            core_event(c, GUTS_EV_REF_UPDATED, r->key, rec->name, &b->aux[i], &now, &rec->writer,
                       NULL);
        }
    }
}

static int batch_flush(guts_core *c, lrepo *r, batch *b)
{
    if (!b->n)
        return GUTS_OK;
    int rc = c->st.refs_put(c->st.ctx, r->key, b->recs, b->n);
    if (rc == GUTS_OK) {
        c->ctr.refs_applied += b->n;
        for (size_t i = 0; i < b->n; i++)
            if (!b->recs[i].symref[0] && !guts_id_is_zero(&b->recs[i].target))
                idset_add(&r->complete, &b->recs[i].target);
        batch_events(c, r, b);
    }
    b->n = 0;
    return rc;
}

/* The current record of name: the batch's if it has one, else the store's. */
static int lookup(guts_core *c, lrepo *r, const batch *b, const char *name, guts_ref *out)
{
    for (size_t i = b->n; i-- > 0;) {
        if (strcmp(b->recs[i].name, name) == 0) {
            *out = b->recs[i];
            return GUTS_OK;
        }
    }
    return c->st.ref_get(c->st.ctx, r->key, name, out);
}

/* Queue rec, replacing a queued record of the same name (whose event
 * keeps its first old target). what and aux: for its event (batch). */
static int batch_put(guts_core *c, lrepo *r, batch *b, const guts_ref *rec, int what,
                     const guts_id *aux)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->recs[i].name, rec->name) == 0) {
            b->recs[i] = *rec;
            if (what != BATCH_QUIET) b->what[i] = (uint8_t)what;
            return GUTS_OK;
        }
    }
    if (b->n == REFS_BATCH) {
        int rc = batch_flush(c, r, b);
        if (rc)
            return rc;
    }
    b->what[b->n] = (uint8_t)what;
    memset(&b->aux[b->n], 0, sizeof b->aux[b->n]);
    if (aux) b->aux[b->n] = *aux;
    b->recs[b->n++] = *rec;
    return GUTS_OK;
}

/* Merge one incoming record; 1 applied (or obsolete), 0 wait, <0 error. */
static int apply_one(guts_core *c, lrepo *r, idset *incomplete, batch *b, const cref *p,
                     guts_id *want, size_t cap, size_t *nwant)
{
    guts_ref *in = malloc(6 * sizeof(guts_ref));
    if (!in)
        return GUTS_ENOMEM;
    guts_ref *cur = in + 1, *res = in + 2, *conf = in + 3, *old = in + 4, *m = in + 5;
    cref_to_ref(p, in);
    int have = lookup(c, r, b, in->name, cur) == GUTS_OK;
    int rc = 1;
    if (have && guts_ref_cmp(cur, in) == 0)
        goto out; /* already applied */
    if (!in->symref[0] && !guts_id_is_zero(&in->target)) {
        int complete;
        rc = closure(c, r, incomplete, &in->target, want, cap, nwant, &complete);
        if (rc)
            goto out;
        if (!complete) {
            rc = 0;
            goto out;
        }
    }
    anc_ctx ax = {c, r};
    int has_conf = 0;
    rc = guts_ref_merge(have ? cur : NULL, in, is_ancestor, &ax, res, conf, &has_conf);
    if (rc < 0) {
        rc = 0;
        goto out;
    }
    rc = GUTS_OK;
    if (!have || guts_ref_cmp(res, cur) != 0) {
        /* an event when what the ref names changes (not for a clock bump);
         * a conflict record made elsewhere is a conflict here when it is
         * new here (each node says so once, whichever node made it) */
        guts_id was = {{0}}, now = {{0}};
        if (have && !cur->symref[0]) was = cur->target;
        if (!res->symref[0]) now = res->target;
        int moved = !have || memcmp(&was, &now, sizeof was) != 0 ||
                    strcmp(cur->symref, res->symref) != 0;
        int what = moved ? BATCH_REF : BATCH_QUIET;
        if (guts_ref_is_conflict_name(res->name)) {
            what = BATCH_QUIET;
            if (!have && !guts_id_is_zero(&now)) what = BATCH_CONFLICT;
        }
        rc = batch_put(c, r, b, res, what, &was);
    }
    if (!rc && has_conf) {
        /* a conflict record merges with one already under its name */
        int hj = 0;
        guts_ref *junk = cur;
        if (lookup(c, r, b, conf->name, old) == GUTS_OK) {
            if (guts_ref_merge(old, conf, NULL, NULL, m, junk, &hj) == GUTS_OK &&
                guts_ref_cmp(m, old) != 0)
                rc = batch_put(c, r, b, m, BATCH_QUIET, NULL);
        } else {
            rc = batch_put(c, r, b, conf, BATCH_CONFLICT, NULL);
        }
    }
    if (!rc)
        rc = 1;
out:
    free(in);
    return rc;
}

int refs_apply_pending(guts_core *c, lrepo *r, guts_id *want, size_t cap, size_t *nwant,
                       int count)
{
    *nwant = 0;
    size_t w = 0;
    int changed = 0;
    idset incomplete = {0};
    batch b = {.recs = malloc(REFS_BATCH * sizeof(guts_ref)),
               .aux = malloc(REFS_BATCH * sizeof(guts_id)),
               .what = malloc(REFS_BATCH)};
    if (!b.recs || !b.aux || !b.what) {
        free(b.recs);
        free(b.aux);
        free(b.what);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < r->npending; i++) {
        int rc = apply_one(c, r, &incomplete, &b, &r->pending[i], want, cap, nwant);
        if (rc == 1) {
            changed = 1;
            cref_free(&r->pending[i]);
        } else if (rc == 0 && count && ++r->pending[i].tries >= CORE_REF_TRIES_MAX) {
            /* its closure never completed: a damaged or forged target */
            c->ctr.refs_dropped++;
            core_log(c, GUTS_LOG_WARN, "ref %s in %s dropped: closure incomplete after %u sessions",
                     r->pending[i].name, r->key, (unsigned)r->pending[i].tries);
            cref_free(&r->pending[i]);
        } else {
            if (rc < 0)
                core_log(c, GUTS_LOG_WARN, "ref %s in %s not applied: %s", r->pending[i].name,
                         r->key, guts_strerror(rc));
            r->pending[w++] = r->pending[i];
        }
    }
    r->npending = w;
    int frc = batch_flush(c, r, &b);
    if (frc)
        core_log(c, GUTS_LOG_WARN, "refs of %s not written: %s", r->key, guts_strerror(frc));
    if (b.ref_more) {
        char more[48];
        snprintf(more, sizeof more, "and %zu more refs updated", b.ref_more);
        core_event(c, GUTS_EV_REF_UPDATED, r->key, "", NULL, NULL, NULL, more);
    }
    free(b.recs);
    free(b.aux);
    free(b.what);
    idset_clear(&incomplete);
    if (changed)
        core_repo_refresh(c, r);
    return GUTS_OK;
}
