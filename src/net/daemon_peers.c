/* daemon_peers.c - remembered peers: DATA/node/peers, loaded at start and
 * saved every GUTS_NET_REMEMBER_S and at close, so a restarted node has
 * somewhere to start when the group is quiet.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

/* Load DATA/node/peers: at most GUTS_NET_REMEMBER_MAX entries of the
 * last week; lines that do not parse are skipped (the file is ours, but a
 * disk or an editor may have damaged it). A missing file is no error. */
void guts_net_node_remembered_load(guts_net_node *n)
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
void guts_net_node_remembered_save(guts_net_node *n)
{
    uint64_t now = (uint64_t)time(NULL);
    size_t np = guts_core_peer_count(n->core);
    for (size_t i = 0; i < np; i++) {
        guts_core_peer_info p;
        guts_net_sa sin;
        /* a link-local address's zone may name another interface next time */
        if (guts_core_peer(n->core, i, &p) != 0 || guts_net_addr_to_sa(&p.addr, &sin) != 0 ||
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

void guts_net_node_remember_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node_remembered_save(container_of(w, guts_net_node, remember_timer));
}
