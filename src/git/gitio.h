/* gitio.h - the bridge between a git repository and a guts repository.
 *
 * Import reads a git repository through git's own plumbing (one
 * `git cat-file --batch-all-objects --batch-check` to list, one
 * `git cat-file --batch` to read), so every repository format git understands
 * (loose, packed, alternates, multi-pack index) works without reimplementing
 * it. Export writes one packfile (git deltas where the store has deltas)
 * with its index, packed-refs and HEAD into a fresh `git init --bare`. No git process runs per object.
 *
 * Errors come back as a GUTS_E* code plus one line of text in the caller's
 * buffer naming what was at fault (an id, a ref, a path, a git command).
 */
#ifndef GUTS_GIT_GITIO_H
#define GUTS_GIT_GITIO_H

#include <stdint.h>

#include "proc.h"
#include "guts/store.h"

/* Room for one error line (guts_git_errf's). */
#define GUTS_GITIO_ERR_MAX GUTS_GIT_ERR_MAX

typedef struct guts_gitio_stats {
    uint64_t objects_total; /* objects in the git repository (import) or store (export) */
    uint64_t objects_added; /* objects newly stored (import) or written (export) */
    uint64_t bytes;         /* content bytes read from git or from the store */
    uint64_t refs_total;    /* refs in git (import) or written (export), HEAD included */
    uint64_t refs_changed;  /* ref records written, HEAD included (import) */
    uint64_t refs_deleted;  /* refs turned into tombstones (import) */
    uint64_t refs_kept;     /* refs import left as they were against git's (import) */
    uint64_t pack_bytes;    /* size of the packfile written (export) */
} guts_gitio_stats;

/** GUTS_OK when git recognises gitdir as a repository (bare or not), else
 * GUTS_EINVAL with err naming it. Lets a caller check before creating
 * anything in the store. */
int guts_gitio_check_repo(const char *gitdir, char *err);

/* Import flags, as git push's and git fetch's options of the same names. */
#define GUTS_GITIO_FORCE 0x1 /* rewind refs, move tags and HEAD, restore deleted refs */
#define GUTS_GITIO_PRUNE 0x2 /* delete refs the git directory lacks, whoever wrote them */

typedef struct guts_gitio_import_opts {
    unsigned flags; /* GUTS_GITIO_FORCE, GUTS_GITIO_PRUNE */
    int progress;   /* non-zero: a progress line is redrawn on stderr */
    /* Called for every ref the import leaves as it is though git's differs
     * (may be NULL): its name and why, one line of text without a period. */
    void (*kept)(void *ctx, const char *name, const char *why);
    void *ctx;
} guts_gitio_import_opts;

/** Import every object, and the refs and HEAD, of the git repository at
 * gitdir (bare or not) into r. Objects already stored are skipped. Refs
 * follow git's rules (docs/operations.md, "import's ref rules"): new refs
 * are added, fast-forwards applied; a ref someone else changed since this
 * directory's last import (or any ref, before its first) is not rewound,
 * deleted or, for a tag or HEAD, moved unless opts->flags says so, and is
 * reported through opts->kept. Refs nobody changed since the last import
 * from this directory follow it, deletions included. Records written are
 * stamped with the next repository clock (guts_ref_clock_next) and writer =
 * node; what was written or found equal is remembered as this directory's
 * import marks (guts_repo_import_put), keyed by its canonical path.
 * @param opts flags, progress and the kept callback (may be NULL: none)
 * @param[out] st counters (may be NULL)
 * @param[out] err one line describing a failure (GUTS_GITIO_ERR_MAX bytes)
 * Errors: GUTS_EINVAL (not a git repository, a bad ref name, a SHA-256
 * repository), GUTS_EIO (git failed), GUTS_EHASH (git returned an object that
 * does not hash to its id), GUTS_ETOOBIG (too many objects, or the ref clock
 * is at UINT64_MAX: no ref written), GUTS_ENOMEM, and store errors. */
int guts_gitio_import(guts_repo *r, const guts_node_id *node, const char *gitdir,
                      const guts_gitio_import_opts *opts, guts_gitio_stats *st, char *err);

/** Store the objects of the git repository at gitdir that tips reach and
 * exclude does not (`git rev-list --objects TIPS ^EXCLUDE`; an exclude git
 * does not have is ignored), as import stores objects: what r has is
 * skipped, delta bases go first, batches are committed in groups of
 * GUTS_GROUP_BYTES of records (guts_repo_group) and at the end. No
 * refs are written. gitdir "." means the repository of $GIT_DIR (what a
 * remote helper gets). An object git keeps whole is compressed against the
 * previous version of its path: listed before it, else at the same path in
 * the first of prev that has one (commits the store has: the pushed refs'
 * old targets).
 * @param progress when non-zero, a progress line is redrawn on stderr
 * @param[out] st objects_total (listed), objects_added, bytes
 * @param[out] err one line describing a failure (GUTS_GITIO_ERR_MAX bytes)
 * Errors: as guts_gitio_import. */
int guts_gitio_store_reachable(guts_repo *r, const char *gitdir, const guts_id *tips, size_t ntips,
                               const guts_id *exclude, size_t nexclude, const guts_id *prev,
                               size_t nprev, int progress, guts_gitio_stats *st, char *err);

/* Default zlib level of exported objects. Measured on zlib's history
 * (docs/performance.md): level 0 exports in 0.27 s (a 17.9 MB pack), faster
 * than `git clone --mirror --no-local`, level 1 in 0.48 s (8.1 MB). */
#define GUTS_GITIO_ZLEVEL_DEFAULT 0

/** Export every object and every live ref of r into a new bare git repository
 * at outdir (which must not exist or be empty). HEAD is set as stored.
 * @param level zlib level of the pack entries, 0 (fastest) to 9 (smallest)
 * @param progress when non-zero, a progress line is redrawn on stderr
 * @param[out] st counters (may be NULL)
 * @param[out] err one line describing a failure (GUTS_GITIO_ERR_MAX bytes)
 * Errors: GUTS_EINVAL (level), GUTS_EEXIST (outdir not empty), GUTS_EIO (git
 * init or a write failed), GUTS_ECORRUPT (a stored object does not hash to
 * its id), GUTS_ETOOBIG (more objects than a pack can hold), store errors. */
int guts_gitio_export(guts_repo *r, const char *outdir, int level, int progress,
                      guts_gitio_stats *st, char *err);

/* Most commits guts_gitio_merge merges into one: more divergent copies of
 * one ref than that are settled with --take, or in a clone. */
#define GUTS_GITIO_MERGE_MAX 64

/** Merge the commits theirs[0..ntheirs) into ours with git, one two-parent
 * merge commit each in turn (`git merge-tree --write-tree`, then `git
 * commit-tree`, with the user's git identity or else "guts resolve"), and
 * store the new objects in r. The work happens in a temporary bare
 * repository under $TMPDIR (else /tmp) holding an export of r, removed
 * after. No ref is written.
 * @param msg the merge commits' message
 * @param[out] out the last merge commit
 * @param[out] err one line describing a failure (GUTS_GITIO_ERR_MAX bytes)
 * Errors: GUTS_ECONFLICT (the merge has conflicts: err names the paths),
 * GUTS_EINVAL (ntheirs), GUTS_EIO (git failed, e.g. unrelated histories),
 * and those of guts_gitio_export and guts_gitio_store_reachable. */
int guts_gitio_merge(guts_repo *r, const guts_id *ours, const guts_id *theirs, size_t ntheirs,
                     const char *msg, guts_id *out, char *err);

/** All stored ids of r in a good order to read them: insertion order when
 * the insertion log covers every object (delta bases then the objects
 * compressed against them, so the store's base cache hits), else id order.
 * @param[out] ids malloc'ed array for the caller to free()
 * @param[out] n number of ids
 * Errors: GUTS_ENOMEM, store errors. */
int guts_gitio_read_order(guts_repo *r, guts_id **ids, size_t *n);

#endif
