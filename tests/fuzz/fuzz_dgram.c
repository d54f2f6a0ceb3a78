/* fuzz_dgram.c - libFuzzer target: the datagram decoder on arbitrary bytes.
 *
 * A datagram is the first thing a stranger on the LAN can make a node read,
 * so the decoder must survive anything: no crash, no leak, no read past the
 * input, no allocation a 1400-byte datagram cannot justify. Whatever decodes
 * must also be a fixed point of the codec (encode, decode, encode gives the
 * same bytes, guts_msg_size agrees), and for an ANNOUNCE the paging helpers
 * must add up to exactly the encoded size, since the core trusts them to
 * keep every announce within GUTS_DGRAM_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guts/wire.h"

/* Re-encoding never grows a decoded message (the encoder picks the most
 * compact form), so the input size plus slack bounds the buffer. */
#define FUZZ_SLACK 64

static void check(int ok)
{
    if (!ok) abort(); /* libFuzzer reports the input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > GUTS_DGRAM_DROP) return 0; /* the core drops these unread */
    guts_msg m;
    int rc = guts_msg_decode(data, size, &m);
    if (rc) {
        guts_msg_free(&m); /* documented as safe after an error */
        return 0;
    }
    size_t cap = size + FUZZ_SLACK, len1 = 0, len2 = 0, want = 0;
    uint8_t *b1 = malloc(cap), *b2 = malloc(cap);
    check(b1 && b2);
    check(guts_msg_encode(&m, b1, cap, &len1) == 0);
    check(len1 <= size);
    check(guts_msg_size(&m, &want) == 0 && want == len1);
    if (m.type == GUTS_MSG_ANNOUNCE) {
        size_t sum = guts_announce_head_size(&m.u.announce);
        for (uint32_t i = 0; i < m.u.announce.nrepos; i++)
            sum += guts_announce_repo_size(&m.u.announce.repos[i]);
        check(sum == len1);
    }
    guts_msg m2;
    check(guts_msg_decode(b1, len1, &m2) == 0);
    check(m2.type == m.type);
    check(guts_msg_encode(&m2, b2, cap, &len2) == 0);
    check(len2 == len1 && memcmp(b1, b2, len1) == 0);
    guts_msg_free(&m2);
    guts_msg_free(&m);
    free(b1);
    free(b2);
    return 0;
}
