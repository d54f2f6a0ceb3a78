/* test_store_util.h - the store tests' fixture: a data directory per test.
 *
 * One base directory per test case, made and removed by the parent process
 * (an unchecked fixture), so a failing test, whose process exits without its
 * teardown, still leaves nothing behind; each test opens `data` on its own
 * subdirectory `tmpdir`. Include once, after <check.h>, with
 * STORE_TEST_NAME defined ("store", "large": the directory's name).
 */
#ifndef GUTS_TEST_STORE_UTIL_H
#define GUTS_TEST_STORE_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "guts/store.h"

static char basedir[64], tmpdir[96];
static guts_data *data;

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void base_setup(void)
{
    snprintf(basedir, sizeof basedir, "/tmp/guts-test-" STORE_TEST_NAME "-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(basedir));
}

static void base_teardown(void)
{
    nftw(basedir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/t-XXXXXX", basedir);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(guts_data_open(tmpdir, GUTS_DATA_CREATE, &data), GUTS_OK);
}

static void teardown(void)
{
    guts_data_close(data);
    data = NULL;
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
