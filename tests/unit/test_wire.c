/* test_wire.c - the msgpack codec: round trips, exact sizes, and rejection
 * of everything malformed a hostile peer could send.
 *
 * Sample messages of every type are built deterministically; their
 * encodings are the test vectors under tests/wire_vectors/ (checked to be
 * current here, decoded by python3-msgpack in tests/e2e/wire_python.sh).
 * Set GUTS_WIRE_DUMP=dir to write them afresh. Malformed inputs are crafted
 * with msgpack-c's packer (so only the one thing under test is wrong) or as
 * raw bytes. The fuzz loop mutates valid messages with a fixed-seed PRNG and
 * checks that decoding never crashes or leaks (run under ASan) and that what
 * decodes re-encodes to a fixed point.
 *
 * Runs without fork so that LeakSanitizer sees every test's allocations.
 */
#include "guts/wire.h"

#include <check.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test_run.h"

/* ---- Sample messages ----------------------------------------------------- */

#define NSAMPLES 12
static const int sample_types[NSAMPLES] = {
    GUTS_MSG_ANNOUNCE, GUTS_MSG_LEAVE, GUTS_MSG_PEERS, GUTS_MSG_HELLO, GUTS_MSG_RECON,
    GUTS_MSG_WANT, GUTS_MSG_OBJECTS, GUTS_MSG_OBJECT_CHUNK, GUTS_MSG_REFS,
    GUTS_MSG_DONE, GUTS_MSG_ERROR, GUTS_MSG_DAMAGED};

static uint8_t bloom8[8] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0};
static uint8_t bloom_big[300];
static guts_announce_repo s_repos[3];
static guts_recon_item s_items[5];
static guts_id s_ids[3];
static guts_wire_peer s_peers[2];
static guts_wire_obj s_objs[4];
static guts_wire_ref s_refs[3];
static const uint8_t s_blob[] = "hello\n";
static const uint8_t s_chunk[] = "0123456789";

static void fill_id(guts_id *id, uint8_t start)
{
    for (int i = 0; i < GUTS_ID_LEN; i++)
        id->b[i] = (uint8_t)(start + i);
}

static void fill_node(guts_node_id *id, uint8_t start)
{
    for (int i = 0; i < GUTS_NODE_ID_LEN; i++)
        id->b[i] = (uint8_t)(start + 0x11 * i);
}

/* A message of the given type whose every field is set to something that
 * would show up if it were dropped or swapped. */
static void sample(int type, guts_msg *m)
{
    memset(m, 0, sizeof *m);
    m->type = (uint8_t)type;
    m->version = GUTS_WIRE_VERSION;
    fill_node(&m->sender, 0xa0);
    for (size_t i = 0; i < sizeof bloom_big; i++)
        bloom_big[i] = (uint8_t)(i * 7);
    switch (type) {
    case GUTS_MSG_ANNOUNCE: {
        guts_msg_announce *a = &m->u.announce;
        a->incarnation = 3;
        a->port = 7421;
        a->interval_ms = 1000;
        a->page = 0;
        a->pages = 1;
        memset(s_repos, 0, sizeof s_repos);
        s_repos[0] = (guts_announce_repo){.key = "alice/guts", .objects = 1234,
            .fp = {0x0102030405060708ull, 0x1112131415161718ull},
            .refs_digest = 0xfedcba9876543210ull, .bloom_covered = 6,
            .bloom_seed = 42, .bloom_k = 7, .bloom_nbits = 60, .bloom_bits = bloom8};
        s_repos[1] = (guts_announce_repo){.key = "bob/empty", .objects = 0,
            .fp = {0, 0}, .refs_digest = 0};
        s_repos[2] = (guts_announce_repo){.key = "carol/big", .objects = 100000,
            .fp = {~0ull, 1}, .refs_digest = 5, .bloom_covered = 240,
            .bloom_seed = 0x8000000000000000ull, .bloom_k = 7, .bloom_nbits = 2400,
            .bloom_bits = bloom_big};
        a->nrepos = 2; /* the vector stays small; tests use all three */
        a->repos = s_repos;
        break;
    }
    case GUTS_MSG_LEAVE:
        m->u.leave.incarnation = 0x123456789ull;
        break;
    case GUTS_MSG_PEERS:
        memset(s_peers, 0, sizeof s_peers);
        fill_node(&s_peers[0].id, 0x30);
        s_peers[0].addr_len = 6; /* 192.168.1.20:7171 */
        memcpy(s_peers[0].addr, (const uint8_t[]){192, 168, 1, 20, 0x1c, 0x03}, 6);
        fill_node(&s_peers[1].id, 0x40);
        s_peers[1].addr_len = 18; /* [fd00::2]:7172 */
        s_peers[1].addr[0] = 0xfd;
        s_peers[1].addr[15] = 2;
        s_peers[1].addr[16] = 0x1c;
        s_peers[1].addr[17] = 0x04;
        m->u.peers.npeers = 2;
        m->u.peers.peers = s_peers;
        break;
    case GUTS_MSG_HELLO:
        m->u.hello.incarnation = 77;
        m->u.hello.port = 65535;
        break;
    case GUTS_MSG_RECON: {
        guts_msg_recon *r = &m->u.recon;
        r->key = "alice/guts";
        r->space = GUTS_SPACE_OBJECTS;
        r->seed = 0x0123456789abcdefull;
        r->round = 2;
        memset(s_items, 0, sizeof s_items);
        s_items[0].kind = GUTS_ITEM_SPLIT;
        s_items[0].depth = 1;
        s_items[0].prefix = 0xa;
        for (int i = 0; i < GUTS_RECON_FANOUT; i++)
            s_items[0].fps[i] = (uint16_t)(0x1000 * i + i);
        s_items[1] = (guts_recon_item){.kind = GUTS_ITEM_MASK, .depth = 2,
            .prefix = 0xa3, .mask = 0x8001};
        s_items[2] = (guts_recon_item){.kind = GUTS_ITEM_BLOOM, .depth = 2,
            .prefix = 0xa4, .k = 7, .nbits = 60, .bits = bloom8};
        s_items[3] = (guts_recon_item){.kind = GUTS_ITEM_ALL, .depth = 8,
            .prefix = 0xdeadbeef};
        s_items[4] = (guts_recon_item){.kind = GUTS_ITEM_ALL, .depth = 0, .prefix = 0};
        r->nitems = 4;
        r->items = s_items;
        break;
    }
    case GUTS_MSG_WANT:
        m->u.want.key = "alice/guts";
        for (int i = 0; i < 3; i++)
            fill_id(&s_ids[i], (uint8_t)(0x10 * i));
        m->u.want.nids = 3;
        m->u.want.ids = s_ids;
        break;
    case GUTS_MSG_OBJECTS:
        m->u.objects.key = "alice/guts";
        fill_id(&s_objs[0].id, 0x30);
        s_objs[0].type = GUTS_OBJ_BLOB;
        s_objs[0].data = s_blob;
        s_objs[0].len = 6;
        fill_id(&s_objs[1].id, 0x40);
        s_objs[1].type = GUTS_OBJ_TREE;
        s_objs[1].data = NULL;
        s_objs[1].len = 0;
        /* record forms: a zstd frame, and a delta against objs[0] (the codec
         * does not look inside payloads) */
        fill_id(&s_objs[2].id, 0x60);
        s_objs[2].type = GUTS_OBJ_BLOB;
        s_objs[2].enc = GUTS_WIRE_ENC_ZSTD;
        s_objs[2].size = 1000;
        s_objs[2].data = s_blob;
        s_objs[2].len = 6;
        fill_id(&s_objs[3].id, 0x70);
        s_objs[3].type = GUTS_OBJ_BLOB;
        s_objs[3].enc = GUTS_WIRE_ENC_DELTA;
        s_objs[3].size = 70000;
        s_objs[3].base = s_objs[0].id;
        s_objs[3].data = s_blob;
        s_objs[3].len = 6;
        m->u.objects.nobjs = 4;
        m->u.objects.objs = s_objs;
        break;
    case GUTS_MSG_OBJECT_CHUNK: {
        guts_msg_chunk *c = &m->u.chunk;
        c->key = "alice/guts";
        fill_id(&c->id, 0x50);
        c->type = GUTS_OBJ_BLOB;
        c->total = 5000000;
        c->offset = 4194304;
        c->data = s_chunk;
        c->len = 10;
        break;
    }
    case GUTS_MSG_REFS:
        m->u.refs.key = "alice/guts";
        memset(s_refs, 0, sizeof s_refs);
        s_refs[0].name = "refs/heads/main";
        fill_id(&s_refs[0].target, 0x60);
        s_refs[0].clock = 9;
        fill_node(&s_refs[0].writer, 0x01);
        s_refs[1].name = "HEAD";
        s_refs[1].symref = "refs/heads/main";
        s_refs[1].clock = 1;
        fill_node(&s_refs[1].writer, 0x02);
        s_refs[2].name = "refs/tags/v1.0";
        s_refs[2].clock = 0x100000000ull; /* zero target: a tombstone */
        fill_node(&s_refs[2].writer, 0x03);
        m->u.refs.nrefs = 3;
        m->u.refs.refs = s_refs;
        break;
    case GUTS_MSG_DONE:
        m->u.done.key = "alice/guts";
        m->u.done.space = GUTS_SPACE_REFS;
        m->u.done.sent = 1500;
        break;
    case GUTS_MSG_ERROR:
        m->u.error.code = GUTS_ENOTFOUND;
        m->u.error.text = "no such repository";
        break;
    case GUTS_MSG_DAMAGED:
        m->u.damaged.key = "alice/guts";
        fill_id(&m->u.damaged.id, 0x70);
        break;
    }
}

/* Encode into a malloc'ed buffer of exactly the right size. */
static uint8_t *encode_alloc(const guts_msg *m, size_t *len)
{
    size_t n;
    ck_assert_int_eq(guts_msg_size(m, &n), 0);
    uint8_t *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(guts_msg_encode(m, buf, n, len), 0);
    ck_assert_uint_eq(*len, n);
    return buf;
}

/* ---- Field-by-field comparison ------------------------------------------ */

static void assert_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n)
        ck_assert_mem_eq(a, b, n);
}

static void assert_same(const guts_msg *a, const guts_msg *b)
{
    ck_assert_uint_eq(a->type, b->type);
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_mem_eq(a->sender.b, b->sender.b, GUTS_NODE_ID_LEN);
    switch (a->type) {
    case GUTS_MSG_ANNOUNCE: {
        const guts_msg_announce *x = &a->u.announce, *y = &b->u.announce;
        ck_assert_uint_eq(x->incarnation, y->incarnation);
        ck_assert_uint_eq(x->port, y->port);
        ck_assert_uint_eq(x->interval_ms, y->interval_ms);
        ck_assert_uint_eq(x->page, y->page);
        ck_assert_uint_eq(x->pages, y->pages);
        ck_assert_uint_eq(x->nrepos, y->nrepos);
        for (uint32_t i = 0; i < x->nrepos; i++) {
            const guts_announce_repo *p = &x->repos[i], *q = &y->repos[i];
            ck_assert_str_eq(p->key, q->key);
            ck_assert_uint_eq(p->objects, q->objects);
            ck_assert_uint_eq(p->fp.lo, q->fp.lo);
            ck_assert_uint_eq(p->fp.hi, q->fp.hi);
            ck_assert_uint_eq(p->refs_digest, q->refs_digest);
            ck_assert_uint_eq(p->bloom_nbits, q->bloom_nbits);
            if (p->bloom_nbits) {
                ck_assert_uint_eq(p->bloom_covered, q->bloom_covered);
                ck_assert_uint_eq(p->bloom_seed, q->bloom_seed);
                ck_assert_uint_eq(p->bloom_k, q->bloom_k);
                assert_bytes(p->bloom_bits, q->bloom_bits, (p->bloom_nbits + 7) / 8);
            } else {
                ck_assert_uint_eq(q->bloom_covered, 0);
                ck_assert_ptr_null(q->bloom_bits);
            }
        }
        break;
    }
    case GUTS_MSG_LEAVE:
        ck_assert_uint_eq(a->u.leave.incarnation, b->u.leave.incarnation);
        break;
    case GUTS_MSG_PEERS:
        ck_assert_uint_eq(a->u.peers.npeers, b->u.peers.npeers);
        for (uint32_t i = 0; i < a->u.peers.npeers; i++) {
            const guts_wire_peer *p = &a->u.peers.peers[i], *q = &b->u.peers.peers[i];
            assert_bytes(p->id.b, q->id.b, GUTS_NODE_ID_LEN);
            ck_assert_uint_eq(p->addr_len, q->addr_len);
            assert_bytes(p->addr, q->addr, p->addr_len);
        }
        break;
    case GUTS_MSG_HELLO:
        ck_assert_uint_eq(a->u.hello.incarnation, b->u.hello.incarnation);
        ck_assert_uint_eq(a->u.hello.port, b->u.hello.port);
        break;
    case GUTS_MSG_RECON: {
        const guts_msg_recon *x = &a->u.recon, *y = &b->u.recon;
        ck_assert_str_eq(x->key, y->key);
        ck_assert_uint_eq(x->space, y->space);
        ck_assert_uint_eq(x->seed, y->seed);
        ck_assert_uint_eq(x->round, y->round);
        ck_assert_uint_eq(x->nitems, y->nitems);
        for (uint32_t i = 0; i < x->nitems; i++) {
            const guts_recon_item *p = &x->items[i], *q = &y->items[i];
            ck_assert_uint_eq(p->kind, q->kind);
            ck_assert_uint_eq(p->depth, q->depth);
            ck_assert_uint_eq(p->prefix, q->prefix);
            switch (p->kind) {
            case GUTS_ITEM_SPLIT:
                for (int j = 0; j < GUTS_RECON_FANOUT; j++)
                    ck_assert_uint_eq(p->fps[j], q->fps[j]);
                break;
            case GUTS_ITEM_MASK:
                ck_assert_uint_eq(p->mask, q->mask);
                break;
            case GUTS_ITEM_BLOOM:
                ck_assert_uint_eq(p->k, q->k);
                ck_assert_uint_eq(p->nbits, q->nbits);
                assert_bytes(p->bits, q->bits, (p->nbits + 7) / 8);
                break;
            }
        }
        break;
    }
    case GUTS_MSG_WANT:
        ck_assert_str_eq(a->u.want.key, b->u.want.key);
        ck_assert_uint_eq(a->u.want.nids, b->u.want.nids);
        for (uint32_t i = 0; i < a->u.want.nids; i++)
            ck_assert_mem_eq(a->u.want.ids[i].b, b->u.want.ids[i].b, GUTS_ID_LEN);
        break;
    case GUTS_MSG_OBJECTS:
        ck_assert_str_eq(a->u.objects.key, b->u.objects.key);
        ck_assert_uint_eq(a->u.objects.nobjs, b->u.objects.nobjs);
        for (uint32_t i = 0; i < a->u.objects.nobjs; i++) {
            const guts_wire_obj *p = &a->u.objects.objs[i], *q = &b->u.objects.objs[i];
            ck_assert_mem_eq(p->id.b, q->id.b, GUTS_ID_LEN);
            ck_assert_uint_eq(p->type, q->type);
            ck_assert_uint_eq(p->enc, q->enc);
            ck_assert_uint_eq(p->enc ? p->size : p->len, q->size);
            if (p->enc == GUTS_WIRE_ENC_DELTA)
                ck_assert_mem_eq(p->base.b, q->base.b, GUTS_ID_LEN);
            ck_assert_uint_eq(p->len, q->len);
            assert_bytes(p->data, q->data, p->len);
        }
        break;
    case GUTS_MSG_OBJECT_CHUNK: {
        const guts_msg_chunk *x = &a->u.chunk, *y = &b->u.chunk;
        ck_assert_str_eq(x->key, y->key);
        ck_assert_mem_eq(x->id.b, y->id.b, GUTS_ID_LEN);
        ck_assert_uint_eq(x->type, y->type);
        ck_assert_uint_eq(x->total, y->total);
        ck_assert_uint_eq(x->offset, y->offset);
        ck_assert_uint_eq(x->len, y->len);
        assert_bytes(x->data, y->data, x->len);
        break;
    }
    case GUTS_MSG_REFS:
        ck_assert_str_eq(a->u.refs.key, b->u.refs.key);
        ck_assert_uint_eq(a->u.refs.nrefs, b->u.refs.nrefs);
        for (uint32_t i = 0; i < a->u.refs.nrefs; i++) {
            const guts_wire_ref *p = &a->u.refs.refs[i], *q = &b->u.refs.refs[i];
            ck_assert_str_eq(p->name, q->name);
            ck_assert_mem_eq(p->target.b, q->target.b, GUTS_ID_LEN);
            if (p->symref)
                ck_assert_str_eq(p->symref, q->symref);
            else
                ck_assert_ptr_null(q->symref);
            ck_assert_uint_eq(p->clock, q->clock);
            ck_assert_mem_eq(p->writer.b, q->writer.b, GUTS_NODE_ID_LEN);
        }
        break;
    case GUTS_MSG_DONE:
        ck_assert_str_eq(a->u.done.key, b->u.done.key);
        ck_assert_uint_eq(a->u.done.space, b->u.done.space);
        ck_assert_uint_eq(a->u.done.sent, b->u.done.sent);
        break;
    case GUTS_MSG_DAMAGED:
        ck_assert_str_eq(a->u.damaged.key, b->u.damaged.key);
        ck_assert_mem_eq(a->u.damaged.id.b, b->u.damaged.id.b, GUTS_ID_LEN);
        break;
    case GUTS_MSG_ERROR:
        ck_assert_int_eq(a->u.error.code, b->u.error.code);
        ck_assert_uint_eq(a->u.error.retry_after_ms, b->u.error.retry_after_ms);
        if (a->u.error.text)
            ck_assert_str_eq(a->u.error.text, b->u.error.text);
        else
            ck_assert_ptr_null(b->u.error.text);
        break;
    default:
        ck_abort_msg("unexpected type %d", a->type);
    }
}

static void round_trip(const guts_msg *m)
{
    size_t len;
    uint8_t *buf = encode_alloc(m, &len);
    guts_msg d;
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    assert_same(m, &d);
    guts_msg_free(&d);
    free(buf);
}

/* ---- Round trips ----------------------------------------------------------- */

START_TEST(test_every_message_type_round_trips_field_by_field)
{
    guts_msg m;
    sample(sample_types[_i], &m);
    round_trip(&m);
}
END_TEST

START_TEST(test_announce_with_large_bloom_and_three_repos_round_trips)
{
    guts_msg m;
    sample(GUTS_MSG_ANNOUNCE, &m);
    m.u.announce.nrepos = 3;
    m.u.announce.incarnation = UINT64_MAX;
    m.u.announce.pages = 300;
    round_trip(&m);
}
END_TEST

START_TEST(test_recon_with_depth_zero_item_round_trips)
{
    guts_msg m;
    sample(GUTS_MSG_RECON, &m);
    m.u.recon.nitems = 5;
    m.u.recon.space = GUTS_SPACE_REFS;
    round_trip(&m);
}
END_TEST

START_TEST(test_empty_lists_and_nil_error_text_round_trip)
{
    guts_msg m;
    sample(GUTS_MSG_WANT, &m);
    m.u.want.nids = 0;
    m.u.want.ids = NULL;
    round_trip(&m);
    sample(GUTS_MSG_ANNOUNCE, &m);
    m.u.announce.nrepos = 0;
    round_trip(&m);
    sample(GUTS_MSG_ERROR, &m);
    m.u.error.text = NULL;
    m.u.error.code = INT32_MIN;
    round_trip(&m);
}
END_TEST

/* docs/protocol.md's bytes for a busy answer: the retry-after is a third
 * element, present only when set, so other errors keep their old bytes. */
START_TEST(test_busy_error_carries_its_retry_after_as_a_third_element)
{
    guts_msg m;
    memset(&m, 0, sizeof(m));
    m.type = GUTS_MSG_ERROR;
    m.version = GUTS_WIRE_VERSION;
    m.u.error.code = GUTS_EAGAIN;
    m.u.error.text = "busy";
    m.u.error.retry_after_ms = 100;
    uint8_t buf[64];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof(buf), &len), 0);
    static const uint8_t body[] = {0x93, 0xf2, 0xa4, 'b', 'u', 's', 'y', 0x64};
    ck_assert_uint_eq(len, 26 + sizeof(body));
    ck_assert_mem_eq(buf + 26, body, sizeof(body));
    guts_msg d;
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    ck_assert_uint_eq(d.u.error.retry_after_ms, 100);
    guts_msg_free(&d);
    m.u.error.retry_after_ms = 0;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(buf[26], 0x92);
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    ck_assert_uint_eq(d.u.error.retry_after_ms, 0);
    guts_msg_free(&d);
}
END_TEST

/* docs/protocol.md's bytes for DAMAGED: the key and the id, 60 bytes. */
START_TEST(test_damaged_is_a_key_and_an_id)
{
    guts_msg m;
    memset(&m, 0, sizeof(m));
    m.type = GUTS_MSG_DAMAGED;
    m.u.damaged.key = "alice/repo";
    memset(m.u.damaged.id.b, 0x3f, GUTS_ID_LEN);
    uint8_t buf[64];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(len, 60);
    static const uint8_t head[] = {0x92, 0xaa, 'a', 'l', 'i', 'c', 'e', '/', 'r', 'e', 'p', 'o',
                                   0xc4, 0x14, 0x3f};
    ck_assert_mem_eq(buf + 26, head, sizeof(head));
    ck_assert_uint_eq(buf[7], GUTS_MSG_DAMAGED);
    guts_msg d;
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    ck_assert_str_eq(d.u.damaged.key, "alice/repo");
    ck_assert_mem_eq(d.u.damaged.id.b, m.u.damaged.id.b, GUTS_ID_LEN);
    guts_msg_free(&d);
    buf[26] = 0x93; /* a third element is malformed */
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), GUTS_EPROTO);
}
END_TEST

START_TEST(test_decoded_strings_are_nul_terminated_copies)
{
    guts_msg m, d;
    size_t len;
    sample(GUTS_MSG_REFS, &m);
    uint8_t *buf = encode_alloc(&m, &len);
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    /* Strings live outside the input (the arena), bins inside it. */
    ck_assert(!((const uint8_t *)d.u.refs.key >= buf &&
                (const uint8_t *)d.u.refs.key < buf + len));
    ck_assert_uint_eq(strlen(d.u.refs.refs[1].symref), strlen("refs/heads/main"));
    guts_msg_free(&d);
    ck_assert_ptr_null(d.arena);
    free(buf);
}
END_TEST

START_TEST(test_free_is_safe_on_a_zeroed_message)
{
    guts_msg m;
    memset(&m, 0, sizeof m);
    guts_msg_free(&m);
    guts_msg_free(NULL);
}
END_TEST

START_TEST(test_fingerprint_bytes_are_lo_then_hi_big_endian)
{
    guts_msg m;
    size_t len;
    sample(GUTS_MSG_ANNOUNCE, &m);
    m.u.announce.nrepos = 1;
    uint8_t *buf = encode_alloc(&m, &len);
    static const uint8_t fp[] = {0xc4, 0x10, 1, 2, 3, 4, 5, 6, 7, 8,
                                 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
    ck_assert_ptr_nonnull(memmem(buf, len, fp, sizeof fp));
    free(buf);
}
END_TEST

START_TEST(test_ints_use_the_most_compact_msgpack_form)
{
    guts_msg m;
    memset(&m, 0, sizeof m);
    m.type = GUTS_MSG_LEAVE;
    size_t len;
    uint8_t buf[64];
    static const struct { uint64_t v; size_t bytes; } t[] = {
        {0, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3},
        {65536, 5}, {UINT32_MAX, 5}, {1ull << 32, 9}, {UINT64_MAX, 9}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        m.u.leave.incarnation = t[i].v;
        ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), 0);
        /* envelope 26 + body fixarray 1 + the int */
        ck_assert_uint_eq(len, 27 + t[i].bytes);
    }
}
END_TEST

START_TEST(test_non_canonical_int_forms_from_other_encoders_decode)
{
    /* LEAVE with incarnation 5 as uint64 and type 2 as int8. */
    static const uint8_t msg[] = {
        0x95, 0xce, 0x47, 0x55, 0x54, 0x53, 0xcd, 0x00, 0x01, 0xd0, 0x02, 0xc4, 0x10,
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        0x91, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5};
    guts_msg d;
    ck_assert_int_eq(guts_msg_decode(msg, sizeof msg, &d), 0);
    ck_assert_uint_eq(d.type, GUTS_MSG_LEAVE);
    ck_assert_uint_eq(d.u.leave.incarnation, 5);
    ck_assert_uint_eq(d.sender.b[15], 15);
    guts_msg_free(&d);
}
END_TEST

/* ---- Encoder refusals ------------------------------------------------------ */

START_TEST(test_encode_fails_cleanly_with_etoobig_on_every_short_cap)
{
    for (int t = 0; t < NSAMPLES; t++) {
        guts_msg m;
        size_t need, len = 12345;
        sample(sample_types[t], &m);
        ck_assert_int_eq(guts_msg_size(&m, &need), 0);
        uint8_t *buf = malloc(need + 16);
        for (size_t cap = 0; cap < need; cap++) {
            memset(buf, 0xee, need + 16);
            ck_assert_int_eq(guts_msg_encode(&m, buf, cap, &len), GUTS_ETOOBIG);
            ck_assert_uint_eq(len, 12345); /* untouched */
            for (size_t i = 0; i < need + 16; i++)
                ck_assert_uint_eq(buf[i], 0xee); /* nothing written at all */
        }
        ck_assert_int_eq(guts_msg_encode(&m, buf, need, &len), 0);
        ck_assert_uint_eq(len, need);
        free(buf);
    }
}
END_TEST

START_TEST(test_encode_refuses_what_decode_would_reject)
{
    guts_msg m;
    uint8_t buf[4096];
    size_t len;

    sample(GUTS_MSG_DONE, &m);
    m.u.done.key = "../x";
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    m.u.done.key = NULL;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);

    sample(GUTS_MSG_RECON, &m);
    s_items[3].depth = 9;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    sample(GUTS_MSG_RECON, &m);
    s_items[1].prefix = 0x1a3; /* 12 bits at depth 2 */
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    sample(GUTS_MSG_RECON, &m);
    s_items[2].k = 0;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    sample(GUTS_MSG_RECON, &m);
    s_items[0].kind = 7;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);

    sample(GUTS_MSG_REFS, &m);
    s_refs[0].name = "refs/heads/a..b";
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    sample(GUTS_MSG_REFS, &m);
    s_refs[1].symref = "main";
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);

    sample(GUTS_MSG_ANNOUNCE, &m);
    m.u.announce.nrepos = GUTS_ANNOUNCE_REPOS_MAX + 1;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);

    sample(GUTS_MSG_OBJECT_CHUNK, &m);
    m.u.chunk.offset = m.u.chunk.total - 5;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);

    sample(GUTS_MSG_LEAVE, &m);
    m.type = 99;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
}
END_TEST

/* ---- Malformed inputs ------------------------------------------------------ */

typedef struct craft {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} craft;

/* Start a crafted message: envelope with the given magic, version, type. */
static void craft_begin(craft *c, uint64_t magic, uint64_t version, uint64_t type)
{
    static const uint8_t sender[16] = {0};
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    msgpack_pack_array(&c->pk, 5);
    msgpack_pack_uint64(&c->pk, magic);
    msgpack_pack_uint64(&c->pk, version);
    msgpack_pack_uint64(&c->pk, type);
    msgpack_pack_bin_with_body(&c->pk, sender, 16);
}

static void craft_str(craft *c, const char *s, size_t n)
{
    msgpack_pack_str_with_body(&c->pk, s, n);
}

static void craft_bin(craft *c, const void *b, size_t n)
{
    msgpack_pack_bin_with_body(&c->pk, b, n);
}

static int craft_decode(craft *c)
{
    guts_msg d;
    int rc = guts_msg_decode((const uint8_t *)c->sb.data, c->sb.size, &d);
    guts_msg_free(&d);
    msgpack_sbuffer_destroy(&c->sb);
    return rc;
}

static int decode_bytes(const uint8_t *b, size_t n)
{
    guts_msg d;
    int rc = guts_msg_decode(b, n, &d);
    guts_msg_free(&d);
    return rc;
}

/* DONE with a given key string (n bytes, may hold a NUL). */
static int done_with_key(const char *key, size_t n)
{
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_DONE);
    msgpack_pack_array(&c.pk, 3);
    craft_str(&c, key, n);
    msgpack_pack_uint8(&c.pk, 0);
    msgpack_pack_uint8(&c.pk, 1);
    return craft_decode(&c);
}

static int refs_with(const char *name, const char *symref)
{
    static const uint8_t id[20] = {1}, node[16] = {2};
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_REFS);
    msgpack_pack_array(&c.pk, 2);
    craft_str(&c, "a/b", 3);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 5);
    craft_str(&c, name, strlen(name));
    craft_bin(&c, id, 20);
    if (symref)
        craft_str(&c, symref, strlen(symref));
    else
        msgpack_pack_nil(&c.pk);
    msgpack_pack_uint8(&c.pk, 1);
    craft_bin(&c, node, 16);
    return craft_decode(&c);
}

/* RECON of n copies of one item given as packed bytes by the callback. */
typedef void (*item_fn)(msgpack_packer *pk);
static int recon_with(uint32_t n, item_fn fn)
{
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_RECON);
    msgpack_pack_array(&c.pk, 5);
    craft_str(&c, "a/b", 3);
    msgpack_pack_uint8(&c.pk, 0);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 0);
    msgpack_pack_array(&c.pk, n);
    for (uint32_t i = 0; i < n; i++)
        fn(&c.pk);
    return craft_decode(&c);
}

static void item_all(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_ALL);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_nil(pk);
}
static void item_depth9(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_ALL);
    msgpack_pack_uint8(pk, 9);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_nil(pk);
}
static void item_prefix_too_wide(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_ALL);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint8(pk, 16);
    msgpack_pack_nil(pk);
}
static void item_kind5(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 5);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_nil(pk);
}
static void item_kind0(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_nil(pk);
}
static void bloom_item(msgpack_packer *pk, uint64_t k, uint64_t nbits, size_t nbytes)
{
    static uint8_t bits[2048];
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_BLOOM);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, k);
    msgpack_pack_uint64(pk, nbits);
    msgpack_pack_bin_with_body(pk, bits, nbytes);
}
static void item_bloom_short_bin(msgpack_packer *pk) { bloom_item(pk, 7, 100, 12); }
static void item_bloom_long_bin(msgpack_packer *pk) { bloom_item(pk, 7, 100, 14); }
static void item_bloom_k0(msgpack_packer *pk) { bloom_item(pk, 0, 8, 1); }
static void item_bloom_k33(msgpack_packer *pk) { bloom_item(pk, 33, 8, 1); }
static void item_bloom_nbits0(msgpack_packer *pk) { bloom_item(pk, 7, 0, 0); }
static void item_bloom_over_max(msgpack_packer *pk)
{
    bloom_item(pk, 7, (uint64_t)GUTS_BLOOM_BITS_MAX + 1, 8);
}
static void item_bloom_ok(msgpack_packer *pk) { bloom_item(pk, 7, 100, 13); }
static void item_split_short(msgpack_packer *pk)
{
    uint8_t fps[31] = {0};
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_SPLIT);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_bin_with_body(pk, fps, sizeof fps);
}
static void item_mask_17bits(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_MASK);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint32(pk, 0x10000);
}
static void item_all_not_nil(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, GUTS_ITEM_ALL);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
    msgpack_pack_uint8(pk, 0);
}

START_TEST(test_raw_byte_inputs_are_rejected)
{
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
        int rc;
    } t[] = {
        {"empty buffer", {0}, 0, GUTS_EPROTO},
        {"array32 of 4G elements", {0xdd, 0xff, 0xff, 0xff, 0xff}, 5, GUTS_EPROTO},
        {"array16 of 64K elements", {0xdc, 0xff, 0xff}, 3, GUTS_EPROTO},
        {"map32 header", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5, GUTS_EPROTO},
        {"bin32 of 4 GB", {0xc6, 0xff, 0xff, 0xff, 0xff}, 5, GUTS_EPROTO},
        {"str32 of 4 GB", {0xdb, 0xff, 0xff, 0xff, 0xff}, 5, GUTS_EPROTO},
        {"nil", {0xc0}, 1, GUTS_EPROTO},
        {"empty array", {0x90}, 1, GUTS_EPROTO},
        {"envelope of 2", {0x92, 0xce, 0x47, 0x55, 0x54, 0x53, 0x01}, 7, GUTS_EPROTO},
        {"sender bin32 of 4 GB",
         {0x95, 0xce, 0x47, 0x55, 0x54, 0x53, 0x01, 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff},
         13, GUTS_EPROTO},
        {"wrong magic", {0x95, 0xce, 0x47, 0x55, 0x54, 0x54, 0x01, 0x01}, 8, GUTS_EPROTO},
        {"magic as str", {0x95, 0xa4, 'G', 'U', 'T', 'S', 0x01, 0x01}, 8, GUTS_EPROTO},
        {"version 0", {0x95, 0xce, 0x47, 0x55, 0x54, 0x53, 0x00, 0x01}, 8, GUTS_EPROTO},
        {"version 2, rest absent", {0x95, 0xce, 0x47, 0x55, 0x54, 0x53, 0x02}, 7, GUTS_EVERSION},
        {"version 2, envelope of 3", {0x93, 0xce, 0x47, 0x55, 0x54, 0x53, 0x02, 0xc0}, 8,
         GUTS_EVERSION},
        {"version 1, envelope of 4", {0x94, 0xce, 0x47, 0x55, 0x54, 0x53, 0x01, 0x01}, 8,
         GUTS_EPROTO},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(decode_bytes(t[i].b, t[i].n) == t[i].rc, "%s: got %d want %d",
                      t[i].what, decode_bytes(t[i].b, t[i].n), t[i].rc);
}
END_TEST

START_TEST(test_version_and_unknown_type_are_reported_for_counting)
{
    craft c;
    guts_msg d;
    craft_begin(&c, GUTS_WIRE_MAGIC, 2, GUTS_MSG_HELLO);
    msgpack_pack_map(&c.pk, 0); /* a newer body we cannot know */
    ck_assert_int_eq(guts_msg_decode((const uint8_t *)c.sb.data, c.sb.size, &d),
                     GUTS_EVERSION);
    ck_assert_uint_eq(d.version, 2);
    guts_msg_free(&d);
    msgpack_sbuffer_destroy(&c.sb);

    craft_begin(&c, GUTS_WIRE_MAGIC, 1, 99);
    msgpack_pack_array(&c.pk, 0);
    ck_assert_int_eq(guts_msg_decode((const uint8_t *)c.sb.data, c.sb.size, &d),
                     GUTS_ENOTFOUND);
    ck_assert_uint_eq(d.type, 99);
    ck_assert_ptr_null(d.arena);
    guts_msg_free(&d);
    msgpack_sbuffer_destroy(&c.sb);

    craft_begin(&c, GUTS_WIRE_MAGIC, 1, 8); /* gap between RELEASE and HELLO */
    msgpack_pack_array(&c.pk, 0);
    ck_assert_int_eq(craft_decode(&c), GUTS_ENOTFOUND);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, 1000);
    msgpack_pack_array(&c.pk, 0);
    ck_assert_int_eq(craft_decode(&c), GUTS_ENOTFOUND);
}
END_TEST

START_TEST(test_trailing_bytes_are_rejected)
{
    guts_msg m;
    size_t len;
    sample(GUTS_MSG_HELLO, &m);
    uint8_t *buf = encode_alloc(&m, &len);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0xc0;
    ck_assert_int_eq(decode_bytes(longer, len + 1), GUTS_EPROTO);
    ck_assert_int_eq(decode_bytes(longer, len), 0);
    free(longer);
    free(buf);
}
END_TEST

START_TEST(test_bad_repo_keys_are_rejected)
{
    static const struct { const char *key; size_t n; } t[] = {
        {"../x", 4}, {"a/b/c", 5}, {"", 0}, {"ab", 2}, {"a/", 2}, {"/b", 2},
        {"a/..", 4}, {"a/.hidden", 9}, {"a b/c", 5}, {"a/b\0c", 5}, {"a/b\n", 4}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(done_with_key(t[i].key, t[i].n) == GUTS_EPROTO, "key %zu", i);
    char longkey[300];
    memset(longkey, 'x', sizeof longkey);
    longkey[100] = '/';
    ck_assert_int_eq(done_with_key(longkey, sizeof longkey), GUTS_EPROTO);
    ck_assert_int_eq(done_with_key("a/b", 3), 0); /* the control case */
}
END_TEST

START_TEST(test_bad_ref_names_are_rejected)
{
    static const char *bad[] = {"master", "refs/heads/a..b", "refs/heads/x.lock",
                                "refs/heads/", "refs//x", "refs/heads/a b",
                                "refs/heads/a~1", "refs/heads/@{x}", "refs/.x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(refs_with(bad[i], NULL) == GUTS_EPROTO, "%s", bad[i]);
    ck_assert_int_eq(refs_with("HEAD", "refs/heads/a..b"), GUTS_EPROTO);
    ck_assert_int_eq(refs_with("HEAD", "main"), GUTS_EPROTO);
    ck_assert_int_eq(refs_with("HEAD", "refs/heads/main"), 0);
    ck_assert_int_eq(refs_with("refs/heads/main", NULL), 0);
}
END_TEST

START_TEST(test_nesting_deeper_than_the_schema_is_rejected)
{
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_LEAVE);
    for (int i = 0; i < 1000; i++)
        msgpack_pack_array(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* A RECON whose items nest past GUTS_WIRE_DEPTH_MAX. */
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_RECON);
    msgpack_pack_array(&c.pk, 5);
    craft_str(&c, "a/b", 3);
    msgpack_pack_uint8(&c.pk, 0);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 0);
    for (int i = 0; i < GUTS_WIRE_DEPTH_MAX + 1; i++)
        msgpack_pack_array(&c.pk, 1);
    msgpack_pack_nil(&c.pk);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
}
END_TEST

START_TEST(test_recon_item_violations_are_rejected)
{
    static const struct { const char *what; item_fn fn; } t[] = {
        {"depth 9", item_depth9}, {"prefix wider than depth", item_prefix_too_wide},
        {"kind 5", item_kind5}, {"kind 0", item_kind0},
        {"bloom bin too short", item_bloom_short_bin},
        {"bloom bin too long", item_bloom_long_bin}, {"bloom k 0", item_bloom_k0},
        {"bloom k 33", item_bloom_k33}, {"bloom nbits 0", item_bloom_nbits0},
        {"bloom nbits over max", item_bloom_over_max},
        {"split of 31 bytes", item_split_short}, {"mask of 17 bits", item_mask_17bits},
        {"all with a payload", item_all_not_nil}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(recon_with(1, t[i].fn) == GUTS_EPROTO, "%s", t[i].what);
    ck_assert_int_eq(recon_with(1, item_bloom_ok), 0);
}
END_TEST

/* PEERS with n entries, each a node id of idlen bytes and an address of
 * alen bytes. */
static int peers_with(uint32_t n, size_t idlen, size_t alen)
{
    static const uint8_t b[32] = {0};
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_PEERS);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_array(&c.pk, 2);
        craft_bin(&c, b, idlen);
        craft_bin(&c, b, alen);
    }
    return craft_decode(&c);
}

START_TEST(test_peers_over_their_limits_are_rejected)
{
    static const struct {
        const char *what;
        uint32_t n;
        size_t idlen, alen;
        int want;
    } t[] = {
        {"16 IPv6 peers", GUTS_PEERS_MAX, 16, 18, 0},
        {"none", 0, 16, 6, 0},
        {"17 peers", GUTS_PEERS_MAX + 1, 16, 6, GUTS_EPROTO},
        {"an empty address", 1, 16, 0, GUTS_EPROTO},
        {"a 19-byte address", 1, 16, GUTS_WIRE_ADDR_MAX + 1, GUTS_EPROTO},
        {"a 15-byte node id", 1, 15, 6, GUTS_EPROTO},
        {"a 17-byte node id", 1, 17, 6, GUTS_EPROTO},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        ck_assert_msg(peers_with(t[i].n, t[i].idlen, t[i].alen) == t[i].want, "%s", t[i].what);
    /* the encoder refuses what the decoder would */
    guts_msg m;
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    sample(GUTS_MSG_PEERS, &m);
    m.u.peers.npeers = GUTS_PEERS_MAX + 1;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    sample(GUTS_MSG_PEERS, &m);
    s_peers[1].addr_len = 0;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), GUTS_EINVAL);
    /* the largest PEERS fits a sealed datagram with room to spare */
    static guts_wire_peer many[GUTS_PEERS_MAX];
    memset(many, 0xff, sizeof many);
    for (int i = 0; i < GUTS_PEERS_MAX; i++)
        many[i].addr_len = GUTS_WIRE_ADDR_MAX;
    sample(GUTS_MSG_PEERS, &m);
    m.u.peers.npeers = GUTS_PEERS_MAX;
    m.u.peers.peers = many;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), 0);
    ck_assert_uint_le(len, 700);
}
END_TEST

START_TEST(test_counts_over_their_limits_are_rejected)
{
    ck_assert_int_eq(recon_with(GUTS_ITEMS_MAX, item_all), 0);
    ck_assert_int_eq(recon_with(GUTS_ITEMS_MAX + 1, item_all), GUTS_EPROTO);

    static const uint8_t id[20] = {0};
    for (uint32_t n = GUTS_WANT_MAX; n <= GUTS_WANT_MAX + 1; n++) {
        craft c;
        craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_WANT);
        msgpack_pack_array(&c.pk, 2);
        craft_str(&c, "a/b", 3);
        msgpack_pack_array(&c.pk, n);
        for (uint32_t i = 0; i < n; i++)
            craft_bin(&c, id, 20);
        ck_assert_int_eq(craft_decode(&c), n > GUTS_WANT_MAX ? GUTS_EPROTO : 0);
    }
    for (uint32_t n = GUTS_ANNOUNCE_REPOS_MAX; n <= GUTS_ANNOUNCE_REPOS_MAX + 1; n++) {
        static const uint8_t fp[16] = {0};
        craft c;
        craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ANNOUNCE);
        msgpack_pack_array(&c.pk, 6);
        for (int i = 0; i < 5; i++)
            msgpack_pack_uint8(&c.pk, 1);
        msgpack_pack_array(&c.pk, n);
        for (uint32_t i = 0; i < n; i++) {
            msgpack_pack_array(&c.pk, 5);
            craft_str(&c, "a/b", 3);
            msgpack_pack_uint8(&c.pk, 0);
            craft_bin(&c, fp, 16);
            msgpack_pack_uint8(&c.pk, 0);
            msgpack_pack_nil(&c.pk);
        }
        ck_assert_int_eq(craft_decode(&c), n > GUTS_ANNOUNCE_REPOS_MAX ? GUTS_EPROTO : 0);
    }
    /* A count the bytes cannot hold fails before any allocation. */
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_OBJECTS);
    msgpack_pack_array(&c.pk, 2);
    craft_str(&c, "a/b", 3);
    msgpack_pack_array(&c.pk, 0xffffffffu);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
}
END_TEST

/* ANNOUNCE of one repo whose bloom is (k, nbits, nbytes bytes). */
static int announce_bloom(uint64_t k, uint64_t nbits, size_t nbytes)
{
    static const uint8_t fp[16] = {0};
    static uint8_t bits[256];
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ANNOUNCE);
    msgpack_pack_array(&c.pk, 6);
    for (int i = 0; i < 5; i++)
        msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 5);
    craft_str(&c, "a/b", 3);
    msgpack_pack_uint8(&c.pk, 10);
    craft_bin(&c, fp, 16);
    msgpack_pack_uint8(&c.pk, 0);
    msgpack_pack_array(&c.pk, 5);
    msgpack_pack_uint8(&c.pk, 10);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint64(&c.pk, k);
    msgpack_pack_uint64(&c.pk, nbits);
    craft_bin(&c, bits, nbytes);
    return craft_decode(&c);
}

START_TEST(test_announce_bloom_violations_are_rejected)
{
    ck_assert_int_eq(announce_bloom(7, 100, 13), 0);
    ck_assert_int_eq(announce_bloom(7, 100, 12), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(7, 100, 14), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(0, 8, 1), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(33, 8, 1), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(7, 0, 0), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(7, (uint64_t)GUTS_BLOOM_BITS_MAX + 8, 1), GUTS_EPROTO);
    ck_assert_int_eq(announce_bloom(7, 1ull << 35, 1), GUTS_EPROTO);
}
END_TEST

START_TEST(test_field_type_and_range_violations_are_rejected)
{
    craft c;
    /* HELLO port as a string, port 65536, negative incarnation. */
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_HELLO);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 1);
    craft_str(&c, "80", 2);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_HELLO);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint32(&c.pk, 65536);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_HELLO);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_int8(&c.pk, -1);
    msgpack_pack_uint8(&c.pk, 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* Body as a map, body with one field too many. */
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_LEAVE);
    msgpack_pack_map(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_LEAVE);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* DONE space 2. */
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_DONE);
    msgpack_pack_array(&c.pk, 3);
    craft_str(&c, "a/b", 3);
    msgpack_pack_uint8(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 0);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* ERROR text over the limit; code outside int32. */
    char text[GUTS_ERROR_TEXT_MAX + 1];
    memset(text, 'e', sizeof text);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ERROR);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_int8(&c.pk, -1);
    craft_str(&c, text, sizeof text);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ERROR);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_int64(&c.pk, INT64_MIN);
    msgpack_pack_nil(&c.pk);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* ERROR retry-after over a minute; a fourth element. */
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ERROR);
    msgpack_pack_array(&c.pk, 3);
    msgpack_pack_int8(&c.pk, GUTS_EAGAIN);
    msgpack_pack_nil(&c.pk);
    msgpack_pack_uint32(&c.pk, GUTS_RETRY_AFTER_MAX_MS + 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_ERROR);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_int8(&c.pk, GUTS_EAGAIN);
    msgpack_pack_nil(&c.pk);
    msgpack_pack_uint8(&c.pk, 100);
    msgpack_pack_uint8(&c.pk, 0);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
    /* Sender of 15 bytes. */
    msgpack_sbuffer_init(&c.sb);
    msgpack_packer_init(&c.pk, &c.sb, msgpack_sbuffer_write);
    msgpack_pack_array(&c.pk, 5);
    msgpack_pack_uint32(&c.pk, GUTS_WIRE_MAGIC);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, GUTS_MSG_LEAVE);
    craft_bin(&c, "0123456789abcde", 15);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
}
END_TEST

/* OBJECT_CHUNK with the given total, offset and data length. */
static int chunk_with(uint64_t total, uint64_t offset, size_t n, uint64_t type)
{
    static const uint8_t id[20] = {0}, data[64] = {0};
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_OBJECT_CHUNK);
    msgpack_pack_array(&c.pk, 6);
    craft_str(&c, "a/b", 3);
    craft_bin(&c, id, 20);
    msgpack_pack_uint64(&c.pk, type);
    msgpack_pack_uint64(&c.pk, total);
    msgpack_pack_uint64(&c.pk, offset);
    craft_bin(&c, data, n);
    return craft_decode(&c);
}

START_TEST(test_object_bounds_are_enforced)
{
    ck_assert_int_eq(chunk_with(100, 90, 10, GUTS_OBJ_BLOB), 0);
    ck_assert_int_eq(chunk_with(100, 91, 10, GUTS_OBJ_BLOB), GUTS_EPROTO);
    ck_assert_int_eq(chunk_with(100, 101, 0, GUTS_OBJ_BLOB), GUTS_EPROTO);
    ck_assert_int_eq(chunk_with(UINT64_MAX, UINT64_MAX - 2, 10, GUTS_OBJ_BLOB), GUTS_EPROTO);
    ck_assert_int_eq(chunk_with(GUTS_OBJ_MAX_DEFAULT + 1, 0, 10, GUTS_OBJ_BLOB), GUTS_EPROTO);
    ck_assert_int_eq(chunk_with(GUTS_OBJ_MAX_DEFAULT, 0, 10, GUTS_OBJ_BLOB), 0);
    ck_assert_int_eq(chunk_with(100, 0, 10, 0), GUTS_EPROTO);
    ck_assert_int_eq(chunk_with(100, 0, 10, 5), GUTS_EPROTO);
    /* OBJECTS with an object type outside git's four. */
    static const uint8_t id[20] = {0};
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_OBJECTS);
    msgpack_pack_array(&c.pk, 2);
    craft_str(&c, "a/b", 3);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 3);
    craft_bin(&c, id, 20);
    msgpack_pack_uint8(&c.pk, 6);
    craft_bin(&c, "x", 1);
    ck_assert_int_eq(craft_decode(&c), GUTS_EPROTO);
}
END_TEST

/* One OBJECTS frame holding one object of n fields: id, blob, then enc,
 * size and base (0: nil, 1: an id, 2: a uint) as given, then "x". */
static int record_with(uint32_t n, uint64_t enc, uint64_t size, int base)
{
    static const uint8_t id[20] = {1};
    craft c;
    craft_begin(&c, GUTS_WIRE_MAGIC, 1, GUTS_MSG_OBJECTS);
    msgpack_pack_array(&c.pk, 2);
    craft_str(&c, "a/b", 3);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, n);
    craft_bin(&c, id, 20);
    msgpack_pack_uint8(&c.pk, GUTS_OBJ_BLOB);
    if (n >= 6) {
        msgpack_pack_uint64(&c.pk, enc);
        msgpack_pack_uint64(&c.pk, size);
        if (base == 0)
            msgpack_pack_nil(&c.pk);
        else if (base == 1)
            craft_bin(&c, id, 20);
        else
            msgpack_pack_uint8(&c.pk, 1);
    } else if (n == 4) {
        msgpack_pack_uint64(&c.pk, enc);
    }
    craft_bin(&c, "x", 1);
    return craft_decode(&c);
}

START_TEST(test_object_record_form_is_checked)
{
    static const struct {
        const char *what;
        uint32_t n;
        uint64_t enc, size;
        int base, want;
    } cases[] = {
        {"zstd, nil base", 6, GUTS_WIRE_ENC_ZSTD, 100, 0, 0},
        {"delta with its base", 6, GUTS_WIRE_ENC_DELTA, 100, 1, 0},
        {"largest size", 6, GUTS_WIRE_ENC_ZSTD, GUTS_OBJ_MAX_DEFAULT, 0, 0},
        {"size over the object limit", 6, GUTS_WIRE_ENC_ZSTD, GUTS_OBJ_MAX_DEFAULT + 1, 0,
         GUTS_EPROTO},
        {"raw in the record form", 6, GUTS_WIRE_ENC_RAW, 1, 0, GUTS_EPROTO},
        {"unknown encoding", 6, 3, 100, 0, GUTS_EPROTO},
        {"delta without a base", 6, GUTS_WIRE_ENC_DELTA, 100, 0, GUTS_EPROTO},
        {"zstd with a base", 6, GUTS_WIRE_ENC_ZSTD, 100, 1, GUTS_EPROTO},
        {"base not an id", 6, GUTS_WIRE_ENC_DELTA, 100, 2, GUTS_EPROTO},
        {"four fields", 4, GUTS_WIRE_ENC_ZSTD, 0, 0, GUTS_EPROTO},
        {"seven fields", 7, GUTS_WIRE_ENC_ZSTD, 100, 0, GUTS_EPROTO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(record_with(cases[i].n, cases[i].enc, cases[i].size, cases[i].base) ==
                          cases[i].want,
                      "%s", cases[i].what);
}
END_TEST

START_TEST(test_every_truncation_of_every_message_is_rejected)
{
    for (int t = 0; t < NSAMPLES; t++) {
        guts_msg m;
        size_t len;
        sample(sample_types[t], &m);
        uint8_t *buf = encode_alloc(&m, &len);
        for (size_t n = 0; n < len; n++) {
            /* A fresh allocation of exactly n bytes: ASan flags any overread. */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, buf, n);
            ck_assert_msg(decode_bytes(cut, n) == GUTS_EPROTO, "%s cut at %zu",
                          guts_msg_name(m.type), n);
            free(cut);
        }
        free(buf);
    }
}
END_TEST

/* ---- Fuzz ------------------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rng(void)
{
    /* xorshift64*: deterministic, good enough to pick mutations. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

#define FUZZ_ITERS 200000
#define FUZZ_SLACK 8 /* room for inserted bytes */

/* ---- Random valid messages ------------------------------------------------- */

/* Values at every msgpack width boundary, or anything. */
static uint64_t rand_u64(void)
{
    static const uint64_t edge[] = {0, 1, 127, 128, 255, 256, 65535, 65536,
                                    UINT32_MAX, 1ull << 32, UINT64_MAX};
    return rng() % 2 ? edge[rng() % (sizeof edge / sizeof edge[0])] : rng() >> (rng() % 64);
}

static char long_key[GUTS_KEY_MAX + 1], long_ref[GUTS_REFNAME_MAX + 1];

static const char *rand_key(void)
{
    static const char *keys[] = {"a/b", "alice/guts", "Owner_1/repo.name-2", long_key};
    return keys[rng() % 4];
}

static const char *rand_ref(void)
{
    static const char *refs[] = {"HEAD", "refs/heads/main", "refs/tags/v1.0",
                                 "refs/guts/conflicts/0123456789abcdef0123456789abcdef/refs/heads/x",
                                 long_ref};
    return refs[rng() % 5];
}

/* Mostly small counts, sometimes past the fixarray/bin8 boundaries. */
static uint32_t rand_count(uint32_t max)
{
    uint32_t n = rng() % 8 ? (uint32_t)(rng() % 20) : (uint32_t)(rng() % 300);
    return n > max ? max : n;
}

static uint8_t rand_bits[80000];

static void rand_bloom(uint8_t *k, uint32_t *nbits, const uint8_t **bits)
{
    *k = (uint8_t)(1 + rng() % GUTS_BLOOM_K_MAX);
    *nbits = (uint32_t)(1 + (rng() % 8 ? rng() % 3000 : rng() % (8 * sizeof rand_bits)));
    *bits = rand_bits;
}

static void rand_msg(guts_msg *m)
{
    static guts_announce_repo repos[GUTS_ANNOUNCE_REPOS_MAX];
    static guts_recon_item items[300];
    static guts_id ids[300];
    static guts_wire_obj objs[300];
    static guts_wire_ref refs[300];
    memset(m, 0, sizeof *m);
    m->type = (uint8_t)sample_types[rng() % NSAMPLES];
    m->version = GUTS_WIRE_VERSION;
    for (int i = 0; i < GUTS_NODE_ID_LEN; i++)
        m->sender.b[i] = (uint8_t)rng();
    switch (m->type) {
    case GUTS_MSG_ANNOUNCE: {
        guts_msg_announce *a = &m->u.announce;
        a->incarnation = rand_u64();
        a->port = (uint16_t)rng();
        a->interval_ms = (uint32_t)rand_u64();
        a->page = (uint16_t)rand_u64();
        a->pages = (uint16_t)rand_u64();
        a->nrepos = rand_count(GUTS_ANNOUNCE_REPOS_MAX);
        a->repos = repos;
        for (uint32_t i = 0; i < a->nrepos; i++) {
            guts_announce_repo *r = &repos[i];
            memset(r, 0, sizeof *r);
            r->key = rand_key();
            r->objects = rand_u64();
            r->fp.lo = rand_u64();
            r->fp.hi = rand_u64();
            r->refs_digest = rand_u64();
            if (rng() % 2) {
                r->bloom_covered = (uint32_t)rand_u64();
                r->bloom_seed = rand_u64();
                rand_bloom(&r->bloom_k, &r->bloom_nbits, &r->bloom_bits);
            }
        }
        break;
    }
    case GUTS_MSG_LEAVE:
        m->u.leave.incarnation = rand_u64();
        break;
    case GUTS_MSG_PEERS: {
        static guts_wire_peer rp[GUTS_PEERS_MAX];
        m->u.peers.npeers = (uint32_t)(rng() % (GUTS_PEERS_MAX + 1));
        for (uint32_t i = 0; i < m->u.peers.npeers; i++) {
            rp[i].addr_len = (uint8_t)(1 + rng() % GUTS_WIRE_ADDR_MAX);
            for (size_t j = 0; j < sizeof rp[i].id.b; j++)
                rp[i].id.b[j] = (uint8_t)rng();
            for (size_t j = 0; j < rp[i].addr_len; j++)
                rp[i].addr[j] = (uint8_t)rng();
        }
        m->u.peers.peers = rp;
        break;
    }
    case GUTS_MSG_HELLO:
        m->u.hello.incarnation = rand_u64();
        m->u.hello.port = (uint16_t)rand_u64();
        break;
    case GUTS_MSG_RECON: {
        guts_msg_recon *r = &m->u.recon;
        r->key = rand_key();
        r->space = (uint8_t)(rng() % 2);
        r->seed = rand_u64();
        r->round = (uint32_t)rand_u64();
        r->nitems = rand_count(300);
        r->items = items;
        for (uint32_t i = 0; i < r->nitems; i++) {
            guts_recon_item *it = &items[i];
            memset(it, 0, sizeof *it);
            it->kind = (uint8_t)(GUTS_ITEM_SPLIT + rng() % 4);
            it->depth = (uint8_t)(rng() % (GUTS_RECON_DEPTH_MAX + 1));
            it->prefix = it->depth == 8 ? (uint32_t)rng()
                                        : (uint32_t)(rng() & ((1u << (4 * it->depth)) - 1));
            for (int j = 0; j < GUTS_RECON_FANOUT; j++)
                it->fps[j] = (uint16_t)rng();
            it->mask = (uint16_t)rand_u64();
            if (it->kind == GUTS_ITEM_BLOOM)
                rand_bloom(&it->k, &it->nbits, &it->bits);
        }
        break;
    }
    case GUTS_MSG_WANT:
        m->u.want.key = rand_key();
        m->u.want.nids = rand_count(300);
        m->u.want.ids = ids;
        for (uint32_t i = 0; i < m->u.want.nids; i++)
            for (int j = 0; j < GUTS_ID_LEN; j++)
                ids[i].b[j] = (uint8_t)rng();
        break;
    case GUTS_MSG_OBJECTS:
        m->u.objects.key = rand_key();
        m->u.objects.nobjs = rand_count(300);
        m->u.objects.objs = objs;
        for (uint32_t i = 0; i < m->u.objects.nobjs; i++) {
            fill_id(&objs[i].id, (uint8_t)rng());
            objs[i].type = (uint8_t)(GUTS_OBJ_COMMIT + rng() % 4);
            objs[i].len = rng() % 8 ? rng() % 100 : rng() % sizeof rand_bits;
            objs[i].data = rand_bits;
        }
        break;
    case GUTS_MSG_OBJECT_CHUNK: {
        guts_msg_chunk *c = &m->u.chunk;
        c->key = rand_key();
        fill_id(&c->id, (uint8_t)rng());
        c->type = (uint8_t)(GUTS_OBJ_COMMIT + rng() % 4);
        c->len = rng() % sizeof rand_bits;
        c->data = rand_bits;
        c->total = c->len + rand_u64() % (GUTS_OBJ_MAX_DEFAULT - c->len + 1);
        c->offset = rng() % (c->total - c->len + 1);
        break;
    }
    case GUTS_MSG_REFS:
        m->u.refs.key = rand_key();
        m->u.refs.nrefs = rand_count(300);
        m->u.refs.refs = refs;
        for (uint32_t i = 0; i < m->u.refs.nrefs; i++) {
            refs[i].name = rand_ref();
            fill_id(&refs[i].target, (uint8_t)rng());
            refs[i].symref = rng() % 4 ? NULL : rand_ref();
            refs[i].clock = rand_u64();
            fill_node(&refs[i].writer, (uint8_t)rng());
        }
        break;
    case GUTS_MSG_DONE:
        m->u.done.key = rand_key();
        m->u.done.space = (uint8_t)(rng() % 2);
        m->u.done.sent = rand_u64();
        break;
    case GUTS_MSG_ERROR:
        m->u.error.code = (int32_t)(uint32_t)rand_u64();
        m->u.error.text = rng() % 4 ? "something went wrong: \xc3\xa9" : NULL;
        m->u.error.retry_after_ms =
            rng() % 2 ? (uint32_t)(rng() % (GUTS_RETRY_AFTER_MAX_MS + 1)) : 0;
        break;
    case GUTS_MSG_DAMAGED:
        m->u.damaged.key = rand_key();
        fill_id(&m->u.damaged.id, (uint8_t)rng());
        break;
    }
}

static void rand_init(void)
{
    memset(long_key, 'k', GUTS_KEY_MAX);
    long_key[GUTS_KEY_PART_MAX] = '/';
    memset(long_ref, 'r', GUTS_REFNAME_MAX);
    memcpy(long_ref, "refs/heads/", 11);
    ck_assert_int_eq(guts_repo_key_check(long_key), 0);
    ck_assert_int_eq(guts_refname_check(long_ref), 0);
    for (size_t i = 0; i < sizeof rand_bits; i++)
        rand_bits[i] = (uint8_t)(i * 31 + 7);
}

#define RANDOM_MSGS 20000

START_TEST(test_random_valid_messages_round_trip_at_their_exact_size)
{
    rand_init();
    rng_state = 0x243f6a8885a308d3ull;
    for (int n = 0; n < RANDOM_MSGS; n++) {
        guts_msg m, d;
        size_t need, len, again;
        rand_msg(&m);
        ck_assert_int_eq(guts_msg_size(&m, &need), 0);
        /* An exact-size buffer: ASan catches any write past it. */
        uint8_t *buf = malloc(need);
        ck_assert_int_eq(guts_msg_encode(&m, buf, need, &len), 0);
        ck_assert_uint_eq(len, need);
        ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
        assert_same(&m, &d);
        ck_assert_int_eq(guts_msg_size(&d, &again), 0);
        ck_assert_uint_eq(again, need);
        guts_msg_free(&d);
        free(buf);
    }
}
END_TEST


START_TEST(test_random_mutations_never_crash_and_decode_to_a_fixed_point)
{
    static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x90, 0x9f, 0xa0, 0xbf,
                                          0xc0, 0xc4, 0xc5, 0xc6, 0xcc, 0xcf, 0xd0, 0xd9,
                                          0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    uint8_t *enc[NSAMPLES];
    size_t enclen[NSAMPLES];
    for (int t = 0; t < NSAMPLES; t++) {
        guts_msg m;
        sample(sample_types[t], &m);
        enc[t] = encode_alloc(&m, &enclen[t]);
    }
    rand_init();
    rng_state = 0x9e3779b97f4a7c15ull;
    unsigned accepted = 0;
    for (int it = 0; it < FUZZ_ITERS; it++) {
        /* Half the time a sample, half a random valid message. */
        const uint8_t *orig;
        uint8_t *gen = NULL;
        size_t n;
        if (rng() % 2) {
            int t = (int)(rng() % NSAMPLES);
            orig = enc[t];
            n = enclen[t];
        } else {
            guts_msg g;
            rand_msg(&g);
            gen = encode_alloc(&g, &n);
            orig = gen;
        }
        const size_t orig_len = n;
        uint8_t *b = malloc(n + FUZZ_SLACK);
        memcpy(b, orig, n);
        free(gen);
        int muts = 1 + (int)(rng() % 4);
        for (int k = 0; k < muts && n > 0; k++) {
            size_t at = rng() % n;
            switch (rng() % 6) {
            case 0: b[at] = (uint8_t)rng(); break;
            case 1: b[at] ^= (uint8_t)(1u << (rng() % 8)); break;
            case 2: b[at] = interesting[rng() % sizeof interesting]; break;
            case 3: /* delete a byte */
                memmove(b + at, b + at + 1, n - at - 1);
                n--;
                break;
            case 4: /* insert a byte */
                if (n < orig_len + FUZZ_SLACK) {
                    memmove(b + at + 1, b + at, n - at);
                    b[at] = (uint8_t)rng();
                    n++;
                }
                break;
            case 5: n = at; break; /* truncate */
            }
        }
        /* Exact-size copy so ASan catches reads past the end. */
        uint8_t *in = malloc(n ? n : 1);
        memcpy(in, b, n);
        guts_msg d;
        int rc = guts_msg_decode(in, n, &d);
        ck_assert(rc == 0 || rc == GUTS_EPROTO || rc == GUTS_EVERSION ||
                  rc == GUTS_ENOTFOUND);
        if (rc == 0) {
            /* What we accept we can send, and it settles at once. */
            size_t l1, l2;
            accepted++;
            uint8_t *e1 = encode_alloc(&d, &l1);
            guts_msg d2;
            ck_assert_int_eq(guts_msg_decode(e1, l1, &d2), 0);
            assert_same(&d, &d2);
            uint8_t *e2 = encode_alloc(&d2, &l2);
            ck_assert_uint_eq(l1, l2);
            ck_assert_mem_eq(e1, e2, l1);
            guts_msg_free(&d2);
            free(e1);
            free(e2);
        }
        guts_msg_free(&d);
        free(in);
        free(b);
    }
    /* Some mutations (e.g. changed payload bytes) stay valid; make sure the
     * fixed-point check above actually ran. */
    ck_assert_uint_gt(accepted, 1000);
    for (int t = 0; t < NSAMPLES; t++)
        free(enc[t]);
}
END_TEST

/* ---- Sizes for announce paging --------------------------------------------- */

START_TEST(test_announce_size_helpers_are_exact)
{
    static const char *keys[] = {"a/b", "alice/guts",
        "owner-with-a-long-name/repository-name-long",
        "oooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooo/"
        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"};
    static const uint64_t vals[] = {0, 1, 127, 128, 255, 256, 65535, 65536,
                                    UINT32_MAX, 1ull << 32, UINT64_MAX};
    static uint8_t bits[70000];
    const size_t nv = sizeof vals / sizeof vals[0];
    guts_announce_repo repos[GUTS_ANNOUNCE_REPOS_MAX];
    /* 64 repos with blooms of up to 64 KiB each */
    const size_t cap = 8u << 20;
    uint8_t *buf = malloc(cap);
    rng_state = 12345;
    for (int trial = 0; trial < 2000; trial++) {
        guts_msg m;
        memset(&m, 0, sizeof m);
        m.type = GUTS_MSG_ANNOUNCE;
        guts_msg_announce *a = &m.u.announce;
        a->incarnation = vals[rng() % nv];
        a->port = (uint16_t)vals[rng() % 7];
        a->interval_ms = (uint32_t)vals[rng() % 9];
        a->page = (uint16_t)vals[rng() % 7];
        a->pages = (uint16_t)vals[rng() % 7];
        a->nrepos = (uint32_t)(rng() % (GUTS_ANNOUNCE_REPOS_MAX + 1));
        a->repos = repos;
        size_t expect = guts_announce_head_size(a);
        ck_assert_uint_le(expect, GUTS_ANNOUNCE_HEAD_MAX);
        for (uint32_t i = 0; i < a->nrepos; i++) {
            guts_announce_repo *r = &repos[i];
            memset(r, 0, sizeof *r);
            r->key = keys[rng() % 4];
            r->objects = vals[rng() % nv];
            r->refs_digest = vals[rng() % nv];
            if (rng() % 3) {
                r->bloom_covered = (uint32_t)vals[rng() % 9];
                r->bloom_seed = vals[rng() % nv];
                r->bloom_k = (uint8_t)(1 + rng() % 32);
                static const uint32_t nb[] = {1, 8, 9, 2040, 2048, 2049, 524280, 524288, 524289};
                r->bloom_nbits = nb[rng() % 9];
                r->bloom_bits = bits;
            }
            expect += guts_announce_repo_size(r);
        }
        size_t len;
        ck_assert_int_eq(guts_msg_encode(&m, buf, cap, &len), 0);
        ck_assert_uint_eq(len, expect);
    }
    free(buf);
}
END_TEST

START_TEST(test_announce_bloom_room_is_the_largest_bloom_that_fits)
{
    static uint8_t bits[GUTS_BLOOM_BITS_MAX / 8];
    guts_announce_repo r = {.key = "alice/guts", .objects = 100000, .refs_digest = 1ull << 40,
                            .bloom_covered = 900, .bloom_seed = 7, .bloom_k = 7};
    for (size_t room = 0; room < 70000; room += (room < 1200 ? 1 : 97)) {
        size_t b = guts_announce_bloom_room(&r, room);
        guts_announce_repo t = r;
        t.bloom_bits = bits;
        if (b > 0) {
            t.bloom_nbits = (uint32_t)(8 * b);
            ck_assert_uint_le(guts_announce_repo_size(&t), room);
            t.bloom_nbits = (uint32_t)(8 * b - 7);
            ck_assert_uint_le(guts_announce_repo_size(&t), room);
        }
        if (b < GUTS_BLOOM_BITS_MAX / 8) {
            t.bloom_nbits = (uint32_t)(8 * (b + 1));
            ck_assert_uint_gt(guts_announce_repo_size(&t), room);
        }
    }
    ck_assert_uint_eq(guts_announce_bloom_room(&r, SIZE_MAX / 2), GUTS_BLOOM_BITS_MAX / 8);
}
END_TEST

START_TEST(test_full_announce_page_fits_one_datagram)
{
    /* A page packed by the helpers, with the bloom filling the last room,
     * encodes to at most GUTS_DGRAM_MAX and decodes. */
    static uint8_t bits[GUTS_DGRAM_MAX];
    guts_announce_repo repos[4] = {
        {.key = "a/one", .objects = 5}, {.key = "b/two", .objects = 70000},
        {.key = "c/three", .objects = 1u << 20}, {.key = "d/four", .bloom_covered = 500,
                                                  .bloom_seed = UINT64_MAX, .bloom_k = 7}};
    guts_msg m;
    memset(&m, 0, sizeof m);
    m.type = GUTS_MSG_ANNOUNCE;
    m.u.announce = (guts_msg_announce){.incarnation = 1u << 30, .port = 40000,
                                       .interval_ms = 30000, .page = 0, .pages = 1,
                                       .nrepos = 4, .repos = repos};
    size_t used = guts_announce_head_size(&m.u.announce);
    for (int i = 0; i < 3; i++)
        used += guts_announce_repo_size(&repos[i]);
    size_t b = guts_announce_bloom_room(&repos[3], GUTS_DGRAM_MAX - used);
    ck_assert_uint_gt(b, 1000);
    repos[3].bloom_nbits = (uint32_t)(8 * b);
    repos[3].bloom_bits = bits;
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), 0);
    ck_assert_uint_ge(len, GUTS_DGRAM_MAX - 7);
    guts_msg d;
    ck_assert_int_eq(guts_msg_decode(buf, len, &d), 0);
    ck_assert_uint_eq(d.u.announce.repos[3].bloom_nbits, 8 * b);
    guts_msg_free(&d);
}
END_TEST

/* ---- Frames ------------------------------------------------------------------ */

START_TEST(test_frame_header_is_big_endian_and_bounded)
{
    uint8_t h[4];
    uint32_t n;
    guts_wire_frame_hdr(0x01020304u, h);
    ck_assert_uint_eq(h[0], 1);
    ck_assert_uint_eq(h[3], 4);
    ck_assert_int_eq(guts_wire_frame_len(h, 0x01020304u, &n), 0);
    ck_assert_uint_eq(n, 0x01020304u);
    ck_assert_int_eq(guts_wire_frame_len(h, 0x01020303u, &n), GUTS_ETOOBIG);
    guts_wire_frame_hdr(0, h);
    ck_assert_int_eq(guts_wire_frame_len(h, GUTS_FRAME_MAX_DEFAULT, &n), GUTS_EPROTO);
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    ck_assert_int_eq(guts_wire_frame_len(huge, GUTS_FRAME_MAX_DEFAULT, &n), GUTS_ETOOBIG);
}
END_TEST

START_TEST(test_encode_frame_prefixes_the_envelope_length)
{
    guts_msg m, d;
    uint8_t buf[256];
    size_t len, plain;
    uint32_t n;
    sample(GUTS_MSG_DONE, &m);
    ck_assert_int_eq(guts_msg_size(&m, &plain), 0);
    ck_assert_int_eq(guts_msg_encode_frame(&m, buf, sizeof buf, &len), 0);
    ck_assert_uint_eq(len, plain + GUTS_FRAME_HDR);
    ck_assert_int_eq(guts_wire_frame_len(buf, GUTS_FRAME_MAX_DEFAULT, &n), 0);
    ck_assert_uint_eq(n, plain);
    ck_assert_int_eq(guts_msg_decode(buf + GUTS_FRAME_HDR, n, &d), 0);
    assert_same(&m, &d);
    guts_msg_free(&d);
    ck_assert_int_eq(guts_msg_encode_frame(&m, buf, 3, &len), GUTS_ETOOBIG);
    ck_assert_int_eq(guts_msg_encode_frame(&m, buf, plain + 3, &len), GUTS_ETOOBIG);
}
END_TEST

START_TEST(test_message_names)
{
    ck_assert_str_eq(guts_msg_name(GUTS_MSG_ANNOUNCE), "ANNOUNCE");
    ck_assert_str_eq(guts_msg_name(GUTS_MSG_OBJECT_CHUNK), "OBJECT_CHUNK");
    ck_assert_str_eq(guts_msg_name(GUTS_MSG_ERROR), "ERROR");
    ck_assert_str_eq(guts_msg_name(99), "?");
}
END_TEST

/* ---- Test vectors ---------------------------------------------------------- */

static void lower(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    out[i] = '\0';
}

/* Vectors are named NN-type.msgpack after their type number and name. */
static void vector_path(const char *dir, int type, char *out, size_t cap)
{
    char name[32];
    lower(guts_msg_name(type), name, sizeof name);
    snprintf(out, cap, "%s/%02d-%s.msgpack", dir, type, name);
}

START_TEST(test_committed_vectors_match_the_current_encoding)
{
    const char *src = getenv("GUTS_SRC");
    const char *dump = getenv("GUTS_WIRE_DUMP");
    char dir[4096], path[4200];
    for (int t = 0; t < NSAMPLES; t++) {
        guts_msg m;
        size_t len;
        sample(sample_types[t], &m);
        uint8_t *buf = encode_alloc(&m, &len);
        if (dump) {
            vector_path(dump, m.type, path, sizeof path);
            FILE *f = fopen(path, "wb");
            ck_assert_msg(f != NULL, "cannot write %s", path);
            ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
            ck_assert_int_eq(fclose(f), 0);
        }
        if (src) {
            snprintf(dir, sizeof dir, "%s/tests/wire_vectors", src);
            vector_path(dir, m.type, path, sizeof path);
            FILE *f = fopen(path, "rb");
            ck_assert_msg(f != NULL, "missing %s (GUTS_WIRE_DUMP=dir writes them)", path);
            uint8_t *have = malloc(len + 1);
            size_t got = fread(have, 1, len + 1, f);
            fclose(f);
            ck_assert_msg(got == len && memcmp(have, buf, len) == 0,
                          "%s is stale: regenerate with GUTS_WIRE_DUMP", path);
            guts_msg d;
            ck_assert_int_eq(guts_msg_decode(have, got, &d), 0);
            assert_same(&m, &d);
            guts_msg_free(&d);
            free(have);
        }
        free(buf);
    }
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_loop_test(tc, test_every_message_type_round_trips_field_by_field, 0, NSAMPLES);
    tcase_add_test(tc, test_announce_with_large_bloom_and_three_repos_round_trips);
    tcase_add_test(tc, test_recon_with_depth_zero_item_round_trips);
    tcase_add_test(tc, test_empty_lists_and_nil_error_text_round_trip);
    tcase_add_test(tc, test_busy_error_carries_its_retry_after_as_a_third_element);
    tcase_add_test(tc, test_damaged_is_a_key_and_an_id);
    tcase_add_test(tc, test_decoded_strings_are_nul_terminated_copies);
    tcase_add_test(tc, test_free_is_safe_on_a_zeroed_message);
    tcase_add_test(tc, test_fingerprint_bytes_are_lo_then_hi_big_endian);
    tcase_add_test(tc, test_ints_use_the_most_compact_msgpack_form);
    tcase_add_test(tc, test_non_canonical_int_forms_from_other_encoders_decode);
    tcase_add_test(tc, test_message_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_test(tc, test_encode_fails_cleanly_with_etoobig_on_every_short_cap);
    tcase_add_test(tc, test_encode_refuses_what_decode_would_reject);
    tcase_add_test(tc, test_frame_header_is_big_endian_and_bounded);
    tcase_add_test(tc, test_encode_frame_prefixes_the_envelope_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("reject");
    tcase_add_test(tc, test_raw_byte_inputs_are_rejected);
    tcase_add_test(tc, test_version_and_unknown_type_are_reported_for_counting);
    tcase_add_test(tc, test_trailing_bytes_are_rejected);
    tcase_add_test(tc, test_bad_repo_keys_are_rejected);
    tcase_add_test(tc, test_bad_ref_names_are_rejected);
    tcase_add_test(tc, test_nesting_deeper_than_the_schema_is_rejected);
    tcase_add_test(tc, test_recon_item_violations_are_rejected);
    tcase_add_test(tc, test_counts_over_their_limits_are_rejected);
    tcase_add_test(tc, test_peers_over_their_limits_are_rejected);
    tcase_add_test(tc, test_announce_bloom_violations_are_rejected);
    tcase_add_test(tc, test_field_type_and_range_violations_are_rejected);
    tcase_add_test(tc, test_object_bounds_are_enforced);
    tcase_add_test(tc, test_object_record_form_is_checked);
    tcase_add_test(tc, test_every_truncation_of_every_message_is_rejected);
    suite_add_tcase(s, tc);

    tc = tcase_create("fuzz");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_random_mutations_never_crash_and_decode_to_a_fixed_point);
    tcase_add_test(tc, test_random_valid_messages_round_trip_at_their_exact_size);
    suite_add_tcase(s, tc);

    tc = tcase_create("sizes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_announce_size_helpers_are_exact);
    tcase_add_test(tc, test_announce_bloom_room_is_the_largest_bloom_that_fits);
    tcase_add_test(tc, test_full_announce_page_fits_one_datagram);
    suite_add_tcase(s, tc);

    tc = tcase_create("vectors");
    tcase_add_test(tc, test_committed_vectors_match_the_current_encoding);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Without fork LeakSanitizer checks the whole run at exit; CK_FORK=yes
     * in the environment still wins for debugging. */
    return test_run(wire_suite(), getenv("CK_FORK") ? CK_FORK_GETENV : CK_NOFORK);
}
