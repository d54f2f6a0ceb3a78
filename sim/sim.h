/* sim.h - guts-sim's internal interfaces: options, the engine, the checking
 * store, the workload and the report.
 *
 * guts-sim runs N real protocol cores (include/guts/core.h) in one thread on
 * a virtual clock. Its engine (sim_engine.h: sim_net.c, sim_engine.c) is
 * also the one under the core's test fixture (cluster.h), so every core
 * test and every guts-sim run use the same network model: multicast
 * datagrams shared by reference between recipients, stream lookup per
 * node, partitions, domains, bandwidth. guts-sim adds joins and leaves, a
 * schedule of faults and writes, and a store wrapper that checks invariants
 * on every write. The event order is (virtual time, sequence number) (an
 * event wheel, then a heap: sim_net.c) and every random draw comes from
 * one seeded generator, so
 * a run is a pure function of its options: the same command prints the
 * same bytes.
 */
#ifndef GUTS_SIM_H
#define GUTS_SIM_H

#include <stdint.h>
#include <stdio.h>

#include "guts/core.h"
#include "guts/wire.h"

/* Cores in one process. Each core's view is bounded (64 peers), so memory
 * grows with N: ~40-50 KB per node with one small repository (docs/
 * performance.md, "Simulator"). 200,000 fits this machine's 24 GB with room;
 * the bound only catches typos. */
#define SIM_NODES_MAX 200000
/* Repositories and writers: a workload knob, not a protocol limit; the
 * announce pager copes with any number, the report lists each one. */
#define SIM_REPOS_MAX 1000
#define SIM_WRITERS_MAX 10000
/* Objects seeded per repository: memstore copies every object into every
 * node's memory, so 10^6 x N would not fit anyway. */
#define SIM_OBJECTS_MAX 1000000
/* Longest run: one virtual day is far beyond any scenario worth waiting for
 * and keeps every time in ms well inside 2^63. */
#define SIM_DURATION_MAX (24ull * 3600 * 1000)
/* Partition groups in one scenario line. */
#define SIM_GROUPS_MAX 64
/* The daemon's connect timeout (src/net): a connect across a cut or to a
 * node that is down fails after this long. */
#define SIM_CONNECT_TIMEOUT_MS 5000
/* Seeds per node (--seeds): the core takes at most GUTS_CORE_SEEDS_MAX,
 * and a segment's bridge node needs one more slot. */
#define SIM_SEEDS_MAX (GUTS_CORE_SEEDS_MAX - 1)
/* Datagrams wait at most this long in a node's egress queue when a
 * bandwidth limit is set; later ones are dropped (a full socket buffer). */
#define SIM_EGRESS_QUEUE_MS 1000

/* ---- Scheduled actions (flags and scenario files become these) ----------- */

enum {
    SA_CRASH = 1, /* node: core state lost, store kept, streams reset */
    SA_RESTART,   /* node: new core, higher incarnation, same store */
    SA_JOIN,      /* node: an absent node starts */
    SA_LEAVE,     /* node: LEAVE sent, core gone, node absent */
    SA_PARTITION, /* groups: traffic between groups dropped, streams reset */
    SA_HEAL,      /* everything reachable again */
    SA_WRITE,     /* node, repo: a commit and ref updates in its store */
    SA_LOSS,      /* value */
    SA_DUP,       /* value */
    SA_LATENCY,   /* lat_min, lat_max */
    /* node: that many nodes that views hold crash (sim_run.c) */
    SA_CRASH_HELD,
};

typedef struct sim_action {
    uint64_t t;
    uint64_t seq; /* order among equal times: order of creation */
    int kind;
    uint32_t node;
    uint32_t repo;
    uint32_t writer; /* SA_WRITE: writer number (names its branch) */
    double value;
    uint32_t lat_min, lat_max;
    uint32_t *group; /* SA_PARTITION: group of every node (owned) */
} sim_action;

/* ---- Options -------------------------------------------------------------- */

typedef struct sim_config {
    uint32_t nodes;
    uint64_t seed;
    double loss, dup;
    double corrupt;            /* chance a datagram copy or frame has a byte flipped */
    uint32_t lat_min, lat_max; /* ms */
    uint32_t repos, objects, writers;
    int has_partition;
    uint64_t part_from, part_to; /* ms */
    double crash_rate;           /* crashes per node per virtual second */
    uint64_t duration;           /* ms */
    uint64_t faults_until;       /* random faults and writes stop here (ms) */
    uint64_t write_every;        /* ms between one writer's writes */
    uint32_t domains;            /* multicast domains; 1: one LAN */
    int no_multicast;            /* group datagrams reach nobody (unicast only) */
    uint32_t seeds;              /* seeds per node: earlier nodes of its segment */
    int star;                    /* the seeds are the segment's first nodes */
    uint32_t segments;           /* multicast segments joined by one seed each; 1: one LAN */
    uint64_t bandwidth;          /* bytes/s per node egress; 0: unlimited */
    uint32_t interval_ms;        /* cores' base announce interval; 0: default */
    uint64_t ramp;               /* nodes start spread over [0, ramp) ms */
    int lmdb, json, broken_merge, verbose, until_converged, progress;
    const char *scenario; /* path or NULL */
    /* set by the core's test fixture (cluster.c); 0 in guts-sim */
    uint32_t max_sessions, frame_max; /* 0: the core's defaults */
    uint64_t obj_max;                 /* 0: the core's default */
    int core_logs; /* cores log without verbose (the fixture may turn it on later) */
    /* from the scenario file */
    sim_action *acts;
    size_t nacts, capacts;
    uint32_t *absent; /* nodes that start absent (join later) */
    size_t nabsent;
    int has_end;
} sim_config;

/** Parse argv into cfg (and read the scenario file). On a usage error a
 * one-line message is written to err and GUTS_EINVAL returned; *help is set
 * for --help. */
int sim_opts_parse(int argc, char **argv, sim_config *cfg, int *help, FILE *err);
void sim_opts_usage(FILE *out);
void sim_opts_free(sim_config *cfg);
/** Write the canonical command that replays cfg (every option spelled out). */
void sim_opts_replay(const sim_config *cfg, FILE *out);
/** Add an action (copied; group ownership moves). */
int sim_opts_add_action(sim_config *cfg, const sim_action *a);

/* Parse "300s", "1500ms", "2m" into ms. 0 or GUTS_EINVAL. */
int sim_parse_duration(const char *s, uint64_t *ms);

/* ---- Engine ---------------------------------------------------------------- */

typedef struct sim sim;

/* Traffic counted per node, split by kind. */
typedef struct sim_traffic {
    uint64_t mcast_msgs, mcast_bytes; /* multicast datagrams sent */
    uint64_t ucast_msgs, ucast_bytes; /* unicast datagrams sent */
    uint64_t frame_msgs, frame_bytes; /* stream frames sent */
    uint64_t recv_msgs, recv_bytes;   /* datagrams delivered to it */
} sim_traffic;

/* Violations described in full in the report; the rest are only counted
 * (the first ones are what a reader replays and debugs). */
#define SIM_VIOLATION_LINES 20
#define SIM_VIOLATION_LINE_MAX 240

typedef struct sim_violations {
    uint64_t bad_object;    /* stored object whose id is not its hash */
    uint64_t open_closure;  /* ref applied with an incomplete closure */
    uint64_t big_dgram;     /* datagram over GUTS_DGRAM_MAX */
    uint64_t ref_backwards; /* a ref record replaced by a smaller one */
    uint64_t store_error;   /* the checker could not read a store */
    char lines[SIM_VIOLATION_LINES][SIM_VIOLATION_LINE_MAX];
    size_t nlines;
    const uint64_t *now; /* virtual clock, for the lines */
} sim_violations;

/** Count nothing, describe one violation (kept when fewer than
 * SIM_VIOLATION_LINES were). */
void sim_violation_note(sim_violations *v, uint32_t node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Build the cluster from cfg (stores, seeded repositories, schedule).
 * Errors: GUTS_ENOMEM, GUTS_EIO (LMDB temp dir). */
int sim_new(const sim_config *cfg, sim **out);
/** Free everything; removes the LMDB temp dir. */
void sim_free(sim *s);
/** Run to the end (duration, or convergence with until_converged). */
int sim_run(sim *s);
/** Write the report (JSON or human) to out; returns the exit status the
 * run deserves: 0 converged and clean, 1 otherwise. */
int sim_report(sim *s, FILE *out, double wall_s, double cpu_s, uint64_t rss_bytes);

/* ---- Checking store (sim_check.c) ------------------------------------------ */

typedef struct sim_cstore sim_cstore;
/* The checkers' caches of ids known complete, shared by content. */
typedef struct sim_idpool sim_idpool;
int sim_idpool_new(sim_idpool **out);
/* After every checker using it. */
void sim_idpool_free(sim_idpool *p);

/** Wrap inner (copied) for node: every put is hashed, every ref record
 * checked for a complete closure and for never going backwards in the
 * merge order; violations go to *v. *dirty is set on every write that
 * changed something. ids: the pool its caches live in. pool (or NULL):
 * the memstores' pool; an object it holds byte for byte needs no hash
 * (guts_mempool_proves). Errors: GUTS_ENOMEM. */
int sim_cstore_new(const guts_core_store *inner, const guts_mempool *pool, uint32_t node,
                   sim_violations *v, int *dirty, sim_idpool *ids, sim_cstore **out);
void sim_cstore_free(sim_cstore *cs);
void sim_cstore_iface(sim_cstore *cs, guts_core_store *out);
/* The store it wraps (its own copy of the interface). */
const guts_core_store *sim_cstore_inner(const sim_cstore *cs);

/** Test-only: make the ref merge non-commutative (the incoming record always
 * wins) for every core in the process. guts-sim --broken-merge. */
void sim_broken_merge_set(int on);

/* ---- Workload (sim_work.c) ------------------------------------------------- */

/** Repository key of repo number r ("sim/repoR"). */
void sim_repo_key(uint32_t r, char out[GUTS_KEY_MAX + 1]);
/** Store k objects of repo r (chained commits, trees, blobs; refs main and
 * HEAD) through st, writer id w. Deterministic in (r, k). */
int sim_work_seed(const guts_core_store *st, uint32_t r, uint32_t k, const guts_node_id *w);
/** One write by writer number wn at a node: a commit on top of the node's
 * refs/heads/main (a root commit if it has none), stored with its tree and
 * blob, then refs/heads/main and refs/heads/writer-WN updated with the
 * repository clock + 1. n is a counter making contents unique. */
int sim_work_write(const guts_core_store *st, uint32_t r, uint32_t wn, uint64_t n,
                   const guts_node_id *w);

#endif
