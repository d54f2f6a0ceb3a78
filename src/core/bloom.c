/* bloom.c - bloom filters hashed with seeded XXH3-128 and double hashing.
 *
 * One XXH3-128 call per key gives both halves used for the k probes
 * (Kirsch & Mitzenmacher 2006). The probe index is reduced with a 64x64->128
 * multiply-high ("fastrange") instead of a modulo: it maps a uniform 64-bit
 * value onto [0, nbits) as evenly and costs one multiplication. The filter
 * size need not be a power of two, so announce blooms can use every byte of
 * the room they have.
 */
#include "bloom.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
/* inlined: one call per key per filter */
#define XXH_INLINE_ALL
#include <xxhash.h>

uint8_t guts_bloom_k_for(unsigned bits_per_elem)
{
    /* round(bpe * ln 2) without libm: ln 2 ~ 0.693147 = 693147 / 10^6. */
    uint64_t k = ((uint64_t)bits_per_elem * 693147u + 500000u) / 1000000u;
    if (k < 1) k = 1;
    if (k > GUTS_BLOOM_K_MAX) k = GUTS_BLOOM_K_MAX;
    return (uint8_t)k;
}

int guts_bloom_make(guts_bloom *b, size_t n_elems, unsigned bits_per_elem, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    if (bits_per_elem == 0) return GUTS_EINVAL;
    if (n_elems > GUTS_BLOOM_BITS_MAX / bits_per_elem) return GUTS_ETOOBIG;
    uint64_t nbits = (uint64_t)n_elems * bits_per_elem;
    if (nbits < GUTS_BLOOM_MIN_BITS) nbits = GUTS_BLOOM_MIN_BITS;
    nbits = (nbits + 7) & ~(uint64_t)7;
    if (nbits > GUTS_BLOOM_BITS_MAX) return GUTS_ETOOBIG;
    b->bits = calloc(1, guts_bloom_bytes((uint32_t)nbits));
    if (!b->bits) return GUTS_ENOMEM;
    b->nbits = (uint32_t)nbits;
    b->k = guts_bloom_k_for(bits_per_elem);
    b->seed = seed;
    b->owned = 1;
    return GUTS_OK;
}

int guts_bloom_view(guts_bloom *b, const uint8_t *bits, uint32_t nbits, uint8_t k, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    if (!bits || nbits < GUTS_BLOOM_MIN_BITS || nbits > GUTS_BLOOM_BITS_MAX || k == 0 ||
        k > GUTS_BLOOM_K_MAX)
        return GUTS_EINVAL;
    /* Never written through: guts_bloom_add() is only for owned filters. */
    b->bits = (uint8_t *)(uintptr_t)bits;
    b->nbits = nbits;
    b->k = k;
    b->seed = seed;
    b->owned = 0;
    return GUTS_OK;
}

/* Map a uniform 64-bit value onto [0, n). */
static uint32_t reduce(uint64_t x, uint32_t n)
{
    /* (x * n) >> 64 computed from 32-bit halves: portable C11, no __int128. */
    uint64_t xl = x & 0xffffffffu, xh = x >> 32;
    uint64_t lo = xl * n, hi = xh * n;
    uint32_t j = (uint32_t)((hi + (lo >> 32)) >> 32);
    assert(j < n); /* every probe is a bit of the filter */
    return j;
}

static void probes_init(const guts_bloom *b, const void *key, size_t len, uint64_t *h1,
                        uint64_t *h2)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(key, len, b->seed);
    *h1 = h.low64;
    *h2 = h.high64 | 1; /* odd: successive probes never repeat one value */
}

void guts_bloom_add(guts_bloom *b, const void *key, size_t len)
{
    if (!b->bits || !b->owned) return;
    uint64_t h1, h2;
    probes_init(b, key, len, &h1, &h2);
    for (unsigned i = 0; i < b->k; i++) {
        uint32_t j = reduce(h1, b->nbits);
        b->bits[j >> 3] |= (uint8_t)(1u << (j & 7));
        h1 += h2;
    }
}

int guts_bloom_has(const guts_bloom *b, const void *key, size_t len)
{
    if (!b->bits) return 0;
    uint64_t h1, h2;
    probes_init(b, key, len, &h1, &h2);
    for (unsigned i = 0; i < b->k; i++) {
        uint32_t j = reduce(h1, b->nbits);
        if (!(b->bits[j >> 3] & (1u << (j & 7)))) return 0;
        h1 += h2;
    }
    return 1;
}

void guts_bloom_free(guts_bloom *b)
{
    if (b->owned) free(b->bits);
    memset(b, 0, sizeof *b);
}

void guts_bloom_fit(size_t room, size_t available, size_t *covered, uint32_t *nbits, uint8_t *k)
{
    *covered = 0;
    *nbits = 0;
    *k = 0;
    size_t cap_bits = room > GUTS_BLOOM_BITS_MAX / 8 ? GUTS_BLOOM_BITS_MAX : room * 8;
    if (available == 0 || cap_bits < GUTS_BLOOM_MIN_BITS) return;
    size_t n = available;
    unsigned bpe;
    if (n <= cap_bits / GUTS_BLOOM_BITS_PER_ELEM) {
        /* Everything fits at the target density: spend the spare room on a
         * lower false-positive rate, up to the ample density. */
        bpe = (unsigned)(cap_bits / n);
        if (bpe > GUTS_BLOOM_BITS_PER_ELEM_AMPLE) bpe = GUTS_BLOOM_BITS_PER_ELEM_AMPLE;
    } else {
        n = cap_bits / GUTS_BLOOM_BITS_PER_ELEM;
        bpe = GUTS_BLOOM_BITS_PER_ELEM;
        if (n == 0) {
            /* Less than one element's worth at 10 bits: one byte for one id
             * still answers with ~5% false positives; better than nothing. */
            n = 1;
            bpe = (unsigned)cap_bits;
        }
    }
    size_t bits = n * bpe;
    if (bits < GUTS_BLOOM_MIN_BITS) bits = GUTS_BLOOM_MIN_BITS;
    bits = (bits + 7) & ~(size_t)7;
    if (bits > cap_bits) bits = cap_bits & ~(size_t)7;
    *covered = n;
    *nbits = (uint32_t)bits;
    *k = guts_bloom_k_for((unsigned)(bits / n));
}
