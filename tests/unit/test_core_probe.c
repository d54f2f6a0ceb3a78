/* test_core_probe.c - failure detection: the PROBE, ACK and DEAD codec and
 * the core's rules (node_probe.c), one core driven by hand.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "guts/core.h"
#include "guts/wire.h"
#include "test_run.h"

typedef struct fx {
    guts_memstore *mem;
    guts_core_store iface;
    guts_core *core;
    guts_node_id id;
    /* datagrams sent since the last drain, by type; the last PROBE's seq and
     * destination, the last ACK's bytes */
    size_t n[8], to_group[8];
    uint32_t probe_seq;
    guts_addr probe_to, ack_to;
    size_t probe_len, ack_len;
    uint32_t probe_pace, ack_pace;
} fx;

static void fx_drain(fx *f)
{
    guts_core_action a;
    while (guts_core_next_action(f->core, &a)) {
        if (a.kind != GUTS_ACT_SEND_DGRAM) continue;
        guts_msg m;
        if (guts_msg_decode(a.data, a.len, &m) != GUTS_OK) continue;
        if (m.type < 8) {
            f->n[m.type]++;
            f->to_group[m.type] += a.to_group != 0;
        }
        if (m.type == GUTS_MSG_PROBE) {
            f->probe_seq = m.u.probe.seq;
            f->probe_to = a.addr;
            f->probe_len = a.len;
            f->probe_pace = m.u.probe.pace;
        }
        if (m.type == GUTS_MSG_ACK) {
            f->ack_to = a.addr;
            f->ack_len = a.len;
            f->ack_pace = m.u.probe.pace;
        }
        guts_msg_free(&m);
    }
}

/* The core's timer at t, then its actions counted. */
static void fx_at(fx *f, uint64_t t)
{
    guts_core_on_timer(f->core, t);
    fx_drain(f);
}

static void fx_init(fx *f)
{
    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(guts_memstore_new(&f->mem), 0);
    guts_memstore_iface(f->mem, &f->iface);
    f->id.b[0] = 0x55;
    guts_core_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.node_id = f->id;
    cfg.incarnation = 1;
    cfg.tcp_port = 7000;
    cfg.seed = 1;
    cfg.store = &f->iface;
    cfg.no_log = 1;
    ck_assert_int_eq(guts_core_new(&cfg, &f->core), 0);
    fx_at(f, 1);
}

static void fx_free(fx *f)
{
    guts_core_free(f->core);
    guts_memstore_free(f->mem);
}

static void pid(int n, guts_node_id *id)
{
    memset(id, 0, sizeof(*id));
    id->b[0] = (uint8_t)n;
    id->b[1] = 0xa0;
}

static void paddr(int n, guts_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = 4;
    a->b[0] = 10;
    a->b[3] = (uint8_t)n;
}

/* Feed m as if from peer n's address, by multicast or unicast (via). */
static void feed_via(fx *f, uint64_t now, int n, int via, const guts_msg *m)
{
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(m, buf, sizeof(buf), &len), 0);
    guts_addr a;
    paddr(n, &a);
    guts_core_on_datagram(f->core, now, &a, via, buf, len);
    fx_drain(f);
}

static void feed(fx *f, uint64_t now, int n, const guts_msg *m)
{
    feed_via(f, now, n, GUTS_VIA_GROUP, m);
}

/* Feed m as if from peer `from`'s address, by unicast. */
static void feed_from(fx *f, uint64_t now, int from, const guts_msg *m)
{
    feed_via(f, now, from, GUTS_VIA_UNICAST, m);
}

static void msg_of(guts_msg *m, int type, int n)
{
    memset(m, 0, sizeof(*m));
    m->type = (uint8_t)type;
    m->version = GUTS_WIRE_VERSION;
    pid(n, &m->sender);
}

static void announce(fx *f, uint64_t now, int n)
{
    guts_msg m;
    msg_of(&m, GUTS_MSG_ANNOUNCE, n);
    m.u.announce.incarnation = 1;
    m.u.announce.port = 7000;
    m.u.announce.interval_ms = 600000; /* no expiry in these tests: probing decides */
    m.u.announce.pages = 1;
    feed(f, now, n, &m);
}

static void ack(fx *f, uint64_t now, int n, uint32_t seq, uint32_t pace)
{
    guts_msg m;
    msg_of(&m, GUTS_MSG_ACK, n);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = seq;
    m.u.probe.pace = pace;
    feed(f, now, n, &m);
}

static int has(fx *f, int n)
{
    guts_node_id id;
    pid(n, &id);
    return guts_core_has_peer(f->core, &id);
}

START_TEST(test_codec_probe_ack_dead)
{
    guts_msg m, d;
    msg_of(&m, GUTS_MSG_PROBE, 1);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = 7;
    uint8_t a[64], b[64];
    size_t la, lb;
    ck_assert_int_eq(guts_msg_encode(&m, a, sizeof(a), &la), 0);
    /* an ACK with the largest values is no larger than the smallest PROBE */
    msg_of(&m, GUTS_MSG_ACK, 1);
    m.u.probe.incarnation = UINT64_MAX;
    m.u.probe.seq = UINT32_MAX;
    m.u.probe.pace = UINT32_MAX;
    ck_assert_int_eq(guts_msg_encode(&m, b, sizeof(b), &lb), 0);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(guts_msg_decode(b, lb, &d), 0);
    ck_assert_uint_eq(d.type, GUTS_MSG_ACK);
    ck_assert_uint_eq(d.u.probe.incarnation, UINT64_MAX);
    ck_assert_uint_eq(d.u.probe.seq, UINT32_MAX);
    ck_assert_uint_eq(d.u.probe.pace, UINT32_MAX);
    guts_msg_free(&d);
    msg_of(&m, GUTS_MSG_DEAD, 1);
    pid(9, &m.u.dead.node);
    m.u.dead.incarnation = 3;
    ck_assert_int_eq(guts_msg_encode(&m, a, sizeof(a), &la), 0);
    ck_assert_int_eq(guts_msg_decode(a, la, &d), 0);
    ck_assert_uint_eq(d.type, GUTS_MSG_DEAD);
    ck_assert_mem_eq(d.u.dead.node.b, m.u.dead.node.b, GUTS_NODE_ID_LEN);
    ck_assert_uint_eq(d.u.dead.incarnation, 3);
    guts_msg_free(&d);
    /* every truncation is refused, never read past */
    for (size_t k = 1; k < la; k++)
        ck_assert_int_ne(guts_msg_decode(a, k, &d), 0);
}
END_TEST

/* A silent peer is found dead within its first round, while the node hears
 * others (local health); the group is told by DEAD notices. */
START_TEST(test_silent_peer_declared_dead)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    announce(&f, 10, 2);
    ck_assert(has(&f, 1) && has(&f, 2));
    uint64_t t = 10, dead_at = 0;
    for (; t < 20000 && !dead_at; t += 50) {
        if (t % 1000 == 10) announce(&f, t, 2); /* the node hears the group */
        fx_at(&f, t);
        /* peer 2 answers every PROBE sent to it; peer 1 answers none */
        guts_addr a2;
        paddr(2, &a2);
        if (f.n[GUTS_MSG_PROBE] && guts_addr_eq(&f.probe_to, &a2)) {
            ack(&f, t + 1, 2, f.probe_seq, 1);
            f.n[GUTS_MSG_PROBE] = 0;
        }
        if (!has(&f, 1)) dead_at = t;
    }
    ck_assert_uint_gt(dead_at, 0);
    ck_assert_uint_le(dead_at, 8000 + 2000 + 500);
    ck_assert(has(&f, 2));
    for (; t < dead_at + 2000; t += 50)
        fx_at(&f, t);
    ck_assert_uint_eq(f.to_group[GUTS_MSG_DEAD], 16); /* CORE_DEAD_COPIES */
    guts_core_counters k;
    guts_core_counters_get(f.core, &k);
    ck_assert_uint_eq(k.peers_dead, 1);
    fx_free(&f);
}
END_TEST

/* A live peer wrongly found dead (every ACK of its round lost) clears
 * itself without a new incarnation: its announce, the answer to the DEAD
 * naming it, puts it back in the accuser's view, where it is probed again
 * and, answering, stays. */
START_TEST(test_false_dead_cleared_by_announce)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    announce(&f, 10, 2);
    guts_addr a1, a2;
    paddr(1, &a1);
    paddr(2, &a2);
    uint64_t t = 10, dead_at = 0;
    for (; t < 20000 && !dead_at; t += 50) { /* peer 1's ACKs are all lost */
        if (t % 1000 == 10) announce(&f, t, 2);
        fx_at(&f, t);
        if (f.n[GUTS_MSG_PROBE] && guts_addr_eq(&f.probe_to, &a2))
            ack(&f, t + 1, 2, f.probe_seq, 1);
        f.n[GUTS_MSG_PROBE] = 0;
        if (!has(&f, 1)) dead_at = t;
    }
    ck_assert_uint_gt(dead_at, 0);
    announce(&f, t, 1); /* its refutation: same incarnation */
    ck_assert(has(&f, 1));
    size_t probed = 0;
    for (uint64_t end = t + 30000; t < end; t += 50) { /* now its ACKs arrive */
        if (t % 1000 == 10) announce(&f, t, 2);
        fx_at(&f, t);
        if (f.n[GUTS_MSG_PROBE] && guts_addr_eq(&f.probe_to, &a1)) {
            probed++;
            ack(&f, t + 1, 1, f.probe_seq, 1);
        }
        if (f.n[GUTS_MSG_PROBE] && guts_addr_eq(&f.probe_to, &a2))
            ack(&f, t + 1, 2, f.probe_seq, 1);
        f.n[GUTS_MSG_PROBE] = 0;
    }
    ck_assert(has(&f, 1));
    ck_assert_uint_ge(probed, 1);
    guts_core_counters k;
    guts_core_counters_get(f.core, &k);
    ck_assert_uint_eq(k.peers_dead, 1);
    fx_free(&f);
}
END_TEST

/* Cut off (nothing heard during the round), a node declares nobody dead. */
START_TEST(test_isolated_node_declares_nobody)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    for (uint64_t t = 10; t < 30000; t += 50)
        fx_at(&f, t);
    ck_assert_uint_gt(f.n[GUTS_MSG_PROBE], 15);
    ck_assert(has(&f, 1));
    ck_assert_uint_eq(f.n[GUTS_MSG_DEAD], 0);
    fx_free(&f);
}
END_TEST

/* A PROBE is answered by one ACK to its source address, of the same size,
 * with the load counted; from anyone (views are not symmetric). */
START_TEST(test_probe_answered_to_source)
{
    fx f;
    fx_init(&f);
    guts_msg m;
    msg_of(&m, GUTS_MSG_PROBE, 7);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = 42;
    uint8_t buf[64];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof(buf), &len), 0);
    guts_addr a;
    paddr(7, &a);
    guts_core_on_datagram(f.core, 100, &a, GUTS_VIA_UNICAST, buf, len);
    fx_drain(&f);
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], 1);
    ck_assert_uint_eq(f.to_group[GUTS_MSG_ACK], 0);
    ck_assert(guts_addr_eq(&f.ack_to, &a));
    ck_assert_uint_le(f.ack_len, len);
    ck_assert_uint_eq(guts_core_peer_count(f.core), 0); /* a PROBE admits nobody */
    fx_free(&f);
}
END_TEST

/* DEAD: a holder that heard the peer in the last second ignores it; else it
 * confirms with a round of its own, and drops the peer only if that goes
 * unanswered, sending no notice itself; a DEAD about ourselves is answered
 * with an announce. */
START_TEST(test_dead_notice_rules)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    announce(&f, 10, 2);
    guts_msg m;
    msg_of(&m, GUTS_MSG_DEAD, 2);
    pid(1, &m.u.dead.node);
    m.u.dead.incarnation = 1;
    memset(f.n, 0, sizeof(f.n));
    feed(&f, 500, 2, &m); /* peer 1 spoke 0.49 s ago: not even suspected */
    ck_assert(has(&f, 1));
    ck_assert_uint_eq(f.n[GUTS_MSG_PROBE], 0);
    feed(&f, 5000, 2, &m);
    ck_assert(has(&f, 1)); /* suspected: its round starts at once */
    ck_assert_uint_eq(f.n[GUTS_MSG_PROBE], 1);
    uint64_t t = 5000;
    for (; t < 8000 && has(&f, 1); t += 50) {
        if (t == 5500) announce(&f, t, 2); /* the node hears the group */
        fx_at(&f, t);
    }
    ck_assert(!has(&f, 1));
    ck_assert_uint_le(t, 5000 + 20 * 50 + 100); /* 50 ms tries, on 50 ms ticks */
    ck_assert_uint_eq(f.n[GUTS_MSG_DEAD], 0); /* the accuser told the group */
    memset(f.n, 0, sizeof(f.n));
    m.u.dead.node = f.id;
    feed(&f, 8100, 2, &m);
    for (t = 8100; t < 9000; t += 50)
        fx_at(&f, t);
    ck_assert_uint_ge(f.to_group[GUTS_MSG_ANNOUNCE], 1);
    guts_core_counters k;
    guts_core_counters_get(f.core, &k);
    ck_assert_uint_eq(k.refutes, 1);
    /* the notice forged and repeated every 10 ms for 1.5 s: refuted at
     * most once per CORE_ANNOUNCE_GAP_MS (150 ms), not once per notice */
    memset(f.to_group, 0, sizeof(f.to_group));
    for (t = 9000; t < 10500; t += 10) {
        feed(&f, t, 2, &m);
        fx_at(&f, t);
    }
    ck_assert_uint_ge(f.to_group[GUTS_MSG_ANNOUNCE], 1);
    ck_assert_uint_le(f.to_group[GUTS_MSG_ANNOUNCE], 1500 / 150 + 2);
    fx_free(&f);
}
END_TEST

/* A DEAD notice about a live peer (its accuser's round lost every PROBE or
 * ACK) costs no drop: the confirming round is answered, and the peer is
 * probed again at the time its ACK named. */
START_TEST(test_dead_notice_refuted_by_ack)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    announce(&f, 10, 2);
    guts_msg m;
    msg_of(&m, GUTS_MSG_DEAD, 2);
    pid(1, &m.u.dead.node);
    m.u.dead.incarnation = 1;
    memset(f.n, 0, sizeof(f.n));
    feed(&f, 5000, 2, &m);
    ck_assert_uint_eq(f.n[GUTS_MSG_PROBE], 1);
    guts_addr a1;
    paddr(1, &a1);
    ck_assert(guts_addr_eq(&f.probe_to, &a1));
    ack(&f, 5030, 1, f.probe_seq, 20000);
    size_t probes = 0;
    for (uint64_t t = 5050; t < 24000; t += 50) {
        if (t % 1000 == 0) announce(&f, t, 2);
        f.n[GUTS_MSG_PROBE] = 0;
        fx_at(&f, t);
        if (f.n[GUTS_MSG_PROBE] && guts_addr_eq(&f.probe_to, &a1)) probes++;
    }
    ck_assert(has(&f, 1));
    ck_assert_uint_eq(probes, 0); /* next round at 25 s, as the ACK said */
    guts_core_counters k;
    guts_core_counters_get(f.core, &k);
    ck_assert_uint_eq(k.peers_dead, 0);
    fx_free(&f);
}
END_TEST

/* A holder starts its next round when the peer's ACK asked, within its
 * own bounds, and says its bound in its PROBEs. */
START_TEST(test_ack_names_next_round)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    uint64_t at[16];
    size_t probes = 0;
    for (uint64_t t = 10; t < 120000; t += 10) {
        fx_at(&f, t);
        if (f.n[GUTS_MSG_PROBE]) {
            ck_assert_uint_eq(f.probe_pace, 2000); /* one peer: the target is its bound */
            if (probes < 16) at[probes] = t;
            probes += f.n[GUTS_MSG_PROBE];
            f.n[GUTS_MSG_PROBE] = 0;
            ack(&f, t, 1, f.probe_seq, 30000);
        }
    }
    /* first within 8 s, then every 30 s */
    ck_assert_uint_le(at[0], 8010);
    ck_assert_uint_ge(probes, 4);
    ck_assert_uint_le(probes, 5);
    for (size_t k = 1; k < probes; k++)
        ck_assert_uint_eq(at[k] - at[k - 1], 30000);
    ck_assert(has(&f, 1));
    fx_free(&f);
}
END_TEST

/* An ACK's time naming a turn: its lowest bit set (node_probe.c,
 * pace_flagged). */
#define TURN(ms) (((uint32_t)(ms) & ~1u) | 1u)

static void probe_from(fx *f, uint64_t now, int n, uint32_t least)
{
    guts_msg m;
    msg_of(&m, GUTS_MSG_PROBE, n);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = 1;
    m.u.probe.pace = least;
    feed(f, now, n, &m);
}

/* The probed node hands out turns: its holders' rounds one target (2 s)
 * apart however many probe it at once; a holder that cannot come that soon
 * gets the first free turn after its bound; turns of holders that do not
 * come back are given again, so the holders that remain probe more often;
 * with all 60 turns taken, a holder comes at a random time up to
 * CORE_PROBE_MAX_MS (240 s), never later, whatever the flood. */
START_TEST(test_probers_take_turns)
{
    fx f;
    fx_init(&f);
    for (int n = 1; n <= 10; n++) { /* turns at 4 s .. 22 s */
        probe_from(&f, 2000, n, 0);
        ck_assert_uint_eq(f.ack_pace, TURN(2000u * (uint32_t)n));
    }
    probe_from(&f, 3200, 11, 16000); /* the first free turn after 19.2 s: 24 s */
    ck_assert_uint_eq(f.ack_pace, TURN(24000 - 3200));
    probe_from(&f, 3200, 12, 2000); /* 26 s, after the others */
    ck_assert_uint_eq(f.ack_pace, TURN(26000 - 3200));
    /* holders 1-6 never come back; 7-10 come at their turns (16-22 s) and
     * take the first free ones, 28-34 s: every 12 s, as many turns as live
     * holders (7-12), not 10 */
    for (int n = 7; n <= 10; n++) {
        probe_from(&f, 2000 + 2000u * (uint64_t)n, n, 2000);
        ck_assert_uint_eq(f.ack_pace, TURN(12000));
    }
    for (int k = 0; k < 500; k++) {
        probe_from(&f, 40000 + (uint64_t)k, 3 + k % 100, 0);
        if (k >= 60) ck_assert(f.ack_pace >= 2000 && f.ack_pace <= 240000);
    }
    fx_free(&f);
}
END_TEST

/* A prober whose ACK was lost tries again within its round: it gets the
 * turn it was handed, not a second one that would come due empty (at 20%
 * loss ~16% of rounds booked two, and holders left got later turns), also
 * when other probers came between its tries. */
START_TEST(test_retry_keeps_its_turn)
{
    fx f;
    fx_init(&f);
    probe_from(&f, 2000, 1, 0);
    ck_assert_uint_eq(f.ack_pace, TURN(2000)); /* the turn at 4 s */
    probe_from(&f, 2150, 1, 0);          /* its retry: the same turn */
    ck_assert_uint_eq(f.ack_pace, TURN(4000 - 2150));
    probe_from(&f, 2300, 2, 0); /* the next prober: the next turn, 6 s */
    ck_assert_uint_eq(f.ack_pace, TURN(6000 - 2300));
    probe_from(&f, 5200, 1, 0); /* a new round of prober 1: a new turn, 8 s */
    ck_assert_uint_eq(f.ack_pace, TURN(8000 - 5200));
    /* other probers between its tries (a member in many views): its retry
     * still gets its turn */
    probe_from(&f, 7000, 3, 0); /* 10 s */
    probe_from(&f, 7050, 4, 0); /* 12 s */
    probe_from(&f, 7100, 5, 0); /* 14 s */
    probe_from(&f, 7150, 3, 0); /* 3's retry: 10 s again */
    ck_assert_uint_eq(f.ack_pace, TURN(10000 - 7150));
    probe_from(&f, 7200, 6, 0); /* the next free turn: 16 s */
    ck_assert_uint_eq(f.ack_pace, TURN(16000 - 7200));
    fx_free(&f);
}
END_TEST

static void release(fx *f, uint64_t now, int n, int from, uint64_t inc, uint32_t pace)
{
    guts_msg m;
    msg_of(&m, GUTS_MSG_RELEASE, n);
    m.u.probe.incarnation = inc;
    m.u.probe.pace = pace;
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(len, 46); /* a PROBE's size */
    feed_from(f, now, from, &m);
}

/* A prober gives its turn back (it dropped us from its view): the prober
 * handed the latest round after it comes at that turn instead, told by an
 * ACK of ours; its own turn is free again. A RELEASE from a prober that
 * holds no turn, or of another incarnation, moves nobody. */
START_TEST(test_given_back_turn_moves_a_far_prober)
{
    fx f;
    fx_init(&f);
    for (int n = 1; n <= 5; n++) /* turns at 4 .. 12 s */
        probe_from(&f, 2000, n, 0);
    probe_from(&f, 3000, 6, 0); /* the first free turn after 5 s: 14 s */
    ck_assert_uint_eq(f.ack_pace, TURN(14000 - 3000));
    size_t acks = f.n[GUTS_MSG_ACK];
    release(&f, 3400, 9, 3, 1, 8000 - 3400); /* prober 3's turn, named by another */
    release(&f, 3400, 3, 3, 2, 8000 - 3400); /* another incarnation */
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks);
    release(&f, 3500, 3, 3, 1, 8000 - 3500); /* its own: 6 moves from 14 s to 8 s */
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks + 1);
    guts_addr six;
    paddr(6, &six);
    ck_assert_mem_eq(&f.ack_to, &six, sizeof(six));
    ck_assert_uint_eq(f.ack_pace, TURN(8000 - 3500));
    release(&f, 3600, 3, 3, 1, 8000 - 3600); /* again: the turn is 6's now */
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks + 1);
    /* 14 s is free: the next prober gets it (16 s without the move) */
    probe_from(&f, 9000, 7, 0);
    ck_assert_uint_eq(f.ack_pace, TURN(14000 - 9000));
    fx_free(&f);
}
END_TEST

/* An ACK says by its time's lowest bit whether it hands out a turn: the
 * 60 turns do, the random times past them do not (a holder gives back
 * only a turn: node_probe.c, "Under loss"). A retry gets its flag again. */
START_TEST(test_ack_says_whether_it_hands_a_turn)
{
    fx f;
    fx_init(&f);
    for (int n = 1; n <= 60; n++) { /* turns at 4 .. 122 s */
        probe_from(&f, 2000 + (uint64_t)n, n, 0);
        ck_assert_uint_eq(f.ack_pace & 1, 1);
    }
    probe_from(&f, 2061, 61, 0);
    ck_assert_uint_eq(f.ack_pace & 1, 0);
    uint32_t drawn = f.ack_pace;
    probe_from(&f, 2100, 61, 0); /* its retry: the same time, no turn */
    ck_assert_uint_eq(f.ack_pace & 1, 0);
    ck_assert_uint_le(f.ack_pace, drawn - 39 + 1);
    ck_assert_uint_ge(f.ack_pace, drawn - 39 - 1);
    probe_from(&f, 2110, 60, 0); /* 60's retry: its turn again */
    ck_assert_uint_eq(f.ack_pace, TURN(122000 - 2110));
    fx_free(&f);
}
END_TEST

/* The ACK moving a prober into a given-back turn was lost: the prober
 * still comes at its old time, and gives back that one when it drops us.
 * The member frees the turn it moved it into instead (else nobody would
 * come to it) and moves the next far prober there; a prober that gave a
 * turn back is not moved again. */
START_TEST(test_release_after_a_lost_move_frees_the_moved_turn)
{
    fx f;
    fx_init(&f);
    for (int n = 1; n <= 5; n++) /* turns at 4 .. 12 s */
        probe_from(&f, 2000, n, 0);
    probe_from(&f, 3000, 6, 0); /* 14 s */
    probe_from(&f, 3010, 7, 0); /* 16 s */
    release(&f, 3500, 2, 2, 1, 6000 - 3500); /* 7 moves from 16 s to 6 s */
    guts_addr a;
    paddr(7, &a);
    ck_assert_mem_eq(&f.ack_to, &a, sizeof(a));
    ck_assert_uint_eq(f.ack_pace, TURN(6000 - 3500));
    size_t acks = f.n[GUTS_MSG_ACK];
    /* that ACK was lost: 7 gives back its old time, 16 s; 6 moves into 6 s */
    release(&f, 3600, 7, 7, 1, 16000 - 3600);
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks + 1);
    paddr(6, &a);
    ck_assert_mem_eq(&f.ack_to, &a, sizeof(a));
    ck_assert_uint_eq(f.ack_pace, TURN(6000 - 3600));
    /* 3 gives back 8 s: 5 (12 s) moves in, not 7, which is gone */
    release(&f, 3700, 3, 3, 1, 8000 - 3700);
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks + 2);
    paddr(5, &a);
    ck_assert_mem_eq(&f.ack_to, &a, sizeof(a));
    fx_free(&f);
}
END_TEST

/* While the member's own rounds see loss (an ACK came only after a
 * retry), a moving ACK goes CORE_TURN_COPIES (3) times; without loss once. */
static void moving_acks(int lossy, size_t want)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 9);
    uint64_t t = 0;
    for (uint64_t u = 20; u < 9000 && !t; u += 10) {
        f.n[GUTS_MSG_PROBE] = 0;
        fx_at(&f, u);
        if (f.n[GUTS_MSG_PROBE]) t = u;
    }
    ck_assert_uint_gt(t, 0);
    if (lossy) { /* the first PROBE or its ACK lost: answered after the retry */
        f.n[GUTS_MSG_PROBE] = 0;
        for (uint64_t u = t + 10; !f.n[GUTS_MSG_PROBE]; u += 10)
            fx_at(&f, u);
    }
    ack(&f, t + 150, 9, f.probe_seq, 30000);
    uint64_t base = (t + 2000) / 2000 * 2000 + 500; /* turns at +1.5, 3.5, 5.5, 7.5 s */
    probe_from(&f, base, 1, 0);
    probe_from(&f, base + 1, 2, 0);
    uint32_t second = f.ack_pace;
    probe_from(&f, base + 2, 3, 0);
    probe_from(&f, base + 3, 4, 0);
    size_t acks = f.n[GUTS_MSG_ACK];
    release(&f, base + 11, 2, 2, 1, second - 10); /* 4 moves into 2's turn */
    ck_assert_uint_eq(f.n[GUTS_MSG_ACK], acks + want);
    guts_addr a;
    paddr(4, &a);
    ck_assert_mem_eq(&f.ack_to, &a, sizeof(a));
    fx_free(&f);
}

START_TEST(test_moving_ack_is_repeated_under_loss)
{
    moving_acks(0, 1);
    moving_acks(1, 3);
}
END_TEST

/* The time of our next PROBE to peer 1, stepping the timer from t by 10 ms
 * up to `until` (0: none by then). */
static uint64_t next_probe(fx *f, uint64_t t, uint64_t until)
{
    f->n[GUTS_MSG_PROBE] = 0;
    for (; t <= until; t += 10) {
        fx_at(f, t);
        if (f->n[GUTS_MSG_PROBE]) return t;
    }
    return 0;
}

/* An ACK outside a round moves the next round of its sender in: only from
 * the address we probe it at, only earlier, never before our own bound
 * after the last ACK (2 s with one peer). */
START_TEST(test_unasked_ack_brings_the_round_earlier)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    uint64_t t = next_probe(&f, 10, 9000);
    ck_assert_uint_gt(t, 0);
    ack(&f, t, 1, f.probe_seq, 30000); /* next round at t + 30 s */
    guts_msg m;
    msg_of(&m, GUTS_MSG_ACK, 1);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = f.probe_seq;
    m.u.probe.pace = 0;
    feed_from(&f, t + 100, 2, &m); /* another address: ignored */
    m.u.probe.pace = 60000;
    feed_from(&f, t + 200, 1, &m); /* later: ignored */
    m.u.probe.incarnation = 2;
    m.u.probe.pace = 0;
    feed_from(&f, t + 300, 1, &m); /* another incarnation: ignored */
    m.u.probe.incarnation = 1;
    m.u.probe.seq = f.probe_seq + 1;
    feed_from(&f, t + 400, 1, &m); /* a seq never sent: ignored */
    ck_assert_uint_eq(next_probe(&f, t + 500, t + 20000), 0);
    /* from the member: at t + 21 s, or our bound (t + 2 s) if sooner */
    m.u.probe.seq = f.probe_seq;
    m.u.probe.pace = 1000;
    feed_from(&f, t + 20000, 1, &m);
    ck_assert_uint_eq(next_probe(&f, t + 20010, t + 30000), t + 21000);
    fx_free(&f);
    fx_init(&f);
    announce(&f, 10, 1);
    t = next_probe(&f, 10, 9000);
    ack(&f, t, 1, f.probe_seq, 30000);
    m.u.probe.pace = 0;
    feed_from(&f, t + 500, 1, &m); /* now: not before t + 2 s */
    ck_assert_uint_eq(next_probe(&f, t + 510, t + 30000), t + 2000);
    fx_free(&f);
}
END_TEST

/* A turn the prober will not come to goes back at once: an unasked ACK
 * moving a round that comes sooner anyway, or an ACK handing a turn from
 * a member no longer held (one RELEASE, as large as the ACK, to the
 * address it came from). A drawn time (flag 0), or a seq never sent,
 * gets nothing. */
START_TEST(test_turn_not_taken_is_given_back)
{
    fx f;
    fx_init(&f);
    announce(&f, 10, 1);
    uint64_t t = next_probe(&f, 10, 9000);
    ck_assert_uint_gt(t, 0);
    ack(&f, t, 1, f.probe_seq, TURN(10000)); /* next round at t + 10 s */
    guts_msg m;
    msg_of(&m, GUTS_MSG_ACK, 1);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = f.probe_seq;
    m.u.probe.pace = TURN(20000); /* later than ours: not taken */
    f.n[GUTS_MSG_RELEASE] = 0;
    feed_from(&f, t + 100, 1, &m);
    ck_assert_uint_eq(f.n[GUTS_MSG_RELEASE], 1);
    /* from a member we do not hold (2) */
    msg_of(&m, GUTS_MSG_ACK, 2);
    m.u.probe.incarnation = 1;
    m.u.probe.seq = f.probe_seq;
    m.u.probe.pace = 20000; /* a drawn time */
    feed_from(&f, t + 200, 2, &m);
    m.u.probe.pace = TURN(20000);
    m.u.probe.seq = f.probe_seq + 1; /* never sent */
    feed_from(&f, t + 300, 2, &m);
    ck_assert_uint_eq(f.n[GUTS_MSG_RELEASE], 1);
    m.u.probe.seq = f.probe_seq;
    feed_from(&f, t + 400, 2, &m);
    ck_assert_uint_eq(f.n[GUTS_MSG_RELEASE], 2);
    ck_assert_uint_eq(next_probe(&f, t + 500, t + 9000), 0); /* ours unchanged */
    fx_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core_probe");
    TCase *tc = tcase_create("probe");
    tcase_add_test(tc, test_codec_probe_ack_dead);
    tcase_add_test(tc, test_silent_peer_declared_dead);
    tcase_add_test(tc, test_isolated_node_declares_nobody);
    tcase_add_test(tc, test_probe_answered_to_source);
    tcase_add_test(tc, test_dead_notice_rules);
    tcase_add_test(tc, test_dead_notice_refuted_by_ack);
    tcase_add_test(tc, test_false_dead_cleared_by_announce);
    tcase_add_test(tc, test_ack_names_next_round);
    tcase_add_test(tc, test_probers_take_turns);
    tcase_add_test(tc, test_retry_keeps_its_turn);
    tcase_add_test(tc, test_given_back_turn_moves_a_far_prober);
    tcase_add_test(tc, test_unasked_ack_brings_the_round_earlier);
    tcase_add_test(tc, test_ack_says_whether_it_hands_a_turn);
    tcase_add_test(tc, test_release_after_a_lost_move_frees_the_moved_turn);
    tcase_add_test(tc, test_moving_ack_is_repeated_under_loss);
    tcase_add_test(tc, test_turn_not_taken_is_given_back);
    suite_add_tcase(s, tc);
    return test_run(s, CK_NOFORK);
}
