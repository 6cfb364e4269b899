/* workload_client.c: a blocking SPIFFE Workload API client on grpc_client. */
#include "workload_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "grpc.h"
#include "grpc_client.h"
#include "util.h"

#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#define DEFAULT_TIMEOUT_MS 30000
#define STRUCT_MAX_DEPTH 32

struct workload_client {
	struct grpc_client *grpc;
	int timeout_ms;
};

static const struct grpc_header security_header[] = {
	{.name = "workload.spiffe.io", .value = "true"},
};

int workload_resolve_socket(const char *addr, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *src = "--socket";
	const char *path;

	if (!addr || !addr[0]) {
		addr = getenv(WORKLOAD_ENDPOINT_ENV);
		src = WORKLOAD_ENDPOINT_ENV;
	}
	if (!addr || !addr[0]) {
		addr = WORKLOAD_DEFAULT_SOCKET;
		src = "default";
	}
	if (strncmp(addr, "tcp://", 6) == 0) {
		snprintf(err, errlen,
			 "%s: %s: TCP Workload API endpoints are not supported (use unix:///path)", src,
			 addr);
		return -1;
	}
	if (strncmp(addr, "unix://", 7) == 0) {
		path = addr + 7;
		/* unix:///abs/path: an empty authority, then an absolute path. */
		if (path[0] != '/') {
			snprintf(err, errlen,
				 "%s: %s: a unix URI must be unix:///absolute/path (no authority)", src,
				 addr);
			return -1;
		}
		if (strpbrk(path, "?#")) {
			snprintf(err, errlen, "%s: %s: query or fragment not allowed", src, addr);
			return -1;
		}
	} else if (strncmp(addr, "unix:/", 6) == 0) {
		/* unix:/abs/path, which go-spiffe accepts too. */
		path = addr + 5;
		if (strpbrk(path, "?#")) {
			snprintf(err, errlen, "%s: %s: query or fragment not allowed", src, addr);
			return -1;
		}
	} else if (strstr(addr, "://")) {
		snprintf(err, errlen, "%s: %s: unsupported scheme (use unix:///path)", src, addr);
		return -1;
	} else {
		path = addr;
	}
	if (!path[0] || strlen(path) >= outlen || strlen(path) >= 108) {
		snprintf(err, errlen, "%s: %s: socket path empty or too long", src, addr);
		return -1;
	}
	strcpy(out, path);
	return 0;
}

int workload_client_connect(const char *addr, int timeout_ms, struct workload_client **out,
			    char *err, size_t errlen)
{
	struct workload_client *c;
	char path[4096];
	char e[256];

	*out = NULL;
	if (workload_resolve_socket(addr, path, sizeof(path), err, errlen) < 0)
		return WORKLOAD_EIO;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return WORKLOAD_EIO;
	}
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (grpc_client_connect_unix(path, timeout_ms, &c->grpc, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "cannot connect to the Workload API at %s: %s", path, e);
		free(c);
		return WORKLOAD_EIO;
	}
	*out = c;
	return 0;
}

void workload_client_set_timeout(struct workload_client *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

void workload_client_close(struct workload_client *c)
{
	if (!c)
		return;
	grpc_client_close(c->grpc);
	free(c);
}

/* ---- freeing ---- */

static void bundle_list_free(struct workload_bundle *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].trust_domain_id);
		free(v[i].data);
	}
	free(v);
}

void workload_x509_context_free(struct workload_x509_context *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->n_svids; i++) {
		struct workload_x509_svid *s = &x->svids[i];

		free(s->spiffe_id);
		free(s->hint);
		free(s->chain);
		if (s->key)
			secure_zero(s->key, s->key_len);
		free(s->key);
		free(s->bundle);
	}
	free(x->svids);
	bundle_list_free(x->federated, x->n_federated);
	memset(x, 0, sizeof(*x));
}

void workload_bundles_free(struct workload_bundles *b)
{
	if (!b)
		return;
	bundle_list_free(b->v, b->n);
	memset(b, 0, sizeof(*b));
}

void workload_jwt_svids_free(struct workload_jwt_svids *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++) {
		free(j->v[i].spiffe_id);
		free(j->v[i].token);
		free(j->v[i].hint);
	}
	free(j->v);
	memset(j, 0, sizeof(*j));
}

/* ---- conversions ---- */

/* A copy with one extra NUL byte, so JSON bundles can be used as strings. */
static uint8_t *dup_bytes(const ProtobufCBinaryData *b)
{
	uint8_t *p = malloc(b->len + 1);

	if (!p)
		return NULL;
	if (b->len)
		memcpy(p, b->data, b->len);
	p[b->len] = '\0';
	return p;
}

static int bundle_copy(struct workload_bundle *dst, const char *key, const ProtobufCBinaryData *v)
{
	dst->trust_domain_id = strdup(key);
	dst->data = dup_bytes(v);
	dst->len = v->len;
	return dst->trust_domain_id && dst->data ? 0 : -1;
}

static int x509_from_pb(const X509SVIDResponse *r, struct workload_x509_context *out, char *err,
			size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->svids = calloc(r->n_svids + 1, sizeof(*out->svids));
	out->federated = calloc(r->n_federated_bundles + 1, sizeof(*out->federated));
	if (!out->svids || !out->federated)
		goto nomem;
	for (size_t i = 0; i < r->n_svids; i++) {
		const X509SVID *p = r->svids[i];
		struct workload_x509_svid *s = &out->svids[i];

		out->n_svids++;
		s->spiffe_id = strdup(p->spiffe_id);
		s->hint = strdup(p->hint);
		s->chain = dup_bytes(&p->x509_svid);
		s->chain_len = p->x509_svid.len;
		s->key = dup_bytes(&p->x509_svid_key);
		s->key_len = p->x509_svid_key.len;
		s->bundle = dup_bytes(&p->bundle);
		s->bundle_len = p->bundle.len;
		if (!s->spiffe_id || !s->hint || !s->chain || !s->key || !s->bundle)
			goto nomem;
		if (!s->chain_len || !s->key_len) {
			snprintf(err, errlen, "malformed response: SVID %s without certificate or key",
				 s->spiffe_id);
			workload_x509_context_free(out);
			return WORKLOAD_EIO;
		}
	}
	for (size_t i = 0; i < r->n_federated_bundles; i++) {
		out->n_federated++;
		if (bundle_copy(&out->federated[i], r->federated_bundles[i]->key,
				&r->federated_bundles[i]->value) < 0)
			goto nomem;
	}
	return 0;
nomem:
	workload_x509_context_free(out);
	snprintf(err, errlen, "out of memory");
	return WORKLOAD_EIO;
}

/* Both bundle responses have map<string, bytes> bundles; entries share the layout of
 * JWTBundlesResponse__BundlesEntry. */
static int bundles_from_entries(size_t n, JWTBundlesResponse__BundlesEntry **e,
				struct workload_bundles *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->v = calloc(n + 1, sizeof(*out->v));
	if (!out->v)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		out->n++;
		if (bundle_copy(&out->v[i], e[i]->key, &e[i]->value) < 0)
			goto nomem;
	}
	return 0;
nomem:
	workload_bundles_free(out);
	snprintf(err, errlen, "out of memory");
	return WORKLOAD_EIO;
}

/* ---- calls ---- */

static int set_status_err(int grpc_status, int *status, const char *msg, char *err, size_t errlen)
{
	if (status)
		*status = grpc_status;
	if (err != msg)
		snprintf(err, errlen, "%s", msg);
	return WORKLOAD_ESTATUS;
}

/* Opens a stream and waits for its first message. */
static int stream_first(struct workload_client *c, const char *path, struct grpc_stream **out,
			uint8_t **msg, size_t *len, int *status, char *err, size_t errlen)
{
	/* The request messages of the streaming methods are all empty. */
	static const uint8_t empty[1];
	struct grpc_stream *s;
	int st = 0, r;

	*out = NULL;
	if (status)
		*status = -1;
	if (grpc_client_stream_open(c->grpc, path, security_header, ARRAY_LEN(security_header),
				    empty, 0, &s, err, errlen) < 0)
		return WORKLOAD_EIO;
	r = grpc_stream_next(s, c->timeout_ms, msg, len, &st, err, errlen);
	if (r == 1) {
		*out = s;
		return 0;
	}
	grpc_stream_cancel(s);
	if (r == 2) {
		if (st == GRPC_STATUS_OK)
			snprintf(err, errlen, "the stream ended without a message");
		return set_status_err(st == GRPC_STATUS_OK ? GRPC_STATUS_UNKNOWN : st, status, err,
				      err, errlen);
	}
	if (r == 0)
		snprintf(err, errlen, "timeout waiting for the agent");
	return WORKLOAD_EIO;
}

int workload_fetch_x509(struct workload_client *c, struct workload_x509_context *out, int *status,
			char *err, size_t errlen)
{
	struct grpc_stream *s;
	X509SVIDResponse *r;
	uint8_t *msg = NULL;
	size_t len = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = stream_first(c, "/SpiffeWorkloadAPI/FetchX509SVID", &s, &msg, &len, status, err,
			   errlen);
	if (ret < 0)
		return ret;
	grpc_stream_cancel(s);
	r = x509_svidresponse__unpack(NULL, len, msg);
	secure_zero(msg, len);
	free(msg);
	if (!r) {
		snprintf(err, errlen, "malformed X509SVIDResponse");
		return WORKLOAD_EIO;
	}
	ret = x509_from_pb(r, out, err, errlen);
	x509_svidresponse__free_unpacked(r, NULL);
	if (ret == 0 && status)
		*status = GRPC_STATUS_OK;
	return ret;
}

int workload_watch_x509(struct workload_client *c, workload_x509_cb cb, void *ud,
			int idle_timeout_ms, int *status, char *err, size_t errlen)
{
	static const uint8_t empty[1];
	struct grpc_stream *s;
	int ret = WORKLOAD_EIO;

	if (status)
		*status = -1;
	if (grpc_client_stream_open(c->grpc, "/SpiffeWorkloadAPI/FetchX509SVID", security_header,
				    ARRAY_LEN(security_header), empty, 0, &s, err, errlen) < 0)
		return WORKLOAD_EIO;
	for (;;) {
		struct workload_x509_context x;
		X509SVIDResponse *r;
		uint8_t *msg = NULL;
		size_t len = 0;
		int st = 0, n, stop;

		n = grpc_stream_next(s, idle_timeout_ms, &msg, &len, &st, err, errlen);
		if (n == 0) {
			snprintf(err, errlen, "timeout");
			break;
		}
		if (n == 2) {
			ret = set_status_err(st, status, err, err, errlen);
			break;
		}
		if (n != 1)
			break;
		r = x509_svidresponse__unpack(NULL, len, msg);
		secure_zero(msg, len);
		free(msg);
		if (!r) {
			snprintf(err, errlen, "malformed X509SVIDResponse");
			break;
		}
		n = x509_from_pb(r, &x, err, errlen);
		x509_svidresponse__free_unpacked(r, NULL);
		if (n < 0)
			break;
		stop = cb(ud, &x);
		workload_x509_context_free(&x);
		if (stop) {
			ret = stop;
			break;
		}
	}
	grpc_stream_cancel(s);
	return ret;
}

static int fetch_bundles(struct workload_client *c, const char *path, bool x509,
			 struct workload_bundles *out, int *status, char *err, size_t errlen)
{
	struct grpc_stream *s;
	uint8_t *msg = NULL;
	size_t len = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = stream_first(c, path, &s, &msg, &len, status, err, errlen);
	if (ret < 0)
		return ret;
	grpc_stream_cancel(s);
	if (x509) {
		X509BundlesResponse *r = x509_bundles_response__unpack(NULL, len, msg);

		ret = r ? bundles_from_entries(r->n_bundles,
					       (JWTBundlesResponse__BundlesEntry **)r->bundles, out,
					       err, errlen)
			: WORKLOAD_EIO;
		if (r)
			x509_bundles_response__free_unpacked(r, NULL);
	} else {
		JWTBundlesResponse *r = jwtbundles_response__unpack(NULL, len, msg);

		ret = r ? bundles_from_entries(r->n_bundles, r->bundles, out, err, errlen)
			: WORKLOAD_EIO;
		if (r)
			jwtbundles_response__free_unpacked(r, NULL);
	}
	free(msg);
	if (ret == WORKLOAD_EIO && !out->v)
		snprintf(err, errlen, "malformed bundles response");
	if (ret == 0 && status)
		*status = GRPC_STATUS_OK;
	return ret;
}

int workload_fetch_x509_bundles(struct workload_client *c, struct workload_bundles *out,
				int *status, char *err, size_t errlen)
{
	return fetch_bundles(c, "/SpiffeWorkloadAPI/FetchX509Bundles", true, out, status, err,
			     errlen);
}

int workload_fetch_jwt_bundles(struct workload_client *c, struct workload_bundles *out,
			       int *status, char *err, size_t errlen)
{
	return fetch_bundles(c, "/SpiffeWorkloadAPI/FetchJWTBundles", false, out, status, err,
			     errlen);
}

/* Packs m, makes the unary call; on OK *resp holds the answer. */
static int unary(struct workload_client *c, const char *path, const ProtobufCMessage *m,
		 uint8_t **resp, size_t *resp_len, int *status, char *err, size_t errlen)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *req = malloc(len ? len : 1);
	int st = 0, r;

	if (status)
		*status = -1;
	if (!req) {
		snprintf(err, errlen, "out of memory");
		return WORKLOAD_EIO;
	}
	protobuf_c_message_pack(m, req);
	r = grpc_client_unary(c->grpc, path, security_header, ARRAY_LEN(security_header), req, len,
			      c->timeout_ms, resp, resp_len, &st, err, errlen);
	free(req);
	if (r < 0)
		return WORKLOAD_EIO;
	if (st != GRPC_STATUS_OK)
		return set_status_err(st, status, err, err, errlen);
	if (status)
		*status = GRPC_STATUS_OK;
	return 0;
}

int workload_fetch_jwt(struct workload_client *c, const char *const *audiences, size_t n_audiences,
		       const char *spiffe_id, struct workload_jwt_svids *out, int *status, char *err,
		       size_t errlen)
{
	JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
	JWTSVIDResponse *r;
	uint8_t *resp = NULL;
	size_t len = 0;
	int ret;

	memset(out, 0, sizeof(*out));
	req.n_audience = n_audiences;
	req.audience = (char **)audiences;
	if (spiffe_id)
		req.spiffe_id = (char *)spiffe_id;
	ret = unary(c, "/SpiffeWorkloadAPI/FetchJWTSVID", &req.base, &resp, &len, status, err,
		    errlen);
	if (ret < 0)
		return ret;
	r = jwtsvidresponse__unpack(NULL, len, resp);
	free(resp);
	if (!r) {
		snprintf(err, errlen, "malformed JWTSVIDResponse");
		return WORKLOAD_EIO;
	}
	out->v = calloc(r->n_svids + 1, sizeof(*out->v));
	if (!out->v)
		goto nomem;
	for (size_t i = 0; i < r->n_svids; i++) {
		struct workload_jwt_svid *j = &out->v[i];

		out->n++;
		j->spiffe_id = strdup(r->svids[i]->spiffe_id);
		j->token = strdup(r->svids[i]->svid);
		j->hint = strdup(r->svids[i]->hint);
		if (!j->spiffe_id || !j->token || !j->hint)
			goto nomem;
	}
	jwtsvidresponse__free_unpacked(r, NULL);
	return 0;
nomem:
	jwtsvidresponse__free_unpacked(r, NULL);
	workload_jwt_svids_free(out);
	snprintf(err, errlen, "out of memory");
	return WORKLOAD_EIO;
}

/* ---- google.protobuf.Struct to JSON ---- */

static json_t *struct_to_json(const Google__Protobuf__Struct *s, int depth);

static json_t *value_to_json(const Google__Protobuf__Value *v, int depth)
{
	if (!v || depth > STRUCT_MAX_DEPTH)
		return NULL;
	switch (v->kind_case) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE:
		return json_null();
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: {
		double d = v->number_value;

		/* Integral claims (exp, iat) read better as integers. */
		if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(json_int_t)d)
			return json_integer((json_int_t)d);
		return json_real(d);
	}
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		return json_string(v->string_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		return json_boolean(v->bool_value);
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		return struct_to_json(v->struct_value, depth + 1);
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
		json_t *a = json_array();

		if (!a || !v->list_value)
			return a;
		for (size_t i = 0; i < v->list_value->n_values; i++) {
			json_t *e = value_to_json(v->list_value->values[i], depth + 1);

			if (!e || json_array_append_new(a, e) < 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	default:
		return json_null();
	}
}

static json_t *struct_to_json(const Google__Protobuf__Struct *s, int depth)
{
	json_t *o = json_object();

	if (!o || !s)
		return o;
	for (size_t i = 0; i < s->n_fields; i++) {
		json_t *v = value_to_json(s->fields[i]->value, depth + 1);

		if (!v || json_object_set_new(o, s->fields[i]->key, v) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

int workload_validate_jwt(struct workload_client *c, const char *audience, const char *token,
			  char **spiffe_id, char **claims_json, int *status, char *err,
			  size_t errlen)
{
	ValidateJWTSVIDRequest req = VALIDATE_JWTSVIDREQUEST__INIT;
	ValidateJWTSVIDResponse *r;
	uint8_t *resp = NULL;
	size_t len = 0;
	json_t *claims;
	int ret;

	*spiffe_id = NULL;
	*claims_json = NULL;
	req.audience = (char *)audience;
	req.svid = (char *)token;
	ret = unary(c, "/SpiffeWorkloadAPI/ValidateJWTSVID", &req.base, &resp, &len, status, err,
		    errlen);
	if (ret < 0)
		return ret;
	r = validate_jwtsvidresponse__unpack(NULL, len, resp);
	free(resp);
	if (!r) {
		snprintf(err, errlen, "malformed ValidateJWTSVIDResponse");
		return WORKLOAD_EIO;
	}
	claims = struct_to_json(r->claims, 0);
	*spiffe_id = strdup(r->spiffe_id);
	*claims_json = claims ? json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(claims);
	validate_jwtsvidresponse__free_unpacked(r, NULL);
	if (!*spiffe_id || !*claims_json) {
		free(*spiffe_id);
		free(*claims_json);
		*spiffe_id = *claims_json = NULL;
		snprintf(err, errlen, "cannot read the claims");
		return WORKLOAD_EIO;
	}
	return 0;
}
