/* recon_pair.c - two in-memory sets reconciled through the real codec. */
#include "recon_pair.h"

#include <stdlib.h>
#include <string.h>

uint64_t rp_rng(uint64_t *s)
{
    return guts_splitmix64(s);
}

void rp_mkid(uint64_t *s, guts_id *id)
{
    for (int i = 0; i < GUTS_ID_LEN; i += 4) {
        uint64_t v = rp_rng(s);
        memcpy(id->b + i, &v, 4);
    }
}

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, GUTS_ID_LEN);
}

int rp_add(rp_set *m, const guts_id *id)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        guts_id *ids = realloc(m->ids, cap * sizeof *ids);
        if (!ids) return GUTS_ENOMEM;
        m->ids = ids;
        m->cap = cap;
    }
    m->ids[m->n++] = *id;
    return GUTS_OK;
}

void rp_sort(rp_set *m)
{
    if (m->n > 1) qsort(m->ids, m->n, sizeof *m->ids, id_cmp);
}

int rp_has(const rp_set *m, const guts_id *id)
{
    return m->n && bsearch(id, m->ids, m->n, sizeof *m->ids, id_cmp) != NULL;
}

void rp_free(rp_set *m)
{
    free(m->ids);
    memset(m, 0, sizeof *m);
}

static int rp_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    rp_set *m = ctx;
    size_t a = 0, b = m->n;
    while (a < b) { /* first id with key >= lo */
        size_t mid = a + (b - a) / 2;
        if (guts_recon_key_of_id(&m->ids[mid]) < lo)
            a = mid + 1;
        else
            b = mid;
    }
    for (size_t i = a; i < m->n; i++) {
        uint32_t k = guts_recon_key_of_id(&m->ids[i]);
        if (k > hi) break;
        int rc = cb(cbctx, k, guts_fp_of_id(&m->ids[i]), &m->ids[i]);
        if (rc) return rc;
    }
    return 0;
}

guts_recon_set rp_as_recon(rp_set *m)
{
    guts_recon_set s = {m, rp_scan};
    return s;
}

int rp_make_pair(uint64_t seed, size_t common, size_t only_s, size_t only_p, rp_set *P, rp_set *S)
{
    memset(P, 0, sizeof *P);
    memset(S, 0, sizeof *S);
    guts_id id;
    int rc = GUTS_OK;
    for (size_t i = 0; i < common && !rc; i++) {
        rp_mkid(&seed, &id);
        if (!(rc = rp_add(P, &id))) rc = rp_add(S, &id);
    }
    for (size_t i = 0; i < only_s && !rc; i++) {
        rp_mkid(&seed, &id);
        rc = rp_add(S, &id);
    }
    for (size_t i = 0; i < only_p && !rc; i++) {
        rp_mkid(&seed, &id);
        rc = rp_add(P, &id);
    }
    rp_sort(P);
    rp_sort(S);
    return rc;
}

int rp_travel(uint64_t seed, uint32_t round, const guts_recon_item *items, size_t n, size_t *bytes,
              guts_msg *out, uint8_t **buf)
{
    guts_msg m;
    memset(&m, 0, sizeof m);
    memset(out, 0, sizeof *out);
    *buf = NULL;
    m.type = GUTS_MSG_RECON;
    m.version = GUTS_WIRE_VERSION;
    m.u.recon.key = "owner/repo";
    m.u.recon.space = GUTS_SPACE_OBJECTS;
    m.u.recon.seed = seed;
    m.u.recon.round = round;
    m.u.recon.nitems = (uint32_t)n;
    m.u.recon.items = (guts_recon_item *)(uintptr_t)items;
    size_t len, len2;
    int rc = guts_msg_size(&m, &len);
    if (rc) return rc;
    if (len > GUTS_FRAME_MAX_DEFAULT) return GUTS_EPROTO;
    if (!(*buf = malloc(len ? len : 1))) return GUTS_ENOMEM;
    if ((rc = guts_msg_encode(&m, *buf, len, &len2))) return rc;
    if (len2 != len) return GUTS_EPROTO;
    *bytes += GUTS_FRAME_HDR + len;
    if ((rc = guts_msg_decode(*buf, len, out))) return rc;
    return out->u.recon.nitems == n ? GUTS_OK : GUTS_EPROTO;
}

int rp_session(const guts_recon_set *pull, const guts_recon_set *serve, uint64_t seed, unsigned bpe,
               unsigned max_rounds, guts_recon_emit emit, void *ctx, rp_stats *st)
{
    memset(st, 0, sizeof *st);
    guts_recon_puller p;
    const guts_recon_item *items;
    size_t n;
    int rc = guts_recon_puller_start(&p, pull, seed, &items, &n);
    if (rc) return rc;
    guts_recon_puller_set_bloom_density(&p, bpe);
    guts_recon_item *masks = malloc(GUTS_ITEMS_MAX * sizeof *masks);
    if (!masks) rc = GUTS_ENOMEM;
    int done = 0;
    uint32_t round = 0;
    while (!rc && !done) {
        if (n == 0 || n > GUTS_ITEMS_MAX || round >= max_rounds) {
            rc = GUTS_EPROTO;
            break;
        }
        guts_msg req, rep;
        uint8_t *b1 = NULL, *b2 = NULL;
        size_t nm = 0;
        uint64_t emitted = 0;
        memset(&rep, 0, sizeof rep);
        rc = rp_travel(seed, round, items, n, &st->bytes, &req, &b1);
        if (!rc)
            rc = guts_recon_serve(serve, req.u.recon.seed, req.u.recon.items, req.u.recon.nitems,
                                  masks, GUTS_ITEMS_MAX, &nm, emit, ctx, &emitted);
        st->got += emitted;
        if (!rc) rc = rp_travel(seed, round, masks, nm, &st->bytes, &rep, &b2);
        if (!rc)
            rc = guts_recon_puller_step(&p, rep.u.recon.items, rep.u.recon.nitems, &items, &n,
                                        &done);
        guts_msg_free(&req);
        guts_msg_free(&rep);
        free(b1);
        free(b2);
        round++;
    }
    if (!rc && n != 0) rc = GUTS_EPROTO;
    st->rounds = round;
    st->puller = p.stats;
    guts_recon_puller_free(&p);
    free(masks);
    return rc;
}

typedef struct pull_ctx {
    const rp_set *P;
    rp_set got;
    size_t dups;
} pull_ctx;

static int pull_emit(void *ctx, uint32_t key, const void *elem)
{
    pull_ctx *g = ctx;
    const guts_id *id = elem;
    if (key != guts_recon_key_of_id(id)) return GUTS_EPROTO;
    g->dups += rp_has(g->P, id);
    return rp_add(&g->got, id);
}

int rp_pull(rp_set *P, rp_set *S, uint64_t seed, unsigned bpe, rp_stats *st, size_t *dups)
{
    guts_recon_set ps = rp_as_recon(P), ss = rp_as_recon(S);
    pull_ctx g = {P, {0}, 0};
    /* 64 rounds: tree depth 8 plus deferrals; more is a bug. */
    int rc = rp_session(&ps, &ss, seed, bpe, 64, pull_emit, &g, st);
    for (size_t i = 0; i < g.got.n && !rc; i++)
        rc = rp_add(P, &g.got.ids[i]);
    rp_sort(P);
    /* The same id twice in P is a duplicate too. */
    for (size_t i = 1; i < P->n; i++)
        g.dups += memcmp(&P->ids[i - 1], &P->ids[i], GUTS_ID_LEN) == 0;
    *dups = g.dups;
    rp_free(&g.got);
    return rc;
}
