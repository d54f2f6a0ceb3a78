/* test_pack.c - git deltas written for packs (src/git/pack.c), checked by applying them with a decoder written
 * here from git's pack-format documentation: every delta must rebuild its
 * target exactly, stay within the size asked for, and use both instruction
 * kinds with the encodings' corner cases (a copy of exactly 0x10000 bytes
 * has no size bytes; offset 0 has no offset bytes). Also the pack writer's
 * entries collected in memory (the helper's encoder threads), read back
 * with zlib, and the same pack written through the deflater thread; the
 * clone pack cache (packcache.h).
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ZSTD_compressSequences: the store's way of making a delta frame */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "guts/delta.h"
#include "pack.h"
#include "packcache.h"
#include "test_run.h"

static uint64_t rng(uint64_t *s)
{
    return guts_splitmix64(s);
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng(&seed);
}

static int varint(const uint8_t *d, size_t n, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *pos < n && shift < 64; shift += 7) {
        uint8_t c = d[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

/* Apply delta d to base; the result (malloc'd) in *out. -1 on any fault. */
static int apply(const uint8_t *base, size_t bn, const uint8_t *d, size_t n, uint8_t **out,
                 size_t *outn, int *copies, int *inserts)
{
    size_t pos = 0, o = 0;
    uint64_t src, dst;
    if (varint(d, n, &pos, &src) || varint(d, n, &pos, &dst) || src != bn) return -1;
    uint8_t *r = malloc(dst ? dst : 1);
    while (pos < n) {
        uint8_t op = d[pos++];
        if (op & 0x80) {
            size_t off = 0, sz = 0;
            for (int i = 0; i < 4; i++)
                if (op & (1 << i)) {
                    if (pos >= n) goto bad;
                    off |= (size_t)d[pos++] << (8 * i);
                }
            for (int i = 0; i < 3; i++)
                if (op & (0x10 << i)) {
                    if (pos >= n) goto bad;
                    sz |= (size_t)d[pos++] << (8 * i);
                }
            if (sz == 0) sz = 0x10000;
            if (off + sz > bn || o + sz > dst) goto bad;
            memcpy(r + o, base + off, sz);
            o += sz;
            (*copies)++;
        } else if (op) {
            if (pos + op > n || o + op > dst) goto bad;
            memcpy(r + o, d + pos, op);
            pos += op;
            o += op;
            (*inserts)++;
        } else {
            goto bad; /* reserved */
        }
    }
    if (o != dst) goto bad;
    *out = r;
    *outn = o;
    return 0;
bad:
    free(r);
    return -1;
}

/* Delta d (freed here) applied to base rebuilds dst exactly. */
static void rebuilds(const uint8_t *base, size_t bn, uint8_t *d, size_t dl, const uint8_t *dst,
                     size_t dn, int *copies, int *inserts)
{
    uint8_t *r;
    size_t rn;
    ck_assert_int_eq(apply(base, bn, d, dl, &r, &rn, copies, inserts), 0);
    ck_assert_uint_eq(rn, dn);
    ck_assert_mem_eq(r, dst, dn);
    free(d);
    free(r);
}

/* Delta base -> dst within max, apply it, compare; returns its length. */
static size_t roundtrip(const uint8_t *base, size_t bn, const uint8_t *dst, size_t dn, size_t max,
                        int *copies, int *inserts)
{
    uint8_t *d;
    size_t dl;
    ck_assert_int_eq(guts_pack_delta(base, bn, dst, dn, max, &d, &dl), GUTS_OK);
    ck_assert_uint_le(dl, max);
    rebuilds(base, bn, d, dl, dst, dn, copies, inserts);
    return dl;
}

START_TEST(test_edits_rebuild_exactly_and_briefly)
{
    enum { N = 40000 };
    uint8_t *base = malloc(N), *dst = malloc(2 * N);
    uint64_t s = 5;
    for (int round = 0; round < 200; round++) {
        size_t bn = 64 + rng(&s) % (N - 64);
        fill(base, bn, rng(&s));
        /* dst: base with spans inserted and spans deleted */
        size_t dn = 0, i = 0, ins = 0;
        int edits = 0;
        while (i < bn) {
            size_t run = 1 + rng(&s) % 4000;
            if (run > bn - i) run = bn - i;
            memcpy(dst + dn, base + i, run);
            dn += run;
            i += run;
            uint64_t what = rng(&s) % 4;
            if (what == 0 && dn + 300 <= 2 * (size_t)N) { /* insert */
                size_t k = 1 + rng(&s) % 300;
                fill(dst + dn, k, rng(&s));
                dn += k;
                ins += k;
                edits++;
            } else if (what == 1) { /* delete */
                i += rng(&s) % 200;
                edits++;
            }
        }
        int copies = 0, inserts = 0;
        size_t dl = roundtrip(base, bn, dst, dn, dn + 64, &copies, &inserts);
        ck_assert_int_gt(copies, 0);
        /* each edit costs at most a copy (8 bytes), an insert header and
         * up to 31 literal bytes before the next block boundary matches */
        ck_assert_uint_le(dl, ins + 64 * (size_t)(edits + 1) + 20);
    }
    free(base);
    free(dst);
}
END_TEST

/* Repetitive text (lines of a few words from a small vocabulary) has many
 * blocks of each hash: the delta must still find where the file goes on
 * after an edit. One candidate per hash made 42 KB of a one-line change
 * to 2 MB of such text (a thin fetch then sent 21 KB where git sends 0.5). */
START_TEST(test_one_line_change_in_repetitive_text_is_a_small_delta)
{
    static const char *words[] = {"alpha", "beta", "gamma", "delta", "eps"};
    enum { LINES = 40000 };
    size_t cap = (size_t)LINES * 64;
    char *base = malloc(cap), *dst = malloc(cap);
    size_t bn = 0, dn = 0;
    uint64_t s = 11;
    for (int l = 0; l < LINES; l++) {
        size_t start = bn;
        for (int w = 0; w < 10; w++)
            bn += (size_t)sprintf(base + bn, "%s%s", w ? " " : "", words[rng(&s) % 5]);
        base[bn++] = '\n';
        if (l == LINES / 4 || l == LINES / 2) /* two lines replaced, of other lengths */
            dn += (size_t)sprintf(dst + dn, "a changed line %d\n", l);
        else {
            memcpy(dst + dn, base + start, bn - start);
            dn += bn - start;
        }
    }
    int copies = 0, inserts = 0;
    size_t dl = roundtrip((uint8_t *)base, bn, (uint8_t *)dst, dn, dn / 2, &copies, &inserts);
    /* 202 B when the whole base was indexed, 275 B with only its middle
     * (between the common start and end): which wrong places the chain
     * offers in text of five words is chance; one candidate made 42 KB */
    ck_assert_uint_le(dl, 320);
    free(base);
    free(dst);
}
END_TEST

START_TEST(test_corner_encodings)
{
    enum { N = 0x10000 + 64 };
    uint8_t *base = malloc(N);
    fill(base, N, 9);
    int copies = 0, inserts = 0;
    /* a copy of exactly 0x10000 from offset 0: no offset, no size bytes */
    size_t dl = roundtrip(base, N, base, 0x10000, 64, &copies, &inserts);
    ck_assert_int_eq(copies, 1);
    ck_assert_int_eq(inserts, 0);
    ck_assert_uint_le(dl, 3 + 3 + 1);
    /* a literal head, then a copy from the middle */
    uint8_t dst[300];
    memset(dst, 'x', 100);
    memcpy(dst + 100, base + 777, 200);
    copies = inserts = 0;
    roundtrip(base, N, dst, sizeof dst, sizeof dst, &copies, &inserts);
    ck_assert_int_eq(copies, 1);
    ck_assert_int_eq(inserts, 1);
    /* a copy of the whole base */
    copies = inserts = 0;
    roundtrip(base, N, base, N, 32, &copies, &inserts);
    ck_assert_int_eq(copies, 1);
    free(base);
}
END_TEST

START_TEST(test_no_delta_when_nothing_matches_or_too_long)
{
    uint8_t a[4096], b[4096], *d = NULL;
    size_t dl = 7;
    fill(a, sizeof a, 1);
    fill(b, sizeof b, 2);
    ck_assert_int_eq(guts_pack_delta(a, sizeof a, b, sizeof b, sizeof b / 2, &d, &dl), GUTS_ENOTFOUND);
    ck_assert_ptr_null(d);
    ck_assert_uint_eq(dl, 0);
    ck_assert_int_eq(guts_pack_delta(a, 8, a, 8, 100, &d, &dl), GUTS_ENOTFOUND); /* under a block */
    ck_assert_int_eq(guts_pack_delta(a, sizeof a, a, sizeof a, 0, &d, &dl), GUTS_ENOTFOUND);
}
END_TEST

/* Bytes of the file behind fd, from its start (malloc'd). */
static uint8_t *file_bytes(FILE *f, size_t *n)
{
    long end = ftell(f);
    ck_assert_int_ge(end, 0);
    uint8_t *b = malloc((size_t)end + 1);
    ck_assert_ptr_nonnull(b);
    rewind(f);
    ck_assert_uint_eq(fread(b, 1, (size_t)end, f), (size_t)end);
    *n = (size_t)end;
    return b;
}

/* One entry of the pack at *pos: its type, size, the REF_DELTA base and
 * the inflated content (malloc'd), as gitformat-pack describes them. */
static uint8_t *read_entry(const uint8_t *p, size_t n, size_t *pos, int *type, size_t *size,
                           uint8_t base[20])
{
    size_t i = *pos;
    ck_assert_uint_lt(i, n);
    *type = (p[i] >> 4) & 7;
    uint64_t sz = p[i] & 15;
    int shift = 4;
    while (p[i++] & 0x80) {
        ck_assert_uint_lt(i, n);
        sz |= (uint64_t)(p[i] & 0x7f) << shift;
        shift += 7;
    }
    if (*type == GUTS_PACK_REF_DELTA) {
        ck_assert_uint_le(i + 20, n);
        memcpy(base, p + i, 20);
        i += 20;
    }
    uint8_t *out = malloc(sz + 1);
    ck_assert_ptr_nonnull(out);
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(inflateInit(&z), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)(p + i);
    z.avail_in = (uInt)(n - i);
    z.next_out = out;
    z.avail_out = (uInt)sz + 1;
    ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    ck_assert_uint_eq(z.total_out, sz);
    *pos = i + z.total_in;
    inflateEnd(&z);
    *size = (size_t)sz;
    return out;
}

/* The helper's encoders collect whole entries in memory (guts_packw_open_mem)
 * and the pack writer appends them: the pack must hold the entries written
 * directly, an entry larger than the first buffer included, under a right
 * trailer. (Not the same bytes: zlib's stored blocks end where its output
 * space did.) */
/* The pack p of n bytes ends at pos with its trailer: the SHA-1 of what
 * precedes it, which is also sum, the writer's. */
static void trailer_is(const uint8_t *p, size_t pos, size_t n, const uint8_t *sum)
{
    ck_assert_uint_eq(pos + 20, n);
    uint8_t check[20];
    unsigned sl = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    ck_assert_ptr_nonnull(sha);
    ck_assert_int_eq(EVP_DigestInit_ex(sha, EVP_sha1(), NULL), 1);
    ck_assert_int_eq(EVP_DigestUpdate(sha, p, pos), 1);
    ck_assert_int_eq(EVP_DigestFinal_ex(sha, check, &sl), 1);
    EVP_MD_CTX_free(sha);
    ck_assert_mem_eq(check, sum, 20);
    ck_assert_mem_eq(p + pos, sum, 20);
}

START_TEST(test_entries_collected_in_memory_make_the_same_pack)
{
    enum { BIG = GUTS_PACK_MEM_START * 3 + 5 };
    uint8_t *big = malloc(BIG), small[100], delta[40];
    ck_assert_ptr_nonnull(big);
    fill(big, BIG, 3);
    fill(small, sizeof small, 4);
    fill(delta, sizeof delta, 5);
    guts_id base;
    memset(base.b, 0xab, sizeof base.b);
    const struct {
        int type;
        const uint8_t *data;
        size_t len;
    } want[] = {{3, small, sizeof small}, {3, big, BIG}, {GUTS_PACK_REF_DELTA, delta, sizeof delta},
                {1, small, 10}};
    const int levels[] = {0, 1, GUTS_PACK_FAST};
    for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
        int level = levels[li];
        FILE *f = tmpfile();
        ck_assert_ptr_nonnull(f);
        guts_packw w, m;
        uint8_t sum[20], *buf;
        size_t len;
        ck_assert_int_eq(guts_packw_open(&w, fileno(f), level, 0, 4), GUTS_OK);
        ck_assert_int_eq(guts_packw_open_mem(&m, level), GUTS_OK);
        ck_assert_int_eq(guts_packw_finish(&m, sum), GUTS_EINVAL); /* no trailer in memory */
        ck_assert_int_eq(guts_packw_object(&m, 3, small, sizeof small), GUTS_OK);
        ck_assert_int_eq(guts_packw_object(&m, 3, big, BIG), GUTS_OK); /* grows */
        ck_assert_int_eq(guts_packw_take(&m, &buf, &len), GUTS_OK);
        ck_assert_int_eq(guts_packw_append(&w, buf, len), GUTS_OK); /* past w's buffer */
        free(buf);
        ck_assert_uint_eq(m.len, 0);
        ck_assert_int_eq(guts_packw_ref_delta(&m, &base, delta, sizeof delta), GUTS_OK);
        ck_assert_int_eq(guts_packw_object(&m, 1, small, 10), GUTS_OK);
        ck_assert_int_eq(guts_packw_take(&m, &buf, &len), GUTS_OK);
        ck_assert_int_eq(guts_packw_append(&w, buf, len), GUTS_OK); /* within it */
        free(buf);
        ck_assert_int_eq(guts_packw_finish(&w, sum), GUTS_OK);

        size_t n, pos = 12;
        uint8_t *p = file_bytes(f, &n);
        ck_assert_uint_eq(n, w.total);
        ck_assert_mem_eq(p, "PACK\0\0\0\2\0\0\0\4", 12);
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            int type;
            size_t size;
            uint8_t b[20];
            uint8_t *got = read_entry(p, n, &pos, &type, &size, b);
            ck_assert_int_eq(type, want[k].type);
            ck_assert_uint_eq(size, want[k].len);
            ck_assert_mem_eq(got, want[k].data, size);
            if (type == GUTS_PACK_REF_DELTA) ck_assert_mem_eq(b, base.b, 20);
            free(got);
        }
        trailer_is(p, pos, n, sum);
        free(p);
        guts_packw_free(&w);
        guts_packw_free(&m);
        fclose(f);
    }
    free(big);
}
END_TEST

/* A sink collecting what a writer writes; fail_after: refuse writes once
 * it holds this many bytes. */
typedef struct collect {
    uint8_t *p;
    size_t n, fail_after;
} collect;

static int collect_sink(void *ctx, const void *buf, size_t n)
{
    collect *c = ctx;
    if (c->n + n > c->fail_after) return GUTS_EIO;
    c->p = realloc(c->p, c->n + n);
    ck_assert_ptr_nonnull(c->p);
    memcpy(c->p + c->n, buf, n);
    c->n += n;
    return GUTS_OK;
}

/* An entry whose deflate bound passes the file writer's buffer
 * (GUTS_PACK_BUF) is deflated by the fast encoder all the same (one final
 * block of fixed codes: the byte after the zlib header ends in 0b011; zlib's
 * level 1 would make dynamic blocks) through a buffer of its own, between
 * entries that stay in the writer's: to a file, to a sink, and collected in
 * memory; every entry inflates back and the trailer is the pack's SHA-1. */
START_TEST(test_fast_entries_past_the_buffer_go_out_whole)
{
    enum { BIG = GUTS_PACK_BUF + 12345 };
    uint8_t *big = malloc(BIG), small[300];
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < BIG; i++) /* text that repeats, some noise */
        big[i] = (uint8_t)("the quick brown fox "[i % 20] ^ (i % 4093 == 0 ? 1 : 0));
    fill(big + BIG / 2, 4096, 8);
    fill(small, sizeof small, 9);
    for (int how = 0; how < 3; how++) { /* file, sink, in memory then appended */
        FILE *f = tmpfile();
        ck_assert_ptr_nonnull(f);
        guts_packw w, m;
        uint8_t sum[20];
        ck_assert_int_eq(guts_packw_open(&w, how == 1 ? -1 : fileno(f), GUTS_PACK_FAST, 0, 3),
                         GUTS_OK);
        collect c = {.fail_after = SIZE_MAX};
        if (how == 1) {
            w.sink = collect_sink;
            w.sink_ctx = &c;
        }
        guts_packw *to = &w;
        if (how == 2) {
            ck_assert_int_eq(guts_packw_open_mem(&m, GUTS_PACK_FAST), GUTS_OK);
            to = &m;
        }
        ck_assert_int_eq(guts_packw_object(to, 3, small, sizeof small), GUTS_OK);
        ck_assert_int_eq(guts_packw_object(to, 3, big, BIG), GUTS_OK);
        ck_assert_int_eq(guts_packw_object(to, 1, small, 10), GUTS_OK);
        if (how == 2) {
            uint8_t *buf;
            size_t len;
            ck_assert_int_eq(guts_packw_take(&m, &buf, &len), GUTS_OK);
            ck_assert_int_eq(guts_packw_append(&w, buf, len), GUTS_OK);
            free(buf);
            guts_packw_free(&m);
        }
        ck_assert_int_eq(guts_packw_finish(&w, sum), GUTS_OK);
        size_t n, pos = 12;
        uint8_t *p = how == 1 ? c.p : file_bytes(f, &n);
        if (how == 1) n = c.n;
        ck_assert_uint_eq(n, w.total);
        ck_assert_mem_eq(p, "PACK\0\0\0\2\0\0\0\3", 12);
        const uint8_t *want[] = {small, big, small};
        const size_t wlen[] = {sizeof small, BIG, 10};
        for (int k = 0; k < 3; k++) {
            int type;
            size_t size, at = pos;
            uint8_t b[20];
            uint8_t *got = read_entry(p, n, &pos, &type, &size, b);
            ck_assert_uint_eq(size, wlen[k]);
            ck_assert_mem_eq(got, want[k], size);
            free(got);
            if (k == 1) {
                while (p[at++] & 0x80) /* the entry's header */
                    ;
                ck_assert_uint_eq(p[at] & 0x0f, 8); /* zlib: deflate */
                ck_assert_uint_eq(p[at + 2] & 7, 3);
                ck_assert_uint_lt(pos - at, BIG / 4);
            }
        }
        trailer_is(p, pos, n, sum);
        free(p);
        guts_packw_free(&w);
        fclose(f);
    }
    free(big);
}
END_TEST

/* Write entries of every size (one larger than the async queue alone, many
 * that fill it; some with a base to try a delta against, their buffers
 * handed to the writer or not) to a writer on a sink, async or not; the
 * pack's bytes. */
static collect write_entries(int async, size_t fail_after, int *rc)
{
    enum { N = 200, BIG = GUTS_PACK_ASYNC_MAX + 4096 };
    uint8_t *big = malloc(BIG + 2 * N); /* entry i starts at most 2i in */
    ck_assert_ptr_nonnull(big);
    fill(big, BIG + 2 * N, 6);
    guts_id base;
    memset(base.b, 0x5a, sizeof base.b);
    collect c = {.fail_after = fail_after};
    guts_packw w;
    ck_assert_int_eq(guts_packw_open(&w, -1, 1, 0, N), GUTS_OK);
    w.sink = collect_sink;
    w.sink_ctx = &c;
    if (async) ck_assert_int_eq(guts_packw_async(&w), GUTS_OK);
    *rc = GUTS_OK;
    for (int i = 0; i < N && !*rc; i++) {
        size_t len = i == 7 ? BIG : (size_t)(i * 7919) % (GUTS_PACK_ASYNC_MAX / 16);
        if (i % 5 == 0) { /* with a base one byte away: a delta, the buffers handed over or not */
            int take = i % 10 ? GUTS_PACKW_TAKE_BASE | GUTS_PACKW_TAKE_DATA : 0;
            uint8_t *b = malloc(len + 1), *d = malloc(len + 1);
            ck_assert(b && d);
            memcpy(b, big + i, len);
            memcpy(d, big + i, len);
            if (len) d[len / 2] ^= 1;
            *rc = guts_packw_delta_or_whole(&w, 3, &base, b, len, d, len, take);
            if (!take) {
                free(b);
                free(d);
            }
            continue;
        }
        *rc = i % 3 ? guts_packw_object(&w, 1 + i % 4, big + i, len)
                    : guts_packw_ref_delta(&w, &base, big + 2 * i, len);
    }
    uint8_t sum[20];
    if (!*rc) *rc = guts_packw_finish(&w, sum);
    if (!*rc) ck_assert_mem_eq(c.p + c.n - 20, sum, 20);
    guts_packw_free(&w);
    free(big);
    return c;
}

/* guts_packw_async: the same bytes as written in turn; a sink that fails
 * fails a later call, and the writer is freed cleanly with entries queued. */
START_TEST(test_async_writer_writes_the_same_pack)
{
    int rc;
    collect sync = write_entries(0, SIZE_MAX, &rc);
    ck_assert_int_eq(rc, GUTS_OK);
    collect async = write_entries(1, SIZE_MAX, &rc);
    ck_assert_int_eq(rc, GUTS_OK);
    ck_assert_uint_eq(async.n, sync.n);
    ck_assert_mem_eq(async.p, sync.p, sync.n);
    free(async.p);
    collect failed = write_entries(1, sync.n / 2, &rc);
    ck_assert_int_eq(rc, GUTS_EIO);
    ck_assert_uint_le(failed.n, sync.n / 2);
    ck_assert_mem_eq(failed.p, sync.p, failed.n);
    free(failed.p);
    free(sync.p);
}
END_TEST

/* Inflate a zlib stream of n bytes that must hold exactly want (wn bytes):
 * any inflater reads the fast encoder's output, checksum included. */
static void inflates_to(const uint8_t *z, size_t n, const uint8_t *want, size_t wn)
{
    uint8_t *out = malloc(wn + 1);
    ck_assert_ptr_nonnull(out);
    z_stream s;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(inflateInit(&s), Z_OK);
    s.next_in = (Bytef *)(uintptr_t)z;
    s.avail_in = (uInt)n;
    s.next_out = out;
    s.avail_out = (uInt)wn + 1;
    ck_assert_int_eq(inflate(&s, Z_FINISH), Z_STREAM_END);
    ck_assert_uint_eq(s.total_out, wn);
    ck_assert_uint_eq(s.total_in, n); /* nothing after the checksum */
    if (wn) ck_assert_mem_eq(out, want, wn);
    inflateEnd(&s);
    free(out);
}

/* deflate.h: lengths and distances from the shortest to the longest (the
 * 32 KiB window's edge), stored blocks for bytes that do not compress
 * (several past 64 KiB), and one table for many entries (an earlier
 * entry's positions are never matched): each a zlib stream within
 * guts_deflate_bound that inflates to its input. */
/* guts_adler32 against zlib's: every length up to two of its 5,552-byte
 * runs from every alignment, any starting value, and 1 MB of 0xff (the
 * largest sums before each reduction). */
START_TEST(test_adler32_is_zlibs)
{
    size_t big = (size_t)1 << 20;
    uint8_t *buf = malloc(big + 16);
    ck_assert_ptr_nonnull(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < big + 16; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t n = 0; n <= 2 * 5552 + 40; n += n < 100 ? 1 : 37)
        for (size_t off = 0; off < 16; off += 5) {
            uint32_t start = n % 3 == 0 ? 1 : (uint32_t)(n * 2654435761u) % 65521u << 16 | 7;
            ck_assert_uint_eq(guts_adler32(start, buf + off, n),
                              (uint32_t)adler32(start, buf + off, (uInt)n));
        }
    ck_assert_uint_eq(guts_adler32(1, buf + 3, big), (uint32_t)adler32(1, buf + 3, (uInt)big));
    memset(buf, 0xff, big);
    ck_assert_uint_eq(guts_adler32(1, buf, big), (uint32_t)adler32(1, buf, (uInt)big));
    ck_assert_uint_eq(guts_adler32(0xfff0fff0u, buf, big),
                      (uint32_t)adler32(0xfff0fff0u, buf, (uInt)big));
    free(buf);
}
END_TEST

START_TEST(test_fast_deflate_inflates_back_to_its_input)
{
    enum { N = 200000 };
    uint8_t *text = malloc(N), *noise = malloc(N), *mixed = malloc(N);
    ck_assert(text && noise && mixed);
    uint64_t seed = 7;
    for (size_t i = 0; i < N;) { /* words from a small vocabulary: every match length */
        static const char *const words[] = {"int ", "deflate", "(",       ")",
                                            "; ",   "\n",      "window ", "a"};
        const char *wd = words[rng(&seed) % 8];
        for (size_t j = 0; wd[j] && i < N; j++)
            text[i++] = (uint8_t)wd[j];
    }
    fill(noise, N, 8);
    memcpy(mixed, noise, N);
    memcpy(mixed + 40000, noise, 300);                 /* 40,000 back: too far */
    memcpy(mixed + 70000, mixed + 70000 - 32768, 500); /* exactly 32 KiB back */
    memset(mixed + 100000, 'x', 1000);                 /* runs: distance 1, length 258 */
    const struct {
        const uint8_t *p;
        size_t n;
        int smaller; /* must come out under half its size */
    } cases[] = {{text, 0, 0},   {text, 1, 0},      {text, 3, 0},      {text, 4, 0},
                 {text, 100, 0}, {text, N, 1},      {noise, 10, 0},    {noise, N, 0},
                 {mixed, N, 0},  {noise, 65535, 0}, {noise, 65536, 0}, {text, 5000, 1}};
    guts_deflate d;
    ck_assert_int_eq(guts_deflate_init(&d), GUTS_OK);
    for (int round = 0; round < 2; round++) /* the second: a table full of old entries */
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            size_t bound = guts_deflate_bound(cases[k].n);
            uint8_t *out = malloc(bound);
            ck_assert_ptr_nonnull(out);
            size_t n = guts_deflate_fast(&d, cases[k].p, cases[k].n, out);
            ck_assert_uint_le(n, bound);
            ck_assert_uint_le(n, cases[k].n + 5 * (cases[k].n / 65535 + 1) + 6);
            if (cases[k].smaller) ck_assert_uint_lt(n, cases[k].n / 2);
            inflates_to(out, n, cases[k].p, cases[k].n);
            free(out);
        }
    guts_deflate_free(&d);
    free(text);
    free(noise);
    free(mixed);
}
END_TEST

/* Names in dir (not . and ..), sorted, joined by spaces. */
static void list_dir(const char *dir, char *out, size_t cap)
{
    struct dirent **v;
    int n = scandir(dir, &v, NULL, alphasort);
    ck_assert_int_ge(n, 0);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (v[i]->d_name[0] != '.' || (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, ".."))) {
            if (out[0]) strncat(out, " ", cap - strlen(out) - 1);
            strncat(out, v[i]->d_name, cap - strlen(out) - 1);
        }
        free(v[i]);
    }
    free(v);
}

/* Damage the file at path: one bit of byte at flipped. */
static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    int c = fgetc(f);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(f, at, SEEK_SET), 0);
    fputc(c ^ 1, f);
    fclose(f);
}

/* packcache.h: a pack filed under its request (the sets' order does not
 * matter, their content and the repository do) comes back byte for byte;
 * a damaged one is refused and removed; an abandoned one leaves nothing;
 * past two per repository the oldest goes, with stale half-written ones. */
static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The copies a reader of a zstd frame gave (lcopy) */
typedef struct zcopies {
    guts_copy v[4096];
    size_t n;
    size_t bn, dn;
} zcopies;

/* dst: base's lines with some changed, inserted and deleted (text, so that
 * zstd's matcher uses repeat offsets and its own FSE tables) */
static size_t edited_text(uint8_t *base, size_t bn, uint8_t *dst, size_t cap, uint64_t *s)
{
    static const char *words[] = {"inflate", "deflate", "window", "bits", "state", "crc32",
                                  "adler", "length", "distance", "table", "stream", "block"};
    size_t n = 0;
    while (n + 80 < bn) {
        int k = 3 + (int)(rng(s) % 8);
        for (int i = 0; i < k; i++)
            n += (size_t)sprintf((char *)base + n, "%s ", words[rng(s) % 12]);
        n += (size_t)sprintf((char *)base + n, "%u;\n", (unsigned)(rng(s) % 1000));
    }
    memset(base + n, '\n', bn - n);
    size_t dn = 0, i = 0;
    while (i < bn && dn + 600 < cap) {
        size_t run = 1 + rng(s) % 3000;
        if (run > bn - i) run = bn - i;
        memcpy(dst + dn, base + i, run);
        dn += run;
        i += run;
        if (rng(s) % 2) dn += (size_t)sprintf((char *)dst + dn, "edit %u\n", (unsigned)rng(s));
        else i += rng(s) % 100;
    }
    return dn;
}

/* Random bytes in base, and dst made of spans of them (min bytes and
 * up) each followed by 7 random bytes, up to about bn; dst's length. */
static size_t spliced(uint8_t *base, size_t bn, uint8_t *dst, size_t cap, size_t min,
                      uint64_t *s)
{
    fill(base, bn, rng(s));
    size_t dn = 0;
    while (dn + 5000 < cap && dn < bn) {
        size_t k = min + rng(s) % 4000, at = rng(s) % bn;
        if (k > bn - at) k = bn - at;
        memcpy(dst + dn, base + at, k);
        dn += k;
        fill(dst + dn, 7, rng(s));
        dn += 7;
    }
    return dn;
}

/* guts_delta_scan's copies as zstd sequences, as the store makes them */
typedef struct zseqs {
    ZSTD_Sequence v[8192];
    size_t n, lit, bn;
} zseqs;

static int zseq(void *ctx, size_t at, size_t from, size_t len)
{
    zseqs *q = ctx;
    ck_assert_uint_lt(q->n, 8192);
    q->v[q->n++] = (ZSTD_Sequence){.offset = (unsigned)(q->bn + at - from),
                                   .litLength = (unsigned)(at - q->lit),
                                   .matchLength = (unsigned)len};
    q->lit = at + len;
    return 0;
}

/* guts_zstd_lits_copies' callback: copies kept, in order, in bounds */
static int lcopy(void *ctx, size_t at, size_t from, size_t len)
{
    zcopies *z = ctx;
    ck_assert_uint_lt(z->n, 4096);
    ck_assert(z->n == 0 || at >= z->v[z->n - 1].at + z->v[z->n - 1].len);
    ck_assert_uint_le(at + len, z->dn);
    ck_assert_uint_le(from + len, z->bn);
    z->v[z->n++] = (guts_copy){at, from, len};
    return 0;
}

/* The git delta of a frame's copies and literals, read without its
 * content, rebuilds the content; the frame of the store's sequences
 * always reads so, zstd's own matcher's when it copies nothing from the
 * content itself. */
START_TEST(test_zstd_literals_and_copies_rebuild_the_content_undecoded)
{
    enum { N = 400000 };
    uint8_t *base = malloc(N), *dst = malloc(2 * N), *lits = malloc(2 * N);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t fcap = ZSTD_compressBound(2 * N);
    uint8_t *frame = malloc(fcap);
    zseqs *q = malloc(sizeof *q);
    zcopies *z = malloc(sizeof *z);
    uint64_t s = 29;
    int undecoded = 0;
    for (int round = 0; round < 48; round++) {
        size_t bn = round < 6 ? 100 + rng(&s) % 2000 : 1000 + rng(&s) % (N - 1000);
        size_t dn;
        if (round % 3 == 2) {
            dn = spliced(base, bn, dst, 2 * (size_t)N, 20, &s);
        } else {
            dn = edited_text(base, bn, dst, 2 * N, &s);
        }
        int own = round % 4 == 3; /* zstd's matcher, not the store's sequences */
        ck_assert(!ZSTD_isError(ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters)));
        ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1 + round % 19);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, round % 2);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, 22);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_literalCompressionMode,
                               round % 5 == 4 ? ZSTD_ps_disable : ZSTD_ps_auto);
        size_t fn;
        if (own) {
            ck_assert(!ZSTD_isError(ZSTD_CCtx_refPrefix(cc, base, bn)));
            fn = ZSTD_compress2(cc, frame, fcap, dst, dn);
        } else {
            q->n = q->lit = 0;
            q->bn = bn;
            ck_assert_int_eq(guts_delta_scan(base, bn, dst, dn, zseq, q), GUTS_OK);
            fn = ZSTD_compressSequences(cc, frame, fcap, q->v, q->n, dst, dn);
        }
        ck_assert(!ZSTD_isError(fn));
        *z = (zcopies){.bn = bn, .dn = dn};
        size_t nl = 0;
        int rc = guts_zstd_lits_copies(frame, fn, bn, dn, dn, lits, &nl, lcopy, z);
        if (own && rc == GUTS_ENOTFOUND) continue; /* a match inside dst */
        ck_assert_int_eq(rc, GUTS_OK);
        undecoded++;
        uint8_t *d;
        size_t dl;
        int copies = 0, inserts = 0;
        ck_assert_int_eq(guts_pack_delta_lits(bn, dn, lits, nl, z->v, z->n, 2 * dn + 64, &d, &dl),
                         GUTS_OK);
        rebuilds(base, bn, d, dl, dst, dn, &copies, &inserts);
        /* fewer literals allowed than the frame has: none given */
        z->n = 0;
        if (nl > 1)
            ck_assert_int_eq(guts_zstd_lits_copies(frame, fn, bn, dn, nl / 2, lits, &nl, lcopy, z),
                             GUTS_ENOTFOUND);
        /* a cut frame, or another size, is not read */
        z->n = 0;
        ck_assert_int_eq(guts_zstd_lits_copies(frame, fn - 1, bn, dn, dn, lits, &nl, lcopy, z),
                         GUTS_ECORRUPT);
        z->n = 0;
        ck_assert_int_ne(guts_zstd_lits_copies(frame, fn, bn, dn - 1, dn, lits, &nl, lcopy, z),
                         GUTS_OK);
    }
    ck_assert_int_ge(undecoded, 36);
    ZSTD_freeCCtx(cc);
    free(frame);
    free(base);
    free(dst);
    free(lits);
    free(q);
    free(z);
}
END_TEST

/* guts_zstd_self_copies' callback: in order, each an earlier part of the
 * content itself */
typedef struct zself {
    guts_copy v[100000];
    size_t n;
    const uint8_t *dst;
    size_t dn;
} zself;

static int scopy(void *ctx, size_t at, size_t from, size_t len)
{
    zself *z = ctx;
    ck_assert_uint_lt(z->n, 100000);
    ck_assert_uint_lt(from, at);
    ck_assert_uint_ge(len, 3);
    ck_assert(z->n == 0 || at >= z->v[z->n - 1].at + z->v[z->n - 1].len);
    ck_assert_uint_le(at + len, z->dn);
    size_t i = 0; /* overlapping, as LZ77's: byte by byte */
    while (i < len && z->dst[at + i] == z->dst[from + i])
        i++;
    ck_assert_uint_eq(i, len);
    z->v[z->n++] = (guts_copy){at, from, len};
    return 0;
}

/* A whole object's zstd frame gives its own matches, and a deflate stream
 * made of them inflates back to it: text, noise, runs, past the 32 KiB
 * window and zstd's 128 KiB blocks, zstd levels 1 to 19; copies out of
 * order or from ahead are refused. */
START_TEST(test_deflate_from_a_zstd_frames_own_matches_inflates_back)
{
    enum { N = 300000 };
    uint8_t *src = malloc(N), *out = malloc(guts_deflate_bound(N)), *frame = malloc(ZSTD_compressBound(N));
    zself *z = malloc(sizeof *z);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    uint64_t s = 5;
    for (int round = 0; round < 24; round++) {
        size_t n = round < 4 ? 1 + rng(&s) % 200 : 1000 + rng(&s) % (N - 1000);
        if (round % 3 == 0) {
            fill(src, n, rng(&s));
            for (size_t k = 0; k + 2000 < n; k += 1 + rng(&s) % 5000) /* far and near repeats */
                memcpy(src + k + rng(&s) % 1000, src + rng(&s) % (k + 1), 200);
        } else if (round % 3 == 1) {
            memset(src, 'a' + round, n); /* one long run */
        } else {
            uint8_t *tmp = malloc(2 * N);
            size_t dn = edited_text(src, n, tmp, 2 * N, &s);
            memcpy(src, tmp, dn < n ? dn : n);
            free(tmp);
        }
        ck_assert(!ZSTD_isError(ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters)));
        ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1 + round % 19);
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, round % 2);
        size_t fn = ZSTD_compress2(cc, frame, ZSTD_compressBound(N), src, n);
        ck_assert(!ZSTD_isError(fn));
        z->n = 0;
        z->dst = src;
        z->dn = n;
        ck_assert_int_eq(guts_zstd_self_copies(frame, fn, src, n, scopy, z), GUTS_OK);
        size_t k = guts_deflate_copies(src, n, z->v, z->n, out);
        ck_assert_uint_gt(k, 0);
        ck_assert_uint_le(k, guts_deflate_bound(n));
        inflates_to(out, k, src, n);
        if (z->n) { /* a copy from ahead of itself, or out of order: refused */
            guts_copy bad = z->v[0];
            z->v[0].from = bad.at;
            ck_assert_uint_eq(guts_deflate_copies(src, n, z->v, z->n, out), 0);
            z->v[0] = bad;
            if (z->n > 1) {
                guts_copy t = z->v[0];
                z->v[0] = z->v[1];
                z->v[1] = t;
                ck_assert_uint_eq(guts_deflate_copies(src, n, z->v, z->n, out), 0);
            }
        }
        /* a cut frame is not read */
        z->n = 0;
        ck_assert_int_eq(guts_zstd_self_copies(frame, fn - 1, src, n, scopy, z), GUTS_ECORRUPT);
    }
    ZSTD_freeCCtx(cc);
    free(src);
    free(out);
    free(frame);
    free(z);
}
END_TEST

/* The store gives a delta record's copies from its base and its literals
 * without decoding it (its frame made from the put's hint); decoded, a
 * delta record comes with no matches (only a whole one's own), and
 * neither does an object found in the cache. */
START_TEST(test_store_gives_a_zstd_deltas_copies)
{
    char data[] = "/tmp/guts-zcopies-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(data));
    guts_data *d;
    guts_repo *r;
    ck_assert_int_eq(guts_data_open(data, GUTS_DATA_CREATE, &d), GUTS_OK);
    ck_assert_int_eq(guts_repo_open(d, "o/zc", GUTS_REPO_CREATE, &r), GUTS_OK);
    enum { N = 60000 };
    uint8_t *base = malloc(N), *dst = malloc(2 * N);
    uint64_t s = 3;
    size_t dn = edited_text(base, N, dst, 2 * N, &s);
    guts_obj o[2] = {{.type = GUTS_OBJ_BLOB, .data = base, .len = N},
                     {.type = GUTS_OBJ_BLOB, .data = dst, .len = dn}};
    ck_assert_int_eq(guts_obj_hash(o[0].type, base, N, &o[0].id), GUTS_OK);
    ck_assert_int_eq(guts_obj_hash(o[1].type, dst, dn, &o[1].id), GUTS_OK);
    o[1].base = &o[0].id;
    ck_assert_int_eq(guts_repo_put(r, o, 2, NULL, NULL), GUTS_OK);
    guts_id sb;
    int type;
    uint64_t size;
    ck_assert_int_eq(guts_repo_head(r, &o[1].id, &type, &size, &sb), GUTS_OK);
    ck_assert_int_eq(guts_id_cmp(&sb, &o[0].id), 0);
    for (int pass = 0; pass < 2; pass++) { /* decoded, then with the base cached */
        void *got;
        size_t len, n;
        guts_copy *c;
        ck_assert_int_eq(guts_repo_get_copies(r, &o[1].id, &type, &got, &len, &c, &n), GUTS_OK);
        ck_assert_uint_eq(len, dn);
        ck_assert_mem_eq(got, dst, dn);
        ck_assert_ptr_null(c);
        free(got);
    }
    void *got;
    size_t len, n, blen;
    guts_copy *c;
    ck_assert_int_eq(guts_repo_get_copies(r, &o[0].id, &type, &got, &len, &c, &n), GUTS_OK);
    ck_assert_mem_eq(got, base, N);
    ck_assert_ptr_null(c);
    free(got);
    /* the same delta read without decoding it: its literals and copies */
    uint8_t *lits, *delta, *back;
    size_t nl, dl, bl;
    int copies = 0, inserts = 0;
    guts_id lbase;
    ck_assert_int_eq(
        guts_repo_get_lits(r, &o[1].id, 8, &type, &len, &lbase, &blen, &c, &n, &lits, &nl),
        GUTS_OK);
    ck_assert_int_eq(guts_id_cmp(&lbase, &o[0].id), 0);
    ck_assert_int_eq(type, GUTS_OBJ_BLOB);
    ck_assert_uint_eq(len, dn);
    ck_assert_uint_eq(blen, N);
    ck_assert_int_eq(guts_pack_delta_lits(blen, len, lits, nl, c, n, len / 2, &delta, &dl), GUTS_OK);
    ck_assert_int_eq(apply(base, N, delta, dl, &back, &bl, &copies, &inserts), 0);
    ck_assert_uint_eq(bl, dn);
    ck_assert_mem_eq(back, dst, dn);
    free(delta);
    free(back);
    free(lits);
    free(c);
    /* an object stored whole has none */
    ck_assert_int_eq(
        guts_repo_get_lits(r, &o[0].id, 8, &type, &len, &lbase, &blen, &c, &n, &lits, &nl),
        GUTS_ENOTFOUND);
    guts_repo_close(r);
    guts_data_close(d);
    free(base);
    free(dst);
    nftw(data, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

START_TEST(test_pack_cache)
{
    char data[] = "/tmp/guts-packcache-XXXXXX", dir[64], names[1024];
    ck_assert_ptr_nonnull(mkdtemp(data));
    snprintf(dir, sizeof dir, "%s/git-packs", data);
    guts_id ids[3];
    for (int i = 0; i < 3; i++)
        memset(ids[i].b, 0x10 * (i + 1), sizeof ids[i].b);
    guts_id rev[2] = {ids[1], ids[0]};
    guts_packcache a, b, c, d;
    ck_assert_int_eq(guts_packcache_init(&a, data, "o/r", ids, 2, ids + 2, 1), GUTS_OK);
    ck_assert_int_eq(guts_packcache_init(&b, data, "o/r", rev, 2, ids + 2, 1), GUTS_OK);
    ck_assert_str_eq(a.name, b.name);
    ck_assert_int_eq(guts_packcache_init(&b, data, "o/r", ids, 2, NULL, 0), GUTS_OK);
    ck_assert_str_ne(a.name, b.name);
    ck_assert_int_eq(strncmp(a.name, b.name, 17), 0); /* the same repository */
    ck_assert_int_eq(guts_packcache_init(&d, data, "o/s", ids, 2, ids + 2, 1), GUTS_OK);
    ck_assert_int_ne(strncmp(a.name, d.name, 16), 0);
    collect got = {.fail_after = SIZE_MAX};
    ck_assert_int_eq(guts_packcache_send(&a, collect_sink, &got), GUTS_ENOTFOUND);

    int rc;
    collect pack = write_entries(0, SIZE_MAX, &rc);
    ck_assert_int_eq(rc, GUTS_OK);
    ck_assert_int_eq(guts_packcache_begin(&a), GUTS_OK);
    guts_packcache_write(&a, pack.p, pack.n / 3);
    guts_packcache_write(&a, pack.p + pack.n / 3, pack.n - pack.n / 3);
    guts_packcache_commit(&a);
    ck_assert_int_eq(guts_packcache_send(&a, collect_sink, &got), GUTS_OK);
    ck_assert_uint_eq(got.n, pack.n);
    ck_assert_mem_eq(got.p, pack.p, pack.n);
    free(got.p);

    /* abandoned: no file, no temporary */
    ck_assert_int_eq(guts_packcache_begin(&b), GUTS_OK);
    guts_packcache_write(&b, pack.p, 100);
    guts_packcache_free(&b);
    list_dir(dir, names, sizeof names);
    ck_assert_str_eq(names, a.name);

    /* damaged: refused before its trailer goes, and removed */
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, a.name);
    flip_byte(path, 40);
    got = (collect){.fail_after = SIZE_MAX};
    ck_assert_int_eq(guts_packcache_send(&a, collect_sink, &got), GUTS_ECORRUPT);
    ck_assert_uint_eq(got.n, pack.n - 20);
    free(got.p);
    ck_assert_int_eq(access(path, F_OK), -1);

    /* three packs of o/r and one of o/s: the oldest of o/r goes */
    guts_packcache *all[] = {&a, &b, &d};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(guts_packcache_begin(all[i]), GUTS_OK);
        guts_packcache_write(all[i], pack.p, pack.n);
        guts_packcache_commit(all[i]);
        snprintf(path, sizeof path, "%s/%s", dir, all[i]->name);
        struct timespec t[2] = {{.tv_sec = 1000 + i}, {.tv_sec = 1000 + i}};
        ck_assert_int_eq(utimensat(AT_FDCWD, path, t, 0), 0);
    }
    /* left by a dead writer: an old one of o/r goes, a fresh one stays */
    char stale[256], fresh[256];
    snprintf(stale, sizeof stale, "%s/.%.17sdead.1-0", dir, a.name);
    snprintf(fresh, sizeof fresh, "%s/.%.17slive.2-0", dir, a.name);
    fclose(fopen(stale, "w"));
    fclose(fopen(fresh, "w"));
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    ck_assert_int_eq(utimensat(AT_FDCWD, stale, old, 0), 0);
    ck_assert_int_eq(guts_packcache_init(&c, data, "o/r", ids + 1, 2, NULL, 0), GUTS_OK);
    ck_assert_int_eq(guts_packcache_begin(&c), GUTS_OK);
    guts_packcache_write(&c, pack.p, pack.n);
    guts_packcache_commit(&c);
    list_dir(dir, names, sizeof names);
    ck_assert_ptr_null(strstr(names, a.name));
    ck_assert_ptr_nonnull(strstr(names, b.name));
    ck_assert_ptr_nonnull(strstr(names, c.name));
    ck_assert_ptr_nonnull(strstr(names, d.name));
    ck_assert_int_eq(access(stale, F_OK), -1);
    ck_assert_int_eq(unlink(fresh), 0);
    guts_packcache *left[] = {&b, &c, &d};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, left[i]->name);
        ck_assert_int_eq(unlink(path), 0);
    }
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(rmdir(data), 0);
    free(pack.p);
}
END_TEST

/* A request's key is its sets: a want named twice, or a tag offered for
 * include-tag that is also wanted, changes nothing. Another request's
 * pack is sent when the entry's own is absent (guts_packcache_also). Past
 * the budget the least recently served packs go, whatever their
 * repository, never the one just written; a follower of a pack being
 * written gets it as it grows, checked. */
static int grow_whole(void *ctx, uint64_t have, uint64_t *size, int *whole)
{
    uint64_t *steps = ctx; /* steps[0]: the file's length; two steps */
    *size = have ? steps[0] : steps[0] / 2;
    *whole = have != 0;
    return GUTS_OK;
}

START_TEST(test_pack_cache_keys_and_budget)
{
    char data[] = "/tmp/guts-packbudget-XXXXXX", dir[64], names[1024], path[256];
    ck_assert_ptr_nonnull(mkdtemp(data));
    snprintf(dir, sizeof dir, "%s/git-packs", data);
    guts_id x, y, z;
    memset(x.b, 1, sizeof x.b);
    memset(y.b, 2, sizeof y.b);
    memset(z.b, 3, sizeof z.b);
    guts_id w3[3] = {x, y, x}, w2[2] = {y, x};
    guts_packcache a, b, c;
    ck_assert_int_eq(guts_packcache_init(&a, data, "o/r", w3, 3, &y, 1), GUTS_OK);
    ck_assert_int_eq(guts_packcache_init(&b, data, "o/r", w2, 2, NULL, 0), GUTS_OK);
    ck_assert_str_eq(a.name, b.name);
    ck_assert_int_eq(guts_packcache_init(&c, data, "o/r", w2, 2, &z, 1), GUTS_OK);
    ck_assert_str_ne(a.name, c.name);

    int rc;
    collect pack = write_entries(0, SIZE_MAX, &rc);
    ck_assert_int_eq(rc, GUTS_OK);
    /* also: c has no pack, a's is sent for it */
    ck_assert_int_eq(guts_packcache_begin(&a), GUTS_OK);
    guts_packcache_write(&a, pack.p, pack.n);
    guts_packcache_commit(&a);
    collect got = {.fail_after = SIZE_MAX};
    ck_assert_int_eq(guts_packcache_send(&c, collect_sink, &got), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_packcache_also(&c, "o/r", &x, 1, NULL, 0), GUTS_OK);
    ck_assert_int_eq(guts_packcache_send(&c, collect_sink, &got), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_packcache_also(&c, "o/r", w3, 3, NULL, 0), GUTS_OK);
    ck_assert_int_eq(guts_packcache_send(&c, collect_sink, &got), GUTS_OK);
    ck_assert_uint_eq(got.n, pack.n);
    free(got.p);

    /* a follower: the file in two steps, the whole pack out, checked */
    snprintf(path, sizeof path, "%s/%s", dir, a.name);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    uint64_t len = pack.n;
    got = (collect){.fail_after = SIZE_MAX};
    ck_assert_int_eq(guts_packcache_follow(fd, grow_whole, &len, collect_sink, &got), GUTS_OK);
    ck_assert_uint_eq(got.n, pack.n);
    ck_assert_mem_eq(got.p, pack.p, pack.n);
    free(got.p);
    close(fd);
    ck_assert_int_eq(unlink(path), 0);

    /* budget: room for two packs and a half; repositories o/1..o/4 */
    guts_packcache r[4];
    for (int i = 0; i < 4; i++) {
        char key[8];
        snprintf(key, sizeof key, "o/%d", i + 1);
        ck_assert_int_eq(guts_packcache_init(&r[i], data, key, &x, 1, NULL, 0), GUTS_OK);
        r[i].budget = pack.n * 5 / 2;
        if (i == 3) { /* o/2 served: the most recently used now */
            got = (collect){.fail_after = SIZE_MAX};
            ck_assert_int_eq(guts_packcache_send(&r[1], collect_sink, &got), GUTS_OK);
            free(got.p);
        }
        ck_assert_int_eq(guts_packcache_begin(&r[i]), GUTS_OK);
        guts_packcache_write(&r[i], pack.p, pack.n);
        guts_packcache_commit(&r[i]);
        snprintf(path, sizeof path, "%s/%s", dir, r[i].name);
        struct timespec t[2] = {{.tv_sec = 1000 + i}, {.tv_sec = 1000 + i}};
        if (i < 3) ck_assert_int_eq(utimensat(AT_FDCWD, path, t, 0), 0);
        list_dir(dir, names, sizeof names);
        ck_assert_ptr_nonnull(strstr(names, r[i].name)); /* the one just written stays */
    }
    /* after o/3: o/1 went; after o/4: o/3 went (o/2 was served since) */
    ck_assert_ptr_null(strstr(names, r[0].name));
    ck_assert_ptr_nonnull(strstr(names, r[1].name));
    ck_assert_ptr_null(strstr(names, r[2].name));
    for (int i = 1; i < 4; i += 2) {
        snprintf(path, sizeof path, "%s/%s", dir, r[i].name);
        ck_assert_int_eq(unlink(path), 0);
    }
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(rmdir(data), 0);
    free(pack.p);
}
END_TEST

/* A cached pack with its object list is the base of another request's
 * pack of the same repository: found, asked, its entries appended as they
 * are; a damaged one is refused and removed. */
START_TEST(test_pack_cache_base)
{
    char data[] = "/tmp/guts-packbase-XXXXXX", path[256], names[1024];
    ck_assert_ptr_nonnull(mkdtemp(data));
    int rc;
    collect pack = write_entries(0, SIZE_MAX, &rc); /* 200 entries */
    ck_assert_int_eq(rc, GUTS_OK);
    guts_id ids[200], want[2], sel[201];
    for (int i = 0; i < 200; i++) {
        memset(ids[i].b, 0, GUTS_ID_LEN);
        ids[i].b[0] = (uint8_t)(i * 7);
        ids[i].b[1] = (uint8_t)i;
    }
    memset(want, 0x33, sizeof want);
    want[1].b[0] = 1;
    /* the next pack's objects: want[0] and a's, in another order */
    sel[0] = want[0];
    for (int i = 0; i < 200; i++)
        sel[1 + i] = ids[199 - i];
    guts_packcache a, b;
    ck_assert_int_eq(guts_packcache_init(&a, data, "o/r", want, 1, NULL, 0), GUTS_OK);
    ck_assert_int_eq(guts_packcache_find_base(&a, sel, 201), GUTS_ENOTFOUND); /* no directory yet */
    ck_assert_int_eq(guts_packcache_begin(&a), GUTS_OK);
    guts_packcache_objects(&a, ids, 200);
    guts_packcache_write(&a, pack.p, pack.n);
    guts_packcache_commit(&a);
    ck_assert_int_eq(guts_packcache_find_base(&a, sel, 201), GUTS_ENOTFOUND); /* not its own */
    ck_assert_int_eq(guts_packcache_init(&b, data, "o/r", want + 1, 1, NULL, 0), GUTS_OK);
    /* not when one of its objects is not in the new pack (a deleted ref's) */
    ck_assert_int_eq(guts_packcache_find_base(&b, sel, 200), GUTS_ENOTFOUND);
    ck_assert_uint_eq(b.nbase, 0);
    ck_assert_int_eq(guts_packcache_find_base(&b, sel, 201), GUTS_OK);
    ck_assert_str_eq(b.base, a.name);
    ck_assert_uint_eq(b.nbase, 200);
    ck_assert(guts_packcache_base_has(&b, &ids[123]));
    ck_assert(!guts_packcache_base_has(&b, &want[0]));
    /* of two packs whose objects are all in the new one, the larger: a
     * pack x of a's first 100 objects is chosen only when a's are not all
     * in (x's header says 100, as its list) */
    {
        guts_packcache x, f;
        guts_id xw = want[0];
        xw.b[1] = 2;
        ck_assert_int_eq(guts_packcache_init(&x, data, "o/r", &xw, 1, NULL, 0), GUTS_OK);
        ck_assert_int_eq(guts_packcache_begin(&x), GUTS_OK);
        guts_packcache_objects(&x, ids, 100);
        uint8_t head[12];
        memcpy(head, pack.p, 12);
        head[10] = 0, head[11] = 100;
        guts_packcache_write(&x, head, 12);
        guts_packcache_write(&x, pack.p + 12, pack.n - 12);
        guts_packcache_commit(&x);
        ck_assert_int_eq(guts_packcache_init(&f, data, "o/r", want + 1, 1, NULL, 0), GUTS_OK);
        ck_assert_int_eq(guts_packcache_find_base(&f, sel, 201), GUTS_OK);
        ck_assert_str_eq(f.base, a.name);
        ck_assert_uint_eq(f.nbase, 200);
        guts_id part[101];
        part[0] = want[0];
        memcpy(part + 1, ids, 100 * sizeof *ids);
        ck_assert_int_eq(guts_packcache_find_base(&f, part, 101), GUTS_OK);
        ck_assert_str_eq(f.base, x.name);
        ck_assert_uint_eq(f.nbase, 100);
        guts_packcache_free(&f);
        snprintf(path, sizeof path, "%s/git-packs/%s", data, x.name);
        ck_assert_int_eq(unlink(path), 0);
        snprintf(path, sizeof path, "%s/git-packs/%.*s.ids", data, (int)(strlen(x.name) - 5),
                 x.name);
        ck_assert_int_eq(unlink(path), 0);
    }
    collect got = {.fail_after = SIZE_MAX};
    guts_packw w;
    ck_assert_int_eq(guts_packw_open(&w, -1, 1, 0, 201), GUTS_OK);
    w.sink = collect_sink;
    w.sink_ctx = &got;
    ck_assert_int_eq(guts_packcache_base_entries(&b, &w), GUTS_OK);
    ck_assert_int_eq(guts_packw_object(&w, 3, "new", 3), GUTS_OK);
    uint8_t sum[20];
    ck_assert_int_eq(guts_packw_finish(&w, sum), GUTS_OK);
    guts_packw_free(&w);
    ck_assert_mem_eq(got.p, "PACK\0\0\0\2\0\0\0\xc9", 12);
    ck_assert_mem_eq(got.p + 12, pack.p + 12, pack.n - 32);
    free(got.p);
    /* an object list that disagrees with its pack's count is not read
     * (its size is checked before anything is allocated) */
    char ids_path[300];
    snprintf(ids_path, sizeof ids_path, "%s/git-packs/%.*s.ids", data,
             (int)(strlen(a.name) - 5), a.name);
    ck_assert_int_eq(truncate(ids_path, (off_t)GUTS_ID_LEN << 39), 0); /* sparse: 10 TiB */
    guts_packcache e;
    ck_assert_int_eq(guts_packcache_init(&e, data, "o/r", want + 1, 1, NULL, 0), GUTS_OK);
    ck_assert_int_eq(guts_packcache_find_base(&e, sel, 201), GUTS_ENOTFOUND);
    ck_assert_uint_eq(e.nbase, 0);
    ck_assert_int_eq(truncate(ids_path, 200 * GUTS_ID_LEN), 0);
    ck_assert_int_eq(guts_packcache_find_base(&e, sel, 201), GUTS_OK);
    ck_assert_uint_eq(e.nbase, 200);
    guts_packcache_free(&e);
    /* damaged: refused, removed */
    snprintf(path, sizeof path, "%s/git-packs/%s", data, a.name);
    flip_byte(path, 100);
    got = (collect){.fail_after = SIZE_MAX};
    ck_assert_int_eq(guts_packw_open(&w, -1, 1, 0, 201), GUTS_OK);
    w.sink = collect_sink;
    w.sink_ctx = &got;
    ck_assert_int_eq(guts_packcache_base_entries(&b, &w), GUTS_ECORRUPT);
    guts_packw_free(&w);
    free(got.p);
    ck_assert_int_eq(access(path, F_OK), -1);
    guts_packcache_free(&b);
    /* and its list with it */
    snprintf(path, sizeof path, "%s/git-packs", data);
    list_dir(path, names, sizeof names);
    ck_assert_str_eq(names, "");
    ck_assert_int_eq(rmdir(path), 0);
    ck_assert_int_eq(rmdir(data), 0);
    free(pack.p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pack");
    TCase *t = tcase_create("delta");
    tcase_add_test(t, test_edits_rebuild_exactly_and_briefly);
    tcase_add_test(t, test_one_line_change_in_repetitive_text_is_a_small_delta);
    tcase_add_test(t, test_corner_encodings);
    tcase_add_test(t, test_no_delta_when_nothing_matches_or_too_long);
    tcase_add_test(t, test_entries_collected_in_memory_make_the_same_pack);
    tcase_add_test(t, test_fast_entries_past_the_buffer_go_out_whole);
    tcase_add_test(t, test_async_writer_writes_the_same_pack);
    tcase_add_test(t, test_adler32_is_zlibs);
    tcase_add_test(t, test_fast_deflate_inflates_back_to_its_input);
    tcase_add_test(t, test_zstd_literals_and_copies_rebuild_the_content_undecoded);
    tcase_add_test(t, test_deflate_from_a_zstd_frames_own_matches_inflates_back);
    tcase_add_test(t, test_store_gives_a_zstd_deltas_copies);
    tcase_add_test(t, test_pack_cache);
    tcase_add_test(t, test_pack_cache_base);
    tcase_add_test(t, test_pack_cache_keys_and_budget);
    suite_add_tcase(s, t);
    return test_run(s, CK_FORK_GETENV);
}
