/* idset.c - a set of object ids with a value and flags per id.
 *
 * Open addressing with linear probing, kept at most half full. Ids are SHA-1
 * digests, so their first eight bytes are already a uniform hash. The walk
 * in fetch.c keeps every commit it reads and every tree and blob it selects
 * here: one probe per object, no allocation per entry.
 */
#include <stdlib.h>
#include <string.h>

#include "idset.h"

#define USED 0x80 /* slot holds a key; the low 7 bits are the caller's */
#define INITIAL_CAP 1024

static size_t slot_of(const guts_id *id, size_t mask)
{
    uint64_t h;
    memcpy(&h, id->b, sizeof h);
    return (size_t)h & mask;
}

static size_t probe(const guts_idset *s, const guts_id *id)
{
    size_t mask = s->cap - 1, i = slot_of(id, mask);
    while ((s->flags[i] & USED) && memcmp(s->keys[i].b, id->b, GUTS_ID_LEN) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow(guts_idset *s)
{
    size_t cap = s->cap ? s->cap * 2 : INITIAL_CAP;
    guts_idset t = {.cap = cap, .n = s->n};
    t.keys = malloc(cap * sizeof *t.keys);
    t.vals = malloc(cap * sizeof *t.vals);
    t.flags = calloc(cap, 1);
    if (!t.keys || !t.vals || !t.flags) {
        guts_idset_free(&t);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!(s->flags[i] & USED)) continue;
        size_t j = probe(&t, &s->keys[i]);
        t.keys[j] = s->keys[i];
        t.vals[j] = s->vals[i];
        t.flags[j] = s->flags[i];
    }
    guts_idset_free(s);
    *s = t;
    return GUTS_OK;
}

int guts_idset_add(guts_idset *s, const guts_id *id, size_t *slot, int *added)
{
    if ((s->n + 1) * 2 > s->cap) {
        int rc = grow(s);
        if (rc) return rc;
    }
    size_t i = probe(s, id);
    *added = !(s->flags[i] & USED);
    if (*added) {
        s->keys[i] = *id;
        s->vals[i] = 0;
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

void guts_idset_free(guts_idset *s)
{
    free(s->keys);
    free(s->vals);
    free(s->flags);
    memset(s, 0, sizeof *s);
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
