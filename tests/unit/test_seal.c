/* test_seal.c - cluster-key sealing: what a keyed cluster accepts and what it
 * refuses.
 *
 * Datagrams: round trip, the 1200-byte budget, every single-byte change,
 * every truncation, another key, replays (also past the replay cache's
 * capacity), the timestamp window, and that a sealed announce shows no
 * repository name, object id, fingerprint or node id. Streams: both
 * directions, replayed, reordered, reflected, tampered and transplanted
 * frames, peers with another key or none. Key files: mode, size, no
 * overwrite.
 *
 * Runs without fork so that LeakSanitizer sees every test's allocations.
 */
#include "guts/seal.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guts/wire.h"

#define NOW 1700000000000ull /* ms: some wall-clock time */

static const uint8_t KEY_A[GUTS_SEAL_KEY_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                                 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static guts_seal *seal_with(uint8_t first)
{
    uint8_t key[GUTS_SEAL_KEY_LEN];
    memcpy(key, KEY_A, sizeof(key));
    key[0] = first;
    guts_seal *s = NULL;
    ck_assert_int_eq(guts_seal_new(key, &s), 0);
    return s;
}

static void nonce_n(uint64_t i, uint8_t n[GUTS_SEAL_NONCE_LEN])
{
    memset(n, 0x5a, GUTS_SEAL_NONCE_LEN);
    for (int b = 0; b < 8; b++)
        n[b] = (uint8_t)(i >> (8 * b));
}

static size_t seal_text(guts_seal *s, uint64_t now, const char *text, uint8_t *out)
{
    size_t olen = 0;
    ck_assert_int_eq(guts_seal_dgram(s, now, NULL, (const uint8_t *)text, strlen(text), out,
                                     GUTS_DGRAM_MAX, &olen),
                     0);
    ck_assert_uint_eq(olen, strlen(text) + GUTS_SEAL_DGRAM_OVERHEAD);
    return olen;
}

static int open_reason(guts_seal *s, uint64_t now, const uint8_t *in, size_t len)
{
    uint8_t pt[GUTS_DGRAM_DROP];
    size_t plen = 0;
    int reason = -1;
    int rc = guts_seal_dgram_open(s, now, in, len, pt, sizeof(pt), &plen, &reason);
    ck_assert_int_eq(rc, reason == GUTS_SEAL_R_OK ? 0 : GUTS_EPROTO);
    return reason;
}

/* ---- Datagrams ------------------------------------------------------------ */

START_TEST(test_dgram_round_trip_restores_the_plaintext)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    uint8_t out[GUTS_DGRAM_MAX], pt[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "hello, cluster", out), plen = 0;
    int reason = -1;
    ck_assert_int_eq(guts_seal_dgram_open(b, NOW + 5, out, len, pt, sizeof(pt), &plen, &reason), 0);
    ck_assert_int_eq(reason, GUTS_SEAL_R_OK);
    ck_assert_uint_eq(plen, 14);
    ck_assert_mem_eq(pt, "hello, cluster", 14);
    guts_seal_counters c;
    guts_seal_counters_get(b, &c);
    ck_assert_uint_eq(c.dgrams_opened, 1);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

START_TEST(test_sealed_dgram_at_the_plaintext_cap_is_exactly_1200_bytes)
{
    guts_seal *a = seal_with(1);
    static uint8_t pt[GUTS_SEAL_DGRAM_PLAIN_MAX + 1];
    uint8_t out[GUTS_DGRAM_DROP];
    size_t olen = 0;
    ck_assert_int_eq(GUTS_SEAL_DGRAM_PLAIN_MAX, 1146);
    ck_assert_int_eq(
        guts_seal_dgram(a, NOW, NULL, pt, GUTS_SEAL_DGRAM_PLAIN_MAX, out, sizeof(out), &olen), 0);
    ck_assert_uint_eq(olen, GUTS_DGRAM_MAX);
    ck_assert_int_eq(
        guts_seal_dgram(a, NOW, NULL, pt, GUTS_SEAL_DGRAM_PLAIN_MAX + 1, out, sizeof(out), &olen),
        GUTS_ETOOBIG);
    ck_assert_int_eq(guts_seal_dgram(a, NOW, NULL, pt, 100, out, 100 + 53, &olen), GUTS_ETOOBIG);
    guts_seal_free(a);
}
END_TEST

START_TEST(test_dgram_with_any_byte_changed_is_rejected)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "refs/heads/main moved", out);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            out[i] ^= (uint8_t)(1u << bit);
            /* The receiver's clock is the sender's: only the change matters. */
            int r = open_reason(b, NOW, out, len);
            ck_assert_msg(r != GUTS_SEAL_R_OK, "byte %zu bit %d changed, still opened", i, bit);
            out[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Untouched, it still opens: no rejection above was remembered. */
    ck_assert_int_eq(open_reason(b, NOW, out, len), GUTS_SEAL_R_OK);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

START_TEST(test_dgram_cut_at_any_length_is_rejected)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "a", out);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size: ASan sees over-reads */
        memcpy(cut, out, n);
        ck_assert_int_ne(open_reason(b, NOW, cut, n), GUTS_SEAL_R_OK);
        free(cut);
    }
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

START_TEST(test_dgram_from_another_key_is_counted_as_key_mismatch)
{
    guts_seal *a = seal_with(1), *other = seal_with(2);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "hello", out);
    ck_assert_int_eq(open_reason(other, NOW, out, len), GUTS_SEAL_R_KEY_MISMATCH);
    guts_seal_counters c;
    guts_seal_counters_get(other, &c);
    ck_assert_uint_eq(c.rejected[GUTS_SEAL_R_KEY_MISMATCH], 1);
    ck_assert_uint_eq(c.dgrams_opened, 0);
    /* Same key id by chance (forced here): the AEAD still refuses it. */
    uint8_t id[GUTS_SEAL_KEYID_LEN];
    guts_seal_key_id(other, id);
    memcpy(out + 2, id, GUTS_SEAL_KEYID_LEN);
    ck_assert_int_eq(open_reason(other, NOW, out, len), GUTS_SEAL_R_FORGED);
    guts_seal_free(a);
    guts_seal_free(other);
}
END_TEST

START_TEST(test_plain_envelope_is_counted_as_unsealed)
{
    guts_seal *b = seal_with(1);
    guts_msg m;
    memset(&m, 0, sizeof(m));
    m.type = GUTS_MSG_LEAVE;
    m.u.leave.incarnation = 7;
    uint8_t env[64];
    size_t len = 0;
    ck_assert_int_eq(guts_msg_encode(&m, env, sizeof(env), &len), 0);
    ck_assert_int_eq(open_reason(b, NOW, env, len), GUTS_SEAL_R_UNSEALED);
    ck_assert_int_eq(open_reason(b, NOW, env, 0), GUTS_SEAL_R_UNSEALED);
    guts_seal_free(b);
}
END_TEST

START_TEST(test_sealed_dgram_is_not_a_plain_message)
{
    guts_seal *a = seal_with(1);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "x", out);
    guts_msg m;
    ck_assert_int_eq(guts_msg_decode(out, len, &m), GUTS_EPROTO);
    guts_seal_free(a);
}
END_TEST

START_TEST(test_replayed_dgram_is_rejected)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "announce", out);
    ck_assert_int_eq(open_reason(b, NOW, out, len), GUTS_SEAL_R_OK);
    ck_assert_int_eq(open_reason(b, NOW + 1000, out, len), GUTS_SEAL_R_REPLAY);
    ck_assert_int_eq(open_reason(b, NOW + GUTS_SEAL_WINDOW_MS, out, len), GUTS_SEAL_R_REPLAY);
    ck_assert_int_eq(open_reason(b, NOW + GUTS_SEAL_WINDOW_MS + 1, out, len), GUTS_SEAL_R_STALE);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

/* Three times the cache's capacity, all within one window: the cache
 * forgets, but never so that an old datagram opens again. */
START_TEST(test_replay_is_rejected_even_past_the_cache_capacity)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    enum { N = 3 * GUTS_SEAL_REPLAY_BUCKETS * GUTS_SEAL_REPLAY_WAYS };
    uint8_t *all = malloc((size_t)N * 64);
    size_t olen = 0, opened = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint8_t n[GUTS_SEAL_NONCE_LEN];
        nonce_n(i, n);
        uint64_t t = NOW + i / 4; /* 4 datagrams a ms: 12 s in all */
        ck_assert_int_eq(
            guts_seal_dgram(a, t, n, (const uint8_t *)"ping", 4, all + i * 64, 64, &olen), 0);
        opened += open_reason(b, t, all + i * 64, olen) == GUTS_SEAL_R_OK;
    }
    /* Nearly all genuine datagrams got through despite the overload. */
    ck_assert_uint_ge(opened, (size_t)N * 9 / 10);
    for (uint64_t i = 0; i < N; i++)
        ck_assert_int_eq(open_reason(b, NOW + N / 4, all + i * 64, olen), GUTS_SEAL_R_REPLAY);
    free(all);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

START_TEST(test_dgram_outside_the_window_is_rejected_as_stale)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    static const struct {
        int64_t skew; /* receiver's clock minus sender's */
        int reason;
    } cases[] = {
        {0, GUTS_SEAL_R_OK},
        {GUTS_SEAL_WINDOW_MS, GUTS_SEAL_R_OK},
        {-GUTS_SEAL_WINDOW_MS, GUTS_SEAL_R_OK},
        {GUTS_SEAL_WINDOW_MS + 1, GUTS_SEAL_R_STALE},
        {-GUTS_SEAL_WINDOW_MS - 1, GUTS_SEAL_R_STALE},
        {3600000, GUTS_SEAL_R_STALE},
        {-3600000, GUTS_SEAL_R_STALE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[GUTS_DGRAM_MAX];
        size_t len = seal_text(a, NOW, "x", out);
        ck_assert_msg(open_reason(b, (uint64_t)((int64_t)NOW + cases[i].skew), out, len) ==
                          cases[i].reason,
                      "skew %lld", (long long)cases[i].skew);
    }
    /* A forged timestamp fails authentication even inside the window. */
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW - 60000, "x", out);
    for (int i = 0; i < 8; i++) /* restamp it as fresh */
        out[2 + GUTS_SEAL_KEYID_LEN + i] = (uint8_t)(NOW >> (56 - 8 * i));
    ck_assert_int_eq(open_reason(b, NOW, out, len), GUTS_SEAL_R_FORGED);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

static int contains(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return 1;
    return 0;
}

START_TEST(test_sealed_announce_shows_no_repo_name_id_or_fingerprint)
{
    guts_seal *a = seal_with(1);
    guts_announce_repo r;
    memset(&r, 0, sizeof(r));
    r.key = "alice/secret-project";
    r.objects = 123456;
    r.fp.lo = 0x0102030405060708ull;
    r.fp.hi = 0x1112131415161718ull;
    r.refs_digest = 0xfedcba9876543210ull;
    guts_msg m;
    memset(&m, 0, sizeof(m));
    m.type = GUTS_MSG_ANNOUNCE;
    memset(m.sender.b, 0xab, sizeof(m.sender.b));
    m.sender.b[3] = 0x42;
    m.u.announce.incarnation = 3;
    m.u.announce.port = 7171;
    m.u.announce.pages = 1;
    m.u.announce.nrepos = 1;
    m.u.announce.repos = &r;
    uint8_t env[GUTS_SEAL_DGRAM_PLAIN_MAX], out[GUTS_DGRAM_MAX];
    size_t len = 0, olen = 0;
    ck_assert_int_eq(guts_msg_encode(&m, env, sizeof(env), &len), 0);
    ck_assert(contains(env, len, "secret-project", 14)); /* the search works */
    ck_assert_int_eq(guts_seal_dgram(a, NOW, NULL, env, len, out, sizeof(out), &olen), 0);
    static const char *words[] = {"alice", "secret", "project", "GUTS"};
    for (size_t i = 0; i < 4; i++)
        ck_assert_msg(!contains(out, olen, words[i], strlen(words[i])), "%s in clear", words[i]);
    const uint8_t fp_lo[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t digest[4] = {0xfe, 0xdc, 0xba, 0x98};
    ck_assert(!contains(out, olen, fp_lo, 4) && !contains(out, olen, fp_lo + 4, 4));
    ck_assert(!contains(out, olen, digest, 4));
    ck_assert(!contains(out, olen, m.sender.b, 6));
    guts_seal_free(a);
}
END_TEST

START_TEST(test_caller_nonces_make_sealing_deterministic)
{
    guts_seal *a = seal_with(1), *b = seal_with(1);
    uint8_t n[GUTS_SEAL_NONCE_LEN], o1[GUTS_DGRAM_MAX], o2[GUTS_DGRAM_MAX];
    size_t l1 = 0, l2 = 0;
    nonce_n(99, n);
    ck_assert_int_eq(guts_seal_dgram(a, NOW, n, (const uint8_t *)"abc", 3, o1, sizeof(o1), &l1), 0);
    ck_assert_int_eq(guts_seal_dgram(b, NOW, n, (const uint8_t *)"abc", 3, o2, sizeof(o2), &l2), 0);
    ck_assert_uint_eq(l1, l2);
    ck_assert_mem_eq(o1, o2, l1);
    /* Random nonces: two seals of the same text differ. */
    l1 = seal_text(a, NOW, "abc", o1);
    l2 = seal_text(a, NOW, "abc", o2);
    ck_assert(memcmp(o1, o2, l1) != 0);
    guts_seal_free(a);
    guts_seal_free(b);
}
END_TEST

/* ---- Streams -------------------------------------------------------------- */

typedef struct pair {
    guts_seal *sa, *sb;
    guts_seal_stream a, b; /* a connected to b */
} pair;

static void pair_open(pair *p, uint8_t key_a, uint8_t key_b)
{
    uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
    p->sa = seal_with(key_a);
    p->sb = seal_with(key_b);
    ck_assert_int_eq(guts_seal_stream_init(&p->a, p->sa, 1, NULL, ha), 0);
    ck_assert_int_eq(guts_seal_stream_init(&p->b, p->sb, 0, NULL, hb), 0);
    uint32_t len = 0;
    ck_assert_int_eq(guts_wire_frame_len(ha, GUTS_FRAME_MAX_DEFAULT, &len), 0);
    ck_assert_uint_eq(len, GUTS_SEAL_HELLO_LEN - 4);
}

static void pair_hello(pair *p)
{
    uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
    /* Re-init to get the hellos (init is where they are written). */
    ck_assert_int_eq(guts_seal_stream_init(&p->a, p->sa, 1, NULL, ha), 0);
    ck_assert_int_eq(guts_seal_stream_init(&p->b, p->sb, 0, NULL, hb), 0);
    int r = -1;
    ck_assert_int_eq(guts_seal_stream_on_hello(&p->a, hb + 4, sizeof(hb) - 4, &r), 0);
    ck_assert_int_eq(guts_seal_stream_on_hello(&p->b, ha + 4, sizeof(ha) - 4, &r), 0);
}

static void pair_close(pair *p)
{
    guts_seal_stream_clear(&p->a);
    guts_seal_stream_clear(&p->b);
    guts_seal_free(p->sa);
    guts_seal_free(p->sb);
}

/* A frame as the core makes it: header and a text envelope. */
static size_t mk_frame(const char *text, uint8_t *f)
{
    size_t n = strlen(text);
    guts_wire_frame_hdr((uint32_t)n, f);
    memcpy(f + 4, text, n);
    return n + 4;
}

static size_t seal_frame(guts_seal_stream *st, const char *text, uint8_t *out)
{
    uint8_t f[256];
    size_t flen = mk_frame(text, f), olen = 0;
    ck_assert_int_eq(guts_seal_stream_seal(st, f, flen, out, 256 + 16, &olen), 0);
    ck_assert_uint_eq(olen, flen + GUTS_SEAL_FRAME_OVERHEAD);
    uint32_t body = 0;
    ck_assert_int_eq(guts_wire_frame_len(out, GUTS_FRAME_MAX_DEFAULT + 16, &body), 0);
    ck_assert_uint_eq(body, olen - 4);
    return olen;
}

/* Open a copy (opening is in place); returns the reason. */
static int open_frame(guts_seal_stream *st, const uint8_t *sealed, size_t len, char *text)
{
    uint8_t buf[300];
    memcpy(buf, sealed, len);
    size_t plen = 0;
    int r = -1;
    int rc = guts_seal_stream_open(st, buf, buf + 4, len - 4, &plen, &r);
    ck_assert_int_eq(rc, r == GUTS_SEAL_R_OK ? 0 : GUTS_EPROTO);
    if (rc == 0 && text) {
        memcpy(text, buf + 4, plen);
        text[plen] = 0;
    }
    return r;
}

START_TEST(test_stream_frames_round_trip_both_ways)
{
    pair p;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    uint8_t s[300];
    char text[300];
    for (int i = 0; i < 5; i++) {
        size_t n = seal_frame(&p.a, "request", s);
        ck_assert_int_eq(open_frame(&p.b, s, n, text), GUTS_SEAL_R_OK);
        ck_assert_str_eq(text, "request");
        n = seal_frame(&p.b, "answer", s);
        ck_assert_int_eq(open_frame(&p.a, s, n, text), GUTS_SEAL_R_OK);
        ck_assert_str_eq(text, "answer");
    }
    guts_seal_counters c;
    guts_seal_counters_get(p.sb, &c);
    ck_assert_uint_eq(c.frames_opened, 5);
    ck_assert_uint_eq(c.streams_ready, 1);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_reordered_frames_are_rejected)
{
    pair p;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    uint8_t f0[300], f1[300];
    size_t n0 = seal_frame(&p.a, "first", f0), n1 = seal_frame(&p.a, "second", f1);
    ck_assert_int_eq(open_frame(&p.b, f1, n1, NULL), GUTS_SEAL_R_FORGED);
    /* The stream is failed now: even the right frame is refused. */
    ck_assert_int_eq(open_frame(&p.b, f0, n0, NULL), GUTS_SEAL_R_STATE);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_replayed_frame_is_rejected)
{
    pair p;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    uint8_t f0[300];
    size_t n0 = seal_frame(&p.a, "want", f0);
    ck_assert_int_eq(open_frame(&p.b, f0, n0, NULL), GUTS_SEAL_R_OK);
    ck_assert_int_eq(open_frame(&p.b, f0, n0, NULL), GUTS_SEAL_R_FORGED);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_frame_reflected_back_is_rejected)
{
    pair p;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    uint8_t f0[300];
    size_t n0 = seal_frame(&p.a, "hello", f0);
    ck_assert_int_eq(open_frame(&p.a, f0, n0, NULL), GUTS_SEAL_R_FORGED);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_frame_from_another_connection_is_rejected)
{
    pair p, q;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    pair_open(&q, 1, 1);
    pair_hello(&q);
    uint8_t f0[300];
    size_t n0 = seal_frame(&p.a, "objects", f0);
    ck_assert_int_eq(open_frame(&q.b, f0, n0, NULL), GUTS_SEAL_R_FORGED);
    pair_close(&p);
    pair_close(&q);
}
END_TEST

START_TEST(test_stream_frame_with_any_byte_changed_is_rejected)
{
    pair p;
    pair_open(&p, 1, 1);
    uint8_t f0[300];
    for (size_t i = 0;; i++) {
        pair_hello(&p); /* fresh keys: a failed stream refuses everything */
        size_t n0 = seal_frame(&p.a, "refs/heads/main", f0);
        if (i >= n0) break;
        f0[i] ^= 0x10;
        ck_assert_int_ne(open_frame(&p.b, f0, n0, NULL), GUTS_SEAL_R_OK);
    }
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_peer_with_another_key_fails_at_the_hello)
{
    pair p;
    pair_open(&p, 1, 2);
    uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
    ck_assert_int_eq(guts_seal_stream_init(&p.a, p.sa, 1, NULL, ha), 0);
    ck_assert_int_eq(guts_seal_stream_init(&p.b, p.sb, 0, NULL, hb), 0);
    int r = -1;
    ck_assert_int_eq(guts_seal_stream_on_hello(&p.b, ha + 4, sizeof(ha) - 4, &r), GUTS_EPROTO);
    ck_assert_int_eq(r, GUTS_SEAL_R_KEY_MISMATCH);
    ck_assert_int_eq(p.b.state, GUTS_SEAL_ST_FAILED);
    guts_seal_counters c;
    guts_seal_counters_get(p.sb, &c);
    ck_assert_uint_eq(c.rejected[GUTS_SEAL_R_KEY_MISMATCH], 1);
    /* Same key id by chance (forced): the hellos pass, the first frame fails. */
    uint8_t ida[GUTS_SEAL_KEYID_LEN], idb[GUTS_SEAL_KEYID_LEN];
    guts_seal_key_id(p.sa, ida);
    guts_seal_key_id(p.sb, idb);
    ck_assert_int_eq(guts_seal_stream_init(&p.a, p.sa, 1, NULL, ha), 0);
    ck_assert_int_eq(guts_seal_stream_init(&p.b, p.sb, 0, NULL, hb), 0);
    memcpy(ha + 6, idb, sizeof(idb));
    memcpy(hb + 6, ida, sizeof(ida));
    ck_assert_int_eq(guts_seal_stream_on_hello(&p.b, ha + 4, sizeof(ha) - 4, &r), 0);
    ck_assert_int_eq(guts_seal_stream_on_hello(&p.a, hb + 4, sizeof(hb) - 4, &r), 0);
    uint8_t f0[300];
    size_t n0 = seal_frame(&p.a, "hello", f0);
    ck_assert_int_eq(open_frame(&p.b, f0, n0, NULL), GUTS_SEAL_R_FORGED);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_plain_peer_fails_at_the_hello)
{
    guts_seal *s = seal_with(1);
    guts_seal_stream st;
    uint8_t hello[GUTS_SEAL_HELLO_LEN], f[64];
    guts_msg m;
    memset(&m, 0, sizeof(m));
    m.type = GUTS_MSG_HELLO;
    m.u.hello.incarnation = 1;
    m.u.hello.port = 7000;
    size_t len = 0;
    ck_assert_int_eq(guts_msg_encode_frame(&m, f, sizeof(f), &len), 0);
    ck_assert_int_eq(guts_seal_stream_init(&st, s, 0, NULL, hello), 0);
    int r = -1;
    ck_assert_int_eq(guts_seal_stream_on_hello(&st, f + 4, len - 4, &r), GUTS_EPROTO);
    ck_assert_int_eq(r, GUTS_SEAL_R_UNSEALED);
    /* And a keyless peer's decoder refuses our hello at its first byte. */
    ck_assert_int_eq(guts_msg_decode(hello + 4, GUTS_SEAL_HELLO_BODY, &m), GUTS_EPROTO);
    guts_seal_stream_clear(&st);
    guts_seal_free(s);
}
END_TEST

START_TEST(test_stream_bad_hellos_are_refused)
{
    guts_seal *s = seal_with(1);
    guts_seal_stream st;
    uint8_t mine[GUTS_SEAL_HELLO_LEN], peer[GUTS_SEAL_HELLO_LEN];
    guts_seal_stream st2;
    ck_assert_int_eq(guts_seal_stream_init(&st2, s, 1, NULL, peer), 0);
    static const struct {
        size_t off, len; /* of the peer's hello body */
        int flip;        /* byte to change, or -1 */
        int reason;
    } cases[] = {
        {4, 0, -1, GUTS_SEAL_R_UNSEALED},
        {4, 1, -1, GUTS_SEAL_R_SHORT},
        {4, GUTS_SEAL_HELLO_BODY - 1, -1, GUTS_SEAL_R_SHORT},
        {4, GUTS_SEAL_HELLO_BODY, 5, GUTS_SEAL_R_VERSION},
        {4, GUTS_SEAL_HELLO_BODY, 4, GUTS_SEAL_R_UNSEALED},
        {4, GUTS_SEAL_HELLO_BODY, 7, GUTS_SEAL_R_KEY_MISMATCH},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[GUTS_SEAL_HELLO_LEN];
        memcpy(h, peer, sizeof(h));
        if (cases[i].flip >= 0) h[cases[i].flip] ^= 0x01;
        ck_assert_int_eq(guts_seal_stream_init(&st, s, 0, NULL, mine), 0);
        int r = -1;
        ck_assert_int_eq(guts_seal_stream_on_hello(&st, h + cases[i].off, cases[i].len, &r),
                         GUTS_EPROTO);
        ck_assert_msg(r == cases[i].reason, "case %zu: %s", i, guts_seal_reason(r));
    }
    /* Our own hello reflected back. */
    ck_assert_int_eq(guts_seal_stream_init(&st, s, 0, NULL, mine), 0);
    int r = -1;
    ck_assert_int_eq(guts_seal_stream_on_hello(&st, mine + 4, GUTS_SEAL_HELLO_BODY, &r),
                     GUTS_EPROTO);
    ck_assert_int_eq(r, GUTS_SEAL_R_REPLAY);
    /* A second hello. */
    ck_assert_int_eq(guts_seal_stream_init(&st, s, 0, NULL, mine), 0);
    ck_assert_int_eq(guts_seal_stream_on_hello(&st, peer + 4, GUTS_SEAL_HELLO_BODY, &r), 0);
    ck_assert_int_eq(guts_seal_stream_on_hello(&st, peer + 4, GUTS_SEAL_HELLO_BODY, &r),
                     GUTS_EPROTO);
    ck_assert_int_eq(r, GUTS_SEAL_R_STATE);
    guts_seal_stream_clear(&st);
    guts_seal_stream_clear(&st2);
    guts_seal_free(s);
}
END_TEST

START_TEST(test_stream_frame_before_the_hello_is_refused)
{
    pair p;
    pair_open(&p, 1, 1);
    uint8_t f[64], out[128];
    size_t flen = mk_frame("early", f), olen = 0;
    ck_assert_int_eq(guts_seal_stream_seal(&p.a, f, flen, out, sizeof(out), &olen), GUTS_EINVAL);
    memcpy(out, f, flen);
    memset(out + flen, 0, 16);
    guts_wire_frame_hdr((uint32_t)(flen - 4 + 16), out);
    ck_assert_int_eq(open_frame(&p.b, out, flen + 16, NULL), GUTS_SEAL_R_STATE);
    pair_close(&p);
}
END_TEST

START_TEST(test_stream_seal_refuses_a_frame_whose_header_lies)
{
    pair p;
    pair_open(&p, 1, 1);
    pair_hello(&p);
    uint8_t f[64], out[128];
    size_t flen = mk_frame("abc", f), olen = 0;
    f[3]++;
    ck_assert_int_eq(guts_seal_stream_seal(&p.a, f, flen, out, sizeof(out), &olen), GUTS_EINVAL);
    f[3]--;
    ck_assert_int_eq(guts_seal_stream_seal(&p.a, f, flen, out, flen + 15, &olen), GUTS_ETOOBIG);
    ck_assert_int_eq(guts_seal_stream_seal(&p.a, f, 4, out, sizeof(out), &olen), GUTS_EINVAL);
    pair_close(&p);
}
END_TEST

/* ---- Key files ------------------------------------------------------------ */

static char tmpdir[64];

static void tmp_setup(void)
{
    strcpy(tmpdir, "/tmp/test_seal.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void path_in(const char *name, char *out)
{
    snprintf(out, 128, "%s/%s", tmpdir, name);
}

START_TEST(test_key_generate_writes_one_hex_line_with_mode_0600)
{
    tmp_setup();
    char path[128], err[256];
    path_in("key", path);
    mode_t old = umask(0);
    ck_assert_int_eq(guts_seal_key_generate(path, err, sizeof(err)), 0);
    umask(old);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 07777, 0600);
    ck_assert_int_eq(sb.st_size, 2 * GUTS_SEAL_KEY_LEN + 1);
    uint8_t k1[GUTS_SEAL_KEY_LEN], k2[GUTS_SEAL_KEY_LEN];
    ck_assert_int_eq(guts_seal_key_load(path, k1, err, sizeof(err)), 0);
    char path2[128];
    path_in("key2", path2);
    ck_assert_int_eq(guts_seal_key_generate(path2, err, sizeof(err)), 0);
    ck_assert_int_eq(guts_seal_key_load(path2, k2, err, sizeof(err)), 0);
    ck_assert(memcmp(k1, k2, sizeof(k1)) != 0);
    tmp_teardown();
}
END_TEST

START_TEST(test_key_generate_never_replaces_a_file)
{
    tmp_setup();
    char path[128], err[256];
    path_in("key", path);
    ck_assert_int_eq(guts_seal_key_generate(path, err, sizeof(err)), 0);
    uint8_t k1[GUTS_SEAL_KEY_LEN], k2[GUTS_SEAL_KEY_LEN];
    ck_assert_int_eq(guts_seal_key_load(path, k1, err, sizeof(err)), 0);
    ck_assert_int_eq(guts_seal_key_generate(path, err, sizeof(err)), GUTS_EEXIST);
    ck_assert_int_eq(guts_seal_key_load(path, k2, err, sizeof(err)), 0);
    ck_assert_mem_eq(k1, k2, sizeof(k1));
    char link[128];
    path_in("link", link);
    ck_assert_int_eq(symlink(path, link), 0);
    ck_assert_int_eq(guts_seal_key_generate(link, err, sizeof(err)), GUTS_EEXIST);
    path_in("nodir/key", path);
    ck_assert_int_eq(guts_seal_key_generate(path, err, sizeof(err)), GUTS_EIO);
    tmp_teardown();
}
END_TEST

START_TEST(test_key_load_refuses_bad_files)
{
    tmp_setup();
    static const struct {
        mode_t mode;
        size_t size;
        int rc;
        const char *says;
    } cases[] = {
        {0600, 32, 0, ""},
        {0400, 32, 0, ""},
        {0640, 32, GUTS_EINVAL, "chmod 600"},
        {0604, 32, GUTS_EINVAL, "chmod 600"},
        {0610, 32, GUTS_EINVAL, "chmod 600"},
        {0600, 31, GUTS_EINVAL, "neither 32 raw bytes"},
        {0600, 33, GUTS_EINVAL, "neither 32 raw bytes"},
        {0600, 0, GUTS_EINVAL, "neither 32 raw bytes"},
        {0600, 64, GUTS_EINVAL, "neither 32 raw bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128], err[256] = "";
        snprintf(path, sizeof(path), "%s/k%zu", tmpdir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        ck_assert_int_ge(fd, 0);
        uint8_t bytes[64] = {7};
        ck_assert_int_eq(write(fd, bytes, cases[i].size), (ssize_t)cases[i].size);
        ck_assert_int_eq(fchmod(fd, cases[i].mode), 0);
        close(fd);
        uint8_t key[GUTS_SEAL_KEY_LEN];
        ck_assert_int_eq(guts_seal_key_load(path, key, err, sizeof(err)), cases[i].rc);
        ck_assert_msg(strstr(err, cases[i].says), "case %zu: %s", i, err);
    }
    char err[256] = "", path[128];
    uint8_t key[GUTS_SEAL_KEY_LEN];
    path_in("missing", path);
    ck_assert_int_eq(guts_seal_key_load(path, key, err, sizeof(err)), GUTS_EIO);
    ck_assert_ptr_nonnull(strstr(err, "missing"));
    ck_assert_int_eq(guts_seal_key_load(tmpdir, key, err, sizeof(err)), GUTS_EINVAL);
    tmp_teardown();
}
END_TEST

/* write_file: mode 0600 text in tmpdir/name. */
static void write_file(const char *name, const char *text, char *path)
{
    path_in(name, path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

START_TEST(test_key_file_ring_and_the_raw_form_load)
{
    tmp_setup();
    char path[128], err[256] = "";
    uint8_t ring[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN];
    size_t n = 0;
    const char *k1 = "0101010101010101010101010101010101010101010101010101010101010101";
    const char *k2 = "ABCDEFabcdef0123456789012345678901234567890123456789012345678901";
    char text[1024];
    snprintf(text, sizeof text, "# new key, sealing\n%s\n\n  \n%s \r\n", k2, k1);
    write_file("ring", text, path);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(ring[0][0], 0xab);
    ck_assert_uint_eq(ring[0][5], 0xef);
    ck_assert_uint_eq(ring[1][31], 0x01);
    uint8_t first[GUTS_SEAL_KEY_LEN];
    ck_assert_int_eq(guts_seal_key_load(path, first, err, sizeof err), 0);
    ck_assert_mem_eq(first, ring[0], GUTS_SEAL_KEY_LEN);
    /* One key more than the ring holds, a short line, a bad digit, nothing. */
    text[0] = 0;
    for (int i = 0; i <= GUTS_SEAL_KEYS_MAX; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s\n", k1);
    write_file("nine", text, path);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err),
                     GUTS_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "more than 8 keys"));
    snprintf(text, sizeof text, "%s\n%.63s\n", k1, k1);
    write_file("short", text, path);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err),
                     GUTS_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "line 2 is not a key"));
    snprintf(text, sizeof text, "%.63sg\n", k1);
    write_file("digit", text, path);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err),
                     GUTS_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "line 1 is not a key"));
    write_file("empty", "# nothing yet\n\n", path);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err),
                     GUTS_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "holds no key"));
    /* 32 raw bytes: a key file from before rings, one key. */
    path_in("raw", path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, KEY_A, sizeof KEY_A), (ssize_t)sizeof KEY_A);
    close(fd);
    ck_assert_int_eq(guts_seal_keys_load(path, ring, GUTS_SEAL_KEYS_MAX, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_mem_eq(ring[0], KEY_A, GUTS_SEAL_KEY_LEN);
    tmp_teardown();
}
END_TEST

/* A ring of keys made from KEY_A with these first bytes. */
static guts_seal *ring_with(const uint8_t *firsts, size_t n)
{
    uint8_t ring[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN];
    for (size_t i = 0; i < n; i++) {
        memcpy(ring[i], KEY_A, GUTS_SEAL_KEY_LEN);
        ring[i][0] = firsts[i];
    }
    guts_seal *s = NULL;
    ck_assert_int_eq(guts_seal_new_ring(ring, n, &s), 0);
    return s;
}

START_TEST(test_ring_opens_datagrams_of_every_key_and_seals_with_the_first)
{
    guts_seal *old = seal_with(1), *neu = seal_with(2), *both = ring_with((uint8_t[]){2, 1}, 2);
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(old, NOW, "from the old key", out);
    ck_assert_int_eq(open_reason(both, NOW, out, len), GUTS_SEAL_R_OK);
    len = seal_text(neu, NOW, "from the new key", out);
    ck_assert_int_eq(open_reason(both, NOW, out, len), GUTS_SEAL_R_OK);
    len = seal_text(both, NOW, "from the ring", out);
    ck_assert_int_eq(open_reason(neu, NOW, out, len), GUTS_SEAL_R_OK);
    ck_assert_int_eq(open_reason(old, NOW, out, len), GUTS_SEAL_R_KEY_MISMATCH);
    uint8_t ids[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEYID_LEN], id[GUTS_SEAL_KEYID_LEN];
    ck_assert_uint_eq(guts_seal_key_ids(both, ids, GUTS_SEAL_KEYS_MAX), 2);
    guts_seal_key_id(neu, id);
    ck_assert_mem_eq(ids[0], id, GUTS_SEAL_KEYID_LEN);
    guts_seal_key_id(old, id);
    ck_assert_mem_eq(ids[1], id, GUTS_SEAL_KEYID_LEN);
    guts_seal_free(old);
    guts_seal_free(neu);
    guts_seal_free(both);
}
END_TEST

/* Connect initiator a to responder b as the daemon does: a's hello first,
 * b's hello (naming the key a chose) only after b took a's. 0 when both
 * sides are ready, else the reason the one that failed gave. */
static int connect_as_daemon(guts_seal *sa, guts_seal *sb, guts_seal_stream *a,
                             guts_seal_stream *b)
{
    uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
    int r = -1;
    ck_assert_int_eq(guts_seal_stream_init(a, sa, 1, NULL, ha), 0);
    ck_assert_int_eq(guts_seal_stream_init(b, sb, 0, NULL, hb), 0);
    if (guts_seal_stream_on_hello(b, ha + 4, sizeof ha - 4, &r) != 0) return r;
    ck_assert_int_eq(guts_seal_stream_hello(b, hb), 0);
    if (guts_seal_stream_on_hello(a, hb + 4, sizeof hb - 4, &r) != 0) return r;
    return 0;
}

/* One frame a -> b and one b -> a go through. */
static void frames_pass(guts_seal_stream *a, guts_seal_stream *b)
{
    uint8_t f[5 + 3] = {0, 0, 0, 3, 'a', 'b', 'c'}, out[64];
    size_t olen, plen;
    int r;
    for (int dir = 0; dir < 2; dir++) {
        guts_seal_stream *tx = dir ? b : a, *rx = dir ? a : b;
        ck_assert_int_eq(guts_seal_stream_seal(tx, f, 7, out, sizeof out, &olen), 0);
        ck_assert_int_eq(guts_seal_stream_open(rx, out, out + 4, olen - 4, &plen, &r), 0);
        ck_assert_uint_eq(plen, 3);
        ck_assert_mem_eq(out + 4, "abc", 3);
    }
}

START_TEST(test_streams_connect_across_a_rotation_on_the_initiators_key)
{
    /* Step 1: b added the new key second; step 2: a made it first; step 3:
     * c dropped the old one. Every pair that shares a key connects. */
    guts_seal *old = seal_with(1), *add = ring_with((uint8_t[]){1, 2}, 2),
              *first = ring_with((uint8_t[]){2, 1}, 2), *neu = seal_with(2);
    guts_seal *pairs[][2] = {{old, add}, {add, old}, {add, first}, {first, add},
                             {first, neu}, {neu, first}, {old, first}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        guts_seal_stream a, b;
        ck_assert_msg(connect_as_daemon(pairs[i][0], pairs[i][1], &a, &b) == 0, "pair %zu", i);
        frames_pass(&a, &b);
        guts_seal_stream_clear(&a);
        guts_seal_stream_clear(&b);
    }
    /* Nodes that share no key fail at the hello, named as a key mismatch. */
    guts_seal_stream a, b;
    ck_assert_int_eq(connect_as_daemon(old, neu, &a, &b), GUTS_SEAL_R_KEY_MISMATCH);
    ck_assert_int_eq(connect_as_daemon(neu, old, &a, &b), GUTS_SEAL_R_KEY_MISMATCH);
    /* Nor does a node that made the new key first before every node had
     * it (step 2 before step 1 was done) reach one that lacks it. */
    ck_assert_int_eq(connect_as_daemon(first, old, &a, &b), GUTS_SEAL_R_KEY_MISMATCH);
    guts_seal_free(old);
    guts_seal_free(add);
    guts_seal_free(first);
    guts_seal_free(neu);
}
END_TEST

START_TEST(test_rekey_keeps_open_streams_and_changes_what_opens)
{
    guts_seal *a = seal_with(1), *b = seal_with(1), *neu = seal_with(2);
    guts_seal_stream sa, sb;
    ck_assert_int_eq(connect_as_daemon(a, b, &sa, &sb), 0);
    uint8_t ring[1][GUTS_SEAL_KEY_LEN];
    memcpy(ring[0], KEY_A, GUTS_SEAL_KEY_LEN);
    ring[0][0] = 2;
    ck_assert_int_eq(guts_seal_rekey(b, ring, 1), 0);
    frames_pass(&sa, &sb); /* open before the rekey: still works */
    uint8_t out[GUTS_DGRAM_MAX];
    size_t len = seal_text(a, NOW, "old key", out);
    ck_assert_int_eq(open_reason(b, NOW, out, len), GUTS_SEAL_R_KEY_MISMATCH);
    len = seal_text(neu, NOW, "new key", out);
    ck_assert_int_eq(open_reason(b, NOW, out, len), GUTS_SEAL_R_OK);
    ck_assert_int_eq(guts_seal_rekey(b, ring, 0), GUTS_EINVAL);
    ck_assert_int_eq(guts_seal_rekey(b, ring, GUTS_SEAL_KEYS_MAX + 1), GUTS_EINVAL);
    guts_seal_stream_clear(&sa);
    guts_seal_stream_clear(&sb);
    guts_seal_free(a);
    guts_seal_free(b);
    guts_seal_free(neu);
}
END_TEST

/* ---- Cores over sealed transport ------------------------------------------
 * Real cores on memory stores, their datagrams and frames passed through the
 * seal exactly as a keyed daemon would (hello first, the core told of a
 * stream only once the handshake passed): shows the whole path works
 * (three nodes in one key converge; each datagram <= 1200 bytes), that
 * a node with another key or none never stores anything from the cluster,
 * and that nothing on the wire shows a repository name. Delivery is
 * synchronous through a FIFO, so the cores are never re-entered. */

#include "guts/core.h"
#include "test_run.h"

#define XN 3        /* nodes */
#define XSTREAMS 16 /* connection ends per node */
#define XQ 4096     /* deliveries in flight */
#define XKEY "alice/secret-repo"

typedef struct xend {
    int used, keyed_ok;
    uint32_t id; /* the stream id the owner's core knows */
    int peer, peer_end;
    guts_seal_stream st;
} xend;

typedef struct xnode {
    guts_memstore *mem;
    guts_core_store iface;
    guts_core *core;
    guts_seal *seal; /* NULL: runs open */
    uint64_t timer;
    xend ends[XSTREAMS];
    uint32_t next_in;
} xnode;

typedef struct xmsg {
    int kind; /* 0 datagram, 1 frame, 2 close */
    int to, from, end;
    uint8_t *data;
    size_t len;
} xmsg;

static xnode xn[XN];
static xmsg xq[XQ];
static size_t xq_head, xq_tail;
static uint64_t xnow;
static size_t x_wire_max, x_plain_over, x_leaks;

static void x_push(int kind, int to, int from, int end, const uint8_t *d, size_t len)
{
    ck_assert_uint_lt(xq_tail - xq_head, XQ);
    xmsg *m = &xq[xq_tail++ % XQ];
    m->kind = kind;
    m->to = to;
    m->from = from;
    m->end = end;
    m->data = len ? malloc(len) : NULL;
    if (len) memcpy(m->data, d, len);
    m->len = len;
    /* What a capture on the LAN would show. */
    if (kind != 2 && len && contains(d, len, "secret-repo", 11) && xn[from].seal) x_leaks++;
}

static int x_end_new(xnode *n)
{
    for (int i = 0; i < XSTREAMS; i++)
        if (!n->ends[i].used) {
            memset(&n->ends[i], 0, sizeof(n->ends[i]));
            n->ends[i].used = 1;
            return i;
        }
    ck_abort_msg("out of connection ends");
    return -1;
}

static int x_end_find(xnode *n, uint32_t id)
{
    for (int i = 0; i < XSTREAMS; i++)
        if (n->ends[i].used && n->ends[i].id == id) return i;
    return -1;
}

/* A connect from node i (its core's stream id) to node j: both ends say
 * hello; only if both hellos pass do the cores hear of the stream. */
static void x_connect(int i, uint32_t id, int j)
{
    int a = x_end_new(&xn[i]), b = x_end_new(&xn[j]);
    xend *ea = &xn[i].ends[a], *eb = &xn[j].ends[b];
    ea->id = id;
    eb->id = GUTS_CORE_STREAM_DRIVER | ++xn[j].next_in;
    ea->peer = j, ea->peer_end = b;
    eb->peer = i, eb->peer_end = a;
    int ok = 1;
    if (xn[i].seal && xn[j].seal) {
        uint8_t ha[GUTS_SEAL_HELLO_LEN], hb[GUTS_SEAL_HELLO_LEN];
        int r;
        guts_seal_stream_init(&ea->st, xn[i].seal, 1, NULL, ha);
        guts_seal_stream_init(&eb->st, xn[j].seal, 0, NULL, hb);
        ok = guts_seal_stream_on_hello(&eb->st, ha + 4, GUTS_SEAL_HELLO_BODY, &r) == 0 &&
             guts_seal_stream_on_hello(&ea->st, hb + 4, GUTS_SEAL_HELLO_BODY, &r) == 0;
    } else if (xn[i].seal || xn[j].seal) {
        ok = 0; /* a keyed end refuses a plain first frame (tested above) */
    }
    if (!ok) {
        ea->used = eb->used = 0;
        guts_core_on_stream_closed(xn[i].core, xnow, id);
        return;
    }
    ea->keyed_ok = eb->keyed_ok = xn[i].seal != NULL;
    guts_core_on_stream_open(xn[j].core, xnow, eb->id, &(guts_addr){.len = 1, .b = {(uint8_t)i}},
                             0);
    guts_core_on_stream_open(xn[i].core, xnow, id, &(guts_addr){.len = 1, .b = {(uint8_t)j}}, 1);
}

static void x_drain(int i)
{
    guts_core_action a;
    xnode *n = &xn[i];
    while (guts_core_next_action(n->core, &a)) {
        if (a.kind == GUTS_ACT_SEND_DGRAM) {
            uint8_t out[GUTS_DGRAM_DROP];
            size_t olen = a.len;
            const uint8_t *wire = a.data;
            if (n->seal) {
                if (a.len > GUTS_SEAL_DGRAM_PLAIN_MAX) { /* the core must size for the seal */
                    x_plain_over++;
                    continue;
                }
                ck_assert_int_eq(guts_seal_dgram(n->seal, NOW + xnow, NULL, a.data, a.len, out,
                                                 sizeof(out), &olen),
                                 0);
                wire = out;
            }
            if (olen > x_wire_max) x_wire_max = olen;
            for (int j = 0; j < XN; j++)
                if (j != i) x_push(0, j, i, 0, wire, olen);
        } else if (a.kind == GUTS_ACT_OPEN_STREAM) {
            x_push(3, a.addr.b[0], i, (int)a.stream, NULL, 0);
        } else if (a.kind == GUTS_ACT_SEND_FRAME) {
            int e = x_end_find(n, a.stream);
            if (e < 0) continue;
            xend *end = &n->ends[e];
            if (end->keyed_ok) {
                uint8_t *out = malloc(a.len + GUTS_SEAL_FRAME_OVERHEAD);
                size_t olen = 0;
                ck_assert_int_eq(guts_seal_stream_seal(&end->st, a.data, a.len, out,
                                                       a.len + GUTS_SEAL_FRAME_OVERHEAD, &olen),
                                 0);
                x_push(1, end->peer, i, end->peer_end, out, olen);
                free(out);
            } else {
                x_push(1, end->peer, i, end->peer_end, a.data, a.len);
            }
        } else if (a.kind == GUTS_ACT_CLOSE_STREAM) {
            int e = x_end_find(n, a.stream);
            if (e < 0) continue;
            n->ends[e].used = 0;
            x_push(2, n->ends[e].peer, i, n->ends[e].peer_end, NULL, 0);
        } else if (a.kind == GUTS_ACT_SET_TIMER) {
            n->timer = a.at;
        }
    }
}

static void x_deliver(xmsg *m)
{
    xnode *n = &xn[m->to];
    if (m->kind == 0) {
        if (n->seal) {
            uint8_t pt[GUTS_DGRAM_DROP];
            size_t plen = 0;
            if (guts_seal_dgram_open(n->seal, NOW + xnow, m->data, m->len, pt, sizeof(pt), &plen,
                                     NULL) == 0)
                guts_core_on_datagram(n->core, xnow,
                                      &(guts_addr){.len = 1, .b = {(uint8_t)m->from}}, GUTS_VIA_GROUP,
                                      pt, plen);
        } else {
            guts_core_on_datagram(n->core, xnow, &(guts_addr){.len = 1, .b = {(uint8_t)m->from}},
                                  GUTS_VIA_GROUP, m->data, m->len);
        }
    } else if (m->kind == 3) {
        x_connect(m->from, (uint32_t)m->end, m->to);
    } else {
        xend *end = &n->ends[m->end];
        if (!end->used) return;
        if (m->kind == 2) {
            end->used = 0;
            guts_core_on_stream_closed(n->core, xnow, end->id);
            return;
        }
        size_t plen = m->len - 4;
        if (end->keyed_ok &&
            guts_seal_stream_open(&end->st, m->data, m->data + 4, m->len - 4, &plen, NULL) != 0) {
            end->used = 0;
            guts_core_on_stream_closed(n->core, xnow, end->id);
            return;
        }
        guts_core_on_frame(n->core, xnow, end->id, m->data + 4, plen);
        guts_core_on_stream_writable(n->core, xnow, end->id);
    }
}

/* Nodes 0..XN-1 with keys[i] (0: none); node 0 holds a repository. */
static void x_setup(const uint8_t *keys)
{
    memset(xn, 0, sizeof(xn));
    xq_head = xq_tail = 0;
    xnow = 0;
    x_wire_max = x_plain_over = x_leaks = 0;
    for (int i = 0; i < XN; i++) {
        xnode *n = &xn[i];
        ck_assert_int_eq(guts_memstore_new(&n->mem), 0);
        guts_memstore_iface(n->mem, &n->iface);
        if (keys[i]) n->seal = seal_with(keys[i]);
        guts_core_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        memset(cfg.node_id.b, 0x30 + i, sizeof(cfg.node_id.b));
        cfg.incarnation = 1;
        cfg.tcp_port = (uint16_t)(7000 + i);
        cfg.interval_ms = 200;
        cfg.seed = 100 + (uint64_t)i;
        cfg.store = &n->iface;
        ck_assert_int_eq(guts_core_new(&cfg, &n->core), 0);
    }
    const guts_core_store *s = &xn[0].iface;
    ck_assert_int_eq(s->create(s->ctx, XKEY), 0);
    for (int k = 0; k < 20; k++) {
        char text[32];
        snprintf(text, sizeof(text), "blob %d\n", k);
        guts_obj o;
        memset(&o, 0, sizeof(o));
        o.type = GUTS_OBJ_BLOB;
        o.data = text;
        o.len = strlen(text);
        ck_assert_int_eq(guts_obj_hash(o.type, o.data, o.len, &o.id), 0);
        ck_assert_int_eq(s->put(s->ctx, XKEY, &o, 1, NULL, NULL), 0);
    }
}

static void x_run(uint64_t until)
{
    for (int i = 0; i < XN; i++) {
        guts_core_on_local_change(xn[i].core, xnow, NULL); /* node 0's repository */
        guts_core_on_timer(xn[i].core, xnow);
        x_drain(i);
    }
    while (xnow < until) {
        while (xq_head != xq_tail) {
            xmsg m = xq[xq_head++ % XQ];
            x_deliver(&m);
            free(m.data);
            for (int i = 0; i < XN; i++)
                x_drain(i);
        }
        xnow += 10;
        for (int i = 0; i < XN; i++)
            if (xn[i].timer && xn[i].timer <= xnow) {
                xn[i].timer = 0;
                guts_core_on_timer(xn[i].core, xnow);
                x_drain(i);
            }
    }
}

static void x_teardown(void)
{
    while (xq_head != xq_tail)
        free(xq[xq_head++ % XQ].data);
    for (int i = 0; i < XN; i++) {
        guts_core_free(xn[i].core);
        guts_memstore_free(xn[i].mem);
        guts_seal_free(xn[i].seal);
    }
}

static int x_has_repo(int i, guts_repo_info *info)
{
    return xn[i].iface.info(xn[i].iface.ctx, XKEY, info) == 0;
}

START_TEST(test_keyed_cluster_replicates_and_shows_nothing_in_clear)
{
    const uint8_t keys[XN] = {1, 1, 1};
    x_setup(keys);
    x_run(10000);
    guts_repo_info a, b;
    ck_assert(x_has_repo(0, &a));
    for (int i = 1; i < XN; i++) {
        ck_assert_msg(x_has_repo(i, &b), "node %d lacks the repository", i);
        ck_assert_uint_eq(b.objects, 20);
        ck_assert(guts_fp_eq(a.fp, b.fp));
    }
    ck_assert_uint_eq(x_leaks, 0);
    ck_assert_uint_le(x_wire_max, GUTS_DGRAM_MAX);
    ck_assert_uint_eq(x_plain_over, 0);
    guts_seal_counters c;
    guts_seal_counters_get(xn[1].seal, &c);
    ck_assert_uint_gt(c.dgrams_opened, 0);
    ck_assert_uint_gt(c.streams_ready, 0);
    x_teardown();
}
END_TEST

START_TEST(test_nodes_with_another_key_or_none_store_nothing_from_the_cluster)
{
    const uint8_t keys[XN] = {1, 2, 0}; /* node 1: another key; node 2: open */
    x_setup(keys);
    x_run(5000);
    guts_repo_info info;
    ck_assert(!x_has_repo(1, &info));
    ck_assert(!x_has_repo(2, &info));
    guts_seal_counters c;
    guts_seal_counters_get(xn[1].seal, &c);
    ck_assert_uint_gt(c.rejected[GUTS_SEAL_R_KEY_MISMATCH], 0);
    ck_assert_uint_eq(c.dgrams_opened, 0);
    guts_seal_counters_get(xn[0].seal, &c);
    ck_assert_uint_gt(c.rejected[GUTS_SEAL_R_KEY_MISMATCH], 0);
    ck_assert_uint_gt(c.rejected[GUTS_SEAL_R_UNSEALED], 0); /* the open node's announces */
    guts_core_counters k;
    guts_core_counters_get(xn[2].core, &k);
    ck_assert_uint_gt(k.dgrams_malformed, 0); /* sealed datagrams are junk to it */
    ck_assert_uint_eq(guts_core_peer_count(xn[2].core), 0);
    ck_assert_uint_eq(x_leaks, 0);
    x_teardown();
}
END_TEST

static Suite *seal_suite(void)
{
    Suite *s = suite_create("seal");
    TCase *tc = tcase_create("dgram");
    tcase_add_test(tc, test_dgram_round_trip_restores_the_plaintext);
    tcase_add_test(tc, test_sealed_dgram_at_the_plaintext_cap_is_exactly_1200_bytes);
    tcase_add_test(tc, test_dgram_with_any_byte_changed_is_rejected);
    tcase_add_test(tc, test_dgram_cut_at_any_length_is_rejected);
    tcase_add_test(tc, test_dgram_from_another_key_is_counted_as_key_mismatch);
    tcase_add_test(tc, test_plain_envelope_is_counted_as_unsealed);
    tcase_add_test(tc, test_sealed_dgram_is_not_a_plain_message);
    tcase_add_test(tc, test_replayed_dgram_is_rejected);
    tcase_add_test(tc, test_replay_is_rejected_even_past_the_cache_capacity);
    tcase_add_test(tc, test_dgram_outside_the_window_is_rejected_as_stale);
    tcase_add_test(tc, test_sealed_announce_shows_no_repo_name_id_or_fingerprint);
    tcase_add_test(tc, test_caller_nonces_make_sealing_deterministic);
    suite_add_tcase(s, tc);
    tc = tcase_create("stream");
    tcase_add_test(tc, test_stream_frames_round_trip_both_ways);
    tcase_add_test(tc, test_stream_reordered_frames_are_rejected);
    tcase_add_test(tc, test_stream_replayed_frame_is_rejected);
    tcase_add_test(tc, test_stream_frame_reflected_back_is_rejected);
    tcase_add_test(tc, test_stream_frame_from_another_connection_is_rejected);
    tcase_add_test(tc, test_stream_frame_with_any_byte_changed_is_rejected);
    tcase_add_test(tc, test_stream_peer_with_another_key_fails_at_the_hello);
    tcase_add_test(tc, test_stream_plain_peer_fails_at_the_hello);
    tcase_add_test(tc, test_stream_bad_hellos_are_refused);
    tcase_add_test(tc, test_stream_frame_before_the_hello_is_refused);
    tcase_add_test(tc, test_stream_seal_refuses_a_frame_whose_header_lies);
    suite_add_tcase(s, tc);
    tc = tcase_create("cores");
    tcase_add_test(tc, test_keyed_cluster_replicates_and_shows_nothing_in_clear);
    tcase_add_test(tc, test_nodes_with_another_key_or_none_store_nothing_from_the_cluster);
    suite_add_tcase(s, tc);
    tc = tcase_create("keyfile");
    tcase_add_test(tc, test_key_generate_writes_one_hex_line_with_mode_0600);
    tcase_add_test(tc, test_key_file_ring_and_the_raw_form_load);
    tcase_add_test(tc, test_ring_opens_datagrams_of_every_key_and_seals_with_the_first);
    tcase_add_test(tc, test_streams_connect_across_a_rotation_on_the_initiators_key);
    tcase_add_test(tc, test_rekey_keeps_open_streams_and_changes_what_opens);
    tcase_add_test(tc, test_key_generate_never_replaces_a_file);
    tcase_add_test(tc, test_key_load_refuses_bad_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(seal_suite(), CK_NOFORK);
}
