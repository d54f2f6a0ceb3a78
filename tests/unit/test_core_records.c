/* test_core_records.c - objects replicated as stored records between two
 * cores on LMDB stores. A receiver that holds nothing gets the repository
 * in id order with every base sent ahead of its deltas, so no delta ever
 * waits for its base; one that holds something gets plain id order, deltas
 * arrive before their bases (small frames) and are held until the base is
 * stored. Either way nothing is dropped and the receiver ends with the same
 * set and the records stored compressed, without compressing them again; a
 * large object resumes where the receiver's staging stopped. And the whole
 * protocol over two LMDB stores: the one core test that links the store
 * (the LMDB adapter, src/store/lmdbstore.c); the others use memory. */
#include <check.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "guts/core.h"
#include "guts/lmdbstore.h"
#include "test_child.h"
#include "test_core_util.h"
#include "test_run.h"

#define KEY "o/records"

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Node i's store on LMDB, in dir/n<i>: *d, *ls and the table *st. */
static void tu_lmdb_open(const char *dir, int i, guts_data **d, guts_core_lmdbstore **ls,
                                guts_core_store *st)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/n%d", dir, i);
    ck_assert_int_eq(guts_data_open(path, GUTS_DATA_CREATE, d), 0);
    ck_assert_int_eq(guts_core_lmdbstore_new(*d, ls), 0);
    guts_core_lmdbstore_iface(*ls, st);
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* Replicate chains of deltas from node 0 to node 1 (which first holds one
 * unrelated blob when preload) and check the result; *k gets node 1's
 * counters. */
static void replicate(int preload, guts_core_counters *k)
{
    enum { CHAINS = 3, LEN = 40, SZ = 32 << 10, N = CHAINS * LEN };
    char tmp[] = "/tmp/guts-core-rec-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    guts_data *d[2];
    guts_core_lmdbstore *ls[2];
    guts_core_store st[2];
    for (int i = 0; i < 2; i++)
        tu_lmdb_open(tmp, i, &d[i], &ls[i], &st[i]);
    /* Chains of random (incompressible) 32 KiB blobs, each 64 bytes off the
     * last: a full record then deltas of a few hundred bytes. */
    uint8_t *v = malloc((size_t)N * SZ);
    guts_obj objs[N];
    for (int i = 0; i < N; i++) {
        uint8_t *p = v + (size_t)i * SZ;
        if (i % LEN == 0)
            fill(p, SZ, (uint64_t)i + 1);
        else
            memcpy(p, p - SZ, SZ);
        for (size_t e = 0; e < 64; e++) /* a delta of some hundred bytes */
            p[((size_t)i * 64 + e) * 509 % SZ] ^= 0x5a;
        memset(&objs[i], 0, sizeof(objs[i]));
        objs[i].type = GUTS_OBJ_BLOB;
        objs[i].data = p;
        objs[i].len = SZ;
        ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, p, SZ, &objs[i].id), 0);
        objs[i].base = i % LEN ? &objs[i - 1].id : NULL;
    }
    ck_assert_int_eq(st[0].create(st[0].ctx, KEY), 0);
    ck_assert_int_eq(st[0].put(st[0].ctx, KEY, objs, N, NULL, NULL), 0);
    if (preload) {
        guts_obj o = {.type = GUTS_OBJ_BLOB, .data = "unrelated", .len = 9};
        ck_assert_int_eq(guts_obj_hash(o.type, o.data, o.len, &o.id), 0);
        ck_assert_int_eq(st[0].put(st[0].ctx, KEY, &o, 1, NULL, NULL), 0);
        ck_assert_int_eq(st[1].create(st[1].ctx, KEY), 0);
        ck_assert_int_eq(st[1].put(st[1].ctx, KEY, &o, 1, NULL, NULL), 0);
    }

    /* The smallest frame cap, 64 KiB: 16 KiB of records a frame, so the
     * bases go as chunks and the deltas over several frames, in id order. */
    guts_cluster_config cfg = {.nodes = 2, .seed = 5, .frame_max = 64 << 10, .stores = st};
    guts_cluster *cl;
    ck_assert_int_eq(guts_cluster_new(&cfg, &cl), 0);
    uint64_t t = 0;
    guts_repo_info a, b;
    memset(&b, 0, sizeof(b));
    ck_assert_int_eq(st[0].info(st[0].ctx, KEY, &a), 0);
    while (t < 60000) {
        t += 500;
        ck_assert_int_eq(guts_cluster_run_until(cl, t), 0);
        if (st[1].info(st[1].ctx, KEY, &b) == 0 && guts_fp_eq(a.fp, b.fp)) break;
    }
    ck_assert(guts_fp_eq(a.fp, b.fp));
    ck_assert_uint_eq(b.objects, N + (preload ? 1 : 0));
    /* records kept as they came: the same bytes as the sender's, except
     * the chain bases, which came as chunks and are kept as one piece each
     * (a 14-byte row and a 1-byte piece header instead of a 10-byte one) */
    ck_assert_uint_eq(b.stored_bytes, a.stored_bytes + CHAINS * 5);
    guts_core_counters_get(guts_cluster_core(cl, 1), k);
    ck_assert_uint_eq(k->objects_dropped, 0);
    ck_assert_uint_eq(k->bad_objects, 0);
    for (int i = N - 1; i >= 0; i -= 7) {
        int type;
        void *data;
        size_t len;
        ck_assert_int_eq(st[1].get(st[1].ctx, KEY, &objs[i].id, &type, &data, &len), 0);
        ck_assert_uint_eq(len, SZ);
        ck_assert_mem_eq(data, objs[i].data, SZ);
        free(data);
    }
    guts_cluster_free(cl);
    for (int i = 0; i < 2; i++) {
        guts_core_lmdbstore_free(ls[i]);
        guts_data_close(d[i]);
    }
    free(v);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

START_TEST(test_empty_receiver_gets_every_base_before_its_deltas)
{
    guts_core_counters k;
    replicate(0, &k);
    ck_assert_uint_eq(k.objects_nobase, 0);
}
END_TEST

START_TEST(test_delta_records_before_their_base_are_held_then_stored)
{
    guts_core_counters k;
    replicate(1, &k);
    ck_assert_uint_gt(k.objects_nobase, 0);
}
END_TEST

/* A large object sent in chunks to a puller that already holds part of it
 * staged (as after a crash): the server starts at the staged length, so
 * the streams carry little more than the rest; the object is stored once,
 * verified, and the staging is gone. With lmdb 1, the receiver is an LMDB
 * store; else both are memory stores (raw objects, as in the simulator). */
static void resume_case(int lmdb)
{
    enum { SZ = (3 << 20) + 12345, HELD = (3 << 20) / 2 + 7 };
    char tmp[] = "/tmp/guts-core-big-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    guts_data *d[2] = {NULL, NULL};
    guts_core_lmdbstore *ls[2] = {NULL, NULL};
    guts_memstore *ms[2] = {NULL, NULL};
    guts_core_store st[2];
    for (int i = 0; i < 2; i++) {
        if (lmdb) {
            tu_lmdb_open(tmp, i, &d[i], &ls[i], &st[i]);
        } else {
            ck_assert_int_eq(guts_memstore_new(&ms[i]), 0);
            guts_memstore_iface(ms[i], &st[i]);
        }
    }
    uint8_t *v = malloc(SZ);
    fill(v, SZ, 99);
    guts_obj o = {.type = GUTS_OBJ_BLOB, .data = v, .len = SZ};
    ck_assert_int_eq(guts_obj_hash(GUTS_OBJ_BLOB, v, SZ, &o.id), 0);
    ck_assert_int_eq(st[0].create(st[0].ctx, KEY), 0);
    ck_assert_int_eq(st[0].put(st[0].ctx, KEY, &o, 1, NULL, NULL), 0);
    int stored = 1;
    ck_assert_int_eq(st[1].create(st[1].ctx, KEY), 0);
    ck_assert_int_eq(st[1].stage_write(st[1].ctx, KEY, &o.id, o.type, SZ, 0, v, HELD, &stored), 0);
    ck_assert_int_eq(stored, 0);

    guts_cluster_config cfg = {.nodes = 2, .seed = 7, .stores = st};
    guts_cluster *cl;
    ck_assert_int_eq(guts_cluster_new(&cfg, &cl), 0);
    guts_repo_info a, b;
    memset(&b, 0, sizeof(b));
    ck_assert_int_eq(st[0].info(st[0].ctx, KEY, &a), 0);
    for (uint64_t t = 500; t <= 60000; t += 500) {
        ck_assert_int_eq(guts_cluster_run_until(cl, t), 0);
        if (st[1].info(st[1].ctx, KEY, &b) == 0 && guts_fp_eq(a.fp, b.fp)) break;
    }
    ck_assert(guts_fp_eq(a.fp, b.fp));
    guts_cluster_stats cs;
    guts_cluster_stats_get(cl, &cs);
    /* the rest of the object and a little framing and digest traffic */
    ck_assert_uint_ge(cs.frame_bytes, SZ - HELD);
    ck_assert_uint_lt(cs.frame_bytes, SZ - HELD + (64 << 10));
    guts_stage left[GUTS_STAGE_MAX];
    size_t n = 1;
    ck_assert_int_eq(st[1].stage_list(st[1].ctx, KEY, left, GUTS_STAGE_MAX, &n), 0);
    ck_assert_uint_eq(n, 0);
    int type;
    void *data;
    size_t len;
    ck_assert_int_eq(st[1].get(st[1].ctx, KEY, &o.id, &type, &data, &len), 0);
    ck_assert_uint_eq(len, SZ);
    ck_assert_mem_eq(data, v, SZ);
    free(data);
    guts_cluster_free(cl);
    for (int i = 0; i < 2; i++) {
        guts_core_lmdbstore_free(ls[i]);
        if (d[i]) guts_data_close(d[i]);
        guts_memstore_free(ms[i]);
    }
    free(v);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

START_TEST(test_large_object_resumes_at_the_staged_length)
{
    resume_case(1);
}
END_TEST

START_TEST(test_large_object_resumes_between_memory_stores)
{
    resume_case(0);
}
END_TEST

/* The same protocol over the LMDB store: two data dirs replicate. */
START_TEST(test_lmdb_stores_replicate)
{
    char dir[] = "/tmp/guts-core-lmdb-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    guts_data *d[2];
    guts_core_lmdbstore *ls[2];
    guts_core_store st[2];
    for (int i = 0; i < 2; i++)
        tu_lmdb_open(dir, i, &d[i], &ls[i], &st[i]);
    ck_assert_int_eq(st[0].create(st[0].ctx, KEY), 0);
    char text[64];
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof(text), "lmdb commit %d", i);
        tu_write_commit(&st[0], KEY, "refs/heads/main", 0, text);
    }
    guts_cluster_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.nodes = 2;
    cfg.seed = 16;
    cfg.latency_min = 1;
    cfg.latency_max = 4;
    cfg.stores = st;
    guts_cluster *cl;
    ck_assert_int_eq(guts_cluster_new(&cfg, &cl), 0);
    guts_cluster_run_until(cl, 10000);
    ck_assert(guts_cluster_converged(cl));
    guts_repo_info b;
    ck_assert_int_eq(st[1].info(st[1].ctx, KEY, &b), 0);
    ck_assert_uint_eq(b.objects, 60);
    ck_assert_uint_eq(b.refs, 1);
    guts_cluster_free(cl);
    for (int i = 0; i < 2; i++) {
        guts_core_lmdbstore_free(ls[i]);
        guts_data_close(d[i]);
    }
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST


/* The daemon's poll reads a repository's counters as committed
 * (guts_core_lmdbstore_info_committed): what the open group holds is not
 * counted and stays in the group (no commit: the env's txnid stays), where
 * the interface's info commits the group first and counts it. */
START_TEST(test_lmdb_info_committed_leaves_the_group_open)
{
    char dir[] = "/tmp/guts-core-info-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    guts_data *d;
    guts_core_lmdbstore *ls;
    guts_core_store st;
    tu_lmdb_open(dir, 0, &d, &ls, &st);
    ck_assert_int_eq(st.create(st.ctx, KEY), 0);
    uint64_t t0, t1;
    ck_assert_int_eq(guts_core_lmdbstore_txnid(ls, KEY, &t0), 0);
    tu_blob(&st, KEY, "held by the group");
    guts_repo_info info;
    ck_assert_int_eq(guts_core_lmdbstore_info_committed(ls, KEY, &info), 0);
    ck_assert_uint_eq(info.objects, 0);
    ck_assert_uint_eq(info.txnid, t0);
    ck_assert_int_eq(guts_core_lmdbstore_txnid(ls, KEY, &t1), 0);
    ck_assert_uint_eq(t1, t0);
    ck_assert_int_eq(st.info(st.ctx, KEY, &info), 0);
    ck_assert_uint_eq(info.objects, 1);
    ck_assert_uint_gt(info.txnid, t0);
    ck_assert_int_eq(guts_core_lmdbstore_info_committed(ls, KEY, &info), 0);
    ck_assert_uint_eq(info.objects, 1);
    ck_assert_int_eq(guts_core_lmdbstore_info_committed(ls, "o/absent", &info), GUTS_ENOTFOUND);
    guts_core_lmdbstore_free(ls);
    guts_data_close(d);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST


/* unsynced(key) of node ls while its flushes are taken for up to ms (a
 * bounded poll): 1 if it stayed 1 throughout, 0 once it reads 0. */
static int unsynced_for(guts_core_lmdbstore *ls, const guts_core_store *st, const char *key,
                        int ms)
{
    for (int i = 0; i < ms; i++) {
        guts_core_lmdbstore_flushed(ls, NULL, NULL);
        if (st->unsynced(st->ctx, key) == 0) return 0;
        usleep(1000);
    }
    return 1;
}

static int marked(const char *dir, const char *key)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/repos/%s/unflushed", dir, key);
    return access(path, F_OK) == 0;
}

/* A store in a new directory (its data dir, sub, is dir/n0), its flusher
 * thread started: flushing_open(f, "name") makes /tmp/guts-core-name-*. */
typedef struct {
    char dir[48], sub[64];
    guts_data *d;
    guts_core_lmdbstore *ls;
    guts_core_store st;
} flushing;

static void flushing_open(flushing *f, const char *name)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/guts-core-%s-XXXXXX", name);
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    tu_lmdb_open(f->dir, 0, &f->d, &f->ls, &f->st);
    snprintf(f->sub, sizeof f->sub, "%s/n0", f->dir);
    ck_assert_int_eq(guts_core_lmdbstore_flush_start(f->ls, 1, NULL, NULL), 0);
}

/* A replica's first copy commits without a flush on the caller's thread
 * until its refs are written: a flush that catches up with its commits
 * meanwhile does not end the mode (every later group commit of the pull
 * would wait for an fdatasync on the loop), and the repository is not
 * announceable (unsynced) meanwhile, its unflushed mark on the disk. A
 * copy that gets no refs ends it at the first tick without a commit since
 * the previous one. Then a flush covering the last commit ends the mode
 * and clears the mark. */
START_TEST(test_lmdb_replica_unflushed_until_its_refs)
{
    flushing f;
    flushing_open(&f, "fill");
    ck_assert_int_eq(f.st.create(f.st.ctx, KEY), 0);
    ck_assert_int_eq(f.st.create(f.st.ctx, "o/norefs"), 0);
    guts_id blob = tu_blob(&f.st, KEY, "first copy");
    tu_blob(&f.st, "o/norefs", "no refs");
    guts_repo_info info;
    ck_assert_int_eq(f.st.info(f.st.ctx, KEY, &info), 0); /* commits the group */
    ck_assert_int_eq(f.st.info(f.st.ctx, "o/norefs", &info), 0);
    ck_assert_int_eq(unsynced_for(f.ls, &f.st, KEY, 200), 1);
    ck_assert(marked(f.sub, KEY));
    guts_core_lmdbstore_tick(f.ls); /* both written since the start */
    ck_assert_int_eq(unsynced_for(f.ls, &f.st, "o/norefs", 50), 1);
    guts_node_id w;
    tu_writer(0, &w);
    tu_set_ref(&f.st, KEY, "refs/heads/main", &blob, &w);
    ck_assert_int_eq(unsynced_for(f.ls, &f.st, KEY, 10000), 0);
    ck_assert(!marked(f.sub, KEY));
    ck_assert(marked(f.sub, "o/norefs"));
    guts_core_lmdbstore_tick(f.ls); /* nothing since the last: over */
    ck_assert_int_eq(unsynced_for(f.ls, &f.st, "o/norefs", 10000), 0);
    ck_assert(!marked(f.sub, "o/norefs"));
    guts_core_lmdbstore_free(f.ls);
    guts_data_close(f.d);
    nftw(f.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST


/* node_loop_turn: what the node's loop does for its store meanwhile:
 * collects finished flushes, and ticks every 20th turn (100 ms). */
static void node_loop_turn(void *ctx, int i)
{
    guts_core_lmdbstore_flushed(ctx, NULL, NULL);
    if (i % 20 == 0) guts_core_lmdbstore_tick(ctx);
}

/* A user's write (an import, a push: another process) into a replica a
 * running node is first-copying without flushes returns only once the
 * node ended that mode and cleared the mark (it sees a commit not its
 * own, or a tick without a write of its own), so a system crash after it
 * cannot have the replica, and the user's write with it, set aside. */
START_TEST(test_lmdb_user_write_waits_for_the_node_flush)
{
    flushing f;
    flushing_open(&f, "push");
    long holder;
    ck_assert_int_eq(guts_data_lock(f.d, &holder), 0); /* the node's */
    ck_assert_int_eq(f.st.create(f.st.ctx, KEY), 0);
    tu_blob(&f.st, KEY, "first copy");
    guts_repo_info info;
    ck_assert_int_eq(f.st.info(f.st.ctx, KEY, &info), 0);
    ck_assert(marked(f.sub, KEY));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        guts_data *other;
        guts_repo *user;
        guts_node_id w;
        tu_writer(1, &w);
        guts_ref ref = {0};
        snprintf(ref.name, sizeof ref.name, "refs/heads/user");
        ref.writer = w;
        ref.clock = 1;
        int rc = guts_data_open(f.sub, 0, &other);
        if (rc == 0) rc = guts_repo_open(other, KEY, 0, &user);
        if (rc == 0) rc = guts_repo_refs_put(user, &ref, 1);
        _exit(rc == 0 && !marked(f.sub, KEY) ? 0 : 1);
    }
    ck_assert(tu_child_ok(pid, node_loop_turn, f.ls));
    ck_assert(!marked(f.sub, KEY));
    ck_assert_int_eq(f.st.unsynced(f.st.ctx, KEY), 0);
    guts_core_lmdbstore_free(f.ls);
    guts_data_close(f.d);
    nftw(f.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST


int main(void)
{
    Suite *s = suite_create("core_records");
    TCase *t = tcase_create("records");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_empty_receiver_gets_every_base_before_its_deltas);
    tcase_add_test(t, test_delta_records_before_their_base_are_held_then_stored);
    tcase_add_test(t, test_large_object_resumes_at_the_staged_length);
    tcase_add_test(t, test_large_object_resumes_between_memory_stores);
    tcase_add_test(t, test_lmdb_stores_replicate);
    tcase_add_test(t, test_lmdb_info_committed_leaves_the_group_open);
    tcase_add_test(t, test_lmdb_replica_unflushed_until_its_refs);
    tcase_add_test(t, test_lmdb_user_write_waits_for_the_node_flush);
    suite_add_tcase(s, t);
    return test_run(s, CK_FORK_GETENV);
}
