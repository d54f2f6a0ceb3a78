/* node_status.c - what a driver may ask of a core between events: its
 * peers, counters, sessions, pulls in progress and repository states.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

size_t guts_core_peer_count(const guts_core *c)
{
    return c->npeers;
}

int guts_core_peer(const guts_core *c, size_t i, guts_core_peer_info *out)
{
    if (i >= c->npeers) return GUTS_ENOTFOUND;
    const peer *p = &c->peers[i];
    memset(out, 0, sizeof(*out));
    out->id = p->id;
    out->addr = p->addr;
    out->port = p->port;
    out->incarnation = p->inc;
    out->last_heard = p->last_heard;
    out->interval_ms = p->interval;
    out->repos = (uint32_t)p->nrepos;
    out->via_group = members_live_since((guts_core *)c, p, p->group_heard);
    out->via_unicast = members_live_since((guts_core *)c, p, p->ucast_heard);
    for (size_t k = 0; k < c->nrepos; k++) {
        const lrepo *r = c->repos[k];
        const peer_repo *pr = members_repo((peer *)p, r->key);
        if (!pr) continue;
        out->repos_common++;
        out->repos_same += guts_fp_eq(pr->fp, r->info.fp) && pr->rdigest == r->info.refs_digest.lo;
    }
    return GUTS_OK;
}

int guts_core_has_peer(const guts_core *c, const guts_node_id *id)
{
    return members_find((guts_core *)c, id) != NULL; /* a lookup: no change */
}

void guts_core_counters_get(const guts_core *c, guts_core_counters *out)
{
    *out = c->ctr;
    out->refs_pending = 0;
    for (size_t i = 0; i < c->nrepos; i++)
        out->refs_pending += c->repos[i]->npending;
    out->repos_remote = c->nremote;
    out->store_full = c->full;
    out->learned = 0;
    for (size_t i = 0; i < c->nlearned; i++)
        out->learned += c->learned[i].quiet_until <= c->now;
    out->peers_unicast = 0;
    for (size_t i = 0; i < c->npeers; i++)
        out->peers_unicast += members_live_since((guts_core *)c, &c->peers[i],
                                                 c->peers[i].ucast_heard);
}

uint32_t guts_core_interval(const guts_core *c)
{
    return announce_interval((guts_core *)c); /* it only fills a cache */
}

void guts_core_sessions(const guts_core *c, size_t *pulls, size_t *serves)
{
    *pulls = *serves = 0;
    for (size_t i = 0; i < c->nsess; i++) {
        const session *x = c->sess[i];
        if (x->kind == SESS_PULL)
            (*pulls)++;
        else if (x->kind == SESS_SERVE && x->key[0])
            (*serves)++;
    }
}

size_t guts_core_pulls(const guts_core *c, guts_core_pull_info *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nsess; i++) {
        const session *s = c->sess[i];
        if (s->kind != SESS_PULL) continue;
        if (n < max) {
            guts_core_pull_info *o = &out[n];
            memset(o, 0, sizeof(*o));
            strcpy(o->key, s->key);
            o->peer = s->peer_id;
            o->addr = s->addr;
            o->started = s->started;
            o->objects = s->got_objects;
            o->bytes = s->got_bytes;
            o->expected = s->expected;
        }
        n++;
    }
    return n;
}

int guts_core_repo_state(const guts_core *c, const char *key, int *state)
{
    lrepo *r = core_repo_find((guts_core *)c, key);
    if (!r) return GUTS_ENOTFOUND;
    if (r->pulling) {
        *state = GUTS_SYNC_PULLING;
        return GUTS_OK;
    }
    *state = GUTS_SYNC_IN_SYNC;
    for (size_t i = 0; i < c->npeers; i++) {
        peer_repo *pr = members_repo(&c->peers[i], key);
        if (pr && (!guts_fp_eq(pr->fp, r->info.fp) || pr->rdigest != r->info.refs_digest.lo))
            *state = GUTS_SYNC_BEHIND;
    }
    return GUTS_OK;
}

int guts_core_repo_peers(const guts_core *c, const char *key, size_t *have, size_t *same,
                         guts_node_id *out, size_t max)
{
    lrepo *r = core_repo_find((guts_core *)c, key);
    *have = *same = 0;
    if (!r) return GUTS_ENOTFOUND;
    for (size_t i = 0; i < c->npeers; i++) {
        const peer_repo *pr = members_repo(&c->peers[i], key);
        if (!pr) continue;
        ++*have;
        if (!guts_fp_eq(pr->fp, r->info.fp) || pr->rdigest != r->info.refs_digest.lo) continue;
        if (*same < max) out[*same] = c->peers[i].id;
        ++*same;
    }
    return GUTS_OK;
}
