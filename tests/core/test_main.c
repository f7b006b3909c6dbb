/* test_main.c - core/main.c, the binary as an operator first meets it: its commands, what it prints
 * before serving, and that the README documents every command and flag it has. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/support/server.h"

/* Runs a shell command, returns everything it printed (stdout and stderr) plus a final "rc=N" line. */
static char *run(const char *cmdline)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s 2>&1; echo rc=$?", cmdline);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 1 << 16, len = 0, n;
    char *out = malloc(cap);
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    pclose(p);
    return out;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(main, an_option_error_comes_alone)
{
    char *out = run(RINGD_BIN " serve --shards zero");
    cr_expect(strstr(out, "msg=allocator") == NULL, "an allocator line before the error:\n%s", out);
    cr_expect(strncmp(out, "ringd serve: --shards", 21) == 0, "the error is not the first line:\n%s", out);
    cr_expect(strstr(out, "rc=2") != NULL, "%s", out);
    free(out);
    out = run(RINGD_BIN " serve --help");
    cr_expect(strncmp(out, "usage: ringd serve", 18) == 0, "%s", out);
    free(out);
}

Test(main, the_allocator_is_logged_once_serving, .timeout = 60)
{
    struct test_server ts;
    cr_assert_eq(ts_launch(&ts, 10, NULL), 0);
    char *log = read_file(ts.log);
    /* ts_launch returns at the listening line; the allocator line follows it. */
    for (int i = 0; i < 100 && strstr(log, "msg=allocator") == NULL; i++) {
        free(log);
        struct timespec t = {0, 20000000};
        nanosleep(&t, NULL);
        log = read_file(ts.log);
    }
    const char *listening = strstr(log, "msg=listening"), *alloc = strstr(log, "msg=allocator name=");
    cr_expect_not_null(alloc, "no allocator line:\n%s", log);
    cr_expect(alloc == NULL || (listening != NULL && alloc > listening), "allocator line before listening:\n%s", log);
    free(log);
    cr_expect_eq(ts_stop(&ts), 0);
}

Test(main, version)
{
    char *out = run(RINGD_BIN " version");
    cr_expect_str_eq(out, "ringd " RINGD_VERSION "\nrc=0\n");
    free(out);
}

/* Every command of `ringd --help` and every flag of `ringd serve --help` is in the README. */
Test(main, readme_documents_every_command_and_flag)
{
    char *readme = read_file(RINGD_SOURCE_DIR "/README.md");
    char *usage = run(RINGD_BIN " --help");
    int commands = 0;
    for (char *line = strtok(usage, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char cmd[32];
        if (line[0] != ' ' || sscanf(line, " %31s", cmd) != 1)
            continue;
        char want[64];
        snprintf(want, sizeof(want), "\nringd %s", cmd);
        cr_expect(strstr(readme, want) != NULL, "README's command list lacks `ringd %s`", cmd);
        commands++;
    }
    cr_expect_geq(commands, 4, "commands found in ringd --help: %d", commands);
    free(usage);
    char *help = run(RINGD_BIN " serve --help");
    int flags = 0;
    for (char *p = help; (p = strstr(p, " --")) != NULL; p += 3) {
        size_t n = strspn(p + 1, "-abcdefghijklmnopqrstuvwxyz0123456789");
        char flag[64];
        snprintf(flag, sizeof(flag), "`%.*s`", (int)n, p + 1);
        if (strcmp(flag, "`--help`") == 0)
            continue;
        cr_expect(strstr(readme, flag) != NULL, "README does not document %s", flag);
        flags++;
    }
    cr_expect_geq(flags, 10, "flags found in serve --help: %d", flags);
    free(help);
    free(readme);
}
