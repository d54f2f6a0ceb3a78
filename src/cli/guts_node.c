/* guts_node.c - a running guts-node seen through DATA/node/status.json:
 * reading the file and printing what it says.
 *
 * The node rewrites the file every second; the CLI needs no socket and no
 * protocol of its own to show peers, sync states, refusals and damage. The
 * file is untrusted input, parsed by a bounded reader (guts_json.c), and
 * every string from it is printed through put_safe.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "guts_cli.h"

const char *const node_state_names[] = {"not_running", "not_running", "stale", "running",
                                               "unreadable"};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void node_read(const char *data, node_run *nr)
{
    memset(nr, 0, sizeof *nr);
    snprintf(nr->path, sizeof nr->path, "%s/node/status.json", data);
    int fd = open(nr->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            nr->state = NODE_ABSENT;
        } else {
            nr->state = NODE_BAD;
            snprintf(nr->why, sizeof nr->why, "cannot open: %s", strerror(errno));
        }
        return;
    }
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    char err[GUTS_JSON_ERR_MAX];
    nr->state = NODE_BAD;
    if (fstat(fd, &st) != 0) {
        snprintf(nr->why, sizeof nr->why, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(nr->why, sizeof nr->why, "not a regular file");
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > GUTS_JSON_INPUT_MAX) {
        snprintf(nr->why, sizeof nr->why, "%lld bytes, over the limit of %u", (long long)st.st_size,
                 GUTS_JSON_INPUT_MAX);
        goto out;
    }
    /* One byte more than the limit tells a file that grew meanwhile. */
    if (!(buf = malloc(GUTS_JSON_INPUT_MAX + 1u))) {
        snprintf(nr->why, sizeof nr->why, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t k = read(fd, buf + len, GUTS_JSON_INPUT_MAX + 1u - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(nr->why, sizeof nr->why, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (k == 0) break;
        len += (size_t)k;
        if (len > GUTS_JSON_INPUT_MAX) {
            snprintf(nr->why, sizeof nr->why, "over the limit of %u bytes", GUTS_JSON_INPUT_MAX);
            goto out;
        }
    }
    if (guts_json_parse(buf, len, &nr->j, err) != GUTS_OK) {
        snprintf(nr->why, sizeof nr->why, "malformed JSON: %s", err);
        goto out;
    }
    nr->root = guts_json_root(&nr->j);
    const guts_json_val *pid = guts_json_get(&nr->j, nr->root, "pid");
    const guts_json_val *ver = guts_json_get(&nr->j, nr->root, "version");
    if (!nr->root || nr->root->type != GUTS_JSON_OBJECT) {
        snprintf(nr->why, sizeof nr->why, "not a JSON object");
        goto out;
    }
    if (ver && !(ver->is_uint && ver->u == 1)) {
        snprintf(nr->why, sizeof nr->why, "unknown \"version\" (this guts reads version 1)");
        goto out;
    }
    /* pid 1 and below are never a guts-node, and kill(0 or -1, 0) means a
     * process group: only a plain positive pid is asked about. */
    if (!pid || !pid->is_uint || pid->u < 2 || pid->u > INT32_MAX) {
        snprintf(nr->why, sizeof nr->why, "no valid \"pid\"");
        goto out;
    }
    nr->pid = (long)pid->u;
    uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000u + (uint64_t)st.st_mtim.tv_nsec / 1000000u;
    uint64_t now = wall_ms();
    nr->age_ms = now > mtime ? now - mtime : 0;
    if (kill((pid_t)nr->pid, 0) != 0 && errno != EPERM)
        nr->state = NODE_DEAD;
    else if (nr->age_ms > NODE_FRESH_MS)
        nr->state = NODE_STALE;
    else
        nr->state = NODE_RUNNING;
out:
    free(buf);
    close(fd);
}

void node_run_free(node_run *nr)
{
    guts_json_free(&nr->j);
}

/* Untrusted text for a terminal or a JSON string: printable ASCII only, so
 * no escape sequence reaches the terminal and the JSON stays valid UTF-8. */
void put_safe(const char *s, size_t len, int json)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            c = '?';
        else if (json && (c == '"' || c == '\\'))
            putchar('\\');
        putchar(c);
    }
}

/* Member key of obj as text ("?" when absent or not a string). */
static void put_field_str(const guts_json *j, const guts_json_val *obj, const char *key, int json)
{
    const guts_json_val *v = guts_json_get(j, obj, key);
    if (json) {
        if (!v || v->type != GUTS_JSON_STRING) {
            fputs("null", stdout);
            return;
        }
        putchar('"');
        put_safe(v->str, v->slen, 1);
        putchar('"');
    } else if (v && v->type == GUTS_JSON_STRING) {
        put_safe(v->str, v->slen, 0);
    } else {
        putchar('?');
    }
}

/* Member key of obj as an unsigned number: *out, 1 when present. */
int field_u(const guts_json *j, const guts_json_val *obj, const char *key, uint64_t *out)
{
    const guts_json_val *v = guts_json_get(j, obj, key);
    if (!v || !v->is_uint) return 0;
    *out = v->u;
    return 1;
}

static void put_field_u(const guts_json *j, const guts_json_val *obj, const char *key)
{
    uint64_t u;
    if (field_u(j, obj, key, &u))
        printf("%" PRIu64, u);
    else
        fputs("null", stdout);
}

/* "1.2 s ago" and the like, for a last-heard age in ms. */
static void put_age(uint64_t ms)
{
    if (ms < 60000)
        printf("%.1f s ago", (double)ms / 1000.0);
    else if (ms < 3600000)
        printf("%" PRIu64 " min ago", ms / 60000);
    else
        printf("%" PRIu64 " h ago", ms / 3600000);
}

/* The peers array as JSON ("peers": [...]) or as a table. */
void node_peers_print(const node_run *nr, int json)
{
    const guts_json *j = &nr->j;
    const guts_json_val *peers = guts_json_get(j, nr->root, "peers");
    const guts_json_val *p =
        peers && peers->type == GUTS_JSON_ARRAY ? guts_json_child(j, peers) : NULL;
    int n = 0;
    if (json) fputs("\"peers\": [", stdout);
    if (!json) printf("%-32s  %-21s  %-9s  %s\n", "PEER", "ADDRESS", "VIA", "LAST HEARD");
    for (; p; p = guts_json_next(j, p)) {
        uint64_t port = 0, ago = 0;
        if (p->type != GUTS_JSON_OBJECT) continue;
        int have_port = field_u(j, p, "port", &port);
        int have_ago = field_u(j, p, "last_heard_ms_ago", &ago);
        if (json) {
            fputs(n ? ",\n    {\"id\": " : "\n    {\"id\": ", stdout);
            put_field_str(j, p, "id", 1);
            fputs(", \"address\": ", stdout);
            put_field_str(j, p, "address", 1);
            fputs(", \"port\": ", stdout);
            put_field_u(j, p, "port");
            fputs(", \"incarnation\": ", stdout);
            put_field_u(j, p, "incarnation");
            fputs(", \"last_heard_ms_ago\": ", stdout);
            put_field_u(j, p, "last_heard_ms_ago");
            fputs(", \"repos\": ", stdout);
            put_field_u(j, p, "repos");
            fputs(", \"via\": ", stdout);
            put_field_str(j, p, "via", 1);
            putchar('}');
        } else {
            char addr[64];
            const guts_json_val *a = guts_json_get(j, p, "address");
            int w = 0;
            put_field_str(j, p, "id", 0);
            fputs("  ", stdout);
            if (a && a->type == GUTS_JSON_STRING && a->slen < 40) {
                put_safe(a->str, a->slen, 0);
                w = (int)a->slen;
            } else {
                putchar('?');
                w = 1;
            }
            /* guts-node writes "ADDR:PORT" (its source address); a bare
             * address gets the port field appended. */
            int bare = a && a->type == GUTS_JSON_STRING && !memchr(a->str, ':', a->slen);
            addr[0] = 0;
            if (have_port && bare) snprintf(addr, sizeof addr, ":%" PRIu64, port);
            fputs(addr, stdout);
            w += (int)strlen(addr);
            printf("%*s  ", w < 21 ? 21 - w : 0, "");
            /* multicast, unicast or both (guts-node before issue 14: ?) */
            const guts_json_val *via = guts_json_get(j, p, "via");
            if (via && via->type == GUTS_JSON_STRING && via->slen <= 9) {
                put_safe(via->str, via->slen, 0);
                printf("%*s  ", (int)(9 - via->slen), "");
            } else {
                printf("%-9s  ", "?");
            }
            if (have_ago)
                put_age(ago);
            else
                putchar('?');
            putchar('\n');
        }
        n++;
    }
    if (json) fputs(n ? "\n  ]" : "]", stdout);
}

/* The seal's refusal counters of status.json, with their text names. */
static const char *const seal_refusals[][2] = {
    {"rejected_key_mismatch", "key mismatch"},
    {"rejected_unsealed", "not sealed"},
    {"rejected_stale", "stale"},
    {"rejected_replay", "replayed"},
    {"rejected_forged", "forged"},
    {"rejected_short", "truncated"},
    {"rejected_version", "bad version"},
    {"rejected_state", "out of order"},
};

/* Whether the node runs keyed (its "seal" object), and what it refused:
 * a node with another key or none on the LAN shows up here. */
/* Sources whose datagrams the node refused (another key, open/sealed
 * mismatch): one line each, text only (status.json has them as they are). */
static void node_refused_print(const node_run *nr)
{
    const guts_json *j = &nr->j;
    const guts_json_val *rv = guts_json_get(j, nr->root, "refused");
    const guts_json_val *r = rv && rv->type == GUTS_JSON_ARRAY ? guts_json_child(j, rv) : NULL;
    for (; r; r = guts_json_next(j, r)) {
        uint64_t count = 0;
        if (r->type != GUTS_JSON_OBJECT) continue;
        fputs("refused datagrams from ", stdout);
        put_field_str(j, r, "address", 0);
        fputs(": ", stdout);
        put_field_str(j, r, "reason", 0);
        if (field_u(j, r, "count", &count)) printf(" (%" PRIu64 ")", count);
        putchar('\n');
    }
}

static void node_seal_print(const node_run *nr, int json)
{
    const guts_json *j = &nr->j;
    const guts_json_val *sv = guts_json_get(j, nr->root, "seal");
    if (!sv || sv->type != GUTS_JSON_OBJECT) { /* a node from before keys */
        if (json) fputs(", \"seal\": null", stdout);
        return;
    }
    const guts_json_val *k = guts_json_get(j, sv, "keyed");
    int keyed = k && k->type == GUTS_JSON_TRUE;
    if (json) {
        printf(", \"seal\": {\"keyed\": %s", keyed ? "true" : "false");
        if (keyed) {
            fputs(", \"key_id\": ", stdout);
            put_field_str(j, sv, "key_id", 1);
            for (size_t i = 0; i < sizeof seal_refusals / sizeof *seal_refusals; i++) {
                printf(", \"%s\": ", seal_refusals[i][0]);
                put_field_u(j, sv, seal_refusals[i][0]);
            }
        }
        putchar('}');
        return;
    }
    if (!keyed) {
        fputs("running open (no --key-file): traffic is neither authenticated nor encrypted\n",
              stdout);
        return;
    }
    fputs("keyed: cluster key ", stdout);
    put_field_str(j, sv, "key_id", 0);
    int n = 0;
    for (size_t i = 0; i < sizeof seal_refusals / sizeof *seal_refusals; i++) {
        uint64_t u = 0;
        if (!field_u(j, sv, seal_refusals[i][0], &u) || u == 0) continue;
        printf("%s%" PRIu64 " %s", n++ ? ", " : "; refused ", u, seal_refusals[i][1]);
    }
    putchar('\n');
}

/* Repositories the node found damaged and set aside (status.json's
 * "damaged"): each is pulled afresh from peers under its own key. */
static void node_damaged_print(const node_run *nr, int json)
{
    const guts_json *j = &nr->j;
    const guts_json_val *list = guts_json_get(j, nr->root, "damaged");
    const guts_json_val *r =
        list && list->type == GUTS_JSON_ARRAY ? guts_json_child(j, list) : NULL;
    /* objects that failed their hash when served (dropped, fetched again) */
    const guts_json_val *ctr = guts_json_get(j, nr->root, "counters");
    uint64_t bad = 0;
    if (ctr && ctr->type == GUTS_JSON_OBJECT) field_u(j, ctr, "objects_damaged", &bad);
    if (json)
        printf(", \"objects_damaged\": %" PRIu64, bad);
    else if (bad)
        printf("damaged objects: %" PRIu64 " failed their hash when served; dropped and fetched "
               "again from peers\n",
               bad);
    int n = 0;
    if (json) fputs(",\n  \"damaged\": [", stdout);
    for (; r; r = guts_json_next(j, r)) {
        if (r->type != GUTS_JSON_OBJECT) continue;
        if (json) {
            fputs(n ? ",\n    {\"key\": " : "\n    {\"key\": ", stdout);
            put_field_str(j, r, "key", 1);
            fputs(", \"moved_to\": ", stdout);
            put_field_str(j, r, "moved_to", 1);
            fputs(", \"cause\": ", stdout);
            put_field_str(j, r, "cause", 1);
            fputs(", \"unix_ms\": ", stdout);
            put_field_u(j, r, "unix_ms");
            putchar('}');
        } else {
            fputs("damaged: ", stdout);
            put_field_str(j, r, "key", 0);
            fputs(" set aside as ", stdout);
            put_field_str(j, r, "moved_to", 0);
            fputs(" (", stdout);
            put_field_str(j, r, "cause", 0);
            fputs("); a healthy copy is pulled from peers\n", stdout);
        }
        n++;
    }
    if (json) fputs(n ? "\n  ]" : "]", stdout);
}

/* Connections the node closed or refused before they proved anything
 * (status.json counters): a silent or hostile neighbour shows up here. */
static const char *const conn_refusals[][2] = {
    {"tcp_handshake_timeouts", "silent past the handshake deadline"},
    {"tcp_refused_source", "over a source's connection cap"},
    {"tcp_evicted", "evicted unproven from a full table"},
    {"rate_limited_conns", "over a source's connection rate"},
};

static void node_conns_print(const node_run *nr, int json)
{
    const guts_json *j = &nr->j;
    const guts_json_val *cv = guts_json_get(j, nr->root, "counters");
    if (!cv || cv->type != GUTS_JSON_OBJECT) return;
    int n = 0;
    for (size_t i = 0; i < sizeof conn_refusals / sizeof *conn_refusals; i++) {
        uint64_t u = 0;
        if (!field_u(j, cv, conn_refusals[i][0], &u)) continue;
        if (json) {
            printf(", \"%s\": %" PRIu64, conn_refusals[i][0], u);
        } else if (u) {
            printf("%s%" PRIu64 " %s", n++ ? ", " : "connections closed or refused: ", u,
                   conn_refusals[i][1]);
        }
    }
    if (n) putchar('\n');
}

/* The node section of `guts status`: process, peers, per-repository state. */
void node_print(const node_run *nr, const char *data, int json)
{
    const guts_json *j = &nr->j;
    int live = nr->state == NODE_RUNNING || nr->state == NODE_STALE;
    assert(nr->state >= NODE_ABSENT && nr->state <= NODE_BAD); /* names node_state_names */
    if (json) {
        printf(",\n \"daemon\": {\"state\": \"%s\"", node_state_names[nr->state]);
        if (nr->state == NODE_BAD) {
            fputs(", \"error\": \"", stdout);
            put_safe(nr->why, strlen(nr->why), 1);
            putchar('"');
        }
        if (nr->state != NODE_ABSENT && nr->state != NODE_BAD)
            printf(", \"pid\": %ld, \"updated_ms_ago\": %" PRIu64, nr->pid, nr->age_ms);
        if (!live) {
            fputs("}", stdout);
            return;
        }
        fputs(", \"node_id\": ", stdout);
        put_field_str(j, nr->root, "node_id", 1);
        fputs(", \"listen\": ", stdout);
        put_field_str(j, nr->root, "listen", 1);
        fputs(", \"incarnation\": ", stdout);
        put_field_u(j, nr->root, "incarnation");
        fputs(", \"interval_ms\": ", stdout);
        put_field_u(j, nr->root, "interval_ms");
        fputs(", \"uptime_ms\": ", stdout);
        put_field_u(j, nr->root, "uptime_ms");
        node_seal_print(nr, 1);
        node_conns_print(nr, 1);
        fputs(",\n  ", stdout);
        node_peers_print(nr, 1);
        fputs(",\n  \"repos\": [", stdout);
    } else {
        putchar('\n');
        switch (nr->state) {
        case NODE_ABSENT:
            printf("no node running on %s\n", data);
            return;
        case NODE_DEAD:
            printf("no node running on %s (status.json left by pid %ld, which is gone: killed?)\n",
                   data, nr->pid);
            return;
        case NODE_BAD:
            printf("node state unknown: %s: %s\n", nr->path, nr->why);
            return;
        case NODE_STALE:
            printf("guts-node pid %ld is not responding: status.json last written %.1f s ago\n",
                   nr->pid, (double)nr->age_ms / 1000.0);
            break;
        default:
            break;
        }
        printf("guts-node pid %ld, node ", nr->pid);
        put_field_str(j, nr->root, "node_id", 0);
        fputs(", listening on ", stdout);
        put_field_str(j, nr->root, "listen", 0);
        fputs(", incarnation ", stdout);
        put_field_u(j, nr->root, "incarnation");
        putchar('\n');
        node_seal_print(nr, 0);
        node_refused_print(nr);
        node_conns_print(nr, 0);
        node_peers_print(nr, 0);
        printf("%-30s %10s  %s\n", "SYNC", "OBJECTS", "STATE");
    }
    const guts_json_val *repos = guts_json_get(j, nr->root, "repos");
    const guts_json_val *r =
        repos && repos->type == GUTS_JSON_ARRAY ? guts_json_child(j, repos) : NULL;
    int n = 0;
    for (; r; r = guts_json_next(j, r)) {
        if (r->type != GUTS_JSON_OBJECT) continue;
        if (json) {
            fputs(n ? ",\n    {\"key\": " : "\n    {\"key\": ", stdout);
            put_field_str(j, r, "key", 1);
            fputs(", \"objects\": ", stdout);
            put_field_u(j, r, "objects");
            fputs(", \"fingerprint\": ", stdout);
            put_field_str(j, r, "fingerprint", 1);
            fputs(", \"state\": ", stdout);
            put_field_str(j, r, "state", 1);
            putchar('}');
        } else {
            const guts_json_val *k = guts_json_get(j, r, "key");
            uint64_t objs = 0;
            int w = 1;
            if (k && k->type == GUTS_JSON_STRING && k->slen <= GUTS_KEY_MAX) {
                put_safe(k->str, k->slen, 0);
                w = (int)k->slen;
            } else {
                putchar('?');
            }
            printf("%*s ", w < 30 ? 30 - w : 0, "");
            if (field_u(j, r, "objects", &objs))
                printf("%10" PRIu64 "  ", objs);
            else
                printf("%10s  ", "?");
            put_field_str(j, r, "state", 0);
            putchar('\n');
        }
        n++;
    }
    if (json) fputs(n ? "\n  ]" : "]", stdout);
    node_damaged_print(nr, json);
    if (json) putchar('}');
}
