/* gitio_merge.c - a merge commit of several commits made by git
 * (`git merge-tree`, `git commit-tree` in a scratch repository), for
 * `guts resolve --merge`.
 */
#include "gitio_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The id on the first line of a git command's output. */
static int first_line_id(const char *out, guts_id *id)
{
    return guts_id_from_hex(out, strcspn(out, "\n"), id);
}

/* The conflicted paths merge-tree --name-only lists after the tree id, up
 * to an empty line, as "a, b, c" cut to fit list (size n). */
static void conflicted_paths(const char *out, char *list, size_t n)
{
    const char *p = strchr(out, '\n');
    size_t len = 0;
    list[0] = 0;
    while (p && p[1] && p[1] != '\n' && len + 8 < n) {
        const char *s = p + 1;
        p = strchr(s, '\n');
        size_t l = p ? (size_t)(p - s) : strlen(s);
        int k = snprintf(list + len, n - len, "%s%.*s", len ? ", " : "", (int)l, s);
        if (k < 0 || (size_t)k >= n - len) {
            snprintf(list + (n > 5 ? n - 5 : 0), n > 5 ? 5 : n, "...");
            return;
        }
        len += (size_t)k;
    }
}

/* One two-parent merge of theirs into ours in the git repository at dir:
 * the tree from merge-tree, the commit from commit-tree. */
static int merge_one(const char *dir, const guts_id *ours, const guts_id *theirs, const char *msg,
                     int anon, guts_id *out, char *err)
{
    char a[GUTS_HEX_LEN + 1], b[GUTS_HEX_LEN + 1], t[GUTS_HEX_LEN + 1], *o = NULL;
    size_t ol;
    int code;
    guts_id tree;
    guts_id_to_hex(ours, a);
    guts_id_to_hex(theirs, b);
    char *mt[] = {"git", "-C", (char *)dir, "merge-tree", "--write-tree", "--name-only",
                  "--no-messages", a, b, NULL};
    int rc = gitio_run_capture_code("git merge-tree", mt, &o, &ol, &code, err);
    if (rc) return rc;
    if (code == 1) {
        char paths[300];
        conflicted_paths(o, paths, sizeof paths);
        free(o);
        return guts_git_errf(err, GUTS_ECONFLICT, "merging %.12s into %.12s conflicts in %s", b, a,
                    paths[0] ? paths : "some paths");
    }
    rc = code ? guts_git_errf(err, GUTS_EIO, "git merge-tree failed (exit %d)", code)
         : first_line_id(o, &tree)
             ? guts_git_errf(err, GUTS_EIO, "git merge-tree printed no tree id: \"%.60s\"", o)
             : GUTS_OK;
    free(o);
    if (rc) return rc;
    guts_id_to_hex(&tree, t);
    /* Without a git identity of the user's, the commit names guts. */
    char *ct_named[] = {"git", "-C", (char *)dir, "commit-tree", t, "-p", a, "-p", b, "-m",
                        (char *)msg, NULL};
    char *ct_anon[] = {"git", "-C", (char *)dir, "-c", "user.name=guts resolve", "-c",
                       "user.email=guts@localhost", "commit-tree", t, "-p", a, "-p", b, "-m",
                       (char *)msg, NULL};
    rc = gitio_run_capture("git commit-tree", anon ? ct_anon : ct_named, &o, &ol, err);
    if (rc) return rc;
    if (first_line_id(o, out))
        rc = guts_git_errf(err, GUTS_EIO, "git commit-tree printed no commit id: \"%.60s\"", o);
    free(o);
    return rc;
}

int guts_gitio_merge(guts_repo *r, const guts_id *ours, const guts_id *theirs, size_t ntheirs,
                     const char *msg, guts_id *out, char *err)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    err[0] = 0;
    if (ntheirs == 0 || ntheirs > GUTS_GITIO_MERGE_MAX)
        return guts_git_errf(err, GUTS_EINVAL, "%zu commits to merge: 1 to %d", ntheirs,
                    GUTS_GITIO_MERGE_MAX);
    int n = snprintf(dir, sizeof dir, "%s/guts-merge.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof dir) return guts_git_errf(err, GUTS_ETOOBIG, "TMPDIR is too long");
    if (!mkdtemp(dir)) return guts_git_errf(err, GUTS_EIO, "cannot make %s: %s", dir, strerror(errno));
    guts_gitio_stats st = {0};
    guts_progress pg;
    guts_progress_start(&pg, "merge", 0);
    /* git merges only what a git repository holds: the whole store goes
     * into a temporary one (an export at level 0, the fastest). */
    int rc = gitio_export_into(r, dir, 0, &pg, &st, err);
    int anon = 0, code;
    char *o = NULL;
    size_t ol;
    char *var[] = {"git", "-C", dir, "var", "GIT_COMMITTER_IDENT", NULL};
    if (!rc && !(rc = gitio_run_capture_code("git var", var, &o, &ol, &code, err))) {
        anon = code != 0;
        free(o);
    }
    guts_id cur = *ours;
    for (size_t i = 0; !rc && i < ntheirs; i++)
        rc = merge_one(dir, &cur, &theirs[i], msg, anon, &cur, err);
    if (!rc) {
        guts_id excl[GUTS_GITIO_MERGE_MAX + 1];
        excl[0] = *ours;
        memcpy(excl + 1, theirs, ntheirs * sizeof *theirs);
        rc = guts_gitio_store_reachable(r, dir, &cur, 1, excl, ntheirs + 1, ours, 1, 0, &st, err);
    }
    gitio_export_unmake(dir, 0);
    if (!rc) *out = cur;
    return rc;
}
