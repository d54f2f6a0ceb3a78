/* fetch.h - choosing what a fetch needs from the store and writing it as
 * one git pack: into the local repository of the remote helper
 * (guts_git_fetch, `git index-pack --stdin`) or to a sink (guts_git_serve,
 * guts-node's git smart HTTP upload-pack).
 *
 * The walk is git's: newest commit date first, stopping once everything
 * queued is reachable from a have. Every function that can fail returns 0
 * or a negative GUTS_E* code and writes one line naming what failed into
 * err (GUTS_GIT_ERR_MAX bytes).
 */
#ifndef GUTS_GIT_FETCH_H
#define GUTS_GIT_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "proc.h"
#include "guts/store.h"


typedef struct guts_git_fetch_stats {
    uint64_t commits_walked;     /* commits read from the store by the walk */
    uint64_t objects;            /* objects written into the pack */
    uint64_t bytes;              /* their content bytes */
    uint64_t pack_bytes;         /* the pack's size */
    char keep[GUTS_HEX_LEN + 1]; /* hash of the pack index-pack kept with a .keep
                                  * file (empty: unpacked, no pack): git removes
                                  * the .keep once the refs are written */
} guts_git_fetch_stats;

/* git's own fetch.unpackLimit default: fewer objects are unpacked loose
 * (a pack per tiny fetch would pile up packs), more stay one pack. */
#define GUTS_GIT_UNPACK_LIMIT 100

/** Write the objects reachable from wants but not from haves into the
 * local repository ($GIT_DIR) as one pack. haves are the local ref targets:
 * ids the store lacks are ignored. The commit walk is git's: newest commit
 * date first, stopping once everything queued is reachable from a have, so a
 * fetch reads the new history only; trees and blobs of the boundary commits
 * are known and not sent. Clock skew can only make the pack larger, never
 * incomplete.
 * @param d, key where r was opened from: a large pack is encoded by several
 *        threads, each reading through a handle of its own (d NULL: one)
 * @param zlevel zlib level of pack entries (0-9)
 * @param progress nonzero: a progress line on stderr
 * @param cache NULL, or the pack cache entry of these wants (packcache.h):
 *        a clone (no haves) sends its pack when there is one, without a
 *        walk, else writes the pack it makes there too (a pack of
 *        GUTS_GIT_UNPACK_LIMIT objects or more); the caller frees it
 * @param[out] connected 1 when git itself verified the result connected: no
 *        haves (a clone) and `git index-pack --check-self-contained-and-
 *        connected` accepted the pack; 0 otherwise
 * Errors: GUTS_ENOTFOUND (a want or an object it needs is not stored),
 * GUTS_ECORRUPT (a stored object fails its hash or does not parse),
 * GUTS_EIO (git index-pack failed), GUTS_ETOOBIG, GUTS_ENOMEM, store errors. */
struct guts_packcache;
int guts_git_fetch(guts_repo *r, guts_data *d, const char *key, const guts_id *wants, size_t nwants,
                   const guts_id *haves, size_t nhaves, int zlevel, int progress,
                   struct guts_packcache *cache, int *connected, guts_git_fetch_stats *st,
                   char *err);

/** May a fetch's negotiation end here ("ready", git's upload-pack): the
 * commit walk from the wants, with the haves (the commits the client said
 * it has, stored here) uninteresting, ends without an interesting commit
 * older than the oldest have, which no have can be an ancestor of. So a
 * client whose newest haves are not yet those its wants descend from is
 * asked for more (it sends older ones), instead of getting a pack of what
 * it has. 0 also when no have is a stored commit or a read fails (the fetch
 * itself then reports what is wrong). */
int guts_git_ready(guts_repo *r, const guts_id *wants, size_t nwants, const guts_id *haves,
                   size_t nhaves);

struct guts_packw;

/* What a git smart HTTP fetch asks for (the node's upload-pack, net/git.c). */
typedef struct guts_git_serve_req {
    const guts_id *wants, *haves, *tags; /* tags: annotated tag ids the refs
                                          * name, for include-tag (none: 0) */
    size_t nwants, nhaves, ntags;
    int thin;            /* deltas may name bases the client has */
    uint64_t blob_limit; /* filter blob:limit=N (0: blob:none); UINT64_MAX: none */
    int zlevel;          /* zlib level of pack entries (0-9), or GUTS_PACK_FAST */
    /* deepen N (a shallow clone or fetch): commits N deep from the wants
     * at most; 0: the whole history. client_shallow: the client's own
     * shallow commits ("shallow" lines). */
    uint32_t depth;
    const guts_id *client_shallow;
    size_t nclient_shallow;
    /* With depth, called once the objects are chosen and before the pack:
     * the new boundary commits (shallow) and the client's shallow commits
     * whose parents now go (unshallow). Its error ends the fetch. */
    int (*on_shallow)(void *ctx, const guts_id *shallow, size_t nshallow,
                      const guts_id *unshallow, size_t nunshallow);
    /* where the pack's bytes go, in order (guts_packw.sink) */
    int (*sink)(void *ctx, const void *buf, size_t n);
    void *sink_ctx;
    /* Optional, with base_ctx (the pack cache, packcache.h). on_objects:
     * the pack's objects once chosen; it returns how many objects an
     * earlier pack has (base_has says which; 0: none) that all go in this
     * pack too: they are then not encoded and base_entries appends that
     * pack's entries first, as they are (whole or deltas among
     * themselves), and the rest may be deltas against them. Their errors
     * end the fetch. */
    size_t (*on_objects)(void *ctx, const guts_id *ids, size_t n);
    int (*base_has)(const void *ctx, const guts_id *id);
    int (*base_entries)(void *ctx, struct guts_packw *p);
    void *base_ctx;
} guts_git_serve_req;

/** Select what q's wants reach and its haves do not (guts_git_fetch's walk)
 * and write it as one pack to q->sink, whole objects and REF_DELTAs against
 * bases in the pack (or, thin, the client's). Never holds the pack: objects
 * are read and written in turn, on this thread (encoder threads, as
 * guts_git_fetch's, cost 25% more CPU for a zlib clone and gained no time
 * on 2 busy cores), and not rehashed: the client's index-pack hashes each
 * one and its connectivity check fails on one that is not what its id says.
 * Errors: as guts_git_fetch; a sink's error is returned as is (err says
 * "writing the pack"). */
int guts_git_serve(guts_repo *r, const guts_git_serve_req *q, guts_git_fetch_stats *st,
                       char *err);

#endif
