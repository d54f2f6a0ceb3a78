/* recon.h - range-based set reconciliation, pure and transport-free.
 *
 * A puller P wants every element a server S has that P lacks. Both hold a set
 * of elements, each with a 32-bit key and a 128-bit term (the element's
 * fingerprint contribution). The key space is a 16-way tree: the range
 * (depth, prefix) holds the keys whose top 4*depth bits equal prefix, down to
 * GUTS_RECON_DEPTH_MAX (one key). A range's fingerprint is the sum mod 2^128
 * of its terms (as guts_fp); on the wire it is cut to 16 bits with the
 * session seed: low 16 bits of XXH3-64(sum as 16 bytes, seed). The sum of an
 * empty range is zero and hashes like any other sum.
 *
 * Exchange (one "round" = one RECON message each way):
 *   P: its set is empty -> ALL(root); else SPLIT(root) with 16 child fps.
 *   S: for each SPLIT, a MASK of the children whose fp differs from its own
 *      (nothing when no child differs); for each BLOOM, every element in the
 *      range whose term is not in the bloom; for each ALL, every element in
 *      the range. Elements go out through a callback, not as items.
 *   P: for each set bit of a MASK answering one of its SPLITs of the last
 *      round: its count in that child is 0 -> ALL; at most GUTS_RECON_LEAF,
 *      or the child is at GUTS_RECON_DEPTH_MAX -> BLOOM of its terms; else
 *      SPLIT. When P has nothing left to send, the session is over.
 * Work is proportional to the differences, not to n: ranges that agree stop
 * at the first fp comparison (Meyer 2023, "Range-Based Set Reconciliation";
 * research.md). One seed serves a whole session; every range is examined at
 * most once per session, so a 16-bit fp collision or a bloom false positive
 * hides an element for that session only, and the next session (new seed)
 * finds it.
 *
 * Sets are reached through a scan callback so the same engine serves objects
 * (key: first 4 bytes of the id, big-endian; term: guts_fp_of_id; element:
 * the guts_id) and refs (key: top 32 bits of XXH3-64 of the name; term:
 * guts_ref_digest_term, so a record with another clock differs; element: any
 * handle the caller maps back).
 */
#ifndef GUTS_CORE_RECON_H
#define GUTS_CORE_RECON_H

#include <stddef.h>
#include <stdint.h>

#include "guts/guts.h"
#include "guts/wire.h"

/* A child holding at most this many of the puller's elements gets a BLOOM
 * instead of a SPLIT. Cost model (encoded bytes, wire/encode.c): a BLOOM of m
 * terms is ~1.25*m + 12; a SPLIT is ~40 plus a ~10-byte MASK back, then
 * leaves of m/16. For one difference in the range, splitting pays once
 * 1.25*m > 50 + 1.25*m/16 + 12, i.e. m > ~53. Ranges of a 16-way tree hold
 * n/16^depth elements, so only the band matters: bench_recon measures the
 * same bytes for any value from 32 to 128 at n = 100,000 (leaves of ~24
 * against ranges of ~390), and 10-30% more at d >= 1000 with 16 or 24. */
#define GUTS_RECON_LEAF 48
/* Upper bound on the encoded size of one round's items the puller produces,
 * so a RECON frame stays far below GUTS_FRAME_MAX_DEFAULT (4 MiB). Work that
 * does not fit waits for the next round. */
#define GUTS_RECON_ROUND_BYTES (1u << 20)

/** Called by a scan for each element in range; a non-zero return stops the
 * scan and is returned by it. elem is valid during the call only. */
typedef int (*guts_recon_visit)(void *cbctx, uint32_t key, guts_fp term, const void *elem);

/** A set as seen by the engine. scan(ctx, lo, hi, cb, cbctx) calls cb for
 * every element whose key is in [lo, hi] (inclusive), in any order, and
 * returns 0, a non-zero return of cb, or a negative GUTS_E* error. */
typedef struct guts_recon_set {
    void *ctx;
    int (*scan)(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx);
} guts_recon_set;

/** Called by guts_recon_serve() for every element the puller lacks. A
 * non-zero return stops serving and is returned. */
typedef int (*guts_recon_emit)(void *ctx, uint32_t key, const void *elem);

/** Key of an object id: its first 4 bytes, big-endian. */
uint32_t guts_recon_key_of_id(const guts_id *id);
/** Key of a ref name: the top 32 bits of XXH3-64 (seed 0) of its bytes. */
uint32_t guts_recon_key_of_refname(const char *name);
/** 16-bit seeded fingerprint of a range sum: low 16 bits of
 * XXH3_64bits_withSeed(lo as 8 bytes little-endian, then hi likewise; seed). */
uint16_t guts_recon_fp16(guts_fp sum, uint64_t seed);
/** The 16 bytes of a term as hashed into blooms: lo then hi, little-endian. */
void guts_recon_term_bytes(guts_fp term, uint8_t out[16]);
/** 0 if (depth, prefix) names a range (depth <= GUTS_RECON_DEPTH_MAX,
 * prefix < 16^depth), GUTS_EINVAL otherwise. */
int guts_recon_range_check(uint8_t depth, uint32_t prefix);
/** Inclusive key bounds of a valid range. */
void guts_recon_range_bounds(uint8_t depth, uint32_t prefix, uint32_t *lo, uint32_t *hi);

/** Counters of one puller session. */
typedef struct guts_recon_stats {
    uint32_t rounds;    /* messages the puller produced (start + steps with items) */
    uint64_t items_out; /* items produced */
    uint64_t splits, blooms, alls;
    uint64_t bloom_bits; /* sum of nbits of the BLOOM items */
    uint64_t masks_in;   /* MASK items accepted */
    uint64_t ignored;    /* items from the server ignored: not a MASK, a bad
                          * range, or a range not split last round */
    uint64_t deferred;   /* child ranges carried to a later round by the caps */
} guts_recon_stats;

/* Internal records of a session (see recon.c). */
typedef struct guts_recon_split guts_recon_split;
typedef struct guts_recon_work guts_recon_work;

/** A puller session. Fields are private to recon.c except `stats`. */
typedef struct guts_recon_puller {
    guts_recon_set set;
    uint64_t seed;
    guts_recon_stats stats;
    /* ranges SPLIT in the last round, sorted, each answered at most once */
    guts_recon_split *splits;
    size_t nsplits, capsplits;
    /* children waiting for a round (beyond the per-round caps) */
    guts_recon_work *work;
    size_t nwork, capwork, headwork;
    /* the items of the current round and the bloom bits they point at */
    guts_recon_item *items;
    size_t nitems, capitems;
    uint8_t *arena;
    size_t narena, caparena;
    unsigned bloom_bpe; /* bits per element of BLOOM items */
    int done;
} guts_recon_puller;

/** Start a session: scan the puller's whole set once and produce the first
 * round (ALL at the root if the set is empty, else SPLIT of the root).
 * @param set the puller's set; must stay valid and unchanged for the session
 *        (elements added meanwhile are harmless: they only look different)
 * @param seed this session's hash seed; pick a new one for every session
 * @param[out] out items to send in a RECON message with this seed; owned by
 *             the session, valid until the next step or free
 * @param[out] n_out number of items (1)
 * Errors: GUTS_ENOMEM, or an error returned by set->scan. On error the
 * session holds nothing; guts_recon_puller_free() is still safe. */
int guts_recon_puller_start(guts_recon_puller *p, const guts_recon_set *set, uint64_t seed,
                            const guts_recon_item **out, size_t *n_out);

/** Start a session over count consecutive ranges only, (depth, prefix)
 * to (depth, prefix + count - 1) (depth below GUTS_RECON_DEPTH_MAX): the
 * session never names a key outside them, so sessions over disjoint ranges
 * (with different servers) pull disjoint parts of the set.
 * guts_recon_puller_start is this over the root (0, 0, 1).
 * Errors: those of guts_recon_puller_start, and GUTS_EINVAL for a bad range
 * or a count of 0 or past the last range of that depth. */
int guts_recon_puller_start_range(guts_recon_puller *p, const guts_recon_set *set, uint64_t seed,
                                  uint8_t depth, uint32_t prefix, uint32_t count,
                                  const guts_recon_item **out, size_t *n_out);

/** Feed the server's answer to the last round (its MASK items; n_in may be 0
 * when nothing differed) and produce the next round. Items that are not MASKs
 * answering a SPLIT of the last round, or that name a bad range, are ignored
 * and counted in stats.ignored, so a hostile server cannot widen the work
 * beyond the puller's own tree.
 * @param[out] out next round's items (session-owned, valid until the next
 *             step or free); n_out == 0 together with *done == 1 ends it
 * @param[out] done 1 when the session has nothing more to send
 * Errors: GUTS_ETOOBIG (n_in > GUTS_ITEMS_MAX), GUTS_ENOMEM, or a scan error. */
int guts_recon_puller_step(guts_recon_puller *p, const guts_recon_item *in, size_t n_in,
                           const guts_recon_item **out, size_t *n_out, int *done);

/** Bits per element of the puller's BLOOM items from the next step on
 * (default GUTS_BLOOM_BITS_PER_ELEM; clamped to 1..64). Tests lower it to force
 * false positives; nothing else should need it. */
void guts_recon_puller_set_bloom_density(guts_recon_puller *p, unsigned bits_per_elem);

/** Release a session's memory. Safe on a zeroed or finished session. */
void guts_recon_puller_free(guts_recon_puller *p);

/** Answer one round of a puller: stateless. Every item is validated first
 * (kind, range, SPLIT not at the deepest level, BLOOM size and k, no range
 * twice); then each SPLIT gets a MASK in out when any child differs, and each
 * BLOOM or ALL makes emit() run for every element the puller lacks there.
 * @param set the server's set
 * @param seed the seed of the puller's message
 * @param out caller's array of out_cap items for the MASKs (n_in is enough)
 * @param[out] n_out MASK items written
 * @param[out] n_emitted elements emitted (may be NULL)
 * Errors: GUTS_EPROTO (an invalid item: nothing is emitted), GUTS_ETOOBIG
 * (n_in > GUTS_ITEMS_MAX, or out_cap too small), GUTS_ENOMEM, or a non-zero
 * value from scan or emit. */
int guts_recon_serve(const guts_recon_set *set, uint64_t seed, const guts_recon_item *in,
                     size_t n_in, guts_recon_item *out, size_t out_cap, size_t *n_out,
                     guts_recon_emit emit, void *emit_ctx, uint64_t *n_emitted);

#endif
