/* http.h - the --http listener (http.c): libmicrohttpd driven from the
 * loop, bounded, with a table of routes. Included by net.h.
 */
#ifndef GUTS_NET_HTTP_H
#define GUTS_NET_HTTP_H

#include <ev.h>

#include "log.h"
#include "opts.h"
#include "ratelimit.h"

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

#endif
