/* internal.h - structures and helpers shared by the store's source files.
 *
 * Not a public header: the CLI, core and daemon see only guts/store.h. The
 * store is split by concern (data dir and envs, transactions and map growth,
 * object records and their codec, the decoded-base cache, refs); they meet
 * here.
 */
#ifndef GUTS_STORE_INTERNAL_H
#define GUTS_STORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>
#include <openssl/evp.h>
/* ZSTD_compressSequences (objects_put.c): in zstd.h's static section, but
 * exported by the shared library since zstd 1.5.0. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "guts/store.h"

/* Schema written into meta "schema"; a newer one is refused (GUTS_EVERSION).
 * 2 once an env holds a large object (encoding 3, older code cannot read
 * it); envs without one stay at 1 and remain readable by older code. */
#define STORE_SCHEMA 1
#define STORE_SCHEMA_PIECES 2
/* Named databases a repo env may hold: the eight used (five, plus pieces and
 * stage for large objects, imports for import marks) plus room for
 * later layers without a schema change (LMDB fixes the count at open). */
#define STORE_REPO_MAXDBS 16
/* The node env holds a few small keys; 1 MiB is hundreds of times enough. */
#define STORE_NODE_MAPSIZE (1u << 20)
/* Default initial map of a repo env: small repos never grow, larger ones
 * double a handful of times. The file itself is sparse until written. */
#define STORE_MAPSIZE_DEFAULT ((size_t)64 << 20)
/* Largest map we ever ask for: beyond any repository we target and well
 * inside a 64-bit address space (47 bits). Past it, puts fail GUTS_EFULL. */
#define STORE_MAPSIZE_MAX ((size_t)1 << 42)

/* Object record: type(1) encoding(1) size(8, BE) [base id(20) depth(1)] payload. */
#define REC_HDR 10
#define REC_DELTA_HDR (REC_HDR + GUTS_ID_LEN + 1)
#define ENC_RAW 0
#define ENC_ZSTD 1
#define ENC_ZSTD_DELTA 2
#define ENC_PIECES 3
/* A large object's row: the header, then the piece size (4, BE). */
#define REC_PIECES_LEN (REC_HDR + 4)
/* Longest chain of zstd deltas (object -> base -> base ...): git's default
 * --depth is 50, and reading cost grows with depth, so the same bound. */
#define STORE_DELTA_DEPTH_MAX 50
/* zstd window when compressing against a base (record.h). */
#define STORE_DELTA_WINDOWLOG GUTS_REC_WINDOWLOG
/* zstd level: 3 (zstd's default) measured as the best speed/size point for
 * git objects; see docs/storage.md. */
#ifndef STORE_ZSTD_LEVEL
#define STORE_ZSTD_LEVEL 3
#endif
/* Decoded-content cache per repo handle: holds bases so that exporting a
 * repository decodes each delta chain link about once. 64 MiB covers the
 * working set of chains of typical repositories. */
#define STORE_CACHE_BYTES ((size_t)64 << 20)

typedef struct store_env store_env;
struct store_env {
    char key[GUTS_KEY_MAX + 1];
    MDB_env *env;
    MDB_dbi objects, refs, refclock, log, meta, pieces, stage, imports;
    size_t max_mapsize;
    int users;          /* guts_repo handles sharing this env */
    atomic_int readers; /* read txns open now: the map cannot be moved */
    atomic_int broken;  /* a failed remap left no map: every call fails */
    char *dir; /* the env's directory */
    /* GUTS_REPO_NOSYNC: commits without flushes, the env's directory
     * holding its unflushed mark until they flush again
     * (store_nosync_end), and the id of our last commit: one by another
     * process (an import, a push) ends the mode before ours. */
    int nosync;
    uint64_t own_txnid;
    /* Commits through this process (store_write, the writer's thread), and
     * how many of them the last guts_repo_sync covered (any thread): equal,
     * store_nosync_end needs no flush of its own. */
    atomic_uint_fast64_t commits, synced;
    store_env *next;
};

struct guts_data {
    char *path;
    MDB_env *node_env;
    MDB_dbi node_dbi;
    guts_node_id node_id;
    size_t initial_mapsize;
    size_t max_mapsize;
    size_t cache_bytes;
    int refs;             /* 1 for the caller + one per open repo handle */
    pthread_mutex_t lock; /* guards envs and refs */
    store_env *envs;      /* one per repo env open in this process */
    int lock_fd;          /* DATA/node/daemon.lock while guts_data_lock holds it, else -1 */
};

/* The file guts_data_lock flocks, under DATA/node/. */
#define STORE_LOCK_FILE "daemon.lock"

typedef struct cache_entry cache_entry;
typedef struct store_cache {
    cache_entry **buckets;
    size_t nbuckets;
    size_t count;
    size_t bytes;
    size_t cap;
    cache_entry *head, *tail; /* most recently used first */
    /* Set: what the cache would free goes here instead (a content the
     * hasher may still be reading: objects_put.c). */
    void (*drop)(void *arg, uint8_t *data);
    void *drop_arg;
} store_cache;

/* Records compressed by a put, kept between puts (no page faults after the
 * first batch). */
typedef struct store_arena {
    uint8_t *buf;
    size_t used, cap;
} store_arena;

/* An id's start slot in an open-addressing table (ids are SHA-1: any 8 of
 * their bytes hash well). */
static inline size_t store_id_slot(const guts_id *id)
{
    uint64_t h;
    memcpy(&h, id->b + 4, sizeof h);
    return (size_t)h;
}

/* guts_repo_group's records, held in memory until the group commits
 * (group.c). Entries in put order (a delta's base before it); records in
 * chunks that never move, so a record found stays valid while the group
 * lives. */
typedef struct group_ent {
    guts_id id;
    uint8_t *rec;
    size_t len;
} group_ent;
typedef struct store_group {
    group_ent *ents;
    size_t n, cap;
    uint64_t *map; /* open addressing over ents: tag << 32 | index + 1, 0 free */
    size_t mask;
    uint8_t **chunks; /* chunks[nchunks - 1] is being filled */
    size_t nchunks, chunk_used, chunk_cap;
    size_t bytes;   /* record bytes held */
    uint64_t txnid; /* snapshot the group's first put read */
    guts_id lo, hi; /* least and greatest id held (n > 0) */
} store_group;

struct guts_repo {
    guts_data *d;
    store_env *se;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    store_arena arena;
    ZSTD_Sequence *seqs; /* a delta's copies for zstd (objects_put.c), kept */
    size_t seqcap;
    store_cache cache;
    /* SHA-1 of the staging last written through this handle, as committed:
     * the next write of the same object continues it (pieces.c). */
    EVP_MD_CTX *stage_sha;
    guts_id stage_id;
    uint64_t stage_have; /* bytes hashed; UINT64_MAX: nothing valid */
    /* guts_repo_read_hold's read txn: every read of this handle uses it
     * (store_read_begin hands it out, store_read_end leaves it open). */
    MDB_txn *held;
    /* guts_repo_group: its bound (0: puts are not grouped), what it holds. */
    size_t grouped;
    store_group grp;
    struct store_hasher *hasher; /* hasher.c: started by a large rec_put */
};

/* A compression context with the store's parameters (NULL: no memory). */
ZSTD_CCtx *store_cctx_new(void);

/* Record header, parsed and range-checked. */
typedef struct rec_hdr {
    int type;
    int enc;
    uint64_t size;
    guts_id base; /* ENC_ZSTD_DELTA only */
    int depth;    /* 0 unless ENC_ZSTD_DELTA */
    const uint8_t *payload;
    size_t plen;
} rec_hdr;

/* LMDB's assertion callback for every env: the text to the crash note
 * (guts_store_crash_note) or stderr, then abort(). */
void store_assert(MDB_env *env, const char *msg);

/* Longest cause of a damaged env (one line). */
#define STORE_WHY_MAX 600
/* Check dir/data.mdb against its LMDB meta pages without mapping it.
 * GUTS_OK; GUTS_EDAMAGED or GUTS_EIO with the cause in why (envcheck.c). */
int store_env_check_file(const char *dir, char *why, size_t whylen);
/* A replica's unflushed mark (envcheck.c): the file, in the env's
 * directory, present from before its first commit without a flush until
 * a flush after its last. Write it (its entry flushed), clear it
 * (removal flushed): GUTS_OK or GUTS_EIO. Check it: GUTS_OK without one,
 * 1 with this boot's (*pid: the process that writes without flushes),
 * GUTS_EDAMAGED with another's (a system crash may have torn the env),
 * GUTS_EIO, cause in why. store_mark_gone(pid): that process is gone, or
 * is us. */
#define STORE_NOSYNC_MARK "unflushed"
int store_mark_write(const char *dir);
int store_mark_clear(const char *dir);
int store_mark_check(const char *dir, long *pid, char *why, size_t whylen);
int store_mark_gone(long pid);
/* After a flushed commit of ours into dir's env while it carries this
 * boot's mark: a node's first copy is under way without flushes. Wait,
 * bounded, until the node has ended that mode and cleared the mark (it
 * does at its next commit or poll, having seen ours); clear it when its
 * process is gone. So what a user wrote is not set aside with the replica
 * after a system crash. GUTS_OK; GUTS_EAGAIN when the mark stayed. */
int store_mark_settle(const char *dir);
/* Read every database of the env at dir in a child process (map of mapsize
 * bytes). GUTS_OK; GUTS_EDAMAGED (the child died, or LMDB found its pages
 * broken) or GUTS_EIO (it could not check) with the cause in why. */
int store_env_walk(const char *dir, size_t mapsize, char *why, size_t whylen);
/* The result for dirs[i] of store_env_walk_many: GUTS_OK, GUTS_EDAMAGED
 * or GUTS_EIO (not checked), the cause in why ("" when GUTS_OK). */
typedef void (*store_env_walk_fn)(size_t i, int rc, const char *why, void *ctx);
/* store_env_check_file and store_env_walk of dirs[0..n) in order, in one
 * child process: cb gets each result as it comes. A child that dies
 * inside one env has that env damaged; another child goes on with the
 * next. Always GUTS_OK: every dir gets its result. */
int store_env_walk_many(const char *const *dirs, size_t n, size_t mapsize, store_env_walk_fn cb,
                        void *ctx);

/* Map an LMDB or errno code to GUTS_E*, recording a message. */
int store_mdb_err(int rc, const char *what);
/* data.c: mkdir -p with mode 0700 (failures name `shown`, NULL: the data
 * dir); a + "/" + b, malloc'd (NULL: no memory); free d once its last
 * user (the guts_data or a repository handle) is gone. */
int store_mkdirs(const char *path, const char *shown);
/* Removes the files LMDB makes in dir (absent ones are fine), then dir:
 * GUTS_OK, or GUTS_EIO/GUTS_EINVAL with the cause set. */
int store_env_remove(const char *dir);
char *store_path_join(const char *a, const char *b);
void store_data_free(guts_data *d);

/* Byte order helpers: every integer on disk is big-endian. */
static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}
static inline void fp_put(uint8_t *p, guts_fp fp)
{
    be64_put(p, fp.hi);
    be64_put(p + 8, fp.lo);
}
static inline guts_fp fp_get(const uint8_t *p)
{
    guts_fp fp = {be64_get(p + 8), be64_get(p)};
    return fp;
}

/* Transactions (txn.c). A read txn must be ended with store_read_end. */
int store_read_begin(guts_repo *r, MDB_txn **txn);
void store_read_end(guts_repo *r, MDB_txn *txn);
/* A read txn and a cursor on dbi in it (nothing open on error); close the
 * cursor, then store_read_end(). */
int store_read_cursor(guts_repo *r, MDB_dbi dbi, MDB_txn **txn, MDB_cursor **cur);
/* Run fn in one write txn and commit. fn returns 0, a GUTS_E* code, or a raw
 * LMDB/errno code; MDB_MAP_FULL grows the map (by at least grow_hint bytes)
 * and runs fn again from scratch, so fn must not keep state across calls. */
int store_write(guts_repo *r, size_t grow_hint, int (*fn)(guts_repo *r, MDB_txn *txn, void *arg),
                void *arg);
/* Flush se, end its commits without flushes and clear its mark (txn.c);
 * before a close, or for guts_repo_sync_on. The writer's thread. */
int store_nosync_end(store_env *se);
/* meta helpers inside a txn: a missing key reads as zero. */
int store_meta_get_u64(guts_repo *r, MDB_txn *txn, const char *k, uint64_t *v);
int store_meta_put_u64(guts_repo *r, MDB_txn *txn, const char *k, uint64_t v);
int store_meta_get_fp(guts_repo *r, MDB_txn *txn, const char *k, guts_fp *v);
int store_meta_put_fp(guts_repo *r, MDB_txn *txn, const char *k, guts_fp v);

/* The object set's counters in meta, as one write sees them: load them,
 * store_set_add() every new object whose row is written, save them. */
typedef struct store_set {
    uint64_t count, seq, stored; /* meta "count", "seq", "stored_bytes" */
    guts_fp fp;                  /* meta "fp" */
    size_t added;                /* objects added by this write */
    MDB_cursor *log; /* NULL, or a cursor on the log that store_set_add appends
                      * with: no descent of the log per id (a group commit's) */
} store_set;
int store_set_load(guts_repo *r, MDB_txn *txn, store_set *s);
/* Log the new object id (its row of rowlen bytes is written) at s->seq and
 * count it. */
int store_set_add(guts_repo *r, MDB_txn *txn, store_set *s, const guts_id *id, size_t rowlen);
/* Write the counters back; nothing when no object was added. */
int store_set_save(guts_repo *r, MDB_txn *txn, const store_set *s);

/* Groups (group.c). Add a record (copied: rec, then tail) to g;
 * GUTS_ENOMEM. id is read after g's arrays may move: never one of g's. */
int group_add(store_group *g, const guts_id *id, const uint8_t *rec, size_t len,
              const uint8_t *tail, size_t tlen);
/* The entry of id in g, or NULL. */
group_ent *group_find(const store_group *g, const guts_id *id);
/* Start loading the map slot group_find(g, id) reads first. */
void group_prefetch(const store_group *g, const guts_id *id);
/* Drop the entries from index n on (a failed put's). */
void group_truncate(store_group *g, size_t n);
void group_free(store_group *g);
/* A grouped put (put or rec_put) reads in a read transaction, which the
 * group's first put notes (its commit then knows whether another writer
 * came between), and *n0 is the group's size before it; its end closes
 * the transaction and, when rc is an error, drops the entries added from
 * n0 on (returning rc as a GUTS_E* code, what naming the put), else
 * commits a group that reached its bound. */
int group_put_begin(guts_repo *r, MDB_txn **txn, size_t *n0);
int group_put_end(guts_repo *r, MDB_txn *txn, size_t n0, int rc, const char *what);
/* Write what r's group holds in one transaction and empty it (emptied on
 * failure too). Every write through r but a grouped put calls it first. */
int store_group_commit(guts_repo *r);
/* The record of id as r sees it: its group's, else txn's. 0, MDB_NOTFOUND
 * or another LMDB code. */
int store_obj_lookup(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v);

/* Object records (objects.c; writing them is objects_put.c). */
int rec_parse(const MDB_val *v, rec_hdr *h);
/* The record of id in txn, parsed: *v its bytes (valid while txn lives), *h
 * its header. GUTS_ENOTFOUND, a storage error, or GUTS_ECORRUPT for a
 * malformed record (the error text names id). */
int store_rec_find(guts_repo *r, MDB_txn *txn, const guts_id *id, MDB_val *v, rec_hdr *h);
int store_corrupt(const guts_id *id, const char *why);
/* Full content of a stored object, read in txn, into a new buffer. */
int store_obj_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, int *type, uint8_t **out,
                     size_t *len);
/* The same for a record the caller found and parsed already (h, from
 * store_rec_find or rec_parse in txn) and whose content it did not find
 * in the cache: no second lookup of id. */
int store_obj_decode_found(guts_repo *r, MDB_txn *txn, const guts_id *id, const rec_hdr *h,
                           uint8_t **out, size_t *len);

/* Large objects (pieces.c): the whole content of a large object read in
 * txn into a new buffer (for guts_repo_get and delta bases). */
int pieces_decode(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t size, uint8_t **out);
/* Delete every piece of id, adding their value bytes to *bytes (may be NULL). */
int pieces_del(guts_repo *r, MDB_txn *txn, const guts_id *id, uint64_t *bytes);
/* Sum of staged content bytes and the number of staged objects. */
int stage_totals(guts_repo *r, MDB_txn *txn, uint64_t *n, uint64_t *bytes);

/* Cache (cache.c): content by id, least recently used evicted first. */
int cache_init(store_cache *c, size_t cap);
void cache_free(store_cache *c);
/* Pointer valid until the next cache_put on the same cache. */
const uint8_t *cache_get(store_cache *c, const guts_id *id, size_t *len);
/* Start loading the bucket cache_get(c, id, ...) reads first, or (entry
 * set) the bucket's first entry, once the bucket has arrived. */
void cache_prefetch(const store_cache *c, const guts_id *id, int entry);
/* Takes ownership of data (malloc'd) in every case: kept or freed. */
void cache_give(store_cache *c, const guts_id *id, uint8_t *data, size_t len);
/* Copies data when it is worth keeping. */
void cache_copy(store_cache *c, const guts_id *id, const void *data, size_t len);
/* Drops id's entry, if any (a content that failed its check). */
void cache_forget(store_cache *c, const guts_id *id);

/* Hasher (hasher.c): SHA-1 of received contents on a thread of its own.
 * Contents of at least this size are handed over: below it the hand-off
 * (a lock, a slot, a deferred free) costs about what the hash does. */
#define STORE_HASH_ASYNC_MIN ((size_t)1 << 10)
/* A call hands over only when its records hold this much to hash (a
 * frame of a large repository's copy does; a small repository's pull
 * never starts the thread). */
#define STORE_HASH_CALL_MIN ((size_t)64 << 10)
/* Jobs waiting at most: past either bound the loop hashes inline. 4 MiB
 * waiting is ~2 ms of SHA-1 here, enough to ride out a frame's decode;
 * the contents are alive anyway (the cache's, or deferred frees). */
#define STORE_HASH_RING 1024
/* A sleeping hasher is woken once this much waits (~35 us of SHA-1, against
 * a few microseconds of both threads for the wake-up). */
#define STORE_HASH_WAKE_BYTES ((size_t)64 << 10)
#define STORE_HASH_QUEUE_BYTES ((size_t)4 << 20)

typedef struct hash_job {
    const void *data;
    size_t len;
    guts_id id;
    size_t idx; /* the record's index in its call */
    int type;
} hash_job;

typedef struct store_hasher {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    hash_job ring[STORE_HASH_RING];
    uint64_t submitted;       /* jobs handed over (loop; under mu) */
    uint64_t claimed;         /* jobs the thread took from the front, under mu */
    uint64_t limit;           /* jobs a wait has not taken from the back, under mu */
    uint64_t bytes_claimed;   /* under mu */
    uint64_t bytes_submitted; /* loop's alone */
    _Atomic uint64_t done;    /* jobs hashed, in order (the thread's) */
    _Atomic uint64_t bytes_done;
    _Atomic size_t bad;          /* least idx that failed since hasher_reset */
    int sleeping, waiting, stop; /* under mu */
} store_hasher;

/* A started hasher (GUTS_ENOMEM: no thread). */
int hasher_start(store_hasher **out);
/* Stops and frees h after its jobs (NULL: nothing). */
void hasher_stop(store_hasher *h);
/* Hand over the hash of data (len bytes, type) expected to be id; idx is
 * reported by hasher_wait if it fails. data must stay valid until
 * hasher_done() reaches *seq. Returns 1, or 0 when the queue is full
 * (nothing handed over: hash it inline). */
int hasher_submit(store_hasher *h, size_t idx, int type, const void *data, size_t len,
                  const guts_id *id, uint64_t *seq);
/* Jobs done so far (every seq up to it); hasher_bad then covers them. */
uint64_t hasher_done(store_hasher *h);
/* Least idx of a job done so far that failed, or SIZE_MAX. */
size_t hasher_bad(store_hasher *h);
/* Finishes every job handed over (hashing on the caller's thread those
 * the hasher has not started); returns the least idx that failed since
 * hasher_reset (SIZE_MAX: none). */
size_t hasher_wait(store_hasher *h);
/* Forgets failures: with no job pending, before a new call's jobs. */
void hasher_reset(store_hasher *h);

#endif
