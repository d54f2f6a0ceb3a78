/* pack.h - writing git packfiles from the store: one writer for
 * `guts export` (which indexes the pack itself) and the remote helper's
 * fetch (which streams it into `git index-pack`).
 *
 * Format (git's Documentation/gitformat-pack.txt): "PACK", version 2 and
 * the object count as big-endian 32-bit words; per object a header of
 * type (3 bits) and size (little-endian base-128), then the content
 * deflated (a REF_DELTA: the base's 20-byte id, then the delta deflated);
 * last the SHA-1 of everything before it.
 *
 * Where the store holds an object as a zstd delta against a base, the
 * writer can send it as a git delta against the same base (guts_pack_delta
 * builds one from the two contents), so a pack carries roughly the store's
 * compression instead of whole objects.
 */
#ifndef GUTS_GIT_PACK_H
#define GUTS_GIT_PACK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "deflate.h"
#include "guts/store.h"

/* A big-endian 32-bit word, as packs and pack indexes store them. */
static inline void guts_pack_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Pack entry type of a delta against a base named by its id. */
#define GUTS_PACK_REF_DELTA 7

/* Output buffer: large writes, one SHA-1 update each. */
#define GUTS_PACK_BUF (1u << 20)
/* A file or sink writer hands on what it holds at the start of an entry
 * once this much is buffered, not only when the buffer is full: the
 * client's index-pack starts on the first bytes and reads the pack as it
 * comes, so a full 1 MiB buffer held its start back by ~1/9 of a zlib
 * clone's encoding, and the pack's last ~0.7 MB reached it only after the
 * last entry was made. 140 writes for a 9 MB pack instead of 9. */
#define GUTS_PACK_FLUSH_BYTES (64u << 10)
/* A writer's level (in place of zlib's 0-9) for entries deflated by
 * deflate.c's fast encoder: about 4x less CPU than zlib's level 1 for
 * 1.12x its bytes. A large object streamed (guts_packw_stream) is
 * deflated by zlib at level 1. */
#define GUTS_PACK_FAST 10
/* First buffer of an in-memory writer (guts_packw_open_mem): it doubles as
 * an entry needs, so one of these holds a few hundred small entries. */
#define GUTS_PACK_MEM_START (256u << 10)

typedef struct guts_packw {
    int fd;         /* the caller's; never closed here; -1 in memory */
    int mem;        /* entries collected in buf for guts_packw_take */
    /* NULL: bytes go to fd. Else every write goes to sink instead: git's
     * smart HTTP wraps the pack in side-band pkt-lines. Set it after
     * guts_packw_open (which zeroes the writer and only buffers the
     * header). Returns GUTS_OK or an error code, which the writer returns. */
    int (*sink)(void *ctx, const void *buf, size_t n);
    void *sink_ctx;
    uint8_t *buf;
    size_t len;     /* buffered, not yet written */
    size_t cap;     /* of buf */
    uint64_t total; /* bytes written to fd */
    uint32_t crc;   /* CRC-32 of the entry being written, if with_crc */
    int with_crc;
    EVP_MD_CTX *sha;
    z_stream z;
    int zinit;
    guts_deflate fast; /* level GUTS_PACK_FAST's entries; else tab NULL */
    struct packw_async *async; /* guts_packw_async's deflater thread, or NULL */
    /* With the thread: called on the caller's thread before it waits for
     * the thread (a full queue, or _stream, _append, _finish), so that it
     * holds nothing meanwhile (fetch_pack.c: its read transaction, which a
     * slow client would otherwise keep open). NULL: none. */
    void (*before_wait)(void *ctx);
    void *before_wait_ctx;
} guts_packw;

/** Write all n bytes to fd, retrying short writes and EINTR (the git
 * bridge's pipes and files use it too). GUTS_OK or GUTS_EIO (errno set). */
int guts_write_all(int fd, const void *buf, size_t n);

/** Start a pack of nobjects entries on fd, deflating at zlib level
 * (0-9) or GUTS_PACK_FAST; with_crc: keep each entry's CRC-32 in w->crc (a pack index wants
 * it; index-pack computes its own). Errors: GUTS_ENOMEM, GUTS_EIO (a write
 * failed: errno says why). */
int guts_packw_open(guts_packw *w, int fd, int level, int with_crc, uint32_t nobjects);

/** Start an in-memory writer of whole entries at zlib level (or
 * GUTS_PACK_FAST): no pack
 * header, no trailer, no SHA-1. Entries written to it (guts_packw_object,
 * guts_packw_ref_delta; not _stream, which would hold a large object whole)
 * stay in w->buf, which grows, until guts_packw_take hands them over: so
 * several threads can each encode entries that one pack writer appends
 * whole (guts_packw_append). Errors: GUTS_ENOMEM. */
int guts_packw_open_mem(guts_packw *w, int level);

/** Hand over the entries an in-memory writer holds: *buf (malloc'd, the
 * caller frees) and *len; the writer goes on with an empty buffer.
 * Errors: GUTS_ENOMEM (nothing handed over). */
int guts_packw_take(guts_packw *w, uint8_t **buf, size_t *len);

/** Append len bytes of whole entries (from guts_packw_take) to a pack
 * writer on a file. Errors: GUTS_EIO, GUTS_ENOMEM, GUTS_EINVAL (w is in
 * memory). */
int guts_packw_append(guts_packw *w, const void *data, size_t len);

/** Deflate and write entries on a thread of this writer's own from now on
 * (a file writer or one with a sink; not in memory): guts_packw_object,
 * _ref_delta and _delta_or_whole copy the content into a queue of at most
 * GUTS_PACK_ASYNC_MAX bytes (more only for one entry alone) and return,
 * the thread deflates and writes the entries in the order given, and the
 * calls that write anything else (_stream, _append, _finish) wait for the
 * queue to empty first. So with two CPUs the caller reads the next objects
 * while the last ones are deltified and deflated: the entries are the same,
 * in the same order. A write error is returned by a later call. The sink,
 * if any, is called from the thread. guts_packw_free stops it. Errors:
 * GUTS_ENOMEM, GUTS_EINVAL (in memory). */
int guts_packw_async(guts_packw *w);

/* Bytes of content an async writer's queue holds at most. */
#define GUTS_PACK_ASYNC_MAX (2u << 20)

/** Offset in the pack at which the next entry starts (not on an async
 * writer: the thread moves it). */
uint64_t guts_packw_offset(const guts_packw *w);

/** One whole object. Errors: GUTS_EIO, GUTS_ENOMEM, GUTS_ETOOBIG. */
int guts_packw_object(guts_packw *w, int type, const void *data, size_t len);

/** One REF_DELTA entry: delta (guts_pack_delta) against base. */
int guts_packw_ref_delta(guts_packw *w, const guts_id *base, const void *delta, size_t len);

/** One entry of type (data, len): a REF_DELTA against base when
 * guts_pack_delta finds one under half of len against the base's content
 * (bdata, blen; of the same type; blen 0: none), else whole. With the
 * thread (guts_packw_async) the delta is built there: the caller reads the
 * next objects meanwhile. take: GUTS_PACKW_TAKE_BASE, _DATA or both, the
 * buffers (malloc'd) the writer frees when done with them, whatever the
 * result; it copies those it does not take into its queue. Errors as
 * guts_packw_object. */
int guts_packw_delta_or_whole(guts_packw *w, int type, const guts_id *base, const void *bdata,
                              size_t blen, const void *data, size_t len, int take);
#define GUTS_PACKW_TAKE_BASE 1
#define GUTS_PACKW_TAKE_DATA 2

/** One whole entry of type (data, len) deflated from the matches its
 * zstd frame made inside it (guts_repo_get_copies; guts_deflate_copies):
 * no match is searched for. The writer frees copies; take as
 * guts_packw_delta_or_whole's (_DATA only). Errors as guts_packw_object. */
int guts_packw_object_copies(guts_packw *w, int type, const void *data, size_t len,
                             guts_copy *copies, size_t ncopies, int take);

/** A large object, read piece by piece from the store (which rehashes it
 * on the way): never held whole. Errors: the store's, GUTS_EIO. */
int guts_packw_stream(guts_packw *w, guts_repo *r, const guts_id *id, int type, uint64_t size);

/** Write what is buffered and the trailer; sum gets the pack's SHA-1.
 * Errors: GUTS_EIO, GUTS_ENOMEM. */
int guts_packw_finish(guts_packw *w, uint8_t sum[20]);

/** Free the writer's buffers (not fd). Safe on a zeroed or failed writer. */
void guts_packw_free(guts_packw *w);

/** A git delta turning a base of bn bytes into a content of dn bytes made
 * of the given copies from the base (guts_copy: increasing, not
 * overlapping) and, between them, the content's literals (as
 * guts_zstd_lits_copies gives them): lits[0..nlits) are its bytes the
 * copies do not cover, in order; the content itself is never needed. In
 * at most max bytes, as guts_pack_delta; GUTS_ENOTFOUND also when the
 * copies and literals do not add up to dn bytes. */
int guts_pack_delta_lits(size_t bn, size_t dn, const uint8_t *lits, size_t nlits,
                         const guts_copy *copies, size_t ncopies, size_t max, uint8_t **out,
                         size_t *outlen);

/** A git delta turning base[0..bn) into dst[0..dn), in at most max bytes:
 * *out (malloc'd, the caller frees) and *outlen. GUTS_ENOTFOUND when no
 * delta that short was found (or the inputs are under 16 bytes),
 * GUTS_ENOMEM. */
int guts_pack_delta(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn, size_t max,
                    uint8_t **out, size_t *outlen);

/** The git delta for object id (type, its content data/len) against the
 * base the store compressed it against (stored_base, from guts_repo_head:
 * id itself when stored whole), when in_pack(base, ctx) says the
 * base goes in the same pack (NULL: every object does), the base has the
 * same type (a REF_DELTA takes its base's type) and the delta is under
 * half the object: *base, *delta (malloc'd) and *dlen. index-pack and pack
 * readers resolve it wherever the base stands in the pack; the store's
 * chains have no cycles, so neither do these. GUTS_ENOTFOUND when there is
 * none. */
int guts_pack_delta_of(guts_repo *r, const guts_id *id, const guts_id *stored_base, int type,
                       const void *data, size_t len, int (*in_pack)(const guts_id *base, void *ctx),
                       void *ctx, guts_id *base, uint8_t **delta, size_t *dlen);

#endif
