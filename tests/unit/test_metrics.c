#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "procstats.h"

/* Counts the lines of text that equal line exactly. */
static int count_line(const char *text, const char *line)
{
	int n = 0;
	size_t len = strlen(line);
	for (const char *p = text; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t l = eol ? (size_t)(eol - p) : strlen(p);
		if (l == len && memcmp(p, line, len) == 0)
			n++;
		p = eol ? eol + 1 : NULL;
	}
	return n;
}

static void test_family_and_samples(void **state)
{
	struct metrics m;
	metrics_init(&m);
	metrics_family(&m, "lanyard_x_requests_total", METRIC_COUNTER, "Requests.\nBy \\method.");
	metrics_sample(&m, "lanyard_x_requests_total", 3, "method", "Fetch", "code", "OK", NULL);
	metrics_sample(&m, "lanyard_x_requests_total", 0, NULL);
	metrics_sample(&m, "lanyard_x_requests_total", 1, "skipped", (const char *)NULL, "a", "b",
		       NULL);
	metrics_single(&m, "lanyard_x_up", METRIC_GAUGE, "Up.", 1);
	char *t = metrics_finish(&m);
	assert_non_null(t);
	assert_int_equal(count_line(t, "# HELP lanyard_x_requests_total Requests.\\nBy \\\\method."), 1);
	assert_int_equal(count_line(t, "# TYPE lanyard_x_requests_total counter"), 1);
	assert_int_equal(count_line(t, "lanyard_x_requests_total{method=\"Fetch\",code=\"OK\"} 3"), 1);
	assert_int_equal(count_line(t, "lanyard_x_requests_total 0"), 1);
	assert_int_equal(count_line(t, "lanyard_x_requests_total{a=\"b\"} 1"), 1);
	assert_int_equal(count_line(t, "# TYPE lanyard_x_up gauge"), 1);
	assert_int_equal(count_line(t, "lanyard_x_up 1"), 1);
	assert_int_equal(t[strlen(t) - 1], '\n');
	free(t);
	/* The struct is reset: a second document starts empty. */
	t = metrics_finish(&m);
	assert_non_null(t);
	assert_string_equal(t, "");
	free(t);
}

static void test_label_escaping(void **state)
{
	struct metrics m;
	metrics_init(&m);
	metrics_family(&m, "x", METRIC_GAUGE, "h");
	metrics_sample(&m, "x", 1, "id", "a\"b\\c\nd}", NULL);
	char *t = metrics_finish(&m);
	assert_int_equal(count_line(t, "x{id=\"a\\\"b\\\\c\\nd}\"} 1"), 1);
	/* The raw newline never reaches the output: exactly three lines. */
	int lines = 0;
	for (const char *p = t; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 3);
	free(t);
}

static void test_values(void **state)
{
	char b[64];
	assert_string_equal(metrics_format_value(0, b, sizeof(b)), "0");
	assert_string_equal(metrics_format_value(42, b, sizeof(b)), "42");
	assert_string_equal(metrics_format_value(-7, b, sizeof(b)), "-7");
	assert_string_equal(metrics_format_value(1e15, b, sizeof(b)), "1000000000000000");
	assert_string_equal(metrics_format_value(0.005, b, sizeof(b)), "0.005");
	assert_string_equal(metrics_format_value(0.1, b, sizeof(b)), "0.1");
	assert_string_equal(metrics_format_value(INFINITY, b, sizeof(b)), "+Inf");
	assert_string_equal(metrics_format_value(-INFINITY, b, sizeof(b)), "-Inf");
	assert_string_equal(metrics_format_value(NAN, b, sizeof(b)), "NaN");
	double tricky = 1.0 / 3.0;
	metrics_format_value(tricky, b, sizeof(b));
	assert_true(strtod(b, NULL) == tricky);
	metrics_format_value(1e300, b, sizeof(b));
	assert_true(strtod(b, NULL) == 1e300);
}

static void test_histogram(void **state)
{
	static const double bounds[] = { 0.001, 0.01, 0.1 };
	/* Observations 0.0005, 0.002, 0.05, 0.05, 3: cumulative counts per bound. */
	uint64_t counts[] = { 1, 2, 4 };
	struct metrics m;
	metrics_init(&m);
	metrics_family(&m, "lat_seconds", METRIC_HISTOGRAM, "Latency.");
	metrics_histogram(&m, "lat_seconds", bounds, counts, 3, 3.1025, 5, "kind", "x509", NULL);
	metrics_histogram(&m, "lat_seconds", bounds, (uint64_t[]){ 0, 0, 0 }, 3, 0, 0, NULL);
	char *t = metrics_finish(&m);
	assert_int_equal(count_line(t, "# TYPE lat_seconds histogram"), 1);
	assert_int_equal(count_line(t, "lat_seconds_bucket{kind=\"x509\",le=\"0.001\"} 1"), 1);
	assert_int_equal(count_line(t, "lat_seconds_bucket{kind=\"x509\",le=\"0.01\"} 2"), 1);
	assert_int_equal(count_line(t, "lat_seconds_bucket{kind=\"x509\",le=\"0.1\"} 4"), 1);
	assert_int_equal(count_line(t, "lat_seconds_bucket{kind=\"x509\",le=\"+Inf\"} 5"), 1);
	assert_int_equal(count_line(t, "lat_seconds_sum{kind=\"x509\"} 3.1025"), 1);
	assert_int_equal(count_line(t, "lat_seconds_count{kind=\"x509\"} 5"), 1);
	assert_int_equal(count_line(t, "lat_seconds_bucket{le=\"+Inf\"} 0"), 1);
	assert_int_equal(count_line(t, "lat_seconds_sum 0"), 1);
	assert_int_equal(count_line(t, "lat_seconds_count 0"), 1);
	/* Buckets come in increasing order of le, +Inf last. */
	const char *a = strstr(t, "le=\"0.001\"");
	const char *b = strstr(t, "le=\"0.1\"");
	const char *c = strstr(t, "le=\"+Inf\"");
	assert_true(a && b && c && a < b && b < c);
	free(t);
}

static void test_invalid_names(void **state)
{
	struct metrics m;
	metrics_init(&m);
	metrics_single(&m, "ok_name", METRIC_GAUGE, "fine", 1);
	metrics_sample(&m, "bad-name", 1, NULL);
	assert_null(metrics_finish(&m));
	metrics_single(&m, "ok_name", METRIC_GAUGE, "fine", 1);
	metrics_sample(&m, "ok_name", 1, "bad label", "v", NULL);
	assert_null(metrics_finish(&m));
	metrics_family(&m, "9starts_with_digit", METRIC_GAUGE, "x");
	assert_null(metrics_finish(&m));
	/* Colons are allowed in metric names, not in label names. */
	metrics_sample(&m, "a:b", 1, "a:b", "v", NULL);
	assert_null(metrics_finish(&m));
	metrics_sample(&m, "a:b", 1, "a_b", "v", NULL);
	char *t = metrics_finish(&m);
	assert_non_null(t);
	free(t);
}

static void test_procstats(void **state)
{
	struct procstats ps;
	assert_int_equal(procstats_read(&ps), 0);
	assert_true(ps.resident_bytes > 0);
	assert_true(ps.virtual_bytes >= ps.resident_bytes);
	assert_true(ps.threads >= 1);
	/* Opening a descriptor shows up in the count. */
	int64_t before = ps.open_fds;
	assert_true(before >= 3);
	int fds[4];
	for (int i = 0; i < 4; i++)
		fds[i] = dup(0);
	assert_int_equal(procstats_read(&ps), 0);
	assert_int_equal(ps.open_fds, before + 4);
	for (int i = 0; i < 4; i++)
		close(fds[i]);

	struct metrics m;
	metrics_init(&m);
	procstats_write_metrics(&m, "lanyard_test", &ps, 1000, 1042, "1.2.3");
	char *t = metrics_finish(&m);
	assert_int_equal(count_line(t, "lanyard_test_build_info{version=\"1.2.3\"} 1"), 1);
	assert_int_equal(count_line(t, "lanyard_test_uptime_seconds 42"), 1);
	assert_int_equal(count_line(t, "process_start_time_seconds 1000"), 1);
	char line[128];
	snprintf(line, sizeof(line), "process_open_fds %lld", (long long)ps.open_fds);
	assert_int_equal(count_line(t, line), 1);
	snprintf(line, sizeof(line), "process_resident_memory_bytes %llu",
		 (unsigned long long)ps.resident_bytes);
	assert_int_equal(count_line(t, line), 1);
	assert_int_equal(count_line(t, "# TYPE process_cpu_seconds_total counter"), 1);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_and_samples),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_procstats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
