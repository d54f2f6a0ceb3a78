/* gitio.c - import from and export to git repositories.
 *
 * Import lists every object with one `cat-file --batch-all-objects
 * --batch-check` (type, size and git's own delta base; path hints from
 * `rev-list --objects --all` when git left many objects whole), reads the
 * contents of the objects the store lacks from the repository's packs
 * (packread.c) and the rest from one `cat-file --batch`. The ids are ordered so a delta base
 * comes before every object built on it (depth-first from each chain's root,
 * roots in pack order), because the store compresses an object against its
 * base only when the base is already stored or earlier in the same batch. A
 * writer thread feeds ids to cat-file while this thread reads the contents, so
 * neither side can block the other on a full pipe. Objects go to the store in
 * batches bounded both in count and in bytes, which bounds memory too: only
 * the id list (about 70 bytes an object) is held for the whole run.
 *
 * The pieces, a file each: running git and reading its pipes (gitio_run.c),
 * the object list and its order (gitio_list.c), streaming the contents into
 * the store (gitio_stream.c), the refs (gitio_refs.c), export
 * (gitio_export.c) and merge commits (gitio_merge.c); gitio_int.h is what
 * they share. This file is import's entry points.
 */
#include "gitio.h"
#include "gitio_int.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* The object half of an import or a push: list (everything, or what tips
 * reach and exclude does not), skip what is stored, read the rest in an
 * order that puts each delta base first, store. */
static int store_objects(guts_repo *r, const char *gitdir, const guts_id *tips, size_t ntips,
                         const guts_id *exclude, size_t nexclude, const guts_id *prev,
                         size_t nprev, guts_progress *pg, guts_gitio_stats *st, char *err)
{
    ilist L = {0};
    pfirst firsts = {0};
    uint32_t *order = NULL, *perm = NULL;
    size_t nneed = 0;
    proc names = {.pid = 0};
    int rc = gitio_list_objects(gitdir, tips, ntips, exclude, nexclude, &L, nprev ? &firsts : NULL,
                                err);
    if (!rc && firsts.n) gitio_prev_hints(gitdir, &L, &firsts, prev, nprev);
    gitio_pfirst_free(&firsts);
    if (!rc && !(perm = gitio_list_index(&L)))
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    if (!rc && !ntips && gitio_hints_pay(&L)) rc = gitio_import_hints_start(gitdir, &names, err);
    if (names.pid > 0) {
        if (rc) kill(names.pid, SIGTERM);
        int hrc = rc ? gitio_proc_wait(&names, NULL) : gitio_import_hints(&L, perm, &names, err);
        if (!rc) rc = hrc;
    }
    if (!rc) rc = gitio_plan_import(r, &L, perm, &order, &nneed, err);
    free(perm);
    st->objects_total = L.n;
    if (!rc) rc = gitio_stream_objects(r, gitdir, &L, order, nneed, pg, st, err);
    if (!rc && nneed) guts_progress_show(pg, nneed, nneed, st->bytes, 1);
    free(order);
    free(L.o);
    return rc;
}

int guts_gitio_check_repo(const char *gitdir, char *err)
{
    char *argv[] = {"git", "-C", (char *)gitdir, "rev-parse", "--git-dir", NULL};
    char *buf;
    size_t len;
    err[0] = 0;
    if (gitio_run_capture("git rev-parse", argv, &buf, &len, err) != GUTS_OK) {
        if (strncmp(err, "cannot start", 12) == 0) return GUTS_EIO; /* no git at all */
        return guts_git_errf(err, GUTS_EINVAL, "\"%s\" is not a git repository", gitdir);
    }
    free(buf);
    return GUTS_OK;
}

int guts_gitio_import(guts_repo *r, const guts_node_id *node, const char *gitdir,
                      const guts_gitio_import_opts *opts, guts_gitio_stats *st, char *err)
{
    guts_gitio_stats local;
    guts_gitio_import_opts none = {0};
    guts_progress pg;
    char path[PATH_MAX];
    uint8_t src[GUTS_IMPORT_SRC_LEN];
    if (!opts) opts = &none;
    guts_progress_start(&pg, "import", opts->progress);
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    int rc = gitio_git_source(gitdir, path, src, err); /* also: is it a repository? */
    if (rc) return rc;
    rc = store_objects(r, gitdir, NULL, 0, NULL, 0, NULL, 0, &pg, st, err);
    /* Refs only once every object they could point at is stored. */
    if (!rc) rc = gitio_import_refs(r, node, gitdir, path, src, opts, st, err);
    return rc;
}

int guts_gitio_store_reachable(guts_repo *r, const char *gitdir, const guts_id *tips, size_t ntips,
                               const guts_id *exclude, size_t nexclude, const guts_id *prev,
                               size_t nprev, int progress_on, guts_gitio_stats *st, char *err)
{
    guts_progress pg;
    guts_progress_start(&pg, "guts: storing objects", progress_on);
    memset(st, 0, sizeof *st);
    if (!ntips) return GUTS_OK;
    return store_objects(r, gitdir, tips, ntips, exclude, nexclude, prev, nprev, &pg, st, err);
}
