/* sim_work.c - the simulator's workload: real git objects, made up.
 *
 * Repositories are chains of commits, each with a tree of one new blob (the
 * first tree also holds the K mod 3 extra blobs), so every object has a
 * real git id, the closure rule (commit -> tree, parents; tree -> blobs)
 * has something to check and an export would pass git fsck. Contents are a
 * function of the repository number and a counter only: seeding is
 * deterministic and two nodes never invent the same object by accident
 * unless they are meant to.
 *
 * A write is what `guts import` of one new commit does to a node's store:
 * objects first, then refs/heads/main and refs/heads/writer-N stamped with
 * the repository's Lamport clock + 1 and the node's id. Two writers on one
 * repository therefore race on main, and the CRDT keeps the loser as a
 * conflict record: the workload exercises the merge, not only transport.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* Base of the made-up author timestamps: any fixed value keeps contents
 * deterministic; this one is 2023-11-14. */
#define WORK_EPOCH 1700000000ull

void sim_repo_key(uint32_t r, char out[GUTS_KEY_MAX + 1])
{
    snprintf(out, GUTS_KEY_MAX + 1, "sim/repo%" PRIu32, r);
}

/* One object built in memory: content owned by the batch. */
typedef struct wobj {
    guts_obj o;
    char *buf;
} wobj;

static int make_obj(wobj *w, int type, char *buf, size_t len)
{
    w->buf = buf;
    w->o.type = type;
    w->o.data = buf;
    w->o.len = len;
    w->o.base = NULL;
    return guts_obj_hash(type, buf, len, &w->o.id);
}

/* "repo R WHAT A MIDB\n": every blob the workload writes (a literal format,
 * so the compiler and cppcheck check its arguments). */
static int make_blob(wobj *w, uint32_t r, const char *what, uint64_t a, const char *mid, uint64_t b)
{
    char *buf = malloc(96);
    if (!buf) return GUTS_ENOMEM;
    int n =
        snprintf(buf, 96, "repo %" PRIu32 " %s %" PRIu64 " %s%" PRIu64 "\n", r, what, a, mid, b);
    return make_obj(w, GUTS_OBJ_BLOB, buf, (size_t)n);
}

/* A tree of blobs named by names[] (sorted by the caller). */
static int make_tree(wobj *w, const char *const *names, const guts_id *ids, size_t n)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += 8 + strlen(names[i]) + 1 + GUTS_ID_LEN;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) return GUTS_ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)sprintf(buf + len, "100644 %s", names[i]) + 1; /* keeps the NUL */
        memcpy(buf + len, ids[i].b, GUTS_ID_LEN);
        len += GUTS_ID_LEN;
    }
    return make_obj(w, GUTS_OBJ_TREE, buf, len);
}

static int make_commit(wobj *w, const guts_id *tree, const guts_id *parent, uint64_t stamp,
                       const char *msg)
{
    char th[GUTS_HEX_LEN + 1], ph[GUTS_HEX_LEN + 1];
    guts_id_to_hex(tree, th);
    char *buf = malloc(512);
    if (!buf) return GUTS_ENOMEM;
    int n = snprintf(buf, 512, "tree %s\n", th);
    if (parent) {
        guts_id_to_hex(parent, ph);
        n += snprintf(buf + n, 512 - (size_t)n, "parent %s\n", ph);
    }
    n += snprintf(buf + n, 512 - (size_t)n,
                  "author sim <sim@guts.invalid> %" PRIu64 " +0000\n"
                  "committer sim <sim@guts.invalid> %" PRIu64 " +0000\n\n%s\n",
                  (uint64_t)(WORK_EPOCH + stamp), (uint64_t)(WORK_EPOCH + stamp), msg);
    return make_obj(w, GUTS_OBJ_COMMIT, buf, (size_t)n);
}

static void objs_free(wobj *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(w[i].buf);
    free(w);
}

static int put_all(const guts_core_store *st, const char *key, wobj *w, size_t n)
{
    guts_obj *objs = malloc((n ? n : 1) * sizeof(guts_obj));
    if (!objs) return GUTS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        objs[i] = w[i].o;
    size_t added = 0, bad = 0;
    int rc = n ? st->put(st->ctx, key, objs, n, &added, &bad) : GUTS_OK;
    free(objs);
    return rc;
}

/* Make a ref record (heap: guts_ref is 2 KiB). */
static void ref_set(guts_ref *ref, const char *name, const guts_id *target, const char *symref,
                    uint64_t clock, const guts_node_id *w)
{
    memset(ref, 0, sizeof(*ref));
    snprintf(ref->name, sizeof(ref->name), "%s", name);
    if (target) ref->target = *target;
    if (symref) snprintf(ref->symref, sizeof(ref->symref), "%s", symref);
    ref->clock = clock;
    ref->writer = *w;
}

static int repo_clock(const guts_core_store *st, const char *key, uint64_t *clock)
{
    guts_repo_info info;
    int rc = st->info(st->ctx, key, &info);
    if (rc == GUTS_ENOTFOUND) {
        rc = st->create(st->ctx, key);
        if (rc) return rc;
        rc = st->info(st->ctx, key, &info);
    }
    if (rc) return rc;
    *clock = info.clock;
    return GUTS_OK;
}

int sim_work_seed(const guts_core_store *st, uint32_t r, uint32_t k, const guts_node_id *w)
{
    char key[GUTS_KEY_MAX + 1];
    sim_repo_key(r, key);
    uint64_t clock;
    int rc = repo_clock(st, key, &clock);
    if (rc) return rc;
    size_t ncommits = k / 3, extra = k % 3, n = 0;
    wobj *objs = calloc(k ? k : 1, sizeof(wobj));
    if (!objs) return GUTS_ENOMEM;
    guts_id prev, blobs[3];
    const char *names[3] = {"a", "e0", "e1"};
    for (size_t e = 0; e < extra && !rc; e++) {
        rc = make_blob(&objs[n], r, "extra", e, "", 0);
        blobs[1 + e] = objs[n++].o.id;
    }
    for (size_t i = 0; i < ncommits && !rc; i++) {
        rc = make_blob(&objs[n], r, "blob", i, "", 0);
        if (rc) break;
        blobs[0] = objs[n++].o.id;
        rc = make_tree(&objs[n], names, blobs, i == 0 ? 1 + extra : 1);
        if (rc) break;
        guts_id tree = objs[n++].o.id;
        char msg[64];
        snprintf(msg, sizeof(msg), "seed %zu", i);
        rc = make_commit(&objs[n], &tree, i ? &prev : NULL, i, msg);
        prev = objs[n++].o.id;
    }
    if (!rc) rc = put_all(st, key, objs, n);
    objs_free(objs, k ? k : 1);
    if (rc || ncommits == 0) return rc;
    guts_ref *refs = malloc(2 * sizeof(guts_ref));
    if (!refs) return GUTS_ENOMEM;
    ref_set(&refs[0], "refs/heads/main", &prev, NULL, clock + 1, w);
    ref_set(&refs[1], "HEAD", NULL, "refs/heads/main", clock + 1, w);
    rc = st->refs_put(st->ctx, key, refs, 2);
    free(refs);
    return rc;
}

int sim_work_write(const guts_core_store *st, uint32_t r, uint32_t wn, uint64_t cnt,
                   const guts_node_id *w)
{
    char key[GUTS_KEY_MAX + 1];
    sim_repo_key(r, key);
    uint64_t clock;
    int rc = repo_clock(st, key, &clock);
    if (rc) return rc;
    guts_ref *refs = malloc(2 * sizeof(guts_ref));
    if (!refs) return GUTS_ENOMEM;
    guts_id parent;
    int has_parent = st->ref_get(st->ctx, key, "refs/heads/main", &refs[0]) == GUTS_OK &&
                     !guts_id_is_zero(&refs[0].target) && !refs[0].symref[0] &&
                     st->has(st->ctx, key, &refs[0].target) == 1;
    if (has_parent) parent = refs[0].target;
    wobj *objs = calloc(3, sizeof(wobj));
    if (!objs) {
        free(refs);
        return GUTS_ENOMEM;
    }
    const char *names[1] = {"a"};
    rc = make_blob(&objs[0], r, "writer", wn, "write ", cnt);
    if (!rc) rc = make_tree(&objs[1], names, &objs[0].o.id, 1);
    char msg[64];
    snprintf(msg, sizeof(msg), "writer %" PRIu32 " write %" PRIu64, wn, cnt);
    if (!rc)
        rc = make_commit(&objs[2], &objs[1].o.id, has_parent ? &parent : NULL, 1000000 + cnt, msg);
    if (!rc) rc = put_all(st, key, objs, 3);
    if (!rc) {
        char branch[64];
        snprintf(branch, sizeof(branch), "refs/heads/writer-%" PRIu32, wn);
        ref_set(&refs[0], "refs/heads/main", &objs[2].o.id, NULL, clock + 1, w);
        ref_set(&refs[1], branch, &objs[2].o.id, NULL, clock + 1, w);
        rc = st->refs_put(st->ctx, key, refs, 2);
    }
    objs_free(objs, 3);
    free(refs);
    return rc;
}
