/* push.c - the helper's `push`: objects from the local repository into the
 * store, then ref records.
 *
 * Order: decide, then copy, then publish. Each command is checked against
 * the store's current record first (git's rules: a tag that exists is not
 * moved, a branch only fast-forwards, unless forced; the fast-forward test
 * is `git merge-base --is-ancestor` in the local repository, which has the
 * new commit's whole history, so it answers exactly: the old tip is an
 * ancestor only if it is there). Only then are objects copied, and only
 * those the accepted updates need: `git rev-list --objects` from the new
 * tips, excluding everything the store's refs already reach (a store ref is
 * applied only once its closure is stored), piped straight into one
 * `git cat-file --batch --buffer`, whose output we read. Objects go to
 * guts_repo_put in batches of up to REMOTE_PUSH_BATCH_BYTES of content (so
 * an ordinary push is one write transaction) with git's own delta base as
 * the compression hint. Last, every accepted ref record is written in one
 * transaction, after re-reading each record: one that changed meanwhile
 * (a node applied a peer's update) fails that command with "fetch first".
 *
 * A running node polls the environment's counters and announces the new
 * objects and refs: the helper never talks to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/refmerge.h"
#include "remote/remote.h"

/* A cat-file header line: id, type, size, delta base and spaces fit in 128. */
#define HDR_MAX 256
#define READ_BUF (1u << 20)

typedef struct reader {
    int fd;
    char *buf;
    size_t pos, len;
} reader;

static int rd_fill(reader *r)
{
    if (r->pos < r->len) return 1;
    for (;;) {
        ssize_t n = read(r->fd, r->buf, READ_BUF);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return (int)n;
        r->pos = 0;
        r->len = (size_t)n;
        return 1;
    }
}

/* A line without its '\n'; 0 at EOF before any byte, -1 on error or overlong. */
static int rd_line(reader *r, char *line, size_t max)
{
    size_t n = 0;
    for (;;) {
        int f = rd_fill(r);
        if (f <= 0) return f < 0 ? -1 : (n ? -1 : 0);
        char c = r->buf[r->pos++];
        if (c == '\n') break;
        if (n + 1 >= max) return -1;
        line[n++] = c;
    }
    line[n] = 0;
    return 1;
}

static int rd_exact(reader *r, void *dst, size_t n)
{
    char *d = dst;
    while (n > 0) {
        if (rd_fill(r) <= 0) return -1;
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, k);
        r->pos += k;
        d += k;
        n -= k;
    }
    return 0;
}

/* ---- objects ------------------------------------------------------------- */

typedef struct batch {
    guts_obj *objs;
    size_t *off;
    guts_id *bases;
    uint8_t *has_base;
    size_t n, cap;
    char *arena;
    size_t used, acap;
} batch;

static void batch_free(batch *b)
{
    free(b->objs);
    free(b->off);
    free(b->bases);
    free(b->has_base);
    free(b->arena);
}

static int batch_room(batch *b, size_t bytes)
{
    if (b->n == b->cap) {
        size_t c = b->cap ? b->cap * 2 : 1024;
        guts_obj *o = realloc(b->objs, c * sizeof *o);
        if (o) b->objs = o;
        size_t *off = realloc(b->off, c * sizeof *off);
        if (off) b->off = off;
        guts_id *bs = realloc(b->bases, c * sizeof *bs);
        if (bs) b->bases = bs;
        uint8_t *hb = realloc(b->has_base, c);
        if (hb) b->has_base = hb;
        if (!o || !off || !bs || !hb) return GUTS_ENOMEM;
        b->cap = c;
    }
    if (b->acap - b->used < bytes) {
        size_t c = b->acap ? b->acap : (1u << 20);
        while (c - b->used < bytes)
            c *= 2;
        char *a = realloc(b->arena, c);
        if (!a) return GUTS_ENOMEM;
        b->arena = a;
        b->acap = c;
    }
    return GUTS_OK;
}

static int batch_store(guts_repo *r, batch *b, remote_push_stats *st, char *err)
{
    if (!b->n) return GUTS_OK;
    for (size_t i = 0; i < b->n; i++) {
        b->objs[i].data = b->arena + b->off[i];
        b->objs[i].base = b->has_base[i] ? &b->bases[i] : NULL;
    }
    size_t added = 0, bad = 0;
    int rc = guts_repo_put(r, b->objs, b->n, &added, &bad);
    if (rc == GUTS_EHASH) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&b->objs[bad].id, hex);
        return remote_errf(err, rc, "git gave object %s with content of another id", hex);
    }
    if (rc)
        return remote_errf(err, rc, "storing %zu objects: %s (%s)", b->n, guts_strerror(rc),
                           guts_store_errmsg());
    st->added += added;
    st->batches++;
    b->n = 0;
    b->used = 0;
    return GUTS_OK;
}

static int parse_hdr(char *line, guts_id *id, int *type, uint64_t *size, guts_id *base,
                     int *missing)
{
    char *sp = strchr(line, ' ');
    if (!sp || sp - line != GUTS_HEX_LEN) return GUTS_EINVAL;
    *sp = 0;
    if (guts_id_from_hex(line, id)) return GUTS_EINVAL;
    char *t = sp + 1;
    *missing = strcmp(t, "missing") == 0;
    if (*missing) return GUTS_OK;
    sp = strchr(t, ' ');
    if (!sp) return GUTS_EINVAL;
    *type = guts_otype_parse(t, (size_t)(sp - t));
    if (*type == GUTS_OBJ_NONE) return GUTS_EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(sp + 1, &end, 10);
    if (errno || end == sp + 1 || *end != ' ' || v > GUTS_OBJ_MAX_DEFAULT) return GUTS_ETOOBIG;
    *size = v;
    return guts_id_from_hex(end + 1, base) ? GUTS_EINVAL : GUTS_OK;
}

static void progress_line(int on, uint64_t n, uint64_t bytes, int last)
{
    if (!on) return;
    fprintf(stderr, "\rguts: storing objects: %llu, %.1f MiB%s", (unsigned long long)n,
            (double)bytes / (1024.0 * 1024.0), last ? ", done.\n" : "");
}

/* Copy the objects reachable from tips and not from exclude into r. */
static int copy_objects(guts_repo *r, const guts_id *tips, size_t ntips, const guts_id *exclude,
                        size_t nexclude, int progress, remote_push_stats *st, char *err)
{
    char *rl_argv[] = {"git",     "rev-list", "--objects", "--no-object-names", "--ignore-missing",
                       "--stdin", NULL};
    char *cf_argv[] = {"git", "cat-file",
                       "--batch=%(objectname) %(objecttype) %(objectsize) %(deltabase)", "--buffer",
                       NULL};
    remote_proc rl = {.pid = -1, .in = -1, .out = -1}, cf = rl;
    int pp[2] = {-1, -1}, rc;
    batch b = {0};
    reader rd = {.fd = -1};
    char line[HDR_MAX];
    if (pipe2(pp, O_CLOEXEC) != 0) return remote_errf(err, GUTS_EIO, "pipe: %s", strerror(errno));
    rc = remote_proc_start(&rl, rl_argv, REMOTE_FD_PIPE, pp[1], err);
    if (!rc) rc = remote_proc_start(&cf, cf_argv, pp[0], REMOTE_FD_PIPE, err);
    close(pp[0]);
    close(pp[1]);
    if (rc) goto out;
    /* rev-list reads all of stdin before it writes anything: no deadlock. */
    for (size_t i = 0; i < ntips + nexclude && !rc; i++) {
        char hex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(i < ntips ? &tips[i] : &exclude[i - ntips], hex);
        snprintf(line, sizeof line, "%s%s\n", i < ntips ? "" : "^", hex);
        if (remote_write_all(rl.in, line, strlen(line)))
            rc = remote_errf(err, GUTS_EIO, "writing to git rev-list: %s", strerror(errno));
    }
    close(rl.in);
    rl.in = -1;
    if (rc) goto out;
    rd.fd = cf.out;
    rd.buf = malloc(READ_BUF);
    if (!rd.buf) {
        rc = remote_errf(err, GUTS_ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        int lr = rd_line(&rd, line, sizeof line);
        if (lr == 0) break;
        guts_id id, base;
        int type = 0, missing = 0;
        uint64_t size = 0;
        if (lr < 0 || parse_hdr(line, &id, &type, &size, &base, &missing)) {
            rc = remote_errf(err, GUTS_EIO, "git cat-file: unexpected output \"%.80s\"", line);
            goto out;
        }
        if (missing) {
            rc = remote_errf(err, GUTS_EIO, "git cat-file: object %s is missing", line);
            goto out;
        }
        if (b.used + size > REMOTE_PUSH_BATCH_BYTES && (rc = batch_store(r, &b, st, err))) goto out;
        if (batch_room(&b, size + 1)) {
            rc = remote_errf(err, GUTS_ENOMEM, "out of memory for %llu bytes",
                             (unsigned long long)size);
            goto out;
        }
        char nl = 0;
        if (rd_exact(&rd, b.arena + b.used, size) || rd_exact(&rd, &nl, 1) || nl != '\n') {
            rc = remote_errf(err, GUTS_EIO, "git cat-file: truncated object %s", line);
            goto out;
        }
        guts_obj *o = &b.objs[b.n];
        memset(o, 0, sizeof *o);
        o->id = id;
        o->type = type;
        o->len = size;
        b.off[b.n] = b.used;
        b.bases[b.n] = base;
        b.has_base[b.n] = !guts_id_is_zero(&base);
        b.n++;
        b.used += size;
        st->objects++;
        st->bytes += size;
        if ((st->objects & 1023) == 0) progress_line(progress, st->objects, st->bytes, 0);
    }
    rc = batch_store(r, &b, st, err);
    if (!rc) progress_line(progress, st->objects, st->bytes, 1);
out:;
    int s1 = 0, s2 = 0;
    char e2[REMOTE_ERR_MAX];
    if (rl.pid > 0) remote_proc_wait(&rl, &s1, e2);
    if (cf.pid > 0) remote_proc_wait(&cf, &s2, e2);
    if (!rc && (s1 || s2))
        rc = remote_errf(err, GUTS_EIO, "git %s failed (exit %d)", s1 ? "rev-list" : "cat-file",
                         s1 ? s1 : s2);
    free(rd.buf);
    batch_free(&b);
    return rc;
}

/* ---- decisions --------------------------------------------------------------- */

static void set_error(remote_push_cmd *c, const char *msg)
{
    c->status = REMOTE_PUSH_ERROR;
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

/* src as the local repository resolves it. */
static int resolve_src(remote_push_cmd *c, char *err)
{
    char *argv[] = {"git", "rev-parse", "--verify", "-q", c->src, NULL};
    char *out = NULL;
    int status, rc = remote_run(argv, &out, NULL, &status, err);
    if (rc) return rc;
    size_t len = strlen(out);
    if (len && out[len - 1] == '\n') out[--len] = 0;
    if (status || len != GUTS_HEX_LEN || guts_id_from_hex(out, &c->new_id))
        set_error(c, "src refspec does not resolve");
    free(out);
    return GUTS_OK;
}

/* Exit status of a git command run for its answer only. */
static int git_status(char *const argv[], int *status, char *err)
{
    char *out = NULL;
    int rc = remote_run(argv, &out, NULL, status, err);
    free(out);
    return rc;
}

/* Read the store's record of dst into c->cur (r may be NULL: no repository). */
static int read_cur(guts_repo *r, const char *dst, guts_ref *cur, int *live, char *err)
{
    memset(cur, 0, sizeof *cur);
    *live = 0;
    if (!r) return GUTS_OK;
    int rc = guts_repo_ref_get(r, dst, cur);
    if (rc == GUTS_ENOTFOUND) {
        memset(cur, 0, sizeof *cur);
        return GUTS_OK;
    }
    if (rc) return remote_errf(err, rc, "reading ref %s: %s", dst, guts_strerror(rc));
    *live = !guts_ref_is_tombstone(cur);
    return GUTS_OK;
}

static int decide(guts_repo *r, remote_push_cmd *c, int *write, char *err)
{
    *write = 0;
    if (strncmp(c->dst, "refs/", 5) != 0 || guts_refname_check(c->dst) != 0) {
        set_error(c, "invalid ref name");
        return GUTS_OK;
    }
    int rc = read_cur(r, c->dst, &c->cur, &c->cur_live, err);
    if (rc) return rc;
    if (c->del) {
        c->status = REMOTE_PUSH_OK; /* deleting what is not there: done */
        *write = c->cur_live;
        return GUTS_OK;
    }
    if ((rc = resolve_src(c, err)) || c->status == REMOTE_PUSH_ERROR) return rc;
    if (c->cur_live && c->cur.symref[0]) {
        set_error(c, "cannot update a symbolic ref");
        return GUTS_OK;
    }
    if (c->cur_live && guts_id_cmp(&c->cur.target, &c->new_id) == 0) {
        c->status = REMOTE_PUSH_OK; /* up to date */
        return GUTS_OK;
    }
    if (c->cur_live && !c->force) {
        if (strncmp(c->dst, "refs/tags/", 10) == 0) {
            set_error(c, "already exists");
            return GUTS_OK;
        }
        char old[GUTS_HEX_LEN + 1], new[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&c->cur.target, old);
        guts_id_to_hex(&c->new_id, new);
        char *anc[] = {"git", "merge-base", "--is-ancestor", old, new, NULL};
        char *has[] = {"git", "cat-file", "-e", old, NULL};
        int status;
        if ((rc = git_status(anc, &status, err))) return rc;
        if (status != 0) {
            /* Not an ancestor: "fetch first" when we have never seen the
             * old tip (someone else pushed), as git says it. */
            int hs;
            if ((rc = git_status(has, &hs, err))) return rc;
            set_error(c, hs == 0 ? "non-fast-forward" : "fetch first");
            return GUTS_OK;
        }
    }
    *write = 1;
    return GUTS_OK;
}

/* ---- refs -------------------------------------------------------------------- */

typedef struct idvec {
    guts_id *v;
    size_t n, cap;
} idvec;

static int idvec_push(idvec *a, const guts_id *id)
{
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 64;
        guts_id *nv = realloc(a->v, c * sizeof *nv);
        if (!nv) return GUTS_ENOMEM;
        a->v = nv;
        a->cap = c;
    }
    a->v[a->n++] = *id;
    return GUTS_OK;
}

static int collect_target(const guts_ref *ref, void *ctx)
{
    if (ref->symref[0] || guts_id_is_zero(&ref->target)) return 0;
    return idvec_push(ctx, &ref->target);
}

static int same_record(const guts_ref *a, int alive, const guts_ref *b, int blive)
{
    if (alive != blive) return 0;
    if (!alive && !blive) return a->clock == b->clock; /* both absent or both tombstones */
    return guts_ref_cmp(a, b) == 0;
}

/* HEAD of a repository that has none: the pushed main, else master, else
 * the first pushed branch. */
static const char *choose_head(remote_push_cmd *cmds, size_t n, const uint8_t *write)
{
    const char *first = NULL;
    for (int pass = 0; pass < 2; pass++) {
        const char *want = pass == 0 ? "refs/heads/main" : "refs/heads/master";
        for (size_t i = 0; i < n; i++) {
            if (!write[i] || cmds[i].del || cmds[i].status == REMOTE_PUSH_ERROR) continue;
            if (strcmp(cmds[i].dst, want) == 0) return want;
            if (!first && strncmp(cmds[i].dst, "refs/heads/", 11) == 0) first = cmds[i].dst;
        }
    }
    return first;
}

static int write_refs(guts_repo *r, const guts_node_id *node, remote_push_cmd *cmds, size_t n,
                      uint8_t *write, remote_push_stats *st, char *err)
{
    guts_ref *recs = calloc(n + 1, sizeof *recs);
    if (!recs) return remote_errf(err, GUTS_ENOMEM, "out of memory");
    guts_repo_info info;
    int rc = guts_repo_info_get(r, &info);
    uint64_t clock = 0;
    if (rc) {
        rc = remote_errf(err, rc, "reading the repository clock: %s", guts_strerror(rc));
        goto out;
    }
    if ((rc = guts_ref_clock_next(info.clock, 0, &clock))) {
        rc = remote_errf(err, rc, "the repository clock is exhausted");
        goto out;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        remote_push_cmd *c = &cmds[i];
        if (!write[i]) continue;
        guts_ref now;
        int live;
        if ((rc = read_cur(r, c->dst, &now, &live, err))) goto out;
        if (!same_record(&now, live, &c->cur, c->cur_live)) {
            set_error(c, "fetch first"); /* changed since we decided */
            write[i] = 0;
            continue;
        }
        guts_ref *rec = &recs[m++];
        snprintf(rec->name, sizeof rec->name, "%s", c->dst);
        if (!c->del) rec->target = c->new_id;
        rec->clock = clock;
        rec->writer = *node;
    }
    guts_ref head;
    int head_live = 0;
    if ((rc = read_cur(r, "HEAD", &head, &head_live, err))) goto out;
    const char *hb = head_live ? NULL : choose_head(cmds, n, write);
    if (hb) {
        guts_ref *rec = &recs[m++];
        strcpy(rec->name, "HEAD");
        snprintf(rec->symref, sizeof rec->symref, "%s", hb);
        rec->clock = clock;
        rec->writer = *node;
    }
    if (m && (rc = guts_repo_refs_put(r, recs, m))) {
        rc = remote_errf(err, rc, "writing %zu refs: %s (%s)", m, guts_strerror(rc),
                         guts_store_errmsg());
        goto out;
    }
    st->refs += m;
    for (size_t i = 0; i < n; i++)
        if (write[i]) cmds[i].status = REMOTE_PUSH_OK;
out:
    free(recs);
    return rc;
}

/* ---- entry ------------------------------------------------------------------- */

int remote_push(guts_data *d, const char *key, remote_push_cmd *cmds, size_t n, int dry_run,
                int progress, remote_push_stats *st, char *err)
{
    guts_repo *r = NULL;
    uint8_t *write = calloc(n ? n : 1, 1);
    idvec tips = {0}, have = {0};
    memset(st, 0, sizeof *st);
    if (!write) return remote_errf(err, GUTS_ENOMEM, "out of memory");
    int rc = guts_repo_open(d, key, 0, &r);
    if (rc == GUTS_ENOTFOUND) {
        r = NULL;
        rc = GUTS_OK;
    } else if (rc) {
        rc = remote_errf(err, rc, "opening %s: %s", key, guts_strerror(rc));
        goto out;
    }
    size_t nwrite = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int w = 0;
        cmds[i].status = REMOTE_PUSH_PENDING;
        rc = decide(r, &cmds[i], &w, err);
        write[i] = (uint8_t)w;
        nwrite += (size_t)w;
        if (!rc && w && !cmds[i].del) rc = idvec_push(&tips, &cmds[i].new_id);
    }
    if (rc) goto out;
    if (dry_run || nwrite == 0) {
        for (size_t i = 0; i < n; i++)
            if (write[i]) cmds[i].status = REMOTE_PUSH_OK;
        goto out;
    }
    if (!r && (rc = guts_repo_open(d, key, GUTS_REPO_CREATE, &r))) {
        rc = remote_errf(err, rc, "creating %s: %s (%s)", key, guts_strerror(rc),
                         guts_store_errmsg());
        goto out;
    }
    if (tips.n) {
        if ((rc = guts_repo_refs(r, 0, collect_target, &have))) {
            rc = remote_errf(err, rc, "reading refs of %s: %s", key, guts_strerror(rc));
            goto out;
        }
        rc = copy_objects(r, tips.v, tips.n, have.v, have.n, progress, st, err);
        if (rc) goto out;
    }
    rc = write_refs(r, guts_data_node_id(d), cmds, n, write, st, err);
out:
    if (r) guts_repo_close(r);
    free(write);
    free(tips.v);
    free(have.v);
    return rc;
}
