/* node_sync.c - sync sessions: one stream, one repository, one pull.
 *
 * The puller opens a stream and drives; the server answers. Frames, in
 * order on the stream:
 *
 *   P: HELLO, RECON(space objects, seed, round 0, items)
 *   S: HELLO, RECON(same round, MASK items), OBJECTS/OBJECT_CHUNK..., DONE
 *   P: RECON(round 1, ...)            ... until the puller's engine is done
 *   P: RECON(space refs, new seed, round 0, items)
 *   S: RECON(MASKs), REFS..., DONE    ... until done
 *   P: WANT(ids missing from a ref's closure)   (zero or more times)
 *   S: OBJECTS..., DONE
 *   P: HELLO (this pull is over)      S: HELLO
 *   P: the next pull from the same peer, or closes the stream after
 *      CORE_PARK_MS.
 *
 * A finished pull's stream is "parked" (SESS_PARKED) for the next pull from
 * the same peer, so many repositories travel over a few connections; the
 * puller's HELLO at the end frees the server's slot at once. A server takes
 * a serve slot when a request names a repository, not when a stream opens,
 * and a server at its limit answers ERROR(EAGAIN) with a retry-after; the
 * puller backs off by it, doubled per busy answer in a row, with jitter
 * from the core's seeded RNG.
 *
 * Each RECON or WANT request gets exactly one DONE after every element it
 * produced, so the puller knows a phase is over when its engine has nothing
 * more to ask and every request has its DONE. The server answers a RECON's
 * SPLITs at once (the MASK reply lets the puller's next round start while
 * objects still stream) and queues the elements as jobs: ids found by BLOOM
 * items, WANT ids, and ALL ranges, which are walked lazily from the store
 * so that serving a whole repository never holds it in memory. Jobs are
 * sent up to CORE_SEND_BUDGET bytes per event, then the session waits for
 * on_stream_writable (backpressure).
 *
 * Every received object is hashed before it is stored, and the server does
 * not hash what it sends (the receiver does, once). The first bad object
 * of a session is counted, not stored, and named to the server in a
 * DAMAGED frame; the session goes on without it. The server checks that
 * one object (serve_damaged, rate-limited) and drops it from its store if
 * it fails its hash, so the puller gets it from another peer and the
 * server fetches it back like any object it lacks. A second bad object
 * ends the session (stream closed) and the repository backs off from
 * pulling. Objects larger than CORE_CHUNK travel as OBJECT_CHUNK frames:
 * the server reads them from the store chunk by chunk, the puller stages
 * them in the store every CORE_STAGE_BATCH bytes (the store verifies the
 * SHA-1 when the last byte is in, and only then is it an object). A
 * puller that holds a staged prefix says so first (an empty OBJECT_CHUNK
 * with the offset it holds) and the server starts that object there. An
 * object over the configured obj_max is followed but not kept (counted,
 * logged once) and the session goes on.
 *
 * This file holds what both sides share: sessions (new, parked, ended),
 * the two sets the reconciliation engine scans, and the events that
 * dispatch frames. The puller is node_pull.c and node_pull_recv.c, the
 * server node_serve.c and node_serve_pump.c.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* Sessions by stream id: a server the start-up's herd connects to holds
 * thousands, and every frame looked its session up by a scan. */
static size_t sidx_home(uint32_t stream, size_t cap)
{
    return (size_t)(stream * 2654435761u) & (cap - 1);
}

static void sidx_put(sidx_ent *t, size_t cap, session *s)
{
    size_t i = sidx_home(s->stream, cap);
    while (t[i].s)
        i = (i + 1) & (cap - 1);
    t[i] = (sidx_ent){s, s->stream};
}

static int sidx_grow(guts_core *c)
{
    if ((c->nsess + 1) * 2 <= c->sidx_cap)
        return 0;
    size_t cap = c->sidx_cap ? 2 * c->sidx_cap : 16;
    sidx_ent *t = calloc(cap, sizeof(sidx_ent));
    if (!t)
        return -1;
    for (size_t i = 0; i < c->nsess; i++)
        sidx_put(t, cap, c->sess[i]);
    free(c->sidx);
    c->sidx = t;
    c->sidx_cap = cap;
    return 0;
}

/* Linear probing, deleted by shifting the rest of the cluster back. */
static void sidx_del(guts_core *c, const session *s)
{
    size_t mask = c->sidx_cap - 1, i = sidx_home(s->stream, c->sidx_cap);
    while (c->sidx[i].s != s)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; c->sidx[j].s; j = (j + 1) & mask) {
        size_t k = sidx_home(c->sidx[j].stream, c->sidx_cap);
        /* move j back to i unless its home lies cyclically in (i, j] */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        c->sidx[i] = c->sidx[j];
        i = j;
    }
    c->sidx[i].s = NULL;
}

session *sync_find(guts_core *c, uint32_t stream)
{
    if (!c->sidx_cap)
        return NULL;
    session *hit = NULL;
    size_t mask = c->sidx_cap - 1;
    for (size_t i = sidx_home(stream, c->sidx_cap); c->sidx[i].s; i = (i + 1) & mask) {
        session *x = c->sidx[i].s;
        /* two on one stream (a pull being parked): the first in sess */
        if (c->sidx[i].stream == stream && (!hit || x->at < hit->at))
            hit = x;
    }
    return hit;
}

/* When s is idle; a pull on a plan's part is stalled sooner (its part
 * goes to another peer). */
static uint64_t idle_deadline(const session *s)
{
    if (s->kind == SESS_PULL && s->part >= 0)
        return s->last_active + s->stall_ms;
    if (s->kind == SESS_PULL && s->part_wait)
        return s->last_active + CORE_SPLIT_WAIT_MS;
    return s->last_active + (s->kind == SESS_PARKED ? CORE_PARK_MS : CORE_SESSION_IDLE_MS);
}

/* The glance's kept deadlines (sess_low): one more session, due idle at d,
 * with n sessions before it. They stay the nlow smallest of all: d goes in
 * below the largest kept, or anywhere while every session is kept. */
static void low_insert(guts_core *c, uint64_t d, size_t n)
{
    uint32_t m = c->nlow;
    if (m && (m < n || m == CORE_GLANCE_LOW) && d >= c->sess_low[m - 1]) return;
    if (m == CORE_GLANCE_LOW) m--; /* the largest kept goes */
    uint32_t i = m;
    for (; i > 0 && c->sess_low[i - 1] > d; i--)
        c->sess_low[i] = c->sess_low[i - 1];
    c->sess_low[i] = d;
    c->nlow = m + 1;
    c->sess_idle_at = c->sess_low[0];
}

/* A session due idle at d goes, n sessions left. Once the kept ones have
 * all gone, only a scan knows the next (sync_glance). */
static void low_remove(guts_core *c, uint64_t d, size_t n)
{
    uint32_t m = c->nlow, i = 0;
    if (!m || d > c->sess_low[m - 1]) return; /* not among the kept */
    while (i < m && c->sess_low[i] != d)
        i++;
    if (i == m) { /* cannot be: the kept are the smallest */
        sync_touched(c);
        return;
    }
    memmove(&c->sess_low[i], &c->sess_low[i + 1], (m - 1 - i) * sizeof(uint64_t));
    c->nlow = --m;
    if (m)
        c->sess_idle_at = c->sess_low[0];
    else if (n)
        sync_touched(c);
    else
        c->sess_idle_at = UINT64_MAX;
}

/* The glance (sync_glance) kept exact as s comes or goes, without a scan
 * of every session while it is valid: a server that many nodes pull
 * from adds and drops sessions all the time. */
static void glance_add(guts_core *c, const session *s, int sign)
{
    if (!c->sess_clean) return;
    if (s->kind == SESS_PULL) c->sess_pulls += (uint32_t)sign;
    if (s->kind == SESS_SERVE && s->key[0]) c->sess_serves += (uint32_t)sign;
    if (sign > 0)
        low_insert(c, idle_deadline(s), c->nsess - 1); /* s is in c->sess */
    else
        low_remove(c, idle_deadline(s), c->nsess); /* s has left it */
}

session *sync_sess_new(guts_core *c, uint32_t stream, int kind, const guts_addr *addr)
{
    assert(kind == SESS_PULL || kind == SESS_SERVE || kind == SESS_PARKED);
    if (sidx_grow(c))
        return NULL;
    if (c->nsess == c->capsess) {
        size_t nc = c->capsess ? 2 * c->capsess : 8;
        session **p = realloc(c->sess, nc * sizeof(session *));
        if (!p)
            return NULL;
        c->sess = p;
        c->capsess = nc;
    }
    int small = kind != SESS_PULL; /* no puller's or server's fields yet */
    session *s = calloc(1, small ? SESS_SMALL : sizeof(session));
    if (!s)
        return NULL;
    s->core = c;
    s->stream = stream;
    s->kind = kind;
    s->small = small;
    if (!small)
        s->part = s->prev_part = -1;
    s->addr = *addr;
    s->started = s->last_active = c->now;
    s->at = (uint32_t)c->nsess;
    c->sess[c->nsess++] = s;
    sidx_put(c->sidx, c->sidx_cap, s);
    glance_add(c, s, 1);
    return s;
}

session *sync_sess_full(guts_core *c, session *s)
{
    if (!s->small)
        return s;
    session *n = realloc(s, sizeof(session));
    if (!n)
        return NULL;
    memset((char *)n + SESS_SMALL, 0, sizeof(session) - SESS_SMALL);
    n->small = 0;
    n->part = n->prev_part = -1;
    if (n != s) { /* the session moved: its index slot and place in sess */
        c->sess[n->at] = n;
        size_t mask = c->sidx_cap - 1, i = sidx_home(n->stream, c->sidx_cap);
        while (c->sidx[i].s != s)
            i = (i + 1) & mask;
        c->sidx[i].s = n;
    }
    return n;
}

static void jobs_free(session *s)
{
    for (size_t i = s->headjob; i < s->njobs; i++)
        serve_job_free(&s->jobs[i]);
    free(s->jobs);
    s->jobs = NULL;
    s->njobs = s->headjob = s->capjobs = 0;
}

static void sess_free(session *s)
{
    if (s->small) { /* nothing allocated */
        free(s);
        return;
    }
    guts_recon_puller_free(&s->recon);
    for (size_t i = 0; i < s->ninrefs; i++)
        cref_free(&s->inrefs[i]);
    free(s->inrefs);
    free(s->chunk);
    for (size_t i = s->headahead; i < s->nahead; i++)
        free(s->ahead[i].buf);
    free(s->ahead);
    free(s->resume);
    guts_idset_free(&s->early);
    pull_pend_free(s->core, s);
    jobs_free(s);
    free(s);
}

static void sess_remove(guts_core *c, session *s)
{
    sidx_del(c, s);
    c->sess[s->at] = c->sess[--c->nsess]; /* the last takes its place */
    c->sess[s->at]->at = s->at;
    glance_add(c, s, -1);
    sess_free(s);
    if (c->nsess == 0) { /* idle most of the time: no index kept meanwhile */
        free(c->sidx);
        c->sidx = NULL;
        c->sidx_cap = 0;
    }
}

static void peer_hex(guts_core *c, const session *s, char *hex)
{
    if (s->kind == SESS_PULL) { /* we chose the peer: no scan of the view */
        guts_node_id_to_hex(&s->peer_id, hex);
        hex[8] = 0;
        return;
    }
    for (size_t i = 0; i < c->npeers; i++) {
        if (guts_addr_eq(&c->peers[i].addr, &s->addr)) {
            guts_node_id_to_hex(&c->peers[i].id, hex);
            hex[8] = 0;
            return;
        }
    }
    strcpy(hex, "?");
}

static void sync_log(guts_core *c, const session *s, int ok, const char *hex, const char *why)
{
    /* a full store said so once (node.c); its probes fail quietly; a busy
     * server deferred the pull, which is retried (not a failure) */
    core_log(c, ok ? GUTS_LOG_INFO : c->full || s->busy ? GUTS_LOG_DEBUG : GUTS_LOG_WARN,
             "sync %s from %s %s: %llu objects, %llu bytes, %llu refs, %llu ms%s%s", s->key, hex,
             ok ? "finished" : "failed", (unsigned long long)s->got_objects,
             (unsigned long long)s->got_bytes, (unsigned long long)s->got_refs,
             (unsigned long long)(c->now - s->started), why ? ": " : "", why ? why : "");
    if (!ok && !c->full && !s->busy && s->kind == SESS_PULL)
        core_event(c, GUTS_EV_PULL_FAILED, s->key, NULL, NULL, NULL, &s->peer_id,
                   why ? why : "failed");
}

/* When to pull r again after a busy answer: the server's retry-after (or
 * CORE_BUSY_RETRY_MS), doubled per busy answer in a row, times [0.5, 1.5)
 * from the seeded RNG. */
static uint64_t busy_delay(guts_core *c, lrepo *r, uint32_t retry_after)
{
    uint64_t d = retry_after ? retry_after : CORE_BUSY_RETRY_MS;
    uint32_t k = r->busy_streak < CORE_BUSY_BACKOFF_MAX ? r->busy_streak : CORE_BUSY_BACKOFF_MAX;
    d <<= k;
    if (r->busy_streak < UINT32_MAX)
        r->busy_streak++;
    return d / 2 + core_rand_below(c, d);
}

void sync_end(guts_core *c, session *s, int ok, int close_stream, const char *why)
{
    if (close_stream)
        core_close_stream(c, s->stream);
    if (s->kind == SESS_PARKED) { /* no pull on it: nothing to count or log */
        sess_remove(c, s);
        return;
    }
    char hex[2 * GUTS_NODE_ID_LEN + 1] = "?";
    if (s->kind == SESS_PULL || !ok) /* what the logs below need */
        peer_hex(c, s, hex);
    if (s->kind == SESS_PULL) {
        lrepo *r = core_repo_find(c, s->key);
        if (s->chunk_active && s->chunk_fill) /* keep what arrived: a later pull resumes */
            pull_chunk_flush(c, s);
        if (ok)
            c->ctr.sessions_ok++;
        else if (s->busy)
            c->ctr.sessions_busy++;
        else
            c->ctr.sessions_failed++;
        if (r) {
            if (r->pulling)
                r->pulling--;
            int gave = 0;
            for (int k = 0; r->plan && k < 2; k++) { /* unfinished: another peer takes them */
                int *part = k ? &s->prev_part : &s->part;
                if (*part < 0)
                    continue;
                uint32_t n = k ? s->prev_nrun : s->nrun;
                pull_plan_give_back(r->plan, *part, n, s->busy ? NULL : &s->peer_id);
                c->ctr.split_given_back += n;
                gave = 1;
                *part = -1;
                sync_touched(c); /* its idle deadline was the stall's */
            }
            /* a busy server is load shedding, not failing, and a full
             * store is ours to fix: no backoff */
            if (!s->busy && !c->full)
                r->failures = ok ? 0 : r->failures + 1;
            if (ok)
                r->busy_streak = 0;
            /* refs received may wait for objects another session brings */
            if (s->ninrefs) {
                refs_take(c, r, s->inrefs, s->ninrefs);
                free(s->inrefs);
                s->inrefs = NULL;
                s->ninrefs = 0;
            }
            size_t nw;
            /* a try counts for a session that asked for closures: one
             * that ended before its refs phase tried nothing */
            refs_apply_pending(c, r, NULL, 0, &nw,
                               !s->busy && !s->norefs && s->phase >= PHASE_REFS);
            sync_log(c, s, ok, hex, why); /* after the last refs are applied */
            /* a part's pull that brought nothing says nothing of the peer's
             * other parts: it is not an empty pull */
            if (ok && s->norefs) {
                members_pulled(c, &s->peer_id, r->key, 0);
            } else if (ok && s->got_objects == 0 && c->ctr.refs_applied == s->applied0) {
                r->idle_pulls++;
                c->ctr.sessions_empty++;
                members_pulled(c, &s->peer_id, r->key, 1);
            } else if (ok) {
                members_pulled(c, &s->peer_id, r->key, 0);
            }
            else if (s->got_objects || c->ctr.refs_applied != s->applied0)
                r->idle_pulls = 0;
            core_repo_refresh(c, r);
            if (!r->pulling) /* what it counted is in the complete cache */
                closure_track_free(r);
            int busy = s->busy;
            uint32_t retry_after = s->retry_after;
            sess_remove(c, s);
            if (gave) /* a session waiting for parts takes them first */
                pull_parts_kick(c, r);
            if (busy) /* later, maybe from another peer (none: no pull) */
                r->next_pull = c->now + 1 + busy_delay(c, r, retry_after);
            else
                announce_consider(c, r);
            return;
        }
        sync_log(c, s, ok, hex, why);
    } else {
        if (s->key[0]) { /* a stream that asked for nothing served nothing */
            c->ctr.sessions_served++;
            c->ctr.serves_failed += !ok;
        }
        if (!ok)
            core_log(c, GUTS_LOG_DEBUG, "serving %s to %s ended: %s", s->key, hex,
                     why ? why : "failed");
    }
    sess_remove(c, s);
}

void sync_free_all(guts_core *c)
{
    while (c->nsess) {
        session *s = c->sess[c->nsess - 1];
        core_close_stream(c, s->stream);
        if (s->kind == SESS_PULL) {
            lrepo *r = core_repo_find(c, s->key);
            if (r && r->pulling && !--r->pulling)
                closure_track_free(r);
        }
        sess_remove(c, s);
    }
}

void sync_abort_peer(guts_core *c, const guts_addr *addr)
{
    for (size_t i = c->nsess; i-- > 0;) {
        if (i < c->nsess && guts_addr_eq(&c->sess[i]->addr, addr))
            sync_end(c, c->sess[i], 0, 1, "peer gone");
    }
}

int sync_pulling_from(const guts_core *c, const guts_node_id *id)
{
    for (size_t i = 0; i < c->nsess; i++) {
        const session *s = c->sess[i];
        if (s->kind == SESS_PULL && memcmp(&s->peer_id, id, sizeof(*id)) == 0) return 1;
    }
    return 0;
}

/* s is active now (a frame, a writable stream): its deadline moves later,
 * among the glance's kept ones or past them (on a server that a large
 * group pulls from, every frame rescanned all of its sessions). */
static void sess_active(guts_core *c, session *s)
{
    if (c->sess_clean) low_remove(c, idle_deadline(s), c->nsess - 1);
    s->last_active = c->now;
    if (c->sess_clean) low_insert(c, idle_deadline(s), c->nsess - 1);
}

void sync_glance(guts_core *c, size_t *pulls, size_t *serves, uint64_t *idle_at)
{
    if (!c->sess_clean) {
        size_t np, ns;
        guts_core_sessions(c, &np, &ns);
        c->nlow = 0;
        c->sess_idle_at = UINT64_MAX;
        for (size_t i = 0; i < c->nsess; i++)
            low_insert(c, idle_deadline(c->sess[i]), i);
        c->sess_pulls = (uint32_t)np;
        c->sess_serves = (uint32_t)ns;
        c->sess_clean = 1;
    }
    *pulls = c->sess_pulls;
    *serves = c->sess_serves;
    *idle_at = c->sess_idle_at;
}

void sync_idle(guts_core *c)
{
    size_t pulls, serves;
    uint64_t idle_at;
    sync_glance(c, &pulls, &serves, &idle_at);
    if (c->now < idle_at)
        return; /* no session is idle yet */
    for (size_t i = c->nsess; i-- > 0;) {
        if (i >= c->nsess)
            continue;
        session *s = c->sess[i];
        if (c->now < idle_deadline(s))
            continue;
        if (s->kind == SESS_PULL && s->part_wait) { /* waited long enough: the bases now */
            s->part_wait = 0;
            sync_touched(c);
            pull_advance(c, s);
            continue;
        }
        int stalled = s->kind == SESS_PULL && s->part >= 0;
        c->ctr.split_stalls += (uint64_t)stalled;
        lrepo *r = stalled ? core_repo_find(c, s->key) : NULL;
        if (r && r->plan) /* a slow link, maybe: the next sessions wait longer */
            r->plan->stall_ms = 2 * r->plan->stall_ms < CORE_SESSION_IDLE_MS
                                    ? 2 * r->plan->stall_ms
                                    : CORE_SESSION_IDLE_MS;
        sync_end(c, s, 0, 1, stalled ? "stalled" : "idle");
    }
}

/* Keep a finished pull's stream for the next pull from the same peer. At
 * most max_sessions are parked: the oldest goes first. */
void sync_park(guts_core *c, uint32_t stream, const guts_addr *addr, const guts_node_id *peer_id)
{
    session *old = NULL;
    size_t n = 0;
    for (size_t i = 0; i < c->nsess; i++) {
        session *x = c->sess[i];
        if (x->kind != SESS_PARKED)
            continue;
        n++;
        if (!old || x->last_active < old->last_active)
            old = x;
    }
    if (n >= c->cfg.max_sessions && old)
        sync_end(c, old, 0, 1, NULL);
    session *s = sync_sess_new(c, stream, SESS_PARKED, addr);
    if (!s) {
        core_close_stream(c, stream);
        return;
    }
    s->peer_id = *peer_id;
    /* a HELLO now tells the server this pull is over: it frees the serve
     * slot at once (a parked stream held it for 2 s) and answers HELLO;
     * the next pull on the stream starts with its RECON */
    sync_send_hello(c, s);
}

/* A parked stream to peer p, or NULL. */
session *sync_parked_to(guts_core *c, const peer *p)
{
    for (size_t i = 0; i < c->nsess; i++) {
        session *x = c->sess[i];
        if (x->kind == SESS_PARKED && guts_addr_eq(&x->addr, &p->addr) &&
            memcmp(&x->peer_id, &p->id, sizeof p->id) == 0)
            return x;
    }
    return NULL;
}

void sync_send_hello(guts_core *c, session *s)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_HELLO);
    m.u.hello.incarnation = c->cfg.incarnation;
    m.u.hello.port = c->cfg.tcp_port;
    core_send_frame(c, s->stream, &m);
    s->said_hello = 1;
}

/* ---- Sets seen by the reconciliation engine ------------------------------ */

typedef struct scan_ctx {
    guts_recon_visit cb;
    void *cbctx;
    uint32_t lo, hi;
} scan_ctx;

void sync_key_to_id(uint32_t k, guts_id *id)
{
    memset(id, 0, sizeof(*id));
    id->b[0] = (uint8_t)(k >> 24);
    id->b[1] = (uint8_t)(k >> 16);
    id->b[2] = (uint8_t)(k >> 8);
    id->b[3] = (uint8_t)k;
}

static int obj_visit(const guts_id *id, void *arg)
{
    scan_ctx *x = arg;
    return x->cb(x->cbctx, guts_recon_key_of_id(id), guts_fp_of_id(id), id);
}

int sync_objects_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    session *s = ctx;
    guts_core *c = s->core;
    guts_id from, to;
    sync_key_to_id(lo, &from);
    sync_key_to_id(hi + 1, &to);
    scan_ctx x = {cb, cbctx, lo, hi};
    return c->st.ids(c->st.ctx, s->key, &from, hi == UINT32_MAX ? NULL : &to, obj_visit, &x);
}

static int ref_visit(const guts_ref *ref, void *arg)
{
    scan_ctx *x = arg;
    uint32_t k = guts_recon_key_of_refname(ref->name);
    if (k < x->lo || k > x->hi)
        return 0;
    return x->cb(x->cbctx, k, guts_ref_digest_term(ref), ref);
}

int sync_refs_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    session *s = ctx;
    guts_core *c = s->core;
    scan_ctx x = {cb, cbctx, lo, hi};
    return c->st.refs(c->st.ctx, s->key, 1, ref_visit, &x);
}

/* ---- Events -------------------------------------------------------------- */

void sync_on_open(guts_core *c, uint32_t stream, const guts_addr *addr, int outgoing)
{
    session *s = sync_find(c, stream);
    if (outgoing) {
        if (!s || s->kind != SESS_PULL || s->phase != PHASE_CONNECTING) {
            core_close_stream(c, stream);
            return;
        }
        sess_active(c, s);
        pull_open(c, s);
        return;
    }
    if (s || c->left) {
        core_close_stream(c, stream);
        return;
    }
    /* no slot yet: serve_key takes one when the peer asks for something */
    s = sync_sess_new(c, stream, SESS_SERVE, addr);
    if (!s) {
        core_close_stream(c, stream);
        return;
    }
    s->phase = PHASE_OBJECTS;
}

void sync_on_frame(guts_core *c, uint32_t stream, const uint8_t *buf, size_t len)
{
    session *s = sync_find(c, stream);
    if (!s)
        return; /* a late frame of a session already ended */
    if (len > c->cfg.frame_max) {
        c->ctr.frames_malformed++;
        sync_end(c, s, 0, 1, "frame too large");
        return;
    }
    guts_msg m;
    int rc = guts_msg_decode(buf, len, &m);
    if (rc) {
        c->ctr.frames_malformed++;
        sync_end(c, s, 0, 1, guts_strerror(rc));
        return;
    }
    sess_active(c, s);
    if (s->kind == SESS_PULL) {
        /* a server sending on our pull is alive, whether or not its
         * announces get through (or our loop read them in time) */
        peer *p = members_find(c, &s->peer_id);
        if (p) p->last_heard = c->now;
    }
    const char *key = NULL;
    switch (m.type) {
    case GUTS_MSG_RECON: key = m.u.recon.key; break;
    case GUTS_MSG_WANT: key = m.u.want.key; break;
    case GUTS_MSG_OBJECTS: key = m.u.objects.key; break;
    case GUTS_MSG_OBJECT_CHUNK: key = m.u.chunk.key; break;
    case GUTS_MSG_REFS: key = m.u.refs.key; break;
    case GUTS_MSG_DONE: key = m.u.done.key; break;
    default: break;
    }
    if (s->kind == SESS_PARKED) {
        if (m.type == GUTS_MSG_HELLO) /* the server's answer to ours */
            s->got_hello = 1;
        else /* nothing else comes on a parked stream */
            sync_end(c, s, 0, 1, NULL);
    } else if (s->kind == SESS_PULL) {
        if (key && strcmp(key, s->key) != 0) {
            sync_end(c, s, 0, 1, "frame for another repository");
        } else if (m.type == GUTS_MSG_HELLO) {
            s->got_hello = 1;
        } else if (m.type == GUTS_MSG_RECON) {
            pull_recon(c, s, &m.u.recon);
        } else if (m.type == GUTS_MSG_OBJECTS) {
            pull_objects(c, s, &m.u.objects);
        } else if (m.type == GUTS_MSG_OBJECT_CHUNK) {
            pull_chunk(c, s, &m.u.chunk);
        } else if (m.type == GUTS_MSG_REFS) {
            pull_refs(c, s, &m.u.refs);
        } else if (m.type == GUTS_MSG_DONE) {
            if (!s->outstanding)
                sync_end(c, s, 0, 1, "unexpected DONE");
            else
                pull_done(c, s);
        } else if (m.type == GUTS_MSG_ERROR) {
            s->busy = m.u.error.code == GUTS_EAGAIN;
            s->retry_after = m.u.error.retry_after_ms;
            sync_end(c, s, 0, 1, m.u.error.text ? m.u.error.text : "peer error");
        } else {
            sync_end(c, s, 0, 1, "unexpected message");
        }
    } else {
        if (m.type != GUTS_MSG_HELLO && s->small) { /* a request: a whole session */
            session *n = sync_sess_full(c, s);
            if (!n) {
                sync_end(c, s, 0, 1, "out of memory");
                guts_msg_free(&m);
                return;
            }
            s = n;
        }
        if (m.type == GUTS_MSG_HELLO && s->got_hello) {
            /* the puller starts its next pull on this stream: the last one
             * must be fully answered (its DONEs all sent) */
            if (!s->small && (s->headjob < s->njobs || s->big_active || s->headahead < s->nahead)) {
                serve_error(c, s, GUTS_EPROTO, "HELLO before the last request was answered");
            } else {
                uint32_t stream = s->stream;
                guts_addr addr = s->addr;
                sync_end(c, s, 1, 0, NULL);
                s = sync_sess_new(c, stream, SESS_SERVE, &addr);
                if (!s) {
                    core_close_stream(c, stream);
                } else {
                    s->phase = PHASE_OBJECTS;
                    s->got_hello = 1;
                    sync_send_hello(c, s);
                }
            }
        } else if (m.type == GUTS_MSG_HELLO) {
            s->got_hello = 1;
            if (!s->said_hello)
                sync_send_hello(c, s);
        } else if (m.type == GUTS_MSG_RECON) {
            serve_recon(c, s, &m.u.recon);
        } else if (m.type == GUTS_MSG_WANT) {
            serve_want(c, s, &m.u.want);
        } else if (m.type == GUTS_MSG_OBJECT_CHUNK) {
            serve_resume(c, s, &m.u.chunk);
        } else if (m.type == GUTS_MSG_DAMAGED) {
            serve_damaged(c, s, &m.u.damaged);
        } else if (m.type == GUTS_MSG_ERROR) {
            sync_end(c, s, 0, 1, "peer error");
        } else {
            serve_error(c, s, GUTS_EPROTO, "unexpected message");
        }
    }
    guts_msg_free(&m);
}

void sync_on_writable(guts_core *c, uint32_t stream)
{
    session *s = sync_find(c, stream);
    if (!s || s->kind != SESS_SERVE)
        return;
    sess_active(c, s);
    if (s->small) /* nothing asked, nothing to send */
        return;
    s->blocked = 0;
    serve_pump(c, s);
}

void sync_on_closed(guts_core *c, uint32_t stream)
{
    session *s = sync_find(c, stream);
    if (!s)
        return;
    if (s->kind == SESS_PULL)
        sync_end(c, s, 0, 0, "stream closed");
    else
        sync_end(c, s, 1, 0, NULL);
}
