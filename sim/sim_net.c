/* sim_net.c - the simulation engine's network: events, datagrams, streams.
 *
 * Events run in (virtual time, sequence number) order: a wheel of
 * one-ms FIFOs for the next SIM_WHEEL_MS ms, a 4-ary heap beyond.
 * Nothing reads a real clock: every choice comes from one splitmix64 stream
 * seeded by the run's seed (sim_engine.h), so a run is reproducible byte for
 * byte. guts-sim (sim_run.c adds its schedule of faults and writes) and the
 * core's test fixture (cluster.c) both run on this engine.
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
 * Node faults (sim_engine.c): a crash frees the core (its timers and
 * in-flight deliveries die with its generation) and resets its streams;
 * the store survives. A restart starts a new core with a higher
 * incarnation over the same store.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* inlined: a latency per datagram copy */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "sim_engine.h"

/* ---- latency ----------------------------------------------------------------- */

/* Per-link base latency: the lower half of [min, max] chosen by a hash of
 * the pair (a fixed path length), plus per-packet jitter over the upper
 * half. Everything stays in [min, max]. */
uint64_t sim_latency(sim *s, uint32_t a, uint32_t b)
{
    uint32_t lo = s->lat_min, hi = s->lat_max;
    if (hi <= lo) return lo;
    uint32_t span = hi - lo, half = span / 2;
    uint64_t pair = ((uint64_t)(a < b ? a : b) << 32) | (a < b ? b : a);
    uint64_t h = XXH3_64bits_withSeed(&pair, sizeof(pair), s->cfg.seed);
    return lo + h % (half + 1) + sim_rnd_below(s, span - half + 1);
}

/* ---- buffers and heap ------------------------------------------------------ */

static sbuf *sbuf_new(sim *s, const uint8_t *data, size_t len)
{
    size_t need = sizeof(sbuf) + (len ? len : 1);
    uint32_t k = 0;
    while (k < SBUF_CLASSES && (size_t)SBUF_MIN << k < need)
        k++;
    sbuf *b = k < SBUF_CLASSES ? s->sbuf_free[k] : NULL;
    if (b)
        s->sbuf_free[k] = b->next;
    else if (!(b = malloc(k < SBUF_CLASSES ? (size_t)SBUF_MIN << k : need)))
        return NULL;
    b->cls = k;
    b->refs = 0;
    b->len = (uint32_t)len;
    b->decoded = 0;
    if (len) memcpy(b->data, data, len);
    return b;
}

/* b, unreferenced, back to its class (or to malloc). */
static void sbuf_put(sim *s, sbuf *b)
{
    if (b->decoded) guts_msg_free(&b->msg);
    if (b->cls == SBUF_CLASSES) {
        free(b);
        return;
    }
    b->next = s->sbuf_free[b->cls];
    s->sbuf_free[b->cls] = b;
}

void sim_sbuf_drop(sim *s, sbuf *b)
{
    assert(!b || b->refs > 0);
    if (b && --b->refs == 0) sbuf_put(s, b);
}

/* The event heap is 4-ary: half the levels of a binary heap, and a node's
 * four children are 192 contiguous bytes (the heap holds every pending
 * timer, frame and fan-out bucket: ~10^5 entries at 10,000 nodes, beyond
 * the caches). Any heap pops in (t, seq) order, so runs are unchanged. */
#define HEAP_ARITY 4

static int ev_less(const sev *a, const sev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

/* Append e (seq already set) to its bucket of the wheel. */
static int wheel_add(sim *s, const sev *e)
{
    if (!s->wheel && !(s->wheel = calloc(SIM_WHEEL_MS, sizeof(sbucket)))) return GUTS_ENOMEM;
    if (!s->ev_free) {
        size_t nc = s->capev ? 2 * s->capev : 1024;
        sev *p = nc < UINT32_MAX ? realloc(s->ev, nc * sizeof(sev)) : NULL;
        if (!p) return GUTS_ENOMEM;
        s->ev = p;
        sim_huge(p, nc * sizeof(sev));
        uint32_t *q = realloc(s->enext, nc * sizeof(uint32_t));
        if (!q) return GUTS_ENOMEM;
        s->enext = q;
        sim_huge(q, nc * sizeof(uint32_t));
        for (size_t k = s->capev; k < nc; k++)
            q[k] = k + 1 < nc ? (uint32_t)k + 2 : 0;
        s->ev_free = (uint32_t)s->capev + 1;
        s->capev = nc;
    }
    uint32_t k = s->ev_free;
    s->ev_free = s->enext[k - 1];
    s->ev[k - 1] = *e;
    s->enext[k - 1] = 0;
    sbucket *b = &s->wheel[e->t & (SIM_WHEEL_MS - 1)];
    if (b->tail)
        s->enext[b->tail - 1] = k;
    else
        b->head = k;
    b->tail = k;
    s->nwheel++;
    return GUTS_OK;
}

static int heap_add(sim *s, const sev *e)
{
    if (s->nheap == s->capheap) {
        size_t nc = s->capheap ? 2 * s->capheap : 1024;
        sev *p = realloc(s->heap, nc * sizeof(sev));
        if (!p) return GUTS_ENOMEM;
        s->heap = p;
        sim_huge(p, nc * sizeof(sev));
        s->capheap = nc;
    }
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / HEAP_ARITY;
        if (!ev_less(e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = *e;
    return GUTS_OK;
}

static int push(sim *s, sev *e)
{
    assert(e->t >= s->now); /* nothing is scheduled in the past */
    e->seq = s->seq++;
    int rc = e->t < s->wheel_base + SIM_WHEEL_MS ? wheel_add(s, e) : heap_add(s, e);
    if (rc) return rc;
    if (e->buf) e->buf->refs++;
    if (e->link != LINK_NONE) s->links[e->link].refs++;
    return GUTS_OK;
}

static void heap_pop(sim *s, sev *out)
{
    *out = s->heap[0];
    sev last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    if (n == 0) return;
    for (;;) {
        size_t l = HEAP_ARITY * i + 1, m = i;
        const sev *best = &last;
        for (size_t k = l; k < l + HEAP_ARITY && k < n; k++) {
            if (ev_less(&s->heap[k], best)) {
                m = k;
                best = &s->heap[k];
            }
        }
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    s->heap[i] = last;
    assert(!ev_less(&s->heap[0], out)); /* heap order: nothing due before what left */
}

/* ---- addresses -------------------------------------------------------------- */

void sim_addr_of(uint32_t i, guts_addr *a)
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

static int node_link_add(snode *nd, uint32_t l, uint32_t stream)
{
    if (nd->nlinks == nd->caplinks) {
        size_t nc = nd->caplinks ? 2 * nd->caplinks : 8;
        snode_link *p = realloc(nd->links, nc * sizeof(*p));
        if (!p) return GUTS_ENOMEM;
        nd->links = p;
        nd->caplinks = nc;
    }
    nd->links[nd->nlinks++] = (snode_link){l, stream};
    return GUTS_OK;
}

static void node_link_del(snode *nd, uint32_t l)
{
    for (size_t k = 0; k < nd->nlinks; k++) {
        if (nd->links[k].link == l) {
            nd->links[k] = nd->links[--nd->nlinks];
            return;
        }
    }
}

/* Free link li's slot if nothing refers to it any more. */
static void link_release(sim *s, uint32_t li)
{
    slink *l = &s->links[li];
    if (l->refs || !l->closed[0] || !l->closed[1]) return;
    l->n[0] = s->link_free;
    s->link_free = li + 1;
}

static slink *link_find(sim *s, uint32_t i, uint32_t stream, int *side)
{
    snode *nd = &s->nodes[i];
    if (stream & GUTS_CORE_STREAM_DRIVER) { /* accepted here: named by its link */
        uint32_t li = stream & ~GUTS_CORE_STREAM_DRIVER;
        slink *l = li < s->nlinks ? &s->links[li] : NULL;
        if (!l || l->n[1] != i || l->id[1] != stream || l->closed[1] || l->gen[1] != nd->gen)
            return NULL;
        *side = 1;
        return l;
    }
    for (size_t k = 0; k < nd->nlinks; k++) {
        if (nd->links[k].stream != stream) continue; /* l->id[e], below */
        slink *l = &s->links[nd->links[k].link];
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
void sim_link_close(sim *s, uint32_t li, int side, uint64_t delay)
{
    slink *l = &s->links[li];
    if (l->closed[side]) return;
    l->closed[side] = 1;
    node_link_del(&s->nodes[l->n[side]], li);
    int o = 1 - side;
    if (l->closed[o]) {
        link_release(s, li);
        return;
    }
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
    if (s->cfg.corrupt <= 0 || b->len == 0 || sim_rnd01(s) >= s->cfg.corrupt) return NULL;
    sbuf *c = sbuf_new(s, b->data, b->len);
    if (!c) return NULL;
    c->data[sim_rnd_below(s, b->len)] ^= (uint8_t)(1 + sim_rnd_below(s, 255));
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
    uint32_t gen = s->upgen[j];
    if (gen == SIM_NOT_UP || (s->partitioned && !reachable(s, from, j))) return;
    if (s->loss > 0 && sim_rnd01(s) < s->loss) {
        s->dgrams_lost++;
        return;
    }
    int copies = 1;
    if (s->dup > 0 && sim_rnd01(s) < s->dup) {
        copies = 2;
        s->dgrams_duped++;
    }
    for (int k = 0; k < copies; k++) {
        sev e = {.t = dep + sim_latency(s, from, j),
                 .kind = EV_DGRAM,
                 .node = j,
                 .gen = gen,
                 .from = from,
                 .link = LINK_NONE,
                 .aux = via,
                 .buf = b};
        sbuf *bad = corrupt_copy(s, b);
        if (bad) e.buf = bad;
        if (fan && !bad && scr_reserve(s) == GUTS_OK) {
            s->scr[s->nscr] = (sfan_ent){j, gen};
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
    if (n > f->capent) {
        sfan_ent *p = realloc(f->ent, n * sizeof(sfan_ent));
        if (!p) return;
        f->ent = p;
        f->capent = (uint32_t)n;
    }
    if (nb + 1 > f->capstart) {
        uint32_t *p = realloc(f->start, (nb + 1) * sizeof(uint32_t));
        if (!p) return;
        f->start = p;
        f->capstart = nb + 1;
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
        fail = 2 * sim_latency(s, i, j); /* the host answers with a reset */
    if (!fail && !s->link_free && s->nlinks == s->caplinks) {
        size_t nc = s->caplinks ? 2 * s->caplinks : 256;
        slink *p = nc <= GUTS_CORE_STREAM_DRIVER ? realloc(s->links, nc * sizeof(slink)) : NULL;
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
    uint32_t li;
    if (s->link_free) {
        li = s->link_free - 1;
        s->link_free = s->links[li].n[0];
    } else {
        li = (uint32_t)s->nlinks++;
    }
    slink *l = &s->links[li];
    memset(l, 0, sizeof(*l));
    l->n[0] = i;
    l->n[1] = j;
    l->id[0] = a->stream;
    /* the accepting end's id names the link: link_find without a scan of
     * a server's thousands of links (a slot is reused only once both ends
     * have closed, so no live id names two links) */
    l->id[1] = GUTS_CORE_STREAM_DRIVER | li;
    l->gen[0] = nd->gen;
    l->gen[1] = s->nodes[j].gen;
    node_link_add(nd, li, l->id[0]);
    node_link_add(&s->nodes[j], li, l->id[1]);
    uint64_t lat = sim_latency(s, i, j);
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
        sbuf *b = sbuf_new(s, a->data, a->len);
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
        sim_sbuf_drop(s, b);
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
        uint64_t t = egress(s, i, a->len, 0) + sim_latency(s, l->n[0], l->n[1]);
        if (t < l->last[o]) t = l->last[o];
        l->last[o] = t;
        l->inflight[o]++;
        sbuf *b = sbuf_new(s, a->data + GUTS_FRAME_HDR, a->len - GUTS_FRAME_HDR);
        if (!b) break;
        sbuf *bad = corrupt_copy(s, b);
        if (bad) {
            sbuf_put(s, b);
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
        if (l) sim_link_close(s, (uint32_t)(l - s->links), side, sim_latency(s, l->n[0], l->n[1]));
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
        if (s->event && a->data && a->len == sizeof(guts_core_event))
            s->event(s, i, (const guts_core_event *)a->data);
        break;
    case GUTS_ACT_LOG:
        if (s->cfg.verbose) fprintf(stderr, "%10" PRIu64 " n%u: %s\n", s->now, i, a->text);
        break;
    default:
        break;
    }
}

/* ---- cores ------------------------------------------------------------------------ */

void sim_drain(sim *s, uint32_t i)
{
    guts_core_action a;
    while (s->nodes[i].core && guts_core_next_action(s->nodes[i].core, &a))
        perform(s, i, &a);
    if (s->nodes[i].core) guts_core_release_actions(s->nodes[i].core); /* perform copied them */
    if (s->nodes[i].dirty && s->changed) s->changed(s, i);
}

/* ---- events ------------------------------------------------------------------------ */

static void dgram_deliver(sim *s, snode *nd, uint32_t from, uint32_t via, sbuf *b)
{
    guts_addr a;
    sim_addr_of(from, &a);
    nd->recv_msgs++;
    nd->recv_bytes += b->len;
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
        assert(en.gen <= nd->gen); /* generations only grow */
        s->events++;
        s->ev_kinds[EV_FANOUT]++;
        if (en.gen != nd->gen || !nd->core) continue;
        if ((char *)sbrk(0) > s->heap_end) sim_heap_advise(s); /* a multicast allocates */
        dgram_deliver(s, nd, from, via, buf);
        sim_drain(s, en.node);
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
    f->buf = NULL;
    f->next_free = s->fan_free;
    s->fan_free = idx + 1;
    sim_sbuf_drop(s, buf);
}

static void dispatch(sim *s, sev *e)
{
    snode *nd = &s->nodes[e->node];
    assert(e->gen <= nd->gen); /* generations only grow */
    if (e->gen != nd->gen || !nd->core) return;
    slink *l = e->link != LINK_NONE ? &s->links[e->link] : NULL;
    /* a link joins two different nodes: the end here is the one naming it */
    int side = l && l->n[1] == e->node ? 1 : 0;
    /* an event of a live generation is for the link end it opened */
    assert(!l || (l->n[side] == e->node && l->gen[side] == e->gen));
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
        sim_addr_of(e->from, &a);
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
    sim_drain(s, e->node);
}

void sim_partition(sim *s, const uint32_t *group)
{
    uint32_t N = s->cfg.nodes;
    for (uint32_t i = 0; i < N; i++)
        s->nodes[i].group = group ? group[i] : 0;
    s->partitioned = group != NULL;
    if (!group) return;
    for (uint32_t i = 0; i < N; i++) {
        snode *nd = &s->nodes[i];
        for (size_t k = 0; k < nd->nlinks;) {
            uint32_t li = nd->links[k].link;
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
            link_release(s, li);
        }
    }
}

/* The wheel turns to base (<= now): the heap's events now within its span
 * move into it, in (t, seq) order, so each bucket stays in seq order (its
 * bucket was empty: its previous time has passed). */
static void wheel_turn(sim *s, uint64_t base)
{
    s->wheel_base = base;
    while (s->nheap && s->heap[0].t < base + SIM_WHEEL_MS) {
        sev e;
        heap_pop(s, &e);
        if (wheel_add(s, &e) != GUTS_OK) abort(); /* a pending event lost */
    }
}

/* The wheel index + 1 of the next event if it is due by t, else 0 (the
 * heap's: the wheel turned to it). */
static uint32_t next_due(sim *s, uint64_t t)
{
    for (;;) {
        if (s->nwheel) {
            for (uint64_t u = s->wheel_base; u <= t && u < s->wheel_base + SIM_WHEEL_MS; u++) {
                uint32_t k = s->wheel[u & (SIM_WHEEL_MS - 1)].head;
                if (k) return k;
            }
            return 0;
        }
        if (!s->nheap || s->heap[0].t > t) return 0;
        wheel_turn(s, s->heap[0].t);
    }
}

/* Timers and frames come one event each, in no order a fan-out's
 * lookahead could use: while an event runs, load the hot part of the next
 * one's core (its node was loaded one event earlier) and the nodes of the
 * three events after it in its bucket, and only prefetch the entry of the
 * one after those (the pool's entries of a bucket are scattered: reading
 * it here was a miss on every event, which the next event now finds in
 * the cache). */
static void prefetch_next(const sim *s, uint32_t k)
{
    if (!k) return;
    const snode *nd = &s->nodes[s->ev[k - 1].node];
    if (s->ev[k - 1].kind != EV_FANOUT && nd->core) guts_core_prefetch(nd->core, 0, NULL);
    k = s->enext[k - 1];
    for (int n = 0; n < 3 && k; n++, k = s->enext[k - 1])
        __builtin_prefetch(&s->nodes[s->ev[k - 1].node]);
    if (!k) return;
    __builtin_prefetch(&s->ev[k - 1].kind); /* kind and node: one line */
    __builtin_prefetch(&s->enext[k - 1]);
}

void sim_events_run(sim *s, uint64_t t)
{
    for (uint32_t k; (k = next_due(s, t));) {
        if ((char *)sbrk(0) > s->heap_end) sim_heap_advise(s); /* sbrk(0): a load */
        sev e = s->ev[k - 1];
        sbucket *b = &s->wheel[e.t & (SIM_WHEEL_MS - 1)];
        b->head = s->enext[k - 1];
        if (!b->head) b->tail = 0;
        s->enext[k - 1] = s->ev_free;
        s->ev_free = k;
        s->nwheel--;
        if (e.t > s->wheel_base) wheel_turn(s, e.t);
        prefetch_next(s, b->head);
        if (e.t > s->now) s->now = e.t;
        if (e.kind == EV_FANOUT) {
            fan_run(s, e.aux);
            continue;
        }
        s->events++;
        s->ev_kinds[e.kind]++;
        dispatch(s, &e);
        sim_sbuf_drop(s, e.buf);
        if (e.link != LINK_NONE && !--s->links[e.link].refs) link_release(s, e.link);
    }
    if (t > s->now) s->now = t;
    if (s->now > s->wheel_base) wheel_turn(s, s->now); /* nothing is due before now */
}
