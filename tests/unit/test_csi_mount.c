/* test_csi_mount.c: agent/csi_mount.c: the target path rules, the target states, and (as root,
 * in a private mount namespace of this process) publish and unpublish, including the cases the
 * integration test cannot stage: a writable bind left by a crash is made read-only, stacked
 * binds are all taken down, a symlink at the target is never followed. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "csi_mount.h"

static void test_path_check(void **state)
{
	static const char *const good[] = {"/a", "/var/lib/kubelet/pods/u/volumes/x~y/mount",
					   "/a/.b/..c/c.", "/a/b c"};
	static const char *const bad[] = {"", "a/b", "./a", "/", "/a/", "/a//b", "/a/./b",
					  "/a/../b", "/a/..", "/.", "/a/b\n", "/a/\x7f"};
	char err[256], longp[CSI_PATH_MAX + 8];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(csi_path_check(good[i], NULL, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(csi_path_check(bad[i], NULL, err, sizeof(err)), -EINVAL);
		assert_true(err[0] != '\0');
	}
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(csi_path_check(longp, NULL, err, sizeof(err)), -EINVAL);
	/* Below the root, strictly, by whole components. */
	assert_int_equal(csi_path_check("/k/pods/x", "/k/pods", err, sizeof(err)), 0);
	assert_int_equal(csi_path_check("/k/pods", "/k/pods", err, sizeof(err)), -EINVAL);
	assert_int_equal(csi_path_check("/k/podsx/y", "/k/pods", err, sizeof(err)), -EINVAL);
	assert_int_equal(csi_path_check("/etc/x", "/k/pods", err, sizeof(err)), -EINVAL);
}

static void test_path_overlaps(void **state)
{
	(void)state;
	assert_true(csi_path_overlaps("/run/l", "/run/l"));
	assert_true(csi_path_overlaps("/run/l", "/run/l/x"));
	assert_true(csi_path_overlaps("/run/l/x", "/run/l"));
	assert_true(csi_path_overlaps("/run", "/run/l"));
	assert_true(csi_path_overlaps("/", "/run/l"));
	assert_false(csi_path_overlaps("/run/l", "/run/lx"));
	assert_false(csi_path_overlaps("/run/lx", "/run/l"));
	assert_false(csi_path_overlaps("/a/b", "/a/c"));
}

struct dirs {
	char base[64], src[96], tgt[96];
};

static void make_dirs(struct dirs *d)
{
	snprintf(d->base, sizeof(d->base), "/tmp/test_csi_mount.XXXXXX");
	assert_non_null(mkdtemp(d->base));
	snprintf(d->src, sizeof(d->src), "%s/src", d->base);
	snprintf(d->tgt, sizeof(d->tgt), "%s/tgt", d->base);
	assert_int_equal(mkdir(d->src, 0755), 0);
}

static void remove_dirs(struct dirs *d)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->base);
	assert_int_equal(system(cmd), 0);
}

static void test_target_states(void **state)
{
	struct dirs d;
	char err[256];

	(void)state;
	make_dirs(&d);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_ABSENT);
	assert_int_equal(mkdir(d.tgt, 0755), 0);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_DIR);
	assert_int_equal(rmdir(d.tgt), 0);
	/* A symlink to the source is not followed: it is no bind, and nothing to mount over. */
	assert_int_equal(symlink(d.src, d.tgt), 0);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_NOT_DIR);
	assert_int_equal(unlink(d.tgt), 0);
	assert_int_equal(rmdir(d.src), 0);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, d.src));
	assert_int_equal(mkdir(d.src, 0755), 0);
	remove_dirs(&d);
}

static bool read_only(const char *path)
{
	struct statvfs v;

	return statvfs(path, &v) == 0 && (v.f_flag & ST_RDONLY);
}

/* Mounting needs root and a mount namespace of our own (nothing leaks to the host). */
static int private_namespace(void **state)
{
	(void)state;
	if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 1;
	return 0;
}

static void test_publish_unpublish(void **state)
{
	struct dirs d;
	char err[256], planted[128];
	bool already, was;

	(void)state;
	make_dirs(&d);
	assert_int_equal(csi_mount_publish(d.src, d.tgt, &already, err, sizeof(err)), 0);
	assert_false(already);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_OURS);
	assert_true(read_only(d.tgt));
	snprintf(planted, sizeof(planted), "%s/planted", d.tgt);
	assert_int_equal(mkdir(planted, 0755), -1);
	assert_int_equal(errno, EROFS);
	assert_int_equal(csi_mount_publish(d.src, d.tgt, &already, err, sizeof(err)), 0);
	assert_true(already);
	assert_int_equal(csi_mount_unpublish(d.src, d.tgt, &was, err, sizeof(err)), 0);
	assert_true(was);
	assert_int_equal(access(d.tgt, F_OK), -1);
	assert_int_equal(csi_mount_unpublish(d.src, d.tgt, &was, err, sizeof(err)), 0);
	assert_false(was);
	remove_dirs(&d);
}

static void test_repairs_and_stacks(void **state)
{
	struct dirs d;
	char err[256];
	bool already, was;

	(void)state;
	make_dirs(&d);
	/* A crash between bind and remount left a writable bind: publishing makes it read-only. */
	assert_int_equal(mkdir(d.tgt, 0755), 0);
	assert_int_equal(mount(d.src, d.tgt, NULL, MS_BIND, NULL), 0);
	assert_false(read_only(d.tgt));
	assert_int_equal(csi_mount_publish(d.src, d.tgt, &already, err, sizeof(err)), 0);
	assert_true(already);
	assert_true(read_only(d.tgt));
	/* Two more binds stacked on it: unpublish takes all three down. */
	assert_int_equal(mount(d.src, d.tgt, NULL, MS_BIND, NULL), 0);
	assert_int_equal(mount(d.src, d.tgt, NULL, MS_BIND, NULL), 0);
	assert_int_equal(csi_mount_unpublish(d.src, d.tgt, &was, err, sizeof(err)), 0);
	assert_true(was);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_ABSENT);
	remove_dirs(&d);
}

static void test_foreign_mount_and_files(void **state)
{
	struct dirs d;
	char err[256], inside[128];
	bool already, was;
	FILE *f;

	(void)state;
	make_dirs(&d);
	assert_int_equal(mkdir(d.tgt, 0755), 0);
	assert_int_equal(mount("test", d.tgt, "tmpfs", 0, "size=64k"), 0);
	assert_int_equal(csi_target_state(d.src, d.tgt, err, sizeof(err)), CSI_TARGET_OTHER);
	assert_int_equal(csi_mount_publish(d.src, d.tgt, &already, err, sizeof(err)), -EEXIST);
	assert_int_equal(csi_mount_unpublish(d.src, d.tgt, &was, err, sizeof(err)), -EEXIST);
	assert_int_equal(umount(d.tgt), 0);
	/* An unmounted directory with something in it is not ours to remove. */
	snprintf(inside, sizeof(inside), "%s/keep", d.tgt);
	f = fopen(inside, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(csi_mount_unpublish(d.src, d.tgt, &was, err, sizeof(err)), -ENOTEMPTY);
	assert_int_equal(access(inside, F_OK), 0);
	assert_int_equal(unlink(inside), 0);
	assert_int_equal(rmdir(d.tgt), 0);
	/* A missing parent is the caller's to create. */
	snprintf(inside, sizeof(inside), "%s/no/such", d.base);
	assert_int_equal(csi_mount_publish(d.src, inside, &already, err, sizeof(err)), -ENOENT);
	remove_dirs(&d);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_path_check),
		cmocka_unit_test(test_path_overlaps),
		cmocka_unit_test(test_target_states),
	};
	const struct CMUnitTest mounting[] = {
		cmocka_unit_test(test_publish_unpublish),
		cmocka_unit_test(test_repairs_and_stacks),
		cmocka_unit_test(test_foreign_mount_and_files),
	};
	int r = cmocka_run_group_tests(pure, NULL, NULL);

	if (private_namespace(NULL) != 0) {
		printf("SKIP: the mount tests need root and unshare(CLONE_NEWNS)\n");
		return r ? r : 77;
	}
	return r + cmocka_run_group_tests(mounting, NULL, NULL);
}
