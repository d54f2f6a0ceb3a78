/* sim_engine.c - the simulation engine's nodes: building and freeing the
 * engine, starting and stopping cores, per-node totals, violation lines.
 * The network they talk over is sim_net.c's.
 */
#include <assert.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sim_engine.h"

/* ---- memory: huge pages ------------------------------------------------------ */

/* A delivery reads ~30 cache lines of one core (its hot part, the
 * sketch's tail, the sender's view entry, the repository, the queues),
 * spread over several pages among the 280 MB that 10,000 cores hold (2.7 GB
 * at 100,000): with 4 KiB pages most of them also miss the TLB, and the
 * page walks grow with the group. The kernel backs a range
 * with 2 MiB pages only where asked (transparent_hugepage "madvise", the
 * usual default), and glibc asks only under GLIBC_TUNABLES
 * glibc.malloc.hugetlb=1, which a process cannot set for itself. So the
 * engine asks: for the malloc heap's new end whenever it has grown
 * (sim_heap_advise, from the event loop) and for its own large arrays.
 * Pages touched before the advice stay small; the heap grows SIM_HEAP_PAD
 * at a time, so that is little of it. Not freeing the heap's top back to
 * the kernel (SIM_HEAP_KEEP) keeps glibc from shrinking and regrowing it a
 * huge page at a time (each regrowth a fresh 2 MiB page to zero). Only
 * where the memory sits changes: runs are the same byte for byte. */
#define SIM_HUGE (2u << 20)
#define SIM_HEAP_PAD (32u << 20)
#define SIM_HEAP_KEEP (1u << 30)

void sim_huge(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    if (len < SIM_HUGE) return;
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)p + len) & ~(uintptr_t)4095;
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice: may fail */
#else
    (void)p;
    (void)len;
#endif
}

void sim_heap_advise(sim *s)
{
    char *end = sbrk(0);
    if (end == (char *)-1 || end <= s->heap_end) return;
    char *from = s->heap_end ? s->heap_end : end;
    s->heap_end = end;
    if (from < end) sim_huge(from, (size_t)(end - from));
}

/* ---- building and freeing ---------------------------------------------------- */

int sim_engine_init(sim *s, const sim_config *cfg)
{
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
    (void)mallopt(M_TOP_PAD, SIM_HEAP_PAD);
    (void)mallopt(M_TRIM_THRESHOLD, SIM_HEAP_KEEP);
    s->heap_end = sbrk(0);
    s->nodes = calloc(cfg->nodes, sizeof(snode));
    s->upgen = malloc(cfg->nodes * sizeof(uint32_t));
    if (!s->nodes || !s->upgen) return GUTS_ENOMEM;
    sim_huge(s->nodes, cfg->nodes * sizeof(snode)); /* before the loop below touches it */
    for (uint32_t i = 0; i < cfg->nodes; i++) {
        snode *nd = &s->nodes[i];
        s->upgen[i] = SIM_NOT_UP;
        for (size_t k = 0; k < GUTS_NODE_ID_LEN; k += 8) {
            uint64_t r = sim_rnd(s);
            memcpy(nd->id.b + k, &r, 8);
        }
    }
    return GUTS_OK;
}

void sim_engine_fini(sim *s)
{
    if (s->nodes) {
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            snode *nd = &s->nodes[i];
            guts_core_free(nd->core);
            guts_memstore_free(nd->mem);
            free(nd->links);
            free(nd->seeds);
        }
    }
    for (size_t i = 0; i < s->nheap; i++)
        sim_sbuf_drop(s, s->heap[i].buf);
    for (size_t b = 0; s->wheel && b < SIM_WHEEL_MS; b++)
        for (uint32_t k = s->wheel[b].head; k; k = s->enext[k - 1])
            sim_sbuf_drop(s, s->ev[k - 1].buf);
    free(s->wheel);
    free(s->ev);
    free(s->enext);
    for (size_t k = 0; k < s->capfans; k++) {
        free(s->fans[k].ent);
        free(s->fans[k].start);
        sim_sbuf_drop(s, s->fans[k].buf);
    }
    free(s->fans);
    for (int k = 0; k < SBUF_CLASSES; k++)
        for (sbuf *b; (b = s->sbuf_free[k]);) {
            s->sbuf_free[k] = b->next;
            free(b);
        }
    free(s->scr);
    free(s->scr_lat);
    free(s->scr_cnt);
    free(s->heap);
    free(s->links);
    free(s->nodes);
    free(s->upgen);
    guts_mempool_free(s->pool); /* after the stores using it */
}

/* ---- cores ------------------------------------------------------------------------ */

int sim_core_start(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    assert(nd->state != NODE_UP && !nd->core);
    guts_core_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.node_id = nd->id;
    cfg.incarnation = ++nd->inc;
    cfg.tcp_port = (uint16_t)(7000 + i % 1000); /* opaque to the core */
    cfg.interval_ms = s->cfg.interval_ms;
    cfg.seed = sim_rnd(s);
    cfg.store = &nd->iface;
    cfg.max_sessions = s->cfg.max_sessions;
    cfg.frame_max = s->cfg.frame_max;
    cfg.obj_max = s->cfg.obj_max;
    cfg.no_log = !s->cfg.verbose && !s->cfg.core_logs;
    cfg.events = s->event ? 1u << GUTS_EV_PEER_LEFT : 0; /* sim_member's false positives */
    /* the --peer addresses guts-node would pass: the same code paths
     * (seeds, symmetric answers, peer exchange, learned peers) */
    guts_addr seeds[GUTS_CORE_SEEDS_MAX];
    for (uint32_t k = 0; k < nd->nseeds; k++)
        sim_addr_of(nd->seeds[k], &seeds[k]);
    cfg.seeds = seeds;
    cfg.nseeds = nd->nseeds;
    int rc = guts_core_new(&cfg, &nd->core);
    if (rc) return rc;
    nd->state = NODE_UP;
    s->upgen[i] = nd->gen;
    nd->ever_started = 1;
    guts_core_on_timer(nd->core, s->now);
    sim_drain(s, i);
    return GUTS_OK;
}

/* The core goes away: streams reset at their other ends, pending events die
 * with the generation. */
void sim_core_stop(sim *s, uint32_t i, int state)
{
    snode *nd = &s->nodes[i];
    if (nd->state != NODE_UP) return;
    guts_core_free(nd->core);
    nd->core = NULL;
    while (nd->nlinks) {
        uint32_t li = nd->links[nd->nlinks - 1].link;
        slink *l = &s->links[li];
        sim_link_close(s, li, l->n[1] == i ? 1 : 0, sim_latency(s, l->n[0], l->n[1]));
    }
    nd->gen++;
    nd->state = state;
    s->upgen[i] = SIM_NOT_UP;
}

/* ---- totals ------------------------------------------------------------------------ */

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
        t->recv_msgs += s->nodes[i].recv_msgs;
        t->recv_bytes += s->nodes[i].recv_bytes;
    }
}

void sim_violation_note(sim_violations *v, uint32_t node, const char *fmt, ...)
{
    if (v->nlines >= SIM_VIOLATION_LINES) return;
    char *line = v->lines[v->nlines++];
    int n =
        snprintf(line, SIM_VIOLATION_LINE_MAX,
                 "t=%llums node %u: ", (unsigned long long)(v->now ? *v->now : 0), (unsigned)node);
    if (n < 0 || n >= SIM_VIOLATION_LINE_MAX) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, SIM_VIOLATION_LINE_MAX - (size_t)n, fmt, ap);
    va_end(ap);
}
