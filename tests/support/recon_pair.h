/* recon_pair.h - two in-memory sets reconciled through the real codec.
 *
 * Shared by tests/unit/test_recon.c (the specification) and
 * bench/bench_recon.c (the costs). A set is a sorted array of ids drawn from
 * a deterministic PRNG; a session runs the puller against the server with
 * every RECON message encoded and decoded, counting frame bytes both ways.
 * Functions return GUTS_OK or a GUTS_E* code; nothing here aborts.
 */
#ifndef GUTS_TESTS_RECON_PAIR_H
#define GUTS_TESTS_RECON_PAIR_H

#include <stddef.h>
#include <stdint.h>

#include "recon.h"
#include "guts/wire.h"

/** Next value of a splitmix64 stream. */
uint64_t rp_rng(uint64_t *s);

/** A random id from the stream *s. */
void rp_mkid(uint64_t *s, guts_id *id);

/** A set of ids, sorted after rp_sort(). */
typedef struct rp_set {
    guts_id *ids;
    size_t n, cap;
} rp_set;

int rp_add(rp_set *m, const guts_id *id);
void rp_sort(rp_set *m);
int rp_has(const rp_set *m, const guts_id *id);
void rp_free(rp_set *m);

/** The set as the reconciliation engine sees it (m must be sorted). */
guts_recon_set rp_as_recon(rp_set *m);

/** P and S share `common` ids; S has `only_s` more and P `only_p` more. */
int rp_make_pair(uint64_t seed, size_t common, size_t only_s, size_t only_p, rp_set *P, rp_set *S);

/** Encode a RECON message of n items, add its frame to *bytes, decode it into
 * *out, which borrows *buf: guts_msg_free(out) and free(*buf) after use. */
int rp_travel(uint64_t seed, uint32_t round, const guts_recon_item *items, size_t n, size_t *bytes,
              guts_msg *out, uint8_t **buf);

typedef struct rp_stats {
    size_t bytes;  /* RECON frames both ways, frame headers included */
    size_t rounds; /* puller messages */
    size_t got;    /* elements the server emitted */
    guts_recon_stats puller;
} rp_stats;

/** One session: a puller over `pull` against a server over `serve`, with
 * bloom density bpe and at most max_rounds rounds (GUTS_EPROTO beyond, or if
 * a message breaks the engine's bounds). emit(ctx, key, elem) gets every
 * element the server sends. */
int rp_session(const guts_recon_set *pull, const guts_recon_set *serve, uint64_t seed, unsigned bpe,
               unsigned max_rounds, guts_recon_emit emit, void *ctx, rp_stats *st);

/** rp_session() over two id sets; what arrives is merged into P, which
 * stays sorted. *dups is non-zero if an id arrived that P had, or twice. */
int rp_pull(rp_set *P, rp_set *S, uint64_t seed, unsigned bpe, rp_stats *st, size_t *dups);

#endif
