/* node_announce.c - what a node tells the group, and what it makes of what
 * it hears.
 *
 * Sending. Every announce is one datagram of at most cfg.dgram_max bytes
 * (GUTS_DGRAM_MAX, less the seal's overhead in a keyed cluster).
 * Repositories are paged: those changed since the last announce go first,
 * then a round-robin cursor walks the rest, so with R repositories every one
 * is announced at least every ceil(R / per-page) announces. Entries are
 * packed with the codec's exact size helpers; what room is left is shared
 * among the page's entries as blooms of each repository's most recent ids
 * (the "what's new" digest; a bloom of a whole large repository would never
 * fit, and the stream reconciliation does the rest).
 *
 * The interval follows RTCP (RFC 3550 section 6.2): the whole group's
 * announces stay within group_budget bytes and CORE_GROUP_RATE datagrams
 * per second, so interval = max(base, members * average size / budget,
 * members / rate), members being the sketch's estimate (node_members.c),
 * each one randomised in [0.5, 1.5] of that so members do not synchronise,
 * and reconsidered when due (RFC 3550 section 6.3.6: if the interval grew
 * meanwhile, wait for its new end). The first interval. Until its first
 * regular announce a node draws from [1, 1.5] instead: a group that
 * starts together cannot know its size (a node counts the members heard,
 * and only those that announced can be heard), so every estimate then
 * trails the announces heard, and with reconsideration the members with
 * the shortest draws speak first, as fast as the estimates grow: the
 * group announced at CORE_GROUP_RATE / 0.5 until every member had spoken
 * once (40 a second at 10,000 and 30,000 nodes, ~N / 40 s long). From 1
 * it is CORE_GROUP_RATE. A change to a repository (a local write
 * or a completed fetch) asks for an announce at once, rate-limited to one
 * per CORE_ANNOUNCE_GAP_MS: nodes that fetched an update announce it, so
 * others can pull from them and not only from the writer (epidemic
 * spread); unless the state is redundant (Trickle, RFC 6206: see worth()).
 *
 * Receiving: the pull decision. For each repository entry of a peer:
 *  - we lack the repository: if cfg.repo_wanted takes it (default: all)
 *    and the peer has something, track it and pull soon (the puller then
 *    asks for everything with one ALL item); it is created in the store
 *    only when the pull brings an object or a ref (node_store.c, "Lazy
 *    creation"). Otherwise ignore it, so a peer cannot make us store what
 *    the operator did not ask for;
 *  - fingerprints equal and refs digests equal: in sync, nothing happens;
 *  - evidence that the peer has objects we lack: pull soon (after a random
 *    stagger). Evidence is: its count is larger than ours; or its refs digest
 *    differs while the objects agree; or its bloom covers all its objects and
 *    enough of ours test absent: at least count_peer - (count_ours - absent)
 *    of its objects are not ours (absent ones are surely not common, as a
 *    bloom has no false negatives);
 *  - otherwise (the sets differ but we may be the one ahead): an
 *    anti-entropy pull after a few intervals (Demers et al. 1987), so
 *    convergence never rests on the heuristic alone.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

/* Our own ids tested against a peer's bloom for the evidence rule: beyond
 * this count the rule is skipped (anti-entropy covers it). */
#define ANNOUNCE_EVIDENCE_MAX 1024

uint32_t announce_interval(guts_core *c)
{
    uint64_t members = members_estimate(c);
    /* average size of the announces sent and heard (RTCP's avg_rtcp_size);
     * full datagrams when nothing is known yet */
    uint64_t avg = c->ann_count ? c->ann_bytes / c->ann_count : c->cfg.dgram_max;
    uint64_t iv = members * avg * 1000 / c->cfg.group_budget;
    uint64_t by_rate = members * 1000 / CORE_GROUP_RATE;
    if (iv < by_rate) iv = by_rate;
    if (iv < c->cfg.interval_ms) iv = c->cfg.interval_ms;
    if (iv > 600000) iv = 600000; /* ten minutes: beyond any group we expect */
    return (uint32_t)iv;
}

/* The factor of the interval that starts now, per mille (see "The first
 * interval" above). */
static void jitter(guts_core *c)
{
    if (c->ann_settled)
        c->ann_factor = 500 + (uint32_t)core_rand_below(c, 1001);
    else
        c->ann_factor = 1000 + (uint32_t)core_rand_below(c, 501);
}

void announce_start(guts_core *c)
{
    jitter(c);
    c->ann_base = c->up_since = c->now;
    c->next_announce = c->now + (uint64_t)c->cfg.interval_ms * c->ann_factor / 1000;
    c->hello_at = c->now + CORE_HELLO_MS / 2 + core_rand_below(c, CORE_HELLO_MS / 2);
}

int announce_hello_due(guts_core *c)
{
    if (!c->hello_at || c->now < c->hello_at) return 0;
    c->hello_at = 0;
    if (members_estimate(c) >= CORE_HELLO_GROUP) return 0;
    c->ctr.hellos++;
    return 1;
}

_Static_assert(CORE_REPLY_GROUP < CORE_VIEW_MAX, "a full view's group is not small");

void announce_newcomer(guts_core *c)
{
    /* a view that is not full holds the whole group: exact, and it
     * forgets members that left, where the sketch remembers an epoch */
    if (c->npeers >= CORE_VIEW_MAX) {
        /* members_estimate is over CORE_VIEW_MAX, so over CORE_REPLY_GROUP:
         * no answer, and only what asking leaves in the sketch's cache */
        members_estimate_touch(c);
        return;
    }
    uint64_t members = c->npeers + 1;
    if (members > CORE_REPLY_GROUP || c->now < c->up_since + c->cfg.interval_ms ||
        c->heard_now + c->heard_prev > CORE_REPLY_QUIET ||
        core_rand_below(c, members) >= CORE_REPLY_K)
        return;
    /* at once, and not held back by the gap after our last announce: the
     * newcomer waits for it to pull (its hello went out 50-100 ms after
     * its start, CORE_HELLO_MS), and a quiet small group sends at most a
     * few answers per newcomer (see CORE_REPLY_K) */
    c->soon_at = c->now;
    c->announce_soon = 1;
    c->reply_soon = REPLY_NEWCOMER;
}

/* Announces heard by multicast of r's current state (see
 * CORE_SEEN_STATES and CORE_ANNOUNCE_REDUNDANT). */
static uint32_t heard_same(const lrepo *r)
{
    for (int i = 0; i < CORE_SEEN_STATES; i++)
        if (r->seen[i].n && guts_fp_eq(r->seen[i].fp, r->info.fp) &&
            r->seen[i].rdigest == r->info.refs_digest.lo)
            return r->seen[i].n_group;
    return 0;
}

/* A state ahead of r's was announced lately: ours is on its way there
 * (objects fetched, refs not yet; or a pull that ended half way). */
static int heard_ahead(const guts_core *c, const lrepo *r)
{
    for (int i = 0; i < CORE_SEEN_STATES; i++) {
        const seen_state *x = &r->seen[i];
        if (x->n && x->at + 2 * (uint64_t)c->cfg.interval_ms >= c->now &&
            announce_ahead(r, x->objects, x->fp, x->rdigest))
            return 1;
    }
    return 0;
}

/* Announcing r's state now would tell the group something: fewer than
 * CORE_ANNOUNCE_REDUNDANT peers announced it and it is not behind a state
 * heard lately; or our last announce had these objects with other refs
 * (peers would take that for refs we have and they lack, and pull us for
 * nothing until corrected). */
static int worth(const guts_core *c, const lrepo *r)
{
    if (guts_fp_eq(r->ann_fp, r->info.fp)) return 1;
    return heard_same(r) < CORE_ANNOUNCE_REDUNDANT && !heard_ahead(c, r);
}

/* r holds writes not yet on the disk (the driver's flusher has them): it
 * is not announced until they are, so no peer counts on a state a crash
 * of this machine could take back. Its changed mark waits meanwhile. */
static int unsynced(const guts_core *c, const lrepo *r)
{
    return c->real.unsynced && c->real.unsynced(c->real.ctx, r->key) == 1;
}

int announce_due(guts_core *c)
{
    /* news no one announced yet (what a node holds at start, before it
     * heard others announce the same) is not postponed */
    for (size_t i = 0; i < c->nrepos; i++) {
        const lrepo *r = c->repos[i];
        if (r->changed && !r->unstored && (r->info.objects || r->info.refs_digest.lo) &&
            worth(c, r) && !unsynced(c, r))
            return 1;
    }
    uint64_t iv = announce_interval(c);
    uint64_t due = c->ann_base + iv * c->ann_factor / 1000;
    if (due <= c->now) return 1;
    c->next_announce = due;
    return 0;
}

int announce_ahead(const lrepo *r, uint64_t objects, guts_fp fp, uint64_t rdigest)
{
    if (guts_fp_eq(fp, r->info.fp)) return rdigest != r->info.refs_digest.lo;
    return objects > r->info.objects;
}

void announce_changed(guts_core *c, lrepo *r)
{
    r->changed = 1;
    if (!worth(c, r)) return; /* it waits for the regular announce */
    /* the first to announce a state does so at once; others listen first */
    uint64_t at = c->now;
    if (heard_same(r)) at += 1 + core_rand_below(c, CORE_ANNOUNCE_LISTEN_MS);
    if (!c->announce_soon || at < c->soon_at) c->soon_at = at;
    c->announce_soon = 1;
}

uint64_t announce_gap_end(const guts_core *c)
{
    if (!c->ctr.dgrams_out || c->reply_soon == REPLY_NEWCOMER) return 0;
    return c->last_announce + (c->sweep_left ? CORE_SWEEP_GAP_MS : CORE_ANNOUNCE_GAP_MS);
}

int announce_soon_due(guts_core *c)
{
    if (!c->announce_soon || c->now < c->soon_at || c->now < announce_gap_end(c)) return 0;
    if (c->reply_soon || c->sweep_left) return 1;
    for (size_t i = 0; i < c->nrepos; i++)
        if (c->repos[i]->changed && worth(c, c->repos[i]) && !unsynced(c, c->repos[i])) return 1;
    c->announce_soon = 0; /* others said it all meanwhile (or it waits for its flush) */
    return 0;
}

typedef struct entry {
    lrepo *r;
    guts_bloom bloom;
} entry;

static void fill_entry(guts_announce_repo *e, const lrepo *r)
{
    memset(e, 0, sizeof(*e));
    e->key = r->key;
    e->objects = r->info.objects;
    e->fp = r->info.fp;
    e->refs_digest = r->info.refs_digest.lo;
}

/* Give entry e a bloom of r's newest ids that fits in room bytes. */
static void add_bloom(guts_core *c, guts_announce_repo *e, entry *en, size_t room)
{
    e->bloom_seed = core_rand(c);
    e->bloom_k = 7;
    /* size for the largest covered count (its encoding only shrinks) */
    e->bloom_covered =
        en->r->info.objects > UINT32_MAX ? UINT32_MAX : (uint32_t)en->r->info.objects;
    size_t bytes = guts_announce_bloom_room(e, room);
    e->bloom_covered = 0;
    if (bytes == 0 || en->r->info.objects == 0) return;
    size_t avail = bytes * 8 / GUTS_BLOOM_BITS_PER_ELEM + 1;
    if (avail > en->r->info.objects) avail = (size_t)en->r->info.objects;
    guts_id *ids = malloc(avail * sizeof(guts_id));
    if (!ids) return;
    size_t got = 0;
    if (c->st.recent(c->st.ctx, en->r->key, avail, ids, &got) != GUTS_OK || got == 0) {
        free(ids);
        return;
    }
    size_t covered;
    uint32_t nbits;
    uint8_t k;
    guts_bloom_fit(bytes, got, &covered, &nbits, &k);
    if (covered == 0 || nbits == 0 ||
        guts_bloom_make(&en->bloom, nbits / 8, 8, e->bloom_seed) != GUTS_OK) {
        free(ids);
        return;
    }
    en->bloom.k = k;
    for (size_t i = 0; i < covered; i++)
        guts_bloom_add(&en->bloom, ids[i].b, GUTS_ID_LEN);
    free(ids);
    e->bloom_covered = (uint32_t)covered;
    e->bloom_k = k;
    e->bloom_nbits = en->bloom.nbits;
    e->bloom_bits = en->bloom.bits;
    /* the k field may change the size by a byte: recheck */
    if (guts_announce_repo_size(e) > room) {
        e->bloom_covered = 0;
        e->bloom_nbits = 0;
        e->bloom_bits = NULL;
        guts_bloom_free(&en->bloom);
    }
}

/* Encode an announce into dgram (GUTS_DGRAM_MAX bytes): changed repositories first, then the
 * round robin from c->rr, blooms in the room left. commit: this is the
 * regular announce (the cursor moves on, the changed marks are cleared);
 * else an answer, which leaves both as they were. Returns its length, 0
 * when not encoded; *pages: the pages it names. */
static size_t announce_build(guts_core *c, uint32_t iv, int commit, uint16_t *pages,
                             uint8_t *dgram)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_ANNOUNCE);
    guts_msg_announce *a = &m.u.announce;
    a->incarnation = c->cfg.incarnation;
    a->port = c->cfg.tcp_port;
    a->interval_ms = iv;

    guts_announce_repo reps[GUTS_ANNOUNCE_REPOS_MAX];
    entry ens[GUTS_ANNOUNCE_REPOS_MAX];
    size_t n = 0, used = GUTS_ANNOUNCE_HEAD_MAX;
    memset(ens, 0, sizeof(ens));
    /* changed repositories first, then round robin */
    size_t start = c->rr, rr = c->rr;
    for (int pass = 0; pass < 2 && n < GUTS_ANNOUNCE_REPOS_MAX; pass++) {
        for (size_t i = 0; i < c->nrepos && n < GUTS_ANNOUNCE_REPOS_MAX; i++) {
            size_t idx = pass == 0 ? i : (start + i) % c->nrepos;
            lrepo *r = c->repos[idx];
            if (r->unstored || (pass == 0 && !r->changed) || unsynced(c, r)) continue;
            int dup = 0;
            for (size_t j = 0; j < n; j++)
                dup |= ens[j].r == r;
            if (dup) continue;
            fill_entry(&reps[n], r);
            size_t sz = guts_announce_repo_size(&reps[n]);
            if (used + sz > c->cfg.dgram_max) goto full;
            used += sz;
            ens[n].r = r;
            if (pass == 1) rr = (idx + 1) % c->nrepos;
            n++;
        }
    }
full:
    /* share the room left as blooms, first entries first */
    for (size_t i = 0; i < n; i++) {
        size_t room = c->cfg.dgram_max - used;
        size_t share = room / (n - i);
        size_t base = guts_announce_repo_size(&reps[i]);
        add_bloom(c, &reps[i], &ens[i], base + share);
        used += guts_announce_repo_size(&reps[i]) - base;
    }
    a->nrepos = (uint32_t)n;
    a->repos = reps;
    size_t per = n ? n : 1;
    a->pages = (uint16_t)(c->nrepos ? (c->nrepos + per - 1) / per : 1);
    a->page = (uint16_t)(c->nrepos ? (rr / per) % a->pages : 0);
    *pages = a->pages;
    if (commit) c->rr = rr;
    size_t len = 0;
    int rc = guts_msg_encode(&m, dgram, c->cfg.dgram_max, &len);
    if (rc == GUTS_ETOOBIG) { /* cannot happen with exact sizes; be safe */
        for (size_t i = 0; i < n; i++) {
            reps[i].bloom_nbits = 0;
            reps[i].bloom_covered = 0;
            reps[i].bloom_bits = NULL;
        }
        rc = guts_msg_encode(&m, dgram, c->cfg.dgram_max, &len);
    }
    for (size_t i = 0; i < n; i++)
        guts_bloom_free(&ens[i].bloom);
    if (rc != GUTS_OK || len > c->cfg.dgram_max) {
        core_log(c, GUTS_LOG_ERROR, "announce not encoded: %s", guts_strerror(rc));
        return 0;
    }
    for (size_t i = 0; commit && i < n; i++) {
        ens[i].r->changed = 0;
        ens[i].r->ann_fp = ens[i].r->info.fp;
    }
    return len;
}

void announce_send(guts_core *c, int regular)
{
    c->ann_settled |= regular;
    uint32_t iv = announce_interval(c);
    uint16_t pages = 1;
    /* on the stack, not in the core: core_push copies it, and most members
     * of a large group never send (1.2 KB per core in guts-sim) */
    uint8_t dgram[GUTS_DGRAM_MAX];
    size_t len = announce_build(c, iv, 1, &pages, dgram);
    if (len) {
        guts_core_action act = {
            .kind = GUTS_ACT_SEND_DGRAM, .to_group = 1, .data = dgram, .len = len};
        if (core_push(c, &act) == GUTS_OK) {
            c->ctr.dgrams_out++;
            c->ctr.dgram_bytes_out += len;
            c->ann_bytes += len;
            c->ann_count++;
            if (len > c->ctr.dgram_max_out) c->ctr.dgram_max_out = len;
            reach_copies(c, dgram, len, 1);
        }
    }
    c->last_announce = c->ann_base = c->now;
    jitter(c);
    c->next_announce = c->now + (uint64_t)iv * c->ann_factor / 1000;
    c->ctr.answers += (uint64_t)(c->reply_soon != 0);
    /* a newcomer hears every page of ours soon (CORE_REPLY_*): the
     * answer starts a sweep of the others; any announce is one page of it */
    if (c->reply_soon && pages > 1)
        c->sweep_left = (uint32_t)pages - 1;
    else if (c->sweep_left)
        c->sweep_left--;
    c->announce_soon = c->reply_soon = 0;
    c->hello_at = 0; /* any announce says hello */
    c->soon_at = c->now;
    for (size_t i = 0; i < c->nrepos; i++)
        if (c->repos[i]->changed && worth(c, c->repos[i])) c->announce_soon = 1; /* did not fit */
    if (c->sweep_left) c->announce_soon = 1;
}

void announce_answer(guts_core *c, const guts_addr *to)
{
    uint16_t pages;
    uint8_t dgram[GUTS_DGRAM_MAX];
    size_t len = announce_build(c, announce_interval(c), 0, &pages, dgram);
    if (!len) return;
    guts_core_action act = {
        .kind = GUTS_ACT_SEND_DGRAM, .to_group = 0, .addr = *to, .data = dgram, .len = len};
    if (core_push(c, &act) != GUTS_OK) return;
    c->ctr.dgrams_unicast++;
    c->ctr.unicast_answers++;
    c->ctr.dgram_bytes_out += len;
}

/* Schedule a pull of r: urgent ones after a short random stagger (with
 * backoff after failures), others after the anti-entropy delay. An earlier
 * schedule is kept. */
static void schedule(guts_core *c, lrepo *r, int urgent)
{
    uint64_t delay;
    if (urgent) {
        uint64_t win = (uint64_t)c->npeers * CORE_PULL_STAGGER_PER_PEER_MS;
        delay = 1 + core_rand_below(c, win < CORE_PULL_STAGGER_MS ? (win ? win : 1)
                                                                  : CORE_PULL_STAGGER_MS);
        uint32_t f = r->failures < 8 ? r->failures : 8;
        if (f) delay += (uint64_t)250 << f; /* 0.5 s .. 64 s */
    } else {
        uint32_t b =
            r->idle_pulls < CORE_ANTI_ENTROPY_BACKOFF ? r->idle_pulls : CORE_ANTI_ENTROPY_BACKOFF;
        uint64_t iv = ((uint64_t)c->cfg.interval_ms * CORE_ANTI_ENTROPY_INTERVALS) << b;
        delay = iv + core_rand_below(c, iv + 1);
    }
    uint64_t t = c->now + delay;
    if (!r->next_pull || t < r->next_pull) {
        r->next_pull = t;
        r->urgent = urgent;
    }
}

static int differs(const lrepo *r, const peer_repo *pr)
{
    /* a peer with no objects and no refs has nothing to give */
    if (pr->objects == 0 && pr->rdigest == 0) return 0;
    return !guts_fp_eq(pr->fp, r->info.fp) || pr->rdigest != r->info.refs_digest.lo;
}

void announce_consider(guts_core *c, lrepo *r)
{
    if (r->plan) /* a peer that announced it may join a split pull at once */
        r->plan->join_at = c->now;
    int any = 0, urgent = 0;
    for (size_t i = 0; i < c->npeers; i++) {
        peer_repo *pr = members_repo(&c->peers[i], r->key);
        if (!pr || !differs(r, pr)) continue;
        any = 1;
        if (!members_repo_exhausted(pr) &&
            (pr->objects > r->info.objects || guts_fp_eq(pr->fp, r->info.fp)))
            urgent = 1;
    }
    if (any)
        schedule(c, r, urgent);
    else
        r->next_pull = 0;
}

/* Evidence from a peer's bloom that it holds objects we lack (see top). */
static int bloom_evidence(guts_core *c, const lrepo *r, const guts_announce_repo *e)
{
    if (!e->bloom_nbits || e->bloom_covered != e->objects) return 0;
    if (r->info.objects == 0 || r->info.objects > ANNOUNCE_EVIDENCE_MAX) return 0;
    guts_bloom b;
    if (guts_bloom_view(&b, e->bloom_bits, e->bloom_nbits, e->bloom_k, e->bloom_seed)) return 0;
    guts_id *ids = malloc((size_t)r->info.objects * sizeof(guts_id));
    if (!ids) return 0;
    size_t n = 0;
    int ev = 0;
    if (c->st.recent(c->st.ctx, r->key, (size_t)r->info.objects, ids, &n) == GUTS_OK &&
        n == r->info.objects) {
        uint64_t absent = 0;
        for (size_t i = 0; i < n; i++)
            absent += !guts_bloom_has(&b, ids[i].b, GUTS_ID_LEN);
        ev = e->objects + absent > r->info.objects;
    }
    free(ids);
    return ev;
}

/* Count an announce of a state of r (see CORE_ANNOUNCE_REDUNDANT): once we
 * have that state too, it says how many peers announced it already. */
static void note_state(guts_core *c, lrepo *r, const guts_announce_repo *e, int via)
{
    uint32_t group = via == GUTS_VIA_GROUP;
    seen_state *old = &r->seen[0];
    for (int i = 0; i < CORE_SEEN_STATES; i++) {
        seen_state *x = &r->seen[i];
        if (x->n && guts_fp_eq(x->fp, e->fp) && x->rdigest == e->refs_digest) {
            x->n += x->n < UINT32_MAX;
            x->n_group += group && x->n_group < UINT32_MAX;
            x->at = c->now;
            return;
        }
        if (x->at < old->at) old = x;
    }
    old->fp = e->fp;
    old->rdigest = e->refs_digest;
    old->objects = e->objects;
    old->n = 1;
    old->n_group = group;
    old->at = c->now;
}

int announce_behind(const guts_core *c, const guts_msg_announce *a)
{
    for (size_t i = 0; i < c->nrepos; i++) {
        const lrepo *r = c->repos[i];
        if (r->unstored || r->info.objects == 0) continue;
        int named = 0;
        for (uint32_t k = 0; k < a->nrepos && !named; k++) {
            if (strcmp(a->repos[k].key, r->key) != 0) continue;
            named = 1;
            if (a->repos[k].objects < r->info.objects) return 1;
        }
        if (!named && a->pages <= 1) return 1;
    }
    return 0;
}

int announce_on(guts_core *c, const guts_msg *m, const guts_addr *from, int via)
{
    const guts_msg_announce *a = &m->u.announce;
    members_sketch_add(c, &m->sender);
    /* useful: a state we would pull at once (what a full view admits).
     * m came from guts_msg_decode, which refuses an invalid key: the keys
     * are not checked again per recipient. */
    int useful = 0;
    for (uint32_t i = 0; i < a->nrepos; i++) {
        const guts_announce_repo *e = &a->repos[i];
        assert(guts_repo_key_check(e->key) == GUTS_OK);
        if (e->objects == 0 && e->refs_digest == 0) continue;
        lrepo *r = core_repo_find(c, e->key);
        if (r) {
            note_state(c, r, e, via);
            useful |= announce_ahead(r, e->objects, e->fp, e->refs_digest);
        } else {
            useful |= !c->cfg.repo_wanted || c->cfg.repo_wanted(c->cfg.repo_wanted_arg, e->key);
        }
    }
    /* A sender heard by unicast that lacks what we hold enters a full
     * view too: it may hear nobody else (no multicast, and we are the one
     * address it knows), and only a member of the view is answered and
     * named in PEERS. Refused, a node started later on a network without
     * multicast, pointed at a node with a full view, never syncs (guts-sim:
     * 3 of 10 nodes joining 200 at 20 s). */
    if (!useful && via == GUTS_VIA_UNICAST && c->npeers >= CORE_VIEW_MAX)
        useful = announce_behind(c, a);
    int fresh;
    peer *p = members_heard(c, &m->sender, from, via, a->incarnation, a->port, a->interval_ms,
                            useful, &fresh);
    if (!p) return !useful; /* let go; useful: it may have evicted before running out of memory */
    if (fresh) announce_newcomer(c);
    for (uint32_t i = 0; i < a->nrepos; i++) {
        const guts_announce_repo *e = &a->repos[i];
        lrepo *r = core_repo_find(c, e->key);
        /* r's own key: the peer's entry shares it, found without a strcmp */
        members_repo_set(p, r ? r->key : e->key, r, e->objects, e->fp, e->refs_digest);
        if (!r) {
            if (c->cfg.repo_wanted && !c->cfg.repo_wanted(c->cfg.repo_wanted_arg, e->key))
                continue; /* not ours to take (the --repos allowlist) */
            if (e->objects == 0 && e->refs_digest == 0) continue; /* nothing to take */
            /* in the store but not seen by the core yet (an import since
             * the last scan): load it; else track it unstored */
            if (core_repo_load(c, e->key, &r) != GUTS_OK) {
                int rc = core_repo_announced(c, e->key, p, &r);
                if (rc == GUTS_EFULL)
                    continue; /* over a cap: counted; it comes back next announce */
                if (rc) {
                    core_log(c, GUTS_LOG_WARN, "cannot track repository %s: %s", e->key,
                             guts_strerror(rc));
                    continue;
                }
            }
            core_log(c, GUTS_LOG_DEBUG,
                     "repository %s announced; created when a pull brings "
                     "something",
                     e->key);
            schedule(c, r, 1);
            continue;
        }
        if (guts_fp_eq(e->fp, r->info.fp) && e->refs_digest == r->info.refs_digest.lo) continue;
        if (e->objects == 0 && e->refs_digest == 0) continue; /* it has nothing to give */
        if (r->plan) /* it may join a split pull at once (pull_join_due) */
            r->plan->join_at = c->now;
        peer_repo *pr = members_repo(p, r->key);
        int urgent = !(pr && members_repo_exhausted(pr)) &&
                     (e->objects > r->info.objects || guts_fp_eq(e->fp, r->info.fp) ||
                      bloom_evidence(c, r, e));
        schedule(c, r, urgent);
    }
    if (via == GUTS_VIA_UNICAST) reach_answer(c, p, a, from);
    return 0;
}
