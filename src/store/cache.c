/* cache.c - decoded object contents by id, bounded, least recently used out.
 *
 * A zstd delta needs its base's full content to decode, and the base may be
 * a delta itself. Exporting a whole repository visits objects in an order
 * unrelated to their chains, so without a cache a chain of depth d is decoded
 * about d times per object. Contents are immutable (an id names one content),
 * so entries never go stale; the only policy is the byte budget. Chained hash
 * buckets plus an intrusive doubly linked LRU list: O(1) get, put, evict.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct cache_entry {
    guts_id id;
    uint8_t *data;
    size_t len;
    cache_entry *hnext;       /* bucket chain */
    cache_entry *prev, *next; /* LRU list */
};

/* Buckets start small and double with the entry count (load factor <= 1). */
#define CACHE_BUCKETS_MIN 1024

static size_t entry_cost(size_t len)
{
    return len + sizeof(cache_entry);
}

static size_t bucket_of(const store_cache *c, const guts_id *id)
{
    /* Ids are SHA-1 output: any 8 bytes are already uniform. */
    uint64_t h;
    memcpy(&h, id->b, sizeof h);
    return (size_t)h & (c->nbuckets - 1);
}

int cache_init(store_cache *c, size_t cap)
{
    memset(c, 0, sizeof *c);
    c->cap = cap;
    c->nbuckets = CACHE_BUCKETS_MIN;
    c->buckets = calloc(c->nbuckets, sizeof(cache_entry *));
    return c->buckets ? GUTS_OK : GUTS_ENOMEM;
}

void cache_free(store_cache *c)
{
    cache_entry *e = c->head;
    while (e) {
        cache_entry *n = e->next;
        free(e->data);
        free(e);
        e = n;
    }
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

static void lru_unlink(store_cache *c, cache_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(store_cache *c, cache_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static cache_entry *find(store_cache *c, const guts_id *id, cache_entry ***slot)
{
    cache_entry **pp = &c->buckets[bucket_of(c, id)];
    while (*pp && memcmp((*pp)->id.b, id->b, GUTS_ID_LEN) != 0)
        pp = &(*pp)->hnext;
    if (slot) *slot = pp;
    return *pp;
}

static void data_free(store_cache *c, uint8_t *data)
{
    if (c->drop)
        c->drop(c->drop_arg, data);
    else
        free(data);
}

static void unlink_entry(store_cache *c, cache_entry *e, cache_entry **slot)
{
    *slot = e->hnext;
    lru_unlink(c, e);
    c->bytes -= entry_cost(e->len);
    c->count--;
    data_free(c, e->data);
    free(e);
}

static void evict_one(store_cache *c)
{
    cache_entry *e = c->tail;
    cache_entry **slot;
    find(c, &e->id, &slot);
    unlink_entry(c, e, slot);
}

void cache_forget(store_cache *c, const guts_id *id)
{
    cache_entry **slot;
    cache_entry *e = c->buckets ? find(c, id, &slot) : NULL;
    if (e) unlink_entry(c, e, slot);
}

static void rehash(store_cache *c)
{
    size_t nb = c->nbuckets * 2;
    cache_entry **b = calloc(nb, sizeof(cache_entry *));
    if (!b) return; /* keep the old table: slower, still correct */
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
    for (cache_entry *e = c->head; e; e = e->next) {
        size_t i = bucket_of(c, &e->id);
        e->hnext = b[i];
        b[i] = e;
    }
}

void cache_prefetch(const store_cache *c, const guts_id *id, int entry)
{
    if (!c->buckets) return;
    if (!entry) {
        __builtin_prefetch(&c->buckets[bucket_of(c, id)]);
    } else {
        const cache_entry *e = c->buckets[bucket_of(c, id)];
        if (e) __builtin_prefetch(e);
    }
}

const uint8_t *cache_get(store_cache *c, const guts_id *id, size_t *len)
{
    if (!c->buckets) return NULL;
    cache_entry *e = find(c, id, NULL);
    if (!e) return NULL;
    if (e != c->head) {
        lru_unlink(c, e);
        lru_push_front(c, e);
    }
    *len = e->len;
    return e->data;
}

void cache_give(store_cache *c, const guts_id *id, uint8_t *data, size_t len)
{
    /* One object may take at most a quarter of the budget, so a single huge
     * blob cannot flush every base that smaller objects are built on. */
    if (!c->buckets || entry_cost(len) > c->cap / 4) {
        data_free(c, data);
        return;
    }
    cache_entry **slot;
    if (find(c, id, &slot)) {
        data_free(c, data);
        return;
    }
    cache_entry *e = malloc(sizeof *e);
    if (!e) {
        data_free(c, data);
        return;
    }
    e->id = *id;
    e->data = data;
    e->len = len;
    e->hnext = NULL;
    *slot = e;
    lru_push_front(c, e);
    c->bytes += entry_cost(len);
    c->count++;
    while (c->bytes > c->cap && c->tail != e)
        evict_one(c);
    if (c->count > c->nbuckets) rehash(c);
}

void cache_copy(store_cache *c, const guts_id *id, const void *data, size_t len)
{
    if (!c->buckets || entry_cost(len) > c->cap / 4) return;
    size_t dummy;
    if (cache_get(c, id, &dummy)) return;
    uint8_t *p = malloc(len ? len : 1);
    if (!p) return;
    if (len) memcpy(p, data, len);
    cache_give(c, id, p, len);
}
