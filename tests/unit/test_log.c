/* test_log.c: common/log.c through its header: levels filter before arguments are evaluated,
 * log_warn appends strerror(errno) and keeps errno, log_warnx does not, JSON events carry their
 * structured fields as members (never overriding time, level or msg), times are RFC 3339, and a
 * sink receives every event instead of stderr. */
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

struct capture {
	int count;
	enum log_level level;
	char line[2400];
	char msg[2100];
};

static void capture_sink(enum log_level level, const char *line, const char *msg, void *arg)
{
	struct capture *c = arg;

	c->count++;
	c->level = level;
	snprintf(c->line, sizeof(c->line), "%s", line);
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

static int setup(void **state)
{
	static struct capture c;

	memset(&c, 0, sizeof(c));
	log_set_sink(capture_sink, &c);
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	log_set_sink(NULL, NULL);
	log_setup(LOG_LEVEL_INFO, false);
	return 0;
}

static int evaluated;
static const char *side_effect(void)
{
	evaluated++;
	return "x";
}

static void test_disabled_level_evaluates_nothing(void **state)
{
	struct capture *c = *state;

	log_setup(LOG_LEVEL_WARN, false);
	evaluated = 0;
	log_debug("%s", side_effect());
	log_info("%s", side_effect());
	assert_int_equal(evaluated, 0);
	assert_int_equal(c->count, 0);
	log_error("%s", side_effect());
	assert_int_equal(evaluated, 1);
	assert_int_equal(c->count, 1);
	assert_int_equal(c->level, LOG_LEVEL_ERROR);
	/* Above ERROR: silent. */
	log_setup(LOG_LEVEL_ERROR + 1, false);
	log_error("%s", side_effect());
	assert_int_equal(c->count, 1);
}

static void test_warn_appends_strerror_and_keeps_errno(void **state)
{
	struct capture *c = *state;

	log_setup(LOG_LEVEL_DEBUG, false);
	errno = ENOENT;
	log_warn("open %s", "/nonexistent");
	assert_int_equal(errno, ENOENT);
	assert_string_equal(c->msg, "open /nonexistent: No such file or directory");
	errno = EACCES;
	log_warnx("plain %d", 7);
	assert_string_equal(c->msg, "plain 7");
	assert_int_equal(errno, EACCES);
}

static void test_text_line_is_one_rfc3339_line(void **state)
{
	struct capture *c = *state;
	regex_t re;

	log_setup(LOG_LEVEL_INFO, false);
	log_info("two\nlines\rhere");
	assert_string_equal(c->msg, "two lines here");
	assert_int_equal(regcomp(&re,
				 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
				 "info  two lines here$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	assert_int_equal(regexec(&re, c->line, 0, NULL, 0), 0);
	regfree(&re);
}

static void test_json_fields_are_members(void **state)
{
	struct capture *c = *state;
	json_error_t jerr;
	json_t *o;

	log_setup(LOG_LEVEL_INFO, true);
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("spiffe_id", "spiffe://example.org/web"), LOG_INT("pid", 4242),
			     LOG_STR("msg", "forged"), LOG_STR("level", "error")),
		  "served %s", "spiffe://example.org/web");
	o = json_loads(c->line, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "spiffe_id")),
			    "spiffe://example.org/web");
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), 4242);
	assert_string_equal(json_string_value(json_object_get(o, "msg")),
			    "served spiffe://example.org/web");
	assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
	assert_non_null(json_string_value(json_object_get(o, "time")));
	json_decref(o);
	/* Text output keeps only the message. */
	log_setup(LOG_LEVEL_INFO, false);
	log_event(LOG_LEVEL_INFO, LOG_FIELDS(LOG_INT("uid", 1000)), "refused uid %d", 1000);
	assert_null(strstr(c->line, "uid="));
	assert_non_null(strstr(c->line, "refused uid 1000"));
}

/* Changing the level and format while other threads log is not a data race (ThreadSanitizer
 * checks this test in CI). */
static void *spam(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++)
		log_debug("spam %d", i);
	return NULL;
}

static void test_runtime_level_change(void **state)
{
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, spam, NULL), 0);
	for (int i = 0; i < 200; i++)
		log_setup(i % 2 ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, i % 3 == 0);
	pthread_join(t, NULL);
}

/* The last warnings and errors are kept, newest first, at most LOG_RECENT_MAX; info is not. */
static void test_recent_problems_kept(void **state)
{
	struct log_recent r[LOG_RECENT_MAX + 4];
	log_setup(LOG_LEVEL_DEBUG, false);
	for (int i = 0; i < LOG_RECENT_MAX + 4; i++)
		log_warnx("problem %d", i);
	log_info("not a problem");
	log_error("the last one");
	size_t n = log_recent_get(r, sizeof(r) / sizeof(r[0]));
	assert_int_equal(n, LOG_RECENT_MAX);
	assert_string_equal(r[0].msg, "the last one");
	assert_int_equal(r[0].level, LOG_LEVEL_ERROR);
	char want[32];
	snprintf(want, sizeof(want), "problem %d", LOG_RECENT_MAX + 3);
	assert_string_equal(r[1].msg, want);
	assert_int_equal(r[1].level, LOG_LEVEL_WARN);
	assert_int_equal(log_recent_get(r, 2), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_disabled_level_evaluates_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warn_appends_strerror_and_keeps_errno, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_text_line_is_one_rfc3339_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_fields_are_members, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_level_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recent_problems_kept, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
