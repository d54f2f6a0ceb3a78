/* idset.c - the set of object ids (guts/idset.h), with flags and an
 * optional value per id.
 *
 * Open addressing with linear probing, kept at most half full (3/4 for a
 * dense set). Ids are SHA-1 digests, so eight of their bytes are already a
 * uniform hash (guts_id_hash). One probe per object, no allocation per
 * entry.
 */
#include <stdlib.h>
#include <string.h>

#include "guts/idset.h"

#define USED 0x80 /* slot holds a key; the low 7 bits are the caller's */
#define INITIAL_CAP 32 /* the core keeps one set per repository */

static size_t slot_of(const guts_id *id, size_t mask)
{
    return guts_id_hash(id) & mask;
}

static size_t probe(const guts_idset *s, const guts_id *id)
{
    size_t mask = s->cap - 1, i = slot_of(id, mask);
    while ((s->flags[i] & USED) && memcmp(s->keys[i].b, id->b, GUTS_ID_LEN) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow_to(guts_idset *s, size_t cap)
{
    guts_idset t = {.cap = cap, .n = s->n, .with_vals = s->with_vals, .dense = s->dense};
    t.keys = malloc(cap * sizeof *t.keys);
    t.vals = s->with_vals ? malloc(cap * sizeof *t.vals) : NULL;
    t.flags = calloc(cap, 1);
    if (!t.keys || (s->with_vals && !t.vals) || !t.flags) {
        guts_idset_free(&t);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!(s->flags[i] & USED)) continue;
        size_t j = probe(&t, &s->keys[i]);
        t.keys[j] = s->keys[i];
        if (t.vals) t.vals[j] = s->vals[i];
        t.flags[j] = s->flags[i];
    }
    guts_idset_free(s);
    *s = t;
    return GUTS_OK;
}

static int grow(guts_idset *s)
{
    return grow_to(s, s->cap ? s->cap * 2 : INITIAL_CAP);
}

/* Whether n ids fit without growing (at most half full, 3/4 if dense). */
static int fits(const guts_idset *s, size_t n)
{
    return s->dense ? n * 4 <= s->cap * 3 : n * 2 <= s->cap;
}

int guts_idset_reserve(guts_idset *s, size_t n)
{
    if (n > SIZE_MAX / 8) return GUTS_ENOMEM;
    if (fits(s, n)) return GUTS_OK;
    guts_idset t = {.cap = s->cap ? s->cap : INITIAL_CAP, .dense = s->dense};
    while (!fits(&t, n)) t.cap *= 2;
    return grow_to(s, t.cap);
}

int guts_idset_add(guts_idset *s, const guts_id *id, size_t *slot, int *added)
{
    if (!fits(s, s->n + 1)) {
        int rc = grow(s);
        if (rc) return rc;
    }
    size_t i = probe(s, id);
    *added = !(s->flags[i] & USED);
    if (*added) {
        s->keys[i] = *id;
        if (s->vals) s->vals[i] = 0;
        s->flags[i] = USED;
        s->n++;
    }
    *slot = i;
    return GUTS_OK;
}

size_t guts_idset_find(const guts_idset *s, const guts_id *id)
{
    if (!s->cap) return SIZE_MAX;
    size_t i = probe(s, id);
    return (s->flags[i] & USED) ? i : SIZE_MAX;
}

int guts_idset_insert(guts_idset *s, const guts_id *id)
{
    size_t slot;
    int added, rc = guts_idset_add(s, id, &slot, &added);
    return rc ? rc : added;
}

int guts_idset_has(const guts_idset *s, const guts_id *id)
{
    return guts_idset_find(s, id) != SIZE_MAX;
}

void guts_idset_free(guts_idset *s)
{
    int with_vals = s->with_vals, dense = s->dense;
    free(s->keys);
    free(s->vals);
    free(s->flags);
    memset(s, 0, sizeof *s);
    s->with_vals = with_vals;
    s->dense = dense;
}

int guts_ids_push(guts_ids *a, const guts_id *id)
{
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 64;
        guts_id *nv = realloc(a->v, c * sizeof *nv);
        if (!nv) return GUTS_ENOMEM;
        a->v = nv;
        a->cap = c;
    }
    a->v[a->n++] = *id;
    return GUTS_OK;
}
