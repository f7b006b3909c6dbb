/* timer.c - hashed timer wheel (see timer.h for the design). */
#include "core/timer.h"

static void list_init(struct timer_node *head)
{
    head->_prev = head->_next = head;
}

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms)
{
    for (size_t i = 0; i < TIMER_SLOTS; i++)
        list_init(&w->_slots[i]);
    w->_tick = now_ms / TIMER_TICK_MS;
    w->count = 0;
}

void timer_del(struct timer_wheel *w, struct timer_node *node)
{
    if (!timer_linked(node))
        return;
    node->_prev->_next = node->_next;
    node->_next->_prev = node->_prev;
    node->_prev = node->_next = NULL;
    w->count--;
}

void timer_add(struct timer_wheel *w, struct timer_node *node, uint64_t expire_ms)
{
    timer_del(w, node);
    uint64_t tick = (expire_ms + TIMER_TICK_MS - 1) / TIMER_TICK_MS;
    /* Past or current ticks fire at the next advance: the next slot to be visited. */
    if (tick <= w->_tick)
        tick = w->_tick + 1;
    node->_expire_tick = tick;
    struct timer_node *head = &w->_slots[tick % TIMER_SLOTS];
    node->_next = head;
    node->_prev = head->_prev;
    head->_prev->_next = node;
    head->_prev = node;
    w->count++;
}

size_t timer_advance(struct timer_wheel *w, uint64_t now_ms, timer_fire_fn fire, void *arg)
{
    uint64_t now_tick = now_ms / TIMER_TICK_MS;
    size_t fired = 0;
    /* After a stall longer than a revolution every slot is due: visit each
     * once, starting where the wheel stopped, so nodes still fire in tick order. */
    uint64_t last_visit = now_tick < w->_tick + TIMER_SLOTS ? now_tick : w->_tick + TIMER_SLOTS;
    while (w->_tick < last_visit) {
        uint64_t tick = ++w->_tick;
        struct timer_node *head = &w->_slots[tick % TIMER_SLOTS];
        /* Detach the slot's list first: fire() may re-add nodes to this very slot. */
        struct timer_node pending;
        if (head->_next == head)
            continue;
        pending._next = head->_next;
        pending._prev = head->_prev;
        pending._next->_prev = &pending;
        pending._prev->_next = &pending;
        list_init(head);
        while (pending._next != &pending) {
            struct timer_node *n = pending._next;
            n->_prev->_next = n->_next;
            n->_next->_prev = n->_prev;
            if (n->_expire_tick > now_tick) {
                /* A later revolution's node: back into its slot. */
                struct timer_node *h = &w->_slots[n->_expire_tick % TIMER_SLOTS];
                n->_next = h;
                n->_prev = h->_prev;
                h->_prev->_next = n;
                h->_prev = n;
                continue;
            }
            n->_prev = n->_next = NULL;
            w->count--;
            fired++;
            fire(n, arg);
        }
    }
    if (w->_tick < now_tick)
        w->_tick = now_tick;
    return fired;
}

uint64_t timer_next_ms(const struct timer_wheel *w, uint64_t limit_ms)
{
    if (w->count == 0)
        return limit_ms;
    uint64_t limit_tick = limit_ms / TIMER_TICK_MS;
    for (uint64_t t = w->_tick + 1; t <= limit_tick && t <= w->_tick + TIMER_SLOTS; t++) {
        const struct timer_node *head = &w->_slots[t % TIMER_SLOTS];
        if (head->_next != head)
            return t * TIMER_TICK_MS;
    }
    return limit_ms;
}
