#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_config.h"
#include "server_conn.h"
#include "util.h"

static char dir[64];

static const char *write_cfg(const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/agent.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup(void **state)
{
	strcpy(dir, "/tmp/lanyard-acfg-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void defaults(void **state)
{
	struct agent_config c = {0};
	char err[512] = "";
	const char *p = write_cfg("{\"trust_domain\":\"example.org\","
				  "\"trust_bundle_path\":\"/etc/lanyard/bundle.pem\"}");
	assert_int_equal(agent_config_load(p, &c, err, sizeof(err)), 0);
	assert_string_equal(c.trust_domain, "example.org");
	assert_string_equal(c.server_address, "127.0.0.1");
	assert_int_equal(c.server_port, 8081);
	assert_string_equal(c.trust_bundle_path, "/etc/lanyard/bundle.pem");
	assert_false(c.insecure_bootstrap);
	assert_string_equal(c.data_dir, "/var/lib/lanyard/agent");
	assert_string_equal(c.socket_path, "/run/lanyard/agent/api.sock");
	assert_string_equal(c.http_address, "127.0.0.1");
	assert_int_equal(c.http_port, 8088);
	assert_null(c.join_token);
	assert_string_equal(c.workload_key_type, "ec-p256");
	assert_true(c.rotation_fraction > 0.499 && c.rotation_fraction < 0.501);
	assert_string_equal(c.log_level, "info");
	assert_string_equal(c.log_format, "text");
	assert_false(c.unix_workload_path_selectors);
	assert_int_equal(c.sha256_max_size, 256 << 20);
	assert_int_equal(c.max_conns_per_process, 32);
	assert_int_equal(c.max_conns_per_uid, 0);
	assert_int_equal(c.workload_idle_timeout, 60);
	assert_int_equal(c.sync_staleness, 300);
	assert_string_equal(c.node_attestor, "join_token");
	assert_string_equal(c.psat_token_path, "/var/run/secrets/tokens/lanyard-agent");
	assert_false(c.k8s_workload_attestor);
	assert_string_equal(c.kubelet_url, "https://127.0.0.1:10250");
	assert_false(c.kubelet_insecure_skip_verify);
	assert_string_equal(c.proc_root, "/proc");
	assert_int_equal(c.server_addresses.n, 0);
	assert_int_equal(c.n_servers, 1);
	assert_string_equal(c.servers[0].host, "127.0.0.1");
	assert_int_equal(c.servers[0].port, 8081);
	agent_config_free(&c);
	agent_config_free(NULL);
}

static void all_keys(void **state)
{
	struct agent_config c = {0};
	char err[512] = "";
	const char *p = write_cfg(
		"{\"trust_domain\":\"prod.example\",\"server_address\":\"lanyard.local\","
		"\"server_port\":9443,\"insecure_bootstrap\":true,\"data_dir\":\"/tmp/x\","
		"\"socket_path\":\"/tmp/x/api.sock\",\"http_address\":\"0.0.0.0\",\"http_port\":0,"
		"\"join_token\":\"abc\",\"workload_key_type\":\"rsa-2048\",\"rotation_fraction\":0.3,"
		"\"log_level\":\"debug\",\"log_format\":\"json\",\"unix_workload_path_selectors\":true,"
		"\"sha256_max_size\":1024,\"max_conns_per_uid\":5,\"sync_staleness\":\"90s\"}");
	assert_int_equal(agent_config_load(p, &c, err, sizeof(err)), 0);
	assert_string_equal(c.server_address, "lanyard.local");
	assert_int_equal(c.server_port, 9443);
	assert_true(c.insecure_bootstrap);
	assert_null(c.trust_bundle_path);
	assert_string_equal(c.join_token, "abc");
	assert_string_equal(c.workload_key_type, "rsa-2048");
	assert_true(c.rotation_fraction > 0.299 && c.rotation_fraction < 0.301);
	assert_string_equal(c.log_format, "json");
	assert_true(c.unix_workload_path_selectors);
	assert_int_equal(c.sha256_max_size, 1024);
	assert_int_equal(c.max_conns_per_uid, 5);
	assert_int_equal(c.sync_staleness, 90);
	agent_config_free(&c);
}

/* server_addresses: every entry parsed into an endpoint, in order; the single-server keys stay
 * unset. */
static void server_addresses(void **state)
{
	struct agent_config c = {0};
	char err[512] = "";
	const char *p = write_cfg("{\"trust_domain\":\"example.org\",\"server_addresses\":"
				  "[\"10.0.0.1:8081\",\"[fd00::2]:9443\",\"lanyard.svc:8081\"]}");
	assert_int_equal(agent_config_load(p, &c, err, sizeof(err)), 0);
	assert_null(c.server_address);
	assert_int_equal(c.server_port, 0);
	assert_int_equal(c.n_servers, 3);
	assert_string_equal(c.servers[0].host, "10.0.0.1");
	assert_int_equal(c.servers[0].port, 8081);
	assert_string_equal(c.servers[1].host, "fd00::2");
	assert_int_equal(c.servers[1].port, 9443);
	assert_string_equal(c.servers[2].host, "lanyard.svc");
	char *text = agent_config_servers_text(&c);
	assert_string_equal(text, "10.0.0.1:8081, [fd00::2]:9443, lanyard.svc:8081");
	free(text);
	agent_config_free(&c);
	assert_null(c.servers);
}

/* server_address keeps working as before, an IPv6 address with or without brackets. */
static void server_address_single(void **state)
{
	static const struct {
		const char *json, *host;
		int port;
	} cases[] = {
		{"\"server_address\":\"lanyard.local\",\"server_port\":9443", "lanyard.local", 9443},
		{"\"server_address\":\"[::1]\"", "::1", 8081},
		{"\"server_address\":\"::1\",\"server_port\":1", "::1", 1},
		{"\"server_port\":7", "127.0.0.1", 7},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct agent_config c = {0};
		char err[512] = "", text[256];
		snprintf(text, sizeof(text), "{\"trust_domain\":\"example.org\",%s}", cases[i].json);
		assert_int_equal(agent_config_load(write_cfg(text), &c, err, sizeof(err)), 0);
		assert_int_equal(c.n_servers, 1);
		assert_string_equal(c.servers[0].host, cases[i].host);
		assert_int_equal(c.servers[0].port, cases[i].port);
		agent_config_free(&c);
	}
}

static void expect_error(const char *text, const char *const *needles)
{
	struct agent_config c = {0};
	char err[512] = "";
	const char *p = write_cfg(text);
	assert_int_equal(agent_config_load(p, &c, err, sizeof(err)), -1);
	for (; *needles; needles++)
		if (!strstr(err, *needles))
			fail_msg("error '%s' lacks '%s'", err, *needles);
	agent_config_free(&c);
}

#define TD "\"trust_domain\":\"example.org\","

static void errors_name_key_value_file(void **state)
{
	expect_error("{\"server_port\":1}", (const char *[]){"required key 'trust_domain'", dir, NULL});
	expect_error("{\"trust_domain\":\"Example..org/x\"}",
		     (const char *[]){"'trust_domain'", "Example..org/x", dir, NULL});
	expect_error("{" TD "\"server_port\":0}", (const char *[]){"'server_port'", "0", "range", dir, NULL});
	expect_error("{" TD "\"bogus\":1}", (const char *[]){"unknown key 'bogus'", dir, NULL});
	expect_error("{" TD "\"workload_key_type\":\"ed25519\"}",
		     (const char *[]){"'workload_key_type'", "ed25519", "ec-p256, ec-p384, rsa-2048", NULL});
	expect_error("{" TD "\"rotation_fraction\":1.5}",
		     (const char *[]){"'rotation_fraction'", "1.5", "range", NULL});
	expect_error("{" TD "\"rotation_fraction\":0.01}", (const char *[]){"'rotation_fraction'", NULL});
	expect_error("{" TD "\"log_level\":\"trace\"}", (const char *[]){"'log_level'", "trace", NULL});
	expect_error("{" TD "\"log_format\":\"xml\"}", (const char *[]){"'log_format'", "xml", NULL});
	expect_error("{" TD "\"insecure_bootstrap\":\"yes\"}",
		     (const char *[]){"'insecure_bootstrap'", "yes", NULL});
	expect_error("{" TD "\"sync_staleness\":\"soon\"}",
		     (const char *[]){"'sync_staleness'", "soon", "duration", NULL});
	expect_error("{" TD "\"data_dir\":\"relative/dir\"}",
		     (const char *[]){"'data_dir'", "relative/dir", "absolute", dir, NULL});
	expect_error("{" TD "\"socket_path\":\"\"}", (const char *[]){"'socket_path'", "empty", NULL});
	expect_error("{" TD "\"trust_bundle_path\":\"/b.pem\",\"insecure_bootstrap\":true}",
		     (const char *[]){"'trust_bundle_path'", "'insecure_bootstrap'", dir, NULL});
	expect_error("{" TD "\"max_conns_per_uid\":-1}", (const char *[]){"'max_conns_per_uid'", NULL});
	expect_error("{" TD "\"max_conns_per_process\":0}",
		     (const char *[]){"'max_conns_per_process'", NULL});
	expect_error("{" TD "\"workload_idle_timeout\":\"2d\"}",
		     (const char *[]){"'workload_idle_timeout'", NULL});
	expect_error("{" TD, (const char *[]){"invalid JSON", dir, NULL});
	expect_error("{" TD "\"node_attestor\":\"aws_iid\"}",
		     (const char *[]){"'node_attestor'", "aws_iid", "join_token, k8s_psat", NULL});
	expect_error("{" TD "\"psat_token_path\":\"\"}", (const char *[]){"'psat_token_path'", NULL});
}

static void server_address_errors(void **state)
{
	static const struct {
		const char *json;
		const char *needles[4];
	} cases[] = {
		{"\"server_addresses\":[]", {"'server_addresses'", "at least one", NULL}},
		{"\"server_addresses\":\"a:1\"", {"'server_addresses'", "not a list", NULL}},
		{"\"server_addresses\":[1]", {"'server_addresses'", "not a string", NULL}},
		{"\"server_addresses\":[\"a:1\",\"lanyard\"]",
		 {"'server_addresses'", "\"lanyard\"", "port is missing", NULL}},
		{"\"server_addresses\":[\"::1:80\"]", {"\"::1:80\"", "brackets", NULL}},
		{"\"server_addresses\":[\"a:99999\"]", {"\"a:99999\"", "1 to 65535", NULL}},
		{"\"server_addresses\":[\"a b:1\"]", {"\"a b:1\"", "character ' '", NULL}},
		{"\"server_addresses\":[\"a:1\",\"b:2\",\"a:1\"]", {"\"a:1\"", "listed twice", NULL}},
		{"\"server_addresses\":[\"a:1\"],\"server_address\":\"b\"",
		 {"'server_address'", "'server_addresses'", NULL}},
		{"\"server_addresses\":[\"a:1\"],\"server_port\":8081",
		 {"'server_port'", "'server_addresses'", NULL}},
		{"\"server_address\":\"bad host\"", {"'server_address'", "\"bad host\"", NULL}},
		{"\"server_address\":\"\"", {"'server_address'", "empty", NULL}},
		{"\"server_address\":\"a:1\"", {"'server_address'", "\"a:1\"", NULL}},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char text[512];
		snprintf(text, sizeof(text), "{" TD "%s}", cases[i].json);
		const char *needles[6] = {dir};
		size_t k = 1;
		for (size_t j = 0; cases[i].needles[j]; j++)
			needles[k++] = cases[i].needles[j];
		needles[k] = NULL;
		expect_error(text, needles);
	}
	/* More than SERVER_ENDPOINTS_MAX addresses. */
	char text[4096] = "{" TD "\"server_addresses\":[";
	for (int i = 0; i <= SERVER_ENDPOINTS_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\"h%d:1\"",
			 i ? "," : "", i);
	strcat(text, "]}");
	expect_error(text, (const char *[]){"'server_addresses'", "at most 64", dir, NULL});
}

static void empty_join_token_is_unset(void **state)
{
	struct agent_config c = {0};
	char err[512] = "";
	const char *p = write_cfg("{" TD "\"join_token\":\"\"}");
	assert_int_equal(agent_config_load(p, &c, err, sizeof(err)), 0);
	assert_null(c.join_token);
	agent_config_free(&c);
}

static void missing_file(void **state)
{
	struct agent_config c = {0};
	char err[512] = "";
	assert_int_equal(agent_config_load("/nonexistent/agent.json", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/agent.json"));
	agent_config_free(&c);
}

static void option_table_documented(void **state)
{
	assert_true(agent_config_n_options >= 18);
	for (size_t i = 0; i < agent_config_n_options; i++) {
		assert_non_null(agent_config_options[i].name);
		assert_non_null(agent_config_options[i].doc);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(agent_config_options[i].name,
						agent_config_options[j].name);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults),
		cmocka_unit_test(all_keys),
		cmocka_unit_test(errors_name_key_value_file),
		cmocka_unit_test(server_addresses),
		cmocka_unit_test(server_address_single),
		cmocka_unit_test(server_address_errors),
		cmocka_unit_test(empty_join_token_is_unset),
		cmocka_unit_test(missing_file),
		cmocka_unit_test(option_table_documented),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
