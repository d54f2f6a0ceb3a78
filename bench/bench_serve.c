/* bench_serve.c - the CPU of guts-node's cold clone pack, without git or
 * HTTP around it.
 *
 *   bench_serve DATA OWNER/NAME [ROUNDS]
 *   BENCH_SERVE_OUT=FILE bench_serve ...   the last round's pack kept in FILE
 *                                          (to time a client's index-pack on it)
 *
 * Each round opens the repository afresh (as a pack thread of guts-node
 * does: a cold handle, no decoded object cached) and writes a mirror
 * clone's pack (every ref's target wanted, include-tag, the node's level
 * GUTS_PACK_FAST, its deflater thread on 2 CPUs or more) to a sink that
 * only counts, with no pack cache. It prints per round the process's CPU
 * (both threads), the wall time and the pack's size, then the median CPU:
 * the node's side of bench/git_http.sh's "cache empty" clone, measured to
 * the microsecond instead of in 10 ms ticks among three other processes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fetch.h"
#include "guts/idset.h"
#include "guts/store.h"
#include "pack.h"

typedef struct refs_ctx {
    guts_repo *r;
    guts_ids wants, tags;
} refs_ctx;

static int on_ref(const guts_ref *ref, void *ctx)
{
    refs_ctx *c = ctx;
    if (ref->symref[0]) return 0;
    int type;
    uint64_t size;
    if (strncmp(ref->name, "refs/tags/", 10) == 0 &&
        guts_repo_stat(c->r, &ref->target, &type, &size) == GUTS_OK && type == GUTS_OBJ_TAG &&
        guts_ids_push(&c->tags, &ref->target))
        return GUTS_ENOMEM;
    return guts_ids_push(&c->wants, &ref->target);
}

static double wall_ms(void);

/* What the sink saw: the bytes, and when the first came (the client's
 * index-pack starts then). */
typedef struct sink_ctx {
    uint64_t bytes;
    double first; /* wall ms, 0 before any byte */
    FILE *out;    /* BENCH_SERVE_OUT's file in the last round, or NULL */
} sink_ctx;

static int count_sink(void *ctx, const void *buf, size_t n)
{
    sink_ctx *s = ctx;
    if (!s->bytes && n) s->first = wall_ms();
    s->bytes += n;
    return !s->out || fwrite(buf, 1, n, s->out) == n ? GUTS_OK : GUTS_EIO;
}

static double cpu_ms(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

static double wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_serve DATA OWNER/NAME [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (rounds < 1 || rounds > 1000) rounds = 5;
    guts_data *d;
    int rc = guts_data_open(argv[1], 0, &d);
    if (rc) {
        fprintf(stderr, "bench_serve: %s: %s\n", argv[1], guts_strerror(rc));
        return 1;
    }
    double *cpu = calloc((size_t)rounds, sizeof *cpu);
    if (!cpu) return 1;
    for (int i = 0; i < rounds; i++) {
        guts_repo *r;
        if ((rc = guts_repo_open(d, argv[2], 0, &r))) {
            fprintf(stderr, "bench_serve: %s: %s\n", argv[2], guts_strerror(rc));
            return 1;
        }
        refs_ctx c = {.r = r};
        if ((rc = guts_repo_refs(r, 0, on_ref, &c))) {
            fprintf(stderr, "bench_serve: refs: %s\n", guts_strerror(rc));
            return 1;
        }
        const char *path = getenv("BENCH_SERVE_OUT");
        sink_ctx sk = {.out = path && i == rounds - 1 ? fopen(path, "wb") : NULL};
        if (path && i == rounds - 1 && !sk.out) {
            perror(path);
            return 1;
        }
        guts_git_serve_req q = {.wants = c.wants.v,
                                .nwants = c.wants.n,
                                .tags = c.tags.v,
                                .ntags = c.tags.n,
                                .blob_limit = UINT64_MAX,
                                .zlevel = GUTS_PACK_FAST,
                                .sink = count_sink,
                                .sink_ctx = &sk};
        guts_git_fetch_stats st;
        char err[GUTS_GIT_ERR_MAX] = "";
        double c0 = cpu_ms(), w0 = wall_ms();
        rc = guts_git_serve(r, &q, &st, err);
        double c1 = cpu_ms(), w1 = wall_ms();
        if (sk.out && fclose(sk.out) && !rc) rc = GUTS_EIO;
        free(c.wants.v);
        free(c.tags.v);
        guts_repo_close(r);
        if (rc) {
            fprintf(stderr, "bench_serve: %s\n", err);
            return 1;
        }
        cpu[i] = c1 - c0;
        printf("round %d: CPU %.1f ms, wall %.1f ms, first byte at %.1f ms, pack %llu bytes\n",
               i + 1, cpu[i], w1 - w0, sk.first - w0, (unsigned long long)sk.bytes);
    }
    qsort(cpu, (size_t)rounds, sizeof *cpu, cmp_double);
    printf("median CPU %.1f ms (min %.1f, max %.1f) over %d rounds\n", cpu[rounds / 2], cpu[0],
           cpu[rounds - 1], rounds);
    free(cpu);
    guts_data_close(d);
    return 0;
}
