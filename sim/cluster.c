/* cluster.c - the in-memory multi-node fixture (see cluster.h).
 *
 * One binary heap of events ordered by (time, sequence). Each node has a
 * generation number bumped by a restart; events addressed to an older
 * generation are dropped, which is how a crash loses timers and in-flight
 * deliveries. A stream is a link between two nodes with one id at each end
 * (the opener's core-chosen id; a fixture-chosen id with
 * GUTS_CORE_STREAM_DRIVER set at the acceptor). Frames keep their order per
 * direction; after the last in-flight frame of a direction is delivered the
 * sender hears on_stream_writable, which is the backpressure signal a real
 * socket gives when its buffer drains.
 */
#include "cluster.h"
#include "guts/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EV_DGRAM = 1, EV_OPEN, EV_FRAME, EV_CLOSED, EV_WRITABLE, EV_TIMER };

typedef struct event {
    uint64_t t, seq;
    int kind;
    size_t node;
    uint64_t gen;
    size_t from;      /* EV_DGRAM: sender; EV_OPEN: peer */
    int via;          /* EV_DGRAM: GUTS_VIA_* */
    uint32_t stream;  /* at `node` */
    int outgoing;     /* EV_OPEN */
    size_t link;      /* EV_FRAME, EV_CLOSED, EV_WRITABLE, EV_OPEN */
    uint64_t tseq;    /* EV_TIMER */
    uint8_t *buf;
    size_t len;
} event;

typedef struct link {
    size_t n[2];       /* node at each end: 0 opener, 1 acceptor */
    uint32_t id[2];    /* stream id at each end */
    uint64_t gen[2];   /* generation of each end when opened */
    int closed[2];     /* that end is gone (closed by its core or crashed) */
    uint64_t last[2];  /* last delivery time towards end i */
    uint32_t inflight[2]; /* frames in flight towards end i */
} link;

typedef struct node {
    guts_core *core;
    guts_memstore *mem;
    guts_core_store iface;
    uint64_t gen, inc, timer_seq;
    guts_node_id id;
} node;

struct guts_cluster {
    guts_cluster_config cfg;
    node *nodes;
    event *heap;
    size_t nheap, capheap;
    uint64_t seq, now, rng;
    link *links;
    size_t nlinks, caplinks;
    uint32_t next_accept;
    guts_cluster_stats stats;
    int verbose;
};

static uint64_t rnd(guts_cluster *cl)
{
    uint64_t z = (cl->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd01(guts_cluster *cl)
{
    return (double)(rnd(cl) >> 11) / 9007199254740992.0;
}

static uint64_t latency(guts_cluster *cl)
{
    uint32_t lo = cl->cfg.latency_min, hi = cl->cfg.latency_max;
    if (hi <= lo)
        return lo;
    return lo + rnd(cl) % (hi - lo + 1);
}

/* ---- heap ---------------------------------------------------------------- */

static int ev_less(const event *a, const event *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int push(guts_cluster *cl, event *e)
{
    if (cl->nheap == cl->capheap) {
        size_t nc = cl->capheap ? 2 * cl->capheap : 256;
        event *p = realloc(cl->heap, nc * sizeof(event));
        if (!p) {
            free(e->buf);
            return GUTS_ENOMEM;
        }
        cl->heap = p;
        cl->capheap = nc;
    }
    e->seq = cl->seq++;
    size_t i = cl->nheap++;
    cl->heap[i] = *e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_less(&cl->heap[i], &cl->heap[p]))
            break;
        event t = cl->heap[i];
        cl->heap[i] = cl->heap[p];
        cl->heap[p] = t;
        i = p;
    }
    return GUTS_OK;
}

static void pop(guts_cluster *cl, event *out)
{
    *out = cl->heap[0];
    cl->heap[0] = cl->heap[--cl->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < cl->nheap && ev_less(&cl->heap[l], &cl->heap[m]))
            m = l;
        if (r < cl->nheap && ev_less(&cl->heap[r], &cl->heap[m]))
            m = r;
        if (m == i)
            break;
        event t = cl->heap[i];
        cl->heap[i] = cl->heap[m];
        cl->heap[m] = t;
        i = m;
    }
}

/* ---- addresses ----------------------------------------------------------- */

static void addr_of(size_t i, guts_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = 2;
    a->b[0] = (uint8_t)(i >> 8);
    a->b[1] = (uint8_t)i;
}

static int addr_node(const guts_cluster *cl, const guts_addr *a, size_t *i)
{
    if (a->len != 2)
        return GUTS_EINVAL;
    *i = ((size_t)a->b[0] << 8) | a->b[1];
    return *i < cl->cfg.nodes ? GUTS_OK : GUTS_EINVAL;
}

/* ---- links --------------------------------------------------------------- */

static link *link_find(guts_cluster *cl, size_t nd, uint32_t stream, int *side)
{
    for (size_t i = 0; i < cl->nlinks; i++) {
        link *l = &cl->links[i];
        for (int s = 0; s < 2; s++) {
            if (l->n[s] == nd && l->id[s] == stream && !l->closed[s] &&
                l->gen[s] == cl->nodes[nd].gen) {
                *side = s;
                return l;
            }
        }
    }
    return NULL;
}

/* ---- actions ------------------------------------------------------------- */

static void send_dgram_copy(guts_cluster *cl, size_t from, size_t to, const guts_core_action *a)
{
    if (rnd01(cl) < cl->cfg.loss) {
        cl->stats.dgrams_lost++;
        return;
    }
    int copies = rnd01(cl) < cl->cfg.dup ? 2 : 1;
    if (copies == 2)
        cl->stats.dgrams_duped++;
    for (int k = 0; k < copies; k++) {
        event e = {.t = cl->now + latency(cl), .kind = EV_DGRAM, .node = to,
                   .gen = cl->nodes[to].gen, .from = from, .len = a->len,
                   .via = a->to_group ? GUTS_VIA_GROUP : GUTS_VIA_UNICAST};
        e.buf = malloc(a->len ? a->len : 1);
        if (!e.buf)
            return;
        memcpy(e.buf, a->data, a->len);
        push(cl, &e);
    }
}

static void perform(guts_cluster *cl, size_t i, const guts_core_action *a)
{
    node *nd = &cl->nodes[i];
    switch (a->kind) {
    case GUTS_ACT_SEND_DGRAM:
        cl->stats.dgrams++;
        cl->stats.dgram_bytes += a->len;
        if (a->len > cl->stats.dgram_max)
            cl->stats.dgram_max = a->len;
        if (a->to_group) {
            for (size_t j = 0; j < cl->cfg.nodes; j++)
                if (j != i)
                    send_dgram_copy(cl, i, j, a);
        } else {
            size_t j;
            if (addr_node(cl, &a->addr, &j) == GUTS_OK)
                send_dgram_copy(cl, i, j, a);
        }
        break;
    case GUTS_ACT_OPEN_STREAM: {
        size_t j;
        if (addr_node(cl, &a->addr, &j) != GUTS_OK || j == i) {
            event e = {.t = cl->now + 1, .kind = EV_CLOSED, .node = i, .gen = nd->gen,
                       .stream = a->stream, .link = SIZE_MAX};
            push(cl, &e);
            break;
        }
        if (cl->nlinks == cl->caplinks) {
            size_t nc = cl->caplinks ? 2 * cl->caplinks : 64;
            link *p = realloc(cl->links, nc * sizeof(link));
            if (!p)
                break;
            cl->links = p;
            cl->caplinks = nc;
        }
        link *l = &cl->links[cl->nlinks];
        memset(l, 0, sizeof(*l));
        l->n[0] = i;
        l->n[1] = j;
        l->id[0] = a->stream;
        l->id[1] = GUTS_CORE_STREAM_DRIVER | cl->next_accept++;
        l->gen[0] = nd->gen;
        l->gen[1] = cl->nodes[j].gen;
        uint64_t lat = latency(cl);
        event acc = {.t = cl->now + lat, .kind = EV_OPEN, .node = j, .gen = l->gen[1],
                     .from = i, .stream = l->id[1], .outgoing = 0, .link = cl->nlinks};
        event con = {.t = cl->now + 2 * lat, .kind = EV_OPEN, .node = i, .gen = l->gen[0],
                     .from = j, .stream = l->id[0], .outgoing = 1, .link = cl->nlinks};
        l->last[0] = con.t;
        l->last[1] = acc.t;
        cl->nlinks++;
        cl->stats.streams_opened++;
        push(cl, &acc);
        push(cl, &con);
        break;
    }
    case GUTS_ACT_SEND_FRAME: {
        int s;
        link *l = link_find(cl, i, a->stream, &s);
        if (!l || a->len < GUTS_FRAME_HDR)
            break;
        int o = 1 - s;
        uint64_t t = cl->now + latency(cl);
        if (t < l->last[o])
            t = l->last[o];
        l->last[o] = t;
        l->inflight[o]++;
        cl->stats.frames++;
        cl->stats.frame_bytes += a->len;
        event e = {.t = t, .kind = EV_FRAME, .node = l->n[o], .gen = l->gen[o],
                   .stream = l->id[o], .link = (size_t)(l - cl->links),
                   .len = a->len - GUTS_FRAME_HDR};
        e.buf = malloc(e.len ? e.len : 1);
        if (!e.buf)
            break;
        memcpy(e.buf, a->data + GUTS_FRAME_HDR, e.len);
        push(cl, &e);
        break;
    }
    case GUTS_ACT_CLOSE_STREAM: {
        int s;
        link *l = link_find(cl, i, a->stream, &s);
        if (!l)
            break;
        l->closed[s] = 1;
        int o = 1 - s;
        uint64_t t = cl->now + latency(cl);
        if (t < l->last[o])
            t = l->last[o];
        event e = {.t = t, .kind = EV_CLOSED, .node = l->n[o], .gen = l->gen[o],
                   .stream = l->id[o], .link = (size_t)(l - cl->links)};
        push(cl, &e);
        break;
    }
    case GUTS_ACT_SET_TIMER: {
        nd->timer_seq++;
        event e = {.t = a->at > cl->now ? a->at : cl->now, .kind = EV_TIMER, .node = i,
                   .gen = nd->gen, .tseq = nd->timer_seq};
        push(cl, &e);
        break;
    }
    case GUTS_ACT_LOG:
        if (cl->verbose)
            fprintf(stderr, "%8llu n%zu: %s\n", (unsigned long long)cl->now, i, a->text);
        break;
    default:
        break;
    }
}

static void drain(guts_cluster *cl, size_t i)
{
    guts_core_action a;
    while (cl->nodes[i].core && guts_core_next_action(cl->nodes[i].core, &a))
        perform(cl, i, &a);
}

/* ---- lifecycle ----------------------------------------------------------- */

static int start_core(guts_cluster *cl, size_t i)
{
    node *nd = &cl->nodes[i];
    guts_core_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.node_id = nd->id;
    cfg.incarnation = ++nd->inc;
    cfg.tcp_port = (uint16_t)i;
    cfg.interval_ms = cl->cfg.interval_ms;
    cfg.max_sessions = cl->cfg.max_sessions;
    cfg.frame_max = cl->cfg.frame_max;
    cfg.obj_max = cl->cfg.obj_max;
    cfg.seed = rnd(cl);
    cfg.store = &nd->iface;
    int rc = guts_core_new(&cfg, &nd->core);
    if (rc)
        return rc;
    guts_core_on_timer(nd->core, cl->now);
    drain(cl, i);
    return GUTS_OK;
}

int guts_cluster_new(const guts_cluster_config *cfg, guts_cluster **out)
{
    if (!cfg || cfg->nodes == 0 || cfg->nodes > GUTS_CLUSTER_NODES_MAX)
        return GUTS_EINVAL;
    guts_cluster *cl = calloc(1, sizeof(guts_cluster));
    if (!cl)
        return GUTS_ENOMEM;
    cl->cfg = *cfg;
    cl->cfg.stores = NULL; /* copied into the nodes: the caller's array may go */
    cl->rng = cfg->seed ^ 0x636c7573746572ull;
    cl->nodes = calloc(cfg->nodes, sizeof(node));
    if (!cl->nodes) {
        free(cl);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < cfg->nodes; i++) {
        node *nd = &cl->nodes[i];
        for (size_t k = 0; k < GUTS_NODE_ID_LEN; k += 8) {
            uint64_t r = rnd(cl);
            memcpy(nd->id.b + k, &r, 8);
        }
        if (cfg->stores) {
            nd->iface = cfg->stores[i];
            continue;
        }
        if (guts_memstore_new(&nd->mem)) {
            guts_cluster_free(cl);
            return GUTS_ENOMEM;
        }
        guts_memstore_iface(nd->mem, &nd->iface);
    }
    for (size_t i = 0; i < cfg->nodes; i++) {
        int rc = start_core(cl, i);
        if (rc) {
            guts_cluster_free(cl);
            return rc;
        }
    }
    *out = cl;
    return GUTS_OK;
}

void guts_cluster_free(guts_cluster *cl)
{
    if (!cl)
        return;
    for (size_t i = 0; i < cl->cfg.nodes; i++) {
        guts_core_free(cl->nodes[i].core);
        guts_memstore_free(cl->nodes[i].mem);
    }
    for (size_t i = 0; i < cl->nheap; i++)
        free(cl->heap[i].buf);
    free(cl->heap);
    free(cl->links);
    free(cl->nodes);
    free(cl);
}

int guts_cluster_restart(guts_cluster *cl, size_t i)
{
    if (i >= cl->cfg.nodes)
        return GUTS_EINVAL;
    node *nd = &cl->nodes[i];
    guts_core_free(nd->core);
    nd->core = NULL;
    /* the peer ends of its streams see them reset */
    for (size_t k = 0; k < cl->nlinks; k++) {
        link *l = &cl->links[k];
        for (int s = 0; s < 2; s++) {
            if (l->n[s] != i || l->closed[s] || l->gen[s] != nd->gen)
                continue;
            l->closed[s] = 1;
            int o = 1 - s;
            if (l->closed[o])
                continue;
            event e = {.t = cl->now + latency(cl), .kind = EV_CLOSED, .node = l->n[o],
                       .gen = l->gen[o], .stream = l->id[o], .link = k};
            push(cl, &e);
        }
    }
    nd->gen++;
    return start_core(cl, i);
}

/* ---- running ------------------------------------------------------------- */

static void dispatch(guts_cluster *cl, event *e)
{
    node *nd = &cl->nodes[e->node];
    if (e->gen != nd->gen || !nd->core)
        return;
    link *l = e->link < cl->nlinks ? &cl->links[e->link] : NULL;
    int side = 0;
    if (l)
        side = l->n[1] == e->node && l->id[1] == e->stream ? 1 : 0;
    switch (e->kind) {
    case EV_DGRAM: {
        guts_addr a;
        addr_of(e->from, &a);
        guts_core_on_datagram(nd->core, cl->now, &a, e->via, e->buf, e->len);
        break;
    }
    case EV_OPEN: {
        if (!l || l->closed[side])
            return;
        if (l->closed[1 - side] && e->outgoing) {
            /* the acceptor went away before the connect completed */
            l->closed[side] = 1;
            guts_core_on_stream_closed(nd->core, cl->now, e->stream);
            break;
        }
        guts_addr a;
        addr_of(e->from, &a);
        guts_core_on_stream_open(nd->core, cl->now, e->stream, &a, e->outgoing);
        break;
    }
    case EV_FRAME:
        if (!l)
            return;
        if (l->inflight[side])
            l->inflight[side]--;
        if (l->closed[side])
            return;
        guts_core_on_frame(nd->core, cl->now, e->stream, e->buf, e->len);
        if (l->inflight[side] == 0 && !l->closed[1 - side]) {
            event w = {.t = cl->now, .kind = EV_WRITABLE, .node = l->n[1 - side],
                       .gen = l->gen[1 - side], .stream = l->id[1 - side], .link = e->link};
            push(cl, &w);
        }
        break;
    case EV_WRITABLE:
        if (!l || l->closed[side])
            return;
        guts_core_on_stream_writable(nd->core, cl->now, e->stream);
        break;
    case EV_CLOSED:
        if (l) {
            if (l->closed[side])
                return; /* it closed its end itself */
            l->closed[side] = 1;
        }
        guts_core_on_stream_closed(nd->core, cl->now, e->stream);
        break;
    case EV_TIMER:
        if (e->tseq != nd->timer_seq)
            return; /* superseded */
        guts_core_on_timer(nd->core, cl->now);
        break;
    }
    drain(cl, e->node);
}

int guts_cluster_run_until(guts_cluster *cl, uint64_t t)
{
    while (cl->nheap && cl->heap[0].t <= t) {
        event e;
        pop(cl, &e);
        if (e.t > cl->now)
            cl->now = e.t;
        cl->stats.events++;
        dispatch(cl, &e);
        free(e.buf);
    }
    if (t > cl->now)
        cl->now = t;
    return GUTS_OK;
}

uint64_t guts_cluster_now(const guts_cluster *cl)
{
    return cl->now;
}

void guts_cluster_set_faults(guts_cluster *cl, double loss, double dup, uint32_t latency_min,
                             uint32_t latency_max)
{
    cl->cfg.loss = loss;
    cl->cfg.dup = dup;
    cl->cfg.latency_min = latency_min;
    cl->cfg.latency_max = latency_max;
}

void guts_cluster_local_change(guts_cluster *cl, size_t i, const char *key)
{
    if (i >= cl->cfg.nodes || !cl->nodes[i].core)
        return;
    guts_core_on_local_change(cl->nodes[i].core, cl->now, key);
    drain(cl, i);
}

size_t guts_cluster_size(const guts_cluster *cl)
{
    return cl->cfg.nodes;
}

guts_core *guts_cluster_core(guts_cluster *cl, size_t i)
{
    return i < cl->cfg.nodes ? cl->nodes[i].core : NULL;
}

guts_memstore *guts_cluster_store(guts_cluster *cl, size_t i)
{
    return i < cl->cfg.nodes ? cl->nodes[i].mem : NULL;
}

const guts_core_store *guts_cluster_iface(const guts_cluster *cl, size_t i)
{
    return i < cl->cfg.nodes ? &cl->nodes[i].iface : NULL;
}

void guts_cluster_stats_get(const guts_cluster *cl, guts_cluster_stats *out)
{
    *out = cl->stats;
}

void guts_cluster_set_verbose(guts_cluster *cl, int verbose)
{
    cl->verbose = verbose;
}

typedef struct keys {
    char **k;
    size_t n, cap;
} keys;

static int key_cb(const char *key, void *arg)
{
    keys *ks = arg;
    if (ks->n == ks->cap) {
        size_t nc = ks->cap ? 2 * ks->cap : 16;
        char **p = realloc(ks->k, nc * sizeof(char *));
        if (!p)
            return GUTS_ENOMEM;
        ks->k = p;
        ks->cap = nc;
    }
    ks->k[ks->n] = strdup(key);
    if (!ks->k[ks->n])
        return GUTS_ENOMEM;
    ks->n++;
    return 0;
}

static void keys_free(keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        free(ks->k[i]);
    free(ks->k);
}

int guts_cluster_converged(const guts_cluster *cl)
{
    keys k0 = {0};
    const guts_core_store *s0 = &cl->nodes[0].iface;
    if (s0->repos(s0->ctx, key_cb, &k0)) {
        keys_free(&k0);
        return 0;
    }
    int ok = 1;
    for (size_t i = 1; i < cl->cfg.nodes && ok; i++) {
        const guts_core_store *si = &cl->nodes[i].iface;
        keys ki = {0};
        if (si->repos(si->ctx, key_cb, &ki) || ki.n != k0.n)
            ok = 0;
        for (size_t r = 0; ok && r < k0.n; r++) {
            guts_repo_info a, b;
            if (strcmp(k0.k[r], ki.k[r]) != 0 || s0->info(s0->ctx, k0.k[r], &a) ||
                si->info(si->ctx, k0.k[r], &b) || !guts_fp_eq(a.fp, b.fp) ||
                a.objects != b.objects || !guts_fp_eq(a.refs_digest, b.refs_digest))
                ok = 0;
        }
        keys_free(&ki);
    }
    keys_free(&k0);
    return ok;
}
