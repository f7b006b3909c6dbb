/* test_timer.c - core/timer.c: the hashed wheel fires each node once, in order, at its tick, across revolutions. */
#include "core/timer.h"

#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct item {
    int id;
    uint64_t expire_ms;
    int fired;
    uint64_t fired_at;
    int readd_times; /* re-add itself this many times, readd_delta_ms later */
    uint64_t readd_delta_ms;
    struct item *victim; /* timer_del'd from this item's callback */
    struct timer_node node;
};

struct log {
    struct timer_wheel *w;
    uint64_t now;
    int order[256];
    int n;
};

static void on_fire(struct timer_node *node, void *arg)
{
    struct log *lg = arg;
    struct item *it = container_of(node, struct item, node);
    cr_assert_not(timer_linked(node), "a fired node is unlinked before its callback");
    cr_assert_geq(lg->now, it->expire_ms, "item %d fired at %llu before its time %llu", it->id, (unsigned long long)lg->now,
                  (unsigned long long)it->expire_ms);
    it->fired++;
    it->fired_at = lg->now;
    if (lg->n < 256)
        lg->order[lg->n++] = it->id;
    if (it->victim != NULL)
        timer_del(lg->w, &it->victim->node);
    if (it->readd_times > 0) {
        it->readd_times--;
        it->expire_ms = lg->now + it->readd_delta_ms;
        timer_add(lg->w, node, it->expire_ms);
    }
}

static struct timer_wheel wheel;

static size_t advance(struct log *lg, uint64_t now)
{
    lg->now = now;
    return timer_advance(lg->w, now, on_fire, lg);
}

static void add(struct item *it, int id, uint64_t expire)
{
    it->id = id;
    it->expire_ms = expire;
    timer_add(&wheel, &it->node, expire);
}

Test(timer, fires_in_order_only_when_due)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 1000);
    struct item a = {0}, b = {0}, c = {0}, d = {0};
    add(&a, 1, 1050);
    add(&b, 2, 1020);
    add(&c, 3, 1100);
    add(&d, 4, 1020); /* same tick as b, added later */
    cr_assert_eq(wheel.count, 4);
    cr_assert_eq(advance(&lg, 1000), 0);
    cr_assert_eq(advance(&lg, 1019), 0);
    cr_assert_eq(advance(&lg, 1020), 2);
    cr_assert_eq(advance(&lg, 1049), 0);
    cr_assert_eq(advance(&lg, 1200), 2);
    cr_assert_eq(lg.n, 4);
    cr_assert_eq(lg.order[0], 2);
    cr_assert_eq(lg.order[1], 4);
    cr_assert_eq(lg.order[2], 1);
    cr_assert_eq(lg.order[3], 3);
    cr_assert(a.fired == 1 && b.fired == 1 && c.fired == 1 && d.fired == 1);
    cr_assert_eq(wheel.count, 0);
    cr_assert_eq(advance(&lg, 5000), 0, "nothing fires twice");
}

Test(timer, expiry_rounds_up_to_a_tick)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 1000);
    struct item a = {0};
    add(&a, 1, 1001);
    cr_assert_geq(timer_expire_ms(&a.node), 1001);
    cr_assert_eq(advance(&lg, 1009), 0, "fired before its expiry");
    cr_assert_eq(advance(&lg, 1010), 1);
}

Test(timer, past_and_present_deadlines_fire_at_the_next_advance)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 5000);
    struct item a = {0}, b = {0}, c = {0};
    add(&a, 1, 0);
    add(&b, 2, 4990);
    add(&c, 3, 5000);
    cr_assert_eq(advance(&lg, 5000 + TIMER_TICK_MS), 3);
}

Test(timer, del_prevents_firing_and_is_idempotent)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 0);
    struct item a = {0}, b = {0}, z = {0};
    timer_del(&wheel, &z.node); /* zeroed, never linked */
    cr_assert_eq(wheel.count, 0);
    add(&a, 1, 100);
    add(&b, 2, 100);
    timer_del(&wheel, &a.node);
    timer_del(&wheel, &a.node);
    cr_assert_not(timer_linked(&a.node));
    cr_assert_eq(wheel.count, 1);
    cr_assert_eq(advance(&lg, 1000), 1);
    cr_assert_eq(a.fired, 0);
    cr_assert_eq(b.fired, 1);
}

Test(timer, add_moves_a_linked_node)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 0);
    struct item a = {0};
    add(&a, 1, 100);
    add(&a, 1, 500);
    cr_assert_eq(wheel.count, 1);
    cr_assert_eq(advance(&lg, 400), 0);
    cr_assert_eq(advance(&lg, 500), 1);
    add(&a, 1, 9000);
    add(&a, 1, 600); /* moved earlier */
    cr_assert_eq(advance(&lg, 600), 1);
    cr_assert_eq(a.fired, 2);
    cr_assert_eq(wheel.count, 0);
}

Test(timer, far_future_nodes_survive_revolutions)
{
    struct log lg = {.w = &wheel};
    const uint64_t rev = (uint64_t)TIMER_SLOTS * TIMER_TICK_MS;
    timer_wheel_init(&wheel, 0);
    struct item far = {0}, near = {0}, farther = {0};
    add(&far, 1, 3 * rev + 50);
    add(&near, 2, 50); /* same slot as far */
    add(&farther, 3, 7 * rev + 10);
    uint64_t now = 0;
    for (int step = 0; step < 1000 && now < 8 * rev; step++) {
        now += 97; /* step across slot boundaries at odd places */
        advance(&lg, now);
        if (now < 3 * rev + 50)
            cr_assert_eq(far.fired, 0, "far fired at %llu", (unsigned long long)now);
        if (now < 7 * rev + 10)
            cr_assert_eq(farther.fired, 0);
    }
    cr_assert_eq(near.fired, 1);
    cr_assert_eq(far.fired, 1);
    cr_assert_eq(farther.fired, 1);
    cr_assert_lt(far.fired_at, 3 * rev + 50 + 97 + TIMER_TICK_MS, "fired late: %llu", (unsigned long long)far.fired_at);
    cr_assert_eq(wheel.count, 0);
}

Test(timer, one_big_jump_fires_everything_due)
{
    struct log lg = {.w = &wheel};
    const uint64_t rev = (uint64_t)TIMER_SLOTS * TIMER_TICK_MS;
    timer_wheel_init(&wheel, 0);
    struct item it[20];
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 20; i++)
        add(&it[i], i, (uint64_t)i * rev / 3 + 10);
    /* Due: every item with expire <= 4 rev (i*rev/3 + 10 <= 4 rev => i <= 11). */
    size_t fired = advance(&lg, 4 * rev);
    for (int i = 0; i < 20; i++) {
        bool due = it[i].expire_ms <= 4 * rev;
        cr_assert_eq(it[i].fired, due ? 1 : 0, "item %d (expire %llu)", i, (unsigned long long)it[i].expire_ms);
    }
    cr_assert_eq(fired, 12);
    cr_assert_eq(wheel.count, 8);
    advance(&lg, 100 * rev);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(it[i].fired, 1);
}

Test(timer, readd_from_callback)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 0);
    struct item a = {0};
    a.readd_times = 3;
    a.readd_delta_ms = 20;
    add(&a, 1, 10);
    cr_assert_eq(advance(&lg, 10), 1);
    cr_assert(timer_linked(&a.node));
    cr_assert_eq(advance(&lg, 29), 0, "re-added for 30");
    cr_assert_eq(advance(&lg, 30), 1);
    cr_assert_eq(advance(&lg, 1000), 1, "due at 50, re-added for 1020 (now + 20)");
    cr_assert_eq(advance(&lg, 1019), 0);
    cr_assert_eq(advance(&lg, 1020), 1);
    cr_assert_eq(a.fired, 4);
    cr_assert_not(timer_linked(&a.node));

    /* Re-adding with a deadline already past does not loop within one advance forever. */
    struct item b = {0};
    b.readd_times = 5;
    b.readd_delta_ms = 0;
    add(&b, 2, 1030);
    size_t n = advance(&lg, 1030);
    cr_assert_geq(n, 1);
    cr_assert_leq(n, 6);
    for (uint64_t now = 1040; now < 1500 && b.fired < 6; now += TIMER_TICK_MS)
        advance(&lg, now);
    cr_assert_eq(b.fired, 6);
    advance(&lg, 5000);
    cr_assert_eq(b.fired, 6, "and no more");
}

Test(timer, callback_deletes_another_node_of_the_same_tick)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 0);
    struct item a = {0}, b = {0}, c = {0};
    a.victim = &b;
    add(&a, 1, 100);
    add(&b, 2, 100);
    add(&c, 3, 100);
    cr_assert_eq(advance(&lg, 100), 2);
    cr_assert_eq(b.fired, 0);
    cr_assert_eq(c.fired, 1);
    cr_assert_eq(wheel.count, 0);
}

Test(timer, next_ms)
{
    timer_wheel_init(&wheel, 1000);
    cr_assert_eq(timer_next_ms(&wheel, 1250), 1250, "empty: the limit");
    struct item a = {0}, far = {0};
    add(&a, 1, 1050);
    cr_assert_eq(timer_next_ms(&wheel, 1250), 1050);
    cr_assert_eq(timer_next_ms(&wheel, 1030), 1030, "limit before the node");
    add(&a, 1, 1001);
    cr_assert_eq(timer_next_ms(&wheel, 5000), 1010, "the node's tick, rounded up");
    timer_del(&wheel, &a.node);
    /* Only a node several revolutions away: never later than it, never before now. */
    const uint64_t rev = (uint64_t)TIMER_SLOTS * TIMER_TICK_MS;
    add(&far, 2, 1000 + 2 * rev + 500);
    uint64_t next = timer_next_ms(&wheel, 1000 + 5 * rev);
    cr_assert_gt(next, 1000);
    cr_assert_leq(next, far.expire_ms);
    cr_assert_eq(timer_next_ms(&wheel, 1100), 1100);
}

Test(timer, many_nodes_fire_exactly_once)
{
    struct log lg = {.w = &wheel};
    timer_wheel_init(&wheel, 0);
    enum { N = 5000 };
    static struct item it[N];
    memset(it, 0, sizeof(it));
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        add(&it[i], i, (x >> 33) % 60000);
    }
    size_t total = 0;
    for (uint64_t now = 0; now <= 61000; now += 333)
        total += advance(&lg, now);
    cr_assert_eq(total, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(it[i].fired, 1, "item %d", i);
    cr_assert_eq(wheel.count, 0);
}
