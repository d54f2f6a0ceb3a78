/* proc.h - running git plumbing: the one process spawner of every front
 * end, and the one error-line formatter of the git library.
 *
 * No child ever inherits a descriptor it was not given: every pipe end we
 * keep is close-on-exec, so a second child started while the first runs
 * holds none of the first one's ends and EOF arrives when it should. A
 * child's stdout is a pipe to us, another child's stdin, or /dev/null,
 * never ours (the remote helper's stdout is its protocol channel to git).
 */
#ifndef GUTS_GIT_PROC_H
#define GUTS_GIT_PROC_H

#include <stddef.h>
#include <sys/types.h>

#include "guts/guts.h"

/* Room for one error line: a ref name is at most 1 KiB, plus a git message. */
#define GUTS_GIT_ERR_MAX 1536

/** Format one error line into err (GUTS_GIT_ERR_MAX bytes; newlines in it
 * become spaces) and return code: the one formatter of the git library and
 * its front ends. */
int guts_git_errf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Standard stream choices for guts_proc_start (any fd >= 0 is used as is). */
#define GUTS_PROC_NULL (-1) /* /dev/null */
#define GUTS_PROC_PIPE (-2) /* a new pipe to or from us */

typedef struct guts_proc {
    pid_t pid;
    int in;        /* our write end of the child's stdin pipe, or -1 */
    int out;       /* our read end of the child's stdout pipe, or -1 */
    int errfd;     /* memory file holding the child's stderr, or -1: inherited */
    char what[64]; /* "git index-pack", for messages */
} guts_proc;

/* guts_proc_spawn flag: the child's stderr goes to a memory file, so a
 * failure is one error line quoting it (guts_proc_finish), not a screenful. */
#define GUTS_PROC_STDERR 0x1

/** Start argv (argv[0] looked up in PATH, posix_spawnp, SIGPIPE at its
 * default) with stdin and stdout as chosen (GUTS_PROC_NULL, GUTS_PROC_PIPE
 * or an fd, which the caller still owns and closes); stderr inherited, or
 * captured with GUTS_PROC_STDERR. what names it in messages (NULL: argv[0]
 * and argv[1]). Errors: GUTS_EIO (pipe, spawn), GUTS_ENOMEM. */
int guts_proc_spawn(guts_proc *p, const char *what, char *const argv[], int in, int out,
                    unsigned flags, char *err);

/** guts_proc_wait, then a verdict: GUTS_OK on exit 0; else GUTS_EIO with
 * err naming the command, its exit status (or signal) and the first line
 * of its captured stderr. With code not NULL, an exit status of 1 to 125
 * is no error: *code holds it (126 and up, "cannot run", and signals stay
 * errors). err may be NULL. */
int guts_proc_finish(guts_proc *p, int *code, char *err);

/** guts_proc_spawn with stderr inherited (git's messages reach the user). */
int guts_proc_start(guts_proc *p, char *const argv[], int in, int out, char *err);

/** Close our pipe ends and wait for the child. *status is its exit code,
 * or 128 + the signal when it was killed (so any non-zero *status is a
 * failure for the caller to report). Errors: GUTS_EIO (waitpid). */
int guts_proc_wait(guts_proc *p, int *status, char *err);

/** Run argv with stdin from /dev/null and capture its stdout: *out is
 * malloc()ed for the caller, NUL-terminated, *len bytes (may be NULL).
 * *status is as guts_proc_wait's: the exit code, 128 + signal if killed. Errors: GUTS_EIO, GUTS_ENOMEM, GUTS_ETOOBIG
 * (more than GUTS_PROC_CAPTURE_MAX bytes). */
int guts_proc_run(char *const argv[], char **out, size_t *len, int *status, char *err);

/* A captured output larger than this is a bug or an attack, not refs: 1 GiB
 * holds ten million ref lines. */
#define GUTS_PROC_CAPTURE_MAX (1u << 30)

#endif
