/* node.c - a guts node's lifecycle, event dispatch and action queue.
 *
 * The core is a plain state machine: every entry point takes `now` from the
 * driver, updates state and appends actions to a queue the driver drains
 * with guts_core_next_action(). Action buffers are copies owned by the
 * queue; they are released at the start of the next event, so a driver may
 * hold an action's data until then. Randomness (announce jitter, pull
 * stagger, peer choice, reconciliation seeds) comes from a xoshiro256**
 * generator seeded from the configuration, so a simulation is a pure
 * function of its seeds.
 *
 * After each event the core computes its next deadline (announce, expiry,
 * scheduled pulls, idle sessions) and emits SET_TIMER when it changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

int guts_addr_eq(const guts_addr *a, const guts_addr *b)
{
    return a->len == b->len && a->len <= GUTS_ADDR_MAX && memcmp(a->b, b->b, a->len) == 0;
}

/* ---- PRNG: splitmix64 seeding xoshiro256** ------------------------------- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t core_rand(guts_core *c)
{
    uint64_t *s = c->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

uint64_t core_rand_below(guts_core *c, uint64_t n)
{
    return n ? core_rand(c) % n : 0;
}

/* ---- Actions ------------------------------------------------------------- */

static void acts_release(guts_core *c)
{
    if (c->headact == 0) return;
    for (size_t i = 0; i < c->headact; i++) {
        free(c->acts[i].buf);
        free(c->acts[i].text);
    }
    memmove(c->acts, c->acts + c->headact, (c->nacts - c->headact) * sizeof(core_act));
    c->nacts -= c->headact;
    c->headact = 0;
    if (c->nacts == 0 && c->capacts > 32) { /* a burst's queue is not kept */
        free(c->acts);
        c->acts = NULL;
        c->capacts = 0;
    }
}

int core_push(guts_core *c, const guts_core_action *a)
{
    if (c->nacts >= CORE_ACTIONS_MAX) return GUTS_EFULL;
    if (c->nacts == c->capacts) {
        size_t nc = c->capacts ? 2 * c->capacts : 4;
        core_act *p = realloc(c->acts, nc * sizeof(core_act));
        if (!p) return GUTS_ENOMEM;
        c->acts = p;
        c->capacts = nc;
    }
    if (a->kind == GUTS_ACT_SEND_DGRAM && a->len > CORE_ENVELOPE_TYPE_AT) {
        /* our own encoding: the type is a positive fixint at a fixed place */
        uint8_t t = a->data[CORE_ENVELOPE_TYPE_AT];
        size_t k = t < GUTS_CORE_DGRAM_KINDS ? t : 0;
        c->ctr.kind_out[k]++;
        c->ctr.kind_bytes_out[k] += a->len;
    }
    core_act *e = &c->acts[c->nacts];
    memset(e, 0, sizeof(*e));
    e->a = *a;
    if (a->data && a->len) {
        e->buf = malloc(a->len);
        if (!e->buf) return GUTS_ENOMEM;
        memcpy(e->buf, a->data, a->len);
        e->a.data = e->buf;
    }
    if (a->text) {
        e->text = strdup(a->text);
        if (!e->text) {
            free(e->buf);
            return GUTS_ENOMEM;
        }
        e->a.text = e->text;
    }
    c->nacts++;
    return GUTS_OK;
}

/* Queue an action whose buffer is already malloc()ed (ownership moves). */
static int push_owned(guts_core *c, guts_core_action *a, uint8_t *buf)
{
    a->data = NULL;
    size_t len = a->len;
    int rc = core_push(c, a);
    if (rc) {
        free(buf);
        return rc;
    }
    core_act *e = &c->acts[c->nacts - 1];
    e->buf = buf;
    e->a.data = buf;
    e->a.len = len;
    return GUTS_OK;
}

void guts_core_release_actions(guts_core *c)
{
    acts_release(c);
}

int guts_core_next_action(guts_core *c, guts_core_action *out)
{
    if (c->headact >= c->nacts) return 0;
    *out = c->acts[c->headact++].a;
    return 1;
}

void core_log(guts_core *c, int level, const char *fmt, ...)
{
    if (c->cfg.no_log) return;
    char line[GUTS_CORE_LOG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    guts_core_action a = {.kind = GUTS_ACT_LOG, .level = level, .text = line};
    core_push(c, &a);
}

const char *guts_core_event_name(int type)
{
    static const char *const names[GUTS_EV_COUNT] = {
        "?", "peer_joined", "peer_left", "repo_added", "ref_updated", "conflict", "pull_failed"};
    return type > 0 && type < GUTS_EV_COUNT ? names[type] : "?";
}

void core_event(guts_core *c, int type, const char *repo, const char *ref, const guts_id *old_id,
                const guts_id *new_id, const guts_node_id *peer, const char *detail)
{
    if (!(c->cfg.events >> type & 1)) return;
    guts_core_event *e = calloc(1, sizeof *e);
    if (!e) return;
    e->type = type;
    if (repo) snprintf(e->repo, sizeof e->repo, "%s", repo);
    if (ref) snprintf(e->ref, sizeof e->ref, "%s", ref);
    if (old_id) e->old_id = *old_id;
    if (new_id) e->new_id = *new_id;
    if (peer) e->peer = *peer;
    if (detail) snprintf(e->detail, sizeof e->detail, "%s", detail);
    guts_core_action a = {.kind = GUTS_ACT_EVENT, .len = sizeof *e};
    push_owned(c, &a, (uint8_t *)e);
}

void core_msg_init(guts_core *c, guts_msg *m, int type)
{
    memset(m, 0, sizeof(*m));
    m->type = (uint8_t)type;
    m->version = GUTS_WIRE_VERSION;
    m->sender = c->cfg.node_id;
}

int core_send_frame(guts_core *c, uint32_t stream, const guts_msg *msg)
{
    size_t sz;
    int rc = guts_msg_size(msg, &sz);
    if (rc) return rc;
    if (sz > c->cfg.frame_max) return GUTS_ETOOBIG;
    uint8_t *buf = malloc(sz + GUTS_FRAME_HDR);
    if (!buf) return GUTS_ENOMEM;
    size_t len;
    rc = guts_msg_encode_frame(msg, buf, sz + GUTS_FRAME_HDR, &len);
    if (rc) {
        free(buf);
        return rc;
    }
    guts_core_action a = {.kind = GUTS_ACT_SEND_FRAME, .stream = stream, .len = len};
    c->ctr.frames_out++;
    c->ctr.frame_bytes_out += len;
    if (msg->type != GUTS_MSG_OBJECTS && msg->type != GUTS_MSG_OBJECT_CHUNK)
        c->ctr.digest_bytes_out += len;
    return push_owned(c, &a, buf);
}

void core_close_stream(guts_core *c, uint32_t stream)
{
    guts_core_action a = {.kind = GUTS_ACT_CLOSE_STREAM, .stream = stream};
    core_push(c, &a);
}

/* ---- Timers -------------------------------------------------------------- */

static uint64_t next_deadline(guts_core *c)
{
    uint64_t t = c->next_announce;
    if (c->hello_at && c->hello_at < t) t = c->hello_at;
    if (c->announce_soon) {
        uint64_t s = announce_gap_end(c);
        if (s < c->soon_at) s = c->soon_at;
        if (s < t) t = s;
    }
    uint64_t e = members_next_expiry(c);
    if (e && e < t) t = e;
    e = probe_next(c);
    if (e && e < t) t = e;
    /* With every pull slot taken, a due pull waits for a pull to end (an
     * event, which settles again), not for a timer: arming one at now + 1
     * woke a node syncing 1,000 repositories every millisecond. */
    size_t pulls, serves;
    uint64_t idle;
    sync_glance(c, &pulls, &serves, &idle);
    if (idle < t) t = idle;
    for (size_t i = 0; i < c->nrepos && pulls < c->cfg.max_sessions; i++) {
        uint64_t p = c->repos[i]->next_pull;
        if (p && core_store_full(c) && p < c->full_retry)
            p = c->full_retry; /* no pull starts before */
        if (p && !c->repos[i]->pulling && p < t) t = p;
        if (c->repos[i]->plan && c->repos[i]->pulling && pull_plan_free_parts(c->repos[i]->plan) &&
            c->repos[i]->plan->join_at < t)
            t = c->repos[i]->plan->join_at;
    }
    if (t <= c->now) t = c->now + 1;
    return t;
}

/* Work common to the end of every event: due timers, then SET_TIMER. */
static void settle(guts_core *c)
{
    if (c->left) return;
    members_expire(c);
    probe_tick(c);
    sync_idle(c);
    int due = c->now >= c->next_announce && announce_due(c);
    if (due || announce_hello_due(c) || announce_soon_due(c)) announce_send(c, due);
    sync_start_pulls(c);
    uint64_t t = next_deadline(c);
    if (t != c->next_timer_sent) {
        guts_core_action a = {.kind = GUTS_ACT_SET_TIMER, .at = t};
        if (core_push(c, &a) == GUTS_OK) c->next_timer_sent = t;
    }
    c->settle_at = t == c->next_timer_sent ? t : 0; /* unarmed: the next settle is whole */
}

/* Quiet announces. Most datagrams a core of a large group receives are
 * announces of senders outside its full view that it lets go (a regular
 * announce every 1 / CORE_GROUP_RATE s, from anyone: at 10,000 nodes,
 * 99% of them). They touch the group-size sketch and the counts of states
 * heard, and no deadline of settle's: before the earliest one the last
 * whole settle found, it would only tick the sketch's epoch (in
 * members_expire; the rest of its work is gated by those deadlines, and
 * the pulls waiting for a free slot wait for a session's event), and
 * draw its random start of the pulls. Half of guts-sim's events at
 * 10,000 nodes were such settles (issue 19). */
static void settle_quiet(guts_core *c)
{
    if (c->left || !c->settle_at || c->now >= c->settle_at) {
        settle(c);
        return;
    }
    members_expire(c);
    /* the draw sync_start_pulls makes on every settle, nothing due or
     * not: the random stream, and so the run, stay what they were */
    if (c->nrepos && !core_store_full(c))
        (void)core_rand_below(c, c->nrepos);
}

static void enter(guts_core *c, uint64_t now)
{
    acts_release(c);
    if (now > c->now) c->now = now;
    if (!c->started) {
        c->started = 1;
        announce_start(c);
    }
}

/* ---- Lifecycle ----------------------------------------------------------- */

int guts_core_new(const guts_core_config *cfg, guts_core **out)
{
    if (!cfg || !cfg->store || !out) return GUTS_EINVAL;
    const guts_core_store *s = cfg->store;
    if (!s->repos || !s->create || !s->info || !s->ids || !s->has || !s->get || !s->put ||
        !s->recent || !s->refs || !s->ref_get || !s->refs_put || !s->read || !s->stage_write ||
        !s->stage_list || !s->stage_drop)
        return GUTS_EINVAL;
    guts_core *c = calloc(1, sizeof(guts_core));
    if (!c) return GUTS_ENOMEM;
    c->cfg = *cfg;
    c->real = *cfg->store;
    core_store_wrap(c);
    c->cfg.store = &c->st;
    if (cfg->nseeds > GUTS_CORE_SEEDS_MAX || (cfg->nseeds && !cfg->seeds)) {
        free(c);
        return GUTS_EINVAL;
    }
    if (cfg->nseeds) {
        c->seeds = malloc(cfg->nseeds * sizeof(guts_addr));
        c->seed_sent = calloc(cfg->nseeds, sizeof(uint64_t));
        if (!c->seeds || !c->seed_sent) {
            free(c->seeds);
            free(c->seed_sent);
            free(c);
            return GUTS_ENOMEM;
        }
        memcpy(c->seeds, cfg->seeds, cfg->nseeds * sizeof(guts_addr));
    }
    c->cfg.seeds = NULL; /* copied: c->seeds */
    if (!c->cfg.learned_max) c->cfg.learned_max = GUTS_CORE_LEARNED_DEFAULT;
    if (c->cfg.learned_max > GUTS_CORE_LEARNED_MAX) c->cfg.learned_max = GUTS_CORE_LEARNED_MAX;
    if (!c->cfg.interval_ms) c->cfg.interval_ms = GUTS_CORE_INTERVAL_DEFAULT;
    if (!c->cfg.expiry_missed) c->cfg.expiry_missed = GUTS_CORE_EXPIRY_DEFAULT;
    if (!c->cfg.group_budget) c->cfg.group_budget = GUTS_CORE_GROUP_BUDGET_DEFAULT;
    if (!c->cfg.frame_max) c->cfg.frame_max = GUTS_FRAME_MAX_DEFAULT;
    /* Frames must hold at least one chunk plus its envelope. */
    if (c->cfg.frame_max < 64 * 1024) c->cfg.frame_max = 64 * 1024;
    if (!c->cfg.max_sessions) c->cfg.max_sessions = GUTS_CORE_SESSIONS_DEFAULT;
    if (!c->cfg.obj_max || c->cfg.obj_max > GUTS_OBJ_MAX_DEFAULT)
        c->cfg.obj_max = GUTS_OBJ_MAX_DEFAULT;
    if (!c->cfg.remote_repos_max) c->cfg.remote_repos_max = GUTS_CORE_REMOTE_REPOS_DEFAULT;
    if (!c->cfg.peer_repos_max) c->cfg.peer_repos_max = GUTS_CORE_PEER_REPOS_DEFAULT;
    /* An announce needs its head and at least one repository entry; below
     * 512 bytes a datagram holds too little to be worth sending. */
    if (!c->cfg.dgram_max || c->cfg.dgram_max > GUTS_DGRAM_MAX) c->cfg.dgram_max = GUTS_DGRAM_MAX;
    if (c->cfg.dgram_max < 512) c->cfg.dgram_max = 512;
    uint64_t x = cfg->seed ^ 0x6775747363307265ull;
    for (int i = 0; i < 4; i++)
        c->rng[i] = guts_splitmix64(&x);
    c->next_stream = 1;
    c->kmv_seed = core_rand(c);
    c->st.repos(c->st.ctx, core_repo_rescan_cb, c);
    *out = c;
    return GUTS_OK;
}

void guts_core_free(guts_core *c)
{
    if (!c) return;
    sync_free_all(c);
    c->headact = c->nacts;
    acts_release(c);
    free(c->acts);
    while (c->npeers)
        members_remove(c, c->npeers - 1, NULL);
    free(c->peers);
    free(c->pindex);
    reach_free(c);
    for (size_t i = 0; i < c->nrepos; i++) {
        repo_free_state(c->repos[i]);
        free(c->repos[i]);
    }
    free(c->repos);
    free(c->sess);
    free(c->sidx);
    guts_idset_free(&c->refused);
    guts_idset_free(&c->damaged);
    free(c->seeds);
    free(c->seed_sent);
    free(c);
}

/* ---- Events -------------------------------------------------------------- */

/* A decoded datagram of len bytes. Returns 1 when it changed nothing
 * settle reads (see settle_quiet). */
static int on_msg(guts_core *c, const guts_addr *from, int via, const guts_msg *m, size_t len)
{
    if (memcmp(&m->sender, &c->cfg.node_id, sizeof(guts_node_id)) == 0)
        return 1; /* our own, looped back */
    c->last_rx = c->now;
    size_t k = m->type < GUTS_CORE_DGRAM_KINDS ? (size_t)m->type : 0;
    c->ctr.kind_in[k]++;
    c->ctr.kind_bytes_in[k] += len;
    if (m->type == GUTS_MSG_ANNOUNCE) {
        c->ann_bytes += len;
        c->ann_count++;
        if (c->now >= c->heard_sec + 1000) {
            c->heard_prev = c->now < c->heard_sec + 2000 ? c->heard_now : 0;
            c->heard_now = 0;
            c->heard_sec = c->now;
        }
        c->heard_now++;
        return announce_on(c, m, from, via);
    } else if (m->type == GUTS_MSG_PEERS) {
        reach_on_peers(c, m, from);
    } else if (m->type == GUTS_MSG_PROBE || m->type == GUTS_MSG_ACK ||
               m->type == GUTS_MSG_DEAD || m->type == GUTS_MSG_RELEASE) {
        probe_on(c, m, from);
    } else if (m->type == GUTS_MSG_LEAVE) {
        peer *p = members_find(c, &m->sender);
        if (p && m->u.leave.incarnation >= p->inc) {
            sync_abort_peer(c, &p->addr);
            members_remove(c, (size_t)(p - c->peers), "left");
        }
    } else {
        c->ctr.dgrams_unknown++; /* a stream message sent as a datagram */
        return 1;
    }
    return 0;
}

void guts_core_on_datagram(guts_core *c, uint64_t now, const guts_addr *from, int via,
                           const uint8_t *buf, size_t len)
{
    enter(c, now);
    c->ctr.dgrams_in++;
    int quiet = 1; /* what is dropped is only counted */
    if (len > GUTS_DGRAM_DROP) {
        c->ctr.dgrams_dropped++;
        goto out;
    }
    if (c->left) goto out;
    guts_msg m;
    int rc = guts_msg_decode(buf, len, &m);
    if (rc == GUTS_EVERSION) {
        c->ctr.dgrams_version++;
        goto out;
    }
    if (rc == GUTS_ENOTFOUND) {
        c->ctr.dgrams_unknown++;
        goto out;
    }
    if (rc) {
        c->ctr.dgrams_malformed++;
        goto out;
    }
    quiet = on_msg(c, from, via, &m, len);
    guts_msg_free(&m);
out:
    if (quiet)
        settle_quiet(c);
    else
        settle(c);
}

void guts_core_on_msg(guts_core *c, uint64_t now, const guts_addr *from, int via,
                      const guts_msg *m, size_t len)
{
    enter(c, now);
    c->ctr.dgrams_in++;
    int quiet = 1;
    if (len > GUTS_DGRAM_DROP)
        c->ctr.dgrams_dropped++;
    else if (!c->left)
        quiet = on_msg(c, from, via, m, len);
    if (quiet)
        settle_quiet(c);
    else
        settle(c);
}

void guts_core_on_stream_open(guts_core *c, uint64_t now, uint32_t stream, const guts_addr *peer,
                              int outgoing)
{
    enter(c, now);
    sync_on_open(c, stream, peer, outgoing);
    settle(c);
}

void guts_core_on_frame(guts_core *c, uint64_t now, uint32_t stream, const uint8_t *buf, size_t len)
{
    enter(c, now);
    c->ctr.frames_in++;
    sync_on_frame(c, stream, buf, len);
    settle(c);
}

void guts_core_on_stream_writable(guts_core *c, uint64_t now, uint32_t stream)
{
    enter(c, now);
    sync_on_writable(c, stream);
    settle(c);
}

void guts_core_on_stream_closed(guts_core *c, uint64_t now, uint32_t stream)
{
    enter(c, now);
    sync_on_closed(c, stream);
    settle(c);
}

void guts_core_on_timer(guts_core *c, uint64_t now)
{
    enter(c, now);
    c->next_timer_sent = 0; /* the driver's timer fired: re-arm */
    settle(c);
}

void guts_core_on_local_change(guts_core *c, uint64_t now, const char *key)
{
    enter(c, now);
    if (key) {
        lrepo *r;
        core_repo_load(c, key, &r);
    } else {
        c->st.repos(c->st.ctx, core_repo_rescan_cb, c);
        for (size_t i = 0; i < c->nrepos; i++)
            core_repo_refresh(c, c->repos[i]);
    }
    /* a repository new to the core is news too */
    for (size_t i = 0; i < c->nrepos; i++)
        if (c->repos[i]->changed && !c->repos[i]->unstored && !c->announce_soon)
            announce_changed(c, c->repos[i]);
    settle(c);
}

void guts_core_leave(guts_core *c, uint64_t now)
{
    enter(c, now);
    if (c->left) return;
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_LEAVE);
    m.u.leave.incarnation = c->cfg.incarnation;
    size_t len;
    uint8_t dgram[GUTS_DGRAM_MAX]; /* core_push copies it */
    if (guts_msg_encode(&m, dgram, sizeof(dgram), &len) == GUTS_OK) {
        guts_core_action a = {
            .kind = GUTS_ACT_SEND_DGRAM, .to_group = 1, .data = dgram, .len = len};
        core_push(c, &a);
        c->ctr.dgrams_out++;
        c->ctr.dgram_bytes_out += len;
        reach_copies(c, dgram, len, 0);
    }
    sync_free_all(c);
    c->left = 1;
}
