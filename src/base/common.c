/* common.c - ids, hex, git object hashing, fingerprints and name checks.
 *
 * These are the small pure functions every layer shares. Object ids are
 * git's SHA-1 (libcrypto's SHA1_* calls, see below), hashed in a streaming
 * way so the git header is never glued to a copy of the content.
 * Fingerprints are XXH3-128 terms summed modulo 2^128, so sets can be
 * compared in 16 bytes and kept incrementally.
 * The key and ref-name checks run on names that arrive from the network,
 * before any path or database key is built from them, so they are strict
 * whitelists rather than blacklists wherever git allows it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* SHA-1 by OpenSSL's SHA1_* calls (deprecated in OpenSSL 3, not removed):
 * the same block functions EVP runs, without EVP's context allocated and
 * freed and its provider called around every object. An 80-byte object
 * hashed in 146 ns against 303 ns through EVP (a context per call) and 203
 * ns through one reused EVP context: a replica of 202,000 small objects
 * hashes each on the receiving node (docs/performance.md). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
/* inlined: every fingerprint term of every id */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "guts/guts.h"

const char *guts_strerror(int err)
{
    switch (err) {
    case GUTS_OK:
        return "success";
    case GUTS_EINVAL:
        return "invalid argument or malformed input";
    case GUTS_ENOMEM:
        return "out of memory";
    case GUTS_EIO:
        return "I/O error";
    case GUTS_ECORRUPT:
        return "stored data is corrupt";
    case GUTS_EHASH:
        return "object content does not match its id";
    case GUTS_ENOTFOUND:
        return "not found";
    case GUTS_ETOOBIG:
        return "too big";
    case GUTS_EPROTO:
        return "malformed wire message";
    case GUTS_EVERSION:
        return "unsupported version";
    case GUTS_ESTORE:
        return "database error";
    case GUTS_EFULL:
        return "disk or map full";
    case GUTS_ECONFLICT:
        return "conflicting update";
    case GUTS_EEXIST:
        return "already exists";
    case GUTS_EDAMAGED:
        return "environment damaged";
    case GUTS_EAGAIN:
        return "busy, try again";
    default:
        return "unknown error";
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int guts_id_from_hex(const char *hex, size_t len, guts_id *out)
{
    /* Exactly 40 digits and nothing else: a caller hands over the field it
     * cut (a line, a word), so trailing bytes are a malformed field, not
     * something to skip. */
    if (!hex || !out || len != GUTS_HEX_LEN) return GUTS_EINVAL;
    for (size_t i = 0; i < GUTS_ID_LEN; i++) {
        int h = hexval(hex[2 * i]);
        if (h < 0) return GUTS_EINVAL;
        int l = hexval(hex[2 * i + 1]);
        if (l < 0) return GUTS_EINVAL;
        out->b[i] = (uint8_t)(h << 4 | l);
    }
    return GUTS_OK;
}

static void bytes_to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void guts_id_to_hex(const guts_id *id, char out[GUTS_HEX_LEN + 1])
{
    bytes_to_hex(id->b, GUTS_ID_LEN, out);
}

void guts_node_id_to_hex(const guts_node_id *id, char out[2 * GUTS_NODE_ID_LEN + 1])
{
    bytes_to_hex(id->b, GUTS_NODE_ID_LEN, out);
}

int guts_id_is_zero(const guts_id *id)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < GUTS_ID_LEN; i++)
        acc |= id->b[i];
    return acc == 0;
}

static const char *const otype_names[] = {NULL, "commit", "tree", "blob", "tag"};

const char *guts_otype_name(int type)
{
    if (type < GUTS_OBJ_COMMIT || type > GUTS_OBJ_TAG) return NULL;
    return otype_names[type];
}

int guts_otype_parse(const char *name, size_t len)
{
    if (!name) return GUTS_OBJ_NONE;
    for (int t = GUTS_OBJ_COMMIT; t <= GUTS_OBJ_TAG; t++) {
        if (strlen(otype_names[t]) == len && memcmp(otype_names[t], name, len) == 0) return t;
    }
    return GUTS_OBJ_NONE;
}

size_t guts_obj_header(int type, uint64_t size, char *out)
{
    const char *name = guts_otype_name(type);
    if (!name) return 0;
    /* written without printf: it runs once per object hashed */
    char digits[24];
    size_t nl = strlen(name), nd = 0, hl;
    do {
        digits[nd++] = (char)('0' + size % 10);
        size /= 10;
    } while (size);
    memcpy(out, name, nl);
    out[nl] = ' ';
    for (hl = nl + 1; nd;)
        out[hl++] = digits[--nd];
    out[hl++] = 0;
    return hl;
}

int guts_obj_hash(int type, const void *data, size_t len, guts_id *out)
{
    char hdr[GUTS_OBJ_HEADER_MAX];
    size_t hl = out && (data || !len) ? guts_obj_header(type, len, hdr) : 0;
    if (!hl) return GUTS_EINVAL;
    SHA_CTX ctx;
    int ok = SHA1_Init(&ctx) == 1 && SHA1_Update(&ctx, hdr, hl) == 1 &&
             (len == 0 || SHA1_Update(&ctx, data, len) == 1) && SHA1_Final(out->b, &ctx) == 1;
    return ok ? GUTS_OK : GUTS_EIO;
}

guts_fp guts_fp_of_id(const guts_id *id)
{
    XXH128_hash_t h = XXH3_128bits(id->b, GUTS_ID_LEN);
    guts_fp fp = {h.low64, h.high64};
    return fp;
}

void guts_fp_add(guts_fp *acc, guts_fp term)
{
    uint64_t lo = acc->lo + term.lo;
    acc->hi = acc->hi + term.hi + (lo < acc->lo);
    acc->lo = lo;
}

void guts_fp_sub(guts_fp *acc, guts_fp term)
{
    uint64_t borrow = acc->lo < term.lo;
    acc->lo -= term.lo;
    acc->hi = acc->hi - term.hi - borrow;
}

int guts_fp_eq(guts_fp a, guts_fp b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

/* One part of "OWNER/NAME": a conservative portable file name that can never
 * be a path trick ("." / ".." / hidden files) on any file system. */
static int key_part_check(const char *p, size_t n)
{
    if (n < 1 || n > GUTS_KEY_PART_MAX) return GUTS_EINVAL;
    if (p[0] == '.') return GUTS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok) return GUTS_EINVAL;
    }
    return GUTS_OK;
}

int guts_repo_key_check(const char *key)
{
    if (!key) return GUTS_EINVAL;
    /* Bounded scan: never read past GUTS_KEY_MAX + 1 bytes of a hostile key. */
    size_t n = strnlen(key, GUTS_KEY_MAX + 1);
    if (n > GUTS_KEY_MAX) return GUTS_EINVAL;
    const char *slash = memchr(key, '/', n);
    if (!slash) return GUTS_EINVAL;
    size_t a = (size_t)(slash - key);
    if (key_part_check(key, a) != GUTS_OK) return GUTS_EINVAL;
    return key_part_check(slash + 1, n - a - 1);
}

int guts_refname_check(const char *name)
{
    if (!name) return GUTS_EINVAL;
    size_t n = strnlen(name, GUTS_REFNAME_MAX + 1);
    if (n > GUTS_REFNAME_MAX) return GUTS_EINVAL;
    if (strcmp(name, "HEAD") == 0) return GUTS_OK;
    if (strncmp(name, "refs/", 5) != 0) return GUTS_EINVAL;
    size_t comp = 0; /* start of the current component */
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\0') {
            size_t len = i - comp;
            if (len == 0) return GUTS_EINVAL; /* "//" or a trailing "/" */
            if (name[comp] == '.') return GUTS_EINVAL;
            if (len >= 5 && memcmp(name + i - 5, ".lock", 5) == 0) return GUTS_EINVAL;
            comp = i + 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f || c == ' ' || c == '~' || c == '^' || c == ':' || c == '?' ||
            c == '*' || c == '[' || c == '\\')
            return GUTS_EINVAL;
        if (c == '.' && name[i + 1] == '.') return GUTS_EINVAL;
        if (c == '@' && name[i + 1] == '{') return GUTS_EINVAL;
    }
    if (name[n - 1] == '.') return GUTS_EINVAL;
    return GUTS_OK;
}

/* Thread-local so that concurrent handles in different threads never see each
 * other's message; the CLI prints it next to the GUTS_E* code. */
static _Thread_local char errmsg[256];

void guts_errmsg_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
}

const char *guts_store_errmsg(void)
{
    return errmsg;
}
