/* packcache.h - whole clone packs kept on disk beside the store, so that a
 * second clone of the same refs is a file read instead of reading,
 * deltifying and deflating every object again (git's own server reads its
 * packs; guts transcodes zstd records into git entries).
 *
 * A pack is filed under a key: the SHA-1 of the repository key, the
 * wants and the tags offered for include-tag, each set sorted. Objects are
 * named by their content, so a pack made once for a key is right for that
 * key for ever: nothing to invalidate when refs move (the key changes).
 * Only requests without haves, depth, shallow commits or filter are
 * cached: those packs depend on nothing else. Files:
 * DATA/git-packs/R-K.pack (R: 16 hex digits of the repository key's hash,
 * K: the key), written as .R-K.PID-N and renamed into place, with
 * R-K.ids, its objects' ids (sorted, 20 bytes each), so that a clone of
 * refs that reach all of an earlier pack's objects (the first after a push,
 * a mirror clone after a plain one) can send that pack's entries as they
 * are and encode only the objects that are not in it
 * (guts_git_serve_req.base_has); at most
 * GUTS_PACKCACHE_PER_REPO per repository and budget bytes in all (1 GiB
 * unless the caller sets another), the least recently served removed, and
 * half-written files of dead processes with them.
 */
#ifndef GUTS_GIT_PACKCACHE_H
#define GUTS_GIT_PACKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "guts/guts.h"
#include "pack.h"

/* Cached packs kept per repository (a mirror clone's and a plain clone's). */
#define GUTS_PACKCACHE_PER_REPO 2
/* A file being written and untouched this long was left by a process that
 * died: the next commit for the repository removes it. */
#define GUTS_PACKCACHE_STALE_SECS 3600
/* What DATA/git-packs may hold (packs and object lists), by default. */
#define GUTS_PACKCACHE_BUDGET (1ull << 30)

typedef struct guts_packcache {
    char dir[4096];     /* DATA/git-packs */
    char name[80];      /* R-K.pack */
    char also[80];      /* sent when name is absent (guts_packcache_also), or "" */
    uint64_t budget;    /* bytes of the directory kept at a commit (prune) */
    char tmp[4200];     /* the file being written, or "" */
    char ids_tmp[4208]; /* its object list being written, or "" */
    guts_id *ids;       /* its objects (guts_packcache_objects), written at the commit */
    size_t nids;
    int fd;             /* the file being written, or -1 */
    /* an earlier pack of the repository (guts_packcache_find_base) */
    char base[80];     /* its name, or "" */
    int base_fd;       /* open from the start: a prune cannot take it away */
    guts_id *base_ids; /* its objects, sorted */
    size_t nbase;
} guts_packcache;

/** The cache entry of a request (wants, and tags when include_tag) on
 * repository key in the data dir at data_path. No I/O. Errors:
 * GUTS_EINVAL (a path too long), GUTS_ENOMEM. */
int guts_packcache_init(guts_packcache *c, const char *data_path, const char *key,
                        const guts_id *wants, size_t nwants, const guts_id *tags, size_t ntags);

/** Another request whose pack serves this one as well (the helper sends
 * guts-node's prepared pack when it has none of its own): guts_packcache_send
 * tries it when c's own is absent. GUTS_ENOMEM. */
int guts_packcache_also(guts_packcache *c, const char *key, const guts_id *wants, size_t nwants,
                        const guts_id *tags, size_t ntags);

/** Stream the cached pack, if there is one, to sink in pieces of at most
 * 64 KiB, checking its SHA-1 trailer before the trailer goes out.
 * GUTS_OK: sent whole. GUTS_ENOTFOUND: no such pack (nothing sent).
 * GUTS_ECORRUPT: its trailer is wrong (the file is removed; part was sent).
 * GUTS_EIO: reading it failed. Else the sink's error. */
int guts_packcache_send(guts_packcache *c, int (*sink)(void *ctx, const void *buf, size_t n),
                        void *ctx);

/** How long a pack being written is: block until it is longer than have
 * bytes or whole (*whole set; *size is then its final length). GUTS_OK, or
 * an error when its writer gave up. */
typedef int (*guts_packcache_grow_fn)(void *ctx, uint64_t have, uint64_t *size, int *whole);

/** Stream the pack another thread is writing on fd (opened before it was
 * renamed or removed) as it grows, as guts_packcache_send does: the
 * trailer checked before it goes out (GUTS_ECORRUPT), grow's error when
 * the writer gave up part-way (what was sent is then incomplete). */
int guts_packcache_follow(int fd, guts_packcache_grow_fn grow, void *gctx,
                          int (*sink)(void *ctx, const void *buf, size_t n), void *ctx);

/** Start writing the pack for this entry (guts_packcache_write what goes
 * to the client, then _commit or _abort). GUTS_EIO: no file (errno says
 * why); the caller serves without caching. */
int guts_packcache_begin(guts_packcache *c);

/** Append n bytes; on failure the entry is abandoned (not an error for the
 * client: caching is best effort). */
void guts_packcache_write(guts_packcache *c, const void *buf, size_t n);

/** The pack was written whole: rename it into place and remove the
 * repository's oldest packs past GUTS_PACKCACHE_PER_REPO. */
void guts_packcache_commit(guts_packcache *c);

/** The objects of the pack being written (the walk's choice, any order):
 * copied, and at the commit kept beside it as R-K.ids, sorted, so that a
 * later clone can start from this pack (guts_packcache_find_base).
 * Nothing when not writing; on a failure the entry is abandoned. */
void guts_packcache_objects(guts_packcache *c, const guts_id *ids, size_t n);

/** A clone after a push wants what an earlier clone got and more, and a
 * mirror clone what a plain one got: among the repository's other packs
 * with an object list, find the one with the most objects that are all
 * among ids (the new pack's objects, any order), and load its list
 * (c->base_ids, c->nbase) with the pack open. GUTS_ENOTFOUND: none (a
 * list that does not match its header is not read); GUTS_ENOMEM. */
int guts_packcache_find_base(guts_packcache *c, const guts_id *ids, size_t n);

/** Let go of the base (guts_packcache_find_base), if any. */
void guts_packcache_free_base(guts_packcache *c);

/** Is id one of the base pack's objects? */
int guts_packcache_base_has(const guts_packcache *c, const guts_id *id);

/** Append the base pack's entries (all but its header and trailer) to p,
 * checking its trailer as they go: GUTS_ECORRUPT (and the file removed)
 * when it does not match, GUTS_EIO when it cannot be read, else p's
 * errors. A pack that every base object goes into may start so: its own
 * entries may name base objects as delta bases. */
int guts_packcache_base_entries(guts_packcache *c, guts_packw *p);

/** Drop what was being written, close what was open. Safe to call twice. */
void guts_packcache_free(guts_packcache *c);

#endif
