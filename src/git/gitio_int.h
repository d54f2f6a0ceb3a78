/* gitio_int.h - what the files of the git bridge's import and export
 * (gitio*.c) share: limits, running git, buffered pipe reads, the import's
 * object list and ref rule, the export's index entries. Private to
 * src/git/ (and tests/unit/test_gitio.c, which tests the pure pieces).
 */
#ifndef GUTS_GITIO_INT_H
#define GUTS_GITIO_INT_H

#include <stddef.h>
#include <stdint.h>

#include "gitio.h"
#include "proc.h"
#include "progress.h"

/* Objects per guts_repo_put: thousands per write transaction amortise the
 * commit's fsync while keeping a failed batch cheap to retry. */
#define GITIO_BATCH_OBJECTS 4096
/* Content bytes per guts_repo_put: bounds the memory held between reading
 * from git and committing (two batches are in flight; a single bigger object
 * is a batch of its own). 16 MiB imported zlib as fast as 64 MiB with
 * fewer fresh pages to fault in, and a commit per 16 MiB costs little. */
#define GITIO_BATCH_BYTES (16u << 20)
/* Alignment of a batch arena: a huge page on x86-64 and arm64 (4 KiB base). */
#define GITIO_ARENA_ALIGN ((size_t)2 << 20)
/* Bytes of a large object read from git per store write (guts_repo_stage_write):
 * four pieces, so memory stays a few MiB whatever the object's size. */
#define GITIO_LARGE_STEP (4u << 20)
/* Indexes into the object list are 32-bit, like a packfile's object count. */
#define GITIO_OBJECTS_MAX 0xfffffff0u
/* Ref records per guts_repo_refs_put: a guts_ref is about 2 KiB, so this
 * bounds the memory of a huge ref set to 8 MiB per transaction. */
#define GITIO_REFS_BATCH 4096
/* Output of a small git command (for-each-ref, rev-parse) held in memory:
 * a million refs at about 100 bytes a line. */
#define GITIO_CAPTURE_MAX (128u << 20)
/* A batch-check or batch header line: 40 hex, a type, a size, 40 hex. */
#define GITIO_LINE_MAX 256
/* A listing line with its path (push): a longer path is cut there, which
 * only weakens its delta hint. */
#define GITIO_PATH_LINE_MAX 4352
/* Buffer size for the streams from git (whose pipes are 1 MiB, proc.c):
 * large enough that a system call moves many small objects at once. */
#define GITIO_IOBUF (1u << 20)
/* A read shorter than this is followed by a GITIO_READ_NAP_NS pause. At
 * git's pace (about 250 MB/s of cat-file output) the pause fills 125 KB of
 * the 1 MiB pipe, far from blocking git. Measured on a 21k-object push:
 * 8-10% less CPU over all processes, the same wall-clock. */
#define GITIO_READ_SHORT (256u << 10)
#define GITIO_READ_NAP_NS 500000
#define NONE UINT32_MAX

typedef guts_proc proc;

/* Choices of stdin for gitio_proc_start besides a descriptor of the caller's
 * (which the caller still owns and closes). */
#define PROC_NULL GUTS_PROC_NULL /* /dev/null */
#define PROC_PIPE GUTS_PROC_PIPE /* a new pipe: p->in is its write end */

typedef struct rd {
    int fd;
    uint8_t *buf;
    size_t pos, len;
} rd;

typedef struct iobj {
    guts_id id;
    guts_id base_id; /* git's delta base, or the hint's id once taken; zero: none */
    uint64_t size;
    uint32_t hint;  /* the object last listed at the same path (phints), or NONE */
    uint32_t base;  /* index of the base in the list, NONE if absent */
    uint32_t child; /* first object whose base this is (needed ones only) */
    uint32_t sib;   /* next object sharing our base */
    uint8_t type;
    uint8_t need; /* not yet stored */
} iobj;

typedef struct ilist {
    iobj *o;
    size_t n, cap;
} ilist;

/* The format of a listing line: what gitio_plan_import and gitio_check_header need,
 * and after a listing from rev-list the path it named the object by. */
#define GITIO_CHECK_FORMAT "--batch-check=%(objectname) %(objecttype) %(objectsize) %(deltabase)"

/* Delta hints for what git stores whole. A pack straight from
 * `git fast-import`, or repacked without -f, may hold most versions of a
 * file as whole objects, and a store following only git's bases would then
 * compress each on its own and a clone's pack would carry them whole. The
 * previous version of the same path is what git's own delta search tries
 * first (it sorts by path), so a tree or blob without a git base is given
 * the object listed last at its path (rev-list lists newest first: the
 * newer version is the base, as in git). Paths are kept as 64-bit hashes
 * of type and path: a collision only gives a poorer hint, and the store
 * uses a hint only when the delta is smaller than the object. gitio_plan_import
 * takes a hint only for an object that is no git object's base: a chain
 * then follows hints to ever earlier objects and, once it takes one of
 * git's edges, only git's edges (every object they reach is a git base, so
 * it has no hint), and git's are acyclic: no hint can close a cycle, which
 * would leave its objects without a base-first order. */
typedef struct phints {
    uint64_t *key; /* 0: empty slot */
    uint32_t *idx; /* the object last listed at that path */
    size_t cap, n;
} phints;

/* What import does with one ref name: docs/operations.md, "import's ref
 * rules". The three views of a name are git's ref (g), the store's record
 * (s) and this directory's mark (m: the record its last import left). The
 * rule is git's (add, fast-forward, never rewind or delete without being
 * told) except for refs nobody changed since this directory's last import:
 * those mirror the directory, as they hold only its user's own work. */
enum { IMP_ABSENT, IMP_TOMB, IMP_LIVE };                         /* the store's record */
enum { IMP_BRANCH, IMP_TAG, IMP_HEAD, IMP_GUTS };                /* kinds of names */
enum { IMP_NOTHING, IMP_SET, IMP_DELETE, IMP_KEEP, IMP_ASK_FF }; /* actions */
/* Fast-forward answers besides 1 and 0: the walk's budget ran out; not asked. */
#define IMP_FF_UNDECIDED (-1)
#define IMP_FF_UNASKED 2

enum {
    WHY_NONE,
    WHY_MOVED,
    WHY_NOT_FF,
    WHY_UNDECIDED,
    WHY_TAG,
    WHY_HEAD,
    WHY_GONE_CHANGED,
    WHY_GONE_NEVER,
    WHY_DELETED,
};

/* Committer dates can run backwards (clock skew between committers): the
 * fast-forward walk goes a day past the old commit's date before it gives
 * up, the slop git's own date cutoffs use (name-rev). */
#define IMPORT_FF_SLOP (24 * 3600)

/* Each WHY_*'s text for a kept ref (the import's kept callback). */
extern const char *const gitio_imp_why_text[];

typedef struct imp_case {
    int git;         /* git has the ref */
    int store;       /* IMP_ABSENT, IMP_TOMB, IMP_LIVE */
    int same;        /* the live store value is git's */
    int marked;      /* this directory's last import left a mark */
    int mine;        /* the store's record is the marked one: nobody changed it */
    int git_unmoved; /* git's target is the marked one */
    int kind;        /* IMP_BRANCH, IMP_TAG, IMP_HEAD, IMP_GUTS */
    int ff;          /* 1, 0, IMP_FF_UNDECIDED, or IMP_FF_UNASKED */
    unsigned flags;  /* GUTS_GITIO_FORCE, GUTS_GITIO_PRUNE */
} imp_case;

/* Paths of the trees and blobs a push lists first at their path (no hint
 * from the listing) and git keeps whole: the candidates for a hint from an
 * earlier version of the path the store already has (gitio_prev_hints). Paths
 * are kept NUL-separated, up to GITIO_PFIRST_TEXT_MAX bytes in all: past
 * that the rest go without (hints only save space). */
#define GITIO_PFIRST_TEXT_MAX (64u << 20)
typedef struct pfirst {
    uint32_t *idx;
    size_t *off;
    char *text;
    size_t n, cap, tlen, tcap;
} pfirst;

typedef struct pentry {
    guts_id id;
    uint64_t off; /* of the entry's header in the pack */
    uint32_t crc; /* CRC-32 of the entry as stored (header and zlib data) */
} pentry;

/* ---- gitio_run.c ---- */

/* Start argv with stdin as chosen, stdout a pipe when asked (else
 * /dev/null) and stderr captured (guts_proc_spawn). */
int gitio_proc_start(proc *p, const char *what, char *const argv[], int in, int want_out,
                     char *err);

/* Wait for p; GUTS_EIO with err filled for a failure (guts_proc_finish). */
int gitio_proc_wait(proc *p, char *err);

/* Run argv to completion, capturing stdout (at most GITIO_CAPTURE_MAX, NUL
 * terminated). A non-zero exit is GUTS_EIO with err filled, except, when
 * code is not NULL, an exit status of 1 to 125: then the output is kept and
 * *code holds the status (a signal or 126 and up, which the shell uses for
 * "cannot run", stay errors; see proc_wait_code). */
int gitio_run_capture_code(const char *what, char *const argv[], char **out, size_t *outlen,
                           int *code, char *err);

/* gitio_run_capture_code where any non-zero exit is an error. */
int gitio_run_capture(const char *what, char *const argv[], char **out, size_t *outlen, char *err);

/* Read one line (without its newline) of at most max-1 bytes into line;
 * with cut, the bytes past that are dropped instead of failing.
 * 1: a line; 0: clean end of file; GUTS_ETOOBIG: too long; GUTS_EIO. */
int gitio_rd_line_cut(rd *r, char *line, size_t max, int cut);

/* gitio_rd_line_cut failing on a line too long. */
int gitio_rd_line(rd *r, char *line, size_t max);

/* Read exactly n bytes; GUTS_EIO at an early end of file. */
int gitio_rd_exact(rd *r, void *dst, size_t n);

/* ---- gitio_list.c ---- */

/* Parse "<id> <type> <size> <deltabase>" from cat-file --batch-check; with
 * path (a listing with names), " <path>" follows, the path possibly empty
 * or holding spaces, and *path points at it. */
int gitio_parse_check_line(char *line, iobj *o, char **path);

/* The key of a path's hints: FNV-1a of type and path. */
uint64_t gitio_path_hash(int type, const char *path);

/* Swap in the object at index i as the last at its path; returns the one
 * there before, or NONE. GUTS_ENOMEM leaves the hints as they were. */
int gitio_phints_swap(phints *t, uint64_t key, uint32_t i, uint32_t *prev);

/* Release f's memory. */
void gitio_pfirst_free(pfirst *f);

/* List every object git has, or (tips) what tips reach and exclude does
 * not, into L; a push's first-at-path trees and blobs into firsts. */
int gitio_list_objects(const char *gitdir, const guts_id *tips, size_t ntips,
                       const guts_id *exclude, size_t nexclude, ilist *L, pfirst *firsts,
                       char *err);

/* Hints from earlier versions: each candidate still without a base is
 * looked up as "PREV:path" for every prev commit (the pushed refs' old
 * targets) in one `git cat-file --batch-check`, whatever the number of
 * prevs, and given what the first prev with an answer holds there when it
 * has the same type. That object is in the store (a prev is a stored
 * ref's target, stored with its closure), so the store can compress
 * against it; a commit git lacks, or a path gone, just yields "missing".
 * It is what git's own push does with the trees of the commits the remote
 * has (pack-objects' preferred bases): a pushed commit's objects are
 * usually loose in git, with no delta base at all. Hints are optional:
 * whatever fails here (a commit git lacks, git itself) leaves fewer. */
void gitio_prev_hints(const char *gitdir, ilist *L, const pfirst *f, const guts_id *prev,
                      size_t nprev);

/* The list's indexes sorted by id, for list_find; NULL: no memory. */
uint32_t *gitio_list_index(const ilist *L);

/* Resolve every delta base to an index (perm: gitio_list_index), take the hints
 * that are safe, mark what the store lacks, and return the needed objects
 * in an order where a base precedes what is built on it. */
int gitio_plan_import(guts_repo *repo, ilist *L, const uint32_t *perm, uint32_t **order_out,
                      size_t *nneed_out, char *err);

/* Import lists every object with `cat-file --batch-all-objects` (which has
 * no names: unreachable objects are stored too), so the names for the path
 * hints come from a `git rev-list --objects --all` run beside it; each of
 * its lines is looked up in the list by id. Its order (newest first) is
 * the order the hints follow, as in a push. */
int gitio_import_hints_start(const char *gitdir, proc *rl, char *err);

/* Give L's objects the hints of rl's listing (gitio_import_hints_start). */
int gitio_import_hints(ilist *L, const uint32_t *perm, proc *rl, char *err);

/* Are path hints worth their `rev-list --objects --all` (about a tenth of
 * an import's CPU)? When git left at least 1/GITIO_HINTS_WHOLE_DIV of the
 * trees and blobs whole (no delta base): fast-import output, the synthetic
 * repository of scripts/bench-store (60% whole: its store is 3x larger
 * without hints). zlib's pack leaves 17% whole; without hints its store is
 * 5.5% larger (1.40x its pack instead of 1.33x) and the import 10% cheaper
 * (docs/performance.md). */
#define GITIO_HINTS_WHOLE_DIV 4
int gitio_hints_pay(const ilist *L);

/* ---- gitio_stream.c ---- */

/* Parse "<id> <type> <size>" of a --batch header and check it against what
 * the listing said about this object. */
int gitio_check_header(char *line, const iobj *o);

/* Read the nneed objects of order from `git cat-file --batch` in gitdir
 * and store them in repo, in bounded batches. */
int gitio_stream_objects(guts_repo *repo, const char *gitdir, ilist *L, const uint32_t *order,
                         size_t nneed, guts_progress *pg, guts_gitio_stats *st, char *err);

/* ---- gitio_refs.c ---- */

/* The source of an import: the git directory as git resolves it (a work
 * tree and its .git are one source), made canonical by realpath(), and 16
 * bytes of XXH3-128 of that path to key its marks. path gets PATH_MAX bytes. */
int gitio_git_source(const char *gitdir, char *path, uint8_t src[GUTS_IMPORT_SRC_LEN], char *err);

/* The action (IMP_NOTHING...IMP_ASK_FF) for one ref name; *why: the WHY_*
 * of an IMP_KEEP. Pure: table-tested. */
int gitio_imp_decide(const imp_case *c, int *why);

/* Is old an ancestor of new? Walks new's history in the store, newest
 * first by committer date, until old is found or every commit left is more
 * than IMPORT_FF_SLOP older than old. *ff: 1, 0, or IMP_FF_UNDECIDED when
 * *budget (commits, decremented) runs out. Not commits: 0. */
int gitio_ff_test(guts_repo *r, const guts_id *old, const guts_id *new, uint64_t *budget, int *ff);

/* Set git's refs and HEAD of gitdir (source path, src) in repo by
 * gitio_imp_decide's rule, retrying the compare-and-swap a few times. */
int gitio_import_refs(guts_repo *repo, const guts_node_id *node, const char *gitdir,
                      const char *path, const uint8_t *src, const guts_gitio_import_opts *opts,
                      guts_gitio_stats *st, char *err);

/* ---- gitio_export.c ---- */

/* The version-2 pack index git reads: fan-out table, sorted ids, CRC-32s,
 * 31-bit offsets (larger ones in a 64-bit table), the pack's checksum and
 * the index's own SHA-1. Sorts e in place. */
int gitio_write_idx(const char *path, pentry *e, size_t n, const uint8_t packsum[20], char *err);

/* Export r into outdir (new or empty): pack, index, refs, HEAD. */
int gitio_export_into(guts_repo *r, const char *outdir, int level, guts_progress *pg,
                      guts_gitio_stats *st, char *err);

/* Remove what export_made named (never following a symbolic link out). */
void gitio_export_unmake(const char *made, int keep);

#endif
