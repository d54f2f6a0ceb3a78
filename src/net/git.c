/* git.c - git smart HTTP on the node's --http listener: any stock git
 * clones and fetches http://NODE:PORT/OWNER/NAME from the replicated store.
 *
 * Protocol v2 only (gitprotocol-v2(5), gitprotocol-http(5)):
 *   GET  /OWNER/NAME[.git]/info/refs?service=git-upload-pack  capabilities
 *   POST /OWNER/NAME[.git]/git-upload-pack   command=ls-refs | command=fetch
 * A client that does not ask for version 2 (Git-Protocol: version=2) gets
 * 403 with a line naming protocol v2, which git prints; so does a push
 * (service=git-receive-pack), whose line names guts:// and the docs. HTTP
 * is stateless: every fetch request carries its wants and all the haves
 * the client still sends, so the node keeps nothing between requests.
 *
 * Negotiation: the haves the store holds as commits are acknowledged; as
 * soon as one is, the node says "ready" and sends the pack in the same
 * answer (its walk leaves out everything reachable from any have, so an
 * early "ready" costs at most a larger pack, never a wrong one); with none
 * it answers NAK and the client sends older haves, or "done".
 *
 * The pack is never built in memory and never written on the loop: a pack
 * thread (at most GUTS_NET_GIT_UPLOADS_MAX at once) opens its own handle
 * on the repository (the store's envs are MDB_NOTLS and shared), selects
 * the objects and writes the pack with the remote helper's walk and the
 * pack writer (guts_git_serve: the store's deltas as git REF_DELTAs),
 * framed as side-band-64k pkt-lines, into a pipe. The loop reads that
 * pipe without blocking from libmicrohttpd's content reader; when it is
 * empty the connection is suspended and an ev_io on the pipe resumes it.
 * So a client that reads slowly fills the pipe and the thread waits; one
 * that goes away closes the pipe and the thread's next write ends it.
 * (MHD_create_response_from_pipe would read the pipe blocking, stalling
 * the loop while the thread selects objects: not used.)
 *
 * Everything a client sends is bounded before it is kept: the path, the
 * body (GUTS_NET_GIT_REQUEST_MAX, also after gunzip), every pkt-line
 * (pktline.c), the counts of prefixes; a want must name a stored object.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fetch.h"
#include "idset.h"
#include "pack.h"
#include "guts/gitobj.h"
#include "net.h"
#include "pktline.h"

#define CT_ADVERT "application/x-git-upload-pack-advertisement"
#define CT_RESULT "application/x-git-upload-pack-result"
#define CT_TEXT "text/plain; charset=utf-8"

/* Tag chains longer than this are malformed (as fetch.c). */
#define PEEL_DEPTH_MAX 32

/* ---- buffers ---------------------------------------------------------------- */

typedef struct git_buf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} git_buf;

static void buf_put(git_buf *b, const void *d, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->len + n)
            c *= 2;
        uint8_t *np = realloc(b->p, c);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* One data pkt-line of printf text (which ends with its own LF). */
static void buf_pkt(git_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_pkt(git_buf *b, const char *fmt, ...)
{
    char line[2 * GUTS_REFNAME_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + 4, sizeof line - 4, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof line - 4) {
        b->oom = 1; /* a line this long cannot come from a valid ref */
        return;
    }
    guts_pkt_header(line, (size_t)k);
    buf_put(b, line, (size_t)k + 4);
}

static void buf_free(git_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- the service ------------------------------------------------------------- */

struct git_reader;

/* One pack being written: the thread's job. */
typedef struct git_upload {
    struct guts_net_git *g;
    pthread_t th;
    atomic_int done; /* the thread has finished: join it */
    int wfd;         /* the pipe's write end (the thread closes it) */
    char key[GUTS_KEY_MAX + 1];
    git_buf prefix; /* sent before the pack: the acknowledgments section */
    guts_id *wants, *haves;
    size_t nwants, nhaves;
    int thin, include_tag;
    uint64_t blob_limit;
    uint32_t depth;          /* deepen N; 0: none */
    guts_id *client_shallow; /* the client's "shallow" lines */
    size_t nclient_shallow;
    int header_sent; /* "packfile" went out: errors go on band 3 now */
    uint64_t pack_bytes;
} git_upload;

/* The answer's side of one pack: the pipe's read end. */
typedef struct git_reader {
    struct guts_net_git *g;
    struct MHD_Connection *conn;
    int fd;
    ev_io io;
    int suspended, closing;
    struct git_reader *next;
} git_reader;

typedef struct guts_net_git {
    guts_net_node *n;
    git_upload *ups[GUTS_NET_GIT_UPLOADS_MAX];
    git_reader *readers;
    guts_net_git_stats stats;
} guts_net_git;

/* A POST's body, gathered across the handler's calls. */
typedef struct git_req {
    guts_net_http_ctx base;
    git_buf body;
    int too_big;
} git_req;

static void req_free(guts_net_http_ctx *c)
{
    git_req *q = (git_req *)c;
    buf_free(&q->body);
    free(q);
}

static int reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t n = k < 0 ? 0 : (size_t)k >= sizeof text ? sizeof text - 1 : (size_t)k;
    return guts_net_http_reply(conn, status, CT_TEXT, text, n);
}

/* A protocol error as git shows it: one "ERR" pkt-line ("remote error: ..."). */
static int reply_err(guts_net_git *g, struct MHD_Connection *conn, unsigned status,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int reply_err(guts_net_git *g, struct MHD_Connection *conn, unsigned status,
                     const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + 8, sizeof line - 9, fmt, ap);
    va_end(ap);
    size_t n = k < 0 ? 0 : (size_t)k >= sizeof line - 9 ? sizeof line - 10 : (size_t)k;
    memcpy(line + 4, "ERR ", 4);
    line[8 + n] = '\n';
    guts_pkt_header(line, n + 5);
    if (status >= 400) g->stats.bad++;
    return guts_net_http_reply(conn, status, CT_RESULT, line, n + 9);
}

static int reply_buf(guts_net_git *g, struct MHD_Connection *conn, git_buf *b)
{
    if (b->oom) return reply_err(g, conn, 500, "out of memory writing the answer");
    return guts_net_http_reply(conn, 200, CT_RESULT, b->p, b->len);
}

/* ---- paths -------------------------------------------------------------------- */

enum { EP_INFO_REFS = 1, EP_UPLOAD, EP_RECEIVE };

/* "/OWNER/NAME[.git]/ENDPOINT" into key and the endpoint; 0 when the path
 * is not a git one. */
static int parse_path(const char *url, char key[GUTS_KEY_MAX + 1], int *ep)
{
    static const struct {
        const char *suffix;
        int ep;
    } eps[] = {{"/info/refs", EP_INFO_REFS},
               {"/git-upload-pack", EP_UPLOAD},
               {"/git-receive-pack", EP_RECEIVE}};
    size_t n = strlen(url);
    if (n < 2 || url[0] != '/') return 0;
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        size_t s = strlen(eps[i].suffix);
        if (n <= s + 1 || strcmp(url + n - s, eps[i].suffix) != 0) continue;
        size_t k = n - s - 1; /* the key, without the leading '/' */
        if (k > 4 && memcmp(url + 1 + k - 4, ".git", 4) == 0) k -= 4;
        if (k > GUTS_KEY_MAX) k = GUTS_KEY_MAX + 1; /* too long: the check below refuses */
        if (k > GUTS_KEY_MAX) {
            key[0] = '\0';
        } else {
            memcpy(key, url + 1, k);
            key[k] = '\0';
        }
        *ep = eps[i].ep;
        return 1;
    }
    return 0;
}

/* Open the repository named by key for an answer: 0 and *r, or the
 * answer already queued (*answered set). */
static int open_served(guts_net_git *g, struct MHD_Connection *conn, const char *key,
                       guts_repo **r, int *answered)
{
    *answered = 1;
    *r = NULL;
    if (!key[0] || guts_repo_key_check(key) != GUTS_OK) {
        g->stats.bad++;
        return reply_text(conn, 400,
                          "guts: not a repository path: use http://NODE:PORT/OWNER/NAME\n");
    }
    if (!guts_net_http_repo_served(&g->n->opts, key)) {
        g->stats.refused++;
        return reply_text(conn, 404, "guts: repository %s is not served here (--http-repos)\n",
                          key);
    }
    int rc = guts_repo_open(g->n->data, key, 0, r);
    if (rc == GUTS_ENOTFOUND) {
        g->stats.refused++;
        return reply_text(conn, 404, "guts: this node holds no repository %s\n", key);
    }
    if (rc) {
        *r = NULL;
        return reply_text(conn, 503, "guts: repository %s cannot be read here: %s\n", key,
                          guts_strerror(rc));
    }
    *answered = 0;
    return MHD_YES;
}

static int wants_v2(struct MHD_Connection *conn)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Git-Protocol");
    /* "version=2", possibly among other colon-separated parameters */
    for (const char *p = v; p && *p;) {
        if (strncmp(p, "version=2", 9) == 0 && (p[9] == '\0' || p[9] == ':')) return 1;
        p = strchr(p, ':');
        if (p) p++;
    }
    return 0;
}

static const char push_refused[] =
    "guts: this node does not take pushes over HTTP; push with guts://OWNER/NAME "
    "(git-remote-guts) on a machine with guts installed: see docs/operations.md\n";
static const char v2_only[] =
    "guts: this node serves git protocol version 2 only; use git 2.18 or later "
    "without -c protocol.version=0 or 1 (protocol.version=2 is git's default since 2.26)\n";

/* ---- info/refs ------------------------------------------------------------------ */

static int info_refs(guts_net_git *g, struct MHD_Connection *conn, const char *key,
                     const char *method)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, 405, "guts: info/refs takes GET\n");
    const char *svc = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "service");
    if (svc && strcmp(svc, "git-receive-pack") == 0) {
        g->stats.refused++;
        return reply_text(conn, 403, "%s", push_refused);
    }
    if (!svc || strcmp(svc, "git-upload-pack") != 0) {
        g->stats.refused++;
        return reply_text(conn, 403,
                          "guts: only git's smart HTTP protocol (service=git-upload-pack, "
                          "protocol version 2) is served here\n");
    }
    guts_repo *r;
    int answered, rc = open_served(g, conn, key, &r, &answered);
    if (answered) return rc;
    guts_repo_close(r);
    if (!wants_v2(conn)) {
        g->stats.refused++;
        return reply_text(conn, 403, "%s", v2_only);
    }
    g->stats.info_refs++;
    git_buf b = {0};
    buf_pkt(&b, "version 2\n");
    buf_pkt(&b, "agent=guts\n");
    buf_pkt(&b, "ls-refs\n");
    buf_pkt(&b, "fetch=shallow filter\n");
    buf_pkt(&b, "object-format=sha1\n");
    buf_put(&b, "0000", 4);
    rc = b.oom ? reply_text(conn, 500, "guts: out of memory\n")
               : guts_net_http_reply(conn, 200, CT_ADVERT, b.p, b.len);
    buf_free(&b);
    return rc;
}

/* ---- ls-refs ---------------------------------------------------------------------- */

typedef struct ref_ent {
    char *name;
    guts_id id;
    char *symref; /* HEAD's target, or NULL */
} ref_ent;

typedef struct ref_list {
    ref_ent *v;
    size_t n, cap;
    int oom;
} ref_list;

static int collect_ref(const guts_ref *ref, void *ctx)
{
    ref_list *l = ctx;
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 64;
        ref_ent *nv = realloc(l->v, c * sizeof *nv);
        if (!nv) return l->oom = GUTS_ENOMEM;
        l->v = nv;
        l->cap = c;
    }
    ref_ent *e = &l->v[l->n];
    e->name = strdup(ref->name);
    e->symref = ref->symref[0] ? strdup(ref->symref) : NULL;
    e->id = ref->target;
    if (!e->name || (ref->symref[0] && !e->symref)) {
        free(e->name);
        free(e->symref);
        return l->oom = GUTS_ENOMEM;
    }
    l->n++;
    return 0;
}

static void refs_free(ref_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].symref);
    }
    free(l->v);
}

static const ref_ent *ref_find(const ref_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) /* only HEAD's target is looked up: once */
        if (!l->v[i].symref && strcmp(l->v[i].name, name) == 0) return &l->v[i];
    return NULL;
}

/* Follow annotated tags from id: 1 and *out when id is a tag (its final
 * object), 0 when it is not one, <0 on a store error or a broken chain. */
static int peel(guts_repo *r, const guts_id *id, guts_id *out)
{
    guts_id cur = *id;
    for (int depth = 0; depth < PEEL_DEPTH_MAX; depth++) {
        int type;
        uint64_t size;
        int rc = guts_repo_stat(r, &cur, &type, &size);
        if (rc) return depth ? rc : 0;
        if (type != GUTS_OBJ_TAG) {
            *out = cur;
            return depth > 0;
        }
        void *data;
        size_t len;
        if ((rc = guts_repo_get(r, &cur, &type, &data, &len))) return rc;
        int ok = guts_tag_target(data, len, &cur) == GUTS_OK;
        free(data);
        if (!ok) return GUTS_ECORRUPT;
    }
    return GUTS_ECORRUPT;
}

static int ls_refs(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r,
                   const uint8_t *body, size_t len, size_t pos)
{
    int symrefs = 0, peeled = 0;
    const uint8_t *pfx[GUTS_NET_GIT_PREFIXES_MAX];
    size_t pfxlen[GUTS_NET_GIT_PREFIXES_MAX], npfx = 0;
    guts_pkt p;
    int rc;
    while ((rc = guts_pkt_next(body, len, &pos, &p)) == 1 && p.kind == GUTS_PKT_DATA) {
        const uint8_t *arg;
        size_t alen;
        if (guts_pkt_is(&p, "symrefs", &arg, &alen) && !arg)
            symrefs = 1;
        else if (guts_pkt_is(&p, "peel", &arg, &alen) && !arg)
            peeled = 1;
        else if (guts_pkt_is(&p, "unborn", &arg, &alen) && !arg)
            ; /* not advertised; an unborn HEAD is left out */
        else if (guts_pkt_is(&p, "ref-prefix", &arg, &alen) && arg && p.data[10] == ' ') {
            if (npfx == GUTS_NET_GIT_PREFIXES_MAX)
                return reply_err(g, conn, 400, "ls-refs: more than %d ref-prefix arguments",
                                 GUTS_NET_GIT_PREFIXES_MAX);
            pfx[npfx] = arg;
            pfxlen[npfx++] = alen;
        } else {
            return reply_err(g, conn, 400, "ls-refs: unexpected argument '%.*s'",
                             (int)(p.len < 80 ? p.len : 80), (const char *)p.data);
        }
    }
    if (rc != 1 || p.kind != GUTS_PKT_FLUSH)
        return reply_err(g, conn, 400, "ls-refs: the request must end with a flush-pkt");
    ref_list l = {0};
    rc = guts_repo_refs(r, 0, collect_ref, &l);
    if (rc) {
        refs_free(&l);
        return reply_err(g, conn, 500, "ls-refs: reading refs: %s", guts_strerror(rc));
    }
    git_buf b = {0};
    for (size_t i = 0; i < l.n; i++) {
        const ref_ent *e = &l.v[i];
        size_t nl = strlen(e->name);
        int match = npfx == 0;
        for (size_t j = 0; j < npfx && !match; j++)
            match = pfxlen[j] <= nl && memcmp(e->name, pfx[j], pfxlen[j]) == 0;
        if (!match) continue;
        guts_id id = e->id;
        if (e->symref) {
            const ref_ent *t = ref_find(&l, e->symref);
            if (!t) continue; /* unborn */
            id = t->id;
        }
        char hex[GUTS_HEX_LEN + 1], phex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&id, hex);
        guts_id peel_to;
        int pr = peeled ? peel(r, &id, &peel_to) : 0;
        if (pr == 1) guts_id_to_hex(&peel_to, phex);
        buf_pkt(&b, "%s %s%s%s%s%s\n", hex, e->name,
                symrefs && e->symref ? " symref-target:" : "",
                symrefs && e->symref ? e->symref : "", pr == 1 ? " peeled:" : "",
                pr == 1 ? phex : "");
    }
    buf_put(&b, "0000", 4);
    refs_free(&l);
    g->stats.ls_refs++;
    rc = reply_buf(g, conn, &b);
    buf_free(&b);
    return rc;
}

/* ---- the pack thread --------------------------------------------------------------- */

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
        if ((rc = pipe_write(u, "000dpackfile\n", 13))) return rc;
    }
    const uint8_t *p = buf;
    while (n) {
        size_t k = n < GUTS_PKT_BAND_DATA_MAX ? n : GUTS_PKT_BAND_DATA_MAX;
        char head[5];
        guts_pkt_header(head, k + 1);
        head[4] = 1;
        if ((rc = pipe_write(u, head, 5)) || (rc = pipe_write(u, p, k))) return rc;
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
    buf_pkt(&b, "shallow-info\n");
    for (size_t i = 0; i < nshallow; i++) {
        guts_id_to_hex(&shallow[i], hex);
        buf_pkt(&b, "shallow %s\n", hex);
    }
    for (size_t i = 0; i < nunshallow; i++) {
        guts_id_to_hex(&unshallow[i], hex);
        buf_pkt(&b, "unshallow %s\n", hex);
    }
    buf_put(&b, "0001", 4);
    int rc = b.oom ? GUTS_ENOMEM : pipe_write(u, b.p, b.len);
    buf_free(&b);
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

static void *upload_main(void *arg)
{
    git_upload *u = arg;
    char err[GUTS_GIT_ERR_MAX] = "";
    guts_repo *r = NULL;
    tag_list tags = {0};
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
    guts_git_fetch_stats st;
    rc = guts_git_serve(r, &q, &st, err);
    if (rc == GUTS_EIO && u->header_sent) goto out; /* most likely the client went away */
    if (rc) goto fail;
    if (!u->header_sent) rc = band1_sink(u, NULL, 0); /* cannot happen: a pack has a header */
    if (!rc) (void)pipe_write(u, "0000", 4);
    goto out;
fail:
    upload_fail(u, err[0] ? err : "upload-pack: failed");
out:
    free(tags.v);
    if (r) guts_repo_close(r);
    close(u->wfd);
    u->wfd = -1;
    atomic_store(&u->done, 1);
    return NULL;
}

static void upload_free(git_upload *u)
{
    if (u->wfd >= 0) close(u->wfd);
    buf_free(&u->prefix);
    free(u->wants);
    free(u->haves);
    free(u->client_shallow);
    free(u);
}

/* Join the threads that finished; the number still running. */
static size_t uploads_reap(guts_net_git *g)
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
        upload_free(u);
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
    (void)uploads_reap(g); /* its thread has likely finished: count its bytes */
}

/* Start a pack thread for u and queue the answer that streams its pipe.
 * u is the thread's from here (or freed on failure). */
static int upload_start(guts_net_git *g, struct MHD_Connection *conn, git_upload *u)
{
    size_t slot = GUTS_NET_GIT_UPLOADS_MAX;
    for (size_t i = 0; i < GUTS_NET_GIT_UPLOADS_MAX; i++)
        if (!g->ups[i]) slot = i;
    int fds[2];
    git_reader *rd = NULL;
    if (slot == GUTS_NET_GIT_UPLOADS_MAX) {
        upload_free(u);
        g->stats.refused++;
        return reply_err(g, conn, 200,
                         "upload-pack: this node is writing %d packs already; try again in a "
                         "moment",
                         GUTS_NET_GIT_UPLOADS_MAX);
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        upload_free(u);
        return reply_err(g, conn, 503, "upload-pack: no pipe: %s", strerror(errno));
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
        upload_free(u);
        return reply_err(g, conn, 503, "upload-pack: out of memory");
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
        upload_free(u); /* closes the write end: the answer ends at once */
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

/* ---- fetch ---------------------------------------------------------------------- */

/* "blob:none" or "blob:limit=N[kmg]": *limit; GUTS_EINVAL otherwise. */
static int parse_filter(const uint8_t *s, size_t n, uint64_t *limit)
{
    if (n == 9 && memcmp(s, "blob:none", 9) == 0) {
        *limit = 0;
        return GUTS_OK;
    }
    if (n < 12 || memcmp(s, "blob:limit=", 11) != 0) return GUTS_EINVAL;
    uint64_t v = 0;
    size_t i = 11;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10 / 1024 / 1024 / 1024) return GUTS_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 11) return GUTS_EINVAL;
    if (i + 1 == n) {
        switch (s[i] | 0x20) {
        case 'k': v <<= 10; break;
        case 'm': v <<= 20; break;
        case 'g': v <<= 30; break;
        default: return GUTS_EINVAL;
        }
    } else if (i != n) {
        return GUTS_EINVAL;
    }
    *limit = v;
    return GUTS_OK;
}

static int fetch(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r, const char *key,
                 const uint8_t *body, size_t len, size_t pos)
{
    guts_ids wants = {0}, haves = {0}, common = {0}, shallow = {0};
    int done = 0, thin = 0, include_tag = 0, rc;
    uint32_t depth = 0;
    uint64_t blob_limit = UINT64_MAX;
    guts_pkt p;
    char hex[GUTS_HEX_LEN + 1];
    git_upload *u = NULL;
    while ((rc = guts_pkt_next(body, len, &pos, &p)) == 1 && p.kind == GUTS_PKT_DATA) {
        const uint8_t *arg;
        size_t alen;
        guts_id id;
        if (guts_pkt_is(&p, "want", &arg, &alen) && arg) {
            if (guts_id_from_hex((const char *)arg, alen, &id)) {
                rc = reply_err(g, conn, 400, "fetch: bad want '%.*s'", (int)(alen < 64 ? alen : 64),
                               (const char *)arg);
                goto out;
            }
            int type;
            uint64_t size;
            if (guts_repo_stat(r, &id, &type, &size) != GUTS_OK) {
                guts_id_to_hex(&id, hex);
                g->stats.refused++;
                rc = reply_err(g, conn, 200, "upload-pack: not our ref %s (not in %s here)", hex,
                               key);
                goto out;
            }
            if (guts_ids_push(&wants, &id)) goto oom;
        } else if (guts_pkt_is(&p, "have", &arg, &alen) && arg) {
            if (guts_id_from_hex((const char *)arg, alen, &id)) {
                rc = reply_err(g, conn, 400, "fetch: bad have '%.*s'", (int)(alen < 64 ? alen : 64),
                               (const char *)arg);
                goto out;
            }
            if (guts_ids_push(&haves, &id)) goto oom;
            int type;
            uint64_t size;
            if (guts_repo_stat(r, &id, &type, &size) == GUTS_OK && type == GUTS_OBJ_COMMIT &&
                guts_ids_push(&common, &id))
                goto oom;
        } else if (guts_pkt_is(&p, "shallow", &arg, &alen) && arg) {
            if (guts_id_from_hex((const char *)arg, alen, &id)) {
                rc = reply_err(g, conn, 400, "fetch: bad shallow line");
                goto out;
            }
            if (guts_ids_push(&shallow, &id)) goto oom;
        } else if (guts_pkt_is(&p, "deepen", &arg, &alen) && arg && p.data[6] == ' ') {
            uint64_t v = 0;
            size_t i = 0;
            for (; i < alen && i < 10 && arg[i] >= '0' && arg[i] <= '9'; i++)
                v = v * 10 + (uint64_t)(arg[i] - '0');
            if (i == 0 || i != alen || v == 0 || v > GUTS_NET_GIT_DEPTH_MAX) {
                rc = reply_err(g, conn, 400, "fetch: deepen takes 1..%u",
                               (unsigned)GUTS_NET_GIT_DEPTH_MAX);
                goto out;
            }
            depth = (uint32_t)v;
        } else if (guts_pkt_is(&p, "deepen-since", &arg, &alen) ||
                   guts_pkt_is(&p, "deepen-not", &arg, &alen) ||
                   guts_pkt_is(&p, "deepen-relative", &arg, &alen)) {
            rc = reply_err(g, conn, 400,
                           "fetch: only --depth N is served here (not --shallow-since, "
                           "--shallow-exclude or --deepen)");
            goto out;
        } else if (guts_pkt_is(&p, "done", &arg, &alen) && !arg) {
            done = 1;
        } else if (guts_pkt_is(&p, "thin-pack", &arg, &alen) && !arg) {
            thin = 1;
        } else if (guts_pkt_is(&p, "include-tag", &arg, &alen) && !arg) {
            include_tag = 1;
        } else if ((guts_pkt_is(&p, "no-progress", &arg, &alen) ||
                    guts_pkt_is(&p, "ofs-delta", &arg, &alen)) &&
                   !arg) {
            /* no progress is ever sent; deltas go as REF_DELTA, which every
             * git reads */
        } else if (guts_pkt_is(&p, "filter", &arg, &alen) && arg) {
            if (parse_filter(arg, alen, &blob_limit)) {
                rc = reply_err(g, conn, 400,
                               "fetch: filter '%.*s' is not served here (blob:none and "
                               "blob:limit=N are)",
                               (int)(alen < 64 ? alen : 64), (const char *)arg);
                goto out;
            }
        } else {
            rc = reply_err(g, conn, 400, "fetch: unexpected argument '%.*s'",
                           (int)(p.len < 80 ? p.len : 80), (const char *)p.data);
            goto out;
        }
    }
    if (rc != 1 || p.kind != GUTS_PKT_FLUSH) {
        rc = reply_err(g, conn, 400, "fetch: the request must end with a flush-pkt");
        goto out;
    }
    if (wants.n == 0) {
        rc = reply_err(g, conn, 400, "fetch: no want");
        goto out;
    }
    g->stats.fetches++;
    u = calloc(1, sizeof *u);
    if (!u) goto oom;
    u->wfd = -1;
    if (!done) {
        buf_pkt(&u->prefix, "acknowledgments\n");
        for (size_t i = 0; i < common.n; i++) {
            guts_id_to_hex(&common.v[i], hex);
            buf_pkt(&u->prefix, "ACK %s\n", hex);
        }
        if (common.n == 0) {
            /* nothing in common yet: the client sends older haves, or done */
            buf_pkt(&u->prefix, "NAK\n");
            buf_put(&u->prefix, "0000", 4);
            rc = reply_buf(g, conn, &u->prefix);
            goto out;
        }
        buf_pkt(&u->prefix, "ready\n");
        buf_put(&u->prefix, "0001", 4);
    }
    if (u->prefix.oom) goto oom;
    if (uploads_reap(g) == GUTS_NET_GIT_UPLOADS_MAX) {
        g->stats.refused++;
        rc = reply_err(g, conn, 200,
                       "upload-pack: this node is writing %d packs already; try again in a moment",
                       GUTS_NET_GIT_UPLOADS_MAX);
        goto out;
    }
    snprintf(u->key, sizeof u->key, "%s", key);
    u->g = g;
    u->wants = wants.v;
    u->nwants = wants.n;
    u->haves = haves.v;
    u->nhaves = haves.n;
    u->thin = thin;
    u->include_tag = include_tag;
    u->blob_limit = blob_limit;
    u->depth = depth;
    u->client_shallow = shallow.v;
    u->nclient_shallow = shallow.n;
    wants.v = haves.v = shallow.v = NULL;
    free(common.v);
    return upload_start(g, conn, u);
oom:
    rc = reply_err(g, conn, 503, "upload-pack: out of memory");
out:
    if (u) upload_free(u);
    free(wants.v);
    free(haves.v);
    free(common.v);
    free(shallow.v);
    return rc;
}

/* ---- POST git-upload-pack ------------------------------------------------------------ */

/* The body as sent, or gunzipped (git compresses requests over 1 KiB). */
static int body_plain(struct MHD_Connection *conn, git_buf *in, git_buf *out, const char **why)
{
    const char *enc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
    if (!enc || strcmp(enc, "identity") == 0) {
        *out = *in;
        memset(in, 0, sizeof *in);
        return GUTS_OK;
    }
    if (strcmp(enc, "gzip") != 0 && strcmp(enc, "x-gzip") != 0) {
        *why = "unknown Content-Encoding (gzip is taken)";
        return GUTS_EINVAL;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        *why = "out of memory";
        return GUTS_ENOMEM;
    }
    memset(out, 0, sizeof *out);
    z.next_in = in->p;
    z.avail_in = (uInt)in->len;
    int zr = Z_OK;
    uint8_t chunk[16384];
    while (zr != Z_STREAM_END) {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) break;
        size_t got = sizeof chunk - z.avail_out;
        if (out->len + got > GUTS_NET_GIT_REQUEST_MAX) {
            zr = Z_MEM_ERROR;
            *why = "request over the size limit once gunzipped";
            break;
        }
        buf_put(out, chunk, got);
        if (zr == Z_OK && got == 0 && z.avail_in == 0) {
            zr = Z_DATA_ERROR; /* truncated */
            break;
        }
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END || out->oom) {
        if (!*why) *why = out->oom ? "out of memory" : "bad gzip body";
        buf_free(out);
        return GUTS_EINVAL;
    }
    return GUTS_OK;
}

static int upload_pack(guts_net_git *g, struct MHD_Connection *conn, const char *key,
                       git_req *q)
{
    if (q->too_big) {
        g->stats.bad++;
        return reply_text(conn, 413, "guts: request over %u bytes\n", GUTS_NET_GIT_REQUEST_MAX);
    }
    guts_repo *r;
    int answered, rc = open_served(g, conn, key, &r, &answered);
    if (answered) return rc;
    if (!wants_v2(conn)) {
        guts_repo_close(r);
        g->stats.refused++;
        return reply_err(g, conn, 403, "%.*s", (int)strlen(v2_only) - 1, v2_only);
    }
    git_buf body = {0};
    const char *why = NULL;
    if (body_plain(conn, &q->body, &body, &why)) {
        guts_repo_close(r);
        return reply_err(g, conn, 400, "upload-pack: %s", why);
    }
    /* command=..., capabilities, delim, arguments, flush */
    size_t pos = 0;
    guts_pkt p;
    const uint8_t *cmd = NULL, *arg;
    size_t cmdlen = 0, alen;
    while ((rc = guts_pkt_next(body.p, body.len, &pos, &p)) == 1 && p.kind == GUTS_PKT_DATA) {
        if (guts_pkt_is(&p, "command", &arg, &alen) && arg && p.data[7] == '=') {
            cmd = arg;
            cmdlen = alen;
        } else if (guts_pkt_is(&p, "object-format", &arg, &alen) && arg &&
                   !(alen == 4 && memcmp(arg, "sha1", 4) == 0)) {
            rc = reply_err(g, conn, 400, "upload-pack: only object-format=sha1 is served");
            goto out;
        }
        /* agent=, server-option=, session-id=: nothing to do */
    }
    if (rc != 1 || !cmd || (p.kind != GUTS_PKT_DELIM && p.kind != GUTS_PKT_FLUSH)) {
        rc = reply_err(g, conn, 400,
                       rc == 1 ? "upload-pack: expected command=ls-refs or command=fetch, then "
                                 "a delim-pkt"
                               : "upload-pack: malformed or truncated pkt-line");
        goto out;
    }
    if (p.kind == GUTS_PKT_FLUSH) {
        /* no arguments section: as if empty */
        static const uint8_t flush[4] = {'0', '0', '0', '0'};
        if (cmdlen == 7 && memcmp(cmd, "ls-refs", 7) == 0)
            rc = ls_refs(g, conn, r, flush, 4, 0);
        else
            rc = reply_err(g, conn, 400, "upload-pack: fetch without arguments");
        goto out;
    }
    /* every remaining packet must be well formed before anything acts on them */
    size_t check = pos;
    while ((rc = guts_pkt_next(body.p, body.len, &check, &p)) == 1)
        ;
    if (rc != 0) {
        rc = reply_err(g, conn, 400, "upload-pack: malformed or truncated pkt-line");
        goto out;
    }
    if (cmdlen == 7 && memcmp(cmd, "ls-refs", 7) == 0)
        rc = ls_refs(g, conn, r, body.p, body.len, pos);
    else if (cmdlen == 5 && memcmp(cmd, "fetch", 5) == 0)
        rc = fetch(g, conn, r, key, body.p, body.len, pos);
    else
        rc = reply_err(g, conn, 400, "upload-pack: unknown command '%.*s'",
                       (int)(cmdlen < 40 ? cmdlen : 40), (const char *)cmd);
out:
    guts_repo_close(r);
    buf_free(&body);
    return rc;
}

/* ---- the route ------------------------------------------------------------------------ */

static int route_git(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
                     const char *upload_data, size_t *upload_data_size, void **req_ctx)
{
    guts_net_git *g = arg;
    char key[GUTS_KEY_MAX + 1];
    int ep;
    git_req *q = *req_ctx;
    if (!parse_path(url, key, &ep)) {
        if (q) *upload_data_size = 0; /* cannot happen: q is made only for git paths */
        g->n->http.stats.not_found++;
        return reply_text(conn, 404, "not found\n");
    }
    if (ep == EP_INFO_REFS) return info_refs(g, conn, key, method);
    if (ep == EP_RECEIVE) {
        if (*upload_data_size) { /* take the body in, then answer */
            *upload_data_size = 0;
            return MHD_YES;
        }
        g->stats.refused++;
        return reply_text(conn, 403, "%s", push_refused);
    }
    if (strcmp(method, "POST") != 0) return reply_text(conn, 405, "guts: git-upload-pack takes POST\n");
    if (!q) { /* the headers: the body follows in calls of its own */
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->base.free = req_free;
        *req_ctx = q;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->too_big || q->body.len + n > GUTS_NET_GIT_REQUEST_MAX) {
            q->too_big = 1; /* read on and discard; 413 at the end */
            buf_free(&q->body);
            return MHD_YES;
        }
        buf_put(&q->body, upload_data, n);
        if (q->body.oom) return MHD_NO;
        return MHD_YES;
    }
    return upload_pack(g, conn, key, q);
}

int guts_net_git_open(guts_net_node *n)
{
    guts_net_git *g = calloc(1, sizeof *g);
    if (!g) return GUTS_ENOMEM;
    g->n = n;
    int rc = guts_net_http_route_add(&n->http, "/", 1, route_git, g);
    if (rc) {
        free(g);
        return rc;
    }
    n->git = g;
    return 0;
}

void guts_net_git_stop(guts_net_node *n)
{
    guts_net_git *g = n->git;
    if (!g) return;
    for (git_reader *rd = g->readers; rd; rd = rd->next) {
        rd->closing = 1;
        ev_io_stop(n->loop, &rd->io);
        if (!rd->suspended) continue;
        rd->suspended = 0;
        MHD_resume_connection(rd->conn);
    }
}

void guts_net_git_close(guts_net_node *n)
{
    guts_net_git *g = n->git;
    if (!g) return;
    /* the answers are gone (their pipes closed): each thread ends at its
     * next write, or once its walk is done */
    for (size_t i = 0; i < GUTS_NET_GIT_UPLOADS_MAX; i++) {
        if (!g->ups[i]) continue;
        pthread_join(g->ups[i]->th, NULL);
        upload_free(g->ups[i]);
        g->ups[i] = NULL;
    }
    free(g);
    n->git = NULL;
}

guts_net_git_stats guts_net_git_stats_of(const guts_net_node *n)
{
    guts_net_git_stats s = {0};
    if (n->git) s = n->git->stats;
    return s;
}
