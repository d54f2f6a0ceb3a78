/* memstore_refs.c - refs in the in-memory store: a small array per repository
 * sorted by name, each record compact and expanded into a guts_ref when
 * read; tombstones are records with a zero target (see memstore.c).
 */
#include <stdlib.h>
#include <string.h>

#include "memstore_int.h"

typedef struct ref_key {
    const mrepo *r;
    const char *name;
} ref_key;

static int ref_cmp(const void *ctx, size_t i)
{
    const ref_key *k = ctx;
    return strcmp(k->r->refs[i].name, k->name);
}

static size_t ref_pos(const mrepo *r, const char *name, int *found)
{
    ref_key k = {r, name};
    return guts_lower_bound(r->nrefs, ref_cmp, &k, found);
}

static int is_tombstone(const mref *ref)
{
    return ref->symref == NULL && guts_id_is_zero(&ref->target);
}

static void ref_expand(const mref *m, guts_ref *out)
{
    memset(out, 0, sizeof(*out));
    strcpy(out->name, m->name);
    if (m->symref) strcpy(out->symref, m->symref);
    out->target = m->target;
    out->clock = m->clock;
    out->writer = m->writer;
}

int memstore_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    guts_ref ref;
    for (size_t i = 0; i < r->nrefs; i++) {
        if (!with_tombstones && is_tombstone(&r->refs[i]))
            continue;
        ref_expand(&r->refs[i], &ref);
        int rc = cb(&ref, arg);
        if (rc)
            return rc;
    }
    return GUTS_OK;
}

int memstore_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    int found;
    size_t i = ref_pos(r, name, &found);
    if (!found)
        return GUTS_ENOTFOUND;
    ref_expand(&r->refs[i], out);
    return GUTS_OK;
}

int memstore_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    mrepo *r = memstore_repo_find(ctx, key);
    if (!r)
        return GUTS_ENOTFOUND;
    for (size_t i = 0; i < n; i++)
        if (guts_refname_check(refs[i].name) != GUTS_OK)
            return GUTS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        /* the new record, built first: nothing changes when memory runs out */
        mref nr;
        memset(&nr, 0, sizeof(nr));
        guts_ref full = refs[i];
        if (full.symref[0]) /* as the LMDB store: symbolic refs have no target */
            memset(&full.target, 0, sizeof(guts_id));
        nr.name = strdup(full.name);
        nr.symref = full.symref[0] ? strdup(full.symref) : NULL;
        if (!nr.name || (full.symref[0] && !nr.symref)) {
            free(nr.name);
            free(nr.symref);
            return GUTS_ENOMEM;
        }
        nr.target = full.target;
        nr.clock = full.clock;
        nr.writer = full.writer;
        nr.term = guts_ref_digest_term(&full);
        int found;
        size_t pos = ref_pos(r, full.name, &found);
        if (found) {
            guts_fp_sub(&r->rdigest, r->refs[pos].term);
            if (is_tombstone(&r->refs[pos]))
                r->tombstones--;
            free(r->refs[pos].name);
            free(r->refs[pos].symref);
        } else {
            if (memstore_grow((void **)&r->refs, &r->caprefs, r->nrefs + 1, sizeof(mref))) {
                free(nr.name);
                free(nr.symref);
                return GUTS_ENOMEM;
            }
            memmove(r->refs + pos + 1, r->refs + pos, (r->nrefs - pos) * sizeof(mref));
            r->nrefs++;
        }
        r->refs[pos] = nr;
        guts_fp_add(&r->rdigest, nr.term);
        if (is_tombstone(&nr))
            r->tombstones++;
        if (nr.clock > r->clock)
            r->clock = nr.clock;
    }
    if (n)
        r->txnid++;
    return GUTS_OK;
}
