/* fetch_serve.c - guts-node's upload-pack selection (guts_git_serve): the
 * fetch walk plus what a served client may ask for besides wants and haves:
 * include-tag, a shallow client's boundary, and deepen.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"
#include "fetch_int.h"

/* fetch_peel's on_tag that does nothing: only the target is wanted. */
static int tag_seen(walk *w, const guts_id *id, int is_tree)
{
    (void)w, (void)id, (void)is_tree;
    return GUTS_OK;
}

/* include-tag: each annotated tag whose (peeled) object goes in the pack
 * goes too, with the tags it passes through. */
static int add_tags(walk *w, const guts_id *tags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (guts_idset_find(&w->objs, &tags[i]) != SIZE_MAX) continue;
        int type;
        guts_id t;
        int rc = fetch_peel(w, &tags[i], &type, &t, tag_seen);
        if (rc == GUTS_ENOTFOUND) continue;
        if (rc) return rc;
        size_t slot = guts_idset_find(&w->objs, &t);
        if (slot == SIZE_MAX || !(w->objs.flags[slot] & O_SEND)) continue;
        if ((rc = fetch_peel(w, &tags[i], &type, &t, fetch_mark_send))) return rc;
    }
    return GUTS_OK;
}

static int is_client_shallow(const guts_git_serve_req *q, const guts_id *id)
{
    for (size_t i = 0; i < q->nclient_shallow; i++)
        if (guts_id_cmp(&q->client_shallow[i], id) == 0) return 1;
    return 0;
}

/* In select_deepen's depths set: the client has this commit (a have that
 * is one of its shallow commits: walked, so its parents can go, not sent). */
#define D_HAVE 0x01

/* deepen: the commits at most depth deep from the wants, breadth first
 * (depth 1: the wants themselves), not past a have; a commit at the limit
 * that has parents is a new shallow boundary. Trees of the haves are
 * marked known first, so what the client has is not sent again. */
static int select_deepen(walk *w, const guts_git_serve_req *q, guts_idset *depths,
                         guts_ids *shallow, guts_ids *unshallow)
{
    int rc;
    guts_idset haveset = {0};
    size_t slot;
    int added;
    for (size_t i = 0; i < q->nhaves; i++) {
        if ((rc = guts_idset_add(&haveset, &q->haves[i], &slot, &added))) goto oom;
        int type;
        void *data;
        size_t len;
        if (fetch_get_obj(w, &q->haves[i], &type, &data, &len) != GUTS_OK) continue;
        commit_info ci = {.id = q->haves[i]};
        if (type == GUTS_OBJ_COMMIT &&
            fetch_parse_commit(w, &q->haves[i], data, len, &ci) == GUTS_OK) {
            guts_id tree = ci.tree;
            free(data);
            if ((rc = fetch_mark_known(w, &tree, 1)) || (rc = fetch_drain(w, fetch_mark_known, 0)))
                goto out;
        } else {
            free(data);
        }
    }
    /* the FIFO: w->sent holds ci indexes in the order found; depths maps a
     * commit to its depth */
    size_t head = 0;
    for (size_t i = 0; i < q->nwants; i++) {
        int type;
        guts_id t;
        if ((rc = fetch_peel(w, &q->wants[i], &type, &t, fetch_mark_send))) goto out;
        if (type != GUTS_OBJ_COMMIT) {
            rc = type == GUTS_OBJ_TREE ? PUSH(w, roots, nroots, caproots, t)
                                       : fetch_mark_send(w, &t, 0);
            if (rc) goto out;
            continue;
        }
        if ((rc = guts_idset_add(depths, &t, &slot, &added))) goto oom;
        if (!added) continue;
        depths->vals[slot] = 1;
        if (guts_idset_find(&haveset, &t) != SIZE_MAX) {
            if (!is_client_shallow(q, &t)) continue;
            depths->flags[slot] |= D_HAVE;
        }
        int ctype;
        void *data;
        size_t len;
        if ((rc = fetch_get_obj(w, &t, &ctype, &data, &len))) goto out;
        commit_info ci = {.id = t};
        rc = fetch_parse_commit(w, &t, data, len, &ci);
        free(data);
        if (rc || (rc = PUSH(w, ci, nci, capci, ci)) ||
            (rc = PUSH(w, sent, nsent, capsent, (uint32_t)(w->nci - 1))))
            goto out;
    }
    while (head < w->nsent) {
        commit_info c = w->ci[w->sent[head++]];
        uint32_t d = depths->vals[guts_idset_find(depths, &c.id)];
        if (c.nparents == 0) continue;
        if (d >= q->depth) {
            if (guts_ids_push(shallow, &c.id)) goto oom;
            continue;
        }
        if (is_client_shallow(q, &c.id) && guts_ids_push(unshallow, &c.id)) goto oom;
        for (uint32_t j = 0; j < c.nparents; j++) {
            guts_id par = w->parents[c.parent_off + j];
            if ((rc = guts_idset_add(depths, &par, &slot, &added))) goto oom;
            if (!added) continue;
            depths->vals[slot] = d + 1;
            if (guts_idset_find(&haveset, &par) != SIZE_MAX) {
                if (!is_client_shallow(q, &par)) continue;
                depths->flags[slot] |= D_HAVE;
            }
            int ctype;
            void *data;
            size_t len;
            rc = fetch_get_obj(w, &par, &ctype, &data, &len);
            if (rc == GUTS_ENOTFOUND) {
                char hex[GUTS_HEX_LEN + 1];
                guts_id_to_hex(&par, hex);
                rc = guts_git_errf(w->err, rc, "commit %s is not in the store", hex);
            }
            if (rc) goto out;
            if (ctype != GUTS_OBJ_COMMIT) {
                free(data);
                rc = fetch_corrupt(w, &par, "expected a commit");
                goto out;
            }
            commit_info pc = {.id = par};
            rc = fetch_parse_commit(w, &par, data, len, &pc);
            free(data);
            if (rc || (rc = PUSH(w, ci, nci, capci, pc)) ||
                (rc = PUSH(w, sent, nsent, capsent, (uint32_t)(w->nci - 1))))
                goto out;
        }
    }
    size_t k = 0; /* the commits the client has stay home */
    for (size_t i = 0; i < w->nsent; i++)
        if (!(depths->flags[guts_idset_find(depths, &w->ci[w->sent[i]].id)] & D_HAVE))
            w->sent[k++] = w->sent[i];
    w->nsent = k;
    if ((rc = fetch_send_sent(w))) goto out;
    rc = GUTS_OK;
    goto out;
oom:
    rc = guts_git_errf(w->err, GUTS_ENOMEM, "out of memory in the walk");
out:
    guts_idset_free(&haveset);
    return rc;
}

/* When every object of q's base pack is in w's pack, take them out of
 * w->send (their flags stay: deltas may name them) and return how many;
 * else 0 and w unchanged. The base then holds nothing the client did not
 * ask for: no object of a deleted ref goes out. */
static size_t leave_out_base(walk *w, const guts_git_serve_req *q, size_t nbase)
{
    size_t hits = 0;
    for (size_t i = 0; i < w->nsend; i++)
        hits += q->base_has(q->base_ctx, &w->send[i]) != 0;
    if (hits != nbase) return 0;
    size_t k = 0;
    for (size_t i = 0; i < w->nsend; i++) {
        if (q->base_has(q->base_ctx, &w->send[i])) continue;
        w->send[k] = w->send[i];
        w->send_key[k] = w->send_key[i];
        k++;
    }
    w->nsend = k;
    return hits;
}

/* The commits the walk decoded are kept for the pack (fetch_kept), up to
 * this many bytes: each was otherwise decoded again with its zstd frame's
 * matches read (guts_repo_get_copies), ~60,000 instructions for a commit of
 * ~700 bytes, against a copy and the fast deflate. zlib's 2,135 commits
 * are ~1.5 MB. Trees are not kept: most are zstd deltas, which go out
 * undecoded (lits_entry), and a kept object would be scanned instead. */
#define SERVE_KEEP_BYTES ((size_t)8 << 20)

int guts_git_serve(guts_repo *r, const guts_git_serve_req *q, guts_git_fetch_stats *st,
                       char *err)
{
    /* No rehash: git's index-pack hashes every object it receives and the
     * clone or fetch then checks the result is connected, so an object
     * that does not hash to its id fails the client's fetch anyway (the
     * store's zstd frames carry checksums against damage on disk). */
    walk w = {.r = r, .zlevel = q->zlevel, .err = err,
              .thin = q->thin, .indexed = 1, .blob_limit = q->blob_limit,
              .commits = {.with_vals = 1}, .by_path = {.with_vals = 1},
              .kept = {.with_vals = 1}, .keep_max = SERVE_KEEP_BYTES, .keep_commits_only = 1};
    guts_progress_start(&w.counting, "counting objects", 0);
    guts_progress_start(&w.writing, "writing objects", 0);
    memset(st, 0, sizeof *st);
    int rc;
    if (q->depth) {
        guts_idset depths = {.with_vals = 1};
        guts_ids shallow = {0}, unshallow = {0};
        rc = select_deepen(&w, q, &depths, &shallow, &unshallow);
        if (!rc && q->on_shallow)
            rc = q->on_shallow(q->sink_ctx, shallow.v, shallow.n, unshallow.v, unshallow.n);
        guts_idset_free(&depths);
        free(shallow.v);
        free(unshallow.v);
    } else {
        rc = fetch_select_objects(&w, q->wants, q->nwants, q->haves, q->nhaves, st);
    }
    if (!rc) rc = add_tags(&w, q->tags, q->ntags);
    size_t nbase = 0, from_base = 0;
    if (!rc && q->on_objects) nbase = q->on_objects(q->base_ctx, w.send, w.nsend);
    if (!rc && q->base_has && nbase && !q->depth && nbase <= w.nsend)
        from_base = leave_out_base(&w, q, nbase);
    guts_packw p = {.fd = -1};
    /* a small pack (a fetch of a few commits) at zlib's default, as
     * fetch_write_pack does: bytes matter more than the milliseconds */
    int level = w.nsend < GUTS_GIT_UNPACK_LIMIT &&
                        (q->zlevel < REMOTE_SMALL_PACK_LEVEL || q->zlevel == GUTS_PACK_FAST)
                    ? REMOTE_SMALL_PACK_LEVEL
                    : q->zlevel;
    if (!rc && (rc = guts_packw_open(&p, -1, level, 0, (uint32_t)(w.nsend + from_base))))
        rc = guts_git_errf(err, rc, "starting the pack: %s", guts_strerror(rc));
    else if (!rc) {
        p.sink = q->sink;
        p.sink_ctx = q->sink_ctx;
        if (from_base && (rc = q->base_entries(q->base_ctx, &p)))
            rc =
                guts_git_errf(err, rc, "%s",
                              rc == GUTS_ECORRUPT ? "a cached pack was damaged (removed): try again"
                                                  : "writing the pack from a cached one");
        /* A clone's pack: deflated and written on a second thread while
         * this one reads and deltifies (with one CPU that only costs). */
        if (!rc && w.nsend >= GUTS_GIT_UNPACK_LIMIT && sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
            (rc = guts_packw_async(&p)))
            rc = guts_git_errf(err, rc, "starting the pack: %s", guts_strerror(rc));
        if (!rc) rc = fetch_pack_entries(&w, &p, st);
        uint8_t sum[GUTS_ID_LEN];
        if (!rc && (rc = guts_packw_finish(&p, sum)) != GUTS_OK)
            rc = guts_git_errf(err, rc, "writing the pack: %s", guts_strerror(rc));
        if (!rc) st->pack_bytes = p.total;
    }
    guts_packw_free(&p);
    fetch_walk_free(&w);
    return rc;
}
