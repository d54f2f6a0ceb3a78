/* hooks.c - --on-event: a command run for each event the core reports.
 *
 * The core says what happened as GUTS_ACT_EVENT actions (peer joined or
 * left, repository added, ref updated, conflict, pull failed). Each hook is
 * a command line split at spaces and run without a shell, with the event
 * in GUTS_* environment variables and as one JSON line on its stdin (the
 * record guts_net_event_json makes). Nothing a hook does can hold the node
 * up: one child at a time per hook, reaped by an ev_child watcher, killed
 * (its whole process group) after GUTS_NET_HOOK_TIMEOUT_S; events wait in a
 * fixed queue of GUTS_NET_HOOK_QUEUE per hook and the ones that do not fit
 * are counted as dropped; a failure is one warn line (at most one per hook
 * every GUTS_NET_HOOK_WARN_MS, the rest counted in status.json).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

extern char **environ;

/* Variables a hook gets beside the node's environment. */
#define HOOK_VARS 9

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* s as JSON string contents: printable ASCII, '"' and '\' escaped. */
static size_t json_text(char *out, size_t n, const char *s)
{
    size_t k = 0;
    for (; *s && k + 3 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') out[k++] = '\\';
        out[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    out[k] = 0;
    return k;
}

size_t guts_net_event_json(const guts_core_event *e, const char *node_hex, uint64_t wall,
                           char *out, size_t n)
{
    char repo[2 * GUTS_KEY_MAX + 1], ref[2 * GUTS_REFNAME_MAX + 1], detail[2 * sizeof e->detail];
    char old[GUTS_HEX_LEN + 1], neu[GUTS_HEX_LEN + 1], peer[2 * GUTS_NODE_ID_LEN + 1];
    static const guts_node_id none;
    json_text(repo, sizeof repo, e->repo);
    json_text(ref, sizeof ref, e->ref);
    json_text(detail, sizeof detail, e->detail);
    guts_id_to_hex(&e->old_id, old);
    guts_id_to_hex(&e->new_id, neu);
    guts_node_id_to_hex(&e->peer, peer);
    int pk = memcmp(&e->peer, &none, sizeof none) != 0;
    int k = snprintf(out, n,
                     "{\"event\": \"%s\", \"time_ms\": %llu, \"node\": \"%s\", \"repo\": %s%s%s, "
                     "\"ref\": %s%s%s, \"old\": %s%s%s, \"new\": %s%s%s, \"peer\": %s%s%s, "
                     "\"detail\": %s%s%s}",
                     guts_core_event_name(e->type), (unsigned long long)wall, node_hex,
                     repo[0] ? "\"" : "", repo[0] ? repo : "null", repo[0] ? "\"" : "",
                     ref[0] ? "\"" : "", ref[0] ? ref : "null", ref[0] ? "\"" : "",
                     !guts_id_is_zero(&e->old_id) ? "\"" : "",
                     !guts_id_is_zero(&e->old_id) ? old : "null",
                     !guts_id_is_zero(&e->old_id) ? "\"" : "",
                     !guts_id_is_zero(&e->new_id) ? "\"" : "",
                     !guts_id_is_zero(&e->new_id) ? neu : "null",
                     !guts_id_is_zero(&e->new_id) ? "\"" : "", pk ? "\"" : "",
                     pk ? peer : "null", pk ? "\"" : "", detail[0] ? "\"" : "",
                     detail[0] ? detail : "null", detail[0] ? "\"" : "");
    return k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
}

static void hook_warn(guts_net_hook *h, const char *fmt, const char *what)
{
    uint64_t now = guts_net_now_ms();
    if (h->last_warn_ms && now - h->last_warn_ms < GUTS_NET_HOOK_WARN_MS) return;
    h->last_warn_ms = now;
    guts_net_logf(&h->node->log, GUTS_LOG_WARN, fmt, h->cmd, what);
}

static void hook_next(guts_net_hook *h);

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    guts_net_hook *h = container_of(w, guts_net_hook, child);
    ev_child_stop(loop, w);
    ev_timer_stop(loop, &h->timeout);
    int st = w->rstatus;
    h->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char why[64];
        h->failed++;
        if (h->timed_out)
            snprintf(why, sizeof why, "killed after %d s", (int)GUTS_NET_HOOK_TIMEOUT_S);
        else if (WIFEXITED(st))
            snprintf(why, sizeof why, "exit %d", WEXITSTATUS(st));
        else
            snprintf(why, sizeof why, "signal %d", WTERMSIG(st));
        hook_warn(h, "--on-event %s failed: %s (the node goes on; further failures within a "
                     "minute are only counted: status.json hooks)",
                  why);
    }
    h->timed_out = 0;
    hook_next(h);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_hook *h = container_of(w, guts_net_hook, timeout);
    if (h->pid > 0) {
        h->timed_out = 1;
        h->timeouts++;
        kill(-h->pid, SIGKILL); /* its own process group: what it started too */
    }
}

/* Start the hook for its oldest queued event. */
static void hook_next(guts_net_hook *h)
{
    guts_net_node *n = h->node;
    while (!h->pid && h->nq) {
        guts_net_hook_item *it = &h->queue[h->head];
        h->head = (h->head + 1) % GUTS_NET_HOOK_QUEUE;
        h->nq--;
        const guts_core_event *e = &it->e;
        char node[2 * GUTS_NODE_ID_LEN + 1], line[GUTS_NET_HOOK_LINE_MAX];
        guts_node_id_to_hex(guts_data_node_id(n->data), node);
        size_t len = guts_net_event_json(e, node, it->wall_ms, line, sizeof line - 1);
        line[len++] = '\n';
        /* The environment: ours first (getenv takes the first match). */
        char vars[HOOK_VARS][GUTS_REFNAME_MAX + 32], hex[GUTS_HEX_LEN + 1];
        size_t nenv = 0;
        while (environ[nenv])
            nenv++;
        char **envp = malloc((nenv + HOOK_VARS + 1) * sizeof *envp);
        if (!envp) {
            h->dropped++;
            continue;
        }
        int v = 0;
        snprintf(vars[v++], sizeof vars[0], "GUTS_EVENT=%s", guts_core_event_name(e->type));
        snprintf(vars[v++], sizeof vars[0], "GUTS_NODE=%s", node);
        snprintf(vars[v++], sizeof vars[0], "GUTS_TIME_MS=%llu", (unsigned long long)it->wall_ms);
        snprintf(vars[v++], sizeof vars[0], "GUTS_REPO=%s", e->repo);
        snprintf(vars[v++], sizeof vars[0], "GUTS_REF=%s", e->ref);
        guts_id_to_hex(&e->old_id, hex);
        snprintf(vars[v++], sizeof vars[0], "GUTS_OLD=%s", guts_id_is_zero(&e->old_id) ? "" : hex);
        guts_id_to_hex(&e->new_id, hex);
        snprintf(vars[v++], sizeof vars[0], "GUTS_NEW=%s", guts_id_is_zero(&e->new_id) ? "" : hex);
        char peer[2 * GUTS_NODE_ID_LEN + 1];
        guts_node_id_to_hex(&e->peer, peer);
        snprintf(vars[v++], sizeof vars[0], "GUTS_PEER=%s", peer);
        snprintf(vars[v++], sizeof vars[0], "GUTS_DETAIL=%s", e->detail);
        for (int i = 0; i < v; i++)
            envp[i] = vars[i];
        memcpy(envp + v, environ, (nenv + 1) * sizeof *envp);

        int in[2] = {-1, -1}, devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        sigset_t none, dfl;
        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE); /* the node ignores it; the hook should not */
        int ok = devnull >= 0 && pipe2(in, O_CLOEXEC) == 0 &&
                 posix_spawn_file_actions_init(&fa) == 0;
        int spawned = 0;
        if (ok) {
            posix_spawnattr_init(&at);
            posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
            posix_spawnattr_setpgroup(&at, 0);
            posix_spawnattr_setsigmask(&at, &none);
            posix_spawnattr_setsigdefault(&at, &dfl);
            posix_spawn_file_actions_adddup2(&fa, in[0], 0);
            posix_spawn_file_actions_adddup2(&fa, devnull, 1);
            pid_t pid;
            int e2 = posix_spawnp(&pid, h->argv[0], &fa, &at, h->argv, envp);
            posix_spawn_file_actions_destroy(&fa);
            posix_spawnattr_destroy(&at);
            if (e2 == 0) {
                spawned = 1;
                h->pid = pid;
                h->run++;
            } else {
                h->failed++;
                hook_warn(h, "--on-event %s cannot start: %s", strerror(e2));
            }
        }
        if (in[0] >= 0) close(in[0]);
        if (spawned) {
            /* A fresh pipe holds 64 KiB: one line never blocks. A hook that
             * exits without reading makes this fail (EPIPE): not an error. */
            ssize_t w = write(in[1], line, len);
            (void)w;
        }
        if (in[1] >= 0) close(in[1]);
        if (devnull >= 0) close(devnull);
        free(envp);
        if (spawned) {
            ev_child_init(&h->child, child_cb, h->pid, 0);
            ev_child_start(n->loop, &h->child);
            ev_timer_init(&h->timeout, timeout_cb, GUTS_NET_HOOK_TIMEOUT_S, 0.);
            ev_timer_start(n->loop, &h->timeout);
        } else if (!ok) {
            h->failed++;
            hook_warn(h, "--on-event %s cannot start: %s", strerror(errno));
        }
    }
}

void guts_net_hooks_event(guts_net_node *n, const guts_core_event *e)
{
    uint64_t wall = wall_ms();
    if (n->http.d) {
        guts_net_hook_item *r = &n->events[n->nevents++ % GUTS_NET_EVENTS_RING];
        r->e = *e;
        r->wall_ms = wall;
    }
    for (size_t i = 0; i < n->nhooks; i++) {
        guts_net_hook *h = &n->hooks[i];
        if (h->nq == GUTS_NET_HOOK_QUEUE) {
            h->dropped++;
            hook_warn(h, "--on-event %s is behind: events dropped (%s)", "queue full");
            continue;
        }
        guts_net_hook_item *it = &h->queue[(h->head + h->nq) % GUTS_NET_HOOK_QUEUE];
        it->e = *e;
        it->wall_ms = wall;
        h->nq++;
        hook_next(h);
    }
}

int guts_net_hooks_start(guts_net_node *n)
{
    if (!n->opts.nhooks) return 0;
    n->hooks = calloc(n->opts.nhooks, sizeof *n->hooks);
    if (!n->hooks) return GUTS_ENOMEM;
    n->nhooks = n->opts.nhooks;
    for (size_t i = 0; i < n->nhooks; i++) {
        guts_net_hook *h = &n->hooks[i];
        h->node = n;
        snprintf(h->cmd, sizeof h->cmd, "%s", n->opts.hooks[i]);
        snprintf(h->words, sizeof h->words, "%s", n->opts.hooks[i]);
        size_t a = 0;
        char *save = NULL;
        for (char *w = strtok_r(h->words, " ", &save); w && a < GUTS_NET_HOOK_ARGS_MAX;
             w = strtok_r(NULL, " ", &save))
            h->argv[a++] = w;
        h->argv[a] = NULL;
        if (!a) {
            guts_net_logf(&n->log, GUTS_LOG_ERROR, "--on-event '%s': no command", h->cmd);
            return GUTS_EINVAL;
        }
        guts_net_logf(&n->log, GUTS_LOG_INFO, "--on-event %s: runs for each event", h->cmd);
    }
    return 0;
}

void guts_net_hooks_stop(guts_net_node *n)
{
    for (size_t i = 0; i < n->nhooks; i++) {
        guts_net_hook *h = &n->hooks[i];
        if (h->pid > 0) {
            ev_child_stop(n->loop, &h->child);
            ev_timer_stop(n->loop, &h->timeout);
            kill(-h->pid, SIGKILL);
            while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR) {
            }
            h->pid = 0;
        }
    }
    free(n->hooks);
    n->hooks = NULL;
    n->nhooks = 0;
}

void guts_net_hooks_status(const guts_net_node *n, FILE *f)
{
    fputs(",\n  \"hooks\": [", f);
    for (size_t i = 0; i < n->nhooks; i++) {
        const guts_net_hook *h = &n->hooks[i];
        char cmd[2 * GUTS_NET_HOOK_CMD_MAX];
        json_text(cmd, sizeof cmd, h->cmd);
        fprintf(f,
                "%s\n    {\"cmd\": \"%s\", \"runs\": %llu, \"failed\": %llu, \"timeouts\": %llu, "
                "\"dropped\": %llu, \"queued\": %zu, \"running\": %s}",
                i ? "," : "", cmd, (unsigned long long)h->run, (unsigned long long)h->failed,
                (unsigned long long)h->timeouts, (unsigned long long)h->dropped, h->nq,
                h->pid ? "true" : "false");
    }
    fputs(n->nhooks ? "\n  ]" : "]", f);
}
