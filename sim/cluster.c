/* cluster.c - the core's test fixture (see cluster.h) as a thin layer over
 * the simulation engine (sim_engine.h): the unit tests and guts-sim run
 * the same network model. The fixture adds its own stores (a memstore per
 * node, or the caller's) and the convergence check the tests assert.
 */
#include "cluster.h"

#include <stdlib.h>
#include <string.h>

#include "sim_engine.h"

struct guts_cluster {
    sim s;
};

int guts_cluster_new(const guts_cluster_config *cfg, guts_cluster **out)
{
    if (!cfg || cfg->nodes == 0 || cfg->nodes > GUTS_CLUSTER_NODES_MAX) return GUTS_EINVAL;
    guts_cluster *cl = calloc(1, sizeof(guts_cluster));
    if (!cl) return GUTS_ENOMEM;
    sim_config sc = {.nodes = (uint32_t)cfg->nodes,
                     .seed = cfg->seed,
                     .loss = cfg->loss,
                     .dup = cfg->dup,
                     .lat_min = cfg->latency_min,
                     .lat_max = cfg->latency_max,
                     .interval_ms = cfg->interval_ms,
                     .max_sessions = cfg->max_sessions,
                     .frame_max = cfg->frame_max,
                     .obj_max = cfg->obj_max,
                     .core_logs = 1};
    sim *s = &cl->s;
    int rc = sim_engine_init(s, &sc);
    for (uint32_t i = 0; i < sc.nodes && !rc; i++) {
        snode *nd = &s->nodes[i];
        if (cfg->stores) {
            nd->iface = cfg->stores[i]; /* copied: the caller's array may go */
            continue;
        }
        if (!(rc = guts_memstore_new(&nd->mem))) guts_memstore_iface(nd->mem, &nd->iface);
    }
    for (uint32_t i = 0; i < sc.nodes && !rc; i++)
        rc = sim_core_start(s, i);
    if (rc) {
        guts_cluster_free(cl);
        return rc;
    }
    *out = cl;
    return GUTS_OK;
}

void guts_cluster_free(guts_cluster *cl)
{
    if (!cl) return;
    sim_engine_fini(&cl->s);
    free(cl);
}

int guts_cluster_restart(guts_cluster *cl, size_t i)
{
    if (i >= cl->s.cfg.nodes) return GUTS_EINVAL;
    sim_core_stop(&cl->s, (uint32_t)i, NODE_DOWN);
    return sim_core_start(&cl->s, (uint32_t)i);
}

int guts_cluster_run_until(guts_cluster *cl, uint64_t t)
{
    sim_events_run(&cl->s, t);
    return GUTS_OK;
}

void guts_cluster_set_faults(guts_cluster *cl, double loss, double dup, uint32_t latency_min,
                             uint32_t latency_max)
{
    cl->s.loss = loss;
    cl->s.dup = dup;
    cl->s.lat_min = latency_min;
    cl->s.lat_max = latency_max;
}

void guts_cluster_local_change(guts_cluster *cl, size_t i, const char *key)
{
    if (i >= cl->s.cfg.nodes || !cl->s.nodes[i].core) return;
    guts_core_on_local_change(cl->s.nodes[i].core, cl->s.now, key);
    sim_drain(&cl->s, (uint32_t)i);
}

guts_core *guts_cluster_core(guts_cluster *cl, size_t i)
{
    return i < cl->s.cfg.nodes ? cl->s.nodes[i].core : NULL;
}

guts_memstore *guts_cluster_store(guts_cluster *cl, size_t i)
{
    return i < cl->s.cfg.nodes ? cl->s.nodes[i].mem : NULL;
}

const guts_core_store *guts_cluster_iface(const guts_cluster *cl, size_t i)
{
    return i < cl->s.cfg.nodes ? &cl->s.nodes[i].iface : NULL;
}

void guts_cluster_stats_get(const guts_cluster *cl, guts_cluster_stats *out)
{
    const sim *s = &cl->s;
    sim_traffic t;
    sim_traffic_sum(s, &t);
    memset(out, 0, sizeof(*out));
    out->dgrams = t.mcast_msgs + t.ucast_msgs;
    out->dgram_bytes = t.mcast_bytes + t.ucast_bytes;
    out->dgram_max = s->dgram_max;
    out->dgrams_lost = s->dgrams_lost;
    out->dgrams_duped = s->dgrams_duped;
    out->frames = t.frame_msgs;
    out->frame_bytes = t.frame_bytes;
    out->streams_opened = s->streams_opened;
    out->events = s->events;
}

void guts_cluster_set_verbose(guts_cluster *cl, int verbose)
{
    cl->s.cfg.verbose = verbose;
}

typedef struct keys {
    char **k;
    size_t n, cap;
} keys;

static int key_cb(const char *key, void *arg)
{
    keys *ks = arg;
    if (ks->n == ks->cap) {
        size_t nc = ks->cap ? 2 * ks->cap : 16;
        char **p = realloc(ks->k, nc * sizeof(char *));
        if (!p) return GUTS_ENOMEM;
        ks->k = p;
        ks->cap = nc;
    }
    ks->k[ks->n] = strdup(key);
    if (!ks->k[ks->n]) return GUTS_ENOMEM;
    ks->n++;
    return 0;
}

static void keys_free(keys *ks)
{
    for (size_t i = 0; i < ks->n; i++)
        free(ks->k[i]);
    free(ks->k);
}

int guts_cluster_converged(const guts_cluster *cl)
{
    keys k0 = {0};
    const guts_core_store *s0 = &cl->s.nodes[0].iface;
    if (s0->repos(s0->ctx, key_cb, &k0)) {
        keys_free(&k0);
        return 0;
    }
    int ok = 1;
    for (size_t i = 1; i < cl->s.cfg.nodes && ok; i++) {
        const guts_core_store *si = &cl->s.nodes[i].iface;
        keys ki = {0};
        if (si->repos(si->ctx, key_cb, &ki) || ki.n != k0.n) ok = 0;
        for (size_t r = 0; ok && r < k0.n; r++) {
            guts_repo_info a, b;
            if (strcmp(k0.k[r], ki.k[r]) != 0 || s0->info(s0->ctx, k0.k[r], &a) ||
                si->info(si->ctx, k0.k[r], &b) || !guts_fp_eq(a.fp, b.fp) ||
                a.objects != b.objects || !guts_fp_eq(a.refs_digest, b.refs_digest))
                ok = 0;
        }
        keys_free(&ki);
    }
    keys_free(&k0);
    return ok;
}
