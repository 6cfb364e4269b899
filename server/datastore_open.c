/* datastore_open.c: the one place that chooses a datastore backend from the server's
 * configuration (datastore_open_config in datastore.h). It is apart from datastore.c so that
 * the backends depend on datastore.c's shared helpers and datastore.c on none of them: no two
 * files call each other in a loop. Called once at startup, on the main thread. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "datastore.h"
#include "log.h"

int datastore_open_config(const char *type, const char *data_dir, const char *conninfo,
			  int max_connections, struct datastore **out, char *err, size_t errlen)
{
	char why[512];
	if (type && strcmp(type, "postgres") == 0) {
		char safe[256] = "";
		if (datastore_pg_conninfo_check(conninfo, safe, sizeof(safe), why, sizeof(why)) < 0 ||
		    datastore_open_pg(conninfo, max_connections, out, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "key 'database_connection_string' (%s): %s",
				 safe[0] ? safe : "PostgreSQL", why);
			return -EIO;
		}
		log_info("datastore: PostgreSQL %s, up to %d connections", safe, max_connections);
		return 0;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/datastore.sqlite3", data_dir);
	if (datastore_open_sqlite(path, out, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot open the datastore %s: %s", path, why);
		return -EIO;
	}
	return 0;
}
