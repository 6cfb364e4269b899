/* fed_relationship.h: a federation relationship (SPIFFE Federation): a foreign trust domain, the
 * URL of its bundle endpoint, the endpoint profile and, for https_spiffe, the SPIFFE ID the
 * endpoint must present and an operator-supplied initial bundle (PEM) to authenticate it before
 * any bundle of that trust domain was fetched.
 *
 * The datastore keeps each relationship as its JSON document (fed_relationship_to_json), keyed
 * by trust domain; this module is the one place that reads and validates that document, so the
 * admin API and the datastore agree on it. Plain data: no threads, no I/O. */
#ifndef LANYARD_FED_RELATIONSHIP_H
#define LANYARD_FED_RELATIONSHIP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum fed_profile { FED_PROFILE_HTTPS_SPIFFE = 0, FED_PROFILE_HTTPS_WEB = 1 };

/* A trust bundle PEM given at create/update is at most this large. */
#define FED_TRUST_BUNDLE_MAX (256 * 1024)

struct fed_relationship {
	char *trust_domain;        /* "example.org", no scheme */
	char *bundle_endpoint_url; /* https://host[:port][/path] */
	enum fed_profile profile;
	char *endpoint_spiffe_id;  /* https_spiffe: required */
	char *trust_bundle_pem;    /* https_spiffe: optional initial bundle; NULL when none */
	int64_t created_at, updated_at;
};

const char *fed_profile_name(enum fed_profile p);
/* 0 and *out, or -1 for a name other than https_spiffe / https_web. */
int fed_profile_parse(const char *s, enum fed_profile *out);

/* The document: {"trust_domain", "bundle_endpoint_url", "bundle_endpoint_profile",
 * "endpoint_spiffe_id", "trust_bundle" (PEM), "created_at", "updated_at"}. */
json_t *fed_relationship_to_json(const struct fed_relationship *r);
/* Reads and validates a document (from the admin API or the datastore): the trust domain, an
 * https URL without userinfo or fragment, the profile, for https_spiffe an endpoint SPIFFE ID in
 * the relationship's trust domain, a trust bundle of whole PEM certificates. Unknown members are
 * errors. 0 and *out (the caller's), or -1 with a reason naming the member in err. */
int fed_relationship_from_json(const json_t *j, struct fed_relationship **out, char *err,
			       size_t errlen);
void fed_relationship_free(struct fed_relationship *r);
void fed_relationship_array_free(struct fed_relationship **v, size_t n);

#endif
