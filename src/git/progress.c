/* progress.c - see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <time.h>

/* An ETA beyond this (100 hours) says nothing useful: not shown. */
#define PROGRESS_ETA_MAX_S 360000.0
/* Rates over a shorter time are noise: no rate-based ETA before it. */
#define PROGRESS_ETA_MIN_S 0.5

int64_t guts_progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void guts_progress_start(guts_progress *p, const char *what, int on)
{
    p->on = on;
    p->what = what;
    p->start = guts_progress_now();
    p->last = 0;
}

size_t guts_progress_format(char *buf, size_t len, const char *what, uint64_t done,
                            uint64_t total, uint64_t bytes, double secs)
{
    char count[48], size[64] = "", eta[32] = "";
    if (total)
        snprintf(count, sizeof count, "%llu/%llu", (unsigned long long)done,
                 (unsigned long long)total);
    else
        snprintf(count, sizeof count, "%llu", (unsigned long long)done);
    if (bytes) {
        double mb = (double)bytes / 1e6;
        snprintf(size, sizeof size, ", %.1f MB, %.1f MB/s", mb, secs > 0 ? mb / secs : 0.0);
    }
    if (total && done && done < total && secs >= PROGRESS_ETA_MIN_S) {
        double left = (double)(total - done) * secs / (double)done;
        if (left < PROGRESS_ETA_MAX_S)
            snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)left / 60, (int)left % 60);
    }
    int n = snprintf(buf, len, "%s: %s objects%s%s", what, count, size, eta);
    if (n < 0) n = 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}

void guts_progress_show(guts_progress *p, uint64_t done, uint64_t total, uint64_t bytes,
                        int final)
{
    if (!p->on) return;
    int64_t t = guts_progress_now();
    if (!final && t - p->last < GUTS_PROGRESS_NS) return;
    p->last = t;
    char line[GUTS_PROGRESS_LINE_MAX];
    guts_progress_format(line, sizeof line, p->what, done, total, bytes,
                         (double)(t - p->start) / 1e9);
    fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    fflush(stderr);
}
