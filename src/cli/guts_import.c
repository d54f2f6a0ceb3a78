/* guts_import.c - `guts import` and `guts export`: a git repository into
 * the store and back out, through the git bridge (src/git/gitio.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "guts_cli.h"
#include "gitio.h"

const char usage_import[] =
    "usage: guts import [--force] [--prune] OWNER/NAME GITDIR\n"
    "\n"
    "Store every object, the refs and HEAD of the git repository GITDIR (bare or\n"
    "not) as repository OWNER/NAME. Importing again stores only the new objects\n"
    "and the changed refs. Refs follow git push's rules: new refs are added and\n"
    "branches fast-forwarded; a ref someone else changed since GITDIR's last\n"
    "import (a push, another node; before GITDIR's first import, every ref) is\n"
    "never rewound, moved (tags, HEAD) or deleted: it is kept, with one \"kept\"\n"
    "line saying why. Refs nobody else changed follow GITDIR, deletions included.\n"
    "--force (-f): rewind, move and restore such refs to GITDIR's.\n"
    "--prune (-p): delete refs GITDIR lacks, whoever wrote them.\n"
    "OWNER and NAME: 1-100 characters of [A-Za-z0-9._-], not starting with '.'.\n";

const char usage_export[] =
    "usage: guts export [--level N] OWNER/NAME OUTDIR\n"
    "\n"
    "Write repository OWNER/NAME as a new bare git repository OUTDIR (absent or\n"
    "empty): every object in one packfile, every ref, and HEAD.\n"
    "--level N: zlib level of the pack, 0 (default: fastest) to 9 (smallest).\n"
    "Objects the store keeps as deltas go as git deltas; `git -C OUTDIR gc`\n"
    "makes the pack as small as git's own.\n";

/* Refs an import kept, one line each up to IMPORT_KEPT_SHOW, then a count:
 * a first import into a busy repository may keep thousands. */
#define IMPORT_KEPT_SHOW 20

typedef struct import_kept {
    uint64_t n;
} import_kept;

static void import_kept_line(void *ctx, const char *name, const char *why)
{
    import_kept *k = ctx;
    if (k->n++ < IMPORT_KEPT_SHOW) printf("kept %s: %s\n", name, why);
}

int cmd_import(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "import";
    const char *key = NULL, *gitdir = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    guts_gitio_stats st;
    import_kept kept = {0};
    guts_gitio_import_opts opts = {.progress = isatty(2), .kept = import_kept_line, .ctx = &kept};
    char err[GUTS_GITIO_ERR_MAX];
    int rc, operands = 0;
    if (wants_help(argc, argv)) return fputs(usage_import, stdout), 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0)
            opts.flags |= GUTS_GITIO_FORCE;
        else if (strcmp(argv[i], "--prune") == 0 || strcmp(argv[i], "-p") == 0)
            opts.flags |= GUTS_GITIO_PRUNE;
        else if (argv[i][0] == '-' && argv[i][1])
            return die(EXIT_USAGE, cmd, "unknown option \"%s\" (see guts import --help)", argv[i]);
        else if (operands++ == 0)
            key = argv[i];
        else
            gitdir = argv[i];
    }
    if (operands != 2)
        return die(EXIT_USAGE, cmd,
                   "expected OWNER/NAME GITDIR, got %d argument%s (see guts import --help)",
                   operands, operands == 1 ? "" : "s");
    if ((rc = check_key(cmd, key))) return rc;
    if (guts_gitio_check_repo(gitdir, err) != GUTS_OK) return die(EXIT_OP, cmd, "%s", err);
    if ((rc = open_data(cmd, data_opt, GUTS_DATA_CREATE, &d))) return rc;
    /* Remember whether this import creates the repository: a failed first
     * import that stored nothing then leaves nothing behind. */
    int created = guts_repo_open(d, key, 0, &r) == GUTS_ENOTFOUND;
    if (r) guts_repo_close(r);
    r = NULL;
    if ((rc = open_repo(cmd, d, key, GUTS_REPO_CREATE, &r))) goto out;
    double t0 = now_s();
    int e = guts_gitio_import(r, guts_data_node_id(d), gitdir, &opts, &st, err);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s from \"%s\": %s", key, gitdir, err);
        if (created && st.objects_added == 0) {
            guts_repo_close(r);
            r = NULL;
            guts_repo_remove(d, key);
        }
        goto out;
    }
    if (kept.n > IMPORT_KEPT_SHOW)
        printf("kept %" PRIu64 " more refs\n", kept.n - IMPORT_KEPT_SHOW);
    printf("imported %s: %" PRIu64 " objects added (%" PRIu64 " in git, %.1f MB read), %" PRIu64
           " refs changed (%" PRIu64 " deleted), %" PRIu64 " kept, %.2f s\n",
           key, st.objects_added, st.objects_total, (double)st.bytes / 1e6, st.refs_changed,
           st.refs_deleted, st.refs_kept, now_s() - t0);
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

int cmd_export(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "export";
    guts_data *d = NULL;
    guts_repo *r = NULL;
    guts_gitio_stats st;
    char err[GUTS_GITIO_ERR_MAX];
    int rc;
    int level = GUTS_GITIO_ZLEVEL_DEFAULT;
    if (wants_help(argc, argv)) return fputs(usage_export, stdout), 0;
    if (argc > 1 && strncmp(argv[1], "--level", 7) == 0) {
        const char *v = argv[1][7] == '='             ? argv[1] + 8
                        : argv[1][7] == 0 && argc > 2 ? argv[2]
                                                      : "";
        if (!(v[0] >= '0' && v[0] <= '9' && v[1] == 0))
            return die(EXIT_USAGE, cmd, "--level wants a digit 0-9, got \"%s\"", v);
        level = v[0] - '0';
        int used = argv[1][7] == '=' ? 1 : 2;
        argv[used] = argv[0];
        argv += used;
        argc -= used;
    }
    if ((rc = check_operands(cmd, argc, argv, 2, "OWNER/NAME OUTDIR"))) return rc;
    if ((rc = check_key(cmd, argv[1]))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    /* Export reads every object: the full check first costs it little and
     * refuses a damaged env before anything is written. */
    if ((rc = open_repo(cmd, d, argv[1], GUTS_REPO_VERIFY, &r))) goto out;
    double t0 = now_s();
    int e = guts_gitio_export(r, argv[2], level, isatty(2), &st, err);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s to \"%s\": %s", argv[1], argv[2], err);
        goto out;
    }
    printf("exported %s: %" PRIu64 " objects (%.1f MB, pack %.1f MB), %" PRIu64 " refs, %.2f s\n",
           argv[1], st.objects_added, (double)st.bytes / 1e6, (double)st.pack_bytes / 1e6,
           st.refs_total, now_s() - t0);
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}
