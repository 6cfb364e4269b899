/* fed_relationship.c: federation relationships as JSON documents, validated. */
#include "fed_relationship.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "der_pem.h"
#include "spiffeid.h"
#include "util.h"

#define URL_MAX 2048

static const char *const profile_names[] = {
	[FED_PROFILE_HTTPS_SPIFFE] = "https_spiffe",
	[FED_PROFILE_HTTPS_WEB] = "https_web",
};

static const char *const members[] = {
	"trust_domain", "bundle_endpoint_url", "bundle_endpoint_profile", "endpoint_spiffe_id",
	"trust_bundle", "created_at", "updated_at",
};

const char *fed_profile_name(enum fed_profile p)
{
	return (unsigned)p < ARRAY_LEN(profile_names) ? profile_names[p] : "unknown";
}

int fed_profile_parse(const char *s, enum fed_profile *out)
{
	for (size_t i = 0; s && i < ARRAY_LEN(profile_names); i++) {
		if (strcmp(s, profile_names[i]) == 0) {
			*out = (enum fed_profile)i;
			return 0;
		}
	}
	return -1;
}

json_t *fed_relationship_to_json(const struct fed_relationship *r)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I}", "trust_domain", r->trust_domain,
			      "bundle_endpoint_url", r->bundle_endpoint_url,
			      "bundle_endpoint_profile", fed_profile_name(r->profile),
			      "created_at", (json_int_t)r->created_at, "updated_at",
			      (json_int_t)r->updated_at);
	if (j && r->endpoint_spiffe_id)
		json_object_set_new(j, "endpoint_spiffe_id", json_string(r->endpoint_spiffe_id));
	if (j && r->trust_bundle_pem)
		json_object_set_new(j, "trust_bundle", json_string(r->trust_bundle_pem));
	return j;
}

/* https://host[:port][/path]: no userinfo, query is allowed, no fragment, printable ASCII. */
static int url_check(const char *u, char *err, size_t errlen)
{
	size_t len = strlen(u);
	if (len > URL_MAX)
		return errorf(err, errlen, "bundle_endpoint_url is longer than %d bytes", URL_MAX);
	if (strncmp(u, "https://", 8) != 0)
		return errorf(err, errlen, "bundle_endpoint_url \"%.200s\" must start with https://",
			      u);
	for (size_t i = 0; i < len; i++)
		if (u[i] <= ' ' || u[i] >= 0x7f || u[i] == '#')
			return errorf(err, errlen, "bundle_endpoint_url \"%.200s\": invalid character "
				      "at offset %zu", u, i);
	const char *host = u + 8;
	size_t hl = strcspn(host, "/?");
	if (hl == 0 || memchr(host, '@', hl))
		return errorf(err, errlen, "bundle_endpoint_url \"%.200s\": needs a host and no "
			      "userinfo", u);
	return 0;
}

static int bundle_check(const char *pem, char *err, size_t errlen)
{
	uint8_t *der = NULL;
	size_t len = 0;
	if (strlen(pem) > FED_TRUST_BUNDLE_MAX)
		return errorf(err, errlen, "trust_bundle is larger than %d bytes",
			      FED_TRUST_BUNDLE_MAX);
	if (pem_decode_concat(pem, strlen(pem), "CERTIFICATE", &der, &len) < 0 || len == 0) {
		free(der);
		return errorf(err, errlen, "trust_bundle holds no PEM CERTIFICATE");
	}
	free(der);
	return 0;
}

static int check_members(const json_t *j, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)j, k, v) {
		size_t i = 0;
		while (i < ARRAY_LEN(members) && strcmp(k, members[i]) != 0)
			i++;
		if (i == ARRAY_LEN(members))
			return errorf(err, errlen, "unknown member \"%.64s\"", k);
	}
	return 0;
}

static char *opt_str(const json_t *j, const char *name, int *bad)
{
	const json_t *v = json_object_get(j, name);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = 1;
		return NULL;
	}
	return xstrdup(json_string_value(v));
}

int fed_relationship_from_json(const json_t *j, struct fed_relationship **out, char *err,
			       size_t errlen)
{
	char why[256];
	int bad = 0;
	*out = NULL;
	if (!json_is_object(j))
		return errorf(err, errlen, "a relationship is a JSON object");
	if (check_members(j, err, errlen) < 0)
		return -1;
	struct fed_relationship *r = xcalloc(1, sizeof(*r));
	r->trust_domain = opt_str(j, "trust_domain", &bad);
	r->bundle_endpoint_url = opt_str(j, "bundle_endpoint_url", &bad);
	r->endpoint_spiffe_id = opt_str(j, "endpoint_spiffe_id", &bad);
	r->trust_bundle_pem = opt_str(j, "trust_bundle", &bad);
	char *profile = opt_str(j, "bundle_endpoint_profile", &bad);
	r->created_at = json_integer_value(json_object_get(j, "created_at"));
	r->updated_at = json_integer_value(json_object_get(j, "updated_at"));
	int ret = -1;
	if (bad) {
		errorf(err, errlen, "a member that should be a string is not");
		goto out;
	}
	if (!r->trust_domain || trust_domain_validate(r->trust_domain, why, sizeof(why)) < 0) {
		errorf(err, errlen, "trust_domain \"%.255s\": %s", r->trust_domain ? r->trust_domain : "",
		       r->trust_domain ? why : "required");
		goto out;
	}
	if (!r->bundle_endpoint_url) {
		errorf(err, errlen, "bundle_endpoint_url is required");
		goto out;
	}
	if (url_check(r->bundle_endpoint_url, err, errlen) < 0)
		goto out;
	if (fed_profile_parse(profile ? profile : "https_spiffe", &r->profile) < 0) {
		errorf(err, errlen, "bundle_endpoint_profile \"%.64s\": must be https_spiffe or "
			"https_web", profile);
		goto out;
	}
	if (r->profile == FED_PROFILE_HTTPS_SPIFFE) {
		char td[256];
		if (!r->endpoint_spiffe_id) {
			errorf(err, errlen, "endpoint_spiffe_id is required with https_spiffe");
			goto out;
		}
		if (spiffeid_parse(r->endpoint_spiffe_id, td, NULL, why, sizeof(why)) < 0) {
			errorf(err, errlen, "endpoint_spiffe_id \"%.255s\": %s", r->endpoint_spiffe_id,
			       why);
			goto out;
		}
		/* The endpoint is authenticated with the bundle of the relationship's trust
		 * domain, so its SVID must be of that trust domain. */
		if (strcmp(td, r->trust_domain) != 0) {
			errorf(err, errlen, "endpoint_spiffe_id \"%.255s\" is not in trust domain %s",
			       r->endpoint_spiffe_id, r->trust_domain);
			goto out;
		}
	} else if (r->endpoint_spiffe_id || r->trust_bundle_pem) {
		errorf(err, errlen, "endpoint_spiffe_id and trust_bundle are only for https_spiffe");
		goto out;
	}
	if (r->trust_bundle_pem && bundle_check(r->trust_bundle_pem, err, errlen) < 0)
		goto out;
	*out = r;
	r = NULL;
	ret = 0;
out:
	free(profile);
	fed_relationship_free(r);
	return ret;
}

void fed_relationship_free(struct fed_relationship *r)
{
	if (!r)
		return;
	free(r->trust_domain);
	free(r->bundle_endpoint_url);
	free(r->endpoint_spiffe_id);
	free(r->trust_bundle_pem);
	free(r);
}

void fed_relationship_array_free(struct fed_relationship **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fed_relationship_free(v[i]);
	free(v);
}
