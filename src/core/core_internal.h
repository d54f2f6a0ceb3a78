/* core_internal.h - the guts_core structure shared by src/core/node*.c.
 *
 * One struct holds a node's whole volatile state: the action queue, the
 * view (bounded peer table) and group-size sketch, a cache of local
 * repository counters, and the sync sessions.
 * Files split by concern: node.c (lifecycle, PRNG, actions, dispatch,
 * timers), node_repos.c (the local repository cache), node_store.c (the
 * store as the core sees it), node_status.c (status for the driver),
 * node_members.c (view and sketch), node_announce.c (announce
 * building and the pull decision), node_reach.c (unicast reach),
 * node_probe.c (failure detection), node_sync.c (sessions: lifecycle and
 * frame dispatch), node_pull.c and node_pull_recv.c (the puller),
 * node_serve.c and node_serve_pump.c (the server), node_refs.c (ref
 * application), node_closure.c (closure checks, ancestry).
 * Every limit, with its reason, is in core_limits.h (included here).
 * Everything here is lost on restart by design: the store is the only
 * durable state, and a fresh core rebuilds the rest from announces.
 */
#ifndef GUTS_CORE_INTERNAL_H
#define GUTS_CORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "bloom.h"
#include "core_limits.h"
#include "pull_plan.h"
#include "recon.h"
#include "guts/refmerge.h"
#include "guts/core.h"
#include "guts/idset.h"
#include "guts/wire.h"

/* ---- Structures ----------------------------------------------------------- */

typedef struct core_act {
    guts_core_action a;
    uint8_t *buf; /* owned copy of data */
    char *text;   /* owned copy of text */
} core_act;

typedef struct peer_repo {
    /* the key: the lrepo's own when we track the repository (shared: one
     * copy for every peer, and members_repo(p, r->key) matches it by
     * address, without a strcmp per peer), else an owned copy; which one
     * is told by address (node_members.c, key_owned), not by a flag that
     * took 8 bytes of every view entry */
    const char *key;
    uint64_t objects;
    guts_fp fp;
    uint64_t rdigest;
    /* A hash of the state (fp, rdigest) it announced when a pull from it
     * brought nothing, 0 if none: a peer that is merely behind us, or holds
     * nothing we lack, keeps announcing a state that differs from ours;
     * until that state changes it is pulled only by anti-entropy (see
     * node_announce.c). 8 bytes, not the 24 of the state: this entry
     * exists per peer and repository (a collision only delays one pull to
     * anti-entropy). */
    uint64_t empty_sig;
} peer_repo;

/* An address learned from a peer's PEERS (node_reach.c). */
typedef struct learned {
    guts_addr addr;
    guts_node_id id;      /* the node said to be there */
    uint64_t named;       /* last time a peer named it */
    uint64_t sent;        /* last announce sent to it, 0: never */
    uint64_t quiet_until; /* given up: not tried before this */
    uint32_t unanswered;  /* announces sent since it was last heard */
} learned;

/* A DEAD notice still to be sent (node_probe.c). */
typedef struct dead_note {
    guts_node_id node;
    uint64_t inc, at;
    uint32_t left;
} dead_note;

/* A prober we handed a round (node_probe.c, "Given-back turns"): where to
 * reach it, what to echo, and when it may and will come. */
typedef struct pace_far {
    guts_addr addr;  /* its PROBE's source */
    uint8_t turn;    /* `at` is a turn of pace_slots, not a random time */
    uint16_t tag;    /* pace_tag of its id */
    uint32_t seq;    /* its PROBE's seq, echoed */
    uint32_t least;  /* its PROBE's pace: no round of it before booked + least */
    uint64_t booked; /* when our ACK handed the round */
    uint64_t at;     /* the round handed, 0: a free entry */
} pace_far;

/* 176 bytes on 64-bit hosts (the small fields fill the holes after addr):
 * every node holds up to CORE_VIEW_MAX of them. */
typedef struct peer {
    guts_node_id id;
    guts_addr addr;
    /* capacity of repos: 0, or 1 << (capshift - 1) (node_members.c, pcap) */
    uint8_t capshift;
    uint16_t port;
    uint8_t pex_again : 1; /* the first PEERS is to be repeated once (node_reach.c) */
    /* a DEAD notice named it: the running round confirms (node_probe.c) */
    uint8_t probe_suspect : 1;
    /* its next round is a turn its ACK handed us (node_probe.c) */
    uint8_t probe_turn : 1;
    uint8_t probe_tries; /* PROBEs sent in this round (node_probe.c) */
    uint16_t nrepos;     /* at most CORE_PEER_REPOS_MAX */
    uint32_t interval;
    uint32_t taken;        /* remote-only repositories tracked because it announced them */
    uint32_t probe_period; /* ms to its next round, as its last ACK said */
    uint64_t inc;
    uint64_t last_heard;
    uint64_t pex_sent;    /* last PEERS sent to it, 0: never */
    uint64_t group_heard; /* last datagram by multicast, 0: never */
    uint64_t ucast_heard; /* last datagram by unicast, 0: never (node_reach.c) */
    uint64_t addr_heard;  /* last datagram from addr, 0: take the next one's */
    uint64_t answered;    /* last prompt unicast answer to it, 0: never (node_reach.c) */
    /* start of the running probe round, 0: none; its next PROBE is
     * c->probe_at[i] (node_probe.c) */
    uint64_t probe_round;
    /* repository entries sorted by key: `one` while the capacity is <= 1, else
     * the `repos` array (node_members.c, prepos) */
    union {
        peer_repo one;
        peer_repo *repos;
    };
} peer;

enum { REPLY_REFUTE = 1, REPLY_NEWCOMER = 2 };

/* A compact ref record (guts_ref is 2 KiB of fixed arrays). */
typedef struct cref {
    char *name;
    guts_id target;
    char *symref; /* NULL unless symbolic */
    uint64_t clock;
    guts_node_id writer;
    uint32_t tries; /* pending: sessions that ended with its closure incomplete */
} cref;


/* A repository state peers announced, how many times, and when last. */
typedef struct seen_state {
    guts_fp fp;
    uint64_t rdigest, objects;
    uint64_t at;
    uint32_t n;       /* announces heard of it; 0: unused */
    uint32_t n_group; /* of them by multicast: what CORE_ANNOUNCE_REDUNDANT counts */
} seen_state;

typedef struct lrepo {
    /* what an announce of it and settle read first (guts_core_prefetch
     * loads up to the key's first cache line); the key's 200 bytes come
     * after, most keys are short */
    guts_repo_info info;
    int changed;          /* to be announced first */
    guts_fp ann_fp;       /* the fingerprint our last announce of it carried */
    uint64_t next_pull;   /* 0: none scheduled */
    int urgent;           /* next_pull was set by evidence, not anti-entropy */
    uint32_t pulling;     /* outgoing sessions running for it */
    pull_plan *plan;      /* a first copy split between peers, NULL: none */
    uint32_t failures;    /* consecutive failed pulls: backoff */
    uint32_t busy_streak; /* consecutive busy answers: back-off */
    uint32_t idle_pulls;  /* consecutive pulls that brought nothing: slower anti-entropy */
    int unstored;         /* heard in an announce, not in the store until a pull
                           * brings an object or a ref (node_store.c, "Lazy creation") */
    seen_state seen[CORE_SEEN_STATES]; /* states announced lately, how often */
    char key[GUTS_KEY_MAX + 1];
    guts_node_id origin; /* unstored: the peer whose announce made us track it */
    cref *pending;       /* refs waiting for their closure */
    size_t npending, cappending;
    guts_idset complete; /* ids whose closure is known complete */
    struct ctrack *track; /* closures counted as a pull stores (node_closure.c) */
    int track_off;        /* tracking given up until the pulls end */
} lrepo;

/* SESS_PARKED: a puller's stream between two pulls from the same peer
 * (CORE_PARK_MS), no repository, no counters; it becomes a SESS_PULL again
 * or is closed. */
enum { SESS_PULL = 1, SESS_SERVE = 2, SESS_PARKED = 3 };
enum { PHASE_CONNECTING = 0, PHASE_OBJECTS, PHASE_REFS, PHASE_WANTS, PHASE_DONE };

/* A job on a serving stream, answered in order. */
enum { JOB_IDS = 1, JOB_RANGE, JOB_REFS, JOB_DONE };
typedef struct job {
    int kind;
    guts_id *ids; /* JOB_IDS: owned */
    size_t nids, pos;
    guts_id from; /* JOB_RANGE: next id to read */
    guts_id to;   /* exclusive */
    int to_end;   /* range runs to the last id */
    guts_id *buf; /* JOB_RANGE: ids read ahead (owned) */
    size_t nbuf, bufpos;
    int end;      /* the store has no ids past buf */
    int whole;    /* JOB_RANGE over the whole id space: bases go first */
    char **names; /* JOB_REFS: owned ref names */
    size_t nnames;
    uint8_t space; /* JOB_DONE */
    uint64_t sent; /* JOB_DONE: what the request produced */
} job;

/* A record read from the store, to be sent. */
typedef struct sent_rec {
    guts_rec rec; /* data points into buf */
    void *buf;
} sent_rec;

/* A delta record received before its base, held by the puller. */
typedef struct pend_rec {
    guts_rec rec; /* data points into buf */
    uint8_t *buf; /* NULL once stored or dropped */
    int asked;    /* its base was in a WANT */
    int picked;   /* in the batch being stored */
} pend_rec;

typedef struct session session;
/* A slot of the sessions by stream id (node_sync.c): the id kept beside
 * the pointer, so a lookup reads no other session on its way. */
typedef struct sidx_ent {
    session *s;
    uint32_t stream;
} sidx_ent;

typedef struct session {
    /* first: what settle reads of every session on every event (kind,
     * last_active, key[0]), in one cache line */
    int kind;
    int phase;
    uint64_t last_active;
    char key[GUTS_KEY_MAX + 1];
    guts_core *core;
    uint32_t stream;
    uint32_t at; /* its index in core->sess */
    guts_addr addr;
    guts_node_id peer_id;
    uint64_t started;
    int got_hello;
    int said_hello;
    /* Up to here (SESS_SMALL bytes) only, while small: a parked stream's
     * session and a server's until its first request (node_sync.c,
     * sync_sess_full), which a large group holds thousands of at once
     * after an update spread, for CORE_PARK_MS. */
    int small;
    /* puller */
    guts_recon_puller recon;
    int recon_live;
    uint64_t seed;
    uint32_t round;
    uint32_t outstanding; /* requests (RECON/WANT) without their DONE */
    int recon_done;
    int part;   /* the plan's first part this pull reconciles, -1: the whole set */
    uint32_t nrun;      /* parts part .. part+nrun-1 (pull_plan_take's run) */
    int prev_part;      /* the run before, its objects still coming, or -1 */
    uint32_t prev_nrun; /* its length */
    uint32_t prev_left; /* DONEs still due for prev_part's requests */
    uint32_t stall_ms;  /* with a part: the plan's stall_ms when it began */
    int norefs; /* a part's pull that ends without the refs phase */
    int part_wait; /* no part free: waits for the plan's other sessions (pull_parts_kick) */
    uint32_t want_rounds;
    uint64_t want_mark; /* got_objects + npend when the last WANT was sent */
    cref *inrefs;       /* refs received this session */
    size_t ninrefs, capinrefs;
    uint64_t got_objects, got_bytes, got_refs;
    uint64_t pend_others; /* objects other sessions had stored at the last pull_pend_retry */
    uint64_t expected; /* objects the peer announced beyond ours at the start */
    uint64_t applied0; /* refs_applied counter when the session started */
    uint8_t *chunk;    /* chunks of the large object being received, not yet staged */
    size_t chunk_fill; /* bytes in chunk (at most CORE_STAGE_BATCH) */
    int chunk_active;  /* an object's chunks are arriving */
    guts_id chunk_id;
    int chunk_type;
    uint64_t chunk_total;
    int chunk_skip;      /* the object being received is over obj_max: dropped */
    uint64_t chunk_next; /* offset the next chunk must have */
    pend_rec *pend;      /* deltas waiting for their base */
    size_t npend, cappend, live_pend, pend_bytes;
    uint64_t *pend_slots; /* by base, linear probing: tag << 32 | entry + 1; 0 empty */
    size_t pend_mask;
    /* server */
    job *jobs;
    size_t njobs, capjobs, headjob;
    size_t queued_ids;
    size_t queue_max; /* serving: CORE_SERVE_QUEUE_MAX, less on a small serve's slot */
    int blocked;    /* waiting for on_stream_writable */
    int big_active; /* a large object is being sent in chunks */
    uint64_t big_len, big_off;
    int big_type;
    guts_id big_id;
    /* what the puller holds staged: GUTS_STAGE_MAX entries once it says
     * (most sessions never do), else NULL */
    guts_stage *resume;
    size_t nresume;
    /* Records read but not sent yet, in send order: one that did not fit
     * the last frame, or a delta's bases read ahead of it. Serving
     * sessions only, from their first OBJECTS frame (NULL before: a parked
     * stream's idle server session holds none): CORE_AHEAD_MIN entries,
     * CORE_AHEAD_MAX once a delta is read (7.7 KB, which a session sending
     * whole objects never needs). */
    sent_rec *ahead;
    size_t headahead, nahead, capahead;
    guts_idset early; /* ids sent ahead of a whole-repository walk */
    uint64_t sent_objects;
    uint64_t req_sent; /* elements sent for the request being answered */
    int busy; /* the server said EAGAIN: retry soon, elsewhere */
    uint32_t retry_after; /* busy: the server's retry-after, ms (0: none) */
    /* puller: an object of this session failed its hash (the first:
     * reported to the server, the session goes on without it); server:
     * the puller reported one (a second ends the session) */
    int damaged;
    guts_id bad_id; /* puller: the last object that failed its hash */
} session;
#define SESS_SMALL offsetof(session, recon)

struct guts_core {
    /* Hot: what every delivery reads or writes (enter, on_msg, announce_on,
     * settle), first and together, so an event touches few cache lines of
     * a core and guts_core_prefetch loads them all (up to cfg's end). */
    uint64_t now;
    int left;
    int started; /* the first event came (first announce scheduled) */
    core_act *acts;
    size_t nacts, capacts, headact;

    peer *peers;
    size_t npeers, cappeers;
    uint32_t *pindex; /* open addressing: node id -> peer index + 1 (0 empty) */
    size_t pindex_cap;

    lrepo **repos; /* sorted by key */
    size_t nrepos, caprepos;

    session **sess;
    size_t nsess, capsess;
    sidx_ent *sidx;  /* open addressing by stream id (s NULL: empty) */
    size_t sidx_cap; /* a power of two, at least twice nsess */
    /* the sessions at a glance (node_sync.c, sync_glance): valid while
     * sess_clean, which adding, removing or changing a session clears */
    int sess_clean;
    uint32_t sess_pulls, sess_serves;
    uint64_t sess_idle_at; /* earliest idle deadline, UINT64_MAX: none */

    uint64_t next_announce, last_announce;
    uint64_t ann_base;   /* start of the current interval (the last announce, or start) */
    uint32_t ann_factor; /* per mille, [500, 1500]: this interval's jitter */
    int announce_soon;   /* a change to announce, at soon_at or later */
    uint64_t soon_at;
    /* with announce_soon: an answer, REPLY_NEWCOMER to a newcomer (at once,
     * no gap after our last announce) or REPLY_REFUTE to a DEAD naming us
     * (after the gap: a forged DEAD repeated must not make us multicast
     * at its rate) */
    int reply_soon;
    uint32_t sweep_left;            /* pages still to send of a newcomer's full round */
    uint64_t hello_at;              /* the first announce, 0 once sent or dropped */
    uint64_t heard_sec;             /* start of the current second of heard_now */
    uint32_t heard_now, heard_prev; /* announces heard this and last second */
    uint64_t next_timer_sent;
    /* the earliest deadline the last whole settle found (0: none yet): no
     * work of settle's is due before it (node.c, "Quiet announces") */
    uint64_t settle_at;
    uint64_t next_expiry_check;    /* earliest time any peer can expire */
    uint64_t probe_next;           /* earliest probe or notice due (node_probe.c) */
    size_t ndead;                  /* DEAD notices queued (dead, below) */
    uint64_t ann_bytes, ann_count; /* announces sent and heard: average size */
    uint64_t last_rx;              /* last datagram received (local health) */
    int full;                      /* the store refused a write as full (GUTS_EFULL) */
    uint64_t full_retry;           /* while full: no pull starts before this */
    uint64_t rng[4];
    /* group-size sketch (node_members.c): per epoch the sorted distinct
     * smallest hashes of sender ids; kmv[cur] fills, kmv[!cur] is the last
     * (the arrays themselves are at the end) */
    size_t nkmv[2];
    int kmv_cur;
    uint64_t kmv_seed;      /* keyed: a sender cannot pick small hashes */
    uint64_t kmv_epoch_end; /* 0: not started */
    uint64_t kmv_est;       /* cached sketch estimate, 0: to compute */
    uint32_t kmv_stale;     /* insertions into a full sketch since kmv_est */
    uint64_t kmv_exact;     /* the estimate of the epochs as they are, 0: unknown */
    /* asked for without its value since the epochs last changed: kmv_est
     * (and kmv_exact) owe the merge of them as they are (node_members.c,
     * members_estimate_touch) */
    int kmv_owed;
    uint64_t kmv_since;     /* when the first epoch began */
    guts_core_config cfg;
    /* end of the hot part; below, what fewer events touch */
    guts_core_counters ctr;
    guts_core_store st;   /* what the core calls: st_* wrappers over real */
    guts_core_store real; /* the driver's store */

    size_t rr; /* round-robin cursor of the announce pager */
    uint32_t next_stream;
    uint64_t up_since;   /* the first event's time */
    int ann_settled;     /* a regular announce went out (node_announce.c, jitter) */
    size_t nremote;      /* unstored repositories (remote-only keys) */
    int refused_logged;  /* a remote-only cap refused a key: said once */
    guts_idset refused;  /* objects refused as over obj_max: logged once, not wanted */
    guts_idset damaged;  /* stored objects found failing their hash: logged once */
    uint64_t damaged_check_at; /* no puller's DAMAGED is checked before then */
    /* while sess_clean: the nlow smallest idle deadlines of the sessions,
     * ascending (sess_low[0] is sess_idle_at), so the glance survives the
     * earliest session going or becoming active without a rescan */
    uint64_t sess_low[CORE_GLANCE_LOW];
    uint32_t nlow;
    guts_addr *seeds;    /* cfg.seeds, copied (node_reach.c); NULL without seeds */
    uint64_t *seed_sent; /* per seed: last datagram to it while unheard */
    learned *learned;    /* at most cfg.learned_max */
    size_t nlearned;
    uint64_t answer_refill; /* prompt answers: the budget refills at this time */
    uint32_t answers_left;  /* ... and until then this many may go */
    /* failure detection (node_probe.c) */
    uint32_t probe_seq;
    uint64_t answers_start;  /* the current CORE_PROBE_ANSWERS_MS window */
    uint32_t answers;        /* ACKs sent in it */
    /* a bit per round of ours answered lately, newest lowest: 1 if it took
     * more than one PROBE (loss on our paths: node_probe.c, turn_copies) */
    uint8_t probe_lossy;
    uint64_t pace_base;      /* the turns our ACKs hand out (node_probe.c) */
    uint64_t pace_slots[2];
    uint16_t pace_tag[64];   /* ... whom each was handed to (pace_tag_of) ... */
    pace_far pace_far[CORE_PROBE_FAR]; /* ... the last probers handed a round */
    dead_note dead[CORE_DEAD_QUEUE];
    /* The probe schedule (node_probe.c), beside the view, not in its
     * entries: peer i's next PROBE (or its round's end) is probe_at[i],
     * UINT64_MAX while it is new (its bit in probe_new) or past npeers;
     * probe_min[g] is the least of probe_at[8g .. 8g + 7]. */
    uint64_t probe_new;
    uint64_t probe_min[CORE_VIEW_MAX / 8];
    uint64_t probe_at[CORE_VIEW_MAX];
    uint32_t kmv[2][CORE_KMV_K]; /* the top 32 bits of each hash */
};

/* node.c */
uint64_t core_rand(guts_core *c);
/* uniform in [0, n) (n > 0) */
uint64_t core_rand_below(guts_core *c, uint64_t n);
/* Offset of the message type in an envelope this core encoded: fixarray,
 * uint32 magic (5 bytes), a one-byte version (docs/protocol.md). */
#define CORE_ENVELOPE_TYPE_AT 7
int core_push(guts_core *c, const guts_core_action *a);
/* Queue a GUTS_ACT_EVENT (any pointer may be NULL). */
void core_event(guts_core *c, int type, const char *repo, const char *ref, const guts_id *old_id,
                const guts_id *new_id, const guts_node_id *peer, const char *detail);
void core_log(guts_core *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Encode msg as a frame and queue it on stream. */
int core_send_frame(guts_core *c, uint32_t stream, const guts_msg *msg);
void core_close_stream(guts_core *c, uint32_t stream);
void core_msg_init(guts_core *c, guts_msg *m, int type);

/* node_repos.c */
lrepo *core_repo_find(guts_core *c, const char *key);
/* Find or add the cache entry; refreshes its counters from the store. */
int core_repo_load(guts_core *c, const char *key, lrepo **out);
/* Track key, announced by peer from, without creating it in the store.
 * GUTS_EFULL when a remote-only cap refuses it (counted, logged once). */
int core_repo_announced(guts_core *c, const char *key, peer *from, lrepo **out);
/* Drop the remote-only repositories no live peer vouches for (their
 * announcer is gone) and no pull is using. */
void core_repo_evict_orphans(guts_core *c);
/* r stops being remote-only (stored, or dropped): release its counts. */
void core_repo_remote_release(guts_core *c, lrepo *r);
/* Store walk callback (arg: the core): load the repository key. */
int core_repo_rescan_cb(const char *key, void *arg);
void core_repo_refresh(guts_core *c, lrepo *r);

/* node_store.c */
/* Point c->st at the wrappers of c->real (lazy creation, full store). */
void core_store_wrap(guts_core *c);
/* Object id of key, size bytes, from a peer: 1 (counted, logged once per
 * id) when it is over obj_max and must be skipped, else 0. */
int core_obj_refused(guts_core *c, const char *key, const guts_id *id, uint64_t size);
/* Before serving a stored object: 1 when it fails its hash (then it is
 * dropped from the store so a peer's copy replaces it, counted, and logged
 * once per id) and must not be sent; 0 to send it. */
int core_obj_damaged(guts_core *c, const char *key, const guts_id *id);
/* Remove from ids[0..*n) those refused for their size: asking again would
 * only bring them again. */
void core_wants_trim(guts_core *c, guts_id *ids, size_t *n);
/* 1 while no pull may start because the store is full. */
int core_store_full(const guts_core *c);

/* node_members.c */
peer *members_find(guts_core *c, const guts_node_id *id);
/* Record that a datagram from id/addr/inc arrived; NULL when ignored. A new
 * sender enters a full view only when useful (see CORE_VIEW_MAX). *fresh
 * is set when id was not in the view. */
peer *members_heard(guts_core *c, const guts_node_id *id, const guts_addr *addr, int via,
                    uint64_t inc, uint16_t port, uint32_t interval, int useful, int *fresh);
/* 1 while a datagram heard at `at` (0: never) keeps p live: p's expiry
 * counted from then. */
int members_live_since(guts_core *c, const peer *p, uint64_t at);
/* Count sender id in the group-size sketch. */
void members_sketch_add(guts_core *c, const guts_node_id *id);
/* Estimated members of the group, this node included. */
uint64_t members_estimate(guts_core *c);
/* members_estimate's effect on the sketch's cache, for a caller that does
 * not need the value: the same later estimates, without the merge now. */
void members_estimate_touch(guts_core *c);
/* A hash of a repository state (fingerprint, refs digest), never 0. */
uint64_t members_state_sig(guts_fp fp, uint64_t rdigest);
void members_remove(guts_core *c, size_t i, const char *why);
void members_expire(guts_core *c);
peer_repo *members_repo(peer *p, const char *key);
/* Drop every peer's entry for r, which is about to be freed (entries may
 * share its key). */
void members_forget_repo(guts_core *c, const lrepo *r);
/* Record p's announced state of key; r: our entry for key, if any (lrepo
 * entries live as long as the core, so peers may share their key). */
int members_repo_set(peer *p, const char *key, const lrepo *r, uint64_t objects, guts_fp fp,
                     uint64_t rdigest);
uint64_t members_next_expiry(const guts_core *c);
/* pr still announces the state at which a pull from it brought nothing. */
int members_repo_exhausted(const peer_repo *pr);
/* A pull of key from id ended ok; empty: it brought nothing. */
void members_pulled(guts_core *c, const guts_node_id *id, const char *key, int empty);

/* node_announce.c */
uint32_t announce_interval(guts_core *c);
/* The regular announce is due (RTCP's timer reconsideration): 1, or 0 and
 * next_announce moved to when the interval, grown meanwhile, ends. */
int announce_due(guts_core *c);
/* Schedule the first announce: one base interval, jittered, then
 * reconsidered like every other (RFC 3550 halves this first one; not
 * halving it halves the flood when a large group starts at once). */
void announce_start(guts_core *c);
/* The hello is due: send it (1) unless a large group was heard already. */
int announce_hello_due(guts_core *c);
/* A member not in our view announced (fresh: its first datagram to us). */
void announce_newcomer(guts_core *c);
/* Send an announce now; regular: its interval had ended (not a hello,
 * news or an answer). */
void announce_send(guts_core *c, int regular);
/* An announce (as the next regular one would be, scheduling untouched) to
 * one address by unicast: a prompt answer (node_reach.c). */
void announce_answer(guts_core *c, const guts_addr *to);
/* The sender of a lacks something we hold (a repository it announces fewer
 * objects of, or, when a is its one page, one it does not name). */
int announce_behind(const guts_core *c, const guts_msg_announce *a);
/* The earliest time an immediate announce may go: CORE_ANNOUNCE_GAP_MS
 * after our last one, or CORE_SWEEP_GAP_MS while a newcomer's sweep runs;
 * 0 (no gap) before our first datagram and for an answer to a newcomer. */
uint64_t announce_gap_end(const guts_core *c);
/* An announce m arrived. Returns 1 when it was let go (a sender neither in
 * the view nor taken in): it touched the sketch and the counts of states
 * heard, nothing settle reads (node.c, "Quiet announces"). */
int announce_on(guts_core *c, const guts_msg *m, const guts_addr *from, int via);
/* Decide whether r needs a pull given what peers announced. */
void announce_consider(guts_core *c, lrepo *r);
void announce_changed(guts_core *c, lrepo *r);
/* A peer state is evidence of something we lack (pulled at once): more
 * objects, or the same objects with other refs. */
int announce_ahead(const lrepo *r, uint64_t objects, guts_fp fp, uint64_t rdigest);
/* An announce of changes is due now (and still worth sending). */
int announce_soon_due(guts_core *c);

/* node_reach.c */
/* Queue the unicast copies of a group datagram (data, len): one to each
 * seed, and one to each live peer heard by unicast that is no seed. */
void reach_copies(guts_core *c, const uint8_t *data, size_t len, int announce);
/* A PEERS datagram m arrived from addr. */
void reach_on_peers(guts_core *c, const guts_msg *m, const guts_addr *from);
/* p's announce a came by unicast from `from` (p admitted to the view):
 * answer at once if it lacks what we hold, within the budget
 * (CORE_ANSWER_MAX), with PEERS when due. */
void reach_answer(guts_core *c, peer *p, const guts_msg_announce *a, const guts_addr *from);
void reach_free(guts_core *c);
/* How a datagram from a by way of via came: "multicast", "unicast" or,
 * for a seed or a learned address, which one (for the join log line). */
const char *reach_path(const guts_core *c, const guts_addr *a, int via);

/* node_probe.c */
/* Due rounds, retries, deaths and DEAD notices. */
void probe_tick(guts_core *c);
/* When probe_tick wants to run next (0: nothing). */
uint64_t probe_next(const guts_core *c);
/* Peer i entered the view (its first round is scheduled at the next tick). */
void probe_added(guts_core *c, size_t i);
/* Peer i leaves the view and the last one, `last`, takes its place. */
void probe_removed(guts_core *c, size_t i, size_t last);
/* Peer i leaves the view though alive (evicted): its turn is given back. */
void probe_release(guts_core *c, size_t i);
/* A PROBE, ACK or DEAD datagram m arrived from addr. */
void probe_on(guts_core *c, const guts_msg *m, const guts_addr *from);

/* node_sync.c */
session *sync_find(guts_core *c, uint32_t stream);
/* Start the pulls that are due. Draws from the core's random stream
 * whenever the core has repositories and room in its store, due or not
 * (node.c's quiet path draws the same). */
void sync_start_pulls(guts_core *c);
void sync_on_open(guts_core *c, uint32_t stream, const guts_addr *peer, int outgoing);
void sync_on_frame(guts_core *c, uint32_t stream, const uint8_t *buf, size_t len);
void sync_on_writable(guts_core *c, uint32_t stream);
void sync_on_closed(guts_core *c, uint32_t stream);
/* End session s: close its stream (when close_stream), free it. */
void sync_end(guts_core *c, session *s, int ok, int close_stream, const char *why);
void sync_abort_peer(guts_core *c, const guts_addr *addr);
/* 1 when a pull from peer id is running: its session's idle deadline, not
 * announce expiry or probing, decides whether the peer is gone. */
int sync_pulling_from(const guts_core *c, const guts_node_id *id);
void sync_idle(guts_core *c);
/* Pulls and serves (as guts_core_sessions counts them) and the earliest
 * idle deadline of any session (UINT64_MAX: none), from one scan of the
 * sessions after one changed, and from the core's own fields otherwise:
 * settle asks on every event, and most events touch no session. */
void sync_glance(guts_core *c, size_t *pulls, size_t *serves, uint64_t *idle_at);
/* A session's kind, last_active or key changed, or one came or went. */
static inline void sync_touched(guts_core *c)
{
    c->sess_clean = 0;
}
void sync_free_all(guts_core *c);
/* A new session on stream (kind SESS_*) with the peer at addr, or NULL.
 * A parked one, or a server's, is small (SESS_SMALL bytes) until
 * sync_sess_full. */
session *sync_sess_new(guts_core *c, uint32_t stream, int kind, const guts_addr *addr);
/* s with all its fields (moved: s is then invalid), or NULL without
 * memory (s unchanged). */
session *sync_sess_full(guts_core *c, session *s);
/* Keep a finished pull's stream for the next pull from the same peer. */
void sync_park(guts_core *c, uint32_t stream, const guts_addr *addr, const guts_node_id *peer_id);
/* Send HELLO on s's stream (either side). */
void sync_send_hello(guts_core *c, session *s);
/* A parked stream to peer p, or NULL. */
session *sync_parked_to(guts_core *c, const peer *p);
/* The first id of recon key k (k in its top 32 bits). */
void sync_key_to_id(uint32_t k, guts_id *id);
/* The two sets the reconciliation engine sees (ctx: the session). */
int sync_objects_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx);
int sync_refs_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx);

/* node_pull.c (and sync_start_pulls above) */
/* 1 when r's running plan takes another peer now (parts are free; right
 * after a session started on it, else every CORE_SPLIT_JOIN_MS). */
int pull_join_due(const guts_core *c, const lrepo *r);
/* Move the puller on when a phase is complete. */
void pull_advance(guts_core *c, session *s);
void pull_parts_kick(guts_core *c, lrepo *r);
/* The pull's stream is open (new or parked): HELLO, resumes, the first phase. */
void pull_open(guts_core *c, session *s);
void pull_recon(guts_core *c, session *s, const guts_msg_recon *m);
/* A DONE arrived: the request's elements are all in. */
void pull_done(guts_core *c, session *s);

/* node_pull_recv.c */
void pull_pend_free(guts_core *c, session *s);
void pull_log_bad(guts_core *c, session *s, const guts_id *id);
/* An object of s failed its hash (s->bad_id): the first of the session is
 * reported to the server (DAMAGED) and 1 returned, the caller then goes on
 * without it; 0 for a second (the session ends). */
int pull_report_bad(guts_core *c, session *s);
/* Bases of held deltas, not asked for before and not stored: appended to a
 * WANT list of *n ids (up to max). */
void pull_pend_wants(guts_core *c, session *s, guts_id *want, size_t max, size_t *n);
void pull_objects(guts_core *c, session *s, const guts_msg_objects *m);
/* Store the held deltas whose base is in the store now (another session
 * of the same plan brought it). Without force, only when some other
 * session stored objects since the last call: a lookup of every held
 * delta's base per finished part was most of a fresh node's CPU on many
 * small objects (256 parts, tens of thousands held). */
void pull_pend_retry(guts_core *c, session *s, int force);
/* Stage the buffered chunks (one write transaction). */
int pull_chunk_flush(guts_core *c, session *s);
void pull_chunk(guts_core *c, session *s, const guts_msg_chunk *m);
void pull_refs(guts_core *c, session *s, const guts_msg_refs *m);

/* node_serve.c */
void serve_error(guts_core *c, session *s, int code, const char *text);
void serve_recon(guts_core *c, session *s, const guts_msg_recon *m);
/* An empty OBJECT_CHUNK from the puller: it holds a prefix of an object. */
void serve_resume(guts_core *c, session *s, const guts_msg_chunk *m);
void serve_want(guts_core *c, session *s, const guts_msg_want *m);
void serve_damaged(guts_core *c, session *s, const guts_msg_damaged *m);

/* node_serve_pump.c */
/* Free what job j holds (not j itself). */
void serve_job_free(job *j);
/* Send queued jobs up to CORE_SEND_BUDGET bytes, then wait for writable. */
void serve_pump(guts_core *c, session *s);

/* node_closure.c */
typedef struct ctrack ctrack;
/* The guts_rec_seen of a pull's rec_put: counts the closures of what it
 * stores (arg: the lrepo), in batches: closure_track_count after the call. */
void closure_seen(void *arg, const guts_id *id, int type, const void *data, size_t len);
/* Count what closure_seen was told of since the last count (r's tracker,
 * if any; given up without memory). refs_closure counts first. */
void closure_track_count(lrepo *r);
/* Before a pull's rec_put: r's tracker, made if none (1), or none (0). */
int closure_track_begin(guts_core *c, lrepo *r);
/* Free r's tracker (its pulls ended, or the complete cache was emptied). */
void closure_track_free(lrepo *r);
/* Is target's closure in the store? *complete says; missing ids go into
 * want (at most cap), ids found incomplete into incomplete. */
int refs_closure(guts_core *c, lrepo *r, guts_idset *incomplete, const guts_id *target,
                 guts_id *want, size_t cap, size_t *nwant, int *complete);
/* The ancestry oracle of guts_ref_merge (ctx: a refs_anc_ctx): is anc an
 * ancestor of desc? At most CORE_ANCESTRY_MAX objects are read (0 past). */
typedef struct refs_anc_ctx {
    guts_core *c;
    lrepo *r;
} refs_anc_ctx;
int refs_is_ancestor(void *ctx, const guts_id *anc, const guts_id *desc);

/* node_refs.c */
void cref_free(cref *r);
int cref_from_wire(cref *out, const guts_wire_ref *w);
void cref_to_ref(const cref *in, guts_ref *out);
/* Try to apply every pending ref of r; missing closure ids are collected
 * into want (at most cap). count: a session ends, so a record still
 * incomplete uses up one of its CORE_REF_TRIES_MAX tries. */
int refs_apply_pending(guts_core *c, lrepo *r, guts_id *want, size_t cap, size_t *nwant, int count);
/* Move a session's received refs into the repository's pending list. */
void refs_take(guts_core *c, lrepo *r, cref *refs, size_t n);
void repo_free_state(lrepo *r);


#endif
