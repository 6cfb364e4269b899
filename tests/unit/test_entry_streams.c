/* entry_streams.c through its header, without the node API around it: streams opened on a
 * cleartext gRPC server on a Unix socket get a snapshot of their agent's entries and the bundle,
 * then only the deltas that concern them; a banned agent's stream ends PERMISSION_DENIED while
 * the others keep working; a cancelled stream is forgotten; shutdown ends every stream
 * UNAVAILABLE. Every entry_streams call runs on the loop thread, as the contract requires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "ca.h"
#include "datastore.h"
#include "entry_streams.h"
#include "grpc_client.h"
#include "grpc_server.h"
#include "log.h"
#include "node.pb-c.h"
#include "util.h"

#define TD "example.org"
#define SERVER_ID "spiffe://example.org/lanyard/server"
#define AGENT_A "spiffe://example.org/lanyard/agent/join_token/a"
#define AGENT_B "spiffe://example.org/lanyard/agent/join_token/b"
#define SYNC "/test.Streams/Sync"
#define WAIT_MS 5000

struct fx {
	char dir[64], sock[96];
	struct datastore *ds;
	struct ca *ca;
	struct entry_streams *es;
	uv_loop_t loop;
	struct grpc_server *srv;
	uv_async_t run, stop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* on_loop: the function to run on the loop thread, and whether it has run (under lock) */
	void (*fn)(struct fx *f);
	bool ran;
	unsigned count; /* entry_streams_count, read by count_fn */
};

struct stream {
	struct grpc_client *gc;
	struct grpc_stream *s;
};

/* ---- the server side: SyncEntries-like calls handed to entry_streams ---- */

static struct fx *fx_of(struct grpc_call *call)
{
	return grpc_server_ud(grpc_conn_server(grpc_call_conn(call)));
}

static void on_sync(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct fx *f = fx_of(call);
	struct agent_record *a;
	(void)msg;
	(void)len;
	/* As node_api.c does: the counter is read before the record. */
	int64_t counter = ds_change_counter(f->ds);
	const char *who = grpc_call_header(call, "x-agent");
	if (!who || ds_agent_get(f->ds, who, &a) < 0) {
		grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED, "unknown agent");
		return;
	}
	entry_streams_open(f->es, call, a, counter);
}

static void on_call_closed(struct grpc_call *call)
{
	entry_streams_call_closed(call);
}

static const struct grpc_method methods[] = {
	{.path = SYNC, .server_streaming = true, .on_request = on_sync},
};

static void run_cb(uv_async_t *h)
{
	struct fx *f = h->data;
	pthread_mutex_lock(&f->lock);
	void (*fn)(struct fx *) = f->fn;
	pthread_mutex_unlock(&f->lock);
	if (fn)
		fn(f);
	pthread_mutex_lock(&f->lock);
	f->fn = NULL;
	f->ran = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static void server_stopped(void *arg)
{
	struct fx *f = arg;
	uv_close((uv_handle_t *)&f->run, NULL);
	uv_close((uv_handle_t *)&f->stop, NULL);
}

static void stop_cb(uv_async_t *h)
{
	struct fx *f = h->data;
	grpc_server_shutdown(f->srv, 0, server_stopped, f);
}

static void *loop_thread(void *arg)
{
	struct fx *f = arg;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* Runs fn on the loop thread and waits for it (one at a time: the test thread is the only caller). */
static void on_loop(struct fx *f, void (*fn)(struct fx *f))
{
	pthread_mutex_lock(&f->lock);
	f->fn = fn;
	f->ran = false;
	pthread_mutex_unlock(&f->lock);
	uv_async_send(&f->run);
	pthread_mutex_lock(&f->lock);
	while (!f->ran)
		pthread_cond_wait(&f->cond, &f->lock);
	pthread_mutex_unlock(&f->lock);
}

static void refresh_fn(struct fx *f)
{
	entry_streams_refresh(f->es);
}

static void shutdown_fn(struct fx *f)
{
	entry_streams_shutdown(f->es);
}

static void count_fn(struct fx *f)
{
	f->count = entry_streams_count(f->es);
}

static unsigned stream_count(struct fx *f)
{
	on_loop(f, count_fn);
	return f->count;
}

/* ---- fixture ---- */

static void add_agent(struct fx *f, const char *id)
{
	char *sels[1] = {"join_token:x"};
	struct agent_record a = {.spiffe_id = (char *)id, .attestor = "join_token",
				 .selectors = sels, .n_selectors = 1};
	assert_int_equal(ds_agent_upsert(f->ds, &a), 0);
}

static char *add_entry(struct fx *f, const char *spiffe_id, const char *parent)
{
	struct entry e = {0};
	char *sels[1] = {"unix:uid:1000"};
	char err[256];
	e.spiffe_id = (char *)spiffe_id;
	e.parent_id = (char *)parent;
	e.selectors = sels;
	e.n_selectors = 1;
	struct entry *c = entry_dup(&e);
	assert_int_equal(ds_entry_create(f->ds, c, err, sizeof(err)), 0);
	char *id = xstrdup(c->id);
	entry_free(c);
	return id;
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	char path[128], err[256];

	log_setup(LOG_LEVEL_WARN, false);
	strcpy(f->dir, "/tmp/lanyard-es-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(path, sizeof(path), "%s/ds.sqlite3", f->dir);
	snprintf(f->sock, sizeof(f->sock), "%s/s.sock", f->dir);
	if (datastore_open_sqlite(path, &f->ds, err, sizeof(err)) < 0)
		return -1;
	struct ca_options co = {.trust_domain = TD, .data_dir = f->dir, .key_type = KEY_EC_P256,
				.ca_ttl = 86400};
	if (ca_open(&co, f->ds, now_unix(), &f->ca, err, sizeof(err)) < 0)
		return -1;
	f->es = entry_streams_new(f->ds, f->ca, TD, SERVER_ID);
	if (!f->es)
		return -1;
	uv_loop_init(&f->loop);
	struct grpc_server_config cfg = {.methods = methods, .n_methods = ARRAY_LEN(methods),
					 .ud = f, .on_call_closed = on_call_closed};
	if (grpc_server_listen_unix(&f->loop, f->sock, &cfg, &f->srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "listen: %s\n", err);
		return -1;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	uv_async_init(&f->loop, &f->run, run_cb);
	f->run.data = f;
	uv_async_init(&f->loop, &f->stop, stop_cb);
	f->stop.data = f;
	add_agent(f, AGENT_A);
	add_agent(f, AGENT_B);
	if (pthread_create(&f->thread, NULL, loop_thread, f) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	uv_async_send(&f->stop);
	pthread_join(f->thread, NULL);
	/* The server closed every call (on_call_closed) before it stopped: no stream is left. */
	int ret = entry_streams_count(f->es) == 0 ? 0 : -1;
	entry_streams_free(f->es);
	uv_loop_close(&f->loop);
	ca_close(f->ca);
	datastore_close(f->ds);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	free(f);
	if (system(cmd) != 0)
		ret = -1;
	return ret;
}

/* ---- the client side ---- */

static void stream_open(struct fx *f, struct stream *st, const char *agent)
{
	struct grpc_header h = {.name = "x-agent", .value = agent};
	char err[256];
	assert_int_equal(grpc_client_connect_unix(f->sock, WAIT_MS, &st->gc, err, sizeof(err)), 0);
	assert_int_equal(grpc_client_stream_open(st->gc, SYNC, &h, 1, NULL, 0, &st->s, err,
						 sizeof(err)),
			 0);
}

static void stream_close(struct stream *st)
{
	grpc_stream_cancel(st->s);
	grpc_client_close(st->gc);
}

/* The next SyncResponse (NULL when none came within timeout_ms, or the stream ended: then
 * *ended, when given, gets the status). */
static Lanyard__Node__V1__SyncResponse *next(struct stream *st, int timeout_ms, int *ended)
{
	uint8_t *msg = NULL;
	size_t len = 0;
	int status = -1;
	char err[256];
	for (;;) {
		int r = grpc_stream_next(st->s, timeout_ms, &msg, &len, &status, err, sizeof(err));
		if (r == 2 && ended)
			*ended = status;
		if (r != 1)
			return NULL;
		Lanyard__Node__V1__SyncResponse *m =
			lanyard__node__v1__sync_response__unpack(NULL, len, msg);
		free(msg);
		assert_non_null(m);
		/* The federated bundle set (none here) follows the first snapshot: not about
		 * entries. */
		if (!m->federated_bundles_set || m->reset || m->n_upserts || m->n_removed_ids ||
		    m->bundle)
			return m;
		assert_int_equal(m->n_federated_bundles, 0);
		lanyard__node__v1__sync_response__free_unpacked(m, NULL);
	}
}

static void expect_ids(char *const *got, size_t n, const char *const *want, size_t n_want)
{
	assert_int_equal(n, n_want);
	for (size_t i = 0; i < n_want; i++) {
		size_t j = 0;
		while (j < n && strcmp(got[j], want[i]) != 0)
			j++;
		assert_true(j < n);
	}
}

/* One complete update: upserts exactly up[], removals exactly rm[]. */
static void expect_update(struct stream *st, bool reset, const char *const *up, size_t n_up,
			  const char *const *rm, size_t n_rm)
{
	Lanyard__Node__V1__SyncResponse *m = next(st, WAIT_MS, NULL);
	assert_non_null(m);
	assert_int_equal(m->reset, reset);
	assert_true(m->complete);
	char *ids[16];
	assert_true(m->n_upserts <= ARRAY_LEN(ids));
	for (size_t i = 0; i < m->n_upserts; i++)
		ids[i] = m->upserts[i]->id;
	expect_ids(ids, m->n_upserts, up, n_up);
	expect_ids(m->removed_ids, m->n_removed_ids, rm, n_rm);
	lanyard__node__v1__sync_response__free_unpacked(m, NULL);
}

static void expect_nothing(struct stream *st)
{
	/* The refresh has run already: anything it sent is queued, 200 ms is plenty. */
	assert_null(next(st, 200, NULL));
}

static void expect_end(struct stream *st, int status)
{
	int ended = -1;
	for (int i = 0; i < 10 && ended < 0; i++) {
		Lanyard__Node__V1__SyncResponse *m = next(st, WAIT_MS / 10, &ended);
		assert_null(m);
	}
	assert_int_equal(ended, status);
}

/* ---- tests ---- */

static void snapshot_carries_entries_and_bundle(void **state)
{
	struct fx *f = *state;
	struct stream a;
	char *e1 = add_entry(f, "spiffe://example.org/web", AGENT_A);
	char *other = add_entry(f, "spiffe://example.org/db", AGENT_B);

	stream_open(f, &a, AGENT_A);
	Lanyard__Node__V1__SyncResponse *m = next(&a, WAIT_MS, NULL);
	assert_non_null(m);
	assert_true(m->reset);
	assert_true(m->complete);
	assert_int_equal(m->n_upserts, 1);
	assert_string_equal(m->upserts[0]->id, e1);
	assert_string_equal(m->upserts[0]->spiffe_id, "spiffe://example.org/web");
	assert_non_null(m->bundle);
	assert_string_equal(m->bundle->trust_domain, TD);
	assert_true(m->bundle->n_x509_authorities >= 1);
	lanyard__node__v1__sync_response__free_unpacked(m, NULL);
	assert_int_equal(stream_count(f), 1);

	stream_close(&a);
	/* The cancel reaches the server asynchronously: the stream goes within a bounded wait. */
	for (int i = 0; i < 50 && stream_count(f) > 0; i++)
		usleep(100 * 1000);
	assert_int_equal(stream_count(f), 0);
	free(e1);
	free(other);
}

static void deltas_reach_only_their_agent(void **state)
{
	struct fx *f = *state;
	struct stream a, b;
	char *a1 = add_entry(f, "spiffe://example.org/a1", AGENT_A);
	char *b1 = add_entry(f, "spiffe://example.org/b1", AGENT_B);

	stream_open(f, &a, AGENT_A);
	stream_open(f, &b, AGENT_B);
	expect_update(&a, true, (const char *[]){a1}, 1, NULL, 0);
	expect_update(&b, true, (const char *[]){b1}, 1, NULL, 0);
	assert_int_equal(stream_count(f), 2);

	/* A new entry of A: A alone hears of it. */
	char *a2 = add_entry(f, "spiffe://example.org/a2", AGENT_A);
	on_loop(f, refresh_fn);
	expect_update(&a, false, (const char *[]){a2}, 1, NULL, 0);
	expect_nothing(&b);

	/* A deletion: a removal for A, still nothing for B. */
	assert_int_equal(ds_entry_delete(f->ds, a1), 0);
	on_loop(f, refresh_fn);
	expect_update(&a, false, NULL, 0, (const char *[]){a1}, 1);
	expect_nothing(&b);

	/* B is banned: its stream ends at once; A's keeps working. */
	assert_int_equal(ds_agent_set_banned(f->ds, AGENT_B, true), 0);
	on_loop(f, refresh_fn);
	expect_end(&b, GRPC_STATUS_PERMISSION_DENIED);
	char *a3 = add_entry(f, "spiffe://example.org/a3", AGENT_A);
	on_loop(f, refresh_fn);
	expect_update(&a, false, (const char *[]){a3}, 1, NULL, 0);
	assert_int_equal(stream_count(f), 1);

	stream_close(&a);
	stream_close(&b);
	free(a1);
	free(a2);
	free(a3);
	free(b1);
}

/* Many changes in one refresh (beyond the delta's small buffers): one update with every upsert
 * and removal, and what the stream remembers it sent stays exact: a full comparison afterwards
 * (the agent's record changed) finds nothing to send, and a later removal is still known. */
static void many_changes_in_one_delta(void **state)
{
	struct fx *f = *state;
	enum { N = 12, GONE = 10 };
	char *old[N], *new[GONE], sid[64];
	for (int i = 0; i < N; i++) {
		snprintf(sid, sizeof(sid), "spiffe://example.org/old%d", i);
		old[i] = add_entry(f, sid, AGENT_A);
	}
	struct stream a;
	stream_open(f, &a, AGENT_A);
	expect_update(&a, true, (const char *const *)old, N, NULL, 0);

	for (int i = 0; i < GONE; i++) {
		assert_int_equal(ds_entry_delete(f->ds, old[i]), 0);
		snprintf(sid, sizeof(sid), "spiffe://example.org/new%d", i);
		new[i] = add_entry(f, sid, AGENT_A);
	}
	on_loop(f, refresh_fn);
	expect_update(&a, false, (const char *const *)new, GONE, (const char *const *)old, GONE);

	add_agent(f, AGENT_A); /* the record changed: the stream compares everything */
	on_loop(f, refresh_fn);
	expect_nothing(&a);

	assert_int_equal(ds_entry_delete(f->ds, new[3]), 0);
	assert_int_equal(ds_entry_delete(f->ds, old[GONE]), 0);
	on_loop(f, refresh_fn);
	expect_update(&a, false, NULL, 0, (const char *[]){new[3], old[GONE]}, 2);

	stream_close(&a);
	for (int i = 0; i < N; i++)
		free(old[i]);
	for (int i = 0; i < GONE; i++)
		free(new[i]);
}

static void shutdown_ends_every_stream(void **state)
{
	struct fx *f = *state;
	struct stream a, b;
	char *a1 = add_entry(f, "spiffe://example.org/s1", AGENT_A);

	stream_open(f, &a, AGENT_A);
	stream_open(f, &b, AGENT_B);
	expect_update(&a, true, (const char *[]){a1}, 1, NULL, 0);
	expect_update(&b, true, NULL, 0, NULL, 0);
	on_loop(f, shutdown_fn);
	expect_end(&a, GRPC_STATUS_UNAVAILABLE);
	expect_end(&b, GRPC_STATUS_UNAVAILABLE);
	assert_int_equal(stream_count(f), 0);
	stream_close(&a);
	stream_close(&b);
	free(a1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(snapshot_carries_entries_and_bundle, setup, teardown),
		cmocka_unit_test_setup_teardown(deltas_reach_only_their_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(many_changes_in_one_delta, setup, teardown),
		cmocka_unit_test_setup_teardown(shutdown_ends_every_stream, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
