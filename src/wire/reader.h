/* reader.h - a bounded, allocation-free msgpack reader for the decoder.
 *
 * msgpack-c's unpacker allocates from an array header's count before it has
 * seen a single element, so it never sees untrusted bytes. This reader
 * instead walks the buffer one value at a time, as the message schema asks
 * for it: every length and count is checked against the bytes that remain
 * (each element takes at least one byte) before it is returned, and a value
 * of the wrong type is an error, not a conversion. It never allocates and
 * never reads past end. Every function returns 0 or GUTS_EPROTO.
 */
#ifndef GUTS_WIRE_READER_H
#define GUTS_WIRE_READER_H

#include "guts/guts.h"

typedef struct guts_mpr {
    const uint8_t *p;   /* next unread byte */
    const uint8_t *end; /* one past the last byte */
} guts_mpr;

/** Bytes not yet read. */
size_t guts_mpr_left(const guts_mpr *r);

/** Read an array header; *n gets its count, which is at most the bytes
 * that remain. */
int guts_mpr_array(guts_mpr *r, uint32_t *n);

/** Read an array header whose count must be exactly n. */
int guts_mpr_array_n(guts_mpr *r, uint32_t n);

/** Read a non-negative integer (any msgpack int form) no larger than max. */
int guts_mpr_uint(guts_mpr *r, uint64_t max, uint64_t *v);

/** Read an integer (any msgpack int form) within [min, max]. */
int guts_mpr_int(guts_mpr *r, int64_t min, int64_t max, int64_t *v);

/** If the next value is nil, consume it and return 1; else return 0. */
int guts_mpr_nil(guts_mpr *r);

/** Read a str of at most max bytes; *s points into the buffer (not
 * NUL-terminated). */
int guts_mpr_str(guts_mpr *r, size_t max, const uint8_t **s, size_t *n);

/** Read a bin of at most max bytes; *b points into the buffer. */
int guts_mpr_bin(guts_mpr *r, size_t max, const uint8_t **b, size_t *n);

/** Read a bin of exactly n bytes and copy it to out. */
int guts_mpr_bin_copy(guts_mpr *r, size_t n, uint8_t *out);

#endif
