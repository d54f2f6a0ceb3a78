/* memstore_recs.c - the forms objects travel in between nodes, for the
 * in-memory store: records (read raw, decoded when put) and large objects
 * (read by range, received in pieces through a staging area).
 */
#include <stdlib.h>
#include <string.h>

#include "memstore_int.h"

/* Records: this store keeps raw content, so it reads every object as a raw
 * record, and decodes what it is given (zstd, or a delta against a base
 * stored here or earlier in the call) into content for memstore_put. */
int memstore_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf)
{
    int type;
    size_t len;
    int rc = memstore_get(ctx, key, id, &type, buf, &len);
    if (rc)
        return rc;
    memset(out, 0, sizeof(*out));
    out->id = *id;
    out->type = type;
    out->enc = GUTS_REC_RAW;
    out->size = len;
    out->data = *buf;
    out->len = len;
    return GUTS_OK;
}

int memstore_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                     const guts_rec_seen *seen, size_t *added, size_t *bad)
{
    mrepo *r = memstore_repo_find(ctx, key);
    if (added)
        *added = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    guts_obj *objs = calloc(n ? n : 1, sizeof(guts_obj));
    void **bufs = calloc(n ? n : 1, sizeof(void *));
    size_t *from = calloc(n ? n : 1, sizeof(size_t)); /* record index of objs[k] */
    int rc = objs && bufs && from ? GUTS_OK : GUTS_ENOMEM;
    size_t no = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const guts_rec *rec = &recs[i];
        if (nobase)
            nobase[i] = 0;
        const void *base = NULL;
        size_t blen = 0;
        if (rec->enc == GUTS_REC_DELTA) {
            const mobj *b = memstore_obj_find(r, &rec->base);
            if (b) {
                base = b->data;
                blen = b->len;
            }
            for (size_t k = 0; !base && k < no; k++) {
                if (guts_id_cmp(&objs[k].id, &rec->base) == 0) {
                    base = objs[k].data;
                    blen = objs[k].len;
                }
            }
            if (!base) {
                if (nobase)
                    nobase[i] = 1;
                continue;
            }
        }
        rc = guts_rec_decode(rec, base, blen, &bufs[no]);
        if (rc) {
            if (bad)
                *bad = i;
            break;
        }
        objs[no].id = rec->id;
        objs[no].type = rec->type;
        objs[no].data = bufs[no];
        objs[no].len = (size_t)rec->size;
        from[no] = i;
        no++;
    }
    if (!rc) {
        size_t b = 0;
        rc = memstore_put(ctx, key, objs, no, added, &b);
        if (rc && bad)
            *bad = from[b];
        for (size_t k = 0; !rc && seen && k < no; k++)
            seen->fn(seen->arg, &objs[k].id, objs[k].type, objs[k].data, objs[k].len);
    }
    for (size_t k = 0; bufs && k < no; k++)
        free(bufs[k]);
    free(objs);
    free(bufs);
    free(from);
    return rc;
}

/* ---- Large objects: the same contract as store.h's staging, in memory ---- */

int memstore_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got)
{
    const mrepo *r = memstore_repo_find(ctx, key);
    const mobj *o = r ? memstore_obj_find(r, id) : NULL;
    *got = 0;
    if (!o)
        return GUTS_ENOTFOUND;
    if (off > o->len)
        return GUTS_EINVAL;
    size_t n = o->len - off < len ? (size_t)(o->len - off) : len;
    if (n)
        memcpy(buf, o->data + off, n);
    *got = n;
    return GUTS_OK;
}

static mstage *stage_find(mrepo *r, const guts_id *id)
{
    for (size_t i = 0; i < r->nstage; i++)
        if (guts_id_cmp(&r->stage[i].st.id, id) == 0)
            return &r->stage[i];
    return NULL;
}

static void stage_remove(mrepo *r, mstage *m)
{
    free(m->data);
    *m = r->stage[--r->nstage];
}

int memstore_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    mrepo *r = memstore_repo_find(ctx, key);
    mstage *m = r ? stage_find(r, id) : NULL;
    if (m)
        stage_remove(r, m);
    return GUTS_OK;
}

int memstore_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored)
{
    mrepo *r = memstore_repo_find(ctx, key);
    *stored = 0;
    if (!r)
        return GUTS_ENOTFOUND;
    if (!guts_otype_name(type))
        return GUTS_EINVAL;
    if (size > GUTS_OBJ_MAX_DEFAULT || off > size || len > size - off)
        return GUTS_ETOOBIG;
    mstage *m = stage_find(r, id);
    if (memstore_obj_find(r, id)) {
        if (m)
            stage_remove(r, m);
        return GUTS_OK;
    }
    if (off == 0) {
        if (m)
            stage_remove(r, m);
        if (!r->stage && !(r->stage = malloc(GUTS_STAGE_MAX * sizeof(mstage))))
            return GUTS_ENOMEM;
        if (r->nstage == GUTS_STAGE_MAX) { /* drop the least recently written */
            mstage *old = &r->stage[0];
            for (size_t i = 1; i < r->nstage; i++)
                if (r->stage[i].touched < old->touched)
                    old = &r->stage[i];
            stage_remove(r, old);
        }
        m = &r->stage[r->nstage++];
        memset(m, 0, sizeof(*m));
        m->st = (guts_stage){.id = *id, .type = type, .size = size};
    } else if (!m || m->st.have != off || m->st.type != type || m->st.size != size) {
        return GUTS_EINVAL;
    }
    uint8_t *p = realloc(m->data, (size_t)(off + len) ? (size_t)(off + len) : 1);
    if (!p)
        return GUTS_ENOMEM;
    m->data = p;
    if (len)
        memcpy(p + off, data, len);
    m->st.have = off + len;
    m->touched = ++r->txnid;
    if (m->st.have < size)
        return GUTS_OK;
    guts_obj o = {.id = *id, .type = type, .data = m->data, .len = (size_t)size};
    size_t added = 0;
    int rc = memstore_put(ctx, key, &o, 1, &added, NULL);
    stage_remove(r, m);
    if (rc == GUTS_OK)
        *stored = added == 1;
    return rc;
}

int memstore_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    mrepo *r = memstore_repo_find(ctx, key);
    *n = 0;
    if (!r)
        return GUTS_OK;
    uint64_t last = 0;
    while (*n < max) { /* least recently written first */
        const mstage *next = NULL;
        for (size_t i = 0; i < r->nstage; i++)
            if (r->stage[i].touched > last && (!next || r->stage[i].touched < next->touched))
                next = &r->stage[i];
        if (!next)
            break;
        out[(*n)++] = next->st;
        last = next->touched;
    }
    return GUTS_OK;
}
