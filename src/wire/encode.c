/* encode.c - every guts message to msgpack, into the caller's buffer.
 *
 * msgpack-c's packer writes through a callback; ours copies into a fixed
 * buffer and fails when it would overflow, so encoding never allocates. A
 * message is packed twice: first into a counting sink that also runs every
 * check (so a message we would refuse to decode is never sent, and the
 * exact size is known), then, if it fits, into the buffer. A message that
 * does not fit leaves the buffer untouched and returns GUTS_ETOOBIG.
 *
 * msgpack-c picks the most compact form for each int, str, bin and array
 * header; the size functions at the bottom mirror those rules and are
 * checked against real encodings by tests/unit/test_wire.c.
 */
#include "guts/wire.h"

#include <msgpack.h>
#include <string.h>

typedef struct sink {
    uint8_t *buf; /* NULL: count only */
    size_t cap;
    size_t used;
} sink;

static int sink_write(void *data, const char *b, size_t n)
{
    sink *s = data;
    if (n == 0) /* an empty bin body may come with a NULL pointer */
        return 0;
    if (s->buf == NULL) {
        s->used += n;
        return 0;
    }
    if (n > s->cap - s->used)
        return -1;
    memcpy(s->buf + s->used, b, n);
    s->used += n;
    return 0;
}

/* Pack or bail out: the only packer failure is the sink being full. */
#define P(expr)                                                                \
    do {                                                                       \
        if ((expr) != 0)                                                       \
            return GUTS_ETOOBIG;                                               \
    } while (0)
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            return GUTS_EINVAL;                                                \
    } while (0)
#define TRY(expr)                                                              \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        if (rc_ != 0)                                                          \
            return rc_;                                                        \
    } while (0)

static int put_bin(msgpack_packer *pk, const void *b, size_t n)
{
    P(msgpack_pack_bin(pk, n));
    P(msgpack_pack_bin_body(pk, b, n));
    return 0;
}

static int put_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    P(msgpack_pack_str(pk, n));
    P(msgpack_pack_str_body(pk, s, n));
    return 0;
}

static int put_key(msgpack_packer *pk, const char *key)
{
    CHECK(key != NULL && guts_repo_key_check(key) == 0);
    return put_str(pk, key);
}

static int put_refname(msgpack_packer *pk, const char *name)
{
    CHECK(name != NULL && guts_refname_check(name) == 0);
    return put_str(pk, name);
}

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Fingerprints travel as 16 bytes: lo big-endian, then hi big-endian. */
static int put_fp(msgpack_packer *pk, guts_fp fp)
{
    uint8_t b[16];
    store_be64(b, fp.lo);
    store_be64(b + 8, fp.hi);
    return put_bin(pk, b, sizeof b);
}

static int bloom_ok(uint8_t k, uint32_t nbits, const uint8_t *bits)
{
    return k >= 1 && k <= GUTS_BLOOM_K_MAX && nbits >= 1 &&
           nbits <= GUTS_BLOOM_BITS_MAX && bits != NULL;
}

static int prefix_fits(uint8_t depth, uint32_t prefix)
{
    if (depth > GUTS_RECON_DEPTH_MAX)
        return 0;
    return depth * 4 >= 32 || (prefix >> (4 * depth)) == 0;
}

static int otype_ok(uint8_t t)
{
    return t >= GUTS_OBJ_COMMIT && t <= GUTS_OBJ_TAG;
}

static int enc_announce(msgpack_packer *pk, const guts_msg_announce *a)
{
    CHECK(a->nrepos <= GUTS_ANNOUNCE_REPOS_MAX);
    CHECK(a->nrepos == 0 || a->repos != NULL);
    P(msgpack_pack_array(pk, 6));
    P(msgpack_pack_uint64(pk, a->incarnation));
    P(msgpack_pack_uint16(pk, a->port));
    P(msgpack_pack_uint32(pk, a->interval_ms));
    P(msgpack_pack_uint16(pk, a->page));
    P(msgpack_pack_uint16(pk, a->pages));
    P(msgpack_pack_array(pk, a->nrepos));
    for (uint32_t i = 0; i < a->nrepos; i++) {
        const guts_announce_repo *r = &a->repos[i];
        P(msgpack_pack_array(pk, 5));
        TRY(put_key(pk, r->key));
        P(msgpack_pack_uint64(pk, r->objects));
        TRY(put_fp(pk, r->fp));
        P(msgpack_pack_uint64(pk, r->refs_digest));
        if (r->bloom_nbits == 0) {
            P(msgpack_pack_nil(pk));
            continue;
        }
        CHECK(bloom_ok(r->bloom_k, r->bloom_nbits, r->bloom_bits));
        P(msgpack_pack_array(pk, 5));
        P(msgpack_pack_uint32(pk, r->bloom_covered));
        P(msgpack_pack_uint64(pk, r->bloom_seed));
        P(msgpack_pack_uint8(pk, r->bloom_k));
        P(msgpack_pack_uint32(pk, r->bloom_nbits));
        TRY(put_bin(pk, r->bloom_bits, (r->bloom_nbits + 7u) / 8u));
    }
    return 0;
}

static int enc_item(msgpack_packer *pk, const guts_recon_item *it)
{
    CHECK(prefix_fits(it->depth, it->prefix));
    P(msgpack_pack_array(pk, 4));
    P(msgpack_pack_uint8(pk, it->kind));
    P(msgpack_pack_uint8(pk, it->depth));
    P(msgpack_pack_uint32(pk, it->prefix));
    switch (it->kind) {
    case GUTS_ITEM_SPLIT: {
        uint8_t b[2 * GUTS_RECON_FANOUT];
        for (int i = 0; i < GUTS_RECON_FANOUT; i++) {
            b[2 * i] = (uint8_t)(it->fps[i] >> 8);
            b[2 * i + 1] = (uint8_t)it->fps[i];
        }
        return put_bin(pk, b, sizeof b);
    }
    case GUTS_ITEM_MASK:
        P(msgpack_pack_uint16(pk, it->mask));
        return 0;
    case GUTS_ITEM_BLOOM:
        CHECK(bloom_ok(it->k, it->nbits, it->bits));
        P(msgpack_pack_array(pk, 3));
        P(msgpack_pack_uint8(pk, it->k));
        P(msgpack_pack_uint32(pk, it->nbits));
        return put_bin(pk, it->bits, (it->nbits + 7u) / 8u);
    case GUTS_ITEM_ALL:
        P(msgpack_pack_nil(pk));
        return 0;
    default:
        return GUTS_EINVAL;
    }
}

static int enc_recon(msgpack_packer *pk, const guts_msg_recon *m)
{
    CHECK(m->space == GUTS_SPACE_OBJECTS || m->space == GUTS_SPACE_REFS);
    CHECK(m->nitems <= GUTS_ITEMS_MAX && (m->nitems == 0 || m->items != NULL));
    P(msgpack_pack_array(pk, 5));
    TRY(put_key(pk, m->key));
    P(msgpack_pack_uint8(pk, m->space));
    P(msgpack_pack_uint64(pk, m->seed));
    P(msgpack_pack_uint32(pk, m->round));
    P(msgpack_pack_array(pk, m->nitems));
    for (uint32_t i = 0; i < m->nitems; i++)
        TRY(enc_item(pk, &m->items[i]));
    return 0;
}

static int enc_want(msgpack_packer *pk, const guts_msg_want *m)
{
    CHECK(m->nids <= GUTS_WANT_MAX && (m->nids == 0 || m->ids != NULL));
    P(msgpack_pack_array(pk, 2));
    TRY(put_key(pk, m->key));
    P(msgpack_pack_array(pk, m->nids));
    for (uint32_t i = 0; i < m->nids; i++)
        TRY(put_bin(pk, m->ids[i].b, GUTS_ID_LEN));
    return 0;
}

static int enc_objects(msgpack_packer *pk, const guts_msg_objects *m)
{
    CHECK(m->nobjs == 0 || m->objs != NULL);
    P(msgpack_pack_array(pk, 2));
    TRY(put_key(pk, m->key));
    P(msgpack_pack_array(pk, m->nobjs));
    for (uint32_t i = 0; i < m->nobjs; i++) {
        const guts_wire_obj *o = &m->objs[i];
        CHECK(otype_ok(o->type) && o->len <= GUTS_OBJ_MAX_DEFAULT);
        CHECK(o->len == 0 || o->data != NULL);
        CHECK(o->enc <= GUTS_WIRE_ENC_DELTA && o->size <= GUTS_OBJ_MAX_DEFAULT);
        if (o->enc == GUTS_WIRE_ENC_RAW) {
            P(msgpack_pack_array(pk, 3));
            TRY(put_bin(pk, o->id.b, GUTS_ID_LEN));
            P(msgpack_pack_uint8(pk, o->type));
            TRY(put_bin(pk, o->data, o->len));
            continue;
        }
        P(msgpack_pack_array(pk, 6));
        TRY(put_bin(pk, o->id.b, GUTS_ID_LEN));
        P(msgpack_pack_uint8(pk, o->type));
        P(msgpack_pack_uint8(pk, o->enc));
        P(msgpack_pack_uint64(pk, o->size));
        if (o->enc == GUTS_WIRE_ENC_DELTA)
            TRY(put_bin(pk, o->base.b, GUTS_ID_LEN));
        else
            P(msgpack_pack_nil(pk));
        TRY(put_bin(pk, o->data, o->len));
    }
    return 0;
}

static int enc_chunk(msgpack_packer *pk, const guts_msg_chunk *m)
{
    CHECK(otype_ok(m->type) && m->total <= GUTS_OBJ_MAX_DEFAULT);
    CHECK(m->offset <= m->total && m->len <= m->total - m->offset);
    CHECK(m->len == 0 || m->data != NULL);
    P(msgpack_pack_array(pk, 6));
    TRY(put_key(pk, m->key));
    TRY(put_bin(pk, m->id.b, GUTS_ID_LEN));
    P(msgpack_pack_uint8(pk, m->type));
    P(msgpack_pack_uint64(pk, m->total));
    P(msgpack_pack_uint64(pk, m->offset));
    return put_bin(pk, m->data, m->len);
}

static int enc_refs(msgpack_packer *pk, const guts_msg_refs *m)
{
    CHECK(m->nrefs <= GUTS_REFS_MAX && (m->nrefs == 0 || m->refs != NULL));
    P(msgpack_pack_array(pk, 2));
    TRY(put_key(pk, m->key));
    P(msgpack_pack_array(pk, m->nrefs));
    for (uint32_t i = 0; i < m->nrefs; i++) {
        const guts_wire_ref *r = &m->refs[i];
        P(msgpack_pack_array(pk, 5));
        TRY(put_refname(pk, r->name));
        TRY(put_bin(pk, r->target.b, GUTS_ID_LEN));
        if (r->symref)
            TRY(put_refname(pk, r->symref));
        else
            P(msgpack_pack_nil(pk));
        P(msgpack_pack_uint64(pk, r->clock));
        TRY(put_bin(pk, r->writer.b, GUTS_NODE_ID_LEN));
    }
    return 0;
}

static int enc_body(msgpack_packer *pk, const guts_msg *msg)
{
    switch (msg->type) {
    case GUTS_MSG_ANNOUNCE:
        return enc_announce(pk, &msg->u.announce);
    case GUTS_MSG_LEAVE:
        P(msgpack_pack_array(pk, 1));
        P(msgpack_pack_uint64(pk, msg->u.leave.incarnation));
        return 0;
    case GUTS_MSG_PROBE:
    case GUTS_MSG_ACK:
    case GUTS_MSG_RELEASE:
        P(msgpack_pack_array(pk, 3));
        P(msgpack_pack_fix_uint64(pk, msg->u.probe.incarnation));
        P(msgpack_pack_fix_uint32(pk, msg->u.probe.seq));
        P(msgpack_pack_fix_uint32(pk, msg->u.probe.pace));
        return 0;
    case GUTS_MSG_DEAD:
        P(msgpack_pack_array(pk, 2));
        TRY(put_bin(pk, msg->u.dead.node.b, GUTS_NODE_ID_LEN));
        P(msgpack_pack_uint64(pk, msg->u.dead.incarnation));
        return 0;
    case GUTS_MSG_PEERS: {
        const guts_msg_peers *m = &msg->u.peers;
        CHECK(m->npeers <= GUTS_PEERS_MAX && (m->npeers == 0 || m->peers));
        P(msgpack_pack_array(pk, 1));
        P(msgpack_pack_array(pk, m->npeers));
        for (uint32_t i = 0; i < m->npeers; i++) {
            const guts_wire_peer *p = &m->peers[i];
            CHECK(p->addr_len >= 1 && p->addr_len <= GUTS_WIRE_ADDR_MAX);
            P(msgpack_pack_array(pk, 2));
            TRY(put_bin(pk, p->id.b, GUTS_NODE_ID_LEN));
            TRY(put_bin(pk, p->addr, p->addr_len));
        }
        return 0;
    }
    case GUTS_MSG_HELLO:
        P(msgpack_pack_array(pk, 2));
        P(msgpack_pack_uint64(pk, msg->u.hello.incarnation));
        P(msgpack_pack_uint16(pk, msg->u.hello.port));
        return 0;
    case GUTS_MSG_RECON:
        return enc_recon(pk, &msg->u.recon);
    case GUTS_MSG_WANT:
        return enc_want(pk, &msg->u.want);
    case GUTS_MSG_OBJECTS:
        return enc_objects(pk, &msg->u.objects);
    case GUTS_MSG_OBJECT_CHUNK:
        return enc_chunk(pk, &msg->u.chunk);
    case GUTS_MSG_REFS:
        return enc_refs(pk, &msg->u.refs);
    case GUTS_MSG_DONE:
        CHECK(msg->u.done.space == GUTS_SPACE_OBJECTS || msg->u.done.space == GUTS_SPACE_REFS);
        P(msgpack_pack_array(pk, 3));
        TRY(put_key(pk, msg->u.done.key));
        P(msgpack_pack_uint8(pk, msg->u.done.space));
        P(msgpack_pack_uint64(pk, msg->u.done.sent));
        return 0;
    case GUTS_MSG_DAMAGED:
        P(msgpack_pack_array(pk, 2));
        TRY(put_key(pk, msg->u.damaged.key));
        return put_bin(pk, msg->u.damaged.id.b, GUTS_ID_LEN);
    case GUTS_MSG_ERROR:
        /* the third element only when there is a retry-after: an error
         * without one is the same bytes as before it existed */
        CHECK(msg->u.error.retry_after_ms <= GUTS_RETRY_AFTER_MAX_MS);
        P(msgpack_pack_array(pk, msg->u.error.retry_after_ms ? 3 : 2));
        P(msgpack_pack_int32(pk, msg->u.error.code));
        if (msg->u.error.text == NULL) {
            P(msgpack_pack_nil(pk));
        } else {
            CHECK(strlen(msg->u.error.text) <= GUTS_ERROR_TEXT_MAX);
            TRY(put_str(pk, msg->u.error.text));
        }
        if (msg->u.error.retry_after_ms)
            P(msgpack_pack_uint32(pk, msg->u.error.retry_after_ms));
        return 0;
    default:
        return GUTS_EINVAL;
    }
}

static int enc_msg(sink *s, const guts_msg *msg)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, s, sink_write);
    P(msgpack_pack_array(&pk, 5));
    P(msgpack_pack_uint32(&pk, GUTS_WIRE_MAGIC));
    P(msgpack_pack_uint8(&pk, GUTS_WIRE_VERSION));
    P(msgpack_pack_uint8(&pk, msg->type));
    TRY(put_bin(&pk, msg->sender.b, GUTS_NODE_ID_LEN));
    return enc_body(&pk, msg);
}

int guts_msg_size(const guts_msg *msg, size_t *len)
{
    sink s = {NULL, 0, 0};
    int rc = enc_msg(&s, msg);
    if (rc)
        return rc;
    *len = s.used;
    return 0;
}

/* Up to this capacity (a datagram's) guts_msg_encode packs once, into a
 * scratch buffer on the stack, and copies what fits: the size pass first
 * cost as much as the packing, for every datagram a core sends (sink_write,
 * called by both passes of datagrams and frames, was 2.8% of guts-sim's
 * instructions at 10,000 nodes: issue 19). Larger ones (frames) are sized
 * first and packed in place. */
#define ENCODE_SCRATCH 2048

int guts_msg_encode(const guts_msg *msg, uint8_t *buf, size_t cap, size_t *len)
{
    if (cap <= ENCODE_SCRATCH) {
        uint8_t tmp[ENCODE_SCRATCH];
        sink t = {tmp, cap, 0};
        int rc = enc_msg(&t, msg);
        if (rc == 0) {
            memcpy(buf, tmp, t.used);
            *len = t.used;
            return 0;
        }
        if (rc != GUTS_ETOOBIG) return rc;
        /* too big, or a field past the end invalid: the passes below say
         * which, as before */
    }
    size_t need;
    int rc = guts_msg_size(msg, &need);
    if (rc)
        return rc;
    if (need > cap)
        return GUTS_ETOOBIG;
    sink s = {buf, cap, 0};
    rc = enc_msg(&s, msg);
    if (rc)
        return rc;
    *len = s.used;
    return 0;
}

void guts_wire_frame_hdr(uint32_t len, uint8_t hdr[GUTS_FRAME_HDR])
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}

int guts_wire_frame_len(const uint8_t hdr[GUTS_FRAME_HDR], size_t frame_max, uint32_t *len)
{
    uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                 (uint32_t)hdr[2] << 8 | hdr[3];
    if (n == 0)
        return GUTS_EPROTO;
    if (n > frame_max)
        return GUTS_ETOOBIG;
    *len = n;
    return 0;
}

int guts_msg_encode_frame(const guts_msg *msg, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n;
    if (cap < GUTS_FRAME_HDR)
        return GUTS_ETOOBIG;
    int rc = guts_msg_encode(msg, buf + GUTS_FRAME_HDR, cap - GUTS_FRAME_HDR, &n);
    if (rc)
        return rc;
    if (n > UINT32_MAX)
        return GUTS_ETOOBIG;
    guts_wire_frame_hdr((uint32_t)n, buf);
    *len = GUTS_FRAME_HDR + n;
    return 0;
}

const char *guts_msg_name(int type)
{
    switch (type) {
    case GUTS_MSG_ANNOUNCE: return "ANNOUNCE";
    case GUTS_MSG_LEAVE: return "LEAVE";
    case GUTS_MSG_PEERS: return "PEERS";
    case GUTS_MSG_PROBE: return "PROBE";
    case GUTS_MSG_ACK: return "ACK";
    case GUTS_MSG_DEAD: return "DEAD";
    case GUTS_MSG_RELEASE: return "RELEASE";
    case GUTS_MSG_HELLO: return "HELLO";
    case GUTS_MSG_RECON: return "RECON";
    case GUTS_MSG_WANT: return "WANT";
    case GUTS_MSG_OBJECTS: return "OBJECTS";
    case GUTS_MSG_OBJECT_CHUNK: return "OBJECT_CHUNK";
    case GUTS_MSG_REFS: return "REFS";
    case GUTS_MSG_DONE: return "DONE";
    case GUTS_MSG_ERROR: return "ERROR";
    case GUTS_MSG_DAMAGED: return "DAMAGED";
    default: return "?";
    }
}

/* ---- Exact sizes, mirroring msgpack-c's choice of forms ------------------ */

static size_t uint_size(uint64_t v)
{
    if (v < 128)
        return 1;
    if (v < 256)
        return 2;
    if (v < 65536)
        return 3;
    if (v <= UINT32_MAX)
        return 5;
    return 9;
}

static size_t str_size(size_t n)
{
    if (n < 32)
        return 1 + n;
    if (n < 256)
        return 2 + n;
    if (n < 65536)
        return 3 + n;
    return 5 + n;
}

static size_t bin_size(size_t n)
{
    if (n < 256)
        return 2 + n;
    if (n < 65536)
        return 3 + n;
    return 5 + n;
}

static size_t array_hdr_size(size_t n)
{
    return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

size_t guts_announce_head_size(const guts_msg_announce *a)
{
    /* fixarray(5), uint32 magic, version, type, bin8 sender, body fixarray(6) */
    size_t n = 1 + 5 + uint_size(GUTS_WIRE_VERSION) + uint_size(GUTS_MSG_ANNOUNCE) +
               bin_size(GUTS_NODE_ID_LEN) + 1;
    n += uint_size(a->incarnation) + uint_size(a->port) + uint_size(a->interval_ms);
    n += uint_size(a->page) + uint_size(a->pages) + array_hdr_size(a->nrepos);
    return n;
}

/* Entry size without the bloom-or-nil field. */
static size_t repo_base_size(const guts_announce_repo *r)
{
    return 1 + str_size(r->key ? strlen(r->key) : 0) + uint_size(r->objects) +
           bin_size(16) + uint_size(r->refs_digest);
}

/* Bloom array size except the nbits field and the bin. */
static size_t bloom_fixed_size(const guts_announce_repo *r)
{
    return 1 + uint_size(r->bloom_covered) + uint_size(r->bloom_seed) + uint_size(r->bloom_k);
}

size_t guts_announce_repo_size(const guts_announce_repo *r)
{
    size_t n = repo_base_size(r);
    if (r->bloom_nbits == 0)
        return n + 1;
    return n + bloom_fixed_size(r) + uint_size(r->bloom_nbits) +
           bin_size((r->bloom_nbits + 7u) / 8u);
}

size_t guts_announce_bloom_room(const guts_announce_repo *r, size_t room)
{
    size_t fixed = repo_base_size(r) + bloom_fixed_size(r);
    /* The smallest nbits and bin headers are 1 and 2 bytes. */
    if (room < fixed + 3 + 1)
        return 0;
    size_t b = room - fixed - 3;
    if (b > GUTS_BLOOM_BITS_MAX / 8)
        b = GUTS_BLOOM_BITS_MAX / 8;
    /* Larger headers cost at most 7 more bytes: a few steps down at most. */
    while (b > 0 && fixed + uint_size((uint64_t)b * 8) + bin_size(b) > room)
        b--;
    return b;
}
