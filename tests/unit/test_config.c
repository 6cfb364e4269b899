#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

struct cfg {
	char *name;
	int64_t port;
	int64_t ttl;
	bool flag;
	double frac;
	char *kind;
	struct cfg_list list;
};

static const char *const kinds[] = {"a", "b", NULL};
static const struct cfg_option opts[] = {
	{.name = "name", .type = CFG_STRING, .offset = offsetof(struct cfg, name), .required = true},
	{.name = "port", .type = CFG_INT, .offset = offsetof(struct cfg, port), .def = "8081",
	 .min = 1, .max = 65535},
	{.name = "ttl", .type = CFG_DURATION, .offset = offsetof(struct cfg, ttl), .def = "1h",
	 .min = 1, .max = 86400 * 365},
	{.name = "flag", .type = CFG_BOOL, .offset = offsetof(struct cfg, flag), .def = "false"},
	{.name = "frac", .type = CFG_DOUBLE, .offset = offsetof(struct cfg, frac), .def = "0.5",
	 .dmin = 0.01, .dmax = 0.99},
	{.name = "kind", .type = CFG_ENUM, .offset = offsetof(struct cfg, kind), .def = "a",
	 .choices = kinds},
	{.name = "list", .type = CFG_STRING_LIST, .offset = offsetof(struct cfg, list), .def = "[]"},
};

static char dir[64];

static const char *write_cfg(const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/c.json", dir);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup(void **state)
{
	strcpy(dir, "/tmp/lanyard-cfg-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void loads_and_defaults(void **state)
{
	struct cfg c = {0};
	char err[512];
	const char *p = write_cfg("{\"name\":\"x\",\"ttl\":\"5m\",\"flag\":true,\"list\":[\"p\",\"q\"]}");
	assert_int_equal(config_load(p, opts, ARRAY_LEN(opts), &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "x");
	assert_int_equal(c.port, 8081);
	assert_int_equal(c.ttl, 300);
	assert_true(c.flag);
	assert_true(c.frac > 0.49 && c.frac < 0.51);
	assert_string_equal(c.kind, "a");
	assert_int_equal(c.list.n, 2);
	assert_string_equal(c.list.v[1], "q");
	config_free(opts, ARRAY_LEN(opts), &c);
}

static void expect_error(const char *text, const char *const *needles)
{
	struct cfg c = {0};
	char err[512] = "";
	const char *p = write_cfg(text);
	assert_int_equal(config_load(p, opts, ARRAY_LEN(opts), &c, err, sizeof(err)), -1);
	for (; *needles; needles++)
		if (!strstr(err, *needles))
			fail_msg("error '%s' lacks '%s'", err, *needles);
	config_free(opts, ARRAY_LEN(opts), &c);
}

static void errors_name_key_value_file(void **state)
{
	expect_error("{\"name\":\"x\",\"bogus\":1}", (const char *[]){"unknown key 'bogus'", dir, NULL});
	expect_error("{\"name\":\"x\",\"port\":70000}", (const char *[]){"'port'", "70000", "range", dir, NULL});
	expect_error("{\"name\":\"x\",\"ttl\":\"5 minutes\"}", (const char *[]){"'ttl'", "5 minutes", "duration", NULL});
	expect_error("{\"name\":\"x\",\"kind\":\"c\"}", (const char *[]){"'kind'", "\"c\"", "a, b", NULL});
	expect_error("{\"name\":\"x\",\"flag\":\"yes\"}", (const char *[]){"'flag'", "yes", NULL});
	expect_error("{\"name\":\"x\",\"frac\":1.5}", (const char *[]){"'frac'", "1.5", NULL});
	expect_error("{\"port\":1}", (const char *[]){"required key 'name'", NULL});
	expect_error("{\"name\":\"x\",", (const char *[]){"invalid JSON", NULL});
	expect_error("[1,2]", (const char *[]){"JSON object", NULL});
	expect_error("{\"name\":\"x\",\"name\":\"y\"}", (const char *[]){"invalid JSON", NULL});
}

static void missing_file(void **state)
{
	struct cfg c = {0};
	char err[512];
	assert_int_equal(config_load("/nonexistent/x.json", opts, ARRAY_LEN(opts), &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/x.json"));
	config_free(opts, ARRAY_LEN(opts), &c);
}

static void durations(void **state)
{
	int64_t v;
	assert_int_equal(duration_parse("90s", &v), 0); assert_int_equal(v, 90);
	assert_int_equal(duration_parse("5m", &v), 0); assert_int_equal(v, 300);
	assert_int_equal(duration_parse("1h", &v), 0); assert_int_equal(v, 3600);
	assert_int_equal(duration_parse("2d", &v), 0); assert_int_equal(v, 172800);
	assert_int_equal(duration_parse("42", &v), 0); assert_int_equal(v, 42);
	assert_int_equal(duration_parse("", &v), -1);
	assert_int_equal(duration_parse("-5s", &v), -1);
	assert_int_equal(duration_parse("5x", &v), -1);
	assert_int_equal(duration_parse("5mm", &v), -1);
	assert_int_equal(duration_parse("99999999999999999999", &v), -1);
	char buf[32];
	duration_format(3600, buf, sizeof(buf)); assert_string_equal(buf, "1h");
	duration_format(90, buf, sizeof(buf)); assert_string_equal(buf, "90s");
}

static void files_and_encodings(void **state)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/secret", dir);
	assert_int_equal(file_write_atomic(path, "abc", 3, 0600), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(file_check_private(path), 0);
	chmod(path, 0644);
	assert_int_equal(file_check_private(path), -EPERM);
	uint8_t *buf;
	size_t len;
	assert_int_equal(file_read_all(path, 100, &buf, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "abc", 3);
	free(buf);
	assert_int_equal(file_read_all(path, 2, &buf, &len), -EFBIG);

	const uint8_t raw[] = {0xfb, 0xff, 0x00, 0x10};
	char *s = base64url_encode(raw, sizeof(raw));
	assert_string_equal(s, "-_8AEA");
	uint8_t *dec;
	size_t declen;
	assert_int_equal(base64url_decode(s, strlen(s), &dec, &declen), 0);
	assert_int_equal(declen, sizeof(raw));
	assert_memory_equal(dec, raw, sizeof(raw));
	free(dec);
	free(s);
	assert_int_equal(base64url_decode("a", 1, &dec, &declen), -1);
	assert_int_equal(base64url_decode("ab+/", 4, &dec, &declen), -1);
	char id[37];
	assert_int_equal(uuid_v4(id), 0);
	assert_int_equal(strlen(id), 36);
	assert_int_equal(id[14], '4');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(loads_and_defaults),
		cmocka_unit_test(errors_name_key_value_file),
		cmocka_unit_test(missing_file),
		cmocka_unit_test(durations),
		cmocka_unit_test(files_and_encodings),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
