/* node_api.c: the node API's gRPC methods, TLS credentials and call authorization (see
 * node_api.h); SignX509 is in node_api_sign.c, the SyncEntries streams and the authz index behind
 * them in entry_streams.c. */
#include "node_api.h"
#include "node_api_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "authz.h"
#include "entry_streams.h"
#include "grpc_server.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "prev_svids.h"
#include "taint_ack.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

const double node_api_sign_buckets[8] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0};

struct node_api *api_of(struct grpc_call *call)
{
	struct grpc_conn *c = grpc_call_conn(call);
	return c ? grpc_server_ud(grpc_conn_server(c)) : NULL;
}

void finishf(struct grpc_call *call, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	grpc_call_finish(call, status, msg);
}

/* ---- TLS credentials: the server's own X509-SVID ---- */

static WOLFSSL_CTX *make_tls_ctx(struct node_api *n, char *err, size_t errlen)
{
	WOLFSSL_CTX *ctx = NULL;
	uint8_t *chain = NULL, *key = NULL, *spki = NULL;
	size_t chain_len = 0, key_len = 0, spki_len = 0;
	char *pem = NULL;
	struct ca_bundle b = {0};
	int64_t now = now_unix(), not_after = 0;

	if (lkey_public_der(n->tls_key, &spki, &spki_len) < 0) {
		snprintf(err, errlen, "cannot encode the server key");
		goto fail;
	}
	if (ca_sign_x509(n->ca, n->server_id, NULL, 0, spki, spki_len, n->agent_ttl, now, &chain,
			 &chain_len, &not_after, err, errlen) < 0)
		goto fail;
	ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context");
		goto fail;
	}
	/* Agents never resume TLS sessions (no tickets either, h2conn.h): caching each session
	 * (with its peer chain) would only hold memory. */
	wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
	/* The chain as PEM: wolfSSL's chain loader is most dependable with PEM blocks. */
	const uint8_t **certs = NULL;
	size_t *lens = NULL, nc = 0;
	if (x509_split_der(chain, chain_len, &certs, &lens, &nc) < 0 || nc == 0) {
		free(certs);
		free(lens);
		snprintf(err, errlen, "bad server certificate chain");
		goto fail;
	}
	size_t cap = 1, used = 0;
	pem = xcalloc(1, 1);
	for (size_t i = 0; i < nc; i++) {
		char *p = pem_encode("CERTIFICATE", certs[i], lens[i]);
		size_t l = p ? strlen(p) : 0;
		pem = xrealloc(pem, cap + l);
		memcpy(pem + used, p, l);
		used += l;
		cap += l;
		pem[used] = 0;
		free(p);
	}
	free(certs);
	free(lens);
	if (wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, (const unsigned char *)pem,
							    (long)used, WOLFSSL_FILETYPE_PEM) !=
	    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot load the server certificate into TLS");
		goto fail;
	}
	if (lkey_to_pkcs8_der(n->tls_key, &key, &key_len) < 0 ||
	    wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len, WOLFSSL_FILETYPE_ASN1) !=
		    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot load the server key into TLS");
		goto fail;
	}
	/* Agents' certificates are verified against the whole bundle, so SVIDs signed by any
	 * trusted authority (old, active, prepared) are accepted. */
	if (ca_bundle_get(n->ca, &b) < 0) {
		snprintf(err, errlen, "cannot read the bundle");
		goto fail;
	}
	const uint8_t **roots = NULL;
	size_t *rlens = NULL, nr = 0;
	if (x509_split_der(b.x509, b.x509_len, &roots, &rlens, &nr) == 0) {
		for (size_t i = 0; i < nr; i++)
			if (wolfSSL_CTX_load_verify_buffer(ctx, roots[i], (long)rlens[i],
							   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
				log_warnx("node API: a bundle certificate could not be loaded for TLS");
	}
	free(roots);
	free(rlens);
	n->tls_renew_at = now + (not_after - now) / 2;
	goto out;
fail:
	if (ctx)
		wolfSSL_CTX_free(ctx);
	ctx = NULL;
out:
	ca_bundle_free(&b);
	free(chain);
	free(spki);
	free(pem);
	if (key) {
		secure_zero(key, key_len);
		free(key);
	}
	return ctx;
}

static void tls_timer_cb(uv_timer_t *t);

static void arm_tls_timer(struct node_api *n)
{
	int64_t delay = n->tls_renew_at - now_unix();
	if (delay < 1)
		delay = 1;
	uv_timer_start(&n->tls_timer, tls_timer_cb, (uint64_t)delay * 1000, 0);
}

static int refresh_tls(struct node_api *n)
{
	char err[256];
	WOLFSSL_CTX *ctx = make_tls_ctx(n, err, sizeof(err));
	if (!ctx) {
		log_error("node API: cannot renew the server's TLS certificate: %s", err);
		n->tls_renew_at = now_unix() + 10;
		arm_tls_timer(n);
		return -1;
	}
	grpc_server_set_tls(n->grpc, ctx);
	wolfSSL_CTX_free(ctx); /* the server holds its own reference */
	arm_tls_timer(n);
	return 0;
}

static void tls_timer_cb(uv_timer_t *t)
{
	refresh_tls(t->data);
}

/* ---- authorization ---- */

/* Whether the client certificate is the SVID the server issued to this agent, not merely one
 * that carries its ID (a workload SVID, whatever its ID, is never an agent's): its serial must be
 * the one recorded at attestation or at the last renewal, or the one that renewal replaced
 * while it is valid (see prev_svids.h). */
static bool is_agent_svid(const struct node_api *n, const struct agent_record *a,
			  const char *serial)
{
	if (a->serial && a->serial[0] && serial[0] && strcasecmp(a->serial, serial) == 0)
		return true;
	return prev_svids_match(n->prev, a->spiffe_id, serial, now_unix());
}

/* What authorization needs of a connection's client certificate, read once per connection: the
 * certificate cannot change on a connection, and re-parsing it (a DER walk and a SHA-256) on
 * every call was per-batch work of SignX509. With it, for SignX509, the agent's record as last
 * read and the datastore's agent generation then (ds_agent_generation): a SQLite read per batch
 * was the largest part of authorizing one. Owned by the connection (grpc_conn_data), freed in
 * on_disconnect; touched only on the loop thread. */
struct peer_ident {
	char *spiffe_id;
	char serial[sizeof(((struct x509_info *)0)->serial)];
	struct agent_record *agent; /* NULL until authorize_cached */
	uint64_t agent_gen;
};

static void peer_ident_free(struct peer_ident *p)
{
	if (!p)
		return;
	free(p->spiffe_id);
	agent_record_free(p->agent);
	free(p);
}

/* The connection's client identity, parsed on first use; NULL with the call finished. */
static struct peer_ident *peer_ident(struct grpc_call *call)
{
	struct grpc_conn *conn = grpc_call_conn(call);
	struct peer_ident *p = conn ? grpc_conn_data(conn) : NULL;
	if (p)
		return p;
	size_t len;
	const uint8_t *der = conn ? grpc_conn_peer_cert(conn, &len) : NULL;
	if (!der) {
		grpc_call_finish(call, GRPC_STATUS_UNAUTHENTICATED,
				 "a client certificate (the agent's X509-SVID) is required");
		return NULL;
	}
	struct x509_info info;
	char err[256];
	if (x509_parse(der, len, &info, err, sizeof(err)) < 0) {
		finishf(call, GRPC_STATUS_UNAUTHENTICATED, "unreadable client certificate: %s", err);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->spiffe_id = xstrdup(info.spiffe_id);
	memcpy(p->serial, info.serial, sizeof(p->serial));
	x509_info_free(&info);
	grpc_conn_set_data(conn, p);
	/* What authorization needs of it is in p now. */
	grpc_conn_drop_peer_cert(conn);
	return p;
}

/* Whether the agent's record a allows the connection's certificate: not banned, and the
 * certificate is its SVID (checked every call: a replaced SVID is accepted until it expires). On
 * refusal the call is finished with the reason. */
static bool agent_ok(struct node_api *n, struct grpc_call *call, const struct peer_ident *p,
		     const struct agent_record *a)
{
	if (a->banned) {
		finishf(call, GRPC_STATUS_PERMISSION_DENIED, "agent %s is banned", p->spiffe_id);
		return false;
	}
	if (!is_agent_svid(n, a, p->serial)) {
		finishf(call, GRPC_STATUS_PERMISSION_DENIED,
			"the client certificate (serial %s) is not the SVID issued to agent %s",
			p->serial, p->spiffe_id);
		log_warnx("node API: refused a certificate for %s with serial %s: it is not the "
			 "agent's SVID", p->spiffe_id, p->serial);
		return false;
	}
	return true;
}

/* The agent's record from the datastore (the caller owns it), or NULL with the call finished. */
static struct agent_record *read_agent(struct node_api *n, struct grpc_call *call,
				       const struct peer_ident *p)
{
	struct agent_record *a = NULL;
	int r = ds_agent_get(n->ds, p->spiffe_id, &a);
	if (r == -ENOENT)
		finishf(call, GRPC_STATUS_PERMISSION_DENIED,
			"agent %s is not attested (it may have been evicted): attest again",
			p->spiffe_id);
	else if (r < 0)
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "datastore unavailable");
	return r < 0 ? NULL : a;
}

/* The calling agent's record, from its mutual TLS certificate; on failure the call is finished
 * with the reason and NULL returned. The record is read on every call: a ban or an eviction
 * applies to the next call on an open connection. */
struct agent_record *authorize(struct node_api *n, struct grpc_call *call)
{
	const struct peer_ident *p = peer_ident(call);
	struct agent_record *a = p ? read_agent(n, call, p) : NULL;
	if (a && !agent_ok(n, call, p, a)) {
		agent_record_free(a);
		return NULL;
	}
	return a;
}

const struct agent_record *authorize_cached(struct node_api *n, struct grpc_call *call)
{
	struct peer_ident *p = peer_ident(call);
	if (!p)
		return NULL;
	uint64_t gen;
	bool cacheable = ds_agent_generation(n->ds, &gen);
	if (!p->agent || !cacheable || p->agent_gen != gen) {
		/* gen was taken before the read: a change during it makes the next call read
		 * again. */
		agent_record_free(p->agent);
		p->agent = read_agent(n, call, p);
		p->agent_gen = gen;
		if (!p->agent)
			return NULL;
	}
	return agent_ok(n, call, p, p->agent) ? p->agent : NULL;
}

/* ---- SyncEntries: the streams themselves live in entry_streams.c ---- */

static void on_sync(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__SyncRequest *req = lanyard__node__v1__sync_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed SyncRequest");
		return;
	}
	lanyard__node__v1__sync_request__free_unpacked(req, NULL);
	/* Read before the record: agent changes up to here are in the record. */
	int64_t counter = ds_change_counter(n->ds);
	struct agent_record *a = authorize(n, call);
	if (!a)
		return;
	entry_streams_open(n->es, call, a, counter);
}

static void on_call_closed(struct grpc_call *call)
{
	if (strcmp(grpc_call_path(call), PATH_PREFIX "SyncEntries") != 0)
		return;
	entry_streams_call_closed(call);
}

void node_api_refresh(struct node_api *n)
{
	if (n->stopping)
		return;
	entry_streams_refresh(n->es);
}

void node_api_ca_changed(struct node_api *n)
{
	if (n->stopping)
		return;
	refresh_tls(n);
	node_api_refresh(n);
}

/* ---- Attest and RenewAgent ---- */

void histogram_add(struct node_api *n, double secs)
{
	for (size_t i = 0; i < 8; i++)
		if (secs <= node_api_sign_buckets[i])
			n->stats.sign_hist[i]++;
	n->stats.sign_sum += secs;
	n->stats.sign_count++;
}

/* Signs an agent SVID for the CSR; the call is finished on failure. */
static int sign_agent(struct node_api *n, struct grpc_call *call, const char *agent_id,
		      ProtobufCBinaryData csr, uint8_t **chain, size_t *chain_len,
		      int64_t *not_after, char *serial, size_t serial_len)
{
	struct csr_info ci = {0};
	char err[256];
	int64_t t0 = now_mono_us();
	if (x509_csr_parse(csr.data, csr.len, &ci, err, sizeof(err)) < 0) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "bad CSR: %s", err);
		return -1;
	}
	int r = ca_sign_x509(n->ca, agent_id, NULL, 0, ci.spki, ci.spki_len, n->agent_ttl,
			     now_unix(), chain, chain_len, not_after, err, sizeof(err));
	csr_info_free(&ci);
	if (r < 0) {
		finishf(call, GRPC_STATUS_INTERNAL, "cannot sign the agent SVID: %s", err);
		return -1;
	}
	histogram_add(n, (double)(now_mono_us() - t0) / 1e6);
	struct x509_info info;
	serial[0] = 0;
	if (x509_parse(*chain, *chain_len, &info, NULL, 0) == 0) {
		snprintf(serial, serial_len, "%s", info.serial);
		x509_info_free(&info);
	}
	return 0;
}

/* Signs the agent's SVID for its CSR, records the agent and answers the Attest call (finishing
 * it either way). Returns 0 when the agent was admitted. */
static int admit_agent(struct node_api *n, struct grpc_call *call, const struct agent_record *tmpl,
		       ProtobufCBinaryData csr)
{
	uint8_t *chain = NULL;
	size_t chain_len = 0;
	int64_t not_after;
	char serial[80];
	int ret = -1;
	if (sign_agent(n, call, tmpl->spiffe_id, csr, &chain, &chain_len, &not_after, serial,
		       sizeof(serial)) < 0)
		goto out;
	struct agent_record rec = *tmpl;
	rec.serial = serial;
	rec.not_after = not_after;
	rec.created_at = rec.last_seen = now_unix();
	if (ds_agent_upsert(n->ds, &rec) < 0) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "datastore unavailable");
		goto out;
	}
	prev_svids_forget(n->prev, tmpl->spiffe_id);
	Lanyard__Node__V1__AttestResponse resp = LANYARD__NODE__V1__ATTEST_RESPONSE__INIT;
	resp.spiffe_id = tmpl->spiffe_id;
	resp.svid.data = chain;
	resp.svid.len = chain_len;
	resp.bundle = entry_streams_bundle(n->es);
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	entry_streams_bundle_free(resp.bundle);
	ret = 0;
out:
	free(chain);
	if (ret == 0)
		n->stats.attest_ok++;
	else
		n->stats.attest_err++;
	return ret;
}

/* ---- k8s_psat: the token is checked against the cluster's API server on a worker thread ---- */

struct psat_job {
	uv_work_t work;
	struct node_api *api;
	struct grpc_call *call;
	Lanyard__Node__V1__AttestRequest *req;
	struct psat_result res;
	int rc;
	char err[256];
};

static void psat_work(uv_work_t *w)
{
	struct psat_job *j = w->data;
	j->rc = psat_attest(j->api->psat, j->api->trust_domain, (const char *)j->req->payload.data,
			    j->req->payload.len, &j->res, j->err, sizeof(j->err));
}

static void psat_after(uv_work_t *w, int status)
{
	struct psat_job *j = w->data;
	struct node_api *n = j->api;
	struct grpc_call *call = j->call;
	struct agent_record *prev = NULL;
	if (grpc_call_is_closed(call))
		goto out;
	if (status != 0) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "attestation was cancelled");
		n->stats.attest_err++;
		goto out;
	}
	if (j->rc < 0) {
		int code = j->rc == PSAT_DENIED	       ? GRPC_STATUS_PERMISSION_DENIED
			   : j->rc == PSAT_UNAVAILABLE ? GRPC_STATUS_UNAVAILABLE
						       : GRPC_STATUS_INTERNAL;
		finishf(call, code, "k8s_psat attestation failed: %s", j->err);
		log_warnx("node API: k8s_psat attestation refused: %s", j->err);
		n->stats.attest_err++;
		goto out;
	}
	/* The same node attests again with a fresh token and gets the same ID: a ban on that ID
	 * must hold. */
	if (ds_agent_get(n->ds, j->res.agent_id, &prev) == 0 && prev->banned) {
		finishf(call, GRPC_STATUS_PERMISSION_DENIED, "agent %s is banned", j->res.agent_id);
		n->stats.attest_err++;
		goto out;
	}
	struct agent_record rec = {
		.spiffe_id = j->res.agent_id,
		.attestor = (char *)"k8s_psat",
		.selectors = j->res.selectors,
		.n_selectors = j->res.n_selectors,
	};
	if (admit_agent(n, call, &rec, j->req->csr) < 0)
		goto out;
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("spiffe_id", j->res.agent_id), LOG_STR("attestor", "k8s_psat"),
			     LOG_STR("node", j->res.node_name)),
		  "node API: agent %s attested (k8s_psat, node %s)", j->res.agent_id,
		  j->res.node_name ? j->res.node_name : "?");
out:
	agent_record_free(prev);
	if (j->rc == 0)
		psat_result_free(&j->res);
	secure_zero(j->req->payload.data, j->req->payload.len);
	lanyard__node__v1__attest_request__free_unpacked(j->req, NULL);
	grpc_call_unref(call);
	free(j);
}

/* Takes over req. */
static void attest_psat(struct node_api *n, struct grpc_call *call,
			Lanyard__Node__V1__AttestRequest *req)
{
	char err[256];
	struct csr_info ci = {0};
	if (!n->psat) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
				 "k8s_psat node attestation is not enabled on this server "
				 "(k8s_psat_cluster is not set)");
		goto fail;
	}
	if (req->payload.len == 0 || req->payload.len > PSAT_TOKEN_MAX) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
				 "service account token missing or too long");
		goto fail;
	}
	if (x509_csr_parse(req->csr.data, req->csr.len, &ci, err, sizeof(err)) < 0) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "bad CSR: %s", err);
		goto fail;
	}
	csr_info_free(&ci);
	struct psat_job *j = xcalloc(1, sizeof(*j));
	j->api = n;
	j->call = call;
	j->req = req;
	j->work.data = j;
	grpc_call_ref(call);
	if (uv_queue_work(n->loop, &j->work, psat_work, psat_after) != 0) {
		grpc_call_unref(call);
		free(j);
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "cannot schedule attestation");
		goto fail;
	}
	return;
fail:
	n->stats.attest_err++;
	lanyard__node__v1__attest_request__free_unpacked(req, NULL);
}

static void on_attest(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__AttestRequest *req = lanyard__node__v1__attest_request__unpack(NULL, len, msg);
	char *alias = NULL, *token = NULL;
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed AttestRequest");
		goto out;
	}
	if (strcmp(req->attestor, "k8s_psat") == 0) {
		attest_psat(n, call, req);
		req = NULL; /* taken over */
		goto out;
	}
	if (strcmp(req->attestor, "join_token") != 0) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "unsupported node attestor \"%.64s\"",
			req->attestor);
		goto out;
	}
	if (req->payload.len == 0 || req->payload.len > 256) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "join token missing or too long");
		goto out;
	}
	token = xmalloc(req->payload.len + 1);
	memcpy(token, req->payload.data, req->payload.len);
	token[req->payload.len] = 0;
	for (char *p = token; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.';
		if (!ok) {
			grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED,
					 "join token is unknown or was already used");
			n->stats.attest_err++;
			goto out;
		}
	}
	/* The CSR is checked before the token is consumed, so a bad CSR does not burn a token. */
	struct csr_info ci = {0};
	char err[256];
	if (x509_csr_parse(req->csr.data, req->csr.len, &ci, err, sizeof(err)) < 0) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "bad CSR: %s", err);
		n->stats.attest_err++;
		goto out;
	}
	csr_info_free(&ci);
	int r = ds_token_consume(n->ds, token, now_unix(), &alias);
	if (r == -ENOENT || r == -ETIMEDOUT) {
		grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED,
				 r == -ETIMEDOUT ? "join token expired"
						 : "join token is unknown or was already used");
		log_warnx("node API: attestation refused: %s",
			 r == -ETIMEDOUT ? "join token expired" : "unknown or reused join token");
		n->stats.attest_err++;
		goto out;
	}
	if (r < 0) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "datastore unavailable");
		n->stats.attest_err++;
		goto out;
	}
	char agent_id[512];
	snprintf(agent_id, sizeof(agent_id), "spiffe://%s/lanyard/agent/join_token/%s",
		 n->trust_domain, token);
	struct agent_record rec = {
		.spiffe_id = agent_id,
		.attestor = (char *)"join_token",
		.aliases = alias ? &alias : NULL,
		.n_aliases = alias ? 1 : 0,
	};
	if (admit_agent(n, call, &rec, req->csr) < 0)
		goto out;
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("spiffe_id", agent_id), LOG_STR("attestor", "join_token"),
			     LOG_STR("alias", alias)),
		  "node API: agent %s attested (join token%s%s)", agent_id, alias ? ", alias " : "",
		  alias ? alias : "");
out:
	if (token) {
		secure_zero(token, strlen(token));
		free(token);
	}
	free(alias);
	if (req)
		lanyard__node__v1__attest_request__free_unpacked(req, NULL);
}

static void on_renew(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__RenewAgentRequest *req =
		lanyard__node__v1__renew_agent_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed RenewAgentRequest");
		return;
	}
	struct agent_record *a = authorize(n, call);
	uint8_t *chain = NULL;
	size_t chain_len;
	int64_t not_after;
	char serial[80];
	if (!a) {
		n->stats.renew_err++;
		goto out;
	}
	if (sign_agent(n, call, a->spiffe_id, req->csr, &chain, &chain_len, &not_after, serial,
		       sizeof(serial)) < 0) {
		n->stats.renew_err++;
		goto out;
	}
	/* Only the recorded serial is admitted later (authorize): an SVID whose serial could not be
	 * recorded must not be handed out, or the agent would lock itself out with it. */
	if (ds_agent_touch(n->ds, a->spiffe_id, serial, not_after, now_unix()) < 0) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
				 "datastore unavailable: cannot record the renewed SVID");
		n->stats.renew_err++;
		goto out;
	}
	prev_svids_put(n->prev, a->spiffe_id, a->serial, a->not_after, now_unix());
	taint_ack_record(n->ds, a->spiffe_id, (const char *const *)req->cleared_tainted,
			 req->n_cleared_tainted, now_unix());
	Lanyard__Node__V1__RenewAgentResponse resp = LANYARD__NODE__V1__RENEW_AGENT_RESPONSE__INIT;
	resp.svid.data = chain;
	resp.svid.len = chain_len;
	resp.bundle = entry_streams_bundle(n->es);
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	entry_streams_bundle_free(resp.bundle);
	n->stats.renew_ok++;
	log_event(LOG_LEVEL_INFO,
		  LOG_FIELDS(LOG_STR("spiffe_id", a->spiffe_id), LOG_STR("serial", serial)),
		  "node API: agent %s renewed its SVID (serial %s)", a->spiffe_id, serial);
out:
	free(chain);
	agent_record_free(a);
	lanyard__node__v1__renew_agent_request__free_unpacked(req, NULL);
}

/* ---- SignJWT and GetBundle ---- */

static void on_sign_jwt(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__SignJWTRequest *req =
		lanyard__node__v1__sign_jwtrequest__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed SignJWTRequest");
		return;
	}
	char *token = NULL;
	struct agent_record *a = NULL;
	if (req->n_audience == 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "audience is required");
		goto out;
	}
	for (size_t i = 0; i < req->n_audience; i++) {
		if (!req->audience[i][0] || strlen(req->audience[i]) > 1024) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
					 "audience values must be non-empty and at most 1024 bytes");
			goto out;
		}
	}
	a = authorize(n, call);
	if (!a)
		goto out;
	const struct authz_index *ix = entry_streams_index(n->es);
	struct entry view;
	const struct entry *e = ix ? authz_find(ix, req->entry_id, &view) : NULL;
	if (!e || !authz_allows(ix, a, e) || spiffeid_reserved(e->spiffe_id, n->trust_domain)) {
		finishf(call, GRPC_STATUS_PERMISSION_DENIED,
			"entry %.64s is not authorized for this agent", req->entry_id);
		n->stats.jwt_err++;
		goto out;
	}
	int64_t ttl = e->jwt_svid_ttl > 0 ? e->jwt_svid_ttl : n->default_jwt_ttl;
	int64_t exp;
	char err[256];
	int64_t t0 = now_mono_us();
	if (ca_sign_jwt(n->ca, e->spiffe_id, (const char *const *)req->audience, req->n_audience,
			ttl, now_unix(), &token, &exp, err, sizeof(err)) < 0) {
		finishf(call, GRPC_STATUS_INTERNAL, "cannot sign the JWT-SVID: %s", err);
		n->stats.jwt_err++;
		goto out;
	}
	histogram_add(n, (double)(now_mono_us() - t0) / 1e6);
	Lanyard__Node__V1__SignJWTResponse resp = LANYARD__NODE__V1__SIGN_JWTRESPONSE__INIT;
	resp.token = token;
	resp.expires_at = exp;
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	n->stats.jwt_ok++;
out:
	free(token);
	agent_record_free(a);
	lanyard__node__v1__sign_jwtrequest__free_unpacked(req, NULL);
}

static void on_get_bundle(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	struct agent_record *a = authorize(n, call);
	if (!a)
		return;
	agent_record_free(a);
	Lanyard__Node__V1__Bundle *b = entry_streams_bundle(n->es);
	if (!b) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "cannot read the bundle");
		return;
	}
	grpc_call_send_pb(call, &b->base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	entry_streams_bundle_free(b);
}

static const struct grpc_method methods[] = {
	{.path = PATH_PREFIX "Attest", .on_request = on_attest, .allow_unauthenticated = true},
	{.path = PATH_PREFIX "RenewAgent", .on_request = on_renew},
	{.path = PATH_PREFIX "SyncEntries", .server_streaming = true, .on_request = on_sync},
	{.path = PATH_PREFIX "SignX509", .on_request = on_sign_x509},
	{.path = PATH_PREFIX "SignJWT", .on_request = on_sign_jwt},
	{.path = PATH_PREFIX "GetBundle", .on_request = on_get_bundle},
};

static int on_connect(struct grpc_conn *conn, int fd)
{
	struct node_api *n = grpc_server_ud(grpc_conn_server(conn));
	n->stats.connections++;
	return 0;
}

static void on_disconnect(struct grpc_conn *conn)
{
	struct node_api *n = grpc_server_ud(grpc_conn_server(conn));
	n->stats.connections--;
	peer_ident_free(grpc_conn_data(conn));
	grpc_conn_set_data(conn, NULL);
}

/* The configured limit, kept below RLIMIT_NOFILE with room for the datastore, logs and the
 * admin and HTTP endpoints: beyond it accept() would fail for everyone. */
static unsigned connection_limit(unsigned configured)
{
	struct rlimit rl;
	const rlim_t reserve = 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= (rlim_t)configured + reserve)
		return configured;
	rlim_t lim = rl.rlim_cur > 2 * reserve ? rl.rlim_cur - reserve : rl.rlim_cur / 2;
	log_warnx("node API: node_api_max_connections %u lowered to %llu (RLIMIT_NOFILE is %llu)",
		  configured, (unsigned long long)lim, (unsigned long long)rl.rlim_cur);
	return (unsigned)lim;
}

int node_api_start(uv_loop_t *loop, const struct node_api_options *o, struct datastore *ds,
		   struct ca *ca, struct node_api **out, char *err, size_t errlen)
{
	struct node_api *n = xcalloc(1, sizeof(*n));
	n->prev = prev_svids_new();
	n->loop = loop;
	n->ds = ds;
	n->ca = ca;
	n->trust_domain = xstrdup(o->trust_domain);
	char sid[300];
	snprintf(sid, sizeof(sid), "spiffe://%s/lanyard/server", o->trust_domain);
	n->server_id = xstrdup(sid);
	n->default_x509_ttl = o->default_x509_svid_ttl;
	n->default_jwt_ttl = o->default_jwt_svid_ttl;
	n->agent_ttl = o->agent_svid_ttl;
	n->psat = o->psat;
	n->es = entry_streams_new(ds, ca, n->trust_domain, n->server_id);
	uv_timer_init(loop, &n->tls_timer);
	n->tls_timer.data = n;
	WOLFSSL_CTX *ctx = NULL;
	if (lkey_generate(KEY_EC_P256, &n->tls_key) < 0) {
		snprintf(err, errlen, "cannot generate the server's TLS key");
		goto fail;
	}
	ctx = make_tls_ctx(n, err, errlen);
	if (!ctx)
		goto fail;
	struct grpc_server_config cfg = {
		.methods = methods,
		.n_methods = ARRAY_LEN(methods),
		.ud = n,
		.on_connect = on_connect,
		.on_disconnect = on_disconnect,
		.on_call_closed = on_call_closed,
		.max_message_size = 16u << 20,
		.max_conns = connection_limit(o->max_connections),
		.max_conns_per_source = o->max_connections_per_source,
		.max_handshakes = o->max_handshakes,
		.handshake_timeout_ms = o->handshake_timeout_ms,
		.idle_timeout_ms = o->idle_timeout_ms,
		.unauth_max_message_size = o->unauthenticated_max_message_size,
		/* Attest messages of 1,024 agents attesting at once. */
		.unauth_max_buffered = 1024 * o->unauthenticated_max_message_size,
		/* Its clients are agents (nghttp2): no peer's indexed headers on any connection. */
		.zero_peer_header_table = true,
	};
	int r = grpc_server_listen_tcp(loop, o->bind_address, o->port, ctx, &cfg, &n->grpc, err,
				       errlen);
	wolfSSL_CTX_free(ctx);
	if (r < 0)
		goto fail;
	arm_tls_timer(n);
	*out = n;
	return 0;
fail:
	uv_close((uv_handle_t *)&n->tls_timer, NULL);
	/* The timer handle lives in n: let the loop finish closing it before n goes. */
	uv_run(loop, UV_RUN_NOWAIT);
	entry_streams_free(n->es);
	prev_svids_free(n->prev);
	lkey_free(n->tls_key);
	free(n->trust_domain);
	free(n->server_id);
	free(n);
	return -1;
}

int node_api_port(struct node_api *n)
{
	return grpc_server_port(n->grpc);
}

void node_api_stats(struct node_api *n, struct node_api_stats *out)
{
	*out = n->stats;
	out->streams = entry_streams_count(n->es);
	out->max_connections = grpc_server_max_conns(n->grpc);
	grpc_server_refusals(n->grpc, out->refused);
}

static void closed_one(struct node_api *n)
{
	if (--n->pending_closes > 0)
		return;
	entry_streams_free(n->es);
	prev_svids_free(n->prev);
	lkey_free(n->tls_key);
	free(n->trust_domain);
	free(n->server_id);
	void (*done)(void *) = n->done;
	void *arg = n->done_arg;
	free(n);
	if (done)
		done(arg);
}

static void grpc_done(void *arg)
{
	closed_one(arg);
}

static void timer_closed(uv_handle_t *h)
{
	closed_one(h->data);
}

void node_api_shutdown(struct node_api *n, void (*done)(void *arg), void *arg)
{
	n->stopping = true;
	n->done = done;
	n->done_arg = arg;
	n->pending_closes = 2;
	entry_streams_shutdown(n->es);
	uv_close((uv_handle_t *)&n->tls_timer, timer_closed);
	grpc_server_shutdown(n->grpc, 2000, grpc_done, n);
}
