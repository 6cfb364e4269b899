/* server_conn.c: the TLS connection to the server's node API (see server_conn.h). */
#include <wolfssl/options.h>

#include "server_conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <netdb.h>
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
#include "strv.h"
#include "util.h"
#include "x509.h"
#include "keys.h"
#include "tls_leaf.h"

#define NODE_PATH "/lanyard.node.v1.Node/"
#define CONNECT_TIMEOUT_MS 5000
#define CALL_TIMEOUT_MS 30000
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define BACKOFF_FLOOR_MS 100
#define CANDIDATES_MAX 256
#define HOST_MAX 253

/* One address to connect to. */
struct candidate {
	char addr[HOST_MAX + 1]; /* numeric address, or the host name when it did not resolve */
	int port;
	char label[SERVER_LABEL_MAX]; /* for logs and /status */
};

struct server_conn {
	struct server_endpoint *eps;
	size_t n_eps;
	/* Sync thread only: the resolved candidates, the current one, the failure streak. */
	struct candidate *cands;
	size_t n_cands, cur;
	bool resolved_once;
	unsigned streak;
	char *trust_domain;
	char server_id[SPIFFEID_MAX + 1];
	bool insecure_bootstrap;
	struct grpc_client *gc;

	pthread_mutex_t mu;
	/* Guarded by mu: the socket of gc, so that an abort can shut a blocking call down. */
	int live_fd;
	bool aborted;
	int wake_fd; /* given to every connection (server_conn_set_wake_fd) */
};

/* ---- endpoints ---- */

static bool is_ip_literal(const char *host)
{
	uint8_t buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A DNS name: labels of letters, digits and '-' (not at either end), 1-63 long, one optional
 * final dot; all-numeric names must be IPv4 addresses. */
static int check_dns_name(const char *host, char *why, size_t whylen)
{
	size_t label = 0;
	bool numeric = true;
	for (const char *p = host; *p; p++) {
		char ch = *p;
		if (ch == '.') {
			if (label == 0 || p[-1] == '-') {
				snprintf(why, whylen, "empty or malformed label in the host name");
				return -1;
			}
			label = 0;
			continue;
		}
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			     (ch >= '0' && ch <= '9');
		if (!alnum && ch != '-') {
			snprintf(why, whylen, "character '%c' is not allowed in a host name", ch);
			return -1;
		}
		if (ch == '-' && label == 0) {
			snprintf(why, whylen, "a host name label cannot start with '-'");
			return -1;
		}
		numeric &= ch >= '0' && ch <= '9';
		if (++label > 63) {
			snprintf(why, whylen, "a host name label is longer than 63 characters");
			return -1;
		}
	}
	if (label > 0 && host[strlen(host) - 1] == '-') {
		snprintf(why, whylen, "a host name label cannot end with '-'");
		return -1;
	}
	if (numeric) {
		snprintf(why, whylen, "not a valid IPv4 address");
		return -1;
	}
	return 0;
}

int server_host_check(const char *host, char *why, size_t whylen)
{
	if (!host || !*host) {
		snprintf(why, whylen, "the host is empty");
		return -1;
	}
	if (strlen(host) > HOST_MAX) {
		snprintf(why, whylen, "the host is longer than %d characters", HOST_MAX);
		return -1;
	}
	if (is_ip_literal(host))
		return 0;
	if (strchr(host, ':')) {
		snprintf(why, whylen, "not a valid IPv6 address");
		return -1;
	}
	return check_dns_name(host, why, whylen);
}

/* A decimal port from 1 to 65535, digits only. */
static int parse_port(const char *s, int *port, char *why, size_t whylen)
{
	long v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (v = strtol(s, NULL, 10)) < 1 ||
	    v > 65535) {
		snprintf(why, whylen, "the port must be a number from 1 to 65535");
		return -1;
	}
	*port = (int)v;
	return 0;
}

/* "[v6]:port": copies the address into host (HOST_MAX + 1 bytes) and returns the ':' before the
 * port, or NULL with why. */
static const char *split_bracketed(const char *text, char *host, char *why, size_t whylen)
{
	const char *end = strchr(text, ']');
	size_t hl = end ? (size_t)(end - text - 1) : 0;
	if (!end || hl == 0 || hl > HOST_MAX || end[1] != ':') {
		snprintf(why, whylen, "expected [IPv6 address]:port");
		return NULL;
	}
	memcpy(host, text + 1, hl);
	host[hl] = '\0';
	if (!strchr(host, ':') || !is_ip_literal(host)) {
		snprintf(why, whylen, "\"%s\" between brackets is not an IPv6 address", host);
		return NULL;
	}
	return end + 1;
}

/* "host:port" with a name or IPv4 address: as split_bracketed. */
static const char *split_plain(const char *text, char *host, char *why, size_t whylen)
{
	const char *colon = strrchr(text, ':');
	if (!colon) {
		snprintf(why, whylen, "expected host:port, the port is missing");
		return NULL;
	}
	size_t hl = (size_t)(colon - text);
	if (memchr(text, ':', hl)) {
		snprintf(why, whylen, "an IPv6 address needs brackets, e.g. [::1]:8081");
		return NULL;
	}
	if (hl > HOST_MAX) {
		snprintf(why, whylen, "the host is longer than %d characters", HOST_MAX);
		return NULL;
	}
	memcpy(host, text, hl);
	host[hl] = '\0';
	return server_host_check(host, why, whylen) < 0 ? NULL : colon;
}

int server_endpoint_parse(const char *text, struct server_endpoint *out, char *why, size_t whylen)
{
	char host[HOST_MAX + 1];
	out->host = NULL;
	out->port = 0;
	if (strstr(text, "://")) {
		snprintf(why, whylen, "expected host:port, not a URL");
		return -1;
	}
	const char *colon = text[0] == '[' ? split_bracketed(text, host, why, whylen)
					   : split_plain(text, host, why, whylen);
	if (!colon || parse_port(colon + 1, &out->port, why, whylen) < 0)
		return -1;
	out->host = xstrdup(host);
	return 0;
}

void server_endpoints_free(struct server_endpoint *eps, size_t n)
{
	if (!eps)
		return;
	for (size_t i = 0; i < n; i++)
		free(eps[i].host);
	free(eps);
}

/* ---- candidates ---- */

static void add_candidate(struct candidate **cands, size_t *n, const char *addr, int port,
			  const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if ((*cands)[i].port == port && strcmp((*cands)[i].addr, addr) == 0)
			return;
	if (*n >= CANDIDATES_MAX)
		return;
	*cands = xrealloc(*cands, (*n + 1) * sizeof(**cands));
	struct candidate *k = &(*cands)[(*n)++];
	snprintf(k->addr, sizeof(k->addr), "%s", addr);
	k->port = port;
	bool v6 = strchr(addr, ':') != NULL;
	if (name)
		snprintf(k->label, sizeof(k->label), "%s:%d (%s)", name, port, addr);
	else
		snprintf(k->label, sizeof(k->label), v6 ? "[%s]:%d" : "%s:%d", addr, port);
}

/* The numeric addresses of a resolver answer, sorted (resolvers rotate their answers; the
 * rotation must not revisit one address and skip another). The array and its strings are the
 * caller's. */
static size_t addrinfo_texts(const struct addrinfo *res, char ***out)
{
	size_t n = 0;
	*out = NULL;
	for (const struct addrinfo *ai = res; ai && n < CANDIDATES_MAX; ai = ai->ai_next) {
		char text[INET6_ADDRSTRLEN];
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof(text), NULL, 0,
				NI_NUMERICHOST) != 0)
			continue;
		*out = xrealloc(*out, (n + 1) * sizeof(char *));
		(*out)[n++] = xstrdup(text);
	}
	if (n)
		qsort(*out, n, sizeof(char *), strv_cmp);
	return n;
}

/* The addresses of a host name (as addrinfo_texts); 0 when it does not resolve. */
static size_t lookup(const char *host, char ***out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	*out = NULL;
	int r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0) {
		log_debug("cannot resolve server host %s: %s", host, gai_strerror(r));
		return 0;
	}
	size_t n = addrinfo_texts(res, out);
	freeaddrinfo(res);
	return n;
}

/* Every address of every endpoint, in configuration order. A name that does not resolve stays a
 * candidate under its name, so that connecting to it reports the resolver's error. */
static void resolve(struct server_conn *c)
{
	struct candidate *cands = NULL;
	size_t n = 0;
	for (size_t i = 0; i < c->n_eps; i++) {
		const struct server_endpoint *ep = &c->eps[i];
		char **addrs = NULL;
		size_t na = is_ip_literal(ep->host) ? 0 : lookup(ep->host, &addrs);
		if (na == 0)
			add_candidate(&cands, &n, ep->host, ep->port, NULL);
		for (size_t j = 0; j < na; j++) {
			add_candidate(&cands, &n, addrs[j], ep->port, ep->host);
			free(addrs[j]);
		}
		free(addrs);
	}
	free(c->cands);
	c->cands = cands;
	c->n_cands = n;
	if (c->cur >= n)
		c->cur = 0;
}

/* The first resolution picks a random start, so that a fleet spreads over the servers. */
static void resolve_first(struct server_conn *c, uint32_t rnd)
{
	resolve(c);
	c->resolved_once = true;
	c->cur = rnd % c->n_cands;
	if (c->n_cands > 1)
		log_info("%zu candidate servers; starting with %s", c->n_cands,
			 c->cands[c->cur].label);
}

void server_conn_resolve(struct server_conn *c)
{
	if (c->resolved_once)
		return;
	uint32_t rnd = 0;
	random_bytes(&rnd, sizeof(rnd));
	resolve_first(c, rnd);
}

const char *server_conn_current(const struct server_conn *c)
{
	return c->n_cands ? c->cands[c->cur].label : "";
}

size_t server_conn_candidates(const struct server_conn *c)
{
	return c->n_cands;
}

bool server_conn_failover(struct server_conn *c)
{
	char from[SERVER_LABEL_MAX];
	snprintf(from, sizeof(from), "%s", server_conn_current(c));
	if (!c->resolved_once)
		return false;
	if (++c->cur >= c->n_cands) {
		c->cur = 0;
		resolve(c);
	}
	return strcmp(from, server_conn_current(c)) != 0;
}

/* Full jitter: uniform from BACKOFF_FLOOR_MS to the streak's step, so that agents that lost
 * the same server spread over the whole step instead of its upper half (the server's handshake
 * cap resets the connections of a wave that came too close together, and full jitter spreads the
 * next wave the most); the floor keeps a refused agent from coming straight back. */
static int64_t backoff_step(unsigned streak, uint32_t rnd)
{
	int64_t base = BACKOFF_MAX_MS;
	if (streak <= 1)
		base = BACKOFF_MIN_MS;
	else if (streak - 1 < 16 && ((int64_t)BACKOFF_MIN_MS << (streak - 1)) < BACKOFF_MAX_MS)
		base = (int64_t)BACKOFF_MIN_MS << (streak - 1);
	return BACKOFF_FLOOR_MS + (int64_t)(rnd % (uint32_t)(base - BACKOFF_FLOOR_MS + 1));
}

/* The step grows once per round over the candidates: each of them is tried promptly before
 * the waits get longer. */
int64_t server_conn_backoff_ms(struct server_conn *c)
{
	uint32_t rnd = 0;
	if (c->streak < UINT_MAX)
		c->streak++;
	random_bytes(&rnd, sizeof(rnd));
	size_t per_round = c->n_cands ? c->n_cands : 1;
	return backoff_step(1 + (unsigned)((c->streak - 1) / per_round), rnd);
}

void server_conn_connected(struct server_conn *c)
{
	c->streak = 0;
}

/* ---- the connection ---- */

struct server_conn *server_conn_new(const struct server_endpoint *eps, size_t n,
				    const char *trust_domain, bool insecure_bootstrap)
{
	assert(n >= 1);
	struct server_conn *c = xcalloc(1, sizeof(*c));
	c->eps = xcalloc(n, sizeof(*c->eps));
	c->n_eps = n;
	for (size_t i = 0; i < n; i++) {
		c->eps[i].host = xstrdup(eps[i].host);
		c->eps[i].port = eps[i].port;
	}
	c->trust_domain = xstrdup(trust_domain);
	snprintf(c->server_id, sizeof(c->server_id), "spiffe://%s/lanyard/server", trust_domain);
	c->insecure_bootstrap = insecure_bootstrap;
	c->live_fd = -1;
	c->wake_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	return c;
}

void server_conn_set_wake_fd(struct server_conn *c, int fd)
{
	c->wake_fd = fd;
}

void server_conn_free(struct server_conn *c)
{
	if (!c)
		return;
	server_conn_close(c);
	pthread_mutex_destroy(&c->mu);
	server_endpoints_free(c->eps, c->n_eps);
	free(c->cands);
	free(c->trust_domain);
	free(c);
}

void server_conn_close(struct server_conn *c)
{
	if (!c->gc)
		return;
	/* wake_fd stays: it belongs to the sync thread, and every later connection gets it too
	 * (resetting it here left every connection after the first, e.g. the one after
	 * attestation, deaf to JWT requests for up to POLL_CAP_MS). */
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
		tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	} else if (c->insecure_bootstrap) {
		*insecure = true;
		tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_NONE);
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
	pthread_mutex_lock(&c->mu);
	bool aborted = c->aborted;
	pthread_mutex_unlock(&c->mu);
	if (aborted) {
		snprintf(err, errlen, "stopping");
		return -1;
	}
	server_conn_resolve(c);
	const struct candidate *k = &c->cands[c->cur];
	WOLFSSL_CTX *ctx = make_tls(c, roots, roots_len, chain, chain_len, key, &insecure, err,
				    errlen);
	if (!ctx)
		return -1;
	if (insecure)
		log_warnx("INSECURE BOOTSTRAP: connecting to %s WITHOUT checking the server's "
			 "certificate (insecure_bootstrap is set). Anyone on the path can impersonate "
			 "the server. Use trust_bundle_path outside of tests.",
			 k->label);
	struct grpc_client *gc = NULL;
	int r = grpc_client_connect_tcp(k->addr, k->port, ctx, NULL,
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
		snprintf(err, errlen, "the server at %s presented no readable certificate",
			 k->label);
		goto fail;
	}
	if (info.n_uri_sans != 1 || strcmp(info.spiffe_id, c->server_id) != 0) {
		snprintf(err, errlen, "server presented %s, expected %s",
			 *info.spiffe_id ? info.spiffe_id : "no SPIFFE ID", c->server_id);
		goto fail;
	}
	x509_info_free(&info);
	c->gc = gc;
	grpc_client_set_wake_fd(gc, c->wake_fd);
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

/* The authorities of b: concatenated DER and a JWK Set JSON. */
static int decode_authorities(const Lanyard__Node__V1__Bundle *b, uint8_t **der_out,
			      size_t *len_out, char **jwt_out, char *err, size_t errlen)
{
	size_t len = 0;
	for (size_t i = 0; i < b->n_x509_authorities; i++)
		len += b->x509_authorities[i].len;
	uint8_t *der = xmalloc(len ? len : 1);
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
		snprintf(err, errlen, "the server sent a bundle of %s with a malformed certificate",
			 b->trust_domain);
		return -1;
	}
	free(certs);
	free(lens);
	struct jwks *ks = jwks_new();
	for (size_t i = 0; ks && i < b->n_jwt_authorities; i++) {
		const Lanyard__Node__V1__JWTKey *k = b->jwt_authorities[i];
		if (jwks_add(ks, k->kid, k->public_key.data, k->public_key.len) < 0)
			log_warnx("ignoring JWT authority \"%s\" of the bundle of %s: unusable key",
				  k->kid, b->trust_domain);
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
	return decode_authorities(b, der_out, len_out, jwt_out, err, errlen);
}

int server_conn_decode_foreign_bundle(const struct server_conn *c,
				      const Lanyard__Node__V1__Bundle *b, uint8_t **der_out,
				      size_t *len_out, char **jwt_out, char *err, size_t errlen)
{
	*der_out = NULL;
	*jwt_out = NULL;
	if (!b->trust_domain || trust_domain_validate(b->trust_domain, NULL, 0) < 0 ||
	    strcmp(b->trust_domain, c->trust_domain) == 0) {
		snprintf(err, errlen, "the server sent a federated bundle for trust domain \"%.256s\"",
			 b->trust_domain ? b->trust_domain : "");
		return -1;
	}
	if (b->n_x509_authorities == 0 && b->n_jwt_authorities == 0) {
		snprintf(err, errlen, "the server sent a federated bundle of %s without authorities",
			 b->trust_domain);
		return -1;
	}
	return decode_authorities(b, der_out, len_out, jwt_out, err, errlen);
}
