/* guts_doctor.c - `guts doctor`: why nodes do not find each other, as a list
 * of checks (interfaces, multicast route, loopback, the running node, the
 * data dir), each ok, warn or fail with a hint.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "guts_cli.h"

const char usage_doctor[] =
    "usage: guts doctor [--json]\n"
    "\n"
    "Check this machine and the node running on the data dir for what keeps\n"
    "nodes from finding each other: interfaces that can carry multicast, a\n"
    "route for the group, whether this host's own multicast comes back, how\n"
    "many peers the node hears by multicast and by unicast, datagrams refused\n"
    "for another key or a sealed/open mismatch, rate-limited sources, the\n"
    "data dir's permissions and free space. One line per check: ok, warn or\n"
    "fail, what was seen, and a hint when it is not ok. --json prints\n"
    "[{\"check\", \"status\", \"detail\", \"hint\"}]. Exit 1 when a check fails.\n";

enum { DOC_OK = 0, DOC_WARN, DOC_FAIL };
static const char *const doc_status_names[] = {"ok", "warn", "fail"};

typedef struct doctor {
    int json, n, worst;
} doctor;

static void json_text(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* One check's line (or JSON object). hint may be NULL when ok. */
static void doc_report(doctor *d, const char *check, int status, const char *detail,
                       const char *hint)
{
    if (status > d->worst) d->worst = status;
    if (d->json) {
        fputs(d->n ? ",\n  {\"check\": " : "\n  {\"check\": ", stdout);
        json_text(check);
        printf(", \"status\": \"%s\", \"detail\": ", doc_status_names[status]);
        json_text(detail);
        fputs(", \"hint\": ", stdout);
        if (hint && status != DOC_OK)
            json_text(hint);
        else
            fputs("null", stdout);
        putchar('}');
    } else {
        printf("%-18s %-4s  %s\n", check, doc_status_names[status], detail);
        if (hint && status != DOC_OK) printf("%-18s       hint: %s\n", "", hint);
    }
    d->n++;
}

#define DOC_HINT_PEER "add --peer HOST:PORT of one node (its --listen address) to guts-node"

/* The interface guts-node would join the IPv4 group on first: up with the
 * MULTICAST flag and an IPv4 address, loopback only when no other is.
 * 0 when there is none. */
static unsigned doc_iface4(char name[IF_NAMESIZE], struct in_addr *addr)
{
    struct ifaddrs *ifa = NULL;
    unsigned best = 0;
    int best_lo = 1;
    if (getifaddrs(&ifa) != 0) return 0;
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET) continue;
        if (!(p->ifa_flags & IFF_UP) || !(p->ifa_flags & IFF_MULTICAST)) continue;
        int lo = (p->ifa_flags & IFF_LOOPBACK) != 0;
        if (best && (lo || !best_lo)) continue;
        unsigned ix = if_nametoindex(p->ifa_name);
        if (!ix || strlen(p->ifa_name) >= IF_NAMESIZE) continue;
        best = ix;
        best_lo = lo;
        strcpy(name, p->ifa_name);
        *addr = ((struct sockaddr_in *)p->ifa_addr)->sin_addr;
    }
    freeifaddrs(ifa);
    return best;
}

/* Interfaces that are up with the MULTICAST flag, with their addresses of
 * each family (guts-node joins the IPv4 group where there is an IPv4
 * address, the IPv6 group where there is an IPv6 one, not on loopback). */
static void doc_interfaces(doctor *d)
{
    struct ifaddrs *ifa = NULL;
    char names[2][512] = {"", ""};
    int good = 0, lo = 0;
    if (getifaddrs(&ifa) != 0) {
        doc_report(d, "interfaces", DOC_WARN, "getifaddrs failed", NULL);
        return;
    }
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
        if (!p->ifa_addr || (p->ifa_addr->sa_family != AF_INET && p->ifa_addr->sa_family != AF_INET6))
            continue;
        if (!(p->ifa_flags & IFF_UP) || !(p->ifa_flags & IFF_MULTICAST)) continue;
        int v6 = p->ifa_addr->sa_family == AF_INET6;
        if (v6 && (p->ifa_flags & IFF_LOOPBACK)) continue;
        char ip[INET6_ADDRSTRLEN];
        inet_ntop(p->ifa_addr->sa_family,
                  v6 ? (const void *)&((struct sockaddr_in6 *)p->ifa_addr)->sin6_addr
                     : (const void *)&((struct sockaddr_in *)p->ifa_addr)->sin_addr,
                  ip, sizeof ip);
        char *list = names[v6];
        size_t used = strlen(list);
        snprintf(list + used, sizeof names[0] - used, "%s%s %s", used ? ", " : "", p->ifa_name, ip);
        if (p->ifa_flags & IFF_LOOPBACK)
            lo++;
        else
            good++;
    }
    freeifaddrs(ifa);
    char detail[1100];
    snprintf(detail, sizeof detail, "up with MULTICAST: IPv4 %s; IPv6 %s",
             names[0][0] ? names[0] : "none", names[1][0] ? names[1] : "none");
    if (good) {
        doc_report(d, "interfaces", DOC_OK, detail, NULL);
    } else if (lo) {
        snprintf(detail, sizeof detail, "only loopback can carry multicast: %s", names[0]);
        doc_report(d, "interfaces", DOC_WARN, detail,
                   "nodes on other machines are reachable by unicast only: " DOC_HINT_PEER);
    } else {
        doc_report(d, "interfaces", DOC_FAIL,
                   "no interface is up with the MULTICAST flag and an address",
                   "bring one up (ip link set IFACE up multicast on), or " DOC_HINT_PEER);
    }
}

/* A route for the group: connect(2) a UDP socket to it (no datagram).
 * guts-node needs none (it joins and sends on each interface by name);
 * other tools and the kernel's default choice do. */
static void doc_route(doctor *d, const struct sockaddr_in *group)
{
    char g[INET_ADDRSTRLEN], detail[256];
    inet_ntop(AF_INET, &group->sin_addr, g, sizeof g);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        doc_report(d, "multicast route", DOC_WARN, "cannot open a UDP socket", NULL);
        return;
    }
    if (connect(fd, (const struct sockaddr *)group, sizeof *group) != 0) {
        snprintf(detail, sizeof detail,
                 "no route for %s (%s): none needed, guts-node joins and sends on each "
                 "interface by name",
                 g, strerror(errno));
        doc_report(d, "multicast route", DOC_OK, detail, NULL);
    } else {
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        char src[INET_ADDRSTRLEN] = "?";
        if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
            inet_ntop(AF_INET, &me.sin_addr, src, sizeof src);
        snprintf(detail, sizeof detail, "%s is routed (source %s)", g, src);
        doc_report(d, "multicast route", DOC_OK, detail, NULL);
    }
    close(fd);
}

/* This host's own multicast comes back to it: a socket joins the group on
 * the interface guts-node would use first, on an ephemeral port (no node
 * listens there), and sends itself a datagram out of that interface. */
static void doc_loopback(doctor *d, const struct sockaddr_in *group)
{
    char detail[256], ifname[IF_NAMESIZE] = "";
    const char *what = "no interface up with MULTICAST and an IPv4 address";
    int fd = -1, ok = 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof a;
    struct in_addr ifaddr = {0}; /* doc_iface4 sets it only when it finds one */
    unsigned ix = doc_iface4(ifname, &ifaddr);
    struct ip_mreqn mreq = {.imr_multiaddr = group->sin_addr, .imr_ifindex = (int)ix};
    struct ip_mreqn mif = {.imr_address = ifaddr, .imr_ifindex = (int)ix};
    unsigned char one = 1;
    errno = ENODEV;
    if (!ix) goto out;
    what = "socket";
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) goto out;
    what = "bind";
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        goto out;
    what = "join";
    if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) goto out;
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mif, sizeof mif);
    struct sockaddr_in to = *group;
    to.sin_port = a.sin_port;
    what = "send";
    static const char probe[] = "guts doctor loopback probe";
    if (sendto(fd, probe, sizeof probe, 0, (struct sockaddr *)&to, sizeof to) < 0) goto out;
    what = "receive";
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    char buf[64];
    if (poll(&pf, 1, 500) == 1 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) == (ssize_t)sizeof probe)
        ok = 1;
    else
        errno = ETIMEDOUT;
out:
    if (ok) {
        snprintf(detail, sizeof detail, "a datagram to the group on %s came back to this host",
                 ifname);
        doc_report(d, "multicast loopback", DOC_OK, detail, NULL);
    } else {
        snprintf(detail, sizeof detail, "%s%s%s: %s", what, ix ? " on " : "", ifname,
                 strerror(errno));
        doc_report(d, "multicast loopback", DOC_FAIL, detail,
                   "multicast does not work on this host (no interface can carry it, or a "
                   "firewall drops 224.0.0.0/4): " DOC_HINT_PEER);
    }
    if (fd >= 0) close(fd);
}

/* What the running node hears: peers by path, refusals, rate limits. */
static void doc_node(doctor *d, const node_run *nr)
{
    const guts_json *j = &nr->j;
    char detail[512];
    if (nr->state != NODE_RUNNING) {
        doc_report(d, "node", DOC_WARN,
                   nr->state == NODE_STALE ? "guts-node is not responding (status.json is stale)"
                                           : "no guts-node running on this data dir",
                   "start guts-node; the checks of what it hears are skipped");
        return;
    }
    uint64_t up = 0;
    field_u(j, nr->root, "uptime_ms", &up);
    snprintf(detail, sizeof detail, "guts-node pid %ld, up %" PRIu64 " s", nr->pid, up / 1000);
    doc_report(d, "node", DOC_OK, detail, NULL);
    const guts_json_val *ifs = guts_json_get(j, nr->root, "interfaces");
    if (ifs && ifs->type == GUTS_JSON_ARRAY) {
        int nif = 0;
        detail[0] = 0;
        for (const guts_json_val *f = guts_json_child(j, ifs); f; f = guts_json_next(j, f)) {
            const guts_json_val *nm = guts_json_get(j, f, "name");
            const guts_json_val *v4 = guts_json_get(j, f, "ipv4"), *v6 = guts_json_get(j, f, "ipv6");
            if (!nm || nm->type != GUTS_JSON_STRING) continue;
            int has4 = v4 && v4->type == GUTS_JSON_TRUE, has6 = v6 && v6->type == GUTS_JSON_TRUE;
            size_t used = strlen(detail);
            if (used < sizeof detail - 64)
                snprintf(detail + used, sizeof detail - used, "%s%.*s (%s)", nif ? ", " : "joined on ",
                         (int)(nm->slen < IF_NAMESIZE ? nm->slen : IF_NAMESIZE), nm->str,
                         has4 && has6 ? "IPv4, IPv6" : has6 ? "IPv6" : "IPv4");
            nif++;
        }
        if (nif)
            doc_report(d, "node interfaces", DOC_OK, detail, NULL);
        else
            doc_report(d, "node interfaces", DOC_FAIL,
                       "the node joined the groups on no interface (its log says why)",
                       "bring an interface up with multicast, check --iface, or " DOC_HINT_PEER);
    }
    const guts_json_val *peers = guts_json_get(j, nr->root, "peers");
    int bym = 0, byu = 0, n = 0;
    for (const guts_json_val *p = peers && peers->type == GUTS_JSON_ARRAY ? guts_json_child(j, peers) : NULL;
         p; p = guts_json_next(j, p)) {
        const guts_json_val *v = guts_json_get(j, p, "via");
        n++;
        if (!v || v->type != GUTS_JSON_STRING) continue;
        bym += v->slen == 9 && memcmp(v->str, "multicast", 9) == 0;
        byu += v->slen == 7 && memcmp(v->str, "unicast", 7) == 0;
        if (v->slen == 4 && memcmp(v->str, "both", 4) == 0) bym++, byu++;
    }
    snprintf(detail, sizeof detail, "%d peers: %d by multicast, %d by unicast", n, bym, byu);
    if (bym)
        doc_report(d, "peers by multicast", DOC_OK, detail, NULL);
    else if (byu) {
        snprintf(detail, sizeof detail,
                 "no datagram from any peer by multicast while %d peer%s heard by unicast", byu,
                 byu == 1 ? " is" : "s are");
        doc_report(d, "peers by multicast", DOC_FAIL, detail,
                   "the network likely blocks multicast (client isolation, IGMP snooping "
                   "without a querier, a firewall): " DOC_HINT_PEER " on each node");
    } else if (up >= 30000) {
        snprintf(detail, sizeof detail, "no peer heard at all in %" PRIu64 " s", up / 1000);
        doc_report(d, "peers by multicast", DOC_FAIL, detail,
                   "alone, or multicast is blocked: " DOC_HINT_PEER);
    } else {
        doc_report(d, "peers by multicast", DOC_WARN, "no peer yet (the node started under 30 s ago)",
                   "run guts doctor again in a few seconds");
    }
    const guts_json_val *rv = guts_json_get(j, nr->root, "refused");
    int nref = 0;
    detail[0] = 0;
    for (const guts_json_val *r = rv && rv->type == GUTS_JSON_ARRAY ? guts_json_child(j, rv) : NULL;
         r; r = guts_json_next(j, r)) {
        const guts_json_val *a = guts_json_get(j, r, "address"), *w = guts_json_get(j, r, "reason");
        uint64_t c = 0;
        field_u(j, r, "count", &c);
        if (!a || a->type != GUTS_JSON_STRING || !w || w->type != GUTS_JSON_STRING) continue;
        size_t used = strlen(detail);
        if (used < sizeof detail - 64)
            snprintf(detail + used, sizeof detail - used, "%s%.*s: %.*s (%" PRIu64 ")",
                     nref ? "; " : "datagrams refused from ", (int)(a->slen < 64 ? a->slen : 64),
                     a->str, (int)(w->slen < 64 ? w->slen : 64), w->str, c);
        nref++;
    }
    if (nref)
        doc_report(d, "cluster key", DOC_FAIL, detail,
                   "every node needs the same --key-file (guts keygen once, copy the file), or "
                   "none of them");
    else
        doc_report(d, "cluster key", DOC_OK, "no datagram refused for its key", NULL);
    const guts_json_val *ctr = guts_json_get(j, nr->root, "counters");
    uint64_t limited = 0;
    if (ctr) field_u(j, ctr, "rate_limited_dgrams", &limited);
    snprintf(detail, sizeof detail, "%" PRIu64 " datagrams dropped by --max-dgram-rate", limited);
    doc_report(d, "rate limits", limited ? DOC_WARN : DOC_OK, detail,
               limited ? "a source sends faster than --max-dgram-rate: a flood, or many nodes "
                         "behind one address (raise the limit)"
                       : NULL);
}

/* The data dir: private, and room to store. */
static void doc_data(doctor *d, const char *data)
{
    char detail[4200 + 128];
    struct stat st;
    struct statvfs vs;
    if (stat(data, &st) != 0) {
        snprintf(detail, sizeof detail, "%s: %s", data, strerror(errno));
        doc_report(d, "data dir", DOC_WARN, detail, "guts import or guts-node creates it");
        return;
    }
    if (st.st_mode & 077) {
        snprintf(detail, sizeof detail, "%s is mode %03o: others may read the repositories",
                 data, (unsigned)(st.st_mode & 0777));
        doc_report(d, "data dir", DOC_WARN, detail, "chmod 700 the data dir");
    } else if (access(data, W_OK) != 0) {
        snprintf(detail, sizeof detail, "%s is not writable by this user", data);
        doc_report(d, "data dir", DOC_FAIL, detail, "run as the node's user");
    } else {
        snprintf(detail, sizeof detail, "%s mode %03o", data, (unsigned)(st.st_mode & 0777));
        doc_report(d, "data dir", DOC_OK, detail, NULL);
    }
    if (statvfs(data, &vs) == 0) {
        uint64_t free_mb = (uint64_t)vs.f_bavail * vs.f_frsize >> 20;
        snprintf(detail, sizeof detail, "%" PRIu64 " MiB free", free_mb);
        /* below 64 MiB a pull's writes fail soon (docs/security.md, "Disk full") */
        doc_report(d, "free space", free_mb < 64 ? DOC_FAIL : free_mb < 1024 ? DOC_WARN : DOC_OK,
                   detail, "free some space: a full store stops taking objects");
    }
}

int cmd_doctor(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "doctor", *data;
    doctor d = {0};
    node_run nr;
    int rc;
    if ((rc = parse_json_only(cmd, argc, argv, &d.json))) return rc;
    if ((rc = data_path(cmd, data_opt, &data))) return rc;
    node_read(data, &nr);
    /* the running node's group, else the default */
    struct sockaddr_in group = {.sin_family = AF_INET, .sin_port = htons(7171)};
    inet_pton(AF_INET, "239.255.71.71", &group.sin_addr);
    const guts_json_val *g = nr.state == NODE_RUNNING ? guts_json_get(&nr.j, nr.root, "group") : NULL;
    if (g && g->type == GUTS_JSON_STRING && g->slen < INET_ADDRSTRLEN + 6) {
        char gs[INET_ADDRSTRLEN + 6];
        memcpy(gs, g->str, g->slen);
        gs[g->slen] = 0;
        char *colon = strrchr(gs, ':');
        if (colon) *colon = 0;
        inet_pton(AF_INET, gs, &group.sin_addr);
        if (colon) group.sin_port = htons((uint16_t)atoi(colon + 1));
    }
    if (d.json) putchar('[');
    doc_interfaces(&d);
    doc_route(&d, &group);
    doc_loopback(&d, &group);
    doc_node(&d, &nr);
    doc_data(&d, data);
    if (d.json) fputs("\n]\n", stdout);
    node_run_free(&nr);
    return d.worst == DOC_FAIL ? EXIT_OP : 0;
}
