/* node_repos.c - the cache of local repositories: an lrepo per repository,
 * sorted by key, with its counters (loaded from the store, refreshed after
 * writes), and the remote-only ones tracked because peers announce them,
 * bounded by CORE_REPOS_MAX.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_internal.h"

typedef struct repo_key {
    const guts_core *c;
    const char *key;
} repo_key;

static int repo_cmp(const void *ctx, size_t i)
{
    const repo_key *k = ctx;
    const char *key = k->c->repos[i]->key;
    return key == k->key ? 0 : strcmp(key, k->key); /* a peer's entry shares its key */
}

static size_t repo_pos(const guts_core *c, const char *key, int *found)
{
    repo_key k = {c, key};
    return guts_lower_bound(c->nrepos, repo_cmp, &k, found);
}

lrepo *core_repo_find(guts_core *c, const char *key)
{
    int found;
    size_t i = repo_pos(c, key, &found);
    return found ? c->repos[i] : NULL;
}

void core_repo_refresh(guts_core *c, lrepo *r)
{
    guts_repo_info info;
    if (c->st.info(c->st.ctx, r->key, &info) != GUTS_OK) return;
    int changed = info.txnid != r->info.txnid || !guts_fp_eq(info.fp, r->info.fp) ||
                  !guts_fp_eq(info.refs_digest, r->info.refs_digest);
    r->info = info;
    if (changed) announce_changed(c, r);
}

static int repo_insert(guts_core *c, size_t pos, const char *key, const guts_repo_info *info,
                       lrepo **out);

int core_repo_load(guts_core *c, const char *key, lrepo **out)
{
    int found;
    size_t pos = repo_pos(c, key, &found);
    if (found) {
        core_repo_refresh(c, c->repos[pos]);
        *out = c->repos[pos];
        return GUTS_OK;
    }
    if (c->nrepos >= CORE_REPOS_MAX) return GUTS_EFULL;
    if (guts_repo_key_check(key) != GUTS_OK) return GUTS_EINVAL;
    guts_repo_info info;
    int rc = c->st.info(c->st.ctx, key, &info);
    if (rc) return rc;
    return repo_insert(c, pos, key, &info, out);
}

int core_repo_announced(guts_core *c, const char *key, peer *from, lrepo **out)
{
    int found;
    size_t pos = repo_pos(c, key, &found);
    if (found) {
        *out = c->repos[pos];
        return GUTS_OK;
    }
    if (guts_repo_key_check(key) != GUTS_OK) return GUTS_EINVAL;
    const char *cap = NULL;
    if (c->nrepos >= CORE_REPOS_MAX)
        cap = "repositories tracked";
    else if (c->nremote >= c->cfg.remote_repos_max)
        cap = "remote-only repositories (--max-remote-repos)";
    else if (from->taken >= c->cfg.peer_repos_max)
        cap = "remote-only repositories from one peer (--max-peer-repos)";
    if (cap) {
        c->ctr.repos_refused++;
        if (!c->refused_logged) {
            char hex[2 * GUTS_NODE_ID_LEN + 1];
            guts_node_id_to_hex(&from->id, hex);
            core_log(c, GUTS_LOG_WARN,
                     "repository %s announced by %s not tracked: at the cap of %s; "
                     "further refusals are only counted (repos_refused)",
                     key, hex, cap);
            c->refused_logged = 1;
        }
        return GUTS_EFULL;
    }
    guts_repo_info info;
    memset(&info, 0, sizeof(info)); /* what an empty repository reports */
    int rc = repo_insert(c, pos, key, &info, out);
    if (rc == GUTS_OK) {
        (*out)->unstored = 1;
        (*out)->changed = 0; /* nothing to announce until it holds something */
        (*out)->origin = from->id;
        from->taken++;
        c->nremote++;
    }
    return rc;
}

/* r stops being remote-only (stored, or dropped): release its counts. */
void core_repo_remote_release(guts_core *c, lrepo *r)
{
    peer *p = members_find(c, &r->origin);
    if (p && p->taken) p->taken--;
    r->unstored = 0;
    c->nremote--;
}

void core_repo_evict_orphans(guts_core *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->nrepos; i++) {
        lrepo *r = c->repos[i];
        if (r->unstored && !r->pulling && !members_find(c, &r->origin)) {
            core_repo_remote_release(c, r);
            members_forget_repo(c, r);
            repo_free_state(r);
            free(r);
            c->ctr.repos_evicted++;
            if (i < c->rr) c->rr--;
            continue;
        }
        c->repos[k++] = r;
    }
    c->nrepos = k;
    if (c->rr >= c->nrepos) c->rr = 0;
}

static int repo_insert(guts_core *c, size_t pos, const char *key, const guts_repo_info *info,
                       lrepo **out)
{
    assert(pos <= c->nrepos);
    if (c->nrepos == c->caprepos) {
        size_t nc = c->caprepos ? 2 * c->caprepos : 16;
        lrepo **p = realloc(c->repos, nc * sizeof(lrepo *));
        if (!p) return GUTS_ENOMEM;
        c->repos = p;
        c->caprepos = nc;
    }
    lrepo *r = calloc(1, sizeof(lrepo));
    if (!r) return GUTS_ENOMEM;
    strcpy(r->key, key);
    r->complete.dense = 1; /* one per repository and node (guts-sim: 10,000s) */
    r->info = *info;
    r->changed = 1;
    memmove(c->repos + pos + 1, c->repos + pos, (c->nrepos - pos) * sizeof(lrepo *));
    c->repos[pos] = r;
    c->nrepos++;
    *out = r;
    return GUTS_OK;
}

int core_repo_rescan_cb(const char *key, void *arg)
{
    guts_core *c = arg;
    lrepo *r;
    core_repo_load(c, key, &r);
    return 0;
}
