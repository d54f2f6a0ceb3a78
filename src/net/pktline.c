/* pktline.c - git's pkt-line framing: a bounded reader over a buffer that
 * is already whole (a request body), and the header of a packet to write.
 * See pktline.h for the format. */
#include <string.h>

#include "guts/guts.h"
#include "pktline.h"

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int guts_pkt_next(const uint8_t *buf, size_t len, size_t *pos, guts_pkt *out)
{
    size_t at = *pos;
    if (at == len) return 0;
    if (at > len || len - at < 4) return GUTS_EINVAL;
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        int v = hexval(buf[at + i]);
        if (v < 0) return GUTS_EINVAL;
        n = n * 16 + (size_t)v;
    }
    out->data = NULL;
    out->len = 0;
    if (n < 4) {
        if (n == 3) return GUTS_EINVAL;
        out->kind = n == 0 ? GUTS_PKT_FLUSH : n == 1 ? GUTS_PKT_DELIM : GUTS_PKT_END;
        *pos = at + 4;
        return 1;
    }
    if (n > GUTS_PKT_MAX || n > len - at) return GUTS_EINVAL;
    out->kind = GUTS_PKT_DATA;
    out->data = buf + at + 4;
    out->len = n - 4;
    if (out->len && out->data[out->len - 1] == '\n') out->len--;
    *pos = at + n;
    return 1;
}

void guts_pkt_header(char out[4], size_t n)
{
    static const char hex[] = "0123456789abcdef";
    n += 4;
    out[0] = hex[(n >> 12) & 15];
    out[1] = hex[(n >> 8) & 15];
    out[2] = hex[(n >> 4) & 15];
    out[3] = hex[n & 15];
}

int guts_pkt_is(const guts_pkt *p, const char *word, const uint8_t **arg, size_t *arglen)
{
    size_t w = strlen(word);
    *arg = NULL;
    *arglen = 0;
    if (p->kind != GUTS_PKT_DATA || p->len < w || memcmp(p->data, word, w) != 0) return 0;
    if (p->len == w) return 1;
    if (p->data[w] != ' ' && p->data[w] != '=') return 0;
    *arg = p->data + w + 1;
    *arglen = p->len - w - 1;
    return 1;
}
