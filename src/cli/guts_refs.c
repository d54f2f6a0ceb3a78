/* guts_refs.c - `guts refs` and `guts log`: a stored repository's refs and
 * the history they name, read from the store alone (no git needed).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guts_cli.h"
#include "walk.h"
#include "guts/gitobj.h"

const char usage_refs[] =
    "usage: guts refs OWNER/NAME [--all] [--json]\n"
    "\n"
    "List the refs of repository OWNER/NAME in name order, one per line: id\n"
    "(\"ref: TARGET\" for a symbolic HEAD), Lamport clock, writer node id, name.\n"
    "--all includes deleted refs (tombstones, shown as \"(deleted)\").\n"
    "--json prints a JSON array of {\"name\", \"id\", \"symref\", \"deleted\",\n"
    "\"clock\", \"writer\"} (id null for a symbolic or deleted ref).\n";

const char usage_log[] =
    "usage: guts log OWNER/NAME [REF] [-n N]\n"
    "\n"
    "Print the commits of REF (default HEAD), newest first, one per line from\n"
    "the store: short id, author date, author, subject. Commits reachable from\n"
    "REF come newest first by committer date (git log's default order), each\n"
    "once; the walk stops after N commits (default 20, at most 1000000).\n"
    "REF is a full ref name, HEAD, a branch, tag or remote-tracking name, or a\n"
    "40-digit commit id; tags are peeled. Exit 1 if a parent is not stored.\n";

typedef struct refs_ctx {
    int json, n;
} refs_ctx;

/* A ref name from the store (checked by guts_refname_check on the way in,
 * so printable ASCII), still printed through put_safe: it came from peers. */
static int refs_one(const guts_ref *ref, void *arg)
{
    refs_ctx *c = arg;
    char id[GUTS_HEX_LEN + 1], w[2 * GUTS_NODE_ID_LEN + 1];
    int sym = ref->symref[0] != 0, dead = !sym && guts_id_is_zero(&ref->target);
    guts_id_to_hex(&ref->target, id);
    guts_node_id_to_hex(&ref->writer, w);
    if (c->json) {
        fputs(c->n ? ",\n  {\"name\": \"" : "\n  {\"name\": \"", stdout);
        put_safe(ref->name, strlen(ref->name), 1);
        fputs("\", \"id\": ", stdout);
        if (sym || dead)
            fputs("null", stdout);
        else
            printf("\"%s\"", id);
        fputs(", \"symref\": ", stdout);
        if (sym) {
            putchar('"');
            put_safe(ref->symref, strlen(ref->symref), 1);
            putchar('"');
        } else {
            fputs("null", stdout);
        }
        printf(", \"deleted\": %s, \"clock\": %" PRIu64 ", \"writer\": \"%s\"}",
               dead ? "true" : "false", ref->clock, w);
    } else {
        if (sym) {
            size_t n = strlen(ref->symref);
            fputs("ref: ", stdout);
            put_safe(ref->symref, n, 0);
            printf("%*s", n + 5 < GUTS_HEX_LEN ? (int)(GUTS_HEX_LEN - 5 - n) + 1 : 1, "");
        } else {
            printf("%s ", dead ? "(deleted)                               " : id);
        }
        printf("%8" PRIu64 " %s ", ref->clock, w);
        put_safe(ref->name, strlen(ref->name), 0);
        putchar('\n');
    }
    c->n++;
    return 0;
}

int cmd_refs(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "refs";
    const char *key = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    refs_ctx c = {0};
    int all = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c.json = 1;
        else if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (argv[i][0] == '-')
            return unknown_option(cmd, argv[i]);
        else if (key)
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts refs --help)",
                       argv[i]);
        else
            key = argv[i];
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME (see guts refs --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    if ((rc = open_repo(cmd, d, key, 0, &r))) goto out;
    if (c.json) fputs("[", stdout);
    int e = guts_repo_refs(r, all, refs_one, &c);
    if (c.json) printf("%s]\n", c.n ? "\n" : "");
    if (e) rc = die(EXIT_OP, cmd, "%s: reading refs: %s", key, store_why(e));
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}

/* ---- log ---------------------------------------------------------------- */

/* Default and largest -n of `guts log`: a screenful, and a bound that keeps
 * a typo from walking a huge history. */
#define LOG_DEFAULT 20
#define LOG_MAX 1000000
/* Levels of symbolic refs and of tags pointing at tags followed to reach a
 * commit: git stops symref chains at 5 too. */
#define LOG_DEREF_MAX 5

/* The commit REF names: an id, a full ref name, HEAD, or a short name
 * (refs/heads/, refs/tags/, refs/remotes/ tried in that order). Tags are
 * peeled. On failure *why says what went wrong. */
int log_resolve(guts_repo *r, const char *ref, guts_id *out, const char **why)
{
    guts_ref rec;
    char name[GUTS_REFNAME_MAX + 32];
    int found = 0;
    *why = "no such ref or commit";
    if (guts_id_from_hex(ref, strlen(ref), out) == GUTS_OK) {
        found = 1;
    } else {
        static const char *const prefixes[] = {"", "refs/heads/", "refs/tags/", "refs/remotes/"};
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes && !found; i++) {
            if (i == 0 && strcmp(ref, "HEAD") != 0 && strncmp(ref, "refs/", 5) != 0) continue;
            snprintf(name, sizeof name, "%s%s", prefixes[i], ref);
            for (int depth = 0; depth <= LOG_DEREF_MAX; depth++) {
                if (guts_refname_check(name) != GUTS_OK) break;
                if (guts_repo_ref_get(r, name, &rec) != GUTS_OK) break;
                if (rec.symref[0]) {
                    snprintf(name, sizeof name, "%s", rec.symref);
                    *why = "HEAD points at a branch that does not exist (unborn)";
                    continue;
                }
                if (guts_id_is_zero(&rec.target)) {
                    *why = "the ref was deleted";
                    break;
                }
                *out = rec.target;
                found = 1;
                break;
            }
        }
    }
    if (!found) return GUTS_ENOTFOUND;
    for (int depth = 0; depth <= LOG_DEREF_MAX; depth++) {
        int type;
        void *data;
        size_t len;
        int e = guts_repo_get(r, out, &type, &data, &len);
        if (e) {
            *why = e == GUTS_ENOTFOUND ? "the object is not stored" : guts_strerror(e);
            return e;
        }
        if (type == GUTS_OBJ_COMMIT) {
            free(data);
            return GUTS_OK;
        }
        int ok = type == GUTS_OBJ_TAG && guts_tag_target(data, len, out) == GUTS_OK;
        free(data);
        if (!ok) {
            *why = "it names no commit";
            return GUTS_EINVAL;
        }
    }
    *why = "tags nested too deep";
    return GUTS_EINVAL;
}

/* One line for a commit: short id, author date, author, subject. Commit
 * text came from a git repository or a peer: printed through put_safe. */
static void log_line(const guts_id *id, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    const char *an = NULL, *subject = NULL;
    size_t anl = 0, subl = 0;
    char date[64] = "?", hex[GUTS_HEX_LEN + 1];
    while (p < end && *p != '\n') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!an && ll > 7 && memcmp(p, "author ", 7) == 0) {
            /* "author NAME <EMAIL> EPOCH TZ" */
            const char *lt = memchr(p + 7, '<', ll - 7);
            const char *gt = lt ? memchr(lt, '>', (size_t)(p + ll - lt)) : NULL;
            an = p + 7;
            anl = lt ? (size_t)(lt - an) : ll - 7;
            while (anl && an[anl - 1] == ' ')
                anl--;
            if (gt) {
                char tail[64];
                size_t tl = (size_t)(p + ll - gt - 1);
                long long secs;
                int tz;
                if (tl < sizeof tail) {
                    memcpy(tail, gt + 1, tl);
                    tail[tl] = 0;
                    if (sscanf(tail, " %lld %d", &secs, &tz) == 2 && tz > -10000 && tz < 10000 &&
                        secs > -62135596800LL && secs < 253402300799LL) {
                        int off = (tz / 100) * 3600 + (tz % 100) * 60;
                        time_t t = (time_t)(secs + off);
                        struct tm tm;
                        if (gmtime_r(&t, &tm))
                            snprintf(date + strftime(date, 32, "%Y-%m-%d %H:%M", &tm), 32,
                                     " %c%04d", tz < 0 ? '-' : '+', tz < 0 ? -tz : tz);
                    }
                }
            }
        }
        if (!nl) {
            p = end;
            break;
        }
        p = nl + 1;
    }
    /* The message starts after the blank line; the subject is its first
     * non-empty line. */
    if (p < end) p++;
    while (p < end && *p == '\n')
        p++;
    subject = p;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    subl = nl ? (size_t)(nl - p) : (size_t)(end - p);
    guts_id_to_hex(id, hex);
    printf("%.12s %s ", hex, date);
    if (an)
        put_safe(an, anl, 0);
    else
        putchar('?');
    fputs("  ", stdout);
    put_safe(subject, subl, 0);
    putchar('\n');
}

int cmd_log(const char *data_opt, int argc, char **argv)
{
    const char *cmd = "log";
    const char *key = NULL, *ref = NULL;
    guts_data *d = NULL;
    guts_repo *r = NULL;
    long max = LOG_DEFAULT;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 || strncmp(argv[i], "-n", 2) == 0) {
            const char *v = argv[i][2] ? argv[i] + 2 : i + 1 < argc ? argv[++i] : "";
            char *e;
            errno = 0;
            max = strtol(v, &e, 10);
            if (!v[0] || *e || errno || max < 1 || max > LOG_MAX)
                return die(EXIT_USAGE, cmd, "-n wants a count 1-%d, got \"%s\"", LOG_MAX, v);
        } else if (argv[i][0] == '-') {
            return unknown_option(cmd, argv[i]);
        } else if (!key) {
            key = argv[i];
        } else if (!ref) {
            ref = argv[i];
        } else {
            return die(EXIT_USAGE, cmd, "unexpected argument \"%s\" (see guts log --help)",
                       argv[i]);
        }
    }
    if (!key) return die(EXIT_USAGE, cmd, "expected OWNER/NAME [REF] (see guts log --help)");
    if ((rc = check_key(cmd, key))) return rc;
    if (!ref) ref = "HEAD";
    if ((rc = open_data(cmd, data_opt, 0, &d))) return rc;
    if ((rc = open_repo(cmd, d, key, 0, &r))) goto out;
    guts_id id;
    const char *why;
    if (log_resolve(r, ref, &id, &why) != GUTS_OK) {
        rc = die(EXIT_OP, cmd, "%s: \"%s\": %s", key, ref, why);
        goto out;
    }
    guts_walk w = {.r = r};
    guts_walk_item it;
    int e = guts_repo_read_hold(r); /* one read transaction for the walk */
    if (!e) e = guts_walk_push(&w, &id);
    for (long i = 0; !e && i < max && guts_walk_pop(&w, &it); i++) {
        int type;
        void *data;
        size_t len;
        if ((e = guts_repo_get(r, &it.id, &type, &data, &len))) break;
        log_line(&it.id, data, len);
        e = guts_walk_push_parents(&w, data, len);
        free(data);
    }
    if (e)
        rc = die(EXIT_OP, cmd, "%s: reading commits: %s", key, store_why(e));
    else if (w.missing)
        rc = die(EXIT_OP, cmd, "%s: %" PRIu64 " parent commit%s not stored (see guts fsck %s)", key,
                 w.missing, w.missing == 1 ? " is" : "s are", key);
    guts_walk_free(&w);
    guts_repo_read_release(r);
out:
    if (r) guts_repo_close(r);
    guts_data_close(d);
    return rc;
}
