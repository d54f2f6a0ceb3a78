/* pktline.h - git's pkt-line framing (gitprotocol-common(5)), for the
 * node's git smart HTTP service (git.c). No libev, no sockets: the unit
 * tests use it alone.
 *
 * A pkt-line is four lowercase or uppercase hex digits giving the length of
 * the whole line, those four included, then the payload. Lengths 0000
 * (flush), 0001 (delim) and 0002 (response-end) are special packets with
 * no payload; 0003 is invalid; the largest is 65520 bytes (65516 payload).
 */
#ifndef GUTS_NET_PKTLINE_H
#define GUTS_NET_PKTLINE_H

#include <stddef.h>
#include <stdint.h>

/* git's LARGE_PACKET_MAX: no pkt-line is longer, header included. */
#define GUTS_PKT_MAX 65520
/* The payload of one side-band packet: the band byte takes one. */
#define GUTS_PKT_BAND_DATA_MAX (GUTS_PKT_MAX - 4 - 1)

enum {
    GUTS_PKT_DATA = 1,
    GUTS_PKT_FLUSH,
    GUTS_PKT_DELIM,
    GUTS_PKT_END, /* response-end */
};

typedef struct guts_pkt {
    int kind;            /* GUTS_PKT_* */
    const uint8_t *data; /* DATA: the payload, borrowed from the buffer */
    size_t len;          /* its length, one trailing LF left out */
} guts_pkt;

/** Read the packet at buf[*pos..len) and advance *pos past it.
 * @return 1 with *out set; 0 when *pos == len (nothing left);
 *         GUTS_EINVAL when the bytes are not a whole valid packet: a
 *         non-hex length, 0003, a length past the end of buf (truncated)
 *         or over GUTS_PKT_MAX. *pos is then unchanged. */
int guts_pkt_next(const uint8_t *buf, size_t len, size_t *pos, guts_pkt *out);

/** Write the four hex digits of a data packet of payload n into out.
 * n must be at most GUTS_PKT_MAX - 4. */
void guts_pkt_header(char out[4], size_t n);

/** Whether p is a data packet whose payload is exactly word, or starts
 * with word followed by a space or '=' (then *arg is what follows; else
 * *arg is NULL and *arglen 0). */
int guts_pkt_is(const guts_pkt *p, const char *word, const uint8_t **arg, size_t *arglen);

#endif
