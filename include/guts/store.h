/* store.h - the object store: one LMDB environment per repository.
 *
 * Layout of a data dir (see docs/storage.md for every byte):
 *   DATA/node/                 LMDB env: this node's identity and settings
 *   DATA/repos/OWNER/NAME/     LMDB env: named databases
 *       objects   id(20) -> object record (type, size, encoding, content)
 *       refs      full ref name -> id(20), or "ref: <name>" for a symbolic HEAD
 *       refclock  full ref name -> Lamport clock(8, BE) writer node id(16), also
 *                 for deleted refs (tombstones), so deletions never resurrect
 *       log       insertion sequence(8, BE) -> id(20): "recent objects"
 *       meta      named values: schema, count, fingerprint, refs digest, clock
 *       pieces    id(20) index(4, BE) -> one piece of a large object
 *       stage     id(20) -> a large object being received, not yet an object
 *       imports   source(16) [XXH3-64 of a ref name(8)] -> what the last
 *                 import from one git directory left (local: never sent)
 *
 * Several processes may open the same environment (a running node and the
 * CLI); LMDB's lock file serialises writers. Every write goes through one
 * write transaction per batch; the object count, the set fingerprint, the
 * refs digest and the log are updated in the same transaction as the data,
 * so they can never disagree with it after a crash.
 *
 * Nothing here reads the clock, the environment or a socket.
 */
#ifndef GUTS_STORE_H
#define GUTS_STORE_H

#include "guts/guts.h"
#include "guts/record.h"

/** Where the text of a failed LMDB assertion goes (len bytes at buf,
 * NUL-terminated) before the process aborts, instead of stderr: a program
 * that runs its work in a child (guts) passes a shared page, and reports
 * the text with its own one line. NULL: stderr. Process-wide. */
void guts_store_crash_note(char *buf, size_t len);

/* ---- Data directory ------------------------------------------------------ */

typedef struct guts_data guts_data;

/* guts_data_open flags. */
#define GUTS_DATA_CREATE 1u /* make the data dir (and missing parents) if absent */

/** Open the data dir at path: DATA/node/ with a random 16-byte node id made
 * once, and DATA/repos/. With GUTS_DATA_CREATE whatever is missing is made
 * (mode 0700); without it nothing is created, so read-only tools never turn
 * a mistyped path into a new data dir.
 * @param[out] out handle; close with guts_data_close().
 * Errors (guts_store_errmsg() has the cause, errno text included, worded to
 * follow the data dir's path): GUTS_ENOTFOUND (path does not exist, without
 * GUTS_DATA_CREATE), GUTS_EINVAL (path exists but has no node/ or repos/),
 * GUTS_EIO (cannot create, stat or open: permission denied, not a
 * directory, ...), GUTS_ESTORE, GUTS_ENOMEM. */
int guts_data_open(const char *path, unsigned flags, guts_data **out);
/** Take the data dir's daemon lock: an exclusive flock on
 * DATA/node/daemon.lock, holding this process's pid, kept until
 * guts_data_close() (or the process's exit, however it ends). One guts-node
 * per data dir: a second one would announce the same node id.
 * @param[out] holder with GUTS_EAGAIN, the pid of the process holding it
 *   (0 if it could not be read)
 * Errors: GUTS_EAGAIN (held by another process), GUTS_EIO, GUTS_ENOMEM. */
int guts_data_lock(guts_data *d, long *holder);
/** Close the data dir handle. Repository handles still open from it stay
 * valid until they are closed. */
void guts_data_close(guts_data *d);
/** The data dir path as given to guts_data_open(). */
const char *guts_data_path(const guts_data *d);
/** This node's identity. */
const guts_node_id *guts_data_node_id(const guts_data *d);
/** Add one to the node's incarnation (kept in DATA/node) and return the new
 * value: a restarted daemon announces a higher one than before. */
int guts_data_incarnation_next(guts_data *d, uint64_t *out);
/** Initial map size of environments opened after this call (bytes, rounded
 * up to the page size). Maps grow by doubling when full; tests make it small
 * to exercise growth. Default 64 MiB. */
void guts_data_set_initial_mapsize(guts_data *d, size_t bytes);
/** Largest map of environments opened after this call (bytes): a write that
 * would need more fails with GUTS_EFULL and stores nothing. Caps the disk a
 * repository may take; tests make it small. Default 4 TiB. */
void guts_data_set_max_mapsize(guts_data *d, size_t bytes);
/** Budget of the decoded-object cache of each repository handle opened
 * after this call (bytes; 0 disables it). Default 64 MiB: enough for the
 * delta chains of an export; a process keeping many repositories open may
 * want less. */
void guts_data_set_cache_bytes(guts_data *d, size_t bytes);

/** Call cb(key, ctx) for every repository env under DATA/repos whose key is
 * valid, in sorted order. A non-zero return from cb stops the walk and is
 * returned. */
int guts_data_repos(guts_data *d, int (*cb)(const char *key, void *ctx), void *ctx);

/* ---- Repositories -------------------------------------------------------- */

typedef struct guts_repo guts_repo;

#define GUTS_REPO_CREATE 0x1 /* create the env if absent */
#define GUTS_REPO_VERIFY 0x2 /* read every page of an existing env first */
/* Create a new env whose commits do not flush (MDB_NOSYNC) until
 * guts_repo_sync_on() or its close: for a replica that can be pulled
 * again. Meanwhile the env carries a mark on the disk, so that an env
 * found with it after a system crash is damage, and another process's
 * write into it returns once the mode is over (docs/storage.md). Ignored
 * for an env that exists or is already open in this process. */
#define GUTS_REPO_NOSYNC 0x4

/** Open the repository env DATA/repos/OWNER/NAME. The key is checked with
 * guts_repo_key_check() before any path is built. An existing env's file is
 * first checked against its LMDB meta pages (read with pread, not mapped):
 * an empty or short data.mdb, meta pages that are not LMDB's, or a last
 * page past the end of the file is damage. With GUTS_REPO_VERIFY, a child
 * process then reads every database of the env (every branch and leaf
 * page); if it dies by a signal or LMDB finds a broken page, that is damage
 * too, found without risk to this process (its cost: docs/operations.md).
 * Without it, a damaged page met later can still kill this process.
 * Errors: GUTS_EINVAL (bad key), GUTS_ENOTFOUND (absent, no CREATE),
 * GUTS_EDAMAGED (damaged: guts_store_errmsg() says how),
 * GUTS_EVERSION (newer schema), GUTS_EIO, GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_open(guts_data *d, const char *key, unsigned flags, guts_repo **out);
/** The result for keys[i] of guts_repo_verify_many: GUTS_OK, GUTS_EDAMAGED
 * (why says how), GUTS_EINVAL (bad key) or GUTS_EIO (not checked: why
 * says why); why is "" with GUTS_OK. */
typedef void (*guts_repo_verify_fn)(size_t i, int rc, const char *why, void *ctx);
/** GUTS_REPO_VERIFY's checks of the existing repositories keys[0..n), in
 * order, in one child process rather than one per open: a fork copies the
 * caller's page tables, so forks with many envs open cost more each
 * (call this before opening them). A child killed inside one env has that
 * env damaged, and another child goes on with the next. cb gets every
 * result as it comes. An env checked here and opened soon after may be
 * opened without GUTS_REPO_VERIFY. Errors: GUTS_EINVAL, GUTS_ENOMEM. */
int guts_repo_verify_many(guts_data *d, const char *const *keys, size_t n, guts_repo_verify_fn cb,
                          void *ctx);
void guts_repo_close(guts_repo *r);
const char *guts_repo_key(const guts_repo *r);

/** Remove a repository env from disk (its directory). The handle must not be
 * open in this process. */
int guts_repo_remove(guts_data *d, const char *key);

/** Move a damaged repository env out of the way, keeping every file: its
 * directory DATA/repos/OWNER/NAME becomes DATA/damaged/OWNER/NAME.SUFFIX
 * ("-2", "-3"... appended when that exists). The key is then absent and may
 * be created afresh (e.g. pulled from peers). Nothing is ever deleted. The
 * env must not be open in this process.
 * @param suffix e.g. a UTC time; no '/', at most 64 bytes
 * @param[out] to the new path, NUL-terminated in tolen bytes (may be NULL)
 * Errors: GUTS_EINVAL, GUTS_EAGAIN (open here), GUTS_ENOTFOUND, GUTS_EIO,
 * GUTS_EEXIST (99 copies already set aside under that suffix). */
int guts_repo_set_aside(guts_data *d, const char *key, const char *suffix, char *to, size_t tolen);

/** Read the counters of a repository (one read transaction). */
int guts_repo_info_get(guts_repo *r, guts_repo_info *out);
/** The env's last committed transaction id, without a transaction: cheap to
 * poll for writes by other processes. */
int guts_repo_txnid(guts_repo *r, uint64_t *out);

/** Whether r's env commits without flushing (GUTS_REPO_NOSYNC): 1 or 0. */
int guts_repo_is_nosync(const guts_repo *r);

/** End GUTS_REPO_NOSYNC: flush the env, then flush every commit from now
 * on, and clear its mark (nothing to do for an env that does). Until then
 * a crash of the process loses nothing (the writes are in the kernel's
 * page cache); a crash of the system may take back or tear what the env
 * holds (LMDB keeps its integrity without flushes only on a filesystem
 * that keeps write order), and the mark has the env set aside as damaged
 * at the next open (docs/storage.md). Call it on the thread that writes,
 * between transactions.
 * Errors: GUTS_EIO, GUTS_ESTORE, GUTS_EINVAL. */
int guts_repo_sync_on(guts_repo *r);

/** Flush every transaction committed in r's env so far to the disk
 * (mdb_env_sync, forced). Safe on another thread than the writer's while
 * the handle stays open: it reads nothing of the map (the writer may grow
 * it meanwhile), only flushes the file, and sets no error message.
 * Errors: GUTS_EINVAL, GUTS_EIO. */
int guts_repo_sync(guts_repo *r);

/** Open one read transaction that every read through r then uses, until
 * guts_repo_read_release(): a consistent snapshot, and a walk that reads
 * thousands of objects costs one transaction, not one each. Writes through
 * r still work, but cannot grow the map meanwhile (GUTS_EAGAIN), and the
 * snapshot does not see them: release before writing. Closing r releases.
 * Errors: GUTS_EINVAL (already held), store errors. */
int guts_repo_read_hold(guts_repo *r);
/** End guts_repo_read_hold's transaction (nothing if none is held). */
void guts_repo_read_release(guts_repo *r);

/** Group the puts of r (guts_repo_put and guts_repo_rec_put) from now on,
 * for a bulk load such as guts import or a node's pull (lmdbstore.h): a
 * put then only reads the store (no write transaction)
 * and keeps its records in memory; they are written in one transaction,
 * sorted by id, once the group holds bytes of records (GUTS_GROUP_BYTES is
 * the import's), by guts_repo_group_commit(), by ending the group
 * (bytes = 0), or first thing by any other write through r. One commit
 * per group instead of one per batch keeps LMDB from copying most of the
 * tree's leaves for every batch (a copy of the tree left in free pages),
 * and writing in id order fills the leaves. guts_repo_put, _rec_put,
 * _get, _rec_get, _has and _head through r see the group's objects;
 * counters, listings and other
 * handles or processes see them once committed, and a crash loses what
 * the group holds (never anything committed). Closing r discards it. If
 * another writer stored some of the group's objects meanwhile, the commit
 * skips them and sets again the depth of the records built on them;
 * should a chain then pass the depth bound, the group is dropped and the
 * commit fails with GUTS_EAGAIN (importing again resumes). A failed commit
 * drops the group too. Errors of a commit: as guts_repo_put's, GUTS_EAGAIN. */
int guts_repo_group(guts_repo *r, size_t bytes);
/** Commit what the open group holds (nothing if it holds nothing);
 * grouping stays on. Errors: as guts_repo_group's. */
int guts_repo_group_commit(guts_repo *r);
/** Whether r's group holds an id in [from, to) (NULL: no bound on that
 * side), a scan of what it holds: a listing of a range it holds nothing
 * of needs no commit first. */
int guts_repo_group_holds(const guts_repo *r, const guts_id *from, const guts_id *to);
/** guts import's group: 64 MiB of records (its memory bound: the records,
 * then LMDB's dirty pages while they commit). */
#define GUTS_GROUP_BYTES ((size_t)64 << 20)

/* ---- Objects ------------------------------------------------------------- */

/** Store a batch of objects in one write transaction (into r's group
 * instead when r groups its puts: guts_repo_group). Every id is verified
 * first; on a mismatch nothing is stored, *bad is the index of the first bad
 * object and GUTS_EHASH is returned. Objects already present are skipped
 * without rewriting. When the map is full it is grown and the batch retried.
 * @param[out] added number of new objects (may be NULL)
 * @param[out] bad index of the first rejected object (may be NULL)
 * Errors: GUTS_EHASH, GUTS_EINVAL (bad type), GUTS_ETOOBIG (object over the
 * limit), GUTS_EFULL (disk full or map cannot grow), GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_put(guts_repo *r, const guts_obj *objs, size_t n, size_t *added, size_t *bad);

/** 1 if the object is stored, 0 if not, or a negative error. */
int guts_repo_has(guts_repo *r, const guts_id *id);

/** Type and size of a stored object without reading its content.
 * Errors: GUTS_ENOTFOUND, GUTS_ECORRUPT, GUTS_ESTORE. */
int guts_repo_stat(guts_repo *r, const guts_id *id, int *type, uint64_t *size);
/** guts_repo_stat, and *base (may be NULL): the object its record is a
 * delta against, or id itself when it is stored whole (one lookup: the
 * pack writer's per object). */
int guts_repo_head(guts_repo *r, const guts_id *id, int *type, uint64_t *size, guts_id *base);

/** Read an object's content. *data is allocated with malloc() for the caller
 * (free() it); it is verified to decompress to *len bytes. Reading many
 * objects that share delta bases is fast: decoded bases are cached.
 * Errors: GUTS_ENOTFOUND, GUTS_ECORRUPT, GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_get(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len);

/* A copy from a delta's base: the object's bytes [at, at + len) are the
 * base's [from, from + len). */
typedef struct guts_copy {
    size_t at, from, len;
} guts_copy;

/** guts_repo_get, and when the object is stored whole as one zstd frame
 * and decoded here, the matches that frame made inside it
 * (guts_zstd_self_copies): *copies (malloc'd, the caller frees) and
 * *ncopies; its deflate stream is made of them. *copies is NULL when there
 * are none to give: a delta record (a clone's pack sends it from its
 * literals, guts_repo_get_lits, or scans it again), the object stored raw
 * or in pieces or found in the cache, a frame not read so. Errors as
 * guts_repo_get. */
int guts_repo_get_copies(guts_repo *r, const guts_id *id, int *type, void **data, size_t *len,
                         guts_copy **copies, size_t *ncopies);

/** The object's zstd delta record read without decoding it
 * (guts_zstd_lits_copies): its copies from its stored base and its
 * literals, the bytes between them, when every match of its frame reaches
 * into the base, the base has its type, and at most size / inserts_div
 * bytes (0: any) are literals. *copies and *lits are malloc'd (the caller
 * frees), *type, *len (the object's size), *base (the stored base, as
 * guts_repo_head gives it) and *blen (its size) are set. One lookup of the
 * object's record and one of its base's: a caller that tries this first
 * needs no guts_repo_head for such an object. Nothing is checked against
 * the object's id or the frame's checksum: for a reader that hashes what
 * it gets (git's index-pack). GUTS_ENOTFOUND when the record is not such
 * a delta, or the object is of GUTS_LARGE_MIN bytes or more (or its frame
 * is not read so: the caller decodes it, which reports damage),
 * GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_get_lits(guts_repo *r, const guts_id *id, unsigned inserts_div, int *type,
                       size_t *len, guts_id *base, size_t *blen, guts_copy **copies,
                       size_t *ncopies, uint8_t **lits, size_t *nlits);

/** Check that a stored object's content hashes to its id: the record (and
 * its delta chain) is decoded and rehashed, a large object piece by piece.
 * Errors: GUTS_ECORRUPT (it does not: guts_store_errmsg() says how),
 * GUTS_ENOTFOUND, GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_verify(guts_repo *r, const guts_id *id);

/** Remove stored objects (records that failed guts_repo_verify) in one write
 * transaction, with count, fingerprint and stored bytes, so the repository
 * no longer claims them and the next pull fetches them again. Ids not
 * stored are skipped. The insertion log keeps their old entries; readers of
 * it (guts_repo_recent) skip ids no longer stored.
 * @param[out] dropped how many were removed (may be NULL)
 * Errors: GUTS_EINVAL, GUTS_EFULL, GUTS_ESTORE. */
int guts_repo_drop(guts_repo *r, const guts_id *ids, size_t n, size_t *dropped);

/** Call cb(id, ctx) for every stored id in [from, to) in id order (from NULL:
 * the first id; to NULL: past the last). A non-zero return from cb stops the
 * walk and is returned. Runs in one read transaction. */
int guts_repo_ids(guts_repo *r, const guts_id *from, const guts_id *to,
                  int (*cb)(const guts_id *id, void *ctx), void *ctx);

/** Up to max ids of the most recently inserted objects, newest first.
 * @param[out] n how many were written to out. */
int guts_repo_recent(guts_repo *r, size_t max, guts_id *out, size_t *n);

/* ---- Large objects: pieces, staging, range reads ------------------------- */

/* Objects of at least this many bytes are stored in pieces of
 * GUTS_PIECE_BYTES, each compressed on its own (docs/storage.md, "Large
 * objects"): no step of storing, reading or sending one holds it whole. */
#define GUTS_LARGE_MIN ((uint64_t)8 << 20)
#define GUTS_PIECE_BYTES ((size_t)1 << 20)

/** Read up to len bytes of an object's content from byte off into buf;
 * *got is min(len, size - off). A large object is read piece by piece
 * (only the pieces covering the range are decoded); any other is decoded
 * whole (the cache keeps it for the next range). Pieces are checked by
 * length and zstd checksum, not rehashed (guts_repo_stream does that).
 * Errors: GUTS_EINVAL (off past the end), GUTS_ENOTFOUND, GUTS_ECORRUPT,
 * GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_read(guts_repo *r, const guts_id *id, uint64_t off, void *buf, size_t len,
                   size_t *got);

/** Call cb(data, len, ctx) with an object's content in order, at most
 * GUTS_PIECE_BYTES at a time, and rehash it on the way (SHA-1 of git's
 * header and the content). A non-zero return from cb stops and is returned.
 * Errors: those of guts_repo_read, GUTS_ECORRUPT (the content does not hash
 * to its id; reported after the last call of cb). */
int guts_repo_stream(guts_repo *r, const guts_id *id,
                     int (*cb)(const void *data, size_t len, void *ctx), void *ctx);

/** Stage len bytes at offset off of object id (type, size bytes in all),
 * committed before the call returns. off 0 starts the object over; any
 * other off must equal the bytes staged so far (what guts_repo_stage_list
 * reports). Staged bytes are kept as pieces and hashed as they arrive (after
 * a restart the staged prefix is rehashed from disk once); staging is not
 * an object: not in "objects", not counted, not in the fingerprint. The
 * write that completes the object checks its SHA-1 and, in the same
 * transaction, makes it an object (*stored = 1); on a mismatch the staging
 * is dropped and nothing is stored. An object already present is not
 * staged: its staging, if any, is dropped and *stored stays 0.
 * Errors: GUTS_EINVAL (bad type, off not the staged length, or a type or
 * size other than the staging's), GUTS_ETOOBIG (size over the limit, or
 * off + len past size), GUTS_EHASH, GUTS_EFULL, GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_stage_write(guts_repo *r, const guts_id *id, int type, uint64_t size, uint64_t off,
                          const void *data, size_t len, int *stored);

/** Up to max staged objects, least recently written first; *n how many. */
int guts_repo_stage_list(guts_repo *r, guts_stage *out, size_t max, size_t *n);

/** Drop id's staging (no error when there is none). */
int guts_repo_stage_drop(guts_repo *r, const guts_id *id);

/* ---- Records: objects as stored, for replication ------------------------- */

/** Read an object's record as stored (no decompression). *buf is malloc()ed
 * for the caller (free() it) and out's data points into it. A large object
 * comes back as enc GUTS_REC_PIECES with no data (*buf NULL).
 * Errors: GUTS_ENOTFOUND, GUTS_ECORRUPT, GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_rec_get(guts_repo *r, const guts_id *id, guts_rec *out, void **buf);

/** Store objects received as records, in one write transaction (into r's
 * group instead when r groups its puts), in order.
 * Each record is decoded (a delta against its base: stored before this call
 * or earlier in it) and its id verified from the decoded content before
 * anything is written; then its payload is stored as received (a delta
 * with its depth recomputed here), or, when a delta's chain would pass the
 * depth limit, its content is stored by the normal path. A delta whose base
 * is absent is not stored: nobase[i] is set to 1 (0 for every other
 * record), so the caller can retry it when the base has arrived. Objects
 * already present are skipped. A size over GUTS_OBJ_MAX_DEFAULT is rejected
 * before anything is allocated. On input, nobase[i] set says record i is
 * such a delta put again (its id was not stored when it was held): a
 * grouped put then looks its id up in the group only, not in the objects
 * tree (a search into a random leaf for each), and the group's commit
 * skips it if something stored it meanwhile; it then counts in *added.
 * @param nobase n flags, or NULL; in: 0 for a record not held before
 * @param seen told of each record stored, with its content (may be NULL)
 * @param[out] added number of new objects (may be NULL)
 * @param[out] bad index of the first rejected record (may be NULL)
 * Errors: GUTS_EHASH (does not decode, or decodes to another id: nothing
 * stored), GUTS_EINVAL (bad type or encoding), GUTS_ETOOBIG, GUTS_EFULL,
 * GUTS_ECORRUPT (a stored base does not decode), GUTS_ESTORE, GUTS_ENOMEM. */
int guts_repo_rec_put(guts_repo *r, const guts_rec *recs, size_t n, uint8_t *nobase,
                      const guts_rec_seen *seen, size_t *added, size_t *bad);


/* ---- Refs ---------------------------------------------------------------- */

/** Look up one ref record, tombstones included (target zero).
 * Errors: GUTS_ENOTFOUND, GUTS_EINVAL (bad name), GUTS_ECORRUPT. */
int guts_repo_ref_get(guts_repo *r, const char *name, guts_ref *out);

/** Call cb(ref, ctx) for every ref record in name order; tombstones only when
 * with_tombstones is set. A non-zero return from cb stops and is returned. */
int guts_repo_refs(guts_repo *r, int with_tombstones,
                   int (*cb)(const guts_ref *ref, void *ctx), void *ctx);

/** Write ref records as given (the merge decision is the caller's) in one
 * transaction: a zero target without symref removes the ref from "refs" and
 * keeps a tombstone in "refclock". Names are checked; the refs digest and
 * the repository clock are updated in the same transaction.
 * Errors: GUTS_EINVAL (bad name), GUTS_EFULL, GUTS_ESTORE. */
int guts_repo_refs_put(guts_repo *r, const guts_ref *refs, size_t n);

/* ---- Import marks ---------------------------------------------------------- */

/* A source of imports: 16 bytes naming one git directory (the CLI hashes
 * its canonical path), so marks of different directories never mix. */
#define GUTS_IMPORT_SRC_LEN 16

/* The ref record one source's last import left for a name: the record it
 * wrote, or the store's record it found equal to the source's ref. A ref
 * whose record still equals its mark was changed by nobody since; one
 * whose record differs was changed by someone else (a push, a peer). Marks
 * are local to the env: not refs, not in the refs digest, never sent. */
typedef struct guts_import_mark {
    char name[GUTS_REFNAME_MAX + 1];
    guts_id target;      /* the record's target; zero for a symbolic HEAD */
    uint64_t clock;      /* the record's Lamport clock */
    guts_node_id writer; /* the record's writer */
    int forget;          /* guts_repo_import_put only: drop the name's mark */
} guts_import_mark;

/** Call cb(mark, ctx) for every mark of source src (in no useful order).
 * A non-zero return from cb stops and is returned.
 * Errors: GUTS_ECORRUPT (a malformed mark), GUTS_ESTORE. */
int guts_repo_import_marks(guts_repo *r, const uint8_t src[GUTS_IMPORT_SRC_LEN],
                           int (*cb)(const guts_import_mark *m, void *ctx), void *ctx);

/** In one write transaction: check that the refs digest still is *digest
 * (the ref state the caller decided on: no record changed since, by a node
 * applying a peer's update or a push), then write ref records as
 * guts_repo_refs_put does, set (or, with forget, drop) marks of source src,
 * and keep path as the source's name for people reading the env
 * (mdb_dump). On success *digest is the refs digest written, ready for the
 * caller's next batch.
 * Errors: GUTS_ECONFLICT (the refs changed: nothing written; decide again),
 * GUTS_EINVAL (bad name, path over 4096 bytes), GUTS_EFULL, GUTS_ESTORE. */
int guts_repo_import_put(guts_repo *r, const uint8_t src[GUTS_IMPORT_SRC_LEN], const char *path,
                         guts_fp *digest, const guts_ref *refs, size_t n,
                         const guts_import_mark *marks, size_t nmarks);

#endif
