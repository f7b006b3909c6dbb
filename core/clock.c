/* clock.c - cached monotonic time and HTTP date per shard. */
#include "core/clock.h"

#include <stdio.h>
#include <string.h>

uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void clock_format_date(time_t t, char *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, CLOCK_DATE_LEN);
    out[CLOCK_DATE_LEN] = '\0';
}

void clock_update(struct clock_cache *c)
{
    c->now_ns = clock_now_ns();
    c->now_ms = c->now_ns / 1000000u;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME_COARSE, &wall);
    if (wall.tv_sec != c->_date_sec || c->date[0] == '\0') {
        c->_date_sec = wall.tv_sec;
        clock_format_date(wall.tv_sec, c->date);
    }
}
