/* seal.c - cluster-key sealing of datagrams and stream frames (libsodium).
 *
 * Why this shape (include/guts/seal.h has the byte layout):
 * - XChaCha20-Poly1305 because its 24-byte nonces can be random: every node
 *   of a cluster seals with the same key and no node has to coordinate
 *   counters with another (a 12-byte random nonce would make collisions a
 *   real risk over the life of a key).
 * - The clear header (magic, version, key id, timestamp) is cheap to check
 *   before any crypto, so a flood of junk, of plain envelopes or of another
 *   cluster's traffic costs a few compares; everything that gets to the
 *   AEAD either authenticates or is counted as forged.
 * - Datagrams are replay-protected by a time window plus a bounded cache of
 *   the nonces accepted inside it; streams by fresh per-connection keys and
 *   implicit sequence numbers, so nothing about a stream needs a cache.
 * - No clock, no socket: callers pass wall-clock ms and, if they want
 *   determinism, the nonces.
 */
#include "guts/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(GUTS_SEAL_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(GUTS_SEAL_NONCE_LEN == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(GUTS_SEAL_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(GUTS_SEAL_DGRAM_OVERHEAD == 54, "datagram overhead is documented as 54");
_Static_assert(GUTS_SEAL_DGRAM_PLAIN_MAX == 1146, "plaintext cap is documented as 1146");

/* Domain separation: the same cluster key feeds several derivations. */
static const char KEYID_LABEL[] = "guts key id v1";
static const char STREAM_LABEL[] = "guts stream v1";
static const char REPLAY_LABEL[] = "guts replay hash v1";

/* Bytes of a nonce kept in the replay cache: 128 bits never collide by
 * chance, and a forger cannot use a collision (the AEAD checks all 24). */
#define REPLAY_NONCE_KEEP 16

typedef struct replay_entry {
    uint8_t nonce[REPLAY_NONCE_KEEP];
    uint64_t ts;
} replay_entry;

typedef struct replay_bucket {
    uint64_t floor; /* newest timestamp this bucket has forgotten */
    uint32_t n;
    replay_entry e[GUTS_SEAL_REPLAY_WAYS];
} replay_bucket;

struct guts_seal {
    uint8_t key[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN]; /* [0] seals; all open */
    uint8_t key_id[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEYID_LEN];
    size_t nkeys;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* spreads nonces over buckets */
    guts_seal_counters ctr;
    replay_bucket buckets[GUTS_SEAL_REPLAY_BUCKETS];
};

const char *guts_seal_reason(int reason)
{
    switch (reason) {
    case GUTS_SEAL_R_OK:
        return "ok";
    case GUTS_SEAL_R_UNSEALED:
        return "not sealed";
    case GUTS_SEAL_R_VERSION:
        return "unknown seal version";
    case GUTS_SEAL_R_SHORT:
        return "truncated";
    case GUTS_SEAL_R_KEY_MISMATCH:
        return "key mismatch";
    case GUTS_SEAL_R_STALE:
        return "timestamp outside the window";
    case GUTS_SEAL_R_REPLAY:
        return "replayed";
    case GUTS_SEAL_R_FORGED:
        return "failed authentication";
    case GUTS_SEAL_R_STATE:
        return "out of order";
    default:
        return "?";
    }
}

static void key_id_of(const uint8_t key[GUTS_SEAL_KEY_LEN], uint8_t id[GUTS_SEAL_KEYID_LEN])
{
    uint8_t h[crypto_generichash_BYTES];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof(h));
    crypto_generichash_update(&hs, (const uint8_t *)KEYID_LABEL, sizeof(KEYID_LABEL) - 1);
    crypto_generichash_update(&hs, key, GUTS_SEAL_KEY_LEN);
    crypto_generichash_final(&hs, h, sizeof(h));
    memcpy(id, h, GUTS_SEAL_KEYID_LEN);
}

int guts_seal_rekey(guts_seal *s, const uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t n)
{
    if (!s || !keys || n == 0 || n > GUTS_SEAL_KEYS_MAX) return GUTS_EINVAL;
    sodium_memzero(s->key, sizeof(s->key));
    for (size_t i = 0; i < n; i++) {
        memcpy(s->key[i], keys[i], GUTS_SEAL_KEY_LEN);
        key_id_of(keys[i], s->key_id[i]);
    }
    s->nkeys = n;
    return 0;
}

int guts_seal_new_ring(const uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t n, guts_seal **out)
{
    if (!keys || !out || n == 0 || n > GUTS_SEAL_KEYS_MAX) return GUTS_EINVAL;
    *out = NULL;
    if (sodium_init() < 0) return GUTS_EIO;
    guts_seal *s = calloc(1, sizeof(*s));
    if (!s) return GUTS_ENOMEM;
    guts_seal_rekey(s, keys, n);
    /* The replay cache's spreading key stays for the context's life: a
     * rekey keeps the nonces already accepted where they are. */
    crypto_generichash(s->hash_key, sizeof(s->hash_key), (const uint8_t *)REPLAY_LABEL,
                       sizeof(REPLAY_LABEL) - 1, keys[0], GUTS_SEAL_KEY_LEN);
    *out = s;
    return 0;
}

int guts_seal_new(const uint8_t key[GUTS_SEAL_KEY_LEN], guts_seal **out)
{
    if (!key) return GUTS_EINVAL;
    return guts_seal_new_ring((const uint8_t(*)[GUTS_SEAL_KEY_LEN])key, 1, out);
}

void guts_seal_free(guts_seal *s)
{
    if (!s) return;
    sodium_memzero(s->key, sizeof(s->key));
    sodium_memzero(s->hash_key, sizeof(s->hash_key));
    free(s);
}

void guts_seal_key_id(const guts_seal *s, uint8_t id[GUTS_SEAL_KEYID_LEN])
{
    memcpy(id, s->key_id[0], GUTS_SEAL_KEYID_LEN);
}

size_t guts_seal_key_ids(const guts_seal *s, uint8_t ids[][GUTS_SEAL_KEYID_LEN], size_t max)
{
    for (size_t i = 0; i < s->nkeys && i < max; i++)
        memcpy(ids[i], s->key_id[i], GUTS_SEAL_KEYID_LEN);
    return s->nkeys;
}

/* The ring's index of the key with this id, or -1. */
static int key_find(const guts_seal *s, const uint8_t *id)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (memcmp(s->key_id[i], id, GUTS_SEAL_KEYID_LEN) == 0) return (int)i;
    return -1;
}

void guts_seal_counters_get(const guts_seal *s, guts_seal_counters *out)
{
    *out = s->ctr;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int refuse(guts_seal *s, int why, int *reason)
{
    s->ctr.rejected[why]++;
    if (reason) *reason = why;
    return GUTS_EPROTO;
}

/* ---- Replay cache ------------------------------------------------------- */

static replay_bucket *bucket_of(guts_seal *s, const uint8_t *nonce)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, nonce, GUTS_SEAL_NONCE_LEN, s->hash_key);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(h); i++)
        v = v << 8 | h[i];
    return &s->buckets[v % GUTS_SEAL_REPLAY_BUCKETS];
}

/* 1 when the nonce was accepted before, or may have been and was forgotten. */
static int replay_seen(const replay_bucket *b, const uint8_t *nonce, uint64_t ts)
{
    if (b->n == GUTS_SEAL_REPLAY_WAYS && ts <= b->floor) return 1;
    for (uint32_t i = 0; i < b->n; i++)
        if (memcmp(b->e[i].nonce, nonce, REPLAY_NONCE_KEEP) == 0) return 1;
    return 0;
}

static void replay_add(replay_bucket *b, const uint8_t *nonce, uint64_t ts)
{
    replay_entry *slot;
    if (b->n < GUTS_SEAL_REPLAY_WAYS) {
        slot = &b->e[b->n++];
    } else {
        slot = &b->e[0];
        for (uint32_t i = 1; i < b->n; i++)
            if (b->e[i].ts < slot->ts) slot = &b->e[i];
        if (slot->ts > b->floor) b->floor = slot->ts;
    }
    memcpy(slot->nonce, nonce, REPLAY_NONCE_KEEP);
    slot->ts = ts;
}

/* ---- Datagrams ---------------------------------------------------------- */

int guts_seal_dgram(guts_seal *s, uint64_t now_ms, const uint8_t *nonce, const uint8_t *pt,
                    size_t len, uint8_t *out, size_t cap, size_t *olen)
{
    if (!s || (!pt && len) || !out || !olen) return GUTS_EINVAL;
    if (len > GUTS_SEAL_DGRAM_PLAIN_MAX || cap < len + GUTS_SEAL_DGRAM_OVERHEAD)
        return GUTS_ETOOBIG;
    uint8_t *p = out;
    p[0] = GUTS_SEAL_MAGIC;
    p[1] = GUTS_SEAL_VERSION;
    memcpy(p + 2, s->key_id[0], GUTS_SEAL_KEYID_LEN);
    put_be64(p + 2 + GUTS_SEAL_KEYID_LEN, now_ms);
    uint8_t *n = p + GUTS_SEAL_DGRAM_AD_LEN;
    if (nonce)
        memcpy(n, nonce, GUTS_SEAL_NONCE_LEN);
    else
        randombytes_buf(n, GUTS_SEAL_NONCE_LEN);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(n + GUTS_SEAL_NONCE_LEN, &clen, pt, len, p,
                                               GUTS_SEAL_DGRAM_AD_LEN, NULL, n, s->key[0]);
    *olen = GUTS_SEAL_DGRAM_AD_LEN + GUTS_SEAL_NONCE_LEN + (size_t)clen;
    s->ctr.dgrams_sealed++;
    return 0;
}

int guts_seal_dgram_open(guts_seal *s, uint64_t now_ms, const uint8_t *in, size_t len, uint8_t *pt,
                         size_t cap, size_t *plen, int *reason)
{
    if (reason) *reason = GUTS_SEAL_R_OK;
    if (!s || (!in && len) || !pt || !plen) return GUTS_EINVAL;
    if (len == 0 || in[0] != GUTS_SEAL_MAGIC) return refuse(s, GUTS_SEAL_R_UNSEALED, reason);
    if (len < 2) return refuse(s, GUTS_SEAL_R_SHORT, reason);
    if (in[1] != GUTS_SEAL_VERSION) return refuse(s, GUTS_SEAL_R_VERSION, reason);
    if (len < GUTS_SEAL_DGRAM_OVERHEAD) return refuse(s, GUTS_SEAL_R_SHORT, reason);
    int k = key_find(s, in + 2);
    if (k < 0) return refuse(s, GUTS_SEAL_R_KEY_MISMATCH, reason);
    uint64_t ts = get_be64(in + 2 + GUTS_SEAL_KEYID_LEN);
    uint64_t skew = ts > now_ms ? ts - now_ms : now_ms - ts;
    if (skew > GUTS_SEAL_WINDOW_MS) return refuse(s, GUTS_SEAL_R_STALE, reason);
    const uint8_t *n = in + GUTS_SEAL_DGRAM_AD_LEN;
    replay_bucket *b = bucket_of(s, n);
    if (replay_seen(b, n, ts)) return refuse(s, GUTS_SEAL_R_REPLAY, reason);
    size_t clen = len - GUTS_SEAL_DGRAM_AD_LEN - GUTS_SEAL_NONCE_LEN;
    if (cap < clen - GUTS_SEAL_TAG_LEN) return GUTS_ETOOBIG;
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &mlen, NULL, n + GUTS_SEAL_NONCE_LEN, clen,
                                                   in, GUTS_SEAL_DGRAM_AD_LEN, n, s->key[k]) != 0)
        return refuse(s, GUTS_SEAL_R_FORGED, reason);
    replay_add(b, n, ts);
    *plen = (size_t)mlen;
    s->ctr.dgrams_opened++;
    return 0;
}

/* ---- Streams ------------------------------------------------------------ */

static void frame_nonce(uint64_t seq, uint8_t n[GUTS_SEAL_NONCE_LEN])
{
    memset(n, 0, GUTS_SEAL_NONCE_LEN);
    for (int i = 0; i < 8; i++)
        n[i] = (uint8_t)(seq >> (8 * i));
}

/* Key of one direction: 1 initiator -> responder, 2 the other way. */
static void stream_key(const uint8_t *key, const uint8_t *ni, const uint8_t *nr, uint8_t dir,
                       uint8_t out[GUTS_SEAL_KEY_LEN])
{
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, key, GUTS_SEAL_KEY_LEN, GUTS_SEAL_KEY_LEN);
    crypto_generichash_update(&hs, (const uint8_t *)STREAM_LABEL, sizeof(STREAM_LABEL) - 1);
    crypto_generichash_update(&hs, ni, GUTS_SEAL_NONCE_LEN);
    crypto_generichash_update(&hs, nr, GUTS_SEAL_NONCE_LEN);
    crypto_generichash_update(&hs, &dir, 1);
    crypto_generichash_final(&hs, out, GUTS_SEAL_KEY_LEN);
}

int guts_seal_stream_init(guts_seal_stream *st, guts_seal *s, int outgoing, const uint8_t *nonce,
                          uint8_t hello[GUTS_SEAL_HELLO_LEN])
{
    if (!st || !s || !hello) return GUTS_EINVAL;
    memset(st, 0, sizeof(*st));
    st->seal = s;
    st->outgoing = outgoing ? 1 : 0;
    st->state = GUTS_SEAL_ST_HELLO;
    if (nonce)
        memcpy(st->nonce, nonce, GUTS_SEAL_NONCE_LEN);
    else
        randombytes_buf(st->nonce, GUTS_SEAL_NONCE_LEN);
    memcpy(st->key_id, s->key_id[0], GUTS_SEAL_KEYID_LEN);
    return guts_seal_stream_hello(st, hello);
}

int guts_seal_stream_hello(const guts_seal_stream *st, uint8_t hello[GUTS_SEAL_HELLO_LEN])
{
    if (!st || !hello) return GUTS_EINVAL;
    guts_wire_frame_hdr(GUTS_SEAL_HELLO_BODY, hello);
    hello[4] = GUTS_SEAL_MAGIC;
    hello[5] = GUTS_SEAL_VERSION;
    memcpy(hello + 6, st->key_id, GUTS_SEAL_KEYID_LEN);
    memcpy(hello + 6 + GUTS_SEAL_KEYID_LEN, st->nonce, GUTS_SEAL_NONCE_LEN);
    return 0;
}

static int stream_fail(guts_seal_stream *st, int why, int *reason)
{
    st->state = GUTS_SEAL_ST_FAILED;
    sodium_memzero(st->tx, sizeof(st->tx));
    sodium_memzero(st->rx, sizeof(st->rx));
    return refuse(st->seal, why, reason);
}

int guts_seal_stream_on_hello(guts_seal_stream *st, const uint8_t *body, size_t len, int *reason)
{
    if (reason) *reason = GUTS_SEAL_R_OK;
    if (!st || !st->seal || (!body && len)) return GUTS_EINVAL;
    if (st->state != GUTS_SEAL_ST_HELLO) return stream_fail(st, GUTS_SEAL_R_STATE, reason);
    if (len == 0 || body[0] != GUTS_SEAL_MAGIC)
        return stream_fail(st, GUTS_SEAL_R_UNSEALED, reason);
    if (len < 2) return stream_fail(st, GUTS_SEAL_R_SHORT, reason);
    if (body[1] != GUTS_SEAL_VERSION) return stream_fail(st, GUTS_SEAL_R_VERSION, reason);
    if (len != GUTS_SEAL_HELLO_BODY) return stream_fail(st, GUTS_SEAL_R_SHORT, reason);
    /* The initiator names the connection's key; the responder takes it
     * when its ring holds it and names it back in its own hello, so nodes
     * whose first keys differ in the middle of a rotation still connect. */
    int k = key_find(st->seal, body + 2);
    if (k < 0 || (st->outgoing && memcmp(body + 2, st->key_id, GUTS_SEAL_KEYID_LEN) != 0))
        return stream_fail(st, GUTS_SEAL_R_KEY_MISMATCH, reason);
    memcpy(st->key_id, body + 2, GUTS_SEAL_KEYID_LEN);
    const uint8_t *peer = body + 2 + GUTS_SEAL_KEYID_LEN;
    /* Our own hello sent back: its keys would differ per direction anyway,
     * but nothing honest does this. */
    if (sodium_memcmp(peer, st->nonce, GUTS_SEAL_NONCE_LEN) == 0)
        return stream_fail(st, GUTS_SEAL_R_REPLAY, reason);
    const uint8_t *ni = st->outgoing ? st->nonce : peer;
    const uint8_t *nr = st->outgoing ? peer : st->nonce;
    stream_key(st->seal->key[k], ni, nr, st->outgoing ? 1 : 2, st->tx);
    stream_key(st->seal->key[k], ni, nr, st->outgoing ? 2 : 1, st->rx);
    st->state = GUTS_SEAL_ST_READY;
    st->seal->ctr.streams_ready++;
    return 0;
}

int guts_seal_stream_seal(guts_seal_stream *st, const uint8_t *frame, size_t len, uint8_t *out,
                          size_t cap, size_t *olen)
{
    if (!st || !frame || !out || !olen || st->state != GUTS_SEAL_ST_READY) return GUTS_EINVAL;
    if (len <= GUTS_FRAME_HDR || len - GUTS_FRAME_HDR > UINT32_MAX - GUTS_SEAL_TAG_LEN)
        return GUTS_EINVAL;
    size_t body = len - GUTS_FRAME_HDR;
    uint32_t hdr_len =
        (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
    if (hdr_len != body) return GUTS_EINVAL;
    if (cap < len + GUTS_SEAL_FRAME_OVERHEAD) return GUTS_ETOOBIG;
    guts_wire_frame_hdr((uint32_t)(body + GUTS_SEAL_TAG_LEN), out);
    uint8_t n[GUTS_SEAL_NONCE_LEN];
    frame_nonce(st->tx_seq++, n);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + GUTS_FRAME_HDR, &clen, frame + GUTS_FRAME_HDR,
                                               body, out, GUTS_FRAME_HDR, NULL, n, st->tx);
    *olen = GUTS_FRAME_HDR + (size_t)clen;
    st->seal->ctr.frames_sealed++;
    return 0;
}

int guts_seal_stream_open(guts_seal_stream *st, const uint8_t hdr[4], uint8_t *body, size_t len,
                          size_t *plen, int *reason)
{
    if (reason) *reason = GUTS_SEAL_R_OK;
    if (!st || !st->seal || !hdr || !body || !plen) return GUTS_EINVAL;
    if (st->state != GUTS_SEAL_ST_READY) return stream_fail(st, GUTS_SEAL_R_STATE, reason);
    if (len <= GUTS_SEAL_TAG_LEN) return stream_fail(st, GUTS_SEAL_R_SHORT, reason);
    uint8_t n[GUTS_SEAL_NONCE_LEN];
    frame_nonce(st->rx_seq, n);
    unsigned long long mlen = 0;
    /* In place: libsodium allows the message and ciphertext to coincide. */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(body, &mlen, NULL, body, len, hdr,
                                                   GUTS_FRAME_HDR, n, st->rx) != 0)
        return stream_fail(st, GUTS_SEAL_R_FORGED, reason);
    st->rx_seq++;
    *plen = (size_t)mlen;
    st->seal->ctr.frames_opened++;
    return 0;
}

void guts_seal_stream_clear(guts_seal_stream *st)
{
    if (st) sodium_memzero(st, sizeof(*st));
}

/* ---- Key files ---------------------------------------------------------- */

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse the text form: one key of 64 hex digits per line. */
static int keys_parse(const char *path, const uint8_t *buf, size_t len,
                      uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t max, size_t *n, char *err,
                      size_t errlen)
{
    size_t line = 0;
    *n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && buf[j] != '\n')
            j++;
        size_t e = j;
        line++;
        while (e > i && (buf[e - 1] == ' ' || buf[e - 1] == '\t' || buf[e - 1] == '\r'))
            e--;
        if (e > i && buf[i] != '#') {
            if (e - i != 2 * GUTS_SEAL_KEY_LEN) {
                say(err, errlen,
                    "key file %s: line %zu is not a key (64 hex digits): make one with guts "
                    "keygen",
                    path, line);
                return GUTS_EINVAL;
            }
            if (*n == max) {
                say(err, errlen, "key file %s holds more than %zu keys", path, max);
                return GUTS_EINVAL;
            }
            for (size_t k = 0; k < GUTS_SEAL_KEY_LEN; k++) {
                int hi = hexval(buf[i + 2 * k]), lo = hexval(buf[i + 2 * k + 1]);
                if (hi < 0 || lo < 0) {
                    say(err, errlen,
                        "key file %s: line %zu is not a key (64 hex digits): make one with "
                        "guts keygen",
                        path, line);
                    return GUTS_EINVAL;
                }
                keys[*n][k] = (uint8_t)(hi << 4 | lo);
            }
            ++*n;
        }
        i = j + 1;
    }
    if (*n == 0) {
        say(err, errlen, "key file %s holds no key: make one with guts keygen", path);
        return GUTS_EINVAL;
    }
    return 0;
}

int guts_seal_keys_load(const char *path, uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t max,
                        size_t *n, char *err, size_t errlen)
{
    if (!path || !keys || !n || max == 0) {
        say(err, errlen, "no key file given");
        return GUTS_EINVAL;
    }
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        say(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return GUTS_EIO;
    }
    struct stat sb;
    uint8_t buf[GUTS_SEAL_KEYFILE_MAX + 1];
    size_t got = 0;
    int rc = 0;
    if (fstat(fd, &sb) != 0) {
        say(err, errlen, "cannot stat key file %s: %s", path, strerror(errno));
        rc = GUTS_EIO;
    } else if (!S_ISREG(sb.st_mode)) {
        say(err, errlen, "key file %s is not a regular file", path);
        rc = GUTS_EINVAL;
    } else if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        say(err, errlen,
            "key file %s has mode %04o: others than its owner may use it; "
            "run chmod 600 %s",
            path, (unsigned)(sb.st_mode & 07777), path);
        rc = GUTS_EINVAL;
    } else {
        /* Read up to one byte past the cap: a file that grew since fstat is
         * still bounded. */
        while (got < sizeof(buf)) {
            ssize_t r = read(fd, buf + got, sizeof(buf) - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                say(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
                rc = GUTS_EIO;
            }
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (!rc && got > GUTS_SEAL_KEYFILE_MAX) {
            say(err, errlen, "key file %s is over %d bytes: not a key file", path,
                GUTS_SEAL_KEYFILE_MAX);
            rc = GUTS_EINVAL;
        }
    }
    close(fd);
    if (!rc) {
        int text = got > 0;
        for (size_t i = 0; i < got && text; i++)
            text = buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t' ||
                   (buf[i] >= 0x20 && buf[i] < 0x7f);
        if (text) {
            rc = keys_parse(path, buf, got, keys, max, n, err, errlen);
        } else if (got == GUTS_SEAL_KEY_LEN) { /* a key file from before key rings */
            memcpy(keys[0], buf, GUTS_SEAL_KEY_LEN);
            *n = 1;
        } else {
            say(err, errlen,
                "key file %s has %zu bytes and holds neither 32 raw bytes nor lines of 64 "
                "hex digits: make one with guts keygen",
                path, got);
            rc = GUTS_EINVAL;
        }
    }
    sodium_memzero(buf, sizeof(buf));
    if (rc) {
        sodium_memzero(keys, max * GUTS_SEAL_KEY_LEN);
        *n = 0;
    }
    return rc;
}

int guts_seal_key_load(const char *path, uint8_t key[GUTS_SEAL_KEY_LEN], char *err, size_t errlen)
{
    uint8_t ring[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN];
    size_t n;
    int rc = guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, errlen);
    if (!rc) memcpy(key, ring[0], GUTS_SEAL_KEY_LEN);
    sodium_memzero(ring, sizeof(ring));
    return rc;
}

int guts_seal_key_generate(const char *path, char *err, size_t errlen)
{
    if (!path) {
        say(err, errlen, "no key file given");
        return GUTS_EIO;
    }
    if (sodium_init() < 0) {
        say(err, errlen, "libsodium could not initialise");
        return GUTS_EIO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        say(err, errlen, "cannot create key file %s: %s", path, strerror(e));
        return e == EEXIST ? GUTS_EEXIST : GUTS_EIO;
    }
    uint8_t raw[GUTS_SEAL_KEY_LEN];
    char key[2 * GUTS_SEAL_KEY_LEN + 1];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(key, sizeof(key), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    key[2 * GUTS_SEAL_KEY_LEN] = '\n'; /* a line of its own: rings are lines */
    size_t done = 0;
    int rc = 0;
    /* The umask cannot widen 0600, but a hostile one could narrow it to
     * something odd: set it exactly. */
    if (fchmod(fd, 0600) != 0) rc = GUTS_EIO;
    while (!rc && done < sizeof(key)) {
        ssize_t w = write(fd, key + done, sizeof(key) - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            rc = GUTS_EIO;
        else
            done += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = GUTS_EIO;
    int e = errno;
    if (close(fd) != 0 && !rc) {
        rc = GUTS_EIO;
        e = errno;
    }
    sodium_memzero(key, sizeof(key));
    if (rc) {
        unlink(path);
        say(err, errlen, "cannot write key file %s: %s", path, strerror(e));
    }
    return rc;
}
