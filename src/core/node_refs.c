/* node_refs.c - applying ref records received from peers.
 *
 * A ref record is applied only when the closure of its target is in the
 * store (commit -> tree and parents; tree -> entries except gitlinks, mode
 * 160000; tag -> its object), so an export is always fsck-clean. Records
 * whose closure is incomplete wait in the repository's pending list; the
 * session asks its peer for the missing ids with WANT and retries as they
 * arrive, and every later session end retries too.
 *
 * The merge itself is h4's CRDT rule (refmerge.h): the winner is written,
 * and a divergent loser is written as a conflict record, itself merged with
 * any conflict record already under that name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core_internal.h"
#include "guts/gitobj.h"

/* ---- Compact ref records ------------------------------------------------- */

void cref_free(cref *r)
{
    free(r->name);
    free(r->symref);
    r->name = r->symref = NULL;
}

int cref_from_wire(cref *out, const guts_wire_ref *w)
{
    memset(out, 0, sizeof(*out));
    if (!w->name || guts_refname_check(w->name) != GUTS_OK)
        return GUTS_EINVAL;
    if (w->symref && (strlen(w->symref) > GUTS_REFNAME_MAX || guts_refname_check(w->symref)))
        return GUTS_EINVAL;
    out->name = strdup(w->name);
    out->symref = w->symref && w->symref[0] ? strdup(w->symref) : NULL;
    if (!out->name || (w->symref && w->symref[0] && !out->symref)) {
        cref_free(out);
        return GUTS_ENOMEM;
    }
    if (!out->symref) /* a symbolic ref has no target (the store drops it too) */
        out->target = w->target;
    out->clock = w->clock;
    out->writer = w->writer;
    return GUTS_OK;
}

void cref_to_ref(const cref *in, guts_ref *out)
{
    memset(out, 0, sizeof(*out));
    strcpy(out->name, in->name);
    if (in->symref)
        strcpy(out->symref, in->symref);
    out->target = in->target;
    out->clock = in->clock;
    out->writer = in->writer;
}

void repo_free_state(lrepo *r)
{
    for (size_t i = 0; i < r->npending; i++)
        cref_free(&r->pending[i]);
    free(r->pending);
    r->pending = NULL;
    r->npending = r->cappending = 0;
    guts_idset_free(&r->complete);
    closure_track_free(r);
    pull_plan_free(r->plan);
    r->plan = NULL;
}

static int cref_cmp(const cref *x, const cref *y)
{
    guts_ref *t = malloc(2 * sizeof(guts_ref));
    if (!t)
        return strcmp(x->name, y->name); /* only equality matters to callers */
    cref_to_ref(x, t);
    cref_to_ref(y, t + 1);
    int rc = guts_ref_cmp(t, t + 1);
    free(t);
    return rc;
}

/* refs_take's index of a repository's pending refs by name: open
 * addressing, at most half full, each slot a pending index + 1 (0: free);
 * a name's records (up to CORE_REFS_PER_NAME_MAX) lie on one probe run.
 * A scan of every pending ref for each ref taken made a first copy's
 * 1,502 refs cost ~1.1 million strcmp, and up to CORE_REFS_PENDING_MAX
 * squared. */
typedef struct name_index {
    size_t *slot;
    size_t mask;
} name_index;

static size_t name_hash(const char *s)
{
    return (size_t)XXH3_64bits(s, strlen(s));
}

static void name_index_add(name_index *x, const char *name, size_t j)
{
    size_t b = name_hash(name) & x->mask;
    while (x->slot[b])
        b = (b + 1) & x->mask;
    x->slot[b] = j + 1;
}

/* Pending records are kept per (name, record), not per name: keeping only
 * the greater record of a name let one whose target can never arrive (a
 * byte flipped in transit, or a forged record) shadow the valid record
 * behind it forever. Each record now waits on its own closure, the merge
 * rule orders whichever complete, and one that never completes is dropped
 * after CORE_REF_TRIES_MAX sessions (refs_apply_pending). Without memory
 * for the index, the refs are dropped, as when the list cannot grow: the
 * next session brings them again. */
void refs_take(guts_core *c, lrepo *r, cref *refs, size_t n)
{
    (void)c;
    size_t most = r->npending + n, cap = 16;
    while (cap < 2 * most)
        cap *= 2;
    name_index x = {calloc(cap, sizeof(size_t)), cap - 1};
    if (!x.slot) {
        for (size_t i = 0; i < n; i++)
            cref_free(&refs[i]);
        return;
    }
    for (size_t j = 0; j < r->npending; j++)
        name_index_add(&x, r->pending[j].name, j);
    for (size_t i = 0; i < n; i++) {
        size_t same = 0, worst = SIZE_MAX;
        int dup = 0;
        for (size_t b = name_hash(refs[i].name) & x.mask; x.slot[b] && !dup; b = (b + 1) & x.mask) {
            size_t j = x.slot[b] - 1;
            if (strcmp(r->pending[j].name, refs[i].name) != 0)
                continue;
            if (cref_cmp(&r->pending[j], &refs[i]) == 0) {
                dup = 1;
                break;
            }
            same++;
            /* the one tried most, the lesser on a tie, makes room */
            if (worst == SIZE_MAX || r->pending[j].tries > r->pending[worst].tries ||
                (r->pending[j].tries == r->pending[worst].tries &&
                 cref_cmp(&r->pending[j], &r->pending[worst]) < 0))
                worst = j;
        }
        if (dup) {
            cref_free(&refs[i]);
            continue;
        }
        if (same >= CORE_REFS_PER_NAME_MAX) {
            cref_free(&r->pending[worst]);
            r->pending[worst] = refs[i]; /* same name: its slot stays */
            continue;
        }
        if (r->npending >= CORE_REFS_PENDING_MAX) {
            cref_free(&refs[i]);
            continue;
        }
        if (r->npending == r->cappending) {
            size_t nc = r->cappending ? 2 * r->cappending : 4;
            cref *p = realloc(r->pending, nc * sizeof(cref));
            if (!p) {
                cref_free(&refs[i]);
                continue;
            }
            r->pending = p;
            r->cappending = nc;
        }
        name_index_add(&x, refs[i].name, r->npending);
        r->pending[r->npending++] = refs[i];
    }
    free(x.slot);
}

/* ---- Applying ------------------------------------------------------------ */

/* Records to write, flushed in one refs_put (one write transaction, one
 * fsync) per this many: applying a clone's 1,000 refs one transaction each
 * would stall the node for seconds. Lookups scan the batch linearly. */
#define REFS_BATCH 256

/* What a queued record is, for the event made once it is written. */
enum { BATCH_QUIET = 0, BATCH_REF, BATCH_CONFLICT };

typedef struct batch {
    guts_ref *recs;
    guts_id *aux;  /* BATCH_REF: the old target */
    uint8_t *what; /* BATCH_* */
    size_t n;
    size_t ref_events, ref_more; /* this pass: REF_UPDATED events made, and not */
} batch;

/* A conflict record new on this node (made here or received), once
 * written: one line with what settles it, and the count. ref: "" when the
 * name was cut. */
static void conflict_note(guts_core *c, lrepo *r, const char *ref, const guts_ref *conf,
                          const guts_id *winner)
{
    char lost[GUTS_HEX_LEN + 1], won[GUTS_HEX_LEN + 1];
    guts_id_to_hex(&conf->target, lost);
    guts_id_to_hex(winner, won);
    c->ctr.conflicts++;
    core_log(c, GUTS_LOG_WARN,
             "conflict on %s in %s: %.12s lost to %.12s and is kept as %s (guts conflicts %s; "
             "guts resolve settles it)",
             ref[0] ? ref : "a ref", r->key, lost, guts_id_is_zero(winner) ? "a delete" : won,
             conf->name, r->key);
}

/* The events of written records: conflicts always, ref updates up to
 * GUTS_CORE_REF_EVENTS_MAX a pass (the rest counted in ref_more). */
static void batch_events(guts_core *c, lrepo *r, batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const guts_ref *rec = &b->recs[i];
        if (b->what[i] == BATCH_CONFLICT) {
            /* The winner as stored now: later records of this batch (the
             * ref's own, when the conflict record came first) are in. */
            char ref[GUTS_REFNAME_MAX + 1]; /* "" when the record's name was cut */
            guts_ref win;
            guts_id winner = {{0}};
            if (guts_ref_conflict_ref(rec->name, ref) == GUTS_OK &&
                c->st.ref_get(c->st.ctx, r->key, ref, &win) == GUTS_OK && !win.symref[0])
                winner = win.target;
            conflict_note(c, r, ref, rec, &winner);
            core_event(c, GUTS_EV_CONFLICT, r->key, ref, &rec->target, &winner, &rec->writer,
                       rec->name);
        } else if (b->what[i] == BATCH_REF) {
            if (b->ref_events == GUTS_CORE_REF_EVENTS_MAX) {
                b->ref_more++;
                continue;
            }
            b->ref_events++;
            guts_id now = {{0}};
            if (!rec->symref[0]) now = rec->target;
            core_event(c, GUTS_EV_REF_UPDATED, r->key, rec->name, &b->aux[i], &now, &rec->writer,
                       NULL);
        }
    }
}

static int batch_flush(guts_core *c, lrepo *r, batch *b)
{
    if (!b->n)
        return GUTS_OK;
    int rc = c->st.refs_put(c->st.ctx, r->key, b->recs, b->n);
    if (rc == GUTS_OK) {
        c->ctr.refs_applied += b->n;
        for (size_t i = 0; i < b->n; i++)
            if (!b->recs[i].symref[0] && !guts_id_is_zero(&b->recs[i].target))
                guts_idset_insert(&r->complete, &b->recs[i].target);
        batch_events(c, r, b);
    }
    b->n = 0;
    return rc;
}

/* The current record of name: the batch's if it has one, else the store's. */
static int lookup(guts_core *c, lrepo *r, const batch *b, const char *name, guts_ref *out)
{
    for (size_t i = b->n; i-- > 0;) {
        if (strcmp(b->recs[i].name, name) == 0) {
            *out = b->recs[i];
            return GUTS_OK;
        }
    }
    return c->st.ref_get(c->st.ctx, r->key, name, out);
}

/* Queue rec, replacing a queued record of the same name (whose event
 * keeps its first old target). what and aux: for its event (batch). */
static int batch_put(guts_core *c, lrepo *r, batch *b, const guts_ref *rec, int what,
                     const guts_id *aux)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->recs[i].name, rec->name) == 0) {
            b->recs[i] = *rec;
            if (what != BATCH_QUIET) b->what[i] = (uint8_t)what;
            return GUTS_OK;
        }
    }
    if (b->n == REFS_BATCH) {
        int rc = batch_flush(c, r, b);
        if (rc)
            return rc;
    }
    b->what[b->n] = (uint8_t)what;
    memset(&b->aux[b->n], 0, sizeof b->aux[b->n]);
    if (aux) b->aux[b->n] = *aux;
    b->recs[b->n++] = *rec;
    return GUTS_OK;
}

/* Merge one incoming record; 1 applied (or obsolete), 0 wait, <0 error. */
static int apply_one(guts_core *c, lrepo *r, guts_idset *incomplete, batch *b, const cref *p,
                     guts_id *want, size_t cap, size_t *nwant)
{
    guts_ref *in = malloc(6 * sizeof(guts_ref));
    if (!in)
        return GUTS_ENOMEM;
    guts_ref *cur = in + 1, *res = in + 2, *conf = in + 3, *old = in + 4, *m = in + 5;
    cref_to_ref(p, in);
    int have = lookup(c, r, b, in->name, cur) == GUTS_OK;
    int rc = 1;
    if (have && guts_ref_cmp(cur, in) == 0)
        goto out; /* already applied */
    if (!in->symref[0] && !guts_id_is_zero(&in->target)) {
        int complete;
        rc = refs_closure(c, r, incomplete, &in->target, want, cap, nwant, &complete);
        if (rc)
            goto out;
        if (!complete) {
            rc = 0;
            goto out;
        }
    }
    refs_anc_ctx ax = {c, r};
    int has_conf = 0;
    rc = guts_ref_merge(have ? cur : NULL, in, refs_is_ancestor, &ax, res, conf, &has_conf);
    if (rc < 0) {
        rc = 0;
        goto out;
    }
    rc = GUTS_OK;
    if (!have || guts_ref_cmp(res, cur) != 0) {
        /* an event when what the ref names changes (not for a clock bump);
         * a conflict record made elsewhere is a conflict here when it is
         * new here (each node says so once, whichever node made it) */
        guts_id was = {{0}}, now = {{0}};
        if (have && !cur->symref[0]) was = cur->target;
        if (!res->symref[0]) now = res->target;
        int moved = !have || memcmp(&was, &now, sizeof was) != 0 ||
                    strcmp(cur->symref, res->symref) != 0;
        int what = moved ? BATCH_REF : BATCH_QUIET;
        if (guts_ref_is_conflict_name(res->name)) {
            what = BATCH_QUIET;
            if (!have && !guts_id_is_zero(&now)) what = BATCH_CONFLICT;
        }
        rc = batch_put(c, r, b, res, what, &was);
    }
    if (!rc && has_conf) {
        /* a conflict record merges with one already under its name */
        int hj = 0;
        guts_ref *junk = cur;
        if (lookup(c, r, b, conf->name, old) == GUTS_OK) {
            if (guts_ref_merge(old, conf, NULL, NULL, m, junk, &hj) == GUTS_OK &&
                guts_ref_cmp(m, old) != 0)
                rc = batch_put(c, r, b, m, BATCH_QUIET, NULL);
        } else {
            rc = batch_put(c, r, b, conf, BATCH_CONFLICT, NULL);
        }
    }
    if (!rc)
        rc = 1;
out:
    free(in);
    return rc;
}

int refs_apply_pending(guts_core *c, lrepo *r, guts_id *want, size_t cap, size_t *nwant,
                       int count)
{
    *nwant = 0;
    if (!r->npending) /* most calls (every pull's end): no 0.5 MB batch to allocate */
        return GUTS_OK;
    size_t w = 0;
    int changed = 0;
    guts_idset incomplete = {0};
    batch b = {.recs = malloc(REFS_BATCH * sizeof(guts_ref)),
               .aux = malloc(REFS_BATCH * sizeof(guts_id)),
               .what = malloc(REFS_BATCH)};
    if (!b.recs || !b.aux || !b.what) {
        free(b.recs);
        free(b.aux);
        free(b.what);
        return GUTS_ENOMEM;
    }
    for (size_t i = 0; i < r->npending; i++) {
        int rc = apply_one(c, r, &incomplete, &b, &r->pending[i], want, cap, nwant);
        if (rc == 1) {
            changed = 1;
            cref_free(&r->pending[i]);
        } else if (rc == 0 && count && ++r->pending[i].tries >= CORE_REF_TRIES_MAX) {
            /* its closure never completed: a damaged or forged target */
            c->ctr.refs_dropped++;
            core_log(c, GUTS_LOG_WARN, "ref %s in %s dropped: closure incomplete after %u sessions",
                     r->pending[i].name, r->key, (unsigned)r->pending[i].tries);
            cref_free(&r->pending[i]);
        } else {
            if (rc < 0)
                core_log(c, GUTS_LOG_WARN, "ref %s in %s not applied: %s", r->pending[i].name,
                         r->key, guts_strerror(rc));
            r->pending[w++] = r->pending[i];
        }
    }
    r->npending = w;
    if (w == 0) { /* most of the time none wait: no array kept per repository */
        free(r->pending);
        r->pending = NULL;
        r->cappending = 0;
    }
    int frc = batch_flush(c, r, &b);
    if (frc)
        core_log(c, GUTS_LOG_WARN, "refs of %s not written: %s", r->key, guts_strerror(frc));
    if (b.ref_more) {
        char more[48];
        snprintf(more, sizeof more, "and %zu more refs updated", b.ref_more);
        core_event(c, GUTS_EV_REF_UPDATED, r->key, "", NULL, NULL, NULL, more);
    }
    free(b.recs);
    free(b.aux);
    free(b.what);
    guts_idset_free(&incomplete);
    if (changed)
        core_repo_refresh(c, r);
    return GUTS_OK;
}
