/* decode.c - bytes from the network to a guts_msg, trusting nothing.
 *
 * The schema drives a bounded reader (reader.c): each field is read as the
 * type it must be, each count is checked against the bytes that remain and
 * against its limit in wire.h before the array for it is allocated, and
 * anything left over after the body is an error. Nesting is fixed by the
 * schema, so a deeply nested input fails on the first unexpected array.
 *
 * Strings are copied, NUL-terminated, into one arena per message. A string
 * of n bytes takes at least n+1 bytes of input (its header is at least one
 * byte), so an arena the size of the rest of the input holds every string
 * with its NUL: one allocation, bounded by the datagram or frame, and for
 * types with at most a key and a text, by those two limits. Strings with an embedded
 * NUL are rejected (C callers would see a different, shorter string). Bins
 * (object data, blooms) are not copied and point into the caller's buffer.
 *
 * Version and type are handled so old nodes coexist with new ones: a newer
 * version is reported as GUTS_EVERSION before its body is looked at, and an
 * unknown type as GUTS_ENOTFOUND, both with type/version/sender filled in so
 * the caller can count and ignore them.
 */
#include "guts/wire.h"
#include "reader.h"

#include <stdlib.h>
#include <string.h>

typedef struct dec {
    guts_mpr r;
    char *arena;    /* owned by the message once allocated */
    size_t arena_cap;
    size_t arena_used;
} dec;

#define TRY(expr)                                                              \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        if (rc_ != 0)                                                          \
            return rc_;                                                        \
    } while (0)
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond))                                                           \
            return GUTS_EPROTO;                                                \
    } while (0)

/* Read a str of at most max bytes into the arena, NUL-terminated. */
static int get_str(dec *d, size_t max, const char **out)
{
    const uint8_t *s;
    size_t n;
    TRY(guts_mpr_str(&d->r, max, &s, &n));
    REQUIRE(memchr(s, 0, n) == NULL);
    /* Cannot fail (see the top of the file and arena_alloc); a hard bound. */
    REQUIRE(d->arena != NULL && n + 1 <= d->arena_cap - d->arena_used);
    char *c = d->arena + d->arena_used;
    memcpy(c, s, n);
    c[n] = '\0';
    d->arena_used += n + 1;
    *out = c;
    return 0;
}

static int get_key(dec *d, const char **key)
{
    TRY(get_str(d, GUTS_KEY_MAX, key));
    REQUIRE(guts_repo_key_check(*key) == 0);
    return 0;
}

static int get_refname(dec *d, const char **name)
{
    TRY(get_str(d, GUTS_REFNAME_MAX, name));
    REQUIRE(guts_refname_check(*name) == 0);
    return 0;
}

static int get_u64(dec *d, uint64_t *v)
{
    return guts_mpr_uint(&d->r, UINT64_MAX, v);
}

static int get_u32(dec *d, uint32_t max, uint32_t *v)
{
    uint64_t u;
    TRY(guts_mpr_uint(&d->r, max, &u));
    *v = (uint32_t)u;
    return 0;
}

/* A fixed-width uint (marker 0xcf: 8 bytes, 0xce: 4), as PROBE and ACK
 * carry them so that an ACK is exactly its PROBE's size: any other form
 * would re-encode to other bytes. */
static int get_fixed(dec *d, uint8_t marker, uint64_t max, uint64_t *v)
{
    REQUIRE(guts_mpr_left(&d->r) >= 1 && d->r.p[0] == marker);
    return guts_mpr_uint(&d->r, max, v);
}

static int get_u16(dec *d, uint16_t *v)
{
    uint64_t u;
    TRY(guts_mpr_uint(&d->r, UINT16_MAX, &u));
    *v = (uint16_t)u;
    return 0;
}

static int get_u8(dec *d, uint8_t min, uint8_t max, uint8_t *v)
{
    uint64_t u;
    TRY(guts_mpr_uint(&d->r, max, &u));
    REQUIRE(u >= min);
    *v = (uint8_t)u;
    return 0;
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int get_fp(dec *d, guts_fp *fp)
{
    uint8_t b[16];
    TRY(guts_mpr_bin_copy(&d->r, sizeof b, b));
    fp->lo = load_be64(b);
    fp->hi = load_be64(b + 8);
    return 0;
}

/* An array header for n elements of elem bytes each, at most max of them;
 * *out gets a zeroed array (NULL when n is 0). */
static int get_array(dec *d, uint32_t max, size_t elem, uint32_t *n, void **out)
{
    TRY(guts_mpr_array(&d->r, n));
    REQUIRE(*n <= max);
    *out = NULL;
    if (*n == 0)
        return 0;
    *out = calloc(*n, elem);
    return *out ? 0 : GUTS_ENOMEM;
}

/* k, nbits and a bin of exactly (nbits+7)/8 bytes. */
static int get_bloom(dec *d, uint8_t *k, uint32_t *nbits, const uint8_t **bits)
{
    size_t n;
    TRY(get_u8(d, 1, GUTS_BLOOM_K_MAX, k));
    TRY(get_u32(d, GUTS_BLOOM_BITS_MAX, nbits));
    REQUIRE(*nbits >= 1);
    TRY(guts_mpr_bin(&d->r, GUTS_BLOOM_BITS_MAX / 8, bits, &n));
    REQUIRE(n == (*nbits + 7u) / 8u);
    return 0;
}

static int dec_announce(dec *d, guts_msg_announce *a)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 6));
    TRY(get_u64(d, &a->incarnation));
    TRY(get_u16(d, &a->port));
    TRY(get_u32(d, UINT32_MAX, &a->interval_ms));
    TRY(get_u16(d, &a->page));
    TRY(get_u16(d, &a->pages));
    TRY(get_array(d, GUTS_ANNOUNCE_REPOS_MAX, sizeof *a->repos, &a->nrepos, &arr));
    a->repos = arr;
    for (uint32_t i = 0; i < a->nrepos; i++) {
        guts_announce_repo *r = &a->repos[i];
        TRY(guts_mpr_array_n(&d->r, 5));
        TRY(get_key(d, &r->key));
        TRY(get_u64(d, &r->objects));
        TRY(get_fp(d, &r->fp));
        TRY(get_u64(d, &r->refs_digest));
        if (guts_mpr_nil(&d->r))
            continue;
        TRY(guts_mpr_array_n(&d->r, 5));
        TRY(get_u32(d, UINT32_MAX, &r->bloom_covered));
        TRY(get_u64(d, &r->bloom_seed));
        TRY(get_bloom(d, &r->bloom_k, &r->bloom_nbits, &r->bloom_bits));
    }
    return 0;
}

static int dec_item(dec *d, guts_recon_item *it)
{
    TRY(guts_mpr_array_n(&d->r, 4));
    TRY(get_u8(d, GUTS_ITEM_SPLIT, GUTS_ITEM_ALL, &it->kind));
    TRY(get_u8(d, 0, GUTS_RECON_DEPTH_MAX, &it->depth));
    TRY(get_u32(d, UINT32_MAX, &it->prefix));
    REQUIRE(it->depth * 4 >= 32 || (it->prefix >> (4 * it->depth)) == 0);
    switch (it->kind) {
    case GUTS_ITEM_SPLIT: {
        uint8_t b[2 * GUTS_RECON_FANOUT];
        TRY(guts_mpr_bin_copy(&d->r, sizeof b, b));
        for (int i = 0; i < GUTS_RECON_FANOUT; i++)
            it->fps[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
        return 0;
    }
    case GUTS_ITEM_MASK:
        return get_u16(d, &it->mask);
    case GUTS_ITEM_BLOOM:
        TRY(guts_mpr_array_n(&d->r, 3));
        return get_bloom(d, &it->k, &it->nbits, &it->bits);
    default: /* GUTS_ITEM_ALL; get_u8 bounded the kind */
        REQUIRE(guts_mpr_nil(&d->r));
        return 0;
    }
}

static int dec_recon(dec *d, guts_msg_recon *m)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 5));
    TRY(get_key(d, &m->key));
    TRY(get_u8(d, GUTS_SPACE_OBJECTS, GUTS_SPACE_REFS, &m->space));
    TRY(get_u64(d, &m->seed));
    TRY(get_u32(d, UINT32_MAX, &m->round));
    TRY(get_array(d, GUTS_ITEMS_MAX, sizeof *m->items, &m->nitems, &arr));
    m->items = arr;
    for (uint32_t i = 0; i < m->nitems; i++)
        TRY(dec_item(d, &m->items[i]));
    return 0;
}

static int dec_want(dec *d, guts_msg_want *m)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 2));
    TRY(get_key(d, &m->key));
    TRY(get_array(d, GUTS_WANT_MAX, sizeof *m->ids, &m->nids, &arr));
    m->ids = arr;
    for (uint32_t i = 0; i < m->nids; i++)
        TRY(guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, m->ids[i].b));
    return 0;
}

static int dec_objects(dec *d, guts_msg_objects *m)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 2));
    TRY(get_key(d, &m->key));
    /* No count limit of its own: the frame cap bounds it (>= 26 B each). */
    TRY(get_array(d, UINT32_MAX, sizeof *m->objs, &m->nobjs, &arr));
    m->objs = arr;
    for (uint32_t i = 0; i < m->nobjs; i++) {
        guts_wire_obj *o = &m->objs[i];
        uint32_t nf;
        TRY(guts_mpr_array(&d->r, &nf));
        if (nf != 3 && nf != 6)
            return GUTS_EPROTO;
        TRY(guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, o->id.b));
        TRY(get_u8(d, GUTS_OBJ_COMMIT, GUTS_OBJ_TAG, &o->type));
        if (nf == 6) {
            /* record form: a compressed payload and the size it decodes to */
            TRY(get_u8(d, GUTS_WIRE_ENC_ZSTD, GUTS_WIRE_ENC_DELTA, &o->enc));
            TRY(guts_mpr_uint(&d->r, GUTS_OBJ_MAX_DEFAULT, &o->size));
            if (o->enc == GUTS_WIRE_ENC_DELTA)
                TRY(guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, o->base.b));
            else if (!guts_mpr_nil(&d->r))
                return GUTS_EPROTO;
        }
        TRY(guts_mpr_bin(&d->r, GUTS_OBJ_MAX_DEFAULT, &o->data, &o->len));
        if (nf == 3) {
            o->enc = GUTS_WIRE_ENC_RAW;
            o->size = o->len;
        }
    }
    return 0;
}

static int dec_chunk(dec *d, guts_msg_chunk *m)
{
    TRY(guts_mpr_array_n(&d->r, 6));
    TRY(get_key(d, &m->key));
    TRY(guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, m->id.b));
    TRY(get_u8(d, GUTS_OBJ_COMMIT, GUTS_OBJ_TAG, &m->type));
    TRY(guts_mpr_uint(&d->r, GUTS_OBJ_MAX_DEFAULT, &m->total));
    TRY(guts_mpr_uint(&d->r, m->total, &m->offset));
    TRY(guts_mpr_bin(&d->r, GUTS_OBJ_MAX_DEFAULT, &m->data, &m->len));
    REQUIRE(m->len <= m->total - m->offset);
    return 0;
}

static int dec_refs(dec *d, guts_msg_refs *m)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 2));
    TRY(get_key(d, &m->key));
    TRY(get_array(d, GUTS_REFS_MAX, sizeof *m->refs, &m->nrefs, &arr));
    m->refs = arr;
    for (uint32_t i = 0; i < m->nrefs; i++) {
        guts_wire_ref *r = &m->refs[i];
        TRY(guts_mpr_array_n(&d->r, 5));
        TRY(get_refname(d, &r->name));
        TRY(guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, r->target.b));
        if (!guts_mpr_nil(&d->r))
            TRY(get_refname(d, &r->symref));
        TRY(get_u64(d, &r->clock));
        TRY(guts_mpr_bin_copy(&d->r, GUTS_NODE_ID_LEN, r->writer.b));
    }
    return 0;
}

static int dec_peers(dec *d, guts_msg_peers *m)
{
    void *arr;
    TRY(guts_mpr_array_n(&d->r, 1));
    TRY(get_array(d, GUTS_PEERS_MAX, sizeof *m->peers, &m->npeers, &arr));
    m->peers = arr;
    for (uint32_t i = 0; i < m->npeers; i++) {
        guts_wire_peer *p = &m->peers[i];
        const uint8_t *a;
        size_t n;
        TRY(guts_mpr_array_n(&d->r, 2));
        TRY(guts_mpr_bin_copy(&d->r, GUTS_NODE_ID_LEN, p->id.b));
        TRY(guts_mpr_bin(&d->r, GUTS_WIRE_ADDR_MAX, &a, &n));
        REQUIRE(n >= 1);
        memcpy(p->addr, a, n);
        p->addr_len = (uint8_t)n;
    }
    return 0;
}

static int dec_body(dec *d, guts_msg *msg)
{
    switch (msg->type) {
    case GUTS_MSG_ANNOUNCE:
        return dec_announce(d, &msg->u.announce);
    case GUTS_MSG_LEAVE:
        TRY(guts_mpr_array_n(&d->r, 1));
        return get_u64(d, &msg->u.leave.incarnation);
    case GUTS_MSG_PEERS:
        return dec_peers(d, &msg->u.peers);
    case GUTS_MSG_PROBE:
    case GUTS_MSG_ACK:
    case GUTS_MSG_RELEASE:
        TRY(guts_mpr_array_n(&d->r, 3));
    {
        uint64_t seq, pace;
        TRY(get_fixed(d, 0xcf, UINT64_MAX, &msg->u.probe.incarnation));
        TRY(get_fixed(d, 0xce, UINT32_MAX, &seq));
        TRY(get_fixed(d, 0xce, UINT32_MAX, &pace));
        msg->u.probe.seq = (uint32_t)seq;
        msg->u.probe.pace = (uint32_t)pace;
        return 0;
    }
    case GUTS_MSG_DEAD:
        TRY(guts_mpr_array_n(&d->r, 2));
        TRY(guts_mpr_bin_copy(&d->r, GUTS_NODE_ID_LEN, msg->u.dead.node.b));
        return get_u64(d, &msg->u.dead.incarnation);
    case GUTS_MSG_HELLO:
        TRY(guts_mpr_array_n(&d->r, 2));
        TRY(get_u64(d, &msg->u.hello.incarnation));
        return get_u16(d, &msg->u.hello.port);
    case GUTS_MSG_RECON:
        return dec_recon(d, &msg->u.recon);
    case GUTS_MSG_WANT:
        return dec_want(d, &msg->u.want);
    case GUTS_MSG_OBJECTS:
        return dec_objects(d, &msg->u.objects);
    case GUTS_MSG_OBJECT_CHUNK:
        return dec_chunk(d, &msg->u.chunk);
    case GUTS_MSG_REFS:
        return dec_refs(d, &msg->u.refs);
    case GUTS_MSG_DONE:
        TRY(guts_mpr_array_n(&d->r, 3));
        TRY(get_key(d, &msg->u.done.key));
        TRY(get_u8(d, GUTS_SPACE_OBJECTS, GUTS_SPACE_REFS, &msg->u.done.space));
        return get_u64(d, &msg->u.done.sent);
    case GUTS_MSG_DAMAGED:
        TRY(guts_mpr_array_n(&d->r, 2));
        TRY(get_key(d, &msg->u.damaged.key));
        return guts_mpr_bin_copy(&d->r, GUTS_ID_LEN, msg->u.damaged.id.b);
    case GUTS_MSG_ERROR: {
        int64_t code;
        uint32_t n;
        TRY(guts_mpr_array(&d->r, &n));
        if (n != 2 && n != 3)
            return GUTS_EPROTO;
        TRY(guts_mpr_int(&d->r, INT32_MIN, INT32_MAX, &code));
        msg->u.error.code = (int32_t)code;
        if (!guts_mpr_nil(&d->r))
            TRY(get_str(d, GUTS_ERROR_TEXT_MAX, &msg->u.error.text));
        if (n == 3)
            TRY(get_u32(d, GUTS_RETRY_AFTER_MAX_MS, &msg->u.error.retry_after_ms));
        return 0;
    }
    default:
        return GUTS_ENOTFOUND;
    }
}

static int known_type(uint64_t t)
{
    return (t >= GUTS_MSG_ANNOUNCE && t <= GUTS_MSG_RELEASE) ||
           (t >= GUTS_MSG_HELLO && t <= GUTS_MSG_DAMAGED);
}

/* Room for the strings of a message of this type: its whole length can be
 * strings only for lists of them (ANNOUNCE, REFS); the others hold a key or
 * an error text, so a 4 MiB OBJECTS frame does not cost a 4 MiB arena. */
static int arena_alloc(dec *d, guts_msg *msg)
{
    size_t cap = guts_mpr_left(&d->r);
    switch (msg->type) {
    case GUTS_MSG_ANNOUNCE:
    case GUTS_MSG_REFS:
        break;
    case GUTS_MSG_LEAVE:
    case GUTS_MSG_PEERS:
    case GUTS_MSG_PROBE:
    case GUTS_MSG_ACK:
    case GUTS_MSG_DEAD:
    case GUTS_MSG_RELEASE:
    case GUTS_MSG_HELLO:
        return 0;
    default:
        if (cap > GUTS_KEY_MAX + GUTS_ERROR_TEXT_MAX + 2)
            cap = GUTS_KEY_MAX + GUTS_ERROR_TEXT_MAX + 2;
        break;
    }
    d->arena = malloc(cap ? cap : 1);
    if (d->arena == NULL)
        return GUTS_ENOMEM;
    d->arena_cap = cap;
    msg->arena = d->arena;
    return 0;
}

/* The envelope, then the body; on error *msg may hold partial results. */
static int dec_msg(dec *d, guts_msg *msg)
{
    uint32_t n;
    uint64_t magic, version, type;
    TRY(guts_mpr_array(&d->r, &n));
    /* A later version may grow the envelope; magic and version stay first. */
    REQUIRE(n >= 3);
    TRY(guts_mpr_uint(&d->r, UINT64_MAX, &magic));
    REQUIRE(magic == GUTS_WIRE_MAGIC);
    TRY(guts_mpr_uint(&d->r, UINT64_MAX, &version));
    REQUIRE(version >= 1);
    msg->version = version > UINT8_MAX ? UINT8_MAX : (uint8_t)version;
    if (version > GUTS_WIRE_VERSION)
        return GUTS_EVERSION;
    REQUIRE(n == 5);
    TRY(guts_mpr_uint(&d->r, UINT64_MAX, &type));
    msg->type = type > UINT8_MAX ? 0 : (uint8_t)type;
    TRY(guts_mpr_bin_copy(&d->r, GUTS_NODE_ID_LEN, msg->sender.b));
    if (!known_type(type))
        return GUTS_ENOTFOUND;
    TRY(arena_alloc(d, msg));
    TRY(dec_body(d, msg));
    REQUIRE(guts_mpr_left(&d->r) == 0);
    return 0;
}

int guts_msg_decode(const uint8_t *buf, size_t len, guts_msg *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0)
        return GUTS_EPROTO;
    dec d = {.r = {buf, buf + len}, .arena = NULL, .arena_cap = 0, .arena_used = 0};
    int rc = dec_msg(&d, out);
    if (rc) {
        /* Keep what lets the caller count the message, drop the rest. */
        uint8_t type = out->type, version = out->version;
        guts_node_id sender = out->sender;
        guts_msg_free(out);
        out->type = type;
        out->version = version;
        out->sender = sender;
    }
    return rc;
}

void guts_msg_free(guts_msg *msg)
{
    if (msg == NULL)
        return;
    switch (msg->type) {
    case GUTS_MSG_ANNOUNCE:
        free(msg->u.announce.repos);
        break;
    case GUTS_MSG_RECON:
        free(msg->u.recon.items);
        break;
    case GUTS_MSG_WANT:
        free(msg->u.want.ids);
        break;
    case GUTS_MSG_OBJECTS:
        free(msg->u.objects.objs);
        break;
    case GUTS_MSG_REFS:
        free(msg->u.refs.refs);
        break;
    case GUTS_MSG_PEERS:
        free(msg->u.peers.peers);
        break;
    default:
        break;
    }
    free(msg->arena);
    memset(msg, 0, sizeof *msg);
}
