/* test_store_damage.c - a damaged repository environment as a
 * specification (issue 13, item 2; issue 20, item 1): the file is checked
 * against its LMDB meta pages before it is mapped, a full check reads every
 * page in a child process, and a damaged env is refused with GUTS_EDAMAGED
 * and its cause, never with a signal and never silently re-initialised; it
 * can be set aside, keeping every file.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "guts/store.h"

#define STORE_TEST_NAME "damage"
#include "test_store_util.h"
#include "test_run.h"

/* LMDB 0.9's meta page on 64-bit: magic at 16, version at 20, page size at
 * 40, last page number at 136 (envcheck.c has the whole layout). */
#define META_MAGIC 16
#define META_VERSION 20
#define META_PSIZE 40
#define META_LASTPG 136
#define P_LEAF 0x02

/* A repository of n objects of about 3 KiB each (overflow pages and enough
 * leaf pages to damage), closed again; returns its data.mdb's path. */
static void make_repo(const char *key, int n, char *file, size_t len)
{
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, key, GUTS_REPO_CREATE, &r), GUTS_OK);
    for (int i = 0; i < n; i++) {
        char buf[3000];
        for (size_t k = 0; k < sizeof buf; k++)
            buf[k] = (char)((i * 131 + (int)k * 7) ^ (int)(k >> 3));
        guts_obj o = {.type = GUTS_OBJ_BLOB, .data = buf, .len = sizeof buf};
        ck_assert_int_eq(guts_obj_hash(o.type, o.data, o.len, &o.id), GUTS_OK);
        ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, NULL), GUTS_OK);
    }
    guts_repo_close(r);
    snprintf(file, len, "%s/repos/%s/data.mdb", tmpdir, key);
}

static off_t file_size(const char *file)
{
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    return st.st_size;
}

static void write_at(const char *file, off_t off, const void *b, size_t n)
{
    int fd = open(file, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, b, n, off), (ssize_t)n);
    close(fd);
}

/* Open key plainly: GUTS_EDAMAGED with a cause containing want. */
static void refused_as(const char *key, unsigned flags, const char *want)
{
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, key, flags, &r), GUTS_EDAMAGED);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(guts_store_errmsg(), want), "cause \"%s\" lacks \"%s\"",
                  guts_store_errmsg(), want);
}

static const uint32_t bad_u32 = 0x12345678;
static const uint64_t past_end = 1u << 30;

/* One way of damaging the meta pages or the file's length, and what the
 * refusal says. */
static const struct {
    const char *name;
    off_t truncate_to; /* -1: keep the length */
    off_t at;          /* where to write (page 0 + at, page 1 if at >= 4096) */
    const void *bytes;
    size_t n;
    const char *cause;
} meta_damage[] = {
    {"empty", 0, 0, NULL, 0, "data.mdb is empty"},
    {"shorter than a meta page", 100, 0, NULL, 0, "less than a meta page"},
    {"first magic", -1, META_MAGIC, &bad_u32, 4, "meta page 0 is not an LMDB meta page"},
    {"second magic", -1, 4096 + META_MAGIC, &bad_u32, 4, "meta page 1 is not an LMDB meta page"},
    {"version", -1, META_VERSION, &bad_u32, 4, "format version"},
    {"page size", -1, META_PSIZE, &bad_u32, 4, "page size"},
    {"last page past the end", -1, META_LASTPG, &past_end, 8, "names page"},
    {"last page past the end (second meta)", -1, 4096 + META_LASTPG, &past_end, 8, "names page"},
};

START_TEST(test_damaged_meta_pages_or_length_are_refused_before_mapping)
{
    char file[512];
    make_repo("o/m", 40, file, sizeof file);
    if (meta_damage[_i].truncate_to >= 0)
        ck_assert_int_eq(truncate(file, meta_damage[_i].truncate_to), 0);
    if (meta_damage[_i].n) {
        /* Both metas name the same last page only after a second commit:
         * damage the newer one by writing it into both. */
        write_at(file, meta_damage[_i].at, meta_damage[_i].bytes, meta_damage[_i].n);
        if (meta_damage[_i].at == META_LASTPG)
            write_at(file, 4096 + META_LASTPG, meta_damage[_i].bytes, meta_damage[_i].n);
        if (meta_damage[_i].at == 4096 + META_LASTPG)
            write_at(file, META_LASTPG, meta_damage[_i].bytes, meta_damage[_i].n);
    }
    off_t damaged = file_size(file);
    refused_as("o/m", 0, meta_damage[_i].cause);
    refused_as("o/m", GUTS_REPO_CREATE, meta_damage[_i].cause);
    /* Nothing was written: LMDB would have made an empty env of an empty file. */
    ck_assert_int_eq(file_size(file), damaged);
}
END_TEST

START_TEST(test_truncated_env_is_refused_with_its_length)
{
    char file[512];
    make_repo("o/t", 200, file, sizeof file);
    ck_assert_int_eq(truncate(file, file_size(file) / 2), 0);
    refused_as("o/t", 0, "names page");
}
END_TEST

/* Invert every leaf page's header (flags, lower and upper bounds): LMDB
 * aborts or faults on them. */
static void flip_leaves(const char *file)
{
    off_t size = file_size(file);
    int fd = open(file, O_RDWR);
    ck_assert_int_ge(fd, 0);
    int flipped = 0;
    for (off_t pg = 2; pg < size / 4096; pg++) {
        uint8_t h[8];
        ck_assert_int_eq(pread(fd, h, 8, pg * 4096 + 8), 8);
        if (!(h[2] & P_LEAF)) continue;
        for (int k = 0; k < 8; k++)
            h[k] ^= 0xff;
        ck_assert_int_eq(pwrite(fd, h, 8, pg * 4096 + 8), 8);
        flipped++;
    }
    close(fd);
    ck_assert_int_gt(flipped, 0);
}

/* Every leaf page's header inverted (flags, lower and upper bounds): LMDB
 * aborts or faults on them; the plain open does not read them, the full
 * check does, in a child, and this process lives on. */
START_TEST(test_verify_reads_every_page_in_a_child_and_survives_damage)
{
    char file[512];
    make_repo("o/l", 200, file, sizeof file);
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "o/l", GUTS_REPO_VERIFY, &r), GUTS_OK);
    guts_repo_close(r);
    flip_leaves(file);
    refused_as("o/l", GUTS_REPO_VERIFY, "");
    ck_assert_str_ne(guts_store_errmsg(), "");
}
END_TEST

/* What guts_repo_verify_many said of each key. */
typedef struct many_result {
    int calls[8];
    int rc[8];
    char why[8][700];
} many_result;

static void many_cb(size_t i, int rc, const char *why, void *ctx)
{
    many_result *m = ctx;
    ck_assert_uint_lt(i, 8);
    m->calls[i]++;
    m->rc[i] = rc;
    snprintf(m->why[i], sizeof m->why[i], "%s", why);
}

/* Many repositories in one child: each key gets its one result, in order,
 * and a damaged env in the middle (even one that kills the child) does not
 * keep the ones after it from being checked. */
START_TEST(test_verify_many_checks_each_key_once_past_damaged_ones)
{
    char file[512];
    make_repo("o/a", 3, file, sizeof file);
    make_repo("o/b", 200, file, sizeof file);
    flip_leaves(file);
    make_repo("o/c", 200, file, sizeof file);
    ck_assert_int_eq(truncate(file, file_size(file) / 2), 0);
    make_repo("o/d", 3, file, sizeof file);
    const char *keys[] = {"o/a", "o/b", "o/c", "../x", "o/absent", "o/d"};
    const int want[] = {GUTS_OK, GUTS_EDAMAGED, GUTS_EDAMAGED, GUTS_EINVAL, GUTS_EIO, GUTS_OK};
    many_result m;
    memset(&m, 0, sizeof m);
    ck_assert_int_eq(guts_repo_verify_many(data, keys, 6, many_cb, &m), GUTS_OK);
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(m.calls[i] == 1, "%s: %d results", keys[i], m.calls[i]);
        ck_assert_msg(m.rc[i] == want[i], "%s: %d (%s), want %d", keys[i], m.rc[i], m.why[i],
                      want[i]);
        ck_assert_int_eq(m.why[i][0] == 0, want[i] == GUTS_OK);
    }
    ck_assert_ptr_nonnull(strstr(m.why[2], "names page"));
    /* Nothing was changed: the healthy ones open, the damaged are refused. */
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "o/d", 0, &r), GUTS_OK);
    guts_repo_close(r);
    refused_as("o/b", GUTS_REPO_VERIFY, "");
    memset(&m, 0, sizeof m);
    ck_assert_int_eq(guts_repo_verify_many(data, keys, 0, many_cb, &m), GUTS_OK);
    ck_assert_int_eq(m.calls[0], 0);
}
END_TEST

START_TEST(test_env_missing_some_of_its_databases_is_damaged_not_recreated)
{
    char file[512], dir[512];
    make_repo("o/d", 3, file, sizeof file);
    snprintf(dir, sizeof dir, "%s/repos/o/d", tmpdir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "refs", 0, &dbi), 0);
    ck_assert_int_eq(mdb_drop(txn, dbi, 1), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    refused_as("o/d", GUTS_REPO_CREATE, "database refs is missing");
}
END_TEST

START_TEST(test_set_aside_moves_the_env_and_keeps_every_file)
{
    char file[512], to[1024], to2[1024], want[1024];
    make_repo("o/s", 5, file, sizeof file);
    off_t size = file_size(file);
    guts_repo *r = NULL;
    ck_assert_int_eq(guts_repo_open(data, "o/s", 0, &r), GUTS_OK);
    ck_assert_int_eq(guts_repo_set_aside(data, "o/s", "T1", to, sizeof to), GUTS_EAGAIN);
    guts_repo_close(r);
    ck_assert_int_eq(guts_repo_set_aside(data, "o/s", "T1", to, sizeof to), GUTS_OK);
    snprintf(want, sizeof want, "%s/damaged/o/s.T1", tmpdir);
    ck_assert_str_eq(to, want);
    snprintf(want, sizeof want, "%s/damaged/o/s.T1/data.mdb", tmpdir);
    ck_assert_int_eq(file_size(want), size);
    ck_assert_int_eq(guts_repo_open(data, "o/s", 0, &r), GUTS_ENOTFOUND);
    /* The key can be made afresh; a second copy set aside at the same
     * time gets its own name. */
    make_repo("o/s", 1, file, sizeof file);
    ck_assert_int_eq(guts_repo_set_aside(data, "o/s", "T1", to2, sizeof to2), GUTS_OK);
    snprintf(want, sizeof want, "%s/damaged/o/s.T1-2", tmpdir);
    ck_assert_str_eq(to2, want);
    ck_assert_int_eq(guts_repo_set_aside(data, "o/s", "T1", to2, sizeof to2), GUTS_ENOTFOUND);
    ck_assert_int_eq(guts_repo_set_aside(data, "o/s", "a/b", to2, sizeof to2), GUTS_EINVAL);
    ck_assert_int_eq(guts_repo_set_aside(data, "../x", "T1", to2, sizeof to2), GUTS_EINVAL);
}
END_TEST

/* Object i of make_repo(): its id into *id. */
static void made_id(int i, guts_id *id)
{
    char buf[3000];
    for (size_t k = 0; k < sizeof buf; k++)
        buf[k] = (char)((i * 131 + (int)k * 7) ^ (int)(k >> 3));
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, buf, sizeof buf, id), GUTS_OK);
}

/* Rewrite one record's value through LMDB with its last byte flipped: the
 * env stays valid, only that object's content is wrong. */
static void damage_record(const char *key, const guts_id *id)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/repos/%s", tmpdir, key);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "objects", 0, &dbi), 0);
    MDB_val k = {GUTS_ID_LEN, (void *)id->b}, v;
    ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x5a;
    MDB_val nv = {v.mv_size, copy};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    free(copy);
    mdb_env_close(env);
}

/* Issue 20, item 2: a record that fails its hash is found by verify and
 * dropped with count and fingerprint; every other object stays, and the
 * object can be stored again from a good copy. */
START_TEST(test_damaged_record_fails_verify_and_drop_keeps_count_and_fingerprint)
{
    char file[512];
    make_repo("o/c", 4, file, sizeof file);
    guts_id ids[4];
    for (int i = 0; i < 4; i++)
        made_id(i, &ids[i]);
    guts_repo *r = NULL;
    guts_repo_info before, after;
    ck_assert_int_eq(guts_repo_open(data, "o/c", 0, &r), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(r, &before), GUTS_OK);
    guts_repo_close(r);
    damage_record("o/c", &ids[1]);
    ck_assert_int_eq(guts_repo_open(data, "o/c", 0, &r), GUTS_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(guts_repo_verify(r, &ids[i]), i == 1 ? GUTS_ECORRUPT : GUTS_OK);
    size_t dropped = 9;
    ck_assert_int_eq(guts_repo_drop(r, &ids[1], 1, &dropped), GUTS_OK);
    ck_assert_uint_eq(dropped, 1);
    ck_assert_int_eq(guts_repo_drop(r, &ids[1], 1, &dropped), GUTS_OK);
    ck_assert_uint_eq(dropped, 0);
    ck_assert_int_eq(guts_repo_has(r, &ids[1]), 0);
    ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
    ck_assert_uint_eq(after.objects, 3);
    guts_fp fp = before.fp;
    guts_fp_sub(&fp, guts_fp_of_id(&ids[1]));
    ck_assert(guts_fp_eq(fp, after.fp));
    ck_assert_uint_lt(after.stored_bytes, before.stored_bytes);
    guts_id recent[8];
    size_t n = 0;
    ck_assert_int_eq(guts_repo_recent(r, 8, recent, &n), GUTS_OK);
    ck_assert_uint_eq(n, 3);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(guts_id_cmp(&recent[i], &ids[1]), 0);
    /* a good copy goes back in and the repository is whole again */
    char buf[3000];
    for (size_t k = 0; k < sizeof buf; k++)
        buf[k] = (char)((1 * 131 + (int)k * 7) ^ (int)(k >> 3));
    guts_obj o = {.id = ids[1], .type = GUTS_OBJ_BLOB, .data = buf, .len = sizeof buf};
    ck_assert_int_eq(guts_repo_put(r, &o, 1, NULL, NULL), GUTS_OK);
    ck_assert_int_eq(guts_repo_verify(r, &ids[1]), GUTS_OK);
    ck_assert_int_eq(guts_repo_info_get(r, &after), GUTS_OK);
    ck_assert_uint_eq(after.objects, 4);
    ck_assert(guts_fp_eq(before.fp, after.fp));
    guts_repo_close(r);
}
END_TEST

static Suite *damage_suite(void)
{
    Suite *s = suite_create("store_damage");
    TCase *t = tcase_create("damage");
    tcase_add_unchecked_fixture(t, base_setup, base_teardown);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, test_damaged_meta_pages_or_length_are_refused_before_mapping, 0,
                        (int)(sizeof meta_damage / sizeof *meta_damage));
    tcase_add_test(t, test_truncated_env_is_refused_with_its_length);
    tcase_add_test(t, test_verify_reads_every_page_in_a_child_and_survives_damage);
    tcase_add_test(t, test_verify_many_checks_each_key_once_past_damaged_ones);
    tcase_add_test(t, test_env_missing_some_of_its_databases_is_damaged_not_recreated);
    tcase_add_test(t, test_set_aside_moves_the_env_and_keeps_every_file);
    tcase_add_test(t, test_damaged_record_fails_verify_and_drop_keeps_count_and_fingerprint);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(damage_suite(), CK_FORK_GETENV);
}
