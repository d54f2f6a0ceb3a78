/* group.c - grouped puts (guts_repo_group): a bulk load's records held in
 * memory and written in one transaction, in id order.
 *
 * A put commits its own transaction otherwise. For an import of thousands
 * of random ids a batch touches nearly every leaf of the objects tree, so
 * each commit copied most of the tree, and LMDB reuses a commit's freed
 * pages only two commits later: the file ended up holding the tree plus
 * about one old copy of it (zlib: 1,027 free pages of 3,763). A group
 * commits once per its bound of records instead, and writes them
 * sorted, appending (MDB_APPEND: full leaves) where the ids pass the
 * tree's last key, which a fresh store's do throughout.
 *
 * The commit is an ordinary store_write: a full map grows and the commit
 * is replayed from the records in memory. Until then the records are the
 * handle's alone: its puts find them (bases, repeated ids) through
 * store_obj_lookup.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Records are copied into chunks of this size (or one of their own). */
#define GROUP_CHUNK ((size_t)4 << 20)

/* Entry i, of id, joins the map. The id is the caller's copy: read back
 * from an entry just written to a fresh cache line, it would wait for that
 * line to arrive from memory (~4% of a receiving node's loop at 202,000
 * objects, docs/performance.md). */
static void map_insert(store_group *g, const guts_id *id, size_t i)
{
    size_t s = store_id_slot(id) & g->mask;
    while (g->map[s])
        s = (s + 1) & g->mask;
    g->map[s] = i + 1;
}

/* A map of cap slots over the first g->n entries. */
static int map_build(store_group *g, size_t cap)
{
    size_t *m = calloc(cap, sizeof *m);
    if (!m) return GUTS_ENOMEM;
    free(g->map);
    g->map = m;
    g->mask = cap - 1;
    for (size_t i = 0; i < g->n; i++)
        map_insert(g, &g->ents[i].id, i);
    return GUTS_OK;
}

group_ent *group_find(const store_group *g, const guts_id *id)
{
    if (!g->map) return NULL;
    for (size_t s = store_id_slot(id) & g->mask; g->map[s]; s = (s + 1) & g->mask) {
        group_ent *e = &g->ents[g->map[s] - 1];
        if (memcmp(e->id.b, id->b, GUTS_ID_LEN) == 0) return e;
    }
    return NULL;
}

/* Entry i, of id, joins the group's lo and hi (id: as map_insert's). */
static void bounds_add(store_group *g, const guts_id *id, size_t i)
{
    if (i == 0 || guts_id_cmp(id, &g->hi) > 0) g->hi = *id;
    if (i == 0 || guts_id_cmp(id, &g->lo) < 0) g->lo = *id;
}

static uint8_t *chunk_room(store_group *g, size_t len)
{
    if (g->nchunks && g->chunk_cap - g->chunk_used >= len) {
        uint8_t *p = g->chunks[g->nchunks - 1] + g->chunk_used;
        g->chunk_used += len;
        return p;
    }
    uint8_t **nc = realloc(g->chunks, (g->nchunks + 1) * sizeof *nc);
    if (!nc) return NULL;
    g->chunks = nc;
    size_t cap = len > GROUP_CHUNK ? len : GROUP_CHUNK;
    if (!(nc[g->nchunks] = malloc(cap))) return NULL;
    g->nchunks++;
    g->chunk_cap = cap;
    g->chunk_used = len;
    return nc[g->nchunks - 1];
}

int group_add(store_group *g, const guts_id *id, const uint8_t *rec, size_t len,
              const uint8_t *tail, size_t tlen)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 4096;
        group_ent *ne = realloc(g->ents, cap * sizeof *ne);
        if (!ne) return GUTS_ENOMEM;
        g->ents = ne;
        g->cap = cap;
    }
    if (2 * (g->n + 1) > g->mask + 1 || !g->map) {
        size_t cap = g->map ? 2 * (g->mask + 1) : 8192;
        if (map_build(g, cap)) return GUTS_ENOMEM;
    }
    uint8_t *p = chunk_room(g, len + tlen ? len + tlen : 1);
    if (!p) return GUTS_ENOMEM;
    memcpy(p, rec, len);
    if (tlen) memcpy(p + len, tail, tlen);
    g->ents[g->n] = (group_ent){.id = *id, .rec = p, .len = len + tlen};
    bounds_add(g, id, g->n);
    map_insert(g, id, g->n++);
    g->bytes += len + tlen;
    return GUTS_OK;
}

void group_truncate(store_group *g, size_t n)
{
    if (n >= g->n) return;
    for (size_t i = n; i < g->n; i++)
        g->bytes -= g->ents[i].len;
    g->n = n; /* their chunk bytes stay until the group is freed */
    /* the map rebuilt in place: no allocation, so the earlier puts'
     * entries (already answered GUTS_OK) cannot be lost here */
    memset(g->map, 0, (g->mask + 1) * sizeof *g->map);
    for (size_t i = 0; i < g->n; i++) {
        bounds_add(g, &g->ents[i].id, i);
        map_insert(g, &g->ents[i].id, i);
    }
}

void group_free(store_group *g)
{
    for (size_t i = 0; i < g->nchunks; i++)
        free(g->chunks[i]);
    free(g->chunks);
    free(g->ents);
    free(g->map);
    memset(g, 0, sizeof *g);
}

int store_obj_lookup_at(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v, int *low)
{
    const group_ent *e = r->grp.n ? group_find(&r->grp, id) : NULL;
    *low = 0;
    if (!e) {
        /* the tree before the low records: most lookups that miss the group
         * are a delta's base in the tree */
        MDB_val k = {GUTS_ID_LEN, (void *)id->b};
        int rc = mdb_get(txn, r->se->objects, &k, v);
        if (rc != MDB_NOTFOUND || !r->low.n || !(e = group_find(&r->low, id))) return rc;
        *low = 1;
    }
    v->mv_data = e->rec;
    v->mv_size = e->len;
    return 0;
}

int store_obj_lookup(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v)
{
    int low;
    return store_obj_lookup_at(r, txn, id, v, &low);
}

typedef struct sorted_ent {
    guts_id id;
    size_t i;
} sorted_ent;

static int by_id(const void *a, const void *b)
{
    return guts_id_cmp(&((const sorted_ent *)a)->id, &((const sorted_ent *)b)->id);
}

/* g's entries by id (the caller frees). */
static sorted_ent *sorted(const store_group *g)
{
    sorted_ent *o = malloc((g->n ? g->n : 1) * sizeof *o);
    if (!o) return NULL;
    for (size_t i = 0; i < g->n; i++)
        o[i] = (sorted_ent){.id = g->ents[i].id, .i = i};
    qsort(o, g->n, sizeof *o, by_id);
    return o;
}

/* The base of entry e when e is a delta. */
static int ent_base(const group_ent *e, guts_id *bid)
{
    if (e->rec[1] != ENC_ZSTD_DELTA) return 0;
    memcpy(bid->b, e->rec + REC_HDR, GUTS_ID_LEN);
    return 1;
}

/* When another writer committed since the group's first put read the
 * store, it may have stored some of the group's objects: those are
 * skipped, and the depth of every delta is set again from its base as
 * stored now (in put order, so a base's is final before its deltas'), or
 * as held in low (the low records, current: commit_fn checks). A chain
 * that would pass the bound makes the commit fail (GUTS_EAGAIN). */
static int recheck(store_group *g, const store_group *low, MDB_txn *txn, store_env *se,
                   uint8_t *skip)
{
    for (size_t i = 0; i < g->n; i++) {
        group_ent *e = &g->ents[i];
        MDB_val k = {GUTS_ID_LEN, e->id.b}, v;
        int rc = mdb_get(txn, se->objects, &k, &v);
        skip[i] = rc == 0;
        if (rc == 0) continue;
        if (rc != MDB_NOTFOUND) return rc;
        guts_id bid;
        if (!ent_base(e, &bid)) continue;
        const group_ent *b = group_find(g, &bid);
        if (b && skip[b - g->ents]) b = NULL;
        if (!b && low && low->n) b = group_find(low, &bid);
        unsigned bd;
        if (b) {
            bd = b->rec[1] == ENC_ZSTD_DELTA ? b->rec[REC_HDR + GUTS_ID_LEN] : 0;
        } else {
            rec_hdr h;
            k.mv_data = bid.b;
            if ((rc = mdb_get(txn, se->objects, &k, &v)) == MDB_NOTFOUND)
                return store_corrupt(&e->id, "delta base dropped meanwhile");
            if (rc) return rc;
            if (rec_parse(&v, &h)) return store_corrupt(&bid, "malformed record");
            bd = (unsigned)h.depth;
        }
        if (bd + 1 > STORE_DELTA_DEPTH_MAX) {
            guts_errmsg_set("objects stored meanwhile by another writer; import again");
            return GUTS_EAGAIN;
        }
        e->rec[REC_HDR + GUTS_ID_LEN] = (uint8_t)(bd + 1);
    }
    return GUTS_OK;
}

/* ---- Low records -----------------------------------------------------------
 *
 * A split first copy holds a delta until its base's part arrives (the
 * core's pending deltas) and stores it then, below the tree's last id:
 * 36,464 of 202,000 records on the many-small-objects repository, in 12
 * of its 13 group commits. Inserted there, each commit dirtied leaves all
 * over the tree: 132 MB written through the commits for a 25 MB tree,
 * whose random page splits left it 58% larger than the sender's. So a
 * group commit that is not asked for (its bound reached) appends what
 * lies past the tree's last id and keeps the rest here, with the deltas
 * whose base is kept (a delta is never committed before its base); all
 * of them are written when the handle commits for any other reason (a
 * ref, a count, a listing of their range, its close) or past
 * GROUP_LOW_BYTES: in id order, in transactions of GROUP_LOW_SLICE
 * records, so that each leaf is written about once and a transaction's
 * dirty pages (heap until its commit) stay a few MiB. */

/* Bound of the low records' bytes: 202,000 small objects hold ~3 MB of
 * them at the most, with their entries and map ~5 MB of RssAnon. */
#define GROUP_LOW_BYTES ((size_t)4 << 20)
/* Records per transaction of the low records' pass: at most this many
 * leaves dirty (4 KiB each, in the heap until the commit: 8 MiB). */
#define GROUP_LOW_SLICE 2048

/* Room in g for n more entries of bytes in all, so that group_add cannot
 * fail for them. */
static int group_reserve(store_group *g, size_t n, size_t bytes)
{
    size_t want = g->n + n;
    if (g->cap < want) {
        size_t cap = g->cap ? 2 * g->cap : 4096;
        while (cap < want)
            cap *= 2;
        group_ent *ne = realloc(g->ents, cap * sizeof *ne);
        if (!ne) return GUTS_ENOMEM;
        g->ents = ne;
        g->cap = cap;
    }
    if (!g->map || 2 * (want + 1) > g->mask + 1) {
        size_t cap = g->map ? 2 * (g->mask + 1) : 8192;
        while (2 * (want + 1) > cap)
            cap *= 2;
        if (map_build(g, cap)) return GUTS_ENOMEM;
    }
    bytes += n; /* an empty record takes a byte (group_add) */
    if (!g->nchunks || g->chunk_cap - g->chunk_used < bytes) {
        uint8_t **nc = realloc(g->chunks, (g->nchunks + 1) * sizeof *nc);
        if (!nc) return GUTS_ENOMEM;
        g->chunks = nc;
        size_t cap = bytes > GROUP_CHUNK ? bytes : GROUP_CHUNK;
        if (!(nc[g->nchunks] = malloc(cap))) return GUTS_ENOMEM;
        g->nchunks++;
        g->chunk_cap = cap;
        g->chunk_used = 0;
    }
    return GUTS_OK;
}

typedef struct low_ctx {
    store_group *g;
    uint8_t *skip;      /* stored meanwhile by another writer */
    uint32_t *slice;    /* each entry's transaction */
    uint32_t k;         /* this one */
    sorted_ent *order;  /* its entries, by id */
    size_t norder;
    int rechecked;      /* another writer came between */
} low_ctx;

static int low_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    low_ctx *c = arg;
    store_group *g = c->g;
    store_set set;
    MDB_cursor *cur;
    int rc;
    if (mdb_txn_id(txn) != g->txnid + 1) {
        c->rechecked = 1;
        if ((rc = recheck(g, NULL, txn, r->se, c->skip))) return rc;
    }
    if ((rc = store_set_load(r, txn, &set))) return rc;
    if ((rc = mdb_cursor_open(txn, r->se->objects, &cur))) return rc;
    for (size_t j = 0; j < c->norder && rc == 0; j++) {
        const group_ent *e = &g->ents[c->order[j].i];
        if (c->skip[c->order[j].i]) continue;
        MDB_val k = {GUTS_ID_LEN, (void *)e->id.b}, v = {e->len, e->rec};
        rc = mdb_cursor_put(cur, &k, &v, MDB_NOOVERWRITE);
    }
    mdb_cursor_close(cur);
    if (rc == 0) rc = mdb_cursor_open(txn, r->se->log, &set.log);
    for (size_t i = 0; i < g->n && rc == 0; i++)
        if (c->slice[i] == c->k && !c->skip[i])
            rc = store_set_add(r, txn, &set, &g->ents[i].id, g->ents[i].len);
    if (set.log) mdb_cursor_close(set.log);
    return rc ? rc : store_set_save(r, txn, &set);
}

/* Write the low records g (taken out of r: store_write commits r's own
 * first) in id order, GROUP_LOW_SLICE a transaction; a delta goes no
 * earlier than its base. *rechecked: another writer came since g was
 * checked. */
static int low_write(guts_repo *r, store_group *g, int *rechecked)
{
    size_t n = g->n;
    low_ctx c = {.g = g, .skip = calloc(n ? n : 1, 1), .slice = malloc((n ? n : 1) * sizeof *c.slice)};
    sorted_ent *byid = sorted(g), *order = malloc((n ? n : 1) * sizeof *order);
    size_t nslices = (n + GROUP_LOW_SLICE - 1) / GROUP_LOW_SLICE;
    size_t *at = calloc(nslices + 1, sizeof *at);
    int rc = GUTS_ENOMEM;
    if (c.skip && c.slice && byid && order && at) {
        for (size_t j = 0; j < n; j++)
            c.slice[byid[j].i] = (uint32_t)(j / GROUP_LOW_SLICE);
        for (size_t i = 0; i < n; i++) { /* put order: a base's slice is final first */
            guts_id bid;
            const group_ent *b = ent_base(&g->ents[i], &bid) ? group_find(g, &bid) : NULL;
            if (b && c.slice[b - g->ents] > c.slice[i]) c.slice[i] = c.slice[b - g->ents];
        }
        for (size_t i = 0; i < n; i++) /* by slice, then id */
            at[c.slice[i] + 1]++;
        for (size_t k = 0; k < nslices; k++)
            at[k + 1] += at[k];
        for (size_t j = 0; j < n; j++)
            order[at[c.slice[byid[j].i]]++] = byid[j];
        rc = GUTS_OK;
        for (size_t k = 0, from = 0; k < nslices && rc == 0; k++) {
            c.k = (uint32_t)k;
            c.order = order + from;
            c.norder = at[k] - from;
            from = at[k];
            if (!c.norder) continue;
            rc = store_write(r, 2 * g->bytes / nslices + 256 * c.norder, low_fn, &c);
            g->txnid = r->se->own_txnid; /* the next slice's rechecks only for others' */
        }
    }
    free(c.skip);
    free(c.slice);
    free(byid);
    free(order);
    free(at);
    *rechecked = c.rechecked;
    return rc;
}

typedef struct commit_ctx {
    store_group *g;
    uint8_t *skip;      /* stored meanwhile by another writer */
    sorted_ent *order;  /* the entries by id */
    store_group *low;   /* NULL: write every entry; else the low records, */
    uint8_t *to_low;    /* and the entries that join them instead */
    int stale;          /* another writer came since low was checked */
} commit_ctx;

static int commit_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    commit_ctx *c = arg;
    store_group *g = c->g, *low = c->low;
    store_env *se = r->se;
    store_set set;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;
    memset(c->skip, 0, g->n);
    if (low && low->n && mdb_txn_id(txn) != low->txnid + 1) {
        c->stale = 1; /* low's records would need a recheck: all written instead */
        return GUTS_EAGAIN;
    }
    if (mdb_txn_id(txn) != g->txnid + 1 && (rc = recheck(g, low, txn, se, c->skip))) return rc;
    if ((rc = store_set_load(r, txn, &set))) return rc;
    if ((rc = mdb_cursor_open(txn, se->objects, &cur))) return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    guts_id last;
    int empty = rc == MDB_NOTFOUND, append = empty; /* an empty tree: append all */
    if (rc == 0) memcpy(last.b, k.mv_data, GUTS_ID_LEN);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    if (low) { /* in put order: a base's choice is made before its deltas' */
        for (size_t i = 0; i < g->n; i++) {
            const group_ent *e = &g->ents[i];
            guts_id bid;
            c->to_low[i] = 0;
            if (c->skip[i]) continue;
            if (!empty && guts_id_cmp(&e->id, &last) < 0) {
                c->to_low[i] = 1;
            } else if (ent_base(e, &bid)) {
                /* a received delta's put found its base (GROUP_BASE_*) */
                const group_ent *b = group_find(g, &bid);
                if (b)
                    c->to_low[i] = c->to_low[b - g->ents];
                else if (e->base & GROUP_BASE_KNOWN)
                    c->to_low[i] = (e->base & GROUP_BASE_LOW) && low->n;
                else
                    c->to_low[i] = low->n && group_find(low, &bid);
            }
        }
    }
    for (size_t j = 0; j < g->n && rc == 0; j++) {
        const group_ent *e = &g->ents[c->order[j].i];
        if (c->skip[c->order[j].i] || (low && c->to_low[c->order[j].i])) continue;
        if (!append) append = guts_id_cmp(&e->id, &last) > 0;
        k = (MDB_val){GUTS_ID_LEN, (void *)e->id.b};
        v = (MDB_val){e->len, e->rec};
        rc = mdb_cursor_put(cur, &k, &v, append ? MDB_APPEND : MDB_NOOVERWRITE);
    }
    mdb_cursor_close(cur);
    /* The log in put order, as ungrouped puts would have written it. */
    if (rc == 0) rc = mdb_cursor_open(txn, se->log, &set.log);
    for (size_t i = 0; i < g->n && rc == 0; i++)
        if (!c->skip[i] && !(low && c->to_low[i]))
            rc = store_set_add(r, txn, &set, &g->ents[i].id, g->ents[i].len);
    if (set.log) mdb_cursor_close(set.log);
    return rc ? rc : store_set_save(r, txn, &set);
}

/* Write group g (taken out of r) in one transaction; with low (also taken
 * out of r), what belongs there joins it instead (room reserved: that
 * cannot fail once written). *stale: nothing was written, and low and its
 * deltas are to be written with a recheck. Frees g unless *stale. */
static int group_write(guts_repo *r, store_group *g, store_group *low, int *stale)
{
    commit_ctx c = {.g = g, .skip = malloc(g->n), .order = sorted(g), .low = low};
    int rc = GUTS_ENOMEM;
    if (low && !(c.to_low = malloc(g->n))) c.stale = 1;
    if (c.skip && c.order && !c.stale)
        rc = store_write(r, 2 * g->bytes + 256 * g->n, commit_fn, &c);
    if (rc == GUTS_OK && low) {
        for (size_t i = 0; i < g->n; i++)
            if (!c.skip[i] && c.to_low[i]) {
                group_add(low, &g->ents[i].id, g->ents[i].rec, g->ents[i].len, NULL, 0);
                guts_fp_add(&low->fp, guts_fp_of_id(&g->ents[i].id));
            }
        low->txnid = r->se->own_txnid; /* checked in that transaction */
    }
    *stale = c.stale;
    free(c.skip);
    free(c.order);
    free(c.to_low);
    if (!c.stale) group_free(g);
    return rc;
}

int store_group_commit(guts_repo *r)
{
    if (!r->grp.n && !r->low.n) return GUTS_OK;
    /* taken out: the store_writes below must not commit them again */
    store_group g = r->grp, low = r->low;
    memset(&r->grp, 0, sizeof r->grp);
    memset(&r->low, 0, sizeof r->low);
    int rc = GUTS_OK, stale;
    if (low.n) {
        int rechecked = 0;
        int fresh = g.txnid == low.txnid; /* no other writer before g's first put */
        rc = low_write(r, &low, &rechecked);
        /* nor during low's: g needs no recheck for the commits of low's */
        if (rc == GUTS_OK && fresh && !rechecked) g.txnid = r->se->own_txnid;
    }
    group_free(&low);
    if (rc == GUTS_OK && g.n) return group_write(r, &g, NULL, &stale);
    group_free(&g);
    return rc;
}

/* The commit of a group that reached its bound: what lies below the
 * tree's last id joins the low records (see above). */
static int group_commit_bound(guts_repo *r)
{
    if (!r->grp.n) return GUTS_OK;
    store_group g = r->grp, low = r->low;
    if (low.bytes + g.bytes > GROUP_LOW_BYTES || group_reserve(&r->low, g.n, g.bytes))
        return store_group_commit(r);
    low = r->low;
    memset(&r->grp, 0, sizeof r->grp);
    memset(&r->low, 0, sizeof r->low);
    int stale;
    int rc = group_write(r, &g, &low, &stale);
    r->low = low;
    if (stale) { /* another writer came: all of it, rechecked */
        r->grp = g;
        return store_group_commit(r);
    }
    if (rc) group_free(&r->low); /* emptied on failure, as the group */
    return rc;
}

int group_put_begin(guts_repo *r, MDB_txn **txn, size_t *n0)
{
    *n0 = r->grp.n;
    int rc = store_read_begin(r, txn);
    if (rc == 0 && r->grp.n == 0) r->grp.txnid = mdb_txn_id(*txn);
    return rc;
}

int group_put_end(guts_repo *r, MDB_txn *txn, size_t n0, int rc, const char *what)
{
    store_read_end(r, txn);
    if (rc) {
        group_truncate(&r->grp, n0);
        return store_mdb_err(rc, what);
    }
    return r->grp.bytes >= r->grouped ? group_commit_bound(r) : GUTS_OK;
}

int guts_repo_group(guts_repo *r, size_t bytes)
{
    if (!r) return GUTS_EINVAL;
    r->grouped = bytes;
    return bytes ? GUTS_OK : store_group_commit(r);
}

int guts_repo_group_commit(guts_repo *r)
{
    return r ? store_group_commit(r) : GUTS_EINVAL;
}

int guts_repo_group_commit_appended(guts_repo *r)
{
    return r ? group_commit_bound(r) : GUTS_EINVAL;
}

static int holds(const store_group *g, const guts_id *from, const guts_id *to)
{
    if (!g->n) return 0;
    /* the parts of a split pull go up in id order: the group's ids (and
     * the low records', below the tree's last) lie below the next part's
     * range, known without a scan */
    if ((from && guts_id_cmp(&g->hi, from) < 0) || (to && guts_id_cmp(&g->lo, to) >= 0))
        return 0;
    for (size_t i = 0; i < g->n; i++) {
        const guts_id *id = &g->ents[i].id;
        if ((!from || guts_id_cmp(id, from) >= 0) && (!to || guts_id_cmp(id, to) < 0)) return 1;
    }
    return 0;
}

int guts_repo_group_holds(const guts_repo *r, const guts_id *from, const guts_id *to)
{
    return r && (holds(&r->grp, from, to) || holds(&r->low, from, to));
}
