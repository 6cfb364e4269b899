/* entry.h: registration entries (who may get which SPIFFE ID), their JSON form and validation:
 * one representation and codec for the server (datastore, admin API) and the agent (the entries
 * it serves and persists in state.json). No state; any thread. */
#ifndef LANYARD_ENTRY_H
#define LANYARD_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Limits checked by entry_validate. */
#define ENTRY_MAX_SELECTORS 64
#define ENTRY_MAX_SELECTOR_LEN 1024
#define ENTRY_MAX_DNS_NAMES 64
#define ENTRY_MAX_HINT_LEN 1024
#define ENTRY_MAX_TTL (10 * 365 * 86400)
#define ENTRY_MAX_FEDERATES_WITH 32

/* Every pointer member is owned by the entry (malloc'd; NULL when absent). The members are
 * ordered so that the struct has no padding (152 bytes): the server holds one per entry. */
struct entry {
	char id[37];		/* server-made UUID; "" before creation */
	bool admin, downstream;
	bool managed;		/* kept by the server (k8s_reg.c), not by hand: the admin API refuses
				 * to create, update or delete such entries */
	int32_t x509_svid_ttl, jwt_svid_ttl;	/* seconds; 0 = server default */
	/* Owners (refcount.h), 1 from entry_dup and entry_from_json: the agent's entries are
	 * immutable once built, so snapshots and the sync thread share one copy
	 * (cache_entry_ref/cache_entry_free, svid_cache.h). The server never shares one and
	 * frees with entry_free. */
	int refs;
	char *spiffe_id, *parent_id;
	char **selectors;	/* "type:value", sorted and unique once normalised */
	size_t n_selectors;
	char **dns_names;
	size_t n_dns_names;
	char *hint;		/* may be NULL */
	char **federates_with;	/* foreign trust domain names ("two.test"), sorted and unique
				 * once normalised: the workloads get their bundles */
	size_t n_federates_with;
	int64_t expires_at;	/* unix seconds; 0 = never */
	int64_t revision;	/* changes whenever the entry does (from a global counter) */
	int64_t created_at;
};

/* Frees the members and e itself. NULL-safe. */
void entry_free(struct entry *e);
/* Frees n entries and the array itself. NULL-safe. */
void entry_array_free(struct entry **a, size_t n);
/* Deep copy; aborts on allocation failure like xmalloc. NULL for NULL. */
struct entry *entry_dup(const struct entry *e);
/* Sorts the selectors and federates_with and removes duplicates, in place. entry_from_json and the datastore call it;
 * code that builds entries by hand may call it too. */
void entry_normalize(struct entry *e);

/* Checks an entry before it is stored: spiffe_id is a leaf ID in trust_domain; parent_id is a
 * SPIFFE ID in trust_domain (a leaf, or the trust domain's own ID "spiffe://<td>" when the entry is
 * a node entry made by the server); at least one selector, each "type:value" with both parts
 * non-empty; TTLs in [0, ENTRY_MAX_TTL]; DNS names are sane host names (an optional leading "*."
 * wildcard label); expires_at >= 0; federates_with: at most ENTRY_MAX_FEDERATES_WITH valid trust
 * domain names, none of them trust_domain itself. Returns 0, or -EINVAL with a reason in err. */
int entry_validate(const struct entry *e, const char *trust_domain, char *err, size_t errlen);

/* {"id","spiffe_id","parent_id","selectors":["type:value"],"x509_svid_ttl","jwt_svid_ttl",
 *  "dns_names","hint","admin","downstream","managed","expires_at","revision","created_at",
 *  "federates_with":["two.test"]}. On input, federates_with members may also be trust domain
 *  IDs ("spiffe://two.test"): they are stored as names.
 * "hint" is null when absent. Returns a new reference, or NULL on allocation failure. */
json_t *entry_to_json(const struct entry *e);
/* A reusable jansson object of entry_to_json's form: the one place that writes an entry's
 * members (entry_to_json fills a fresh one). Filling it again replaces the values in place, so
 * rendering many entries in a row (the streamed listing, entry_listing.c) allocates only
 * their strings. Owned and used by one thread at a time; its members belong to it (do not keep
 * or share them). entry_json_new: NULL on allocation failure. */
struct entry_json;
struct entry_json *entry_json_new(void);
/* The object with e's values: borrowed, valid until the next fill or entry_json_free. NULL when
 * a string is not UTF-8 (jansson refuses it) or memory ran out; the tree may then hold some of
 * e's values and can still be filled again. */
json_t *entry_json_fill(struct entry_json *t, const struct entry *e);
/* NULL-safe. */
void entry_json_free(struct entry_json *t);
/* Builds an entry from a JSON object using the keys of entry_to_json; every key is optional
 * (absent members are zero/NULL), unknown keys and wrong types are rejected with -EINVAL and a
 * message naming the key. Selectors are normalised (sorted, unique). "id", "revision" and
 * "created_at" are accepted so that output can be fed back, but the datastore decides them.
 * Does NOT call entry_validate. On success *out is a new entry the caller frees. */
int entry_from_json(json_t *o, struct entry **out, char *err, size_t errlen);
/* Like entry_from_json, but replaces in dst only the members present in o (partial update).
 * dst is left unchanged on error. */
int entry_merge_json(struct entry *dst, json_t *o, char *err, size_t errlen);

/* True when the selector set of e contains every selector in sel (sel need not be sorted). */
bool entry_has_selectors(const struct entry *e, const char *const *sel, size_t n);
/* Validates one "type:value" selector. */
int entry_selector_validate(const char *s, char *err, size_t errlen);

#endif
