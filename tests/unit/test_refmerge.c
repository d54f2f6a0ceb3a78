/* test_refmerge.c - the ref merge rule as a specification: its laws over
 * random histories (commutative, associative, idempotent winner; the same
 * conflicts whatever the order), fast-forwards without conflicts, tombstones
 * that don't resurrect, divergent updates kept under conflict names (one per
 * lost commit, so a writer losing twice keeps both), and the Lamport clock
 * helpers.
 *
 * Histories run over a fixed random commit DAG whose ancestor relation is
 * precomputed; a commit's id carries its index in its first two bytes.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guts/refmerge.h"
#include "test_run.h"

static uint64_t rng_next(uint64_t *s)
{
    return guts_splitmix64(s);
}

static unsigned rnd(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) % n);
}

/* ---- a random commit DAG ---------------------------------------------------- */

#define NCOMMITS 40

typedef struct dag {
    uint8_t anc[NCOMMITS + 1][NCOMMITS + 1]; /* anc[a][d]: a is a strict ancestor of d */
    int asked_unknown;
} dag;

/* Commit i (1..NCOMMITS) has id bytes {i>>8, i, 0xc0, ...}; 0 is the zero id. */
static guts_id commit_id(unsigned i)
{
    guts_id id;
    memset(&id, 0, sizeof id);
    if (i) {
        id.b[0] = (uint8_t)(i >> 8);
        id.b[1] = (uint8_t)i;
        id.b[2] = 0xc0;
    }
    return id;
}

static unsigned commit_index(const guts_id *id)
{
    return (unsigned)id->b[0] << 8 | id->b[1];
}

static void dag_make(dag *g, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    for (unsigned i = 2; i <= NCOMMITS; i++) {
        unsigned np = 1 + rnd(&seed, 2); /* one parent, sometimes a merge */
        for (unsigned k = 0; k < np; k++) {
            unsigned p = 1 + rnd(&seed, i - 1);
            g->anc[p][i] = 1;
            for (unsigned a = 1; a < i; a++)
                if (g->anc[a][p]) g->anc[a][i] = 1;
        }
    }
}

static int dag_is_ancestor(void *ctx, const guts_id *a, const guts_id *d)
{
    dag *g = ctx;
    unsigned ia = commit_index(a), id = commit_index(d);
    ck_assert(ia >= 1 && ia <= NCOMMITS && id >= 1 && id <= NCOMMITS);
    ck_assert_uint_ne(ia, id); /* never asked about equal ids */
    return g->anc[ia][id];
}

/* ---- records and a replica's refs ------------------------------------------ */

static guts_ref mkref(const char *name, unsigned target, uint64_t clock, unsigned writer)
{
    guts_ref r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    r.target = commit_id(target);
    r.clock = clock;
    r.writer.b[0] = (uint8_t)(writer >> 8);
    r.writer.b[1] = (uint8_t)writer;
    r.writer.b[15] = 0x5a;
    return r;
}

#define MAXREFS 64

typedef struct replica {
    guts_ref refs[MAXREFS];
    size_t n;
} replica;

static guts_ref *replica_find(replica *rp, const char *name)
{
    for (size_t i = 0; i < rp->n; i++)
        if (strcmp(rp->refs[i].name, name) == 0) return &rp->refs[i];
    return NULL;
}

/* Apply one record the way a node does: merge, store the winner, store the
 * conflict (merging it into any conflict record of the same name). */
static void replica_apply(replica *rp, const guts_ref *in, dag *g)
{
    guts_ref *cur = replica_find(rp, in->name);
    static guts_ref res, conf;
    int has = 0;
    ck_assert_int_eq(guts_ref_merge(cur, in, dag_is_ancestor, g, &res, &conf, &has), GUTS_OK);
    if (cur) {
        *cur = res;
    } else {
        ck_assert_uint_lt(rp->n, MAXREFS);
        rp->refs[rp->n++] = res;
    }
    if (has) {
        ck_assert(guts_ref_is_conflict_name(conf.name));
        guts_ref c = conf;
        replica_apply(rp, &c, g);
    }
}

static void shuffle(uint64_t *s, unsigned *a, unsigned n)
{
    for (unsigned i = n; i > 1; i--) {
        unsigned j = rnd(s, i);
        unsigned t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static int ref_same(const guts_ref *a, const guts_ref *b)
{
    return strcmp(a->name, b->name) == 0 && guts_ref_cmp(a, b) == 0;
}

/* ---- laws over random histories -------------------------------------------- */

START_TEST(test_refmerge_winner_is_the_same_in_any_order_with_duplicates)
{
    uint64_t s = 1;
    dag g;
    dag_make(&g, 11);
    for (int h = 0; h < 300; h++) {
        unsigned n = 2 + rnd(&s, 10);
        guts_ref recs[12];
        for (unsigned i = 0; i < n; i++) /* few clocks and writers: many ties */
            recs[i] = mkref("refs/heads/main", rnd(&s, 5) ? 1 + rnd(&s, NCOMMITS) : 0,
                            1 + rnd(&s, 4), rnd(&s, 3));
        const guts_ref *max = &recs[0];
        for (unsigned i = 1; i < n; i++)
            if (guts_ref_cmp(&recs[i], max) > 0) max = &recs[i];
        for (int perm = 0; perm < 10; perm++) {
            /* A random order with every record at least once, some twice. */
            unsigned order[24], m = 0;
            for (unsigned i = 0; i < n; i++) {
                order[m++] = i;
                if (rnd(&s, 3) == 0) order[m++] = i;
            }
            shuffle(&s, order, m);
            replica rp = {.n = 0};
            for (unsigned i = 0; i < m; i++)
                replica_apply(&rp, &recs[order[i]], &g);
            guts_ref *w = replica_find(&rp, "refs/heads/main");
            ck_assert_ptr_nonnull(w);
            ck_assert(ref_same(w, max));
        }
    }
}
END_TEST

START_TEST(test_refmerge_pairwise_laws)
{
    uint64_t s = 2;
    dag g;
    dag_make(&g, 12);
    for (int t = 0; t < 2000; t++) {
        guts_ref a = mkref("refs/heads/x", rnd(&s, 4) ? 1 + rnd(&s, NCOMMITS) : 0, 1 + rnd(&s, 3),
                           rnd(&s, 3));
        guts_ref b = mkref("refs/heads/x", 1 + rnd(&s, NCOMMITS), 1 + rnd(&s, 3), rnd(&s, 3));
        guts_ref c = mkref("refs/heads/x", 1 + rnd(&s, NCOMMITS), 1 + rnd(&s, 3), rnd(&s, 3));
        static guts_ref ab, ba, abc, bc, a_bc, aa, conf, conf2;
        int h1, h2;
        /* Commutative, with the same conflict either way. */
        ck_assert_int_eq(guts_ref_merge(&a, &b, dag_is_ancestor, &g, &ab, &conf, &h1), 0);
        ck_assert_int_eq(guts_ref_merge(&b, &a, dag_is_ancestor, &g, &ba, &conf2, &h2), 0);
        ck_assert(ref_same(&ab, &ba));
        ck_assert_int_eq(h1, h2);
        if (h1) ck_assert(ref_same(&conf, &conf2));
        /* Associative. */
        ck_assert_int_eq(guts_ref_merge(&ab, &c, dag_is_ancestor, &g, &abc, &conf, &h1), 0);
        ck_assert_int_eq(guts_ref_merge(&b, &c, dag_is_ancestor, &g, &bc, &conf, &h1), 0);
        ck_assert_int_eq(guts_ref_merge(&a, &bc, dag_is_ancestor, &g, &a_bc, &conf, &h1), 0);
        ck_assert(ref_same(&abc, &a_bc));
        /* Idempotent: merging a record into itself changes nothing. */
        ck_assert_int_eq(guts_ref_merge(&a, &a, dag_is_ancestor, &g, &aa, &conf, &h1), 0);
        ck_assert(ref_same(&aa, &a));
        ck_assert_int_eq(h1, 0);
    }
}
END_TEST

/* The conflict targets a replica ends with, normalised: drop those that the
 * winner already contains and those another conflict contains. */
static int norm_targets(const replica *rp, const char *name, dag *g, unsigned out[])
{
    const guts_ref *w = NULL;
    for (size_t i = 0; i < rp->n; i++)
        if (strcmp(rp->refs[i].name, name) == 0) w = &rp->refs[i];
    unsigned wt = commit_index(&w->target);
    unsigned cand[MAXREFS], nc = 0;
    for (size_t i = 0; i < rp->n; i++) {
        if (!guts_ref_is_conflict_name(rp->refs[i].name)) continue;
        unsigned t = commit_index(&rp->refs[i].target);
        ck_assert_uint_ne(t, 0);
        if (wt && (t == wt || g->anc[t][wt])) continue;
        cand[nc++] = t;
    }
    int n = 0;
    for (unsigned i = 0; i < nc; i++) {
        int covered = 0, dup = 0;
        for (unsigned j = 0; j < nc; j++)
            covered |= g->anc[cand[i]][cand[j]];
        for (int j = 0; j < n; j++)
            dup |= out[j] == cand[i];
        if (!covered && !dup) out[n++] = cand[i];
    }
    /* sort for comparison */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            unsigned t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* Merge every record of one replica (winners and conflicts) into another:
 * what replication does between two nodes. */
static void replica_merge(replica *into, const replica *from, dag *g)
{
    for (size_t i = 0; i < from->n; i++) {
        guts_ref r = from->refs[i];
        replica_apply(into, &r, g);
    }
}

START_TEST(test_refmerge_conflicts_are_the_same_in_any_order)
{
    /* Few live writers, so one writer often loses several times on the ref
     * (tombstones get writers of their own: a tombstone over its own
     * writer's update is a delete, not a conflict, see below). After
     * dropping conflicts the winner or another conflict already contains,
     * every order, with duplicates, and every split of the records between
     * two replicas merged afterwards, leaves exactly the heads of the
     * divergent history. */
    uint64_t s = 3;
    for (int h = 0; h < 200; h++) {
        dag g;
        dag_make(&g, 100 + h);
        unsigned n = 2 + rnd(&s, 9);
        guts_ref recs[12];
        for (unsigned i = 0; i < n; i++) {
            unsigned t = rnd(&s, 6) ? 1 + rnd(&s, NCOMMITS) : 0;
            recs[i] = mkref("refs/heads/dev", t, 1 + rnd(&s, 6), t ? 1 + rnd(&s, 3) : 100 + i);
        }
        /* Expected: maximal live targets not contained in the winner. */
        const guts_ref *max = &recs[0];
        for (unsigned i = 1; i < n; i++)
            if (guts_ref_cmp(&recs[i], max) > 0) max = &recs[i];
        unsigned wt = commit_index(&max->target);
        unsigned exp[12];
        int nexp = 0;
        for (unsigned i = 0; i < n; i++) {
            unsigned t = commit_index(&recs[i].target);
            if (&recs[i] == max || t == 0 || (wt && (t == wt || g.anc[t][wt]))) continue;
            int covered = 0, dup = 0;
            for (unsigned j = 0; j < n; j++) {
                unsigned u = commit_index(&recs[j].target);
                if (&recs[j] != max && u && !(wt && (u == wt || g.anc[u][wt])))
                    covered |= g.anc[t][u];
            }
            for (int j = 0; j < nexp; j++)
                dup |= exp[j] == t;
            if (!covered && !dup) exp[nexp++] = t;
        }
        for (int i = 1; i < nexp; i++)
            for (int j = i; j > 0 && exp[j - 1] > exp[j]; j--) {
                unsigned t = exp[j];
                exp[j] = exp[j - 1];
                exp[j - 1] = t;
            }
        for (int perm = 0; perm < 12; perm++) {
            unsigned order[24], m = 0;
            for (unsigned i = 0; i < n; i++) {
                order[m++] = i;
                if (rnd(&s, 3) == 0) order[m++] = i;
            }
            shuffle(&s, order, m);
            static replica rp, ra, rb;
            rp.n = ra.n = rb.n = 0;
            for (unsigned i = 0; i < m; i++) {
                replica_apply(&rp, &recs[order[i]], &g);
                replica_apply(rnd(&s, 2) ? &ra : &rb, &recs[order[i]], &g);
            }
            replica_merge(&ra, &rb, &g);
            const replica *both[2] = {&rp, &ra};
            for (int k = 0; k < 2; k++) {
                unsigned got[MAXREFS];
                int ngot = norm_targets(both[k], "refs/heads/dev", &g, got);
                ck_assert_int_eq(ngot, nexp);
                for (int i = 0; i < ngot; i++)
                    ck_assert_uint_eq(got[i], exp[i]);
            }
        }
    }
}
END_TEST

START_TEST(test_refmerge_fast_forward_never_conflicts)
{
    /* A chain 1 <- 2 <- ... <- 10: later clocks point further along. */
    dag g;
    memset(&g, 0, sizeof g);
    for (unsigned a = 1; a <= 10; a++)
        for (unsigned d = a + 1; d <= 10; d++)
            g.anc[a][d] = 1;
    uint64_t s = 4;
    guts_ref recs[10];
    for (unsigned i = 0; i < 10; i++)
        recs[i] = mkref("refs/heads/main", i + 1, i + 1, rnd(&s, 4));
    for (int perm = 0; perm < 50; perm++) {
        unsigned order[10];
        for (unsigned i = 0; i < 10; i++)
            order[i] = i;
        shuffle(&s, order, 10);
        replica rp = {.n = 0};
        for (unsigned i = 0; i < 10; i++)
            replica_apply(&rp, &recs[order[i]], &g);
        ck_assert_uint_eq(rp.n, 1); /* no conflict record anywhere */
        ck_assert_uint_eq(commit_index(&rp.refs[0].target), 10);
    }
}
END_TEST

START_TEST(test_refmerge_divergent_update_is_kept_as_conflict)
{
    dag g;
    memset(&g, 0, sizeof g); /* 1 and 2 unrelated */
    guts_ref a = mkref("refs/heads/main", 1, 7, 1);
    guts_ref b = mkref("refs/heads/main", 2, 8, 2);
    static guts_ref res, conf;
    int has;
    ck_assert_int_eq(guts_ref_merge(&a, &b, dag_is_ancestor, &g, &res, &conf, &has), GUTS_OK);
    ck_assert(ref_same(&res, &b));
    ck_assert_int_eq(has, 1);
    char hex[33], thex[GUTS_HEX_LEN + 1];
    guts_node_id_to_hex(&a.writer, hex);
    guts_id_to_hex(&a.target, thex);
    char want[160];
    snprintf(want, sizeof want, "refs/guts/conflicts/%s/%s/heads/main", hex, thex);
    ck_assert_str_eq(conf.name, want);
    ck_assert_uint_eq(commit_index(&conf.target), 1);
    ck_assert_uint_eq(conf.clock, 7);
    ck_assert_mem_eq(conf.writer.b, a.writer.b, GUTS_NODE_ID_LEN);
    ck_assert_int_eq(guts_refname_check(conf.name), GUTS_OK);
    /* Once the winner merges the loser's commit, the conflict is obsolete. */
    g.anc[1][3] = g.anc[2][3] = 1;
    guts_ref merged = mkref("refs/heads/main", 3, 9, 2);
    ck_assert_int_eq(guts_ref_conflict_obsolete(&conf, &merged, dag_is_ancestor, &g), 1);
    ck_assert_int_eq(guts_ref_conflict_obsolete(&conf, &b, dag_is_ancestor, &g), 0);
}
END_TEST

START_TEST(test_refmerge_writer_losing_twice_keeps_both_commits)
{
    /* Writer 1 moves main to 1 and loses to writer 2's 2; it then builds 3
     * on 2 and loses again to writer 3's 4, also built on 2. Both of writer
     * 1's commits stay, under two names, whatever the order. */
    dag g;
    memset(&g, 0, sizeof g);
    g.anc[2][3] = g.anc[2][4] = 1;
    guts_ref recs[4] = {mkref("refs/heads/main", 1, 1, 1), mkref("refs/heads/main", 2, 2, 2),
                        mkref("refs/heads/main", 3, 3, 1), mkref("refs/heads/main", 4, 4, 3)};
    unsigned order[4] = {0, 1, 2, 3};
    uint64_t s = 6;
    for (int perm = 0; perm < 48; perm++) {
        shuffle(&s, order, 4);
        replica rp = {.n = 0};
        for (unsigned i = 0; i < 4; i++)
            replica_apply(&rp, &recs[order[i]], &g);
        ck_assert_uint_eq(commit_index(&replica_find(&rp, "refs/heads/main")->target), 4);
        ck_assert_uint_eq(rp.n, 3); /* main and two conflict records */
        char n1[GUTS_REFNAME_MAX + 1], n3[GUTS_REFNAME_MAX + 1];
        ck_assert_int_eq(
            guts_ref_conflict_name("refs/heads/main", &recs[0].writer, &recs[0].target, n1), 0);
        ck_assert_int_eq(
            guts_ref_conflict_name("refs/heads/main", &recs[2].writer, &recs[2].target, n3), 0);
        ck_assert_str_ne(n1, n3);
        guts_ref *c1 = replica_find(&rp, n1), *c3 = replica_find(&rp, n3);
        ck_assert_ptr_nonnull(c1);
        ck_assert_ptr_nonnull(c3);
        ck_assert_uint_eq(commit_index(&c1->target), 1);
        ck_assert_uint_eq(c1->clock, 1);
        ck_assert_uint_eq(commit_index(&c3->target), 3);
        ck_assert_uint_eq(c3->clock, 3);
    }
}
END_TEST

START_TEST(test_refmerge_same_lost_commit_shares_one_conflict_name)
{
    /* The same commit lost twice (its writer rewrote it at a later clock)
     * is one record, with the newer clock: the set of names grows with the
     * lost commits, not with the updates. */
    dag g;
    memset(&g, 0, sizeof g);
    guts_ref a = mkref("refs/heads/main", 1, 2, 1), a2 = mkref("refs/heads/main", 1, 5, 1);
    guts_ref b = mkref("refs/heads/main", 2, 3, 2), b2 = mkref("refs/heads/main", 3, 6, 2);
    const guts_ref *recs[4] = {&a, &b, &a2, &b2};
    replica rp = {.n = 0};
    for (int i = 0; i < 4; i++)
        replica_apply(&rp, recs[i], &g);
    ck_assert_uint_eq(commit_index(&replica_find(&rp, "refs/heads/main")->target), 3);
    char n1[GUTS_REFNAME_MAX + 1];
    ck_assert_int_eq(guts_ref_conflict_name("refs/heads/main", &a.writer, &a.target, n1), 0);
    guts_ref *c1 = replica_find(&rp, n1);
    ck_assert_ptr_nonnull(c1);
    ck_assert_uint_eq(c1->clock, 5);
    ck_assert_uint_eq(rp.n, 3); /* main, writer 1's commit 1, writer 2's commit 2 */
}
END_TEST

START_TEST(test_refmerge_ties_break_by_writer_then_target)
{
    guts_ref a = mkref("refs/heads/t", 5, 3, 1);
    guts_ref b = mkref("refs/heads/t", 4, 3, 2); /* same clock, higher writer */
    ck_assert_int_lt(guts_ref_cmp(&a, &b), 0);
    guts_ref c = mkref("refs/heads/t", 6, 3, 2); /* same clock and writer, higher target */
    ck_assert_int_lt(guts_ref_cmp(&b, &c), 0);
    guts_ref d = mkref("refs/heads/t", 1, 4, 0); /* higher clock beats all */
    ck_assert_int_gt(guts_ref_cmp(&d, &c), 0);
    guts_ref e = mkref("HEAD", 0, 3, 2), f = e;
    snprintf(e.symref, sizeof e.symref, "refs/heads/a");
    snprintf(f.symref, sizeof f.symref, "refs/heads/b");
    ck_assert_int_lt(guts_ref_cmp(&e, &f), 0);
    ck_assert_int_eq(guts_ref_cmp(&a, &a), 0);
}
END_TEST

START_TEST(test_refmerge_tombstone_does_not_resurrect)
{
    dag g;
    memset(&g, 0, sizeof g);
    g.anc[1][2] = 1;
    guts_ref upd = mkref("refs/heads/gone", 2, 5, 1);
    guts_ref del = mkref("refs/heads/gone", 0, 6, 1); /* its writer deletes it */
    guts_ref old = mkref("refs/heads/gone", 1, 3, 2); /* an older update, late */
    unsigned orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const guts_ref *recs[3] = {&upd, &del, &old};
    for (int o = 0; o < 6; o++) {
        replica rp = {.n = 0};
        for (int i = 0; i < 3; i++)
            replica_apply(&rp, recs[orders[o][i]], &g);
        guts_ref *w = replica_find(&rp, "refs/heads/gone");
        ck_assert(guts_ref_is_tombstone(w));
        ck_assert_uint_eq(w->clock, 6);
    }
    /* Merging the update after the delete: the delete stays. */
    static guts_ref res, conf;
    int has;
    ck_assert_int_eq(guts_ref_merge(&del, &upd, dag_is_ancestor, &g, &res, &conf, &has), 0);
    ck_assert(guts_ref_is_tombstone(&res));
    ck_assert_int_eq(has, 0); /* the writer deleted its own update */
}
END_TEST

START_TEST(test_refmerge_tombstone_keeps_other_writers_update)
{
    dag g;
    memset(&g, 0, sizeof g);
    guts_ref upd = mkref("refs/heads/f", 3, 5, 1);
    guts_ref del = mkref("refs/heads/f", 0, 6, 2);
    static guts_ref res, conf;
    int has;
    ck_assert_int_eq(guts_ref_merge(&upd, &del, dag_is_ancestor, &g, &res, &conf, &has), 0);
    ck_assert(guts_ref_is_tombstone(&res));
    ck_assert_int_eq(has, 1);
    ck_assert_uint_eq(commit_index(&conf.target), 3);
    /* An update winning over a tombstone needs no conflict. */
    guts_ref later = mkref("refs/heads/f", 4, 7, 1);
    ck_assert_int_eq(guts_ref_merge(&del, &later, dag_is_ancestor, &g, &res, &conf, &has), 0);
    ck_assert(ref_same(&res, &later));
    ck_assert_int_eq(has, 0);
}
END_TEST

START_TEST(test_refmerge_conflict_records_never_conflict)
{
    dag g;
    memset(&g, 0, sizeof g);
    guts_ref a = mkref("refs/guts/conflicts/00/heads/x", 1, 1, 1);
    guts_ref b = mkref("refs/guts/conflicts/00/heads/x", 2, 2, 1);
    static guts_ref res, conf;
    int has;
    ck_assert_int_eq(guts_ref_merge(&a, &b, dag_is_ancestor, &g, &res, &conf, &has), 0);
    ck_assert(ref_same(&res, &b));
    ck_assert_int_eq(has, 0);
}
END_TEST

static int unknown_ancestry(void *ctx, const guts_id *a, const guts_id *d)
{
    (void)ctx;
    (void)a;
    (void)d;
    return GUTS_EAGAIN;
}

START_TEST(test_refmerge_unknown_ancestry_is_returned)
{
    guts_ref a = mkref("refs/heads/u", 1, 1, 1);
    guts_ref b = mkref("refs/heads/u", 2, 2, 2);
    guts_ref c = mkref("refs/heads/v", 2, 2, 2);
    static guts_ref res, conf;
    int has = 7;
    ck_assert_int_eq(guts_ref_merge(&a, &b, unknown_ancestry, NULL, &res, &conf, &has),
                     GUTS_EAGAIN);
    ck_assert_int_eq(has, 0);
    ck_assert_int_eq(guts_ref_merge(&a, &c, unknown_ancestry, NULL, &res, &conf, &has),
                     GUTS_EINVAL);
    /* No current record: the incoming one, nothing asked. */
    ck_assert_int_eq(guts_ref_merge(NULL, &b, unknown_ancestry, NULL, &res, &conf, &has), 0);
    ck_assert(ref_same(&res, &b));
}
END_TEST

START_TEST(test_refmerge_conflict_names)
{
    guts_node_id w;
    for (int i = 0; i < GUTS_NODE_ID_LEN; i++)
        w.b[i] = (uint8_t)(0xa0 + i);
    guts_id t = commit_id(0x1234), u = commit_id(0x1235);
    char out[GUTS_REFNAME_MAX + 1];
    ck_assert_int_eq(guts_ref_conflict_name("refs/tags/v1.0", &w, &t, out), 0);
    ck_assert_str_eq(out, "refs/guts/conflicts/a0a1a2a3a4a5a6a7a8a9aaabacadaeaf/"
                          "1234c00000000000000000000000000000000000/tags/v1.0");
    ck_assert_int_eq(guts_refname_check(out), GUTS_OK);
    ck_assert_int_eq(guts_ref_conflict_name("HEAD", &w, &t, out), 0);
    ck_assert_str_eq(out, "refs/guts/conflicts/a0a1a2a3a4a5a6a7a8a9aaabacadaeaf/"
                          "1234c00000000000000000000000000000000000/HEAD");
    ck_assert_int_eq(guts_ref_conflict_name("", &w, &t, out), GUTS_EINVAL);
    /* Long names: cut deterministically, a hash keeps them apart, valid. */
    char a[GUTS_REFNAME_MAX + 1], b[GUTS_REFNAME_MAX + 1];
    memset(a, 'x', GUTS_REFNAME_MAX);
    memcpy(a, "refs/heads/", 11);
    a[GUTS_REFNAME_MAX] = '\0';
    memcpy(b, a, sizeof b);
    b[GUTS_REFNAME_MAX - 1] = 'y';
    for (int k = 0; k < 40; k += 8) /* components, with a '.' near the cut */
        a[GUTS_REFNAME_MAX - 60 - k] = b[GUTS_REFNAME_MAX - 60 - k] = '/';
    ck_assert_int_eq(guts_refname_check(a), GUTS_OK);
    char oa[GUTS_REFNAME_MAX + 1], oa2[GUTS_REFNAME_MAX + 1], ob[GUTS_REFNAME_MAX + 1];
    char oau[GUTS_REFNAME_MAX + 1];
    ck_assert_int_eq(guts_ref_conflict_name(a, &w, &t, oa), 0);
    ck_assert_int_eq(guts_ref_conflict_name(a, &w, &t, oa2), 0);
    ck_assert_int_eq(guts_ref_conflict_name(b, &w, &t, ob), 0);
    ck_assert_int_eq(guts_ref_conflict_name(a, &w, &u, oau), 0);
    ck_assert_uint_le(strlen(oa), GUTS_REFNAME_MAX);
    ck_assert_str_eq(oa, oa2);
    ck_assert_str_ne(oa, ob);
    ck_assert_str_ne(oa, oau); /* another lost commit: another name */
    /* Back from a name to its ref: whole names give it, cut ones do not
     * (their end is a hash), nor does anything outside the prefix. */
    char ref[GUTS_REFNAME_MAX + 1];
    ck_assert_int_eq(guts_ref_conflict_name("refs/tags/v1.0", &w, &t, out), 0);
    ck_assert_int_eq(guts_ref_conflict_ref(out, ref), GUTS_OK);
    ck_assert_str_eq(ref, "refs/tags/v1.0");
    ck_assert_int_eq(guts_ref_conflict_name("HEAD", &w, &t, out), 0);
    ck_assert_int_eq(guts_ref_conflict_ref(out, ref), GUTS_OK);
    ck_assert_str_eq(ref, "HEAD");
    ck_assert_int_eq(guts_ref_conflict_ref(oa, ref), GUTS_EINVAL);
    ck_assert_str_eq(ref, "");
    ck_assert_int_eq(guts_ref_conflict_ref("refs/heads/main", ref), GUTS_EINVAL);
    ck_assert_int_eq(guts_ref_conflict_ref("refs/guts/conflicts/zz/heads/x", ref), GUTS_EINVAL);
    /* the name before commits were in it: writer, then the ref */
    ck_assert_int_eq(
        guts_ref_conflict_ref("refs/guts/conflicts/a0a1a2a3a4a5a6a7a8a9aaabacadaeaf/heads/x", ref),
        GUTS_OK);
    ck_assert_str_eq(ref, "refs/heads/x");
    ck_assert_int_eq(guts_refname_check(oa), GUTS_OK);
    ck_assert_int_eq(guts_refname_check(ob), GUTS_OK);
    ck_assert_int_eq(guts_refname_check(oau), GUTS_OK);
    /* A cut that lands after '/' or '.' drops them: still a valid name. The
     * output keeps GUTS_REFNAME_MAX - 17 bytes; the prefix, writer and target
     * (20 + 33 + 41 = 94) stand for "refs/" (5), so the last kept input byte
     * is at MAX - 17 - 89 - 1. */
    int tried = 0;
    for (int shift = 0; shift < 4; shift++) {
        char c[GUTS_REFNAME_MAX + 1];
        memcpy(c, a, sizeof c);
        size_t at = GUTS_REFNAME_MAX - 17 - 89 - 1 - (size_t)shift;
        c[at] = shift & 1 ? '/' : '.';
        c[at + 1] = shift & 1 ? 'z' : '/';
        if (guts_refname_check(c) != GUTS_OK) continue;
        tried++;
        char oc[GUTS_REFNAME_MAX + 1];
        ck_assert_int_eq(guts_ref_conflict_name(c, &w, &t, oc), 0);
        ck_assert_int_eq(guts_refname_check(oc), GUTS_OK);
        ck_assert_uint_le(strlen(oc), GUTS_REFNAME_MAX);
    }
    ck_assert_int_ge(tried, 2);
}
END_TEST

START_TEST(test_refmerge_lamport_clock)
{
    uint64_t c;
    ck_assert_int_eq(guts_ref_clock_next(5, 3, &c), 0);
    ck_assert_uint_eq(c, 6);
    ck_assert_int_eq(guts_ref_clock_next(3, 9, &c), 0);
    ck_assert_uint_eq(c, 10);
    ck_assert_int_eq(guts_ref_clock_next(0, UINT64_MAX, &c), GUTS_ETOOBIG);
    uint64_t local = 4;
    guts_ref_clock_observe(&local, 2);
    ck_assert_uint_eq(local, 4);
    guts_ref_clock_observe(&local, 12);
    ck_assert_uint_eq(local, 12);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("refmerge");
    TCase *tc = tcase_create("refmerge");
    tcase_add_test(tc, test_refmerge_winner_is_the_same_in_any_order_with_duplicates);
    tcase_add_test(tc, test_refmerge_pairwise_laws);
    tcase_add_test(tc, test_refmerge_conflicts_are_the_same_in_any_order);
    tcase_add_test(tc, test_refmerge_fast_forward_never_conflicts);
    tcase_add_test(tc, test_refmerge_divergent_update_is_kept_as_conflict);
    tcase_add_test(tc, test_refmerge_writer_losing_twice_keeps_both_commits);
    tcase_add_test(tc, test_refmerge_same_lost_commit_shares_one_conflict_name);
    tcase_add_test(tc, test_refmerge_ties_break_by_writer_then_target);
    tcase_add_test(tc, test_refmerge_tombstone_does_not_resurrect);
    tcase_add_test(tc, test_refmerge_tombstone_keeps_other_writers_update);
    tcase_add_test(tc, test_refmerge_conflict_records_never_conflict);
    tcase_add_test(tc, test_refmerge_unknown_ancestry_is_returned);
    tcase_add_test(tc, test_refmerge_conflict_names);
    tcase_add_test(tc, test_refmerge_lamport_clock);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
