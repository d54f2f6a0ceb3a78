/* net.h - the pieces of guts-node, the libev daemon that drives the core.
 *
 * The daemon is a thin shell: every protocol decision is the core's
 * (include/guts/core.h). This layer owns what the core must not: sockets,
 * the clock, signals and the event loop. It is split by concern:
 *
 *   opts.c    command line, data dir resolution
 *   log.c     one line per event on stderr, timestamped, levelled; on a
 *             terminal the live progress lines of the pulls stay under them
 *   udp.c     per IP family a group socket (receive group traffic) and the
 *             node's unicast socket (send everything, receive unicast); the
 *             groups joined on every multicast-capable interface
 *   tcp.c     listener and streams: length-prefixed frames, bounded read
 *             buffer and write queue with high/low water marks, timeouts
 *   daemon.c  the node's lifecycle; daemon_io.c the loop: feeds events to
 *             the core, performs its actions, seals and opens everything
 *             with the cluster key when keyed; daemon_local.c polls the
 *             store for other processes' writes; daemon_status.c writes
 *             status; daemon_peers.c remembers peers (daemon.h: shared)
 *   http.c    the --http listener: GNU libmicrohttpd driven from the loop,
 *             bounded, with a table of routes other handlers join
 *   web.c     the node's routes: the page, /api/status, /metrics, /events
 *   main.c    main()
 *
 * The interfaces of opts.c, log.c, ratelimit.c, udp.c, tcp.c and http.c
 * are in headers of their own (net/opts.h, ...), all included here: a
 * file includes net.h alone. This one holds the node itself, hooks,
 * keys, git and web; daemon.h is private to daemon*.c.
 *
 * Every libev watcher lives inside the struct that owns it; callbacks get
 * back to their owner with container_of. Nothing here is global.
 */
#ifndef GUTS_NET_NET_H
#define GUTS_NET_NET_H

#include <ev.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "guts/core.h"
#include "guts/guts.h"
#include "guts/seal.h"
#include "guts/lmdbstore.h"
#include "guts/store.h"
#include "guts/wire.h"
#include "http.h"
#include "log.h"
#include "opts.h"
#include "ratelimit.h"
#include "tcp.h"
#include "udp.h"


#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- Refused sources -------------------------------------------------------- */

/* ---- hooks.c: --on-event ---- */

/* Events waiting per hook, a hook's time to run, its arguments, one JSON
 * record's room, and how often a failing hook may say so. */
#define GUTS_NET_HOOK_QUEUE 64
#define GUTS_NET_HOOK_TIMEOUT_S 10.
#define GUTS_NET_HOOK_ARGS_MAX 32
#define GUTS_NET_HOOK_LINE_MAX 2560
#define GUTS_NET_HOOK_WARN_MS 60000

typedef struct guts_net_hook_item {
    guts_core_event e;
    uint64_t wall_ms;
} guts_net_hook_item;

/* The last events, for /events (web.c): a stream joining late gets these
 * first, and one that falls this far behind is told how many it missed. */
#define GUTS_NET_EVENTS_RING 32

struct guts_net_node;
typedef struct guts_net_hook {
    struct guts_net_node *node;
    char cmd[GUTS_NET_HOOK_CMD_MAX];   /* as given */
    char words[GUTS_NET_HOOK_CMD_MAX]; /* split in place: argv points here */
    char *argv[GUTS_NET_HOOK_ARGS_MAX + 1];
    guts_net_hook_item queue[GUTS_NET_HOOK_QUEUE];
    size_t head, nq;
    pid_t pid; /* the child running, 0: none */
    int timed_out;
    ev_child child;
    ev_timer timeout;
    uint64_t run, failed, timeouts, dropped;
    uint64_t last_warn_ms;
} guts_net_hook;

/* Sources whose key is remembered (keys.c): more than a LAN's live peers. */
#define GUTS_NET_PEER_KEYS_MAX 256

/* The key a source's last datagram that opened was sealed with. */
typedef struct guts_net_peer_key {
    guts_addr addr;
    uint8_t id[GUTS_SEAL_KEYID_LEN];
    uint64_t heard_ms; /* 0: a free slot */
} guts_net_peer_key;

/* Sources whose datagrams were refused (another cluster key, unsealed on a
 * keyed node, sealed on an open one), each counted: a LAN has a handful of
 * misconfigured nodes, not hundreds; 16 entries keep status.json short. */
#define GUTS_NET_REFUSED_MAX 16
/* Reason of a refusal: a GUTS_SEAL_R_* of the keyed node's seal, or this
 * one on an open node that hears sealed datagrams. */
#define GUTS_NET_REFUSED_SEALED 100

typedef struct guts_net_refused_src {
    guts_net_sa addr;
    int why; /* GUTS_SEAL_R_* or GUTS_NET_REFUSED_SEALED */
    uint64_t count, last_ms;
} guts_net_refused_src;

typedef struct guts_net_refused {
    guts_net_refused_src src[GUTS_NET_REFUSED_MAX];
    uint64_t total;
} guts_net_refused;

/** Count a datagram from `from` refused for why at now_ms. Returns 1 when
 * the source is new to the table (or refused for another reason than
 * before): the caller logs it once at warn. */
int guts_net_refused_note(guts_net_refused *t, const guts_net_sa *from, int why,
                          uint64_t now_ms);

/* ---- The node ------------------------------------------------------------- */

/* Other processes' writes (guts import) are noticed by polling each
 * repository's counters this often: well within the one second a user
 * waits, and a read transaction per repository is microseconds. */
#define GUTS_NET_POLL_S 0.3
/* Threads that flush the replicas this node creates (lmdbstore.c's
 * flusher): a fresh node pulling 1,000 small repositories waited on one
 * flush after another on the loop's thread; 4 flushes in flight let the
 * disk and ext4's journal take them together (docs/performance.md). */
#define GUTS_NET_FLUSHERS 4
/* status.json is rewritten this often: fresh enough for `guts status`. */
#define GUTS_NET_STATUS_S 1.0
/* Progress lines on a terminal are redrawn this often (as the CLI's). */
#define GUTS_NET_PROGRESS_S 0.25
/* At most this many pulls get a line of their own; the rest are counted in
 * one more line, so the block stays on one screen. */
#define GUTS_NET_PROGRESS_LINES 8
/* Repositories watched for local writes; beyond this new ones are still
 * found by the core's own scans, just not within a second. */
#define GUTS_NET_WATCH_MAX 4096
/* The local-write poll lists DATA/repos (a stat per repository) only when
 * the directories changed, and at least every this many polls (a data.mdb
 * created after the scan that saw its directory). */
#define GUTS_NET_SCAN_EVERY 10

/* Damaged repositories remembered for status.json (each was logged when
 * found); past this the oldest is dropped: a data dir where so many are
 * damaged has one problem, not 64. */
#define GUTS_NET_DAMAGED_MAX 64
/* Pulls listed in the status document: every one (at most --max-sessions). */
/* Peer ids listed per repository as "in_sync_with" in status.json (the
 * count of all is "in_sync_peers"): enough to name a small office's nodes
 * without making a 1,000-repository status document megabytes long. */
#define GUTS_NET_STATUS_SYNCED_WITH 4
#define GUTS_NET_STATUS_PULLS GUTS_NET_SESSIONS_FLAG_MAX

/* A repository found damaged and set aside (damaged.c). */
typedef struct guts_net_damaged {
    char key[GUTS_KEY_MAX + 1];
    char moved_to[PATH_MAX + 128]; /* empty: could not be set aside */
    char cause[256];
    uint64_t unix_ms;
} guts_net_damaged;

/* Remembered peers (DATA/node/peers): the addresses of live peers, kept
 * so a node restarted on a network without multicast finds them with no
 * flags. 32 is a segment's worth of ways back in; each is tried as a
 * learned address (at most one announce per interval, given up after a
 * few), so a stale list costs little. Entries not seen for a week are
 * dropped: a laptop back from a trip should not announce to last month's
 * hotel network. Rewritten every 30 s (and at exit) by write-to-temp,
 * fsync and rename. */
#define GUTS_NET_REMEMBER_MAX 32
/* No peer heard for this long gets one warning with the likely cause:
 * well past a peer's expiry at the default interval (7.5 s), short enough
 * that a user watching the log sees it while still at the machine. */
#define GUTS_NET_LONELY_MS 30000
#define GUTS_NET_REMEMBER_AGE_S (7 * 24 * 3600)
#define GUTS_NET_REMEMBER_S 30.0
/* A line of the file is "A.B.C.D:PORT UNIX_SECONDS" or "[IPV6]:PORT
 * UNIX_SECONDS": 71 bytes at most; longer lines are damage and skipped.
 * Link-local addresses are not kept: their zone (an interface index) may
 * name another interface after a restart. */
#define GUTS_NET_REMEMBER_LINE 96

typedef struct guts_net_remembered {
    guts_net_sa addr;
    uint64_t seen; /* unix seconds when last live */
} guts_net_remembered;

typedef struct guts_net_watch {
    char key[GUTS_KEY_MAX + 1];
    uint64_t txnid;
    uint64_t objects, refs, stored_bytes;
    uint64_t conflicts; /* refs under refs/guts/conflicts/ (daemon_local.c, poll_repo) */
    guts_fp conflicts_at; /* the refs digest they were counted at */
    int counted;          /* conflicts is a count, conflicts_at valid */
    guts_fp fp, refs_digest;
    uint64_t behind_since; /* ms: first status tick that saw a peer differ; 0: in sync */
    int seen;              /* found by the current scan */
    int pulling;           /* the core was pulling it at the last look (daemon_local.c) */
} guts_net_watch;

typedef struct guts_net_node {
    struct ev_loop *loop;
    guts_net_opts opts;
    guts_net_log log;
    guts_data *data;
    guts_core_lmdbstore *lstore;
    guts_core_store store;
    guts_core *core;
    guts_net_udp udp;
    guts_net_tcp tcp;
    ev_timer core_timer;   /* armed by SET_TIMER */
    ev_timer poll_timer;   /* local writes */
    ev_async flushed;      /* a flusher thread finished a flush */
    ev_timer status_timer; /* status.json */
    ev_timer progress_timer; /* progress lines, when stderr is a terminal */
    ev_timer remember_timer; /* DATA/node/peers */
    guts_net_remembered remembered[GUTS_NET_REMEMBER_MAX];
    size_t nremembered;
    char peers_path[PATH_MAX + 32];
    guts_net_tty tty;
    ev_signal sigint, sigterm, sighup;
    guts_net_watch *watch;
    size_t nwatch, capwatch;
    size_t watch_next; /* where watch_find looks first: after the last found */
    int watch_primed;
    uint64_t repos_stamp;     /* DATA/repos and its owner dirs as of the last scan */
    unsigned polls_unscanned; /* polls since the last scan of DATA/repos */
    int draining;                             /* inside the action loop: defer core calls */
    uint32_t deferred[GUTS_NET_CONN_MAX + 1]; /* streams closed while draining */
    size_t ndeferred;
    int leaving;
    int exit_code;
    uint64_t incarnation;
    char status_path[PATH_MAX + 32];
    uint64_t start_ms;
    guts_seal *seal;  /* cluster key (owned); NULL: the node runs open */
    uint8_t *sealbuf; /* a stream frame being sealed */
    size_t sealcap;
    unsigned seal_logged;     /* bit per GUTS_SEAL_R_* (streams: + 16): first logged */
    guts_net_refused refused; /* datagrams refused, per source */
    guts_net_peer_key peer_keys[GUTS_NET_PEER_KEYS_MAX]; /* keys.c */
    uint64_t sighups; /* SIGHUPs handled (keys.c): status.json "reloads" */
    guts_net_hook *hooks; /* hooks.c: one per --on-event */
    size_t nhooks;
    uint64_t lonely_since;    /* no peer since then (ms), 0: some peer */
    int lonely_logged;        /* the "no peer heard" line is out */
    unsigned scan_ticks;      /* status ticks since the last interface scan */
    guts_net_rate dgram_rate; /* datagrams per source */
    guts_net_rate conn_rate;  /* accepted connections per source */
    guts_net_damaged *damaged; /* most recent last, at most GUTS_NET_DAMAGED_MAX */
    size_t ndamaged;
    guts_net_recent recent; /* last log lines (log.recent points here) */
    guts_net_hook_item events[GUTS_NET_EVENTS_RING]; /* ring: events[nevents % RING] is next */
    uint64_t nevents;                                /* events kept (--http on) */
    guts_net_http http;     /* --http; http.d NULL when off */
    struct guts_net_sse *sse; /* /events streams open (web.c) */
    struct guts_net_git *git; /* git smart HTTP (git.c); NULL when --http is off */
    size_t nsse;
} guts_net_node;

/* ---- git.c: git smart HTTP (protocol v2 upload-pack) ---- */

/* Packs written at once, each by a thread of its own that reads the store
 * and deflates (about one core each): twice the two cores of a small
 * server; one more clone is told to come back (an ERR git prints). */
#define GUTS_NET_GIT_UPLOADS_MAX 4
/* A request body (an ls-refs or fetch command: wants and haves of 50 bytes
 * each), after gunzip: 4 MiB holds 80,000 of them, far more than git sends
 * in a round (it sends haves 16 to 256 at a time and the wants of every
 * ref once). Larger is refused with 413. */
#define GUTS_NET_GIT_REQUEST_MAX (4u << 20)
/* deepen N: git's own limit is INT_MAX; a depth past any history is a
 * full clone, so a larger number only makes the walk's bookkeeping wider. */
#define GUTS_NET_GIT_DEPTH_MAX 0x7fffffffu
/* ref-prefix arguments of one ls-refs: git sends one per refspec. */
#define GUTS_NET_GIT_PREFIXES_MAX 256
/* The pipe from a pack thread to the loop: large enough that the loop
 * reads big blocks and the thread rarely waits. */
#define GUTS_NET_GIT_PIPE_BYTES (1u << 20)
/* What the loop hands libmicrohttpd per read from that pipe. */
#define GUTS_NET_GIT_BLOCK (64u << 10)
/* Level of pack entries: git's own server reuses compressed data from its
 * packs; ours deflates every object, so with the fast encoder (pack.h,
 * deflate.c: 4x less CPU than zlib's level 1, which was half the node's
 * CPU in a clone with nothing prepared, for 1.12x its bytes). */
#define GUTS_NET_GIT_ZLEVEL GUTS_PACK_FAST
/* Prepared clone packs (git_prepare.c): a repository's full-clone packs
 * are built this long after its last change (at once when the change is
 * the end of a pull that left it in sync), by one thread that yields to
 * clients' packs, for repositories of at least this many objects (a smaller one is
 * written faster than a client starts index-pack). */
#define GUTS_NET_GIT_PREPARE_QUIET_MS 2000
#define GUTS_NET_GIT_PREPARE_MIN_OBJECTS 500
/* --git-packs-max, MiB: at most 1 TiB. */
#define GUTS_NET_GIT_PACKS_FLAG_MAX (1ull << 20)

typedef struct guts_net_git_stats {
    uint64_t info_refs, ls_refs, fetches, packs; /* requests served */
    uint64_t refused;    /* push, protocol v0/v1, busy, --http-repos, unknown */
    uint64_t bad;        /* malformed requests */
    uint64_t pack_bytes; /* bytes of packs written */
    uint64_t prepared;   /* clone packs the prepare thread wrote */
    uint64_t followed;   /* clones that streamed a pack another thread was writing */
    uint64_t preparing;  /* repositories pending or being prepared */
    uint64_t prepare_failed; /* clone packs the prepare thread could not write */
} guts_net_git_stats;

/** Serve git clients on the node's --http listener (after guts_net_web_routes,
 * whose exact "/" stays the page). Errors: GUTS_ENOMEM, those of
 * guts_net_http_route_add. */
int guts_net_git_open(guts_net_node *n);
/** Before guts_net_http_close: end every pack stream (none may stay
 * suspended). */
void guts_net_git_stop(guts_net_node *n);
/** After guts_net_http_close: wait for the pack threads and free. */
void guts_net_git_close(guts_net_node *n);
/** Repository key changed (refs or objects; it now has `objects`), or a
 * pull of it ended: its clone packs are prepared once it has been quiet
 * for GUTS_NET_GIT_PREPARE_QUIET_MS, or at once when `settled` (a pull
 * ended with the repository in sync: nothing more is on its way)
 * (git_prepare.c). Nothing when --http is off. */
void guts_net_git_changed(guts_net_node *n, const char *key, uint64_t objects, int settled);
/** Counters, for /metrics and status (zero when off). */
guts_net_git_stats guts_net_git_stats_of(const guts_net_node *n);

/* ---- keys.c: the key ring of a running node ---- */

/** Remember that a datagram from `from` opened with key id kid. */
void guts_net_keys_note(guts_net_node *n, const guts_addr *from, const uint8_t *kid);
/** The key id a's datagrams were last sealed with, or NULL if unknown. */
const uint8_t *guts_net_keys_of(const guts_net_node *n, const guts_addr *a);
/** status.json's ring: `, "keys": [...], "key_file": "..."` (keyed nodes). */
void guts_net_keys_status(const guts_net_node *n, FILE *f);
/** Reread the key file on SIGHUP (start), or stop doing so. */
void guts_net_keys_start(guts_net_node *n);
void guts_net_keys_stop(guts_net_node *n);

/* ---- hooks.c ---- */

/** One event as a JSON object (no newline) in out (n bytes); its length.
 * The record hooks get on stdin. */
size_t guts_net_event_json(const guts_core_event *e, const char *node_hex, uint64_t wall_ms,
                           char *out, size_t n);
/** Queue e for every hook and start the idle ones. */
void guts_net_hooks_event(guts_net_node *n, const guts_core_event *e);
/** Set up the --on-event hooks (after the log is open). Errors: GUTS_ENOMEM,
 * GUTS_EINVAL (an empty command; logged). */
int guts_net_hooks_start(guts_net_node *n);
/** Kill running hooks (their process groups) and free them. */
void guts_net_hooks_stop(guts_net_node *n);
/** status.json's `,\n  "hooks": [...]`. */
void guts_net_hooks_status(const guts_net_node *n, FILE *f);

/** The store adapter's hook (guts_core_lmdbstore_on_damaged; arg: the
 * node): log the damage once, move the repository to
 * DATA/damaged/OWNER/NAME.<UTC time> and remember it for status.json.
 * Returns 0 once it is set aside. */
int guts_net_damaged_hook(const char *key, const char *why, void *arg);

/** Open the data dir (created if absent) and take its lock, open the
 * sockets and the core, and start the watchers. Every failure is logged,
 * one line with its cause, before it is returned.
 * seal: the cluster key's context (the node owns it from here on, even on
 * failure; guts_net_node_close frees it), or NULL to run open.
 * Errors: GUTS_EAGAIN (another guts-node holds the data dir), GUTS_EIO
 * (sockets, data dir), GUTS_ESTORE, GUTS_ENOMEM. */
int guts_net_node_open(guts_net_node *n, struct ev_loop *loop, const guts_net_opts *opts,
                       guts_seal *seal);
/** Run until SIGINT/SIGTERM; returns the exit code (0 after a clean leave). */
int guts_net_node_run(guts_net_node *n);
/** Close everything opened by guts_net_node_open. */
void guts_net_node_close(guts_net_node *n);

/** Write the node's status document (DATA/node/status.json, /api/status:
 * one generator) to f. */
void guts_net_node_status(guts_net_node *n, FILE *f);
/** Write the node's metrics in Prometheus' text format to f (web.c). */
void guts_net_node_metrics(guts_net_node *n, FILE *f);
/** The status page served at / (page.c): one self-contained HTML document. */
extern const char guts_net_page_html[];
/** Add the node's routes (/, /api/status, /metrics, /events) to n->http
 * (web.c). Errors: as guts_net_http_route_add. */
int guts_net_web_routes(guts_net_node *n);
/** Wake every /events stream: it sends what is new, or a ping when due.
 * closing: end them instead (before guts_net_http_close, which must not
 * find a connection suspended). */
void guts_net_web_wake(guts_net_node *n, int closing);

#endif
