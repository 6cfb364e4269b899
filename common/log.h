/* log.h: one line per event, as text or JSON, in the manner of OpenSMTPD's log.h.
 *
 *   log_debug, log_info      plain events
 *   log_warnx, log_error     a problem; the message says everything
 *   log_warn                 a problem caused by a failed call: ": strerror(errno)" is appended,
 *                            and errno is the same after the call as before it
 *   fatal, fatalx            log at error level (fatal appends strerror(errno)) and exit(1):
 *                            for start-up failures of a daemon, never for a peer's bad input
 *   log_event                an event with structured fields (SPIFFE ID, pid, uid, entry ID, peer
 *                            address...): JSON output carries each as a member of its own, text
 *                            output only the message (which must still read on its own)
 *
 * A disabled level costs one relaxed atomic load: the macros test the level before the
 * arguments are evaluated or formatted. The level, the format and the sink may be changed at any
 * time from any thread (atomics; an event being written finishes with the old sink).
 * Times are RFC 3339 in UTC with milliseconds. Never pass key material or tokens. */
#ifndef LANYARD_LOG_H
#define LANYARD_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Parses "debug", "info", "warn" or "error"; returns -1 on anything else. */
int log_level_parse(const char *s);
/* Sets the threshold and the format ("json" = true). Safe to call again at any time, from any
 * thread. A threshold above LOG_LEVEL_ERROR silences everything. */
void log_setup(enum log_level level, bool json);

/* Where a finished event goes instead of stderr (liblanyard's applications route it into their
 * own logging). line is the formatted text or JSON line without a newline; msg the message alone.
 * NULL restores stderr. The function may be called from any thread, and concurrently. */
typedef void (*log_sink_fn)(enum log_level level, const char *line, const char *msg, void *arg);
void log_set_sink(log_sink_fn fn, void *arg);

/* The last LOG_RECENT_MAX warnings and errors, kept for status pages (what went wrong lately,
 * with the reason the log line gives). */
#define LOG_RECENT_MAX 16
struct log_recent {
	long long at; /* unix seconds */
	enum log_level level;
	char msg[512];
};
/* Copies up to max of them into out, newest first; returns how many. Any thread. */
size_t log_recent_get(struct log_recent *out, size_t max);

extern atomic_int log_threshold_;
static inline bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&log_threshold_, memory_order_relaxed);
}

/* One structured field of an event: a string, or a number when str is NULL. */
struct log_field {
	const char *key;
	const char *str;
	long long num;
};
static inline const char *log_str_(const char *s)
{
	return s ? s : "";
}
#define LOG_STR(k, v) ((struct log_field){.key = (k), .str = log_str_(v)})
#define LOG_INT(k, v) ((struct log_field){.key = (k), .num = (long long)(v)})

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_write_errno(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_write_fields(enum log_level level, const struct log_field *fields, size_t nfields,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
_Noreturn void log_fatal(bool with_errno, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define LOG_IF_(level, fn, ...)                                                                    \
	do {                                                                                       \
		if (log_enabled(level))                                                            \
			fn(level, __VA_ARGS__);                                                    \
	} while (0)

#define log_debug(...) LOG_IF_(LOG_LEVEL_DEBUG, log_write, __VA_ARGS__)
#define log_info(...) LOG_IF_(LOG_LEVEL_INFO, log_write, __VA_ARGS__)
#define log_warnx(...) LOG_IF_(LOG_LEVEL_WARN, log_write, __VA_ARGS__)
#define log_warn(...) LOG_IF_(LOG_LEVEL_WARN, log_write_errno, __VA_ARGS__)
#define log_error(...) LOG_IF_(LOG_LEVEL_ERROR, log_write, __VA_ARGS__)
#define fatal(...) log_fatal(true, __VA_ARGS__)
#define fatalx(...) log_fatal(false, __VA_ARGS__)

/* log_event(LOG_LEVEL_INFO, LOG_FIELDS(LOG_STR("spiffe_id", id), LOG_INT("pid", pid)),
 *           "served %s to pid %d", id, pid); */
#define LOG_FIELDS(...)                                                                            \
	(const struct log_field[]){__VA_ARGS__},                                                   \
		sizeof((const struct log_field[]){__VA_ARGS__}) / sizeof(struct log_field)
#define log_event(level, ...) LOG_IF_(level, log_write_fields, __VA_ARGS__)

#endif
