/* daemon_io.c - the core's actions performed on the sockets, and socket
 * events (datagrams, streams opened, frames, drained, closed; the core's
 * timer) fed to the core.
 *
 * Performing an action can itself close a stream (a write queue past its
 * hard bound). The core is not re-entered while its actions are drained:
 * such closes are queued and reported once the drain is over.
 *
 * Keyed (--key-file): the seal (include/guts/seal.h) sits between the
 * sockets and the core, so nothing unauthenticated reaches the core's
 * decoder. Datagrams are sealed per destination and opened before
 * guts_core_on_datagram; the seal's timestamp window takes wall-clock ms
 * (CLOCK_REALTIME: compared across machines), never the monotonic `now`.
 * A stream starts with a seal hello each way; the core hears of it (stream
 * open) only once the peer's hello checked out, and every frame after it is
 * sealed on the way out and opened in place on the way in. A failed hello
 * or frame closes the connection. The core builds announces of at most
 * GUTS_SEAL_DGRAM_PLAIN_MAX bytes so sealed ones still fit GUTS_DGRAM_MAX.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A refusal by the seal: the first of each reason gets an info line (a
 * node with another key, or an open one, on the group is worth knowing
 * about); the rest only count (status.json), so a flood can't fill the log. */
static void seal_refused(guts_net_node *n, const char *what, const guts_net_sa *from,
                         int why)
{
    char as[GUTS_NET_ADDRSTRLEN];
    /* datagrams: warn once per source, then count it (status.json) */
    if (strcmp(what, "datagram") == 0) {
        if (guts_net_refused_note(&n->refused, from, why, guts_net_now_ms()))
            guts_net_logf(&n->log, GUTS_LOG_WARN,
                          "datagram from %s refused: %s%s (further ones from it are only "
                          "counted: guts status)",
                          guts_net_addr_str(from, as, sizeof as), guts_seal_reason(why),
                          why == GUTS_SEAL_R_KEY_MISMATCH
                              ? ": that node has another --key-file"
                          : why == GUTS_SEAL_R_UNSEALED ? ": that node runs open (no --key-file)"
                                                        : "");
        return;
    }
    /* datagrams and streams are logged apart: bits 0-15 and 16-31 */
    unsigned bit = 1u << ((why >= 0 && why < GUTS_SEAL_R_COUNT ? why : 0) +
                          (strcmp(what, "datagram") == 0 ? 0 : 16));
    int level = (n->seal_logged & bit) ? GUTS_LOG_DEBUG : GUTS_LOG_INFO;
    n->seal_logged |= bit;
    guts_net_logf(&n->log, level, "%s from %s refused: %s%s", what,
                  guts_net_addr_str(from, as, sizeof as), guts_seal_reason(why),
                  level == GUTS_LOG_INFO ? " (further ones are only counted)" : "");
}

/* ---- Actions ---------------------------------------------------------------- */

static void defer_closed(guts_net_node *n, uint32_t stream)
{
    if (n->ndeferred < sizeof n->deferred / sizeof n->deferred[0])
        n->deferred[n->ndeferred++] = stream;
}

static void do_open_stream(guts_net_node *n, const guts_core_action *a)
{
    guts_net_sa sin;
    char as[GUTS_NET_ADDRSTRLEN];
    if (guts_net_addr_to_sa(&a->addr, &sin) != 0) {
        defer_closed(n, a->stream);
        return;
    }
    guts_net_sa_set_port(&sin, htons(a->port));
    int rc = guts_net_tcp_connect(&n->tcp, a->stream, &sin, NULL);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_DEBUG, "stream %u to %s: %s", a->stream,
                      guts_net_addr_str(&sin, as, sizeof as), guts_strerror(rc));
        defer_closed(n, a->stream);
    }
}

/* One datagram to one destination (NULL: the group). Keyed, each copy is
 * sealed on its own: a peer that gets both the group's copy and a --peer
 * copy then sees two datagrams, not a replay. */
static void send_dgram(guts_net_node *n, const guts_net_sa *to, const uint8_t *data,
                       size_t len)
{
    if (!n->seal) {
        guts_net_udp_send(&n->udp, to, data, len);
        return;
    }
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t olen = 0;
    int rc = guts_seal_dgram(n->seal, wall_ms(), NULL, data, len, buf, sizeof buf, &olen);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_WARN, "datagram of %zu bytes not sent: %s", len,
                      guts_strerror(rc));
        return;
    }
    guts_net_udp_send(&n->udp, to, buf, olen);
}

/* A frame the core made (header included), sealed first when keyed. A
 * frame that cannot be queued (no memory) closes the stream inside
 * guts_net_tcp_send_raw, and on_closed tells the core: the peer sees the
 * stream end at once instead of waiting out its idle timeout. */
static void send_frame(guts_net_node *n, guts_net_conn *c, const uint8_t *data, size_t len)
{
    if (!n->seal) {
        guts_net_tcp_send_raw(&n->tcp, c, data, len);
        return;
    }
    size_t need = len + GUTS_SEAL_FRAME_OVERHEAD, olen = 0;
    if (need > n->sealcap) {
        uint8_t *nb = realloc(n->sealbuf, need);
        if (!nb) {
            guts_net_tcp_close(&n->tcp, c, 1);
            return;
        }
        n->sealbuf = nb;
        n->sealcap = need;
    }
    if (guts_seal_stream_seal(&c->seal, data, len, n->sealbuf, n->sealcap, &olen) != 0) {
        guts_net_tcp_close(&n->tcp, c, 1);
        return;
    }
    guts_net_tcp_send_raw(&n->tcp, c, n->sealbuf, olen);
    /* Big frames would pin their size: keep at most the read buffer's. */
    if (n->sealcap > GUTS_NET_RBUF_KEEP) {
        free(n->sealbuf);
        n->sealbuf = NULL;
        n->sealcap = 0;
    }
}

static void perform(guts_net_node *n, const guts_core_action *a)
{
    switch (a->kind) {
    case GUTS_ACT_SEND_DGRAM:
        if (a->to_group) {
            send_dgram(n, NULL, a->data, a->len);
        } else {
            guts_net_sa sin;
            if (guts_net_addr_to_sa(&a->addr, &sin) == 0) send_dgram(n, &sin, a->data, a->len);
        }
        break;
    case GUTS_ACT_OPEN_STREAM:
        do_open_stream(n, a);
        break;
    case GUTS_ACT_SEND_FRAME: {
        guts_net_conn *c = guts_net_tcp_find(&n->tcp, a->stream);
        if (c) send_frame(n, c, a->data, a->len);
        break;
    }
    case GUTS_ACT_CLOSE_STREAM: {
        guts_net_conn *c = guts_net_tcp_find(&n->tcp, a->stream);
        if (c) {
            c->owner_closed = 1;
            guts_net_tcp_close(&n->tcp, c, 0); /* after its last frames */
        }
        break;
    }
    case GUTS_ACT_SET_TIMER: {
        uint64_t now = guts_net_now_ms();
        double delay = a->at > now ? (double)(a->at - now) / 1000.0 : 0.0;
        ev_timer_stop(n->loop, &n->core_timer);
        ev_timer_set(&n->core_timer, delay, 0.);
        ev_timer_start(n->loop, &n->core_timer);
        break;
    }
    case GUTS_ACT_LOG:
        guts_net_logf(&n->log, a->level, "%s", a->text ? a->text : "");
        break;
    case GUTS_ACT_EVENT:
        if (a->data && a->len == sizeof(guts_core_event)) {
            guts_net_hooks_event(n, (const guts_core_event *)(const void *)a->data);
            if (n->http.d) guts_net_web_wake(n, 0);
        }
        break;
    default:
        break;
    }
}

/* Perform every pending action; then report streams that closed meanwhile,
 * which may produce more actions. */
void guts_net_node_drain(guts_net_node *n)
{
    guts_core_action a;
    for (;;) {
        n->draining = 1;
        while (guts_core_next_action(n->core, &a))
            perform(n, &a);
        n->draining = 0;
        if (n->ndeferred == 0) break;
        uint32_t ids[sizeof n->deferred / sizeof n->deferred[0]];
        size_t k = n->ndeferred;
        memcpy(ids, n->deferred, k * sizeof ids[0]);
        n->ndeferred = 0;
        for (size_t i = 0; i < k; i++)
            guts_core_on_stream_closed(n->core, guts_net_now_ms(), ids[i]);
    }
    /* A pull that starts or ends shows at once, not at the next redraw. */
    if (n->tty.on && guts_core_pulls(n->core, NULL, 0) != n->tty.pulls)
        guts_net_node_progress_draw(n);
}

/* ---- Network events ----------------------------------------------------- */

void guts_net_node_on_dgram(guts_net_udp *u, const uint8_t *buf, size_t len,
                            const guts_net_sa *from)
{
    guts_net_node *n = container_of(u, guts_net_node, udp);
    /* Before the seal and the decoder: a flooding source costs a table
     * lookup per datagram, not a decrypt or a decode. */
    if (!guts_net_rate_allow(&n->dgram_rate, guts_net_sa_key(from), guts_net_now_ms())) return;
    guts_addr a;
    guts_net_addr_from_sa(from, &a);
    int via = u->via_unicast ? GUTS_VIA_UNICAST : GUTS_VIA_GROUP;
    if (n->seal) {
        uint8_t pt[GUTS_DGRAM_DROP];
        size_t plen = 0;
        int why = GUTS_SEAL_R_OK;
        if (guts_seal_dgram_open(n->seal, wall_ms(), buf, len, pt, sizeof pt, &plen, &why) != 0) {
            seal_refused(n, "datagram", from, why);
            return;
        }
        guts_net_keys_note(n, &a, buf + 2); /* the key id, in clear after magic and version */
        guts_core_on_datagram(n->core, guts_net_now_ms(), &a, via, pt, plen);
    } else if (len && buf[0] == GUTS_SEAL_MAGIC) {
        /* sealed traffic on an open node: it would only count as
         * malformed; say once per source what it is */
        char as[GUTS_NET_ADDRSTRLEN];
        if (guts_net_refused_note(&n->refused, from, GUTS_NET_REFUSED_SEALED, guts_net_now_ms()))
            guts_net_logf(&n->log, GUTS_LOG_WARN,
                          "datagram from %s is sealed with a cluster key and this node runs "
                          "open (no --key-file): ignored (further ones from it are only "
                          "counted: guts status)",
                          guts_net_addr_str(from, as, sizeof as));
        return;
    } else {
        guts_core_on_datagram(n->core, guts_net_now_ms(), &a, via, buf, len);
    }
    guts_net_node_drain(n);
}

/* The stream counts as open for the core: now, or once the hello is in. */
static void stream_ready(guts_net_node *n, guts_net_conn *c)
{
    guts_addr a;
    guts_net_addr_from_sa(&c->addr, &a);
    guts_core_on_stream_open(n->core, guts_net_now_ms(), c->id, &a, c->outgoing);
    guts_net_node_drain(n);
}

void guts_net_node_on_open(guts_net_tcp *t, guts_net_conn *c)
{
    guts_net_node *n = container_of(t, guts_net_node, tcp);
    char as[GUTS_NET_ADDRSTRLEN];
    guts_net_logf(&n->log, GUTS_LOG_DEBUG, "stream %u %s %s", c->id, c->outgoing ? "to" : "from",
                  guts_net_addr_str(&c->addr, as, sizeof as));
    if (!n->seal) {
        stream_ready(n, c);
        return;
    }
    /* The initiator's hello goes first and names the connection's key; a
     * responder answers once it has checked that hello (on_frame), naming
     * the same key, which its ring holds but need not seal with. */
    uint8_t hello[GUTS_SEAL_HELLO_LEN];
    if (guts_seal_stream_init(&c->seal, n->seal, c->outgoing, NULL, hello) != 0 ||
        (c->outgoing && guts_net_tcp_send_raw(t, c, hello, sizeof hello) != 0))
        guts_net_tcp_close(t, c, 1);
}

void guts_net_node_on_frame(guts_net_tcp *t, guts_net_conn *c, uint8_t *buf, size_t len)
{
    guts_net_node *n = container_of(t, guts_net_node, tcp);
    if (n->seal) {
        int why = GUTS_SEAL_R_OK;
        if (c->seal.state == GUTS_SEAL_ST_HELLO) {
            uint8_t hello[GUTS_SEAL_HELLO_LEN];
            if (guts_seal_stream_on_hello(&c->seal, buf, len, &why) != 0) {
                seal_refused(n, "stream", &c->addr, why);
                guts_net_tcp_close(t, c, 1);
                return;
            }
            if (!c->outgoing && (guts_seal_stream_hello(&c->seal, hello) != 0 ||
                                 guts_net_tcp_send_raw(t, c, hello, sizeof hello) != 0)) {
                guts_net_tcp_close(t, c, 1);
                return;
            }
            stream_ready(n, c);
            return;
        }
        /* The header is rebuilt from len: the same 4 bytes that were read. */
        uint8_t hdr[GUTS_FRAME_HDR];
        size_t plen = 0;
        guts_wire_frame_hdr((uint32_t)len, hdr);
        if (guts_seal_stream_open(&c->seal, hdr, buf, len, &plen, &why) != 0) {
            seal_refused(n, "stream frame", &c->addr, why);
            guts_net_tcp_close(t, c, 1);
            return;
        }
        len = plen;
    }
    guts_core_on_frame(n->core, guts_net_now_ms(), c->id, buf, len);
    guts_net_node_drain(n);
    /* The core took the frame without closing the stream: the peer spoke
     * the protocol (keyed: with the cluster key), so the connection now
     * holds a slot. c stays valid here: tcp holds it during on_frame. */
    if (!c->proven && !c->closed && !c->close_after_flush) guts_net_tcp_proven(t, c);
}

void guts_net_node_on_writable(guts_net_tcp *t, guts_net_conn *c)
{
    guts_net_node *n = container_of(t, guts_net_node, tcp);
    guts_core_on_stream_writable(n->core, guts_net_now_ms(), c->id);
    guts_net_node_drain(n);
}

void guts_net_node_on_closed(guts_net_tcp *t, guts_net_conn *c, int err)
{
    guts_net_node *n = container_of(t, guts_net_node, tcp);
    char as[GUTS_NET_ADDRSTRLEN];
    guts_net_logf(&n->log, GUTS_LOG_DEBUG, "stream %u %s closed%s%s (in %llu B, out %llu B)", c->id,
                  guts_net_addr_str(&c->addr, as, sizeof as), err ? ": " : "",
                  err ? guts_strerror(err) : "", (unsigned long long)c->rx_bytes,
                  (unsigned long long)c->tx_bytes);
    /* An accepted stream whose hello never checked out was never the
     * core's; an outgoing one was (the core asked for it). */
    int known = !n->seal || c->outgoing || c->seal.state == GUTS_SEAL_ST_READY;
    if (n->seal) guts_seal_stream_clear(&c->seal);
    if (c->owner_closed || !n->core || !known) return;
    if (n->draining) {
        defer_closed(n, c->id);
        return;
    }
    guts_core_on_stream_closed(n->core, guts_net_now_ms(), c->id);
    guts_net_node_drain(n);
}

void guts_net_node_core_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, core_timer);
    guts_core_on_timer(n->core, guts_net_now_ms());
    guts_net_node_drain(n);
}
