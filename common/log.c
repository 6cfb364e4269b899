/* log.c: see log.h. The level, format and sink are atomics so that any thread may change them
 * while others log; out_lock only keeps the lines of concurrent events from interleaving. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>

atomic_int log_threshold_ = LOG_LEVEL_INFO;
static atomic_bool as_json;
/* The sink and its argument change together: one pointer to an immutable pair. Pairs are never
 * freed (a thread may still be calling through an old one) but stay reachable on a list;
 * log_set_sink is called a handful of times in a process's life. */
struct sink {
	log_sink_fn fn;
	void *arg;
	struct sink *older;
};
static _Atomic(struct sink *) sink;
static struct sink *all_sinks; /* under out_lock */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

void log_setup(enum log_level level, bool json)
{
	atomic_store(&log_threshold_, (int)level);
	atomic_store(&as_json, json);
}

void log_set_sink(log_sink_fn fn, void *arg)
{
	struct sink *s = NULL;

	if (fn) {
		s = malloc(sizeof(*s));
		if (!s)
			return; /* keeps the previous sink: logging never fails a caller */
		s->fn = fn;
		s->arg = arg;
		pthread_mutex_lock(&out_lock);
		s->older = all_sinks;
		all_sinks = s;
		pthread_mutex_unlock(&out_lock);
	}
	atomic_store(&sink, s);
}

/* RFC 3339, UTC, milliseconds: 2026-12-04T05:21:07.123Z. */
static void format_time(char *ts, size_t len)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(tv.tv_usec / 1000));
}

static char *json_line(const char *ts, enum log_level level, const char *msg,
		       const struct log_field *fields, size_t nfields)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "time", ts, "level", level_names[level], "msg",
			      msg);
	char *line = NULL;

	if (!o)
		return NULL;
	for (size_t i = 0; i < nfields; i++) {
		const struct log_field *f = &fields[i];
		/* The fixed members win: a field cannot forge the time, level or message. */
		if (json_object_get(o, f->key))
			continue;
		json_object_set_new(o, f->key, f->str ? json_string(f->str) : json_integer(f->num));
	}
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return line;
}

/* A ring of the last warnings and errors; head is the next slot to write. */
static struct log_recent recent[LOG_RECENT_MAX];
static size_t recent_n, recent_head;
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;

static void remember(enum log_level level, const char *msg)
{
	pthread_mutex_lock(&recent_lock);
	struct log_recent *r = &recent[recent_head];
	r->at = (long long)time(NULL);
	r->level = level;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
	recent_head = (recent_head + 1) % LOG_RECENT_MAX;
	if (recent_n < LOG_RECENT_MAX)
		recent_n++;
	pthread_mutex_unlock(&recent_lock);
}

size_t log_recent_get(struct log_recent *out, size_t max)
{
	pthread_mutex_lock(&recent_lock);
	size_t n = recent_n < max ? recent_n : max;
	for (size_t i = 0; i < n; i++)
		out[i] = recent[(recent_head + LOG_RECENT_MAX - 1 - i) % LOG_RECENT_MAX];
	pthread_mutex_unlock(&recent_lock);
	return n;
}

static void emit(enum log_level level, const struct log_field *fields, size_t nfields,
		 const char *suffix, const char *fmt, va_list ap)
{
	char msg[2048], ts[96], text[2200];
	char *jline = NULL;
	const char *line;
	struct sink *s;
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	if (suffix && n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", suffix);
	/* One event is one line, whatever the message holds. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	format_time(ts, sizeof(ts));
	if (level >= LOG_LEVEL_WARN)
		remember(level, msg);
	if (atomic_load(&as_json))
		jline = json_line(ts, level, msg, fields, nfields);
	if (jline) {
		line = jline;
	} else {
		snprintf(text, sizeof(text), "%s %-5s %s", ts, level_names[level], msg);
		line = text;
	}
	s = atomic_load(&sink);
	if (s) {
		s->fn(level, line, msg, s->arg);
	} else {
		pthread_mutex_lock(&out_lock);
		fprintf(stderr, "%s\n", line);
		pthread_mutex_unlock(&out_lock);
	}
	free(jline);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, NULL, 0, NULL, fmt, ap);
	va_end(ap);
}

void log_write_errno(enum log_level level, const char *fmt, ...)
{
	int saved = errno;
	char buf[256];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, NULL, 0, strerror_r(saved, buf, sizeof(buf)), fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_write_fields(enum log_level level, const struct log_field *fields, size_t nfields,
		      const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, fields, nfields, NULL, fmt, ap);
	va_end(ap);
}

void log_fatal(bool with_errno, const char *fmt, ...)
{
	int saved = errno;
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_LEVEL_ERROR, NULL, 0, with_errno ? strerror_r(saved, buf, sizeof(buf)) : NULL, fmt,
	     ap);
	va_end(ap);
	exit(1);
}
