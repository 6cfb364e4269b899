#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "datastore.h"
#include "entry.h"
#include "fed_bundle.h"
#include "keys.h"
#include "strv.h"
#include "util.h"
#include "x509.h"

#define TD "example.org"

/* One body, two backends: SQLite in a temporary file by default; PostgreSQL when the runner
 * (tests/pg_cluster.sh run, ctest's unit/test_datastore_pg) gives a throwaway cluster in
 * LANYARD_TEST_PG_CONNSTR. The few tests about one backend's own storage say which. */
static const char *pg_connstr;

/* Runs sql on the PostgreSQL test database; the first column of the first row as an integer
 * (0 when there is none). */
static int64_t pg_sql(const char *sql)
{
	PGconn *c = PQconnectdb(pg_connstr);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
	assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
	int64_t v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
							       : 0;
	PQclear(r);
	PQfinish(c);
	return v;
}

static int open_ds(const char *path, struct datastore **ds, char *err, size_t errlen)
{
	if (pg_connstr)
		return datastore_open_pg(pg_connstr, 4, ds, err, errlen);
	return datastore_open_sqlite(path, ds, err, errlen);
}

struct fixture {
	char dir[64];
	char path[128];
	struct datastore *ds;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/lanyard-ds-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/server.db", f->dir);
	char err[256] = "";
	if (pg_connstr)
		pg_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
	if (open_ds(f->path, &f->ds, err, sizeof(err)) < 0) {
		fprintf(stderr, "open: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[192];
	datastore_close(f->ds);
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void reopen(struct fixture *f)
{
	char err[256] = "";
	datastore_close(f->ds);
	f->ds = NULL;
	assert_int_equal(open_ds(f->path, &f->ds, err, sizeof(err)), 0);
}

static struct entry *mk_entry(const char *spiffe, const char *parent, const char *sel1,
			      const char *sel2)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	e->spiffe_id = xstrdup(spiffe);
	e->parent_id = xstrdup(parent);
	e->n_selectors = sel2 ? 2 : 1;
	e->selectors = xcalloc(e->n_selectors, sizeof(char *));
	e->selectors[0] = xstrdup(sel1);
	if (sel2)
		e->selectors[1] = xstrdup(sel2);
	return e;
}

static void open_creates_private_file(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	if (pg_connstr)
		skip();
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(ds_ping(f->ds), 0);
}

static void entry_crud(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *e = mk_entry("spiffe://" TD "/web", "spiffe://" TD "/agent/a", "unix:uid:1000",
				   "unix:gid:1000");
	e->x509_svid_ttl = 3600;
	e->hint = xstrdup("web");
	e->dns_names = xcalloc(1, sizeof(char *));
	e->dns_names[0] = xstrdup("web.example.org");
	e->n_dns_names = 1;
	int64_t c0 = ds_change_counter(f->ds);

	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(strlen(e->id), 36);
	assert_true(e->revision > 0);
	assert_true(e->created_at > 0);
	assert_true(ds_change_counter(f->ds) > c0);

	struct entry *g = NULL;
	assert_int_equal(ds_entry_get(f->ds, e->id, &g), 0);
	assert_string_equal(g->id, e->id);
	assert_string_equal(g->spiffe_id, "spiffe://" TD "/web");
	assert_string_equal(g->parent_id, "spiffe://" TD "/agent/a");
	assert_int_equal(g->n_selectors, 2);
	/* Stored sorted. */
	assert_string_equal(g->selectors[0], "unix:gid:1000");
	assert_string_equal(g->selectors[1], "unix:uid:1000");
	assert_int_equal(g->x509_svid_ttl, 3600);
	assert_int_equal(g->jwt_svid_ttl, 0);
	assert_string_equal(g->hint, "web");
	assert_int_equal(g->n_dns_names, 1);
	assert_string_equal(g->dns_names[0], "web.example.org");
	assert_int_equal(g->revision, e->revision);
	assert_int_equal(g->created_at, e->created_at);

	/* Update bumps the revision, keeps created_at. */
	int64_t rev = g->revision, created = g->created_at;
	free(g->hint);
	g->hint = NULL;
	g->admin = true;
	g->created_at = 1;
	int64_t c1 = ds_change_counter(f->ds);
	assert_int_equal(ds_entry_update(f->ds, g, err, sizeof(err)), 0);
	assert_true(g->revision > rev);
	assert_int_equal(g->created_at, created);
	assert_true(ds_change_counter(f->ds) > c1);
	struct entry *h = NULL;
	assert_int_equal(ds_entry_get(f->ds, e->id, &h), 0);
	assert_null(h->hint);
	assert_true(h->admin);
	assert_int_equal(h->revision, g->revision);
	assert_int_equal(h->created_at, created);
	entry_free(h);

	/* Unknown ids. */
	struct entry *ghost = entry_dup(g);
	snprintf(ghost->id, sizeof(ghost->id), "00000000-0000-4000-8000-000000000000");
	assert_int_equal(ds_entry_update(f->ds, ghost, err, sizeof(err)), -ENOENT);
	assert_int_equal(ds_entry_get(f->ds, ghost->id, &h), -ENOENT);
	assert_int_equal(ds_entry_delete(f->ds, ghost->id), -ENOENT);
	entry_free(ghost);

	int64_t c2 = ds_change_counter(f->ds);
	assert_int_equal(ds_entry_delete(f->ds, e->id), 0);
	assert_true(ds_change_counter(f->ds) > c2);
	assert_int_equal(ds_entry_get(f->ds, e->id, &h), -ENOENT);
	assert_int_equal(ds_entry_delete(f->ds, e->id), -ENOENT);
	entry_free(g);
	entry_free(e);
}

static void entry_duplicates_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *a = mk_entry("spiffe://" TD "/db", "spiffe://" TD "/agent/a", "unix:uid:1", "unix:gid:2");
	/* Same set in another order and with a repeat: still the same entry. */
	struct entry *b = mk_entry("spiffe://" TD "/db", "spiffe://" TD "/agent/a", "unix:gid:2", "unix:uid:1");
	struct entry *c = mk_entry("spiffe://" TD "/db", "spiffe://" TD "/agent/a", "unix:uid:1", NULL);
	assert_int_equal(ds_entry_create(f->ds, a, err, sizeof(err)), 0);
	int64_t counter = ds_change_counter(f->ds);
	err[0] = '\0';
	assert_int_equal(ds_entry_create(f->ds, b, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "an entry with the same SPIFFE ID, parent ID and selectors already exists"));
	assert_non_null(strstr(err, a->id));
	assert_int_equal(b->id[0], '\0');
	assert_int_equal(ds_change_counter(f->ds), counter);

	/* A subset of the selectors is another entry. */
	assert_int_equal(ds_entry_create(f->ds, c, err, sizeof(err)), 0);
	/* Updating c into a copy of a is refused too, and leaves c unchanged. */
	struct entry *c2 = entry_dup(c);
	c2->selectors = xrealloc(c2->selectors, 2 * sizeof(char *));
	c2->selectors[1] = xstrdup("unix:gid:2");
	c2->n_selectors = 2;
	assert_int_equal(ds_entry_update(f->ds, c2, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, a->id));
	struct entry *g = NULL;
	assert_int_equal(ds_entry_get(f->ds, c->id, &g), 0);
	assert_int_equal(g->n_selectors, 1);
	assert_int_equal(g->revision, c->revision);
	/* Updating an entry without changing its identity is no duplicate of itself. */
	assert_int_equal(ds_entry_update(f->ds, g, err, sizeof(err)), 0);
	entry_free(g);
	entry_free(c2);
	entry_free(a);
	entry_free(b);
	entry_free(c);
}

static void entry_filters(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *es[] = {
		mk_entry("spiffe://" TD "/a", "spiffe://" TD "/agent/1", "unix:uid:1", "unix:gid:1"),
		mk_entry("spiffe://" TD "/a", "spiffe://" TD "/agent/2", "unix:uid:1", NULL),
		mk_entry("spiffe://" TD "/b", "spiffe://" TD "/agent/1", "unix:uid:2", "unix:gid:1"),
		mk_entry("spiffe://" TD "/c", "spiffe://" TD "/agent/2", "k8s:ns:x", NULL),
	};
	for (size_t i = 0; i < ARRAY_LEN(es); i++)
		assert_int_equal(ds_entry_create(f->ds, es[i], err, sizeof(err)), 0);

	struct entry **out = NULL;
	size_t n = 0;
	assert_int_equal(ds_entry_list(f->ds, NULL, &out, &n), 0);
	assert_int_equal(n, 4);
	entry_array_free(out, n);

	struct entry_filter fl = { .spiffe_id = "spiffe://" TD "/a" };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(out[i]->spiffe_id, "spiffe://" TD "/a");
	entry_array_free(out, n);

	fl = (struct entry_filter){ .parent_id = "spiffe://" TD "/agent/2" };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(out[i]->parent_id, "spiffe://" TD "/agent/2");
	entry_array_free(out, n);

	fl = (struct entry_filter){ .spiffe_id = "spiffe://" TD "/a", .parent_id = "spiffe://" TD "/agent/2" };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0]->id, es[1]->id);
	entry_array_free(out, n);

	const char *const gid1[] = { "unix:gid:1" };
	fl = (struct entry_filter){ .selectors = gid1, .n_selectors = 1 };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(out[i]->parent_id, "spiffe://" TD "/agent/1");
	entry_array_free(out, n);

	const char *const both[] = { "unix:gid:1", "unix:uid:1" };
	fl = (struct entry_filter){ .selectors = both, .n_selectors = 2 };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0]->id, es[0]->id);
	entry_array_free(out, n);

	const char *const none[] = { "unix:uid:1", "k8s:ns:x" };
	fl = (struct entry_filter){ .selectors = none, .n_selectors = 2 };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 0);
	entry_array_free(out, n);

	fl = (struct entry_filter){ .spiffe_id = "spiffe://" TD "/nobody" };
	assert_int_equal(ds_entry_list(f->ds, &fl, &out, &n), 0);
	assert_int_equal(n, 0);
	assert_null(out);

	for (size_t i = 0; i < ARRAY_LEN(es); i++)
		entry_free(es[i]);
}

static void revisions_increase(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *a = mk_entry("spiffe://" TD "/r1", "spiffe://" TD "/agent/1", "a:1", NULL);
	struct entry *b = mk_entry("spiffe://" TD "/r2", "spiffe://" TD "/agent/1", "a:1", NULL);
	assert_int_equal(ds_entry_create(f->ds, a, err, sizeof(err)), 0);
	assert_int_equal(ds_entry_create(f->ds, b, err, sizeof(err)), 0);
	assert_true(b->revision > a->revision);
	int64_t before = a->revision;
	assert_int_equal(ds_entry_update(f->ds, a, err, sizeof(err)), 0);
	assert_true(a->revision > b->revision);
	assert_true(a->revision > before);
	entry_free(a);
	entry_free(b);
}

static void tokens(void **state)
{
	struct fixture *f = *state;
	char *alias = NULL;
	int64_t n = -1;
	const int64_t now = 1000000;

	assert_int_equal(ds_token_create(f->ds, "tok-a", "spiffe://" TD "/node/a", now + 600), 0);
	assert_int_equal(ds_token_create(f->ds, "tok-b", NULL, now + 600), 0);
	assert_int_equal(ds_token_create(f->ds, "tok-old", NULL, now - 1), 0);
	assert_int_equal(ds_token_create(f->ds, "tok-a", NULL, now + 600), -EEXIST);
	assert_int_equal(ds_token_count(f->ds, now, &n), 0);
	assert_int_equal(n, 2);

	assert_int_equal(ds_token_consume(f->ds, "tok-a", now, &alias), 0);
	assert_string_equal(alias, "spiffe://" TD "/node/a");
	free(alias);
	alias = (char *)1;
	/* Single use. */
	assert_int_equal(ds_token_consume(f->ds, "tok-a", now, &alias), -ENOENT);
	assert_null(alias);
	assert_int_equal(ds_token_consume(f->ds, "tok-b", now, &alias), 0);
	assert_null(alias);
	assert_int_equal(ds_token_consume(f->ds, "unknown", now, &alias), -ENOENT);
	assert_int_equal(ds_token_consume(f->ds, "", now, &alias), -ENOENT);
	/* Expired: refused and consumed. */
	assert_int_equal(ds_token_consume(f->ds, "tok-old", now, &alias), -ETIMEDOUT);
	assert_null(alias);
	assert_int_equal(ds_token_consume(f->ds, "tok-old", now - 100, &alias), -ENOENT);

	/* A token exactly at its expiry time is expired. */
	assert_int_equal(ds_token_create(f->ds, "tok-edge", NULL, now), 0);
	assert_int_equal(ds_token_consume(f->ds, "tok-edge", now, NULL), -ETIMEDOUT);

	/* Prune removes expired ones only. */
	assert_int_equal(ds_token_create(f->ds, "tok-c", NULL, now + 10), 0);
	assert_int_equal(ds_token_create(f->ds, "tok-d", NULL, now + 100), 0);
	assert_int_equal(ds_token_prune(f->ds, now + 50), 0);
	assert_int_equal(ds_token_consume(f->ds, "tok-c", now, NULL), -ENOENT);
	assert_int_equal(ds_token_consume(f->ds, "tok-d", now, NULL), 0);
}

static int count_rows_with(const char *path, const char *needle)
{
	/* Reads the raw database files: the clear token must not appear anywhere in them. */
	static const char *const suffixes[] = { "", "-wal" };
	int hits = 0;
	for (size_t i = 0; i < 2; i++) {
		char p[192];
		snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
		uint8_t *buf = NULL;
		size_t len = 0;
		if (file_read_all(p, 64 << 20, &buf, &len) < 0)
			continue;
		if (memmem(buf, len, needle, strlen(needle)))
			hits++;
		free(buf);
	}
	return hits;
}

static void tokens_stored_hashed(void **state)
{
	struct fixture *f = *state;
	const char *tok = "3f9a1c0d5e7b2a4c6d8e0f1a2b3c4d5e-secret-token";
	assert_int_equal(ds_token_create(f->ds, tok, NULL, now_unix() + 600), 0);
	if (pg_connstr)
		assert_int_equal(pg_sql("SELECT COUNT(*) FROM join_tokens WHERE hash LIKE "
					"'%secret-token%' OR alias LIKE '%secret-token%'"), 0);
	else
		assert_int_equal(count_rows_with(f->path, tok), 0);
	reopen(f);
	assert_int_equal(ds_token_consume(f->ds, tok, now_unix(), NULL), 0);
}

static struct agent_record *mk_agent(const char *id)
{
	struct agent_record *a = xcalloc(1, sizeof(*a));
	a->spiffe_id = xstrdup(id);
	a->attestor = xstrdup("join_token");
	a->n_selectors = 1;
	a->selectors = xcalloc(1, sizeof(char *));
	a->selectors[0] = xstrdup("join_token:abc");
	a->n_aliases = 1;
	a->aliases = xcalloc(1, sizeof(char *));
	a->aliases[0] = xstrdup("spiffe://" TD "/node/alias");
	a->serial = xstrdup("01ab");
	a->not_after = 5000;
	a->created_at = 100;
	a->last_seen = 100;
	return a;
}

static void agents(void **state)
{
	struct fixture *f = *state;
	struct agent_record *a = mk_agent("spiffe://" TD "/agent/join_token/abc");
	struct agent_record *b = mk_agent("spiffe://" TD "/agent/join_token/def");
	struct agent_record *g = NULL, **list = NULL;
	size_t n = 0;

	/* ds_agent_generation moves with every agent write (touch included), not with reads. */
	uint64_t g0, g1;
	/* SQLite: this process's writes are all there are; PostgreSQL: shared, never cached. */
	assert_int_equal(ds_agent_generation(f->ds, &g0), pg_connstr == NULL);
	int64_t c0 = ds_change_counter(f->ds);
	assert_int_equal(ds_agent_upsert(f->ds, a), 0);
	assert_true(ds_change_counter(f->ds) > c0);
	ds_agent_generation(f->ds, &g1);
	assert_true(g1 != g0);
	assert_int_equal(ds_agent_upsert(f->ds, b), 0);
	ds_agent_generation(f->ds, &g1);
	assert_int_equal(ds_agent_get(f->ds, a->spiffe_id, &g), 0);
	assert_string_equal(g->attestor, "join_token");
	assert_int_equal(g->n_selectors, 1);
	assert_string_equal(g->selectors[0], "join_token:abc");
	assert_int_equal(g->n_aliases, 1);
	assert_string_equal(g->aliases[0], "spiffe://" TD "/node/alias");
	assert_string_equal(g->serial, "01ab");
	assert_int_equal(g->not_after, 5000);
	assert_false(g->banned);
	agent_record_free(g);
	ds_agent_generation(f->ds, &g0);
	assert_true(g0 == g1);

	/* Upsert replaces but keeps created_at. */
	free(a->serial);
	a->serial = xstrdup("02cd");
	a->created_at = 999;
	assert_int_equal(ds_agent_upsert(f->ds, a), 0);
	assert_int_equal(ds_agent_get(f->ds, a->spiffe_id, &g), 0);
	assert_string_equal(g->serial, "02cd");
	assert_int_equal(g->created_at, 100);
	agent_record_free(g);

	/* Touch: renewal recorded, counter unchanged. */
	int64_t c1 = ds_change_counter(f->ds);
	assert_int_equal(ds_agent_touch(f->ds, a->spiffe_id, "03ef", 7000, 200), 0);
	assert_int_equal(ds_agent_touch(f->ds, a->spiffe_id, NULL, 8000, 300), 0);
	assert_int_equal(ds_change_counter(f->ds), c1);
	ds_agent_generation(f->ds, &g1);
	assert_true(g1 != g0);
	assert_int_equal(ds_agent_get(f->ds, a->spiffe_id, &g), 0);
	assert_string_equal(g->serial, "03ef");
	assert_int_equal(g->not_after, 8000);
	assert_int_equal(g->last_seen, 300);
	agent_record_free(g);
	assert_int_equal(ds_agent_touch(f->ds, "spiffe://" TD "/nope", NULL, 1, 1), -ENOENT);

	assert_int_equal(ds_agent_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->spiffe_id, a->spiffe_id);
	assert_string_equal(list[1]->spiffe_id, b->spiffe_id);
	json_t *j = agent_record_to_json(list[0]);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "spiffe_id")), a->spiffe_id);
	assert_true(json_is_false(json_object_get(j, "banned")));
	json_decref(j);
	agent_record_array_free(list, n);

	/* Ban. */
	ds_agent_generation(f->ds, &g0);
	assert_int_equal(ds_agent_set_banned(f->ds, b->spiffe_id, true), 0);
	ds_agent_generation(f->ds, &g1);
	assert_true(g1 != g0);
	assert_true(ds_change_counter(f->ds) > c1);
	assert_int_equal(ds_agent_get(f->ds, b->spiffe_id, &g), 0);
	assert_true(g->banned);
	agent_record_free(g);
	assert_int_equal(ds_agent_set_banned(f->ds, "spiffe://" TD "/nope", true), -ENOENT);

	/* Evict. */
	int64_t c2 = ds_change_counter(f->ds);
	ds_agent_generation(f->ds, &g0);
	assert_int_equal(ds_agent_delete(f->ds, a->spiffe_id), 0);
	ds_agent_generation(f->ds, &g1);
	assert_true(g1 != g0);
	assert_true(ds_change_counter(f->ds) > c2);
	assert_int_equal(ds_agent_get(f->ds, a->spiffe_id, &g), -ENOENT);
	assert_int_equal(ds_agent_delete(f->ds, a->spiffe_id), -ENOENT);
	assert_int_equal(ds_agent_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 1);
	agent_record_array_free(list, n);

	agent_record_free(a);
	agent_record_free(b);
}

static void ca_records(void **state)
{
	struct fixture *f = *state;
	uint8_t cert[] = { 0x30, 0x82, 0x00, 0x00, 0xde, 0xad };
	uint8_t spki[] = { 0x30, 0x59, 0x01 };
	struct ca_record r1 = { .id = "ca-1", .state = CA_STATE_ACTIVE, .cert_der = cert,
				.cert_len = sizeof(cert), .jwt_kid = "kid-1", .jwt_spki = spki,
				.jwt_spki_len = sizeof(spki), .not_before = 10, .not_after = 20,
				.created_at = 5 };
	struct ca_record r2 = { .id = "ca-2", .state = CA_STATE_PREPARED, .cert_der = cert,
				.cert_len = 2, .not_before = 15, .not_after = 30 };
	struct ca_record **list = NULL;
	size_t n = 0;

	assert_int_equal(ds_ca_put(f->ds, &r2), 0);
	assert_int_equal(ds_ca_put(f->ds, &r1), 0);
	assert_int_equal(ds_ca_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0]->id, "ca-1");
	assert_int_equal(list[0]->state, CA_STATE_ACTIVE);
	assert_int_equal(list[0]->cert_len, sizeof(cert));
	assert_memory_equal(list[0]->cert_der, cert, sizeof(cert));
	assert_string_equal(list[0]->jwt_kid, "kid-1");
	assert_int_equal(list[0]->jwt_spki_len, sizeof(spki));
	assert_memory_equal(list[0]->jwt_spki, spki, sizeof(spki));
	assert_int_equal(list[0]->created_at, 5);
	assert_string_equal(list[1]->id, "ca-2");
	assert_null(list[1]->jwt_kid);
	assert_null(list[1]->jwt_spki);
	assert_true(list[1]->created_at > 0);
	ca_record_array_free(list, n);

	/* Replace by id. */
	r1.state = CA_STATE_OLD;
	assert_int_equal(ds_ca_put(f->ds, &r1), 0);
	assert_int_equal(ds_ca_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0]->state, CA_STATE_OLD);
	ca_record_array_free(list, n);

	assert_int_equal(ds_ca_delete(f->ds, "ca-1"), 0);
	assert_int_equal(ds_ca_delete(f->ds, "ca-1"), -ENOENT);
	assert_int_equal(ds_ca_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 1);
	ca_record_array_free(list, n);
}

/* Several servers on one datastore: a write from a stale view never clears a stored taint nor
 * moves the state back (a taint written before another server's activation, or after it from
 * a listing read before it); a state change never re-creates a record deleted (revoked). */
static void ca_state_merge(void **state)
{
	struct fixture *f = *state;
	uint8_t cert[] = { 0x30, 0x82, 0x00, 0x00, 0xde, 0xad };
	struct ca_record r = { .id = "ca-1", .state = CA_STATE_PREPARED, .cert_der = cert,
			       .cert_len = sizeof(cert), .not_before = 10, .not_after = 20 };
	struct ca_record **list = NULL;
	size_t n = 0;
	assert_int_equal(ds_ca_put(f->ds, &r), 0);
	int st = CA_STATE_PREPARED | CA_STATE_TAINTED;
	assert_int_equal(ds_ca_set_state(f->ds, "ca-1", &st), 0); /* the taint, first */
	assert_int_equal(st, CA_STATE_PREPARED | CA_STATE_TAINTED);
	st = CA_STATE_ACTIVE; /* the activation, from a view without the taint */
	assert_int_equal(ds_ca_set_state(f->ds, "ca-1", &st), 0);
	assert_int_equal(st, CA_STATE_ACTIVE | CA_STATE_TAINTED);
	r.state = CA_STATE_ACTIVE; /* a whole-record write, the same */
	assert_int_equal(ds_ca_put(f->ds, &r), 0);
	st = CA_STATE_OLD;
	assert_int_equal(ds_ca_set_state(f->ds, "ca-1", &st), 0);
	assert_int_equal(st, CA_STATE_OLD | CA_STATE_TAINTED);
	r.state = CA_STATE_PREPARED; /* a stale writer never moves the state back */
	assert_int_equal(ds_ca_put(f->ds, &r), 0);
	st = CA_STATE_ACTIVE;
	assert_int_equal(ds_ca_set_state(f->ds, "ca-1", &st), 0);
	assert_int_equal(st, CA_STATE_OLD | CA_STATE_TAINTED);
	assert_int_equal(ds_ca_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(list[0]->state, CA_STATE_OLD | CA_STATE_TAINTED);
	assert_int_equal(list[0]->cert_len, sizeof(cert));
	ca_record_array_free(list, n);
	/* Revoked (deleted) meanwhile: a state change does not bring it back. */
	assert_int_equal(ds_ca_delete(f->ds, "ca-1"), 0);
	st = CA_STATE_ACTIVE;
	assert_int_equal(ds_ca_set_state(f->ds, "ca-1", &st), -ENOENT);
	assert_int_equal(ds_ca_list(f->ds, &list, &n), 0);
	assert_int_equal(n, 0);
	ca_record_array_free(list, n);
}

static void kv(void **state)
{
	struct fixture *f = *state;
	int64_t v = 0;
	assert_int_equal(ds_kv_get_int(f->ds, "bundle_sequence", &v), -ENOENT);
	assert_int_equal(ds_kv_set_int(f->ds, "bundle_sequence", 7), 0);
	assert_int_equal(ds_kv_get_int(f->ds, "bundle_sequence", &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(ds_kv_set_int(f->ds, "bundle_sequence", INT64_MAX), 0);
	assert_int_equal(ds_kv_get_int(f->ds, "bundle_sequence", &v), 0);
	assert_true(v == INT64_MAX);
}

/* Entries of automatic registration keep their mark through create, update and reads. */
static void managed_entries(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *e = mk_entry("spiffe://" TD "/pod", "spiffe://" TD "/agent/n1",
				   "k8s:pod-uid:1", NULL);
	struct entry *g = NULL;
	e->managed = true;
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(ds_entry_get(f->ds, e->id, &g), 0);
	assert_true(g->managed);
	g->managed = false;
	assert_int_equal(ds_entry_update(f->ds, g, err, sizeof(err)), 0);
	entry_free(g);
	assert_int_equal(ds_entry_get(f->ds, e->id, &g), 0);
	assert_false(g->managed);
	json_t *j = entry_to_json(g);
	assert_true(json_is_false(json_object_get(j, "managed")));
	json_decref(j);
	entry_free(g);
	entry_free(e);
}

/* One holder at a time; the holder renews; another takes over once it expired or was given up. */
static void leases(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-a", 30), 1);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-b", 30), 0);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-a", 30), 1);
	assert_int_equal(ds_lease_acquire(f->ds, "other-job", "server-b", 30), 1);
	/* b gives up a lease it does not hold: nothing happens. */
	assert_int_equal(ds_lease_release(f->ds, "k8s_registration", "server-b"), 0);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-b", 30), 0);
	assert_int_equal(ds_lease_release(f->ds, "k8s_registration", "server-a"), 0);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-b", 1), 1);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-a", 30), 0);
	sleep(2);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-a", 30), 1);
	assert_int_equal(ds_lease_acquire(f->ds, "k8s_registration", "server-a", 0), -EINVAL);
}

static void reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *e = mk_entry("spiffe://" TD "/keep", "spiffe://" TD "/agent/1", "unix:uid:5", NULL);
	struct agent_record *a = mk_agent("spiffe://" TD "/agent/keep");
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(ds_agent_upsert(f->ds, a), 0);
	assert_int_equal(ds_token_create(f->ds, "keep-token", NULL, now_unix() + 600), 0);
	assert_int_equal(ds_kv_set_int(f->ds, "seq", 42), 0);
	int64_t counter = ds_change_counter(f->ds);

	reopen(f);

	struct entry *g = NULL;
	assert_int_equal(ds_entry_get(f->ds, e->id, &g), 0);
	assert_string_equal(g->spiffe_id, e->spiffe_id);
	assert_int_equal(g->revision, e->revision);
	entry_free(g);
	struct agent_record *ga = NULL;
	assert_int_equal(ds_agent_get(f->ds, a->spiffe_id, &ga), 0);
	agent_record_free(ga);
	int64_t v = 0;
	assert_int_equal(ds_kv_get_int(f->ds, "seq", &v), 0);
	assert_int_equal(v, 42);
	/* The counter never goes back, so revisions stay unique across restarts (PostgreSQL:
	 * revisions come from a sequence, and the counter is the process's own journal). */
	if (!pg_connstr)
		assert_int_equal(ds_change_counter(f->ds), counter);
	else
		(void)counter;
	struct entry *e2 = mk_entry("spiffe://" TD "/keep2", "spiffe://" TD "/agent/1", "unix:uid:5", NULL);
	assert_int_equal(ds_entry_create(f->ds, e2, err, sizeof(err)), 0);
	assert_true(e2->revision > e->revision);
	assert_int_equal(ds_token_consume(f->ds, "keep-token", now_unix(), NULL), 0);
	/* Duplicates are still refused after a reopen. */
	struct entry *dup = mk_entry("spiffe://" TD "/keep", "spiffe://" TD "/agent/1", "unix:uid:5", NULL);
	assert_int_equal(ds_entry_create(f->ds, dup, err, sizeof(err)), -EEXIST);
	entry_free(dup);
	entry_free(e2);
	entry_free(e);
	agent_record_free(a);
}

static void newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	/* Simulate a database written by a future version: the server must not touch it. */
	datastore_close(f->ds);
	f->ds = NULL;
	if (pg_connstr) {
		pg_sql("INSERT INTO schema_version VALUES (99)");
		assert_int_not_equal(open_ds(NULL, &f->ds, err, sizeof(err)), 0);
		assert_null(f->ds);
		assert_non_null(strstr(err, "newer"));
		pg_sql("DELETE FROM schema_version WHERE version = 99");
		reopen(f);
		return;
	}
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v sqlite3 >/dev/null && sqlite3 %s "
		 "'INSERT INTO schema_version VALUES (99)'", f->path);
	if (system(cmd) != 0) {
		reopen(f);
		skip();
	}
	assert_int_not_equal(datastore_open_sqlite(f->path, &f->ds, err, sizeof(err)), 0);
	assert_null(f->ds);
	assert_non_null(strstr(err, "newer"));
	/* Put it back so that teardown works. */
	snprintf(cmd, sizeof(cmd), "sqlite3 %s 'DELETE FROM schema_version WHERE version = 99'", f->path);
	assert_int_equal(system(cmd), 0);
	reopen(f);
}

static void bad_path_reported(void **state)
{
	struct datastore *ds = NULL;
	char err[256] = "";
	if (pg_connstr) {
		/* A malformed string and an unreachable server: errors without the password. */
		assert_int_equal(datastore_open_pg("host=/nonexistent password hunter2-secret", 2,
						   &ds, err, sizeof(err)), -EINVAL);
		assert_null(ds);
		assert_null(strstr(err, "hunter2"));
		assert_true(datastore_open_pg("host=/nonexistent-dir port=1 dbname=x "
					      "password=hunter2-secret", 2, &ds, err,
					      sizeof(err)) < 0);
		assert_null(ds);
		assert_non_null(strstr(err, "/nonexistent-dir"));
		assert_null(strstr(err, "hunter2"));
		char safe[256];
		assert_int_equal(datastore_pg_conninfo_check("postgresql://u:hunter2-secret@db/lanyard",
							     safe, sizeof(safe), err, sizeof(err)), 0);
		assert_non_null(strstr(safe, "host=db"));
		assert_null(strstr(safe, "hunter2"));
		return;
	}
	assert_true(datastore_open_sqlite("/nonexistent-dir/x/y.db", &ds, err, sizeof(err)) < 0);
	assert_null(ds);
	assert_non_null(strstr(err, "/nonexistent-dir/x/y.db"));
}

struct race {
	struct datastore *ds;
	int ok;
};

/* The change journal names every change that moves the counter, in order, and says when it
 * cannot (too old, or after a restart). */
static void change_journal(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct ds_change *ch = NULL;
	size_t n = 0;
	int64_t cur = -1, c0 = ds_change_counter(f->ds);

	struct entry *e = mk_entry("spiffe://" TD "/web", "spiffe://" TD "/agent/a", "unix:uid:1",
				   NULL);
	struct entry *dup = entry_dup(e);
	struct agent_record *a = mk_agent("spiffe://" TD "/agent/join_token/abc");
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(ds_entry_create(f->ds, dup, err, sizeof(err)), -EEXIST); /* no change */
	assert_int_equal(ds_entry_update(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(ds_agent_upsert(f->ds, a), 0);
	/* A renewal changes no entitlement: not journaled, counter unchanged. */
	assert_int_equal(ds_agent_touch(f->ds, a->spiffe_id, "0a", 9000, 100), 0);
	assert_int_equal(ds_agent_set_banned(f->ds, a->spiffe_id, true), 0);
	assert_int_equal(ds_entry_delete(f->ds, e->id), 0);
	assert_int_equal(ds_entry_delete(f->ds, e->id), -ENOENT); /* no change */
	assert_int_equal(ds_agent_delete(f->ds, a->spiffe_id), 0);

	int64_t cnt = -1;
	assert_int_equal(ds_entry_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_int_equal(ds_agent_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 0);

	assert_int_equal(ds_changes_since(f->ds, c0, &ch, &n, &cur), 0);
	assert_int_equal(cur, ds_change_counter(f->ds));
	assert_int_equal(n, 6);
	assert_int_equal(cur, c0 + 6);
	const enum ds_change_kind kinds[] = {DS_CHANGE_ENTRY, DS_CHANGE_ENTRY, DS_CHANGE_AGENT,
					     DS_CHANGE_AGENT, DS_CHANGE_ENTRY, DS_CHANGE_AGENT};
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ch[i].counter, c0 + 1 + (int64_t)i);
		assert_int_equal(ch[i].kind, kinds[i]);
		assert_string_equal(ch[i].id, kinds[i] == DS_CHANGE_ENTRY ? e->id : a->spiffe_id);
	}
	ds_change_array_free(ch, n);

	/* From the middle, and from now. */
	assert_int_equal(ds_changes_since(f->ds, c0 + 4, &ch, &n, &cur), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ch[0].kind, DS_CHANGE_ENTRY);
	ds_change_array_free(ch, n);
	assert_int_equal(ds_changes_since(f->ds, cur, &ch, &n, &cur), 0);
	assert_int_equal(n, 0);
	/* Counts, without listing. */
	assert_int_equal(ds_entry_create(f->ds, dup, err, sizeof(err)), 0);
	assert_int_equal(ds_agent_upsert(f->ds, a), 0);
	assert_int_equal(ds_entry_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(ds_agent_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(ds_changes_since(f->ds, cur, &ch, &n, &cur), 0);
	assert_int_equal(n, 2);
	ds_change_array_free(ch, n);
	/* The future, the past before the journal began, and after a restart: unknown. */
	assert_int_equal(ds_changes_since(f->ds, cur + 1, &ch, &n, &cur), -ESTALE);
	assert_int_equal(ds_changes_since(f->ds, c0 - 1, &ch, &n, &cur), -ESTALE);
	reopen(f);
	assert_int_equal(ds_changes_since(f->ds, c0, &ch, &n, &cur), -ESTALE);
	assert_null(ch);
	assert_int_equal(ds_changes_since(f->ds, cur, &ch, &n, &cur), 0);
	entry_free(e);
	entry_free(dup);
	agent_record_free(a);
}

/* The journal keeps the last DS_JOURNAL_CAP changes (datastore.c's ring: SQLite's journal). */
static void change_journal_cap(void **state)
{
	(void)state;
	if (pg_connstr)
		skip();
	struct ds_change *ch = NULL;
	size_t n = 0;
	int64_t cur = -1;
	char err[256] = "";
	struct agent_record *a = mk_agent("spiffe://" TD "/agent/join_token/abc");

	/* Older than DS_JOURNAL_CAP changes: unknown; the last DS_JOURNAL_CAP are still there.
	 * Thousands of commits: on tmpfs when there is one, as they would be slow on a disk. */
	char dir[64], path[128];
	snprintf(dir, sizeof(dir), "%s/lanyard-ds-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/server.db", dir);
	struct datastore *ds;
	assert_int_equal(datastore_open_sqlite(path, &ds, err, sizeof(err)), 0);
	int64_t c1 = ds_change_counter(ds);
	assert_int_equal(ds_agent_upsert(ds, a), 0);
	for (int i = 0; i < DS_JOURNAL_CAP; i++)
		assert_int_equal(ds_agent_set_banned(ds, a->spiffe_id, i % 2), 0);
	assert_int_equal(ds_changes_since(ds, c1, &ch, &n, &cur), -ESTALE);
	assert_int_equal(ds_changes_since(ds, c1 + 1, &ch, &n, &cur), 0);
	assert_int_equal(n, DS_JOURNAL_CAP);
	assert_int_equal(ch[n - 1].counter, cur);
	ds_change_array_free(ch, n);
	datastore_close(ds);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	agent_record_free(a);
}

/* PostgreSQL's change feed: a change whose transaction commits after a later one is a gap. The
 * follower waits for it a bounded time, then passes over it (the journal says -ESTALE: re-read
 * everything) and still delivers it when it commits late. */
static void change_feed_gap(void **state)
{
	struct fixture *f = *state;
	if (!pg_connstr)
		skip();
	char err[256] = "";
	struct ds_change *ch = NULL;
	size_t n = 0;
	int64_t cur = -1, c0 = ds_change_counter(f->ds);

	/* A transaction of "another server" takes a seq and stays open. */
	PGconn *other = PQconnectdb(pg_connstr);
	assert_int_equal(PQstatus(other), CONNECTION_OK);
	PGresult *r = PQexec(other, "BEGIN; INSERT INTO changes (kind, id, at) "
				    "VALUES (1, 'late-entry', 0)");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);

	/* Ours commits after it: returns once the follower passed over the gap. */
	struct entry *e = mk_entry("spiffe://" TD "/gap", "spiffe://" TD "/agent/a", "unix:uid:1",
				   NULL);
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	assert_int_equal(ds_changes_since(f->ds, c0, &ch, &n, &cur), -ESTALE);
	int64_t c1 = ds_change_counter(f->ds);
	assert_true(c1 >= c0 + 2); /* the hole, then our change */

	/* The late one commits: delivered like any change. */
	r = PQexec(other, "COMMIT");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(other);
	bool seen = false;
	for (int i = 0; i < 100 && !seen; i++) {
		assert_int_equal(ds_changes_since(f->ds, c1, &ch, &n, &cur), 0);
		for (size_t k = 0; k < n; k++)
			seen |= strcmp(ch[k].id, "late-entry") == 0 && ch[k].kind == DS_CHANGE_ENTRY;
		ds_change_array_free(ch, n);
		usleep(50 * 1000);
	}
	assert_true(seen);

	/* Another server's change reaches this journal without any call here. */
	int64_t c2 = ds_change_counter(f->ds);
	pg_sql("INSERT INTO changes (kind, id, at) VALUES (2, 'spiffe://" TD "/agent/b', 0)");
	seen = false;
	for (int i = 0; i < 100 && !seen; i++) {
		assert_int_equal(ds_changes_since(f->ds, c2, &ch, &n, &cur), 0);
		for (size_t k = 0; k < n; k++)
			seen |= ch[k].kind == DS_CHANGE_AGENT;
		ds_change_array_free(ch, n);
		usleep(50 * 1000);
	}
	assert_true(seen);
	entry_free(e);
}


/* A SQLite datastore in dir with two entries, a banned agent, two tokens, an authority and the
 * bundle sequence, closed; returns its path in path. */
static struct fed_bundle *mk_fed(const char *td, int64_t seq, enum fed_bundle_source src,
				 bool with_jwt);

static void make_source(const char *dir, char *path, size_t len)
{
	char err[256];
	struct datastore *src = NULL;
	snprintf(path, len, "%s/source.sqlite3", dir);
	assert_int_equal(datastore_open_sqlite(path, &src, err, sizeof(err)), 0);
	struct entry *e1 = mk_entry("spiffe://" TD "/w1", "spiffe://" TD "/agent", "unix:uid:1", NULL);
	struct entry *e2 = mk_entry("spiffe://" TD "/w2", "spiffe://" TD "/agent", "unix:uid:2",
				    "unix:gid:2");
	e2->hint = xstrdup("h");
	e2->x509_svid_ttl = 60;
	e2->federates_with = xcalloc(1, sizeof(char *));
	e2->federates_with[0] = xstrdup("two.test");
	e2->n_federates_with = 1;
	assert_int_equal(ds_entry_create(src, e1, err, sizeof(err)), 0);
	assert_int_equal(ds_entry_create(src, e2, err, sizeof(err)), 0);
	struct agent_record *a = mk_agent("spiffe://" TD "/agent");
	a->banned = true;
	assert_int_equal(ds_agent_upsert(src, a), 0);
	assert_int_equal(ds_token_create(src, "copy-tok-1", "spiffe://" TD "/node/x", 0), 0);
	assert_int_equal(ds_token_create(src, "copy-tok-2", NULL, now_unix() + 600), 0);
	struct ca_record r = {.state = CA_STATE_ACTIVE, .not_before = 10, .not_after = 4000000000LL,
			      .created_at = 10};
	uint8_t der[3] = {0x30, 0x01, 0x00};
	snprintf(r.id, sizeof(r.id), "authority-1");
	r.cert_der = der;
	r.cert_len = sizeof(der);
	assert_int_equal(ds_ca_put(src, &r), 0);
	assert_int_equal(ds_kv_set_int(src, "bundle_sequence", 7), 0);
	struct fed_bundle *fb = mk_fed("two.test", 3, FED_SOURCE_ENDPOINT, true);
	assert_int_equal(ds_fed_bundle_put(src, fb, err, sizeof(err)), 0);
	fed_bundle_free(fb);
	struct fed_relationship rel = {
		.trust_domain = "two.test",
		.bundle_endpoint_url = "https://127.0.0.1:1/",
		.endpoint_spiffe_id = "spiffe://two.test/lanyard/server",
	};
	assert_int_equal(ds_fed_rel_put(src, &rel, true, err, sizeof(err)), 0);
	entry_free(e1);
	entry_free(e2);
	agent_record_free(a);
	datastore_close(src);
}

/* datastore migrate's two halves: the read-only snapshot of a SQLite file, and its import
 * (PostgreSQL only: one transaction, refusing a non-empty target unless forced, and live
 * servers). */
static void snapshot_copy(void **state)
{
	struct fixture *f = *state;
	char path[192], err[512] = "";
	make_source(f->dir, path, sizeof(path));
	struct datastore *src = NULL;
	struct ds_snapshot snap;
	assert_int_equal(datastore_open_sqlite_readonly(path, &src, err, sizeof(err)), 0);
	assert_int_equal(ds_snapshot_read(src, &snap), 0);
	datastore_close(src);
	assert_int_equal(snap.n_entries, 2);
	assert_int_equal(snap.n_agents, 1);
	assert_int_equal(snap.n_tokens, 2);
	assert_int_equal(snap.n_cas, 1);
	assert_int_equal(snap.n_fed_bundles, 1);
	assert_int_equal(snap.n_fed_rels, 1);
	assert_true(snap.has_bundle_sequence);
	if (!pg_connstr) {
		assert_int_equal(ds_snapshot_import(f->ds, &snap, false, err, sizeof(err)), -ENOTSUP);
		ds_snapshot_free(&snap);
		return;
	}
	assert_int_equal(ds_snapshot_import(f->ds, &snap, false, err, sizeof(err)), 0);
	struct entry **v = NULL;
	size_t n = 0;
	assert_int_equal(ds_entry_list(f->ds, NULL, &v, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(v[i]->id, snap.entries[i]->id);
		assert_int_equal(v[i]->revision, snap.entries[i]->revision);
		assert_int_equal(v[i]->created_at, snap.entries[i]->created_at);
	}
	const struct entry *w2 = strcmp(v[0]->spiffe_id, "spiffe://" TD "/w2") == 0 ? v[0] : v[1];
	assert_non_null(w2->hint);
	assert_string_equal(w2->hint, "h");
	assert_int_equal(w2->n_selectors, 2);
	assert_int_equal(w2->x509_svid_ttl, 60);
	assert_int_equal(w2->n_federates_with, 1);
	assert_string_equal(w2->federates_with[0], "two.test");
	entry_array_free(v, n);
	/* Federation moves too: the bundle (sequence, authorities, JWT keys) and the relationship. */
	struct fed_bundle *fb = NULL;
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &fb), 0);
	assert_int_equal(fb->sequence, 3);
	assert_int_equal(fb->source, FED_SOURCE_ENDPOINT);
	assert_int_equal(fb->x509_len, snap.fed_bundles[0]->x509_len);
	assert_memory_equal(fb->x509, snap.fed_bundles[0]->x509, fb->x509_len);
	assert_non_null(fb->jwt);
	fed_bundle_free(fb);
	struct fed_relationship *rel = NULL;
	assert_int_equal(ds_fed_rel_get(f->ds, "two.test", &rel), 0);
	assert_string_equal(rel->endpoint_spiffe_id, "spiffe://two.test/lanyard/server");
	fed_relationship_free(rel);
	/* New revisions go on past the copied ones. */
	struct entry *e3 = mk_entry("spiffe://" TD "/w3", "spiffe://" TD "/agent", "unix:uid:3", NULL);
	assert_int_equal(ds_entry_create(f->ds, e3, err, sizeof(err)), 0);
	assert_true(e3->revision > snap.entries[0]->revision);
	assert_true(e3->revision > snap.entries[1]->revision);
	entry_free(e3);
	struct agent_record *a = NULL;
	assert_int_equal(ds_agent_get(f->ds, "spiffe://" TD "/agent", &a), 0);
	assert_true(a->banned);
	assert_string_equal(a->serial, "01ab");
	agent_record_free(a);
	char *alias = NULL;
	assert_int_equal(ds_token_consume(f->ds, "copy-tok-1", now_unix(), &alias), 0);
	assert_string_equal(alias, "spiffe://" TD "/node/x");
	free(alias);
	int64_t seq = 0;
	assert_int_equal(ds_kv_get_int(f->ds, "bundle_sequence", &seq), 0);
	assert_int_equal(seq, 7);

	/* Not empty now: refused, with what it holds; --force replaces it. */
	assert_int_equal(ds_snapshot_import(f->ds, &snap, false, err, sizeof(err)), -ENOTEMPTY);
	assert_non_null(strstr(err, "3 entries"));
	assert_int_equal(ds_snapshot_import(f->ds, &snap, true, err, sizeof(err)), 0);
	struct ds_token_record *t = NULL;
	assert_int_equal(ds_token_list(f->ds, &t, &n), 0);
	assert_int_equal(n, 2);
	ds_token_record_array_free(t, n);
	/* A live server on the target: refused even with force. */
	struct server_record me = {.id = "srv", .address = "127.0.0.1:1", .version = "t"};
	assert_int_equal(ds_server_heartbeat(f->ds, &me), 0);
	assert_int_equal(ds_snapshot_import(f->ds, &snap, true, err, sizeof(err)), -EBUSY);
	ds_snapshot_free(&snap);
	unlink(path);
}

/* A missing file, a non-database and a file without the schema: clear errors naming it. */
static void snapshot_source_errors(void **state)
{
	struct fixture *f = *state;
	char path[192], err[512] = "";
	struct datastore *src = NULL;
	snprintf(path, sizeof(path), "%s/missing.sqlite3", f->dir);
	assert_true(datastore_open_sqlite_readonly(path, &src, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, path));
	assert_int_equal(datastore_open_sqlite_readonly(f->dir, &src, err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "%s/junk", f->dir);
	assert_int_equal(file_write_atomic(path, "not a database at all, just text", 32, 0600), 0);
	assert_int_equal(datastore_open_sqlite_readonly(path, &src, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, path));
	assert_null(src);
	unlink(path);
}

/* Every call is timed per operation kind. */
static void stats_count_operations(void **state)
{
	struct fixture *f = *state;
	struct ds_stats st;
	int64_t n;
	ds_stats_get(f->ds, &st);
	uint64_t before = st.op[DS_OP_ENTRY_COUNT].count;
	assert_int_equal(ds_entry_count(f->ds, &n), 0);
	assert_int_equal(ds_agent_get(f->ds, "spiffe://" TD "/nobody", &(struct agent_record *){0}),
			 -ENOENT);
	ds_stats_get(f->ds, &st);
	assert_int_equal(st.op[DS_OP_ENTRY_COUNT].count, before + 1);
	assert_true(st.op[DS_OP_ENTRY_COUNT].le[DS_LATENCY_BUCKETS - 1] <= before + 1);
	assert_int_equal(st.op[DS_OP_AGENT_GET].count, 1);
	assert_int_equal(st.op_errors[DS_OP_AGENT_GET], 0); /* not found is not an error */
	assert_int_equal(st.has_feed, pg_connstr != NULL);
	assert_string_equal(ds_op_names[DS_OP_KV_GET_INT], "kv_get");
}

static void *consume_thread(void *arg)
{
	struct race *r = arg;
	if (ds_token_consume(r->ds, "race-token", now_unix(), NULL) == 0)
		r->ok = 1;
	return NULL;
}

static void token_consumed_once_across_threads(void **state)
{
	struct fixture *f = *state;
	struct race r[8];
	pthread_t t[8];
	assert_int_equal(ds_token_create(f->ds, "race-token", NULL, now_unix() + 600), 0);
	for (int i = 0; i < 8; i++) {
		r[i] = (struct race){ .ds = f->ds };
		assert_int_equal(pthread_create(&t[i], NULL, consume_thread, &r[i]), 0);
	}
	int wins = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		wins += r[i].ok;
	}
	assert_int_equal(wins, 1);
}

/* A bundle of td with one fresh self-signed CA and, when with_jwt, one JWT key. */
static struct fed_bundle *mk_fed(const char *td, int64_t seq, enum fed_bundle_source src,
				 bool with_jwt)
{
	lkey *k;
	int64_t now = now_unix();
	char id[300];
	snprintf(id, sizeof(id), "spiffe://%s", td);
	struct x509_ca_params cp = {.spiffe_id = id, .common_name = "fed CA",
				    .not_before = now - 60, .not_after = now + 86400};
	struct fed_bundle *b = calloc(1, sizeof(*b));
	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(x509_make_ca(k, NULL, NULL, 0, &cp, &b->x509, &b->x509_len), 0);
	if (with_jwt) {
		uint8_t *spki;
		size_t spki_len;
		assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
		b->jwt = jwks_new();
		assert_int_equal(jwks_add(b->jwt, "kid-1", spki, spki_len), 0);
		free(spki);
	}
	lkey_free(k);
	b->trust_domain = strdup(td);
	b->sequence = seq;
	b->source = src;
	return b;
}

/* Put, get, list, delete; the sequence rule; every change journaled under its trust domain. */
/* Federation relationships: create, a second create refused, update, invalid refused, list,
 * delete. */
static void fed_relationships(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct fed_relationship r = {
		.trust_domain = "two.test",
		.bundle_endpoint_url = "https://127.0.0.1:1/",
		.endpoint_spiffe_id = "spiffe://two.test/lanyard/server",
	};
	assert_int_equal(ds_fed_rel_put(f->ds, &r, true, err, sizeof(err)), 0);
	assert_int_equal(ds_fed_rel_put(f->ds, &r, true, err, sizeof(err)), -EEXIST);
	r.bundle_endpoint_url = "https://127.0.0.1:2/";
	assert_int_equal(ds_fed_rel_put(f->ds, &r, false, err, sizeof(err)), 0);
	struct fed_relationship *got = NULL;
	assert_int_equal(ds_fed_rel_get(f->ds, "two.test", &got), 0);
	assert_string_equal(got->bundle_endpoint_url, "https://127.0.0.1:2/");
	assert_string_equal(got->endpoint_spiffe_id, "spiffe://two.test/lanyard/server");
	fed_relationship_free(got);
	struct fed_relationship bad = r;
	bad.trust_domain = "three.test"; /* the endpoint ID is of two.test */
	assert_int_equal(ds_fed_rel_put(f->ds, &bad, true, err, sizeof(err)), -EINVAL);
	bad.endpoint_spiffe_id = "spiffe://three.test/x";
	assert_int_equal(ds_fed_rel_put(f->ds, &bad, false, err, sizeof(err)), -ENOENT);
	struct fed_relationship **v = NULL;
	size_t n = 0;
	assert_int_equal(ds_fed_rel_list(f->ds, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0]->trust_domain, "two.test");
	fed_relationship_array_free(v, n);
	assert_int_equal(ds_fed_rel_delete(f->ds, "two.test"), 0);
	assert_int_equal(ds_fed_rel_delete(f->ds, "two.test"), -ENOENT);
	assert_int_equal(ds_fed_rel_get(f->ds, "two.test", &got), -ENOENT);
}

static void fed_bundles(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct fed_bundle *got = NULL, **all = NULL;
	size_t n = 0;
	int64_t c0 = ds_change_counter(f->ds);

	struct fed_bundle *b = mk_fed("two.test", 5, FED_SOURCE_ENDPOINT, true);
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &got), -ENOENT);
	assert_int_equal(ds_fed_bundle_put(f->ds, b, err, sizeof(err)), 0);
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &got), 0);
	assert_string_equal(got->trust_domain, "two.test");
	assert_int_equal(got->sequence, 5);
	assert_int_equal(got->source, FED_SOURCE_ENDPOINT);
	assert_true(got->refreshed_at >= now_unix() - 5);
	assert_int_equal(got->x509_len, b->x509_len);
	assert_memory_equal(got->x509, b->x509, b->x509_len);
	assert_int_equal(jwks_count(got->jwt), 1);
	size_t l1, l2;
	assert_non_null(jwks_find(got->jwt, "kid-1", &l1));
	jwks_find(b->jwt, "kid-1", &l2);
	assert_int_equal(l1, l2);
	fed_bundle_free(got);

	/* A fetched bundle older than the stored one is refused and changes nothing. */
	struct fed_bundle *old = mk_fed("two.test", 4, FED_SOURCE_ENDPOINT, false);
	assert_int_equal(ds_fed_bundle_put(f->ds, old, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "older"));
	assert_non_null(strstr(err, "(5)"));
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &got), 0);
	assert_int_equal(got->sequence, 5);
	assert_int_equal(jwks_count(got->jwt), 1);
	fed_bundle_free(got);
	/* The same sequence refreshes; an operator's bundle always replaces. */
	b->refreshed_at = 1000;
	assert_int_equal(ds_fed_bundle_put(f->ds, b, err, sizeof(err)), 0);
	old->source = FED_SOURCE_MANUAL;
	assert_int_equal(ds_fed_bundle_put(f->ds, old, err, sizeof(err)), 0);
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &got), 0);
	assert_int_equal(got->sequence, 4);
	assert_int_equal(got->source, FED_SOURCE_MANUAL);
	assert_null(got->jwt);
	assert_memory_equal(got->x509, old->x509, old->x509_len);
	fed_bundle_free(got);

	/* Invalid bundles never reach the database. */
	struct fed_bundle *bad = mk_fed("three.test", 1, FED_SOURCE_MANUAL, false);
	free(bad->trust_domain);
	bad->trust_domain = strdup("Bad_TD");
	assert_int_equal(ds_fed_bundle_put(f->ds, bad, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "Bad_TD"));
	free(bad->trust_domain);
	bad->trust_domain = strdup("three.test");
	bad->x509[bad->x509_len / 2] ^= 0x55; /* no longer a certificate */
	bad->x509_len -= 3;
	assert_int_equal(ds_fed_bundle_put(f->ds, bad, err, sizeof(err)), -EINVAL);

	struct fed_bundle *other = mk_fed("a.test", 0, FED_SOURCE_MANUAL, false);
	assert_int_equal(ds_fed_bundle_put(f->ds, other, err, sizeof(err)), 0);
	assert_int_equal(ds_fed_bundle_list(f->ds, &all, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0]->trust_domain, "a.test");
	assert_string_equal(all[1]->trust_domain, "two.test");
	fed_bundle_array_free(all, n);

	assert_int_equal(ds_fed_bundle_delete(f->ds, "two.test"), 0);
	assert_int_equal(ds_fed_bundle_delete(f->ds, "two.test"), -ENOENT);
	assert_int_equal(ds_fed_bundle_get(f->ds, "two.test", &got), -ENOENT);

	/* Journal: put, put (same seq), manual put, put a.test, delete; refusals are not there. */
	struct ds_change *ch = NULL;
	int64_t cur = -1;
	assert_int_equal(ds_changes_since(f->ds, c0, &ch, &n, &cur), 0);
	assert_int_equal(n, 5);
	const char *ids[] = {"two.test", "two.test", "two.test", "a.test", "two.test"};
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ch[i].kind, DS_CHANGE_FED_BUNDLE);
		assert_string_equal(ch[i].id, ids[i]);
	}
	ds_change_array_free(ch, n);

	/* Kept across a reopen. */
	reopen(f);
	assert_int_equal(ds_fed_bundle_get(f->ds, "a.test", &got), 0);
	assert_int_equal(got->x509_len, other->x509_len);
	fed_bundle_free(got);
	fed_bundle_free(b);
	fed_bundle_free(old);
	fed_bundle_free(bad);
	fed_bundle_free(other);
}

/* federates_with is stored sorted and unique, replaced on update, cleared with an empty list. */
static void entry_federates_with(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	struct entry *e = mk_entry("spiffe://" TD "/fed", "spiffe://" TD "/agent/1", "unix:uid:1", NULL);
	e->n_federates_with = 3;
	e->federates_with = xcalloc(3, sizeof(char *));
	e->federates_with[0] = xstrdup("two.test");
	e->federates_with[1] = xstrdup("a.test");
	e->federates_with[2] = xstrdup("two.test");
	assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
	struct entry *got = NULL;
	assert_int_equal(ds_entry_get(f->ds, e->id, &got), 0);
	assert_int_equal(got->n_federates_with, 2);
	assert_string_equal(got->federates_with[0], "a.test");
	assert_string_equal(got->federates_with[1], "two.test");
	/* Update: the stored list is replaced, then cleared. */
	free(got->federates_with[0]);
	got->federates_with[0] = xstrdup("three.test");
	assert_int_equal(ds_entry_update(f->ds, got, err, sizeof(err)), 0);
	struct entry *again = NULL;
	assert_int_equal(ds_entry_get(f->ds, e->id, &again), 0);
	assert_int_equal(again->n_federates_with, 2);
	assert_string_equal(again->federates_with[0], "three.test");
	entry_free(again);
	strv_free(got->federates_with, got->n_federates_with);
	got->federates_with = NULL;
	got->n_federates_with = 0;
	assert_int_equal(ds_entry_update(f->ds, got, err, sizeof(err)), 0);
	struct entry **all = NULL;
	size_t n = 0;
	assert_int_equal(ds_entry_list(f->ds, NULL, &all, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(all[0]->n_federates_with, 0);
	entry_array_free(all, n);
	entry_free(got);
	entry_free(e);
}

struct fed_race {
	struct datastore *ds;
	struct fed_bundle *b;
	int ret;
};

static void *fed_put_thread(void *arg)
{
	struct fed_race *r = arg;
	r->ret = ds_fed_bundle_put(r->ds, r->b, NULL, 0);
	return NULL;
}

/* Fetchers racing with different sequences: whatever the order, the highest one is what stays. */
static void fed_bundle_put_race(void **state)
{
	struct fixture *f = *state;
	struct fed_race r[6];
	pthread_t t[6];
	for (int i = 0; i < 6; i++) {
		r[i] = (struct fed_race){.ds = f->ds,
					 .b = mk_fed("race.test", 10 + i, FED_SOURCE_ENDPOINT, false)};
		assert_int_equal(pthread_create(&t[i], NULL, fed_put_thread, &r[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_true(r[i].ret == 0 || r[i].ret == -ESTALE);
	}
	struct fed_bundle *got = NULL;
	assert_int_equal(ds_fed_bundle_get(f->ds, "race.test", &got), 0);
	assert_int_equal(got->sequence, 15);
	assert_int_equal(r[5].ret, 0);
	assert_memory_equal(got->x509, r[5].b->x509, r[5].b->x509_len);
	fed_bundle_free(got);
	for (int i = 0; i < 6; i++)
		fed_bundle_free(r[i].b);
}

/* n entries for batches: spiffe://TD/w/<i>, selector unix:uid:<i>, and tag:third on every third. */
static struct entry **mk_batch(size_t n, size_t first)
{
	struct entry **v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		char id[64], sel[32];
		snprintf(id, sizeof(id), "spiffe://" TD "/w/%zu", first + i);
		snprintf(sel, sizeof(sel), "unix:uid:%zu", first + i);
		v[i] = mk_entry(id, "spiffe://" TD "/agent/1", sel,
				(first + i) % 3 == 0 ? "tag:third" : NULL);
	}
	return v;
}

static void entry_batch_all_or_nothing(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	size_t failed = 0;
	int64_t cnt = -1, c0 = ds_change_counter(f->ds);
	struct entry **v = mk_batch(3, 0);

	assert_int_equal(ds_entry_create_batch(f->ds, v, 3, &failed, err, sizeof(err)), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(strlen(v[i]->id), 36);
		assert_true(v[i]->created_at > 0);
		if (i)
			assert_true(v[i]->revision > v[i - 1]->revision);
	}
	assert_int_equal(ds_entry_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 3);
	/* One journal record per entry, as if created one by one. */
	struct ds_change *ch = NULL;
	size_t n = 0;
	int64_t cur = -1;
	assert_int_equal(ds_changes_since(f->ds, c0, &ch, &n, &cur), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ch[i].kind, DS_CHANGE_ENTRY);
		assert_string_equal(ch[i].id, v[i]->id);
	}
	ds_change_array_free(ch, n);

	/* A duplicate of a stored entry at index 1: nothing of the batch is stored. */
	struct entry **w = mk_batch(2, 10);
	entry_free(w[1]);
	w[1] = mk_entry(v[2]->spiffe_id, v[2]->parent_id, v[2]->selectors[0],
			v[2]->n_selectors > 1 ? v[2]->selectors[1] : NULL);
	int64_t before = ds_change_counter(f->ds);
	assert_int_equal(ds_entry_create_batch(f->ds, w, 2, &failed, err, sizeof(err)), -EEXIST);
	assert_int_equal(failed, 1);
	assert_non_null(strstr(err, "already exists"));
	assert_string_equal(w[0]->id, "");
	assert_int_equal(w[0]->created_at, 0);
	assert_int_equal(ds_entry_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 3);
	assert_int_equal(ds_change_counter(f->ds), before);

	/* Two equal entries within one batch: the second is refused. */
	entry_free(w[1]);
	w[1] = entry_dup(w[0]);
	assert_int_equal(ds_entry_create_batch(f->ds, w, 2, &failed, err, sizeof(err)), -EEXIST);
	assert_int_equal(failed, 1);
	assert_int_equal(ds_entry_count(f->ds, &cnt), 0);
	assert_int_equal(cnt, 3);
	entry_array_free(w, 2);
	entry_array_free(v, 3);
}

/* Reads every page of at most page entries matching fl; checks the order; returns the count. */
static size_t read_pages(struct datastore *ds, struct entry_filter fl, size_t page)
{
	int64_t last_created = INT64_MIN;
	char last_id[37] = "";
	size_t total = 0;
	for (int guard = 0; guard < 100000; guard++) {
		struct entry **out = NULL;
		size_t n = 0;
		fl.limit = page;
		assert_int_equal(ds_entry_list(ds, &fl, &out, &n), 0);
		assert_true(n <= page);
		for (size_t i = 0; i < n; i++) {
			/* Strictly after the previous entry, across pages too. */
			assert_true(out[i]->created_at > last_created ||
				    (out[i]->created_at == last_created &&
				     strcmp(out[i]->id, last_id) > 0));
			last_created = out[i]->created_at;
			snprintf(last_id, sizeof(last_id), "%s", out[i]->id);
		}
		total += n;
		entry_array_free(out, n);
		if (n < page)
			return total;
		fl.after_created_at = last_created;
		fl.after_id = last_id;
	}
	fail_msg("pages never ended");
	return 0;
}

static void entry_pages(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	size_t failed = 0;
	/* A few entries created "earlier" one by one, then 1100 in one batch (one created_at): the
	 * order is by creation time, then by id. */
	for (int i = 0; i < 4; i++) {
		char id[64];
		snprintf(id, sizeof(id), "spiffe://" TD "/old/%d", i);
		struct entry *e = mk_entry(id, "spiffe://" TD "/agent/2", "unix:uid:0", NULL);
		e->created_at = 5000 - i;
		assert_int_equal(ds_entry_create(f->ds, e, err, sizeof(err)), 0);
		entry_free(e);
	}
	struct entry **v = mk_batch(1100, 0);
	assert_int_equal(ds_entry_create_batch(f->ds, v, 1100, &failed, err, sizeof(err)), 0);

	struct entry_filter all = { 0 };
	assert_int_equal(read_pages(f->ds, all, 100), 1104);
	assert_int_equal(read_pages(f->ds, all, 1104), 1104);
	assert_int_equal(read_pages(f->ds, all, 7), 1104);

	struct entry **out = NULL;
	size_t n = 0;
	all.limit = 2;
	assert_int_equal(ds_entry_list(f->ds, &all, &out, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0]->created_at, 4997);
	assert_int_equal(out[1]->created_at, 4998);
	entry_array_free(out, n);

	/* Selector filters are matched after reading: pages still fill up (PostgreSQL reads in
	 * chunks), and 367 of the 1100 carry tag:third. */
	const char *const third[] = { "tag:third" };
	struct entry_filter sel = { .selectors = third, .n_selectors = 1 };
	assert_int_equal(read_pages(f->ds, sel, 50), 367);
	assert_int_equal(read_pages(f->ds, sel, 1000), 367);
	struct entry_filter par = { .parent_id = "spiffe://" TD "/agent/2" };
	assert_int_equal(read_pages(f->ds, par, 3), 4);

	/* A page may start after an entry deleted since. */
	struct entry_filter after = { .after_created_at = v[500]->created_at, .after_id = v[500]->id,
				      .limit = 1 };
	assert_int_equal(ds_entry_list(f->ds, &after, &out, &n), 0);
	assert_int_equal(n, 1);
	char next_id[37];
	snprintf(next_id, sizeof(next_id), "%s", out[0]->id);
	entry_array_free(out, n);
	assert_int_equal(ds_entry_delete(f->ds, v[500]->id), 0);
	assert_int_equal(ds_entry_list(f->ds, &after, &out, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0]->id, next_id);
	entry_array_free(out, n);
	entry_array_free(v, 1100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(open_creates_private_file, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_duplicates_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_batch_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(revisions_increase, setup, teardown),
		cmocka_unit_test_setup_teardown(tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(tokens_stored_hashed, setup, teardown),
		cmocka_unit_test_setup_teardown(agents, setup, teardown),
		cmocka_unit_test_setup_teardown(ca_records, setup, teardown),
		cmocka_unit_test_setup_teardown(ca_state_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(kv, setup, teardown),
		cmocka_unit_test_setup_teardown(managed_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(leases, setup, teardown),
		cmocka_unit_test_setup_teardown(reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(token_consumed_once_across_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(change_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(change_feed_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_source_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(stats_count_operations, setup, teardown),
		cmocka_unit_test_setup_teardown(fed_relationships, setup, teardown),
		cmocka_unit_test_setup_teardown(fed_bundles, setup, teardown),
		cmocka_unit_test_setup_teardown(entry_federates_with, setup, teardown),
		cmocka_unit_test_setup_teardown(fed_bundle_put_race, setup, teardown),
		cmocka_unit_test(change_journal_cap),
		cmocka_unit_test(bad_path_reported),
	};
	pg_connstr = getenv("LANYARD_TEST_PG_CONNSTR");
	if (pg_connstr && !*pg_connstr)
		pg_connstr = NULL;
	fprintf(stderr, "datastore backend under test: %s\n", pg_connstr ? "postgres" : "sqlite");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
