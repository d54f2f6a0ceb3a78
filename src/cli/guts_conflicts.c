/* guts_conflicts.c - `guts conflicts` and `guts resolve`: divergent updates
 * of one ref, shown and settled.
 *
 * When two nodes move a ref to commits neither of which contains the other,
 * the ref merge (include/guts/refmerge.h) keeps the winner under the ref's name
 * and the loser as a conflict record,
 * refs/guts/conflicts/<writer>/<commit>/<ref without refs/>. The record is an
 * ordinary ref, so nothing is lost and it replicates; these commands make it
 * visible and let one person settle it for every node.
 *
 * `guts resolve` writes, in one transaction and at the repository's next
 * Lamport clock, the settled ref (the chosen commit, or a merge commit of
 * all sides made by git) and a tombstone for every conflict record of the
 * ref. Newer records win everywhere, so every node ends with the settled
 * ref and no conflict. One more tombstone is written when --take moves the
 * ref off a winner the chosen commit does not contain: under the name that
 * winner's own conflict record gets on the nodes that merge the new record
 * over it. Whichever of the two arrives first there, the tombstone (higher
 * clock) wins, so that record is born deleted instead of re-opening the
 * conflict being settled.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guts_cli.h"
#include "gitio.h"
#include "walk.h"
#include "guts/refmerge.h"
#include "guts/store.h"

/* Commits walked from one side to count what the other lacks; beyond it
 * the count is shown as "N+". A linux-sized history is a million commits:
 * a listing must not walk it for every conflict. */
#define CONFLICT_WALK_MAX 200000
/* Conflict records of one repository that are read; more is refused with
 * a count (a repository with that many divergences needs a person). */
#define CONFLICT_MAX 100000

const char usage_conflicts[] =
    "usage: guts conflicts [--json] [OWNER/NAME]\n"
    "\n"
    "List divergent updates: refs that two nodes moved to commits neither of\n"
    "which contains the other. The winner stays under the ref's name on every\n"
    "node; the other commit is kept as a conflict record under\n"
    "refs/guts/conflicts/, never lost. For each: repository, ref, the winning\n"
    "commit and its writer node, the kept commit, its writer and its\n"
    "committer date, and how many commits each side has that the other lacks\n"
    "(\"merged\" when the winner already contains the kept commit).\n"
    "Without OWNER/NAME, every repository of the data dir.\n"
    "--json prints [{\"repo\", \"ref\", \"record\", \"winner\": {\"commit\",\n"
    "\"writer\", \"clock\"}, \"kept\": {\"commit\", \"writer\", \"clock\",\n"
    "\"committed\"}, \"winner_only\", \"kept_only\", \"merged\"}] (winner commit\n"
    "null when the ref was deleted; counts null when not known).\n"
    "Settle one with guts resolve.\n";

const char usage_resolve[] =
    "usage: guts resolve OWNER/NAME REF (--take COMMIT | --merge) [-m MESSAGE]\n"
    "\n"
    "Settle the conflicts of REF (a full ref name, or a branch or tag name)\n"
    "for every node: REF is written anew and its conflict records are\n"
    "deleted, both at the repository's next clock, so the change wins on\n"
    "every node it reaches.\n"
    "--take COMMIT  REF points at COMMIT: one of the sides (an id or a unique\n"
    "               prefix of at least 4 digits of one, as guts conflicts\n"
    "               shows) or any stored commit's full id.\n"
    "--merge        REF points at a new merge commit of the winner and every\n"
    "               kept commit it lacks, made by git (merge-tree, then\n"
    "               commit-tree with your git identity). Refused when the\n"
    "               merge has conflicts: the paths are named; merge in a clone\n"
    "               and settle with --take.\n"
    "-m MESSAGE     the merge commit's message.\n";

/* ---- Collecting conflict records ------------------------------------------ */

typedef struct conflict {
    guts_ref rec;                   /* the record: the kept commit, clock, writer */
    char ref[GUTS_REFNAME_MAX + 1]; /* the ref it lost on; "" when its name was cut */
} conflict;

typedef struct conflicts {
    conflict *v;
    size_t n, cap;
    int rc; /* GUTS_ENOMEM or GUTS_ETOOBIG from the callback */
} conflicts;

/* 1 when conflict record c was made for ref name (cut names included). */
static int conflict_of(const conflict *c, const char *name)
{
    char want[GUTS_REFNAME_MAX + 1];
    if (c->ref[0]) return strcmp(c->ref, name) == 0;
    return guts_ref_conflict_name(name, &c->rec.writer, &c->rec.target, want) == GUTS_OK &&
           strcmp(want, c->rec.name) == 0;
}

static int collect_one(const guts_ref *ref, void *arg)
{
    conflicts *cs = arg;
    if (!guts_ref_is_conflict_name(ref->name) || ref->symref[0] || guts_id_is_zero(&ref->target))
        return 0;
    if (cs->n == CONFLICT_MAX) return cs->rc = GUTS_ETOOBIG;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 16;
        conflict *v = realloc(cs->v, cap * sizeof *v);
        if (!v) return cs->rc = GUTS_ENOMEM;
        cs->v = v;
        cs->cap = cap;
    }
    conflict *c = &cs->v[cs->n++];
    c->rec = *ref;
    if (guts_ref_conflict_ref(ref->name, c->ref) != GUTS_OK) c->ref[0] = 0; /* cut to fit */
    return 0;
}

/* Every live conflict record of r, in name order. */
static int collect(guts_repo *r, conflicts *cs)
{
    int rc = guts_repo_refs(r, 0, collect_one, cs);
    return cs->rc ? cs->rc : rc;
}

static int count_one(const guts_ref *ref, void *arg)
{
    if (guts_ref_is_conflict_name(ref->name) && !ref->symref[0] && !guts_id_is_zero(&ref->target))
        ++*(uint64_t *)arg;
    return 0;
}

int conflicts_count(guts_repo *r, uint64_t *n)
{
    *n = 0;
    return guts_repo_refs(r, 0, count_one, n);
}

/* ---- What each side has that the other lacks --------------------------- */

typedef struct reach {
    guts_id tip;
    guts_id *ids; /* sorted commit ids reachable from tip */
    size_t n;
    int capped; /* the walk stopped at CONFLICT_WALK_MAX */
    int rc;     /* the walk's error: counts unknown */
    int valid;  /* walked from tip */
} reach;

static int same(const guts_id *a, const guts_id *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(guts_id));
}

/* The commit id names, tags peeled; GUTS_OK or why not. */
static int peel(guts_repo *r, const guts_id *id, guts_id *out)
{
    char hex[GUTS_HEX_LEN + 1];
    const char *why;
    guts_id_to_hex(id, hex);
    return log_resolve(r, hex, out, &why);
}

static void reach_walk(guts_repo *r, const guts_id *tip, reach *out)
{
    size_t cap = 0;
    guts_walk w = {.r = r};
    guts_walk_item it;
    guts_id c;
    free(out->ids);
    memset(out, 0, sizeof *out);
    out->tip = *tip;
    out->valid = 1;
    if ((out->rc = peel(r, tip, &c))) return;
    int rc = guts_walk_push(&w, &c);
    while (!rc && guts_walk_pop(&w, &it)) {
        if (out->n == CONFLICT_WALK_MAX) {
            out->capped = 1;
            break;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 256;
            guts_id *v = realloc(out->ids, cap * sizeof *v);
            if (!v) {
                rc = GUTS_ENOMEM;
                break;
            }
            out->ids = v;
        }
        out->ids[out->n++] = it.id;
        int type;
        void *data;
        size_t len;
        if ((rc = guts_repo_get(r, &it.id, &type, &data, &len))) break;
        rc = guts_walk_push_parents(&w, data, len);
        free(data);
    }
    if (!rc && w.missing) rc = GUTS_ENOTFOUND;
    guts_walk_free(&w);
    out->rc = rc;
    if (out->n) qsort(out->ids, out->n, sizeof *out->ids, cmp_id);
}

static int reach_has(const reach *a, const guts_id *id)
{
    return bsearch(id, a->ids, a->n, sizeof *a->ids, cmp_id) != NULL;
}

/* Commits of a that b lacks; -1 when unknown. */
static long long reach_minus(const reach *a, const reach *b)
{
    if (a->rc || b->rc) return -1;
    long long k = 0;
    for (size_t i = 0; i < a->n; i++)
        k += !reach_has(b, &a->ids[i]);
    return k;
}

/* 1 when the history of b (walked) contains commit a's peeled commit. */
static int contains(guts_repo *r, const reach *b, const guts_id *a)
{
    guts_id c;
    return !b->rc && peel(r, a, &c) == GUTS_OK && reach_has(b, &c);
}

static void reach_free(reach *a)
{
    free(a->ids);
    memset(a, 0, sizeof *a);
}

/* ---- guts conflicts ----------------------------------------------------- */

typedef struct list_ctx {
    guts_data *d;
    int json;
    uint64_t n, repos;
    int rc;
} list_ctx;

static void put_count(long long k, int capped, int json)
{
    if (k < 0)
        fputs(json ? "null" : "?", stdout);
    else
        printf("%lld%s", k, capped && !json ? "+" : "");
}

/* The committer date of commit id (peeled) as UTC text, "?" if unknown. */
static void committed(guts_repo *r, const guts_id *id, char *out, size_t n)
{
    guts_id c;
    int type;
    void *data;
    size_t len;
    snprintf(out, n, "?");
    if (peel(r, id, &c) || guts_repo_get(r, &c, &type, &data, &len)) return;
    time_t t = (time_t)guts_commit_when(data, len);
    free(data);
    struct tm tm;
    if (t && gmtime_r(&t, &tm)) strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void list_one(list_ctx *lc, const char *key, guts_repo *r, const conflict *c,
                     reach *win, reach *kept)
{
    guts_ref w;
    int live = c->ref[0] && guts_repo_ref_get(r, c->ref, &w) == GUTS_OK && !w.symref[0] &&
               !guts_id_is_zero(&w.target);
    if (live && (!win->valid || !same(&win->tip, &w.target)))
        reach_walk(r, &w.target, win);
    reach_walk(r, &c->rec.target, kept);
    long long wo = live ? reach_minus(win, kept) : -1, ko = live ? reach_minus(kept, win) : -1;
    int merged = live && contains(r, win, &c->rec.target);
    char wc[GUTS_HEX_LEN + 1], ww[2 * GUTS_NODE_ID_LEN + 1];
    char kc[GUTS_HEX_LEN + 1], kw[2 * GUTS_NODE_ID_LEN + 1], when[32];
    guts_id_to_hex(&c->rec.target, kc);
    guts_node_id_to_hex(&c->rec.writer, kw);
    committed(r, &c->rec.target, when, sizeof when);
    if (live) {
        guts_id_to_hex(&w.target, wc);
        guts_node_id_to_hex(&w.writer, ww);
    }
    const char *ref = c->ref[0] ? c->ref : c->rec.name;
    if (lc->json) {
        printf("%s\n  {\"repo\": \"%s\", \"ref\": ", lc->n ? "," : "", key);
        if (c->ref[0])
            put_json_str(c->ref);
        else
            fputs("null", stdout);
        fputs(", \"record\": ", stdout);
        put_json_str(c->rec.name);
        if (live)
            printf(", \"winner\": {\"commit\": \"%s\", \"writer\": \"%s\", \"clock\": %" PRIu64 "}",
                   wc, ww, w.clock);
        else
            fputs(", \"winner\": {\"commit\": null}", stdout);
        printf(", \"kept\": {\"commit\": \"%s\", \"writer\": \"%s\", \"clock\": %" PRIu64
               ", \"committed\": \"%s\"}, \"winner_only\": ",
               kc, kw, c->rec.clock, when);
        put_count(wo, 0, 1);
        fputs(", \"kept_only\": ", stdout);
        put_count(ko, 0, 1);
        printf(", \"merged\": %s}", merged ? "true" : "false");
    } else {
        printf("%s ", key);
        put_safe(ref, strlen(ref), 0);
        putchar('\n');
        if (live) {
            printf("  winner %.12s by %.8s (clock %" PRIu64 "), ", wc, ww, w.clock);
            put_count(wo, win->capped, 0);
            fputs(" commits the kept one lacks\n", stdout);
        } else {
            fputs(c->ref[0] ? "  winner (the ref is deleted)\n"
                            : "  winner unknown (the record's name was cut to fit)\n",
                  stdout);
        }
        printf("  kept   %.12s by %.8s (clock %" PRIu64 ", committed %s), ", kc, kw, c->rec.clock,
               when);
        if (merged) {
            fputs("merged into the winner\n", stdout);
        } else {
            put_count(ko, kept->capped, 0);
            fputs(" commits the winner lacks\n", stdout);
        }
    }
    lc->n++;
}

static int list_repo(const char *key, void *arg)
{
    list_ctx *lc = arg;
    guts_repo *r;
    conflicts cs = {0};
    int rc = guts_repo_open(lc->d, key, 0, &r);
    if (rc) {
        lc->rc = die(EXIT_OP, "conflicts", "repository \"%s\": %s", key, store_why(rc));
        return 0;
    }
    if ((rc = guts_repo_read_hold(r)) == GUTS_OK) rc = collect(r, &cs);
    if (rc) {
        lc->rc = die(EXIT_OP, "conflicts", "%s: reading refs: %s", key,
                     rc == GUTS_ETOOBIG ? "over 100000 conflict records" : store_why(rc));
    } else {
        reach win = {0}, kept = {0};
        for (size_t i = 0; i < cs.n; i++)
            list_one(lc, key, r, &cs.v[i], &win, &kept);
        reach_free(&win);
        reach_free(&kept);
        lc->repos += cs.n > 0;
    }
    guts_repo_read_release(r);
    guts_repo_close(r);
    free(cs.v);
    return 0;
}

int cmd_conflicts(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "conflicts";
    const char *key = NULL;
    list_ctx lc = {0};
    int rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            lc.json = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (key)
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts conflicts --help)",
                       argv[i]);
        else
            key = argv[i];
    }
    if (key && (rc = check_key(cmd, key))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &lc.d))) return rc;
    if (lc.json) putchar('[');
    if (key) {
        guts_repo *r;
        if ((rc = open_repo(cmd, lc.d, key, 0, &r)) == 0) {
            guts_repo_close(r);
            list_repo(key, &lc);
        }
    } else {
        int e = guts_data_repos(lc.d, list_repo, &lc);
        if (e) lc.rc = die(EXIT_OP, cmd, "listing repositories: %s", store_why(e));
    }
    if (lc.json)
        printf("%s]\n", lc.n ? "\n" : "");
    else if (!rc && !lc.rc)
        printf(lc.n ? "%" PRIu64 " conflict%s in %" PRIu64 " repositor%s\n" : "no conflicts\n",
               lc.n, lc.n == 1 ? "" : "s", lc.repos, lc.repos == 1 ? "y" : "ies");
    guts_data_close(lc.d);
    return rc ? rc : lc.rc;
}

/* ---- guts resolve ------------------------------------------------------- */

/* Most records one resolve writes: the ref, the tombstones of its conflict
 * records and the one for the old winner's would-be record. */
#define RESOLVE_RECS_MAX (GUTS_GITIO_MERGE_MAX + 2)

/* The ref REF names that has conflict records: REF itself when it is
 * HEAD or starts with refs/, else the first of refs/heads/, refs/tags/,
 * refs/remotes/ + REF that has any (refs/heads/REF when none has). */
static const char *resolve_ref(const conflicts *cs, const char *ref, char *buf)
{
    static const char *const prefixes[] = {"refs/heads/", "refs/tags/", "refs/remotes/"};
    if (strcmp(ref, "HEAD") == 0 || strncmp(ref, "refs/", 5) == 0) return ref;
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        snprintf(buf, GUTS_REFNAME_MAX + 1, "%s%s", prefixes[p], ref);
        for (size_t i = 0; i < cs->n; i++)
            if (conflict_of(&cs->v[i], buf)) return buf;
    }
    snprintf(buf, GUTS_REFNAME_MAX + 1, "%s%s", prefixes[0], ref);
    return buf;
}

/* COMMIT of --take: a unique prefix (4+ hex digits) of one side, else a
 * stored commit's (or tag's) full id. */
static int take_target(guts_repo *r, const char *arg, const guts_ref *win, int live,
                       const conflict *const *mine, size_t n, guts_id *out, const char **why)
{
    size_t len = strlen(arg), hits = 0;
    char hex[GUTS_HEX_LEN + 1];
    *why = "names neither side of the conflict nor a stored commit (ids as guts conflicts "
           "shows)";
    if (len < 4 || len > GUTS_HEX_LEN || strspn(arg, "0123456789abcdef") != len)
        return GUTS_EINVAL;
    for (size_t i = 0; i <= n; i++) {
        const guts_id *id = i < n ? &mine[i]->rec.target : live ? &win->target : NULL;
        if (!id) continue;
        guts_id_to_hex(id, hex);
        if (strncmp(hex, arg, len) == 0 && (hits == 0 || !same(out, id))) {
            *out = *id;
            hits++;
        }
    }
    if (hits > 1) {
        *why = "is a prefix of more than one side: give more digits";
        return GUTS_EINVAL;
    }
    if (hits == 1) return GUTS_OK;
    guts_id c;
    if (len == GUTS_HEX_LEN && guts_id_from_hex(arg, len, out) == GUTS_OK &&
        peel(r, out, &c) == GUTS_OK)
        return GUTS_OK;
    return GUTS_ENOTFOUND;
}

int cmd_resolve(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "resolve";
    const char *key = NULL, *refarg = NULL, *take = NULL, *msg = NULL;
    int merge = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--take") == 0 && i + 1 < argc)
            take = argv[++i];
        else if (strcmp(argv[i], "--merge") == 0)
            merge = 1;
        else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
            msg = argv[++i];
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (!key)
            key = argv[i];
        else if (!refarg)
            refarg = argv[i];
        else
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts resolve --help)",
                       argv[i]);
    }
    if (!key || !refarg || !!take == merge)
        return die(EXIT_USAGE, cmd,
                   "expected OWNER/NAME REF and one of --take COMMIT or --merge "
                   "(see guts resolve --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if (strlen(refarg) > GUTS_REFNAME_MAX - 16)
        return die(EXIT_USAGE, cmd, "bad ref name \"%.40s...\": too long", refarg);
    guts_data *d = NULL;
    guts_repo *r = NULL;
    conflicts cs = {0};
    reach win = {0}, side = {0};
    char buf[GUTS_REFNAME_MAX + 1], err[GUTS_GITIO_ERR_MAX];
    const conflict *mine[GUTS_GITIO_MERGE_MAX];
    guts_ref recs[RESOLVE_RECS_MAX];
    size_t n = 0, nrecs = 0;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    if ((rc = open_repo(cmd, d, key, 0, &r))) goto out;
    int e = collect(r, &cs);
    if (e) {
        rc = die(EXIT_OP, cmd, "%s: reading refs: %s", key,
                 e == GUTS_ETOOBIG ? "over 100000 conflict records" : store_why(e));
        goto out;
    }
    const char *ref = resolve_ref(&cs, refarg, buf);
    if (guts_refname_check(ref) != GUTS_OK) {
        rc = die(EXIT_USAGE, cmd, "bad ref name \"%s\"", refarg);
        goto out;
    }
    for (size_t i = 0; i < cs.n; i++) {
        if (!conflict_of(&cs.v[i], ref)) continue;
        if (n == GUTS_GITIO_MERGE_MAX) {
            rc = die(EXIT_OP, cmd, "%s: %s has over %d conflict records: settle it in a clone",
                     key, ref, GUTS_GITIO_MERGE_MAX);
            goto out;
        }
        mine[n++] = &cs.v[i];
    }
    if (!n) {
        rc = die(EXIT_OP, cmd, "%s: no conflict on %s (guts conflicts %s lists them)", key, ref,
                 key);
        goto out;
    }
    guts_ref w;
    int live = guts_repo_ref_get(r, ref, &w) == GUTS_OK && !w.symref[0] &&
               !guts_id_is_zero(&w.target);
    guts_id target;
    if (take) {
        const char *why;
        if (take_target(r, take, &w, live, mine, n, &target, &why)) {
            rc = die(EXIT_OP, cmd, "%s: --take \"%s\" %s", key, take, why);
            goto out;
        }
    } else {
        if (!live) {
            rc = die(EXIT_OP, cmd, "%s: %s is deleted: nothing to merge into (use --take)", key,
                     ref);
            goto out;
        }
        /* Merge what the winner lacks, in record order; the rest is merged already. */
        guts_id theirs[GUTS_GITIO_MERGE_MAX], c;
        size_t nt = 0;
        reach_walk(r, &w.target, &win);
        if (win.rc || win.capped || peel(r, &w.target, &c) || !same(&c, &w.target)) {
            rc = die(EXIT_OP, cmd, "%s: --merge needs %s to name a commit whose history is stored",
                     key, ref);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            guts_id k;
            if (peel(r, &mine[i]->rec.target, &k) || !same(&k, &mine[i]->rec.target)) {
                rc = die(EXIT_OP, cmd,
                         "%s: --merge needs commits, and %s keeps a tag or an object that is "
                         "not stored: use --take",
                         key, mine[i]->rec.name);
                goto out;
            }
            if (!reach_has(&win, &k)) theirs[nt++] = k;
        }
        target = w.target;
        if (nt) {
            char deflt[GUTS_REFNAME_MAX + 64];
            snprintf(deflt, sizeof deflt, "Merge divergent updates of %s (guts resolve)", ref);
            e = guts_gitio_merge(r, &w.target, theirs, nt, msg ? msg : deflt, &target, err);
            if (e == GUTS_ECONFLICT) {
                rc = die(EXIT_OP, cmd,
                         "%s: %s: %s; merge in a clone (git fetch guts://%s "
                         "'refs/guts/*:refs/guts/*'), push the result, then guts resolve %s %s "
                         "--take COMMIT",
                         key, ref, err, key, key, ref);
                goto out;
            }
            if (e) {
                rc = die(EXIT_OP, cmd, "%s: merging %s: %s", key, ref, err);
                goto out;
            }
        }
    }
    guts_repo_info info;
    uint64_t clock;
    if ((e = guts_repo_info_get(r, &info)) || (e = guts_ref_clock_next(info.clock, 0, &clock))) {
        rc = die(EXIT_OP, cmd, "%s: %s", key,
                 e == GUTS_ETOOBIG ? "the ref clock is at its limit: nothing written"
                                   : store_why(e));
        goto out;
    }
    const guts_node_id *node = guts_data_node_id(d);
    if (!live || !same(&w.target, &target)) {
        guts_ref *s = &recs[nrecs++];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", ref);
        s->target = target;
        s->clock = clock;
        s->writer = *node;
        /* The old winner, not in the new target's history, would become a
         * conflict record where this record wins: born deleted instead. */
        reach_walk(r, &target, &side);
        if (live && !contains(r, &side, &w.target)) {
            guts_ref *t = &recs[nrecs++];
            memset(t, 0, sizeof *t);
            if (guts_ref_conflict_name(ref, &w.writer, &w.target, t->name) != GUTS_OK) nrecs--;
            t->clock = clock;
            t->writer = *node;
        }
    }
    for (size_t i = 0; i < n; i++) {
        guts_ref *t = &recs[nrecs++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", mine[i]->rec.name);
        t->clock = clock;
        t->writer = *node;
    }
    if ((e = guts_repo_refs_put(r, recs, nrecs))) {
        rc = die(EXIT_OP, cmd, "%s: writing %s: %s", key, ref, store_why(e));
        goto out;
    }
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&target, hex);
    printf("%s %s: %s %.12s, %zu conflict record%s deleted\n", key, ref,
           take ? "now" : live && !same(&w.target, &target) ? "merged as"
                                                                           : "already holds",
           hex, n, n == 1 ? "" : "s");
out:
    reach_free(&win);
    reach_free(&side);
    free(cs.v);
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}
