/* walk.c - a store's commits newest first by committer date (see
 * walk.h). Commit texts come from a git repository or a peer: every
 * header line is parsed within its bounds, and a malformed parent or date
 * only costs that link or that ordering, never a read past the text.
 */
#include "walk.h"
#include "guts/gitobj.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int walk_before(const guts_walk_item *a, const guts_walk_item *b)
{
    return a->when != b->when ? a->when > b->when : a->seq < b->seq;
}

/* 1 if id was already queued, else remember it and return 0. */
static int walk_seen(guts_walk *w, const guts_id *id, int *err)
{
    if (2 * (w->nseen + 1) > w->capseen) {
        size_t nc = w->capseen ? 2 * w->capseen : 1024;
        guts_id *ns = calloc(nc, sizeof *ns);
        if (!ns) return *err = GUTS_ENOMEM, 0;
        for (size_t i = 0; i < w->capseen; i++) {
            if (guts_id_is_zero(&w->seen[i])) continue;
            uint64_t h;
            memcpy(&h, w->seen[i].b, sizeof h);
            size_t k = (size_t)h & (nc - 1);
            while (!guts_id_is_zero(&ns[k]))
                k = (k + 1) & (nc - 1);
            ns[k] = w->seen[i];
        }
        free(w->seen);
        w->seen = ns;
        w->capseen = nc;
    }
    uint64_t h;
    memcpy(&h, id->b, sizeof h); /* SHA-1 bytes are uniform */
    size_t k = (size_t)h & (w->capseen - 1);
    while (!guts_id_is_zero(&w->seen[k])) {
        if (guts_id_cmp(&w->seen[k], id) == 0) return 1;
        k = (k + 1) & (w->capseen - 1);
    }
    w->seen[k] = *id;
    w->nseen++;
    return 0;
}

int64_t guts_commit_when(const void *data, size_t len)
{
    const char *p = data, *end = p + len;
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll > 10 && memcmp(p, "committer ", 10) == 0) {
            const char *gt = NULL;
            for (const char *q = p; q < p + ll; q++)
                if (*q == '>') gt = q;
            char tail[32];
            size_t tl = gt ? (size_t)(p + ll - gt - 1) : 0;
            long long secs;
            if (gt && tl < sizeof tail) {
                memcpy(tail, gt + 1, tl);
                tail[tl] = 0;
                if (sscanf(tail, " %lld", &secs) == 1) return (int64_t)secs;
            }
            return 0;
        }
        if (!nl) break;
        p = nl + 1;
    }
    return 0;
}

int guts_walk_push(guts_walk *w, const guts_id *id)
{
    int e = 0, type;
    void *data;
    size_t len;
    if (guts_id_is_zero(id)) return w->missing++, 0; /* the hash set's empty slot */
    if (walk_seen(w, id, &e)) return 0;
    if (e) return e;
    e = guts_repo_get(w->r, id, &type, &data, &len);
    if (e == GUTS_ENOTFOUND) return w->missing++, 0;
    if (e) return e;
    int64_t when = type == GUTS_OBJ_COMMIT ? guts_commit_when(data, len) : 0;
    free(data);
    if (type != GUTS_OBJ_COMMIT) return GUTS_ECORRUPT;
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        guts_walk_item *nh = realloc(w->heap, nc * sizeof *nh);
        if (!nh) return GUTS_ENOMEM;
        w->heap = nh;
        w->cap = nc;
    }
    size_t i = w->n++;
    w->heap[i] = (guts_walk_item){.id = *id, .when = when, .seq = w->seq++};
    while (i && walk_before(&w->heap[i], &w->heap[(i - 1) / 2])) {
        guts_walk_item t = w->heap[i];
        w->heap[i] = w->heap[(i - 1) / 2];
        w->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

int guts_walk_pop(guts_walk *w, guts_walk_item *out)
{
    if (!w->n) return 0;
    *out = w->heap[0];
    w->heap[0] = w->heap[--w->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->n && walk_before(&w->heap[l], &w->heap[m])) m = l;
        if (r < w->n && walk_before(&w->heap[r], &w->heap[m])) m = r;
        if (m == i) break;
        guts_walk_item t = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = t;
        i = m;
    }
    return 1;
}

int guts_walk_push_parents(guts_walk *w, const void *data, size_t len)
{
    size_t pos = 0;
    int kind, rc;
    guts_id pid;
    while ((rc = guts_obj_link_next(GUTS_OBJ_COMMIT, data, len, &pos, &kind, &pid)) != 0) {
        if (rc != 1 || kind != GUTS_LINK_PARENT) continue;
        int e = guts_walk_push(w, &pid);
        if (e) return e;
    }
    return 0;
}

void guts_walk_free(guts_walk *w)
{
    free(w->heap);
    free(w->seen);
    w->heap = NULL;
    w->seen = NULL;
    w->n = w->cap = w->nseen = w->capseen = 0;
}
