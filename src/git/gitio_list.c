/* gitio_list.c - the import's object list and its plan: every object git
 * has (or what the tips reach), with its type, size and git's delta base,
 * delta hints by path for what git stores whole, and the order to store the
 * objects the store lacks in, each delta base before the objects built on it.
 */
#include "gitio_int.h"
#include "pack.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Parse "<id> <type> <size> <deltabase>" from cat-file --batch-check; with
 * path (a listing with names), " <path>" follows, the path possibly empty
 * or holding spaces, and *path points at it. */
int gitio_parse_check_line(char *line, iobj *o, char **path)
{
    char *f[5];
    int nf = 0, want = path ? 5 : 4;
    for (char *s = line;;) {
        f[nf++] = s;
        if (nf == want) break; /* the path: the rest of the line */
        char *sp = strchr(s, ' ');
        if (!sp) break;
        *sp = 0;
        s = sp + 1;
    }
    if (nf != want || strchr(f[3], ' ')) return GUTS_EINVAL;
    if (path) *path = f[4];
    memset(o, 0, sizeof *o);
    if (guts_id_from_hex(f[0], strlen(f[0]), &o->id) ||
        guts_id_from_hex(f[3], strlen(f[3]), &o->base_id))
        return GUTS_EINVAL;
    o->type = (uint8_t)guts_otype_parse(f[1], strlen(f[1]));
    if (o->type == GUTS_OBJ_NONE) return GUTS_EINVAL;
    char *end;
    errno = 0;
    if (f[2][0] < '0' || f[2][0] > '9') return GUTS_EINVAL; /* strtoull takes "-1", " 1" */
    unsigned long long sz = strtoull(f[2], &end, 10);
    if (errno || *end) return GUTS_EINVAL;
    o->size = sz;
    o->hint = o->base = o->child = o->sib = NONE;
    return GUTS_OK;
}

static char gitio_check_path_format[] = GITIO_CHECK_FORMAT " %(rest)";

/* The key of a path's hints: FNV-1a of type and path. */
uint64_t gitio_path_hash(int type, const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)type; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ? h : 1;
}

/* Swap in the object at index i as the last at its path; returns the one
 * there before, or NONE. GUTS_ENOMEM leaves the hints as they were. */
int gitio_phints_swap(phints *t, uint64_t key, uint32_t i, uint32_t *prev)
{
    *prev = NONE;
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 4096;
        uint64_t *nk = calloc(nc, sizeof *nk);
        uint32_t *ni = malloc(nc * sizeof *ni);
        if (!nk || !ni) {
            free(nk);
            free(ni);
            return GUTS_ENOMEM;
        }
        for (size_t j = 0; j < t->cap; j++) {
            if (!t->key[j]) continue;
            size_t s = (size_t)t->key[j] & (nc - 1);
            while (nk[s])
                s = (s + 1) & (nc - 1);
            nk[s] = t->key[j];
            ni[s] = t->idx[j];
        }
        free(t->key);
        free(t->idx);
        t->key = nk;
        t->idx = ni;
        t->cap = nc;
    }
    size_t s = (size_t)key & (t->cap - 1);
    while (t->key[s] && t->key[s] != key)
        s = (s + 1) & (t->cap - 1);
    if (t->key[s])
        *prev = t->idx[s];
    else
        t->n++;
    t->key[s] = key;
    t->idx[s] = i;
    return GUTS_OK;
}

/* Start the listing into *p: every object of gitdir when ntips is 0, else
 * those reachable from tips and not from exclude, `git rev-list --objects`
 * piped straight into `git cat-file --batch-check` (rl is then the
 * rev-list, to be waited for too). rev-list reads all of its stdin before
 * it writes anything, so writing every id first cannot deadlock. */
static int list_start(const char *gitdir, const guts_id *tips, size_t ntips,
                      const guts_id *exclude, size_t nexclude, proc *rl, proc *p, char *err)
{
    /* --buffer: without it cat-file writes (and wakes us) once per object;
     * nothing here waits for an answer before asking the next. */
    char *all_argv[] = {"git",          "-C",
                        (char *)gitdir, "--no-replace-objects",
                        "cat-file",     "--batch-all-objects",
                        "--unordered",  GITIO_CHECK_FORMAT,
                        "--buffer",     NULL};
    char *check_argv[] = {"git",          "-C",
                          (char *)gitdir, "--no-replace-objects",
                          "cat-file",     gitio_check_path_format,
                          "--buffer",     NULL};
    char *rl_argv[] = {"git",      "-C",        (char *)gitdir,     "--no-replace-objects",
                       "rev-list", "--objects", "--ignore-missing", "--stdin",
                       NULL};
    memset(rl, 0, sizeof *rl);
    rl->in = rl->out = rl->errfd = -1;
    if (!ntips)
        return gitio_proc_start(p, "git cat-file --batch-check", all_argv, PROC_NULL, 1, err);
    int rc = gitio_proc_start(rl, "git rev-list --objects", rl_argv, PROC_PIPE, 1, err);
    if (rc) return rc;
    rc = gitio_proc_start(p, "git cat-file --batch-check", check_argv, rl->out, 1, err);
    close(rl->out);
    rl->out = -1;
    char line[GUTS_HEX_LEN + 3]; /* "^", the id, "\n" and guts_id_to_hex's NUL */
    for (size_t i = 0; i < ntips + nexclude && !rc; i++) {
        size_t k = 0;
        if (i >= ntips) line[k++] = '^';
        guts_id_to_hex(i < ntips ? &tips[i] : &exclude[i - ntips], line + k);
        k += GUTS_HEX_LEN;
        line[k++] = '\n';
        if (guts_write_all(rl->in, line, k))
            rc = guts_git_errf(err, GUTS_EIO, "writing to git rev-list: %s", strerror(errno));
    }
    close(rl->in);
    rl->in = -1;
    if (rc) {
        if (p->pid > 0) {
            kill(p->pid, SIGTERM);
            gitio_proc_wait(p, NULL);
        }
        kill(rl->pid, SIGTERM);
        gitio_proc_wait(rl, NULL);
    }
    return rc;
}

void gitio_pfirst_free(pfirst *f)
{
    free(f->idx);
    free(f->off);
    free(f->text);
}

/* Remember object i first listed at path; GUTS_ENOMEM. */
static int pfirst_add(pfirst *f, uint32_t i, const char *path)
{
    size_t len = strlen(path) + 1;
    if (f->tlen + len > GITIO_PFIRST_TEXT_MAX) return GUTS_OK;
    if (f->n == f->cap) {
        size_t nc = f->cap ? 2 * f->cap : 1024;
        uint32_t *ni = realloc(f->idx, nc * sizeof *ni);
        if (ni) f->idx = ni;
        size_t *no = ni ? realloc(f->off, nc * sizeof *no) : NULL;
        if (!no) return GUTS_ENOMEM;
        f->off = no;
        f->cap = nc;
    }
    if (f->tlen + len > f->tcap) {
        size_t nc = f->tcap ? 2 * f->tcap : 64 * 1024;
        while (nc < f->tlen + len)
            nc *= 2;
        char *nt = realloc(f->text, nc);
        if (!nt) return GUTS_ENOMEM;
        f->text = nt;
        f->tcap = nc;
    }
    memcpy(f->text + f->tlen, path, len);
    f->idx[f->n] = i;
    f->off[f->n++] = f->tlen;
    f->tlen += len;
    return GUTS_OK;
}

/* Hints from earlier versions: each candidate still without a base is
 * looked up as "PREV:path" for every prev commit (the pushed refs' old
 * targets) in one `git cat-file --batch-check`, whatever the number of
 * prevs, and given what the first prev with an answer holds there when it
 * has the same type. That object is in the store (a prev is a stored
 * ref's target, stored with its closure), so the store can compress
 * against it; a commit git lacks, or a path gone, just yields "missing".
 * It is what git's own push does with the trees of the commits the remote
 * has (pack-objects' preferred bases): a pushed commit's objects are
 * usually loose in git, with no delta base at all. Hints are optional:
 * whatever fails here (a commit git lacks, git itself) leaves fewer. */
void gitio_prev_hints(const char *gitdir, ilist *L, const pfirst *f, const guts_id *prev,
                      size_t nprev)
{
    char *argv[] = {"git",      "-C", (char *)gitdir, "--no-replace-objects", "cat-file",
                    "--batch-check=%(objectname) %(objecttype)", "--buffer", NULL};
    char line[GITIO_PATH_LINE_MAX], hex[GUTS_HEX_LEN + 1], ignore[GUTS_GITIO_ERR_MAX];
    uint8_t *buf = malloc(GITIO_IOBUF);
    /* The queries go through a memory file: cat-file's answers can then be
     * read without a writer thread. Candidates that have a base now are
     * not asked; the answers come in the order asked, prev by prev. */
    int in = buf ? memfd_create("git-queries", MFD_CLOEXEC) : -1;
    FILE *q = in >= 0 ? fdopen(dup(in), "w") : NULL;
    size_t nq = 0;
    for (size_t k = 0; q && k < nprev; k++) {
        guts_id_to_hex(&prev[k], hex);
        for (size_t j = 0; j < f->n; j++)
            if (guts_id_is_zero(&L->o[f->idx[j]].base_id)) {
                fprintf(q, "%s:%s\n", hex, f->text + f->off[j]);
                nq++;
            }
    }
    proc p;
    if (!q || fclose(q) != 0 || lseek(in, 0, SEEK_SET) != 0 || !nq ||
        gitio_proc_start(&p, "git cat-file --batch-check", argv, in, 1, ignore) != GUTS_OK) {
        if (in >= 0) close(in);
        free(buf);
        return;
    }
    close(in);
    rd r = {.fd = p.out, .buf = buf};
    uint8_t *asked = calloc(f->n ? f->n : 1, 1);
    for (size_t j = 0; asked && j < f->n; j++)
        asked[j] = guts_id_is_zero(&L->o[f->idx[j]].base_id);
    for (size_t k = 0; asked && k < nprev; k++) {
        for (size_t j = 0; j < f->n; j++) {
            if (!asked[j]) continue;
            iobj *o = &L->o[f->idx[j]];
            if (gitio_rd_line_cut(&r, line, sizeof line, 1) <= 0) {
                k = nprev;
                break;
            }
            if (!guts_id_is_zero(&o->base_id)) continue; /* an earlier prev had it */
            /* "<id> <type>", or "<query> missing" (or "ambiguous"). */
            guts_id id;
            char *sp = strchr(line, ' ');
            if (!sp || sp - line != GUTS_HEX_LEN || guts_id_from_hex(line, GUTS_HEX_LEN, &id))
                continue;
            int type = guts_otype_parse(sp + 1, strlen(sp + 1));
            if (type == o->type && guts_id_cmp(&id, &o->id) != 0) o->base_id = id;
        }
    }
    free(asked);
    kill(p.pid, SIGTERM); /* done with it, whatever it still has to say */
    gitio_proc_wait(&p, NULL);
    free(buf);
}

/* Object i of the list is named path by rev-list: it becomes the last at
 * that path, and its hint is the one there before when git gave it no base.
 * *prev: that one, or NONE. GUTS_ENOMEM. */
static int hint_at_path(phints *t, ilist *L, uint32_t i, const char *path, uint32_t *prev)
{
    iobj *o = &L->o[i];
    *prev = NONE;
    if (o->type != GUTS_OBJ_TREE && o->type != GUTS_OBJ_BLOB) return GUTS_OK;
    int rc = gitio_phints_swap(t, gitio_path_hash(o->type, path), i, prev);
    if (!rc && guts_id_is_zero(&o->base_id)) o->hint = *prev;
    return rc;
}

int gitio_list_objects(const char *gitdir, const guts_id *tips, size_t ntips,
                       const guts_id *exclude, size_t nexclude, ilist *L, pfirst *firsts,
                       char *err)
{
    proc rl, p;
    char line[GITIO_PATH_LINE_MAX], *path = NULL;
    phints hints = {0};
    int rc = list_start(gitdir, tips, ntips, exclude, nexclude, &rl, &p, err);
    if (rc) return rc;
    rd r = {.fd = p.out, .buf = malloc(GITIO_IOBUF)};
    if (!r.buf) rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    while (!rc) {
        int k = gitio_rd_line_cut(&r, line, ntips ? sizeof line : GITIO_LINE_MAX, ntips != 0);
        if (k == 0) break;
        if (k < 0) {
            rc =
                guts_git_errf(err, k == GUTS_ETOOBIG ? GUTS_EINVAL : GUTS_EIO,
                     "git cat-file --batch-check in %s: %s", gitdir,
                     k == GUTS_ETOOBIG ? "line too long (not a SHA-1 repository?)" : "read failed");
            break;
        }
        if (L->n == L->cap) {
            size_t nc = L->cap ? L->cap * 2 : 4096;
            if (nc > GITIO_OBJECTS_MAX) nc = GITIO_OBJECTS_MAX;
            if (L->n >= nc) {
                rc = guts_git_errf(err, GUTS_ETOOBIG, "%s: more than %u objects", gitdir, GITIO_OBJECTS_MAX);
                break;
            }
            iobj *no = realloc(L->o, nc * sizeof *no);
            if (!no) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
            L->o = no;
            L->cap = nc;
        }
        char copy[101];
        size_t cl = strnlen(line, sizeof copy - 1);
        memcpy(copy, line, cl);
        copy[cl] = 0;
        iobj *o = &L->o[L->n];
        if (gitio_parse_check_line(line, o, ntips ? &path : NULL) != GUTS_OK) {
            rc = guts_git_errf(err, GUTS_EINVAL, "%s: unexpected cat-file line \"%s\"", gitdir, copy);
            break;
        }
        if (ntips && (o->type == GUTS_OBJ_TREE || o->type == GUTS_OBJ_BLOB)) {
            uint32_t prev;
            if (hint_at_path(&hints, L, (uint32_t)L->n, path, &prev)) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
            if (prev == NONE && guts_id_is_zero(&o->base_id) && firsts &&
                pfirst_add(firsts, (uint32_t)L->n, path)) {
                rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory listing %zu objects", L->n);
                break;
            }
        }
        L->n++;
    }
    free(hints.key);
    free(hints.idx);
    free(r.buf);
    if (rc) {
        kill(p.pid, SIGTERM);
        if (rl.pid > 0) kill(rl.pid, SIGTERM);
    }
    int crc = gitio_proc_wait(&p, rc ? NULL : err);
    if (!rc) rc = crc;
    int rrc = gitio_proc_wait(&rl, rc ? NULL : err);
    return rc ? rc : rrc;
}

static const iobj *sort_base;
static int cmp_perm(const void *a, const void *b)
{
    return guts_id_cmp(&sort_base[*(const uint32_t *)a].id, &sort_base[*(const uint32_t *)b].id);
}

/* The list's indexes sorted by id, for list_find; NULL: no memory. */
uint32_t *gitio_list_index(const ilist *L)
{
    uint32_t *perm = malloc((L->n ? L->n : 1) * sizeof *perm);
    if (!perm) return NULL;
    for (size_t i = 0; i < L->n; i++)
        perm[i] = (uint32_t)i;
    sort_base = L->o;
    qsort(perm, L->n, sizeof *perm, cmp_perm);
    return perm;
}

typedef struct list_key {
    const ilist *L;
    const uint32_t *perm;
    const guts_id *id;
} list_key;

static int list_cmp(const void *ctx, size_t i)
{
    const list_key *k = ctx;
    return guts_id_cmp(&k->L->o[k->perm[i]].id, k->id);
}

/* The index of id in the list, or NONE. */
static uint32_t list_find(const ilist *L, const uint32_t *perm, const guts_id *id)
{
    list_key k = {L, perm, id};
    int found;
    size_t i = guts_lower_bound(L->n, list_cmp, &k, &found);
    return found ? perm[i] : NONE;
}

/* Resolve every delta base to an index (perm: gitio_list_index), take the hints
 * that are safe, mark what the store lacks, and return the needed objects
 * in an order where a base precedes what is built on it. */
int gitio_plan_import(guts_repo *repo, ilist *L, const uint32_t *perm, uint32_t **order_out,
                      size_t *nneed_out, char *err)
{
    size_t n = L->n, nneed = 0, k = 0;
    iobj *o = L->o;
    uint32_t *order = NULL, *stack = NULL;
    int rc = GUTS_OK;
    for (size_t i = 0; i < n; i++)
        if (!guts_id_is_zero(&o[i].base_id)) o[i].base = list_find(L, perm, &o[i].base_id);
    /* Hints, for objects no git base names (child is free until below). */
    for (size_t i = 0; i < n; i++)
        if (o[i].base != NONE) o[o[i].base].child = 0;
    for (size_t i = 0; i < n; i++) {
        if (o[i].hint == NONE || !guts_id_is_zero(&o[i].base_id) || o[i].child == 0) continue;
        o[i].base = o[i].hint;
        o[i].base_id = o[o[i].hint].id;
    }
    for (size_t i = 0; i < n; i++)
        o[i].child = NONE;
    /* One read transaction for every lookup, not one each (51,001 of
     * them for the synthetic repository of scripts/bench-store). */
    int held = guts_repo_read_hold(repo) == GUTS_OK;
    for (size_t i = 0; i < n; i++) {
        int h = guts_repo_has(repo, &o[i].id);
        if (h < 0) {
            if (held) guts_repo_read_release(repo);
            return guts_git_errf(err, h, "store lookup failed: %s", guts_strerror(h));
        }
        o[i].need = h == 0;
        nneed += o[i].need;
    }
    if (held) guts_repo_read_release(repo);
    for (size_t i = 0; i < n; i++) {
        uint32_t b = o[i].base;
        if (o[i].need && b != NONE && o[b].need) {
            o[i].sib = o[b].child;
            o[b].child = (uint32_t)i;
        }
    }
    order = malloc((nneed ? nneed : 1) * sizeof *order);
    stack = malloc((nneed ? nneed : 1) * sizeof *stack);
    uint8_t *done = calloc(n ? n : 1, 1);
    if (!order || !stack || !done) {
        rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
        goto out;
    }
    /* Roots in git's pack order, each followed depth-first by its chain. */
    for (size_t i = 0; i < n; i++) {
        uint32_t b = o[i].base;
        if (!o[i].need || (b != NONE && o[b].need)) continue;
        size_t sp = 0;
        stack[sp++] = (uint32_t)i;
        while (sp) {
            uint32_t x = stack[--sp];
            if (done[x]) continue;
            done[x] = 1;
            assert(k < nneed); /* children are needed objects, each visited once */
            order[k++] = x;
            for (uint32_t c = o[x].child; c != NONE; c = o[c].sib)
                if (!done[c] && sp < nneed) stack[sp++] = c;
        }
    }
    /* A delta cycle cannot happen in git; if one did, store those anyway. */
    for (size_t i = 0; i < n && k < nneed; i++)
        if (o[i].need && !done[i]) order[k++] = (uint32_t)i;
    assert(k == nneed);
    *order_out = order;
    *nneed_out = nneed;
    order = NULL;
out:
    free(order);
    free(stack);
    free(done);
    return rc;
}

int gitio_hints_pay(const ilist *L)
{
    size_t n = 0, whole = 0;
    for (size_t i = 0; i < L->n; i++)
        if (L->o[i].type == GUTS_OBJ_TREE || L->o[i].type == GUTS_OBJ_BLOB) {
            n++;
            whole += guts_id_is_zero(&L->o[i].base_id);
        }
    return n && whole * GITIO_HINTS_WHOLE_DIV >= n;
}

/* Import lists every object with `cat-file --batch-all-objects` (which has
 * no names: unreachable objects are stored too), so the names for the path
 * hints come from a `git rev-list --objects --all` run after it; each of
 * its lines is looked up in the list by id. Its order (newest first) is
 * the order the hints follow, as in a push. */
int gitio_import_hints_start(const char *gitdir, proc *rl, char *err)
{
    char *argv[] = {"git",      "-C",        (char *)gitdir, "--no-replace-objects",
                    "rev-list", "--objects", "--all",        NULL};
    return gitio_proc_start(rl, "git rev-list --objects --all", argv, PROC_NULL, 1, err);
}

int gitio_import_hints(ilist *L, const uint32_t *perm, proc *rl, char *err)
{
    char line[GITIO_PATH_LINE_MAX];
    phints hints = {0};
    uint32_t prev;
    int rc = GUTS_OK;
    rd r = {.fd = rl->out, .buf = malloc(GITIO_IOBUF)};
    if (!r.buf) rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory");
    while (!rc) {
        int k = gitio_rd_line_cut(&r, line, sizeof line, 1);
        if (k <= 0) break; /* the end, or a failed read: fewer hints */
        guts_id id;
        uint32_t i;
        if (strlen(line) <= GUTS_HEX_LEN || line[GUTS_HEX_LEN] != ' ' ||
            guts_id_from_hex(line, GUTS_HEX_LEN, &id) || (i = list_find(L, perm, &id)) == NONE)
            continue; /* a commit (no name), or not listed: no hint */
        if (hint_at_path(&hints, L, i, line + GUTS_HEX_LEN + 1, &prev))
            rc = guts_git_errf(err, GUTS_ENOMEM, "out of memory reading names");
    }
    free(hints.key);
    free(hints.idx);
    free(r.buf);
    kill(rl->pid, SIGTERM); /* done with it, whatever it still has to say */
    gitio_proc_wait(rl, NULL);    /* a failed rev-list (a broken ref) only costs hints */
    return rc;
}
