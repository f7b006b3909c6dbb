/* cli.h - pieces shared by the store's subcommands (`ringd import`, `ringd demo`): flag values and log-safe text. */
#ifndef RINGD_STORE_CLI_H
#define RINGD_STORE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Matches argv[*i] against a flag taking a value, spelled "--name VALUE" or
 * "--name=VALUE". Returns 1 and sets *value (pointing into argv) and advances
 * *i past a separate value; 0 when argv[*i] is another argument; -1 when the
 * value is missing (a message is printed to stderr). */
int store_cli_flag_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Parses a decimal count with nothing else around it (no sign, no spaces). Returns 0 or -1. */
int store_cli_parse_u64(const char *s, uint64_t *out);

/* Copies s into out (outlen > 0) so it can sit inside a quoted log value:
 * '"' becomes '\'', '\\' and control bytes become '?', truncated to fit.
 * Returns out. */
char *store_cli_log_safe(const char *s, char *out, size_t outlen);

#endif
