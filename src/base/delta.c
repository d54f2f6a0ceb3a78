/* delta.c - the match finder behind every delta guts writes (delta.h).
 *
 * The base is indexed by 16-byte blocks at every 16th offset of its middle
 * (what it shares with the target at the start and the end is found first,
 * eight bytes at a time, and not indexed); the target is scanned byte by
 * byte, a hit is verified and extended both ways. Linear in the two sizes;
 * no attempt at the best delta, only a short one.
 */
#include <stdlib.h>
#include <string.h>

#include "guts/delta.h"
#include "guts/guts.h"

#define BLOCK GUTS_DELTA_BLOCK
/* Blocks of one hash tried per position: enough to find the right one in
 * repetitive text (a one-line change to a 2 MB file of repeated words made
 * a 42 KB delta with one candidate, under 1 KB with these), few enough to
 * keep the scan linear. */
#define DELTA_CHAIN_MAX 16
/* A match this long where the file went on is taken without the chain:
 * shorter ones (a few common words) are often the wrong place. */
#define DELTA_GOOD_MATCH 64

/* The top bits of the two halves' products: no finishing mix (it was a
 * sixth of a scan's instructions; the deltas of zlib's history came out
 * the same size). */
static uint32_t block_hash(const uint8_t *p, unsigned bits)
{
    uint64_t a, c;
    memcpy(&a, p, 8);
    memcpy(&c, p + 8, 8);
    return (uint32_t)((a * 0x9e3779b97f4a7c15ull ^ c * 0xc2b2ae3d27d4eb4full) >> (64 - bits));
}

/* x: the xor of two unequal 8-byte words read from memory. How many of
 * their bytes are equal, counted from the lowest address (back: from the
 * highest). */
static size_t same_bytes(uint64_t x, int back)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int n = back ? __builtin_clzll(x) : __builtin_ctzll(x);
#else
    int n = back ? __builtin_ctzll(x) : __builtin_clzll(x);
#endif
    return (size_t)n / 8;
}

/* Whether the BLOCK bytes at a and b are the same: the first eight
 * decide most calls. */
static inline int same_block(const uint8_t *a, const uint8_t *b)
{
    uint64_t x, y, x2, y2;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    if (x != y) return 0;
    memcpy(&x2, a + 8, 8);
    memcpy(&y2, b + 8, 8);
    return x2 == y2;
}

/* How many bytes a and b have in common from their start, up to n: eight
 * at a time (the copies of a delta are most of its target). */
static size_t match_len(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, a + k, 8);
        memcpy(&y, b + k, 8);
        if (x != y) return k + same_bytes(x ^ y, 0);
    }
    while (k < n && a[k] == b[k])
        k++;
    return k;
}

/* How many bytes the n before a_end and b_end have in common, counted
 * back from the ends. */
static size_t match_len_back(const uint8_t *a_end, const uint8_t *b_end, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, a_end - k - 8, 8);
        memcpy(&y, b_end - k - 8, 8);
        if (x != y) return k + same_bytes(x ^ y, 1);
    }
    while (k < n && a_end[-(ptrdiff_t)k - 1] == b_end[-(ptrdiff_t)k - 1])
        k++;
    return k;
}

int guts_delta_scan(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn,
                    guts_delta_copy_fn copy, void *ctx)
{
    if (bn < BLOCK || dn < BLOCK || bn > 0xffffffffu) return GUTS_ENOTFOUND;
    /* What both start and end with is one copy each (an edit in the
     * middle), and only the base's middle is indexed for the rest: most of
     * the cost of a small edit to a large file was indexing all of it. A
     * block moved out of the common start or end is not found (the delta
     * is longer, never wrong). Under a block, no trimming. */
    size_t common = bn < dn ? bn : dn;
    size_t pre = match_len(base, dst, common);
    size_t suf = match_len_back(base + bn, dst + dn, common - pre);
    if (pre < BLOCK) pre = 0;
    if (suf < BLOCK) suf = 0;
    const uint8_t *mid = base + pre; /* indexed: the base's middle */
    size_t nblocks = (bn - pre - suf) / BLOCK;
    size_t dend = dn - suf; /* scanned: dst[pre, dend) */
    unsigned bits = 4;
    while ((1ull << bits) < 2 * nblocks && bits < 24)
        bits++;
    uint32_t *tab = malloc(((size_t)1 << bits) * sizeof *tab);
    uint32_t *chain = malloc((nblocks ? nblocks : 1) * sizeof *chain);
    if (!tab || !chain) {
        free(tab);
        free(chain);
        return GUTS_ENOMEM;
    }
    /* Each bucket heads a chain of the base's blocks with that hash, the
     * last first: repetitive text has many, and the right one is the one
     * that matches longest. */
    memset(tab, 0xff, ((size_t)1 << bits) * sizeof *tab);
    for (size_t k = 0; k < nblocks; k++) {
        uint32_t h = block_hash(mid + k * BLOCK, bits);
        chain[k] = tab[h];
        tab[h] = (uint32_t)k;
    }
    int stop = pre && copy(ctx, 0, 0, pre);
    size_t i = pre, lit = pre; /* dst[lit, i) is dst's own so far */
    size_t next = pre;         /* where the last copy ended in base */
    while (!stop && i + BLOCK <= dend) {
        /* Candidates: the place right after the last copy, shifted by what
         * was inserted since (where an edited file goes on); when that does
         * not match well, up to DELTA_CHAIN_MAX blocks of the bucket, the
         * longest match winning. */
        size_t s = 0, n = 0, at = next + (i - lit);
        if (at + BLOCK <= bn && same_block(base + at, dst + i)) {
            size_t room = bn - at < dend - i ? bn - at : dend - i;
            s = at;
            n = BLOCK + match_len(base + at + BLOCK, dst + i + BLOCK, room - BLOCK);
        }
        /* the bucket is hashed only when that place did not do */
        uint32_t blk = n < DELTA_GOOD_MATCH ? tab[block_hash(dst + i, bits)] : UINT32_MAX;
        for (int c = 0; c < DELTA_CHAIN_MAX && blk != UINT32_MAX && n < DELTA_GOOD_MATCH; c++) {
            at = pre + (size_t)blk * BLOCK;
            blk = chain[blk];
            if (!same_block(base + at, dst + i)) continue;
            size_t room = bn - at < dend - i ? bn - at : dend - i;
            size_t k = BLOCK + match_len(base + at + BLOCK, dst + i + BLOCK, room - BLOCK);
            if (k > n) {
                s = at;
                n = k;
            }
        }
        if (n == 0) {
            i++;
            continue;
        }
        while (i > lit && s > 0 && base[s - 1] == dst[i - 1]) {
            i--;
            s--;
            n++;
        }
        stop = copy(ctx, i, s, n);
        i += n;
        lit = i;
        next = s + n;
    }
    if (!stop && suf) stop = copy(ctx, dend, bn - suf, suf);
    free(tab);
    free(chain);
    return stop ? GUTS_ENOTFOUND : GUTS_OK;
}

static int gd_varint(const uint8_t *d, size_t n, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift <= 56; shift += 7) { /* at most 9 bytes: under 2^63 */
        if (*pos >= n) return GUTS_EINVAL;
        uint8_t c = d[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return GUTS_OK;
    }
    return GUTS_EINVAL;
}

int guts_gd_sizes(const uint8_t *d, size_t n, size_t *pos, uint64_t *src, uint64_t *dst)
{
    int rc = gd_varint(d, n, pos, src);
    return rc ? rc : gd_varint(d, n, pos, dst);
}

int guts_gd_next(const uint8_t *d, size_t n, size_t *pos, guts_gd_op *op)
{
    size_t p = *pos;
    uint8_t c = d[p++];
    if (c & 0x80) { /* copy: bits 0-3 say which offset bytes follow, 4-6 which size bytes */
        size_t off = 0, len = 0;
        for (int i = 0; i < 7; i++) {
            if (!(c & (1 << i))) continue;
            if (p >= n) return GUTS_EINVAL;
            if (i < 4)
                off |= (size_t)d[p++] << (8 * i);
            else
                len |= (size_t)d[p++] << (8 * (i - 4));
        }
        *op = (guts_gd_op){.copy = 1, .off = off, .len = len ? len : 0x10000};
    } else if (c) { /* insert: c bytes follow */
        if (c > n - p) return GUTS_EINVAL;
        *op = (guts_gd_op){.copy = 0, .off = p, .len = c};
        p += c;
    } else {
        return GUTS_EINVAL; /* reserved */
    }
    *pos = p;
    return GUTS_OK;
}
