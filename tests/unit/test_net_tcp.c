/* test_net_tcp.c - the daemon's streams (src/net/tcp.c) when a frame cannot
 * be queued: the stream is closed at once and the owner hears of it (the
 * daemon then tells the core), so the peer sees the end of the stream
 * instead of waiting out its idle timeout for a frame that never comes.
 *
 * Out-of-memory is injected by wrapping realloc (-Wl,--wrap=realloc for this
 * test only). The two ends are real TCP sockets on 127.0.0.1 inside a
 * private network namespace the test makes for itself (unshare); where it
 * cannot, the test says so and passes without running.
 */
#include <check.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guts/wire.h"
#include "net.h"
#include "test_run.h"

/* realloc fails for any size over this while it is non-zero. */
static size_t fail_realloc_over;

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
    if (fail_realloc_over && n > fail_realloc_over) return NULL;
    return __real_realloc(p, n);
}

/* A private network namespace with lo up: 1, or 0 when not allowed here. */
static int private_lo(void)
{
    if (unshare(CLONE_NEWNET) != 0) return 0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return 0;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int ok = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags |= IFF_UP;
    ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
    close(fd);
    return ok;
}

typedef struct end {
    guts_net_tcp tcp;
    guts_net_conn *conn; /* the open stream, until closed */
    int opened, closed, err;
} end;

static void on_open(guts_net_tcp *t, guts_net_conn *c)
{
    end *e = (end *)t;
    e->opened++;
    e->conn = c;
}

static void on_frame(guts_net_tcp *t, guts_net_conn *c, uint8_t *buf, size_t len)
{
    (void)t, (void)c, (void)buf, (void)len;
}

static void on_closed(guts_net_tcp *t, guts_net_conn *c, int err)
{
    end *e = (end *)t;
    (void)c;
    e->closed++;
    e->err = err;
    e->conn = NULL;
}

static const guts_net_tcp_cbs cbs = {
    .on_open = on_open, .on_frame = on_frame, .on_closed = on_closed};

/* Run the loop until *flag is set, for at most 10 s. */
static void run_until(struct ev_loop *loop, const int *flag)
{
    for (int i = 0; i < 1000 && !*flag; i++) {
        ev_tstamp t0 = ev_time();
        ev_run(loop, EVRUN_ONCE);
        if (!*flag && ev_time() - t0 < 0.001) usleep(10000);
    }
}

START_TEST(test_frame_that_cannot_be_queued_closes_the_stream_at_once)
{
    if (!private_lo()) {
        fprintf(stderr, "test_net_tcp: no private network namespace here: not run\n");
        return;
    }
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    guts_net_log log = {.level = GUTS_LOG_ERROR};
    end server, client;
    memset(&server, 0, sizeof server);
    memset(&client, 0, sizeof client);
    guts_net_sa a;
    memset(&a, 0, sizeof a);
    a.in.sin_family = AF_INET;
    a.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(guts_net_tcp_open(&server.tcp, loop, &a, 1 << 20, &cbs, &log), 0);
    ck_assert_int_eq(guts_net_tcp_open(&client.tcp, loop, &a, 1 << 20, &cbs, &log), 0);
    guts_net_conn *cc;
    ck_assert_int_eq(guts_net_tcp_connect(&client.tcp, 1, &server.tcp.local, &cc), 0);
    run_until(loop, &server.opened);
    run_until(loop, &client.opened);
    ck_assert_ptr_nonnull(server.conn);

    /* a frame that needs the write queue to grow, with no memory for it */
    size_t body = 100000;
    uint8_t *frame = calloc(1, GUTS_FRAME_HDR + body);
    ck_assert_ptr_nonnull(frame);
    guts_wire_frame_hdr((uint32_t)body, frame);
    fail_realloc_over = 1;
    int rc = guts_net_tcp_send_raw(&server.tcp, server.conn, frame, GUTS_FRAME_HDR + body);
    fail_realloc_over = 0;
    free(frame);
    ck_assert_int_eq(rc, GUTS_ENOMEM);
    ck_assert_int_eq(server.closed, 1);
    ck_assert_int_eq(server.err, GUTS_ENOMEM);
    /* the peer sees the end now, not after GUTS_NET_IDLE_TIMEOUT_S */
    ev_tstamp t0 = ev_time();
    run_until(loop, &client.closed);
    ck_assert_int_eq(client.closed, 1);
    ck_assert(ev_time() - t0 < GUTS_NET_IDLE_TIMEOUT_S / 2);
    guts_net_tcp_shutdown(&client.tcp);
    guts_net_tcp_shutdown(&server.tcp);
    ev_loop_destroy(loop);
}
END_TEST

static Suite *tcp_suite(void)
{
    Suite *s = suite_create("net_tcp");
    TCase *t = tcase_create("streams");
    tcase_add_test(t, test_frame_that_cannot_be_queued_closes_the_stream_at_once);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return test_run(tcp_suite(), CK_FORK_GETENV);
}
