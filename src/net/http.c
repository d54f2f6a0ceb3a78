/* http.c - the --http listener: GNU libmicrohttpd on the node's own loop.
 *
 * libmicrohttpd parses HTTP; this file only drives it and routes. It runs
 * in its external-loop epoll mode: no thread of its own, every socket of
 * it behind one epoll descriptor that an ev_io watches, and its next
 * timeout (connection timeouts, data it still holds) an ev_timer re-armed
 * after each run. Its sockets are non-blocking, so a slow client costs a
 * buffer, never a wait: replication goes on between its turns.
 *
 * Bounds (net.h GUTS_NET_HTTP_*): connections at once, per source address
 * at once, new connections per source per second (the daemon's token
 * bucket table, in libmicrohttpd's accept policy callback), memory per
 * connection (a longer request line or header block is refused by the
 * library with 431/413), and an idle timeout.
 *
 * A loopback listener answers only requests whose Host is a loopback name
 * or address: a web page elsewhere that rebinds its DNS name to 127.0.0.1
 * then gets 421, not the node's status. Bound to another address (the
 * user's explicit choice) any Host is taken.
 *
 * Routes are a small table: the node adds its pages (web.c); another
 * surface (git smart HTTP) adds its prefix the same way. A streamed answer
 * (/events) suspends its connection while it has nothing to send; resuming
 * it is followed by guts_net_http_kick, since in external mode only a run
 * picks a resumed connection up.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "net.h"

static void http_log(void *cls, const char *fmt, va_list ap)
{
    guts_net_http *h = cls;
    vsnprintf(h->why, sizeof h->why, fmt, ap);
    size_t n = strlen(h->why);
    while (n && (h->why[n - 1] == '\n' || h->why[n - 1] == '\r'))
        h->why[--n] = '\0';
    guts_net_logf(h->log, GUTS_LOG_DEBUG, "http: %s", h->why);
}

static enum MHD_Result http_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    guts_net_http *h = cls;
    guts_net_sa from;
    memset(&from, 0, sizeof from);
    if (addr->sa_family == AF_INET6 ? len < (socklen_t)sizeof from.in6
                                    : addr->sa_family != AF_INET || len < (socklen_t)sizeof from.in)
        return MHD_NO;
    memcpy(&from, addr, addr->sa_family == AF_INET6 ? sizeof from.in6 : sizeof from.in);
    guts_net_sa_unmap(&from); /* ::ffff:a.b.c.d counts as a.b.c.d */
    if (guts_net_rate_allow(&h->rate, guts_net_sa_key(&from), guts_net_now_ms())) return MHD_YES;
    h->stats.rate_limited++;
    return MHD_NO;
}

/* Host "localhost", "127.x.y.z" or "[::1]", with or without a port. */
static int host_is_loopback(const char *host)
{
    if (!host) return 0;
    char name[64];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof name) return 0;
    memcpy(name, host, n + 1);
    if (name[0] == '[') return strncmp(name, "[::1]", 5) == 0 && (name[5] == 0 || name[5] == ':');
    char *colon = strchr(name, ':');
    if (colon) *colon = '\0';
    if (strcasecmp(name, "localhost") == 0) return 1;
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int guts_net_http_reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                        const void *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    /* the page's own inline style and script, and fetches to this node */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; "
                            "script-src 'unsafe-inline'; connect-src 'self'; img-src data:");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static int reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return guts_net_http_reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result http_request(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **req_ctx)
{
    guts_net_http *h = cls;
    (void)version;
    /* The first call of a request (headers in, *req_ctx still NULL) is
     * counted and checked; the route decides the rest. */
    if (!*req_ctx) {
        h->stats.requests++;
        if (h->loopback &&
            !host_is_loopback(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"))) {
            h->stats.bad_host++;
            return (enum MHD_Result)reply_text(
                conn, 421,
                "this node serves only requests for a loopback host (127.0.0.1, localhost)\n");
        }
    }
    for (size_t i = 0; i < h->nroutes; i++) {
        const guts_net_http_route *r = &h->routes[i];
        if (r->prefix ? strncmp(url, r->path, strlen(r->path)) == 0 : strcmp(url, r->path) == 0)
            return (enum MHD_Result)r->fn(r->arg, conn, url, method, upload_data, upload_data_size,
                                          req_ctx);
    }
    h->stats.not_found++;
    return (enum MHD_Result)reply_text(conn, 404, "not found\n");
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_ctx,
                           enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    guts_net_http_ctx *c = *req_ctx;
    *req_ctx = NULL;
    if (c && c->free) c->free(c);
}

/* Let libmicrohttpd work, then arm the timer for its next deadline. */
static void http_run(guts_net_http *h)
{
    MHD_run(h->d);
    ev_timer_stop(h->loop, &h->timer);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        ev_timer_set(&h->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
}

void guts_net_http_kick(guts_net_http *h)
{
    if (!h->d) return;
    ev_timer_stop(h->loop, &h->timer);
    ev_timer_set(&h->timer, 0., 0.);
    ev_timer_start(h->loop, &h->timer);
}

static void http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    http_run(container_of(w, guts_net_http, io));
}

static void http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    http_run(container_of(w, guts_net_http, timer));
}

int guts_net_http_open(guts_net_http *h, struct ev_loop *loop, const guts_net_sa *addr,
                       const guts_net_log *log, uint64_t seed)
{
    char as[GUTS_NET_ADDRSTRLEN];
    h->loop = loop;
    h->log = log;
    h->d = NULL;
    guts_net_rate_init(&h->rate, GUTS_NET_HTTP_RATE, 2 * GUTS_NET_HTTP_RATE, seed);
    guts_net_sa sin = *addr;
    unsigned v6 = sin.sa.sa_family == AF_INET6 ? MHD_USE_IPv6 : 0;
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | v6,
        ntohs(guts_net_sa_port(&sin)), http_accept, h, http_request, h,
        MHD_OPTION_SOCK_ADDR, &sin.sa, MHD_OPTION_EXTERNAL_LOGGER, http_log, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)GUTS_NET_HTTP_CONN_MAX,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)GUTS_NET_HTTP_PER_SOURCE,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)GUTS_NET_HTTP_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)GUTS_NET_HTTP_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, h, MHD_OPTION_END);
    if (!h->d) {
        guts_net_logf(log, GUTS_LOG_ERROR,
                      "--http %s: cannot serve there (%s): give another --http ADDR:PORT, or "
                      "--http off",
                      guts_net_addr_str(addr, as, sizeof as), h->why[0] ? h->why : "failed");
        return GUTS_EIO;
    }
    const union MHD_DaemonInfo *fdi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!fdi || fdi->epoll_fd < 0) {
        guts_net_logf(log, GUTS_LOG_ERROR, "--http: libmicrohttpd gave no epoll descriptor");
        MHD_stop_daemon(h->d);
        h->d = NULL;
        return GUTS_EIO;
    }
    h->local = sin;
    if (port && port->port) guts_net_sa_set_port(&h->local, htons(port->port));
    h->loopback = sin.sa.sa_family == AF_INET6 ? IN6_IS_ADDR_LOOPBACK(&sin.in6.sin6_addr)
                                               : (ntohl(sin.in.sin_addr.s_addr) >> 24) == 127;
    ev_io_init(&h->io, http_io_cb, fdi->epoll_fd, EV_READ);
    ev_io_start(loop, &h->io);
    ev_init(&h->timer, http_timer_cb);
    if (h->loopback)
        guts_net_logf(log, GUTS_LOG_INFO, "status page on http://%s/",
                      guts_net_addr_str(&h->local, as, sizeof as));
    else
        guts_net_logf(log, GUTS_LOG_WARN,
                      "status page on http://%s/ as asked (--http): not loopback, so anyone who "
                      "reaches that address sees this node's repositories and peers",
                      guts_net_addr_str(&h->local, as, sizeof as));
    return 0;
}

int guts_net_http_route_add(guts_net_http *h, const char *path, int prefix,
                            guts_net_http_handler *fn, void *arg)
{
    if (strlen(path) >= sizeof h->routes[0].path) return GUTS_EINVAL;
    if (h->nroutes == GUTS_NET_HTTP_ROUTES_MAX) return GUTS_EAGAIN;
    guts_net_http_route *r = &h->routes[h->nroutes++];
    snprintf(r->path, sizeof r->path, "%s", path);
    r->prefix = prefix;
    r->fn = fn;
    r->arg = arg;
    return 0;
}

size_t guts_net_http_conns(const guts_net_http *h)
{
    if (!h->d) return 0;
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

void guts_net_http_close(guts_net_http *h)
{
    if (!h->d) return;
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->timer);
    MHD_run(h->d); /* takes back connections resumed for closing */
    MHD_stop_daemon(h->d);
    h->d = NULL;
}
