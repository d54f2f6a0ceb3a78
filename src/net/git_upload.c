/* git_upload.c - the pack of one upload-pack answer: written by a pack
 * thread into a pipe, read by the loop without blocking.
 *
 * The thread opens its own handle on the repository, selects and writes
 * the pack (guts_git_serve), framed as side-band-64k pkt-lines after the
 * answer's acknowledgments. The loop reads the pipe from libmicrohttpd's
 * content reader; when it is empty the connection is suspended and an
 * ev_io on the pipe resumes it (git.c's opening paragraph says why).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"
#include "pack.h"
#include "packcache.h"
#include "git_int.h"
#include "pktline.h"

static int pipe_write(git_upload *u, const void *d, size_t n)
{
    return guts_write_all(u->wfd, d, n);
}

/* Side-band-64k band 1: the pack, in pkt-lines; the first one follows the
 * "packfile" section header. */
static int band1_sink(void *ctx, const void *buf, size_t n)
{
    git_upload *u = ctx;
    int rc;
    if (!u->header_sent) {
        u->header_sent = 1;
        if ((rc = pipe_write(u, "000dpackfile\n", 13))) {
            u->client_gone = 1;
            return rc;
        }
    }
    const uint8_t *p = buf;
    while (n) {
        size_t k = n < GUTS_PKT_BAND_DATA_MAX ? n : GUTS_PKT_BAND_DATA_MAX;
        char head[5];
        guts_pkt_header(head, k + 1);
        head[4] = 1;
        if ((rc = pipe_write(u, head, 5)) || (rc = pipe_write(u, p, k))) {
            u->client_gone = 1;
            return rc;
        }
        u->pack_bytes += k;
        p += k;
        n -= k;
    }
    return GUTS_OK;
}

/* deepen: the shallow-info section, before the packfile section. */
static int shallow_info(void *ctx, const guts_id *shallow, size_t nshallow,
                        const guts_id *unshallow, size_t nunshallow)
{
    git_upload *u = ctx;
    git_buf b = {0};
    char hex[GUTS_HEX_LEN + 1];
    git_buf_pkt(&b, "shallow-info\n");
    for (size_t i = 0; i < nshallow; i++) {
        guts_id_to_hex(&shallow[i], hex);
        git_buf_pkt(&b, "shallow %s\n", hex);
    }
    for (size_t i = 0; i < nunshallow; i++) {
        guts_id_to_hex(&unshallow[i], hex);
        git_buf_pkt(&b, "unshallow %s\n", hex);
    }
    git_buf_put(&b, "0001", 4);
    int rc = b.oom ? GUTS_ENOMEM : pipe_write(u, b.p, b.len);
    git_buf_free(&b);
    return rc;
}

typedef struct tag_list {
    guts_repo *r;
    guts_id *v;
    size_t n, cap;
} tag_list;

static int collect_tag(const guts_ref *ref, void *ctx)
{
    tag_list *t = ctx;
    int type;
    uint64_t size;
    if (strncmp(ref->name, "refs/tags/", 10) != 0 || ref->symref[0]) return 0;
    if (guts_repo_stat(t->r, &ref->target, &type, &size) || type != GUTS_OBJ_TAG) return 0;
    if (t->n == t->cap) {
        size_t c = t->cap ? 2 * t->cap : 64;
        guts_id *nv = realloc(t->v, c * sizeof *nv);
        if (!nv) return GUTS_ENOMEM;
        t->v = nv;
        t->cap = c;
    }
    t->v[t->n++] = ref->target;
    return 0;
}

/* An error after the answer started: before the pack, an ERR pkt-line;
 * inside it, band 3 (git prints both as "remote error"). */
static void upload_fail(git_upload *u, const char *msg)
{
    char line[GUTS_GIT_ERR_MAX + 16];
    size_t n = strlen(msg);
    if (n > GUTS_GIT_ERR_MAX) n = GUTS_GIT_ERR_MAX;
    size_t at = 4;
    if (u->header_sent) {
        line[at++] = 3;
    } else {
        memcpy(line + at, "ERR ", 4);
        at += 4;
    }
    memcpy(line + at, msg, n);
    at += n;
    line[at++] = '\n';
    guts_pkt_header(line, at - 4);
    (void)pipe_write(u, line, at);
}

/* The pack cache's side of guts_git_serve (ctx: the request's entry): the
 * new pack's object list, and an earlier pack whose objects are all among
 * them (the refs moved on: start from it). */
static size_t cache_objects(void *ctx, const guts_id *ids, size_t n)
{
    guts_packcache *pc = ctx;
    guts_packcache_objects(pc, ids, n);
    return guts_packcache_find_base(pc, ids, n) == GUTS_OK ? pc->nbase : 0;
}

static int base_has(const void *ctx, const guts_id *id)
{
    return guts_packcache_base_has(ctx, id);
}

static int base_entries(void *ctx, guts_packw *p)
{
    return guts_packcache_base_entries(ctx, p);
}

/* A pack written to its client (sink; none for the prepare thread, which
 * yields to the pack threads) and to the cache. */
typedef struct cache_tee {
    guts_net_git *g;
    guts_packcache *pc;
    int slot, yield;
    int (*sink)(void *ctx, const void *buf, size_t n);
    void *sink_ctx;
    int sink_rc; /* the client's error, once it went away while others follow */
} cache_tee;

static int tee_sink(void *ctx, const void *buf, size_t n)
{
    cache_tee *t = ctx;
    guts_packcache_write(t->pc, buf, n);
    int users = 0, stop = git_build_wrote(t->g, t->slot, t->pc, n, t->yield, &users);
    if (!t->sink) return stop ? GUTS_EIO : GUTS_OK; /* the node stops */
    int rc = t->sink(t->sink_ctx, buf, n);
    if (rc && users > 1) { /* its client left; the clones following it get it whole */
        t->sink_rc = rc;
        t->sink = NULL;
        rc = GUTS_OK;
    }
    return rc;
}

int git_serve_pack(guts_net_git *g, guts_repo *r, const guts_git_serve_req *q,
                   guts_packcache *pc, int slot, char *err)
{
    cache_tee t = {.g = g,
                   .pc = pc,
                   .slot = slot,
                   .yield = !q->sink,
                   .sink = q->sink,
                   .sink_ctx = q->sink_ctx};
    guts_git_serve_req tq = *q;
    if (pc) {
        tq.sink = tee_sink;
        tq.sink_ctx = &t;
        tq.on_objects = cache_objects;
        tq.base_has = base_has;
        tq.base_entries = base_entries;
        tq.base_ctx = pc;
    }
    guts_git_fetch_stats st;
    int rc = guts_git_serve(r, &tq, &st, err);
    if (pc) git_build_done(g, slot, pc, rc == GUTS_OK);
    return rc ? rc : t.sink_rc;
}

/* A clone's pack from the cache (pc), or from another thread writing it.
 * GUTS_OK: sent. GUTS_ENOTFOUND: to be built here, into the cache when
 * *slot >= 0 (git_serve_pack). Else an error (part may have been sent). */
static int clone_cached(git_upload *u, guts_packcache *pc, int *slot)
{
    *slot = -1;
    int rc = guts_packcache_send(pc, band1_sink, u);
    if (rc != GUTS_ENOTFOUND) return rc;
    int fd = -1, s = -1;
    switch (git_build_claim(u->g, pc, &s, &fd)) {
    case GIT_CLAIM_CACHED: return guts_packcache_send(pc, band1_sink, u);
    case GIT_CLAIM_FOLLOW: {
        git_follow f = {.g = u->g, .slot = s};
        rc = guts_packcache_follow(fd, git_build_grow, &f, band1_sink, u);
        close(fd);
        git_build_leave(u->g, s);
        /* its writer gave up before a byte went out: build it here */
        return rc && !u->header_sent && !u->client_gone ? GUTS_ENOTFOUND : rc;
    }
    case GIT_CLAIM_BUILD: *slot = s; return GUTS_ENOTFOUND;
    default: return GUTS_ENOTFOUND;
    }
}

/* The pack threads at work, for the prepare thread to yield to them. */
static void serving(guts_net_git *g, int d)
{
    pthread_mutex_lock(&g->lock);
    g->serving += (unsigned)d;
    if (d < 0) g->served_ms = git_mono_ms();
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void *upload_main(void *arg)
{
    git_upload *u = arg;
    serving(u->g, 1);
    char err[GUTS_GIT_ERR_MAX] = "";
    guts_repo *r = NULL;
    tag_list tags = {0};
    guts_packcache pc = {.fd = -1, .base_fd = -1};
    int slot = -1;
    int rc = pipe_write(u, u->prefix.p, u->prefix.len);
    if (rc) goto out; /* the client went away */
    rc = guts_repo_open(u->g->n->data, u->key, 0, &r);
    if (rc) {
        snprintf(err, sizeof err, "upload-pack: repository %s: %s", u->key, guts_strerror(rc));
        goto fail;
    }
    tags.r = r;
    if (u->include_tag && (rc = guts_repo_refs(r, 0, collect_tag, &tags))) {
        snprintf(err, sizeof err, "upload-pack: reading tags: %s", guts_strerror(rc));
        goto fail;
    }
    /* A clone (no haves, depth, shallow or filter): from the pack cache, or
     * from the thread writing it there, or written to it as it goes out. */
    if (!u->nhaves && !u->depth && !u->nclient_shallow && u->blob_limit == UINT64_MAX &&
        guts_packcache_init(&pc, guts_data_path(u->g->n->data), u->key, u->wants, u->nwants, tags.v,
                            tags.n) == GUTS_OK) {
        if (u->g->n->opts.git_packs_max) pc.budget = u->g->n->opts.git_packs_max;
        rc = clone_cached(u, &pc, &slot);
        if (rc == GUTS_OK) {
            (void)pipe_write(u, "0000", 4);
            goto out;
        }
        if (rc == GUTS_ECORRUPT) {
            snprintf(err, sizeof err,
                     "upload-pack: a cached pack was damaged (removed): try again");
            goto fail;
        }
        if (u->client_gone) goto out;
        if (u->header_sent) { /* the file failed part-way: say so on band 3 */
            snprintf(err, sizeof err, "upload-pack: reading a cached pack: %s", guts_strerror(rc));
            goto fail;
        }
    }
    guts_git_serve_req q = {.wants = u->wants,
                          .nwants = u->nwants,
                          .haves = u->haves,
                          .nhaves = u->nhaves,
                          .tags = tags.v,
                          .ntags = tags.n,
                          .thin = u->thin,
                          .blob_limit = u->blob_limit,
                          .zlevel = GUTS_NET_GIT_ZLEVEL,
                          .depth = u->depth,
                          .client_shallow = u->client_shallow,
                          .nclient_shallow = u->nclient_shallow,
                          .on_shallow = shallow_info,
                          .sink = band1_sink,
                          .sink_ctx = u};
    rc = git_serve_pack(u->g, r, &q, slot >= 0 ? &pc : NULL, slot, err);
    if (rc == GUTS_EIO && u->header_sent) goto out; /* most likely the client went away */
    if (rc) goto fail;
    if (!u->header_sent) rc = band1_sink(u, NULL, 0); /* cannot happen: a pack has a header */
    if (!rc) (void)pipe_write(u, "0000", 4);
    goto out;
fail:
    upload_fail(u, err[0] ? err : "upload-pack: failed");
out:
    guts_packcache_free(&pc);
    free(tags.v);
    if (r) guts_repo_close(r);
    close(u->wfd);
    u->wfd = -1;
    serving(u->g, -1);
    atomic_store(&u->done, 1);
    return NULL;
}

void git_upload_free(git_upload *u)
{
    if (u->wfd >= 0) close(u->wfd);
    git_buf_free(&u->prefix);
    free(u->wants);
    free(u->haves);
    free(u->client_shallow);
    free(u);
}

/* Join the threads that finished; the number still running. */
size_t git_uploads_reap(guts_net_git *g)
{
    size_t running = 0;
    for (size_t i = 0; i < GUTS_NET_GIT_UPLOADS_MAX; i++) {
        git_upload *u = g->ups[i];
        if (!u) continue;
        if (!atomic_load(&u->done)) {
            running++;
            continue;
        }
        pthread_join(u->th, NULL);
        g->stats.pack_bytes += u->pack_bytes;
        git_upload_free(u);
        g->ups[i] = NULL;
    }
    return running;
}

/* ---- the answer's side: the pipe read from the loop -------------------------------- */

static void reader_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    git_reader *rd = container_of(w, git_reader, io);
    ev_io_stop(loop, w);
    if (!rd->suspended) return;
    rd->suspended = 0;
    MHD_resume_connection(rd->conn);
    guts_net_http_kick(&rd->g->n->http);
}

static ssize_t reader_read(void *cls, uint64_t pos, char *out, size_t max)
{
    git_reader *rd = cls;
    (void)pos;
    if (rd->closing) return MHD_CONTENT_READER_END_WITH_ERROR;
    for (;;) {
        ssize_t k = read(rd->fd, out, max);
        if (k > 0) return k;
        if (k == 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return MHD_CONTENT_READER_END_WITH_ERROR;
        /* the thread has not written more yet: wait for it off the loop */
        rd->suspended = 1;
        MHD_suspend_connection(rd->conn);
        ev_io_start(rd->g->n->loop, &rd->io);
        return 0;
    }
}

static void reader_free(void *cls)
{
    git_reader *rd = cls;
    guts_net_git *g = rd->g;
    ev_io_stop(g->n->loop, &rd->io);
    close(rd->fd); /* the thread's next write fails: it ends */
    for (git_reader **p = &g->readers; *p; p = &(*p)->next)
        if (*p == rd) {
            *p = rd->next;
            break;
        }
    free(rd);
    (void)git_uploads_reap(g); /* its thread has likely finished: count its bytes */
}

/* Start a pack thread for u and queue the answer that streams its pipe.
 * u is the thread's from here (or freed on failure). */
int git_upload_start(guts_net_git *g, struct MHD_Connection *conn, git_upload *u)
{
    size_t slot = GUTS_NET_GIT_UPLOADS_MAX;
    for (size_t i = 0; i < GUTS_NET_GIT_UPLOADS_MAX; i++)
        if (!g->ups[i]) slot = i;
    int fds[2];
    git_reader *rd = NULL;
    if (slot == GUTS_NET_GIT_UPLOADS_MAX) {
        git_upload_free(u);
        g->stats.refused++;
        return git_reply_err(g, conn, 200,
                         "upload-pack: this node is writing %d packs already; try again in a "
                         "moment",
                         GUTS_NET_GIT_UPLOADS_MAX);
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        git_upload_free(u);
        return git_reply_err(g, conn, 503, "upload-pack: no pipe: %s", strerror(errno));
    }
    (void)fcntl(fds[0], F_SETPIPE_SZ, (int)GUTS_NET_GIT_PIPE_BYTES); /* best effort */
    (void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
    u->wfd = fds[1];
    rd = calloc(1, sizeof *rd);
    struct MHD_Response *resp =
        rd ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, GUTS_NET_GIT_BLOCK, reader_read,
                                               rd, reader_free)
           : NULL;
    if (!resp) {
        free(rd);
        close(fds[0]);
        git_upload_free(u);
        return git_reply_err(g, conn, 503, "upload-pack: out of memory");
    }
    rd->g = g;
    rd->conn = conn;
    rd->fd = fds[0];
    ev_io_init(&rd->io, reader_io_cb, fds[0], EV_READ);
    rd->next = g->readers;
    g->readers = rd;
    /* The thread takes no signal: the loop's ev_signal watchers get them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&u->th, NULL, upload_main, u);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        git_upload_free(u); /* closes the write end: the answer ends at once */
        g->stats.refused++;
    } else {
        g->ups[slot] = u;
        g->stats.packs++;
    }
    MHD_add_response_header(resp, "Content-Type", CT_RESULT);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result rc = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}
