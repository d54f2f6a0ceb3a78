/* deflate.h - a fast zlib stream encoder for pack entries (deflate.c).
 *
 * A pack entry served to a clone with nothing prepared is deflated while
 * the client waits; zlib's level 1 was half the node's CPU there (its
 * Huffman coding and block output, not its matching). This encoder makes
 * one greedy pass over the entry with a single-candidate hash of 4 bytes
 * and writes RFC 1951's fixed Huffman codes, so there is no tree to build:
 * on the 12,341 entries of zlib's history about 4x less CPU than zlib's
 * level 1, at 1.12x its bytes (docs/performance.md). Any inflater reads
 * the result: it is an ordinary zlib stream (RFC 1950).
 */
#ifndef GUTS_GIT_DEFLATE_H
#define GUTS_GIT_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "guts/store.h"

/* Hash table of the match finder: 2^14 slots of 4 bytes (64 KiB) is
 * enough for entries, most of which are a few KiB. */
#define GUTS_DEFLATE_HASH_BITS 14

typedef struct guts_deflate {
    /* The position + base of the last occurrence of each hash; base moves
     * past each entry, so an old entry's slots are below it and never
     * match, and the table is cleared only when base wraps. */
    uint32_t *tab;
    uint32_t base;
} guts_deflate;

/* The largest entry: its positions plus the table's base stay within 32
 * bits (the pack writer gives it entries under GUTS_PACK_BUF). */
#define GUTS_DEFLATE_MAX ((size_t)1 << 30)

/** The most bytes guts_deflate_fast writes for an entry of n bytes. */
static inline size_t guts_deflate_bound(size_t n)
{
    /* 9 bits for a literal, at most 8 per byte for a match, the block's
     * bits, the zlib header and trailer, and the 7 bytes past its last
     * whole byte that the encoder's 8-byte stores reach; stored blocks
     * are smaller */
    return n + n / 8 + 16;
}

/** Set up d. GUTS_ENOMEM. */
int guts_deflate_init(guts_deflate *d);

/** Deflate in (n bytes, at most GUTS_DEFLATE_MAX) into out, which has room
 * for guts_deflate_bound(n): one zlib stream, stored blocks when matches
 * would not make it smaller. Returns the bytes written. */
size_t guts_deflate_fast(guts_deflate *d, const void *in, size_t n, uint8_t *out);

/** The same stream made of given matches instead of found ones: c[0..nc)
 * are copies inside in itself (guts_copy: in[at, at + len) equals in[from,
 * from + len), from < at, in increasing order of at, not overlapping one
 * another; as guts_zstd_self_copies gives a zstd frame's), the bytes
 * between them literals; a copy from further back than deflate's 32 KiB
 * window, or under 3 bytes, goes as literals. No table: out has room for
 * guts_deflate_bound(n). Returns the bytes written, 0 when the copies are
 * not so. */
size_t guts_deflate_copies(const void *in, size_t n, const guts_copy *c, size_t nc, uint8_t *out);

void guts_deflate_free(guts_deflate *d);

/** zlib's adler32(adler, in, n) (RFC 1950's check of a stream's input),
 * 16 bytes a step with SSE2 where the build targets it: zlib's own loop
 * was 2.5% of the cycles of a cold zlib clone's pack, this one (with the
 * stream's wrapping) 0.8%. Start from 1 (adler32's of no bytes). */
uint32_t guts_adler32(uint32_t adler, const void *in, size_t n);

#endif
