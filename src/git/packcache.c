/* packcache.c - whole clone packs on disk (packcache.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pack.h"
#include "packcache.h"

static int id_order(const void *a, const void *b)
{
    return guts_id_cmp(a, b);
}

/* Hash a set of ids, sorted and without repeats, with its count first (so
 * that no two different requests hash the same bytes); with `minus`
 * (sorted, nminus), the ids in it are left out. */
static int hash_set(EVP_MD_CTX *sha, const guts_id *ids, size_t n, const guts_id *minus,
                    size_t nminus)
{
    guts_id *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return GUTS_ENOMEM;
    if (n) memcpy(s, ids, n * sizeof *s);
    qsort(s, n, sizeof *s, id_order);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if ((!k || guts_id_cmp(&s[k - 1], &s[i]) != 0) &&
            (!nminus || !bsearch(&s[i], minus, nminus, sizeof *minus, id_order)))
            s[k++] = s[i];
    uint64_t count = k;
    int ok = EVP_DigestUpdate(sha, &count, sizeof count) == 1 &&
             (!k || EVP_DigestUpdate(sha, s, k * sizeof *s) == 1);
    free(s);
    return ok ? GUTS_OK : GUTS_ENOMEM;
}

/* name: R-K.pack of a request (packcache.h). The wants are a set (a
 * mirror clone names one commit once per ref that points at it), and a
 * tag offered for include-tag that is also wanted changes nothing. */
static int key_name(const char *key, const guts_id *wants, size_t nwants, const guts_id *tags,
                    size_t ntags, char name[80])
{
    guts_id rsum, ksum;
    unsigned sl = 0;
    guts_id *w = malloc((nwants ? nwants : 1) * sizeof *w);
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int rc = w && sha && EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 &&
                     EVP_DigestUpdate(sha, key, strlen(key) + 1) == 1 &&
                     EVP_DigestFinal_ex(sha, rsum.b, &sl) == 1 &&
                     EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 &&
                     EVP_DigestUpdate(sha, key, strlen(key) + 1) == 1
                 ? GUTS_OK
                 : GUTS_ENOMEM;
    if (!rc) {
        if (nwants) memcpy(w, wants, nwants * sizeof *w);
        qsort(w, nwants, sizeof *w, id_order);
        rc = hash_set(sha, wants, nwants, NULL, 0);
    }
    if (!rc) rc = hash_set(sha, tags, ntags, w, nwants);
    if (!rc && EVP_DigestFinal_ex(sha, ksum.b, &sl) != 1) rc = GUTS_ENOMEM;
    EVP_MD_CTX_free(sha);
    free(w);
    if (rc) return rc;
    char r[GUTS_HEX_LEN + 1], k[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&rsum, r);
    guts_id_to_hex(&ksum, k);
    snprintf(name, 80, "%.16s-%s.pack", r, k);
    return GUTS_OK;
}

/* The object list's path beside pack name (R-K.pack): prefix, R-K.ids. */
static void ids_name(const char *name, const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s%.*s.ids", prefix, (int)(strlen(name) - 5), name);
}

/* Remove pack name in dir and its object list (a damaged one). */
static void remove_pack(const char *dir, const char *name)
{
    char path[4096 + 96];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    (void)unlink(path);
    char prefix[4096 + 2];
    snprintf(prefix, sizeof prefix, "%s/", dir);
    ids_name(name, prefix, path, sizeof path);
    (void)unlink(path);
}

int guts_packcache_init(guts_packcache *c, const char *data_path, const char *key,
                        const guts_id *wants, size_t nwants, const guts_id *tags, size_t ntags)
{
    memset(c, 0, sizeof *c);
    c->fd = c->base_fd = -1;
    c->budget = GUTS_PACKCACHE_BUDGET;
    int n = snprintf(c->dir, sizeof c->dir, "%s/git-packs", data_path);
    if (n < 0 || (size_t)n >= sizeof c->dir) return GUTS_EINVAL;
    return key_name(key, wants, nwants, tags, ntags, c->name);
}

int guts_packcache_also(guts_packcache *c, const char *key, const guts_id *wants, size_t nwants,
                        const guts_id *tags, size_t ntags)
{
    return key_name(key, wants, nwants, tags, ntags, c->also);
}

/* Read the pack on fd from its start as it grows (grow says how long it is
 * now and whether it is whole; a finished file is whole at once), handing
 * out(ctx, ...) its bytes from offset `from` up to its trailer, held back
 * by 20 bytes until the end is known, and, with_trailer, the trailer too
 * once it is the SHA-1 of everything before it. GUTS_ECORRUPT when it is
 * not, GUTS_EIO, GUTS_ENOMEM, or grow's or out's error. */
static int read_checked(int fd, guts_packcache_grow_fn grow, void *gctx, uint64_t from,
                        int with_trailer, int (*out)(void *ctx, const void *buf, size_t n),
                        void *ctx)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    uint8_t *buf = malloc(1u << 16);
    int rc = sha && buf && EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 ? GUTS_OK : GUTS_ENOMEM;
    uint64_t size = 0, done = 0;
    int whole = 0;
    while (!rc) {
        uint64_t body = size < 20 ? 0 : size - 20;
        if (done == body) {
            if (whole) break;
            rc = grow(gctx, size, &size, &whole);
            continue;
        }
        size_t want = body - done < (1u << 16) ? (size_t)(body - done) : 1u << 16;
        ssize_t k = pread(fd, buf, want, (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rc = GUTS_EIO;
            break;
        }
        size_t n = (size_t)k, skip = done < from ? (size_t)(from - done < n ? from - done : n) : 0;
        if (EVP_DigestUpdate(sha, buf, n) != 1) rc = GUTS_ENOMEM;
        if (!rc && n > skip) rc = out(ctx, buf + skip, n - skip);
        done += n;
    }
    if (!rc && size < 12 + 20) rc = GUTS_EIO;
    if (!rc) {
        uint8_t sum[20], tail[20];
        unsigned sl = 0;
        if (pread(fd, tail, 20, (off_t)(size - 20)) != 20)
            rc = GUTS_EIO;
        else if (EVP_DigestFinal_ex(sha, sum, &sl) != 1 || memcmp(sum, tail, 20) != 0)
            rc = GUTS_ECORRUPT;
        else if (with_trailer)
            rc = out(ctx, tail, 20);
    }
    free(buf);
    EVP_MD_CTX_free(sha);
    return rc;
}

/* A finished file: as long as fstat says, whole. */
static int grow_done(void *ctx, uint64_t have, uint64_t *size, int *whole)
{
    struct stat st;
    (void)have;
    if (fstat(*(int *)ctx, &st) != 0) return GUTS_EIO;
    *size = (uint64_t)st.st_size;
    *whole = 1;
    return GUTS_OK;
}

/* Send pack `name` of c's directory (packcache_send). */
static int send_named(guts_packcache *c, const char *name,
                      int (*sink)(void *ctx, const void *buf, size_t n), void *ctx)
{
    char path[sizeof c->dir + sizeof c->name + 1];
    snprintf(path, sizeof path, "%s/%s", c->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? GUTS_ENOTFOUND : GUTS_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 12 + 20) {
        close(fd);
        return GUTS_ENOTFOUND;
    }
    (void)utimensat(AT_FDCWD, path, NULL, 0); /* recently used: pruned last */
    int rc = read_checked(fd, grow_done, &fd, 0, 1, sink, ctx);
    if (rc == GUTS_ECORRUPT) remove_pack(c->dir, name);
    close(fd);
    return rc;
}

int guts_packcache_send(guts_packcache *c, int (*sink)(void *ctx, const void *buf, size_t n),
                        void *ctx)
{
    int rc = send_named(c, c->name, sink, ctx);
    if (rc == GUTS_ENOTFOUND && c->also[0]) rc = send_named(c, c->also, sink, ctx);
    return rc;
}

int guts_packcache_follow(int fd, guts_packcache_grow_fn grow, void *gctx,
                          int (*sink)(void *ctx, const void *buf, size_t n), void *ctx)
{
    return read_checked(fd, grow, gctx, 0, 1, sink, ctx);
}

int guts_packcache_begin(guts_packcache *c)
{
    static atomic_uint seq;
    if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) return GUTS_EIO;
    snprintf(c->tmp, sizeof c->tmp, "%s/.%.*s.%ld-%u", c->dir, (int)(strlen(c->name) - 5), c->name,
             (long)getpid(), atomic_fetch_add(&seq, 1));
    c->fd = open(c->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (c->fd < 0) {
        c->tmp[0] = 0;
        return GUTS_EIO;
    }
    return GUTS_OK;
}

/* Give up the pack being written (its files removed), leaving the base
 * pack, which may be being read, to guts_packcache_free. */
static void abandon(guts_packcache *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->tmp[0]) (void)unlink(c->tmp);
    c->tmp[0] = 0;
    if (c->ids_tmp[0]) (void)unlink(c->ids_tmp);
    c->ids_tmp[0] = 0;
    free(c->ids);
    c->ids = NULL;
    c->nids = 0;
}

void guts_packcache_write(guts_packcache *c, const void *buf, size_t n)
{
    if (c->fd < 0 || !c->tmp[0]) return;
    if (guts_write_all(c->fd, buf, n) != GUTS_OK) abandon(c);
}

/* A cached pack and its age and size (with its object list), for pruning. */
typedef struct cached {
    char name[80];
    struct timespec mtime;
    uint64_t bytes;
} cached;

static int newest_first(const void *a, const void *b)
{
    const struct timespec *x = &((const cached *)a)->mtime, *y = &((const cached *)b)->mtime;
    if (x->tv_sec != y->tv_sec) return x->tv_sec < y->tv_sec ? 1 : -1;
    return x->tv_nsec < y->tv_nsec ? 1 : x->tv_nsec > y->tv_nsec ? -1 : 0;
}

/* After c's pack was committed: keep it, then the most recently served
 * packs while they fit c->budget, at most GUTS_PACKCACHE_PER_REPO of c's
 * repository; remove the rest, and the repository's stale half-written
 * files. */
static void prune(const guts_packcache *c)
{
    DIR *d = opendir(c->dir);
    if (!d) return;
    cached *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    time_t now = time(NULL);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        struct stat st;
        /* a file of this repository left half written by a process that
         * was killed (one being written is younger: its writes touch it) */
        if (e->d_name[0] == '.' && strncmp(e->d_name + 1, c->name, 17) == 0 &&
            fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
            st.st_mtime < now - GUTS_PACKCACHE_STALE_SECS) {
            (void)unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        if (len >= sizeof v->name || len < 5 || e->d_name[0] == '.' ||
            strcmp(e->d_name + len - 5, ".pack") != 0)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, 0) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            cached *nv = realloc(v, cap * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        memcpy(v[n].name, e->d_name, len + 1);
        v[n].mtime = st.st_mtim;
        v[n].bytes = (uint64_t)st.st_size;
        char ids[96];
        ids_name(e->d_name, "", ids, sizeof ids);
        if (fstatat(dirfd(d), ids, &st, 0) == 0) v[n].bytes += (uint64_t)st.st_size;
        n++;
    }
    qsort(v, n, sizeof *v, newest_first);
    uint64_t total = 0;
    size_t mine = 0;
    for (int self = 1; self >= 0; self--) /* c's own pack first, whatever its time */
        for (size_t i = 0; i < n; i++) {
            if ((strcmp(v[i].name, c->name) == 0) != self) continue;
            int same = strncmp(v[i].name, c->name, 17) == 0;
            if (self || ((!same || mine < GUTS_PACKCACHE_PER_REPO) &&
                         total + v[i].bytes <= c->budget)) {
                total += v[i].bytes;
                mine += (size_t)same;
                continue;
            }
            char ids[96];
            ids_name(v[i].name, "", ids, sizeof ids);
            (void)unlinkat(dirfd(d), ids, 0);
            (void)unlinkat(dirfd(d), v[i].name, 0);
        }
    free(v);
    closedir(d);
}

/* The pack's object list (c->ids) sorted into its file beside it: at the
 * commit, not before the pack, since the client waits for the pack's first
 * byte and the list is for later clones (a cold zlib clone: 12,341 ids
 * sorted and 247 KB written). 0 on failure. */
static int write_ids(guts_packcache *c)
{
    qsort(c->ids, c->nids, sizeof *c->ids, id_order);
    snprintf(c->ids_tmp, sizeof c->ids_tmp, "%s.ids", c->tmp);
    int fd = open(c->ids_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) c->ids_tmp[0] = 0;
    int ok = fd >= 0 && guts_write_all(fd, c->ids, c->nids * sizeof *c->ids) == GUTS_OK;
    if (fd >= 0 && close(fd) != 0) ok = 0;
    return ok;
}

void guts_packcache_commit(guts_packcache *c)
{
    if (c->fd < 0 || !c->tmp[0]) return;
    char path[sizeof c->dir + sizeof c->name + 1];
    snprintf(path, sizeof path, "%s/%s", c->dir, c->name);
    int ok = close(c->fd) == 0;
    c->fd = -1;
    if (ok && c->ids) ok = write_ids(c);
    if (ok && c->ids_tmp[0]) {
        char dir[sizeof c->dir + 1], ids[sizeof path];
        snprintf(dir, sizeof dir, "%s/", c->dir);
        ids_name(c->name, dir, ids, sizeof ids);
        ok = rename(c->ids_tmp, ids) == 0;
        if (ok) c->ids_tmp[0] = 0;
    }
    if (ok && rename(c->tmp, path) == 0) {
        c->tmp[0] = 0;
        prune(c);
    }
    guts_packcache_free(c);
}

void guts_packcache_free(guts_packcache *c)
{
    abandon(c);
    guts_packcache_free_base(c);
}

void guts_packcache_free_base(guts_packcache *c)
{
    free(c->base_ids);
    c->base_ids = NULL;
    c->nbase = 0;
    if (c->base[0] && c->base_fd >= 0) close(c->base_fd);
    c->base_fd = -1;
    c->base[0] = 0;
}

/* ---- a pack's objects, and an earlier pack as the start of a new one ------------ */

void guts_packcache_objects(guts_packcache *c, const guts_id *ids, size_t n)
{
    if (c->fd < 0 || !c->tmp[0]) return;
    free(c->ids);
    c->nids = 0;
    if (!(c->ids = malloc((n ? n : 1) * sizeof *c->ids))) {
        abandon(c);
        return;
    }
    if (n) memcpy(c->ids, ids, n * sizeof *c->ids);
    c->nids = n;
}

/* Pack name's object list in dir (d open on it), if its length agrees
 * with the pack's header count and every id is in sel (sorted, nsel):
 * *ids (malloc'd), *count and the pack open on *fd. GUTS_ENOTFOUND
 * otherwise (nothing held), GUTS_ENOMEM. */
static int load_subset(DIR *d, const char *dir, const char *name, const guts_id *sel, size_t nsel,
                       guts_id **ids, size_t *count, int *fd)
{
    char path[4096 + 96];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *ids = NULL;
    *count = 0;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t head[12];
    size_t n = 0;
    int rc = *fd >= 0 && read(*fd, head, sizeof head) == (ssize_t)sizeof head &&
                     memcmp(head, "PACK\0\0\0\2", 8) == 0
                 ? GUTS_OK
                 : GUTS_ENOTFOUND;
    if (!rc) n = (size_t)head[8] << 24 | (size_t)head[9] << 16 | (size_t)head[10] << 8 | head[11];
    char idsn[96];
    ids_name(name, "", idsn, sizeof idsn);
    int ifd = rc ? -1 : openat(dirfd(d), idsn, O_RDONLY | O_CLOEXEC);
    struct stat st;
    /* the list's size is checked before anything is allocated; a pack
     * larger than the selection cannot be in it */
    if (!rc && (n == 0 || n > nsel || ifd < 0 || fstat(ifd, &st) != 0 ||
                (uint64_t)st.st_size != (uint64_t)n * GUTS_ID_LEN))
        rc = GUTS_ENOTFOUND;
    if (!rc) rc = (*ids = malloc(n * GUTS_ID_LEN)) ? GUTS_OK : GUTS_ENOMEM;
    size_t got = 0, want = n * GUTS_ID_LEN;
    while (!rc && got < want) {
        ssize_t k = read(ifd, (uint8_t *)*ids + got, want - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            rc = GUTS_ENOTFOUND;
        else
            got += (size_t)k;
    }
    if (ifd >= 0) close(ifd);
    /* both sorted: one pass */
    for (size_t i = 0, j = 0; !rc && i < n; i++) {
        while (j < nsel && guts_id_cmp(&sel[j], &(*ids)[i]) < 0)
            j++;
        if (j == nsel || guts_id_cmp(&sel[j], &(*ids)[i]) != 0) rc = GUTS_ENOTFOUND;
    }
    if (rc) {
        if (*fd >= 0) close(*fd);
        *fd = -1;
        free(*ids);
        *ids = NULL;
    } else {
        *count = n;
    }
    return rc;
}

int guts_packcache_find_base(guts_packcache *c, const guts_id *ids, size_t n)
{
    guts_packcache_free_base(c);
    guts_id *sel = NULL; /* ids sorted, once a pack of the repository is there: a clone
                          * with none (a cold one) waits for no sort before its first byte */
    DIR *d = opendir(c->dir);
    int rc = d ? GUTS_OK : GUTS_ENOTFOUND;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len >= sizeof c->base || strncmp(e->d_name, c->name, 17) != 0 || len < 5 ||
            strcmp(e->d_name + len - 5, ".pack") != 0 || strcmp(e->d_name, c->name) == 0)
            continue;
        if (!sel) {
            if (!(sel = malloc((n ? n : 1) * sizeof *sel))) {
                rc = GUTS_ENOMEM;
                break;
            }
            if (n) memcpy(sel, ids, n * sizeof *sel);
            qsort(sel, n, sizeof *sel, id_order);
        }
        guts_id *got;
        size_t count;
        int fd;
        rc = load_subset(d, c->dir, e->d_name, sel, n, &got, &count, &fd);
        if (rc == GUTS_ENOTFOUND) {
            rc = GUTS_OK;
            continue;
        }
        if (rc) break;
        if (count <= c->nbase) {
            close(fd);
            free(got);
            continue;
        }
        guts_packcache_free_base(c);
        memcpy(c->base, e->d_name, len + 1);
        c->base_fd = fd;
        c->base_ids = got;
        c->nbase = count;
    }
    if (d) closedir(d);
    free(sel);
    if (rc) guts_packcache_free_base(c);
    return rc ? rc : c->nbase ? GUTS_OK : GUTS_ENOTFOUND;
}

int guts_packcache_base_has(const guts_packcache *c, const guts_id *id)
{
    return c->nbase && bsearch(id, c->base_ids, c->nbase, sizeof *c->base_ids, id_order) != NULL;
}

static int append(void *ctx, const void *buf, size_t n)
{
    return guts_packw_append(ctx, buf, n);
}

int guts_packcache_base_entries(guts_packcache *c, guts_packw *p)
{
    if (!c->base[0] || c->base_fd < 0) return GUTS_EIO;
    /* the entries: past the 12-byte header, not the trailer */
    int rc = read_checked(c->base_fd, grow_done, &c->base_fd, 12, 0, append, p);
    if (rc == GUTS_ECORRUPT) remove_pack(c->dir, c->base);
    return rc;
}
