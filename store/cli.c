/* cli.c - pieces shared by the store's subcommands (`ringd import`, `ringd demo`): flag values and log-safe text. */
#include "store/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_cli_flag_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ringd %s: %s needs a value\n", argv[0], name);
        return -1;
    }
    *i += 1;
    *value = argv[*i];
    return 1;
}

int store_cli_parse_u64(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

char *store_cli_log_safe(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c == '"' ? '\'' : (c < 0x20 || c == 0x7f || c == '\\') ? '?' : (char)c;
    }
    out[i] = '\0';
    return out;
}
