/* datastore_pg.h: what the parts of the PostgreSQL backend share. datastore_pg.c holds the
 * connection pool and the operations; datastore_pg_conn.c opens connections for both;
 * datastore_pg_feed.c follows the shared change feed (the
 * `changes` table every change appends to) on a connection and thread of its own, and records
 * what it finds in the datastore's change journal. Only those files include this.
 *
 * Threads: the pool is used by any thread (its own lock); the feed thread owns its connection
 * and its position in the feed; feed_lock guards what writers wait on (delivered, holes). */
#ifndef LANYARD_DATASTORE_PG_H
#define LANYARD_DATASTORE_PG_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "datastore_backend.h"

/* The channel every change transaction notifies (at commit) and every feed follower listens on. */
#define PG_FEED_CHANNEL "lanyard_changes"

/* One pooled connection: used by one thread at a time. */
struct pgc {
	PGconn *conn;
	bool busy;
	bool broken; /* reconnect before the next use */
	int64_t seq; /* the change feed row the running transaction appended (0: none) */
	char sqlstate[6];
};

struct pg_feed;

struct pg {
	struct datastore base; /* first: datastore.c hands us &base */
	char *conninfo;	       /* may hold a password: wiped on close, never logged */
	char *password;	       /* the password in conninfo, if any, to scrub from messages */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;
	struct pgc *conns;
	size_t n_conns;
	struct pg_feed *feed;
};

/* A new connection with the server's session settings (timeouts, application_name); NULL and a
 * message without the password in err. */
PGconn *pg_connect(struct pg *p, char *err, size_t errlen);
/* Copies msg into out with every occurrence of the password replaced by "***". */
void pg_scrub(const struct pg *p, const char *msg, char *out, size_t outlen);

/* Starts following the feed from its current end; the thread calls datastore_feed_* on &p->base. */
int pg_feed_start(struct pg *p, char *err, size_t errlen);
/* Stops the thread and frees the follower. NULL-safe. */
void pg_feed_stop(struct pg_feed *f);
/* Wakes the follower (a transaction of ours appended seq) and waits, a bounded time, until seq
 * is in the journal, so that a change made through this process is journaled when its call
 * returns. */
void pg_feed_wait(struct pg_feed *f, int64_t seq);

#endif
