/* envcheck.c - telling a damaged repository environment from a healthy one.
 *
 * LMDB trusts its file: it maps data.mdb and follows page numbers without
 * comparing them with the file's length, so a truncated file faults (SIGBUS)
 * at the first page past its end, and a page of garbage sends it to wild
 * offsets (SIGSEGV) or into an assertion (abort). None of these can be
 * caught and recovered from in the process they hit. Two checks keep such a
 * file from killing a process of ours:
 *
 *  - store_env_check_file(), before every open of an existing env: both
 *    meta pages read with pread(2), never through the map (page flags,
 *    magic, format version, page size); the newest one's last page and its
 *    database roots must lie inside the file. An empty or short data.mdb,
 *    which LMDB would silently initialise as a new empty environment, is
 *    damage too, unless another process holds LMDB's exclusive lock on it
 *    (it is creating the env this instant): that one is waited for. Costs
 *    two small reads. An env that carries the unflushed mark of another
 *    boot (below) is damage too.
 *  - store_env_walk() in a child process, when the caller asks for it
 *    (GUTS_REPO_VERIFY), or store_env_walk_many() for many envs in one
 *    child (a node at start: a fork per env would copy the page tables of
 *    every env already open, a cost growing with their number): every
 *    database of the env, the free list included, is read with a cursor,
 *    which visits every branch and leaf page, and every key and value must
 *    lie inside the file; each database's entry count must match its
 *    header. A child that dies by a signal, or that
 *    LMDB answers with MDB_CORRUPTED or MDB_PAGE_NOTFOUND, means damage
 *    (of the env it was reading: the next child goes on after it);
 *    the cause (LMDB's assertion text included: the child's stderr is the
 *    pipe) comes back to the parent. Costs a fork and a read of every branch
 *    and leaf page, not of overflow pages where the large values live
 *    (docs/operations.md, "A damaged disk", has the measured cost).
 *
 * Damage inside a value (a record's bytes) is not this file's concern: every
 * record is checked where it is read (lengths, zstd checksums, the SHA-1 of
 * every object) and reported as GUTS_ECORRUPT.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* LMDB 0.9's meta page on a 64-bit host: a 16-byte page header (page
 * number 8, pad 2, flags 2, lower/upper 4), then MDB_meta: magic 4,
 * version 4, address 8, map size 8, two MDB_db records of 48 bytes (free
 * list, main), the last page number 8 and the transaction id 8. An MDB_db is
 * pad 4 (the page size, in the free list's), flags 2, depth 2, branch, leaf
 * and overflow page counts and entries 8 each, root page 8. */
#define LMDB_PAGEHDR 16
#define LMDB_P_META 0x08
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u
#define LMDB_META_LEN (LMDB_PAGEHDR + 136)
#define LMDB_OFF_FLAGS 10
#define LMDB_OFF_MAGIC (LMDB_PAGEHDR + 0)
#define LMDB_OFF_VERSION (LMDB_PAGEHDR + 4)
#define LMDB_OFF_DB(i) (LMDB_PAGEHDR + 24 + 48 * (i))
#define LMDB_DB_ROOT 40
#define LMDB_OFF_LASTPG (LMDB_PAGEHDR + 120)
#define LMDB_OFF_TXNID (LMDB_PAGEHDR + 128)
#define LMDB_NO_PAGE UINT64_MAX /* P_INVALID: an empty database's root */
/* Page sizes LMDB can have written: powers of two from its minimum to its
 * maximum (MAX_PAGESIZE is 32 KiB in 0.9; 64 KiB allowed for later ones). */
#define LMDB_PSIZE_MIN 256u
#define LMDB_PSIZE_MAX 65536u

/* Exit codes of the walking child; any other end (a signal, a sanitizer's
 * exit) is damage as well. */
#define WALK_OK 0
#define WALK_DAMAGED 10
#define WALK_ERROR 11
/* Bytes of the child's report kept: one line of cause. */
#define WALK_REPORT_MAX 512

_Static_assert(sizeof(size_t) == 8, "the meta page layout above is LMDB's on 64-bit hosts");

/* Where an LMDB assertion's text goes before the process aborts
 * (guts_store_crash_note); NULL: stderr, as LMDB itself would print it. */
static char *crash_note;
static size_t crash_note_len;

void guts_store_crash_note(char *buf, size_t len)
{
    crash_note = buf;
    crash_note_len = buf ? len : 0;
}

/* LMDB calls this on a failed assertion and prints and aborts if it
 * returns: it does not return, so the text is said once, where asked. */
void store_assert(MDB_env *env, const char *msg)
{
    (void)env;
    if (crash_note_len) {
        snprintf(crash_note, crash_note_len, "%s", msg);
    } else {
        size_t n = strlen(msg);
        ssize_t w = write(STDERR_FILENO, msg, n);
        w = write(STDERR_FILENO, "\n", 1);
        (void)w;
    }
    abort();
}

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Read n bytes at off; 0, or the number read when short, or -1 (errno). */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* 1 if m is an LMDB meta page of the format we read, else 0 and why. */
static int meta_ok(const uint8_t *m, int which, char *why, size_t whylen)
{
    uint16_t flags;
    memcpy(&flags, m + LMDB_OFF_FLAGS, 2);
    if (!(flags & LMDB_P_META) || u32_at(m + LMDB_OFF_MAGIC) != LMDB_MAGIC) {
        snprintf(why, whylen, "meta page %d is not an LMDB meta page", which);
        return 0;
    }
    if (u32_at(m + LMDB_OFF_VERSION) != LMDB_DATA_VERSION) {
        snprintf(why, whylen, "meta page %d has format version %u, not %u", which,
                 u32_at(m + LMDB_OFF_VERSION), LMDB_DATA_VERSION);
        return 0;
    }
    return 1;
}

/* Wait until no process holds LMDB's exclusive lock on dir/lock.mdb (held
 * while an env is being created, and only then: afterwards LMDB holds it
 * shared). Our own read lock goes with the descriptor. */
static void wait_creator(const char *lockfile)
{
    int fd = open(lockfile, O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    while (fcntl(fd, F_SETLKW, &fl) != 0 && errno == EINTR) {
    }
    close(fd);
}

/* The check without the wait: GUTS_OK, GUTS_EDAMAGED (why says), GUTS_EIO. */
static int check_file_once(const char *file, char *why, size_t whylen)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "open %s: %s", file, strerror(errno));
        return GUTS_EIO;
    }
    uint8_t m0[LMDB_META_LEN], m1[LMDB_META_LEN];
    int rc = GUTS_EDAMAGED;
    struct stat st;
    ssize_t got = pread_full(fd, m0, sizeof m0, 0);
    if (got < 0) {
        snprintf(why, whylen, "read %s: %s", file, strerror(errno));
        rc = GUTS_EIO;
        goto out;
    }
    if (got == 0) {
        snprintf(why, whylen, "data.mdb is empty");
        goto out;
    }
    if ((size_t)got < sizeof m0) {
        snprintf(why, whylen, "data.mdb has %zd bytes, less than a meta page", got);
        goto out;
    }
    if (!meta_ok(m0, 0, why, whylen)) goto out;
    uint32_t psize = u32_at(m0 + LMDB_OFF_DB(0));
    if (psize < LMDB_PSIZE_MIN || psize > LMDB_PSIZE_MAX || (psize & (psize - 1))) {
        snprintf(why, whylen, "meta page 0 gives a page size of %u", psize);
        goto out;
    }
    got = pread_full(fd, m1, sizeof m1, psize);
    if (got < 0) {
        snprintf(why, whylen, "read %s: %s", file, strerror(errno));
        rc = GUTS_EIO;
        goto out;
    }
    if ((size_t)got < sizeof m1) {
        snprintf(why, whylen, "data.mdb ends inside its second meta page");
        goto out;
    }
    if (!meta_ok(m1, 1, why, whylen)) goto out;
    /* LMDB uses the meta page of the newer transaction. */
    const uint8_t *m = u64_at(m1 + LMDB_OFF_TXNID) > u64_at(m0 + LMDB_OFF_TXNID) ? m1 : m0;
    uint64_t last = u64_at(m + LMDB_OFF_LASTPG);
    /* The size after the metas were read: a writer extends the file before
     * it writes the meta page that refers to the new pages. */
    if (fstat(fd, &st) != 0) {
        snprintf(why, whylen, "stat %s: %s", file, strerror(errno));
        rc = GUTS_EIO;
        goto out;
    }
    uint64_t pages = (uint64_t)st.st_size / psize;
    if (last < 1 || last >= pages) {
        snprintf(why, whylen,
                 "data.mdb has %llu bytes (%llu pages of %u) but its meta page names page %llu",
                 (unsigned long long)st.st_size, (unsigned long long)pages, psize,
                 (unsigned long long)last);
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        uint64_t root = u64_at(m + LMDB_OFF_DB(i) + LMDB_DB_ROOT);
        if (root != LMDB_NO_PAGE && (root < 2 || root > last)) {
            snprintf(why, whylen, "the %s database's root is page %llu, outside pages 2-%llu",
                     i ? "main" : "free-list", (unsigned long long)root, (unsigned long long)last);
            goto out;
        }
    }
    rc = GUTS_OK;
out:
    close(fd);
    return rc;
}

int store_env_check_file(const char *dir, char *why, size_t whylen)
{
    char file[4096], lock[4096];
    if (snprintf(file, sizeof file, "%s/data.mdb", dir) >= (int)sizeof file ||
        snprintf(lock, sizeof lock, "%s/lock.mdb", dir) >= (int)sizeof lock) {
        snprintf(why, whylen, "path too long");
        return GUTS_EINVAL;
    }
    int rc = check_file_once(file, why, whylen);
    if (rc == GUTS_EDAMAGED) {
        /* Empty or short may be an env another process is creating right now. */
        wait_creator(lock);
        rc = check_file_once(file, why, whylen);
    }
    if (rc) return rc;
    long pid;
    rc = store_mark_check(dir, &pid, why, whylen);
    return rc == 1 ? GUTS_OK : rc;
}

/* ---- The walk -------------------------------------------------------------- */

typedef struct walk {
    const uint8_t *lo, *hi; /* the file's pages in the map */
    uint64_t last;          /* last page number */
    char *why;
    size_t whylen;
} walk;

static int inside(const walk *w, const MDB_val *v)
{
    const uint8_t *p = v->mv_data;
    return p >= w->lo && p <= w->hi && v->mv_size <= (size_t)(w->hi - p);
}

/* The free list's values are page lists: a count, then that many pages. */
static int freelist_ok(const walk *w, const MDB_val *v)
{
    if (v->mv_size < 8 || v->mv_size % 8) return 0;
    const uint8_t *p = v->mv_data;
    uint64_t n = u64_at(p);
    if (n != v->mv_size / 8 - 1) return 0;
    for (uint64_t i = 1; i <= n; i++)
        if (u64_at(p + 8 * i) > w->last) return 0;
    return 1;
}

/* Every entry of one database: WALK_OK, WALK_DAMAGED or WALK_ERROR. */
static int walk_db(walk *w, MDB_txn *txn, MDB_dbi dbi, const char *name)
{
    MDB_stat ms;
    MDB_cursor *cur;
    int rc = mdb_stat(txn, dbi, &ms);
    if (!rc) rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) {
        snprintf(w->why, w->whylen, "database %s: %s", name, mdb_strerror(rc));
        return WALK_ERROR;
    }
    MDB_val k, v;
    uint64_t n = 0;
    int res = WALK_OK;
    for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        /* Past the header's count: a page chain that loops would never
         * end; this bounds the walk (each step is bounded by the depth). */
        if (++n > ms.ms_entries) break;
        if (!inside(w, &k) || !inside(w, &v)) {
            snprintf(w->why, w->whylen, "database %s: entry %llu lies outside the file", name,
                     (unsigned long long)n);
            res = WALK_DAMAGED;
            break;
        }
        if (dbi == 0 && !freelist_ok(w, &v)) {
            snprintf(w->why, w->whylen, "the free list's entry %llu is not a list of pages",
                     (unsigned long long)n);
            res = WALK_DAMAGED;
            break;
        }
    }
    if (res == WALK_OK && rc != MDB_NOTFOUND && n <= ms.ms_entries) {
        snprintf(w->why, w->whylen, "database %s: %s", name, mdb_strerror(rc));
        res = rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ? WALK_DAMAGED : WALK_ERROR;
    }
    if (res == WALK_OK && n > ms.ms_entries) {
        snprintf(w->why, w->whylen, "database %s: more entries than its header counts (%llu)", name,
                 (unsigned long long)ms.ms_entries);
        res = WALK_DAMAGED;
    } else if (res == WALK_OK && n != ms.ms_entries) {
        snprintf(w->why, w->whylen, "database %s: %llu entries read, its header counts %llu", name,
                 (unsigned long long)n, (unsigned long long)ms.ms_entries);
        res = WALK_DAMAGED;
    }
    mdb_cursor_close(cur);
    return res;
}

/* Where this process maps the file open as fd: LMDB does not say
 * (mdb_env_info's address is the meta page's, not the map's), so the
 * kernel's list of mappings is read. 0 when found. */
static int map_of(int fd, const uint8_t **start)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return -1;
    char line[4096];
    int rc = -1;
    while (rc && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off, ino;
        unsigned maj, min;
        if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &min, &ino) == 6 &&
            off == 0 && ino == (unsigned long)st.st_ino && makedev(maj, min) == st.st_dev) {
            *start = (const uint8_t *)(uintptr_t)lo;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

/* Every database of the env open in txn: WALK_OK, WALK_DAMAGED or
 * WALK_ERROR, the cause in why. */
static int walk_txn(MDB_env *env, MDB_txn *txn, char *why, size_t whylen)
{
    MDB_envinfo info;
    MDB_stat st;
    int rc;
    if ((rc = mdb_env_info(env, &info)) || (rc = mdb_env_stat(env, &st))) {
        snprintf(why, whylen, "open: %s", mdb_strerror(rc));
        return WALK_ERROR;
    }
    mdb_filehandle_t fd;
    const uint8_t *map;
    if ((rc = mdb_env_get_fd(env, &fd)) || map_of(fd, &map)) {
        snprintf(why, whylen, "cannot find the map of data.mdb");
        return WALK_ERROR;
    }
    walk w = {.lo = map,
              .hi = map + (info.me_last_pgno + 1) * st.ms_psize,
              .last = info.me_last_pgno,
              .why = why,
              .whylen = whylen};
    MDB_dbi main;
    if ((rc = mdb_dbi_open(txn, NULL, 0, &main))) {
        snprintf(why, whylen, "main database: %s", mdb_strerror(rc));
        return WALK_ERROR;
    }
    int res = walk_db(&w, txn, 0, "free list");
    if (res == WALK_OK) res = walk_db(&w, txn, main, "main");
    /* The main database holds the named ones: walk each. */
    MDB_cursor *cur = NULL;
    if (res == WALK_OK && (rc = mdb_cursor_open(txn, main, &cur))) {
        snprintf(why, whylen, "main database: %s", mdb_strerror(rc));
        res = WALK_ERROR;
    }
    MDB_val k, v;
    for (MDB_cursor_op op = MDB_FIRST;
         res == WALK_OK && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        char name[64];
        if (k.mv_size == 0 || k.mv_size >= sizeof name || memchr(k.mv_data, 0, k.mv_size)) {
            snprintf(why, whylen, "the main database holds a name of %zu bytes", k.mv_size);
            res = WALK_DAMAGED;
            break;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = 0;
        MDB_dbi dbi;
        if ((rc = mdb_dbi_open(txn, name, 0, &dbi))) {
            snprintf(why, whylen, "database %s: %s", name, mdb_strerror(rc));
            res = rc == MDB_INCOMPATIBLE || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
                          rc == MDB_DBS_FULL
                      ? WALK_DAMAGED
                      : WALK_ERROR;
            break;
        }
        res = walk_db(&w, txn, dbi, name);
    }
    if (cur) mdb_cursor_close(cur);
    return res;
}

/* Check dir's file, open its env and read every database, then close it
 * (one child checks many envs: nothing may stay open). */
static int walk_env(const char *dir, size_t mapsize, char *why, size_t whylen)
{
    int rc = store_env_check_file(dir, why, whylen);
    if (rc == GUTS_EDAMAGED) return WALK_DAMAGED;
    if (rc != GUTS_OK) return WALK_ERROR;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_assert(env, store_assert)) ||
        (rc = mdb_env_set_maxdbs(env, STORE_REPO_MAXDBS)) ||
        (rc = mdb_env_set_mapsize(env, mapsize)) ||
        (rc = mdb_env_open(env, dir, MDB_NOTLS, 0600)) ||
        (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))) {
        snprintf(why, whylen, "open: %s", mdb_strerror(rc));
        if (env) mdb_env_close(env);
        return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ? WALK_DAMAGED
                                                                                   : WALK_ERROR;
    }
    int res = walk_txn(env, txn, why, whylen);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return res;
}

/* The child: check dirs[from..n) in order, one result line each on fd
 * ("=INDEX RES CAUSE"), then exit. Its stderr is the same pipe, so an LMDB
 * assertion's text (or a sanitizer's report) reaches the parent as the
 * cause for the env being read. _exit: nothing of the parent's (stdio
 * buffers, atexit handlers) runs here. */
static _Noreturn void walk_child(int fd, const char *const *dirs, size_t from, size_t n,
                                 size_t mapsize)
{
    signal(SIGPIPE, SIG_IGN);
    guts_store_crash_note(NULL, 0);
    if (dup2(fd, STDERR_FILENO) < 0) _exit(WALK_ERROR);
    for (size_t i = from; i < n; i++) {
        char msg[WALK_REPORT_MAX], line[WALK_REPORT_MAX + 32];
        msg[0] = 0;
        int res = walk_env(dirs[i], mapsize, msg, sizeof msg);
        for (char *p = msg; *p; p++)
            if (*p == '\n') *p = ' ';
        int len = snprintf(line, sizeof line, "=%zu %d %s\n", i, res, msg);
        if (len < 0 || (size_t)len >= sizeof line) len = (int)sizeof line - 1, line[len - 1] = '\n';
        if (write(STDERR_FILENO, line, (size_t)len) != len) _exit(WALK_ERROR);
    }
    _exit(WALK_OK);
}

/* One line of the child's output, NUL-terminated without its newline:
 * a result for dirs[*next] goes to cb and moves *next on; any other line
 * is kept in note (the first since the last result) as the cause of a
 * death that may follow. */
static void walk_line(char *line, size_t *next, char *note, size_t notelen, store_env_walk_fn cb,
                      void *ctx)
{
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
    size_t i;
    int res, off = 0;
    if (sscanf(line, "=%zu %d %n", &i, &res, &off) == 2 && off > 0 && i == *next) {
        const char *why = line + off;
        char buf[WALK_REPORT_MAX + 32];
        int rc = GUTS_OK;
        if (res == WALK_DAMAGED) {
            rc = GUTS_EDAMAGED;
        } else if (res != WALK_OK) {
            snprintf(buf, sizeof buf, "checking it failed: %s", why);
            why = buf;
            rc = GUTS_EIO;
        }
        cb(i, rc, rc ? why : "", ctx);
        ++*next;
        note[0] = 0;
    } else if (!note[0]) {
        snprintf(note, notelen, "%s", line);
    }
}

int store_env_walk_many(const char *const *dirs, size_t n, size_t mapsize, store_env_walk_fn cb,
                        void *ctx)
{
    size_t next = 0;
    while (next < n) {
        int fds[2];
        char why[STORE_WHY_MAX];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            snprintf(why, sizeof why, "pipe: %s", strerror(errno));
            goto fail;
        }
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(why, sizeof why, "fork: %s", strerror(errno));
            close(fds[0]);
            close(fds[1]);
            goto fail;
        }
        if (pid == 0) {
            close(fds[0]);
            walk_child(fds[1], dirs, next, n, mapsize);
        }
        close(fds[1]);
        /* Lines as they come: a long one is cut at the buffer's end. */
        char line[WALK_REPORT_MAX + 64], note[WALK_REPORT_MAX];
        size_t have = 0;
        note[0] = 0;
        for (;;) {
            char buf[4096];
            ssize_t k = read(fds[0], buf, sizeof buf);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            for (ssize_t j = 0; j < k; j++) {
                if (buf[j] != '\n' && have < sizeof line - 1) line[have++] = buf[j];
                if (buf[j] != '\n') continue;
                line[have] = 0;
                walk_line(line, &next, note, sizeof note, cb, ctx);
                have = 0;
            }
        }
        if (have) {
            line[have] = 0;
            walk_line(line, &next, note, sizeof note, cb, ctx);
        }
        close(fds[0]);
        int status;
        pid_t w;
        while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (w < 0) {
            snprintf(why, sizeof why, "waitpid: %s", strerror(errno));
            goto fail;
        }
        if (next == n) break;
        /* The child ended inside dirs[next]: reading it killed the child. */
        if (WIFSIGNALED(status))
            snprintf(why, sizeof why, "reading it killed a checking process (%s)%s%s",
                     strsignal(WTERMSIG(status)), note[0] ? ": " : "", note);
        else
            snprintf(why, sizeof why, "a checking process failed (exit %d)%s%s",
                     WEXITSTATUS(status), note[0] ? ": " : "", note);
        cb(next++, GUTS_EDAMAGED, why, ctx);
        continue;
    fail:
        /* No child: the rest is not checked. */
        for (; next < n; next++)
            cb(next, GUTS_EIO, why, ctx);
    }
    return GUTS_OK;
}

/* store_env_walk's result, from its one callback. */
typedef struct walk_one {
    int rc;
    char *why;
    size_t whylen;
} walk_one;

static void walk_one_cb(size_t i, int rc, const char *why, void *ctx)
{
    (void)i;
    walk_one *o = ctx;
    o->rc = rc;
    snprintf(o->why, o->whylen, "%s", why);
}

int store_env_walk(const char *dir, size_t mapsize, char *why, size_t whylen)
{
    walk_one o = {.rc = GUTS_EIO, .why = why, .whylen = whylen};
    snprintf(why, whylen, "no result from the checking process");
    store_env_walk_many(&dir, 1, mapsize, walk_one_cb, &o);
    return o.rc;
}

/* ---- A replica's unflushed mark ----------------------------------------------
 *
 * A replica whose first copy commits without flushes (GUTS_REPO_NOSYNC)
 * reuses pages like any env, so a system crash could leave its newest
 * meta page naming a page whose new content never reached the disk while
 * the old one did: a tree that reads as whole and is not. The mark rules
 * that out: STORE_NOSYNC_MARK in the env's directory, holding the boot id
 * of the system and the pid of the process that writes so, is on the disk
 * (its directory entry flushed) before the first such commit and
 * goes only after a flush that follows the last one. An env found with
 * the mark of another boot went through a system crash or restart in that
 * window: it is damage (set aside, pulled again). With this boot's mark
 * and its process gone, only a process died: the kernel holds every write
 * it made, and one flush makes the env whole on the disk. */

/* The running system's boot id into out (36 characters); 0, or -1. */
static int boot_id(char *out, size_t len)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = pread_full(fd, out, len - 1, 0);
    close(fd);
    if (n < 8) return -1;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        n--;
    out[n] = 0;
    return 0;
}

static int mark_path(const char *dir, char *path, size_t len)
{
    return snprintf(path, len, "%s/%s", dir, STORE_NOSYNC_MARK) >= (int)len ? -1 : 0;
}

/* Flush the directory entry of a file created or removed in dir. */
static int dir_flush(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int store_mark_write(const char *dir)
{
    char path[4096], id[64], text[96];
    if (mark_path(dir, path, sizeof path) || boot_id(id, sizeof id)) return GUTS_EIO;
    int n = snprintf(text, sizeof text, "%s %ld\n", id, (long)getpid());
    /* Only its name must be on the disk: a mark that lost its content in
     * a crash reads as another boot's, which is what it then is. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return GUTS_EIO;
    int ok = write(fd, text, (size_t)n) == n;
    close(fd);
    if (ok && dir_flush(dir) == 0) return GUTS_OK;
    unlink(path);
    return GUTS_EIO;
}

int store_mark_clear(const char *dir)
{
    char path[4096];
    if (mark_path(dir, path, sizeof path)) return GUTS_EIO;
    if (unlink(path) != 0) return errno == ENOENT ? GUTS_OK : GUTS_EIO;
    return dir_flush(dir) == 0 ? GUTS_OK : GUTS_EIO;
}

int store_mark_check(const char *dir, long *pid, char *why, size_t whylen)
{
    char path[4096], had[96], id[64];
    *pid = 0;
    if (mark_path(dir, path, sizeof path)) {
        snprintf(why, whylen, "path too long");
        return GUTS_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return GUTS_OK;
        snprintf(why, whylen, "open %s: %s", path, strerror(errno));
        return GUTS_EIO;
    }
    ssize_t n = pread_full(fd, had, sizeof had - 1, 0);
    close(fd);
    had[n > 0 ? n : 0] = 0;
    size_t idlen = strcspn(had, " \n");
    if (boot_id(id, sizeof id) == 0 && idlen == strlen(id) && memcmp(had, id, idlen) == 0) {
        *pid = strtol(had + idlen, NULL, 10);
        return 1;
    }
    snprintf(why, whylen,
             "a first copy without flushes was under way when the system stopped (%s)",
             STORE_NOSYNC_MARK);
    return GUTS_EDAMAGED;
}

int store_mark_gone(long pid)
{
    if (pid <= 0 || pid == (long)getpid()) return 1;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* The node ends its mode at its next commit, or at its next poll tick
 * without one (~0.3 s), then flushes: a few seconds cover a loaded box. */
#define MARK_SETTLE_MS 10000
#define MARK_SETTLE_STEP_MS 5

int store_mark_settle(const char *dir)
{
    char why[STORE_WHY_MAX];
    long pid;
    for (int waited = 0; store_mark_check(dir, &pid, why, sizeof why) == 1;
         waited += MARK_SETTLE_STEP_MS) {
        /* its writer gone (or us, past the mode): our commit flushed the
         * file with every write it made */
        if (store_mark_gone(pid)) return store_mark_clear(dir) == GUTS_OK ? GUTS_OK : GUTS_EIO;
        if (waited >= MARK_SETTLE_MS) {
            guts_errmsg_set("committed, but the node is still making its first copy of this "
                            "repository without flushes; a system crash now would set it aside");
            return GUTS_EAGAIN;
        }
        struct timespec ts = {0, MARK_SETTLE_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return GUTS_OK;
}
