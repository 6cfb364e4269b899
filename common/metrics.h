/* metrics.h: writing the Prometheus text exposition format (version 0.0.4).
 *
 * A struct metrics accumulates one document: declare each family once with metrics_family()
 * (its # HELP and # TYPE lines), then write its samples. Label values and help texts are escaped
 * here; metric and label names are the caller's constants and must already be valid. An invalid
 * name (a programmer error) or an allocation failure is remembered and makes metrics_finish()
 * fail, so callers need not check every call and tests catch a bad name at once. */
#ifndef LANYARD_METRICS_H
#define LANYARD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics {
	char *buf;
	size_t len, cap;
	bool oom;
	bool invalid; /* a metric or label name was invalid */
};

void metrics_init(struct metrics *m);
/* Writes "# HELP name help" and "# TYPE name type". */
void metrics_family(struct metrics *m, const char *name, enum metric_type type, const char *help);
/* One sample: name{label="value",...} v. The variadic part is pairs of label name and value
 * (const char *), ended by NULL. A NULL value skips its label. */
void metrics_sample(struct metrics *m, const char *name, double v, ...)
	__attribute__((sentinel));
/* A histogram's samples: name_bucket{...,le="b"} for every bound (counts[i] is the number of
 * observations <= bounds[i], cumulative as Prometheus wants), le="+Inf" with count, then
 * name_sum and name_count. Labels as for metrics_sample. */
void metrics_histogram(struct metrics *m, const char *name, const double *bounds,
		       const uint64_t *counts, size_t n, double sum, uint64_t count, ...)
	__attribute__((sentinel));
/* Shortcut for a family with a single unlabelled sample. */
void metrics_single(struct metrics *m, const char *name, enum metric_type type, const char *help,
		    double v);

/* Returns the document (the caller frees it) and resets m; NULL when an allocation failed or a
 * name was invalid. */
char *metrics_finish(struct metrics *m);
/* Frees what m holds without returning it. */
void metrics_discard(struct metrics *m);

/* Formats a sample value as Prometheus reads it: integers without a fraction, "+Inf", "-Inf",
 * "NaN", otherwise the shortest form that reads back exactly. Returns buf. */
const char *metrics_format_value(double v, char *buf, size_t len);

#endif
