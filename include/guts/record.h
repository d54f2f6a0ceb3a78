/* record.h - what a store holds, as values: objects, records as stored,
 * ref records, large objects being received, a repository's counters; and
 * the record codec, which needs no store.
 *
 * The LMDB store (store.h) and the core's store interface (core.h, with the
 * memory store behind it) share these types, so the core and its tests need
 * no LMDB. Nothing here reads the clock, a file or a socket.
 */
#ifndef GUTS_RECORD_H
#define GUTS_RECORD_H

#include "guts/guts.h"

/* ---- Objects and counters -------------------------------------------------- */

typedef struct guts_obj {
    guts_id id;        /* the claimed id: verified against type and data */
    int type;          /* GUTS_OBJ_COMMIT .. GUTS_OBJ_TAG */
    const void *data;  /* content, len bytes (no git header) */
    size_t len;
    const guts_id *base; /* optional: a similar object (e.g. git's delta base)
                          * to compress against if it is stored or earlier in
                          * the same batch; NULL for none */
    const void *gdelta;  /* optional, with base: a git delta turning base's
                          * content into data (as git's pack holds it), whose
                          * copies the store takes, each checked, instead of
                          * searching for its own; NULL for none */
    size_t gdlen;
} guts_obj;

typedef struct guts_repo_info {
    uint64_t objects;   /* entries in "objects" */
    uint64_t refs;      /* entries in "refs" (live refs, HEAD included) */
    uint64_t tombstones; /* deleted refs remembered in "refclock" */
    guts_fp fp;         /* set fingerprint of the object ids */
    guts_fp refs_digest; /* order-independent digest of every ref record */
    uint64_t clock;     /* highest Lamport clock of any ref record */
    uint64_t txnid;     /* env's last committed transaction: changes on any write */
    uint64_t stored_bytes; /* sum of stored object record sizes */
    uint64_t staged;       /* large objects partly received (not objects yet) */
    uint64_t staged_bytes; /* content bytes held for them */
} guts_repo_info;

/* A large object partly received: what guts_repo_stage_list reports. */
typedef struct guts_stage {
    guts_id id;
    int type;
    uint64_t size; /* the whole object's content size */
    uint64_t have; /* bytes staged: the next write starts here */
} guts_stage;

/* Staged objects per repository: starting another drops the one written
 * least recently (a sender that vanished must not pin disk for ever). */
#define GUTS_STAGE_MAX 8

/* ---- Records: objects as stored, for replication ------------------------- */

/* Encodings of a record's payload (the "objects" database's encoding byte;
 * docs/storage.md). */
#define GUTS_REC_RAW 0   /* the content */
#define GUTS_REC_ZSTD 1  /* one zstd frame of the content */
#define GUTS_REC_DELTA 2 /* a zstd frame made with base's full content as prefix */
#define GUTS_REC_PIECES 3 /* a large object: no payload here (read it with
                           * guts_repo_read); never accepted by rec_put */

/* One object's record: what guts_repo_rec_get() reads without decompressing
 * and guts_repo_rec_put() stores from another node. */
typedef struct guts_rec {
    guts_id id;
    int type;          /* GUTS_OBJ_COMMIT .. GUTS_OBJ_TAG */
    int enc;           /* GUTS_REC_* */
    uint64_t size;     /* content size, <= GUTS_OBJ_MAX_DEFAULT */
    guts_id base;      /* GUTS_REC_DELTA only */
    unsigned depth;    /* GUTS_REC_DELTA: chain depth where it was read
                        * (1..50); ignored by guts_repo_rec_put() */
    const void *data;  /* payload, len bytes */
    size_t len;
} guts_rec;

/* Told of each record a rec_put verified and stored, with its decoded
 * content (valid during the call only): a puller learns an object's links
 * without reading it back (node_closure.c). A record found stored already
 * may or may not be told. */
typedef struct guts_rec_seen {
    void (*fn)(void *arg, const guts_id *id, int type, const void *data, size_t len);
    void *arg;
} guts_rec_seen;

/* zstd window of a delta record: the base and the object must fit in it
 * for the base to help. 2^27 (128 MiB) is zstd's default decoder limit
 * (ZSTD_WINDOWLOG_LIMIT_DEFAULT), so decoders need no special setting;
 * pairs larger than this are compressed without a base. */
#define GUTS_REC_WINDOWLOG 27

/** Decode a record without a store (for other stores): base is the base's
 * content for a delta (NULL otherwise). The content is verified against the
 * record's id. *out is malloc()ed for the caller.
 * Errors: GUTS_EHASH (undecodable or another id), GUTS_EINVAL, GUTS_ETOOBIG,
 * GUTS_ENOMEM. */
int guts_rec_decode(const guts_rec *rec, const void *base, size_t blen, void **out);

/** Shape checks of a record that need no store: type, encoding, and the
 * size bound (before anything is allocated for the content).
 * Errors: GUTS_EINVAL (bad type or encoding), GUTS_ETOOBIG, GUTS_EHASH (a raw
 * payload of another length); guts_store_errmsg() says which. */
int guts_rec_check(const guts_rec *rec);

struct ZSTD_DCtx_s;
/** guts_rec_decode with the caller's zstd context dctx (a store keeps one)
 * and no copy of a raw record: *out is then NULL and the content is the
 * payload; otherwise *out is malloc()ed. The record must pass
 * guts_rec_check. Errors: GUTS_EHASH, GUTS_ENOMEM. */
int guts_rec_decode_with(struct ZSTD_DCtx_s *dctx, const guts_rec *rec, const uint8_t *base,
                         size_t blen, uint8_t **out);

/** guts_rec_decode_with without the check of the id: for a caller that
 * verifies the content later (guts_rec_verify, or the same hash on another
 * thread) and stores nothing before it has. Errors: GUTS_EHASH (the
 * payload does not decode to its size), GUTS_ENOMEM. */
int guts_rec_unpack_with(struct ZSTD_DCtx_s *dctx, const guts_rec *rec, const uint8_t *base,
                         size_t blen, uint8_t **out);

/** Decode the zstd frame src (len bytes) into dst (cap bytes) with prefix
 * (plen bytes; NULL: none) as raw content before it, as after
 * ZSTD_DCtx_refPrefix, without the dictionary refPrefix allocates and
 * frees per call (3-4% of a receiving node's loop on small deltas). The
 * result is zstd's: the decoded size or an error code (on which the
 * caller resets dctx, as after any failed frame). */
size_t guts_zstd_decode_prefixed(struct ZSTD_DCtx_s *dctx, void *dst, size_t cap, const void *src,
                                 size_t len, const void *prefix, size_t plen);

/** Whether content (rec->size bytes) hashes to rec->id. Errors: GUTS_EHASH
 * (another id; guts_store_errmsg() names the record), GUTS_EIO. */
int guts_rec_verify(const guts_rec *rec, const void *content);

/* ---- Ref records ------------------------------------------------------------ */

typedef struct guts_ref {
    char name[GUTS_REFNAME_MAX + 1]; /* "refs/..." or "HEAD" */
    guts_id target;                  /* zero: deleted (a tombstone) */
    char symref[GUTS_REFNAME_MAX + 1]; /* non-empty: symbolic (only HEAD) */
    uint64_t clock;                  /* Lamport clock of the update */
    guts_node_id writer;             /* node that made the update */
} guts_ref;

/** Digest term of one ref record (XXH3-128 of name, target, symref, clock and
 * writer): the refs digest is their sum mod 2^128, like guts_fp. */
guts_fp guts_ref_digest_term(const guts_ref *ref);

#endif
