/* git_refs.c - ls-refs: the refs and HEAD a git client sees of a stored
 * repository, with symref targets and peeled tags as asked.
 */
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "guts/gitobj.h"
#include "git_int.h"
#include "pktline.h"

typedef struct ref_ent {
    char *name;
    guts_id id;
    char *symref; /* HEAD's target, or NULL */
} ref_ent;

typedef struct ref_list {
    ref_ent *v;
    size_t n, cap;
    int oom;
} ref_list;

static int collect_ref(const guts_ref *ref, void *ctx)
{
    ref_list *l = ctx;
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 64;
        ref_ent *nv = realloc(l->v, c * sizeof *nv);
        if (!nv) return l->oom = GUTS_ENOMEM;
        l->v = nv;
        l->cap = c;
    }
    ref_ent *e = &l->v[l->n];
    e->name = strdup(ref->name);
    e->symref = ref->symref[0] ? strdup(ref->symref) : NULL;
    e->id = ref->target;
    if (!e->name || (ref->symref[0] && !e->symref)) {
        free(e->name);
        free(e->symref);
        return l->oom = GUTS_ENOMEM;
    }
    l->n++;
    return 0;
}

static void refs_free(ref_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].symref);
    }
    free(l->v);
}

static const ref_ent *ref_find(const ref_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) /* only HEAD's target is looked up: once */
        if (!l->v[i].symref && strcmp(l->v[i].name, name) == 0) return &l->v[i];
    return NULL;
}

/* Follow annotated tags from id: 1 and *out when id is a tag (its final
 * object), 0 when it is not one, <0 on a store error or a broken chain. */
static int peel(guts_repo *r, const guts_id *id, guts_id *out)
{
    guts_id cur = *id;
    for (int depth = 0; depth < PEEL_DEPTH_MAX; depth++) {
        int type;
        uint64_t size;
        int rc = guts_repo_stat(r, &cur, &type, &size);
        if (rc) return depth ? rc : 0;
        if (type != GUTS_OBJ_TAG) {
            *out = cur;
            return depth > 0;
        }
        void *data;
        size_t len;
        if ((rc = guts_repo_get(r, &cur, &type, &data, &len))) return rc;
        int ok = guts_tag_target(data, len, &cur) == GUTS_OK;
        free(data);
        if (!ok) return GUTS_ECORRUPT;
    }
    return GUTS_ECORRUPT;
}

int git_ls_refs(guts_net_git *g, struct MHD_Connection *conn, guts_repo *r,
                   const uint8_t *body, size_t len, size_t pos)
{
    int symrefs = 0, peeled = 0;
    const uint8_t *pfx[GUTS_NET_GIT_PREFIXES_MAX];
    size_t pfxlen[GUTS_NET_GIT_PREFIXES_MAX], npfx = 0;
    guts_pkt p;
    int rc;
    while ((rc = guts_pkt_next(body, len, &pos, &p)) == 1 && p.kind == GUTS_PKT_DATA) {
        const uint8_t *arg;
        size_t alen;
        if (guts_pkt_is(&p, "symrefs", &arg, &alen) && !arg)
            symrefs = 1;
        else if (guts_pkt_is(&p, "peel", &arg, &alen) && !arg)
            peeled = 1;
        else if (guts_pkt_is(&p, "unborn", &arg, &alen) && !arg)
            ; /* not advertised; an unborn HEAD is left out */
        else if (guts_pkt_is(&p, "ref-prefix", &arg, &alen) && arg && p.data[10] == ' ') {
            if (npfx == GUTS_NET_GIT_PREFIXES_MAX)
                return git_reply_err(g, conn, 400, "ls-refs: more than %d ref-prefix arguments",
                                 GUTS_NET_GIT_PREFIXES_MAX);
            pfx[npfx] = arg;
            pfxlen[npfx++] = alen;
        } else {
            return git_reply_err(g, conn, 400, "ls-refs: unexpected argument '%.*s'",
                             (int)(p.len < 80 ? p.len : 80), (const char *)p.data);
        }
    }
    if (rc != 1 || p.kind != GUTS_PKT_FLUSH)
        return git_reply_err(g, conn, 400, "ls-refs: the request must end with a flush-pkt");
    ref_list l = {0};
    rc = guts_repo_refs(r, 0, collect_ref, &l);
    if (rc) {
        refs_free(&l);
        return git_reply_err(g, conn, 500, "ls-refs: reading refs: %s", guts_strerror(rc));
    }
    git_buf b = {0};
    for (size_t i = 0; i < l.n; i++) {
        const ref_ent *e = &l.v[i];
        size_t nl = strlen(e->name);
        int match = npfx == 0;
        for (size_t j = 0; j < npfx && !match; j++)
            match = pfxlen[j] <= nl && memcmp(e->name, pfx[j], pfxlen[j]) == 0;
        if (!match) continue;
        guts_id id = e->id;
        if (e->symref) {
            const ref_ent *t = ref_find(&l, e->symref);
            if (!t) continue; /* unborn */
            id = t->id;
        }
        char hex[GUTS_HEX_LEN + 1], phex[GUTS_HEX_LEN + 1];
        guts_id_to_hex(&id, hex);
        guts_id peel_to;
        int pr = peeled ? peel(r, &id, &peel_to) : 0;
        if (pr == 1) guts_id_to_hex(&peel_to, phex);
        git_buf_pkt(&b, "%s %s%s%s%s%s\n", hex, e->name,
                symrefs && e->symref ? " symref-target:" : "",
                symrefs && e->symref ? e->symref : "", pr == 1 ? " peeled:" : "",
                pr == 1 ? phex : "");
    }
    git_buf_put(&b, "0000", 4);
    refs_free(&l);
    g->stats.ls_refs++;
    rc = git_reply_buf(g, conn, &b);
    git_buf_free(&b);
    return rc;
}
