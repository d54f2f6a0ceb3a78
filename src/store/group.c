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

/* A map slot's tag: id bytes the slot's hash (store_id_slot) does not
 * use, so a probe reads an entry only when its id likely matches. Most
 * probes of a pull miss (a new id, or a delta base stored before the
 * group); each read of an entry there was a cache miss. */
static uint64_t map_tag(const guts_id *id)
{
    uint32_t t;
    memcpy(&t, id->b + 12, sizeof t);
    return (uint64_t)t << 32;
}

/* Entry i, of id, joins the map. The id is the caller's copy: read back
 * from an entry just written to a fresh cache line, it would wait for that
 * line to arrive from memory (~4% of a receiving node's loop at 202,000
 * objects, docs/performance.md). */
static void map_insert(store_group *g, const guts_id *id, size_t i)
{
    size_t s = store_id_slot(id) & g->mask;
    while (g->map[s])
        s = (s + 1) & g->mask;
    g->map[s] = map_tag(id) | (uint64_t)(i + 1);
}

/* A map of cap slots over the first g->n entries. */
static int map_build(store_group *g, size_t cap)
{
    uint64_t *m = calloc(cap, sizeof *m);
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
    uint64_t tag = map_tag(id), m;
    for (size_t s = store_id_slot(id) & g->mask; (m = g->map[s]) != 0; s = (s + 1) & g->mask) {
        if ((m >> 32 << 32) != tag) continue;
        group_ent *e = &g->ents[(uint32_t)m - 1];
        if (memcmp(e->id.b, id->b, GUTS_ID_LEN) == 0) return e;
    }
    return NULL;
}

void group_prefetch(const store_group *g, const guts_id *id)
{
    if (g->map) __builtin_prefetch(&g->map[store_id_slot(id) & g->mask]);
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
    if (g->n >= UINT32_MAX - 1) return GUTS_ENOMEM; /* a map slot names an entry in 32 bits */
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

int store_obj_lookup(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v)
{
    const group_ent *e = r->grp.n ? group_find(&r->grp, id) : NULL;
    if (e) {
        v->mv_data = e->rec;
        v->mv_size = e->len;
        return 0;
    }
    MDB_val k = {GUTS_ID_LEN, (void *)id->b};
    return mdb_get(txn, r->se->objects, &k, v);
}

typedef struct sorted_ent {
    guts_id id;
    size_t i;
} sorted_ent;

static int by_id(const void *a, const void *b)
{
    return guts_id_cmp(&((const sorted_ent *)a)->id, &((const sorted_ent *)b)->id);
}

/* order[0..n) by id. A pull's records come mostly in id order, so the
 * put order is one long ascending run with a split pull's held deltas
 * (ids below it) in between: the run is kept as it is, the rest (tmp,
 * room for n) sorted and merged in from the back. qsort of the whole was
 * ~4% of a receiving node's loop at 202,000 objects. */
static void order_sort(sorted_ent *order, sorted_ent *tmp, size_t n)
{
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (na == 0 || guts_id_cmp(&order[i].id, &order[na - 1].id) > 0)
            order[na++] = order[i];
        else
            tmp[nb++] = order[i];
    }
    if (nb == 0) return;
    qsort(tmp, nb, sizeof *tmp, by_id);
    size_t k = n;
    while (nb > 0) {
        if (na > 0 && guts_id_cmp(&order[na - 1].id, &tmp[nb - 1].id) > 0)
            order[--k] = order[--na];
        else
            order[--k] = tmp[--nb];
    }
}

typedef struct commit_ctx {
    store_group *g;
    uint8_t *skip;     /* stored meanwhile (by another writer, or a held delta's id) */
    sorted_ent *order; /* the entries by id */
} commit_ctx;

/* When another writer committed since the group's first put read the
 * store, it may have stored some of the group's objects: those are
 * skipped, and the depth of every delta is set again from its base as
 * stored now (in put order, so a base's is final before its deltas'). A
 * chain that would pass the bound makes the commit fail (GUTS_EAGAIN). */
static int recheck(store_group *g, MDB_txn *txn, store_env *se, uint8_t *skip)
{
    for (size_t i = 0; i < g->n; i++) {
        group_ent *e = &g->ents[i];
        MDB_val k = {GUTS_ID_LEN, e->id.b}, v;
        int rc = mdb_get(txn, se->objects, &k, &v);
        skip[i] = rc == 0;
        if (rc == 0) continue;
        if (rc != MDB_NOTFOUND) return rc;
        if (e->rec[1] != ENC_ZSTD_DELTA) continue;
        guts_id bid;
        memcpy(bid.b, e->rec + REC_HDR, GUTS_ID_LEN);
        const group_ent *b = group_find(g, &bid);
        unsigned bd;
        if (b && !skip[b - g->ents]) {
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

static int commit_fn(guts_repo *r, MDB_txn *txn, void *arg)
{
    commit_ctx *c = arg;
    store_group *g = c->g;
    store_env *se = r->se;
    store_set set;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;
    memset(c->skip, 0, g->n);
    if (mdb_txn_id(txn) != g->txnid + 1 && (rc = recheck(g, txn, se, c->skip))) return rc;
    if ((rc = store_set_load(r, txn, &set))) return rc;
    if ((rc = mdb_cursor_open(txn, se->objects, &cur))) return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    guts_id last;
    int append = rc == MDB_NOTFOUND; /* an empty tree: append all */
    if (rc == 0) memcpy(last.b, k.mv_data, GUTS_ID_LEN);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    for (size_t j = 0; j < g->n && rc == 0; j++) {
        const group_ent *e = &g->ents[c->order[j].i];
        if (c->skip[c->order[j].i]) continue;
        if (!append) append = guts_id_cmp(&e->id, &last) > 0;
        k = (MDB_val){GUTS_ID_LEN, (void *)e->id.b};
        v = (MDB_val){e->len, e->rec};
        rc = mdb_cursor_put(cur, &k, &v, append ? MDB_APPEND : MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) { /* a held delta's id stored meanwhile (rput_one) */
            c->skip[c->order[j].i] = 1;
            rc = 0;
        }
    }
    mdb_cursor_close(cur);
    /* The log in put order, as ungrouped puts would have written it. */
    if (rc == 0) rc = mdb_cursor_open(txn, se->log, &set.log);
    for (size_t i = 0; i < g->n && rc == 0; i++)
        if (!c->skip[i]) rc = store_set_add(r, txn, &set, &g->ents[i].id, g->ents[i].len);
    if (set.log) mdb_cursor_close(set.log);
    return rc ? rc : store_set_save(r, txn, &set);
}

int store_group_commit(guts_repo *r)
{
    if (!r->grp.n) return GUTS_OK;
    store_group g = r->grp; /* the store_write below must not commit it again */
    memset(&r->grp, 0, sizeof r->grp);
    commit_ctx c = {.g = &g, .skip = malloc(g.n), .order = malloc(g.n * sizeof *c.order)};
    sorted_ent *tmp = malloc(g.n * sizeof *tmp);
    int rc = GUTS_ENOMEM;
    if (c.skip && c.order && tmp) {
        for (size_t i = 0; i < g.n; i++)
            c.order[i] = (sorted_ent){.id = g.ents[i].id, .i = i};
        order_sort(c.order, tmp, g.n);
        free(tmp);
        tmp = NULL;
        rc = store_write(r, 2 * g.bytes + 256 * g.n, commit_fn, &c);
    }
    free(tmp);
    free(c.skip);
    free(c.order);
    group_free(&g);
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
    return r->grp.bytes >= r->grouped ? store_group_commit(r) : GUTS_OK;
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

int guts_repo_group_holds(const guts_repo *r, const guts_id *from, const guts_id *to)
{
    if (!r || !r->grp.n) return 0;
    /* the parts of a split pull go up in id order: the group's ids lie
     * below the next part's range, known without a scan */
    if ((from && guts_id_cmp(&r->grp.hi, from) < 0) || (to && guts_id_cmp(&r->grp.lo, to) >= 0))
        return 0;
    for (size_t i = 0; i < r->grp.n; i++) {
        const guts_id *id = &r->grp.ents[i].id;
        if ((!from || guts_id_cmp(id, from) >= 0) && (!to || guts_id_cmp(id, to) < 0)) return 1;
    }
    return 0;
}
