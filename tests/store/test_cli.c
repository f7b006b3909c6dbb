/* test_cli.c - store/cli.c: flag values, strict counts, log-safe text. */
#include "store/cli.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

Test(cli, flag_value_forms)
{
    char *argv[] = {"demo", "--db", "a", "--db=b", "--dbx", "--db", NULL};
    int argc = 6;
    const char *v = NULL;
    int i = 1;
    cr_assert_eq(store_cli_flag_value(argc, argv, &i, "--db", &v), 1);
    cr_assert_str_eq(v, "a");
    cr_assert_eq(i, 2, "separate value consumed");
    i = 3;
    cr_assert_eq(store_cli_flag_value(argc, argv, &i, "--db", &v), 1);
    cr_assert_str_eq(v, "b");
    cr_assert_eq(i, 3);
    i = 4;
    cr_assert_eq(store_cli_flag_value(argc, argv, &i, "--db", &v), 0, "--dbx is another flag");
    i = 5;
    cr_assert_eq(store_cli_flag_value(argc, argv, &i, "--db", &v), -1, "missing value");
}

Test(cli, parse_u64_strict)
{
    uint64_t v = 0;
    cr_assert_eq(store_cli_parse_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(store_cli_parse_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(store_cli_parse_u64(bad[i], &v), -1, "'%s' must be refused", bad[i]);
}

Test(cli, log_safe)
{
    char out[8];
    cr_assert_str_eq(store_cli_log_safe("a\"b\\c\nd", out, sizeof(out)), "a'b?c?d");
    cr_assert_str_eq(store_cli_log_safe("0123456789", out, sizeof(out)), "0123456", "truncated to fit");
}
