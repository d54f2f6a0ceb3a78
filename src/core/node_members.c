/* node_members.c - the view (a bounded peer table, built from announces)
 * and the group-size sketch.
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
 *
 * The view holds at most CORE_VIEW_MAX peers. Once full, a sender not in it
 * enters only when its announce is useful (a repository state we would
 * pull: the writer of an update always gets in; or, heard by unicast, it
 * lacks what we hold: announce_on decides), evicting the peer that is
 * least useful (no state we would pull), stalest first. Eviction sends
 * nothing and aborts nothing: a session with an evicted peer runs on.
 *
 * The group size, which sets the announce interval, is not the view's: it
 * is estimated from the k smallest keyed hashes of the sender ids heard
 * (k minimum values: exact below k distinct senders, else (k - 1) / the
 * k-th smallest hash as a fraction of 2^64). Senders are counted over two
 * epochs, each at least two announce intervals long (every live member
 * announces within 1.5 intervals) and at least as long as the node has run
 * (up to CORE_EPOCH_MAX_MS), so departed members fade out within two
 * epochs.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
/* inlined: the sketch hashes every sender of every announce per recipient */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core_internal.h"

static size_t nid_hash(const guts_node_id *id)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof(h));
    return (size_t)((h ^ (h >> 29)) * 0x9e3779b97f4a7c15ull >> 3);
}

/* An index slot: the peer's index + 1 in its low PINDEX_IDX_BITS bits (0:
 * empty), and above them the low bits of the id's hash, which pick the
 * slot: a lookup compares those before it reads a peer's id (a cache miss
 * per entry of the cluster otherwise: most senders of a large group are
 * not in the view), and a deletion finds an entry's home slot without
 * reading its peer. So the index holds at most 2^(32 - PINDEX_IDX_BITS)
 * slots, and the view fewer than 2^PINDEX_IDX_BITS - 1 peers. */
#define PINDEX_IDX_BITS 8
#define PINDEX_IDX_MASK ((1u << PINDEX_IDX_BITS) - 1)
#define PINDEX_TAG_MASK ((size_t)UINT32_MAX >> PINDEX_IDX_BITS)
_Static_assert(CORE_VIEW_MAX < PINDEX_IDX_MASK, "a peer's index + 1 fits an index slot");

static uint32_t slot_make(size_t h, size_t i)
{
    return (uint32_t)((h & PINDEX_TAG_MASK) << PINDEX_IDX_BITS) | (uint32_t)(i + 1);
}

/* The peer index + 1 in slot e (0: empty). */
static size_t slot_peer(uint32_t e)
{
    return e & PINDEX_IDX_MASK;
}

static size_t slot_tag(uint32_t e)
{
    return e >> PINDEX_IDX_BITS;
}

/* Rebuild the id index (after growth or a removal, which is rare). */
static int pindex_rebuild(guts_core *c, size_t want_cap)
{
    size_t cap = c->pindex_cap ? c->pindex_cap : 16;
    while (cap < want_cap * 2)
        cap *= 2;
    uint32_t *ix = calloc(cap, sizeof(uint32_t));
    if (!ix) return GUTS_ENOMEM;
    for (size_t i = 0; i < c->npeers; i++) {
        size_t h = nid_hash(&c->peers[i].id);
        size_t j = h & (cap - 1);
        while (ix[j])
            j = (j + 1) & (cap - 1);
        ix[j] = slot_make(h, i);
    }
    free(c->pindex);
    c->pindex = ix;
    c->pindex_cap = cap;
    return GUTS_OK;
}

peer *members_find(guts_core *c, const guts_node_id *id)
{
    if (!c->pindex_cap) return NULL;
    size_t h = nid_hash(id), j = h & (c->pindex_cap - 1);
    for (uint32_t e; (e = c->pindex[j]) != 0; j = (j + 1) & (c->pindex_cap - 1)) {
        if (slot_tag(e) != (h & PINDEX_TAG_MASK)) continue;
        peer *p = &c->peers[slot_peer(e) - 1];
        if (memcmp(&p->id, id, sizeof(*id)) == 0) return p;
    }
    return NULL;
}

/* p's repository entries: inline while there is one (most peers carry one
 * or a few, and scans of the view then touch no other memory), else an
 * array. */
/* The capacity of p's repository entries (a power of two, or 0: kept as
 * a shift, a byte in a hole of struct peer). */
static size_t pcap(const peer *p)
{
    return p->capshift ? (size_t)1 << (p->capshift - 1) : 0;
}
_Static_assert(CORE_PEER_REPOS_MAX <= 1u << 15, "the capacity's shift fits a byte");

static peer_repo *prepos(const peer *p)
{
    return pcap(p) > 1 ? p->repos : (peer_repo *)&p->one;
}

/* pr's key is its own copy, not the lrepo's (shared keys point into the
 * lrepo of that name, which members_forget_repo outlives). */
static int key_owned(guts_core *c, const peer_repo *pr)
{
    const lrepo *r = core_repo_find(c, pr->key);
    return !r || r->key != pr->key;
}

static void peer_clear_repos(guts_core *c, peer *p)
{
    peer_repo *pr = prepos(p);
    for (size_t i = 0; i < p->nrepos; i++)
        if (key_owned(c, &pr[i])) free((void *)pr[i].key);
    if (pcap(p) > 1) free(p->repos);
    p->repos = NULL;
    p->nrepos = 0;
    p->capshift = 0;
}

/* The index slot holding peer i + 1. */
static size_t pindex_slot(const guts_core *c, size_t i)
{
    size_t j = nid_hash(&c->peers[i].id) & (c->pindex_cap - 1);
    while (slot_peer(c->pindex[j]) != i + 1)
        j = (j + 1) & (c->pindex_cap - 1);
    return j;
}

/* Empty slot j of the linear-probing index, moving later entries of its
 * cluster back so every lookup still finds them (no tombstones). */
static void pindex_delete(guts_core *c, size_t j)
{
    size_t mask = c->pindex_cap - 1;
    for (size_t k = (j + 1) & mask; c->pindex[k]; k = (k + 1) & mask) {
        size_t home = slot_tag(c->pindex[k]) & mask;
        /* entry k may fill j unless its home lies cyclically in (j, k] */
        if (((k - home) & mask) >= ((k - j) & mask)) {
            c->pindex[j] = c->pindex[k];
            j = k;
        }
    }
    c->pindex[j] = 0;
}

void members_remove(guts_core *c, size_t i, const char *why)
{
    peer *p = &c->peers[i];
    if (why) {
        char hex[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(&p->id, hex);
        core_log(c, GUTS_LOG_INFO, "peer %s %s", hex, why);
        core_event(c, GUTS_EV_PEER_LEFT, NULL, NULL, NULL, NULL, &p->id, why);
        c->ctr.peers_left++;
    }
    peer_clear_repos(c, p);
    if (c->pindex) {
        pindex_delete(c, pindex_slot(c, i));
        if (i != c->npeers - 1) { /* the last entry moves to i */
            uint32_t *e = &c->pindex[pindex_slot(c, c->npeers - 1)];
            *e = (*e & ~PINDEX_IDX_MASK) | (uint32_t)(i + 1);
        }
    }
    probe_removed(c, i, c->npeers - 1);
    c->peers[i] = c->peers[c->npeers - 1];
    c->npeers--;
    if (c->npeers == 0) {
        free(c->pindex);
        c->pindex = NULL;
        c->pindex_cap = 0;
    }
    /* what only it announced goes with it (another announcer brings it back);
     * not when the core is being freed (why NULL) */
    if (why && c->nremote) core_repo_evict_orphans(c);
}

/* When p expires, given our own announce interval iv: the peer's
 * advertised interval, or ours when longer (a peer that announced first in
 * a group it did not know yet advertised too short a one; RTCP times
 * members out by the receiver's own interval). */
static uint64_t expiry_of(const guts_core *c, const peer *p, uint32_t iv)
{
    if (p->interval > iv) iv = p->interval;
    /* the sender jitters up to 1.5x its interval */
    return p->last_heard + (uint64_t)iv * c->cfg.expiry_missed * 3 / 2;
}

uint64_t members_next_expiry(const guts_core *c)
{
    return c->npeers ? c->next_expiry_check : 0;
}

/* Start a new sketch epoch when the current one is over. */
static void sketch_tick(guts_core *c)
{
    if (c->now < c->kmv_epoch_end) return;
    if (c->kmv_epoch_end) {
        c->kmv_cur ^= 1;
        c->nkmv[c->kmv_cur] = 0;
        c->kmv_est = c->kmv_exact = 0;
        c->kmv_stale = 0;
        c->kmv_owed = 0;
    }
    if (!c->kmv_epoch_end) c->kmv_since = c->now;
    /* at least two intervals, and while the group starts up (each member's
     * first announce is spread over its first interval) the whole time
     * since we started: forgetting early senders then would shrink the
     * estimate and the interval with it */
    uint64_t len = (uint64_t)c->cfg.interval_ms * c->cfg.expiry_missed * 3 / 2;
    uint64_t two = 2 * (uint64_t)announce_interval(c);
    uint64_t up = c->now - c->kmv_since;
    if (len < two) len = two;
    if (len < up) len = up < CORE_EPOCH_MAX_MS ? up : CORE_EPOCH_MAX_MS;
    c->kmv_epoch_end = c->now + len;
}

/* The first of the n sorted hashes a[] that is >= h. They are uniform
 * keyed hashes, so h's place is about n x h / a[n - 1]: the search starts
 * there and walks a few entries, most often within one cache line (a
 * binary search over the array took five or six misses, one after the
 * other, on every announce of a sender with a small hash). */
static size_t kmv_pos(const uint32_t *a, size_t n, uint32_t h)
{
    if (!n) return 0;
    double guess = (double)h / ((double)a[n - 1] + 1.0) * (double)n;
    size_t i = guess < (double)n ? (size_t)guess : n;
    while (i > 0 && a[i - 1] >= h)
        i--;
    while (i < n && a[i] < h)
        i++;
    return i;
}

static uint64_t sketch_estimate(guts_core *c);

void members_sketch_add(guts_core *c, const guts_node_id *id)
{
    uint32_t h = (uint32_t)(XXH3_64bits_withSeed(id->b, sizeof(id->b), c->kmv_seed) >> 32);
    uint32_t *a = c->kmv[c->kmv_cur];
    size_t n = c->nkmv[c->kmv_cur];
    if (n == CORE_KMV_K && h >= a[n - 1]) return;
    size_t lo = kmv_pos(a, n, h);
    if (lo < n && a[lo] == h) return;
    int full = n == CORE_KMV_K;
    if (c->kmv_owed) {
        /* an estimate of the epochs before this change was asked for:
         * computed now when it would outlive the change (a full epoch
         * keeps it for CORE_KMV_STALE insertions), else dropped with the
         * cache (see members_estimate_touch) */
        if (full && c->kmv_stale + 1 < CORE_KMV_STALE)
            (void)sketch_estimate(c);
        c->kmv_owed = 0;
    }
    if (full) n--; /* the largest makes room */
    memmove(a + lo + 1, a + lo, (n - lo) * sizeof(*a));
    a[lo] = h;
    c->nkmv[c->kmv_cur] = n + 1;
    /* a sender the last epoch holds (most of them while an epoch fills in
     * a steady group) leaves the union of the two as it was */
    const uint32_t *b = c->kmv[c->kmv_cur ^ 1];
    size_t nb = c->nkmv[c->kmv_cur ^ 1], j = full ? nb : kmv_pos(b, nb, h);
    if (j == nb || b[j] != h) {
        /* a sender new to both: below k distinct the estimate is their
         * count (+ 1, ourselves), one more now; no merge of the two
         * epochs per new sender while a large group starts up */
        if (!full && c->kmv_exact && c->kmv_exact < CORE_KMV_K) {
            c->kmv_est = ++c->kmv_exact;
            return;
        }
        c->kmv_exact = 0;
    }
    if (!full || ++c->kmv_stale >= CORE_KMV_STALE) {
        c->kmv_est = 0;
        c->kmv_stale = 0;
    }
}

/* Estimate from both epochs, without the view (cached until they change). */
static uint64_t sketch_estimate(guts_core *c)
{
    if (c->kmv_est) return c->kmv_est;
    if (c->kmv_exact) return c->kmv_est = c->kmv_exact;
    /* merge both epochs' sorted hashes: distinct ones, up to k. Each array
     * is strictly increasing (members_sketch_add adds no duplicate), so a
     * hash is repeated only across the two, and then both advance; without
     * branches on the data, which are a coin toss per step. */
    const uint32_t *a = c->kmv[0], *b = c->kmv[1];
    size_t na = c->nkmv[0], nb = c->nkmv[1], i = 0, j = 0, n = 0;
    uint32_t last = 0;
    while (n < CORE_KMV_K && i < na && j < nb) {
        uint32_t x = a[i], y = b[j];
        last = x < y ? x : y;
        i += x <= y;
        j += y <= x;
        n++;
    }
    /* the rest of one array: all above last */
    const uint32_t *rest = i < na ? a + i : b + j;
    size_t left = i < na ? na - i : nb - j;
    if (left > CORE_KMV_K - n) left = CORE_KMV_K - n;
    if (left) {
        last = rest[left - 1];
        n += left;
    }
    uint64_t est = n;
    if (n == CORE_KMV_K && last)
        est = (uint64_t)((CORE_KMV_K - 1) * 4294967296.0 / (double)last);
    c->kmv_est = c->kmv_exact = est + 1;
    c->kmv_owed = 0;
    return c->kmv_est;
}

/* The merge is what a new sender's admission cost in a full view
 * (announce_newcomer asked, 2.7 M times in the 10,000-node run, 5.7% of
 * guts-sim's instructions, for a value a full view makes moot), so it is
 * owed instead, and paid only if the estimate it would cache outlives the
 * next change of the epochs unrecomputed. What the cache then holds is
 * what asking would have left: until the next change the merge of the
 * epochs as they are; after an insertion into an epoch not full, the same
 * count the exact path (members_sketch_add) would have kept. */
void members_estimate_touch(guts_core *c)
{
    if (c->kmv_est) return;
    if (c->kmv_exact)
        c->kmv_est = c->kmv_exact;
    else
        c->kmv_owed = 1;
}

uint64_t members_estimate(guts_core *c)
{
    uint64_t est = sketch_estimate(c);
    return est > c->npeers + 1 ? est : c->npeers + 1;
}

/* Scan for expired peers when the earliest possible deadline has come, and
 * then not again for a fraction of an interval (see CORE_EXPIRY_SLACK_DIV). */
void members_expire(guts_core *c)
{
    sketch_tick(c);
    if (!c->npeers || c->now < c->next_expiry_check) return;
    uint64_t next = 0;
    uint32_t iv = announce_interval(c);
    for (size_t i = c->npeers; i-- > 0;) {
        uint64_t e = expiry_of(c, &c->peers[i], iv);
        if (c->now >= e && !sync_pulling_from(c, &c->peers[i].id)) {
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

/* p announced a state of one of our repositories that we would pull at once. */
static int peer_useful(guts_core *c, const peer *p)
{
    for (size_t k = 0; k < p->nrepos; k++) {
        const peer_repo *pr = &prepos(p)[k];
        if ((pr->objects == 0 && pr->rdigest == 0) || members_repo_exhausted(pr)) continue;
        const lrepo *r = core_repo_find(c, pr->key);
        if (r && announce_ahead(r, pr->objects, pr->fp, pr->rdigest)) return 1;
    }
    return 0;
}

/* Make room in a full view: of CORE_VIEW_SAMPLE peers drawn at random,
 * evict the least useful, stalest first (a full scan per newcomer would cost
 * O(view) during every update's spread; d random choices keep it O(1)).
 * A peer whose probe round is due within CORE_PROBE_FIRST_MS goes last,
 * before usefulness counts: we hold one of its next probe turns
 * (node_probe.c), and a turn whose holder left stays empty. Among the
 * rest, the one probed last (the next round furthest off) goes first.
 * With writes, the news announcers taken in turned whole views over in
 * ~15 s, the holders of a member's near turns left, and a crash waited for
 * a holder with a far turn: found after 21-32 s at 1,000 nodes, by some
 * holders never (issue 19, docs/performance.md). */
static void view_evict(guts_core *c)
{
    size_t victim = 0;
    int vu = 3;
    uint64_t vt = 0, vp = 0;
    /* the draws first, so the samples' cache misses overlap */
    size_t pick[CORE_VIEW_SAMPLE];
    for (int k = 0; k < CORE_VIEW_SAMPLE; k++) {
        pick[k] = (size_t)core_rand_below(c, c->npeers);
        const char *p = (const char *)&c->peers[pick[k]];
        __builtin_prefetch(p + offsetof(peer, nrepos));
        __builtin_prefetch(p + offsetof(peer, last_heard));
        __builtin_prefetch(p + offsetof(peer, one) + sizeof(peer_repo) - 1);
    }
    for (int k = 0; k < CORE_VIEW_SAMPLE; k++) {
        size_t i = pick[k];
        uint64_t pa = c->probe_at[i];
        int u = pa <= c->now + CORE_PROBE_FIRST_MS ? 2 : peer_useful(c, &c->peers[i]);
        if (u < vu || (u == vu && (pa > vp || (pa == vp && c->peers[i].last_heard < vt)))) {
            victim = i;
            vu = u;
            vt = c->peers[i].last_heard;
            vp = pa;
        }
    }
    c->ctr.peers_evicted++;
    probe_release(c, victim);
    members_remove(c, victim, NULL);
}

int members_live_since(guts_core *c, const peer *p, uint64_t at)
{
    if (!at) return 0;
    uint32_t iv = announce_interval(c);
    if (p->interval > iv) iv = p->interval;
    return c->now < at + (uint64_t)iv * c->cfg.expiry_missed * 3 / 2;
}

peer *members_heard(guts_core *c, const guts_node_id *id, const guts_addr *addr, int via,
                    uint64_t inc, uint16_t port, uint32_t interval, int useful, int *fresh)
{
    peer *p = members_find(c, id);
    *fresh = p == NULL;
    if (p && inc < p->inc) return NULL; /* a datagram from before its restart */
    if (p && inc > p->inc) {
        char hex[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(id, hex);
        core_log(c, GUTS_LOG_INFO, "peer %s restarted (incarnation %llu)", hex,
                 (unsigned long long)inc);
        sync_abort_peer(c, &p->addr);
        peer_clear_repos(c, p);
        p->inc = inc;
        p->addr_heard = 0; /* it may have moved */
    }
    if (!p) {
        if (c->npeers >= CORE_VIEW_MAX) {
            if (!useful) return NULL;
            view_evict(c);
        }
        if (c->npeers == c->cappeers) {
            size_t nc = c->cappeers ? 2 * c->cappeers : 8;
            peer *np = realloc(c->peers, nc * sizeof(peer));
            if (!np) return NULL;
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
            size_t h = nid_hash(id), j = h & (c->pindex_cap - 1);
            while (c->pindex[j])
                j = (j + 1) & (c->pindex_cap - 1);
            c->pindex[j] = slot_make(h, c->npeers - 1);
        }
        if (c->npeers == 1) c->next_expiry_check = 0; /* set below */
        probe_added(c, c->npeers - 1);
        if (!c->cfg.no_log) {
            char hex[2 * GUTS_NODE_ID_LEN + 1];
            guts_node_id_to_hex(id, hex);
            core_log(c, GUTS_LOG_INFO, "peer %s joined (%s)", hex, reach_path(c, addr, via));
        }
        core_event(c, GUTS_EV_PEER_JOINED, NULL, NULL, NULL, NULL, id, reach_path(c, addr, via));
        c->ctr.peers_joined++;
    }
    /* A node heard at several addresses (both IP families, two interfaces
     * on one link) keeps the one it has while datagrams still come from
     * it (within two of its intervals): streams and unicast copies go to
     * one place and the view does not flap; a node that moved is followed
     * once its old address falls silent. */
    uint64_t keep = (uint64_t)2 * (interval > c->cfg.interval_ms ? interval : c->cfg.interval_ms);
    if (guts_addr_eq(&p->addr, addr) || !p->addr_heard || c->now >= p->addr_heard + keep) {
        p->addr = *addr;
        p->addr_heard = c->now;
    }
    p->port = port;
    p->interval = interval;
    p->last_heard = c->now;
    if (via == GUTS_VIA_UNICAST)
        p->ucast_heard = c->now;
    else
        p->group_heard = c->now;
    /* a shorter interval may bring it forward (without ours: the scan
     * finds the true deadline, this one is never later) */
    uint64_t e = expiry_of(c, p, c->cfg.interval_ms);
    if (!c->next_expiry_check || e < c->next_expiry_check) c->next_expiry_check = e;
    return p;
}

typedef struct prepo_key {
    const peer_repo *a;
    const char *key;
} prepo_key;

static int prepo_cmp(const void *ctx, size_t i)
{
    const prepo_key *k = ctx;
    return k->a[i].key == k->key ? 0 : strcmp(k->a[i].key, k->key);
}

static size_t prepo_pos(const peer *p, const char *key, int *found)
{
    prepo_key k = {prepos(p), key};
    return guts_lower_bound(p->nrepos, prepo_cmp, &k, found);
}

peer_repo *members_repo(peer *p, const char *key)
{
    int found;
    size_t i = prepo_pos(p, key, &found);
    return found ? &prepos(p)[i] : NULL;
}

void members_forget_repo(guts_core *c, const lrepo *r)
{
    for (size_t i = 0; i < c->npeers; i++) {
        peer *p = &c->peers[i];
        int found;
        size_t j = prepo_pos(p, r->key, &found);
        if (!found) continue;
        peer_repo *a = prepos(p);
        if (a[j].key != r->key) free((void *)a[j].key);
        memmove(a + j, a + j + 1, (p->nrepos - j - 1) * sizeof(peer_repo));
        p->nrepos--;
    }
}

int members_repo_set(peer *p, const char *key, const lrepo *r, uint64_t objects, guts_fp fp,
                     uint64_t rdigest)
{
    int found;
    size_t i = prepo_pos(p, key, &found);
    if (found && r && prepos(p)[i].key != r->key) { /* tracked since: share its key */
        free((void *)prepos(p)[i].key);
        prepos(p)[i].key = r->key;
    }
    if (!found) {
        if (p->nrepos >= CORE_PEER_REPOS_MAX) return GUTS_EFULL;
        size_t cap = pcap(p);
        if (p->nrepos == cap) {
            if (cap) { /* to 2 x cap entries, in an array */
                peer_repo *np = realloc(cap > 1 ? p->repos : NULL, 2 * cap * sizeof(peer_repo));
                if (!np) return GUTS_ENOMEM;
                if (cap == 1) np[0] = p->one;
                p->repos = np;
            }
            p->capshift++;
        }
        char *k = r ? NULL : strdup(key);
        if (!r && !k) return GUTS_ENOMEM;
        peer_repo *a = prepos(p);
        memmove(a + i + 1, a + i, (p->nrepos - i) * sizeof(peer_repo));
        p->nrepos++;
        memset(&a[i], 0, sizeof(a[i]));
        a[i].key = r ? r->key : k;
    }
    peer_repo *e = &prepos(p)[i];
    e->objects = objects;
    e->fp = fp;
    e->rdigest = rdigest;
    return GUTS_OK;
}

uint64_t members_state_sig(guts_fp fp, uint64_t rdigest)
{
    uint64_t h = fp.lo * 0x9e3779b97f4a7c15ull;
    h ^= (fp.hi + (h << 6) + (h >> 2)) * 0xbf58476d1ce4e5b9ull;
    h ^= (rdigest + (h << 6) + (h >> 2)) * 0x94d049bb133111ebull;
    return h ? h : 1;
}

static uint64_t state_sig(const peer_repo *pr)
{
    return members_state_sig(pr->fp, pr->rdigest);
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
    if (!pr) return;
    pr->empty_sig = empty ? state_sig(pr) : 0;
}

/* How many of a core's sessions a delivery's prefetch loads (settle scans
 * them all; most cores have none or a few). */
#define PREFETCH_SESSIONS 4

void guts_core_prefetch(const guts_core *c, int stage, const guts_node_id *sender)
{
    if (stage == 0) {
        /* the hot part (struct guts_core: up to the counters), and the
         * counters a datagram bumps */
        const char *p = (const char *)c;
        for (size_t off = 0; off < offsetof(guts_core, ctr); off += 64)
            __builtin_prefetch(p + off);
        __builtin_prefetch(&c->ctr.dgrams_in);
        __builtin_prefetch(&c->ctr.kind_in[GUTS_MSG_ANNOUNCE]);
        __builtin_prefetch(&c->ctr.kind_bytes_in[GUTS_MSG_ANNOUNCE]);
    } else if (stage == 1) {
        /* the arrays of pointers, so stage 2 reads them without a miss */
        if (c->nrepos) __builtin_prefetch(c->repos);
        if (c->nsess) __builtin_prefetch(c->sess);
        if (c->acts) __builtin_prefetch(c->acts);
        size_t n = c->nkmv[c->kmv_cur];
        if (n) __builtin_prefetch(&c->kmv[c->kmv_cur][n - 1]);
        if (sender && c->pindex_cap)
            __builtin_prefetch(&c->pindex[nid_hash(sender) & (c->pindex_cap - 1)]);
    } else {
        if (c->nrepos) { /* what an announce of it reads (struct lrepo's hot part) */
            const char *r = (const char *)c->repos[0];
            for (size_t off = 0; off < offsetof(lrepo, key) + 64; off += 64)
                __builtin_prefetch(r + off);
        }
        for (size_t i = 0; i < c->nsess && i < PREFETCH_SESSIONS; i++)
            __builtin_prefetch(c->sess[i]);
        if (!sender || !c->pindex_cap) return;
        size_t h = nid_hash(sender);
        uint32_t e = c->pindex[h & (c->pindex_cap - 1)];
        if (e && slot_tag(e) == (h & PINDEX_TAG_MASK)) {
            const char *p = (const char *)&c->peers[slot_peer(e) - 1];
            for (size_t off = 0; off < sizeof(peer); off += 64) /* up to 4 lines */
                __builtin_prefetch(p + off);
            __builtin_prefetch(p + sizeof(peer) - 1);
        }
    }
}
