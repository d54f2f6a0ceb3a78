/* bloom.h - bloom filters for announces and reconciliation leaves.
 *
 * A bloom filter answers "is x possibly in the set?" with no false negatives
 * and a tunable false-positive rate. guts uses two kinds: the bloom of a
 * repository's most recent object ids in every ANNOUNCE, and the bloom of the
 * puller's fingerprint terms in a reconciliation BLOOM item.
 *
 * Hashing: XXH3-128 of the key bytes with the filter's seed gives two 64-bit
 * halves h1 and h2; probe i is bit (h1 + i*h2) mod nbits (double hashing,
 * Kirsch & Mitzenmacher 2006, "Less hashing, same performance"), so one hash
 * call serves all k probes. h2 is forced odd so the probes of one key never
 * collapse onto one bit when nbits is a power of two.
 *
 * The seed is part of the filter and changes every round: a false positive
 * hides an element for that round only, and the chance that it stays hidden
 * r rounds running is p^r (research.md, "Set reconciliation").
 *
 * Bits are numbered little-endian within bytes: bit j is
 * bits[j / 8] & (1 << (j % 8)). docs/protocol.md repeats this for the wire.
 */
#ifndef GUTS_CORE_BLOOM_H
#define GUTS_CORE_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#include "guts/guts.h"
#include "guts/wire.h"

/* 10 bits per element gives about 0.8% false positives with k = 7; the
 * optimum for 1% is 9.59 bits at k = 7 (research.md), so 10 is the most we
 * spend per element for the 1% target of issue 4. */
#define GUTS_BLOOM_BITS_PER_ELEM 10
/* GUTS_BLOOM_K_MAX (wire.h) bounds k of any filter we accept; the filters we
 * make use at most guts_bloom_k_for(GUTS_BLOOM_BITS_PER_ELEM_AMPLE) = 14. */
/* The smallest filter is one byte: below that the rounding dominates. */
#define GUTS_BLOOM_MIN_BITS 8
/* When an announce has room to spare, spend at most this many bits per id
 * (k = 14, about 0.007% false positives): past it the datagram grows for no
 * useful gain. */
#define GUTS_BLOOM_BITS_PER_ELEM_AMPLE 20

typedef struct guts_bloom {
    uint8_t *bits;  /* (nbits + 7) / 8 bytes; owned when `owned` */
    uint32_t nbits; /* >= GUTS_BLOOM_MIN_BITS, <= GUTS_BLOOM_BITS_MAX */
    uint8_t k;      /* 1 .. GUTS_BLOOM_K_MAX */
    uint64_t seed;  /* XXH3 seed: changes every round */
    int owned;      /* 1: guts_bloom_free() releases bits */
} guts_bloom;

/** The number of hashes that minimises false positives at bits_per_elem
 * bits per element: round(bits_per_elem * ln 2), clamped to 1..K_MAX. */
uint8_t guts_bloom_k_for(unsigned bits_per_elem);

/** Allocate an empty filter for n_elems elements at bits_per_elem bits each:
 * nbits = max(n_elems * bits_per_elem, GUTS_BLOOM_MIN_BITS) rounded up to a
 * whole byte, k = guts_bloom_k_for(bits_per_elem).
 * @param b filter to initialise; release with guts_bloom_free().
 * Errors: GUTS_EINVAL (bits_per_elem 0), GUTS_ETOOBIG (more than
 * GUTS_BLOOM_BITS_MAX bits), GUTS_ENOMEM. */
int guts_bloom_make(guts_bloom *b, size_t n_elems, unsigned bits_per_elem, uint64_t seed);

/** Make a filter that borrows bits (e.g. from a decoded message) without
 * copying; bits must outlive b. guts_bloom_free() on it does nothing harmful.
 * Errors: GUTS_EINVAL (bits NULL, nbits below GUTS_BLOOM_MIN_BITS or above
 * GUTS_BLOOM_BITS_MAX, k 0 or above GUTS_BLOOM_K_MAX). */
int guts_bloom_view(guts_bloom *b, const uint8_t *bits, uint32_t nbits, uint8_t k, uint64_t seed);

/** Add len bytes of key to a filter made by guts_bloom_make(). */
void guts_bloom_add(guts_bloom *b, const void *key, size_t len);

/** 1 if key may be in the filter, 0 if it certainly is not. */
int guts_bloom_has(const guts_bloom *b, const void *key, size_t len);

/** Release an owned filter's bits and zero the struct. Safe on a zeroed or
 * borrowed filter. */
void guts_bloom_free(guts_bloom *b);

/** Bytes of bits for nbits. */
static inline size_t guts_bloom_bytes(uint32_t nbits)
{
    return ((size_t)nbits + 7) / 8;
}

/** Size an announce bloom for a byte budget. Given room bytes for the bits and
 * `available` recent ids, choose how many ids to cover and the filter size:
 * every id at GUTS_BLOOM_BITS_PER_ELEM bits if they fit (more bits per id, up
 * to GUTS_BLOOM_BITS_PER_ELEM_AMPLE, when the room is ample), otherwise as many
 * of the most recent ids as fit at GUTS_BLOOM_BITS_PER_ELEM bits.
 * @param[out] covered ids to add (the newest `covered`); 0 when nothing fits
 *             (room below one byte, or no ids) and then *nbits = *k = 0
 * @param[out] nbits filter size in bits (a multiple of 8, <= room * 8)
 * @param[out] k hashes
 * Never fails. */
void guts_bloom_fit(size_t room, size_t available, size_t *covered, uint32_t *nbits, uint8_t *k);

#endif
