/* cli_mtls.c: see cli_mtls.h. */
#include "cli_mtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "bundle.h"
#include "cli_common.h"
#include "der_pem.h"
#include "spiffeid.h"
#include "util.h"
#include "workload_client.h"
#include "x509.h"

#define WORKLOAD_TIMEOUT_MS 10000

struct cli_mtls {
	char *cert_pem, *key_pem, *bundle_pem;
	char spiffe_id[2049];
	char trust_domain[256];
	char pin[128]; /* "sha256//<base64>", once cli_mtls_pin_server succeeded */
};

static int pick_svid(const struct workload_x509_context *x, const char *client_id,
		     const struct workload_x509_svid **out)
{
	*out = NULL;
	for (size_t i = 0; i < x->n_svids && !*out; i++)
		if (!client_id || strcmp(x->svids[i].spiffe_id, client_id) == 0)
			*out = &x->svids[i];
	if (*out)
		return 0;
	if (!client_id) {
		fail("the Workload API gave this process no X509-SVID");
		return -1;
	}
	fail("--client-spiffe-id %s: the Workload API gave this process no such X509-SVID (it "
	     "has %zu:%s%s)", client_id, x->n_svids, x->n_svids ? " " : " none",
	     x->n_svids ? x->svids[0].spiffe_id : "");
	return -1;
}

int cli_mtls_load(const char *workload_socket, const char *client_id, struct cli_mtls **out)
{
	struct workload_client *wc = NULL;
	struct workload_x509_context x = { 0 };
	const struct workload_x509_svid *svid;
	char err[512], path[4096], td[256];
	int status = 0, ret = -1;
	struct cli_mtls *m = NULL;

	*out = NULL;
	if (workload_resolve_socket(workload_socket, path, sizeof(path), err, sizeof(err)) < 0) {
		fail("%s", err);
		return -1;
	}
	if (workload_client_connect(path, WORKLOAD_TIMEOUT_MS, &wc, err, sizeof(err)) < 0) {
		fail("cannot reach the Workload API at %s (--workload-socket or %s): %s", path,
		     WORKLOAD_ENDPOINT_ENV, err);
		return -1;
	}
	workload_client_set_timeout(wc, WORKLOAD_TIMEOUT_MS);
	if (workload_fetch_x509(wc, &x, &status, err, sizeof(err)) < 0) {
		fail("no X509-SVID from the Workload API at %s: %s", path, err);
		goto out;
	}
	if (pick_svid(&x, client_id, &svid) < 0)
		goto out;
	if (spiffeid_parse(svid->spiffe_id, td, NULL, err, sizeof(err)) < 0) {
		fail("the Workload API gave a malformed SPIFFE ID: %s", err);
		goto out;
	}
	m = xcalloc(1, sizeof(*m));
	snprintf(m->spiffe_id, sizeof(m->spiffe_id), "%s", svid->spiffe_id);
	snprintf(m->trust_domain, sizeof(m->trust_domain), "%s", td);
	m->cert_pem = bundle_to_pem(svid->chain, svid->chain_len);
	m->key_pem = pem_encode("PRIVATE KEY", svid->key, svid->key_len);
	m->bundle_pem = bundle_to_pem(svid->bundle, svid->bundle_len);
	if (!m->cert_pem || !m->key_pem || !m->bundle_pem) {
		fail("cannot encode the X509-SVID of %s", svid->spiffe_id);
		goto out;
	}
	*out = m;
	m = NULL;
	ret = 0;
out:
	cli_mtls_free(m);
	workload_x509_context_free(&x);
	workload_client_close(wc);
	return ret;
}

static void set_blob(const struct curl_fns *cu, CURL *c, CURLoption opt, const char *pem)
{
	struct curl_blob b = { .data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY };
	cu->easy_setopt(c, opt, &b);
}

void cli_mtls_apply(const struct cli_mtls *m, const struct curl_fns *cu, CURL *c)
{
	set_blob(cu, c, CURLOPT_SSLCERT_BLOB, m->cert_pem);
	cu->easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
	set_blob(cu, c, CURLOPT_SSLKEY_BLOB, m->key_pem);
	cu->easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
	set_blob(cu, c, CURLOPT_CAINFO_BLOB, m->bundle_pem);
	cu->easy_setopt(c, CURLOPT_CAPATH, NULL);
	cu->easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	/* The server's SVID names it by SPIFFE ID, not by host name: the ID is checked (and the
	 * key pinned) by cli_mtls_pin_server instead. */
	cu->easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	cu->easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (m->pin[0])
		cu->easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, m->pin);
}

/* The leaf certificate curl saw (CURLINFO_CERTINFO, "Cert:" PEM) as DER. */
static int server_leaf(const struct curl_fns *cu, CURL *c, uint8_t **der, size_t *len)
{
	struct curl_certinfo *ci = NULL;
	*der = NULL;
	*len = 0;
	if (cu->easy_getinfo(c, CURLINFO_CERTINFO, &ci) != CURLE_OK || !ci || ci->num_of_certs < 1)
		return -1;
	for (struct curl_slist *s = ci->certinfo[0]; s; s = s->next) {
		if (strncmp(s->data, "Cert:", 5) != 0)
			continue;
		const char *pem = s->data + 5;
		uint8_t *all = NULL;
		size_t n = 0;
		if (pem_decode_concat(pem, strlen(pem), "CERTIFICATE", &all, &n) < 0 || n == 0) {
			free(all);
			return -1;
		}
		*der = all;
		*len = n;
		return 0;
	}
	return -1;
}

/* "sha256//<base64 of SHA-256(SubjectPublicKeyInfo)>", curl's pin format. */
static int make_pin(const struct x509_info *leaf, char *out, size_t outlen)
{
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	if (wc_Sha256Hash(leaf->spki, (word32)leaf->spki_len, h) != 0)
		return -1;
	char *b64 = base64_encode(h, sizeof(h));
	if (!b64)
		return -1;
	snprintf(out, outlen, "sha256//%s", b64);
	free(b64);
	return 0;
}

static int check_leaf(struct cli_mtls *m, const uint8_t *der, size_t len, const char *url)
{
	struct x509_info leaf = { 0 };
	char err[256], want[400];
	int ret = -1;
	snprintf(want, sizeof(want), "spiffe://%s/%s/server", m->trust_domain,
		 SPIFFEID_RESERVED_SEGMENT);
	if (x509_parse(der, len, &leaf, err, sizeof(err)) < 0) {
		fail("%s: cannot read the server's certificate: %s", url, err);
		goto out;
	}
	if (strcmp(leaf.spiffe_id, want) != 0) {
		fail("%s presents \"%s\", not the server's SPIFFE ID %s: refusing to talk to it", url,
		     leaf.spiffe_id, want);
		goto out;
	}
	if (make_pin(&leaf, m->pin, sizeof(m->pin)) < 0) {
		fail("cannot hash the server's key");
		goto out;
	}
	ret = 0;
out:
	x509_info_free(&leaf);
	return ret;
}

int cli_mtls_pin_server(struct cli_mtls *m, const struct curl_fns *cu, const char *server_url,
			long timeout_s)
{
	CURL *c = cu->easy_init();
	uint8_t *der = NULL;
	size_t len = 0;
	int ret = -1;
	if (!c) {
		fail("cannot initialise libcurl");
		return -1;
	}
	m->pin[0] = '\0';
	cu->easy_setopt(c, CURLOPT_URL, server_url);
	cu->easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
	cu->easy_setopt(c, CURLOPT_CERTINFO, 1L);
	cu->easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	cu->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(c, CURLOPT_PROXY, "");
	cli_mtls_apply(m, cu, c);
	CURLcode rc = cu->easy_perform(c);
	if (rc != CURLE_OK) {
		fail("cannot connect to %s as %s: %s", server_url, m->spiffe_id,
		     cu->easy_strerror(rc));
		goto out;
	}
	if (server_leaf(cu, c, &der, &len) < 0) {
		fail("%s: libcurl did not show the server's certificate", server_url);
		goto out;
	}
	ret = check_leaf(m, der, len, server_url);
out:
	free(der);
	cu->easy_cleanup(c);
	return ret;
}

void cli_mtls_free(struct cli_mtls *m)
{
	if (!m)
		return;
	if (m->key_pem) {
		secure_zero(m->key_pem, strlen(m->key_pem));
		free(m->key_pem);
	}
	free(m->cert_pem);
	free(m->bundle_pem);
	free(m);
}
