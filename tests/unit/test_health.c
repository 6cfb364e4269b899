/* The health registry: one log line per change of state with a count, the /ready report, and the
 * probes (a directory that cannot be written, descriptors near the limit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "procstats.h"

/* Runs fn with stderr captured; returns how many captured lines contain needle. */
static int count_logged(void (*fn)(struct health *), struct health *h, const char *needle)
{
	fflush(stderr);
	int saved = dup(2);
	FILE *f = tmpfile();
	assert_non_null(f);
	dup2(fileno(f), 2);
	fn(h);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static void fail_ten_times(struct health *h)
{
	for (int i = 0; i < 10; i++)
		health_set(h, "storage", false, 1000 + i, "disk full (%d)", i);
}

static void recover_twice(struct health *h)
{
	health_set(h, "storage", true, 1020, "writable");
	health_set(h, "storage", true, 1021, "writable");
}

static void logs_once_per_change(void **state)
{
	(void)state;
	log_setup(LOG_LEVEL_INFO, false);
	struct health *h = health_new();
	assert_false(health_failing(h, "storage"));
	assert_int_equal(count_logged(fail_ten_times, h, "health: storage failing: disk full (0)"), 1);
	assert_true(health_failing(h, "storage"));

	json_t *checks = json_object();
	assert_false(health_report(h, checks));
	const char *d = json_string_value(json_object_get(json_object_get(checks, "storage"), "detail"));
	assert_non_null(d);
	assert_non_null(strstr(d, "disk full (9)"));
	assert_non_null(strstr(d, "10 failed checks"));
	json_decref(checks);

	assert_int_equal(count_logged(recover_twice, h,
				      "storage recovered after 10 failed checks over 20 s"), 1);
	assert_false(health_failing(h, "storage"));
	checks = json_object();
	assert_true(health_report(h, checks));
	assert_true(json_is_true(json_object_get(json_object_get(checks, "storage"), "ok")));
	json_decref(checks);
	health_free(h);
}

static void probes(void **state)
{
	(void)state;
	char why[512];
	char dir[] = "/tmp/lanyard-health-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_int_equal(health_probe_dir(dir, why, sizeof(why)), 0);
	rmdir(dir); /* the probe left nothing behind, or rmdir would fail */
	assert_int_equal(access(dir, F_OK), -1);
	assert_true(health_probe_dir(dir, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, dir));

	struct procstats ps = { .open_fds = 100, .max_fds = 1024 };
	assert_true(health_probe_fds(&ps, why, sizeof(why)));
	ps.open_fds = 1010;
	assert_false(health_probe_fds(&ps, why, sizeof(why)));
	assert_non_null(strstr(why, "1010 of 1024"));
	ps.max_fds = -1;
	assert_true(health_probe_fds(&ps, why, sizeof(why)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(logs_once_per_change),
		cmocka_unit_test(probes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
