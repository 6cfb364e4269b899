/* health.h: named health conditions that make a daemon's /ready fail with the reason, and the
 * probes that feed them (a writable data directory, descriptors left).
 *
 * A condition is either passing or failing; every report says which, with a reason. The registry
 * logs a condition once when it starts failing (with the reason) and once when it recovers (with
 * the number of failures reported meanwhile and how long it lasted), never on each repeat, so
 * callers may report on every attempt. Conditions recover only by a passing report: whoever
 * reports a failure must keep probing.
 *
 * Threading: any thread may report; a mutex guards the registry. Names are short literals
 * ("storage", "descriptors"); at most HEALTH_MAX_CONDITIONS distinct names per registry. */
#ifndef LANYARD_HEALTH_H
#define LANYARD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define HEALTH_MAX_CONDITIONS 16

struct health;

struct health *health_new(void);
/* NULL-safe. No report may be running. */
void health_free(struct health *h);

/* Records the state of condition name at unix time now, with a reason (printf format). */
void health_set(struct health *h, const char *name, bool ok, int64_t now, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Adds every condition to checks (opserver_check: {"ok","detail"}), a failing one with its count
 * and since when. Returns true when none is failing. */
bool health_report(struct health *h, json_t *checks);
/* Whether name is currently failing (false when never reported). */
bool health_failing(struct health *h, const char *name);

/* Writes HEALTH_PROBE_BYTES to an unnamed temporary file in dir (nothing is left behind), as the
 * daemon's own persistence would: fails on a full or read-only file system or a directory it may
 * not write. No fsync: cheap enough for the event loop. Returns 0, or -errno with a reason naming
 * dir in why. */
#define HEALTH_PROBE_BYTES 4096
int health_probe_dir(const char *dir, char *why, size_t whylen);

/* Descriptors, from a procstats reading: true when at least HEALTH_FD_RESERVE(limit) remain (or
 * there is no limit); otherwise false with the figures in why. accept() fails with EMFILE at
 * zero, and answering /ready itself needs one. */
#define HEALTH_FD_RESERVE(limit) ((limit) / 50 > 16 ? (limit) / 50 : 16)
struct procstats;
bool health_probe_fds(const struct procstats *ps, char *why, size_t whylen);

#endif
