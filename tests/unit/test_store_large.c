/* test_store_large.c - large objects as a specification: pieces, range reads,
 * staging that is invisible until the whole SHA-1 verifies, resuming a
 * staging after the store was closed, and its bounds.
 */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guts/store.h"

#define STORE_TEST_NAME "large"
#include "test_store_util.h"
#include "test_run.h"

static guts_repo *open_repo(void)
{
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "alice/big", GUTS_REPO_CREATE, &r), GUTS_OK);
    return r;
}

/* len bytes: the first half compressible text, the rest pseudo-random. */
static uint8_t *content(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len);
    ck_assert_ptr_nonnull(p);
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < len; i++) {
        if (i < len / 2) {
            p[i] = (uint8_t)("guts large object "[i % 18]);
        } else {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[i] = (uint8_t)x;
        }
    }
    return p;
}

/* Stage [from, to) of c in steps of step bytes; returns the last *stored. */
static int stage_range(guts_repo *r, const guts_id *id, const uint8_t *c, size_t size, size_t from,
                       size_t to, size_t step, int want_rc)
{
    int stored = 0, rc = GUTS_OK;
    for (size_t off = from; off < to; off += step) {
        size_t n = to - off < step ? to - off : step;
        rc = guts_repo_stage_write(r, id, GUTS_OBJ_BLOB, size, off, c + off, n, &stored);
        if (off + n < to) ck_assert_int_eq(rc, GUTS_OK);
    }
    ck_assert_int_eq(rc, want_rc);
    return stored;
}

START_TEST(test_staged_object_is_invisible_until_complete_then_reads_back)
{
    guts_repo *r = open_repo();
    size_t size = 3 * GUTS_PIECE_BYTES + 12345, step = 700 * 1024; /* steps cut pieces */
    uint8_t *c = content(size, 1);
    guts_id id;
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, c, size, &id), GUTS_OK);
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        int stored = -1;
        ck_assert_int_eq(guts_repo_has(r, &id), 0);
        ck_assert_int_eq(
            guts_repo_stage_write(r, &id, GUTS_OBJ_BLOB, size, off, c + off, n, &stored), GUTS_OK);
        guts_repo_info info;
        ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
        if (off + n < size) {
            ck_assert_int_eq(stored, 0);
            ck_assert_uint_eq(info.objects, 0);
            ck_assert_uint_eq(info.staged, 1);
            ck_assert_uint_eq(info.staged_bytes, off + n);
            ck_assert(guts_fp_eq(info.fp, (guts_fp){0, 0}));
        } else {
            ck_assert_int_eq(stored, 1);
            ck_assert_uint_eq(info.objects, 1);
            ck_assert_uint_eq(info.staged, 0);
            ck_assert(guts_fp_eq(info.fp, guts_fp_of_id(&id)));
        }
    }
    int type;
    void *d;
    size_t len, got;
    ck_assert_int_eq(guts_repo_get(r, &id, &type, &d, &len), GUTS_OK);
    ck_assert_uint_eq(len, size);
    ck_assert(memcmp(d, c, size) == 0);
    free(d);
    /* ranges: inside one piece, across pieces, the tail, past the end */
    static const size_t offs[] = {0, 5, GUTS_PIECE_BYTES - 3, 2 * GUTS_PIECE_BYTES,
                                  3 * GUTS_PIECE_BYTES + 12000};
    uint8_t *buf = malloc(2 * GUTS_PIECE_BYTES);
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        ck_assert_int_eq(guts_repo_read(r, &id, offs[i], buf, 2 * GUTS_PIECE_BYTES, &got), GUTS_OK);
        size_t want = size - offs[i] < 2 * GUTS_PIECE_BYTES ? size - offs[i] : 2 * GUTS_PIECE_BYTES;
        ck_assert_uint_eq(got, want);
        ck_assert(memcmp(buf, c + offs[i], got) == 0);
    }
    ck_assert_int_eq(guts_repo_read(r, &id, size + 1, buf, 1, &got), GUTS_EINVAL);
    free(buf);
    guts_rec rec;
    void *rbuf = (void *)1;
    ck_assert_int_eq(guts_repo_rec_get(r, &id, &rec, &rbuf), GUTS_OK);
    ck_assert_int_eq(rec.enc, GUTS_REC_PIECES);
    ck_assert_uint_eq(rec.size, size);
    ck_assert_ptr_null(rbuf);
    free(c);
    guts_repo_close(r);
}
END_TEST

static int count_cb(const void *d, size_t n, void *ctx)
{
    (void)d;
    ck_assert_uint_le(n, GUTS_PIECE_BYTES);
    *(size_t *)ctx += n;
    return 0;
}

START_TEST(test_put_stores_a_large_object_in_pieces_and_streams_it)
{
    guts_repo *r = open_repo();
    size_t size = GUTS_LARGE_MIN + 100;
    uint8_t *c = content(size, 2);
    guts_obj o = {.type = GUTS_OBJ_BLOB, .data = c, .len = size};
    ck_assert_int_eq(guts_obj_hash(o.type, c, size, &o.id), GUTS_OK);
    size_t added = 0;
    ck_assert_int_eq(guts_repo_put(r, &o, 1, &added, NULL), GUTS_OK);
    ck_assert_uint_eq(added, 1);
    ck_assert_int_eq(guts_repo_put(r, &o, 1, &added, NULL), GUTS_OK);
    ck_assert_uint_eq(added, 0);
    size_t seen = 0;
    ck_assert_int_eq(guts_repo_stream(r, &o.id, count_cb, &seen), GUTS_OK);
    ck_assert_uint_eq(seen, size);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 1);
    ck_assert_uint_lt(info.stored_bytes, size); /* the text half compressed */
    free(c);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_staging_resumes_after_reopen_at_the_staged_length_only)
{
    guts_repo *r = open_repo();
    size_t size = 2 * GUTS_PIECE_BYTES + 777, cut = GUTS_PIECE_BYTES + 5000;
    uint8_t *c = content(size, 3);
    guts_id id;
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, c, size, &id), GUTS_OK);
    stage_range(r, &id, c, size, 0, cut, 300000, GUTS_OK);
    guts_repo_close(r);
    guts_data_close(data);
    ck_assert_int_eq(guts_data_open(tmpdir, GUTS_DATA_CREATE, &data), GUTS_OK);
    r = open_repo();
    guts_stage st[GUTS_STAGE_MAX];
    size_t n = 0;
    ck_assert_int_eq(guts_repo_stage_list(r, st, GUTS_STAGE_MAX, &n), GUTS_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(guts_id_cmp(&st[0].id, &id) == 0);
    ck_assert_uint_eq(st[0].have, cut);
    ck_assert_uint_eq(st[0].size, size);
    ck_assert_int_eq(st[0].type, GUTS_OBJ_BLOB);
    int stored;
    /* any offset but the staged length is refused */
    ck_assert_int_eq(
        guts_repo_stage_write(r, &id, GUTS_OBJ_BLOB, size, cut - 1, c + cut - 1, 1, &stored),
        GUTS_EINVAL);
    ck_assert_int_eq(
        guts_repo_stage_write(r, &id, GUTS_OBJ_BLOB, size, cut + 1, c + cut + 1, 1, &stored),
        GUTS_EINVAL);
    ck_assert_int_eq(guts_repo_stage_write(r, &id, GUTS_OBJ_TREE, size, cut, c + cut, 1, &stored),
                     GUTS_EINVAL);
    ck_assert_int_eq(
        guts_repo_stage_write(r, &id, GUTS_OBJ_BLOB, size, cut, c + cut, size, &stored),
        GUTS_ETOOBIG);
    /* the prefix is rehashed from disk: completing it verifies */
    ck_assert_int_eq(stage_range(r, &id, c, size, cut, size, 400000, GUTS_OK), 1);
    ck_assert_int_eq(guts_repo_has(r, &id), 1);
    /* an object already present is not staged again */
    ck_assert_int_eq(guts_repo_stage_write(r, &id, GUTS_OBJ_BLOB, size, 0, c, 1000, &stored),
                     GUTS_OK);
    ck_assert_int_eq(stored, 0);
    ck_assert_int_eq(guts_repo_stage_list(r, st, GUTS_STAGE_MAX, &n), GUTS_OK);
    ck_assert_uint_eq(n, 0);
    free(c);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_bad_hash_leaves_nothing_visible_and_drops_the_staging)
{
    guts_repo *r = open_repo();
    size_t size = 2 * GUTS_PIECE_BYTES + 1;
    uint8_t *c = content(size, 4);
    guts_id id;
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, c, size, &id), GUTS_OK);
    c[size / 3] ^= 1;
    ck_assert_int_eq(stage_range(r, &id, c, size, 0, size, GUTS_PIECE_BYTES, GUTS_EHASH), 0);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 0);
    ck_assert_uint_eq(info.staged, 0);
    ck_assert_uint_eq(info.stored_bytes, 0);
    ck_assert_int_eq(guts_repo_has(r, &id), 0);
    /* the right content then goes through from the start */
    c[size / 3] ^= 1;
    ck_assert_int_eq(stage_range(r, &id, c, size, 0, size, GUTS_PIECE_BYTES, GUTS_OK), 1);
    free(c);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_staging_is_bounded_least_recent_dropped)
{
    guts_repo *r = open_repo();
    uint8_t *c[GUTS_STAGE_MAX + 1];
    guts_id ids[GUTS_STAGE_MAX + 1];
    size_t size = 5000;
    for (unsigned i = 0; i <= GUTS_STAGE_MAX; i++) {
        c[i] = content(size, 10 + i);
        ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, c[i], size, &ids[i]), GUTS_OK);
        stage_range(r, &ids[i], c[i], size, 0, 100, 100, GUTS_OK);
    }
    guts_stage st[GUTS_STAGE_MAX];
    size_t n = 0;
    ck_assert_int_eq(guts_repo_stage_list(r, st, GUTS_STAGE_MAX, &n), GUTS_OK);
    ck_assert_uint_eq(n, GUTS_STAGE_MAX);
    for (size_t i = 0; i < n; i++) /* oldest first; the very first was dropped */
        ck_assert(guts_id_cmp(&st[i].id, &ids[i + 1]) == 0);
    ck_assert_int_eq(guts_repo_stage_drop(r, &ids[1]), GUTS_OK);
    ck_assert_int_eq(guts_repo_stage_list(r, st, GUTS_STAGE_MAX, &n), GUTS_OK);
    ck_assert_uint_eq(n, GUTS_STAGE_MAX - 1);
    for (unsigned i = 0; i <= GUTS_STAGE_MAX; i++)
        free(c[i]);
    guts_repo_close(r);
}
END_TEST

static Suite *large_suite(void)
{
    Suite *s = suite_create("store_large");
    TCase *t = tcase_create("large");
    tcase_add_unchecked_fixture(t, base_setup, base_teardown);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_staged_object_is_invisible_until_complete_then_reads_back);
    tcase_add_test(t, test_put_stores_a_large_object_in_pieces_and_streams_it);
    tcase_add_test(t, test_staging_resumes_after_reopen_at_the_staged_length_only);
    tcase_add_test(t, test_bad_hash_leaves_nothing_visible_and_drops_the_staging);
    tcase_add_test(t, test_staging_is_bounded_least_recent_dropped);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(large_suite(), CK_FORK_GETENV);
}
