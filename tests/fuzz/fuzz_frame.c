/* fuzz_frame.c - libFuzzer target: a TCP byte stream cut into frames.
 *
 * The input is what a peer might write on a stream: 4-byte big-endian
 * length headers each followed by an envelope, back to back, possibly cut
 * short. The target reads it the way the daemon does (header first, checked
 * against the frame max before anything else), decodes each complete frame
 * and checks that what decodes re-encodes, as a frame, to a header and
 * envelope that decode to the same bytes again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guts/wire.h"

/* A small frame max makes the "over the cap" path reachable by the fuzzer;
 * the real default (4 MiB) behaves the same, only further away. */
#define FUZZ_FRAME_MAX (64u << 10)
#define FUZZ_SLACK 64

static void check(int ok)
{
    if (!ok) abort();
}

static void one_frame(const uint8_t *env, size_t len)
{
    guts_msg m;
    if (guts_msg_decode(env, len, &m)) {
        guts_msg_free(&m);
        return;
    }
    size_t cap = len + GUTS_FRAME_HDR + FUZZ_SLACK, flen = 0, len2 = 0;
    uint8_t *f = malloc(cap), *b2 = malloc(cap);
    check(f && b2);
    check(guts_msg_encode_frame(&m, f, cap, &flen) == 0);
    check(flen > GUTS_FRAME_HDR && flen <= len + GUTS_FRAME_HDR);
    uint32_t body = 0;
    check(guts_wire_frame_len(f, FUZZ_FRAME_MAX, &body) == 0);
    check(body == flen - GUTS_FRAME_HDR);
    guts_msg m2;
    check(guts_msg_decode(f + GUTS_FRAME_HDR, body, &m2) == 0);
    check(guts_msg_encode(&m2, b2, cap, &len2) == 0);
    check(len2 == body && memcmp(b2, f + GUTS_FRAME_HDR, body) == 0);
    guts_msg_free(&m2);
    guts_msg_free(&m);
    free(f);
    free(b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (size - off >= GUTS_FRAME_HDR) {
        uint32_t len = 0;
        int rc = guts_wire_frame_len(data + off, FUZZ_FRAME_MAX, &len);
        if (rc) {
            check(rc == GUTS_EPROTO || rc == GUTS_ETOOBIG);
            return 0; /* the daemon drops the stream */
        }
        check(len > 0 && len <= FUZZ_FRAME_MAX);
        off += GUTS_FRAME_HDR;
        if (len > size - off) return 0; /* incomplete: the daemon waits for more */
        /* A copy of exactly len bytes, so ASan sees any over-read. */
        uint8_t *env = malloc(len);
        check(env != NULL);
        memcpy(env, data + off, len);
        one_frame(env, len);
        free(env);
        off += len;
    }
    return 0;
}
