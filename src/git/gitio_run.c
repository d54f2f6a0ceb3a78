/* gitio_run.c - running git for import and export: a command whose output
 * is captured in memory (for-each-ref, rev-parse, merge-tree), and buffered
 * reading of a long-lived child's pipe (cat-file), which pauses after a short
 * read so each read takes many objects.
 *
 * git's stderr is captured in a memory file so that a failure becomes one
 * line of error naming the command, not a screenful.
 */
#include "gitio_int.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Start argv with stdin as chosen, stdout a pipe when asked (else
 * /dev/null) and stderr captured (guts_proc_spawn). */
int gitio_proc_start(proc *p, const char *what, char *const argv[], int in, int want_out,
                     char *err)
{
    return guts_proc_spawn(p, what, argv, in, want_out ? GUTS_PROC_PIPE : GUTS_PROC_NULL,
                           GUTS_PROC_STDERR, err);
}

static int proc_wait_code(proc *p, int *code, char *err)
{
    return guts_proc_finish(p, code, err);
}

int gitio_proc_wait(proc *p, char *err)
{
    return guts_proc_finish(p, NULL, err);
}

/* Run argv to completion, capturing stdout (at most GITIO_CAPTURE_MAX, NUL
 * terminated). A non-zero exit is GUTS_EIO with err filled, except, when
 * code is not NULL, an exit status of 1 to 125: then the output is kept and
 * *code holds the status (a signal or 126 and up, which the shell uses for
 * "cannot run", stay errors; see proc_wait_code). */
int gitio_run_capture_code(const char *what, char *const argv[], char **out, size_t *outlen,
                           int *code, char *err)
{
    proc p;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc;
    if (!buf) return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    rc = gitio_proc_start(&p, what, argv, PROC_NULL, 1, err);
    if (rc) {
        free(buf);
        return rc;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= GITIO_CAPTURE_MAX) {
                rc = guts_git_errf(err, GUTS_ETOOBIG, "%s: output over %u MiB", p.what,
                          GITIO_CAPTURE_MAX >> 20);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(p.out, buf + len, cap - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = guts_git_errf(err, GUTS_EIO, "reading from %s: %s", p.what, strerror(errno));
            break;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    if (rc) {
        if (p.pid > 0) kill(p.pid, SIGTERM);
        gitio_proc_wait(&p, NULL);
        free(buf);
        return rc;
    }
    rc = proc_wait_code(&p, code, err);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = 0;
    *out = buf;
    *outlen = len;
    return GUTS_OK;
}

int gitio_run_capture(const char *what, char *const argv[], char **out, size_t *outlen, char *err)
{
    return gitio_run_capture_code(what, argv, out, outlen, NULL, err);
}

/* 1 when more bytes are buffered, 0 at end of file, GUTS_EIO on error. */
static int rd_fill(rd *r)
{
    if (r->pos < r->len) return 1;
    /* A short read means we drained the pipe faster than git fills it:
     * reading again at once would wake us for every one of git's writes
     * (two an object). A pause lets the pipe fill, so each read takes many
     * objects and both processes switch far less. */
    if (r->len && r->len < GITIO_READ_SHORT) {
        struct timespec nap = {0, GITIO_READ_NAP_NS};
        nanosleep(&nap, NULL);
    }
    for (;;) {
        ssize_t k = read(r->fd, r->buf, GITIO_IOBUF);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return GUTS_EIO;
        r->pos = 0;
        r->len = (size_t)k;
        return k > 0;
    }
}

/* Read one line (without its newline) of at most max-1 bytes into line;
 * with cut, the bytes past that are dropped instead of failing.
 * 1: a line; 0: clean end of file; GUTS_ETOOBIG: too long; GUTS_EIO. */
int gitio_rd_line_cut(rd *r, char *line, size_t max, int cut)
{
    assert(max > 1); /* room for a byte and the NUL: take = max - 1 - n */
    size_t n = 0;
    for (;;) {
        int f = rd_fill(r);
        if (f < 0) return f;
        if (f == 0) return n ? GUTS_EIO : 0;
        uint8_t *s = r->buf + r->pos, *nl = memchr(s, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - s) : r->len - r->pos, skip = take;
        if (n + take >= max) {
            if (!cut) return GUTS_ETOOBIG;
            take = max - 1 - n;
        }
        memcpy(line + n, s, take);
        n += take;
        r->pos += skip + (nl ? 1 : 0);
        if (nl) {
            line[n] = 0;
            return 1;
        }
    }
}

int gitio_rd_line(rd *r, char *line, size_t max)
{
    return gitio_rd_line_cut(r, line, max, 0);
}

/* Read exactly n bytes; GUTS_EIO at an early end of file. */
int gitio_rd_exact(rd *r, void *dst, size_t n)
{
    uint8_t *d = dst;
    while (n) {
        int f = rd_fill(r);
        if (f <= 0) return GUTS_EIO;
        size_t take = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, take);
        r->pos += take;
        d += take;
        n -= take;
    }
    return GUTS_OK;
}
