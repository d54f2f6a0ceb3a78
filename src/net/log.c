/* log.c - one line per event on stderr.
 *
 * Lines carry a UTC wall-clock timestamp (for reading next to other logs;
 * the protocol itself only ever sees the monotonic clock) and a level. Each
 * line is formatted into one buffer and written with a single write(2), so
 * lines from several nodes sharing a terminal or file don't interleave.
 * On a terminal the daemon keeps live progress lines under the log: a log
 * line first erases them (in the same write), and they are drawn again
 * below it at the next redraw. Lines at info and above are also kept in a
 * small ring (log->recent) for the status page's "last events".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

/* Longer messages are cut: a log line is for a human, not a data dump. */
#define LOG_LINE_MAX 1024

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int guts_net_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0) return i;
    return -1;
}

size_t guts_net_tty_erase(guts_net_tty *tty, char *buf, size_t len, size_t cap)
{
    /* Erase the line the cursor is on, then each one above it. */
    for (size_t i = 0; i < tty->lines; i++) {
        const char *seq = i == 0 ? "\r\033[K" : "\033[A\033[K";
        size_t k = strlen(seq);
        if (len + k >= cap) break;
        memcpy(buf + len, seq, k);
        len += k;
    }
    tty->lines = 0;
    return len;
}

void guts_net_logf(const guts_net_log *log, int level, const char *fmt, ...)
{
    if (level > log->level) return;
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = 0;
    if (log->tty && log->tty->lines)
        n = guts_net_tty_erase(log->tty, line, 0, sizeof line / 2);
    n += strftime(line + n, sizeof line - n, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ", ts.tv_nsec / 1000000,
                          level_names[level < 0   ? 0
                                      : level > 3 ? 3
                                                  : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    if (log->recent && level <= GUTS_LOG_INFO) {
        guts_net_recent *r = log->recent;
        guts_net_recent_line *l = &r->line[r->total++ % GUTS_NET_RECENT_MAX];
        l->unix_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        l->level = level;
        snprintf(l->text, sizeof l->text, "%s", line + n);
        /* printable ASCII only: the ring goes into JSON documents that
         * `guts status` parses strictly, and a peer's bytes may be in it */
        for (char *t = l->text; *t; t++)
            if ((unsigned char)*t < 0x20 || (unsigned char)*t >= 0x7f) *t = '?';
    }
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
