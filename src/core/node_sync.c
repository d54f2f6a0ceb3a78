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
 * Every received object is hashed before it is stored; one bad object ends
 * the session (stream closed, counted) and the repository backs off from
 * pulling. So a server checks each stored object before sending it
 * (core_obj_damaged): one that fails its hash is skipped and dropped from
 * its store, and the session goes on; the puller gets it from another peer
 * and the server fetches it back like any object it lacks. A delta whose
 * base is damaged fails too (its content cannot be rebuilt) and is treated
 * the same way. Objects larger than CORE_CHUNK travel as OBJECT_CHUNK frames:
 * the server reads them from the store chunk by chunk, the puller stages
 * them in the store every CORE_STAGE_BATCH bytes (the store verifies the
 * SHA-1 when the last byte is in, and only then is it an object). A
 * puller that holds a staged prefix says so first (an empty OBJECT_CHUNK
 * with the offset it holds) and the server starts that object there. An
 * object over the configured obj_max is followed but not kept (counted,
 * logged once) and the session goes on.
 */
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

session *sync_find(guts_core *c, uint32_t stream)
{
    for (size_t i = 0; i < c->nsess; i++)
        if (c->sess[i]->stream == stream)
            return c->sess[i];
    return NULL;
}

static session *sess_new(guts_core *c, uint32_t stream, int kind, const guts_addr *addr)
{
    if (c->nsess == c->capsess) {
        size_t nc = c->capsess ? 2 * c->capsess : 8;
        session **p = realloc(c->sess, nc * sizeof(session *));
        if (!p)
            return NULL;
        c->sess = p;
        c->capsess = nc;
    }
    session *s = calloc(1, sizeof(session));
    if (!s)
        return NULL;
    if (kind == SESS_SERVE) {
        if (!(s->ahead = malloc(CORE_AHEAD_MIN * sizeof(sent_rec)))) {
            free(s);
            return NULL;
        }
        s->capahead = CORE_AHEAD_MIN;
    }
    s->core = c;
    s->stream = stream;
    s->kind = kind;
    s->addr = *addr;
    s->started = s->last_active = c->now;
    c->sess[c->nsess++] = s;
    return s;
}

static void jobs_free(session *s)
{
    for (size_t i = s->headjob; i < s->njobs; i++) {
        job *j = &s->jobs[i];
        free(j->ids);
        free(j->buf);
        for (size_t k = 0; k < j->nnames; k++)
            free(j->names[k]);
        free(j->names);
    }
    free(s->jobs);
    s->jobs = NULL;
    s->njobs = s->headjob = s->capjobs = 0;
}

static void pend_free(guts_core *c, session *s);
static int chunk_flush(guts_core *c, session *s);
static void log_bad(guts_core *c, session *s, const guts_id *id);
static void pend_wants(guts_core *c, session *s, guts_id *want, size_t max, size_t *n);
static void pull_open(guts_core *c, session *s);
static void send_hello(guts_core *c, session *s);

static void sess_free(session *s)
{
    guts_recon_puller_free(&s->recon);
    for (size_t i = 0; i < s->ninrefs; i++)
        cref_free(&s->inrefs[i]);
    free(s->inrefs);
    free(s->chunk);
    for (size_t i = s->headahead; i < s->nahead; i++)
        free(s->ahead[i].buf);
    free(s->ahead);
    idset_clear(&s->early);
    pend_free(s->core, s);
    jobs_free(s);
    free(s);
}

static void sess_remove(guts_core *c, session *s)
{
    for (size_t i = 0; i < c->nsess; i++) {
        if (c->sess[i] == s) {
            c->sess[i] = c->sess[--c->nsess];
            break;
        }
    }
    sess_free(s);
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
            chunk_flush(c, s);
        if (ok)
            c->ctr.sessions_ok++;
        else if (s->busy)
            c->ctr.sessions_busy++;
        else
            c->ctr.sessions_failed++;
        if (r) {
            r->pulling = 0;
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
            refs_apply_pending(c, r, NULL, 0, &nw, !s->busy && s->phase >= PHASE_REFS);
            sync_log(c, s, ok, hex, why); /* after the last refs are applied */
            if (ok && s->got_objects == 0 && c->ctr.refs_applied == s->applied0) {
                r->idle_pulls++;
                c->ctr.sessions_empty++;
                members_pulled(c, &s->peer_id, r->key, 1);
            } else if (ok) {
                members_pulled(c, &s->peer_id, r->key, 0);
            }
            else if (s->got_objects || c->ctr.refs_applied != s->applied0)
                r->idle_pulls = 0;
            core_repo_refresh(c, r);
            int busy = s->busy;
            uint32_t retry_after = s->retry_after;
            sess_remove(c, s);
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
            if (r)
                r->pulling = 0;
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

void sync_idle(guts_core *c)
{
    for (size_t i = c->nsess; i-- > 0;) {
        if (i >= c->nsess)
            continue;
        session *s = c->sess[i];
        uint64_t idle = s->kind == SESS_PARKED ? CORE_PARK_MS : CORE_SESSION_IDLE_MS;
        if (c->now >= s->last_active + idle)
            sync_end(c, s, 0, 1, "idle");
    }
}

/* Keep a finished pull's stream for the next pull from the same peer. At
 * most max_sessions are parked: the oldest goes first. */
static void park(guts_core *c, uint32_t stream, const guts_addr *addr, const guts_node_id *peer_id)
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
    session *s = sess_new(c, stream, SESS_PARKED, addr);
    if (!s) {
        core_close_stream(c, stream);
        return;
    }
    s->peer_id = *peer_id;
    /* a HELLO now tells the server this pull is over: it frees the serve
     * slot at once (a parked stream held it for 2 s) and answers HELLO;
     * the next pull on the stream starts with its RECON */
    send_hello(c, s);
}

/* A parked stream to peer p, or NULL. */
static session *parked_to(guts_core *c, const peer *p)
{
    for (size_t i = 0; i < c->nsess; i++) {
        session *x = c->sess[i];
        if (x->kind == SESS_PARKED && guts_addr_eq(&x->addr, &p->addr) &&
            memcmp(&x->peer_id, &p->id, sizeof p->id) == 0)
            return x;
    }
    return NULL;
}

/* ---- Sets seen by the reconciliation engine ------------------------------ */

typedef struct scan_ctx {
    guts_recon_visit cb;
    void *cbctx;
    uint32_t lo, hi;
} scan_ctx;

static void key_to_id(uint32_t k, guts_id *id)
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

static int objects_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    session *s = ctx;
    guts_core *c = s->core;
    guts_id from, to;
    key_to_id(lo, &from);
    key_to_id(hi + 1, &to);
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

static int refs_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    session *s = ctx;
    guts_core *c = s->core;
    scan_ctx x = {cb, cbctx, lo, hi};
    return c->st.refs(c->st.ctx, s->key, 1, ref_visit, &x);
}

/* ---- Puller -------------------------------------------------------------- */

/* Pick the peer to pull r from: among peers whose state differs, those with
 * the most objects (the newest state), at random among equals. A peer still
 * announcing the state at which it last gave us nothing is skipped, except
 * by an anti-entropy pull when no other peer differs (Demers' backstop). */
static peer *choose_peer(guts_core *c, lrepo *r)
{
    peer *best = NULL;
    uint64_t best_n = 0, ties = 0;
    int best_ex = 1;
    for (size_t i = 0; i < c->npeers; i++) {
        peer_repo *pr = members_repo(&c->peers[i], r->key);
        if (!pr || (guts_fp_eq(pr->fp, r->info.fp) && pr->rdigest == r->info.refs_digest.lo))
            continue;
        if (pr->objects == 0 && pr->rdigest == 0)
            continue; /* nothing to give */
        int ex = members_repo_exhausted(pr);
        if (ex && (r->urgent || !best_ex))
            continue;
        if (best_ex && !ex) { /* a fresh peer beats any exhausted one */
            best = NULL;
            best_ex = 0;
        }
        if (!best || pr->objects > best_n) {
            best = &c->peers[i];
            best_n = pr->objects;
            ties = 1;
        } else if (pr->objects == best_n && core_rand_below(c, ++ties) == 0) {
            best = &c->peers[i];
        }
    }
    return best;
}

void sync_start_pulls(guts_core *c)
{
    if (c->nrepos == 0 || core_store_full(c))
        return;
    size_t pulls, serves;
    guts_core_sessions(c, &pulls, &serves);
    size_t off = (size_t)core_rand_below(c, c->nrepos);
    for (size_t i = 0; i < c->nrepos && pulls < c->cfg.max_sessions; i++) {
        lrepo *r = c->repos[(off + i) % c->nrepos];
        if (!r->next_pull || r->next_pull > c->now || r->pulling)
            continue;
        r->next_pull = 0;
        peer *p = choose_peer(c, r);
        if (!p)
            continue;
        session *s = parked_to(c, p);
        int reused = s != NULL;
        if (s) { /* open already, its HELLO sent when it was parked */
            s->kind = SESS_PULL;
            s->started = s->last_active = c->now;
        } else {
            uint32_t id = c->next_stream;
            c->next_stream = (c->next_stream + 1) & ~GUTS_CORE_STREAM_DRIVER;
            if (c->next_stream == 0)
                c->next_stream = 1;
            s = sess_new(c, id, SESS_PULL, &p->addr);
            if (!s)
                return;
        }
        s->peer_id = p->id;
        s->applied0 = c->ctr.refs_applied;
        strcpy(s->key, r->key);
        s->phase = PHASE_CONNECTING;
        peer_repo *pr = members_repo(p, r->key);
        if (pr && pr->objects > r->info.objects)
            s->expected = pr->objects - r->info.objects;
        /* objects agree: only refs differ */
        if (pr && guts_fp_eq(pr->fp, r->info.fp))
            s->recon_done = 2;
        r->pulling = 1;
        pulls++;
        c->ctr.sessions_started++;
        if (reused) {
            pull_open(c, s);
            continue;
        }
        guts_core_action a = {.kind = GUTS_ACT_OPEN_STREAM, .stream = s->stream, .addr = p->addr,
                              .port = p->port};
        core_push(c, &a);
    }
}

static int send_recon(guts_core *c, session *s, uint8_t space, const guts_recon_item *items,
                      size_t n)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_RECON);
    m.u.recon.key = s->key;
    m.u.recon.space = space;
    m.u.recon.seed = s->seed;
    m.u.recon.round = s->round;
    m.u.recon.nitems = (uint32_t)n;
    m.u.recon.items = (guts_recon_item *)items;
    return core_send_frame(c, s->stream, &m);
}

/* Start reconciliation of one space. */
static int phase_start(guts_core *c, session *s, int phase)
{
    guts_recon_puller_free(&s->recon);
    memset(&s->recon, 0, sizeof(s->recon));
    s->phase = phase;
    s->round = 0;
    s->recon_done = 0;
    s->seed = core_rand(c);
    guts_recon_set set = {s, phase == PHASE_OBJECTS ? objects_scan : refs_scan};
    const guts_recon_item *items;
    size_t n;
    int rc = guts_recon_puller_start(&s->recon, &set, s->seed, &items, &n);
    if (rc)
        return rc;
    rc = send_recon(c, s, phase == PHASE_OBJECTS ? GUTS_SPACE_OBJECTS : GUTS_SPACE_REFS, items,
                    n);
    if (rc)
        return rc;
    s->outstanding++;
    return GUTS_OK;
}

static void send_hello(guts_core *c, session *s)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_HELLO);
    m.u.hello.incarnation = c->cfg.incarnation;
    m.u.hello.port = c->cfg.tcp_port;
    core_send_frame(c, s->stream, &m);
    s->said_hello = 1;
}

/* Move the puller on when a phase is complete. */
static void advance(guts_core *c, session *s)
{
    if (!s->recon_done || s->outstanding)
        return;
    lrepo *r = core_repo_find(c, s->key);
    if (!r) {
        sync_end(c, s, 0, 1, "repository vanished");
        return;
    }
    if (s->phase == PHASE_OBJECTS) {
        int rc = phase_start(c, s, PHASE_REFS);
        if (rc)
            sync_end(c, s, 0, 1, guts_strerror(rc));
        return;
    }
    /* A WANT that brought nothing (no object stored or held) would bring
     * nothing again: a peer that cannot give a closure it advertised is
     * broken or hostile, and must not hold the session for 64 rounds. */
    if (s->phase == PHASE_WANTS && s->got_objects + s->npend == s->want_mark) {
        sync_end(c, s, 0, 1, "WANT round brought nothing");
        return;
    }
    /* refs phase or a WANT answered: apply what is complete, ask for more */
    if (s->ninrefs) {
        refs_take(c, r, s->inrefs, s->ninrefs);
        free(s->inrefs);
        s->inrefs = NULL;
        s->ninrefs = s->capinrefs = 0;
    }
    guts_id *want = malloc(GUTS_WANT_MAX * sizeof(guts_id));
    size_t nwant = 0;
    if (want) {
        refs_apply_pending(c, r, want, GUTS_WANT_MAX, &nwant, 0);
        pend_wants(c, s, want, GUTS_WANT_MAX, &nwant);
        core_wants_trim(c, want, &nwant);
    }
    if (nwant && s->want_rounds < CORE_WANT_ROUNDS_MAX) {
        guts_msg m;
        core_msg_init(c, &m, GUTS_MSG_WANT);
        m.u.want.key = s->key;
        m.u.want.nids = (uint32_t)nwant;
        m.u.want.ids = want;
        if (core_send_frame(c, s->stream, &m) == GUTS_OK) {
            s->want_rounds++;
            s->want_mark = s->got_objects + s->npend;
            s->outstanding++;
            s->phase = PHASE_WANTS;
            free(want);
            return;
        }
    }
    free(want);
    s->phase = PHASE_DONE;
    /* the stream stays open for the next pull from this peer, if it
     * answered our HELLO (it speaks the protocol that reuses streams) */
    uint32_t stream = s->stream;
    guts_addr addr = s->addr;
    guts_node_id peer_id = s->peer_id;
    int reuse = s->got_hello && !c->left;
    sync_end(c, s, 1, !reuse, NULL);
    if (reuse)
        park(c, stream, &addr, &peer_id);
}

/* Tell the server which large objects we hold a staged prefix of (an empty
 * OBJECT_CHUNK at the offset we hold): it starts them there. Staging of
 * objects stored meanwhile (from another peer) is dropped here. */
static void send_resumes(guts_core *c, session *s)
{
    guts_stage st[GUTS_STAGE_MAX];
    size_t n = 0;
    if (c->st.stage_list(c->st.ctx, s->key, st, GUTS_STAGE_MAX, &n) != GUTS_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        if (c->st.has(c->st.ctx, s->key, &st[i].id) == 1) {
            c->st.stage_drop(c->st.ctx, s->key, &st[i].id);
            continue;
        }
        if (st[i].have == 0)
            continue;
        guts_msg m;
        core_msg_init(c, &m, GUTS_MSG_OBJECT_CHUNK);
        m.u.chunk.key = s->key;
        m.u.chunk.id = st[i].id;
        m.u.chunk.type = (uint8_t)st[i].type;
        m.u.chunk.total = st[i].size;
        m.u.chunk.offset = st[i].have;
        m.u.chunk.data = NULL;
        m.u.chunk.len = 0;
        core_send_frame(c, s->stream, &m);
    }
}

static void pull_open(guts_core *c, session *s)
{
    if (!s->said_hello) /* a parked stream said it when the last pull ended */
        send_hello(c, s);
    send_resumes(c, s);
    int rc;
    if (s->recon_done == 2) {
        s->phase = PHASE_OBJECTS;
        s->recon_done = 1;
        rc = phase_start(c, s, PHASE_REFS);
    } else {
        rc = phase_start(c, s, PHASE_OBJECTS);
    }
    if (rc)
        sync_end(c, s, 0, 1, guts_strerror(rc));
}

static void pull_recon(guts_core *c, session *s, const guts_msg_recon *m)
{
    int want_space = s->phase == PHASE_OBJECTS ? GUTS_SPACE_OBJECTS : GUTS_SPACE_REFS;
    if ((s->phase != PHASE_OBJECTS && s->phase != PHASE_REFS) || s->recon_done ||
        m->space != want_space || m->round != s->round || m->seed != s->seed) {
        sync_end(c, s, 0, 1, "unexpected RECON");
        return;
    }
    const guts_recon_item *out;
    size_t n;
    int done = 0;
    int rc = guts_recon_puller_step(&s->recon, m->items, m->nitems, &out, &n, &done);
    if (rc) {
        sync_end(c, s, 0, 1, guts_strerror(rc));
        return;
    }
    if (n) {
        s->round++;
        rc = send_recon(c, s, (uint8_t)want_space, out, n);
        if (rc) {
            sync_end(c, s, 0, 1, guts_strerror(rc));
            return;
        }
        s->outstanding++;
    }
    if (done || n == 0)
        s->recon_done = 1;
    advance(c, s);
}

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

static void pend_free(guts_core *c, session *s)
{
    for (size_t i = 0; i < s->npend; i++) {
        if (s->pend[i].buf) {
            c->ctr.objects_dropped++;
            free(s->pend[i].buf);
        }
    }
    free(s->pend);
    free(s->pend_heads);
    s->pend = NULL;
    s->pend_heads = NULL;
    s->npend = s->cappend = s->live_pend = s->pend_bytes = 0;
}

static int pend_rehash(session *s, size_t nb)
{
    size_t *h = malloc(nb * sizeof(size_t));
    if (!h)
        return GUTS_ENOMEM;
    for (size_t i = 0; i < nb; i++)
        h[i] = SIZE_MAX;
    for (size_t i = 0; i < s->npend; i++) {
        size_t b = pend_hash(&s->pend[i].rec.base, nb - 1);
        s->pend[i].next = h[b];
        h[b] = i;
    }
    free(s->pend_heads);
    s->pend_heads = h;
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
        pend_rec *p = realloc(s->pend, nc * sizeof(pend_rec));
        if (!p) {
            c->ctr.objects_dropped++;
            return;
        }
        s->pend = p;
        s->cappend = nc;
        if (pend_rehash(s, 2 * nc) != GUTS_OK) { /* the old index stays valid */
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
    size_t b = pend_hash(&rec->base, s->pend_mask);
    e->next = s->pend_heads[b];
    s->pend_heads[b] = s->npend++;
    s->live_pend++;
    s->pend_bytes += rec->len + CORE_PEND_ENTRY_COST;
}

static void pend_kill(session *s, pend_rec *e)
{
    free(e->buf);
    e->buf = NULL;
    s->live_pend--;
    s->pend_bytes -= e->rec.len + CORE_PEND_ENTRY_COST;
}

static void log_bad(guts_core *c, session *s, const guts_id *id)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(id, hex);
    core_log(c, GUTS_LOG_WARN, "bad object %s in %s: peer dropped from session", hex, s->key);
}

/* Store records (verified by the store, once) in one call, followed by the
 * held deltas whose base is among them or among the extra ids (just stored
 * another way), transitively, breadth first so that every base goes before
 * the records made against it: one write transaction per frame. Deltas of
 * recs without their base are held. */
static int store_recs(guts_core *c, session *s, const guts_rec *recs, size_t n,
                      const guts_id *extra, size_t nextra)
{
    size_t cap = n + s->live_pend;
    guts_rec *all = malloc((cap ? cap : 1) * sizeof(guts_rec));
    guts_id *work = malloc((nextra + cap ? nextra + cap : 1) * sizeof(guts_id));
    size_t *from = malloc((s->live_pend ? s->live_pend : 1) * sizeof(size_t));
    uint8_t *nobase = calloc(cap ? cap : 1, 1);
    int rc = GUTS_ENOMEM;
    if (!all || !work || !from || !nobase)
        goto out;
    if (n)
        memcpy(all, recs, n * sizeof(guts_rec));
    size_t nwork = 0, np = 0;
    for (size_t i = 0; i < nextra; i++)
        work[nwork++] = extra[i];
    for (size_t i = 0; i < n; i++)
        work[nwork++] = recs[i].id;
    for (size_t k = 0; k < nwork && s->live_pend && np < s->live_pend; k++) {
        for (size_t i = s->pend_heads[pend_hash(&work[k], s->pend_mask)]; i != SIZE_MAX;
             i = s->pend[i].next) {
            pend_rec *e = &s->pend[i];
            if (e->buf && !e->picked && guts_id_cmp(&e->rec.base, &work[k]) == 0) {
                e->picked = 1; /* an id may be listed twice */
                from[np] = i;
                all[n + np++] = e->rec;
                work[nwork++] = e->rec.id;
            }
        }
    }
    rc = GUTS_OK;
    if (n + np) {
        size_t added = 0, bad = 0;
        rc = c->st.rec_put(c->st.ctx, s->key, all, n + np, nobase, &added, &bad);
        if (rc == GUTS_EHASH) {
            c->ctr.bad_objects++;
            log_bad(c, s, &all[bad < n + np ? bad : 0].id);
        } else if (rc == GUTS_OK) {
            s->got_objects += added;
            c->ctr.objects_fetched += added;
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
out:
    free(all);
    free(work);
    free(from);
    free(nobase);
    return rc;
}

/* Bases of held deltas, not asked for before and not stored: appended to a
 * WANT list of *n ids (up to max). */
static void pend_wants(guts_core *c, session *s, guts_id *want, size_t max, size_t *n)
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

/* Store raw objects: the store verifies every id (once) before storing. */
static int store_objects(guts_core *c, session *s, const guts_obj *objs, size_t n)
{
    size_t added = 0, bad = 0;
    int rc = c->st.put(c->st.ctx, s->key, objs, n, &added, &bad);
    if (rc) {
        if (rc == GUTS_EHASH) {
            c->ctr.bad_objects++;
            log_bad(c, s, &objs[bad < n ? bad : 0].id);
        }
        return rc;
    }
    s->got_objects += added;
    c->ctr.objects_fetched += added;
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

static void pull_objects(guts_core *c, session *s, const guts_msg_objects *m)
{
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
        free(objs);
    }
    if (rc)
        sync_end(c, s, 0, 1, guts_strerror(rc));
}

/* Stage the buffered chunks (one write transaction); after the last byte
 * the store has verified the object and made it visible. */
static int chunk_flush(guts_core *c, session *s)
{
    int stored = 0;
    uint64_t off = s->chunk_next - s->chunk_fill;
    int rc = c->st.stage_write(c->st.ctx, s->key, &s->chunk_id, s->chunk_type, s->chunk_total, off,
                               s->chunk, s->chunk_fill, &stored);
    s->chunk_fill = 0;
    if (rc == GUTS_EHASH) {
        c->ctr.bad_objects++;
        log_bad(c, s, &s->chunk_id);
    }
    if (rc || s->chunk_next < s->chunk_total)
        return rc;
    s->chunk_active = 0;
    if (!stored)
        return GUTS_OK;
    s->got_objects++;
    c->ctr.objects_fetched++;
    /* it may be a held delta's base */
    return s->live_pend ? store_recs(c, s, NULL, 0, &s->chunk_id, 1) : GUTS_OK;
}

static void pull_chunk(guts_core *c, session *s, const guts_msg_chunk *m)
{
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
            rc = chunk_flush(c, s);
    } while (rc == GUTS_OK && left);
    if (rc)
        sync_end(c, s, 0, 1, guts_strerror(rc));
}

static void pull_refs(guts_core *c, session *s, const guts_msg_refs *m)
{
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

/* ---- Server -------------------------------------------------------------- */

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
    if (e->s->queued_ids + e->n >= CORE_SERVE_QUEUE_MAX)
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

static void serve_pump(guts_core *c, session *s);

static int serve_key(guts_core *c, session *s, const char *key)
{
    if (!s->key[0]) {
        lrepo *r = core_repo_find(c, key);
        if (!r || r->unstored)
            return GUTS_ENOTFOUND;
        /* a serve slot is taken here, by a request, not by a connection */
        size_t pulls, serves;
        guts_core_sessions(c, &pulls, &serves);
        if (serves >= c->cfg.max_sessions)
            return GUTS_EAGAIN;
        strcpy(s->key, key);
        return GUTS_OK;
    }
    return strcmp(s->key, key) == 0 ? GUTS_OK : GUTS_EPROTO;
}

static void serve_error(guts_core *c, session *s, int code, const char *text)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_ERROR);
    m.u.error.code = code;
    m.u.error.text = code == GUTS_EAGAIN ? "busy" : text;
    m.u.error.retry_after_ms = code == GUTS_EAGAIN ? CORE_BUSY_RETRY_MS : 0;
    core_send_frame(c, s->stream, &m);
    sync_end(c, s, 0, 1, text);
}

static void serve_recon(guts_core *c, session *s, const guts_msg_recon *m)
{
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
            key_to_id(lo, &ranges[nranges].from);
            key_to_id(hi + 1, &ranges[nranges].to);
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
        guts_recon_set set = {s, m->space == GUTS_SPACE_OBJECTS ? objects_scan : refs_scan};
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
static void serve_resume(guts_core *c, session *s, const guts_msg_chunk *m)
{
    int rc = serve_key(c, s, m->key);
    if (rc) {
        serve_error(c, s, rc, "no such repository");
        return;
    }
    if (m->len) {
        serve_error(c, s, GUTS_EPROTO, "unexpected message");
        return;
    }
    if (s->nresume < GUTS_STAGE_MAX)
        s->resume[s->nresume++] =
            (guts_stage){.id = m->id, .type = m->type, .size = m->total, .have = m->offset};
}

static void serve_want(guts_core *c, session *s, const guts_msg_want *m)
{
    int rc = serve_key(c, s, m->key);
    if (rc) {
        serve_error(c, s, rc, "no such repository");
        return;
    }
    if (s->queued_ids + m->nids > CORE_SERVE_QUEUE_MAX) {
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
    guts_wire_obj *objs = calloc(CORE_OBJS_PER_FRAME, sizeof(guts_wire_obj));
    void **bufs = calloc(CORE_OBJS_PER_FRAME, sizeof(void *));
    if (!objs || !bufs) {
        free(objs);
        free(bufs);
        return GUTS_ENOMEM;
    }
    size_t n = 0, bytes = 0;
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
        if (core_obj_damaged(c, s->key, &id)) continue;
        if (c->st.get(c->st.ctx, s->key, &id, &type, &data, &len) != GUTS_OK)
            continue; /* not ours (a stale WANT): skip */
        if (len > cap) {
            free(data);
            big_start(s, &id, type, len);
            break;
        }
        objs[n].id = id;
        objs[n].type = (uint8_t)type;
        objs[n].data = data;
        objs[n].len = len;
        bufs[n] = data;
        n++;
        bytes += len;
    }
    if (n && rc == GUTS_OK)
        rc = send_objects_frame(c, s, objs, n, bytes, budget);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(objs);
    free(bufs);
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
        if (guts_id_cmp(b, x) <= 0 || idset_has(&s->early, b))
            break; /* sent already */
        if (core_obj_damaged(c, s->key, b))
            break; /* sent without it: the puller holds the delta until a peer sends a good base */
        if (c->st.rec_get(c->st.ctx, s->key, b, &ch[k].rec, &ch[k].buf) != GUTS_OK)
            break;
        if (idset_add(&s->early, b) < 0) {
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
    out_rec *v = calloc(CORE_RECS_PER_FRAME, sizeof(out_rec));
    guts_wire_obj *objs = calloc(CORE_RECS_PER_FRAME, sizeof(guts_wire_obj));
    if (!v || !objs) {
        free(v);
        free(objs);
        return GUTS_ENOMEM;
    }
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
            if (j->whole && idset_has(&s->early, &id))
                continue; /* sent ahead of its place */
            if (core_obj_damaged(c, s->key, &id)) continue;
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
        v[n].r = rec;
        v[n].buf = buf;
        v[n].idx = n;
        n++;
        bytes += rec.len + CORE_REC_OVERHEAD;
    }
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
    size_t max = refs_per_frame(c);
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

static void job_pop(session *s)
{
    job *j = &s->jobs[s->headjob];
    if (j->kind == JOB_IDS && s->queued_ids >= j->nids)
        s->queued_ids -= j->nids;
    free(j->ids);
    free(j->buf);
    for (size_t k = 0; k < j->nnames; k++)
        free(j->names[k]);
    free(j->names);
    s->headjob++;
    if (s->headjob == s->njobs)
        s->headjob = s->njobs = 0;
}

static void serve_pump(guts_core *c, session *s)
{
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

/* ---- Events -------------------------------------------------------------- */

void sync_on_open(guts_core *c, uint32_t stream, const guts_addr *addr, int outgoing)
{
    session *s = sync_find(c, stream);
    if (outgoing) {
        if (!s || s->kind != SESS_PULL || s->phase != PHASE_CONNECTING) {
            core_close_stream(c, stream);
            return;
        }
        s->last_active = c->now;
        pull_open(c, s);
        return;
    }
    if (s || c->left) {
        core_close_stream(c, stream);
        return;
    }
    /* no slot yet: serve_key takes one when the peer asks for something */
    s = sess_new(c, stream, SESS_SERVE, addr);
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
    s->last_active = c->now;
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
            if (!s->outstanding) {
                sync_end(c, s, 0, 1, "unexpected DONE");
            } else {
                s->outstanding--;
                advance(c, s);
            }
        } else if (m.type == GUTS_MSG_ERROR) {
            s->busy = m.u.error.code == GUTS_EAGAIN;
            s->retry_after = m.u.error.retry_after_ms;
            sync_end(c, s, 0, 1, m.u.error.text ? m.u.error.text : "peer error");
        } else {
            sync_end(c, s, 0, 1, "unexpected message");
        }
    } else {
        if (m.type == GUTS_MSG_HELLO && s->got_hello) {
            /* the puller starts its next pull on this stream: the last one
             * must be fully answered (its DONEs all sent) */
            if (s->headjob < s->njobs || s->big_active || s->headahead < s->nahead) {
                serve_error(c, s, GUTS_EPROTO, "HELLO before the last request was answered");
            } else {
                uint32_t stream = s->stream;
                guts_addr addr = s->addr;
                sync_end(c, s, 1, 0, NULL);
                s = sess_new(c, stream, SESS_SERVE, &addr);
                if (!s) {
                    core_close_stream(c, stream);
                } else {
                    s->phase = PHASE_OBJECTS;
                    s->got_hello = 1;
                    send_hello(c, s);
                }
            }
        } else if (m.type == GUTS_MSG_HELLO) {
            s->got_hello = 1;
            if (!s->said_hello)
                send_hello(c, s);
        } else if (m.type == GUTS_MSG_RECON) {
            serve_recon(c, s, &m.u.recon);
        } else if (m.type == GUTS_MSG_WANT) {
            serve_want(c, s, &m.u.want);
        } else if (m.type == GUTS_MSG_OBJECT_CHUNK) {
            serve_resume(c, s, &m.u.chunk);
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
    s->last_active = c->now;
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
