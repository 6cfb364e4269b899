/* csi_mount.c: target path checks and the read-only bind mounts of the CSI node plugin (see
 * csi_mount.h for the contract).
 *
 * A target is "ours" when it is the root of a mount (statx's STATX_ATTR_MOUNT_ROOT) and shows
 * the device and inode of the source directory: that is what a bind mount of source looks like,
 * whatever file system the two live on. Paths are used as given (they are checked clean and the
 * last component is never followed when it is a symlink); only root can change the directories
 * on the way (the kubelet's pods directory), and root does not need this plugin to mount. */
#include "csi_mount.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* A stack of binds at one target (two plugins racing) is taken down one by one, up to this. */
#define MAX_STACKED 8
#define RO_FLAGS (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

int csi_errorf(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

int csi_path_check(const char *path, const char *root, char *err, size_t errlen)
{
	size_t len = strlen(path), rlen;

	if (len == 0)
		return csi_errorf(err, errlen, -EINVAL, "empty path");
	if (len >= CSI_PATH_MAX)
		return csi_errorf(err, errlen, -EINVAL, "path longer than %d bytes", CSI_PATH_MAX - 1);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return csi_errorf(err, errlen, -EINVAL, "control character in path");
	if (path[0] != '/')
		return csi_errorf(err, errlen, -EINVAL, "path \"%s\" is not absolute", path);
	if (len == 1 || path[len - 1] == '/')
		return csi_errorf(err, errlen, -EINVAL, "path \"%s\" ends with '/'", path);
	for (const char *c = path + 1;; c++) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return csi_errorf(err, errlen, -EINVAL,
					  "path \"%s\" is not clean (empty, '.' or '..' component)", path);
		c += n;
		if (!*c)
			break;
	}
	if (!root)
		return 0;
	rlen = strlen(root);
	if (strncmp(path, root, rlen) != 0 || path[rlen] != '/')
		return csi_errorf(err, errlen, -EINVAL, "path \"%s\" is not below %s", path, root);
	return 0;
}

bool csi_path_overlaps(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;

	if (strncmp(a, b, n) != 0)
		return false;
	/* Equal, or the shorter one is a whole-component prefix of the other ("/" counts). */
	return la == lb || (la < lb ? (b[n] == '/' || n == 1) : (a[n] == '/' || n == 1));
}

static int do_statx(const char *path, struct statx *st)
{
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_INO,
		  st) < 0)
		return -errno;
	return 0;
}

static bool same_inode(const struct statx *a, const struct statx *b)
{
	return a->stx_dev_major == b->stx_dev_major && a->stx_dev_minor == b->stx_dev_minor &&
	       a->stx_ino == b->stx_ino;
}

/* Kernels before 5.8 do not report mount roots: a different device than the parent's then
 * tells, except for a bind within one file system (which same_inode catches for ours). */
static int is_mount_root(const char *path, const struct statx *st, bool *root)
{
	char parent[CSI_PATH_MAX];
	struct statx pst;
	const char *slash = strrchr(path, '/');
	int r;

	if (st->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) {
		*root = (st->stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
		return 0;
	}
	snprintf(parent, sizeof(parent), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	r = do_statx(parent, &pst);
	if (r < 0)
		return r;
	*root = pst.stx_dev_major != st->stx_dev_major || pst.stx_dev_minor != st->stx_dev_minor;
	return 0;
}

int csi_target_state(const char *source, const char *target, char *err, size_t errlen)
{
	struct statx src, tgt;
	bool root;
	int r = do_statx(source, &src);

	if (r < 0)
		return csi_errorf(err, errlen, r, "workload socket directory %s: %s", source, strerror(-r));
	r = do_statx(target, &tgt);
	if (r == -ENOENT)
		return CSI_TARGET_ABSENT;
	if (r < 0)
		return csi_errorf(err, errlen, r, "%s: %s", target, strerror(-r));
	if (!S_ISDIR(tgt.stx_mode))
		return CSI_TARGET_NOT_DIR;
	r = is_mount_root(target, &tgt, &root);
	if (r < 0)
		return csi_errorf(err, errlen, r, "parent of %s: %s", target, strerror(-r));
	if (same_inode(&src, &tgt))
		return CSI_TARGET_OURS;
	return root ? CSI_TARGET_OTHER : CSI_TARGET_DIR;
}

static int make_read_only(const char *target, char *err, size_t errlen)
{
	if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | RO_FLAGS, NULL) < 0)
		return csi_errorf(err, errlen, -errno, "remount %s read-only: %s", target, strerror(errno));
	return 0;
}

static int ensure_read_only(const char *target, char *err, size_t errlen)
{
	struct statvfs vfs;

	if (statvfs(target, &vfs) < 0)
		return csi_errorf(err, errlen, -errno, "statvfs %s: %s", target, strerror(errno));
	return (vfs.f_flag & ST_RDONLY) ? 0 : make_read_only(target, err, errlen);
}

static int bind_read_only(const char *source, const char *target, char *err, size_t errlen)
{
	int r;

	if (mount(source, target, NULL, MS_BIND, NULL) < 0)
		return csi_errorf(err, errlen, -errno, "bind %s on %s: %s", source, target, strerror(errno));
	r = make_read_only(target, err, errlen);
	if (r < 0 && umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
		/* Never reached in practice: we just mounted it. Say so rather than hide it. */
		snprintf(err + strlen(err), errlen - strlen(err),
			 "; and the writable bind could not be undone: %s", strerror(errno));
	return r;
}

int csi_mount_publish(const char *source, const char *target, bool *already, char *err,
		      size_t errlen)
{
	int st = csi_target_state(source, target, err, errlen);

	*already = false;
	switch (st) {
	case CSI_TARGET_ABSENT:
		if (mkdir(target, 0755) < 0 && errno != EEXIST)
			return csi_errorf(err, errlen, -errno, "create %s: %s", target, strerror(errno));
		return bind_read_only(source, target, err, errlen);
	case CSI_TARGET_DIR:
		return bind_read_only(source, target, err, errlen);
	case CSI_TARGET_OURS:
		*already = true;
		return ensure_read_only(target, err, errlen);
	case CSI_TARGET_OTHER:
		return csi_errorf(err, errlen, -EEXIST, "something else is mounted at %s", target);
	case CSI_TARGET_NOT_DIR:
		return csi_errorf(err, errlen, -ENOTDIR, "%s exists and is not a directory", target);
	default:
		return st;
	}
}

static int unmount_one(const char *target, char *err, size_t errlen)
{
	if (umount2(target, UMOUNT_NOFOLLOW) == 0)
		return 0;
	/* Busy: a file under it is open somewhere. Detach it now; the kernel frees it later. */
	if (errno == EBUSY && umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		return 0;
	return csi_errorf(err, errlen, -errno, "unmount %s: %s", target, strerror(errno));
}

int csi_mount_unpublish(const char *source, const char *target, bool *was_mounted, char *err,
			size_t errlen)
{
	int st = csi_target_state(source, target, err, errlen), r;

	*was_mounted = false;
	for (int i = 0; st == CSI_TARGET_OURS && i < MAX_STACKED; i++) {
		r = unmount_one(target, err, errlen);
		if (r < 0)
			return r;
		*was_mounted = true;
		st = csi_target_state(source, target, err, errlen);
	}
	switch (st) {
	case CSI_TARGET_ABSENT:
		return 0;
	case CSI_TARGET_DIR:
		if (rmdir(target) < 0 && errno != ENOENT)
			return csi_errorf(err, errlen, -errno, "remove %s: %s", target, strerror(errno));
		return 0;
	case CSI_TARGET_OURS:
		return csi_errorf(err, errlen, -EBUSY, "more than %d mounts stacked at %s", MAX_STACKED,
				  target);
	case CSI_TARGET_OTHER:
		return csi_errorf(err, errlen, -EEXIST, "something else is mounted at %s: left alone",
				  target);
	case CSI_TARGET_NOT_DIR:
		return csi_errorf(err, errlen, -ENOTDIR, "%s is not a directory: left alone", target);
	default:
		return st;
	}
}
