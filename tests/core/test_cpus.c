/* test_cpus.c - core/cpus.c: cpu.max parsing, the tightest quota up a cgroup tree (fixture directories), the affinity mask. */
#include "core/cpus.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

Test(cpus, cpu_max_forms)
{
    unsigned n = 99;
    cr_assert_eq(cpus_parse_cpu_max("max 100000\n", &n), 0);
    cr_expect_eq(n, 0, "max: no limit");
    cr_assert_eq(cpus_parse_cpu_max("200000 100000\n", &n), 0);
    cr_expect_eq(n, 2);
    cr_assert_eq(cpus_parse_cpu_max("150000 100000", &n), 0);
    cr_expect_eq(n, 2, "1.5 CPUs round up");
    cr_assert_eq(cpus_parse_cpu_max("1000 100000", &n), 0);
    cr_expect_eq(n, 1, "a sliver of a CPU is still one shard");
    cr_assert_eq(cpus_parse_cpu_max("400000 50000", &n), 0);
    cr_expect_eq(n, 8, "the period need not be the default 100 ms");
    cr_expect_eq(cpus_parse_cpu_max("", &n), -1);
    cr_expect_eq(cpus_parse_cpu_max("max", &n), -1, "the period is always there");
    cr_expect_eq(cpus_parse_cpu_max("-5 100000", &n), -1);
    cr_expect_eq(cpus_parse_cpu_max("12x 100000", &n), -1);
    cr_expect_eq(cpus_parse_cpu_max("100000 0", &n), -1);
}

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    if (text == NULL)
        return;
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_root(void)
{
    snprintf(root, sizeof(root), "/tmp/ringd-cpusXXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void remove_root(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    system(cmd);
}

/* A tree shaped like a Kubernetes node's: kubepods.slice limits nothing, the pod 3 CPUs, its container 1.5. */
Test(cpus, tightest_quota_from_the_leaf_up, .init = make_root, .fini = remove_root)
{
    put("cpu.max", NULL); /* the root cgroup has no cpu.max */
    put("kubepods.slice/cpu.max", "max 100000\n");
    put("kubepods.slice/pod1/cpu.max", "300000 100000\n");
    put("kubepods.slice/pod1/ctr/cpu.max", "150000 100000\n");
    put("kubepods.slice/pod1/ctr2/cpu.max", "max 100000\n");
    put("kubepods.slice/pod1/ctr3/sub/x", "");
    char leaf[256], file[512];
    snprintf(leaf, sizeof(leaf), "%s/kubepods.slice/pod1/ctr", root);
    cr_expect_eq(cpus_quota_in(leaf, root, file, sizeof(file)), 2);
    cr_expect(strstr(file, "/ctr/cpu.max") != NULL, "%s", file);

    snprintf(leaf, sizeof(leaf), "%s/kubepods.slice/pod1/ctr2", root);
    cr_expect_eq(cpus_quota_in(leaf, root, file, sizeof(file)), 3, "the pod's quota caps a container without one");
    cr_expect(strstr(file, "/pod1/cpu.max") != NULL, "%s", file);

    snprintf(leaf, sizeof(leaf), "%s/kubepods.slice/pod1/ctr3/sub/", root);
    cr_expect_eq(cpus_quota_in(leaf, root, file, sizeof(file)), 3, "directories without cpu.max are passed through");

    snprintf(leaf, sizeof(leaf), "%s/kubepods.slice/pod1/ctr", root);
    char top[256];
    snprintf(top, sizeof(top), "%s/kubepods.slice/pod1/ctr", root);
    put("kubepods.slice/pod1/ctr/cpu.max", "max 100000\n");
    cr_expect_eq(cpus_quota_in(leaf, top, file, sizeof(file)), 0, "nothing above top is read");
    cr_expect_str_eq(file, "");

    snprintf(leaf, sizeof(leaf), "%s/kubepods.slice", root);
    cr_expect_eq(cpus_quota_in(leaf, root, file, sizeof(file)), 0, "max everywhere: no limit");
}

Test(cpus, detect_counts_the_affinity_mask_and_caps_it, .init = make_root, .fini = remove_root)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    unsigned mask = (unsigned)CPU_COUNT(&set);

    put("cpu.max", "max 100000\n");
    setenv("RINGD_CGROUP_DIR", root, 1);
    struct cpus_limit l;
    cpus_detect(&l);
    cr_expect_eq(l.affinity, mask);
    cr_expect_eq(l.count, mask);
    cr_expect_eq(l.quota, 0);
    cr_expect_str_eq(l.decided_by, "affinity");

    put("cpu.max", "1 100000\n");
    cpus_detect(&l);
    cr_expect_eq(l.quota, 1);
    cr_expect_eq(l.count, 1);
    cr_expect_str_eq(l.decided_by, mask > 1 ? "cpu_max" : "affinity");
    if (mask > 1)
        cr_expect(strstr(l.quota_file, root) == l.quota_file, "%s", l.quota_file);

    put("cpu.max", "100000000 100000\n"); /* 1000 CPUs of quota: the mask decides */
    cpus_detect(&l);
    cr_expect_eq(l.count, mask);
    cr_expect_str_eq(l.decided_by, "affinity");
    unsetenv("RINGD_CGROUP_DIR");

    /* The process's own cgroup: whatever it is, the count is within the mask. */
    cpus_detect(&l);
    cr_expect(l.count >= 1 && l.count <= mask);
}

/* Shards pin inside the mask: a container given CPUs 2-3 must not pin to 0. */
Test(cpus, nth_stays_in_the_mask)
{
    cpu_set_t old, one;
    CPU_ZERO(&old);
    cr_assert_eq(sched_getaffinity(0, sizeof(old), &old), 0);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &old))
            last = c;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
    cr_expect_eq(cpus_nth(0), last);
    cr_expect_eq(cpus_nth(5), last, "shards beyond the mask wrap around");
    cr_assert_eq(sched_setaffinity(0, sizeof(old), &old), 0);
    int first = -1;
    for (int c = CPU_SETSIZE - 1; c >= 0; c--)
        if (CPU_ISSET(c, &old))
            first = c;
    cr_expect_eq(cpus_nth(0), first);
    cr_expect_eq(cpus_nth((unsigned)CPU_COUNT(&old)), first);
}
