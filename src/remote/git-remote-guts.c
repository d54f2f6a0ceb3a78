/* git-remote-guts.c - git's remote helper for guts://OWNER/NAME.
 *
 * git runs `git-remote-guts REMOTE URL` with $GIT_DIR set when a URL starts
 * with guts:// (or guts::) and speaks gitremote-helpers(7) on our stdin and
 * stdout: we offer `fetch`, `push` and `option`. Objects cross as packs in
 * both directions (src/git/fetch.c, push.c); the store is the local data dir, found
 * as the CLI finds it ($GUTS_DATA, else ~/.local/share/guts: git offers no
 * way to pass --data). Nothing here talks to a node: a running node sees the
 * store change within a second and announces it.
 *
 * stdout carries only protocol lines; everything for the user goes to
 * stderr, one line per failure, prefixed "guts: ".
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "packcache.h"
#include "remote.h"

/* zlib level of fetched packs, unless $GUTS_PACK_LEVEL (0-9) says otherwise.
 * Measured on 21k objects (docs/performance.md): deflate is most of the
 * helper's CPU at level 1 (2.4x slower than level 0), and level 0 keeps a
 * clone within 2x of file://; the price is a pack of stored entries (4.6x
 * git's there) until the next `git gc`. */
#define PACK_LEVEL_DEFAULT 0

/* Commands in one fetch or push batch: far more than any real push. */
#define BATCH_MAX 100000

typedef struct helper {
    char key[GUTS_KEY_MAX + 1];
    char datadir[4096];
    guts_data *data;
    int verbosity;
    int progress;
    int dry_run;
    int check_connectivity; /* git asked; we answer connectivity-ok when verified */
    int pack_level;
} helper;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    fputs("guts: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* guts://OWNER/NAME (or OWNER/NAME, as git passes guts::OWNER/NAME) to a key. */
static int parse_url(const char *url, char *key)
{
    if (strncmp(url, "guts://", 7) == 0) url += 7;
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0 || n > GUTS_KEY_MAX) return GUTS_EINVAL;
    memcpy(key, url, n);
    key[n] = 0;
    return guts_repo_key_check(key);
}

/* The data dir: $GUTS_DATA, else ~/.local/share/guts. Only a push creates
 * it (flags GUTS_DATA_CREATE); a fetch or clone from a data dir that does
 * not exist says so and leaves nothing behind. */
static int open_data(helper *h, unsigned flags)
{
    if (h->data) return 0;
    const char *env = getenv("GUTS_DATA"), *home = getenv("HOME");
    if (env && env[0])
        snprintf(h->datadir, sizeof h->datadir, "%s", env);
    else if (home && home[0])
        snprintf(h->datadir, sizeof h->datadir, "%s/.local/share/guts", home);
    else {
        say("no data directory: set GUTS_DATA");
        return -1;
    }
    int rc = guts_data_open(h->datadir, flags, &h->data);
    if (rc == GUTS_ENOTFOUND) {
        say("data directory \"%s\" does not exist (set GUTS_DATA to the data directory of "
            "guts import and guts-node)",
            h->datadir);
        return -1;
    }
    if (rc) {
        say("cannot open data directory \"%s\": %s", h->datadir,
            guts_store_errmsg()[0] ? guts_store_errmsg() : guts_strerror(rc));
        return -1;
    }
    return 0;
}

/* Open the repository; *r NULL (and 0) when it does not exist. */
static int open_repo(helper *h, unsigned flags, guts_repo **r)
{
    *r = NULL;
    if (open_data(h, flags)) return -1;
    int rc = guts_repo_open(h->data, h->key, 0, r);
    if (rc == GUTS_ENOTFOUND) return 0;
    if (rc) {
        say("cannot open %s: %s", h->key,
            rc == GUTS_EIO || rc == GUTS_ESTORE ? guts_store_errmsg() : guts_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- list ------------------------------------------------------------------ */

typedef struct list_ctx {
    guts_ref head;
    int has_head;
} list_ctx;

static int print_ref(const guts_ref *ref, void *ctx)
{
    list_ctx *l = ctx;
    if (strcmp(ref->name, "HEAD") == 0) {
        l->head = *ref;
        l->has_head = 1;
        return 0;
    }
    char hex[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&ref->target, hex);
    printf("%s %s\n", hex, ref->name);
    return 0;
}

static int cmd_list(helper *h, int for_push)
{
    guts_repo *r;
    if (open_repo(h, for_push ? GUTS_DATA_CREATE : 0, &r)) return -1;
    if (!r) {
        if (!for_push) {
            say("no repository %s in %s", h->key, h->datadir);
            return -1;
        }
        printf("\n"); /* a push creates it */
        fflush(stdout);
        return 0;
    }
    list_ctx l = {.has_head = 0};
    int rc = guts_repo_refs(r, 0, print_ref, &l);
    if (!rc && l.has_head) {
        guts_ref target;
        if (l.head.symref[0]) {
            /* Only a HEAD that names a live branch: git clones it as such. */
            if (guts_repo_ref_get(r, l.head.symref, &target) == 0 &&
                !guts_id_is_zero(&target.target))
                printf("@%s HEAD\n", l.head.symref);
        } else if (!guts_id_is_zero(&l.head.target)) {
            char hex[GUTS_HEX_LEN + 1];
            guts_id_to_hex(&l.head.target, hex);
            printf("%s HEAD\n", hex);
        }
    }
    guts_repo_close(r);
    if (rc) {
        say("reading refs of %s: %s", h->key, guts_strerror(rc));
        return -1;
    }
    printf("\n");
    fflush(stdout);
    return 0;
}

/* ---- option ---------------------------------------------------------------- */

static void cmd_option(helper *h, const char *args)
{
    const char *sp = strchr(args, ' ');
    const char *val = sp ? sp + 1 : "";
    size_t n = sp ? (size_t)(sp - args) : strlen(args);
    const char *reply = "unsupported";
    if (n == 9 && memcmp(args, "verbosity", 9) == 0) {
        h->verbosity = atoi(val);
        reply = "ok";
    } else if (n == 8 && memcmp(args, "progress", 8) == 0) {
        h->progress = strcmp(val, "true") == 0;
        reply = "ok";
    } else if (n == 18 && memcmp(args, "check-connectivity", 18) == 0) {
        h->check_connectivity = strcmp(val, "true") == 0;
        reply = "ok";
    } else if (n == 7 && memcmp(args, "dry-run", 7) == 0) {
        h->dry_run = strcmp(val, "true") == 0;
        reply = "ok";
    }
    printf("%s\n", reply);
    fflush(stdout);
}

/* ---- fetch ----------------------------------------------------------------- */

/* The local repository's ref targets: what it has. */
static int local_haves(guts_ids *haves)
{
    char *argv[] = {"git", "for-each-ref", "--format=%(objectname)", NULL};
    char *out = NULL, err[GUTS_GIT_ERR_MAX];
    int status, rc = guts_proc_run(argv, &out, NULL, &status, err);
    if (rc) {
        say("%s", err);
        return -1;
    }
    if (status) {
        free(out);
        say("git for-each-ref failed (exit %d)", status);
        return -1;
    }
    for (char *p = out, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        guts_id id;
        if (guts_id_from_hex(p, strlen(p), &id) == 0 && guts_ids_push(haves, &id)) {
            free(out);
            say("out of memory");
            return -1;
        }
    }
    free(out);
    return 0;
}

static int cmd_fetch(helper *h, char **line, size_t *cap)
{
    guts_ids wants = {0}, haves = {0};
    int ret = -1;
    guts_repo *r = NULL;
    for (;;) {
        char *l = *line;
        guts_id id;
        if (strncmp(l, "fetch ", 6) != 0 || strlen(l) < 6 + GUTS_HEX_LEN ||
            (l[6 + GUTS_HEX_LEN] != ' ' && l[6 + GUTS_HEX_LEN] != 0)) {
            say("unexpected line in a fetch batch: %.80s", l);
            goto out;
        }
        l[6 + GUTS_HEX_LEN] = 0;
        if (guts_id_from_hex(l + 6, GUTS_HEX_LEN, &id) || wants.n >= BATCH_MAX ||
            guts_ids_push(&wants, &id)) {
            say("bad fetch line or too many: %.80s", l);
            goto out;
        }
        ssize_t n = getline(line, cap, stdin);
        if (n <= 0) break;
        if ((*line)[n - 1] == '\n') (*line)[--n] = 0;
        if (n == 0) break;
    }
    if (open_repo(h, 0, &r)) goto out;
    if (!r) {
        say("no repository %s in %s", h->key, h->datadir);
        goto out;
    }
    if (local_haves(&haves)) goto out;
    guts_git_fetch_stats st;
    char err[GUTS_GIT_ERR_MAX];
    int connected = 0;
    /* A clone's pack is kept in DATA/git-packs (packcache.h) for the next
     * clone of the same refs. Its entries are stored at level 0, so it is
     * filed under a key of its own: guts-node never sends it over the
     * network. Without one, the pack guts-node prepared for the same wants
     * (git_prepare.c: deflated at level 1, still a file read) is sent. */
    guts_packcache pc = {.fd = -1, .base_fd = -1};
    char ckey[GUTS_KEY_MAX + 32];
    snprintf(ckey, sizeof ckey, "%s\ngit-remote-guts level %d", h->key, h->pack_level);
    int cached = haves.n == 0 &&
                 guts_packcache_init(&pc, h->datadir, ckey, wants.v, wants.n, NULL, 0) == GUTS_OK &&
                 guts_packcache_also(&pc, h->key, wants.v, wants.n, NULL, 0) == GUTS_OK;
    int rc = guts_git_fetch(r, h->data, h->key, wants.v, wants.n, haves.v, haves.n, h->pack_level,
                            h->progress, cached ? &pc : NULL, &connected, &st, err);
    guts_packcache_free(&pc);
    if (rc) {
        say("fetch from %s failed: %s", h->key, err);
        goto out;
    }
    if (h->verbosity > 1)
        say("fetched %llu objects (%llu bytes, pack %llu bytes) walking %llu commits",
            (unsigned long long)st.objects, (unsigned long long)st.bytes,
            (unsigned long long)st.pack_bytes, (unsigned long long)st.commits_walked);
    /* The .keep protects the new pack from a concurrent gc until git has
     * written the refs; git removes it then. With it git also skips the
     * new pack's objects in its connectivity walk. */
    const char *gitdir = getenv("GIT_DIR");
    if (st.keep[0])
        printf("lock %s/objects/pack/pack-%s.keep\n", gitdir ? gitdir : ".git", st.keep);
    if (connected && h->check_connectivity) printf("connectivity-ok\n");
    printf("\n");
    fflush(stdout);
    ret = 0;
out:
    if (r) guts_repo_close(r);
    free(wants.v);
    free(haves.v);
    return ret;
}

/* ---- push ------------------------------------------------------------------ */

static int parse_push(const char *l, remote_push_cmd *c)
{
    memset(c, 0, sizeof *c);
    l += 5; /* "push " */
    if (*l == '+') {
        c->force = 1;
        l++;
    }
    const char *colon = strchr(l, ':');
    if (!colon) return -1;
    size_t sl = (size_t)(colon - l), dl = strlen(colon + 1);
    if (sl > GUTS_REFNAME_MAX || dl == 0 || dl > GUTS_REFNAME_MAX) return -1;
    memcpy(c->src, l, sl);
    c->src[sl] = 0;
    memcpy(c->dst, colon + 1, dl + 1);
    c->del = sl == 0;
    return 0;
}

static int cmd_push(helper *h, char **line, size_t *cap)
{
    remote_push_cmd *cmds = NULL;
    size_t n = 0, ncap = 0;
    int ret = -1;
    for (;;) {
        if (n == ncap) {
            size_t c = ncap ? ncap * 2 : 16;
            remote_push_cmd *nc = c <= BATCH_MAX ? realloc(cmds, c * sizeof *nc) : NULL;
            if (!nc) {
                say("too many push commands");
                goto out;
            }
            cmds = nc;
            ncap = c;
        }
        if (strncmp(*line, "push ", 5) != 0 || parse_push(*line, &cmds[n])) {
            say("unexpected line in a push batch: %.80s", *line);
            goto out;
        }
        n++;
        ssize_t len = getline(line, cap, stdin);
        if (len <= 0) break;
        if ((*line)[len - 1] == '\n') (*line)[--len] = 0;
        if (len == 0) break;
    }
    if (open_data(h, GUTS_DATA_CREATE)) goto out;
    remote_push_stats st;
    char err[GUTS_GIT_ERR_MAX];
    int rc = remote_push(h->data, h->key, cmds, n, h->dry_run, h->progress, &st, err);
    if (rc) say("push to %s failed: %s", h->key, err);
    for (size_t i = 0; i < n; i++) {
        if (rc)
            printf("error %s store failed\n", cmds[i].dst);
        else if (cmds[i].status == REMOTE_PUSH_OK)
            printf("ok %s\n", cmds[i].dst);
        else
            printf("error %s %s\n", cmds[i].dst, cmds[i].msg[0] ? cmds[i].msg : "rejected");
    }
    printf("\n");
    fflush(stdout);
    if (!rc && h->verbosity > 1)
        say("stored %llu of %llu objects (%llu bytes), %llu refs", (unsigned long long)st.added,
            (unsigned long long)st.objects, (unsigned long long)st.bytes,
            (unsigned long long)st.refs);
    ret = 0;
out:
    free(cmds);
    return ret;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    helper h = {.verbosity = 1, .pack_level = PACK_LEVEL_DEFAULT};
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: git-remote-guts REMOTE [URL]  (run by git for guts:// URLs)\n");
        return 2;
    }
    const char *url = argc == 3 ? argv[2] : argv[1];
    if (parse_url(url, h.key)) {
        say("bad URL \"%s\": want guts://OWNER/NAME", url);
        return 2;
    }
    const char *lv = getenv("GUTS_PACK_LEVEL");
    if (lv && lv[0]) {
        if (lv[0] < '0' || lv[0] > '9' || lv[1]) {
            say("GUTS_PACK_LEVEL must be 0-9, not \"%s\"", lv);
            return 2;
        }
        h.pack_level = lv[0] - '0';
    }
    signal(SIGPIPE, SIG_IGN); /* a git child that dies shows as EPIPE, not death */
    char *line = NULL;
    size_t cap = 0;
    int ret = 0;
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n <= 0) break;
        if (line[n - 1] == '\n') line[--n] = 0;
        if (n == 0) break; /* git ends the session with a blank line */
        if (strcmp(line, "capabilities") == 0) {
            printf("fetch\npush\noption\ncheck-connectivity\n\n");
            fflush(stdout);
        } else if (strcmp(line, "list") == 0 || strcmp(line, "list for-push") == 0) {
            if (cmd_list(&h, line[4] == ' ')) {
                ret = 1;
                break;
            }
        } else if (strncmp(line, "option ", 7) == 0) {
            cmd_option(&h, line + 7);
        } else if (strncmp(line, "fetch ", 6) == 0) {
            if (cmd_fetch(&h, &line, &cap)) {
                ret = 1;
                break;
            }
        } else if (strncmp(line, "push ", 5) == 0) {
            if (cmd_push(&h, &line, &cap)) {
                ret = 1;
                break;
            }
        } else {
            say("unknown command from git: %.80s", line);
            ret = 1;
            break;
        }
    }
    free(line);
    if (h.data) guts_data_close(h.data);
    return ret;
}
