/* ca.h: the trust domain's certificate authority: a set of authorities that rotate (prepared,
 * active, old) and the narrow signing interface the rest of the server uses.
 *
 * Private keys never enter this process: the signer process (signer.h) generates, loads, deletes
 * and uses them (files in <data_dir>/ca, mode 0600); this module holds their public halves as
 * remote keys, and callers hand in public keys and names and get signed bytes back.
 *
 * Thread-safety: every function may be called from any thread. Signing runs outside the lock on
 * a reference to the active authority, so several threads sign in parallel. */
#ifndef LANYARD_CA_H
#define LANYARD_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "datastore.h"
#include "jwt.h"
#include "keys.h"

struct signer;

struct ca_options {
	/* Started with key_dir <data_dir>/ca and the upstream key path below; outlives the ca.
	 * NULL: ca_open forks one of its own (tests and tools; the server starts its signer before
	 * it has a thread, see signer.h). */
	struct signer *signer;
	const char *trust_domain;
	const char *data_dir;
	enum key_type key_type;
	int64_t ca_ttl;
	const char *upstream_cert_path; /* NULL: self-signed authorities */
	const char *upstream_key_path;
	/* The datastore is shared with other servers (PostgreSQL). Each keeps its own authorities
	 * (keys in its data_dir) and rotates them itself, publishing each in the datastore before
	 * it signs with it; the bundle is the union of every server's published authorities. A
	 * recorded authority whose key is not on this server's disk is another server's. */
	bool shared;
	/* The "iss" claim of JWT-SVIDs (oidc_issuer); NULL: none. Copied. */
	const char *jwt_issuer;
};

struct ca;

/* Loads the authorities recorded in ds (refusing key files others can read), creates the first
 * one when there is none, and brings the rotation up to date for now. */
int ca_open(const struct ca_options *o, struct datastore *ds, int64_t now, struct ca **out,
	    char *err, size_t errlen);
void ca_close(struct ca *ca);

/* Advances the rotation to now: prepares the next authority at half the active one's lifetime
 * (it joins the bundle at once), activates it at five sixths, and drops an old authority once it
 * has expired (nothing it signed can still be valid). Returns a bitmask of CA_CHANGED_* or -1. */
#define CA_CHANGED_BUNDLE 1 /* the set of trusted authorities changed (sequence bumped) */
#define CA_CHANGED_ACTIVE 2 /* a new authority signs from now on */
int ca_rotate(struct ca *ca, int64_t now, char *err, size_t errlen);
/* Unix time of the next rotation step; 0 (now) when no authority is active (a rotation failed,
 * or a taint retired the active one). */
int64_t ca_next_rotation(struct ca *ca);
/* Shared datastore: re-reads the authorities other servers published (when the change feed
 * reported a change, ds_bundle_generation, or every few seconds), drops those expired (from the
 * bundle and the datastore) and returns CA_CHANGED_BUNDLE (sequence bumped) when the set
 * changed, 0 when not (always 0 unless shared), -1 on a datastore error. Another server's
 * taint of one of this server's authorities is applied; when it hit the active one (racing its
 * activation), that one becomes old and the rotation replaces it at once (CA_CHANGED_ACTIVE).
 * Cheap when nothing changed: call it whenever the datastore wakes the loop, and on a timer. */
int ca_sync(struct ca *ca, int64_t now);

/* Signs an X509-SVID for spki. not_before is backdated a little for clock skew; not_after is
 * now + ttl, never past the active authority's. *chain is the leaf followed by the authority's
 * certificate when that is an intermediate (upstream mode). */
int ca_sign_x509(struct ca *ca, const char *spiffe_id, const char *const *dns_names, size_t n_dns,
		 const uint8_t *spki, size_t spki_len, int64_t ttl, int64_t now, uint8_t **chain,
		 size_t *chain_len, int64_t *not_after, char *err, size_t errlen);
/* One X509-SVID of a batch: the arguments of ca_sign_x509 in, its results out. */
struct ca_x509_req {
	const char *spiffe_id;
	const char *const *dns_names;
	size_t n_dns;
	const uint8_t *spki;
	size_t spki_len;
	int64_t ttl;
	/* results: status 0 with chain (the caller frees it) and not_after, or -1 with err */
	int status;
	uint8_t *chain;
	size_t chain_len;
	int64_t not_after;
	char err[128];
};
/* Signs n X509-SVIDs like ca_sign_x509, with one authority and one round trip to the signer per
 * up to SIGNER_BATCH_MAX signatures: every body is built first, all digests are signed together,
 * then the certificates are assembled. A request that cannot be signed (bad name or key) fails
 * alone; a failure of the signature itself fails every request of the batch. Returns how many
 * were signed. */
size_t ca_sign_x509_batch(struct ca *ca, struct ca_x509_req *reqs, size_t n, int64_t now);
/* Signs a JWT-SVID with the active authority's JWT key; exp never past the authority's. */
int ca_sign_jwt(struct ca *ca, const char *sub, const char *const *aud, size_t n_aud, int64_t ttl,
		int64_t now, char **token, int64_t *exp, char *err, size_t errlen);

/* A tainted authority still in the bundle: agents re-issue what it signed (node.proto). */
struct ca_tainted {
	char id[65];
	uint8_t *cert; /* DER */
	size_t cert_len;
	char jwt_kid[80];
};

struct ca_bundle {
	uint8_t *x509; /* concatenated DER: the trusted CA certificates */
	size_t x509_len;
	struct jwks *jwt;
	int64_t *jwt_expires_at; /* per JWT key, in jwks order */
	int64_t sequence;
	struct ca_tainted *tainted; /* this server's and other servers' tainted authorities */
	size_t n_tainted;
};
int ca_bundle_get(struct ca *ca, struct ca_bundle *out);
void ca_bundle_free(struct ca_bundle *b);
int64_t ca_bundle_sequence(struct ca *ca);

struct ca_authority_info {
	char id[65];
	const char *state; /* "prepared", "active", "old" */
	int64_t not_before, not_after;
	char sha256[65];
	char jwt_kid[80];
	bool tainted;
};
/* A copy of the authorities, oldest first. The caller frees *out. */
int ca_authorities(struct ca *ca, struct ca_authority_info **out, size_t *n);

/* ---- the operator's rotation (lanyard-server authority ..., over the admin API) ----
 * An authority's X.509 and JWT keys rotate together, under one ID. Each function returns a
 * CA_CHANGED_* mask (the caller refreshes the node API and publishes the bundle), or a negative
 * errno with a message for the operator in err: -ENOENT unknown ID, -EXDEV another server's
 * authority (activate it there), -EBUSY the wrong state for the request, -EEXIST already
 * prepared, -EIO datastore or key trouble. */

/* Prepares the next authority now (it joins the bundle at once); its ID in id_out. */
int ca_prepare(struct ca *ca, int64_t now, char id_out[65], char *err, size_t errlen);
/* The prepared authority id signs from now on; the active one becomes old. -ESTALE when
 * another server's taint or revocation of id raced the activation (shared datastore): id is
 * then old and never signs, and a new authority is active instead (the bundle changed). */
int ca_activate(struct ca *ca, const char *id, char *err, size_t errlen);
/* Marks a non-active authority tainted (recorded in the datastore, so every server sharing it
 * sends it to its agents too): agents re-issue every SVID it signed, and it never becomes active.
 * Tainting twice is not an error (0). */
int ca_taint(struct ca *ca, const char *id, char *err, size_t errlen);
/* 0 when id names a tainted authority (the first condition of a revocation). */
int ca_tainted_check(struct ca *ca, const char *id, char *err, size_t errlen);
/* Removes a tainted authority from the bundle and the datastore (its keys too, when this
 * server's). Whether anything still depends on it is the caller's check (taint_ack.h). */
int ca_revoke(struct ca *ca, const char *id, char *err, size_t errlen);
/* {"authorities":[{"id","kind":"x509"|"jwt","state","not_before","not_after","tainted",
 *  "server":"this"|"other","certificate" (x509) | "key_id","public_key" (jwt), ...}]} */
json_t *ca_authorities_json(struct ca *ca);

#endif
