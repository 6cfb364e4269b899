/* attestor.h: workload attestation: who is calling on the Workload API socket, as selectors.
 *
 * A caller is pinned when its connection is accepted (caller_from_socket): its pid, uid and gid
 * from SO_PEERCRED, a directory fd on /proc/<pid> and the process start time, plus a pidfd where
 * the kernel offers SO_PEERPIDFD. Attestors then read facts about that process through the
 * pinned directory fd (never by pid again) and produce "type:value" selectors, and
 * caller_verify() checks afterwards that the pinned process is still the one that connected, so
 * a process that exited and had its pid reused during attestation is refused.
 *
 * The executable is pinned too: the device and inode of /proc/<pid>/exe at accept. exec()
 * keeps the pid and the start time, so without it a process could connect, then exec an entitled
 * binary (or fork, the child keeping the connection while the parent execs) and be attested as
 * that binary; caller_verify() and the fast path of attest_caller() compare the executable again
 * on every request and refuse the call when it changed. What this cannot see: an exec that
 * happened before the agent accepted the connection (the process then *is* the new binary as far
 * as the kernel is concerned), and a file replaced in place on the same inode (unix:sha256 of an
 * entry catches content changes, unix:path does not).
 *
 * Attestors are a table of vtables (struct attestor_ops): the unix attestor (attestor_unix.c), the
 * Kubernetes one (attestor_k8s.c); attestor.c pins callers and runs the table. attest() runs on a
 * worker thread (it may read files and hash binaries) unless every attestor is fast, so it must
 * be thread-safe; state shared between calls (hash and name caches) is protected by the
 * attestor. */
#ifndef LANYARD_ATTESTOR_H
#define LANYARD_ATTESTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A pinned caller process. The fds are owned: release with caller_close(). */
struct caller {
	pid_t pid;
	uid_t uid; /* effective ids at connect time (SO_PEERCRED) */
	gid_t gid;
	int proc_fd;         /* O_DIRECTORY fd of <proc_root>/<pid>, -1 when not pinned */
	int pidfd;           /* from SO_PEERPIDFD, -1 when the kernel has none */
	uint64_t start_time; /* field 22 of /proc/<pid>/stat, in clock ticks since boot */
	/* The executable at pin time: stat of <proc_root>/<pid>/exe (the binary it points to).
	 * exe_known is false when it cannot be read (a kernel thread, or an agent without the
	 * right to read another uid's exe); it must then stay unreadable. */
	bool exe_known;
	dev_t exe_dev;
	ino_t exe_ino;
};

/* Reads SO_PEERCRED (and SO_PEERPIDFD when available) from a connected Unix socket and pins the
 * process under proc_root (NULL = "/proc"). 0, or -1 with a reason in err. */
int caller_from_socket(int fd, const char *proc_root, struct caller *out, char *err, size_t errlen);
/* Pins pid (with the given credentials) under proc_root: opens the directory, reads the start
 * time. For callers known by other means, and for tests with a fake proc tree. */
int caller_pin(const char *proc_root, pid_t pid, uid_t uid, gid_t gid, struct caller *out,
	       char *err, size_t errlen);
/* Checks that the pinned process still exists and is the same one: same start time, same
 * effective uid and gid (from its status file), pidfd still alive, same executable (no exec
 * since it was pinned). 0, or -1 with a reason. */
int caller_verify(const struct caller *c, char *err, size_t errlen);
/* Closes the fds; safe on a zeroed or already closed caller (fds -1). */
void caller_close(struct caller *c);
/* Start time (field 22) from the text of a /proc/<pid>/stat file. The comm field may contain
 * spaces and ')', so fields are counted from the last ')'. 0, or -1 when malformed. */
int proc_stat_start_time(const char *stat, size_t len, uint64_t *out);

/* A growable list of selectors. */
struct selector_list {
	char **v;
	size_t n, cap;
};

/* Adds "type:value" built from fmt; -1 on allocation failure. */
int selector_list_addf(struct selector_list *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sorts and removes duplicates, as entry matching (selectors_subset) requires. */
void selector_list_normalize(struct selector_list *l);
void selector_list_free(struct selector_list *l);

struct attestor_ops {
	const char *name; /* "unix" */
	/* Appends the caller's selectors to out. Runs on a worker thread. 0, or -1 with a reason in
	 * err (the call is then refused). */
	int (*attest)(void *state, const struct caller *c, struct selector_list *out, char *err,
		      size_t errlen);
	void (*free)(void *state);
	/* Optional, used when this is the only attestor and it is fast: attests and checks that
	 * the caller is unchanged from the same reads (what caller_verify does with reads of its
	 * own). 0, -1 with a reason in err, or ATTEST_WOULD_BLOCK when !may_block and a lookup
	 * would block. */
	int (*attest_verified)(void *state, const struct caller *c, bool may_block,
			       struct selector_list *out, char *err, size_t errlen);
};

struct attestor {
	const struct attestor_ops *ops;
	void *state;
	/* attest() neither blocks nor does heavy work (no hashing, no network): it may run on the
	 * event loop. Attestors that leave it false run on a worker thread. */
	bool fast;
};

/* Every attestor is fast: attest_caller() may run on the event loop. */
bool attestors_fast(struct attestor *const *a, size_t n);

#define ATTEST_WOULD_BLOCK 1
/* The whole attestation of a pinned caller: every attestor in order, then the check that the
 * caller is still the process that connected (caller_verify, or the same checks on the unix
 * attestor's own read of status when it is the only attestor and fast), then the selectors
 * normalized. 0, or -1 with a reason in err (the call is then refused). With !may_block (on the
 * event loop) it returns ATTEST_WOULD_BLOCK instead of doing anything that may take long: an
 * attestor that is not fast, or a user or group name lookup that is not cached (the name
 * service may be LDAP); the caller then runs it again on a worker thread. out may hold
 * selectors on any failure; the caller frees it either way. */
int attest_caller(struct attestor *const *a, size_t n, const struct caller *c, bool may_block,
		  struct selector_list *out, char *err, size_t errlen);

/* The attestor reads through the caller's pinned proc_fd, so the proc root is chosen when the
 * caller is pinned (caller_from_socket, caller_pin). */
struct attestor_unix_opts {
	bool path_selectors;     /* unix:path and unix:sha256 of <proc_root>/<pid>/exe */
	int64_t sha256_max_size; /* larger binaries get no unix:sha256 selector; <= 0: no limit */
};

/* The unix attestor: unix:uid, unix:user, unix:gid, unix:group, unix:supplementary_gid,
 * unix:supplementary_group and, when enabled, unix:path and unix:sha256 (hashes cached by
 * device, inode, size and mtime). User and group names are cached until /etc/passwd or
 * /etc/group changes (checked at most once a second) and for at most a minute. Fast unless
 * path_selectors. NULL on allocation failure. */
struct attestor *attestor_unix_new(const struct attestor_unix_opts *o);
/* Calls ops->free and frees a; NULL-safe. */
void attestor_free(struct attestor *a);

#endif
