/* datastore.h: the server's persistent state (registration entries, join tokens, attested agents,
 * CA metadata, small counters) behind a backend-neutral interface: an embedded SQLite file (one
 * server) or a PostgreSQL database shared by several servers. The functions below dispatch
 * through a vtable (datastore_backend.h).
 *
 * Thread-safety: a struct datastore may be used from several threads at once (the admin API's
 * thread, the node API's workers and the main loop). SQLite calls are serialised by an internal
 * mutex; PostgreSQL calls run in parallel on a pool of connections. Every change is one
 * transaction.
 *
 * Errors: 0 on success, negative errno values otherwise: -ENOENT (not found), -EEXIST
 * (duplicate), -EINVAL (bad argument), -ENOMEM, -EIO (database error; details are logged). */
#ifndef LANYARD_DATASTORE_H
#define LANYARD_DATASTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "entry.h"
#include "fed_bundle.h"
#include "fed_relationship.h"

struct datastore;

/* Opens (creating if needed) the database at path: WAL journal, busy timeout, foreign keys on,
 * schema migrated to the current version. The file is created 0600. */
int datastore_open_sqlite(const char *path, struct datastore **out, char *err, size_t errlen);
/* Opens an existing database file read-only (no schema migration, nothing written), to copy it:
 * -ENOENT and the like when path is missing or not a regular file, -EPROTO when it is not a
 * lanyard-server datastore of this version's schema; err names path. */
int datastore_open_sqlite_readonly(const char *path, struct datastore **out, char *err,
				   size_t errlen);
/* Opens a PostgreSQL database shared with other servers: conninfo is a libpq key/value string
 * or a postgresql:// URI (a password may also come from PGPASSWORD or a passfile), with at most
 * max_connections connections in the pool (plus one that follows the change feed). The schema is
 * migrated under an advisory lock, so servers starting together are safe. Errors (a bad string,
 * an unreachable server, failed authentication) in err never contain the password. */
int datastore_open_pg(const char *conninfo, int max_connections, struct datastore **out, char *err,
		      size_t errlen);
/* Checks a connection string without connecting: 0, or -EINVAL with the reason in err (never
 * quoting the string, which may hold a password), or -ENOENT when libpq cannot be loaded (the
 * first call loads it: pq_dyn.h; every path to a PostgreSQL datastore calls this first). safe (may be NULL) receives a description
 * without any secret, for logs: "host=... port=... dbname=... user=...". */
int datastore_pg_conninfo_check(const char *conninfo, char *safe, size_t safelen, char *err,
				size_t errlen);
/* Opens what a server's configuration names: database_type "sqlite" (datastore.sqlite3 in
 * data_dir) or "postgres" (conninfo, max_connections). err names the file or the key. */
int datastore_open_config(const char *type, const char *data_dir, const char *conninfo,
			  int max_connections, struct datastore **out, char *err, size_t errlen);
/* NULL-safe. No call may be running on ds. */
void datastore_close(struct datastore *ds);

/* hook(ud) is called, from a datastore thread, whenever changes made by any server (this one
 * included) have entered the change journal, so that the caller wakes up and reads them
 * (ds_changes_since). Only the PostgreSQL backend calls it: with SQLite, every change is made by
 * this process, which knows when it makes one. hook must be thread-safe (uv_async_send). */
void ds_set_change_hook(struct datastore *ds, void (*hook)(void *ud), void *ud);

/* ---- registration entries ---- */

/* Stores a new entry: fills e->id, e->revision and e->created_at (created_at kept when already
 * non-zero), normalises its selectors. An entry with the same spiffe_id, parent_id and selector
 * set is refused with -EEXIST and err "an entry with the same SPIFFE ID, parent ID and selectors
 * already exists (id <id>)". Does not validate: call entry_validate first. */
int ds_entry_create(struct datastore *ds, struct entry *e, char *err, size_t errlen);
/* Replaces the entry e->id (all members but created_at, which is kept and written back into e);
 * sets a new e->revision. -ENOENT if absent; -EEXIST as above when it would duplicate another. */
int ds_entry_update(struct datastore *ds, struct entry *e, char *err, size_t errlen);
/* -ENOENT if absent. */
int ds_entry_delete(struct datastore *ds, const char *id);
/* -ENOENT if absent; *out is the caller's. */
int ds_entry_get(struct datastore *ds, const char *id, struct entry **out);

/* NULL members match anything. selectors: entries whose selector set contains all of them.
 * A page: after_id (with after_created_at) starts the list after the entry with that
 * (created_at, id) key, which need not exist any more; limit > 0 stops it after that many
 * matching entries. The order is stable, so consecutive pages neither skip nor repeat entries
 * that existed throughout. */
struct entry_filter {
	const char *spiffe_id, *parent_id;
	const char *const *selectors;
	size_t n_selectors;
	int64_t after_created_at;
	const char *after_id;	/* NULL: from the first entry */
	size_t limit;		/* 0: no limit */
};
/* f may be NULL (all entries). Sorted by created_at then id. *out (possibly NULL when *n is 0) is
 * freed with entry_array_free. */
int ds_entry_list(struct datastore *ds, const struct entry_filter *f, struct entry ***out, size_t *n);
/* Stores n new entries in one transaction: all of them, or none. Each is handled as by
 * ds_entry_create (id, revision and created_at filled in). On failure, *failed is the index of the
 * entry refused (SIZE_MAX when no single entry is to blame), err says why, and the entries keep
 * no id. */
int ds_entry_create_batch(struct datastore *ds, struct entry **v, size_t n, size_t *failed,
			  char *err, size_t errlen);
/* Number of stored entries (expired ones included), without reading them. */
int ds_entry_count(struct datastore *ds, int64_t *n);

/* Grows on every change of an entry or an agent (and never goes down while the process runs):
 * the node API compares it with the value it last saw to know when to push. Returns < 0 only on a
 * database error. */
int64_t ds_change_counter(struct datastore *ds);

/* ---- change journal ----
 * Every change that moves the change counter (entry create/update/delete, agent upsert/delete/
 * ban, federated bundle put/delete) is also recorded, in memory, with the counter value it produced and what it touched, so
 * that a reader can bring a cached view up to date by re-reading only what changed. Renewals
 * (ds_agent_touch) are not recorded: they change no entitlement. The journal keeps the last
 * DS_JOURNAL_CAP changes of this process. With PostgreSQL the changes of every server are
 * journaled: they come from the database's change feed (datastore_pg.c), and a change made
 * through this process is in the journal when the call that made it returns. */
#define DS_JOURNAL_CAP 4096

/* DS_CHANGE_BUNDLE (PostgreSQL: an authority published or dropped, by any server) is never in
 * the journal: it moves ds_bundle_generation instead. */
enum ds_change_kind {
	DS_CHANGE_ENTRY = 1,
	DS_CHANGE_AGENT = 2,
	DS_CHANGE_BUNDLE = 3,
	DS_CHANGE_FED_BUNDLE = 4, /* a federated bundle put or deleted; id: its trust domain */
};

struct ds_change {
	int64_t counter;	/* the change counter's value right after this change */
	enum ds_change_kind kind;
	char *id;		/* the entry's id, the agent's SPIFFE ID, or a trust domain */
};

/* The changes made after the change counter had the value since, oldest first, and the counter's
 * current value in *counter (always set when it can be read). Returns 0, or -ESTALE when the
 * journal cannot account for every change since then (too old, or a change was not recorded):
 * the caller must then re-read everything it caches. *out is freed with ds_change_array_free. */
int ds_changes_since(struct datastore *ds, int64_t since, struct ds_change **out, size_t *n,
		     int64_t *counter);
void ds_change_array_free(struct ds_change *c, size_t n);
/* Grows whenever the change feed reports CA authorities published or dropped (by any server,
 * this one included), so the CA knows when to re-read the bundle (ca_sync). Always 0 with
 * SQLite. */
int64_t ds_bundle_generation(struct datastore *ds);

/* ---- federated bundles ----
 * The trust bundles of foreign trust domains (fed_bundle.h), at most one per trust domain: set
 * by an operator (bundle set) or fetched from a bundle endpoint. Every put and delete moves the
 * change counter and is journaled as DS_CHANGE_FED_BUNDLE with the trust domain as id (with
 * PostgreSQL through the shared change feed, so every server sees it), so the node API pushes
 * it to the agents whose entries federate with that trust domain. */

/* Stores b (copied) as the bundle of b->trust_domain, replacing the stored one, and sets
 * b->refreshed_at to now when it is 0. b is validated first (fed_bundle_validate: -EINVAL with
 * the reason in err). A bundle with b->source == FED_SOURCE_ENDPOINT whose sequence is lower
 * than the stored bundle's (whatever its source) is refused with -ESTALE (err says both
 * sequences) and nothing changes: a fetcher never goes back to an older version. An equal
 * sequence replaces (a refetch refreshes refreshed_at). A FED_SOURCE_MANUAL bundle always
 * replaces: the operator's word is final. The comparison and the write are one atomic step,
 * also between servers sharing a PostgreSQL database. err may be NULL. */
int ds_fed_bundle_put(struct datastore *ds, const struct fed_bundle *b, char *err, size_t errlen);
/* -ENOENT if absent; *out is the caller's. */
int ds_fed_bundle_get(struct datastore *ds, const char *trust_domain, struct fed_bundle **out);
/* Every stored bundle, sorted by trust domain; free with fed_bundle_array_free. */
int ds_fed_bundle_list(struct datastore *ds, struct fed_bundle ***out, size_t *n);
/* -ENOENT if absent. */
int ds_fed_bundle_delete(struct datastore *ds, const char *trust_domain);

/* ---- join tokens ----
 * Only the SHA-256 of a token (hex) is stored, never the token itself. */

/* -EEXIST if that token exists already. alias_spiffe_id may be NULL. expires_at is unix seconds
 * (0 = never); a token is expired once now >= expires_at. */
int ds_token_create(struct datastore *ds, const char *token, const char *alias_spiffe_id,
		    int64_t expires_at);
/* Atomically consumes a token: 0 and its alias (malloc'd; NULL when none) when it existed and had
 * not expired at now; -ENOENT when unknown or already used; -ETIMEDOUT when expired (it is consumed
 * anyway). alias_out may be NULL. */
int ds_token_consume(struct datastore *ds, const char *token, int64_t now, char **alias_out);
/* Number of tokens not expired at now. */
int ds_token_count(struct datastore *ds, int64_t now, int64_t *n);
/* Deletes tokens expired at now. */
int ds_token_prune(struct datastore *ds, int64_t now);

/* A join token as stored (the token's SHA-256, never the token), for copying a datastore. */
struct ds_token_record {
	char hash[65];
	char *alias; /* may be NULL */
	int64_t expires_at;
};
/* Every stored token, expired ones included, sorted by hash; *out is freed with
 * ds_token_record_array_free. */
int ds_token_list(struct datastore *ds, struct ds_token_record **out, size_t *n);
void ds_token_record_array_free(struct ds_token_record *t, size_t n);

/* ---- attested agents ---- */

struct agent_record {
	char *spiffe_id;
	char *attestor;		/* "join_token", "k8s_psat", ... */
	char **selectors;
	size_t n_selectors;
	char **aliases;		/* SPIFFE IDs the node is also known as (join token alias...) */
	size_t n_aliases;
	char *serial;		/* serial (hex) of the agent's current SVID; may be NULL */
	int64_t not_after;	/* of that SVID */
	int64_t created_at, last_seen;
	bool banned;
};

/* Inserts or replaces by spiffe_id (created_at kept when the agent existed; banned is taken from
 * a, so re-attesting a banned agent needs a check by the caller first). */
int ds_agent_upsert(struct datastore *ds, const struct agent_record *a);
/* -ENOENT if absent. */
int ds_agent_get(struct datastore *ds, const char *spiffe_id, struct agent_record **out);
/* For caching agent records: *gen changes whenever any agent record may have changed, so a
 * record read by ds_agent_get after *gen was taken is current while *gen stays the same. False
 * for a datastore shared with other servers (their changes do not pass here): read the record
 * every time. Any thread, no lock. */
bool ds_agent_generation(struct datastore *ds, uint64_t *gen);
/* Sorted by spiffe_id. */
int ds_agent_list(struct datastore *ds, struct agent_record ***out, size_t *n);
/* Number of attested agents (banned ones included), without reading them. */
int ds_agent_count(struct datastore *ds, int64_t *n);
/* Evicts: the agent must attest again. -ENOENT if absent. */
int ds_agent_delete(struct datastore *ds, const char *spiffe_id);
/* -ENOENT if absent. */
int ds_agent_set_banned(struct datastore *ds, const char *spiffe_id, bool banned);
/* Records a renewal (serial and not_after; serial may be NULL to keep it) and last_seen = now.
 * -ENOENT if absent. Does not move the change counter (a renewal changes no entitlement). */
int ds_agent_touch(struct datastore *ds, const char *spiffe_id, const char *serial,
		   int64_t not_after, int64_t now);
void agent_record_free(struct agent_record *a);
void agent_record_array_free(struct agent_record **a, size_t n);
/* {"spiffe_id","attestor","selectors":[...],"aliases":[...],"serial","not_after","created_at",
 *  "last_seen","banned"} */
json_t *agent_record_to_json(const struct agent_record *a);

/* ---- CA authorities ----
 * Private keys are NOT stored here (the CA module keeps them in files): metadata and certificate. */

enum { CA_STATE_PREPARED = 0, CA_STATE_ACTIVE = 1, CA_STATE_OLD = 2 };
/* Or'ed into ca_record.state: the operator tainted the authority (suspected key compromise);
 * agents re-issue what it signed and it may then be revoked (ca.h). */
#define CA_STATE_TAINTED 0x100

struct ca_record {
	char id[65];
	int state;		/* CA_STATE_*, | CA_STATE_TAINTED */
	uint8_t *cert_der;
	size_t cert_len;
	char *jwt_kid;		/* may be NULL */
	uint8_t *jwt_spki;	/* DER SubjectPublicKeyInfo of the JWT key; may be NULL */
	size_t jwt_spki_len;
	int64_t not_before, not_after, created_at;
};

/* Inserts a new authority's record, or replaces the stored one with the same id except that
 * a stored taint is never cleared and the stored state never moves back (prepared -> active ->
 * old): a write from a stale view (several servers on one datastore) loses nothing another
 * writer recorded. */
int ds_ca_put(struct datastore *ds, const struct ca_record *r);
/* An existing authority's state change: *state (CA_STATE_*, | CA_STATE_TAINTED) is merged into
 * the stored record by the same rule, and *state is then set to what is stored (tainted by
 * another server meanwhile, say: the caller's view follows). Never re-creates the record:
 * -ENOENT when it is gone (revoked, or expired and dropped, by another server). */
int ds_ca_set_state(struct datastore *ds, const char *id, int *state);
/* Sorted by not_before then id. */
int ds_ca_list(struct datastore *ds, struct ca_record ***out, size_t *n);
/* -ENOENT if absent. */
int ds_ca_delete(struct datastore *ds, const char *id);
void ca_record_free(struct ca_record *r);
void ca_record_array_free(struct ca_record **r, size_t n);

/* ---- federation relationships (fed_relationship.h) ----
 * Not in the change journal: the fetcher (federation.c) re-reads them every few seconds. */

/* Validates r (fed_relationship_from_json's rules) and stores it; create: -EEXIST when the
 * trust domain has one already, else (update) -ENOENT when it has none. -EINVAL with the reason
 * in err for an invalid one. created_at/updated_at are set here. */
int ds_fed_rel_put(struct datastore *ds, struct fed_relationship *r, bool create, char *err,
		   size_t errlen);
/* -ENOENT if absent; *out is the caller's. */
int ds_fed_rel_get(struct datastore *ds, const char *trust_domain, struct fed_relationship **out);
/* Every relationship, sorted by trust domain (a corrupt row is logged and left out). */
int ds_fed_rel_list(struct datastore *ds, struct fed_relationship ***out, size_t *n);
/* -ENOENT if absent. */
int ds_fed_rel_delete(struct datastore *ds, const char *trust_domain);

/* ---- small key/value store for counters such as the bundle sequence ---- */

/* -ENOENT if absent. */
int ds_kv_get_int(struct datastore *ds, const char *key, int64_t *out);
int ds_kv_set_int(struct datastore *ds, const char *key, int64_t v);

/* ---- copying a whole datastore (lanyard-server datastore migrate) ---- */

/* What moves from one server's datastore to another's: entries (ids, revisions and creation
 * times kept), agents (ban state and serials), join tokens (hashes), the published bundle (CA
 * authority records, never keys), the bundle sequence, and federation (foreign bundles and
 * relationships). */
struct ds_snapshot {
	struct entry **entries;
	size_t n_entries;
	struct agent_record **agents;
	size_t n_agents;
	struct ds_token_record *tokens;
	size_t n_tokens;
	struct ca_record **cas;
	size_t n_cas;
	struct fed_bundle **fed_bundles; /* federated bundles, set by hand or fetched */
	size_t n_fed_bundles;
	struct fed_relationship **fed_rels; /* federation relationships */
	size_t n_fed_rels;
	bool has_bundle_sequence;
	int64_t bundle_sequence;
};
/* Reads everything of ds. No other process may write ds meanwhile (the caller makes sure the
 * server that owns it is stopped). */
int ds_snapshot_read(struct datastore *ds, struct ds_snapshot *out);
void ds_snapshot_free(struct ds_snapshot *s);
/* Writes s into ds in one transaction: refused with -ENOTEMPTY (err says what is there) when ds
 * already holds entries, agents, join tokens or authorities, unless force (they are deleted
 * first); refused with -EBUSY when servers are live on ds (a shared datastore). The row counts
 * are verified before the commit (-EIO and nothing written when they differ). The bundle
 * sequence only moves forward. -ENOTSUP when the backend cannot import (SQLite). */
int ds_snapshot_import(struct datastore *ds, const struct ds_snapshot *s, bool force, char *err,
		       size_t errlen);

/* ---- statistics (for /metrics) ----
 * Every ds_* call is timed, from before it waits for the datastore (SQLite's lock, a pooled
 * PostgreSQL connection) to its return, and counted as an error when it fails for another
 * reason than its documented outcomes (not found, duplicate, expired, bad argument, refused).
 * Counters only grow; reading them takes no lock. */
enum ds_op {
	DS_OP_ENTRY_CREATE, DS_OP_ENTRY_UPDATE, DS_OP_ENTRY_DELETE, DS_OP_ENTRY_GET, DS_OP_ENTRY_LIST,
	DS_OP_ENTRY_COUNT, DS_OP_AGENT_COUNT, DS_OP_TOKEN_CREATE, DS_OP_TOKEN_CONSUME,
	DS_OP_TOKEN_COUNT, DS_OP_TOKEN_PRUNE, DS_OP_TOKEN_LIST, DS_OP_AGENT_UPSERT, DS_OP_AGENT_GET,
	DS_OP_AGENT_LIST, DS_OP_AGENT_DELETE, DS_OP_AGENT_SET_BANNED, DS_OP_AGENT_TOUCH, DS_OP_CA_PUT,
	DS_OP_CA_LIST, DS_OP_CA_DELETE, DS_OP_KV_GET_INT, DS_OP_KV_SET_INT, DS_OP_PING,
	DS_OP_SNAPSHOT_IMPORT, DS_OP_SERVER_HEARTBEAT, DS_OP_SERVER_LIST, DS_OP_CA_SET_STATE, DS_OP__COUNT
};
/* "entry_create", ...: the label values of DS_OP_*. */
extern const char *const ds_op_names[DS_OP__COUNT];
#define DS_LATENCY_BUCKETS 12
/* Upper bounds in seconds, of the operation latency and change-feed lag histograms. */
extern const double ds_latency_buckets[DS_LATENCY_BUCKETS];

struct ds_histogram {
	uint64_t le[DS_LATENCY_BUCKETS]; /* observations <= ds_latency_buckets[i] (cumulative) */
	uint64_t count;
	double sum; /* seconds */
};
struct ds_stats {
	struct ds_histogram op[DS_OP__COUNT];
	uint64_t op_errors[DS_OP__COUNT];
	uint64_t retries; /* transactions retried after a serialization failure or deadlock */
	/* A shared datastore's change feed (has_feed): how long after a change was written (by any
	 * server; by the database's clock) this server recorded it, and the gaps passed over. */
	bool has_feed;
	struct ds_histogram feed_lag;
	uint64_t feed_holes;
};
void ds_stats_get(struct datastore *ds, struct ds_stats *out);
/* ---- leases: one server at a time does a job (automatic registration) ----
 * A lease is a row (name, holder, expiry). ds_lease_acquire takes the lease name for holder, or
 * renews it when holder has it already, for ttl_s seconds: 1 when holder has it now, 0 when
 * another holder has it and it has not expired, < 0 on a database error. PostgreSQL dates the
 * expiry by the database's clock, so that servers' clocks do not matter. */
int ds_lease_acquire(struct datastore *ds, const char *name, const char *holder, int64_t ttl_s);
/* Gives the lease up if holder has it (a clean shutdown: another server takes over at once). */
int ds_lease_release(struct datastore *ds, const char *name, const char *holder);

/* Readiness: 0 when the database answers a query. */
int ds_ping(struct datastore *ds);

/* ---- the servers sharing this datastore (the cluster) ---- */

/* Each server writes its record every DS_SERVER_HEARTBEAT_S; one not seen for
 * DS_SERVER_LIVE_S (three heartbeats) is not live. A shared backend (PostgreSQL) keeps a table
 * and dates last_seen by the database's clock, so that servers' clocks do not matter; a
 * backend of one server (SQLite) keeps only the record of its own server, in memory. */
#define DS_SERVER_HEARTBEAT_S 5
#define DS_SERVER_LIVE_S (3 * DS_SERVER_HEARTBEAT_S)
struct server_record {
	char *id;      /* stable for a data_dir */
	char *address; /* of the node API, "host:port" */
	char *version;
	int64_t started_at, last_seen;
	int64_t authorities; /* this server's own signing authorities */
};
/* Inserts or refreshes r (r->last_seen is ignored: now). */
int ds_server_heartbeat(struct datastore *ds, const struct server_record *r);
/* The servers seen within the last live_s seconds, by id. */
int ds_server_list(struct datastore *ds, int64_t live_s, struct server_record ***out, size_t *n);
void server_record_free(struct server_record *r);
void server_record_array_free(struct server_record **r, size_t n);
json_t *server_record_to_json(const struct server_record *r);

#endif
