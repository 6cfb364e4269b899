/* fed_bundle.h: the trust bundles of foreign trust domains (federation), as the server stores
 * them (datastore.h, ds_fed_bundle_*) and as operators give them (a PEM file of CA certificates
 * or a SPIFFE bundle document).
 *
 * Contract: plain values; every pointer member is owned by the struct and freed by
 * fed_bundle_free. No state, safe from any thread. Input comes from files, operators and remote
 * bundle endpoints: anything malformed is a -EINVAL with a reason naming what is wrong, never an
 * abort. */
#ifndef LANYARD_FED_BUNDLE_H
#define LANYARD_FED_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jwt.h"

/* Documents larger than this are refused (a bundle holds a handful of keys). */
#define FED_BUNDLE_MAX_BYTES (512 * 1024)
/* At most this many X.509 and this many JWT authorities. */
#define FED_BUNDLE_MAX_AUTHORITIES 64

/* Where a stored bundle came from: set by an operator (bundle set), or fetched from the trust
 * domain's bundle endpoint (a federation relationship). */
enum fed_bundle_source { FED_SOURCE_MANUAL = 1, FED_SOURCE_ENDPOINT = 2 };

struct fed_bundle {
	char *trust_domain;	/* "example.org": a valid trust domain name, no scheme */
	uint8_t *x509;		/* X.509 authorities: concatenated DER CA certificates */
	size_t x509_len;
	struct jwks *jwt;	/* JWT authorities; NULL when none */
	int64_t sequence;	/* spiffe_sequence, >= 0 */
	int64_t refresh_hint;	/* seconds; 0 when the document gave none */
	int64_t refreshed_at;	/* unix seconds: when this version was set or fetched */
	enum fed_bundle_source source;
};

void fed_bundle_free(struct fed_bundle *b);
void fed_bundle_array_free(struct fed_bundle **b, size_t n);
/* Deep copy; aborts on allocation failure like xmalloc. NULL for NULL. */
struct fed_bundle *fed_bundle_dup(const struct fed_bundle *b);

/* "manual" / "endpoint"; "unknown" for anything else. */
const char *fed_bundle_source_name(enum fed_bundle_source s);
/* 0, or -EINVAL when s is neither name. */
int fed_bundle_source_parse(const char *s, enum fed_bundle_source *out);

/* Number of X.509 authorities (0 when x509 is malformed). */
size_t fed_bundle_x509_count(const struct fed_bundle *b);

/* The summary bundle list/show print: {"trust_domain","sequence","refreshed_at","source",
 * "refresh_hint","x509_authorities":N,"jwt_authorities":N}. New reference; NULL on failure. */
json_t *fed_bundle_summary_json(const struct fed_bundle *b);
/* The SPIFFE bundle document of b (keys, spiffe_sequence, spiffe_refresh_hint when > 0).
 * The caller frees; NULL on failure. */
char *fed_bundle_to_spiffe_json(const struct fed_bundle *b);

/* Checks what every stored bundle must be: a valid trust domain name, at least one authority,
 * every X.509 authority a parseable CA certificate, at most FED_BUNDLE_MAX_AUTHORITIES of each
 * kind, sequence >= 0, a known source. 0, or -EINVAL with the reason in err. */
int fed_bundle_validate(const struct fed_bundle *b, char *err, size_t errlen);

/* Builds a bundle of trust_domain from a document: PEM CERTIFICATE blocks (no JWT authorities)
 * or a SPIFFE bundle document (a JSON object: its keys, spiffe_sequence and
 * spiffe_refresh_hint). The sequence is 0 when the document has none (PEM always), and
 * *has_sequence (may be NULL) says whether it had one. source is FED_SOURCE_MANUAL,
 * refreshed_at 0. The result is validated (fed_bundle_validate). 0, or -EINVAL with the reason
 * in err; *out is the caller's. */
int fed_bundle_parse(const char *trust_domain, const char *data, size_t len,
		     struct fed_bundle **out, bool *has_sequence, char *err, size_t errlen);

#endif
