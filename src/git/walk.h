/* walk.h - a store's commits newest first by committer date.
 *
 * The walk of `guts log` and of import's fast-forward test: a max-heap of
 * the frontier ordered by committer date (ties: the commit queued first)
 * and a hash set of the commits already queued, so each commit is read
 * once. Both grow with the commits visited, never with the history.
 */
#ifndef GUTS_GIT_WALK_H
#define GUTS_GIT_WALK_H

#include <stdint.h>

#include "guts/store.h"

typedef struct guts_walk_item {
    guts_id id;
    int64_t when; /* committer date, seconds since the epoch (0 if unreadable) */
    uint64_t seq; /* queue order */
} guts_walk_item;

/* Zero it and set r; free with guts_walk_free. */
typedef struct guts_walk {
    guts_repo *r;
    guts_walk_item *heap;
    size_t n, cap;
    guts_id *seen; /* open addressing; the zero id marks a free slot */
    size_t nseen, capseen;
    uint64_t seq;
    uint64_t missing; /* commits named (parents, or pushed) but not stored */
} guts_walk;

/** Queue commit id once (a second push of it does nothing). A commit that
 * is not stored is counted in w->missing, not an error.
 * Errors: GUTS_ECORRUPT (id is stored but not a commit), GUTS_ENOMEM, store
 * errors. */
int guts_walk_push(guts_walk *w, const guts_id *id);

/** Take the newest queued commit: 1 and *out set, or 0 when none is left. */
int guts_walk_pop(guts_walk *w, guts_walk_item *out);

/** Queue every parent named in a commit's text (as guts_walk_push). */
int guts_walk_push_parents(guts_walk *w, const void *data, size_t len);

/** The committer date of a commit's text, 0 if it has none readable. */
int64_t guts_commit_when(const void *data, size_t len);

void guts_walk_free(guts_walk *w);

#endif
