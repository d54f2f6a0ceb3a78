/* guts.c - the `guts` command: import, export, ls, refs, log, rm, status,
 * peers, fsck, keygen.
 *
 * A thin front end over the store (include/guts/store.h) and the git bridge
 * (src/git/). It is the only place that reads the environment ($GUTS_DATA,
 * $HOME) and the only place that turns an error code into an exit status:
 * 0 success, 1 an operational error, 2 a usage error. Every error is one line
 * on stderr that names the input at fault, so scripts can show it as is.
 * Arguments are checked (keys above all) before the data dir is touched.
 *
 * A running guts-node is seen only through DATA/node/status.json, which it
 * rewrites every second: the CLI needs no socket and no protocol of its own
 * to show peers and sync states, and the file is parsed as untrusted input
 * by a bounded reader (guts_json.c). Commands are one table (`commands`):
 * a new one (e.g. keygen) is a function, a usage text and a row.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guts_cli.h"
#include "gitio.h"
#include "guts_json.h"
#include "walk.h"
#include "guts/gitobj.h"
#include "guts/seal.h"
#include "guts/store.h"


/* Faults printed by fsck before it only counts them: a shallow or broken
 * repository may miss thousands of objects, one line each helps nobody. */
#define FSCK_REPORT_MAX 100

static const char *prog = "guts";

/* Print "guts: CMD: message" as one line and return code. */
int die(int code, const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    if (cmd)
        fprintf(stderr, "%s: %s: %s\n", prog, cmd, msg);
    else
        fprintf(stderr, "%s: %s\n", prog, msg);
    return code;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fp_hex(guts_fp fp, char out[33])
{
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, fp.hi, fp.lo);
}

/* ---- Usage -------------------------------------------------------------- */

static const char usage_main[] =
    "usage: guts [--data DIR] COMMAND [ARGS]\n"
    "\n"
    "Replicate git repositories across a LAN. Commands:\n"
    "  import OWNER/NAME GITDIR       store every object, ref and HEAD of a git repository\n"
    "  export OWNER/NAME OUTDIR       write a stored repository as a new bare git repository\n"
    "  ls [--json]                    list repositories: key, objects, refs\n"
    "  refs OWNER/NAME [--all] [--json]  list a repository's refs\n"
    "  log OWNER/NAME [REF] [-n N]    one line per commit, newest first\n"
    "  rm OWNER/NAME [--yes] [--force]  remove a repository from this data dir\n"
    "  status [--json]                node id, repositories, and a running node's state\n"
    "  peers [--json]                 the peers a running node hears from\n"
    "  fsck OWNER/NAME                rehash every object, check counts, refs and links\n"
    "  conflicts [OWNER/NAME]         divergent updates kept under refs/guts/conflicts/\n"
    "  resolve OWNER/NAME REF (--take COMMIT | --merge)  settle a ref's conflicts everywhere\n"
    "  keygen FILE                    write a new cluster key for guts-node --key-file\n"
    "  keys (list | reload)           the running node's cluster keys; reread its key file\n"
    "  doctor [--json]                why nodes do not find each other: checks\n"
    "  help [COMMAND]                 this text, or a command's\n"
    "\n"
    "The data directory is --data DIR, else $GUTS_DATA, else ~/.local/share/guts.\n"
    "`guts COMMAND --help` describes a command; `man guts` (docs/guts.1) all of\n"
    "them. Exit status: 0 success, 1 operational error, 2 usage error.\n";

static const char usage_import[] =
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

static const char usage_export[] =
    "usage: guts export [--level N] OWNER/NAME OUTDIR\n"
    "\n"
    "Write repository OWNER/NAME as a new bare git repository OUTDIR (absent or\n"
    "empty): every object in one packfile, every ref, and HEAD.\n"
    "--level N: zlib level of the pack, 0 (default: fastest) to 9 (smallest).\n"
    "Objects the store keeps as deltas go as git deltas; `git -C OUTDIR gc`\n"
    "makes the pack as small as git's own.\n";

static const char usage_status[] =
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

static const char usage_peers[] =
    "usage: guts peers [--json]\n"
    "\n"
    "Print the peers the node running on the data dir hears from: node id,\n"
    "address:port, how (multicast, unicast or both) and when it last heard from\n"
    "each; \"no node running\" if none.\n"
    "--json prints {\"daemon\": STATE, \"peers\": [{\"id\", \"address\", \"port\",\n"
    "\"incarnation\", \"last_heard_ms_ago\", \"repos\", \"via\"}]}. Exit 1 if status.json\n"
    "exists but cannot be read as a status file.\n";

static const char usage_ls[] =
    "usage: guts ls [--json]\n"
    "\n"
    "List the repositories in the data dir: key, objects, refs (HEAD included).\n"
    "--json prints a JSON array of {\"key\", \"objects\", \"refs\"}.\n";

static const char usage_refs[] =
    "usage: guts refs OWNER/NAME [--all] [--json]\n"
    "\n"
    "List the refs of repository OWNER/NAME in name order, one per line: id\n"
    "(\"ref: TARGET\" for a symbolic HEAD), Lamport clock, writer node id, name.\n"
    "--all includes deleted refs (tombstones, shown as \"(deleted)\").\n"
    "--json prints a JSON array of {\"name\", \"id\", \"symref\", \"deleted\",\n"
    "\"clock\", \"writer\"} (id null for a symbolic or deleted ref).\n";

static const char usage_log[] =
    "usage: guts log OWNER/NAME [REF] [-n N]\n"
    "\n"
    "Print the commits of REF (default HEAD), newest first, one per line from\n"
    "the store: short id, author date, author, subject. Commits reachable from\n"
    "REF come newest first by committer date (git log's default order), each\n"
    "once; the walk stops after N commits (default 20, at most 1000000).\n"
    "REF is a full ref name, HEAD, a branch, tag or remote-tracking name, or a\n"
    "40-digit commit id; tags are peeled. Exit 1 if a parent is not stored.\n";

static const char usage_rm[] =
    "usage: guts rm OWNER/NAME [--yes] [--force]\n"
    "\n"
    "Remove repository OWNER/NAME (its LMDB environment) from the data dir.\n"
    "Asks on a terminal; --yes removes without asking (required when stdin is\n"
    "not a terminal). Refused while a guts-node runs on the data dir: the node\n"
    "holds the environment open, would go on serving its now invisible copy\n"
    "until it restarts, and peers that have the repository send it back.\n"
    "Stop the node first, or pass --force to remove anyway. Removing from one\n"
    "node never removes from others.\n";

static const char usage_fsck[] =
    "usage: guts fsck [--json] [--repair] OWNER/NAME\n"
    "\n"
    "First read every page of the repository's environment in a separate\n"
    "process: a damaged one (a truncated or overwritten data.mdb) is reported\n"
    "as \"environment damaged\" with its cause, exit 1. Then read and rehash\n"
    "every object, recompute the object count and the set fingerprint, check\n"
    "that every ref and HEAD point at stored objects and that the commits,\n"
    "trees and tags the refs reach only link to stored objects. Prints one\n"
    "line per fault (the first 100, then a count of the rest) and exits 1 if\n"
    "there is any. Objects no ref reaches that link to objects not stored\n"
    "yet are what an interrupted import or pull leaves: one line counts them,\n"
    "not a fault (git fsck calls such objects dangling). HEAD on an unborn\n"
    "branch is a notice, not a fault (as in git fsck).\n"
    "\n"
    "  --repair remove the objects that fail their hash (a damaged record, or\n"
    "           a delta whose base is damaged), with the object count and\n"
    "           fingerprint, and name each: a running node, or the next one\n"
    "           started, fetches them again from a peer. Nothing else is\n"
    "           changed. Exit 0 when every fault was such an object.\n"
    "  --json   one JSON object: repo, objects, refs, faults, not_yet_referenced,\n"
    "           seconds, shown (fault lines), not_shown, notices; or repo and\n"
    "           damaged (the cause) for a damaged environment\n";

static const char usage_doctor[] =
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

static const char usage_keygen[] =
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

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

/* An option the command does not know. --data is the usual slip: it is
 * the one global option, so it goes before the command, and saying so
 * beats "unknown". */
int unknown_option(const char *cmd, const char *opt)
{
    if (strcmp(opt, "--data") == 0 || strncmp(opt, "--data=", 7) == 0)
        return die(EXIT_USAGE, cmd,
                   "\"--data\" is a global option: it goes before the command "
                   "(guts --data DIR %s ...)",
                   cmd);
    return die(EXIT_USAGE, cmd, "unknown option \"%s\" (see guts %s --help)", opt, cmd);
}

/* Reject options a command does not know, and count its operands. */
static int check_operands(const char *cmd, int argc, char **argv, int want, const char *shape)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return unknown_option(cmd, argv[i]);
    if (argc - 1 != want)
        return die(EXIT_USAGE, cmd, "expected %s, got %d argument%s (see guts %s --help)", shape,
                   argc - 1, argc - 1 == 1 ? "" : "s", cmd);
    return 0;
}

int check_key(const char *cmd, const char *key)
{
    if (guts_repo_key_check(key) != GUTS_OK)
        return die(EXIT_USAGE, cmd,
                   "bad repository key \"%s\": want OWNER/NAME, each 1-%d of [A-Za-z0-9._-] "
                   "not starting with '.'",
                   key, GUTS_KEY_PART_MAX);
    return 0;
}

/* ---- Data dir ----------------------------------------------------------- */

/* The data dir's path, without touching it: --data, $GUTS_DATA, ~/.local/share/guts. */
int data_path(const char *cmd, const char *opt, const char **out)
{
    static char path[4096];
    const char *env = getenv("GUTS_DATA"), *home = getenv("HOME");
    if (opt)
        snprintf(path, sizeof path, "%s", opt);
    else if (env && env[0])
        snprintf(path, sizeof path, "%s", env);
    else if (home && home[0])
        snprintf(path, sizeof path, "%s/.local/share/guts", home);
    else
        return die(EXIT_USAGE, cmd, "no data directory: use --data DIR or set GUTS_DATA");
    *out = path;
    return 0;
}

/* What went wrong in the store, with its cause: the store's own message
 * (errno text included) when the code is one that carries one, else the
 * code's name. */
const char *store_why(int rc)
{
    const char *msg = guts_store_errmsg();
    if (rc == GUTS_EDAMAGED) {
        static char damaged[600];
        snprintf(damaged, sizeof damaged, "environment damaged: %s", msg);
        return damaged;
    }
    int has_cause = rc == GUTS_EIO || rc == GUTS_ESTORE || rc == GUTS_ECORRUPT ||
                    rc == GUTS_EFULL || rc == GUTS_EVERSION;
    return has_cause && msg[0] ? msg : guts_strerror(rc);
}

/* Open the data dir; only a command that writes (import) creates it, so a
 * mistyped --data is an error, not a new empty data dir. */
int open_data(const char *cmd, const char *opt, unsigned flags, guts_data **out)
{
    const char *path;
    int rc;
    if ((rc = data_path(cmd, opt, &path))) return rc;
    rc = guts_data_open(path, flags, out);
    if (rc == GUTS_ENOTFOUND)
        return die(EXIT_OP, cmd,
                   "data directory \"%s\" does not exist (guts import or guts-node creates it; "
                   "--data DIR or $GUTS_DATA names another)",
                   path);
    /* the first store call of the process: its message is this failure's */
    if (rc)
        return die(EXIT_OP, cmd, "cannot open data directory \"%s\": %s", path,
                   guts_store_errmsg()[0] ? guts_store_errmsg() : guts_strerror(rc));
    return 0;
}

/* The one line for a failed guts_repo_open (rc) of key; returns EXIT_OP. */
static int repo_open_error(const char *cmd, guts_data *d, const char *key, int rc)
{
    if (rc == GUTS_ENOTFOUND)
        return die(EXIT_OP, cmd, "no repository \"%s\" in \"%s\"", key, guts_data_path(d));
    if (rc == GUTS_EDAMAGED)
        return die(EXIT_OP, cmd, "%s: environment damaged: %s", key, guts_store_errmsg());
    return die(EXIT_OP, cmd, "cannot open repository \"%s\": %s", key, store_why(rc));
}

int open_repo(const char *cmd, guts_data *d, const char *key, unsigned flags,
                     guts_repo **out)
{
    int rc = guts_repo_open(d, key, flags, out);
    return rc ? repo_open_error(cmd, d, key, rc) : 0;
}

/* ---- import / export ---------------------------------------------------- */

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

static int cmd_import(const char *data_opt, int argc, char **argv)
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

static int cmd_export(const char *data_opt, int argc, char **argv)
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

/* ---- A running node: DATA/node/status.json ------------------------------ */

static const char *const node_state_names[] = {"not_running", "not_running", "stale", "running",
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
static int field_u(const guts_json *j, const guts_json_val *obj, const char *key, uint64_t *out)
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
static void node_peers_print(const node_run *nr, int json)
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
static void node_print(const node_run *nr, const char *data, int json)
{
    const guts_json *j = &nr->j;
    int live = nr->state == NODE_RUNNING || nr->state == NODE_STALE;
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
static int parse_json_only(const char *cmd, int argc, char **argv, int *json)
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

static int cmd_status(const char *data_opt, int argc, char **argv)
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

static int cmd_peers(const char *data_opt, int argc, char **argv)
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

/* ---- ls / refs ---------------------------------------------------------- */

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

static int cmd_ls(const char *data_opt, int argc, char **argv)
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

typedef struct refs_ctx {
    int json, n;
} refs_ctx;

/* A ref name from the store (checked by guts_refname_check on the way in,
 * so printable ASCII), still printed through put_safe: it came from peers. */
static int refs_one(const guts_ref *ref, void *arg)
{
    refs_ctx *c = arg;
    char id[GUTS_HEX_LEN + 1], w[2 * GUTS_NODE_ID_LEN + 1];
    int sym = ref->symref[0] != 0, dead = !sym && guts_id_is_zero(&ref->target);
    guts_id_to_hex(&ref->target, id);
    guts_node_id_to_hex(&ref->writer, w);
    if (c->json) {
        fputs(c->n ? ",\n  {\"name\": \"" : "\n  {\"name\": \"", stdout);
        put_safe(ref->name, strlen(ref->name), 1);
        fputs("\", \"id\": ", stdout);
        if (sym || dead)
            fputs("null", stdout);
        else
            printf("\"%s\"", id);
        fputs(", \"symref\": ", stdout);
        if (sym) {
            putchar('"');
            put_safe(ref->symref, strlen(ref->symref), 1);
            putchar('"');
        } else {
            fputs("null", stdout);
        }
        printf(", \"deleted\": %s, \"clock\": %" PRIu64 ", \"writer\": \"%s\"}",
               dead ? "true" : "false", ref->clock, w);
    } else {
        if (sym) {
            size_t n = strlen(ref->symref);
            fputs("ref: ", stdout);
            put_safe(ref->symref, n, 0);
            printf("%*s", n + 5 < GUTS_HEX_LEN ? (int)(GUTS_HEX_LEN - 5 - n) + 1 : 1, "");
        } else {
            printf("%s ", dead ? "(deleted)                               " : id);
        }
        printf("%8" PRIu64 " %s ", ref->clock, w);
        put_safe(ref->name, strlen(ref->name), 0);
        putchar('\n');
    }
    c->n++;
    return 0;
}

static int cmd_refs(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "refs";
    const char *key = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    refs_ctx c = {0};
    int all = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c.json = 1;
        else if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (key)
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts refs --help)",
                       argv[i]);
        else
            key = argv[i];
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME (see guts refs --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    if ((rc = open_repo(cmd, d, key, 0, &r))) goto out;
    if (c.json) fputs("[", stdout);
    int e = guts_repo_refs(r, all, refs_one, &c);
    if (c.json) printf("%s]\n", c.n ? "\n" : "");
    if (e) rc = die(EXIT_OP, cmd, "%s: reading refs: %s", key, store_why(e));
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

/* ---- log ---------------------------------------------------------------- */

/* Default and largest -n of `guts log`: a screenful, and a bound that keeps
 * a typo from walking a huge history. */
#define LOG_DEFAULT 20
#define LOG_MAX 1000000
/* Levels of symbolic refs and of tags pointing at tags followed to reach a
 * commit: git stops symref chains at 5 too. */
#define LOG_DEREF_MAX 5

/* The commit REF names: an id, a full ref name, HEAD, or a short name
 * (refs/heads/, refs/tags/, refs/remotes/ tried in that order). Tags are
 * peeled. On failure *why says what went wrong. */
int log_resolve(guts_repo *r, const char *ref, guts_id *out, const char **why)
{
    guts_ref rec;
    char name[GUTS_REFNAME_MAX + 32];
    int found = 0;
    *why = "no such ref or commit";
    if (guts_id_from_hex(ref, strlen(ref), out) == GUTS_OK) {
        found = 1;
    } else {
        static const char *const prefixes[] = {"", "refs/heads/", "refs/tags/", "refs/remotes/"};
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes && !found; i++) {
            if (i == 0 && strcmp(ref, "HEAD") != 0 && strncmp(ref, "refs/", 5) != 0) continue;
            snprintf(name, sizeof name, "%s%s", prefixes[i], ref);
            for (int depth = 0; depth <= LOG_DEREF_MAX; depth++) {
                if (guts_refname_check(name) != GUTS_OK) break;
                if (guts_repo_ref_get(r, name, &rec) != GUTS_OK) break;
                if (rec.symref[0]) {
                    snprintf(name, sizeof name, "%s", rec.symref);
                    *why = "HEAD points at a branch that does not exist (unborn)";
                    continue;
                }
                if (guts_id_is_zero(&rec.target)) {
                    *why = "the ref was deleted";
                    break;
                }
                *out = rec.target;
                found = 1;
                break;
            }
        }
    }
    if (!found) return GUTS_ENOTFOUND;
    for (int depth = 0; depth <= LOG_DEREF_MAX; depth++) {
        int type;
        void *data;
        size_t len;
        int e = guts_repo_get(r, out, &type, &data, &len);
        if (e) {
            *why = e == GUTS_ENOTFOUND ? "the object is not stored" : guts_strerror(e);
            return e;
        }
        if (type == GUTS_OBJ_COMMIT) {
            free(data);
            return GUTS_OK;
        }
        int ok = type == GUTS_OBJ_TAG && guts_tag_target(data, len, out) == GUTS_OK;
        free(data);
        if (!ok) {
            *why = "it names no commit";
            return GUTS_EINVAL;
        }
    }
    *why = "tags nested too deep";
    return GUTS_EINVAL;
}

/* One line for a commit: short id, author date, author, subject. Commit
 * text came from a git repository or a peer: printed through put_safe. */
static void log_line(const guts_id *id, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    const char *an = NULL, *subject = NULL;
    size_t anl = 0, subl = 0;
    char date[64] = "?", hex[GUTS_HEX_LEN + 1];
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!an && ll > 7 && memcmp(p, "author ", 7) == 0) {
            /* "author NAME <EMAIL> EPOCH TZ" */
            const char *lt = memchr(p + 7, '<', ll - 7);
            const char *gt = lt ? memchr(lt, '>', (size_t)(p + ll - lt)) : NULL;
            an = p + 7;
            anl = lt ? (size_t)(lt - an) : ll - 7;
            while (anl && an[anl - 1] == ' ')
                anl--;
            if (gt) {
                char tail[64];
                size_t tl = (size_t)(p + ll - gt - 1);
                long long secs;
                int tz;
                if (tl < sizeof tail) {
                    memcpy(tail, gt + 1, tl);
                    tail[tl] = 0;
                    if (sscanf(tail, " %lld %d", &secs, &tz) == 2 && tz > -10000 && tz < 10000 &&
                        secs > -62135596800LL && secs < 253402300799LL) {
                        int off = (tz / 100) * 3600 + (tz % 100) * 60;
                        time_t t = (time_t)(secs + off);
                        struct tm tm;
                        if (gmtime_r(&t, &tm))
                            snprintf(date + strftime(date, 32, "%Y-%m-%d %H:%M", &tm), 32,
                                     " %c%04d", tz < 0 ? '-' : '+', tz < 0 ? -tz : tz);
                    }
                }
            }
        }
        if (!nl) {
            p = end;
            break;
        }
        p = nl + 1;
    }
    /* The message starts after the blank line; the subject is its first
     * non-empty line. */
    if (p < end) p++;
    while (p < end && *p == '\n')
        p++;
    subject = p;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    subl = nl ? (size_t)(nl - p) : (size_t)(end - p);
    guts_id_to_hex(id, hex);
    printf("%.12s %s ", hex, date);
    if (an)
        put_safe(an, anl, 0);
    else
        putchar('?');
    fputs("  ", stdout);
    put_safe(subject, subl, 0);
    putchar('\n');
}

static int cmd_log(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "log";
    const char *key = NULL, *ref = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    long max = LOG_DEFAULT;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 || strncmp(argv[i], "-n", 2) == 0) {
            const char *v = argv[i][2] ? argv[i] + 2 : i + 1 < argc ? argv[++i] : "";
            char *e;
            errno = 0;
            max = strtol(v, &e, 10);
            if (!v[0] || *e || errno || max < 1 || max > LOG_MAX)
                return die(EXIT_USAGE, cmd, "-n wants a count 1-%d, got \"%s\"", LOG_MAX, v);
        } else if (argv[i][0] == '-') {
            return unknown_option(cmd, argv[i]);
        } else if (!key) {
            key = argv[i];
        } else if (!ref) {
            ref = argv[i];
        } else {
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts log --help)",
                       argv[i]);
        }
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME [REF] (see guts log --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if (!ref) ref = "HEAD";
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    if ((rc = open_repo(cmd, d, key, 0, &r))) goto out;
    guts_id id;
    const char *why;
    if (log_resolve(r, ref, &id, &why) != GUTS_OK) {
        rc = die(EXIT_OP, cmd, "%s: \"%s\": %s", key, ref, why);
        goto out;
    }
    guts_walk w = {.r = r};
    guts_walk_item it;
    int e = guts_repo_read_hold(r); /* one read transaction for the walk */
    if (!e) e = guts_walk_push(&w, &id);
    for (long i = 0; !e && i < max && guts_walk_pop(&w, &it); i++) {
        int type;
        void *data;
        size_t len;
        if ((e = guts_repo_get(r, &it.id, &type, &data, &len))) break;
        log_line(&it.id, data, len);
        e = guts_walk_push_parents(&w, data, len);
        free(data);
    }
    if (e)
        rc = die(EXIT_OP, cmd, "%s: reading commits: %s", key, store_why(e));
    else if (w.missing)
        rc = die(EXIT_OP, cmd, "%s: %" PRIu64 " parent commit%s not stored (see guts fsck %s)", key,
                 w.missing, w.missing == 1 ? " is" : "s are", key);
    guts_walk_free(&w);
    guts_repo_read_release(r);
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

/* ---- rm ----------------------------------------------------------------- */

static int cmd_rm(const char *data_opt, int argc, char **argv)
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

/* ---- fsck --------------------------------------------------------------- */

/* What is a fault is what git's fsck calls one: damage to what the refs
 * reach (a missing object, a record that does not decode or hash to its
 * id, a malformed commit or tree, a ref to an absent object), plus stored
 * data that fails its own checks anywhere. An object no ref reaches whose
 * links are not all stored yet is what an interrupted import or pull
 * leaves (objects are stored bases and parents first, but in batches, and
 * refs last): counted on one line, not a fault.
 *
 * Pass 1 reads every object once, in the store's read order, rehashing
 * it and noting which link to absent objects. Only if some do, pass 2 walks
 * from the refs (reading commits, trees and tags again; a blob links to
 * nothing) to tell the reachable ones, whose missing links are faults,
 * from the rest. */

#define FSCK_INCOMPLETE 0x1 /* links to an object not stored */
#define FSCK_REACHED 0x2    /* reached from a ref (pass 2) */

typedef struct fsck {
    const char *key;
    guts_repo *r;
    guts_id *sorted; /* every stored id, in id order, for membership tests */
    size_t n;
    uint8_t *mark; /* FSCK_* per index of sorted */
    uint64_t faults;
    int json;
    int pass;     /* 1: every object; 2: the walk from the refs */
    guts_id *bad; /* objects that fail their hash (--repair drops them) */
    size_t nbad, capbad;
    int cur_missing; /* pass 1: the object being parsed links to an absent one */
    size_t *queue;   /* pass 2: reached, not yet read */
    size_t nq;
    char *shown[FSCK_REPORT_MAX]; /* --json: fault lines, printed at the end */
    char **notes;                 /* --json: notices */
    size_t nnotes;
} fsck;

static void fault(fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Remember an object that fails its hash; on no memory it is only reported. */
static void fsck_bad(fsck *f, const guts_id *id)
{
    if (f->nbad == f->capbad) {
        size_t nc = f->capbad ? 2 * f->capbad : 16;
        guts_id *p = realloc(f->bad, nc * sizeof *p);
        if (!p) return;
        f->bad = p;
        f->capbad = nc;
    }
    f->bad[f->nbad++] = *id;
}
static void notice(fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fault(fsck *f, const char *fmt, ...)
{
    if (f->faults < FSCK_REPORT_MAX) {
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (f->json)
            f->shown[f->faults] = strdup(line);
        else
            printf("%s: %s\n", f->key, line);
    }
    f->faults++;
}

static void notice(fsck *f, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!f->json) {
        printf("%s: notice: %s\n", f->key, line);
        return;
    }
    char **nn = realloc(f->notes, (f->nnotes + 1) * sizeof *nn);
    if (!nn) return;
    f->notes = nn;
    if ((nn[f->nnotes] = strdup(line))) f->nnotes++;
}

/* The index of id in f->sorted, or SIZE_MAX when it is not stored. */
static size_t fsck_find(const fsck *f, const guts_id *id)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = guts_id_cmp(&f->sorted[mid], id);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

static void fsck_link(fsck *f, const char *from, const char *what, const guts_id *id)
{
    size_t i = fsck_find(f, id);
    if (i == SIZE_MAX) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(id, hex);
        if (f->pass == 1)
            f->cur_missing = 1;
        else
            fault(f, "%s links to missing %s %s", from, what, hex);
    } else if (f->pass == 2 && !(f->mark[i] & FSCK_REACHED)) {
        f->mark[i] |= FSCK_REACHED;
        f->queue[f->nq++] = i;
    }
}

/* Links named by the header lines of a commit or a tag (guts_obj_link_next:
 * tree and parent lines of a commit, the object line of a tag). */
static void fsck_headers(fsck *f, const char *from, int type, const uint8_t *data, size_t len)
{
    static const char *const words[] = {"", "tree", "parent", "object"};
    size_t pos = 0;
    int kind, rc;
    guts_id id;
    while ((rc = guts_obj_link_next(type, data, len, &pos, &kind, &id)) != 0) {
        if (rc == 1)
            fsck_link(f, from, words[kind], &id);
        else if (f->pass == 1)
            fault(f, "%s has a malformed %s line", from, words[kind]);
    }
}

/* Tree entries (guts_tree_entry_next); gitlinks name commits of other
 * repositories and are not followed. */
static void fsck_tree(fsck *f, const char *from, const uint8_t *data, size_t len)
{
    size_t pos = 0;
    guts_tree_entry e;
    int rc;
    while ((rc = guts_tree_entry_next(data, len, &pos, &e)) == 1)
        if (e.type != GUTS_OBJ_COMMIT) fsck_link(f, from, "entry", &e.id);
    if (rc && f->pass == 1) fault(f, "%s is a malformed tree (at byte %zu)", from, pos);
}

/* The links of one object's content. */
static void fsck_links(fsck *f, int type, const guts_id *id, const void *data, size_t len)
{
    char hex[GUTS_HEX_LEN + 1], from[GUTS_HEX_LEN + 16];
    guts_id_to_hex(id, hex);
    snprintf(from, sizeof from, "%s %s", guts_otype_name(type), hex);
    if (type == GUTS_OBJ_COMMIT || type == GUTS_OBJ_TAG) fsck_headers(f, from, type, data, len);
    if (type == GUTS_OBJ_TREE) fsck_tree(f, from, data, len);
}

static int collect_sorted(const guts_id *id, void *ctx)
{
    fsck *f = ctx;
    if (f->n % 4096 == 0) {
        guts_id *ns = realloc(f->sorted, (f->n + 4096) * sizeof *ns);
        if (!ns) return GUTS_ENOMEM;
        f->sorted = ns;
    }
    f->sorted[f->n++] = *id;
    return 0;
}

typedef struct fsck_target {
    char *name;
    guts_id id;
} fsck_target;

/* The refs as read in one transaction: counts and digest to compare with
 * the repository's counters, targets to look up once the ids are known. */
typedef struct fsck_refs {
    guts_fp digest;
    uint64_t live, tombs;
    guts_ref head;
    int have_head;
    fsck_target *t;
    size_t n, cap;
} fsck_refs;

static void fsck_refs_free(fsck_refs *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->t[i].name);
    free(c->t);
    memset(c, 0, sizeof *c);
}

static int fsck_ref(const guts_ref *ref, void *ctx)
{
    fsck_refs *c = ctx;
    guts_fp_add(&c->digest, guts_ref_digest_term(ref));
    if (guts_id_is_zero(&ref->target) && !ref->symref[0]) {
        c->tombs++;
        return 0;
    }
    c->live++;
    if (strcmp(ref->name, "HEAD") == 0) {
        c->head = *ref;
        c->have_head = 1;
    }
    if (guts_id_is_zero(&ref->target)) return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 256;
        fsck_target *nt = realloc(c->t, nc * sizeof *nt);
        if (!nt) return GUTS_ENOMEM;
        c->t = nt;
        c->cap = nc;
    }
    if (!(c->t[c->n].name = strdup(ref->name))) return GUTS_ENOMEM;
    c->t[c->n++].id = ref->target;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return guts_id_cmp(a, b);
}

/* Times fsck rereads refs, ids and counters when a concurrent writer (a
 * running node) commits in between; after that it checks what it read but
 * does not compare counters it cannot pin down. */
#define FSCK_SNAPSHOT_TRIES 3

/* Read refs, then ids, between two reads of the counters; 1 when no write
 * happened in between (the counters then describe exactly what was read). */
static int fsck_snapshot(guts_repo *r, fsck *f, fsck_refs *fr, guts_repo_info *info, int *e)
{
    guts_repo_info again;
    for (int attempt = 0; attempt < FSCK_SNAPSHOT_TRIES; attempt++) {
        fsck_refs_free(fr);
        f->n = 0;
        /* Refs before ids: a node stores a ref only after its objects, and
         * objects are never removed, so no ref can look dangling because it
         * was read after the ids. */
        if ((*e = guts_repo_info_get(r, info)) || (*e = guts_repo_refs(r, 1, fsck_ref, fr)) ||
            (*e = guts_repo_ids(r, NULL, NULL, collect_sorted, f)) ||
            (*e = guts_repo_info_get(r, &again)))
            return 0;
        if (again.txnid == info->txnid) return 1;
    }
    return 0;
}

static int fsck_discard(const void *data, size_t len, void *ctx)
{
    (void)data;
    (void)len;
    (void)ctx;
    return 0;
}

/* Pass 2: walk from the refs; the missing links of what is reached are
 * faults. Returns the objects left incomplete and unreached. */
static uint64_t fsck_reach(fsck *f, const fsck_refs *fr)
{
    f->pass = 2;
    f->nq = 0;
    for (size_t i = 0; i < fr->n; i++) {
        size_t k = fsck_find(f, &fr->t[i].id);
        if (k != SIZE_MAX && !(f->mark[k] & FSCK_REACHED)) {
            f->mark[k] |= FSCK_REACHED;
            f->queue[f->nq++] = k;
        }
    }
    while (f->nq) {
        size_t k = f->queue[--f->nq];
        int type;
        uint64_t size;
        void *data;
        size_t len;
        /* A blob links to nothing; one that cannot be read is a fault of pass 1. */
        if (guts_repo_stat(f->r, &f->sorted[k], &type, &size) != GUTS_OK || type == GUTS_OBJ_BLOB ||
            guts_repo_get(f->r, &f->sorted[k], &type, &data, &len) != GUTS_OK)
            continue;
        fsck_links(f, type, &f->sorted[k], data, len);
        free(data);
    }
    uint64_t left = 0;
    for (size_t i = 0; i < f->n; i++)
        if ((f->mark[i] & (FSCK_INCOMPLETE | FSCK_REACHED)) == FSCK_INCOMPLETE) left++;
    return left;
}

static void fsck_free(fsck *f)
{
    for (size_t i = 0; i < FSCK_REPORT_MAX; i++)
        free(f->shown[i]);
    for (size_t i = 0; i < f->nnotes; i++)
        free(f->notes[i]);
    free(f->notes);
    free(f->sorted);
    free(f->mark);
    free(f->queue);
    free(f->bad);
}

void put_json_str(const char *s)
{
    putchar('"');
    put_safe(s, strlen(s), 1);
    putchar('"');
}

static int cmd_fsck(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "fsck";
    guts_data *d = NULL;
    guts_repo *r = NULL;
    guts_repo_info info;
    guts_id *order = NULL;
    size_t norder = 0;
    fsck f = {0};
    fsck_refs fr = {0};
    guts_fp fp = {0, 0};
    uint64_t pending = 0;
    int rc, e = 0, repair = 0;
    size_t dropped = 0;
    const char *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            f.json = 1;
        else if (strcmp(argv[i], "--repair") == 0)
            repair = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (key)
            return die(EXIT_USAGE, cmd, "expected OWNER/NAME, got more (see guts %s --help)", cmd);
        else
            key = argv[i];
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME (see guts %s --help)", cmd);
    if ((rc = check_key(cmd, key))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    /* fsck reads every page anyway: the walk of GUTS_REPO_VERIFY costs it
     * little and turns a damaged env into a report instead of a signal. */
    e = guts_repo_open(d, key, GUTS_REPO_VERIFY, &r);
    if (e == GUTS_EDAMAGED && f.json) {
        fputs("{\"repo\": ", stdout);
        put_json_str(key);
        fputs(", \"damaged\": ", stdout);
        put_json_str(guts_store_errmsg());
        fputs("}\n", stdout);
    }
    if (e) {
        rc = repo_open_error(cmd, d, key, e);
        goto out;
    }
    f.key = key;
    f.r = r;
    double t0 = now_s();
    int pinned = fsck_snapshot(r, &f, &fr, &info, &e);
    if (!e) e = guts_gitio_read_order(r, &order, &norder);
    if (!e && !(f.mark = calloc(f.n ? f.n : 1, 1))) e = GUTS_ENOMEM;
    if (e) {
        rc = die(EXIT_OP, cmd, "%s: reading the store: %s", key, store_why(e));
        goto out;
    }
    if (!pinned)
        notice(&f, "the repository kept changing (a node is writing): counts, fingerprint and "
                   "refs digest not compared");
    /* Staging is not an object (docs/storage.md, "Large objects"): not a
     * fault, said so that the disk it takes is accounted for. */
    if (info.staged)
        notice(&f,
               "%" PRIu64 " large object%s partly received (%" PRIu64
               " bytes staged, not objects yet; the next pull resumes them)",
               info.staged, info.staged == 1 ? "" : "s", info.staged_bytes);
    /* guts_repo_ids promises id order; sort anyway so a bug there shows up
     * as a count or fingerprint fault rather than as false missing links. */
    if (f.n) qsort(f.sorted, f.n, sizeof *f.sorted, cmp_id);
    for (size_t i = 0; i < f.n; i++) {
        if (i && guts_id_cmp(&f.sorted[i - 1], &f.sorted[i]) == 0) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&f.sorted[i], hex);
            fault(&f, "object %s listed twice", hex);
        }
        guts_fp_add(&fp, guts_fp_of_id(&f.sorted[i]));
    }
    if (pinned && f.n != info.objects)
        fault(&f, "object count is %" PRIu64 " but %zu objects are stored", info.objects, f.n);
    if (pinned && !guts_fp_eq(fp, info.fp)) {
        char a[33], b[33];
        fp_hex(info.fp, a);
        fp_hex(fp, b);
        fault(&f, "fingerprint is %s but the stored ids sum to %s", a, b);
    }
    if (pinned && fr.live != info.refs)
        fault(&f, "ref count is %" PRIu64 " but %" PRIu64 " refs are stored", info.refs, fr.live);
    if (pinned && !guts_fp_eq(fr.digest, info.refs_digest))
        fault(&f, "refs digest does not match the refs");
    for (size_t i = 0; i < fr.n; i++)
        if (fsck_find(&f, &fr.t[i].id) == SIZE_MAX) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&fr.t[i].id, hex);
            fault(&f, "ref %s points at missing object %s", fr.t[i].name, hex);
        }
    if (fr.have_head && fr.head.symref[0]) {
        guts_ref t;
        e = guts_repo_ref_get(r, fr.head.symref, &t);
        /* HEAD on an unborn branch is legal (git fsck only notes it): say
         * so without counting a fault. A present target was checked above. */
        if (e == GUTS_ENOTFOUND || (e == GUTS_OK && guts_id_is_zero(&t.target)))
            notice(&f, "HEAD points at %s, which does not exist (unborn)", fr.head.symref);
        else if (e != GUTS_OK)
            fault(&f, "HEAD's target %s cannot be read: %s", fr.head.symref, guts_strerror(e));
    }
    f.pass = 1;
    uint64_t incomplete = 0;
    for (size_t i = 0; i < norder; i++) {
        int type;
        void *data;
        size_t len;
        guts_id h;
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&order[i], hex);
        uint64_t size = 0;
        e = guts_repo_stat(r, &order[i], &type, &size);
        if (e == GUTS_OK && type == GUTS_OBJ_BLOB && size >= GUTS_LARGE_MIN) {
            /* a large blob: rehashed piece by piece, never held whole */
            e = guts_repo_stream(r, &order[i], fsck_discard, NULL);
            if (e == GUTS_ECORRUPT) fsck_bad(&f, &order[i]);
            if (e == GUTS_ECORRUPT)
                fault(&f, "object %s: %s", hex, guts_store_errmsg());
            else if (e)
                fault(&f, "object %s cannot be read: %s", hex, guts_strerror(e));
            continue;
        }
        if (e == GUTS_OK) e = guts_repo_get(r, &order[i], &type, &data, &len);
        if (e == GUTS_ECORRUPT) fsck_bad(&f, &order[i]);
        if (e) {
            fault(&f, "object %s cannot be read: %s", hex, guts_strerror(e));
            continue;
        }
        if (guts_obj_hash(type, data, len, &h) != GUTS_OK || guts_id_cmp(&h, &order[i])) {
            char got[GUTS_HEX_LEN + 1] = "?";
            guts_id_to_hex(&h, got);
            fault(&f, "object %s hashes to %s", hex, got);
            fsck_bad(&f, &order[i]);
        } else {
            f.cur_missing = 0;
            fsck_links(&f, type, &order[i], data, len);
            size_t k = fsck_find(&f, &order[i]);
            if (f.cur_missing && k != SIZE_MAX) {
                f.mark[k] |= FSCK_INCOMPLETE;
                incomplete++;
            }
        }
        free(data);
    }
    if (incomplete) {
        if (!(f.queue = malloc(f.n * sizeof *f.queue))) {
            rc = die(EXIT_OP, cmd, "%s: %s", key, guts_strerror(GUTS_ENOMEM));
            goto out;
        }
        pending = fsck_reach(&f, &fr);
    }
    if (pending)
        notice(&f,
               "%" PRIu64 " object%s not yet referenced, from an interrupted import or pull: guts "
               "import again or let the node finish",
               pending, pending == 1 ? "" : "s");
    if (repair && f.nbad) {
        e = guts_repo_drop(r, f.bad, f.nbad, &dropped);
        if (e) {
            rc = die(EXIT_OP, cmd, "%s: dropping %zu damaged object%s: %s", key, f.nbad,
                     f.nbad == 1 ? "" : "s", store_why(e));
            goto out;
        }
    }
    double secs = now_s() - t0;
    if (f.json) {
        fputs("{\"repo\": ", stdout);
        put_json_str(key);
        printf(", \"objects\": %zu, \"refs\": %" PRIu64 ", \"faults\": %" PRIu64
               ", \"not_yet_referenced\": %" PRIu64 ", \"seconds\": %.2f,\n \"shown\": [",
               f.n, fr.live, f.faults, pending, secs);
        for (size_t i = 0; i < FSCK_REPORT_MAX && f.shown[i]; i++) {
            fputs(i ? ",\n  " : "\n  ", stdout);
            put_json_str(f.shown[i]);
        }
        printf("],\n \"not_shown\": %" PRIu64 ",\n \"notices\": [",
               f.faults > FSCK_REPORT_MAX ? f.faults - FSCK_REPORT_MAX : 0);
        for (size_t i = 0; i < f.nnotes; i++) {
            fputs(i ? ",\n  " : "\n  ", stdout);
            put_json_str(f.notes[i]);
        }
        fputs("],\n \"dropped\": [", stdout);
        for (size_t i = 0; i < f.nbad && repair; i++) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&f.bad[i], hex);
            printf("%s\"%s\"", i ? ", " : "", hex);
        }
        fputs("]}\n", stdout);
    } else {
        for (size_t i = 0; i < f.nbad && repair; i++) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&f.bad[i], hex);
            printf("%s: dropped damaged object %s\n", key, hex);
        }
        if (repair && f.nbad)
            printf("fsck %s: dropped %zu damaged object%s; a running node (or the next start) "
                   "fetches %s again from a peer\n",
                   key, dropped, dropped == 1 ? "" : "s", dropped == 1 ? "it" : "them");
        if (f.faults > FSCK_REPORT_MAX)
            printf("%s: ... and %" PRIu64 " more fault%s not shown\n", key,
                   f.faults - FSCK_REPORT_MAX, f.faults - FSCK_REPORT_MAX == 1 ? "" : "s");
        printf("fsck %s: %zu objects, %" PRIu64 " refs, %" PRIu64 " fault%s, %.2f s\n", key, f.n,
               fr.live, f.faults, f.faults == 1 ? "" : "s", secs);
    }
    if (f.faults && !(repair && f.faults == f.nbad))
        rc = die(EXIT_OP, cmd, "%s: %" PRIu64 " fault%s found", key, f.faults,
                 f.faults == 1 ? "" : "s");
out:
    free(order);
    fsck_free(&f);
    fsck_refs_free(&fr);
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

/* ---- keygen ------------------------------------------------------------- */

/* The key is read back from the file just written, so the id printed is
 * the one guts-node will announce with (and a short write would fail). */
static int cmd_keygen(const char *data_opt, int argc, char **argv)
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

/* ---- main --------------------------------------------------------------- */

/* Every command: `guts --help` lists them, `guts COMMAND --help` and
 * `guts help COMMAND` print the usage. */
/* ---- doctor -------------------------------------------------------------- */

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

static int cmd_doctor(const char *data_opt, int argc, char **argv)
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

typedef struct command {
    const char *name;
    int (*run)(const char *data_opt, int argc, char **argv);
    const char *usage;
    int store; /* reads repository environments: runs in a child (run_command) */
} command;

static const command commands[] = {
    {"import", cmd_import, usage_import, 1},
    {"export", cmd_export, usage_export, 1},
    {"ls", cmd_ls, usage_ls, 1},
    {"refs", cmd_refs, usage_refs, 1},
    {"log", cmd_log, usage_log, 1},
    {"rm", cmd_rm, usage_rm, 1},
    {"status", cmd_status, usage_status, 1},
    {"peers", cmd_peers, usage_peers, 0},
    {"fsck", cmd_fsck, usage_fsck, 1},
    {"keygen", cmd_keygen, usage_keygen, 0},
    {"doctor", cmd_doctor, usage_doctor, 0},
    {"conflicts", cmd_conflicts, usage_conflicts, 1},
    {"resolve", cmd_resolve, usage_resolve, 1},
    {"keys", cmd_keys, usage_keys, 0},
};

/* Bytes kept of LMDB's assertion text: one line of file, line, expression
 * and function (LMDB formats it into 400). */
#define CRASH_NOTE_BYTES 512

/* Signals that say a process read what it should not have: a page past
 * the end of a truncated file (SIGBUS), a wild offset from a damaged page
 * (SIGSEGV), LMDB's own assertions (SIGABRT). */
static int fault_signal(int sig)
{
    return sig == SIGBUS || sig == SIGSEGV || sig == SIGABRT || sig == SIGILL || sig == SIGFPE;
}

/* Run a command in a child process and wait for it (*child is 1 in the
 * child, which returns the command's status). LMDB trusts the file
 * it maps, and the check at open reads only the meta pages (a full walk,
 * GUTS_REPO_VERIFY, is for the commands that read everything anyway): a
 * damaged page met later kills the reader by a signal, which no handler
 * can undo inside LMDB. The child takes that death; this process turns it
 * into one line and exit 1. The fork costs well under a millisecond
 * (docs/operations.md, "A damaged disk"). */
static int run_command(const command *c, const char *data_opt, int argc, char **argv, int *child)
{
    *child = 0;
    fflush(stdout);
    fflush(stderr);
    /* LMDB's assertion text, written by the child just before it aborts. */
    char *note =
        mmap(NULL, CRASH_NOTE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (note == MAP_FAILED) note = NULL;
    pid_t pid = fork();
    if (pid < 0) return die(EXIT_OP, c->name, "fork: %s", strerror(errno));
    if (pid == 0) {
        *child = 1;
        guts_store_crash_note(note, CRASH_NOTE_BYTES);
        return c->run(data_opt, argc, argv);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return die(EXIT_OP, c->name, "waitpid: %s", strerror(errno));
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    if (note && !fault_signal(sig)) munmap(note, CRASH_NOTE_BYTES);
    if (!sig) return WEXITSTATUS(st);
    if (!fault_signal(sig)) {
        /* Stopped from outside (^C, kill): end the same way. */
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    char why[CRASH_NOTE_BYTES + 64];
    snprintf(why, sizeof why, "%s%s%s", strsignal(sig), note && note[0] ? ": " : "",
             note ? note : "");
    if (note) munmap(note, CRASH_NOTE_BYTES);
    if (argc > 1 && guts_repo_key_check(argv[1]) == GUTS_OK)
        return die(EXIT_OP, c->name,
                   "%s: environment damaged: reading it killed the process (%s); guts fsck %s "
                   "names the damage",
                   argv[1], why, argv[1]);
    return die(EXIT_OP, c->name,
               "environment damaged: reading the data directory killed the process (%s); guts "
               "fsck OWNER/NAME names the damage",
               why);
}

int main(int argc, char **argv)
{
    const char *data_opt = NULL;
    int i = 1;
    /* A git child that exits early must not kill us through SIGPIPE: the
     * failed write returns EPIPE and becomes an error line instead. */
    signal(SIGPIPE, SIG_IGN);
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_main, stdout);
            return 0;
        } else if (strcmp(argv[i], "--data") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return die(EXIT_USAGE, NULL, "--data needs a directory");
            data_opt = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--data=", 7) == 0 && argv[i][7]) {
            data_opt = argv[i] + 7;
            i++;
        } else {
            return die(EXIT_USAGE, NULL, "unknown option \"%s\" (see guts --help)", argv[i]);
        }
    }
    if (i >= argc) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "help") == 0) {
        if (sub_argc == 1) return fputs(usage_main, stdout), 0;
        cmd = sub_argv[1];
        sub_argc = 1;
    }
    const command *c = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strcmp(cmd, commands[k].name) == 0) c = &commands[k];
    if (!c) return die(EXIT_USAGE, NULL, "unknown command \"%s\" (see guts --help)", cmd);
    int rc;
    if (sub_argc == 1 && strcmp(argv[i], "help") == 0)
        rc = (fputs(c->usage, stdout), 0);
    else if (wants_help(sub_argc, sub_argv))
        rc = (fputs(c->usage, stdout), 0);
    else if (!c->store)
        rc = c->run(data_opt, sub_argc, sub_argv);
    else {
        int child;
        rc = run_command(c, data_opt, sub_argc, sub_argv, &child);
        /* The child flushes its output and runs the exit handlers (a
         * sanitizer build's leak check among them) by returning; the parent
         * has nothing to flush or free, and skips them. */
        if (!child) _exit(rc);
    }
    /* A reader that stopped reading (`guts refs K | head -1`) got what it
     * wanted: a closed pipe is not a failure, and says nothing. */
    if (fflush(stdout) != 0 && rc == 0 && errno != EPIPE)
        rc = die(EXIT_OP, cmd, "writing output failed: %s", strerror(errno));
    return rc;
}
