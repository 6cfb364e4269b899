/* datastore_pg_import.c: writes a whole datastore (struct ds_snapshot, read from another server's
 * SQLite file) into the PostgreSQL database, for `lanyard-server datastore migrate`.
 *
 * Everything happens in one transaction on a pooled connection: the tables are locked against
 * writers, checked empty (or emptied, with force), filled row by row with the source's ids,
 * revisions and timestamps, and counted again before the commit, so that a copy is complete or
 * absent. Servers live on the database are refused: a server running during the copy could
 * write rows the copy deletes (its own authorities, say). Two rows in the change feed make any
 * server that follows it later re-read everything and its bundle.
 *
 * Called on the command's main thread; no row value is ever logged (join token hashes, serials). */
#include "datastore_pg.h"

#include <errno.h>
#include <string.h>

#include "fed_relationship.h"
#include "log.h"
#include "util.h"

/* The tables a copy fills; kv and the feed are handled apart. */
static const struct {
	const char *table, *what;
} tables[] = {
	{"entries", "entries"},
	{"agents", "agents"},
	{"join_tokens", "join tokens"},
	{"ca_authorities", "CA authorities"},
	{"fed_bundles", "federated bundles"},
	{"federation_relationships", "federation relationships"},
};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

struct import {
	const struct ds_snapshot *s;
	bool force;
	char *err;
	size_t errlen;
};

static int count_sql(struct pg *p, struct pgc *c, const char *sql, const struct params *pa,
		     int64_t *n)
{
	PGresult *r;
	int ret = pg_exec(p, c, sql, pa, &r);
	if (ret < 0)
		return ret;
	*n = pq_dyn.ntuples(r) == 1 ? r_int(r, 0, 0) : -1;
	pq_dyn.clear(r);
	return 0;
}

static int count_tables(struct pg *p, struct pgc *c, int64_t n[N_TABLES])
{
	for (size_t i = 0; i < N_TABLES; i++) {
		char sql[96];
		snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tables[i].table);
		int ret = count_sql(p, c, sql, NULL, &n[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void describe_counts(const int64_t n[N_TABLES], char *out, size_t len)
{
	size_t w = 0;
	out[0] = '\0';
	for (size_t i = 0; i < N_TABLES && w < len; i++) {
		int k = snprintf(out + w, len - w, "%s%lld %s", i ? ", " : "", (long long)n[i],
				 tables[i].what);
		if (k > 0)
			w += (size_t)k;
	}
}

/* Refuses live servers, then a non-empty target unless force (which empties it). */
static int check_target(struct pg *p, struct pgc *c, struct import *im)
{
	struct params pa = {0};
	int64_t live = 0, n[N_TABLES];
	p_int(&pa, DS_SERVER_LIVE_S);
	int ret = count_sql(p, c, "SELECT COUNT(*) FROM servers WHERE last_seen >= " DB_NOW " - $1",
			    &pa, &live);
	if (ret < 0)
		return ret;
	if (live > 0) {
		snprintf(im->err, im->errlen, "%lld lanyard-server(s) are running on the target "
			 "database (see `lanyard-server server list`): stop them before copying into "
			 "it", (long long)live);
		return -EBUSY;
	}
	if ((ret = count_tables(p, c, n)) < 0)
		return ret;
	bool empty = true;
	for (size_t i = 0; i < N_TABLES; i++)
		empty &= n[i] == 0;
	if (empty)
		return 0;
	char what[256];
	describe_counts(n, what, sizeof(what));
	if (!im->force) {
		snprintf(im->err, im->errlen, "the target database is not empty (%s): refusing to "
			 "copy into it; --force replaces what it holds", what);
		return -ENOTEMPTY;
	}
	log_warnx("datastore migrate: --force: deleting what the target held (%s)", what);
	for (size_t i = 0; i < N_TABLES; i++) {
		char sql[96];
		snprintf(sql, sizeof(sql), "DELETE FROM %s", tables[i].table);
		if ((ret = pg_exec(p, c, sql, NULL, NULL)) < 0)
			return ret;
	}
	return 0;
}

static int put_entry(struct pg *p, struct pgc *c, const struct entry *e)
{
	char *sel = datastore_strv_to_text(e->selectors, e->n_selectors);
	char *dns = datastore_strv_to_text(e->dns_names, e->n_dns_names);
	char *fed = datastore_strv_to_text(e->federates_with, e->n_federates_with);
	struct params pa = {0};
	int ret = -ENOMEM;
	if (!sel || !dns || !fed)
		goto out;
	p_str(&pa, e->id);
	p_str(&pa, e->spiffe_id);
	p_str(&pa, e->parent_id);
	p_str(&pa, sel);
	p_int(&pa, e->x509_svid_ttl);
	p_int(&pa, e->jwt_svid_ttl);
	p_str(&pa, dns);
	p_str(&pa, e->hint);
	p_bool(&pa, e->admin);
	p_bool(&pa, e->downstream);
	p_int(&pa, e->expires_at);
	p_int(&pa, e->revision);
	p_int(&pa, e->created_at);
	p_str(&pa, fed);
	p_bool(&pa, e->managed);
	ret = pg_exec(p, c, "INSERT INTO entries (" ENTRY_COLS ") VALUES ($1, $2, $3, $4, $5, $6, "
		      "$7, $8, $9, $10, $11, $12, $13, $14, $15)", &pa, NULL);
out:
	free(sel);
	free(dns);
	free(fed);
	return ret;
}

static int put_agent(struct pg *p, struct pgc *c, const struct agent_record *a)
{
	struct params pa = {0};
	char *sel = NULL, *aliases = NULL;
	int ret = pg_agent_params(a, &pa, &sel, &aliases);
	if (ret == 0)
		ret = pg_exec(p, c, "INSERT INTO agents (" AGENT_COLS ") VALUES ($1, $2, $3, $4, $5, "
			      "$6, $7, $8, $9)", &pa, NULL);
	free(sel);
	free(aliases);
	return ret;
}

static int put_token(struct pg *p, struct pgc *c, const struct ds_token_record *t)
{
	struct params pa = {0};
	p_str(&pa, t->hash);
	p_str(&pa, t->alias);
	p_int(&pa, t->expires_at);
	return pg_exec(p, c, "INSERT INTO join_tokens (hash, alias, expires_at) VALUES ($1, $2, $3)",
		       &pa, NULL);
}

static int put_ca(struct pg *p, struct pgc *c, const struct ca_record *r)
{
	struct params pa = {0};
	pg_ca_params(r, &pa);
	return pg_exec(p, c, "INSERT INTO ca_authorities (" CA_COLS ") VALUES ($1, $2, $3, $4, $5, "
		       "$6, $7, $8)", &pa, NULL);
}

static int put_fed_bundle(struct pg *p, struct pgc *c, const struct fed_bundle *b)
{
	struct params pa = {0};
	char *jwt = NULL;
	if (pg_fed_bundle_params(b, &pa, &jwt) < 0)
		return -ENOMEM;
	int ret = pg_exec(p, c, "INSERT INTO fed_bundles (" FED_BUNDLE_COLS ") VALUES ($1, $2, $3, "
			  "$4, $5, $6, $7)", &pa, NULL);
	free(jwt);
	return ret;
}

/* A relationship as ds_fed_rel_put stores it: its JSON document, keys sorted. */
static int put_fed_rel(struct pg *p, struct pgc *c, const struct fed_relationship *r)
{
	json_t *j = fed_relationship_to_json(r);
	char *doc = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!doc)
		return -ENOMEM;
	struct params pa = {0};
	p_str(&pa, r->trust_domain);
	p_str(&pa, doc);
	int ret = pg_exec(p, c, "INSERT INTO federation_relationships (trust_domain, doc) VALUES "
			  "($1, $2)", &pa, NULL);
	free(doc);
	return ret;
}

static int put_rows(struct pg *p, struct pgc *c, const struct ds_snapshot *s)
{
	int ret = 0;
	for (size_t i = 0; ret == 0 && i < s->n_entries; i++)
		ret = put_entry(p, c, s->entries[i]);
	for (size_t i = 0; ret == 0 && i < s->n_agents; i++)
		ret = put_agent(p, c, s->agents[i]);
	for (size_t i = 0; ret == 0 && i < s->n_tokens; i++)
		ret = put_token(p, c, &s->tokens[i]);
	for (size_t i = 0; ret == 0 && i < s->n_cas; i++)
		ret = put_ca(p, c, s->cas[i]);
	for (size_t i = 0; ret == 0 && i < s->n_fed_bundles; i++)
		ret = put_fed_bundle(p, c, s->fed_bundles[i]);
	for (size_t i = 0; ret == 0 && i < s->n_fed_rels; i++)
		ret = put_fed_rel(p, c, s->fed_rels[i]);
	return ret;
}

/* The entry revision sequence past every copied revision (it never goes back), the bundle
 * sequence past the source's, and the feed told that everything changed. */
static int put_counters(struct pg *p, struct pgc *c, const struct ds_snapshot *s)
{
	int ret = pg_exec(p, c, "SELECT setval('entry_revision', GREATEST((SELECT COALESCE("
			  "MAX(revision), 1) FROM entries), (SELECT last_value FROM entry_revision)))",
			  NULL, NULL);
	if (ret == 0 && s->has_bundle_sequence) {
		struct params pa = {0};
		p_int(&pa, s->bundle_sequence);
		ret = pg_exec(p, c, "INSERT INTO kv (key, value) VALUES ('bundle_sequence', $1) "
			      "ON CONFLICT (key) DO UPDATE SET value = GREATEST(kv.value, "
			      "excluded.value)", &pa, NULL);
	}
	if (ret == 0) {
		/* Kind 0 is no kind: a follower re-reads everything. */
		struct params pa = {0};
		p_int(&pa, now_unix());
		ret = pg_exec(p, c, "INSERT INTO changes (kind, id, at) VALUES (0, 'migrate', $1), "
			      "(3, 'migrate', $1)", &pa, NULL);
	}
	if (ret == 0)
		ret = pg_exec(p, c, "SELECT pg_notify('" PG_FEED_CHANNEL "', '')", NULL, NULL);
	return ret;
}

static int verify(struct pg *p, struct pgc *c, struct import *im)
{
	const struct ds_snapshot *s = im->s;
	const int64_t want[N_TABLES] = {(int64_t)s->n_entries, (int64_t)s->n_agents,
					(int64_t)s->n_tokens, (int64_t)s->n_cas,
					(int64_t)s->n_fed_bundles, (int64_t)s->n_fed_rels};
	int64_t got[N_TABLES];
	int ret = count_tables(p, c, got);
	if (ret < 0)
		return ret;
	if (memcmp(want, got, sizeof(got)) == 0)
		return 0;
	char a[256], b[256];
	describe_counts(want, a, sizeof(a));
	describe_counts(got, b, sizeof(b));
	snprintf(im->err, im->errlen, "verification failed: copied %s but the target holds %s; "
		 "nothing was written", a, b);
	return -EIO;
}

static int import_body(struct pg *p, struct pgc *c, void *arg)
{
	struct import *im = arg;
	int ret = pg_exec(p, c, "LOCK TABLE entries, agents, join_tokens, ca_authorities, "
			  "fed_bundles, federation_relationships, kv IN EXCLUSIVE MODE", NULL, NULL);
	if (ret == 0)
		ret = check_target(p, c, im);
	if (ret == 0) {
		ret = put_rows(p, c, im->s);
		if (ret == -EEXIST)
			snprintf(im->err, im->errlen, "the source holds two rows the target "
				 "considers the same (a duplicate entry or key)");
	}
	if (ret == 0)
		ret = put_counters(p, c, im->s);
	if (ret == 0)
		ret = verify(p, c, im);
	return ret;
}

int pg_snapshot_import(struct datastore *ds, const struct ds_snapshot *s, bool force, char *err,
		       size_t errlen)
{
	struct import im = {.s = s, .force = force, .err = err, .errlen = errlen};
	err[0] = '\0';
	int ret = pg_with_tx((struct pg *)ds, import_body, &im);
	if (ret < 0 && !err[0])
		snprintf(err, errlen, "database error (see the log above)");
	return ret;
}
