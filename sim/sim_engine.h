/* sim_engine.h - the engine's state, shared by sim_net.c (running) and
 * sim_report.c (measuring). Not a public interface: see sim.h.
 */
#ifndef GUTS_SIM_ENGINE_H
#define GUTS_SIM_ENGINE_H

#include "guts/lmdbstore.h"
#include "sim.h"

/* A delivered payload, shared by reference: one multicast is one buffer
 * however many nodes receive it. */
typedef struct sbuf {
    uint32_t refs;
    uint32_t len;
    int decoded;  /* a datagram: msg and rc hold guts_msg_decode's result */
    int rc;
    guts_msg msg; /* decoded once for every recipient (guts_core_on_msg) */
    uint8_t data[];
} sbuf;

enum { EV_DGRAM = 1, EV_OPEN, EV_FRAME, EV_CLOSED, EV_WRITABLE, EV_TIMER, EV_FANOUT };

#define LINK_NONE UINT32_MAX

/* 48 bytes: the heap holds every datagram copy in flight. */
typedef struct sev {
    uint64_t t, seq;
    uint32_t kind, node, gen, from; /* from: sender (DGRAM) or peer (OPEN) */
    uint32_t link;                  /* LINK_NONE for a failed connect */
    uint32_t aux; /* TIMER: tseq; OPEN: outgoing; CLOSED w/o link: stream; DGRAM: GUTS_VIA_* */
    sbuf *buf;
} sev;

/* One copy of a multicast in a fan-out: recipient and its generation. */
typedef struct sfan_ent {
    uint32_t node, gen;
} sfan_ent;

/* A multicast's copies, bucketed by delivery time (one bucket per ms of
 * the latency range), each bucket in recipient order. The heap holds one
 * EV_FANOUT event for its next bucket instead of one event per copy: a
 * multicast to 100,000 nodes is 800 KB here, not 4.8 MB of heap entries,
 * and the recipients come in node order (the engine prefetches ahead). */
typedef struct sfan {
    sbuf *buf; /* one reference, dropped with the fan */
    uint32_t from, via;
    uint64_t t0;      /* delivery time of bucket 0 */
    uint32_t nb, cur; /* buckets, next bucket to deliver */
    uint32_t *start;  /* nb + 1 offsets into ent */
    sfan_ent *ent;
    uint32_t next_free; /* free list (index + 1), 0: in use or last */
} sfan;

/* A stream between two nodes, one id at each end (0 opener, 1 acceptor). */
typedef struct slink {
    uint32_t n[2], id[2], gen[2];
    uint8_t closed[2];
    uint32_t inflight[2]; /* frames in flight towards end i */
    uint64_t last[2];     /* latest delivery time towards end i (TCP order) */
} slink;

enum { NODE_ABSENT = 0, NODE_UP, NODE_DOWN };

typedef struct snode {
    guts_core *core;
    int state;
    uint32_t gen, tseq;
    uint64_t inc;
    guts_node_id id;
    guts_memstore *mem;
    guts_data *data;
    guts_core_lmdbstore *lst;
    guts_core_store inner, iface;
    sim_cstore *cs;
    int dirty;
    uint64_t digest, changed_at;
    uint32_t *links; /* links with an open end here */
    size_t nlinks, caplinks;
    uint32_t group; /* partition group; all 0 when healed */
    uint64_t egress_free;
    uint64_t writes;
    int ever_started;
    uint32_t *seeds; /* nodes this one is configured with (guts-node --peer) */
    uint32_t nseeds;
    sim_traffic tr;
} snode;

struct sim {
    sim_config cfg;
    snode *nodes;
    guts_mempool *pool; /* object contents shared by the nodes' memstores */
    sev *heap;
    size_t nheap, capheap;
    uint64_t seq, now, rng;
    double loss, dup;
    uint32_t lat_min, lat_max;
    slink *links;
    size_t nlinks, caplinks;
    sfan *fans; /* in use while one of their buckets is pending */
    size_t nfans, capfans;
    uint32_t fan_free; /* index + 1 of a free fan, 0: none */
    /* scratch for building a fan-out: copies in send order, then counts */
    sfan_ent *scr;
    uint32_t *scr_lat;
    size_t nscr, capscr;
    uint32_t *scr_cnt;
    size_t capcnt;
    uint32_t next_accept;
    sim_action *sched; /* sorted by (t, seq) */
    size_t nsched, capsched, pos;
    uint64_t t_quiet; /* last fault, join, leave, heal or write */
    uint64_t end;     /* when the run stops */
    uint64_t stopped_at;
    int partitioned;
    char tmpdir[256];
    sim_violations viol;
    /* totals */
    uint64_t events, dgram_max, dgrams_lost, dgrams_duped, egress_dropped;
    uint64_t streams_opened, writes_done, crashes, restarts, joins, leaves;
    uint64_t dgram_deliveries, corrupted;
    /* traffic snapshot at the start of the steady window */
    uint64_t steady_from;
    int steady_taken;
    sim_traffic steady0;
    uint32_t steady_nodes;
    struct sim_member *member; /* sim_member.c; NULL until needed */
};

/* sim_net.c, for the report */
void sim_traffic_sum(const sim *s, sim_traffic *t);
int sim_all_equal(const sim *s);
/* sim_member.c: failure detection and join measurements (see there) */
typedef struct sim_member sim_member;
void sim_member_started(sim *s, uint32_t i, int scenario_join);
/* Before node i's core is stopped by a crash. */
void sim_member_crash(sim *s, uint32_t i);
/* When sim_member_tick wants to run next (0: nothing pending). */
uint64_t sim_member_next(const sim *s);
void sim_member_tick(sim *s);
void sim_member_event(sim *s, const guts_core_event *e);
/* The report's failure_detection and join members (json) or lines;
 * major: the digest of the largest agreeing group. */
void sim_member_report(sim *s, FILE *out, uint64_t major, int json);
void sim_member_free(sim *s);

#endif
