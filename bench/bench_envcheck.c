/* bench_envcheck.c - what checking a repository environment costs.
 *
 * usage: bench_envcheck DATA OWNER/NAME [ROUNDS]
 *
 * Times, per open of one repository (each round closes it again): the
 * plain open (meta pages read with pread, then LMDB's open), the open with
 * GUTS_REPO_VERIFY (plus a child process reading every database), and a
 * bare fork + exit + wait (what the guts CLI pays to run each command in
 * a child). Prints the median of each in milliseconds; run by
 * scripts/bench-envcheck.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guts/store.h"

#define ROUNDS_MAX 1000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_envcheck DATA OWNER/NAME [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 3 ? atoi(argv[3]) : 20;
    if (rounds < 1 || rounds > ROUNDS_MAX) rounds = 20;
    guts_data *d;
    int rc = guts_data_open(argv[1], 0, &d);
    if (rc) {
        fprintf(stderr, "%s: %s\n", argv[1], guts_strerror(rc));
        return 1;
    }
    static double plain[ROUNDS_MAX], verify[ROUNDS_MAX], fork_ms[ROUNDS_MAX];
    for (int i = 0; i < rounds; i++) {
        for (int v = 0; v < 2; v++) {
            guts_repo *r;
            double t0 = now_ms();
            rc = guts_repo_open(d, argv[2], v ? GUTS_REPO_VERIFY : 0, &r);
            double t = now_ms() - t0;
            if (rc) {
                fprintf(stderr, "%s: %s: %s\n", argv[2], guts_strerror(rc), guts_store_errmsg());
                return 1;
            }
            guts_repo_close(r);
            (v ? verify : plain)[i] = t;
        }
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        waitpid(pid, NULL, 0);
        fork_ms[i] = now_ms() - t0;
    }
    printf("open %.3f ms, open with verify %.3f ms, fork+wait %.3f ms (medians of %d)\n",
           median(plain, rounds), median(verify, rounds), median(fork_ms, rounds), rounds);
    guts_data_close(d);
    return 0;
}
