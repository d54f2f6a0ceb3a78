/* test_core_refs.c - refs_take (src/core/node_refs.c): a session's received
 * ref records moved into the repository's pending list.
 *
 * The list holds records per (name, record), at most CORE_REFS_PER_NAME_MAX
 * of a name, none twice; refs_take finds a name's records through an index
 * by name instead of a scan of the whole list per ref. These tests check
 * the list it leaves against what those rules give, with more refs than a
 * probe run of the index could hide and names sharing a record.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "core_limits.h"
#include "test_run.h"

static cref mkref(const char *name, uint64_t clock)
{
    cref r;
    memset(&r, 0, sizeof(r));
    r.name = strdup(name);
    ck_assert_ptr_nonnull(r.name);
    r.target.b[0] = (uint8_t)clock;
    r.target.b[1] = (uint8_t)(clock >> 8);
    r.clock = clock;
    return r;
}

static size_t count_name(const lrepo *r, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < r->npending; i++)
        k += strcmp(r->pending[i].name, name) == 0;
    return k;
}

static void repo_pending_free(lrepo *r)
{
    for (size_t i = 0; i < r->npending; i++)
        cref_free(&r->pending[i]);
    free(r->pending);
}

START_TEST(test_every_new_record_is_kept_once_in_arrival_order)
{
    lrepo r;
    memset(&r, 0, sizeof(r));
    enum { N = 3000 };
    char name[64];
    cref *a = malloc(N * sizeof(cref));
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "refs/heads/b%zu", i);
        a[i] = mkref(name, 1);
    }
    refs_take(NULL, &r, a, 2000);
    ck_assert_uint_eq(r.npending, 2000);
    /* the second session repeats 1000..1999 and brings 2000..2999 */
    cref *b = malloc(2000 * sizeof(cref));
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "refs/heads/b%zu", 1000 + i);
        b[i] = i < 1000 ? mkref(name, 1) : a[2000 + (i - 1000)];
    }
    refs_take(NULL, &r, b, 2000);
    ck_assert_uint_eq(r.npending, N);
    for (size_t i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "refs/heads/b%zu", i);
        ck_assert_str_eq(r.pending[i].name, name);
    }
    repo_pending_free(&r);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_one_name_keeps_at_most_its_bound_of_records)
{
    lrepo r;
    memset(&r, 0, sizeof(r));
    cref in[12];
    for (size_t i = 0; i < 12; i++)
        in[i] = i % 2 ? mkref("refs/heads/main", i) : mkref("refs/tags/v1", i);
    refs_take(NULL, &r, in, 12);
    ck_assert_uint_eq(count_name(&r, "refs/heads/main"), CORE_REFS_PER_NAME_MAX);
    ck_assert_uint_eq(count_name(&r, "refs/tags/v1"), CORE_REFS_PER_NAME_MAX);
    ck_assert_uint_eq(r.npending, 2 * CORE_REFS_PER_NAME_MAX);
    /* a record already pending is not taken again */
    cref again = mkref("refs/heads/main", 11);
    refs_take(NULL, &r, &again, 1);
    ck_assert_uint_eq(count_name(&r, "refs/heads/main"), CORE_REFS_PER_NAME_MAX);
    size_t found = 0;
    for (size_t i = 0; i < r.npending; i++)
        found += strcmp(r.pending[i].name, "refs/heads/main") == 0 && r.pending[i].clock == 11;
    ck_assert_uint_eq(found, 1);
    repo_pending_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core_refs");
    TCase *tc = tcase_create("refs_take");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_new_record_is_kept_once_in_arrival_order);
    tcase_add_test(tc, test_one_name_keeps_at_most_its_bound_of_records);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
