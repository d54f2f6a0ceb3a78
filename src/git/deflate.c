/* deflate.c - a fast zlib stream encoder for pack entries (deflate.h).
 *
 * Format: RFC 1950's two header bytes (deflate, 32 KiB window, no
 * dictionary), one final RFC 1951 block with the fixed Huffman codes, the
 * Adler-32 of the input big-endian. Matching: at each position the 4 bytes
 * there are hashed; the slot holds the last position with that hash; if
 * the 4 bytes match and it is within 32 KiB, the match is extended to 258
 * bytes and sent as a length and a distance, and every position it covers
 * goes into the table (1.03x fewer bytes than skipping them, for 10% more
 * time). Huffman codes go out least significant bit first, so the fixed
 * codes are kept bit-reversed; after each match, and after a literal once
 * 32 bits are due, the whole bytes go out as one 8-byte store (8-10% less
 * time than four bytes whenever 32 bits were due; storing after every
 * literal took 12% more instructions of the encoder, 7% more time).
 * At most 31 bits wait (n <= 31 after a literal that did not store, a
 * match's codes take 31 more): the accumulator of 64 never overflows.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "deflate.h"
#include "guts/guts.h"
#include "guts/store.h"

#define WINDOW 32768u
#define MATCH_MIN 4u
#define MATCH_MAX 258u
#define STORED_MAX 65535u
/* base goes back to 1 (the table cleared) past this: with an entry of
 * GUTS_DEFLATE_MAX, positions stay under 2^32 */
#define BASE_WRAP 0x7fffffffu

/* The fixed literal/length codes (RFC 1951 3.2.6), bit-reversed. */
static uint16_t lit_code[288];
static uint8_t lit_bits[288];
static uint8_t dist_code[30];
static pthread_once_t codes_once = PTHREAD_ONCE_INIT;

static unsigned reverse(unsigned c, int bits)
{
    unsigned r = 0;
    for (int i = 0; i < bits; i++, c >>= 1)
        r = (r << 1) | (c & 1);
    return r;
}

static void codes_init(void)
{
    for (unsigned s = 0; s < 288; s++) {
        unsigned c, b;
        if (s < 144)
            c = 0x30 + s, b = 8;
        else if (s < 256)
            c = 0x190 + s - 144, b = 9;
        else if (s < 280)
            c = s - 256, b = 7;
        else
            c = 0xc0 + s - 280, b = 8;
        lit_code[s] = (uint16_t)reverse(c, (int)b);
        lit_bits[s] = (uint8_t)b;
    }
    for (unsigned d = 0; d < 30; d++)
        dist_code[d] = (uint8_t)reverse(d, 5);
}

int guts_deflate_init(guts_deflate *d)
{
    pthread_once(&codes_once, codes_init);
    d->tab = calloc((size_t)1 << GUTS_DEFLATE_HASH_BITS, sizeof *d->tab);
    d->base = 1;
    return d->tab ? GUTS_OK : GUTS_ENOMEM;
}

void guts_deflate_free(guts_deflate *d)
{
    free(d->tab);
    d->tab = NULL;
}

typedef struct bits {
    uint64_t acc;
    unsigned n;
    uint8_t *o;
} bits;

static inline void put(bits *b, uint32_t v, unsigned n)
{
    b->acc |= (uint64_t)v << b->n;
    b->n += n;
}

/* The whole bytes of acc out: eight stored, n / 8 kept (at most 31 bits
 * waiting and one match's 31 leave it under 64). */
static inline void flush(bits *b)
{
    uint64_t a = b->acc;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    a = __builtin_bswap64(a);
#endif
    memcpy(b->o, &a, 8);
    b->o += b->n >> 3;
    b->acc >>= b->n & ~7u;
    b->n &= 7;
}

static inline void literal(bits *b, unsigned s)
{
    put(b, lit_code[s], lit_bits[s]);
}

/* A match of len bytes (MATCH_MIN..MATCH_MAX) dist bytes back: the length
 * code and its extra bits, then the distance's. */
static void match(bits *b, unsigned len, unsigned dist)
{
    unsigned l = len - 3, d = dist - 1;
    if (l < 8) {
        literal(b, 257 + l);
    } else if (l == 255) {
        literal(b, 285);
    } else {
        unsigned top = 31u - (unsigned)__builtin_clz(l), extra = top - 2;
        literal(b, 257 + 4 * (top - 1) + ((l >> extra) & 3));
        put(b, l & ((1u << extra) - 1), extra);
    }
    if (d < 4) {
        put(b, dist_code[d], 5);
    } else {
        unsigned top = 31u - (unsigned)__builtin_clz(d), extra = top - 1;
        put(b, dist_code[2 * top + ((d >> extra) & 1)], 5);
        put(b, d & ((1u << extra) - 1), extra);
    }
}

static inline uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint32_t hash(uint32_t x)
{
    return (x * 2654435761u) >> (32 - GUTS_DEFLATE_HASH_BITS);
}

/* How many bytes a and b have in common from their start, at most max:
 * eight at a time, then one. */
static inline size_t same_run(const uint8_t *a, const uint8_t *b, size_t max)
{
    size_t k = 0;
    while (k + 8 <= max) {
        uint64_t x, y;
        memcpy(&x, a + k, 8);
        memcpy(&y, b + k, 8);
        if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return k + ((unsigned)__builtin_ctzll(x ^ y) >> 3);
#else
            break;
#endif
        }
        k += 8;
    }
    while (k < max && a[k] == b[k])
        k++;
    return k;
}

static void put_be32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

/* The block's codes for in (n bytes) from out; returns where they end. */
static uint8_t *fixed_block(guts_deflate *d, const uint8_t *in, size_t n, uint8_t *out)
{
    assert(n <= GUTS_DEFLATE_MAX);
    if (d->base > BASE_WRAP - n) {
        memset(d->tab, 0, ((size_t)1 << GUTS_DEFLATE_HASH_BITS) * sizeof *d->tab);
        d->base = 1;
    }
    uint32_t base = d->base;
    d->base += (uint32_t)n + 1;
    bits b = {.o = out};
    put(&b, 1 | 1 << 1, 3); /* the final block, fixed codes */
    size_t i = 0;
    while (i + MATCH_MIN <= n) {
        uint32_t x = load32(in + i), *slot = &d->tab[hash(x)], c = *slot;
        *slot = base + (uint32_t)i;
        size_t at = c - base; /* meaningful when c >= base */
        if (c < base || i - at > WINDOW || load32(in + at) != x) {
            literal(&b, in[i++]);
            if (b.n >= 32) flush(&b);
            continue;
        }
        size_t len = MATCH_MIN, max = n - i < MATCH_MAX ? n - i : MATCH_MAX;
        len += same_run(in + at + len, in + i + len, max - len);
        match(&b, (unsigned)len, (unsigned)(i - at));
        flush(&b);
        for (size_t k = i + 1; k < i + len && k + MATCH_MIN <= n; k++)
            d->tab[hash(load32(in + k))] = base + (uint32_t)k;
        i += len;
    }
    while (i < n) {
        literal(&b, in[i++]);
        flush(&b);
    }
    literal(&b, 256);
    for (; b.n > 0; b.n = b.n > 8 ? b.n - 8 : 0, b.acc >>= 8)
        *b.o++ = (uint8_t)b.acc;
    return b.o;
}

/* in as stored blocks from out; returns where they end. */
static uint8_t *stored_blocks(const uint8_t *in, size_t n, uint8_t *out)
{
    do {
        size_t k = n < STORED_MAX ? n : STORED_MAX;
        out[0] = k == n; /* the last block; stored (type 0) */
        out[1] = (uint8_t)k;
        out[2] = (uint8_t)(k >> 8);
        out[3] = (uint8_t)~k;
        out[4] = (uint8_t)(~k >> 8);
        memcpy(out + 5, in, k);
        out += 5 + k;
        in += k;
        n -= k;
    } while (n);
    return out;
}

/* RFC 1950's modulus; and the most bytes before the 32-bit sums of
 * guts_adler32 must be reduced (zlib's NMAX: 255 n (n + 1) / 2 + (n + 1)
 * (BASE - 1) stays under 2^32), a multiple of 16. */
#define ADLER_BASE 65521u
#define ADLER_RUN 5552u

#if defined(__SSE2__)
/* k 16-byte blocks from p into *a, *b: per block, a grows by its bytes'
 * sum and b by 16 a (before) plus the bytes weighted 16 down to 1. In
 * lanes: s1 the sums (psadbw), ps the sum of s1 before each block, s2 the
 * weighted sums (pmaddwd on the bytes widened to 16 bits). */
static void adler_blocks(uint32_t *a, uint32_t *b, const uint8_t *p, size_t k)
{
    const __m128i zero = _mm_setzero_si128();
    const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
    const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
    __m128i s1 = zero, ps = zero, s2 = zero;
    for (size_t t = 0; t < k; t++, p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        ps = _mm_add_epi32(ps, s1);
        s1 = _mm_add_epi32(s1, _mm_sad_epu8(v, zero));
        s2 = _mm_add_epi32(s2, _mm_madd_epi16(_mm_unpacklo_epi8(v, zero), w_lo));
        s2 = _mm_add_epi32(s2, _mm_madd_epi16(_mm_unpackhi_epi8(v, zero), w_hi));
    }
    uint32_t l1[4], lp[4], l2[4];
    _mm_storeu_si128((__m128i *)(void *)l1, s1);
    _mm_storeu_si128((__m128i *)(void *)lp, ps);
    _mm_storeu_si128((__m128i *)(void *)l2, s2);
    uint64_t sum1 = (uint64_t)l1[0] + l1[1] + l1[2] + l1[3];
    uint64_t sump = (uint64_t)lp[0] + lp[1] + lp[2] + lp[3];
    uint64_t sum2 = (uint64_t)l2[0] + l2[1] + l2[2] + l2[3];
    *b = (uint32_t)((*b + 16 * (uint64_t)k * *a + 16 * sump + sum2) % ADLER_BASE);
    *a = (uint32_t)((*a + sum1) % ADLER_BASE);
}
#endif

uint32_t guts_adler32(uint32_t adler, const void *in, size_t n)
{
    const uint8_t *p = in;
    uint32_t a = adler & 0xffff, b = adler >> 16;
#if defined(__SSE2__)
    while (n >= 16) {
        size_t k = (n < ADLER_RUN ? n : ADLER_RUN) / 16;
        adler_blocks(&a, &b, p, k);
        p += 16 * k;
        n -= 16 * k;
    }
#endif
    while (n) {
        size_t k = n < ADLER_RUN ? n : ADLER_RUN;
        n -= k;
        while (k--) {
            a += *p++;
            b += a;
        }
        a %= ADLER_BASE;
        b %= ADLER_BASE;
    }
    return b << 16 | a;
}

/* The zlib stream around a block (out + 2 to end, or stored blocks when
 * those are smaller): header, Adler-32; its length. */
static size_t zlib_wrap(const uint8_t *in, size_t n, uint8_t *out, uint8_t *end)
{
    out[0] = 0x78; /* deflate, 32 KiB window */
    out[1] = 0x01; /* fastest; (0x78 << 8 | 0x01) % 31 == 0 */
    size_t stored = 5 * (n / STORED_MAX + 1) + n;
    if ((size_t)(end - out - 2) > stored) end = stored_blocks(in, n, out + 2);
    put_be32(end, guts_adler32(1, in, n));
    return (size_t)(end - out) + 4;
}

size_t guts_deflate_fast(guts_deflate *d, const void *in, size_t n, uint8_t *out)
{
    return zlib_wrap(in, n, out, fixed_block(d, in, n, out + 2));
}

size_t guts_deflate_copies(const void *data, size_t n, const guts_copy *c, size_t nc, uint8_t *out)
{
    pthread_once(&codes_once, codes_init);
    const uint8_t *in = data;
    bits b = {.o = out + 2};
    put(&b, 1 | 1 << 1, 3); /* the final block, fixed codes */
    size_t i = 0;
    for (size_t k = 0; k <= nc; k++) {
        size_t at = k < nc ? c[k].at : n, len = k < nc ? c[k].len : 0;
        size_t dist = k < nc ? at - c[k].from : 0;
        if (at < i || at > n || len > n - at || (len && (dist == 0 || dist > at)))
            return 0;
        if (dist > WINDOW || len < 3) at += len, len = 0; /* as literals */
        for (; i < at; i++) {
            literal(&b, in[i]);
            if (b.n >= 32) flush(&b);
        }
        while (len) { /* 258 at most, and no tail under 3 */
            unsigned m = len > MATCH_MAX ? MATCH_MAX : (unsigned)len;
            if (len - m && len - m < 3) m = (unsigned)len - 3;
            match(&b, m, (unsigned)dist);
            flush(&b);
            len -= m;
            i += m;
        }
    }
    literal(&b, 256);
    for (; b.n > 0; b.n = b.n > 8 ? b.n - 8 : 0, b.acc >>= 8)
        *b.o++ = (uint8_t)b.acc;
    return zlib_wrap(in, n, out, b.o);
}
