/* proc.c - running git plumbing from the remote helper.
 *
 * The helper's stdout is the protocol channel to git, so no child may ever
 * inherit it: every child's stdout is a pipe to us, another child's stdin,
 * or /dev/null. Pipe ends are made close-on-exec (pipe2), so a second child
 * started while the first runs holds none of the first one's ends and EOF
 * arrives when it should. stderr is inherited: git's own messages reach the
 * user as git would show them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "git/proc.h"

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

/* In the child: make fd the standard stream target, or /dev/null. */
static void child_stream(int fd, int target, int flags)
{
    if (fd == GUTS_PROC_NULL) fd = open("/dev/null", flags);
    if (fd < 0 || dup2(fd, target) < 0) _exit(127);
}

int guts_proc_start(guts_proc *p, char *const argv[], int in, int out, char *err)
{
    int ip[2] = {-1, -1}, op[2] = {-1, -1};
    snprintf(p->what, sizeof p->what, "%s%s%s", argv[0], argv[1] ? " " : "",
             argv[1] ? argv[1] : "");
    p->pid = -1;
    p->in = p->out = -1;
    if ((in == GUTS_PROC_PIPE && pipe2(ip, O_CLOEXEC) != 0) ||
        (out == GUTS_PROC_PIPE && pipe2(op, O_CLOEXEC) != 0)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (ip[i] >= 0) close(ip[i]);
            if (op[i] >= 0) close(op[i]);
        }
        return guts_git_errf(err, GUTS_EIO, "pipe for %s: %s", p->what, strerror(e));
    }
    /* A pack streams through stdin: a 1 MiB pipe (best effort; the default
     * cap is 1 MiB) lets one write carry a whole buffer, so the two
     * processes switch far less. */
    if (ip[1] >= 0) fcntl(ip[1], F_SETPIPE_SZ, 1 << 20);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (ip[i] >= 0) close(ip[i]);
            if (op[i] >= 0) close(op[i]);
        }
        return guts_git_errf(err, GUTS_EIO, "fork for %s: %s", p->what, strerror(e));
    }
    if (pid == 0) {
        /* Default SIGPIPE for git: it must not inherit our SIG_IGN. */
        signal(SIGPIPE, SIG_DFL);
        child_stream(in == GUTS_PROC_PIPE ? ip[0] : in, 0, O_RDONLY);
        child_stream(out == GUTS_PROC_PIPE ? op[1] : out, 1, O_WRONLY);
        execvp(argv[0], argv);
        fprintf(stderr, "git-remote-guts: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    if (in == GUTS_PROC_PIPE) {
        close(ip[0]);
        p->in = ip[1];
    }
    if (out == GUTS_PROC_PIPE) {
        close(op[1]);
        p->out = op[0];
    }
    return GUTS_OK;
}

int guts_proc_wait(guts_proc *p, int *status, char *err)
{
    int st = 0;
    if (p->in >= 0) close(p->in);
    if (p->out >= 0) close(p->out);
    p->in = p->out = -1;
    if (p->pid <= 0) {
        *status = 0;
        return GUTS_OK;
    }
    while (waitpid(p->pid, &st, 0) < 0) {
        if (errno == EINTR) continue;
        p->pid = -1;
        return guts_git_errf(err, GUTS_EIO, "waitpid %s: %s", p->what, strerror(errno));
    }
    p->pid = -1;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return GUTS_OK;
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
