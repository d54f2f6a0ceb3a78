/* main.c - guts-sim: N guts protocol cores on a virtual clock and network.
 *
 * Parse the options, build the cluster, run it, report. Wall time and peak
 * memory are the only values from the real world, and the report keeps them
 * on one line of their own so runs can be compared byte for byte. Exit
 * status: 0 converged with no invariant violated, 1 otherwise (the report
 * then ends with the command that replays the run), 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

/* Transparent huge pages for the heap. A delivery touches one core's memory,
 * and 10,000 cores are ~400 MB spread over the heap: with 4 KiB pages nearly
 * every delivery also misses the TLB (-25% CPU at 3,000 nodes with huge
 * pages, more at 10,000; docs/performance.md). glibc (2.35 and later) asks
 * the kernel for them (madvise) when the tunable glibc.malloc.hugetlb=1 is
 * set, and reads it only when a process starts: so start again, once, with
 * it set. A GLIBC_TUNABLES already set is left alone (the second start, or
 * a user's choice: glibc.malloc.hugetlb=0 under valgrind, which does not
 * follow the exec). Nothing in a run depends on it but its speed. */
static void huge_pages(char **argv)
{
    if (getenv("GLIBC_TUNABLES")) return;
    if (setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("GLIBC_TUNABLES"); /* no /proc: run as we are */
}

/* Peak resident set of this process, bytes (VmHWM), or 0 if unknown. */
static uint64_t peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* CPU seconds of this process (user + system): on a shared machine this,
 * not wall time, says what a run costs. */
static double cpu_now(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    huge_pages(argv);
    sim_config cfg;
    int help;
    if (sim_opts_parse(argc, argv, &cfg, &help, stderr) != GUTS_OK) {
        sim_opts_free(&cfg);
        return 2;
    }
    if (help) {
        sim_opts_usage(stdout);
        sim_opts_free(&cfg);
        return 0;
    }
    double t0 = wall_now();
    sim *s = NULL;
    int rc = sim_new(&cfg, &s);
    if (rc == GUTS_OK) rc = sim_run(s);
    int status;
    if (rc != GUTS_OK) {
        fprintf(stderr, "guts-sim: cannot run: %s\n", guts_strerror(rc));
        status = 1;
    } else {
        status = sim_report(s, stdout, wall_now() - t0, cpu_now(), peak_rss());
    }
    sim_free(s);
    sim_opts_free(&cfg);
    return status;
}
