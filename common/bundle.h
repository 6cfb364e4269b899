/* bundle.h: SPIFFE trust bundle documents (SPIFFE_Trust_Domain_and_Bundle.md) and PEM bundles. */
#ifndef LANYARD_BUNDLE_H
#define LANYARD_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"

/* {"keys":[{"use":"x509-svid","kty":..,"crv":..,"x":..,"y":..,"x5c":["<base64 DER>"]} ...,
 *  {"use":"jwt-svid","kid":..,...} ...], "spiffe_sequence":N, "spiffe_refresh_hint":S}.
 * x509 = concatenated DER CA certificates; jwt may be NULL; sequence/refresh_hint < 0 omit the
 * member. The caller frees. NULL on failure. */
char *bundle_to_spiffe_json(const uint8_t *x509, size_t x509_len, const struct jwks *jwt,
			    int64_t sequence, int64_t refresh_hint);
/* Concatenated "CERTIFICATE" PEM blocks of the DER certificates. The caller frees. */
char *bundle_to_pem(const uint8_t *x509, size_t x509_len);
/* Limits on a bundle document from a peer (a federated trust domain's bundle endpoint, a file):
 * a real one holds a handful of authorities in a few KiB. */
#define BUNDLE_DOC_MAX (1024 * 1024)
#define BUNDLE_KEYS_MAX 1024

/* Parses a SPIFFE bundle document (at most BUNDLE_DOC_MAX bytes and BUNDLE_KEYS_MAX keys; each
 * key an object whose "use", when present, is a string; keys of an unknown use are skipped, as
 * RFC 7517 allows): x509-svid keys' x5c certificates as concatenated DER (the
 * caller frees *x509), jwt-svid keys as a JWK Set, spiffe_sequence and refresh hint (-1 when
 * absent). Any out pointer may be NULL. 0, or -1 with a reason in err. */
int bundle_from_spiffe_json(const char *json, size_t len, uint8_t **x509, size_t *x509_len,
			    struct jwks **jwt, int64_t *sequence, int64_t *refresh_hint, char *err,
			    size_t errlen);

#endif
