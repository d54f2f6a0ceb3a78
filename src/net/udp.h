/* udp.h - the node's datagram sockets (udp.c): per IP family a group
 * socket and a unicast socket, groups joined per interface. Included by
 * net.h.
 */
#ifndef GUTS_NET_UDP_H
#define GUTS_NET_UDP_H

#include <ev.h>

#include "guts/wire.h"
#include "log.h"
#include "opts.h"

/* Counters for status and the benchmark. */
typedef struct guts_net_udp_stats {
    uint64_t rx, tx, rx_bytes, tx_bytes;
    uint64_t rx_oversize; /* datagrams over GUTS_DGRAM_DROP, dropped unread */
    uint64_t tx_dropped;  /* EAGAIN or other send failure: the next
                           * periodic announce replaces it */
} guts_net_udp_stats;

typedef struct guts_net_udp guts_net_udp;
typedef void guts_net_udp_cb(guts_net_udp *u, const uint8_t *buf, size_t len,
                             const guts_net_sa *from);

/* The sockets, by role and family. */
enum { GUTS_UDP_UCAST4, GUTS_UDP_UCAST6, GUTS_UDP_MCAST4, GUTS_UDP_MCAST6, GUTS_UDP_NFD };

/* Interfaces are looked at again this often (in status ticks of
 * GUTS_NET_STATUS_S): a laptop joining Wi-Fi or a VPN coming up is joined
 * within seconds, and a scan is one getifaddrs. */
#define GUTS_NET_IFSCAN_TICKS 2

/* An interface the group is joined on. */
typedef struct guts_net_iface {
    char name[IF_NAMESIZE];
    unsigned index;
    struct in_addr addr4; /* its first IPv4 address: the source of group datagrams */
    int joined;           /* bit 0: the IPv4 group, bit 1: the IPv6 group */
} guts_net_iface;

/* Sockets: the group sockets (one per family, bound to the group port and
 * shared by every node on the host through SO_REUSEPORT) only receive; the
 * unicast ones are bound to this node's own port (the TCP listener's
 * number) and send everything, group datagrams included (once per joined
 * interface), so a datagram's source address is unique per node and
 * unicast replies to it reach this node and no other. */
struct guts_net_udp {
    ev_io io[GUTS_UDP_NFD];
    int fd[GUTS_UDP_NFD]; /* -1: not open */
    int via_unicast;      /* the datagram being handed to on_dgram came to a unicast socket */
    struct ev_loop *loop;
    guts_net_sa group4, group6;
    const char (*only)[IF_NAMESIZE]; /* --iface names (not owned); nonly 0: every interface */
    size_t nonly;
    guts_net_iface ifs[GUTS_NET_IFACES_MAX]; /* joined on at least one family */
    size_t nifs;
    char mcast_off[160]; /* why no group is joined anywhere ("" while one is) */
    guts_net_udp_cb *on_dgram;
    const guts_net_log *log;
    guts_net_udp_stats stats;
    uint8_t buf[GUTS_DGRAM_DROP + 1]; /* one more to detect oversize */
};

/** Open the unicast sockets on ucast_addr (port set; a wildcard of either
 * family opens both families, IPv6 only if the host has it, with a warning
 * if not) and the group sockets of the families open, then join the groups
 * on the interfaces (guts_net_udp_scan). only[0..nonly) narrows the
 * interfaces (--iface). Groups that cannot be joined anywhere are no
 * error: u->mcast_off names the cause and the node works by unicast.
 * Errors: GUTS_EIO (a unicast socket asked for failed; logged with errno). */
int guts_net_udp_open(guts_net_udp *u, struct ev_loop *loop, const guts_net_sa *group4,
                      const guts_net_sa *group6, const char (*only)[IF_NAMESIZE], size_t nonly,
                      const guts_net_sa *ucast_addr, guts_net_udp_cb *cb, const guts_net_log *log);
/** Look at the interfaces again: join the groups on every one that is up
 * and multicast-capable (with an address of the family; loopback only when
 * no other is, or when named by --iface) and leave those gone or down. Each
 * change is logged at info. Returns the number of interfaces joined now. */
size_t guts_net_udp_scan(guts_net_udp *u);
/** Send one datagram without blocking; dropped (and counted) on EAGAIN.
 * to NULL: the groups, out of every joined interface. Returns 0 or GUTS_EIO. */
int guts_net_udp_send(guts_net_udp *u, const guts_net_sa *to, const void *buf, size_t len);
/** Names of the joined interfaces ("v0, wlan0"; "" when none) into buf. */
const char *guts_net_udp_ifaces(const guts_net_udp *u, char *buf, size_t len);
/** Stop watchers, leave the groups, close sockets. */
void guts_net_udp_close(guts_net_udp *u, struct ev_loop *loop);

#endif
