/* guts_keys.c - cluster keys: `guts keygen` writes one, `guts keys list`
 * and `guts keys reload` show and reload the ring of the node running on
 * the data dir.
 *
 * The node writes its ring (key ids, first seals) and the key id each peer
 * seals with into status.json; `list` shows them, so a rotation's progress
 * is visible: every peer on the new key, none left on the old one (such a
 * node is also in the refused list, as a key mismatch). `reload` sends the
 * node SIGHUP, waits for the status file it writes after handling it, and
 * compares the ring there with the key file when it can read that file.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "guts_cli.h"
#include "guts/seal.h"

/* How long reload waits for the node to handle SIGHUP (it writes its status
 * file right after; a loaded machine may take a few seconds). */
#define KEYS_RELOAD_WAIT_MS 10000

const char usage_keys[] =
    "usage: guts keys list [--json]\n"
    "       guts keys reload [--json]\n"
    "\n"
    "The cluster keys of the guts-node running on the data dir.\n"
    "list    the node's key ring (key ids: the first seals, all of them open),\n"
    "        its key file, the key each peer seals with, and the sources it\n"
    "        refuses for another key or none.\n"
    "reload  make the node reread its key file (SIGHUP), wait for it, and\n"
    "        list the ring it now uses; exit 1 when it does not match the key\n"
    "        file (the node's log says why).\n"
    "A key file holds one key per line (64 hex digits, from guts keygen).\n"
    "Rotation without downtime: add the new key as a second line on every\n"
    "node and reload; then make it the first line everywhere and reload;\n"
    "then remove the old line and reload. Streams and datagrams keep\n"
    "flowing through all three steps (docs/operations.md, \"Cluster key\").\n"
    "--json prints {\"node\", \"keyed\", \"keys\", \"key_file\", \"peers\": [{\"id\",\n"
    "\"address\", \"key_id\"}], \"refused\": [{\"address\", \"reason\", \"count\"}]}.\n";

static const char *str_of(const guts_json *j, const guts_json_val *obj, const char *key)
{
    const guts_json_val *v = obj ? guts_json_get(j, obj, key) : NULL;
    return v && v->type == GUTS_JSON_STRING ? v->str : NULL;
}

/* The ring as one string "aaaaaaaa bbbbbbbb" (first seals). */
static void ring_text(const guts_json *j, const guts_json_val *seal, char *out, size_t n)
{
    const guts_json_val *keys = seal ? guts_json_get(j, seal, "keys") : NULL;
    out[0] = 0;
    if (!keys || keys->type != GUTS_JSON_ARRAY) return;
    for (const guts_json_val *k = guts_json_child(j, keys); k; k = guts_json_next(j, k))
        if (k->type == GUTS_JSON_STRING && strlen(out) + k->slen + 2 < n)
            snprintf(out + strlen(out), n - strlen(out), "%s%.*s", out[0] ? " " : "",
                     (int)k->slen, k->str);
}

static void keys_print(const node_run *nr, int json)
{
    const guts_json *j = &nr->j;
    const guts_json_val *seal = guts_json_get(j, nr->root, "seal");
    const guts_json_val *kd = seal ? guts_json_get(j, seal, "keyed") : NULL;
    int keyed = kd && kd->type == GUTS_JSON_TRUE;
    const char *node = str_of(j, nr->root, "node_id"), *file = str_of(j, seal, "key_file");
    char ring[GUTS_SEAL_KEYS_MAX * 10 + 1];
    ring_text(j, seal, ring, sizeof ring);
    const guts_json_val *peers = guts_json_get(j, nr->root, "peers");
    const guts_json_val *refused = guts_json_get(j, nr->root, "refused");
    if (json) {
        fputs("{\"node\": ", stdout);
        if (node)
            put_json_str(node);
        else
            fputs("null", stdout);
        printf(", \"keyed\": %s, \"keys\": [", keyed ? "true" : "false");
        for (char *p = ring, *sp; *p; p = sp ? sp + 1 : p + strlen(p)) {
            sp = strchr(p, ' ');
            printf("%s\"%.*s\"", p == ring ? "" : ", ", (int)(sp ? sp - p : (long)strlen(p)), p);
        }
        fputs("], \"key_file\": ", stdout);
        if (file)
            put_json_str(file);
        else
            fputs("null", stdout);
        fputs(", \"peers\": [", stdout);
    } else if (keyed) {
        char *sp = strchr(ring, ' ');
        printf("node %.8s seals with %.8s", node ? node : "?", ring);
        if (sp) printf("; also opens %s", sp + 1);
        printf(" (key file %s)\n", file ? file : "?");
    } else {
        printf("node %.8s runs open (no --key-file): nothing is sealed\n", node ? node : "?");
    }
    size_t np = 0;
    if (peers && peers->type == GUTS_JSON_ARRAY) {
        for (const guts_json_val *p = guts_json_child(j, peers); p; p = guts_json_next(j, p)) {
            const char *id = str_of(j, p, "id"), *addr = str_of(j, p, "address"),
                       *kid = str_of(j, p, "key_id");
            if (json) {
                fputs(np ? ", {\"id\": " : "{\"id\": ", stdout);
                put_json_str(id ? id : "?");
                fputs(", \"address\": ", stdout);
                put_json_str(addr ? addr : "?");
                fputs(", \"key_id\": ", stdout);
                if (kid)
                    put_json_str(kid);
                else
                    fputs("null", stdout);
                putchar('}');
            } else {
                printf("peer %.8s ", id ? id : "?");
                put_safe(addr ? addr : "?", strlen(addr ? addr : "?"), 0);
                if (kid) {
                    const char *at = strstr(ring, kid);
                    printf("  seals with %.8s%s\n", kid,
                           at == ring   ? ""
                           : at         ? " (this node's other key: rotation in progress)"
                                        : " (?)");
                } else {
                    fputs(keyed ? "  key not known yet\n" : "\n", stdout);
                }
            }
            np++;
        }
    }
    if (json) fputs("], \"refused\": [", stdout);
    size_t nf = 0;
    if (refused && refused->type == GUTS_JSON_ARRAY) {
        for (const guts_json_val *r = guts_json_child(j, refused); r; r = guts_json_next(j, r)) {
            const char *addr = str_of(j, r, "address"), *why = str_of(j, r, "reason");
            const guts_json_val *cnt = guts_json_get(j, r, "count");
            uint64_t c = cnt && cnt->is_uint ? cnt->u : 0;
            if (json) {
                fputs(nf ? ", {\"address\": " : "{\"address\": ", stdout);
                put_json_str(addr ? addr : "?");
                fputs(", \"reason\": ", stdout);
                put_json_str(why ? why : "?");
                printf(", \"count\": %" PRIu64 "}", c);
            } else {
                fputs("refused ", stdout);
                put_safe(addr ? addr : "?", strlen(addr ? addr : "?"), 0);
                fputs("  ", stdout);
                put_safe(why ? why : "?", strlen(why ? why : "?"), 0);
                printf(" (%" PRIu64 " datagram%s): it holds none of this node's keys\n", c,
                       c == 1 ? "" : "s");
            }
            nf++;
        }
    }
    if (json) fputs("]}\n", stdout);
}

/* The ids of the key file's ring, as status.json writes them: 1. 0 when
 * the file cannot be opened here (another user's file: not an error), -1
 * with err filled when it reads but is refused (the node refused it too). */
static int file_ring(const char *path, char *out, size_t n, char *err, size_t errlen)
{
    uint8_t keys[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN], ids[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEYID_LEN];
    size_t k = 0;
    guts_seal *s = NULL;
    int e = guts_seal_keys_load(path, keys, GUTS_SEAL_KEYS_MAX, &k, err, errlen);
    int ok = e == 0 && guts_seal_new_ring(keys, k, &s) == 0;
    memset(keys, 0, sizeof keys);
    out[0] = 0;
    if (!ok) return e == GUTS_EINVAL ? -1 : 0;
    guts_seal_key_ids(s, ids, GUTS_SEAL_KEYS_MAX);
    guts_seal_free(s);
    for (size_t i = 0; i < k; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%02x%02x%02x%02x", i ? " " : "",
                 ids[i][0], ids[i][1], ids[i][2], ids[i][3]);
    return 1;
}

int cmd_keys(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "keys", *data;
    int json = 0, reload = 0, rc;
    if (argc < 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "reload") != 0))
        return die(EXIT_USAGE, cmd, "expected list or reload (see guts keys --help)");
    reload = strcmp(argv[1], "reload") == 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts keys --help)",
                       argv[i]);
    }
    if ((rc = data_path(cmd, data_opt, &data))) return rc;
    node_run nr;
    node_read(data, &nr);
    if (nr.state != NODE_RUNNING) {
        rc = die(EXIT_OP, cmd, "no node running on \"%s\" (%s)", data,
                 nr.state == NODE_BAD ? nr.why : "its status.json is absent or not fresh");
        node_run_free(&nr);
        return rc;
    }
    if (reload) {
        /* The node counts the SIGHUPs it handled in status.json and writes
         * the file after each: wait for the count to grow (a file written
         * between the signal and its handling still has the old count). */
        const guts_json_val *seal = guts_json_get(&nr.j, nr.root, "seal");
        uint64_t before = 0, now = 0;
        if (!seal || !field_u(&nr.j, seal, "reloads", &before)) {
            rc = die(EXIT_OP, cmd, "the node runs open (no --key-file): nothing to reload");
            node_run_free(&nr);
            return rc;
        }
        long pid = nr.pid;
        if (kill((pid_t)pid, SIGHUP) != 0) {
            rc = die(EXIT_OP, cmd, "cannot signal the node (pid %ld): %s", pid, strerror(errno));
            node_run_free(&nr);
            return rc;
        }
        for (int waited = 0;; waited += 50) {
            node_run_free(&nr);
            node_read(data, &nr);
            seal = guts_json_get(&nr.j, nr.root, "seal");
            if (nr.state == NODE_RUNNING && seal && field_u(&nr.j, seal, "reloads", &now) &&
                now > before)
                break;
            if (waited >= KEYS_RELOAD_WAIT_MS) {
                rc = die(EXIT_OP, cmd, "the node (pid %ld) wrote no status within %d s of SIGHUP",
                         pid, KEYS_RELOAD_WAIT_MS / 1000);
                node_run_free(&nr);
                return rc;
            }
            struct timespec nap = {0, 50 * 1000000L};
            nanosleep(&nap, NULL);
        }
    }
    keys_print(&nr, json);
    rc = 0;
    if (reload) {
        const guts_json_val *seal = guts_json_get(&nr.j, nr.root, "seal");
        const char *file = str_of(&nr.j, seal, "key_file");
        char have[GUTS_SEAL_KEYS_MAX * 10 + 1], want[GUTS_SEAL_KEYS_MAX * 10 + 1], err[512];
        ring_text(&nr.j, seal, have, sizeof have);
        int got = file ? file_ring(file, want, sizeof want, err, sizeof err) : 0;
        if (got < 0)
            rc = die(EXIT_OP, cmd, "%s; the node kept its keys (%s), not those of its key file",
                     err, have);
        else if (got && strcmp(have, want) != 0)
            rc = die(EXIT_OP, cmd,
                     "the node's keys (%s) are not those of %s (%s): it kept its keys, its log "
                     "says why",
                     have, file, want);
    }
    node_run_free(&nr);
    return rc;
}

const char usage_keygen[] =
    "usage: guts keygen FILE\n"
    "\n"
    "Write a new cluster key: one line of 64 hex digits (32 random bytes) in\n"
    "FILE, created with mode 0600 (an existing FILE is never replaced). Copy\n"
    "it to every node of the cluster and start each with guts-node --key-file\n"
    "FILE: their datagrams and streams are then encrypted and authenticated,\n"
    "and nodes without it are ignored. Prints the key id (8 hex digits), the\n"
    "same on every node that holds the same key. A key file may hold several\n"
    "keys, a line each: the first seals, all open (see guts keys --help for\n"
    "rotating a key without downtime).\n";

/* ---- keygen ------------------------------------------------------------- */

/* The key is read back from the file just written, so the id printed is
 * the one guts-node will announce with (and a short write would fail). */
int cmd_keygen(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "keygen";
    (void)data_opt;
    int rc;
    if ((rc = check_operands(cmd, argc, argv, 1, "FILE"))) return rc;
    char err[512];
    rc = guts_seal_key_generate(argv[1], err, sizeof err);
    if (rc != 0) return die(EXIT_OP, cmd, "%s", err);
    uint8_t key[GUTS_SEAL_KEY_LEN];
    guts_seal *s = NULL;
    rc = guts_seal_key_load(argv[1], key, err, sizeof err);
    if (rc != 0) return die(EXIT_OP, cmd, "%s", err);
    rc = guts_seal_new(key, &s);
    memset(key, 0, sizeof key);
    if (rc != 0) return die(EXIT_OP, cmd, "%s: %s", argv[1], guts_strerror(rc));
    uint8_t id[GUTS_SEAL_KEYID_LEN];
    guts_seal_key_id(s, id);
    guts_seal_free(s);
    printf("wrote %s (key id ", argv[1]);
    for (size_t i = 0; i < sizeof id; i++)
        printf("%02x", id[i]);
    printf(")\n");
    return 0;
}
