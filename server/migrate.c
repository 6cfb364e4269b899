/* migrate.c: `lanyard-server datastore migrate --config NEW.json --from-sqlite PATH [--force]`.
 *
 * The source is opened read-only and read in one SQLite read transaction; it is refused while a
 * server still holds its data_dir's lock (changes made after the copy would be lost). The
 * target is the PostgreSQL database NEW.json names; ds_snapshot_import writes everything in one
 * transaction and verifies the counts before committing. The connection string is only ever
 * shown as its safe description (host, port, dbname, user). */
#include "migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "datastore.h"
#include "log.h"
#include "server_config.h"
#include "util.h"

#define USAGE "usage: lanyard-server datastore migrate --config NEW.json --from-sqlite PATH [--force]\n"

struct migrate_args {
	const char *config, *from;
	bool force;
};

static int parse_args(int argc, char **argv, struct migrate_args *a)
{
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i];
		if (strcmp(k, "--force") == 0) {
			a->force = true;
		} else if (strcmp(k, "--help") == 0 || strcmp(k, "-h") == 0) {
			printf(USAGE "  Copies the entries, agents (ban state, serials), join tokens and "
			       "published bundle of a\n  stopped server's SQLite datastore (PATH: "
			       "<data_dir>/datastore.sqlite3) into the\n  PostgreSQL database NEW.json "
			       "names, in one transaction. A non-empty target is refused\n  unless "
			       "--force (which replaces what it holds).\n");
			return 1;
		} else if ((strcmp(k, "--config") == 0 || strcmp(k, "--from-sqlite") == 0) &&
			   i + 1 < argc) {
			*(strcmp(k, "--config") == 0 ? &a->config : &a->from) = argv[++i];
		} else {
			fprintf(stderr, "lanyard-server datastore migrate: unknown or incomplete "
				"argument '%s'\n" USAGE, k);
			return -1;
		}
	}
	if (!a->config || !a->from) {
		fprintf(stderr, "lanyard-server datastore migrate: --config and --from-sqlite are "
			"required\n" USAGE);
		return -1;
	}
	return 0;
}

/* A server still running on the source's data_dir holds data_dir/server.lock. */
static int check_source_stopped(const char *from, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	snprintf(dir, sizeof(dir), "%s", from);
	char *slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(path, sizeof(path), "%s/server.lock", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0; /* no lock file: no server ever ran there, or it was removed */
	int ret = 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		errorf(err, errlen, "a lanyard-server (pid %s) is still running on %s: stop it "
		       "first, or changes made after the copy would be lost", pid[0] ? pid : "?",
		       dir);
		ret = -EBUSY;
	}
	close(fd);
	return ret;
}

static size_t count_banned(const struct ds_snapshot *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n_agents; i++)
		n += s->agents[i]->banned;
	return n;
}

static void print_summary(const struct ds_snapshot *s, const char *from, const char *target)
{
	printf("copied from %s into PostgreSQL %s, in one transaction, counts verified:\n"
	       "  %zu entries\n  %zu agents (%zu banned)\n  %zu join tokens\n"
	       "  %zu CA authorities (the published bundle)",
	       from, target, s->n_entries, s->n_agents, count_banned(s), s->n_tokens, s->n_cas);
	if (s->has_bundle_sequence)
		printf(", bundle sequence %lld", (long long)s->bundle_sequence);
	printf("\n  %zu federated bundles\n  %zu federation relationships", s->n_fed_bundles,
	       s->n_fed_rels);
	printf("\nNext: start the first server on the old server's data_dir (it keeps the CA keys "
	       "the agents trust), then the others (README: \"Moving from one server to "
	       "several\").\n");
}

static int migrate(const struct migrate_args *a)
{
	struct server_config cfg;
	struct datastore *src = NULL, *dst = NULL;
	struct ds_snapshot snap = {0};
	char err[1024], safe[256] = "";
	int ret = 1;
	if (server_config_load(a->config, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-server datastore migrate: %s\n", err);
		goto out;
	}
	log_setup(log_level_parse(cfg.log_level), false);
	if (strcmp(cfg.database_type, "postgres") != 0) {
		fprintf(stderr, "lanyard-server datastore migrate: %s: key 'database_type' is \"%s\": "
			"the target must be a PostgreSQL database (\"postgres\")\n", a->config,
			cfg.database_type);
		goto out;
	}
	if (check_source_stopped(a->from, err, sizeof(err)) < 0 ||
	    datastore_open_sqlite_readonly(a->from, &src, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-server datastore migrate: --from-sqlite: %s\n", err);
		goto out;
	}
	if (ds_snapshot_read(src, &snap) < 0) {
		fprintf(stderr, "lanyard-server datastore migrate: cannot read %s (see the log "
			"above)\n", a->from);
		goto out;
	}
	datastore_pg_conninfo_check(cfg.database_connection_string, safe, sizeof(safe), err,
				    sizeof(err));
	if (datastore_open_config(cfg.database_type, cfg.data_dir, cfg.database_connection_string,
				  1, &dst, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-server datastore migrate: %s: %s\n", a->config, err);
		goto out;
	}
	if (ds_snapshot_import(dst, &snap, a->force, err, sizeof(err)) < 0) {
		fprintf(stderr, "lanyard-server datastore migrate: %s: %s\n", a->config, err);
		goto out;
	}
	print_summary(&snap, a->from, safe);
	ret = 0;
out:
	ds_snapshot_free(&snap);
	datastore_close(src);
	datastore_close(dst);
	server_config_free(&cfg);
	return ret;
}

int datastore_cmd_main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf(USAGE);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "migrate") != 0) {
		fprintf(stderr, "lanyard-server datastore: unknown command '%s'\n" USAGE,
			argc < 2 ? "" : argv[1]);
		return 1;
	}
	struct migrate_args a = {0};
	int r = parse_args(argc, argv, &a);
	if (r != 0)
		return r > 0 ? 0 : 1;
	return migrate(&a);
}
