/* x509.h: X.509 for SPIFFE on wolfSSL. One API in two halves: x509_build.c writes (CSRs, CA
 * certificates, X509-SVID leaves), x509.c reads (CSR and certificate parsing, chain splitting and
 * verification). Both are stateless and safe from any thread. Certificates travel as PEM, so
 * der_pem.h (pem_encode, pem_decode_concat) comes with this header. */
#ifndef LANYARD_X509_H
#define LANYARD_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "der_pem.h"
#include "keys.h"

/* ---- building (x509_build.c) ---- */

/* PKCS#10 CSR with subject CN=lanyard, signed with key. The caller frees *der. */
int x509_csr_create(const lkey *key, uint8_t **der, size_t *len);

struct x509_leaf_params {
	const char *spiffe_id;           /* the one URI SAN */
	const char *const *dns_names;    /* extra DNS SANs; the first one is also the CN */
	size_t n_dns;
	int64_t not_before, not_after;   /* unix seconds, written exactly */
	const uint8_t *spki;             /* subject public key (from the CSR) */
	size_t spki_len;
};
/* Signs an X509-SVID leaf: exactly one URI SAN (+DNS SANs; SAN critical when the subject is
 * empty), basicConstraints critical CA:FALSE, keyUsage critical digitalSignature
 * (+keyEncipherment for RSA, keyAgreement for EC), EKU serverAuth+clientAuth, random 16-byte
 * serial (top bit cleared), AKID/SKID, validity exactly not_before..not_after. The issuer is the
 * CA certificate ca_der (its subject bytes are copied exactly), signed with ca_key, which must be
 * the key of ca_der. The caller frees *der. */
int x509_sign_leaf(const lkey *ca_key, const uint8_t *ca_der, size_t ca_len,
		   const struct x509_leaf_params *p, uint8_t **der, size_t *len);

/* x509_sign_leaf in halves, for leaves signed together (lkey_sign_digests). x509_issuer_new
 * parses the CA certificate ca_der once for many leaves (NULL when ca_key is not its key, or out
 * of memory); it borrows ca_key. x509_leaf_tbs builds a leaf's body to sign into *buf (a fresh
 * work buffer; *body_len bytes), x509_leaf_finish wraps it with the signature (over
 * lkey_cert_digest of the body) and hands buf, cut to size, back as *der; buf is freed on
 * failure. An issuer is read-only once made: safe from any thread. */
struct x509_issuer;
struct x509_issuer *x509_issuer_new(const lkey *ca_key, const uint8_t *ca_der, size_t ca_len);
void x509_issuer_free(struct x509_issuer *iss);
int x509_leaf_tbs(const struct x509_issuer *iss, const struct x509_leaf_params *p, uint8_t **buf,
		  size_t *body_len);
int x509_leaf_finish(const struct x509_issuer *iss, uint8_t *buf, size_t body_len,
		     const uint8_t *sig, size_t siglen, uint8_t **der, size_t *len);

struct x509_ca_params {
	const char *spiffe_id;   /* "spiffe://example.org" (URI SAN, no path); may be NULL */
	const char *common_name; /* e.g. "Lanyard CA" */
	int64_t not_before, not_after;
};
/* Makes a CA certificate (basicConstraints critical cA=true, no pathLen; keyUsage critical
 * keyCertSign+cRLSign+digitalSignature; SKID/AKID) with subject CN=common_name for subject_key. issuer_key/issuer_der NULL: self-signed; otherwise signed by that (upstream) CA.
 * The caller frees *der. */
int x509_make_ca(const lkey *subject_key, const lkey *issuer_key, const uint8_t *issuer_der,
		 size_t issuer_len, const struct x509_ca_params *p, uint8_t **der, size_t *len);

/* ---- reading and verifying (x509.c) ---- */

struct csr_info {
	uint8_t *spki; /* SubjectPublicKeyInfo DER, owned */
	size_t spki_len;
	enum key_type type;
};
/* Parses a DER CSR, verifies its self-signature and extracts the public key. Only EC P-256/P-384
 * and RSA >= 2048 are accepted. 0, or -1 with a reason in err. */
int x509_csr_parse(const uint8_t *der, size_t len, struct csr_info *out, char *err, size_t errlen);
void csr_info_free(struct csr_info *c);

struct x509_info {
	char spiffe_id[2049]; /* first URI SAN, "" if none */
	int n_uri_sans;
	char serial[80];      /* lower-case hex */
	int64_t not_before, not_after;
	bool is_ca;
	char sha256[65];      /* hex SHA-256 of the DER: the fingerprint */
	char subject[256];
	uint8_t *spki;        /* owned, free with x509_info_free */
	size_t spki_len;
	uint8_t ski[20];      /* subject key identifier if present */
	size_t ski_len;
};
/* Parses one DER certificate (no signature check). 0, or -1 with a reason in err. */
int x509_parse(const uint8_t *der, size_t len, struct x509_info *out, char *err, size_t errlen);
void x509_info_free(struct x509_info *i);

/* Splits concatenated DER certificates (a Workload API chain/bundle) into pieces that point into
 * buf. The caller frees *certs and *lens (not the pieces). 0, or -1 when buf is not a sequence
 * of whole DER SEQUENCEs (an empty buf gives n = 0). */
int x509_split_der(const uint8_t *buf, size_t len, const uint8_t ***certs, size_t **lens, size_t *n);

/* Verifies chain (leaf first, then optional intermediates, concatenated DER, in order) against
 * roots (concatenated DER) at time now: every signature, every validity period (roots included),
 * issuers are CAs with keyCertSign when keyUsage is present, path length limits, no unknown
 * critical extension. The leaf's own CA flag and SAN are NOT checked: for an X509-SVID also
 * check x509_parse's is_ca == false and the SPIFFE ID. 0 = ok, or -1 with a reason in err. */
int x509_verify(const uint8_t *chain, size_t chain_len, const uint8_t *roots, size_t roots_len,
		int64_t now, char *err, size_t errlen);

/* True when the public half of k is the subject key of the DER certificate. */
bool lkey_matches_cert(const lkey *k, const uint8_t *cert_der, size_t cert_len);
/* True when der is a CA certificate (basicConstraints cA) whose subject key is k's public half:
 * the check every issuer gets before it signs. */
bool x509_ca_matches_key(const uint8_t *der, size_t len, const lkey *k);

#endif
