/* refmerge.c - the ref merge rule (see refmerge.h).
 *
 * The winner is the maximum of a total order, which is what makes the rule
 * commutative, associative and idempotent. Conflict records are derived from
 * the pair being merged only, so the merge needs no history: a loser that is
 * not an ancestor of the winner (not a fast-forward) is kept under a name
 * made of its writer, its target and the ref, so two nodes that see the same
 * divergence make the same conflict record. Two records can share a conflict
 * name only when they keep the same commit (they merge by the same order,
 * keeping the newer clock), so a conflict record never replaces a different
 * lost commit: a writer that loses twice on one ref keeps both. Naming by
 * the writer's clock instead would rely on a writer never reusing a clock,
 * which a restored or re-created store breaks (its clock starts again from
 * what it holds), and then one of two commits under one name would be lost.
 * The price is one record per lost commit rather than per writer and ref;
 * guts_ref_conflict_obsolete() tells which of them the history has merged.
 *
 * Tombstones carry no target, so whether a delete "saw" an update cannot be
 * told from the records. The rule chosen: a tombstone beating a live record
 * of its own writer is that writer deleting what it wrote (no conflict); a
 * tombstone beating another writer's live record keeps that record as a
 * conflict, because the update may have been concurrent and nothing may be
 * silently dropped. The cost is a conflict record after deleting a ref last
 * written elsewhere; guts_ref_conflict_obsolete() does not apply (a tombstone
 * has no history), so the user deletes it.
 */
#include "guts/refmerge.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

int guts_ref_is_tombstone(const guts_ref *r)
{
    return guts_id_is_zero(&r->target) && r->symref[0] == '\0';
}

int guts_ref_cmp(const guts_ref *a, const guts_ref *b)
{
    if (a->clock != b->clock) return a->clock < b->clock ? -1 : 1;
    int c = memcmp(a->writer.b, b->writer.b, GUTS_NODE_ID_LEN);
    if (c) return c < 0 ? -1 : 1;
    c = memcmp(a->target.b, b->target.b, GUTS_ID_LEN);
    if (c) return c < 0 ? -1 : 1;
    c = strcmp(a->symref, b->symref);
    return c < 0 ? -1 : c > 0;
}

int guts_ref_is_conflict_name(const char *name)
{
    return strncmp(name, GUTS_CONFLICT_PREFIX, strlen(GUTS_CONFLICT_PREFIX)) == 0;
}

/* How far below GUTS_REFNAME_MAX a cut name may end: the cut drops the
 * '/' and '.' it lands on, never more than a handful. */
#define CONFLICT_CUT_SLACK 32

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int guts_ref_conflict_ref(const char *name, char ref[GUTS_REFNAME_MAX + 1])
{
    size_t len = strnlen(name, GUTS_REFNAME_MAX + 1), plen = strlen(GUTS_CONFLICT_PREFIX);
    ref[0] = 0;
    if (len > GUTS_REFNAME_MAX || !guts_ref_is_conflict_name(name)) return GUTS_EINVAL;
    const char *p = name + plen;
    size_t w = 2 * GUTS_NODE_ID_LEN;
    if (len < plen + w + 2 || !all_hex(p, w) || p[w] != '/') return GUTS_EINVAL;
    p += w + 1;
    if (strlen(p) > GUTS_HEX_LEN + 1 && all_hex(p, GUTS_HEX_LEN) && p[GUTS_HEX_LEN] == '/')
        p += GUTS_HEX_LEN + 1; /* the lost commit (records from before it lack it) */
    if (strcmp(p, "HEAD") == 0)
        strcpy(ref, "HEAD");
    else if (snprintf(ref, GUTS_REFNAME_MAX + 1, "refs/%s", p) > GUTS_REFNAME_MAX)
        return GUTS_EINVAL;
    /* A name cut to fit (guts_ref_conflict_name) ends in '-' and 16 hex
     * digits of a hash, within a few bytes of the limit: its end is not the
     * ref's. (A ref that long ending so is taken for a cut one.) */
    if (len >= GUTS_REFNAME_MAX - CONFLICT_CUT_SLACK && name[len - 17] == '-' &&
        all_hex(name + len - 16, 16)) {
        ref[0] = 0;
        return GUTS_EINVAL;
    }
    return GUTS_OK;
}

int guts_ref_conflict_name(const char *name, const guts_node_id *writer, const guts_id *target,
                           char out[GUTS_REFNAME_MAX + 1])
{
    if (!name || !name[0]) return GUTS_EINVAL;
    const char *rest = strncmp(name, "refs/", 5) == 0 ? name + 5 : name;
    char whex[2 * GUTS_NODE_ID_LEN + 1], thex[GUTS_HEX_LEN + 1];
    guts_node_id_to_hex(writer, whex);
    guts_id_to_hex(target, thex);
    /* Build the uncut name in a buffer big enough for any input name. */
    char full[sizeof GUTS_CONFLICT_PREFIX + 2 * GUTS_NODE_ID_LEN + 1 + GUTS_HEX_LEN + 1 +
              GUTS_REFNAME_MAX + 1];
    size_t restlen = strnlen(rest, GUTS_REFNAME_MAX + 1);
    if (restlen > GUTS_REFNAME_MAX) return GUTS_EINVAL;
    int n = snprintf(full, sizeof full, "%s%s/%s/%.*s", GUTS_CONFLICT_PREFIX, whex, thex,
                     (int)restlen, rest);
    if (n < 0 || (size_t)n >= sizeof full) return GUTS_EINVAL;
    if ((size_t)n <= GUTS_REFNAME_MAX) {
        memcpy(out, full, (size_t)n + 1);
        return GUTS_OK;
    }
    /* Too long: keep a deterministic head and a hash of the whole. The head
     * always holds the prefix, writer and target (the cut falls far beyond
     * them), so distinct lost commits still never share a name. */
    uint64_t h = XXH3_64bits(full, (size_t)n);
    size_t keep = GUTS_REFNAME_MAX - 17;
    while (keep > 0 && (full[keep - 1] == '/' || full[keep - 1] == '.'))
        keep--;
    memcpy(out, full, keep);
    snprintf(out + keep, GUTS_REFNAME_MAX + 1 - keep, "-%016llx", (unsigned long long)h);
    return GUTS_OK;
}

/* A live ref pointing straight at an object (not symbolic, not deleted). */
static int is_direct(const guts_ref *r)
{
    return r->symref[0] == '\0' && !guts_id_is_zero(&r->target);
}

static int make_conflict(const guts_ref *loser, guts_ref *conflict)
{
    memset(conflict, 0, sizeof *conflict);
    int rc = guts_ref_conflict_name(loser->name, &loser->writer, &loser->target, conflict->name);
    if (rc) return rc;
    conflict->target = loser->target;
    conflict->clock = loser->clock;
    conflict->writer = loser->writer;
    return GUTS_OK;
}

int guts_ref_merge(const guts_ref *cur, const guts_ref *in, guts_ref_ancestor_fn is_ancestor,
                   void *ctx, guts_ref *result, guts_ref *conflict, int *has_conflict)
{
    *has_conflict = 0;
    if (!cur) {
        *result = *in;
        return GUTS_OK;
    }
    if (strcmp(cur->name, in->name) != 0) return GUTS_EINVAL;
    int c = guts_ref_cmp(cur, in);
    const guts_ref *win = c >= 0 ? cur : in;
    const guts_ref *lose = c >= 0 ? in : cur;
    int keep = 0;
    if (c != 0 && !guts_ref_is_conflict_name(win->name) && is_direct(lose)) {
        if (guts_ref_is_tombstone(win)) {
            keep = memcmp(win->writer.b, lose->writer.b, GUTS_NODE_ID_LEN) != 0;
        } else if (is_direct(win) && guts_id_cmp(&win->target, &lose->target) != 0) {
            int a = is_ancestor ? is_ancestor(ctx, &lose->target, &win->target) : 0;
            if (a < 0) return a;
            keep = !a;
        }
        /* A symbolic winner or loser (only HEAD) has no history to diverge. */
    }
    if (keep) {
        int rc = make_conflict(lose, conflict);
        if (rc) return rc;
        *has_conflict = 1;
    }
    *result = *win;
    return GUTS_OK;
}

int guts_ref_conflict_obsolete(const guts_ref *conflict, const guts_ref *winner,
                               guts_ref_ancestor_fn is_ancestor, void *ctx)
{
    if (!is_direct(conflict) || !is_direct(winner)) return 0;
    if (guts_id_cmp(&conflict->target, &winner->target) == 0) return 1;
    if (!is_ancestor) return 0;
    return is_ancestor(ctx, &conflict->target, &winner->target);
}

int guts_ref_clock_next(uint64_t local_max, uint64_t seen, uint64_t *out)
{
    uint64_t m = local_max > seen ? local_max : seen;
    if (m == UINT64_MAX) return GUTS_ETOOBIG;
    *out = m + 1;
    return GUTS_OK;
}

void guts_ref_clock_observe(uint64_t *local, uint64_t seen)
{
    if (seen > *local) *local = seen;
}
