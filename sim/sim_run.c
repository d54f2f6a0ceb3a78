/* sim_run.c - guts-sim's run on the engine: the nodes' checking stores and
 * seeded repositories, their seeds, the schedule of faults, writes and
 * network changes built from the options, and the main loop.
 *
 * Scheduled actions sit in a sorted array and run once the engine's events
 * of earlier instants are done. Every random draw comes from the engine's
 * one generator, in a fixed order, so a run is a pure function of its
 * options. Join starts an absent node; leave sends LEAVE and makes it
 * absent.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "sim_engine.h"

/* ---- convergence bookkeeping ----------------------------------------------------- */

typedef struct digest_ctx {
    const guts_core_store *st;
    XXH3_state_t *h;
    int err;
    uint64_t objects;
} digest_ctx;

static int digest_cb(const char *key, void *arg)
{
    digest_ctx *d = arg;
    guts_repo_info info;
    if (d->st->info(d->st->ctx, key, &info) != GUTS_OK) {
        d->err = 1;
        return 0;
    }
    /* A repository holding nothing is the same data as none: a corrupted
     * key in an announce makes one at its receivers, and the others learn
     * of it only from their announces (guts-sim --corrupt, seed 10). */
    if (info.objects == 0 && info.refs == 0 && info.tombstones == 0) return 0;
    d->objects += info.objects;
    XXH3_64bits_update(d->h, key, strlen(key) + 1);
    XXH3_64bits_update(d->h, &info.objects, sizeof(info.objects));
    XXH3_64bits_update(d->h, &info.fp, sizeof(info.fp));
    XXH3_64bits_update(d->h, &info.refs_digest, sizeof(info.refs_digest));
    return 0;
}

/* Digest of what a node holds: every non-empty repository's key, object
 * count, set fingerprint and refs digest, in key order. */
static uint64_t node_digest(sim *s, uint32_t i, uint64_t *objects)
{
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0;
    XXH3_64bits_reset(h);
    digest_ctx d = {sim_cstore_inner(s->nodes[i].cs), h, 0, 0};
    d.st->repos(d.st->ctx, digest_cb, &d);
    *objects = d.objects;
    uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    if (d.err) {
        s->viol.store_error++;
        sim_violation_note(&s->viol, i, "store info failed while digesting");
    }
    return v;
}

static void note_change(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    if (!nd->dirty) return;
    nd->dirty = 0;
    uint64_t objects, d = node_digest(s, i, &objects);
    if (d != nd->digest) {
        nd->digest = d;
        nd->changed_at = s->now;
        sim_member_progress(s, i, objects);
    }
}

uint64_t sim_node_objects(sim *s, uint32_t i)
{
    uint64_t objects;
    node_digest(s, i, &objects);
    return objects;
}

/* ---- scheduled actions ---------------------------------------------------------------- */

static int sched_add(sim *s, const sim_action *a)
{
    if (s->nsched == s->capsched) {
        size_t nc = s->capsched ? 2 * s->capsched : 256;
        sim_action *p = realloc(s->sched, nc * sizeof(sim_action));
        if (!p) return GUTS_ENOMEM;
        s->sched = p;
        s->capsched = nc;
    }
    sim_action *n = &s->sched[s->nsched];
    *n = *a;
    n->seq = s->nsched;
    n->group = NULL;
    s->nsched++;
    if (a->group) {
        size_t bytes = (size_t)s->cfg.nodes * sizeof(uint32_t);
        n->group = malloc(bytes);
        if (!n->group) return GUTS_ENOMEM;
        memcpy(n->group, a->group, bytes);
    }
    return GUTS_OK;
}

static int act_cmp(const void *x, const void *y)
{
    const sim_action *a = x, *b = y;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void do_write(sim *s, uint32_t i, uint32_t repo, uint32_t wn)
{
    snode *nd = &s->nodes[i];
    if (!nd->ever_started) return; /* not part of the group yet */
    int rc = sim_work_write(&nd->iface, repo, wn, nd->writes++, &nd->id);
    if (rc) {
        s->viol.store_error++;
        sim_violation_note(&s->viol, i, "local write failed: %s", guts_strerror(rc));
        return;
    }
    s->writes_done++;
    if (nd->core) {
        char key[GUTS_KEY_MAX + 1];
        sim_repo_key(repo, key);
        guts_core_on_local_change(nd->core, s->now, key);
        sim_drain(s, i);
    } else {
        note_change(s, i);
    }
}

static void crash(sim *s, uint32_t i)
{
    sim_member_crash(s, i);
    sim_core_stop(s, i, NODE_DOWN);
    s->crashes++;
}

/* Scenario "crash-held K": K distinct live nodes that views hold crash, for
 * good. Each is a random view entry of a random live node, so a node is
 * drawn about as often as views hold it (a plain node list at 100,000 nodes
 * names nodes no view holds: nothing to detect). At most 64 K draws. */
static void crash_held(sim *s, uint32_t k)
{
    for (uint64_t tries = 64 * (uint64_t)k; k && tries; tries--) {
        const snode *h = &s->nodes[sim_rnd_below(s, s->cfg.nodes)];
        size_t n = h->state == NODE_UP ? guts_core_peer_count(h->core) : 0;
        guts_core_peer_info info;
        uint32_t j;
        if (!n || guts_core_peer(h->core, (size_t)sim_rnd_below(s, n), &info) != GUTS_OK ||
            sim_member_node_of(s, &info.id, &j) != GUTS_OK || s->nodes[j].state != NODE_UP)
            continue;
        crash(s, j);
        k--;
    }
}

static void run_action(sim *s, const sim_action *a)
{
    uint32_t i = a->node;
    snode *nd = i < s->cfg.nodes ? &s->nodes[i] : NULL;
    switch (a->kind) {
    case SA_CRASH:
        if (nd && nd->state == NODE_UP) crash(s, i);
        break;
    case SA_CRASH_HELD:
        crash_held(s, a->node);
        break;
    case SA_RESTART:
        if (nd && nd->state == NODE_DOWN && sim_core_start(s, i) == GUTS_OK) {
            s->restarts++;
            sim_member_started(s, i, 0);
        }
        break;
    case SA_JOIN:
        if (nd && nd->state == NODE_ABSENT && sim_core_start(s, i) == GUTS_OK) {
            s->joins++;
            sim_member_started(s, i, a->t >= s->cfg.ramp);
        }
        break;
    case SA_LEAVE:
        if (nd && nd->state == NODE_UP) {
            guts_core_leave(nd->core, s->now);
            sim_drain(s, i);
            sim_core_stop(s, i, NODE_ABSENT);
            s->leaves++;
        }
        break;
    case SA_PARTITION:
        sim_partition(s, a->group);
        break;
    case SA_HEAL:
        sim_partition(s, NULL);
        break;
    case SA_WRITE:
        if (nd && a->repo < s->cfg.repos) do_write(s, i, a->repo, a->writer);
        break;
    case SA_LOSS:
        s->loss = a->value;
        break;
    case SA_DUP:
        s->dup = a->value;
        break;
    case SA_LATENCY:
        s->lat_min = a->lat_min;
        s->lat_max = a->lat_max;
        break;
    }
}

/* ---- building the schedule from the options --------------------------------------------- */

static int build_schedule(sim *s)
{
    const sim_config *c = &s->cfg;
    uint32_t N = c->nodes;
    int rc = GUTS_OK;
    /* start-up: every node not declared absent joins in [0, ramp) */
    uint8_t *absent = calloc(N, 1);
    if (!absent) return GUTS_ENOMEM;
    for (size_t k = 0; k < c->nabsent; k++)
        if (c->absent[k] < N) absent[c->absent[k]] = 1;
    for (uint32_t i = 0; i < N && !rc; i++) {
        if (absent[i]) continue;
        sim_action a = {.t = sim_rnd_below(s, c->ramp), .kind = SA_JOIN, .node = i};
        rc = sched_add(s, &a);
    }
    free(absent);
    /* random crashes: a Poisson process per node, each crash followed by a
     * restart 1-10 s later, all before faults_until */
    if (c->crash_rate > 0) {
        for (uint32_t i = 0; i < N && !rc; i++) {
            double t = 0;
            for (;;) {
                t += -log(1.0 - sim_rnd01(s)) / c->crash_rate * 1000.0;
                if (t >= (double)c->faults_until) break;
                uint64_t tc = (uint64_t)t, tr = tc + 1000 + sim_rnd_below(s, 9001);
                if (tr > c->faults_until) tr = c->faults_until;
                sim_action cr = {.t = tc, .kind = SA_CRASH, .node = i};
                sim_action re = {.t = tr, .kind = SA_RESTART, .node = i};
                if ((rc = sched_add(s, &cr)) || (rc = sched_add(s, &re))) break;
                t = (double)tr;
            }
        }
    }
    /* --partition A-B: the lower and upper halves of the node numbers */
    if (c->has_partition && !rc) {
        uint32_t *g = malloc((size_t)N * sizeof(uint32_t));
        if (!g) return GUTS_ENOMEM;
        for (uint32_t i = 0; i < N; i++)
            g[i] = i < N / 2 ? 0 : 1;
        sim_action p = {.t = c->part_from, .kind = SA_PARTITION, .group = g};
        sim_action h = {.t = c->part_to, .kind = SA_HEAL};
        rc = sched_add(s, &p);
        free(g);
        if (!rc) rc = sched_add(s, &h);
    }
    /* writers: writer w sits at a random node and writes repository w mod R
     * every write_every (jittered x[0.5, 1.5]) from 2 s until faults_until */
    if (c->repos && !rc) {
        for (uint32_t w = 0; w < c->writers && !rc; w++) {
            uint32_t node = (uint32_t)sim_rnd_below(s, N);
            uint64_t t = 2000 + sim_rnd_below(s, c->write_every + 1);
            while (t < c->faults_until && !rc) {
                sim_action a = {
                    .t = t, .kind = SA_WRITE, .node = node, .repo = w % c->repos, .writer = w};
                rc = sched_add(s, &a);
                t += c->write_every / 2 + sim_rnd_below(s, c->write_every + 1);
            }
        }
    }
    /* the scenario file's own lines */
    for (size_t k = 0; k < c->nacts && !rc; k++)
        rc = sched_add(s, &c->acts[k]);
    if (rc) return rc;
    qsort(s->sched, s->nsched, sizeof(sim_action), act_cmp);
    s->t_quiet = 0;
    for (size_t k = 0; k < s->nsched; k++) {
        int kind = s->sched[k].kind;
        if (kind != SA_LOSS && kind != SA_DUP && kind != SA_LATENCY && s->sched[k].t > s->t_quiet)
            s->t_quiet = s->sched[k].t;
    }
    return GUTS_OK;
}

/* ---- seeds ---------------------------------------------------------------------------------- */

/* Each node's seed list, what a user gives guts-node as --peer: --peers K
 * distinct nodes drawn among the earlier nodes of its own segment (all of
 * them when there are fewer; the segment's first node knows nobody), so
 * the seeds form a connected graph in which every node was pointed at a
 * node already running, as people add machines to a network. With --star
 * they are the segment's first K nodes instead: every node names the same
 * hubs, as a configuration management tool would write it. With
 * --segments S, node s (1 <= s < S, the second segment's first node and
 * so on) also knows node s - 1 of the segment before: one address across
 * each cut, in one direction. */
static int choose_seeds(sim *s)
{
    uint32_t N = s->cfg.nodes, S = s->cfg.segments, K = s->cfg.seeds;
    if (K == 0 && S == 1) return GUTS_OK; /* no draw: runs without seeds unchanged */
    for (uint32_t i = 0; i < N; i++) {
        snode *nd = &s->nodes[i];
        uint32_t before = i / S; /* earlier nodes of i's segment: i % S + m S, m < before */
        uint32_t k = before < K ? before : K;
        int bridge = S > 1 && i > 0 && i < S;
        if (k + (uint32_t)bridge == 0) continue;
        nd->seeds = malloc((k + (uint32_t)bridge) * sizeof(uint32_t));
        if (!nd->seeds) return GUTS_ENOMEM;
        /* Floyd's sample of k distinct m in [0, before) */
        for (uint32_t j = before - k; j < before; j++) {
            uint32_t m =
                s->cfg.star ? j - (before - k) : (uint32_t)sim_rnd_below(s, (uint64_t)j + 1);
            uint32_t node = i % S + m * S;
            for (uint32_t q = 0; q < nd->nseeds; q++)
                if (nd->seeds[q] == node) node = i % S + j * S;
            nd->seeds[nd->nseeds++] = node;
        }
        if (bridge) nd->seeds[nd->nseeds++] = i - 1;
    }
    return GUTS_OK;
}

static int node_store(sim *s, uint32_t i)
{
    snode *nd = &s->nodes[i];
    guts_core_store inner; /* the checker keeps a copy */
    int rc;
    if (s->cfg.lmdb) {
        char path[320];
        snprintf(path, sizeof(path), "%s/n%u", s->tmpdir, i);
        if ((rc = guts_data_open(path, GUTS_DATA_CREATE, &nd->data))) return rc;
        /* small maps: many envs in one process, and growth gets exercised */
        guts_data_set_initial_mapsize(nd->data, 1u << 20);
        if ((rc = guts_core_lmdbstore_new(nd->data, &nd->lst))) return rc;
        guts_core_lmdbstore_iface(nd->lst, &inner);
    } else {
        if (!s->pool && (rc = guts_mempool_new(&s->pool))) return rc;
        if ((rc = guts_memstore_new_pooled(s->pool, &nd->mem))) return rc;
        guts_memstore_iface(nd->mem, &inner);
    }
    if (!s->ids && (rc = sim_idpool_new(&s->ids))) return rc;
    if ((rc = sim_cstore_new(&inner, s->pool, i, &s->viol, &nd->dirty, s->ids, &nd->cs))) return rc;
    sim_cstore_iface(nd->cs, &nd->iface);
    return GUTS_OK;
}

int sim_new(const sim_config *cfg, sim **out)
{
    sim *s = calloc(1, sizeof(sim));
    if (!s) return GUTS_ENOMEM;
    *out = s;
    s->changed = note_change;
    s->event = sim_member_event;
    sim_broken_merge_set(cfg->broken_merge);
    int rc = sim_engine_init(s, cfg);
    if (rc) return rc;
    if (cfg->lmdb) {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/guts-sim-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->tmpdir)) {
            s->tmpdir[0] = 0;
            return GUTS_EIO;
        }
    }
    for (uint32_t i = 0; i < cfg->nodes; i++)
        if ((rc = node_store(s, i))) return rc;
    /* repository r starts at node r mod N with K objects */
    for (uint32_t r = 0; r < cfg->repos; r++) {
        uint32_t i = r % cfg->nodes;
        if ((rc = sim_work_seed(&s->nodes[i].iface, r, cfg->objects, &s->nodes[i].id))) return rc;
    }
    for (uint32_t i = 0; i < cfg->nodes; i++) {
        s->nodes[i].dirty = 1;
        note_change(s, i);
    }
    if ((rc = choose_seeds(s))) return rc;
    if ((rc = build_schedule(s))) return rc;
    s->steady_from = s->end - s->end / 4;
    return GUTS_OK;
}

/* Remove our own mkdtemp directory (and the nodes' data dirs in it). */
static void rm_tree(const char *dir)
{
    const char *base = strrchr(dir, '/');
    if (!dir[0] || !base || strncmp(base + 1, "guts-sim-", 9) != 0 || strchr(dir, '\'')) return;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "guts-sim: could not remove %s\n", dir);
}

void sim_free(sim *s)
{
    if (!s) return;
    sim_member_free(s);
    for (uint32_t i = 0; s->nodes && i < s->cfg.nodes; i++) {
        snode *nd = &s->nodes[i];
        guts_core_free(nd->core); /* before the checking store it uses */
        nd->core = NULL;
        sim_cstore_free(nd->cs);
        guts_core_lmdbstore_free(nd->lst); /* --lmdb: guts-sim's, not the engine's */
        nd->lst = NULL;
        if (nd->data) guts_data_close(nd->data);
        nd->data = NULL;
    }
    sim_idpool_free(s->ids); /* after the checkers */
    for (size_t k = 0; k < s->nsched; k++)
        free(s->sched[k].group);
    free(s->sched);
    sim_engine_fini(s);
    if (s->tmpdir[0]) rm_tree(s->tmpdir);
    free(s);
}

/* ---- running --------------------------------------------------------------------------------- */

/* All live nodes hold the same thing. */
int sim_all_equal(const sim *s)
{
    int have = 0;
    uint64_t d = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        const snode *nd = &s->nodes[i];
        if (nd->state != NODE_UP) continue;
        if (have && nd->digest != d) return 0;
        d = nd->digest;
        have = 1;
    }
    return 1;
}

/* How often a --until-converged run checks whether it may stop (ms). */
#define SIM_CHECK_EVERY 100
/* --progress: a line on stderr every this many virtual ms. */
#define SIM_PROGRESS_EVERY 10000

/* The --progress line: totals, then what the last interval cost per node,
 * by kind (which per-node work grows with N shows here: issue 19, "what
 * grows"). Counts only: the line is the same on every run of a command. */
static void progress_line(sim *s, uint64_t *prev_kinds, sim_traffic *prev_tr,
                          uint64_t *prev_streams)
{
    sim_traffic tr;
    sim_traffic_sum(s, &tr);
    double n = s->cfg.nodes, k[EV_FANOUT + 1];
    for (int i = 0; i <= EV_FANOUT; i++) {
        k[i] = (double)(s->ev_kinds[i] - prev_kinds[i]) / n;
        prev_kinds[i] = s->ev_kinds[i];
    }
    fprintf(stderr,
            "guts-sim: %" PRIu64 " virtual s, %" PRIu64 " events, %" PRIu64
            " deliveries; per node since the last line: %.1f multicast copies, %.1f "
            "datagrams, %.1f frames, %.1f opens, %.1f closes, %.1f writable, %.1f timers; "
            "sent %.2f multicast, %.2f unicast, %.1f frames; %.2f streams\n",
            s->now / 1000, s->events, s->dgram_deliveries, k[EV_FANOUT], k[EV_DGRAM], k[EV_FRAME],
            k[EV_OPEN], k[EV_CLOSED], k[EV_WRITABLE], k[EV_TIMER],
            (double)(tr.mcast_msgs - prev_tr->mcast_msgs) / n,
            (double)(tr.ucast_msgs - prev_tr->ucast_msgs) / n,
            (double)(tr.frame_msgs - prev_tr->frame_msgs) / n,
            (double)(s->streams_opened - *prev_streams) / n);
    *prev_tr = tr;
    *prev_streams = s->streams_opened;
}

int sim_run(sim *s)
{
    uint64_t next_check = SIM_CHECK_EVERY, next_progress = SIM_PROGRESS_EVERY;
    uint64_t prev_kinds[EV_FANOUT + 1] = {0}, prev_streams = 0;
    sim_traffic prev_tr = {0};
    for (;;) {
        uint64_t t = s->end;
        if (s->cfg.progress && next_progress < t) t = next_progress;
        if (s->pos < s->nsched && s->sched[s->pos].t < t) t = s->sched[s->pos].t;
        if (!s->steady_taken && s->steady_from < t) t = s->steady_from;
        if (s->cfg.until_converged && next_check < t) t = next_check;
        uint64_t mt = sim_member_next(s);
        if (mt && mt < t) t = mt;
        /* actions run after the events of earlier instants, before their own */
        sim_events_run(s, t > 0 && s->pos < s->nsched && s->sched[s->pos].t == t ? t - 1 : t);
        if (s->now < t) s->now = t;
        if (!s->steady_taken && s->now >= s->steady_from) {
            sim_traffic_sum(s, &s->steady0);
            s->steady_taken = 1;
        }
        while (s->pos < s->nsched && s->sched[s->pos].t <= s->now)
            run_action(s, &s->sched[s->pos++]);
        sim_member_tick(s);
        if (s->cfg.progress && s->now >= next_progress) {
            progress_line(s, prev_kinds, &prev_tr, &prev_streams);
            next_progress = s->now + SIM_PROGRESS_EVERY;
        }
        if (s->cfg.until_converged && s->now >= next_check) {
            next_check = s->now + SIM_CHECK_EVERY;
            if (s->now >= s->t_quiet && s->pos >= s->nsched && !s->partitioned && sim_all_equal(s))
                break;
        }
        if (s->now >= s->end) {
            sim_events_run(s, s->end);
            break;
        }
    }
    s->stopped_at = s->now;
    return GUTS_OK;
}
