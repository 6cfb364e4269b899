/* Unit tests for common/x509.c; issued certificates are also checked with the openssl CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "util.h"
#include "x509.h"

static const enum key_type all_types[] = { KEY_EC_P256, KEY_EC_P384, KEY_RSA_2048 };

/* 2024-01-01T00:00:00Z and 2051-06-01T12:34:56Z: one UTCTime, one GeneralizedTime. */
#define T2024 1704067200
#define T2051 2569235696

struct ca {
	lkey *key;
	uint8_t *der;
	size_t len;
};

static void make_ca(struct ca *ca, enum key_type t, const struct ca *issuer, const char *cn,
		    int64_t nb, int64_t na)
{
	struct x509_ca_params p = { "spiffe://example.org", cn, nb, na };
	assert_int_equal(lkey_generate(t, &ca->key), 0);
	assert_int_equal(x509_make_ca(ca->key, issuer ? issuer->key : NULL,
				      issuer ? issuer->der : NULL, issuer ? issuer->len : 0, &p,
				      &ca->der, &ca->len),
			 0);
}

static void free_ca(struct ca *ca)
{
	lkey_free(ca->key);
	free(ca->der);
}

static void issue(const struct ca *ca, enum key_type t, const char *id, const char *const *dns,
		  size_t n_dns, int64_t nb, int64_t na, lkey **leaf_key, uint8_t **der, size_t *len)
{
	uint8_t *csr, *spki;
	size_t csr_len, spki_len;
	struct csr_info ci;
	char err[128];

	assert_int_equal(lkey_generate(t, leaf_key), 0);
	assert_int_equal(x509_csr_create(*leaf_key, &csr, &csr_len), 0);
	assert_int_equal(x509_csr_parse(csr, csr_len, &ci, err, sizeof(err)), 0);
	assert_int_equal(lkey_public_der(*leaf_key, &spki, &spki_len), 0);
	assert_int_equal(ci.spki_len, spki_len);
	assert_memory_equal(ci.spki, spki, spki_len);
	struct x509_leaf_params p = { id, dns, n_dns, nb, na, ci.spki, ci.spki_len };
	assert_int_equal(x509_sign_leaf(ca->key, ca->der, ca->len, &p, der, len), 0);
	csr_info_free(&ci);
	free(csr);
	free(spki);
}

static void test_csr(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		lkey *k;
		uint8_t *csr;
		size_t len;
		struct csr_info ci;
		char err[128];

		assert_int_equal(lkey_generate(all_types[i], &k), 0);
		assert_int_equal(x509_csr_create(k, &csr, &len), 0);
		assert_int_equal(x509_csr_parse(csr, len, &ci, err, sizeof(err)), 0);
		assert_int_equal(ci.type, all_types[i]);
		assert_true(lkey_matches_spki(k, ci.spki, ci.spki_len));
		csr_info_free(&ci);
		csr_info_free(&ci);

		/* A flipped bit in the public key or in the signature breaks the self-signature;
		 * a flip anywhere never crashes and never yields a different key silently. */
		int accepted = 0;
		for (size_t b = 0; b < len; b++) {
			csr[b] ^= 0x01;
			if (x509_csr_parse(csr, len, &ci, err, sizeof(err)) == 0) {
				accepted++;
				assert_true(lkey_matches_spki(k, ci.spki, ci.spki_len));
				csr_info_free(&ci);
			} else {
				assert_true(err[0] != 0);
			}
			csr[b] ^= 0x01;
		}
		/* Only flips in the (unsigned) outer encoding could survive; none should. */
		assert_int_equal(accepted, 0);
		for (size_t cut = 0; cut < len; cut += 7)
			assert_int_equal(x509_csr_parse(csr, cut, &ci, err, sizeof(err)), -1);
		free(csr);
		lkey_free(k);
	}
}

static void test_csr_openssl(void **state)
{
	char dir[] = "/tmp/lanyard-csr-XXXXXX";
	char cmd[1024], path[512];
	uint8_t *der;
	size_t len;
	struct csr_info ci;
	char err[128];

	assert_non_null(mkdtemp(dir));
	/* OpenSSL-made CSRs parse; a P-521 CSR is refused with a reason. */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout k.pem -subj /CN=x -outform DER -out ok.der 2>/dev/null && "
		 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes "
		 "-keyout k2.pem -subj /CN=x -outform DER -out p521.der 2>/dev/null && "
		 "openssl req -new -newkey rsa:1024 -nodes "
		 "-keyout k3.pem -subj /CN=x -outform DER -out rsa1024.der 2>/dev/null",
		 dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/ok.der", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &der, &len), 0);
	assert_int_equal(x509_csr_parse(der, len, &ci, err, sizeof(err)), 0);
	assert_int_equal(ci.type, KEY_EC_P256);
	csr_info_free(&ci);
	free(der);
	snprintf(path, sizeof(path), "%s/p521.der", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &der, &len), 0);
	assert_int_equal(x509_csr_parse(der, len, &ci, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "P-256"));
	free(der);
	snprintf(path, sizeof(path), "%s/rsa1024.der", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &der, &len), 0);
	assert_int_equal(x509_csr_parse(der, len, &ci, err, sizeof(err)), -1);
	free(der);
	/* Our CSR passes OpenSSL's own signature check. */
	lkey *k;
	assert_int_equal(lkey_generate(KEY_EC_P384, &k), 0);
	assert_int_equal(x509_csr_create(k, &der, &len), 0);
	snprintf(path, sizeof(path), "%s/mine.der", dir);
	assert_int_equal(file_write_atomic(path, der, len, 0600), 0);
	snprintf(cmd, sizeof(cmd), "openssl req -inform DER -in %s -verify -noout 2>&1 | grep -q 'verify OK'",
		 path);
	assert_int_equal(system(cmd), 0);
	free(der);
	lkey_free(k);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_ca(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		struct ca root, inter;
		struct x509_info info;
		char err[128];

		make_ca(&root, all_types[i], NULL, "Lanyard Root", T2024, T2051);
		assert_int_equal(x509_parse(root.der, root.len, &info, err, sizeof(err)), 0);
		assert_true(info.is_ca);
		assert_string_equal(info.spiffe_id, "spiffe://example.org");
		assert_int_equal(info.n_uri_sans, 1);
		assert_int_equal(info.not_before, T2024);
		assert_int_equal(info.not_after, T2051);
		assert_string_equal(info.subject, "CN=Lanyard Root");
		assert_int_equal(strlen(info.serial), 32);
		assert_int_equal(strlen(info.sha256), 64);
		assert_true(info.ski_len > 0);
		assert_true(lkey_matches_spki(root.key, info.spki, info.spki_len));
		assert_true(lkey_matches_cert(root.key, root.der, root.len));
		x509_info_free(&info);
		x509_info_free(&info);
		/* A self-signed CA verifies against itself. */
		assert_int_equal(x509_verify(root.der, root.len, root.der, root.len, T2024 + 10,
					     err, sizeof(err)),
				 0);

		/* An intermediate signed by the root (of another key type). */
		make_ca(&inter, all_types[(i + 1) % 3], &root, "Lanyard Intermediate", T2024,
			T2024 + 86400);
		assert_int_equal(x509_parse(inter.der, inter.len, &info, err, sizeof(err)), 0);
		assert_true(info.is_ca);
		assert_string_equal(info.subject, "CN=Lanyard Intermediate");
		assert_false(lkey_matches_cert(root.key, inter.der, inter.len));
		x509_info_free(&info);
		assert_int_equal(x509_verify(inter.der, inter.len, root.der, root.len, T2024 + 10,
					     err, sizeof(err)),
				 0);
		/* The root does not chain to the intermediate. */
		assert_int_equal(x509_verify(root.der, root.len, inter.der, inter.len, T2024 + 10,
					     err, sizeof(err)),
				 -1);
		free_ca(&inter);
		free_ca(&root);
	}
}

static char *write_pem(const char *dir, const char *name, const uint8_t *der, size_t len)
{
	char path[512];
	char *pem = pem_encode("CERTIFICATE", der, len);
	assert_non_null(pem);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(file_write_atomic(path, pem, strlen(pem), 0644), 0);
	return pem;
}

static char *run_capture(const char *cmd)
{
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 65536, len = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	size_t n;
	while ((n = fread(out + len, 1, cap - len - 1, f)) > 0)
		len += n;
	out[len] = 0;
	pclose(f);
	return out;
}

static void test_leaf(void **state)
{
	char dir[] = "/tmp/lanyard-x509-XXXXXX";
	assert_non_null(mkdtemp(dir));

	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		for (size_t j = 0; j < ARRAY_LEN(all_types); j++) {
			struct ca ca;
			lkey *leaf_key;
			uint8_t *der;
			size_t len;
			struct x509_info info;
			char err[128], cmd[1024];
			const char *dns[] = { "web.example.org", "web" };
			const int64_t nb = 1893456000 + 3600 * 7 + 61; /* 2030-01-01T07:01:01Z */
			const int64_t na = nb + 3600;

			make_ca(&ca, all_types[i], NULL, "Lanyard CA", T2024, T2051);
			issue(&ca, all_types[j], "spiffe://example.org/ns/prod/sa/web", j == 1 ? dns : NULL,
			      j == 1 ? 2 : 0, nb, na, &leaf_key, &der, &len);

			assert_int_equal(x509_parse(der, len, &info, err, sizeof(err)), 0);
			assert_string_equal(info.spiffe_id, "spiffe://example.org/ns/prod/sa/web");
			assert_int_equal(info.n_uri_sans, 1);
			assert_false(info.is_ca);
			assert_int_equal(strlen(info.serial), 32); /* 16 bytes */
			assert_true(info.serial[0] < '8');	   /* top bit clear */
			assert_int_equal(info.not_before, nb);
			assert_int_equal(info.not_after, na);
			assert_true(info.ski_len > 0);
			assert_true(lkey_matches_spki(leaf_key, info.spki, info.spki_len));
			assert_string_equal(info.subject, j == 1 ? "CN=web.example.org" : "");
			x509_info_free(&info);

			/* Valid inside the window, not before or after. */
			assert_int_equal(x509_verify(der, len, ca.der, ca.len, nb + 1, err, sizeof(err)), 0);
			assert_int_equal(x509_verify(der, len, ca.der, ca.len, na + 1, err, sizeof(err)), -1);
			assert_non_null(strstr(err, "expired"));
			assert_int_equal(x509_verify(der, len, ca.der, ca.len, nb - 1, err, sizeof(err)), -1);
			assert_non_null(strstr(err, "not valid yet"));
			/* Against another CA (with the same name): refused. */
			struct ca other;
			make_ca(&other, all_types[i], NULL, "Lanyard CA", T2024, T2051);
			assert_int_equal(x509_verify(der, len, other.der, other.len, nb + 1, err, sizeof(err)), -1);
			/* Both CAs as roots: the right one is found. */
			size_t both_len = ca.len + other.len;
			uint8_t *both = malloc(both_len);
			memcpy(both, other.der, other.len);
			memcpy(both + other.len, ca.der, ca.len);
			assert_int_equal(x509_verify(der, len, both, both_len, nb + 1, err, sizeof(err)), 0);
			free(both);
			free_ca(&other);
			/* A leaf cannot sign: using it as a CA is refused. */
			assert_int_equal(x509_verify(der, len, der, len, nb + 1, err, sizeof(err)), -1);

			/* OpenSSL agrees. */
			char *p1 = write_pem(dir, "ca.pem", ca.der, ca.len);
			char *p2 = write_pem(dir, "leaf.pem", der, len);
			snprintf(cmd, sizeof(cmd),
				 "openssl verify -attime %lld -CAfile %s/ca.pem %s/leaf.pem 2>&1",
				 (long long)nb + 10, dir, dir);
			char *out = run_capture(cmd);
			if (!strstr(out, ": OK"))
				fail_msg("openssl verify: %s", out);
			free(out);
			snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/leaf.pem -noout -text 2>&1", dir);
			out = run_capture(cmd);
			static const char *want[] = {
				"X509v3 Basic Constraints: critical\n                CA:FALSE",
				"X509v3 Key Usage: critical",
				"Digital Signature",
				"TLS Web Server Authentication",
				"TLS Web Client Authentication",
				"URI:spiffe://example.org/ns/prod/sa/web",
				"X509v3 Subject Key Identifier",
				"X509v3 Authority Key Identifier",
				"Version: 3",
			};
			for (size_t w = 0; w < ARRAY_LEN(want); w++)
				if (!strstr(out, want[w]))
					fail_msg("missing '%s' in:\n%s", want[w], out);
			if (j == 1) {
				assert_non_null(strstr(out, "DNS:web.example.org, DNS:web"));
				assert_non_null(strstr(out, "Subject: CN = web.example.org"));
			} else {
				/* Empty subject: the SAN must be critical (RFC 5280 4.2.1.6). */
				assert_non_null(strstr(out, "X509v3 Subject Alternative Name: critical"));
			}
			assert_non_null(strstr(out, "Not Before: Jan  1 07:01:01 2030 GMT"));
			assert_non_null(strstr(out, "Not After : Jan  1 08:01:01 2030 GMT"));
			free(out);
			/* The AKID of the leaf is the SKID of the CA. */
			snprintf(cmd, sizeof(cmd),
				 "a=$(openssl x509 -in %s/leaf.pem -noout -ext authorityKeyIdentifier | tail -1 | tr -d ' ');"
				 "s=$(openssl x509 -in %s/ca.pem -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' ');"
				 "test -n \"$s\" && test \"$a\" = \"$s\" -o \"$a\" = \"keyid:$s\"",
				 dir, dir);
			assert_int_equal(system(cmd), 0);
			free(p1);
			free(p2);
			free(der);
			lkey_free(leaf_key);
			free_ca(&ca);
		}
	}
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* leaf <- intermediate <- root, with GeneralizedTime validity past 2050. */
static void test_chain(void **state)
{
	char dir[] = "/tmp/lanyard-chain-XXXXXX";
	struct ca root, inter;
	lkey *leaf_key;
	uint8_t *leaf;
	size_t leaf_len;
	char err[128], cmd[1024];
	const int64_t nb = T2051 - 3600, na = T2051 + 3600;

	assert_non_null(mkdtemp(dir));
	make_ca(&root, KEY_EC_P384, NULL, "Root", T2024, T2051 + 86400);
	make_ca(&inter, KEY_EC_P256, &root, "Intermediate", T2024, T2051 + 86400);
	issue(&inter, KEY_EC_P256, "spiffe://example.org/w", NULL, 0, nb, na, &leaf_key, &leaf,
	      &leaf_len);

	struct x509_info info;
	assert_int_equal(x509_parse(leaf, leaf_len, &info, err, sizeof(err)), 0);
	assert_int_equal(info.not_before, nb);
	assert_int_equal(info.not_after, na);
	x509_info_free(&info);

	size_t chain_len = leaf_len + inter.len;
	uint8_t *chain = malloc(chain_len);
	memcpy(chain, leaf, leaf_len);
	memcpy(chain + leaf_len, inter.der, inter.len);
	assert_int_equal(x509_verify(chain, chain_len, root.der, root.len, T2051, err, sizeof(err)), 0);
	/* Without the intermediate, no path. */
	assert_int_equal(x509_verify(leaf, leaf_len, root.der, root.len, T2051, err, sizeof(err)), -1);
	/* The intermediate as a root also works (it is then trusted). */
	assert_int_equal(x509_verify(leaf, leaf_len, inter.der, inter.len, T2051, err, sizeof(err)), 0);
	/* An expired root fails the chain. */
	assert_int_equal(x509_verify(chain, chain_len, root.der, root.len, T2051 + 86400 + 1, err,
				     sizeof(err)),
			 -1);

	/* split_der */
	const uint8_t **certs;
	size_t *lens, n;
	assert_int_equal(x509_split_der(chain, chain_len, &certs, &lens, &n), 0);
	assert_int_equal(n, 2);
	assert_ptr_equal(certs[0], chain);
	assert_int_equal(lens[0], leaf_len);
	assert_ptr_equal(certs[1], chain + leaf_len);
	assert_int_equal(lens[1], inter.len);
	free(certs);
	free(lens);
	assert_int_equal(x509_split_der(chain, 0, &certs, &lens, &n), 0);
	assert_int_equal(n, 0);
	free(certs);
	free(lens);
	assert_int_equal(x509_split_der(chain, chain_len - 1, &certs, &lens, &n), -1);
	uint8_t junk[4] = { 0x04, 0x02, 0x00, 0x00 };
	assert_int_equal(x509_split_der(junk, sizeof(junk), &certs, &lens, &n), -1);

	/* OpenSSL agrees with the chain and with the dates. */
	free(write_pem(dir, "root.pem", root.der, root.len));
	free(write_pem(dir, "inter.pem", inter.der, inter.len));
	free(write_pem(dir, "leaf.pem", leaf, leaf_len));
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -attime %lld -CAfile %s/root.pem -untrusted %s/inter.pem %s/leaf.pem 2>&1",
		 (long long)T2051, dir, dir, dir);
	char *out = run_capture(cmd);
	if (!strstr(out, ": OK"))
		fail_msg("openssl verify: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/inter.pem -noout -text", dir);
	out = run_capture(cmd);
	assert_non_null(strstr(out, "X509v3 Basic Constraints: critical\n                CA:TRUE"));
	assert_non_null(strstr(out, "Certificate Sign, CRL Sign"));
	assert_non_null(strstr(out, "Issuer: CN = Root"));
	free(out);
	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/leaf.pem -noout -dates", dir);
	out = run_capture(cmd);
	assert_non_null(strstr(out, "notAfter=Jun  1 13:34:56 2051 GMT"));
	free(out);

	free(chain);
	free(leaf);
	lkey_free(leaf_key);
	free_ca(&inter);
	free_ca(&root);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_pem(void **state)
{
	struct ca a, b;
	make_ca(&a, KEY_EC_P256, NULL, "A", T2024, T2051);
	make_ca(&b, KEY_RSA_2048, NULL, "B", T2024, T2051);
	char *pa = pem_encode("CERTIFICATE", a.der, a.len);
	char *pb = pem_encode("CERTIFICATE", b.der, b.len);
	char *pk = pem_encode("PRIVATE KEY", (const uint8_t *)"xyz", 3);
	size_t total = strlen(pa) + strlen(pb) + strlen(pk) + 32;
	char *all = malloc(total);
	snprintf(all, total, "junk\n%s%s\r\n%s", pa, pk, pb);
	/* Lines are at most 64 columns. */
	for (char *line = pa; *line;) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		assert_true(nl - line <= 64 || strncmp(line, "-----", 5) == 0);
		line = nl + 1;
	}
	uint8_t *der;
	size_t len;
	assert_int_equal(pem_decode_concat(all, strlen(all), "CERTIFICATE", &der, &len), 0);
	assert_int_equal(len, a.len + b.len);
	assert_memory_equal(der, a.der, a.len);
	assert_memory_equal(der + a.len, b.der, b.len);
	free(der);
	assert_int_equal(pem_decode_concat(all, strlen(all), "PRIVATE KEY", &der, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(der, "xyz", 3);
	free(der);
	assert_int_equal(pem_decode_concat("nothing", 7, "CERTIFICATE", &der, &len), 0);
	assert_int_equal(len, 0);
	free(der);
	const char *broken = "-----BEGIN CERTIFICATE-----\nMII*\n-----END CERTIFICATE-----\n";
	assert_int_equal(pem_decode_concat(broken, strlen(broken), "CERTIFICATE", &der, &len), -1);
	const char *open = "-----BEGIN CERTIFICATE-----\nMIIB\n";
	assert_int_equal(pem_decode_concat(open, strlen(open), "CERTIFICATE", &der, &len), -1);
	free(all);
	free(pa);
	free(pb);
	free(pk);
	free_ca(&a);
	free_ca(&b);
}

static void test_bad_input(void **state)
{
	struct ca ca;
	struct x509_info info;
	char err[128];
	make_ca(&ca, KEY_EC_P256, NULL, "CA", T2024, T2051);
	for (size_t cut = 0; cut < ca.len; cut += 3) {
		assert_int_equal(x509_parse(ca.der, cut, &info, err, sizeof(err)), -1);
		assert_true(err[0] != 0);
	}
	for (size_t i = 0; i < ca.len; i++) {
		ca.der[i] ^= 0x80;
		if (x509_parse(ca.der, ca.len, &info, err, sizeof(err)) == 0)
			x509_info_free(&info);
		/* Any change breaks the signature or the structure. */
		assert_int_equal(x509_verify(ca.der, ca.len, ca.der, ca.len, T2024 + 1, err,
					     sizeof(err)),
				 -1);
		ca.der[i] ^= 0x80;
	}
	assert_int_equal(x509_verify(ca.der, ca.len, ca.der, ca.len, T2024 + 1, err, sizeof(err)), 0);

	/* Issuing refuses a key that is not the CA's, a non-CA issuer, bad times, bad SPKI. */
	lkey *k;
	uint8_t *spki, *der;
	size_t spki_len, len;
	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(lkey_public_der(k, &spki, &spki_len), 0);
	struct x509_leaf_params p = { "spiffe://example.org/x", NULL, 0, T2024, T2024 + 60, spki,
				      spki_len };
	assert_int_equal(x509_sign_leaf(k, ca.der, ca.len, &p, &der, &len), -1);
	p.not_after = T2024;
	assert_int_equal(x509_sign_leaf(ca.key, ca.der, ca.len, &p, &der, &len), -1);
	p.not_after = T2024 + 60;
	p.spki_len = spki_len - 1;
	assert_int_equal(x509_sign_leaf(ca.key, ca.der, ca.len, &p, &der, &len), -1);
	p.spki_len = spki_len;
	p.spiffe_id = "http://example.org/x";
	assert_int_equal(x509_sign_leaf(ca.key, ca.der, ca.len, &p, &der, &len), -1);
	p.spiffe_id = "spiffe://example.org/x";
	const char *bad_dns[] = { "a b" };
	p.dns_names = bad_dns;
	p.n_dns = 1;
	assert_int_equal(x509_sign_leaf(ca.key, ca.der, ca.len, &p, &der, &len), -1);
	p.n_dns = 0;
	assert_int_equal(x509_sign_leaf(ca.key, ca.der, ca.len, &p, &der, &len), 0);
	uint8_t *der2;
	size_t len2;
	assert_int_equal(x509_sign_leaf(k, der, len, &p, &der2, &len2), -1); /* leaf as issuer */
	free(der);
	free(spki);
	lkey_free(k);
	free_ca(&ca);
}

/* An upstream root made by OpenSSL, with a subject longer than 256 bytes in PrintableString and
 * UTF8String: the intermediate we sign under it must chain by exact issuer bytes. */
static void test_openssl_upstream(void **state)
{
	char dir[] = "/tmp/lanyard-up-XXXXXX";
	char cmd[2048], path[512];
	uint8_t *key_pem, *cert_pem, *root;
	size_t key_len, cert_len, root_len;
	lkey *up_key;
	struct ca up, inter;
	char err[128];

	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 30 "
		 "-subj '/C=US/ST=Some State With A Long Name/L=Some City With A Long Name Too/"
		 "O=Example Organisation With A Deliberately Long Name/OU=Platform Security Engineering/"
		 "OU=Second Unit Name Padding Padding/CN=Upstream Root Certificate Authority Number One' "
		 "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
		 "2>/dev/null",
		 dir);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/k.pem", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &key_pem, &key_len), 0);
	snprintf(path, sizeof(path), "%s/c.pem", dir);
	assert_int_equal(file_read_all(path, 1 << 20, &cert_pem, &cert_len), 0);
	assert_int_equal(lkey_from_pem((char *)key_pem, key_len, &up_key), 0);
	assert_int_equal(pem_decode_concat((char *)cert_pem, cert_len, "CERTIFICATE", &root, &root_len), 0);
	assert_true(lkey_matches_cert(up_key, root, root_len));
	up.key = up_key;
	up.der = root;
	up.len = root_len;
	int64_t now = now_unix();
	make_ca(&inter, KEY_EC_P256, &up, "Lanyard Intermediate", now - 60, now + 86400);
	assert_int_equal(x509_verify(inter.der, inter.len, root, root_len, now, err, sizeof(err)), 0);
	lkey *leaf_key;
	uint8_t *leaf;
	size_t leaf_len;
	issue(&inter, KEY_EC_P256, "spiffe://example.org/w", NULL, 0, now - 10, now + 3600, &leaf_key,
	      &leaf, &leaf_len);
	free(write_pem(dir, "inter.pem", inter.der, inter.len));
	free(write_pem(dir, "leaf.pem", leaf, leaf_len));
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -CAfile %s/c.pem -untrusted %s/inter.pem %s/leaf.pem 2>&1", dir, dir,
		 dir);
	char *out = run_capture(cmd);
	if (!strstr(out, ": OK"))
		fail_msg("openssl verify: %s", out);
	free(out);
	free(leaf);
	lkey_free(leaf_key);
	free_ca(&inter);
	free_ca(&up);
	free(key_pem);
	free(cert_pem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* wolfSSL's own verifier (the one TLS uses) accepts our chains: empty subject with a critical
 * SAN, critical basicConstraints, EC and RSA mixed. */
static void test_wolfssl_accepts(void **state)
{
	int64_t now = now_unix();
	for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
		struct ca root, inter;
		lkey *leaf_key;
		uint8_t *leaf;
		size_t leaf_len;
		const char *dns[] = { "svc.local" };

		make_ca(&root, all_types[i], NULL, "Root", now - 60, now + 86400);
		make_ca(&inter, all_types[(i + 1) % 3], &root, "Inter", now - 60, now + 86400);
		issue(&inter, all_types[(i + 2) % 3], "spiffe://example.org/w", i == 0 ? dns : NULL,
		      i == 0 ? 1 : 0, now - 10, now + 3600, &leaf_key, &leaf, &leaf_len);

		WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
		assert_non_null(cm);
		assert_int_equal(wolfSSL_CertManagerLoadCABuffer(cm, root.der, (long)root.len,
								 WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
		/* Before the intermediate is known, the leaf does not verify. */
		assert_int_not_equal(wolfSSL_CertManagerVerifyBuffer(cm, leaf, (long)leaf_len,
								     WOLFSSL_FILETYPE_ASN1),
				     WOLFSSL_SUCCESS);
		assert_int_equal(wolfSSL_CertManagerVerifyBuffer(cm, inter.der, (long)inter.len,
								 WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
		assert_int_equal(wolfSSL_CertManagerLoadCABuffer(cm, inter.der, (long)inter.len,
								 WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
		assert_int_equal(wolfSSL_CertManagerVerifyBuffer(cm, leaf, (long)leaf_len,
								 WOLFSSL_FILETYPE_ASN1),
				 WOLFSSL_SUCCESS);
		wolfSSL_CertManagerFree(cm);
		free(leaf);
		lkey_free(leaf_key);
		free_ca(&inter);
		free_ca(&root);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csr),	    cmocka_unit_test(test_csr_openssl),
		cmocka_unit_test(test_ca),	    cmocka_unit_test(test_leaf),
		cmocka_unit_test(test_chain),	    cmocka_unit_test(test_pem),
		cmocka_unit_test(test_bad_input),   cmocka_unit_test(test_openssl_upstream),
		cmocka_unit_test(test_wolfssl_accepts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
