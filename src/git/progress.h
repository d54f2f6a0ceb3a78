/* progress.h - the one progress line of every front end: guts import
 * and export, git-remote-guts push and clone, guts-node's pulls.
 *
 * A line reads  "WHAT: DONE/TOTAL objects, X MB, Y MB/s, ETA M:SS"  (the
 * total and the ETA only when a total is known, bytes only when counted).
 * The front end decides whether to draw at all: only when stderr is a
 * terminal (isatty), so a redirected log never gets carriage returns or
 * escape sequences. The ETA is the object rate so far applied to what is
 * left: objects are what the totals count (sizes are not known up front).
 */
#ifndef GUTS_GIT_PROGRESS_H
#define GUTS_GIT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

/* Redraw at most this often: a terminal cannot show more, and a redraw per
 * object would cost more than the work it reports. */
#define GUTS_PROGRESS_NS 250000000LL
/* Room for one formatted line (a repository key is at most 201 bytes). */
#define GUTS_PROGRESS_LINE_MAX 384

typedef struct guts_progress {
    int on;           /* draw at all */
    const char *what; /* "import", "guts: writing objects", ... */
    int64_t start;    /* guts_progress_now() at the start */
    int64_t last;     /* of the last redraw */
} guts_progress;

/** Monotonic clock in nanoseconds. */
int64_t guts_progress_now(void);

/** Start a line for what (kept by pointer) at now; on 0 draws nothing. */
void guts_progress_start(guts_progress *p, const char *what, int on);

/** Redraw the line on stderr (\r, then the line, then erase to its end):
 * at most every GUTS_PROGRESS_NS, except the final call, which always draws
 * and ends the line with a newline.
 * @param total objects expected, 0 when unknown
 * @param bytes content bytes so far, 0 when not counted */
void guts_progress_show(guts_progress *p, uint64_t done, uint64_t total, uint64_t bytes,
                        int final);

/** Format one line (no \r, no newline) into buf of len bytes: what with
 * done of total objects (total 0: unknown), bytes, their rates over secs
 * seconds, and an ETA once a total and a rate exist. Returns the length
 * written (cut to len - 1). */
size_t guts_progress_format(char *buf, size_t len, const char *what, uint64_t done,
                            uint64_t total, uint64_t bytes, double secs);

#endif
