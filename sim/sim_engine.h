/* sim_engine.h - the simulation engine: its state and interface.
 *
 * One engine for guts-sim and the core's test fixture: sim_net.c (events,
 * datagrams, streams, partitions) and sim_engine.c (building it, starting
 * and stopping cores). guts-sim drives it from sim_run.c and measures it in
 * sim_report.c and sim_member.c; cluster.c makes the fixture's API
 * (cluster.h) of it. Not a public interface: see sim.h.
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
    uint32_t cls;      /* size class (sim_net.c, sbuf_new); SBUF_CLASSES: none */
    struct sbuf *next; /* while free: the next of its class */
    guts_msg msg; /* decoded once for every recipient (guts_core_on_msg) */
    uint8_t data[];
} sbuf;

/* Buffers of up to SBUF_MIN << (SBUF_CLASSES - 1) bytes, header included,
 * are kept for reuse in classes of powers of two (datagrams and most
 * frames); larger ones are malloc'd and freed alone. */
#define SBUF_MIN 256
#define SBUF_CLASSES 6

enum { EV_DGRAM = 1, EV_OPEN, EV_FRAME, EV_CLOSED, EV_WRITABLE, EV_TIMER, EV_FANOUT };

#define LINK_NONE UINT32_MAX
#define SIM_NOT_UP UINT32_MAX

/* The event wheel's span (ms, a power of 2): latencies, frames and most
 * timers fall within it. */
#define SIM_WHEEL_MS 4096

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
    sbuf *buf; /* one reference, dropped with the fan; NULL: slot free */
    uint32_t from, via;
    uint64_t t0;      /* delivery time of bucket 0 */
    uint32_t nb, cur; /* buckets, next bucket to deliver */
    uint32_t *start;  /* nb + 1 offsets into ent */
    sfan_ent *ent;
    /* ent and start outlive the fan in its free slot, for the next one
     * (a multicast at 10,000 nodes is an 80 KB ent: a malloc and free of
     * that size per multicast made glibc consolidate its free lists) */
    uint32_t capent, capstart;
    uint32_t next_free; /* free list (index + 1), 0: in use or last */
} sfan;

/* A stream between two nodes, one id at each end (0 opener, 1 acceptor).
 * Its slot is reused once both ends are closed and no pending event names
 * it (refs): a run opens ~45 streams a node, few at a time. */
typedef struct slink {
    uint32_t n[2], id[2], gen[2]; /* free: n[0] is the next free slot + 1 */
    uint8_t closed[2];
    uint32_t inflight[2]; /* frames in flight towards end i */
    uint32_t refs;        /* events in the heap that name it */
    uint64_t last[2];     /* latest delivery time towards end i (TCP order) */
} slink;

/* A link with an open end at a node, and that end's stream id: a frame
 * sent finds its link in the node's list without reading every link. */
typedef struct snode_link {
    uint32_t link, stream;
} snode_link;

enum { NODE_ABSENT = 0, NODE_UP, NODE_DOWN };

typedef struct snode {
    /* first: what a delivery reads and writes (one cache line) */
    guts_core *core;
    int state;
    uint32_t gen, tseq;
    int dirty;
    uint64_t recv_msgs, recv_bytes; /* datagrams delivered to it (tr's) */
    uint64_t inc;
    guts_node_id id;
    guts_memstore *mem;
    guts_data *data;
    guts_core_lmdbstore *lst;
    guts_core_store iface; /* what its core is given: cs's, or the fixture's */
    sim_cstore *cs;        /* guts-sim: the checker, over the node's own store */
    uint64_t digest, changed_at;
    snode_link *links; /* links with an open end here */
    size_t nlinks, caplinks;
    uint32_t group; /* partition group; all 0 when healed */
    uint64_t egress_free;
    uint64_t writes;
    int ever_started;
    uint32_t *seeds; /* nodes this one is configured with (guts-node --peer) */
    uint32_t nseeds;
    sim_traffic tr; /* sent (its recv_msgs and recv_bytes stay 0: see above) */
} snode;

/* A time wheel bucket: a FIFO of events due at one virtual ms, linked
 * through sim.enext (index + 1; 0 ends it). */
typedef struct sbucket {
    uint32_t head, tail;
} sbucket;

struct sim {
    sim_config cfg;
    snode *nodes;
    guts_mempool *pool; /* object contents shared by the nodes' memstores */
    sim_idpool *ids;    /* the checkers' caches (guts-sim; sim_run.c) */
    /* pending events (sim_net.c): those due before wheel_base + SIM_WHEEL_MS
     * in the wheel, one bucket per ms, in push (so seq) order; later ones
     * in the heap, moved to the wheel as it turns */
    sbucket *wheel;
    uint64_t wheel_base; /* <= now; nothing pending is due before it */
    sev *ev;             /* the wheel's events, a free list through enext */
    uint32_t *enext;
    size_t nwheel, capev;
    uint32_t ev_free;
    sev *heap;
    size_t nheap, capheap;
    uint64_t seq, now, rng;
    double loss, dup;
    uint32_t lat_min, lat_max;
    slink *links;
    size_t nlinks, caplinks;
    uint32_t link_free; /* index + 1 of a free link slot, 0: none */
    sfan *fans; /* in use while one of their buckets is pending */
    size_t nfans, capfans;
    uint32_t fan_free; /* index + 1 of a free fan, 0: none */
    /* scratch for building a fan-out: copies in send order, then counts */
    sfan_ent *scr;
    uint32_t *scr_lat;
    size_t nscr, capscr;
    uint32_t *scr_cnt;
    size_t capcnt;
    /* free buffers by size class (sim_net.c, sbuf_new): a datagram or a
     * frame each, a malloc and free each before */
    sbuf *sbuf_free[SBUF_CLASSES];
    sim_action *sched; /* sorted by (t, seq) */
    size_t nsched, capsched, pos;
    uint64_t t_quiet; /* last fault, join, leave, heal or write */
    uint64_t end;     /* when the run stops */
    uint64_t stopped_at;
    int partitioned;
    /* per node: its generation while it is up, else SIM_NOT_UP: what a
     * multicast's copies read, 4 bytes a node where the nodes' own first
     * cache lines were 13 MB a multicast at 100,000 nodes */
    uint32_t *upgen;
    char *heap_end; /* where sim_heap_advise last found the malloc heap's end */
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
    /* the driver's hooks, NULL for none */
    void (*changed)(sim *s, uint32_t i); /* after a drain of node i that set its dirty */
    /* set: the cores report events (i: the reporting node) */
    void (*event)(sim *s, uint32_t i, const guts_core_event *e);
    /* events run, by kind (EV_*; a fan-out's copies under EV_FANOUT): what
     * --progress breaks each interval's work into; last, so that the
     * hot fields above keep their offsets and cache lines */
    uint64_t ev_kinds[EV_FANOUT + 1];
};

/* ---- randomness: one splitmix64 stream per engine ---------------------------- */

static inline uint64_t sim_rnd(sim *s)
{
    return guts_splitmix64(&s->rng);
}

static inline double sim_rnd01(sim *s)
{
    return (double)(sim_rnd(s) >> 11) / 9007199254740992.0;
}

static inline uint64_t sim_rnd_below(sim *s, uint64_t n)
{
    return n ? sim_rnd(s) % n : 0;
}

/* ---- sim_engine.c: building the engine, cores ------------------------------------ */

/** Set up s (zeroed by the caller) for cfg: the nodes, absent, with ids drawn
 * from the seed and no store. The caller then gives each node its iface
 * (and mem, lst or data when sim_engine_fini should free them) before starting
 * its core. Errors: GUTS_ENOMEM. */
int sim_engine_init(sim *s, const sim_config *cfg);
/** Free what s holds (cores, the stores in mem/lst/data, events, links,
 * fan-outs), not s itself. */
void sim_engine_fini(sim *s);
/** Ask the kernel for huge pages under [p, p + len) (a large array of the
 * engine's; nothing for less than one). */
void sim_huge(void *p, size_t len);
/** The same for the malloc heap's growth since the last call. */
void sim_heap_advise(sim *s);
/** Start node i's core (a higher incarnation) over its store, at s->now. */
int sim_core_start(sim *s, uint32_t i);
/** Node i's core goes away (state: NODE_DOWN or NODE_ABSENT): its streams
 * reset at their other ends, its pending events die with its generation. */
void sim_core_stop(sim *s, uint32_t i, int state);

/* ---- sim_net.c: the network ----------------------------------------------------- */

/** Latency of one packet from a to b (ms): the pair's base plus jitter. */
uint64_t sim_latency(sim *s, uint32_t a, uint32_t b);
/** Node i's address (4 bytes, its index). */
void sim_addr_of(uint32_t i, guts_addr *a);
void sim_sbuf_drop(sim *s, sbuf *b);
/** End side of link li closes without telling its own core; the other end
 * hears EV_CLOSED after delay, and not before the frames in flight. */
void sim_link_close(sim *s, uint32_t li, int side, uint64_t delay);
/** Perform every action node i's core has queued; then the changed hook. */
void sim_drain(sim *s, uint32_t i);
/** Process every event up to and including virtual time t; now becomes t. */
void sim_events_run(sim *s, uint64_t t);
/** Nodes into groups (group[i] for node i; NULL heals): streams across a
 * cut are reset at both ends. */
void sim_partition(sim *s, const uint32_t *group);

/* sim_engine.c: traffic of every node summed */
void sim_traffic_sum(const sim *s, sim_traffic *t);
/* sim_run.c, for the report */
int sim_all_equal(const sim *s);
/* Objects node i holds, over its repositories. */
uint64_t sim_node_objects(sim *s, uint32_t i);
/* sim_member.c: failure detection and join measurements (see there) */
typedef struct sim_member sim_member;
void sim_member_started(sim *s, uint32_t i, int scenario_join);
/* Before node i's core is stopped by a crash. */
void sim_member_crash(sim *s, uint32_t i);
/* Node i's store changed; it now holds objects (the join curve). */
void sim_member_progress(sim *s, uint32_t i, uint64_t objects);
/* When sim_member_tick wants to run next (0: nothing pending). */
uint64_t sim_member_next(const sim *s);
void sim_member_tick(sim *s);
void sim_member_event(sim *s, uint32_t i, const guts_core_event *e);
/* The node whose id is id. Errors: GUTS_ENOTFOUND, GUTS_ENOMEM. */
int sim_member_node_of(sim *s, const guts_node_id *id, uint32_t *node);
/* The report's failure_detection and join members (json) or lines;
 * major: the digest of the largest agreeing group. */
void sim_member_report(sim *s, FILE *out, uint64_t major, int json);
void sim_member_free(sim *s);

#endif
