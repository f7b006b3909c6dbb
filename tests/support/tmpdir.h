/* tmpdir.h - test support: a fresh temporary directory per test, removed with everything in it. */
#ifndef RINGD_TEST_TMPDIR_H
#define RINGD_TEST_TMPDIR_H

#include <stddef.h>

/* Creates /tmp/ringd-test-<tag>-XXXXXX into out (outlen >= 64). Aborts on failure. */
void ts_mkdtemp(char *out, size_t outlen, const char *tag);

/* Removes dir and everything below it (no symlink is followed). */
void ts_rmtree(const char *dir);

#endif
