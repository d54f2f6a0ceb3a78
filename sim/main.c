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

#include "sim.h"

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
