/* guts.c - the `guts` command: import, export, status, fsck.
 *
 * A thin front end over the store (include/guts/store.h) and the git bridge
 * (guts_gitio.c). It is the only place that reads the environment ($GUTS_DATA,
 * $HOME) and the only place that turns an error code into an exit status:
 * 0 success, 1 an operational error, 2 a usage error. Every error is one line
 * on stderr that names the input at fault, so scripts can show it as is.
 * Arguments are checked (keys above all) before the data dir is touched.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/guts_gitio.h"
#include "guts/store.h"

#define EXIT_OP 1    /* operational error */
#define EXIT_USAGE 2 /* usage error */

/* Faults printed by fsck before it only counts them: a shallow or broken
 * repository may miss thousands of objects, one line each helps nobody. */
#define FSCK_REPORT_MAX 100

static const char *prog = "guts";

static int die(int code, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Print "guts: CMD: message" as one line and return code. */
static int die(int code, const char *cmd, const char *fmt, ...)
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
    "  import OWNER/NAME GITDIR   store every object, ref and HEAD of a git repository\n"
    "  export OWNER/NAME OUTDIR   write a stored repository as a new bare git repository\n"
    "  status [--json]            this node's id and every stored repository\n"
    "  fsck OWNER/NAME            rehash every object, check counts, refs and links\n"
    "\n"
    "The data directory is --data DIR, else $GUTS_DATA, else ~/.local/share/guts.\n"
    "`guts COMMAND --help` describes a command. Exit status: 0 success,\n"
    "1 operational error, 2 usage error.\n";

static const char usage_import[] =
    "usage: guts import OWNER/NAME GITDIR\n"
    "\n"
    "Store every object, every ref and HEAD of the git repository GITDIR (bare or\n"
    "not) as repository OWNER/NAME. Importing again stores only the new objects\n"
    "and the changed refs; refs deleted in git become deletions in guts.\n"
    "OWNER and NAME: 1-100 characters of [A-Za-z0-9._-], not starting with '.'.\n";

static const char usage_export[] =
    "usage: guts export [--level N] OWNER/NAME OUTDIR\n"
    "\n"
    "Write repository OWNER/NAME as a new bare git repository OUTDIR (absent or\n"
    "empty): every object in one packfile, every ref, and HEAD.\n"
    "--level N: zlib level of the pack, 0 (default: fastest) to 9 (smallest).\n"
    "The pack has no deltas; `git -C OUTDIR gc` makes it as small as git's own.\n";

static const char usage_status[] =
    "usage: guts status [--json]\n"
    "\n"
    "Print this node's id and, per repository: key, objects, refs (HEAD\n"
    "included), set fingerprint and refs digest (32 hex digits each).\n"
    "--json prints one JSON object instead.\n";

static const char usage_fsck[] =
    "usage: guts fsck OWNER/NAME\n"
    "\n"
    "Read and rehash every object, recompute the object count and the set\n"
    "fingerprint, check that every ref and HEAD point at stored objects and\n"
    "that commits, trees and tags only link to stored objects. Prints one line\n"
    "per fault and exits 1 if there is any. HEAD on an unborn branch is a\n"
    "notice, not a fault (as in git fsck).\n";

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

/* Reject options a command does not know, and count its operands. */
static int check_operands(const char *cmd, int argc, char **argv, int want, const char *shape)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1])
            return die(EXIT_USAGE, cmd, "unknown option \"%s\" (see guts %s --help)", argv[i], cmd);
    if (argc - 1 != want)
        return die(EXIT_USAGE, cmd, "expected %s, got %d argument%s (see guts %s --help)", shape,
                   argc - 1, argc - 1 == 1 ? "" : "s", cmd);
    return 0;
}

static int check_key(const char *cmd, const char *key)
{
    if (guts_repo_key_check(key) != GUTS_OK)
        return die(EXIT_USAGE, cmd,
                   "bad repository key \"%s\": want OWNER/NAME, each 1-%d of [A-Za-z0-9._-] "
                   "not starting with '.'",
                   key, GUTS_KEY_PART_MAX);
    return 0;
}

/* ---- Data dir ----------------------------------------------------------- */

/* mkdir -p: the default data dir's parents may not exist yet. */
static int mkdirs(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int open_data(const char *cmd, const char *opt, guts_data **out)
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
    if (mkdirs(path) != 0)
        return die(EXIT_OP, cmd, "cannot create data directory \"%s\": %s", path, strerror(errno));
    int rc = guts_data_open(path, out);
    if (rc)
        return die(EXIT_OP, cmd, "cannot open data directory \"%s\": %s", path, guts_strerror(rc));
    return 0;
}

static int open_repo(const char *cmd, guts_data *d, const char *key, unsigned flags,
                     guts_repo **out)
{
    int rc = guts_repo_open(d, key, flags, out);
    if (rc == GUTS_ENOTFOUND)
        return die(EXIT_OP, cmd, "no repository \"%s\" in \"%s\"", key, guts_data_path(d));
    if (rc) return die(EXIT_OP, cmd, "cannot open repository \"%s\": %s", key, guts_strerror(rc));
    return 0;
}

/* ---- import / export ---------------------------------------------------- */

static int cmd_import(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "import";
    guts_data *d = NULL;
    guts_repo *r = NULL;
    guts_gitio_stats st;
    char err[GUTS_GITIO_ERR_MAX];
    int rc;
    if (wants_help(argc, argv)) return fputs(usage_import, stdout), 0;
    if ((rc = check_operands(cmd, argc, argv, 2, "OWNER/NAME GITDIR"))) return rc;
    if ((rc = check_key(cmd, argv[1]))) return rc;
    if (guts_gitio_check_repo(argv[2], err) != GUTS_OK) return die(EXIT_OP, cmd, "%s", err);
    if ((rc = open_data(cmd, data_opt, &d))) return rc;
    /* Remember whether this import creates the repository: a failed first
     * import that stored nothing then leaves nothing behind. */
    int created = guts_repo_open(d, argv[1], 0, &r) == GUTS_ENOTFOUND;
    if (r) guts_repo_close(r);
    r = NULL;
    if ((rc = open_repo(cmd, d, argv[1], GUTS_REPO_CREATE, &r))) goto out;
    double t0 = now_s();
    int e = guts_gitio_import(r, guts_data_node_id(d), argv[2], isatty(2), &st, err);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s from \"%s\": %s", argv[1], argv[2], err);
        if (created && st.objects_added == 0) {
            guts_repo_close(r);
            r = NULL;
            guts_repo_remove(d, argv[1]);
        }
        goto out;
    }
    printf("imported %s: %" PRIu64 " objects added (%" PRIu64 " in git, %.1f MB read), %" PRIu64
           " refs changed (%" PRIu64 " deleted), %.2f s\n",
           argv[1], st.objects_added, st.objects_total, (double)st.bytes / 1e6, st.refs_changed,
           st.refs_deleted, now_s() - t0);
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
    if ((rc = open_data(cmd, data_opt, &d))) return rc;
    if ((rc = open_repo(cmd, d, argv[1], 0, &r))) goto out;
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

/* ---- status ------------------------------------------------------------- */

typedef struct status_ctx {
    guts_data *d;
    int json;
    int n;
    int rc;
} status_ctx;

static int status_repo(const char *key, void *arg)
{
    status_ctx *c = arg;
    guts_repo *r;
    guts_repo_info info;
    char fp[33], rd[33];
    int rc = guts_repo_open(c->d, key, 0, &r);
    if (rc == GUTS_OK) {
        rc = guts_repo_info_get(r, &info);
        guts_repo_close(r);
    }
    if (rc) {
        /* Keep listing the others; report this one. */
        c->rc = die(EXIT_OP, "status", "repository \"%s\": %s", key, guts_strerror(rc));
        return 0;
    }
    fp_hex(info.fp, fp);
    fp_hex(info.refs_digest, rd);
    if (c->json)
        printf("%s\n    {\"key\": \"%s\", \"objects\": %" PRIu64 ", \"refs\": %" PRIu64
               ", \"tombstones\": %" PRIu64 ", \"fingerprint\": \"%s\", \"refs_digest\": \"%s\""
               ", \"clock\": %" PRIu64 ", \"stored_bytes\": %" PRIu64 "}",
               c->n ? "," : "", key, info.objects, info.refs, info.tombstones, fp, rd, info.clock,
               info.stored_bytes);
    else
        printf("%-30s %10" PRIu64 " %8" PRIu64 "  %s  %s\n", key, info.objects, info.refs, fp, rd);
    c->n++;
    return 0;
}

static int cmd_status(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "status";
    guts_data *d = NULL;
    status_ctx c = {0};
    char node[2 * GUTS_NODE_ID_LEN + 1];
    int rc;
    if (wants_help(argc, argv)) return fputs(usage_status, stdout), 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c.json = 1;
        else if (argv[i][0] == '-')
            return die(EXIT_USAGE, cmd, "unknown option \"%s\" (see guts status --help)", argv[i]);
        else
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts status --help)",
                       argv[i]);
    }
    if ((rc = open_data(cmd, data_opt, &d))) return rc;
    c.d = d;
    guts_node_id_to_hex(guts_data_node_id(d), node);
    if (c.json)
        printf("{\"node\": \"%s\", \"repos\": [", node);
    else
        printf("node %s\n%-30s %10s %8s  %-32s  %s\n", node, "REPOSITORY", "OBJECTS", "REFS",
               "FINGERPRINT", "REFS DIGEST");
    rc = guts_data_repos(d, status_repo, &c);
    if (c.json) printf("%s]}\n", c.n ? "\n" : "");
    if (rc) c.rc = die(EXIT_OP, cmd, "listing repositories: %s", guts_strerror(rc));
    guts_data_close(d);
    return c.rc;
}

/* ---- fsck --------------------------------------------------------------- */

typedef struct fsck {
    const char *key;
    guts_repo *r;
    guts_id *sorted; /* every stored id, in id order, for membership tests */
    size_t n;
    uint64_t faults;
} fsck;

static void fault(fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fault(fsck *f, const char *fmt, ...)
{
    if (f->faults++ < FSCK_REPORT_MAX) {
        va_list ap;
        va_start(ap, fmt);
        printf("%s: ", f->key);
        vprintf(fmt, ap);
        putchar('\n');
        va_end(ap);
    }
}

static int fsck_present(const fsck *f, const guts_id *id)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = guts_id_cmp(&f->sorted[mid], id);
        if (c == 0) return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void fsck_link(fsck *f, const char *from, const char *what, const guts_id *id)
{
    char hex[GUTS_HEX_LEN + 1];
    if (fsck_present(f, id)) return;
    guts_id_to_hex(id, hex);
    fault(f, "%s links to missing %s %s", from, what, hex);
}

/* Links named by "<word> <hex>\n" header lines of a commit or a tag (up to
 * the blank line that starts the message). */
static void fsck_headers(fsck *f, const char *from, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *word = NULL;
        if (ll == 5 + GUTS_HEX_LEN && memcmp(p, "tree ", 5) == 0) word = "tree";
        if (ll == 7 + GUTS_HEX_LEN && memcmp(p, "parent ", 7) == 0) word = "parent";
        if (ll == 7 + GUTS_HEX_LEN && memcmp(p, "object ", 7) == 0) word = "object";
        if (word) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id id;
            memcpy(hex, p + ll - GUTS_HEX_LEN, GUTS_HEX_LEN);
            hex[GUTS_HEX_LEN] = 0;
            if (guts_id_from_hex(hex, &id) != GUTS_OK)
                fault(f, "%s has a malformed %s line", from, word);
            else
                fsck_link(f, from, word, &id);
        }
        if (!nl) break;
        p = nl + 1;
    }
}

/* Tree entries: "<octal mode> <name>\0<20-byte id>"; gitlinks (mode 160000)
 * name commits of other repositories and are not followed. */
static void fsck_tree(fsck *f, const char *from, const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const uint8_t *sp = memchr(data + i, ' ', len - i);
        const uint8_t *nul = sp ? memchr(sp, 0, len - (size_t)(sp - data)) : NULL;
        if (!sp || !nul || (size_t)(nul - data) + 1 + GUTS_ID_LEN > len) {
            fault(f, "%s is a malformed tree (at byte %zu)", from, i);
            return;
        }
        guts_id id;
        memcpy(id.b, nul + 1, GUTS_ID_LEN);
        int gitlink = (size_t)(sp - (data + i)) == 6 && memcmp(data + i, "160000", 6) == 0;
        if (!gitlink) fsck_link(f, from, "entry", &id);
        i = (size_t)(nul - data) + 1 + GUTS_ID_LEN;
    }
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
    int rc, e = 0;
    if (wants_help(argc, argv)) return fputs(usage_fsck, stdout), 0;
    if ((rc = check_operands(cmd, argc, argv, 1, "OWNER/NAME"))) return rc;
    if ((rc = check_key(cmd, argv[1]))) return rc;
    if ((rc = open_data(cmd, data_opt, &d))) return rc;
    if ((rc = open_repo(cmd, d, argv[1], 0, &r))) goto out;
    f.key = argv[1];
    f.r = r;
    double t0 = now_s();
    int pinned = fsck_snapshot(r, &f, &fr, &info, &e);
    if (!e) e = guts_gitio_read_order(r, &order, &norder);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s: reading the store: %s", argv[1], guts_strerror(e));
        goto out;
    }
    if (!pinned)
        printf("%s: notice: the repository kept changing (a node is writing): counts, "
               "fingerprint and refs digest not compared\n",
               argv[1]);
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
        if (!fsck_present(&f, &fr.t[i].id)) {
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
            printf("%s: notice: HEAD points at %s, which does not exist (unborn)\n", argv[1],
                   fr.head.symref);
        else if (e != GUTS_OK)
            fault(&f, "HEAD's target %s cannot be read: %s", fr.head.symref, guts_strerror(e));
    }
    for (size_t i = 0; i < norder; i++) {
        int type;
        void *data;
        size_t len;
        guts_id h;
        char hex[GUTS_HEX_LEN + 1], from[GUTS_HEX_LEN + 16];
        guts_id_to_hex(&order[i], hex);
        e = guts_repo_get(r, &order[i], &type, &data, &len);
        if (e) {
            fault(&f, "object %s cannot be read: %s", hex, guts_strerror(e));
            continue;
        }
        if (guts_obj_hash(type, data, len, &h) != GUTS_OK || guts_id_cmp(&h, &order[i])) {
            char got[GUTS_HEX_LEN + 1] = "?";
            guts_id_to_hex(&h, got);
            fault(&f, "object %s hashes to %s", hex, got);
        } else {
            snprintf(from, sizeof from, "%s %s", guts_otype_name(type), hex);
            if (type == GUTS_OBJ_COMMIT || type == GUTS_OBJ_TAG) fsck_headers(&f, from, data, len);
            if (type == GUTS_OBJ_TREE) fsck_tree(&f, from, data, len);
        }
        free(data);
    }
    printf("fsck %s: %zu objects, %" PRIu64 " refs, %" PRIu64 " fault%s, %.2f s\n", argv[1], f.n,
           fr.live, f.faults, f.faults == 1 ? "" : "s", now_s() - t0);
    if (f.faults)
        rc = die(EXIT_OP, cmd, "%s: %" PRIu64 " fault%s found", argv[1], f.faults,
                 f.faults == 1 ? "" : "s");
out:
    free(order);
    free(f.sorted);
    fsck_refs_free(&fr);
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

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
    int rc;
    if (strcmp(cmd, "import") == 0)
        rc = cmd_import(data_opt, sub_argc, sub_argv);
    else if (strcmp(cmd, "export") == 0)
        rc = cmd_export(data_opt, sub_argc, sub_argv);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(data_opt, sub_argc, sub_argv);
    else if (strcmp(cmd, "fsck") == 0)
        rc = cmd_fsck(data_opt, sub_argc, sub_argv);
    else if (strcmp(cmd, "help") == 0)
        rc = (fputs(usage_main, stdout), 0);
    else
        rc = die(EXIT_USAGE, NULL, "unknown command \"%s\" (see guts --help)", cmd);
    if (fflush(stdout) != 0 && rc == 0) rc = die(EXIT_OP, cmd, "writing output failed");
    return rc;
}
