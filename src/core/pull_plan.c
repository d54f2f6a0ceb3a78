/* pull_plan.c - the parts of a pull split between peers (pull_plan.h). */
#include "pull_plan.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int pull_plan_new(uint64_t missing, uint64_t many, pull_plan **out)
{
    pull_plan *p = calloc(1, sizeof *p);
    if (!p) return GUTS_ENOMEM;
    p->depth = missing >= many ? 2 : 1;
    p->nparts = 1u << (4 * p->depth);
    p->state = calloc(p->nparts, 1);
    p->owner = calloc(p->nparts, sizeof *p->owner);
    if (!p->state || !p->owner) {
        pull_plan_free(p);
        return GUTS_ENOMEM;
    }
    *out = p;
    return GUTS_OK;
}

void pull_plan_free(pull_plan *p)
{
    if (!p) return;
    free(p->state);
    free(p->owner);
    free(p);
}

int pull_plan_take(pull_plan *p, uint32_t stream, uint32_t *count)
{
    uint32_t run = pull_plan_free_parts(p) / PULL_PLAN_RUN_DIV;
    run = run < 1 ? 1 : run > PULL_PLAN_RUN_MAX ? PULL_PLAN_RUN_MAX : run;
    *count = 0;
    for (uint32_t i = 0; i < p->nparts; i++) {
        if (p->state[i] != PART_FREE) continue;
        uint32_t n = 0;
        while (n < run && i + n < p->nparts && p->state[i + n] == PART_FREE) {
            p->state[i + n] = PART_TAKEN;
            p->owner[i + n] = stream;
            n++;
        }
        p->ntaken += n;
        *count = n;
        return (int)i;
    }
    return -1;
}

void pull_plan_done(pull_plan *p, int i, uint32_t count)
{
    for (uint32_t k = 0; k < count; k++) {
        assert(i >= 0 && (uint32_t)i + k < p->nparts && p->state[i + k] == PART_TAKEN);
        p->state[i + k] = PART_DONE;
    }
    p->ntaken -= count;
    p->ndone += count;
}

void pull_plan_give_back(pull_plan *p, int i, uint32_t count, const guts_node_id *peer)
{
    for (uint32_t k = 0; k < count; k++) {
        assert(i >= 0 && (uint32_t)i + k < p->nparts && p->state[i + k] == PART_TAKEN);
        p->state[i + k] = PART_FREE;
    }
    p->ntaken -= count;
    if (peer && !pull_plan_avoids(p, peer))
        p->avoid[p->navoid++ % PULL_PLAN_AVOID] = *peer;
}

int pull_plan_avoids(const pull_plan *p, const guts_node_id *peer)
{
    uint32_t n = p->navoid < PULL_PLAN_AVOID ? p->navoid : PULL_PLAN_AVOID;
    for (uint32_t i = 0; i < n; i++)
        if (memcmp(&p->avoid[i], peer, sizeof *peer) == 0) return 1;
    return 0;
}
