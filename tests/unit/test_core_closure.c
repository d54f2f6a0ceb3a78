/* test_core_closure.c - the closure tracker (src/core/node_closure.c) told
 * of objects as a pull stores them, counted in batches.
 *
 * The tracker counts a batch in passes (its own nodes, then the children,
 * then the completions) so its map lookups can be prefetched; the result
 * must be that of counting the objects one by one, whatever the order
 * they arrive in, however they are cut into batches, and with objects told
 * twice. Each test builds a graph of real git objects in memory (commits,
 * trees sharing subtrees and blobs, a tree naming one blob twice), tells
 * the tracker of some of them, and checks the complete cache against the
 * closures computed here from the graph.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "guts/guts.h"
#include "guts/idset.h"
#include "test_run.h"

typedef struct tobj {
    guts_id id;
    int type;
    uint8_t *data;
    size_t len;
    size_t kid[64]; /* indices of its children in the graph */
    size_t nkid;
} tobj;

typedef struct graph {
    tobj *o;
    size_t n, cap;
} graph;

static size_t add_obj(graph *g, int type, const void *data, size_t len)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 256;
        g->o = realloc(g->o, g->cap * sizeof(*g->o));
        ck_assert_ptr_nonnull(g->o);
    }
    tobj *o = &g->o[g->n];
    memset(o, 0, sizeof(*o));
    o->type = type;
    o->data = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(o->data);
    memcpy(o->data, data, len);
    o->len = len;
    ck_assert_int_eq(guts_obj_hash(type, data, len, &o->id), 0);
    return g->n++;
}

static size_t blob(graph *g, const char *text)
{
    return add_obj(g, GUTS_OBJ_BLOB, text, strlen(text));
}

/* A tree of entries "e0", "e1", ... naming kids (subtrees where sub[i]). */
static size_t tree(graph *g, const size_t *kids, const int *sub, size_t n)
{
    uint8_t buf[64 * 32];
    size_t len = 0;
    ck_assert_uint_le(n, 64);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)sprintf((char *)buf + len, "%s e%zu", sub[i] ? "40000" : "100644", i);
        buf[len++] = 0;
        memcpy(buf + len, g->o[kids[i]].id.b, GUTS_ID_LEN);
        len += GUTS_ID_LEN;
    }
    size_t t = add_obj(g, GUTS_OBJ_TREE, buf, len);
    memcpy(g->o[t].kid, kids, n * sizeof(*kids));
    g->o[t].nkid = n;
    return t;
}

static size_t commit(graph *g, size_t root, const size_t *parent, int i)
{
    char buf[512], hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&g->o[root].id, hex);
    int len = snprintf(buf, sizeof(buf), "tree %s\n", hex);
    if (parent) {
        guts_id_to_hex(&g->o[*parent].id, hex);
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "parent %s\n", hex);
    }
    len += snprintf(buf + len, sizeof(buf) - (size_t)len,
                    "author A <a@guts.invalid> %d +0000\ncommitter A <a@guts.invalid> %d "
                    "+0000\n\ncommit %d\n",
                    1700000000 + i, 1700000000 + i, i);
    size_t c = add_obj(g, GUTS_OBJ_COMMIT, buf, (size_t)len);
    g->o[c].kid[0] = root;
    g->o[c].nkid = 1;
    if (parent) g->o[c].kid[g->o[c].nkid++] = *parent;
    return c;
}

/* commits commits in a line, each with a root tree of dirs subtrees each
 * holding a blob of its own, plus a blob every commit shares and a tree
 * naming its own blob twice: children with many parents, and an edge
 * twice between one parent and one child. */
static void make_graph(graph *g, int commits, int dirs)
{
    memset(g, 0, sizeof(*g));
    size_t shared = blob(g, "shared by every commit\n");
    size_t prev = 0;
    for (int c = 0; c < commits; c++) {
        size_t kids[64];
        int sub[64];
        ck_assert_int_le(dirs + 2, 64);
        for (int d = 0; d < dirs; d++) {
            char text[64];
            snprintf(text, sizeof(text), "dir %d version %d\n", d, c);
            size_t b[2] = {blob(g, text), shared};
            int nosub[2] = {0, 0};
            kids[d] = tree(g, b, nosub, 2);
            sub[d] = 1;
        }
        char text[64];
        snprintf(text, sizeof(text), "named twice %d\n", c);
        size_t b = blob(g, text);
        size_t twice[2] = {b, b};
        int nosub[2] = {0, 0};
        kids[dirs] = tree(g, twice, nosub, 2);
        sub[dirs] = 1;
        kids[dirs + 1] = shared;
        sub[dirs + 1] = 0;
        size_t root = tree(g, kids, sub, (size_t)dirs + 2);
        prev = commit(g, root, c ? &prev : NULL, c);
    }
}

static void graph_free(graph *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->o[i].data);
    free(g->o);
}

/* 1 when object i and all it reaches are among the told (told[i] set). */
static int closed(const graph *g, const uint8_t *told, size_t i, int8_t *memo)
{
    if (memo[i] >= 0) return memo[i];
    int ok = told[i] != 0;
    for (size_t k = 0; ok && k < g->o[i].nkid; k++)
        ok = closed(g, told, g->o[i].kid[k], memo);
    memo[i] = (int8_t)ok;
    return ok;
}

static int no_refs(void *ctx, const char *key, int all,
                   int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    (void)ctx, (void)key, (void)all, (void)cb, (void)arg;
    return 0;
}

/* Tell a fresh tracker of the objects order[0..n) (indices into g, repeats
 * allowed), counting after every batch of them (0: only at the end), and
 * check the complete cache holds exactly the trees, commits and tags whose
 * closure was told. pre (or NULL): objects stored before the tracker
 * began, whose trees, commits and tags are in the complete cache then (as
 * an earlier pull leaves them). */
static void check_told_pre(const graph *g, const uint8_t *pre, const size_t *order, size_t n,
                           size_t batch)
{
    guts_core *c = calloc(1, sizeof(*c));
    lrepo *r = calloc(1, sizeof(*r));
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(r);
    c->st.refs = no_refs;
    r->complete.dense = 1;
    strcpy(r->key, "a/closure");
    uint8_t *told = calloc(g->n, 1);
    int8_t *memo = malloc(g->n);
    ck_assert_ptr_nonnull(told);
    ck_assert_ptr_nonnull(memo);
    for (size_t i = 0; pre && i < g->n; i++) {
        told[i] = pre[i];
        if (pre[i] && g->o[i].type != GUTS_OBJ_BLOB)
            ck_assert_int_eq(guts_idset_insert(&r->complete, &g->o[i].id), 1);
    }
    ck_assert_int_eq(closure_track_begin(c, r), 1);
    for (size_t k = 0; k < n; k++) {
        const tobj *o = &g->o[order[k]];
        closure_seen(r, &o->id, o->type, o->data, o->len);
        told[order[k]] = 1;
        if (batch && (k + 1) % batch == 0) closure_track_count(r);
    }
    closure_track_count(r);
    ck_assert_ptr_nonnull(r->track); /* not given up */
    memset(memo, -1, g->n);
    size_t want = 0;
    for (size_t i = 0; i < g->n; i++) {
        int in = guts_idset_has(&r->complete, &g->o[i].id);
        int should = g->o[i].type != GUTS_OBJ_BLOB && closed(g, told, i, memo);
        if (in != should)
            ck_abort_msg("object %zu (type %d): in the complete cache %d, closure told %d", i,
                         g->o[i].type, in, should);
        want += (size_t)should;
    }
    ck_assert_uint_eq(r->complete.n, want);
    closure_track_free(r);
    guts_idset_free(&r->complete);
    free(told);
    free(memo);
    free(r);
    free(c);
}

static void check_told(const graph *g, const size_t *order, size_t n, size_t batch)
{
    check_told_pre(g, NULL, order, n, batch);
}

static void mark(const graph *g, size_t i, uint8_t *in)
{
    in[i] = 1;
    for (size_t k = 0; k < g->o[i].nkid; k++)
        mark(g, g->o[i].kid[k], in);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void shuffle(size_t *v, size_t n, uint64_t seed)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&seed) % i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static const graph *sort_graph; /* for by_id */
static int by_id(const void *a, const void *b)
{
    const graph *g = sort_graph;
    return guts_id_cmp(&g->o[*(const size_t *)a].id, &g->o[*(const size_t *)b].id);
}

/* Every object told, in the server's order (by id), in reverse, and
 * shuffled; counted one by one, in small batches, and all at once (more
 * than the tracker's own batch, so it counts midway). */
START_TEST(test_every_closure_is_complete_whatever_the_order_and_batches)
{
    graph g;
    make_graph(&g, 150, 30); /* 150 x 63 + 1 = 9,451 objects, 4,800 trees */
    size_t *order = malloc(g.n * sizeof(*order));
    ck_assert_ptr_nonnull(order);
    const size_t batches[] = {1, 7, 500, 0};
    for (int how = 0; how < 3; how++) {
        for (size_t i = 0; i < g.n; i++)
            order[i] = how == 1 ? g.n - 1 - i : i;
        if (how == 0) {
            sort_graph = &g;
            qsort(order, g.n, sizeof(*order), by_id);
        } else if (how == 2) {
            shuffle(order, g.n, 0x9e3779b97f4a7c15ull);
        }
        for (size_t b = 0; b < sizeof(batches) / sizeof(*batches); b++)
            check_told(&g, order, g.n, batches[b]);
    }
    free(order);
    graph_free(&g);
}
END_TEST

/* Some objects never told (a blob, a subtree, a commit in the middle of the
 * line): what reaches them stays incomplete, the rest completes. */
START_TEST(test_what_reaches_an_untold_object_stays_incomplete)
{
    graph g;
    make_graph(&g, 40, 5);
    size_t *order = malloc(g.n * sizeof(*order));
    ck_assert_ptr_nonnull(order);
    uint64_t seed = 7;
    for (int round = 0; round < 20; round++) {
        size_t n = 0;
        size_t skip[3] = {(size_t)(rng_next(&seed) % g.n), (size_t)(rng_next(&seed) % g.n),
                          (size_t)(rng_next(&seed) % g.n)};
        for (size_t i = 0; i < g.n; i++)
            if (i != skip[0] && (round % 2 || (i != skip[1] && i != skip[2]))) order[n++] = i;
        shuffle(order, n, seed);
        check_told(&g, order, n, (size_t)round % 3 == 0 ? 0 : 1 + (size_t)round);
    }
    free(order);
    graph_free(&g);
}
END_TEST

/* Objects told twice, within one batch and across batches (a store may
 * tell a record it found stored already): counted once. */
START_TEST(test_objects_told_twice_count_once)
{
    graph g;
    make_graph(&g, 30, 4);
    size_t n = 2 * g.n;
    size_t *order = malloc(n * sizeof(*order));
    ck_assert_ptr_nonnull(order);
    for (size_t i = 0; i < g.n; i++)
        order[i] = order[g.n + i] = i;
    shuffle(order, n, 99);
    const size_t batches[] = {1, 3, 64, 0};
    for (size_t b = 0; b < sizeof(batches) / sizeof(*batches); b++)
        check_told(&g, order, n, batches[b]);
    /* the same object twice in a row, in one batch */
    for (size_t i = 0; i < g.n; i++)
        order[2 * i] = order[2 * i + 1] = g.n - 1 - i;
    check_told(&g, order, n, 0);
    free(order);
    graph_free(&g);
}
END_TEST

/* A pull on top of an earlier one: the new commits' parent and the trees
 * they share with it were complete before the tracker began (in the
 * complete cache, not in the tracker): the new commits complete. */
START_TEST(test_children_complete_before_the_tracker_began_count_as_complete)
{
    graph g;
    make_graph(&g, 40, 5);
    uint8_t *pre = calloc(g.n, 1);
    size_t *order = malloc(g.n * sizeof(*order));
    ck_assert_ptr_nonnull(pre);
    ck_assert_ptr_nonnull(order);
    size_t commits = 0, n = 0;
    for (size_t i = 0; i < g.n && commits < 20; i++)
        if (g.o[i].type == GUTS_OBJ_COMMIT && ++commits == 20) mark(&g, i, pre);
    ck_assert_uint_eq(commits, 20);
    for (size_t i = 0; i < g.n; i++)
        if (!pre[i] || i == 0) order[n++] = i; /* 0: the shared blob, told again */
    shuffle(order, n, 5);
    const size_t batches[] = {1, 9, 0};
    for (size_t b = 0; b < sizeof(batches) / sizeof(*batches); b++)
        check_told_pre(&g, pre, order, n, batches[b]);
    free(pre);
    free(order);
    graph_free(&g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core_closure");
    TCase *tc = tcase_create("closure");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_closure_is_complete_whatever_the_order_and_batches);
    tcase_add_test(tc, test_what_reaches_an_untold_object_stays_incomplete);
    tcase_add_test(tc, test_objects_told_twice_count_once);
    tcase_add_test(tc, test_children_complete_before_the_tracker_began_count_as_complete);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
