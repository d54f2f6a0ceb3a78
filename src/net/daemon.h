/* daemon.h - what the daemon's files (src/net/daemon*.c) share: the
 * address forms, the drain of the core's actions, and the libev callbacks
 * guts_net_node_open installs. Private to the daemon; net.h is the rest.
 */
#ifndef GUTS_NET_DAEMON_H
#define GUTS_NET_DAEMON_H

#include "net.h"

/* daemon.c */
/* A socket address in the core's address form (the wire form of PEERS). */
void guts_net_addr_from_sa(const guts_net_sa *sa, guts_addr *out);
/* The core's address a as a socket address: 0, or GUTS_EINVAL. */
int guts_net_addr_to_sa(const guts_addr *a, guts_net_sa *out);

/* daemon_io.c */
/* Perform every pending action of the core, then report the streams that
 * closed meanwhile (which may produce more actions). */
void guts_net_node_drain(guts_net_node *n);
void guts_net_node_on_dgram(guts_net_udp *u, const uint8_t *buf, size_t len,
                            const guts_net_sa *from);
void guts_net_node_on_open(guts_net_tcp *t, guts_net_conn *c);
void guts_net_node_on_frame(guts_net_tcp *t, guts_net_conn *c, uint8_t *buf, size_t len);
void guts_net_node_on_writable(guts_net_tcp *t, guts_net_conn *c);
void guts_net_node_on_closed(guts_net_tcp *t, guts_net_conn *c, int err);
void guts_net_node_core_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* daemon_local.c */
/* Poll every repository's counters; hand changes to the core. */
void guts_net_node_poll_local(guts_net_node *n);
void guts_net_node_flushed_cb(struct ev_loop *loop, ev_async *w, int revents);
/* Called by a flusher thread: wakes the loop (guts_net_node_flushed_cb). */
void guts_net_node_flush_notify(void *arg);
void guts_net_node_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* daemon_status.c */
/* Write status.json (atomically: a temporary file renamed). */
void guts_net_node_write_status(guts_net_node *n);
void guts_net_node_status_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* Redraw the progress lines of the running pulls under the log. */
void guts_net_node_progress_draw(guts_net_node *n);
void guts_net_node_progress_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* daemon_peers.c */
/* Load DATA/node/peers (a missing or damaged file is no error). */
void guts_net_node_remembered_load(guts_net_node *n);
/* Save the view's peers to DATA/node/peers (atomically). */
void guts_net_node_remembered_save(guts_net_node *n);
void guts_net_node_remember_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

#endif
