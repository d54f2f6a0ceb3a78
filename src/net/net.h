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
#include "guts/store.h"
#include "guts/wire.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- Options ------------------------------------------------------------- */

/* Default group: administratively scoped (RFC 2365, 239.255.0.0/16 is the
 * "IPv4 Local Scope"), so routers never forward it; 71 is ASCII 'G'. */
#define GUTS_NET_GROUP_DEFAULT "239.255.71.71"
#define GUTS_NET_GROUP_PORT_DEFAULT 7171
/* The IPv6 group beside it: ff12:: is a transient group of link-local
 * scope (RFC 4291), so it never leaves the link; 7171 as above. */
#define GUTS_NET_GROUP6_DEFAULT "ff12::7171"
/* Announce interval when not given: the core adapts it to the group size;
 * this is the base for a small group (memberlist probes every 1 s). */
#define GUTS_NET_INTERVAL_DEFAULT_MS 1000
/* Shorter intervals only make sense in tests; below 10 ms a node would
 * spend its time announcing. Above an hour peers would expire anyway. */
#define GUTS_NET_INTERVAL_MIN_MS 10
#define GUTS_NET_INTERVAL_MAX_MS 3600000
/* --peer may repeat; a LAN without multicast rarely has more static peers
 * than this, and each costs one datagram per interval. */
#define GUTS_NET_PEERS_MAX 64
/* --repos patterns: an allowlist is a handful of owners or projects, not a
 * database; 64 keeps guts_net_opts a fixed size like --peer. */
#define GUTS_NET_REPOS_MAX 64
/* A pattern may escape every character of the longest key. */
#define GUTS_NET_REPO_PATTERN_MAX (2 * GUTS_KEY_MAX)

/* --on-event hooks: a handful of commands; a command line fits a path
 * and a few arguments. */
#define GUTS_NET_HOOKS_MAX 8
#define GUTS_NET_HOOK_CMD_MAX 1024

/* --iface may repeat; interfaces joined at once (each one membership per
 * family; Linux allows 20 per socket by default, igmp_max_memberships). */
#define GUTS_NET_IFACES_MAX 16

/* An IPv4 or IPv6 socket address; sa.sa_family tells which. */
typedef union guts_net_sa {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} guts_net_sa;

/* "[ffff:...:ffff%ifname]:65535" fits with room to spare. */
#define GUTS_NET_ADDRSTRLEN 80

typedef struct guts_net_opts {
    char data[PATH_MAX]; /* data dir */
    /* --iface: join only on these; none: every interface that is up and
     * multicast-capable (udp.c) */
    char ifaces[GUTS_NET_IFACES_MAX][IF_NAMESIZE];
    size_t nifaces;
    guts_net_sa group4, group6; /* multicast groups and ports, one per family */
    /* TCP listen (and unicast UDP) address; a wildcard of either family
     * (the default) listens on both */
    guts_net_sa listen;
    unsigned interval_ms;
    guts_net_sa peers[GUTS_NET_PEERS_MAX];
    size_t npeers;
    int log_level;           /* GUTS_LOG_* of core.h */
    char key_file[PATH_MAX]; /* --key-file; "": run open */
    /* --repos: fnmatch(3) patterns over OWNER/NAME; a repository a peer
     * announced is taken only if one matches. None: take every one. */
    char repos[GUTS_NET_REPOS_MAX][GUTS_NET_REPO_PATTERN_MAX + 1];
    size_t nrepos;
    unsigned max_dgram_rate; /* --max-dgram-rate: per source per second; 0: off */
    unsigned max_conn_rate;  /* --max-conn-rate: per source per second; 0: off */
    unsigned max_frame;      /* --max-frame: bytes of one frame's envelope */
    uint64_t max_object;     /* --max-object: bytes of one object's content */
    unsigned max_sessions;   /* --max-sessions: pulls at once (and as many serves) */
    unsigned max_remote_repos; /* --max-remote-repos: remote-only keys tracked */
    unsigned max_peer_repos;   /* --max-peer-repos: of those, per announcing peer */
    unsigned max_learned;      /* --max-learned-peers: addresses kept from peer exchange */
    char hooks[GUTS_NET_HOOKS_MAX][GUTS_NET_HOOK_CMD_MAX]; /* --on-event CMD */
    size_t nhooks;
    int http_on;               /* --http: 0 after `--http off` */
    guts_net_sa http;          /* --http ADDR:PORT (port 0: ephemeral) */
    /* --http-repos: fnmatch(3) patterns over OWNER/NAME; git clients get
     * only matching repositories. None: every one the node holds. */
    char http_repos[GUTS_NET_REPOS_MAX][GUTS_NET_REPO_PATTERN_MAX + 1];
    size_t nhttp_repos;
} guts_net_opts;

/** Parse guts-node's command line into *out. The data dir comes from --data,
 * else env_data ($GUTS_DATA), else home ($HOME)/.local/share/guts.
 * @param err a one-line message on failure (errlen bytes)
 * @return 0; 1 when --help was asked (usage is the caller's to print);
 *         GUTS_EINVAL on a bad argument (message in err). */
int guts_net_opts_parse(int argc, char **argv, const char *env_data, const char *home,
                        guts_net_opts *out, char *err, size_t errlen);

/** Whether opts' --repos patterns take repository key (1) or not (0); with
 * no pattern every key is taken. Fits guts_core_config.repo_wanted. */
int guts_net_repo_wanted(void *opts, const char *key);

/** Whether --http-repos lets git clients have repository key (1) or not (0). */
int guts_net_http_repo_served(const guts_net_opts *o, const char *key);

/** The usage text. */
const char *guts_net_usage(void);

/** Parse "A.B.C.D:PORT", "[IPV6]:PORT", "[IPV6%ZONE]:PORT" (ZONE an
 * interface name or index, for link-local addresses) or "HOST:PORT"
 * (resolved with getaddrinfo, the first address of either family).
 * port_zero_ok allows port 0 (ephemeral).
 * @param[out] why NULL, or with GUTS_ENOTFOUND the resolver's text (static)
 * Errors: GUTS_EINVAL (not of these forms, or an unknown zone),
 * GUTS_ENOTFOUND (HOST did not resolve). */
int guts_net_parse_addr(const char *s, int port_zero_ok, guts_net_sa *out, const char **why);

/** Format addr as "A.B.C.D:PORT" or "[IPV6%ZONE]:PORT" into buf (room:
 * GUTS_NET_ADDRSTRLEN). */
const char *guts_net_addr_str(const guts_net_sa *addr, char *buf, size_t len);
/** The length of addr for bind, connect, sendto. */
socklen_t guts_net_sa_len(const guts_net_sa *addr);
/** 1 when a and b are the same family, address, port (and IPv6 zone). */
int guts_net_sa_eq(const guts_net_sa *a, const guts_net_sa *b);
/** A source's key for the rate limit: the IPv4 address, or a hash of the
 * IPv6 address and zone (never equal to an IPv4 key). */
uint64_t guts_net_sa_key(const guts_net_sa *addr);
/** addr's port, network order. */
uint16_t guts_net_sa_port(const guts_net_sa *addr);
/** Set addr's port (network order). */
void guts_net_sa_set_port(guts_net_sa *addr, uint16_t port);
/** 1 for the wildcard address (0.0.0.0 or ::) of either family. */
int guts_net_sa_any(const guts_net_sa *addr);
/** An IPv4-mapped IPv6 address (::ffff:A.B.C.D, what a dual-stack socket
 * reports for IPv4 peers) becomes the IPv4 address it maps; anything else
 * is left as is. */
void guts_net_sa_unmap(guts_net_sa *addr);

/** CLOCK_MONOTONIC in ms: every duration in the daemon (timeouts, rate
 * limits, the core's `now`) is measured with it, never with the wall
 * clock, which an administrator or NTP may step either way. */
uint64_t guts_net_now_ms(void);

/* ---- Logging ------------------------------------------------------------- */

/* Progress lines drawn under the log on a terminal (daemon_status.c draws them,
 * log.c erases them before a log line; the next redraw brings them back). */
typedef struct guts_net_tty {
    int on;       /* stderr is a terminal */
    size_t lines; /* progress lines on screen now; the cursor ends the last */
    size_t pulls; /* pulls at the last redraw: a change redraws at once */
} guts_net_tty;

/* The last log lines at info and above, kept for the status page and
 * /api/status ("events"): enough to see what happened lately, a few KiB. */
#define GUTS_NET_RECENT_MAX 32
#define GUTS_NET_RECENT_TEXT 240

typedef struct guts_net_recent_line {
    uint64_t unix_ms;
    int level;
    char text[GUTS_NET_RECENT_TEXT]; /* the message, cut; no timestamp */
} guts_net_recent_line;

typedef struct guts_net_recent {
    guts_net_recent_line line[GUTS_NET_RECENT_MAX]; /* ring: line[total % MAX] is next */
    uint64_t total;                                 /* lines ever kept */
} guts_net_recent;

typedef struct guts_net_log {
    int level;         /* lines above this level are dropped */
    guts_net_tty *tty; /* NULL: never any progress lines */
    guts_net_recent *recent; /* NULL: none kept */
} guts_net_log;

/** Write one line "2026-01-01T00:00:00.000Z LEVEL message" to stderr when
 * level <= log->level, first erasing the progress lines if any are drawn. */
void guts_net_logf(const guts_net_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** "error", "warn", "info", "debug"; -1 if unknown. */
int guts_net_log_level_parse(const char *s);
/** Append to buf (room: cap bytes, len used) what erases tty's progress
 * lines and puts the cursor at the start of the first; tty->lines becomes
 * 0. Returns the new length (buf is cut at cap, never overrun). */
size_t guts_net_tty_erase(guts_net_tty *tty, char *buf, size_t len, size_t cap);

/* ---- Per-source rate limits ---------------------------------------------- */

/* Datagrams per source address: a node sends one announce per interval
 * (1 s by default, 10 ms at the fastest flag) plus immediate announces at
 * most every 150 ms, so 50/s leaves room for several nodes behind one
 * address (NAT, one host) and a burst of 100 for a restart's catch-up, while
 * a flood is cut to 50 decodes a second. */
#define GUTS_NET_DGRAM_RATE_DEFAULT 50
#define GUTS_NET_DGRAM_BURST_FACTOR 2
/* New TCP connections per source address: a peer opens at most
 * max_sessions (4) pulls at a time, each one connection; 10/s with a burst
 * of 20 covers several nodes behind one address reconnecting at once. */
#define GUTS_NET_CONN_RATE_DEFAULT 10
#define GUTS_NET_CONN_BURST_FACTOR 2
/* Fixed table: 256 sets x 4 ways = 1024 sources tracked, ~32 KiB; a LAN
 * has far fewer live sources, and a forged flood only evicts. */
#define GUTS_NET_RATE_SETS 256
#define GUTS_NET_RATE_WAYS 4
/* --max-dgram-rate / --max-conn-rate: above this a limit means nothing. */
#define GUTS_NET_RATE_FLAG_MAX 1000000
/* --max-frame: a frame must hold a 64 KiB chunk and its envelope (the core
 * raises anything smaller to that); above 64 MiB one connection's buffers
 * (read buffer plus a write queue of two frames) pass 200 MiB, and the
 * GUTS_NET_CONN_MAX connections could pin gigabytes. */
#define GUTS_NET_FRAME_FLAG_MIN (64u << 10)
#define GUTS_NET_FRAME_FLAG_MAX (64u << 20)
/* --max-object: 1 KiB .. GUTS_OBJ_MAX_DEFAULT (1 GiB), the largest size
 * the wire format and the store accept at all. */
#define GUTS_NET_OBJECT_FLAG_MIN 1024
/* --max-sessions: each session may pin a frame's buffers and, pulling, an
 * object being assembled; GUTS_NET_CONN_MAX connections must hold the
 * pulls and serves (2 x 16) with room for handshakes in progress. */
#define GUTS_NET_SESSIONS_FLAG_MAX 16
/* --max-remote-repos / --max-peer-repos: the core tracks at most 65,536
 * repositories in all. */
#define GUTS_NET_REPOS_FLAG_MAX 65536

typedef struct guts_net_rate_bucket {
    uint64_t key;     /* guts_net_sa_key of the source */
    uint32_t used;    /* 0: free slot */
    uint64_t tokens;  /* thousandths of a token */
    uint64_t last_ms; /* last refill (and use: the LRU order) */
} guts_net_rate_bucket;

typedef struct guts_net_rate {
    uint32_t rate;    /* tokens per second; 0: no limit */
    uint32_t burst;   /* bucket size */
    uint64_t seed;    /* set hash key */
    uint64_t limited; /* events refused */
    guts_net_rate_bucket b[GUTS_NET_RATE_SETS][GUTS_NET_RATE_WAYS];
} guts_net_rate;

/** Reset t to rate tokens/s per source (0: off) and burst tokens (at least 1);
 * seed keys the set hash (random per process). */
void guts_net_rate_init(guts_net_rate *t, uint32_t rate, uint32_t burst, uint64_t seed);
/** Take a token for the source of key (guts_net_sa_key) at now_ms: 1 if
 * allowed, 0 if the source is over its rate (counted in t->limited). */
int guts_net_rate_allow(guts_net_rate *t, uint64_t key, uint64_t now_ms);

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

/* ---- UDP ------------------------------------------------------------------ */

/* Counters for status and the benchmark. */
typedef struct guts_net_udp_stats {
    uint64_t rx, tx, rx_bytes, tx_bytes;
    uint64_t rx_oversize; /* datagrams over GUTS_DGRAM_DROP, dropped unread */
    uint64_t tx_dropped;  /* EAGAIN or other send failure: the next
                           * periodic announce replaces it */
} guts_net_udp_stats;

typedef struct guts_net_udp guts_net_udp;
typedef void guts_net_udp_cb(guts_net_udp *u, const uint8_t *buf, size_t len,
                             const guts_net_sa *from);

/* The sockets, by role and family. */
enum { GUTS_UDP_UCAST4, GUTS_UDP_UCAST6, GUTS_UDP_MCAST4, GUTS_UDP_MCAST6, GUTS_UDP_NFD };

/* Interfaces are looked at again this often (in status ticks of
 * GUTS_NET_STATUS_S): a laptop joining Wi-Fi or a VPN coming up is joined
 * within seconds, and a scan is one getifaddrs. */
#define GUTS_NET_IFSCAN_TICKS 2

/* An interface the group is joined on. */
typedef struct guts_net_iface {
    char name[IF_NAMESIZE];
    unsigned index;
    struct in_addr addr4; /* its first IPv4 address: the source of group datagrams */
    int joined;           /* bit 0: the IPv4 group, bit 1: the IPv6 group */
} guts_net_iface;

/* Sockets: the group sockets (one per family, bound to the group port and
 * shared by every node on the host through SO_REUSEPORT) only receive; the
 * unicast ones are bound to this node's own port (the TCP listener's
 * number) and send everything, group datagrams included (once per joined
 * interface), so a datagram's source address is unique per node and
 * unicast replies to it reach this node and no other. */
struct guts_net_udp {
    ev_io io[GUTS_UDP_NFD];
    int fd[GUTS_UDP_NFD]; /* -1: not open */
    int via_unicast;      /* the datagram being handed to on_dgram came to a unicast socket */
    struct ev_loop *loop;
    guts_net_sa group4, group6;
    const char (*only)[IF_NAMESIZE]; /* --iface names (not owned); nonly 0: every interface */
    size_t nonly;
    guts_net_iface ifs[GUTS_NET_IFACES_MAX]; /* joined on at least one family */
    size_t nifs;
    char mcast_off[160]; /* why no group is joined anywhere ("" while one is) */
    guts_net_udp_cb *on_dgram;
    const guts_net_log *log;
    guts_net_udp_stats stats;
    uint8_t buf[GUTS_DGRAM_DROP + 1]; /* one more to detect oversize */
};

/** Open the unicast sockets on ucast_addr (port set; a wildcard of either
 * family opens both families, IPv6 only if the host has it, with a warning
 * if not) and the group sockets of the families open, then join the groups
 * on the interfaces (guts_net_udp_scan). only[0..nonly) narrows the
 * interfaces (--iface). Groups that cannot be joined anywhere are no
 * error: u->mcast_off names the cause and the node works by unicast.
 * Errors: GUTS_EIO (a unicast socket asked for failed; logged with errno). */
int guts_net_udp_open(guts_net_udp *u, struct ev_loop *loop, const guts_net_sa *group4,
                      const guts_net_sa *group6, const char (*only)[IF_NAMESIZE], size_t nonly,
                      const guts_net_sa *ucast_addr, guts_net_udp_cb *cb, const guts_net_log *log);
/** Look at the interfaces again: join the groups on every one that is up
 * and multicast-capable (with an address of the family; loopback only when
 * no other is, or when named by --iface) and leave those gone or down. Each
 * change is logged at info. Returns the number of interfaces joined now. */
size_t guts_net_udp_scan(guts_net_udp *u);
/** Send one datagram without blocking; dropped (and counted) on EAGAIN.
 * to NULL: the groups, out of every joined interface. Returns 0 or GUTS_EIO. */
int guts_net_udp_send(guts_net_udp *u, const guts_net_sa *to, const void *buf, size_t len);
/** Names of the joined interfaces ("v0, wlan0"; "" when none) into buf. */
const char *guts_net_udp_ifaces(const guts_net_udp *u, char *buf, size_t len);
/** Stop watchers, leave the groups, close sockets. */
void guts_net_udp_close(guts_net_udp *u, struct ev_loop *loop);

/* ---- TCP ------------------------------------------------------------------ */

/* A connection's write queue above this stops the core from producing more
 * for it (and stops reading the peer's requests); it resumes below the low
 * mark. 1 MiB keeps a gigabit link busy for ~8 ms per wakeup; the queue can
 * exceed it by at most the frames the core emits in one step. */
#define GUTS_NET_WQ_HIGH (1u << 20)
#define GUTS_NET_WQ_LOW (256u << 10)
/* Hard bound on a write queue: a core that ignores backpressure gets its
 * connection closed instead of growing memory. Two frames over the high mark. */
#define GUTS_NET_WQ_HARD(frame_max) (GUTS_NET_WQ_HIGH + 2 * ((frame_max) + GUTS_FRAME_HDR))
/* Read buffers above this are freed after each frame, so an idle connection
 * that once received a 4 MiB frame doesn't pin it. */
#define GUTS_NET_RBUF_KEEP (64u << 10)
/* Concurrent connections (both directions): each may pin a frame's worth of
 * buffers; 64 * (4 MiB worst case) is the bound a LAN node accepts. */
#define GUTS_NET_CONN_MAX 64
/* One source address holds at most half the table: nodes behind one
 * address (a NAT, several nodes on one host) each pull at most
 * max_sessions streams, and with the rest of the table no single source
 * can lock the others out. */
#define GUTS_NET_CONN_PER_SOURCE (GUTS_NET_CONN_MAX / 2)
/* An accepted connection must deliver its first valid frame (keyed: the
 * seal hello and a frame that opens with the cluster key) within this time;
 * a peer on a LAN does it in milliseconds. Until then it holds no slot:
 * when the table is full the oldest such connection makes room, and a
 * silent one is closed when the time is up (counted in status.json). */
#define GUTS_NET_HANDSHAKE_TIMEOUT_S 2.0
/* A connect that neither succeeds nor fails in this time is given up. */
#define GUTS_NET_CONNECT_TIMEOUT_S 5.0
/* A stream with nothing received or sent for this long is dead: the core
 * keeps streams busy during a sync and closes them when done. */
#define GUTS_NET_IDLE_TIMEOUT_S 60.0

typedef struct guts_net_tcp guts_net_tcp;
typedef struct guts_net_conn guts_net_conn;

enum { GUTS_CONN_CONNECTING = 1, GUTS_CONN_OPEN = 2 };

struct guts_net_conn {
    ev_io rio;
    ev_io wio;
    ev_timer timer; /* connect timeout, then idle timeout */
    guts_net_tcp *tcp;
    guts_net_conn *next; /* in tcp->conns */
    int fd;
    int state;
    int outgoing;
    int reading;       /* rio active */
    int want_writable; /* frames were queued: tell the owner when drained */
    int closed;        /* torn down; freed when the last callback returns */
    int in_cb;         /* callbacks on the stack that still use it */
    int owner_closed;  /* the owner asked: don't report the close */
    int proven;        /* outgoing, or a first valid frame came in time */
    uint32_t id;       /* the stream id the core knows */
    guts_net_sa addr;
    uint64_t last_active; /* monotonic ms (guts_net_now_ms) */
    /* read: header, then exactly one frame */
    uint8_t hdr[GUTS_FRAME_HDR];
    size_t hdr_have;
    uint8_t *rbuf;
    size_t rcap, rlen, rhave;
    /* write queue: bytes [whead, wlen) of wbuf are pending */
    uint8_t *wbuf;
    size_t wcap, whead, wlen;
    int close_after_flush;
    uint64_t rx_bytes, tx_bytes;
    /* keyed node: this connection's keys; the core hears of the stream
     * only once the peer's hello checked out (seal.state READY) */
    guts_seal_stream seal;
};

typedef struct guts_net_tcp_stats {
    uint64_t accepted, connected, refused, closed, timeouts, rx_bytes, tx_bytes;
    /* accepted connections that proved nothing: refused over the source's
     * cap, closed silent at the handshake deadline, closed to make room */
    uint64_t refused_source, handshake_timeouts, evicted;
} guts_net_tcp_stats;

/* Callbacks into the daemon. Every callback may call back into tcp (send,
 * close): the connection stays valid until on_closed returns. */
typedef struct guts_net_tcp_cbs {
    void (*on_open)(guts_net_tcp *t, guts_net_conn *c); /* accepted or connected */
    /* buf is the frame's body in the read buffer: the owner may change it
     * in place (the seal opens frames there) until it returns. */
    void (*on_frame)(guts_net_tcp *t, guts_net_conn *c, uint8_t *buf, size_t len);
    void (*on_writable)(guts_net_tcp *t, guts_net_conn *c);        /* drained below low mark */
    void (*on_closed)(guts_net_tcp *t, guts_net_conn *c, int err); /* before free */
} guts_net_tcp_cbs;

struct guts_net_tcp {
    ev_io lio;
    struct ev_loop *loop;
    int lfd;
    guts_net_sa local; /* bound listen address, port resolved */
    size_t frame_max;
    guts_net_conn *conns;
    size_t nconns;
    size_t nunproven; /* accepted, no valid frame yet: they hold no slot */
    uint32_t next_id; /* ids for accepted streams (GUTS_CORE_STREAM_DRIVER set) */
    guts_net_tcp_cbs cbs;
    const guts_net_log *log;
    guts_net_tcp_stats stats;
    guts_net_rate *conn_rate; /* new connections per source (not owned); NULL: none */
};

/** Open a non-blocking listener on addr (port 0: ephemeral; tcp->local gets
 * the real one). A wildcard of either family listens on both: one IPv6
 * socket with IPV6_V6ONLY off (IPv4 peers show as IPv4 addresses), or
 * IPv4 alone where the host has no IPv6. Errors: GUTS_EIO. */
int guts_net_tcp_open(guts_net_tcp *t, struct ev_loop *loop, const guts_net_sa *addr,
                      size_t frame_max, const guts_net_tcp_cbs *cbs, const guts_net_log *log);
/** Start a non-blocking connect to addr for stream id. on_open or on_closed
 * follows. Errors: GUTS_EAGAIN (too many connections), GUTS_EIO, GUTS_ENOMEM. */
int guts_net_tcp_connect(guts_net_tcp *t, uint32_t id, const guts_net_sa *addr,
                         guts_net_conn **out);
/** Queue one frame, already framed (header included). Returns 0, or an
 * error after which the connection is closed (its on_closed callback has
 * run with that error; c may be freed unless inside a callback of it): a
 * frame that cannot be queued must never be dropped silently, or the peer
 * would wait for it until its idle timeout. Errors: GUTS_ETOOBIG (a
 * payload over frame_max, or the queue would pass its hard bound),
 * GUTS_ENOMEM (no memory for the queue), GUTS_EIO (already closed). */
int guts_net_tcp_send_raw(guts_net_tcp *t, guts_net_conn *c, const uint8_t *buf, size_t len);
/** 1 when c's write queue is above the high-water mark: don't produce more. */
int guts_net_tcp_congested(const guts_net_conn *c);
/** Close c: at once when now is set, else after its queue is flushed.
 * on_closed is called (with err 0) before the connection is freed. */
void guts_net_tcp_close(guts_net_tcp *t, guts_net_conn *c, int now);
/** The owner found c's first frame valid: from now on c holds a slot and
 * has the idle timeout instead of the handshake deadline. */
void guts_net_tcp_proven(guts_net_tcp *t, guts_net_conn *c);
/** Find a connection by stream id, NULL if none. */
guts_net_conn *guts_net_tcp_find(guts_net_tcp *t, uint32_t id);
/** Close every connection at once and the listener. */
void guts_net_tcp_shutdown(guts_net_tcp *t);

/* ---- HTTP ------------------------------------------------------------------ */

/* The status page's listener (--http). Loopback by default: the page shows
 * repository names and peers to whoever can connect. 7172 is the port after
 * the group's 7171. */
#define GUTS_NET_HTTP_DEFAULT "127.0.0.1:7172"
/* Connections at once, all sources: a few browsers and a scraper need a
 * handful; each pins at most GUTS_NET_HTTP_MEMORY. */
#define GUTS_NET_HTTP_CONN_MAX 64
/* Connections at once from one address: a browser opens about six. */
#define GUTS_NET_HTTP_PER_SOURCE 8
/* New connections per second from one address (burst 2x): a page refresh
 * reuses its connection; a scraper opens one per scrape. */
#define GUTS_NET_HTTP_RATE 20
/* Per connection: request line, headers and any body buffered, 16 KiB.
 * A longer request is answered 431 or 413 by libmicrohttpd and closed. */
#define GUTS_NET_HTTP_MEMORY (16u << 10)
/* A connection idle this long (no byte either way) is closed. */
#define GUTS_NET_HTTP_TIMEOUT_S 10
/* Routes: the node's four and room for other surfaces (git smart HTTP). */
#define GUTS_NET_HTTP_ROUTES_MAX 8
/* /events streams at once (each holds a connection for as long as its
 * client listens); more get 503. */
#define GUTS_NET_HTTP_EVENTS_MAX 8
/* An /events stream with nothing to say sends a comment this often, so a
 * client that went away is noticed and the idle timeout never hits. */
#define GUTS_NET_HTTP_PING_S 5

struct MHD_Connection;

/** A route's handler: libmicrohttpd's access handler (MHD_AccessHandlerCallback,
 * microhttpd.h) with the route's arg first, so a handler may take a body
 * or stream an answer; it returns MHD_YES (1) or MHD_NO (0). Simple GET
 * routes answer at once with guts_net_http_reply. Handlers run on the loop:
 * they must not block. */
typedef int guts_net_http_handler(void *arg, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *upload_data,
                                  size_t *upload_data_size, void **req_ctx);

/* A handler that keeps state across the calls of one request (a body in
 * pieces) sets *req_ctx to a struct that begins with this; http.c calls
 * free when the request ends, however it ends. */
typedef struct guts_net_http_ctx {
    void (*free)(struct guts_net_http_ctx *c);
} guts_net_http_ctx;

typedef struct guts_net_http_route {
    char path[64]; /* "/metrics"; with prefix set, "/repos/" matches below it */
    int prefix;
    guts_net_http_handler *fn;
    void *arg;
} guts_net_http_route;

typedef struct guts_net_http_stats {
    uint64_t requests;     /* handed to a route or answered 404/421 */
    uint64_t not_found;    /* no route */
    uint64_t bad_host;     /* loopback listener, Host header not loopback */
    uint64_t rate_limited; /* connections refused over GUTS_NET_HTTP_RATE */
} guts_net_http_stats;

typedef struct guts_net_http {
    ev_io io;       /* libmicrohttpd's epoll descriptor: readable, run it */
    ev_timer timer; /* its next timeout (MHD_get_timeout) */
    struct ev_loop *loop;
    struct MHD_Daemon *d; /* NULL: --http off */
    guts_net_sa local;        /* bound, port resolved */
    int loopback;             /* bound to 127.0.0.0/8: Host must be loopback too */
    guts_net_http_route routes[GUTS_NET_HTTP_ROUTES_MAX];
    size_t nroutes;
    const guts_net_log *log;
    char why[160]; /* libmicrohttpd's last error line */
    guts_net_http_stats stats;
    guts_net_rate rate; /* new connections per source */
} guts_net_http;

/** Start serving on addr from loop (libmicrohttpd in its external-loop
 * epoll mode: no thread; its one epoll descriptor is an ev_io, its timeout
 * an ev_timer). seed keys the rate table. A non-loopback addr is logged
 * as the user's choice. Errors: GUTS_EIO (cannot bind: logged with the cause). */
int guts_net_http_open(guts_net_http *h, struct ev_loop *loop, const guts_net_sa *addr,
                       const guts_net_log *log, uint64_t seed);
/** Add a route: requests whose path is path (or, with prefix, starts with
 * it) go to fn(arg, ...). The first route that matches wins.
 * Errors: GUTS_EINVAL (path too long), GUTS_EAGAIN (table full). */
int guts_net_http_route_add(guts_net_http *h, const char *path, int prefix,
                            guts_net_http_handler *fn, void *arg);
/** Queue a whole answer (copied) with its Content-Type; the headers every
 * answer carries (no caching, no sniffing, a strict content policy) are
 * added. Returns the MHD_Result of MHD_queue_response. */
int guts_net_http_reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                        const void *body, size_t len);
/** Connections open now. */
size_t guts_net_http_conns(const guts_net_http *h);
/** Run libmicrohttpd at the loop's next turn: after MHD_resume_connection
 * (external mode needs a run to pick the connection up again). */
void guts_net_http_kick(guts_net_http *h);
/** Stop serving and close every connection. */
void guts_net_http_close(guts_net_http *h);

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
    int seen; /* found by the current scan */
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
/* zlib level of pack entries: git's own server reuses compressed data from
 * its packs; ours deflates every object, and level 1 deflates several
 * times faster than git's default 6 for a pack a few percent larger. */
#define GUTS_NET_GIT_ZLEVEL 1

typedef struct guts_net_git_stats {
    uint64_t info_refs, ls_refs, fetches, packs; /* requests served */
    uint64_t refused;    /* push, protocol v0/v1, busy, --http-repos, unknown */
    uint64_t bad;        /* malformed requests */
    uint64_t pack_bytes; /* bytes of packs written */
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
