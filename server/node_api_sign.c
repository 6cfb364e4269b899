/* node_api_sign.c: the node API's SignX509 method (see node_api.h): an agent's batch of workload
 * SVID requests, authorized against the entries it may see and signed on a libuv worker thread.
 *
 * Threads and ownership: the handler and the completion run on the server's loop thread; the
 * worker only signs (ca.c is thread-safe) and touches nothing but its own job. The job holds a
 * reference on the call until the completion answers it. */
#include "node_api.h"

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

#include "node_api_internal.h"

/* ---- SignX509: batches signed on worker threads ---- */

/* entry_id and csr point into the job's request; the SPIFFE ID and names are copies of the entry
 * (the authorization index may be replaced while the worker signs). */
struct sign_item {
	const char *entry_id;
	char *spiffe_id;
	char **dns_names;
	size_t n_dns;
	int64_t ttl;
	const uint8_t *csr;
	size_t csr_len;
	/* results */
	uint8_t *chain;
	size_t chain_len;
	char *error;
	double seconds;
};

struct sign_job {
	uv_work_t work;
	struct node_api *api;
	struct grpc_call *call;
	Lanyard__Node__V1__SignX509Request *req; /* owned: the items' entry IDs and CSRs */
	struct sign_item *items;
	size_t n;
};

/* Parses every CSR, then signs all the SVIDs together (ca_sign_x509_batch: one round trip to the
 * signer per batch). A bad CSR or entry fails only its own item. */
static void sign_work(uv_work_t *w)
{
	struct sign_job *job = w->data;
	int64_t t0 = now_mono_us();
	struct csr_info *ci = xcalloc(job->n + 1, sizeof(*ci));
	struct ca_x509_req *reqs = xcalloc(job->n + 1, sizeof(*reqs));
	size_t *item = xcalloc(job->n + 1, sizeof(*item)), m = 0;
	for (size_t i = 0; i < job->n; i++) {
		struct sign_item *it = &job->items[i];
		char err[256];
		if (it->error)
			continue;
		if (x509_csr_parse(it->csr, it->csr_len, &ci[i], err, sizeof(err)) < 0) {
			char msg[300];
			snprintf(msg, sizeof(msg), "bad CSR: %s", err);
			it->error = xstrdup(msg);
			continue;
		}
		reqs[m] = (struct ca_x509_req){ .spiffe_id = it->spiffe_id,
						.dns_names = (const char *const *)it->dns_names,
						.n_dns = it->n_dns, .spki = ci[i].spki,
						.spki_len = ci[i].spki_len, .ttl = it->ttl };
		item[m++] = i;
	}
	ca_sign_x509_batch(job->api->ca, reqs, m, now_unix());
	double seconds = (double)(now_mono_us() - t0) / 1e6;
	for (size_t j = 0; j < m; j++) {
		struct sign_item *it = &job->items[item[j]];
		it->chain = reqs[j].chain;
		it->chain_len = reqs[j].chain_len;
		if (reqs[j].status < 0)
			it->error = xstrdup(reqs[j].err);
		it->seconds = seconds;
	}
	for (size_t i = 0; i < job->n; i++)
		csr_info_free(&ci[i]);
	free(ci);
	free(reqs);
	free(item);
}

static void sign_job_free(struct sign_job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		struct sign_item *it = &job->items[i];
		free(it->spiffe_id);
		for (size_t k = 0; k < it->n_dns; k++)
			free(it->dns_names[k]);
		free(it->dns_names);
		free(it->chain);
		free(it->error);
	}
	free(job->items);
	lanyard__node__v1__sign_x509_request__free_unpacked(job->req, NULL);
	free(job);
}

static void sign_after(uv_work_t *w, int status)
{
	struct sign_job *job = w->data;
	struct node_api *n = job->api;
	Lanyard__Node__V1__SignX509Response resp = LANYARD__NODE__V1__SIGN_X509_RESPONSE__INIT;
	Lanyard__Node__V1__X509SignResult *res = xcalloc(job->n + 1, sizeof(*res));
	Lanyard__Node__V1__X509SignResult **ptrs = xcalloc(job->n + 1, sizeof(*ptrs));
	for (size_t i = 0; i < job->n; i++) {
		struct sign_item *it = &job->items[i];
		lanyard__node__v1__x509_sign_result__init(&res[i]);
		res[i].entry_id = (char *)it->entry_id;
		if (it->error || status != 0) {
			res[i].error = it->error ? it->error : (char *)"signing was cancelled";
			n->stats.x509_err++;
		} else {
			res[i].svid.data = it->chain;
			res[i].svid.len = it->chain_len;
			n->stats.x509_ok++;
			histogram_add(n, it->seconds);
		}
		ptrs[i] = &res[i];
	}
	resp.results = ptrs;
	resp.n_results = job->n;
	if (!grpc_call_is_closed(job->call)) {
		grpc_call_send_pb(job->call, &resp.base);
		grpc_call_finish(job->call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(job->call);
	free(res);
	free(ptrs);
	sign_job_free(job);
}

void on_sign_x509(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__SignX509Request *req =
		lanyard__node__v1__sign_x509_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed SignX509Request");
		return;
	}
	const struct agent_record *a = NULL;
	if (req->n_items > MAX_SIGN_BATCH) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "at most %d CSRs per batch",
			MAX_SIGN_BATCH);
		goto out;
	}
	a = authorize_cached(n, call);
	if (!a)
		goto out;
	const struct authz_index *ix = entry_streams_index(n->es);
	struct sign_job *job = xcalloc(1, sizeof(*job));
	job->api = n;
	job->call = call;
	job->req = req;
	req = NULL;
	job->n = job->req->n_items;
	job->items = xcalloc(job->n + 1, sizeof(*job->items));
	for (size_t i = 0; i < job->n; i++) {
		Lanyard__Node__V1__X509SignItem *in = job->req->items[i];
		struct sign_item *it = &job->items[i];
		it->entry_id = in->entry_id;
		struct entry view;
		const struct entry *e = ix ? authz_find(ix, in->entry_id, &view) : NULL;
		if (!e || !authz_allows(ix, a, e) || spiffeid_reserved(e->spiffe_id, n->trust_domain)) {
			char m[200];
			snprintf(m, sizeof(m), "entry %.64s is not authorized for this agent%s",
				 in->entry_id, e && authz_allows(ix, a, e)
				 ? " (its SPIFFE ID is in the reserved namespace)" : "");
			it->error = xstrdup(m);
			continue;
		}
		/* The SVID's ID, names and lifetime come from the entry, never from the CSR. */
		it->spiffe_id = xstrdup(e->spiffe_id);
		it->n_dns = e->n_dns_names;
		it->dns_names = xcalloc(it->n_dns + 1, sizeof(char *));
		for (size_t k = 0; k < it->n_dns; k++)
			it->dns_names[k] = xstrdup(e->dns_names[k]);
		it->ttl = e->x509_svid_ttl > 0 ? e->x509_svid_ttl : n->default_x509_ttl;
		it->csr = in->csr.data;
		it->csr_len = in->csr.len;
	}
	job->work.data = job;
	grpc_call_ref(call);
	if (uv_queue_work(n->loop, &job->work, sign_work, sign_after) != 0) {
		grpc_call_unref(call);
		sign_job_free(job);
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "cannot schedule signing");
	}
out:
	lanyard__node__v1__sign_x509_request__free_unpacked(req, NULL);
}
