/* guts.h - types, error codes and limits shared by every guts module.
 *
 * Every function that can fail returns an int: 0 (GUTS_OK) or a negative
 * GUTS_E* code; results come back through out-parameters. guts_strerror()
 * names every code. Nothing here allocates.
 */
#ifndef GUTS_GUTS_H
#define GUTS_GUTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Error codes. */
#define GUTS_OK 0
#define GUTS_EINVAL (-1)    /* bad argument or malformed input */
#define GUTS_ENOMEM (-2)    /* allocation failed */
#define GUTS_EIO (-3)       /* file or process I/O failed (errno may say more) */
#define GUTS_ECORRUPT (-4)  /* stored data fails its own checks */
#define GUTS_EHASH (-5)     /* object content does not hash to its id */
#define GUTS_ENOTFOUND (-6) /* no such object, ref or repository */
#define GUTS_ETOOBIG (-7)   /* a length or count exceeds its limit */
#define GUTS_EPROTO (-8)    /* malformed wire message */
#define GUTS_EVERSION (-9)  /* unknown protocol or schema version */
#define GUTS_ESTORE (-10)   /* LMDB failed with no closer code; guts_store_errmsg() has its text */
#define GUTS_EFULL (-11)    /* disk or map cannot grow */
#define GUTS_ECONFLICT (-12) /* compare-and-swap on a ref lost */
#define GUTS_EEXIST (-13)   /* already exists */
#define GUTS_EAGAIN (-14)   /* try again later (e.g. busy, incomplete) */
#define GUTS_EDAMAGED (-15) /* a repository environment (LMDB file) is damaged */

/** Return a short static description of a GUTS_E* code. */
const char *guts_strerror(int err);

/** A one-line description of the last store failure in this thread (e.g. the
 * LMDB error and the operation, or why a record did not decode), for
 * messages next to guts_strerror(); empty if none. Points to a thread-local
 * buffer overwritten by the next failure. */
const char *guts_store_errmsg(void);
/** Set this thread's guts_store_errmsg() text (printf format): what the
 * store and the record codec call when they fail. */
void guts_errmsg_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Object ids are git's: SHA-1 of "<type> <size>\0<content>". */
#define GUTS_ID_LEN 20
#define GUTS_HEX_LEN 40
typedef struct guts_id {
    uint8_t b[GUTS_ID_LEN];
} guts_id;

/* Node ids are 16 random bytes created once per data dir. */
#define GUTS_NODE_ID_LEN 16
typedef struct guts_node_id {
    uint8_t b[GUTS_NODE_ID_LEN];
} guts_node_id;

/** Parse an id from hex[0..len): exactly 40 lowercase or uppercase hex
 * digits, nothing before or after. The one hex-id parser of every module:
 * GUTS_EINVAL for any other length or a non-hex byte. */
int guts_id_from_hex(const char *hex, size_t len, guts_id *out);
/** Write 40 lowercase hex digits and a NUL into out. */
void guts_id_to_hex(const guts_id *id, char out[GUTS_HEX_LEN + 1]);
/** 1 when every byte is zero (git's "no object": deletion). */
int guts_id_is_zero(const guts_id *id);
/* p[0..8) as a number that orders as memcmp orders the bytes. */
static inline uint64_t guts_be64_load(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/** memcmp order of two ids (<0, 0, >0), in three word compares inlined
 * where it is called: a libc memcmp call per compare was 10% of a
 * receiving node's loop at 202,000 objects (group bounds and sorts, a
 * pull's id-order checks; docs/performance.md). The third word, bytes
 * 12-19, overlaps the second in bytes the second found equal. */
static inline int guts_id_cmp(const guts_id *a, const guts_id *b)
{
    _Static_assert(GUTS_ID_LEN == 20, "two words and one that overlaps the second");
    uint64_t x = guts_be64_load(a->b), y = guts_be64_load(b->b);
    if (x == y) {
        x = guts_be64_load(a->b + 8);
        y = guts_be64_load(b->b + 8);
    }
    if (x == y) {
        x = guts_be64_load(a->b + 12);
        y = guts_be64_load(b->b + 12);
    }
    return (x > y) - (x < y);
}
/** splitmix64's output function: a bijective mix of all 64 bits, also a
 * hash of a value that is not itself uniform. */
static inline uint64_t guts_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/** splitmix64 (Steele, Lea and Flood 2014): the next of the sequence whose
 * state is *x. The one seeded generator of the core's seeding, the
 * simulator and the tests. */
static inline uint64_t guts_splitmix64(uint64_t *x)
{
    return guts_mix64(*x += 0x9e3779b97f4a7c15ull);
}
/** Binary search over n sorted elements, the one of every module: cmp(ctx,
 * i) is the sign of element i against the key sought. Returns the first
 * index whose element is not below the key (n when none) and sets *found
 * (when not NULL) to whether that element equals it. Inline, so that a
 * constant cmp is inlined too. */
static inline size_t guts_lower_bound(size_t n, int (*cmp)(const void *ctx, size_t i),
                                      const void *ctx, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(ctx, mid) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (found) *found = lo < n && cmp(ctx, lo) == 0;
    return lo;
}
/** Write 32 lowercase hex digits of a node id and a NUL. */
void guts_node_id_to_hex(const guts_node_id *id, char out[2 * GUTS_NODE_ID_LEN + 1]);

/* Object types, numbered as in git's pack format. */
typedef enum guts_otype {
    GUTS_OBJ_NONE = 0,
    GUTS_OBJ_COMMIT = 1,
    GUTS_OBJ_TREE = 2,
    GUTS_OBJ_BLOB = 3,
    GUTS_OBJ_TAG = 4,
} guts_otype;

/** "commit", "tree", "blob", "tag"; NULL for anything else. */
const char *guts_otype_name(int type);
/** Parse a type name of len bytes; GUTS_OBJ_NONE if unknown. */
int guts_otype_parse(const char *name, size_t len);

/** Room for git's object header "<type> <size>\0" (any 64-bit size). */
#define GUTS_OBJ_HEADER_MAX 32
/** Write that header into out (GUTS_OBJ_HEADER_MAX bytes): its length with
 * the NUL, or 0 for an unknown type. */
size_t guts_obj_header(int type, uint64_t size, char *out);

/** Compute the git id of an object: SHA-1 of "<type> <len>\0" + data.
 * Returns GUTS_EINVAL for an unknown type. */
int guts_obj_hash(int type, const void *data, size_t len, guts_id *out);

/* Order-independent fingerprint of a set of ids: the sum modulo 2^128 of
 * XXH3-128 of each id. Adding and removing commute, so it can be kept
 * incrementally and compared between nodes: equal fingerprints mean equal
 * sets with overwhelming probability (non-adversarial; see docs/security.md). */
typedef struct guts_fp {
    uint64_t lo, hi;
} guts_fp;

/** XXH3-128 of an id as a fingerprint term. */
guts_fp guts_fp_of_id(const guts_id *id);
/** *acc += term (mod 2^128). */
void guts_fp_add(guts_fp *acc, guts_fp term);
/** *acc -= term (mod 2^128). */
void guts_fp_sub(guts_fp *acc, guts_fp term);
/** 1 when equal. */
int guts_fp_eq(guts_fp a, guts_fp b);

/* Limits shared by the store, the wire and the CLI. */
#define GUTS_KEY_PART_MAX 100   /* OWNER and NAME: 1-100 chars each */
#define GUTS_KEY_MAX (2 * GUTS_KEY_PART_MAX + 1)
#define GUTS_REFNAME_MAX 1024   /* far beyond any real ref; bounds wire and keys */
#define GUTS_OBJ_MAX_DEFAULT (1ull << 30) /* 1 GiB: default object size cap */

/** Check a repository key "OWNER/NAME": each part 1-100 of [A-Za-z0-9._-],
 * not "." or "..", not starting with ".". Returns 0 or GUTS_EINVAL. Keys come
 * from the network: this runs before any path is built from one. */
int guts_repo_key_check(const char *key);

/** Check a full ref name by git's check-ref-format rules (plus "HEAD"):
 * starts with "refs/", no "..", no control chars, space, ~ ^ : ? * [ \,
 * no component starting with "." or ending with ".lock", no "//", no
 * trailing "/" or ".", no "@{", at most GUTS_REFNAME_MAX bytes.
 * Returns 0 or GUTS_EINVAL. */
int guts_refname_check(const char *name);

#endif
