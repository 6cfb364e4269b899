/* workload_api.c: the SPIFFE Workload API server on the agent's Unix socket.
 *
 * A call goes through: header check and request decoding (loop) -> attestation of the pinned
 * caller and the pid-reuse check (threadpool, uv_queue_work, when an attestor may block or hash
 * binaries; inline on the loop otherwise) -> entry matching and the answer (loop). Streams stay
 * on a list; every publication of the svid_cache walks it and sends a stream a new message only
 * when its answer changed (a 16-byte digest per stream stands for the last message sent, so no
 * copy of it is kept).
 *
 * Split along its seams (workload_internal.h lists them): selector sets in workload_selset.c,
 * stream answers in workload_answers.c, the JWT methods in workload_jwt.c, connection admission
 * in workload_conns.c. This file keeps the calls, their lifetimes, attestation and start/stop.
 *
 * Lifetimes: a wcall holds one grpc_call reference for its whole life and is itself reference
 * counted (one reference for the open call, one per pending attestation or JWT fetch); a wconn
 * is referenced by its connection and by its calls' pending attestations (which read its pinned
 * /proc fd on a worker thread). The workload_api is freed when the gRPC server reported its
 * shutdown done and no asynchronous work refers to it any more. */
#include "workload_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent_config.h"
#include "attestor.h"
#include "grpc_server.h"
#include "jwt.h"
#include "jwt_cache.h"
#include "log.h"
#include "node_client.h"
#include "pbstruct.h"
#include "sds.h"
#include "spiffeid.h"
#include "svid_cache.h"
#include "unix_socket.h"
#include "util.h"

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "health.pb-c.h"
#include "workload.pb-c.h"

/* One attestation on the threadpool; freed when it is done, so open streams do not carry it. */
struct attest_job {
	uv_work_t work;
	struct wcall *c;
	struct selector_list got;
	int rc;
	char err[256];
	int64_t started_us;
};

const double workload_attest_buckets[WL_ATTEST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001,
							   0.0025, 0.01, 0.1, 1.0};

static const char *const method_names[WL_METHOD_COUNT] = {
	[WL_METHOD_FETCH_X509_SVID] = "FetchX509SVID",
	[WL_METHOD_FETCH_X509_BUNDLES] = "FetchX509Bundles",
	[WL_METHOD_FETCH_JWT_SVID] = "FetchJWTSVID",
	[WL_METHOD_FETCH_JWT_BUNDLES] = "FetchJWTBundles",
	[WL_METHOD_VALIDATE_JWT_SVID] = "ValidateJWTSVID",
	[WL_METHOD_HEALTH_CHECK] = "HealthCheck",
	[WL_METHOD_SDS_STREAM] = "StreamSecrets",
	[WL_METHOD_SDS_FETCH] = "FetchSecrets",
};

const char *workload_method_name(int method)
{
	if (method < 0 || method >= WL_METHOD_COUNT)
		return "unknown";
	return method_names[method];
}

/* ---- small helpers ---- */

static void digest_of(const void *data, size_t len, uint8_t out[DIGEST_LEN])
{
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_Sha256Hash(data, (word32)len, full);
	memcpy(out, full, DIGEST_LEN);
}

const char *wl_td_of(struct workload_api *w)
{
	return w->snap->trust_domain && w->snap->trust_domain[0] ? w->snap->trust_domain
								: w->opts.trust_domain;
}

static bool snap_ready(const struct snapshot *s)
{
	return (s->synced || s->n_svids > 0) && s->bundle_len > 0;
}

static void count(struct workload_api *w, enum workload_method m, int status)
{
	if (status >= 0 && status < WL_STATUS_COUNT)
		w->stats.requests[m][status]++;
}

/* Answers a call that never got a wcall (immediate errors, health). */
static void finish_now(struct workload_api *w, struct grpc_call *call, enum workload_method m,
		       int status, const char *message)
{
	if (grpc_call_finish(call, status, message) == 0)
		count(w, m, status);
}

/* ---- objects ---- */

void wconn_unref(struct wconn *wc)
{
	if (!wc || --wc->refs > 0)
		return;
	caller_close(&wc->caller);
	free(wc);
}

void wcall_unref(struct wcall *c)
{
	if (!c || --c->refs > 0)
		return;
	if (c->req)
		protobuf_c_message_free_unpacked(c->req, NULL);
	selset_unref(c->w, c->sel);
	for (size_t i = 0; i < c->n_slots; i++) {
		free(c->slots[i].token);
		free(c->slots[i].message);
	}
	free(c->slots);
	free(c->early);
	snapshot_release(c->jwt_snap);
	wconn_unref(c->conn);
	grpc_call_unref(c->call);
	free(c);
}

static void stream_unlink(struct wcall *c)
{
	struct workload_api *w = c->w;

	if (!c->in_streams)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->streams = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->in_streams = false;
	w->stats.streams--;
}

static void stream_link(struct wcall *c)
{
	struct workload_api *w = c->w;

	c->next = w->streams;
	if (w->streams)
		w->streams->prev = c;
	w->streams = c;
	c->in_streams = true;
	w->stats.streams++;
}

/* The outcome of a call the client ended: a stream that delivered its answer and was then closed
 * by the client (what every SPIFFE library does once it has its SVID) is counted as the OK it
 * saw; a client that left before any answer cancelled. */
static int client_closed_outcome(const struct wcall *c)
{
	return c->sent ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

void wcall_finish(struct wcall *c, int status, const char *message)
{
	if (c->finished || c->closed)
		return;
	c->finished = true;
	/* A refused finish means the transport closed the call first. */
	count(c->w, c->method,
	      grpc_call_finish(c->call, status, message) == 0 ? status : client_closed_outcome(c));
}

/* ---- Envoy SDS: attested here, served by sds.c ---- */

static void sds_finish(void *ud, int status, const char *message)
{
	wcall_finish(ud, status, message);
}

static void handle_sds(struct wcall *c)
{
	struct sds_caller who = {.pid = c->conn->caller.pid, .uid = c->conn->caller.uid,
				 .selectors = c->sel->v, .n_selectors = c->sel->n,
				 .finish = sds_finish, .finish_ud = c};

	if (c->sel->n_match == 0) {
		wl_explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	c->sds = sds_open(c->w->sds, c->call, c->method == WL_METHOD_SDS_STREAM, &who, c->req);
	if (c->sds && c->early)
		sds_message(c->sds, c->early, c->early_len);
	free(c->early);
	c->early = NULL;
}

static void on_sds_message(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct wcall *c = grpc_call_data(call);

	if (!c || c->finished)
		return;
	if (c->sds) {
		sds_message(c->sds, msg, len);
		return;
	}
	/* Still attesting: state of the world, so only the latest request matters. */
	free(c->early);
	c->early = malloc(len ? len : 1);
	c->early_len = c->early ? len : 0;
	if (c->early)
		memcpy(c->early, msg, len);
}

/* ---- attestation ---- */

/* Threadpool: reads /proc through the pinned fd (and hashes the binary when configured), then
 * checks the process is still the one that connected. workload_request attests inline instead
 * when that cannot block. */
static void attest_work(uv_work_t *req)
{
	struct attest_job *j = req->data;
	struct workload_api *w = j->c->w;

	j->rc = attest_caller(w->attestors, w->n_attestors, &j->c->conn->caller, true, &j->got,
			      j->err, sizeof(j->err));
}

static void attest_done(uv_work_t *req, int status)
{
	struct attest_job *j = req->data;
	struct wcall *c = j->c;
	struct workload_api *w = c->w;

	w->pending_async--;
	double secs = (double)(now_mono_us() - j->started_us) / 1e6;
	for (size_t i = 0; i < WL_ATTEST_BUCKETS; i++)
		if (secs <= workload_attest_buckets[i])
			w->stats.attest_hist[i]++;
	w->stats.attest_sum += secs;
	w->stats.attest_count++;
	if (w->stopping || c->closed || c->finished)
		goto out;
	if (status != 0 || j->rc != 0) {
		log_event(LOG_LEVEL_WARN,
			  LOG_FIELDS(LOG_STR("method", workload_method_name(c->method)),
				     LOG_INT("pid", c->conn->caller.pid),
				     LOG_INT("uid", c->conn->caller.uid)),
			  "workload: %s from pid %d uid %u refused: %s",
			  workload_method_name(c->method), (int)c->conn->caller.pid,
			  (unsigned)c->conn->caller.uid, status ? uv_strerror(status) : j->err);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED,
			     status ? "attestation cancelled" : j->err);
		goto out;
	}
	c->sel = selset_intern(w, &j->got);
	if (!c->sel || selset_match(w, c->sel) < 0) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	switch (c->method) {
	case WL_METHOD_FETCH_X509_SVID:
	case WL_METHOD_FETCH_X509_BUNDLES:
	case WL_METHOD_FETCH_JWT_BUNDLES:
		wl_stream_update(c);
		if (!c->finished && !c->closed)
			stream_link(c);
		break;
	case WL_METHOD_FETCH_JWT_SVID:
		wl_jwt_svid_fetch(c);
		break;
	case WL_METHOD_VALIDATE_JWT_SVID:
		wl_jwt_svid_validate(c);
		break;
	case WL_METHOD_SDS_STREAM:
	case WL_METHOD_SDS_FETCH:
		handle_sds(c);
		break;
	default:
		wcall_finish(c, GRPC_STATUS_UNIMPLEMENTED, NULL);
		break;
	}
	/* Streams only need their selector set from here on. */
	if (c->method != WL_METHOD_FETCH_JWT_SVID && c->req) {
		protobuf_c_message_free_unpacked(c->req, NULL);
		c->req = NULL;
	}
out:
	selector_list_free(&j->got);
	if (j != w->inline_job)
		free(j);
	wcall_unref(c);
	wl_maybe_free(w);
}

/* ---- gRPC callbacks ---- */

/* Every request handler starts here, so a request is also what keeps its connection active. */
static struct workload_api *api_of(struct grpc_call *call)
{
	struct grpc_conn *conn = grpc_call_conn(call);
	struct workload_api *w;
	struct wconn *wc;

	if (!conn)
		return NULL;
	w = grpc_server_ud(grpc_conn_server(conn));
	wc = grpc_conn_data(conn);
	if (wc)
		wc->active_ms = uv_now(w->loop);
	return w;
}

static const ProtobufCMessageDescriptor *const request_desc[WL_METHOD_COUNT] = {
	[WL_METHOD_FETCH_X509_SVID] = &x509_svidrequest__descriptor,
	[WL_METHOD_FETCH_X509_BUNDLES] = &x509_bundles_request__descriptor,
	[WL_METHOD_FETCH_JWT_SVID] = &jwtsvidrequest__descriptor,
	[WL_METHOD_FETCH_JWT_BUNDLES] = &jwtbundles_request__descriptor,
	[WL_METHOD_VALIDATE_JWT_SVID] = &validate_jwtsvidrequest__descriptor,
	[WL_METHOD_SDS_STREAM] = &envoy__service__discovery__v3__discovery_request__descriptor,
	[WL_METHOD_SDS_FETCH] = &envoy__service__discovery__v3__discovery_request__descriptor,
};

/* Checks that need no attestation; returns a status and message, OK to go on. */
static int precheck(struct workload_api *w, enum workload_method m, const ProtobufCMessage *req,
		    const char **msg)
{
	if (m == WL_METHOD_FETCH_JWT_SVID) {
		const JWTSVIDRequest *r = (const JWTSVIDRequest *)req;

		if (r->n_audience == 0) {
			*msg = "audience must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
		for (size_t i = 0; i < r->n_audience; i++) {
			if (!r->audience[i][0]) {
				*msg = "audience must not be empty";
				return GRPC_STATUS_INVALID_ARGUMENT;
			}
		}
		if (r->spiffe_id[0] && spiffeid_validate_leaf(r->spiffe_id, NULL, 0) < 0) {
			*msg = "spiffe_id is not a valid SPIFFE ID";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
	} else if (m == WL_METHOD_VALIDATE_JWT_SVID) {
		const ValidateJWTSVIDRequest *r = (const ValidateJWTSVIDRequest *)req;

		if (!r->audience[0]) {
			*msg = "audience must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
		if (!r->svid[0]) {
			*msg = "svid must be specified";
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
	}
	if (!snap_ready(w->snap)) {
		*msg = "the agent is not ready: no entries synced and no bundle yet";
		return GRPC_STATUS_UNAVAILABLE;
	}
	return GRPC_STATUS_OK;
}

static void workload_request(struct grpc_call *call, enum workload_method m, const uint8_t *msg,
			     size_t len)
{
	struct workload_api *w = api_of(call);
	struct attest_job *j;
	struct wconn *wc;
	struct wcall *c;
	ProtobufCMessage *req;
	const char *hdr = grpc_call_header(call, SECURITY_HEADER), *why = NULL;
	int status, r;

	if (!w)
		return;
	if (w->stopping) {
		finish_now(w, call, m, GRPC_STATUS_UNAVAILABLE, "the agent is shutting down");
		return;
	}
	/* Envoy sends no security header: SPIRE requires it on the Workload API only. */
	if (m != WL_METHOD_SDS_STREAM && m != WL_METHOD_SDS_FETCH && (!hdr || strcmp(hdr, "true") != 0)) {
		finish_now(w, call, m, GRPC_STATUS_INVALID_ARGUMENT,
			   "security header missing from request");
		return;
	}
	req = protobuf_c_message_unpack(request_desc[m], NULL, len, msg);
	if (!req) {
		finish_now(w, call, m, GRPC_STATUS_INVALID_ARGUMENT, "malformed request message");
		return;
	}
	status = precheck(w, m, req, &why);
	if (status != GRPC_STATUS_OK) {
		protobuf_c_message_free_unpacked(req, NULL);
		finish_now(w, call, m, status, why);
		return;
	}
	wc = grpc_conn_data(grpc_call_conn(call));
	c = calloc(1, sizeof(*c));
	if (w->attest_inline) {
		/* Attestation finishes before this function returns: one job serves them all. */
		j = w->inline_job;
		memset(j, 0, sizeof(*j));
	} else {
		j = calloc(1, sizeof(*j));
	}
	if (!c || !j || !wc) {
		protobuf_c_message_free_unpacked(req, NULL);
		free(c);
		if (j != w->inline_job)
			free(j);
		finish_now(w, call, m, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->w = w;
	c->call = call;
	grpc_call_ref(call);
	c->conn = wc;
	wc->refs++;
	c->method = m;
	c->req = req;
	c->refs = 2; /* the open call, and the attestation below */
	j->c = c;
	j->work.data = j;
	grpc_call_set_data(call, c);
	w->pending_async++;
	j->started_us = now_mono_us();
	if (w->attest_inline) {
		/* Reading a few /proc files costs less than two trips through the threadpool
		 * (locks, wakeups, an eventfd write): attest right here, unless that needs a user
		 * or group name not cached yet (the name service may be slow). */
		j->rc = attest_caller(w->attestors, w->n_attestors, &wc->caller, false, &j->got,
				      j->err, sizeof(j->err));
		if (j->rc != ATTEST_WOULD_BLOCK) {
			attest_done(&j->work, 0);
			return;
		}
		selector_list_free(&j->got);
		j = calloc(1, sizeof(*j));
		if (!j) {
			w->pending_async--;
			wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			wcall_unref(c);
			return;
		}
		j->c = c;
		j->work.data = j;
		j->started_us = w->inline_job->started_us;
	}
	r = uv_queue_work(w->loop, &j->work, attest_work, attest_done);
	if (r < 0) {
		w->pending_async--;
		free(j);
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "cannot schedule attestation");
		wcall_unref(c);
	}
}

static void on_fetch_x509_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_X509_SVID, msg, len);
}

static void on_fetch_x509_bundles(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_X509_BUNDLES, msg, len);
}

static void on_fetch_jwt_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_JWT_SVID, msg, len);
}

static void on_fetch_jwt_bundles(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_FETCH_JWT_BUNDLES, msg, len);
}

static void on_validate_jwt_svid(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_VALIDATE_JWT_SVID, msg, len);
}

static void on_stream_secrets(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_SDS_STREAM, msg, len);
}

static void on_fetch_secrets(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	workload_request(call, WL_METHOD_SDS_FETCH, msg, len);
}

static void on_health_check(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct workload_api *w = api_of(call);
	Grpc__Health__V1__HealthCheckRequest *req;
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	if (!w)
		return;
	req = grpc__health__v1__health_check_request__unpack(NULL, len, msg);
	if (!req) {
		finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_INVALID_ARGUMENT,
			   "malformed request message");
		return;
	}
	if (req->service[0] && strcmp(req->service, "SpiffeWorkloadAPI") != 0) {
		finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_NOT_FOUND, "unknown service");
	} else {
		resp.status = !w->stopping && snap_ready(w->snap)
				      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
				      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
		if (grpc_call_send_pb(call, &resp.base) == 0)
			finish_now(w, call, WL_METHOD_HEALTH_CHECK, GRPC_STATUS_OK, NULL);
	}
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
}

static const struct grpc_method methods[] = {
	{.path = "/SpiffeWorkloadAPI/FetchX509SVID", .server_streaming = true,
	 .on_request = on_fetch_x509_svid},
	{.path = "/SpiffeWorkloadAPI/FetchX509Bundles", .server_streaming = true,
	 .on_request = on_fetch_x509_bundles},
	{.path = "/SpiffeWorkloadAPI/FetchJWTSVID", .on_request = on_fetch_jwt_svid},
	{.path = "/SpiffeWorkloadAPI/FetchJWTBundles", .server_streaming = true,
	 .on_request = on_fetch_jwt_bundles},
	{.path = "/SpiffeWorkloadAPI/ValidateJWTSVID", .on_request = on_validate_jwt_svid},
	{.path = "/grpc.health.v1.Health/Check", .on_request = on_health_check},
	/* DeltaSecrets is not listed: the server answers it UNIMPLEMENTED. */
	{.path = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
	 .server_streaming = true, .client_streaming = true, .on_request = on_stream_secrets,
	 .on_message = on_sds_message},
	{.path = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
	 .on_request = on_fetch_secrets},
};

static void on_call_closed(struct grpc_call *call)
{
	struct wcall *c = grpc_call_data(call);

	if (!c)
		return;
	grpc_call_set_data(call, NULL);
	c->closed = true;
	sds_closed(c->sds);
	c->sds = NULL;
	if (!c->finished) {
		/* The client went away (cancel, deadline, disconnect). */
		c->finished = true;
		count(c->w, c->method, client_closed_outcome(c));
	}
	stream_unlink(c);
	wcall_unref(c);
}

/* ---- snapshots ---- */

static void take_snapshot(struct workload_api *w)
{
	struct snapshot *s = svid_cache_acquire(w->cache);

	if (w->snap && s->generation == w->snap->generation && s == w->snap) {
		snapshot_release(s);
		return;
	}
	snapshot_release(w->snap);
	w->snap = s;
	w->epoch++;
	digest_of(s->bundle ? s->bundle : (const uint8_t *)"", s->bundle_len, w->x509_bundle_digest);
	digest_of(s->jwt_bundle, strlen(s->jwt_bundle), w->jwt_bundle_digest);
}

static void on_cache_update(void *ud)
{
	struct workload_api *w = ud;
	uint64_t epoch = w->epoch;

	if (w->stopping)
		return;
	take_snapshot(w);
	if (epoch == w->epoch)
		return;
	for (struct wcall *c = w->streams; c; c = c->next)
		wl_stream_update(c);
}

/* ---- the socket ---- */

/* A socket in a directory others cannot traverse is reachable by its owner only: workloads of
 * other uids would get "permission denied" from connect() and never reach attestation. */
static void warn_unreachable(const char *path)
{
	char *dir = xstrdup(path), *slash;
	struct stat st;

	while ((slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
			log_warnx("workload: %s is not accessible to other users (mode %04o): only "
				 "uid %u and root can reach the Workload API socket",
				 dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
			break;
		}
	}
	free(dir);
}

/* Any local process may connect: attestation, not file modes, is the access control, as the
 * Workload Endpoint standard requires. */
static const struct unix_socket_opts sock_opts = {
	.who = "agent",
	.log_prefix = "workload",
	.dir_mode = 0755,
	.mode = 0777,
	.backlog = 512,
	.nonblock = true,
};

/* ---- start and stop ---- */

static void opts_free(struct workload_api_opts *o)
{
	free((char *)o->socket_path);
	free((char *)o->trust_domain);
	free((char *)o->proc_root);
}

static void api_free(struct workload_api *w)
{
	for (size_t i = 0; i < SELSET_BUCKETS; i++) {
		/* Every set belongs to a call, and every call is gone by now. */
		while (w->sets[i]) {
			struct selset *s = w->sets[i];

			s->refs = 1;
			selset_unref(w, s);
		}
	}
	sds_free(w->sds);
	jwks_free(w->jwks);
	jwt_cache_free(w->jwt_cache);
	snapshot_release(w->snap);
	for (size_t i = 0; i < w->n_attestors; i++)
		attestor_free(w->attestors[i]);
	free(w->attestors);
	free(w->inline_job);
	free(w->counts);
	opts_free(&w->opts);
	free(w);
}

void wl_maybe_free(struct workload_api *w)
{
	if (w->stopping && w->server_done && w->pending_async == 0)
		api_free(w);
}

static void on_server_done(void *arg)
{
	struct workload_api *w = arg;

	w->server = NULL;
	w->server_done = true;
	wl_maybe_free(w);
}

int workload_api_start_opts(uv_loop_t *loop, const struct workload_api_opts *o,
			    struct svid_cache *cache, struct node_client *nc,
			    struct workload_api **out, char *err, size_t errlen)
{
	struct attestor_unix_opts ao = {.path_selectors = o->unix_path_selectors,
					.sha256_max_size = o->sha256_max_size};
	struct grpc_server_config gc = {
		.methods = methods,
		.n_methods = ARRAY_LEN(methods),
		.on_connect = wl_on_connect,
		.on_disconnect = wl_on_disconnect,
		.on_call_closed = on_call_closed,
		.max_message_size = MAX_REQUEST_SIZE,
		.max_streams_per_conn = MAX_STREAMS_PER_CONN,
		.max_conns = MAX_CONNS,
	};
	struct workload_api *w;
	int fd;

	*out = NULL;
	if (!o->socket_path || !o->socket_path[0]) {
		for (size_t i = 0; i < o->n_attestors; i++)
			attestor_free(o->attestors[i]);
		snprintf(err, errlen, "no socket path");
		return -1;
	}
	w = xcalloc(1, sizeof(*w));
	w->loop = loop;
	w->cache = cache;
	w->nc = nc;
	w->opts = *o;
	w->opts.socket_path = xstrdup(o->socket_path);
	w->opts.trust_domain = xstrdup(o->trust_domain ? o->trust_domain : "");
	w->opts.proc_root = o->proc_root ? xstrdup(o->proc_root) : NULL;
	w->opts.attestors = NULL;
	w->opts.n_attestors = 0;
	w->opts.sds_names = (struct sds_names){
		.default_svid = o->sds_names.default_svid ? o->sds_names.default_svid : "default",
		.default_bundle = o->sds_names.default_bundle ? o->sds_names.default_bundle : "ROOTCA",
		.all_bundles = o->sds_names.all_bundles ? o->sds_names.all_bundles : "ALL"};
	w->attestors = xcalloc(o->n_attestors + 1, sizeof(*w->attestors));
	for (size_t i = 0; i < o->n_attestors; i++)
		w->attestors[1 + i] = o->attestors[i];
	w->n_attestors = o->n_attestors + 1;
	w->attestors[0] = attestor_unix_new(&ao);
	if (!w->attestors[0]) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	w->attest_inline = attestors_fast(w->attestors, w->n_attestors);
	if (w->attest_inline)
		w->inline_job = xcalloc(1, sizeof(*w->inline_job));
	take_snapshot(w);
	w->jwt_cache = jwt_cache_new();
	w->sds = sds_new(cache, w->opts.trust_domain, &w->opts.sds_names);
	if (!w->sds) {
		snprintf(err, errlen, "cannot start the SDS service");
		goto fail;
	}
	fd = unix_socket_listen(w->opts.socket_path, &sock_opts, &w->sock_st, err, errlen);
	if (fd < 0)
		goto fail;
	warn_unreachable(w->opts.socket_path);
	gc.ud = w;
	if (grpc_server_listen_fd(loop, fd, NULL, &gc, &w->server, err, errlen) < 0) {
		/* The server closed fd. */
		unlink(w->opts.socket_path);
		goto fail;
	}
	w->sub = svid_cache_subscribe(cache, on_cache_update, w);
	if (!w->sub) {
		snprintf(err, errlen, "cannot subscribe to the SVID cache");
		w->stopping = true;
		grpc_server_shutdown(w->server, 0, on_server_done, w);
		unlink(w->opts.socket_path);
		return -1;
	}
	if (w->opts.idle_timeout_ms) {
		uint64_t every = w->opts.idle_timeout_ms / 4;

		uv_timer_init(loop, &w->idle_timer);
		w->idle_timer.data = w;
		uv_timer_start(&w->idle_timer, wl_on_idle_sweep, every, every < IDLE_SWEEP_MIN_MS ?
			       IDLE_SWEEP_MIN_MS : every);
		w->idle_timer_on = true;
	}
	log_info("workload: Workload API listening on %s", w->opts.socket_path);
	*out = w;
	return 0;
fail:
	api_free(w);
	return -1;
}

int workload_api_start(uv_loop_t *loop, const struct agent_config *cfg, struct svid_cache *cache,
		       struct node_client *nc, struct workload_api **out, char *err, size_t errlen)
{
	struct workload_api_opts o = {
		.socket_path = cfg->socket_path,
		.trust_domain = cfg->trust_domain,
		.unix_path_selectors = cfg->unix_workload_path_selectors,
		.sha256_max_size = cfg->sha256_max_size,
		.max_conns_per_process = (unsigned)cfg->max_conns_per_process,
		.max_conns_per_uid = (unsigned)cfg->max_conns_per_uid,
		.idle_timeout_ms = (unsigned)(cfg->workload_idle_timeout * 1000),
		.sds_names = {cfg->sds_default_name, cfg->sds_default_bundle_name,
			      cfg->sds_default_all_bundles_name},
	};

	return workload_api_start_opts(loop, &o, cache, nc, out, err, errlen);
}

void workload_api_stop(struct workload_api *w)
{
	if (!w || w->stopping)
		return;
	w->stopping = true;
	svid_cache_unsubscribe(w->cache, w->sub);
	w->sub = NULL;
	if (w->idle_timer_on) {
		/* The timer's close callback is asynchronous work that w must outlive. */
		w->idle_timer_on = false;
		w->pending_async++;
		uv_close((uv_handle_t *)&w->idle_timer, wl_on_idle_timer_closed);
	}
	wl_refusals_flush(w, UINT64_MAX);
	for (struct wcall *c = w->streams; c; c = c->next)
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "the agent is shutting down");
	sds_stop(w->sds);
	/* Remove the socket only if it is still ours (another agent may have replaced it). */
	unix_socket_remove(w->opts.socket_path, &w->sock_st);
	grpc_server_shutdown(w->server, SHUTDOWN_GRACE_MS, on_server_done, w);
}

void workload_api_stats(struct workload_api *w, struct workload_api_stats *out)
{
	*out = w->stats;
	sds_stats(w->sds, &out->sds);
}

bool workload_api_ready(struct workload_api *w)
{
	return !w->stopping && snap_ready(w->snap);
}
