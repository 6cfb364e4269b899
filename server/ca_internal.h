/* ca_internal.h: the state of the CA (ca.h) shared by its two source files: ca.c (load, rotation
 * in time, signing, bundles, the datastore sync) and ca_admin.c (the operator's rotation: prepare,
 * activate, taint, revoke, the listing). Not for any other module.
 *
 * Locking: struct ca's fields are guarded by ca->lock, except the authorities' immutable parts
 * (keys, certificate), read through a reference (refs). The ca__ functions below expect the
 * lock held unless they say otherwise. */
#ifndef LANYARD_CA_INTERNAL_H
#define LANYARD_CA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ca.h"

struct authority {
	int refs; /* refcount.h */
	char id[65];
	int state; /* CA_STATE_* */
	lkey *key;
	uint8_t *cert;
	size_t cert_len;
	lkey *jwt_key;
	char jwt_kid[80];
	uint8_t *jwt_spki;
	size_t jwt_spki_len;
	int64_t not_before, not_after;
	char sha256[65];
	bool tainted;
};

/* Another server's published authority: public parts only. */
struct peer {
	char id[65];
	uint8_t *cert;
	size_t cert_len;
	char jwt_kid[80];
	uint8_t *jwt_spki;
	size_t jwt_spki_len;
	int state; /* CA_STATE_* as that server recorded it */
	bool tainted;
	int64_t not_before, not_after;
};

struct ca {
	pthread_mutex_t lock;
	bool shared;
	struct peer *peers; /* in the datastore's order */
	size_t n_peers;
	int64_t synced_gen;     /* ds_bundle_generation at the last ca_sync */
	int64_t next_full_sync; /* re-read even without news from the feed (a missed wake-up) */
	struct datastore *ds;
	struct signer *signer; /* holds every private key; a->key etc. sign through it */
	bool own_signer;       /* started by ca_open (no ca_options.signer) */
	char *trust_domain;
	char *jwt_issuer; /* NULL: JWT-SVIDs carry no "iss" */
	char *key_dir;
	enum key_type key_type;
	int64_t ca_ttl;
	lkey *upstream_key; /* NULL unless upstream mode */
	uint8_t *upstream_cert;
	size_t upstream_cert_len;
	int64_t upstream_not_after;
	struct authority **auth; /* oldest first */
	size_t n_auth;
	int64_t sequence;
};

const char *ca__state_name(int s);
/* Writes a's state and public parts to the datastore. */
int ca__record_authority(struct ca *ca, const struct authority *a);
/* A new authority valid from now (keys made and written by the signer); NULL with err. */
struct authority *ca__authority_create(struct ca *ca, int state, int64_t now, char *err,
				       size_t errlen);
/* Deletes the key files of authority id (through the signer). */
void ca__remove_key_files(const struct ca *ca, const char *id);
/* Moves the bundle sequence past every value any server wrote. */
void ca__bump_sequence(struct ca *ca);
void ca__drop_authority_at(struct ca *ca, size_t i);
/* The untainted authority in state, or NULL. */
struct authority *ca__find_state(struct ca *ca, int state);
void ca__add_authority(struct ca *ca, struct authority *a);
/* Records a change of a's state or taint in its stored record and takes back what is stored
 * (ds_ca_set_state): a taint another server recorded meanwhile is kept and a's view follows it
 * (the rotation then retires an authority so tainted as it was activated). A record gone from
 * the datastore (revoked by another server) is not re-created: a is then old and tainted (never
 * signs; the next sync drops it), 0 returned. Negative on a datastore error. */
int ca__store_state(struct ca *ca, struct authority *a);
/* a's state set to state, then ca__store_state. */
int ca__set_state(struct ca *ca, struct authority *a, int state);
/* The rotation steps (ca_rotate) under the lock. */
int ca__rotate_locked(struct ca *ca, int64_t now, char *err, size_t errlen);

#endif
