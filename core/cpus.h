/* cpus.h - how many shards the machine gives this process: the CPUs of its affinity mask, capped by its cgroup v2 quota. */
#ifndef RINGD_CPUS_H
#define RINGD_CPUS_H

#include <stddef.h>

/* What decided the default shard count, for the start-up log line. */
struct cpus_limit {
    unsigned affinity;      /* CPUs in the affinity mask (sched_getaffinity), at least 1 */
    unsigned quota;         /* ceil(quota / period) of the tightest cpu.max from our cgroup up; 0: no quota */
    char quota_file[512];   /* the cpu.max that set quota; "" when none did */
    unsigned count;         /* min(affinity, quota when set), at least 1 */
    const char *decided_by; /* "affinity" or "cpu_max" (static text) */
};

/* Parses one cpu.max ("max 100000" or "QUOTA PERIOD", both in us) into the
 * CPUs it allows, rounded up: 0 for "max" (no limit). Returns 0, or -1 when
 * the text is neither form. */
int cpus_parse_cpu_max(const char *text, unsigned *cpus);

/* The tightest cpu.max from cgroup directory leaf up to top (both included;
 * top must be leaf or one of its ancestors, e.g. the cgroup2 mount point):
 * its CPUs (rounded up) and the file into file[filelen]. Directories without
 * a cpu.max (the root, or the cpu controller not enabled there) and
 * unreadable files set no limit. Returns 0 when none does. */
unsigned cpus_quota_in(const char *leaf, const char *top, char *file, size_t filelen);

/* This process's limits: the affinity mask, and the quota of its cgroup v2
 * directory (the "0::" line of /proc/self/cgroup under the cgroup2 mount of
 * /proc/self/mountinfo), or of the directory RINGD_CGROUP_DIR names (read
 * alone; for tests and for runtimes that mount the cgroup elsewhere). No
 * cgroup v2 (a v1-only host): the affinity mask alone. */
void cpus_detect(struct cpus_limit *out);

/* The CPU shard i is pinned to: the (i mod n)-th CPU of the calling thread's
 * affinity mask, so that shards stay inside a container's cpuset. -1 when
 * the mask cannot be read. */
int cpus_nth(unsigned i);

#endif
