/* log.h: one line per event on stderr, as text or JSON. Never pass key material. */
#ifndef LANYARD_LOG_H
#define LANYARD_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Parses "debug", "info", "warn" or "error"; returns -1 on anything else. */
int log_level_parse(const char *s);
/* Sets the threshold and the format ("json" = true). Safe to call again at any time. */
void log_setup(enum log_level level, bool json);
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
