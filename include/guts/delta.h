/* delta.h - finding what a new version of an object copies from an old one.
 *
 * One match finder serves both deltas guts writes: git deltas in the packs
 * it sends (src/git/pack.c, guts_pack_delta) and the store's zstd deltas,
 * whose zstd sequences it gives directly (src/store/objects_put.c), so an
 * import does not have zstd index every base in full. Pure computation.
 */
#ifndef GUTS_DELTA_H
#define GUTS_DELTA_H

#include <stddef.h>
#include <stdint.h>

/* Matches are found on blocks of this many bytes: no copy is shorter. */
#define GUTS_DELTA_BLOCK 16

/* One copy: dst[at, at + len) equals base[from, from + len). Returning
 * nonzero stops the scan (the caller's output would grow too long). */
typedef int (*guts_delta_copy_fn)(void *ctx, size_t at, size_t from, size_t len);

/** Calls copy for what dst[0..dn) takes from base[0..bn): copies in
 * increasing order of at, not overlapping, each at least GUTS_DELTA_BLOCK
 * long; the bytes between them are dst's own (inserts). What both start
 * and end with is one copy each; the rest is found on the base's blocks.
 * GUTS_OK; GUTS_ENOTFOUND when an input is under a block or over 4 GiB, or
 * when copy stopped the scan; GUTS_ENOMEM. */
int guts_delta_scan(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn,
                    guts_delta_copy_fn copy, void *ctx);

#endif
