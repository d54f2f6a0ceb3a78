/* ratelimit.c - per-source token buckets for datagrams and new connections.
 *
 * A source (an IPv4 address, or an IPv6 address with its zone: the key of
 * guts_net_sa_key) gets a bucket of `burst` tokens refilled at `rate` per
 * second; each datagram or accepted connection takes one, and
 * with none left it is dropped and counted. Memory is fixed: a table of
 * GUTS_NET_RATE_SETS sets of GUTS_NET_RATE_WAYS buckets, the set chosen by a
 * keyed hash of the address (the key is random per table, so a sender cannot
 * pick addresses that crowd one set). A new source takes its set's least
 * recently used bucket. A flood of forged sources therefore evicts buckets
 * rather than growing memory; an evicted source starts again with a full
 * burst, which bounds what forging buys to what the other limits allow
 * (connections cap, bounded decoding), never memory.
 *
 * Tokens are kept in thousandths so integer arithmetic is exact enough at
 * any rate from 1/s and no floating point is needed.
 */
#include <string.h>
#include <time.h>

#include "net.h"

#define MILLI 1000u

void guts_net_rate_init(guts_net_rate *t, uint32_t rate, uint32_t burst, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    t->rate = rate;
    t->burst = burst < 1 ? 1 : burst;
    t->seed = seed | 1;
}

static uint32_t set_of(const guts_net_rate *t, uint64_t key)
{
    uint64_t h = (key ^ t->seed) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)(h % GUTS_NET_RATE_SETS);
}

int guts_net_rate_allow(guts_net_rate *t, uint64_t key, uint64_t now_ms)
{
    if (t->rate == 0) return 1;
    guts_net_rate_bucket *set = t->b[set_of(t, key)];
    guts_net_rate_bucket *b = NULL, *lru = &set[0];
    for (size_t i = 0; i < GUTS_NET_RATE_WAYS; i++) {
        if (set[i].used && set[i].key == key) {
            b = &set[i];
            break;
        }
        if (!set[i].used || (lru->used && set[i].last_ms < lru->last_ms)) lru = &set[i];
    }
    uint64_t cap = (uint64_t)t->burst * MILLI;
    if (!b) {
        b = lru;
        b->used = 1;
        b->key = key;
        b->tokens = cap;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        /* rate tokens/s = rate milli-tokens/ms */
        uint64_t add = (now_ms - b->last_ms) * t->rate;
        b->tokens = add >= cap - b->tokens ? cap : b->tokens + add;
    }
    b->last_ms = now_ms > b->last_ms ? now_ms : b->last_ms;
    if (b->tokens < MILLI) {
        t->limited++;
        return 0;
    }
    b->tokens -= MILLI;
    return 1;
}

/* The one clock of every duration in the daemon: monotonic, so a wall
 * clock stepped back or forward never freezes a limit or a timeout. */
uint64_t guts_net_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
