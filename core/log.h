/* log.h - structured one-line-per-event logging on stderr (key=value, with a level). */
#ifndef RINGD_LOG_H
#define RINGD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Minimum level printed; read-only after start-up (RINGD_LOG_LEVEL=debug|info|warn|error). */
extern enum log_level log_min_level;

/* Writes one line "level=L msg=<msg> <fmt...>\n" to stderr with a single write(2),
 * so lines from different threads never interleave. msg must be a bare word
 * (no spaces); fmt carries the remaining key=value pairs. */
void log_write(enum log_level level, const char *msg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

/* Parses "debug|info|warn|error"; returns 0 and sets *out, or -1. */
int log_parse_level(const char *s, enum log_level *out);

#endif
