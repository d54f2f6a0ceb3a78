/* log.h - the daemon's log (log.c): levelled lines on stderr, the last
 * ones kept for status, and the progress lines they erase on a terminal.
 * Included by net.h.
 */
#ifndef GUTS_NET_LOG_H
#define GUTS_NET_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Progress lines drawn under the log on a terminal (daemon_status.c draws them,
 * log.c erases them before a log line; the next redraw brings them back). */
typedef struct guts_net_tty {
    int on;       /* stderr is a terminal */
    size_t lines; /* progress lines on screen now; the cursor ends the last */
    size_t pulls; /* pulls at the last redraw: a change redraws at once */
} guts_net_tty;

/* The last log lines at info and above, kept for the status page and
 * /api/status ("events"): enough to see what happened lately, a few KiB. */
#define GUTS_NET_RECENT_MAX 32
#define GUTS_NET_RECENT_TEXT 240

typedef struct guts_net_recent_line {
    uint64_t unix_ms;
    int level;
    char text[GUTS_NET_RECENT_TEXT]; /* the message, cut; no timestamp */
} guts_net_recent_line;

typedef struct guts_net_recent {
    guts_net_recent_line line[GUTS_NET_RECENT_MAX]; /* ring: line[total % MAX] is next */
    uint64_t total;                                 /* lines ever kept */
} guts_net_recent;

typedef struct guts_net_log {
    int level;         /* lines above this level are dropped */
    guts_net_tty *tty; /* NULL: never any progress lines */
    guts_net_recent *recent; /* NULL: none kept */
} guts_net_log;

/** Write one line "2026-01-01T00:00:00.000Z LEVEL message" to stderr when
 * level <= log->level, first erasing the progress lines if any are drawn. */
void guts_net_logf(const guts_net_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** "error", "warn", "info", "debug"; -1 if unknown. */
int guts_net_log_level_parse(const char *s);
/** Append to buf (room: cap bytes, len used) what erases tty's progress
 * lines and puts the cursor at the start of the first; tty->lines becomes
 * 0. Returns the new length (buf is cut at cap, never overrun). */
size_t guts_net_tty_erase(guts_net_tty *tty, char *buf, size_t len, size_t cap);

#endif
