/* jwt.h: JWT-SVIDs (JWT-SVID.md): signing, validation, and JWK Sets of public keys. */
#ifndef LANYARD_JWT_H
#define LANYARD_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keys.h"

/* A set of (kid, SubjectPublicKeyInfo DER) public keys. */
struct jwks;

/* JWT-SVID: header {"alg","kid","typ":"JWT"}; claims sub, aud (a string if one, else an array),
 * exp, iat. naud >= 1. The caller frees *out. */
int jwt_sign(const lkey *key, const char *kid, const char *sub, const char *const *aud, size_t naud,
	     int64_t iat, int64_t exp, char **out);
/* Same, with an "iss" claim when iss is not NULL (the OIDC issuer relying parties check). */
int jwt_sign_iss(const lkey *key, const char *kid, const char *iss, const char *sub,
		 const char *const *aud, size_t naud, int64_t iat, int64_t exp, char **out);

struct jwt_claims {
	char sub[2049];
	int64_t exp, iat; /* iat 0 when absent */
	json_t *all;      /* the whole claims object, owned */
};
/* Validates a JWT-SVID: compact form, header alg in RS/ES/PS 256/384/512 (never none/HS*), typ JWT
 * or JOSE if present, kid required and present in keys, signature valid, exp after now, aud
 * contains audience, sub a valid SPIFFE ID. 0, or -1 with a reason in err. out may be NULL. */
int jwt_validate(const char *token, const struct jwks *keys, const char *audience, int64_t now,
		 struct jwt_claims *out, char *err, size_t errlen);
void jwt_claims_free(struct jwt_claims *c);
/* Reads the unverified sub claim (to find the trust domain before choosing keys). 0 or -1. */
int jwt_peek_sub(const char *token, char *sub, size_t sublen);

struct jwks *jwks_new(void);
/* Adds a copy of the key. -1 when the kid is empty or already present, or the SPKI is not an
 * accepted key (EC P-256/P-384, RSA >= 2048). */
int jwks_add(struct jwks *s, const char *kid, const uint8_t *spki, size_t spki_len);
size_t jwks_count(const struct jwks *s);
/* The SPKI DER of kid, or NULL. Valid until the set is freed. */
const uint8_t *jwks_find(const struct jwks *s, const char *kid, size_t *spki_len);
/* The i-th key (i < jwks_count): its kid and SPKI. */
const char *jwks_get(const struct jwks *s, size_t i, const uint8_t **spki, size_t *spki_len);
/* RFC 7517 JWK objects: {"kty":"EC","crv":"P-256","x","y","kid","use"} or RSA {"n","e"}.
 * use may be NULL (no "use" member). New reference, NULL on failure. */
json_t *jwk_from_spki(const uint8_t *spki, size_t spki_len, const char *kid, const char *use);
/* JWK Set JSON {"keys":[{..., "use":"jwt-svid"}...]}. The caller frees. */
char *jwks_to_json(const struct jwks *s);
/* Parses a JWK Set (or a SPIFFE bundle): keys with a use other than "jwt-svid" are skipped, keys
 * without a use are taken when they have a kid; unknown kty/crv are skipped; a broken key of a
 * known type, a jwt-svid key without kid or a duplicate kid is an error. 0, or -1 with a reason
 * in err. */
int jwks_from_json(const char *json, size_t len, struct jwks **out, char *err, size_t errlen);
/* Same, from an already parsed "keys" array holder object. */
int jwks_from_jansson(const json_t *root, struct jwks **out, char *err, size_t errlen);
void jwks_free(struct jwks *s);

#endif
