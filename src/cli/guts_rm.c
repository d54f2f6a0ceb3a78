/* guts_rm.c - `guts rm`: remove a repository from this data dir (never
 * from other nodes).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "guts_cli.h"

const char usage_rm[] =
    "usage: guts rm OWNER/NAME [--yes] [--force]\n"
    "\n"
    "Remove repository OWNER/NAME (its LMDB environment) from the data dir.\n"
    "Asks on a terminal; --yes removes without asking (required when stdin is\n"
    "not a terminal). Refused while a guts-node runs on the data dir: the node\n"
    "holds the environment open, would go on serving its now invisible copy\n"
    "until it restarts, and peers that have the repository send it back.\n"
    "Stop the node first, or pass --force to remove anyway. Removing from one\n"
    "node never removes from others.\n";

int cmd_rm(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "rm";
    const char *key = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    guts_repo_info info;
    node_run nr;
    int yes = 0, force = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--yes") == 0 || strcmp(argv[i], "-y") == 0)
            yes = 1;
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (key)
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts rm --help)", argv[i]);
        else
            key = argv[i];
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME (see guts rm --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    /* A damaged env can still be removed: checked in a child (rm is rare),
     * then never opened here. */
    int e = guts_repo_open(d, key, GUTS_REPO_VERIFY, &r), damaged = e == GUTS_EDAMAGED;
    memset(&info, 0, sizeof info);
    if (e && !damaged) {
        rc = repo_open_error(cmd, d, key, e);
        goto out_data;
    }
    if (!damaged) {
        e = guts_repo_info_get(r, &info);
        guts_repo_close(r);
    }
    if (e && !damaged) {
        rc = die(EXIT_OP, cmd, "%s: %s", key, store_why(e));
        goto out_data;
    }
    node_read(guts_data_path(d), &nr);
    /* A running node holds the env open: on Linux unlinking its files is
     * safe for that process (it keeps the old inodes), but it goes on
     * serving and writing a copy nobody else can see, and a later import or
     * a peer's push recreates the repository beside it. So: stop the node
     * first, unless the operator says otherwise. */
    if (!force && (nr.state == NODE_RUNNING || nr.state == NODE_STALE)) {
        rc = die(EXIT_OP, cmd,
                 "%s: guts-node (pid %ld) is running on \"%s\" and holds the repository open; "
                 "stop it first, or pass --force (the node keeps its open copy until it "
                 "restarts, and peers that have the repository will send it back)",
                 key, nr.pid, guts_data_path(d));
        goto out;
    }
    if (!force && nr.state == NODE_BAD) {
        rc = die(EXIT_OP, cmd,
                 "%s: cannot tell whether a node is running (\"%s\": %s); pass --force to "
                 "remove anyway",
                 key, nr.path, nr.why);
        goto out;
    }
    if (!yes) {
        if (!isatty(0) || !isatty(2)) {
            rc = die(EXIT_USAGE, cmd, "%s: not removed: pass --yes to remove without asking", key);
            goto out;
        }
        char line[16];
        if (damaged)
            fprintf(stderr, "remove %s (a damaged environment) from %s? [y/N] ", key,
                    guts_data_path(d));
        else
            fprintf(stderr, "remove %s (%" PRIu64 " objects, %" PRIu64 " refs) from %s? [y/N] ",
                    key, info.objects, info.refs, guts_data_path(d));
        if (!fgets(line, sizeof line, stdin) ||
            (strcmp(line, "y\n") != 0 && strcmp(line, "yes\n") != 0)) {
            rc = die(EXIT_OP, cmd, "%s: not removed", key);
            goto out;
        }
    }
    e = guts_repo_remove(d, key);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s: %s (%s)", key, guts_strerror(e), guts_store_errmsg());
        goto out;
    }
    if (damaged)
        printf("removed %s: a damaged environment\n", key);
    else
        printf("removed %s: %" PRIu64 " objects, %" PRIu64 " refs\n", key, info.objects, info.refs);
out:
    node_run_free(&nr);
out_data:
    guts_data_close(d);
    return rc;
}
