/* record.c - the record codec: a record as stored (raw, zstd, or a zstd
 * delta against a base's content) checked, decoded and verified against its
 * id without a store; and the digest term of a ref record.
 *
 * The LMDB store decodes received records with it before it writes them,
 * and the memory store (src/core/memstore.c) keeps the decoded content, so
 * both agree byte for byte on what a record means.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "guts/record.h"

/* Shape checks that need no store: type, encoding and the size bound (before
 * anything is allocated for the content). */
int guts_rec_check(const guts_rec *rec)
{
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&rec->id, hex);
    if (!guts_otype_name(rec->type) || rec->enc < GUTS_REC_RAW || rec->enc > GUTS_REC_DELTA ||
        (!rec->data && rec->len)) {
        guts_errmsg_set("record %s: invalid type %d or encoding %d", hex, rec->type, rec->enc);
        return GUTS_EINVAL;
    }
    if (rec->size > GUTS_OBJ_MAX_DEFAULT) {
        guts_errmsg_set("record %s: %llu bytes is over the limit", hex, (unsigned long long)rec->size);
        return GUTS_ETOOBIG;
    }
    if (rec->enc == GUTS_REC_RAW && rec->len != rec->size) {
        guts_errmsg_set("record %s: raw payload of %zu bytes for size %llu", hex, rec->len,
                     (unsigned long long)rec->size);
        return GUTS_EHASH;
    }
    return GUTS_OK;
}

int guts_rec_unpack_with(ZSTD_DCtx *dctx, const guts_rec *rec, const uint8_t *base, size_t blen,
                         uint8_t **out)
{
    *out = NULL;
    /* guts_rec_check passed: a known encoding, a raw payload of the size */
    assert(rec->enc >= GUTS_REC_RAW && rec->enc <= GUTS_REC_DELTA);
    assert(rec->enc != GUTS_REC_RAW || rec->len == rec->size);
    if (rec->enc == GUTS_REC_RAW) return GUTS_OK;
    uint8_t *buf = malloc(rec->size ? rec->size : 1);
    if (!buf) return GUTS_ENOMEM;
    int delta = rec->enc == GUTS_REC_DELTA;
    size_t zr = guts_zstd_decode_prefixed(dctx, buf, rec->size, rec->data, rec->len,
                                          delta ? base : NULL, delta ? blen : 0);
    if (ZSTD_isError(zr) || zr != rec->size) {
        ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
        ZSTD_DCtx_refPrefix(dctx, NULL, 0);
        free(buf);
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&rec->id, hex);
        guts_errmsg_set("record %s: payload does not decode to %llu bytes", hex,
                        (unsigned long long)rec->size);
        return GUTS_EHASH;
    }
    *out = buf;
    return GUTS_OK;
}

/* zstd's magic number of a dictionary (ZSTD_MAGIC_DICTIONARY in zstd.h's
 * static section) */
#define ZSTD_DICT_MAGIC 0xEC30A437u

size_t guts_zstd_decode_prefixed(ZSTD_DCtx *dctx, void *dst, size_t cap, const void *src,
                                 size_t len, const void *prefix, size_t plen)
{
    /* ZSTD_decompress_usingDict takes a dictionary of 8 bytes or more that
     * opens with zstd's dictionary magic as a dictionary (entropy tables,
     * an id), any other as raw content: such a base (an object's content
     * may hold anything) goes through refPrefix, raw content always. */
    const uint8_t *p = prefix;
    if (!p || !plen ||
        (plen >= 8 && ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24) == ZSTD_DICT_MAGIC)) {
        size_t zr = ZSTD_DCtx_refPrefix(dctx, prefix, plen);
        return ZSTD_isError(zr) ? zr : ZSTD_decompressDCtx(dctx, dst, cap, src, len);
    }
    return ZSTD_decompress_usingDict(dctx, dst, cap, src, len, prefix, plen);
}

int guts_rec_verify(const guts_rec *rec, const void *content)
{
    guts_id got;
    int rc = guts_obj_hash(rec->type, content, (size_t)rec->size, &got);
    if (rc == GUTS_OK && guts_id_cmp(&got, &rec->id) != 0) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&rec->id, hex);
        guts_errmsg_set("record %s: content does not hash to its id", hex);
        rc = GUTS_EHASH;
    }
    return rc;
}

/* Decode rec (base: the base's content for a delta) with dctx and verify
 * its id. A raw record is not copied: *out is NULL and the content is the
 * payload. Returns 0 or GUTS_EHASH / GUTS_ENOMEM. */
int guts_rec_decode_with(ZSTD_DCtx *dctx, const guts_rec *rec, const uint8_t *base, size_t blen,
                         uint8_t **out)
{
    uint8_t *buf;
    int rc = guts_rec_unpack_with(dctx, rec, base, blen, &buf);
    if (rc == GUTS_OK) rc = guts_rec_verify(rec, buf ? buf : rec->data);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return GUTS_OK;
}

int guts_rec_decode(const guts_rec *rec, const void *base, size_t blen, void **out)
{
    if (!rec || !out || (rec->enc == GUTS_REC_DELTA && !base && blen)) return GUTS_EINVAL;
    int rc = guts_rec_check(rec);
    if (rc) return rc;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) return GUTS_ENOMEM;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, GUTS_REC_WINDOWLOG))) {
        ZSTD_freeDCtx(dctx);
        return GUTS_ENOMEM;
    }
    uint8_t *buf;
    rc = guts_rec_decode_with(dctx, rec, base, blen, &buf);
    ZSTD_freeDCtx(dctx);
    if (rc) return rc;
    if (!buf) { /* raw: the caller gets a copy */
        if (!(buf = malloc(rec->size ? rec->size : 1))) return GUTS_ENOMEM;
        if (rec->size) memcpy(buf, rec->data, (size_t)rec->size);
    }
    *out = buf;
    return GUTS_OK;
}

guts_fp guts_ref_digest_term(const guts_ref *ref)
{
    /* name NUL target(20) symref NUL clock(8, BE) writer(16): the NULs keep
     * (name, symref) pairs from running into each other. */
    uint8_t buf[2 * (GUTS_REFNAME_MAX + 1) + GUTS_ID_LEN + 8 + GUTS_NODE_ID_LEN];
    size_t n = 0;
    size_t nl = strnlen(ref->name, GUTS_REFNAME_MAX);
    memcpy(buf + n, ref->name, nl);
    n += nl;
    buf[n++] = 0;
    memcpy(buf + n, ref->target.b, GUTS_ID_LEN);
    n += GUTS_ID_LEN;
    size_t sl = strnlen(ref->symref, GUTS_REFNAME_MAX);
    memcpy(buf + n, ref->symref, sl);
    n += sl;
    buf[n++] = 0;
    for (int i = 7; i >= 0; i--) /* big-endian */
        buf[n + (size_t)(7 - i)] = (uint8_t)(ref->clock >> (8 * i));
    n += 8;
    memcpy(buf + n, ref->writer.b, GUTS_NODE_ID_LEN);
    n += GUTS_NODE_ID_LEN;
    assert(n <= sizeof(buf)); /* names are at most GUTS_REFNAME_MAX (strnlen) */
    XXH128_hash_t h = XXH3_128bits(buf, n);
    guts_fp fp = {h.low64, h.high64};
    return fp;
}
