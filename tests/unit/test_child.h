/* test_child.h - waiting for a forked child in a unit test, bounded.
 *
 * tu_child_ok(pid, step, ctx): calls step(ctx, i) (may be NULL) and polls
 * the child every 5 ms, 2,000 times at most (10 s); a child still running
 * then is killed. Returns 1 when the child exited with status 0.
 */
#ifndef GUTS_TEST_CHILD_H
#define GUTS_TEST_CHILD_H

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int tu_child_ok(pid_t pid, void (*step)(void *ctx, int i), void *ctx)
{
    int status = 0, done = 0;
    for (int i = 0; i < 2000 && !done; i++) {
        if (step) step(ctx, i);
        done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done) usleep(5000);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return done && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

#endif
