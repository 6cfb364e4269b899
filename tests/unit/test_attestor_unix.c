/* Unit tests for agent/attestor_unix.c: caller pinning and the unix workload attestor, against
 * the test process itself and against a fake proc tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attestor.h"
#include "util.h"

static bool has(const struct selector_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static bool has_prefix(const struct selector_list *l, const char *prefix)
{
	for (size_t i = 0; i < l->n; i++)
		if (strncmp(l->v[i], prefix, strlen(prefix)) == 0)
			return true;
	return false;
}

static void assert_sorted_unique(const struct selector_list *l)
{
	for (size_t i = 1; i < l->n; i++)
		assert_true(strcmp(l->v[i - 1], l->v[i]) < 0);
}

/* sha256sum's answer, to check our hashing independently. */
static void sha256sum(const char *path, char hex[65])
{
	char cmd[4200];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%64s", hex), 1);
	pclose(p);
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void stat_parsing(void **state)
{
	uint64_t st = 0;
	const char *ok = "1234 (my (odd) ) (prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 "
			 "0 987654 12345678 100 18446744073709551615\n";
	const char *simple = "1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 42 1 2\n";

	assert_int_equal(proc_stat_start_time(ok, strlen(ok), &st), 0);
	assert_int_equal(st, 987654);
	assert_int_equal(proc_stat_start_time(simple, strlen(simple), &st), 0);
	assert_int_equal(st, 42);
	/* Too few fields, no ')', a non-number, an overflowing number. */
	assert_int_equal(proc_stat_start_time("1 (x) S 1 2 3", 13, &st), -1);
	assert_int_equal(proc_stat_start_time("1 x S 1 2 3", 11, &st), -1);
	const char *bad = "1 (x) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 4x2 1\n";
	assert_int_equal(proc_stat_start_time(bad, strlen(bad), &st), -1);
	const char *big = "1 (x) S 0 1 1 0 -1 4 1 2 3 4 5 6 7 8 20 0 1 0 99999999999999999999999 1\n";
	assert_int_equal(proc_stat_start_time(big, strlen(big), &st), -1);
	assert_int_equal(proc_stat_start_time("", 0, &st), -1);
}

static void self_via_socketpair(void **state)
{
	struct attestor_unix_opts o = {.path_selectors = true, .sha256_max_size = 0};
	struct attestor *a = attestor_unix_new(&o);
	struct selector_list sel = {0};
	struct caller c;
	char err[256] = "", want[256], exe[4096], hex[65];
	int sv[2];
	ssize_t n;

	assert_non_null(a);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(caller_from_socket(sv[0], NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(c.pid, getpid());
	assert_int_equal(c.uid, geteuid());
	assert_int_equal(c.gid, getegid());
	assert_true(c.proc_fd >= 0);
	assert_true(c.start_time > 0);

	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	selector_list_normalize(&sel);
	assert_sorted_unique(&sel);
	snprintf(want, sizeof(want), "unix:uid:%u", (unsigned)getuid());
	assert_true(has(&sel, want));
	snprintf(want, sizeof(want), "unix:gid:%u", (unsigned)getgid());
	assert_true(has(&sel, want));
	struct passwd *pw = getpwuid(getuid());
	if (pw) {
		snprintf(want, sizeof(want), "unix:user:%s", pw->pw_name);
		assert_true(has(&sel, want));
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	snprintf(want, sizeof(want), "unix:path:%.200s", exe);
	assert_true(has(&sel, want));
	sha256sum(exe, hex);
	snprintf(want, sizeof(want), "unix:sha256:%s", hex);
	assert_true(has(&sel, want));

	assert_int_equal(caller_verify(&c, err, sizeof(err)), 0);
	selector_list_free(&sel);
	caller_close(&c);
	caller_close(&c); /* idempotent */
	close(sv[0]);
	close(sv[1]);
	attestor_free(a);
}

struct fake_proc {
	char root[64];
	char dir[128];
	char exe[160];
};

static void fake_proc_setup(struct fake_proc *f, const char *start_time, unsigned uid, unsigned gid)
{
	char buf[1024];

	strcpy(f->root, "/tmp/lanyard-fakeproc-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/4242", f->root);
	assert_int_equal(mkdir(f->dir, 0755), 0);
	snprintf(buf, sizeof(buf),
		 "4242 (evil) (comm) ) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %s "
		 "12345678 100\n",
		 start_time);
	write_file(f->dir, "stat", buf);
	snprintf(buf, sizeof(buf),
		 "Name:\tevil\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t4242\n"
		 "Uid:\t%u\t%u\t%u\t%u\nGid:\t%u\t%u\t%u\t%u\nGroups:\t0 4243 \nVmPeak:\t1 kB\n",
		 uid, uid, uid, uid, gid, gid, gid, gid);
	write_file(f->dir, "status", buf);
	snprintf(f->exe, sizeof(f->exe), "%s/binary", f->root);
	write_file(f->root, "binary", "#!/bin/sh\necho first version\n");
	snprintf(buf, sizeof(buf), "%s/exe", f->dir);
	assert_int_equal(symlink(f->exe, buf), 0);
}

static void fake_proc_teardown(struct fake_proc *f)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	assert_int_equal(system(cmd), 0);
}

static void fake_proc_tree(void **state)
{
	struct attestor_unix_opts o = {.path_selectors = true, .sha256_max_size = 1 << 20};
	struct attestor *a = attestor_unix_new(&o);
	struct selector_list sel = {0};
	struct fake_proc f;
	struct caller c;
	char err[256] = "", want[300], hex[65];

	fake_proc_setup(&f, "555666", 1234, 5678);
	assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
	assert_int_equal(c.start_time, 555666);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	selector_list_normalize(&sel);
	assert_sorted_unique(&sel);
	assert_true(has(&sel, "unix:uid:1234"));
	assert_true(has(&sel, "unix:gid:5678"));
	assert_true(has(&sel, "unix:supplementary_gid:0"));
	assert_true(has(&sel, "unix:supplementary_gid:4243"));
	struct group *g = getgrgid(0);
	if (g) {
		snprintf(want, sizeof(want), "unix:supplementary_group:%s", g->gr_name);
		assert_true(has(&sel, want));
	}
	snprintf(want, sizeof(want), "unix:path:%s", f.exe);
	assert_true(has(&sel, want));
	sha256sum(f.exe, hex);
	snprintf(want, sizeof(want), "unix:sha256:%s", hex);
	assert_true(has(&sel, want));
	assert_int_equal(caller_verify(&c, err, sizeof(err)), 0);
	selector_list_free(&sel);
	caller_close(&c);
	fake_proc_teardown(&f);
	attestor_free(a);
}

static void start_time_mismatch_refused(void **state)
{
	struct fake_proc f;
	struct caller c;
	char err[256] = "", buf[512];

	fake_proc_setup(&f, "1000", 1234, 5678);
	assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
	assert_int_equal(caller_verify(&c, err, sizeof(err)), 0);
	/* The pid now belongs to another process: same dirfd, new start time. */
	snprintf(buf, sizeof(buf),
		 "4242 (other) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 2000 1 1\n");
	write_file(f.dir, "stat", buf);
	assert_int_equal(caller_verify(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "caller process changed during attestation"));
	caller_close(&c);

	/* A uid change is refused too. */
	assert_int_equal(caller_pin(f.root, 4242, 1111, 5678, &c, err, sizeof(err)), 0);
	assert_int_equal(caller_verify(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "uid"));
	caller_close(&c);

	/* A process that disappeared. */
	assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
	fake_proc_teardown(&f);
	assert_int_equal(caller_verify(&c, err, sizeof(err)), -1);
	caller_close(&c);

	assert_int_equal(caller_pin("/nonexistent-proc", 4242, 1, 1, &c, err, sizeof(err)), -1);
	assert_int_equal(caller_pin(NULL, 0, 1, 1, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not visible"));
}

/* exec keeps pid and start time: the executable (its device and inode) pinned at connect must
 * still be the one at each request, in the slow path (path selectors) and the fast one. */
static void exec_after_connect_refused(void **state)
{
	struct attestor_unix_opts slow = {.path_selectors = true}, fast = {0};
	struct attestor *a[2] = {attestor_unix_new(&slow), attestor_unix_new(&fast)};
	struct selector_list sel = {0};
	struct fake_proc f;
	struct caller c;
	char err[256] = "", link[300], other[200];

	fake_proc_setup(&f, "1000", 1234, 5678);
	snprintf(other, sizeof(other), "%s/entitled", f.root);
	write_file(f.root, "entitled", "#!/bin/sh\necho entitled\n");
	snprintf(link, sizeof(link), "%s/exe", f.dir);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
		assert_true(c.exe_known);
		assert_int_equal(attest_caller(&a[i], 1, &c, true, &sel, err, sizeof(err)), 0);
		selector_list_free(&sel);
		/* The process execs another binary. */
		assert_int_equal(unlink(link), 0);
		assert_int_equal(symlink(other, link), 0);
		err[0] = 0;
		assert_int_equal(attest_caller(&a[i], 1, &c, true, &sel, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "executed another program since it connected"));
		selector_list_free(&sel);
		assert_int_equal(caller_verify(&c, err, sizeof(err)), -1);
		/* An executable that became unreadable is a change too. */
		assert_int_equal(unlink(link), 0);
		assert_int_equal(caller_verify(&c, err, sizeof(err)), -1);
		assert_int_equal(symlink(f.exe, link), 0);
		assert_int_equal(caller_verify(&c, err, sizeof(err)), 0);
		caller_close(&c);
	}
	fake_proc_teardown(&f);
	attestor_free(a[0]);
	attestor_free(a[1]);
}

static void hash_cache_and_limit(void **state)
{
	struct attestor_unix_opts o = {.path_selectors = true, .sha256_max_size = 1 << 20};
	struct attestor *a = attestor_unix_new(&o);
	struct selector_list sel = {0};
	struct fake_proc f;
	struct caller c;
	struct stat st;
	char err[256], want[300], first[65], second[65];
	struct timespec ts[2];

	fake_proc_setup(&f, "1", 1, 1);
	assert_int_equal(caller_pin(f.root, 4242, 1, 1, &c, err, sizeof(err)), 0);
	sha256sum(f.exe, first);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "unix:sha256:%s", first);
	assert_true(has(&sel, want));
	selector_list_free(&sel);

	/* Same size, same mtime: the cached hash is used (proves the cache key). */
	assert_int_equal(stat(f.exe, &st), 0);
	write_file(f.root, "binary", "#!/bin/sh\necho other version\n");
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, f.exe, ts, 0), 0);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	assert_true(has(&sel, want));
	selector_list_free(&sel);

	/* A new mtime: hashed again. */
	ts[1].tv_sec += 10;
	assert_int_equal(utimensat(AT_FDCWD, f.exe, ts, 0), 0);
	sha256sum(f.exe, second);
	assert_string_not_equal(first, second);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "unix:sha256:%s", second);
	assert_true(has(&sel, want));
	selector_list_free(&sel);
	attestor_free(a);

	/* Above the size limit: no sha256 selector, the rest still there. */
	o.sha256_max_size = 4;
	a = attestor_unix_new(&o);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	assert_false(has_prefix(&sel, "unix:sha256:"));
	assert_true(has_prefix(&sel, "unix:path:"));
	assert_true(has(&sel, "unix:uid:1"));
	selector_list_free(&sel);
	attestor_free(a);

	/* Path selectors off. */
	o.path_selectors = false;
	a = attestor_unix_new(&o);
	assert_int_equal(a->ops->attest(a->state, &c, &sel, err, sizeof(err)), 0);
	assert_false(has_prefix(&sel, "unix:path:"));
	selector_list_free(&sel);
	attestor_free(a);
	caller_close(&c);
	fake_proc_teardown(&f);
}

static bool same_list(const struct selector_list *a, const struct selector_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

/* attest_caller with the unix attestor alone takes a shorter path (one read of status, names
 * from a cache): the selectors must be exactly those of the attestor run on its own. */
static void fast_path_same_selectors(void **state)
{
	struct attestor_unix_opts o = {.path_selectors = false};
	struct attestor *a = attestor_unix_new(&o);
	struct selector_list slow = {0}, fast = {0};
	struct fake_proc f;
	struct caller c;
	char err[256] = "", want[300];
	int sv[2];

	assert_non_null(a);
	assert_true(a->fast);
	assert_true(attestors_fast(&a, 1));

	fake_proc_setup(&f, "555666", 1234, 5678);
	assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
	/* On the loop (may_block false) a name not cached yet means "run me on a worker". */
	assert_int_equal(attest_caller(&a, 1, &c, false, &fast, err, sizeof(err)),
			 ATTEST_WOULD_BLOCK);
	selector_list_free(&fast);
	assert_int_equal(a->ops->attest(a->state, &c, &slow, err, sizeof(err)), 0);
	assert_int_equal(caller_verify(&c, err, sizeof(err)), 0);
	selector_list_normalize(&slow);
	/* Twice: the second time the names come from the cache. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(attest_caller(&a, 1, &c, true, &fast, err, sizeof(err)), 0);
		assert_true(same_list(&slow, &fast));
		selector_list_free(&fast);
	}
	/* Now every name is cached: the same answer without blocking. */
	assert_int_equal(attest_caller(&a, 1, &c, false, &fast, err, sizeof(err)), 0);
	assert_true(same_list(&slow, &fast));
	selector_list_free(&fast);
	assert_true(has(&slow, "unix:supplementary_gid:4243"));
	struct group *g = getgrgid(0);
	if (g) {
		snprintf(want, sizeof(want), "unix:supplementary_group:%s", g->gr_name);
		assert_true(has(&slow, want));
	}
	selector_list_free(&slow);
	caller_close(&c);
	fake_proc_teardown(&f);

	/* The real process, pinned from a socket (with a pidfd where the kernel has one). */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(caller_from_socket(sv[0], NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(a->ops->attest(a->state, &c, &slow, err, sizeof(err)), 0);
	selector_list_normalize(&slow);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(attest_caller(&a, 1, &c, true, &fast, err, sizeof(err)), 0);
		assert_true(same_list(&slow, &fast));
		selector_list_free(&fast);
	}
	struct passwd *pw = getpwuid(geteuid());
	if (pw) {
		snprintf(want, sizeof(want), "unix:user:%s", pw->pw_name);
		assert_true(has(&slow, want));
	}
	selector_list_free(&slow);
	caller_close(&c);
	close(sv[0]);
	close(sv[1]);
	attestor_free(a);

	/* Hashing binaries makes the attestor slow; attest_caller then verifies separately. */
	o.path_selectors = true;
	a = attestor_unix_new(&o);
	assert_false(a->fast);
	assert_false(attestors_fast(&a, 1));
	fake_proc_setup(&f, "1", 1, 1);
	assert_int_equal(caller_pin(f.root, 4242, 1, 1, &c, err, sizeof(err)), 0);
	assert_int_equal(attest_caller(&a, 1, &c, false, &fast, err, sizeof(err)),
			 ATTEST_WOULD_BLOCK);
	selector_list_free(&fast);
	assert_int_equal(attest_caller(&a, 1, &c, true, &fast, err, sizeof(err)), 0);
	assert_true(has_prefix(&fast, "unix:sha256:"));
	assert_sorted_unique(&fast);
	selector_list_free(&fast);
	caller_close(&c);
	fake_proc_teardown(&f);
	attestor_free(a);
}

/* The short path refuses what caller_verify refuses. */
static void fast_path_refusals(void **state)
{
	struct attestor_unix_opts o = {.path_selectors = false};
	struct attestor *a = attestor_unix_new(&o);
	struct selector_list sel = {0};
	struct fake_proc f;
	struct caller c;
	char err[256] = "", buf[512];

	fake_proc_setup(&f, "1000", 1234, 5678);
	/* SO_PEERCRED said another uid, then another gid. */
	assert_int_equal(caller_pin(f.root, 4242, 1111, 5678, &c, err, sizeof(err)), 0);
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "uid"));
	selector_list_free(&sel);
	caller_close(&c);
	assert_int_equal(caller_pin(f.root, 4242, 1234, 1111, &c, err, sizeof(err)), 0);
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "gid"));
	selector_list_free(&sel);
	caller_close(&c);

	/* No pidfd here: a new start time means another process. */
	assert_int_equal(caller_pin(f.root, 4242, 1234, 5678, &c, err, sizeof(err)), 0);
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), 0);
	selector_list_free(&sel);
	snprintf(buf, sizeof(buf),
		 "4242 (other) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 2000 1 1\n");
	write_file(f.dir, "stat", buf);
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "caller process changed during attestation"));
	selector_list_free(&sel);

	/* Gone altogether. */
	fake_proc_teardown(&f);
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), -1);
	selector_list_free(&sel);
	caller_close(&c);

	/* Not pinned. */
	assert_int_equal(attest_caller(&a, 1, &c, true, &sel, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not pinned"));
	selector_list_free(&sel);
	attestor_free(a);
}

static void selector_list_ops(void **state)
{
	struct selector_list l = {0};

	for (int i = 0; i < 40; i++)
		assert_int_equal(selector_list_addf(&l, "t:%d", i % 7), 0);
	selector_list_normalize(&l);
	assert_int_equal(l.n, 7);
	assert_sorted_unique(&l);
	selector_list_free(&l);
	selector_list_free(&l);
	selector_list_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stat_parsing),
		cmocka_unit_test(self_via_socketpair),
		cmocka_unit_test(fake_proc_tree),
		cmocka_unit_test(start_time_mismatch_refused),
		cmocka_unit_test(exec_after_connect_refused),
		cmocka_unit_test(hash_cache_and_limit),
		cmocka_unit_test(fast_path_same_selectors),
		cmocka_unit_test(fast_path_refusals),
		cmocka_unit_test(selector_list_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
