/* datastore_backend.h: what a datastore backend (datastore_sqlite.c, datastore_pg.c) provides.
 * Only backends and datastore.c include this; everyone else uses datastore.h.
 *
 * Unless the backend sets ops.concurrent, datastore.c serialises every call with the mutex in
 * struct datastore, so an operation never runs concurrently with another on the same datastore
 * and the backend needs no locking of its own (SQLite). A concurrent backend (PostgreSQL, with
 * its connection pool) is called from several threads at once and locks what it shares itself.
 * The contracts of the operations are those of the ds_* functions of the same name. */
#ifndef LANYARD_DATASTORE_BACKEND_H
#define LANYARD_DATASTORE_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>

#include "datastore.h"

/* The columns of the tables every SQL backend has, in the order their row readers expect. */
#define ENTRY_COLS "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, dns_names, " \
		   "hint, admin, downstream, expires_at, revision, created_at, federates_with, " \
		   "managed"
#define AGENT_COLS "spiffe_id, attestor, selectors, aliases, serial, not_after, created_at, " \
		   "last_seen, banned"
#define FED_BUNDLE_COLS "trust_domain, x509, jwt_keys, sequence, refresh_hint, refreshed_at, source"
#define CA_COLS "id, state, cert, jwt_kid, jwt_spki, not_before, not_after, created_at"
/* The state an authority's record keeps when a write meets the stored one (both backends, SQL
 * over the stored value s and the written one n): a taint (CA_STATE_TAINTED, 256) is never
 * cleared and the state never moves back (prepared 0 -> active 1 -> old 2), so a write made
 * from a stale view (another server's taint read before this one's activation, or the reverse)
 * loses nothing the other writer recorded. */
#define CA_STATE_MERGE_SQL(s, n)                                                              \
	"((CASE WHEN ((" s ") & 255) > ((" n ") & 255) THEN ((" s ") & 255) ELSE ((" n ") & 255) " \
	"END) | (((" s ") | (" n ")) & 256))"

struct datastore_ops {
	const char *name;
	/* The backend may be called from several threads at once. It then also keeps the change
	 * journal itself, through datastore_feed_add/datastore_feed_hole (its change_counter is
	 * datastore_feed_counter), instead of datastore.c recording the changes it makes. */
	bool concurrent;
	void (*close)(struct datastore *ds);
	int (*entry_create)(struct datastore *ds, struct entry *e, char *err, size_t errlen);
	int (*entry_update)(struct datastore *ds, struct entry *e, char *err, size_t errlen);
	int (*entry_delete)(struct datastore *ds, const char *id);
	int (*entry_get)(struct datastore *ds, const char *id, struct entry **out);
	int (*entry_list)(struct datastore *ds, const struct entry_filter *f, struct entry ***out,
			  size_t *n);
	/* The entries arrive with their id and created_at set (datastore.c assigns them); on
	 * failure the backend sets *failed (SIZE_MAX: none in particular) and err. */
	int (*entry_create_batch)(struct datastore *ds, struct entry **v, size_t n, size_t *failed,
				  char *err, size_t errlen);
	int (*entry_count)(struct datastore *ds, int64_t *n);
	int (*agent_count)(struct datastore *ds, int64_t *n);
	int64_t (*change_counter)(struct datastore *ds);
	int (*token_create)(struct datastore *ds, const char *token_hash, const char *alias,
			    int64_t expires_at);
	int (*token_consume)(struct datastore *ds, const char *token_hash, int64_t now,
			     char **alias_out);
	int (*token_count)(struct datastore *ds, int64_t now, int64_t *n);
	int (*token_prune)(struct datastore *ds, int64_t now);
	int (*token_list)(struct datastore *ds, struct ds_token_record **out, size_t *n);
	int (*agent_upsert)(struct datastore *ds, const struct agent_record *a);
	int (*agent_get)(struct datastore *ds, const char *spiffe_id, struct agent_record **out);
	int (*agent_list)(struct datastore *ds, struct agent_record ***out, size_t *n);
	int (*agent_delete)(struct datastore *ds, const char *spiffe_id);
	int (*agent_set_banned)(struct datastore *ds, const char *spiffe_id, bool banned);
	int (*agent_touch)(struct datastore *ds, const char *spiffe_id, const char *serial,
			   int64_t not_after, int64_t now);
	int (*ca_put)(struct datastore *ds, const struct ca_record *r);
	/* ds_ca_set_state: merges *state into the stored record, *state then what is stored;
	 * -ENOENT when the record is gone (never re-created). */
	int (*ca_set_state)(struct datastore *ds, const char *id, int *state);
	int (*ca_list)(struct datastore *ds, struct ca_record ***out, size_t *n);
	int (*ca_delete)(struct datastore *ds, const char *id);
	/* force: replace whatever the sequence (a manual bundle); otherwise -ESTALE when the stored
	 * sequence is higher. b is validated and its refreshed_at set. */
	int (*fed_bundle_put)(struct datastore *ds, const struct fed_bundle *b, bool force);
	int (*fed_bundle_get)(struct datastore *ds, const char *trust_domain,
			      struct fed_bundle **out);
	int (*fed_bundle_list)(struct datastore *ds, struct fed_bundle ***out, size_t *n);
	int (*fed_bundle_delete)(struct datastore *ds, const char *trust_domain);
	/* Federation relationships as JSON documents keyed by trust domain: create -EEXIST when
	 * present, update -ENOENT when absent; list sorted by trust domain. */
	int (*fed_rel_put)(struct datastore *ds, const char *trust_domain, const char *doc,
			   bool create);
	int (*fed_rel_get)(struct datastore *ds, const char *trust_domain, char **doc);
	int (*fed_rel_list)(struct datastore *ds, char ***docs, size_t *n);
	int (*fed_rel_delete)(struct datastore *ds, const char *trust_domain);
	int (*kv_get_int)(struct datastore *ds, const char *key, int64_t *out);
	int (*kv_set_int)(struct datastore *ds, const char *key, int64_t v);
	int (*ping)(struct datastore *ds);
	int (*lease_acquire)(struct datastore *ds, const char *name, const char *holder,
			     int64_t ttl_s);
	int (*lease_release)(struct datastore *ds, const char *name, const char *holder);
	/* Optional: without them, datastore.c keeps the record of this server alone. */
	int (*server_heartbeat)(struct datastore *ds, const struct server_record *r);
	int (*server_list)(struct datastore *ds, int64_t live_s, struct server_record ***out,
			   size_t *n);
	/* Optional (ds_snapshot_import): -ENOTSUP without it. */
	int (*snapshot_import)(struct datastore *ds, const struct ds_snapshot *s, bool force,
			       char *err, size_t errlen);
};

/* The first member of every backend's own struct. journal is a ring of the last changes (see
 * ds_changes_since), kept by datastore.c under lock: backends touch it only through the
 * datastore_feed_* functions. */
struct datastore {
	const struct datastore_ops *ops;
	pthread_mutex_t lock;
	struct ds_change *journal;
	size_t journal_cap, journal_len, journal_head; /* head: index of the oldest record */
	int64_t feed_counter; /* concurrent backends: the journal's own counter */
	int64_t bundle_gen;   /* see ds_bundle_generation */
	_Atomic uint64_t agent_gen; /* see ds_agent_generation; bumped under lock */
	void (*change_hook)(void *ud);
	void *change_hook_ud;
	struct server_record *self; /* under lock; backends without server_heartbeat */
	/* Statistics (ds_stats_get), atomic: updated by any thread without the lock. */
	struct ds_atomic_hist {
		_Atomic uint64_t le[DS_LATENCY_BUCKETS], count, sum_us;
	} op_hist[DS_OP__COUNT], feed_lag;
	_Atomic uint64_t op_errors[DS_OP__COUNT], retries, feed_holes;
	bool has_feed; /* set by the backend at open */
};

/* Backends call this on their freshly allocated struct, and datastore_fini_base in close. */
void datastore_init_base(struct datastore *ds, const struct datastore_ops *ops);
void datastore_fini_base(struct datastore *ds);

/* Shared helpers for backends: the hex SHA-256 under which a join token is stored (65 bytes). */
int datastore_token_hash(const char *token, char out[65]);
/* A list of strings as a compact JSON array (malloc'd; NULL on allocation failure), and back:
 * -EIO when the text is not a JSON array (a corrupt column). */
char *datastore_strv_to_text(char *const *v, size_t n);
int datastore_strv_from_text(const char *txt, char ***out, size_t *n);

/* A federated bundle's columns and back (FED_BUNDLE_COLS order: x509 blob, jwt_keys text, source
 * text). datastore_fed_jwt_text: the JWK Set JSON of b->jwt, NULL when there is none (*ok false
 * on allocation failure). datastore_fed_bundle_from_cols: NULL (logged) when a column is corrupt. */
char *datastore_fed_jwt_text(const struct fed_bundle *b, bool *ok);
struct fed_bundle *datastore_fed_bundle_from_cols(const char *td, const uint8_t *x509,
						  size_t x509_len, const char *jwt_keys,
						  int64_t sequence, int64_t refresh_hint,
						  int64_t refreshed_at, const char *source);

/* For concurrent backends, from any thread: records a change in the journal under the next
 * counter value (datastore_feed_add), or moves the counter without a record, so that readers
 * asking for changes from before it re-read everything (datastore_feed_hole). Neither calls the
 * change hook: datastore_feed_wake does, once a batch is recorded. */
void datastore_feed_add(struct datastore *ds, enum ds_change_kind kind, const char *id);
void datastore_feed_hole(struct datastore *ds);
void datastore_feed_wake(struct datastore *ds);
/* For backends, from any thread: a change was recorded lag_seconds after it was written; a
 * transaction is retried (serialization failure or deadlock). */
void datastore_feed_lag(struct datastore *ds, double lag_seconds);
void datastore_count_retry(struct datastore *ds);
/* The journal's counter; the caller holds ds->lock (ds_changes_since, ds_change_counter do). */
int64_t datastore_feed_counter(struct datastore *ds);

#endif
