/* test_run.h - the main of every Check program in tests/unit: run suite s
 * (forking per test as fork says; CK_FORK_GETENV: Check's default, the
 * CK_FORK environment variable) and turn its failures into the exit code
 * ctest reads. */
#ifndef GUTS_TEST_RUN_H
#define GUTS_TEST_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int test_run(Suite *s, enum fork_status fork)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, fork);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
