/* zcopies.c - what a zstd frame's sequences say, read instead of found
 * again (delta.h): the copies a frame made against a prefix, with its
 * literals and without its content (guts_zstd_lits_copies), and the
 * matches a frame with no prefix made inside its own content
 * (guts_zstd_self_copies).
 *
 * What is read (RFC 8878): the frame and block headers, the sequences'
 * FSE tables and bitstream, the repeat offsets, and for
 * guts_zstd_lits_copies the literals too (their Huffman streams, RFC 8878
 * 4.2): a frame whose every match reaches into the base gives a git delta
 * (its copies, its literals inserted) with none of its content decoded: no
 * copy of the base's bytes, no checksum over them. A frame with a match
 * inside the content itself is left to the caller (its bytes would be
 * needed). A frame read wrong is refused: the bitstream must end exactly
 * where each block does and the sizes add up to the content's; the
 * caller's reader checks the rest (git's index-pack hashes every object).
 */
#include <assert.h>
#include <string.h>

#include "guts/delta.h"
#include "guts/guts.h"

#define MAX_LL 35
#define MAX_ML 52
#define MAX_OF 31
#define LOG_LL 9
#define LOG_ML 9
#define LOG_OF 8

static const uint32_t ll_base[MAX_LL + 1] = {
    0,  1,  2,  3,  4,  5,  6,   7,   8,   9,   10,   11,   12,   13,   14,    15,    16,    18,
    20, 22, 24, 28, 32, 40, 48, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
static const uint8_t ll_bits[MAX_LL + 1] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,
                                            0, 0, 0, 0, 1, 1, 1, 1, 2, 2,  3,  3,
                                            4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint32_t ml_base[MAX_ML + 1] = {
    3,  4,  5,  6,  7,  8,  9,  10, 11, 12,  13,  14,  15,  16,   17,   18,   19,    20,
    21, 22, 23, 24, 25, 26, 27, 28, 29, 30,  31,  32,  33,  34,   35,   37,   39,    41,
    43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027, 2051, 4099, 8195, 16387, 32771, 65539};
static const uint8_t ml_bits[MAX_ML + 1] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4,
                                            5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* One state of an FSE decoding table. */
typedef struct fse_cell {
    uint16_t base;
    uint8_t sym, bits;
} fse_cell;

typedef struct fse_table {
    fse_cell c[1 << LOG_LL];
    unsigned log;
} fse_table;

static unsigned highbit(uint32_t v)
{
    return 31u - (unsigned)__builtin_clz(v);
}

/* The decoding table of a normalized distribution (RFC 8878 4.1.1). */
static int fse_build(fse_table *t, const int16_t *norm, unsigned nsym, unsigned log)
{
    unsigned size = 1u << log, high = size - 1, pos = 0;
    unsigned step = (size >> 1) + (size >> 3) + 3;
    uint16_t next[MAX_ML + 1];
    for (unsigned s = 0; s < nsym; s++) {
        if (norm[s] == -1) {
            t->c[high--].sym = (uint8_t)s;
            next[s] = 1;
        } else {
            next[s] = (uint16_t)norm[s];
        }
    }
    for (unsigned s = 0; s < nsym; s++)
        for (int i = 0; i < norm[s]; i++) {
            t->c[pos].sym = (uint8_t)s;
            do
                pos = (pos + step) & (size - 1);
            while (pos > high);
        }
    if (pos != 0) return -1;
    for (unsigned u = 0; u < size; u++) {
        unsigned ns = next[t->c[u].sym]++;
        if (ns == 0) return -1;
        unsigned nb = log - highbit(ns);
        t->c[u].bits = (uint8_t)nb;
        t->c[u].base = (uint16_t)((ns << nb) - size);
    }
    t->log = log;
    return 0;
}

/* n bits of p (len bytes) from bit at, least significant first; bits past
 * the end read as 0. */
static uint64_t bits_at(const uint8_t *p, size_t len, size_t at, unsigned n)
{
    size_t byte = at >> 3;
    uint64_t v = 0;
    if (byte + 8 <= len)
        memcpy(&v, p + byte, 8);
    else if (byte < len)
        memcpy(&v, p + byte, len - byte);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    v >>= at & 7;
    return n ? v & (~0ull >> (64 - n)) : 0;
}

/* An FSE table description (RFC 8878 4.1.1) into t; bytes read, or -1. */
static long fse_read(fse_table *t, const uint8_t *p, size_t len, unsigned nsym, unsigned maxlog)
{
    int16_t norm[MAX_ML + 1] = {0};
    if (len == 0) return -1;
    size_t at = 4;
    unsigned log = (unsigned)bits_at(p, len, 0, 4) + 5;
    if (log > maxlog) return -1;
    int remaining = (1 << log) + 1, threshold = 1 << log;
    unsigned nbits = log + 1, s = 0;
    int prev0 = 0;
    while (remaining > 1 && s < nsym) {
        if (prev0) {
            unsigned n0 = s;
            for (;;) {
                unsigned r = (unsigned)bits_at(p, len, at, 2);
                at += 2;
                n0 += r;
                if (r != 3) break;
                if (at > len * 8) return -1;
            }
            if (n0 >= nsym) return -1;
            while (s < n0)
                norm[s++] = 0;
        }
        int max = (2 * threshold - 1) - remaining;
        int v = (int)bits_at(p, len, at, nbits), count;
        if ((v & (threshold - 1)) < max) {
            count = v & (threshold - 1);
            at += nbits - 1;
        } else {
            count = v & (2 * threshold - 1);
            if (count >= threshold) count -= max;
            at += nbits;
        }
        count--;
        remaining -= count < 0 ? -count : count;
        norm[s++] = (int16_t)count;
        prev0 = count == 0;
        while (remaining < threshold && threshold > 1) {
            nbits--;
            threshold >>= 1;
        }
        if (at > len * 8) return -1;
    }
    if (remaining != 1 || at > len * 8) return -1;
    if (fse_build(t, norm, nsym, log)) return -1;
    return (long)((at + 7) >> 3);
}

/* The sequences' bitstream, read backwards from its last bit. */
typedef struct bwd {
    const uint8_t *p;
    size_t len, pos; /* bits not yet read: [0, pos) */
} bwd;

static int bwd_read(bwd *b, unsigned n, uint32_t *v)
{
    if (n > b->pos) return -1;
    b->pos -= n;
    *v = (uint32_t)bits_at(b->p, b->len, b->pos, n);
    return 0;
}

/* n bits, at most BWD_MAX, at once: a sequence's three extra-bit fields
 * in one load, its three state updates in another, where six bwd_reads
 * were most of frame_read (7.9% of a cold clone's node CPU; 9% fewer
 * instructions in it this way). */
#define BWD_MAX 56
static int bwd_read64(bwd *b, unsigned n, uint64_t *v)
{
    assert(n <= BWD_MAX);
    if (n > b->pos) return -1;
    b->pos -= n;
    *v = bits_at(b->p, b->len, b->pos, n);
    return 0;
}

static inline uint32_t low_bits(uint64_t v, unsigned n)
{
    return (uint32_t)(v & ((1u << n) - 1));
}

/* The three kinds of symbols a sequence has: literal lengths, offsets,
 * match lengths. */
enum { K_LL, K_OF, K_ML };

/* The predefined tables: what fse_build makes of RFC 8878's default
 * distributions (3.1.1.3.2.2: literal lengths {4, 3, 2, 2, ...} at accuracy
 * 6, offsets at 5, match lengths at 6), written out so the base keeps no
 * state and takes no lock; zstd's own decoder holds the same states. */
static const fse_table predefined[3] = {
    {{
         {0, 0, 4}, {16, 0, 4}, {32, 1, 5}, {0, 3, 5}, {0, 4, 5}, {0, 6, 5},
         {0, 7, 5}, {0, 9, 5}, {0, 10, 5}, {0, 12, 5}, {0, 14, 6}, {0, 16, 5},
         {0, 18, 5}, {0, 19, 5}, {0, 21, 5}, {0, 22, 5}, {0, 24, 5}, {32, 25, 5},
         {0, 26, 5}, {0, 27, 6}, {0, 29, 6}, {0, 31, 6}, {32, 0, 4}, {0, 1, 4},
         {0, 2, 5}, {32, 4, 5}, {0, 5, 5}, {32, 7, 5}, {0, 8, 5}, {32, 10, 5},
         {0, 11, 5}, {0, 13, 6}, {32, 16, 5}, {0, 17, 5}, {32, 19, 5}, {0, 20, 5},
         {32, 22, 5}, {0, 23, 5}, {0, 25, 4}, {16, 25, 4}, {32, 26, 5}, {0, 28, 6},
         {0, 30, 6}, {48, 0, 4}, {16, 1, 4}, {32, 2, 5}, {32, 3, 5}, {32, 5, 5},
         {32, 6, 5}, {32, 8, 5}, {32, 9, 5}, {32, 11, 5}, {32, 12, 5}, {0, 15, 6},
         {32, 17, 5}, {32, 18, 5}, {32, 20, 5}, {32, 21, 5}, {32, 23, 5}, {32, 24, 5},
         {0, 35, 6}, {0, 34, 6}, {0, 33, 6}, {0, 32, 6},
     },
     6},
    {{
         {0, 0, 5}, {0, 6, 4}, {0, 9, 5}, {0, 15, 5}, {0, 21, 5}, {0, 3, 5},
         {0, 7, 4}, {0, 12, 5}, {0, 18, 5}, {0, 23, 5}, {0, 5, 5}, {0, 8, 4},
         {0, 14, 5}, {0, 20, 5}, {0, 2, 5}, {16, 7, 4}, {0, 11, 5}, {0, 17, 5},
         {0, 22, 5}, {0, 4, 5}, {16, 8, 4}, {0, 13, 5}, {0, 19, 5}, {0, 1, 5},
         {16, 6, 4}, {0, 10, 5}, {0, 16, 5}, {0, 28, 5}, {0, 27, 5}, {0, 26, 5},
         {0, 25, 5}, {0, 24, 5},
     },
     5},
    {{
         {0, 0, 6}, {0, 1, 4}, {32, 2, 5}, {0, 3, 5}, {0, 5, 5}, {0, 6, 5},
         {0, 8, 5}, {0, 10, 6}, {0, 13, 6}, {0, 16, 6}, {0, 19, 6}, {0, 22, 6},
         {0, 25, 6}, {0, 28, 6}, {0, 31, 6}, {0, 33, 6}, {0, 35, 6}, {0, 37, 6},
         {0, 39, 6}, {0, 41, 6}, {0, 43, 6}, {0, 45, 6}, {16, 1, 4}, {0, 2, 4},
         {32, 3, 5}, {0, 4, 5}, {32, 6, 5}, {0, 7, 5}, {0, 9, 6}, {0, 12, 6},
         {0, 15, 6}, {0, 18, 6}, {0, 21, 6}, {0, 24, 6}, {0, 27, 6}, {0, 30, 6},
         {0, 32, 6}, {0, 34, 6}, {0, 36, 6}, {0, 38, 6}, {0, 40, 6}, {0, 42, 6},
         {0, 44, 6}, {32, 1, 4}, {48, 1, 4}, {16, 2, 4}, {32, 4, 5}, {32, 5, 5},
         {32, 7, 5}, {32, 8, 5}, {0, 11, 6}, {0, 14, 6}, {0, 17, 6}, {0, 20, 6},
         {0, 23, 6}, {0, 26, 6}, {0, 29, 6}, {0, 52, 6}, {0, 51, 6}, {0, 50, 6},
         {0, 49, 6}, {0, 48, 6}, {0, 47, 6}, {0, 46, 6},
     },
     6},
};

/* What a read carries from block to block. */
typedef struct zc {
    fse_table *own;            /* [3]: tables a block described */
    const fse_table *t[3];     /* each kind's table now: own or predefined */
    uint32_t rep[3];
    size_t bn, dn, pos; /* pos: content bytes placed so far */
    size_t at, from, len; /* the copy not yet reported (len 0: none) */
    size_t inserts, max_inserts; /* content bytes not copied: so far, at most */
    guts_delta_copy_fn copy;
    void *ctx;
    /* guts_zstd_lits_copies: the literals go to lits (room for
     * max_inserts), the Huffman table of the last block that described
     * one in huf; NULL: the literals are skipped */
    uint8_t *lits;
    size_t nlits;
    struct huf_table *huf;
    int huf_ok;
    int self; /* guts_zstd_self_copies: no base, every match reported */
} zc;

/* n more bytes of the content go as inserts: 1 once past max_inserts. */
static int inserts(zc *z, size_t n)
{
    z->inserts += n;
    return z->inserts > z->max_inserts;
}

/* Report the pending copy, if any. */
static int flush_copy(zc *z)
{
    size_t n = z->len;
    z->len = 0;
    return n && z->copy(z->ctx, z->at, z->from, n) ? 1 : 0;
}

/* A match of n bytes at z->pos, off back in base + content: with self,
 * reported as it is; else it must lie in the base, and extends the
 * pending copy or starts the next one. */
static int match(zc *z, size_t off, size_t n)
{
    if (off == 0 || off > z->pos + z->bn || n > z->dn - z->pos) return -1;
    if (z->self) {
        int rc = z->copy(z->ctx, z->pos, z->pos - off, n) ? 1 : 0;
        z->pos += n;
        return rc;
    }
    if (off < z->pos + n) return 1; /* bytes of the content: not decoded here */
    size_t from = z->bn + z->pos - off;
    if (z->len && z->at + z->len == z->pos && z->from + z->len == from) {
        z->len += n;
    } else {
        int rc = flush_copy(z);
        if (rc) return rc;
        z->at = z->pos;
        z->from = from;
        z->len = n;
    }
    z->pos += n;
    return 0;
}

/* The table of kind k for a block: mode 0 predefined, 1 one symbol, 2
 * described here, 3 the last block's. Bytes read, or -1. */
static long table_for(zc *z, int k, unsigned mode, const uint8_t *p, size_t len)
{
    static const unsigned nsym[3] = {MAX_LL + 1, MAX_OF + 1, MAX_ML + 1};
    static const unsigned maxlog[3] = {LOG_LL, LOG_OF, LOG_ML};
    fse_table *own = &z->own[k];
    long n;
    switch (mode) {
    case 0: z->t[k] = &predefined[k]; return 0;
    case 1:
        if (len < 1 || p[0] >= nsym[k]) return -1;
        own->c[0] = (fse_cell){.base = 0, .sym = p[0], .bits = 0};
        own->log = 0;
        z->t[k] = own;
        return 1;
    case 2:
        if ((n = fse_read(own, p, len, nsym[k], maxlog[k])) < 0) return -1;
        z->t[k] = own;
        return n;
    default: return z->t[k] ? 0 : -1;
    }
}

/* n bytes of literals alone. */
static int lits_only(zc *z, size_t n)
{
    z->pos += n;
    return inserts(z, n);
}

/* ---- literals, for guts_zstd_lits_copies (RFC 8878 4.2) ---- */

/* Longest Huffman code a literals section may use (RFC 8878 4.2.1). */
#define HUF_LOG_MAX 11
/* Weights are 0..HUF_LOG_MAX; a table describes at most 255 of them. */
#define HUF_WEIGHTS_MAX 255

/* Indexed by the next log bits of a stream: the symbol and its code's
 * length. */
typedef struct huf_table {
    uint8_t sym[1 << HUF_LOG_MAX], bits[1 << HUF_LOG_MAX];
    unsigned log;
} huf_table;

/* Bits [pos - n, pos) of p as a number whose highest bit is at pos - 1
 * (the backward streams' order); bits below 0 read as 0. */
static uint32_t peek_back(const uint8_t *p, size_t len, long pos, unsigned n)
{
    if (pos >= (long)n) return (uint32_t)bits_at(p, len, (size_t)pos - n, n);
    if (pos <= 0) return 0;
    return (uint32_t)(bits_at(p, len, 0, (unsigned)pos) << (n - (unsigned)pos));
}

/* The start of a backward stream: the bit under its last byte's highest
 * set bit (the padding marker); -1 when there is none. */
static long back_start(const uint8_t *p, size_t len)
{
    return len && p[len - 1] ? 8 * (long)(len - 1) + (long)highbit(p[len - 1]) : -1;
}

/* n bits read backwards from *pos (peek_back's), which moves past them. */
static uint32_t rd_back(const uint8_t *p, size_t len, long *pos, unsigned n)
{
    uint32_t v = peek_back(p, len, *pos, n);
    *pos -= n;
    return v;
}

/* Weights compressed with FSE (RFC 8878 4.2.1.2): two states over one
 * table take turns until the stream is read past its start; then the
 * other state gives the last weight. */
static int huf_weights_fse(const uint8_t *p, size_t len, uint8_t *w, unsigned *nw)
{
    fse_table t;
    long k = fse_read(&t, p, len, HUF_LOG_MAX + 1, 6);
    if (k < 0 || (size_t)k >= len) return -1;
    const uint8_t *s = p + k;
    size_t m = len - (size_t)k;
    long pos = back_start(s, m);
    if (pos < 2 * (long)t.log) return -1;
    uint32_t st[2];
    st[0] = rd_back(s, m, &pos, t.log);
    st[1] = rd_back(s, m, &pos, t.log);
    unsigned n = 0;
    for (int i = 0;; i ^= 1) {
        if (n + 2 > HUF_WEIGHTS_MAX) return -1;
        const fse_cell *c = &t.c[st[i]];
        w[n++] = c->sym;
        st[i] = c->base + rd_back(s, m, &pos, c->bits);
        if (pos < 0) {
            w[n++] = t.c[st[i ^ 1]].sym;
            break;
        }
    }
    *nw = n;
    return 0;
}

/* A literals section's Huffman tree description (RFC 8878 4.2.1) into t:
 * the bytes it took, or -1. */
static long huf_read(huf_table *t, const uint8_t *p, size_t len)
{
    uint8_t w[HUF_WEIGHTS_MAX + 1];
    unsigned nw;
    size_t used;
    if (len < 1) return -1;
    if (p[0] >= 128) {
        nw = p[0] - 127u;
        used = 1 + (nw + 1) / 2;
        if (used > len) return -1;
        for (unsigned i = 0; i < nw; i++)
            w[i] = (uint8_t)(i & 1 ? p[1 + i / 2] & 15 : p[1 + i / 2] >> 4);
    } else {
        used = 1 + (size_t)p[0];
        if (p[0] == 0 || used > len || huf_weights_fse(p + 1, p[0], w, &nw)) return -1;
    }
    uint32_t total = 0, count[HUF_LOG_MAX + 1] = {0};
    for (unsigned i = 0; i < nw; i++) {
        if (w[i] > HUF_LOG_MAX) return -1;
        if (w[i]) total += 1u << (w[i] - 1);
    }
    if (total == 0) return -1;
    unsigned log = highbit(total) + 1;
    uint32_t rest = (1u << log) - total; /* the last symbol's, implied */
    if (log > HUF_LOG_MAX || (rest & (rest - 1))) return -1;
    w[nw++] = (uint8_t)(highbit(rest) + 1);
    for (unsigned i = 0; i < nw; i++)
        count[w[i]]++;
    /* codes from the lowest weight (longest code) up, by symbol within a
     * weight: each weight's run of the table starts after the last's */
    uint32_t start[HUF_LOG_MAX + 1], at = 0;
    for (unsigned k = 1; k <= log; k++) {
        start[k] = at;
        at += count[k] << (k - 1);
    }
    if (at != 1u << log) return -1;
    for (unsigned s = 0; s < nw; s++) {
        if (!w[s]) continue;
        uint32_t n = 1u << (w[s] - 1), from = start[w[s]];
        memset(t->sym + from, (int)s, n);
        memset(t->bits + from, (int)(log + 1 - w[s]), n);
        start[w[s]] = from + n;
    }
    t->log = log;
    return (long)used;
}

/* One Huffman stream (len bytes) into out[0..n): it must end exactly. */
static int huf_stream(const huf_table *t, const uint8_t *p, size_t len, uint8_t *out, size_t n)
{
    long pos = back_start(p, len);
    if (pos < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = peek_back(p, len, pos, t->log);
        out[i] = t->sym[v];
        pos -= t->bits[v];
        if (pos < 0) return -1;
    }
    return pos == 0 ? 0 : -1;
}

/* A block's literals (the section's type ltype and size format sf; lh
 * header bytes, lsize in all, regen bytes regenerated) to z->lits: 1 when
 * there is no room (more inserts than allowed), -1 when read wrong. */
static int lits_decode(zc *z, const uint8_t *p, unsigned ltype, unsigned sf, size_t lh,
                       size_t lsize, size_t regen)
{
    if (regen > z->max_inserts - z->nlits) return 1;
    uint8_t *out = z->lits + z->nlits;
    z->nlits += regen;
    if (ltype == 0) {
        memcpy(out, p + lh, regen);
        return 0;
    }
    if (ltype == 1) {
        memset(out, p[lh], regen);
        return 0;
    }
    const uint8_t *c = p + lh;
    size_t n = lsize - lh;
    if (ltype == 2) {
        long k = huf_read(z->huf, c, n);
        if (k < 0) return -1;
        z->huf_ok = 1;
        c += k;
        n -= (size_t)k;
    } else if (!z->huf_ok) {
        return -1;
    }
    if (sf == 0) return huf_stream(z->huf, c, n, out, regen);
    size_t seg = (regen + 3) / 4;
    if (n < 6 || 3 * seg > regen) return -1;
    size_t sz[4] = {c[0] | (size_t)c[1] << 8, c[2] | (size_t)c[3] << 8, c[4] | (size_t)c[5] << 8};
    c += 6;
    n -= 6;
    if (sz[0] + sz[1] + sz[2] > n) return -1;
    sz[3] = n - sz[0] - sz[1] - sz[2];
    for (int i = 0; i < 4; i++) {
        size_t want = i < 3 ? seg : regen - 3 * seg;
        if (huf_stream(z->huf, c, sz[i], out, want)) return -1;
        c += sz[i];
        out += want;
    }
    return 0;
}

/* One compressed block (p, len): its literals and sequences. */
static int block(zc *z, const uint8_t *p, size_t len)
{
    if (len < 1) return -1;
    unsigned ltype = p[0] & 3, sf = (p[0] >> 2) & 3;
    size_t lh, regen, lsize;
    if (ltype <= 1) {
        lh = sf == 1 ? 2 : sf == 3 ? 3 : 1;
        if (len < lh) return -1;
        regen = lh == 1 ? p[0] >> 3u
                : lh == 2 ? (p[0] >> 4u) + ((size_t)p[1] << 4)
                          : (p[0] >> 4u) + ((size_t)p[1] << 4) + ((size_t)p[2] << 12);
        lsize = lh + (ltype == 0 ? regen : 1);
    } else {
        lh = sf <= 1 ? 3 : sf == 2 ? 4 : 5;
        unsigned nb = sf <= 1 ? 10 : sf == 2 ? 14 : 18;
        if (len < lh) return -1;
        uint64_t v = bits_at(p, lh, 0, (unsigned)(8 * lh));
        regen = (size_t)((v >> 4) & ((1u << nb) - 1));
        lsize = lh + (size_t)((v >> (4 + nb)) & ((1u << nb) - 1));
    }
    if (z->lits) {
        if (lsize > len) return -1;
        int rc = lits_decode(z, p, ltype, sf, lh, lsize, regen);
        if (rc) return rc;
    }
    if (lsize >= len) return lsize == len && regen <= z->dn - z->pos ? lits_only(z, regen) : -1;
    const uint8_t *s = p + lsize;
    size_t n = len - lsize, q;
    uint32_t nseq;
    if (s[0] < 128) {
        nseq = s[0];
        q = 1;
    } else if (s[0] < 255) {
        if (n < 2) return -1;
        nseq = ((uint32_t)(s[0] - 128) << 8) + s[1];
        q = 2;
    } else {
        if (n < 3) return -1;
        nseq = s[1] + ((uint32_t)s[2] << 8) + 0x7f00;
        q = 3;
    }
    if (nseq == 0) return q == n && regen <= z->dn - z->pos ? lits_only(z, regen) : -1;
    if (q >= n) return -1;
    unsigned modes = s[q++];
    if (modes & 3) return -1;
    for (int k = K_LL; k <= K_ML; k++) {
        long used = table_for(z, k, (modes >> (6 - 2 * k)) & 3, s + q, n - q);
        if (used < 0) return -1;
        q += (size_t)used;
    }
    const fse_table *llt = z->t[K_LL], *oft = z->t[K_OF], *mlt = z->t[K_ML];
    if (q >= n || s[n - 1] == 0) return -1;
    bwd b = {s + q, n - q, 8 * (n - q - 1) + highbit(s[n - 1])};
    uint32_t lls, ofs, mls;
    if (bwd_read(&b, llt->log, &lls) || bwd_read(&b, oft->log, &ofs) ||
        bwd_read(&b, mlt->log, &mls))
        return -1;
    size_t lits = 0;
    for (uint32_t i = 0; i < nseq; i++) {
        unsigned ofc = oft->c[ofs].sym, mlc = mlt->c[mls].sym, llc = llt->c[lls].sym;
        if (ofc > MAX_OF || mlc > MAX_ML || llc > MAX_LL) return -1;
        uint32_t ofv, mlx, llx;
        unsigned mlb = ml_bits[mlc], llb = ll_bits[llc];
        if (ofc + mlb + llb <= BWD_MAX) { /* offset's bits first, then ml's, then ll's */
            uint64_t x;
            if (bwd_read64(&b, ofc + mlb + llb, &x)) return -1;
            llx = low_bits(x, llb);
            mlx = low_bits(x >> llb, mlb);
            ofv = (uint32_t)(x >> (llb + mlb));
        } else if (bwd_read(&b, ofc, &ofv) || bwd_read(&b, mlb, &mlx) ||
                   bwd_read(&b, llb, &llx)) {
            return -1;
        }
        uint64_t offval = ((uint64_t)1 << ofc) + ofv;
        size_t ml = ml_base[mlc] + mlx, ll = ll_base[llc] + llx;
        uint32_t off;
        if (offval > 3) {
            off = (uint32_t)(offval - 3);
            z->rep[2] = z->rep[1];
            z->rep[1] = z->rep[0];
            z->rep[0] = off;
        } else {
            unsigned idx = (unsigned)offval - 1 + (ll == 0);
            if (idx == 0) {
                off = z->rep[0];
            } else {
                off = idx == 3 ? z->rep[0] - 1 : z->rep[idx];
                if (idx != 1) z->rep[2] = z->rep[1];
                z->rep[1] = z->rep[0];
                z->rep[0] = off;
            }
        }
        lits += ll;
        if (lits > regen || ll > z->dn - z->pos) return -1;
        z->pos += ll;
        int rc = inserts(z, ll);
        if (!rc) rc = match(z, off, ml);
        if (rc) return rc;
        if (i + 1 < nseq) { /* ll's state bits first, then ml's, then the offset's */
            const fse_cell *cl = &llt->c[lls], *cm = &mlt->c[mls], *co = &oft->c[ofs];
            uint64_t x;
            if (bwd_read64(&b, (unsigned)cl->bits + cm->bits + co->bits, &x)) return -1;
            ofs = co->base + low_bits(x, co->bits);
            mls = cm->base + low_bits(x >> co->bits, cm->bits);
            lls = cl->base + (uint32_t)(x >> (co->bits + cm->bits));
            if (lls >> llt->log || mls >> mlt->log || ofs >> oft->log) return -1;
        }
    }
    if (b.pos != 0 || regen - lits > z->dn - z->pos) return -1;
    z->pos += regen - lits;
    return inserts(z, regen - lits);
}

/* A raw (rle 0) or one-byte (rle 1) block of bsize bytes at p (len left
 * in the frame) to z->lits: 1 when there is no room, -1 when cut. */
static int raw_lits(zc *z, const uint8_t *p, size_t len, int rle, size_t bsize)
{
    if (len < (rle ? 1 : bsize)) return -1;
    if (bsize > z->max_inserts - z->nlits) return 1;
    if (rle)
        memset(z->lits + z->nlits, p[0], bsize);
    else
        memcpy(z->lits + z->nlits, p, bsize);
    z->nlits += bsize;
    return 0;
}

/* The frame's blocks through z (set up by the caller). */
static int frame_read(zc *z, const uint8_t *frame, size_t n)
{
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    if (n < 6 || memcmp(frame, magic, 4) != 0) return GUTS_ECORRUPT;
    unsigned fhd = frame[4], fcs = fhd >> 6, single = (fhd >> 5) & 1, did = fhd & 3;
    if (fhd & 8) return GUTS_ECORRUPT;
    size_t q = 5 + !single + (did == 3 ? 4 : did) +
               (fcs == 0 ? single : fcs == 1 ? 2 : fcs == 2 ? 4 : 8);
    for (int last = 0; !last;) {
        if (q + 3 > n) return GUTS_ECORRUPT;
        uint32_t h = frame[q] | (uint32_t)frame[q + 1] << 8 | (uint32_t)frame[q + 2] << 16;
        size_t bsize = h >> 3;
        last = h & 1;
        q += 3;
        int rc = 0;
        switch ((h >> 1) & 3) {
        case 0: /* raw */
        case 1: /* one byte repeated */
            if (bsize > z->dn - z->pos) return GUTS_ECORRUPT;
            if (z->lits && (rc = raw_lits(z, frame + q, n - q, (h >> 1) & 3, bsize))) break;
            rc = lits_only(z, bsize);
            bsize = ((h >> 1) & 3) ? 1 : bsize;
            break;
        case 2: rc = q + bsize <= n ? block(z, frame + q, bsize) : -1; break;
        default: return GUTS_ECORRUPT;
        }
        if (rc > 0) return GUTS_ENOTFOUND;
        if (rc < 0 || q + bsize > n) return GUTS_ECORRUPT;
        q += bsize;
    }
    q += ((fhd >> 2) & 1) ? 4 : 0;
    if (q != n || z->pos != z->dn) return GUTS_ECORRUPT;
    int rc = flush_copy(z);
    return rc > 0 ? GUTS_ENOTFOUND : rc < 0 ? GUTS_ECORRUPT : GUTS_OK;
}

int guts_zstd_lits_copies(const uint8_t *frame, size_t n, size_t bn, size_t dn, size_t max_inserts,
                          uint8_t *lits, size_t *nlits, guts_delta_copy_fn copy, void *ctx)
{
    fse_table own[3];
    huf_table huf;
    zc z = {.own = own, .rep = {1, 4, 8}, .bn = bn, .dn = dn, .copy = copy, .ctx = ctx,
            .max_inserts = max_inserts, .lits = lits, .huf = &huf};
    int rc = frame_read(&z, frame, n);
    *nlits = z.nlits;
    return rc;
}

int guts_zstd_self_copies(const uint8_t *frame, size_t n, const uint8_t *dst, size_t dn,
                          guts_delta_copy_fn copy, void *ctx)
{
    if (!dst) return GUTS_EINVAL;
    fse_table own[3];
    zc z = {.own = own, .rep = {1, 4, 8}, .dn = dn, .copy = copy, .ctx = ctx,
            .max_inserts = dn, .self = 1};
    return frame_read(&z, frame, n);
}
