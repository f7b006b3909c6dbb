/* clock.h - a per-shard cached clock: monotonic milliseconds and the HTTP Date header, formatted once a second. */
#ifndef RINGD_CLOCK_H
#define RINGD_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CLOCK_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

struct clock_cache {
    uint64_t now_ns; /* CLOCK_MONOTONIC at the last clock_update */
    uint64_t now_ms;
    time_t _date_sec;                /* wall-clock second the date string shows */
    char date[CLOCK_DATE_LEN + 1];   /* IMF-fixdate, NUL-terminated */
};

/* Reads the clocks (vDSO, no syscall) and reformats date when the second changed. */
void clock_update(struct clock_cache *c);

/* CLOCK_MONOTONIC now, in ns / ms (uncached). */
uint64_t clock_now_ns(void);
static inline uint64_t clock_now_ms(void)
{
    return clock_now_ns() / 1000000u;
}

/* Formats t as IMF-fixdate into out (CLOCK_DATE_LEN + 1 bytes). */
void clock_format_date(time_t t, char *out);

#endif
