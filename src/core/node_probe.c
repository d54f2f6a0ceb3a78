/* node_probe.c - failure detection: probing the view, DEAD notices.
 *
 * Announces alone notice a dead peer only after expiry_missed of its
 * intervals, and the interval grows with the group (500 s at 10,000
 * nodes). So every node probes the peers of its own view by unicast, SWIM
 * style (Das et al. 2002): a round sends PROBE, and again every
 * CORE_PROBE_RETRY_MS while no ACK came, CORE_PROBE_TRIES times in all;
 * a peer that answered none of them and sent nothing meanwhile is dead,
 * provided this node itself
 * heard some datagram during the round (Lifeguard's local health, Dadgar
 * et al. 2018: a node cut off from the network declares nobody dead). The
 * prober drops it and multicasts DEAD CORE_DEAD_COPIES times; a node that
 * holds the peer confirms it with a quick round of its own (PROBEs CORE_PROBE_CONFIRM_MS apart)
 * and drops it if that goes unanswered too, sending no notice; the peer
 * itself, if alive after all, answers with an announce.
 *
 * Pace. Views are partial and skewed: in a large group the first members
 * heard are in almost every view, most members in none. Each peer is
 * probed by every node that holds it, so the peer itself spaces their
 * rounds: it hands out turns CORE_PROBE_TARGET_MS apart, and its ACK tells
 * the prober to start its next round at the first free turn at least one
 * target ahead, or past the least wait the prober put in its PROBE (its
 * own bound: at most one round per CORE_PROBE_SPACING_MS on average over
 * its view). The holders then take turns, one round per target in all,
 * however many they are, and after a crash the next round is due within
 * about one target: a holder that left or died leaves its turn empty once,
 * and the next PROBE takes the first free turn, so the turns shrink to the
 * live holders within one cycle (a turn only counted forward, not reused,
 * kept the start-up's holders in the cycle after they left the view:
 * guts-sim saw rounds 3 s apart and one gap of 7 s). More holders than
 * turns (a member in thousands of views): those without a turn come back
 * at a random time up to CORE_PROBE_MAX_MS (4 minutes). Sent to the last turn, they
 * came back together 2 minutes later, and the holders of the 120 turns a
 * start-up handed out in its first seconds left the views one by one:
 * guts-sim saw a member in 4,546 views probed once in 8 s at 30 s.
 * Given-back turns. Under writes the news announcers turn views over in
 * ~15 s, faster than the turns come round, so most turns ahead of a
 * member in many views were held by probers that have evicted it since
 * and its live holders had the last ones (guts-sim: crashes found after
 * 13 s, or never within the run). A holder that evicts a live member
 * gives its turn back (RELEASE, probe_release); the member frees the turn
 * if it was handed to that prober (pace_tag) and moves into it, with an
 * ACK outside any round, the prober it handed a round last among those
 * due a turn or more later (pace_far, pace_move). The holder takes such an
 * ACK only from the member's address, only to come earlier and never
 * before its own bound (turn_taken).
 * Under loss. An ACK's time says by its lowest bit whether it is a turn,
 * so only a turn is given back (a holder sent to a random time gave back
 * nothing the member could free: 94-96% of the RELEASEs); a RELEASE and a
 * moving ACK go CORE_TURN_COPIES times while our rounds see loss (one
 * lost left a turn nobody came to); a RELEASE that misses the turn it
 * names frees the one its sender was moved into (the move was lost), and
 * any RELEASE takes its sender off the probers to move; a prober handed a
 * turn it will not come to (a move of a round that comes sooner anyway, or
 * any turn from a member it no longer holds: a move to a prober gone
 * since) gives it back at once. guts-sim, 10,000 nodes at 20% loss under
 * writes: a third of the moves were taken, and the first live holder's
 * round came 10-21 s after some crashes.
 * Before the turns each holder set its own period from the load the ACKs
 * reported: the holders' rounds were independent, the wait for the next
 * round after a crash was exponential with a mean of the target, and one
 * crash in ~700 waited over 6.5 s (issue 19: 12.1 s to find a crash in a
 * 10,000-node churn). A new view entry is first probed within
 * CORE_PROBE_FIRST_MS.
 *
 * Bounds: an ACK goes only to the address its PROBE came from, has the
 * same fixed-width size (no amplification), and at most
 * CORE_PROBE_ANSWERS_MAX are sent per CORE_PROBE_ANSWERS_MS; the time it
 * names is at most CORE_PROBE_MAX_MS ahead (a PROBE flood delays the
 * holders' rounds by that much at most). DEAD notices queued are at most
 * CORE_DEAD_QUEUE.
 */
#include <string.h>

#include "core_internal.h"

/* Uniform in [0, n) for p's schedule: a hash of the core's secret seed,
 * p and the time, not core_rand, so probing leaves the sequence every
 * other random choice of the core draws from as it was. */
static uint64_t jitter_below(const guts_core *c, const peer *p, uint64_t n)
{
    uint64_t x;
    memcpy(&x, p->id.b, sizeof(x));
    x = guts_mix64(x ^ (c->kmv_seed + c->now * 0x9e3779b97f4a7c15ull));
    return n ? x % n : 0;
}

static void push_dgram(guts_core *c, const guts_msg *m, const guts_addr *to)
{
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    if (guts_msg_encode(m, buf, c->cfg.dgram_max, &len) != GUTS_OK) return;
    guts_core_action a = {.kind = GUTS_ACT_SEND_DGRAM, .to_group = to == NULL, .data = buf,
                          .len = len};
    if (to) a.addr = *to;
    if (core_push(c, &a) != GUTS_OK) return;
    c->ctr.dgrams_out++;
    c->ctr.dgram_bytes_out += len;
    if (!to) reach_copies(c, buf, len, 0);
}

/* How many copies of a RELEASE or of a moving ACK: CORE_TURN_COPIES while
 * our own rounds see loss. */
static int turn_copies(const guts_core *c)
{
    return c->probe_lossy ? CORE_TURN_COPIES : 1;
}

/* The ACK's pace with its lowest bit saying whether the time is a turn
 * (1) or a time drawn past the turns (0): a prober gives back only a turn
 * (probe_release). One ms either way does not matter to anyone. */
static uint32_t pace_flagged(uint64_t when, int turn)
{
    return (uint32_t)((when & ~1ull) | (turn ? 1u : 0u));
}

/* Recompute probe_min of the group holding entry i. */
static void group_min(guts_core *c, size_t i)
{
    const uint64_t *a = &c->probe_at[i & ~(size_t)7];
    uint64_t m = a[0];
    for (size_t k = 1; k < 8; k++)
        m = a[k] < m ? a[k] : m;
    c->probe_min[i / 8] = m;
}

static void set_at(guts_core *c, size_t i, uint64_t t)
{
    uint64_t old = c->probe_at[i];
    c->probe_at[i] = t;
    if (t < c->probe_min[i / 8])
        c->probe_min[i / 8] = t;
    else if (old == c->probe_min[i / 8])
        group_min(c, i);
}

void probe_added(guts_core *c, size_t i)
{
    if (i == 0) { /* the view was empty: a clean schedule */
        for (size_t k = 0; k < CORE_VIEW_MAX; k++)
            c->probe_at[k] = UINT64_MAX;
        for (size_t g = 0; g < CORE_VIEW_MAX / 8; g++)
            c->probe_min[g] = UINT64_MAX;
        c->probe_new = 0;
    }
    c->probe_new |= 1ull << i;
    c->probe_next = c->now; /* its first round is scheduled at the next tick */
}

void probe_removed(guts_core *c, size_t i, size_t last)
{
    uint64_t t = c->probe_at[last], fresh = c->probe_new >> last & 1;
    c->probe_new &= ~(1ull << last);
    set_at(c, last, UINT64_MAX);
    if (i == last) return;
    c->probe_new = (c->probe_new & ~(1ull << i)) | fresh << i;
    set_at(c, i, t);
}

_Static_assert(CORE_PROBE_TRIES < 256, "peer.probe_tries is a byte");

/* Least period of a peer: one round per CORE_PROBE_SPACING_MS on average. */
static uint64_t min_period(const guts_core *c)
{
    uint64_t m = (uint64_t)c->npeers * CORE_PROBE_SPACING_MS;
    return m > CORE_PROBE_TARGET_MS ? m : CORE_PROBE_TARGET_MS;
}

static void send_probe(guts_core *c, size_t i)
{
    peer *p = &c->peers[i];
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_PROBE);
    m.u.probe.incarnation = c->cfg.incarnation;
    m.u.probe.seq = ++c->probe_seq;
    m.u.probe.pace = (uint32_t)min_period(c);
    p->probe_tries++;
    set_at(c, i, c->now + (p->probe_suspect ? CORE_PROBE_CONFIRM_MS : CORE_PROBE_RETRY_MS));
    c->ctr.probes_out++;
    push_dgram(c, &m, &p->addr);
}

/* The next round of p after one ended: when its last ACK asked (see
 * "Pace" above). */
static void next_round(guts_core *c, size_t i)
{
    peer *p = &c->peers[i];
    p->probe_round = 0;
    p->probe_tries = 0;
    p->probe_suspect = 0;
    p->probe_turn = 0;
    set_at(c, i, c->now + p->probe_period);
}

static void dead_queue(guts_core *c, const peer *p)
{
    if (c->ndead >= CORE_DEAD_QUEUE) return; /* deaths come one at a time */
    dead_note *d = &c->dead[c->ndead++];
    d->node = p->id;
    d->inc = p->inc;
    d->left = CORE_DEAD_COPIES;
    d->at = c->now;
}

/* p answered no round: dead. Told so by a DEAD notice (suspect), the group
 * was told already: no notice of ours. */
static void declare_dead(guts_core *c, size_t i)
{
    peer *p = &c->peers[i];
    if (!p->probe_suspect) dead_queue(c, p);
    c->ctr.peers_dead++;
    sync_abort_peer(c, &p->addr);
    members_remove(c, i, "dead");
}

void probe_tick(guts_core *c)
{
    if (c->now < c->probe_next || (!c->npeers && !c->ndead)) return;
    /* new entries: a first round within CORE_PROBE_FIRST_MS (never due now) */
    for (uint64_t m = c->probe_new; m; m &= m - 1) {
        size_t i = (size_t)__builtin_ctzll(m);
        peer *p = &c->peers[i];
        p->probe_period = CORE_PROBE_FIRST_MS;
        set_at(c, i, c->now + 1 + jitter_below(c, p, CORE_PROBE_FIRST_MS));
    }
    c->probe_new = 0;
    /* the due ones, last first (a dead one's place goes to the last peer,
     * already seen), in the groups whose least time has come */
    size_t ngroups = (c->npeers + 7) / 8;
    for (size_t g = ngroups; g-- > 0;) {
        if (c->now < c->probe_min[g]) continue;
        size_t end = 8 * g + 8 < c->npeers ? 8 * g + 8 : c->npeers;
        for (size_t i = end; i-- > 8 * g;) {
            if (c->now < c->probe_at[i]) continue;
            peer *p = &c->peers[i];
            if (!p->probe_round) {
                p->probe_round = c->now;
                send_probe(c, i);
            } else if (p->probe_tries < CORE_PROBE_TRIES) {
                send_probe(c, i);
            } else if (p->last_heard >= p->probe_round) {
                /* it announced or sent on our pull meanwhile: alive (a pull
                 * merely open is no sign: one from a member that crashed
                 * mid-transfer waits CORE_SESSION_IDLE_MS, and the holder
                 * kept it until its next turn, past the run: guts-sim
                 * churn with a writer, issue 19) */
                next_round(c, i);
            } else if (c->last_rx > p->probe_round) {
                declare_dead(c, i);
            } else {
                next_round(c, i); /* we heard nobody: it may be us */
            }
        }
    }
    uint64_t next = UINT64_MAX;
    for (size_t g = 0; g < (c->npeers + 7) / 8; g++)
        next = c->probe_min[g] < next ? c->probe_min[g] : next;
    size_t k = 0;
    for (size_t i = 0; i < c->ndead; i++) {
        dead_note *d = &c->dead[i];
        if (c->now >= d->at) {
            guts_msg m;
            core_msg_init(c, &m, GUTS_MSG_DEAD);
            m.u.dead.node = d->node;
            m.u.dead.incarnation = d->inc;
            c->ctr.dead_out++;
            push_dgram(c, &m, NULL);
            d->left--;
            d->at = c->now + CORE_DEAD_GAP_MS;
        }
        if (!d->left) continue;
        if (d->at < next) next = d->at;
        c->dead[k++] = *d;
    }
    c->ndead = k;
    c->probe_next = next == UINT64_MAX ? 0 : next;
}

uint64_t probe_next(const guts_core *c)
{
    return c->npeers || c->ndead ? c->probe_next : 0;
}

/* 16 bits of a prober's id: whom a turn was handed to. */
static uint16_t pace_tag_of(const guts_core *c, const guts_node_id *id)
{
    uint64_t x;
    memcpy(&x, id->b, sizeof(x));
    return (uint16_t)guts_mix64(x ^ c->kmv_seed);
}

/* The turns (pace_slots, pace_tag) moved to start at now's. */
static void pace_shift(guts_core *c)
{
    const uint64_t T = CORE_PROBE_TARGET_MS;
    uint64_t base = c->now - c->now % T, n = (base - c->pace_base) / T;
    if (!c->pace_base || n >= 128) {
        c->pace_slots[0] = c->pace_slots[1] = 0;
    } else if (n >= 64) {
        c->pace_slots[0] = c->pace_slots[1] >> (n - 64);
        c->pace_slots[1] = 0;
    } else if (n) {
        c->pace_slots[0] = c->pace_slots[0] >> n | c->pace_slots[1] << (64 - n);
        c->pace_slots[1] >>= n;
    }
    if (!c->pace_base || n >= 64)
        memset(c->pace_tag, 0, sizeof(c->pace_tag));
    else if (n) {
        memmove(c->pace_tag, c->pace_tag + n, (64 - n) * sizeof(c->pace_tag[0]));
        memset(c->pace_tag + 64 - n, 0, n * sizeof(c->pace_tag[0]));
    }
    c->pace_base = base;
}

/* Turn k was given back: of the probers handed a round at least a turn
 * after it whose own bound (`least` from when it was handed) allows it,
 * the one handed its round last (the likeliest to hold us still) comes
 * at turn k instead, told by an ACK of ours (unasked: it is in no round
 * of us). Its old turn is free. */
static void pace_move(guts_core *c, uint64_t k)
{
    const uint64_t T = CORE_PROBE_TARGET_MS;
    uint64_t t = c->pace_base + k * T;
    if (t < c->now) t = c->now;
    pace_far *best = NULL;
    for (size_t i = 0; i < CORE_PROBE_FAR; i++) {
        pace_far *e = &c->pace_far[i];
        uint64_t least = e->least > T ? e->least : T;
        if (e->at > t + T && e->booked + least <= t && (!best || e->booked > best->booked))
            best = e;
    }
    if (!best) return;
    if (best->turn && best->at >= c->pace_base) {
        uint64_t old = (best->at - c->pace_base) / T;
        if (old < 128) c->pace_slots[old / 64] &= ~(1ull << (old % 64));
        if (old < 64) c->pace_tag[old] = 0;
    }
    c->pace_slots[k / 64] |= 1ull << (k % 64);
    c->pace_tag[k] = best->tag;
    best->at = t;
    best->turn = 1;
    guts_msg a;
    core_msg_init(c, &a, GUTS_MSG_ACK);
    a.u.probe.incarnation = c->cfg.incarnation;
    a.u.probe.seq = best->seq;
    a.u.probe.pace = pace_flagged(t - c->now, 1);
    c->ctr.turns_moved++;
    for (int n = turn_copies(c); n-- > 0;) {
        c->ctr.acks_out++;
        push_dgram(c, &a, &best->addr);
    }
}

/* A prober handed a round at `at`: remembered in place of the one handed
 * its round longest ago (the likeliest to have left), or of its own
 * entry. */
static void pace_note(guts_core *c, const guts_addr *from, const guts_msg *m, uint64_t at, int turn)
{
    pace_far *e = NULL;
    for (size_t i = 0; i < CORE_PROBE_FAR; i++) {
        pace_far *x = &c->pace_far[i];
        if (guts_addr_eq(&x->addr, from)) {
            e = x;
            break;
        }
        if (!e || x->booked < e->booked) e = x;
    }
    e->addr = *from;
    e->turn = (uint8_t)turn;
    e->tag = pace_tag_of(c, &m->sender);
    e->seq = m->u.probe.seq;
    e->least = m->u.probe.pace;
    e->booked = c->now;
    e->at = at;
}

static uint64_t pace_turn(guts_core *c, uint32_t least, const guts_node_id *prober, int *turn);

/* When our ACK to a PROBE asks for the prober's next round (ms from now,
 * the lowest bit saying whether it is a turn: pace_flagged): the first
 * free turn, at least `least` (the prober's own bound) and one target from
 * now, at most CORE_PROBE_TURNS turns ahead. Turns are
 * CORE_PROBE_TARGET_MS apart; pace_slots has a bit per turn from pace_base on, set when an ACK
 * hands it out. A holder that left or died leaves its turn free once its
 * time has passed, and the next PROBE takes the first free turn, so the
 * turns stay about as many as the live holders. All taken (more holders
 * than turns): a time drawn for the prober (from its id and now) between
 * its least wait and CORE_PROBE_MAX_MS, so such holders spread out. */
static uint32_t pace_next(guts_core *c, const guts_msg *m, const guts_addr *from)
{
    /* a retry of a round we answered (our ACK or its PROBE lost): the
     * same time again, not a second turn (at 20% loss ~16% of rounds
     * booked one more, which then came due empty). Any of the last
     * CORE_PROBE_FAR probers handed a round, not only the last: a member
     * in many views hears other PROBEs between one prober's tries. */
    uint16_t tag = pace_tag_of(c, &m->sender);
    for (size_t i = 0; i < CORE_PROBE_FAR; i++) {
        const pace_far *e = &c->pace_far[i];
        if (e->at > c->now && e->tag == tag &&
            c->now < e->booked + CORE_PROBE_TRIES * CORE_PROBE_RETRY_MS &&
            guts_addr_eq(&e->addr, from))
            return pace_flagged(e->at - c->now, e->turn);
    }
    int turn = 0;
    uint64_t when = pace_turn(c, m->u.probe.pace, &m->sender, &turn);
    pace_note(c, from, m, c->now + when, turn);
    return pace_flagged(when, turn);
}

/* pace_next's choice for a new round. */
static uint64_t pace_turn(guts_core *c, uint32_t least, const guts_node_id *prober, int *turn)
{
    const uint64_t T = CORE_PROBE_TARGET_MS;
    pace_shift(c);
    uint64_t base = c->pace_base;
    uint64_t wait = least > T ? least : T, last = CORE_PROBE_TURNS;
    if (wait > CORE_PROBE_MAX_MS) wait = CORE_PROBE_MAX_MS;
    /* turn k is [base + k T, base + (k + 1) T): the one holding now + wait
     * may be taken at that time */
    for (uint64_t k = (c->now + wait - base) / T; k <= last; k++) {
        uint64_t *w = &c->pace_slots[k / 64], bit = 1ull << (k % 64);
        if (*w & bit) continue;
        *w |= bit;
        if (k < 64) c->pace_tag[k] = pace_tag_of(c, prober);
        *turn = 1;
        return base + k * T > c->now + wait ? base + k * T - c->now : wait;
    }
    uint64_t x;
    memcpy(&x, prober->b, sizeof(x));
    x = guts_mix64(x ^ (c->kmv_seed + c->now * 0x9e3779b97f4a7c15ull));
    return wait + x % (CORE_PROBE_MAX_MS - wait + 1);
}

/* A RELEASE of the round at now + pace of a member of incarnation inc at
 * `to`, `copies` times. */
static void give_back(guts_core *c, uint64_t inc, uint32_t pace, const guts_addr *to, int copies)
{
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_RELEASE);
    m.u.probe.incarnation = inc;
    m.u.probe.pace = pace;
    c->ctr.turns_released++;
    while (copies-- > 0)
        push_dgram(c, &m, to);
}

/* An ACK outside a round of ours: the member moving our next round in (a
 * turn of it was given back, see "Given-back turns"). Taken only from the
 * address we probe it at, only to come earlier, and never before our own
 * bound (min_period) from the time our next round was set: no more than an
 * ACK to our last PROBE could have asked. */
static void turn_taken(guts_core *c, peer *p, uint32_t pace, const guts_addr *from)
{
    size_t i = (size_t)(p - c->peers);
    if (!guts_addr_eq(from, &p->addr) || c->probe_new >> i & 1) return;
    uint64_t at = c->probe_at[i], set = at > p->probe_period ? at - p->probe_period : 0;
    uint64_t t = c->now + pace;
    if (t < set + min_period(c)) t = set + min_period(c);
    if (t >= at) { /* we come sooner: nobody would come to that turn */
        give_back(c, p->inc, pace, from, 1); /* an answer: one, as large */
        return;
    }
    p->last_heard = c->now;
    p->probe_period = (uint32_t)(t - set);
    p->probe_turn = 1;
    set_at(c, i, t);
    c->ctr.turns_taken++;
    if (!c->probe_next || t < c->probe_next) c->probe_next = t;
}

/* A prober gives back the turn it was handed (it dropped us from its view):
 * only a turn handed to that prober's id, of our incarnation; a far prober
 * moves into it. The turn at the time it names, or else the one we last
 * moved it into (the ACK moving it was lost: it names its old time, which
 * pace_move freed). Either way it is no prober to move any more: under
 * writes the probers a member remembers are often gone by the time a turn
 * is given back, and a move to one left a turn nobody came to (guts-sim,
 * 10,000 nodes at 20% loss: a third of the moves taken). */
static void pace_release(guts_core *c, const guts_msg *m, const guts_addr *from)
{
    const uint64_t T = CORE_PROBE_TARGET_MS;
    if (m->u.probe.incarnation != c->cfg.incarnation || m->u.probe.pace > CORE_PROBE_MAX_MS) return;
    pace_shift(c);
    uint16_t tag = pace_tag_of(c, &m->sender);
    /* it holds us no more: no prober to move in */
    for (size_t i = 0; i < CORE_PROBE_FAR; i++)
        if (guts_addr_eq(&c->pace_far[i].addr, from)) c->pace_far[i].at = 0;
    uint64_t at = c->now + m->u.probe.pace, k = (at - c->pace_base) / T;
    if (k >= 64 || !(c->pace_slots[0] >> k & 1) || c->pace_tag[k] != tag) {
        /* not the turn it names: the one we moved it into, if our ACK
         * saying so was lost (it gives back the time it still had) */
        for (k = 0; k < 64 && !(c->pace_slots[0] >> k & 1 && c->pace_tag[k] == tag); k++)
            ;
        if (k == 64 || c->pace_base + k * T < c->now) return;
    }
    c->pace_slots[0] &= ~(1ull << k);
    c->pace_tag[k] = 0;
    c->ctr.turns_freed++;
    pace_move(c, k);
}

void probe_release(guts_core *c, size_t i)
{
    peer *p = &c->peers[i];
    uint64_t at = c->probe_at[i];
    if (!p->probe_turn || p->probe_round || at <= c->now ||
        at - c->now > (CORE_PROBE_TURNS + 1) * CORE_PROBE_TARGET_MS)
        return;
    give_back(c, p->inc, (uint32_t)(at - c->now), &p->addr, turn_copies(c));
}

void probe_on(guts_core *c, const guts_msg *m, const guts_addr *from)
{
    if (m->type == GUTS_MSG_PROBE) {
        if (c->now >= c->answers_start + CORE_PROBE_ANSWERS_MS) {
            c->answers_start = c->now;
            c->answers = 0;
        }
        if (c->answers >= CORE_PROBE_ANSWERS_MAX) return;
        c->answers++;
        guts_msg a;
        core_msg_init(c, &a, GUTS_MSG_ACK);
        a.u.probe.incarnation = c->cfg.incarnation;
        a.u.probe.seq = m->u.probe.seq;
        a.u.probe.pace = pace_next(c, m, from);
        c->ctr.acks_out++;
        push_dgram(c, &a, from);
        return;
    }
    if (m->type == GUTS_MSG_ACK) {
        peer *p = members_find(c, &m->sender);
        if (m->u.probe.seq > c->probe_seq) return;
        if (!p) {
            /* a turn handed to us by a member we no longer hold (it moved
             * us, or answered a PROBE after we dropped it): nobody would
             * come to it. Back to the address it came from, as large as
             * it: no amplification. */
            if (m->u.probe.pace & 1 && m->u.probe.pace <= CORE_PROBE_MAX_MS)
                give_back(c, m->u.probe.incarnation, m->u.probe.pace, from, 1);
            return;
        }
        if (m->u.probe.incarnation != p->inc) return;
        if (!p->probe_round) {
            turn_taken(c, p, m->u.probe.pace, from);
            return;
        }
        p->last_heard = c->now;
        c->probe_lossy = (uint8_t)(c->probe_lossy << 1 | (p->probe_tries > 1));
        /* at the time the peer named, within our own bounds (an older
         * node's ACK carries a count here: the bound keeps it sane) */
        uint64_t next = m->u.probe.pace;
        if (next < min_period(c)) next = min_period(c);
        if (next > CORE_PROBE_MAX_MS) next = CORE_PROBE_MAX_MS;
        p->probe_period = (uint32_t)next;
        size_t i = (size_t)(p - c->peers);
        next_round(c, i);
        p->probe_turn = m->u.probe.pace & 1;
        if (!c->probe_next || c->probe_at[i] < c->probe_next) c->probe_next = c->probe_at[i];
        return;
    }
    if (m->type == GUTS_MSG_RELEASE) {
        pace_release(c, m, from);
        return;
    }
    /* DEAD */
    const guts_msg_dead *d = &m->u.dead;
    if (memcmp(&d->node, &c->cfg.node_id, sizeof(d->node)) == 0) {
        if (d->incarnation != c->cfg.incarnation) return;
        /* alive after all: say so to the group, at once unless we announced
         * within the gap (REPLY_REFUTE: a forged DEAD repeated is answered
         * at most once a gap) */
        c->ctr.refutes++;
        c->announce_soon = 1;
        if (!c->reply_soon) c->reply_soon = REPLY_REFUTE;
        c->soon_at = c->now;
        return;
    }
    peer *p = members_find(c, &d->node);
    /* heard within CORE_PROBE_CONFIRM_QUIET_MS: alive after the accuser's
     * round had run for 1 s at least (and a forged notice repeated costs
     * each holder one PROBE a second to the member named, at most) */
    if (!p || d->incarnation < p->inc || c->now < p->last_heard + CORE_PROBE_CONFIRM_QUIET_MS)
        return;
    /* confirm it first: a round of our own from now (or the running one),
     * which drops it if unanswered. Even when we heard it 1-3 s ago: the
     * accuser's round may have begun before it died (ignoring notices about
     * a member heard in the last 3 s left holders that had its last ACK
     * holding it until their next turn, 16 s on) */
    size_t i = (size_t)(p - c->peers);
    p->probe_suspect = 1;
    if (p->probe_round) return;
    if (c->probe_new >> i & 1) { /* not scheduled yet */
        c->probe_new &= ~(1ull << i);
        p->probe_period = CORE_PROBE_FIRST_MS;
    }
    p->probe_round = c->now;
    send_probe(c, i);
    if (!c->probe_next || c->probe_at[i] < c->probe_next) c->probe_next = c->probe_at[i];
}
