/* guts_json.c - bounded recursive-descent JSON reader (see guts_json.h).
 *
 * Values live in one growing array and refer to each other by index, so a
 * realloc never leaves a dangling link. Strings are decoded into a buffer
 * sized once from the input: a decoded string plus its NUL is never longer
 * than its quoted source, so the buffer cannot overflow and never moves.
 */
#include "guts_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guts/guts.h"

typedef struct parser {
    const char *p, *end, *start;
    guts_json *j;
    char *err;
} parser;

static int fail(parser *ps, const char *why)
{
    snprintf(ps->err, GUTS_JSON_ERR_MAX, "%s at byte %zu", why, (size_t)(ps->p - ps->start));
    return GUTS_EINVAL;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* A new value; its index in *idx. Indices fit in uint32_t: the input is
 * at most GUTS_JSON_INPUT_MAX bytes and every value takes at least one. */
static int new_val(parser *ps, int type, const char *key, uint32_t *idx)
{
    guts_json *j = ps->j;
    if (j->n == j->cap) {
        size_t nc = j->cap ? 2 * j->cap : 64;
        guts_json_val *nv = realloc(j->v, nc * sizeof *nv);
        if (!nv) return GUTS_ENOMEM;
        j->v = nv;
        j->cap = nc;
    }
    memset(&j->v[j->n], 0, sizeof *j->v);
    j->v[j->n].type = type;
    j->v[j->n].key = key;
    *idx = (uint32_t)j->n++;
    return GUTS_OK;
}

static int hex4(parser *ps, unsigned *out)
{
    unsigned v = 0;
    if (ps->end - ps->p < 4) return fail(ps, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = *ps->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(ps, "bad \\u escape");
    }
    *out = v;
    return GUTS_OK;
}

/* Decode a string (ps->p at the opening quote) into the string buffer. */
static int parse_string(parser *ps, const char **out, size_t *outlen)
{
    guts_json *j = ps->j;
    char *dst = j->strs + j->used, *d = dst;
    ps->p++;
    for (;;) {
        if (ps->p >= ps->end) return fail(ps, "unterminated string");
        unsigned char c = (unsigned char)*ps->p++;
        if (c == '"') break;
        if (c < 0x20) return fail(ps, "control character in string");
        if (c != '\\') {
            *d++ = (char)c;
            continue;
        }
        if (ps->p >= ps->end) return fail(ps, "unterminated string");
        c = (unsigned char)*ps->p++;
        switch (c) {
        case '"':
            *d++ = '"';
            break;
        case '\\':
            *d++ = '\\';
            break;
        case '/':
            *d++ = '/';
            break;
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'u': {
            unsigned cp;
            int rc = hex4(ps, &cp);
            if (rc) return rc;
            /* A surrogate pair is one code point; a lone surrogate is kept
             * as U+FFFD rather than producing invalid UTF-8. The six-byte
             * escape always yields at most four bytes. */
            if (cp >= 0xd800 && cp <= 0xdbff && ps->end - ps->p >= 6 && ps->p[0] == '\\' &&
                ps->p[1] == 'u') {
                const char *save = ps->p;
                unsigned lo;
                ps->p += 2;
                if (hex4(ps, &lo) == GUTS_OK && lo >= 0xdc00 && lo <= 0xdfff)
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                else
                    ps->p = save;
            }
            if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
            if (cp < 0x80) {
                *d++ = (char)cp;
            } else if (cp < 0x800) {
                *d++ = (char)(0xc0 | (cp >> 6));
                *d++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *d++ = (char)(0xe0 | (cp >> 12));
                *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *d++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *d++ = (char)(0xf0 | (cp >> 18));
                *d++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *d++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return fail(ps, "bad escape in string");
        }
    }
    *d++ = 0;
    *out = dst;
    *outlen = (size_t)(d - dst) - 1;
    j->used += (size_t)(d - dst);
    return GUTS_OK;
}

static int parse_number(parser *ps, guts_json_val *v)
{
    const char *s = ps->p;
    int integer = 1, neg = 0;
    if (ps->p < ps->end && *ps->p == '-') ps->p++, neg = 1;
    if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) return fail(ps, "bad number");
    if (*ps->p == '0')
        ps->p++;
    else
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        integer = 0;
        ps->p++;
        if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        integer = 0;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    /* strtod needs a terminated copy; longer numbers are not meaningful. */
    char buf[64];
    size_t n = (size_t)(ps->p - s);
    if (n >= sizeof buf) return fail(ps, "number too long");
    memcpy(buf, s, n);
    buf[n] = 0;
    v->num = strtod(buf, NULL);
    if (integer && !neg) {
        uint64_t u = 0;
        int fits = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned dgt = (unsigned)(buf[i] - '0');
            if (u > (UINT64_MAX - dgt) / 10) fits = 0;
            u = u * 10 + dgt;
        }
        v->is_uint = fits;
        v->u = fits ? u : 0;
    }
    return GUTS_OK;
}

static int parse_value(parser *ps, const char *key, int depth, uint32_t *idx);

/* Array or object; ps->p at '[' or '{'. */
static int parse_container(parser *ps, uint32_t self, int obj, int depth)
{
    char close = obj ? '}' : ']';
    uint32_t prev = 0;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return GUTS_OK;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen;
        uint32_t child;
        int rc;
        skip_ws(ps);
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a member name");
            if ((rc = parse_string(ps, &key, &klen))) return rc;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
            ps->p++;
        }
        if ((rc = parse_value(ps, key, depth + 1, &child))) return rc;
        if (prev)
            ps->j->v[prev].next = child;
        else
            ps->j->v[self].first = child;
        prev = child;
        skip_ws(ps);
        if (ps->p >= ps->end) return fail(ps, "truncated");
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            return GUTS_OK;
        }
        return fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int literal(parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected character");
    ps->p += n;
    return GUTS_OK;
}

static int parse_value(parser *ps, const char *key, int depth, uint32_t *idx)
{
    int rc;
    if (depth > GUTS_JSON_DEPTH_MAX) {
        fail(ps, "nested too deep");
        return GUTS_ETOOBIG;
    }
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "truncated");
    char c = *ps->p;
    int type = c == '{'   ? GUTS_JSON_OBJECT
               : c == '[' ? GUTS_JSON_ARRAY
               : c == '"' ? GUTS_JSON_STRING
               : c == 't' ? GUTS_JSON_TRUE
               : c == 'f' ? GUTS_JSON_FALSE
               : c == 'n' ? GUTS_JSON_NULL
                          : GUTS_JSON_NUMBER;
    if ((rc = new_val(ps, type, key, idx))) return rc;
    uint32_t self = *idx;
    switch (type) {
    case GUTS_JSON_OBJECT:
    case GUTS_JSON_ARRAY:
        return parse_container(ps, self, type == GUTS_JSON_OBJECT, depth);
    case GUTS_JSON_STRING: {
        const char *s;
        size_t n;
        if ((rc = parse_string(ps, &s, &n))) return rc;
        ps->j->v[self].str = s;
        ps->j->v[self].slen = n;
        return GUTS_OK;
    }
    case GUTS_JSON_TRUE:
        return literal(ps, "true");
    case GUTS_JSON_FALSE:
        return literal(ps, "false");
    case GUTS_JSON_NULL:
        return literal(ps, "null");
    default: {
        guts_json_val tmp = {0};
        if ((rc = parse_number(ps, &tmp))) return rc;
        ps->j->v[self].num = tmp.num;
        ps->j->v[self].is_uint = tmp.is_uint;
        ps->j->v[self].u = tmp.u;
        return GUTS_OK;
    }
    }
}

int guts_json_parse(const char *text, size_t len, guts_json *out, char err[GUTS_JSON_ERR_MAX])
{
    memset(out, 0, sizeof *out);
    err[0] = 0;
    if (len > GUTS_JSON_INPUT_MAX) {
        snprintf(err, GUTS_JSON_ERR_MAX, "%zu bytes, over the limit of %u", len,
                 GUTS_JSON_INPUT_MAX);
        return GUTS_ETOOBIG;
    }
    out->strcap = len + 1;
    if (!(out->strs = malloc(out->strcap))) return GUTS_ENOMEM;
    parser ps = {.p = text, .end = text + len, .start = text, .j = out, .err = err};
    uint32_t root;
    int rc = parse_value(&ps, NULL, 0, &root);
    if (rc) return rc;
    skip_ws(&ps);
    if (ps.p != ps.end) return fail(&ps, "bytes after the value");
    return GUTS_OK;
}

void guts_json_free(guts_json *j)
{
    free(j->v);
    free(j->strs);
    memset(j, 0, sizeof *j);
}

const guts_json_val *guts_json_root(const guts_json *j)
{
    return j->n ? &j->v[0] : NULL;
}

const guts_json_val *guts_json_child(const guts_json *j, const guts_json_val *v)
{
    if (!v || (v->type != GUTS_JSON_ARRAY && v->type != GUTS_JSON_OBJECT) || !v->first) return NULL;
    return &j->v[v->first];
}

const guts_json_val *guts_json_next(const guts_json *j, const guts_json_val *v)
{
    return v && v->next ? &j->v[v->next] : NULL;
}

const guts_json_val *guts_json_get(const guts_json *j, const guts_json_val *obj, const char *key)
{
    if (!obj || obj->type != GUTS_JSON_OBJECT) return NULL;
    for (const guts_json_val *c = guts_json_child(j, obj); c; c = guts_json_next(j, c))
        if (c->key && strcmp(c->key, key) == 0) return c;
    return NULL;
}
