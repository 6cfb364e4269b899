/* datastore_pg_feed.c: follows the shared change feed of the PostgreSQL backend.
 *
 * Every change transaction, on any server, appends (kind, id) to the `changes` table under the
 * next value of its BIGSERIAL seq and notifies PG_FEED_CHANNEL at commit. One thread per server,
 * with a connection of its own that LISTENs on the channel, reads the rows after the last one it
 * delivered (woken by a notification, by a writer of this process, or every POLL_MS as a
 * fallback) and records them in the datastore's change journal (datastore_feed_add), then calls
 * the change hook so the server refreshes its streams.
 *
 * Sequence values are taken when a row is inserted, not when its transaction commits, so a
 * higher seq can become visible before a lower one: a gap. The follower delivers in seq order and
 * waits for a gap up to GAP_WAIT_MS; after that it passes over it, moves the journal's counter
 * without a record (datastore_feed_hole: readers re-read everything, -ESTALE), and keeps looking
 * for the missing seqs for HOLE_KEEP_MS, delivering any that turns up late like any change.
 * Most gaps are transactions that rolled back after taking a value; they cost one wait and one
 * full re-read. Rows older than PRUNE_AGE_S are deleted (by every server: harmless).
 *
 * If the connection drops, the follower reconnects every second and passes over what it may
 * have missed in the same way (a hole: full re-read), then carries on from where it was. */
#include "datastore_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define POLL_MS 1000
#define GAP_WAIT_MS 250
#define HOLE_KEEP_MS 30000
#define MAX_HOLES 1024
#define BATCH 4096
#define PRUNE_EVERY_MS 60000
#define PRUNE_AGE_S 3600
#define WRITER_WAIT_MS 2000
/* At start, the seqs this far below the sequence's end that have no row yet may be transactions
 * still running: they are watched as holes. */
#define START_WINDOW 64
#define STR_(x) #x
#define STR(x) STR_(x)

struct hole {
	int64_t seq;
	int64_t since_ms;
};

struct pg_feed {
	struct pg *p;
	pthread_t thread;
	bool started;
	int wake[2]; /* a pipe: writers poke the thread */
	PGconn *conn;
	/* The thread's own state. */
	int64_t gap_since_ms; /* 0: not waiting for a gap */
	int64_t next_prune_ms;
	/* Under lock: what writers wait for. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int64_t delivered; /* every seq <= delivered was delivered or is in holes */
	struct hole *holes;
	size_t n_holes;
	bool stopping;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool hole_has(const struct pg_feed *f, int64_t seq)
{
	for (size_t i = 0; i < f->n_holes; i++)
		if (f->holes[i].seq == seq)
			return true;
	return false;
}

/* Under lock. Past MAX_HOLES the oldest are forgotten: a late row among them would be missed,
 * so the journal gets a hole (full re-read) now, the best that can be done. */
static void hole_add(struct pg_feed *f, int64_t seq, int64_t t)
{
	if (f->n_holes == MAX_HOLES) {
		memmove(f->holes, f->holes + 1, (MAX_HOLES - 1) * sizeof(*f->holes));
		f->n_holes--;
	}
	f->holes[f->n_holes++] = (struct hole){.seq = seq, .since_ms = t};
}

static void hole_remove(struct pg_feed *f, int64_t seq)
{
	for (size_t i = 0; i < f->n_holes; i++) {
		if (f->holes[i].seq == seq) {
			f->holes[i] = f->holes[--f->n_holes];
			return;
		}
	}
}

/* Rows are (seq, kind, id, lag_ms): lag_ms is how long ago the row was written, by the
 * database's clock (NULL for rows of servers older than schema v3). */
#define FEED_COLS "seq, kind, id, " DB_NOW_MS " - at_ms"

static void deliver(struct pg_feed *f, const PGresult *r, int row)
{
	int kind = atoi(pq_dyn.getvalue(r, row, 1));
	datastore_feed_add(&f->p->base, (enum ds_change_kind)kind, pq_dyn.getvalue(r, row, 2));
	if (!pq_dyn.getisnull(r, row, 3))
		datastore_feed_lag(&f->p->base, (double)strtoll(pq_dyn.getvalue(r, row, 3), NULL, 10) / 1e3);
}

static PGresult *query(struct pg_feed *f, const char *sql, const char *param)
{
	PGresult *r = pq_dyn.exec_params(f->conn, sql, param ? 1 : 0, NULL, param ? &param : NULL,
					 NULL, NULL, 0);
	ExecStatusType st = pq_dyn.result_status(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		char why[512];
		pg_scrub(f->p, pq_dyn.error_message(f->conn), why, sizeof(why));
		log_warnx("datastore: change feed: %s", why);
		pq_dyn.clear(r);
		return NULL;
	}
	return r;
}

/* Reads the rows after delivered, delivers them in order up to a gap, passes over a gap older
 * than GAP_WAIT_MS. Returns how many changes and holes went into the journal, or -EIO; *more is
 * set when a full batch came back (read again at once). */
static int follow_tail(struct pg_feed *f, bool *more)
{
	char after[24];
	int64_t low = f->delivered, t = now_ms();
	snprintf(after, sizeof(after), "%lld", (long long)low);
	PGresult *r = query(f, "SELECT " FEED_COLS " FROM changes WHERE seq > $1::bigint "
			       "ORDER BY seq LIMIT " STR(BATCH), after);
	if (!r)
		return -EIO;
	int rows = pq_dyn.ntuples(r), n = 0;
	*more = rows == BATCH;
	for (int i = 0; i < rows; i++) {
		int64_t seq = strtoll(pq_dyn.getvalue(r, i, 0), NULL, 10);
		if (seq != low + 1) {
			if (!f->gap_since_ms)
				f->gap_since_ms = t;
			if (t - f->gap_since_ms < GAP_WAIT_MS) {
				*more = false;
				break;
			}
			/* Passed over: watched for a while, re-read in full now. */
			pthread_mutex_lock(&f->lock);
			for (int64_t s = seq - 1 > low + MAX_HOLES ? seq - MAX_HOLES : low + 1;
			     s < seq; s++)
				hole_add(f, s, t);
			pthread_mutex_unlock(&f->lock);
			datastore_feed_hole(&f->p->base);
			log_debug("datastore: change feed: passed over seqs %lld..%lld",
				  (long long)low + 1, (long long)seq - 1);
			n++;
		}
		f->gap_since_ms = 0;
		deliver(f, r, i);
		n++;
		low = seq;
		pthread_mutex_lock(&f->lock);
		f->delivered = low;
		pthread_mutex_unlock(&f->lock);
	}
	pq_dyn.clear(r);
	return n;
}

/* Looks for the passed-over seqs: a row that turns up is delivered late; a seq watched for
 * HOLE_KEEP_MS is forgotten. Returns the number of changes delivered, or -EIO. */
static int follow_holes(struct pg_feed *f)
{
	char list[MAX_HOLES * 21 + 3];
	size_t w = 0;
	int64_t t = now_ms();
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_holes;) {
		if (t - f->holes[i].since_ms > HOLE_KEEP_MS) {
			f->holes[i] = f->holes[--f->n_holes];
			continue;
		}
		w += (size_t)snprintf(list + w, sizeof(list) - w, "%s%lld", w ? "," : "{",
				      (long long)f->holes[i].seq);
		i++;
	}
	pthread_mutex_unlock(&f->lock);
	if (!w)
		return 0;
	snprintf(list + w, sizeof(list) - w, "}");
	PGresult *r = query(f, "SELECT " FEED_COLS " FROM changes WHERE seq = ANY($1::bigint[]) "
			       "ORDER BY seq", list);
	if (!r)
		return -EIO;
	int rows = pq_dyn.ntuples(r);
	for (int i = 0; i < rows; i++) {
		pthread_mutex_lock(&f->lock);
		hole_remove(f, strtoll(pq_dyn.getvalue(r, i, 0), NULL, 10));
		pthread_mutex_unlock(&f->lock);
		deliver(f, r, i);
	}
	pq_dyn.clear(r);
	return rows;
}

static void prune(struct pg_feed *f)
{
	char before[24];
	snprintf(before, sizeof(before), "%lld", (long long)(now_unix() - PRUNE_AGE_S));
	PGresult *r = query(f, "DELETE FROM changes WHERE at < $1::bigint", before);
	pq_dyn.clear(r);
}

/* One pass: tail, holes, prune. Returns the milliseconds to wait before the next, or -EIO. */
static int follow_once(struct pg_feed *f)
{
	bool more = false;
	int n = follow_tail(f, &more);
	int h = n < 0 ? n : follow_holes(f);
	if (n < 0 || h < 0)
		return -EIO;
	pthread_cond_broadcast(&f->cond);
	if (n + h > 0)
		datastore_feed_wake(&f->p->base);
	int64_t t = now_ms();
	if (t >= f->next_prune_ms) {
		prune(f);
		f->next_prune_ms = t + PRUNE_EVERY_MS;
	}
	if (more)
		return 0;
	if (f->gap_since_ms)
		return (int)(GAP_WAIT_MS - (t - f->gap_since_ms) > 0 ? GAP_WAIT_MS - (t - f->gap_since_ms)
								      : 1);
	return f->n_holes ? GAP_WAIT_MS : POLL_MS;
}

/* The end of the feed at start: the sequence's last value (rows may have been pruned), with
 * the seqs just below it that have no row yet watched as holes. */
static int feed_position(struct pg_feed *f, char *err, size_t errlen)
{
	PGresult *r = query(f, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
			       "FROM changes_seq_seq", NULL);
	if (!r || pq_dyn.ntuples(r) != 1) {
		pq_dyn.clear(r);
		snprintf(err, errlen, "cannot read the change feed's position");
		return -EIO;
	}
	int64_t end = strtoll(pq_dyn.getvalue(r, 0, 0), NULL, 10);
	pq_dyn.clear(r);
	char arg[24];
	snprintf(arg, sizeof(arg), "%lld", (long long)end);
	r = query(f, "SELECT s FROM generate_series(GREATEST($1::bigint - " STR(START_WINDOW)
		     " + 1, 1), $1::bigint) s WHERE NOT EXISTS (SELECT 1 FROM changes WHERE seq = s)",
		  arg);
	if (!r) {
		snprintf(err, errlen, "cannot read the change feed");
		return -EIO;
	}
	int64_t t = now_ms();
	pthread_mutex_lock(&f->lock);
	f->delivered = end;
	/* The journal's counter starts there, not at 0: a counter value kept from before a
	 * restart is then never mistaken for a current one (the sequence only grows). */
	f->p->base.feed_counter = end;
	for (int i = 0; i < pq_dyn.ntuples(r); i++)
		hole_add(f, strtoll(pq_dyn.getvalue(r, i, 0), NULL, 10), t);
	pthread_mutex_unlock(&f->lock);
	pq_dyn.clear(r);
	return 0;
}

static int feed_connect(struct pg_feed *f, char *err, size_t errlen)
{
	f->conn = pg_connect(f->p, err, errlen);
	if (!f->conn)
		return -EIO;
	PGresult *r = query(f, "LISTEN " PG_FEED_CHANNEL, NULL);
	if (!r) {
		snprintf(err, errlen, "cannot LISTEN on the change feed");
		pq_dyn.finish(f->conn);
		f->conn = NULL;
		return -EIO;
	}
	pq_dyn.clear(r);
	return 0;
}

/* Sleeps until a notification, a poke from a writer or stop, or timeout_ms. */
static void wait_event(struct pg_feed *f, int timeout_ms)
{
	struct pollfd pfd[2] = {{.fd = f->wake[0], .events = POLLIN},
				{.fd = f->conn ? pq_dyn.socket(f->conn) : -1, .events = POLLIN}};
	if (poll(pfd, 2, timeout_ms) <= 0)
		return;
	if (pfd[0].revents) {
		char buf[64];
		while (read(f->wake[0], buf, sizeof(buf)) > 0)
			;
	}
	if (pfd[1].revents && f->conn) {
		pq_dyn.consume_input(f->conn);
		PGnotify *n;
		while ((n = pq_dyn.notifies(f->conn)))
			pq_dyn.freemem(n);
	}
}

static bool stopping(struct pg_feed *f)
{
	pthread_mutex_lock(&f->lock);
	bool s = f->stopping;
	pthread_mutex_unlock(&f->lock);
	return s;
}

static void *feed_main(void *arg)
{
	struct pg_feed *f = arg;
	while (!stopping(f)) {
		if (!f->conn) {
			char err[512];
			if (feed_connect(f, err, sizeof(err)) < 0) {
				log_warnx("datastore: change feed: cannot reconnect: %s", err);
				wait_event(f, 1000);
				continue;
			}
			/* What happened while disconnected is read from where we were; what
			 * cannot be accounted for is covered by a full re-read. */
			datastore_feed_hole(&f->p->base);
			datastore_feed_wake(&f->p->base);
			log_info("datastore: change feed: reconnected");
		}
		int wait = follow_once(f);
		if (wait < 0 || pq_dyn.status(f->conn) != CONNECTION_OK) {
			pq_dyn.finish(f->conn);
			f->conn = NULL;
			continue;
		}
		if (wait > 0)
			wait_event(f, wait);
	}
	return NULL;
}

void pg_feed_stop(struct pg_feed *f)
{
	if (!f)
		return;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		f->stopping = true;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		ssize_t k = write(f->wake[1], "x", 1);
		(void)k;
		pthread_join(f->thread, NULL);
	}
	if (f->conn)
		pq_dyn.finish(f->conn);
	close(f->wake[0]);
	close(f->wake[1]);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f->holes);
	free(f);
}

int pg_feed_start(struct pg *p, char *err, size_t errlen)
{
	struct pg_feed *f = xcalloc(1, sizeof(*f));
	f->p = p;
	f->holes = xcalloc(MAX_HOLES, sizeof(*f->holes));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	if (pipe2(f->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		f->wake[0] = f->wake[1] = -1;
		pg_feed_stop(f);
		return -EIO;
	}
	char why[512];
	if (feed_connect(f, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot connect: %s", why);
		pg_feed_stop(f);
		return -EIO;
	}
	if (feed_position(f, err, errlen) < 0) {
		pg_feed_stop(f);
		return -EIO;
	}
	f->next_prune_ms = now_ms() + PRUNE_EVERY_MS;
	if (pthread_create(&f->thread, NULL, feed_main, f) != 0) {
		snprintf(err, errlen, "cannot start the change feed thread");
		pg_feed_stop(f);
		return -EIO;
	}
	f->started = true;
	p->feed = f;
	return 0;
}

void pg_feed_wait(struct pg_feed *f, int64_t seq)
{
	if (!f)
		return;
	ssize_t k = write(f->wake[1], "x", 1);
	(void)k;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WRITER_WAIT_MS / 1000;
	pthread_mutex_lock(&f->lock);
	while (!f->stopping && (f->delivered < seq || hole_has(f, seq))) {
		if (pthread_cond_timedwait(&f->cond, &f->lock, &until) == ETIMEDOUT) {
			log_debug("datastore: change %lld not in the journal after %d ms",
				  (long long)seq, WRITER_WAIT_MS);
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
}
