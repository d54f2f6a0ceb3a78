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

/** The copies a zstd frame made against a prefix, read from its sequences
 * instead of found again, without its content: a frame (n bytes) of dn
 * bytes made against a prefix of bn bytes gives its copies from the prefix
 * (copy called in increasing order of at, not overlapping, contiguous
 * matches merged, any length)
 * and its literals, the content's bytes no copy covers, in order, written
 * to lits (room for max_inserts bytes), *nlits of them. Nothing is compared
 * or checksummed (the content is never made): the caller's reader must
 * check what it is given (git's index-pack hashes every object).
 * GUTS_OK; GUTS_ENOTFOUND when a match reaches inside the content (its
 * bytes would be needed), more than max_inserts bytes are literals, or
 * copy stopped; GUTS_ECORRUPT when the frame is not read so. */
int guts_zstd_lits_copies(const uint8_t *frame, size_t n, size_t bn, size_t dn, size_t max_inserts,
                          uint8_t *lits, size_t *nlits, guts_delta_copy_fn copy, void *ctx);

/** The matches a zstd frame (n bytes) made with no prefix, inside its own
 * content dst[0..dn) (already decoded, and so checked, by zstd): copy is
 * called for each in order, at the match's place, from its source earlier
 * in dst (from < at; the two may overlap, as LZ77's do), any length of 3
 * or more; the bytes between are literals. For a deflate stream made of
 * the same matches (src/git/deflate.c) instead of found again. GUTS_OK;
 * GUTS_ENOTFOUND when copy stopped; GUTS_ECORRUPT when the frame is not
 * read so (or has a prefix). */
int guts_zstd_self_copies(const uint8_t *frame, size_t n, const uint8_t *dst, size_t dn,
                          guts_delta_copy_fn copy, void *ctx);

/* Reading a git delta (src/git/pack.c describes the format). The one
 * decoder of its instructions: the pack reader applies them, the store
 * turns them into zstd sequences. Neither checks an instruction against a
 * base or a result: the caller does, since only it knows their sizes. */

/** The base and result sizes a git delta starts with; *pos is left after
 * them. GUTS_EINVAL when either is truncated or over 2^63. */
int guts_gd_sizes(const uint8_t *d, size_t n, size_t *pos, uint64_t *src, uint64_t *dst);

/* One instruction: copy base[off, off + len), or insert the len bytes at
 * d[off]. */
typedef struct guts_gd_op {
    int copy;
    size_t off, len;
} guts_gd_op;

/** The instruction at d[*pos] (*pos < n); *pos is left after it (after an
 * insert's bytes too). GUTS_EINVAL when it is truncated or is the reserved
 * opcode 0. */
int guts_gd_next(const uint8_t *d, size_t n, size_t *pos, guts_gd_op *op);

#endif
