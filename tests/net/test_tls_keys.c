/* test_tls_keys.c - the --tls-ticket-key-file format: 1 to 8 keys of 80 raw bytes (name, HMAC secret, AES key). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "net/tls.h"
#include "tests/support/tmpdir.h"

static char dir[256];

static void setup(void)
{
    ts_mkdtemp(dir, sizeof(dir), "tlskeys");
}

static void teardown(void)
{
    ts_rmtree(dir);
}

/* Writes n bytes (byte i = i % 251) to dir/name; returns the path. */
static const char *write_file(const char *name, size_t n)
{
    static char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++)
        fputc((int)(i % 251), f);
    fclose(f);
    return path;
}

TestSuite(tls_keys, .init = setup, .fini = teardown);

Test(tls_keys, one_and_two_keys_in_nginx_layout)
{
    struct tls_ticket_key keys[TLS_MAX_TICKET_KEYS];
    char err[256];
    cr_assert_eq(tls_ticket_keys_load(write_file("one", 80), keys, err, sizeof(err)), 1, "%s", err);
    cr_expect_eq(keys[0].name[0], 0);
    cr_expect_eq(keys[0].name[15], 15);
    cr_expect_eq(keys[0].hmac[0], 16, "the HMAC secret follows the name");
    cr_expect_eq(keys[0].aes[0], 48, "the AES key comes last");
    cr_expect_eq(keys[0].aes[31], 79);
    cr_assert_eq(tls_ticket_keys_load(write_file("two", 160), keys, err, sizeof(err)), 2, "%s", err);
    cr_expect_eq(keys[1].name[0], 80, "the second key starts at byte 80");
    cr_assert_eq(tls_ticket_keys_load(write_file("eight", 640), keys, err, sizeof(err)), 8, "%s", err);
}

Test(tls_keys, wrong_sizes_and_missing_files)
{
    struct tls_ticket_key keys[TLS_MAX_TICKET_KEYS];
    char err[256];
    static const size_t bad[] = {0, 1, 48, 79, 81, 159, 720};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "bad%zu", bad[i]);
        err[0] = '\0';
        cr_expect_eq(tls_ticket_keys_load(write_file(name, bad[i]), keys, err, sizeof(err)), -1, "%zu bytes", bad[i]);
        cr_expect_not_null(strstr(err, "80 bytes"), "the error says the format: %s", err);
    }
    char path[400];
    snprintf(path, sizeof(path), "%s/absent", dir);
    cr_expect_eq(tls_ticket_keys_load(path, keys, err, sizeof(err)), -1);
    cr_expect_not_null(strstr(err, "No such file"), "%s", err);
}
