/* tmpdir.c - test support: temporary directories. */
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

void ts_mkdtemp(char *out, size_t outlen, const char *tag)
{
    snprintf(out, outlen, "/tmp/ringd-test-%s-XXXXXX", tag);
    if (mkdtemp(out) == NULL)
        abort();
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ts_rmtree(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
