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

/* Hash a set of ids, sorted, with its count first (so that no two
 * different requests hash the same bytes). */
static int hash_set(EVP_MD_CTX *sha, const guts_id *ids, size_t n)
{
    guts_id *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return GUTS_ENOMEM;
    if (n) memcpy(s, ids, n * sizeof *s);
    qsort(s, n, sizeof *s, id_order);
    uint64_t count = n;
    int ok = EVP_DigestUpdate(sha, &count, sizeof count) == 1 &&
             (!n || EVP_DigestUpdate(sha, s, n * sizeof *s) == 1);
    free(s);
    return ok ? GUTS_OK : GUTS_ENOMEM;
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
    int n = snprintf(c->dir, sizeof c->dir, "%s/git-packs", data_path);
    if (n < 0 || (size_t)n >= sizeof c->dir) return GUTS_EINVAL;
    guts_id rsum, ksum;
    unsigned sl = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int rc = sha && EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 &&
                     EVP_DigestUpdate(sha, key, strlen(key) + 1) == 1 &&
                     EVP_DigestFinal_ex(sha, rsum.b, &sl) == 1 &&
                     EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 &&
                     EVP_DigestUpdate(sha, key, strlen(key) + 1) == 1
                 ? GUTS_OK
                 : GUTS_ENOMEM;
    if (!rc) rc = hash_set(sha, wants, nwants);
    if (!rc) rc = hash_set(sha, tags, ntags);
    if (!rc && EVP_DigestFinal_ex(sha, ksum.b, &sl) != 1) rc = GUTS_ENOMEM;
    EVP_MD_CTX_free(sha);
    if (rc) return rc;
    char r[GUTS_HEX_LEN + 1], k[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&rsum, r);
    guts_id_to_hex(&ksum, k);
    snprintf(c->name, sizeof c->name, "%.16s-%s.pack", r, k);
    return GUTS_OK;
}

/* Read the pack on fd (size bytes) from its start, handing out(ctx, ...)
 * its bytes from offset from up to its trailer and, with_trailer, the
 * trailer too once it is the SHA-1 of everything before it. GUTS_ECORRUPT
 * when it is not, GUTS_EIO, GUTS_ENOMEM, or out's error. */
static int read_checked(int fd, uint64_t size, uint64_t from, int with_trailer,
                        int (*out)(void *ctx, const void *buf, size_t n), void *ctx)
{
    if (size < 12 + 20 || lseek(fd, 0, SEEK_SET) != 0) return GUTS_EIO;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    uint8_t *buf = malloc(1u << 16);
    int rc = sha && buf && EVP_DigestInit_ex(sha, EVP_sha1(), NULL) == 1 ? GUTS_OK : GUTS_ENOMEM;
    uint64_t body = size - 20, done = 0;
    uint8_t tail[20];
    size_t ntail = 0;
    while (!rc && done < size) {
        ssize_t k = read(fd, buf, 1u << 16);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            rc = GUTS_EIO;
            break;
        }
        size_t n = (size_t)k;
        if (done + n > size) n = (size_t)(size - done);
        size_t hashed = done >= body ? 0 : (size_t)(body - done < n ? body - done : n);
        size_t skip = done < from ? (size_t)(from - done) : 0;
        if (hashed && EVP_DigestUpdate(sha, buf, hashed) != 1) rc = GUTS_ENOMEM;
        if (!rc && hashed > skip) rc = out(ctx, buf + skip, hashed - skip);
        for (size_t i = hashed; !rc && i < n; i++) /* the trailer, kept until checked */
            tail[ntail++] = buf[i];
        done += n;
    }
    if (!rc) {
        uint8_t sum[20];
        unsigned sl = 0;
        if (ntail != 20 || EVP_DigestFinal_ex(sha, sum, &sl) != 1 || memcmp(sum, tail, 20) != 0)
            rc = GUTS_ECORRUPT;
        else if (with_trailer)
            rc = out(ctx, tail, 20);
    }
    free(buf);
    EVP_MD_CTX_free(sha);
    return rc;
}

int guts_packcache_send(guts_packcache *c, int (*sink)(void *ctx, const void *buf, size_t n),
                        void *ctx)
{
    char path[sizeof c->dir + sizeof c->name + 1];
    snprintf(path, sizeof path, "%s/%s", c->dir, c->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? GUTS_ENOTFOUND : GUTS_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 12 + 20) {
        close(fd);
        return GUTS_ENOTFOUND;
    }
    (void)utimensat(AT_FDCWD, path, NULL, 0); /* recently used: pruned last */
    int rc = read_checked(fd, (uint64_t)st.st_size, 0, 1, sink, ctx);
    if (rc == GUTS_ECORRUPT) remove_pack(c->dir, c->name);
    close(fd);
    return rc;
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
}

void guts_packcache_write(guts_packcache *c, const void *buf, size_t n)
{
    if (c->fd < 0 || !c->tmp[0]) return;
    if (guts_write_all(c->fd, buf, n) != GUTS_OK) abandon(c);
}

/* A cached pack of the same repository (its name's first 17 bytes) and
 * its age, for pruning. */
typedef struct cached {
    char name[80];
    struct timespec mtime;
} cached;

static int newest_first(const void *a, const void *b)
{
    const struct timespec *x = &((const cached *)a)->mtime, *y = &((const cached *)b)->mtime;
    if (x->tv_sec != y->tv_sec) return x->tv_sec < y->tv_sec ? 1 : -1;
    return x->tv_nsec < y->tv_nsec ? 1 : x->tv_nsec > y->tv_nsec ? -1 : 0;
}

/* Remove the repository's packs past the newest GUTS_PACKCACHE_PER_REPO,
 * and its stale half-written files. */
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
        if (len >= sizeof v->name || strncmp(e->d_name, c->name, 17) != 0 || len < 5 ||
            strcmp(e->d_name + len - 5, ".pack") != 0)
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, 0) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            cached *nv = realloc(v, cap * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        memcpy(v[n].name, e->d_name, len + 1);
        v[n++].mtime = st.st_mtim;
    }
    if (n > GUTS_PACKCACHE_PER_REPO) {
        qsort(v, n, sizeof *v, newest_first);
        for (size_t i = GUTS_PACKCACHE_PER_REPO; i < n; i++) {
            char ids[96];
            ids_name(v[i].name, "", ids, sizeof ids);
            (void)unlinkat(dirfd(d), ids, 0);
            (void)unlinkat(dirfd(d), v[i].name, 0);
        }
    }
    free(v);
    closedir(d);
}

void guts_packcache_commit(guts_packcache *c)
{
    if (c->fd < 0 || !c->tmp[0]) return;
    char path[sizeof c->dir + sizeof c->name + 1];
    snprintf(path, sizeof path, "%s/%s", c->dir, c->name);
    int ok = close(c->fd) == 0;
    c->fd = -1;
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
    guts_id *s = malloc((n ? n : 1) * sizeof *s);
    int ok = s != NULL;
    if (ok) {
        if (n) memcpy(s, ids, n * sizeof *s);
        qsort(s, n, sizeof *s, id_order);
        snprintf(c->ids_tmp, sizeof c->ids_tmp, "%s.ids", c->tmp);
        int fd = open(c->ids_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) c->ids_tmp[0] = 0;
        ok = fd >= 0 && guts_write_all(fd, s, n * sizeof *s) == GUTS_OK;
        if (fd >= 0 && close(fd) != 0) ok = 0;
    }
    free(s);
    if (!ok) abandon(c);
}

int guts_packcache_find_base(guts_packcache *c)
{
    DIR *d = opendir(c->dir);
    if (!d) return GUTS_ENOTFOUND;
    struct timespec best = {0};
    struct dirent *e;
    char ids[96];
    c->base[0] = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        struct stat st;
        if (len >= sizeof c->base || strncmp(e->d_name, c->name, 17) != 0 || len < 5 ||
            strcmp(e->d_name + len - 5, ".pack") != 0 || strcmp(e->d_name, c->name) == 0 ||
            fstatat(dirfd(d), e->d_name, &st, 0) != 0)
            continue;
        ids_name(e->d_name, "", ids, sizeof ids);
        if (faccessat(dirfd(d), ids, R_OK, 0) != 0) continue;
        if (c->base[0] && (st.st_mtim.tv_sec < best.tv_sec || (st.st_mtim.tv_sec == best.tv_sec &&
                                                               st.st_mtim.tv_nsec <= best.tv_nsec)))
            continue;
        memcpy(c->base, e->d_name, len + 1);
        best = st.st_mtim;
    }
    closedir(d);
    if (!c->base[0]) return GUTS_ENOTFOUND;
    /* its header's count, then a list of exactly that many ids */
    char path[sizeof c->dir + sizeof c->base + 8];
    snprintf(path, sizeof path, "%s/%s", c->dir, c->base);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t head[12];
    size_t count = 0;
    int rc = fd >= 0 && read(fd, head, sizeof head) == (ssize_t)sizeof head &&
                     memcmp(head, "PACK\0\0\0\2", 8) == 0
                 ? GUTS_OK
                 : GUTS_ENOTFOUND;
    if (!rc)
        count = (size_t)head[8] << 24 | (size_t)head[9] << 16 | (size_t)head[10] << 8 | head[11];
    char dir[sizeof c->dir + 1];
    snprintf(dir, sizeof dir, "%s/", c->dir);
    ids_name(c->base, dir, path, sizeof path);
    int ifd = rc ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (!rc && (count == 0 || ifd < 0 || fstat(ifd, &st) != 0 ||
                (uint64_t)st.st_size != (uint64_t)count * GUTS_ID_LEN))
        rc = GUTS_ENOTFOUND;
    if (!rc) {
        c->base_ids = malloc(count * GUTS_ID_LEN);
        rc = c->base_ids ? GUTS_OK : GUTS_ENOMEM;
        c->nbase = count;
    }
    size_t got = 0, want = count * GUTS_ID_LEN;
    while (!rc && got < want) {
        ssize_t k = read(ifd, (uint8_t *)c->base_ids + got, want - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            rc = GUTS_ENOTFOUND;
        else
            got += (size_t)k;
    }
    if (ifd >= 0) close(ifd);
    if (rc) {
        if (fd >= 0) close(fd);
        free(c->base_ids);
        c->base_ids = NULL;
        c->nbase = 0;
        c->base[0] = 0;
    } else {
        c->base_fd = fd;
    }
    return rc;
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
    struct stat st;
    if (!c->base[0] || c->base_fd < 0 || fstat(c->base_fd, &st) != 0) return GUTS_EIO;
    /* the entries: past the 12-byte header, not the trailer */
    int rc = read_checked(c->base_fd, (uint64_t)st.st_size, 12, 0, append, p);
    if (rc == GUTS_ECORRUPT) remove_pack(c->dir, c->base);
    return rc;
}
