/* keys.c - the cluster key ring of a running node: reread on SIGHUP, and
 * which key each peer seals with.
 *
 * Rotation without downtime (docs/operations.md, "Cluster key"): the key
 * file may hold several keys, the first seals and all of them open, and the
 * node rereads it on SIGHUP (`guts keys reload` sends it). The ring changes
 * in place (guts_seal_rekey), so open streams, counters and the replay cache
 * stay; a file that no longer reads is logged and the keys in use are kept.
 *
 * Each datagram that opens names its key in clear (seal.h), so the node
 * knows which key every peer seals with: a small table keyed by source
 * address, written to status.json with the peers (`guts keys list`). It is
 * fixed in size; a new source takes the slot heard from longest ago.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"

static void hex4(const uint8_t *id, char out[2 * GUTS_SEAL_KEYID_LEN + 1])
{
    for (size_t i = 0; i < GUTS_SEAL_KEYID_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

void guts_net_keys_note(guts_net_node *n, const guts_addr *from, const uint8_t *kid)
{
    guts_net_peer_key *slot = NULL, *old = &n->peer_keys[0];
    uint64_t now = guts_net_now_ms();
    for (size_t i = 0; i < GUTS_NET_PEER_KEYS_MAX; i++) {
        guts_net_peer_key *k = &n->peer_keys[i];
        if (k->heard_ms && k->addr.len == from->len && memcmp(k->addr.b, from->b, from->len) == 0) {
            slot = k;
            break;
        }
        if (k->heard_ms < old->heard_ms) old = k;
    }
    if (!slot) {
        slot = old;
        slot->addr = *from;
    }
    memcpy(slot->id, kid, GUTS_SEAL_KEYID_LEN);
    slot->heard_ms = now ? now : 1;
}

const uint8_t *guts_net_keys_of(const guts_net_node *n, const guts_addr *a)
{
    for (size_t i = 0; i < GUTS_NET_PEER_KEYS_MAX; i++) {
        const guts_net_peer_key *k = &n->peer_keys[i];
        if (k->heard_ms && k->addr.len == a->len && memcmp(k->addr.b, a->b, a->len) == 0)
            return k->id;
    }
    return NULL;
}

void guts_net_keys_status(const guts_net_node *n, FILE *f)
{
    uint8_t ids[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEYID_LEN];
    char hex[2 * GUTS_SEAL_KEYID_LEN + 1];
    size_t k = guts_seal_key_ids(n->seal, ids, GUTS_SEAL_KEYS_MAX);
    fputs(", \"keys\": [", f);
    for (size_t i = 0; i < k && i < GUTS_SEAL_KEYS_MAX; i++) {
        hex4(ids[i], hex);
        fprintf(f, "%s\"%s\"", i ? ", " : "", hex);
    }
    fprintf(f, "], \"key_file\": \"");
    /* the path came from the command line: keep the JSON valid whatever it holds */
    for (const char *p = n->opts.key_file; *p; p++)
        fputc(*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 ? '?' : *p, f);
    fprintf(f, "\", \"reloads\": %llu", (unsigned long long)n->sighups);
}

/* Reread the key file into the ring; one line either way. */
static void keys_reload(guts_net_node *n)
{
    uint8_t ring[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN];
    size_t k = 0;
    char err[512];
    if (!n->seal) {
        guts_net_logf(&n->log, GUTS_LOG_WARN,
                      "SIGHUP: this node runs open (no --key-file): no key to reread");
        return;
    }
    err[0] = 0;
    int rc = guts_seal_keys_load(n->opts.key_file, ring, GUTS_SEAL_KEYS_MAX, &k, err, sizeof err);
    if (rc == 0) rc = guts_seal_rekey(n->seal, ring, k);
    memset(ring, 0, sizeof ring);
    if (rc != 0) {
        guts_net_logf(&n->log, GUTS_LOG_WARN, "key file not reread: %s; the keys in use stay",
                      err[0] ? err : guts_strerror(rc));
        return;
    }
    uint8_t ids[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEYID_LEN];
    char hex[2 * GUTS_SEAL_KEYID_LEN + 1], also[GUTS_SEAL_KEYS_MAX * 10] = "";
    guts_seal_key_ids(n->seal, ids, GUTS_SEAL_KEYS_MAX);
    for (size_t i = 1; i < k; i++) {
        hex4(ids[i], hex);
        snprintf(also + strlen(also), sizeof also - strlen(also), "%s%s", i > 1 ? ", " : "", hex);
    }
    hex4(ids[0], hex);
    guts_net_logf(&n->log, GUTS_LOG_INFO, "key file %s reread: sealing with %s%s%s",
                  n->opts.key_file, hex, k > 1 ? ", also opening " : "", also);
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    guts_net_node *n = container_of(w, guts_net_node, sighup);
    keys_reload(n);
    /* guts keys reload waits for this count to grow: a status file the
     * timer wrote between its signal and this handler is not mistaken for
     * the answer */
    n->sighups++;
    guts_net_node_write_status(n);
}

void guts_net_keys_start(guts_net_node *n)
{
    ev_signal_init(&n->sighup, sighup_cb, SIGHUP);
    ev_signal_start(n->loop, &n->sighup);
}

void guts_net_keys_stop(guts_net_node *n)
{
    ev_signal_stop(n->loop, &n->sighup);
}
