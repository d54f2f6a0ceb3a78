/* test_store.c - the object store as a specification: ids, keys, ref names,
 * objects, fingerprints, refs, map growth, delta compression, persistence
 * and visibility to another process. Every test works in its own mkdtemp
 * directory under /tmp and removes it.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "guts/gitobj.h"
#include "guts/store.h"

#define STORE_TEST_NAME "store"
#include "test_child.h"
#include "test_store_util.h"
#include "test_run.h"

static guts_repo *open_repo(const char *key)
{
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, key, GUTS_REPO_CREATE, &r), GUTS_OK);
    return r;
}

/* An object with its real id. */
static guts_obj mkobj(int type, const void *d, size_t len)
{
    guts_obj o = {.type = type, .data = d, .len = len};
    ck_assert_int_eq(guts_obj_hash(type, d, len, &o.id), GUTS_OK);
    return o;
}

static void put_ok(guts_repo *r, const guts_obj *objs, size_t n, size_t want_added)
{
    size_t added = 99, bad = 99;
    ck_assert_int_eq(guts_repo_put(r, objs, n, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, want_added);
}

static void check_get(guts_repo *r, const guts_obj *o)
{
    int type = 0;
    void *d = NULL;
    size_t len = 0;
    ck_assert_int_eq(guts_repo_get(r, &o->id, &type, &d, &len), GUTS_OK);
    ck_assert_int_eq(type, o->type);
    ck_assert_uint_eq(len, o->len);
    ck_assert(len == 0 || memcmp(d, o->data, len) == 0);
    free(d);
}

/* Deterministic pseudo-random bytes (xorshift). */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* n incompressible blobs of sz bytes (seeds seed, seed + 1, ...) in one
 * buffer, returned for the caller to free. */
static uint8_t *random_blobs(guts_obj *objs, int n, size_t sz, uint64_t seed)
{
    uint8_t *bufs = malloc((size_t)n * sz);
    ck_assert_ptr_nonnull(bufs);
    for (int i = 0; i < n; i++) {
        fill(bufs + (size_t)i * sz, sz, seed + (uint64_t)i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, bufs + (size_t)i * sz, sz);
    }
    return bufs;
}

/* Text-like, compressible content: words from a small vocabulary. */
static void fill_text(char *p, size_t n, uint64_t seed)
{
    static const char *words[] = {"int ",  "return ", "if (", "x",  ") {\n", "}\n",    "for ",
                                  "guts_", "repo",    "->",   "; ", "0",     "while ", "static "};
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
    size_t i = 0;
    while (i < n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *w = words[x % (sizeof words / sizeof *words)];
        while (*w && i < n)
            p[i++] = *w++;
    }
}

/* ---- ids and names ------------------------------------------------------- */

START_TEST(test_ids_match_git_for_known_objects)
{
    static const struct {
        int type;
        const char *data;
        const char *hex;
    } cases[] = {
        {GUTS_OBJ_BLOB, "", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"},
        {GUTS_OBJ_TREE, "", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"},
        {GUTS_OBJ_BLOB, "hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        guts_id id, want;
        ck_assert_int_eq(guts_obj_hash(cases[i].type, cases[i].data, strlen(cases[i].data), &id),
                         GUTS_OK);
        ck_assert_int_eq(guts_id_from_hex(cases[i].hex, strlen(cases[i].hex), &want), GUTS_OK);
        ck_assert_int_eq(guts_id_cmp(&id, &want), 0);
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&id, hex);
        ck_assert_str_eq(hex, cases[i].hex);
    }
    guts_id id;
    ck_assert_int_eq(guts_obj_hash(0, "", 0, &id), GUTS_EINVAL);
    ck_assert_int_eq(guts_obj_hash(5, "", 0, &id), GUTS_EINVAL);
}
END_TEST

START_TEST(test_hex_parse_takes_exactly_40_hex_digits)
{
    static const char *const bad[] = {
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c539",   /* 39 digits */
        "g69de29bb2d1d6434b8b29ae775ad8c2e48c5391",  /* not hex */
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391 ", /* a trailing byte */
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c53910", /* a 41st digit */
        "e69de29bb2d1d6434b8b29ae775ad8c2e48c539\n", /* a newline as 40th */
        "",
    };
    guts_id id;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(guts_id_from_hex(bad[i], strlen(bad[i]), &id) == GUTS_EINVAL,
                      "accepted \"%s\"", bad[i]);
    /* the length is the caller's field: a NUL inside it is not a digit */
    ck_assert_int_eq(guts_id_from_hex("e69de29bb2d1d6434b8b29ae775ad8c2e48c539\0", 40, &id),
                     GUTS_EINVAL);
    ck_assert_int_eq(guts_id_from_hex("E69DE29BB2D1D6434B8B29AE775AD8C2E48C5391", 40, &id),
                     GUTS_OK);
    ck_assert_uint_eq(id.b[0], 0xe6);
    ck_assert_int_eq(guts_otype_parse("tree", 4), GUTS_OBJ_TREE);
    ck_assert_int_eq(guts_otype_parse("tre", 3), GUTS_OBJ_NONE);
    ck_assert_str_eq(guts_otype_name(GUTS_OBJ_TAG), "tag");
    ck_assert_ptr_null(guts_otype_name(7));
}
END_TEST

/* One entry "<mode> <name>\0<id>" into buf at n; returns the new length. */
static size_t tree_entry(uint8_t *buf, size_t n, const char *mode, const char *name, uint8_t fill)
{
    n += (size_t)sprintf((char *)buf + n, "%s %s", mode, name) + 1;
    memset(buf + n, fill, GUTS_ID_LEN);
    return n + GUTS_ID_LEN;
}

/* git reads a mode as an octal number: "040000" is a directory as "40000"
 * is (written by other tools, and by hostile peers to hide a subtree). */
START_TEST(test_tree_entries_read_modes_as_octal)
{
    static const struct {
        const char *mode;
        unsigned value;
        int type;
    } cases[] = {
        {"40000", 040000, GUTS_OBJ_TREE},     {"040000", 040000, GUTS_OBJ_TREE},
        {"0040000", 040000, GUTS_OBJ_TREE},   {"100644", 0100644, GUTS_OBJ_BLOB},
        {"100755", 0100755, GUTS_OBJ_BLOB},   {"120000", 0120000, GUTS_OBJ_BLOB},
        {"160000", 0160000, GUTS_OBJ_COMMIT}, {"0160000", 0160000, GUTS_OBJ_COMMIT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t buf[128];
        size_t n = tree_entry(buf, 0, cases[i].mode, "dir", (uint8_t)i);
        n = tree_entry(buf, n, "100644", "f", 0xee);
        size_t pos = 0;
        guts_tree_entry e;
        ck_assert_int_eq(guts_tree_entry_next(buf, n, &pos, &e), 1);
        ck_assert_msg(e.mode == cases[i].value && e.type == cases[i].type, "mode %s",
                      cases[i].mode);
        ck_assert_uint_eq(e.name_len, 3);
        ck_assert_int_eq(memcmp(e.name, "dir", 3), 0);
        ck_assert_uint_eq(e.id.b[0], (uint8_t)i);
        ck_assert_int_eq(guts_tree_entry_next(buf, n, &pos, &e), 1);
        ck_assert_int_eq(e.type, GUTS_OBJ_BLOB);
        ck_assert_uint_eq(e.id.b[19], 0xee);
        ck_assert_int_eq(guts_tree_entry_next(buf, n, &pos, &e), 0);
        ck_assert_uint_eq(pos, n);
    }
}
END_TEST

START_TEST(test_malformed_tree_entries_are_rejected)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } cases[] = {
        {"100644 f\0aaaaaaaaaaaaaaaaaaa", 28, "19 id bytes"},
        {"100644 f", 8, "no NUL after the name"},
        {"100644 \0aaaaaaaaaaaaaaaaaaaa", 28, "empty name"},
        {" f\0aaaaaaaaaaaaaaaaaaaa", 23, "empty mode"},
        {"100844 f\0aaaaaaaaaaaaaaaaaaaa", 29, "8 is not octal"},
        {"-40000 f\0aaaaaaaaaaaaaaaaaaaa", 29, "a sign"},
        {"200000 f\0aaaaaaaaaaaaaaaaaaaa", 29, "over 16 bits"},
        {"77777777777777777777777 f\0aaaaaaaaaaaaaaaaaaaa", 46, "would overflow"},
        {"100644", 6, "no space"},
        /* the two modes read by fixed compares (git's file and directory) */
        {"40000 f\0aaaaaaaaaaaaaaaaaaa", 27, "a directory's 19 id bytes"},
        {"40000 \0aaaaaaaaaaaaaaaaaaaa", 27, "a directory's empty name"},
        {"100644 ", 7, "a file's mode and nothing after"},
        {"40000 f", 7, "a directory without a NUL"},
        {"1006440 f\0aaaaaaaaaaaaaaaaaaaa", 30, "a file's mode with a digit more"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t pos = 0;
        guts_tree_entry e;
        ck_assert_msg(guts_tree_entry_next((const uint8_t *)cases[i].bytes, cases[i].len, &pos,
                                           &e) == GUTS_EINVAL,
                      "accepted: %s", cases[i].why);
        ck_assert_uint_eq(pos, 0);
    }
}
END_TEST

/* Commit and tag links (guts_obj_link_next): tree and parent lines of a
 * commit, the object line of a tag, up to the empty line; a link whose
 * value is not exactly 40 hex digits (trailing bytes included) is an error
 * that names its kind; other headers and the message are not links. */
START_TEST(test_commit_and_tag_links_are_parsed_strictly)
{
    const char *a = "0123456789abcdef0123456789abcdef01234567";
    char buf[512];
    snprintf(buf, sizeof buf,
             "tree %s\nparent %s\nauthor A <a@b> 1 +0000\nparent %sx\nobject %s\n\nparent %s\n", a,
             a, a, a, a);
    const uint8_t *d = (const uint8_t *)buf;
    size_t len = strlen(buf), pos = 0;
    int kind;
    guts_id id, want;
    ck_assert_int_eq(guts_id_from_hex(a, 40, &want), GUTS_OK);
    ck_assert_int_eq(guts_obj_link_next(GUTS_OBJ_COMMIT, d, len, &pos, &kind, &id), 1);
    ck_assert_int_eq(kind, GUTS_LINK_TREE);
    ck_assert_int_eq(guts_id_cmp(&id, &want), 0);
    ck_assert_int_eq(guts_obj_link_next(GUTS_OBJ_COMMIT, d, len, &pos, &kind, &id), 1);
    ck_assert_int_eq(kind, GUTS_LINK_PARENT);
    ck_assert_int_eq(guts_obj_link_next(GUTS_OBJ_COMMIT, d, len, &pos, &kind, &id), GUTS_EINVAL);
    ck_assert_int_eq(kind, GUTS_LINK_PARENT);
    /* "object" is not a commit's link; the message's "parent" is no header */
    ck_assert_int_eq(guts_obj_link_next(GUTS_OBJ_COMMIT, d, len, &pos, &kind, &id), 0);
    snprintf(buf, sizeof buf, "object %s\ntype commit\n\nmsg\n", a);
    ck_assert_int_eq(guts_tag_target((const uint8_t *)buf, strlen(buf), &id), GUTS_OK);
    ck_assert_int_eq(guts_id_cmp(&id, &want), 0);
    snprintf(buf, sizeof buf, "object %s \ntype commit\n", a);
    ck_assert_int_eq(guts_tag_target((const uint8_t *)buf, strlen(buf), &id), GUTS_EINVAL);
    ck_assert_int_eq(guts_tag_target((const uint8_t *)"", 0, &id), GUTS_EINVAL);
}
END_TEST

START_TEST(test_fp_add_then_sub_carries_across_halves)
{
    guts_fp acc = {UINT64_MAX, 0};
    guts_fp one = {1, 0};
    guts_fp_add(&acc, one);
    ck_assert_uint_eq(acc.lo, 0);
    ck_assert_uint_eq(acc.hi, 1);
    guts_fp_sub(&acc, one);
    ck_assert_uint_eq(acc.lo, UINT64_MAX);
    ck_assert_uint_eq(acc.hi, 0);
    guts_fp zero = {0, 0};
    guts_fp_sub(&zero, one);
    ck_assert_uint_eq(zero.lo, UINT64_MAX);
    ck_assert_uint_eq(zero.hi, UINT64_MAX);
}
END_TEST

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

START_TEST(test_bad_repo_keys_rejected_and_nothing_created)
{
    char long_part[GUTS_KEY_PART_MAX + 2 + 2];
    memset(long_part, 'a', sizeof long_part);
    long_part[0] = 'o';
    long_part[1] = '/';
    long_part[sizeof long_part - 1] = '\0'; /* "o/" + 101 'a' */
    const char *bad[] = {
        "",     "a",     "/a",     "a/",    "a/b/c", "../x",   "a/..",   ".a/b",
        "a/.b", "a/.",   "./a",    "a b/c", "a/b c", "a\\b/c", "a/b\\c", "caf\xc3\xa9/x",
        "a//b", "a/b\n", long_part};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(guts_repo_key_check(bad[i]) == GUTS_EINVAL, "accepted key #%zu", i);
        guts_repo *r = NULL;
        ck_assert_int_eq(guts_repo_open(data, bad[i], GUTS_REPO_CREATE, &r), GUTS_EINVAL);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(guts_repo_remove(data, bad[i]), GUTS_EINVAL);
    }
    char repos[128];
    snprintf(repos, sizeof repos, "%s/repos", tmpdir);
    ck_assert_int_eq(count_entries(repos), 0);
    ck_assert_int_eq(guts_repo_key_check(NULL), GUTS_EINVAL);
    const char *good[] = {"a/b", "Owner-1/name.git", "x_y/z.z-9", "a.b/c..d"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ck_assert_int_eq(guts_repo_key_check(good[i]), GUTS_OK);
    long_part[sizeof long_part - 2] = '\0'; /* 100 chars: the limit is fine */
    ck_assert_int_eq(guts_repo_key_check(long_part), GUTS_OK);
}
END_TEST

/* A new repository's env is made under a dot name and renamed into place:
 * nothing of the temporary name is left, an empty directory left by a
 * crash inside the old mkdir-then-open window is replaced, and the env
 * opens from another handle. */
START_TEST(test_created_env_is_renamed_into_place)
{
    char owner[512], left[600];
    snprintf(owner, sizeof owner, "%s/repos/made", tmpdir);
    snprintf(left, sizeof left, "%s/empty", owner);
    ck_assert_int_eq(mkdir(owner, 0700), 0);
    ck_assert_int_eq(mkdir(left, 0700), 0); /* a crash's leftover */
    guts_repo *a = open_repo("made/new"), *b = open_repo("made/empty");
    guts_repo_close(a);
    guts_repo_close(b);
    ck_assert_int_eq(count_entries(owner), 2); /* new, empty: no .NAME.new-* */
    ck_assert_int_eq(guts_repo_open(data, "made/empty", 0, &b), GUTS_OK);
    guts_repo_close(b);
}
END_TEST

START_TEST(test_bad_ref_names_rejected)
{
    char too_long[GUTS_REFNAME_MAX + 2];
    memcpy(too_long, "refs/heads/", 11);
    memset(too_long + 11, 'x', sizeof too_long - 12);
    too_long[sizeof too_long - 1] = '\0';
    const char *bad[] = {"",
                         "master",
                         "refs",
                         "refs/",
                         "refs/heads/",
                         "refs//x",
                         "refs/heads/a..b",
                         "refs/heads/.hidden",
                         "refs/heads/x.lock",
                         "refs/heads/x.lock/y",
                         "refs/heads/x.",
                         "refs/heads/a b",
                         "refs/heads/a~1",
                         "refs/heads/a^",
                         "refs/heads/a:b",
                         "refs/heads/a?",
                         "refs/heads/a*",
                         "refs/heads/a[",
                         "refs/heads/a\\b",
                         "refs/heads/a@{1}",
                         "refs/heads/\x01",
                         "refs/heads/\x7f",
                         "head",
                         "HEAD/x",
                         too_long};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(guts_refname_check(bad[i]) == GUTS_EINVAL, "accepted ref #%zu", i);
    const char *good[] = {"HEAD",
                          "refs/heads/main",
                          "refs/tags/v1.0",
                          "refs/heads/feature/x-y_z",
                          "refs/heads/caf\xc3\xa9",
                          "refs/heads/a@b",
                          "refs/heads/a.b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ck_assert_msg(guts_refname_check(good[i]) == GUTS_OK, "rejected %s", good[i]);
    too_long[GUTS_REFNAME_MAX] = '\0';
    ck_assert_int_eq(guts_refname_check(too_long), GUTS_OK);
}
END_TEST

/* ---- data dir ------------------------------------------------------------ */

START_TEST(test_node_id_is_made_once_and_incarnation_increments)
{
    guts_node_id first = *guts_data_node_id(data);
    guts_node_id zero = {{0}};
    ck_assert(memcmp(&first, &zero, sizeof zero) != 0);
    uint64_t a, b;
    ck_assert_int_eq(guts_data_incarnation_next(data, &a), GUTS_OK);
    ck_assert_int_eq(guts_data_incarnation_next(data, &b), GUTS_OK);
    ck_assert_uint_eq(b, a + 1);
    guts_data_close(data);
    ck_assert_int_eq(guts_data_open(tmpdir, GUTS_DATA_CREATE, &data), GUTS_OK);
    ck_assert(memcmp(guts_data_node_id(data), &first, sizeof first) == 0);
    ck_assert_int_eq(guts_data_incarnation_next(data, &a), GUTS_OK);
    ck_assert_uint_eq(a, b + 1);
    ck_assert_str_eq(guts_data_path(data), tmpdir);
}
END_TEST

static int collect_key(const char *key, void *ctx)
{
    char *out = ctx;
    strcat(out, key);
    strcat(out, ";");
    return 0;
}

START_TEST(test_repos_walk_of_empty_data_dir_calls_nothing)
{
    char keys[256] = "";
    ck_assert_int_eq(guts_data_repos(data, collect_key, keys), GUTS_OK);
    ck_assert_str_eq(keys, "");
}
END_TEST

START_TEST(test_repos_walk_is_sorted_and_skips_non_repos)
{
    guts_repo *r1 = open_repo("zed/b");
    guts_repo *r2 = open_repo("alice/x");
    guts_repo *r3 = open_repo("alice/a");
    guts_repo_close(r1);
    guts_repo_close(r2);
    guts_repo_close(r3);
    char p[256];
    snprintf(p, sizeof p, "%s/repos/bob", tmpdir); /* a dir without data.mdb */
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/repos/bob/empty", tmpdir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/repos/.hidden", tmpdir);
    mkdir(p, 0700);
    char keys[256] = "";
    ck_assert_int_eq(guts_data_repos(data, collect_key, keys), GUTS_OK);
    ck_assert_str_eq(keys, "alice/a;alice/x;zed/b;");
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "bob/empty", 0, &r), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_repo_open(data, "nobody/here", 0, &r), GUTS_ENOTFOUND);
}
END_TEST

/* A dot-named env whose maker was killed before its rename is removed by
 * the next listing once its maker is gone and it is a minute old; one of
 * a live maker (this process), or a fresh one, is kept. */
static void leftover_env(const char *owner, long pid, int aged, char *dir, size_t len)
{
    snprintf(dir, len, "%s/.x.new-%ld-0", owner, pid);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    char f[700];
    snprintf(f, sizeof f, "%s/data.mdb", dir);
    FILE *fp = fopen(f, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    if (aged) {
        struct timespec ts[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
        ck_assert_int_eq(utimensat(AT_FDCWD, dir, ts, 0), 0);
    }
}

START_TEST(test_repos_walk_removes_envs_left_by_killed_makers)
{
    guts_repo_close(open_repo("own/a"));
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) _exit(0);
    ck_assert_int_eq(waitpid(child, NULL, 0), child); /* a pid that is gone */
    char owner[512], dead[600], mine[600], fresh[600];
    snprintf(owner, sizeof owner, "%s/repos/own", tmpdir);
    leftover_env(owner, (long)child, 1, dead, sizeof dead);
    leftover_env(owner, (long)getpid(), 1, mine, sizeof mine);
    snprintf(fresh, sizeof fresh, "%s/repos/own/.y.new-%ld-1", tmpdir, (long)child);
    ck_assert_int_eq(mkdir(fresh, 0700), 0);
    /* names not of that form are not env_create's: never removed */
    static const char *const odd[] = {".new-%ld-0", "..new-%ld-0", ".z.new-%ldx-0", ".z.new-%ld-",
                                      ".z.new-%ld-2a"};
    char other[5][600], name[64];
    struct timespec old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, odd[i], (long)child); /* its maker gone, as dead's */
        snprintf(other[i], sizeof other[i], "%s/%s", owner, name);
        ck_assert_int_eq(mkdir(other[i], 0700), 0);
        ck_assert_int_eq(utimensat(AT_FDCWD, other[i], old, 0), 0);
    }
    char keys[256] = "";
    ck_assert_int_eq(guts_data_repos(data, collect_key, keys), GUTS_OK);
    ck_assert_str_eq(keys, "own/a;");
    struct stat st;
    ck_assert_int_ne(stat(dead, &st), 0);
    ck_assert_int_eq(stat(mine, &st), 0);
    ck_assert_int_eq(stat(fresh, &st), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(stat(other[i], &st), 0);
}
END_TEST

START_TEST(test_remove_deletes_env_and_empty_owner_dir)
{
    guts_repo *r = open_repo("owner/one");
    guts_repo_close(open_repo("owner/two"));
    ck_assert_int_eq(guts_repo_remove(data, "owner/one"), GUTS_EAGAIN);
    guts_repo_close(r);
    ck_assert_int_eq(guts_repo_remove(data, "owner/one"), GUTS_OK);
    char p[256];
    snprintf(p, sizeof p, "%s/repos/owner", tmpdir);
    ck_assert_int_eq(count_entries(p), 1);
    ck_assert_int_eq(guts_repo_remove(data, "owner/two"), GUTS_OK);
    ck_assert_int_eq(count_entries(p), -1);
    ck_assert_int_eq(guts_repo_remove(data, "owner/two"), GUTS_ENOTFOUND);
}
END_TEST

/* ---- objects ------------------------------------------------------------- */

START_TEST(test_put_get_has_stat_roundtrip)
{
    guts_repo *r = open_repo("o/n");
    ck_assert_str_eq(guts_repo_key(r), "o/n");
    static char big[100000];
    fill_text(big, sizeof big, 1);
    static uint8_t noise[5000];
    fill(noise, sizeof noise, 2);
    guts_obj objs[] = {
        mkobj(GUTS_OBJ_BLOB, "", 0),
        mkobj(GUTS_OBJ_TREE, "", 0),
        mkobj(GUTS_OBJ_BLOB, "hello\n", 6),
        mkobj(GUTS_OBJ_COMMIT, big, sizeof big),
        mkobj(GUTS_OBJ_BLOB, noise, sizeof noise),
    };
    size_t n = sizeof objs / sizeof *objs;
    ck_assert_int_eq(guts_repo_has(r, &objs[0].id), 0);
    int type;
    uint64_t size;
    ck_assert_int_eq(guts_repo_stat(r, &objs[0].id, &type, &size), GUTS_ENOTFOUND);
    put_ok(r, objs, n, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(guts_repo_has(r, &objs[i].id), 1);
        ck_assert_int_eq(guts_repo_stat(r, &objs[i].id, &type, &size), GUTS_OK);
        ck_assert_int_eq(type, objs[i].type);
        ck_assert_uint_eq(size, objs[i].len);
        check_get(r, &objs[i]);
    }
    uint64_t t0, t1;
    ck_assert_int_eq(guts_repo_txnid(r, &t0), GUTS_OK);
    put_ok(r, objs, n, 0); /* everything present: skipped, nothing committed */
    ck_assert_int_eq(guts_repo_txnid(r, &t1), GUTS_OK);
    ck_assert_uint_eq(t1, t0);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, n);
    /* Compressible text is stored much smaller than it is. */
    ck_assert_uint_lt(info.stored_bytes, sizeof big / 2 + sizeof noise + 200);
    guts_id missing = {{1}};
    void *d;
    size_t len;
    ck_assert_int_eq(guts_repo_get(r, &missing, &type, &d, &len), GUTS_ENOTFOUND);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_duplicates_in_one_batch_are_stored_once)
{
    guts_repo *r = open_repo("o/n");
    guts_obj objs[] = {mkobj(GUTS_OBJ_BLOB, "a\n", 2), mkobj(GUTS_OBJ_BLOB, "a\n", 2)};
    put_ok(r, objs, 2, 1);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 1);
    ck_assert(guts_fp_eq(info.fp, guts_fp_of_id(&objs[0].id)));
    guts_repo_close(r);
}
END_TEST

START_TEST(test_corrupted_object_rejected_and_nothing_stored)
{
    guts_repo *r = open_repo("o/n");
    guts_obj objs[] = {mkobj(GUTS_OBJ_BLOB, "good\n", 5), mkobj(GUTS_OBJ_BLOB, "evil\n", 5),
                       mkobj(GUTS_OBJ_BLOB, "also good\n", 10)};
    objs[1].id.b[7] ^= 1;
    size_t added = 42, bad = 42;
    ck_assert_int_eq(guts_repo_put(r, objs, 3, &added, &bad), GUTS_EHASH);
    ck_assert_uint_eq(bad, 1);
    ck_assert_uint_eq(added, 0);
    ck_assert_ptr_nonnull(strstr(guts_store_errmsg(), "does not hash"));
    /* A type that disagrees with the id is the same fault. */
    guts_obj t = mkobj(GUTS_OBJ_BLOB, "x", 1);
    t.type = GUTS_OBJ_TREE;
    ck_assert_int_eq(guts_repo_put(r, &t, 1, &added, &bad), GUTS_EHASH);
    t.type = 9;
    ck_assert_int_eq(guts_repo_put(r, &t, 1, &added, &bad), GUTS_EINVAL);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(guts_repo_has(r, &objs[i].id), 0);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 0);
    ck_assert_uint_eq(info.stored_bytes, 0);
    guts_fp zero = {0, 0};
    ck_assert(guts_fp_eq(info.fp, zero));
    guts_repo_close(r);
}
END_TEST

START_TEST(test_object_over_size_limit_rejected)
{
    guts_repo *r = open_repo("o/n");
    /* The check is on the claimed length, before hashing touches the data. */
    guts_obj o = {.type = GUTS_OBJ_BLOB, .data = "", .len = GUTS_OBJ_MAX_DEFAULT + 1};
    size_t bad = 7;
    ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, &bad), GUTS_ETOOBIG);
    ck_assert_uint_eq(bad, 0);
    guts_repo_close(r);
}
END_TEST

static int collect_ids(const guts_id *id, void *ctx)
{
    guts_id **p = ctx;
    *(*p)++ = *id;
    return 0;
}

static int stop_after_one(const guts_id *id, void *ctx)
{
    (void)id;
    (*(int *)ctx)++;
    return 5;
}

START_TEST(test_ids_iterate_in_id_order_within_range)
{
    guts_repo *r = open_repo("o/n");
    enum { N = 200 };
    static char bufs[N][16];
    guts_obj objs[N];
    for (int i = 0; i < N; i++) {
        int l = snprintf(bufs[i], sizeof bufs[i], "blob %d\n", i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, bufs[i], (size_t)l);
    }
    put_ok(r, objs, N, N);
    guts_id got[N + 1], *p = got;
    ck_assert_int_eq(guts_repo_ids(r, NULL, NULL, collect_ids, &p), GUTS_OK);
    ck_assert_int_eq(p - got, N);
    for (int i = 1; i < N; i++)
        ck_assert_int_lt(guts_id_cmp(&got[i - 1], &got[i]), 0);
    /* [got[10], got[20]) holds exactly those ten ids. */
    guts_id sub[N], *q = sub;
    ck_assert_int_eq(guts_repo_ids(r, &got[10], &got[20], collect_ids, &q), GUTS_OK);
    ck_assert_int_eq(q - sub, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(guts_id_cmp(&sub[i], &got[10 + i]), 0);
    int calls = 0;
    ck_assert_int_eq(guts_repo_ids(r, NULL, NULL, stop_after_one, &calls), 5);
    ck_assert_int_eq(calls, 1);
    /* recent: newest first */
    guts_id rec[5];
    size_t nrec;
    ck_assert_int_eq(guts_repo_recent(r, 5, rec, &nrec), GUTS_OK);
    ck_assert_uint_eq(nrec, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(guts_id_cmp(&rec[i], &objs[N - 1 - i].id), 0);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_fingerprint_independent_of_insertion_order)
{
    enum { N = 64 };
    static char bufs[N][16];
    guts_obj objs[N];
    guts_fp want = {0, 0};
    for (int i = 0; i < N; i++) {
        int l = snprintf(bufs[i], sizeof bufs[i], "obj %d", i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, bufs[i], (size_t)l);
        guts_fp_add(&want, guts_fp_of_id(&objs[i].id));
    }
    guts_repo *a = open_repo("o/forward");
    guts_repo *b = open_repo("o/backward");
    put_ok(a, objs, N, N);
    for (int i = N - 1; i >= 0; i -= 8) {
        guts_obj rev[8];
        for (int j = 0; j < 8; j++)
            rev[j] = objs[i - j];
        put_ok(b, rev, 8, 8);
    }
    guts_repo_info ia, ib;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
    ck_assert(guts_fp_eq(ia.fp, ib.fp));
    ck_assert(guts_fp_eq(ia.fp, want));
    ck_assert_uint_eq(ia.objects, N);
    /* And it distinguishes sets: one object less differs. */
    guts_fp less = want;
    guts_fp_sub(&less, guts_fp_of_id(&objs[0].id));
    ck_assert(!guts_fp_eq(less, want));
    guts_repo_close(a);
    guts_repo_close(b);
}
END_TEST

START_TEST(test_map_grows_past_small_initial_size)
{
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_repo *r = open_repo("o/big");
    enum { N = 48, SZ = 128 * 1024 };
    guts_obj objs[N];
    uint8_t *bufs = random_blobs(objs, N, SZ, 100);
    put_ok(r, objs, N / 2, N / 2); /* one batch of 3 MiB into a 1 MiB map */
    for (int i = N / 2; i < N; i++)
        put_ok(r, &objs[i], 1, 1); /* and one by one */
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, N);
    ck_assert_uint_ge(info.stored_bytes, (uint64_t)N * SZ);
    for (int i = 0; i < N; i++)
        check_get(r, &objs[i]);
    guts_repo_close(r);
    free(bufs);
}
END_TEST

START_TEST(test_map_that_cannot_grow_fails_full_and_stores_nothing)
{
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_data_set_max_mapsize(data, 2 << 20);
    guts_repo *r = open_repo("o/capped");
    enum { BIG = 3 << 20, MID = 600 << 10 };
    uint8_t *big = malloc(BIG);
    fill(big, BIG, 5150);
    guts_obj o = mkobj(GUTS_OBJ_BLOB, big, BIG);
    size_t added = 9;
    ck_assert_int_eq(guts_repo_put(r, &o, 1, &added, NULL), GUTS_EFULL);
    ck_assert_uint_eq(added, 0);
    ck_assert_ptr_nonnull(strstr(guts_store_errmsg(), "limit"));
    ck_assert_int_eq(guts_repo_has(r, &o.id), 0);
    /* The env still works, and can still grow up to the cap. */
    guts_obj mid = mkobj(GUTS_OBJ_BLOB, big, MID);
    put_ok(r, &mid, 1, 1);
    guts_obj small = mkobj(GUTS_OBJ_BLOB, "small\n", 6);
    put_ok(r, &small, 1, 1);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 2);
    check_get(r, &mid);
    guts_repo_close(r);
    free(big);
}
END_TEST

typedef struct put_in_walk {
    guts_repo *r;
    const guts_obj *big;
    int rc;
} put_in_walk;

static int put_during_walk(const guts_id *id, void *arg)
{
    (void)id;
    put_in_walk *p = arg;
    p->rc = guts_repo_put(p->r, p->big, 1, NULL, NULL);
    return 1;
}

START_TEST(test_map_growth_under_an_open_read_is_refused_not_unsafe)
{
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_repo *r = open_repo("o/walk");
    guts_obj small = mkobj(GUTS_OBJ_BLOB, "small\n", 6);
    put_ok(r, &small, 1, 1);
    enum { BIG = 3 << 20 };
    uint8_t *big = malloc(BIG);
    fill(big, BIG, 99);
    guts_obj o = mkobj(GUTS_OBJ_BLOB, big, BIG);
    /* Growing remaps: pointers of the walk's read txn would dangle. */
    put_in_walk p = {r, &o, 0};
    ck_assert_int_eq(guts_repo_ids(r, NULL, NULL, put_during_walk, &p), 1);
    ck_assert_int_eq(p.rc, GUTS_EAGAIN);
    ck_assert_int_eq(guts_repo_has(r, &o.id), 0);
    put_ok(r, &o, 1, 1); /* outside the walk it grows */
    check_get(r, &o);
    guts_repo_close(r);
    free(big);
}
END_TEST

START_TEST(test_delta_against_base_is_smaller_and_roundtrips)
{
    guts_repo *r = open_repo("o/delta");
    enum { SZ = 64 * 1024, V = 6 };
    /* Versions of one random (so incompressible alone) file, each a few
     * bytes different from the last. */
    uint8_t *v = malloc((size_t)V * SZ);
    fill(v, SZ, 9);
    for (int i = 1; i < V; i++) {
        memcpy(v + (size_t)i * SZ, v + (size_t)(i - 1) * SZ, SZ);
        v[(size_t)i * SZ + (size_t)i * 1000] ^= 0xff;
    }
    guts_obj objs[V];
    for (int i = 0; i < V; i++)
        objs[i] = mkobj(GUTS_OBJ_BLOB, v + (size_t)i * SZ, SZ);
    put_ok(r, &objs[0], 1, 1);
    guts_repo_info before;
    ck_assert_int_eq(guts_repo_info_get(r, &before), GUTS_OK);
    ck_assert_uint_ge(before.stored_bytes, SZ); /* random: no gain alone */
    /* objs[1] against the stored base; then a chain inside one batch. */
    for (int i = 1; i < V; i++)
        objs[i].base = &objs[i - 1].id;
    put_ok(r, &objs[1], 1, 1);
    put_ok(r, &objs[2], V - 2, V - 2);
    guts_repo_info after;
    ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
    ck_assert_uint_lt(after.stored_bytes - before.stored_bytes, (uint64_t)(V - 1) * 200);
    /* Read back in a fresh handle (cold cache) and in the same one. */
    guts_repo_close(r);
    r = open_repo("o/delta");
    for (int i = V - 1; i >= 0; i--)
        check_get(r, &objs[i]);
    for (int i = 0; i < V; i++)
        check_get(r, &objs[i]);
    guts_repo_close(r);
    free(v);
}
END_TEST

START_TEST(test_records_do_not_depend_on_batching_or_threads)
{
    /* 40 x 64 KiB: one batch is compressed on several threads (one per MiB,
     * up to the CPUs online), one object per put on one; results agree. */
    enum { N = 40, SZ = 64 << 10 };
    char *v = malloc((size_t)N * SZ);
    guts_obj objs[N];
    for (int i = 0; i < N; i++) {
        char *p = v + (size_t)i * SZ;
        if (i % 10 == 0)
            fill_text(p, SZ, (uint64_t)i);
        else
            memcpy(p, p - SZ, SZ);
        snprintf(p + (size_t)i * 997 % (SZ - 16), 12, "edit %03d", i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, p, SZ);
        objs[i].base = i % 10 ? &objs[i - 1].id : NULL;
    }
    guts_repo *a = open_repo("o/batch");
    guts_repo *b = open_repo("o/single");
    put_ok(a, objs, N, N);
    for (int i = 0; i < N; i++)
        put_ok(b, &objs[i], 1, 1);
    guts_repo_info ia, ib;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
    /* Same choices, same sizes up to zstd's own variation: its output for
     * a prefix depends a little on what the context compressed before. */
    ck_assert_uint_lt(ia.stored_bytes, ib.stored_bytes + ib.stored_bytes / 100);
    ck_assert_uint_lt(ib.stored_bytes, ia.stored_bytes + ia.stored_bytes / 100);
    ck_assert(guts_fp_eq(ia.fp, ib.fp));
    /* Deltas were made: 4 whole texts plus 36 small deltas. */
    ck_assert_uint_lt(ia.stored_bytes, (uint64_t)4 * SZ / 2 + 36 * 1000);
    guts_repo_close(a);
    guts_repo_close(b);
    a = open_repo("o/batch");
    for (int i = N - 1; i >= 0; i--)
        check_get(a, &objs[i]);
    guts_repo_close(a);
    free(v);
}
END_TEST

/* A git delta (as a pack holds it) built here: ops of {copy from, len} or
 * {insert len bytes of dst at}. */
typedef struct gdop {
    int copy;
    size_t from, len;
} gdop;

static size_t gd_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

/* The delta of ops (inserts take dst's bytes at their place) in *out. */
static size_t gd_build(size_t bn, const uint8_t *dst, size_t dn, const gdop *ops, size_t nops,
                       uint8_t **out)
{
    uint8_t *d = malloc(32 + dn + 8 * nops + dn / 127 + 1), *p = d;
    size_t at = 0;
    p += gd_varint(p, bn);
    p += gd_varint(p, dn);
    for (size_t i = 0; i < nops; i++) {
        if (ops[i].copy) {
            uint8_t *op = p++;
            *op = 0x80;
            for (int k = 0; k < 4; k++)
                if ((ops[i].from >> (8 * k)) & 0xff) {
                    *op |= (uint8_t)(1 << k);
                    *p++ = (uint8_t)(ops[i].from >> (8 * k));
                }
            for (int k = 0; k < 3; k++)
                if ((ops[i].len >> (8 * k)) & 0xff) {
                    *op |= (uint8_t)(0x10 << k);
                    *p++ = (uint8_t)(ops[i].len >> (8 * k));
                }
        } else {
            for (size_t left = ops[i].len, j = 0; left;) {
                size_t k = left > 127 ? 127 : left;
                *p++ = (uint8_t)k;
                memcpy(p, dst + at + j, k);
                p += k;
                j += k;
                left -= k;
            }
        }
        at += ops[i].len;
    }
    *out = d;
    return (size_t)(p - d);
}

/* A put given git's delta takes its copies, each checked: a true delta
 * makes a small delta record; one that lies (copies of other bytes, out
 * of the base, a wrong size, cut short) is not used, and the object is
 * still stored right. Objects up to 300 KB, so zstd splits their
 * sequences across its 128 KB blocks. */
START_TEST(test_git_delta_copies_are_checked_then_used)
{
    enum { SZ = 300 * 1000 };
    guts_repo *r = open_repo("o/gdelta");
    char *base = malloc(SZ), *dst = malloc(SZ + 100);
    fill_text(base, SZ, 11);
    /* dst: base[0, 1000), 50 new bytes, base[1000 + 10, SZ) */
    memcpy(dst, base, 1000);
    fill_text(dst + 1000, 50, 12);
    memcpy(dst + 1050, base + 1010, SZ - 1010);
    size_t dn = SZ + 40;
    guts_obj b = mkobj(GUTS_OBJ_BLOB, base, SZ);
    put_ok(r, &b, 1, 1);
    gdop good[] = {{1, 0, 1000}, {0, 0, 50}, {1, 1010, SZ - 1010}};
    gdop lying[] = {{1, 5, 1000}, {0, 0, 50}, {1, 1010, SZ - 1010}};
    gdop outside[] = {{1, 0, 1000}, {0, 0, 50}, {1, 1010, SZ}};
    gdop tiny[] = {{1, 0, 3}, {1, 3, 997}, {0, 0, 50}, {1, 1010, SZ - 1010}};
    const gdop *cases[] = {good, lying, outside, tiny};
    size_t ncases[] = {3, 3, 3, 4};
    for (int c = 0; c < 6; c++) {
        /* a different last byte each round: a new object every time */
        dst[dn - 1] = (char)('a' + c);
        guts_obj o = mkobj(GUTS_OBJ_BLOB, dst, dn);
        o.base = &b.id;
        uint8_t *gd;
        size_t gdl = gd_build(SZ, (const uint8_t *)dst, dn, cases[c % 4], ncases[c % 4], &gd);
        if (c == 4) gd[0] ^= 1;        /* the base's size wrong */
        if (c == 5) gdl = gdl / 2;     /* cut short */
        o.gdelta = gd;
        o.gdlen = gdl;
        guts_repo_info before, after;
        ck_assert_int_eq(guts_repo_info_get(r, &before), GUTS_OK);
        put_ok(r, &o, 1, 1);
        ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
        /* A delta either way (the scan finds the same copies). */
        ck_assert_uint_lt(after.stored_bytes - before.stored_bytes, 1000);
        check_get(r, &o);
        free(gd);
    }
    guts_repo_close(r);
    r = open_repo("o/gdelta");
    check_get(r, &b);
    free(base);
    free(dst);
    guts_repo_close(r);
}
END_TEST

/* The store's own scan, on random edits of random sizes: every delta made
 * from its copies reads back exactly. */
START_TEST(test_scanned_deltas_of_random_edits_roundtrip)
{
    guts_repo *r = open_repo("o/scan");
    uint64_t x = 77;
    for (int round = 0; round < 40; round++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        size_t bn = 20 + (size_t)(x >> 33) % (round < 30 ? 20000 : 400000);
        char *base = malloc(bn), *dst = malloc(2 * bn + 64);
        fill_text(base, bn, x);
        size_t dn = 0, i = 0;
        while (i < bn) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t run = 1 + (size_t)(x >> 40) % 3000;
            if (run > bn - i) run = bn - i;
            memcpy(dst + dn, base + i, run);
            dn += run;
            i += run;
            if ((x >> 20) % 3 == 0) { /* insert */
                size_t k = 1 + (size_t)(x >> 24) % 40;
                fill_text(dst + dn, k, x + 1);
                dn += k;
            } else if ((x >> 20) % 3 == 1) { /* delete */
                i += (size_t)(x >> 26) % 40;
            }
        }
        guts_obj objs[2] = {mkobj(GUTS_OBJ_BLOB, base, bn), mkobj(GUTS_OBJ_BLOB, dst, dn)};
        objs[1].base = &objs[0].id;
        size_t added = 0, bad = 0;
        ck_assert_int_eq(guts_repo_put(r, objs, 2, &added, &bad), GUTS_OK);
        check_get(r, &objs[1]);
        free(base);
        free(dst);
    }
    guts_repo_close(r);
}
END_TEST

START_TEST(test_base_hint_that_is_absent_or_later_is_ignored)
{
    guts_repo *r = open_repo("o/delta");
    static char a[4000], b[4000];
    fill_text(a, sizeof a, 3);
    memcpy(b, a, sizeof b);
    b[100] = '#';
    guts_obj objs[2] = {mkobj(GUTS_OBJ_BLOB, b, sizeof b), mkobj(GUTS_OBJ_BLOB, a, sizeof a)};
    objs[0].base = &objs[1].id; /* base comes later in the batch: not stored yet */
    guts_id nowhere = {{0xab}};
    objs[1].base = &nowhere;
    put_ok(r, objs, 2, 2);
    guts_repo_close(r);
    r = open_repo("o/delta");
    check_get(r, &objs[0]);
    check_get(r, &objs[1]);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_delta_chain_depth_is_bounded)
{
    guts_repo *r = open_repo("o/chain");
    enum { V = 120, SZ = 2048 };
    uint8_t *v = malloc((size_t)V * SZ);
    fill(v, SZ, 77);
    guts_obj objs[V];
    for (int i = 0; i < V; i++) {
        if (i) memcpy(v + (size_t)i * SZ, v + (size_t)(i - 1) * SZ, SZ);
        v[(size_t)i * SZ + (size_t)(i % SZ)] ^= 0x5a;
        objs[i] = mkobj(GUTS_OBJ_BLOB, v + (size_t)i * SZ, SZ);
        objs[i].base = i ? &objs[i - 1].id : NULL;
    }
    put_ok(r, objs, V, V);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    /* Deltas everywhere except a full copy every 51 links. */
    ck_assert_uint_lt(info.stored_bytes, (uint64_t)3 * (SZ + 64) + (uint64_t)V * 200);
    guts_repo_close(r);
    r = open_repo("o/chain");
    for (int i = V - 1; i >= 0; i--)
        check_get(r, &objs[i]);
    guts_repo_close(r);
    free(v);
}
END_TEST

START_TEST(test_large_similar_objects_delta_beyond_default_window)
{
    guts_repo *r = open_repo("o/large");
    /* above zstd's 2^21 default window, below GUTS_LARGE_MIN (larger ones
     * are stored in pieces, without a base) */
    enum { SZ = 6 << 20 };
    uint8_t *a = malloc(SZ), *b = malloc(SZ);
    fill(a, SZ, 31);
    memcpy(b, a, SZ);
    b[SZ - 10] ^= 1;
    b[5] ^= 1;
    guts_obj oa = mkobj(GUTS_OBJ_BLOB, a, SZ), ob = mkobj(GUTS_OBJ_BLOB, b, SZ);
    ob.base = &oa.id;
    put_ok(r, &oa, 1, 1);
    put_ok(r, &ob, 1, 1);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_lt(info.stored_bytes, (uint64_t)SZ + SZ / 100);
    guts_repo_close(r);
    r = open_repo("o/large");
    check_get(r, &ob);
    check_get(r, &oa);
    guts_repo_close(r);
    free(a);
    free(b);
}
END_TEST

typedef struct fsck_ctx {
    guts_repo *r;
    size_t n;
    guts_fp fp;
} fsck_ctx;

static int rehash_cb(const guts_id *id, void *arg)
{
    fsck_ctx *c = arg;
    int type;
    void *d;
    size_t len;
    int rc = guts_repo_get(c->r, id, &type, &d, &len);
    if (rc) return rc;
    guts_id got;
    rc = guts_obj_hash(type, d, len, &got);
    free(d);
    if (rc || guts_id_cmp(&got, id) != 0) return GUTS_EHASH;
    guts_fp_add(&c->fp, guts_fp_of_id(id));
    c->n++;
    return 0;
}

/* A chain of V versions of a 16 KiB text, each with one edit, put with
 * deltas (v[i] against v[i-1]) into r. */
enum { RV = 6, RSZ = 16 << 10 };
static char *rec_chain(guts_repo *r, guts_obj *objs, int n, uint64_t seed)
{
    char *v = malloc((size_t)n * RSZ);
    fill_text(v, RSZ, seed);
    for (int i = 0; i < n; i++) {
        char *p = v + (size_t)i * RSZ;
        if (i) memcpy(p, p - RSZ, RSZ);
        p[(size_t)i * 131 % RSZ] = (char)('A' + i % 26);
        objs[i] = mkobj(GUTS_OBJ_BLOB, p, RSZ);
        objs[i].base = i ? &objs[i - 1].id : NULL;
    }
    if (r) put_ok(r, objs, (size_t)n, (size_t)n);
    return v;
}

START_TEST(test_records_copy_to_another_repo_as_stored)
{
    guts_repo *a = open_repo("o/a"), *b = open_repo("o/b");
    guts_obj objs[RV];
    char *v = rec_chain(a, objs, RV, 5);
    guts_rec recs[RV];
    void *bufs[RV];
    for (int i = 0; i < RV; i++) {
        ck_assert_int_eq(guts_repo_rec_get(a, &objs[i].id, &recs[i], &bufs[i]), GUTS_OK);
        ck_assert(guts_id_cmp(&recs[i].id, &objs[i].id) == 0);
        ck_assert_uint_eq(recs[i].size, RSZ);
        if (i) {
            ck_assert_int_eq(recs[i].enc, GUTS_REC_DELTA);
            ck_assert_uint_eq(recs[i].depth, (unsigned)i);
            ck_assert(guts_id_cmp(&recs[i].base, &objs[i - 1].id) == 0);
        }
    }
    /* Deepest first: every delta lacks its base, only the full one is stored. */
    guts_rec rev[RV];
    uint8_t nobase[RV] = {0};
    for (int i = 0; i < RV; i++)
        rev[i] = recs[RV - 1 - i];
    size_t added = 9, bad = 0;
    ck_assert_int_eq(guts_repo_rec_put(b, rev, RV, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, 1);
    for (int i = 0; i < RV; i++)
        ck_assert_uint_eq(nobase[i], i < RV - 1);
    /* In order: the rest go in, byte for byte as in a. */
    ck_assert_int_eq(guts_repo_rec_put(b, recs, RV, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, RV - 1);
    guts_repo_info ia, ib;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
    ck_assert(guts_fp_eq(ia.fp, ib.fp));
    ck_assert_uint_eq(ia.stored_bytes, ib.stored_bytes);
    guts_repo_close(b);
    b = open_repo("o/b");
    for (int i = RV - 1; i >= 0; i--)
        check_get(b, &objs[i]);
    for (int i = 0; i < RV; i++)
        free(bufs[i]);
    guts_repo_close(a);
    guts_repo_close(b);
    free(v);
}
END_TEST

START_TEST(test_bad_records_are_rejected_and_nothing_stored)
{
    guts_repo *a = open_repo("o/a"), *b = open_repo("o/b");
    guts_obj objs[2];
    char *v = rec_chain(a, objs, 2, 6);
    guts_rec good[2];
    void *bufs[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(guts_repo_rec_get(a, &objs[i].id, &good[i], &bufs[i]), GUTS_OK);
    ck_assert_int_eq(good[0].enc, GUTS_REC_ZSTD);
    uint8_t *tampered = malloc(good[1].len);
    memcpy(tampered, good[1].data, good[1].len);
    tampered[good[1].len / 2] ^= 0x40;
    static const char raw[] = "hello\n";
    guts_rec rawrec = {.type = GUTS_OBJ_BLOB, .enc = GUTS_REC_RAW, .size = 6, .data = raw,
                       .len = 6};
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, raw, 6, &rawrec.id), GUTS_OK);
    static const char other[] = "other\n";
    guts_rec first = {.type = GUTS_OBJ_BLOB, .enc = GUTS_REC_RAW, .size = 6, .data = other,
                      .len = 6};
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, other, 6, &first.id), GUTS_OK);
    struct {
        const char *what;
        guts_rec r;
        int want;
    } cases[8];
    int n = 0;
    cases[n].what = "payload byte flipped";
    cases[n].r = good[1];
    cases[n].r.data = tampered;
    cases[n++].want = GUTS_EHASH;
    cases[n].what = "another object's id";
    cases[n].r = good[1];
    cases[n].r.id.b[0] ^= 1;
    cases[n++].want = GUTS_EHASH;
    cases[n].what = "size differs from the frame's";
    cases[n].r = good[1];
    cases[n].r.size -= 1;
    cases[n++].want = GUTS_EHASH;
    cases[n].what = "size over the object limit";
    cases[n].r = good[0];
    cases[n].r.size = (uint64_t)GUTS_OBJ_MAX_DEFAULT + 1;
    cases[n++].want = GUTS_ETOOBIG;
    cases[n].what = "raw length differs from size";
    cases[n].r = rawrec;
    cases[n].r.len = 5;
    cases[n++].want = GUTS_EHASH;
    cases[n].what = "unknown encoding";
    cases[n].r = rawrec;
    cases[n].r.enc = 3;
    cases[n++].want = GUTS_EINVAL;
    cases[n].what = "bad type";
    cases[n].r = rawrec;
    cases[n].r.type = 7;
    cases[n++].want = GUTS_EINVAL;
    cases[n].what = "raw content of another id";
    cases[n].r = rawrec;
    cases[n].r.id = objs[1].id;
    cases[n++].want = GUTS_EHASH;
    for (int i = 0; i < n; i++) {
        /* a good record first in the same call: it must not be kept either */
        guts_rec batch[3] = {first, good[0], cases[i].r};
        size_t added = 0, bad = 9;
        int rc = guts_repo_rec_put(b, batch, 3, NULL, NULL, &added, &bad);
        ck_assert_msg(rc == cases[i].want, "%s: %d", cases[i].what, rc);
        ck_assert_msg(bad == 2, "%s: bad %zu", cases[i].what, bad);
        guts_repo_info ib;
        ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
        ck_assert_msg(ib.objects == 0, "%s: stored", cases[i].what);
    }
    free(tampered);
    free(bufs[0]);
    free(bufs[1]);
    guts_repo_close(a);
    guts_repo_close(b);
    free(v);
}
END_TEST

static uint64_t objects_of(guts_repo *r)
{
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    return info.objects;
}

/* ---- received records hashed on the hasher thread (hasher.c) ------------- */

/* A seen callback that checks what it is told: each record of recs once,
 * with a content that hashes to its id. */
typedef struct seen_log {
    const guts_rec *recs;
    size_t n;
    int told[64];
    int wrong;
} seen_log;

static void seen_check(void *arg, const guts_id *id, int type, const void *data, size_t len)
{
    seen_log *l = arg;
    guts_id got;
    if (guts_obj_hash(type, data, len, &got) != GUTS_OK || guts_id_cmp(&got, id) != 0) l->wrong++;
    for (size_t i = 0; i < l->n; i++)
        if (guts_id_cmp(&l->recs[i].id, id) == 0) l->told[i]++;
}

/* n versions of a 16 KiB text in a, as records (bufs to free). Calls of
 * at least STORE_HASH_CALL_MIN (64 KiB) of such contents hand their
 * hashes to the thread. */
static char *hasher_recs(guts_repo *a, guts_obj *objs, guts_rec *recs, void **bufs, int n,
                         uint64_t seed)
{
    char *v = rec_chain(a, objs, n, seed);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(guts_repo_rec_get(a, &objs[i].id, &recs[i], &bufs[i]), GUTS_OK);
    return v;
}

START_TEST(test_records_hashed_on_another_thread_are_told_once_after_their_check)
{
    /* A cache of 256 KiB: it lets go of contents the thread may still be
     * reading (ASan would see a free too early). */
    guts_data_set_cache_bytes(data, (size_t)256 << 10);
    enum { N = 48 };
    guts_repo *a = open_repo("o/ha");
    guts_obj objs[N];
    guts_rec recs[N];
    void *bufs[N];
    char *v = hasher_recs(a, objs, recs, bufs, N, 31);
    guts_repo_info ia;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    for (int grouped = 0; grouped < 2; grouped++) {
        guts_repo *b = open_repo(grouped ? "o/hb" : "o/hc");
        if (grouped) ck_assert_int_eq(guts_repo_group(b, GUTS_GROUP_BYTES), GUTS_OK);
        seen_log log = {.recs = recs, .n = N};
        guts_rec_seen seen = {seen_check, &log};
        uint8_t nobase[N] = {0};
        size_t added = 0, bad = 9;
        /* two calls: the thread is reused */
        ck_assert_int_eq(guts_repo_rec_put(b, recs, N / 2, nobase, &seen, &added, &bad), GUTS_OK);
        ck_assert_uint_eq(added, N / 2);
        ck_assert_int_eq(guts_repo_rec_put(b, recs + N / 2, N - N / 2, nobase, &seen, &added, &bad),
                         GUTS_OK);
        ck_assert_uint_eq(added, N - N / 2);
        ck_assert_int_eq(log.wrong, 0);
        for (int i = 0; i < N; i++)
            ck_assert_msg(log.told[i] == 1, "record %d told %d times", i, log.told[i]);
        ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
        guts_repo_info ib;
        ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
        ck_assert_uint_eq(ib.objects, N);
        ck_assert(guts_fp_eq(ia.fp, ib.fp));
        for (int i = 0; i < N; i++)
            check_get(b, &objs[i]);
        guts_repo_close(b);
    }
    for (int i = 0; i < N; i++)
        free(bufs[i]);
    guts_repo_close(a);
    free(v);
}
END_TEST

START_TEST(test_a_record_failing_on_the_hash_thread_fails_its_call_and_leaves_nothing)
{
    enum { N = 8, M = 12 };
    guts_repo *a = open_repo("o/hfa");
    guts_obj objs[N], pad[M];
    guts_rec recs[N], precs[M + 1];
    void *bufs[N], *pbufs[M];
    char *v = hasher_recs(a, objs, recs, bufs, N, 41);
    char *pv = hasher_recs(a, pad, precs, pbufs, M, 43);
    /* After M good records (192 KiB: the thread hashes them), a delta that
     * decodes well but names the chain's first object: the thread finds
     * it. Its content, cached under that id, must not stay there: the
     * chain's next delta would be decoded against it. */
    precs[M] = precs[M - 1];
    precs[M].id = objs[0].id;
    for (int grouped = 0; grouped < 2; grouped++) {
        guts_repo *b = open_repo(grouped ? "o/hfb" : "o/hfc");
        if (grouped) ck_assert_int_eq(guts_repo_group(b, GUTS_GROUP_BYTES), GUTS_OK);
        seen_log log = {.recs = precs, .n = M + 1};
        guts_rec_seen seen = {seen_check, &log};
        uint8_t nobase[M + 1] = {0};
        size_t added = 9, bad = 0;
        ck_assert_int_eq(guts_repo_rec_put(b, precs, M + 1, nobase, &seen, &added, &bad),
                         GUTS_EHASH);
        ck_assert_uint_eq(bad, M);
        ck_assert_int_eq(log.told[M], 0); /* never told of what failed */
        ck_assert_int_eq(log.wrong, 0);
        ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
        ck_assert_uint_eq(objects_of(b), 0);
        ck_assert_int_eq(guts_repo_has(b, &pad[0].id), 0);
        /* the good chain after it: decoded against its real first version */
        ck_assert_int_eq(guts_repo_rec_put(b, recs, N, nobase, NULL, &added, &bad), GUTS_OK);
        ck_assert_uint_eq(added, N);
        ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
        for (int i = 0; i < N; i++) {
            check_get(b, &objs[i]);
            ck_assert_int_eq(guts_repo_verify(b, &objs[i].id), GUTS_OK);
        }
        guts_repo_close(b);
    }
    for (int i = 0; i < N; i++)
        free(bufs[i]);
    for (int i = 0; i < M; i++)
        free(pbufs[i]);
    guts_repo_close(a);
    free(v);
    free(pv);
}
END_TEST

/* ---- grouped puts (guts_repo_group) --------------------------------------- */

/* Two handles on key, *r grouping its puts, and a chain of n versions in
 * objs (rec_chain: the buffer returned, for the caller to free). */
static char *group_setup(const char *key, guts_repo **r, guts_repo **other, guts_obj *objs, int n,
                         uint64_t seed)
{
    *r = open_repo(key);
    *other = open_repo(key);
    ck_assert_int_eq(guts_repo_group(*r, GUTS_GROUP_BYTES), GUTS_OK);
    return rec_chain(NULL, objs, n, seed);
}

/* The insertion log of r holds n ids: each object once. */
static void check_logged(guts_repo *r, size_t n)
{
    guts_id recent[64];
    size_t got = 0;
    ck_assert_uint_lt(n, 64);
    ck_assert_int_eq(guts_repo_recent(r, 64, recent, &got), GUTS_OK);
    ck_assert_uint_eq(got, n);
}

/* The n records of objs as repository a stores them (bufs: to free). */
static void recs_of(guts_repo *a, const guts_obj *objs, guts_rec *recs, void **bufs, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(guts_repo_rec_get(a, &objs[i].id, &recs[i], &bufs[i]), GUTS_OK);
}

/* other holds the objects a holds, n of them, each logged once; with
 * same_bytes, in records of the same sizes. */
static void check_same_objects(guts_repo *a, guts_repo *other, size_t n, int same_bytes)
{
    guts_repo_info ia, ib;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(other, &ib), GUTS_OK);
    ck_assert_uint_eq(ib.objects, n);
    ck_assert(guts_fp_eq(ia.fp, ib.fp));
    if (same_bytes) ck_assert_uint_eq(ia.stored_bytes, ib.stored_bytes);
    check_logged(other, n);
}

START_TEST(test_grouped_puts_are_written_by_one_commit)
{
    enum { N = 12 };
    guts_repo *r, *other;
    guts_obj objs[N];
    char *v = group_setup("o/g", &r, &other, objs, N, 11);
    uint64_t txn0, txn1;
    ck_assert_int_eq(guts_repo_txnid(r, &txn0), GUTS_OK);
    /* Three batches, each chain link's base in an earlier one; one id twice. */
    put_ok(r, objs, 4, 4);
    put_ok(r, objs + 3, 5, 4);
    put_ok(r, objs + 8, 4, 4);
    ck_assert_int_eq(guts_repo_txnid(r, &txn1), GUTS_OK);
    ck_assert_uint_eq(txn1, txn0); /* nothing written yet */
    ck_assert_int_eq(guts_repo_has(r, &objs[N - 1].id), 1);
    check_get(r, &objs[N - 1]); /* decoded through the group's records */
    ck_assert_int_eq(guts_repo_has(other, &objs[0].id), 0);
    ck_assert_uint_eq(objects_of(other), 0);
    /* the group's ids by range: [from, to), NULL unbounded */
    guts_id lo = objs[0].id, hi = objs[0].id;
    for (int i = 1; i < N; i++) {
        if (guts_id_cmp(&objs[i].id, &lo) < 0) lo = objs[i].id;
        if (guts_id_cmp(&objs[i].id, &hi) > 0) hi = objs[i].id;
    }
    ck_assert_int_eq(guts_repo_group_holds(r, NULL, NULL), 1);
    ck_assert_int_eq(guts_repo_group_holds(r, &lo, &lo), 0);
    ck_assert_int_eq(guts_repo_group_holds(r, NULL, &lo), 0);
    ck_assert_int_eq(guts_repo_group_holds(r, &hi, NULL), 1);
    ck_assert_int_eq(guts_repo_group_holds(other, NULL, NULL), 0);
    ck_assert_int_eq(guts_repo_group(r, 0), GUTS_OK);
    ck_assert_int_eq(guts_repo_group_holds(r, NULL, NULL), 0);
    ck_assert_int_eq(guts_repo_txnid(r, &txn1), GUTS_OK);
    ck_assert_uint_eq(txn1, txn0 + 1);
    ck_assert_uint_eq(objects_of(other), N);
    guts_fp want = {0, 0};
    for (int i = 0; i < N; i++) {
        guts_fp_add(&want, guts_fp_of_id(&objs[i].id));
        check_get(other, &objs[i]);
        ck_assert_int_eq(guts_repo_verify(other, &objs[i].id), GUTS_OK);
        guts_rec rec;
        void *buf;
        ck_assert_int_eq(guts_repo_rec_get(other, &objs[i].id, &rec, &buf), GUTS_OK);
        ck_assert_uint_eq(rec.depth, (unsigned)i);
        free(buf);
    }
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(other, &info), GUTS_OK);
    ck_assert(guts_fp_eq(info.fp, want));
    check_logged(other, N);
    guts_repo_close(r);
    guts_repo_close(other);
    free(v);
}
END_TEST

/* Replicated records into a grouping handle: verified, held by the group
 * (deltas decoded against bases in it), written by one commit as a
 * transaction per batch writes them. */
static int by_obj_id(const void *a, const void *b)
{
    return guts_id_cmp(&((const guts_obj *)a)->id, &((const guts_obj *)b)->id);
}

START_TEST(test_grouped_puts_in_id_order_or_not_commit_every_object)
{
    enum { N = 40 };
    char texts[N][32];
    guts_obj objs[N];
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "object number %d\n", i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, texts[i], strlen(texts[i]));
    }
    qsort(objs, N, sizeof *objs, by_obj_id);
    /* in id order, then out of it (the last half backwards): the group's
     * bounds answer guts_repo_group_holds either way */
    for (int pass = 0; pass < 2; pass++) {
        guts_repo *r = open_repo(pass ? "o/gsu" : "o/gss");
        ck_assert_int_eq(guts_repo_group(r, GUTS_GROUP_BYTES), GUTS_OK);
        for (int i = 0; i < N; i++) {
            int k = pass && i >= N / 2 ? N - 1 - (i - N / 2) : i;
            put_ok(r, &objs[k], 1, 1);
        }
        ck_assert_int_eq(guts_repo_group_holds(r, &objs[N - 1].id, NULL), 1);
        ck_assert_int_eq(guts_repo_group_holds(r, NULL, &objs[0].id), 0);
        ck_assert_int_eq(guts_repo_group_commit(r), GUTS_OK);
        ck_assert_uint_eq(objects_of(r), N);
        for (int i = 0; i < N; i++)
            check_get(r, &objs[i]);
        guts_repo_close(r);
    }
}
END_TEST

/* A source a holding a chain of RV versions, and the records a stores them
 * in, put into b (grouping its puts) and read through other (a second
 * handle on b's key): group_setup, put_ok and recs_of in one. */
typedef struct {
    guts_repo *a, *b, *other;
    guts_obj objs[RV];
    guts_rec recs[RV];
    void *bufs[RV];
    char *v;
} rec_copy;

static void rec_copy_open(rec_copy *f, const char *key_a, const char *key_b, uint64_t seed)
{
    f->a = open_repo(key_a);
    f->v = group_setup(key_b, &f->b, &f->other, f->objs, RV, seed);
    put_ok(f->a, f->objs, RV, RV);
    recs_of(f->a, f->objs, f->recs, f->bufs, RV);
}

static void rec_copy_close(rec_copy *f)
{
    for (int i = 0; i < RV; i++)
        free(f->bufs[i]);
    guts_repo_close(f->a);
    guts_repo_close(f->b);
    guts_repo_close(f->other);
    free(f->v);
}

START_TEST(test_grouped_record_puts_are_written_by_one_commit)
{
    rec_copy f;
    rec_copy_open(&f, "o/gra", "o/grb", 19);
    guts_repo *a = f.a, *b = f.b, *other = f.other;
    const guts_obj *objs = f.objs;
    const guts_rec *recs = f.recs;
    uint64_t txn0, txn1;
    ck_assert_int_eq(guts_repo_txnid(b, &txn0), GUTS_OK);
    uint8_t nobase[RV] = {0};
    size_t added = 9, bad = 0;
    /* The last delta first: its base is not there yet. */
    ck_assert_int_eq(guts_repo_rec_put(b, recs + RV - 1, 1, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, 0);
    ck_assert_uint_eq(nobase[0], 1);
    ck_assert_int_eq(guts_repo_rec_put(b, recs, 3, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, 3);
    /* one again (skipped), and the rest, built on the group's records */
    ck_assert_int_eq(guts_repo_rec_put(b, recs + 2, RV - 2, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, RV - 3);
    for (int i = 0; i < RV - 2; i++)
        ck_assert_uint_eq(nobase[i], 0);
    ck_assert_int_eq(guts_repo_txnid(b, &txn1), GUTS_OK);
    ck_assert_uint_eq(txn1, txn0); /* nothing written yet */
    check_get(b, &objs[RV - 1]);
    ck_assert_int_eq(guts_repo_has(other, &objs[0].id), 0);
    /* A bad record fails the put and leaves the group as it was. */
    ck_assert_int_eq(guts_repo_has(b, &objs[0].id), 1);
    guts_rec two[2] = {recs[0], recs[1]};
    two[1].id.b[0] ^= 1; /* content no longer hashes to it */
    ck_assert_int_ne(guts_repo_rec_put(b, two, 2, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(bad, 1);
    ck_assert_int_eq(guts_repo_has(b, &two[1].id), 0);
    ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
    ck_assert_int_eq(guts_repo_txnid(b, &txn1), GUTS_OK);
    ck_assert_uint_eq(txn1, txn0 + 1);
    check_same_objects(a, other, RV, 1);
    for (int i = 0; i < RV; i++) {
        guts_rec rec;
        void *buf;
        ck_assert_int_eq(guts_repo_rec_get(other, &objs[i].id, &rec, &buf), GUTS_OK);
        ck_assert_uint_eq(rec.depth, recs[i].depth);
        ck_assert_int_eq(guts_repo_verify(other, &objs[i].id), GUTS_OK);
        free(buf);
    }
    rec_copy_close(&f);
}
END_TEST

/* A held delta put again is flagged in nobase: the grouped put looks its
 * id up in the group only. If it was stored meanwhile (here whole, by a
 * put through the same handle), the group's commit skips it: no error,
 * every object once, as the sender has them. */
START_TEST(test_a_held_delta_stored_meanwhile_is_skipped_by_the_group_commit)
{
    rec_copy f;
    rec_copy_open(&f, "o/gha", "o/ghb", 23);
    guts_repo *a = f.a, *b = f.b, *other = f.other;
    const guts_obj *objs = f.objs;
    const guts_rec *recs = f.recs;
    ck_assert_int_eq(recs[RV - 1].enc, GUTS_REC_DELTA);
    uint8_t nobase[RV] = {0};
    size_t added = 9, bad = 0;
    ck_assert_int_eq(guts_repo_rec_put(b, recs + RV - 1, 1, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(nobase[0], 1); /* held: its base is not there */
    put_ok(b, &objs[RV - 1], 1, 1);  /* stored whole meanwhile */
    ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
    memset(nobase, 0, sizeof nobase);
    nobase[RV - 1] = 1; /* put again, flagged */
    ck_assert_int_eq(guts_repo_rec_put(b, recs, RV, nobase, NULL, &added, &bad), GUTS_OK);
    ck_assert_uint_eq(added, RV); /* the flagged one counts: not searched for */
    for (int i = 0; i < RV; i++)
        ck_assert_uint_eq(nobase[i], 0);
    ck_assert_int_eq(guts_repo_group_commit(b), GUTS_OK);
    check_same_objects(a, other, RV, 0); /* one stored whole meanwhile */
    for (int i = 0; i < RV; i++) {
        check_get(other, &objs[i]);
        ck_assert_int_eq(guts_repo_verify(other, &objs[i].id), GUTS_OK);
    }
    rec_copy_close(&f);
}
END_TEST

START_TEST(test_grouped_commit_grows_the_map)
{
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_repo *r = open_repo("o/gbig");
    enum { N = 24, SZ = 128 * 1024 };
    guts_obj objs[N];
    uint8_t *bufs = random_blobs(objs, N, SZ, 300);
    /* A bound of 1 MiB: every second put of 512 KiB commits the group. */
    ck_assert_int_eq(guts_repo_group(r, 1 << 20), GUTS_OK);
    put_ok(r, objs, 4, 4);
    ck_assert_uint_eq(objects_of(r), 0);
    put_ok(r, objs + 4, 4, 4);
    ck_assert_uint_eq(objects_of(r), 8); /* 1 MiB into a 1 MiB map */
    for (int i = 8; i < N; i += 4)
        put_ok(r, objs + i, 4, 4);
    ck_assert_int_eq(guts_repo_group_commit(r), GUTS_OK);
    ck_assert_uint_eq(objects_of(r), N);
    for (int i = 0; i < N; i++)
        check_get(r, &objs[i]);
    ck_assert_int_eq(guts_repo_group(r, 0), GUTS_OK);
    guts_repo_close(r);
    free(bufs);
}
END_TEST

START_TEST(test_grouped_commit_skips_what_another_writer_stored)
{
    /* The group holds v0 <- v1 <- v2 (depths 0, 1, 2); meanwhile another
     * handle stores v1 whole. The commit keeps that record, skips the
     * group's, and stores v2 at depth 1 against it. */
    enum { N = 3 };
    guts_repo *r, *other;
    guts_obj objs[N];
    char *v = group_setup("o/gw", &r, &other, objs, N, 13);
    put_ok(r, objs, N, N);
    guts_obj whole = objs[1];
    whole.base = NULL;
    put_ok(other, &whole, 1, 1);
    ck_assert_int_eq(guts_repo_group(r, 0), GUTS_OK);
    ck_assert_uint_eq(objects_of(other), N);
    guts_rec rec;
    void *buf;
    ck_assert_int_eq(guts_repo_rec_get(other, &objs[1].id, &rec, &buf), GUTS_OK);
    ck_assert_int_ne(rec.enc, GUTS_REC_DELTA);
    free(buf);
    ck_assert_int_eq(guts_repo_rec_get(other, &objs[2].id, &rec, &buf), GUTS_OK);
    ck_assert_uint_eq(rec.depth, 1);
    free(buf);
    for (int i = 0; i < N; i++)
        check_get(other, &objs[i]);
    check_logged(other, N);
    guts_repo_close(r);
    guts_repo_close(other);
    free(v);
}
END_TEST

START_TEST(test_grouped_commit_past_the_depth_bound_fails_and_drops_the_group)
{
    /* The group holds v50 whole and v51 against it (depth 1); meanwhile
     * another handle stores v0..v50, v50 at depth 50: v51 would be at 51.
     * The commit fails, writes nothing; the put done again stores v51. */
    enum { N = 52 };
    guts_repo *r, *other;
    guts_obj objs[N];
    char *v = group_setup("o/gx", &r, &other, objs, N, 17);
    guts_obj tail[2] = {objs[N - 2], objs[N - 1]};
    tail[0].base = NULL;
    put_ok(r, tail, 2, 2);
    put_ok(other, objs, N - 1, N - 1);
    ck_assert_int_eq(guts_repo_group_commit(r), GUTS_EAGAIN);
    ck_assert_int_eq(guts_repo_has(other, &objs[N - 1].id), 0);
    ck_assert_int_eq(guts_repo_has(r, &objs[N - 1].id), 0); /* the group is gone */
    ck_assert_uint_eq(objects_of(other), N - 1);
    put_ok(r, &tail[1], 1, 1);
    ck_assert_int_eq(guts_repo_group(r, 0), GUTS_OK);
    check_get(other, &objs[N - 1]);
    ck_assert_uint_eq(objects_of(other), N);
    guts_repo_close(r);
    guts_repo_close(other);
    free(v);
}
END_TEST

START_TEST(test_group_not_committed_is_discarded_by_close)
{
    guts_repo *r = open_repo("o/gd");
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "grouped\n", 8);
    ck_assert_int_eq(guts_repo_group(r, GUTS_GROUP_BYTES), GUTS_OK);
    put_ok(r, &o, 1, 1);
    guts_repo_close(r);
    r = open_repo("o/gd");
    ck_assert_int_eq(guts_repo_has(r, &o.id), 0);
    ck_assert_uint_eq(objects_of(r), 0);
    /* Any other write through a grouping handle commits the group first. */
    guts_repo *other = open_repo("o/gd");
    ck_assert_int_eq(guts_repo_group(r, GUTS_GROUP_BYTES), GUTS_OK);
    put_ok(r, &o, 1, 1);
    guts_obj absent = mkobj(GUTS_OBJ_BLOB, "absent\n", 7);
    size_t dropped = 9;
    ck_assert_int_eq(guts_repo_drop(r, &absent.id, 1, &dropped), GUTS_OK);
    ck_assert_uint_eq(dropped, 0);
    ck_assert_int_eq(guts_repo_has(other, &o.id), 1);
    guts_repo_close(r);
    guts_repo_close(other);
}
END_TEST

START_TEST(test_record_past_the_depth_bound_is_stored_whole)
{
    /* b holds a chain of 51 (depths 0..50); a holds its last two and a next
     * version, v51 a delta of depth 2 there against v50. In b it would be
     * depth 51: stored on its own instead. */
    enum { N = 52 };
    guts_repo *a = open_repo("o/a"), *b = open_repo("o/b");
    guts_obj objs[N];
    char *v = rec_chain(NULL, objs, N, 7);
    put_ok(b, objs, N - 1, N - 1);
    guts_obj tail[3] = {objs[N - 3], objs[N - 2], objs[N - 1]};
    tail[0].base = NULL;
    tail[1].base = &tail[0].id;
    tail[2].base = &tail[1].id;
    put_ok(a, tail, 3, 3);
    guts_rec rec, got;
    void *buf, *buf2;
    ck_assert_int_eq(guts_repo_rec_get(a, &objs[N - 1].id, &rec, &buf), GUTS_OK);
    ck_assert_int_eq(rec.enc, GUTS_REC_DELTA);
    ck_assert_uint_eq(rec.depth, 2);
    ck_assert_int_eq(guts_repo_rec_get(b, &objs[N - 2].id, &got, &buf2), GUTS_OK);
    ck_assert_uint_eq(got.depth, 50);
    free(buf2);
    size_t added = 0;
    ck_assert_int_eq(guts_repo_rec_put(b, &rec, 1, NULL, NULL, &added, NULL), GUTS_OK);
    ck_assert_uint_eq(added, 1);
    ck_assert_int_eq(guts_repo_rec_get(b, &objs[N - 1].id, &got, &buf2), GUTS_OK);
    ck_assert_int_ne(got.enc, GUTS_REC_DELTA);
    free(buf2);
    free(buf);
    guts_repo_close(b);
    b = open_repo("o/b");
    check_get(b, &objs[N - 1]);
    guts_repo_close(a);
    guts_repo_close(b);
    free(v);
}
END_TEST

START_TEST(test_rec_decode_without_a_store_verifies_the_id)
{
    guts_repo *a = open_repo("o/a");
    guts_obj objs[2];
    char *v = rec_chain(a, objs, 2, 8);
    guts_rec rec;
    void *buf, *out = NULL;
    ck_assert_int_eq(guts_repo_rec_get(a, &objs[1].id, &rec, &buf), GUTS_OK);
    ck_assert_int_eq(guts_rec_decode(&rec, objs[0].data, objs[0].len, &out), GUTS_OK);
    ck_assert_mem_eq(out, objs[1].data, RSZ);
    free(out);
    /* against the wrong base: never the wrong content */
    char *other = malloc(RSZ);
    fill_text(other, RSZ, 99);
    ck_assert_int_eq(guts_rec_decode(&rec, other, RSZ, &out), GUTS_EHASH);
    free(other);
    free(buf);
    guts_repo_close(a);
    free(v);
}
END_TEST

START_TEST(test_a_delta_against_a_base_opening_with_zstds_dictionary_magic_decodes)
{
    /* zstd reads a dictionary that opens with its magic (37 a4 30 ec) as a
     * dictionary, not as raw content: such a base must still be a prefix. */
    guts_repo *a = open_repo("o/ma"), *b = open_repo("o/mb");
    char *v = malloc(2 * RSZ);
    fill_text(v, RSZ, 77);
    memcpy(v, "\x37\xa4\x30\xec", 4);
    memcpy(v + RSZ, v, RSZ);
    v[RSZ + 1000] = '#';
    guts_obj objs[2] = {mkobj(GUTS_OBJ_BLOB, v, RSZ), mkobj(GUTS_OBJ_BLOB, v + RSZ, RSZ)};
    objs[1].base = &objs[0].id;
    put_ok(a, objs, 2, 2);
    check_get(a, &objs[1]);
    guts_rec recs[2];
    void *bufs[2], *out = NULL;
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(guts_repo_rec_get(a, &objs[i].id, &recs[i], &bufs[i]), GUTS_OK);
    ck_assert_int_eq(recs[1].enc, GUTS_REC_DELTA);
    ck_assert_int_eq(guts_rec_decode(&recs[1], v, RSZ, &out), GUTS_OK);
    ck_assert_mem_eq(out, v + RSZ, RSZ);
    free(out);
    size_t added = 0;
    ck_assert_int_eq(guts_repo_rec_put(b, recs, 2, NULL, NULL, &added, NULL), GUTS_OK);
    ck_assert_uint_eq(added, 2);
    check_get(b, &objs[1]);
    ck_assert_int_eq(guts_repo_verify(b, &objs[1].id), GUTS_OK);
    for (int i = 0; i < 2; i++)
        free(bufs[i]);
    guts_repo_close(a);
    guts_repo_close(b);
    free(v);
}
END_TEST

START_TEST(test_get_inside_ids_callback_rehashes_everything)
{
    guts_repo *r = open_repo("o/fsck");
    enum { N = 40, SZ = 3000 };
    static char bufs[N][SZ];
    guts_obj objs[N];
    for (int i = 0; i < N; i++) {
        fill_text(bufs[i], SZ, 1);
        bufs[i][i * 7] = '!';
        objs[i] = mkobj(GUTS_OBJ_BLOB, bufs[i], SZ);
        objs[i].base = i ? &objs[i - 1].id : NULL;
    }
    put_ok(r, objs, N, N);
    guts_repo_close(r);
    fsck_ctx c = {.r = open_repo("o/fsck")};
    ck_assert_int_eq(guts_repo_ids(c.r, NULL, NULL, rehash_cb, &c), GUTS_OK);
    ck_assert_uint_eq(c.n, N);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(c.r, &info), GUTS_OK);
    ck_assert(guts_fp_eq(info.fp, c.fp));
    guts_repo_close(c.r);
}
END_TEST

START_TEST(test_reads_without_cache_decode_whole_chains)
{
    guts_data_set_cache_bytes(data, 0);
    guts_repo *r = open_repo("o/nocache");
    enum { V = 60, SZ = 1500 };
    static char v[V][SZ];
    guts_obj objs[V];
    for (int i = 0; i < V; i++) {
        fill_text(v[i], SZ, 21);
        snprintf(v[i] + 3 * i, 4, "%03d", i);
        objs[i] = mkobj(GUTS_OBJ_BLOB, v[i], SZ);
        objs[i].base = i ? &objs[i - 1].id : NULL;
    }
    put_ok(r, objs, V, V);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_lt(info.stored_bytes, (uint64_t)V * SZ / 4);
    for (int i = V - 1; i >= 0; i--)
        check_get(r, &objs[i]);
    guts_repo_close(r);
}
END_TEST

/* Overwrite the record of one object with raw bytes through LMDB. */
static void poke_record(const char *key, const guts_id *id, const void *val, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/repos/%s", tmpdir, key);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_open(env, path, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "objects", 0, &dbi), 0);
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v = {len, (void *)val};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Read the stored record of one object through LMDB (repo not open here). */
static size_t peek_record(const char *key, const guts_id *id, uint8_t *out, size_t cap)
{
    char path[256];
    snprintf(path, sizeof path, "%s/repos/%s", tmpdir, key);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "objects", 0, &dbi), 0);
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
    ck_assert_uint_le(v.mv_size, cap);
    memcpy(out, v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return v.mv_size;
}

START_TEST(test_damaged_records_never_read_as_wrong_content)
{
    enum { TXT = 3000, NOISE = 5000 };
    static char text[TXT], text2[TXT];
    static uint8_t noise[NOISE];
    fill_text(text, TXT, 8);
    memcpy(text2, text, TXT);
    memcpy(text2 + 1000, "CHANGED", 7);
    fill(noise, NOISE, 8);
    guts_obj objs[4] = {mkobj(GUTS_OBJ_BLOB, "hello\n", 6), mkobj(GUTS_OBJ_BLOB, text, TXT),
                        mkobj(GUTS_OBJ_BLOB, text2, TXT), mkobj(GUTS_OBJ_BLOB, noise, NOISE)};
    objs[2].base = &objs[1].id;
    guts_repo *r = open_repo("o/fuzz");
    put_ok(r, objs, 4, 4);
    guts_repo_close(r);
    static uint8_t orig[NOISE + 64], rec[NOISE + 64];
    uint64_t x = 12345;
    int corrupt_seen = 0;
    for (int i = 0; i < 4; i++) {
        size_t len = peek_record("o/fuzz", &objs[i].id, orig, sizeof orig);
        for (int m = 0; m < 40; m++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(rec, orig, len);
            size_t n = len;
            if (m % 8 == 7) {
                n = (size_t)(x >> 8) % len; /* truncated */
            } else {
                /* Any byte but the type (byte 0), which only fsck can check. */
                size_t pos = 1 + (size_t)(x >> 8) % (len - 1);
                rec[pos] ^= (uint8_t)(1u << (x % 8));
            }
            poke_record("o/fuzz", &objs[i].id, rec, n);
            r = open_repo("o/fuzz");
            int type = 0;
            void *d = NULL;
            size_t dlen = 0;
            int rc = guts_repo_get(r, &objs[i].id, &type, &d, &dlen);
            if (rc == GUTS_OK) {
                ck_assert_int_eq(type, objs[i].type);
                ck_assert_uint_eq(dlen, objs[i].len);
                ck_assert(memcmp(d, objs[i].data, dlen) == 0);
                free(d);
            } else {
                ck_assert_msg(rc == GUTS_ECORRUPT, "object %d mutation %d: %s", i, m,
                              guts_strerror(rc));
                corrupt_seen++;
            }
            guts_repo_close(r);
        }
        poke_record("o/fuzz", &objs[i].id, orig, len);
    }
    ck_assert_int_gt(corrupt_seen, 100);
}
END_TEST

START_TEST(test_malformed_records_read_as_corrupt)
{
    static char text[3000];
    fill_text(text, sizeof text, 5);
    guts_obj o = mkobj(GUTS_OBJ_BLOB, text, sizeof text);
    guts_repo *r = open_repo("o/bad");
    put_ok(r, &o, 1, 1);
    guts_repo_close(r);
    uint8_t rec[64] = {GUTS_OBJ_BLOB, 0};
    static const struct {
        const char *what;
        uint8_t type, enc;
        uint64_t size;
        size_t len;
    } cases[] = {
        {"short header", 3, 0, 0, 5},
        {"bad type", 9, 0, 4, 14},
        {"bad encoding", 3, 7, 4, 14},
        {"raw size mismatch", 3, 0, 5, 14},
        {"zstd garbage", 3, 1, 3000, 30},
        {"delta without base", 3, 2, 3000, 40},
        {"huge size", 3, 1, (uint64_t)1 << 40, 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(rec, 0x11, sizeof rec);
        rec[0] = cases[i].type;
        rec[1] = cases[i].enc;
        for (int b = 0; b < 8; b++)
            rec[2 + b] = (uint8_t)(cases[i].size >> (56 - 8 * b));
        rec[30] = 1; /* depth for the delta case */
        poke_record("o/bad", &o.id, rec, cases[i].len);
        r = open_repo("o/bad");
        int type;
        void *d = NULL;
        size_t len;
        ck_assert_msg(guts_repo_get(r, &o.id, &type, &d, &len) == GUTS_ECORRUPT, "%s",
                      cases[i].what);
        ck_assert_ptr_null(d);
        guts_repo_close(r);
    }
}
END_TEST

/* ---- refs ---------------------------------------------------------------- */

static guts_ref mkref(const char *name, const char *target_hex, const char *symref, uint64_t clock,
                      uint8_t writer)
{
    guts_ref f;
    memset(&f, 0, sizeof f);
    snprintf(f.name, sizeof f.name, "%s", name);
    if (target_hex)
        ck_assert_int_eq(guts_id_from_hex(target_hex, strlen(target_hex), &f.target), GUTS_OK);
    if (symref) snprintf(f.symref, sizeof f.symref, "%s", symref);
    f.clock = clock;
    memset(f.writer.b, writer, sizeof f.writer.b);
    return f;
}

#define ID_A "ce013625030ba8dba906f756967f9e9ca394464a"
#define ID_B "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"

static int count_refs(const guts_ref *ref, void *ctx)
{
    (void)ref;
    (*(int *)ctx)++;
    return 0;
}

/* Bytes of key's data.mdb in the test's data dir. */
static off_t env_file_size(const char *key)
{
    char path[256];
    snprintf(path, sizeof path, "%s/repos/%s/data.mdb", tmpdir, key);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

/* The same ref written n times through r, the file size after each write
 * compared with the one before: how many writes grew the file. */
static int writes_that_grow(guts_repo *r, const char *key, uint64_t clock0, int n)
{
    int grew = 0;
    off_t last = env_file_size(key);
    for (int i = 0; i < n; i++) {
        guts_ref ref = mkref("refs/heads/main", i % 2 ? ID_A : ID_B, NULL, clock0 + (uint64_t)i, 1);
        ck_assert_int_eq(guts_repo_refs_put(r, &ref, 1), GUTS_OK);
        off_t now = env_file_size(key);
        grew += now > last;
        last = now;
    }
    return grew;
}

/* The path of key's unflushed mark in the test's data dir. */
static void mark_path(const char *key, char *path, size_t len)
{
    snprintf(path, len, "%s/repos/%s/unflushed", tmpdir, key);
}

static int mark_exists(const char *key)
{
    char path[256];
    mark_path(key, path, sizeof path);
    return access(path, F_OK) == 0;
}

/* Write key's mark by hand, as process pid of another boot (boot not
 * NULL) or of this one would have left it. */
static void mark_put(const char *key, const char *boot, long pid)
{
    char path[256], id[64] = "";
    mark_path(key, path, sizeof path);
    if (!boot) {
        FILE *b = fopen("/proc/sys/kernel/random/boot_id", "r");
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_nonnull(fgets(id, sizeof id, b));
        fclose(b);
        id[strcspn(id, "\n")] = 0;
        boot = id;
    }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s %ld\n", boot, pid);
    fclose(f);
}

/* A replica made GUTS_REPO_NOSYNC commits without flushes, carrying its
 * unflushed mark on the disk from its creation until
 * guts_repo_sync_on(); its commits reuse pages as any env's do (the
 * file does not grow with each), and a flush alone ends nothing. */
START_TEST(test_nosync_replica_is_marked_until_its_flush)
{
    const char *key = "o/nosync";
    guts_repo *r;
    ck_assert_int_eq(guts_repo_open(data, key, GUTS_REPO_CREATE | GUTS_REPO_NOSYNC, &r), GUTS_OK);
    ck_assert_int_eq(guts_repo_is_nosync(r), 1);
    ck_assert(mark_exists(key));
    ck_assert_int_le(writes_that_grow(r, key, 1, 20), 5);
    ck_assert_int_eq(guts_repo_sync(r), GUTS_OK);
    ck_assert_int_eq(guts_repo_is_nosync(r), 1); /* a flush alone changes nothing */
    ck_assert(mark_exists(key));
    ck_assert_int_eq(guts_repo_sync_on(r), GUTS_OK);
    ck_assert_int_eq(guts_repo_is_nosync(r), 0);
    ck_assert(!mark_exists(key));
    ck_assert_int_le(writes_that_grow(r, key, 21, 20), 5);
    guts_repo_close(r);
}
END_TEST

/* A mark of another boot: a system crash or restart came while the env
 * committed without flushes, so its tree may be torn: the env is damage
 * to every open (the node sets it aside and pulls it again). A mark of
 * this boot whose process runs: its first copy goes on, the mark stays.
 * One whose process is gone: only a process died, the kernel holds its
 * writes; the next open flushes the env and clears the mark. */
START_TEST(test_unflushed_mark_of_another_boot_is_damage)
{
    const char *key = "o/marked";
    guts_repo *r = open_repo(key);
    guts_repo_close(r);
    mark_put(key, "00000000-0000-0000-0000-000000000000", (long)getpid());
    ck_assert_int_eq(guts_repo_open(data, key, 0, &r), GUTS_EDAMAGED);
    ck_assert_ptr_nonnull(strstr(guts_store_errmsg(), "system stopped"));
    mark_put(key, NULL, (long)getppid());
    ck_assert_int_eq(guts_repo_open(data, key, 0, &r), GUTS_OK);
    guts_repo_close(r);
    ck_assert(mark_exists(key));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) _exit(0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    mark_put(key, NULL, (long)pid);
    ck_assert_int_eq(guts_repo_open(data, key, 0, &r), GUTS_OK);
    ck_assert(!mark_exists(key));
    guts_repo_close(r);
}
END_TEST

/* replica_writes: one more ref write of the replica, step i of a wait. */
static void replica_writes(void *ctx, int i)
{
    guts_ref ref = mkref("refs/heads/main", i % 2 ? ID_A : ID_B, NULL, 200 + (uint64_t)i, 1);
    ck_assert_int_eq(guts_repo_refs_put(ctx, &ref, 1), GUTS_OK);
}

/* A user's write into a replica whose first copy commits without flushes
 * (an import or a push: another process) returns only once the mark is
 * gone: the replica's next commit sees a commit not its own, flushes and
 * ends its mode, so nothing it writes later lies unflushed over the
 * user's data, and a system crash then sets nothing aside. */
START_TEST(test_user_write_into_unflushed_replica_is_durable)
{
    const char *key = "o/shared";
    guts_repo *rep;
    ck_assert_int_eq(guts_repo_open(data, key, GUTS_REPO_CREATE | GUTS_REPO_NOSYNC, &rep), GUTS_OK);
    ck_assert_int_ge(writes_that_grow(rep, key, 1, 3), 0);
    ck_assert(mark_exists(key));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        guts_data *other;
        guts_repo *user;
        guts_ref ref = mkref("refs/heads/user", ID_A, NULL, 100, 1);
        int rc = guts_data_open(tmpdir, 0, &other);
        if (rc == GUTS_OK) rc = guts_repo_open(other, key, 0, &user);
        if (rc == GUTS_OK) rc = guts_repo_is_nosync(user) ? 99 : guts_repo_refs_put(user, &ref, 1);
        _exit(rc == GUTS_OK && !mark_exists(key) ? 0 : 1);
    }
    /* the replica goes on writing, bounded: 10 s */
    ck_assert(tu_child_ok(pid, replica_writes, rep));
    ck_assert_int_eq(guts_repo_is_nosync(rep), 0); /* the user's commit ended it */
    ck_assert(!mark_exists(key));
    guts_repo_close(rep);
}
END_TEST

/* Only a new env commits without flushes: one that exists (it may hold
 * what a user imported) flushes every commit whatever the flag asks. */
START_TEST(test_nosync_is_ignored_for_an_existing_env)
{
    guts_repo *r = open_repo("o/old");
    guts_repo_close(r);
    ck_assert_int_eq(guts_repo_open(data, "o/old", GUTS_REPO_CREATE | GUTS_REPO_NOSYNC, &r),
                     GUTS_OK);
    ck_assert_int_eq(guts_repo_is_nosync(r), 0);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_refs_put_get_and_tombstone)
{
    guts_repo *r = open_repo("o/refs");
    guts_ref refs[] = {mkref("refs/heads/main", ID_A, NULL, 1, 1),
                       mkref("refs/tags/v1", ID_B, NULL, 2, 1),
                       mkref("HEAD", NULL, "refs/heads/main", 3, 1)};
    ck_assert_int_eq(guts_repo_refs_put(r, refs, 3), GUTS_OK);
    guts_ref got;
    ck_assert_int_eq(guts_repo_ref_get(r, "refs/heads/main", &got), GUTS_OK);
    ck_assert_int_eq(guts_id_cmp(&got.target, &refs[0].target), 0);
    ck_assert_uint_eq(got.clock, 1);
    ck_assert_int_eq(guts_repo_ref_get(r, "HEAD", &got), GUTS_OK);
    ck_assert_str_eq(got.symref, "refs/heads/main");
    ck_assert(guts_id_is_zero(&got.target));
    ck_assert_int_eq(guts_repo_ref_get(r, "refs/heads/nope", &got), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_repo_ref_get(r, "bad name", &got), GUTS_EINVAL);
    /* Delete the tag: a tombstone with its clock and writer. */
    guts_ref del = mkref("refs/tags/v1", NULL, NULL, 4, 2);
    ck_assert_int_eq(guts_repo_refs_put(r, &del, 1), GUTS_OK);
    ck_assert_int_eq(guts_repo_ref_get(r, "refs/tags/v1", &got), GUTS_OK);
    ck_assert(guts_id_is_zero(&got.target));
    ck_assert_uint_eq(got.clock, 4);
    ck_assert_uint_eq(got.writer.b[0], 2);
    int live = 0, all = 0;
    ck_assert_int_eq(guts_repo_refs(r, 0, count_refs, &live), GUTS_OK);
    ck_assert_int_eq(guts_repo_refs(r, 1, count_refs, &all), GUTS_OK);
    ck_assert_int_eq(live, 2);
    ck_assert_int_eq(all, 3);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.refs, 2);
    ck_assert_uint_eq(info.tombstones, 1);
    ck_assert_uint_eq(info.clock, 4);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_refs_put_rejects_bad_names_and_symrefs)
{
    guts_repo *r = open_repo("o/refs");
    guts_ref bad[] = {mkref("refs/heads/a..b", ID_A, NULL, 1, 1),
                      mkref("refs/heads/x", NULL, "refs/heads/main", 1, 1),
                      mkref("HEAD", NULL, "refs/heads/..", 1, 1),
                      mkref("HEAD", NULL, "HEAD", 1, 1)};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_int_eq(guts_repo_refs_put(r, &bad[i], 1), GUTS_EINVAL);
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.refs + info.tombstones, 0);
    guts_repo_close(r);
}
END_TEST

static int sum_terms(const guts_ref *ref, void *ctx)
{
    guts_fp_add(ctx, guts_ref_digest_term(ref));
    return 0;
}

START_TEST(test_refs_digest_independent_of_order_and_history)
{
    guts_repo *a = open_repo("o/a");
    guts_repo *b = open_repo("o/b");
    guts_ref r1 = mkref("refs/heads/main", ID_A, NULL, 1, 1);
    guts_ref r2 = mkref("refs/heads/dev", ID_B, NULL, 2, 1);
    guts_ref r3 = mkref("refs/heads/main", ID_B, NULL, 3, 2); /* overwrites r1 */
    guts_ref r4 = mkref("refs/heads/gone", ID_B, NULL, 4, 1);
    guts_ref r5 = mkref("refs/heads/gone", NULL, NULL, 5, 1); /* deletes r4 */
    guts_ref seq_a[] = {r1, r2, r3, r4, r5};
    ck_assert_int_eq(guts_repo_refs_put(a, seq_a, 5), GUTS_OK);
    /* b reaches the same records by another path, one txn each. */
    guts_ref seq_b[] = {r5, r3, r2};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(guts_repo_refs_put(b, &seq_b[i], 1), GUTS_OK);
    guts_repo_info ia, ib;
    ck_assert_int_eq(guts_repo_info_get(a, &ia), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
    ck_assert(guts_fp_eq(ia.refs_digest, ib.refs_digest));
    guts_fp sum = {0, 0};
    ck_assert_int_eq(guts_repo_refs(a, 1, sum_terms, &sum), GUTS_OK);
    ck_assert(guts_fp_eq(sum, ia.refs_digest));
    /* A different clock on one record changes the digest. */
    guts_ref r2b = r2;
    r2b.clock = 9;
    ck_assert_int_eq(guts_repo_refs_put(b, &r2b, 1), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(b, &ib), GUTS_OK);
    ck_assert(!guts_fp_eq(ia.refs_digest, ib.refs_digest));
    guts_repo_close(a);
    guts_repo_close(b);
}
END_TEST

/* ---- persistence and other processes ------------------------------------- */


/* Marks of one source, collected by name into a fixed table. */
typedef struct marks_seen {
    guts_import_mark m[4];
    int n;
} marks_seen;

static int collect_marks(const guts_import_mark *m, void *ctx)
{
    marks_seen *s = ctx;
    ck_assert_int_lt(s->n, 4);
    s->m[s->n++] = *m;
    return 0;
}

static guts_import_mark mkmark(const char *name, uint8_t target, uint64_t clock, int forget)
{
    guts_import_mark m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    memset(m.target.b, target, GUTS_ID_LEN);
    m.clock = clock;
    m.writer.b[0] = 7;
    m.forget = forget;
    return m;
}

START_TEST(test_import_marks_are_per_source_local_and_written_with_the_refs_they_decided_on)
{
    guts_repo *r = open_repo("o/marks");
    const uint8_t one[GUTS_IMPORT_SRC_LEN] = {1}, two[GUTS_IMPORT_SRC_LEN] = {2};
    guts_ref ref = mkref("refs/heads/main", ID_A, NULL, 5, 7);
    guts_import_mark m[] = {mkmark("refs/heads/main", 0xaa, 5, 0), mkmark("HEAD", 0, 6, 0)};
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    guts_fp digest = info.refs_digest, stale = digest;
    ck_assert_int_eq(guts_repo_import_put(r, one, "/src/one", &digest, &ref, 1, m, 2), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert(guts_fp_eq(digest, info.refs_digest)); /* what the next batch expects */
    ck_assert(!guts_fp_eq(digest, stale));
    /* Decided on refs that changed since: nothing written. */
    guts_ref later = mkref("refs/heads/late", ID_B, NULL, 6, 7);
    ck_assert_int_eq(guts_repo_import_put(r, two, "/src/two", &stale, &later, 1, m, 1),
                     GUTS_ECONFLICT);
    ck_assert_int_eq(guts_repo_ref_get(r, "refs/heads/late", &(guts_ref){0}), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_repo_import_put(r, two, "/src/two", &digest, NULL, 0, m, 1), GUTS_OK);
    guts_ref got;
    ck_assert_int_eq(guts_repo_ref_get(r, "refs/heads/main", &got), GUTS_OK);
    ck_assert_uint_eq(got.clock, 5);
    marks_seen s1 = {0}, s2 = {0};
    ck_assert_int_eq(guts_repo_import_marks(r, one, collect_marks, &s1), GUTS_OK);
    ck_assert_int_eq(guts_repo_import_marks(r, two, collect_marks, &s2), GUTS_OK);
    ck_assert_int_eq(s1.n, 2);
    ck_assert_int_eq(s2.n, 1);
    for (int i = 0; i < s1.n; i++) {
        int main = strcmp(s1.m[i].name, "refs/heads/main") == 0;
        ck_assert(main || strcmp(s1.m[i].name, "HEAD") == 0);
        ck_assert_uint_eq(s1.m[i].clock, main ? 5 : 6);
        ck_assert_uint_eq(s1.m[i].target.b[0], main ? 0xaa : 0);
        ck_assert_uint_eq(s1.m[i].writer.b[0], 7);
    }
    /* Marks are no ref state: a marks-only write leaves refs, the refs
     * digest and the clock as they were. */
    guts_repo_info before, after;
    ck_assert_int_eq(guts_repo_info_get(r, &before), GUTS_OK);
    guts_import_mark forget = mkmark("refs/heads/main", 0, 0, 1);
    ck_assert_int_eq(guts_repo_import_put(r, one, "/src/one", &digest, NULL, 0, &forget, 1),
                     GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
    ck_assert(guts_fp_eq(before.refs_digest, after.refs_digest));
    ck_assert_uint_eq(before.refs + before.tombstones, after.refs + after.tombstones);
    ck_assert_uint_eq(before.clock, after.clock);
    s1.n = 0;
    ck_assert_int_eq(guts_repo_import_marks(r, one, collect_marks, &s1), GUTS_OK);
    ck_assert_int_eq(s1.n, 1);
    ck_assert_str_eq(s1.m[0].name, "HEAD");
    /* Bad names are refused before anything is written. */
    guts_import_mark bad = mkmark("refs/heads/a..b", 1, 1, 0);
    ck_assert_int_eq(guts_repo_import_put(r, one, "/src/one", &digest, NULL, 0, &bad, 1),
                     GUTS_EINVAL);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_read_hold_is_one_snapshot_until_released)
{
    guts_repo *r = open_repo("o/hold");
    guts_obj a = mkobj(GUTS_OBJ_BLOB, "held a\n", 7), b = mkobj(GUTS_OBJ_BLOB, "held b\n", 7);
    put_ok(r, &a, 1, 1);
    ck_assert_int_eq(guts_repo_read_hold(r), GUTS_OK);
    ck_assert_int_eq(guts_repo_read_hold(r), GUTS_EINVAL); /* one at a time */
    put_ok(r, &b, 1, 1);
    ck_assert_int_eq(guts_repo_has(r, &a.id), 1);
    ck_assert_int_eq(guts_repo_has(r, &b.id), 0); /* written after the snapshot */
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, 1);
    guts_repo_read_release(r);
    ck_assert_int_eq(guts_repo_has(r, &b.id), 1);
    guts_repo_read_release(r); /* nothing held: nothing happens */
    ck_assert_int_eq(guts_repo_read_hold(r), GUTS_OK);
    guts_repo_close(r); /* closing releases */
}
END_TEST

START_TEST(test_reopen_keeps_objects_refs_and_counters)
{
    guts_repo *r = open_repo("o/p");
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "persist\n", 8);
    put_ok(r, &o, 1, 1);
    guts_ref f = mkref("refs/heads/main", ID_A, NULL, 7, 3);
    ck_assert_int_eq(guts_repo_refs_put(r, &f, 1), GUTS_OK);
    guts_repo_info before, after;
    ck_assert_int_eq(guts_repo_info_get(r, &before), GUTS_OK);
    guts_repo_close(r);
    guts_data_close(data);
    ck_assert_int_eq(guts_data_open(tmpdir, GUTS_DATA_CREATE, &data), GUTS_OK);
    ck_assert_int_eq(guts_repo_open(data, "o/p", 0, &r), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
    ck_assert_uint_eq(after.objects, 1);
    ck_assert_uint_eq(after.refs, 1);
    ck_assert_uint_eq(after.clock, 7);
    ck_assert(guts_fp_eq(after.fp, before.fp));
    ck_assert(guts_fp_eq(after.refs_digest, before.refs_digest));
    ck_assert_uint_eq(after.stored_bytes, before.stored_bytes);
    check_get(r, &o);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_two_handles_in_one_process_share_the_env)
{
    guts_repo *a = open_repo("o/s");
    guts_repo *b = open_repo("o/s");
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "shared\n", 7);
    put_ok(a, &o, 1, 1);
    ck_assert_int_eq(guts_repo_has(b, &o.id), 1);
    guts_repo_close(a);
    check_get(b, &o);
    guts_repo_close(b);
}
END_TEST

START_TEST(test_other_process_writes_seen_via_txnid)
{
    guts_repo *r = open_repo("o/mp");
    uint64_t t0;
    ck_assert_int_eq(guts_repo_txnid(r, &t0), GUTS_OK);
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "from the child\n", 15);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A fresh handle on the same data dir, as another process would. */
        guts_data *cd;
        guts_repo *cr;
        int ok = guts_data_open(tmpdir, GUTS_DATA_CREATE, &cd) == GUTS_OK &&
                 guts_repo_open(cd, "o/mp", 0, &cr) == GUTS_OK;
        size_t added = 0;
        ok = ok && guts_repo_put(cr, &o, 1, &added, NULL) == GUTS_OK && added == 1;
        _exit(ok ? 0 : 1);
    }
    /* Poll with a deadline rather than sleeping a fixed time. */
    uint64_t t1 = t0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        ck_assert_int_eq(guts_repo_txnid(r, &t1), GUTS_OK);
        if (t1 > t0) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        ck_assert_int_lt(now.tv_sec - start.tv_sec, 30);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(guts_repo_has(r, &o.id), 1);
    check_get(r, &o);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_other_process_map_growth_is_adopted)
{
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_repo *r = open_repo("o/grow");
    guts_obj small = mkobj(GUTS_OBJ_BLOB, "small\n", 6);
    put_ok(r, &small, 1, 1);
    enum { SZ = 3 << 20 };
    uint8_t *big = malloc(SZ);
    fill(big, SZ, 4242);
    guts_obj o = mkobj(GUTS_OBJ_BLOB, big, SZ);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        guts_data *cd;
        guts_repo *cr;
        int ok = guts_data_open(tmpdir, GUTS_DATA_CREATE, &cd) == GUTS_OK &&
                 guts_repo_open(cd, "o/grow", 0, &cr) == GUTS_OK &&
                 guts_repo_put(cr, &o, 1, NULL, NULL) == GUTS_OK;
        _exit(ok ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Our map is still 1 MiB: reading and writing must adopt the new size. */
    check_get(r, &o);
    guts_obj more = mkobj(GUTS_OBJ_BLOB, "more\n", 5);
    put_ok(r, &more, 1, 1);
    guts_repo_close(r);
    free(big);
}
END_TEST

START_TEST(test_repo_handle_outlives_its_data_handle)
{
    guts_repo *r = open_repo("o/late");
    guts_data_close(data);
    data = NULL;
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "late\n", 5);
    put_ok(r, &o, 1, 1);
    check_get(r, &o);
    guts_repo_close(r);
}
END_TEST

static int die_in_walk(const guts_id *id, void *ctx)
{
    (void)id;
    (void)ctx;
    _exit(0); /* killed while its read txn holds a reader slot */
}

static int reader_listed(const char *key, pid_t pid)
{
    char cmd[256], line[256], pidstr[32];
    snprintf(cmd, sizeof cmd, "mdb_stat -r %s/repos/%s", tmpdir, key);
    snprintf(pidstr, sizeof pidstr, " %d ", (int)pid);
    int seen = 0;
    FILE *p = popen(cmd, "r"); /* -r lists readers without clearing any */
    ck_assert_ptr_nonnull(p);
    while (fgets(line, sizeof line, p))
        seen |= strstr(line, pidstr) != NULL;
    pclose(p);
    return seen;
}

/* Fork a process that opens the repository and then runs walk (NULL: just
 * open and close); returns its pid after it has exited with status 0. */
static pid_t run_child(const char *key, int (*walk)(const guts_id *, void *))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        guts_data *cd;
        guts_repo *cr;
        if (guts_data_open(tmpdir, GUTS_DATA_CREATE, &cd) != GUTS_OK ||
            guts_repo_open(cd, key, 0, &cr) != GUTS_OK)
            _exit(1);
        if (walk) guts_repo_ids(cr, NULL, NULL, walk, NULL);
        guts_repo_close(cr);
        guts_data_close(cd);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return pid;
}

START_TEST(test_reader_slot_of_dead_process_is_cleared_on_open)
{
    if (access("/usr/bin/mdb_stat", X_OK) != 0) return; /* lmdb-utils absent */
    /* This process keeps the env open, like a running node, so LMDB does
     * not reset the reader table as it would for a first opener. */
    guts_repo *r = open_repo("o/stale");
    guts_obj o = mkobj(GUTS_OBJ_BLOB, "x\n", 2);
    put_ok(r, &o, 1, 1);
    pid_t dead = run_child("o/stale", die_in_walk);
    ck_assert_msg(reader_listed("o/stale", dead), "dead reader %d not in the table", (int)dead);
    run_child("o/stale", NULL); /* the next process to open clears it */
    ck_assert_msg(!reader_listed("o/stale", dead), "dead reader %d still listed", (int)dead);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_two_processes_writing_and_growing_at_once)
{
    enum { PER = 16, SZ = 256 << 10, KIDS = 2 };
    guts_data_set_initial_mapsize(data, 1 << 20);
    guts_repo_close(open_repo("o/race"));
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        ck_assert_int_ge(kids[k], 0);
        if (kids[k] == 0) {
            guts_data *cd;
            guts_repo *cr;
            if (guts_data_open(tmpdir, GUTS_DATA_CREATE, &cd) != GUTS_OK) _exit(1);
            guts_data_set_initial_mapsize(cd, 1 << 20);
            if (guts_repo_open(cd, "o/race", 0, &cr) != GUTS_OK) _exit(2);
            uint8_t *b = malloc(SZ);
            for (int i = 0; i < PER; i++) {
                fill(b, SZ, (uint64_t)(1000 * k + i));
                guts_obj o = {.type = GUTS_OBJ_BLOB, .data = b, .len = SZ};
                guts_obj_hash(o.type, b, SZ, &o.id);
                size_t added = 0;
                if (guts_repo_put(cr, &o, 1, &added, NULL) != GUTS_OK || added != 1) _exit(3);
            }
            guts_repo_close(cr);
            guts_data_close(cd);
            _exit(0);
        }
    }
    for (int k = 0; k < KIDS; k++) {
        int status;
        ck_assert_int_eq(waitpid(kids[k], &status, 0), kids[k]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d: status %d", k,
                      status);
    }
    guts_repo *r = open_repo("o/race");
    guts_repo_info info;
    ck_assert_int_eq(guts_repo_info_get(r, &info), GUTS_OK);
    ck_assert_uint_eq(info.objects, KIDS * PER);
    guts_fp want = {0, 0};
    uint8_t *b = malloc(SZ);
    for (int k = 0; k < KIDS; k++) {
        for (int i = 0; i < PER; i++) {
            fill(b, SZ, (uint64_t)(1000 * k + i));
            guts_obj o = mkobj(GUTS_OBJ_BLOB, b, SZ);
            check_get(r, &o);
            guts_fp_add(&want, guts_fp_of_id(&o.id));
        }
    }
    ck_assert(guts_fp_eq(info.fp, want));
    free(b);
    guts_repo_close(r);
}
END_TEST

START_TEST(test_newer_schema_refused)
{
    guts_repo_close(open_repo("o/v"));
    char path[256];
    snprintf(path, sizeof path, "%s/repos/o/v", tmpdir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_open(env, path, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t v2[4] = {0, 0, 0, 3}; /* 2 is a store with large objects */
    MDB_val k = {6, "schema"}, v = {4, v2};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "o/v", 0, &r), GUTS_EVERSION);
    ck_assert_ptr_null(r);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *names = tcase_create("names");
    tcase_add_test(names, test_ids_match_git_for_known_objects);
    tcase_add_test(names, test_hex_parse_takes_exactly_40_hex_digits);
    tcase_add_test(names, test_tree_entries_read_modes_as_octal);
    tcase_add_test(names, test_malformed_tree_entries_are_rejected);
    tcase_add_test(names, test_commit_and_tag_links_are_parsed_strictly);
    tcase_add_test(names, test_fp_add_then_sub_carries_across_halves);
    tcase_add_test(names, test_bad_ref_names_rejected);
    suite_add_tcase(s, names);

    TCase *t = tcase_create("store");
    tcase_add_unchecked_fixture(t, base_setup, base_teardown);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_bad_repo_keys_rejected_and_nothing_created);
    tcase_add_test(t, test_created_env_is_renamed_into_place);
    tcase_add_test(t, test_node_id_is_made_once_and_incarnation_increments);
    tcase_add_test(t, test_repos_walk_of_empty_data_dir_calls_nothing);
    tcase_add_test(t, test_repos_walk_is_sorted_and_skips_non_repos);
    tcase_add_test(t, test_repos_walk_removes_envs_left_by_killed_makers);
    tcase_add_test(t, test_remove_deletes_env_and_empty_owner_dir);
    tcase_add_test(t, test_put_get_has_stat_roundtrip);
    tcase_add_test(t, test_duplicates_in_one_batch_are_stored_once);
    tcase_add_test(t, test_corrupted_object_rejected_and_nothing_stored);
    tcase_add_test(t, test_object_over_size_limit_rejected);
    tcase_add_test(t, test_ids_iterate_in_id_order_within_range);
    tcase_add_test(t, test_fingerprint_independent_of_insertion_order);
    tcase_add_test(t, test_map_grows_past_small_initial_size);
    tcase_add_test(t, test_map_that_cannot_grow_fails_full_and_stores_nothing);
    tcase_add_test(t, test_map_growth_under_an_open_read_is_refused_not_unsafe);
    tcase_add_test(t, test_delta_against_base_is_smaller_and_roundtrips);
    tcase_add_test(t, test_records_do_not_depend_on_batching_or_threads);
    tcase_add_test(t, test_base_hint_that_is_absent_or_later_is_ignored);
    tcase_add_test(t, test_git_delta_copies_are_checked_then_used);
    tcase_add_test(t, test_scanned_deltas_of_random_edits_roundtrip);
    tcase_add_test(t, test_delta_chain_depth_is_bounded);
    tcase_add_test(t, test_grouped_puts_are_written_by_one_commit);
    tcase_add_test(t, test_grouped_record_puts_are_written_by_one_commit);
    tcase_add_test(t, test_a_held_delta_stored_meanwhile_is_skipped_by_the_group_commit);
    tcase_add_test(t, test_grouped_puts_in_id_order_or_not_commit_every_object);
    tcase_add_test(t, test_grouped_commit_grows_the_map);
    tcase_add_test(t, test_grouped_commit_skips_what_another_writer_stored);
    tcase_add_test(t, test_grouped_commit_past_the_depth_bound_fails_and_drops_the_group);
    tcase_add_test(t, test_group_not_committed_is_discarded_by_close);
    tcase_add_test(t, test_reads_without_cache_decode_whole_chains);
    tcase_add_test(t, test_malformed_records_read_as_corrupt);
    tcase_add_test(t, test_damaged_records_never_read_as_wrong_content);
    tcase_add_test(t, test_large_similar_objects_delta_beyond_default_window);
    tcase_add_test(t, test_get_inside_ids_callback_rehashes_everything);
    tcase_add_test(t, test_refs_put_get_and_tombstone);
    tcase_add_test(t, test_nosync_replica_is_marked_until_its_flush);
    tcase_add_test(t, test_unflushed_mark_of_another_boot_is_damage);
    tcase_add_test(t, test_user_write_into_unflushed_replica_is_durable);
    tcase_add_test(t, test_nosync_is_ignored_for_an_existing_env);
    tcase_add_test(t, test_refs_put_rejects_bad_names_and_symrefs);
    tcase_add_test(t, test_refs_digest_independent_of_order_and_history);
    tcase_add_test(t, test_import_marks_are_per_source_local_and_written_with_the_refs_they_decided_on);
    tcase_add_test(t, test_read_hold_is_one_snapshot_until_released);
    tcase_add_test(t, test_reopen_keeps_objects_refs_and_counters);
    tcase_add_test(t, test_two_handles_in_one_process_share_the_env);
    tcase_add_test(t, test_other_process_writes_seen_via_txnid);
    tcase_add_test(t, test_other_process_map_growth_is_adopted);
    tcase_add_test(t, test_repo_handle_outlives_its_data_handle);
    tcase_add_test(t, test_reader_slot_of_dead_process_is_cleared_on_open);
    tcase_add_test(t, test_two_processes_writing_and_growing_at_once);
    tcase_add_test(t, test_newer_schema_refused);
    tcase_add_test(t, test_records_copy_to_another_repo_as_stored);
    tcase_add_test(t, test_bad_records_are_rejected_and_nothing_stored);
    tcase_add_test(t, test_records_hashed_on_another_thread_are_told_once_after_their_check);
    tcase_add_test(t, test_a_record_failing_on_the_hash_thread_fails_its_call_and_leaves_nothing);
    tcase_add_test(t, test_record_past_the_depth_bound_is_stored_whole);
    tcase_add_test(t, test_rec_decode_without_a_store_verifies_the_id);
    tcase_add_test(t, test_a_delta_against_a_base_opening_with_zstds_dictionary_magic_decodes);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(store_suite(), CK_FORK_GETENV);
}
