/* Tests of the file helper (agent/helper.c) against an in-process fake agent: config checks,
 * and `helper --once` writing the chain, key (0600) and bundle, signalling a pid, running a
 * command (and killing one that hangs), leaving unchanged files and processes alone, picking an
 * SVID by ID, appending federated bundles, and keeping the files when the agent refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_agent.h"
#include "grpc.h"
#include "helper.h"
#include "keys.h"
#include "util.h"
#include "x509.h"

static char dir[64];
static char sock[128];
static struct fake_agent *fa;
static struct test_ca ca, other;
static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1++;
}

static const char *path_in(const char *name)
{
	static char p[8][160];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void write_config(const char *extra)
{
	FILE *f = fopen(path_in("helper.json"), "w");

	assert_non_null(f);
	fprintf(f,
		"{\"agent_socket\": \"unix://%s\", \"cert_path\": \"%s\", \"key_path\": \"%s\", "
		"\"bundle_path\": \"%s\", \"log_level\": \"error\"%s%s}\n",
		sock, path_in("svid.pem"), path_in("svid_key.pem"), path_in("bundle.pem"),
		extra ? ", " : "", extra ? extra : "");
	fclose(f);
}

static int run_once(int timeout_s)
{
	char t[16];
	char *argv[] = {"helper", "--config", (char *)path_in("helper.json"), "--once",
			"--timeout", t, NULL};

	snprintf(t, sizeof(t), "%d", timeout_s);
	return helper_main(6, argv);
}

static void serve(const struct test_svid *svids, size_t n, bool federated)
{
	const char *fid[1] = {"spiffe://other.org"};
	const uint8_t *fder[1] = {other.der};
	size_t flen[1] = {other.len}, len;
	uint8_t *msg = test_x509_response(svids, n, fid, fder, flen, federated ? 1 : 0, &len);

	assert_non_null(msg);
	fake_agent_set_x509(fa, msg, len);
	free(msg);
}

static char *slurp(const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(file_read_all(path, 1 << 20, &buf, &len), 0);
	return (char *)buf;
}

/* The files hold s: chain, matching key, and the bundle (n_bundle_certs CA certificates). */
static void check_files(const struct test_svid *s, size_t n_bundle_certs)
{
	char *cert = slurp(path_in("svid.pem")), *key = slurp(path_in("svid_key.pem"));
	char *bundle = slurp(path_in("bundle.pem"));
	uint8_t *der = NULL;
	size_t len = 0;
	const uint8_t **certs;
	size_t *lens, n;
	struct stat st;
	lkey *k = NULL;

	assert_int_equal(pem_decode_concat(cert, strlen(cert), "CERTIFICATE", &der, &len), 0);
	assert_int_equal(len, s->chain_len);
	assert_memory_equal(der, s->chain, len);
	assert_int_equal(lkey_from_pem(key, strlen(key), &k), 0);
	assert_true(lkey_matches_cert(k, der, len));
	assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
	free(der);
	assert_int_equal(pem_decode_concat(bundle, strlen(bundle), "CERTIFICATE", &der, &len), 0);
	assert_int_equal(x509_split_der(der, len, &certs, &lens, &n), 0);
	assert_int_equal(n, n_bundle_certs);
	assert_int_equal(lens[0], ca.len);
	assert_memory_equal(certs[0], ca.der, ca.len);
	if (n > 1)
		assert_memory_equal(certs[1], other.der, other.len);
	free(certs);
	free(lens);
	free(der);
	assert_int_equal(stat(path_in("svid_key.pem"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(path_in("svid.pem"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(stat(path_in("bundle.pem"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	lkey_free(k);
	free(cert);
	secure_zero(key, strlen(key));
	free(key);
	free(bundle);
}

static int lines_in(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void test_config(void **state)
{
	struct helper_config cfg;
	char err[512];
	static const struct {
		const char *extra, *want;
	} bad[] = {
		{"\"pid\": 10, \"pid_file\": \"/run/x.pid\"", "set only one"},
		{"\"signal\": \"SIGKILL\"", "signal"},
		{"\"spiffe_id\": \"spiffe://example.org\"", "spiffe_id"},
		{"\"colour\": \"blue\"", "colour"},
		{"\"cmd_timeout\": \"0s\"", "cmd_timeout"},
		{"\"pid\": -3", "pid"},
	};

	write_config("\"pid\": 42, \"signal\": \"SIGUSR2\", \"cmd\": \"true\"");
	assert_int_equal(helper_config_load(path_in("helper.json"), &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.pid, 42);
	assert_string_equal(cfg.signal_name, "SIGUSR2");
	assert_int_equal(cfg.cmd_timeout, 30);
	assert_false(cfg.federated_bundles);
	helper_config_free(&cfg);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_config(bad[i].extra);
		assert_int_equal(helper_config_load(path_in("helper.json"), &cfg, err, sizeof(err)),
				 -1);
		if (!strstr(err, bad[i].want))
			fail_msg("%s: error '%s' does not name %s", bad[i].extra, err, bad[i].want);
		assert_non_null(strstr(err, "helper.json"));
		helper_config_free(&cfg);
	}

	/* Required paths, distinct paths, a usable socket address. */
	{
		FILE *f = fopen(path_in("helper.json"), "w");

		fprintf(f, "{\"cert_path\": \"/tmp/a\", \"key_path\": \"/tmp/a\", "
			   "\"bundle_path\": \"/tmp/b\"}");
		fclose(f);
		assert_int_equal(helper_config_load(path_in("helper.json"), &cfg, err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "different"));
		helper_config_free(&cfg);
		f = fopen(path_in("helper.json"), "w");
		fprintf(f, "{\"cert_path\": \"/tmp/a\", \"bundle_path\": \"/tmp/b\"}");
		fclose(f);
		assert_int_equal(helper_config_load(path_in("helper.json"), &cfg, err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "key_path"));
		helper_config_free(&cfg);
		f = fopen(path_in("helper.json"), "w");
		fprintf(f, "{\"cert_path\": \"/tmp/a\", \"key_path\": \"/tmp/k\", \"bundle_path\": "
			   "\"/tmp/b\", \"agent_socket\": \"tcp://127.0.0.1:1\"}");
		fclose(f);
		assert_int_equal(helper_config_load(path_in("helper.json"), &cfg, err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "agent_socket"));
		helper_config_free(&cfg);
	}

	/* A directory that does not exist fails at start, not at the first renewal. */
	{
		FILE *f = fopen(path_in("helper.json"), "w");
		char *argv[] = {"helper", "--config", (char *)path_in("helper.json"), "--once", NULL};
		int64_t t0 = now_mono_us();

		fprintf(f, "{\"cert_path\": \"%s/nope/svid.pem\", \"key_path\": \"%s\", "
			   "\"bundle_path\": \"%s\", \"agent_socket\": \"%s\"}",
			dir, path_in("k.pem"), path_in("b.pem"), sock);
		fclose(f);
		assert_int_equal(helper_main(4, argv), 1);
		assert_true(now_mono_us() - t0 < 1000000);
		assert_int_equal(access(path_in("k.pem"), F_OK), -1);
	}

	/* Usage errors are exit status 1, --help 0. */
	{
		char *no_config[] = {"helper", "--once", NULL};
		char *bad_timeout[] = {"helper", "--config", "x", "--timeout", "0", NULL};
		char *help[] = {"helper", "--help", NULL};
		char *missing[] = {"helper", "--config", "/nonexistent/helper.json", NULL};

		assert_int_equal(helper_main(2, no_config), 1);
		assert_int_equal(helper_main(5, bad_timeout), 1);
		assert_int_equal(helper_main(3, missing), 1);
		assert_int_equal(helper_main(2, help), 0);
	}
}

static void test_once(void **state)
{
	struct test_svid a1, a2, b;
	char extra[512];

	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a1), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/a", 60, &a2), 0);
	assert_int_equal(test_svid_new(&ca, "spiffe://example.org/b", 60, &b), 0);
	snprintf(extra, sizeof(extra),
		 "\"pid\": %ld, \"signal\": \"SIGUSR1\", \"cmd\": \"echo run >> %s\"",
		 (long)getpid(), path_in("cmd.log"));
	write_config(extra);

	/* First write: files, signal, command. */
	serve(&a1, 1, false);
	usr1 = 0;
	assert_int_equal(run_once(5), 0);
	check_files(&a1, 1);
	assert_int_equal(usr1, 1);
	assert_int_equal(lines_in(path_in("cmd.log")), 1);

	/* The same SVID again: nothing rewritten, nobody disturbed. */
	assert_int_equal(run_once(5), 0);
	assert_int_equal(usr1, 1);
	assert_int_equal(lines_in(path_in("cmd.log")), 1);

	/* A renewal: written and notified again. */
	serve(&a2, 1, false);
	assert_int_equal(run_once(5), 0);
	check_files(&a2, 1);
	assert_int_equal(usr1, 2);
	assert_int_equal(lines_in(path_in("cmd.log")), 2);

	/* The agent refuses: --once fails after its timeout, the files stay as they were. */
	fake_agent_fail_x509(fa, GRPC_STATUS_PERMISSION_DENIED, "no identity issued");
	{
		int64_t t0 = now_mono_us();

		assert_int_equal(run_once(1), 1);
		assert_true(now_mono_us() - t0 >= 900000);
		assert_true(now_mono_us() - t0 < 5000000);
	}
	check_files(&a2, 1);
	assert_int_equal(usr1, 2);

	/* Two SVIDs: spiffe_id picks one; federated bundles appended on request. */
	{
		struct test_svid both[2] = {a1, b};

		serve(both, 2, true);
	}
	snprintf(extra, sizeof(extra),
		 "\"spiffe_id\": \"spiffe://example.org/b\", \"federated_bundles\": true");
	write_config(extra);
	assert_int_equal(run_once(5), 0);
	check_files(&b, 2);
	/* An ID the agent does not serve: nothing written. */
	write_config("\"spiffe_id\": \"spiffe://example.org/zzz\"");
	assert_int_equal(run_once(1), 1);
	check_files(&b, 2);

	/* A command that hangs is killed after cmd_timeout. */
	serve(&a1, 1, false);
	write_config("\"cmd\": \"sleep 30\", \"cmd_timeout\": \"1s\"");
	{
		int64_t t0 = now_mono_us();

		assert_int_equal(run_once(5), 0);
		assert_true(now_mono_us() - t0 < 5000000);
	}
	check_files(&a1, 1);

	/* A pid_file without a pid: a warning, the files are still written. */
	{
		FILE *f = fopen(path_in("app.pid"), "w");

		fprintf(f, "not a pid\n");
		fclose(f);
	}
	snprintf(extra, sizeof(extra), "\"pid_file\": \"%s\"", path_in("app.pid"));
	write_config(extra);
	serve(&a2, 1, false);
	assert_int_equal(run_once(5), 0);
	check_files(&a2, 1);
	assert_int_equal(usr1, 2);

	test_svid_free(&a1);
	test_svid_free(&a2);
	test_svid_free(&b);
}

static int setup(void **state)
{
	struct sigaction sa = {.sa_handler = on_usr1};

	snprintf(dir, sizeof(dir), "/tmp/lanyard-helper-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock, sizeof(sock), "%s/agent.sock", dir);
	sigaction(SIGUSR1, &sa, NULL);
	if (test_ca_new("example.org", &ca) < 0 || test_ca_new("other.org", &other) < 0)
		return -1;
	return fake_agent_start(sock, &fa);
}

static int teardown(void **state)
{
	char cmd[128];

	fake_agent_stop(fa);
	test_ca_free(&ca);
	test_ca_free(&other);
	keys_release_thread_ecc_cache();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_once),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
