/* node_identity.c: the agent identity, for the sync thread of node_client.c (see node_client.h):
 * the join tokens already used, node attestation, renewal of the agent SVID, and saving it.
 *
 * Threads and ownership: the sync thread only; the identity (key, chain, expiry) lives in
 * struct node_client and is changed only here. The status it shows goes through n->mu like
 * every other status change. */
#include <wolfssl/options.h>

#include "node_client.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent_config.h"
#include "attestor_k8s.h"
#include "entry_set.h"
#include "grpc_client.h"
#include "jwt_cache.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "persist.h"
#include "server_conn.h"
#include "spiffeid.h"
#include "taint_set.h"
#include "util.h"
#include "x509.h"

#include "node_client_internal.h"
#include "node_identity.h"

#define PSAT_TOKEN_MAX (64 * 1024)

static void token_hash(const char *token, char out[65])
{
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	wc_Sha256Hash((const uint8_t *)token, (word32)strlen(token), h);
	hex_encode(h, sizeof(h), out);
}

/* A projected service account token is single-use for nobody: the kubelet rotates it, so k8s_psat
 * can always attest again. Join tokens are single-use: one this agent consumed is not. */
bool token_usable(struct node_client *n)
{
	if (n->psat)
		return true;
	if (!n->join_token || !*n->join_token)
		return false;
	char h[65];
	token_hash(n->join_token, h);
	for (size_t i = 0; i < n->n_used_tokens; i++)
		if (strcmp(n->used_tokens[i], h) == 0)
			return false;
	return true;
}

static void remember_token(struct node_client *n)
{
	char h[65];
	token_hash(n->join_token, h);
	if (n->n_used_tokens == MAX_USED_TOKENS) {
		free(n->used_tokens[0]);
		memmove(n->used_tokens, n->used_tokens + 1, (MAX_USED_TOKENS - 1) * sizeof(char *));
		n->n_used_tokens--;
	}
	n->used_tokens = xrealloc(n->used_tokens, (n->n_used_tokens + 1) * sizeof(char *));
	n->used_tokens[n->n_used_tokens++] = xstrdup(h);
	n->state_dirty = true;
}

/* ---- identity ---- */

static void set_identity_status(struct node_client *n)
{
	pthread_mutex_lock(&n->mu);
	snprintf(n->st.agent_id, sizeof(n->st.agent_id), "%s", n->agent_key ? n->agent_id : "");
	n->st.agent_svid_not_after = n->agent_key ? n->agent_not_after : 0;
	n->st.agent_svid_renew_at = n->agent_key ? n->agent_renew_at : 0;
	pthread_mutex_unlock(&n->mu);
}

void drop_identity(struct node_client *n)
{
	lkey_free(n->agent_key);
	n->agent_key = NULL;
	free(n->agent_chain);
	n->agent_chain = NULL;
	n->agent_chain_len = 0;
	set_identity_status(n);
}

/* Checks an agent SVID for key and takes it (and key) over. fresh: just issued (rather than
 * loaded from disk). -1 with err when unusable. */
int take_identity(struct node_client *n, lkey *key, const uint8_t *chain, size_t chain_len,
			 const char *expect_id, bool fresh, char *err, size_t errlen)
{
	struct x509_info info = {0};
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	char why[256];
	int ret = -1;
	if (x509_split_der(chain, chain_len, &certs, &lens, &cnt) < 0 || cnt == 0) {
		seterr(err, errlen, "the agent SVID is not a DER certificate chain");
		goto out;
	}
	if (x509_parse(certs[0], lens[0], &info, why, sizeof(why)) < 0) {
		seterr(err, errlen, "the agent SVID is unreadable: %s", why);
		goto out;
	}
	if (info.n_uri_sans != 1 || !spiffeid_member_of(info.spiffe_id, n->trust_domain) ||
	    (expect_id && strcmp(info.spiffe_id, expect_id) != 0)) {
		seterr(err, errlen, "the agent SVID names \"%s\", not an agent of %s",
			 info.spiffe_id, n->trust_domain);
		goto out;
	}
	if (!lkey_matches_cert(key, certs[0], lens[0])) {
		seterr(err, errlen, "the agent SVID does not match the agent key");
		goto out;
	}
	if (n->bundle && x509_verify(chain, chain_len, n->bundle, n->bundle_len, now_unix(), why,
				     sizeof(why)) < 0) {
		seterr(err, errlen, "the agent SVID does not verify against the bundle: %s", why);
		goto out;
	}
	lkey_free(n->agent_key);
	free(n->agent_chain);
	n->agent_key = key;
	n->agent_chain = xmalloc(chain_len);
	memcpy(n->agent_chain, chain, chain_len);
	n->agent_chain_len = chain_len;
	snprintf(n->agent_id, sizeof(n->agent_id), "%s", info.spiffe_id);
	n->agent_not_after = info.not_after;
	n->agent_renew_at = entry_set_renew_time(n->rotation_fraction, fresh ? now_unix() : info.not_before,
				       info.not_before, info.not_after);
	set_identity_status(n);
	ret = 0;
out:
	x509_info_free(&info);
	free(certs);
	free(lens);
	return ret;
}

static int save_identity(struct node_client *n)
{
	uint8_t *der = NULL;
	size_t len = 0;
	char err[256];
	int r = -1;
	if (lkey_to_pkcs8_der(n->agent_key, &der, &len) == 0)
		r = persist_save_agent(n->data_dir, der, len, n->agent_chain, n->agent_chain_len, err,
				       sizeof(err));
	else
		seterr(err, sizeof(err), "cannot encode the agent key");
	if (der) {
		secure_zero(der, len);
		free(der);
	}
	if (r < 0)
		log_error("cannot persist the agent identity: %s", err);
	return r;
}

/* Whether the server's refusal is final, so that retrying cannot help and the agent exits with
 * the reason (under a service manager a retrying agent looks healthy): a join token the server
 * rejected (unknown, used, expired: a token never becomes valid again) and a banned agent.
 * Everything else (transport errors, an unavailable server, a refused projected service account
 * token, which the kubelet replaces) is retried with backoff. The server says "banned" in the
 * message only, as eviction shares PERMISSION_DENIED. */
static bool is_banned(int status, const char *msg)
{
	return status == GRPC_STATUS_PERMISSION_DENIED && strstr(msg, " is banned");
}

static bool attestation_refused_for_good(const struct node_client *n, int status, const char *msg)
{
	return is_banned(status, msg) ||
	       (!n->psat && (status == GRPC_STATUS_PERMISSION_DENIED ||
			     status == GRPC_STATUS_INVALID_ARGUMENT ||
			     status == GRPC_STATUS_UNAUTHENTICATED));
}

/* The outcome of a PERMISSION_DENIED from a call made with the agent SVID: evicted (attest again)
 * or banned (for good). */
int denied_outcome(struct node_client *n, const char *msg)
{
	if (!is_banned(GRPC_STATUS_PERMISSION_DENIED, msg))
		return OUT_DENIED;
	set_state(n, NODE_STATE_REFUSED, "%s", msg);
	return OUT_REFUSED;
}

int attest(struct node_client *n)
{
	char err[512];
	lkey *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	ProtobufCMessage *resp = NULL;
	int status, rc = OUT_RETRY;
	char *psat = NULL;
	size_t psat_len = 0;
	const char *how = n->psat ? "a Kubernetes service account token (k8s_psat)" : "a join token";
	if (n->psat && k8s_psat_token_read(n->psat_token_path, &psat, &psat_len, err,
					   sizeof(err)) < 0) {
		set_state(n, NODE_STATE_NEEDS_TOKEN, "%s", err);
		goto out;
	}
	set_state(n, NODE_STATE_ATTESTING, "attesting to server %s with %s",
		  server_conn_current(n->conn), how);
	if (lkey_generate(KEY_EC_P256, &key) < 0 || x509_csr_create(key, &csr, &csr_len) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "cannot create the agent key and CSR");
		goto out;
	}
	if (connect_server(n, false, err, sizeof(err)) < 0) {
		rc = is_stopping(n) ? OUT_STOP : OUT_RETRY;
		set_state(n, NODE_STATE_DISCONNECTED, "%s", err);
		goto out;
	}
	Lanyard__Node__V1__AttestRequest req = LANYARD__NODE__V1__ATTEST_REQUEST__INIT;
	req.attestor = n->psat ? "k8s_psat" : "join_token";
	req.payload.data = (uint8_t *)(n->psat ? psat : n->join_token);
	req.payload.len = n->psat ? psat_len : strlen(n->join_token);
	req.csr.data = csr;
	req.csr.len = csr_len;
	if (server_conn_call(n->conn, "Attest", &req.base,
			     &lanyard__node__v1__attest_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "attestation call failed: %s", err);
		goto out;
	}
	if (status != GRPC_STATUS_OK && attestation_refused_for_good(n, status, err)) {
		set_state(n, NODE_STATE_REFUSED, "the server refused node attestation with %s: %s: %s",
			  how, grpc_status_name(status), err);
		rc = OUT_REFUSED;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		if (status == GRPC_STATUS_PERMISSION_DENIED || status == GRPC_STATUS_INVALID_ARGUMENT ||
		    status == GRPC_STATUS_UNAUTHENTICATED)
			set_state(n, NODE_STATE_NEEDS_TOKEN,
				  "the server refused node attestation with %s: %s: %s", how,
				  grpc_status_name(status), err);
		else
			set_state(n, NODE_STATE_DISCONNECTED, "node attestation failed: %s: %s",
				  grpc_status_name(status), err);
		goto out;
	}
	Lanyard__Node__V1__AttestResponse *ar = (Lanyard__Node__V1__AttestResponse *)resp;
	if (!ar->bundle || apply_bundle(n, ar->bundle, err, sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "unusable attestation answer: %s",
			  ar->bundle ? err : "no bundle");
		goto out;
	}
	if (take_identity(n, key, ar->svid.data, ar->svid.len, ar->spiffe_id, true, err,
			  sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "unusable attestation answer: %s", err);
		goto out;
	}
	key = NULL;
	n->just_attested = true;
	pthread_mutex_lock(&n->mu);
	n->st.attestations++;
	pthread_mutex_unlock(&n->mu);
	if (!n->psat)
		remember_token(n);
	save_identity(n);
	persist_state(n);
	char when[32];
	time_t t = (time_t)n->agent_not_after;
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	log_info("attested as %s; agent SVID valid until %s", n->agent_id, when);
	rc = OUT_RECONNECT;
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (psat) {
		secure_zero(psat, psat_len);
		free(psat);
	}
	free(csr);
	lkey_free(key);
	server_conn_close(n->conn);
	release_ecc_cache();
	return rc;
}

/* clear: acknowledge the tainted authorities (the set is clear of them). */
int renew_agent(struct node_client *n, bool clear)
{
	char err[512];
	lkey *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	ProtobufCMessage *resp = NULL;
	int status, rc = OUT_RETRY;
	if (lkey_generate(KEY_EC_P256, &key) < 0 || x509_csr_create(key, &csr, &csr_len) < 0) {
		log_error("cannot create a key and CSR to renew the agent SVID");
		goto out;
	}
	Lanyard__Node__V1__RenewAgentRequest req = LANYARD__NODE__V1__RENEW_AGENT_REQUEST__INIT;
	req.csr.data = csr;
	req.csr.len = csr_len;
	if (clear) {
		req.cleared_tainted = n->taint.ids;
		req.n_cleared_tainted = n->taint.n;
	}
	if (server_conn_call(n->conn, "RenewAgent", &req.base,
			     &lanyard__node__v1__renew_agent_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "renewing the agent SVID failed: %s", err);
		goto out;
	}
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to renew the agent SVID: %s", err);
		rc = denied_outcome(n, err);
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		set_state(n, NODE_STATE_DISCONNECTED, "renewing the agent SVID failed: %s: %s",
			  grpc_status_name(status), err);
		goto out;
	}
	Lanyard__Node__V1__RenewAgentResponse *rr = (Lanyard__Node__V1__RenewAgentResponse *)resp;
	if (rr->bundle && apply_bundle(n, rr->bundle, err, sizeof(err)) < 0)
		log_error("ignoring the bundle of the RenewAgent answer: %s", err);
	char id[SPIFFEID_MAX + 1];
	snprintf(id, sizeof(id), "%s", n->agent_id);
	if (take_identity(n, key, rr->svid.data, rr->svid.len, id, true, err, sizeof(err)) < 0) {
		log_error("unusable renewed agent SVID: %s", err);
		goto out;
	}
	key = NULL;
	save_identity(n);
	pthread_mutex_lock(&n->mu);
	n->st.rotations++;
	pthread_mutex_unlock(&n->mu);
	if (clear) {
		log_info("clear of %zu tainted CA authorit%s (first %s) %lld s after the taint",
			 n->taint.n, n->taint.n == 1 ? "y" : "ies", n->taint.ids[0],
			 (long long)(now_unix() - n->taint.pending_since));
		taint_set_acked(&n->taint);
	}
	log_info("agent SVID %s renewed; reconnecting with it", n->agent_id);
	rc = OUT_RECONNECT;
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	free(csr);
	lkey_free(key);
	release_ecc_cache();
	return rc;
}

/* ---- the k8s_psat token ---- */

static bool b64url_part_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

int k8s_psat_token_read(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t n = 0;
	const char *d1, *d2;
	char *t;
	int r;

	*out = NULL;
	r = file_read_all(path, PSAT_TOKEN_MAX, &buf, &n);
	if (r < 0) {
		snprintf(err, errlen, "cannot read the service account token %s: %s", path,
			 r == -EFBIG ? "file too large" : strerror(-r));
		return -1;
	}
	t = (char *)buf;
	while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t'))
		t[--n] = '\0';
	d1 = memchr(t, '.', n);
	d2 = d1 ? memchr(d1 + 1, '.', (size_t)(t + n - d1 - 1)) : NULL;
	if (strlen(t) != n || !d1 || !d2 || !b64url_part_ok(t, (size_t)(d1 - t)) ||
	    !b64url_part_ok(d1 + 1, (size_t)(d2 - d1 - 1)) ||
	    !b64url_part_ok(d2 + 1, (size_t)(t + n - d2 - 1))) {
		snprintf(err, errlen, "%s does not hold a service account token (a JWT)", path);
		secure_zero(buf, n);
		free(buf);
		return -1;
	}
	*out = t;
	if (len)
		*len = n;
	return 0;
}
