/* main.c - guts-node: parse the command line, run the node, exit.
 *
 * Exit codes: 0 after a clean leave (SIGINT/SIGTERM), 1 when the node cannot
 * start (data dir, sockets), 2 on a usage error or a bad --key-file (missing,
 * wrong size, readable by others), checked before anything is opened.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

int main(int argc, char **argv)
{
    guts_net_opts opts;
    char err[512];
    int rc = guts_net_opts_parse(argc, argv, getenv("GUTS_DATA"), getenv("HOME"), &opts, err,
                                 sizeof err);
    if (rc == 1) {
        fputs(guts_net_usage(), stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "guts-node: %s (see guts-node --help)\n", err);
        return 2;
    }
    guts_seal *seal = NULL;
    if (opts.key_file[0]) {
        uint8_t ring[GUTS_SEAL_KEYS_MAX][GUTS_SEAL_KEY_LEN];
        size_t nkeys = 0;
        rc = guts_seal_keys_load(opts.key_file, ring, GUTS_SEAL_KEYS_MAX, &nkeys, err, sizeof err);
        if (rc == 0) {
            rc = guts_seal_new_ring(ring, nkeys, &seal);
            if (rc != 0) snprintf(err, sizeof err, "%s", guts_strerror(rc));
        }
        memset(ring, 0, sizeof ring);
        if (rc != 0) {
            fprintf(stderr, "guts-node: --key-file: %s\n", err);
            return 2;
        }
    }
    /* A peer that resets a stream must not kill the node. */
    signal(SIGPIPE, SIG_IGN);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "guts-node: cannot create the event loop\n");
        guts_seal_free(seal);
        return 1;
    }
    guts_net_node *node = calloc(1, sizeof *node);
    if (!node) {
        fprintf(stderr, "guts-node: out of memory\n");
        guts_seal_free(seal);
        return 1;
    }
    rc = guts_net_node_open(node, loop, &opts, seal); /* owns seal now */
    if (rc != 0) {
        /* guts_net_node_open logged why, in one line: nothing to add */
        guts_net_node_close(node);
        free(node);
        ev_loop_destroy(loop);
        return 1;
    }
    rc = guts_net_node_run(node);
    guts_net_node_close(node);
    free(node);
    ev_loop_destroy(loop);
    return rc;
}
