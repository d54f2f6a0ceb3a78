/* memstore_int.h - the in-memory store's structures and the functions its
 * source files share (memstore.c objects and repositories, memstore_refs.c
 * refs, memstore_recs.c records and large objects). Not a public header:
 * callers see guts/core.h only.
 */
#ifndef GUTS_MEMSTORE_INT_H
#define GUTS_MEMSTORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "guts/core.h"

/* An object: id, type and length, then its contents, in one allocation.
 * A store's objects are its pool's (one for every store holding the id),
 * except the copies it damaged. */
typedef struct mobj {
    guts_id id;
    int type;
    size_t len;
    uint8_t data[];
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
    mstage *stage; /* GUTS_STAGE_MAX entries once an object is staged, else NULL */
    size_t nstage;
    /* sorted by id; 8 bytes an object in each store (guts-sim's 10,000s of
     * stores hold the same objects: the contents and ids are the pool's) */
    mobj **objs;
    size_t nobjs, capobjs;
    const mobj **log; /* insertion order: the pool's entries, which outlive a drop */
    size_t nlog, caplog;
    mref *refs; /* sorted by name; tombstones included */
    size_t nrefs, caprefs;
    guts_fp fp, rdigest;
    uint64_t txnid, clock, bytes, tombstones;
} mrepo;

struct guts_memstore {
    mrepo **repos; /* sorted by key */
    size_t n, cap;
    guts_mempool *pool; /* a store made by guts_memstore_new has its own */
    int own_pool;
    mobj **owned; /* the objects it owns (damaged copies) */
    size_t nowned;
};

/* Grow *arr (elements of elem bytes) to hold need, doubling from 4 (a
 * simulated node holds a few refs and some dozens of objects). */
int memstore_grow(void **arr, size_t *cap, size_t need, size_t elem);
/* The repository named key, or NULL. */
mrepo *memstore_repo_find(const guts_memstore *m, const char *key);
/* The object id in r, or NULL. */
const mobj *memstore_obj_find(const mrepo *r, const guts_id *id);

/* guts_core_store entries (ctx is the guts_memstore), by file. memstore.c: */
int memstore_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                 size_t *len);
int memstore_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad);
/* memstore_refs.c: */
int memstore_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg);
int memstore_ref_get(void *ctx, const char *key, const char *name, guts_ref *out);
int memstore_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n);
/* memstore_recs.c: */
int memstore_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf);
int memstore_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                     const guts_rec_seen *seen, size_t *added, size_t *bad);
int memstore_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got);
int memstore_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored);
int memstore_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n);
int memstore_stage_drop(void *ctx, const char *key, const guts_id *id);

#endif
