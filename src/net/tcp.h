/* tcp.h - the node's streams (tcp.c): listener, connects, length-prefixed
 * frames, bounded buffers, timeouts. Included by net.h.
 */
#ifndef GUTS_NET_TCP_H
#define GUTS_NET_TCP_H

#include <ev.h>

#include "guts/seal.h"
#include "log.h"
#include "opts.h"
#include "ratelimit.h"

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

#endif
