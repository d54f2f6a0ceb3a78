/* guts_json.h - a small bounded JSON reader for files guts reads but does
 * not trust (DATA/node/status.json, written by guts-node).
 *
 * The whole text is parsed at once into a flat array of values linked by
 * index (first child, next sibling), with every string decoded into one
 * buffer no larger than the input. Nesting is limited to GUTS_JSON_DEPTH_MAX,
 * the input to GUTS_JSON_INPUT_MAX bytes, and strictly RFC 8259 grammar is
 * accepted (no comments, no trailing commas, no bytes after the value), so a
 * truncated or hostile file fails with one line of text rather than a crash
 * or an unbounded allocation. No dependency: the CLI needs nothing else.
 */
#ifndef GUTS_CLI_JSON_H
#define GUTS_CLI_JSON_H

#include <stddef.h>
#include <stdint.h>

/* guts-node's status.json is a few KiB per hundred peers and repositories;
 * 4 MiB is far beyond any real one and small enough to read at once. */
#define GUTS_JSON_INPUT_MAX (4u << 20)
/* The status file nests three levels; 32 leaves room and bounds recursion. */
#define GUTS_JSON_DEPTH_MAX 32
/* Room for one error line (position and reason). */
#define GUTS_JSON_ERR_MAX 128

enum {
    GUTS_JSON_NULL,
    GUTS_JSON_FALSE,
    GUTS_JSON_TRUE,
    GUTS_JSON_NUMBER,
    GUTS_JSON_STRING,
    GUTS_JSON_ARRAY,
    GUTS_JSON_OBJECT,
};

typedef struct guts_json_val {
    int type;        /* GUTS_JSON_* */
    const char *key; /* member name when the parent is an object, else NULL */
    const char *str; /* STRING: decoded, NUL-terminated (may hold NULs: see slen) */
    size_t slen;
    double num;  /* NUMBER */
    int is_uint; /* NUMBER: a non-negative integer that fits in u */
    uint64_t u;
    uint32_t first; /* ARRAY/OBJECT: index of the first child, 0 if empty */
    uint32_t next;  /* index of the next sibling, 0 if last */
} guts_json_val;

typedef struct guts_json {
    guts_json_val *v; /* v[0] is the root */
    size_t n, cap;
    char *strs; /* decoded strings and keys */
    size_t used, strcap;
} guts_json;

/** Parse len bytes of text into *out (zeroed first; free with
 * guts_json_free(), also after a failure).
 * Errors: GUTS_ETOOBIG (over GUTS_JSON_INPUT_MAX or nested too deep),
 * GUTS_EINVAL (not JSON: err says where and why), GUTS_ENOMEM. */
int guts_json_parse(const char *text, size_t len, guts_json *out, char err[GUTS_JSON_ERR_MAX]);
void guts_json_free(guts_json *j);

/** The root value, or NULL if nothing was parsed. */
const guts_json_val *guts_json_root(const guts_json *j);
/** The first child of an array or object, or NULL. */
const guts_json_val *guts_json_child(const guts_json *j, const guts_json_val *v);
/** The next sibling, or NULL. */
const guts_json_val *guts_json_next(const guts_json *j, const guts_json_val *v);
/** The member named key of an object (the first if repeated), or NULL. */
const guts_json_val *guts_json_get(const guts_json *j, const guts_json_val *obj, const char *key);

#endif
