/* guts.c - the `guts` command's entry: global options, the table of
 * commands, and running a command (in a child when it reads the store).
 *
 * A thin front end over the store (include/guts/store.h) and the git bridge
 * (src/git/). It is the only place that reads the environment ($GUTS_DATA,
 * $HOME) and the only place that turns an error code into an exit status:
 * 0 success, 1 an operational error, 2 a usage error. Every error is one line
 * on stderr that names the input at fault, so scripts can show it as is.
 * Arguments are checked (keys above all) before the data dir is touched.
 *
 * A running guts-node is seen only through DATA/node/status.json, which it
 * rewrites every second: the CLI needs no socket and no protocol of its own
 * to show peers and sync states, and the file is parsed as untrusted input
 * by a bounded reader (guts_json.c, guts_node.c). Commands are one table
 * (`commands`), their code a file per family (guts_cli.h lists them): a new
 * one (e.g. keygen) is a function, a usage text and a row.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "guts_cli.h"

/* ---- Usage -------------------------------------------------------------- */

static const char usage_main[] =
    "usage: guts [--data DIR] COMMAND [ARGS]\n"
    "\n"
    "Replicate git repositories across a LAN. Commands:\n"
    "  import OWNER/NAME GITDIR       store every object, ref and HEAD of a git repository\n"
    "  export OWNER/NAME OUTDIR       write a stored repository as a new bare git repository\n"
    "  ls [--json]                    list repositories: key, objects, refs\n"
    "  refs OWNER/NAME [--all] [--json]  list a repository's refs\n"
    "  log OWNER/NAME [REF] [-n N]    one line per commit, newest first\n"
    "  rm OWNER/NAME [--yes] [--force]  remove a repository from this data dir\n"
    "  status [--json]                node id, repositories, and a running node's state\n"
    "  peers [--json]                 the peers a running node hears from\n"
    "  fsck OWNER/NAME                rehash every object, check counts, refs and links\n"
    "  conflicts [OWNER/NAME]         divergent updates kept under refs/guts/conflicts/\n"
    "  resolve OWNER/NAME REF (--take COMMIT | --merge)  settle a ref's conflicts everywhere\n"
    "  keygen FILE                    write a new cluster key for guts-node --key-file\n"
    "  keys (list | reload)           the running node's cluster keys; reread its key file\n"
    "  doctor [--json]                why nodes do not find each other: checks\n"
    "  help [COMMAND]                 this text, or a command's\n"
    "\n"
    "The data directory is --data DIR, else $GUTS_DATA, else ~/.local/share/guts.\n"
    "`guts COMMAND --help` describes a command; `man guts` (docs/guts.1) all of\n"
    "them. Exit status: 0 success, 1 operational error, 2 usage error.\n";

/* ---- main --------------------------------------------------------------- */

/* Every command: `guts --help` lists them, `guts COMMAND --help` and
 * `guts help COMMAND` print the usage. */

typedef struct command {
    const char *name;
    int (*run)(const char *data_opt, int argc, char **argv);
    const char *usage;
    int store; /* reads repository environments: runs in a child (run_command) */
} command;

static const command commands[] = {
    {"import", cmd_import, usage_import, 1},
    {"export", cmd_export, usage_export, 1},
    {"ls", cmd_ls, usage_ls, 1},
    {"refs", cmd_refs, usage_refs, 1},
    {"log", cmd_log, usage_log, 1},
    {"rm", cmd_rm, usage_rm, 1},
    {"status", cmd_status, usage_status, 1},
    {"peers", cmd_peers, usage_peers, 0},
    {"fsck", cmd_fsck, usage_fsck, 1},
    {"keygen", cmd_keygen, usage_keygen, 0},
    {"doctor", cmd_doctor, usage_doctor, 0},
    {"conflicts", cmd_conflicts, usage_conflicts, 1},
    {"resolve", cmd_resolve, usage_resolve, 1},
    {"keys", cmd_keys, usage_keys, 0},
};

/* Bytes kept of LMDB's assertion text: one line of file, line, expression
 * and function (LMDB formats it into 400). */
#define CRASH_NOTE_BYTES 512

/* Signals that say a process read what it should not have: a page past
 * the end of a truncated file (SIGBUS), a wild offset from a damaged page
 * (SIGSEGV), LMDB's own assertions (SIGABRT). */
static int fault_signal(int sig)
{
    return sig == SIGBUS || sig == SIGSEGV || sig == SIGABRT || sig == SIGILL || sig == SIGFPE;
}

/* Run a command in a child process and wait for it (*child is 1 in the
 * child, which returns the command's status). LMDB trusts the file
 * it maps, and the check at open reads only the meta pages (a full walk,
 * GUTS_REPO_VERIFY, is for the commands that read everything anyway): a
 * damaged page met later kills the reader by a signal, which no handler
 * can undo inside LMDB. The child takes that death; this process turns it
 * into one line and exit 1. The fork costs well under a millisecond
 * (docs/operations.md, "A damaged disk"). */
static int run_command(const command *c, const char *data_opt, int argc, char **argv, int *child)
{
    *child = 0;
    fflush(stdout);
    fflush(stderr);
    /* LMDB's assertion text, written by the child just before it aborts. */
    char *note =
        mmap(NULL, CRASH_NOTE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (note == MAP_FAILED) note = NULL;
    pid_t pid = fork();
    if (pid < 0) return die(EXIT_OP, c->name, "fork: %s", strerror(errno));
    if (pid == 0) {
        *child = 1;
        guts_store_crash_note(note, CRASH_NOTE_BYTES);
        return c->run(data_opt, argc, argv);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return die(EXIT_OP, c->name, "waitpid: %s", strerror(errno));
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    if (note && !fault_signal(sig)) munmap(note, CRASH_NOTE_BYTES);
    if (!sig) return WEXITSTATUS(st);
    if (!fault_signal(sig)) {
        /* Stopped from outside (^C, kill): end the same way. */
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    char why[CRASH_NOTE_BYTES + 64];
    snprintf(why, sizeof why, "%s%s%s", strsignal(sig), note && note[0] ? ": " : "",
             note ? note : "");
    if (note) munmap(note, CRASH_NOTE_BYTES);
    if (argc > 1 && guts_repo_key_check(argv[1]) == GUTS_OK)
        return die(EXIT_OP, c->name,
                   "%s: environment damaged: reading it killed the process (%s); guts fsck %s "
                   "names the damage",
                   argv[1], why, argv[1]);
    return die(EXIT_OP, c->name,
               "environment damaged: reading the data directory killed the process (%s); guts "
               "fsck OWNER/NAME names the damage",
               why);
}

int main(int argc, char **argv)
{
    const char *data_opt = NULL;
    int i = 1;
    /* A git child that exits early must not kill us through SIGPIPE: the
     * failed write returns EPIPE and becomes an error line instead. */
    signal(SIGPIPE, SIG_IGN);
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_main, stdout);
            return 0;
        } else if (strcmp(argv[i], "--data") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return die(EXIT_USAGE, NULL, "--data needs a directory");
            data_opt = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--data=", 7) == 0 && argv[i][7]) {
            data_opt = argv[i] + 7;
            i++;
        } else {
            return die(EXIT_USAGE, NULL, "unknown option \"%s\" (see guts --help)", argv[i]);
        }
    }
    if (i >= argc) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "help") == 0) {
        if (sub_argc == 1) return fputs(usage_main, stdout), 0;
        cmd = sub_argv[1];
        sub_argc = 1;
    }
    const command *c = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strcmp(cmd, commands[k].name) == 0) c = &commands[k];
    if (!c) return die(EXIT_USAGE, NULL, "unknown command \"%s\" (see guts --help)", cmd);
    int rc;
    if (sub_argc == 1 && strcmp(argv[i], "help") == 0)
        rc = (fputs(c->usage, stdout), 0);
    else if (wants_help(sub_argc, sub_argv))
        rc = (fputs(c->usage, stdout), 0);
    else if (!c->store)
        rc = c->run(data_opt, sub_argc, sub_argv);
    else {
        int child;
        rc = run_command(c, data_opt, sub_argc, sub_argv, &child);
        /* The child flushes its output and runs the exit handlers (a
         * sanitizer build's leak check among them) by returning; the parent
         * has nothing to flush or free, and skips them. */
        if (!child) _exit(rc);
    }
    /* A reader that stopped reading (`guts refs K | head -1`) got what it
     * wanted: a closed pipe is not a failure, and says nothing. */
    if (fflush(stdout) != 0 && rc == 0 && errno != EPIPE)
        rc = die(EXIT_OP, cmd, "writing output failed: %s", strerror(errno));
    return rc;
}
