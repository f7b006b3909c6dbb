/* timer.h - one hashed timer wheel per shard: idle, header and write timeouts with no SQE per timer.
 *
 * Time is cut into ticks of TIMER_TICK_MS; slot = expire_tick mod TIMER_SLOTS.
 * A node far in the future sits in its slot and is skipped (not fired) on each
 * revolution until its tick comes. Add, delete and fire are O(1) per node; an
 * advance visits each slot passed since the previous advance once.
 * Nodes are intrusive: the owner embeds struct timer_node and recovers itself
 * with container_of in the callback. Single-threaded (the owning shard).
 */
#ifndef RINGD_TIMER_H
#define RINGD_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_TICK_MS 10
#define TIMER_SLOTS 1024 /* one revolution = 10.24 s */

struct timer_node {
    struct timer_node *_prev, *_next; /* NULL when not linked */
    uint64_t _expire_tick;
};

struct timer_wheel {
    struct timer_node _slots[TIMER_SLOTS]; /* list heads (circular) */
    uint64_t _tick;                        /* last tick fully processed */
    size_t count;                          /* linked nodes */
};

typedef void (*timer_fire_fn)(struct timer_node *node, void *arg);

/* Starts the wheel at now_ms. */
void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms);

/* Links node to fire at the first advance with now_ms >= expire_ms (rounded up
 * to a tick). A linked node is moved. */
void timer_add(struct timer_wheel *w, struct timer_node *node, uint64_t expire_ms);

/* Unlinks node if linked; safe on an unlinked (zeroed) node. */
void timer_del(struct timer_wheel *w, struct timer_node *node);

static inline bool timer_linked(const struct timer_node *node)
{
    return node->_next != NULL;
}

/* The tick (in ms) at which a linked node fires. */
static inline uint64_t timer_expire_ms(const struct timer_node *node)
{
    return node->_expire_tick * TIMER_TICK_MS;
}

/* Fires, in tick order, every node whose tick is <= now_ms. Each fired node is
 * unlinked before fire() runs; fire() may add or delete any node, including
 * re-adding the fired one. Returns how many fired. */
size_t timer_advance(struct timer_wheel *w, uint64_t now_ms, timer_fire_fn fire, void *arg);

/* When the wheel should next be advanced: the start of the first non-empty
 * slot after now, or limit_ms when there is none before it (a slot may hold
 * only later-revolution nodes: advancing then is early but harmless). */
uint64_t timer_next_ms(const struct timer_wheel *w, uint64_t limit_ms);

#endif
