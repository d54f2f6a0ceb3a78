/* udp.c - multicast discovery and unicast datagrams, both IP families,
 * every interface.
 *
 * Several nodes on one host must all hear the groups, so each group socket
 * (one per family) is bound to the group's port with SO_REUSEADDR and
 * SO_REUSEPORT: the IPv4 one to the group address itself (which keeps
 * unicast traffic to that port away from it); the IPv6 one to [::], since
 * Linux binds a link-local-scope group address (ff12::) to one interface
 * only. But a unicast datagram to a port shared by several sockets reaches
 * only one of them, so nothing is ever sent from a group socket: every
 * datagram, group datagrams included, leaves from the node's own unicast
 * socket of its family, bound to the same port number as its TCP listener.
 * The source address a peer sees is then unique per node and is where
 * replies and --peer announces go. IPv6 sockets are IPV6_V6ONLY: each
 * family has its own pair, and a host without IPv6 (no kernel support, or
 * net.ipv6.conf.all.disable_ipv6) runs IPv4 alone after one warning.
 *
 * Interfaces. The groups are joined on every interface that is up and has
 * the MULTICAST flag and an address of the family: IPv4 on loopback only
 * when no other interface can carry it, IPv6 never on loopback (nodes on
 * one host hear each other on any real interface, or on IPv4 loopback).
 * --iface narrows this to the interfaces it names (loopback included when
 * named). guts_net_udp_scan looks again (the daemon calls it every
 * GUTS_NET_IFSCAN_TICKS status ticks): a new interface is joined, one gone
 * or down is left, so a laptop joining Wi-Fi or a VPN coming up is picked
 * up without a restart. A group datagram goes out of every joined
 * interface, the outgoing one set per send (IP_MULTICAST_IF with the
 * interface's address as source, IPV6_MULTICAST_IF): a node on two
 * segments is heard on both, and replicates between them like any member.
 * Memberships are explicit per interface index, so a host without a
 * multicast route still joins and sends.
 *
 * Multicast options: TTL / hop limit 1 (never past the first router),
 * loop on (nodes on one host find each other), IP(V6)_MULTICAST_ALL off
 * (Linux would otherwise deliver every group joined by any socket on the
 * host to this one).
 *
 * With no interface to join (none up with MULTICAST, or the --iface ones
 * lack it) the node still runs: the cause is kept in u->mcast_off for one
 * warning, group datagrams are not sent at all, and unicast (--peer,
 * answers to peers heard by unicast, learned and remembered peers) carries
 * everything until a scan finds an interface.
 *
 * Receive reads into a buffer one byte larger than GUTS_DGRAM_DROP so
 * MSG_TRUNC (or the extra byte) tells an oversize datagram, dropped unread.
 * Send never blocks: datagrams are periodic, so on EAGAIN one is dropped and
 * the next announce replaces it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

#ifndef IPV6_MULTICAST_ALL
#define IPV6_MULTICAST_ALL 29 /* Linux 4.20; older headers lack the name */
#endif

/* Receive at most this many datagrams per wakeup so a flood on one socket
 * can't starve streams and timers. */
#define UDP_BURST_MAX 64

enum { FAM4 = 1, FAM6 = 2 };

/* 1 when IPv6 is switched off for the whole host (the socket calls still
 * work then, but no interface has an IPv6 address and nothing gets out). */
static int ipv6_disabled(void)
{
    FILE *f = fopen("/proc/sys/net/ipv6/conf/all/disable_ipv6", "re");
    if (!f) return 0; /* no such file: no IPv6 in the kernel, socket() will say */
    int ch = fgetc(f);
    fclose(f);
    return ch == '1';
}

/* Whether a datagram on a group socket was sent to the group and came in
 * on an interface the group is joined on here, from the arrival interface
 * and destination the kernel reports (IP_PKTINFO, IPV6_PKTINFO). Linux
 * delivers a group to sockets that joined it on another interface (IPv6
 * always; IPv4 too on kernels seen in the field), so without this a node
 * narrowed by --iface would hear the group on interfaces another node on
 * the host joined; and the IPv6 socket is bound to [::]:PORT, so unicast
 * to that port lands on it too. */
static int group_here(const guts_net_udp *u, struct msghdr *mh, int v6)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        unsigned index;
        if (v6 && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            if (memcmp(&pi.ipi6_addr, &u->group6.in6.sin6_addr, sizeof pi.ipi6_addr) != 0)
                return 0;
            index = pi.ipi6_ifindex;
        } else if (!v6 && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            if (pi.ipi_addr.s_addr != u->group4.in.sin_addr.s_addr) return 0;
            index = (unsigned)pi.ipi_ifindex;
        } else {
            continue;
        }
        for (size_t i = 0; i < u->nifs; i++)
            if (u->ifs[i].index == index) return (u->ifs[i].joined & (v6 ? FAM6 : FAM4)) != 0;
        return 0;
    }
    return 0;
}

static void drain(guts_net_udp *u, int k)
{
    int fd = u->fd[k];
    int want = k == GUTS_UDP_UCAST6 || k == GUTS_UDP_MCAST6 ? AF_INET6 : AF_INET;
    for (int i = 0; i < UDP_BURST_MAX; i++) {
        guts_net_sa from;
        memset(&from, 0, sizeof from);
        struct iovec iov = {.iov_base = u->buf, .iov_len = sizeof u->buf};
        union {
            struct cmsghdr h;
            uint8_t b[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        } ctl;
        int group = k == GUTS_UDP_MCAST4 || k == GUTS_UDP_MCAST6;
        struct msghdr mh = {.msg_name = &from,
                            .msg_namelen = sizeof from,
                            .msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = group ? ctl.b : NULL,
                            .msg_controllen = group ? sizeof ctl.b : 0};
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
        /* no reply could reach an unspecified source */
        if (from.sa.sa_family != want || mh.msg_namelen < guts_net_sa_len(&from) ||
            guts_net_sa_any(&from))
            continue;
        if (group && !group_here(u, &mh, k == GUTS_UDP_MCAST6)) continue;
        if (want == AF_INET6) from.in6.sin6_flowinfo = 0;
        u->stats.rx++;
        u->stats.rx_bytes += (uint64_t)n;
        u->via_unicast = k == GUTS_UDP_UCAST4 || k == GUTS_UDP_UCAST6;
        u->on_dgram(u, u->buf, (size_t)n, &from);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_udp *u = w->data;
    drain(u, (int)(w - u->io));
}

static void watch(guts_net_udp *u, int k)
{
    ev_io_init(&u->io[k], io_cb, u->fd[k], EV_READ);
    u->io[k].data = u;
    /* Datagrams before timers: after a stall (a loaded machine, a long
     * callback) the announces queued meanwhile are read before the core's
     * timer can expire their senders. */
    ev_set_priority(&u->io[k], EV_MAXPRI);
    ev_io_start(u->loop, &u->io[k]);
}

/* The unicast socket of addr's family bound to addr: 0, or -1 (errno). */
static int ucast_open(guts_net_udp *u, const guts_net_sa *addr)
{
    int v6 = addr->sa.sa_family == AF_INET6, k = v6 ? GUTS_UDP_UCAST6 : GUTS_UDP_UCAST4;
    int one = 1, zero = 0, hops = 1;
    unsigned char ttl = 1, loopon = 1;
    int fd = socket(addr->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int bad = v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) ||
                       setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) ||
                       setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one, sizeof one)
                 : setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) ||
                       setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loopon, sizeof loopon) ||
                       setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
    if (bad || bind(fd, &addr->sa, guts_net_sa_len(addr)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    u->fd[k] = fd;
    watch(u, k);
    return 0;
}

/* The group socket of a family (receive only); on failure u->mcast_off
 * says why and the family has no multicast. */
static void mcast_open(guts_net_udp *u, int v6)
{
    const guts_net_sa *g = v6 ? &u->group6 : &u->group4;
    guts_net_sa at = *g;
    int one = 1, zero = 0;
    const char *what = "socket";
    char a[GUTS_NET_ADDRSTRLEN];
    if (v6) { /* [::]:PORT: ff12:: would bind to one interface */
        memset(&at, 0, sizeof at);
        at.in6.sin6_family = AF_INET6;
        at.in6.sin6_port = g->in6.sin6_port;
    }
    int fd = socket(g->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) goto fail;
    what = "SO_REUSEADDR";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) goto fail;
    what = "SO_REUSEPORT";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) goto fail;
    what = v6 ? "IPV6_V6ONLY" : "IP_MULTICAST_ALL";
    if (v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)
           : setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero))
        goto fail;
    /* without it (before Linux 4.20) only other nodes' groups could leak in */
    if (v6) setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, &zero, sizeof zero);
    what = v6 ? "IPV6_RECVPKTINFO" : "IP_PKTINFO"; /* arrival interface, destination: group_here */
    if (v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one)
           : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one))
        goto fail;
    what = "bind";
    if (bind(fd, &at.sa, guts_net_sa_len(&at)) < 0) goto fail;
    u->fd[v6 ? GUTS_UDP_MCAST6 : GUTS_UDP_MCAST4] = fd;
    watch(u, v6 ? GUTS_UDP_MCAST6 : GUTS_UDP_MCAST4);
    return;
fail:
    snprintf(u->mcast_off, sizeof u->mcast_off, "%s for group %s: %s", what,
             guts_net_addr_str(g, a, sizeof a), strerror(errno));
    if (fd >= 0) close(fd);
}

/* Join (join 1) or leave the group of family fam on interface f. */
static int membership(guts_net_udp *u, const guts_net_iface *f, int fam, int join)
{
    if (fam == FAM4) {
        struct ip_mreqn m = {.imr_multiaddr = u->group4.in.sin_addr,
                             .imr_ifindex = (int)f->index};
        return setsockopt(u->fd[GUTS_UDP_MCAST4], IPPROTO_IP,
                          join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m, sizeof m);
    }
    struct ipv6_mreq m = {.ipv6mr_multiaddr = u->group6.in6.sin6_addr,
                          .ipv6mr_interface = f->index};
    return setsockopt(u->fd[GUTS_UDP_MCAST6], IPPROTO_IPV6,
                      join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &m, sizeof m);
}

static int named(const guts_net_udp *u, const char *name)
{
    for (size_t i = 0; i < u->nonly; i++)
        if (strcmp(u->only[i], name) == 0) return 1;
    return 0;
}

/* An interface as a scan sees it. */
typedef struct cand {
    guts_net_iface f;
    int fams;     /* FAM4 | FAM6: has an address of the family */
    int loopback; /* IFF_LOOPBACK */
    int mcast;    /* up with IFF_MULTICAST */
} cand;

/* The scan; log_joins 0 at start (the daemon's start line names them). */
static size_t scan(guts_net_udp *u, int log_joins)
{
    struct ifaddrs *ifa = NULL;
    cand c[GUTS_NET_IFACES_MAX];
    size_t nc = 0;
    char g[GUTS_NET_ADDRSTRLEN];
    if (getifaddrs(&ifa) != 0) return u->nifs; /* keep what we have */
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || (p->ifa_addr->sa_family != AF_INET && p->ifa_addr->sa_family != AF_INET6))
            continue;
        if (u->nonly && !named(u, p->ifa_name)) continue;
        size_t i = 0;
        while (i < nc && strcmp(c[i].f.name, p->ifa_name) != 0)
            i++;
        if (i == nc) {
            if (nc == GUTS_NET_IFACES_MAX || strlen(p->ifa_name) >= IF_NAMESIZE) continue;
            memset(&c[nc], 0, sizeof c[nc]);
            strcpy(c[nc].f.name, p->ifa_name);
            c[nc].f.index = if_nametoindex(p->ifa_name);
            c[nc].loopback = (p->ifa_flags & IFF_LOOPBACK) != 0;
            c[nc].mcast = (p->ifa_flags & IFF_UP) && (p->ifa_flags & IFF_MULTICAST);
            if (!c[nc].f.index) continue;
            nc++;
        }
        if (p->ifa_addr->sa_family == AF_INET) {
            if (!(c[i].fams & FAM4)) c[i].f.addr4 = ((struct sockaddr_in *)p->ifa_addr)->sin_addr;
            c[i].fams |= FAM4;
        } else {
            c[i].fams |= FAM6;
        }
    }
    freeifaddrs(ifa);
    /* IPv4 on loopback only when no other interface carries it (or named) */
    int other4 = 0;
    for (size_t i = 0; i < nc; i++)
        other4 |= c[i].mcast && !c[i].loopback && (c[i].fams & FAM4);
    for (size_t i = 0; i < nc; i++) {
        int want = 0;
        if (c[i].mcast) {
            if ((c[i].fams & FAM4) && u->fd[GUTS_UDP_MCAST4] >= 0 &&
                (!c[i].loopback || u->nonly || !other4))
                want |= FAM4;
            if ((c[i].fams & FAM6) && u->fd[GUTS_UDP_MCAST6] >= 0 && !c[i].loopback)
                want |= FAM6;
        }
        c[i].f.joined = want;
    }
    /* leave what is no longer wanted (gone, down, or its index changed) */
    size_t keep = 0;
    for (size_t j = 0; j < u->nifs; j++) {
        guts_net_iface *f = &u->ifs[j];
        const cand *now = NULL;
        for (size_t i = 0; i < nc && !now; i++)
            if (c[i].f.index == f->index && strcmp(c[i].f.name, f->name) == 0) now = &c[i];
        for (int fam = FAM4; fam <= FAM6; fam <<= 1) {
            if (!(f->joined & fam) || (now && (now->f.joined & fam))) continue;
            membership(u, f, fam, 0); /* fails when the interface is gone: no matter */
            f->joined &= ~fam;
            guts_net_logf(u->log, GUTS_LOG_INFO, "left group %s on %s (%s)",
                          guts_net_addr_str(fam == FAM4 ? &u->group4 : &u->group6, g, sizeof g),
                          f->name, now ? "down, or no multicast or address now" : "gone");
        }
        if (now) f->addr4 = now->f.addr4;
        if (f->joined) u->ifs[keep++] = *f;
    }
    u->nifs = keep;
    /* join what is new */
    char why[sizeof u->mcast_off] = "";
    for (size_t i = 0; i < nc; i++) {
        guts_net_iface *f = NULL;
        for (size_t j = 0; j < u->nifs && !f; j++)
            if (u->ifs[j].index == c[i].f.index) f = &u->ifs[j];
        for (int fam = FAM4; fam <= FAM6; fam <<= 1) {
            if (!(c[i].f.joined & fam) || (f && (f->joined & fam))) continue;
            if (membership(u, &c[i].f, fam, 1) != 0) {
                /* the name is NUL-terminated within IF_NAMESIZE, but gcc -O2
                 * cannot tell and -Wformat-truncation fails the build: bound it */
                snprintf(why, sizeof why, "joining %s on %.*s: %s",
                         guts_net_addr_str(fam == FAM4 ? &u->group4 : &u->group6, g, sizeof g),
                         (int)sizeof c[i].f.name, c[i].f.name, strerror(errno));
                guts_net_logf(u->log, GUTS_LOG_DEBUG, "udp: %s", why);
                continue;
            }
            if (!f) {
                if (u->nifs == GUTS_NET_IFACES_MAX) {
                    membership(u, &c[i].f, fam, 0);
                    continue;
                }
                f = &u->ifs[u->nifs++];
                *f = c[i].f;
                f->joined = 0;
            }
            f->joined |= fam;
            if (log_joins)
                guts_net_logf(u->log, GUTS_LOG_INFO, "joined group %s on %s",
                              guts_net_addr_str(fam == FAM4 ? &u->group4 : &u->group6, g,
                                                sizeof g),
                              f->name);
        }
    }
    if (u->nifs) {
        u->mcast_off[0] = 0;
    } else if (why[0]) {
        snprintf(u->mcast_off, sizeof u->mcast_off, "%s", why);
    } else if (u->fd[GUTS_UDP_MCAST4] >= 0 || u->fd[GUTS_UDP_MCAST6] >= 0) {
        const char *lacks = NULL;
        for (size_t i = 0; i < nc && !lacks; i++)
            if (!c[i].mcast) lacks = c[i].f.name;
        if (u->nonly == 1 && lacks)
            snprintf(u->mcast_off, sizeof u->mcast_off,
                     "interface %s is down or has no MULTICAST flag", lacks);
        else
            snprintf(u->mcast_off, sizeof u->mcast_off,
                     "no %sinterface is up with the MULTICAST flag and an address",
                     u->nonly ? "--iface " : "");
    }
    return u->nifs;
}

size_t guts_net_udp_scan(guts_net_udp *u)
{
    return scan(u, 1);
}

const char *guts_net_udp_ifaces(const guts_net_udp *u, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < u->nifs && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s%s", i ? ", " : "", u->ifs[i].name,
                         u->ifs[i].joined == FAM4   ? " (IPv4)"
                         : u->ifs[i].joined == FAM6 ? " (IPv6)"
                                                    : "");
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

int guts_net_udp_open(guts_net_udp *u, struct ev_loop *loop, const guts_net_sa *group4,
                      const guts_net_sa *group6, const char (*only)[IF_NAMESIZE], size_t nonly,
                      const guts_net_sa *ucast_addr, guts_net_udp_cb *cb, const guts_net_log *log)
{
    memset(u, 0, sizeof *u);
    for (int k = 0; k < GUTS_UDP_NFD; k++)
        u->fd[k] = -1;
    u->loop = loop;
    u->group4 = *group4;
    u->group6 = *group6;
    u->only = only;
    u->nonly = nonly;
    u->on_dgram = cb;
    u->log = log;
    char a[GUTS_NET_ADDRSTRLEN];
    int any = guts_net_sa_any(ucast_addr);
    uint16_t port = guts_net_sa_port(ucast_addr);
    guts_net_sa at;
    if (any || ucast_addr->sa.sa_family == AF_INET) {
        at = *ucast_addr;
        if (any) {
            memset(&at, 0, sizeof at);
            at.in.sin_family = AF_INET;
            at.in.sin_port = port;
        }
        if (ucast_open(u, &at) != 0) goto fail;
    }
    if (any && ipv6_disabled()) {
        guts_net_logf(log, GUTS_LOG_WARN,
                      "no IPv6 on this host (net.ipv6.conf.all.disable_ipv6 is 1): IPv4 only");
    } else if (any || ucast_addr->sa.sa_family == AF_INET6) {
        at = *ucast_addr;
        if (any) {
            memset(&at, 0, sizeof at);
            at.in6.sin6_family = AF_INET6;
            at.in6.sin6_port = port;
        }
        if (ucast_open(u, &at) != 0) {
            if (!any || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL)) goto fail;
            guts_net_logf(log, GUTS_LOG_WARN, "no IPv6 on this host (%s): IPv4 only",
                          strerror(errno));
        }
    }
    /* Group sockets: receive only. A failure here leaves the family
     * without multicast, not the node without a network. */
    if (u->fd[GUTS_UDP_UCAST4] >= 0) mcast_open(u, 0);
    if (u->fd[GUTS_UDP_UCAST6] >= 0) mcast_open(u, 1);
    scan(u, 0);
    return 0;

fail:
    guts_net_logf(log, GUTS_LOG_DEBUG, "udp: bind %s: %s",
                  guts_net_addr_str(&at, a, sizeof a), strerror(errno));
    guts_net_udp_close(u, loop);
    return GUTS_EIO;
}

static int send_one(guts_net_udp *u, int fd, const guts_net_sa *to, const void *buf, size_t len)
{
    ssize_t n = fd < 0 ? -1 : sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, &to->sa,
                                     guts_net_sa_len(to));
    if (n < 0 || (size_t)n != len) {
        u->stats.tx_dropped++;
        if (fd < 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            char a[GUTS_NET_ADDRSTRLEN];
            guts_net_logf(u->log, GUTS_LOG_DEBUG, "udp: sendto %s: %s",
                          guts_net_addr_str(to, a, sizeof a),
                          fd < 0 ? "no socket of that family" : strerror(errno));
            return GUTS_EIO;
        }
        return 0;
    }
    u->stats.tx++;
    u->stats.tx_bytes += len;
    return 0;
}

int guts_net_udp_send(guts_net_udp *u, const guts_net_sa *to, const void *buf, size_t len)
{
    if (to)
        return send_one(u, u->fd[to->sa.sa_family == AF_INET6 ? GUTS_UDP_UCAST6 : GUTS_UDP_UCAST4],
                        to, buf, len);
    for (size_t i = 0; i < u->nifs; i++) {
        const guts_net_iface *f = &u->ifs[i];
        if (f->joined & FAM4) {
            /* the interface's own address as the source: with only an
             * index, Linux sends from 0.0.0.0 on lo and peers could not reply */
            struct ip_mreqn m = {.imr_address = f->addr4, .imr_ifindex = (int)f->index};
            if (setsockopt(u->fd[GUTS_UDP_UCAST4], IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) == 0)
                send_one(u, u->fd[GUTS_UDP_UCAST4], &u->group4, buf, len);
            else
                u->stats.tx_dropped++;
        }
        if (f->joined & FAM6) {
            int ix = (int)f->index;
            if (setsockopt(u->fd[GUTS_UDP_UCAST6], IPPROTO_IPV6, IPV6_MULTICAST_IF, &ix, sizeof ix) ==
                0)
                send_one(u, u->fd[GUTS_UDP_UCAST6], &u->group6, buf, len);
            else
                u->stats.tx_dropped++;
        }
    }
    return 0;
}

void guts_net_udp_close(guts_net_udp *u, struct ev_loop *loop)
{
    for (int k = 0; k < GUTS_UDP_NFD; k++) {
        if (u->fd[k] < 0) continue;
        ev_io_stop(loop, &u->io[k]);
        close(u->fd[k]); /* closing leaves the groups */
        u->fd[k] = -1;
    }
    u->nifs = 0;
}
