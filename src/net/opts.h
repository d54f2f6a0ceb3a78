/* opts.h - guts-node's command line (opts.c) and its socket addresses:
 * defaults and bounds of every option, guts_net_opts, parsing and
 * comparing addresses, the monotonic clock. Included by net.h.
 */
#ifndef GUTS_NET_OPTS_H
#define GUTS_NET_OPTS_H

#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guts/guts.h"

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
    uint64_t git_packs_max; /* --git-packs-max in bytes; 0: GUTS_PACKCACHE_BUDGET */
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

#endif
