/* import.c - test support: `ringd import` in a child process (see import.h). */
#include "tests/support/import.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

int ts_import_in_child(const char *dir, const char *db, const char *text, bool replace)
{
    char file[512];
    snprintf(file, sizeof(file), "%s/in.jsonl", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f, "%s", file);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        char *argv[] = {"import", "--db", (char *)db, replace ? "--replace" : "--", file, NULL};
        _exit(store_import_main(5, argv));
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}
