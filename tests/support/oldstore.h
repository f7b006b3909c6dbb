/* oldstore.h - test support: a database as an older ringd wrote it, built with LMDB directly (not through store_open). */
#ifndef RINGD_TEST_OLDSTORE_H
#define RINGD_TEST_OLDSTORE_H

#include <stddef.h>
#include <stdint.h>

/* Creates dir as ringd 0.1's format ringd-users-v1 made it: the meta table
 * with that marker, and users[i] stored under ids[i] as bare JSON (the
 * values of that format). Returns 0 or -1 (asserts on LMDB errors). */
int ts_write_v1_store(const char *dir, const uint64_t *ids, const char *const *records, size_t n);

#endif
