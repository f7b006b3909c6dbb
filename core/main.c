/* main.c - the ringd binary: dispatches to the serve, import, demo, follow and upgrade subcommands. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/server.h"
#include "store/follow.h"
#include "store/store.h"

#ifdef RINGD_WITH_MIMALLOC
#include <mimalloc.h>
#endif

static const char usage[] = "usage: ringd <command> [options]\n"
                            "  serve    serve user lookups over HTTP/1.1 and HTTP/2\n"
                            "  import   load users from JSON Lines into the database\n"
                            "  demo     create a database of generated users\n"
                            "  follow   keep the database in step with a PostgreSQL table (logical replication)\n"
                            "  upgrade  rewrite a database written by an older ringd in the current format\n"
                            "  version  print the version\n"
                            "Run `ringd <command> --help` for a command's options.\n";

int main(int argc, char **argv)
{
    const char *lvl = getenv("RINGD_LOG_LEVEL");
    if (lvl != NULL && log_parse_level(lvl, &log_min_level) != 0) {
        fprintf(stderr, "ringd: RINGD_LOG_LEVEL must be debug, info, warn or error\n");
        return 2;
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) {
        /* Logged by the server once it listens: an option error or --help
         * comes alone, not after a line about the allocator. */
#ifdef RINGD_WITH_MIMALLOC
        char allocator[64];
        snprintf(allocator, sizeof(allocator), "name=mimalloc version=%d", mi_version());
#else
        const char *allocator = "name=system"; /* sanitizer builds keep their own allocator */
#endif
        return server_main(argc - 1, argv + 1, allocator);
    }
    if (strcmp(cmd, "import") == 0)
        return store_import_main(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return store_demo_main(argc - 1, argv + 1);
    if (strcmp(cmd, "follow") == 0)
        return follow_main(argc - 1, argv + 1);
    if (strcmp(cmd, "upgrade") == 0)
        return store_upgrade_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ringd %s\n", RINGD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "ringd: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
