/* guts_fsck.c - `guts fsck`: rehash every stored object, check counts, refs
 * and the links between objects, and name every fault found.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guts_cli.h"
#include "gitio.h"
#include "guts/gitobj.h"

/* Faults printed by fsck before it only counts them: a shallow or broken
 * repository may miss thousands of objects, one line each helps nobody. */
#define FSCK_REPORT_MAX 100

const char usage_fsck[] =
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

typedef struct fsck_key {
    const fsck *f;
    const guts_id *id;
} fsck_key;

static int fsck_cmp(const void *ctx, size_t i)
{
    const fsck_key *k = ctx;
    return guts_id_cmp(&k->f->sorted[i], k->id);
}

/* The index of id in f->sorted, or SIZE_MAX when it is not stored. */
static size_t fsck_find(const fsck *f, const guts_id *id)
{
    fsck_key k = {f, id};
    int found;
    size_t i = guts_lower_bound(f->n, fsck_cmp, &k, &found);
    return found ? i : SIZE_MAX;
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

int cmd_fsck(const char *data_opt, int argc, char **argv)
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
