/* reader.c - bounded msgpack reading; see reader.h for why it exists.
 *
 * Only the msgpack types guts sends are accepted where the schema wants
 * them: ints (any width, so other encoders may choose other forms), nil,
 * str, bin and arrays. Maps, floats, booleans and extensions never appear in
 * a guts message, so they are rejected wherever they are met.
 */
#include "reader.h"

#include <assert.h>
#include <string.h>

size_t guts_mpr_left(const guts_mpr *r)
{
    assert(r->p <= r->end); /* no read ever passes the end */
    return (size_t)(r->end - r->p);
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Read a header whose length field of w bytes follows the type byte. */
static int header(guts_mpr *r, size_t w, uint64_t *v)
{
    if (guts_mpr_left(r) < 1 + w)
        return GUTS_EPROTO;
    *v = be(r->p + 1, w);
    r->p += 1 + w;
    return 0;
}

int guts_mpr_array(guts_mpr *r, uint32_t *n)
{
    uint64_t cnt;
    if (guts_mpr_left(r) < 1)
        return GUTS_EPROTO;
    uint8_t b = r->p[0];
    if ((b & 0xf0) == 0x90) {
        cnt = b & 0x0f;
        r->p++;
    } else if (b == 0xdc) {
        if (header(r, 2, &cnt))
            return GUTS_EPROTO;
    } else if (b == 0xdd) {
        if (header(r, 4, &cnt))
            return GUTS_EPROTO;
    } else {
        return GUTS_EPROTO;
    }
    /* Every element takes at least one byte. */
    if (cnt > guts_mpr_left(r))
        return GUTS_EPROTO;
    *n = (uint32_t)cnt;
    return 0;
}

int guts_mpr_array_n(guts_mpr *r, uint32_t n)
{
    uint32_t got;
    if (guts_mpr_array(r, &got) || got != n)
        return GUTS_EPROTO;
    return 0;
}

/* Any msgpack integer: *neg set for negative values, *u the value as a
 * 64-bit two's complement pattern. */
static int read_int(guts_mpr *r, int *neg, uint64_t *u)
{
    if (guts_mpr_left(r) < 1)
        return GUTS_EPROTO;
    uint8_t b = r->p[0];
    if (b <= 0x7f) {
        *neg = 0;
        *u = b;
        r->p++;
        return 0;
    }
    if (b >= 0xe0) {
        *neg = 1;
        *u = (uint64_t)b | ~(uint64_t)0xff; /* sign-extend -32..-1 */
        r->p++;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf) {
        size_t w = (size_t)1 << (b - 0xcc);
        if (header(r, w, u))
            return GUTS_EPROTO;
        *neg = 0;
        return 0;
    }
    if (b >= 0xd0 && b <= 0xd3) {
        size_t w = (size_t)1 << (b - 0xd0);
        uint64_t raw;
        if (header(r, w, &raw))
            return GUTS_EPROTO;
        /* Sign-extend the w-byte two's complement value. */
        if (w < 8 && (raw >> (8 * w - 1)) & 1)
            raw |= ~(uint64_t)0 << (8 * w);
        *neg = (raw >> 63) & 1;
        *u = raw;
        return 0;
    }
    return GUTS_EPROTO;
}

int guts_mpr_uint(guts_mpr *r, uint64_t max, uint64_t *v)
{
    int neg;
    uint64_t u;
    if (read_int(r, &neg, &u) || neg || u > max)
        return GUTS_EPROTO;
    *v = u;
    return 0;
}

int guts_mpr_int(guts_mpr *r, int64_t min, int64_t max, int64_t *v)
{
    int neg;
    uint64_t u;
    if (read_int(r, &neg, &u))
        return GUTS_EPROTO;
    if (!neg && u > (uint64_t)INT64_MAX)
        return GUTS_EPROTO;
    int64_t s = neg ? (int64_t)(u - (uint64_t)INT64_MIN) + INT64_MIN : (int64_t)u;
    if (s < min || s > max)
        return GUTS_EPROTO;
    *v = s;
    return 0;
}

int guts_mpr_nil(guts_mpr *r)
{
    if (guts_mpr_left(r) >= 1 && r->p[0] == 0xc0) {
        r->p++;
        return 1;
    }
    return 0;
}

/* Read the body of a str or bin whose header has been parsed. */
static int body(guts_mpr *r, uint64_t n, size_t max, const uint8_t **s, size_t *len)
{
    if (n > max || n > guts_mpr_left(r))
        return GUTS_EPROTO;
    *s = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

int guts_mpr_str(guts_mpr *r, size_t max, const uint8_t **s, size_t *n)
{
    uint64_t len;
    if (guts_mpr_left(r) < 1)
        return GUTS_EPROTO;
    uint8_t b = r->p[0];
    if ((b & 0xe0) == 0xa0) {
        len = b & 0x1f;
        r->p++;
    } else if (b >= 0xd9 && b <= 0xdb) {
        if (header(r, (size_t)1 << (b - 0xd9), &len))
            return GUTS_EPROTO;
    } else {
        return GUTS_EPROTO;
    }
    return body(r, len, max, s, n);
}

int guts_mpr_bin(guts_mpr *r, size_t max, const uint8_t **b, size_t *n)
{
    uint64_t len;
    if (guts_mpr_left(r) < 1)
        return GUTS_EPROTO;
    uint8_t t = r->p[0];
    if (t < 0xc4 || t > 0xc6)
        return GUTS_EPROTO;
    if (header(r, (size_t)1 << (t - 0xc4), &len))
        return GUTS_EPROTO;
    return body(r, len, max, b, n);
}

int guts_mpr_bin_copy(guts_mpr *r, size_t n, uint8_t *out)
{
    const uint8_t *b;
    size_t got;
    if (guts_mpr_bin(r, n, &b, &got) || got != n)
        return GUTS_EPROTO;
    memcpy(out, b, n);
    return 0;
}
