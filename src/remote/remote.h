/* remote.h - internal interfaces of git-remote-guts (not a public API).
 *
 * git-remote-guts is a git remote helper (gitremote-helpers(7)) for URLs
 * guts://OWNER/NAME: git runs it with $GIT_DIR set to the local repository
 * and talks to it over stdin/stdout. It reads and writes the local guts
 * store directly (the data dir the CLI uses); it never talks to a node: a
 * running node notices store writes by polling and announces them.
 *
 *   push.c    `push`: rules (fast-forward, tags, deletion) decided for all
 *             commands by two git processes at most, objects stored
 *             by the import's path (git/gitio.c) from what
 *             `git rev-list --objects` lists, then ref records in one write
 *   git-remote-guts.c   main(): argument and URL parsing, the command loop
 *
 * `fetch` (a commit walk in the store that stops at what the local
 * repository has, then one pack streamed into `git index-pack`), the
 * process spawner and the id sets are the git library's (src/git/).
 *
 * Every function that can fail returns 0 or a negative GUTS_E* code and
 * writes one line naming what failed into err (GUTS_GIT_ERR_MAX bytes).
 */
#ifndef GUTS_REMOTE_H
#define GUTS_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fetch.h"
#include "guts/idset.h"
#include "proc.h"
#include "progress.h"
#include "guts/guts.h"
#include "guts/store.h"

/* ---- push.c ---------------------------------------------------------------- */

/* Status of one push command after remote_push. */
enum {
    REMOTE_PUSH_PENDING = 0,
    REMOTE_PUSH_OK,
    REMOTE_PUSH_ERROR, /* msg says why: "non-fast-forward", "already exists", ... */
};

typedef struct remote_push_cmd {
    int force;                      /* '+' prefix */
    int del;                        /* empty src: delete dst */
    char src[GUTS_REFNAME_MAX + 1]; /* as git sent it (a local ref or an id) */
    char dst[GUTS_REFNAME_MAX + 1]; /* the ref to update in the store */
    guts_id new_id;                 /* src resolved */
    guts_ref cur;                   /* the store's record when checked */
    int cur_live;                   /* cur names a live ref */
    int status;                     /* REMOTE_PUSH_* */
    char msg[128];                  /* why, for REMOTE_PUSH_ERROR */
} remote_push_cmd;

typedef struct remote_push_stats {
    uint64_t objects; /* objects the new tips reach (git rev-list) */
    uint64_t added;   /* of which new to the store */
    uint64_t bytes;   /* content bytes read from git */
    uint64_t refs;    /* ref records written (HEAD included) */
} remote_push_stats;

/** Apply git's push commands to the repository key of d: resolve each src in
 * $GIT_DIR, refuse by git's rules (a non-fast-forward or an existing tag is
 * refused unless forced; a deletion writes a tombstone), store the objects
 * the accepted updates need that the store's refs do not already reach,
 * then write every accepted ref record in one transaction, stamped with the
 * repository's clock + 1 and this node's id. A repository that does not
 * exist is created when something is accepted; its HEAD then points at the
 * pushed main, master or first branch. Each cmd gets its status.
 * @param dry_run nonzero: decide statuses, write nothing
 * Errors (the whole push failed; statuses are meaningless): GUTS_EIO (git
 * failed), GUTS_EHASH, GUTS_ENOMEM, store errors. */
int remote_push(guts_data *d, const char *key, remote_push_cmd *cmds, size_t n, int dry_run,
                int progress, remote_push_stats *st, char *err);

#endif
