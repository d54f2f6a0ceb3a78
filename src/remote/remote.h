/* remote.h - internal interfaces of git-remote-guts (not a public API).
 *
 * git-remote-guts is a git remote helper (gitremote-helpers(7)) for URLs
 * guts://OWNER/NAME: git runs it with $GIT_DIR set to the local repository
 * and talks to it over stdin/stdout. It reads and writes the local guts
 * store directly (the data dir the CLI uses); it never talks to a node: a
 * running node notices store writes by polling and announces them.
 *
 *   proc.c    spawning git plumbing with pipes (never our stdout: that is
 *             the protocol channel to git)
 *   idset.c   an open-addressing set of object ids with small per-id state
 *   fetch.c   `fetch`: a commit walk in the store that stops at what the
 *             local repository has, then one packfile streamed into
 *             `git index-pack --stdin` (or `git unpack-objects` when small),
 *             a large one encoded by one thread per CPU
 *   push.c    `push`: rules (fast-forward, tags, deletion) decided for all
 *             commands by two git processes at most, objects stored
 *             by the import's path (cli/guts_gitio.c) from what
 *             `git rev-list --objects` lists, then ref records in one write
 *   git-remote-guts.c   main(): argument and URL parsing, the command loop
 *
 * Every function that can fail returns 0 or a negative GUTS_E* code and
 * writes one line naming what failed into err (REMOTE_ERR_MAX bytes).
 */
#ifndef GUTS_REMOTE_H
#define GUTS_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli/guts_progress.h"
#include "guts/guts.h"
#include "guts/store.h"

/* Room for one error line: a ref name is at most 1 KiB, plus a git message. */
#define REMOTE_ERR_MAX 1536

/** Format one error line into err and return code. */
int remote_errf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- proc.c ---------------------------------------------------------------- */

/* Standard stream choices for remote_proc_start (any fd >= 0 is used as is). */
#define REMOTE_FD_NULL (-1) /* /dev/null */
#define REMOTE_FD_PIPE (-2) /* a new pipe to or from us */

typedef struct remote_proc {
    pid_t pid;
    int in;        /* our write end of the child's stdin pipe, or -1 */
    int out;       /* our read end of the child's stdout pipe, or -1 */
    char what[64]; /* "git index-pack", for messages */
} remote_proc;

/** Start argv (argv[0] looked up in PATH) with stdin and stdout as chosen
 * (REMOTE_FD_NULL, REMOTE_FD_PIPE or an fd, which the caller still owns and
 * closes); stderr is inherited: git's messages reach the user. Pipe ends are
 * close-on-exec, so no other child inherits them.
 * Errors: GUTS_EIO (pipe, fork). */
int remote_proc_start(remote_proc *p, char *const argv[], int in, int out, char *err);

/** Close our pipe ends and wait for the child. *status is its exit code
 * (128 + signal when killed). Errors: GUTS_EIO (waitpid). */
int remote_proc_wait(remote_proc *p, int *status, char *err);

/** Run argv with stdin from /dev/null and capture its stdout: *out is
 * malloc()ed for the caller, NUL-terminated, *len bytes (may be NULL).
 * *status is the exit code. Errors: GUTS_EIO, GUTS_ENOMEM, GUTS_ETOOBIG
 * (more than REMOTE_CAPTURE_MAX bytes). */
int remote_run(char *const argv[], char **out, size_t *len, int *status, char *err);

/* A captured output larger than this is a bug or an attack, not refs: 1 GiB
 * holds ten million ref lines. */
#define REMOTE_CAPTURE_MAX (1u << 30)

/* ---- idset.c --------------------------------------------------------------- */

/* Per-id state: the low 7 bits are the caller's flags; the set keeps one bit
 * of its own to mark used slots, so every id (the zero id too) is a key. */
typedef struct remote_idset {
    guts_id *keys;
    uint32_t *vals; /* the caller's value per id (e.g. an index) */
    uint8_t *flags;
    size_t cap; /* power of two, or 0 */
    size_t n;
} remote_idset;

#define REMOTE_IDSET_FLAGS 0x7f

/** Find id, inserting it with flags 0 and value 0 when absent. *slot is its
 * index, valid until the next insertion; *added is 1 when it was new.
 * Errors: GUTS_ENOMEM. */
int remote_idset_add(remote_idset *s, const guts_id *id, size_t *slot, int *added);
/** Index of id, or SIZE_MAX when absent. */
size_t remote_idset_find(const remote_idset *s, const guts_id *id);
void remote_idset_free(remote_idset *s);

/* A growable list of ids (wants, haves, tips); free(v) when done. */
typedef struct remote_ids {
    guts_id *v;
    size_t n, cap;
} remote_ids;

/** Append id. Errors: GUTS_ENOMEM. */
int remote_ids_push(remote_ids *a, const guts_id *id);

/* ---- fetch.c --------------------------------------------------------------- */

typedef struct remote_fetch_stats {
    uint64_t commits_walked;     /* commits read from the store by the walk */
    uint64_t objects;            /* objects written into the pack */
    uint64_t bytes;              /* their content bytes */
    uint64_t pack_bytes;         /* the pack's size */
    char keep[GUTS_HEX_LEN + 1]; /* hash of the pack index-pack kept with a .keep
                                  * file (empty: unpacked, no pack): git removes
                                  * the .keep once the refs are written */
} remote_fetch_stats;

/* git's own fetch.unpackLimit default: fewer objects are unpacked loose
 * (a pack per tiny fetch would pile up packs), more stay one pack. */
#define REMOTE_UNPACK_LIMIT 100

/** Write the objects reachable from wants but not from haves into the
 * local repository ($GIT_DIR) as one pack. haves are the local ref targets:
 * ids the store lacks are ignored. The commit walk is git's: newest commit
 * date first, stopping once everything queued is reachable from a have, so a
 * fetch reads the new history only; trees and blobs of the boundary commits
 * are known and not sent. Clock skew can only make the pack larger, never
 * incomplete.
 * @param d, key where r was opened from: a large pack is encoded by several
 *        threads, each reading through a handle of its own (d NULL: one)
 * @param zlevel zlib level of pack entries (0-9)
 * @param progress nonzero: a progress line on stderr
 * @param[out] connected 1 when git itself verified the result connected: no
 *        haves (a clone) and `git index-pack --check-self-contained-and-
 *        connected` accepted the pack; 0 otherwise
 * Errors: GUTS_ENOTFOUND (a want or an object it needs is not stored),
 * GUTS_ECORRUPT (a stored object fails its hash or does not parse),
 * GUTS_EIO (git index-pack failed), GUTS_ETOOBIG, GUTS_ENOMEM, store errors. */
int remote_fetch(guts_repo *r, guts_data *d, const char *key, const guts_id *wants, size_t nwants, const guts_id *haves,
                 size_t nhaves, int zlevel, int progress, int *connected, remote_fetch_stats *st,
                 char *err);

/* What a git smart HTTP fetch asks for (the node's upload-pack, net/git.c). */
typedef struct remote_serve_req {
    const guts_id *wants, *haves, *tags; /* tags: annotated tag ids the refs
                                          * name, for include-tag (none: 0) */
    size_t nwants, nhaves, ntags;
    int thin;            /* deltas may name bases the client has */
    uint64_t blob_limit; /* filter blob:limit=N (0: blob:none); UINT64_MAX: none */
    int zlevel;          /* zlib level of pack entries (0-9) */
    /* deepen N (a shallow clone or fetch): commits N deep from the wants
     * at most; 0: the whole history. client_shallow: the client's own
     * shallow commits ("shallow" lines). */
    uint32_t depth;
    const guts_id *client_shallow;
    size_t nclient_shallow;
    /* With depth, called once the objects are chosen and before the pack:
     * the new boundary commits (shallow) and the client's shallow commits
     * whose parents now go (unshallow). Its error ends the fetch. */
    int (*on_shallow)(void *ctx, const guts_id *shallow, size_t nshallow,
                      const guts_id *unshallow, size_t nunshallow);
    /* where the pack's bytes go, in order (guts_packw.sink) */
    int (*sink)(void *ctx, const void *buf, size_t n);
    void *sink_ctx;
} remote_serve_req;

/** Select what q's wants reach and its haves do not (remote_fetch's walk)
 * and write it as one pack to q->sink, whole objects and REF_DELTAs against
 * bases in the pack (or, thin, the client's). Never holds the pack: each
 * object is read, hashed and written in turn.
 * Errors: as remote_fetch; a sink's error is returned as is (err says
 * "writing the pack"). */
int remote_fetch_serve(guts_repo *r, const remote_serve_req *q, remote_fetch_stats *st,
                       char *err);

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
