/* log — structured logs: one JSON object per line on stderr.
 *
 * A line is built field by field into a fixed buffer (no allocation) and
 * written with one write(2), so concurrent processes never interleave
 * halves of lines. Callers pass only what is safe to show: never a
 * credential, a request body, or a query string. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Lines below `level` are dropped. Default LOG_INFO. */
void log_set_level(log_level level);
int log_parse_level(const char *name, log_level *out);
int log_enabled(log_level level);

typedef struct log_line log_line;

/* Starts a line with ts, level and msg; NULL when the level is disabled
 * (every log_* function accepts NULL and does nothing). */
log_line *log_begin(log_level level, const char *msg);
/* The same, whatever the level filter: for the few lines an operator (or a
 * test harness) must always see, such as where the server listens. */
log_line *log_begin_always(log_level level, const char *msg);
void log_str(log_line *l, const char *key, const char *value);
void log_strn(log_line *l, const char *key, const char *value, size_t len);
void log_int(log_line *l, const char *key, long long value);
void log_num(log_line *l, const char *key, double value);
void log_bool(log_line *l, const char *key, int value);
/* Writes the line and releases it. */
void log_end(log_line *l);

/* One-line shorthand: a message with no fields. */
void log_msg(log_level level, const char *msg);

/* A fresh 16-hex-digit request id. */
void log_new_request_id(char out[17]);

#endif
