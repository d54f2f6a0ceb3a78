/* push.c - the helper's `push`: objects from the local repository into the
 * store, then ref records.
 *
 * Order: decide, then copy, then publish. Each command is checked against
 * the store's current record first (git's rules: a tag that exists is not
 * moved, a branch only fast-forwards, unless forced; the fast-forward test
 * is `git merge-base --is-ancestor` in the local repository, which has the
 * new commit's whole history, so it answers exactly: the old tip is an
 * ancestor only if it is there). Only then are objects copied, and only
 * those the accepted updates need: `git rev-list --objects` from the new
 * tips, excluding everything the store's refs already reach (a store ref is
 * applied only once its closure is stored). That is the import's object
 * path (guts_gitio_store_reachable): rev-list piped into one
 * `cat-file --batch-check`, then the objects the store lacks read by one
 * `cat-file --batch` with each git delta base first (the store compresses
 * against a base only once it is stored), in batches a second thread
 * compresses and commits while the next is read (a crash between batches
 * leaves only unreferenced objects). Last, every accepted ref record is
 * written in one transaction, after re-reading each record: one that
 * changed meanwhile (a node applied a peer's update) fails that command
 * with "fetch first".
 *
 * A running node polls the environment's counters and announces the new
 * objects and refs: the helper never talks to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/guts_gitio.h"
#include "core/refmerge.h"
#include "remote/remote.h"

/* ---- decisions --------------------------------------------------------------- */

static void set_error(remote_push_cmd *c, const char *msg)
{
    c->status = REMOTE_PUSH_ERROR;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

/* src as the local repository resolves it. */
static int resolve_src(remote_push_cmd *c, char *err)
{
    char *argv[] = {"git", "rev-parse", "--verify", "-q", c->src, NULL};
    char *out = NULL;
    int status, rc = remote_run(argv, &out, NULL, &status, err);
    if (rc) return rc;
    size_t len = strlen(out);
    if (len && out[len - 1] == '\n') out[--len] = 0;
    if (status || guts_id_from_hex(out, len, &c->new_id))
        set_error(c, "src refspec does not resolve");
    free(out);
    return GUTS_OK;
}

/* Exit status of a git command run for its answer only. */
static int git_status(char *const argv[], int *status, char *err)
{
    char *out = NULL;
    int rc = remote_run(argv, &out, NULL, status, err);
    free(out);
    return rc;
}

/* Read the store's record of dst into c->cur (r may be NULL: no repository). */
static int read_cur(guts_repo *r, const char *dst, guts_ref *cur, int *live, char *err)
{
    memset(cur, 0, sizeof *cur);
    *live = 0;
    if (!r) return GUTS_OK;
    int rc = guts_repo_ref_get(r, dst, cur);
    if (rc == GUTS_ENOTFOUND) {
        memset(cur, 0, sizeof *cur);
        return GUTS_OK;
    }
    if (rc) return remote_errf(err, rc, "reading ref %s: %s", dst, guts_strerror(rc));
    *live = !guts_ref_is_tombstone(cur);
    return GUTS_OK;
}

static int decide(guts_repo *r, remote_push_cmd *c, int *write, char *err)
{
    *write = 0;
    if (strncmp(c->dst, "refs/", 5) != 0 || guts_refname_check(c->dst) != 0) {
        set_error(c, "invalid ref name");
        return GUTS_OK;
    }
    int rc = read_cur(r, c->dst, &c->cur, &c->cur_live, err);
    if (rc) return rc;
    if (c->del) {
        c->status = REMOTE_PUSH_OK; /* deleting what is not there: done */
        *write = c->cur_live;
        return GUTS_OK;
    }
    if ((rc = resolve_src(c, err)) || c->status == REMOTE_PUSH_ERROR) return rc;
    if (c->cur_live && c->cur.symref[0]) {
        set_error(c, "cannot update a symbolic ref");
        return GUTS_OK;
    }
    if (c->cur_live && guts_id_cmp(&c->cur.target, &c->new_id) == 0) {
        c->status = REMOTE_PUSH_OK; /* up to date */
        return GUTS_OK;
    }
    if (c->cur_live && !c->force) {
        if (strncmp(c->dst, "refs/tags/", 10) == 0) {
            set_error(c, "already exists");
            return GUTS_OK;
        }
        char old[GUTS_HEX_LEN + 1], new[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&c->cur.target, old);
        guts_id_to_hex(&c->new_id, new);
        char *anc[] = {"git", "merge-base", "--is-ancestor", old, new, NULL};
        char *has[] = {"git", "cat-file", "-e", old, NULL};
        int status;
        if ((rc = git_status(anc, &status, err))) return rc;
        if (status != 0) {
            /* Not an ancestor: "fetch first" when we have never seen the
             * old tip (someone else pushed), as git says it. */
            int hs;
            if ((rc = git_status(has, &hs, err))) return rc;
            set_error(c, hs == 0 ? "non-fast-forward" : "fetch first");
            return GUTS_OK;
        }
    }
    *write = 1;
    return GUTS_OK;
}

/* ---- refs -------------------------------------------------------------------- */

static int collect_target(const guts_ref *ref, void *ctx)
{
    if (ref->symref[0] || guts_id_is_zero(&ref->target)) return 0;
    return remote_ids_push(ctx, &ref->target);
}

static int same_record(const guts_ref *a, int alive, const guts_ref *b, int blive)
{
    if (alive != blive) return 0;
    if (!alive && !blive) return a->clock == b->clock; /* both absent or both tombstones */
    return guts_ref_cmp(a, b) == 0;
}

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

static int write_refs(guts_repo *r, const guts_node_id *node, remote_push_cmd *cmds, size_t n,
                      uint8_t *write, remote_push_stats *st, char *err)
{
    guts_ref *recs = calloc(n + 1, sizeof *recs);
    if (!recs) return remote_errf(err, GUTS_ENOMEM, "out of memory");
    guts_repo_info info;
    int rc = guts_repo_info_get(r, &info);
    uint64_t clock = 0;
    if (rc) {
        rc = remote_errf(err, rc, "reading the repository clock: %s", guts_strerror(rc));
        goto out;
    }
    if ((rc = guts_ref_clock_next(info.clock, 0, &clock))) {
        rc = remote_errf(err, rc, "the repository clock is exhausted");
        goto out;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        remote_push_cmd *c = &cmds[i];
        if (!write[i]) continue;
        guts_ref now;
        int live;
        if ((rc = read_cur(r, c->dst, &now, &live, err))) goto out;
        if (!same_record(&now, live, &c->cur, c->cur_live)) {
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
    guts_ref head;
    int head_live = 0;
    if ((rc = read_cur(r, "HEAD", &head, &head_live, err))) goto out;
    const char *hb = head_live ? NULL : choose_head(cmds, n, write);
    if (hb) {
        guts_ref *rec = &recs[m++];
        strcpy(rec->name, "HEAD");
        snprintf(rec->symref, sizeof rec->symref, "%s", hb);
        rec->clock = clock;
        rec->writer = *node;
    }
    if (m && (rc = guts_repo_refs_put(r, recs, m))) {
        rc = remote_errf(err, rc, "writing %zu refs: %s (%s)", m, guts_strerror(rc),
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
static size_t push_prev(guts_repo *r, const remote_push_cmd *cmds, size_t n,
                        const uint8_t *write, guts_id *prev)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < PUSH_PREV_MAX; i++) {
        const guts_ref *c = &cmds[i].cur;
        if (!write[i] || cmds[i].del || !cmds[i].cur_live || c->symref[0]) continue;
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            dup |= guts_id_cmp(&prev[j], &c->target) == 0;
        if (!dup) prev[k++] = c->target;
    }
    guts_ref head;
    if (k == 0 && guts_repo_ref_get(r, "HEAD", &head) == GUTS_OK && !guts_ref_is_tombstone(&head)) {
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
    remote_ids tips = {0}, have = {0};
    memset(st, 0, sizeof *st);
    if (!write) return remote_errf(err, GUTS_ENOMEM, "out of memory");
    int rc = guts_repo_open(d, key, 0, &r);
    if (rc == GUTS_ENOTFOUND) {
        r = NULL;
        rc = GUTS_OK;
    } else if (rc) {
        rc = remote_errf(err, rc, "opening %s: %s", key, guts_strerror(rc));
        goto out;
    }
    size_t nwrite = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int w = 0;
        cmds[i].status = REMOTE_PUSH_PENDING;
        rc = decide(r, &cmds[i], &w, err);
        write[i] = (uint8_t)w;
        nwrite += (size_t)w;
        if (!rc && w && !cmds[i].del) rc = remote_ids_push(&tips, &cmds[i].new_id);
    }
    if (rc) goto out;
    if (dry_run || nwrite == 0) {
        for (size_t i = 0; i < n; i++)
            if (write[i]) cmds[i].status = REMOTE_PUSH_OK;
        goto out;
    }
    if (!r && (rc = guts_repo_open(d, key, GUTS_REPO_CREATE, &r))) {
        rc = remote_errf(err, rc, "creating %s: %s (%s)", key, guts_strerror(rc),
                         guts_store_errmsg());
        goto out;
    }
    if (tips.n) {
        if ((rc = guts_repo_refs(r, 0, collect_target, &have))) {
            rc = remote_errf(err, rc, "reading refs of %s: %s", key, guts_strerror(rc));
            goto out;
        }
        guts_id prev[PUSH_PREV_MAX];
        size_t nprev = push_prev(r, cmds, n, write, prev);
        guts_gitio_stats gs;
        char gerr[GUTS_GITIO_ERR_MAX];
        rc = guts_gitio_store_reachable(r, ".", tips.v, tips.n, have.v, have.n, prev, nprev,
                                        progress, &gs, gerr);
        st->objects = gs.objects_total;
        st->added = gs.objects_added;
        st->bytes = gs.bytes;
        if (rc) {
            rc = remote_errf(err, rc, "%s", gerr);
            goto out;
        }
    }
    rc = write_refs(r, guts_data_node_id(d), cmds, n, write, st, err);
out:
    if (r) guts_repo_close(r);
    free(write);
    free(tips.v);
    free(have.v);
    return rc;
}
