/* packread.c - objects straight from a repository's packfiles (packread.h).
 *
 * Everything read from the files is bounded first: the .idx's size must be
 * exactly what its count and its 64-bit offset table make, its fan-out
 * must not decrease and its ids must be sorted; an entry's header, delta
 * distance and zlib stream must end inside the pack (before its trailer);
 * a stream must inflate to exactly the size its header gave; a delta must
 * name its base's size and stay inside the base and its result. A chain is
 * followed iteratively, at most GUTS_PACKREAD_CHAIN_MAX links (a REF_DELTA
 * loop ends there).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guts/delta.h"
#include "packread.h"
#include "proc.h"

#define IDX_HDR 8
#define IDX_FANOUT (256 * 4)
#define PACK_HDR 12
#define PACK_TRAILER 20
#define OFS_DELTA 6
#define REF_DELTA 7

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int corrupt(char *err, const guts_pack_file *f, uint64_t off, const char *what)
{
    return guts_git_errf(err, GUTS_ECORRUPT, "damaged pack %s at offset %llu: %s", f->name,
                         (unsigned long long)off, what);
}

int guts_packs_add(guts_packs *ps, const char *name, const uint8_t *idx, size_t idxlen,
                   const uint8_t *pack, size_t packlen, char *err)
{
    guts_pack_file f = {.name = (char *)name, .idx = idx, .pack = pack, .idxlen = idxlen,
                        .packlen = packlen};
    static const uint8_t magic[4] = {0xff, 't', 'O', 'c'};
    if (idxlen < 4 || memcmp(idx, magic, 4) != 0) /* version 1 has no magic */
        return guts_git_errf(err, GUTS_ENOTFOUND, "pack index of %s: version 1, read by git", name);
    if (idxlen < IDX_HDR) return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: truncated", name);
    if (be32(idx + 4) != 2)
        return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: version %u", name,
                             be32(idx + 4));
    if (idxlen < IDX_HDR + IDX_FANOUT + 2 * PACK_TRAILER)
        return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: truncated", name);
    const uint8_t *fan = idx + IDX_HDR;
    for (int i = 1; i < 256; i++)
        if (be32(fan + 4 * i) < be32(fan + 4 * (i - 1)))
            return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: fan-out decreases", name);
    uint64_t n = be32(fan + 4 * 255);
    uint64_t fixed = IDX_HDR + IDX_FANOUT + n * (GUTS_ID_LEN + 4 + 4) + 2 * PACK_TRAILER;
    if (fixed > idxlen || (idxlen - fixed) % 8 != 0)
        return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: %zu bytes for %llu objects",
                             name, idxlen, (unsigned long long)n);
    f.n = (uint32_t)n;
    f.nlarge = (uint32_t)((idxlen - fixed) / 8);
    const uint8_t *ids = idx + IDX_HDR + IDX_FANOUT;
    for (uint32_t i = 1; i < f.n; i++)
        if (memcmp(ids + (size_t)(i - 1) * GUTS_ID_LEN, ids + (size_t)i * GUTS_ID_LEN, GUTS_ID_LEN) >= 0)
            return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: ids out of order", name);
    for (uint32_t i = 0; i < f.n; i++) /* each first byte within its fan-out range */
        if (i >= be32(fan + 4 * ids[(size_t)i * GUTS_ID_LEN]) ||
            (ids[(size_t)i * GUTS_ID_LEN] && i < be32(fan + 4 * (ids[(size_t)i * GUTS_ID_LEN] - 1))))
            return guts_git_errf(err, GUTS_ECORRUPT, "pack index of %s: fan-out disagrees", name);
    if (packlen < PACK_HDR + PACK_TRAILER || memcmp(pack, "PACK", 4) != 0 ||
        (be32(pack + 4) != 2 && be32(pack + 4) != 3) || be32(pack + 8) != f.n)
        return guts_git_errf(err, GUTS_ECORRUPT, "pack %s: bad header or count", name);
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 4;
        guts_pack_file *nf = realloc(ps->f, cap * sizeof *nf);
        if (!nf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        ps->f = nf;
        ps->cap = cap;
    }
    if (!(f.name = strdup(name))) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    ps->f[ps->n++] = f;
    return GUTS_OK;
}

/* Map path read-only; *len its size. */
static int map_file(const char *path, const uint8_t **p, size_t *len, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return guts_git_errf(err, GUTS_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return guts_git_errf(err, GUTS_ECORRUPT, "%s is empty or unreadable", path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return guts_git_errf(err, GUTS_EIO, "cannot map %s: %s", path, strerror(errno));
    *p = m;
    *len = (size_t)st.st_size;
    return GUTS_OK;
}

int guts_packs_open(guts_packs *ps, const char *gitdir, char *err)
{
    memset(ps, 0, sizeof *ps);
    char dir[2048], idxpath[4096], packpath[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/objects/pack", gitdir) >= sizeof dir)
        return guts_git_errf(err, GUTS_EINVAL, "path too long: %s", gitdir);
    DIR *d = opendir(dir);
    if (!d) return GUTS_OK; /* no packs */
    int rc = GUTS_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 9 || l > 1000 || strncmp(e->d_name, "pack-", 5) != 0 ||
            strcmp(e->d_name + l - 4, ".idx") != 0)
            continue;
        snprintf(idxpath, sizeof idxpath, "%s/%s", dir, e->d_name);
        memcpy(packpath, idxpath, strlen(idxpath) - 4);
        strcpy(packpath + strlen(idxpath) - 4, ".pack");
        if (access(packpath, R_OK) != 0) continue; /* an .idx alone: git ignores it too */
        const uint8_t *idx = NULL, *pack = NULL;
        size_t idxlen = 0, packlen = 0;
        if ((rc = map_file(packpath, &pack, &packlen, err))) break;
        if ((rc = map_file(idxpath, &idx, &idxlen, err))) {
            munmap((void *)pack, packlen);
            break;
        }
        rc = guts_packs_add(ps, packpath, idx, idxlen, pack, packlen, err);
        if (rc == GUTS_OK) {
            ps->f[ps->n - 1].mapped = 1;
        } else {
            munmap((void *)idx, idxlen);
            munmap((void *)pack, packlen);
            if (rc == GUTS_ENOTFOUND) rc = GUTS_OK; /* skipped: cat-file reads it */
        }
    }
    closedir(d);
    if (rc) guts_packs_close(ps);
    return rc;
}

void guts_packs_close(guts_packs *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->f[i].mapped) {
            munmap((void *)ps->f[i].idx, ps->f[i].idxlen);
            munmap((void *)ps->f[i].pack, ps->f[i].packlen);
        }
        free(ps->f[i].name);
    }
    free(ps->f);
    for (unsigned i = 0; i < GUTS_PACKREAD_CACHE_SLOTS; i++)
        free(ps->cache[i].data);
    if (ps->zinit) inflateEnd(&ps->z);
    free(ps->delta);
    free(ps->chain);
    memset(ps, 0, sizeof *ps);
}

/* id's entry offset in pack f: 1, or 0 when absent. */
static int find(const guts_pack_file *f, const guts_id *id, uint64_t *off)
{
    const uint8_t *fan = f->idx + IDX_HDR, *ids = fan + IDX_FANOUT;
    uint32_t lo = id->b[0] ? be32(fan + 4 * (id->b[0] - 1)) : 0, hi = be32(fan + 4 * id->b[0]);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = memcmp(ids + (size_t)mid * GUTS_ID_LEN, id->b, GUTS_ID_LEN);
        if (c == 0) {
            const uint8_t *o32 = ids + (size_t)f->n * (GUTS_ID_LEN + 4);
            uint32_t v = be32(o32 + (size_t)mid * 4);
            if (v & 0x80000000u) {
                v &= 0x7fffffffu;
                if (v >= f->nlarge) return 0; /* bounded: read_entry reports it */
                const uint8_t *o64 = o32 + (size_t)f->n * 4 + (size_t)v * 8;
                *off = (uint64_t)be32(o64) << 32 | be32(o64 + 4);
            } else {
                *off = v;
            }
            return 1;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

int guts_packs_has(const guts_packs *ps, const guts_id *id)
{
    uint64_t off;
    for (size_t i = 0; i < ps->n; i++)
        if (find(&ps->f[i], id, &off)) return 1;
    return 0;
}

/* An entry's header at off: type, size, and where its zlib stream starts;
 * for a delta, where its base is (pack index and offset). */
typedef struct entry {
    int type;
    uint64_t size;
    uint64_t data; /* offset of the zlib stream */
    uint32_t bpack;
    uint64_t boff;
} entry;

static int read_entry(guts_packs *ps, uint32_t pi, uint64_t off, entry *e, char *err)
{
    const guts_pack_file *f = &ps->f[pi];
    const uint8_t *p = f->pack;
    uint64_t end = f->packlen - PACK_TRAILER;
    if (off < PACK_HDR || off >= end) return corrupt(err, f, off, "entry outside the pack");
    uint64_t at = off;
    uint8_t c = p[at++];
    e->type = (c >> 4) & 7;
    e->size = c & 15;
    for (unsigned shift = 4; c & 0x80; shift += 7) {
        if (at >= end || shift > 57) return corrupt(err, f, off, "bad entry header");
        c = p[at++];
        e->size |= (uint64_t)(c & 0x7f) << shift;
    }
    if (e->size > GUTS_OBJ_MAX_DEFAULT)
        return guts_git_errf(err, GUTS_ETOOBIG, "pack %s at offset %llu: an entry of %llu bytes",
                             f->name, (unsigned long long)off, (unsigned long long)e->size);
    if (e->type == OFS_DELTA) {
        if (at >= end) return corrupt(err, f, off, "truncated delta");
        c = p[at++];
        uint64_t rel = c & 0x7f;
        while (c & 0x80) {
            if (at >= end || rel >= (UINT64_MAX >> 7) - 1) return corrupt(err, f, off, "bad delta distance");
            c = p[at++];
            rel = ((rel + 1) << 7) | (c & 0x7f);
        }
        if (rel == 0 || rel > off - PACK_HDR) return corrupt(err, f, off, "delta base outside the pack");
        e->bpack = pi;
        e->boff = off - rel;
    } else if (e->type == REF_DELTA) {
        if (end - at < GUTS_ID_LEN) return corrupt(err, f, off, "truncated delta");
        guts_id bid;
        memcpy(bid.b, p + at, GUTS_ID_LEN);
        at += GUTS_ID_LEN;
        int found = find(f, &bid, &e->boff);
        e->bpack = pi;
        for (uint32_t j = 0; !found && j < ps->n; j++)
            if ((found = find(&ps->f[j], &bid, &e->boff))) e->bpack = j;
        if (!found) return corrupt(err, f, off, "delta base in no pack");
    } else if (e->type < GUTS_OBJ_COMMIT || e->type > GUTS_OBJ_TAG) {
        return corrupt(err, f, off, "unknown entry type");
    }
    if (at >= end) return corrupt(err, f, off, "truncated entry");
    e->data = at;
    return GUTS_OK;
}

/* Inflate e's stream into out (size + 1 bytes of room): exactly e->size. */
static int inflate_entry(guts_packs *ps, uint32_t pi, uint64_t off, const entry *e, uint8_t *out,
                         char *err)
{
    const guts_pack_file *f = &ps->f[pi];
    if (!ps->zinit) {
        memset(&ps->z, 0, sizeof ps->z);
        if (inflateInit(&ps->z) != Z_OK) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        ps->zinit = 1;
    } else if (inflateReset(&ps->z) != Z_OK) {
        return guts_git_errf(err, GUTS_ENOMEM, "zlib reset failed");
    }
    uint64_t avail = f->packlen - PACK_TRAILER - e->data;
    ps->z.next_in = (Bytef *)(f->pack + e->data);
    ps->z.avail_in = avail > UINT32_MAX ? UINT32_MAX : (uInt)avail;
    ps->z.next_out = out;
    ps->z.avail_out = (uInt)(e->size + 1); /* one more: a longer stream shows */
    int zr = inflate(&ps->z, Z_FINISH);
    if (zr != Z_STREAM_END || ps->z.total_out != e->size)
        return corrupt(err, f, off, "zlib stream does not inflate to its size");
    return GUTS_OK;
}

/* Apply git delta d (n bytes) to base; *out malloc'd. -1 when it does not
 * fit its base or its result. */
static int apply(const uint8_t *base, size_t blen, const uint8_t *d, size_t n, uint8_t **out,
                 size_t *outlen)
{
    size_t pos = 0;
    uint64_t src, dst;
    if (guts_gd_sizes(d, n, &pos, &src, &dst) || src != blen || dst > GUTS_OBJ_MAX_DEFAULT) return -1;
    uint8_t *r = malloc(dst ? dst : 1);
    if (!r) return -1;
    size_t o = 0;
    guts_gd_op op;
    while (pos < n) {
        if (guts_gd_next(d, n, &pos, &op) || op.len > dst - o) goto bad;
        if (op.copy && (op.off > blen || op.len > blen - op.off)) goto bad;
        memcpy(r + o, (op.copy ? base : d) + op.off, op.len);
        o += op.len;
    }
    if (o != dst) goto bad;
    *out = r;
    *outlen = o;
    return 0;
bad:
    free(r);
    return -1;
}

static unsigned slot_of(uint32_t pi, uint64_t off)
{
    uint64_t h = (off ^ ((uint64_t)pi << 40)) * 0x9e3779b97f4a7c15ull;
    return (unsigned)(h >> 32) % GUTS_PACKREAD_CACHE_SLOTS;
}

static guts_pack_cached *cache_find(guts_packs *ps, uint32_t pi, uint64_t off)
{
    guts_pack_cached *c = &ps->cache[slot_of(pi, off)];
    return c->data && c->off == off && c->pack == pi ? c : NULL;
}

/* Keep data (taking it) as the content at (pi, off); what it displaces,
 * and the oldest others while over the byte bound, are freed. Returns the
 * entry (never freed by its own insertion). */
static guts_pack_cached *cache_put(guts_packs *ps, uint32_t pi, uint64_t off, int type,
                                   uint8_t *data, size_t len)
{
    unsigned s = slot_of(pi, off);
    guts_pack_cached *c = &ps->cache[s];
    if (c->data) {
        ps->cached_bytes -= c->len;
        free(c->data);
    }
    *c = (guts_pack_cached){.data = data, .len = len, .off = off, .pack = pi, .type = type};
    ps->cached_bytes += len;
    for (unsigned k = 0; ps->cached_bytes > GUTS_PACKREAD_CACHE_BYTES && k < GUTS_PACKREAD_CACHE_SLOTS;
         k++) {
        unsigned v = ps->sweep;
        ps->sweep = (ps->sweep + 1) % GUTS_PACKREAD_CACHE_SLOTS;
        if (v == s || !ps->cache[v].data) continue;
        ps->cached_bytes -= ps->cache[v].len;
        free(ps->cache[v].data);
        ps->cache[v].data = NULL;
    }
    return c;
}

int guts_packs_read(guts_packs *ps, const guts_id *id, int *type, const uint8_t **data,
                    size_t *len, const uint8_t **gdelta, size_t *gdlen, char *err)
{
    uint32_t pi = 0;
    uint64_t off = 0;
    int found = 0;
    for (; !found && pi < ps->n; pi++)
        found = find(&ps->f[pi], id, &off);
    if (!found) return GUTS_ENOTFOUND;
    pi--;
    /* Down the chain to a cached content or a whole object. */
    size_t depth = 0;
    guts_pack_cached *c;
    entry e;
    uint32_t cp = pi;
    uint64_t co = off;
    int rc;
    while (!(c = cache_find(ps, cp, co))) {
        if ((rc = read_entry(ps, cp, co, &e, err))) return rc;
        if (e.type != OFS_DELTA && e.type != REF_DELTA) {
            uint8_t *buf = malloc(e.size + 1);
            if (!buf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
            if ((rc = inflate_entry(ps, cp, co, &e, buf, err))) {
                free(buf);
                return rc;
            }
            c = cache_put(ps, cp, co, e.type, buf, e.size);
            break;
        }
        if (depth == GUTS_PACKREAD_CHAIN_MAX)
            return corrupt(err, &ps->f[pi], off, "delta chain too long (or a loop)");
        if (depth == ps->chcap) {
            size_t cap = ps->chcap ? 2 * ps->chcap : 64;
            void *nc = realloc(ps->chain, cap * sizeof *ps->chain);
            if (!nc) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
            ps->chain = nc;
            ps->chcap = cap;
        }
        ps->chain[depth].pack = cp;
        ps->chain[depth].off = co;
        depth++;
        cp = e.bpack;
        co = e.boff;
    }
    /* Back up, each delta applied to the content below it. */
    ps->dlen = 0;
    while (depth > 0) {
        depth--;
        cp = ps->chain[depth].pack;
        co = ps->chain[depth].off;
        if ((rc = read_entry(ps, cp, co, &e, err))) return rc;
        if (e.size + 1 > ps->dcap) {
            uint8_t *nd = realloc(ps->delta, e.size + 1);
            if (!nd) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
            ps->delta = nd;
            ps->dcap = e.size + 1;
        }
        if ((rc = inflate_entry(ps, cp, co, &e, ps->delta, err))) return rc;
        ps->dlen = e.size;
        uint8_t *out;
        size_t olen;
        if (apply(c->data, c->len, ps->delta, e.size, &out, &olen))
            return corrupt(err, &ps->f[cp], co, "delta does not fit its base");
        c = cache_put(ps, cp, co, c->type, out, olen);
    }
    *type = c->type;
    *data = c->data;
    *len = c->len;
    if (gdelta) {
        int is_delta = c->off == off && c->pack == pi && ps->dlen;
        *gdelta = is_delta ? ps->delta : NULL;
        *gdlen = is_delta ? ps->dlen : 0;
    }
    return GUTS_OK;
}
