/* web.c - the node's routes on the --http listener: /, /api/status, /metrics,
 * /events.
 *
 * /api/status is the status document guts-node writes to
 * DATA/node/status.json (daemon_status.c, guts_net_node_status: one generator),
 * made afresh for each request. /metrics says the same numbers in
 * Prometheus' text exposition format (version 0.0.4): names guts_*, the
 * unit in the name, counters ending in _total; every family is documented
 * in docs/operations.md. / is one page with its style and script inline
 * (no other request than /api/status, which it polls every 2 s): it works
 * offline and on a phone.
 *
 * Every answer but /events is built whole in memory (a status document is
 * about 200 bytes per repository) and queued at once; the routes take GET
 * and HEAD only, and never read a body. /events is a server-sent event
 * stream of the node's events (peer joined or left, repository added, ref
 * updated, conflict, pull failed): the records --on-event hooks get
 * (guts_net_event_json), one SSE event each named after its type. The ring
 * of the last GUTS_NET_EVENTS_RING events first, then each new one; a
 * stream with nothing to send is suspended (it costs no loop turn) and
 * woken by the next event, or by the status tick for a ping every
 * GUTS_NET_HTTP_PING_S. A client too slow for the ring is told how many
 * events it missed.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net.h"

/* ---- Metrics ------------------------------------------------------------------ */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, uint64_t v)
{
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    family(f, name, "counter", help);
    sample(f, name, v);
}

static void gauge(FILE *f, const char *name, const char *help, uint64_t v)
{
    family(f, name, "gauge", help);
    sample(f, name, v);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void labelled(FILE *f, const char *name, const char *label, const char *value, uint64_t v)
{
    fprintf(f, "%s{%s=", name, label);
    label_value(f, value);
    fprintf(f, "} %llu\n", (unsigned long long)v);
}

/* A counter family with a sample per datagram message type. */
static void by_kind(FILE *f, const char *name, const char *help,
                    const uint64_t v[GUTS_CORE_DGRAM_KINDS])
{
    static const char *const kinds[GUTS_CORE_DGRAM_KINDS] = {
        [0] = "other", [GUTS_MSG_ANNOUNCE] = "announce", [GUTS_MSG_LEAVE] = "leave",
        [GUTS_MSG_PEERS] = "peers"};
    family(f, name, "counter", help);
    for (size_t i = 0; i < GUTS_CORE_DGRAM_KINDS; i++)
        labelled(f, name, "kind", kinds[i], v[i]);
}

/* Per repository: one family, a sample per watched repository. */
enum { REPO_OBJECTS, REPO_REFS, REPO_CONFLICTS, REPO_STORED, REPO_LAG, REPO_IN_SYNC };

static uint64_t repo_value(guts_net_node *n, const guts_net_watch *w, int what, uint64_t now)
{
    int st = GUTS_SYNC_IN_SYNC;
    switch (what) {
    case REPO_OBJECTS:
        return w->objects;
    case REPO_REFS:
        return w->refs;
    case REPO_CONFLICTS:
        return w->conflicts;
    case REPO_STORED:
        return w->stored_bytes;
    case REPO_LAG:
        return w->behind_since && now > w->behind_since ? (now - w->behind_since) / 1000 : 0;
    default:
        guts_core_repo_state(n->core, w->key, &st);
        return st == GUTS_SYNC_IN_SYNC;
    }
}

void guts_net_node_metrics(guts_net_node *n, FILE *f)
{
    static const struct {
        const char *name, *help;
    } repo_families[] = {
        [REPO_OBJECTS] = {"guts_repo_objects", "Objects stored in the repository."},
        [REPO_REFS] = {"guts_repo_refs", "Live refs of the repository, HEAD included."},
        [REPO_CONFLICTS] = {"guts_repo_conflicts",
                            "Divergent ref updates kept under refs/guts/conflicts/."},
        [REPO_STORED] = {"guts_repo_stored_bytes", "Bytes of the repository's object records."},
        [REPO_LAG] = {"guts_repo_replication_lag_seconds",
                      "Seconds since a live peer's state of the repository first differed "
                      "from this node's; 0 when in sync."},
        [REPO_IN_SYNC] = {"guts_repo_in_sync",
                          "1 when every live peer that announced the repository agrees with "
                          "this node."},
    };
    uint64_t now = guts_net_now_ms();
    guts_core_counters k;
    guts_core_counters_get(n->core, &k);
    char hex[2 * GUTS_NODE_ID_LEN + 1];
    guts_node_id_to_hex(guts_data_node_id(n->data), hex);

    family(f, "guts_node_info", "gauge", "The node's id and whether it runs keyed (value 1).");
    fprintf(f, "guts_node_info{node_id=\"%s\",keyed=\"%s\"} 1\n", hex, n->seal ? "yes" : "no");
    gauge(f, "guts_uptime_seconds", "Seconds since the node started.",
          (now - n->start_ms) / 1000);
    gauge(f, "guts_incarnation", "Times a node started on this data dir.", n->incarnation);

    /* peers by the path they are heard on */
    uint64_t by[3] = {0, 0, 0};
    size_t np = guts_core_peer_count(n->core);
    for (size_t i = 0; i < np; i++) {
        guts_core_peer_info p;
        if (guts_core_peer(n->core, i, &p) != 0) continue;
        by[p.via_group && p.via_unicast ? 2 : p.via_unicast ? 1 : 0]++;
    }
    family(f, "guts_peers", "gauge",
           "Live peers by the path they are heard on: multicast, unicast or both.");
    labelled(f, "guts_peers", "path", "multicast", by[0]);
    labelled(f, "guts_peers", "path", "unicast", by[1]);
    labelled(f, "guts_peers", "path", "both", by[2]);
    gauge(f, "guts_learned_addresses", "Addresses learned from peer exchange and still tried.",
          k.learned);

    counter(f, "guts_datagrams_received_total", "Datagrams received on both UDP sockets.",
            n->udp.stats.rx);
    counter(f, "guts_datagrams_sent_total", "Datagrams sent, group and unicast.", n->udp.stats.tx);
    counter(f, "guts_datagram_received_bytes_total", "Bytes of the datagrams received.",
            n->udp.stats.rx_bytes);
    counter(f, "guts_datagram_sent_bytes_total", "Bytes of the datagrams sent.",
            n->udp.stats.tx_bytes);
    by_kind(f, "guts_messages_received_total",
            "Datagrams received that decoded, by message type (not our own looped back).",
            k.kind_in);
    by_kind(f, "guts_message_received_bytes_total", "Their bytes, by message type.",
            k.kind_bytes_in);
    by_kind(f, "guts_messages_sent_total",
            "Datagrams sent by the protocol, group and unicast copies, by message type.",
            k.kind_out);
    by_kind(f, "guts_message_sent_bytes_total", "Their bytes, by message type.",
            k.kind_bytes_out);
    counter(f, "guts_datagram_send_failures_total",
            "Datagrams not sent (socket full or error); the next announce replaces them.",
            n->udp.stats.tx_dropped);
    family(f, "guts_datagrams_dropped_total", "counter",
           "Datagrams received and dropped, by reason.");
    labelled(f, "guts_datagrams_dropped_total", "reason", "malformed", k.dgrams_malformed);
    labelled(f, "guts_datagrams_dropped_total", "reason", "oversize",
             n->udp.stats.rx_oversize + k.dgrams_dropped);
    labelled(f, "guts_datagrams_dropped_total", "reason", "rate_limit", n->dgram_rate.limited);
    labelled(f, "guts_datagrams_dropped_total", "reason", "key", n->refused.total);
    labelled(f, "guts_datagrams_dropped_total", "reason", "unknown_type", k.dgrams_unknown);
    labelled(f, "guts_datagrams_dropped_total", "reason", "version", k.dgrams_version);

    gauge(f, "guts_connections", "Stream connections open now, both directions.", n->tcp.nconns);
    counter(f, "guts_connections_accepted_total", "Stream connections accepted.",
            n->tcp.stats.accepted);
    counter(f, "guts_connections_opened_total", "Stream connections this node opened.",
            n->tcp.stats.connected);
    family(f, "guts_connections_rejected_total", "counter",
           "Accepted stream connections closed before they proved anything, by reason.");
    labelled(f, "guts_connections_rejected_total", "reason", "rate_limit", n->conn_rate.limited);
    labelled(f, "guts_connections_rejected_total", "reason", "source_cap",
             n->tcp.stats.refused_source);
    labelled(f, "guts_connections_rejected_total", "reason", "handshake_timeout",
             n->tcp.stats.handshake_timeouts);
    labelled(f, "guts_connections_rejected_total", "reason", "evicted", n->tcp.stats.evicted);
    counter(f, "guts_stream_received_bytes_total", "Bytes received on stream connections.",
            n->tcp.stats.rx_bytes);
    counter(f, "guts_stream_sent_bytes_total", "Bytes sent on stream connections.",
            n->tcp.stats.tx_bytes);
    counter(f, "guts_frames_malformed_total", "Stream frames that failed to decode.",
            k.frames_malformed);

    size_t pulls = 0, serves = 0;
    guts_core_sessions(n->core, &pulls, &serves);
    gauge(f, "guts_pulls_in_progress", "Pulls (outgoing sessions) running now.", pulls);
    counter(f, "guts_pulls_started_total", "Pulls started.", k.sessions_started);
    counter(f, "guts_pulls_completed_total", "Pulls that ended well.", k.sessions_ok);
    counter(f, "guts_pulls_failed_total", "Pulls that failed (the peer is tried again later).",
            k.sessions_failed);
    counter(f, "guts_pulls_busy_total", "Pulls a busy peer deferred (not failures).",
            k.sessions_busy);
    counter(f, "guts_pulled_objects_total", "Objects received by pulls and stored.",
            k.objects_fetched);
    counter(f, "guts_refs_applied_total", "Ref updates received and applied.", k.refs_applied);
    gauge(f, "guts_serves_in_progress", "Serves (incoming sessions) running now.", serves);
    counter(f, "guts_serves_started_total", "Serves started (ended and running).",
            k.sessions_served + serves);
    counter(f, "guts_serves_completed_total", "Serves that ended well.",
            k.sessions_served - k.serves_failed);
    counter(f, "guts_serves_failed_total", "Serves that ended in an error.", k.serves_failed);
    counter(f, "guts_served_object_bytes_total",
            "Stream bytes of objects sent (the rest of guts_stream_sent_bytes_total is digests, "
            "requests and framing).",
            k.frame_bytes_out - k.digest_bytes_out);
    counter(f, "guts_objects_rejected_total",
            "Objects from peers whose content failed its hash (never stored).", k.bad_objects);
    counter(f, "guts_objects_damaged_total",
            "Stored objects found damaged when served: dropped and fetched again.",
            k.objects_damaged);

    /* per repository, and the store as a whole */
    uint64_t stored = 0, disk = 0;
    for (size_t i = 0; i < n->nwatch; i++) {
        char path[PATH_MAX];
        struct stat st;
        stored += n->watch[i].stored_bytes;
        if (snprintf(path, sizeof path, "%s/repos/%s/data.mdb", guts_data_path(n->data),
                     n->watch[i].key) < (int)sizeof path &&
            stat(path, &st) == 0)
            disk += (uint64_t)st.st_blocks * 512u;
    }
    gauge(f, "guts_repositories", "Repositories in the store.", n->nwatch);
    gauge(f, "guts_store_stored_bytes", "Bytes of every repository's object records.", stored);
    gauge(f, "guts_store_disk_bytes", "Disk space the repositories' data.mdb files take.", disk);
    gauge(f, "guts_store_full", "1 while the store refuses writes (disk or map full).",
          k.store_full);
    for (size_t r = 0; r < sizeof repo_families / sizeof *repo_families; r++) {
        family(f, repo_families[r].name, "gauge", repo_families[r].help);
        for (size_t i = 0; i < n->nwatch; i++)
            labelled(f, repo_families[r].name, "repo", n->watch[i].key,
                     repo_value(n, &n->watch[i], (int)r, now));
    }

    gauge(f, "guts_http_connections", "Connections open now on the --http listener.",
          guts_net_http_conns(&n->http));
    counter(f, "guts_http_requests_total", "Requests on the --http listener.",
            n->http.stats.requests);
    counter(f, "guts_http_connections_rate_limited_total",
            "Connections to the --http listener refused over the per-address rate.",
            n->http.stats.rate_limited);
    guts_net_git_stats g = guts_net_git_stats_of(n);
    counter(f, "guts_git_info_refs_total", "git capability advertisements served (info/refs).",
            g.info_refs);
    counter(f, "guts_git_ls_refs_total", "git ls-refs commands answered.", g.ls_refs);
    counter(f, "guts_git_fetches_total", "git fetch commands taken (each negotiation round).",
            g.fetches);
    counter(f, "guts_git_packs_total", "git packs started.", g.packs);
    counter(f, "guts_git_refused_total",
            "git requests refused: push, protocol v0/v1, busy, --http-repos, unknown repository.",
            g.refused);
    counter(f, "guts_git_bad_requests_total", "Malformed git requests.", g.bad);
    counter(f, "guts_git_pack_bytes_total", "Bytes of git packs written (finished threads).",
            g.pack_bytes);
    counter(f, "guts_git_packs_prepared_total",
            "Clone packs written ahead of clones into DATA/git-packs.", g.prepared);
    counter(f, "guts_git_packs_followed_total",
            "Clones that streamed a clone pack another thread was writing.", g.followed);
    counter(f, "guts_git_packs_prepare_failed_total",
            "Clone packs the prepare thread could not write (debug log says why).",
            g.prepare_failed);
    gauge(f, "guts_git_packs_preparing",
          "Repositories whose clone packs are waiting to be prepared or being prepared.",
          g.preparing);
}

/* ---- Routes --------------------------------------------------------------------- */

/* GET and HEAD without a body only: anything else is answered at once
 * (405, or 413 for a body), its body never read. */
static int get_only(struct MHD_Connection *conn, const char *method)
{
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    int body = (clen && strcmp(clen, "0") != 0) ||
               MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (get && !body) return 1;
    body = get; /* a GET with a body: 413; any other method: 405 */
    const char *msg = body ? "no request body is taken here\n" : "only GET and HEAD here\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (!r) return 0;
    MHD_add_response_header(r, "Allow", "GET, HEAD");
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    MHD_queue_response(conn, body ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_METHOD_NOT_ALLOWED, r);
    MHD_destroy_response(r);
    return 0;
}

/* Build a document with gen into memory and answer with it. */
static int answer(struct MHD_Connection *conn, guts_net_node *n, const char *ctype,
                  void (*gen)(guts_net_node *, FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return MHD_NO;
    gen(n, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        static const char oom[] = "out of memory\n";
        return guts_net_http_reply(conn, 500, "text/plain; charset=utf-8", oom, sizeof oom - 1);
    }
    int rc = guts_net_http_reply(conn, 200, ctype, buf, len);
    free(buf);
    return rc;
}

static int route_status(void *arg, struct MHD_Connection *conn, const char *url,
                        const char *method, const char *upload_data, size_t *upload_data_size,
                        void **req_ctx)
{
    (void)url, (void)upload_data, (void)upload_data_size, (void)req_ctx;
    if (!get_only(conn, method)) return MHD_YES;
    return answer(conn, arg, "application/json", guts_net_node_status);
}

static int route_metrics(void *arg, struct MHD_Connection *conn, const char *url,
                         const char *method, const char *upload_data, size_t *upload_data_size,
                         void **req_ctx)
{
    (void)url, (void)upload_data, (void)upload_data_size, (void)req_ctx;
    if (!get_only(conn, method)) return MHD_YES;
    return answer(conn, arg, "text/plain; version=0.0.4; charset=utf-8", guts_net_node_metrics);
}

static int route_page(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
                      const char *upload_data, size_t *upload_data_size, void **req_ctx)
{
    (void)arg, (void)url, (void)upload_data, (void)upload_data_size, (void)req_ctx;
    if (!get_only(conn, method)) return MHD_YES;
    return guts_net_http_reply(conn, 200, "text/html; charset=utf-8", guts_net_page_html,
                               strlen(guts_net_page_html));
}

/* ---- /events: server-sent events ------------------------------------------------ */

/* One /events stream: it sends the ring's events from `next` on, then
 * waits suspended until the node has another or the status tick wakes it
 * for a ping. */
typedef struct guts_net_sse {
    guts_net_node *n;
    struct MHD_Connection *conn;
    struct guts_net_sse *next;
    uint64_t line;     /* next event of the ring to send */
    uint64_t last_ms;  /* last bytes queued (monotonic) */
    int suspended;
    int closing;
    size_t plen, poff; /* pending bytes of buf not handed to the library yet */
    char buf[GUTS_NET_HOOK_LINE_MAX + 64]; /* one event */
} guts_net_sse;

/* Format event it as one SSE event into s->buf. */
static void sse_format(guts_net_sse *s, const guts_net_hook_item *it)
{
    char node[2 * GUTS_NODE_ID_LEN + 1];
    guts_node_id_to_hex(guts_data_node_id(s->n->data), node);
    int k = snprintf(s->buf, sizeof s->buf, "event: %s\ndata: ", guts_core_event_name(it->e.type));
    size_t n = k < 0 ? 0 : (size_t)k;
    n += guts_net_event_json(&it->e, node, it->wall_ms, s->buf + n, sizeof s->buf - n - 2);
    s->buf[n++] = '\n';
    s->buf[n++] = '\n';
    s->plen = n;
    s->poff = 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
    guts_net_sse *s = cls;
    guts_net_node *n = s->n;
    (void)pos;
    s->suspended = 0;
    if (s->plen == s->poff) {
        if (s->closing) return MHD_CONTENT_READER_END_OF_STREAM;
        uint64_t oldest = n->nevents > GUTS_NET_EVENTS_RING ? n->nevents - GUTS_NET_EVENTS_RING : 0;
        if (s->line < oldest) { /* the ring moved past this client: say how much */
            s->plen = (size_t)snprintf(s->buf, sizeof s->buf, ": %llu events missed\n\n",
                                       (unsigned long long)(oldest - s->line));
            s->poff = 0;
            s->line = oldest;
        } else if (s->line < n->nevents) {
            sse_format(s, &n->events[s->line++ % GUTS_NET_EVENTS_RING]);
        } else if (guts_net_now_ms() - s->last_ms >= GUTS_NET_HTTP_PING_S * 1000u) {
            s->plen = (size_t)snprintf(s->buf, sizeof s->buf, ": ping\n\n");
            s->poff = 0;
        } else {
            /* nothing to say: wait for the next event or ping (web_wake) */
            s->suspended = 1;
            MHD_suspend_connection(s->conn);
            return 0;
        }
    }
    size_t k = s->plen - s->poff < max ? s->plen - s->poff : max;
    memcpy(out, s->buf + s->poff, k);
    s->poff += k;
    s->last_ms = guts_net_now_ms();
    return (ssize_t)k;
}

static void sse_free(void *cls)
{
    guts_net_sse *s = cls;
    guts_net_node *n = s->n;
    for (guts_net_sse **p = &n->sse; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            n->nsse--;
            break;
        }
    free(s);
}

void guts_net_web_wake(guts_net_node *n, int closing)
{
    int woke = 0;
    for (guts_net_sse *s = n->sse; s; s = s->next) {
        s->closing |= closing;
        if (!s->suspended) continue;
        s->suspended = 0;
        MHD_resume_connection(s->conn);
        woke = 1;
    }
    if (woke) guts_net_http_kick(&n->http);
}

static int route_events(void *arg, struct MHD_Connection *conn, const char *url,
                        const char *method, const char *upload_data, size_t *upload_data_size,
                        void **req_ctx)
{
    guts_net_node *n = arg;
    (void)url, (void)upload_data, (void)upload_data_size, (void)req_ctx;
    if (!get_only(conn, method)) return MHD_YES;
    if (n->nsse >= GUTS_NET_HTTP_EVENTS_MAX) {
        static const char busy[] = "too many /events streams open\n";
        return guts_net_http_reply(conn, 503, "text/plain; charset=utf-8", busy, sizeof busy - 1);
    }
    guts_net_sse *s = calloc(1, sizeof *s);
    if (!s) return MHD_NO;
    s->n = n;
    s->conn = conn;
    s->last_ms = guts_net_now_ms();
    /* the events already in the ring first: what happened lately */
    s->line = n->nevents > GUTS_NET_EVENTS_RING ? n->nevents - GUTS_NET_EVENTS_RING : 0;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    s->next = n->sse;
    n->sse = s;
    n->nsse++;
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

int guts_net_web_routes(guts_net_node *n)
{
    int rc = guts_net_http_route_add(&n->http, "/api/status", 0, route_status, n);
    if (rc == 0) rc = guts_net_http_route_add(&n->http, "/metrics", 0, route_metrics, n);
    if (rc == 0) rc = guts_net_http_route_add(&n->http, "/events", 0, route_events, n);
    if (rc == 0) rc = guts_net_http_route_add(&n->http, "/", 0, route_page, n);
    return rc;
}
