/* ratelimit.h - per-source token buckets (ratelimit.c). Included by net.h.
 */
#ifndef GUTS_NET_RATELIMIT_H
#define GUTS_NET_RATELIMIT_H

#include <stdint.h>

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

#endif
