/* lmdbstore.h - the LMDB store (store.h) as a core store (core.h): the
 * adapter a node runs over, in the store's library, so the core links no
 * LMDB.
 */
#ifndef GUTS_LMDBSTORE_H
#define GUTS_LMDBSTORE_H

#include "guts/core.h"
#include "guts/store.h"

typedef struct guts_core_lmdbstore guts_core_lmdbstore;

/** Wrap an open data dir (not owned) as a core store; repositories are
 * opened on first use and kept open, each grouping its puts (1 MiB of
 * records a commit; committed before any other write and before info, ids
 * and recent read counters or listings). Errors: GUTS_ENOMEM. */
int guts_core_lmdbstore_new(guts_data *d, guts_core_lmdbstore **out);
/** Commit every group, close every repository opened through it and
 * free it. */
void guts_core_lmdbstore_free(guts_core_lmdbstore *s);
void guts_core_lmdbstore_iface(guts_core_lmdbstore *s, guts_core_store *out);
/** The last committed transaction id of key's env (guts_repo_txnid: no
 * transaction, no system call once open): what a poll for writes by other
 * processes compares before reading anything. */
int guts_core_lmdbstore_txnid(guts_core_lmdbstore *s, const char *key, uint64_t *out);
/** key's counters as last committed (guts_repo_info_get), without
 * committing the records its open group holds, as the interface's info
 * does: for the daemon's poll, whose status may lag a group (1 MiB of
 * records), where a commit it forced in the
 * middle of a pull cost that pull an extra transaction, its page copies
 * and a flush (docs/performance.md, h-rep22). Errors: those of
 * guts_repo_open and guts_repo_info_get. */
int guts_core_lmdbstore_info_committed(guts_core_lmdbstore *s, const char *key,
                                       guts_repo_info *out);
/** What to do with a repository found damaged (GUTS_EDAMAGED, why from
 * guts_store_errmsg()) the first time it is opened. Return 0 once it is out
 * of the way (guts_repo_set_aside): the key then reads as absent and can be
 * pulled afresh. Any other return keeps it refused without opening it again. */
typedef int (*guts_core_lmdbstore_damaged_fn)(const char *key, const char *why, void *arg);
/** Every repository is opened with GUTS_REPO_VERIFY (a child process reads
 * each page first: a damaged env cannot kill the caller). With a hook set,
 * a damaged one is handed to fn; without one it is refused. */
void guts_core_lmdbstore_on_damaged(guts_core_lmdbstore *s, guts_core_lmdbstore_damaged_fn fn,
                                    void *arg);

/** Check every repository under DATA/repos now, all in one child process
 * (guts_repo_verify_many), before any is opened: a damaged one goes to the
 * hook (or is refused) at once, a healthy one is opened later without a
 * check of its own. Without this call each first open forks its own child,
 * and each fork costs more with every env already open. The counts of
 * repositories checked and found damaged go to checked and ndamaged (each
 * may be NULL). Errors: GUTS_EIO (DATA/repos unreadable), GUTS_ENOMEM. */
int guts_core_lmdbstore_verify_all(guts_core_lmdbstore *s, size_t *checked, size_t *ndamaged);

/** Flush replicas off the caller's thread: from now on an env this adapter
 * creates commits without a flush (GUTS_REPO_NOSYNC) and threads (1 to
 * 16) flush it after its writes; the store's unsynced() says 1 for it
 * until its first copy is over (guts_core_lmdbstore_tick) and a flush
 * covers its last commit. notify(arg) runs on a flusher
 * thread after each flush (e.g. ev_async_send); the owner's thread then
 * calls guts_core_lmdbstore_flushed. Envs that existed before, or were
 * opened without creating them, flush every commit as before. Freeing the
 * adapter stops the threads and flushes what is left.
 * Errors: GUTS_EINVAL (started already, threads out of range), GUTS_ENOMEM. */
int guts_core_lmdbstore_flush_start(guts_core_lmdbstore *s, size_t threads,
                                    void (*notify)(void *arg), void *arg);
/** Take the flushes finished since the last call (owner's thread): a
 * repository whose flush covered its last commit flushes every commit from
 * now on and goes to cb (durable: announce it); one written again
 * meanwhile, or whose flush failed, is flushed again. Returns how many
 * went to cb. */
size_t guts_core_lmdbstore_flushed(guts_core_lmdbstore *s, void (*cb)(const char *key, void *arg),
                                   void *arg);
/** Call every few hundred ms (owner's thread). A replica's first copy
 * stays unflushed (flushed by the threads after each commit, but never
 * one flush per commit on the caller's thread) until its refs are written
 * or it is not written between two ticks; then a flush that covers its
 * last commit ends the mode as above. */
void guts_core_lmdbstore_tick(guts_core_lmdbstore *s);

#endif
