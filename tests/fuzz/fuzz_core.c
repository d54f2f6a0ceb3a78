/* fuzz_core.c - libFuzzer target: one core fed hostile datagrams and frames.
 *
 * The decoders are fuzzed on their own (fuzz_dgram, fuzz_frame); this target
 * fuzzes what the node does with messages that decode: announces naming odd
 * repositories, sessions opened and abandoned, RECON rounds with every item
 * kind, objects that do not hash, refs pointing nowhere, frames on streams
 * that never said HELLO. The core runs on a memory store holding one small
 * repository (a blob, a tree, a commit and a ref), so serving has work.
 *
 * The input is a list of events, each one opcode byte and, for datagrams and
 * frames, a 2-byte little-endian length and that many payload bytes:
 *
 *   0,1  datagram from A (group), B (unicast) 4  the core's next OPEN_STREAM connects
 *   2    a peer opens a stream to us      5  a stream closes
 *   3    frame (envelope) on a stream     6  a stream becomes writable
 *                                         7  time passes (next byte * 50 ms)
 *
 * RECON frames sent on a stream where the core itself sent a RECON are
 * re-stamped with that RECON's seed, round and space (a 64-bit seed is
 * beyond guessing), so the puller's side of reconciliation is reachable.
 *
 * Actions are drained after every event and checked against invariants a
 * hostile peer must not be able to break: every datagram is sent to the
 * group, or by unicast to an address heard from (B by unicast; A, by
 * multicast, gets PROBEs and ACKs: failure detection), or to an address B
 * named in PEERS no more than once per (1 s) interval: an attacker cannot
 * aim more at an address it is not sending from; and it
 * fits in GUTS_DGRAM_MAX; every frame has a correct header and respects the
 * frame max; streams named in actions are ones the core opened or was
 * given.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guts/core.h"
#include "guts/wire.h"

/* Small enough that the fuzzer reaches "too many" quickly, large enough for
 * a pull and a serve at once. */
#define FUZZ_STREAMS 8
#define FUZZ_FRAME_MAX (64u << 10)
/* Events per input: bounds the time one input takes. */
#define FUZZ_EVENTS 256

static void check(int ok)
{
    if (!ok) abort();
}

/* The last RECON the core sent on a stream: a puller refuses replies whose
 * seed, round or space differ, and the fuzzer cannot guess a 64-bit seed,
 * so RECON frames it sends on that stream are re-stamped with these. */
typedef struct fuzz_recon {
    uint32_t stream;
    uint64_t seed;
    uint32_t round;
    uint8_t space;
} fuzz_recon;

typedef struct fuzz_state {
    guts_core *core;
    uint64_t now;
    uint32_t streams[FUZZ_STREAMS]; /* open streams (0: free slot) */
    uint32_t pending[FUZZ_STREAMS]; /* OPEN_STREAM asked, not yet connected */
    uint32_t next_in;
    uint32_t refused[FUZZ_STREAMS]; /* connects to report failed after a drain */
    guts_addr ucast_peer;           /* the only address heard by unicast */
    guts_addr group_peer;           /* the only address heard by multicast */
    guts_addr other[64];            /* other unicast destinations (learned) ... */
    uint64_t other_at[64];          /* ... and when each last got a datagram */
    size_t nother;
    fuzz_recon recon[FUZZ_STREAMS];
} fuzz_state;

static int slot_has(const uint32_t *set, uint32_t id);

static void recon_note(fuzz_state *st, uint32_t stream, const uint8_t *env, size_t len)
{
    guts_msg m;
    if (guts_msg_decode(env, len, &m) != 0) return;
    if (m.type == GUTS_MSG_RECON) {
        fuzz_recon *free_slot = NULL, *r = NULL;
        for (int i = 0; i < FUZZ_STREAMS; i++) {
            if (st->recon[i].stream == stream)
                r = &st->recon[i];
            else if (!free_slot &&
                     (st->recon[i].stream == 0 || !slot_has(st->streams, st->recon[i].stream)))
                free_slot = &st->recon[i];
        }
        if (!r) r = free_slot;
        if (r) {
            r->stream = stream;
            r->seed = m.u.recon.seed;
            r->round = m.u.recon.round;
            r->space = m.u.recon.space;
        }
    }
    guts_msg_free(&m);
}

/* Re-stamp a RECON frame for stream; returns a malloc()ed envelope in *out
 * (or NULL to send the input as it is). */
static void recon_stamp(const fuzz_state *st, uint32_t stream, const uint8_t *env, size_t len,
                        uint8_t **out, size_t *olen)
{
    *out = NULL;
    const fuzz_recon *r = NULL;
    for (int i = 0; i < FUZZ_STREAMS; i++)
        if (st->recon[i].stream == stream) r = &st->recon[i];
    guts_msg m;
    if (!r || guts_msg_decode(env, len, &m) != 0) return;
    if (m.type == GUTS_MSG_RECON) {
        m.u.recon.seed = r->seed;
        m.u.recon.round = r->round;
        m.u.recon.space = r->space;
        size_t cap = len + 16; /* seed and round grow by at most 8 + 4 bytes */
        *out = malloc(cap);
        check(*out != NULL);
        if (guts_msg_encode(&m, *out, cap, olen) != 0) {
            free(*out);
            *out = NULL;
        }
    }
    guts_msg_free(&m);
}

static int slot_add(uint32_t *set, uint32_t id)
{
    for (int i = 0; i < FUZZ_STREAMS; i++)
        if (set[i] == 0) {
            set[i] = id;
            return 1;
        }
    return 0;
}

static int slot_del(uint32_t *set, uint32_t id)
{
    for (int i = 0; i < FUZZ_STREAMS; i++)
        if (set[i] == id) {
            set[i] = 0;
            return 1;
        }
    return 0;
}

static uint32_t slot_pick(const uint32_t *set, uint8_t sel)
{
    for (int j = 0; j < FUZZ_STREAMS; j++) {
        uint32_t id = set[(sel + j) % FUZZ_STREAMS];
        if (id) return id;
    }
    return 0;
}

static int slot_has(const uint32_t *set, uint32_t id)
{
    for (int i = 0; i < FUZZ_STREAMS; i++)
        if (id && set[i] == id) return 1;
    return 0;
}

static void drain(fuzz_state *st)
{
    guts_core_action a;
again:
    while (guts_core_next_action(st->core, &a)) {
        switch (a.kind) {
        case GUTS_ACT_SEND_DGRAM:
            if (!a.to_group && !guts_addr_eq(&a.addr, &st->ucast_peer) &&
                !guts_addr_eq(&a.addr, &st->group_peer)) {
                size_t i = 0;
                while (i < st->nother && !guts_addr_eq(&st->other[i], &a.addr))
                    i++;
                if (i < st->nother) {
                    check(st->now >= st->other_at[i] + 1000); /* the base interval */
                } else {
                    check(st->nother < 64); /* at most learned_max (32) of them */
                    st->other[st->nother++] = a.addr;
                }
                st->other_at[i] = st->now;
            }
            check(a.len > 0 && a.len <= GUTS_DGRAM_MAX);
            break;
        case GUTS_ACT_OPEN_STREAM:
            check((a.stream & GUTS_CORE_STREAM_DRIVER) == 0);
            /* No room: a failed connect, reported after the drain as the
             * daemon does (the core is not re-entered while draining). */
            if (!slot_add(st->pending, a.stream)) check(slot_add(st->refused, a.stream));
            break;
        case GUTS_ACT_SEND_FRAME: {
            check(slot_has(st->streams, a.stream));
            check(a.len > GUTS_FRAME_HDR);
            uint32_t body = 0;
            check(guts_wire_frame_len(a.data, FUZZ_FRAME_MAX, &body) == 0);
            check(body == a.len - GUTS_FRAME_HDR);
            recon_note(st, a.stream, a.data + GUTS_FRAME_HDR, body);
            break;
        }
        case GUTS_ACT_CLOSE_STREAM:
            check(slot_del(st->streams, a.stream) || slot_del(st->pending, a.stream));
            break;
        case GUTS_ACT_SET_TIMER:
        case GUTS_ACT_LOG:
            break;
        default:
            check(0);
        }
    }
    for (int i = 0; i < FUZZ_STREAMS; i++)
        if (st->refused[i]) {
            uint32_t id = st->refused[i];
            st->refused[i] = 0;
            guts_core_on_stream_closed(st->core, st->now, id);
            goto again;
        }
}

/* One small repository: the core serves it and compares announces to it. */
static void seed_store(const guts_core_store *s)
{
    static const char blob[] = "hello\n";
    guts_obj o[3];
    uint8_t tree[8 + 1 + GUTS_ID_LEN];
    char commit[256];
    char hex[GUTS_HEX_LEN + 1];
    memset(o, 0, sizeof(o));
    check(s->create(s->ctx, "alice/guts") == 0);
    o[0].type = GUTS_OBJ_BLOB;
    o[0].data = blob;
    o[0].len = sizeof(blob) - 1;
    check(guts_obj_hash(o[0].type, o[0].data, o[0].len, &o[0].id) == 0);
    memcpy(tree, "100644 f", 8);
    tree[8] = 0;
    memcpy(tree + 9, o[0].id.b, GUTS_ID_LEN);
    o[1].type = GUTS_OBJ_TREE;
    o[1].data = tree;
    o[1].len = sizeof(tree);
    check(guts_obj_hash(o[1].type, o[1].data, o[1].len, &o[1].id) == 0);
    guts_id_to_hex(&o[1].id, hex);
    int n = snprintf(commit, sizeof(commit),
                     "tree %s\nauthor T <t@example.com> 1700000000 +0000\n"
                     "committer T <t@example.com> 1700000000 +0000\n\nfuzz\n",
                     hex);
    o[2].type = GUTS_OBJ_COMMIT;
    o[2].data = commit;
    o[2].len = (size_t)n;
    check(guts_obj_hash(o[2].type, o[2].data, o[2].len, &o[2].id) == 0);
    check(s->put(s->ctx, "alice/guts", o, 3, NULL, NULL) == 0);
    static guts_ref ref; /* large (two 1 KiB names): not on the stack */
    memset(&ref, 0, sizeof(ref));
    strcpy(ref.name, "refs/heads/main");
    ref.target = o[2].id;
    ref.clock = 1;
    ref.writer.b[0] = 0xa0;
    check(s->refs_put(s->ctx, "alice/guts", &ref, 1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guts_memstore *mem = NULL;
    guts_core_store iface;
    check(guts_memstore_new(&mem) == 0);
    guts_memstore_iface(mem, &iface);
    seed_store(&iface);

    guts_core_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    memset(cfg.node_id.b, 0x11, sizeof(cfg.node_id.b));
    cfg.incarnation = 1;
    cfg.tcp_port = 7000;
    cfg.frame_max = FUZZ_FRAME_MAX;
    cfg.max_sessions = 2;
    cfg.seed = 42;
    cfg.store = &iface;
    fuzz_state st;
    memset(&st, 0, sizeof(st));
    st.now = 1000;
    check(guts_core_new(&cfg, &st.core) == 0);
    guts_core_on_timer(st.core, st.now);
    drain(&st);

    guts_addr peer[2];
    memset(peer, 0, sizeof(peer));
    for (int i = 0; i < 2; i++) {
        peer[i].len = 6;
        peer[i].b[0] = 10;
        peer[i].b[3] = (uint8_t)(1 + i);
    }
    st.ucast_peer = peer[1];
    st.group_peer = peer[0];

    size_t off = 0;
    for (int ev = 0; ev < FUZZ_EVENTS && off < size; ev++) {
        uint8_t op = data[off++] % 8;
        uint8_t sel = off < size ? data[off] : 0;
        st.now += 1;
        switch (op) {
        case 0:
        case 1:
        case 3: {
            if (op == 3) off += off < size; /* the stream selector */
            if (size - off < 2) goto done;
            size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
            off += 2;
            if (len > size - off) len = size - off;
            /* An exact-size copy, so ASan catches any over-read. */
            uint8_t *buf = malloc(len ? len : 1);
            check(buf != NULL);
            memcpy(buf, data + off, len);
            off += len;
            if (op < 2) {
                guts_core_on_datagram(st.core, st.now, &peer[op],
                                      op ? GUTS_VIA_UNICAST : GUTS_VIA_GROUP, buf, len);
            } else {
                uint32_t s = slot_pick(st.streams, sel);
                uint8_t *stamped = NULL;
                size_t slen = 0;
                if (s) recon_stamp(&st, s, buf, len, &stamped, &slen);
                if (stamped) {
                    guts_core_on_frame(st.core, st.now, s, stamped, slen);
                    free(stamped);
                } else if (s) {
                    guts_core_on_frame(st.core, st.now, s, buf, len);
                }
            }
            free(buf);
            break;
        }
        case 2: {
            off++;
            uint32_t id = GUTS_CORE_STREAM_DRIVER | ++st.next_in;
            if (slot_add(st.streams, id))
                guts_core_on_stream_open(st.core, st.now, id, &peer[sel & 1], 0);
            break;
        }
        case 4: {
            uint32_t id = slot_pick(st.pending, 0);
            if (id) {
                slot_del(st.pending, id);
                if (slot_add(st.streams, id))
                    guts_core_on_stream_open(st.core, st.now, id, &peer[0], 1);
                else
                    guts_core_on_stream_closed(st.core, st.now, id);
            }
            break;
        }
        case 5:
        case 6: {
            off++;
            uint32_t id = slot_pick(st.streams, sel);
            if (!id) break;
            if (op == 5) {
                slot_del(st.streams, id);
                guts_core_on_stream_closed(st.core, st.now, id);
            } else {
                guts_core_on_stream_writable(st.core, st.now, id);
            }
            break;
        }
        case 7:
            off++;
            st.now += (uint64_t)sel * 50;
            guts_core_on_timer(st.core, st.now);
            break;
        }
        drain(&st);
    }
done:
    guts_core_leave(st.core, st.now);
    drain(&st);
    guts_core_free(st.core);
    guts_memstore_free(mem);
    return 0;
}
