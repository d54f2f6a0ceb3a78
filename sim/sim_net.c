/* sim_net.c - guts-sim's engine: virtual clock, network, faults, schedule.
 *
 * One binary heap of events ordered by (virtual time, sequence number);
 * scheduled actions (faults, writes, network changes) sit in a sorted array
 * and run once the events of earlier instants are done. Nothing reads a
 * real clock: every choice comes from one splitmix64 stream seeded by
 * --seed, so a run is reproducible byte for byte.
 *
 * Network model (see docs/simulator.md):
 *  - Datagrams: a multicast is one buffer shared by every recipient in the
 *    sender's domain; each copy is lost with probability loss, duplicated
 *    with probability dup, and delayed by the link's base latency plus
 *    jitter (so copies reorder). Domain gateways (node d of domain d) also
 *    unicast their group datagrams to the previous and next domains'
 *    gateways, as guts-node --peer does between networks without a
 *    multicast route.
 *    A copy towards a node that is down or absent when it is sent is lost.
 *  - Without multicast (--no-multicast) group datagrams reach nobody; each
 *    node's core gets seeds (--peers, the daemon's --peer) and the core's
 *    own reach code (symmetric answers, PEERS, learned peers) does the rest.
 *    Segments (--segments) split the group like domains, but their only
 *    bridge is one seed: node s of segment s knows node s - 1.
 *  - Streams are TCP-like: reliable and ordered per direction; a frame is
 *    delivered no earlier than the one before it; when the last frame in
 *    flight towards a node arrives, the sender hears on_stream_writable.
 *  - Bandwidth (optional): each node's egress is a queue drained at the
 *    given rate; datagrams that would wait over SIM_EGRESS_QUEUE_MS drop.
 *  - Partitions: nodes carry a group number; nothing crosses groups,
 *    streams across a new cut are reset, connects across it time out.
 * Node faults: a crash frees the core (its timers and in-flight deliveries
 * die with its generation) and resets its streams; the store survives. A
 * restart starts a new core with a higher incarnation over the same store.
 * Join starts an absent node; leave sends LEAVE and makes it absent.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "sim_engine.h"

/* ---- randomness ------------------------------------------------------------ */

static uint64_t rnd(sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd01(sim *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

static uint64_t rnd_below(sim *s, uint64_t n)
{
    return n ? rnd(s) % n : 0;
}

/* Per-link base latency: the lower half of [min, max] chosen by a hash of
 * the pair (a fixed path length), plus per-packet jitter over the upper
 * half. Everything stays in [min, max]. */
static uint64_t latency(sim *s, uint32_t a, uint32_t b)
{
    uint32_t lo = s->lat_min, hi = s->lat_max;
    if (hi <= lo) return lo;
    uint32_t span = hi - lo, half = span / 2;
    uint64_t pair = ((uint64_t)(a < b ? a : b) << 32) | (a < b ? b : a);
    uint64_t h = XXH3_64bits_withSeed(&pair, sizeof(pair), s->cfg.seed);
    return lo + h % (half + 1) + rnd_below(s, span - half + 1);
}

/* ---- buffers and heap ------------------------------------------------------ */

static sbuf *sbuf_new(const uint8_t *data, size_t len)
{
    sbuf *b = malloc(sizeof(sbuf) + (len ? len : 1));
    if (!b) return NULL;
    b->refs = 0;
    b->len = (uint32_t)len;
    b->decoded = 0;
    if (len) memcpy(b->data, data, len);
    return b;
}

static void sbuf_drop(sbuf *b)
{
    if (b && --b->refs == 0) {
        if (b->decoded) guts_msg_free(&b->msg);
        free(b);
    }
}

static int ev_less(const sev *a, const sev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int push(sim *s, sev *e)
{
    if (s->nheap == s->capheap) {
        size_t nc = s->capheap ? 2 * s->capheap : 1024;
        sev *p = realloc(s->heap, nc * sizeof(sev));
        if (!p) return GUTS_ENOMEM;
        s->heap = p;
        s->capheap = nc;
    }
    if (e->buf) e->buf->refs++;
    e->seq = s->seq++;
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = *e;
    return GUTS_OK;
}

static void pop(sim *s, sev *out)
{
    *out = s->heap[0];
    sev last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    if (n == 0) return;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const sev *best = &last;
        if (l < n && ev_less(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (l + 1 < n && ev_less(&s->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    s->heap[i] = last;
}

/* ---- addresses -------------------------------------------------------------- */

static void addr_of(uint32_t i, guts_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = 4;
    a->b[0] = (uint8_t)(i >> 24);
    a->b[1] = (uint8_t)(i >> 16);
    a->b[2] = (uint8_t)(i >> 8);
    a->b[3] = (uint8_t)i;
}

static int addr_node(const sim *s, const guts_addr *a, uint32_t *i)
{
    if (a->len != 4) return GUTS_EINVAL;
    *i = ((uint32_t)a->b[0] << 24) | ((uint32_t)a->b[1] << 16) | ((uint32_t)a->b[2] << 8) | a->b[3];
    return *i < s->cfg.nodes ? GUTS_OK : GUTS_EINVAL;
}

/* ---- links ------------------------------------------------------------------ */

static int node_link_add(snode *nd, uint32_t l)
{
    if (nd->nlinks == nd->caplinks) {
        size_t nc = nd->caplinks ? 2 * nd->caplinks : 8;
        uint32_t *p = realloc(nd->links, nc * sizeof(uint32_t));
        if (!p) return GUTS_ENOMEM;
        nd->links = p;
        nd->caplinks = nc;
    }
    nd->links[nd->nlinks++] = l;
    return GUTS_OK;
}

static void node_link_del(snode *nd, uint32_t l)
{
    for (size_t k = 0; k < nd->nlinks; k++) {
        if (nd->links[k] == l) {
            nd->links[k] = nd->links[--nd->nlinks];
            return;
        }
    }
}

static slink *link_find(sim *s, uint32_t i, uint32_t stream, int *side)
{
    snode *nd = &s->nodes[i];
    for (size_t k = 0; k < nd->nlinks; k++) {
        slink *l = &s->links[nd->links[k]];
        int e = l->n[1] == i ? 1 : 0;
        if (l->id[e] == stream && !l->closed[e] && l->gen[e] == nd->gen) {
            *side = e;
            return l;
        }
    }
    return NULL;
}

/* End `side` of link li closes without telling its own core (it closed it,
 * or it crashed); the other end hears EV_CLOSED after `delay`, and not
 * before the frames already in flight towards it. */
static void link_close(sim *s, uint32_t li, int side, uint64_t delay)
{
    slink *l = &s->links[li];
    if (l->closed[side]) return;
    l->closed[side] = 1;
    node_link_del(&s->nodes[l->n[side]], li);
    int o = 1 - side;
    if (l->closed[o]) return;
    uint64_t t = s->now + delay;
    if (t < l->last[o]) t = l->last[o];
    sev e = {.t = t, .kind = EV_CLOSED, .node = l->n[o], .gen = l->gen[o], .link = li};
    push(s, &e);
}

/* ---- egress ------------------------------------------------------------------ */

/* When a payload of len bytes leaves node i: now, or later behind its egress
 * queue. UINT64_MAX when a datagram would wait too long (dropped). */
static uint64_t egress(sim *s, uint32_t i, size_t len, int droppable)
{
    if (!s->cfg.bandwidth) return s->now;
    snode *nd = &s->nodes[i];
    uint64_t dep = nd->egress_free > s->now ? nd->egress_free : s->now;
    if (droppable && dep - s->now > SIM_EGRESS_QUEUE_MS) {
        s->egress_dropped++;
        return UINT64_MAX;
    }
    nd->egress_free = dep + (uint64_t)len * 1000 / s->cfg.bandwidth;
    return dep;
}

static int reachable(const sim *s, uint32_t a, uint32_t b)
{
    return s->nodes[a].group == s->nodes[b].group;
}

/* --corrupt: with that probability, a private copy of b with one byte
 * flipped (what a checksum that missed, or a bad NIC, delivers); NULL
 * otherwise. No random draw at all when the option is off, so runs without
 * it are unchanged by its existence. */
static sbuf *corrupt_copy(sim *s, const sbuf *b)
{
    if (s->cfg.corrupt <= 0 || b->len == 0 || rnd01(s) >= s->cfg.corrupt) return NULL;
    sbuf *c = sbuf_new(b->data, b->len);
    if (!c) return NULL;
    c->data[rnd_below(s, b->len)] ^= (uint8_t)(1 + rnd_below(s, 255));
    s->corrupted++;
    return c;
}

/* Room for one more copy in the fan-out scratch. */
static int scr_reserve(sim *s)
{
    if (s->nscr < s->capscr) return GUTS_OK;
    size_t nc = s->capscr ? 2 * s->capscr : 1024;
    sfan_ent *e = realloc(s->scr, nc * sizeof(*e));
    if (!e) return GUTS_ENOMEM;
    s->scr = e;
    uint32_t *l = realloc(s->scr_lat, nc * sizeof(*l));
    if (!l) return GUTS_ENOMEM;
    s->scr_lat = l;
    s->capscr = nc;
    return GUTS_OK;
}

/* One copy of a datagram towards j: loss, duplication, latency. With fan
 * set the copy goes to the fan-out scratch (fan_commit), else (and when it
 * is corrupted: a private buffer) into the heap. */
static void dgram_copy(sim *s, uint32_t from, uint32_t j, sbuf *b, uint64_t dep, uint32_t via,
                       int fan)
{
    snode *to = &s->nodes[j];
    if (to->state != NODE_UP || !reachable(s, from, j)) return;
    if (s->loss > 0 && rnd01(s) < s->loss) {
        s->dgrams_lost++;
        return;
    }
    int copies = 1;
    if (s->dup > 0 && rnd01(s) < s->dup) {
        copies = 2;
        s->dgrams_duped++;
    }
    for (int k = 0; k < copies; k++) {
        sev e = {.t = dep + latency(s, from, j),
                 .kind = EV_DGRAM,
                 .node = j,
                 .gen = to->gen,
                 .from = from,
                 .link = LINK_NONE,
                 .aux = via,
                 .buf = b};
        sbuf *bad = corrupt_copy(s, b);
        if (bad) e.buf = bad;
        if (fan && !bad && scr_reserve(s) == GUTS_OK) {
            s->scr[s->nscr] = (sfan_ent){j, to->gen};
            s->scr_lat[s->nscr++] = (uint32_t)(e.t - dep);
            continue;
        }
        push(s, &e);
    }
}

/* Turn the scratch copies of the multicast b (sent at dep) into a fan-out:
 * counting sort by latency, stable, so each bucket is in recipient order. */
static void fan_commit(sim *s, sbuf *b, uint32_t from, uint32_t via, uint64_t dep)
{
    size_t n = s->nscr;
    s->nscr = 0;
    if (n == 0) return;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t k = 0; k < n; k++) {
        if (s->scr_lat[k] < lo) lo = s->scr_lat[k];
        if (s->scr_lat[k] > hi) hi = s->scr_lat[k];
    }
    uint32_t nb = hi - lo + 1;
    if (nb + 1 > s->capcnt) {
        uint32_t *c = realloc(s->scr_cnt, (nb + 1) * sizeof(*c));
        if (!c) return;
        s->scr_cnt = c;
        s->capcnt = nb + 1;
    }
    if (!s->fan_free) {
        size_t nc = s->capfans ? 2 * s->capfans : 16;
        sfan *p = realloc(s->fans, nc * sizeof(*p));
        if (!p) return;
        s->fans = p;
        for (size_t k = s->capfans; k < nc; k++) {
            memset(&p[k], 0, sizeof(p[k]));
            p[k].next_free = k + 1 < nc ? (uint32_t)k + 2 : 0;
        }
        s->fan_free = (uint32_t)s->capfans + 1;
        s->capfans = nc;
    }
    uint32_t idx = s->fan_free - 1;
    sfan *f = &s->fans[idx];
    f->ent = malloc(n * sizeof(sfan_ent));
    f->start = malloc((nb + 1) * sizeof(uint32_t));
    if (!f->ent || !f->start) {
        free(f->ent);
        free(f->start);
        f->ent = NULL;
        f->start = NULL;
        return;
    }
    s->fan_free = f->next_free;
    f->next_free = 0;
    uint32_t *cnt = s->scr_cnt;
    memset(cnt, 0, (nb + 1) * sizeof(*cnt));
    for (size_t k = 0; k < n; k++)
        cnt[s->scr_lat[k] - lo + 1]++;
    for (uint32_t k = 0; k < nb; k++)
        cnt[k + 1] += cnt[k];
    memcpy(f->start, cnt, (nb + 1) * sizeof(*cnt));
    for (size_t k = 0; k < n; k++)
        f->ent[cnt[s->scr_lat[k] - lo]++] = s->scr[k];
    f->buf = b;
    b->refs++;
    f->from = from;
    f->via = via;
    f->t0 = dep + lo;
    f->nb = nb;
    f->cur = 0;
    sev e = {.t = f->t0, .kind = EV_FANOUT, .node = from, .link = LINK_NONE, .aux = idx};
    push(s, &e);
}

/* ---- actions from a core ------------------------------------------------------ */

static void open_stream(sim *s, uint32_t i, const guts_core_action *a)
{
    snode *nd = &s->nodes[i];
    uint32_t j = 0;
    uint64_t fail = 0;
    if (addr_node(s, &a->addr, &j) != GUTS_OK || j == i)
        fail = 1;
    else if (!reachable(s, i, j))
        fail = SIM_CONNECT_TIMEOUT_MS; /* SYNs vanish into the cut */
    else if (s->nodes[j].state != NODE_UP)
        fail = 2 * latency(s, i, j); /* the host answers with a reset */
    if (!fail && s->nlinks == s->caplinks) {
        size_t nc = s->caplinks ? 2 * s->caplinks : 256;
        slink *p = nc < UINT32_MAX ? realloc(s->links, nc * sizeof(slink)) : NULL;
        if (!p)
            fail = 1;
        else {
            s->links = p;
            s->caplinks = nc;
        }
    }
    if (fail) {
        sev e = {.t = s->now + fail,
                 .kind = EV_CLOSED,
                 .node = i,
                 .gen = nd->gen,
                 .link = LINK_NONE,
                 .aux = a->stream};
        push(s, &e);
        return;
    }
    uint32_t li = (uint32_t)s->nlinks++;
    slink *l = &s->links[li];
    memset(l, 0, sizeof(*l));
    l->n[0] = i;
    l->n[1] = j;
    l->id[0] = a->stream;
    l->id[1] = GUTS_CORE_STREAM_DRIVER | (s->next_accept++ & ~GUTS_CORE_STREAM_DRIVER);
    l->gen[0] = nd->gen;
    l->gen[1] = s->nodes[j].gen;
    node_link_add(nd, li);
    node_link_add(&s->nodes[j], li);
    uint64_t lat = latency(s, i, j);
    sev acc = {.t = s->now + lat,
               .kind = EV_OPEN,
               .node = j,
               .gen = l->gen[1],
               .from = i,
               .link = li,
               .aux = 0};
    sev con = {.t = s->now + 2 * lat,
               .kind = EV_OPEN,
               .node = i,
               .gen = l->gen[0],
               .from = j,
               .link = li,
               .aux = 1};
    l->last[0] = con.t;
    l->last[1] = acc.t;
    s->streams_opened++;
    push(s, &acc);
    push(s, &con);
}

static void perform(sim *s, uint32_t i, const guts_core_action *a)
{
    snode *nd = &s->nodes[i];
    switch (a->kind) {
    case GUTS_ACT_SEND_DGRAM: {
        if (a->len > s->dgram_max) s->dgram_max = a->len;
        if (a->len > GUTS_DGRAM_MAX) {
            s->viol.big_dgram++;
            sim_violation_note(&s->viol, i, "datagram of %zu bytes (limit %d)", a->len,
                               GUTS_DGRAM_MAX);
        }
        if (a->to_group && s->cfg.no_multicast) {
            /* no multicast route: the datagram never leaves the node (the
             * core's unicast copies to its peers come as their own
             * actions) */
            break;
        }
        if (a->to_group) {
            nd->tr.mcast_msgs++;
            nd->tr.mcast_bytes += a->len;
        } else {
            nd->tr.ucast_msgs++;
            nd->tr.ucast_bytes += a->len;
        }
        uint64_t dep = egress(s, i, a->len, 1);
        if (dep == UINT64_MAX) break;
        sbuf *b = sbuf_new(a->data, a->len);
        if (!b) break;
        b->refs = 1; /* held while the copies are pushed */
        if (a->to_group) {
            /* domains and segments both split the group by node number
             * mod their count (sim_new keeps one of them at 1) */
            uint32_t d = s->cfg.domains * s->cfg.segments, N = s->cfg.nodes;
            for (uint32_t j = i % d; j < N; j += d)
                if (j != i) dgram_copy(s, i, j, b, dep, GUTS_VIA_GROUP, 1);
            fan_commit(s, b, i, GUTS_VIA_GROUP, dep);
            /* gateways: node d of domain d has --peer set to both
             * neighbouring domains' gateways */
            for (uint32_t k = 0; s->cfg.domains > 1 && i < d && k < (d > 2 ? 2u : 1u); k++) {
                uint32_t g = k == 0 ? (i + 1) % d : (i + d - 1) % d;
                nd->tr.ucast_msgs++;
                nd->tr.ucast_bytes += a->len;
                /* as --peer on both gateways: already both ways */
                dgram_copy(s, i, g, b, dep, GUTS_VIA_GROUP, 0);
            }
        } else {
            uint32_t j;
            if (addr_node(s, &a->addr, &j) == GUTS_OK && j != i)
                dgram_copy(s, i, j, b, dep, GUTS_VIA_UNICAST, 0);
        }
        sbuf_drop(b);
        break;
    }
    case GUTS_ACT_OPEN_STREAM:
        open_stream(s, i, a);
        break;
    case GUTS_ACT_SEND_FRAME: {
        int side;
        slink *l = link_find(s, i, a->stream, &side);
        if (!l || a->len < GUTS_FRAME_HDR) break;
        nd->tr.frame_msgs++;
        nd->tr.frame_bytes += a->len;
        int o = 1 - side;
        uint64_t t = egress(s, i, a->len, 0) + latency(s, l->n[0], l->n[1]);
        if (t < l->last[o]) t = l->last[o];
        l->last[o] = t;
        l->inflight[o]++;
        sbuf *b = sbuf_new(a->data + GUTS_FRAME_HDR, a->len - GUTS_FRAME_HDR);
        if (!b) break;
        sbuf *bad = corrupt_copy(s, b);
        if (bad) {
            free(b);
            b = bad;
        }
        sev e = {.t = t,
                 .kind = EV_FRAME,
                 .node = l->n[o],
                 .gen = l->gen[o],
                 .link = (uint32_t)(l - s->links),
                 .buf = b};
        push(s, &e);
        break;
    }
    case GUTS_ACT_CLOSE_STREAM: {
        int side;
        slink *l = link_find(s, i, a->stream, &side);
        if (l) link_close(s, (uint32_t)(l - s->links), side, latency(s, l->n[0], l->n[1]));
        break;
    }
    case GUTS_ACT_SET_TIMER: {
        nd->tseq++;
        sev e = {.t = a->at > s->now ? a->at : s->now,
                 .kind = EV_TIMER,
                 .node = i,
                 .gen = nd->gen,
                 .link = LINK_NONE,
                 .aux = nd->tseq};
        push(s, &e);
        break;
    }
    case GUTS_ACT_EVENT:
        if (a->data && a->len == sizeof(guts_core_event))
            sim_member_event(s, (const guts_core_event *)a->data);
        break;
    case GUTS_ACT_LOG:
        if (s->cfg.verbose) fprintf(stderr, "%10" PRIu64 " n%u: %s\n", s->now, i, a->text);
        break;
    default:
        break;
    }
}

/* ---- convergence bookkeeping ----------------------------------------------------- */

typedef struct digest_ctx {
    const guts_core_store *st;
    XXH3_state_t *h;
    int err;
} digest_ctx;

static int digest_cb(const char *key, void *arg)
{
    digest_ctx *d = arg;
    guts_repo_info info;
    if (d->st->info(d->st->ctx, key, &info) != GUTS_OK) {
        d->err = 1;
        return 0;
    }
    /* A repository holding nothing is the same data as none: a corrupted
     * key in an announce makes one at its receivers, and the others learn
     * of it only from their announces (guts-sim --corrupt, seed 10). */
    if (info.objects == 0 && info.refs == 0 && info.tombstones == 0) return 0;
    XXH3_64bits_update(d->h, key, strlen(key) + 1);
    XXH3_64bits_update(d->h, &info.objects, sizeof(info.objects));
    XXH3_64bits_update(d->h, &info.fp, sizeof(info.fp));
    XXH3_64bits_update(d->h, &info.refs_digest, sizeof(info.refs_digest));
    return 0;
}

/* Digest of what a node holds: every non-empty repository's key, object
 * count, set fingerprint and refs digest, in key order. */
static uint64_t node_digest(sim *s, uint32_t i)
{
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    digest_ctx d = {&s->nodes[i].inner, h, 0};
    d.st->repos(d.st->ctx, digest_cb, &d);
    uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    if (d.err) {
        s->viol.store_error++;
        sim_violation_note(&s->viol, i, "store info failed while digesting");
    }
    return v;
}

static void note_change(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    if (!nd->dirty) return;
    nd->dirty = 0;
    uint64_t d = node_digest(s, i);
    if (d != nd->digest) {
        nd->digest = d;
        nd->changed_at = s->now;
    }
}

/* ---- cores ------------------------------------------------------------------------ */

static void drain(sim *s, uint32_t i)
{
    guts_core_action a;
    while (s->nodes[i].core && guts_core_next_action(s->nodes[i].core, &a))
        perform(s, i, &a);
    note_change(s, i);
}

static int start_core(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    guts_core_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.node_id = nd->id;
    cfg.incarnation = ++nd->inc;
    cfg.tcp_port = (uint16_t)(7000 + i % 1000); /* opaque to the core */
    cfg.interval_ms = s->cfg.interval_ms;
    cfg.seed = rnd(s);
    cfg.store = &nd->iface;
    cfg.no_log = !s->cfg.verbose;
    cfg.events = 1; /* PEER_LEFT: sim_member's false positives */
    /* the --peer addresses guts-node would pass: the same code paths
     * (seeds, symmetric answers, peer exchange, learned peers) */
    guts_addr seeds[GUTS_CORE_SEEDS_MAX];
    for (uint32_t k = 0; k < nd->nseeds; k++)
        addr_of(nd->seeds[k], &seeds[k]);
    cfg.seeds = seeds;
    cfg.nseeds = nd->nseeds;
    int rc = guts_core_new(&cfg, &nd->core);
    if (rc) return rc;
    nd->state = NODE_UP;
    nd->ever_started = 1;
    guts_core_on_timer(nd->core, s->now);
    drain(s, i);
    return GUTS_OK;
}

/* The core goes away: streams reset at their other ends, pending events die
 * with the generation. */
static void stop_core(sim *s, uint32_t i, int state)
{
    snode *nd = &s->nodes[i];
    if (nd->state != NODE_UP) return;
    guts_core_free(nd->core);
    nd->core = NULL;
    while (nd->nlinks) {
        uint32_t li = nd->links[nd->nlinks - 1];
        slink *l = &s->links[li];
        link_close(s, li, l->n[1] == i ? 1 : 0, latency(s, l->n[0], l->n[1]));
    }
    nd->gen++;
    nd->state = state;
}

/* ---- events ------------------------------------------------------------------------ */

static void dgram_deliver(sim *s, snode *nd, uint32_t from, uint32_t via, sbuf *b)
{
    guts_addr a;
    addr_of(from, &a);
    nd->tr.recv_msgs++;
    nd->tr.recv_bytes += b->len;
    s->dgram_deliveries++;
    if (!b->decoded && b->len <= GUTS_DGRAM_DROP) {
        b->rc = guts_msg_decode(b->data, b->len, &b->msg);
        b->decoded = 1;
    }
    if (b->decoded && b->rc == GUTS_OK)
        guts_core_on_msg(nd->core, s->now, &a, (int)via, &b->msg, b->len);
    else /* the core counts what fails to decode */
        guts_core_on_datagram(nd->core, s->now, &a, (int)via, b->data, b->len);
}

/* How far ahead (in copies) a fan-out prefetches: a recipient's node,
 * then its core in three stages (guts_core_prefetch), FAN_STEP apart. */
#define FAN_STEP 5
#define FAN_PREFETCH (4 * FAN_STEP)

/* Deliver the current bucket of fan idx, then schedule its next one or
 * free it. Every copy counts as an event. */
static void fan_run(sim *s, uint32_t idx)
{
    sfan *f = &s->fans[idx];
    uint32_t b = f->cur, from = f->from, via = f->via;
    sbuf *buf = f->buf;
    if (!buf->decoded && buf->len <= GUTS_DGRAM_DROP) {
        buf->rc = guts_msg_decode(buf->data, buf->len, &buf->msg);
        buf->decoded = 1;
    }
    const guts_node_id *sender = buf->decoded && buf->rc == GUTS_OK ? &buf->msg.sender : NULL;
    for (uint32_t k = f->start[b], end = f->start[b + 1]; k < end; k++) {
        f = &s->fans[idx]; /* a delivery may send, and grow s->fans */
        for (int st = 0; st < 4; st++) {
            uint32_t ahead = k + FAN_PREFETCH - (uint32_t)st * FAN_STEP;
            if (ahead >= end) continue;
            const snode *pn = &s->nodes[f->ent[ahead].node];
            if (st == 0)
                __builtin_prefetch(pn);
            else if (pn->core)
                guts_core_prefetch(pn->core, st - 1, sender);
        }
        sfan_ent en = f->ent[k];
        snode *nd = &s->nodes[en.node];
        s->events++;
        if (en.gen != nd->gen || !nd->core) continue;
        dgram_deliver(s, nd, from, via, buf);
        drain(s, en.node);
    }
    f = &s->fans[idx];
    do
        f->cur++;
    while (f->cur < f->nb && f->start[f->cur] == f->start[f->cur + 1]);
    if (f->cur < f->nb) {
        sev e = {.t = f->t0 + f->cur, .kind = EV_FANOUT, .node = from, .link = LINK_NONE,
                 .aux = idx};
        push(s, &e);
        return;
    }
    free(f->ent);
    free(f->start);
    f->ent = NULL;
    f->start = NULL;
    f->next_free = s->fan_free;
    s->fan_free = idx + 1;
    sbuf_drop(buf);
}

static void dispatch(sim *s, sev *e)
{
    snode *nd = &s->nodes[e->node];
    if (e->gen != nd->gen || !nd->core) return;
    slink *l = e->link != LINK_NONE ? &s->links[e->link] : NULL;
    /* a link joins two different nodes: the end here is the one naming it */
    int side = l && l->n[1] == e->node ? 1 : 0;
    switch (e->kind) {
    case EV_DGRAM:
        dgram_deliver(s, nd, e->from, e->aux, e->buf);
        break;
    case EV_OPEN: {
        if (l->closed[side]) return;
        if (l->closed[1 - side] && !l->inflight[side]) {
            /* the other end went away before the connect completed, and
             * sent nothing (what it sent, such as a "busy" ERROR, arrives
             * as over TCP: after the connect, before the close) */
            l->closed[side] = 1;
            node_link_del(nd, e->link);
            if (e->aux) guts_core_on_stream_closed(nd->core, s->now, l->id[side]);
            break;
        }
        guts_addr a;
        addr_of(e->from, &a);
        guts_core_on_stream_open(nd->core, s->now, l->id[side], &a, (int)e->aux);
        break;
    }
    case EV_FRAME:
        if (l->inflight[side]) l->inflight[side]--;
        if (l->closed[side]) return;
        guts_core_on_frame(nd->core, s->now, l->id[side], e->buf->data, e->buf->len);
        if (l->inflight[side] == 0 && !l->closed[1 - side]) {
            sev w = {.t = s->now,
                     .kind = EV_WRITABLE,
                     .node = l->n[1 - side],
                     .gen = l->gen[1 - side],
                     .link = e->link};
            push(s, &w);
        }
        break;
    case EV_WRITABLE:
        if (l->closed[side]) return;
        guts_core_on_stream_writable(nd->core, s->now, l->id[side]);
        break;
    case EV_CLOSED:
        if (l) {
            if (l->closed[side]) return; /* closed here already */
            l->closed[side] = 1;
            node_link_del(nd, e->link);
            guts_core_on_stream_closed(nd->core, s->now, l->id[side]);
        } else {
            guts_core_on_stream_closed(nd->core, s->now, e->aux);
        }
        break;
    case EV_TIMER:
        if (e->aux != nd->tseq) return; /* superseded */
        guts_core_on_timer(nd->core, s->now);
        break;
    }
    drain(s, e->node);
}

/* ---- scheduled actions ---------------------------------------------------------------- */

static int sched_add(sim *s, const sim_action *a)
{
    if (s->nsched == s->capsched) {
        size_t nc = s->capsched ? 2 * s->capsched : 256;
        sim_action *p = realloc(s->sched, nc * sizeof(sim_action));
        if (!p) return GUTS_ENOMEM;
        s->sched = p;
        s->capsched = nc;
    }
    sim_action *n = &s->sched[s->nsched];
    *n = *a;
    n->seq = s->nsched;
    n->group = NULL;
    s->nsched++;
    if (a->group) {
        size_t bytes = (size_t)s->cfg.nodes * sizeof(uint32_t);
        n->group = malloc(bytes);
        if (!n->group) return GUTS_ENOMEM;
        memcpy(n->group, a->group, bytes);
    }
    return GUTS_OK;
}

static int act_cmp(const void *x, const void *y)
{
    const sim_action *a = x, *b = y;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void do_write(sim *s, uint32_t i, uint32_t repo, uint32_t wn)
{
    snode *nd = &s->nodes[i];
    if (!nd->ever_started) return; /* not part of the group yet */
    int rc = sim_work_write(&nd->iface, repo, wn, nd->writes++, &nd->id);
    if (rc) {
        s->viol.store_error++;
        sim_violation_note(&s->viol, i, "local write failed: %s", guts_strerror(rc));
        return;
    }
    s->writes_done++;
    if (nd->core) {
        char key[GUTS_KEY_MAX + 1];
        sim_repo_key(repo, key);
        guts_core_on_local_change(nd->core, s->now, key);
        drain(s, i);
    } else {
        note_change(s, i);
    }
}

static void do_partition(sim *s, const uint32_t *group)
{
    uint32_t N = s->cfg.nodes;
    for (uint32_t i = 0; i < N; i++)
        s->nodes[i].group = group ? group[i] : 0;
    s->partitioned = group != NULL;
    if (!group) return;
    for (uint32_t i = 0; i < N; i++) {
        snode *nd = &s->nodes[i];
        for (size_t k = 0; k < nd->nlinks;) {
            uint32_t li = nd->links[k];
            slink *l = &s->links[li];
            if (reachable(s, l->n[0], l->n[1])) {
                k++;
                continue;
            }
            /* both ends hear a reset: neither data nor FIN crosses a cut */
            for (int e = 0; e < 2; e++) {
                if (l->closed[e]) continue;
                l->closed[e] = 1;
                node_link_del(&s->nodes[l->n[e]], li);
                sev ev = {.t = s->now + 1,
                          .kind = EV_CLOSED,
                          .node = l->n[e],
                          .gen = l->gen[e],
                          .link = LINK_NONE,
                          .aux = l->id[e]};
                push(s, &ev);
            }
        }
    }
}

static void run_action(sim *s, const sim_action *a)
{
    uint32_t i = a->node;
    snode *nd = i < s->cfg.nodes ? &s->nodes[i] : NULL;
    switch (a->kind) {
    case SA_CRASH:
        if (nd && nd->state == NODE_UP) {
            sim_member_crash(s, i);
            stop_core(s, i, NODE_DOWN);
            s->crashes++;
        }
        break;
    case SA_RESTART:
        if (nd && nd->state == NODE_DOWN && start_core(s, i) == GUTS_OK) {
            s->restarts++;
            sim_member_started(s, i, 0);
        }
        break;
    case SA_JOIN:
        if (nd && nd->state == NODE_ABSENT && start_core(s, i) == GUTS_OK) {
            s->joins++;
            sim_member_started(s, i, a->t >= s->cfg.ramp);
        }
        break;
    case SA_LEAVE:
        if (nd && nd->state == NODE_UP) {
            guts_core_leave(nd->core, s->now);
            drain(s, i);
            stop_core(s, i, NODE_ABSENT);
            s->leaves++;
        }
        break;
    case SA_PARTITION:
        do_partition(s, a->group);
        break;
    case SA_HEAL:
        do_partition(s, NULL);
        break;
    case SA_WRITE:
        if (nd && a->repo < s->cfg.repos) do_write(s, i, a->repo, a->writer);
        break;
    case SA_LOSS:
        s->loss = a->value;
        break;
    case SA_DUP:
        s->dup = a->value;
        break;
    case SA_LATENCY:
        s->lat_min = a->lat_min;
        s->lat_max = a->lat_max;
        break;
    }
}

/* ---- building the schedule from the options --------------------------------------------- */

static int build_schedule(sim *s)
{
    const sim_config *c = &s->cfg;
    uint32_t N = c->nodes;
    int rc = GUTS_OK;
    /* start-up: every node not declared absent joins in [0, ramp) */
    uint8_t *absent = calloc(N, 1);
    if (!absent) return GUTS_ENOMEM;
    for (size_t k = 0; k < c->nabsent; k++)
        if (c->absent[k] < N) absent[c->absent[k]] = 1;
    for (uint32_t i = 0; i < N && !rc; i++) {
        if (absent[i]) continue;
        sim_action a = {.t = rnd_below(s, c->ramp), .kind = SA_JOIN, .node = i};
        rc = sched_add(s, &a);
    }
    free(absent);
    /* random crashes: a Poisson process per node, each crash followed by a
     * restart 1-10 s later, all before faults_until */
    if (c->crash_rate > 0) {
        for (uint32_t i = 0; i < N && !rc; i++) {
            double t = 0;
            for (;;) {
                t += -log(1.0 - rnd01(s)) / c->crash_rate * 1000.0;
                if (t >= (double)c->faults_until) break;
                uint64_t tc = (uint64_t)t, tr = tc + 1000 + rnd_below(s, 9001);
                if (tr > c->faults_until) tr = c->faults_until;
                sim_action cr = {.t = tc, .kind = SA_CRASH, .node = i};
                sim_action re = {.t = tr, .kind = SA_RESTART, .node = i};
                if ((rc = sched_add(s, &cr)) || (rc = sched_add(s, &re))) break;
                t = (double)tr;
            }
        }
    }
    /* --partition A-B: the lower and upper halves of the node numbers */
    if (c->has_partition && !rc) {
        uint32_t *g = malloc((size_t)N * sizeof(uint32_t));
        if (!g) return GUTS_ENOMEM;
        for (uint32_t i = 0; i < N; i++)
            g[i] = i < N / 2 ? 0 : 1;
        sim_action p = {.t = c->part_from, .kind = SA_PARTITION, .group = g};
        sim_action h = {.t = c->part_to, .kind = SA_HEAL};
        rc = sched_add(s, &p);
        free(g);
        if (!rc) rc = sched_add(s, &h);
    }
    /* writers: writer w sits at a random node and writes repository w mod R
     * every write_every (jittered x[0.5, 1.5]) from 2 s until faults_until */
    if (c->repos && !rc) {
        for (uint32_t w = 0; w < c->writers && !rc; w++) {
            uint32_t node = (uint32_t)rnd_below(s, N);
            uint64_t t = 2000 + rnd_below(s, c->write_every + 1);
            while (t < c->faults_until && !rc) {
                sim_action a = {
                    .t = t, .kind = SA_WRITE, .node = node, .repo = w % c->repos, .writer = w};
                rc = sched_add(s, &a);
                t += c->write_every / 2 + rnd_below(s, c->write_every + 1);
            }
        }
    }
    /* the scenario file's own lines */
    for (size_t k = 0; k < c->nacts && !rc; k++)
        rc = sched_add(s, &c->acts[k]);
    if (rc) return rc;
    qsort(s->sched, s->nsched, sizeof(sim_action), act_cmp);
    s->t_quiet = 0;
    for (size_t k = 0; k < s->nsched; k++) {
        int kind = s->sched[k].kind;
        if (kind != SA_LOSS && kind != SA_DUP && kind != SA_LATENCY && s->sched[k].t > s->t_quiet)
            s->t_quiet = s->sched[k].t;
    }
    return GUTS_OK;
}

/* ---- seeds ---------------------------------------------------------------------------------- */

/* Each node's seed list, what a user gives guts-node as --peer: --peers K
 * distinct nodes drawn among the earlier nodes of its own segment (all of
 * them when there are fewer; the segment's first node knows nobody), so
 * the seeds form a connected graph in which every node was pointed at a
 * node already running, as people add machines to a network. With --star
 * they are the segment's first K nodes instead: every node names the same
 * hubs, as a configuration management tool would write it. With
 * --segments S, node s (1 <= s < S, the second segment's first node and
 * so on) also knows node s - 1 of the segment before: one address across
 * each cut, in one direction. */
static int choose_seeds(sim *s)
{
    uint32_t N = s->cfg.nodes, S = s->cfg.segments, K = s->cfg.seeds;
    if (K == 0 && S == 1) return GUTS_OK; /* no draw: runs without seeds unchanged */
    for (uint32_t i = 0; i < N; i++) {
        snode *nd = &s->nodes[i];
        uint32_t before = i / S; /* earlier nodes of i's segment: i % S + m S, m < before */
        uint32_t k = before < K ? before : K;
        int bridge = S > 1 && i > 0 && i < S;
        if (k + (uint32_t)bridge == 0) continue;
        nd->seeds = malloc((k + (uint32_t)bridge) * sizeof(uint32_t));
        if (!nd->seeds) return GUTS_ENOMEM;
        /* Floyd's sample of k distinct m in [0, before) */
        for (uint32_t j = before - k; j < before; j++) {
            uint32_t m = s->cfg.star ? j - (before - k) : (uint32_t)rnd_below(s, (uint64_t)j + 1);
            uint32_t node = i % S + m * S;
            for (uint32_t q = 0; q < nd->nseeds; q++)
                if (nd->seeds[q] == node) node = i % S + j * S;
            nd->seeds[nd->nseeds++] = node;
        }
        if (bridge) nd->seeds[nd->nseeds++] = i - 1;
    }
    return GUTS_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int node_store(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    int rc;
    if (s->cfg.lmdb) {
        char path[320];
        snprintf(path, sizeof(path), "%s/n%u", s->tmpdir, i);
        if ((rc = guts_data_open(path, GUTS_DATA_CREATE, &nd->data))) return rc;
        /* small maps: many envs in one process, and growth gets exercised */
        guts_data_set_initial_mapsize(nd->data, 1u << 20);
        if ((rc = guts_core_lmdbstore_new(nd->data, &nd->lst))) return rc;
        guts_core_lmdbstore_iface(nd->lst, &nd->inner);
    } else {
        if (!s->pool && (rc = guts_mempool_new(&s->pool))) return rc;
        if ((rc = guts_memstore_new_pooled(s->pool, &nd->mem))) return rc;
        guts_memstore_iface(nd->mem, &nd->inner);
    }
    if ((rc = sim_cstore_new(&nd->inner, i, &s->viol, &nd->dirty, &nd->cs))) return rc;
    sim_cstore_iface(nd->cs, &nd->iface);
    return GUTS_OK;
}

int sim_new(const sim_config *cfg, sim **out)
{
    sim *s = calloc(1, sizeof(sim));
    if (!s) return GUTS_ENOMEM;
    *out = s;
    s->cfg = *cfg; /* the scenario's actions stay the caller's */
    s->rng = cfg->seed ^ 0x67757473253173ull;
    s->loss = cfg->loss;
    s->dup = cfg->dup;
    s->lat_min = cfg->lat_min;
    s->lat_max = cfg->lat_max;
    s->viol.now = &s->now;
    s->end = cfg->duration;
    if (s->cfg.domains == 0) s->cfg.domains = 1;
    if (s->cfg.segments == 0 || s->cfg.domains > 1) s->cfg.segments = 1;
    sim_broken_merge_set(cfg->broken_merge);
    s->nodes = calloc(cfg->nodes, sizeof(snode));
    if (!s->nodes) return GUTS_ENOMEM;
    if (cfg->lmdb) {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/guts-sim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->tmpdir)) {
            s->tmpdir[0] = 0;
            return GUTS_EIO;
        }
    }
    int rc;
    for (uint32_t i = 0; i < cfg->nodes; i++) {
        snode *nd = &s->nodes[i];
        for (size_t k = 0; k < GUTS_NODE_ID_LEN; k += 8) {
            uint64_t r = rnd(s);
            memcpy(nd->id.b + k, &r, 8);
        }
        if ((rc = node_store(s, i))) return rc;
    }
    /* repository r starts at node r mod N with K objects */
    for (uint32_t r = 0; r < cfg->repos; r++) {
        uint32_t i = r % cfg->nodes;
        if ((rc = sim_work_seed(&s->nodes[i].iface, r, cfg->objects, &s->nodes[i].id))) return rc;
    }
    for (uint32_t i = 0; i < cfg->nodes; i++) {
        s->nodes[i].dirty = 1;
        note_change(s, i);
    }
    if ((rc = choose_seeds(s))) return rc;
    if ((rc = build_schedule(s))) return rc;
    s->steady_from = s->end - s->end / 4;
    return GUTS_OK;
}

/* Remove our own mkdtemp directory (and the nodes' data dirs in it). */
static void rm_tree(const char *dir)
{
    const char *base = strrchr(dir, '/');
    if (!dir[0] || !base || strncmp(base + 1, "guts-sim-", 9) != 0 || strchr(dir, '\'')) return;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "guts-sim: could not remove %s\n", dir);
}

void sim_free(sim *s)
{
    if (!s) return;
    sim_member_free(s);
    if (s->nodes) {
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            snode *nd = &s->nodes[i];
            guts_core_free(nd->core);
            sim_cstore_free(nd->cs);
            guts_memstore_free(nd->mem);
            guts_core_lmdbstore_free(nd->lst);
            if (nd->data) guts_data_close(nd->data);
            free(nd->links);
            free(nd->seeds);
        }
    }
    for (size_t i = 0; i < s->nheap; i++)
        sbuf_drop(s->heap[i].buf);
    for (size_t k = 0; k < s->capfans; k++) {
        if (!s->fans[k].ent) continue;
        free(s->fans[k].ent);
        free(s->fans[k].start);
        sbuf_drop(s->fans[k].buf);
    }
    free(s->fans);
    free(s->scr);
    free(s->scr_lat);
    free(s->scr_cnt);
    for (size_t k = 0; k < s->nsched; k++)
        free(s->sched[k].group);
    free(s->sched);
    free(s->heap);
    free(s->links);
    free(s->nodes);
    guts_mempool_free(s->pool); /* after the stores using it */
    if (s->tmpdir[0]) rm_tree(s->tmpdir);
    free(s);
}

/* ---- running --------------------------------------------------------------------------------- */

void sim_traffic_sum(const sim *s, sim_traffic *t)
{
    memset(t, 0, sizeof(*t));
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        const sim_traffic *n = &s->nodes[i].tr;
        t->mcast_msgs += n->mcast_msgs;
        t->mcast_bytes += n->mcast_bytes;
        t->ucast_msgs += n->ucast_msgs;
        t->ucast_bytes += n->ucast_bytes;
        t->frame_msgs += n->frame_msgs;
        t->frame_bytes += n->frame_bytes;
        t->recv_msgs += n->recv_msgs;
        t->recv_bytes += n->recv_bytes;
    }
}

/* All live nodes hold the same thing. */
int sim_all_equal(const sim *s)
{
    int have = 0;
    uint64_t d = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        const snode *nd = &s->nodes[i];
        if (nd->state != NODE_UP) continue;
        if (have && nd->digest != d) return 0;
        d = nd->digest;
        have = 1;
    }
    return 1;
}

static void run_events(sim *s, uint64_t t)
{
    while (s->nheap && s->heap[0].t <= t) {
        sev e;
        pop(s, &e);
        if (e.t > s->now) s->now = e.t;
        if (e.kind == EV_FANOUT) {
            fan_run(s, e.aux);
            continue;
        }
        s->events++;
        dispatch(s, &e);
        sbuf_drop(e.buf);
    }
    if (t > s->now) s->now = t;
}

/* How often a --until-converged run checks whether it may stop (ms). */
#define SIM_CHECK_EVERY 100
/* --progress: a line on stderr every this many virtual ms. */
#define SIM_PROGRESS_EVERY 10000

int sim_run(sim *s)
{
    uint64_t next_check = SIM_CHECK_EVERY, next_progress = SIM_PROGRESS_EVERY;
    for (;;) {
        uint64_t t = s->end;
        if (s->cfg.progress && next_progress < t) t = next_progress;
        if (s->pos < s->nsched && s->sched[s->pos].t < t) t = s->sched[s->pos].t;
        if (!s->steady_taken && s->steady_from < t) t = s->steady_from;
        if (s->cfg.until_converged && next_check < t) t = next_check;
        uint64_t mt = sim_member_next(s);
        if (mt && mt < t) t = mt;
        /* actions run after the events of earlier instants, before their own */
        run_events(s, t > 0 && s->pos < s->nsched && s->sched[s->pos].t == t ? t - 1 : t);
        if (s->now < t) s->now = t;
        if (!s->steady_taken && s->now >= s->steady_from) {
            sim_traffic_sum(s, &s->steady0);
            s->steady_taken = 1;
        }
        while (s->pos < s->nsched && s->sched[s->pos].t <= s->now)
            run_action(s, &s->sched[s->pos++]);
        sim_member_tick(s);
        if (s->cfg.progress && s->now >= next_progress) {
            fprintf(stderr,
                    "guts-sim: %" PRIu64 " virtual s, %" PRIu64 " events, %" PRIu64 " deliveries\n",
                    s->now / 1000, s->events, s->dgram_deliveries);
            next_progress = s->now + SIM_PROGRESS_EVERY;
        }
        if (s->cfg.until_converged && s->now >= next_check) {
            next_check = s->now + SIM_CHECK_EVERY;
            if (s->now >= s->t_quiet && s->pos >= s->nsched && !s->partitioned && sim_all_equal(s))
                break;
        }
        if (s->now >= s->end) {
            run_events(s, s->end);
            break;
        }
    }
    s->stopped_at = s->now;
    return GUTS_OK;
}
