/* gitio_export.c - export: a stored repository written as a new bare git
 * repository.
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
 */
#include "gitio_int.h"
#include "pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int cmp_pentry(const void *a, const void *b)
{
    return guts_id_cmp(&((const pentry *)a)->id, &((const pentry *)b)->id);
}

/* The version-2 pack index git reads: fan-out table, sorted ids, CRC-32s,
 * 31-bit offsets (larger ones in a 64-bit table), the pack's checksum and
 * the index's own SHA-1. Sorts e in place. */
int gitio_write_idx(const char *path, pentry *e, size_t n, const uint8_t packsum[20], char *err)
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
        guts_id h, base, stored_base;
        uint8_t *delta;
        size_t dlen;
        guts_id_to_hex(&ids[i], hex);
        e[i].id = ids[i];
        e[i].off = guts_packw_offset(&w);
        rc = guts_repo_head(repo, &ids[i], &type, &size, &stored_base);
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
        if (guts_pack_delta_of(repo, &ids[i], &stored_base, type, data, len, NULL, NULL, &base,
                               &delta, &dlen) == GUTS_OK) {
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
        if (!rc) rc = gitio_write_idx(final, e, n, sum, err);
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
void gitio_export_unmake(const char *made, int keep)
{
    unmake_keep = keep ? made : NULL;
    nftw(made, unmake_one, 16, FTW_DEPTH | FTW_PHYS);
    unmake_keep = NULL;
}

int gitio_export_into(guts_repo *r, const char *outdir, int level, guts_progress *pg,
                      guts_gitio_stats *st, char *err)
{
    guts_id *ids = NULL;
    size_t n = 0, len;
    char *out;
    char *init[] = {"git", "init", "--bare", "-q", (char *)outdir, NULL};
    int rc = gitio_run_capture("git init", init, &out, &len, err);
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
    int rc = gitio_export_into(r, outdir, level, &pg, st, err);
    /* A half-written repository is worse than none: git would take it for
     * a repository, and the retry would be refused as "not empty". */
    if (rc) gitio_export_unmake(made, keep);
    return rc;
}
