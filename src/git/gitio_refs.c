/* gitio_refs.c - the import's refs: git's refs and HEAD set in the store
 * by git push's rules.
 *
 * Import's refs follow git push's rules against the store's records, with
 * one memory git lacks: the records this git directory's last import left
 * (its "marks", in the env's local imports db), which tell the user's own
 * changes (followed, deletions and rewinds included) from changes others
 * made since (never rewound, moved or deleted without --force/--prune).
 * The rule is one pure function (gitio_imp_decide, table-tested); fast-forwards
 * are decided by walking commits in the store within one read snapshot;
 * the writes are a compare-and-swap on the refs digest.
 */
#include "gitio_int.h"
#include "walk.h"
#include "guts/refmerge.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

typedef struct nref {
    char *name;
    guts_id id;   /* zero for a symbolic or deleted ref */
    char *symref; /* NULL when not symbolic */
    int tomb;
    uint64_t clock;      /* store records and marks */
    guts_node_id writer; /* store records and marks */
} nref;

typedef struct nrefs {
    nref *r;
    size_t n, cap;
} nrefs;

static void nrefs_free(nrefs *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->r[i].name);
        free(v->r[i].symref);
    }
    free(v->r);
    memset(v, 0, sizeof *v);
}

static int nrefs_add(nrefs *v, const char *name, const guts_id *id, const char *symref, int tomb)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        nref *nr = realloc(v->r, nc * sizeof *nr);
        if (!nr) return GUTS_ENOMEM;
        v->r = nr;
        v->cap = nc;
    }
    nref *e = &v->r[v->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->symref = symref && symref[0] ? strdup(symref) : NULL;
    e->id = *id;
    e->tomb = tomb;
    if (!e->name || (symref && symref[0] && !e->symref)) {
        free(e->name);
        free(e->symref);
        return GUTS_ENOMEM;
    }
    v->n++;
    return GUTS_OK;
}

static int cmp_nref(const void *a, const void *b)
{
    return strcmp(((const nref *)a)->name, ((const nref *)b)->name);
}

static int collect_store_ref(const guts_ref *ref, void *ctx)
{
    nrefs *v = ctx;
    int rc = nrefs_add(v, ref->name, &ref->target, ref->symref,
                       guts_id_is_zero(&ref->target) && !ref->symref[0]);
    if (rc) return rc;
    v->r[v->n - 1].clock = ref->clock;
    v->r[v->n - 1].writer = ref->writer;
    return GUTS_OK;
}

static int collect_mark(const guts_import_mark *m, void *ctx)
{
    nrefs *v = ctx;
    int rc = nrefs_add(v, m->name, &m->target, NULL, 0);
    if (rc) return rc;
    v->r[v->n - 1].clock = m->clock;
    v->r[v->n - 1].writer = m->writer;
    return GUTS_OK;
}

/* Refs of the git repository, sorted by name, HEAD excluded. */
static int git_refs(const char *gitdir, nrefs *out, char *err)
{
    char *argv[] = {
        "git", "-C", (char *)gitdir, "for-each-ref", "--format=%(objectname) %(refname)", NULL};
    char *buf, *line, *save = NULL;
    size_t len;
    int rc = gitio_run_capture("git for-each-ref", argv, &buf, &len, err);
    if (rc) return rc;
    for (line = strtok_r(buf, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        guts_id id;
        char *sp = strchr(line, ' ');
        if (!sp || guts_id_from_hex(line, (size_t)(sp - line), &id)) {
            rc =
                guts_git_errf(err, GUTS_EINVAL, "%s: unexpected for-each-ref line \"%.100s\"", gitdir, line);
            break;
        }
        if (guts_refname_check(sp + 1) != GUTS_OK) {
            rc = guts_git_errf(err, GUTS_EINVAL, "%s: ref name \"%.200s\" is not valid", gitdir, sp + 1);
            break;
        }
        rc = nrefs_add(out, sp + 1, &id, NULL, 0);
        if (rc) guts_git_errf(err, rc, "out of memory reading refs");
    }
    free(buf);
    return rc;
}

/* HEAD of the git repository: symbolic (symref filled) or detached (id). */
static int git_head(const char *gitdir, char *symref, guts_id *id, char *err)
{
    char *sym[] = {"git", "-C", (char *)gitdir, "symbolic-ref", "-q", "HEAD", NULL};
    char *rev[] = {"git", "-C", (char *)gitdir, "rev-parse", "-q", "--verify", "HEAD", NULL};
    char *buf;
    size_t len;
    char ignored[GUTS_GITIO_ERR_MAX];
    symref[0] = 0;
    memset(id, 0, sizeof *id);
    if (gitio_run_capture("git symbolic-ref", sym, &buf, &len, ignored) == GUTS_OK) {
        buf[strcspn(buf, "\n")] = 0;
        int ok = strlen(buf) <= GUTS_REFNAME_MAX && guts_refname_check(buf) == GUTS_OK;
        if (ok) strcpy(symref, buf);
        free(buf);
        if (!ok) return guts_git_errf(err, GUTS_EINVAL, "%s: HEAD points at an invalid ref name", gitdir);
        return GUTS_OK;
    }
    int rc = gitio_run_capture("git rev-parse", rev, &buf, &len, err);
    if (rc) return guts_git_errf(err, rc, "%s: HEAD is neither a symbolic ref nor an object", gitdir);
    buf[strcspn(buf, "\n")] = 0;
    rc = guts_id_from_hex(buf, strlen(buf), id);
    free(buf);
    if (rc) return guts_git_errf(err, GUTS_EINVAL, "%s: cannot parse HEAD", gitdir);
    return GUTS_OK;
}

/* The source of an import: the git directory as git resolves it (a work
 * tree and its .git are one source), made canonical by realpath(), and 16
 * bytes of XXH3-128 of that path to key its marks. path gets PATH_MAX bytes. */
int gitio_git_source(const char *gitdir, char *path, uint8_t src[GUTS_IMPORT_SRC_LEN], char *err)
{
    char *argv[] = {"git", "-C", (char *)gitdir, "rev-parse", "--absolute-git-dir", NULL};
    char *buf;
    size_t len;
    if (gitio_run_capture("git rev-parse", argv, &buf, &len, err) != GUTS_OK) {
        if (strncmp(err, "cannot start", 12) == 0) return GUTS_EIO; /* no git at all */
        return guts_git_errf(err, GUTS_EINVAL, "\"%s\" is not a git repository", gitdir);
    }
    buf[strcspn(buf, "\n")] = 0;
    char *real = realpath(buf, path);
    int e = errno;
    free(buf);
    if (!real)
        return guts_git_errf(err, GUTS_EIO, "%s: cannot resolve its git directory: %s", gitdir, strerror(e));
    XXH128_hash_t h = XXH3_128bits(path, strlen(path));
    for (int i = 0; i < 8; i++) {
        src[i] = (uint8_t)(h.high64 >> (56 - 8 * i));
        src[8 + i] = (uint8_t)(h.low64 >> (56 - 8 * i));
    }
    return GUTS_OK;
}

const char *const gitio_imp_why_text[] = {
    [WHY_NONE] = "",
    [WHY_MOVED] = "updated by someone else since this directory's last import, and the "
                  "directory's commit does not contain that update (--force to rewind)",
    [WHY_NOT_FF] = "the directory's commit is not a fast-forward of the stored one "
                   "(--force to rewind)",
    [WHY_UNDECIDED] = "whether the directory's commit is a fast-forward was not decided "
                      "within the walk's budget (--force to update)",
    [WHY_TAG] = "the stored tag has another target (--force to move it)",
    [WHY_HEAD] = "set by someone else since this directory's last import, or before its "
                 "first (--force to set it)",
    [WHY_GONE_CHANGED] = "not in the directory, and updated by someone else since its last "
                         "import (--prune to delete)",
    [WHY_GONE_NEVER] = "not in the directory, and never imported from it (--prune to delete)",
    [WHY_DELETED] = "deleted by someone else since this directory's last import "
                    "(--force to restore)",
};

int gitio_imp_decide(const imp_case *c, int *why)
{
    assert(c->store == IMP_ABSENT || c->store == IMP_TOMB || c->store == IMP_LIVE);
    assert(c->kind >= IMP_BRANCH && c->kind <= IMP_GUTS);
    *why = WHY_NONE;
    if (c->git && c->store == IMP_LIVE && c->same) return IMP_NOTHING;
    if (!c->git && c->store != IMP_LIVE) return IMP_NOTHING;
    if (!c->git) {
        /* refs/guts/ is guts' own (conflict records kept for the cluster):
         * a git directory not having them says nothing about them. */
        if (c->kind == IMP_GUTS) return IMP_NOTHING;
        if (c->mine || (c->flags & GUTS_GITIO_PRUNE)) return IMP_DELETE;
        *why = c->marked ? WHY_GONE_CHANGED : WHY_GONE_NEVER;
        return IMP_KEEP;
    }
    if (c->store != IMP_LIVE) {
        /* Someone deleted what this directory imported, and the directory
         * still has it as imported: the deletion is the newer intent. */
        if (c->store == IMP_TOMB && c->marked && c->git_unmoved && !(c->flags & GUTS_GITIO_FORCE)) {
            *why = WHY_DELETED;
            return IMP_KEEP;
        }
        return IMP_SET;
    }
    if (c->mine || (c->flags & GUTS_GITIO_FORCE)) return IMP_SET;
    if (c->kind == IMP_TAG || c->kind == IMP_HEAD) {
        *why = c->kind == IMP_TAG ? WHY_TAG : WHY_HEAD;
        return IMP_KEEP;
    }
    if (c->ff == IMP_FF_UNASKED) return IMP_ASK_FF;
    if (c->ff == 1) return IMP_SET;
    *why = c->ff == IMP_FF_UNDECIDED     ? WHY_UNDECIDED
           : c->marked && c->git_unmoved ? WHY_MOVED
                                         : WHY_NOT_FF;
    return IMP_KEEP;
}

/* Commits the fast-forward tests of one import may read, over all refs: a
 * bound on the work a hostile or strange history can cause. A test cut off
 * keeps its ref (the cautious answer) and says so. */
#define IMPORT_FF_COMMITS 200000

/* Is old an ancestor of new? Walks new's history in the store, newest
 * first by committer date, until old is found or every commit left is more
 * than IMPORT_FF_SLOP older than old. *ff: 1, 0, or IMP_FF_UNDECIDED when
 * *budget (commits, decremented) runs out. Not commits: 0. */
int gitio_ff_test(guts_repo *r, const guts_id *old, const guts_id *new, uint64_t *budget, int *ff)
{
    int type, tnew, rc;
    uint64_t size;
    void *data;
    size_t len;
    *ff = 0;
    if ((rc = guts_repo_stat(r, new, &tnew, &size)) == GUTS_ENOTFOUND) return GUTS_OK;
    if (rc) return rc;
    if ((rc = guts_repo_get(r, old, &type, &data, &len)) == GUTS_ENOTFOUND) return GUTS_OK;
    if (rc) return rc;
    int64_t cutoff = type == GUTS_OBJ_COMMIT ? guts_commit_when(data, len) - IMPORT_FF_SLOP : 0;
    free(data);
    if (type != GUTS_OBJ_COMMIT || tnew != GUTS_OBJ_COMMIT) return GUTS_OK;
    guts_walk w = {.r = r};
    guts_walk_item it;
    rc = guts_walk_push(&w, new);
    while (!rc && guts_walk_pop(&w, &it)) {
        if (guts_id_cmp(&it.id, old) == 0) {
            *ff = 1;
            break;
        }
        if (it.when < cutoff) break; /* the heap's newest: all others are older */
        if (*budget == 0) {
            *ff = IMP_FF_UNDECIDED;
            break;
        }
        (*budget)--;
        if ((rc = guts_repo_get(r, &it.id, &type, &data, &len))) break;
        rc = guts_walk_push_parents(&w, data, len);
        free(data);
    }
    guts_walk_free(&w);
    return rc;
}

/* One name in the three sorted lists, with its decision. */
typedef struct imp_item {
    const char *name; /* of whichever views have it */
    const nref *g, *s, *m;
    imp_case c;
    int act, why;
} imp_item;

static int imp_kind(const char *name)
{
    if (strcmp(name, "HEAD") == 0) return IMP_HEAD;
    if (strncmp(name, "refs/tags/", 10) == 0) return IMP_TAG;
    if (strncmp(name, "refs/guts/", 10) == 0) return IMP_GUTS;
    return IMP_BRANCH;
}

static void imp_fill(imp_item *it, unsigned flags)
{
    const nref *g = it->g, *s = it->s, *m = it->m;
    imp_case *c = &it->c;
    memset(c, 0, sizeof *c);
    c->git = g != NULL;
    c->store = !s ? IMP_ABSENT : s->tomb ? IMP_TOMB : IMP_LIVE;
    if (g && c->store == IMP_LIVE)
        c->same = g->symref ? s->symref && strcmp(g->symref, s->symref) == 0
                            : !s->symref && guts_id_cmp(&g->id, &s->id) == 0;
    c->marked = m != NULL;
    /* A symbolic record's mark has a zero target (nref keeps it zero). */
    c->mine = m && c->store == IMP_LIVE && m->clock == s->clock &&
              memcmp(m->writer.b, s->writer.b, GUTS_NODE_ID_LEN) == 0 &&
              guts_id_cmp(&m->id, &s->id) == 0;
    c->git_unmoved =
        m && g && !g->symref && !guts_id_is_zero(&m->id) && guts_id_cmp(&m->id, &g->id) == 0;
    c->kind = imp_kind(it->name);
    c->ff = IMP_FF_UNASKED;
    c->flags = flags;
}

/* Records and marks waiting for one write transaction. */
typedef struct imp_out {
    guts_repo *repo;
    const uint8_t *src;
    const char *path;
    guts_fp digest; /* the ref state decided on, then as each batch left it */
    guts_ref *recs;
    guts_import_mark *marks;
    size_t nrec, nmark;
    uint64_t changed, deleted; /* of recs: counted into st once committed */
    guts_gitio_stats *st;
} imp_out;

static int imp_flush(imp_out *o, char *err)
{
    int rc = guts_repo_import_put(o->repo, o->src, o->path, &o->digest, o->recs, o->nrec, o->marks,
                                  o->nmark);
    if (rc == GUTS_OK) {
        o->st->refs_changed += o->changed;
        o->st->refs_deleted += o->deleted;
    } else if (rc != GUTS_ECONFLICT) {
        guts_git_errf(err, rc, "writing %zu refs and %zu import marks: %s (%s)", o->nrec, o->nmark,
             guts_strerror(rc), guts_store_errmsg());
    }
    o->nrec = o->nmark = 0;
    o->changed = o->deleted = 0;
    return rc;
}

static int imp_mark(imp_out *o, const char *name, const guts_id *target, uint64_t clock,
                    const guts_node_id *writer, int forget, char *err)
{
    guts_import_mark *k = &o->marks[o->nmark++];
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", name);
    if (target) k->target = *target;
    k->clock = clock;
    if (writer) k->writer = *writer;
    k->forget = forget;
    return o->nmark == GITIO_REFS_BATCH ? imp_flush(o, err) : GUTS_OK;
}

/* One pass over the store's side: read its refs and the directory's marks,
 * decide every name against git's refs g (sorted, HEAD included), run the
 * fast-forward tests, write. GUTS_ECONFLICT: the store's refs changed since
 * they were read (a node applied a peer's update, a push landed): nothing
 * of the failed batch was written, and the caller decides again. */
static int import_refs_pass(guts_repo *repo, const guts_node_id *node, const nrefs *g,
                            imp_out *o, const guts_gitio_import_opts *opts, char *err)
{
    nrefs s = {0}, m = {0};
    imp_item *items = NULL;
    size_t nitems = 0;
    guts_repo_info info;
    guts_gitio_stats *st = o->st;
    /* One snapshot for every read of the pass (refs, marks, the walks):
     * the digest matches the refs read, and the walks cost one read
     * transaction, not one per commit. Released before the writes. */
    int rc = guts_repo_read_hold(repo);
    if (rc) guts_git_errf(err, rc, "reading the repository: %s (%s)", guts_strerror(rc), guts_store_errmsg());
    if (!rc && (rc = guts_repo_info_get(repo, &info)))
        guts_git_errf(err, rc, "reading repository counters: %s", guts_strerror(rc));
    if (!rc && (rc = guts_repo_refs(repo, 1, collect_store_ref, &s)))
        guts_git_errf(err, rc, "reading stored refs: %s", guts_strerror(rc));
    if (!rc && (rc = guts_repo_import_marks(repo, o->src, collect_mark, &m)))
        guts_git_errf(err, rc, "reading import marks: %s (%s)", guts_strerror(rc), guts_store_errmsg());
    if (!rc && !(items = calloc(g->n + s.n + m.n, sizeof *items)))
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    if (rc) goto out;
    o->digest = info.refs_digest;
    if (s.n) qsort(s.r, s.n, sizeof *s.r, cmp_nref);
    if (m.n) qsort(m.r, m.n, sizeof *m.r, cmp_nref);
    /* Merge walk of three sorted lists: one item per name, decided. */
    for (size_t i = 0, j = 0, k = 0; i < g->n || j < s.n || k < m.n;) {
        const char *least = NULL;
        if (i < g->n) least = g->r[i].name;
        if (j < s.n && (!least || strcmp(s.r[j].name, least) < 0)) least = s.r[j].name;
        if (k < m.n && (!least || strcmp(m.r[k].name, least) < 0)) least = m.r[k].name;
        imp_item *it = &items[nitems++];
        it->name = least;
        it->g = i < g->n && strcmp(g->r[i].name, least) == 0 ? &g->r[i++] : NULL;
        it->s = j < s.n && strcmp(s.r[j].name, least) == 0 ? &s.r[j++] : NULL;
        it->m = k < m.n && strcmp(m.r[k].name, least) == 0 ? &m.r[k++] : NULL;
        imp_fill(it, opts->flags);
        it->act = gitio_imp_decide(&it->c, &it->why);
    }
    /* Fast-forward tests only where the rule needs them, in one budget. */
    uint64_t budget = IMPORT_FF_COMMITS;
    for (size_t i = 0; i < nitems; i++) {
        imp_item *it = &items[i];
        if (it->act != IMP_ASK_FF) continue;
        if ((rc = gitio_ff_test(repo, &it->s->id, &it->g->id, &budget, &it->c.ff))) {
            guts_git_errf(err, rc, "fast-forward test of %.200s: %s (%s)", it->g->name, guts_strerror(rc),
                 guts_store_errmsg());
            goto out;
        }
        it->act = gitio_imp_decide(&it->c, &it->why);
    }
    /* A ref is written only if its target is stored: git's listing skips
     * what it cannot read (a damaged .idx, a lost loose object) and the
     * refs would then name missing objects on every node. */
    for (size_t i = 0; i < nitems; i++) {
        const imp_item *it = &items[i];
        if (it->act != IMP_SET || !it->g || it->g->symref) continue;
        int has = guts_repo_has(repo, &it->g->id);
        if (has == 1) continue;
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&it->g->id, hex);
        rc = has < 0 ? guts_git_errf(err, has, "looking up %.200s's target: %s", it->name, guts_strerror(has))
                     : guts_git_errf(err, GUTS_EINVAL,
                                     "%.200s points at %s, which git did not list: the repository "
                                     "is damaged (git fsck it); no ref was written",
                                     it->name, hex);
        goto out;
    }
    uint64_t clock = 0;
    for (size_t i = 0; i < nitems; i++) {
        imp_item *it = &items[i];
        if (it->act != IMP_SET && it->act != IMP_DELETE) continue;
        if ((rc = guts_ref_clock_next(info.clock, 0, &clock))) {
            guts_git_errf(err, rc,
                 "the repository's ref clock is at its limit (%" PRIu64
                 "): no record can be newer, no ref was written",
                 info.clock);
            goto out;
        }
        break;
    }
    guts_repo_read_release(repo);
    for (size_t i = 0; i < nitems && !rc; i++) {
        imp_item *it = &items[i];
        const nref *gr = it->g, *sr = it->s;
        const char *name = it->name;
        if (it->act == IMP_KEEP) continue;
        if (it->act == IMP_NOTHING) {
            /* Agreement is remembered (changes by others after it are
             * theirs); a name gone from both is forgotten. */
            if (gr && !it->c.mine)
                rc = imp_mark(o, name, &sr->id, sr->clock, &sr->writer, 0, err);
            else if (!gr && it->m)
                rc = imp_mark(o, name, NULL, 0, NULL, 1, err);
            continue;
        }
        guts_ref *e = &o->recs[o->nrec++];
        memset(e, 0, sizeof *e);
        snprintf(e->name, sizeof e->name, "%s", name);
        if (gr && gr->symref) snprintf(e->symref, sizeof e->symref, "%s", gr->symref);
        if (gr && !gr->symref) e->target = gr->id;
        e->clock = clock;
        e->writer = *node;
        o->changed++;
        if (it->act == IMP_DELETE) o->deleted++;
        if (it->act == IMP_SET)
            rc = imp_mark(o, name, &e->target, clock, node, 0, err);
        else if (it->m)
            rc = imp_mark(o, name, NULL, 0, NULL, 1, err);
        if (!rc && o->nrec == GITIO_REFS_BATCH) rc = imp_flush(o, err);
    }
    if (!rc && (o->nrec || o->nmark)) rc = imp_flush(o, err);
    /* Kept refs are reported once, by the pass that wrote. */
    for (size_t i = 0; i < nitems && !rc; i++) {
        const imp_item *it = &items[i];
        if (it->act != IMP_KEEP) continue;
        st->refs_kept++;
        assert(it->why > WHY_NONE && it->why <= WHY_DELETED); /* a kept ref says why */
        if (opts->kept)
            opts->kept(opts->ctx, it->name, gitio_imp_why_text[it->why]);
    }
out:
    guts_repo_read_release(repo);
    o->nrec = o->nmark = 0;
    o->changed = o->deleted = 0;
    free(items);
    nrefs_free(&s);
    nrefs_free(&m);
    return rc;
}

/* Passes of import_refs_pass before giving up on a store whose refs keep
 * changing under it (each pass costs a read of every ref). */
#define IMPORT_REFS_PASSES 8

int gitio_import_refs(guts_repo *repo, const guts_node_id *node, const char *gitdir,
                      const char *path, const uint8_t *src, const guts_gitio_import_opts *opts,
                      guts_gitio_stats *st, char *err)
{
    nrefs g = {0};
    char head_sym[GUTS_REFNAME_MAX + 1];
    guts_id head_id;
    imp_out o = {.repo = repo, .src = src, .path = path, .st = st};
    int rc = git_refs(gitdir, &g, err);
    if (!rc) rc = git_head(gitdir, head_sym, &head_id, err);
    if (!rc && (rc = nrefs_add(&g, "HEAD", &head_id, head_sym, 0))) guts_git_errf(err, rc, "out of memory");
    if (!rc && (!(o.recs = calloc(GITIO_REFS_BATCH, sizeof *o.recs)) ||
                !(o.marks = calloc(GITIO_REFS_BATCH, sizeof *o.marks))))
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    if (!rc) {
        qsort(g.r, g.n, sizeof *g.r, cmp_nref);
        st->refs_total = g.n;
        rc = GUTS_ECONFLICT;
        for (int pass = 0; pass < IMPORT_REFS_PASSES && rc == GUTS_ECONFLICT; pass++)
            rc = import_refs_pass(repo, node, &g, &o, opts, err);
        if (rc == GUTS_ECONFLICT)
            guts_git_errf(err, rc, "the repository's refs changed during each of %d tries; import again",
                 IMPORT_REFS_PASSES);
    }
    free(o.recs);
    free(o.marks);
    nrefs_free(&g);
    return rc;
}
