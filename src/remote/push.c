/* push.c - the helper's `push`: objects from the local repository into the
 * store, then ref records.
 *
 * Order: decide, then copy, then publish. Each command is checked against
 * the store's current record first (git's rules: a tag that exists is not
 * moved, a branch only fast-forwards, unless forced). Nothing here is done
 * once per ref with a process or a transaction: the store's records are
 * read by one scan, every src is resolved and every old target looked up by
 * one `git cat-file --batch-check`, and the fast-forward test of all
 * updates that need it is one walk over the local repository's commits
 * through one `git cat-file --batch` (the local repository has the new
 * commit's whole history, so the answer is exact: the old tip is an
 * ancestor only if the walk meets it). Only then are objects copied, and
 * only those the accepted updates need: `git rev-list --objects` from the
 * new tips, excluding everything the store's refs already reach (a store
 * ref is applied only once its closure is stored). That is the import's
 * object path (guts_gitio_store_reachable): rev-list piped into one
 * `cat-file --batch-check`, then the objects the store lacks read by one
 * `cat-file --batch` with each git delta base first (the store compresses
 * against a base only once it is stored), in batches a second thread
 * compresses and commits while the next is read (a crash between batches
 * leaves only unreferenced objects). Last, every accepted ref record is
 * written in one transaction, after a second scan of the records: one that
 * changed meanwhile (a node applied a peer's update) fails that command
 * with "fetch first".
 *
 * A running node polls the environment's counters and announces the new
 * objects and refs: the helper never talks to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gitio.h"
#include "pack.h"
#include "guts/refmerge.h"
#include "guts/gitobj.h"
#include "remote.h"

/* ---- the store's records ----------------------------------------------------- */

/* One scan of the store's ref records (one read transaction, whatever the
 * number of commands) matched to the commands by name: the first scan fills
 * each command's cur, the second, just before the write, finds commands
 * whose record changed meanwhile. */
typedef struct ref_scan {
    remote_push_cmd *cmds;
    const size_t *by_dst; /* command indexes in strcmp order of dst */
    size_t n;
    uint8_t *seen;  /* per command: a stored record was met */
    uint8_t *stale; /* recheck: per command, its record changed */
    int recheck;
    guts_ref head; /* HEAD's record, when head_found */
    int head_found;
    guts_ids have; /* first scan: every live ref's target (the store has
                      * their closures: rev-list's walk stops there) */
} ref_scan;

static const remote_push_cmd *sort_cmds; /* qsort has no context argument */

static int by_dst_cmp(const void *a, const void *b)
{
    return strcmp(sort_cmds[*(const size_t *)a].dst, sort_cmds[*(const size_t *)b].dst);
}

static int same_record(const guts_ref *a, int alive, const guts_ref *b, int blive)
{
    if (alive != blive) return 0;
    if (!alive && !blive) return a->clock == b->clock; /* both absent or both tombstones */
    return guts_ref_cmp(a, b) == 0;
}

typedef struct dst_key {
    const ref_scan *s;
    const char *name;
} dst_key;

static int dst_cmp(const void *ctx, size_t i)
{
    const dst_key *k = ctx;
    return strcmp(k->s->cmds[k->s->by_dst[i]].dst, k->name);
}

static int scan_one(const guts_ref *ref, void *ctx)
{
    ref_scan *s = ctx;
    if (strcmp(ref->name, "HEAD") == 0) {
        s->head = *ref;
        s->head_found = 1;
        return 0;
    }
    dst_key k = {s, ref->name}; /* first command whose dst is not below the name */
    size_t lo = guts_lower_bound(s->n, dst_cmp, &k, NULL);
    int live = !guts_ref_is_tombstone(ref);
    if (!s->recheck && live && !ref->symref[0]) {
        int rc = guts_ids_push(&s->have, &ref->target);
        if (rc) return rc;
    }
    for (; lo < s->n && strcmp(s->cmds[s->by_dst[lo]].dst, ref->name) == 0; lo++) {
        size_t i = s->by_dst[lo];
        remote_push_cmd *c = &s->cmds[i];
        s->seen[i] = 1;
        if (s->recheck) {
            s->stale[i] = !same_record(ref, live, &c->cur, c->cur_live);
        } else {
            c->cur = *ref;
            c->cur_live = live;
        }
    }
    return 0;
}

/* Scan the store's records (r may be NULL: no repository, nothing stored). */
static int scan_refs(guts_repo *r, ref_scan *s, char *err)
{
    memset(s->seen, 0, s->n);
    s->head_found = 0;
    s->have.n = 0;
    int rc = r ? guts_repo_refs(r, 1, scan_one, s) : GUTS_OK;
    if (rc == GUTS_ENOMEM) return guts_git_errf(err, rc, "out of memory reading refs");
    if (rc)
        return guts_git_errf(err, rc, "reading refs: %s (%s)", guts_strerror(rc),
                           guts_store_errmsg());
    for (size_t i = 0; i < s->n; i++) {
        if (s->seen[i]) continue;
        remote_push_cmd *c = &s->cmds[i];
        if (s->recheck) {
            s->stale[i] = c->cur_live || c->cur.clock != 0; /* it was there, now gone */
        } else {
            memset(&c->cur, 0, sizeof c->cur);
            c->cur_live = 0;
        }
    }
    return GUTS_OK;
}

/* ---- the local repository's answers --------------------------------------------- */

static void set_error(remote_push_cmd *c, const char *msg)
{
    c->status = REMOTE_PUSH_ERROR;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

/* Per command, what the local repository says (filled by resolve). */
typedef struct local_ids {
    int new_type; /* GUTS_OBJ_* of src, or -1: does not resolve */
    int old_type; /* of cur's target, or -1: git does not have it */
} local_ids;

/* Does the command need the ancestry answer (an update of a live branch
 * that is not forced)? Only those ask git about the old target. */
static int needs_ancestry(const remote_push_cmd *c)
{
    return !c->del && c->cur_live && !c->cur.symref[0] && !c->force &&
           strncmp(c->dst, "refs/tags/", 10) != 0;
}

/* A line "<id> <type>" of cat-file's batch check into *id and the type, or
 * -1 ("<query> missing", "ambiguous", anything else). */
static int check_line(const char *line, guts_id *id)
{
    size_t len = strcspn(line, "\n");
    if (len <= GUTS_HEX_LEN + 1 || line[GUTS_HEX_LEN] != ' ') return -1;
    if (guts_id_from_hex(line, GUTS_HEX_LEN, id)) return -1;
    int t = guts_otype_parse(line + GUTS_HEX_LEN + 1, len - GUTS_HEX_LEN - 1);
    return t > 0 ? t : -1;
}

/* Every src to an id and every old target's presence, by one
 * `git cat-file --batch-check` whatever the number of commands (a process
 * per ref took 12 s for 1,496 refs). The queries go in through a memory
 * file, so the answers can be read without a writer thread. A src that is
 * a ref name or an id resolves as `git rev-parse --verify` would. */
static int resolve(remote_push_cmd *cmds, size_t n, local_ids *li, char *err)
{
    /* --buffer: one write of all answers, not one per ref (the queries
     * are all in the memory file before it starts). */
    char *argv[] = {"git", "cat-file", "--batch-check=%(objectname) %(objecttype)", "--buffer",
                    NULL};
    size_t nq = 0;
    int rc = GUTS_OK;
    for (size_t i = 0; i < n; i++)
        li[i].new_type = li[i].old_type = -1;
    int in = memfd_create("git-queries", MFD_CLOEXEC);
    FILE *q = in >= 0 ? fdopen(dup(in), "w") : NULL;
    if (!q) {
        if (in >= 0) close(in);
        return guts_git_errf(err, GUTS_EIO, "memory file for git cat-file: %s", strerror(errno));
    }
    for (size_t i = 0; i < n; i++) {
        remote_push_cmd *c = &cmds[i];
        if (c->del || c->status == REMOTE_PUSH_ERROR) continue;
        fprintf(q, "%s\n", c->src);
        nq++;
        if (needs_ancestry(c)) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&c->cur.target, hex);
            fprintf(q, "%s\n", hex);
            nq++;
        }
    }
    if (fclose(q) != 0 || lseek(in, 0, SEEK_SET) != 0) {
        close(in);
        return guts_git_errf(err, GUTS_EIO, "memory file for git cat-file: %s", strerror(errno));
    }
    if (nq == 0) {
        close(in);
        return GUTS_OK;
    }
    guts_proc p;
    rc = guts_proc_start(&p, argv, in, GUTS_PROC_PIPE, err);
    close(in);
    if (rc) return rc;
    FILE *out = fdopen(p.out, "r");
    if (!out) {
        int st;
        guts_proc_wait(&p, &st, err);
        return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    }
    p.out = -1;
    /* A ref name is at most GUTS_REFNAME_MAX bytes, plus " ambiguous". */
    char line[GUTS_REFNAME_MAX + 64];
    for (size_t i = 0; i < n && !rc; i++) {
        remote_push_cmd *c = &cmds[i];
        if (c->del || c->status == REMOTE_PUSH_ERROR) continue;
        for (int k = 0; k < 1 + needs_ancestry(c) && !rc; k++) {
            if (!fgets(line, sizeof line, out)) {
                rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch-check ended early");
                break;
            }
            if (!strchr(line, '\n')) { /* the answers would no longer match the questions */
                rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch-check: line too long");
                break;
            }
            guts_id id;
            int t = check_line(line, &id);
            if (k == 0) {
                li[i].new_type = t;
                if (t > 0) c->new_id = id;
            } else {
                li[i].old_type = t;
            }
        }
    }
    fclose(out);
    int st;
    int wrc = guts_proc_wait(&p, &st, rc ? NULL : err);
    if (!rc && wrc) rc = wrc;
    if (!rc && st)
        rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch-check failed (exit %d)", st);
    return rc;
}

/* ---- ancestry ---------------------------------------------------------------- */

/* Is the store's old target an ancestor of the new one (a fast-forward)?
 * Answered for every command at once by a walk over the local repository's
 * commits, read through one `git cat-file --batch` (the local repository
 * has the new commit's whole history, so the answer is exact). Each commit
 * is read once for all the questions; a question walks breadth-first from
 * the new commit, so a fast-forward by a few commits reads a few commits,
 * and only a refused push walks the new commit's whole history. */

/* A commit or tag read for the walk: larger is no commit git writes. */
#define ANC_OBJECT_MAX (64u << 20)

typedef struct anc_node {
    uint32_t par_off, npar; /* into anc.par */
    uint32_t stamp;         /* the last question that queued it */
} anc_node;

typedef struct anc {
    guts_proc p;
    FILE *out;
    guts_idset seen; /* commits read: value = index into nodes */
    anc_node *nodes;
    size_t nnodes, capnodes;
    guts_id *par;
    size_t npar, cappar;
    uint32_t *queue;
    size_t capq;
    char *buf;
    size_t capbuf;
    char *err;
} anc;

static int anc_grow(void **v, size_t *cap, size_t need, size_t elem, char *err)
{
    if (need <= *cap) return GUTS_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *nv = realloc(*v, c * elem);
    if (!nv) return guts_git_errf(err, GUTS_ENOMEM, "out of memory in the ancestry walk");
    *v = nv;
    *cap = c;
    return GUTS_OK;
}

/* Read one object from cat-file: *type -1 when git does not have it; the
 * content (NUL-terminated) in a->buf. */
static int anc_read(anc *a, const guts_id *id, int *type, size_t *len)
{
    char req[GUTS_HEX_LEN + 2], line[128];
    guts_id_to_hex(id, req);
    req[GUTS_HEX_LEN] = '\n';
    if (guts_write_all(a->p.in, req, GUTS_HEX_LEN + 1))
        return guts_git_errf(a->err, GUTS_EIO, "writing to git cat-file: %s", strerror(errno));
    if (!fgets(line, sizeof line, a->out))
        return guts_git_errf(a->err, GUTS_EIO, "git cat-file --batch ended early");
    if (!strchr(line, '\n'))
        return guts_git_errf(a->err, GUTS_EIO, "git cat-file --batch: header too long");
    *len = 0;
    char *sp = strchr(line, ' ');
    if (!sp || strncmp(sp + 1, "missing", 7) == 0) {
        *type = -1;
        return GUTS_OK;
    }
    char *sp2 = strchr(sp + 1, ' ');
    if (!sp2) return guts_git_errf(a->err, GUTS_EIO, "git cat-file said \"%.60s\"", line);
    *type = guts_otype_parse(sp + 1, (size_t)(sp2 - sp - 1));
    unsigned long long size = strtoull(sp2 + 1, NULL, 10);
    if (*type <= 0 || size > ANC_OBJECT_MAX)
        return guts_git_errf(a->err, GUTS_ETOOBIG, "git cat-file said \"%.60s\"", line);
    int rc = anc_grow((void **)&a->buf, &a->capbuf, (size_t)size + 2, 1, a->err);
    if (rc) return rc;
    if (fread(a->buf, 1, (size_t)size + 1, a->out) != (size_t)size + 1)
        return guts_git_errf(a->err, GUTS_EIO, "git cat-file --batch ended early");
    a->buf[size] = 0;
    *len = (size_t)size;
    return GUTS_OK;
}

/* Peel id through tags to a commit: *commit, or *ok 0 (not a commit). */
static int anc_peel(anc *a, const guts_id *id, guts_id *commit, int *ok)
{
    guts_id cur = *id;
    *ok = 0;
    for (int depth = 0; depth < 32; depth++) {
        int type;
        size_t len;
        int rc = anc_read(a, &cur, &type, &len);
        if (rc || type != GUTS_OBJ_TAG) {
            *ok = !rc && type == GUTS_OBJ_COMMIT;
            *commit = cur;
            return rc;
        }
        if (guts_tag_target((const uint8_t *)a->buf, len, &cur)) return GUTS_OK;
    }
    return GUTS_OK;
}

/* Index of commit id in nodes, reading its parents on first sight (a
 * commit git lacks, as in a shallow repository, has none). */
static int anc_node_of(anc *a, const guts_id *id, uint32_t *idx)
{
    size_t slot;
    int added, rc = guts_idset_add(&a->seen, id, &slot, &added);
    if (rc) return guts_git_errf(a->err, rc, "out of memory in the ancestry walk");
    if (!added) {
        *idx = a->seen.vals[slot];
        return GUTS_OK;
    }
    if (a->nnodes >= UINT32_MAX) return guts_git_errf(a->err, GUTS_ETOOBIG, "too many commits");
    *idx = (uint32_t)a->nnodes;
    a->seen.vals[slot] = *idx;
    if ((rc = anc_grow((void **)&a->nodes, &a->capnodes, a->nnodes + 1, sizeof *a->nodes, a->err)))
        return rc;
    anc_node *nd = &a->nodes[a->nnodes++];
    nd->par_off = (uint32_t)a->npar;
    nd->npar = 0;
    nd->stamp = 0;
    int type;
    size_t len;
    if ((rc = anc_read(a, id, &type, &len)) || type != GUTS_OBJ_COMMIT) return rc;
    /* Headers until the blank line (guts_obj_link_next). */
    size_t pos = 0;
    int kind, k;
    guts_id par;
    while ((k = guts_obj_link_next(GUTS_OBJ_COMMIT, (const uint8_t *)a->buf, len, &pos, &kind,
                                   &par)) != 0) {
        if (k != 1 || kind != GUTS_LINK_PARENT) continue;
        if ((rc = anc_grow((void **)&a->par, &a->cappar, a->npar + 1, sizeof *a->par, a->err)))
            return rc;
        a->par[a->npar++] = par;
        a->nodes[*idx].npar++;
    }
    return GUTS_OK;
}

/* Question number q (from 1): is old reachable from new? */
static int anc_ask(anc *a, uint32_t q, const guts_id *old, const guts_id *new, int *yes)
{
    *yes = guts_id_cmp(old, new) == 0;
    uint32_t start;
    int rc = *yes ? GUTS_OK : anc_node_of(a, new, &start);
    if (rc || *yes) return rc;
    size_t head = 0, tail = 0;
    if ((rc = anc_grow((void **)&a->queue, &a->capq, 1, sizeof *a->queue, a->err))) return rc;
    a->queue[tail++] = start;
    a->nodes[start].stamp = q;
    while (head < tail) {
        uint32_t at = a->queue[head++];
        for (uint32_t k = 0; k < a->nodes[at].npar; k++) {
            guts_id par = a->par[a->nodes[at].par_off + k]; /* a copy: reading may realloc */
            if (guts_id_cmp(&par, old) == 0) {
                *yes = 1;
                return GUTS_OK;
            }
            uint32_t pi;
            if ((rc = anc_node_of(a, &par, &pi))) return rc;
            if (a->nodes[pi].stamp == q) continue;
            a->nodes[pi].stamp = q;
            if ((rc = anc_grow((void **)&a->queue, &a->capq, tail + 1, sizeof *a->queue, a->err)))
                return rc;
            a->queue[tail++] = pi;
        }
    }
    return GUTS_OK;
}

/* Refuse every update in need of the ancestry answer that is not a
 * fast-forward. */
static int check_ancestry(remote_push_cmd *cmds, size_t n, const uint8_t *ask, char *err)
{
    size_t nask = 0;
    for (size_t i = 0; i < n; i++)
        nask += ask[i];
    if (nask == 0) return GUTS_OK;
    char *argv[] = {"git", "cat-file", "--batch", NULL};
    anc a = {.err = err, .seen = {.with_vals = 1}};
    int rc = guts_proc_start(&a.p, argv, GUTS_PROC_PIPE, GUTS_PROC_PIPE, err);
    if (rc) return rc;
    a.out = fdopen(a.p.out, "r");
    if (!a.out)
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    else
        a.p.out = -1;
    uint32_t q = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!ask[i]) continue;
        guts_id old, new;
        int old_ok, new_ok, yes = 0;
        if ((rc = anc_peel(&a, &cmds[i].cur.target, &old, &old_ok)) ||
            (rc = anc_peel(&a, &cmds[i].new_id, &new, &new_ok)))
            break;
        if (old_ok && new_ok && (rc = anc_ask(&a, ++q, &old, &new, &yes))) break;
        if (!yes) set_error(&cmds[i], "non-fast-forward");
    }
    if (a.out) fclose(a.out);
    int st;
    int wrc = guts_proc_wait(&a.p, &st, rc ? NULL : err);
    if (!rc && wrc) rc = wrc;
    if (!rc && st) rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch failed (exit %d)", st);
    guts_idset_free(&a.seen);
    free(a.nodes);
    free(a.par);
    free(a.queue);
    free(a.buf);
    return rc;
}

/* ---- decisions --------------------------------------------------------------- */

/* Every command's status and whether its record is written, by git's rules
 * against the store's record (in each cmd's cur). Bounded work per command:
 * the local repository is asked through two processes at most, whatever
 * the number of commands. */
static int decide_all(remote_push_cmd *cmds, size_t n, uint8_t *write, char *err)
{
    local_ids *li = calloc(n ? n : 1, sizeof *li);
    uint8_t *ask = calloc(n ? n : 1, 1);
    int rc = li && ask ? GUTS_OK : guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        remote_push_cmd *c = &cmds[i];
        if (strncmp(c->dst, "refs/", 5) != 0 || guts_refname_check(c->dst) != 0)
            set_error(c, "invalid ref name");
    }
    if (!rc) rc = resolve(cmds, n, li, err);
    for (size_t i = 0; i < n && !rc; i++) {
        remote_push_cmd *c = &cmds[i];
        if (c->status == REMOTE_PUSH_ERROR) continue;
        if (c->del) {
            c->status = REMOTE_PUSH_OK; /* deleting what is not there: done */
            write[i] = (uint8_t)c->cur_live;
            continue;
        }
        if (li[i].new_type < 0) {
            set_error(c, "src refspec does not resolve");
        } else if (c->cur_live && c->cur.symref[0]) {
            set_error(c, "cannot update a symbolic ref");
        } else if (c->cur_live && guts_id_cmp(&c->cur.target, &c->new_id) == 0) {
            c->status = REMOTE_PUSH_OK; /* up to date */
        } else if (c->cur_live && !c->force && strncmp(c->dst, "refs/tags/", 10) == 0) {
            set_error(c, "already exists");
        } else if (needs_ancestry(c) && li[i].old_type < 0) {
            /* We have never seen the old tip: someone else pushed. */
            set_error(c, "fetch first");
        } else {
            ask[i] = (uint8_t)needs_ancestry(c);
            write[i] = 1;
        }
    }
    if (!rc) rc = check_ancestry(cmds, n, ask, err);
    for (size_t i = 0; i < n && !rc; i++)
        if (cmds[i].status == REMOTE_PUSH_ERROR) write[i] = 0;
    free(li);
    free(ask);
    return rc;
}

/* ---- refs -------------------------------------------------------------------- */

/* HEAD of a repository that has none: the pushed main, else master, else
 * the first pushed branch. */
static const char *choose_head(remote_push_cmd *cmds, size_t n, const uint8_t *write)
{
    const char *first = NULL;
    for (int pass = 0; pass < 2; pass++) {
        const char *want = pass == 0 ? "refs/heads/main" : "refs/heads/master";
        for (size_t i = 0; i < n; i++) {
            if (!write[i] || cmds[i].del || cmds[i].status == REMOTE_PUSH_ERROR) continue;
            if (strcmp(cmds[i].dst, want) == 0) return want;
            if (!first && strncmp(cmds[i].dst, "refs/heads/", 11) == 0) first = cmds[i].dst;
        }
    }
    return first;
}

/* Write the accepted records in one transaction, after a second scan of
 * the store's records: a command whose record changed since the first
 * (a node applied a peer's update) fails with "fetch first". */
static int write_refs(guts_repo *r, const guts_node_id *node, ref_scan *s, uint8_t *write,
                      remote_push_stats *st, char *err)
{
    remote_push_cmd *cmds = s->cmds;
    size_t n = s->n;
    guts_ref *recs = calloc(n + 1, sizeof *recs);
    if (!recs) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    guts_repo_info info;
    int rc = guts_repo_info_get(r, &info);
    uint64_t clock = 0;
    if (rc) {
        rc = guts_git_errf(err, rc, "reading the repository clock: %s", guts_strerror(rc));
        goto out;
    }
    if ((rc = guts_ref_clock_next(info.clock, 0, &clock))) {
        rc = guts_git_errf(err, rc, "the repository clock is exhausted");
        goto out;
    }
    s->recheck = 1;
    if ((rc = scan_refs(r, s, err))) goto out;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        remote_push_cmd *c = &cmds[i];
        if (!write[i]) continue;
        if (s->stale[i]) {
            set_error(c, "fetch first"); /* changed since we decided */
            write[i] = 0;
            continue;
        }
        guts_ref *rec = &recs[m++];
        snprintf(rec->name, sizeof rec->name, "%s", c->dst);
        if (!c->del) rec->target = c->new_id;
        rec->clock = clock;
        rec->writer = *node;
    }
    int head_live = s->head_found && !guts_ref_is_tombstone(&s->head);
    const char *hb = head_live ? NULL : choose_head(cmds, n, write);
    if (hb) {
        guts_ref *rec = &recs[m++];
        strcpy(rec->name, "HEAD");
        snprintf(rec->symref, sizeof rec->symref, "%s", hb);
        rec->clock = clock;
        rec->writer = *node;
    }
    if (m && (rc = guts_repo_refs_put(r, recs, m))) {
        rc = guts_git_errf(err, rc, "writing %zu refs: %s (%s)", m, guts_strerror(rc),
                         guts_store_errmsg());
        goto out;
    }
    st->refs += m;
    for (size_t i = 0; i < n; i++)
        if (write[i]) cmds[i].status = REMOTE_PUSH_OK;
out:
    free(recs);
    return rc;
}

/* ---- entry ------------------------------------------------------------------- */

/* Commits whose trees hold the versions a push's new objects most likely
 * follow: the old targets of the refs it updates, else (a new branch) what
 * the store's HEAD points at. The store has each with its closure. */
#define PUSH_PREV_MAX 4
static size_t push_prev(guts_repo *r, const ref_scan *s, const uint8_t *write, guts_id *prev)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n && k < PUSH_PREV_MAX; i++) {
        const remote_push_cmd *c = &s->cmds[i];
        if (!write[i] || c->del || !c->cur_live || c->cur.symref[0]) continue;
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            dup |= guts_id_cmp(&prev[j], &c->cur.target) == 0;
        if (!dup) prev[k++] = c->cur.target;
    }
    if (k == 0 && s->head_found && !guts_ref_is_tombstone(&s->head)) {
        guts_ref head = s->head;
        if (head.symref[0]) {
            char name[sizeof head.symref];
            memcpy(name, head.symref, sizeof name);
            if (guts_repo_ref_get(r, name, &head) != GUTS_OK) return 0;
        }
        if (!head.symref[0] && !guts_id_is_zero(&head.target)) prev[k++] = head.target;
    }
    return k;
}

int remote_push(guts_data *d, const char *key, remote_push_cmd *cmds, size_t n, int dry_run,
                int progress, remote_push_stats *st, char *err)
{
    guts_repo *r = NULL;
    uint8_t *write = calloc(n ? n : 1, 1);
    size_t *by_dst = malloc((n ? n : 1) * sizeof *by_dst);
    ref_scan s = {.cmds = cmds,
                  .by_dst = by_dst,
                  .n = n,
                  .seen = malloc(n ? n : 1),
                  .stale = calloc(n ? n : 1, 1)};
    guts_ids tips = {0};
    memset(st, 0, sizeof *st);
    int rc = GUTS_OK;
    if (!write || !by_dst || !s.seen || !s.stale) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        by_dst[i] = i;
        cmds[i].status = REMOTE_PUSH_PENDING;
    }
    sort_cmds = cmds;
    qsort(by_dst, n, sizeof *by_dst, by_dst_cmp);
    rc = guts_repo_open(d, key, 0, &r);
    if (rc == GUTS_ENOTFOUND) {
        r = NULL;
        rc = GUTS_OK;
    } else if (rc) {
        rc = guts_git_errf(err, rc, "opening %s: %s", key, guts_strerror(rc));
        goto out;
    }
    if ((rc = scan_refs(r, &s, err)) || (rc = decide_all(cmds, n, write, err))) goto out;
    size_t nwrite = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        nwrite += write[i];
        if (write[i] && !cmds[i].del) rc = guts_ids_push(&tips, &cmds[i].new_id);
    }
    if (rc) {
        rc = guts_git_errf(err, rc, "out of memory");
        goto out;
    }
    if (dry_run || nwrite == 0) {
        for (size_t i = 0; i < n; i++)
            if (write[i]) cmds[i].status = REMOTE_PUSH_OK;
        goto out;
    }
    if (!r && (rc = guts_repo_open(d, key, GUTS_REPO_CREATE, &r))) {
        rc = guts_git_errf(err, rc, "creating %s: %s (%s)", key, guts_strerror(rc),
                         guts_store_errmsg());
        goto out;
    }
    if (tips.n) {
        guts_id prev[PUSH_PREV_MAX];
        size_t nprev = push_prev(r, &s, write, prev);
        guts_gitio_stats gs = {0};
        char gerr[GUTS_GITIO_ERR_MAX];
        rc = guts_gitio_store_reachable(r, ".", tips.v, tips.n, s.have.v, s.have.n, prev, nprev,
                                        progress, &gs, gerr);
        st->objects = gs.objects_total;
        st->added = gs.objects_added;
        st->bytes = gs.bytes;
        if (rc) {
            rc = guts_git_errf(err, rc, "%s", gerr);
            goto out;
        }
    }
    rc = write_refs(r, guts_data_node_id(d), &s, write, st, err);
out:
    if (r) guts_repo_close(r);
    free(write);
    free(by_dst);
    free(s.seen);
    free(s.stale);
    free(s.have.v);
    free(tips.v);
    return rc;
}
