/* recon.c - the range-based reconciliation engine (see recon.h for the
 * exchange).
 *
 * The puller keeps two things between rounds: the ranges it SPLIT in the last
 * round and a FIFO of child ranges that did not fit in the last round's caps.
 * A child named by a MASK is scanned again when its item is built, so objects
 * stored while the session runs (they stream in as it goes) are counted.
 * Anything the server says about a range the puller did not just split is
 * ignored: the puller's work is bounded by its own tree (each range is split
 * at most once per session and ranges only get deeper), whatever the server
 * sends.
 *
 * The server is stateless: every round is answered from the items alone. It
 * validates the whole round before doing any work, and refuses a range named
 * twice, so one round costs it at most GUTS_RECON_DEPTH_MAX + 1 visits per
 * element (one per depth at which the element's range can appear).
 */
#include "recon.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "bloom.h"

struct guts_recon_split {
    uint32_t prefix;
    uint8_t depth;
    uint8_t answered;
};

struct guts_recon_work {
    uint32_t prefix;
    uint8_t depth;
};

/* Estimated encoded bytes per item (wire/encode.c: a 4-array of kind, depth,
 * prefix (up to 5 bytes) and the payload), for the per-round byte cap. */
#define SPLIT_BYTES (8 + 2 + 2 * GUTS_RECON_FANOUT)
#define ALL_BYTES 9
#define BLOOM_OVERHEAD 17

/* ---- helpers ------------------------------------------------------------- */

uint32_t guts_recon_key_of_id(const guts_id *id)
{
    return (uint32_t)id->b[0] << 24 | (uint32_t)id->b[1] << 16 | (uint32_t)id->b[2] << 8 |
           (uint32_t)id->b[3];
}

uint32_t guts_recon_key_of_refname(const char *name)
{
    return (uint32_t)(XXH3_64bits(name, strlen(name)) >> 32);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void guts_recon_term_bytes(guts_fp term, uint8_t out[16])
{
    put_le64(out, term.lo);
    put_le64(out + 8, term.hi);
}

uint16_t guts_recon_fp16(guts_fp sum, uint64_t seed)
{
    uint8_t b[16];
    guts_recon_term_bytes(sum, b);
    return (uint16_t)XXH3_64bits_withSeed(b, sizeof b, seed);
}

int guts_recon_range_check(uint8_t depth, uint32_t prefix)
{
    if (depth > GUTS_RECON_DEPTH_MAX) return GUTS_EINVAL;
    if (depth < GUTS_RECON_DEPTH_MAX && (prefix >> (4 * depth)) != 0) return GUTS_EINVAL;
    return GUTS_OK;
}

void guts_recon_range_bounds(uint8_t depth, uint32_t prefix, uint32_t *lo, uint32_t *hi)
{
    if (depth == 0) {
        *lo = 0;
        *hi = UINT32_MAX;
        return;
    }
    unsigned shift = 32 - 4 * depth;
    uint32_t span = shift ? (uint32_t)((UINT64_C(1) << shift) - 1) : 0;
    *lo = shift ? prefix << shift : prefix;
    *hi = *lo | span;
}

/* Child index of key inside a range at depth (< max). */
static unsigned child_of(uint32_t key, uint8_t depth)
{
    return (key >> (28 - 4 * depth)) & 0xf;
}

/* Per-child sums and counts of one range. */
typedef struct children {
    uint8_t depth;
    guts_fp sum[GUTS_RECON_FANOUT];
    uint32_t count[GUTS_RECON_FANOUT];
} children;

static int children_visit(void *ctx, uint32_t key, guts_fp term, const void *elem)
{
    (void)elem;
    children *c = ctx;
    unsigned i = child_of(key, c->depth);
    guts_fp_add(&c->sum[i], term);
    c->count[i]++;
    return 0;
}

static int scan_children(const guts_recon_set *set, uint8_t depth, uint32_t prefix, children *c)
{
    memset(c, 0, sizeof *c);
    c->depth = depth;
    uint32_t lo, hi;
    guts_recon_range_bounds(depth, prefix, &lo, &hi);
    return set->scan(set->ctx, lo, hi, children_visit, c);
}

/* ---- puller --------------------------------------------------------------- */

/* Grow *arr (of *cap elements of size sz) to hold at least need. */
static int grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) return GUTS_OK;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * sz);
    if (!p) return GUTS_ENOMEM;
    *arr = p;
    *cap = n;
    return GUTS_OK;
}

static int push_work(guts_recon_puller *p, uint8_t depth, uint32_t prefix)
{
    if (p->headwork > 0 && p->nwork == p->capwork) {
        /* Reclaim the consumed head before growing. */
        memmove(p->work, p->work + p->headwork, (p->nwork - p->headwork) * sizeof *p->work);
        p->nwork -= p->headwork;
        p->headwork = 0;
    }
    int rc = grow((void **)&p->work, &p->capwork, p->nwork + 1, sizeof *p->work);
    if (rc) return rc;
    p->work[p->nwork].depth = depth;
    p->work[p->nwork].prefix = prefix;
    p->nwork++;
    return GUTS_OK;
}

/* Terms of one range, collected for a bloom. */
typedef struct termbuf {
    guts_fp *t;
    size_t n, cap;
    int err;
} termbuf;

static int terms_visit(void *ctx, uint32_t key, guts_fp term, const void *elem)
{
    (void)key;
    (void)elem;
    termbuf *tb = ctx;
    if (grow((void **)&tb->t, &tb->cap, tb->n + 1, sizeof *tb->t)) {
        tb->err = GUTS_ENOMEM;
        return 1;
    }
    tb->t[tb->n++] = term;
    return 0;
}

static guts_recon_item *new_item(guts_recon_puller *p, uint8_t kind, uint8_t depth, uint32_t prefix)
{
    if (grow((void **)&p->items, &p->capitems, p->nitems + 1, sizeof *p->items)) return NULL;
    guts_recon_item *it = &p->items[p->nitems++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->depth = depth;
    it->prefix = prefix;
    return it;
}

static int emit_split(guts_recon_puller *p, uint8_t depth, uint32_t prefix, const children *c)
{
    int rc = grow((void **)&p->splits, &p->capsplits, p->nsplits + 1, sizeof *p->splits);
    if (rc) return rc;
    guts_recon_item *it = new_item(p, GUTS_ITEM_SPLIT, depth, prefix);
    if (!it) return GUTS_ENOMEM;
    guts_recon_split *s = &p->splits[p->nsplits++];
    s->depth = depth;
    s->prefix = prefix;
    s->answered = 0;
    for (int i = 0; i < GUTS_RECON_FANOUT; i++)
        it->fps[i] = guts_recon_fp16(c->sum[i], p->seed);
    p->stats.splits++;
    return GUTS_OK;
}

/* Append a bloom of tb's terms to the arena; the item's bits pointer is set
 * once the round is complete (the arena may move while it grows). */
static int emit_bloom(guts_recon_puller *p, uint8_t depth, uint32_t prefix, const termbuf *tb)
{
    unsigned bpe = p->bloom_bpe;
    if ((uint64_t)tb->n * bpe > GUTS_BLOOM_BITS_MAX) bpe = (unsigned)(GUTS_BLOOM_BITS_MAX / tb->n);
    guts_bloom b;
    int rc = guts_bloom_make(&b, tb->n, bpe, p->seed);
    if (rc) return rc;
    uint8_t key[16];
    for (size_t i = 0; i < tb->n; i++) {
        guts_recon_term_bytes(tb->t[i], key);
        guts_bloom_add(&b, key, sizeof key);
    }
    size_t nb = guts_bloom_bytes(b.nbits);
    rc = grow((void **)&p->arena, &p->caparena, p->narena + nb, 1);
    guts_recon_item *it = rc ? NULL : new_item(p, GUTS_ITEM_BLOOM, depth, prefix);
    if (!it) {
        guts_bloom_free(&b);
        return GUTS_ENOMEM;
    }
    memcpy(p->arena + p->narena, b.bits, nb);
    p->narena += nb;
    it->k = b.k;
    it->nbits = b.nbits;
    guts_bloom_free(&b);
    p->stats.blooms++;
    p->stats.bloom_bits += it->nbits;
    return GUTS_OK;
}

static int split_cmp(const void *a, const void *b)
{
    const guts_recon_split *x = a, *y = b;
    if (x->depth != y->depth) return x->depth < y->depth ? -1 : 1;
    if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
    return 0;
}

/* Turn queued child ranges into this round's items, within the caps. */
static int build_round(guts_recon_puller *p)
{
    p->nitems = 0;
    p->narena = 0;
    p->nsplits = 0;
    size_t bytes = 0;
    termbuf tb = {0};
    int rc = GUTS_OK;
    while (p->headwork < p->nwork) {
        guts_recon_work w = p->work[p->headwork];
        if (p->nitems >= GUTS_ITEMS_MAX) break;
        /* Decide from the actual contents of the range (one scan): the set
         * may have grown since the parent was counted. */
        tb.n = 0;
        tb.err = 0;
        uint32_t lo, hi;
        guts_recon_range_bounds(w.depth, w.prefix, &lo, &hi);
        children c;
        int split = 0;
        /* Count first via the children scan when the range may be split;
         * collecting terms is only needed for a leaf. */
        if (w.depth < GUTS_RECON_DEPTH_MAX) {
            rc = scan_children(&p->set, w.depth, w.prefix, &c);
            if (rc) goto out;
            uint64_t total = 0;
            for (int i = 0; i < GUTS_RECON_FANOUT; i++)
                total += c.count[i];
            split = total > GUTS_RECON_LEAF;
            if (!split && total > 0) {
                rc = p->set.scan(p->set.ctx, lo, hi, terms_visit, &tb);
                if (tb.err) rc = tb.err;
                if (rc) goto out;
            }
        } else {
            rc = p->set.scan(p->set.ctx, lo, hi, terms_visit, &tb);
            if (tb.err) rc = tb.err;
            if (rc) goto out;
        }
        size_t est;
        if (split)
            est = SPLIT_BYTES;
        else if (tb.n == 0 || tb.n > GUTS_BLOOM_BITS_MAX)
            est = ALL_BYTES;
        else
            est = BLOOM_OVERHEAD + guts_bloom_bytes((uint32_t)(tb.n * p->bloom_bpe));
        if (p->nitems > 0 && bytes + est > GUTS_RECON_ROUND_BYTES) break;
        bytes += est;
        if (split) {
            rc = emit_split(p, w.depth, w.prefix, &c);
        } else if (tb.n == 0 || tb.n > GUTS_BLOOM_BITS_MAX) {
            /* Nothing here (or more than any bloom can describe): ask for
             * everything in the range. */
            rc = new_item(p, GUTS_ITEM_ALL, w.depth, w.prefix) ? GUTS_OK : GUTS_ENOMEM;
            if (!rc) p->stats.alls++;
        } else {
            rc = emit_bloom(p, w.depth, w.prefix, &tb);
        }
        if (rc) goto out;
        p->headwork++;
    }
    p->stats.deferred += p->nwork - p->headwork;
    if (p->headwork == p->nwork) p->headwork = p->nwork = 0;
    /* The arena is complete: point the blooms at their bits, in order. */
    size_t off = 0;
    for (size_t i = 0; i < p->nitems; i++) {
        if (p->items[i].kind == GUTS_ITEM_BLOOM) {
            p->items[i].bits = p->arena + off;
            off += guts_bloom_bytes(p->items[i].nbits);
        }
    }
    if (p->nsplits > 1) qsort(p->splits, p->nsplits, sizeof *p->splits, split_cmp);
    p->stats.items_out += p->nitems;
    if (p->nitems > 0) p->stats.rounds++;
out:
    free(tb.t);
    return rc;
}

int guts_recon_puller_start(guts_recon_puller *p, const guts_recon_set *set, uint64_t seed,
                            const guts_recon_item **out, size_t *n_out)
{
    return guts_recon_puller_start_range(p, set, seed, 0, 0, 1, out, n_out);
}

int guts_recon_puller_start_range(guts_recon_puller *p, const guts_recon_set *set, uint64_t seed,
                                  uint8_t depth, uint32_t prefix, uint32_t count,
                                  const guts_recon_item **out, size_t *n_out)
{
    memset(p, 0, sizeof *p);
    p->set = *set;
    p->seed = seed;
    p->bloom_bpe = GUTS_BLOOM_BITS_PER_ELEM;
    *out = NULL;
    *n_out = 0;
    /* The first range is decided like any child: ALL when empty, BLOOM
     * when small, else SPLIT. */
    int rc = count ? GUTS_OK : GUTS_EINVAL;
    for (uint32_t i = 0; !rc && i < count; i++) {
        rc = guts_recon_range_check(depth, prefix + i);
        if (!rc && (depth == GUTS_RECON_DEPTH_MAX || prefix + i < prefix)) rc = GUTS_EINVAL;
        if (!rc) rc = push_work(p, depth, prefix + i);
    }
    if (!rc) rc = build_round(p);
    if (rc) {
        guts_recon_puller_free(p);
        return rc;
    }
    *out = p->items;
    *n_out = p->nitems;
    return GUTS_OK;
}

int guts_recon_puller_step(guts_recon_puller *p, const guts_recon_item *in, size_t n_in,
                           const guts_recon_item **out, size_t *n_out, int *done)
{
    *out = NULL;
    *n_out = 0;
    *done = p->done;
    if (p->done) return GUTS_OK;
    if (n_in > GUTS_ITEMS_MAX) return GUTS_ETOOBIG;
    for (size_t i = 0; i < n_in; i++) {
        const guts_recon_item *it = &in[i];
        if (it->kind != GUTS_ITEM_MASK || guts_recon_range_check(it->depth, it->prefix) ||
            it->depth >= GUTS_RECON_DEPTH_MAX) {
            p->stats.ignored++;
            continue;
        }
        guts_recon_split key = {.depth = it->depth, .prefix = it->prefix};
        guts_recon_split *s =
            p->nsplits ? bsearch(&key, p->splits, p->nsplits, sizeof *p->splits, split_cmp) : NULL;
        if (!s || s->answered) {
            p->stats.ignored++;
            continue;
        }
        s->answered = 1;
        p->stats.masks_in++;
        for (unsigned c = 0; c < GUTS_RECON_FANOUT; c++) {
            if (!(it->mask & (1u << c))) continue;
            int rc = push_work(p, (uint8_t)(it->depth + 1), it->prefix << 4 | c);
            if (rc) return rc;
        }
    }
    int rc = build_round(p);
    if (rc) return rc;
    if (p->nitems == 0) {
        p->done = 1;
        *done = 1;
    }
    *out = p->items;
    *n_out = p->nitems;
    return GUTS_OK;
}

void guts_recon_puller_set_bloom_density(guts_recon_puller *p, unsigned bits_per_elem)
{
    /* 64 bits per element is already a 1e-10 false-positive rate. */
    p->bloom_bpe = bits_per_elem < 1 ? 1 : bits_per_elem > 64 ? 64 : bits_per_elem;
}

void guts_recon_puller_free(guts_recon_puller *p)
{
    free(p->splits);
    free(p->work);
    free(p->items);
    free(p->arena);
    guts_recon_stats st = p->stats;
    memset(p, 0, sizeof *p);
    p->stats = st; /* counters stay readable after free */
    p->done = 1;
}

/* ---- server --------------------------------------------------------------- */

typedef struct serve_ctx {
    const guts_bloom *bloom; /* NULL: ALL */
    guts_recon_emit emit;
    void *emit_ctx;
    uint64_t emitted;
} serve_ctx;

static int serve_visit(void *ctx, uint32_t key, guts_fp term, const void *elem)
{
    serve_ctx *s = ctx;
    if (s->bloom) {
        uint8_t b[16];
        guts_recon_term_bytes(term, b);
        if (guts_bloom_has(s->bloom, b, sizeof b)) return 0;
    }
    s->emitted++;
    return s->emit(s->emit_ctx, key, elem);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int item_valid(const guts_recon_item *it)
{
    if (guts_recon_range_check(it->depth, it->prefix)) return 0;
    switch (it->kind) {
    case GUTS_ITEM_SPLIT:
        return it->depth < GUTS_RECON_DEPTH_MAX;
    case GUTS_ITEM_BLOOM:
        return it->bits && it->nbits >= GUTS_BLOOM_MIN_BITS && it->nbits <= GUTS_BLOOM_BITS_MAX &&
               it->k >= 1 && it->k <= GUTS_BLOOM_K_MAX;
    case GUTS_ITEM_ALL:
        return 1;
    default:
        return 0; /* a MASK or an unknown kind has no business here */
    }
}

int guts_recon_serve(const guts_recon_set *set, uint64_t seed, const guts_recon_item *in,
                     size_t n_in, guts_recon_item *out, size_t out_cap, size_t *n_out,
                     guts_recon_emit emit, void *emit_ctx, uint64_t *n_emitted)
{
    *n_out = 0;
    if (n_emitted) *n_emitted = 0;
    if (n_in > GUTS_ITEMS_MAX) return GUTS_ETOOBIG;
    if (n_in == 0) return GUTS_OK;
    size_t nsplit = 0;
    for (size_t i = 0; i < n_in; i++) {
        if (!item_valid(&in[i])) return GUTS_EPROTO;
        nsplit += in[i].kind == GUTS_ITEM_SPLIT;
    }
    if (nsplit > out_cap) return GUTS_ETOOBIG;
    /* A range named twice would only multiply our work: refuse it. */
    uint64_t *ranges = malloc(n_in * sizeof *ranges);
    if (!ranges) return GUTS_ENOMEM;
    for (size_t i = 0; i < n_in; i++)
        ranges[i] = (uint64_t)in[i].depth << 32 | in[i].prefix;
    qsort(ranges, n_in, sizeof *ranges, u64_cmp);
    int dup = 0;
    for (size_t i = 1; i < n_in; i++)
        dup |= ranges[i] == ranges[i - 1];
    free(ranges);
    if (dup) return GUTS_EPROTO;

    serve_ctx sc = {.emit = emit, .emit_ctx = emit_ctx};
    int rc = GUTS_OK;
    for (size_t i = 0; i < n_in && !rc; i++) {
        const guts_recon_item *it = &in[i];
        if (it->kind == GUTS_ITEM_SPLIT) {
            children c;
            rc = scan_children(set, it->depth, it->prefix, &c);
            if (rc) break;
            uint16_t mask = 0;
            for (unsigned k = 0; k < GUTS_RECON_FANOUT; k++)
                if (guts_recon_fp16(c.sum[k], seed) != it->fps[k]) mask |= (uint16_t)(1u << k);
            if (mask) {
                guts_recon_item *m = &out[(*n_out)++];
                memset(m, 0, sizeof *m);
                m->kind = GUTS_ITEM_MASK;
                m->depth = it->depth;
                m->prefix = it->prefix;
                m->mask = mask;
            }
            continue;
        }
        guts_bloom b;
        sc.bloom = NULL;
        if (it->kind == GUTS_ITEM_BLOOM) {
            rc = guts_bloom_view(&b, it->bits, it->nbits, it->k, seed);
            if (rc) break;
            sc.bloom = &b;
        }
        uint32_t lo, hi;
        guts_recon_range_bounds(it->depth, it->prefix, &lo, &hi);
        rc = set->scan(set->ctx, lo, hi, serve_visit, &sc);
    }
    if (n_emitted) *n_emitted = sc.emitted;
    return rc;
}
