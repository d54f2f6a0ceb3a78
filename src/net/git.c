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
 * Negotiation: the haves the store holds as commits are acknowledged; once
 * the wants' commit walk stops at them without passing below the oldest
 * (guts_git_ready: a commit older than every have cannot descend from
 * one), the node says "ready" and sends the pack in the same answer. Until
 * then the client sends older haves, or "done" (with none acknowledged:
 * NAK). An early "ready" costs at most a larger pack, never a wrong one:
 * the walk leaves out everything reachable from any have.
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
 *
 * This file routes the requests, answers info/refs and gathers a POST's
 * body; ls-refs is git_refs.c, fetch's negotiation git_fetch.c, the pack
 * thread and its pipe git_upload.c, and git_int.h is what they share.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fetch.h"
#include "git_int.h"
#include "net.h"
#include "pktline.h"

/* ---- buffers ---------------------------------------------------------------- */

void git_buf_put(git_buf *b, const void *d, size_t n)
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
void git_buf_pkt(git_buf *b, const char *fmt, ...)
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
    git_buf_put(b, line, (size_t)k + 4);
}

void git_buf_free(git_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void req_free(guts_net_http_ctx *c)
{
    git_req *q = (git_req *)c;
    git_buf_free(&q->body);
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
int git_reply_err(guts_net_git *g, struct MHD_Connection *conn, unsigned status,
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

int git_reply_buf(guts_net_git *g, struct MHD_Connection *conn, git_buf *b)
{
    if (b->oom) return git_reply_err(g, conn, 500, "out of memory writing the answer");
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
    git_buf_pkt(&b, "version 2\n");
    git_buf_pkt(&b, "agent=guts\n");
    git_buf_pkt(&b, "ls-refs\n");
    git_buf_pkt(&b, "fetch=shallow filter\n");
    git_buf_pkt(&b, "object-format=sha1\n");
    git_buf_put(&b, "0000", 4);
    rc = b.oom ? reply_text(conn, 500, "guts: out of memory\n")
               : guts_net_http_reply(conn, 200, CT_ADVERT, b.p, b.len);
    git_buf_free(&b);
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
        git_buf_put(out, chunk, got);
        if (zr == Z_OK && got == 0 && z.avail_in == 0) {
            zr = Z_DATA_ERROR; /* truncated */
            break;
        }
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END || out->oom) {
        if (!*why) *why = out->oom ? "out of memory" : "bad gzip body";
        git_buf_free(out);
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
        return git_reply_err(g, conn, 403, "%.*s", (int)strlen(v2_only) - 1, v2_only);
    }
    git_buf body = {0};
    const char *why = NULL;
    if (body_plain(conn, &q->body, &body, &why)) {
        guts_repo_close(r);
        return git_reply_err(g, conn, 400, "upload-pack: %s", why);
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
            rc = git_reply_err(g, conn, 400, "upload-pack: only object-format=sha1 is served");
            goto out;
        }
        /* agent=, server-option=, session-id=: nothing to do */
    }
    if (rc != 1 || !cmd || (p.kind != GUTS_PKT_DELIM && p.kind != GUTS_PKT_FLUSH)) {
        rc = git_reply_err(g, conn, 400,
                       rc == 1 ? "upload-pack: expected command=ls-refs or command=fetch, then "
                                 "a delim-pkt"
                               : "upload-pack: malformed or truncated pkt-line");
        goto out;
    }
    if (p.kind == GUTS_PKT_FLUSH) {
        /* no arguments section: as if empty */
        static const uint8_t flush[4] = {'0', '0', '0', '0'};
        if (cmdlen == 7 && memcmp(cmd, "ls-refs", 7) == 0)
            rc = git_ls_refs(g, conn, r, flush, 4, 0);
        else
            rc = git_reply_err(g, conn, 400, "upload-pack: fetch without arguments");
        goto out;
    }
    /* every remaining packet must be well formed before anything acts on them */
    size_t check = pos;
    while ((rc = guts_pkt_next(body.p, body.len, &check, &p)) == 1)
        ;
    if (rc != 0) {
        rc = git_reply_err(g, conn, 400, "upload-pack: malformed or truncated pkt-line");
        goto out;
    }
    if (cmdlen == 7 && memcmp(cmd, "ls-refs", 7) == 0)
        rc = git_ls_refs(g, conn, r, body.p, body.len, pos);
    else if (cmdlen == 5 && memcmp(cmd, "fetch", 5) == 0)
        rc = git_fetch(g, conn, r, key, body.p, body.len, pos);
    else
        rc = git_reply_err(g, conn, 400, "upload-pack: unknown command '%.*s'",
                       (int)(cmdlen < 40 ? cmdlen : 40), (const char *)cmd);
out:
    guts_repo_close(r);
    git_buf_free(&body);
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
            git_buf_free(&q->body);
            return MHD_YES;
        }
        git_buf_put(&q->body, upload_data, n);
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
    int rc = git_prepare_start(g);
    if (rc) {
        free(g);
        return rc;
    }
    rc = guts_net_http_route_add(&n->http, "/", 1, route_git, g);
    if (rc) {
        git_prepare_stop(g);
        git_prepare_free(g);
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
    git_prepare_stop(g); /* and the pack threads following a build end */
    /* the answers are gone (their pipes closed): each thread ends at its
     * next write, or once its walk is done */
    for (size_t i = 0; i < GUTS_NET_GIT_UPLOADS_MAX; i++) {
        if (!g->ups[i]) continue;
        pthread_join(g->ups[i]->th, NULL);
        git_upload_free(g->ups[i]);
        g->ups[i] = NULL;
    }
    git_prepare_free(g);
    free(g);
    n->git = NULL;
}

guts_net_git_stats guts_net_git_stats_of(const guts_net_node *n)
{
    guts_net_git_stats s = {0};
    if (!n->git) return s;
    pthread_mutex_lock(&n->git->lock);
    s = n->git->stats;
    pthread_mutex_unlock(&n->git->lock);
    return s;
}
