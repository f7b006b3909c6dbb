/* cpus.c - the default shard count from the affinity mask and the cgroup v2 cpu.max quota (containers). */
#include "core/cpus.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cpus_parse_cpu_max(const char *text, unsigned *cpus)
{
    char quota[32];
    unsigned long period;
    /* cgroup v2: "$MAX $PERIOD" (cgroup-v2.rst, cpu.max), MAX being "max" or microseconds. */
    if (sscanf(text, "%31s %lu", quota, &period) != 2 || period == 0)
        return -1;
    if (strcmp(quota, "max") == 0) {
        *cpus = 0;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long q = strtoul(quota, &end, 10);
    if (*end != '\0' || errno != 0 || q == 0 || quota[0] < '0' || quota[0] > '9')
        return -1;
    unsigned long n = (q + period - 1) / period; /* 1.5 CPUs of quota keep 2 shards busy, not 1 */
    *cpus = n > 0xffffu ? 0xffffu : (unsigned)n;
    return 0;
}

/* Reads dir/cpu.max; 0 when there is none or it says "max". */
static unsigned quota_of(const char *dir, char *file, size_t filelen)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/cpu.max", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[128];
    unsigned cpus = 0;
    if (fgets(line, sizeof(line), f) == NULL || cpus_parse_cpu_max(line, &cpus) != 0)
        cpus = 0;
    fclose(f);
    if (cpus != 0)
        snprintf(file, filelen, "%s", path);
    return cpus;
}

unsigned cpus_quota_in(const char *leaf, const char *top, char *file, size_t filelen)
{
    char dir[1024], best_file[1024] = "";
    snprintf(dir, sizeof(dir), "%s", leaf);
    size_t top_len = strlen(top);
    while (top_len > 1 && top[top_len - 1] == '/')
        top_len--;
    unsigned best = 0;
    for (;;) {
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/')
            dir[--len] = '\0';
        char f[1024];
        unsigned q = quota_of(dir, f, sizeof(f));
        /* A parent's quota caps its children too: the tightest one wins. */
        if (q != 0 && (best == 0 || q < best)) {
            best = q;
            snprintf(best_file, sizeof(best_file), "%s", f);
        }
        if (len <= top_len || strncmp(dir, top, top_len) != 0)
            break;
        char *slash = strrchr(dir, '/');
        if (slash == NULL || slash == dir)
            break;
        *slash = '\0';
    }
    if (file != NULL && filelen > 0)
        snprintf(file, filelen, "%s", best_file);
    return best;
}

/* The cgroup2 mount point (from mountinfo) into out; -1 when there is none. */
static int cgroup2_mount(char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (f == NULL)
        return -1;
    char line[4096];
    int rc = -1;
    while (rc != 0 && fgets(line, sizeof(line), f) != NULL) {
        /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER" */
        char *sep = strstr(line, " - ");
        if (sep == NULL || strncmp(sep + 3, "cgroup2 ", 8) != 0)
            continue;
        char mnt[1024];
        if (sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 && strlen(mnt) < outlen) {
            memcpy(out, mnt, strlen(mnt) + 1);
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

/* This process's cgroup v2 path ("/a/b", from the "0::" line); -1 when there is none. */
static int cgroup2_path(char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f == NULL)
        return -1;
    char line[4096];
    int rc = -1;
    while (rc != 0 && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        size_t len = strlen(line + 3);
        if (len < outlen) {
            memcpy(out, line + 3, len + 1);
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

void cpus_detect(struct cpus_limit *out)
{
    memset(out, 0, sizeof(*out));
    cpu_set_t set;
    CPU_ZERO(&set);
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
    out->affinity = n > 0 ? (unsigned)n : 1;

    const char *dir = getenv("RINGD_CGROUP_DIR");
    if (dir != NULL && dir[0] != '\0') {
        out->quota = cpus_quota_in(dir, dir, out->quota_file, sizeof(out->quota_file));
    } else {
        char mnt[1024], path[1024], leaf[2048];
        if (cgroup2_mount(mnt, sizeof(mnt)) == 0 && cgroup2_path(path, sizeof(path)) == 0) {
            snprintf(leaf, sizeof(leaf), "%s%s", mnt, strcmp(path, "/") == 0 ? "" : path);
            out->quota = cpus_quota_in(leaf, mnt, out->quota_file, sizeof(out->quota_file));
        }
    }
    out->count = out->affinity;
    out->decided_by = "affinity";
    if (out->quota != 0 && out->quota < out->affinity) {
        out->count = out->quota;
        out->decided_by = "cpu_max";
    }
}

int cpus_nth(unsigned i)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return -1;
    int n = CPU_COUNT(&set);
    if (n <= 0)
        return -1;
    unsigned want = i % (unsigned)n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &set) && want-- == 0)
            return cpu;
    }
    return -1;
}
