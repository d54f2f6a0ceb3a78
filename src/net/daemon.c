/* daemon.c - the node: libev events in, core actions out; its lifecycle.
 *
 * Every event (datagram, stream opened, frame, stream drained or closed,
 * timer, local write, signal) becomes one guts_core_on_* call with the
 * monotonic time in milliseconds, followed by draining the core's actions
 * and performing each: datagrams go out of the unicast socket (to the group,
 * and copies to every --peer), streams are connected or fed or closed, the
 * one core timer is re-armed, log lines are printed.
 *
 * The core never sees a clock: `now` is CLOCK_MONOTONIC (ev_now is wall
 * clock based and jumps with it), read once per event; the rate limits and
 * tcp.c's timeouts use the same clock (guts_net_now_ms), so a wall clock
 * stepped either way changes no duration.
 *
 * Split by concern: daemon.c (open, run, close, signals, the address
 * forms), daemon_io.c (the core's actions performed, socket events fed
 * to it), daemon_local.c (other processes' writes polled), daemon_status.c
 * (status.json and the terminal's progress lines), daemon_peers.c
 * (remembered peers).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "progress.h"
#include "guts/refmerge.h"
#include "daemon.h"

/* 16 MiB: the deltas of a pull mostly sit on recently received bases. */
#define NET_STORE_CACHE_BYTES ((size_t)16 << 20)

/* An ephemeral TCP port whose number is taken for UDP is retried with a new
 * one this many times; a collision is rare, 16 in a row is a broken host. */
#define PORT_TRIES 16

/* The core's addresses are the daemon's wire form (peer exchange carries
 * them as they are, docs/protocol.md "PEERS"), address then port, both in
 * network order: 6 bytes for IPv4, 18 for IPv6, and 22 for a link-local
 * IPv6 address, its zone (the interface index) appended. The core never
 * puts the 22-byte form in PEERS (over GUTS_WIRE_ADDR_MAX): a link-local
 * address means nothing off its link, where the group reaches anyway. */
#define NET_ADDR4_LEN 6
#define NET_ADDR6_LEN 18
#define NET_ADDR6Z_LEN 22

void guts_net_addr_from_sa(const guts_net_sa *sa, guts_addr *out)
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

int guts_net_addr_to_sa(const guts_addr *a, guts_net_sa *out)
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

/* ---- Signals ---------------------------------------------------------------- */

static void leave(guts_net_node *n, int signum)
{
    if (n->leaving) return;
    n->leaving = 1;
    guts_net_logf(&n->log, GUTS_LOG_INFO, "signal %d: leaving", signum);
    guts_core_leave(n->core, guts_net_now_ms());
    guts_net_node_drain(n); /* sends LEAVE: the datagram is out before the loop stops */
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
    static const guts_net_tcp_cbs cbs = {.on_open = guts_net_node_on_open,
                                         .on_frame = guts_net_node_on_frame,
                                         .on_writable = guts_net_node_on_writable,
                                         .on_closed = guts_net_node_on_closed};
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
                               guts_net_node_on_dgram, &n->log);
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
    cfg.events = opts->nhooks > 0 || opts->http_on ? GUTS_CORE_EVENTS_ALL : 0; /* hooks, /events */
    /* --peer: seeds the core copies every group datagram to */
    guts_addr seeds[GUTS_NET_PEERS_MAX];
    for (size_t i = 0; i < opts->npeers; i++)
        guts_net_addr_from_sa(&opts->peers[i], &seeds[i]);
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
    guts_net_node_remembered_load(n);
    size_t tried = 0;
    for (size_t i = 0; i < n->nremembered; i++) {
        guts_addr a;
        guts_net_addr_from_sa(&n->remembered[i].addr, &a);
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

    ev_init(&n->core_timer, guts_net_node_core_timer_cb);
    ev_async_init(&n->flushed, guts_net_node_flushed_cb);
    ev_async_start(loop, &n->flushed);
    /* Replicas made from here on are flushed off the loop; without the
     * threads every commit flushes on it, slower but as safe. */
    rc = guts_core_lmdbstore_flush_start(n->lstore, GUTS_NET_FLUSHERS, guts_net_node_flush_notify,
                                         n);
    if (rc != 0)
        guts_net_logf(&n->log, GUTS_LOG_WARN, "flusher threads: %s; flushing on the loop",
                      guts_strerror(rc));
    ev_timer_init(&n->poll_timer, guts_net_node_poll_timer_cb, GUTS_NET_POLL_S, GUTS_NET_POLL_S);
    ev_timer_start(loop, &n->poll_timer);
    ev_timer_init(&n->status_timer, guts_net_node_status_timer_cb, GUTS_NET_STATUS_S,
                  GUTS_NET_STATUS_S);
    ev_timer_start(loop, &n->status_timer);
    ev_timer_init(&n->progress_timer, guts_net_node_progress_timer_cb, GUTS_NET_PROGRESS_S,
                  GUTS_NET_PROGRESS_S);
    if (n->tty.on) ev_timer_start(loop, &n->progress_timer);
    ev_timer_init(&n->remember_timer, guts_net_node_remember_timer_cb, GUTS_NET_REMEMBER_S,
                  GUTS_NET_REMEMBER_S);
    ev_timer_start(loop, &n->remember_timer);
    ev_signal_init(&n->sigint, sigint_cb, SIGINT);
    ev_signal_start(loop, &n->sigint);
    ev_signal_init(&n->sigterm, sigterm_cb, SIGTERM);
    ev_signal_start(loop, &n->sigterm);
    guts_net_keys_start(n);
    if ((rc = guts_net_hooks_start(n))) return rc;

    guts_net_node_poll_local(n); /* prime: the core scans the store itself at start */
    guts_core_on_timer(n->core, guts_net_now_ms());
    guts_net_node_drain(n);
    guts_net_node_write_status(n);
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
    if (n->core && n->peers_path[0]) guts_net_node_remembered_save(n);
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
