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

#include "bloom.h"
#include "recon_pair.h"

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_recon: %s: %s\n", what, guts_strerror(rc));
    exit(1);
}

/* One session: P pulls from S and keeps what arrives. */
static void session(rp_set *P, rp_set *S, uint64_t seed, rp_stats *out)
{
    size_t dups;
    int rc = rp_pull(P, S, seed, GUTS_BLOOM_BITS_PER_ELEM, out, &dups);
    if (rc) die("session", rc);
    if (dups) die("session fetched an id twice", GUTS_EPROTO);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void run(size_t n, size_t d, uint64_t seed)
{
    rp_set S = {0}, P = {0};
    guts_id id;
    for (size_t i = 0; i < n; i++) {
        rp_mkid(&seed, &id);
        if (rp_add(&S, &id)) die("rp_add", GUTS_ENOMEM);
    }
    rp_sort(&S);
    /* P = S minus d ids chosen at random. */
    uint8_t *drop = calloc(n ? n : 1, 1);
    if (!drop) die("calloc", GUTS_ENOMEM);
    for (size_t k = 0; k < d;) {
        size_t i = (size_t)(rp_rng(&seed) % n);
        if (!drop[i]) {
            drop[i] = 1;
            k++;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!drop[i] && rp_add(&P, &S.ids[i])) die("rp_add", GUTS_ENOMEM);
    free(drop);

    rp_stats first, s;
    double t0 = cpu_ms();
    session(&P, &S, rp_rng(&seed), &first);
    double ms = cpu_ms() - t0;
    size_t sessions = 1, total = first.bytes;
    while (P.n < S.n) {
        session(&P, &S, rp_rng(&seed), &s);
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
    rp_free(&S);
    rp_free(&P);
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
