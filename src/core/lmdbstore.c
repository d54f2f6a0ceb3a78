/* lmdbstore.c - the core's store interface over the LMDB store (store.h).
 *
 * A thin adapter: each vtable call maps to the guts_repo_* function of the
 * same name. Repository environments are opened on first use and kept open
 * (opening an env costs a few system calls and file descriptors; the daemon
 * touches the same repositories over and over), in a small array sorted by
 * key. Creation goes through GUTS_REPO_CREATE; nothing else creates.
 *
 * The first open of each repository verifies it (GUTS_REPO_VERIFY: every
 * page read by a child process), once per process: this is what lets a
 * node serve a data dir holding a damaged file. A fork copies the page
 * tables of every env open, so at start the owner checks every repository
 * in one child before any is open (guts_core_lmdbstore_verify_all); those
 * found healthy are then opened without a check of their own. A damaged repository goes
 * to the owner's hook, which sets it aside (it then reads as absent and is
 * pulled afresh from peers), or is remembered and refused from then on.
 */
#include <stdlib.h>
#include <string.h>

#include "guts/core.h"

typedef struct open_repo {
    char *key;
    guts_repo *repo;
} open_repo;

struct guts_core_lmdbstore {
    guts_data *data;
    open_repo *open;
    size_t n, cap;
    guts_core_lmdbstore_damaged_fn on_damaged;
    void *damaged_arg;
    char **refused; /* damaged and still in place: never opened again */
    size_t nrefused;
    char **verified; /* checked by verify_all, not yet opened; sorted */
    size_t nverified;
};

int guts_core_lmdbstore_new(guts_data *d, guts_core_lmdbstore **out)
{
    if (!d || !out)
        return GUTS_EINVAL;
    guts_core_lmdbstore *s = calloc(1, sizeof(*s));
    if (!s)
        return GUTS_ENOMEM;
    s->data = d;
    *out = s;
    return GUTS_OK;
}

void guts_core_lmdbstore_free(guts_core_lmdbstore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        guts_repo_close(s->open[i].repo);
        free(s->open[i].key);
    }
    free(s->open);
    for (size_t i = 0; i < s->nrefused; i++)
        free(s->refused[i]);
    free(s->refused);
    for (size_t i = 0; i < s->nverified; i++)
        free(s->verified[i]);
    free(s->verified);
    free(s);
}

void guts_core_lmdbstore_on_damaged(guts_core_lmdbstore *s, guts_core_lmdbstore_damaged_fn fn,
                                    void *arg)
{
    s->on_damaged = fn;
    s->damaged_arg = arg;
}

static int refused(const guts_core_lmdbstore *s, const char *key)
{
    for (size_t i = 0; i < s->nrefused; i++)
        if (strcmp(s->refused[i], key) == 0) return 1;
    return 0;
}

/* key's env is damaged: the hook sets it aside (then it is absent), or it
 * is refused for the life of this store. */
static int damaged(guts_core_lmdbstore *s, const char *key, const char *why)
{
    if (s->on_damaged && s->on_damaged(key, why, s->damaged_arg) == 0)
        return GUTS_ENOTFOUND;
    char **p = realloc(s->refused, (s->nrefused + 1) * sizeof(char *));
    if (p) {
        s->refused = p;
        if ((p[s->nrefused] = strdup(key))) s->nrefused++;
    }
    return GUTS_EDAMAGED;
}

static size_t pos_of(const guts_core_lmdbstore *s, const char *key, int *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->open[mid].key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

void guts_core_lmdbstore_forget(guts_core_lmdbstore *s, const char *key)
{
    int found;
    size_t i = pos_of(s, key, &found);
    if (!found)
        return;
    guts_repo_close(s->open[i].repo);
    free(s->open[i].key);
    memmove(s->open + i, s->open + i + 1, (s->n - i - 1) * sizeof(open_repo));
    s->n--;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if verify_all found key healthy (and it is not yet opened); it then
 * leaves the set: the check is once per process. */
static int take_verified(guts_core_lmdbstore *s, const char *key)
{
    char **p = s->nverified ? bsearch(&key, s->verified, s->nverified, sizeof(char *), cmp_key)
                            : NULL;
    if (!p) return 0;
    free(*p);
    size_t i = (size_t)(p - s->verified);
    memmove(p, p + 1, (s->nverified - i - 1) * sizeof(char *));
    s->nverified--;
    return 1;
}

/* verify_all's list of keys and what their check found. */
typedef struct verify_all {
    guts_core_lmdbstore *s;
    char **keys;
    size_t n, cap;
    unsigned char *ok;
    size_t ndamaged;
} verify_all;

static int list_key(const char *key, void *arg)
{
    verify_all *v = arg;
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 64;
        char **p = realloc(v->keys, nc * sizeof(char *));
        if (!p) return GUTS_ENOMEM;
        v->keys = p;
        v->cap = nc;
    }
    if (!(v->keys[v->n] = strdup(key))) return GUTS_ENOMEM;
    v->n++;
    return 0;
}

static void verified_one(size_t i, int rc, const char *why, void *arg)
{
    verify_all *v = arg;
    if (rc == GUTS_OK) {
        v->ok[i] = 1;
    } else if (rc == GUTS_EDAMAGED) {
        /* The set-aside key is absent from now on; a refused one too. */
        damaged(v->s, v->keys[i], why);
        v->ndamaged++;
    }
    /* Not checked (GUTS_EIO): its first open checks it alone. */
}

int guts_core_lmdbstore_verify_all(guts_core_lmdbstore *s, size_t *checked, size_t *ndamaged)
{
    verify_all v = {.s = s};
    int rc = guts_data_repos(s->data, list_key, &v);
    if (rc == GUTS_OK && !(v.ok = calloc(v.n ? v.n : 1, 1))) rc = GUTS_ENOMEM;
    if (rc == GUTS_OK)
        rc = guts_repo_verify_many(s->data, (const char *const *)v.keys, v.n, verified_one, &v);
    size_t nok = 0;
    for (size_t i = 0; i < v.n; i++)
        nok += rc == GUTS_OK && v.ok[i];
    char **set = nok ? realloc(s->verified, (s->nverified + nok) * sizeof(char *)) : NULL;
    if (set) s->verified = set;
    for (size_t i = 0; i < v.n; i++) {
        if (set && rc == GUTS_OK && v.ok[i])
            s->verified[s->nverified++] = v.keys[i];
        else
            free(v.keys[i]);
    }
    if (set) qsort(s->verified, s->nverified, sizeof(char *), cmp_key);
    free(v.keys);
    free(v.ok);
    if (checked) *checked = v.n;
    if (ndamaged) *ndamaged = v.ndamaged;
    return rc;
}

/* The open handle of key, opening (and with create, creating) it. */
static int get_repo(guts_core_lmdbstore *s, const char *key, int create, guts_repo **out)
{
    int found;
    size_t i = pos_of(s, key, &found);
    if (found) {
        *out = s->open[i].repo;
        return GUTS_OK;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 16;
        open_repo *p = realloc(s->open, nc * sizeof(open_repo));
        if (!p)
            return GUTS_ENOMEM;
        s->open = p;
        s->cap = nc;
    }
    if (refused(s, key)) return GUTS_EDAMAGED;
    char *k = strdup(key);
    if (!k)
        return GUTS_ENOMEM;
    guts_repo *r;
    unsigned verify = take_verified(s, key) ? 0 : GUTS_REPO_VERIFY;
    int rc = guts_repo_open(s->data, key, verify | (create ? GUTS_REPO_CREATE : 0), &r);
    if (rc == GUTS_EDAMAGED) {
        rc = damaged(s, key, guts_store_errmsg());
        /* Set aside: a create makes a fresh env in its place. */
        if (rc == GUTS_ENOTFOUND && create) rc = guts_repo_open(s->data, key, GUTS_REPO_CREATE, &r);
    }
    if (rc) {
        free(k);
        return rc;
    }
    memmove(s->open + i + 1, s->open + i, (s->n - i) * sizeof(open_repo));
    s->open[i].key = k;
    s->open[i].repo = r;
    s->n++;
    *out = r;
    return GUTS_OK;
}

int guts_core_lmdbstore_txnid(guts_core_lmdbstore *s, const char *key, uint64_t *out)
{
    guts_repo *r;
    int rc = get_repo(s, key, 0, &r);
    return rc ? rc : guts_repo_txnid(r, out);
}

static int l_repos(void *ctx, int (*cb)(const char *key, void *arg), void *arg)
{
    guts_core_lmdbstore *s = ctx;
    return guts_data_repos(s->data, cb, arg);
}

static int l_create(void *ctx, const char *key)
{
    guts_repo *r;
    return get_repo(ctx, key, 1, &r);
}

static int l_info(void *ctx, const char *key, guts_repo_info *out)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_info_get(r, out);
}

static int l_ids(void *ctx, const char *key, const guts_id *from, const guts_id *to,
                 int (*cb)(const guts_id *id, void *arg), void *arg)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_ids(r, from, to, cb, arg);
}

static int l_has(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_has(r, id);
}

static int l_get(void *ctx, const char *key, const guts_id *id, int *type, void **data,
                 size_t *len)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_get(r, id, type, data, len);
}

static int l_put(void *ctx, const char *key, const guts_obj *objs, size_t n, size_t *added,
                 size_t *bad)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_put(r, objs, n, added, bad);
}

static int l_recent(void *ctx, const char *key, size_t max, guts_id *out, size_t *n)
{
    guts_repo *r;
    *n = 0;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_recent(r, max, out, n);
}

static int l_refs(void *ctx, const char *key, int with_tombstones,
                  int (*cb)(const guts_ref *ref, void *arg), void *arg)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_refs(r, with_tombstones, cb, arg);
}

static int l_ref_get(void *ctx, const char *key, const char *name, guts_ref *out)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_ref_get(r, name, out);
}

static int l_refs_put(void *ctx, const char *key, const guts_ref *refs, size_t n)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_refs_put(r, refs, n);
}

static int l_rec_get(void *ctx, const char *key, const guts_id *id, guts_rec *out, void **buf)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_rec_get(r, id, out, buf);
}

static int l_rec_put(void *ctx, const char *key, const guts_rec *recs, size_t n, uint8_t *nobase,
                     size_t *added, size_t *bad)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_rec_put(r, recs, n, nobase, added, bad);
}

static int l_verify(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_verify(r, id);
}

static int l_drop(void *ctx, const char *key, const guts_id *ids, size_t n, size_t *dropped)
{
    guts_repo *r;
    *dropped = 0;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_drop(r, ids, n, dropped);
}

static int l_read(void *ctx, const char *key, const guts_id *id, uint64_t off, void *buf,
                  size_t len, size_t *got)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_read(r, id, off, buf, len, got);
}

static int l_stage_write(void *ctx, const char *key, const guts_id *id, int type, uint64_t size,
                         uint64_t off, const void *data, size_t len, int *stored)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_stage_write(r, id, type, size, off, data, len, stored);
}

static int l_stage_list(void *ctx, const char *key, guts_stage *out, size_t max, size_t *n)
{
    guts_repo *r;
    *n = 0;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_stage_list(r, out, max, n);
}

static int l_stage_drop(void *ctx, const char *key, const guts_id *id)
{
    guts_repo *r;
    int rc = get_repo(ctx, key, 0, &r);
    return rc ? rc : guts_repo_stage_drop(r, id);
}

void guts_core_lmdbstore_iface(guts_core_lmdbstore *s, guts_core_store *out)
{
    memset(out, 0, sizeof(*out));
    out->ctx = s;
    out->repos = l_repos;
    out->create = l_create;
    out->info = l_info;
    out->ids = l_ids;
    out->has = l_has;
    out->get = l_get;
    out->put = l_put;
    out->recent = l_recent;
    out->refs = l_refs;
    out->ref_get = l_ref_get;
    out->refs_put = l_refs_put;
    out->rec_get = l_rec_get;
    out->verify = l_verify;
    out->drop = l_drop;
    out->rec_put = l_rec_put;
    out->read = l_read;
    out->stage_write = l_stage_write;
    out->stage_list = l_stage_list;
    out->stage_drop = l_stage_drop;
}
