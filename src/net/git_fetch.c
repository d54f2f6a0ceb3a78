/* git_fetch.c - the protocol-v2 fetch command: its arguments parsed and
 * bounded, the negotiation answered (acknowledgments, ready or NAK), and
 * the pack handed to a pack thread (git_upload.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "guts/idset.h"
#include "git_int.h"
#include "pktline.h"

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

int git_fetch(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r, const char *key,
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
                rc = git_reply_err(g, conn, 400, "fetch: bad want '%.*s'",
                                   (int)(alen < 64 ? alen : 64), (const char *)arg);
                goto out;
            }
            int type;
            uint64_t size;
            if (guts_repo_stat(r, &id, &type, &size) != GUTS_OK) {
                guts_id_to_hex(&id, hex);
                g->stats.refused++;
                rc = git_reply_err(g, conn, 200, "upload-pack: not our ref %s (not in %s here)",
                                   hex, key);
                goto out;
            }
            if (guts_ids_push(&wants, &id)) goto oom;
        } else if (guts_pkt_is(&p, "have", &arg, &alen) && arg) {
            if (guts_id_from_hex((const char *)arg, alen, &id)) {
                rc = git_reply_err(g, conn, 400, "fetch: bad have '%.*s'",
                                   (int)(alen < 64 ? alen : 64), (const char *)arg);
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
                rc = git_reply_err(g, conn, 400, "fetch: bad shallow line");
                goto out;
            }
            if (guts_ids_push(&shallow, &id)) goto oom;
        } else if (guts_pkt_is(&p, "deepen", &arg, &alen) && arg && p.data[6] == ' ') {
            uint64_t v = 0;
            size_t i = 0;
            for (; i < alen && i < 10 && arg[i] >= '0' && arg[i] <= '9'; i++)
                v = v * 10 + (uint64_t)(arg[i] - '0');
            if (i == 0 || i != alen || v == 0 || v > GUTS_NET_GIT_DEPTH_MAX) {
                rc = git_reply_err(g, conn, 400, "fetch: deepen takes 1..%u",
                               (unsigned)GUTS_NET_GIT_DEPTH_MAX);
                goto out;
            }
            depth = (uint32_t)v;
        } else if (guts_pkt_is(&p, "deepen-since", &arg, &alen) ||
                   guts_pkt_is(&p, "deepen-not", &arg, &alen) ||
                   guts_pkt_is(&p, "deepen-relative", &arg, &alen)) {
            rc = git_reply_err(g, conn, 400,
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
                rc = git_reply_err(g, conn, 400,
                               "fetch: filter '%.*s' is not served here (blob:none and "
                               "blob:limit=N are)",
                               (int)(alen < 64 ? alen : 64), (const char *)arg);
                goto out;
            }
        } else {
            rc = git_reply_err(g, conn, 400, "fetch: unexpected argument '%.*s'",
                           (int)(p.len < 80 ? p.len : 80), (const char *)p.data);
            goto out;
        }
    }
    if (rc != 1 || p.kind != GUTS_PKT_FLUSH) {
        rc = git_reply_err(g, conn, 400, "fetch: the request must end with a flush-pkt");
        goto out;
    }
    if (wants.n == 0) {
        rc = git_reply_err(g, conn, 400, "fetch: no want");
        goto out;
    }
    g->stats.fetches++;
    u = calloc(1, sizeof *u);
    if (!u) goto oom;
    u->wfd = -1;
    if (!done) {
        git_buf_pkt(&u->prefix, "acknowledgments\n");
        for (size_t i = 0; i < common.n; i++) {
            guts_id_to_hex(&common.v[i], hex);
            git_buf_pkt(&u->prefix, "ACK %s\n", hex);
        }
        if (common.n == 0 || !guts_git_ready(r, wants.v, wants.n, common.v, common.n)) {
            /* nothing in common yet, or not what the wants descend from:
             * the client sends older haves, or done */
            if (common.n == 0) git_buf_pkt(&u->prefix, "NAK\n");
            git_buf_put(&u->prefix, "0000", 4);
            rc = git_reply_buf(g, conn, &u->prefix);
            goto out;
        }
        git_buf_pkt(&u->prefix, "ready\n");
        git_buf_put(&u->prefix, "0001", 4);
    }
    if (u->prefix.oom) goto oom;
    if (git_uploads_reap(g) == GUTS_NET_GIT_UPLOADS_MAX) {
        g->stats.refused++;
        rc = git_reply_err(g, conn, 200,
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
    return git_upload_start(g, conn, u);
oom:
    rc = git_reply_err(g, conn, 503, "upload-pack: out of memory");
out:
    if (u) git_upload_free(u);
    free(wants.v);
    free(haves.v);
    free(common.v);
    free(shallow.v);
    return rc;
}
