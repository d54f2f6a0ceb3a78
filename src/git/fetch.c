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
 * The pack holds whole objects, each deflated at the caller's level, except
 * where the store keeps an object as a zstd delta against a base that goes
 * in the same pack, or that the local repository has (a thin pack, as git's
 * own fetch sends): that object goes as a git delta (REF_DELTA, pack.c)
 * against the same base. It streams straight into
 * `git index-pack --stdin --fix-thin`, which runs in parallel with us on another
 * core and writes the .pack and .idx; under GUTS_GIT_UNPACK_LIMIT objects it
 * goes to `git unpack-objects` instead, as git's own fetch does. Each object
 * read from the store is hashed before it is written: a damaged store fails
 * the fetch instead of handing git a wrong object. A large pack's entries
 * are encoded on several threads (see "encoders" below).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"
#include "idset.h"
#include "pack.h"
#include "progress.h"
#include "guts/gitobj.h"

/* Commit states (the "commits" set). */
#define C_UNINT 0x01   /* reachable from a have: the local repository has it */
#define C_INHEAP 0x02  /* queued */
#define C_SENT 0x04    /* popped while interesting */
#define C_EDGE 0x08    /* an uninteresting parent of a sent commit; trees marked */
#define C_MISSING 0x10 /* not in the store (a have we never had) */

/* Tree/blob/tag states (the "objs" set). */
#define O_KNOWN 0x01 /* the local repository has it (and, for a tree, all below) */
#define O_SEND 0x02  /* selected for the pack */

/* Tag chains longer than this are malformed or hostile: git itself peels at
 * most a few levels in practice. */
#define TAG_DEPTH_MAX 32

/* zlib level of a pack under GUTS_GIT_UNPACK_LIMIT objects: zlib's default,
 * which is git's too. */
#define REMOTE_SMALL_PACK_LEVEL 6

/* A git pack counts its objects in 32 bits. */
#define PACK_OBJECTS_MAX 0xffffffffu

typedef struct commit_info {
    guts_id id;
    guts_id tree;
    uint64_t time;
    uint32_t parent_off; /* into walk.parents */
    uint32_t nparents;
} commit_info;

typedef struct heap_ent {
    uint64_t time;
    uint32_t ci; /* index into walk.ci */
} heap_ent;

typedef struct walk {
    guts_repo *r;
    guts_data *data; /* with key: for the encoders' own handles (may be NULL) */
    const char *key;
    int zlevel;
    char *err;
    guts_idset commits; /* value: index into ci */
    commit_info *ci;
    size_t nci, capci;
    guts_id *parents;
    size_t npar, cappar;
    heap_ent *heap;
    size_t nheap, capheap;
    size_t nint; /* interesting entries queued */
    uint32_t *sent;
    size_t nsent, capsent;
    guts_idset objs;
    guts_id *send; /* the pack, in order */
    size_t nsend, capsend;
    uint32_t *send_key; /* per entry of send: a hash of the name it was met under */
    size_t capkey;
    uint32_t name_key; /* of the tree entry being marked, else 0 */
    guts_id *stack;
    size_t nstack, capstack;
    guts_id *roots; /* trees wanted directly (a tag of a tree) */
    size_t nroots, caproots;
    guts_progress counting, writing;
    int indexed; /* the pack goes to index-pack (else unpack-objects) */
    int thin;    /* deltas may name bases the receiver has and the pack lacks */
    uint64_t blob_limit; /* blobs under trees larger than this stay out
                          * (a partial clone's filter); UINT64_MAX: none */
} walk;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
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

#define PUSH(w, arr, n, cap, val)                                                                  \
    (grow((void **)&(w)->arr, &(w)->cap, (w)->n + 1, sizeof *(w)->arr)                             \
         ? guts_git_errf((w)->err, GUTS_ENOMEM, "out of memory in the walk")                         \
         : ((w)->arr[(w)->n++] = (val), GUTS_OK))

static int corrupt_err(char *err, const guts_id *id, const char *what)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    return guts_git_errf(err, GUTS_ECORRUPT, "stored object %s: %s", hex, what);
}

static int corrupt(walk *w, const guts_id *id, const char *what)
{
    return corrupt_err(w->err, id, what);
}

static int get_obj_r(guts_repo *r, char *err, const guts_id *id, int *type, void **data,
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

static int get_obj(walk *w, const guts_id *id, int *type, void **data, size_t *len)
{
    return get_obj_r(w->r, w->err, id, type, data, len);
}

/* ---- commits ------------------------------------------------------------- */

/* Parse a commit's headers: tree, parents (appended to w->parents), and the
 * committer's time (0 when absent or malformed: it only orders the walk). */
static int parse_commit(walk *w, const guts_id *id, const char *p, size_t len, commit_info *ci)
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
            if (rc != 1 || kind != GUTS_LINK_TREE) return corrupt(w, id, "commit without a tree line");
            ci->tree = link;
            have_tree = 1;
            continue;
        }
        if (rc != 1) return corrupt(w, id, "bad parent line");
        if (w->npar >= UINT32_MAX) return corrupt(w, id, "too many parents");
        int e = PUSH(w, parents, npar, cappar, link);
        if (e) return e;
        ci->nparents++;
    }
    if (!have_tree) return corrupt(w, id, "commit without a tree line");
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
    rc = get_obj(w, id, &type, &data, &len);
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
        return corrupt(w, id, "expected a commit");
    }
    commit_info ci = {.id = *id};
    rc = parse_commit(w, id, data, len, &ci);
    free(data);
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
        /* FNV-1a of the name: the versions of one file share it. */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < e.name_len; i++)
            h = (h ^ (uint8_t)e.name[i]) * 16777619u;
        w->name_key = h;
        rc = cb(w, &e.id, e.type == GUTS_OBJ_TREE);
        w->name_key = 0;
        if (rc) return rc;
    }
    return rc ? corrupt(w, tid, "malformed tree entry") : GUTS_OK;
}

/* Mark: the local repository has this tree and everything below it. */
static int mark_known(walk *w, const guts_id *id, int is_tree)
{
    size_t slot;
    int added, rc = guts_idset_add(&w->objs, id, &slot, &added);
    if (rc) return guts_git_errf(w->err, rc, "out of memory in the walk");
    if (w->objs.flags[slot] & O_KNOWN) return GUTS_OK;
    w->objs.flags[slot] |= O_KNOWN;
    if (is_tree) return PUSH(w, stack, nstack, capstack, *id);
    return GUTS_OK;
}

/* Select for the pack unless known or selected already. */
static int mark_send(walk *w, const guts_id *id, int is_tree)
{
    size_t slot;
    int added, rc = guts_idset_add(&w->objs, id, &slot, &added);
    if (rc) return guts_git_errf(w->err, rc, "out of memory in the walk");
    if (!added) return GUTS_OK;
    w->objs.flags[slot] |= O_SEND;
    if (w->nsend >= PACK_OBJECTS_MAX)
        return guts_git_errf(w->err, GUTS_ETOOBIG, "more objects than a pack can hold");
    if (grow((void **)&w->send_key, &w->capkey, w->nsend + 1, sizeof *w->send_key))
        return guts_git_errf(w->err, GUTS_ENOMEM, "out of memory in the walk");
    w->send_key[w->nsend] = w->name_key;
    rc = PUSH(w, send, nsend, capsend, *id);
    if (rc) return rc;
    if (is_tree) return PUSH(w, stack, nstack, capstack, *id);
    return GUTS_OK;
}

/* mark_send for a tree's entries: a blob over the filter's limit stays out
 * (the client fetches it when it needs it, by id). */
static int mark_send_filtered(walk *w, const guts_id *id, int is_tree)
{
    if (!is_tree && w->blob_limit != UINT64_MAX) {
        int type;
        uint64_t size;
        if (w->blob_limit == 0) return GUTS_OK;
        if (guts_repo_stat(w->r, id, &type, &size) == GUTS_OK && size > w->blob_limit)
            return GUTS_OK;
    }
    return mark_send(w, id, is_tree);
}

/* Drain the tree stack: read each tree and apply cb to its entries. A tree
 * the store lacks is fatal when sending (git would get an incomplete pack)
 * and ignored when marking (that only costs a larger pack). */
static int drain(walk *w, int (*cb)(walk *w, const guts_id *id, int is_tree), int sending)
{
    while (w->nstack > 0) {
        guts_id tid = w->stack[--w->nstack];
        int type;
        void *data;
        size_t len;
        int rc = get_obj(w, &tid, &type, &data, &len);
        if (rc == GUTS_ENOTFOUND && !sending) continue;
        if (rc == GUTS_ENOTFOUND) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&tid, hex);
            return guts_git_errf(w->err, rc, "tree %s is not in the store", hex);
        }
        if (rc) return rc;
        if (type != GUTS_OBJ_TREE) {
            free(data);
            return corrupt(w, &tid, "expected a tree");
        }
        rc = tree_entries(w, &tid, data, len, cb);
        free(data);
        if (rc) return rc;
    }
    return GUTS_OK;
}

/* ---- tags, haves and wants --------------------------------------------------- */

/* Follow tags from id to a non-tag: *type and *target. With each tag object
 * seen, apply on_tag (mark known or select). ENOTFOUND when an object on
 * the way is not stored. */
static int peel(walk *w, const guts_id *id, int *type, guts_id *target,
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
        rc = get_obj(w, &cur, &t, &data, &len);
        if (rc) return rc;
        guts_id next;
        int ok = guts_tag_target(data, len, &next) == GUTS_OK;
        free(data);
        if (!ok) return corrupt(w, &cur, "tag without an object line");
        cur = next;
    }
    return corrupt(w, id, "tag chain too long");
}

static int add_haves(walk *w, const guts_id *haves, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int type;
        guts_id t;
        int rc = peel(w, &haves[i], &type, &t, mark_known);
        if (rc == GUTS_ENOTFOUND) continue; /* the store never had it */
        if (rc) return rc;
        if (type == GUTS_OBJ_COMMIT)
            rc = queue_commit(w, &t, 1);
        else
            rc = mark_known(w, &t, 0); /* a tree or blob: itself is enough */
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
        int rc = peel(w, &wants[i], &type, &t, mark_send);
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
            rc = mark_send(w, &t, 0);
        if (rc) return rc;
    }
    return GUTS_OK;
}

/* ---- pack entries ------------------------------------------------------------ */

/* May an object go as a git delta against base (guts_pack_delta_of)? When
 * the base goes in the same pack, if index-pack reads it (unpack-objects
 * gets whole objects then); and, the pack being thin, when the local
 * repository has the base (a tree or blob of an edge commit): git's own
 * fetch does the same and `index-pack --fix-thin` (or unpack-objects, which
 * reads bases from the repository) completes it. A one-line change to a
 * large file then costs a delta, not the file. Only reads the walk's sets,
 * so encoders on several threads may ask at once. */
static int base_ok(const guts_id *base, void *ctx)
{
    const walk *w = ctx;
    size_t slot = guts_idset_find(&w->objs, base);
    if (slot == SIZE_MAX) return 0;
    uint8_t f = w->objs.flags[slot];
    return (f & O_SEND) ? w->indexed : w->thin && (f & O_KNOWN) != 0;
}

/* encode_one's answer for a large object and an in-memory writer: the
 * pack writer streams it itself. */
#define ENC_LARGE 1

static int pack_err(char *err, int rc)
{
    if (rc == GUTS_EIO) return guts_git_errf(err, rc, "writing the pack: %s", strerror(errno));
    return guts_git_errf(err, rc, "writing the pack: %s", guts_strerror(rc));
}

/* Send entry i of the pack, read from r (the walk's handle or an encoder's
 * own), into p: as a git delta where the store keeps a delta against a
 * base that may be used (base_ok), else whole. The content is hashed first:
 * a damaged store fails the fetch instead of handing git a wrong object.
 * *bytes gets the content's size. ENC_LARGE: a large object and p is in
 * memory (the caller streams it). */
static int encode_one(walk *w, guts_repo *r, guts_packw *p, size_t i, uint64_t *bytes, char *err)
{
    const guts_id *id = &w->send[i];
    int type;
    void *data;
    size_t len;
    uint64_t size;
    int rc;
    if (guts_repo_stat(r, id, &type, &size) == GUTS_OK && size >= GUTS_LARGE_MIN) {
        if (p->mem) return ENC_LARGE;
        /* piece by piece, rehashed by the store */
        rc = guts_packw_stream(p, r, id, type, size);
        if (rc == GUTS_EIO) return pack_err(err, rc);
        if (rc) return corrupt_err(err, id, guts_store_errmsg());
        *bytes = size;
        return GUTS_OK;
    }
    rc = get_obj_r(r, err, id, &type, &data, &len);
    if (rc == GUTS_ENOTFOUND) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        rc = guts_git_errf(err, rc, "object %s is not in the store", hex);
    }
    if (rc) return rc;
    guts_id h;
    if (guts_obj_hash(type, data, len, &h) || guts_id_cmp(&h, id)) {
        free(data);
        return corrupt_err(err, id, "content does not hash to its id");
    }
    uint8_t *delta = NULL;
    size_t dlen = 0;
    guts_id base;
    if (guts_pack_delta_of(r, id, type, data, len, base_ok, w, &base, &delta, &dlen) == GUTS_OK) {
        rc = guts_packw_ref_delta(p, &base, delta, dlen);
        free(delta);
    } else {
        rc = guts_packw_object(p, type, data, len);
    }
    free(data);
    if (rc) return pack_err(err, rc);
    *bytes = len;
    return GUTS_OK;
}

/* Write every selected object into p, in order, on this thread (a pack
 * whose writer is a sink: git smart HTTP's side-band). err is filled. */
static int pack_entries(walk *w, guts_packw *p, guts_git_fetch_stats *st)
{
    for (size_t i = 0; i < w->nsend; i++) {
        uint64_t bytes = 0;
        int rc = encode_one(w, w->r, p, i, &bytes, w->err);
        if (rc) return rc;
        st->bytes += bytes;
        st->objects++;
        guts_progress_show(&w->writing, i + 1, w->nsend, st->bytes, 0);
    }
    return GUTS_OK;
}

/* ---- encoders on several threads ---------------------------------------------- */

/* Most of a clone's time is the helper reading, hashing and re-deltifying
 * objects while index-pack waits for them, so a large pack is encoded by
 * several threads: the objects are split into parts by the name they were
 * met under (a blob's file name, a subtree's directory name; commits, tags
 * and root trees are part 0), so the versions of one file, which the store
 * keeps as delta chains, land in one part and its encoder's cache decodes
 * each chain once. Each encoder reads through its own repository handle
 * (handles are single-threaded; the env is shared) and collects whole
 * entries in memory; the pack writer, the calling thread, appends each
 * collection whole as it comes, encodes part 0 itself between them, and
 * streams large objects. A pack's entries may come in any order (index-pack
 * resolves a REF_DELTA wherever its base is), so no encoder waits for
 * another. */

/* Encoders at most: past a few, index-pack (which hashes every object) and
 * the writer are the limit. */
#define FETCH_ENCODERS_MAX 4
/* Fewer objects than this are encoded by the calling thread alone: threads
 * and cold caches would cost more than they save. */
#define FETCH_PARALLEL_MIN 1024
/* An encoder hands over what it collected once it passes this. */
#define FETCH_CHUNK_BYTES (256u << 10)
/* Collections waiting for the writer: with FETCH_CHUNK_BYTES, each waiting
 * encoder holds at most this many MiB / 4, and blocks after. */
#define FETCH_QUEUE_MAX 16

/* A collection of whole entries, or one large object the writer streams. */
typedef struct chunk {
    uint8_t *buf; /* malloc'd, or NULL */
    size_t len;
    size_t large; /* index into send of a large object, or SIZE_MAX */
    uint64_t objects, bytes;
} chunk;

typedef struct encoders {
    walk *w;
    unsigned nparts;
    pthread_mutex_t mu;
    pthread_cond_t ready, room;
    chunk q[FETCH_QUEUE_MAX];
    size_t qhead, qn;
    unsigned running; /* encoder threads not finished */
    int stop;         /* the writer failed: encoders give up */
} encoders;

typedef struct encoder {
    encoders *e;
    guts_repo *r;
    unsigned part;
    int rc;
    char err[GUTS_GIT_ERR_MAX];
    pthread_t t;
} encoder;

static int queue_put(encoders *e, chunk *c)
{
    pthread_mutex_lock(&e->mu);
    while (e->qn == FETCH_QUEUE_MAX && !e->stop)
        pthread_cond_wait(&e->room, &e->mu);
    int stopped = e->stop;
    if (!stopped) {
        e->q[(e->qhead + e->qn) % FETCH_QUEUE_MAX] = *c;
        e->qn++;
        pthread_cond_signal(&e->ready);
    }
    pthread_mutex_unlock(&e->mu);
    if (stopped) free(c->buf);
    memset(c, 0, sizeof *c);
    c->large = SIZE_MAX;
    return stopped ? GUTS_EIO : GUTS_OK;
}

/* The next collection; wait: block until one comes or every encoder is done.
 * 0: none (and with wait, none will come). */
static int queue_get(encoders *e, chunk *c, int wait)
{
    pthread_mutex_lock(&e->mu);
    while (wait && e->qn == 0 && e->running > 0)
        pthread_cond_wait(&e->ready, &e->mu);
    int got = e->qn > 0;
    if (got) {
        *c = e->q[e->qhead];
        e->qhead = (e->qhead + 1) % FETCH_QUEUE_MAX;
        e->qn--;
        pthread_cond_signal(&e->room);
    }
    pthread_mutex_unlock(&e->mu);
    return got;
}

static void encoders_stop(encoders *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->room);
    pthread_mutex_unlock(&e->mu);
}

/* The part an object goes to. */
static unsigned part_of(const walk *w, size_t i, unsigned nparts)
{
    return w->send_key[i] % nparts;
}

/* Encode part k of the pack with r into p (in memory), handing each
 * collection to give(ctx, chunk). */
static int encode_part(walk *w, guts_repo *r, unsigned k, unsigned nparts, guts_packw *p,
                       int (*give)(void *ctx, chunk *c), void *ctx, char *err)
{
    chunk c = {.large = SIZE_MAX};
    int rc = GUTS_OK, held = 0;
    for (size_t i = 0; i < w->nsend && !rc; i++) {
        if (part_of(w, i, nparts) != k) continue;
        /* One read transaction per collection, not per object. */
        if (!held && (rc = guts_repo_read_hold(r))) {
            rc = guts_git_errf(err, rc, "reading the store: %s (%s)", guts_strerror(rc),
                             guts_store_errmsg());
            break;
        }
        held = 1;
        uint64_t bytes = 0;
        rc = encode_one(w, r, p, i, &bytes, err);
        if (rc == ENC_LARGE) {
            rc = GUTS_OK;
            chunk big = {.large = i};
            if (p->len && (rc = guts_packw_take(p, &c.buf, &c.len)))
                rc = guts_git_errf(err, rc, "out of memory");
            if (!rc && c.objects) rc = give(ctx, &c);
            if (!rc) rc = give(ctx, &big);
        } else if (!rc) {
            c.objects++;
            c.bytes += bytes;
            if (p->len < FETCH_CHUNK_BYTES) continue;
            if ((rc = guts_packw_take(p, &c.buf, &c.len)))
                rc = guts_git_errf(err, rc, "out of memory");
            else
                rc = give(ctx, &c);
        }
        guts_repo_read_release(r);
        held = 0;
    }
    if (held) guts_repo_read_release(r);
    if (!rc && c.objects) {
        if ((rc = guts_packw_take(p, &c.buf, &c.len)))
            rc = guts_git_errf(err, rc, "out of memory");
        else
            rc = give(ctx, &c);
    }
    free(c.buf);
    return rc;
}

static int give_queue(void *ctx, chunk *c)
{
    return queue_put(ctx, c);
}

static void *encoder_main(void *arg)
{
    encoder *k = arg;
    encoders *e = k->e;
    guts_packw p;
    k->rc = guts_packw_open_mem(&p, e->w->zlevel);
    if (k->rc)
        k->rc = guts_git_errf(k->err, k->rc, "out of memory");
    else
        k->rc = encode_part(e->w, k->r, k->part, e->nparts, &p, give_queue, e, k->err);
    guts_packw_free(&p);
    if (k->rc) encoders_stop(e); /* the fetch fails: no use going on */
    pthread_mutex_lock(&e->mu);
    e->running--;
    pthread_cond_signal(&e->ready);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* The writer's side: the pack on its file and what has gone into it. */
typedef struct writer {
    walk *w;
    encoders *e;
    guts_packw *p;
    guts_git_fetch_stats *st;
    char *err;
} writer;

/* Append one collection (or stream its large object) to the pack. */
static int write_chunk(writer *wr, chunk *c)
{
    walk *w = wr->w;
    int rc = GUTS_OK;
    if (c->large != SIZE_MAX) {
        uint64_t bytes = 0;
        rc = encode_one(w, w->r, wr->p, c->large, &bytes, wr->err);
        c->objects = 1;
        c->bytes = bytes;
    } else if ((rc = guts_packw_append(wr->p, c->buf, c->len))) {
        rc = pack_err(wr->err, rc);
    }
    free(c->buf);
    if (!rc) {
        wr->st->objects += c->objects;
        wr->st->bytes += c->bytes;
        guts_progress_show(&w->writing, wr->st->objects, w->nsend, wr->st->bytes, 0);
    }
    memset(c, 0, sizeof *c);
    c->large = SIZE_MAX;
    return rc;
}

/* The writer's own part: each collection is written at once, then whatever
 * the other encoders have ready. */
static int give_write(void *ctx, chunk *c)
{
    writer *wr = ctx;
    int rc = write_chunk(wr, c);
    chunk q;
    while (!rc && queue_get(wr->e, &q, 0))
        rc = write_chunk(wr, &q);
    return rc;
}

/* Every entry of the pack into p, by nparts encoders (this thread is part
 * 0), each but this one on its own thread and repository handle. */
static int encode_parallel(walk *w, guts_packw *p, unsigned nparts, guts_git_fetch_stats *st)
{
    encoders e = {.w = w, .nparts = nparts};
    encoder k[FETCH_ENCODERS_MAX];
    writer wr = {.w = w, .e = &e, .p = p, .st = st, .err = w->err};
    unsigned started = 0;
    int rc = GUTS_OK;
    memset(k, 0, sizeof k);
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.ready, NULL);
    pthread_cond_init(&e.room, NULL);
    for (unsigned i = 1; i < nparts && !rc; i++) {
        k[i].e = &e;
        k[i].part = i;
        if ((rc = guts_repo_open(w->data, w->key, 0, &k[i].r))) {
            rc = guts_git_errf(w->err, rc, "opening %s again: %s (%s)", w->key, guts_strerror(rc),
                             guts_store_errmsg());
            break;
        }
        pthread_mutex_lock(&e.mu);
        e.running++;
        pthread_mutex_unlock(&e.mu);
        if (pthread_create(&k[i].t, NULL, encoder_main, &k[i]) != 0) {
            pthread_mutex_lock(&e.mu);
            e.running--;
            pthread_mutex_unlock(&e.mu);
            rc = guts_git_errf(w->err, GUTS_ENOMEM, "cannot start an encoder thread");
            break;
        }
        started = i;
    }
    guts_packw own;
    int orc = guts_packw_open_mem(&own, w->zlevel);
    if (!rc && orc) rc = guts_git_errf(w->err, orc, "out of memory");
    if (!rc) rc = encode_part(w, w->r, 0, nparts, &own, give_write, &wr, w->err);
    chunk c;
    while (!rc && queue_get(&e, &c, 1))
        rc = write_chunk(&wr, &c);
    if (rc) encoders_stop(&e);
    for (unsigned i = 1; i <= started; i++)
        pthread_join(k[i].t, NULL);
    while (queue_get(&e, &c, 0)) /* left by a failure */
        free(c.buf);
    /* The encoder that failed, not one that stopped for it (no message). */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (unsigned i = 1; i <= started && !rc; i++)
            if (k[i].rc && (k[i].err[0] || pass == 1)) {
                rc = k[i].rc;
                memcpy(w->err, k[i].err, GUTS_GIT_ERR_MAX);
                if (!w->err[0]) guts_git_errf(w->err, rc, "an encoder stopped");
            }
    for (unsigned i = 1; i < nparts; i++)
        if (k[i].r) guts_repo_close(k[i].r);
    guts_packw_free(&own);
    pthread_cond_destroy(&e.ready);
    pthread_cond_destroy(&e.room);
    pthread_mutex_destroy(&e.mu);
    return rc;
}

/* How many encoders for this pack: one per CPU, within the limits. */
static unsigned encoders_for(const walk *w)
{
    if (w->nsend < FETCH_PARALLEL_MIN || !w->data || !w->key) return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2) return 1;
    return cpus > FETCH_ENCODERS_MAX ? FETCH_ENCODERS_MAX : (unsigned)cpus;
}

/* ---- pack ------------------------------------------------------------------ */

/* A clone's pack (no haves) holds the whole closure of the wants: index-pack
 * can check that as it indexes, which spares git its own connectivity walk
 * afterwards. A fetch's pack leaves out what the local repository has, so
 * it is not self-contained and is not checked here. */
static int write_pack(walk *w, int self_contained, int *connected, guts_git_fetch_stats *st)
{
    char *argv_index[] = {"git", "index-pack", "--stdin", "--keep=fetched by git-remote-guts",
                          NULL,  NULL};
    char *argv_unpack[] = {"git", "unpack-objects", "-q", NULL};
    int indexed = w->indexed = w->nsend >= GUTS_GIT_UNPACK_LIMIT;
    char **argv = indexed ? argv_index : argv_unpack;
    /* A clone's pack is whole; a fetch's may be thin (base_ok). */
    if (indexed)
        argv_index[4] = self_contained ? "--check-self-contained-and-connected" : "--fix-thin";
    guts_packw p = {.fd = -1};
    int rc;
    guts_proc proc = {.pid = -1, .in = -1, .out = -1};
    rc = guts_proc_start(&proc, argv, GUTS_PROC_PIPE, indexed ? GUTS_PROC_PIPE : GUTS_PROC_NULL,
                           w->err);
    if (rc) goto out;
    /* A pack of fewer than GUTS_GIT_UNPACK_LIMIT objects (a fetch of a few
     * commits) is deflated as git would: costing nothing measurable, level 0
     * would leave it several times git's size. */
    if (!indexed && w->zlevel < REMOTE_SMALL_PACK_LEVEL) w->zlevel = REMOTE_SMALL_PACK_LEVEL;
    if ((rc = guts_packw_open(&p, proc.in, w->zlevel, 0, (uint32_t)w->nsend))) {
        rc = pack_err(w->err, rc);
        goto out;
    }
    unsigned nparts = encoders_for(w);
    if (nparts > 1) {
        rc = encode_parallel(w, &p, nparts, st);
    } else {
        for (size_t i = 0; i < w->nsend && !rc; i++) {
            uint64_t bytes = 0;
            if ((rc = encode_one(w, w->r, &p, i, &bytes, w->err))) break;
            st->bytes += bytes;
            st->objects++;
            guts_progress_show(&w->writing, i + 1, w->nsend, st->bytes, 0);
        }
    }
    if (rc) goto out;
    uint8_t sum[GUTS_ID_LEN];
    if ((rc = guts_packw_finish(&p, sum))) {
        rc = pack_err(w->err, rc);
        goto out;
    }
    st->pack_bytes = p.total;
    guts_progress_show(&w->writing, w->nsend, w->nsend, st->bytes, 1);
    /* index-pack names the pack it kept ("keep\t<hash>") once its input
     * ends: only then is its stdout read, and it is one short line. */
    char line[128] = "";
    size_t ll = 0;
    close(proc.in);
    proc.in = p.fd = -1;
    while (indexed && ll + 1 < sizeof line) {
        ssize_t n = read(proc.out, line + ll, sizeof line - 1 - ll);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        ll += (size_t)n;
    }
    line[ll] = 0;
    int status;
    rc = guts_proc_wait(&proc, &status, w->err);
    if (!rc && status) rc = guts_git_errf(w->err, GUTS_EIO, "%s failed (exit %d)", proc.what, status);
    if (!rc && indexed) {
        if (strncmp(line, "keep\t", 5) != 0 || ll < 5 + GUTS_HEX_LEN)
            rc = guts_git_errf(w->err, GUTS_EIO, "%s said \"%.60s\", not keep\\t<hash>", proc.what,
                             line);
        else
            memcpy(st->keep, line + 5, GUTS_HEX_LEN);
    }
    if (!rc) *connected = indexed && self_contained;
out:
    if (proc.pid > 0) {
        int status;
        char ignore[GUTS_GIT_ERR_MAX];
        guts_proc_wait(&proc, &status, ignore);
    }
    guts_packw_free(&p);
    return rc;
}

/* ---- entry ----------------------------------------------------------------- */

static void walk_free(walk *w)
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
    free(w->roots);
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
            if ((rc = mark_known(w, &tree, 1)) || (rc = drain(w, mark_known, 0))) return rc;
        }
    }
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id id = w->ci[w->sent[i]].id;
        if ((rc = mark_send(w, &id, 0))) return rc;
    }
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id tree = w->ci[w->sent[i]].tree;
        if ((rc = mark_send(w, &tree, 1)) || (rc = drain(w, mark_send_filtered, 1))) return rc;
        guts_progress_show(&w->counting, w->nsend, 0, 0, 0);
    }
    for (size_t i = 0; i < w->nroots; i++)
        if ((rc = mark_send(w, &w->roots[i], 1)) || (rc = drain(w, mark_send_filtered, 1)))
            return rc;
    guts_progress_show(&w->counting, w->nsend, 0, 0, 1);
    return GUTS_OK;
}

int guts_git_fetch(guts_repo *r, guts_data *d, const char *key, const guts_id *wants, size_t nwants,
                 const guts_id *haves, size_t nhaves, int zlevel, int progress, int *connected,
                 guts_git_fetch_stats *st, char *err)
{
    *connected = 0;
    walk w = {.r = r, .data = d, .key = key, .zlevel = zlevel, .err = err, .thin = 1,
              .blob_limit = UINT64_MAX};
    guts_progress_start(&w.counting, "guts: counting objects", progress);
    guts_progress_start(&w.writing, "guts: writing objects", progress);
    memset(st, 0, sizeof *st);
    if (zlevel < 0 || zlevel > 9) return guts_git_errf(err, GUTS_EINVAL, "zlib level %d", zlevel);
    int rc = select_objects(&w, wants, nwants, haves, nhaves, st);
    if (!rc && w.nsend > 0) rc = write_pack(&w, nhaves == 0, connected, st);
    walk_free(&w);
    return rc;
}

/* peel's on_tag that does nothing: only the target is wanted. */
static int tag_seen(walk *w, const guts_id *id, int is_tree)
{
    (void)w, (void)id, (void)is_tree;
    return GUTS_OK;
}

/* include-tag: each annotated tag whose (peeled) object goes in the pack
 * goes too, with the tags it passes through. */
static int add_tags(walk *w, const guts_id *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (guts_idset_find(&w->objs, &tags[i]) != SIZE_MAX) continue;
        int type;
        guts_id t;
        int rc = peel(w, &tags[i], &type, &t, tag_seen);
        if (rc == GUTS_ENOTFOUND) continue;
        if (rc) return rc;
        size_t slot = guts_idset_find(&w->objs, &t);
        if (slot == SIZE_MAX || !(w->objs.flags[slot] & O_SEND)) continue;
        if ((rc = peel(w, &tags[i], &type, &t, mark_send))) return rc;
    }
    return GUTS_OK;
}

static int is_client_shallow(const guts_git_serve_req *q, const guts_id *id)
{
    for (size_t i = 0; i < q->nclient_shallow; i++)
        if (guts_id_cmp(&q->client_shallow[i], id) == 0) return 1;
    return 0;
}

/* In select_deepen's depths set: the client has this commit (a have that
 * is one of its shallow commits: walked, so its parents can go, not sent). */
#define D_HAVE 0x01

/* deepen: the commits at most depth deep from the wants, breadth first
 * (depth 1: the wants themselves), not past a have; a commit at the limit
 * that has parents is a new shallow boundary. Trees of the haves are
 * marked known first, so what the client has is not sent again. */
static int select_deepen(walk *w, const guts_git_serve_req *q, guts_idset *depths,
                         guts_ids *shallow, guts_ids *unshallow)
{
    int rc;
    guts_idset haveset = {0};
    size_t slot;
    int added;
    for (size_t i = 0; i < q->nhaves; i++) {
        if ((rc = guts_idset_add(&haveset, &q->haves[i], &slot, &added))) goto oom;
        int type;
        void *data;
        size_t len;
        if (get_obj(w, &q->haves[i], &type, &data, &len) != GUTS_OK) continue;
        commit_info ci = {.id = q->haves[i]};
        if (type == GUTS_OBJ_COMMIT && parse_commit(w, &q->haves[i], data, len, &ci) == GUTS_OK) {
            guts_id tree = ci.tree;
            free(data);
            if ((rc = mark_known(w, &tree, 1)) || (rc = drain(w, mark_known, 0))) goto out;
        } else {
            free(data);
        }
    }
    /* the FIFO: w->sent holds ci indexes in the order found; depths maps a
     * commit to its depth */
    size_t head = 0;
    for (size_t i = 0; i < q->nwants; i++) {
        int type;
        guts_id t;
        if ((rc = peel(w, &q->wants[i], &type, &t, mark_send))) goto out;
        if (type != GUTS_OBJ_COMMIT) {
            rc = type == GUTS_OBJ_TREE ? PUSH(w, roots, nroots, caproots, t) : mark_send(w, &t, 0);
            if (rc) goto out;
            continue;
        }
        if ((rc = guts_idset_add(depths, &t, &slot, &added))) goto oom;
        if (!added) continue;
        depths->vals[slot] = 1;
        if (guts_idset_find(&haveset, &t) != SIZE_MAX) {
            if (!is_client_shallow(q, &t)) continue;
            depths->flags[slot] |= D_HAVE;
        }
        int ctype;
        void *data;
        size_t len;
        if ((rc = get_obj(w, &t, &ctype, &data, &len))) goto out;
        commit_info ci = {.id = t};
        rc = parse_commit(w, &t, data, len, &ci);
        free(data);
        if (rc || (rc = PUSH(w, ci, nci, capci, ci)) ||
            (rc = PUSH(w, sent, nsent, capsent, (uint32_t)(w->nci - 1))))
            goto out;
    }
    while (head < w->nsent) {
        commit_info c = w->ci[w->sent[head++]];
        uint32_t d = depths->vals[guts_idset_find(depths, &c.id)];
        if (c.nparents == 0) continue;
        if (d >= q->depth) {
            if (guts_ids_push(shallow, &c.id)) goto oom;
            continue;
        }
        if (is_client_shallow(q, &c.id) && guts_ids_push(unshallow, &c.id)) goto oom;
        for (uint32_t j = 0; j < c.nparents; j++) {
            guts_id par = w->parents[c.parent_off + j];
            if ((rc = guts_idset_add(depths, &par, &slot, &added))) goto oom;
            if (!added) continue;
            depths->vals[slot] = d + 1;
            if (guts_idset_find(&haveset, &par) != SIZE_MAX) {
                if (!is_client_shallow(q, &par)) continue;
                depths->flags[slot] |= D_HAVE;
            }
            int ctype;
            void *data;
            size_t len;
            rc = get_obj(w, &par, &ctype, &data, &len);
            if (rc == GUTS_ENOTFOUND) {
                char hex[GUTS_HEX_LEN + 1];
                guts_id_to_hex(&par, hex);
                rc = guts_git_errf(w->err, rc, "commit %s is not in the store", hex);
            }
            if (rc) goto out;
            if (ctype != GUTS_OBJ_COMMIT) {
                free(data);
                rc = corrupt(w, &par, "expected a commit");
                goto out;
            }
            commit_info pc = {.id = par};
            rc = parse_commit(w, &par, data, len, &pc);
            free(data);
            if (rc || (rc = PUSH(w, ci, nci, capci, pc)) ||
                (rc = PUSH(w, sent, nsent, capsent, (uint32_t)(w->nci - 1))))
                goto out;
        }
    }
    size_t k = 0; /* the commits the client has stay home */
    for (size_t i = 0; i < w->nsent; i++)
        if (!(depths->flags[guts_idset_find(depths, &w->ci[w->sent[i]].id)] & D_HAVE))
            w->sent[k++] = w->sent[i];
    w->nsent = k;
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id id = w->ci[w->sent[i]].id;
        if ((rc = mark_send(w, &id, 0))) goto out;
    }
    for (size_t i = 0; i < w->nsent; i++) {
        guts_id tree = w->ci[w->sent[i]].tree;
        if ((rc = mark_send(w, &tree, 1)) || (rc = drain(w, mark_send_filtered, 1))) goto out;
    }
    for (size_t i = 0; i < w->nroots; i++)
        if ((rc = mark_send(w, &w->roots[i], 1)) || (rc = drain(w, mark_send_filtered, 1)))
            goto out;
    rc = GUTS_OK;
    goto out;
oom:
    rc = guts_git_errf(w->err, GUTS_ENOMEM, "out of memory in the walk");
out:
    guts_idset_free(&haveset);
    return rc;
}

int guts_git_serve(guts_repo *r, const guts_git_serve_req *q, guts_git_fetch_stats *st,
                       char *err)
{
    walk w = {.r = r, .err = err, .thin = q->thin, .indexed = 1, .blob_limit = q->blob_limit};
    guts_progress_start(&w.counting, "counting objects", 0);
    guts_progress_start(&w.writing, "writing objects", 0);
    memset(st, 0, sizeof *st);
    int rc;
    if (q->depth) {
        guts_idset depths = {0};
        guts_ids shallow = {0}, unshallow = {0};
        rc = select_deepen(&w, q, &depths, &shallow, &unshallow);
        if (!rc && q->on_shallow)
            rc = q->on_shallow(q->sink_ctx, shallow.v, shallow.n, unshallow.v, unshallow.n);
        guts_idset_free(&depths);
        free(shallow.v);
        free(unshallow.v);
    } else {
        rc = select_objects(&w, q->wants, q->nwants, q->haves, q->nhaves, st);
    }
    if (!rc) rc = add_tags(&w, q->tags, q->ntags);
    guts_packw p = {.fd = -1};
    /* a small pack (a fetch of a few commits) at zlib's default, as
     * write_pack does: bytes matter more than the milliseconds */
    int level = w.nsend < GUTS_GIT_UNPACK_LIMIT && q->zlevel < REMOTE_SMALL_PACK_LEVEL
                    ? REMOTE_SMALL_PACK_LEVEL
                    : q->zlevel;
    if (!rc && (rc = guts_packw_open(&p, -1, level, 0, (uint32_t)w.nsend)))
        rc = guts_git_errf(err, rc, "starting the pack: %s", guts_strerror(rc));
    else if (!rc) {
        p.sink = q->sink;
        p.sink_ctx = q->sink_ctx;
        rc = pack_entries(&w, &p, st);
        uint8_t sum[GUTS_ID_LEN];
        if (!rc && (rc = guts_packw_finish(&p, sum)) != GUTS_OK)
            rc = guts_git_errf(err, rc, "writing the pack: %s", guts_strerror(rc));
        if (!rc) st->pack_bytes = p.total;
    }
    guts_packw_free(&p);
    walk_free(&w);
    return rc;
}
