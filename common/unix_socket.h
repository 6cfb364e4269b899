/* unix_socket.h: a listening Unix socket, created safely.
 *
 * The parent directory is created when missing; a socket already at the path that a live process
 * answers makes creation fail (two instances never share one path), a stale one (nobody listens)
 * is replaced, anything that is not a socket is left alone; the socket's mode is set by umask
 * before bind, so the name never exists with another mode, and set again after bind. */
#ifndef LANYARD_UNIX_SOCKET_H
#define LANYARD_UNIX_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

struct unix_socket_opts {
	const char *who;        /* the program, as in "another <who> is already serving on" */
	const char *log_prefix; /* "workload", "admin": the subsystem in log lines */
	mode_t dir_mode;        /* of a missing parent directory */
	mode_t mode;            /* of the socket */
	int backlog;
	bool nonblock;          /* SOCK_NONBLOCK on the listening socket */
	bool set_group;         /* give the socket to group (e.g. for a 0660 mode) */
	gid_t group;
};

/* The listening socket's fd (close-on-exec), with the socket file's stat in *st for
 * unix_socket_remove(); or a negative errno value with the reason in err: -ENAMETOOLONG,
 * -EEXIST (something else is at path), -EADDRINUSE (a live instance answers on path), ... */
int unix_socket_listen(const char *path, const struct unix_socket_opts *o, struct stat *st,
		       char *err, size_t errlen);

/* Unlinks path when it is still the socket unix_socket_listen() created (st as it returned), not
 * one that a later instance put there. */
void unix_socket_remove(const char *path, const struct stat *st);

#endif
