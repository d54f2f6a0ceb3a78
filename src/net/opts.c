/* opts.c - guts-node's command line.
 *
 * Strict: every option is known, every value is checked, and the first
 * problem is reported as one line naming the option, so a typo in a service
 * file fails at start instead of silently running with defaults. Addresses
 * are IPv4 (A.B.C.D:PORT) or IPv6 in brackets ([ADDR]:PORT), a link-local
 * one with its interface ([fe80::1%eth0]:PORT); a host name resolves to its
 * first address. --group is given per family: each replaces the default
 * group of its own family.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

const char *guts_net_usage(void)
{
    return "usage: guts-node [--data DIR] [--iface NAME]... [--group ADDR:PORT]...\n"
           "                 [--listen ADDR:PORT] [--interval-ms N] [--peer HOST:PORT]...\n"
           "                 [--log-level error|warn|info|debug] [--key-file FILE]\n"
           "                 [--repos PATTERN]... [--max-dgram-rate N] [--max-conn-rate N]\n"
           "                 [--max-frame BYTES] [--max-object BYTES] [--max-sessions N]\n"
           "                 [--max-remote-repos N] [--max-peer-repos N]\n"
           "                 [--max-learned-peers N] [--on-event CMD]...\n"
           "                 [--http ADDR:PORT|off] [--http-repos PATTERN]...\n"
           "  --data DIR         data dir (default $GUTS_DATA, else ~/.local/share/guts)\n"
           "  --iface NAME       join the groups only on this interface (repeatable;\n"
           "                     default: every one up with MULTICAST, loopback only\n"
           "                     when no other is; followed as they come and go)\n"
           "  --group ADDR:PORT  multicast group of its family (defaults " GUTS_NET_GROUP_DEFAULT ":7171\n"
           "                     and [" GUTS_NET_GROUP6_DEFAULT "]:7171, both joined)\n"
           "  --listen ADDR:PORT TCP streams and unicast datagrams (default [::]:0: both\n"
           "                     families; IPv6 as [ADDR]:PORT, [fe80::1%IFACE]:PORT)\n"
           "  --interval-ms N    base announce interval (default 1000)\n"
           "  --peer HOST:PORT   also announce by unicast to a peer's --listen address\n"
           "  --log-level L      error, warn, info (default) or debug\n"
           "  --key-file FILE    cluster key (from guts keygen): seal every datagram and\n"
           "                     stream; without it the node runs open\n"
           "  --repos PATTERN    take a repository a peer announces only if OWNER/NAME\n"
           "                     matches this shell glob (repeatable; default: all)\n"
           "  --max-dgram-rate N datagrams per second per source address (default 50,\n"
           "                     burst 2x; 0: off)\n"
           "  --max-conn-rate N  new connections per second per source address (default\n"
           "                     10, burst 2x; 0: off)\n"
           "  --max-frame BYTES  largest stream frame taken or sent (default 4194304;\n"
           "                     65536..67108864; keep it equal on every node)\n"
           "  --max-object BYTES largest object taken from a peer; larger ones are\n"
           "                     skipped (default and most 1073741824; at least 1024)\n"
           "  --max-sessions N   pulls at once, and as many serves (default 4; 1..16)\n"
           "  --max-remote-repos N  repositories announced by peers and not stored yet\n"
           "                     that the node tracks (default 4096; 1..65536)\n"
           "  --max-peer-repos N of those, announced by one peer (default 1024; 1..65536)\n"
           "  --max-learned-peers N  addresses kept from peer exchange (default 32;\n"
           "                     1..1024)\n"
           "  --on-event CMD     run CMD (a program and its arguments split at spaces, no\n"
           "                     shell) for each event: peer_joined, peer_left,\n"
           "                     repo_added, ref_updated, conflict, pull_failed; the event\n"
           "                     in GUTS_* variables and as a JSON line on stdin; one at\n"
           "                     a time, 10 s each, 64 queued (repeatable, up to 8)\n"
           "  --http ADDR:PORT   status page, /api/status and /metrics (default\n"
           "                     " GUTS_NET_HTTP_DEFAULT "; port 0: any free one; off: none); git\n"
           "                     clients clone and fetch http://ADDR:PORT/OWNER/NAME there\n"
           "  --http-repos PATTERN  serve to git clients only the repositories whose\n"
           "                     OWNER/NAME matches this shell glob (repeatable;\n"
           "                     default: every one the node holds)\n"
           "  --git-packs-max MIB  disk kept for clone packs in DATA/git-packs, the least\n"
           "                     recently served removed first (default 1024)\n";
}

const char *guts_net_addr_str(const guts_net_sa *addr, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?", zone[IF_NAMESIZE + 2] = "";
    if (addr->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &addr->in6.sin6_addr, ip, sizeof ip);
        char name[IF_NAMESIZE];
        if (addr->in6.sin6_scope_id) {
            if (if_indextoname(addr->in6.sin6_scope_id, name))
                snprintf(zone, sizeof zone, "%%%s", name);
            else
                snprintf(zone, sizeof zone, "%%%u", (unsigned)addr->in6.sin6_scope_id);
        }
        snprintf(buf, len, "[%s%s]:%u", ip, zone, (unsigned)ntohs(addr->in6.sin6_port));
        return buf;
    }
    inet_ntop(AF_INET, &addr->in.sin_addr, ip, sizeof ip);
    snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(addr->in.sin_port));
    return buf;
}

socklen_t guts_net_sa_len(const guts_net_sa *addr)
{
    return addr->sa.sa_family == AF_INET6 ? sizeof addr->in6 : sizeof addr->in;
}

int guts_net_sa_eq(const guts_net_sa *a, const guts_net_sa *b)
{
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET6)
        return a->in6.sin6_port == b->in6.sin6_port &&
               a->in6.sin6_scope_id == b->in6.sin6_scope_id &&
               memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
    return a->in.sin_port == b->in.sin_port && a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
}

uint64_t guts_net_sa_key(const guts_net_sa *addr)
{
    if (addr->sa.sa_family != AF_INET6) return addr->in.sin_addr.s_addr;
    /* FNV-1a over the address and zone, top bit set: IPv4 keys are < 2^32 */
    uint64_t h = 0xcbf29ce484222325ULL;
    const uint8_t *p = addr->in6.sin6_addr.s6_addr;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h = (h ^ addr->in6.sin6_scope_id) * 0x100000001b3ULL;
    return h | (1ULL << 63);
}

uint16_t guts_net_sa_port(const guts_net_sa *addr)
{
    return addr->sa.sa_family == AF_INET6 ? addr->in6.sin6_port : addr->in.sin_port;
}

void guts_net_sa_set_port(guts_net_sa *addr, uint16_t port)
{
    *(addr->sa.sa_family == AF_INET6 ? &addr->in6.sin6_port : &addr->in.sin_port) = port;
}

int guts_net_sa_any(const guts_net_sa *addr)
{
    if (addr->sa.sa_family == AF_INET6) return IN6_IS_ADDR_UNSPECIFIED(&addr->in6.sin6_addr);
    return addr->in.sin_addr.s_addr == htonl(INADDR_ANY);
}

void guts_net_sa_unmap(guts_net_sa *addr)
{
    if (addr->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&addr->in6.sin6_addr)) return;
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = addr->in6.sin6_port};
    memcpy(&in.sin_addr, addr->in6.sin6_addr.s6_addr + 12, 4);
    memset(addr, 0, sizeof *addr);
    addr->in = in;
}

int guts_net_parse_addr(const char *s, int port_zero_ok, guts_net_sa *out, const char **why)
{
    *why = NULL;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == '\0') return GUTS_EINVAL;
    char host[256];
    size_t hl = (size_t)(colon - s);
    int bracket = s[0] == '[';
    if (bracket) {
        /* [IPV6]:PORT: the brackets close right before the port's colon */
        if (hl < 3 || s[hl - 1] != ']') return GUTS_EINVAL;
        s++;
        hl -= 2;
    }
    if (hl >= sizeof host) return GUTS_EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '-' || colon[1] == '+' || port > 65535 ||
        (port == 0 && !port_zero_ok))
        return GUTS_EINVAL;
    memset(out, 0, sizeof *out);
    if (bracket) {
        char *pct = strchr(host, '%');
        unsigned zone = 0;
        if (pct) {
            *pct++ = '\0';
            unsigned long z = strtoul(pct, &end, 10);
            if (*pct && !*end && pct[0] != '-' && pct[0] != '+' && z <= UINT32_MAX)
                zone = (unsigned)z;
            else
                zone = if_nametoindex(pct);
            if (!*pct || zone == 0) return GUTS_EINVAL;
        }
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons((uint16_t)port);
        out->in6.sin6_scope_id = zone;
        if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) != 1) return GUTS_EINVAL;
        /* a link-local address means nothing without its interface */
        if (IN6_IS_ADDR_LINKLOCAL(&out->in6.sin6_addr) && !zone) return GUTS_EINVAL;
        return 0;
    }
    if (strchr(host, ':')) return GUTS_EINVAL; /* IPv6 needs the brackets */
    out->in.sin_family = AF_INET;
    out->in.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->in.sin_addr) == 1) return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, NULL, &hints, &res);
    if (g != 0 || !res) {
        *why = g != 0 ? gai_strerror(g) : "no address";
        return GUTS_ENOTFOUND;
    }
    if (res->ai_family == AF_INET6 && res->ai_addrlen <= sizeof out->in6) {
        memcpy(&out->in6, res->ai_addr, res->ai_addrlen);
        out->in6.sin6_port = htons((uint16_t)port);
    } else {
        out->in.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    }
    freeaddrinfo(res);
    guts_net_sa_unmap(out);
    return 0;
}

int guts_net_http_repo_served(const guts_net_opts *o, const char *key)
{
    if (o->nhttp_repos == 0) return 1;
    for (size_t i = 0; i < o->nhttp_repos; i++)
        if (fnmatch(o->http_repos[i], key, 0) == 0) return 1;
    return 0;
}

int guts_net_repo_wanted(void *opts, const char *key)
{
    const guts_net_opts *o = opts;
    if (o->nrepos == 0) return 1;
    for (size_t i = 0; i < o->nrepos; i++)
        if (fnmatch(o->repos[i], key, 0) == 0) return 1;
    return 0;
}

/* A decimal count in [min, max]: 0 or GUTS_EINVAL. */
static int parse_num(const char *v, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || !*v || *end || v[0] == '-' || v[0] == '+' || n < min || n > max)
        return GUTS_EINVAL;
    *out = n;
    return 0;
}

/* The byte and count limits, in the order of their option codes. */
struct range {
    const char *name;
    unsigned long long min, max;
};
static const struct range ranges[] = {
    {"--max-frame", GUTS_NET_FRAME_FLAG_MIN, GUTS_NET_FRAME_FLAG_MAX},
    {"--max-object", GUTS_NET_OBJECT_FLAG_MIN, GUTS_OBJ_MAX_DEFAULT},
    {"--max-sessions", 1, GUTS_NET_SESSIONS_FLAG_MAX},
    {"--max-remote-repos", 1, GUTS_NET_REPOS_FLAG_MAX},
    {"--max-peer-repos", 1, GUTS_NET_REPOS_FLAG_MAX},
    {"--max-learned-peers", 1, GUTS_CORE_LEARNED_MAX},
    {"--git-packs-max", 1, GUTS_NET_GIT_PACKS_FLAG_MAX},
};

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return GUTS_EINVAL;
}

/* An address option that failed: a name that did not resolve says so with
 * the resolver's words (a typo and a dead DNS server read differently);
 * anything else is the wrong shape. */
static int fail_addr(char *err, size_t errlen, const char *opt, const char *shape, const char *v,
                     const char *why)
{
    if (why)
        snprintf(err, errlen, "%s: cannot resolve the host of '%s': %s", opt, v, why);
    else
        snprintf(err, errlen, "%s: expected %s, got '%s'", opt, shape, v);
    return GUTS_EINVAL;
}

int guts_net_opts_parse(int argc, char **argv, const char *env_data, const char *home,
                        guts_net_opts *out, char *err, size_t errlen)
{
    const char *why;
    enum {
        O_DATA = 1,
        O_IFACE,
        O_GROUP,
        O_LISTEN,
        O_INTERVAL,
        O_PEER,
        O_LOG,
        O_KEY,
        O_REPOS,
        O_DGRAM_RATE,
        O_CONN_RATE,
        O_FRAME,
        O_OBJECT,
        O_SESSIONS,
        O_REMOTE_REPOS,
        O_PEER_REPOS,
        O_LEARNED,
        O_GIT_PACKS,
        O_HOOK,
        O_HTTP,
        O_HTTP_REPOS,
        O_HELP
    };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, O_DATA},
        {"iface", required_argument, NULL, O_IFACE},
        {"group", required_argument, NULL, O_GROUP},
        {"listen", required_argument, NULL, O_LISTEN},
        {"interval-ms", required_argument, NULL, O_INTERVAL},
        {"peer", required_argument, NULL, O_PEER},
        {"log-level", required_argument, NULL, O_LOG},
        {"key-file", required_argument, NULL, O_KEY},
        {"repos", required_argument, NULL, O_REPOS},
        {"max-dgram-rate", required_argument, NULL, O_DGRAM_RATE},
        {"max-conn-rate", required_argument, NULL, O_CONN_RATE},
        {"max-frame", required_argument, NULL, O_FRAME},
        {"max-object", required_argument, NULL, O_OBJECT},
        {"max-sessions", required_argument, NULL, O_SESSIONS},
        {"max-remote-repos", required_argument, NULL, O_REMOTE_REPOS},
        {"max-peer-repos", required_argument, NULL, O_PEER_REPOS},
        {"max-learned-peers", required_argument, NULL, O_LEARNED},
        {"on-event", required_argument, NULL, O_HOOK},
        {"http", required_argument, NULL, O_HTTP},
        {"http-repos", required_argument, NULL, O_HTTP_REPOS},
        {"git-packs-max", required_argument, NULL, O_GIT_PACKS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(out, 0, sizeof *out);
    out->group4.in.sin_family = AF_INET;
    out->group4.in.sin_port = htons(GUTS_NET_GROUP_PORT_DEFAULT);
    inet_pton(AF_INET, GUTS_NET_GROUP_DEFAULT, &out->group4.in.sin_addr);
    out->group6.in6.sin6_family = AF_INET6;
    out->group6.in6.sin6_port = htons(GUTS_NET_GROUP_PORT_DEFAULT);
    inet_pton(AF_INET6, GUTS_NET_GROUP6_DEFAULT, &out->group6.in6.sin6_addr);
    out->listen.in6.sin6_family = AF_INET6; /* [::]:0, both families */
    out->interval_ms = GUTS_NET_INTERVAL_DEFAULT_MS;
    out->log_level = GUTS_LOG_INFO;
    out->max_dgram_rate = GUTS_NET_DGRAM_RATE_DEFAULT;
    out->max_conn_rate = GUTS_NET_CONN_RATE_DEFAULT;
    out->max_frame = GUTS_FRAME_MAX_DEFAULT;
    out->max_object = GUTS_OBJ_MAX_DEFAULT;
    out->max_sessions = GUTS_CORE_SESSIONS_DEFAULT;
    out->max_remote_repos = GUTS_CORE_REMOTE_REPOS_DEFAULT;
    out->max_peer_repos = GUTS_CORE_PEER_REPOS_DEFAULT;
    out->max_learned = GUTS_CORE_LEARNED_DEFAULT;
    out->http_on = 1;
    if (guts_net_parse_addr(GUTS_NET_HTTP_DEFAULT, 0, &out->http, &why) != 0)
        return fail(err, errlen, "--http: bad default%s%s", "", "");
    int have_data = 0;

    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const char *v = optarg;
        switch (c) {
        case O_DATA:
            if (!*v || strlen(v) >= sizeof out->data)
                return fail(err, errlen, "--data: bad path '%s'%s", v, "");
            strcpy(out->data, v);
            have_data = 1;
            break;
        case O_IFACE:
            if (out->nifaces == GUTS_NET_IFACES_MAX)
                return fail(err, errlen, "--iface: at most 16 interfaces (at '%s')%s", v, "");
            if (!*v || strlen(v) >= sizeof out->ifaces[0])
                return fail(err, errlen, "--iface: bad interface name '%s'%s", v, "");
            /* a typo fails here; one that goes away later is left, and
             * joined again when it comes back */
            if (if_nametoindex(v) == 0)
                return fail(err, errlen, "--iface: no interface '%s'%s", v, "");
            strcpy(out->ifaces[out->nifaces++], v);
            break;
        case O_GROUP: {
            guts_net_sa g;
            if (guts_net_parse_addr(v, 0, &g, &why) != 0 ||
                (g.sa.sa_family == AF_INET ? !IN_MULTICAST(ntohl(g.in.sin_addr.s_addr))
                                           : !IN6_IS_ADDR_MULTICAST(&g.in6.sin6_addr)))
                return fail_addr(err, errlen, "--group", "MULTICAST-ADDR:PORT or [ADDR]:PORT",
                                 v, why);
            *(g.sa.sa_family == AF_INET ? &out->group4 : &out->group6) = g;
            break;
        }
        case O_LISTEN:
            if (guts_net_parse_addr(v, 1, &out->listen, &why) != 0 ||
                (out->listen.sa.sa_family == AF_INET
                     ? IN_MULTICAST(ntohl(out->listen.in.sin_addr.s_addr))
                     : IN6_IS_ADDR_MULTICAST(&out->listen.in6.sin6_addr)))
                return fail_addr(err, errlen, "--listen", "ADDR:PORT or [ADDR]:PORT", v, why);
            break;
        case O_INTERVAL: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(v, &end, 10);
            if (errno || !*v || *end || v[0] == '-' || n < GUTS_NET_INTERVAL_MIN_MS ||
                n > GUTS_NET_INTERVAL_MAX_MS)
                return fail(err, errlen, "--interval-ms: expected 10..3600000, got '%s'%s", v, "");
            out->interval_ms = (unsigned)n;
            break;
        }
        case O_PEER:
            if (out->npeers == GUTS_NET_PEERS_MAX)
                return fail(err, errlen, "--peer: at most 64 peers (at '%s')%s", v, "");
            if (guts_net_parse_addr(v, 0, &out->peers[out->npeers], &why) != 0)
                return fail_addr(err, errlen, "--peer", "HOST:PORT or [ADDR]:PORT", v, why);
            out->npeers++;
            break;
        case O_LOG:
            out->log_level = guts_net_log_level_parse(v);
            if (out->log_level < 0)
                return fail(err, errlen, "--log-level: expected error|warn|info|debug, got '%s'%s",
                            v, "");
            break;
        case O_KEY:
            if (!*v || strlen(v) >= sizeof out->key_file)
                return fail(err, errlen, "--key-file: bad path '%s'%s", v, "");
            strcpy(out->key_file, v);
            break;
        case O_HOOK:
            if (out->nhooks == GUTS_NET_HOOKS_MAX)
                return fail(err, errlen, "--on-event: at most 8 hooks (at '%s')%s", v, "");
            if (!*v || *v == ' ' || strlen(v) >= GUTS_NET_HOOK_CMD_MAX)
                return fail(err, errlen, "--on-event: bad command '%s'%s", v, "");
            strcpy(out->hooks[out->nhooks++], v);
            break;
        case O_REPOS:
            if (out->nrepos == GUTS_NET_REPOS_MAX)
                return fail(err, errlen, "--repos: at most 64 patterns (at '%s')%s", v, "");
            if (!*v || strlen(v) > GUTS_NET_REPO_PATTERN_MAX)
                return fail(err, errlen, "--repos: bad pattern '%s'%s", v, "");
            strcpy(out->repos[out->nrepos++], v);
            break;
        case O_HTTP_REPOS:
            if (out->nhttp_repos == GUTS_NET_REPOS_MAX)
                return fail(err, errlen, "--http-repos: at most 64 patterns (at '%s')%s", v, "");
            if (!*v || strlen(v) > GUTS_NET_REPO_PATTERN_MAX)
                return fail(err, errlen, "--http-repos: bad pattern '%s'%s", v, "");
            strcpy(out->http_repos[out->nhttp_repos++], v);
            break;
        case O_DGRAM_RATE:
        case O_CONN_RATE: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(v, &end, 10);
            const char *name = c == O_DGRAM_RATE ? "--max-dgram-rate" : "--max-conn-rate";
            if (errno || !*v || *end || v[0] == '-' || n > GUTS_NET_RATE_FLAG_MAX)
                return fail(err, errlen, "%s: expected 0..1000000 (0: off), got '%s'", name, v);
            *(c == O_DGRAM_RATE ? &out->max_dgram_rate : &out->max_conn_rate) = (unsigned)n;
            break;
        }
        case O_FRAME:
        case O_OBJECT:
        case O_SESSIONS:
        case O_REMOTE_REPOS:
        case O_PEER_REPOS:
        case O_LEARNED:
        case O_GIT_PACKS: {
            _Static_assert(O_GIT_PACKS - O_FRAME + 1 == sizeof ranges / sizeof ranges[0],
                           "a range per limit option");
            const struct range *r = &ranges[c - O_FRAME];
            unsigned long long n;
            if (parse_num(v, r->min, r->max, &n) != 0) {
                snprintf(err, errlen, "%s: expected %llu..%llu, got '%s'", r->name, r->min, r->max,
                         v);
                return GUTS_EINVAL;
            }
            if (c == O_OBJECT)
                out->max_object = n;
            else if (c == O_GIT_PACKS)
                out->git_packs_max = n << 20;
            else
                *(c == O_FRAME          ? &out->max_frame
                  : c == O_SESSIONS     ? &out->max_sessions
                  : c == O_REMOTE_REPOS ? &out->max_remote_repos
                  : c == O_PEER_REPOS   ? &out->max_peer_repos
                                        : &out->max_learned) = (unsigned)n;
            break;
        }
        case O_HTTP:
            out->http_on = strcmp(v, "off") != 0;
            if (out->http_on && (guts_net_parse_addr(v, 1, &out->http, &why) != 0 ||
                                 (out->http.sa.sa_family == AF_INET
                                      ? IN_MULTICAST(ntohl(out->http.in.sin_addr.s_addr))
                                      : IN6_IS_ADDR_MULTICAST(&out->http.in6.sin6_addr))))
                return fail_addr(err, errlen, "--http", "ADDR:PORT or off", v, why);
            break;
        case O_HELP:
            return 1;
        case ':':
            return fail(err, errlen, "%s: missing value%s", argv[optind - 1], "");
        default:
            return fail(err, errlen, "unknown option '%s'%s", argv[optind - 1], "");
        }
    }
    if (optind < argc) return fail(err, errlen, "unexpected argument '%s'%s", argv[optind], "");
    if (!have_data) {
        int n;
        if (env_data && *env_data)
            n = snprintf(out->data, sizeof out->data, "%s", env_data);
        else if (home && *home)
            n = snprintf(out->data, sizeof out->data, "%s/.local/share/guts", home);
        else
            return fail(err, errlen, "no data dir: give --data, or set GUTS_DATA or HOME%s%s", "",
                        "");
        if (n < 0 || (size_t)n >= sizeof out->data)
            return fail(err, errlen, "data dir path too long%s%s", "", "");
    }
    return 0;
}
