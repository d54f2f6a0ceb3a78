/* test_net_pktline.c - git's pkt-line reader (src/net/pktline.c), the first
 * thing git smart HTTP runs on a client's bytes: data packets give their
 * payload without the trailing LF, the special packets are told apart, and
 * every malformed input (bad hex, 0003, lengths past the buffer or over
 * 65520, a header cut short) is refused without moving the position. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "guts/guts.h"
#include "pktline.h"
#include "test_run.h"

static int next(const char *s, size_t len, size_t *pos, guts_pkt *p)
{
    return guts_pkt_next((const uint8_t *)s, len, pos, p);
}

START_TEST(test_data_packet_gives_its_payload_without_the_newline)
{
    const char ok[] = "0014command=ls-refs\n";
    size_t pos = 0;
    guts_pkt p;
    ck_assert_int_eq(next(ok, strlen(ok), &pos, &p), 1);
    ck_assert_int_eq(p.kind, GUTS_PKT_DATA);
    ck_assert_uint_eq(p.len, 15);
    ck_assert(memcmp(p.data, "command=ls-refs", 15) == 0);
    ck_assert_uint_eq(pos, strlen(ok));
    ck_assert_int_eq(next(ok, strlen(ok), &pos, &p), 0);
}
END_TEST

START_TEST(test_special_packets_are_told_apart)
{
    const char s[] = "000000010002";
    size_t pos = 0;
    guts_pkt p;
    int kinds[] = {GUTS_PKT_FLUSH, GUTS_PKT_DELIM, GUTS_PKT_END};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(next(s, 12, &pos, &p), 1);
        ck_assert_int_eq(p.kind, kinds[i]);
        ck_assert_uint_eq(p.len, 0);
    }
    ck_assert_int_eq(next(s, 12, &pos, &p), 0);
}
END_TEST

START_TEST(test_uppercase_hex_and_empty_payload_are_taken)
{
    const char s[] = "0004000A12345\n";
    size_t pos = 0;
    guts_pkt p;
    ck_assert_int_eq(next(s, strlen(s), &pos, &p), 1);
    ck_assert_uint_eq(p.len, 0);
    ck_assert_int_eq(next(s, strlen(s), &pos, &p), 1);
    ck_assert_uint_eq(p.len, 5);
    ck_assert(memcmp(p.data, "12345", 5) == 0);
}
END_TEST

/* Each must be refused, with the position left where it was. */
static const struct {
    const char *name, *bytes;
} bad[] = {
    {"non-hex length", "00g4want"},
    {"a sign in the length", "-004"},
    {"0003 is no packet", "0003"},
    {"length past the end (truncated)", "0032want 1234"},
    {"header cut short", "00"},
    {"length over 65520", "fff1"},
    {"the largest length with its bytes missing", "fff0"},
    {"spaces in the length", " 014"},
};

START_TEST(test_malformed_packets_are_refused)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t pos = 0;
        guts_pkt p;
        int rc = next(bad[i].bytes, strlen(bad[i].bytes), &pos, &p);
        ck_assert_msg(rc == GUTS_EINVAL, "%s: got %d", bad[i].name, rc);
        ck_assert_msg(pos == 0, "%s: position moved", bad[i].name);
    }
}
END_TEST

START_TEST(test_largest_packet_is_taken)
{
    size_t n = GUTS_PKT_MAX;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    memcpy(s, "fff0", 4);
    memset(s + 4, 'x', n - 4);
    size_t pos = 0;
    guts_pkt p;
    ck_assert_int_eq(next(s, n, &pos, &p), 1);
    ck_assert_uint_eq(p.len, n - 4);
    free(s);
}
END_TEST

START_TEST(test_header_writes_the_whole_length)
{
    char h[4];
    guts_pkt_header(h, 15);
    ck_assert(memcmp(h, "0013", 4) == 0);
    guts_pkt_header(h, GUTS_PKT_MAX - 4);
    ck_assert(memcmp(h, "fff0", 4) == 0);
}
END_TEST

START_TEST(test_is_matches_a_word_and_its_argument)
{
    const char s[] = "0032want 0123456789012345678901234567890123456789\n";
    size_t pos = 0;
    guts_pkt p;
    const uint8_t *arg;
    size_t alen;
    ck_assert_int_eq(next(s, strlen(s), &pos, &p), 1);
    ck_assert(guts_pkt_is(&p, "want", &arg, &alen));
    ck_assert_uint_eq(alen, 40);
    ck_assert(!guts_pkt_is(&p, "wan", &arg, &alen));
    ck_assert(!guts_pkt_is(&p, "want-ref", &arg, &alen));
    const char d[] = "0009done\n";
    pos = 0;
    ck_assert_int_eq(next(d, strlen(d), &pos, &p), 1);
    ck_assert(guts_pkt_is(&p, "done", &arg, &alen));
    ck_assert_ptr_null(arg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("net_pktline");
    TCase *c = tcase_create("pktline");
    tcase_add_test(c, test_data_packet_gives_its_payload_without_the_newline);
    tcase_add_test(c, test_special_packets_are_told_apart);
    tcase_add_test(c, test_uppercase_hex_and_empty_payload_are_taken);
    tcase_add_test(c, test_malformed_packets_are_refused);
    tcase_add_test(c, test_largest_packet_is_taken);
    tcase_add_test(c, test_header_writes_the_whole_length);
    tcase_add_test(c, test_is_matches_a_word_and_its_argument);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return test_run(suite(), CK_NOFORK);
}
