/* refused.c - sources whose datagrams the node refuses, one entry each.
 *
 * A node with another cluster key, or one running open beside a keyed
 * cluster, is the commonest reason two nodes that should replicate do not:
 * each sees the other's datagrams and drops them. That must be visible
 * without drowning the log: the first refusal from a source is logged at
 * warn, the rest only counted here, per source, and status.json lists
 * the table (`guts status` shows it). The table is fixed (GUTS_NET_REFUSED_MAX
 * sources); a new source takes the slot of the one refused longest ago, so
 * a flood of forged sources costs a log line each at worst while the
 * per-source datagram rate limit lets them through.
 */
#include <string.h>

#include "net.h"

int guts_net_refused_note(guts_net_refused *t, const guts_net_sa *from, int why,
                          uint64_t now_ms)
{
    guts_net_refused_src *slot = NULL, *old = &t->src[0];
    for (size_t i = 0; i < GUTS_NET_REFUSED_MAX; i++) {
        guts_net_refused_src *s = &t->src[i];
        if (s->count && guts_net_sa_eq(&s->addr, from)) {
            slot = s;
            break;
        }
        if (s->last_ms < old->last_ms || (old->count && !s->count)) old = s;
    }
    int fresh = slot == NULL || slot->why != why;
    if (!slot) {
        slot = old;
        memset(slot, 0, sizeof *slot);
        slot->addr = *from;
    }
    slot->why = why;
    slot->count++;
    slot->last_ms = now_ms;
    t->total++;
    return fresh;
}
