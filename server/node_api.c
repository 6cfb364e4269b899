#include "node_api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "authz.h"
#include "grpc_server.h"
#include "keys.h"
#include "log.h"
#include "node.pb-c.h"
#include "util.h"
#include "x509.h"

#define PATH_PREFIX "/lanyard.node.v1.Node/"
/* Entries per SyncResponse message, so that a large set never needs one huge message. */
#define SYNC_CHUNK 256
#define MAX_SIGN_BATCH 1000
/* More entry changes than this at once (a bulk import...) rebuild the index from scratch. */
#define MAX_INCREMENTAL 1024
/* Changes waiting for the next refresh beyond this: streams are all recomputed instead. */
#define MAX_PENDING 4096

const double node_api_sign_buckets[8] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0};

struct sent_entry {
	char *id;
	int64_t revision;
};

struct sync_stream;

/* A stream's entry in the parent map: the stream acts as parent. */
struct parent_node {
	struct parent_node *next;
	uint64_t hash;
	const char *parent; /* the stream's parents[i] */
	struct sync_stream *s;
};

/* One open SyncEntries stream: what this agent has been sent, so changes go out as deltas.
 * Invariant between refreshes (unless full is set): sent holds exactly the entries of the index
 * whose parent is in parents, with their revisions, so a change to one entry needs only that
 * entry compared. */
struct sync_stream {
	struct sync_stream *prev, *next;
	struct node_api *api;
	struct grpc_call *call;
	char *agent_id;
	/* The agent's record, re-read from the datastore when the change journal names the agent
	 * (upsert, eviction, ban), or when the journal cannot tell (agent_stale). */
	struct agent_record *agent;
	char **parents; /* authz_agent_parents of agent: sorted */
	uint64_t *parent_hashes; /* str_hash of each: most comparisons stop there */
	struct parent_node *nodes; /* one per parent, linked into the api's parent map */
	size_t n_parents;
	uint64_t mark; /* the refresh that last visited it */
	struct sent_entry *sent; /* sorted by id */
	size_t n_sent;
	int64_t bundle_sequence;
	bool full;        /* the next push compares every entry (after a failed write...) */
	bool agent_stale; /* the record could not be re-read: try again at the next refresh */
	/* The record was read after the change counter had this value: older agent changes in
	 * the journal are in it already. */
	int64_t agent_counter;
};

/* An agent named by the change journal, and the counter value of its latest change. */
struct pend_agent {
	char *id;
	int64_t counter;
};

struct node_api {
	uv_loop_t *loop;
	struct datastore *ds;
	struct ca *ca;
	char *trust_domain;
	char *server_id;
	int64_t default_x509_ttl, default_jwt_ttl, agent_ttl;
	struct psat *psat;
	struct grpc_server *grpc;
	lkey *tls_key;
	int64_t tls_renew_at;
	uv_timer_t tls_timer;
	struct authz_index *index;
	int64_t index_counter; /* the change counter value the index reflects */
	/* What changed since the last refresh (ids of entries and agents), applied to the index
	 * already but not yet to the streams. pend_all: the journal could not say (rebuild), every
	 * stream re-reads its agent and compares everything; pend_aliases: a node alias changed,
	 * every stream recomputes its parents. */
	char **pend_entries;
	char **pend_parents; /* the parents the changed entries had before (to find who had them) */
	struct pend_agent *pend_agents;
	size_t n_pend_entries, n_pend_parents, n_pend_agents;
	bool pend_all, pend_aliases;
	bool pend_scan; /* entries expired: visit every stream (cheap path still) */
	struct sync_stream *streams;
	/* parent SPIFFE ID -> the streams acting as it, so that a change visits only the streams
	 * of the entry's old and new parent. */
	struct parent_node **buckets;
	size_t n_buckets, n_nodes;
	uint64_t epoch;
	bool dirty;            /* some stream has full or agent_stale set: visit every stream */
	int64_t scanned_bundle; /* the bundle sequence at the last visit of every stream */
	struct node_api_stats stats;
	bool stopping;
	void (*done)(void *);
	void *done_arg;
	int pending_closes;
};

static struct node_api *api_of(struct grpc_call *call)
{
	struct grpc_conn *c = grpc_call_conn(call);
	return c ? grpc_server_ud(grpc_conn_server(c)) : NULL;
}

static void finishf(struct grpc_call *call, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finishf(struct grpc_call *call, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	grpc_call_finish(call, status, msg);
}

/* ---- the bundle, as the node API sends it ---- */

static Lanyard__Node__V1__Bundle *bundle_pb(struct node_api *n)
{
	struct ca_bundle b;
	if (ca_bundle_get(n->ca, &b) < 0)
		return NULL;
	Lanyard__Node__V1__Bundle *pb = xcalloc(1, sizeof(*pb));
	lanyard__node__v1__bundle__init(pb);
	pb->trust_domain = xstrdup(n->trust_domain);
	pb->sequence = b.sequence;
	pb->refresh_hint = 300;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, nc = 0;
	if (x509_split_der(b.x509, b.x509_len, &certs, &lens, &nc) == 0) {
		pb->x509_authorities = xcalloc(nc + 1, sizeof(ProtobufCBinaryData));
		pb->n_x509_authorities = nc;
		for (size_t i = 0; i < nc; i++) {
			pb->x509_authorities[i].data = xmalloc(lens[i]);
			memcpy(pb->x509_authorities[i].data, certs[i], lens[i]);
			pb->x509_authorities[i].len = lens[i];
		}
	}
	free(certs);
	free(lens);
	size_t nj = jwks_count(b.jwt);
	pb->jwt_authorities = xcalloc(nj + 1, sizeof(*pb->jwt_authorities));
	pb->n_jwt_authorities = nj;
	for (size_t i = 0; i < nj; i++) {
		Lanyard__Node__V1__JWTKey *k = xcalloc(1, sizeof(*k));
		lanyard__node__v1__jwtkey__init(k);
		const uint8_t *spki;
		size_t spki_len;
		k->kid = xstrdup(jwks_get(b.jwt, i, &spki, &spki_len));
		k->public_key.data = xmalloc(spki_len);
		memcpy(k->public_key.data, spki, spki_len);
		k->public_key.len = spki_len;
		k->expires_at = b.jwt_expires_at[i];
		pb->jwt_authorities[i] = k;
	}
	ca_bundle_free(&b);
	return pb;
}

static void bundle_pb_free(Lanyard__Node__V1__Bundle *pb)
{
	if (!pb)
		return;
	free(pb->trust_domain);
	for (size_t i = 0; i < pb->n_x509_authorities; i++)
		free(pb->x509_authorities[i].data);
	free(pb->x509_authorities);
	for (size_t i = 0; i < pb->n_jwt_authorities; i++) {
		free(pb->jwt_authorities[i]->kid);
		free(pb->jwt_authorities[i]->public_key.data);
		free(pb->jwt_authorities[i]);
	}
	free(pb->jwt_authorities);
	free(pb);
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
				log_warn("node API: a bundle certificate could not be loaded for TLS");
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

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void pend_add(char ***v, size_t *n, const char *id)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(id);
}

static void pend_agents_free(struct pend_agent *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].id);
	free(v);
}

static int cmp_pend_agent(const void *a, const void *b)
{
	const struct pend_agent *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : x->counter < y->counter ? -1 : x->counter > y->counter;
}

/* Sorts by id and keeps, for each agent, its latest change; returns the new length. */
static size_t pend_agents_sort_unique(struct pend_agent *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_pend_agent);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w && strcmp(v[w - 1].id, v[i].id) == 0) {
			free(v[w - 1].id);
			v[w - 1] = v[i];
		} else {
			v[w++] = v[i];
		}
	}
	return w;
}

/* The latest change of the agent among v (sorted by pend_agents_sort_unique), or -1. */
static int64_t pend_agent_counter(const struct pend_agent *v, size_t n, const char *id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(v[mid].id, id);
		if (c == 0)
			return v[mid].counter;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void pend_clear(struct node_api *n)
{
	strv_free(n->pend_entries, n->n_pend_entries);
	strv_free(n->pend_parents, n->n_pend_parents);
	pend_agents_free(n->pend_agents, n->n_pend_agents);
	n->pend_entries = n->pend_parents = NULL;
	n->pend_agents = NULL;
	n->n_pend_entries = n->n_pend_parents = n->n_pend_agents = 0;
	n->pend_scan = false;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts v and frees repeats; returns the new length. */
static size_t strv_sort_unique(char **v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_strp);
	size_t w = 1;
	for (size_t i = 1; i < n; i++) {
		if (strcmp(v[w - 1], v[i]) == 0)
			free(v[i]);
		else
			v[w++] = v[i];
	}
	return w;
}

static void index_rebuild(struct node_api *n, int64_t now)
{
	/* The counter is read before the entries: a change landing in between is in the index
	 * already and is applied once more (harmlessly) from the journal. */
	int64_t c = ds_change_counter(n->ds);
	struct authz_index *ix;
	if (c < 0 || authz_index_build(n->ds, n->server_id, now, &ix) < 0) {
		log_error("node API: cannot read entries from the datastore");
		return; /* keep serving the last good view */
	}
	authz_index_free(n->index);
	n->index = ix;
	n->index_counter = c;
	pend_clear(n);
	n->pend_all = true;
}

/* Brings the index up to date: only the entries the change journal names are re-read; the
 * index is rebuilt when the journal cannot tell (first use, too many or lost changes). The ids
 * of changed entries and agents are kept for node_api_refresh. */
static const struct authz_index *index_get(struct node_api *n)
{
	int64_t now = now_unix(), cur = -1;
	struct ds_change *ch = NULL;
	size_t nch = 0;
	int r = n->index ? ds_changes_since(n->ds, n->index_counter, &ch, &nch, &cur) : -ESTALE;
	if (r == -ESTALE || (r == 0 && nch > MAX_INCREMENTAL)) {
		index_rebuild(n, now);
	} else if (r < 0) {
		log_error("node API: cannot read the datastore's change journal");
	} else if (nch) {
		for (size_t i = 0; i < nch; i++) {
			if (ch[i].kind == DS_CHANGE_AGENT) {
				size_t k = n->n_pend_agents++;
				n->pend_agents = xrealloc(n->pend_agents,
							  (k + 1) * sizeof(*n->pend_agents));
				n->pend_agents[k].id = xstrdup(ch[i].id);
				n->pend_agents[k].counter = ch[i].counter;
				continue;
			}
			const struct entry *old = authz_find(n->index, ch[i].id);
			if (old)
				pend_add(&n->pend_parents, &n->n_pend_parents, old->parent_id);
			if (authz_index_update(n->index, n->ds, ch[i].id, now,
					       &n->pend_aliases) < 0) {
				/* Half applied: start over from a full read. */
				index_rebuild(n, now);
				goto out;
			}
			pend_add(&n->pend_entries, &n->n_pend_entries, ch[i].id);
		}
		n->index_counter = cur;
	}
	if (n->index) {
		size_t before = n->n_pend_entries;
		authz_index_expire(n->index, now, &n->pend_entries, &n->n_pend_entries,
				   &n->pend_aliases);
		if (n->n_pend_entries != before)
			n->pend_scan = true; /* their parents are gone with them */
	}
	if (n->n_pend_entries + n->n_pend_parents + n->n_pend_agents > MAX_PENDING) {
		pend_clear(n);
		n->pend_all = true;
	}
out:
	ds_change_array_free(ch, nch);
	return n->index;
}

/* The calling agent's record, from its mutual TLS certificate; on failure the call is finished
 * with the reason and NULL returned. */
static struct agent_record *authorize(struct node_api *n, struct grpc_call *call)
{
	size_t len;
	struct grpc_conn *conn = grpc_call_conn(call);
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
	struct agent_record *a = NULL;
	int r = ds_agent_get(n->ds, info.spiffe_id, &a);
	if (r == -ENOENT)
		finishf(call, GRPC_STATUS_PERMISSION_DENIED,
			"agent %s is not attested (it may have been evicted): attest again",
			info.spiffe_id);
	else if (r < 0)
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "datastore unavailable");
	else if (a->banned)
		finishf(call, GRPC_STATUS_PERMISSION_DENIED, "agent %s is banned", info.spiffe_id);
	x509_info_free(&info);
	if (r < 0 || a->banned) {
		agent_record_free(a);
		return NULL;
	}
	return a;
}

/* ---- entries on the wire ---- */

static Lanyard__Node__V1__Entry *entry_pb(const struct entry *e)
{
	Lanyard__Node__V1__Entry *pb = xcalloc(1, sizeof(*pb));
	lanyard__node__v1__entry__init(pb);
	/* The strings are borrowed from the index: entry_pb_free frees only the wrapper. */
	pb->id = (char *)e->id;
	pb->spiffe_id = e->spiffe_id;
	pb->parent_id = e->parent_id;
	pb->selectors = e->selectors;
	pb->n_selectors = e->n_selectors;
	pb->x509_svid_ttl = e->x509_svid_ttl;
	pb->jwt_svid_ttl = e->jwt_svid_ttl;
	pb->dns_names = e->dns_names;
	pb->n_dns_names = e->n_dns_names;
	pb->hint = e->hint ? e->hint : (char *)"";
	pb->admin = e->admin;
	pb->downstream = e->downstream;
	pb->expires_at = e->expires_at;
	pb->revision = e->revision;
	return pb;
}

/* ---- SyncEntries ---- */

static void stream_free(struct sync_stream *s)
{
	for (size_t i = 0; i < s->n_sent; i++)
		free(s->sent[i].id);
	free(s->sent);
	free(s->agent_id);
	agent_record_free(s->agent);
	strv_free(s->parents, s->n_parents);
	free(s->parent_hashes);
	free(s->nodes);
	free(s);
}

/* FNV-1a: SPIFFE IDs share long prefixes, so comparing hashes first saves most strcmp work. */
static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static bool stream_has_parent(const struct sync_stream *s, const char *parent, uint64_t hash)
{
	for (size_t i = 0; i < s->n_parents; i++)
		if (s->parent_hashes[i] == hash && strcmp(s->parents[i], parent) == 0)
			return true;
	return false;
}

static void map_link(struct node_api *n, struct parent_node *p)
{
	struct parent_node **b = &n->buckets[p->hash & (n->n_buckets - 1)];
	p->next = *b;
	*b = p;
}

static void map_add(struct node_api *n, struct sync_stream *s)
{
	if (n->n_nodes + s->n_parents > 2 * n->n_buckets) {
		/* Grow and relink: chains stay short. */
		struct parent_node **old = n->buckets;
		size_t n_old = n->n_buckets;
		n->n_buckets = n_old ? n_old * 4 : 256;
		while (n->n_buckets < n->n_nodes + s->n_parents)
			n->n_buckets *= 2;
		n->buckets = xcalloc(n->n_buckets, sizeof(*n->buckets));
		for (size_t i = 0; i < n_old; i++) {
			for (struct parent_node *p = old[i], *next; p; p = next) {
				next = p->next;
				map_link(n, p);
			}
		}
		free(old);
	}
	for (size_t i = 0; i < s->n_parents; i++) {
		s->nodes[i] = (struct parent_node){.hash = s->parent_hashes[i],
						   .parent = s->parents[i], .s = s};
		map_link(n, &s->nodes[i]);
		n->n_nodes++;
	}
}

static void map_del(struct node_api *n, struct sync_stream *s)
{
	for (size_t i = 0; i < s->n_parents; i++) {
		struct parent_node **pp = &n->buckets[s->nodes[i].hash & (n->n_buckets - 1)];
		while (*pp && *pp != &s->nodes[i])
			pp = &(*pp)->next;
		if (*pp) {
			*pp = s->nodes[i].next;
			n->n_nodes--;
		}
	}
}

static void stream_set_parents(struct node_api *n, struct sync_stream *s,
			       const struct authz_index *ix)
{
	map_del(n, s);
	strv_free(s->parents, s->n_parents);
	free(s->parent_hashes);
	free(s->nodes);
	s->parents = NULL;
	s->parent_hashes = NULL;
	s->nodes = NULL;
	s->n_parents = 0;
	if (ix && s->agent) {
		s->n_parents = authz_agent_parents(ix, s->agent, &s->parents);
		s->parent_hashes = xcalloc(s->n_parents + 1, sizeof(*s->parent_hashes));
		s->nodes = xcalloc(s->n_parents + 1, sizeof(*s->nodes));
		for (size_t i = 0; i < s->n_parents; i++)
			s->parent_hashes[i] = str_hash(s->parents[i]);
		map_add(n, s);
	} else {
		s->full = true; /* no view yet: everything is compared once there is one */
		n->dirty = true;
	}
}

static void stream_unlink(struct node_api *n, struct sync_stream *s)
{
	map_del(n, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		n->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	n->stats.streams--;
}

/* Sends upserts and removals (and the bundle when it changed, or on the first message), in
 * messages of at most SYNC_CHUNK upserts. Returns -1 when the stream could not be written. */
static int stream_send(struct node_api *n, struct sync_stream *s, const struct entry **ups,
		       size_t n_ups, char **removed, size_t n_rem, bool initial, int64_t seq)
{
	bool bundle_changed = seq != s->bundle_sequence;
	if (!initial && !n_ups && !n_rem && !bundle_changed)
		return 0;
	size_t pos = 0;
	bool first = true;
	do {
		Lanyard__Node__V1__SyncResponse m = LANYARD__NODE__V1__SYNC_RESPONSE__INIT;
		size_t take = n_ups - pos < SYNC_CHUNK ? n_ups - pos : SYNC_CHUNK;
		Lanyard__Node__V1__Entry **chunk = xcalloc(take + 1, sizeof(*chunk));
		for (size_t k = 0; k < take; k++)
			chunk[k] = entry_pb(ups[pos + k]);
		m.upserts = chunk;
		m.n_upserts = take;
		m.reset = initial && first;
		if (first) {
			m.removed_ids = removed;
			m.n_removed_ids = initial ? 0 : n_rem;
			if (bundle_changed || initial)
				m.bundle = bundle_pb(n);
		}
		pos += take;
		m.complete = pos >= n_ups;
		int r = grpc_call_send_pb(s->call, &m.base);
		for (size_t k = 0; k < take; k++)
			free(chunk[k]);
		free(chunk);
		bundle_pb_free(m.bundle);
		if (r < 0) {
			/* What the agent got is unknown now: compare everything next time. */
			s->full = true;
			n->dirty = true;
			return -1;
		}
		first = false;
	} while (pos < n_ups);
	s->bundle_sequence = seq;
	return 0;
}

/* Sends what changed for this stream since its last message, comparing every entry it may see
 * with what it was sent: everything (reset) the first time, then upserts and removals. Returns
 * -1 when the stream could not be written. */
static int stream_push(struct node_api *n, struct sync_stream *s, const struct authz_index *ix,
		       bool initial)
{
	const struct entry **cur = NULL;
	size_t n_cur = 0;
	if (ix && s->agent)
		authz_entries_for(ix, s->agent, &cur, &n_cur);

	/* Both lists are sorted by id: one merge pass finds upserts and removals. */
	const struct entry **ups = xcalloc(n_cur + 1, sizeof(*ups));
	char **removed = xcalloc(s->n_sent + 1, sizeof(*removed));
	size_t n_ups = 0, n_rem = 0, i = 0, j = 0;
	while (i < n_cur || j < s->n_sent) {
		int c = i == n_cur ? 1 : j == s->n_sent ? -1 : strcmp(cur[i]->id, s->sent[j].id);
		if (c < 0) {
			ups[n_ups++] = cur[i++];
		} else if (c > 0) {
			removed[n_rem++] = s->sent[j++].id;
		} else {
			if (cur[i]->revision != s->sent[j].revision)
				ups[n_ups++] = cur[i];
			i++;
			j++;
		}
	}
	int ret = stream_send(n, s, ups, n_ups, removed, n_rem, initial,
			      ca_bundle_sequence(n->ca));
	if (ret == 0 && (initial || n_ups || n_rem)) {
		for (size_t k = 0; k < s->n_sent; k++)
			free(s->sent[k].id);
		free(s->sent);
		s->sent = xcalloc(n_cur + 1, sizeof(*s->sent));
		for (size_t k = 0; k < n_cur; k++) {
			s->sent[k].id = xstrdup(cur[k]->id);
			s->sent[k].revision = cur[k]->revision;
		}
		s->n_sent = n_cur;
	}
	if (ret == 0 && ix && s->agent)
		s->full = false;
	free(ups);
	free(removed);
	free(cur);
	return ret;
}

static bool sent_find(const struct sync_stream *s, const char *id, size_t *pos)
{
	size_t lo = 0, hi = s->n_sent;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->sent[mid].id, id);
		if (c == 0) {
			*pos = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

/* The entries changed since the last refresh, looked up once for all streams. */
struct changed {
	const char *id;
	const struct entry *e; /* NULL: gone */
	uint64_t parent_hash;
};

/* The cheap path: only the entries in ch changed since the stream's last message, so only they
 * are compared (see the invariant at struct sync_stream). */
static int stream_delta(struct node_api *n, struct sync_stream *s, const struct changed *ch,
			size_t n_ids, int64_t seq)
{
	const struct entry *ups_small[8];
	char *removed_small[8];
	/* Most changes concern one entry and most streams none of it: no allocation then. */
	const struct entry **ups = n_ids <= 8 ? ups_small : xcalloc(n_ids, sizeof(*ups));
	char **removed = n_ids <= 8 ? removed_small : xcalloc(n_ids, sizeof(*removed));
	size_t n_ups = 0, n_rem = 0, pos;
	for (size_t i = 0; i < n_ids; i++) {
		const struct entry *e = ch[i].e;
		bool visible = e && stream_has_parent(s, e->parent_id, ch[i].parent_hash);
		bool sent = sent_find(s, ch[i].id, &pos);
		if (visible && (!sent || s->sent[pos].revision != e->revision))
			ups[n_ups++] = e;
		else if (!visible && sent)
			removed[n_rem++] = s->sent[pos].id;
	}
	int ret = stream_send(n, s, ups, n_ups, removed, n_rem, false, seq);
	if (ret == 0) {
		for (size_t i = 0; i < n_rem; i++) {
			sent_find(s, removed[i], &pos);
			free(s->sent[pos].id);
			memmove(&s->sent[pos], &s->sent[pos + 1],
				(s->n_sent - pos - 1) * sizeof(*s->sent));
			s->n_sent--;
		}
		if (n_ups)
			s->sent = xrealloc(s->sent, (s->n_sent + n_ups + 1) * sizeof(*s->sent));
		for (size_t i = 0; i < n_ups; i++) {
			if (sent_find(s, ups[i]->id, &pos)) {
				s->sent[pos].revision = ups[i]->revision;
				continue;
			}
			memmove(&s->sent[pos + 1], &s->sent[pos],
				(s->n_sent - pos) * sizeof(*s->sent));
			s->sent[pos].id = xstrdup(ups[i]->id);
			s->sent[pos].revision = ups[i]->revision;
			s->n_sent++;
		}
	}
	if (ups != ups_small)
		free(ups);
	if (removed != removed_small)
		free(removed);
	return ret;
}

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
	const struct authz_index *ix = index_get(n);
	struct sync_stream *s = xcalloc(1, sizeof(*s));
	s->call = call;
	s->agent_id = xstrdup(a->spiffe_id);
	s->agent = a; /* the stream keeps the record: see node_api_refresh */
	s->agent_counter = counter;
	s->api = n;
	s->bundle_sequence = -1;
	stream_set_parents(n, s, ix);
	grpc_call_set_data(call, s);
	s->next = n->streams;
	if (n->streams)
		n->streams->prev = s;
	n->streams = s;
	n->stats.streams++;
	ds_agent_touch(n->ds, a->spiffe_id, NULL, a->not_after, now_unix());
	log_info("node API: agent %s connected (entry stream open)", a->spiffe_id);
	stream_push(n, s, ix, true);
}

static void on_call_closed(struct grpc_call *call)
{
	if (strcmp(grpc_call_path(call), PATH_PREFIX "SyncEntries") != 0)
		return;
	struct sync_stream *s = grpc_call_data(call);
	if (!s)
		return;
	log_info("node API: agent %s disconnected (entry stream closed)", s->agent_id);
	grpc_call_set_data(call, NULL);
	stream_unlink(s->api, s);
	stream_free(s);
}

/* Re-reads the stream's agent; false (and the stream finished) when it was evicted or banned. */
static bool stream_reread_agent(struct node_api *n, struct sync_stream *s, int64_t counter)
{
	struct agent_record *a = NULL;
	int r = ds_agent_get(n->ds, s->agent_id, &a);
	if (r == -ENOENT || (r == 0 && a->banned)) {
		log_info("node API: ending the entry stream of agent %s: %s", s->agent_id,
			 r == 0 ? "banned" : "evicted");
		finishf(s->call, GRPC_STATUS_PERMISSION_DENIED, "agent %s is %s", s->agent_id,
			r == 0 ? "banned" : "no longer attested (evicted)");
		agent_record_free(a);
		return false;
	}
	if (r < 0) {
		s->agent_stale = true; /* keep the last good record; retried next time */
		n->dirty = true;
		return true;
	}
	agent_record_free(s->agent);
	s->agent = a;
	s->agent_stale = false;
	s->agent_counter = counter;
	return true;
}

/* What a refresh brings to one stream. */
struct refresh_ctx {
	const struct authz_index *ix;
	const struct changed *ch;
	size_t n_ch;
	const struct pend_agent *agents;
	size_t n_agents;
	int64_t counter, seq;
	bool all, aliases;
};

static void refresh_stream(struct node_api *n, struct sync_stream *s, const struct refresh_ctx *c)
{
	bool reread = c->all || s->agent_stale ||
		      pend_agent_counter(c->agents, c->n_agents, s->agent_id) > s->agent_counter;
	if (reread && !stream_reread_agent(n, s, c->counter))
		return; /* finished: s may be gone */
	if (reread || c->aliases || s->full) {
		stream_set_parents(n, s, c->ix);
		stream_push(n, s, c->ix, false);
	} else if (c->ix && (c->n_ch || s->bundle_sequence != c->seq)) {
		stream_delta(n, s, c->ch, c->n_ch, c->seq);
	}
}

/* Appends to *v the streams acting as parent not visited yet in this refresh. */
static void collect(struct node_api *n, const char *parent, struct sync_stream ***v, size_t *len,
		    size_t *cap)
{
	if (!n->n_buckets)
		return;
	uint64_t h = str_hash(parent);
	for (struct parent_node *p = n->buckets[h & (n->n_buckets - 1)]; p; p = p->next) {
		if (p->hash != h || p->s->mark == n->epoch || strcmp(p->parent, parent) != 0)
			continue;
		p->s->mark = n->epoch;
		if (*len == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*v = xrealloc(*v, *cap * sizeof(**v));
		}
		(*v)[(*len)++] = p->s;
	}
}

void node_api_refresh(struct node_api *n)
{
	if (n->stopping)
		return;
	const struct authz_index *ix = index_get(n);
	/* The pending changes are taken here: a change arriving while the streams are served is
	 * for the next refresh. */
	char **ents = n->pend_entries, **olds = n->pend_parents;
	struct pend_agent *agents = n->pend_agents;
	size_t n_ents = strv_sort_unique(ents, n->n_pend_entries);
	size_t n_olds = strv_sort_unique(olds, n->n_pend_parents);
	size_t n_agents = pend_agents_sort_unique(agents, n->n_pend_agents);
	int64_t seq = ca_bundle_sequence(n->ca);
	/* Every stream is visited when the journal could not say what changed, when who acts as
	 * which parent may have changed, when a stream needs a full comparison, and for a new
	 * bundle; otherwise only the streams of the changed entries' parents (old and new) and of
	 * the changed agents: the others cannot see any difference. */
	bool scan = n->pend_all || n->pend_aliases || n->pend_scan || n->dirty ||
		    seq != n->scanned_bundle;
	struct refresh_ctx c = {
		.ix = ix,
		.agents = agents,
		.n_agents = n_agents,
		/* Every change the pending lists hold is at or before this counter value: an
		 * agent record read from now on reflects them all. */
		.counter = n->index_counter,
		.seq = seq,
		.all = n->pend_all,
		.aliases = n->pend_aliases,
	};
	n->pend_entries = n->pend_parents = NULL;
	n->pend_agents = NULL;
	n->n_pend_entries = n->n_pend_parents = n->n_pend_agents = 0;
	n->pend_all = n->pend_aliases = n->pend_scan = false;
	struct changed *ch = xcalloc(n_ents + 1, sizeof(*ch));
	for (size_t i = 0; ix && i < n_ents; i++) {
		ch[i].id = ents[i];
		ch[i].e = authz_find(ix, ents[i]);
		ch[i].parent_hash = ch[i].e ? str_hash(ch[i].e->parent_id) : 0;
	}
	c.ch = ch;
	c.n_ch = ix ? n_ents : 0;
	if (scan) {
		n->dirty = false; /* set again by any stream that stays behind */
		n->scanned_bundle = seq;
		for (struct sync_stream *s = n->streams, *next; s; s = next) {
			next = s->next;
			refresh_stream(n, s, &c);
		}
	} else {
		struct sync_stream **v = NULL;
		size_t len = 0, cap = 0;
		n->epoch++;
		for (size_t i = 0; i < n_ents; i++)
			if (ch[i].e)
				collect(n, ch[i].e->parent_id, &v, &len, &cap);
		for (size_t i = 0; i < n_olds; i++)
			collect(n, olds[i], &v, &len, &cap);
		/* An agent's own ID is always among its parents. */
		for (size_t i = 0; i < n_agents; i++)
			collect(n, agents[i].id, &v, &len, &cap);
		/* Finishing a stream frees only that one: the others in v stay valid. */
		for (size_t i = 0; i < len; i++)
			refresh_stream(n, v[i], &c);
		free(v);
	}
	free(ch);
	strv_free(ents, n_ents);
	strv_free(olds, n_olds);
	pend_agents_free(agents, n_agents);
}

void node_api_ca_changed(struct node_api *n)
{
	if (n->stopping)
		return;
	refresh_tls(n);
	node_api_refresh(n);
}

/* ---- Attest and RenewAgent ---- */

static void histogram_add(struct node_api *n, double secs)
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
	Lanyard__Node__V1__AttestResponse resp = LANYARD__NODE__V1__ATTEST_RESPONSE__INIT;
	resp.spiffe_id = tmpl->spiffe_id;
	resp.svid.data = chain;
	resp.svid.len = chain_len;
	resp.bundle = bundle_pb(n);
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	bundle_pb_free(resp.bundle);
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
		log_warn("node API: k8s_psat attestation refused: %s", j->err);
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
	log_info("node API: agent %s attested (k8s_psat, node %s)", j->res.agent_id,
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
		log_warn("node API: attestation refused: %s",
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
	log_info("node API: agent %s attested (join token%s%s)", agent_id, alias ? ", alias " : "",
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
	ds_agent_touch(n->ds, a->spiffe_id, serial, not_after, now_unix());
	Lanyard__Node__V1__RenewAgentResponse resp = LANYARD__NODE__V1__RENEW_AGENT_RESPONSE__INIT;
	resp.svid.data = chain;
	resp.svid.len = chain_len;
	resp.bundle = bundle_pb(n);
	grpc_call_send_pb(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	bundle_pb_free(resp.bundle);
	n->stats.renew_ok++;
	log_info("node API: agent %s renewed its SVID (serial %s)", a->spiffe_id, serial);
out:
	free(chain);
	agent_record_free(a);
	lanyard__node__v1__renew_agent_request__free_unpacked(req, NULL);
}

/* ---- SignX509: batches signed on worker threads ---- */

struct sign_item {
	char *entry_id;
	char *spiffe_id;
	char **dns_names;
	size_t n_dns;
	int64_t ttl;
	uint8_t *csr;
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
	struct sign_item *items;
	size_t n;
};

static void sign_work(uv_work_t *w)
{
	struct sign_job *job = w->data;
	for (size_t i = 0; i < job->n; i++) {
		struct sign_item *it = &job->items[i];
		if (it->error)
			continue;
		int64_t t0 = now_mono_us();
		struct csr_info ci = {0};
		char err[256];
		if (x509_csr_parse(it->csr, it->csr_len, &ci, err, sizeof(err)) < 0) {
			char msg[300];
			snprintf(msg, sizeof(msg), "bad CSR: %s", err);
			it->error = xstrdup(msg);
			continue;
		}
		if (ca_sign_x509(job->api->ca, it->spiffe_id, (const char *const *)it->dns_names,
				 it->n_dns, ci.spki, ci.spki_len, it->ttl, now_unix(), &it->chain,
				 &it->chain_len, NULL, err, sizeof(err)) < 0)
			it->error = xstrdup(err);
		csr_info_free(&ci);
		it->seconds = (double)(now_mono_us() - t0) / 1e6;
	}
}

static void sign_job_free(struct sign_job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		struct sign_item *it = &job->items[i];
		free(it->entry_id);
		free(it->spiffe_id);
		for (size_t k = 0; k < it->n_dns; k++)
			free(it->dns_names[k]);
		free(it->dns_names);
		free(it->csr);
		free(it->chain);
		free(it->error);
	}
	free(job->items);
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
		res[i].entry_id = it->entry_id;
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

static void on_sign_x509(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct node_api *n = api_of(call);
	Lanyard__Node__V1__SignX509Request *req =
		lanyard__node__v1__sign_x509_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed SignX509Request");
		return;
	}
	struct agent_record *a = NULL;
	if (req->n_items > MAX_SIGN_BATCH) {
		finishf(call, GRPC_STATUS_INVALID_ARGUMENT, "at most %d CSRs per batch",
			MAX_SIGN_BATCH);
		goto out;
	}
	a = authorize(n, call);
	if (!a)
		goto out;
	const struct authz_index *ix = index_get(n);
	struct sign_job *job = xcalloc(1, sizeof(*job));
	job->api = n;
	job->call = call;
	job->n = req->n_items;
	job->items = xcalloc(job->n + 1, sizeof(*job->items));
	for (size_t i = 0; i < job->n; i++) {
		Lanyard__Node__V1__X509SignItem *in = req->items[i];
		struct sign_item *it = &job->items[i];
		it->entry_id = xstrdup(in->entry_id);
		const struct entry *e = ix ? authz_find(ix, in->entry_id) : NULL;
		if (!e || !authz_allows(ix, a, e)) {
			char m[200];
			snprintf(m, sizeof(m), "entry %.64s is not authorized for this agent",
				 in->entry_id);
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
		it->csr = xmalloc(in->csr.len + 1);
		memcpy(it->csr, in->csr.data, in->csr.len);
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
	agent_record_free(a);
	lanyard__node__v1__sign_x509_request__free_unpacked(req, NULL);
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
	const struct authz_index *ix = index_get(n);
	const struct entry *e = ix ? authz_find(ix, req->entry_id) : NULL;
	if (!e || !authz_allows(ix, a, e)) {
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
	Lanyard__Node__V1__Bundle *b = bundle_pb(n);
	if (!b) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "cannot read the bundle");
		return;
	}
	grpc_call_send_pb(call, &b->base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	bundle_pb_free(b);
}

static const struct grpc_method methods[] = {
	{.path = PATH_PREFIX "Attest", .on_request = on_attest},
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
}

int node_api_start(uv_loop_t *loop, const struct node_api_options *o, struct datastore *ds,
		   struct ca *ca, struct node_api **out, char *err, size_t errlen)
{
	struct node_api *n = xcalloc(1, sizeof(*n));
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
	n->index_counter = -1;
	n->scanned_bundle = -1;
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
}

static void closed_one(struct node_api *n)
{
	if (--n->pending_closes > 0)
		return;
	authz_index_free(n->index);
	pend_clear(n);
	free(n->buckets);
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
	for (struct sync_stream *s = n->streams; s; s = s->next)
		grpc_call_finish(s->call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
	uv_close((uv_handle_t *)&n->tls_timer, timer_closed);
	grpc_server_shutdown(n->grpc, 2000, grpc_done, n);
}
