/* core.h - the guts protocol as a state machine without I/O.
 *
 * A guts_core is one node: it keeps a bounded view of its peers, decides
 * what to announce and when, decides what to pull from whom, and runs sync
 * sessions.
 * It never reads a clock, owns a socket or touches a file: the driver (the
 * libev daemon in src/net/, or the simulator in sim/) feeds it events with
 * the current time, and drains the actions it wants done. The store is
 * reached through a small table of functions (guts_core_store), so the same
 * core runs over LMDB (guts_core_lmdbstore_*, lmdbstore.h: the store's
 * library) or memory (guts_memstore_*).
 *
 * Calling convention: after every guts_core_on_* call the driver calls
 * guts_core_next_action() until it returns 0 and performs each action.
 * Buffers inside an action belong to the core and stay valid only until the
 * next call into the core. One core must be used from one thread at a time;
 * any number of cores may live in one process.
 *
 * Streams: the core names outgoing streams with ids below
 * GUTS_CORE_STREAM_DRIVER; the driver names incoming (accepted) streams with
 * ids that have that bit set, so the two never collide. A stream carries one
 * sync session (one repository) and is closed by the puller when done.
 */
#ifndef GUTS_CORE_H
#define GUTS_CORE_H

#include "guts/guts.h"
#include "guts/record.h"

/* ---- Addresses ------------------------------------------------------------ */

/* An address is opaque to the core: the daemon stores a sockaddr in it, the
 * simulator a node index. 28 bytes hold a sockaddr_in6. Two addresses are
 * the same peer when len and the first len bytes are equal. */
#define GUTS_ADDR_MAX 28
typedef struct guts_addr {
    uint8_t len;
    uint8_t b[GUTS_ADDR_MAX];
} guts_addr;

/** 1 when a and b name the same address. */
int guts_addr_eq(const guts_addr *a, const guts_addr *b);

/* ---- Store interface ------------------------------------------------------ */

/* What the core needs from a store, per repository key. Every function
 * returns 0 or a GUTS_E* code; semantics are those of the guts_repo_*
 * functions of store.h with the same names (put verifies ids, refs_put
 * writes records as given). Walk callbacks return non-zero to stop; the walk
 * returns that value. */
typedef struct guts_core_store {
    void *ctx;
    int (*repos)(void *ctx, int (*cb)(const char *key, void *arg), void *arg);
    int (*create)(void *ctx, const char *key);
    /* GUTS_ENOTFOUND when the repository does not exist. */
    int (*info)(void *ctx, const char *key, guts_repo_info *out);
    int (*ids)(void *ctx, const char *key, const guts_id *from, const guts_id *to,
               int (*cb)(const guts_id *id, void *arg), void *arg);
    /* 1 present, 0 absent, or < 0. */
    int (*has)(void *ctx, const char *key, const guts_id *id);
    /* *data is malloc()ed for the caller. */
    int (*get)(void *ctx, const char *key, const guts_id *id, int *type, void **data, size_t *len);
    int (*put)(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
               size_t *bad);
    int (*recent)(void *ctx, const char *key, size_t max, guts_id *out, size_t *n);
    int (*refs)(void *ctx, const char *key, int with_tombstones,
                int (*cb)(const guts_ref *ref, void *arg), void *arg);
    int (*ref_get)(void *ctx, const char *key, const char *name, guts_ref *out);
    int (*refs_put)(void *ctx, const char *key, const guts_ref *refs, size_t n);
    /* Optional, both or neither (NULL: objects travel as raw content through
     * get and put). Records as in guts_repo_rec_get / guts_repo_rec_put:
     * *buf is malloc()ed for the caller and out points into it. */
    int (*rec_get)(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf);
    int (*rec_put)(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                   const guts_rec_seen *seen, size_t *added, size_t *bad);
    /* Large objects, as guts_repo_read, guts_repo_stage_write,
     * guts_repo_stage_list and guts_repo_stage_drop: objects sent as
     * OBJECT_CHUNK are read by range and staged as they arrive. */
    int (*read)(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf, size_t len,
                size_t *got);
    int (*stage_write)(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                       uint64_t off, const void *data, size_t len, int *stored);
    int (*stage_list)(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n);
    int (*stage_drop)(void *ctx, const char *key, const guts_id *id);
    /* Optional, both or neither: as guts_repo_verify and guts_repo_drop. A
     * server checks each object before it sends it; one that fails its hash
     * is dropped, so this node pulls a good copy like any missing object. */
    int (*verify)(void *ctx, const char *key, const guts_id *id);
    int (*drop)(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped);
    /* Optional: 1 while the repository holds writes not yet on the disk
     * (a replica committed without a flush, the flush still to come). The
     * core does not announce such a repository; the driver reports its
     * flush with guts_core_on_local_change(key). NULL: every write is
     * durable when it returns. */
    int (*unsynced)(void *ctx, const char *key);
} guts_core_store;

/* ---- In-memory store (tests, simulator) ----------------------------------- */

typedef struct guts_memstore guts_memstore;

/** Create an empty in-memory store. Free with guts_memstore_free().
 * Errors: GUTS_ENOMEM. */
int guts_memstore_new(guts_memstore **out);
void guts_memstore_free(guts_memstore *m);
/** Fill *out with the vtable over m (valid while m lives). */
void guts_memstore_iface(guts_memstore *m, guts_core_store *out);
/** A pool of object contents shared by memstores (one copy per object id
 * for all of them; guts-sim). Not thread-safe. Free it after every store
 * made with it. Errors: GUTS_ENOMEM. */
typedef struct guts_mempool guts_mempool;
int guts_mempool_new(guts_mempool **out);
void guts_mempool_free(guts_mempool *p);
/** As guts_memstore_new, the contents of stored objects kept in pool. */
int guts_memstore_new_pooled(guts_mempool *pool, guts_memstore **out);
/** 1 when pool holds id with exactly this type and content, else 0. The
 * pool takes only objects whose hash was checked, so 1 means the content
 * hashes to id: a memcmp instead of a SHA-1 (guts-sim's checker). */
int guts_mempool_proves(const guts_mempool *pool, const guts_id *id, int type, const void *data,
                        size_t len);
/** Test hook: flip the first content byte of a stored object, so that it
 * no longer hashes to its id (what a damaged disk record looks like).
 * Errors: GUTS_ENOTFOUND, GUTS_EINVAL (an empty object). */
int guts_memstore_damage(guts_memstore *m, const char *key, const guts_id *id);

/* ---- Configuration -------------------------------------------------------- */

#define GUTS_CORE_INTERVAL_DEFAULT 1000 /* ms: memberlist's LAN probe interval */
#define GUTS_CORE_EXPIRY_DEFAULT 5      /* missed intervals: rides out 4 losses */
/* Announce traffic of the whole group, bytes/s (RTCP's "session bandwidth"
 * share): ~50 full announces a second; 1,000 nodes then announce every ~20 s. */
#define GUTS_CORE_GROUP_BUDGET_DEFAULT 64000
#define GUTS_CORE_SESSIONS_DEFAULT 4 /* concurrent pulls (and as many serves) */
/* Repository keys tracked because a peer announced them and not stored yet
 * ("remote-only": nothing pulled so far). Each costs ~600 bytes; 4096 lets
 * a node joining a LAN of thousands of repositories take them in waves
 * (a key is stored, and stops counting, once its first pull brings
 * something; refused keys come back with the next announce), while a
 * stranger announcing made-up keys costs at most ~2.5 MiB. */
#define GUTS_CORE_REMOTE_REPOS_DEFAULT 4096
/* Of those, taken from any one peer: a single announcer cannot use the
 * whole budget and lock out the keys other peers announce. */
#define GUTS_CORE_PEER_REPOS_DEFAULT 1024
/* While the store is full (GUTS_EFULL: disk or LMDB map cannot grow), no
 * pull starts; one is tried again after this many ms, to notice that
 * space came back (du and the filesystem give no event to wait for). */
#define GUTS_CORE_FULL_RETRY_MS 10000
/* Seeds: addresses every group datagram also goes to by unicast (guts-node's
 * --peer). Each costs a datagram per announce; a network without
 * multicast needs one, a few for redundancy. */
#define GUTS_CORE_SEEDS_MAX 64
/* Addresses learned by peer exchange and kept at once (node_reach.c): each
 * not heard from costs at most one announce per interval until it answers
 * or is given up, so this bounds what a node sends to addresses that never
 * spoke to it (docs/security.md, "Amplification"). 32 covers the other
 * segments a LAN is made of several times over. */
#define GUTS_CORE_LEARNED_DEFAULT 32
#define GUTS_CORE_LEARNED_MAX 1024

typedef struct guts_core_config {
    guts_node_id node_id;
    uint64_t incarnation;         /* larger after every restart */
    uint16_t tcp_port;            /* advertised for streams (opaque to the core) */
    uint32_t interval_ms;         /* base announce interval; 0: default */
    uint32_t expiry_missed;       /* peer expiry in missed intervals; 0: default */
    uint32_t group_budget;        /* bytes/s of announces for the whole group; 0: default */
    uint32_t frame_max;           /* largest frame accepted and sent; 0: default */
    uint32_t max_sessions;        /* concurrent outgoing (and incoming) sessions; 0: default */
    uint64_t obj_max;             /* largest object taken from a peer (content bytes); 0 or
                                   * more than GUTS_OBJ_MAX_DEFAULT: GUTS_OBJ_MAX_DEFAULT.
                                   * A larger one is skipped (counted, logged) and the
                                   * session goes on. Chunks are assembled in memory, so
                                   * this also bounds a pull's buffer. */
    uint32_t remote_repos_max;    /* remote-only keys tracked at once; 0: default */
    uint32_t peer_repos_max;      /* of those, per announcing peer; 0: default */
    uint32_t dgram_max;           /* largest datagram the core builds; 0 (or more than
                                   * GUTS_DGRAM_MAX): GUTS_DGRAM_MAX. A keyed daemon sets
                                   * GUTS_SEAL_DGRAM_PLAIN_MAX so sealed ones still fit. */
    uint64_t seed;                /* PRNG seed: jitter, peer choice, recon seeds */
    /* Seeds (at most GUTS_CORE_SEEDS_MAX, copied): every group datagram is
     * also sent to each by unicast, whether it answers or not. */
    const guts_addr *seeds;
    uint32_t nseeds;
    /* Addresses learned from peers' PEERS datagrams kept at once; 0:
     * GUTS_CORE_LEARNED_DEFAULT, at most GUTS_CORE_LEARNED_MAX. */
    uint32_t learned_max;
    /* Address lengths a learned address may have, bit n for n bytes (the
     * driver's forms it can send to: guts-node sets 6, IPv4, and 18, IPv6,
     * for the families it has sockets of). 0: only the length of the
     * PEERS datagram's own source address. */
    uint32_t learned_lens;
    const guts_core_store *store; /* copied */
    /* Whether to take a repository a peer announced and we lack (create it
     * and pull it): non-zero to take it. NULL: take every one. Repositories
     * already in the store are not asked about. The daemon matches --repos
     * patterns here; the core stays free of policy and of I/O. */
    int (*repo_wanted)(void *arg, const char *key);
    void *repo_wanted_arg;
    /* Emit GUTS_ACT_EVENT actions of the types whose bit (1u << GUTS_EV_*)
     * is set: GUTS_CORE_EVENTS_ALL for a driver with hooks or an event
     * stream; without, none is made. The simulator asks for PEER_LEFT
     * only, so its thousands of nodes do not pay for an event (an
     * allocation and its copy) on every view entry they admit. */
    unsigned events;
    /* Non-zero: no GUTS_ACT_LOG actions (nothing formatted or copied); a
     * driver that drops every line (guts-sim without --verbose) saves the
     * work. Behaviour is otherwise the same. */
    int no_log;
} guts_core_config;

/* ---- Lifecycle and events ------------------------------------------------- */

typedef struct guts_core guts_core;

/** Create a core. Nothing is sent until the first event (call
 * guts_core_on_timer(c, now) to start). Errors: GUTS_EINVAL, GUTS_ENOMEM. */
int guts_core_new(const guts_core_config *cfg, guts_core **out);
/** Free a core; streams it had are forgotten (the driver closes them). */
void guts_core_free(guts_core *c);
/** A hint, changing nothing: a datagram from sender (may be NULL) comes to
 * c soon. Stage 0 starts loading the core's most used fields, stage 1 what
 * they point to, stage 2 the sender's view entry; a driver with many cores
 * in one process (guts-sim) calls them a few events apart, in that order,
 * so the loads overlap instead of stalling one after another. */
void guts_core_prefetch(const guts_core *c, int stage, const guts_node_id *sender);

/* How a datagram reached the node: sent to the group (multicast), or
 * addressed to this node (unicast). A peer heard by unicast is answered by
 * unicast while it stays live: the group may not reach it (issue 14). */
enum { GUTS_VIA_GROUP = 0, GUTS_VIA_UNICAST = 1 };

/** A datagram arrived from addr, by way of via (GUTS_VIA_*). Over
 * GUTS_DGRAM_DROP bytes: dropped unread. */
void guts_core_on_datagram(guts_core *c, uint64_t now, const guts_addr *from, int via,
                           const uint8_t *buf, size_t len);
/** A datagram of len bytes from addr that the driver decoded itself:
 * guts_msg_decode returned GUTS_OK for it and filled m. The same as
 * guts_core_on_datagram with those bytes, without decoding them again (a
 * driver handing one datagram to many cores decodes it once); m is only
 * read, and not kept past the call. */
struct guts_msg; /* guts/wire.h */
void guts_core_on_msg(guts_core *c, uint64_t now, const guts_addr *from, int via,
                      const struct guts_msg *m, size_t len);
/** A stream is connected: outgoing (one the core asked for with OPEN_STREAM)
 * or incoming (accepted; id chosen by the driver, with
 * GUTS_CORE_STREAM_DRIVER set). */
void guts_core_on_stream_open(guts_core *c, uint64_t now, uint32_t stream, const guts_addr *peer,
                              int outgoing);
/** One frame's envelope (without its 4-byte header) arrived on a stream. */
void guts_core_on_frame(guts_core *c, uint64_t now, uint32_t stream, const uint8_t *buf,
                        size_t len);
/** The stream's send buffer drained below the driver's threshold after the
 * core had sent on it: the core sends the next frames, up to a budget. */
void guts_core_on_stream_writable(guts_core *c, uint64_t now, uint32_t stream);
/** The stream closed or failed to connect, not at the core's request. */
void guts_core_on_stream_closed(guts_core *c, uint64_t now, uint32_t stream);
/** Time passed (the core asked with SET_TIMER, or the driver's own tick). */
void guts_core_on_timer(guts_core *c, uint64_t now);
/** A repository changed outside the core (an import); key NULL: rescan all. */
void guts_core_on_local_change(guts_core *c, uint64_t now, const char *key);
/** Try addr, a peer's address remembered from an earlier run (the driver
 * keeps them: guts-node in DATA/node/peers): it is treated as an address
 * learned by peer exchange, one announce per interval until a datagram
 * comes from it, given up after a few unanswered ones. Errors: GUTS_EFULL
 * (as many learned addresses as learned_max), GUTS_EINVAL, GUTS_ENOMEM. */
int guts_core_remember(guts_core *c, uint64_t now, const guts_addr *addr);
/** Say goodbye: a LEAVE datagram is queued and every stream closed. */
void guts_core_leave(guts_core *c, uint64_t now);

/* ---- Actions -------------------------------------------------------------- */

#define GUTS_CORE_STREAM_DRIVER 0x80000000u

enum {
    GUTS_ACT_SEND_DGRAM = 1, /* data,len to the group (to_group) or to addr */
    GUTS_ACT_OPEN_STREAM,    /* connect stream to addr, port */
    GUTS_ACT_SEND_FRAME,     /* data,len (4-byte header included) on stream */
    GUTS_ACT_CLOSE_STREAM,   /* close stream; no on_stream_closed follows */
    GUTS_ACT_SET_TIMER,      /* call on_timer at or after `at` (replaces earlier) */
    GUTS_ACT_LOG,            /* level, text: one line worth logging */
    GUTS_ACT_EVENT,          /* data: one guts_core_event (hooks, /events) */
};

/* What the node did that an operator may want to act on (guts-node's
 * --on-event hooks). Peers leave by LEAVE or by expiry (detail says). */
enum {
    GUTS_EV_PEER_JOINED = 1,
    GUTS_EV_PEER_LEFT,
    GUTS_EV_REPO_ADDED,   /* a repository first stored here (from a peer) */
    GUTS_EV_REF_UPDATED,  /* a ref a peer's record moved, made or deleted */
    GUTS_EV_CONFLICT,     /* a divergent update kept as a conflict record */
    GUTS_EV_PULL_FAILED,  /* a pull ended in failure (not busy, not full) */
    GUTS_EV_COUNT
};

/* Ref updates made into events per apply pass; beyond, one event with an
 * empty ref and "N more" in detail (a first pull of 1,500 refs is one
 * pass: hooks should not run 1,500 times). */
#define GUTS_CORE_REF_EVENTS_MAX 64

#define GUTS_CORE_EVENTS_ALL (~0u) /* guts_core_config.events: every type */

typedef struct guts_core_event {
    int type;                        /* GUTS_EV_* */
    char repo[GUTS_KEY_MAX + 1];     /* all but PEER_*: "" */
    char ref[GUTS_REFNAME_MAX + 1];  /* REF_UPDATED, CONFLICT */
    guts_id old_id, new_id;          /* REF_UPDATED: before and after (zero: absent,
                                      * deleted or symbolic); CONFLICT: the kept
                                      * (losing) commit and the winner */
    guts_node_id peer;               /* PEER_*, PULL_FAILED: the peer; REF_UPDATED,
                                      * CONFLICT: the writer of the new record */
    char detail[GUTS_REFNAME_MAX + 1]; /* PEER_*: how (multicast, expired, ...);
                                        * PULL_FAILED: why; CONFLICT: the record's
                                        * name (refs/guts/conflicts/...) */
} guts_core_event;

/** "peer_joined", "peer_left", "repo_added", "ref_updated", "conflict",
 * "pull_failed", or "?". */
const char *guts_core_event_name(int type);

enum { GUTS_LOG_ERROR = 0, GUTS_LOG_WARN, GUTS_LOG_INFO, GUTS_LOG_DEBUG };

#define GUTS_CORE_LOG_MAX 256 /* one line */

typedef struct guts_core_action {
    int kind;
    int to_group;        /* SEND_DGRAM */
    guts_addr addr;      /* SEND_DGRAM (unicast), OPEN_STREAM */
    uint16_t port;       /* OPEN_STREAM: the peer's advertised TCP port */
    uint32_t stream;     /* OPEN_STREAM, SEND_FRAME, CLOSE_STREAM */
    const uint8_t *data; /* SEND_DGRAM, SEND_FRAME; owned by the core */
    size_t len;
    uint64_t at;      /* SET_TIMER */
    int level;        /* LOG */
    const char *text; /* LOG; owned by the core */
} guts_core_action;

/** Take the next action. Returns 1 and fills *out, or 0 when none is left. */
int guts_core_next_action(guts_core *c, guts_core_action *out);
/** Free the buffers of the actions taken so far (the next event would):
 * a driver done with their data calls it while they are still in its
 * cache (guts-sim, after each drain). */
void guts_core_release_actions(guts_core *c);

/* ---- Status --------------------------------------------------------------- */

typedef struct guts_core_peer_info {
    guts_node_id id;
    guts_addr addr;
    uint16_t port;
    uint64_t incarnation;
    uint64_t last_heard;  /* ms, driver's clock */
    uint32_t interval_ms; /* its advertised announce interval */
    uint32_t repos;       /* repositories it announced */
    int via_group;        /* heard by multicast within its expiry */
    int via_unicast;      /* heard by unicast within its expiry: answered by unicast */
    uint32_t repos_common; /* of those, repositories this node holds too */
    uint32_t repos_same;   /* of those, in the same state as here (fingerprint, refs) */
} guts_core_peer_info;

/* Datagram message types counted apart (GUTS_MSG_ANNOUNCE..GUTS_MSG_PEERS). */
#define GUTS_CORE_DGRAM_KINDS 4

typedef struct guts_core_counters {
    uint64_t dgrams_in, dgrams_out, dgram_bytes_out, dgram_max_out;
    uint64_t dgrams_dropped;   /* over GUTS_DGRAM_DROP */
    uint64_t dgrams_malformed; /* failed to decode */
    uint64_t dgrams_unknown;   /* unknown message type */
    uint64_t dgrams_version;   /* newer protocol version */
    uint64_t frames_in, frames_out, frame_bytes_out;
    uint64_t digest_bytes_out; /* stream bytes other than OBJECTS/OBJECT_CHUNK */
    uint64_t frames_malformed;
    uint64_t bad_objects;     /* objects whose content failed the hash */
    uint64_t objects_nobase;  /* delta records received before their base */
    uint64_t objects_dropped; /* of those, never stored in their session */
    uint64_t sessions_started, sessions_served, sessions_ok, sessions_failed;
    uint64_t sessions_empty; /* pulls that ended ok with no object and no ref */
    uint64_t sessions_busy;  /* pulls a busy server deferred (not failures) */
    uint64_t objects_fetched, refs_applied, refs_pending;
    uint64_t refs_dropped; /* pending records whose closure never completed */
    uint64_t peers_joined, peers_left, peers_expired;
    uint64_t objects_too_big; /* skipped: over obj_max */
    uint64_t objects_damaged; /* stored objects found failing their hash (a puller's
                               * DAMAGED, checked): dropped */
    uint64_t damage_reports;  /* DAMAGED messages received from pullers */
    uint64_t repos_remote;    /* now: remote-only keys tracked */
    uint64_t repos_refused;   /* announced keys not tracked: a remote-only cap */
    uint64_t repos_evicted;   /* remote-only keys dropped when their peer left */
    uint64_t store_full;      /* now: 1 while the store refuses writes (full) */
    uint64_t writes_full;     /* writes the store refused as full */
    uint64_t peers_evicted;   /* left a full view for a more useful sender */
    uint64_t hellos;          /* first announces sent at start (0 or 1) */
    uint64_t answers;         /* announces sent to answer a newcomer */
    uint64_t dgrams_unicast;  /* unicast copies of group datagrams (seeds, answers) */
    uint64_t unicast_answers; /* of them, prompt answers to a sender lacking what we hold */
    uint64_t peers_unicast;   /* now: live peers heard by unicast */
    uint64_t pex_out, pex_in; /* PEERS datagrams sent, and taken from live peers */
    uint64_t pex_bytes_out;   /* their bytes (also in dgram_bytes_out) */
    uint64_t pex_ignored;     /* PEERS from a sender not live in the view */
    uint64_t learned;         /* now: addresses learned and not given up */
    uint64_t learned_dropped; /* addresses not kept: the table was full of newer ones */
    uint64_t learned_given_up; /* addresses that never answered CORE_LEARNED_TRIES announces */
    uint64_t conflicts;        /* conflict records a divergent update made here (refmerge.h) */
    uint64_t serves_failed;    /* of sessions_served, those that ended in an error */
    /* Datagrams by message type, index GUTS_MSG_ANNOUNCE, _LEAVE or _PEERS
     * (0: none yet uses it): received ones that decoded, and every one sent,
     * group and unicast copies alike. */
    uint64_t kind_in[GUTS_CORE_DGRAM_KINDS], kind_bytes_in[GUTS_CORE_DGRAM_KINDS];
    uint64_t kind_out[GUTS_CORE_DGRAM_KINDS], kind_bytes_out[GUTS_CORE_DGRAM_KINDS];
    /* failure detection: PROBEs, ACKs and DEAD notices sent, peers dropped
     * as dead (found so, or told), DEAD notices about us answered; of the
     * ACKs, those sent unasked to move a far prober into a turn that came
     * due empty or was given back, such ACKs received that brought our
     * round earlier, RELEASEs sent (turns given back) and RELEASEs
     * received that freed a turn of ours */
    uint64_t probes_out, acks_out, dead_out, peers_dead, refutes;
    uint64_t turns_moved, turns_taken, turns_released, turns_freed;
    /* pulls split between peers (node_pull.c): first copies split, pulls
     * that joined a split one, parts given back by a session that ended
     * before finishing them, of those the stalled ones, and objects
     * received that the store already held (fetched twice) */
    uint64_t split_pulls, split_joins, split_given_back, split_stalls, objects_dup;
} guts_core_counters;

/** Number of live peers. */
size_t guts_core_peer_count(const guts_core *c);
/** Peer i (0 <= i < guts_core_peer_count). Errors: GUTS_ENOTFOUND. */
int guts_core_peer(const guts_core *c, size_t i, guts_core_peer_info *out);
/** 1 when id is in the view (a live peer), else 0. */
int guts_core_has_peer(const guts_core *c, const guts_node_id *id);
/** Counters since creation. */
void guts_core_counters_get(const guts_core *c, guts_core_counters *out);
/** The current announce interval in ms (before jitter). */
uint32_t guts_core_interval(const guts_core *c);
/** Sessions open now: pulls (outgoing) and serves (incoming) that asked
 * for a repository; a stream that asked for nothing yet (or a puller's
 * stream parked between two pulls) is neither, and takes no slot. */
void guts_core_sessions(const guts_core *c, size_t *pulls, size_t *serves);

/** One pull in progress, for a progress display. */
typedef struct guts_core_pull_info {
    char key[GUTS_KEY_MAX + 1]; /* the repository */
    guts_node_id peer;          /* the peer pulled from */
    guts_addr addr;
    uint64_t started;  /* ms, driver's clock */
    uint64_t objects;  /* objects received and stored so far */
    uint64_t bytes;    /* their bytes as received (records) */
    uint64_t expected; /* objects expected: the peer's announced count
                        * minus ours when the pull began; 0 when that
                        * says nothing (the peer announced no more) */
} guts_core_pull_info;

/** Fill out with up to max pulls in progress (outgoing sessions), in no
 * particular order; returns how many there are (may exceed max). out may be
 * NULL when max is 0 (a count only). */
size_t guts_core_pulls(const guts_core *c, guts_core_pull_info *out, size_t max);

enum { GUTS_SYNC_IN_SYNC = 0, GUTS_SYNC_BEHIND, GUTS_SYNC_PULLING };
/** Sync state of a repository against the live peers: IN_SYNC when every
 * peer that announced it agrees on fingerprint and refs digest. */
int guts_core_repo_state(const guts_core *c, const char *key, int *state);
/** Of the live peers, how many announced repository key (*have) and how
 * many of those agree with this node on its fingerprint and refs digest
 * (*same); the ids of the first max that agree go to out (NULL when max
 * is 0). Errors: GUTS_ENOTFOUND (not held here). */
int guts_core_repo_peers(const guts_core *c, const char *key, size_t *have, size_t *same,
                         guts_node_id *out, size_t max);

#endif
