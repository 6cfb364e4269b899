/* Unit tests of server_conn.c: parsing of "host:port" endpoints, the candidate list (random
 * start, rotation, DNS expansion, duplicates), the failover backoff, a connect failure on a
 * closed loopback port, and the sync thread's wake fd outliving a connection. The .c is included
 * to reach its statics (resolve_first, backoff_step) and fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../agent/server_conn.c"

static void parse_valid(void **state)
{
	static const struct {
		const char *text, *host;
		int port;
	} cases[] = {
		{"127.0.0.1:8081", "127.0.0.1", 8081},
		{"lanyard.example.org:443", "lanyard.example.org", 443},
		{"lanyard-server.lanyard.svc.cluster.local.:1", "lanyard-server.lanyard.svc.cluster.local.", 1},
		{"[::1]:9", "::1", 9},
		{"[fe80::1:2]:65535", "fe80::1:2", 65535},
		{"a:00080", "a", 80},
		{"x1-y2.Z3:8081", "x1-y2.Z3", 8081},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct server_endpoint ep;
		char why[256] = "";
		if (server_endpoint_parse(cases[i].text, &ep, why, sizeof(why)) < 0)
			fail_msg("\"%s\" refused: %s", cases[i].text, why);
		assert_string_equal(ep.host, cases[i].host);
		assert_int_equal(ep.port, cases[i].port);
		free(ep.host);
	}
}

static void parse_invalid(void **state)
{
	char long_label[80], long_host[300];
	memset(long_label, 'a', 64);
	strcpy(long_label + 64, ".org:80");
	for (size_t i = 0; i < 127; i++)
		memcpy(long_host + 2 * i, "a.", 2);
	strcpy(long_host + 254, ":80");
	const struct {
		const char *text, *why;
	} cases[] = {
		{"", "port is missing"},
		{"lanyard", "port is missing"},
		{"lanyard:", "port must be"},
		{"lanyard:0", "port must be"},
		{"lanyard:65536", "port must be"},
		{"lanyard:123456", "port must be"},
		{"lanyard:+80", "port must be"},
		{"lanyard:80a", "port must be"},
		{"lanyard: 80", "port must be"},
		{":80", "host is empty"},
		{"::1:80", "brackets"},
		{"[::1]80", "[IPv6 address]:port"},
		{"[::1]", "[IPv6 address]:port"},
		{"[]:80", "[IPv6 address]:port"},
		{"[1.2.3.4]:80", "not an IPv6 address"},
		{"[zz::1]:80", "not an IPv6 address"},
		{"ho st:80", "character ' '"},
		{"host_name:80", "character '_'"},
		{"-a.org:80", "start with '-'"},
		{"a-.org:80", "malformed label"},
		{"a-:80", "end with '-'"},
		{"a..org:80", "malformed label"},
		{".a.org:80", "malformed label"},
		{"999.1.1.1:80", "IPv4"},
		{"1234:80", "IPv4"},
		{long_label, "longer than 63"},
		{long_host, "longer than 253"},
		{"http://a:80", "not a URL"},
		{"a/b:80", "character '/'"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct server_endpoint ep = {.host = (char *)"x"};
		char why[256] = "";
		if (server_endpoint_parse(cases[i].text, &ep, why, sizeof(why)) == 0)
			fail_msg("\"%s\" accepted as %s:%d", cases[i].text, ep.host, ep.port);
		assert_null(ep.host);
		if (!strstr(why, cases[i].why))
			fail_msg("\"%s\": reason '%s' lacks '%s'", cases[i].text, why, cases[i].why);
	}
}

static void host_check(void **state)
{
	char why[256];
	assert_int_equal(server_host_check("::1", why, sizeof(why)), 0);
	assert_int_equal(server_host_check("10.0.0.1", why, sizeof(why)), 0);
	assert_int_equal(server_host_check("lanyard-server", why, sizeof(why)), 0);
	assert_int_equal(server_host_check("", why, sizeof(why)), -1);
	assert_int_equal(server_host_check("[::1]", why, sizeof(why)), -1);
	assert_int_equal(server_host_check("a b", why, sizeof(why)), -1);
	assert_int_equal(server_host_check("1:2:3", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "IPv6"));
}

static struct server_conn *conn_of(const char *const *texts, size_t n)
{
	struct server_endpoint *eps = xcalloc(n, sizeof(*eps));
	char why[256];
	for (size_t i = 0; i < n; i++)
		assert_int_equal(server_endpoint_parse(texts[i], &eps[i], why, sizeof(why)), 0);
	struct server_conn *c = server_conn_new(eps, n, "example.org", true);
	server_endpoints_free(eps, n);
	return c;
}

/* The start is the random draw modulo the number of candidates; each failover moves to the
 * next one, each round visits every candidate once, in configuration order. */
static void rotation(void **state)
{
	static const char *const texts[] = {"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"};
	for (uint32_t rnd = 0; rnd < 7; rnd++) {
		struct server_conn *c = conn_of(texts, 3);
		assert_string_equal(server_conn_current(c), "");
		assert_int_equal(server_conn_candidates(c), 0);
		assert_false(server_conn_failover(c));
		resolve_first(c, rnd);
		assert_int_equal(server_conn_candidates(c), 3);
		static const char *const labels[] = {"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"};
		for (size_t step = 0; step < 7; step++) {
			assert_string_equal(server_conn_current(c), labels[(rnd + step) % 3]);
			assert_true(server_conn_failover(c));
		}
		server_conn_free(c);
	}
}

static void single_candidate_does_not_move(void **state)
{
	static const char *const texts[] = {"127.0.0.1:1"};
	struct server_conn *c = conn_of(texts, 1);
	resolve_first(c, 12345);
	assert_string_equal(server_conn_current(c), "127.0.0.1:1");
	for (int i = 0; i < 3; i++) {
		assert_false(server_conn_failover(c));
		assert_string_equal(server_conn_current(c), "127.0.0.1:1");
	}
	server_conn_free(c);
}

/* A host name is expanded into its addresses, each a candidate labelled with the name; an
 * address reached twice (a literal and a name resolving to it) is one candidate. */
static void names_expand_and_duplicates_merge(void **state)
{
	static const char *const texts[] = {"127.0.0.1:7", "localhost:7", "localhost:8"};
	struct server_conn *c = conn_of(texts, 3);
	resolve_first(c, 0);
	size_t n = server_conn_candidates(c);
	assert_true(n >= 2);
	bool named8 = false;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++)
			assert_false(c->cands[i].port == c->cands[j].port &&
				     strcmp(c->cands[i].addr, c->cands[j].addr) == 0);
		if (c->cands[i].port == 8) {
			assert_true(strncmp(c->cands[i].label, "localhost:8 (", 13) == 0);
			named8 = true;
		}
	}
	assert_true(named8);
	assert_string_equal(c->cands[0].label, "127.0.0.1:7");
	/* A full round comes back to the start. */
	for (size_t i = 0; i < n; i++)
		server_conn_failover(c);
	assert_string_equal(server_conn_current(c), "127.0.0.1:7");
	server_conn_free(c);
}

/* A name with several addresses (as a DNS answer in rotated order, one repeated): each address
 * once, sorted, labelled with the name. */
static void several_addresses_of_a_name(void **state)
{
	struct sockaddr_in v4[3] = {
		{.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000003)},
		{.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000001)},
		{.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000003)},
	};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	v6.sin6_addr.s6_addr[0] = 0xfd;
	v6.sin6_addr.s6_addr[15] = 2;
	struct addrinfo ai[4] = {0};
	for (int i = 0; i < 3; i++) {
		ai[i].ai_family = AF_INET;
		ai[i].ai_addr = (struct sockaddr *)&v4[i];
		ai[i].ai_addrlen = sizeof(v4[i]);
		ai[i].ai_next = &ai[i + 1];
	}
	ai[3].ai_family = AF_INET6;
	ai[3].ai_addr = (struct sockaddr *)&v6;
	ai[3].ai_addrlen = sizeof(v6);
	char **texts = NULL;
	size_t n = addrinfo_texts(ai, &texts);
	assert_int_equal(n, 4);
	struct candidate *cands = NULL;
	size_t nc = 0;
	for (size_t i = 0; i < n; i++) {
		add_candidate(&cands, &nc, texts[i], 8081, "lanyard.svc");
		free(texts[i]);
	}
	free(texts);
	assert_int_equal(nc, 3);
	assert_string_equal(cands[0].label, "lanyard.svc:8081 (10.0.0.1)");
	assert_string_equal(cands[1].label, "lanyard.svc:8081 (10.0.0.3)");
	assert_string_equal(cands[2].label, "lanyard.svc:8081 (fd00::2)");
	assert_string_equal(cands[2].addr, "fd00::2");
	free(cands);
}

static void backoff_bounds(void **state)
{
	static const uint32_t rnds[] = {0, 1, 249, 250, 251, 9999, 0x7fffffff, UINT32_MAX};
	int64_t prev_base = 0;
	for (unsigned streak = 1; streak < 70; streak++) {
		int64_t base = streak < 8 ? (int64_t)500 << (streak - 1) : 30000;
		if (base > 30000)
			base = 30000;
		assert_true(base >= prev_base);
		prev_base = base;
		for (size_t i = 0; i < ARRAY_LEN(rnds); i++) {
			int64_t ms = backoff_step(streak, rnds[i]);
			if (ms < 100 || ms > base)
				fail_msg("streak %u rnd %u: %lld ms outside [100, %lld]", streak,
					 rnds[i], (long long)ms, (long long)base);
		}
	}
	/* Full jitter: the floor and the whole step are both reachable. */
	assert_int_equal(backoff_step(1, 0), 100);
	assert_int_equal(backoff_step(1, 400), 500);
	assert_int_equal(backoff_step(UINT_MAX, 0), 100);
	assert_int_equal(backoff_step(UINT_MAX, 29900), 30000);
	assert_true(backoff_step(UINT_MAX, UINT32_MAX) <= 30000);
}

/* The streak grows with each failure and a working session ends it; draws are jittered. */
static void backoff_streak(void **state)
{
	static const char *const texts[] = {"127.0.0.1:1"};
	struct server_conn *c = conn_of(texts, 1);
	int64_t first = server_conn_backoff_ms(c);
	assert_true(first >= 100 && first <= 500);
	int64_t ms = 0, longest = 0;
	for (int i = 0; i < 20; i++)
		ms = server_conn_backoff_ms(c);
	/* The step grew to 30 s: of 50 more draws (uniform from 100 ms), one is past 0.5 s. */
	for (int i = 0; i < 50; i++) {
		ms = server_conn_backoff_ms(c);
		assert_true(ms >= 100 && ms <= 30000);
		longest = ms > longest ? ms : longest;
	}
	assert_true(longest > 500);
	server_conn_connected(c);
	ms = server_conn_backoff_ms(c);
	assert_true(ms >= 100 && ms <= 500);
	/* Jitter: 50 first draws are not all equal. */
	bool differ = false;
	for (int i = 0; i < 50 && !differ; i++) {
		server_conn_connected(c);
		differ = server_conn_backoff_ms(c) != ms;
	}
	assert_true(differ);
	server_conn_free(c);
}

/* With several candidates the step doubles once per round, so each is tried promptly. */
static void backoff_per_round(void **state)
{
	static const char *const texts[] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
	struct server_conn *c = conn_of(texts, 3);
	server_conn_resolve(c);
	for (int round = 0; round < 8; round++) {
		int64_t base = round < 6 ? 500 << round : 30000;
		for (int i = 0; i < 3; i++) {
			int64_t ms = server_conn_backoff_ms(c);
			if (ms < 100 || ms > base)
				fail_msg("round %d attempt %d: %lld ms outside [%d, %lld]", round, i,
					 (long long)ms, 100, (long long)base);
		}
	}
	server_conn_free(c);
}

static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* Connecting to a closed port fails at once with an error naming the address, and the failover
 * moves to the other candidate, which is tried next. */
static void connect_refused_then_next(void **state)
{
	char t1[32], t2[32], err[512];
	int p1 = closed_port(), p2 = closed_port();
	snprintf(t1, sizeof(t1), "127.0.0.1:%d", p1);
	snprintf(t2, sizeof(t2), "127.0.0.1:%d", p2);
	const char *const texts[] = {t1, t2};
	struct server_conn *c = conn_of(texts, 2);
	assert_int_equal(server_conn_open(c, NULL, 0, NULL, 0, NULL, err, sizeof(err)), -1);
	char first[SERVER_LABEL_MAX];
	snprintf(first, sizeof(first), "%s", server_conn_current(c));
	assert_true(strcmp(first, t1) == 0 || strcmp(first, t2) == 0);
	if (!strstr(err, first + strlen("127.0.0.1:")) || !strstr(err, "refused"))
		fail_msg("error '%s' does not name %s as refused", err, first);
	assert_true(server_conn_failover(c));
	assert_string_not_equal(server_conn_current(c), first);
	assert_int_equal(server_conn_open(c, NULL, 0, NULL, 0, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, server_conn_current(c) + strlen("127.0.0.1:")));
	server_conn_free(c);
}

/* After an abort no connect is attempted any more: the error is "stopping", not the refusal. */
static void abort_stops_opens(void **state)
{
	char t1[32], err[512] = "";
	snprintf(t1, sizeof(t1), "127.0.0.1:%d", closed_port());
	const char *const texts[] = {t1};
	struct server_conn *c = conn_of(texts, 1);
	server_conn_abort(c);
	assert_int_equal(server_conn_open(c, NULL, 0, NULL, 0, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "stopping");
	server_conn_free(c);
}

/* The wake fd is the sync thread's, not one connection's: after a connection is closed (the
 * agent reconnects after attestation, after a failover, after renewing its SVID), the next one
 * must still be woken by a queued JWT request. server_conn_close once forgot it, and every
 * connection but the first waited out the entry stream's poll before serving JWTs. */
static void wake_fd_outlives_a_connection(void **state)
{
	char dir[] = "/tmp/test_server_conn.XXXXXX", err[256];
	assert_non_null(mkdtemp(dir));
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s", dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(efd >= 0);
	const char *const texts[] = {"127.0.0.1:1"};
	struct server_conn *c = conn_of(texts, 1);
	server_conn_set_wake_fd(c, efd);
	for (int round = 0; round < 2; round++) {
		/* A connection as server_conn_open leaves it (the TLS part does not matter here). */
		if (grpc_client_connect_unix(sun.sun_path, 5000, &c->gc, err, sizeof(err)) < 0)
			fail_msg("connect %s: %s", sun.sun_path, err);
		grpc_client_set_wake_fd(c->gc, c->wake_fd);
		server_conn_close(c);
		assert_null(c->gc);
		assert_int_equal(c->wake_fd, efd);
	}
	server_conn_free(c);
	close(efd);
	close(lfd);
	unlink(sun.sun_path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_valid),
		cmocka_unit_test(parse_invalid),
		cmocka_unit_test(host_check),
		cmocka_unit_test(rotation),
		cmocka_unit_test(single_candidate_does_not_move),
		cmocka_unit_test(names_expand_and_duplicates_merge),
		cmocka_unit_test(several_addresses_of_a_name),
		cmocka_unit_test(backoff_bounds),
		cmocka_unit_test(backoff_streak),
		cmocka_unit_test(backoff_per_round),
		cmocka_unit_test(connect_refused_then_next),
		cmocka_unit_test(abort_stops_opens),
		cmocka_unit_test(wake_fd_outlives_a_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
