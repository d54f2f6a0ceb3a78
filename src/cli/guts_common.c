/* guts_common.c - what every `guts` command shares: the one error line,
 * argument checks, and opening the data dir and a repository.
 *
 * Every function that reports prints exactly one line on stderr naming the
 * input at fault and returns the exit status to use (guts_cli.h), so each
 * command stays a sequence of checks that return early.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guts_cli.h"

static const char *prog = "guts";

/* Print "guts: CMD: message" as one line and return code. */
int die(int code, const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    if (cmd)
        fprintf(stderr, "%s: %s: %s\n", prog, cmd, msg);
    else
        fprintf(stderr, "%s: %s\n", prog, msg);
    return code;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fp_hex(guts_fp fp, char out[33])
{
    snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, fp.hi, fp.lo);
}

int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

/* An option the command does not know. --data is the usual slip: it is
 * the one global option, so it goes before the command, and saying so
 * beats "unknown". */
int unknown_option(const char *cmd, const char *opt)
{
    if (strcmp(opt, "--data") == 0 || strncmp(opt, "--data=", 7) == 0)
        return die(EXIT_USAGE, cmd,
                   "\"--data\" is a global option: it goes before the command "
                   "(guts --data DIR %s ...)",
                   cmd);
    return die(EXIT_USAGE, cmd, "unknown option \"%s\" (see guts %s --help)", opt, cmd);
}

/* Reject options a command does not know, and count its operands. */
int check_operands(const char *cmd, int argc, char **argv, int want, const char *shape)
{
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return unknown_option(cmd, argv[i]);
    if (argc - 1 != want)
        return die(EXIT_USAGE, cmd, "expected %s, got %d argument%s (see guts %s --help)", shape,
                   argc - 1, argc - 1 == 1 ? "" : "s", cmd);
    return 0;
}

int check_key(const char *cmd, const char *key)
{
    if (guts_repo_key_check(key) != GUTS_OK)
        return die(EXIT_USAGE, cmd,
                   "bad repository key \"%s\": want OWNER/NAME, each 1-%d of [A-Za-z0-9._-] "
                   "not starting with '.'",
                   key, GUTS_KEY_PART_MAX);
    return 0;
}

/* ---- Data dir ----------------------------------------------------------- */

/* The data dir's path, without touching it: --data, $GUTS_DATA, ~/.local/share/guts. */
int data_path(const char *cmd, const char *opt, const char **out)
{
    static char path[4096];
    const char *env = getenv("GUTS_DATA"), *home = getenv("HOME");
    if (opt)
        snprintf(path, sizeof path, "%s", opt);
    else if (env && env[0])
        snprintf(path, sizeof path, "%s", env);
    else if (home && home[0])
        snprintf(path, sizeof path, "%s/.local/share/guts", home);
    else
        return die(EXIT_USAGE, cmd, "no data directory: use --data DIR or set GUTS_DATA");
    *out = path;
    return 0;
}

/* What went wrong in the store, with its cause: the store's own message
 * (errno text included) when the code is one that carries one, else the
 * code's name. */
const char *store_why(int rc)
{
    const char *msg = guts_store_errmsg();
    if (rc == GUTS_EDAMAGED) {
        static char damaged[600];
        snprintf(damaged, sizeof damaged, "environment damaged: %s", msg);
        return damaged;
    }
    int has_cause = rc == GUTS_EIO || rc == GUTS_ESTORE || rc == GUTS_ECORRUPT ||
                    rc == GUTS_EFULL || rc == GUTS_EVERSION;
    return has_cause && msg[0] ? msg : guts_strerror(rc);
}

/* Open the data dir; only a command that writes (import) creates it, so a
 * mistyped --data is an error, not a new empty data dir. */
int open_data(const char *cmd, const char *opt, unsigned flags, guts_data **out)
{
    const char *path;
    int rc;
    if ((rc = data_path(cmd, opt, &path))) return rc;
    rc = guts_data_open(path, flags, out);
    if (rc == GUTS_ENOTFOUND)
        return die(EXIT_OP, cmd,
                   "data directory \"%s\" does not exist (guts import or guts-node creates it; "
                   "--data DIR or $GUTS_DATA names another)",
                   path);
    /* the first store call of the process: its message is this failure's */
    if (rc)
        return die(EXIT_OP, cmd, "cannot open data directory \"%s\": %s", path,
                   guts_store_errmsg()[0] ? guts_store_errmsg() : guts_strerror(rc));
    return 0;
}

/* The one line for a failed guts_repo_open (rc) of key; returns EXIT_OP. */
int repo_open_error(const char *cmd, guts_data *d, const char *key, int rc)
{
    if (rc == GUTS_ENOTFOUND)
        return die(EXIT_OP, cmd, "no repository \"%s\" in \"%s\"", key, guts_data_path(d));
    if (rc == GUTS_EDAMAGED)
        return die(EXIT_OP, cmd, "%s: environment damaged: %s", key, guts_store_errmsg());
    return die(EXIT_OP, cmd, "cannot open repository \"%s\": %s", key, store_why(rc));
}

int open_repo(const char *cmd, guts_data *d, const char *key, unsigned flags,
                     guts_repo **out)
{
    int rc = guts_repo_open(d, key, flags, out);
    return rc ? repo_open_error(cmd, d, key, rc) : 0;
}

void put_json_str(const char *s)
{
    putchar('"');
    put_safe(s, strlen(s), 1);
    putchar('"');
}
