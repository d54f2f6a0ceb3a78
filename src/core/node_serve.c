/* node_serve.c - the server's side of a sync session: RECON, WANT and
 * resume requests answered and queued as jobs, sent by node_serve_pump.c.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

static job *job_push(session *s, int kind)
{
    if (s->njobs == s->capjobs) {
        if (s->headjob > 0) {
            memmove(s->jobs, s->jobs + s->headjob, (s->njobs - s->headjob) * sizeof(job));
            s->njobs -= s->headjob;
            s->headjob = 0;
        }
        if (s->njobs == s->capjobs) {
            size_t nc = s->capjobs ? 2 * s->capjobs : 8;
            job *p = realloc(s->jobs, nc * sizeof(job));
            if (!p)
                return NULL;
            s->jobs = p;
            s->capjobs = nc;
        }
    }
    job *j = &s->jobs[s->njobs++];
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    return j;
}

typedef struct emit_ctx {
    session *s;
    guts_id *ids;
    size_t n, cap;
    char **names;
} emit_ctx;

static int emit_id(void *ctx, uint32_t key, const void *elem)
{
    (void)key;
    emit_ctx *e = ctx;
    if (e->s->queued_ids + e->n >= e->s->queue_max)
        return GUTS_EFULL;
    if (e->n == e->cap) {
        size_t nc = e->cap ? 2 * e->cap : 64;
        guts_id *p = realloc(e->ids, nc * sizeof(guts_id));
        if (!p)
            return GUTS_ENOMEM;
        e->ids = p;
        e->cap = nc;
    }
    e->ids[e->n++] = *(const guts_id *)elem;
    return 0;
}

static int emit_ref(void *ctx, uint32_t key, const void *elem)
{
    (void)key;
    emit_ctx *e = ctx;
    if (e->n >= CORE_REFS_PENDING_MAX)
        return GUTS_EFULL;
    if (e->n == e->cap) {
        size_t nc = e->cap ? 2 * e->cap : 64;
        char **p = realloc(e->names, nc * sizeof(char *));
        if (!p)
            return GUTS_ENOMEM;
        e->names = p;
        e->cap = nc;
    }
    char *d = strdup(((const guts_ref *)elem)->name);
    if (!d)
        return GUTS_ENOMEM;
    e->names[e->n++] = d;
    return 0;
}

static int serve_key(guts_core *c, session *s, const char *key)
{
    if (!s->key[0]) {
        lrepo *r = core_repo_find(c, key);
        if (!r || r->unstored)
            return GUTS_ENOTFOUND;
        /* A first copy under way holds nothing its peers lack (it began
         * from nothing; what is written to it meanwhile is served once the
         * copy is in): a peer pulling it because their announces differ
         * would cost both a scan of the partial copy per pull. */
        if (r->plan && r->plan->first)
            return GUTS_EAGAIN;
        /* a serve slot is taken here, by a request, not by a connection */
        size_t pulls, serves;
        uint64_t idle_at;
        sync_glance(c, &pulls, &serves, &idle_at); /* no scan of a busy server's sessions */
        size_t cap = c->cfg.max_sessions;
        if (r->info.objects <= CORE_SMALL_SERVE_OBJECTS) { /* see core_limits.h */
            size_t small = cap * CORE_SMALL_SERVES;
            if (small > CORE_SMALL_SERVES_MAX) small = CORE_SMALL_SERVES_MAX;
            if (small > cap) cap = small;
        }
        if (serves >= cap)
            return GUTS_EAGAIN;
        s->queue_max = serves >= c->cfg.max_sessions ? CORE_SMALL_SERVE_QUEUE : CORE_SERVE_QUEUE_MAX;
        strcpy(s->key, key);
        /* one more serve in the glance, kept exact without a rescan of
         * every session (the key moves no idle deadline): a server that
         * thousands pull from rescanned hundreds of sessions per request */
        if (c->sess_clean && s->kind == SESS_SERVE) c->sess_serves++;
        return GUTS_OK;
    }
    return strcmp(s->key, key) == 0 ? GUTS_OK : GUTS_EPROTO;
}

void serve_error(guts_core *c, session *s, int code, const char *text)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_ERROR);
    m.u.error.code = code;
    m.u.error.text = code == GUTS_EAGAIN ? "busy" : text;
    m.u.error.retry_after_ms = code == GUTS_EAGAIN ? CORE_BUSY_RETRY_MS : 0;
    core_send_frame(c, s->stream, &m);
    sync_end(c, s, 0, 1, text);
}

void serve_recon(guts_core *c, session *s, const guts_msg_recon *m)
{
    assert(s->kind == SESS_SERVE);
    int rc = serve_key(c, s, m->key);
    if (rc) {
        serve_error(c, s, rc, rc == GUTS_ENOTFOUND ? "no such repository" : "key changed");
        return;
    }
    if (m->space != GUTS_SPACE_OBJECTS && m->space != GUTS_SPACE_REFS) {
        serve_error(c, s, GUTS_EPROTO, "unknown space");
        return;
    }
    guts_recon_item *in = malloc((m->nitems ? m->nitems : 1) * sizeof(guts_recon_item));
    guts_recon_item *out = malloc((m->nitems ? m->nitems : 1) * sizeof(guts_recon_item));
    job *ranges = NULL;
    size_t nin = 0, nranges = 0;
    if (!in || !out) {
        free(in);
        free(out);
        serve_error(c, s, GUTS_ENOMEM, "out of memory");
        return;
    }
    /* ALL items over objects are walked lazily; the engine answers the rest */
    for (uint32_t i = 0; i < m->nitems; i++) {
        const guts_recon_item *it = &m->items[i];
        if (m->space == GUTS_SPACE_OBJECTS && it->kind == GUTS_ITEM_ALL) {
            if (guts_recon_range_check(it->depth, it->prefix) != GUTS_OK) {
                rc = GUTS_EPROTO;
                break;
            }
            job *p = realloc(ranges, (nranges + 1) * sizeof(job));
            if (!p) {
                rc = GUTS_ENOMEM;
                break;
            }
            ranges = p;
            memset(&ranges[nranges], 0, sizeof(job));
            uint32_t lo, hi;
            guts_recon_range_bounds(it->depth, it->prefix, &lo, &hi);
            sync_key_to_id(lo, &ranges[nranges].from);
            sync_key_to_id(hi + 1, &ranges[nranges].to);
            ranges[nranges].to_end = hi == UINT32_MAX;
            ranges[nranges].kind = JOB_RANGE;
            /* the puller holds nothing: every base goes before its deltas */
            ranges[nranges].whole = it->depth == 0;
            nranges++;
        } else {
            in[nin++] = *it;
        }
    }
    emit_ctx e = {.s = s};
    size_t nout = 0;
    if (!rc && nin) {
        guts_recon_set set = {s, m->space == GUTS_SPACE_OBJECTS ? sync_objects_scan
                                                                : sync_refs_scan};
        rc = guts_recon_serve(&set, m->seed, in, nin, out, nin, &nout,
                              m->space == GUTS_SPACE_OBJECTS ? emit_id : emit_ref, &e, NULL);
    }
    if (rc) {
        free(in);
        free(out);
        free(ranges);
        free(e.ids);
        for (size_t i = 0; e.names && i < e.n; i++)
            free(e.names[i]);
        free(e.names);
        serve_error(c, s, rc, "bad reconciliation request");
        return;
    }
    guts_msg r;
    core_msg_init(c, &r, GUTS_MSG_RECON);
    r.u.recon.key = s->key;
    r.u.recon.space = m->space;
    r.u.recon.seed = m->seed;
    r.u.recon.round = m->round;
    r.u.recon.nitems = (uint32_t)nout;
    r.u.recon.items = out;
    rc = core_send_frame(c, s->stream, &r);
    free(in);
    free(out);
    int failed = rc != GUTS_OK;
    if (m->space == GUTS_SPACE_OBJECTS) {
        if (e.n) {
            job *j = job_push(s, JOB_IDS);
            if (j) {
                j->ids = e.ids;
                j->nids = e.n;
                s->queued_ids += e.n;
                e.ids = NULL;
            } else {
                failed = 1;
            }
        }
        for (size_t i = 0; i < nranges; i++) {
            job *j = job_push(s, JOB_RANGE);
            if (!j) {
                failed = 1;
                break;
            }
            *j = ranges[i];
        }
    } else if (e.n) {
        job *j = job_push(s, JOB_REFS);
        if (j) {
            j->names = e.names;
            j->nnames = e.n;
            e.names = NULL;
            e.n = 0;
        } else {
            failed = 1;
        }
    }
    free(ranges);
    free(e.ids);
    for (size_t i = 0; e.names && i < e.n; i++)
        free(e.names[i]);
    free(e.names);
    job *d = failed ? NULL : job_push(s, JOB_DONE);
    if (!d) {
        serve_error(c, s, GUTS_ENOMEM, "out of memory");
        return;
    }
    d->space = m->space;
    serve_pump(c, s);
}

/* An empty OBJECT_CHUNK from the puller: it holds the first offset bytes
 * of id staged; when id is sent, it starts there. Kept for the session, at
 * most as many as a store stages. */
void serve_resume(guts_core *c, session *s, const guts_msg_chunk *m)
{
    assert(s->kind == SESS_SERVE);
    int rc = serve_key(c, s, m->key);
    if (rc) {
        serve_error(c, s, rc, "no such repository");
        return;
    }
    if (m->len) {
        serve_error(c, s, GUTS_EPROTO, "unexpected message");
        return;
    }
    if (!s->resume && !(s->resume = malloc(GUTS_STAGE_MAX * sizeof(guts_stage)))) {
        serve_error(c, s, GUTS_ENOMEM, "out of memory");
        return;
    }
    if (s->nresume < GUTS_STAGE_MAX)
        s->resume[s->nresume++] =
            (guts_stage){.id = m->id, .type = m->type, .size = m->total, .have = m->offset};
}

/* The puller says an object we sent fails its hash (DAMAGED): check that
 * one object, and drop it if it is damaged (core_obj_damaged), so this
 * node pulls a good copy; the session goes on. One claim per session (a
 * second is a protocol error) and, node-wide, one check per
 * CORE_DAMAGED_CHECK_MS plus the object's size at
 * CORE_DAMAGED_CHECK_BYTES_PER_MS: a claim in between is not checked (the
 * puller meets the object again and says it again), so a lying puller
 * costs a bounded share of a CPU. */
void serve_damaged(guts_core *c, session *s, const guts_msg_damaged *m)
{
    assert(s->kind == SESS_SERVE);
    c->ctr.damage_reports++;
    if (s->damaged || !s->key[0] || strcmp(s->key, m->key) != 0) {
        serve_error(c, s, GUTS_EPROTO, "unexpected DAMAGED");
        return;
    }
    s->damaged = 1;
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&m->id, hex);
    if (c->now < c->damaged_check_at) {
        core_log(c, GUTS_LOG_DEBUG, "object %s in %s said damaged by a peer: not checked (rate)",
                 hex, s->key);
        return;
    }
    uint64_t size = 0;
    guts_rec rec;
    void *buf = NULL;
    if (c->st.rec_get && c->st.rec_get(c->st.ctx, s->key, &m->id, &rec, &buf) == GUTS_OK)
        size = rec.size;
    free(buf);
    c->damaged_check_at = c->now + CORE_DAMAGED_CHECK_MS + size / CORE_DAMAGED_CHECK_BYTES_PER_MS;
    if (!core_obj_damaged(c, s->key, &m->id))
        core_log(c, GUTS_LOG_INFO, "object %s in %s said damaged by a peer: it hashes right here",
                 hex, s->key);
}

void serve_want(guts_core *c, session *s, const guts_msg_want *m)
{
    assert(s->kind == SESS_SERVE);
    int rc = serve_key(c, s, m->key);
    if (rc) {
        serve_error(c, s, rc, "no such repository");
        return;
    }
    if (s->queued_ids + m->nids > s->queue_max) {
        serve_error(c, s, GUTS_ETOOBIG, "too many ids queued");
        return;
    }
    if (m->nids) {
        job *j = job_push(s, JOB_IDS);
        guts_id *ids = malloc(m->nids * sizeof(guts_id));
        if (!j || !ids) {
            free(ids);
            serve_error(c, s, GUTS_ENOMEM, "out of memory");
            return;
        }
        memcpy(ids, m->ids, m->nids * sizeof(guts_id));
        j->ids = ids;
        j->nids = m->nids;
        s->queued_ids += m->nids;
    }
    job *d = job_push(s, JOB_DONE);
    if (!d) {
        serve_error(c, s, GUTS_ENOMEM, "out of memory");
        return;
    }
    d->space = GUTS_SPACE_OBJECTS;
    serve_pump(c, s);
}
