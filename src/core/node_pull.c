/* node_pull.c - the puller: which peer to pull a repository from, and the
 * phases of a pull (objects, refs, wants) driven by the reconciliation
 * engine. What it receives is stored by node_pull_recv.c; the session
 * lifecycle and the frame dispatch are in node_sync.c.
 *
 * A first copy (CORE_SPLIT_MIN objects missing or more) is split between
 * peers (pull_plan.h): its first session takes a part of the id space,
 * and the other peers holding the repository join with sessions of their
 * own while parts are free (at once, then every CORE_SPLIT_JOIN_MS). A
 * session reconciles its part's range and takes the next free part when
 * that reconciliation is over; with none free it asks for its held
 * deltas' bases and ends without the refs phase, unless it finished the
 * last part: that one pulls the refs, as a whole pull does.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* A pull of r from peer id runs. */
static int pulling_from(const guts_core *c, const lrepo *r, const guts_node_id *id)
{
    for (size_t i = 0; i < c->nsess; i++) {
        const session *s = c->sess[i];
        if (s->kind == SESS_PULL && memcmp(&s->peer_id, id, sizeof *id) == 0 &&
            strcmp(s->key, r->key) == 0)
            return 1;
    }
    return 0;
}

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
        /* a plan's pulls each go to their own peer, a failed one last */
        if (r->plan && (pulling_from(c, r, &c->peers[i].id) ||
                        (r->pulling && pull_plan_avoids(r->plan, &c->peers[i].id))))
            continue;
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

/* 1 when r's running plan takes another peer now: right after a session
 * started on it or an announce of r was heard (announce_consider), then
 * every CORE_SPLIT_JOIN_MS while no peer was free. */
int pull_join_due(const guts_core *c, const lrepo *r)
{
    return r->plan && r->pulling && c->now >= r->plan->join_at && pull_plan_free_parts(r->plan);
}

void sync_start_pulls(guts_core *c)
{
    if (c->nrepos == 0 || core_store_full(c))
        return;
    size_t pulls, serves;
    uint64_t idle_at;
    sync_glance(c, &pulls, &serves, &idle_at);
    size_t off = (size_t)core_rand_below(c, c->nrepos);
    for (size_t i = 0; i < c->nrepos && pulls < c->cfg.max_sessions; i++) {
        lrepo *r = c->repos[(off + i) % c->nrepos];
        int join = pull_join_due(c, r);
        if (join) {
            r->plan->join_at = c->now + CORE_SPLIT_JOIN_MS;
        } else {
            if (!r->next_pull || r->next_pull > c->now || r->pulling)
                continue;
            r->next_pull = 0;
        }
        peer *p = choose_peer(c, r);
        if (!p)
            continue;
        peer_repo *pr = members_repo(p, r->key);
        uint64_t missing = pr && pr->objects > r->info.objects ? pr->objects - r->info.objects : 0;
        if (!r->plan && missing >= CORE_SPLIT_MIN) {
            if (pull_plan_new(missing, CORE_SPLIT_MANY, &r->plan) != GUTS_OK) {
                r->plan = NULL; /* a whole pull then */
            } else {
                r->plan->stall_ms = CORE_SPLIT_STALL_MS;
                r->plan->first = r->info.objects == 0;
                c->ctr.split_pulls++;
            }
        }
        if (r->plan) /* the next peer may join at once (the next event) */
            r->plan->join_at = c->now;
        session *s = sync_parked_to(c, p);
        if (s && !(s = sync_sess_full(c, s)))
            return;
        int reused = s != NULL;
        if (s) { /* open already, its HELLO sent when it was parked */
            s->kind = SESS_PULL;
            s->started = s->last_active = c->now;
            sync_touched(c);
        } else {
            uint32_t id = c->next_stream;
            c->next_stream = (c->next_stream + 1) & ~GUTS_CORE_STREAM_DRIVER;
            if (c->next_stream == 0)
                c->next_stream = 1;
            s = sync_sess_new(c, id, SESS_PULL, &p->addr);
            if (!s)
                return;
        }
        s->peer_id = p->id;
        s->applied0 = c->ctr.refs_applied;
        strcpy(s->key, r->key);
        s->phase = PHASE_CONNECTING;
        s->expected = missing;
        /* objects agree: only refs differ */
        int agree = pr && guts_fp_eq(pr->fp, r->info.fp);
        if (agree) {
            s->recon_done = 2;
        } else if (r->plan) {
            /* no session holds a part unless it is a join: none is free
             * only when every part is done */
            s->part = pull_plan_take(r->plan, s->stream, &s->nrun);
            if (s->part < 0) {
                pull_plan_free(r->plan);
                r->plan = NULL;
            }
            c->ctr.split_joins += (uint64_t)join;
            s->stall_ms = r->plan ? r->plan->stall_ms : 0;
            sync_touched(c); /* its idle deadline is the stall's */
        }
        r->pulling++;
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
    guts_recon_set set = {s, phase == PHASE_OBJECTS ? sync_objects_scan : sync_refs_scan};
    const guts_recon_item *items;
    size_t n;
    lrepo *r = core_repo_find(c, s->key);
    int rc;
    if (phase == PHASE_OBJECTS && s->part >= 0 && r && r->plan)
        rc = guts_recon_puller_start_range(&s->recon, &set, s->seed, r->plan->depth,
                                           (uint32_t)s->part, s->nrun, &items, &n);
    else
        rc = guts_recon_puller_start(&s->recon, &set, s->seed, &items, &n);
    if (rc)
        return rc;
    rc = send_recon(c, s, phase == PHASE_OBJECTS ? GUTS_SPACE_OBJECTS : GUTS_SPACE_REFS, items,
                    n);
    if (rc)
        return rc;
    s->outstanding++;
    return GUTS_OK;
}

/* s has no part of r's plan left: it takes the next free run; with none
 * free, it waits (part_wait) while the plan's other sessions pull theirs:
 * their objects are the bases of most deltas s holds, and asking s's peer
 * for them now would bring them twice. pull_parts_kick moves it on: to a
 * run given back, or to the held deltas' bases still missing (WANT) once
 * every part is in, after which it ends without the refs phase (the
 * session that finishes the last part pulls them). Returns 1 when s took a
 * run (or ended) or waits. */
static int part_next(guts_core *c, session *s, lrepo *r)
{
    s->part_wait = 0;
    s->part = r->plan ? pull_plan_take(r->plan, s->stream, &s->nrun) : -1;
    if (s->part >= 0) {
        s->norefs = 0;
        int rc = phase_start(c, s, PHASE_OBJECTS);
        if (rc)
            sync_end(c, s, 0, 1, guts_strerror(rc));
        return 1;
    }
    sync_touched(c); /* no part: the whole pull's idle deadline */
    s->norefs = 1;
    s->phase = PHASE_WANTS;
    s->want_mark = UINT64_MAX;
    s->part_wait = r->plan != NULL;
    return s->part_wait;
}

void pull_parts_kick(guts_core *c, lrepo *r)
{
    uint32_t *streams = malloc((c->nsess ? c->nsess : 1) * sizeof *streams);
    size_t n = 0;
    if (!streams)
        return; /* they wait for their idle deadline */
    /* every part in: the deltas each session holds whose bases are stored,
     * over and over (a base may be a delta another session holds), before
     * anyone asks a peer for a base another session brought */
    for (uint64_t got = UINT64_MAX; !r->plan && got != c->ctr.objects_fetched;) {
        got = c->ctr.objects_fetched;
        for (size_t i = 0; i < c->nsess; i++)
            if (c->sess[i]->kind == SESS_PULL && strcmp(c->sess[i]->key, r->key) == 0)
                pull_pend_retry(c, c->sess[i], 1);
    }
    for (size_t i = 0; i < c->nsess; i++)
        if (c->sess[i]->kind == SESS_PULL && c->sess[i]->part_wait &&
            strcmp(c->sess[i]->key, r->key) == 0)
            streams[n++] = c->sess[i]->stream;
    for (size_t i = 0; i < n; i++) {
        session *s = sync_find(c, streams[i]); /* a kick before may have ended it */
        if (!s || !s->part_wait)
            continue;
        if (!part_next(c, s, r))
            pull_advance(c, s);
    }
    free(streams);
}

/* Move the puller on when a phase is complete. */
void pull_advance(guts_core *c, session *s)
{
    assert(s->kind == SESS_PULL);
    if (!s->recon_done || s->outstanding)
        return;
    lrepo *r = core_repo_find(c, s->key);
    if (!r) {
        sync_end(c, s, 0, 1, "repository vanished");
        return;
    }
    if (s->phase == PHASE_OBJECTS && s->part >= 0 && r->plan) {
        pull_plan_done(r->plan, s->part, s->nrun);
        s->part = -1;
        pull_pend_retry(c, s, 0); /* bases another session stored meanwhile */
        if (!pull_plan_complete(r->plan)) {
            if (part_next(c, s, r))
                return;
        } else {
            pull_plan_free(r->plan); /* every part is in: the refs, as a whole pull */
            r->plan = NULL;
            pull_pend_retry(c, s, 1); /* bases stored any other way */
            sync_touched(c);
            pull_parts_kick(c, r); /* the sessions that waited: their held deltas */
        }
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
    if (s->phase == PHASE_WANTS && s->got_objects + s->npend == s->want_mark && !s->norefs) {
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
        pull_pend_wants(c, s, want, GUTS_WANT_MAX, &nwant);
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
        sync_park(c, stream, &addr, &peer_id);
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

void pull_open(guts_core *c, session *s)
{
    assert(s->kind == SESS_PULL && s->phase == PHASE_CONNECTING);
    if (!s->said_hello) /* a parked stream said it when the last pull ended */
        sync_send_hello(c, s);
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

/* A part's reconciliation is over but its objects still stream: ask for
 * the next free part now, so the peer's upload never waits for a round
 * trip between parts (requests are answered in order: the DONEs of the
 * part before come first). Returns -1 when s ended. */
static int part_ahead(guts_core *c, session *s)
{
    lrepo *r = core_repo_find(c, s->key);
    if (s->phase != PHASE_OBJECTS || s->part < 0 || s->prev_part >= 0 || !s->outstanding ||
        !r || !r->plan)
        return 0;
    uint32_t nrun;
    int next = pull_plan_take(r->plan, s->stream, &nrun);
    if (next < 0)
        return 0;
    s->prev_part = s->part;
    s->prev_nrun = s->nrun;
    s->prev_left = s->outstanding;
    s->part = next;
    s->nrun = nrun;
    int rc = phase_start(c, s, PHASE_OBJECTS);
    if (rc) {
        sync_end(c, s, 0, 1, guts_strerror(rc));
        return -1;
    }
    return 0;
}

void pull_recon(guts_core *c, session *s, const guts_msg_recon *m)
{
    assert(s->kind == SESS_PULL);
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
    if (done || n == 0) {
        s->recon_done = 1;
        if (part_ahead(c, s) < 0)
            return;
    }
    pull_advance(c, s);
}

void pull_done(guts_core *c, session *s)
{
    s->outstanding--;
    if (s->prev_part >= 0 && --s->prev_left == 0) {
        lrepo *r = core_repo_find(c, s->key);
        if (r && r->plan)
            pull_plan_done(r->plan, s->prev_part, s->prev_nrun);
        s->prev_part = -1;
        pull_pend_retry(c, s, 0); /* bases another session stored meanwhile */
    }
    pull_advance(c, s);
}
