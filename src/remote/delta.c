/* delta.c - git's delta format, written from a base and a target.
 *
 * A clone's pack would otherwise hold whole objects; the store knows which
 * base each object was compressed against (its zstd delta record), so the
 * helper turns that pair into a git delta for a REF_DELTA entry, and git's
 * index-pack applies it. The format (git's pack-format documentation): the
 * base's and the result's sizes as little-endian base-128 varints, then
 * instructions: a byte with the top bit set copies from the base (bits 0-3
 * say which of 4 offset bytes follow, bits 4-6 which of 3 size bytes, a size
 * of 0 meaning 0x10000), a byte 1..127 inserts that many literal bytes that
 * follow it. Matching: the base is indexed by 16-byte blocks at every 16th
 * offset; the target is scanned byte by byte, a hit is verified and
 * extended both ways. Linear in the two sizes; no attempt at git's best
 * delta, only a short one.
 */
#include <stdlib.h>
#include <string.h>

#include "remote/remote.h"

#define BLOCK 16
#define COPY_MAX 0xffffffu /* 3 size bytes */

typedef struct dbuf {
    uint8_t *p;
    size_t n, cap;
} dbuf;

/* Append; 0, or -1 once the buffer would pass its cap. */
static int put(dbuf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) return -1;
    memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

static int put_varint(dbuf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    return put(b, t, n);
}

static int put_insert(dbuf *b, const uint8_t *d, size_t n)
{
    while (n) {
        uint8_t k = (uint8_t)(n > 127 ? 127 : n);
        if (put(b, &k, 1) || put(b, d, k)) return -1;
        d += k;
        n -= k;
    }
    return 0;
}

static int put_copy(dbuf *b, size_t off, size_t n)
{
    while (n) {
        size_t k = n > COPY_MAX ? COPY_MAX : n;
        uint8_t t[8], op = 0x80;
        size_t m = 1;
        for (int i = 0; i < 4; i++)
            if ((off >> (8 * i)) & 0xff) {
                op |= (uint8_t)(1u << i);
                t[m++] = (uint8_t)(off >> (8 * i));
            }
        if (k != 0x10000)
            for (int i = 0; i < 3; i++)
                if ((k >> (8 * i)) & 0xff) {
                    op |= (uint8_t)(0x10u << i);
                    t[m++] = (uint8_t)(k >> (8 * i));
                }
        t[0] = op;
        if (put(b, t, m)) return -1;
        off += k;
        n -= k;
    }
    return 0;
}

static uint32_t block_hash(const uint8_t *p, unsigned bits)
{
    uint64_t a, c;
    memcpy(&a, p, 8);
    memcpy(&c, p + 8, 8);
    uint64_t h = a * 0x9e3779b97f4a7c15ull ^ c * 0xc2b2ae3d27d4eb4full;
    return (uint32_t)((h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull >> (64 - bits));
}

int remote_delta(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn, size_t max,
                 uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    /* offsets fit 4 bytes, sizes of objects this small never need more */
    if (bn < BLOCK || dn < BLOCK || bn > 0xffffffffu || max == 0) return GUTS_ENOTFOUND;
    unsigned bits = 4;
    while ((1ull << bits) < 2 * (bn / BLOCK) && bits < 24)
        bits++;
    uint32_t *tab = malloc(((size_t)1 << bits) * sizeof *tab);
    dbuf b = {malloc(max), 0, max};
    if (!tab || !b.p) {
        free(tab);
        free(b.p);
        return GUTS_ENOMEM;
    }
    memset(tab, 0xff, ((size_t)1 << bits) * sizeof *tab);
    for (size_t i = 0; i + BLOCK <= bn; i += BLOCK)
        tab[block_hash(base + i, bits)] = (uint32_t)i;
    int bad = put_varint(&b, bn) || put_varint(&b, dn);
    size_t i = 0, lit = 0; /* dst[lit, i) waits to be inserted */
    while (!bad && i + BLOCK <= dn) {
        uint32_t cand = tab[block_hash(dst + i, bits)];
        if (cand == UINT32_MAX || memcmp(base + cand, dst + i, BLOCK) != 0) {
            i++;
            continue;
        }
        size_t s = cand, n = BLOCK;
        while (s + n < bn && i + n < dn && base[s + n] == dst[i + n])
            n++;
        while (i > lit && s > 0 && base[s - 1] == dst[i - 1]) {
            i--;
            s--;
            n++;
        }
        bad = put_insert(&b, dst + lit, i - lit) || put_copy(&b, s, n);
        i += n;
        lit = i;
    }
    if (!bad) bad = put_insert(&b, dst + lit, dn - lit);
    free(tab);
    if (bad) {
        free(b.p);
        return GUTS_ENOTFOUND; /* not shorter than max */
    }
    *out = b.p;
    *outlen = b.n;
    return GUTS_OK;
}
