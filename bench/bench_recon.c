/* bench_recon.c - what range reconciliation costs, against the number of
 * differences.
 *
 * A server holds n random object ids; the puller holds the same minus d. For
 * each (n, d) the puller pulls in sessions with fresh seeds until it holds
 * everything. Every round travels through the real codec (guts_msg_encode,
 * then guts_msg_decode on the other side), so "digest bytes" are the encoded
 * RECON frames both ways, 4-byte frame headers included; object payloads are
 * not counted. CPU time is both sides' work (scans, hashing, blooms, codec)
 * for the first session, from CLOCK_PROCESS_CPUTIME_ID. The baselines are the
 * seed's full id list (a msgpack array of n 20-byte bins) and one bloom of all
 * n ids at the 1% optimum (9.59 bits per id, research.md).
 *
 * Usage: bench_recon [--quick]   (--quick: n = 1,000 and 100,000 only)
 * Prints a markdown table on stdout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/recon.h"
#include "guts/wire.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_recon: %s: %s\n", what, guts_strerror(rc));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("malloc", GUTS_ENOMEM);
    return p;
}

/* ---- a sorted in-memory set ---------------------------------------------- */

typedef struct mset {
    guts_id *ids;
    size_t n, cap;
} mset;

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, GUTS_ID_LEN);
}

static void mset_add(mset *m, const guts_id *id)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->ids = realloc(m->ids, m->cap * sizeof *m->ids);
        if (!m->ids) die("realloc", GUTS_ENOMEM);
    }
    m->ids[m->n++] = *id;
}

static void mset_sort(mset *m)
{
    if (m->n > 1) qsort(m->ids, m->n, sizeof *m->ids, id_cmp);
}

static int mset_scan(void *ctx, uint32_t lo, uint32_t hi, guts_recon_visit cb, void *cbctx)
{
    mset *m = ctx;
    size_t a = 0, b = m->n;
    while (a < b) {
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

/* ---- one session ----------------------------------------------------------- */

typedef struct sess {
    size_t bytes, rounds, got;
    guts_recon_stats st;
} sess;

static int collect(void *ctx, uint32_t key, const void *elem)
{
    (void)key;
    mset_add(ctx, elem);
    return 0;
}

static void travel(uint64_t seed, uint32_t round, const guts_recon_item *items, size_t n,
                   size_t *bytes, guts_msg *out, uint8_t **buf)
{
    guts_msg m;
    memset(&m, 0, sizeof m);
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
    if (rc) die("guts_msg_size", rc);
    *buf = xmalloc(len);
    if ((rc = guts_msg_encode(&m, *buf, len, &len2))) die("guts_msg_encode", rc);
    *bytes += GUTS_FRAME_HDR + len;
    memset(out, 0, sizeof *out);
    if ((rc = guts_msg_decode(*buf, len, out))) die("guts_msg_decode", rc);
}

static void session(mset *P, mset *S, uint64_t seed, sess *out)
{
    memset(out, 0, sizeof *out);
    guts_recon_set ps = {P, mset_scan}, ss = {S, mset_scan};
    guts_recon_puller p;
    const guts_recon_item *items;
    size_t n;
    mset got = {0};
    int rc = guts_recon_puller_start(&p, &ps, seed, &items, &n);
    if (rc) die("puller_start", rc);
    guts_recon_item *masks = xmalloc(GUTS_ITEMS_MAX * sizeof *masks);
    int done = 0;
    uint32_t round = 0;
    while (!done) {
        guts_msg req, rep;
        uint8_t *b1, *b2;
        travel(seed, round, items, n, &out->bytes, &req, &b1);
        size_t nm;
        uint64_t emitted;
        rc = guts_recon_serve(&ss, req.u.recon.seed, req.u.recon.items, req.u.recon.nitems, masks,
                              GUTS_ITEMS_MAX, &nm, collect, &got, &emitted);
        if (rc) die("serve", rc);
        out->got += emitted;
        travel(seed, round, masks, nm, &out->bytes, &rep, &b2);
        rc = guts_recon_puller_step(&p, rep.u.recon.items, rep.u.recon.nitems, &items, &n, &done);
        if (rc) die("puller_step", rc);
        guts_msg_free(&req);
        guts_msg_free(&rep);
        free(b1);
        free(b2);
        round++;
    }
    out->rounds = round;
    out->st = p.stats;
    guts_recon_puller_free(&p);
    free(masks);
    for (size_t i = 0; i < got.n; i++)
        mset_add(P, &got.ids[i]);
    mset_sort(P);
    free(got.ids);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void run(size_t n, size_t d, uint64_t seed)
{
    mset S = {0}, P = {0};
    guts_id id;
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < GUTS_ID_LEN; j += 4) {
            uint64_t v = rng_next(&seed);
            memcpy(id.b + j, &v, 4);
        }
        mset_add(&S, &id);
    }
    mset_sort(&S);
    /* P = S minus d ids chosen at random. */
    uint8_t *drop = calloc(n ? n : 1, 1);
    if (!drop) die("calloc", GUTS_ENOMEM);
    for (size_t k = 0; k < d;) {
        size_t i = (size_t)(rng_next(&seed) % n);
        if (!drop[i]) {
            drop[i] = 1;
            k++;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!drop[i]) mset_add(&P, &S.ids[i]);
    free(drop);

    sess first, s;
    double t0 = cpu_ms();
    session(&P, &S, rng_next(&seed), &first);
    double ms = cpu_ms() - t0;
    size_t sessions = 1, total = first.bytes;
    while (P.n < S.n) {
        session(&P, &S, rng_next(&seed), &s);
        sessions++;
        total += s.bytes;
        if (sessions > 20) {
            fprintf(stderr, "bench_recon: n=%zu d=%zu did not converge\n", n, d);
            exit(1);
        }
    }
    if (P.n != S.n || memcmp(P.ids, S.ids, n * sizeof *P.ids) != 0) {
        fprintf(stderr, "bench_recon: n=%zu d=%zu: sets differ after convergence\n", n, d);
        exit(1);
    }
    size_t idlist = 5 + 22 * n;                          /* msgpack array of bin8(20) */
    size_t bloom = (size_t)((double)n * 9.59 / 8 + 0.5); /* 1% optimum */
    printf("| %zu | %zu | %zu | %zu | %.1f | %zu/%zu | %zu | %zu | %.1f | %zu | %zu |\n", n, d,
           first.rounds, first.bytes, d ? (double)first.bytes / (double)d : 0.0, first.got, d,
           sessions, total, ms, idlist, bloom);
    fflush(stdout);
    free(S.ids);
    free(P.ids);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    size_t ns[] = {1000, 100000, 1000000};
    size_t ds[] = {0, 1, 10, 100, 1000, 10000};
    printf("| n | d | rounds | digest bytes | bytes/diff | found in 1st session | sessions to "
           "exact | bytes, all sessions | CPU ms (1st session) | seed's id list | full bloom "
           "1%% |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    uint64_t seed = 2026;
    for (size_t i = 0; i < (quick ? 2u : 3u); i++)
        for (size_t j = 0; j < sizeof ds / sizeof ds[0]; j++) {
            if (ds[j] > ns[i]) continue;
            run(ns[i], ds[j], seed + 31 * i + j);
        }
    return 0;
}
