/* node_members.c - the peer table, built from announces.
 *
 * There is no join protocol: a peer exists while its announces keep coming.
 * An entry holds the peer's id, the address its datagrams came from, its
 * TCP port, incarnation, advertised interval and the repository states it
 * announced. It expires after expiry_missed of the peer's own intervals
 * without a datagram (so a peer that slowed down for a large group is not
 * dropped early), goes at once on LEAVE, and is replaced when the same node
 * id comes back with a higher incarnation (a restart: its sessions are
 * aborted, its old announcements forgotten). Lower incarnations are stale
 * datagrams of a previous life and are ignored.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"

peer *members_find(guts_core *c, const guts_node_id *id)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (memcmp(&c->peers[i].id, id, sizeof(*id)) == 0)
            return &c->peers[i];
    return NULL;
}

static void peer_clear_repos(peer *p)
{
    for (size_t i = 0; i < p->nrepos; i++)
        free(p->repos[i].key);
    free(p->repos);
    p->repos = NULL;
    p->nrepos = p->caprepos = 0;
}

void members_remove(guts_core *c, size_t i, const char *why)
{
    peer *p = &c->peers[i];
    if (why) {
        char hex[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(&p->id, hex);
        core_log(c, GUTS_LOG_INFO, "peer %s %s", hex, why);
        c->ctr.peers_left++;
    }
    peer_clear_repos(p);
    c->peers[i] = c->peers[c->npeers - 1];
    c->npeers--;
}

static uint64_t expiry_of(const guts_core *c, const peer *p)
{
    uint32_t iv = p->interval ? p->interval : c->cfg.interval_ms;
    /* the sender jitters up to 1.5x its interval */
    return p->last_heard + (uint64_t)iv * c->cfg.expiry_missed * 3 / 2;
}

uint64_t members_next_expiry(const guts_core *c)
{
    uint64_t t = 0;
    for (size_t i = 0; i < c->npeers; i++) {
        uint64_t e = expiry_of(c, &c->peers[i]);
        if (!t || e < t)
            t = e;
    }
    return t;
}

void members_expire(guts_core *c)
{
    for (size_t i = c->npeers; i-- > 0;) {
        if (c->now >= expiry_of(c, &c->peers[i])) {
            c->ctr.peers_expired++;
            sync_abort_peer(c, &c->peers[i].addr);
            members_remove(c, i, "expired");
        }
    }
}

peer *members_heard(guts_core *c, const guts_node_id *id, const guts_addr *addr,
                    uint64_t inc, uint16_t port, uint32_t interval)
{
    peer *p = members_find(c, id);
    if (p && inc < p->inc)
        return NULL; /* a datagram from before its restart */
    if (p && inc > p->inc) {
        char hex[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(id, hex);
        core_log(c, GUTS_LOG_INFO, "peer %s restarted (incarnation %llu)", hex,
                 (unsigned long long)inc);
        sync_abort_peer(c, &p->addr);
        peer_clear_repos(p);
        p->inc = inc;
    }
    if (!p) {
        if (c->npeers >= CORE_PEERS_MAX)
            return NULL;
        if (c->npeers == c->cappeers) {
            size_t nc = c->cappeers ? 2 * c->cappeers : 8;
            peer *np = realloc(c->peers, nc * sizeof(peer));
            if (!np)
                return NULL;
            c->peers = np;
            c->cappeers = nc;
        }
        p = &c->peers[c->npeers++];
        memset(p, 0, sizeof(*p));
        p->id = *id;
        p->inc = inc;
        char hex[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(id, hex);
        core_log(c, GUTS_LOG_INFO, "peer %s joined", hex);
        c->ctr.peers_joined++;
        /* a newcomer should hear from us soon, not in a full interval */
        c->announce_soon = 1;
    }
    p->addr = *addr;
    p->port = port;
    p->interval = interval;
    p->last_heard = c->now;
    return p;
}

static size_t prepo_pos(const peer *p, const char *key, int *found)
{
    size_t lo = 0, hi = p->nrepos;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(p->repos[mid].key, key);
        if (r == 0) {
            *found = 1;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

peer_repo *members_repo(peer *p, const char *key)
{
    int found;
    size_t i = prepo_pos(p, key, &found);
    return found ? &p->repos[i] : NULL;
}

int members_repo_set(peer *p, const char *key, uint64_t objects, guts_fp fp,
                     uint64_t rdigest, uint64_t now)
{
    int found;
    size_t i = prepo_pos(p, key, &found);
    if (!found) {
        if (p->nrepos >= CORE_PEER_REPOS_MAX)
            return GUTS_EFULL;
        if (p->nrepos == p->caprepos) {
            size_t nc = p->caprepos ? 2 * p->caprepos : 8;
            peer_repo *np = realloc(p->repos, nc * sizeof(peer_repo));
            if (!np)
                return GUTS_ENOMEM;
            p->repos = np;
            p->caprepos = nc;
        }
        char *k = strdup(key);
        if (!k)
            return GUTS_ENOMEM;
        memmove(p->repos + i + 1, p->repos + i, (p->nrepos - i) * sizeof(peer_repo));
        p->nrepos++;
        p->repos[i].key = k;
    }
    p->repos[i].objects = objects;
    p->repos[i].fp = fp;
    p->repos[i].rdigest = rdigest;
    p->repos[i].heard = now;
    return GUTS_OK;
}
