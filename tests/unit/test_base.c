/* test_base.c - the base library's shared utilities: the id set, the binary
 * search and the seeded generator every module uses. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "guts/idset.h"
#include "test_run.h"

/* Ids that share their first 4 bytes, as the ids of one reconciliation
 * range do; they differ in the bytes the set hashes. */
static void range_id(uint64_t *rng, guts_id *id)
{
    memset(id->b, 0xab, 4);
    for (int i = 4; i < GUTS_ID_LEN; i += 8) {
        uint64_t v = guts_splitmix64(rng);
        memcpy(id->b + i, &v, GUTS_ID_LEN - i < 8 ? (size_t)(GUTS_ID_LEN - i) : 8);
    }
}

START_TEST(test_idset_keys_only_holds_every_id_once)
{
    guts_idset s = {0};
    uint64_t rng = 7;
    guts_id ids[5000];
    for (size_t i = 0; i < 5000; i++) {
        range_id(&rng, &ids[i]);
        ck_assert_int_eq(guts_idset_insert(&s, &ids[i]), 1);
    }
    for (size_t i = 0; i < 5000; i++) {
        ck_assert_int_eq(guts_idset_insert(&s, &ids[i]), 0);
        ck_assert(guts_idset_has(&s, &ids[i]));
    }
    ck_assert_uint_eq(s.n, 5000);
    ck_assert_ptr_null(s.vals); /* 21 bytes a slot: no values */
    ck_assert_uint_le(2 * s.n, s.cap);
    guts_id other;
    range_id(&rng, &other);
    ck_assert(!guts_idset_has(&s, &other));
    guts_id zero = {{0}}; /* the zero id is a key like any other */
    ck_assert(!guts_idset_has(&s, &zero));
    ck_assert_int_eq(guts_idset_insert(&s, &zero), 1);
    ck_assert(guts_idset_has(&s, &zero));
    guts_idset_free(&s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(!guts_idset_has(&s, &ids[0]));
}
END_TEST

START_TEST(test_idset_values_survive_growth_and_free_keeps_the_kind)
{
    guts_idset s = {.with_vals = 1};
    uint64_t rng = 9;
    guts_id ids[3000];
    for (uint32_t i = 0; i < 3000; i++) {
        range_id(&rng, &ids[i]);
        size_t slot;
        int added;
        ck_assert_int_eq(guts_idset_add(&s, &ids[i], &slot, &added), 0);
        ck_assert_int_eq(added, 1);
        s.vals[slot] = i;
        s.flags[slot] |= (uint8_t)(i & GUTS_IDSET_FLAGS);
    }
    for (uint32_t i = 0; i < 3000; i++) {
        size_t slot = guts_idset_find(&s, &ids[i]);
        ck_assert_uint_ne(slot, SIZE_MAX);
        ck_assert_uint_eq(s.vals[slot], i);
        ck_assert_uint_eq(s.flags[slot] & GUTS_IDSET_FLAGS, i & GUTS_IDSET_FLAGS);
    }
    guts_idset_free(&s);
    ck_assert_int_eq(s.with_vals, 1);
    size_t slot;
    int added;
    ck_assert_int_eq(guts_idset_add(&s, &ids[0], &slot, &added), 0);
    ck_assert_ptr_nonnull(s.vals);
    ck_assert_uint_eq(s.vals[slot], 0);
    guts_idset_free(&s);
}
END_TEST

/* Room made for a batch (guts_idset_reserve, dense and not): inserting
 * that many ids then never grows the set (its arrays stay put, so slots a
 * caller prefetched stay valid), what was in it before is kept, with its
 * values and flags, and a reserve for fewer than it holds changes nothing. */
START_TEST(test_idset_reserve_makes_room_for_a_batch_once)
{
    for (int dense = 0; dense < 2; dense++) {
        guts_idset s = {.with_vals = 1, .dense = dense};
        uint64_t rng = 21;
        guts_id ids[2000];
        for (uint32_t i = 0; i < 2000; i++)
            range_id(&rng, &ids[i]);
        for (uint32_t i = 0; i < 100; i++) {
            size_t slot;
            int added;
            ck_assert_int_eq(guts_idset_add(&s, &ids[i], &slot, &added), 0);
            s.vals[slot] = i;
            s.flags[slot] |= (uint8_t)(i & GUTS_IDSET_FLAGS);
        }
        ck_assert_int_eq(guts_idset_reserve(&s, 2000), GUTS_OK);
        size_t cap = s.cap;
        const guts_id *keys = s.keys;
        ck_assert_uint_ge(dense ? cap * 3 : cap, dense ? 2000 * 4 : 2000 * 2);
        for (uint32_t i = 100; i < 2000; i++) {
            guts_idset_prefetch(&s, &ids[i]);
            ck_assert_int_eq(guts_idset_insert(&s, &ids[i]), 1);
        }
        ck_assert_uint_eq(s.cap, cap);
        ck_assert_ptr_eq(s.keys, keys);
        ck_assert_uint_eq(s.n, 2000);
        for (uint32_t i = 0; i < 100; i++) {
            size_t slot = guts_idset_find(&s, &ids[i]);
            ck_assert_uint_ne(slot, SIZE_MAX);
            ck_assert_uint_eq(s.vals[slot], i);
            ck_assert_uint_eq(s.flags[slot] & GUTS_IDSET_FLAGS, i & GUTS_IDSET_FLAGS);
        }
        ck_assert_int_eq(guts_idset_reserve(&s, 10), GUTS_OK);
        ck_assert_ptr_eq(s.keys, keys);
        ck_assert_int_eq(guts_idset_reserve(&s, SIZE_MAX), GUTS_ENOMEM);
        ck_assert_uint_eq(s.n, 2000);
        guts_idset_free(&s);
    }
}
END_TEST

static int int_cmp(const void *ctx, size_t i)
{
    const int *k = ctx;
    static const int a[] = {2, 4, 4, 8, 16};
    return (a[i] > *k) - (a[i] < *k);
}

START_TEST(test_lower_bound_finds_the_first_not_below)
{
    static const struct {
        int key;
        size_t at;
        int found;
    } cases[] = {{1, 0, 0}, {2, 0, 1}, {3, 1, 0}, {4, 1, 1}, {5, 3, 0}, {16, 4, 1}, {17, 5, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int found = -1;
        ck_assert_uint_eq(guts_lower_bound(5, int_cmp, &cases[i].key, &found), cases[i].at);
        ck_assert_int_eq(found, cases[i].found);
    }
    int k = 3;
    ck_assert_uint_eq(guts_lower_bound(0, int_cmp, &k, NULL), 0);
}
END_TEST

START_TEST(test_splitmix64_is_the_published_sequence)
{
    /* splitmix64 seeded with 0: the first outputs of the reference code */
    uint64_t x = 0;
    ck_assert_uint_eq(guts_splitmix64(&x), 0xe220a8397b1dcdafull);
    ck_assert_uint_eq(guts_splitmix64(&x), 0x6e789e6aa1b965f4ull);
}
END_TEST

START_TEST(test_id_cmp_orders_ids_as_memcmp_does_at_every_byte)
{
    /* a pair differing at each byte, both ways round, with the bytes
     * before it equal and after it opposed (so a compare that looks past
     * the first difference, or at bytes in the wrong order, fails) */
    for (int i = 0; i < GUTS_ID_LEN; i++) {
        guts_id a, b;
        memset(a.b, 0x5a, sizeof a.b);
        memset(b.b, 0x5a, sizeof b.b);
        a.b[i] = 0x01;
        b.b[i] = 0xfe;
        for (int k = i + 1; k < GUTS_ID_LEN; k++) {
            a.b[k] = 0xff;
            b.b[k] = 0x00;
        }
        ck_assert_int_lt(guts_id_cmp(&a, &b), 0);
        ck_assert_int_gt(guts_id_cmp(&b, &a), 0);
        ck_assert_int_eq(guts_id_cmp(&a, &a), 0);
    }
    uint64_t rng = 7;
    for (int n = 0; n < 1000; n++) {
        guts_id a, b;
        range_id(&rng, &a);
        range_id(&rng, &b);
        int want = memcmp(a.b, b.b, GUTS_ID_LEN), got = guts_id_cmp(&a, &b);
        ck_assert_int_eq((want > 0) - (want < 0), got);
    }
}
END_TEST

int main(void)
{
    Suite *su = suite_create("base");
    TCase *t = tcase_create("utilities");
    tcase_add_test(t, test_idset_keys_only_holds_every_id_once);
    tcase_add_test(t, test_idset_reserve_makes_room_for_a_batch_once);
    tcase_add_test(t, test_idset_values_survive_growth_and_free_keeps_the_kind);
    tcase_add_test(t, test_lower_bound_finds_the_first_not_below);
    tcase_add_test(t, test_splitmix64_is_the_published_sequence);
    tcase_add_test(t, test_id_cmp_orders_ids_as_memcmp_does_at_every_byte);
    suite_add_tcase(su, t);
    return test_run(su, CK_FORK_GETENV);
}
