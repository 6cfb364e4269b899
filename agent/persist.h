/* persist.h: the agent's state in data_dir, so that a restarted agent reconnects without a new
 * join token and serves its still-valid SVIDs even while the server is down.
 *
 * Files (every one written atomically: temp file, fsync, rename):
 *   agent_key.pem   the agent's private key, PKCS#8 PEM, 0600
 *   agent_svid.pem  the agent's X509-SVID chain, PEM, leaf first
 *   bundle.pem      the trust domain's X.509 authorities, PEM
 *   bundle.json     {"trust_domain", "sequence", "jwt_bundle": <JWK Set>}
 *   federated_bundles.json  {"bundles": [{"trust_domain", "sequence", "x509": PEM,
 *                   "jwt_bundle": <JWK Set>}]}: the foreign trust domains' bundles the server
 *                   sent for our entries; each checked at load (a valid trust domain other
 *                   than ours, CA certificates, a JWK Set that parses) or discarded
 *   state.json      0600: used join tokens (SHA-256 only), the entries and, for each, its SVID
 *                   chain and PKCS#8 key (base64), wiped from memory after use.
 * Loading checks everything before anything is used: each file must be a regular file owned by
 * the agent's uid that group and others cannot write (otherwise it is discarded, with one log
 * line, and what it held is fetched anew); agent_key.pem and state.json that group or others can
 * read are refused (an operator error that may have leaked keys). Every SVID, the agent's own
 * included, must parse, match its key, name the expected SPIFFE ID, verify against bundle.pem and
 * be unexpired; its SPIFFE ID, serial and validity are taken from the certificate, never from
 * state.json. An SVID that fails is discarded with one log line (the agent fetches it anew, or
 * re-attests for its own). */
#ifndef LANYARD_PERSIST_H
#define LANYARD_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svid_cache.h"

struct persist_data {
	/* The agent's identity; both NULL when the agent never attested. */
	uint8_t *agent_key; /* PKCS#8 DER */
	size_t agent_key_len;
	uint8_t *agent_chain; /* DER certificates, leaf first */
	size_t agent_chain_len;

	/* The latest bundle received; bundle NULL when none was ever received. */
	char *trust_domain;
	uint8_t *bundle; /* DER CA certificates, concatenated */
	size_t bundle_len;
	char *jwt_bundle; /* JWK Set JSON */
	int64_t bundle_sequence;

	/* state.json */
	char **used_tokens; /* lower-case hex SHA-256 of join tokens this agent consumed */
	size_t n_used_tokens;
	struct entry **entries; /* sorted by id */
	size_t n_entries;
	struct svid **svids; /* sorted by entry_id, one reference each */
	size_t n_svids;
	bool have_state; /* state.json existed */

	struct fed_snap *fed; /* federated_bundles.json, checked */
	size_t n_fed;
};

/* Creates dir (0700) when missing and checks it is a directory that only its owner may use. */
int persist_prepare_dir(const char *dir, char *err, size_t errlen);

/* Loads whatever dir holds; missing or discarded files leave their fields empty (0 is returned
 * for an empty directory). SVIDs that fail the checks above at now are dropped. -1 with a reason
 * in err for a key file readable by others, a corrupt file, or an I/O error. out is zeroed first;
 * free it with persist_data_free either way. */
int persist_load(const char *dir, int64_t now, struct persist_data *out, char *err, size_t errlen);
/* The state.json part of persist_load, on text already read (name is for messages): entries
 * and used tokens into d, each SVID kept only if it verifies against bundle at now. For the
 * loader and its fuzz harness. 0, or -1 with a reason in err (d must be freed either way). */
int persist_parse_state(const char *name, const char *text, size_t len, int64_t now,
			const uint8_t *bundle, size_t bundle_len, struct persist_data *d,
			char *err, size_t errlen);

int persist_save_agent(const char *dir, const uint8_t *key_der, size_t key_len,
		       const uint8_t *chain, size_t chain_len, char *err, size_t errlen);
int persist_save_bundle(const char *dir, const char *trust_domain, const uint8_t *bundle,
			size_t bundle_len, const char *jwt_bundle, int64_t sequence, char *err,
			size_t errlen);
/* Writes state.json from the used tokens, entries and SVIDs (SVIDs are matched to entries by
 * entry_id; an SVID without its entry is not written). */
int persist_save_state(const char *dir, char *const *used_tokens, size_t n_used_tokens,
		       struct entry *const *entries, size_t n_entries,
		       struct svid *const *svids, size_t n_svids, char *err, size_t errlen);
/* Writes federated_bundles.json (the whole set; an empty one when n is 0). */
int persist_save_federated(const char *dir, const struct fed_snap *fed, size_t n, char *err,
			   size_t errlen);
/* Removes the agent identity files (after an eviction, before re-attesting). */
void persist_forget_agent(const char *dir);

/* Wipes the keys and frees everything; NULL-safe. */
void persist_data_free(struct persist_data *d);

#endif
