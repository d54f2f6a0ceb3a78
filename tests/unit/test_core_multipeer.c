/* test_core_multipeer.c - a first copy pulled from several peers at once
 * (src/core/pull_plan.c and its use in node_pull.c).
 *
 * The plan alone (parts taken, finished, given back), a lone core whose
 * peers never answer (the stall moves a part), and clusters of three seeds
 * and a fresh node on a virtual clock (the split, a seed restarted midway,
 * the refs applied once every part is in).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "core_internal.h"
#include "guts/core.h"
#include "guts/wire.h"
#include "test_core_util.h"
#include "test_run.h"

#define KEY "alice/proj"

/* ---- The plan alone ------------------------------------------------------ */

START_TEST(test_plan_parts_are_taken_in_order_and_given_back)
{
    pull_plan *p;
    uint32_t n;
    ck_assert_int_eq(pull_plan_new(1024, 4096, &p), 0);
    ck_assert_uint_eq(p->nparts, 16);
    ck_assert_uint_eq(p->depth, 1);
    /* a run of 1/8 of the free parts, at least one */
    ck_assert_int_eq(pull_plan_take(p, 7, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(pull_plan_take(p, 9, &n), 2);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(pull_plan_free_parts(p), 13);
    guts_node_id bad;
    memset(&bad, 0x33, sizeof bad);
    pull_plan_give_back(p, 0, 2, &bad);
    ck_assert(pull_plan_avoids(p, &bad));
    ck_assert_uint_eq(pull_plan_free_parts(p), 15);
    /* the parts given back are the next ones taken */
    ck_assert_int_eq(pull_plan_take(p, 11, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(p->owner[0], 11);
    int taken = 2;
    while (pull_plan_take(p, 1, &n) >= 0)
        taken += (int)n;
    ck_assert_int_eq(taken, 16);
    ck_assert_uint_eq(pull_plan_free_parts(p), 0);
    for (int i = 0; i < 16; i++) {
        ck_assert(!pull_plan_complete(p));
        pull_plan_done(p, i, 1);
    }
    ck_assert(pull_plan_complete(p));
    ck_assert_int_eq(pull_plan_take(p, 1, &n), -1);
    pull_plan_free(p);
    /* many objects missing: 256 parts of the tree's second level, runs of
     * at most 32, shorter as the free parts get fewer, never past a taken
     * part */
    ck_assert_int_eq(pull_plan_new(4096, 4096, &p), 0);
    ck_assert_uint_eq(p->nparts, 256);
    ck_assert_uint_eq(p->depth, 2);
    ck_assert_int_eq(pull_plan_take(p, 1, &n), 0);
    ck_assert_uint_eq(n, 32);
    ck_assert_int_eq(pull_plan_take(p, 2, &n), 32);
    ck_assert_uint_eq(n, 28);
    pull_plan_give_back(p, 10, 5, NULL);
    ck_assert_int_eq(pull_plan_take(p, 3, &n), 10);
    ck_assert_uint_eq(n, 5);
    ck_assert_uint_eq(p->owner[14], 3);
    ck_assert_uint_eq(p->owner[15], 1);
    pull_plan_free(p);
}
END_TEST

/* A ranged recon session never names a range outside its part. */
static int empty_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    (void)ctx, (void)lo, (void)hi, (void)cb, (void)cbctx;
    return 0;
}

START_TEST(test_ranged_recon_starts_at_its_part)
{
    guts_recon_set set = {NULL, empty_scan};
    guts_recon_puller p;
    const guts_recon_item *out;
    size_t n;
    ck_assert_int_eq(guts_recon_puller_start_range(&p, &set, 1, 2, 0xab, 1, &out, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(out[0].kind, GUTS_ITEM_ALL);
    ck_assert_uint_eq(out[0].depth, 2);
    ck_assert_uint_eq(out[0].prefix, 0xab);
    guts_recon_puller_free(&p);
    /* a run of parts: one item each */
    ck_assert_int_eq(guts_recon_puller_start_range(&p, &set, 1, 2, 0xab, 3, &out, &n), 0);
    ck_assert_uint_eq(n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(out[i].kind, GUTS_ITEM_ALL);
        ck_assert_uint_eq(out[i].prefix, 0xab + i);
    }
    guts_recon_puller_free(&p);
    ck_assert_int_eq(guts_recon_puller_start_range(&p, &set, 1, 1, 16, 1, &out, &n), GUTS_EINVAL);
    guts_recon_puller_free(&p);
    ck_assert_int_eq(guts_recon_puller_start_range(&p, &set, 1, 2, 0xfe, 3, &out, &n), GUTS_EINVAL);
    guts_recon_puller_free(&p);
    ck_assert_int_eq(guts_recon_puller_start_range(&p, &set, 1, 2, 0, 0, &out, &n), GUTS_EINVAL);
    guts_recon_puller_free(&p);
}
END_TEST

/* ---- A lone core whose peers never answer ------------------------------- */

typedef struct lone {
    guts_memstore *mem;
    guts_core_store iface;
    guts_core *core;
    uint32_t open[8]; /* streams it opened, in order */
    guts_addr open_to[8];
    size_t nopen, ncloses;
} lone;

static void lone_drain(lone *l, uint64_t now)
{
    guts_core_action a;
    uint32_t opened[8];
    size_t k = 0;
    while (guts_core_next_action(l->core, &a)) {
        if (a.kind == GUTS_ACT_OPEN_STREAM && l->nopen < 8) {
            l->open_to[l->nopen] = a.addr;
            l->open[l->nopen++] = a.stream;
            opened[k++] = a.stream;
        }
        l->ncloses += a.kind == GUTS_ACT_CLOSE_STREAM;
    }
    /* every stream connects at once; nothing ever answers on it */
    for (size_t i = 0; i < k; i++) {
        guts_addr to = l->open_to[l->nopen - k + i];
        guts_core_on_stream_open(l->core, now, opened[i], &to, 1);
    }
    if (k) lone_drain(l, now);
}

static void lone_announce(lone *l, uint64_t now, int n, uint64_t objects)
{
    guts_announce_repo r;
    memset(&r, 0, sizeof r);
    r.key = KEY;
    r.objects = objects;
    r.fp.lo = 42;
    r.refs_digest = 7;
    guts_msg m;
    memset(&m, 0, sizeof m);
    m.type = GUTS_MSG_ANNOUNCE;
    m.version = GUTS_WIRE_VERSION;
    m.sender.b[0] = 0x70;
    m.sender.b[2] = (uint8_t)n;
    m.u.announce.incarnation = 1;
    m.u.announce.port = 9000;
    m.u.announce.interval_ms = 1000;
    m.u.announce.pages = 1;
    m.u.announce.nrepos = 1;
    m.u.announce.repos = &r;
    uint8_t buf[GUTS_DGRAM_MAX];
    size_t len;
    ck_assert_int_eq(guts_msg_encode(&m, buf, sizeof buf, &len), 0);
    guts_addr a;
    memset(&a, 0, sizeof a);
    a.len = 4;
    a.b[0] = 10;
    a.b[3] = (uint8_t)n;
    guts_core_on_datagram(l->core, now, &a, GUTS_VIA_GROUP, buf, len);
    lone_drain(l, now);
}

START_TEST(test_stalled_peer_gives_its_part_back)
{
    lone l;
    memset(&l, 0, sizeof l);
    ck_assert_int_eq(guts_memstore_new(&l.mem), 0);
    guts_memstore_iface(l.mem, &l.iface);
    guts_core_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.node_id.b[0] = 0x55;
    cfg.incarnation = 1;
    cfg.tcp_port = 7000;
    cfg.seed = 5;
    cfg.store = &l.iface;
    ck_assert_int_eq(guts_core_new(&cfg, &l.core), 0);
    guts_core_on_timer(l.core, 0);
    lone_drain(&l, 0);
    /* three peers hold 2,000 objects we lack: a split pull */
    for (uint64_t t = 10; t <= 2000; t += 10) {
        for (int n = 1; n <= 3; n++)
            if (t % 500 == 10) lone_announce(&l, t, n, 2000);
        guts_core_on_timer(l.core, t);
        lone_drain(&l, t);
    }
    guts_core_counters k;
    guts_core_counters_get(l.core, &k);
    ck_assert_uint_eq(k.split_pulls, 1);
    ck_assert_uint_eq(k.split_joins, 2); /* one session per peer, no more */
    ck_assert_uint_eq(l.nopen, 3);
    lrepo *r = core_repo_find(l.core, KEY);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(r->plan);
    ck_assert_uint_eq(r->pulling, 3);
    ck_assert_uint_eq(r->plan->ntaken, 4); /* runs of 2 (1/8 of 16 free), 1 and 1 */
    ck_assert_uint_eq(k.split_stalls, 0);
    /* nothing came for CORE_SPLIT_STALL_MS: every part goes back */
    for (uint64_t t = 2010; t <= 10000; t += 10) {
        if (t % 500 == 10)
            for (int n = 1; n <= 3; n++)
                lone_announce(&l, t, n, 2000);
        guts_core_on_timer(l.core, t);
        lone_drain(&l, t);
    }
    guts_core_counters_get(l.core, &k);
    ck_assert_uint_ge(k.split_stalls, 3);
    ck_assert_uint_ge(k.split_given_back, 3);
    ck_assert_uint_ge(l.ncloses, 3);
    ck_assert_uint_eq(k.refs_applied, 0);
    r = core_repo_find(l.core, KEY);
    ck_assert_ptr_nonnull(r->plan); /* kept for the next pull */
    ck_assert_uint_eq(r->plan->ndone, 0);
    ck_assert_uint_ge(r->plan->ntaken, r->pulling); /* each session its run */
    ck_assert(r->pulling || r->plan->ntaken == 0);
    /* each stall doubled the next sessions' wait (a slow link, maybe) */
    ck_assert_uint_eq(r->plan->stall_ms, CORE_SESSION_IDLE_MS);
    guts_core_free(l.core);
    guts_memstore_free(l.mem);
}
END_TEST

/* ---- Clusters: three seeds and a fresh node ------------------------------ */

static guts_cluster *seeds(uint64_t seed, int commits)
{
    guts_cluster_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.nodes = 4;
    cfg.seed = seed;
    cfg.latency_min = 20;
    cfg.latency_max = 30;
    guts_cluster *cl;
    ck_assert_int_eq(guts_cluster_new(&cfg, &cl), 0);
    if (getenv("GUTS_TEST_VERBOSE")) guts_cluster_set_verbose(cl, 1);
    char text[64];
    for (size_t i = 0; i < 3; i++) {
        const guts_core_store *s = guts_cluster_iface(cl, i);
        ck_assert_int_eq(s->create(s->ctx, KEY), 0);
        for (int c = 0; c < commits; c++) {
            snprintf(text, sizeof text, "commit %d", c);
            tu_write_commit(s, KEY, "refs/heads/main", 0, text);
        }
        guts_cluster_local_change(cl, i, KEY);
    }
    return cl;
}

static void same_as_seed(guts_cluster *cl, uint64_t objects)
{
    const guts_core_store *s0 = guts_cluster_iface(cl, 0), *s3 = guts_cluster_iface(cl, 3);
    guts_repo_info a, b;
    ck_assert_int_eq(s0->info(s0->ctx, KEY, &a), 0);
    ck_assert_int_eq(s3->info(s3->ctx, KEY, &b), 0);
    ck_assert_uint_eq(a.objects, objects);
    ck_assert_uint_eq(b.objects, objects);
    ck_assert(guts_fp_eq(a.fp, b.fp));
    guts_ref x, y;
    ck_assert_int_eq(s0->ref_get(s0->ctx, KEY, "refs/heads/main", &x), 0);
    ck_assert_int_eq(s3->ref_get(s3->ctx, KEY, "refs/heads/main", &y), 0);
    ck_assert_int_eq(guts_id_cmp(&x.target, &y.target), 0);
}

/* The ref never lands before every object of its closure is in. */
static void run_checking_refs(guts_cluster *cl, uint64_t until, uint64_t objects)
{
    const guts_core_store *s3 = guts_cluster_iface(cl, 3);
    for (uint64_t t = 0; t <= until; t += 50) {
        guts_cluster_run_until(cl, t);
        guts_repo_info b;
        guts_ref y;
        if (s3->info(s3->ctx, KEY, &b) == 0 &&
            s3->ref_get(s3->ctx, KEY, "refs/heads/main", &y) == 0)
            ck_assert_uint_eq(b.objects, objects);
        if (guts_cluster_converged(cl)) return;
    }
}

START_TEST(test_three_seeds_share_a_first_copy)
{
    guts_cluster *cl = seeds(31, 1300); /* 3,900 objects: 16 parts */
    run_checking_refs(cl, 60000, 3900);
    ck_assert(guts_cluster_converged(cl));
    same_as_seed(cl, 3900);
    guts_core_counters k;
    guts_core_counters_get(guts_cluster_core(cl, 3), &k);
    ck_assert_uint_eq(k.split_pulls, 1);
    ck_assert_uint_ge(k.split_joins, 2);
    ck_assert_uint_eq(k.split_given_back, 0);
    ck_assert_uint_eq(k.objects_fetched, 3900);
    ck_assert_uint_eq(k.objects_dup, 0); /* disjoint parts, no base asked for early */
    /* each seed sent objects (a serve is counted when its parked stream
     * closes: its bytes now) */
    for (size_t i = 0; i < 3; i++) {
        guts_core_counters ks;
        guts_core_counters_get(guts_cluster_core(cl, i), &ks);
        ck_assert_uint_ge(ks.frame_bytes_out - ks.digest_bytes_out, 20000);
    }
    guts_cluster_free(cl);
}
END_TEST

START_TEST(test_seed_restarted_midway_gives_its_part_to_another)
{
    guts_cluster *cl = seeds(32, 1500); /* 4,500 objects: 256 parts */
    uint64_t t = 0;
    size_t victim = SIZE_MAX;
    /* once the fresh node pulls from two seeds, restart one serving it */
    for (; t < 30000 && victim == SIZE_MAX; t += 10) {
        guts_cluster_run_until(cl, t);
        if (guts_core_pulls(guts_cluster_core(cl, 3), NULL, 0) < 2) continue;
        for (size_t i = 0; i < 3 && victim == SIZE_MAX; i++) {
            size_t pulls, serves;
            guts_core_sessions(guts_cluster_core(cl, i), &pulls, &serves);
            if (serves) victim = i;
        }
    }
    ck_assert_uint_ne(victim, SIZE_MAX);
    ck_assert_int_eq(guts_cluster_restart(cl, victim), 0);
    run_checking_refs(cl, t + 120000, 4500);
    ck_assert(guts_cluster_converged(cl));
    same_as_seed(cl, 4500);
    guts_core_counters k;
    guts_core_counters_get(guts_cluster_core(cl, 3), &k);
    ck_assert_uint_eq(k.split_pulls, 1);
    ck_assert_uint_ge(k.split_given_back, 1);
    ck_assert_uint_eq(k.objects_fetched, 4500);
    ck_assert_uint_le(k.objects_dup, 200);
    guts_cluster_free(cl);
}
END_TEST

/* A small pull stays one whole session, as before. */
START_TEST(test_small_pull_is_not_split)
{
    guts_cluster *cl = seeds(33, 100);
    guts_cluster_run_until(cl, 20000);
    ck_assert(guts_cluster_converged(cl));
    same_as_seed(cl, 300);
    guts_core_counters k;
    guts_core_counters_get(guts_cluster_core(cl, 3), &k);
    ck_assert_uint_eq(k.split_pulls, 0);
    ck_assert_uint_eq(k.split_joins, 0);
    guts_cluster_free(cl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core_multipeer");
    TCase *tc = tcase_create("multipeer");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_plan_parts_are_taken_in_order_and_given_back);
    tcase_add_test(tc, test_ranged_recon_starts_at_its_part);
    tcase_add_test(tc, test_stalled_peer_gives_its_part_back);
    tcase_add_test(tc, test_three_seeds_share_a_first_copy);
    tcase_add_test(tc, test_seed_restarted_midway_gives_its_part_to_another);
    tcase_add_test(tc, test_small_pull_is_not_split);
    suite_add_tcase(s, tc);
    return test_run(s, CK_NOFORK);
}
