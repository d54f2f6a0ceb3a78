/* guts_status.c - `guts status`, `guts peers` and `guts ls`: the data dir's
 * repositories and the running node's view of them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "guts_cli.h"

const char usage_status[] =
    "usage: guts status [--json]\n"
    "\n"
    "Print this node's id and, per repository: key, objects, refs (HEAD\n"
    "included), set fingerprint and refs digest (32 hex digits each), and its\n"
    "conflicts when it has any (see guts conflicts). When a\n"
    "guts-node runs on the data dir (DATA/node/status.json written in the last\n"
    "5 s by a live pid), also its pid, node id, listen address, whether it\n"
    "runs keyed (its key id and the traffic it refused: key mismatch, not\n"
    "sealed, ...) or open, its peers (id, address, last heard) and each\n"
    "repository's sync state (in_sync, behind, pulling) and the repositories\n"
    "it found damaged and set aside under DATA/damaged (\"damaged\": key,\n"
    "moved_to, cause); otherwise \"no node running\". A repository whose\n"
    "environment is damaged is one line on stderr and exit 1.\n"
    "--json prints one JSON object instead: {\"node\", \"repos\": [...],\n"
    "\"daemon\": {\"state\": \"running\"|\"stale\"|\"not_running\"|\"unreadable\", ...}}.\n"
    "Exit 1 if status.json exists but cannot be read as a status file.\n";

const char usage_peers[] =
    "usage: guts peers [--json]\n"
    "\n"
    "Print the peers the node running on the data dir hears from: node id,\n"
    "address:port, how (multicast, unicast or both) and when it last heard from\n"
    "each; \"no node running\" if none.\n"
    "--json prints {\"daemon\": STATE, \"peers\": [{\"id\", \"address\", \"port\",\n"
    "\"incarnation\", \"last_heard_ms_ago\", \"repos\", \"via\"}]}. Exit 1 if status.json\n"
    "exists but cannot be read as a status file.\n";

const char usage_ls[] =
    "usage: guts ls [--json]\n"
    "\n"
    "List the repositories in the data dir: key, objects, refs (HEAD included).\n"
    "--json prints a JSON array of {\"key\", \"objects\", \"refs\"}.\n";

/* ---- status / peers ----------------------------------------------------- */

typedef struct status_ctx {
    guts_data *d;
    const node_run *nr;
    int json;
    int n;
    int rc;
} status_ctx;

/* The sync state the running node reports for key, or NULL. */
static const guts_json_val *node_repo_state(const node_run *nr, const char *key)
{
    if (!nr || nr->state != NODE_RUNNING) return NULL;
    const guts_json_val *repos = guts_json_get(&nr->j, nr->root, "repos");
    const guts_json_val *r =
        repos && repos->type == GUTS_JSON_ARRAY ? guts_json_child(&nr->j, repos) : NULL;
    for (; r; r = guts_json_next(&nr->j, r)) {
        const guts_json_val *k = guts_json_get(&nr->j, r, "key");
        const guts_json_val *s = guts_json_get(&nr->j, r, "state");
        if (k && k->type == GUTS_JSON_STRING && strcmp(k->str, key) == 0 && s &&
            s->type == GUTS_JSON_STRING)
            return s;
    }
    return NULL;
}

static int status_repo(const char *key, void *arg)
{
    status_ctx *c = arg;
    guts_repo *r;
    guts_repo_info info;
    char fp[33], rd[33];
    uint64_t conflicts = 0;
    int rc = guts_repo_open(c->d, key, 0, &r);
    if (rc == GUTS_OK) {
        rc = guts_repo_info_get(r, &info);
        if (!rc) rc = conflicts_count(r, &conflicts);
        guts_repo_close(r);
    }
    if (rc) {
        /* Keep listing the others; report this one. */
        c->rc = die(EXIT_OP, "status", "repository \"%s\": %s", key, store_why(rc));
        return 0;
    }
    fp_hex(info.fp, fp);
    fp_hex(info.refs_digest, rd);
    if (c->json) {
        const guts_json_val *s = node_repo_state(c->nr, key);
        printf("%s\n    {\"key\": \"%s\", \"objects\": %" PRIu64 ", \"refs\": %" PRIu64
               ", \"tombstones\": %" PRIu64 ", \"fingerprint\": \"%s\", \"refs_digest\": \"%s\""
               ", \"clock\": %" PRIu64 ", \"stored_bytes\": %" PRIu64 ", \"staged\": %" PRIu64
               ", \"staged_bytes\": %" PRIu64 ", \"conflicts\": %" PRIu64 ", \"sync\": ",
               c->n ? "," : "", key, info.objects, info.refs, info.tombstones, fp, rd, info.clock,
               info.stored_bytes, info.staged, info.staged_bytes, conflicts);
        if (s) {
            putchar('"');
            put_safe(s->str, s->slen, 1);
            fputs("\"}", stdout);
        } else {
            fputs("null}", stdout);
        }
    } else {
        printf("%-30s %10" PRIu64 " %8" PRIu64 "  %s  %s", key, info.objects, info.refs, fp, rd);
        if (conflicts)
            printf("  %" PRIu64 " conflict%s (guts conflicts %s)", conflicts,
                   conflicts == 1 ? "" : "s", key);
        putchar('\n');
    }
    c->n++;
    return 0;
}

/* --json alone: the option every listing command takes. */
int parse_json_only(const char *cmd, int argc, char **argv, int *json)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            *json = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts %s --help)", argv[i],
                       cmd);
    }
    return 0;
}

int cmd_status(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "status";
    guts_data *d = NULL;
    status_ctx c = {0};
    node_run nr;
    char node[2 * GUTS_NODE_ID_LEN + 1];
    int rc;
    if ((rc = parse_json_only(cmd, argc, argv, &c.json))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    node_read(guts_data_path(d), &nr);
    c.d = d;
    c.nr = &nr;
    guts_node_id_to_hex(guts_data_node_id(d), node);
    if (c.json)
        printf("{\"node\": \"%s\", \"repos\": [", node);
    else
        printf("node %s\n%-30s %10s %8s  %-32s  %s\n", node, "REPOSITORY", "OBJECTS", "REFS",
               "FINGERPRINT", "REFS DIGEST");
    rc = guts_data_repos(d, status_repo, &c);
    if (c.json) printf("%s]", c.n ? "\n" : "");
    node_print(&nr, guts_data_path(d), c.json);
    if (c.json) printf("\n}\n");
    if (rc) c.rc = die(EXIT_OP, cmd, "listing repositories: %s", store_why(rc));
    if (nr.state == NODE_BAD) c.rc = die(EXIT_OP, cmd, "\"%s\": %s", nr.path, nr.why);
    node_run_free(&nr);
    guts_data_close(d);
    return c.rc;
}

int cmd_peers(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "peers";
    guts_data *d = NULL;
    node_run nr;
    int json = 0, rc;
    if ((rc = parse_json_only(cmd, argc, argv, &json))) return rc;
    /* opened only to tell a mistyped data dir from one without a node */
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    const char *data = guts_data_path(d);
    node_read(data, &nr);
    if (nr.state == NODE_BAD) {
        rc = die(EXIT_OP, cmd, "\"%s\": %s", nr.path, nr.why);
    } else if (json) {
        printf("{\"daemon\": \"%s\", ", node_state_names[nr.state]);
        if (nr.state == NODE_RUNNING || nr.state == NODE_STALE)
            node_peers_print(&nr, 1);
        else
            fputs("\"peers\": []", stdout);
        fputs("}\n", stdout);
    } else if (nr.state == NODE_RUNNING || nr.state == NODE_STALE) {
        if (nr.state == NODE_STALE)
            printf("guts-node pid %ld is not responding: status.json last written %.1f s ago\n",
                   nr.pid, (double)nr.age_ms / 1000.0);
        node_peers_print(&nr, 0);
    } else {
        printf("no node running on %s\n", data);
    }
    node_run_free(&nr);
    guts_data_close(d);
    return rc;
}

/* ---- ls ---------------------------------------------------------------- */

static int ls_repo(const char *key, void *arg)
{
    status_ctx *c = arg;
    guts_repo *r;
    guts_repo_info info;
    int rc = guts_repo_open(c->d, key, 0, &r);
    if (rc == GUTS_OK) {
        rc = guts_repo_info_get(r, &info);
        guts_repo_close(r);
    }
    if (rc) {
        c->rc = die(EXIT_OP, "ls", "repository \"%s\": %s", key, store_why(rc));
        return 0;
    }
    if (c->json)
        printf("%s\n  {\"key\": \"%s\", \"objects\": %" PRIu64 ", \"refs\": %" PRIu64 "}",
               c->n ? "," : "", key, info.objects, info.refs);
    else
        printf("%-30s %10" PRIu64 " %8" PRIu64 "\n", key, info.objects, info.refs);
    c->n++;
    return 0;
}

int cmd_ls(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "ls";
    guts_data *d = NULL;
    status_ctx c = {0};
    int rc;
    if ((rc = parse_json_only(cmd, argc, argv, &c.json))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    c.d = d;
    if (c.json)
        fputs("[", stdout);
    else
        printf("%-30s %10s %8s\n", "REPOSITORY", "OBJECTS", "REFS");
    rc = guts_data_repos(d, ls_repo, &c);
    if (c.json) printf("%s]\n", c.n ? "\n" : "");
    if (rc) c.rc = die(EXIT_OP, cmd, "listing repositories: %s", store_why(rc));
    guts_data_close(d);
    return c.rc;
}
