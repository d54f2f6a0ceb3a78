/* refmerge.h - the ref merge rule: a state-based CRDT register per ref name.
 *
 * Every ref record carries a Lamport clock and its writer's node id. Records
 * for one name are totally ordered: higher clock wins; on a tie the higher
 * writer id (memcmp); then the higher target bytes; then the greater symref
 * (strcmp). Keeping the greater of two records is commutative, associative
 * and idempotent, so every node reaches the same winner whatever the order,
 * duplication or loss of updates.
 *
 * Nothing divergent is dropped: when the loser of a merge is a live direct
 * ref whose target is not an ancestor of the winner's target (not a
 * fast-forward), or the winner is a tombstone by another writer, the loser is
 * kept as the record refs/guts/conflicts/<loser-writer-hex>/<loser-target-
 * hex>/<name without "refs/">, with the loser's target, clock and writer.
 * The target in the name means one record per lost commit: a conflict record
 * never replaces another lost commit (a writer losing twice on one ref keeps
 * both). Conflict records are ordinary refs: they replicate and merge by the
 * same order, and two records under one name hold the same target (merging
 * into a conflict name never makes a conflict of a conflict). A tombstone (zero
 * target, no symref) that wins stays a tombstone: an older update arriving
 * after a delete never resurrects the ref.
 *
 * Part of the core's library (src/core/refmerge.c), public because every
 * writer of ref records applies the same rule: the CLI, the daemon, the
 * remote helper, the git library and the simulator's checker.
 */
#ifndef GUTS_REFMERGE_H
#define GUTS_REFMERGE_H

#include <stdint.h>

#include "guts/guts.h"
#include "guts/record.h"

/* Where conflict records live; guts never writes under it otherwise. */
#define GUTS_CONFLICT_PREFIX "refs/guts/conflicts/"

/** Ancestry oracle: 1 if ancestor is reachable from descendant through
 * commit parents (the merge never asks about equal ids), 0 if not, a
 * negative GUTS_E* if unknown (e.g. GUTS_EAGAIN: objects not stored yet). */
typedef int (*guts_ref_ancestor_fn)(void *ctx, const guts_id *ancestor, const guts_id *descendant);

/** 1 for a tombstone: zero target and no symref. */
int guts_ref_is_tombstone(const guts_ref *r);

/** Total order of two records for the same name: <0, 0 (identical in every
 * ordered field) or >0. The greater record wins. */
int guts_ref_cmp(const guts_ref *a, const guts_ref *b);

/** Merge an incoming record into the current one.
 * @param cur the stored record for the name (tombstones included), or NULL
 * @param in the incoming record (same name as cur)
 * @param is_ancestor ancestry oracle, consulted only for two live direct refs
 *        with different targets; may be NULL (then any such loser conflicts)
 * @param[out] result the winner (may alias neither cur nor in)
 * @param[out] conflict the conflict record to store when *has_conflict
 * @param[out] has_conflict 1 when a conflict record was produced
 * Errors: GUTS_EINVAL (names differ), or the oracle's negative return (then
 * nothing is written: retry when the ancestry is known). */
int guts_ref_merge(const guts_ref *cur, const guts_ref *in, guts_ref_ancestor_fn is_ancestor,
                   void *ctx, guts_ref *result, guts_ref *conflict, int *has_conflict);

/** The conflict name for ref `name` when `writer`'s update to `target` lost:
 * GUTS_CONFLICT_PREFIX + 32 hex digits of writer + "/" + 40 hex digits of
 * target + "/" + name without its "refs/" prefix (HEAD stays "HEAD"). When
 * that exceeds GUTS_REFNAME_MAX, it is cut to GUTS_REFNAME_MAX - 17 bytes,
 * trailing '/' and '.' are dropped, and "-" plus 16 hex digits of XXH3-64 of
 * the uncut name are appended: the cut falls after writer and target, so
 * distinct lost commits keep distinct names, distinct long ref names keep
 * distinct names too, and the result is still a valid ref name of at most
 * GUTS_REFNAME_MAX bytes.
 * @param out buffer of GUTS_REFNAME_MAX + 1 bytes
 * Errors: GUTS_EINVAL (empty name). */
int guts_ref_conflict_name(const char *name, const guts_node_id *writer, const guts_id *target,
                           char out[GUTS_REFNAME_MAX + 1]);

/** The ref a conflict record was made for, from its name: prefix, writer
 * hex, the commit's hex (records from before it lack it), then the ref
 * without "refs/" ("HEAD" stays). GUTS_OK with ref filled, or GUTS_EINVAL
 * when name is not a conflict name or was cut to fit (it ends in '-' and
 * 16 hex digits of a hash: the ref is not in it). */
int guts_ref_conflict_ref(const char *name, char ref[GUTS_REFNAME_MAX + 1]);

/** 1 if name lies under GUTS_CONFLICT_PREFIX. */
int guts_ref_is_conflict_name(const char *name);

/** 1 if a conflict record is obsolete: its target is an ancestor of (or
 * equal to) the winning record's target, so the divergence was merged and the
 * conflict can be deleted. 0 if not, or the oracle's negative return. */
int guts_ref_conflict_obsolete(const guts_ref *conflict, const guts_ref *winner,
                               guts_ref_ancestor_fn is_ancestor, void *ctx);

/** Lamport clock for a new local update: max(local_max, seen) + 1.
 * Errors: GUTS_ETOOBIG when that would overflow (a peer sent UINT64_MAX). */
int guts_ref_clock_next(uint64_t local_max, uint64_t seen, uint64_t *out);

/** Lamport receive rule: *local = max(*local, seen). */
void guts_ref_clock_observe(uint64_t *local, uint64_t seen);

#endif
