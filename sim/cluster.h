/* cluster.h - many guts cores in one process on a virtual clock and network.
 *
 * The fixture the core's unit and property tests use: a thin layer over
 * guts-sim's engine (sim_engine.h), so the tests and guts-sim run the same
 * network model. Like canonical/raft's fixture, it drives a whole cluster
 * one event at a time: events (datagram and frame deliveries, stream opens
 * and closes, timers) sit in one queue ordered by (virtual time, sequence
 * number), so a run is a pure function of its configuration and seed.
 *
 * Network model (docs/simulator.md): a multicast goes to every other node,
 * a unicast to one; each copy is independently lost, duplicated and delayed
 * by the pair's base latency plus per-packet jitter, all in [latency_min,
 * latency_max] (so copies reorder). Streams are reliable and ordered like
 * TCP; a frame is delivered no earlier than the previous frame of the same
 * direction, and the sender hears on_stream_writable when a direction
 * drains. A restart loses the core's state, keeps its store (durable) and
 * resets its streams: the other side sees them closed. Addresses are 4-byte
 * node indices.
 */
#ifndef GUTS_SIM_CLUSTER_H
#define GUTS_SIM_CLUSTER_H

#include "guts/core.h"

/* The tests use 2-5 nodes; the engine holds many more (guts-sim's
 * SIM_NODES_MAX): this bound only catches a bad count. */
#define GUTS_CLUSTER_NODES_MAX 4096

typedef struct guts_cluster_config {
    size_t nodes;
    uint64_t seed;
    double loss;           /* per datagram copy, 0..1 */
    double dup;            /* chance a datagram copy is delivered twice */
    uint32_t latency_min;  /* ms */
    uint32_t latency_max;  /* ms; > min reorders datagrams */
    uint32_t interval_ms;  /* base announce interval of every core; 0: default */
    uint32_t max_sessions; /* 0: default */
    uint32_t frame_max;    /* 0: default */
    uint64_t obj_max;      /* 0: default */
    /* optional: one store per node (e.g. LMDB via guts_core_lmdbstore);
     * NULL gives every node its own memstore */
    const guts_core_store *stores;
} guts_cluster_config;

typedef struct guts_cluster_stats {
    uint64_t dgrams, dgram_bytes, dgram_max; /* sent by cores */
    uint64_t dgrams_lost, dgrams_duped;
    uint64_t frames, frame_bytes;
    uint64_t streams_opened;
    uint64_t events;
} guts_cluster_stats;

typedef struct guts_cluster guts_cluster;

/** Create a cluster of cfg->nodes cores, each on its own memstore (or
 * cfg->stores), and start them at time 0. Errors: GUTS_EINVAL, GUTS_ENOMEM. */
int guts_cluster_new(const guts_cluster_config *cfg, guts_cluster **out);
void guts_cluster_free(guts_cluster *cl);

/** Process every event up to and including virtual time t (ms). */
int guts_cluster_run_until(guts_cluster *cl, uint64_t t);

/** Change the network faults from now on. */
void guts_cluster_set_faults(guts_cluster *cl, double loss, double dup, uint32_t latency_min,
                             uint32_t latency_max);

/** Restart node i: its core is freed (state lost, streams closed at both
 * ends) and a new one with a higher incarnation starts over the same store. */
int guts_cluster_restart(guts_cluster *cl, size_t i);

/** Tell node i's core that repository key changed in its store (a local
 * write by a test); NULL: rescan. */
void guts_cluster_local_change(guts_cluster *cl, size_t i, const char *key);

guts_core *guts_cluster_core(guts_cluster *cl, size_t i);
/** Node i's memstore; NULL when the cluster was given its stores. */
guts_memstore *guts_cluster_store(guts_cluster *cl, size_t i);
/** The store interface of node i (a copy is fine). */
const guts_core_store *guts_cluster_iface(const guts_cluster *cl, size_t i);
void guts_cluster_stats_get(const guts_cluster *cl, guts_cluster_stats *out);

/** Log lines of every core go to stderr when verbose is set. */
void guts_cluster_set_verbose(guts_cluster *cl, int verbose);

/** 1 when every node holds the same repositories with equal object
 * fingerprints and equal refs digests. */
int guts_cluster_converged(const guts_cluster *cl);

#endif
