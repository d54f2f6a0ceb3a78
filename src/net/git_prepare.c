/* git_prepare.c - clone packs ready before the clone: a thread writes each
 * served repository's full-clone packs into the pack cache
 * (DATA/git-packs, packcache.h) once it has been quiet for
 * GUTS_NET_GIT_PREPARE_QUIET_MS, or as soon as a pull of it ended in sync
 * (a freshly replicated repository: its first clone should not be the one
 * that pays for encoding it), and the clone packs being written (by
 * that thread or a pack thread) are shared with clones of the same
 * request that arrive meanwhile.
 *
 * A clone from guts-node otherwise reads, deltifies and deflates every
 * object (git's own server copies its stored pack entries): prepared, it
 * is a file read. Which packs: a mirror clone's (every ref) and a plain
 * clone's (refs/heads/ and refs/tags/), often the same request (the cache
 * key is a set of wants, and a tag offered for include-tag that is also
 * wanted is left out of it). The loop notices changes (daemon_local.c's
 * poll, guts_net_git_changed); the thread waits for quiet, reads the refs
 * and builds what the cache lacks, one pack at a time, pausing between
 * its 1 MiB writes while a pack thread serves a client any other pack
 * (a cached one, a fetch's), so that serving keeps the CPU, and, while no
 * clone follows the build, until GUTS_NET_GIT_PREPARE_QUIET_MS after the
 * last one ended (that client's index-pack still needs the CPU: a clone
 * right after a pull ended paid for the other clone pack's build beside
 * it, 560 against 380 ms of node CPU). Not at a lower priority (nice +10
 * was tried): a clone that arrives during the build follows it, and on a
 * busy machine a niced build made that clone wait 2-3x as long as
 * encoding its own pack (docs/performance.md); a thread cannot take its
 * priority back without CAP_SYS_NICE. A pack whose objects all go in the
 * next one is its start (guts_packcache_find_base): after a push only the
 * new objects are encoded, and the plain clone's pack, written first, is
 * the start of the mirror clone's (which adds, say, GitHub's pull request refs).
 *
 * Builds in progress (g->builds, under g->lock): the writer counts the
 * bytes it wrote; a clone that finds its request being written opens the
 * file and streams it as it grows (guts_packcache_follow, the trailer
 * checked before it goes), instead of building a second one on a CPU the
 * first needs. The git_upload threads and this one share that table.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "git_int.h"

/* ---- builds in progress ------------------------------------------------------------ */

int git_build_claim(guts_net_git *g, guts_packcache *pc, int *slot, int *fd)
{
    int rc = GIT_CLAIM_NONE, free_slot = -1;
    *slot = -1;
    *fd = -1;
    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < GIT_BUILDS_MAX; i++) {
        git_build *b = &g->builds[i];
        if (!b->users) {
            free_slot = i;
            continue;
        }
        if (b->state != 0 || strcmp(b->name, pc->name) != 0) continue;
        if ((*fd = open(b->tmp, O_RDONLY | O_CLOEXEC)) < 0) continue;
        b->users++;
        g->stats.followed++;
        pthread_cond_broadcast(&g->cond); /* a paused build: it has a client now */
        *slot = i;
        rc = GIT_CLAIM_FOLLOW;
        goto out;
    }
    /* committed between the caller's look and now (a writer commits under
     * the lock) */
    char path[sizeof pc->dir + sizeof pc->name + 1];
    snprintf(path, sizeof path, "%s/%s", pc->dir, pc->name);
    if (access(path, F_OK) == 0) {
        rc = GIT_CLAIM_CACHED;
    } else if (free_slot >= 0 && guts_packcache_begin(pc) == GUTS_OK) {
        git_build *b = &g->builds[free_slot];
        snprintf(b->name, sizeof b->name, "%s", pc->name);
        snprintf(b->tmp, sizeof b->tmp, "%s", pc->tmp);
        b->size = 0;
        b->state = 0;
        b->users = 1;
        *slot = free_slot;
        rc = GIT_CLAIM_BUILD;
        pthread_cond_broadcast(&g->cond); /* a paused prepare build gives way to it */
    }
out:
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int git_build_grow(void *ctx, uint64_t have, uint64_t *size, int *whole)
{
    git_follow *f = ctx;
    guts_net_git *g = f->g;
    git_build *b = &g->builds[f->slot];
    pthread_mutex_lock(&g->lock);
    while (b->state == 0 && b->size <= have && !g->stop)
        pthread_cond_wait(&g->cond, &g->lock);
    *size = b->size;
    *whole = b->state == 1;
    int rc = b->state < 0 || (b->state == 0 && g->stop) ? GUTS_EIO : GUTS_OK;
    pthread_mutex_unlock(&g->lock);
    return rc;
}

static void leave_locked(guts_net_git *g, int slot)
{
    git_build *b = &g->builds[slot];
    if (--b->users == 0) b->name[0] = 0;
}

/* Wait on g->cond for at most ms (g->lock held). */
static void wait_ms_locked(guts_net_git *g, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    (void)pthread_cond_timedwait(&g->cond, &g->lock, &ts);
}

/* How long until no client was served for GUTS_NET_GIT_PREPARE_QUIET_MS
 * (g->lock held; 0: now): that client's index-pack is likely still at
 * work, on the CPUs a build would take. */
static uint64_t client_quiet_left_locked(const guts_net_git *g)
{
    uint64_t now = git_mono_ms();
    if (!g->served_ms || now - g->served_ms >= GUTS_NET_GIT_PREPARE_QUIET_MS) return 0;
    return g->served_ms + GUTS_NET_GIT_PREPARE_QUIET_MS - now;
}

/* Another build than slot's is under way (a pack thread's: there is one
 * prepare thread). g->lock held. */
static int other_build_locked(const guts_net_git *g, int slot)
{
    for (int i = 0; i < GIT_BUILDS_MAX; i++)
        if (i != slot && g->builds[i].users && g->builds[i].state == 0) return 1;
    return 0;
}

int git_build_wrote(guts_net_git *g, int slot, guts_packcache *pc, size_t n, int yield,
                    int *users)
{
    pthread_mutex_lock(&g->lock);
    git_build *b = &g->builds[slot];
    if (pc->fd < 0) /* the cache's write failed: the file is gone */
        b->state = -1;
    else
        b->size += n;
    pthread_cond_broadcast(&g->cond);
    /* the prepare thread pauses while a pack thread serves a client
     * another pack, and, while no clone follows it, until that client's
     * index-pack is likely done */
    while (yield && !g->stop) {
        /* a client's build beside this one, which no clone follows: this
         * one ends (its walk's and the decoded objects' memory with it:
         * two builds at once took the node's RssAnon from 61 to 83 MB)
         * and is tried again later */
        if (b->users == 1 && other_build_locked(g, slot)) {
            g->prep_gave_way = 1;
            break;
        }
        if (g->serving > b->users - 1) {
            pthread_cond_wait(&g->cond, &g->lock);
            continue;
        }
        uint64_t left = b->users == 1 ? client_quiet_left_locked(g) : 0;
        if (!left) break;
        wait_ms_locked(g, left);
    }
    int stop = g->stop || (yield && g->prep_gave_way);
    *users = (int)b->users;
    pthread_mutex_unlock(&g->lock);
    return stop;
}

void git_build_done(guts_net_git *g, int slot, guts_packcache *pc, int ok)
{
    pthread_mutex_lock(&g->lock);
    git_build *b = &g->builds[slot];
    ok = ok && b->state == 0 && pc->fd >= 0;
    if (ok)
        guts_packcache_commit(pc); /* under the lock: git_build_claim looks for the file */
    else
        guts_packcache_free(pc);
    b->state = ok ? 1 : -1;
    leave_locked(g, slot);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

void git_build_leave(guts_net_git *g, int slot)
{
    pthread_mutex_lock(&g->lock);
    leave_locked(g, slot);
    pthread_mutex_unlock(&g->lock);
}

/* ---- the prepare thread ------------------------------------------------------------ */

void guts_net_git_changed(guts_net_node *n, const char *key, uint64_t objects, int settled)
{
    guts_net_git *g = n->git;
    if (!g || !g->prep_running || objects < GUTS_NET_GIT_PREPARE_MIN_OBJECTS ||
        !guts_net_http_repo_served(&n->opts, key))
        return;
    pthread_mutex_lock(&g->lock);
    git_prep *p = NULL;
    for (size_t i = 0; i < g->npreps && !p; i++)
        if (strcmp(g->preps[i].key, key) == 0) p = &g->preps[i];
    if (!p && g->npreps < GUTS_NET_WATCH_MAX) {
        if (g->npreps == g->cappreps) {
            size_t cap = g->cappreps ? 2 * g->cappreps : 16;
            git_prep *nv = realloc(g->preps, cap * sizeof *nv);
            if (nv) {
                g->preps = nv;
                g->cappreps = cap;
            }
        }
        if (g->npreps < g->cappreps) {
            p = &g->preps[g->npreps++];
            snprintf(p->key, sizeof p->key, "%s", key);
        }
    }
    if (p) {
        p->changed_ms = git_mono_ms();
        p->quiet_ms = settled ? 0 : GUTS_NET_GIT_PREPARE_QUIET_MS;
        g->stats.preparing += !p->pending;
        p->pending = 1;
        pthread_cond_broadcast(&g->cond);
    }
    pthread_mutex_unlock(&g->lock);
}

/* The wants of a mirror clone (every ref) and of a plain one (branches
 * and tags): ref targets, symrefs left out. */
typedef struct want_sets {
    guts_id *v[2];
    size_t n[2], cap[2];
    int oom;
} want_sets;

static void want_push(want_sets *w, int set, const guts_id *id)
{
    if (w->n[set] == w->cap[set]) {
        size_t c = w->cap[set] ? 2 * w->cap[set] : 256;
        guts_id *nv = realloc(w->v[set], c * sizeof *nv);
        if (!nv) {
            w->oom = 1;
            return;
        }
        w->v[set] = nv;
        w->cap[set] = c;
    }
    w->v[set][w->n[set]++] = *id;
}

static int collect_want(const guts_ref *ref, void *ctx)
{
    want_sets *w = ctx;
    if (ref->symref[0]) return 0;
    want_push(w, 0, &ref->target);
    if (strncmp(ref->name, "refs/heads/", 11) == 0 || strncmp(ref->name, "refs/tags/", 10) == 0)
        want_push(w, 1, &ref->target);
    return w->oom ? GUTS_ENOMEM : 0;
}

/* A pack thread is serving a client, or one ended lately
 * (client_quiet_left_locked): a clone right after a pull ended, which
 * builds or follows one clone pack, would otherwise share the CPUs with
 * the build of the other. */
static int client_lately(guts_net_git *g)
{
    pthread_mutex_lock(&g->lock);
    int lately = g->serving || client_quiet_left_locked(g);
    pthread_mutex_unlock(&g->lock);
    return lately;
}

/* Write what the cache lacks of key's clone packs. 1: try again later (a
 * clone's build of one was under way, a client was served lately, a
 * client's build began beside one, or no build slot was free). */
static int prepare_repo(guts_net_git *g, const char *key)
{
    int again = 0;
    guts_repo *r = NULL;
    want_sets w = {0};
    char done[80] = "", err[GUTS_GIT_ERR_MAX] = "";
    int rc = guts_repo_open(g->n->data, key, 0, &r);
    if (!rc) rc = guts_repo_refs(r, 0, collect_want, &w);
    for (int k = 0; !rc && k < 2 && !g->stop; k++) {
        int set = 1 - k; /* the plain clone's first: it is in the mirror clone's */
        guts_packcache pc;
        if (!w.n[set] ||
            guts_packcache_init(&pc, guts_data_path(g->n->data), key, w.v[set], w.n[set], NULL,
                                0) != GUTS_OK ||
            strcmp(pc.name, done) == 0)
            continue;
        if (g->n->opts.git_packs_max) pc.budget = g->n->opts.git_packs_max;
        snprintf(done, sizeof done, "%s", pc.name);
        if (client_lately(g)) { /* not beside a client's index-pack: later */
            again = 1;
            guts_packcache_free(&pc);
            break;
        }
        int slot, fd;
        int claim = git_build_claim(g, &pc, &slot, &fd);
        if (claim == GIT_CLAIM_FOLLOW) { /* a clone is writing it: it may not finish */
            close(fd);
            git_build_leave(g, slot);
        }
        again |= claim == GIT_CLAIM_FOLLOW || claim == GIT_CLAIM_NONE;
        if (claim != GIT_CLAIM_BUILD) continue;
        guts_git_serve_req q = {.wants = w.v[set],
                                .nwants = w.n[set],
                                .blob_limit = UINT64_MAX,
                                .zlevel = GUTS_NET_GIT_ZLEVEL};
        uint64_t t0 = git_mono_ms();
        pthread_mutex_lock(&g->lock);
        g->prep_gave_way = 0;
        pthread_mutex_unlock(&g->lock);
        rc = git_serve_pack(g, r, &q, &pc, slot, err);
        guts_packcache_free(&pc);
        pthread_mutex_lock(&g->lock);
        int gave_way = g->prep_gave_way;
        pthread_mutex_unlock(&g->lock);
        if (rc && gave_way) { /* to a client's build: later */
            guts_net_logf(&g->n->log, GUTS_LOG_DEBUG,
                          "preparing a clone pack of %s: left for a client's build", key);
            again = 1;
            rc = GUTS_OK;
            break;
        }
        if (rc) {
            /* debug: lines at info and above go to the loop's ring too */
            guts_net_logf(&g->n->log, GUTS_LOG_DEBUG, "preparing a clone pack of %s failed: %s",
                          key, err[0] ? err : guts_strerror(rc));
            pthread_mutex_lock(&g->lock);
            g->stats.prepare_failed++;
            pthread_mutex_unlock(&g->lock);
            break;
        }
        pthread_mutex_lock(&g->lock);
        g->stats.prepared++;
        pthread_mutex_unlock(&g->lock);
        guts_net_logf(&g->n->log, GUTS_LOG_DEBUG,
                      "prepared a clone pack of %s (%zu wants, %llu ms)", key, w.n[set],
                      (unsigned long long)(git_mono_ms() - t0));
    }
    free(w.v[0]);
    free(w.v[1]);
    if (r) guts_repo_close(r);
    /* What the build freed (its walk's objects, the handle's decoded
     * objects: ~23 MB for zlib) stays in this thread's malloc arena
     * otherwise, and a clone's pack thread then adds its own: a fresh
     * node's RssAnon went from 57 to 83 MB with a clone after its prepare. */
    malloc_trim(0);
    return again;
}

/* A pack's bytes go nowhere but the cache (tee_sink); stop ends a build. */
static void *prepare_main(void *arg)
{
    guts_net_git *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        uint64_t now = git_mono_ms(), due = UINT64_MAX;
        git_prep *p = NULL;
        g->stats.preparing = 0;
        for (size_t i = 0; i < g->npreps; i++) {
            git_prep *c = &g->preps[i];
            if (!c->pending) continue;
            g->stats.preparing++;
            uint64_t at = c->changed_ms + c->quiet_ms;
            if (at <= now && !p)
                p = c;
            else if (at < due)
                due = at;
        }
        if (p) {
            char key[GUTS_KEY_MAX + 1];
            snprintf(key, sizeof key, "%s", p->key);
            p->pending = 0; /* still counted in preparing until it is done */
            pthread_mutex_unlock(&g->lock);
            int again = prepare_repo(g, key);
            pthread_mutex_lock(&g->lock);
            for (size_t i = 0; again && i < g->npreps; i++) /* the table may have moved */
                if (strcmp(g->preps[i].key, key) == 0 && !g->preps[i].pending) {
                    g->preps[i].pending = 1;
                    g->preps[i].changed_ms = git_mono_ms();
                    g->preps[i].quiet_ms = GUTS_NET_GIT_PREPARE_QUIET_MS;
                }
        } else if (due == UINT64_MAX) {
            pthread_cond_wait(&g->cond, &g->lock);
        } else {
            wait_ms_locked(g, due - now);
        }
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int git_prepare_start(guts_net_git *g)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return GUTS_ENOMEM;
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return GUTS_ENOMEM;
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        pthread_cond_destroy(&g->cond);
        return GUTS_ENOMEM;
    }
    /* The thread takes no signal: the loop's ev_signal watchers get them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g->prep_running = pthread_create(&g->prep_th, NULL, prepare_main, g) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return GUTS_OK; /* without the thread clones are built as they come */
}

void git_prepare_stop(guts_net_git *g)
{
    pthread_mutex_lock(&g->lock);
    g->stop = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (g->prep_running) pthread_join(g->prep_th, NULL);
    g->prep_running = 0;
}

/* After every thread was joined. */
void git_prepare_free(guts_net_git *g)
{
    free(g->preps);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}
