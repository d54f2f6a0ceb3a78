/* idset.h - an open-addressing set of object ids with small per-id state,
 * and a growable id list: the bookkeeping of fetch's and push's walks.
 */
#ifndef GUTS_GIT_IDSET_H
#define GUTS_GIT_IDSET_H

#include <stddef.h>
#include <stdint.h>

#include "guts/guts.h"


/* Per-id state: the low 7 bits are the caller's flags; the set keeps one bit
 * of its own to mark used slots, so every id (the zero id too) is a key. */
typedef struct guts_idset {
    guts_id *keys;
    uint32_t *vals; /* the caller's value per id (e.g. an index) */
    uint8_t *flags;
    size_t cap; /* power of two, or 0 */
    size_t n;
} guts_idset;

#define GUTS_IDSET_FLAGS 0x7f

/** Find id, inserting it with flags 0 and value 0 when absent. *slot is its
 * index, valid until the next insertion; *added is 1 when it was new.
 * Errors: GUTS_ENOMEM. */
int guts_idset_add(guts_idset *s, const guts_id *id, size_t *slot, int *added);
/** Index of id, or SIZE_MAX when absent. */
size_t guts_idset_find(const guts_idset *s, const guts_id *id);
void guts_idset_free(guts_idset *s);

/* A growable list of ids (wants, haves, tips); free(v) when done. */
typedef struct guts_ids {
    guts_id *v;
    size_t n, cap;
} guts_ids;

/** Append id. Errors: GUTS_ENOMEM. */
int guts_ids_push(guts_ids *a, const guts_id *id);

#endif
