/* datastore_pg_conn.c: one PostgreSQL connection with the server's session settings, and error
 * messages scrubbed of the password (datastore_pg.h). Both the pool (datastore_pg.c) and the
 * feed thread (datastore_pg_feed.c) open connections here, so neither of those two calls the
 * other back. Thread-safe: reads only the immutable conninfo and password of struct pg. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "datastore_pg.h"

void pg_scrub(const struct pg *p, const char *msg, char *out, size_t outlen)
{
	size_t w = 0, plen = p->password ? strlen(p->password) : 0;
	if (outlen == 0)
		return;
	for (const char *s = msg; *s && w + 1 < outlen;) {
		if (plen && strncmp(s, p->password, plen) == 0) {
			for (const char *m = "***"; *m && w + 1 < outlen; m++)
				out[w++] = *m;
			s += plen;
			continue;
		}
		out[w++] = *s == '\n' || *s == '\t' ? ' ' : *s;
		s++;
	}
	while (w > 0 && out[w - 1] == ' ')
		w--;
	out[w] = '\0';
}

PGconn *pg_connect(struct pg *p, char *err, size_t errlen)
{
	/* The string is expanded in place of dbname: what it sets overrides the defaults before
	 * it (a connect_timeout of its own, say). */
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *const vals[] = {"10", "lanyard-server", p->conninfo, NULL};
	PGconn *c = pq_dyn.connectdb_params(keys, vals, 1);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (pq_dyn.status(c) != CONNECTION_OK) {
		pg_scrub(p, pq_dyn.error_message(c), err, errlen);
		pq_dyn.finish(c);
		return NULL;
	}
	/* Bounds on anything stuck: a statement, or a transaction left open by a dead thread. */
	PGresult *r = pq_dyn.exec(c, "SET statement_timeout = '30s'; "
				  "SET idle_in_transaction_session_timeout = '60s'; "
				  "SET client_min_messages = warning");
	bool ok = pq_dyn.result_status(r) == PGRES_COMMAND_OK;
	if (!ok)
		pg_scrub(p, pq_dyn.error_message(c), err, errlen);
	pq_dyn.clear(r);
	if (!ok) {
		pq_dyn.finish(c);
		return NULL;
	}
	return c;
}
