/* test_progress.c - the one progress line of the front ends: what it says
 * with and without a known total, when it gives an ETA, and that it draws
 * nothing when told not to (stderr not a terminal). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "test_run.h"

START_TEST(test_line_with_a_total_has_count_bytes_rate_and_eta)
{
    char buf[GUTS_PROGRESS_LINE_MAX];
    /* 250 of 1000 objects in 2 s: 750 left at 125/s is 6 s. */
    guts_progress_format(buf, sizeof buf, "pull a/b", 250, 1000, 5000000, 2.0);
    ck_assert_str_eq(buf, "pull a/b: 250/1000 objects, 5.0 MB, 2.5 MB/s, ETA 0:06");
}
END_TEST

START_TEST(test_line_without_a_total_has_no_eta)
{
    char buf[GUTS_PROGRESS_LINE_MAX];
    guts_progress_format(buf, sizeof buf, "counting", 42, 0, 0, 3.0);
    ck_assert_str_eq(buf, "counting: 42 objects");
    guts_progress_format(buf, sizeof buf, "pull", 10, 0, 2000000, 1.0);
    ck_assert_str_eq(buf, "pull: 10 objects, 2.0 MB, 2.0 MB/s");
}
END_TEST

START_TEST(test_no_eta_before_half_a_second_or_when_done)
{
    char buf[GUTS_PROGRESS_LINE_MAX];
    guts_progress_format(buf, sizeof buf, "x", 1, 10, 0, 0.1);
    ck_assert_str_eq(buf, "x: 1/10 objects");
    guts_progress_format(buf, sizeof buf, "x", 10, 10, 0, 5.0);
    ck_assert_str_eq(buf, "x: 10/10 objects");
}
END_TEST

START_TEST(test_a_long_line_is_cut_to_the_buffer)
{
    char buf[64];
    volatile size_t len = 16; /* not a constant: gcc would refuse the truncation */
    size_t n = guts_progress_format(buf, len, "a-rather-long-name", 1, 2, 3, 1.0);
    ck_assert_uint_eq(n, 15);
    ck_assert_uint_eq(strlen(buf), 15);
}
END_TEST

START_TEST(test_off_draws_nothing)
{
    fflush(stderr);
    int saved = dup(2), fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    dup2(fds[1], 2);
    guts_progress p;
    guts_progress_start(&p, "quiet", 0);
    guts_progress_show(&p, 1, 2, 3, 0);
    guts_progress_show(&p, 2, 2, 3, 1);
    fflush(stderr);
    dup2(saved, 2);
    close(fds[1]);
    char b[8];
    ck_assert_int_eq((int)read(fds[0], b, sizeof b), 0);
    close(fds[0]);
    close(saved);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tcase_create("progress");
    tcase_add_test(tc, test_line_with_a_total_has_count_bytes_rate_and_eta);
    tcase_add_test(tc, test_line_without_a_total_has_no_eta);
    tcase_add_test(tc, test_no_eta_before_half_a_second_or_when_done);
    tcase_add_test(tc, test_a_long_line_is_cut_to_the_buffer);
    tcase_add_test(tc, test_off_draws_nothing);
    suite_add_tcase(s, tc);
    return test_run(s, CK_FORK_GETENV);
}
