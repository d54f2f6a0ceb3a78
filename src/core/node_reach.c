/* node_reach.c - who gets a group datagram by unicast as well, and peer
 * exchange.
 *
 * Multicast reaches the segment, when the network lets it: Wi-Fi with
 * client isolation, Docker bridges, VPNs and firewalls often do not. So
 * every group datagram (announce, LEAVE) is also sent by unicast to
 *
 *  - each live peer heard by unicast (its last unicast datagram within its
 *    expiry, counted as for the view: expiry_missed x 1.5 x the longer of
 *    its interval and ours): every group datagram, as the group would;
 *  - each seed (an address the driver configured: guts-node's --peer) and
 *    each learned address (below) that is not such a peer: at most one
 *    announce per interval, since nothing came from there yet.
 *
 * The first rule makes --peer symmetric: a hub that every node names with
 * --peer answers each of them, so a star or a chain converges both ways
 * with multicast blocked. It only ever answers an address a datagram came
 * from, and stops one expiry after the last one; a peer also heard by
 * multicast gets the unicast copy too (the group may reach us and not it).
 *
 * Peer exchange. A peer heard by unicast is one the group may not reach,
 * and so may be one that cannot hear the rest of our segment: with the
 * first announce after it is heard that way, again with the next one (the
 * first can overtake the announce that makes us a member there, and is then
 * ignored), and then every CORE_PEX_EVERY intervals, it gets a PEERS
 * datagram: a random sample of CORE_PEX_SAMPLE
 * live peers of our view, each a node id and the address its datagrams come
 * from. A node takes PEERS only from a live member of its view, and keeps
 * at most learned_max addresses (not itself, not a seed, not the sender,
 * not a node it already hears, not of a length the driver cannot send to:
 * cfg.learned_lens, else the sender's own). A learned address gets one
 * announce per interval until its node answers (then it is a unicast peer
 * like any other) or it stayed
 * silent for CORE_LEARNED_TRIES announces: then it is given up and not
 * tried for CORE_LEARNED_QUIET intervals, even if named again. Addresses
 * no peer named for CORE_LEARNED_TTL intervals are forgotten. So what a
 * node sends to an address that never spoke to it is at most one announce
 * per interval, CORE_LEARNED_TRIES in a row, whoever names it: no
 * amplification, and no reflection beyond that at a victim.
 *
 * Prompt answers. Those copies go with our own announces, and a large
 * group's interval is long (members / CORE_GROUP_RATE: 50 s at 1,000): a
 * hub that hundreds of nodes name with --peer, and no multicast, would
 * tell each spoke what it holds once per 50 s, and only the 64 of its view
 * at the time (guts-sim --star: 730 s to converge at 1,000 nodes). So an
 * announce heard by unicast from a sender that lacks what we hold (fewer
 * objects of one of our repositories, or none of it) is answered at once,
 * by unicast to the address it came from, with an announce as our next one
 * would be, and with PEERS when that peer is due them (pex_maybe: first
 * answer, next contact, then every CORE_PEX_EVERY intervals): the spokes learn each other and the
 * star becomes a mesh. Bounded twice: one answer per peer per announce
 * interval, and CORE_ANSWER_MAX answers in all per base interval, whatever
 * the number of senders (forged ones included: see docs/security.md,
 * "Amplification"). Only admitted members are answered (a full view takes
 * such a sender in: announce_on). With multicast and no seeds nothing comes
 * by unicast and nothing changes.
 *
 * Nothing here is remembered across a restart (the driver keeps remembered
 * peers and hands them back as seeds).
 */
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

static void push_copy(guts_core *c, const guts_addr *to, const uint8_t *data, size_t len)
{
    guts_core_action a = {
        .kind = GUTS_ACT_SEND_DGRAM, .to_group = 0, .addr = *to, .data = data, .len = len};
    if (core_push(c, &a) != GUTS_OK) return;
    c->ctr.dgrams_unicast++;
    c->ctr.dgram_bytes_out += len;
}

static int is_seed(const guts_core *c, const guts_addr *a)
{
    for (uint32_t i = 0; i < c->cfg.nseeds; i++)
        if (guts_addr_eq(&c->seeds[i], a)) return 1;
    return 0;
}

/* The live peer at address a heard by unicast, if any. */
static const peer *heard_at(guts_core *c, const guts_addr *a)
{
    for (size_t i = 0; i < c->npeers; i++) {
        const peer *p = &c->peers[i];
        if (guts_addr_eq(&p->addr, a) && members_live_since(c, p, p->ucast_heard)) return p;
    }
    return NULL;
}

/* A PEERS datagram for p: a random sample of the other live peers. */
static void send_peers(guts_core *c, const peer *to)
{
    guts_wire_peer sample[CORE_PEX_SAMPLE];
    uint32_t n = 0;
    size_t seen = 0;
    for (size_t i = 0; i < c->npeers; i++) {
        const peer *p = &c->peers[i];
        if (p == to || p->addr.len == 0 || p->addr.len > GUTS_WIRE_ADDR_MAX) continue;
        /* reservoir sampling: each candidate kept with probability k/seen */
        size_t slot = seen < CORE_PEX_SAMPLE ? seen : (size_t)core_rand_below(c, seen + 1);
        seen++;
        if (slot >= CORE_PEX_SAMPLE) continue;
        guts_wire_peer *w = &sample[slot];
        w->id = p->id;
        w->addr_len = p->addr.len;
        memcpy(w->addr, p->addr.b, p->addr.len);
        if (slot == n) n++;
    }
    if (n == 0) return;
    guts_msg m;
    core_msg_init(c, &m, GUTS_MSG_PEERS);
    m.u.peers.npeers = n;
    m.u.peers.peers = sample;
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    if (guts_msg_encode(&m, buf, c->cfg.dgram_max, &len) != GUTS_OK) return;
    guts_core_action a = {
        .kind = GUTS_ACT_SEND_DGRAM, .to_group = 0, .addr = to->addr, .data = buf, .len = len};
    if (core_push(c, &a) != GUTS_OK) return;
    c->ctr.pex_out++;
    c->ctr.pex_bytes_out += len;
    c->ctr.dgram_bytes_out += len;
}

/* PEERS for p when it is due them: first contact, once more at the next
 * contact of a later instant (the first went out with the announce that
 * makes us a member there, and a reordered or lost datagram gets it
 * ignored: reach_on_peers), then every CORE_PEX_EVERY intervals. */
static void pex_maybe(guts_core *c, peer *p, uint32_t iv)
{
    if (!p->pex_sent)
        p->pex_again = 1;
    else if (p->pex_again && c->now > p->pex_sent)
        p->pex_again = 0;
    else if (c->now < p->pex_sent + (uint64_t)iv * CORE_PEX_EVERY)
        return;
    p->pex_sent = c->now;
    send_peers(c, p);
}

/* One announce per interval to an address nothing came from yet. */
static int unheard_due(guts_core *c, uint64_t sent, uint32_t iv)
{
    return !sent || c->now >= sent + iv;
}

void reach_copies(guts_core *c, const uint8_t *data, size_t len, int announce)
{
    uint32_t iv = announce_interval(c);
    for (size_t i = 0; i < c->npeers; i++) {
        peer *p = &c->peers[i];
        if (!members_live_since(c, p, p->ucast_heard)) continue;
        push_copy(c, &p->addr, data, len);
        if (announce) pex_maybe(c, p, iv);
    }
    for (uint32_t i = 0; i < c->cfg.nseeds; i++) {
        if (heard_at(c, &c->seeds[i])) continue; /* sent above */
        /* a LEAVE goes to every seed: it is the last word, never repeated */
        if (announce && !unheard_due(c, c->seed_sent[i], iv)) continue;
        c->seed_sent[i] = c->now;
        push_copy(c, &c->seeds[i], data, len);
    }
    size_t keep = 0;
    for (size_t i = 0; i < c->nlearned; i++) {
        learned *l = &c->learned[i];
        const peer *p = heard_at(c, &l->addr);
        if (p) l->unanswered = 0; /* it answered: sent above */
        if (!p && c->now >= l->named + (uint64_t)iv * CORE_LEARNED_TTL &&
            c->now >= l->quiet_until)
            continue; /* forgotten */
        c->learned[keep++] = *l;
        l = &c->learned[keep - 1];
        if (p || l->quiet_until > c->now || is_seed(c, &l->addr)) continue;
        /* its node is heard by multicast: the group reaches it */
        const peer *q = members_find(c, &l->id);
        if (q && members_live_since(c, q, q->group_heard)) continue;
        if (!announce || !unheard_due(c, l->sent, iv)) continue;
        if (l->unanswered >= CORE_LEARNED_TRIES) {
            l->quiet_until = c->now + (uint64_t)iv * CORE_LEARNED_QUIET;
            l->unanswered = 0;
            c->ctr.learned_given_up++;
            continue;
        }
        l->sent = c->now;
        l->unanswered++;
        push_copy(c, &l->addr, data, len);
    }
    c->nlearned = keep;
}

void reach_answer(guts_core *c, peer *p, const guts_msg_announce *a, const guts_addr *from)
{
    uint32_t iv = announce_interval(c);
    if (p->answered && c->now < p->answered + iv) return;
    if (c->now >= c->answer_refill) {
        c->answer_refill = c->now + c->cfg.interval_ms;
        c->answers_left = CORE_ANSWER_MAX;
    }
    if (!c->answers_left || !announce_behind(c, a)) return;
    c->answers_left--;
    p->answered = c->now;
    announce_answer(c, from);
    pex_maybe(c, p, iv);
}

/* The entry for address a, added (zeroed, with id unknown) when absent
 * and there is room or an old one to replace; NULL when full. */
static learned *learned_slot(guts_core *c, const guts_addr *a)
{
    if (!c->learned) {
        c->learned = calloc(c->cfg.learned_max, sizeof(learned));
        if (!c->learned) return NULL;
    }
    for (size_t j = 0; j < c->nlearned; j++)
        if (guts_addr_eq(&c->learned[j].addr, a)) return &c->learned[j];
    learned *l;
    if (c->nlearned < c->cfg.learned_max) {
        l = &c->learned[c->nlearned++];
    } else {
        /* full: the entry named longest ago makes room, unless it is as
         * fresh as this one or given up (naming a victim again must not
         * reset its quiet time) */
        l = &c->learned[0];
        for (size_t j = 1; j < c->nlearned; j++)
            if (c->learned[j].named < l->named) l = &c->learned[j];
        if (l->named >= c->now || l->quiet_until > c->now) return NULL;
    }
    memset(l, 0, sizeof(*l));
    l->addr = *a;
    return l;
}

void reach_on_peers(guts_core *c, const guts_msg *m, const guts_addr *from)
{
    peer *s = members_find(c, &m->sender);
    if (!s || !guts_addr_eq(&s->addr, from) || !members_live_since(c, s, s->last_heard)) {
        c->ctr.pex_ignored++;
        return;
    }
    c->ctr.pex_in++;
    for (uint32_t i = 0; i < m->u.peers.npeers; i++) {
        const guts_wire_peer *w = &m->u.peers.peers[i];
        guts_addr a;
        memset(&a, 0, sizeof(a));
        a.len = w->addr_len;
        memcpy(a.b, w->addr, w->addr_len);
        /* another driver's address form (or a family we have no socket
         * of) is of no use to ours */
        int usable = c->cfg.learned_lens ? a.len < 32 && (c->cfg.learned_lens >> a.len & 1)
                                         : a.len == from->len;
        if (!usable || guts_addr_eq(&a, from) || is_seed(c, &a)) continue;
        if (memcmp(&w->id, &c->cfg.node_id, sizeof(w->id)) == 0) continue;
        const peer *known = members_find(c, &w->id);
        if (known && members_live_since(c, known, known->last_heard)) continue;
        learned *l = learned_slot(c, &a);
        if (!l) {
            c->ctr.learned_dropped++;
            continue;
        }
        l->id = w->id;
        l->named = c->now;
    }
}

int guts_core_remember(guts_core *c, uint64_t now, const guts_addr *addr)
{
    if (!addr || addr->len == 0 || addr->len > GUTS_ADDR_MAX) return GUTS_EINVAL;
    if (now > c->now) c->now = now;
    if (is_seed(c, addr)) return GUTS_OK;
    if (!c->learned && !(c->learned = calloc(c->cfg.learned_max, sizeof(learned))))
        return GUTS_ENOMEM;
    learned *l = learned_slot(c, addr);
    if (!l) return GUTS_EFULL;
    l->named = now;
    return GUTS_OK;
}

const char *reach_path(const guts_core *c, const guts_addr *a, int via)
{
    if (via != GUTS_VIA_UNICAST) return "multicast";
    if (is_seed(c, a)) return "unicast, a seed (--peer)";
    for (size_t i = 0; i < c->nlearned; i++)
        if (guts_addr_eq(&c->learned[i].addr, a)) return "unicast, learned";
    return "unicast";
}

void reach_free(guts_core *c)
{
    free(c->learned);
    c->learned = NULL;
    c->nlearned = 0;
}
