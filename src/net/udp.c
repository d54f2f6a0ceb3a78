/* udp.c - multicast discovery and unicast datagrams.
 *
 * Several nodes on one host must all hear the group, so the group socket is
 * bound to the group address and port with SO_REUSEADDR and SO_REUSEPORT
 * (binding to the group address, not INADDR_ANY, keeps unicast traffic to
 * that port away from it). But a unicast datagram to a port shared by
 * several sockets reaches only one of them, so nothing is ever sent from the
 * group socket: every datagram, multicast included, leaves from the node's
 * own unicast socket, bound to the same port number as its TCP listener.
 * The source address a peer sees is then unique per node and is where
 * replies and --peer announces go.
 *
 * Multicast: TTL 1 (never past the first router), loop on (nodes on one
 * host find each other), IP_MULTICAST_ALL off (Linux would otherwise deliver
 * every group joined by any socket on the host to this one), and the
 * outgoing interface pinned when --iface is given.
 *
 * Without multicast (no route for the group, as in a namespace or container
 * with no default route; or an --iface without the MULTICAST flag) the node
 * still runs: the group socket is left out, the cause is kept in
 * u->mcast_off for one warning, and group datagrams are not sent at all
 * (each would fail with ENETUNREACH). Unicast (--peer, answers to peers
 * heard by unicast, learned and remembered peers) then carries everything.
 * The join is tried again now and then (guts_net_udp_rejoin): a laptop that
 * starts before its network is up gets multicast once it is, no restart.
 *
 * Receive reads into a buffer one byte larger than GUTS_DGRAM_DROP so
 * MSG_TRUNC (or the extra byte) tells an oversize datagram, dropped unread.
 * Send never blocks: datagrams are periodic, so on EAGAIN one is dropped and
 * the next announce replaces it.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"

/* Receive at most this many datagrams per wakeup so a flood on one socket
 * can't starve streams and timers. */
#define UDP_BURST_MAX 64

/* First IPv4 address of iface; left unchanged when it has none. */
static void iface_addr(const char *iface, struct in_addr *out)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0) return;
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
        if (p->ifa_addr && p->ifa_addr->sa_family == AF_INET && strcmp(p->ifa_name, iface) == 0) {
            *out = ((struct sockaddr_in *)p->ifa_addr)->sin_addr;
            break;
        }
    freeifaddrs(ifa);
}

/* 1 when iface has the MULTICAST flag (or cannot be asked: the join will
 * tell), 0 when it has not. */
static int iface_multicast(const char *iface)
{
    struct ifaddrs *ifa = NULL;
    int on = 1;
    if (getifaddrs(&ifa) != 0) return 1;
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
        if (strcmp(p->ifa_name, iface) == 0) {
            on = (p->ifa_flags & IFF_MULTICAST) != 0;
            break;
        }
    freeifaddrs(ifa);
    return on;
}

static int sockopt(const guts_net_log *log, int fd, int level, int name, const void *v,
                   socklen_t len, const char *what)
{
    if (setsockopt(fd, level, name, v, len) == 0) return 0;
    guts_net_logf(log, GUTS_LOG_ERROR, "udp: setsockopt %s: %s", what, strerror(errno));
    return -1;
}

static void drain(guts_net_udp *u, int fd)
{
    for (int i = 0; i < UDP_BURST_MAX; i++) {
        struct sockaddr_in from;
        struct iovec iov = {.iov_base = u->buf, .iov_len = sizeof u->buf};
        struct msghdr mh = {
            .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                guts_net_logf(u->log, GUTS_LOG_WARN, "udp: recvmsg: %s", strerror(errno));
            return;
        }
        if ((mh.msg_flags & MSG_TRUNC) || (size_t)n > GUTS_DGRAM_DROP) {
            u->stats.rx_oversize++;
            continue;
        }
        if (mh.msg_namelen < sizeof from || from.sin_family != AF_INET) continue;
        u->stats.rx++;
        u->stats.rx_bytes += (uint64_t)n;
        u->via_unicast = fd == u->ucast_fd;
        u->on_dgram(u, u->buf, (size_t)n, &from);
    }
}

static void mcast_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_udp *u = container_of(w, guts_net_udp, mcast_io);
    drain(u, u->mcast_fd);
}

static void ucast_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_udp *u = container_of(w, guts_net_udp, ucast_io);
    drain(u, u->ucast_fd);
}

/* Open the group socket and join; on failure u->mcast_off says why. */
static int mcast_open(guts_net_udp *u, const struct sockaddr_in *group,
                      const struct ip_mreqn *mreq)
{
    int one = 1, zero = 0;
    char a[32];
    const char *what = "socket";
    u->mcast_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (u->mcast_fd < 0) goto fail;
    what = "SO_REUSEADDR";
    if (setsockopt(u->mcast_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
    what = "SO_REUSEPORT";
    if (setsockopt(u->mcast_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) goto fail;
    what = "bind";
    if (bind(u->mcast_fd, (const struct sockaddr *)group, sizeof *group) < 0) goto fail;
    what = "IP_MULTICAST_ALL";
    if (setsockopt(u->mcast_fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero) != 0) goto fail;
    what = "IP_ADD_MEMBERSHIP";
    if (setsockopt(u->mcast_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq, sizeof *mreq) != 0) goto fail;
    return 0;
fail:
    /* ENODEV from the join: the kernel found no route (so no interface)
     * for the group */
    snprintf(u->mcast_off, sizeof u->mcast_off, "%s %s: %s%s", what,
             guts_net_addr_str(group, a, sizeof a), strerror(errno),
             errno == ENODEV ? " (no multicast route or interface)" : "");
    return -1;
}

/* Join the group (u->mreq on u->iface): 0 and the watcher started, or -1
 * with u->mcast_off saying why. */
static int group_try(guts_net_udp *u)
{
    if (u->mreq.imr_ifindex && !iface_multicast(u->iface)) {
        snprintf(u->mcast_off, sizeof u->mcast_off, "interface %s has no MULTICAST flag",
                 u->iface);
        return -1;
    }
    if (mcast_open(u, &u->group, &u->mreq) != 0) {
        if (u->mcast_fd >= 0) close(u->mcast_fd);
        u->mcast_fd = -1;
        return -1;
    }
    u->mcast_off[0] = 0;
    ev_io_init(&u->mcast_io, mcast_cb, u->mcast_fd, EV_READ);
    ev_io_start(u->loop, &u->mcast_io);
    return 0;
}

int guts_net_udp_rejoin(guts_net_udp *u)
{
    if (u->mcast_fd >= 0) return 0;
    return group_try(u) == 0 ? 1 : 0;
}

int guts_net_udp_open(guts_net_udp *u, struct ev_loop *loop, const struct sockaddr_in *group,
                      const char *iface, const struct sockaddr_in *ucast_addr, guts_net_udp_cb *cb,
                      const guts_net_log *log)
{
    memset(u, 0, sizeof *u);
    u->mcast_fd = u->ucast_fd = -1;
    u->group = *group;
    u->on_dgram = cb;
    u->log = log;
    int zero = 0;
    unsigned char ttl = 1, loopon = 1;
    struct ip_mreqn mreq;
    memset(&mreq, 0, sizeof mreq);
    mreq.imr_multiaddr = group->sin_addr;
    if (iface && *iface) {
        mreq.imr_ifindex = (int)if_nametoindex(iface);
        if (mreq.imr_ifindex == 0) {
            guts_net_logf(log, GUTS_LOG_ERROR, "udp: no interface %s", iface);
            return GUTS_EIO;
        }
    }
    char a[32];

    u->loop = loop;
    u->mreq = mreq;
    if (iface) snprintf(u->iface, sizeof u->iface, "%s", iface);

    /* Unicast socket: sends everything, receives what is addressed to us. */
    u->ucast_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (u->ucast_fd < 0) goto fail_errno;
    /* The interface's own address as the source: with only an index, Linux
     * sends from 0.0.0.0 on lo and peers could not reply. */
    struct ip_mreqn mif;
    memset(&mif, 0, sizeof mif);
    mif.imr_ifindex = mreq.imr_ifindex;
    if (mif.imr_ifindex) iface_addr(iface, &mif.imr_address);
    if (sockopt(log, u->ucast_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl,
                "IP_MULTICAST_TTL") ||
        sockopt(log, u->ucast_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loopon, sizeof loopon,
                "IP_MULTICAST_LOOP") ||
        sockopt(log, u->ucast_fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero,
                "IP_MULTICAST_ALL"))
        goto fail;
    if (mif.imr_ifindex &&
        sockopt(log, u->ucast_fd, IPPROTO_IP, IP_MULTICAST_IF, &mif, sizeof mif, "IP_MULTICAST_IF"))
        goto fail;
    if (bind(u->ucast_fd, (const struct sockaddr *)ucast_addr, sizeof *ucast_addr) < 0) {
        guts_net_logf(log, GUTS_LOG_DEBUG, "udp: bind %s: %s",
                      guts_net_addr_str(ucast_addr, a, sizeof a), strerror(errno));
        goto fail;
    }

    /* Group socket: receive only. Any failure here leaves the node
     * without multicast, not without a network. */
    group_try(u);
    ev_io_init(&u->ucast_io, ucast_cb, u->ucast_fd, EV_READ);
    ev_io_start(loop, &u->ucast_io);
    return 0;

fail_errno:
    guts_net_logf(log, GUTS_LOG_ERROR, "udp: socket: %s", strerror(errno));
fail:
    if (u->mcast_fd >= 0) close(u->mcast_fd);
    if (u->ucast_fd >= 0) close(u->ucast_fd);
    u->mcast_fd = u->ucast_fd = -1;
    return GUTS_EIO;
}

int guts_net_udp_send(guts_net_udp *u, const struct sockaddr_in *to, const void *buf, size_t len)
{
    if (!to && u->mcast_fd < 0) return 0; /* no multicast: unicast only */
    const struct sockaddr_in *dst = to ? to : &u->group;
    ssize_t n = sendto(u->ucast_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)dst, sizeof *dst);
    if (n < 0 || (size_t)n != len) {
        u->stats.tx_dropped++;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            char a[32];
            guts_net_logf(u->log, GUTS_LOG_DEBUG, "udp: sendto %s: %s",
                          guts_net_addr_str(dst, a, sizeof a), strerror(errno));
            return GUTS_EIO;
        }
        return 0;
    }
    u->stats.tx++;
    u->stats.tx_bytes += len;
    return 0;
}

void guts_net_udp_close(guts_net_udp *u, struct ev_loop *loop)
{
    if (u->mcast_fd >= 0) {
        ev_io_stop(loop, &u->mcast_io);
        close(u->mcast_fd); /* closing leaves the group */
        u->mcast_fd = -1;
    }
    if (u->ucast_fd >= 0) {
        ev_io_stop(loop, &u->ucast_io);
        close(u->ucast_fd);
        u->ucast_fd = -1;
    }
}
