/* gitio.c - import from and export to git repositories.
 *
 * Import asks git for everything through two long-lived processes: one
 * `cat-file --batch-all-objects --batch-check` lists every object with its
 * type, size and git's own delta base, and one `cat-file --batch` returns the
 * contents of the objects the store lacks. The ids are ordered so a delta base
 * comes before every object built on it (depth-first from each chain's root,
 * roots in pack order), because the store compresses an object against its
 * base only when the base is already stored or earlier in the same batch. A
 * writer thread feeds ids to cat-file while this thread reads the contents, so
 * neither side can block the other on a full pipe. Objects go to the store in
 * batches bounded both in count and in bytes, which bounds memory too: only
 * the id list (about 70 bytes an object) is held for the whole run.
 *
 * Export writes one version-2 packfile (pack.c: whole objects, and git
 * deltas where the store keeps a delta against a base) and its
 * version-2 index itself, then packed-refs and HEAD: what `git clone` leaves
 * behind. Writing the index here instead of running `git index-pack` saves a
 * second inflate-and-hash pass over every byte (measured: index-pack alone
 * took twice as long as the rest of the export); instead every object is
 * rehashed as it is read from the store, so a store that rotted since the
 * insert cannot yield a repository that looks fine. The zlib level is the
 * caller's: level 0 (stored blocks) is what keeps export as fast as
 * `git clone --mirror --no-local` (docs/performance.md).
 *
 * Import's refs follow git push's rules against the store's records, with
 * one memory git lacks: the records this git directory's last import left
 * (its "marks", in the env's local imports db), which tell the user's own
 * changes (followed, deletions and rewinds included) from changes others
 * made since (never rewound, moved or deleted without --force/--prune).
 * The rule is one pure function (imp_decide, table-tested); fast-forwards
 * are decided by walking commits in the store within one read snapshot;
 * the writes are a compare-and-swap on the refs digest.
 *
 * git's stderr is captured in a memory file so that a failure becomes one
 * line of error naming the command, not a screenful.
 */
#include "gitio.h"
#include "proc.h"
#include "pack.h"
#include "progress.h"
#include "walk.h"
#include "guts/refmerge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <xxhash.h>
#include <zlib.h>


/* Objects per guts_repo_put: thousands per write transaction amortise the
 * commit's fsync while keeping a failed batch cheap to retry. */
#define GITIO_BATCH_OBJECTS 4096
/* Content bytes per guts_repo_put: bounds the memory held between reading
 * from git and committing (two batches are in flight; a single bigger object
 * is a batch of its own). 16 MiB imported zlib as fast as 64 MiB with
 * fewer fresh pages to fault in, and a commit per 16 MiB costs little. */
#define GITIO_BATCH_BYTES (16u << 20)
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

/* ---- Child processes ---------------------------------------------------- */

typedef guts_proc proc;

/* Choices of stdin for proc_start besides a descriptor of the caller's
 * (which the caller still owns and closes). */
#define PROC_NULL GUTS_PROC_NULL /* /dev/null */
#define PROC_PIPE GUTS_PROC_PIPE /* a new pipe: p->in is its write end */

/* Start argv with stdin as chosen, stdout a pipe when asked (else
 * /dev/null) and stderr captured (guts_proc_spawn). */
static int proc_start(proc *p, const char *what, char *const argv[], int in, int want_out,
                      char *err)
{
    return guts_proc_spawn(p, what, argv, in, want_out ? GUTS_PROC_PIPE : GUTS_PROC_NULL,
                           GUTS_PROC_STDERR, err);
}

static int proc_wait_code(proc *p, int *code, char *err)
{
    return guts_proc_finish(p, code, err);
}

static int proc_wait(proc *p, char *err)
{
    return guts_proc_finish(p, NULL, err);
}

/* Run argv to completion, capturing stdout (at most GITIO_CAPTURE_MAX, NUL
 * terminated). A non-zero exit is GUTS_EIO with err filled, except, when
 * code is not NULL, an exit status of 1 to 125: then the output is kept and
 * *code holds the status (a signal or 126 and up, which the shell uses for
 * "cannot run", stay errors; see proc_wait_code). */
static int run_capture_code(const char *what, char *const argv[], char **out, size_t *outlen,
                            int *code, char *err)
{
    proc p;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc;
    if (!buf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    rc = proc_start(&p, what, argv, PROC_NULL, 1, err);
    if (rc) {
        free(buf);
        return rc;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= GITIO_CAPTURE_MAX) {
                rc = guts_git_errf(err, GUTS_ETOOBIG, "%s: output over %u MiB", p.what,
                          GITIO_CAPTURE_MAX >> 20);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(p.out, buf + len, cap - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = guts_git_errf(err, GUTS_EIO, "reading from %s: %s", p.what, strerror(errno));
            break;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    if (rc) {
        if (p.pid > 0) kill(p.pid, SIGTERM);
        proc_wait(&p, NULL);
        free(buf);
        return rc;
    }
    rc = proc_wait_code(&p, code, err);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = 0;
    *out = buf;
    *outlen = len;
    return GUTS_OK;
}

static int run_capture(const char *what, char *const argv[], char **out, size_t *outlen, char *err)
{
    return run_capture_code(what, argv, out, outlen, NULL, err);
}

/* ---- Buffered reading of a pipe ----------------------------------------- */

typedef struct rd {
    int fd;
    uint8_t *buf;
    size_t pos, len;
} rd;

/* 1 when more bytes are buffered, 0 at end of file, GUTS_EIO on error. */
static int rd_fill(rd *r)
{
    if (r->pos < r->len) return 1;
    /* A short read means we drained the pipe faster than git fills it:
     * reading again at once would wake us for every one of git's writes
     * (two an object). A pause lets the pipe fill, so each read takes many
     * objects and both processes switch far less. */
    if (r->len && r->len < GITIO_READ_SHORT) {
        struct timespec nap = {0, GITIO_READ_NAP_NS};
        nanosleep(&nap, NULL);
    }
    for (;;) {
        ssize_t k = read(r->fd, r->buf, GITIO_IOBUF);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return GUTS_EIO;
        r->pos = 0;
        r->len = (size_t)k;
        return k > 0;
    }
}

/* Read one line (without its newline) of at most max-1 bytes into line;
 * with cut, the bytes past that are dropped instead of failing.
 * 1: a line; 0: clean end of file; GUTS_ETOOBIG: too long; GUTS_EIO. */
static int rd_line_cut(rd *r, char *line, size_t max, int cut)
{
    size_t n = 0;
    for (;;) {
        int f = rd_fill(r);
        if (f < 0) return f;
        if (f == 0) return n ? GUTS_EIO : 0;
        uint8_t *s = r->buf + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - s) : r->len - r->pos, skip = take;
        if (n + take >= max) {
            if (!cut) return GUTS_ETOOBIG;
            take = max - 1 - n;
        }
        memcpy(line + n, s, take);
        n += take;
        r->pos += skip + (nl ? 1 : 0);
        if (nl) {
            line[n] = 0;
            return 1;
        }
    }
}

static int rd_line(rd *r, char *line, size_t max)
{
    return rd_line_cut(r, line, max, 0);
}

/* Read exactly n bytes; GUTS_EIO at an early end of file. */
static int rd_exact(rd *r, void *dst, size_t n)
{
    uint8_t *d = dst;
    while (n) {
        int f = rd_fill(r);
        if (f <= 0) return GUTS_EIO;
        size_t take = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, take);
        r->pos += take;
        d += take;
        n -= take;
    }
    return GUTS_OK;
}


/* ---- Import: the object list -------------------------------------------- */

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

/* Parse "<id> <type> <size> <deltabase>" from cat-file --batch-check; with
 * path (a listing with names), " <path>" follows, the path possibly empty
 * or holding spaces, and *path points at it. */
static int parse_check_line(char *line, iobj *o, char **path)
{
    char *f[5];
    int nf = 0, want = path ? 5 : 4;
    for (char *s = line;;) {
        f[nf++] = s;
        if (nf == want) break; /* the path: the rest of the line */
        char *sp = strchr(s, ' ');
        if (!sp) break;
        *sp = 0;
        s = sp + 1;
    }
    if (nf != want || strchr(f[3], ' ')) return GUTS_EINVAL;
    if (path) *path = f[4];
    memset(o, 0, sizeof *o);
    if (guts_id_from_hex(f[0], strlen(f[0]), &o->id) ||
        guts_id_from_hex(f[3], strlen(f[3]), &o->base_id))
        return GUTS_EINVAL;
    o->type = (uint8_t)guts_otype_parse(f[1], strlen(f[1]));
    if (o->type == GUTS_OBJ_NONE) return GUTS_EINVAL;
    char *end;
    errno = 0;
    if (f[2][0] < '0' || f[2][0] > '9') return GUTS_EINVAL; /* strtoull takes "-1", " 1" */
    unsigned long long sz = strtoull(f[2], &end, 10);
    if (errno || *end) return GUTS_EINVAL;
    o->size = sz;
    o->hint = o->base = o->child = o->sib = NONE;
    return GUTS_OK;
}

/* The format of a listing line: what plan_import and check_header need,
 * and after a listing from rev-list the path it named the object by. */
#define GITIO_CHECK_FORMAT "--batch-check=%(objectname) %(objecttype) %(objectsize) %(deltabase)"
static char gitio_check_path_format[] = GITIO_CHECK_FORMAT " %(rest)";

/* Delta hints for what git stores whole. A pack straight from
 * `git fast-import`, or repacked without -f, may hold most versions of a
 * file as whole objects, and a store following only git's bases would then
 * compress each on its own and a clone's pack would carry them whole. The
 * previous version of the same path is what git's own delta search tries
 * first (it sorts by path), so a tree or blob without a git base is given
 * the object listed last at its path (rev-list lists newest first: the
 * newer version is the base, as in git). Paths are kept as 64-bit hashes
 * of type and path: a collision only gives a poorer hint, and the store
 * uses a hint only when the delta is smaller than the object. plan_import
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

static uint64_t path_hash(int type, const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)type; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1;
}

/* Swap in the object at index i as the last at its path; returns the one
 * there before, or NONE. GUTS_ENOMEM leaves the hints as they were. */
static int phints_swap(phints *t, uint64_t key, uint32_t i, uint32_t *prev)
{
    *prev = NONE;
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 4096;
        uint64_t *nk = calloc(nc, sizeof *nk);
        uint32_t *ni = malloc(nc * sizeof *ni);
        if (!nk || !ni) {
            free(nk);
            free(ni);
            return GUTS_ENOMEM;
        }
        for (size_t j = 0; j < t->cap; j++) {
            if (!t->key[j]) continue;
            size_t s = (size_t)t->key[j] & (nc - 1);
            while (nk[s])
                s = (s + 1) & (nc - 1);
            nk[s] = t->key[j];
            ni[s] = t->idx[j];
        }
        free(t->key);
        free(t->idx);
        t->key = nk;
        t->idx = ni;
        t->cap = nc;
    }
    size_t s = (size_t)key & (t->cap - 1);
    while (t->key[s] && t->key[s] != key)
        s = (s + 1) & (t->cap - 1);
    if (t->key[s])
        *prev = t->idx[s];
    else
        t->n++;
    t->key[s] = key;
    t->idx[s] = i;
    return GUTS_OK;
}

/* Start the listing into *p: every object of gitdir when ntips is 0, else
 * those reachable from tips and not from exclude, `git rev-list --objects`
 * piped straight into `git cat-file --batch-check` (rl is then the
 * rev-list, to be waited for too). rev-list reads all of its stdin before
 * it writes anything, so writing every id first cannot deadlock. */
static int list_start(const char *gitdir, const guts_id *tips, size_t ntips,
                      const guts_id *exclude, size_t nexclude, proc *rl, proc *p, char *err)
{
    /* --buffer: without it cat-file writes (and wakes us) once per object;
     * nothing here waits for an answer before asking the next. */
    char *all_argv[] = {"git",          "-C",
                        (char *)gitdir, "--no-replace-objects",
                        "cat-file",     "--batch-all-objects",
                        "--unordered",  GITIO_CHECK_FORMAT,
                        "--buffer",     NULL};
    char *check_argv[] = {"git",          "-C",
                          (char *)gitdir, "--no-replace-objects",
                          "cat-file",     gitio_check_path_format,
                          "--buffer",     NULL};
    char *rl_argv[] = {"git",      "-C",        (char *)gitdir,     "--no-replace-objects",
                       "rev-list", "--objects", "--ignore-missing", "--stdin",
                       NULL};
    memset(rl, 0, sizeof *rl);
    rl->in = rl->out = rl->errfd = -1;
    if (!ntips) return proc_start(p, "git cat-file --batch-check", all_argv, PROC_NULL, 1, err);
    int rc = proc_start(rl, "git rev-list --objects", rl_argv, PROC_PIPE, 1, err);
    if (rc) return rc;
    rc = proc_start(p, "git cat-file --batch-check", check_argv, rl->out, 1, err);
    close(rl->out);
    rl->out = -1;
    char line[GUTS_HEX_LEN + 3]; /* "^", the id, "\n" and guts_id_to_hex's NUL */
    for (size_t i = 0; i < ntips + nexclude && !rc; i++) {
        size_t k = 0;
        if (i >= ntips) line[k++] = '^';
        guts_id_to_hex(i < ntips ? &tips[i] : &exclude[i - ntips], line + k);
        k += GUTS_HEX_LEN;
        line[k++] = '\n';
        if (guts_write_all(rl->in, line, k))
            rc = guts_git_errf(err, GUTS_EIO, "writing to git rev-list: %s", strerror(errno));
    }
    close(rl->in);
    rl->in = -1;
    if (rc) {
        if (p->pid > 0) {
            kill(p->pid, SIGTERM);
            proc_wait(p, NULL);
        }
        kill(rl->pid, SIGTERM);
        proc_wait(rl, NULL);
    }
    return rc;
}

/* Paths of the trees and blobs a push lists first at their path (no hint
 * from the listing) and git keeps whole: the candidates for a hint from an
 * earlier version of the path the store already has (prev_hints). Paths
 * are kept NUL-separated, up to GITIO_PFIRST_TEXT_MAX bytes in all: past
 * that the rest go without (hints only save space). */
#define GITIO_PFIRST_TEXT_MAX (64u << 20)
typedef struct pfirst {
    uint32_t *idx;
    size_t *off;
    char *text;
    size_t n, cap, tlen, tcap;
} pfirst;

static void pfirst_free(pfirst *f)
{
    free(f->idx);
    free(f->off);
    free(f->text);
}

/* Remember object i first listed at path; GUTS_ENOMEM. */
static int pfirst_add(pfirst *f, uint32_t i, const char *path)
{
    size_t len = strlen(path) + 1;
    if (f->tlen + len > GITIO_PFIRST_TEXT_MAX) return GUTS_OK;
    if (f->n == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 1024;
        uint32_t *ni = realloc(f->idx, nc * sizeof *ni);
        if (ni) f->idx = ni;
        size_t *no = ni ? realloc(f->off, nc * sizeof *no) : NULL;
        if (!no) return GUTS_ENOMEM;
        f->off = no;
        f->cap = nc;
    }
    if (f->tlen + len > f->tcap) {
        size_t nc = f->tcap ? 2 * f->tcap : 64 * 1024;
        while (nc < f->tlen + len)
            nc *= 2;
        char *nt = realloc(f->text, nc);
        if (!nt) return GUTS_ENOMEM;
        f->text = nt;
        f->tcap = nc;
    }
    memcpy(f->text + f->tlen, path, len);
    f->idx[f->n] = i;
    f->off[f->n++] = f->tlen;
    f->tlen += len;
    return GUTS_OK;
}

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
static void prev_hints(const char *gitdir, ilist *L, const pfirst *f, const guts_id *prev,
                       size_t nprev)
{
    char *argv[] = {"git",      "-C", (char *)gitdir, "--no-replace-objects", "cat-file",
                    "--batch-check=%(objectname) %(objecttype)", "--buffer", NULL};
    char line[GITIO_PATH_LINE_MAX], hex[GUTS_HEX_LEN + 1], ignore[GUTS_GITIO_ERR_MAX];
    uint8_t *buf = malloc(GITIO_IOBUF);
    /* The queries go through a memory file: cat-file's answers can then be
     * read without a writer thread. Candidates that have a base now are
     * not asked; the answers come in the order asked, prev by prev. */
    int in = buf ? memfd_create("git-queries", MFD_CLOEXEC) : -1;
    FILE *q = in >= 0 ? fdopen(dup(in), "w") : NULL;
    size_t nq = 0;
    for (size_t k = 0; q && k < nprev; k++) {
        guts_id_to_hex(&prev[k], hex);
        for (size_t j = 0; j < f->n; j++)
            if (guts_id_is_zero(&L->o[f->idx[j]].base_id)) {
                fprintf(q, "%s:%s\n", hex, f->text + f->off[j]);
                nq++;
            }
    }
    proc p;
    if (!q || fclose(q) != 0 || lseek(in, 0, SEEK_SET) != 0 || !nq ||
        proc_start(&p, "git cat-file --batch-check", argv, in, 1, ignore) != GUTS_OK) {
        if (in >= 0) close(in);
        free(buf);
        return;
    }
    close(in);
    rd r = {.fd = p.out, .buf = buf};
    uint8_t *asked = calloc(f->n ? f->n : 1, 1);
    for (size_t j = 0; asked && j < f->n; j++)
        asked[j] = guts_id_is_zero(&L->o[f->idx[j]].base_id);
    for (size_t k = 0; asked && k < nprev; k++) {
        for (size_t j = 0; j < f->n; j++) {
            if (!asked[j]) continue;
            iobj *o = &L->o[f->idx[j]];
            if (rd_line_cut(&r, line, sizeof line, 1) <= 0) {
                k = nprev;
                break;
            }
            if (!guts_id_is_zero(&o->base_id)) continue; /* an earlier prev had it */
            /* "<id> <type>", or "<query> missing" (or "ambiguous"). */
            guts_id id;
            char *sp = strchr(line, ' ');
            if (!sp || sp - line != GUTS_HEX_LEN || guts_id_from_hex(line, GUTS_HEX_LEN, &id))
                continue;
            int type = guts_otype_parse(sp + 1, strlen(sp + 1));
            if (type == o->type && guts_id_cmp(&id, &o->id) != 0) o->base_id = id;
        }
    }
    free(asked);
    kill(p.pid, SIGTERM); /* done with it, whatever it still has to say */
    proc_wait(&p, NULL);
    free(buf);
}

/* Object i of the list is named path by rev-list: it becomes the last at
 * that path, and its hint is the one there before when git gave it no base.
 * *prev: that one, or NONE. GUTS_ENOMEM. */
static int hint_at_path(phints *t, ilist *L, uint32_t i, const char *path, uint32_t *prev)
{
    iobj *o = &L->o[i];
    *prev = NONE;
    if (o->type != GUTS_OBJ_TREE && o->type != GUTS_OBJ_BLOB) return GUTS_OK;
    int rc = phints_swap(t, path_hash(o->type, path), i, prev);
    if (!rc && guts_id_is_zero(&o->base_id)) o->hint = *prev;
    return rc;
}

static int list_objects(const char *gitdir, const guts_id *tips, size_t ntips,
                        const guts_id *exclude, size_t nexclude, ilist *L, pfirst *firsts,
                        char *err)
{
    proc rl, p;
    char line[GITIO_PATH_LINE_MAX], *path = NULL;
    phints hints = {0};
    int rc = list_start(gitdir, tips, ntips, exclude, nexclude, &rl, &p, err);
    if (rc) return rc;
    rd r = {.fd = p.out, .buf = malloc(GITIO_IOBUF)};
    if (!r.buf) rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    while (!rc) {
        int k = rd_line_cut(&r, line, ntips ? sizeof line : GITIO_LINE_MAX, ntips != 0);
        if (k == 0) break;
        if (k < 0) {
            rc =
                guts_git_errf(err, k == GUTS_ETOOBIG ? GUTS_EINVAL : GUTS_EIO,
                     "git cat-file --batch-check in %s: %s", gitdir,
                     k == GUTS_ETOOBIG ? "line too long (not a SHA-1 repository?)" : "read failed");
            break;
        }
        if (L->n == L->cap) {
            size_t nc = L->cap ? L->cap * 2 : 4096;
            if (nc > GITIO_OBJECTS_MAX) nc = GITIO_OBJECTS_MAX;
            if (L->n >= nc) {
                rc = guts_git_errf(err, GUTS_ETOOBIG, "%s: more than %u objects", gitdir, GITIO_OBJECTS_MAX);
                break;
            }
            iobj *no = realloc(L->o, nc * sizeof *no);
            if (!no) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
            L->o = no;
            L->cap = nc;
        }
        char copy[101];
        size_t cl = strnlen(line, sizeof copy - 1);
        memcpy(copy, line, cl);
        copy[cl] = 0;
        iobj *o = &L->o[L->n];
        if (parse_check_line(line, o, ntips ? &path : NULL) != GUTS_OK) {
            rc = guts_git_errf(err, GUTS_EINVAL, "%s: unexpected cat-file line \"%s\"", gitdir, copy);
            break;
        }
        if (ntips && (o->type == GUTS_OBJ_TREE || o->type == GUTS_OBJ_BLOB)) {
            uint32_t prev;
            if (hint_at_path(&hints, L, (uint32_t)L->n, path, &prev)) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
            if (prev == NONE && guts_id_is_zero(&o->base_id) && firsts &&
                pfirst_add(firsts, (uint32_t)L->n, path)) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
        }
        L->n++;
    }
    free(hints.key);
    free(hints.idx);
    free(r.buf);
    if (rc) {
        kill(p.pid, SIGTERM);
        if (rl.pid > 0) kill(rl.pid, SIGTERM);
    }
    int crc = proc_wait(&p, rc ? NULL : err);
    if (!rc) rc = crc;
    int rrc = proc_wait(&rl, rc ? NULL : err);
    return rc ? rc : rrc;
}

static const iobj *sort_base;
static int cmp_perm(const void *a, const void *b)
{
    return guts_id_cmp(&sort_base[*(const uint32_t *)a].id, &sort_base[*(const uint32_t *)b].id);
}

/* The list's indexes sorted by id, for list_find; NULL: no memory. */
static uint32_t *list_index(const ilist *L)
{
    uint32_t *perm = malloc((L->n ? L->n : 1) * sizeof *perm);
    if (!perm) return NULL;
    for (size_t i = 0; i < L->n; i++)
        perm[i] = (uint32_t)i;
    sort_base = L->o;
    qsort(perm, L->n, sizeof *perm, cmp_perm);
    return perm;
}

/* The index of id in the list, or NONE. */
static uint32_t list_find(const ilist *L, const uint32_t *perm, const guts_id *id)
{
    size_t lo = 0, hi = L->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = guts_id_cmp(&L->o[perm[mid]].id, id);
        if (c == 0) return perm[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NONE;
}

/* Resolve every delta base to an index (perm: list_index), take the hints
 * that are safe, mark what the store lacks, and return the needed objects
 * in an order where a base precedes what is built on it. */
static int plan_import(guts_repo *repo, ilist *L, const uint32_t *perm, uint32_t **order_out,
                       size_t *nneed_out, char *err)
{
    size_t n = L->n, nneed = 0, k = 0;
    iobj *o = L->o;
    uint32_t *order = NULL, *stack = NULL;
    int rc = GUTS_OK;
    for (size_t i = 0; i < n; i++)
        if (!guts_id_is_zero(&o[i].base_id)) o[i].base = list_find(L, perm, &o[i].base_id);
    /* Hints, for objects no git base names (child is free until below). */
    for (size_t i = 0; i < n; i++)
        if (o[i].base != NONE) o[o[i].base].child = 0;
    for (size_t i = 0; i < n; i++) {
        if (o[i].hint == NONE || !guts_id_is_zero(&o[i].base_id) || o[i].child == 0) continue;
        o[i].base = o[i].hint;
        o[i].base_id = o[o[i].hint].id;
    }
    for (size_t i = 0; i < n; i++)
        o[i].child = NONE;
    for (size_t i = 0; i < n; i++) {
        int h = guts_repo_has(repo, &o[i].id);
        if (h < 0) return guts_git_errf(err, h, "store lookup failed: %s", guts_strerror(h));
        o[i].need = h == 0;
        nneed += o[i].need;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t b = o[i].base;
        if (o[i].need && b != NONE && o[b].need) {
            o[i].sib = o[b].child;
            o[b].child = (uint32_t)i;
        }
    }
    order = malloc((nneed ? nneed : 1) * sizeof *order);
    stack = malloc((nneed ? nneed : 1) * sizeof *stack);
    uint8_t *done = calloc(n ? n : 1, 1);
    if (!order || !stack || !done) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        goto out;
    }
    /* Roots in git's pack order, each followed depth-first by its chain. */
    for (size_t i = 0; i < n; i++) {
        uint32_t b = o[i].base;
        if (!o[i].need || (b != NONE && o[b].need)) continue;
        size_t sp = 0;
        stack[sp++] = (uint32_t)i;
        while (sp) {
            uint32_t x = stack[--sp];
            if (done[x]) continue;
            done[x] = 1;
            order[k++] = x;
            for (uint32_t c = o[x].child; c != NONE; c = o[c].sib)
                if (!done[c] && sp < nneed) stack[sp++] = c;
        }
    }
    /* A delta cycle cannot happen in git; if one did, store those anyway. */
    for (size_t i = 0; i < n && k < nneed; i++)
        if (o[i].need && !done[i]) order[k++] = (uint32_t)i;
    *order_out = order;
    *nneed_out = nneed;
    order = NULL;
out:
    free(order);
    free(stack);
    free(done);
    return rc;
}

/* ---- Import: streaming contents ----------------------------------------- */

typedef struct feeder {
    int fd;
    const iobj *o;
    const uint32_t *order;
    size_t n;
    int rc;
} feeder;

/* Writer thread: every needed id, one a line, to cat-file's stdin. */
static void *feed_ids(void *arg)
{
    feeder *f = arg;
    enum { CHUNK = 64 * 1024 };
    char *buf = malloc(CHUNK);
    size_t len = 0;
    f->rc = buf ? GUTS_OK : GUTS_ENOMEM;
    for (size_t i = 0; buf && i < f->n && !f->rc; i++) {
        guts_id_to_hex(&f->o[f->order[i]].id, buf + len);
        len += GUTS_HEX_LEN;
        buf[len++] = '\n';
        if (len + GUTS_HEX_LEN + 1 > CHUNK || i + 1 == f->n) {
            f->rc = guts_write_all(f->fd, buf, len);
            len = 0;
        }
    }
    free(buf);
    close(f->fd); /* EOF tells cat-file to finish */
    f->fd = -1;
    return NULL;
}

/* A batch of objects on its way to guts_repo_put. Contents live in an arena
 * reused from batch to batch (no page faults after the first); an object too
 * big for it gets a buffer of its own. */
typedef struct batch {
    guts_obj objs[GITIO_BATCH_OBJECTS];
    void *own[GITIO_BATCH_OBJECTS]; /* malloc'ed content, or NULL if in the arena */
    uint8_t *arena;
    size_t n, bytes, used;
} batch;

/* Where the next object's content of size bytes goes: the arena when it
 * fits, else a buffer of its own (recorded to be freed). NULL: no memory. */
static void *batch_slot(batch *b, size_t size)
{
    if (b->used + size <= GITIO_BATCH_BYTES) {
        void *p = b->arena + b->used;
        b->used += size;
        b->own[b->n] = NULL;
        return p;
    }
    b->own[b->n] = malloc(size ? size : 1);
    return b->own[b->n];
}

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->own[i]);
    b->n = b->bytes = b->used = 0;
}

static int batch_store(guts_repo *repo, batch *b, uint64_t *added_total, char *err)
{
    size_t added = 0, bad = 0;
    int rc = GUTS_OK;
    if (b->n) {
        rc = guts_repo_put(repo, b->objs, b->n, &added, &bad);
        if (rc) {
            char hex[GUTS_HEX_LEN + 1] = "?";
            if (bad < b->n) guts_id_to_hex(&b->objs[bad].id, hex);
            if (rc == GUTS_EHASH)
                guts_git_errf(err, rc, "object %s from git does not hash to its id", hex);
            else
                guts_git_errf(err, rc, "storing a batch of %zu objects (near %s): %s", b->n, hex,
                     guts_strerror(rc));
        }
        *added_total += added;
    }
    batch_clear(b);
    return rc;
}

/* The storing thread: compressing and committing a batch (zstd, SHA-1,
 * LMDB) overlaps with reading the next one from git, so cat-file is never
 * left waiting on a full pipe while we compress. Two batches alternate. */
typedef struct storer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    guts_repo *repo;
    batch *pending; /* handed over, not yet taken */
    int busy;       /* storing a batch */
    int quit;
    int rc;
    uint64_t added;
    char err[GUTS_GITIO_ERR_MAX];
} storer;

static void *store_batches(void *arg)
{
    storer *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->pending && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->pending) break;
        batch *b = s->pending;
        s->pending = NULL;
        s->busy = 1;
        int failed = s->rc != GUTS_OK;
        pthread_mutex_unlock(&s->mu);
        char err[GUTS_GITIO_ERR_MAX];
        int rc = failed ? GUTS_OK : batch_store(s->repo, b, &s->added, err);
        if (failed) batch_clear(b);
        pthread_mutex_lock(&s->mu);
        if (rc && !s->rc) {
            s->rc = rc;
            memcpy(s->err, err, sizeof err);
        }
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Wait until the storer is idle (so both batches are free again); hand it
 * b if b is not NULL. Returns the storer's first error, if any, with its
 * message copied to err (unless err is NULL). */
static int storer_submit(storer *s, batch *b, char *err)
{
    pthread_mutex_lock(&s->mu);
    while (s->pending || s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->rc;
    if (rc && err) memcpy(err, s->err, GUTS_GITIO_ERR_MAX);
    if (!rc && b) {
        s->pending = b;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Parse "<id> <type> <size>" of a --batch header and check it against what
 * the listing said about this object. */
static int check_header(char *line, const iobj *o)
{
    guts_id id;
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL, *end;
    if (!sp1 || !sp2) return GUTS_EINVAL;
    if (guts_id_from_hex(line, (size_t)(sp1 - line), &id) || guts_id_cmp(&id, &o->id))
        return GUTS_EINVAL;
    if (guts_otype_parse(sp1 + 1, (size_t)(sp2 - sp1 - 1)) != o->type) return GUTS_EINVAL;
    errno = 0;
    if (sp2[1] < '0' || sp2[1] > '9') return GUTS_EINVAL;
    unsigned long long sz = strtoull(sp2 + 1, &end, 10);
    if (errno || *end || sz != o->size) return GUTS_EINVAL;
    return GUTS_OK;
}

/* A large object from cat-file straight into the store's staging, a few
 * pieces per write transaction: it is never held whole (the store hashes
 * it as it goes and stores it once the last bytes verify). The storer
 * thread must be idle (the repo handle is single-threaded). */
static int stream_large(guts_repo *repo, rd *r, const iobj *o, const char *gitdir, uint64_t *added,
                        char *err)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&o->id, hex);
    uint8_t *buf = malloc(GITIO_LARGE_STEP);
    if (!buf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", hex);
    int rc = GUTS_OK, stored = 0;
    char nl = 0;
    for (uint64_t off = 0; off < o->size && !rc; off += GITIO_LARGE_STEP) {
        size_t k = o->size - off < GITIO_LARGE_STEP ? (size_t)(o->size - off) : GITIO_LARGE_STEP;
        if (rd_exact(r, buf, k)) {
            rc =
                guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
            break;
        }
        rc = guts_repo_stage_write(repo, &o->id, o->type, o->size, off, buf, k, &stored);
        if (rc == GUTS_EHASH)
            guts_git_errf(err, rc, "object %s from git does not hash to its id", hex);
        else if (rc)
            guts_git_errf(err, rc, "storing object %s: %s (%s)", hex, guts_strerror(rc),
                 guts_store_errmsg());
    }
    free(buf);
    if (!rc && (rd_exact(r, &nl, 1) || nl != '\n'))
        rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
    if (!rc) *added += (uint64_t)stored;
    return rc;
}

static int stream_objects(guts_repo *repo, const char *gitdir, ilist *L, const uint32_t *order,
                          size_t nneed, guts_progress *pg, guts_gitio_stats *st, char *err)
{
    char *argv[] = {"git",      "-C",      (char *)gitdir, "--no-replace-objects",
                    "cat-file", "--batch", "--buffer",     NULL};
    proc p;
    pthread_t feed_th, store_th;
    feeder f;
    storer s = {.repo = repo};
    batch *bs[2] = {NULL, NULL}, *b;
    rd r = {.fd = -1};
    char line[GITIO_LINE_MAX], hex[GUTS_HEX_LEN + 1];
    int rc, fed = 0, stored = 0, cur = 0;
    if (nneed == 0) return GUTS_OK;
    rc = proc_start(&p, "git cat-file --batch", argv, PROC_PIPE, 1, err);
    if (rc) return rc;
    f = (feeder){.fd = p.in, .o = L->o, .order = order, .n = nneed};
    p.in = -1; /* the feeder closes it */
    r.fd = p.out;
    r.buf = malloc(GITIO_IOBUF);
    for (int i = 0; i < 2; i++)
        if ((bs[i] = calloc(1, sizeof *bs[i]))) bs[i]->arena = malloc(GITIO_BATCH_BYTES);
    if (!r.buf || !bs[0] || !bs[1] || !bs[0]->arena || !bs[1]->arena) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        close(f.fd);
        goto out;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (pthread_create(&feed_th, NULL, feed_ids, &f) != 0) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "cannot start a thread");
        close(f.fd);
        goto out;
    }
    fed = 1;
    if (pthread_create(&store_th, NULL, store_batches, &s) != 0) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "cannot start a thread");
        goto out;
    }
    stored = 1;
    b = bs[cur];
    for (size_t i = 0; i < nneed && !rc; i++) {
        const iobj *o = &L->o[order[i]];
        guts_id_to_hex(&o->id, hex);
        int k = rd_line(&r, line, sizeof line);
        if (k <= 0) {
            rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s stopped before object %s", gitdir,
                      hex);
            break;
        }
        if (check_header(line, o) != GUTS_OK) {
            rc = guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: for %s it said \"%.100s\"",
                      gitdir, hex, line);
            break;
        }
        if (o->size > GUTS_OBJ_MAX_DEFAULT || o->size > SIZE_MAX - 1) {
            rc =
                guts_git_errf(err, GUTS_ETOOBIG, "object %s in %s is %llu bytes, over the %llu limit", hex,
                     gitdir, (unsigned long long)o->size, (unsigned long long)GUTS_OBJ_MAX_DEFAULT);
            break;
        }
        if (o->size >= GUTS_LARGE_MIN) {
            /* Hand over what is gathered, wait until the storer is idle. */
            if (b->n) {
                if ((rc = storer_submit(&s, b, err))) break;
                cur ^= 1;
                b = bs[cur];
            }
            if ((rc = storer_submit(&s, NULL, err))) break;
            if ((rc = stream_large(repo, &r, o, gitdir, &s.added, err))) break;
            st->bytes += o->size;
            guts_progress_show(pg, i + 1, nneed, st->bytes, 0);
            continue;
        }
        if (b->n == GITIO_BATCH_OBJECTS || (b->n && b->bytes + o->size > GITIO_BATCH_BYTES)) {
            if ((rc = storer_submit(&s, b, err))) break;
            cur ^= 1;
            b = bs[cur];
        }
        void *data = batch_slot(b, (size_t)o->size);
        char nl = 0;
        if (!data) {
            rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", hex);
            break;
        }
        b->objs[b->n] = (guts_obj){.id = o->id,
                                   .type = o->type,
                                   .data = data,
                                   .len = (size_t)o->size,
                                   .base = guts_id_is_zero(&o->base_id) ? NULL : &o->base_id};
        b->n++;
        if (rd_exact(&r, data, o->size) || rd_exact(&r, &nl, 1) || nl != '\n') {
            rc =
                guts_git_errf(err, GUTS_EIO, "git cat-file --batch in %s: object %s truncated", gitdir, hex);
            break;
        }
        b->bytes += o->size;
        st->bytes += o->size;
        guts_progress_show(pg, i + 1, nneed, st->bytes, 0);
    }
    if (!rc) rc = storer_submit(&s, b, err);
    if (stored) {
        int src = storer_submit(&s, NULL, rc ? NULL : err); /* wait for the last batch */
        if (!rc) rc = src;
        pthread_mutex_lock(&s.mu);
        s.quit = 1;
        pthread_cond_broadcast(&s.cv);
        pthread_mutex_unlock(&s.mu);
        pthread_join(store_th, NULL);
    }
    st->objects_added = s.added;
out:
    if (rc && p.pid > 0) kill(p.pid, SIGTERM);
    for (int i = 0; i < 2; i++)
        if (bs[i]) {
            batch_clear(bs[i]);
            free(bs[i]->arena);
            free(bs[i]);
        }
    free(r.buf);
    if (fed) pthread_join(feed_th, NULL);
    if (fed) {
        pthread_mutex_destroy(&s.mu);
        pthread_cond_destroy(&s.cv);
    }
    {
        char werr[GUTS_GITIO_ERR_MAX], mine[GUTS_GITIO_ERR_MAX];
        int wrc = proc_wait(&p, werr);
        if (!rc && wrc) rc = guts_git_errf(err, wrc, "%s", werr);
        /* A short read usually means git gave up: say why, not just where. */
        else if (rc == GUTS_EIO && wrc && !strstr(werr, "killed by signal")) {
            memcpy(mine, err, sizeof mine);
            guts_git_errf(err, rc, "%.200s; %.250s", mine, werr);
        }
    }
    if (!rc && fed && f.rc) rc = guts_git_errf(err, f.rc, "writing ids to git cat-file --batch failed");
    return rc;
}

/* ---- Import: refs ------------------------------------------------------- */

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
    int rc = run_capture("git for-each-ref", argv, &buf, &len, err);
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
    if (run_capture("git symbolic-ref", sym, &buf, &len, ignored) == GUTS_OK) {
        buf[strcspn(buf, "\n")] = 0;
        int ok = strlen(buf) <= GUTS_REFNAME_MAX && guts_refname_check(buf) == GUTS_OK;
        if (ok) strcpy(symref, buf);
        free(buf);
        if (!ok) return guts_git_errf(err, GUTS_EINVAL, "%s: HEAD points at an invalid ref name", gitdir);
        return GUTS_OK;
    }
    int rc = run_capture("git rev-parse", rev, &buf, &len, err);
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
static int git_source(const char *gitdir, char *path, uint8_t src[GUTS_IMPORT_SRC_LEN], char *err)
{
    char *argv[] = {"git", "-C", (char *)gitdir, "rev-parse", "--absolute-git-dir", NULL};
    char *buf;
    size_t len;
    if (run_capture("git rev-parse", argv, &buf, &len, err) != GUTS_OK) {
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

static const char *const imp_why_text[] = {
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

static int imp_decide(const imp_case *c, int *why)
{
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

/* Committer dates can run backwards (clock skew between committers): the
 * fast-forward walk goes a day past the old commit's date before it gives
 * up, the slop git's own date cutoffs use (name-rev). */
#define IMPORT_FF_SLOP (24 * 3600)
/* Commits the fast-forward tests of one import may read, over all refs: a
 * bound on the work a hostile or strange history can cause. A test cut off
 * keeps its ref (the cautious answer) and says so. */
#define IMPORT_FF_COMMITS 200000

/* Is old an ancestor of new? Walks new's history in the store, newest
 * first by committer date, until old is found or every commit left is more
 * than IMPORT_FF_SLOP older than old. *ff: 1, 0, or IMP_FF_UNDECIDED when
 * *budget (commits, decremented) runs out. Not commits: 0. */
static int ff_test(guts_repo *r, const guts_id *old, const guts_id *new, uint64_t *budget, int *ff)
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
        it->act = imp_decide(&it->c, &it->why);
    }
    /* Fast-forward tests only where the rule needs them, in one budget. */
    uint64_t budget = IMPORT_FF_COMMITS;
    for (size_t i = 0; i < nitems; i++) {
        imp_item *it = &items[i];
        if (it->act != IMP_ASK_FF) continue;
        if ((rc = ff_test(repo, &it->s->id, &it->g->id, &budget, &it->c.ff))) {
            guts_git_errf(err, rc, "fast-forward test of %.200s: %s (%s)", it->g->name, guts_strerror(rc),
                 guts_store_errmsg());
            goto out;
        }
        it->act = imp_decide(&it->c, &it->why);
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
        if (opts->kept)
            opts->kept(opts->ctx, it->name, imp_why_text[it->why]);
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

static int import_refs(guts_repo *repo, const guts_node_id *node, const char *gitdir,
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

/* Import lists every object with `cat-file --batch-all-objects` (which has
 * no names: unreachable objects are stored too), so the names for the path
 * hints come from a `git rev-list --objects --all` run beside it; each of
 * its lines is looked up in the list by id. Its order (newest first) is
 * the order the hints follow, as in a push. */
static int import_hints_start(const char *gitdir, proc *rl, char *err)
{
    char *argv[] = {"git",      "-C",        (char *)gitdir, "--no-replace-objects",
                    "rev-list", "--objects", "--all",        NULL};
    return proc_start(rl, "git rev-list --objects --all", argv, PROC_NULL, 1, err);
}

static int import_hints(ilist *L, const uint32_t *perm, proc *rl, char *err)
{
    char line[GITIO_PATH_LINE_MAX];
    phints hints = {0};
    uint32_t prev;
    int rc = GUTS_OK;
    rd r = {.fd = rl->out, .buf = malloc(GITIO_IOBUF)};
    if (!r.buf) rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    while (!rc) {
        int k = rd_line_cut(&r, line, sizeof line, 1);
        if (k <= 0) break; /* the end, or a failed read: fewer hints */
        guts_id id;
        uint32_t i;
        if (strlen(line) <= GUTS_HEX_LEN || line[GUTS_HEX_LEN] != ' ' ||
            guts_id_from_hex(line, GUTS_HEX_LEN, &id) || (i = list_find(L, perm, &id)) == NONE)
            continue; /* a commit (no name), or not listed: no hint */
        if (hint_at_path(&hints, L, i, line + GUTS_HEX_LEN + 1, &prev))
            rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading names");
    }
    free(hints.key);
    free(hints.idx);
    free(r.buf);
    kill(rl->pid, SIGTERM); /* done with it, whatever it still has to say */
    proc_wait(rl, NULL);    /* a failed rev-list (a broken ref) only costs hints */
    return rc;
}

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
    int rc = ntips ? GUTS_OK : import_hints_start(gitdir, &names, err);
    if (!rc)
        rc = list_objects(gitdir, tips, ntips, exclude, nexclude, &L, nprev ? &firsts : NULL, err);
    if (!rc && firsts.n) prev_hints(gitdir, &L, &firsts, prev, nprev);
    pfirst_free(&firsts);
    if (!rc && !(perm = list_index(&L))) rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    if (names.pid > 0) {
        if (rc) kill(names.pid, SIGTERM);
        int hrc = rc ? proc_wait(&names, NULL) : import_hints(&L, perm, &names, err);
        if (!rc) rc = hrc;
    }
    if (!rc) rc = plan_import(r, &L, perm, &order, &nneed, err);
    free(perm);
    st->objects_total = L.n;
    if (!rc) rc = stream_objects(r, gitdir, &L, order, nneed, pg, st, err);
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
    if (run_capture("git rev-parse", argv, &buf, &len, err) != GUTS_OK) {
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
    int rc = git_source(gitdir, path, src, err); /* also: is it a repository? */
    if (rc) return rc;
    rc = store_objects(r, gitdir, NULL, 0, NULL, 0, NULL, 0, &pg, st, err);
    /* Refs only once every object they could point at is stored. */
    if (!rc) rc = import_refs(r, node, gitdir, path, src, opts, st, err);
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

/* ---- Export ------------------------------------------------------------- */

typedef struct collect_ids {
    guts_id *ids;
    size_t n, cap;
} collect_ids;

static int collect_id(const guts_id *id, void *ctx)
{
    collect_ids *c = ctx;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 4096;
        guts_id *ni = realloc(c->ids, nc * sizeof *ni);
        if (!ni) return GUTS_ENOMEM;
        c->ids = ni;
        c->cap = nc;
    }
    c->ids[c->n++] = *id;
    return 0;
}

int guts_gitio_read_order(guts_repo *r, guts_id **ids, size_t *n)
{
    guts_repo_info info;
    int rc = guts_repo_info_get(r, &info);
    if (rc) return rc;
    if (info.objects > SIZE_MAX / sizeof(guts_id)) return GUTS_ETOOBIG;
    guts_id *v = malloc((info.objects ? info.objects : 1) * sizeof *v);
    size_t got = 0;
    if (!v) return GUTS_ENOMEM;
    rc = guts_repo_recent(r, (size_t)info.objects, v, &got);
    if (rc == GUTS_OK && got == info.objects) {
        for (size_t i = 0; i < got / 2; i++) {
            guts_id t = v[i];
            v[i] = v[got - 1 - i];
            v[got - 1 - i] = t;
        }
        *ids = v;
        *n = got;
        return GUTS_OK;
    }
    free(v);
    collect_ids c = {0};
    rc = guts_repo_ids(r, NULL, NULL, collect_id, &c);
    if (rc) {
        free(c.ids);
        return rc;
    }
    *ids = c.ids;
    *n = c.n;
    return GUTS_OK;
}

typedef struct pentry {
    guts_id id;
    uint64_t off; /* of the entry's header in the pack */
    uint32_t crc; /* CRC-32 of the entry as stored (header and zlib data) */
} pentry;

static int cmp_pentry(const void *a, const void *b)
{
    return guts_id_cmp(&((const pentry *)a)->id, &((const pentry *)b)->id);
}

/* The version-2 pack index git reads: fan-out table, sorted ids, CRC-32s,
 * 31-bit offsets (larger ones in a 64-bit table), the pack's checksum and
 * the index's own SHA-1. Sorts e in place. */
static int write_idx(const char *path, pentry *e, size_t n, const uint8_t packsum[20], char *err)
{
    size_t large = 0, len, pos = 0;
    for (size_t i = 0; i < n; i++)
        large += e[i].off >= 0x80000000u;
    len = 8 + 256 * 4 + n * (GUTS_ID_LEN + 4 + 4) + large * 8 + 2 * 20;
    uint8_t *b = malloc(len);
    if (!b) return guts_git_errf(err, GUTS_ENOMEM, "out of memory for a pack index of %zu objects", n);
    if (n) qsort(e, n, sizeof *e, cmp_pentry);
    for (size_t i = 1; i < n; i++)
        if (guts_id_cmp(&e[i - 1].id, &e[i].id) == 0) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&e[i].id, hex);
            free(b);
            return guts_git_errf(err, GUTS_ECORRUPT, "the store listed object %s twice", hex);
        }
    memcpy(b, "\377tOc", 4);
    guts_pack_be32(b + 4, 2);
    pos = 8;
    size_t k = 0;
    for (unsigned byte = 0; byte < 256; byte++) {
        while (k < n && e[k].id.b[0] <= byte)
            k++;
        guts_pack_be32(b + pos, (uint32_t)k);
        pos += 4;
    }
    for (size_t i = 0; i < n; i++, pos += GUTS_ID_LEN)
        memcpy(b + pos, e[i].id.b, GUTS_ID_LEN);
    for (size_t i = 0; i < n; i++, pos += 4)
        guts_pack_be32(b + pos, e[i].crc);
    size_t li = 0;
    for (size_t i = 0; i < n; i++, pos += 4)
        guts_pack_be32(b + pos, e[i].off < 0x80000000u ? (uint32_t)e[i].off : 0x80000000u | (uint32_t)li++);
    for (size_t i = 0; i < n; i++) {
        if (e[i].off < 0x80000000u) continue;
        guts_pack_be32(b + pos, (uint32_t)(e[i].off >> 32));
        guts_pack_be32(b + pos + 4, (uint32_t)e[i].off);
        pos += 8;
    }
    memcpy(b + pos, packsum, 20);
    pos += 20;
    unsigned sl = 0;
    if (EVP_Digest(b, pos, b + pos, &sl, EVP_sha1(), NULL) != 1 || sl != 20) {
        free(b);
        return guts_git_errf(err, GUTS_EIO, "SHA-1 failed");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444), rc = GUTS_OK;
    if (fd < 0 || guts_write_all(fd, b, len) != GUTS_OK)
        rc = guts_git_errf(err, GUTS_EIO, "writing %s: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = guts_git_errf(err, GUTS_EIO, "writing %s: %s", path, strerror(errno));
    free(b);
    return rc;
}

/* Write every object into OUTDIR/objects/pack as pack-<sha>.pack and .idx.
 * Each object is rehashed on the way (the store verified it on insert; this
 * catches rot since then), so the index needs no second reading by git. */
static int write_pack(guts_repo *repo, const char *outdir, const guts_id *ids, size_t n, int level,
                      guts_progress *pg, guts_gitio_stats *st, char *err)
{
    guts_packw w = {.fd = -1};
    pentry *e = NULL;
    int fd = -1, rc = GUTS_OK;
    char hex[GUTS_HEX_LEN + 1], tmp[PATH_MAX], final[PATH_MAX];
    uint8_t sum[GUTS_ID_LEN];
    if (n > UINT32_MAX) return guts_git_errf(err, GUTS_ETOOBIG, "%zu objects do not fit in a pack", n);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/objects/pack/tmp_guts_XXXXXX", outdir) >= sizeof tmp)
        return guts_git_errf(err, GUTS_EINVAL, "path too long: %s", outdir);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return guts_git_errf(err, GUTS_EIO, "creating %s: %s", tmp, strerror(errno));
    e = malloc((n ? n : 1) * sizeof *e);
    rc = e ? guts_packw_open(&w, fd, level, 1, (uint32_t)n) : GUTS_ENOMEM;
    if (rc) {
        guts_git_errf(err, rc, "starting %s: %s", tmp, rc == GUTS_EIO ? strerror(errno) : guts_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        int type;
        void *data;
        size_t len;
        uint64_t size;
        guts_id h, base;
        uint8_t *delta;
        size_t dlen;
        guts_id_to_hex(&ids[i], hex);
        e[i].id = ids[i];
        e[i].off = guts_packw_offset(&w);
        rc = guts_repo_stat(repo, &ids[i], &type, &size);
        if (rc == GUTS_OK && size >= GUTS_LARGE_MIN) {
            rc = guts_packw_stream(&w, repo, &ids[i], type, size);
            e[i].crc = w.crc;
            if (rc) {
                guts_git_errf(err, rc, "object %s: %s (%s)", hex, guts_strerror(rc),
                     rc == GUTS_EIO ? strerror(errno) : guts_store_errmsg());
                break;
            }
            st->bytes += size;
            st->objects_added++;
            guts_progress_show(pg, i + 1, n, st->bytes, 0);
            continue;
        }
        if (!rc) rc = guts_repo_get(repo, &ids[i], &type, &data, &len);
        if (rc) {
            guts_git_errf(err, rc, "reading object %s from the store: %s", hex, guts_strerror(rc));
            break;
        }
        if (guts_obj_hash(type, data, len, &h) != GUTS_OK || guts_id_cmp(&h, &ids[i])) {
            free(data);
            rc = guts_git_errf(err, GUTS_ECORRUPT, "stored object %s does not hash to its id", hex);
            break;
        }
        /* Every stored object goes in this pack, so every base is in it. */
        if (guts_pack_delta_of(repo, &ids[i], type, data, len, NULL, NULL, &base, &delta, &dlen) ==
            GUTS_OK) {
            rc = guts_packw_ref_delta(&w, &base, delta, dlen);
            free(delta);
        } else {
            rc = guts_packw_object(&w, type, data, len);
        }
        e[i].crc = w.crc;
        free(data);
        if (rc) {
            guts_git_errf(err, rc, "writing object %s to %s: %s", hex, tmp,
                 rc == GUTS_EIO ? strerror(errno) : guts_strerror(rc));
            break;
        }
        st->bytes += len;
        st->objects_added++;
        guts_progress_show(pg, i + 1, n, st->bytes, 0);
    }
    if (!rc && (rc = guts_packw_finish(&w, sum)))
        guts_git_errf(err, rc, "writing %s: %s", tmp, strerror(errno));
    st->pack_bytes = w.total;
    if (!rc && (fchmod(fd, 0444) != 0 || close(fd) != 0))
        rc = guts_git_errf(err, GUTS_EIO, "writing %s: %s", tmp, strerror(errno));
    if (!rc) fd = -1;
    if (!rc) {
        /* The pack under its final name first: git finds packs by their .idx. */
        guts_id packid;
        memcpy(packid.b, sum, GUTS_ID_LEN);
        guts_id_to_hex(&packid, hex);
        snprintf(final, sizeof final, "%s/objects/pack/pack-%s.pack", outdir, hex);
        if (rename(tmp, final) != 0)
            rc = guts_git_errf(err, GUTS_EIO, "renaming %s: %s", tmp, strerror(errno));
        else
            tmp[0] = 0;
        snprintf(final, sizeof final, "%s/objects/pack/pack-%s.idx", outdir, hex);
        if (!rc) rc = write_idx(final, e, n, sum, err);
    }
out:
    if (fd >= 0) close(fd);
    if (rc && tmp[0]) unlink(tmp);
    guts_packw_free(&w);
    free(e);
    return rc;
}

typedef struct refbuf {
    char *s;
    size_t len, cap;
    guts_ref head;
    int have_head;
    uint64_t count;
} refbuf;

/* One packed-refs line per live ref under refs/, in the store's name order
 * (LMDB's byte order, which is git's "sorted" order). */
static int collect_export_ref(const guts_ref *ref, void *ctx)
{
    refbuf *b = ctx;
    if (strcmp(ref->name, "HEAD") == 0) {
        b->head = *ref;
        b->have_head = 1;
        return 0;
    }
    if (strncmp(ref->name, "refs/", 5) != 0 || guts_id_is_zero(&ref->target)) return 0;
    size_t need = strlen(ref->name) + GUTS_HEX_LEN + 2;
    if (b->len + need + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 65536;
        while (nc < b->len + need + 1)
            nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) return GUTS_ENOMEM;
        b->s = ns;
        b->cap = nc;
    }
    guts_id_to_hex(&ref->target, b->s + b->len);
    b->len += GUTS_HEX_LEN;
    b->len += (size_t)sprintf(b->s + b->len, " %s\n", ref->name);
    b->count++;
    return 0;
}

/* Write path atomically (temp file, then rename) with the given content. */
static int write_file(const char *path, const void *data, size_t len, char *err)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.guts-tmp", path) >= sizeof tmp)
        return guts_git_errf(err, GUTS_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc = GUTS_OK;
    if (fd < 0 || guts_write_all(fd, data, len) != GUTS_OK) rc = GUTS_EIO;
    if (fd >= 0 && close(fd) != 0) rc = GUTS_EIO;
    if (!rc && rename(tmp, path) != 0) rc = GUTS_EIO;
    if (rc) {
        guts_git_errf(err, rc, "writing %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

/* Refs go straight into packed-refs and HEAD into its file: what git's own
 * clone writes, and measured many times faster than `git update-ref --stdin`,
 * which creates and locks one loose file per ref. */
static int export_refs(const refbuf *b, const char *outdir, guts_gitio_stats *st, char *err)
{
    static const char header[] = "# pack-refs with: sorted \n";
    char path[PATH_MAX];
    int rc = GUTS_OK;
    if (b->len) {
        snprintf(path, sizeof path, "%s/packed-refs", outdir);
        char *all = malloc(sizeof header + b->len);
        if (!all) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        memcpy(all, header, sizeof header - 1);
        memcpy(all + sizeof header - 1, b->s, b->len);
        rc = write_file(path, all, sizeof header - 1 + b->len, err);
        free(all);
    }
    st->refs_total = b->count;
    if (rc || !b->have_head) return rc;
    char line[GUTS_REFNAME_MAX + 16];
    if (b->head.symref[0])
        snprintf(line, sizeof line, "ref: %s\n", b->head.symref);
    else if (!guts_id_is_zero(&b->head.target)) {
        guts_id_to_hex(&b->head.target, line);
        strcat(line, "\n");
    } else
        return GUTS_OK;
    snprintf(path, sizeof path, "%s/HEAD", outdir);
    rc = write_file(path, line, strlen(line), err);
    if (!rc) st->refs_total++;
    return rc;
}

static int dir_is_empty_or_absent(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int empty = 1;
    if (!d) return errno == ENOENT;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

/* What a failed export must remove so that the retry is not refused: the
 * topmost directory it made (OUTDIR, or OUTDIR's highest missing parent:
 * git init makes them), or, when OUTDIR was an existing empty directory,
 * only what is in it. *keep says which. */
static int export_made(const char *outdir, char *made, size_t cap, int *keep)
{
    struct stat sb;
    size_t n = strlen(outdir);
    while (n > 1 && outdir[n - 1] == '/')
        n--;
    if (n + 1 > cap) return GUTS_ETOOBIG;
    memcpy(made, outdir, n);
    made[n] = 0;
    *keep = stat(made, &sb) == 0;
    if (*keep) return GUTS_OK;
    for (;;) {
        char *slash = strrchr(made, '/');
        if (!slash || slash == made) return GUTS_OK;
        *slash = 0;
        int parent_exists = stat(made, &sb) == 0;
        *slash = '/';
        if (parent_exists) return GUTS_OK;
        *slash = 0; /* the parent is missing too: git init makes it */
    }
}

static const char *unmake_keep; /* nftw passes no context: the kept top */

static int unmake_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag;
    if (ftw->level == 0 && unmake_keep) return 0;
    remove(path); /* best effort: what cannot go is reported by the retry */
    return 0;
}

/* Remove what export_made named (never following a symbolic link out). */
static void export_unmake(const char *made, int keep)
{
    unmake_keep = keep ? made : NULL;
    nftw(made, unmake_one, 16, FTW_DEPTH | FTW_PHYS);
    unmake_keep = NULL;
}

static int export_into(guts_repo *r, const char *outdir, int level, guts_progress *pg,
                       guts_gitio_stats *st, char *err)
{
    guts_id *ids = NULL;
    size_t n = 0, len;
    char *out;
    char *init[] = {"git", "init", "--bare", "-q", (char *)outdir, NULL};
    int rc = run_capture("git init", init, &out, &len, err);
    if (rc) return rc;
    free(out);
    /* Refs before objects: a running node may add both meanwhile, but it
     * stores a ref only after everything it points at, and objects are
     * never removed, so every ref read now has its objects in the list read
     * next. The other order could export a ref to a missing object. */
    refbuf b = {0};
    rc = guts_repo_refs(r, 0, collect_export_ref, &b);
    if (rc) {
        free(b.s);
        return guts_git_errf(err, rc, "reading refs from the store: %s", guts_strerror(rc));
    }
    rc = guts_gitio_read_order(r, &ids, &n);
    if (rc) guts_git_errf(err, rc, "listing stored objects: %s", guts_strerror(rc));
    st->objects_total = n;
    if (!rc && n) rc = write_pack(r, outdir, ids, n, level, pg, st, err);
    free(ids);
    if (!rc && n) guts_progress_show(pg, n, n, st->bytes, 1);
    if (!rc) rc = export_refs(&b, outdir, st, err);
    free(b.s);
    return rc;
}

int guts_gitio_export(guts_repo *r, const char *outdir, int level, int progress_on,
                      guts_gitio_stats *st, char *err)
{
    guts_gitio_stats local;
    guts_progress pg;
    guts_progress_start(&pg, "export", progress_on);
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    err[0] = 0;
    if (level < 0 || level > 9) return guts_git_errf(err, GUTS_EINVAL, "zlib level %d is not 0-9", level);
    if (!dir_is_empty_or_absent(outdir))
        return guts_git_errf(err, GUTS_EEXIST, "\"%s\" exists and is not an empty directory", outdir);
    char made[PATH_MAX];
    int keep;
    if (export_made(outdir, made, sizeof made, &keep))
        return guts_git_errf(err, GUTS_ETOOBIG, "\"%.100s...\": path too long", outdir);
    int rc = export_into(r, outdir, level, &pg, st, err);
    /* A half-written repository is worse than none: git would take it for
     * a repository, and the retry would be refused as "not empty". */
    if (rc) export_unmake(made, keep);
    return rc;
}

/* ---- Merge ---------------------------------------------------------------- */

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
    int rc = run_capture_code("git merge-tree", mt, &o, &ol, &code, err);
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
    rc = run_capture("git commit-tree", anon ? ct_anon : ct_named, &o, &ol, err);
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
    int rc = export_into(r, dir, 0, &pg, &st, err);
    int anon = 0, code;
    char *o = NULL;
    size_t ol;
    char *var[] = {"git", "-C", dir, "var", "GIT_COMMITTER_IDENT", NULL};
    if (!rc && !(rc = run_capture_code("git var", var, &o, &ol, &code, err))) {
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
    export_unmake(dir, 0);
    if (!rc) *out = cur;
    return rc;
}
