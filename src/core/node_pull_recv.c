/* node_pull_recv.c - what a puller receives: OBJECTS (records and raw
 * objects, verified by the store), deltas held until their base arrives,
 * OBJECT_CHUNKs staged in the store, and REFS handed to node_refs.c.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* ---- Records waiting for their base -------------------------------------- */

/* The server sends each frame's records shallowest first, but a base may
 * sit in a later frame (the walk is in id order) or, after a bloom false
 * positive, not come at all. Such a delta is held here, indexed by base id,
 * and stored as soon as its base is; bases still missing when the refs are
 * in go into the session's WANT, and what is left at the end is dropped
 * and counted (a later session fetches it). */

static size_t pend_hash(const guts_id *id, size_t mask)
{
    uint64_t h;
    memcpy(&h, id->b + 8, sizeof(h));
    return (size_t)h & mask;
}

/* A slot's tag: other bytes of the base id than the hash's, so a probe
 * reads an entry only when its base matches (but once in 2^32). */
static uint64_t pend_tag(const guts_id *id)
{
    uint32_t t;
    memcpy(&t, id->b, sizeof(t));
    return (uint64_t)t << 32;
}

static void pend_slot_add(uint64_t *slots, size_t mask, const guts_id *base, size_t i)
{
    size_t b = pend_hash(base, mask);
    while (slots[b])
        b = (b + 1) & mask;
    slots[b] = pend_tag(base) | (uint64_t)(i + 1);
}

void pull_pend_free(guts_core *c, session *s)
{
    for (size_t i = 0; i < s->npend; i++) {
        if (s->pend[i].buf) {
            c->ctr.objects_dropped++;
            free(s->pend[i].buf);
        }
    }
    free(s->pend);
    free(s->pend_slots);
    s->pend = NULL;
    s->pend_slots = NULL;
    s->npend = s->cappend = s->live_pend = s->pend_bytes = 0;
}

/* The index rebuilt with nb slots (a power of two, at least twice the
 * entries), of the live entries only. */
static int pend_rehash(session *s, size_t nb)
{
    uint64_t *h = calloc(nb, sizeof(uint64_t));
    if (!h)
        return GUTS_ENOMEM;
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].buf)
            pend_slot_add(h, nb - 1, &s->pend[i].rec.base, i);
    free(s->pend_slots);
    s->pend_slots = h;
    s->pend_mask = nb - 1;
    return GUTS_OK;
}

/* Hold a copy of rec; dropped (counted) when over the byte bound. */
static void pend_add(guts_core *c, session *s, const guts_rec *rec)
{
    c->ctr.objects_nobase++;
    if (s->pend_bytes + rec->len + CORE_PEND_ENTRY_COST > CORE_PENDING_BYTES_MAX) {
        c->ctr.objects_dropped++;
        return;
    }
    if (s->npend == s->cappend) {
        size_t nc = s->cappend ? 2 * s->cappend : 64;
        if (nc > UINT32_MAX) { /* a slot names an entry in 32 bits */
            c->ctr.objects_dropped++;
            return;
        }
        pend_rec *p = realloc(s->pend, nc * sizeof(pend_rec));
        if (!p) {
            c->ctr.objects_dropped++;
            return;
        }
        s->pend = p;
        s->cappend = nc;
    }
    /* at most half the slots used, so every probe ends at an empty one */
    if (!s->pend_slots || 2 * (s->npend + 1) > s->pend_mask + 1) {
        if (pend_rehash(s, 2 * s->cappend) != GUTS_OK) { /* the old index stays valid */
            c->ctr.objects_dropped++;
            return;
        }
    }
    uint8_t *buf = malloc(rec->len ? rec->len : 1);
    if (!buf) {
        c->ctr.objects_dropped++;
        return;
    }
    if (rec->len)
        memcpy(buf, rec->data, rec->len);
    pend_rec *e = &s->pend[s->npend];
    e->rec = *rec;
    e->rec.data = buf;
    e->buf = buf;
    e->asked = 0;
    e->picked = 0;
    pend_slot_add(s->pend_slots, s->pend_mask, &rec->base, s->npend++);
    s->live_pend++;
    s->pend_bytes += rec->len + CORE_PEND_ENTRY_COST;
}

static void pend_kill(session *s, pend_rec *e)
{
    assert(e->buf && s->live_pend > 0);
    free(e->buf);
    e->buf = NULL;
    s->live_pend--;
    s->pend_bytes -= e->rec.len + CORE_PEND_ENTRY_COST;
}

void pull_log_bad(guts_core *c, session *s, const guts_id *id)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    c->ctr.bad_objects++;
    s->bad_id = *id;
    core_log(c, GUTS_LOG_WARN, "bad object %s in %s (fails its hash)%s", hex, s->key,
             s->damaged ? ": peer dropped from session" : ": told the peer, going on without it");
}

/* The server does not check what it sends (docs/security.md): the first
 * object of a session that fails its hash is named to it in a DAMAGED
 * frame, and it checks its own copy and drops it if damaged. The session
 * goes on without the object (held deltas made against it wait for a base
 * from elsewhere); a second ends the session, as the first did before. */
int pull_report_bad(guts_core *c, session *s)
{
    if (s->damaged)
        return 0;
    s->damaged = 1;
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_DAMAGED);
    m.u.damaged.key = s->key;
    m.u.damaged.id = s->bad_id;
    if (core_send_frame(c, s->stream, &m) != GUTS_OK)
        return 0;
    for (size_t i = 0; i < s->npend; i++) /* a held delta of the same id */
        if (s->pend[i].buf && guts_id_cmp(&s->pend[i].rec.id, &s->bad_id) == 0)
            pend_kill(s, &s->pend[i]);
    return 1;
}

/* How far ahead store_recs starts loading the held deltas' index slot of
 * an id it will look up (and of a delta it will hold), and the entry a
 * matching slot names half as far ahead. A first copy split in parts holds tens of
 * thousands of deltas, so every received id's slot is a cache miss; one
 * after the other, with a chained index (a miss for the head and one for
 * each entry it named), they were ~5% of a receiving node's loop at
 * 202,000 objects (docs/performance.md). */
#define PEND_AHEAD 16

/* Store records (verified by the store, once) in one call, followed by the
 * held deltas whose base is among them or among the extra ids (just stored
 * another way), transitively, breadth first so that every base goes before
 * the records made against it: one write transaction per frame. Deltas of
 * recs without their base are held. */
static int store_recs(guts_core *c, session *s, const guts_rec *recs, size_t n,
                      const guts_id *extra, size_t nextra)
{
    /* sized for what this call picks, not for every held delta: a frame
     * of a first copy split in parts may meet tens of thousands held */
    size_t cap = n + (s->live_pend < 64 ? s->live_pend : 64);
    guts_rec *all = malloc((cap ? cap : 1) * sizeof(guts_rec));
    guts_id *work = malloc((nextra + cap ? nextra + cap : 1) * sizeof(guts_id));
    size_t *from = malloc((cap ? cap : 1) * sizeof(size_t));
    uint8_t *nobase = NULL;
    size_t nwork = 0, np = 0;
    int rc = GUTS_ENOMEM;
    if (!all || !work || !from)
        goto out;
    if (n)
        memcpy(all, recs, n * sizeof(guts_rec));
    for (size_t i = 0; i < nextra; i++)
        work[nwork++] = extra[i];
    for (size_t i = 0; i < n; i++)
        work[nwork++] = recs[i].id;
    for (size_t k = 0; k < nwork && s->live_pend && np < s->live_pend; k++) {
        if (k + PEND_AHEAD < nwork)
            __builtin_prefetch(&s->pend_slots[pend_hash(&work[k + PEND_AHEAD], s->pend_mask)]);
        if (k + PEND_AHEAD / 2 < nwork) { /* the entry a matching slot names */
            const guts_id *ahead = &work[k + PEND_AHEAD / 2];
            uint64_t al = s->pend_slots[pend_hash(ahead, s->pend_mask)];
            if (al && (al >> 32 << 32) == pend_tag(ahead))
                __builtin_prefetch(&s->pend[(uint32_t)al - 1].buf);
        }
        uint64_t tag = pend_tag(&work[k]), sl;
        for (size_t b = pend_hash(&work[k], s->pend_mask); (sl = s->pend_slots[b]) != 0;
             b = (b + 1) & s->pend_mask) {
            if ((sl >> 32 << 32) != tag)
                continue;
            size_t i = (size_t)(uint32_t)sl - 1;
            pend_rec *e = &s->pend[i];
            if (!e->buf || e->picked || guts_id_cmp(&e->rec.base, &work[k]) != 0)
                continue;
            if (n + np == cap) {
                size_t nc = 2 * cap;
                guts_rec *na = realloc(all, nc * sizeof(guts_rec));
                if (na)
                    all = na;
                guts_id *nw = na ? realloc(work, (nextra + nc) * sizeof(guts_id)) : NULL;
                if (nw)
                    work = nw;
                size_t *nf = nw ? realloc(from, nc * sizeof(size_t)) : NULL;
                if (!nf)
                    goto out_unpick;
                from = nf;
                cap = nc;
            }
            e->picked = 1; /* an id may be listed twice */
            from[np] = i;
            all[n + np++] = e->rec;
            work[nwork++] = e->rec.id;
        }
    }
    if (!(nobase = calloc(n + np ? n + np : 1, 1)))
        goto out_unpick;
    /* the held deltas: their ids were not stored when they were held, so
     * the store need not search its tree for them (guts_repo_rec_put) */
    memset(nobase + n, 1, np);
    rc = GUTS_OK;
    if (n + np) {
        size_t added = 0, bad = 0;
        lrepo *r = core_repo_find(c, s->key);
        guts_rec_seen seen = {closure_seen, r};
        rc = c->st.rec_put(c->st.ctx, s->key, all, n + np, nobase,
                           r && closure_track_begin(c, r) ? &seen : NULL, &added, &bad);
        /* what it was told of may not be stored after all */
        if (rc != GUTS_OK && r && r->track) {
            closure_track_free(r);
            guts_idset_free(&r->complete);
        } else if (r) {
            closure_track_count(r);
        }
        if (rc == GUTS_EHASH) {
            pull_log_bad(c, s, &all[bad < n + np ? bad : 0].id);
        } else if (rc == GUTS_OK) {
            s->got_objects += added;
            c->ctr.objects_fetched += added;
            size_t kept = 0; /* stored or held already: the rest came twice */
            for (size_t i = 0; i < n + np; i++)
                kept += !nobase[i];
            c->ctr.objects_dup += kept > added ? kept - added : 0;
        }
    }
    for (size_t q = 0; q < np; q++) {
        pend_rec *e = &s->pend[from[q]];
        e->picked = 0;
        if (rc == GUTS_OK && !nobase[n + q]) {
            s->got_bytes += e->rec.len;
            pend_kill(s, e);
        }
    }
    size_t held = 0, nstored = 0;
    for (size_t i = 0; rc == GUTS_OK && i < n; i++) {
        if (i + PEND_AHEAD < n && nobase[i + PEND_AHEAD] && s->pend_slots)
            __builtin_prefetch(&s->pend_slots[pend_hash(&recs[i + PEND_AHEAD].base, s->pend_mask)]);
        if (nobase[i]) {
            pend_add(c, s, &recs[i]);
            held++;
        } else {
            s->got_bytes += recs[i].len;
        }
    }
    /* A record of recs may have been made against a held delta stored in
     * this call after it: once more, from everything this call stored. */
    if (rc == GUTS_OK && held && n) {
        for (size_t i = 0; i < n + np; i++)
            if (!nobase[i])
                work[nstored++] = all[i].id;
        if (nstored)
            rc = store_recs(c, s, NULL, 0, work, nstored);
    }
    goto out;
out_unpick:
    for (size_t q = 0; q < np; q++)
        s->pend[from[q]].picked = 0;
out:
    free(all);
    free(work);
    free(from);
    free(nobase);
    return rc;
}

/* Bases of held deltas, not asked for before and not stored: appended to a
 * WANT list of *n ids (up to max). */
void pull_pend_wants(guts_core *c, session *s, guts_id *want, size_t max, size_t *n)
{
    for (size_t i = 0; i < s->npend && *n < max; i++) {
        pend_rec *e = &s->pend[i];
        if (!e->buf || e->asked)
            continue;
        e->asked = 1;
        int dup = 0;
        for (size_t k = 0; k < *n && !dup; k++)
            dup = guts_id_cmp(&want[k], &e->rec.base) == 0;
        if (!dup && c->st.has(c->st.ctx, s->key, &e->rec.base) == 0)
            want[(*n)++] = e->rec.base;
    }
}

void pull_pend_retry(guts_core *c, session *s, int force)
{
    uint64_t others = c->ctr.objects_fetched - s->got_objects;
    if (!s->live_pend || (!force && others == s->pend_others))
        return;
    s->pend_others = others;
    guts_id *ids = malloc(s->live_pend * sizeof(guts_id));
    if (!ids)
        return;
    size_t n = 0;
    for (size_t i = 0; i < s->npend && n < s->live_pend; i++) {
        pend_rec *e = &s->pend[i];
        int dup = n && guts_id_cmp(&ids[n - 1], &e->rec.base) == 0;
        if (e->buf && !dup && c->st.has(c->st.ctx, s->key, &e->rec.base) == 1)
            ids[n++] = e->rec.base;
    }
    if (n && store_recs(c, s, NULL, 0, ids, n) != GUTS_OK)
        core_log(c, GUTS_LOG_DEBUG, "held deltas of %s not stored yet", s->key);
    free(ids);
}

/* Store raw objects: the store verifies every id (once) before storing. */
static int store_objects(guts_core *c, session *s, const guts_obj *objs, size_t n)
{
    size_t added = 0, bad = 0;
    int rc = c->st.put(c->st.ctx, s->key, objs, n, &added, &bad);
    if (rc) {
        if (rc == GUTS_EHASH)
            pull_log_bad(c, s, &objs[bad < n ? bad : 0].id);
        return rc;
    }
    s->got_objects += added;
    c->ctr.objects_fetched += added;
    c->ctr.objects_dup += n > added ? n - added : 0;
    for (size_t i = 0; i < n; i++)
        s->got_bytes += objs[i].len;
    if (s->live_pend && n) { /* a raw object may be a held delta's base */
        guts_id *ids = malloc(n * sizeof(guts_id));
        if (!ids)
            return GUTS_ENOMEM;
        for (size_t i = 0; i < n; i++)
            ids[i] = objs[i].id;
        rc = store_recs(c, s, NULL, 0, ids, n);
        free(ids);
    }
    return rc;
}

void pull_objects(guts_core *c, session *s, const guts_msg_objects *m)
{
    assert(s->kind == SESS_PULL);
    if (m->nobjs == 0)
        return;
    /* Bound the decoding work of the frame before any of it is done. */
    uint64_t decoded = 0;
    for (uint32_t i = 0; i < m->nobjs; i++)
        if (m->objs[i].enc != GUTS_WIRE_ENC_RAW)
            decoded += m->objs[i].size;
    if (decoded > CORE_FRAME_DECODED_MAX) {
        c->ctr.frames_malformed++;
        sync_end(c, s, 0, 1, "frame decodes to too much");
        return;
    }
    int rc;
    if (c->st.rec_put) {
        guts_rec *recs = calloc(m->nobjs, sizeof(guts_rec));
        if (!recs) {
            sync_end(c, s, 0, 1, "out of memory");
            return;
        }
        size_t n = 0;
        for (uint32_t i = 0; i < m->nobjs; i++) {
            const guts_wire_obj *w = &m->objs[i];
            if (core_obj_refused(c, s->key, &w->id, w->size))
                continue;
            recs[n].id = w->id;
            recs[n].type = w->type;
            recs[n].enc = w->enc;
            recs[n].size = w->size;
            recs[n].base = w->base;
            recs[n].data = w->data;
            recs[n].len = w->len;
            n++;
        }
        rc = n ? store_recs(c, s, recs, n, NULL, 0) : GUTS_OK;
        if (rc == GUTS_EHASH && pull_report_bad(c, s)) { /* the rest, without it */
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (guts_id_cmp(&recs[i].id, &s->bad_id) != 0)
                    recs[k++] = recs[i];
            rc = k ? store_recs(c, s, recs, k, NULL, 0) : GUTS_OK;
        }
        free(recs);
    } else {
        /* A store without records takes raw objects only; the others are
         * dropped (counted) and come raw from a peer with the same store. */
        guts_obj *objs = calloc(m->nobjs, sizeof(guts_obj));
        if (!objs) {
            sync_end(c, s, 0, 1, "out of memory");
            return;
        }
        size_t n = 0;
        for (uint32_t i = 0; i < m->nobjs; i++) {
            if (m->objs[i].enc != GUTS_WIRE_ENC_RAW) {
                c->ctr.objects_dropped++;
                continue;
            }
            if (core_obj_refused(c, s->key, &m->objs[i].id, m->objs[i].len))
                continue;
            objs[n].id = m->objs[i].id;
            objs[n].type = m->objs[i].type;
            objs[n].data = m->objs[i].data;
            objs[n].len = m->objs[i].len;
            n++;
        }
        rc = n ? store_objects(c, s, objs, n) : GUTS_OK;
        if (rc == GUTS_EHASH && pull_report_bad(c, s)) { /* the rest, without it */
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (guts_id_cmp(&objs[i].id, &s->bad_id) != 0)
                    objs[k++] = objs[i];
            rc = k ? store_objects(c, s, objs, k) : GUTS_OK;
        }
        free(objs);
    }
    if (rc)
        sync_end(c, s, 0, 1, guts_strerror(rc));
}

/* Stage the buffered chunks (one write transaction); after the last byte
 * the store has verified the object and made it visible. */
int pull_chunk_flush(guts_core *c, session *s)
{
    int stored = 0;
    uint64_t off = s->chunk_next - s->chunk_fill;
    int rc = c->st.stage_write(c->st.ctx, s->key, &s->chunk_id, s->chunk_type, s->chunk_total, off,
                               s->chunk, s->chunk_fill, &stored);
    s->chunk_fill = 0;
    if (rc == GUTS_EHASH) {
        pull_log_bad(c, s, &s->chunk_id);
        if (s->kind == SESS_PULL && pull_report_bad(c, s)) {
            s->chunk_active = 0; /* nothing staged: the store dropped it */
            return GUTS_OK;
        }
    }
    if (rc || s->chunk_next < s->chunk_total)
        return rc;
    s->chunk_active = 0;
    if (!stored)
        return GUTS_OK;
    s->got_objects++;
    c->ctr.objects_fetched++;
    lrepo *r = core_repo_find(c, s->key);
    if (r && s->chunk_type == GUTS_OBJ_BLOB && closure_track_begin(c, r)) { /* itself */
        closure_seen(r, &s->chunk_id, GUTS_OBJ_BLOB, NULL, 0);
        closure_track_count(r);
    }
    /* it may be a held delta's base */
    return s->live_pend ? store_recs(c, s, NULL, 0, &s->chunk_id, 1) : GUTS_OK;
}

void pull_chunk(guts_core *c, session *s, const guts_msg_chunk *m)
{
    assert(s->kind == SESS_PULL);
    if (!s->chunk_active) {
        if (m->total > GUTS_OBJ_MAX_DEFAULT || !guts_otype_name(m->type)) {
            sync_end(c, s, 0, 1,
                     m->total > GUTS_OBJ_MAX_DEFAULT ? "object too large" : "bad object type");
            return;
        }
        if (m->offset) { /* a resume: only at the offset we hold staged */
            guts_stage st[GUTS_STAGE_MAX];
            size_t n = 0, i = 0;
            c->st.stage_list(c->st.ctx, s->key, st, GUTS_STAGE_MAX, &n);
            while (i < n && (guts_id_cmp(&st[i].id, &m->id) != 0 || st[i].have != m->offset))
                i++;
            if (i == n) {
                sync_end(c, s, 0, 1, "chunk does not continue a staged object");
                return;
            }
        }
        s->chunk_active = 1;
        s->chunk_id = m->id;
        s->chunk_type = m->type;
        s->chunk_total = m->total;
        s->chunk_next = m->offset;
        s->chunk_fill = 0;
        s->chunk_skip = core_obj_refused(c, s->key, &m->id, m->total);
    } else if (guts_id_cmp(&m->id, &s->chunk_id) != 0 || m->offset != s->chunk_next ||
               m->total != s->chunk_total || m->type != s->chunk_type) {
        sync_end(c, s, 0, 1, "chunk out of order");
        return;
    }
    if (m->len > s->chunk_total - s->chunk_next) {
        sync_end(c, s, 0, 1, "chunk past the object's size");
        return;
    }
    if (s->chunk_skip) { /* over obj_max: follow its offsets, keep nothing */
        s->chunk_next += m->len;
        if (s->chunk_next == s->chunk_total)
            s->chunk_active = s->chunk_skip = 0;
        return;
    }
    if (!s->chunk && !(s->chunk = malloc(CORE_STAGE_BATCH))) {
        sync_end(c, s, 0, 1, "out of memory");
        return;
    }
    s->got_bytes += m->len;
    const uint8_t *p = m->data;
    size_t left = m->len;
    int rc = GUTS_OK;
    do {
        size_t take = CORE_STAGE_BATCH - s->chunk_fill;
        if (take > left)
            take = left;
        if (take)
            memcpy(s->chunk + s->chunk_fill, p, take);
        s->chunk_fill += take;
        s->chunk_next += take;
        p += take;
        left -= take;
        if (s->chunk_fill == CORE_STAGE_BATCH || s->chunk_next == s->chunk_total)
            rc = pull_chunk_flush(c, s);
    } while (rc == GUTS_OK && left);
    if (rc)
        sync_end(c, s, 0, 1, guts_strerror(rc));
}

void pull_refs(guts_core *c, session *s, const guts_msg_refs *m)
{
    assert(s->kind == SESS_PULL);
    (void)c;
    for (uint32_t i = 0; i < m->nrefs; i++) {
        if (s->ninrefs >= CORE_REFS_PENDING_MAX)
            return; /* the rest comes with the next session */
        if (s->ninrefs == s->capinrefs) {
            size_t nc = s->capinrefs ? 2 * s->capinrefs : 16;
            cref *p = realloc(s->inrefs, nc * sizeof(cref));
            if (!p)
                return;
            s->inrefs = p;
            s->capinrefs = nc;
        }
        if (cref_from_wire(&s->inrefs[s->ninrefs], &m->refs[i]) == GUTS_OK) {
            s->ninrefs++;
            s->got_refs++;
        }
    }
}
