/* daemon.c - the node: libev events in, core actions out.
 *
 * Every event (datagram, stream opened, frame, stream drained or closed,
 * timer, local write, signal) becomes one guts_core_on_* call with the
 * monotonic time in milliseconds, followed by draining the core's actions
 * and performing each: datagrams go out of the unicast socket (to the group,
 * and copies to every --peer), streams are connected or fed or closed, the
 * one core timer is re-armed, log lines are printed.
 *
 * Performing an action can itself close a stream (a write queue past its
 * hard bound). The core is not re-entered while its actions are drained:
 * such closes are queued and reported once the drain is over.
 *
 * The core never sees a clock: `now` is CLOCK_MONOTONIC (ev_now is wall
 * clock based and jumps with it), read once per event; the rate limits and
 * tcp.c's timeouts use the same clock (guts_net_now_ms), so a wall clock
 * stepped either way changes no duration.
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
 *
 * On a terminal (stderr a tty) a line per running pull (repository, peer,
 * objects and bytes so far, rate, and an ETA when the peer's announced
 * count says how many to expect) is redrawn under the log every
 * GUTS_NET_PROGRESS_S with the CLI's progress format; the numbers are the
 * core's session counters (guts_core_pulls). Not on a terminal: nothing but
 * the log lines, so a redirected log carries no escape sequences.
 *
 * Other processes write to the data dir (guts import); LMDB lets them, and
 * a poll of every repository's counters notices within GUTS_NET_POLL_S. A
 * change in the object set or refs digest (not merely the transaction id,
 * which our own reads of meta never move but our own writes do) is handed
 * to the core, which announces it, rate limited. Our own fetches also show
 * up here; that costs at most one extra announce per interval, never a loop,
 * since an announce changes nothing in the store.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "guts/refmerge.h"
#include "net.h"

/* 16 MiB: the deltas of a pull mostly sit on recently received bases. */
#define NET_STORE_CACHE_BYTES ((size_t)16 << 20)

/* An ephemeral TCP port whose number is taken for UDP is retried with a new
 * one this many times; a collision is rare, 16 in a row is a broken host. */
#define PORT_TRIES 16

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

/* The core's addresses are the daemon's wire form (peer exchange carries
 * them as they are, docs/protocol.md "PEERS"), address then port, both in
 * network order: 6 bytes for IPv4, 18 for IPv6, and 22 for a link-local
 * IPv6 address, its zone (the interface index) appended. The core never
 * puts the 22-byte form in PEERS (over GUTS_WIRE_ADDR_MAX): a link-local
 * address means nothing off its link, where the group reaches anyway. */
#define NET_ADDR4_LEN 6
#define NET_ADDR6_LEN 18
#define NET_ADDR6Z_LEN 22

static void addr_from_sa(const guts_net_sa *sa, guts_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa.sa_family == AF_INET6) {
        memcpy(out->b, sa->in6.sin6_addr.s6_addr, 16);
        memcpy(out->b + 16, &sa->in6.sin6_port, 2);
        out->len = NET_ADDR6_LEN;
        if (sa->in6.sin6_scope_id) {
            uint32_t z = htonl(sa->in6.sin6_scope_id);
            memcpy(out->b + 18, &z, 4);
            out->len = NET_ADDR6Z_LEN;
        }
        return;
    }
    out->len = NET_ADDR4_LEN;
    memcpy(out->b, &sa->in.sin_addr.s_addr, 4);
    memcpy(out->b + 4, &sa->in.sin_port, 2);
}

static int addr_to_sa(const guts_addr *a, guts_net_sa *out)
{
    memset(out, 0, sizeof *out);
    if (a->len == NET_ADDR6_LEN || a->len == NET_ADDR6Z_LEN) {
        out->in6.sin6_family = AF_INET6;
        memcpy(out->in6.sin6_addr.s6_addr, a->b, 16);
        memcpy(&out->in6.sin6_port, a->b + 16, 2);
        if (a->len == NET_ADDR6Z_LEN) {
            uint32_t z;
            memcpy(&z, a->b + 18, 4);
            out->in6.sin6_scope_id = ntohl(z);
        }
        return 0;
    }
    if (a->len != NET_ADDR4_LEN) return GUTS_EINVAL;
    out->in.sin_family = AF_INET;
    memcpy(&out->in.sin_addr.s_addr, a->b, 4);
    memcpy(&out->in.sin_port, a->b + 4, 2);
    return 0;
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
    if (addr_to_sa(&a->addr, &sin) != 0) {
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
            if (addr_to_sa(&a->addr, &sin) == 0) send_dgram(n, &sin, a->data, a->len);
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
static void progress_draw(guts_net_node *n);

static void drain(guts_net_node *n)
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
    if (n->tty.on && guts_core_pulls(n->core, NULL, 0) != n->tty.pulls) progress_draw(n);
}

/* ---- Network events ----------------------------------------------------- */

static void on_dgram(guts_net_udp *u, const uint8_t *buf, size_t len,
                     const guts_net_sa *from)
{
    guts_net_node *n = container_of(u, guts_net_node, udp);
    /* Before the seal and the decoder: a flooding source costs a table
     * lookup per datagram, not a decrypt or a decode. */
    if (!guts_net_rate_allow(&n->dgram_rate, guts_net_sa_key(from), guts_net_now_ms())) return;
    guts_addr a;
    addr_from_sa(from, &a);
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
    drain(n);
}

/* The stream counts as open for the core: now, or once the hello is in. */
static void stream_ready(guts_net_node *n, guts_net_conn *c)
{
    guts_addr a;
    addr_from_sa(&c->addr, &a);
    guts_core_on_stream_open(n->core, guts_net_now_ms(), c->id, &a, c->outgoing);
    drain(n);
}

static void on_open(guts_net_tcp *t, guts_net_conn *c)
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

static void on_frame(guts_net_tcp *t, guts_net_conn *c, uint8_t *buf, size_t len)
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
    drain(n);
    /* The core took the frame without closing the stream: the peer spoke
     * the protocol (keyed: with the cluster key), so the connection now
     * holds a slot. c stays valid here: tcp holds it during on_frame. */
    if (!c->proven && !c->closed && !c->close_after_flush) guts_net_tcp_proven(t, c);
}

static void on_writable(guts_net_tcp *t, guts_net_conn *c)
{
    guts_net_node *n = container_of(t, guts_net_node, tcp);
    guts_core_on_stream_writable(n->core, guts_net_now_ms(), c->id);
    drain(n);
}

static void on_closed(guts_net_tcp *t, guts_net_conn *c, int err)
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
    drain(n);
}

static void core_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, core_timer);
    guts_core_on_timer(n->core, guts_net_now_ms());
    drain(n);
}

/* ---- Local writes ------------------------------------------------------- */

/* The store lists repositories in the same order at every poll, so the
 * next key is almost always the one after the last found: a scan of the
 * whole list for each key cost 500,000 strcmp a poll at 1,000 repositories. */
static guts_net_watch *watch_find(guts_net_node *n, const char *key)
{
    size_t h = n->watch_next;
    if (h < n->nwatch && strcmp(n->watch[h].key, key) == 0) {
        n->watch_next = h + 1;
        return &n->watch[h];
    }
    for (size_t i = 0; i < n->nwatch; i++)
        if (strcmp(n->watch[i].key, key) == 0) {
            n->watch_next = i + 1;
            return &n->watch[i];
        }
    return NULL;
}

static int count_conflict(const guts_ref *ref, void *arg)
{
    if (guts_ref_is_conflict_name(ref->name)) ++*(uint64_t *)arg;
    return 0;
}

static int poll_repo(const char *key, void *arg)
{
    guts_net_node *n = arg;
    guts_net_watch *w = watch_find(n, key);
    /* Unchanged since the last poll: the env's txnid says so without a
     * transaction (1,000 read transactions every poll held the loop). */
    uint64_t txnid;
    if (w && guts_core_lmdbstore_txnid(n->lstore, key, &txnid) == 0 && txnid == w->txnid) {
        w->seen = 1;
        return 0;
    }
    guts_repo_info info;
    if (n->store.info(n->store.ctx, key, &info) != 0) return 0;
    int changed = 0;
    if (!w) {
        if (n->nwatch == GUTS_NET_WATCH_MAX) return 0;
        if (n->nwatch == n->capwatch) {
            size_t cap = n->capwatch ? 2 * n->capwatch : 16;
            guts_net_watch *nw = realloc(n->watch, cap * sizeof *nw);
            if (!nw) return 0;
            n->watch = nw;
            n->capwatch = cap;
        }
        w = &n->watch[n->nwatch++];
        memset(w, 0, sizeof *w);
        snprintf(w->key, sizeof w->key, "%s", key);
        changed = 1;
    } else if (info.txnid != w->txnid &&
               (info.objects != w->objects || !guts_fp_eq(info.fp, w->fp) ||
                !guts_fp_eq(info.refs_digest, w->refs_digest))) {
        changed = 1;
    }
    /* Conflict records change only with the refs: they are counted when the
     * refs digest moved since the last count, and not while a pull runs
     * (reading every ref at each poll of a pull slowed it until peers
     * expired); the pull's end brings the count up to date. */
    int st = GUTS_SYNC_IN_SYNC;
    if ((!w->counted || !guts_fp_eq(info.refs_digest, w->conflicts_at)) &&
        (guts_core_repo_state(n->core, key, &st) != 0 || st != GUTS_SYNC_PULLING)) {
        uint64_t conflicts = 0;
        if (n->store.refs(n->store.ctx, key, 0, count_conflict, &conflicts) == 0) {
            w->conflicts = conflicts;
            w->conflicts_at = info.refs_digest;
            w->counted = 1;
        }
    }
    w->txnid = info.txnid;
    w->objects = info.objects;
    w->refs = info.refs;
    w->stored_bytes = info.stored_bytes;
    w->fp = info.fp;
    w->refs_digest = info.refs_digest;
    w->seen = 1;
    if (changed && n->watch_primed) {
        guts_net_logf(&n->log, GUTS_LOG_DEBUG, "local change in %s (%llu objects)", key,
                      (unsigned long long)info.objects);
        guts_core_on_local_change(n->core, guts_net_now_ms(), key);
        drain(n);
    }
    return 0;
}

static uint64_t stamp_mix(uint64_t h, const struct stat *st)
{
    const uint64_t v[3] = {(uint64_t)st->st_ino, (uint64_t)st->st_mtim.tv_sec,
                           (uint64_t)st->st_mtim.tv_nsec};
    for (size_t i = 0; i < 3; i++)
        h = (h ^ v[i]) * 0x100000001b3ULL;
    return h;
}

/* A stamp of DATA/repos and its owner directories (inode, mtime): a
 * repository made or removed changes its owner's; a write inside an env
 * changes neither. 0 on failure (then the poll scans). */
static uint64_t repos_stamp(guts_net_node *n)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/repos", guts_data_path(n->data)) >= (int)sizeof path)
        return 0;
    struct stat st;
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t h = 0xcbf29ce484222325ULL;
    if (fstat(dirfd(d), &st) == 0) h = stamp_mix(h, &st);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0) h = stamp_mix(h, &st);
    closedir(d);
    return h ? h : 1;
}

static void poll_local(guts_net_node *n)
{
    uint64_t stamp = repos_stamp(n);
    if (n->watch_primed && stamp && stamp == n->repos_stamp &&
        ++n->polls_unscanned < GUTS_NET_SCAN_EVERY) {
        /* Nothing made or removed: only the envs' txnids are looked at. */
        for (size_t i = 0; i < n->nwatch; i++) {
            char key[GUTS_KEY_MAX + 1];
            memcpy(key, n->watch[i].key, sizeof key);
            n->watch_next = i;
            poll_repo(key, n);
        }
        return;
    }
    n->repos_stamp = stamp;
    n->polls_unscanned = 0;
    for (size_t i = 0; i < n->nwatch; i++)
        n->watch[i].seen = 0;
    n->watch_next = 0;
    n->store.repos(n->store.ctx, poll_repo, n);
    /* Repositories removed on disk are forgotten. */
    size_t j = 0;
    for (size_t i = 0; i < n->nwatch; i++)
        if (n->watch[i].seen) n->watch[j++] = n->watch[i];
    n->nwatch = j;
    n->watch_primed = 1;
}

/* A replica's flush covered its last commit: now the core may announce it. */
static void durable_cb(const char *key, void *arg)
{
    guts_net_node *n = arg;
    guts_core_on_local_change(n->core, guts_net_now_ms(), key);
}

static void flushed_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, flushed);
    if (!n->core) return;
    if (guts_core_lmdbstore_flushed(n->lstore, durable_cb, n)) drain(n);
}

/* On a flusher thread: wake the loop (ev_async_send is thread-safe). */
static void flush_notify(void *arg)
{
    guts_net_node *n = arg;
    ev_async_send(n->loop, &n->flushed);
}

static void poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, poll_timer);
    poll_local(n);
}

/* ---- Status file ---------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const char *const sync_names[] = {"in_sync", "behind", "pulling"};

/* status.json names of the seal's refusal counters, by GUTS_SEAL_R_*. */
static const char *const seal_reason_keys[] = {
    "ok", "unsealed", "version", "short", "key_mismatch", "stale", "replay", "forged", "state"};
_Static_assert(sizeof seal_reason_keys / sizeof *seal_reason_keys == GUTS_SEAL_R_COUNT,
               "a status.json name for every seal refusal reason");

void guts_net_node_status(guts_net_node *n, FILE *f)
{
    uint64_t now = guts_net_now_ms();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    char hex[2 * GUTS_NODE_ID_LEN + 1], as[GUTS_NET_ADDRSTRLEN];
    guts_node_id_to_hex(guts_data_node_id(n->data), hex);
    size_t pulls = 0, serves = 0;
    guts_core_sessions(n->core, &pulls, &serves);
    fprintf(f, "{\n  \"version\": 1,\n  \"pid\": %ld,\n  \"node_id\": \"%s\",\n", (long)getpid(),
            hex);
    fprintf(f, "  \"incarnation\": %llu,\n", (unsigned long long)n->incarnation);
    fprintf(f, "  \"updated_unix_ms\": %llu,\n  \"uptime_ms\": %llu,\n",
            (unsigned long long)wall.tv_sec * 1000ull + (unsigned long long)wall.tv_nsec / 1000000u,
            (unsigned long long)(now - n->start_ms));
    fprintf(f, "  \"listen\": \"%s\",\n", guts_net_addr_str(&n->tcp.local, as, sizeof as));
    fprintf(f, "  \"group\": \"%s\",\n", guts_net_addr_str(&n->opts.group4, as, sizeof as));
    fprintf(f, "  \"group6\": \"%s\",\n", guts_net_addr_str(&n->opts.group6, as, sizeof as));
    fprintf(f, "  \"interfaces\": [");
    for (size_t i = 0; i < n->udp.nifs; i++) {
        const guts_net_iface *fi = &n->udp.ifs[i];
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        json_str(f, fi->name);
        fprintf(f, ", \"ipv4\": %s, \"ipv6\": %s}", fi->joined & 1 ? "true" : "false",
                fi->joined & 2 ? "true" : "false");
    }
    fprintf(f, "],\n");
    if (n->http.d)
        fprintf(f, "  \"http\": \"%s\",\n", guts_net_addr_str(&n->http.local, as, sizeof as));
    fprintf(f, "  \"interval_ms\": %u,\n", (unsigned)guts_core_interval(n->core));
    fprintf(f, "  \"sessions\": {\"pulls\": %zu, \"serves\": %zu},\n", pulls, serves);
    fprintf(f, "  \"peers\": [");
    size_t np = guts_core_peer_count(n->core);
    for (size_t i = 0; i < np; i++) {
        guts_core_peer_info p;
        if (guts_core_peer(n->core, i, &p) != 0) continue;
        guts_net_sa sin;
        char ph[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(&p.id, ph);
        if (addr_to_sa(&p.addr, &sin) == 0)
            guts_net_addr_str(&sin, as, sizeof as);
        else
            snprintf(as, sizeof as, "?");
        fprintf(f,
                "%s\n    {\"id\": \"%s\", \"address\": \"%s\", \"port\": %u, "
                "\"incarnation\": %llu, \"last_heard_ms_ago\": %llu, \"repos\": %u, "
                "\"repos_common\": %u, \"repos_in_sync\": %u, \"via\": \"%s\"",
                i ? "," : "", ph, as, (unsigned)p.port, (unsigned long long)p.incarnation,
                (unsigned long long)(now > p.last_heard ? now - p.last_heard : 0),
                (unsigned)p.repos, (unsigned)p.repos_common, (unsigned)p.repos_same,
                p.via_group && p.via_unicast ? "both" : p.via_unicast ? "unicast" : "multicast");
        const uint8_t *kid = n->seal ? guts_net_keys_of(n, &p.addr) : NULL;
        if (kid) fprintf(f, ", \"key_id\": \"%02x%02x%02x%02x\"", kid[0], kid[1], kid[2], kid[3]);
        fputc('}', f);
    }
    fprintf(f, "%s],\n  \"refused\": [", np ? "\n  " : "");
    size_t nr = 0;
    for (size_t i = 0; i < GUTS_NET_REFUSED_MAX; i++) {
        const guts_net_refused_src *s = &n->refused.src[i];
        if (!s->count) continue;
        fprintf(f, "%s\n    {\"address\": \"%s\", \"reason\": \"%s\", \"count\": %llu, "
                   "\"last_ms_ago\": %llu}",
                nr++ ? "," : "", guts_net_addr_str(&s->addr, as, sizeof as),
                s->why == GUTS_NET_REFUSED_SEALED ? "sealed, this node is open"
                                                  : guts_seal_reason(s->why),
                (unsigned long long)s->count,
                (unsigned long long)(now > s->last_ms ? now - s->last_ms : 0));
    }
    fprintf(f, "%s],\n  \"repos\": [", nr ? "\n  " : "");
    for (size_t i = 0; i < n->nwatch; i++) {
        int st = GUTS_SYNC_IN_SYNC;
        guts_core_repo_state(n->core, n->watch[i].key, &st);
        fprintf(f, "%s\n    {\"key\": ", i ? "," : "");
        json_str(f, n->watch[i].key);
        const guts_net_watch *w = &n->watch[i];
        fprintf(f,
                ", \"objects\": %llu, \"refs\": %llu, \"stored_bytes\": %llu, "
                "\"conflicts\": %llu, \"fingerprint\": \"%016llx%016llx\", \"state\": \"%s\", "
                "\"behind_ms\": %llu",
                (unsigned long long)w->objects, (unsigned long long)w->refs,
                (unsigned long long)w->stored_bytes, (unsigned long long)w->conflicts,
                (unsigned long long)w->fp.hi, (unsigned long long)w->fp.lo,
                st >= 0 && st <= 2 ? sync_names[st] : "unknown",
                (unsigned long long)(w->behind_since && now > w->behind_since
                                         ? now - w->behind_since
                                         : 0));
        guts_node_id same[GUTS_NET_STATUS_SYNCED_WITH];
        size_t have = 0, nsame = 0;
        guts_core_repo_peers(n->core, w->key, &have, &nsame, same, GUTS_NET_STATUS_SYNCED_WITH);
        fprintf(f, ", \"peers\": %zu, \"in_sync_with\": [", have);
        for (size_t k = 0; k < nsame && k < GUTS_NET_STATUS_SYNCED_WITH; k++) {
            char ph[2 * GUTS_NODE_ID_LEN + 1];
            guts_node_id_to_hex(&same[k], ph);
            fprintf(f, "%s\"%s\"", k ? ", " : "", ph);
        }
        fprintf(f, "], \"in_sync_peers\": %zu}", nsame);
    }
    /* pulls in progress: the core's session counters */
    guts_core_pull_info pl[GUTS_NET_STATUS_PULLS];
    size_t npl = guts_core_pulls(n->core, pl, GUTS_NET_STATUS_PULLS);
    if (npl > GUTS_NET_STATUS_PULLS) npl = GUTS_NET_STATUS_PULLS;
    fprintf(f, "%s],\n  \"pulls\": [", n->nwatch ? "\n  " : "");
    for (size_t i = 0; i < npl; i++) {
        guts_net_sa sin;
        char ph[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(&pl[i].peer, ph);
        if (addr_to_sa(&pl[i].addr, &sin) == 0)
            guts_net_addr_str(&sin, as, sizeof as);
        else
            snprintf(as, sizeof as, "?");
        fprintf(f, "%s\n    {\"key\": ", i ? "," : "");
        json_str(f, pl[i].key);
        fprintf(f,
                ", \"peer\": \"%s\", \"address\": \"%s\", \"objects\": %llu, \"expected\": %llu, "
                "\"bytes\": %llu, \"elapsed_ms\": %llu}",
                ph, as, (unsigned long long)pl[i].objects,
                (unsigned long long)(pl[i].objects <= pl[i].expected ? pl[i].expected : 0),
                (unsigned long long)pl[i].bytes,
                (unsigned long long)(now > pl[i].started ? now - pl[i].started : 0));
    }
    /* the last log lines at info and above, oldest first */
    fprintf(f, "%s],\n  \"events\": [", npl ? "\n  " : "");
    uint64_t first = n->recent.total > GUTS_NET_RECENT_MAX ? n->recent.total - GUTS_NET_RECENT_MAX : 0;
    for (uint64_t i = first; i < n->recent.total; i++) {
        const guts_net_recent_line *l = &n->recent.line[i % GUTS_NET_RECENT_MAX];
        fprintf(f, "%s\n    {\"unix_ms\": %llu, \"level\": \"%s\", \"text\": ", i > first ? "," : "",
                (unsigned long long)l->unix_ms,
                l->level == GUTS_LOG_ERROR ? "error" : l->level == GUTS_LOG_WARN ? "warn" : "info");
        json_str(f, l->text);
        fputc('}', f);
    }
    fprintf(f, "%s],\n  \"damaged\": [", n->recent.total ? "\n  " : "");
    for (size_t i = 0; i < n->ndamaged; i++) {
        const guts_net_damaged *dm = &n->damaged[i];
        fprintf(f, "%s\n    {\"key\": ", i ? "," : "");
        json_str(f, dm->key);
        fprintf(f, ", \"moved_to\": ");
        json_str(f, dm->moved_to);
        fprintf(f, ", \"cause\": ");
        json_str(f, dm->cause);
        fprintf(f, ", \"unix_ms\": %llu}", (unsigned long long)dm->unix_ms);
    }
    guts_core_counters k;
    guts_core_counters_get(n->core, &k);
    fprintf(f, "%s],\n  \"counters\": {", n->ndamaged ? "\n  " : "");
    fprintf(f,
            "\"dgrams_in\": %llu, \"dgrams_out\": %llu, \"dgram_bytes_out\": %llu, "
            "\"dgram_max_out\": %llu, \"dgrams_dropped\": %llu, \"dgrams_malformed\": %llu, "
            "\"frames_in\": %llu, \"frames_out\": %llu, \"frame_bytes_out\": %llu, "
            "\"frames_malformed\": %llu, \"bad_objects\": %llu, \"sessions_started\": %llu, "
            "\"sessions_served\": %llu, \"sessions_ok\": %llu, \"sessions_failed\": %llu, "
            "\"sessions_busy\": %llu, "
            "\"objects_fetched\": %llu, \"objects_nobase\": %llu, \"objects_dropped\": %llu, "
            "\"refs_applied\": %llu, \"refs_pending\": %llu, "
            "\"peers_joined\": %llu, \"peers_left\": %llu, \"peers_expired\": %llu, "
            "\"objects_too_big\": %llu, \"objects_damaged\": %llu, "
            "\"repos_remote\": %llu, \"repos_refused\": %llu, "
            "\"repos_evicted\": %llu, \"store_full\": %llu, \"writes_full\": %llu, "
            "\"dgrams_unicast\": %llu, \"peers_unicast\": %llu, \"pex_out\": %llu, "
            "\"pex_bytes_out\": %llu, \"unicast_answers\": %llu, "
            "\"pex_in\": %llu, \"pex_ignored\": %llu, \"learned\": %llu, "
            "\"learned_dropped\": %llu, \"learned_given_up\": %llu, \"conflicts\": %llu, ",
            (unsigned long long)k.dgrams_in, (unsigned long long)k.dgrams_out,
            (unsigned long long)k.dgram_bytes_out, (unsigned long long)k.dgram_max_out,
            (unsigned long long)k.dgrams_dropped, (unsigned long long)k.dgrams_malformed,
            (unsigned long long)k.frames_in, (unsigned long long)k.frames_out,
            (unsigned long long)k.frame_bytes_out, (unsigned long long)k.frames_malformed,
            (unsigned long long)k.bad_objects, (unsigned long long)k.sessions_started,
            (unsigned long long)k.sessions_served, (unsigned long long)k.sessions_ok,
            (unsigned long long)k.sessions_failed, (unsigned long long)k.sessions_busy,
            (unsigned long long)k.objects_fetched,
            (unsigned long long)k.objects_nobase, (unsigned long long)k.objects_dropped,
            (unsigned long long)k.refs_applied, (unsigned long long)k.refs_pending,
            (unsigned long long)k.peers_joined, (unsigned long long)k.peers_left,
            (unsigned long long)k.peers_expired, (unsigned long long)k.objects_too_big,
            (unsigned long long)k.objects_damaged,
            (unsigned long long)k.repos_remote, (unsigned long long)k.repos_refused,
            (unsigned long long)k.repos_evicted, (unsigned long long)k.store_full,
            (unsigned long long)k.writes_full, (unsigned long long)k.dgrams_unicast,
            (unsigned long long)k.peers_unicast, (unsigned long long)k.pex_out,
            (unsigned long long)k.pex_bytes_out, (unsigned long long)k.unicast_answers,
            (unsigned long long)k.pex_in, (unsigned long long)k.pex_ignored,
            (unsigned long long)k.learned, (unsigned long long)k.learned_dropped,
            (unsigned long long)k.learned_given_up, (unsigned long long)k.conflicts);
    fprintf(f,
            "\"udp_rx\": %llu, \"udp_tx\": %llu, \"udp_rx_bytes\": %llu, \"udp_tx_bytes\": %llu, "
            "\"udp_rx_oversize\": %llu, \"udp_tx_dropped\": %llu, \"tcp_accepted\": %llu, "
            "\"tcp_connected\": %llu, \"tcp_refused\": %llu, \"tcp_timeouts\": %llu, "
            "\"tcp_rx_bytes\": %llu, \"tcp_tx_bytes\": %llu, \"tcp_open\": %zu, "
            "\"tcp_unproven\": %zu, \"tcp_refused_source\": %llu, "
            "\"tcp_handshake_timeouts\": %llu, \"tcp_evicted\": %llu, "
            "\"rate_limited_dgrams\": %llu, \"rate_limited_conns\": %llu}",
            (unsigned long long)n->udp.stats.rx, (unsigned long long)n->udp.stats.tx,
            (unsigned long long)n->udp.stats.rx_bytes, (unsigned long long)n->udp.stats.tx_bytes,
            (unsigned long long)n->udp.stats.rx_oversize,
            (unsigned long long)n->udp.stats.tx_dropped, (unsigned long long)n->tcp.stats.accepted,
            (unsigned long long)n->tcp.stats.connected, (unsigned long long)n->tcp.stats.refused,
            (unsigned long long)n->tcp.stats.timeouts, (unsigned long long)n->tcp.stats.rx_bytes,
            (unsigned long long)n->tcp.stats.tx_bytes, n->tcp.nconns, n->tcp.nunproven,
            (unsigned long long)n->tcp.stats.refused_source,
            (unsigned long long)n->tcp.stats.handshake_timeouts,
            (unsigned long long)n->tcp.stats.evicted, (unsigned long long)n->dgram_rate.limited,
            (unsigned long long)n->conn_rate.limited);
    fprintf(f, ",\n  \"seal\": {\"keyed\": %s", n->seal ? "true" : "false");
    if (n->seal) {
        uint8_t id[GUTS_SEAL_KEYID_LEN];
        guts_seal_key_id(n->seal, id);
        guts_seal_counters sc;
        guts_seal_counters_get(n->seal, &sc);
        fprintf(f, ", \"key_id\": \"");
        for (size_t i = 0; i < sizeof id; i++)
            fprintf(f, "%02x", id[i]);
        fputc('"', f);
        guts_net_keys_status(n, f);
        fprintf(f,
                ", \"dgrams_sealed\": %llu, \"dgrams_opened\": %llu, \"frames_sealed\": %llu, "
                "\"frames_opened\": %llu, \"streams_ready\": %llu",
                (unsigned long long)sc.dgrams_sealed, (unsigned long long)sc.dgrams_opened,
                (unsigned long long)sc.frames_sealed, (unsigned long long)sc.frames_opened,
                (unsigned long long)sc.streams_ready);
        for (int r = 1; r < GUTS_SEAL_R_COUNT; r++)
            fprintf(f, ", \"rejected_%s\": %llu", seal_reason_keys[r],
                    (unsigned long long)sc.rejected[r]);
    }
    fputc('}', f);
    guts_net_hooks_status(n, f);
    fprintf(f, "\n}\n");
}

static void write_status(guts_net_node *n)
{
    char tmp[sizeof n->status_path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", n->status_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    fchmod(fd, 0600);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return;
    }
    guts_net_node_status(n, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        unlink(tmp);
        return;
    }
    if (rename(tmp, n->status_path) != 0) unlink(tmp);
}

/* One line when no peer has been heard for GUTS_NET_LONELY_MS, naming the
 * likely cause and what to do; one when a peer is heard again. */
static void lonely_check(guts_net_node *n)
{
    uint64_t now = guts_net_now_ms();
    size_t np = guts_core_peer_count(n->core);
    if (np) {
        if (n->lonely_logged)
            guts_net_logf(&n->log, GUTS_LOG_INFO, "hearing %zu peer%s again after %llu s alone",
                          np, np == 1 ? "" : "s",
                          (unsigned long long)((now - n->lonely_since) / 1000));
        n->lonely_since = 0;
        n->lonely_logged = 0;
        return;
    }
    if (!n->lonely_since) n->lonely_since = now;
    if (n->lonely_logged || now - n->lonely_since < GUTS_NET_LONELY_MS) return;
    n->lonely_logged = 1;
    char as[GUTS_NET_ADDRSTRLEN];
    if (n->refused.total)
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "no peer heard for %u s, but datagrams were refused (another key, or "
                      "sealed/open mismatch): see guts status",
                      GUTS_NET_LONELY_MS / 1000);
    else if (!n->udp.nifs)
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "no peer heard for %u s and no multicast here: %s",
                      GUTS_NET_LONELY_MS / 1000,
                      n->opts.npeers ? "the --peer addresses do not answer (down? firewall?)"
                                     : "add --peer HOST:PORT of one node");
    else
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "no peer heard for %u s on the groups (joined on %s): alone, or the "
                      "network blocks multicast (client isolation, IGMP snooping without a "
                      "querier, a firewall): %s",
                      GUTS_NET_LONELY_MS / 1000, guts_net_udp_ifaces(&n->udp, as, sizeof as),
                      n->opts.npeers ? "the --peer addresses do not answer either"
                                     : "add --peer HOST:PORT of one node");
}

static void status_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, status_timer);
    if (++n->scan_ticks >= GUTS_NET_IFSCAN_TICKS) {
        /* interfaces that came or went since: joined or left (logged) */
        n->scan_ticks = 0;
        size_t was = n->udp.nifs;
        if (guts_net_udp_scan(&n->udp) && !was)
            guts_net_logf(&n->log, GUTS_LOG_INFO, "multicast available now");
        else if (was && !n->udp.nifs)
            guts_net_logf(&n->log, GUTS_LOG_WARN, "no multicast now (%s): unicast only",
                          n->udp.mcast_off);
    }
    lonely_check(n);
    if (n->nsse) guts_net_web_wake(n, 0); /* /events: a ping when due */
    /* replication lag: since when a live peer's state of each repository
     * differs from ours (seen at this tick's resolution) */
    uint64_t now = guts_net_now_ms();
    for (size_t i = 0; i < n->nwatch; i++) {
        int st = GUTS_SYNC_IN_SYNC;
        guts_core_repo_state(n->core, n->watch[i].key, &st);
        if (st == GUTS_SYNC_IN_SYNC)
            n->watch[i].behind_since = 0;
        else if (!n->watch[i].behind_since)
            n->watch[i].behind_since = now;
    }
    write_status(n);
}

/* ---- Remembered peers ---------------------------------------------------------- */

/* Load DATA/node/peers: at most GUTS_NET_REMEMBER_MAX entries of the
 * last week; lines that do not parse are skipped (the file is ours, but a
 * disk or an editor may have damaged it). A missing file is no error. */
static void remembered_load(guts_net_node *n)
{
    FILE *f = fopen(n->peers_path, "r");
    if (!f) return;
    char line[GUTS_NET_REMEMBER_LINE];
    uint64_t now = (uint64_t)time(NULL);
    while (n->nremembered < GUTS_NET_REMEMBER_MAX && fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') { /* too long: skip it */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {
            }
            continue;
        }
        /* "A.B.C.D:PORT SECONDS" or "[IPV6]:PORT SECONDS": literals only,
         * so a damaged line never reaches the resolver */
        char addr[GUTS_NET_REMEMBER_LINE];
        unsigned long long seen;
        char end;
        const char *why;
        guts_net_remembered r;
        memset(&r, 0, sizeof r);
        if (sscanf(line, "%95[]0-9a-fA-F.:[] %20llu%c", addr, &seen, &end) != 3 || end != '\n' ||
            (addr[0] != '[' && strspn(addr, "0123456789.:") != strlen(addr)) ||
            guts_net_parse_addr(addr, 0, &r.addr, &why) != 0 ||
            (r.addr.sa.sa_family == AF_INET6 && r.addr.in6.sin6_scope_id) ||
            seen + GUTS_NET_REMEMBER_AGE_S < now || seen > now + GUTS_NET_REMEMBER_AGE_S)
            continue;
        r.seen = seen;
        n->remembered[n->nremembered++] = r;
    }
    fclose(f);
}

static int remembered_newer(const void *a, const void *b)
{
    const guts_net_remembered *x = a, *y = b;
    return x->seen < y->seen ? 1 : x->seen > y->seen ? -1 : 0;
}

/* Merge the live peers into the list (newest first, at most
 * GUTS_NET_REMEMBER_MAX) and write it atomically. */
static void remembered_save(guts_net_node *n)
{
    uint64_t now = (uint64_t)time(NULL);
    size_t np = guts_core_peer_count(n->core);
    for (size_t i = 0; i < np; i++) {
        guts_core_peer_info p;
        guts_net_sa sin;
        /* a link-local address's zone may name another interface next time */
        if (guts_core_peer(n->core, i, &p) != 0 || addr_to_sa(&p.addr, &sin) != 0 ||
            (sin.sa.sa_family == AF_INET6 && sin.in6.sin6_scope_id))
            continue;
        guts_net_remembered *r = NULL;
        for (size_t j = 0; j < n->nremembered && !r; j++)
            if (guts_net_sa_eq(&n->remembered[j].addr, &sin)) r = &n->remembered[j];
        if (!r) {
            if (n->nremembered == GUTS_NET_REMEMBER_MAX) {
                /* the oldest makes room */
                qsort(n->remembered, n->nremembered, sizeof *r, remembered_newer);
                r = &n->remembered[--n->nremembered];
            }
            r = &n->remembered[n->nremembered++];
            r->addr = sin;
        }
        r->seen = now;
    }
    qsort(n->remembered, n->nremembered, sizeof n->remembered[0], remembered_newer);
    char tmp[sizeof n->peers_path + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", n->peers_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    for (size_t i = 0; i < n->nremembered; i++) {
        char as[GUTS_NET_ADDRSTRLEN];
        fprintf(f, "%s %llu\n", guts_net_addr_str(&n->remembered[i].addr, as, sizeof as),
                (unsigned long long)n->remembered[i].seen);
    }
    int bad = fflush(f) != 0 || fsync(fd) != 0 || ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, n->peers_path) != 0) unlink(tmp);
}

static void remember_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    remembered_save(container_of(w, guts_net_node, remember_timer));
}

/* ---- Progress on a terminal -------------------------------------------------- */

/* Terminal width (80 when unknown): a line wider than the screen would wrap
 * and the erase would miss its first half. */
static size_t tty_cols(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    return 80;
}

/* Replace the progress lines with the pulls running now, in one write. */
static void progress_draw(guts_net_node *n)
{
    guts_core_pull_info pulls[GUTS_NET_PROGRESS_LINES];
    char out[(GUTS_NET_PROGRESS_LINES + 1) * GUTS_PROGRESS_LINE_MAX + 256];
    size_t cols = tty_cols(), len = 0, total = guts_core_pulls(n->core, pulls, GUTS_NET_PROGRESS_LINES);
    size_t shown = total < GUTS_NET_PROGRESS_LINES ? total : GUTS_NET_PROGRESS_LINES;
    n->tty.pulls = total;
    if (!n->tty.lines && !shown) return;
    len = guts_net_tty_erase(&n->tty, out, 0, 256);
    uint64_t now = guts_net_now_ms();
    for (size_t i = 0; i <= shown; i++) {
        char line[GUTS_PROGRESS_LINE_MAX];
        if (i == shown) {
            if (total == shown) break;
            snprintf(line, sizeof line, "(%zu more pulls)", total - shown);
        } else {
            const guts_core_pull_info *p = &pulls[i];
            guts_net_sa sin;
            char what[GUTS_KEY_MAX + 32 + GUTS_NET_ADDRSTRLEN], ip[GUTS_NET_ADDRSTRLEN] = "?";
            if (addr_to_sa(&p->addr, &sin) == 0) { /* the host alone, as the CLI shows it */
                guts_net_addr_str(&sin, ip, sizeof ip);
                char *colon = strrchr(ip, ':');
                if (colon) *colon = 0;
            }
            snprintf(what, sizeof what, "pull %.*s from %s", GUTS_KEY_MAX, p->key, ip);
            /* A peer may give more than it announced beyond us: then the
             * count says nothing and no total is shown. */
            uint64_t expect = p->objects <= p->expected ? p->expected : 0;
            guts_progress_format(line, sizeof line, what, p->objects, expect, p->bytes,
                                 (double)(now - p->started) / 1e3);
        }
        size_t k = strlen(line);
        if (k > cols - 1) k = cols - 1;
        if (i) out[len++] = '\n';
        memcpy(out + len, line, k);
        len += k;
        memcpy(out + len, "\033[K", 3);
        len += 3;
        n->tty.lines++;
    }
    ssize_t w = write(STDERR_FILENO, out, len);
    (void)w;
}

static void progress_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    progress_draw(container_of(w, guts_net_node, progress_timer));
}

/* ---- Signals ---------------------------------------------------------------- */

static void leave(guts_net_node *n, int signum)
{
    if (n->leaving) return;
    n->leaving = 1;
    guts_net_logf(&n->log, GUTS_LOG_INFO, "signal %d: leaving", signum);
    guts_core_leave(n->core, guts_net_now_ms());
    drain(n); /* sends LEAVE: the datagram is out before the loop stops */
    ev_break(n->loop, EVBREAK_ALL);
}

static void sigint_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    leave(container_of(w, guts_net_node, sigint), SIGINT);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    leave(container_of(w, guts_net_node, sigterm), SIGTERM);
}

/* ---- Lifecycle ---------------------------------------------------------------- */

/* Listener and unicast socket share one port number. */
static int open_sockets(guts_net_node *n)
{
    static const guts_net_tcp_cbs cbs = {.on_open = on_open,
                                         .on_frame = on_frame,
                                         .on_writable = on_writable,
                                         .on_closed = on_closed};
    int tries = guts_net_sa_port(&n->opts.listen) ? 1 : PORT_TRIES;
    for (int i = 0; i < tries; i++) {
        /* keyed, a frame on the wire carries the seal's tag as well */
        size_t frame_max = n->opts.max_frame + (n->seal ? GUTS_SEAL_FRAME_OVERHEAD : 0);
        int rc = guts_net_tcp_open(&n->tcp, n->loop, &n->opts.listen, frame_max, &cbs, &n->log);
        if (rc != 0) return rc;
        guts_net_sa u = n->opts.listen;
        guts_net_sa_set_port(&u, guts_net_sa_port(&n->tcp.local));
        rc = guts_net_udp_open(&n->udp, n->loop, &n->opts.group4, &n->opts.group6,
                               (const char(*)[IF_NAMESIZE])n->opts.ifaces, n->opts.nifaces, &u,
                               on_dgram, &n->log);
        if (rc == 0) return 0;
        guts_net_tcp_shutdown(&n->tcp);
    }
    char as[GUTS_NET_ADDRSTRLEN];
    guts_net_logf(&n->log, GUTS_LOG_ERROR, "cannot open UDP sockets on %s",
                  guts_net_addr_str(&n->opts.listen, as, sizeof as));
    return GUTS_EIO;
}

/* Each open env holds 3 descriptors (data.mdb twice, lock.mdb) and the
 * store keeps every env open: a soft limit of 1,024 would stop a node near
 * 340 repositories. The soft limit goes up to the hard one. */
static void raise_fd_limit(guts_net_node *n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        guts_net_logf(&n->log, GUTS_LOG_WARN, "cannot raise the open file limit from %llu: %s",
                      (unsigned long long)was, strerror(errno));
}

int guts_net_node_open(guts_net_node *n, struct ev_loop *loop, const guts_net_opts *opts,
                       guts_seal *seal)
{
    memset(n, 0, sizeof *n);
    n->seal = seal;
    n->loop = loop;
    n->opts = *opts;
    n->log.level = opts->log_level;
    n->log.tty = &n->tty;
    n->log.recent = &n->recent;
    n->tty.on = isatty(STDERR_FILENO);
    n->tcp.lfd = -1;
    for (int k = 0; k < GUTS_UDP_NFD; k++)
        n->udp.fd[k] = -1;
    n->start_ms = guts_net_now_ms();
    raise_fd_limit(n);
    char as[GUTS_NET_ADDRSTRLEN], as2[GUTS_NET_ADDRSTRLEN];

    int rc = guts_data_open(opts->data, GUTS_DATA_CREATE, &n->data);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR, "cannot open data directory \"%s\": %s", opts->data,
                      guts_store_errmsg());
        return rc;
    }
    /* One node per data dir: a second would announce the same node id (peers
     * would see restarts and leaves) and remove the first's status.json on
     * its way out. The lock comes before anything is written. */
    long holder;
    rc = guts_data_lock(n->data, &holder);
    if (rc == GUTS_EAGAIN) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR,
                      "data directory \"%s\" is in use by another guts-node (pid %ld): "
                      "one node per data directory",
                      opts->data, holder);
        return rc;
    }
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR, "cannot lock data directory \"%s\": %s", opts->data,
                      guts_store_errmsg());
        return rc;
    }
    /* The store's cache of decoded delta bases, per repository: a pull
     * decodes every delta it receives against its base, and the node keeps
     * under issue 5's 64 MB of RssAnon with a few repositories syncing. */
    guts_data_set_cache_bytes(n->data, NET_STORE_CACHE_BYTES);
    rc = guts_data_incarnation_next(n->data, &n->incarnation);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR, "incarnation: %s %s", guts_strerror(rc),
                      guts_store_errmsg());
        return rc;
    }
    snprintf(n->status_path, sizeof n->status_path, "%s/node/status.json", opts->data);
    rc = guts_core_lmdbstore_new(n->data, &n->lstore);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR, "store: %s", guts_strerror(rc));
        return rc;
    }
    guts_core_lmdbstore_iface(n->lstore, &n->store);
    guts_core_lmdbstore_on_damaged(n->lstore, guts_net_damaged_hook, n);
    /* Every repository checked in one child, before any env is open (a
     * fork per repository, each copying the page tables of the envs open
     * before it, took a minute at 1,000). Should this fail, each first
     * open still checks its repository alone. */
    uint64_t t0 = guts_net_now_ms();
    size_t checked = 0, ndamaged = 0;
    rc = guts_core_lmdbstore_verify_all(n->lstore, &checked, &ndamaged);
    if (rc != 0)
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "checking the repositories at start: %s (%s); each is checked when "
                      "first opened instead",
                      guts_strerror(rc), guts_store_errmsg());
    else
        guts_net_logf(&n->log, GUTS_LOG_INFO, "checked %zu repositories in %llu ms, %zu damaged",
                      checked, (unsigned long long)(guts_net_now_ms() - t0), ndamaged);

    rc = open_sockets(n);
    if (rc != 0) return rc;

    guts_core_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.node_id = *guts_data_node_id(n->data);
    cfg.incarnation = n->incarnation;
    cfg.tcp_port = ntohs(guts_net_sa_port(&n->tcp.local));
    cfg.interval_ms = opts->interval_ms;
    cfg.frame_max = opts->max_frame;
    cfg.obj_max = opts->max_object;
    cfg.max_sessions = opts->max_sessions;
    cfg.remote_repos_max = opts->max_remote_repos;
    cfg.peer_repos_max = opts->max_peer_repos;
    cfg.dgram_max = n->seal ? GUTS_SEAL_DGRAM_PLAIN_MAX : 0;
    cfg.store = &n->store;
    cfg.repo_wanted = guts_net_repo_wanted;
    cfg.repo_wanted_arg = &n->opts;
    cfg.events = opts->nhooks > 0 || opts->http_on; /* hooks, /events */
    /* --peer: seeds the core copies every group datagram to */
    guts_addr seeds[GUTS_NET_PEERS_MAX];
    for (size_t i = 0; i < opts->npeers; i++)
        addr_from_sa(&opts->peers[i], &seeds[i]);
    cfg.seeds = seeds;
    cfg.nseeds = (uint32_t)opts->npeers;
    cfg.learned_max = opts->max_learned;
    /* learned addresses of the families this node can send to */
    cfg.learned_lens = (n->udp.fd[GUTS_UDP_UCAST4] >= 0 ? 1u << NET_ADDR4_LEN : 0) |
                       (n->udp.fd[GUTS_UDP_UCAST6] >= 0 ? 1u << NET_ADDR6_LEN : 0);
    if (getrandom(&cfg.seed, sizeof cfg.seed, 0) != sizeof cfg.seed)
        cfg.seed = guts_net_now_ms() ^ ((uint64_t)getpid() << 32);
    guts_net_rate_init(&n->dgram_rate, opts->max_dgram_rate,
                       opts->max_dgram_rate * GUTS_NET_DGRAM_BURST_FACTOR, cfg.seed);
    guts_net_rate_init(&n->conn_rate, opts->max_conn_rate,
                       opts->max_conn_rate * GUTS_NET_CONN_BURST_FACTOR, ~cfg.seed);
    n->tcp.conn_rate = &n->conn_rate;
    rc = guts_core_new(&cfg, &n->core);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_ERROR, "core: %s", guts_strerror(rc));
        return rc;
    }
    if (opts->http_on) {
        rc = guts_net_http_open(&n->http, loop, &opts->http, &n->log, cfg.seed ^ 0x68747470u);
        if (rc == 0) rc = guts_net_web_routes(n);
        if (rc == 0) rc = guts_net_git_open(n);
        if (rc != 0) return rc;
    }
    /* remembered peers are tried like learned ones (given up if silent) */
    snprintf(n->peers_path, sizeof n->peers_path, "%s/node/peers", opts->data);
    remembered_load(n);
    size_t tried = 0;
    for (size_t i = 0; i < n->nremembered; i++) {
        guts_addr a;
        addr_from_sa(&n->remembered[i].addr, &a);
        tried += guts_core_remember(n->core, guts_net_now_ms(), &a) == 0;
    }

    char hex[2 * GUTS_NODE_ID_LEN + 1];
    guts_node_id_to_hex(&cfg.node_id, hex);
    if (n->udp.nifs) {
        char as3[GUTS_NET_ADDRSTRLEN], ifs[GUTS_NET_IFACES_MAX * (IF_NAMESIZE + 10)];
        guts_net_logf(&n->log, GUTS_LOG_INFO,
                      "node %s incarnation %llu data %s: listening on %s, joined group %s / %s "
                      "on %s",
                      hex, (unsigned long long)n->incarnation, opts->data,
                      guts_net_addr_str(&n->tcp.local, as, sizeof as),
                      guts_net_addr_str(&opts->group4, as2, sizeof as2),
                      guts_net_addr_str(&opts->group6, as3, sizeof as3),
                      guts_net_udp_ifaces(&n->udp, ifs, sizeof ifs));
    } else
        guts_net_logf(&n->log, GUTS_LOG_INFO,
                      "node %s incarnation %llu data %s: listening on %s, no multicast", hex,
                      (unsigned long long)n->incarnation, opts->data,
                      guts_net_addr_str(&n->tcp.local, as, sizeof as));
    if (!n->udp.nifs)
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "no multicast (%s): working by unicast only, %s", n->udp.mcast_off,
                      opts->npeers || tried
                          ? "to --peer and remembered addresses and the peers that answer"
                          : "and no --peer given nor remembered: add --peer HOST:PORT of one "
                            "node");
    if (tried)
        guts_net_logf(&n->log, GUTS_LOG_INFO, "trying %zu remembered peer%s from %s", tried,
                      tried == 1 ? "" : "s", n->peers_path);
    if (n->seal) {
        uint8_t id[GUTS_SEAL_KEYID_LEN];
        guts_seal_key_id(n->seal, id);
        size_t more = guts_seal_key_ids(n->seal, NULL, 0) - 1;
        guts_net_logf(&n->log, GUTS_LOG_INFO,
                      "keyed: cluster key %02x%02x%02x%02x from %s%s; datagrams and streams are "
                      "encrypted and authenticated, nodes without this key are ignored",
                      id[0], id[1], id[2], id[3], opts->key_file,
                      more ? " (its other keys open too: a rotation)" : "");
    } else {
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "running open: no --key-file, so datagrams and streams are neither "
                      "authenticated nor encrypted; anyone on the LAN can read and inject");
    }

    ev_init(&n->core_timer, core_timer_cb);
    ev_async_init(&n->flushed, flushed_cb);
    ev_async_start(loop, &n->flushed);
    /* Replicas made from here on are flushed off the loop; without the
     * threads every commit flushes on it, slower but as safe. */
    rc = guts_core_lmdbstore_flush_start(n->lstore, GUTS_NET_FLUSHERS, flush_notify, n);
    if (rc != 0)
        guts_net_logf(&n->log, GUTS_LOG_WARN, "flusher threads: %s; flushing on the loop",
                      guts_strerror(rc));
    ev_timer_init(&n->poll_timer, poll_timer_cb, GUTS_NET_POLL_S, GUTS_NET_POLL_S);
    ev_timer_start(loop, &n->poll_timer);
    ev_timer_init(&n->status_timer, status_timer_cb, GUTS_NET_STATUS_S, GUTS_NET_STATUS_S);
    ev_timer_start(loop, &n->status_timer);
    ev_timer_init(&n->progress_timer, progress_timer_cb, GUTS_NET_PROGRESS_S, GUTS_NET_PROGRESS_S);
    if (n->tty.on) ev_timer_start(loop, &n->progress_timer);
    ev_timer_init(&n->remember_timer, remember_timer_cb, GUTS_NET_REMEMBER_S, GUTS_NET_REMEMBER_S);
    ev_timer_start(loop, &n->remember_timer);
    ev_signal_init(&n->sigint, sigint_cb, SIGINT);
    ev_signal_start(loop, &n->sigint);
    ev_signal_init(&n->sigterm, sigterm_cb, SIGTERM);
    ev_signal_start(loop, &n->sigterm);
    guts_net_keys_start(n);
    if ((rc = guts_net_hooks_start(n))) return rc;

    poll_local(n); /* prime: the core scans the store itself at start */
    guts_core_on_timer(n->core, guts_net_now_ms());
    drain(n);
    write_status(n);
    return 0;
}

int guts_net_node_run(guts_net_node *n)
{
    ev_run(n->loop, 0);
    return n->exit_code;
}

void guts_net_node_close(guts_net_node *n)
{
    if (n->loop) {
        ev_timer_stop(n->loop, &n->core_timer);
        ev_timer_stop(n->loop, &n->poll_timer);
        ev_async_stop(n->loop, &n->flushed);
        ev_timer_stop(n->loop, &n->status_timer);
        ev_timer_stop(n->loop, &n->progress_timer);
        ev_timer_stop(n->loop, &n->remember_timer);
        ev_signal_stop(n->loop, &n->sigint);
        ev_signal_stop(n->loop, &n->sigterm);
        guts_net_keys_stop(n);
        guts_net_hooks_stop(n);
    }
    /* The core asked for every stream to close when it left; the rest go now
     * without telling it (it is about to be freed). */
    if (n->core && n->peers_path[0]) remembered_save(n);
    guts_net_web_wake(n, 1); /* /events streams end: none may stay suspended */
    guts_net_git_stop(n);    /* and pack streams */
    guts_net_http_close(&n->http); /* its handlers read the core */
    guts_net_git_close(n);   /* its threads, once nothing reads their pipes */
    guts_core *core = n->core;
    n->core = NULL;
    if (n->tcp.lfd >= 0 || n->tcp.conns) guts_net_tcp_shutdown(&n->tcp);
    guts_net_udp_close(&n->udp, n->loop);
    if (core) guts_core_free(core);
    guts_seal_free(n->seal);
    free(n->sealbuf);
    if (n->status_path[0]) unlink(n->status_path);
    if (n->tty.lines) {
        char erase[256];
        ssize_t w = write(STDERR_FILENO, erase, guts_net_tty_erase(&n->tty, erase, 0, sizeof erase));
        (void)w;
    }
    if (n->lstore) guts_core_lmdbstore_free(n->lstore);
    if (n->data) guts_data_close(n->data);
    free(n->watch);
    free(n->damaged);
    memset(n, 0, sizeof *n);
}
