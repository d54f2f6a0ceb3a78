/* damaged.c - what the node does with a repository whose env is damaged.
 *
 * The store adapter verifies every repository the first time the node
 * opens it (a child process reads each page: src/store/envcheck.c) and
 * hands a damaged one here. It is logged once, moved out of DATA/repos to
 * DATA/damaged/OWNER/NAME.<UTC time> (kept for the user, never deleted)
 * and remembered for status.json. The key is then absent: the node keeps
 * serving every other repository, and when a peer announces this one the
 * core pulls it like any repository it lacks, so a healthy copy comes back
 * (docs/operations.md, "A damaged disk").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net.h"

int guts_net_damaged_hook(const char *key, const char *why, void *arg)
{
    guts_net_node *n = arg;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    struct tm tm;
    char stamp[32] = "unknown-time";
    if (gmtime_r(&wall.tv_sec, &tm)) strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    guts_net_damaged rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.key, sizeof rec.key, "%s", key);
    snprintf(rec.cause, sizeof rec.cause, "%s", why);
    rec.unix_ms = (uint64_t)wall.tv_sec * 1000u + (uint64_t)wall.tv_nsec / 1000000u;
    int rc = guts_repo_set_aside(n->data, key, stamp, rec.moved_to, sizeof rec.moved_to);
    if (rc == GUTS_OK)
        guts_net_logf(&n->log, GUTS_LOG_ERROR,
                      "repository %s is damaged (%s): moved to %s; serving the others and "
                      "pulling a healthy copy from peers",
                      key, rec.cause, rec.moved_to);
    else
        guts_net_logf(&n->log, GUTS_LOG_ERROR,
                      "repository %s is damaged (%s) and cannot be moved aside: %s (%s); not "
                      "served until it is moved or removed",
                      key, rec.cause, guts_strerror(rc), guts_store_errmsg());
    if (rc != GUTS_OK) rec.moved_to[0] = 0;
    if (n->ndamaged == GUTS_NET_DAMAGED_MAX) {
        memmove(n->damaged, n->damaged + 1, (n->ndamaged - 1) * sizeof *n->damaged);
        n->ndamaged--;
    } else if (!n->damaged) {
        n->damaged = calloc(GUTS_NET_DAMAGED_MAX, sizeof *n->damaged);
    }
    if (n->damaged) n->damaged[n->ndamaged++] = rec;
    return rc == GUTS_OK ? 0 : -1;
}
