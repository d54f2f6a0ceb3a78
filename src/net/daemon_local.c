/* daemon_local.c - other processes' writes to the data dir, noticed by a poll.
 *
 * Other processes write to the data dir (guts import); LMDB lets them, and
 * a poll of every repository's counters notices within GUTS_NET_POLL_S. A
 * change in the object set or refs digest (not merely the transaction id,
 * which our own reads of meta never move but our own writes do) is handed
 * to the core, which announces it, rate limited. Our own fetches also show
 * up here; that costs at most one extra announce per interval, never a loop,
 * since an announce changes nothing in the store.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guts/refmerge.h"
#include "daemon.h"

/* The store lists repositories in the same order at every poll, so the
 * next key is almost always the one after the last found: a scan of the
 * whole list for each key cost 500,000 strcmp a poll at 1,000 repositories. */
static guts_net_watch *watch_find(guts_net_node *n, const char *key)
{
    size_t h = n->watch_next;
    if (h < n->nwatch && strcmp(n->watch[h].key, key) == 0) {
        n->watch_next = h + 1;
        return &n->watch[h];
    }
    for (size_t i = 0; i < n->nwatch; i++)
        if (strcmp(n->watch[i].key, key) == 0) {
            n->watch_next = i + 1;
            return &n->watch[i];
        }
    return NULL;
}

static int count_conflict(const guts_ref *ref, void *arg)
{
    if (guts_ref_is_conflict_name(ref->name)) ++*(uint64_t *)arg;
    return 0;
}

/* The git service hears of each change, and of the end of a pull that
 * left the repository in sync (a fresh node's first copy, a push from a
 * peer): then its clone packs need not wait for quiet. */
static void pull_watch(guts_net_node *n, guts_net_watch *w, int changed)
{
    int st = -1;
    int pulling = guts_core_repo_state(n->core, w->key, &st) == 0 && st == GUTS_SYNC_PULLING;
    int settled = w->pulling && !pulling && st == GUTS_SYNC_IN_SYNC;
    w->pulling = pulling;
    if (changed || settled) guts_net_git_changed(n, w->key, w->objects, settled);
}

static int poll_repo(const char *key, void *arg)
{
    guts_net_node *n = arg;
    guts_net_watch *w = watch_find(n, key);
    /* Unchanged since the last poll: the env's txnid says so without a
     * transaction (1,000 read transactions every poll held the loop). */
    uint64_t txnid;
    if (w && guts_core_lmdbstore_txnid(n->lstore, key, &txnid) == 0 && txnid == w->txnid) {
        w->seen = 1;
        if (w->pulling) pull_watch(n, w, 0);
        return 0;
    }
    /* As committed: the interface's info commits the open group first,
     * and this poll, every GUTS_NET_POLL_S, fell into most first copies
     * (an extra commit and flush in the middle of the pull); what it
     * misses of a group it sees at the next poll. */
    guts_repo_info info;
    if (guts_core_lmdbstore_info_committed(n->lstore, key, &info) != 0) return 0;
    int changed = 0;
    if (!w) {
        if (n->nwatch == GUTS_NET_WATCH_MAX) return 0;
        if (n->nwatch == n->capwatch) {
            size_t cap = n->capwatch ? 2 * n->capwatch : 16;
            guts_net_watch *nw = realloc(n->watch, cap * sizeof *nw);
            if (!nw) return 0;
            n->watch = nw;
            n->capwatch = cap;
        }
        w = &n->watch[n->nwatch++];
        memset(w, 0, sizeof *w);
        snprintf(w->key, sizeof w->key, "%s", key);
        changed = 1;
    } else if (info.txnid != w->txnid &&
               (info.objects != w->objects || !guts_fp_eq(info.fp, w->fp) ||
                !guts_fp_eq(info.refs_digest, w->refs_digest))) {
        changed = 1;
    }
    /* Conflict records change only with the refs: they are counted when the
     * refs digest moved since the last count, and not while a pull runs
     * (reading every ref at each poll of a pull slowed it until peers
     * expired); the pull's end brings the count up to date. */
    int st = GUTS_SYNC_IN_SYNC;
    if ((!w->counted || !guts_fp_eq(info.refs_digest, w->conflicts_at)) &&
        (guts_core_repo_state(n->core, key, &st) != 0 || st != GUTS_SYNC_PULLING)) {
        uint64_t conflicts = 0;
        if (n->store.refs(n->store.ctx, key, 0, count_conflict, &conflicts) == 0) {
            w->conflicts = conflicts;
            w->conflicts_at = info.refs_digest;
            w->counted = 1;
        }
    }
    w->txnid = info.txnid;
    w->objects = info.objects;
    w->refs = info.refs;
    w->stored_bytes = info.stored_bytes;
    w->fp = info.fp;
    w->refs_digest = info.refs_digest;
    w->seen = 1;
    pull_watch(n, w, changed);
    if (changed && n->watch_primed) {
        guts_net_logf(&n->log, GUTS_LOG_DEBUG, "local change in %s (%llu objects)", key,
                      (unsigned long long)info.objects);
        guts_core_on_local_change(n->core, guts_net_now_ms(), key);
        guts_net_node_drain(n);
    }
    return 0;
}

static uint64_t stamp_mix(uint64_t h, const struct stat *st)
{
    const uint64_t v[3] = {(uint64_t)st->st_ino, (uint64_t)st->st_mtim.tv_sec,
                           (uint64_t)st->st_mtim.tv_nsec};
    for (size_t i = 0; i < 3; i++)
        h = (h ^ v[i]) * 0x100000001b3ULL;
    return h;
}

/* A stamp of DATA/repos and its owner directories (inode, mtime): a
 * repository made or removed changes its owner's; a write inside an env
 * changes neither. 0 on failure (then the poll scans). */
static uint64_t repos_stamp(guts_net_node *n)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/repos", guts_data_path(n->data)) >= (int)sizeof path)
        return 0;
    struct stat st;
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t h = 0xcbf29ce484222325ULL;
    if (fstat(dirfd(d), &st) == 0) h = stamp_mix(h, &st);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0) h = stamp_mix(h, &st);
    closedir(d);
    return h ? h : 1;
}

void guts_net_node_poll_local(guts_net_node *n)
{
    uint64_t stamp = repos_stamp(n);
    if (n->watch_primed && stamp && stamp == n->repos_stamp &&
        ++n->polls_unscanned < GUTS_NET_SCAN_EVERY) {
        /* Nothing made or removed: only the envs' txnids are looked at. */
        for (size_t i = 0; i < n->nwatch; i++) {
            char key[GUTS_KEY_MAX + 1];
            memcpy(key, n->watch[i].key, sizeof key);
            n->watch_next = i;
            poll_repo(key, n);
        }
        return;
    }
    n->repos_stamp = stamp;
    n->polls_unscanned = 0;
    for (size_t i = 0; i < n->nwatch; i++)
        n->watch[i].seen = 0;
    n->watch_next = 0;
    n->store.repos(n->store.ctx, poll_repo, n);
    /* Repositories removed on disk are forgotten. */
    size_t j = 0;
    for (size_t i = 0; i < n->nwatch; i++)
        if (n->watch[i].seen) n->watch[j++] = n->watch[i];
    n->nwatch = j;
    n->watch_primed = 1;
}

/* A replica's flush covered its last commit: now the core may announce it. */
static void durable_cb(const char *key, void *arg)
{
    guts_net_node *n = arg;
    guts_core_on_local_change(n->core, guts_net_now_ms(), key);
}

void guts_net_node_flushed_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, flushed);
    if (!n->core) return;
    if (guts_core_lmdbstore_flushed(n->lstore, durable_cb, n)) guts_net_node_drain(n);
}

/* On a flusher thread: wake the loop (ev_async_send is thread-safe). */
void guts_net_node_flush_notify(void *arg)
{
    guts_net_node *n = arg;
    ev_async_send(n->loop, &n->flushed);
}

void guts_net_node_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, poll_timer);
    guts_core_lmdbstore_tick(n->lstore);
    guts_net_node_poll_local(n);
}
