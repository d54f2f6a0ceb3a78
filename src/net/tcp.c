/* tcp.c - streams: a listener, outgoing connects, length-prefixed frames.
 *
 * Every buffer is bounded. Reading: one buffer per connection holds at most
 * one frame plus what arrived after it (GUTS_NET_RBUF_KEEP, or one frame's
 * size when a frame is larger), and a header announcing more than frame_max
 * closes the connection before anything is allocated. Writing: frames are
 * appended to a per-connection queue; above GUTS_NET_WQ_HIGH the owner is
 * asked for nothing more (and the peer's requests are not read), and once
 * the queue falls below GUTS_NET_WQ_LOW the owner hears on_writable and may
 * produce the next batch. A queue that would pass GUTS_NET_WQ_HARD means the
 * producer ignored backpressure: the connection is closed.
 *
 * Timeouts: a connect has GUTS_NET_CONNECT_TIMEOUT_S; an accepted
 * connection has GUTS_NET_HANDSHAKE_TIMEOUT_S to deliver a frame its owner
 * finds valid (guts_net_tcp_proven); an open connection with no byte in
 * either direction for GUTS_NET_IDLE_TIMEOUT_S is dead. One ev_timer per
 * connection serves all three, re-armed lazily (libev's documented "last
 * activity" pattern) so traffic never touches the timer heap. Activity is
 * stamped with the monotonic clock (guts_net_now_ms): ev_now() follows the
 * wall clock, and a clock stepped back a day made every connection look
 * active for a day.
 *
 * Admission: a source address holds at most GUTS_NET_CONN_PER_SOURCE
 * connections and takes a token from its rate bucket per accept. A
 * connection that has not proven itself holds no slot of the table: when
 * the table is full, the oldest unproven one is closed to make room, so
 * silent connections (or a non-member that cannot pass the seal) can delay
 * nobody for longer than the handshake deadline.
 *
 * Callbacks may close the connection they are called for; a connection is
 * freed only once no callback frame on the stack still refers to it.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

/* Listen backlog: a LAN has few peers; connects beyond it are retried. */
#define TCP_BACKLOG 64
/* Bytes read per wakeup per connection, so one fast peer can't starve the
 * others or the timers; 1 MiB is a few ms of work. */
#define TCP_READ_BURST (1u << 20)
/* Base read buffer: holds many small frames (recon, want) per syscall. */
#define TCP_RBUF_BASE (64u << 10)

static void conn_free(guts_net_conn *c)
{
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

/* Leave a callback frame: free the connection if it was closed inside. */
static void cb_leave(guts_net_conn *c)
{
    if (--c->in_cb == 0 && c->closed) conn_free(c);
}

static void teardown(guts_net_tcp *t, guts_net_conn *c, int err)
{
    if (c->closed) return;
    c->closed = 1;
    ev_io_stop(t->loop, &c->rio);
    ev_io_stop(t->loop, &c->wio);
    ev_timer_stop(t->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    for (guts_net_conn **p = &t->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    t->nconns--;
    if (!c->proven) t->nunproven--;
    t->stats.closed++;
    c->in_cb++;
    if (t->cbs.on_closed) t->cbs.on_closed(t, c, err);
    cb_leave(c);
}

static size_t pending(const guts_net_conn *c)
{
    return c->wlen - c->whead;
}

int guts_net_tcp_congested(const guts_net_conn *c)
{
    return pending(c) > GUTS_NET_WQ_HIGH;
}

static void set_reading(guts_net_tcp *t, guts_net_conn *c, int on)
{
    if (c->closed || c->state != GUTS_CONN_OPEN || c->reading == on) return;
    c->reading = on;
    if (on)
        ev_io_start(t->loop, &c->rio);
    else
        ev_io_stop(t->loop, &c->rio);
}

/* Deliver every complete frame in rbuf; keep the incomplete tail. */
static int deliver(guts_net_tcp *t, guts_net_conn *c)
{
    size_t off = 0;
    while (!c->closed && c->rhave - off >= GUTS_FRAME_HDR) {
        uint32_t len;
        int rc = guts_wire_frame_len(c->rbuf + off, t->frame_max, &len);
        if (rc != 0) return rc;
        if (c->rhave - off - GUTS_FRAME_HDR < len) {
            size_t need = GUTS_FRAME_HDR + (size_t)len;
            if (need > c->rcap) { /* a big frame: room for exactly it */
                memmove(c->rbuf, c->rbuf + off, c->rhave - off);
                c->rhave -= off;
                off = 0;
                uint8_t *nb = realloc(c->rbuf, need);
                if (!nb) return GUTS_ENOMEM;
                c->rbuf = nb;
                c->rcap = need;
            }
            break;
        }
        off += GUTS_FRAME_HDR;
        if (t->cbs.on_frame) t->cbs.on_frame(t, c, c->rbuf + off, len);
        off += len;
        /* Stop at the high mark: the rest waits until the peer drains. */
        if (!c->closed && guts_net_tcp_congested(c)) break;
    }
    if (c->closed) return 0;
    memmove(c->rbuf, c->rbuf + off, c->rhave - off);
    c->rhave -= off;
    /* Shrink back once no frame larger than the base buffer is in progress. */
    size_t need = 0;
    if (c->rhave >= GUTS_FRAME_HDR)
        need = GUTS_FRAME_HDR + ((size_t)c->rbuf[0] << 24 | (size_t)c->rbuf[1] << 16 |
                                 (size_t)c->rbuf[2] << 8 | c->rbuf[3]);
    if (c->rcap > GUTS_NET_RBUF_KEEP && c->rhave <= TCP_RBUF_BASE && need <= TCP_RBUF_BASE) {
        uint8_t *nb = realloc(c->rbuf, TCP_RBUF_BASE);
        if (nb) {
            c->rbuf = nb;
            c->rcap = TCP_RBUF_BASE;
        }
    }
    return 0;
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_conn *c = container_of(w, guts_net_conn, rio);
    guts_net_tcp *t = c->tcp;
    c->in_cb++;
    size_t total = 0;
    while (!c->closed && total < TCP_READ_BURST && !guts_net_tcp_congested(c)) {
        if (c->rhave == c->rcap) { /* full of complete frames held back */
            int rc = deliver(t, c);
            if (rc) {
                teardown(t, c, rc);
                break;
            }
            if (c->rhave == c->rcap) break;
            continue;
        }
        ssize_t n = read(c->fd, c->rbuf + c->rhave, c->rcap - c->rhave);
        if (n == 0) {
            teardown(t, c, 0);
            break;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) teardown(t, c, GUTS_EIO);
            break;
        }
        c->rhave += (size_t)n;
        c->rx_bytes += (uint64_t)n;
        t->stats.rx_bytes += (uint64_t)n;
        total += (size_t)n;
        c->last_active = guts_net_now_ms();
        int rc = deliver(t, c);
        if (rc) {
            char a[GUTS_NET_ADDRSTRLEN];
            guts_net_logf(t->log, GUTS_LOG_WARN, "tcp: %s: bad frame: %s",
                          guts_net_addr_str(&c->addr, a, sizeof a), guts_strerror(rc));
            teardown(t, c, rc);
            break;
        }
    }
    if (!c->closed && guts_net_tcp_congested(c)) set_reading(t, c, 0);
    cb_leave(c);
}

static void flush(guts_net_tcp *t, guts_net_conn *c)
{
    while (pending(c) > 0) {
        ssize_t n = send(c->fd, c->wbuf + c->whead, pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) teardown(t, c, GUTS_EIO);
            return;
        }
        c->whead += (size_t)n;
        c->tx_bytes += (uint64_t)n;
        t->stats.tx_bytes += (uint64_t)n;
        c->last_active = guts_net_now_ms();
    }
}

static void open_established(guts_net_tcp *t, guts_net_conn *c)
{
    c->state = GUTS_CONN_OPEN;
    c->last_active = guts_net_now_ms();
    ev_timer_set(&c->timer, c->proven ? GUTS_NET_IDLE_TIMEOUT_S : GUTS_NET_HANDSHAKE_TIMEOUT_S, 0.);
    ev_timer_start(t->loop, &c->timer);
    set_reading(t, c, 1);
    if (t->cbs.on_open) t->cbs.on_open(t, c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_conn *c = container_of(w, guts_net_conn, wio);
    guts_net_tcp *t = c->tcp;
    c->in_cb++;
    if (c->state == GUTS_CONN_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
        if (err) {
            char a[GUTS_NET_ADDRSTRLEN];
            guts_net_logf(t->log, GUTS_LOG_INFO, "tcp: connect %s: %s",
                          guts_net_addr_str(&c->addr, a, sizeof a), strerror(err));
            t->stats.refused++;
            teardown(t, c, GUTS_EIO);
            cb_leave(c);
            return;
        }
        ev_timer_stop(t->loop, &c->timer);
        t->stats.connected++;
        open_established(t, c);
    }
    if (!c->closed) flush(t, c);
    if (!c->closed && pending(c) == 0) {
        ev_io_stop(t->loop, &c->wio);
        c->whead = c->wlen = 0;
        if (c->close_after_flush) teardown(t, c, 0);
    }
    if (!c->closed && pending(c) < GUTS_NET_WQ_LOW) {
        if (!c->close_after_flush) set_reading(t, c, 1);
        if (c->want_writable) {
            c->want_writable = 0;
            if (t->cbs.on_writable) t->cbs.on_writable(t, c);
        }
        /* Frames held back in rbuf while congested. */
        if (!c->closed && c->reading && c->rhave >= GUTS_FRAME_HDR) {
            int rc = deliver(t, c);
            if (rc) teardown(t, c, rc);
        }
    }
    cb_leave(c);
}

/* Close c for a deadline it missed, counted in *counter. */
static void time_out(guts_net_tcp *t, guts_net_conn *c, uint64_t *counter)
{
    (*counter)++;
    c->in_cb++;
    teardown(t, c, GUTS_EAGAIN);
    cb_leave(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    guts_net_conn *c = container_of(w, guts_net_conn, timer);
    guts_net_tcp *t = c->tcp;
    char a[GUTS_NET_ADDRSTRLEN];
    if (c->state == GUTS_CONN_CONNECTING) {
        guts_net_logf(t->log, GUTS_LOG_INFO, "tcp: connect %s: timed out",
                      guts_net_addr_str(&c->addr, a, sizeof a));
        time_out(t, c, &t->stats.timeouts);
        return;
    }
    if (!c->proven) {
        guts_net_logf(t->log, GUTS_LOG_DEBUG, "tcp: %s sent no valid frame in %.0f s: closing",
                      guts_net_addr_str(&c->addr, a, sizeof a), GUTS_NET_HANDSHAKE_TIMEOUT_S);
        time_out(t, c, &t->stats.handshake_timeouts);
        return;
    }
    /* Bytes waiting in our receive buffer mean we were the slow side (the
     * loop was busy, or reading is paused for backpressure): not idle. */
    int unread = 0;
    uint64_t now = guts_net_now_ms();
    if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) c->last_active = now;
    uint64_t end = c->last_active + (uint64_t)(GUTS_NET_IDLE_TIMEOUT_S * 1000.0);
    if (end > now) {
        ev_timer_set(&c->timer, (double)(end - now) / 1000.0, 0.);
        ev_timer_start(loop, &c->timer);
        return;
    }
    guts_net_logf(t->log, GUTS_LOG_INFO, "tcp: %s idle for %.0f s: closing",
                  guts_net_addr_str(&c->addr, a, sizeof a), GUTS_NET_IDLE_TIMEOUT_S);
    time_out(t, c, &t->stats.timeouts);
}

static guts_net_conn *conn_new(guts_net_tcp *t, int fd, const guts_net_sa *addr, uint32_t id,
                               int outgoing)
{
    guts_net_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->rbuf = malloc(TCP_RBUF_BASE);
    if (!c->rbuf) {
        free(c);
        return NULL;
    }
    c->rcap = TCP_RBUF_BASE;
    c->tcp = t;
    c->fd = fd;
    c->id = id;
    c->addr = *addr;
    c->outgoing = outgoing;
    c->proven = outgoing; /* we chose to connect: nothing to prove */
    if (!c->proven) t->nunproven++;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_init(&c->timer, timer_cb);
    c->next = t->conns;
    t->conns = c;
    t->nconns++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

/* Connections accepted from the source of key (guts_net_sa_key) and open now. */
static size_t source_conns(const guts_net_tcp *t, uint64_t key)
{
    size_t n = 0;
    for (const guts_net_conn *c = t->conns; c; c = c->next)
        n += !c->outgoing && guts_net_sa_key(&c->addr) == key;
    return n;
}

/* Make room in a full table: close the oldest accepted connection that has
 * not proven itself. 0 when every connection has (the new one is refused). */
static int evict_unproven(guts_net_tcp *t)
{
    guts_net_conn *old = NULL;
    if (t->nunproven == 0) return 0;
    for (guts_net_conn *c = t->conns; c; c = c->next) /* newest first */
        if (!c->proven) old = c;
    if (!old) return 0;
    time_out(t, old, &t->stats.evicted);
    return 1;
}

void guts_net_tcp_proven(guts_net_tcp *t, guts_net_conn *c)
{
    if (c->proven || c->closed) return;
    c->proven = 1;
    t->nunproven--;
    /* from the handshake deadline to the idle timeout, counted from now */
    c->last_active = guts_net_now_ms();
    ev_timer_stop(t->loop, &c->timer);
    ev_timer_set(&c->timer, GUTS_NET_IDLE_TIMEOUT_S, 0.);
    ev_timer_start(t->loop, &c->timer);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_tcp *t = container_of(w, guts_net_tcp, lio);
    for (;;) {
        guts_net_sa from;
        socklen_t fl = sizeof from;
        memset(&from, 0, sizeof from);
        int fd = accept4(t->lfd, &from.sa, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                guts_net_logf(t->log, GUTS_LOG_WARN, "tcp: accept: %s", strerror(errno));
            return;
        }
        if (from.sa.sa_family != AF_INET && from.sa.sa_family != AF_INET6) {
            t->stats.refused++;
            close(fd);
            continue;
        }
        guts_net_sa_unmap(&from); /* IPv4 peers of the dual-stack listener */
        uint64_t key = guts_net_sa_key(&from);
        if (source_conns(t, key) >= GUTS_NET_CONN_PER_SOURCE) {
            t->stats.refused_source++;
            close(fd);
            continue;
        }
        if (t->conn_rate &&
            !guts_net_rate_allow(t->conn_rate, key, guts_net_now_ms())) {
            close(fd); /* counted in conn_rate->limited */
            continue;
        }
        if (t->nconns >= GUTS_NET_CONN_MAX && !evict_unproven(t)) {
            t->stats.refused++;
            close(fd);
            continue;
        }
        /* Accepted streams have GUTS_CORE_STREAM_DRIVER set, so they never
         * collide with the ids the core picks for streams it opens. */
        uint32_t id;
        do {
            id = GUTS_CORE_STREAM_DRIVER | (t->next_id++ & ~GUTS_CORE_STREAM_DRIVER);
        } while (guts_net_tcp_find(t, id));
        guts_net_conn *c = conn_new(t, fd, &from, id, 0);
        if (!c) {
            close(fd);
            continue;
        }
        t->stats.accepted++;
        c->in_cb++;
        open_established(t, c);
        cb_leave(c);
    }
}

/* A listening socket on addr, or -1 with errno set. v6only: for IPv6, 1
 * takes IPv6 alone, 0 IPv4 as well. */
static int listen_on(const guts_net_sa *addr, int v6only)
{
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((addr->sa.sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) ||
        bind(fd, &addr->sa, guts_net_sa_len(addr)) < 0 || listen(fd, TCP_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int guts_net_tcp_open(guts_net_tcp *t, struct ev_loop *loop, const guts_net_sa *addr,
                      size_t frame_max, const guts_net_tcp_cbs *cbs, const guts_net_log *log)
{
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->frame_max = frame_max;
    t->cbs = *cbs;
    t->log = log;
    char a[GUTS_NET_ADDRSTRLEN];
    guts_net_sa at = *addr;
    if (guts_net_sa_any(addr)) {
        /* both families: [::] with IPv4 mapped in, or 0.0.0.0 without IPv6 */
        memset(&at, 0, sizeof at);
        at.in6.sin6_family = AF_INET6;
        at.in6.sin6_port = guts_net_sa_port(addr);
        t->lfd = listen_on(&at, 0);
        if (t->lfd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
            memset(&at, 0, sizeof at);
            at.in.sin_family = AF_INET;
            at.in.sin_port = guts_net_sa_port(addr);
            t->lfd = listen_on(&at, 0);
        }
    } else {
        t->lfd = listen_on(&at, 1);
    }
    socklen_t sl = sizeof t->local;
    if (t->lfd < 0 || getsockname(t->lfd, &t->local.sa, &sl) < 0) {
        guts_net_logf(log, GUTS_LOG_ERROR, "tcp: listen %s: %s",
                      guts_net_addr_str(&at, a, sizeof a), strerror(errno));
        if (t->lfd >= 0) close(t->lfd);
        t->lfd = -1;
        return GUTS_EIO;
    }
    ev_io_init(&t->lio, accept_cb, t->lfd, EV_READ);
    ev_io_start(loop, &t->lio);
    return 0;
}

int guts_net_tcp_connect(guts_net_tcp *t, uint32_t id, const guts_net_sa *addr,
                         guts_net_conn **out)
{
    if (t->nconns >= GUTS_NET_CONN_MAX && !evict_unproven(t)) return GUTS_EAGAIN;
    int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return GUTS_EIO;
    int rc = connect(fd, &addr->sa, guts_net_sa_len(addr));
    if (rc < 0 && errno != EINPROGRESS) {
        char a[GUTS_NET_ADDRSTRLEN];
        guts_net_logf(t->log, GUTS_LOG_INFO, "tcp: connect %s: %s",
                      guts_net_addr_str(addr, a, sizeof a), strerror(errno));
        close(fd);
        t->stats.refused++;
        return GUTS_EIO;
    }
    guts_net_conn *c = conn_new(t, fd, addr, id, 1);
    if (!c) {
        close(fd);
        return GUTS_ENOMEM;
    }
    /* Even an immediate success (loopback) is reported from the loop, so
     * on_open never runs inside the caller. */
    c->state = GUTS_CONN_CONNECTING;
    ev_timer_set(&c->timer, GUTS_NET_CONNECT_TIMEOUT_S, 0.);
    ev_timer_start(t->loop, &c->timer);
    ev_io_start(t->loop, &c->wio);
    if (out) *out = c;
    return 0;
}

static int queue(guts_net_tcp *t, guts_net_conn *c, const uint8_t *hdr, const uint8_t *buf,
                 size_t len)
{
    size_t hl = hdr ? GUTS_FRAME_HDR : 0;
    if (c->closed) return GUTS_EIO;
    if (pending(c) + hl + len > GUTS_NET_WQ_HARD(t->frame_max)) {
        char a[GUTS_NET_ADDRSTRLEN];
        guts_net_logf(t->log, GUTS_LOG_WARN, "tcp: %s: write queue over %zu bytes: closing",
                      guts_net_addr_str(&c->addr, a, sizeof a), GUTS_NET_WQ_HARD(t->frame_max));
        teardown(t, c, GUTS_ETOOBIG);
        return GUTS_ETOOBIG;
    }
    if (c->wlen + hl + len > c->wcap) {
        if (c->whead > 0) { /* compact first */
            memmove(c->wbuf, c->wbuf + c->whead, pending(c));
            c->wlen -= c->whead;
            c->whead = 0;
        }
        if (c->wlen + hl + len > c->wcap) {
            size_t cap = c->wcap ? c->wcap : TCP_RBUF_BASE;
            while (cap < c->wlen + hl + len)
                cap *= 2;
            uint8_t *nb = realloc(c->wbuf, cap);
            if (!nb) {
                /* A dropped frame would leave the peer waiting for it until
                 * its idle timeout: end the stream now, and say so. */
                char a[GUTS_NET_ADDRSTRLEN];
                guts_net_logf(t->log, GUTS_LOG_WARN,
                              "tcp: %s: no memory to queue a frame of %zu bytes: closing",
                              guts_net_addr_str(&c->addr, a, sizeof a), len);
                teardown(t, c, GUTS_ENOMEM);
                return GUTS_ENOMEM;
            }
            c->wbuf = nb;
            c->wcap = cap;
        }
    }
    if (hl) {
        memcpy(c->wbuf + c->wlen, hdr, hl);
        c->wlen += hl;
    }
    memcpy(c->wbuf + c->wlen, buf, len);
    c->wlen += len;
    c->want_writable = 1;
    if (c->state == GUTS_CONN_OPEN) ev_io_start(t->loop, &c->wio);
    return 0;
}

int guts_net_tcp_send_raw(guts_net_tcp *t, guts_net_conn *c, const uint8_t *buf, size_t len)
{
    if (len < GUTS_FRAME_HDR || len > t->frame_max + GUTS_FRAME_HDR) {
        teardown(t, c, GUTS_ETOOBIG);
        return GUTS_ETOOBIG;
    }
    return queue(t, c, NULL, buf, len);
}

void guts_net_tcp_close(guts_net_tcp *t, guts_net_conn *c, int now)
{
    if (c->closed) return;
    if (!now && c->state == GUTS_CONN_OPEN && pending(c) > 0) {
        c->close_after_flush = 1;
        set_reading(t, c, 0);
        return;
    }
    teardown(t, c, 0);
}

guts_net_conn *guts_net_tcp_find(guts_net_tcp *t, uint32_t id)
{
    for (guts_net_conn *c = t->conns; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

void guts_net_tcp_shutdown(guts_net_tcp *t)
{
    while (t->conns)
        teardown(t, t->conns, 0);
    if (t->lfd >= 0) {
        ev_io_stop(t->loop, &t->lio);
        close(t->lfd);
        t->lfd = -1;
    }
}
