/* pull_plan.h - one repository's pull split between peers (sans-I/O).
 *
 * A node that lacks many objects of a repository (a first copy) pulls it
 * from several peers at once: the object id space is cut into parts, each a
 * range of the reconciliation tree (depth 1: 16 parts; depth 2: 256 parts
 * when many objects are missing), and each session, with its own peer,
 * takes a free part, reconciles that range only, and takes the next free
 * part until none is left. A part goes back to the plan when its session
 * ends before finishing it (the peer failed, left or stalled), so another
 * session takes it. The session that finishes the last part pulls the refs
 * (node_pull.c), so no ref is applied before every part is in.
 *
 * The plan holds no pointers to sessions: a part is owned by the stream id
 * of the session pulling it. Pure bookkeeping, no clock: the caller passes
 * `now` where time matters.
 */
#ifndef GUTS_CORE_PULL_PLAN_H
#define GUTS_CORE_PULL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "guts/guts.h"

/* Peers a plan remembers as failed on it (tried last when joining). */
#define PULL_PLAN_AVOID 4
/* A run taken at once: 1/8 of the free parts, at most 32 (pull_plan_take). */
#define PULL_PLAN_RUN_DIV 8
#define PULL_PLAN_RUN_MAX 32

enum { PART_FREE = 0, PART_TAKEN, PART_DONE };

typedef struct pull_plan {
    uint8_t depth;    /* a part is the range (depth, index) of the recon tree */
    uint32_t nparts;  /* 16^depth */
    uint32_t ndone;   /* parts finished */
    uint32_t ntaken;  /* parts held by a session */
    uint64_t join_at; /* another peer may join from this time on */
    uint32_t stall_ms; /* a part's session without a frame this long is stalled */
    uint8_t *state;   /* per part: PART_* */
    uint32_t *owner;  /* per part: the stream pulling it (PART_TAKEN) */
    guts_node_id avoid[PULL_PLAN_AVOID]; /* peers whose session failed on it */
    uint32_t navoid;
    uint8_t first; /* a first copy (the repository held nothing): a serve of
                    * it answers busy until the plan ends (node_serve.c) */
} pull_plan;

/** A plan for `missing` objects: 16 parts, or 256 from `many` on.
 * Errors: GUTS_ENOMEM. */
int pull_plan_new(uint64_t missing, uint64_t many, pull_plan **out);
void pull_plan_free(pull_plan *p);
/** The lowest free part and the free parts right after it, a run of at
 * most 1/PULL_PLAN_RUN_DIV of the free parts (at least 1, at most
 * PULL_PLAN_RUN_MAX), now owned by stream: its first part, the run's
 * length in *count; -1 when none is free. Long runs while many parts are
 * free keep a peer's upload busy (the next run is asked for only when a
 * run's reconciliation is over, and its answer comes behind the run's
 * objects); short ones at the end let the peers finish together. */
int pull_plan_take(pull_plan *p, uint32_t stream, uint32_t *count);
/** Parts i .. i+count-1, taken, are finished. */
void pull_plan_done(pull_plan *p, int i, uint32_t count);
/** Parts i .. i+count-1, taken, go back (free again); peer (may be NULL)
 * is avoided. */
void pull_plan_give_back(pull_plan *p, int i, uint32_t count, const guts_node_id *peer);
/** 1 when peer's session failed on this plan. */
int pull_plan_avoids(const pull_plan *p, const guts_node_id *peer);
/** Every part finished. */
static inline int pull_plan_complete(const pull_plan *p)
{
    return p->ndone == p->nparts;
}
/** Parts neither taken nor finished. */
static inline uint32_t pull_plan_free_parts(const pull_plan *p)
{
    return p->nparts - p->ndone - p->ntaken;
}

#endif
