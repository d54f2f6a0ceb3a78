/* sim_report.c - what a run measured, as JSON (--json) or a short summary.
 *
 * Everything printed comes from the virtual run except the "wall" values
 * (seconds of real time, peak RSS): in JSON they sit alone on the last
 * member line, `"wall": {...}`, and in the summary on the last line,
 * starting "wall:", so a determinism check drops that one line and
 * compares the rest byte for byte (tests/e2e/sim_determinism.sh).
 *
 * Convergence time: a node reaches the final state when its store digest
 * (every repository's key, object count, set fingerprint and refs digest)
 * last changed; the time reported is that moment minus the quiet point
 * (the last write, fault, join, leave or heal), or 0 for a node that
 * already held the final state then. p50/p99/max are nearest-rank over the
 * live nodes.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sim_engine.h"

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rank(const uint64_t *v, size_t n, unsigned pct)
{
    if (!n) return 0;
    size_t k = ((size_t)pct * n + 99) / 100;
    return v[k ? k - 1 : 0];
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

typedef struct rates {
    double mm, mb, um, ub, fm, fb, rm, rb;
} rates;

static void rates_of(const sim_traffic *a, const sim_traffic *b, double node_s, rates *r)
{
    static const sim_traffic zero;
    if (!b) b = &zero;
    double d = node_s > 0 ? node_s : 1;
    r->mm = (double)(a->mcast_msgs - b->mcast_msgs) / d;
    r->mb = (double)(a->mcast_bytes - b->mcast_bytes) / d;
    r->um = (double)(a->ucast_msgs - b->ucast_msgs) / d;
    r->ub = (double)(a->ucast_bytes - b->ucast_bytes) / d;
    r->fm = (double)(a->frame_msgs - b->frame_msgs) / d;
    r->fb = (double)(a->frame_bytes - b->frame_bytes) / d;
    r->rm = (double)(a->recv_msgs - b->recv_msgs) / d;
    r->rb = (double)(a->recv_bytes - b->recv_bytes) / d;
}

static void json_rates(FILE *out, const char *name, const rates *r)
{
    fprintf(out,
            "  \"%s\": {\"multicast_msgs\": %.3f, \"multicast_bytes\": %.1f, "
            "\"unicast_msgs\": %.3f, \"unicast_bytes\": %.1f, \"stream_frames\": %.3f, "
            "\"stream_bytes\": %.1f, \"received_dgrams\": %.3f, \"received_bytes\": %.1f},\n",
            name, r->mm, r->mb, r->um, r->ub, r->fm, r->fb, r->rm, r->rb);
}

/* ---- divergence: what differs between a node and the majority ------------- */

/* Nodes described when a run does not converge, and ref records per
 * repository: enough to start debugging from, short enough to read. */
#define DIVERGE_NODES 3
#define DIVERGE_REFS 6

typedef struct rlist {
    guts_ref *r;
    size_t n, cap;
} rlist;

static int rlist_cb(const guts_ref *ref, void *arg)
{
    rlist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        guts_ref *p = realloc(l->r, nc * sizeof(guts_ref));
        if (!p) return GUTS_ENOMEM;
        l->r = p;
        l->cap = nc;
    }
    l->r[l->n++] = *ref;
    return 0;
}

static void ref_line(FILE *out, const char *who, const guts_ref *r)
{
    char hex[GUTS_HEX_LEN + 1], w[2 * GUTS_NODE_ID_LEN + 1];
    guts_id_to_hex(&r->target, hex);
    guts_node_id_to_hex(&r->writer, w);
    fprintf(out, "      %s %s -> %.12s%s%s clock %" PRIu64 " writer %.8s\n", who, r->name, hex,
            r->symref[0] ? " symref " : "", r->symref, r->clock, w);
}

/* Refs of one repository that differ between node a and reference b. */
static void diff_refs(const guts_core_store *a, const guts_core_store *b, const char *key,
                      FILE *out)
{
    rlist la = {0}, lb = {0};
    a->refs(a->ctx, key, 1, rlist_cb, &la);
    b->refs(b->ctx, key, 1, rlist_cb, &lb);
    size_t i = 0, j = 0, shown = 0;
    while ((i < la.n || j < lb.n) && shown < DIVERGE_REFS) {
        int c = i >= la.n ? 1 : j >= lb.n ? -1 : strcmp(la.r[i].name, lb.r[j].name);
        if (c == 0) {
            guts_ref *x = &la.r[i++], *y = &lb.r[j++];
            if (x->clock == y->clock && !guts_id_cmp(&x->target, &y->target) &&
                !memcmp(&x->writer, &y->writer, sizeof(x->writer)) && !strcmp(x->symref, y->symref))
                continue;
            ref_line(out, "node:    ", x);
            ref_line(out, "majority:", y);
        } else if (c < 0) {
            ref_line(out, "only here:", &la.r[i++]);
        } else {
            ref_line(out, "only in majority:", &lb.r[j++]);
        }
        shown++;
    }
    free(la.r);
    free(lb.r);
}

typedef struct klist {
    char (*k)[GUTS_KEY_MAX + 1];
    size_t n, cap;
} klist;

static int klist_cb(const char *key, void *arg)
{
    klist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 8;
        void *p = realloc(l->k, nc * sizeof(*l->k));
        if (!p) return GUTS_ENOMEM;
        l->k = p;
        l->cap = nc;
    }
    snprintf(l->k[l->n++], GUTS_KEY_MAX + 1, "%s", key);
    return 0;
}

/* For a few live nodes outside the largest agreeing group: each repository
 * that differs from a node of that group, with counts, pending refs and the
 * ref records that differ. */
static void divergence(sim *s, uint64_t major, FILE *out)
{
    uint32_t N = s->cfg.nodes, ref = N;
    for (uint32_t i = 0; i < N && ref == N; i++)
        if (s->nodes[i].state == NODE_UP && s->nodes[i].digest == major) ref = i;
    if (ref == N) return;
    const guts_core_store *b = sim_cstore_inner(s->nodes[ref].cs);
    size_t shown = 0;
    for (uint32_t i = 0; i < N && shown < DIVERGE_NODES; i++) {
        snode *nd = &s->nodes[i];
        if (nd->state != NODE_UP || nd->digest == major) continue;
        shown++;
        guts_core_counters k;
        guts_core_counters_get(nd->core, &k);
        fprintf(out, "  node %u differs from node %u (refs pending %" PRIu64 "):\n", i, ref,
                k.refs_pending);
        const guts_core_store *a = sim_cstore_inner(nd->cs);
        klist keys = {0};
        a->repos(a->ctx, klist_cb, &keys);
        b->repos(b->ctx, klist_cb, &keys);
        for (size_t r = 0; r < keys.n; r++) {
            int dup = 0;
            for (size_t q = 0; q < r; q++)
                dup |= strcmp(keys.k[q], keys.k[r]) == 0;
            if (dup) continue;
            guts_repo_info x, y;
            int hx = a->info(a->ctx, keys.k[r], &x) == GUTS_OK;
            int hy = b->info(b->ctx, keys.k[r], &y) == GUTS_OK;
            if (hx && hy && guts_fp_eq(x.fp, y.fp) && guts_fp_eq(x.refs_digest, y.refs_digest))
                continue;
            fprintf(out,
                    "    %s: objects %" PRIu64 " vs %" PRIu64 "%s, refs %" PRIu64 " vs %" PRIu64
                    "\n",
                    keys.k[r], hx ? x.objects : 0, hy ? y.objects : 0,
                    hx && hy && guts_fp_eq(x.fp, y.fp) ? " (same set)" : "", hx ? x.refs : 0,
                    hy ? y.refs : 0);
            if (hx && hy) diff_refs(a, b, keys.k[r], out);
        }
        free(keys.k);
    }
}

/* Nodes listed as the slowest to reach the final state: where to look first
 * in a long tail (replay with --verbose and follow them). */
#define SLOWEST_NODES 5

/* The SLOWEST_NODES live nodes whose store last changed latest after the
 * quiet point, slowest first: out[k] gets the node, ms[k] the time. */
static size_t slowest(const sim *s, uint32_t *out, uint64_t *ms)
{
    size_t n = 0;
    for (uint32_t i = 0; i < s->cfg.nodes; i++) {
        const snode *nd = &s->nodes[i];
        if (nd->state != NODE_UP || nd->changed_at <= s->t_quiet) continue;
        uint64_t t = nd->changed_at - s->t_quiet;
        size_t k = n < SLOWEST_NODES ? n++ : SLOWEST_NODES;
        if (k == SLOWEST_NODES) {
            if (t <= ms[SLOWEST_NODES - 1]) continue;
            k = SLOWEST_NODES - 1;
        }
        while (k > 0 && ms[k - 1] < t) {
            ms[k] = ms[k - 1];
            out[k] = out[k - 1];
            k--;
        }
        ms[k] = t;
        out[k] = i;
    }
    return n;
}

int sim_report(sim *s, FILE *out, double wall_s, double cpu_s, uint64_t rss_bytes)
{
    const sim_config *c = &s->cfg;
    uint32_t N = c->nodes;
    uint64_t *reach = malloc(((size_t)N + 1) * sizeof(uint64_t));
    uint64_t *dig = malloc(((size_t)N + 1) * sizeof(uint64_t));
    size_t live = 0;
    guts_core_counters tot;
    memset(&tot, 0, sizeof(tot));
    for (uint32_t i = 0; reach && dig && i < N; i++) {
        snode *nd = &s->nodes[i];
        if (nd->state != NODE_UP) continue;
        reach[live] = nd->changed_at > s->t_quiet ? nd->changed_at - s->t_quiet : 0;
        dig[live++] = nd->digest;
        guts_core_counters k;
        guts_core_counters_get(nd->core, &k);
        tot.sessions_ok += k.sessions_ok;
        tot.sessions_failed += k.sessions_failed;
        tot.sessions_empty += k.sessions_empty;
        tot.objects_fetched += k.objects_fetched;
        tot.refs_applied += k.refs_applied;
        tot.refs_pending += k.refs_pending;
        tot.refs_dropped += k.refs_dropped;
        tot.peers_expired += k.peers_expired;
        tot.peers_evicted += k.peers_evicted;
        tot.bad_objects += k.bad_objects;
        tot.dgrams_malformed += k.dgrams_malformed;
        tot.frames_malformed += k.frames_malformed;
        tot.dgrams_dropped += k.dgrams_dropped;
        tot.dgrams_unicast += k.dgrams_unicast;
        tot.peers_unicast += k.peers_unicast;
        tot.pex_out += k.pex_out;
        tot.pex_in += k.pex_in;
        tot.pex_ignored += k.pex_ignored;
        tot.learned += k.learned;
        tot.learned_dropped += k.learned_dropped;
        tot.learned_given_up += k.learned_given_up;
        tot.turns_moved += k.turns_moved;
        tot.turns_taken += k.turns_taken;
        tot.turns_released += k.turns_released;
        tot.turns_freed += k.turns_freed;
    }
    /* distinct final states and the largest group sharing one */
    size_t states = 0, majority = 0;
    uint64_t major = 0;
    if (dig && live) {
        qsort(dig, live, sizeof(uint64_t), u64_cmp);
        for (size_t i = 0; i < live;) {
            size_t j = i;
            while (j < live && dig[j] == dig[i])
                j++;
            states++;
            if (j - i > majority) {
                majority = j - i;
                major = dig[i];
            }
            i = j;
        }
    }
    int converged = live > 0 && states == 1;
    uint32_t slow[SLOWEST_NODES];
    uint64_t slow_ms[SLOWEST_NODES];
    size_t nslow = slowest(s, slow, slow_ms);
    if (reach) qsort(reach, live, sizeof(uint64_t), u64_cmp);
    const sim_violations *v = &s->viol;
    uint64_t nviol =
        v->bad_object + v->open_closure + v->big_dgram + v->ref_backwards + v->store_error;
    int ok = converged && nviol == 0;

    sim_traffic all;
    sim_traffic_sum(s, &all);
    double secs = (double)s->stopped_at / 1000.0;
    rates whole, steady;
    rates_of(&all, NULL, secs * N, &whole);
    int have_steady = s->steady_taken && s->stopped_at > s->steady_from;
    double steady_s = have_steady ? (double)(s->stopped_at - s->steady_from) / 1000.0 : 0;
    rates_of(&all, have_steady ? &s->steady0 : &all, steady_s * N, &steady);

    char *replay = NULL;
    size_t replay_len = 0;
    FILE *rf = open_memstream(&replay, &replay_len);
    if (rf) {
        sim_opts_replay(c, rf);
        fclose(rf);
    }
    const char *cmd = replay ? replay : "guts-sim";

    if (c->json) {
        fprintf(out, "{\n  \"command\": ");
        json_str(out, cmd);
        fprintf(out,
                ",\n  \"nodes\": %" PRIu32 ",\n  \"seed\": %" PRIu64 ",\n"
                "  \"multicast\": %s,\n  \"peers\": %" PRIu32 ",\n  \"star\": %s,\n"
                "  \"segments\": %" PRIu32 ",\n"
                "  \"duration_ms\": %" PRIu64 ",\n  \"stopped_ms\": %" PRIu64 ",\n"
                "  \"quiet_ms\": %" PRIu64 ",\n  \"converged\": %s,\n"
                "  \"live_nodes\": %zu,\n  \"final_states\": %zu,\n  \"largest_agreeing\": %zu,\n",
                N, c->seed, c->no_multicast ? "false" : "true", c->seeds,
                c->star ? "true" : "false", c->segments, c->duration, s->stopped_at, s->t_quiet,
                converged ? "true" : "false", live, states, majority);
        if (converged)
            fprintf(out,
                    "  \"convergence_ms\": {\"p50\": %" PRIu64 ", \"p99\": %" PRIu64
                    ", \"max\": %" PRIu64 "},\n",
                    rank(reach, live, 50), rank(reach, live, 99), rank(reach, live, 100));
        else
            fprintf(out, "  \"convergence_ms\": null,\n");
        fprintf(out, "  \"slowest_nodes\": [");
        for (size_t k = 0; k < nslow; k++)
            fprintf(out, "%s{\"node\": %u, \"ms\": %" PRIu64 "}", k ? ", " : "", slow[k],
                    slow_ms[k]);
        fprintf(out, "],\n");
        sim_member_report(s, out, major, 1);
        json_rates(out, "per_node_per_s", &whole);
        fprintf(out, "  \"steady_from_ms\": %" PRIu64 ",\n", have_steady ? s->steady_from : 0);
        json_rates(out, "steady_per_node_per_s", &steady);
        fprintf(out,
                "  \"largest_dgram\": %" PRIu64 ",\n  \"dgram_deliveries\": %" PRIu64
                ",\n  \"dgrams_lost\": %" PRIu64 ",\n  \"dgrams_duped\": %" PRIu64
                ",\n  \"corrupted\": %" PRIu64 ",\n  \"egress_dropped\": %" PRIu64
                ",\n  \"streams_opened\": %" PRIu64 ",\n  \"events\": %" PRIu64 ",\n",
                s->dgram_max, s->dgram_deliveries, s->dgrams_lost, s->dgrams_duped, s->corrupted,
                s->egress_dropped, s->streams_opened, s->events);
        fprintf(out,
                "  \"faults\": {\"writes\": %" PRIu64 ", \"crashes\": %" PRIu64
                ", \"restarts\": %" PRIu64 ", \"joins\": %" PRIu64 ", \"leaves\": %" PRIu64 "},\n",
                s->writes_done, s->crashes, s->restarts, s->joins, s->leaves);
        fprintf(out,
                "  \"cores\": {\"sessions_ok\": %" PRIu64 ", \"sessions_failed\": %" PRIu64
                ", \"sessions_empty\": %" PRIu64 ", \"objects_fetched\": %" PRIu64
                ", \"refs_applied\": %" PRIu64 ", \"refs_pending\": %" PRIu64
                ", \"refs_dropped\": %" PRIu64 ", \"peers_expired\": %" PRIu64
                ", \"peers_evicted\": %" PRIu64 ", \"bad_objects\": %" PRIu64
                ", \"dgrams_malformed\": %" PRIu64 ", \"frames_malformed\": %" PRIu64
                ", \"dgrams_unicast\": %" PRIu64 ", \"peers_unicast\": %" PRIu64
                ", \"pex_out\": %" PRIu64 ", \"pex_in\": %" PRIu64 ", \"pex_ignored\": %" PRIu64
                ", \"learned\": %" PRIu64
                ", \"learned_dropped\": %" PRIu64 ", \"learned_given_up\": %" PRIu64
                ", \"turns_released\": %" PRIu64 ", \"turns_moved\": %" PRIu64
                ", \"turns_taken\": %" PRIu64 ", \"turns_freed\": %" PRIu64 "},\n",
                tot.sessions_ok, tot.sessions_failed, tot.sessions_empty, tot.objects_fetched,
                tot.refs_applied, tot.refs_pending, tot.refs_dropped, tot.peers_expired,
                tot.peers_evicted, tot.bad_objects, tot.dgrams_malformed, tot.frames_malformed,
                tot.dgrams_unicast, tot.peers_unicast, tot.pex_out, tot.pex_in,
                tot.pex_ignored, tot.learned,
                tot.learned_dropped, tot.learned_given_up, tot.turns_released, tot.turns_moved,
                tot.turns_taken, tot.turns_freed);
        fprintf(out,
                "  \"violations\": {\"total\": %" PRIu64 ", \"bad_object\": %" PRIu64
                ", \"open_closure\": %" PRIu64 ", \"big_dgram\": %" PRIu64
                ", \"ref_backwards\": %" PRIu64 ", \"store_error\": %" PRIu64
                ", \"not_converged\": %d, \"first\": [",
                nviol, v->bad_object, v->open_closure, v->big_dgram, v->ref_backwards,
                v->store_error, !converged);
        for (size_t i = 0; i < v->nlines; i++) {
            fputs(i ? ", " : "", out);
            json_str(out, v->lines[i]);
        }
        fprintf(out, "]},\n  \"ok\": %s,\n", ok ? "true" : "false");
        fprintf(out,
                "  \"wall\": {\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"rss_bytes\": %" PRIu64
                ", \"rss_per_node_bytes\": %" PRIu64 "}\n}\n",
                wall_s, cpu_s, rss_bytes, N ? rss_bytes / N : 0);
    } else {
        fprintf(out, "guts-sim: %" PRIu32 " nodes, seed %" PRIu64 ", %.1f virtual s", N, c->seed,
                secs);
        if (c->no_multicast || c->seeds || c->segments > 1)
            fprintf(out, ", multicast %s, %" PRIu32 " %speers each, %" PRIu32 " segment%s",
                    c->no_multicast ? "off" : "on", c->seeds, c->star ? "hub " : "",
                    c->segments, c->segments == 1 ? "" : "s");
        fprintf(out,
                " (%" PRIu64 " writes, %" PRIu64 " crashes, %" PRIu64 " joins, %" PRIu64
                " leaves)\n",
                s->writes_done, s->crashes, s->joins, s->leaves);
        if (converged)
            fprintf(out,
                    "converged: %zu live nodes agree; after the quiet point %.3f s: "
                    "p50 %.3f s, p99 %.3f s, max %.3f s\n",
                    live, (double)s->t_quiet / 1000, (double)rank(reach, live, 50) / 1000,
                    (double)rank(reach, live, 99) / 1000, (double)rank(reach, live, 100) / 1000);
        if (converged && nslow) {
            fprintf(out, "slowest:");
            for (size_t k = 0; k < nslow; k++)
                fprintf(out, " node %u %.3f s%s", slow[k], (double)slow_ms[k] / 1000,
                        k + 1 < nslow ? "," : "\n");
        }
        if (!converged) {
            fprintf(out, "NOT converged: %zu live nodes in %zu states (largest %zu)\n", live,
                    states, majority);
            divergence(s, major, out);
        }
        sim_member_report(s, out, major, 0);
        fprintf(out,
                "per node per s: multicast %.2f msgs %.0f B, unicast %.2f msgs %.0f B, "
                "streams %.2f frames %.0f B, received %.1f dgrams\n",
                whole.mm, whole.mb, whole.um, whole.ub, whole.fm, whole.fb, whole.rm);
        fprintf(out,
                "largest datagram: %" PRIu64 " B (limit %d); sessions ok %" PRIu64
                ", failed %" PRIu64 "\n",
                s->dgram_max, GUTS_DGRAM_MAX, tot.sessions_ok, tot.sessions_failed);
        if (nviol == 0) {
            fprintf(out, "violations: none\n");
        } else {
            fprintf(out,
                    "violations: %" PRIu64 " (bad object %" PRIu64 ", open closure %" PRIu64
                    ", big datagram %" PRIu64 ", ref backwards %" PRIu64 ", store %" PRIu64 ")\n",
                    nviol, v->bad_object, v->open_closure, v->big_dgram, v->ref_backwards,
                    v->store_error);
            for (size_t i = 0; i < v->nlines; i++)
                fprintf(out, "  %s\n", v->lines[i]);
        }
        if (!ok) fprintf(out, "FAILED; replay: %s\n", cmd);
        fprintf(out,
                "wall: %.3f s (cpu %.3f s), peak RSS %" PRIu64 " MB, %" PRIu64 " kB per node\n",
                wall_s, cpu_s, rss_bytes >> 20, N ? rss_bytes / N / 1024 : 0);
    }
    if (!ok && c->json) fprintf(stderr, "guts-sim: FAILED; replay: %s\n", cmd);
    free(replay);
    free(reach);
    free(dig);
    return ok ? 0 : 1;
}
