/* seal.h - cluster-key encryption and authentication of datagrams and streams.
 *
 * A keyed cluster shares one 32-byte key (a file made by
 * guts_seal_key_generate, passed to every node). With it, every datagram and
 * every stream frame is encrypted and authenticated with libsodium's
 * XChaCha20-Poly1305 (IETF) AEAD, so a stranger on the LAN can neither read
 * a repository name or object id nor inject, alter or replay a message.
 * Without a key nothing here is used and the node runs open.
 *
 * Sans-I/O like the core: no socket, no clock. Callers pass the time as
 * wall-clock milliseconds (CLOCK_REALTIME, not the core's monotonic `now`:
 * timestamps are compared across machines), and may pass nonces themselves
 * so the simulator stays deterministic; with a NULL nonce a random one comes
 * from randombytes_buf.
 *
 * Datagram (GUTS_SEAL_DGRAM_OVERHEAD = 54 bytes more than the plaintext):
 *
 *     0    magic 0xc1 (never valid msgpack: a node without a key rejects a
 *          sealed datagram at its first byte, and a keyed node tells a
 *          plain envelope, which starts with 0x95, from a sealed one)
 *     1    seal version (1)
 *     2-5  key id: first 4 bytes of BLAKE2b("guts key id v1" || key);
 *          a different key is recognised and counted without any crypto
 *     6-13 sender's wall clock, ms since the epoch, big-endian
 *     14-37 24-byte nonce
 *     38-  ciphertext of the envelope, then the 16-byte tag
 *
 * Bytes 0-13 are the associated data. A datagram is accepted only if its
 * timestamp lies within GUTS_SEAL_WINDOW_MS of the receiver's clock and its
 * nonce was not accepted before (a bounded replay cache covers the window).
 * The core must therefore build datagram plaintexts of at most
 * GUTS_SEAL_DGRAM_PLAIN_MAX = 1146 bytes, so that sealed ones stay within
 * GUTS_DGRAM_MAX.
 *
 * Stream: each side first sends a hello frame (4-byte length 30, magic,
 * version, key id, a fresh 24-byte random nonce). Both sides derive one key
 * per direction, BLAKE2b-256 keyed with the cluster key over a label, the
 * initiator's nonce, the responder's nonce and the direction, so every
 * connection has keys of its own. Each later frame is the 4-byte length of
 * what follows, then the envelope encrypted with the direction's key and the
 * frame's sequence number (0, 1, 2, ... per direction, never sent) as nonce,
 * and the length header as associated data: a frame replayed, dropped,
 * reordered, reflected back or moved to another connection fails to open.
 * A peer with another key (or none) fails at the hello: no frame of it ever
 * reaches the core.
 */
#ifndef GUTS_SEAL_H
#define GUTS_SEAL_H

#include "guts/guts.h"
#include "guts/wire.h"

#define GUTS_SEAL_KEY_LEN 32 /* XChaCha20-Poly1305 key size */
#define GUTS_SEAL_MAGIC 0xc1 /* msgpack's one "never used" byte */
#define GUTS_SEAL_VERSION 1
#define GUTS_SEAL_KEYID_LEN                                                                        \
    4                          /* enough to tell keys apart for counting;                          \
                                * a collision only costs an AEAD check */
#define GUTS_SEAL_NONCE_LEN 24 /* XChaCha20: random nonces are safe */
#define GUTS_SEAL_TAG_LEN 16   /* Poly1305 */
/* Associated data of a datagram: magic, version, key id, timestamp. */
#define GUTS_SEAL_DGRAM_AD_LEN (2 + GUTS_SEAL_KEYID_LEN + 8)
/* 2 + 4 + 8 + 24 + 16 = 54 bytes. */
#define GUTS_SEAL_DGRAM_OVERHEAD (GUTS_SEAL_DGRAM_AD_LEN + GUTS_SEAL_NONCE_LEN + GUTS_SEAL_TAG_LEN)
/* Largest datagram plaintext whose sealed form fits GUTS_DGRAM_MAX (1200). */
#define GUTS_SEAL_DGRAM_PLAIN_MAX (GUTS_DGRAM_MAX - GUTS_SEAL_DGRAM_OVERHEAD) /* 1146 */
/* Clocks of a LAN's machines agree within a second under NTP; 30 s leaves
 * room for a machine without NTP while keeping a captured datagram useless
 * after half a minute (and the replay cache small). */
#define GUTS_SEAL_WINDOW_MS 30000
/* Replay cache: GUTS_SEAL_REPLAY_BUCKETS * GUTS_SEAL_REPLAY_WAYS accepted
 * nonces (16,384: about 5 minutes of the default group announce budget, ~50
 * full datagrams a second, so the 60 s span of the window fits 5 times).
 * Only datagrams that authenticated enter it, so strangers cannot flush it.
 * A bucket that overflows forgets its oldest nonce and from then on refuses
 * anything not newer than it: under overload genuine datagrams may be lost,
 * a replay is never accepted. 24 bytes an entry: 384 KiB per node. */
#define GUTS_SEAL_REPLAY_BUCKETS 2048
#define GUTS_SEAL_REPLAY_WAYS 8
/* Stream hello: 4-byte frame length, magic, version, key id, nonce. */
#define GUTS_SEAL_HELLO_BODY (2 + GUTS_SEAL_KEYID_LEN + GUTS_SEAL_NONCE_LEN)
#define GUTS_SEAL_HELLO_LEN (4 + GUTS_SEAL_HELLO_BODY)
/* A sealed frame's body is the envelope plus the tag. */
#define GUTS_SEAL_FRAME_OVERHEAD GUTS_SEAL_TAG_LEN

/* Why a datagram, hello or frame was refused (the counters use the same
 * numbers). */
enum {
    GUTS_SEAL_R_OK = 0,
    GUTS_SEAL_R_UNSEALED,     /* does not start with the magic: plain or junk */
    GUTS_SEAL_R_VERSION,      /* unknown seal version */
    GUTS_SEAL_R_SHORT,        /* shorter than the overhead */
    GUTS_SEAL_R_KEY_MISMATCH, /* sealed with another cluster key */
    GUTS_SEAL_R_STALE,        /* timestamp outside the window */
    GUTS_SEAL_R_REPLAY,       /* nonce seen (or possibly seen) before */
    GUTS_SEAL_R_FORGED,       /* failed authentication (tampered, wrong
                               * key with the same id, reordered frame) */
    GUTS_SEAL_R_STATE,        /* frame before the hello, or a second hello */
    GUTS_SEAL_R_COUNT
};

typedef struct guts_seal_counters {
    uint64_t dgrams_sealed, dgrams_opened;
    uint64_t frames_sealed, frames_opened;
    uint64_t streams_ready;               /* handshakes completed */
    uint64_t rejected[GUTS_SEAL_R_COUNT]; /* indexed by GUTS_SEAL_R_* */
} guts_seal_counters;

typedef struct guts_seal guts_seal;

/* Keys one node holds at once: the first seals, every one opens. Two are
 * enough for a rotation (old and new); the rest is room for a slow one. */
#define GUTS_SEAL_KEYS_MAX 8

/** Name of a GUTS_SEAL_R_* reason ("key mismatch", ...), or "?". */
const char *guts_seal_reason(int reason);

/** Create a sealing context for a cluster key (copied; the copy is wiped by
 * guts_seal_free). One per node; not thread-safe. Initialises libsodium.
 * Errors: GUTS_EINVAL (NULL key), GUTS_ENOMEM, GUTS_EIO (libsodium could
 * not initialise). */
int guts_seal_new(const uint8_t key[GUTS_SEAL_KEY_LEN], guts_seal **out);
/** Create a sealing context for a key ring: keys[0] seals datagrams and
 * names the key of the streams this node opens; every key of the ring opens
 * datagrams and answers streams (key rotation without downtime).
 * Errors: as guts_seal_new, and GUTS_EINVAL for n of 0 or over
 * GUTS_SEAL_KEYS_MAX. */
int guts_seal_new_ring(const uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t n, guts_seal **out);
/** Replace the ring in place (a key file reread): counters, the replay
 * cache and streams already open (their keys are derived) are kept.
 * Errors: GUTS_EINVAL (n of 0 or over GUTS_SEAL_KEYS_MAX). */
int guts_seal_rekey(guts_seal *s, const uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t n);
/** The ids of the ring's keys, first (sealing) key first; fills at most max
 * and returns how many keys there are. */
size_t guts_seal_key_ids(const guts_seal *s, uint8_t ids[][GUTS_SEAL_KEYID_LEN], size_t max);
/** Wipe the key and free. Safe on NULL. */
void guts_seal_free(guts_seal *s);
/** The sealing (first) key's id (what datagrams and hellos carry). */
void guts_seal_key_id(const guts_seal *s, uint8_t id[GUTS_SEAL_KEYID_LEN]);
/** Counters since creation. */
void guts_seal_counters_get(const guts_seal *s, guts_seal_counters *out);

/** Seal one datagram plaintext (an envelope of len bytes) into out (cap
 * bytes); *olen gets len + GUTS_SEAL_DGRAM_OVERHEAD. now_ms is the wall
 * clock. nonce: GUTS_SEAL_NONCE_LEN bytes never used before with this key
 * (the simulator passes node index and counter), or NULL for random ones.
 * Errors: GUTS_EINVAL (NULL argument), GUTS_ETOOBIG (len over
 * GUTS_SEAL_DGRAM_PLAIN_MAX, or cap too small: nothing written). */
int guts_seal_dgram(guts_seal *s, uint64_t now_ms, const uint8_t *nonce, const uint8_t *pt,
                    size_t len, uint8_t *out, size_t cap, size_t *olen);

/** Open a received datagram of len bytes into pt (cap bytes, at least
 * len - GUTS_SEAL_DGRAM_OVERHEAD); *plen gets the envelope's length and the
 * nonce is remembered. *reason (may be NULL) gets GUTS_SEAL_R_OK or why it
 * was refused; each refusal is counted. Nothing is written to pt unless it
 * opens. Errors: GUTS_EPROTO (refused: see *reason), GUTS_ETOOBIG (cap too
 * small), GUTS_EINVAL (NULL argument). */
int guts_seal_dgram_open(guts_seal *s, uint64_t now_ms, const uint8_t *in, size_t len, uint8_t *pt,
                         size_t cap, size_t *plen, int *reason);

/* ---- Streams ---------------------------------------------------------------
 * Per connection, embedded in the connection's struct:
 *   1. guts_seal_stream_init(st, s, outgoing, NULL, hello): send the hello
 *      (GUTS_SEAL_HELLO_LEN bytes, a complete frame) first;
 *   2. the peer's first frame body goes to guts_seal_stream_on_hello; only
 *      when it succeeds does the stream count as open (tell the core then);
 *   3. every frame the core sends goes through guts_seal_stream_seal, every
 *      frame received through guts_seal_stream_open (in place);
 *   4. guts_seal_stream_clear when the connection closes.
 * A failed hello or open means: close the connection. */

enum { GUTS_SEAL_ST_HELLO = 0, GUTS_SEAL_ST_READY = 1, GUTS_SEAL_ST_FAILED = 2 };

typedef struct guts_seal_stream {
    guts_seal *seal;                    /* borrowed, for the key and the counters */
    int outgoing;                       /* 1: we connected (initiator) */
    int state;                          /* GUTS_SEAL_ST_* */
    uint8_t nonce[GUTS_SEAL_NONCE_LEN]; /* ours, sent in the hello */
    uint8_t key_id[GUTS_SEAL_KEYID_LEN]; /* the connection's key: the initiator's */
    uint8_t tx[GUTS_SEAL_KEY_LEN], rx[GUTS_SEAL_KEY_LEN];
    uint64_t tx_seq, rx_seq;
} guts_seal_stream;

/** Start a connection's sealing and write our hello frame into hello.
 * outgoing: 1 if we connected. nonce: 24 fresh bytes, or NULL for random.
 * Errors: GUTS_EINVAL (NULL argument). */
int guts_seal_stream_init(guts_seal_stream *st, guts_seal *s, int outgoing, const uint8_t *nonce,
                          uint8_t hello[GUTS_SEAL_HELLO_LEN]);

/** Our hello frame as it stands: the initiator sends the one init wrote;
 * a responder sends this one after guts_seal_stream_on_hello succeeded, so
 * it names the key the initiator chose (which may not be the responder's
 * first). Errors: GUTS_EINVAL (NULL argument). */
int guts_seal_stream_hello(const guts_seal_stream *st, uint8_t hello[GUTS_SEAL_HELLO_LEN]);

/** Take the peer's hello (the body of its first frame, len bytes, without
 * the 4-byte length) and derive this connection's keys.
 * Errors: GUTS_EPROTO with *reason UNSEALED (a plain guts peer), VERSION,
 * SHORT, KEY_MISMATCH or STATE (already done); the stream is then failed. */
int guts_seal_stream_on_hello(guts_seal_stream *st, const uint8_t *body, size_t len, int *reason);

/** Seal one frame as the core made it (4-byte length, then the envelope;
 * len bytes in all) into out (cap bytes, at least len +
 * GUTS_SEAL_FRAME_OVERHEAD); *olen gets len + GUTS_SEAL_FRAME_OVERHEAD.
 * Errors: GUTS_EINVAL (not ready, NULL argument, len < 5 or the header does
 * not match len), GUTS_ETOOBIG (cap too small). */
int guts_seal_stream_seal(guts_seal_stream *st, const uint8_t *frame, size_t len, uint8_t *out,
                          size_t cap, size_t *olen);

/** Open one received frame in place: hdr is its 4-byte length header, body
 * its len bytes (len as the header says). On success body holds the
 * envelope and *plen its length (len - GUTS_SEAL_FRAME_OVERHEAD); pass
 * that to guts_core_on_frame. Errors: GUTS_EPROTO with *reason STATE (no
 * hello yet, or failed before), SHORT or FORGED (tampered, replayed,
 * reordered or from another connection); the stream is then failed. */
int guts_seal_stream_open(guts_seal_stream *st, const uint8_t hdr[4], uint8_t *body, size_t len,
                          size_t *plen, int *reason);

/** Wipe a connection's keys. */
void guts_seal_stream_clear(guts_seal_stream *st);

/* ---- Key files -------------------------------------------------------------
 * A key file holds one key per line as 64 hex digits (the first line's key
 * seals, all of them open; blank lines and lines starting with '#' are
 * skipped), at most GUTS_SEAL_KEYS_MAX keys; or, as written before key
 * rings, exactly GUTS_SEAL_KEY_LEN raw bytes. err (errlen bytes, may be
 * NULL) gets one line saying what is wrong and what to do. */

/* Largest key file read: 8 keys with a comment line each fit easily. */
#define GUTS_SEAL_KEYFILE_MAX 4096

/** Read a key file's ring into keys (room for max keys), *n the count.
 * Refuses a file that is not a regular file, that group or others may read,
 * write or execute (like ssh with a private key), over
 * GUTS_SEAL_KEYFILE_MAX bytes, with a line that is not 64 hex digits, with
 * no key, or with more than max. Errors: GUTS_EIO (cannot open or read),
 * GUTS_EINVAL (refused as above). */
int guts_seal_keys_load(const char *path, uint8_t keys[][GUTS_SEAL_KEY_LEN], size_t max,
                        size_t *n, char *err, size_t errlen);
/** Read a key file's first (sealing) key: guts_seal_keys_load's rules. */
int guts_seal_key_load(const char *path, uint8_t key[GUTS_SEAL_KEY_LEN], char *err, size_t errlen);
/** Create a new key file with mode 0600 (never replacing an existing one)
 * holding one new random key as a line of 64 hex digits, synced to disk.
 * Errors: GUTS_EEXIST (the path exists), GUTS_EIO (cannot create or write:
 * nothing is left behind). */
int guts_seal_key_generate(const char *path, char *err, size_t errlen);

#endif
