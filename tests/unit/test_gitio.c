/* test_gitio.c - the git bridge's formats and ordering, without git: the
 * pack entry header and its zlib stream, the pack index (including the
 * 64-bit offset table no end-to-end test can reach without a 2 GiB pack),
 * the parsing of cat-file's lines, and the import order that puts every
 * delta base before the objects built on it; the import's pack reader,
 * on packs made here and damaged every way a byte can be. The helpers it checks one by
 * one are declared in the git bridge's private header, git/gitio_int.h.
 */
#include <check.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "gitio_int.h"
#include "pack.h"
#include "packread.h"
#include "test_run.h"

/* One directory for the test case, made and removed by the parent process
 * (an unchecked fixture), so a failing test, whose forked process exits
 * without a teardown, still leaves nothing behind. Tests use distinct names
 * inside it. */
static char dir[64];

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(dir, "/tmp/guts-test-gitio.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
}

static void teardown(void)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static guts_id id_of_byte(uint8_t first, uint8_t last)
{
    guts_id id;
    memset(&id, 0x11, sizeof id);
    id.b[0] = first;
    id.b[GUTS_ID_LEN - 1] = last;
    return id;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- Pack entries -------------------------------------------------------- */

/* Write one object through guts_packw_object into a pack in a temp file
 * and return the entry's bytes (after the 12-byte pack header). */
static uint8_t *pack_one(int type, const void *data, size_t len, int level, size_t *out_len,
                         uint32_t *crc)
{
    char path[128];
    uint8_t sum[20];
    snprintf(path, sizeof path, "%s/entry", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    guts_packw w;
    ck_assert(fd >= 0);
    ck_assert_int_eq(guts_packw_open(&w, fd, level, 1, 1), GUTS_OK);
    uint64_t start = guts_packw_offset(&w);
    ck_assert_uint_eq(start, 12);
    ck_assert_int_eq(guts_packw_object(&w, type, data, len), GUTS_OK);
    *crc = w.crc;
    *out_len = (size_t)(guts_packw_offset(&w) - start);
    ck_assert_int_eq(guts_packw_finish(&w, sum), GUTS_OK);
    ck_assert_uint_eq(w.total, start + *out_len + 20);
    guts_packw_free(&w);
    uint8_t *bytes = malloc(*out_len);
    ck_assert_int_eq(pread(fd, bytes, *out_len, (off_t)start), (ssize_t)*out_len);
    close(fd);
    return bytes;
}

START_TEST(test_pack_entry_header_is_git_type_and_size_varint)
{
    /* (type << 4 | size & 15), continuation bit, then 7 bits at a time. */
    static const struct {
        int type;
        size_t len;
        uint8_t hdr[5];
        size_t hlen;
    } cases[] = {
        {GUTS_OBJ_BLOB, 0, {0x30}, 1},
        {GUTS_OBJ_COMMIT, 15, {0x1f}, 1},
        {GUTS_OBJ_TREE, 16, {0xa0, 0x01}, 2},
        {GUTS_OBJ_TAG, 1000000, {0xc0, 0xa4, 0xe8, 0x03}, 4}, /* 0xf4240 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *content = calloc(1, cases[i].len + 1);
        size_t n;
        uint32_t crc;
        uint8_t *e = pack_one(cases[i].type, content, cases[i].len, 1, &n, &crc);
        ck_assert_mem_eq(e, cases[i].hdr, cases[i].hlen);
        free(e);
        free(content);
    }
}
END_TEST

START_TEST(test_pack_entry_inflates_to_the_content_and_crc_covers_the_entry)
{
    size_t len = 300000, n;
    uint8_t *content = malloc(len), *back = malloc(len);
    for (size_t i = 0; i < len; i++)
        content[i] = (uint8_t)(i * 7 + i / 1000);
    for (int level = 0; level <= 9; level += 9) {
        uint32_t crc;
        uint8_t *e = pack_one(GUTS_OBJ_BLOB, content, len, level, &n, &crc);
        size_t h = 1;
        while (e[h - 1] & 0x80)
            h++;
        uLongf got = len;
        ck_assert_int_eq(uncompress(back, &got, e + h, n - h), Z_OK);
        ck_assert_uint_eq(got, len);
        ck_assert_mem_eq(back, content, len);
        ck_assert_uint_eq(crc, crc32(0, e, (uInt)n));
        free(e);
    }
    free(content);
    free(back);
}
END_TEST

/* ---- Reading packs (packread.c) -------------------------------------------- */

/* A pack built here byte by byte: a whole blob, a REF_DELTA on it, an
 * OFS_DELTA on that (a chain of two), a whole commit; and its index from
 * gitio_write_idx. */
typedef struct tpack {
    uint8_t pack[8192], idx[4096];
    size_t plen, ilen;
    guts_id ids[4];
    uint8_t *content[4];
    size_t clen[4];
    int types[4];
    uint8_t *delta[4]; /* git delta of entries 1 and 2 */
    size_t dlen[4];
} tpack;

static size_t entry_hdr(uint8_t *p, int type, size_t size)
{
    size_t k = 0;
    uint8_t c = (uint8_t)(type << 4 | (size & 15));
    size >>= 4;
    while (size) {
        p[k++] = c | 0x80;
        c = size & 0x7f;
        size >>= 7;
    }
    p[k++] = c;
    return k;
}

static void tpack_entry(tpack *t, const uint8_t *pre, size_t prelen, const uint8_t *data,
                        size_t len)
{
    memcpy(t->pack + t->plen, pre, prelen);
    t->plen += prelen;
    uLongf zl = sizeof t->pack - t->plen - 20;
    ck_assert_int_eq(compress2(t->pack + t->plen, &zl, data, len, 6), Z_OK);
    t->plen += zl;
}

static void tpack_make(tpack *t)
{
    memset(t, 0, sizeof *t);
    const char *base = "static int unchanged_line_one(void) { return 1; }\n"
                       "static int unchanged_line_two(void) { return 2; }\n"
                       "static int unchanged_line_three(void) { return 3; }\n";
    const char *mid = "static int unchanged_line_one(void) { return 1; }\n"
                      "static int a_new_line(void) { return 42; }\n"
                      "static int unchanged_line_two(void) { return 2; }\n"
                      "static int unchanged_line_three(void) { return 3; }\n";
    const char *top = "static int unchanged_line_one(void) { return 1; }\n"
                      "static int a_new_line(void) { return 42; }\n"
                      "static int unchanged_line_two(void) { return 2; }\n";
    const char *commit = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
                         "author A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nm\n";
    const char *texts[4] = {base, mid, top, commit};
    int types[4] = {GUTS_OBJ_BLOB, GUTS_OBJ_BLOB, GUTS_OBJ_BLOB, GUTS_OBJ_COMMIT};
    for (int i = 0; i < 4; i++) {
        t->types[i] = types[i];
        t->clen[i] = strlen(texts[i]);
        t->content[i] = (uint8_t *)strdup(texts[i]);
        ck_assert_int_eq(guts_obj_hash(types[i], texts[i], t->clen[i], &t->ids[i]), 0);
    }
    for (int i = 1; i <= 2; i++)
        ck_assert_int_eq(guts_pack_delta(t->content[i - 1], t->clen[i - 1], t->content[i],
                                         t->clen[i], t->clen[i], &t->delta[i], &t->dlen[i]),
                         GUTS_OK);
    memcpy(t->pack, "PACK\0\0\0\x02\0\0\0\x04", 12);
    t->plen = 12;
    pentry e[4];
    uint8_t pre[64];
    size_t k;
    e[0].off = t->plen;
    k = entry_hdr(pre, GUTS_OBJ_BLOB, t->clen[0]);
    tpack_entry(t, pre, k, t->content[0], t->clen[0]);
    e[1].off = t->plen;
    k = entry_hdr(pre, 7, t->dlen[1]);
    memcpy(pre + k, t->ids[0].b, GUTS_ID_LEN);
    tpack_entry(t, pre, k + GUTS_ID_LEN, t->delta[1], t->dlen[1]);
    e[2].off = t->plen;
    k = entry_hdr(pre, 6, t->dlen[2]);
    uint64_t rel = e[2].off - e[1].off; /* one byte: the pack is small */
    ck_assert_uint_lt(rel, 128);
    pre[k++] = (uint8_t)rel;
    tpack_entry(t, pre, k, t->delta[2], t->dlen[2]);
    e[3].off = t->plen;
    k = entry_hdr(pre, GUTS_OBJ_COMMIT, t->clen[3]);
    tpack_entry(t, pre, k, t->content[3], t->clen[3]);
    memset(t->pack + t->plen, 0x77, 20); /* the trailer: not checked */
    t->plen += 20;
    for (int i = 0; i < 4; i++) {
        e[i].id = t->ids[i];
        e[i].crc = 0;
    }
    char path[128], err[GUTS_GITIO_ERR_MAX];
    uint8_t sum[20] = {0};
    snprintf(path, sizeof path, "%s/t.idx", dir);
    unlink(path); /* another test's: gitio_write_idx makes a new file */
    ck_assert_int_eq(gitio_write_idx(path, e, 4, sum, err), GUTS_OK);
    FILE *f = fopen(path, "rb");
    t->ilen = fread(t->idx, 1, sizeof t->idx, f);
    fclose(f);
    ck_assert_uint_gt(t->ilen, 1072);
}

static void tpack_free(tpack *t)
{
    for (int i = 0; i < 4; i++) {
        free(t->content[i]);
        free(t->delta[i]);
    }
}

START_TEST(test_packread_reads_whole_objects_and_delta_chains)
{
    tpack t;
    tpack_make(&t);
    guts_packs ps;
    char err[GUTS_GITIO_ERR_MAX];
    memset(&ps, 0, sizeof ps);
    ck_assert_int_eq(guts_packs_add(&ps, "t.pack", t.idx, t.ilen, t.pack, t.plen, err), GUTS_OK);
    /* Twice in two orders: from the files, then from the cache. */
    static const int orders[2][4] = {{2, 0, 1, 3}, {0, 1, 2, 3}};
    for (int round = 0; round < 2; round++)
        for (int j = 0; j < 4; j++) {
            int i = orders[round][j], type;
            const uint8_t *d, *gd;
            size_t len, gdl;
            ck_assert(guts_packs_has(&ps, &t.ids[i]));
            ck_assert_int_eq(guts_packs_read(&ps, &t.ids[i], &type, &d, &len, &gd, &gdl, err), GUTS_OK);
            ck_assert_int_eq(type, t.types[i]);
            ck_assert_uint_eq(len, t.clen[i]);
            ck_assert_mem_eq(d, t.content[i], len);
            if (round == 0 && (i == 1 || i == 2) && gd) { /* read from its entry: its delta */
                ck_assert_uint_eq(gdl, t.dlen[i]);
                ck_assert_mem_eq(gd, t.delta[i], gdl);
            }
            if (i == 0 || i == 3) ck_assert_ptr_null(gd);
        }
    guts_id absent = id_of_byte(0x42, 0x42);
    int type;
    const uint8_t *d;
    size_t len;
    ck_assert(!guts_packs_has(&ps, &absent));
    ck_assert_int_eq(guts_packs_read(&ps, &absent, &type, &d, &len, NULL, NULL, err), GUTS_ENOTFOUND);
    guts_packs_close(&ps);
    tpack_free(&t);
}
END_TEST

/* Whatever a damaged pack or index holds, reading it fails cleanly (under
 * ASan: no read outside the files) or gives content the store will hash:
 * every truncation of both files and every single byte changed. */
static void read_all_damaged(const tpack *t, const uint8_t *idx, size_t ilen, const uint8_t *pack,
                             size_t plen)
{
    guts_packs ps;
    char err[GUTS_GITIO_ERR_MAX];
    memset(&ps, 0, sizeof ps);
    err[0] = 0;
    int rc = guts_packs_add(&ps, "bad.pack", idx, ilen, pack, plen, err);
    if (rc) {
        ck_assert(rc == GUTS_ECORRUPT || rc == GUTS_ENOTFOUND);
        ck_assert_ptr_nonnull(strstr(err, "bad.pack"));
        guts_packs_close(&ps);
        return;
    }
    for (int i = 0; i < 4; i++) {
        int type;
        const uint8_t *d, *gd;
        size_t len, gdl;
        err[0] = 0;
        rc = guts_packs_read(&ps, &t->ids[i], &type, &d, &len, &gd, &gdl, err);
        ck_assert(rc == GUTS_OK || rc == GUTS_ECORRUPT || rc == GUTS_ETOOBIG || rc == GUTS_ENOTFOUND);
        if (rc == GUTS_ECORRUPT || rc == GUTS_ETOOBIG) ck_assert_ptr_nonnull(strstr(err, "bad.pack"));
        if (rc == GUTS_OK && len) ck_assert_uint_ne(d[len - 1] + 1, 0); /* readable */
    }
    guts_packs_close(&ps);
}

START_TEST(test_packread_damaged_or_truncated_files_fail_cleanly)
{
    tpack t;
    tpack_make(&t);
    for (size_t n = 0; n < t.ilen; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exactly n bytes: ASan sees past them */
        memcpy(cut, t.idx, n);
        read_all_damaged(&t, cut, n, t.pack, t.plen);
        free(cut);
    }
    for (size_t n = 0; n < t.plen; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, t.pack, n);
        read_all_damaged(&t, t.idx, t.ilen, cut, n);
        free(cut);
    }
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    for (size_t k = 0; k < sizeof flips; k++) {
        for (size_t pos = 0; pos < t.plen; pos++) {
            uint8_t *bad = malloc(t.plen);
            memcpy(bad, t.pack, t.plen);
            bad[pos] ^= flips[k];
            read_all_damaged(&t, t.idx, t.ilen, bad, t.plen);
            free(bad);
        }
        for (size_t pos = 0; pos < t.ilen; pos++) {
            uint8_t *bad = malloc(t.ilen);
            memcpy(bad, t.idx, t.ilen);
            bad[pos] ^= flips[k];
            read_all_damaged(&t, bad, t.ilen, t.pack, t.plen);
            free(bad);
        }
    }
    tpack_free(&t);
}
END_TEST

START_TEST(test_packread_ref_delta_loop_ends_with_an_error)
{
    tpack t;
    tpack_make(&t);
    /* Entry 1 (a REF_DELTA on entry 0) made a delta on itself. */
    uint8_t *p = t.pack;
    size_t at = 12;
    while (at < t.plen) { /* find entry 1's base id, which names entry 0 */
        if (memcmp(p + at, t.ids[0].b, GUTS_ID_LEN) == 0) break;
        at++;
    }
    ck_assert_uint_lt(at, t.plen);
    memcpy(p + at, t.ids[1].b, GUTS_ID_LEN);
    guts_packs ps;
    char err[GUTS_GITIO_ERR_MAX];
    memset(&ps, 0, sizeof ps);
    ck_assert_int_eq(guts_packs_add(&ps, "loop.pack", t.idx, t.ilen, t.pack, t.plen, err), GUTS_OK);
    int type;
    const uint8_t *d;
    size_t len;
    ck_assert_int_eq(guts_packs_read(&ps, &t.ids[1], &type, &d, &len, NULL, NULL, err), GUTS_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "loop.pack"));
    ck_assert_ptr_nonnull(strstr(err, "chain"));
    guts_packs_close(&ps);
    tpack_free(&t);
}
END_TEST

START_TEST(test_packread_opens_a_repositorys_packs)
{
    tpack t;
    tpack_make(&t);
    char path[256], err[GUTS_GITIO_ERR_MAX];
    snprintf(path, sizeof path, "%s/repo", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/repo/objects", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/repo/objects/pack", dir);
    mkdir(path, 0700);
    const char *names[2] = {"pack-1.idx", "pack-1.pack"};
    const uint8_t *bytes[2] = {t.idx, t.pack};
    size_t lens[2] = {t.ilen, t.plen};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/repo/objects/pack/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        ck_assert_uint_eq(fwrite(bytes[i], 1, lens[i], f), lens[i]);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/repo", dir);
    guts_packs ps;
    ck_assert_int_eq(guts_packs_open(&ps, path, err), GUTS_OK);
    ck_assert_uint_eq(ps.n, 1);
    int type;
    const uint8_t *d;
    size_t len;
    ck_assert_int_eq(guts_packs_read(&ps, &t.ids[2], &type, &d, &len, NULL, NULL, err), GUTS_OK);
    ck_assert_mem_eq(d, t.content[2], len);
    guts_packs_close(&ps);
    /* A damaged index: one line naming the file. */
    snprintf(path, sizeof path, "%s/repo/objects/pack/pack-1.idx", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 8 + 4 * 255, SEEK_SET);
    fputc(0x7f, f); /* the count */
    fclose(f);
    snprintf(path, sizeof path, "%s/repo", dir);
    ck_assert_int_eq(guts_packs_open(&ps, path, err), GUTS_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "pack-1.pack"));
    ck_assert_ptr_null(strchr(err, '\n'));
    /* No pack directory: no packs, no error. */
    ck_assert_int_eq(guts_packs_open(&ps, dir, err), GUTS_OK);
    ck_assert_uint_eq(ps.n, 0);
    guts_packs_close(&ps);
    tpack_free(&t);
}
END_TEST

/* ---- Pack index ---------------------------------------------------------- */

START_TEST(test_idx_is_sorted_with_fanout_crcs_and_64_bit_offsets)
{
    pentry e[] = {
        {id_of_byte(0xf0, 1), 0x100000010ull, 0xcccccccc},
        {id_of_byte(0x00, 2), 12, 0xaaaaaaaa},
        {id_of_byte(0x7f, 3), 0x80000000ull, 0xbbbbbbbb},
        {id_of_byte(0x7f, 4), 0x7fffffffull, 0xdddddddd},
    };
    uint8_t packsum[20];
    char path[128], err[GUTS_GITIO_ERR_MAX];
    memset(packsum, 0x5a, sizeof packsum);
    snprintf(path, sizeof path, "%s/pack.idx", dir);
    ck_assert_int_eq(gitio_write_idx(path, e, 4, packsum, err), GUTS_OK);

    FILE *f = fopen(path, "rb");
    uint8_t b[4096];
    size_t len = fread(b, 1, sizeof b, f);
    fclose(f);
    /* header, fanout, 4 ids, 4 crcs, 4 offsets, 2 large offsets, 2 sums */
    ck_assert_uint_eq(len, 8 + 1024 + 4 * 28 + 2 * 8 + 40);
    ck_assert_mem_eq(b, "\377tOc\0\0\0\2", 8);
    ck_assert_uint_eq(rd32(b + 8 + 0 * 4), 1); /* ids starting 0x00 */
    ck_assert_uint_eq(rd32(b + 8 + 0x7e * 4), 1);
    ck_assert_uint_eq(rd32(b + 8 + 0x7f * 4), 3);
    ck_assert_uint_eq(rd32(b + 8 + 0xef * 4), 3);
    ck_assert_uint_eq(rd32(b + 8 + 0xff * 4), 4);
    const uint8_t *ids = b + 8 + 1024, *crcs = ids + 4 * 20, *offs = crcs + 16, *big = offs + 16;
    static const uint8_t order_last[] = {2, 3, 4, 1}; /* sorted: 00.., 7f..03, 7f..04, f0.. */
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(ids[i * 20 + 19], order_last[i]);
    ck_assert_uint_eq(rd32(crcs + 0), 0xaaaaaaaa);
    ck_assert_uint_eq(rd32(crcs + 4), 0xbbbbbbbb);
    ck_assert_uint_eq(rd32(crcs + 12), 0xcccccccc);
    ck_assert_uint_eq(rd32(offs + 0), 12);
    ck_assert_uint_eq(rd32(offs + 4), 0x80000000u);  /* large table entry 0 */
    ck_assert_uint_eq(rd32(offs + 8), 0x7fffffffu);  /* the largest small one */
    ck_assert_uint_eq(rd32(offs + 12), 0x80000001u); /* large table entry 1 */
    ck_assert_uint_eq(rd32(big + 0), 0);
    ck_assert_uint_eq(rd32(big + 4), 0x80000000u);
    ck_assert_uint_eq(rd32(big + 8), 1);
    ck_assert_uint_eq(rd32(big + 12), 0x10);
    ck_assert_mem_eq(big + 16, packsum, 20);
    uint8_t sum[20];
    unsigned sl;
    EVP_Digest(b, len - 20, sum, &sl, EVP_sha1(), NULL);
    ck_assert_mem_eq(b + len - 20, sum, 20);
}
END_TEST

START_TEST(test_idx_refuses_a_duplicate_id)
{
    pentry e[] = {{id_of_byte(1, 1), 12, 0}, {id_of_byte(1, 1), 40, 0}};
    uint8_t packsum[20] = {0};
    char path[128], err[GUTS_GITIO_ERR_MAX];
    snprintf(path, sizeof path, "%s/dup.idx", dir);
    ck_assert_int_eq(gitio_write_idx(path, e, 2, packsum, err), GUTS_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* ---- cat-file lines ------------------------------------------------------ */

#define HEX_A "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
#define HEX_0 "0000000000000000000000000000000000000000"

START_TEST(test_check_line_parses_id_type_size_and_delta_base)
{
    char line[] = HEX_A " blob 123 " HEX_A;
    iobj o;
    ck_assert_int_eq(gitio_parse_check_line(line, &o, NULL), GUTS_OK);
    ck_assert_int_eq(o.type, GUTS_OBJ_BLOB);
    ck_assert_uint_eq(o.size, 123);
    ck_assert_int_eq(guts_id_cmp(&o.id, &o.base_id), 0);
    ck_assert_uint_eq(o.base, NONE);
}
END_TEST

START_TEST(test_check_line_rejects_malformed_lines)
{
    static const char *bad[] = {
        "",
        HEX_A,
        HEX_A " blob 1",
        HEX_A " blob 1 " HEX_0 " extra",
        HEX_A " blobby 1 " HEX_0,
        HEX_A " blob -1 " HEX_0,
        HEX_A " blob 1x " HEX_0,
        HEX_A " blob  " HEX_0,
        HEX_A "0 blob 1 " HEX_0,
        "g69de29bb2d1d6434b8b29ae775ad8c2e48c5391 blob 1 " HEX_0,
        HEX_A " blob 1 " HEX_0 "00",
        HEX_A " blob 99999999999999999999999 " HEX_0,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[256];
        iobj o;
        snprintf(line, sizeof line, "%s", bad[i]);
        ck_assert_msg(gitio_parse_check_line(line, &o, NULL) != GUTS_OK, "accepted \"%s\"", bad[i]);
    }
}
END_TEST

START_TEST(test_check_line_with_a_path_takes_the_rest_of_the_line)
{
    char *path = NULL;
    iobj o;
    char spaced[] = HEX_A " blob 7 " HEX_0 " src/a file  with spaces.txt";
    ck_assert_int_eq(gitio_parse_check_line(spaced, &o, &path), GUTS_OK);
    ck_assert_str_eq(path, "src/a file  with spaces.txt");
    ck_assert(guts_id_is_zero(&o.base_id));
    char root[] = HEX_A " tree 7 " HEX_0 " ";
    ck_assert_int_eq(gitio_parse_check_line(root, &o, &path), GUTS_OK);
    ck_assert_str_eq(path, "");
    char none[] = HEX_A " commit 7 " HEX_0; /* the path field is required */
    ck_assert_int_ne(gitio_parse_check_line(none, &o, &path), GUTS_OK);
}
END_TEST

START_TEST(test_path_hints_only_when_git_left_many_trees_and_blobs_whole)
{
    iobj o[8];
    ilist L = {.o = o, .n = 8, .cap = 8};
    memset(o, 0, sizeof o);
    for (int i = 0; i < 8; i++) {
        o[i].type = i < 2 ? GUTS_OBJ_COMMIT : GUTS_OBJ_BLOB; /* 6 blobs */
        o[i].base_id = id_of_byte(0x10, (uint8_t)i);
    }
    ck_assert(!gitio_hints_pay(&L)); /* every blob a git delta */
    memset(&o[2].base_id, 0, sizeof o[2].base_id);
    ck_assert(!gitio_hints_pay(&L)); /* 1 of 6 whole */
    memset(&o[3].base_id, 0, sizeof o[3].base_id);
    ck_assert(gitio_hints_pay(&L)); /* 2 of 6: at least a quarter */
    memset(&o[0].base_id, 0, sizeof o[0].base_id); /* commits do not count */
    L.n = 2;
    ck_assert(!gitio_hints_pay(&L)); /* no tree or blob */
}
END_TEST

START_TEST(test_path_hints_chain_each_path_and_keep_types_apart)
{
    phints t = {0};
    uint32_t prev;
    /* Enough paths to grow the table several times. */
    for (uint32_t i = 0; i < 20000; i++) {
        char path[32];
        snprintf(path, sizeof path, "d/f%u", i % 5000);
        ck_assert_int_eq(gitio_phints_swap(&t, gitio_path_hash(GUTS_OBJ_BLOB, path), i, &prev),
                         GUTS_OK);
        ck_assert_uint_eq(prev, i < 5000 ? NONE : i - 5000);
    }
    ck_assert_uint_eq(t.n, 5000);
    ck_assert_int_eq(gitio_phints_swap(&t, gitio_path_hash(GUTS_OBJ_TREE, "d/f1"), 7, &prev),
                     GUTS_OK);
    ck_assert_uint_eq(prev, NONE);
    ck_assert_int_eq(gitio_phints_swap(&t, gitio_path_hash(GUTS_OBJ_BLOB, "d/f1"), 8, &prev),
                     GUTS_OK);
    ck_assert_uint_eq(prev, 15001);
    free(t.key);
    free(t.idx);
}
END_TEST

START_TEST(test_batch_header_must_match_the_listing)
{
    iobj o;
    char ok[] = HEX_A " blob 0 " HEX_0;
    ck_assert_int_eq(gitio_parse_check_line(ok, &o, NULL), GUTS_OK);
    char same[] = HEX_A " blob 0";
    ck_assert_int_eq(gitio_check_header(same, &o), GUTS_OK);
    static const char *bad[] = {HEX_0 " blob 0", HEX_A " tree 0", HEX_A " blob 1", HEX_A " missing",
                                HEX_A " blob 0 extra"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "%s", bad[i]);
        ck_assert_msg(gitio_check_header(line, &o) != GUTS_OK, "accepted \"%s\"", bad[i]);
    }
}
END_TEST

/* ---- Import order -------------------------------------------------------- */

/* Objects 0..n-1 with delta bases given by index (-1: none, -2: a base id
 * not in the list); returns the list. */
static ilist make_list(const int *base, size_t n)
{
    ilist L = {.o = calloc(n, sizeof(iobj)), .n = n, .cap = n};
    for (size_t i = 0; i < n; i++) {
        char content[32];
        snprintf(content, sizeof content, "object %zu\n", i);
        ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, content, strlen(content), &L.o[i].id), 0);
        L.o[i].type = GUTS_OBJ_BLOB;
        L.o[i].size = strlen(content);
        L.o[i].hint = L.o[i].base = L.o[i].child = L.o[i].sib = NONE;
    }
    for (size_t i = 0; i < n; i++) {
        if (base[i] >= 0) L.o[i].base_id = L.o[base[i]].id;
        if (base[i] == -2) L.o[i].base_id = id_of_byte(0xee, 0xee);
    }
    return L;
}

static void check_bases_first(const ilist *L, const uint32_t *order, size_t n)
{
    int *pos = malloc(L->n * sizeof *pos);
    for (size_t i = 0; i < L->n; i++)
        pos[i] = -1;
    for (size_t k = 0; k < n; k++) {
        ck_assert_int_eq(pos[order[k]], -1); /* each once */
        pos[order[k]] = (int)k;
    }
    for (size_t i = 0; i < L->n; i++) {
        uint32_t b = L->o[i].base;
        if (pos[i] >= 0 && b != NONE && pos[b] >= 0)
            ck_assert_msg(pos[b] < pos[i], "object %zu before its base %u", i, b);
    }
    free(pos);
}

/* A plan test's store: key in a fresh data dir (closed by plan_done). */
static guts_repo *plan_repo(const char *key, guts_data **d)
{
    guts_repo *r;
    ck_assert_int_eq(guts_data_open(dir, GUTS_DATA_CREATE, d), 0);
    ck_assert_int_eq(guts_repo_open(*d, key, GUTS_REPO_CREATE, &r), 0);
    return r;
}

/* gitio_plan_import over L, which must succeed; the order, *n entries long. */
static uint32_t *plan(guts_repo *r, ilist *L, size_t *n)
{
    char err[GUTS_GITIO_ERR_MAX];
    uint32_t *order, *perm = gitio_list_index(L);
    ck_assert_ptr_nonnull(perm);
    ck_assert_int_eq(gitio_plan_import(r, L, perm, &order, n, err), GUTS_OK);
    free(perm);
    return order;
}

static void plan_done(guts_data *d, guts_repo *r, ilist *L, uint32_t *order)
{
    free(order);
    free(L->o);
    guts_repo_close(r);
    guts_data_close(d);
}

START_TEST(test_plan_puts_every_delta_base_before_its_dependents)
{
    /* Chains in both directions of the list order, a fan-out and an absent
     * base: 5 <- 4 <- 0, 5 <- 3, 1 <- 2, 6 has a base git named but did not
     * list. */
    static const int base[] = {4, -1, 1, 5, 5, -1, -2, 0};
    guts_data *d;
    guts_repo *r = plan_repo("t/plan1", &d);
    ilist L = make_list(base, 8);
    size_t n;
    uint32_t *order = plan(r, &L, &n);
    ck_assert_uint_eq(n, 8);
    ck_assert_uint_eq(L.o[0].base, 4);
    ck_assert_uint_eq(L.o[6].base, NONE);
    check_bases_first(&L, order, n);
    plan_done(d, r, &L, order);
}
END_TEST

START_TEST(test_plan_skips_stored_objects_and_starts_chains_at_them)
{
    static const int base[] = {-1, 0, 1, 2};
    guts_data *d;
    guts_repo *r = plan_repo("t/plan2", &d);
    ilist L = make_list(base, 4);
    /* Store objects 0 and 1 first: only 2 and 3 remain, 2 first. */
    for (int i = 0; i < 2; i++) {
        char content[32];
        snprintf(content, sizeof content, "object %d\n", i);
        guts_obj o = {
            .id = L.o[i].id, .type = GUTS_OBJ_BLOB, .data = content, .len = strlen(content)};
        ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, NULL), 0);
    }
    size_t n;
    uint32_t *order = plan(r, &L, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(order[0], 2);
    ck_assert_uint_eq(order[1], 3);
    plan_done(d, r, &L, order);
}
END_TEST

START_TEST(test_plan_takes_path_hints_that_cannot_close_a_cycle)
{
    /* git: 1 is a delta against 0, 0, 2 and 3 are whole. Hints (the same
     * path listed earlier): 0 -> 1 would close a cycle with git's edge
     * (0 is git's base: refused); 2 -> 1 and 3 -> 2 are taken; 1 has a git
     * base already, so its hint is ignored. */
    static const int base[] = {-1, 0, -1, -1};
    guts_data *d;
    guts_repo *r = plan_repo("t/plan3", &d);
    ilist L = make_list(base, 4);
    L.o[0].hint = 1;
    L.o[1].hint = 3;
    L.o[2].hint = 1;
    L.o[3].hint = 2;
    size_t n;
    uint32_t *order = plan(r, &L, &n);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(L.o[0].base, NONE);
    ck_assert(guts_id_is_zero(&L.o[0].base_id));
    ck_assert_uint_eq(L.o[1].base, 0);
    ck_assert_uint_eq(L.o[2].base, 1);
    ck_assert_int_eq(guts_id_cmp(&L.o[2].base_id, &L.o[1].id), 0);
    ck_assert_uint_eq(L.o[3].base, 2);
    check_bases_first(&L, order, n);
    ck_assert_uint_eq(order[0], 0);
    plan_done(d, r, &L, order);
}
END_TEST

/* ---- Import's ref rule ----------------------------------------------------- */

START_TEST(test_import_rule_follows_git_and_keeps_what_others_changed)
{
    enum { B = IMP_BRANCH, T = IMP_TAG, H = IMP_HEAD, G = IMP_GUTS };
    enum { ABS = IMP_ABSENT, TOMB = IMP_TOMB, LIVE = IMP_LIVE };
    enum { F = GUTS_GITIO_FORCE, P = GUTS_GITIO_PRUNE, UN = IMP_FF_UNASKED, UD = IMP_FF_UNDECIDED };
    static const struct {
        const char *what;
        imp_case c; /* git store same marked mine git_unmoved kind ff flags */
        int act, why;
    } cases[] = {
        {"git and store agree", {1, LIVE, 1, 1, 1, 1, B, UN, 0}, IMP_NOTHING, WHY_NONE},
        {"gone from both", {0, TOMB, 0, 0, 0, 0, B, UN, P}, IMP_NOTHING, WHY_NONE},
        {"new in git", {1, ABS, 0, 0, 0, 0, B, UN, 0}, IMP_SET, WHY_NONE},
        {"new in git over a tombstone", {1, TOMB, 0, 0, 0, 0, B, UN, 0}, IMP_SET, WHY_NONE},
        {"own update, even a rewind", {1, LIVE, 0, 1, 1, 0, B, UN, 0}, IMP_SET, WHY_NONE},
        {"own deletion", {0, LIVE, 0, 1, 1, 1, B, UN, 0}, IMP_DELETE, WHY_NONE},
        {"own tag moved", {1, LIVE, 0, 1, 1, 0, T, UN, 0}, IMP_SET, WHY_NONE},
        {"own HEAD moved", {1, LIVE, 0, 1, 1, 0, H, UN, 0}, IMP_SET, WHY_NONE},
        {"pushed since: ask", {1, LIVE, 0, 1, 0, 1, B, UN, 0}, IMP_ASK_FF, WHY_NONE},
        {"pushed since: kept", {1, LIVE, 0, 1, 0, 1, B, 0, 0}, IMP_KEEP, WHY_MOVED},
        {"fast-forward past a push", {1, LIVE, 0, 1, 0, 0, B, 1, 0}, IMP_SET, WHY_NONE},
        {"diverged from a push", {1, LIVE, 0, 1, 0, 0, B, 0, 0}, IMP_KEEP, WHY_NOT_FF},
        {"no mark: fast-forward", {1, LIVE, 0, 0, 0, 0, B, 1, 0}, IMP_SET, WHY_NONE},
        {"no mark: not one", {1, LIVE, 0, 0, 0, 0, B, 0, 0}, IMP_KEEP, WHY_NOT_FF},
        {"walk cut off", {1, LIVE, 0, 1, 0, 0, B, UD, 0}, IMP_KEEP, WHY_UNDECIDED},
        {"--force rewinds without asking", {1, LIVE, 0, 1, 0, 1, B, UN, F}, IMP_SET, WHY_NONE},
        {"--prune does not rewind", {1, LIVE, 0, 1, 0, 1, B, 0, P}, IMP_KEEP, WHY_MOVED},
        {"tag of another target", {1, LIVE, 0, 0, 0, 0, T, UN, 0}, IMP_KEEP, WHY_TAG},
        {"tag with --force", {1, LIVE, 0, 0, 0, 0, T, UN, F}, IMP_SET, WHY_NONE},
        {"HEAD changed by others", {1, LIVE, 0, 1, 0, 0, H, UN, 0}, IMP_KEEP, WHY_HEAD},
        {"pushed branch, never here", {0, LIVE, 0, 0, 0, 0, B, UN, 0}, IMP_KEEP, WHY_GONE_NEVER},
        {"pushed tag, never here", {0, LIVE, 0, 0, 0, 0, T, UN, F}, IMP_KEEP, WHY_GONE_NEVER},
        {"updated since, gone here", {0, LIVE, 0, 1, 0, 1, B, UN, 0}, IMP_KEEP, WHY_GONE_CHANGED},
        {"--prune deletes", {0, LIVE, 0, 0, 0, 0, B, UN, P}, IMP_DELETE, WHY_NONE},
        {"refs/guts/ is never pruned", {0, LIVE, 0, 0, 0, 0, G, UN, P | F}, IMP_NOTHING, WHY_NONE},
        {"deleted by others", {1, TOMB, 0, 1, 0, 1, B, UN, 0}, IMP_KEEP, WHY_DELETED},
        {"deleted by others, --force", {1, TOMB, 0, 1, 0, 1, B, UN, F}, IMP_SET, WHY_NONE},
        {"deleted by others, moved here", {1, TOMB, 0, 1, 0, 0, B, UN, 0}, IMP_SET, WHY_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int why = -1;
        int act = gitio_imp_decide(&cases[i].c, &why);
        ck_assert_msg(act == cases[i].act && why == cases[i].why, "%s: action %d why %d",
                      cases[i].what, act, why);
        if (act == IMP_KEEP) ck_assert(gitio_imp_why_text[why][0] != 0);
    }
}
END_TEST

/* ---- Fast-forward walk ------------------------------------------------------ */

/* Store a commit with the given parents and committer date; its id. */
static guts_id put_commit(guts_repo *r, const guts_id *parents, size_t n, int64_t when, int tag)
{
    char text[512], hex[GUTS_HEX_LEN + 1];
    size_t len =
        (size_t)snprintf(text, sizeof text, "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n");
    for (size_t i = 0; i < n; i++) {
        guts_id_to_hex(&parents[i], hex);
        len += (size_t)snprintf(text + len, sizeof text - len, "parent %s\n", hex);
    }
    len += (size_t)snprintf(text + len, sizeof text - len,
                            "author A <a@b> %lld +0000\ncommitter A <a@b> %lld +0000\n\nc%d\n",
                            (long long)when, (long long)when, tag);
    guts_obj o = {.type = GUTS_OBJ_COMMIT, .data = text, .len = len};
    ck_assert_int_eq(guts_obj_hash(o.type, o.data, o.len, &o.id), 0);
    ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, NULL), 0);
    return o.id;
}

static int ff_of(guts_repo *r, const guts_id *old, const guts_id *new, uint64_t *budget)
{
    int ff = 42;
    ck_assert_int_eq(gitio_ff_test(r, old, new, budget, &ff), GUTS_OK);
    return ff;
}

START_TEST(test_ff_walk_finds_ancestors_through_every_parent)
{
    /* a <- b <- c <- m, a <- d <- m (m a merge), e alone. */
    guts_data *d;
    guts_repo *r = plan_repo("t/ff1", &d);
    int64_t t = 1700000000;
    guts_id a = put_commit(r, NULL, 0, t, 1);
    guts_id b = put_commit(r, &a, 1, t + 10, 2);
    guts_id c = put_commit(r, &b, 1, t + 20, 3);
    guts_id dd = put_commit(r, &a, 1, t + 15, 4);
    guts_id mp[2] = {c, dd};
    guts_id m = put_commit(r, mp, 2, t + 30, 5);
    guts_id e = put_commit(r, NULL, 0, t + 5, 6);
    uint64_t budget = 1000;
    ck_assert_int_eq(ff_of(r, &a, &c, &budget), 1);
    ck_assert_int_eq(ff_of(r, &dd, &m, &budget), 1); /* through the second parent */
    ck_assert_int_eq(ff_of(r, &a, &m, &budget), 1);
    ck_assert_int_eq(ff_of(r, &c, &a, &budget), 0);  /* a rewind */
    ck_assert_int_eq(ff_of(r, &dd, &c, &budget), 0); /* diverged */
    ck_assert_int_eq(ff_of(r, &e, &m, &budget), 0);  /* unrelated */
    /* Not a commit, or not stored: never a fast-forward. */
    guts_obj blob = {.type = GUTS_OBJ_BLOB, .data = "x\n", .len = 2};
    ck_assert_int_eq(guts_obj_hash(blob.type, blob.data, blob.len, &blob.id), 0);
    ck_assert_int_eq(guts_repo_put(r, &blob, 1, NULL, NULL), 0);
    guts_id absent = id_of_byte(0xab, 0xcd);
    ck_assert_int_eq(ff_of(r, &blob.id, &m, &budget), 0);
    ck_assert_int_eq(ff_of(r, &a, &blob.id, &budget), 0);
    ck_assert_int_eq(ff_of(r, &absent, &m, &budget), 0);
    guts_repo_close(r);
    guts_data_close(d);
}
END_TEST

START_TEST(test_ff_walk_stops_a_day_below_the_old_commits_date_and_within_its_budget)
{
    /* A chain of 200 commits an hour apart, and an unrelated commit newer
     * than all of them: the walk from the chain's tip stops at once (every
     * commit is over a day older), reading nothing. */
    guts_data *d;
    guts_repo *r = plan_repo("t/ff2", &d);
    int64_t t = 1700000000;
    guts_id chain[200];
    for (int i = 0; i < 200; i++)
        chain[i] = put_commit(r, i ? &chain[i - 1] : NULL, i ? 1 : 0, t + 3600 * i, i);
    guts_id late = put_commit(r, NULL, 0, t + 3600 * 200 + 2 * IMPORT_FF_SLOP, 999);
    uint64_t budget = 1000;
    ck_assert_int_eq(ff_of(r, &late, &chain[199], &budget), 0);
    ck_assert_uint_eq(budget, 1000);
    /* Within the slop the walk goes on: an old commit 30 hours below the
     * tip takes 30 steps; a budget of 10 gives up, undecided. */
    ck_assert_int_eq(ff_of(r, &chain[169], &chain[199], &budget), 1);
    ck_assert_uint_eq(budget, 1000 - 30);
    budget = 10;
    ck_assert_int_eq(ff_of(r, &chain[169], &chain[199], &budget), IMP_FF_UNDECIDED);
    ck_assert_uint_eq(budget, 0);
    /* A commit dated 12 hours before its parent (clock skew) is walked
     * through; one dated 8 days before it ends the walk: the cautious
     * answer, not a fast-forward (import keeps the ref and says so). */
    guts_id skew = put_commit(r, &chain[199], 1, t + 3600 * 187, 1000);
    guts_id top = put_commit(r, &skew, 1, t + 3600 * 201, 1001);
    budget = 1000;
    ck_assert_int_eq(ff_of(r, &chain[199], &top, &budget), 1);
    guts_id far = put_commit(r, &chain[199], 1, t, 1002);
    top = put_commit(r, &far, 1, t + 3600 * 201, 1003);
    ck_assert_int_eq(ff_of(r, &chain[199], &top, &budget), 0);
    guts_repo_close(r);
    guts_data_close(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("gitio");
    TCase *tc = tcase_create("gitio");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_pack_entry_header_is_git_type_and_size_varint);
    tcase_add_test(tc, test_pack_entry_inflates_to_the_content_and_crc_covers_the_entry);
    tcase_add_test(tc, test_idx_is_sorted_with_fanout_crcs_and_64_bit_offsets);
    tcase_add_test(tc, test_idx_refuses_a_duplicate_id);
    tcase_add_test(tc, test_packread_reads_whole_objects_and_delta_chains);
    tcase_add_test(tc, test_packread_damaged_or_truncated_files_fail_cleanly);
    tcase_add_test(tc, test_packread_ref_delta_loop_ends_with_an_error);
    tcase_add_test(tc, test_packread_opens_a_repositorys_packs);
    tcase_add_test(tc, test_check_line_parses_id_type_size_and_delta_base);
    tcase_add_test(tc, test_check_line_rejects_malformed_lines);
    tcase_add_test(tc, test_check_line_with_a_path_takes_the_rest_of_the_line);
    tcase_add_test(tc, test_path_hints_chain_each_path_and_keep_types_apart);
    tcase_add_test(tc, test_path_hints_only_when_git_left_many_trees_and_blobs_whole);
    tcase_add_test(tc, test_batch_header_must_match_the_listing);
    tcase_add_test(tc, test_plan_puts_every_delta_base_before_its_dependents);
    tcase_add_test(tc, test_plan_skips_stored_objects_and_starts_chains_at_them);
    tcase_add_test(tc, test_plan_takes_path_hints_that_cannot_close_a_cycle);
    tcase_add_test(tc, test_import_rule_follows_git_and_keeps_what_others_changed);
    tcase_add_test(tc, test_ff_walk_finds_ancestors_through_every_parent);
    tcase_add_test(tc, test_ff_walk_stops_a_day_below_the_old_commits_date_and_within_its_budget);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run(suite(), CK_FORK_GETENV);
}
