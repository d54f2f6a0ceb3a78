/* guts_cli.h - what the `guts` command's files share: exit codes, the one
 * error line, argument checks and opening the data dir and a repository
 * (guts_common.c), a running node's status file (guts_node.c), and the
 * commands the table in guts.c runs.
 *
 * Every function that reports prints exactly one line on stderr naming the
 * input at fault and returns the exit status to use.
 */
#ifndef GUTS_CLI_H
#define GUTS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "guts_json.h"
#include "guts/store.h"

#define EXIT_OP 1    /* operational error */
#define EXIT_USAGE 2 /* usage error */

/** Print "guts: CMD: message" (newlines folded) and return code. */
int die(int code, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** 1 when argv asks for help (--help or -h before any "--"). */
int wants_help(int argc, char **argv);

/** An option cmd does not know: EXIT_USAGE, with a hint for --data. */
int unknown_option(const char *cmd, const char *opt);

/** Reject options cmd does not know and count its operands: 0, or
 * EXIT_USAGE after one line naming shape (e.g. "OWNER/NAME GITDIR"). */
int check_operands(const char *cmd, int argc, char **argv, int want, const char *shape);

/** --json alone, the option every listing command takes: sets *json; 0 or
 * EXIT_USAGE after one line. */
int parse_json_only(const char *cmd, int argc, char **argv, int *json);

/** Seconds on the monotonic clock (for elapsed times). */
double now_s(void);

/** fp as 32 hex digits and a NUL. */
void fp_hex(guts_fp fp, char out[33]);

/** 0 when key is a valid OWNER/NAME, else EXIT_USAGE with the rule. */
int check_key(const char *cmd, const char *key);

/** The data dir's path (--data opt, $GUTS_DATA, ~/.local/share/guts),
 * without touching it; 0 or EXIT_USAGE after one line. */
int data_path(const char *cmd, const char *opt, const char **out);

/** The store's cause for rc, or rc's name. */
const char *store_why(int rc);

/** Open the data dir (--data opt, $GUTS_DATA, ~/.local/share/guts); flags as
 * guts_data_open (GUTS_DATA_CREATE only for commands that write). 0 or
 * EXIT_OP/EXIT_USAGE after one line. */
int open_data(const char *cmd, const char *opt, unsigned flags, guts_data **out);

/** The one line for a failed guts_repo_open (rc) of key in d; returns
 * EXIT_OP. */
int repo_open_error(const char *cmd, guts_data *d, const char *key, int rc);

/** Open repository key of d; 0 or EXIT_OP after one line. */
int open_repo(const char *cmd, guts_data *d, const char *key, unsigned flags, guts_repo **out);

/** Untrusted text to stdout as printable ASCII ('?' for the rest); json:
 * '"' and '\' escaped. */
void put_safe(const char *s, size_t len, int json);

/** s as a JSON string on stdout, through put_safe. */
void put_json_str(const char *s);

/** The commit ref names in r: an id, a full ref name, HEAD or a short name
 * (refs/heads/, refs/tags/, refs/remotes/ tried in that order); tags are
 * peeled. On failure *why says what went wrong. */
int log_resolve(guts_repo *r, const char *ref, guts_id *out, const char **why);

/* ---- A running node: DATA/node/status.json ---- */

/* guts-node rewrites its status file every second (GUTS_NET_STATUS_S); one
 * older than this is from a node that is stopped (SIGSTOP), stuck, or gone
 * while another process took its pid. */
#define NODE_FRESH_MS 5000

enum { NODE_ABSENT, NODE_DEAD, NODE_STALE, NODE_RUNNING, NODE_BAD };

/* Each state's name in JSON output, indexed by the enum. */
extern const char *const node_state_names[];

/* What the status file says, once read and checked. The file is untrusted
 * input: any process able to write DATA/node could have written it. */
typedef struct node_run {
    int state;
    long pid;        /* DEAD, STALE, RUNNING */
    uint64_t age_ms; /* since the file was last written */
    char path[4200];
    char why[256]; /* BAD: one line */
    guts_json j;
    const guts_json_val *root;
} node_run;

/** Read DATA/node/status.json of data dir path data into nr (release with
 * node_run_free). */
void node_read(const char *data, node_run *nr);
void node_run_free(node_run *nr);

/** Member key of obj as an unsigned number: *out, 1 when present (else 0). */
int field_u(const guts_json *j, const guts_json_val *obj, const char *key, uint64_t *out);

/* The commands, a file per family (guts_import.c, guts_status.c,
 * guts_refs.c, guts_rm.c, guts_fsck.c, guts_keys.c, guts_doctor.c,
 * guts_conflicts.c): each runs with argv[0] its name and returns the exit
 * status; guts.c's table names them with their usage texts. */
int cmd_import(const char *data_opt, int argc, char **argv);
int cmd_export(const char *data_opt, int argc, char **argv);
int cmd_status(const char *data_opt, int argc, char **argv);
int cmd_peers(const char *data_opt, int argc, char **argv);
int cmd_ls(const char *data_opt, int argc, char **argv);
int cmd_refs(const char *data_opt, int argc, char **argv);
int cmd_log(const char *data_opt, int argc, char **argv);
int cmd_rm(const char *data_opt, int argc, char **argv);
int cmd_fsck(const char *data_opt, int argc, char **argv);
int cmd_keygen(const char *data_opt, int argc, char **argv);
int cmd_keys(const char *data_opt, int argc, char **argv);
int cmd_doctor(const char *data_opt, int argc, char **argv);
int cmd_conflicts(const char *data_opt, int argc, char **argv);
int cmd_resolve(const char *data_opt, int argc, char **argv);
extern const char usage_import[], usage_export[], usage_status[], usage_peers[], usage_ls[],
    usage_refs[], usage_log[], usage_rm[], usage_fsck[], usage_keygen[], usage_keys[],
    usage_doctor[], usage_conflicts[], usage_resolve[];

/** Print a running node's state (node_read) for `guts status`: text, or a
 * JSON object when json. */
void node_print(const node_run *nr, const char *data, int json);

/** Print the peers a running node reports (`guts peers`): a line each, or
 * a JSON array when json. */
void node_peers_print(const node_run *nr, int json);

/** The number of live conflict records of r (refs under
 * refs/guts/conflicts/). Errors: store errors. */
int conflicts_count(guts_repo *r, uint64_t *n);

#endif
