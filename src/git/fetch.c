/* fetch.c - the helper's `fetch`: objects from the store into the local
 * repository as one pack.
 *
 * What to send is decided as git's own upload-pack does without a
 * negotiation round: the local repository's ref targets ("haves") and git's
 * requested ids ("wants") enter one priority queue of commits ordered by
 * committer date, newest first. A commit reached from a have is
 * uninteresting and passes that on to its parents; a commit reached only
 * from wants is sent. The walk stops as soon as nothing interesting is left
 * in the queue, so a fetch of three new commits reads a handful of commits,
 * not the history. Dates only steer the order: a skewed date can make the
 * walk send a commit the local repository already has (git does the same),
 * never skip one it lacks, because a commit is left out only when it is
 * marked reachable from a have.
 *
 * Trees and blobs: those of the "edge" commits (uninteresting parents of
 * sent commits) are known to the local repository and marked first; the
 * trees of sent commits are then walked, skipping anything known or already
 * selected. A clone has no haves: everything reachable is sent.
 *
 * The pack (fetch_pack.c) is written from what the walk selects; guts-node's
 * upload-pack (fetch_serve.c) runs the same walk with include-tag, shallow
 * and deepen. fetch_int.h is what the three share.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "fetch_int.h"
#include "guts/gitobj.h"

int fetch_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return GUTS_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *np = realloc(*p, c * elem);
    if (!np) return GUTS_ENOMEM;
    *p = np;
    *cap = c;
    return GUTS_OK;
}

int fetch_corrupt_err(char *err, const guts_id *id, const char *what)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    return guts_git_errf(err, GUTS_ECORRUPT, "stored object %s: %s", hex, what);
}

int fetch_corrupt(walk *w, const guts_id *id, const char *what)
{
    return fetch_corrupt_err(w->err, id, what);
}

int fetch_get_obj_r(guts_repo *r, char *err, const guts_id *id, int *type, void **data,
                     size_t *len)
{
    int rc = guts_repo_get(r, id, type, data, len);
    if (rc && rc != GUTS_ENOTFOUND) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        return guts_git_errf(err, rc, "read %s from the store: %s (%s)", hex, guts_strerror(rc),
                           guts_store_errmsg());
    }
    return rc;
}

/* Keep data (id's decoded content, malloc'd) for the pack writer while
 * w->keep_max allows (walk.kept), else free it. */
static void keep_or_free(walk *w, const guts_id *id, int type, void *data, size_t len)
{
    size_t slot;
    int added;
    if (w->keep_max && w->kept_bytes + len <= w->keep_max && w->nkept < UINT32_MAX &&
        fetch_grow((void **)&w->keptv, &w->capkept, w->nkept + 1, sizeof *w->keptv) == GUTS_OK &&
        guts_idset_add(&w->kept, id, &slot, &added) == GUTS_OK && added) {
        w->kept.vals[slot] = (uint32_t)w->nkept;
        w->keptv[w->nkept++] = (kept_obj){.data = data, .len = len, .type = type};
        w->kept_bytes += len;
        return;
    }
    free(data);
}

const kept_obj *fetch_kept(const walk *w, const guts_id *id)
{
    if (!w->nkept) return NULL;
    size_t slot = guts_idset_find(&w->kept, id);
    return slot == SIZE_MAX ? NULL : &w->keptv[w->kept.vals[slot]];
}

/* Reads of the walk in one read transaction: one each cost a reader slot,
 * mdb_txn_begin and an abort (~2% of a cold clone's instructions with the
 * pack's own, fetch_pack_entries); renewed now and then, since a long
 * reader keeps a writer from reusing pages. */
#define FETCH_WALK_HOLD_READS 256

int fetch_get_obj(walk *w, const guts_id *id, int *type, void **data, size_t *len)
{
    int rc = fetch_get_obj_r(w->r, w->err, id, type, data, len);
    if (w->holding && ++w->hold_reads % FETCH_WALK_HOLD_READS == 0) {
        guts_repo_read_release(w->r);
        w->holding = guts_repo_read_hold(w->r) == GUTS_OK;
    }
    return rc;
}

/* ---- commits ------------------------------------------------------------- */

/* Parse a commit's headers: tree, parents (appended to w->parents), and the
 * committer's time (0 when absent or malformed: it only orders the walk). */
int fetch_parse_commit(walk *w, const guts_id *id, const char *p, size_t len, commit_info *ci)
{
    const uint8_t *d = (const uint8_t *)p;
    size_t pos = 0;
    int kind, rc, have_tree = 0;
    guts_id link;
    ci->time = 0;
    ci->parent_off = (uint32_t)w->npar;
    ci->nparents = 0;
    while ((rc = guts_obj_link_next(GUTS_OBJ_COMMIT, d, len, &pos, &kind, &link)) != 0) {
        if (kind == GUTS_LINK_TREE && have_tree) continue; /* git reads the first */
        if (kind == GUTS_LINK_TREE || !have_tree) {
            if (rc != 1 || kind != GUTS_LINK_TREE)
                return fetch_corrupt(w, id, "commit without a tree line");
            ci->tree = link;
            have_tree = 1;
            continue;
        }
        if (rc != 1) return fetch_corrupt(w, id, "bad parent line");
        if (w->npar >= UINT32_MAX) return fetch_corrupt(w, id, "too many parents");
        int e = PUSH(w, parents, npar, cappar, link);
        if (e) return e;
        ci->nparents++;
    }
    if (!have_tree) return fetch_corrupt(w, id, "commit without a tree line");
    /* The committer's time orders the walk only: 0 when absent or bad. */
    const char *end = p + len;
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        if (nl - p >= 10 && memcmp(p, "committer ", 10) == 0) {
            const char *gt = NULL;
            for (const char *q = p; q < nl; q++)
                if (*q == '>') gt = q;
            uint64_t t = 0;
            for (const char *q = gt ? gt + 2 : nl; q < nl && *q >= '0' && *q <= '9'; q++)
                t = t * 10 + (uint64_t)(*q - '0');
            ci->time = t;
        }
        p = nl + 1;
    }
    return GUTS_OK;
}

static int heap_less(const heap_ent *a, const heap_ent *b)
{
    return a->time < b->time || (a->time == b->time && a->ci < b->ci);
}

static int heap_push(walk *w, uint64_t time, uint32_t ci)
{
    int rc = PUSH(w, heap, nheap, capheap, ((heap_ent){time, ci}));
    if (rc) return rc;
    size_t i = w->nheap - 1;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_less(&w->heap[up], &w->heap[i])) break;
        heap_ent t = w->heap[up];
        w->heap[up] = w->heap[i];
        w->heap[i] = t;
        i = up;
    }
    return GUTS_OK;
}

static heap_ent heap_pop(walk *w)
{
    assert(w->nheap > 0);
    heap_ent top = w->heap[0];
    w->heap[0] = w->heap[--w->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->nheap && heap_less(&w->heap[m], &w->heap[l])) m = l;
        if (r < w->nheap && heap_less(&w->heap[m], &w->heap[r])) m = r;
        if (m == i) break;
        heap_ent t = w->heap[m];
        w->heap[m] = w->heap[i];
        w->heap[i] = t;
        i = m;
    }
    return top;
}

/* Queue a commit, reading it on first sight; or pass "uninteresting" on to
 * one already seen (re-queueing it if it was popped, so its parents learn). */
static int queue_commit(walk *w, const guts_id *id, int unint)
{
    size_t slot;
    int added, rc = guts_idset_add(&w->commits, id, &slot, &added);
    if (rc) return guts_git_errf(w->err, rc, "out of memory in the walk");
    if (!added) {
        uint8_t f = w->commits.flags[slot];
        if ((f & C_MISSING) || !unint || (f & C_UNINT)) return GUTS_OK;
        w->commits.flags[slot] |= C_UNINT;
        if (f & C_INHEAP) {
            w->nint--;
            return GUTS_OK;
        }
        w->commits.flags[slot] |= C_INHEAP;
        uint32_t ci = w->commits.vals[slot];
        return heap_push(w, w->ci[ci].time, ci);
    }
    int type;
    void *data;
    size_t len;
    rc = fetch_get_obj(w, id, &type, &data, &len);
    if (rc == GUTS_ENOTFOUND && unint) {
        w->commits.flags[slot] |= C_MISSING | C_UNINT;
        return GUTS_OK;
    }
    if (rc == GUTS_ENOTFOUND) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        return guts_git_errf(w->err, rc, "commit %s is not in the store", hex);
    }
    if (rc) return rc;
    if (type != GUTS_OBJ_COMMIT) {
        free(data);
        if (unint) { /* a have that is no commit: nothing to walk */
            w->commits.flags[slot] |= C_MISSING | C_UNINT;
            return GUTS_OK;
        }
        return fetch_corrupt(w, id, "expected a commit");
    }
    commit_info ci = {.id = *id};
    rc = fetch_parse_commit(w, id, data, len, &ci);
    if (rc || unint)
        free(data);
    else
        keep_or_free(w, id, type, data, len);
    if (rc) return rc;
    if (w->nci >= UINT32_MAX) return guts_git_errf(w->err, GUTS_ETOOBIG, "too many commits");
    rc = PUSH(w, ci, nci, capci, ci);
    if (rc) return rc;
    w->commits.vals[slot] = (uint32_t)(w->nci - 1);
    w->commits.flags[slot] |= C_INHEAP | (unint ? C_UNINT : 0);
    if (!unint) w->nint++;
    return heap_push(w, ci.time, (uint32_t)(w->nci - 1));
}

static int walk_commits(walk *w)
{
    while (w->nint > 0) {
        heap_ent e = heap_pop(w);
        size_t slot = guts_idset_find(&w->commits, &w->ci[e.ci].id);
        uint8_t f = w->commits.flags[slot];
        w->commits.flags[slot] &= (uint8_t)~C_INHEAP;
        int unint = (f & C_UNINT) != 0;
        if (!unint && e.time < w->cutoff) {
            w->too_old = 1; /* guts_git_ready's answer: no have below it */
            return GUTS_OK;
        }
        if (w->cutoff && w->nci >= FETCH_READY_COMMITS) return GUTS_OK; /* ready, a guess */
        if (!unint) {
            w->nint--;
            w->commits.flags[slot] |= C_SENT;
            int rc = PUSH(w, sent, nsent, capsent, e.ci);
            if (rc) return rc;
        }
        uint32_t off = w->ci[e.ci].parent_off, np = w->ci[e.ci].nparents;
        for (uint32_t i = 0; i < np; i++) {
            guts_id par = w->parents[off + i]; /* a copy: queueing may realloc */
            int rc = queue_commit(w, &par, unint);
            if (rc) return rc;
        }
    }
    return GUTS_OK;
}

/* ---- trees ----------------------------------------------------------------- */

/* Call back for each entry of a tree: is_tree 1 for subtrees; gitlinks
 * (submodule commits) are skipped, they live in another repository. */
static int tree_entries(walk *w, const guts_id *tid, const char *p, size_t len,
                        int (*cb)(walk *w, const guts_id *id, int is_tree))
{
    size_t pos = 0;
    guts_tree_entry e;
    int rc;
    while ((rc = guts_tree_entry_next((const uint8_t *)p, len, &pos, &e)) == 1) {
        if (e.type == GUTS_OBJ_COMMIT) continue;
        w->name = e.name; /* its key is computed if cb needs it */
        w->name_len = e.name_len;
        rc = cb(w, &e.id, e.type == GUTS_OBJ_TREE);
        w->name = NULL;
        w->name_key = 0;
        if (rc) return rc;
    }
    return rc ? fetch_corrupt(w, tid, "malformed tree entry") : GUTS_OK;
}

uint32_t fetch_name_key(walk *w)
{
    if (w->name) {
        w->name_key = fetch_path_key(w->dir_key, w->name, w->name_len);
        w->name = NULL;
    }
    return w->name_key;
}

uint32_t fetch_path_key(uint32_t dir, const char *name, size_t len)
{
    uint32_t h = dir ? (dir ^ '/') * 16777619u : 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    return h ? h : 1; /* 0 is the root's */
}

/* by_path's key for a path key: an id whose bytes 4..8 (those
 * guts_id_hash reads) hold the key and whether it names a tree. */
static guts_id path_slot(uint32_t key, int is_tree)
{
    guts_id k;
    memset(&k, 0, sizeof k);
    memcpy(k.b + 4, &key, sizeof key);
    k.b[8] = (uint8_t)(is_tree != 0);
    return k;
}

const guts_id *fetch_base_by_path(const walk *w, uint32_t key, int is_tree)
{
    guts_id k = path_slot(key, is_tree);
    size_t slot = guts_idset_find(&w->by_path, &k);
    return slot == SIZE_MAX ? NULL : &w->path_bases.v[w->by_path.vals[slot]];
}

/* Remember a tree or blob the receiver has under the path being marked, for
 * fetch_base_by_path: in a thin pack only, and no blob for a partial clone
 * (its client may lack the blobs of the commits it has). */
static int remember_path(walk *w, const guts_id *id, int is_tree)
{
    if (!w->thin) return GUTS_OK;
    uint32_t key = fetch_name_key(w);
    if (!is_tree && (key == 0 || w->blob_limit != UINT64_MAX))
        return GUTS_OK; /* a tag seen from a have has key 0: no path */
    guts_id k = path_slot(key, is_tree);
    size_t slot;
    int added;
    if (guts_idset_add(&w->by_path, &k, &slot, &added) ||
        (added && guts_ids_push(&w->path_bases, id)))
        return guts_git_errf(w->err, GUTS_ENOMEM, "out of memory in the walk");
    if (added) w->by_path.vals[slot] = (uint32_t)(w->path_bases.n - 1);
    return GUTS_OK;
}

/* Mark: the local repository has this tree and everything below it. */
int fetch_mark_known(walk *w, const guts_id *id, int is_tree)
{
    size_t slot;
    int added, rc = guts_idset_add(&w->objs, id, &slot, &added);
    if (rc) return guts_git_errf(w->err, rc, "out of memory in the walk");
    if (w->objs.flags[slot] & O_KNOWN) return GUTS_OK;
    w->objs.flags[slot] |= O_KNOWN;
    if ((rc = remember_path(w, id, is_tree))) return rc;
    if (is_tree) return PUSH(w, stack, nstack, capstack, ((tree_ref){*id, fetch_name_key(w)}));
    return GUTS_OK;
}

/* Select for the pack unless known or selected already. */
int fetch_mark_send(walk *w, const guts_id *id, int is_tree)
{
    size_t slot;
    int added, rc = guts_idset_add(&w->objs, id, &slot, &added);
    if (rc) return guts_git_errf(w->err, rc, "out of memory in the walk");
    if (!added) return GUTS_OK;
    w->objs.flags[slot] |= O_SEND;
    if (w->nsend >= PACK_OBJECTS_MAX)
        return guts_git_errf(w->err, GUTS_ETOOBIG, "more objects than a pack can hold");
    if (fetch_grow((void **)&w->send_key, &w->capkey, w->nsend + 1, sizeof *w->send_key))
        return guts_git_errf(w->err, GUTS_ENOMEM, "out of memory in the walk");
    w->send_key[w->nsend] = fetch_name_key(w);
    rc = PUSH(w, send, nsend, capsend, *id);
    if (rc) return rc;
    if (is_tree) return PUSH(w, stack, nstack, capstack, ((tree_ref){*id, fetch_name_key(w)}));
    return GUTS_OK;
}

/* fetch_mark_send for a tree's entries: a blob over the filter's limit stays out
 * (the client fetches it when it needs it, by id). */
int fetch_mark_send_filtered(walk *w, const guts_id *id, int is_tree)
{
    if (!is_tree && w->blob_limit != UINT64_MAX) {
        int type;
        uint64_t size;
        if (w->blob_limit == 0) return GUTS_OK;
        if (guts_repo_stat(w->r, id, &type, &size) == GUTS_OK && size > w->blob_limit)
            return GUTS_OK;
    }
    return fetch_mark_send(w, id, is_tree);
}

/* Drain the tree stack: read each tree and apply cb to its entries. A tree
 * the store lacks is fatal when sending (git would get an incomplete pack)
 * and ignored when marking (that only costs a larger pack). */
int fetch_drain(walk *w, int (*cb)(walk *w, const guts_id *id, int is_tree), int sending)
{
    while (w->nstack > 0) {
        tree_ref t = w->stack[--w->nstack];
        guts_id tid = t.id;
        w->dir_key = t.key;
        int type;
        void *data;
        size_t len;
        int rc = fetch_get_obj(w, &tid, &type, &data, &len);
        if (rc == GUTS_ENOTFOUND && !sending) continue;
        if (rc == GUTS_ENOTFOUND) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&tid, hex);
            return guts_git_errf(w->err, rc, "tree %s is not in the store", hex);
        }
        if (rc) return rc;
        if (type != GUTS_OBJ_TREE) {
            free(data);
            return fetch_corrupt(w, &tid, "expected a tree");
        }
        rc = tree_entries(w, &tid, data, len, cb);
        if (rc || !sending || w->keep_commits_only)
            free(data);
        else
            keep_or_free(w, &tid, type, data, len);
        if (rc) return rc;
    }
    return GUTS_OK;
}

/* ---- tags, haves and wants --------------------------------------------------- */

/* Follow tags from id to a non-tag: *type and *target. With each tag object
 * seen, apply on_tag (mark known or select). ENOTFOUND when an object on
 * the way is not stored. */
int fetch_peel(walk *w, const guts_id *id, int *type, guts_id *target,
                int (*on_tag)(walk *w, const guts_id *id, int is_tree))
{
    guts_id cur = *id;
    for (int depth = 0; depth < TAG_DEPTH_MAX; depth++) {
        uint64_t size;
        int rc = guts_repo_stat(w->r, &cur, type, &size);
        if (rc) return rc;
        if (*type != GUTS_OBJ_TAG) {
            *target = cur;
            return GUTS_OK;
        }
        rc = on_tag(w, &cur, 0);
        if (rc) return rc;
        void *data;
        size_t len;
        int t;
        rc = fetch_get_obj(w, &cur, &t, &data, &len);
        if (rc) return rc;
        guts_id next;
        int ok = guts_tag_target(data, len, &next) == GUTS_OK;
        free(data);
        if (!ok) return fetch_corrupt(w, &cur, "tag without an object line");
        cur = next;
    }
    return fetch_corrupt(w, id, "tag chain too long");
}

static int add_haves(walk *w, const guts_id *haves, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int type;
        guts_id t;
        int rc = fetch_peel(w, &haves[i], &type, &t, fetch_mark_known);
        if (rc == GUTS_ENOTFOUND) continue; /* the store never had it */
        if (rc) return rc;
        if (type == GUTS_OBJ_COMMIT)
            rc = queue_commit(w, &t, 1);
        else
            rc = fetch_mark_known(w, &t, 0); /* a tree or blob: itself is enough */
        if (rc) return rc;
        w->nstack = 0; /* known tags push nothing to walk */
    }
    return GUTS_OK;
}

static int add_wants(walk *w, const guts_id *wants, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int type;
        guts_id t;
        int rc = fetch_peel(w, &wants[i], &type, &t, fetch_mark_send);
        if (rc == GUTS_ENOTFOUND) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&wants[i], hex);
            return guts_git_errf(w->err, rc, "%s (or an object it tags) is not in the store", hex);
        }
        if (rc) return rc;
        if (type == GUTS_OBJ_COMMIT)
            rc = queue_commit(w, &t, 0);
        else if (type == GUTS_OBJ_TREE)
            rc = PUSH(w, roots, nroots, caproots, t);
        else
            rc = fetch_mark_send(w, &t, 0);
        if (rc) return rc;
    }
    return GUTS_OK;
}

/* ---- entry ----------------------------------------------------------------- */

void fetch_walk_free(walk *w)
{
    guts_idset_free(&w->commits);
    guts_idset_free(&w->objs);
    free(w->ci);
    free(w->parents);
    free(w->heap);
    free(w->sent);
    free(w->send);
    free(w->send_key);
    free(w->stack);
    guts_idset_free(&w->by_path);
    free(w->path_bases.v);
    free(w->roots);
    for (size_t i = 0; i < w->nkept; i++)
        free(w->keptv[i].data);
    free(w->keptv);
    guts_idset_free(&w->kept);
}

/* Select the sent commits (w->sent), then their trees and everything below
 * them not known or selected already (fetch_mark_send_filtered), then the
 * trees wanted directly (w->roots). */
int fetch_send_sent(walk *w)
{
    int rc;
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id id = w->ci[w->sent[i]].id;
        if ((rc = fetch_mark_send(w, &id, 0))) return rc;
    }
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id tree = w->ci[w->sent[i]].tree;
        if ((rc = fetch_mark_send(w, &tree, 1)) ||
            (rc = fetch_drain(w, fetch_mark_send_filtered, 1)))
            return rc;
        guts_progress_show(&w->counting, w->nsend, 0, 0, 0);
    }
    for (size_t i = 0; i < w->nroots; i++)
        if ((rc = fetch_mark_send(w, &w->roots[i], 1)) ||
            (rc = fetch_drain(w, fetch_mark_send_filtered, 1)))
            return rc;
    return GUTS_OK;
}

static int select_objects(walk *w, const guts_id *wants, size_t nwants, const guts_id *haves,
                          size_t nhaves, guts_git_fetch_stats *st);

int fetch_select_objects(walk *w, const guts_id *wants, size_t nwants, const guts_id *haves,
                          size_t nhaves, guts_git_fetch_stats *st)
{
    /* best effort (not when the caller holds one): each read begins its
     * own otherwise */
    w->holding = guts_repo_read_hold(w->r) == GUTS_OK;
    int rc = select_objects(w, wants, nwants, haves, nhaves, st);
    if (w->holding) guts_repo_read_release(w->r);
    w->holding = 0;
    return rc;
}

static int select_objects(walk *w, const guts_id *wants, size_t nwants, const guts_id *haves,
                          size_t nhaves, guts_git_fetch_stats *st)
{
    int rc;
    if ((rc = add_haves(w, haves, nhaves))) return rc;
    if ((rc = add_wants(w, wants, nwants))) return rc;
    if ((rc = walk_commits(w))) return rc;
    st->commits_walked = w->nci;
    /* Sent commits that later turned out reachable from a have stay home. */
    size_t k = 0;
    for (size_t i = 0; i < w->nsent; i++) {
        size_t slot = guts_idset_find(&w->commits, &w->ci[w->sent[i]].id);
        if (!(w->commits.flags[slot] & C_UNINT)) w->sent[k++] = w->sent[i];
    }
    w->nsent = k;
    /* Edges: what the local repository has below them is not sent. */
    for (size_t i = 0; i < w->nsent; i++) {
        const commit_info *c = &w->ci[w->sent[i]];
        for (uint32_t j = 0; j < c->nparents; j++) {
            size_t slot = guts_idset_find(&w->commits, &w->parents[c->parent_off + j]);
            uint8_t f = w->commits.flags[slot];
            if (!(f & C_UNINT) || (f & (C_MISSING | C_EDGE))) continue;
            w->commits.flags[slot] |= C_EDGE;
            guts_id tree = w->ci[w->commits.vals[slot]].tree;
            if ((rc = fetch_mark_known(w, &tree, 1)) || (rc = fetch_drain(w, fetch_mark_known, 0)))
                return rc;
        }
    }
    if ((rc = fetch_send_sent(w))) return rc;
    guts_progress_show(&w->counting, w->nsend, 0, 0, 1);
    return GUTS_OK;
}

int guts_git_ready(guts_repo *r, const guts_id *wants, size_t nwants, const guts_id *haves,
                   size_t nhaves)
{
    char err[GUTS_GIT_ERR_MAX];
    walk w = {.r = r, .err = err, .commits = {.with_vals = 1}, .blob_limit = UINT64_MAX};
    int rc = add_haves(&w, haves, nhaves);
    uint64_t oldest = UINT64_MAX;
    for (size_t i = 0; i < w.nci; i++)
        if (w.ci[i].time < oldest) oldest = w.ci[i].time;
    if (!rc && w.nci == 0) rc = GUTS_ENOTFOUND; /* no have is a stored commit */
    w.cutoff = oldest;
    if (!rc) rc = add_wants(&w, wants, nwants);
    if (!rc) rc = walk_commits(&w);
    int ready = !rc && !w.too_old;
    fetch_walk_free(&w);
    return ready;
}

int guts_git_fetch(guts_repo *r, guts_data *d, const char *key, const guts_id *wants, size_t nwants,
                   const guts_id *haves, size_t nhaves, int zlevel, int progress,
                   struct guts_packcache *cache, int *connected, guts_git_fetch_stats *st,
                   char *err)
{
    *connected = 0;
    walk w = {.r = r, .data = d, .key = key, .zlevel = zlevel, .err = err, .thin = 1, .rehash = 1,
              .commits = {.with_vals = 1}, .by_path = {.with_vals = 1},
              .blob_limit = UINT64_MAX, .kept = {.with_vals = 1}, .keep_max = FETCH_KEEP_BYTES};
    guts_progress_start(&w.counting, "guts: counting objects", progress);
    guts_progress_start(&w.writing, "guts: writing objects", progress);
    memset(st, 0, sizeof *st);
    if (zlevel < 0 || zlevel > 9) return guts_git_errf(err, GUTS_EINVAL, "zlib level %d", zlevel);
    int rc = cache && nhaves == 0 ? fetch_send_cached(cache, connected, st, err) : GUTS_ENOTFOUND;
    if (rc != GUTS_ENOTFOUND) return rc;
    rc = fetch_select_objects(&w, wants, nwants, haves, nhaves, st);
    for (size_t i = 0; !rc && i < nwants; i++) {
        size_t slot = guts_idset_find(&w.objs, &wants[i]);
        if (slot != SIZE_MAX) w.objs.flags[slot] |= O_TIP;
    }
    if (!rc && w.nsend > 0) rc = fetch_write_pack(&w, nhaves == 0, connected, cache, st);
    fetch_walk_free(&w);
    return rc;
}

