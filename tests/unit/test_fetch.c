/* test_fetch.c - the base a thin pack's object goes against (src/git/
 * fetch_pack.c): a tree or blob the store keeps whole goes as a delta
 * against the version of the same path in the client's have, found by the
 * walk; never so in a full pack, and a partial clone's client (which may
 * lack the blobs of what it has) gets blobs whole. A clone large enough
 * for the writer's deflater thread, with a streamed large object, comes
 * whole; a clone may start with an earlier clone's pack it contains. The
 * pack is written by guts_git_serve from a store made here and
 * read back entry by entry.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define STORE_TEST_NAME "fetch"
#include "test_store_util.h"

#include "fetch.h"
#include "fetch_int.h"
#include "test_run.h"

/* ---- objects ------------------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t n;
} buf;

static void bput(buf *b, const void *d, size_t n)
{
    b->p = realloc(b->p, b->n + n);
    ck_assert_ptr_nonnull(b->p);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static guts_id store(guts_repo *r, int type, const buf *b)
{
    guts_obj o = {.type = type, .data = b->p, .len = b->n};
    ck_assert_int_eq(guts_obj_hash(type, b->p, b->n, &o.id), GUTS_OK);
    ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, NULL), GUTS_OK);
    return o.id;
}

static void entry(buf *t, const char *mode, const char *name, const guts_id *id)
{
    bput(t, mode, strlen(mode));
    bput(t, " ", 1);
    bput(t, name, strlen(name) + 1);
    bput(t, id->b, GUTS_ID_LEN);
}

/* A blob of many lines; extra: one more line at the end. */
static guts_id big_blob(guts_repo *r, int extra)
{
    buf b = {0};
    char line[64];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(line, sizeof line, "line %d of a file that changes at its end\n", i);
        bput(&b, line, (size_t)n);
    }
    if (extra) bput(&b, "one more line\n", 14);
    guts_id id = store(r, GUTS_OBJ_BLOB, &b);
    free(b.p);
    return id;
}

/* n blobs "PREFIX%02d" (text "WHAT %d\n") stored and entered into tree t. */
static void small_files(guts_repo *r, buf *t, int n, const char *prefix, const char *what)
{
    char name[16], text[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%02d", prefix, i);
        snprintf(text, sizeof text, "%s %d\n", what, i);
        buf f = {(uint8_t *)text, strlen(text)};
        guts_id id = store(r, GUTS_OBJ_BLOB, &f);
        entry(t, "100644", name, &id);
    }
}

/* Commit of version v (0 or 1) at time when: sub/big.txt changes between
 * the two; the root's files f00..f29 and sub's s00..s19 do not. *root,
 * *sub, *big get its trees and that blob. */
static guts_id version(guts_repo *r, int v, const guts_id *parent, unsigned when, guts_id *root,
                       guts_id *sub, guts_id *big)
{
    buf s = {0}, t = {0}, c = {0};
    *big = big_blob(r, v);
    entry(&s, "100644", "big.txt", big);
    small_files(r, &s, 20, "s", "sub file");
    *sub = store(r, GUTS_OBJ_TREE, &s);
    small_files(r, &t, 30, "f", "root file");
    entry(&t, "40000", "sub", sub);
    *root = store(r, GUTS_OBJ_TREE, &t);
    char hex[GUTS_HEX_LEN + 1], line[128];
    guts_id_to_hex(root, hex);
    bput(&c, line, (size_t)snprintf(line, sizeof line, "tree %s\n", hex));
    if (parent) {
        guts_id_to_hex(parent, hex);
        bput(&c, line, (size_t)snprintf(line, sizeof line, "parent %s\n", hex));
    }
    bput(&c, line,
         (size_t)snprintf(line, sizeof line,
                          "author A <a@example.com> %u +0000\ncommitter A <a@example.com> %u "
                          "+0000\n\nv\n",
                          when, when));
    guts_id id = store(r, GUTS_OBJ_COMMIT, &c);
    free(s.p);
    free(t.p);
    free(c.p);
    return id;
}

/* ---- the pack, read back ------------------------------------------------ */

#define MAX_ENTRIES 256

typedef struct entry_info {
    int type;       /* pack entry type: 1..4, or 7 (REF_DELTA) */
    guts_id base;   /* a REF_DELTA's */
    size_t content; /* inflated bytes */
} entry_info;

static int sink(void *ctx, const void *d, size_t n)
{
    bput(ctx, d, n);
    return GUTS_OK;
}

/* Parse the pack's entries into e; returns how many. */
static size_t read_pack(const buf *p, entry_info *e)
{
    ck_assert_uint_ge(p->n, 32);
    ck_assert_int_eq(memcmp(p->p, "PACK", 4), 0);
    size_t count = (size_t)p->p[8] << 24 | (size_t)p->p[9] << 16 | (size_t)p->p[10] << 8 | p->p[11];
    ck_assert_uint_le(count, MAX_ENTRIES);
    size_t pos = 12;
    for (size_t k = 0; k < count; k++) {
        uint8_t c = p->p[pos++];
        e[k].type = (c >> 4) & 7;
        uint64_t size = c & 0x0f;
        for (int shift = 4; c & 0x80; shift += 7) {
            c = p->p[pos++];
            size |= (uint64_t)(c & 0x7f) << shift;
        }
        if (e[k].type == GUTS_PACK_REF_DELTA) {
            memcpy(e[k].base.b, p->p + pos, GUTS_ID_LEN);
            pos += GUTS_ID_LEN;
        }
        uint8_t *out = malloc(size + 1);
        z_stream z = {0};
        ck_assert_int_eq(inflateInit(&z), Z_OK);
        z.next_in = p->p + pos;
        z.avail_in = (uInt)(p->n - 20 - pos);
        z.next_out = out;
        z.avail_out = (uInt)size + 1;
        ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
        ck_assert_uint_eq(z.total_out, size);
        pos += z.total_in;
        e[k].content = size;
        inflateEnd(&z);
        free(out);
    }
    ck_assert_uint_eq(pos + 20, p->n);
    return count;
}

/* Serve want from r to a client that has have; the pack's entries in e. */
static size_t serve(guts_repo *r, const guts_id *want, const guts_id *have, int thin,
                    uint64_t blob_limit, entry_info *e)
{
    buf p = {0};
    guts_git_serve_req q = {.wants = want, .nwants = 1, .haves = have, .nhaves = 1,
                            .thin = thin, .blob_limit = blob_limit, .zlevel = 1,
                            .sink = sink, .sink_ctx = &p};
    guts_git_fetch_stats st;
    char err[GUTS_GIT_ERR_MAX] = "";
    ck_assert_msg(guts_git_serve(r, &q, &st, err) == GUTS_OK, "%s", err);
    size_t n = read_pack(&p, e);
    free(p.p);
    return n;
}

/* The entry whose delta names base, or NULL. */
static const entry_info *delta_on(const entry_info *e, size_t n, const guts_id *base)
{
    for (size_t k = 0; k < n; k++)
        if (e[k].type == GUTS_PACK_REF_DELTA && guts_id_cmp(&e[k].base, base) == 0) return &e[k];
    return NULL;
}

START_TEST(test_changed_trees_and_blob_go_against_the_haves_same_path)
{
    guts_repo *r;
    ck_assert_int_eq(guts_repo_open(data, "o/fetch", GUTS_REPO_CREATE, &r), GUTS_OK);
    guts_id root0, sub0, big0, root1, sub1, big1;
    guts_id c0 = version(r, 0, NULL, 1, &root0, &sub0, &big0);
    guts_id c1 = version(r, 1, &c0, 1, &root1, &sub1, &big1);
    entry_info e[MAX_ENTRIES];
    /* the commit, both trees and the blob: nothing else changed */
    size_t n = serve(r, &c1, &c0, 1, UINT64_MAX, e);
    ck_assert_uint_eq(n, 4);
    const entry_info *d;
    ck_assert_ptr_nonnull(d = delta_on(e, n, &root0));
    ck_assert_uint_lt(d->content, 100); /* one entry's id changed */
    ck_assert_ptr_nonnull(d = delta_on(e, n, &sub0));
    ck_assert_uint_lt(d->content, 100);
    ck_assert_ptr_nonnull(d = delta_on(e, n, &big0));
    ck_assert_uint_lt(d->content, 100);
    /* a full pack: nothing against what the client has */
    n = serve(r, &c1, &c0, 0, UINT64_MAX, e);
    ck_assert_uint_eq(n, 4);
    for (size_t k = 0; k < n; k++)
        ck_assert_int_ne(e[k].type, GUTS_PACK_REF_DELTA);
    /* a partial clone's client: trees against its own, the blob whole */
    n = serve(r, &c1, &c0, 1, 1u << 20, e);
    ck_assert_uint_eq(n, 4);
    ck_assert_ptr_nonnull(delta_on(e, n, &root0));
    ck_assert_ptr_nonnull(delta_on(e, n, &sub0));
    ck_assert_ptr_null(delta_on(e, n, &big0));
    guts_repo_close(r);
}
END_TEST

/* ready: the wants' walk stops at the haves above the oldest of them */
START_TEST(test_ready_once_a_have_the_wants_descend_from_is_sent)
{
    guts_repo *r;
    ck_assert_int_eq(guts_repo_open(data, "o/ready", GUTS_REPO_CREATE, &r), GUTS_OK);
    guts_id t, s, b;
    guts_id c0 = version(r, 0, NULL, 100, &t, &s, &b);
    guts_id c1 = version(r, 1, &c0, 200, &t, &s, &b);
    guts_id c2 = version(r, 0, &c1, 300, &t, &s, &b);
    guts_id side = version(r, 1, &c0, 400, &t, &s, &b); /* a newer branch */
    guts_id absent;
    memset(&absent, 0xab, sizeof absent);
    ck_assert_int_eq(guts_git_ready(r, &c2, 1, &c1, 1), 1);
    ck_assert_int_eq(guts_git_ready(r, &c2, 1, &c0, 1), 1);
    /* the client's newest commit is elsewhere: c2 and c1 are older */
    ck_assert_int_eq(guts_git_ready(r, &c2, 1, &side, 1), 0);
    guts_id both[2] = {side, c1};
    ck_assert_int_eq(guts_git_ready(r, &c2, 1, both, 2), 1);
    ck_assert_int_eq(guts_git_ready(r, &c2, 1, &absent, 1), 0);
    guts_repo_close(r);
}
END_TEST

/* A clone of 100 objects or more is deflated on the writer's second thread
 * (guts_packw_async); a large object among them is streamed by the pack
 * thread once the queue before it is written: every entry comes whole and
 * in order, the large one at its full size. */
START_TEST(test_a_clone_with_a_large_object_is_whole)
{
    guts_repo *r;
    ck_assert_int_eq(guts_repo_open(data, "o/clone", GUTS_REPO_CREATE, &r), GUTS_OK);
    buf t = {0}, c = {0}, large = {0};
    small_files(r, &t, 70, "a", "before the large one");
    size_t big_len = (size_t)GUTS_LARGE_MIN + 4096;
    large.p = malloc(big_len);
    ck_assert_ptr_nonnull(large.p);
    large.n = big_len;
    uint64_t seed = 5;
    for (size_t i = 0; i < big_len; i += 8) {
        uint64_t v = guts_splitmix64(&seed);
        memcpy(large.p + i, &v, 8);
    }
    guts_id big = store(r, GUTS_OBJ_BLOB, &large);
    entry(&t, "100644", "large.bin", &big);
    small_files(r, &t, 70, "z", "after the large one");
    guts_id root = store(r, GUTS_OBJ_TREE, &t);
    char hex[GUTS_HEX_LEN + 1], line[160];
    guts_id_to_hex(&root, hex);
    bput(&c, line,
         (size_t)snprintf(line, sizeof line,
                          "tree %s\nauthor A <a@example.com> 1 +0000\ncommitter A "
                          "<a@example.com> 1 +0000\n\nc\n",
                          hex));
    guts_id commit = store(r, GUTS_OBJ_COMMIT, &c);
    buf p = {0};
    guts_git_serve_req q = {.wants = &commit, .nwants = 1, .blob_limit = UINT64_MAX,
                            .zlevel = 1, .sink = sink, .sink_ctx = &p};
    guts_git_fetch_stats st;
    char err[GUTS_GIT_ERR_MAX] = "";
    ck_assert_msg(guts_git_serve(r, &q, &st, err) == GUTS_OK, "%s", err);
    entry_info e[MAX_ENTRIES];
    size_t n = read_pack(&p, e);
    ck_assert_uint_eq(n, 1 + 1 + 140 + 1); /* commit, tree, small blobs, large */
    size_t larges = 0;
    for (size_t k = 0; k < n; k++) {
        ck_assert_int_ne(e[k].type, GUTS_PACK_REF_DELTA);
        if (e[k].content == big_len) larges++;
    }
    ck_assert_uint_eq(larges, 1);
    free(p.p);
    free(t.p);
    free(c.p);
    free(large.p);
    guts_repo_close(r);
}
END_TEST

/* An earlier pack as the start of a clone's (the pack cache's base): its
 * objects and its bytes. */
typedef struct base_pack {
    guts_id ids[MAX_ENTRIES];
    size_t n;
    buf pack;
} base_pack;

static size_t keep_objects(void *ctx, const guts_id *ids, size_t n)
{
    base_pack *b = ctx;
    ck_assert_uint_le(n, MAX_ENTRIES);
    memcpy(b->ids, ids, n * sizeof *ids);
    b->n = n;
    return 0;
}

/* base's objects, offered whatever the new pack's are */
static size_t offer_base(void *ctx, const guts_id *ids, size_t n)
{
    (void)ids, (void)n;
    return ((const base_pack *)ctx)->n;
}

static int in_base(const void *ctx, const guts_id *id)
{
    const base_pack *b = ctx;
    for (size_t i = 0; i < b->n; i++)
        if (guts_id_cmp(&b->ids[i], id) == 0) return 1;
    return 0;
}

static int base_entries(void *ctx, guts_packw *p)
{
    base_pack *b = ctx;
    return guts_packw_append(p, b->pack.p + 12, b->pack.n - 12 - 20);
}

/* Clone want; with base (its objects, its pack) offered as the start. */
static buf clone_from(guts_repo *r, const guts_id *want, base_pack *keep, base_pack *base)
{
    buf p = {0};
    guts_git_serve_req q = {.wants = want, .nwants = 1, .blob_limit = UINT64_MAX, .zlevel = 1,
                            .sink = sink, .sink_ctx = &p, .on_objects = keep_objects,
                            .base_ctx = keep};
    if (base) { /* one context for both: base's list stays as it is */
        q.on_objects = offer_base;
        q.base_has = in_base;
        q.base_entries = base_entries;
        q.base_ctx = base;
    }
    guts_git_fetch_stats st;
    char err[GUTS_GIT_ERR_MAX] = "";
    ck_assert_msg(guts_git_serve(r, &q, &st, err) == GUTS_OK, "%s", err);
    return p;
}

/* A clone after a push starts with the last clone's entries as they were
 * and encodes only the new objects; a base holding an object the new
 * clone does not want (a deleted ref's) is not used. */
START_TEST(test_a_clone_starts_with_an_earlier_pack_it_contains)
{
    guts_repo *r;
    ck_assert_int_eq(guts_repo_open(data, "o/base", GUTS_REPO_CREATE, &r), GUTS_OK);
    guts_id t, sb, b;
    guts_id c0 = version(r, 0, NULL, 1, &t, &sb, &b);
    guts_id c1 = version(r, 1, &c0, 2, &t, &sb, &b);
    base_pack *old = calloc(1, sizeof *old), *now = calloc(1, sizeof *now);
    ck_assert_ptr_nonnull(old);
    ck_assert_ptr_nonnull(now);
    old->pack = clone_from(r, &c0, old, NULL);
    entry_info e[MAX_ENTRIES];
    size_t n0 = read_pack(&old->pack, e);
    ck_assert_uint_eq(n0, old->n);
    buf whole = clone_from(r, &c1, now, NULL);
    size_t n1 = read_pack(&whole, e);
    ck_assert_uint_eq(n1, now->n);
    buf p = clone_from(r, &c1, now, old);
    ck_assert_uint_eq(read_pack(&p, e), n1); /* every object once */
    ck_assert_uint_eq(now->n, n1);
    ck_assert_mem_eq(p.p + 12, old->pack.p + 12, old->pack.n - 32); /* the old entries first */
    ck_assert_uint_lt(p.n, old->pack.n + whole.n - 32);
    free(p.p);
    /* an object c1's clone does not reach: the base is not used */
    memset(old->ids[old->n].b, 0xee, GUTS_ID_LEN);
    old->n++;
    p = clone_from(r, &c1, now, old);
    ck_assert_uint_eq(read_pack(&p, e), n1);
    ck_assert_uint_eq(p.n, whole.n);
    free(p.p);
    free(whole.p);
    free(old->pack.p);
    free(old);
    free(now);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_path_keys_tell_paths_apart)
{
    uint32_t a = fetch_path_key(0, "a", 1), ab = fetch_path_key(a, "b", 1);
    ck_assert_uint_ne(a, 0);
    ck_assert_uint_ne(ab, fetch_path_key(0, "ab", 2));
    ck_assert_uint_eq(ab, fetch_path_key(0, "a/b", 3)); /* the whole path's hash */
    ck_assert_uint_ne(fetch_path_key(ab, "c", 1), fetch_path_key(a, "c", 1));
}
END_TEST

static Suite *fetch_suite(void)
{
    Suite *s = suite_create("fetch");
    TCase *t = tcase_create("thin");
    tcase_add_unchecked_fixture(t, base_setup, base_teardown);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, test_changed_trees_and_blob_go_against_the_haves_same_path);
    tcase_add_test(t, test_ready_once_a_have_the_wants_descend_from_is_sent);
    tcase_add_test(t, test_path_keys_tell_paths_apart);
    tcase_add_test(t, test_a_clone_with_a_large_object_is_whole);
    tcase_add_test(t, test_a_clone_starts_with_an_earlier_pack_it_contains);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(fetch_suite(), CK_FORK_GETENV);
}
