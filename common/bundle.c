/* bundle.c: SPIFFE bundle documents (a JWK Set with x509-svid and jwt-svid keys) and PEM bundles. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "util.h"
#include "x509.h"

char *bundle_to_spiffe_json(const uint8_t *x509, size_t x509_len, const struct jwks *jwt,
			    int64_t sequence, int64_t refresh_hint)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	json_t *root = json_object(), *keys = json_array();
	char *out = NULL;

	if (!root || !keys || json_object_set(root, "keys", keys) != 0)
		goto out;
	if (x509_len && x509_split_der(x509, x509_len, &certs, &lens, &n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct x509_info info;
		if (x509_parse(certs[i], lens[i], &info, NULL, 0) < 0)
			goto out;
		/* SPIFFE_Trust_Domain_and_Bundle.md 4.2.1: no kid, x5c with exactly one cert. */
		json_t *k = jwk_from_spki(info.spki, info.spki_len, NULL, "x509-svid");
		x509_info_free(&info);
		char *b64 = base64_encode(certs[i], lens[i]);
		if (!k || !b64 || json_object_set_new(k, "x5c", json_pack("[s]", b64)) != 0 ||
		    json_array_append_new(keys, k) != 0) {
			free(b64);
			json_decref(k);
			goto out;
		}
		free(b64);
	}
	for (size_t i = 0; i < jwks_count(jwt); i++) {
		const uint8_t *spki;
		size_t spki_len;
		const char *kid = jwks_get(jwt, i, &spki, &spki_len);
		json_t *k = jwk_from_spki(spki, spki_len, kid, "jwt-svid");
		if (!k || json_array_append_new(keys, k) != 0)
			goto out;
	}
	if (sequence >= 0 &&
	    json_object_set_new(root, "spiffe_sequence", json_integer((json_int_t)sequence)) != 0)
		goto out;
	if (refresh_hint >= 0 &&
	    json_object_set_new(root, "spiffe_refresh_hint", json_integer((json_int_t)refresh_hint)) != 0)
		goto out;
	out = json_dumps(root, JSON_COMPACT);
out:
	free(certs);
	free(lens);
	json_decref(keys);
	json_decref(root);
	return out;
}

char *bundle_to_pem(const uint8_t *x509, size_t x509_len)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0, len = 0;
	char *out = NULL;

	if (x509_split_der(x509, x509_len, &certs, &lens, &n) < 0)
		return NULL;
	out = calloc(1, 1);
	for (size_t i = 0; out && i < n; i++) {
		char *pem = pem_encode("CERTIFICATE", certs[i], lens[i]);
		if (!pem) {
			free(out);
			out = NULL;
			break;
		}
		size_t pl = strlen(pem);
		char *grown = realloc(out, len + pl + 1);
		if (!grown) {
			free(pem);
			free(out);
			out = NULL;
			break;
		}
		out = grown;
		memcpy(out + len, pem, pl + 1);
		len += pl;
		free(pem);
	}
	free(certs);
	free(lens);
	return out;
}

int bundle_from_spiffe_json(const char *json, size_t len, uint8_t **x509, size_t *x509_len,
			    struct jwks **jwt, int64_t *sequence, int64_t *refresh_hint, char *err,
			    size_t errlen)
{
	json_error_t je;
	json_t *root = NULL, *k;
	uint8_t *der = NULL;
	size_t der_len = 0, i;
	struct jwks *set = NULL;
	int ret = -1;

	if (x509) {
		*x509 = NULL;
		*x509_len = 0;
	}
	if (jwt)
		*jwt = NULL;
	if (!json) {
		errorf(err, errlen, "no bundle");
		return -1;
	}
	if (len > BUNDLE_DOC_MAX) {
		errorf(err, errlen, "bundle document is %zu bytes, more than the %d allowed", len,
		       BUNDLE_DOC_MAX);
		return -1;
	}
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(root)) {
		errorf(err, errlen, "bundle is not a JSON object: %s", root ? "" : je.text);
		goto out;
	}
	const json_t *keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		errorf(err, errlen, "bundle has no \"keys\" array");
		goto out;
	}
	if (json_array_size(keys) > BUNDLE_KEYS_MAX) {
		errorf(err, errlen, "bundle has %zu keys, more than the %d allowed",
		       json_array_size(keys), BUNDLE_KEYS_MAX);
		goto out;
	}
	json_array_foreach(keys, i, k) {
		if (!json_is_object(k)) {
			errorf(err, errlen, "bundle key %zu is not an object", i);
			goto out;
		}
		const json_t *usej = json_object_get(k, "use");
		const char *use = json_string_value(usej);
		if (usej && !use) {
			errorf(err, errlen, "bundle key %zu has a non-string \"use\"", i);
			goto out;
		}
		if (!use || strcmp(use, "x509-svid") != 0)
			continue;
		const json_t *x5c = json_object_get(k, "x5c");
		if (!json_is_array(x5c) || json_array_size(x5c) != 1 ||
		    !json_is_string(json_array_get(x5c, 0))) {
			errorf(err, errlen, "x509-svid key %zu must have exactly one x5c certificate", i);
			goto out;
		}
		const json_t *c = json_array_get(x5c, 0);
		uint8_t *cert;
		size_t cert_len;
		struct x509_info info;
		if (base64_decode(json_string_value(c), json_string_length(c), &cert, &cert_len) < 0) {
			errorf(err, errlen, "x509-svid key %zu: x5c is not base64", i);
			goto out;
		}
		if (x509_parse(cert, cert_len, &info, NULL, 0) < 0) {
			free(cert);
			errorf(err, errlen, "x509-svid key %zu: not a certificate", i);
			goto out;
		}
		x509_info_free(&info);
		uint8_t *grown = realloc(der, der_len + cert_len);
		if (!grown) {
			free(cert);
			errorf(err, errlen, "out of memory");
			goto out;
		}
		der = grown;
		memcpy(der + der_len, cert, cert_len);
		der_len += cert_len;
		free(cert);
	}
	if (jwks_from_jansson(root, &set, err, errlen) < 0)
		goto out;
	/* Both are non-negative integers when present; a negative one would read back as
	 * "absent" (-1), so it is refused rather than passed on. */
	const json_t *seq = json_object_get(root, "spiffe_sequence");
	const json_t *hint = json_object_get(root, "spiffe_refresh_hint");
	if ((seq && (!json_is_integer(seq) || json_integer_value(seq) < 0)) ||
	    (hint && (!json_is_integer(hint) || json_integer_value(hint) < 0))) {
		snprintf(err, errlen, "spiffe_sequence and spiffe_refresh_hint must be "
				      "non-negative integers");
		goto out;
	}
	if (sequence)
		*sequence = seq ? (int64_t)json_integer_value(seq) : -1;
	if (refresh_hint)
		*refresh_hint = hint ? (int64_t)json_integer_value(hint) : -1;
	if (x509) {
		*x509 = der;
		*x509_len = der_len;
		der = NULL;
	}
	if (jwt) {
		*jwt = set;
		set = NULL;
	}
	ret = 0;
out:
	free(der);
	jwks_free(set);
	json_decref(root);
	return ret;
}
