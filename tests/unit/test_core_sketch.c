/* test_core_sketch.c - the group-size sketch (src/core/node_members.c).
 *
 * A full view's admission asks for no estimate's value: it calls
 * members_estimate_touch, which leaves the merge of the two epochs owed
 * instead of computing it (issue 19). Its promise: every estimate asked
 * for later is the one members_estimate in its place would have given,
 * through insertions into an epoch that is full or not, senders the other
 * epoch holds, the stale window of a full one and epochs that roll over.
 * Two cores see the same senders at the same times; one asks
 * members_estimate where the other touches, and both must then answer
 * alike.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "core_limits.h"
#include "test_run.h"

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A core with only what the sketch and its epochs read set. */
static guts_core *sketch_core(void)
{
    guts_core *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->cfg.interval_ms = 1000;
    c->cfg.expiry_missed = 3;
    c->cfg.group_budget = 1000000;
    c->cfg.dgram_max = 1400;
    c->kmv_seed = 0x5eed;
    return c;
}

START_TEST(test_a_touch_leaves_the_estimates_an_estimate_would)
{
    guts_core *a = sketch_core(), *b = sketch_core();
    uint64_t s = 7;
    /* group sizes in turn: small (the exact count), over the sketch's k
     * (full epochs, the stale window), and shrinking again */
    static const uint32_t sizes[] = {40, 200, 3000, 600, 20000, 90};
    size_t compared = 0, small = 0, large = 0;
    uint64_t now = 1;
    for (size_t phase = 0; phase < sizeof(sizes) / sizeof(sizes[0]); phase++) {
        for (int step = 0; step < 20000; step++) {
            if (rng(&s) % 64 == 0) { /* time passes: epochs roll over */
                now += rng(&s) % 400;
                a->now = b->now = now;
                members_expire(a);
                members_expire(b);
            }
            guts_node_id id;
            memset(&id, 0, sizeof(id));
            uint32_t who = (uint32_t)(rng(&s) % sizes[phase]);
            memcpy(id.b, &who, sizeof(who));
            id.b[8] = (uint8_t)phase; /* each phase its own senders */
            members_sketch_add(a, &id);
            members_sketch_add(b, &id);
            uint64_t r = rng(&s) % 100;
            if (r < 40) { /* a full view's admission */
                (void)members_estimate(a);
                members_estimate_touch(b);
            } else if (r < 45) { /* someone needs the value */
                uint64_t ea = members_estimate(a), eb = members_estimate(b);
                ck_assert_uint_eq(ea, eb);
                compared++;
                small += ea < CORE_KMV_K;
                large += ea > CORE_KMV_K;
            }
        }
    }
    ck_assert_uint_gt(compared, 4000);
    ck_assert_uint_gt(small, 100); /* both regimes were compared */
    ck_assert_uint_gt(large, 100);
    free(a);
    free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core_sketch");
    TCase *tc = tcase_create("sketch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_a_touch_leaves_the_estimates_an_estimate_would);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
