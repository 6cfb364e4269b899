/* unix_socket.c: safe creation of a listening Unix socket (see unix_socket.h). */
#include "unix_socket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int make_parent_dir(const char *path, mode_t mode, char *err, size_t errlen)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int ret = 0;
	if (slash && slash != dir) {
		*slash = '\0';
		ret = mkdir_p(dir, mode);
		if (ret < 0)
			snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(-ret));
	}
	free(dir);
	return ret;
}

/* Removes a stale socket at path, refusing when a live server answers on it. */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sa,
			      const struct unix_socket_opts *o, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot inspect %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int saved = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another %s is already serving on %s (stop it first)", o->who,
			 path);
		return -EADDRINUSE;
	}
	if (saved != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe existing socket %s: %s", path, strerror(saved));
		return -saved;
	}
	/* Nobody listens: a stale socket from an instance that did not exit cleanly. */
	log_info("%s: replacing stale socket %s", o->log_prefix, path);
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

int unix_socket_listen(const char *path, const struct unix_socket_opts *o, struct stat *st,
		       char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret, fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (%zu bytes, at most %zu): %s",
			 strlen(path), sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ret = make_parent_dir(path, o->dir_mode, err, errlen);
	if (ret < 0)
		return ret;
	ret = clear_stale_socket(path, &sa, o, err, errlen);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (o->nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	/* The mode must be right from the moment the name exists: umask before bind. */
	mode_t old = umask(~o->mode & 0777);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int saved = errno;
	umask(old);
	if (rc < 0) {
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(saved));
		ret = -saved;
		goto fail;
	}
	if (o->set_group && lchown(path, (uid_t)-1, o->group) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot give %s to group %u: %s", path, (unsigned)o->group,
			 strerror(-ret));
		unlink(path);
		goto fail;
	}
	if (chmod(path, o->mode) < 0 || stat(path, st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot set the mode of %s: %s", path, strerror(-ret));
		unlink(path);
		goto fail;
	}
	if (listen(fd, o->backlog) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-ret));
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

void unix_socket_remove(const char *path, const struct stat *st)
{
	struct stat now;
	if (stat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino)
		unlink(path);
}
