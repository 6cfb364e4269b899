/* node_sync.c: what a sync session of node_client.c receives and keeps (see node_client.h): the
 * bundle and the tainted authorities it names, the entry stream (entries, federated bundles),
 * publication of snapshots to svid_cache, persistence of the state, and the workload SVID
 * batches signed by the server.
 *
 * Threads and ownership: the sync thread only; the entry set, the bundle and the persisted state
 * live in struct node_client and nothing else touches them. Readers see what this publishes
 * through svid_cache snapshots only. */
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

/* ---- bundle ---- */

/* A new tainted authority: every SVID it signed is re-issued within TAINT_WINDOW_S. */
static void apply_taint(struct node_client *n, const Lanyard__Node__V1__Bundle *b)
{
	int64_t now = now_unix();
	if (!taint_set_update(&n->taint, b, now))
		return;
	size_t k = entry_set_taint(&n->es, (const uint8_t *const *)n->taint.certs, n->taint.lens,
				   n->taint.n, now, TAINT_WINDOW_S);
	bool own = n->agent_chain &&
		   entry_set_signed_by_any(n->agent_chain, n->agent_chain_len,
					   (const uint8_t *const *)n->taint.certs, n->taint.lens,
					   n->taint.n, now);
	log_warnx("%zu CA authorit%s of %s tainted (first %s): re-issuing %zu X509-SVIDs within "
		  "%d s%s", n->taint.n, n->taint.n == 1 ? "y" : "ies", n->trust_domain,
		  n->taint.ids[0], k, TAINT_WINDOW_S, own ? ", then the agent SVID" : "");
	n->plan_dirty = true;
	__atomic_add_fetch(&n->jwt_generation, 1, __ATOMIC_RELEASE);
}

/* True when a taint is pending and no SVID of the set depends on a tainted authority any more:
 * time to renew the agent SVID and acknowledge. */
bool taint_clear(struct node_client *n)
{
	int64_t now = now_unix();
	if (!n->taint.pending || !n->synced || !n->agent_key || now < n->taint.next_check)
		return false;
	n->taint.next_check = now + TAINT_CHECK_S;
	return entry_set_tainted_left(&n->es) == 0;
}

/* Replaces the bundle with the server's. Returns 1 when it changed, 0 when not, -1 when refused
 * (err says why). */
int apply_bundle(struct node_client *n, const Lanyard__Node__V1__Bundle *b, char *err,
			size_t errlen)
{
	if (!b)
		return 0;
	uint8_t *der = NULL;
	size_t len = 0;
	char *jwt = NULL;
	if (server_conn_decode_bundle(n->conn, b, &der, &len, &jwt, err, errlen) < 0)
		return -1;
	apply_taint(n, b);
	bool same = n->bundle && n->bundle_len == len && memcmp(n->bundle, der, len) == 0 &&
		    n->jwt_bundle && strcmp(n->jwt_bundle, jwt) == 0 && n->bundle_seq == b->sequence;
	if (same) {
		free(der);
		free(jwt);
		return 0;
	}
	free(n->bundle);
	free(n->jwt_bundle);
	n->bundle = der;
	n->bundle_len = len;
	n->jwt_bundle = jwt;
	n->bundle_seq = b->sequence;
	n->publish_needed = true;
	log_info("trust bundle of %s updated: sequence %lld, %zu X.509 authorities, %zu JWT keys",
		 n->trust_domain, (long long)b->sequence, b->n_x509_authorities,
		 b->n_jwt_authorities);
	char why[256];
	if (persist_save_bundle(n->data_dir, n->trust_domain, n->bundle, n->bundle_len,
				n->jwt_bundle, n->bundle_seq, why, sizeof(why)) < 0)
		log_error("cannot persist the trust bundle: %s", why);
	return 1;
}

/* ---- the entry stream ---- */

static int cmp_fed_snap(const void *a, const void *b)
{
	return strcmp(((const struct fed_snap *)a)->trust_domain,
		      ((const struct fed_snap *)b)->trust_domain);
}

/* Replaces the federated bundles with the complete set m carries. A malformed one is left out
 * (logged): its trust domain is then not trusted, never trusted with something else. */
static void apply_fed(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m)
{
	struct fed_snap *v = xcalloc(m->n_federated_bundles + 1, sizeof(*v));
	size_t len = 0;
	char err[256];
	for (size_t i = 0; i < m->n_federated_bundles; i++) {
		const Lanyard__Node__V1__Bundle *b = m->federated_bundles[i];
		struct fed_snap *f = &v[len];
		if (server_conn_decode_foreign_bundle(n->conn, b, &f->x509, &f->x509_len,
						      &f->jwt_bundle, err, sizeof(err)) < 0) {
			log_error("ignoring a federated bundle: %s", err);
			continue;
		}
		f->trust_domain = xstrdup(b->trust_domain);
		f->sequence = b->sequence;
		len++;
	}
	qsort(v, len, sizeof(*v), cmp_fed_snap);
	for (size_t i = 0; i < len; i++)
		log_info("federated bundle of %s: sequence %lld", v[i].trust_domain,
			 (long long)v[i].sequence);
	if (len == 0 && n->n_fed)
		log_info("no federated bundle any more");
	fed_snap_clear(n->fed, n->n_fed);
	n->fed = v;
	n->n_fed = len;
	n->publish_needed = true;
	if (persist_save_federated(n->data_dir, n->fed, n->n_fed, err, sizeof(err)) < 0)
		log_error("cannot persist the federated bundles: %s", err);
}

void apply_sync(struct node_client *n, const Lanyard__Node__V1__SyncResponse *m)
{
	char err[256];
	if (m->bundle && apply_bundle(n, m->bundle, err, sizeof(err)) < 0)
		log_error("ignoring a bundle update: %s", err);
	if (m->federated_bundles_set)
		apply_fed(n, m);
	enum entry_set_change c = entry_set_apply(&n->es, n->trust_domain, m);
	if (c != ENTRY_SET_UNCHANGED) {
		n->publish_needed = true;
		n->state_dirty = true;
		n->plan_dirty = true;
		n->trim_needed = true;
	}
	if (c == ENTRY_SET_SNAPSHOT) {
		bool first = !n->connected;
		n->synced = true;
		n->connected = true;
		if (first)
			note_connected(n);
	}
	pthread_mutex_lock(&n->mu);
	n->st.last_sync = now_unix();
	pthread_mutex_unlock(&n->mu);
}

/* ---- publication and persistence ---- */

void publish(struct node_client *n)
{
	int64_t now = now_unix();
	struct snapshot *s = snapshot_new();
	free(s->trust_domain);
	s->trust_domain = xstrdup(n->trust_domain);
	if (n->bundle) {
		s->bundle = xmalloc(n->bundle_len);
		memcpy(s->bundle, n->bundle, n->bundle_len);
		s->bundle_len = n->bundle_len;
	}
	if (n->jwt_bundle) {
		free(s->jwt_bundle);
		s->jwt_bundle = xstrdup(n->jwt_bundle);
	}
	s->bundle_sequence = n->bundle_seq;
	snapshot_set_fed(s, n->fed, n->n_fed);
	s->n_svids = entry_set_list(&n->es, now, true, &s->entries, &s->svids);
	s->n_entries = n->es.n;
	s->synced = n->synced;
	svid_cache_publish(n->cache, s);
	n->publish_needed = false;
}

void persist_state(struct node_client *n)
{
	struct entry **es;
	struct svid **vs;
	size_t nv = entry_set_list(&n->es, now_unix(), false, &es, &vs);
	char err[256];
	if (persist_save_state(n->data_dir, n->used_tokens, n->n_used_tokens, es, n->es.n, vs, nv,
			       err, sizeof(err)) < 0)
		log_error("cannot persist the agent state: %s", err);
	free(es);
	free(vs);
	n->state_dirty = false;
	n->rotated_dirty = false;
	n->persist_before_publish = false;
	n->last_persist_us = now_mono_us();
	n->trim_needed = true;
}

/* Drops expired SVIDs, publishes and persists what is due, and computes the next due time. */
void housekeeping(struct node_client *n)
{
	int64_t now = now_unix();
	if (n->plan_dirty || now >= n->next_due) {
		if (entry_set_plan(&n->es, now, n->synced, &n->next_due, &n->next_expiry))
			n->publish_needed = true;
		n->plan_dirty = false;
	}
	if (n->persist_before_publish)
		persist_state(n);
	if (n->publish_needed)
		publish(n);
	int64_t since = now_mono_us() - n->last_persist_us;
	if ((n->state_dirty && since >= PERSIST_INTERVAL_US) ||
	    (n->rotated_dirty && (since >= PERSIST_ROTATION_US || now >= n->persist_by)))
		persist_state(n);
	release_memory(n);
}

/* ---- workload SVIDs ---- */

/* Gets one batch of SVIDs signed: OUT_CONTINUE, or OUT_RETRY / OUT_DENIED to end the session.
 * Failed entries are retried after SIGN_RETRY_S. */
int sign_batch(struct node_client *n)
{
	int64_t now = now_unix();
	Lanyard__Node__V1__SignX509Request req = LANYARD__NODE__V1__SIGN_X509_REQUEST__INIT;
	struct entry_set_batch *b = entry_set_batch_new(&n->es, n->key_type, SIGN_BATCH, now,
							now + SIGN_RETRY_S, &req);
	if (!b)
		return OUT_CONTINUE;
	ProtobufCMessage *resp = NULL;
	char err[512];
	int status, rc = OUT_CONTINUE;
	if (req.n_items == 0)
		goto out;
	if (server_conn_call(n->conn, "SignX509", &req.base,
			     &lanyard__node__v1__sign_x509_response__descriptor, &resp, &status, err,
			     sizeof(err)) < 0) {
		set_state(n, NODE_STATE_DISCONNECTED, "SignX509 failed: %s", err);
		rc = OUT_RETRY;
		goto out;
	}
	entry_set_batch_sent(b);
	if (status == GRPC_STATUS_PERMISSION_DENIED) {
		log_error("the server refused to sign for this agent: %s", err);
		rc = denied_outcome(n, err);
		goto out;
	}
	if (status == GRPC_STATUS_UNAVAILABLE) {
		set_state(n, NODE_STATE_DISCONNECTED, "the server answered SignX509 with %s: %s",
			  grpc_status_name(status), err);
		entry_set_batch_retry(&n->es, b);
		rc = OUT_RETRY;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		log_error("the server failed to sign %zu X509-SVIDs: %s: %s", req.n_items,
			  grpc_status_name(status), err);
		entry_set_batch_retry(&n->es, b);
		goto out;
	}
	const struct entry_set_signing how = {
		.bundle = n->bundle,
		.bundle_len = n->bundle_len,
		.rotation_fraction = n->rotation_fraction,
	};
	struct entry_set_minted m;
	entry_set_batch_accept(&n->es, b, (Lanyard__Node__V1__SignX509Response *)resp, &how, &m);
	if (m.rotated) {
		if (!n->rotated_dirty || m.persist_by < n->persist_by)
			n->persist_by = m.persist_by;
		n->rotated_dirty = true;
	}
	pthread_mutex_lock(&n->mu);
	n->st.svids_minted += m.minted;
	n->st.rotations += m.rotated;
	pthread_mutex_unlock(&n->mu);
	/* Renewals are routine (and frequent with many entries): only new SVIDs make info lines. */
	if (m.minted > m.rotated)
		log_info("got %llu new X509-SVIDs (and %llu renewals)",
			 (unsigned long long)(m.minted - m.rotated), (unsigned long long)m.rotated);
	else if (m.minted)
		log_debug("renewed %llu X509-SVIDs", (unsigned long long)m.minted);
	n->publish_needed = true;
	if (m.minted > m.rotated)
		n->state_dirty = n->persist_before_publish = true;
out:
	n->plan_dirty = true;
	n->trim_needed = true;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	entry_set_batch_free(b);
	release_ecc_cache();
	return rc;
}
