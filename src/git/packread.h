/* packread.h - objects read straight from a repository's packfiles, for
 * `guts import`: instead of `git cat-file --batch` inflating them, writing
 * them into a pipe and guts reading them back, and with git's own deltas,
 * which the store turns into its zstd deltas without searching for
 * matches again (docs/storage.md, "zstd against a base").
 *
 * Formats (git's Documentation/gitformat-pack.txt): a version 2 .idx (a
 * 256-entry fan-out table, the sorted ids, CRC-32s, 31-bit offsets with a
 * table of 64-bit ones, two checksums) beside its .pack ("PACK", version,
 * count; entries of a type-and-size header, then a zlib stream; OFS_DELTA
 * entries name their base by a backward distance, REF_DELTA ones by id).
 *
 * The files are untrusted: every length and offset is bounded before use,
 * and whatever does not fit fails with one line naming the file. What an
 * entry decodes to is not trusted either: the store hashes every object
 * it is given. A pack this reader does not handle (an .idx of version 1)
 * is skipped: its objects come from cat-file.
 */
#ifndef GUTS_GIT_PACKREAD_H
#define GUTS_GIT_PACKREAD_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "guts/guts.h"

/* Longest delta chain followed (git's own packs stop at 50 by default and
 * at 4095 at most): a REF_DELTA loop ends here, not in a stack overflow. */
#define GUTS_PACKREAD_CHAIN_MAX 10000
/* Decoded contents kept as bases for the next objects: an import reads
 * each delta family base first, so the base a delta needs was read just
 * before it, or a few objects before. zlib's pack inflated 18.8 MB for
 * 17.4 MB of entries with 4 MiB (17.4 MB with 16 MiB, 21.6 MB with 1 MiB;
 * 3,600 fewer page faults than 16 MiB); the synthetic repository's
 * entries are each inflated once at any of these sizes. */
#define GUTS_PACKREAD_CACHE_BYTES ((size_t)4 << 20)
#define GUTS_PACKREAD_CACHE_SLOTS 1024u

typedef struct guts_pack_file {
    char *name; /* the .pack's path, for messages */
    const uint8_t *idx, *pack;
    size_t idxlen, packlen;
    int mapped; /* munmap on close (else the caller's memory) */
    uint32_t n; /* objects */
    uint32_t nlarge;  /* entries of the 64-bit offset table */
} guts_pack_file;

typedef struct guts_pack_cached {
    uint8_t *data; /* NULL: free slot */
    size_t len;
    uint64_t off;
    uint32_t pack;
    int type;
} guts_pack_cached;

typedef struct guts_packs {
    guts_pack_file *f;
    size_t n, cap;
    guts_pack_cached cache[GUTS_PACKREAD_CACHE_SLOTS];
    size_t cached_bytes;
    unsigned sweep; /* next slot to free when over GUTS_PACKREAD_CACHE_BYTES */
    z_stream z;
    int zinit;
    uint8_t *delta; /* the last delta read (a git delta), dcap bytes */
    size_t dlen, dcap;
    struct {
        uint32_t pack;
        uint64_t off;
    } *chain;
    size_t chcap;
} guts_packs;

/** Map every objects/pack/pack-*.idx of gitdir with its .pack. No pack is
 * no error (ps->n == 0). Errors: GUTS_ECORRUPT (a damaged file, named in
 * err), GUTS_EIO, GUTS_ENOMEM. ps is closed again on failure. */
int guts_packs_open(guts_packs *ps, const char *gitdir, char *err);

/** Add one pack from memory (idx and pack stay the caller's and must
 * outlive ps); name is for messages. GUTS_ENOTFOUND: a format this reader
 * skips (idx version 1); GUTS_ECORRUPT with err; GUTS_ENOMEM. */
int guts_packs_add(guts_packs *ps, const char *name, const uint8_t *idx, size_t idxlen,
                   const uint8_t *pack, size_t packlen, char *err);

void guts_packs_close(guts_packs *ps);

/** 1 if id is in one of the packs. */
int guts_packs_has(const guts_packs *ps, const guts_id *id);

/** id's type and content (*data, len bytes, valid until the next call or
 * close) as its pack has it; *gdelta (when not NULL) the git delta it was
 * built from, against its base's content, else NULL. Errors:
 * GUTS_ENOTFOUND (in no pack), GUTS_ECORRUPT (err names the pack and the
 * offset), GUTS_ETOOBIG (an entry over GUTS_OBJ_MAX_DEFAULT), GUTS_ENOMEM. */
int guts_packs_read(guts_packs *ps, const guts_id *id, int *type, const uint8_t **data,
                    size_t *len, const uint8_t **gdelta, size_t *gdlen, char *err);

#endif
