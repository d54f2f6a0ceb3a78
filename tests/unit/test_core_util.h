/* test_core_util.h - real git objects and ref writes for the core's tests.
 *
 * Closure checks parse commits and trees, so the tests build valid ones:
 * a blob, a one-entry tree, a commit with parents. Each helper stores
 * through a core store interface and returns the id.
 */
#ifndef GUTS_TEST_CORE_UTIL_H
#define GUTS_TEST_CORE_UTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "guts/core.h"
#include "guts/wire.h"

static inline guts_id tu_put(const guts_core_store *s, const char *key, int type, const void *data,
                             size_t len)
{
    guts_obj o;
    memset(&o, 0, sizeof(o));
    ck_assert_int_eq(guts_obj_hash(type, data, len, &o.id), 0);
    o.type = type;
    o.data = data;
    o.len = len;
    ck_assert_int_eq(s->put(s->ctx, key, &o, 1, NULL, NULL), 0);
    return o.id;
}

static inline guts_id tu_blob(const guts_core_store *s, const char *key, const char *text)
{
    return tu_put(s, key, GUTS_OBJ_BLOB, text, strlen(text));
}

/* A tree with one file entry "f" -> blob, and optionally a subtree "sub". */
static inline guts_id tu_tree(const guts_core_store *s, const char *key, const guts_id *blob,
                              const guts_id *sub)
{
    uint8_t buf[128];
    size_t n = 0;
    memcpy(buf + n, "100644 f", 8);
    n += 8;
    buf[n++] = 0;
    memcpy(buf + n, blob->b, GUTS_ID_LEN);
    n += GUTS_ID_LEN;
    if (sub) {
        memcpy(buf + n, "40000 sub", 9);
        n += 9;
        buf[n++] = 0;
        memcpy(buf + n, sub->b, GUTS_ID_LEN);
        n += GUTS_ID_LEN;
    }
    return tu_put(s, key, GUTS_OBJ_TREE, buf, n);
}

static inline guts_id tu_commit(const guts_core_store *s, const char *key, const guts_id *tree,
                                const guts_id *parents, size_t np, const char *msg)
{
    char buf[1024];
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(tree, hex);
    int n = snprintf(buf, sizeof(buf), "tree %s\n", hex);
    for (size_t i = 0; i < np; i++) {
        guts_id_to_hex(&parents[i], hex);
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "parent %s\n", hex);
    }
    n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                  "author T <t@example.com> 1700000000 +0000\n"
                  "committer T <t@example.com> 1700000000 +0000\n\n%s\n",
                  msg);
    return tu_put(s, key, GUTS_OBJ_COMMIT, buf, (size_t)n);
}

static inline void tu_writer(size_t i, guts_node_id *w)
{
    memset(w, 0, sizeof(*w));
    w->b[0] = 0xa0;
    w->b[15] = (uint8_t)i;
}

/* Set a ref with a Lamport clock one past the repository's. */
static inline void tu_set_ref(const guts_core_store *s, const char *key, const char *name,
                              const guts_id *target, const guts_node_id *writer)
{
    guts_repo_info info;
    ck_assert_int_eq(s->info(s->ctx, key, &info), 0);
    guts_ref *r = calloc(1, sizeof(guts_ref));
    ck_assert_ptr_nonnull(r);
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->target = *target;
    r->clock = info.clock + 1;
    r->writer = *writer;
    ck_assert_int_eq(s->refs_put(s->ctx, key, r, 1), 0);
    free(r);
}

/* One commit on top of ref `name` (or a root commit), then the ref moves. */
static inline guts_id tu_write_commit(const guts_core_store *s, const char *key, const char *name,
                                      size_t writer, const char *text)
{
    guts_node_id w;
    tu_writer(writer, &w);
    guts_id blob = tu_blob(s, key, text);
    guts_id tree = tu_tree(s, key, &blob, NULL);
    guts_ref *cur = calloc(1, sizeof(guts_ref));
    ck_assert_ptr_nonnull(cur);
    int have = s->ref_get(s->ctx, key, name, cur) == 0 && !guts_id_is_zero(&cur->target);
    guts_id c = tu_commit(s, key, &tree, have ? &cur->target : NULL, have ? 1 : 0, text);
    free(cur);
    tu_set_ref(s, key, name, &c, &w);
    return c;
}

/* Run cl from t in steps of step ms until it converges or reaches until;
 * returns the time reached (a deadline, not a sleep). */
static inline uint64_t tu_run_converged(guts_cluster *cl, uint64_t t, uint64_t until,
                                        uint64_t step)
{
    while (t < until && !guts_cluster_converged(cl)) {
        t += step;
        guts_cluster_run_until(cl, t);
    }
    return t;
}

#endif
