/* fuzz_open.c - libFuzzer target: opening sealed datagrams and frames.
 *
 * The seal layer (src/wire/seal.c) is what a keyed node runs on every byte
 * a stranger sends, before the decoder. The first input byte picks a mode:
 *
 *   0  arbitrary bytes opened as a datagram (and as a stream hello): must
 *      never open unless they were sealed with the key, which the fuzzer
 *      cannot do; the fuzzer still learns the key id and a fresh timestamp
 *      from the comparisons, so it gets as far as the AEAD.
 *   1  the rest is a plaintext: sealed, opened back (must be identical),
 *      then byte input[1] of the sealed form is changed: must not open.
 *   2  a stream between two ends: the rest is a list of frames (1-byte
 *      length, 1-byte action, payload); each is sealed by one end and opened
 *      by the other after the action (deliver, change a byte, drop, deliver
 *      twice, send it back to its sender). Opening must succeed exactly while
 *      nothing was changed, dropped or repeated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guts/seal.h"
#include "guts/wire.h"

#define FUZZ_NOW 1700000000000ull
/* Frames here are small; 255 bytes of payload plus header and tag. */
#define FUZZ_FRAME_CAP (4 + 255 + GUTS_SEAL_TAG_LEN)

static const uint8_t fuzz_key[GUTS_SEAL_KEY_LEN] = {
    0x67, 0x75, 0x74, 0x73, 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
    13,   14,   15,   16,   17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28};

static void check(int ok)
{
    if (!ok) abort();
}

static void arbitrary(guts_seal *s, const uint8_t *d, size_t n)
{
    uint8_t *pt = malloc(n + 1);
    check(pt != NULL);
    size_t plen = 0;
    int reason = -1;
    int rc = guts_seal_dgram_open(s, FUZZ_NOW, d, n, pt, n, &plen, &reason);
    check(rc == GUTS_EPROTO && reason != GUTS_SEAL_R_OK);
    guts_seal_stream st;
    uint8_t hello[GUTS_SEAL_HELLO_LEN];
    check(guts_seal_stream_init(&st, s, 0, NULL, hello) == 0);
    if (guts_seal_stream_on_hello(&st, d, n, &reason) == 0) {
        /* A well-formed hello with the right key id: frames still need the
         * key. Open the input itself as one frame. */
        uint8_t hdr[GUTS_FRAME_HDR];
        guts_wire_frame_hdr((uint32_t)n, hdr);
        memcpy(pt, d, n);
        check(guts_seal_stream_open(&st, hdr, pt, n, &plen, &reason) == GUTS_EPROTO);
    }
    guts_seal_stream_clear(&st);
    free(pt);
}

static void round_trip(guts_seal *s, const uint8_t *d, size_t n)
{
    /* An honest sender's clock moves on: one ms per datagram here. (All at
     * one ms, more than GUTS_SEAL_REPLAY_WAYS of them in a bucket would be
     * refused, by design: see seal.h.) */
    static uint64_t now = FUZZ_NOW;
    now++;
    if (n < 1) return;
    size_t flip = d[0];
    d++, n--;
    if (n > GUTS_SEAL_DGRAM_PLAIN_MAX) n = GUTS_SEAL_DGRAM_PLAIN_MAX;
    uint8_t out[GUTS_DGRAM_MAX], pt[GUTS_DGRAM_MAX];
    size_t olen = 0, plen = 0;
    int reason = -1;
    check(guts_seal_dgram(s, now, NULL, d, n, out, sizeof(out), &olen) == 0);
    check(olen == n + GUTS_SEAL_DGRAM_OVERHEAD && olen <= GUTS_DGRAM_MAX);
    flip %= olen;
    out[flip] ^= 0x01;
    check(guts_seal_dgram_open(s, now, out, olen, pt, sizeof(pt), &plen, &reason) == GUTS_EPROTO);
    out[flip] ^= 0x01;
    check(guts_seal_dgram_open(s, now + 1, out, olen, pt, sizeof(pt), &plen, &reason) == 0);
    check(plen == n && (n == 0 || memcmp(pt, d, n) == 0));
    check(guts_seal_dgram_open(s, now + 2, out, olen, pt, sizeof(pt), &plen, &reason) ==
              GUTS_EPROTO &&
          reason == GUTS_SEAL_R_REPLAY);
}

enum { ACT_DELIVER, ACT_CHANGE, ACT_DROP, ACT_TWICE, ACT_REFLECT, ACT_COUNT };

static void stream(guts_seal *s, const uint8_t *d, size_t n)
{
    guts_seal_stream a, b;
    uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
    int reason = -1;
    check(guts_seal_stream_init(&a, s, 1, NULL, ha) == 0);
    check(guts_seal_stream_init(&b, s, 0, NULL, hb) == 0);
    check(guts_seal_stream_on_hello(&a, hb + 4, GUTS_SEAL_HELLO_BODY, &reason) == 0);
    check(guts_seal_stream_on_hello(&b, ha + 4, GUTS_SEAL_HELLO_BODY, &reason) == 0);
    int intact = 1; /* b has seen every frame a sent, in order, unchanged */
    size_t off = 0;
    while (n - off >= 2) {
        size_t len = d[off], act = d[off + 1] % ACT_COUNT;
        off += 2;
        if (len > n - off) len = n - off;
        uint8_t frame[4 + 255], sealed[FUZZ_FRAME_CAP], buf[FUZZ_FRAME_CAP];
        size_t slen = 0, plen = 0;
        if (len == 0) /* a frame body is never empty */
            continue;
        guts_wire_frame_hdr((uint32_t)len, frame);
        memcpy(frame + 4, d + off, len);
        off += len;
        check(guts_seal_stream_seal(&a, frame, len + 4, sealed, sizeof(sealed), &slen) == 0);
        if (act == ACT_DROP) {
            intact = 0;
            continue;
        }
        guts_seal_stream *to = act == ACT_REFLECT ? &a : &b;
        if (act == ACT_REFLECT) intact = 0; /* a is failed from now on */
        int times = act == ACT_TWICE ? 2 : 1;
        for (int t = 0; t < times; t++) {
            memcpy(buf, sealed, slen);
            if (act == ACT_CHANGE) buf[len % slen] ^= 0x80;
            int rc = guts_seal_stream_open(to, buf, buf + 4, slen - 4, &plen, &reason);
            int should = intact && act != ACT_CHANGE && act != ACT_REFLECT && t == 0;
            check((rc == 0) == should);
            if (rc == 0)
                check(plen == len && memcmp(buf + 4, frame + 4, len) == 0);
            else
                intact = 0;
        }
        if (act == ACT_REFLECT) break;
    }
    guts_seal_stream_clear(&a);
    guts_seal_stream_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static guts_seal *s;
    if (!s) check(guts_seal_new(fuzz_key, &s) == 0); /* kept: the replay cache too */
    if (size < 1 || size > GUTS_DGRAM_DROP) return 0;
    switch (data[0] % 3) {
    case 0:
        arbitrary(s, data + 1, size - 1);
        break;
    case 1:
        round_trip(s, data + 1, size - 1);
        break;
    case 2:
        stream(s, data + 1, size - 1);
        break;
    }
    return 0;
}
