/* test_net_ratelimit.c - the daemon's per-source token buckets: a burst is
 * allowed, the rate is sustained, the excess is counted, sources do not
 * share a bucket, rate 0 means off, and a flood of sources never grows the
 * table (it is fixed) nor starves a source that keeps sending. */
#include <check.h>
#include <stdlib.h>

#include "net.h"
#include "test_run.h"

static guts_net_rate *rate_new(uint32_t rate, uint32_t burst)
{
    guts_net_rate *t = malloc(sizeof *t);
    ck_assert_ptr_nonnull(t);
    guts_net_rate_init(t, rate, burst, 42);
    return t;
}

static unsigned allowed_at(guts_net_rate *t, uint32_t addr, uint64_t now, unsigned tries)
{
    unsigned n = 0;
    for (unsigned i = 0; i < tries; i++)
        n += (unsigned)guts_net_rate_allow(t, addr, now);
    return n;
}

START_TEST(test_burst_is_allowed_then_excess_is_counted)
{
    guts_net_rate *t = rate_new(50, 100);
    ck_assert_uint_eq(allowed_at(t, 1, 1000, 150), 100);
    ck_assert_uint_eq(t->limited, 50);
    free(t);
}
END_TEST

START_TEST(test_rate_is_sustained_over_time)
{
    guts_net_rate *t = rate_new(50, 100);
    allowed_at(t, 1, 0, 100); /* empty the bucket */
    unsigned n = 0;
    for (uint64_t ms = 10; ms <= 10000; ms += 10)
        n += allowed_at(t, 1, ms, 10); /* 1000/s offered */
    ck_assert_uint_ge(n, 499);
    ck_assert_uint_le(n, 501);
    free(t);
}
END_TEST

START_TEST(test_sources_have_their_own_buckets)
{
    guts_net_rate *t = rate_new(10, 20);
    ck_assert_uint_eq(allowed_at(t, 1, 0, 100), 20);
    ck_assert_uint_eq(allowed_at(t, 2, 0, 5), 5);
    free(t);
}
END_TEST

START_TEST(test_rate_zero_is_off)
{
    guts_net_rate *t = rate_new(0, 0);
    ck_assert_uint_eq(allowed_at(t, 1, 0, 100000), 100000);
    ck_assert_uint_eq(t->limited, 0);
    free(t);
}
END_TEST

START_TEST(test_forged_sources_evict_without_starving_a_steady_one)
{
    guts_net_rate *t = rate_new(50, 100);
    unsigned good = 0;
    uint32_t forged = 1000;
    for (uint64_t ms = 0; ms < 10000; ms += 20) {
        for (int i = 0; i < 500; i++)
            guts_net_rate_allow(t, forged++, ms);
        good += (unsigned)guts_net_rate_allow(t, 7, ms); /* 50/s: within its rate */
    }
    ck_assert_uint_eq(good, 500);
    free(t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("net_ratelimit");
    TCase *c = tcase_create("buckets");
    tcase_add_test(c, test_burst_is_allowed_then_excess_is_counted);
    tcase_add_test(c, test_rate_is_sustained_over_time);
    tcase_add_test(c, test_sources_have_their_own_buckets);
    tcase_add_test(c, test_rate_zero_is_off);
    tcase_add_test(c, test_forged_sources_evict_without_starving_a_steady_one);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return test_run(suite(), CK_NOFORK);
}
