/* wire.h - every message guts sends, and its msgpack codec.
 *
 * A message is an envelope: a msgpack array
 *     [magic, version, type, sender, body]
 * magic is the uint 0x47555453 ("GUTS"), version GUTS_WIRE_VERSION, type one
 * of GUTS_MSG_*, sender the 16-byte node id (bin), body an array whose
 * fields are listed per type below. docs/protocol.md gives every byte.
 *
 * Datagrams (UDP, multicast or unicast) carry ANNOUNCE, LEAVE and PEERS and are at
 * most GUTS_DGRAM_MAX bytes; anything over GUTS_DGRAM_DROP is dropped unread.
 * Stream frames (TCP) are a 4-byte big-endian length then one envelope.
 *
 * Encoding uses msgpack-c's packer writing straight into the caller's
 * buffer; nothing is allocated. Decoding does not use msgpack-c's unpacker
 * (it allocates count * sizeof(msgpack_object) from an array header before
 * reading any element, so `dd ff ff ff ff` would ask for ~100 GB): a small
 * schema-driven reader (src/wire/reader.c) checks every count and length
 * against the bytes that remain and against the limits here before anything
 * is allocated, and nesting is fixed by the schema (at most 5 levels, below
 * GUTS_WIRE_DEPTH_MAX). Decoded byte fields (bins) point into the caller's
 * buffer; decoded strings are NUL-terminated copies in one arena owned by the
 * message (their bytes plus NULs never exceed the input length). Free a
 * decoded message with guts_msg_free().
 */
#ifndef GUTS_WIRE_H
#define GUTS_WIRE_H

#include "guts/guts.h"

#define GUTS_WIRE_MAGIC 0x47555453u
#define GUTS_WIRE_VERSION 1
/* Every datagram we send fits in one IPv6 minimum-MTU packet (1280) minus
 * IPv6 (40) and UDP (8) headers, with room to spare for an AEAD tag. */
#define GUTS_DGRAM_MAX 1200
/* Larger datagrams are dropped before any decoding (memberlist's UDP buffer). */
#define GUTS_DGRAM_DROP 1400
/* Default stream frame cap; configurable per node. Object content larger than
 * a frame travels as OBJECT_CHUNK frames. */
#define GUTS_FRAME_MAX_DEFAULT (4u << 20)
#define GUTS_FRAME_HDR 4
#define GUTS_WIRE_DEPTH_MAX 8      /* deepest legal message nests 5 levels */
#define GUTS_WANT_MAX 4096         /* ids per WANT frame: 4096*22 B < 100 KiB */
#define GUTS_REFS_MAX 1024         /* ref records per REFS frame */
#define GUTS_ITEMS_MAX 8192        /* recon items per RECON frame */
#define GUTS_ANNOUNCE_REPOS_MAX 64 /* repos per ANNOUNCE (bounded anyway by size) */
#define GUTS_BLOOM_BITS_MAX (1u << 23) /* 1 MiB of bloom per item, far above use */
#define GUTS_BLOOM_K_MAX 32        /* 1% needs k=7, 0.1% k=10: 32 is generous */
#define GUTS_ERROR_TEXT_MAX 1024   /* one human-readable line, not a log */
/* Peers per PEERS datagram: 16 entries of an IPv6 address (39 bytes each)
 * and the envelope stay near 660 bytes, well inside GUTS_DGRAM_MAX even
 * sealed; a sample of 8 is what a node sends (CORE_PEX_SAMPLE). */
#define GUTS_PEERS_MAX 16
/* An address in PEERS: the driver's own form, opaque to the codec (guts-node:
 * 6 bytes, IPv4 and port; 18, IPv6 and port; guts-sim: a 4-byte index). */
#define GUTS_WIRE_ADDR_MAX 18
/* A busy server's retry-after: a minute is longer than any session it
 * would wait for; a larger value from a peer is malformed. */
#define GUTS_RETRY_AFTER_MAX_MS 60000

/* Message types. */
enum {
    GUTS_MSG_ANNOUNCE = 1,  /* datagram */
    GUTS_MSG_LEAVE = 2,     /* datagram */
    GUTS_MSG_PEERS = 3,     /* datagram, unicast only: a sample of live peers */
    GUTS_MSG_PROBE = 4,     /* datagram, unicast only: are you alive? */
    GUTS_MSG_ACK = 5,       /* datagram, unicast only: the answer to a PROBE */
    GUTS_MSG_DEAD = 6,      /* datagram: a member found dead by probing */
    GUTS_MSG_RELEASE = 7,   /* datagram, unicast only: a prober gives back its turn */
    GUTS_MSG_HELLO = 10,    /* stream: first frame each way */
    GUTS_MSG_RECON = 11,    /* stream: range reconciliation items */
    GUTS_MSG_WANT = 12,     /* stream: explicit ids wanted */
    GUTS_MSG_OBJECTS = 13,  /* stream: whole objects */
    GUTS_MSG_OBJECT_CHUNK = 14, /* stream: part of one large object */
    GUTS_MSG_REFS = 15,     /* stream: ref records */
    GUTS_MSG_DONE = 16,     /* stream: the sender finished answering a request */
    GUTS_MSG_ERROR = 17,    /* stream: the sender gives up on a request */
    GUTS_MSG_DAMAGED = 18,  /* stream, puller to server: an object sent fails its hash */
};

/* ANNOUNCE: one page of this node's repositories. */
typedef struct guts_announce_repo {
    const char *key;        /* borrowed; checked with guts_repo_key_check */
    uint64_t objects;
    guts_fp fp;             /* set fingerprint of object ids */
    uint64_t refs_digest;   /* low 64 bits of the refs digest */
    /* Bloom of the most recent `covered` object ids (0: none fits). */
    uint32_t bloom_covered;
    uint64_t bloom_seed;
    uint8_t bloom_k;
    uint32_t bloom_nbits;
    const uint8_t *bloom_bits; /* borrowed, (nbits+7)/8 bytes */
} guts_announce_repo;

typedef struct guts_msg_announce {
    uint64_t incarnation;
    uint16_t port;          /* TCP port for streams */
    uint32_t interval_ms;   /* the sender's current announce interval */
    uint16_t page, pages;   /* this page of how many (repos are paged) */
    uint32_t nrepos;
    guts_announce_repo *repos; /* owned by the message */
} guts_msg_announce;

typedef struct guts_msg_leave {
    uint64_t incarnation;
} guts_msg_leave;

/* PROBE and ACK (failure detection, docs/protocol.md): the same fields,
 * encoded at fixed widths so an ACK is never larger than its PROBE. */
typedef struct guts_msg_probe {
    uint64_t incarnation; /* the sender's */
    uint32_t seq;         /* chosen by the prober, echoed by the ACK */
    uint32_t pace;        /* ms. PROBE: the least the prober waits before its
                           * next round of this peer (0: not said); ACK: when,
                           * from now, the sender wants that round (it spaces
                           * its probers' rounds itself) */
} guts_msg_probe;

/* DEAD: node, at incarnation, did not answer its prober. */
typedef struct guts_msg_dead {
    guts_node_id node;
    uint64_t incarnation;
} guts_msg_dead;

/* PEERS: live peers of the sender, each a node id and the address its
 * datagrams come from (peer exchange, docs/protocol.md). */
typedef struct guts_wire_peer {
    guts_node_id id;
    uint8_t addr_len; /* 1..GUTS_WIRE_ADDR_MAX */
    uint8_t addr[GUTS_WIRE_ADDR_MAX];
} guts_wire_peer;

typedef struct guts_msg_peers {
    uint32_t npeers;        /* at most GUTS_PEERS_MAX */
    guts_wire_peer *peers;  /* owned by the message when decoded */
} guts_msg_peers;

typedef struct guts_msg_hello {
    uint64_t incarnation;
    uint16_t port;
} guts_msg_hello;

/* Reconciliation runs over a space of 32-bit keys: for objects the first 4
 * bytes of the id, for refs the top 32 bits of XXH3-64 of the ref name. A
 * range (depth, prefix) holds the keys whose top 4*depth bits equal prefix. */
enum { GUTS_SPACE_OBJECTS = 0, GUTS_SPACE_REFS = 1 };
#define GUTS_RECON_FANOUT 16
#define GUTS_RECON_DEPTH_MAX 8

enum {
    GUTS_ITEM_SPLIT = 1, /* puller -> server: 16-bit seeded fps of the 16 children */
    GUTS_ITEM_MASK = 2,  /* server -> puller: which children of a SPLIT differ */
    GUTS_ITEM_BLOOM = 3, /* puller -> server: bloom of the puller's keys in range;
                          * the server sends what it has there that isn't in it */
    GUTS_ITEM_ALL = 4,   /* puller -> server: the puller has nothing in range */
};

typedef struct guts_recon_item {
    uint8_t kind;
    uint8_t depth;
    uint32_t prefix;
    uint16_t fps[GUTS_RECON_FANOUT]; /* SPLIT */
    uint16_t mask;                   /* MASK: bit i set when child i differs */
    uint8_t k;                       /* BLOOM: number of hashes */
    uint32_t nbits;                  /* BLOOM: size in bits */
    const uint8_t *bits;             /* BLOOM: borrowed, (nbits+7)/8 bytes */
} guts_recon_item;

typedef struct guts_msg_recon {
    const char *key;        /* borrowed */
    uint8_t space;          /* GUTS_SPACE_* */
    uint64_t seed;          /* hash seed for fps and blooms of this round */
    uint32_t round;         /* exchange number within a session */
    uint32_t nitems;
    guts_recon_item *items; /* owned by the message */
} guts_msg_recon;

typedef struct guts_msg_want {
    const char *key;        /* borrowed */
    uint32_t nids;
    guts_id *ids;           /* owned */
} guts_msg_want;

/* Payload encodings of an object on the wire: the store's record encodings
 * (GUTS_REC_* in store.h, docs/storage.md). RAW travels in the short form
 * [id, type, data]; ZSTD and DELTA in the record form
 * [id, type, enc, size, base|nil, data]. */
enum { GUTS_WIRE_ENC_RAW = 0, GUTS_WIRE_ENC_ZSTD = 1, GUTS_WIRE_ENC_DELTA = 2 };

typedef struct guts_wire_obj {
    guts_id id;
    uint8_t type;
    uint8_t enc;            /* GUTS_WIRE_ENC_*; RAW: data is the content */
    uint64_t size;          /* content size (ZSTD, DELTA; RAW: len) */
    guts_id base;           /* DELTA only */
    const uint8_t *data;    /* borrowed */
    size_t len;
} guts_wire_obj;

typedef struct guts_msg_objects {
    const char *key;        /* borrowed */
    uint32_t nobjs;
    guts_wire_obj *objs;    /* owned */
} guts_msg_objects;

typedef struct guts_msg_chunk {
    const char *key;        /* borrowed */
    guts_id id;
    uint8_t type;
    uint64_t total;         /* object size */
    uint64_t offset;        /* of this chunk */
    const uint8_t *data;    /* borrowed */
    size_t len;
} guts_msg_chunk;

typedef struct guts_wire_ref {
    const char *name;       /* borrowed; checked with guts_refname_check */
    guts_id target;         /* zero: deleted */
    const char *symref;     /* borrowed; NULL unless symbolic */
    uint64_t clock;
    guts_node_id writer;
} guts_wire_ref;

typedef struct guts_msg_refs {
    const char *key;        /* borrowed */
    uint32_t nrefs;
    guts_wire_ref *refs;    /* owned */
} guts_msg_refs;

typedef struct guts_msg_done {
    const char *key;        /* borrowed */
    uint8_t space;
    uint64_t sent;          /* objects or refs the sender sent for the request */
} guts_msg_done;

/* DAMAGED: the object id of repository key, as the server sent it, does
 * not hash to its id (docs/protocol.md); the server checks its copy. */
typedef struct guts_msg_damaged {
    const char *key;        /* borrowed */
    guts_id id;
} guts_msg_damaged;

typedef struct guts_msg_error {
    int32_t code;           /* GUTS_E* */
    const char *text;       /* borrowed */
    uint32_t retry_after_ms; /* 0: none; a busy server's hint (at most
                              * GUTS_RETRY_AFTER_MAX_MS) */
} guts_msg_error;

typedef struct guts_msg {
    uint8_t type;
    uint8_t version;
    guts_node_id sender;
    union {
        guts_msg_announce announce;
        guts_msg_leave leave;
        guts_msg_peers peers;
        guts_msg_probe probe; /* PROBE and ACK */
        guts_msg_dead dead;
        guts_msg_hello hello;
        guts_msg_recon recon;
        guts_msg_want want;
        guts_msg_objects objects;
        guts_msg_chunk chunk;
        guts_msg_refs refs;
        guts_msg_done done;
        guts_msg_error error;
        guts_msg_damaged damaged;
    } u;
    void *arena;            /* decoder-owned string copies; NULL when encoding */
} guts_msg;

/** Encode msg as an envelope into buf (cap bytes). *len gets the size.
 * msg->version and msg->arena are ignored (GUTS_WIRE_VERSION is sent).
 * Errors: GUTS_ETOOBIG (does not fit in cap: nothing is written),
 * GUTS_EINVAL (a field breaks a check the decoder makes, e.g. a bad key or
 * ref name, a count over its limit, a bad bloom or item, unknown type).
 * Never allocates, never writes past cap. */
int guts_msg_encode(const guts_msg *msg, uint8_t *buf, size_t cap, size_t *len);

/** Decode one envelope occupying exactly len bytes of buf. Borrowed byte
 * fields (bloom bits, object data) point into buf, which must outlive *out;
 * borrowed strings (keys, ref names, text) are NUL-terminated copies in
 * out->arena. On success call guts_msg_free(out). On error nothing needs
 * freeing (calling guts_msg_free is still safe); for GUTS_EVERSION
 * out->version, and for GUTS_ENOTFOUND out->type (0 if > 255) and
 * out->sender, are filled in so the caller can count the message.
 * Errors: GUTS_EPROTO (malformed, trailing bytes, a count or length beyond
 * what remains or beyond a limit, bad key or ref name), GUTS_EVERSION
 * (newer version: ignore and count), GUTS_ENOTFOUND (unknown type: ignore
 * and count), GUTS_ENOMEM. */
int guts_msg_decode(const uint8_t *buf, size_t len, guts_msg *out);

/** Release what guts_msg_decode() allocated and zero *msg. Safe on a zeroed
 * message and on NULL. Only for decoded messages: it frees the record array
 * (repos, items, ids, objs or refs) of msg->type. */
void guts_msg_free(guts_msg *msg);

/** Name of a message type ("ANNOUNCE", ...), or "?" */
const char *guts_msg_name(int type);

/** Exact encoded size of msg (what guts_msg_encode would write), after the
 * same checks. Errors: GUTS_EINVAL as for guts_msg_encode. */
int guts_msg_size(const guts_msg *msg, size_t *len);

/** Encode msg as a stream frame: the 4-byte big-endian length, then the
 * envelope. *len gets header plus envelope. Errors as guts_msg_encode. */
int guts_msg_encode_frame(const guts_msg *msg, uint8_t *buf, size_t cap, size_t *len);

/** Write the 4-byte big-endian frame header for an envelope of len bytes. */
void guts_wire_frame_hdr(uint32_t len, uint8_t hdr[GUTS_FRAME_HDR]);

/** Read a frame header: *len gets the envelope length that follows.
 * Errors: GUTS_EPROTO (length 0), GUTS_ETOOBIG (length > frame_max: the
 * reader should drop the stream, as the frame cannot be skipped cheaply). */
int guts_wire_frame_len(const uint8_t hdr[GUTS_FRAME_HDR], size_t frame_max, uint32_t *len);

/* ---- Announce paging ----------------------------------------------------
 * An ANNOUNCE is a head (envelope, the scalars, the repos array header) plus
 * one entry per repository. The core packs entries while
 *     guts_announce_head_size(a) + sum(guts_announce_repo_size(r)) <= GUTS_DGRAM_MAX
 * and sizes each bloom with guts_announce_bloom_room(). All three are exact:
 * tests/unit/test_wire.c encodes and compares. */

/* Largest possible head: 27 bytes of envelope (fixarray, uint32 magic,
 * version, type, bin8 sender, body fixarray) plus uint64 incarnation (9),
 * uint16 port (3), uint32 interval (5), two uint16 (3+3) and an array16
 * header (3). */
#define GUTS_ANNOUNCE_HEAD_MAX 53

/** Exact bytes of an ANNOUNCE with a's scalars and a->nrepos entries, not
 * counting the entries themselves. */
size_t guts_announce_head_size(const guts_msg_announce *a);

/** Exact encoded bytes of one repository entry (bloom included when
 * r->bloom_nbits > 0, else the 1-byte nil). */
size_t guts_announce_repo_size(const guts_announce_repo *r);

/** Largest bloom size in bytes B such that r's entry with a bloom of
 * nbits = 8*B (and B bytes of bits) takes at most room bytes; any nbits in
 * (8B-8, 8B] fits too. Uses r's key, objects, fp, refs_digest,
 * bloom_covered, bloom_seed and bloom_k; ignores bloom_nbits and bits.
 * Returns 0 when not even a 1-byte bloom fits (send the entry without one),
 * and never more than GUTS_BLOOM_BITS_MAX / 8. */
size_t guts_announce_bloom_room(const guts_announce_repo *r, size_t room);

#endif
