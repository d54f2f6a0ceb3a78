/* node_serve_pump.c - a server session's job queue sent as frames: ids read
 * from the store in batches, records in OBJECTS frames (read ahead, bases
 * first), large objects as OBJECT_CHUNKs, refs as REFS, each request closed
 * by DONE, up to CORE_SEND_BUDGET bytes per event (backpressure).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* Object bytes per OBJECTS frame and per OBJECT_CHUNK: CORE_CHUNK, or a
 * quarter of a small configured frame cap (an OBJECTS frame may hold that
 * much plus one more object of up to that size, plus envelopes). */
static size_t core_chunk(const guts_core *c)
{
    size_t q = c->cfg.frame_max / 4;
    return q < CORE_CHUNK ? q : CORE_CHUNK;
}


typedef struct range_ctx {
    guts_id *out;
    size_t n, max;
} range_ctx;

static int range_take(const guts_id *id, void *arg)
{
    range_ctx *x = arg;
    x->out[x->n++] = *id;
    return x->n >= x->max ? 1 : 0;
}

/* Read the next CORE_JOB_BATCH ids of a RANGE job into its buffer (one
 * read transaction for many objects); sets j->end when the store has no
 * more. */
static int job_refill(guts_core *c, session *s, job *j)
{
    if (!j->buf && !(j->buf = malloc(CORE_JOB_BATCH * sizeof(guts_id))))
        return GUTS_ENOMEM;
    range_ctx x = {j->buf, 0, CORE_JOB_BATCH};
    int rc = c->st.ids(c->st.ctx, s->key, &j->from, j->to_end ? NULL : &j->to, range_take, &x);
    if (rc < 0)
        return rc;
    j->nbuf = x.n;
    j->bufpos = 0;
    if (x.n == CORE_JOB_BATCH) { /* resume just after the last id */
        guts_id nx = j->buf[x.n - 1];
        int i = GUTS_ID_LEN - 1;
        while (i >= 0 && ++nx.b[i] == 0)
            i--;
        if (i < 0)
            j->end = 1;
        j->from = nx;
    } else {
        j->end = 1;
    }
    return GUTS_OK;
}

/* The job has sent every id it will send. */
static int job_finished(const job *j)
{
    if (j->kind == JOB_IDS)
        return j->pos >= j->nids;
    return j->end && j->bufpos >= j->nbuf;
}

/* Next id of an IDS or RANGE job into *out, advancing it: 1, or 0 when
 * the job is finished, or < 0 on a store error. */
static int job_next_id(guts_core *c, session *s, job *j, guts_id *out)
{
    if (j->kind == JOB_IDS) {
        if (j->pos >= j->nids)
            return 0;
        *out = j->ids[j->pos++];
        return 1;
    }
    if (j->bufpos >= j->nbuf) {
        if (j->end)
            return 0;
        int rc = job_refill(c, s, j);
        if (rc)
            return rc;
        if (j->nbuf == 0)
            return 0;
    }
    *out = j->buf[j->bufpos++];
    return 1;
}

/* Start sending a large object in chunks, where the puller's resume
 * request (if any) says it holds a prefix. */
static void big_start(session *s, const guts_id *id, int type, uint64_t size)
{
    s->big_active = 1;
    s->big_id = *id;
    s->big_type = type;
    s->big_len = size;
    s->big_off = 0;
    for (size_t i = 0; i < s->nresume; i++) {
        const guts_stage *r = &s->resume[i];
        if (guts_id_cmp(&r->id, id) == 0 && r->type == type && r->size == size && r->have < size) {
            s->big_off = r->have;
            s->resume[i] = s->resume[--s->nresume];
            break;
        }
    }
}

/* One OBJECT_CHUNK read from the store: a large object is never held whole. */
static int send_big_chunk(guts_core *c, session *s, size_t *budget)
{
    uint64_t left = s->big_len - s->big_off;
    size_t n = left < core_chunk(c) ? (size_t)left : core_chunk(c), got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return GUTS_ENOMEM;
    int rc = c->st.read(c->st.ctx, s->key, &s->big_id, s->big_off, buf, n, &got);
    if (rc == GUTS_OK && got != n)
        rc = GUTS_ECORRUPT;
    if (rc == GUTS_OK) {
        guts_msg m;
        core_msg_init(c, &m, GUTS_MSG_OBJECT_CHUNK);
        m.u.chunk.key = s->key;
        m.u.chunk.id = s->big_id;
        m.u.chunk.type = (uint8_t)s->big_type;
        m.u.chunk.total = s->big_len;
        m.u.chunk.offset = s->big_off;
        m.u.chunk.data = buf;
        m.u.chunk.len = n;
        rc = core_send_frame(c, s->stream, &m);
    }
    free(buf);
    if (rc)
        return rc;
    s->big_off += n;
    *budget = *budget > n ? *budget - n : 0;
    if (s->big_off >= s->big_len) {
        s->big_active = 0;
        s->sent_objects++;
        s->req_sent++;
    }
    return GUTS_OK;
}

/* One OBJECTS frame of raw content from the head job (a store without
 * records); large objects become chunks. */
/* Send one OBJECTS frame of n objects (bytes of content) and charge it to the
 * session's counters and the caller's byte budget. */
static int send_objects_frame(guts_core *c, session *s, guts_wire_obj *objs, size_t n,
                              size_t bytes, size_t *budget)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_OBJECTS);
    m.u.objects.key = s->key;
    m.u.objects.nobjs = (uint32_t)n;
    m.u.objects.objs = objs;
    int rc = core_send_frame(c, s->stream, &m);
    s->sent_objects += n;
    s->req_sent += n;
    *budget = *budget > bytes ? *budget - bytes : 0;
    return rc;
}

static int send_objects_raw(guts_core *c, session *s, job *j, size_t *budget)
{
    guts_id id;
    /* grown as objects come: a small repository's whole walk is a few
     * dozen, and zeroing CORE_OBJS_PER_FRAME entries (80 KiB) per frame
     * was 8% of guts-sim's instructions at 1,000 nodes (issue 19) */
    guts_wire_obj *objs = NULL;
    size_t n = 0, capn = 0, bytes = 0;
    int rc = GUTS_OK;
    /* take ids one at a time so a frame can stop at the byte cap */
    size_t cap = core_chunk(c);
    while (n < CORE_OBJS_PER_FRAME && bytes < cap) {
        int got = job_next_id(c, s, j, &id);
        if (got <= 0) {
            rc = got;
            break;
        }
        int type;
        void *data;
        size_t len;
        if (c->st.get(c->st.ctx, s->key, &id, &type, &data, &len) != GUTS_OK)
            continue; /* not ours (a stale WANT): skip */
        if (len > cap) {
            free(data);
            big_start(s, &id, type, len);
            break;
        }
        if (n == capn) {
            size_t nc = capn ? 2 * capn : 32;
            guts_wire_obj *no = realloc(objs, nc * sizeof(*objs));
            if (!no) {
                free(data);
                rc = GUTS_ENOMEM;
                break;
            }
            objs = no;
            capn = nc;
        }
        objs[n++] = (guts_wire_obj){.id = id, .type = (uint8_t)type, .data = data, .len = len};
        bytes += len;
    }
    if (n && rc == GUTS_OK)
        rc = send_objects_frame(c, s, objs, n, bytes, budget);
    for (size_t i = 0; i < n; i++)
        free((void *)objs[i].data); /* ours: the store's copy */
    free(objs);
    return rc;
}

typedef struct out_rec {
    guts_rec r;
    void *buf; /* owns r.data */
    size_t idx;
} out_rec;

static unsigned rec_depth(const guts_rec *r)
{
    return r->enc == GUTS_REC_DELTA ? r->depth : 0;
}

/* Shallowest first, then as read: a delta's base, when in the same frame,
 * is stored before it (depth strictly decreases along a chain). */
static int cmp_out(const void *a, const void *b)
{
    const out_rec *x = a, *y = b;
    unsigned dx = rec_depth(&x->r), dy = rec_depth(&y->r);
    if (dx != dy)
        return dx < dy ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Queue rec (read for walk position x of a whole-repository walk) behind
 * its bases that the walk has not sent yet (ids above x, not sent ahead
 * before), deepest first: the puller then stores every base before the
 * deltas made against it and holds nothing, while the walk stays in id
 * order (the puller's inserts then touch few pages of its B-tree per
 * transaction; insertion order cost it more CPU at 202,000 objects). */
static void read_ahead(guts_core *c, session *s, const guts_id *x, const guts_rec *rec,
                       void *buf)
{
    if (rec->enc == GUTS_REC_DELTA && s->capahead < CORE_AHEAD_MAX) {
        /* room for its bases (without it: sent as it comes, as a plain
         * record would be) */
        sent_rec *p = realloc(s->ahead, CORE_AHEAD_MAX * sizeof(sent_rec));
        if (p) {
            s->ahead = p;
            s->capahead = CORE_AHEAD_MAX;
        }
    }
    sent_rec ch[CORE_AHEAD_MAX];
    size_t k = 0;
    ch[k].rec = *rec;
    ch[k++].buf = buf;
    while (k < s->capahead - s->nahead && ch[k - 1].rec.enc == GUTS_REC_DELTA &&
           s->early.n < CORE_EARLY_MAX) {
        const guts_id *b = &ch[k - 1].rec.base;
        if (guts_id_cmp(b, x) <= 0 || guts_idset_has(&s->early, b))
            break; /* sent already */
        if (c->st.rec_get(c->st.ctx, s->key, b, &ch[k].rec, &ch[k].buf) != GUTS_OK)
            break;
        if (guts_idset_insert(&s->early, b) < 0) {
            free(ch[k].buf);
            break;
        }
        k++;
    }
    while (k > 0)
        s->ahead[s->nahead++] = ch[--k];
}

/* Put back a record taken from the front of s->ahead (or read directly)
 * that did not fit the frame. */
static void unread(session *s, const guts_rec *rec, void *buf)
{
    if (s->headahead == 0) {
        memmove(s->ahead + 1, s->ahead, s->nahead * sizeof(sent_rec));
        s->nahead++;
    } else {
        s->headahead--;
    }
    s->ahead[s->headahead].rec = *rec;
    s->ahead[s->headahead].buf = buf;
}

/* One OBJECTS frame of stored records from the head job: objects travel
 * compressed as the store keeps them, and the receiver stores them without
 * compressing again. About 2 x core_chunk() record bytes and
 * CORE_FRAME_DECODED_MAX content bytes per frame; a record past the latter
 * waits in s->ahead for the next frame; an object too large for either
 * goes alone as chunks of its content. */
static int send_objects(guts_core *c, session *s, job *j, size_t *budget)
{
    if (!c->st.rec_get)
        return send_objects_raw(c, s, j, budget);
    if (!s->ahead) { /* a serve's read-ahead, from its first objects on */
        if (!(s->ahead = malloc(CORE_AHEAD_MIN * sizeof(sent_rec))))
            return GUTS_ENOMEM;
        s->capahead = CORE_AHEAD_MIN;
    }
    /* the records grow with the frame: most frames carry a few (an update),
     * and 4,096 zeroed entries (670 KB) a frame were most of a small
     * serve's cost */
    size_t capv = 0;
    out_rec *v = NULL;
    guts_wire_obj *objs = NULL;
    /* Up to 2 chunks of records (overhead counted) plus one more record of
     * up to a chunk: 3 chunks and an envelope, under frame_max with a
     * quarter to spare. */
    size_t n = 0, bytes = 0, cap = core_chunk(c), fcap = 2 * core_chunk(c);
    uint64_t decoded = 0;
    int rc = GUTS_OK;
    while (n < CORE_RECS_PER_FRAME && bytes < fcap) {
        guts_rec rec;
        void *buf;
        if (s->headahead == s->nahead) {
            s->headahead = s->nahead = 0;
            guts_id id;
            int got = job_next_id(c, s, j, &id);
            if (got <= 0) {
                rc = got;
                break;
            }
            if (j->whole && guts_idset_has(&s->early, &id))
                continue; /* sent ahead of its place */
            if (c->st.rec_get(c->st.ctx, s->key, &id, &rec, &buf) != GUTS_OK)
                continue; /* not ours (a stale WANT): skip */
            if (!j->whole || rec.enc != GUTS_REC_DELTA) {
                unread(s, &rec, buf);
            } else {
                read_ahead(c, s, &id, &rec, buf);
            }
        }
        rec = s->ahead[s->headahead].rec;
        buf = s->ahead[s->headahead++].buf;
        if (rec.enc == GUTS_REC_PIECES || rec.len > cap || rec.size > CORE_FRAME_DECODED_MAX) {
            guts_id id = rec.id;
            int type = rec.type;
            free(buf);
            if (rec.size > cap) { /* chunks, read from the store as they go */
                big_start(s, &id, type, rec.size);
                break;
            }
            void *data;
            size_t len;
            if (c->st.get(c->st.ctx, s->key, &id, &type, &data, &len) != GUTS_OK)
                continue;
            memset(&rec, 0, sizeof(rec)); /* compressed past the cap: raw fits */
            rec.id = id;
            rec.type = type;
            rec.enc = GUTS_REC_RAW;
            rec.size = len;
            rec.data = data;
            rec.len = len;
            buf = data;
        }
        uint64_t dec = rec.enc == GUTS_REC_RAW ? 0 : rec.size;
        if (n && decoded + dec > CORE_FRAME_DECODED_MAX) {
            unread(s, &rec, buf);
            break;
        }
        decoded += dec;
        if (n == capv) {
            size_t nc = capv ? 2 * capv : 16;
            out_rec *nv = realloc(v, nc * sizeof(out_rec));
            if (!nv) {
                unread(s, &rec, buf);
                rc = GUTS_ENOMEM;
                break;
            }
            v = nv;
            capv = nc;
        }
        v[n].r = rec;
        v[n].buf = buf;
        v[n].idx = n;
        n++;
        bytes += rec.len + CORE_REC_OVERHEAD;
    }
    if (n && rc == GUTS_OK && !(objs = calloc(n, sizeof(guts_wire_obj))))
        rc = GUTS_ENOMEM;
    if (n && rc == GUTS_OK) {
        qsort(v, n, sizeof(out_rec), cmp_out);
        for (size_t i = 0; i < n; i++) {
            guts_wire_obj *o = &objs[i];
            o->id = v[i].r.id;
            o->type = (uint8_t)v[i].r.type;
            o->enc = (uint8_t)v[i].r.enc;
            o->size = v[i].r.size;
            o->base = v[i].r.base;
            o->data = v[i].r.data;
            o->len = v[i].r.len;
        }
        rc = send_objects_frame(c, s, objs, n, bytes, budget);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].buf);
    free(v);
    free(objs);
    return rc;
}

/* Refs per REFS frame: a record is at most ~2.1 KB encoded (two names of
 * GUTS_REFNAME_MAX), so this many always fit the frame cap. */
static size_t refs_per_frame(const guts_core *c)
{
    size_t n = c->cfg.frame_max / 2200;
    return n > GUTS_REFS_MAX ? GUTS_REFS_MAX : (n ? n : 1);
}

static int send_refs(guts_core *c, session *s, job *j, size_t *budget)
{
    assert(j->pos < j->nnames);
    size_t max = refs_per_frame(c);
    if (max > j->nnames - j->pos) /* a repository's few refs: 2 KiB each, not 2 MiB a frame */
        max = j->nnames - j->pos;
    guts_wire_ref *w = calloc(max, sizeof(guts_wire_ref));
    guts_ref *recs = malloc(max * sizeof(guts_ref));
    if (!w || !recs) {
        free(w);
        free(recs);
        return GUTS_ENOMEM;
    }
    size_t n = 0;
    while (n < max && j->pos < j->nnames) {
        const char *name = j->names[j->pos++];
        if (c->st.ref_get(c->st.ctx, s->key, name, &recs[n]) != GUTS_OK)
            continue;
        w[n].name = recs[n].name;
        w[n].target = recs[n].target;
        w[n].symref = recs[n].symref[0] ? recs[n].symref : NULL;
        w[n].clock = recs[n].clock;
        w[n].writer = recs[n].writer;
        n++;
    }
    int rc = GUTS_OK;
    if (n) {
        guts_msg m;
        core_msg_init(c, &m, GUTS_MSG_REFS);
        m.u.refs.key = s->key;
        m.u.refs.nrefs = (uint32_t)n;
        m.u.refs.refs = w;
        rc = core_send_frame(c, s->stream, &m);
        s->req_sent += n;
        size_t approx = n * 100;
        *budget = *budget > approx ? *budget - approx : 0;
    }
    free(w);
    free(recs);
    return rc;
}

void serve_job_free(job *j)
{
    free(j->ids);
    free(j->buf);
    for (size_t k = 0; k < j->nnames; k++)
        free(j->names[k]);
    free(j->names);
}

static void job_pop(session *s)
{
    assert(s->headjob < s->njobs);
    job *j = &s->jobs[s->headjob];
    if (j->kind == JOB_IDS && s->queued_ids >= j->nids)
        s->queued_ids -= j->nids;
    serve_job_free(j);
    s->headjob++;
    if (s->headjob == s->njobs)
        s->headjob = s->njobs = 0;
}

void serve_pump(guts_core *c, session *s)
{
    assert(s->kind == SESS_SERVE);
    if (s->blocked)
        return;
    size_t budget = CORE_SEND_BUDGET;
    int rc = GUTS_OK;
    while (budget > 0 && rc == GUTS_OK) {
        if (s->big_active) {
            rc = send_big_chunk(c, s, &budget);
            continue;
        }
        if (s->headjob >= s->njobs)
            return; /* idle until the next request */
        job *j = &s->jobs[s->headjob];
        switch (j->kind) {
        case JOB_IDS:
        case JOB_RANGE:
            if (s->headahead == s->nahead && job_finished(j)) {
                job_pop(s);
                break;
            }
            rc = send_objects(c, s, j, &budget);
            break;
        case JOB_REFS:
            if (j->pos >= j->nnames) {
                job_pop(s);
                break;
            }
            rc = send_refs(c, s, j, &budget);
            break;
        case JOB_DONE: {
            guts_msg m;
            core_msg_init(c, &m, GUTS_MSG_DONE);
            m.u.done.key = s->key;
            m.u.done.space = j->space;
            m.u.done.sent = s->req_sent;
            s->req_sent = 0;
            rc = core_send_frame(c, s->stream, &m);
            job_pop(s);
            break;
        }
        default:
            job_pop(s);
        }
    }
    if (rc) {
        sync_end(c, s, 0, 1, guts_strerror(rc));
        return;
    }
    /* out of budget with work left: wait for the driver to drain */
    s->blocked = 1;
}
