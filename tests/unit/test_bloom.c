/* test_bloom.c - the bloom filter as a specification: no false negatives,
 * the false-positive rate it promises at 10 bits per element, seeds that move
 * every probe, borrowed views, sizing for an announce's byte budget and the
 * rejection of sizes and hash counts beyond the limits.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bloom.h"
#include "test_run.h"

/* splitmix64: a deterministic stream of keys for every test. */
static uint64_t rng_next(uint64_t *s)
{
    return guts_splitmix64(s);
}

static void mkid(uint64_t *s, guts_id *id)
{
    for (int i = 0; i < GUTS_ID_LEN; i += 4) {
        uint64_t v = rng_next(s);
        memcpy(id->b + i, &v, 4);
    }
}

START_TEST(test_bloom_has_no_false_negatives)
{
    enum { N = 20000 };
    static guts_id ids[N];
    uint64_t s = 1;
    for (int i = 0; i < N; i++)
        mkid(&s, &ids[i]);
    unsigned bpes[] = {1, 2, 5, 10, 20};
    for (size_t j = 0; j < sizeof bpes / sizeof bpes[0]; j++) {
        guts_bloom b;
        ck_assert_int_eq(guts_bloom_make(&b, N, bpes[j], 77 + j), GUTS_OK);
        for (int i = 0; i < N; i++)
            guts_bloom_add(&b, ids[i].b, GUTS_ID_LEN);
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(guts_bloom_has(&b, ids[i].b, GUTS_ID_LEN), 1);
        guts_bloom_free(&b);
    }
}
END_TEST

START_TEST(test_bloom_fpr_at_10_bits_is_about_1_percent)
{
    enum { N = 10000, PROBES = 100000 };
    uint64_t s = 42;
    guts_bloom b;
    ck_assert_int_eq(guts_bloom_make(&b, N, GUTS_BLOOM_BITS_PER_ELEM, 1234), GUTS_OK);
    ck_assert_uint_eq(b.k, 7);
    ck_assert_uint_eq(b.nbits, N * 10);
    guts_id id;
    for (int i = 0; i < N; i++) {
        mkid(&s, &id);
        guts_bloom_add(&b, id.b, GUTS_ID_LEN);
    }
    int fp = 0;
    for (int i = 0; i < PROBES; i++) {
        mkid(&s, &id); /* fresh keys: never added */
        fp += guts_bloom_has(&b, id.b, GUTS_ID_LEN);
    }
    double rate = (double)fp / PROBES;
    ck_assert_msg(rate >= 0.005 && rate <= 0.015, "false-positive rate %.4f", rate);
    guts_bloom_free(&b);
}
END_TEST

/* Set bit positions of a filter holding one key. */
static void positions(uint64_t seed, const guts_id *id, uint8_t out[16])
{
    guts_bloom b;
    ck_assert_int_eq(guts_bloom_make(&b, 12, 10, seed), GUTS_OK); /* 120 bits */
    guts_bloom_add(&b, id->b, GUTS_ID_LEN);
    memcpy(out, b.bits, 15);
    out[15] = 0;
    guts_bloom_free(&b);
}

START_TEST(test_bloom_seed_changes_positions)
{
    uint64_t s = 9;
    int differ = 0;
    for (int t = 0; t < 50; t++) {
        guts_id id;
        mkid(&s, &id);
        uint8_t a[16], a2[16], c[16];
        positions(1, &id, a);
        positions(1, &id, a2);
        positions(2, &id, c);
        ck_assert_mem_eq(a, a2, 16); /* same seed: same bits */
        differ += memcmp(a, c, 16) != 0;
    }
    ck_assert_int_eq(differ, 50);
}
END_TEST

START_TEST(test_bloom_false_positive_does_not_survive_a_new_seed)
{
    /* Find keys that are false positives under one seed; almost none of them
     * stay false positives under the next. */
    enum { N = 1000 };
    uint64_t s = 5;
    guts_id in[N];
    for (int i = 0; i < N; i++)
        mkid(&s, &in[i]);
    guts_bloom b1, b2;
    ck_assert_int_eq(guts_bloom_make(&b1, N, 10, 100), GUTS_OK);
    ck_assert_int_eq(guts_bloom_make(&b2, N, 10, 101), GUTS_OK);
    for (int i = 0; i < N; i++) {
        guts_bloom_add(&b1, in[i].b, GUTS_ID_LEN);
        guts_bloom_add(&b2, in[i].b, GUTS_ID_LEN);
    }
    int fp1 = 0, both = 0;
    for (int i = 0; i < 200000; i++) {
        guts_id id;
        mkid(&s, &id);
        if (guts_bloom_has(&b1, id.b, GUTS_ID_LEN)) {
            fp1++;
            both += guts_bloom_has(&b2, id.b, GUTS_ID_LEN);
        }
    }
    ck_assert_int_gt(fp1, 500);
    /* Independent seeds: P(both) ~ p^2, i.e. ~1% of the first round's. */
    ck_assert_msg(both * 20 < fp1, "%d of %d false positives repeat", both, fp1);
    guts_bloom_free(&b1);
    guts_bloom_free(&b2);
}
END_TEST

START_TEST(test_bloom_view_reads_the_same_bits)
{
    uint64_t s = 3;
    guts_bloom b, v;
    ck_assert_int_eq(guts_bloom_make(&b, 100, 10, 7), GUTS_OK);
    guts_id ids[100];
    for (int i = 0; i < 100; i++) {
        mkid(&s, &ids[i]);
        guts_bloom_add(&b, ids[i].b, GUTS_ID_LEN);
    }
    uint8_t *copy = malloc(guts_bloom_bytes(b.nbits));
    memcpy(copy, b.bits, guts_bloom_bytes(b.nbits));
    ck_assert_int_eq(guts_bloom_view(&v, copy, b.nbits, b.k, 7), GUTS_OK);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(guts_bloom_has(&v, ids[i].b, GUTS_ID_LEN), 1);
    /* A view with another seed is a different filter. */
    guts_bloom w;
    ck_assert_int_eq(guts_bloom_view(&w, copy, b.nbits, b.k, 8), GUTS_OK);
    int found = 0;
    for (int i = 0; i < 100; i++)
        found += guts_bloom_has(&w, ids[i].b, GUTS_ID_LEN);
    ck_assert_int_lt(found, 100);
    guts_bloom_free(&v); /* borrowed: must not free copy */
    guts_bloom_free(&w);
    free(copy);
    guts_bloom_free(&b);
}
END_TEST

START_TEST(test_bloom_rejects_bad_sizes_and_k)
{
    static const uint8_t bits[GUTS_BLOOM_BITS_MAX / 8 + 1];
    struct {
        const uint8_t *bits;
        uint32_t nbits;
        uint8_t k;
    } bad[] = {
        {NULL, 64, 7},                      /* no bits */
        {bits, 0, 7},                       /* empty */
        {bits, GUTS_BLOOM_MIN_BITS - 1, 7}, /* below one byte */
        {bits, GUTS_BLOOM_BITS_MAX + 1, 7}, /* beyond the wire limit */
        {bits, 64, 0},                      /* no hashes */
        {bits, 64, GUTS_BLOOM_K_MAX + 1},   /* too many hashes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        guts_bloom v;
        ck_assert_int_eq(guts_bloom_view(&v, bad[i].bits, bad[i].nbits, bad[i].k, 1), GUTS_EINVAL);
    }
    guts_bloom b;
    ck_assert_int_eq(guts_bloom_make(&b, 10, 0, 1), GUTS_EINVAL);
    ck_assert_int_eq(guts_bloom_make(&b, GUTS_BLOOM_BITS_MAX, 10, 1), GUTS_ETOOBIG);
    ck_assert_int_eq(guts_bloom_make(&b, SIZE_MAX / 2, 10, 1), GUTS_ETOOBIG);
    /* The smallest filter is one byte. */
    ck_assert_int_eq(guts_bloom_make(&b, 0, 10, 1), GUTS_OK);
    ck_assert_uint_eq(b.nbits, 8);
    guts_bloom_free(&b);
}
END_TEST

START_TEST(test_bloom_k_is_optimal_for_density)
{
    ck_assert_uint_eq(guts_bloom_k_for(1), 1);
    ck_assert_uint_eq(guts_bloom_k_for(2), 1);
    ck_assert_uint_eq(guts_bloom_k_for(10), 7);
    ck_assert_uint_eq(guts_bloom_k_for(14), 10);
    ck_assert_uint_eq(guts_bloom_k_for(20), 14);
    ck_assert_uint_le(guts_bloom_k_for(1000), GUTS_BLOOM_K_MAX);
}
END_TEST

START_TEST(test_bloom_fit_covers_what_room_allows)
{
    size_t covered;
    uint32_t nbits;
    uint8_t k;
    /* Room for 80 ids at 10 bits, 1000 available: the newest 80. */
    guts_bloom_fit(100, 1000, &covered, &nbits, &k);
    ck_assert_uint_eq(covered, 80);
    ck_assert_uint_eq(nbits, 800);
    ck_assert_uint_eq(k, 7);
    /* Ample room: every id, at a lower density, capped. */
    guts_bloom_fit(1000, 50, &covered, &nbits, &k);
    ck_assert_uint_eq(covered, 50);
    ck_assert_uint_eq(nbits, 50 * GUTS_BLOOM_BITS_PER_ELEM_AMPLE);
    ck_assert_uint_eq(k, 14);
    /* Between: all ids, using the room. */
    guts_bloom_fit(100, 60, &covered, &nbits, &k);
    ck_assert_uint_eq(covered, 60);
    ck_assert_uint_le(nbits, 800);
    ck_assert_uint_ge(nbits, 600);
    /* Nothing to cover, or no room. */
    guts_bloom_fit(100, 0, &covered, &nbits, &k);
    ck_assert_uint_eq(covered, 0);
    ck_assert_uint_eq(nbits, 0);
    guts_bloom_fit(0, 100, &covered, &nbits, &k);
    ck_assert_uint_eq(covered, 0);
    /* Never beyond the room, for many shapes. */
    for (size_t room = 1; room < 1200; room += 37)
        for (size_t av = 1; av < 5000; av += 611) {
            guts_bloom_fit(room, av, &covered, &nbits, &k);
            ck_assert_uint_le(nbits, room * 8);
            ck_assert_uint_le(covered, av);
            ck_assert_uint_ge(covered, 1);
            ck_assert_uint_ge(nbits, GUTS_BLOOM_MIN_BITS);
            ck_assert_uint_eq(nbits % 8, 0);
            ck_assert_uint_ge(k, 1);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bloom");
    TCase *tc = tcase_create("bloom");
    tcase_add_test(tc, test_bloom_has_no_false_negatives);
    tcase_add_test(tc, test_bloom_fpr_at_10_bits_is_about_1_percent);
    tcase_add_test(tc, test_bloom_seed_changes_positions);
    tcase_add_test(tc, test_bloom_false_positive_does_not_survive_a_new_seed);
    tcase_add_test(tc, test_bloom_view_reads_the_same_bits);
    tcase_add_test(tc, test_bloom_rejects_bad_sizes_and_k);
    tcase_add_test(tc, test_bloom_k_is_optimal_for_density);
    tcase_add_test(tc, test_bloom_fit_covers_what_room_allows);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
