/* idset.h - the one open-addressing set of object ids, and a growable id
 * list: the core's closure walks and caches, the git library's fetch and
 * upload-pack walks, push's ancestry walk.
 */
#ifndef GUTS_IDSET_H
#define GUTS_IDSET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "guts/guts.h"

/* Per-id state: the low 7 bits of flags are the caller's; the set keeps one
 * bit of its own to mark used slots, so every id (the zero id too) is a key.
 * A value per id (vals) only when with_vals was set before the first
 * insertion: 21 bytes a slot without, 25 with. A zeroed struct is an empty
 * set of keys only. */
typedef struct guts_idset {
    guts_id *keys;
    uint32_t *vals; /* the caller's value per id (e.g. an index), or NULL */
    uint8_t *flags;
    size_t cap; /* power of two, or 0 */
    size_t n;
    int with_vals; /* kept by guts_idset_free */
    /* set before the first insertion, kept by guts_idset_free: grow at 3/4
     * full instead of 1/2 (longer probes, 30% less memory: for the sets a
     * core keeps per repository, looked up far less often than walks') */
    int dense;
} guts_idset;

#define GUTS_IDSET_FLAGS 0x7f

/** Hash of an id for open addressing: from its bytes 4..11, not the first
 * ones, which the ids of one reconciliation range share. */
static inline size_t guts_id_hash(const guts_id *id)
{
    uint64_t h;
    memcpy(&h, id->b + 4, sizeof h);
    return (size_t)(h * 0x9e3779b97f4a7c15ull >> 7);
}

/** Find id, inserting it with flags 0 and value 0 when absent. *slot is its
 * index, valid until the next insertion; *added is 1 when it was new.
 * Errors: GUTS_ENOMEM. */
int guts_idset_add(guts_idset *s, const guts_id *id, size_t *slot, int *added);
/** Insert id: 1 when it was new, 0 when already there, GUTS_ENOMEM. */
int guts_idset_insert(guts_idset *s, const guts_id *id);
/** Index of id, or SIZE_MAX when absent. */
size_t guts_idset_find(const guts_idset *s, const guts_id *id);
/** 1 when id is in the set. */
int guts_idset_has(const guts_idset *s, const guts_id *id);
/** Make room for n ids in all without growing again: a batch of insertions
 * then neither rehashes midway nor loses what guts_idset_prefetch loaded.
 * Errors: GUTS_ENOMEM (the set unchanged). */
int guts_idset_reserve(guts_idset *s, size_t n);

/** Start loading the slot a lookup or insertion of id reads first (a
 * cache miss in a large set), so a batch can overlap its misses: call it a
 * few ids ahead of the lookups. Only a hint: valid until the set grows. */
static inline void guts_idset_prefetch(const guts_idset *s, const guts_id *id)
{
    if (s->cap) {
        size_t i = guts_id_hash(id) & (s->cap - 1);
        __builtin_prefetch(&s->flags[i]);
        __builtin_prefetch(&s->keys[i]);
    }
}
/** Free the arrays; the set is empty again (with_vals and dense kept). */
void guts_idset_free(guts_idset *s);

/* A growable list of ids (wants, haves, tips); free(v) when done. */
typedef struct guts_ids {
    guts_id *v;
    size_t n, cap;
} guts_ids;

/** Append id. Errors: GUTS_ENOMEM. */
int guts_ids_push(guts_ids *a, const guts_id *id);

#endif
