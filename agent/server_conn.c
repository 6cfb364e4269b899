/* server_conn.c: the TLS connection to the server's node API (see server_conn.h). */
#include <wolfssl/options.h>

#include "server_conn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "grpc_client.h"
#include "jwt.h"
#include "log.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"
#include "keys.h"

#define NODE_PATH "/lanyard.node.v1.Node/"
#define CONNECT_TIMEOUT_MS 5000
#define CALL_TIMEOUT_MS 30000

struct server_conn {
	char *address;
	int port;
	char *trust_domain;
	char server_id[SPIFFEID_MAX + 1];
	bool insecure_bootstrap;
	struct grpc_client *gc;

	pthread_mutex_t mu;
	/* Guarded by mu: the socket of gc, so that an abort can shut a blocking call down. */
	int live_fd;
	bool aborted;
};

struct server_conn *server_conn_new(const char *address, int port, const char *trust_domain,
				    bool insecure_bootstrap)
{
	struct server_conn *c = xcalloc(1, sizeof(*c));
	c->address = xstrdup(address);
	c->port = port;
	c->trust_domain = xstrdup(trust_domain);
	snprintf(c->server_id, sizeof(c->server_id), "spiffe://%s/lanyard/server", trust_domain);
	c->insecure_bootstrap = insecure_bootstrap;
	c->live_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

void server_conn_free(struct server_conn *c)
{
	if (!c)
		return;
	server_conn_close(c);
	pthread_mutex_destroy(&c->mu);
	free(c->address);
	free(c->trust_domain);
	free(c);
}

void server_conn_close(struct server_conn *c)
{
	if (!c->gc)
		return;
	pthread_mutex_lock(&c->mu);
	c->live_fd = -1;
	pthread_mutex_unlock(&c->mu);
	grpc_client_close(c->gc);
	c->gc = NULL;
}

void server_conn_abort(struct server_conn *c)
{
	pthread_mutex_lock(&c->mu);
	c->aborted = true;
	/* Wakes a blocking call at once; the sync thread closes the socket itself. */
	if (c->live_fd >= 0)
		shutdown(c->live_fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->mu);
}

static int add_roots(WOLFSSL_CTX *ctx, const uint8_t *der, size_t len, char *err, size_t errlen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	int ret = -1;
	if (x509_split_der(der, len, &certs, &lens, &cnt) < 0 || cnt == 0) {
		snprintf(err, errlen, "the trust bundle holds no certificate");
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		if (wolfSSL_CTX_load_verify_buffer(ctx, certs[i], (long)lens[i],
						   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "certificate %zu of the trust bundle is not usable as a CA",
				 i + 1);
			goto out;
		}
	}
	ret = 0;
out:
	free(certs);
	free(lens);
	return ret;
}

static WOLFSSL_CTX *make_tls(struct server_conn *c, const uint8_t *roots, size_t roots_len,
			     const uint8_t *chain, size_t chain_len, const lkey *agent_key,
			     bool *insecure, char *err, size_t errlen)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	char *pem = NULL;
	uint8_t *key = NULL;
	size_t key_len = 0;
	*insecure = false;
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	if (roots) {
		if (add_roots(ctx, roots, roots_len, err, errlen) < 0)
			goto fail;
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
	} else if (c->insecure_bootstrap) {
		*insecure = true;
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	} else {
		snprintf(err, errlen, "no trust bundle to check the server with");
		goto fail;
	}
	if (chain) {
		const uint8_t **certs = NULL;
		size_t *lens = NULL, cnt = 0;
		/* PEM, because wolfSSL reads a whole chain only from PEM. */
		if (x509_split_der(chain, chain_len, &certs, &lens, &cnt) == 0) {
			size_t total = 0;
			for (size_t i = 0; i < cnt; i++) {
				char *p = pem_encode("CERTIFICATE", certs[i], lens[i]);
				if (!p)
					break;
				size_t pl = strlen(p);
				pem = xrealloc(pem, total + pl + 1);
				memcpy(pem + total, p, pl + 1);
				total += pl;
				free(p);
			}
		}
		free(certs);
		free(lens);
		if (!pem || wolfSSL_CTX_use_certificate_chain_buffer(
				    ctx, (const unsigned char *)pem, (long)strlen(pem)) != WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "cannot load the agent SVID into TLS");
			goto fail;
		}
		if (lkey_to_pkcs8_der(agent_key, &key, &key_len) < 0 ||
		    wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len, WOLFSSL_FILETYPE_ASN1) !=
			    WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "cannot load the agent key into TLS");
			goto fail;
		}
	}
	free(pem);
	if (key) {
		secure_zero(key, key_len);
		free(key);
	}
	return ctx;
fail:
	free(pem);
	if (key) {
		secure_zero(key, key_len);
		free(key);
	}
	wolfSSL_CTX_free(ctx);
	return NULL;
}

int server_conn_open(struct server_conn *c, const uint8_t *roots, size_t roots_len,
		     const uint8_t *chain, size_t chain_len, const lkey *key, char *err,
		     size_t errlen)
{
	bool insecure;
	char why[512];
	server_conn_close(c);
	WOLFSSL_CTX *ctx = make_tls(c, roots, roots_len, chain, chain_len, key, &insecure, err,
				    errlen);
	if (!ctx)
		return -1;
	if (insecure)
		log_warn("INSECURE BOOTSTRAP: connecting to %s:%d WITHOUT checking the server's "
			 "certificate (insecure_bootstrap is set). Anyone on the path can impersonate "
			 "the server. Use trust_bundle_path outside of tests.",
			 c->address, c->port);
	struct grpc_client *gc = NULL;
	int r = grpc_client_connect_tcp(c->address, c->port, ctx, NULL,
					CONNECT_TIMEOUT_MS, &gc, why, sizeof(why));
	wolfSSL_CTX_free(ctx);
	/* The handshake did all the public-key work this connection will ever do (TLS 1.3 has no
	 * renegotiation): drop wolfSSL's per-thread ECC tables (see release_ecc_cache() in
	 * node_client.c). */
	keys_release_thread_ecc_cache();
	if (r < 0) {
		bool tls = strstr(why, "TLS") != NULL;
		snprintf(err, errlen, "%s%s", why,
			 tls && !insecure ? " (does the trust bundle hold the server's CA?)" : "");
		return -1;
	}
	size_t len = 0;
	const uint8_t *der = grpc_client_peer_cert(gc, &len);
	struct x509_info info = {0};
	if (!der || x509_parse(der, len, &info, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "the server at %s:%d presented no readable certificate",
			 c->address, c->port);
		goto fail;
	}
	if (info.n_uri_sans != 1 || strcmp(info.spiffe_id, c->server_id) != 0) {
		snprintf(err, errlen, "server presented %s, expected %s",
			 *info.spiffe_id ? info.spiffe_id : "no SPIFFE ID", c->server_id);
		goto fail;
	}
	x509_info_free(&info);
	c->gc = gc;
	pthread_mutex_lock(&c->mu);
	c->live_fd = grpc_client_fd(gc);
	bool stopping = c->aborted;
	pthread_mutex_unlock(&c->mu);
	if (stopping) {
		server_conn_close(c);
		snprintf(err, errlen, "stopping");
		return -1;
	}
	return 0;
fail:
	x509_info_free(&info);
	grpc_client_close(gc);
	return -1;
}

/* The request's encoding (the caller's to free) and the method's path. */
static uint8_t *pack(const char *method, const ProtobufCMessage *req, char *path, size_t pathlen,
		     size_t *len)
{
	snprintf(path, pathlen, NODE_PATH "%s", method);
	*len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = xmalloc(*len ? *len : 1);
	protobuf_c_message_pack(req, buf);
	return buf;
}

int server_conn_call(struct server_conn *c, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *rdesc, ProtobufCMessage **resp, int *status,
		     char *err, size_t errlen)
{
	char path[96];
	size_t len;
	uint8_t *buf = pack(method, req, path, sizeof(path), &len);
	uint8_t *out = NULL;
	size_t out_len = 0;
	*resp = NULL;
	int r = grpc_client_unary(c->gc, path, NULL, 0, buf, len, CALL_TIMEOUT_MS, &out, &out_len,
				  status, err, errlen);
	/* Requests may carry a join token. */
	secure_zero(buf, len);
	free(buf);
	if (r < 0) {
		free(out);
		return -1;
	}
	if (*status == GRPC_STATUS_OK) {
		*resp = protobuf_c_message_unpack(rdesc, NULL, out_len, out);
		if (!*resp) {
			*status = GRPC_STATUS_INTERNAL;
			snprintf(err, errlen, "malformed %s response from the server", method);
		}
	}
	free(out);
	return 0;
}

int server_conn_stream(struct server_conn *c, const char *method, const ProtobufCMessage *req,
		       struct grpc_stream **out, char *err, size_t errlen)
{
	char path[96];
	size_t len;
	uint8_t *buf = pack(method, req, path, sizeof(path), &len);
	int r = grpc_client_stream_open(c->gc, path, NULL, 0, buf, len, out, err, errlen);
	free(buf);
	return r;
}

int server_conn_decode_bundle(const struct server_conn *c, const Lanyard__Node__V1__Bundle *b,
			      uint8_t **der_out, size_t *len_out, char **jwt_out, char *err,
			      size_t errlen)
{
	*der_out = NULL;
	*jwt_out = NULL;
	if (!b->trust_domain || strcmp(b->trust_domain, c->trust_domain) != 0) {
		snprintf(err, errlen, "the server sent a bundle for trust domain \"%s\", not %s",
			 b->trust_domain ? b->trust_domain : "", c->trust_domain);
		return -1;
	}
	if (b->n_x509_authorities == 0) {
		snprintf(err, errlen, "the server sent a bundle without X.509 authorities");
		return -1;
	}
	size_t len = 0;
	for (size_t i = 0; i < b->n_x509_authorities; i++)
		len += b->x509_authorities[i].len;
	uint8_t *der = xmalloc(len);
	size_t off = 0;
	for (size_t i = 0; i < b->n_x509_authorities; i++) {
		memcpy(der + off, b->x509_authorities[i].data, b->x509_authorities[i].len);
		off += b->x509_authorities[i].len;
	}
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	if (x509_split_der(der, len, &certs, &lens, &cnt) < 0 || cnt != b->n_x509_authorities) {
		free(certs);
		free(lens);
		free(der);
		snprintf(err, errlen, "the server sent a bundle with a malformed certificate");
		return -1;
	}
	free(certs);
	free(lens);
	struct jwks *ks = jwks_new();
	for (size_t i = 0; ks && i < b->n_jwt_authorities; i++) {
		const Lanyard__Node__V1__JWTKey *k = b->jwt_authorities[i];
		if (jwks_add(ks, k->kid, k->public_key.data, k->public_key.len) < 0)
			log_warn("ignoring JWT authority \"%s\" of the bundle: unusable key", k->kid);
	}
	char *jwt = ks ? jwks_to_json(ks) : NULL;
	jwks_free(ks);
	if (!jwt)
		jwt = xstrdup("{\"keys\":[]}");
	*der_out = der;
	*len_out = len;
	*jwt_out = jwt;
	return 0;
}
