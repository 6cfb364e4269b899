/* metrics.c: the Prometheus text exposition format, version 0.0.4. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_valid(const char *s, bool colon_ok)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon_ok && c == ':') || (p != s && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static void put(struct metrics *m, const char *s, size_t n)
{
	if (m->oom)
		return;
	if (m->len + n + 1 > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		while (cap < m->len + n + 1)
			cap *= 2;
		char *nb = realloc(m->buf, cap);
		if (!nb) {
			m->oom = true;
			return;
		}
		m->buf = nb;
		m->cap = cap;
	}
	memcpy(m->buf + m->len, s, n);
	m->len += n;
	m->buf[m->len] = '\0';
}

static void puts_(struct metrics *m, const char *s)
{
	put(m, s, strlen(s));
}

/* Help texts escape backslash and newline; label values also the double quote. */
static void put_escaped(struct metrics *m, const char *s, bool quote)
{
	const char *run = s;
	for (const char *p = s; *p; p++) {
		const char *esc = NULL;
		if (*p == '\\')
			esc = "\\\\";
		else if (*p == '\n')
			esc = "\\n";
		else if (quote && *p == '"')
			esc = "\\\"";
		if (!esc)
			continue;
		put(m, run, (size_t)(p - run));
		puts_(m, esc);
		run = p + 1;
	}
	puts_(m, run);
}

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
}

const char *metrics_format_value(double v, char *buf, size_t len)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
	} else if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
	} else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(buf, len, "%.0f", v);
	} else {
		/* The shortest of %.15g..%.17g that reads back as the same double. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

void metrics_family(struct metrics *m, const char *name, enum metric_type type, const char *help)
{
	static const char *const type_names[] = {
		[METRIC_COUNTER] = "counter",
		[METRIC_GAUGE] = "gauge",
		[METRIC_HISTOGRAM] = "histogram",
	};
	if (!name_valid(name, true)) {
		m->invalid = true;
		return;
	}
	puts_(m, "# HELP ");
	puts_(m, name);
	puts_(m, " ");
	put_escaped(m, help ? help : "", false);
	puts_(m, "\n# TYPE ");
	puts_(m, name);
	puts_(m, " ");
	puts_(m, type_names[type]);
	puts_(m, "\n");
}

/* Writes name{labels[,extra_name="extra_value"]} value\n. */
static void sample_line(struct metrics *m, const char *name, const char *suffix, va_list ap,
			const char *extra_name, const char *extra_value, double v)
{
	char num[64];
	bool open = false;
	if (!name_valid(name, true) || (extra_name && !name_valid(extra_name, false))) {
		m->invalid = true;
		return;
	}
	puts_(m, name);
	if (suffix)
		puts_(m, suffix);
	for (;;) {
		const char *ln = va_arg(ap, const char *);
		if (!ln)
			break;
		const char *lv = va_arg(ap, const char *);
		if (!name_valid(ln, false))
			m->invalid = true;
		if (!lv || !name_valid(ln, false))
			continue;
		puts_(m, open ? "," : "{");
		open = true;
		puts_(m, ln);
		puts_(m, "=\"");
		put_escaped(m, lv, true);
		puts_(m, "\"");
	}
	if (extra_name) {
		puts_(m, open ? "," : "{");
		open = true;
		puts_(m, extra_name);
		puts_(m, "=\"");
		put_escaped(m, extra_value, true);
		puts_(m, "\"");
	}
	if (open)
		puts_(m, "}");
	puts_(m, " ");
	puts_(m, metrics_format_value(v, num, sizeof(num)));
	puts_(m, "\n");
}

void metrics_sample(struct metrics *m, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	sample_line(m, name, NULL, ap, NULL, NULL, v);
	va_end(ap);
}

void metrics_histogram(struct metrics *m, const char *name, const double *bounds,
		       const uint64_t *counts, size_t n, double sum, uint64_t count, ...)
{
	char le[64];
	va_list ap;
	for (size_t i = 0; i < n; i++) {
		va_start(ap, count);
		sample_line(m, name, "_bucket", ap, "le",
			    metrics_format_value(bounds[i], le, sizeof(le)), (double)counts[i]);
		va_end(ap);
	}
	va_start(ap, count);
	sample_line(m, name, "_bucket", ap, "le", "+Inf", (double)count);
	va_end(ap);
	va_start(ap, count);
	sample_line(m, name, "_sum", ap, NULL, NULL, sum);
	va_end(ap);
	va_start(ap, count);
	sample_line(m, name, "_count", ap, NULL, NULL, (double)count);
	va_end(ap);
}

void metrics_single(struct metrics *m, const char *name, enum metric_type type, const char *help,
		    double v)
{
	metrics_family(m, name, type, help);
	metrics_sample(m, name, v, NULL);
}

char *metrics_finish(struct metrics *m)
{
	bool failed = m->oom || m->invalid;
	char *out = failed ? NULL : m->buf;
	if (!out && !failed)
		out = calloc(1, 1);
	if (failed)
		free(m->buf);
	metrics_init(m);
	return out;
}

void metrics_discard(struct metrics *m)
{
	free(m->buf);
	metrics_init(m);
}
