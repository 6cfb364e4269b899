/* keys.h: private keys (EC P-256/P-384, RSA-2048) on wolfSSL: generation, PKCS#8/PEM, JWS signing. */
#ifndef LANYARD_KEYS_H
#define LANYARD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum key_type { KEY_EC_P256, KEY_EC_P384, KEY_RSA_2048 };

/* "ec-p256" | "ec-p384" | "rsa-2048"; returns 0, or -1 on anything else. */
int key_type_parse(const char *s, enum key_type *out);
const char *key_type_name(enum key_type t);

/* Releases the calling thread's FP_ECC point tables. Debian's wolfSSL (fastmath + FP_ECC) gives
 * every thread a table of about 800 KB per point it multiplies, freed only by that thread; the
 * SP-math build (LANYARD_WOLFSSL=sp) has none, and this does nothing there. Threads call it after
 * a burst of ECC work and before they exit. */
void keys_release_thread_ecc_cache(void);

/* An opaque private key (ecc_key or RsaKey). All functions are safe to call from several threads
 * on the same key at once except lkey_free. */
typedef struct lkey lkey;

int lkey_generate(enum key_type type, lkey **out);
/* PKCS#8 (unencrypted), or SEC1 "EC PRIVATE KEY" / PKCS#1 "RSA PRIVATE KEY" DER.
 * RSA keys must be at least 2048 bits; EC keys P-256 or P-384. */
int lkey_from_der(const uint8_t *der, size_t len, lkey **out);
/* The first PEM block labelled "PRIVATE KEY", "EC PRIVATE KEY" or "RSA PRIVATE KEY". */
int lkey_from_pem(const char *pem, size_t len, lkey **out);
/* Unencrypted PKCS#8 DER; the caller wipes and frees *der. */
int lkey_to_pkcs8_der(const lkey *k, uint8_t **der, size_t *len);
/* PKCS#8 "PRIVATE KEY" PEM, NUL-terminated; the caller wipes (strlen) and frees *pem. */
int lkey_to_pem(const lkey *k, char **pem);
/* SubjectPublicKeyInfo DER of the public half; the caller frees *der. */
int lkey_public_der(const lkey *k, uint8_t **der, size_t *len);
enum key_type lkey_type(const lkey *k);
/* "ES256", "ES384" or "RS256". */
const char *lkey_jws_alg(const lkey *k);
/* Signs data (hashing it with the alg's hash) in JWS form (RFC 7518): ECDSA as raw r||s of fixed
 * width, RSA as PKCS#1 v1.5. The caller frees *sig. */
int lkey_sign_jws(const lkey *k, const uint8_t *data, size_t len, uint8_t **sig, size_t *siglen);
/* Verifies a JWS signature against a SubjectPublicKeyInfo DER. alg is one of ES256/ES384/ES512,
 * RS256/RS384/RS512, PS256/PS384/PS512 and must fit the key (curve, key type). 0 = valid,
 * negative otherwise. */
int jws_verify_spki(const char *alg, const uint8_t *spki, size_t spki_len, const uint8_t *data,
		    size_t len, const uint8_t *sig, size_t siglen);
/* True when the public half of k is exactly the key in the SubjectPublicKeyInfo DER. */
bool lkey_matches_spki(const lkey *k, const uint8_t *spki, size_t spki_len);
/* Parses an SPKI DER: 0 with the key type (RSA of any size >= 2048 reports KEY_RSA_2048), or -1
 * for anything else (other curves, RSA < 2048, garbage). bits may be NULL. */
int spki_key_type(const uint8_t *spki, size_t spki_len, enum key_type *type, int *bits);
/* Wipes and frees; NULL-safe. */
void lkey_free(lkey *k);

/* True for the JWS algorithms jws_verify_spki knows (ES/RS/PS 256/384/512). */
bool jws_alg_supported(const char *alg);

/* ---- Lower level, for the other crypto modules (x509*.c, jwt.c) ---- */

/* wolfSSL certificate signature type for the key (CTC_SHA256wECDSA, CTC_SHA384wECDSA,
 * CTC_SHA256wRSA). */
int lkey_cert_sig_type(const lkey *k);
/* Signs the certificate or CSR body of body_len bytes at buf (buf_size bytes available) and
 * wraps it in the signed SEQUENCE in place. Returns the final DER size, or -1. */
int lkey_sign_cert(const lkey *k, uint8_t *buf, size_t body_len, size_t buf_size);

/* The largest signature lkey_sign_digest writes (RSA-4096; ECDSA DER is at most 139). */
#define LKEY_SIG_MAX 512
/* Signs a SHA-256/384/512 digest (the length says which): ECDSA as DER, RSA as PKCS#1 v1.5
 * over the DigestInfo. *siglen is the capacity of sig on entry (at least LKEY_SIG_MAX) and the
 * signature's length on return. */
int lkey_sign_digest(const lkey *k, const uint8_t *digest, size_t dlen, uint8_t *sig,
		     size_t *siglen);

/* Signs n digests of dlen bytes each into sigs[i] (siglens[i] their lengths): a remote key with
 * a batch function (lkey_remote_set_batch) in one call to it, any other key one by one. All or
 * nothing: -1 when any signature failed. */
int lkey_sign_digests(const lkey *k, size_t n, const uint8_t *const *digests, size_t dlen,
		      uint8_t (*sigs)[LKEY_SIG_MAX], size_t *siglens);

/* lkey_sign_cert in two halves, for certificates signed together by lkey_sign_digests:
 * lkey_cert_digest hashes the body with the hash of k's signature algorithm (digest has room for
 * LKEY_DIGEST_MAX bytes), lkey_cert_wrap wraps the body at buf in the signed SEQUENCE. */
#define LKEY_DIGEST_MAX 64
int lkey_cert_digest(const lkey *k, const uint8_t *body, size_t body_len, uint8_t *digest,
		     size_t *dlen);
int lkey_cert_wrap(const lkey *k, uint8_t *buf, size_t body_len, size_t buf_size,
		   const uint8_t *sig, size_t siglen);

/* A private key held by another process (server/signer.h): signing calls sign(ctx, handle, ...)
 * with the same contract as lkey_sign_digest, and the public half is spki. Every lkey function
 * works on it except the exports of the private key (lkey_to_pkcs8_der, lkey_to_pem fail). */
typedef int (*lkey_remote_sign_fn)(void *ctx, uint32_t handle, const uint8_t *digest,
				   size_t dlen, uint8_t *sig, size_t *siglen);
/* NULL when spki is not a key of that type, or out of memory. spki is copied. */
lkey *lkey_remote_new(enum key_type type, const uint8_t *spki, size_t spki_len,
		      lkey_remote_sign_fn sign, void *ctx, uint32_t handle);

/* Many signatures in one call, same contract as lkey_sign_digests. */
typedef int (*lkey_remote_sign_batch_fn)(void *ctx, uint32_t handle, size_t n,
					 const uint8_t *const *digests, size_t dlen,
					 uint8_t (*sigs)[LKEY_SIG_MAX], size_t *siglens);
/* Gives the remote key k (lkey_remote_new) a batch function; no effect on other keys. */
void lkey_remote_set_batch(lkey *k, lkey_remote_sign_batch_fn batch);

/* With it, ECDSA signatures are DER (X.509 form) and the curve need not match the hash. */
#define SPKI_VERIFY_DER_ECDSA 1u
/* Verifies sig over data with the SPKI's key; alg is a JWS algorithm name. 0 = valid. */
int spki_verify(const char *alg, unsigned flags, const uint8_t *spki, size_t spki_len,
		const uint8_t *data, size_t len, const uint8_t *sig, size_t siglen);

#endif
