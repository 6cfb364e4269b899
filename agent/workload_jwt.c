/* workload_jwt.c: FetchJWTSVID and ValidateJWTSVID.
 *
 * A fetch asks for one token per SPIFFE ID the caller is entitled to; the call holds the
 * snapshot its slots point into until every answer came back. Tokens are served from the JWT
 * cache (jwt_cache.h) the workload_api owns, on this thread: a hit crosses no lock and no async
 * handle and is answered before fetch_jwt returns. A miss goes to the node client's sync thread
 * (or the fetch_jwt hook of the options), whose answer is cached on its way back. The cache is
 * dropped when node_client_jwt_generation moves (a tainted authority). Loop thread only. */
#include "workload_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "jwt_cache.h"
#include "log.h"
#include "node_client.h"
#include "pbstruct.h"
#include "spiffeid.h"
#include "util.h"

#include "workload.pb-c.h"

/* ---- FetchJWTSVID ---- */

static void jwt_complete(struct wcall *c)
{
	JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
	JWTSVID *items = NULL, **ptrs = NULL;

	if (c->closed || c->finished)
		return;
	for (size_t i = 0; i < c->n_slots; i++) {
		if (c->slots[i].status != GRPC_STATUS_OK) {
			log_warnx("workload: JWT-SVID for entry %s: %s: %s", c->slots[i].entry_id,
				 grpc_status_name(c->slots[i].status),
				 c->slots[i].message ? c->slots[i].message : "");
			wcall_finish(c, c->slots[i].status,
				     c->slots[i].message ? c->slots[i].message : "JWT-SVID fetch failed");
			return;
		}
	}
	items = calloc(c->n_slots, sizeof(*items));
	ptrs = calloc(c->n_slots, sizeof(*ptrs));
	if (!items || !ptrs) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c->n_slots; i++) {
		const struct entry *e = snapshot_entry(c->jwt_snap, c->slots[i].entry_id);
		JWTSVID init = JWTSVID__INIT;

		items[i] = init;
		items[i].spiffe_id = e->spiffe_id;
		items[i].svid = c->slots[i].token;
		items[i].hint = e->hint ? e->hint : "";
		ptrs[i] = &items[i];
	}
	resp.n_svids = c->n_slots;
	resp.svids = ptrs;
	if (grpc_call_send_pb(c->call, &resp.base) == 0)
		wcall_finish(c, GRPC_STATUS_OK, NULL);
out:
	free(items);
	free(ptrs);
}

static void jwt_done(struct wcall *c)
{
	struct workload_api *w = c->w;

	if (--c->pending == 0)
		jwt_complete(c);
	wcall_unref(c);
	w->pending_async--;
	wl_maybe_free(w);
}

static void on_jwt(void *ud, int status, const char *token, int64_t expires_at,
		   const char *message)
{
	struct jwt_slot *s = ud;

	(void)expires_at;
	s->status = status;
	if (status == GRPC_STATUS_OK && !token) {
		s->status = GRPC_STATUS_INTERNAL;
		message = "no token";
	}
	s->token = token && s->status == GRPC_STATUS_OK ? strdup(token) : NULL;
	s->message = message ? strdup(message) : NULL;
	if (s->status == GRPC_STATUS_OK && !s->token)
		s->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
	jwt_done(s->c);
}

/* Drops every cached token once the node client says tokens signed before must go. */
static void cache_check_generation(struct workload_api *w)
{
	uint64_t g = w->nc ? node_client_jwt_generation(w->nc) : 0;

	if (g == w->jwt_generation)
		return;
	jwt_cache_free(w->jwt_cache);
	w->jwt_cache = jwt_cache_new();
	w->jwt_generation = g;
}

/* A cache miss came back: cache the token (unless the generation moved while it was signed) and
 * answer the slot. r->ud is the slot; r->epoch the generation it was asked in. */
static void on_fetched(void *ud, int status, const char *token, int64_t expires_at,
		       const char *message)
{
	struct jwt_req *r = ud;
	struct jwt_slot *s = r->ud;
	struct workload_api *w = s->c->w;

	jwt_cache_req_answer(r, status, token, expires_at, message);
	cache_check_generation(w);
	if (status == GRPC_STATUS_OK && token && r->epoch == w->jwt_generation)
		jwt_cache_put(w->jwt_cache, r, now_unix());
	on_jwt(s, status, token, expires_at, message);
	jwt_cache_req_free(r);
}

/* Answers the slot from the cache on this thread, or asks for a token (on_fetched). */
static int fetch_jwt(struct workload_api *w, struct jwt_slot *s, char *const *audience,
		     size_t n_audience)
{
	struct jwt_req *r;
	int rc;

	cache_check_generation(w);
	r = jwt_cache_req_new(s->entry_id, audience, n_audience, on_jwt, s, now_unix());
	r->epoch = w->jwt_generation;
	if (jwt_cache_answer(w->jwt_cache, r)) {
		on_jwt(s, r->status, r->token, r->expires_at, NULL);
		jwt_cache_req_free(r);
		return 0;
	}
	if (w->opts.fetch_jwt)
		rc = w->opts.fetch_jwt(w->opts.fetch_jwt_ud, s->entry_id, audience, n_audience,
				       on_fetched, r);
	else
		rc = node_client_fetch_jwt(w->nc, s->entry_id, audience, n_audience, on_fetched, r);
	if (rc < 0)
		jwt_cache_req_free(r);
	return rc;
}

void wl_jwt_svid_fetch(struct wcall *c)
{
	struct workload_api *w = c->w;
	const JWTSVIDRequest *req = (const JWTSVIDRequest *)c->req;
	const struct snapshot *snap = w->snap;
	size_t n = 0;

	if (c->sel->n_match == 0) {
		wl_explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	c->slots = calloc(c->sel->n_match, sizeof(*c->slots));
	if (!c->slots) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	/* One token per SPIFFE ID (several entries may give the same ID). */
	for (size_t i = 0; i < c->sel->n_match; i++) {
		const struct entry *e = snap->entries[c->sel->match[i]];
		bool dup = false;

		if (req->spiffe_id[0] && strcmp(req->spiffe_id, e->spiffe_id) != 0)
			continue;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(snapshot_entry(snap, c->slots[j].entry_id)->spiffe_id,
				     e->spiffe_id) == 0;
		if (dup)
			continue;
		c->slots[n].c = c;
		c->slots[n].entry_id = e->id;
		n++;
	}
	if (n == 0) {
		log_event(LOG_LEVEL_WARN,
			  LOG_FIELDS(LOG_INT("pid", c->conn->caller.pid),
				     LOG_INT("uid", c->conn->caller.uid),
				     LOG_STR("spiffe_id", req->spiffe_id)),
			  "workload: pid %d asked for a JWT-SVID for %s, which it is not entitled to",
			  (int)c->conn->caller.pid, req->spiffe_id);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY " for the requested SPIFFE ID");
		return;
	}
	if (!w->opts.fetch_jwt && !w->nc) {
		wcall_finish(c, GRPC_STATUS_UNAVAILABLE, "JWT-SVID issuance is not available");
		return;
	}
	c->n_slots = n;
	/* The slots point into this snapshot: keep it for the duration of the fetches. */
	c->jwt_snap = snapshot_ref(w->snap);
	/* One extra pending count so a callback run synchronously cannot complete the call
	 * before every fetch was queued. */
	c->pending = n + 1;
	for (size_t i = 0; i < n; i++) {
		c->refs++;
		w->pending_async++;
		if (fetch_jwt(w, &c->slots[i], req->audience, req->n_audience) < 0) {
			c->slots[i].status = GRPC_STATUS_UNAVAILABLE;
			c->slots[i].message = strdup("the agent could not queue the JWT-SVID request");
			jwt_done(c);
		}
	}
	c->refs++;
	w->pending_async++;
	jwt_done(c);
}

/* ---- ValidateJWTSVID ---- */

static const struct jwks *current_jwks(struct workload_api *w, char *err, size_t errlen)
{
	if (w->jwks && w->jwks_epoch == w->epoch)
		return w->jwks;
	jwks_free(w->jwks);
	w->jwks = NULL;
	if (jwks_from_json(w->snap->jwt_bundle, strlen(w->snap->jwt_bundle), &w->jwks, err,
			   errlen) < 0)
		return NULL;
	w->jwks_epoch = w->epoch;
	return w->jwks;
}

/* Answers a validation: the claims, or InvalidArgument with err. */
static void validate_answer(struct wcall *c, const struct jwks *keys)
{
	const ValidateJWTSVIDRequest *req = (const ValidateJWTSVIDRequest *)c->req;
	ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
	struct jwt_claims claims = {0};
	char err[256];

	if (jwt_validate(req->svid, keys, req->audience, now_unix(), &claims, err, sizeof(err)) < 0) {
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	resp.spiffe_id = claims.sub;
	resp.claims = pbstruct_from_json(claims.all);
	if (!resp.claims)
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot convert the claims");
	else if (grpc_call_send_pb(c->call, &resp.base) == 0)
		wcall_finish(c, GRPC_STATUS_OK, NULL);
	pbstruct_free(resp.claims);
	jwt_claims_free(&claims);
}

/* A token of another trust domain: validated against that domain's bundle only when one of the
 * caller's entries federates with it; otherwise, as for an unknown domain, no keys. */
static void validate_foreign_jwt(struct wcall *c, const char *td)
{
	struct workload_api *w = c->w;
	const struct fed_snap *fb = NULL;
	struct jwks *keys = NULL;
	char err[256], msg[400];
	size_t n_fed = 0;
	const struct fed_snap **f = wl_caller_fed(w, c->sel, &n_fed);

	for (size_t i = 0; f && i < n_fed && !fb; i++)
		if (strcmp(f[i]->trust_domain, td) == 0)
			fb = f[i];
	free(f);
	if (!fb) {
		snprintf(msg, sizeof(msg), "no keys found for trust domain \"%s\"", td);
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT, msg);
		return;
	}
	if (jwks_from_json(fb->jwt_bundle, strlen(fb->jwt_bundle), &keys, err, sizeof(err)) < 0) {
		log_error("workload: the federated JWT bundle of %s does not parse: %s", td, err);
		wcall_finish(c, GRPC_STATUS_INTERNAL, "the federated JWT bundle is unusable");
		return;
	}
	validate_answer(c, keys);
	jwks_free(keys);
}

void wl_jwt_svid_validate(struct wcall *c)
{
	struct workload_api *w = c->w;
	const ValidateJWTSVIDRequest *req = (const ValidateJWTSVIDRequest *)c->req;
	const struct jwks *keys;
	char sub[SPIFFEID_MAX + 1], td[TRUST_DOMAIN_MAX + 1], err[256];

	if (c->sel->n_match == 0) {
		wl_explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	if (jwt_peek_sub(req->svid, sub, sizeof(sub)) < 0 ||
	    spiffeid_parse(sub, td, NULL, err, sizeof(err)) < 0) {
		wcall_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
			     "token is malformed or its subject is not a SPIFFE ID");
		return;
	}
	if (strcmp(td, wl_td_of(w)) != 0) {
		validate_foreign_jwt(c, td);
		return;
	}
	keys = current_jwks(w, err, sizeof(err));
	if (!keys) {
		log_error("workload: the agent's JWT bundle does not parse: %s", err);
		wcall_finish(c, GRPC_STATUS_INTERNAL, "the agent's JWT bundle is unusable");
		return;
	}
	validate_answer(c, keys);
}
