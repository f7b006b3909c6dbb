/* import.h - test support: run `ringd import` in a child process, as it runs beside a server. */
#ifndef RINGD_TEST_IMPORT_H
#define RINGD_TEST_IMPORT_H

#include <stdbool.h>

/* Writes text to dir/in.jsonl and imports it into the store db (--replace when
 * replace) with store_import_main in a forked child, its stderr silenced. A
 * child because LMDB forbids opening one environment twice in a process:
 * closing the second would drop the first one's locks. Returns the child's
 * exit code (asserts on a failed fork or write). */
int ts_import_in_child(const char *dir, const char *db, const char *text, bool replace);

#endif
