/* sim_opts.c - guts-sim's command line and scenario files.
 *
 * Parsing is strict: every value is checked in full (no trailing bytes, no
 * out-of-range numbers), a mistake is one line on stderr and exit status 2.
 * Durations need a unit (ms, s or m): "300" alone is refused, since seconds
 * and milliseconds are both plausible. The effective options are printed
 * back by sim_opts_replay() as one canonical command, which is what a
 * failing run tells the user to paste.
 *
 * Scenario syntax (docs/simulator.md has the full description):
 *     # comment
 *     end 300s
 *     absent 900-999
 *     at 10s crash 17          at 12s restart 17
 *     at 10s crash-held 50
 *     at 20s join 950,951      at 40s leave 3-5
 *     at 30s partition 0-499 | 500-999
 *     at 60s heal
 *     at 5s write repo0 node 3
 *     at 20s loss 0.3          at 20s dup 0.01      at 20s latency 1ms..20ms
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* LMDB mode opens one environment per repository per node, each a map and
 * two file descriptors: 200 nodes stay far from the default 1024 fds with a
 * few repositories. */
#define SIM_LMDB_NODES_MAX 200
/* A scenario line: far more than any hand-written line needs. */
#define SIM_LINE_MAX 65536

static int fail(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(FILE *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("guts-sim: ", err);
    vfprintf(err, fmt, ap);
    fputc('\n', err);
    va_end(ap);
    return GUTS_EINVAL;
}

/* ---- values -------------------------------------------------------------- */

int sim_parse_duration(const char *s, uint64_t *ms)
{
    if (!s || !isdigit((unsigned char)s[0])) return GUTS_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return GUTS_EINVAL;
    uint64_t mul;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else
        return GUTS_EINVAL;
    if (v > SIM_DURATION_MAX / mul) return GUTS_EINVAL;
    *ms = v * mul;
    return GUTS_OK;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)s[0])) return GUTS_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return GUTS_EINVAL;
    *out = v;
    return GUTS_OK;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v;
    int rc = parse_u64(s, max, &v);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

/* A probability in [0, 1]. */
static int parse_prob(const char *s, double *out)
{
    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.')) return GUTS_EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0 && v <= 1)) return GUTS_EINVAL;
    *out = v;
    return GUTS_OK;
}

/* "1ms..20ms" or "5ms" */
static int parse_latency(const char *s, uint32_t *lo, uint32_t *hi)
{
    char buf[64];
    if (!s || strlen(s) >= sizeof(buf)) return GUTS_EINVAL;
    strcpy(buf, s);
    char *dots = strstr(buf, "..");
    uint64_t a, b;
    if (dots) {
        *dots = 0;
        if (sim_parse_duration(buf, &a) || sim_parse_duration(dots + 2, &b)) return GUTS_EINVAL;
    } else {
        if (sim_parse_duration(buf, &a)) return GUTS_EINVAL;
        b = a;
    }
    /* an hour of one-way latency is no LAN; it also keeps sums small */
    if (a > b || b > 3600000) return GUTS_EINVAL;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return GUTS_OK;
}

/* "30s-60s" */
static int parse_window(const char *s, uint64_t *from, uint64_t *to)
{
    char buf[64];
    if (!s || strlen(s) >= sizeof(buf)) return GUTS_EINVAL;
    strcpy(buf, s);
    char *dash = strchr(buf, '-');
    if (!dash) return GUTS_EINVAL;
    *dash = 0;
    if (sim_parse_duration(buf, from) || sim_parse_duration(dash + 1, to) || *from >= *to)
        return GUTS_EINVAL;
    return GUTS_OK;
}

/* "1000000", "64k", "10M": bytes per second */
static int parse_rate(const char *s, uint64_t *out)
{
    char buf[32];
    if (!s || !*s || strlen(s) >= sizeof(buf)) return GUTS_EINVAL;
    strcpy(buf, s);
    uint64_t mul = 1;
    size_t n = strlen(buf);
    if (buf[n - 1] == 'k' || buf[n - 1] == 'K')
        mul = 1000;
    else if (buf[n - 1] == 'M')
        mul = 1000000;
    if (mul > 1) buf[n - 1] = 0;
    uint64_t v;
    if (parse_u64(buf, UINT64_MAX / mul, &v) || v == 0) return GUTS_EINVAL;
    *out = v * mul;
    return GUTS_OK;
}

/* ---- node lists: "3", "1,5,10-20" ----------------------------------------- */

typedef struct nlist {
    uint32_t *v;
    size_t n, cap;
} nlist;

static int nlist_add(nlist *l, uint32_t x)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        uint32_t *p = realloc(l->v, nc * sizeof(uint32_t));
        if (!p) return GUTS_ENOMEM;
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return GUTS_OK;
}

static int parse_nodes(const char *s, uint32_t nodes, nlist *out)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy) return GUTS_ENOMEM;
    int rc = GUTS_OK;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        uint32_t a, b;
        if (dash) {
            *dash = 0;
            if (parse_u32(tok, UINT32_MAX, &a) || parse_u32(dash + 1, UINT32_MAX, &b) || a > b)
                rc = GUTS_EINVAL;
        } else if (parse_u32(tok, UINT32_MAX, &a)) {
            rc = GUTS_EINVAL;
        } else {
            b = a;
        }
        if (!rc && b >= nodes) rc = GUTS_EINVAL;
        for (uint64_t x = a; !rc && x <= b; x++)
            rc = nlist_add(out, (uint32_t)x);
    }
    free(copy);
    if (!rc && out->n == 0) rc = GUTS_EINVAL;
    return rc;
}

/* ---- actions ---------------------------------------------------------------- */

int sim_opts_add_action(sim_config *cfg, const sim_action *a)
{
    if (cfg->nacts == cfg->capacts) {
        size_t nc = cfg->capacts ? 2 * cfg->capacts : 32;
        sim_action *p = realloc(cfg->acts, nc * sizeof(sim_action));
        if (!p) return GUTS_ENOMEM;
        cfg->acts = p;
        cfg->capacts = nc;
    }
    cfg->acts[cfg->nacts++] = *a;
    return GUTS_OK;
}

/* Split a line into words (in place); returns how many, at most max. */
static size_t words(char *line, char **w, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) break;
        w[n++] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p) *p++ = 0;
    }
    return n;
}

/* Scenario words after "at T": the kind and its arguments. */
static int scenario_at(sim_config *cfg, uint64_t t, char **w, size_t n, uint32_t *next_writer,
                       const char **why)
{
    sim_action a;
    memset(&a, 0, sizeof(a));
    a.t = t;
    const char *k = w[0];
    int rc = GUTS_OK;
    if (!strcmp(k, "crash") || !strcmp(k, "restart") || !strcmp(k, "join") || !strcmp(k, "leave")) {
        a.kind = !strcmp(k, "crash")     ? SA_CRASH
                 : !strcmp(k, "restart") ? SA_RESTART
                 : !strcmp(k, "join")    ? SA_JOIN
                                         : SA_LEAVE;
        nlist l = {0};
        if (n != 2 || parse_nodes(w[1], cfg->nodes, &l)) {
            free(l.v);
            *why = "expected one node list (e.g. 3 or 1,5,10-20) below --nodes";
            return GUTS_EINVAL;
        }
        for (size_t i = 0; i < l.n && !rc; i++) {
            a.node = l.v[i];
            rc = sim_opts_add_action(cfg, &a);
        }
        free(l.v);
        return rc;
    }
    if (!strcmp(k, "crash-held")) {
        a.kind = SA_CRASH_HELD;
        if (n != 2 || parse_u32(w[1], cfg->nodes, &a.node) || a.node == 0) {
            *why = "expected a number of nodes, 1 to --nodes";
            return GUTS_EINVAL;
        }
        return sim_opts_add_action(cfg, &a);
    }
    if (!strcmp(k, "partition")) {
        a.kind = SA_PARTITION;
        a.group = calloc(cfg->nodes, sizeof(uint32_t));
        if (!a.group) return GUTS_ENOMEM;
        uint32_t g = 0;
        size_t groups = 0;
        for (size_t i = 1; i < n && !rc; i++) {
            if (!strcmp(w[i], "|")) {
                if (++g >= SIM_GROUPS_MAX) rc = GUTS_EINVAL;
                continue;
            }
            nlist l = {0};
            rc = parse_nodes(w[i], cfg->nodes, &l);
            for (size_t j = 0; j < l.n; j++)
                a.group[l.v[j]] = g;
            free(l.v);
            groups = g + 1;
        }
        if (rc || groups < 2) {
            free(a.group);
            *why = "expected node lists separated by ' | ' (at least two groups)";
            return GUTS_EINVAL;
        }
        rc = sim_opts_add_action(cfg, &a);
        if (rc) free(a.group);
        return rc;
    }
    if (!strcmp(k, "heal")) {
        if (n != 1) {
            *why = "heal takes no argument";
            return GUTS_EINVAL;
        }
        a.kind = SA_HEAL;
        return sim_opts_add_action(cfg, &a);
    }
    if (!strcmp(k, "write")) {
        uint32_t r;
        if (n != 4 || strncmp(w[1], "repo", 4) != 0 || parse_u32(w[1] + 4, UINT32_MAX, &r) ||
            r >= cfg->repos || strcmp(w[2], "node") != 0 ||
            parse_u32(w[3], cfg->nodes - 1, &a.node)) {
            *why = "expected: write repoR node I (R below --repos, I below --nodes)";
            return GUTS_EINVAL;
        }
        a.kind = SA_WRITE;
        a.repo = r;
        a.writer = (*next_writer)++;
        return sim_opts_add_action(cfg, &a);
    }
    if (!strcmp(k, "loss") || !strcmp(k, "dup")) {
        a.kind = !strcmp(k, "loss") ? SA_LOSS : SA_DUP;
        if (n != 2 || parse_prob(w[1], &a.value)) {
            *why = "expected a probability in [0, 1]";
            return GUTS_EINVAL;
        }
        return sim_opts_add_action(cfg, &a);
    }
    if (!strcmp(k, "latency")) {
        a.kind = SA_LATENCY;
        if (n != 2 || parse_latency(w[1], &a.lat_min, &a.lat_max)) {
            *why = "expected a latency like 1ms..20ms";
            return GUTS_EINVAL;
        }
        return sim_opts_add_action(cfg, &a);
    }
    *why = "unknown action (crash crash-held restart join leave partition heal write loss dup "
           "latency)";
    return GUTS_EINVAL;
}

static int scenario_read(sim_config *cfg, int duration_given, FILE *err)
{
    FILE *f = fopen(cfg->scenario, "r");
    if (!f) return fail(err, "%s: cannot open scenario", cfg->scenario);
    char *line = malloc(SIM_LINE_MAX);
    if (!line) {
        fclose(f);
        return GUTS_ENOMEM;
    }
    /* scenario writers are numbered after the --writers ones */
    uint32_t next_writer = cfg->writers;
    int rc = GUTS_OK;
    unsigned lineno = 0;
    while (!rc && fgets(line, SIM_LINE_MAX, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == SIM_LINE_MAX - 1 && line[len - 1] != '\n') {
            rc = fail(err, "%s:%u: line too long", cfg->scenario, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        line[strcspn(line, "\r\n")] = 0;
        char *w[SIM_GROUPS_MAX * 2 + 8];
        size_t n = words(line, w, sizeof(w) / sizeof(w[0]));
        if (n == 0) continue;
        const char *why = NULL;
        if (!strcmp(w[0], "end")) {
            uint64_t d;
            if (n != 2 || sim_parse_duration(w[1], &d) || d == 0)
                why = "expected: end DURATION (e.g. end 300s)";
            else if (!duration_given)
                cfg->duration = d;
        } else if (!strcmp(w[0], "absent")) {
            nlist l = {0};
            if (n != 2 || parse_nodes(w[1], cfg->nodes, &l)) {
                why = "expected: absent NODES (e.g. absent 900-999)";
            } else {
                for (size_t i = 0; i < l.n && !rc; i++) {
                    uint32_t *p = realloc(cfg->absent, (cfg->nabsent + 1) * sizeof(uint32_t));
                    if (!p) {
                        rc = GUTS_ENOMEM;
                        break;
                    }
                    cfg->absent = p;
                    cfg->absent[cfg->nabsent++] = l.v[i];
                }
            }
            free(l.v);
        } else if (!strcmp(w[0], "at")) {
            uint64_t t;
            if (n < 3 || sim_parse_duration(w[1], &t))
                why = "expected: at DURATION ACTION ...";
            else {
                int r = scenario_at(cfg, t, w + 2, n - 2, &next_writer, &why);
                if (r && r != GUTS_EINVAL) rc = r;
            }
        } else {
            why = "expected a line starting with at, end or absent";
        }
        if (why) rc = fail(err, "%s:%u: %s", cfg->scenario, lineno, why);
    }
    if (!rc && ferror(f)) rc = fail(err, "%s: read error", cfg->scenario);
    free(line);
    fclose(f);
    return rc;
}

/* ---- the command line -------------------------------------------------------- */

void sim_opts_usage(FILE *out)
{
    fputs("usage: guts-sim [--nodes N] [--seed S] [--loss P] [--dup P] [--corrupt P]\n"
          "                [--latency 1ms..20ms]\n"
          "                [--repos R] [--objects K] [--writers W] [--partition 30s-60s]\n"
          "                [--crash-rate P] [--duration 300s] [--faults-until T]\n"
          "                [--write-every T] [--domains D] [--segments S] [--no-multicast]\n"
          "                [--peers K] [--star] [--bandwidth BYTES/s]\n"
          "                [--interval T] [--ramp T] [--scenario FILE] [--lmdb] [--json]\n"
          "                [--broken-merge] [--until-converged] [--verbose] [--progress]\n"
          "Runs N guts protocol cores on a virtual clock and network; see docs/simulator.md.\n"
          "Exit status: 0 converged with no violation, 1 otherwise, 2 usage error.\n",
          out);
}

static const char *const flags_with_value[] = {
    "--nodes",        "--seed",        "--loss",     "--dup",       "--corrupt",    "--latency",
    "--repos",        "--objects",     "--writers",  "--partition", "--crash-rate", "--duration",
    "--faults-until", "--write-every", "--domains",  "--bandwidth", "--interval",   "--ramp",
    "--scenario",     "--peers",       "--segments", NULL};

int sim_opts_parse(int argc, char **argv, sim_config *cfg, int *help, FILE *err)
{
    memset(cfg, 0, sizeof(*cfg));
    *help = 0;
    cfg->nodes = 10;
    cfg->seed = 1;
    cfg->lat_min = 1;
    cfg->lat_max = 5;
    cfg->repos = 1;
    cfg->objects = 30;
    cfg->writers = 1;
    cfg->duration = 60000;
    cfg->write_every = 5000;
    cfg->domains = 1;
    cfg->ramp = 1000;
    cfg->segments = 1;
    int duration_given = 0, faults_given = 0, ramp_given = 0, seeds_given = 0;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = NULL;
        char name[32];
        char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) == 0 && eq && (size_t)(eq - arg) < sizeof(name)) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            val = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg);
        }
        int takes = 0;
        for (const char *const *f = flags_with_value; *f; f++)
            takes |= strcmp(name, *f) == 0;
        if (takes && !val) {
            if (i + 1 >= argc) return fail(err, "%s needs a value", name);
            val = argv[++i];
        } else if (!takes && val) {
            return fail(err, "%s takes no value", name);
        }
        int bad = 0;
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            *help = 1;
            return GUTS_OK;
        } else if (!strcmp(name, "--nodes"))
            bad = parse_u32(val, SIM_NODES_MAX, &cfg->nodes) || cfg->nodes == 0;
        else if (!strcmp(name, "--seed"))
            bad = parse_u64(val, UINT64_MAX, &cfg->seed);
        else if (!strcmp(name, "--loss"))
            bad = parse_prob(val, &cfg->loss) || cfg->loss >= 1;
        else if (!strcmp(name, "--corrupt"))
            bad = parse_prob(val, &cfg->corrupt);
        else if (!strcmp(name, "--dup"))
            bad = parse_prob(val, &cfg->dup);
        else if (!strcmp(name, "--latency"))
            bad = parse_latency(val, &cfg->lat_min, &cfg->lat_max);
        else if (!strcmp(name, "--repos"))
            bad = parse_u32(val, SIM_REPOS_MAX, &cfg->repos);
        else if (!strcmp(name, "--objects"))
            bad = parse_u32(val, SIM_OBJECTS_MAX, &cfg->objects);
        else if (!strcmp(name, "--writers"))
            bad = parse_u32(val, SIM_WRITERS_MAX, &cfg->writers);
        else if (!strcmp(name, "--partition")) {
            bad = parse_window(val, &cfg->part_from, &cfg->part_to);
            cfg->has_partition = 1;
        } else if (!strcmp(name, "--crash-rate")) {
            char *end;
            errno = 0;
            cfg->crash_rate = strtod(val, &end);
            /* more than one crash a second per node is no longer a LAN */
            bad = errno || *end || !isdigit((unsigned char)val[0]) || !(cfg->crash_rate >= 0) ||
                  cfg->crash_rate > 1;
        } else if (!strcmp(name, "--duration")) {
            bad = sim_parse_duration(val, &cfg->duration) || cfg->duration == 0;
            duration_given = 1;
        } else if (!strcmp(name, "--faults-until")) {
            bad = sim_parse_duration(val, &cfg->faults_until);
            faults_given = 1;
        } else if (!strcmp(name, "--write-every"))
            bad = sim_parse_duration(val, &cfg->write_every) || cfg->write_every < 10;
        else if (!strcmp(name, "--domains"))
            bad = parse_u32(val, SIM_NODES_MAX, &cfg->domains) || cfg->domains == 0;
        else if (!strcmp(name, "--segments"))
            bad = parse_u32(val, SIM_NODES_MAX, &cfg->segments) || cfg->segments == 0;
        else if (!strcmp(name, "--peers")) {
            bad = parse_u32(val, SIM_SEEDS_MAX, &cfg->seeds);
            seeds_given = 1;
        } else if (!strcmp(name, "--star"))
            cfg->star = 1;
        else if (!strcmp(name, "--no-multicast"))
            cfg->no_multicast = 1;
        else if (!strcmp(name, "--bandwidth"))
            bad = parse_rate(val, &cfg->bandwidth);
        else if (!strcmp(name, "--interval")) {
            uint64_t v;
            bad = sim_parse_duration(val, &v) || v == 0 || v > 600000;
            cfg->interval_ms = (uint32_t)v;
        } else if (!strcmp(name, "--ramp")) {
            bad = sim_parse_duration(val, &cfg->ramp);
            ramp_given = 1;
        } else if (!strcmp(name, "--scenario"))
            cfg->scenario = val;
        else if (!strcmp(name, "--lmdb"))
            cfg->lmdb = 1;
        else if (!strcmp(name, "--json"))
            cfg->json = 1;
        else if (!strcmp(name, "--broken-merge"))
            cfg->broken_merge = 1;
        else if (!strcmp(name, "--until-converged"))
            cfg->until_converged = 1;
        else if (!strcmp(name, "--progress"))
            cfg->progress = 1;
        else if (!strcmp(name, "--verbose"))
            cfg->verbose = 1;
        else
            return fail(err, "unknown option %s (see --help)", arg);
        if (bad) return fail(err, "bad value for %s: '%s'", name, val);
    }
    if (cfg->scenario) {
        int rc = scenario_read(cfg, duration_given, err);
        if (rc) return rc;
    }
    (void)ramp_given;
    if (!faults_given) cfg->faults_until = cfg->duration / 2;
    if (cfg->faults_until > cfg->duration)
        return fail(err, "--faults-until is after the end of the run");
    if (cfg->has_partition && cfg->part_to > cfg->duration)
        return fail(err, "--partition heals after the end of the run");
    if (cfg->ramp >= cfg->duration) return fail(err, "--ramp must end before the run does");
    if (cfg->domains > cfg->nodes) return fail(err, "--domains exceeds --nodes");
    if (cfg->segments > cfg->nodes) return fail(err, "--segments exceeds --nodes");
    if (cfg->segments > 1 && cfg->domains > 1)
        return fail(err, "--segments and --domains are two topologies: choose one");
    /* without multicast a node knows the group only through its seeds: one
     * each, as a user would give guts-node one --peer */
    if (!seeds_given) cfg->seeds = cfg->no_multicast ? 1 : 0;
    if (cfg->no_multicast && cfg->seeds == 0)
        return fail(err, "--no-multicast needs --peers of at least 1 (nodes would know nobody)");
    if (cfg->star && cfg->seeds == 0) return fail(err, "--star needs --peers of at least 1");
    if (cfg->lmdb && cfg->nodes > SIM_LMDB_NODES_MAX)
        return fail(err, "--lmdb is for small clusters (at most %d nodes)", SIM_LMDB_NODES_MAX);
    if (cfg->writers && cfg->repos == 0) return fail(err, "--writers needs --repos of at least 1");
    return GUTS_OK;
}

void sim_opts_free(sim_config *cfg)
{
    for (size_t i = 0; i < cfg->nacts; i++)
        free(cfg->acts[i].group);
    free(cfg->acts);
    free(cfg->absent);
    cfg->acts = NULL;
    cfg->absent = NULL;
    cfg->nacts = cfg->capacts = cfg->nabsent = 0;
}

static void put_dur(FILE *out, const char *flag, uint64_t ms)
{
    if (ms % 1000 == 0)
        fprintf(out, " %s %" PRIu64 "s", flag, ms / 1000);
    else
        fprintf(out, " %s %" PRIu64 "ms", flag, ms);
}

/* Shortest %g that reads back as the same double. */
static void put_double(FILE *out, const char *flag, double v)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fprintf(out, " %s %s", flag, buf);
}

void sim_opts_replay(const sim_config *c, FILE *out)
{
    fprintf(out, "guts-sim --nodes %" PRIu32 " --seed %" PRIu64, c->nodes, c->seed);
    put_double(out, "--loss", c->loss);
    put_double(out, "--dup", c->dup);
    if (c->corrupt > 0) put_double(out, "--corrupt", c->corrupt);
    fprintf(out, " --latency %" PRIu32 "ms..%" PRIu32 "ms", c->lat_min, c->lat_max);
    fprintf(out, " --repos %" PRIu32 " --objects %" PRIu32 " --writers %" PRIu32, c->repos,
            c->objects, c->writers);
    if (c->has_partition) {
        int secs = c->part_from % 1000 == 0 && c->part_to % 1000 == 0;
        uint64_t div = secs ? 1000 : 1;
        const char *u = secs ? "s" : "ms";
        fprintf(out, " --partition %" PRIu64 "%s-%" PRIu64 "%s", c->part_from / div, u,
                c->part_to / div, u);
    }
    put_double(out, "--crash-rate", c->crash_rate);
    put_dur(out, "--duration", c->duration);
    put_dur(out, "--faults-until", c->faults_until);
    put_dur(out, "--write-every", c->write_every);
    put_dur(out, "--ramp", c->ramp);
    if (c->domains > 1) fprintf(out, " --domains %" PRIu32, c->domains);
    if (c->segments > 1) fprintf(out, " --segments %" PRIu32, c->segments);
    if (c->no_multicast) fputs(" --no-multicast", out);
    if (c->seeds || c->no_multicast) fprintf(out, " --peers %" PRIu32, c->seeds);
    if (c->star) fputs(" --star", out);
    if (c->bandwidth) fprintf(out, " --bandwidth %" PRIu64, c->bandwidth);
    if (c->interval_ms) put_dur(out, "--interval", c->interval_ms);
    if (c->scenario) fprintf(out, " --scenario %s", c->scenario);
    if (c->lmdb) fputs(" --lmdb", out);
    if (c->broken_merge) fputs(" --broken-merge", out);
    if (c->until_converged) fputs(" --until-converged", out);
    if (c->json) fputs(" --json", out);
}
