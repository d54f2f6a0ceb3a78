/* sim_member.c - membership measurements: failure detection and joins.
 *
 * Failure detection. When a node crashes, the live nodes whose view holds
 * it (guts_core_has_peer) are its holders; every SIM_MEMBER_TICK_MS the
 * engine asks each remaining holder again, and the first time one no
 * longer holds it, the time since the crash is one sample (a holder that
 * crashes itself meanwhile is no sample). A crash is detected when its
 * last holder dropped it; a node that restarts first ends its tracking
 * (its holders then meet the new incarnation). Samples are per holder
 * (holder_ms) and per crash (all_ms, the time until the last holder); a
 * holder still holding at the end of the run is counted as undetected.
 *
 * False positives: a core that drops a peer as expired or dead
 * (GUTS_EV_PEER_LEFT, detail "expired" or "dead") while that node is up and
 * has been up for SIM_MEMBER_GRACE_MS (its previous life's entry may
 * rightly go while its new announces are on their way).
 *
 * Joins: a node started by a scenario `join` after the start-up ramp
 * holds the group's state at the time its store last changed; the report
 * gives that minus the join time for the joiners that agree with the
 * largest group at the end (a write after the join would count too: the
 * join scenarios write nothing after their joins).
 */
#include <stdlib.h>
#include <string.h>

#include "sim_engine.h"

/* How often pending holders are asked (ms): the resolution of the samples. */
#define SIM_MEMBER_TICK_MS 100
#define SIM_MEMBER_GRACE_MS 10000
/* False positives kept to see, at the end, whether the accuser holds the
 * node again: far more than a run that passes has. */
#define SIM_MEMBER_FP_MAX 100000

typedef struct fd_crash {
    uint32_t node, gen; /* the crashed node and its generation after the crash */
    guts_node_id id;
    uint64_t t;
    uint32_t *holder, *hgen; /* remaining holders and their generations */
    size_t n;
    uint64_t last; /* when the last holder so far dropped it */
} fd_crash;

typedef struct u64v {
    uint64_t *v;
    size_t n, cap;
} u64v;

/* A false positive: node by (generation gen) dropped live node node. */
typedef struct fp_drop {
    uint32_t by, gen, node;
} fp_drop;

/* A joiner's store changed: dt ms after its join it held objects. */
typedef struct join_pt {
    uint32_t node;
    uint32_t dt;
    uint64_t objects;
} join_pt;

typedef struct id_ix {
    guts_node_id id;
    uint32_t node;
} id_ix;

struct sim_member {
    fd_crash *cr;
    size_t ncr, capcr;
    size_t pending; /* crashes with holders left */
    u64v holder_ms, all_ms, join_ms;
    uint64_t holders, undetected, restarted, false_pos, fp_expired, fp_dead;
    uint64_t next_tick;
    uint64_t *started; /* per node: when its core last started (0: never) */
    uint64_t *joined;  /* per node: a scenario join's time (0: none) */
    id_ix *ix;         /* node ids, sorted (built at the first false-positive check) */
    join_pt *jp;       /* joiners' store changes, in time order */
    size_t njp, capjp;
    fp_drop *fp; /* false positives, the first SIM_MEMBER_FP_MAX */
    size_t nfp, capfp;
};

static int u64v_add(u64v *a, uint64_t x)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? 2 * a->cap : 64;
        uint64_t *p = realloc(a->v, nc * sizeof(*p));
        if (!p) return GUTS_ENOMEM;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return GUTS_OK;
}

static sim_member *get(sim *s)
{
    if (s->member) return s->member;
    sim_member *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->started = calloc(s->cfg.nodes, sizeof(uint64_t));
    m->joined = calloc(s->cfg.nodes, sizeof(uint64_t));
    if (!m->started || !m->joined) {
        free(m->started);
        free(m->joined);
        free(m);
        return NULL;
    }
    s->member = m;
    return m;
}

void sim_member_free(sim *s)
{
    sim_member *m = s->member;
    if (!m) return;
    for (size_t k = 0; k < m->ncr; k++) {
        free(m->cr[k].holder);
        free(m->cr[k].hgen);
    }
    free(m->cr);
    free(m->holder_ms.v);
    free(m->all_ms.v);
    free(m->join_ms.v);
    free(m->started);
    free(m->joined);
    free(m->ix);
    free(m->jp);
    free(m->fp);
    free(m);
    s->member = NULL;
}

void sim_member_started(sim *s, uint32_t i, int scenario_join)
{
    sim_member *m = get(s);
    if (!m) return;
    m->started[i] = s->now ? s->now : 1;
    if (scenario_join) m->joined[i] = s->now ? s->now : 1;
}

void sim_member_progress(sim *s, uint32_t i, uint64_t objects)
{
    sim_member *m = s->member;
    if (!m || !m->joined[i] || s->nodes[i].state != NODE_UP || s->now - m->joined[i] > UINT32_MAX)
        return;
    if (m->njp == m->capjp) {
        size_t nc = m->capjp ? 2 * m->capjp : 64;
        join_pt *p = realloc(m->jp, nc * sizeof(*p));
        if (!p) return;
        m->jp = p;
        m->capjp = nc;
    }
    m->jp[m->njp++] = (join_pt){i, (uint32_t)(s->now - m->joined[i]), objects};
}

void sim_member_crash(sim *s, uint32_t i)
{
    sim_member *m = get(s);
    if (!m) return;
    if (m->ncr == m->capcr) {
        size_t nc = m->capcr ? 2 * m->capcr : 16;
        fd_crash *p = realloc(m->cr, nc * sizeof(*p));
        if (!p) return;
        m->cr = p;
        m->capcr = nc;
    }
    fd_crash *c = &m->cr[m->ncr];
    memset(c, 0, sizeof(*c));
    c->node = i;
    c->gen = s->nodes[i].gen + 1; /* sim_core_stop bumps it */
    c->id = s->nodes[i].id;
    c->t = s->now;
    size_t cap = 0;
    for (uint32_t j = 0; j < s->cfg.nodes; j++) {
        const snode *h = &s->nodes[j];
        if (j == i || h->state != NODE_UP || !guts_core_has_peer(h->core, &c->id)) continue;
        if (c->n == cap) {
            cap = cap ? 2 * cap : 64;
            uint32_t *a = realloc(c->holder, cap * sizeof(uint32_t));
            if (a) c->holder = a;
            uint32_t *b = realloc(c->hgen, cap * sizeof(uint32_t));
            if (b) c->hgen = b;
            if (!a || !b) break;
        }
        c->holder[c->n] = j;
        c->hgen[c->n++] = h->gen;
    }
    m->holders += c->n;
    m->ncr++;
    if (c->n) {
        m->pending++;
        if (!m->next_tick) m->next_tick = s->now + SIM_MEMBER_TICK_MS;
    } else {
        u64v_add(&m->all_ms, 0); /* nobody held it */
    }
}

uint64_t sim_member_next(const sim *s)
{
    return s->member && s->member->pending ? s->member->next_tick : 0;
}

static void crash_done(sim_member *m, fd_crash *c, int detected)
{
    if (detected) u64v_add(&m->all_ms, c->last - c->t);
    free(c->holder);
    free(c->hgen);
    c->holder = c->hgen = NULL;
    c->n = 0;
    m->pending--;
}

void sim_member_tick(sim *s)
{
    sim_member *m = s->member;
    if (!m || !m->pending || s->now < m->next_tick) return;
    m->next_tick = s->now + SIM_MEMBER_TICK_MS;
    for (size_t k = 0; k < m->ncr; k++) {
        fd_crash *c = &m->cr[k];
        if (!c->n) continue;
        if (s->nodes[c->node].gen != c->gen) { /* it came back first */
            m->restarted += c->n;
            crash_done(m, c, 0);
            continue;
        }
        for (size_t j = c->n; j-- > 0;) {
            const snode *h = &s->nodes[c->holder[j]];
            int gone = h->gen != c->hgen[j] || h->state != NODE_UP;
            if (!gone && guts_core_has_peer(h->core, &c->id)) continue;
            if (!gone) {
                u64v_add(&m->holder_ms, s->now - c->t);
                c->last = s->now;
            }
            c->holder[j] = c->holder[--c->n];
            c->hgen[j] = c->hgen[c->n];
        }
        if (!c->n) crash_done(m, c, c->last != 0); /* 0: its holders all went first */
    }
}

static int ix_cmp(const void *a, const void *b)
{
    return memcmp(&((const id_ix *)a)->id, &((const id_ix *)b)->id, sizeof(guts_node_id));
}

int sim_member_node_of(sim *s, const guts_node_id *id, uint32_t *node)
{
    sim_member *m = get(s);
    if (!m) return GUTS_ENOMEM;
    if (!m->ix) { /* node ids, sorted */
        m->ix = malloc((size_t)s->cfg.nodes * sizeof(id_ix));
        if (!m->ix) return GUTS_ENOMEM;
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            m->ix[i].id = s->nodes[i].id;
            m->ix[i].node = i;
        }
        qsort(m->ix, s->cfg.nodes, sizeof(id_ix), ix_cmp);
    }
    id_ix key = {.id = *id};
    const id_ix *f = bsearch(&key, m->ix, s->cfg.nodes, sizeof(id_ix), ix_cmp);
    if (!f) return GUTS_ENOTFOUND;
    *node = f->node;
    return GUTS_OK;
}

void sim_member_event(sim *s, uint32_t by, const guts_core_event *e)
{
    if (e->type != GUTS_EV_PEER_LEFT) return;
    int expired = strcmp(e->detail, "expired") == 0, dead = strcmp(e->detail, "dead") == 0;
    if (!expired && !dead) return;
    sim_member *m = get(s);
    uint32_t i;
    if (!m || sim_member_node_of(s, &e->peer, &i) != GUTS_OK) return;
    const snode *nd = &s->nodes[i];
    if (nd->state != NODE_UP || m->started[i] + SIM_MEMBER_GRACE_MS > s->now) return;
    if (m->nfp == m->capfp && m->capfp < SIM_MEMBER_FP_MAX) {
        size_t nc = m->capfp ? 2 * m->capfp : 64;
        fp_drop *p = realloc(m->fp, nc * sizeof(*p));
        if (p) {
            m->fp = p;
            m->capfp = nc;
        }
    }
    if (m->nfp < m->capfp) m->fp[m->nfp++] = (fp_drop){by, s->nodes[by].gen, i};
    m->false_pos++;
    m->fp_expired += (uint64_t)expired;
    m->fp_dead += (uint64_t)dead;
}

static int cmp64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const u64v *a, unsigned p)
{
    if (!a->n) return 0;
    size_t i = (size_t)((a->n - 1) * (uint64_t)p / 100);
    return a->v[i];
}

static void dist(FILE *out, const char *name, u64v *a, int json)
{
    if (a->n) qsort(a->v, a->n, sizeof(uint64_t), cmp64);
    if (json)
        fprintf(out, "\"%s\": {\"n\": %zu, \"p50\": %llu, \"p99\": %llu, \"max\": %llu}", name,
                a->n, (unsigned long long)pct(a, 50), (unsigned long long)pct(a, 99),
                (unsigned long long)pct(a, 100));
    else
        fprintf(out, "%s %zu: p50 %.1f s, p99 %.1f s, max %.1f s", name, a->n,
                (double)pct(a, 50) / 1000, (double)pct(a, 99) / 1000,
                (double)pct(a, 100) / 1000);
}

/* A curve's grid step: a multiple of unit, at most SIM_CURVE_POINTS steps to max. */
#define SIM_CURVE_POINTS 100
static uint64_t curve_step(uint64_t max, uint64_t unit)
{
    uint64_t k = (max + unit * SIM_CURVE_POINTS - 1) / (unit * SIM_CURVE_POINTS);
    return unit * (k ? k : 1);
}

/* "holder_curve": [[ms, fraction of the holders that dropped the crashed
 * node within ms of its crash], ...]; hm sorted; undetected holders count
 * in the whole. */
static void detect_curve(FILE *out, const u64v *hm, uint64_t undetected)
{
    fputs("\"holder_curve\": [", out);
    uint64_t whole = hm->n + undetected;
    if (hm->n) {
        uint64_t max = hm->v[hm->n - 1], step = curve_step(max, SIM_MEMBER_TICK_MS);
        size_t k = 0;
        for (uint64_t t = 0;; t += step) {
            while (k < hm->n && hm->v[k] <= t)
                k++;
            fprintf(out, "%s[%llu, %.4f]", t ? ", " : "", (unsigned long long)t,
                    (double)k / (double)whole);
            if (t >= max) break;
        }
    }
    fputs("]", out);
}

static int jp_cmp(const void *a, const void *b)
{
    const join_pt *x = a, *y = b;
    if (x->dt != y->dt) return x->dt < y->dt ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* "curve": [[ms, mean over the joiners that agree with the largest group
 * of the fraction of its objects they held ms after their join], ...]. */
static void join_curve(sim *s, FILE *out, uint64_t major)
{
    sim_member *m = s->member;
    fputs("\"curve\": [", out);
    uint64_t target = 0, nj = 0;
    for (uint32_t i = 0; i < s->cfg.nodes && !target; i++)
        if (s->nodes[i].state == NODE_UP && s->nodes[i].digest == major)
            target = sim_node_objects(s, i);
    join_pt *v = m && m->njp ? malloc(m->njp * sizeof(join_pt)) : NULL;
    uint64_t *cur = v ? calloc(s->cfg.nodes, sizeof(uint64_t)) : NULL;
    size_t n = 0;
    if (cur && target) {
        for (size_t k = 0; k < m->njp; k++) {
            const snode *nd = &s->nodes[m->jp[k].node];
            if (nd->state == NODE_UP && nd->digest == major) v[n++] = m->jp[k];
        }
        for (uint32_t i = 0; i < s->cfg.nodes; i++)
            nj += m->joined[i] && s->nodes[i].state == NODE_UP && s->nodes[i].digest == major;
    }
    if (n && nj) {
        qsort(v, n, sizeof(join_pt), jp_cmp);
        uint64_t max = v[n - 1].dt, step = curve_step(max, 1), sum = 0;
        size_t k = 0;
        for (uint64_t t = 0;; t += step) {
            for (; k < n && v[k].dt <= t; k++) {
                sum += v[k].objects - cur[v[k].node];
                cur[v[k].node] = v[k].objects;
            }
            fprintf(out, "%s[%llu, %.4f]", t ? ", " : "", (unsigned long long)t,
                    (double)sum / (double)(nj * target));
            if (t >= max) break;
        }
    }
    free(v);
    free(cur);
    fputs("]", out);
}

void sim_member_report(sim *s, FILE *out, uint64_t major, int json)
{
    sim_member *m = s->member;
    u64v none = {0};
    uint64_t undetected = 0, not_joined = 0, held_again = 0;
    if (m) {
        for (size_t k = 0; k < m->nfp; k++) { /* the accuser holds it again */
            const fp_drop *f = &m->fp[k];
            const snode *a = &s->nodes[f->by], *nd = &s->nodes[f->node];
            held_again += a->state == NODE_UP && a->gen == f->gen && nd->state == NODE_UP &&
                          guts_core_has_peer(a->core, &nd->id);
        }
        for (size_t k = 0; k < m->ncr; k++)
            undetected += m->cr[k].n;
        for (uint32_t i = 0; i < s->cfg.nodes; i++) {
            const snode *nd = &s->nodes[i];
            if (!m->joined[i] || nd->state != NODE_UP) continue;
            if (nd->digest != major)
                not_joined++;
            else
                u64v_add(&m->join_ms,
                         nd->changed_at > m->joined[i] ? nd->changed_at - m->joined[i] : 0);
        }
    }
    u64v *hm = m ? &m->holder_ms : &none, *am = m ? &m->all_ms : &none,
         *jm = m ? &m->join_ms : &none;
    if (json) {
        fprintf(out, "  \"failure_detection\": {\"crashes\": %zu, \"holders\": %llu, ",
                m ? m->ncr : 0, (unsigned long long)(m ? m->holders : 0));
        dist(out, "holder_ms", hm, 1);
        fputs(", ", out);
        dist(out, "all_ms", am, 1);
        fputs(", ", out);
        detect_curve(out, hm, undetected);
        fprintf(out,
                ", \"undetected\": %llu, \"restarted_first\": %llu, \"false_positives\": %llu, "
                "\"false_expired\": %llu, \"false_dead\": %llu, \"false_held_again\": %llu},\n"
                "  \"join\": {",
                (unsigned long long)undetected, (unsigned long long)(m ? m->restarted : 0),
                (unsigned long long)(m ? m->false_pos : 0),
                (unsigned long long)(m ? m->fp_expired : 0),
                (unsigned long long)(m ? m->fp_dead : 0), (unsigned long long)held_again);
        dist(out, "ms", jm, 1);
        fputs(", ", out);
        join_curve(s, out, major);
        fprintf(out, ", \"not_joined\": %llu},\n", (unsigned long long)not_joined);
    } else {
        if (m && m->ncr) {
            fprintf(out, "failure detection: %zu crashes, %llu holders; ", m->ncr,
                    (unsigned long long)m->holders);
            dist(out, "holders dropped it", hm, 0);
            fputs("; ", out);
            dist(out, "crashes", am, 0);
            fprintf(out, "; undetected %llu\n", (unsigned long long)undetected);
        }
        if (m && m->false_pos)
            fprintf(out,
                    "false positives: %llu live nodes dropped as expired or dead (%llu held "
                    "again at the end)\n",
                    (unsigned long long)m->false_pos, (unsigned long long)held_again);
        if (jm->n || not_joined) {
            fputs("joins: ", out);
            dist(out, "joined", jm, 0);
            fprintf(out, "; not holding the group's state %llu\n",
                    (unsigned long long)not_joined);
        }
    }
}
