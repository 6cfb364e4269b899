/* workload_answers.c: what FetchX509SVID, FetchX509Bundles and FetchJWTBundles streams send, and
 * the explanation logged when a caller is entitled to nothing.
 *
 * A stream is sent a new message only when its answer changed: a 16-byte digest per stream
 * stands for the last message sent. Everything sent is borrowed from the current snapshot.
 * Loop thread only. */
#include "workload_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "log.h"
#include "spiffeid.h"
#include "util.h"

#include "workload.pb-c.h"

/* ---- why a caller got nothing ---- */

struct closest {
	size_t idx;
	size_t have;
};

static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*pos >= len)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + *pos, len - *pos, fmt, ap);
	va_end(ap);
	if (r > 0)
		*pos += (size_t)r;
}

/* Appends a selector with control characters shown as '?': a unix:path comes from the caller
 * and must not be able to forge log lines. */
static void append_sel(char *buf, size_t len, size_t *pos, const char *sep, const char *sel)
{
	append(buf, len, pos, "%s", sep);
	for (const char *p = sel; *p && *pos + 1 < len; p++)
		buf[(*pos)++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
	if (*pos < len)
		buf[*pos] = '\0';
}

/* Keeps the denial for the status page, newest first (loop thread, like the other stats). */
static void record_denial(struct workload_api_stats *st, int method, const struct caller *cl,
			  const char *sel, const char *why)
{
	size_t keep = st->n_denials < WL_DENIALS ? st->n_denials : WL_DENIALS - 1;
	memmove(&st->denials[1], &st->denials[0], keep * sizeof(st->denials[0]));
	struct wl_denial *d = &st->denials[0];
	d->at = now_unix();
	d->pid = (int)cl->pid;
	d->uid = (unsigned)cl->uid;
	d->gid = (unsigned)cl->gid;
	snprintf(d->method, sizeof(d->method), "%s", workload_method_name(method));
	snprintf(d->selectors, sizeof(d->selectors), "%s", sel);
	snprintf(d->why, sizeof(d->why), "%s", why);
	st->n_denials = keep + 1;
}

/* The most common support question about SPIFFE agents is "no identity issued" with no
 * explanation: log the caller's selectors and the entries closest to matching, with the
 * selectors the caller lacks. */
void wl_explain_denial(struct wcall *c)
{
	struct workload_api *w = c->w;
	const struct snapshot *snap = w->snap;
	const struct caller *cl = &c->conn->caller;
	struct closest best[CLOSEST_ENTRIES];
	size_t n_best = 0, pos = 0;
	char sel[1024], why[2048];

	sel[0] = why[0] = '\0';
	for (size_t i = 0; i < c->sel->n; i++)
		append_sel(sel, sizeof(sel), &pos, i ? " " : "", c->sel->v[i]);
	for (size_t i = 0; i < snap->n_entries; i++) {
		const struct entry *e = snap->entries[i];
		size_t have = 0, k;

		for (size_t j = 0; j < e->n_selectors; j++)
			if (selectors_subset(&e->selectors[j], 1, c->sel->v, c->sel->n))
				have++;
		if (n_best == CLOSEST_ENTRIES && best[CLOSEST_ENTRIES - 1].have >= have)
			continue;
		/* Insertion into the top list: most selectors in common first. */
		if (n_best < CLOSEST_ENTRIES)
			n_best++;
		for (k = n_best - 1; k > 0 && best[k - 1].have < have; k--)
			best[k] = best[k - 1];
		best[k] = (struct closest){.idx = i, .have = have};
	}
	pos = 0;
	for (size_t b = 0; b < n_best; b++) {
		const struct entry *e = snap->entries[best[b].idx];
		bool first = true;

		append(why, sizeof(why), &pos, "%sentry %s (%s) has %zu/%zu, lacks [", b ? "; " : "",
		       e->id, e->spiffe_id, best[b].have, e->n_selectors);
		for (size_t j = 0; j < e->n_selectors; j++) {
			if (selectors_subset(&e->selectors[j], 1, c->sel->v, c->sel->n))
				continue;
			append_sel(why, sizeof(why), &pos, first ? "" : " ", e->selectors[j]);
			first = false;
		}
		append(why, sizeof(why), &pos, "]");
	}
	log_event(LOG_LEVEL_WARN,
		  LOG_FIELDS(LOG_STR("method", workload_method_name(c->method)),
			     LOG_INT("pid", cl->pid), LOG_INT("uid", cl->uid), LOG_INT("gid", cl->gid),
			     LOG_STR("selectors", sel)),
		  "workload: %s denied: no entry matches pid %d uid %u gid %u; selectors: [%s]; "
		  "%zu entries; closest: %s",
		  workload_method_name(c->method), (int)cl->pid, (unsigned)cl->uid, (unsigned)cl->gid,
		  sel, snap->n_entries, n_best ? why : "none");
	record_denial(&w->stats, c->method, cl, sel, n_best ? why : "no entry at all");
}

/* ---- answers ---- */

static const char *svid_hint(const struct snapshot *snap, const struct svid *v)
{
	const struct entry *e;

	if (v->hint)
		return v->hint;
	e = snapshot_entry(snap, v->entry_id);
	return e && e->hint ? e->hint : "";
}

/* The SVIDs of the matched entries, in entry order; *n may be 0 (being minted). */
static struct svid **matched_svids(struct workload_api *w, const struct selset *s, size_t *n)
{
	struct svid **v = calloc(s->n_match ? s->n_match : 1, sizeof(*v));

	*n = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < s->n_match; i++) {
		struct svid *sv = snapshot_svid(w->snap, w->snap->entries[s->match[i]]->id);

		if (sv)
			v[(*n)++] = sv;
	}
	return v;
}

/* ---- federated bundles (SPIFFE Workload API 4.6: only those the caller's entries name) ---- */

static bool entry_federates_with(const struct entry *e, const char *td)
{
	for (size_t i = 0; i < e->n_federates_with; i++)
		if (strcmp(e->federates_with[i], td) == 0)
			return true;
	return false;
}

/* The federated bundles at least one of the caller's matched entries federates with, in trust
 * domain order, borrowed from the snapshot. *n may be 0; NULL only when out of memory. */
const struct fed_snap **wl_caller_fed(struct workload_api *w, const struct selset *s, size_t *n)
{
	const struct fed_snap **v = calloc(w->snap->n_fed + 1, sizeof(*v));

	*n = 0;
	if (!v)
		return NULL;
	for (size_t f = 0; f < w->snap->n_fed; f++) {
		bool want = false;

		for (size_t i = 0; i < s->n_match && !want; i++)
			want = entry_federates_with(w->snap->entries[s->match[i]],
						    w->snap->fed[f].trust_domain);
		if (want)
			v[(*n)++] = &w->snap->fed[f];
	}
	return v;
}

/* Mixes the given federated bundles (their X.509 or JWT halves) into d. */
static void fed_digest(const struct fed_snap **f, size_t n, bool jwt, uint8_t d[DIGEST_LEN])
{
	wc_Sha256 sha;
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, d, DIGEST_LEN);
	for (size_t i = 0; i < n; i++) {
		wc_Sha256Update(&sha, (const uint8_t *)f[i]->trust_domain,
				(word32)strlen(f[i]->trust_domain) + 1);
		if (jwt)
			wc_Sha256Update(&sha, (const uint8_t *)f[i]->jwt_bundle,
					(word32)strlen(f[i]->jwt_bundle) + 1);
		else
			wc_Sha256Update(&sha, f[i]->x509, (word32)f[i]->x509_len);
	}
	wc_Sha256Final(&sha, full);
	wc_Sha256Free(&sha);
	memcpy(d, full, DIGEST_LEN);
}

/* Map entries "spiffe://<td>" -> bundle for the federated bundles; keys (n of them, each
 * TRUST_DOMAIN_MAX + 16 bytes) and values are the caller's, valid while f is. */
static void fed_keys(const struct fed_snap **f, size_t n, char (*keys)[TRUST_DOMAIN_MAX + 16])
{
	for (size_t i = 0; i < n; i++)
		snprintf(keys[i], TRUST_DOMAIN_MAX + 16, "spiffe://%s", f[i]->trust_domain);
}

static void x509_digest(struct workload_api *w, struct svid **v, size_t n, uint8_t out[DIGEST_LEN])
{
	wc_Sha256 sha;
	uint8_t full[WC_SHA256_DIGEST_SIZE];

	wc_InitSha256(&sha);
	for (size_t i = 0; i < n; i++) {
		const char *parts[] = {v[i]->entry_id, v[i]->spiffe_id, v[i]->serial,
				       svid_hint(w->snap, v[i])};

		for (size_t j = 0; j < ARRAY_LEN(parts); j++)
			wc_Sha256Update(&sha, (const uint8_t *)parts[j], (word32)strlen(parts[j]) + 1);
	}
	wc_Sha256Update(&sha, w->x509_bundle_digest, DIGEST_LEN);
	wc_Sha256Final(&sha, full);
	wc_Sha256Free(&sha);
	memcpy(out, full, DIGEST_LEN);
}

static int send_x509_svids(struct wcall *c, struct svid **v, size_t n,
			   const struct fed_snap **f, size_t n_fed)
{
	struct workload_api *w = c->w;
	X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
	X509SVID *items = calloc(n, sizeof(*items));
	X509SVID **ptrs = calloc(n, sizeof(*ptrs));
	X509SVIDResponse__FederatedBundlesEntry *fe = calloc(n_fed + 1, sizeof(*fe));
	X509SVIDResponse__FederatedBundlesEntry **fp = calloc(n_fed + 1, sizeof(*fp));
	char (*keys)[TRUST_DOMAIN_MAX + 16] = calloc(n_fed + 1, sizeof(*keys));
	int r = -1;

	if (!items || !ptrs || !fe || !fp || !keys)
		goto out;
	fed_keys(f, n_fed, keys);
	for (size_t i = 0; i < n_fed; i++) {
		X509SVIDResponse__FederatedBundlesEntry init =
			X509_SVIDRESPONSE__FEDERATED_BUNDLES_ENTRY__INIT;

		fe[i] = init;
		fe[i].key = keys[i];
		fe[i].value = (ProtobufCBinaryData){f[i]->x509_len, f[i]->x509};
		fp[i] = &fe[i];
	}
	resp.n_federated_bundles = n_fed;
	resp.federated_bundles = fp;
	for (size_t i = 0; i < n; i++) {
		X509SVID init = X509_SVID__INIT;

		items[i] = init;
		/* Borrowed from the snapshot, which outlives this function. */
		items[i].spiffe_id = v[i]->spiffe_id;
		items[i].x509_svid = (ProtobufCBinaryData){v[i]->chain_len, v[i]->chain};
		items[i].x509_svid_key = (ProtobufCBinaryData){v[i]->key_len, v[i]->key};
		items[i].bundle = (ProtobufCBinaryData){w->snap->bundle_len, w->snap->bundle};
		items[i].hint = (char *)svid_hint(w->snap, v[i]);
		ptrs[i] = &items[i];
	}
	resp.n_svids = n;
	resp.svids = ptrs;
	r = grpc_call_send_pb(c->call, &resp.base);
out:
	free(items);
	free(ptrs);
	free(fe);
	free(fp);
	free(keys);
	return r;
}

/* The own bundle first, then the caller's federated ones. */
static int send_bundles(struct wcall *c, const struct fed_snap **f, size_t n_fed)
{
	struct workload_api *w = c->w;
	char (*keys)[TRUST_DOMAIN_MAX + 16] = calloc(n_fed + 1, sizeof(*keys));
	X509BundlesResponse__BundlesEntry *xe = calloc(n_fed + 1, sizeof(*xe));
	JWTBundlesResponse__BundlesEntry *je = calloc(n_fed + 1, sizeof(*je));
	void **ptrs = calloc(n_fed + 1, sizeof(*ptrs));
	int r = -1;

	if (!keys || !xe || !je || !ptrs)
		goto out;
	snprintf(keys[0], sizeof(keys[0]), "spiffe://%s", wl_td_of(w));
	fed_keys(f, n_fed, keys + 1);
	if (c->method == WL_METHOD_FETCH_X509_BUNDLES) {
		X509BundlesResponse resp = X509_BUNDLES_RESPONSE__INIT;

		for (size_t i = 0; i <= n_fed; i++) {
			X509BundlesResponse__BundlesEntry init =
				X509_BUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;

			xe[i] = init;
			xe[i].key = keys[i];
			xe[i].value = i == 0 ? (ProtobufCBinaryData){w->snap->bundle_len, w->snap->bundle}
					     : (ProtobufCBinaryData){f[i - 1]->x509_len, f[i - 1]->x509};
			ptrs[i] = &xe[i];
		}
		resp.n_bundles = n_fed + 1;
		resp.bundles = (X509BundlesResponse__BundlesEntry **)ptrs;
		r = grpc_call_send_pb(c->call, &resp.base);
	} else {
		JWTBundlesResponse resp = JWTBUNDLES_RESPONSE__INIT;

		for (size_t i = 0; i <= n_fed; i++) {
			JWTBundlesResponse__BundlesEntry init = JWTBUNDLES_RESPONSE__BUNDLES_ENTRY__INIT;
			const char *j = i == 0 ? w->snap->jwt_bundle : f[i - 1]->jwt_bundle;

			je[i] = init;
			je[i].key = keys[i];
			je[i].value = (ProtobufCBinaryData){strlen(j), (uint8_t *)j};
			ptrs[i] = &je[i];
		}
		resp.n_bundles = n_fed + 1;
		resp.bundles = (JWTBundlesResponse__BundlesEntry **)ptrs;
		r = grpc_call_send_pb(c->call, &resp.base);
	}
out:
	free(keys);
	free(xe);
	free(je);
	free(ptrs);
	return r;
}

/* Sends the stream's current answer if it differs from the last one; ends the stream when the
 * caller lost every identity. Called on the first request and after every publication. */
void wl_stream_update(struct wcall *c)
{
	struct workload_api *w = c->w;
	uint8_t d[DIGEST_LEN];
	struct svid **v = NULL;
	const struct fed_snap **f = NULL;
	size_t n = 0, n_fed = 0;

	if (c->finished || c->closed)
		return;
	if (selset_match(w, c->sel) < 0) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (c->sel->n_match == 0) {
		if (c->sent)
			log_info("workload: pid %d: every identity of its %s stream was removed",
				 (int)c->conn->caller.pid, workload_method_name(c->method));
		else
			wl_explain_denial(c);
		wcall_finish(c, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		return;
	}
	f = wl_caller_fed(w, c->sel, &n_fed);
	if (!f) {
		wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (c->method == WL_METHOD_FETCH_X509_SVID) {
		v = matched_svids(w, c->sel, &n);
		if (!v) {
			wcall_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
		/* Entitled, but the SVIDs are still being minted: the first message goes out with
		 * the publication that brings them. */
		if (n == 0)
			goto out;
		x509_digest(w, v, n, d);
	} else {
		memcpy(d, c->method == WL_METHOD_FETCH_X509_BUNDLES ? w->x509_bundle_digest
								    : w->jwt_bundle_digest,
		       DIGEST_LEN);
	}
	fed_digest(f, n_fed, c->method == WL_METHOD_FETCH_JWT_BUNDLES, d);
	if (c->sent && memcmp(d, c->digest, DIGEST_LEN) == 0)
		goto out;
	if ((c->method == WL_METHOD_FETCH_X509_SVID ? send_x509_svids(c, v, n, f, n_fed)
						     : send_bundles(c, f, n_fed)) < 0)
		goto out;
	if (c->sent)
		w->stats.updates_sent++;
	c->sent = true;
	memcpy(c->digest, d, DIGEST_LEN);
out:
	free(v);
	free(f);
}
