/* attestor_internal.h: what attestor.c offers the attestors themselves (attestor_unix.c,
 * attestor_k8s.c): reads of /proc files through a caller's pinned directory, the fields of its
 * status file, and the checks that the pinned caller is unchanged. Only attestors include this.
 *
 * Threads: no state; safe on any thread. */
#ifndef LANYARD_ATTESTOR_INTERNAL_H
#define LANYARD_ATTESTOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "attestor.h"

/* The numeric ids of a status field's value (Uid:, Gid:, Groups:): how many were read. */
size_t parse_ids(const char *p, unsigned long *ids, size_t max);
/* Reads name under dirfd (a pinned /proc/<pid>) whole, NUL-terminated: 0 or -errno. */
int read_at(int dirfd, const char *name, char **out, size_t *outlen);
/* The value of the status field name ("Uid"), or NULL. */
const char *status_field(const char *buf, const char *name);
/* The executable (st, or read again when NULL) is still the one pinned: 0, or -1 with a
 * reason. */
int verify_exe(const struct caller *c, const struct stat *st, char *err, size_t errlen);
/* The checks of caller_verify() on a status the attestor has just read: same uid and gid, the
 * process alive (pidfd, or the start time read again without one), the same executable. */
int caller_verify_status(const struct caller *c, const char *status, char *err, size_t errlen);

#endif
