/* daemon_status.c - what the node shows of itself: status.json, the lonely
 * check, and the progress lines of running pulls on a terminal.
 *
 * On a terminal (stderr a tty) a line per running pull (repository, peer,
 * objects and bytes so far, rate, and an ETA when the peer's announced
 * count says how many to expect) is redrawn under the log every
 * GUTS_NET_PROGRESS_S with the CLI's progress format; the numbers are the
 * core's session counters (guts_core_pulls). Not on a terminal: nothing but
 * the log lines, so a redirected log carries no escape sequences.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"
#include "daemon.h"

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
        if (guts_net_addr_to_sa(&p.addr, &sin) == 0)
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
        if (guts_net_addr_to_sa(&pl[i].addr, &sin) == 0)
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
            "\"objects_too_big\": %llu, \"objects_damaged\": %llu, \"damage_reports\": %llu, "
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
            (unsigned long long)k.objects_damaged, (unsigned long long)k.damage_reports,
            (unsigned long long)k.repos_remote, (unsigned long long)k.repos_refused,
            (unsigned long long)k.repos_evicted, (unsigned long long)k.store_full,
            (unsigned long long)k.writes_full, (unsigned long long)k.dgrams_unicast,
            (unsigned long long)k.peers_unicast, (unsigned long long)k.pex_out,
            (unsigned long long)k.pex_bytes_out, (unsigned long long)k.unicast_answers,
            (unsigned long long)k.pex_in, (unsigned long long)k.pex_ignored,
            (unsigned long long)k.learned, (unsigned long long)k.learned_dropped,
            (unsigned long long)k.learned_given_up, (unsigned long long)k.conflicts);
    fprintf(f,
            "\"split_pulls\": %llu, \"split_joins\": %llu, \"split_given_back\": %llu, "
            "\"split_stalls\": %llu, \"objects_dup\": %llu, ",
            (unsigned long long)k.split_pulls, (unsigned long long)k.split_joins,
            (unsigned long long)k.split_given_back, (unsigned long long)k.split_stalls,
            (unsigned long long)k.objects_dup);
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

void guts_net_node_write_status(guts_net_node *n)
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

void guts_net_node_status_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
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
    guts_net_node_write_status(n);
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
void guts_net_node_progress_draw(guts_net_node *n)
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
            /* the host alone, as the CLI shows it */
            if (guts_net_addr_to_sa(&p->addr, &sin) == 0) {
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

void guts_net_node_progress_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node_progress_draw(container_of(w, guts_net_node, progress_timer));
}
