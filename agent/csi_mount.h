/* csi_mount.h: the file-system half of the CSI node plugin (csi.h): checks the target paths a
 * container orchestrator hands over, and bind-mounts the agent's socket directory read-only onto
 * them and back.
 *
 * Stateless: what is mounted where is read back from the kernel on every call (statx: the
 * mount-root attribute and the device/inode of the source), so every operation is idempotent
 * and a restarted plugin picks up the mounts of the one before. The calls block in mount(2) and
 * friends for a moment; the plugin runs them on its loop thread. Linux only; mounting needs
 * CAP_SYS_ADMIN in the mount namespace that holds the target.
 *
 * Errors are negative errno values with a message in err:
 *   -EINVAL    a bad path (relative, not clean, control characters, outside the target root,
 *              overlapping the source)
 *   -EEXIST    something other than our read-only bind of the source is mounted at the target
 *   -ENOENT    the target's parent directory does not exist
 *   -ENOTDIR   the target exists and is not a directory (a file, a symlink...)
 *   -ENOTEMPTY the target is an unmounted directory with something in it (never ours)
 *   others     the failing system call's errno */
#ifndef LANYARD_CSI_MOUNT_H
#define LANYARD_CSI_MOUNT_H

#include <stdbool.h>
#include <stddef.h>

#define CSI_PATH_MAX 4096

/* Formats a message into err and returns code (an errno value here, a gRPC status in csi.c). */
int csi_errorf(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A path as the CSI spec wants target paths: absolute and clean (no empty, "." or ".."
 * component, no trailing slash, not "/"), without control characters (bytes below 0x20 and
 * 0x7f), shorter than CSI_PATH_MAX. With root non-NULL the path must lie strictly below
 * root (itself a clean absolute path). 0 or -EINVAL with the reason in err. */
int csi_path_check(const char *path, const char *root, char *err, size_t errlen);

/* True when a and b are the same path or one lies below the other (both clean). */
bool csi_path_overlaps(const char *a, const char *b);

enum csi_target_state {
	CSI_TARGET_ABSENT,   /* nothing at the path */
	CSI_TARGET_DIR,      /* a directory, nothing mounted on it */
	CSI_TARGET_OURS,     /* the root of a bind mount of source */
	CSI_TARGET_OTHER,    /* the root of some other mount */
	CSI_TARGET_NOT_DIR,  /* a file, a symlink, a socket... */
};

/* What is at target now; -errno when it cannot be examined (with err). */
int csi_target_state(const char *source, const char *target, char *err, size_t errlen);

/* Makes target a read-only (nosuid, nodev, noexec) bind mount of the directory source: creates
 * the target directory (its parent must exist), binds, remounts read-only; a bind that cannot
 * be made read-only is undone. Already done => 0 with *already set (a bind of source that is
 * still writable, left by a crash between the two steps, is made read-only first). */
int csi_mount_publish(const char *source, const char *target, bool *already, char *err,
		      size_t errlen);

/* Undoes csi_mount_publish: unmounts every bind of source stacked at target (lazily when the
 * mount is busy) and removes the directory. Nothing there => 0 with *was_mounted false. Some
 * other mount at target is left alone (-EEXIST). */
int csi_mount_unpublish(const char *source, const char *target, bool *was_mounted, char *err,
			size_t errlen);

#endif
