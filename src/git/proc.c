/* proc.c - the one process spawner of every front end (posix_spawnp).
 *
 * The remote helper's stdout is the protocol channel to git, so no child
 * may ever inherit it: every child's stdout is a pipe to us, another
 * child's stdin, or /dev/null. Pipe ends are made close-on-exec (pipe2), so
 * a second child started while the first runs holds none of the first
 * one's ends and EOF arrives when it should. stderr is inherited (git's own
 * messages reach the user as git would show them) or, for import and
 * export, captured in a memory file so a failure is one line quoting it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

int guts_git_errf(char *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, GUTS_GIT_ERR_MAX, fmt, ap);
    va_end(ap);
    /* One line: a git message may carry its own newline. */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

extern char **environ;

/* Pipe size for the streams to and from git (best effort; the default cap
 * is 1 MiB): one write carries a whole buffer, so the processes switch
 * far less. */
#define PROC_PIPE_SIZE (1 << 20)

int guts_proc_spawn(guts_proc *p, const char *what, char *const argv[], int in, int out,
                    unsigned flags, char *err)
{
    int ip[2] = {-1, -1}, op[2] = {-1, -1}, devnull = -1, rc = GUTS_EIO, e = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t dfl;
    memset(p, 0, sizeof *p);
    p->pid = -1;
    p->in = p->out = p->errfd = -1;
    if (what)
        snprintf(p->what, sizeof p->what, "%s", what);
    else
        snprintf(p->what, sizeof p->what, "%s%s%s", argv[0], argv[1] ? " " : "",
                 argv[1] ? argv[1] : "");
    if (posix_spawn_file_actions_init(&fa) != 0)
        return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    }
    /* Default SIGPIPE for git: it must not inherit a caller's SIG_IGN. */
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF);
    if ((flags & GUTS_PROC_STDERR) && (p->errfd = memfd_create("git-stderr", MFD_CLOEXEC)) < 0)
        goto out;
    if ((in == GUTS_PROC_NULL || out == GUTS_PROC_NULL) &&
        (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        goto out;
    if (in == GUTS_PROC_PIPE && pipe2(ip, O_CLOEXEC) != 0) goto out;
    if (out == GUTS_PROC_PIPE && pipe2(op, O_CLOEXEC) != 0) goto out;
    if (ip[1] >= 0) fcntl(ip[1], F_SETPIPE_SZ, PROC_PIPE_SIZE);
    if (op[1] >= 0) fcntl(op[1], F_SETPIPE_SZ, PROC_PIPE_SIZE);
    posix_spawn_file_actions_adddup2(&fa, in == GUTS_PROC_PIPE ? ip[0] : in >= 0 ? in : devnull, 0);
    posix_spawn_file_actions_adddup2(&fa, out == GUTS_PROC_PIPE ? op[1] : out >= 0 ? out : devnull,
                                     1);
    if (p->errfd >= 0) posix_spawn_file_actions_adddup2(&fa, p->errfd, 2);
    pid_t pid;
    if ((e = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ)) != 0) {
        errno = e;
        goto out;
    }
    p->pid = pid;
    rc = GUTS_OK;
out:
    e = errno;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (devnull >= 0) close(devnull);
    if (ip[0] >= 0) close(ip[0]);
    if (op[1] >= 0) close(op[1]);
    if (rc == GUTS_OK) {
        p->in = ip[1];
        p->out = op[0];
        return GUTS_OK;
    }
    if (ip[1] >= 0) close(ip[1]);
    if (op[0] >= 0) close(op[0]);
    if (p->errfd >= 0) close(p->errfd);
    p->errfd = -1;
    return guts_git_errf(err, GUTS_EIO, "cannot start %s: %s", p->what, strerror(e));
}

int guts_proc_start(guts_proc *p, char *const argv[], int in, int out, char *err)
{
    return guts_proc_spawn(p, NULL, argv, in, out, 0, err);
}

int guts_proc_wait(guts_proc *p, int *status, char *err)
{
    int st = 0;
    if (p->in >= 0) close(p->in);
    if (p->out >= 0) close(p->out);
    p->in = p->out = -1;
    *status = 0;
    if (p->pid > 0) {
        while (waitpid(p->pid, &st, 0) < 0) {
            if (errno == EINTR) continue;
            p->pid = -1;
            return guts_git_errf(err, GUTS_EIO, "waitpid %s: %s", p->what, strerror(errno));
        }
        p->pid = -1;
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
    return GUTS_OK;
}

int guts_proc_finish(guts_proc *p, int *code, char *err)
{
    int status, rc = guts_proc_wait(p, &status, err);
    if (code) *code = 0;
    if (!rc && code && status > 0 && status < 126) {
        *code = status;
    } else if (!rc && status) {
        char msg[200] = "";
        ssize_t k = p->errfd >= 0 ? pread(p->errfd, msg, sizeof msg - 1, 0) : 0;
        if (k > 0) {
            msg[k] = 0;
            msg[strcspn(msg, "\n")] = 0;
        }
        if (err) {
            if (status < 128)
                guts_git_errf(err, GUTS_EIO, "%s failed (exit %d): %s", p->what, status,
                              msg[0] ? msg : "no message");
            else
                guts_git_errf(err, GUTS_EIO, "%s killed by signal %d", p->what, status - 128);
        }
        rc = GUTS_EIO;
    }
    if (p->errfd >= 0) close(p->errfd);
    p->errfd = -1;
    return rc;
}

int guts_proc_run(char *const argv[], char **out, size_t *len, int *status, char *err)
{
    guts_proc p;
    int rc = guts_proc_start(&p, argv, GUTS_PROC_NULL, GUTS_PROC_PIPE, err);
    if (rc) return rc;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int code = GUTS_OK;
    if (!buf) code = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", p.what);
    while (!code) {
        if (n + 1 == cap) {
            if (cap >= GUTS_PROC_CAPTURE_MAX) {
                code = guts_git_errf(err, GUTS_ETOOBIG, "%s: output over %u bytes", p.what,
                                   GUTS_PROC_CAPTURE_MAX);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                code = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading %s", p.what);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(p.out, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) code = guts_git_errf(err, GUTS_EIO, "read from %s: %s", p.what, strerror(errno));
        if (r <= 0) break;
        n += (size_t)r;
    }
    int st;
    rc = guts_proc_wait(&p, &st, err);
    if (!code) code = rc;
    if (code) {
        free(buf);
        return code;
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    *status = st;
    return GUTS_OK;
}
