/* fetch_int.h - what the files of the fetch walk and pack (fetch*.c)
 * share: the walk's state and its object flags. Private to src/git/.
 */
#ifndef GUTS_FETCH_INT_H
#define GUTS_FETCH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "guts/idset.h"
#include "pack.h"
#include "progress.h"

/* Commit states (the "commits" set). */
#define C_UNINT 0x01   /* reachable from a have: the local repository has it */
#define C_INHEAP 0x02  /* queued */
#define C_SENT 0x04    /* popped while interesting */
#define C_EDGE 0x08    /* an uninteresting parent of a sent commit; trees marked */
#define C_MISSING 0x10 /* not in the store (a have we never had) */

/* Tree/blob/tag states (the "objs" set). */
#define O_KNOWN 0x01 /* the local repository has it (and, for a tree, all below) */
#define O_SEND 0x02  /* selected for the pack */
#define O_TIP 0x04   /* a want: rehashed even when the walk's rehash is off */

/* Tag chains longer than this are malformed or hostile: git itself peels at
 * most a few levels in practice. */
#define TAG_DEPTH_MAX 32

/* zlib level of a pack under GUTS_GIT_UNPACK_LIMIT objects: zlib's default,
 * which is git's too. */
#define REMOTE_SMALL_PACK_LEVEL 6

/* guts_git_ready reads at most this many commits (it runs on guts-node's
 * loop, once per negotiation round); past them it answers ready. */
#define FETCH_READY_COMMITS 4096

/* The helper's walk keeps this many bytes of decoded commits and trees for
 * its pack writer (walk.kept): zlib's are 5.9 MB, the generated 1,502-ref
 * repository's 12.2 MB (docs/performance.md). guts-node keeps none. */
#define FETCH_KEEP_BYTES ((size_t)64 << 20)

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

/* A tree waiting in the walk's stack, with the path key it was met under
 * (fetch_path_key; 0 for a commit's root tree). */
typedef struct tree_ref {
    guts_id id;
    uint32_t key;
} tree_ref;

/* A commit or tree the walk decoded, kept for the pack writer. */
typedef struct kept_obj {
    void *data;
    size_t len;
    int type;
} kept_obj;

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
    uint32_t *send_key; /* per entry of send: the path key it was met under */
    size_t capkey;
    uint32_t name_key; /* path key of the tree entry being marked, else 0:
                        * read it with fetch_name_key */
    const char *name;  /* that entry's name while its key is not computed yet */
    size_t name_len;
    uint32_t dir_key;  /* path key of the tree being drained */
    tree_ref *stack;
    size_t nstack, capstack;
    /* Thin packs: a tree or blob the receiver has, by the path it was met
     * under in a have's tree (fetch_base_by_path), the first one met. */
    guts_idset by_path; /* value: index into path_bases */
    guts_ids path_bases;
    guts_id *roots; /* trees wanted directly (a tag of a tree) */
    size_t nroots, caproots;
    guts_progress counting, writing;
    uint64_t cutoff;     /* guts_git_ready: an interesting commit older than
                          * this ends the walk, too_old set (0: none) */
    int too_old;
    int rehash;          /* each object's content is hashed before it goes (else only
                          * the wants, O_TIP: fetch_write_pack) */
    int indexed;         /* the pack goes to index-pack (else unpack-objects) */
    int thin;            /* deltas may name bases the receiver has and the pack lacks */
    uint64_t blob_limit; /* blobs under trees larger than this stay out
                          * (a partial clone's filter); UINT64_MAX: none */
    /* The commits and trees the walk read for the pack, kept decoded for the
     * writer up to keep_max bytes (0: none), so that it does not read them
     * from the store again (fetch_kept). Read-only once the walk is done. */
    guts_idset kept; /* with_vals: index into keptv */
    kept_obj *keptv;
    size_t nkept, capkept, kept_bytes, keep_max;
    int keep_commits_only; /* trees are read again (guts_git_serve: see there) */
    /* fetch_select_objects' reads share a read transaction, renewed every
     * FETCH_WALK_HOLD_READS reads (fetch_get_obj); then the pack's entries
     * (fetch_pack_entries) */
    int holding;
    uint32_t hold_reads;
} walk;

/* Append val to w's array arr (count n, capacity cap), growing it
 * (fetch_grow); GUTS_ENOMEM with w->err filled. */
#define PUSH(w, arr, n, cap, val)                                                                  \
    (fetch_grow((void **)&(w)->arr, &(w)->cap, (w)->n + 1, sizeof *(w)->arr)                       \
         ? guts_git_errf((w)->err, GUTS_ENOMEM, "out of memory in the walk")                       \
         : ((w)->arr[(w)->n++] = (val), GUTS_OK))

/* ---- fetch.c ---- */

/* Grow *p (*cap elements of elem bytes) to hold need: capacity doubles.
 * GUTS_ENOMEM leaves *p as it was. */
int fetch_grow(void **p, size_t *cap, size_t need, size_t elem);

/* The walk's decoded copy of id (walk.kept), or NULL. */
const kept_obj *fetch_kept(const walk *w, const guts_id *id);

/* GUTS_ECORRUPT with err naming stored object id and what is wrong. */
int fetch_corrupt_err(char *err, const guts_id *id, const char *what);

/* fetch_corrupt_err into w->err. */
int fetch_corrupt(walk *w, const guts_id *id, const char *what);

/* Read object id of r, whole (caller frees *data); GUTS_ENOTFOUND, or err
 * filled for any other error. */
int fetch_get_obj_r(guts_repo *r, char *err, const guts_id *id, int *type, void **data,
                    size_t *len);

/* fetch_get_obj_r on w's repository and error buffer. */
int fetch_get_obj(walk *w, const guts_id *id, int *type, void **data, size_t *len);

/* Parse a commit's headers: tree, parents (appended to w->parents), and the
 * committer's time (0 when absent or malformed: it only orders the walk). */
int fetch_parse_commit(walk *w, const guts_id *id, const char *p, size_t len, commit_info *ci);

/* The path key of entry name (len bytes) of a tree met under dir: an
 * FNV-1a hash of the whole path from the root (dir 0), so the versions of
 * one file share it, in any commit. */
uint32_t fetch_path_key(uint32_t dir, const char *name, size_t len);

/* A tree (is_tree) or blob the receiver has that was met under path key,
 * to delta a sent object of that path against when the store has no
 * usable base for it; NULL when none. */
const guts_id *fetch_base_by_path(const walk *w, uint32_t key, int is_tree);

/* Mark: the local repository has this tree and everything below it. */
int fetch_mark_known(walk *w, const guts_id *id, int is_tree);

/* Select for the pack unless known or selected already. */
int fetch_mark_send(walk *w, const guts_id *id, int is_tree);

/* fetch_mark_send for a tree's entries: a blob over the filter's limit stays out
 * (the client fetches it when it needs it, by id). */
int fetch_mark_send_filtered(walk *w, const guts_id *id, int is_tree);

/* Drain the tree stack: read each tree and apply cb to its entries. A tree
 * the store lacks is fatal when sending (git would get an incomplete pack)
 * and ignored when marking (that only costs a larger pack). */
/* The path key of the tree entry being marked (0 outside a tree), computed
 * on first use: most entries a walk meets are marked already and need none. */
uint32_t fetch_name_key(walk *w);
int fetch_drain(walk *w, int (*cb)(walk *w, const guts_id *id, int is_tree), int sending);

/* Follow tags from id to a non-tag: *type and *target. With each tag object
 * seen, apply on_tag (mark known or select). ENOTFOUND when an object on
 * the way is not stored. */
int fetch_peel(walk *w, const guts_id *id, int *type, guts_id *target,
               int (*on_tag)(walk *w, const guts_id *id, int is_tree));

/* Select the sent commits (w->sent), then their trees and everything below
 * them not known or selected already (fetch_mark_send_filtered), then the
 * trees wanted directly (w->roots). Shows the counting progress. */
int fetch_send_sent(walk *w);

/* Release what the walk holds (not w itself). */
void fetch_walk_free(walk *w);

/* Select what wants reach and haves do not into w->send (the pack's
 * order): the commit walk, then trees and blobs. */
int fetch_select_objects(walk *w, const guts_id *wants, size_t nwants, const guts_id *haves,
                         size_t nhaves, guts_git_fetch_stats *st);

/* ---- fetch_pack.c ---- */

/* Write every selected object into p (on a file or a sink), in order or,
 * for a large pack with w->data and w->key, by several encoder threads.
 * err is filled. */
int fetch_pack_entries(walk *w, guts_packw *p, guts_git_fetch_stats *st);

/* A clone's pack (no haves) holds the whole closure of the wants: index-pack
 * can check that as it indexes, which spares git its own connectivity walk
 * afterwards. A fetch's pack leaves out what the local repository has, so
 * it is not self-contained and is not checked here. */
int fetch_write_pack(walk *w, int self_contained, int *connected, struct guts_packcache *cache,
                     guts_git_fetch_stats *st);

/* A clone from cache's pack as it is, into index-pack: GUTS_OK, or
 * GUTS_ENOTFOUND (no such pack: nothing done), or an error (err). */
int fetch_send_cached(struct guts_packcache *cache, int *connected, guts_git_fetch_stats *st,
                      char *err);

#endif
