/* fuzz_x509: certificate parsing (common/x509.h): x509_parse, x509_split_der, pem_decode_concat,
 * x509_verify, and private key loading (keys.h). Agents parse the chains and bundles the server
 * sends, workloads parse what the agent sends, and both daemons read PEM files.
 *
 * The first input byte chooses what to do with the rest ('0'..'5' in the seed files, to keep them
 * readable):
 *   0  one DER certificate: x509_parse
 *   1  concatenated DER: x509_split_der, then x509_parse of each piece
 *   2  PEM text: pem_decode_concat("CERTIFICATE"), then as 1
 *   3  x509_verify: a 2-byte big-endian chain length, the chain, then the roots
 *   4  a DER private key: lkey_from_der
 *   5  PEM text: lkey_from_pem */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "keys.h"
#include "x509.h"

/* 2030-01-01: inside the validity of the generated seeds, and fixed so runs repeat. */
#define NOW 1893456000

static void parse_one(const uint8_t *der, size_t len)
{
	struct x509_info xi;
	char err[256] = "";

	memset(&xi, 0, sizeof(xi));
	if (x509_parse(der, len, &xi, err, sizeof(err)) == 0) {
		FUZZ_CHECK(strlen(xi.spiffe_id) < sizeof(xi.spiffe_id));
		FUZZ_CHECK(strlen(xi.sha256) == 64);
		FUZZ_CHECK(xi.n_uri_sans >= 0);
		FUZZ_CHECK(xi.ski_len <= sizeof(xi.ski));
		FUZZ_CHECK(memchr(xi.serial, 0, sizeof(xi.serial)) != NULL);
		FUZZ_CHECK(memchr(xi.subject, 0, sizeof(xi.subject)) != NULL);
		if (xi.spki) {
			enum key_type t;
			int bits;
			(void)spki_key_type(xi.spki, xi.spki_len, &t, &bits);
		}
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	x509_info_free(&xi);
}

static void split_and_parse(const uint8_t *buf, size_t len)
{
	const uint8_t **certs;
	size_t *lens, n;

	if (x509_split_der(buf, len, &certs, &lens, &n) < 0)
		return;
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(certs[i] >= buf && certs[i] + lens[i] <= buf + len);
		FUZZ_CHECK(certs[i] == buf + total);
		total += lens[i];
		parse_one(certs[i], lens[i]);
	}
	FUZZ_CHECK(total == len);
	free(certs);
	free(lens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 6;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	switch (mode) {
	case 0:
		parse_one(p, n);
		break;
	case 1:
		split_and_parse(p, n);
		break;
	case 2: {
		/* pem_decode_concat takes a length, but the callers' PEM comes from files read as
		 * NUL-terminated text: give it an exact-size buffer to catch reads past len. */
		uint8_t *der;
		size_t der_len;
		if (pem_decode_concat((const char *)p, n, "CERTIFICATE", &der, &der_len) == 0) {
			FUZZ_CHECK(der != NULL);
			split_and_parse(der, der_len);
			free(der);
		} else {
			FUZZ_CHECK(der == NULL);
		}
		break;
	}
	case 3: {
		if (n < 2)
			break;
		size_t clen = ((size_t)p[0] << 8) | p[1];
		p += 2;
		n -= 2;
		if (clen > n)
			clen = n;
		char err[256] = "";
		if (x509_verify(p, clen, p + clen, n - clen, NOW, err, sizeof(err)) < 0)
			FUZZ_CHECK(err[0] != '\0');
		break;
	}
	case 4: {
		lkey *k = NULL;
		if (lkey_from_der(p, n, &k) == 0) {
			uint8_t *spki;
			size_t spki_len;
			FUZZ_CHECK(k != NULL);
			FUZZ_CHECK(lkey_public_der(k, &spki, &spki_len) == 0);
			FUZZ_CHECK(lkey_matches_spki(k, spki, spki_len));
			free(spki);
		}
		lkey_free(k);
		break;
	}
	case 5: {
		lkey *k = NULL;
		if (lkey_from_pem((const char *)p, n, &k) == 0)
			FUZZ_CHECK(k != NULL);
		lkey_free(k);
		break;
	}
	}
	return 0;
}
