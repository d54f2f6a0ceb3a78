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

static size_t nid_hash(const guts_node_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof(h));
    return (size_t)((h ^ (h >> 29)) * 0x9e3779b97f4a7c15ull >> 3);
}

/* Rebuild the id index (after growth or a removal, which is rare). */
static int pindex_rebuild(guts_core *c, size_t want_cap)
{
    size_t cap = c->pindex_cap ? c->pindex_cap : 16;
    while (cap < want_cap * 2)
        cap *= 2;
    uint32_t *ix = calloc(cap, sizeof(uint32_t));
    if (!ix)
        return GUTS_ENOMEM;
    for (size_t i = 0; i < c->npeers; i++) {
        size_t j = nid_hash(&c->peers[i].id) & (cap - 1);
        while (ix[j])
            j = (j + 1) & (cap - 1);
        ix[j] = (uint32_t)i + 1;
    }
    free(c->pindex);
    c->pindex = ix;
    c->pindex_cap = cap;
    return GUTS_OK;
}

peer *members_find(guts_core *c, const guts_node_id *id)
{
    if (!c->pindex_cap)
        return NULL;
    size_t j = nid_hash(id) & (c->pindex_cap - 1);
    while (c->pindex[j]) {
        peer *p = &c->peers[c->pindex[j] - 1];
        if (memcmp(&p->id, id, sizeof(*id)) == 0)
            return p;
        j = (j + 1) & (c->pindex_cap - 1);
    }
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
    if (c->npeers == 0) {
        free(c->pindex);
        c->pindex = NULL;
        c->pindex_cap = 0;
    } else if (pindex_rebuild(c, c->npeers) != GUTS_OK) {
        /* keep lookups correct without an index: rebuilt on the next add */
        free(c->pindex);
        c->pindex = NULL;
        c->pindex_cap = 0;
    }
    /* what only it announced goes with it (another announcer brings it back);
     * not when the core is being freed (why NULL) */
    if (why && c->nremote)
        core_repo_evict_orphans(c);
}

static uint64_t expiry_of(const guts_core *c, const peer *p)
{
    uint32_t iv = p->interval ? p->interval : c->cfg.interval_ms;
    /* the sender jitters up to 1.5x its interval */
    return p->last_heard + (uint64_t)iv * c->cfg.expiry_missed * 3 / 2;
}

uint64_t members_next_expiry(const guts_core *c)
{
    return c->npeers ? c->next_expiry_check : 0;
}

/* Scan for expired peers when the earliest possible deadline has come, and
 * then not again for a fraction of an interval (see CORE_EXPIRY_SLACK_DIV). */
void members_expire(guts_core *c)
{
    if (!c->npeers || c->now < c->next_expiry_check)
        return;
    uint64_t next = 0;
    for (size_t i = c->npeers; i-- > 0;) {
        uint64_t e = expiry_of(c, &c->peers[i]);
        if (c->now >= e) {
            c->ctr.peers_expired++;
            sync_abort_peer(c, &c->peers[i].addr);
            members_remove(c, i, "expired");
        } else if (!next || e < next) {
            next = e;
        }
    }
    uint64_t slack = c->now + c->cfg.interval_ms / CORE_EXPIRY_SLACK_DIV;
    c->next_expiry_check = next > slack ? next : slack;
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
        if (c->npeers * 2 > c->pindex_cap || !c->pindex) {
            if (pindex_rebuild(c, c->npeers)) {
                c->npeers--;
                return NULL;
            }
        } else {
            size_t j = nid_hash(id) & (c->pindex_cap - 1);
            while (c->pindex[j])
                j = (j + 1) & (c->pindex_cap - 1);
            c->pindex[j] = (uint32_t)c->npeers;
        }
        /* a new peer's deadline may be the earliest */
        uint64_t e = c->now + (uint64_t)(interval ? interval : c->cfg.interval_ms) *
                                  c->cfg.expiry_missed * 3 / 2;
        if (c->npeers == 1 || e < c->next_expiry_check)
            c->next_expiry_check = e;
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
    uint64_t e = expiry_of(c, p); /* a shorter interval may bring it forward */
    if (e < c->next_expiry_check)
        c->next_expiry_check = e;
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
        memset(&p->repos[i], 0, sizeof(p->repos[i]));
        p->repos[i].key = k;
    }
    p->repos[i].objects = objects;
    p->repos[i].fp = fp;
    p->repos[i].rdigest = rdigest;
    p->repos[i].heard = now;
    return GUTS_OK;
}

static uint64_t state_sig(const peer_repo *pr)
{
    uint64_t h = pr->fp.lo * 0x9e3779b97f4a7c15ull;
    h ^= (pr->fp.hi + (h << 6) + (h >> 2)) * 0xbf58476d1ce4e5b9ull;
    h ^= (pr->rdigest + (h << 6) + (h >> 2)) * 0x94d049bb133111ebull;
    return h ? h : 1;
}

int members_repo_exhausted(const peer_repo *pr)
{
    return pr->empty_sig && pr->empty_sig == state_sig(pr);
}

/* Our own state only grows, so a peer that had nothing for us at state X
 * still has nothing while it announces X: remember X, and pull it again
 * eagerly only once it announces something else. */
void members_pulled(guts_core *c, const guts_node_id *id, const char *key, int empty)
{
    peer *p = members_find(c, id);
    peer_repo *pr = p ? members_repo(p, key) : NULL;
    if (!pr)
        return;
    pr->empty_sig = empty ? state_sig(pr) : 0;
}
