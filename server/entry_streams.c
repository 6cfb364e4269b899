/* entry_streams.c: the SyncEntries side of the node API (see entry_streams.h). */
#include "entry_streams.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry_id.h"
#include "log.h"
#include "node_bundle.h"
#include "strv.h"
#include "util.h"

/* Entries per SyncResponse message, so that a large set never needs one huge message. */
#define SYNC_CHUNK 256
/* More entry changes than this at once (a bulk import...) rebuild the index from scratch. */
#define MAX_INCREMENTAL 1024
/* Changes waiting for the next refresh beyond this: streams are all recomputed instead. */
#define MAX_PENDING 4096

/* The id is kept inline and packed (entry_id.h): 24 bytes per entry and stream, 100,000 of them
 * in the fleet benchmark. The index holds only ids that pack (authz.h). */
struct sent_entry {
	uint8_t id[ENTRY_ID_BYTES];
	int64_t revision;
};

/* The text of sent ids, for the removals a message lists. */
typedef char id_text[ENTRY_ID_TEXT];

struct sync_stream;

/* A stream's entry in the parent map: the stream acts as parent. */
struct parent_node {
	struct parent_node *next;
	uint64_t hash;
	char *parent; /* one of the stream's parents, owned by the node */
	struct sync_stream *s;
};

/* One open SyncEntries stream: what this agent has been sent, so changes go out as deltas.
 * Invariant between refreshes (unless full is set): sent holds exactly the entries of the index
 * whose parent is in parents, with their revisions, so a change to one entry needs only that
 * entry compared. */
struct sync_stream {
	struct sync_stream *prev, *next;
	struct entry_streams *es;
	struct grpc_call *call;
	/* The agent's record, re-read from the datastore when the change journal names the agent
	 * (upsert, eviction, ban), or when the journal cannot tell (agent_stale). Never NULL: its
	 * spiffe_id names the stream's agent (stream_agent_id). */
	struct agent_record *agent;
	/* One per parent the agent acts as (authz_agent_parents of agent, sorted), linked into
	 * the parent map; the hash of each stops most comparisons. */
	struct parent_node *nodes;
	size_t n_parents;
	uint64_t mark; /* the refresh that last visited it */
	struct sent_entry *sent; /* sorted by id */
	size_t n_sent;
	int64_t bundle_sequence;
	uint64_t fed_digest; /* of the federated bundles last sent (fed_sent) */
	bool fed_sent;
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

struct entry_streams {
	struct datastore *ds;
	struct ca *ca;
	char *trust_domain;
	char *server_id;
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
	bool pend_fed;  /* a federated bundle changed: re-read them, visit every stream */
	/* Every federated bundle, sorted by trust domain, re-read when the journal names one. */
	struct fed_bundle **fed;
	size_t n_fed;
	bool fed_loaded; /* fed has been read once */
	struct sync_stream *streams;
	unsigned n_streams;
	/* parent SPIFFE ID -> the streams acting as it, so that a change visits only the streams
	 * of the entry's old and new parent. */
	struct parent_node **buckets;
	size_t n_buckets, n_nodes;
	uint64_t epoch;
	bool dirty;            /* some stream has full or agent_stale set: visit every stream */
	int64_t scanned_bundle; /* the bundle sequence at the last visit of every stream */
};

/* ---- the bundle, as the node API sends it ---- */

Lanyard__Node__V1__Bundle *entry_streams_bundle(struct entry_streams *es)
{
	struct ca_bundle b;
	if (ca_bundle_get(es->ca, &b) < 0)
		return NULL;
	Lanyard__Node__V1__Bundle *pb = node_bundle_pb(es->trust_domain, b.sequence, 300, b.x509,
						  b.x509_len, b.jwt, b.jwt_expires_at);
	pb->tainted = xcalloc(b.n_tainted + 1, sizeof(*pb->tainted));
	pb->n_tainted = b.n_tainted;
	for (size_t i = 0; i < b.n_tainted; i++) {
		Lanyard__Node__V1__TaintedAuthority *t = xcalloc(1, sizeof(*t));
		lanyard__node__v1__tainted_authority__init(t);
		t->id = xstrdup(b.tainted[i].id);
		t->jwt_kid = xstrdup(b.tainted[i].jwt_kid);
		t->x509_authority.data = b.tainted[i].cert; /* taken over */
		t->x509_authority.len = b.tainted[i].cert_len;
		b.tainted[i].cert = NULL;
		pb->tainted[i] = t;
	}
	ca_bundle_free(&b);
	return pb;
}

void entry_streams_bundle_free(Lanyard__Node__V1__Bundle *pb)
{
	node_bundle_free(pb);
}

/* ---- the authorization index and the changes pending for the streams ---- */


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

static void pend_clear(struct entry_streams *es)
{
	strv_free(es->pend_entries, es->n_pend_entries);
	strv_free(es->pend_parents, es->n_pend_parents);
	pend_agents_free(es->pend_agents, es->n_pend_agents);
	es->pend_entries = es->pend_parents = NULL;
	es->pend_agents = NULL;
	es->n_pend_entries = es->n_pend_parents = es->n_pend_agents = 0;
	es->pend_scan = false;
}

static void index_rebuild(struct entry_streams *es, int64_t now)
{
	/* The counter is read before the entries: a change landing in between is in the index
	 * already and is applied once more (harmlessly) from the journal. */
	int64_t c = ds_change_counter(es->ds);
	struct authz_index *ix;
	if (c < 0 || authz_index_build(es->ds, es->server_id, now, &ix) < 0) {
		log_error("node API: cannot read entries from the datastore");
		return; /* keep serving the last good view */
	}
	bool had = es->index != NULL;
	authz_index_free(es->index);
	es->index = ix;
	es->index_counter = c;
	pend_clear(es);
	es->pend_all = true;
	es->pend_fed = true;
	/* The old index was freed under the new one: at 100,000 entries a ~20 MB hole glibc
	 * keeps resident. Rebuilds are rare (start, bulk changes), a trim costs milliseconds. */
	if (had)
		heap_trim();
}

/* Brings the index up to date: only the entries the change journal names are re-read; the
 * index is rebuilt when the journal cannot tell (first use, too many or lost changes). The ids
 * of changed entries and agents are kept for entry_streams_refresh. */
const struct authz_index *entry_streams_index(struct entry_streams *es)
{
	int64_t now = now_unix(), cur = -1;
	struct ds_change *ch = NULL;
	size_t nch = 0;
	int r = es->index ? ds_changes_since(es->ds, es->index_counter, &ch, &nch, &cur) : -ESTALE;
	if (r == -ESTALE || (r == 0 && nch > MAX_INCREMENTAL)) {
		index_rebuild(es, now);
	} else if (r < 0) {
		log_error("node API: cannot read the datastore's change journal");
	} else if (nch) {
		for (size_t i = 0; i < nch; i++) {
			if (ch[i].kind == DS_CHANGE_FED_BUNDLE) {
				es->pend_fed = true; /* no entry changed */
				continue;
			}
			if (ch[i].kind == DS_CHANGE_AGENT) {
				size_t k = es->n_pend_agents++;
				es->pend_agents = xrealloc(es->pend_agents,
							  (k + 1) * sizeof(*es->pend_agents));
				es->pend_agents[k].id = xstrdup(ch[i].id);
				es->pend_agents[k].counter = ch[i].counter;
				continue;
			}
			struct entry view;
			const struct entry *old = authz_find(es->index, ch[i].id, &view);
			if (old)
				strv_push(&es->pend_parents, &es->n_pend_parents, old->parent_id);
			if (authz_index_update(es->index, es->ds, ch[i].id, now,
					       &es->pend_aliases) < 0) {
				/* Half applied: start over from a full read. */
				index_rebuild(es, now);
				goto out;
			}
			strv_push(&es->pend_entries, &es->n_pend_entries, ch[i].id);
		}
		es->index_counter = cur;
	}
	if (es->index) {
		size_t before = es->n_pend_entries;
		authz_index_expire(es->index, now, &es->pend_entries, &es->n_pend_entries,
				   &es->pend_aliases);
		if (es->n_pend_entries != before)
			es->pend_scan = true; /* their parents are gone with them */
	}
	if (es->n_pend_entries + es->n_pend_parents + es->n_pend_agents > MAX_PENDING) {
		pend_clear(es);
		es->pend_all = true;
	}
out:
	ds_change_array_free(ch, nch);
	return es->index;
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
	pb->federates_with = e->federates_with;
	pb->n_federates_with = e->n_federates_with;
	return pb;
}

/* ---- SyncEntries ---- */

static const char *stream_agent_id(const struct sync_stream *s)
{
	return s->agent->spiffe_id;
}

/* What a stream keeps of its agent's record: what authz_agent_parents reads (ID, selectors,
 * aliases) and banned; not the attestor's name nor the SVID's serial (~80 bytes per stream, for
 * nothing: authorization reads its own copy, node_api.c). */
static struct agent_record *agent_trim(struct agent_record *a)
{
	free(a->attestor);
	free(a->serial);
	a->attestor = a->serial = NULL;
	return a;
}

static void nodes_free(struct sync_stream *s)
{
	for (size_t i = 0; i < s->n_parents; i++)
		free(s->nodes[i].parent);
	free(s->nodes);
	s->nodes = NULL;
	s->n_parents = 0;
}

static void stream_free(struct sync_stream *s)
{
	free(s->sent);
	agent_record_free(s->agent);
	nodes_free(s);
	free(s);
}

/* SPIFFE IDs share long prefixes, so comparing hashes first saves most strcmp work. */
static uint64_t str_hash(const char *s)
{
	return fnv1a_str(FNV1A_INIT, s);
}

static bool stream_has_parent(const struct sync_stream *s, const char *parent, uint64_t hash)
{
	for (size_t i = 0; i < s->n_parents; i++)
		if (s->nodes[i].hash == hash && strcmp(s->nodes[i].parent, parent) == 0)
			return true;
	return false;
}

static void map_link(struct entry_streams *es, struct parent_node *p)
{
	struct parent_node **b = &es->buckets[p->hash & (es->n_buckets - 1)];
	p->next = *b;
	*b = p;
}

static void map_add(struct entry_streams *es, struct sync_stream *s)
{
	if (es->n_nodes + s->n_parents > 2 * es->n_buckets) {
		/* Grow and relink: chains stay short. */
		struct parent_node **old = es->buckets;
		size_t n_old = es->n_buckets;
		es->n_buckets = n_old ? n_old * 4 : 256;
		while (es->n_buckets < es->n_nodes + s->n_parents)
			es->n_buckets *= 2;
		es->buckets = xcalloc(es->n_buckets, sizeof(*es->buckets));
		for (size_t i = 0; i < n_old; i++) {
			for (struct parent_node *p = old[i], *next; p; p = next) {
				next = p->next;
				map_link(es, p);
			}
		}
		free(old);
	}
	for (size_t i = 0; i < s->n_parents; i++) {
		map_link(es, &s->nodes[i]);
		es->n_nodes++;
	}
}

static void map_del(struct entry_streams *es, struct sync_stream *s)
{
	for (size_t i = 0; i < s->n_parents; i++) {
		struct parent_node **pp = &es->buckets[s->nodes[i].hash & (es->n_buckets - 1)];
		while (*pp && *pp != &s->nodes[i])
			pp = &(*pp)->next;
		if (*pp) {
			*pp = s->nodes[i].next;
			es->n_nodes--;
		}
	}
}

static void stream_set_parents(struct entry_streams *es, struct sync_stream *s,
			       const struct authz_index *ix)
{
	map_del(es, s);
	nodes_free(s);
	if (ix && s->agent) {
		char **parents;
		s->n_parents = authz_agent_parents(ix, s->agent, &parents);
		s->nodes = xcalloc(s->n_parents + 1, sizeof(*s->nodes));
		for (size_t i = 0; i < s->n_parents; i++)
			s->nodes[i] = (struct parent_node){.hash = str_hash(parents[i]),
							   .parent = parents[i], .s = s};
		free(parents); /* the strings are the nodes' now */
		map_add(es, s);
	} else {
		s->full = true; /* no view yet: everything is compared once there is one */
		es->dirty = true;
	}
}

static void stream_unlink(struct entry_streams *es, struct sync_stream *s)
{
	map_del(es, s);
	if (s->prev)
		s->prev->next = s->next;
	else
		es->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	es->n_streams--;
}

/* Sends upserts and removals (and the bundle when it changed, or on the first message), in
 * messages of at most SYNC_CHUNK upserts. Returns -1 when the stream could not be written. */
static int stream_send(struct entry_streams *es, struct sync_stream *s, const struct entry **ups,
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
				m.bundle = entry_streams_bundle(es);
		}
		pos += take;
		m.complete = pos >= n_ups;
		int r = grpc_call_send_pb(s->call, &m.base);
		for (size_t k = 0; k < take; k++)
			free(chunk[k]);
		free(chunk);
		entry_streams_bundle_free(m.bundle);
		if (r < 0) {
			/* What the agent got is unknown now: compare everything next time. */
			s->full = true;
			es->dirty = true;
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
static int stream_push(struct entry_streams *es, struct sync_stream *s,
		       const struct authz_index *ix, bool initial)
{
	struct entry *cur = NULL;
	size_t n_cur = 0;
	if (ix && s->agent)
		authz_entries_for(ix, s->agent, &cur, &n_cur);

	/* Both lists are sorted by id: one merge pass finds upserts and removals. */
	const struct entry **ups = xcalloc(n_cur + 1, sizeof(*ups));
	char **removed = xcalloc(s->n_sent + 1, sizeof(*removed));
	id_text *texts = xcalloc(s->n_sent + 1, sizeof(*texts));
	/* Exactly n_cur: it becomes sent, kept for the stream's life. */
	struct sent_entry *now = xcalloc(n_cur ? n_cur : 1, sizeof(*now));
	for (size_t k = 0; k < n_cur; k++) {
		entry_id_pack(cur[k].id, now[k].id); /* packs: the index holds no other */
		now[k].revision = cur[k].revision;
	}
	size_t n_ups = 0, n_rem = 0, i = 0, j = 0;
	while (i < n_cur || j < s->n_sent) {
		int c = i == n_cur ? 1 : j == s->n_sent ? -1 : memcmp(now[i].id, s->sent[j].id,
								       ENTRY_ID_BYTES);
		if (c < 0) {
			ups[n_ups++] = &cur[i++];
		} else if (c > 0) {
			entry_id_unpack(s->sent[j++].id, texts[n_rem]);
			removed[n_rem] = texts[n_rem];
			n_rem++;
		} else {
			if (cur[i].revision != s->sent[j].revision)
				ups[n_ups++] = &cur[i];
			i++;
			j++;
		}
	}
	int ret = stream_send(es, s, ups, n_ups, removed, n_rem, initial,
			      ca_bundle_sequence(es->ca));
	if (ret == 0 && (initial || n_ups || n_rem)) {
		free(s->sent);
		s->sent = now;
		s->n_sent = n_cur;
		now = NULL;
	}
	if (ret == 0 && ix && s->agent)
		s->full = false;
	free(now);
	free(texts);
	free(ups);
	free(removed);
	free(cur);
	return ret;
}

static int cmp_sent_id(const void *elem, const void *key)
{
	return memcmp(((const struct sent_entry *)elem)->id, key, ENTRY_ID_BYTES);
}

/* Whether the stream was sent the entry of packed id, and where it is or would go. */
static bool sent_find(const struct sync_stream *s, const uint8_t *id, size_t *pos)
{
	return sorted_find(s->sent, s->n_sent, sizeof(*s->sent), id, cmp_sent_id, pos);
}

/* The entries changed since the last refresh, looked up once for all streams. */
struct changed {
	const char *id;
	uint8_t packed[ENTRY_ID_BYTES];
	bool packs; /* false: an id the index cannot hold, so no stream was sent it either */
	const struct entry *e; /* NULL: gone; else view */
	struct entry view;
	uint64_t parent_hash;
};

/* The cheap path: only the entries in ch changed since the stream's last message, so only they
 * are compared (see the invariant at struct sync_stream). */
static int stream_delta(struct entry_streams *es, struct sync_stream *s, const struct changed *ch,
			size_t n_ids, int64_t seq)
{
	const struct entry *ups_small[8];
	const struct changed *upc_small[8];
	char *removed_small[8];
	/* Most changes concern one entry and most streams none of it: no allocation then. */
	const struct entry **ups = n_ids <= 8 ? ups_small : xcalloc(n_ids, sizeof(*ups));
	const struct changed **upc = n_ids <= 8 ? upc_small : xcalloc(n_ids, sizeof(*upc));
	char **removed = n_ids <= 8 ? removed_small : xcalloc(n_ids, sizeof(*removed));
	size_t n_ups = 0, n_rem = 0, pos;
	for (size_t i = 0; i < n_ids; i++) {
		const struct entry *e = ch[i].e;
		bool visible = ch[i].packs && e &&
			       stream_has_parent(s, e->parent_id, ch[i].parent_hash);
		bool sent = ch[i].packs && sent_find(s, ch[i].packed, &pos);
		if (visible && (!sent || s->sent[pos].revision != e->revision)) {
			upc[n_ups] = &ch[i];
			ups[n_ups++] = e;
		} else if (!visible && sent) {
			removed[n_rem++] = (char *)ch[i].id; /* the same text */
		}
	}
	int ret = stream_send(es, s, ups, n_ups, removed, n_rem, false, seq);
	for (size_t i = 0; ret == 0 && i < n_rem; i++) {
		/* Still there: only this function removes from sent. */
		uint8_t id[ENTRY_ID_BYTES];
		if (entry_id_pack(removed[i], id) && sent_find(s, id, &pos)) {
			memmove(&s->sent[pos], &s->sent[pos + 1],
				(s->n_sent - pos - 1) * sizeof(*s->sent));
			s->n_sent--;
		}
	}
	if (ret == 0) {
		if (n_ups)
			s->sent = xrealloc(s->sent, (s->n_sent + n_ups + 1) * sizeof(*s->sent));
		for (size_t i = 0; i < n_ups; i++) {
			if (sent_find(s, upc[i]->packed, &pos)) {
				s->sent[pos].revision = ups[i]->revision;
				continue;
			}
			memmove(&s->sent[pos + 1], &s->sent[pos],
				(s->n_sent - pos) * sizeof(*s->sent));
			memcpy(s->sent[pos].id, upc[i]->packed, ENTRY_ID_BYTES);
			s->sent[pos].revision = ups[i]->revision;
			s->n_sent++;
		}
	}
	if (ups != ups_small)
		free(ups);
	if (upc != upc_small)
		free(upc);
	if (removed != removed_small)
		free(removed);
	return ret;
}

/* ---- federated bundles ---- */

static int cmp_fed_td(const void *key, const void *elem)
{
	return strcmp(key, (*(struct fed_bundle *const *)elem)->trust_domain);
}

static const struct fed_bundle *fed_find(const struct entry_streams *es, const char *td)
{
	struct fed_bundle *const *b = es->n_fed ? bsearch(td, es->fed, es->n_fed, sizeof(*es->fed),
							  cmp_fed_td) : NULL;
	return b ? *b : NULL;
}

/* Re-reads every federated bundle; keeps the last good set when the datastore cannot answer. */
static void fed_reload(struct entry_streams *es)
{
	struct fed_bundle **v = NULL;
	size_t n = 0;
	if (ds_fed_bundle_list(es->ds, &v, &n) < 0) {
		log_error("node API: cannot read the federated bundles from the datastore");
		return;
	}
	fed_bundle_array_free(es->fed, es->n_fed);
	es->fed = v;
	es->n_fed = n;
	es->fed_loaded = true;
}

static uint64_t fed_digest_one(uint64_t h, const struct fed_bundle *b)
{
	h = fnv1a_str(h, b->trust_domain);
	h = fnv1a(h, &b->sequence, sizeof(b->sequence));
	h = fnv1a(h, b->x509, b->x509_len);
	for (size_t i = 0; i < jwks_count(b->jwt); i++) {
		const uint8_t *spki;
		size_t len;
		h = fnv1a_str(h, jwks_get(b->jwt, i, &spki, &len));
		h = fnv1a(h, spki, len);
	}
	return h;
}

/* Sends the stream the federated bundles the entries it was sent federate with, when they differ
 * from what it was last sent (and always once, so the agent forgets bundles it kept from before).
 * A trust domain without a stored bundle is left out. Returns -1 when the stream could not be
 * written. */
static int stream_fed_sync(struct entry_streams *es, struct sync_stream *s,
			   const struct authz_index *ix)
{
	char **tds = NULL;
	size_t n_tds = 0;
	for (size_t i = 0; ix && i < s->n_sent; i++) {
		id_text id;
		struct entry view;
		entry_id_unpack(s->sent[i].id, id);
		const struct entry *e = authz_find(ix, id, &view);
		for (size_t k = 0; e && k < e->n_federates_with; k++)
			strv_push(&tds, &n_tds, e->federates_with[k]);
	}
	n_tds = strv_sort_unique(tds, n_tds);
	const struct fed_bundle **use = xcalloc(n_tds + 1, sizeof(*use));
	size_t n_use = 0;
	uint64_t h = FNV1A_INIT;
	for (size_t i = 0; i < n_tds; i++) {
		if ((use[n_use] = fed_find(es, tds[i])))
			h = fed_digest_one(h, use[n_use++]);
	}
	int ret = 0;
	if (s->fed_sent && h == s->fed_digest)
		goto out;
	Lanyard__Node__V1__SyncResponse m = LANYARD__NODE__V1__SYNC_RESPONSE__INIT;
	m.complete = true;
	m.federated_bundles_set = true;
	m.federated_bundles = xcalloc(n_use + 1, sizeof(*m.federated_bundles));
	m.n_federated_bundles = n_use;
	for (size_t i = 0; i < n_use; i++)
		m.federated_bundles[i] = node_bundle_pb(use[i]->trust_domain, use[i]->sequence,
						   use[i]->refresh_hint, use[i]->x509,
						   use[i]->x509_len, use[i]->jwt, NULL);
	ret = grpc_call_send_pb(s->call, &m.base);
	for (size_t i = 0; i < n_use; i++)
		entry_streams_bundle_free(m.federated_bundles[i]);
	free(m.federated_bundles);
	if (ret < 0) {
		s->full = true;
		es->dirty = true;
		ret = -1;
		goto out;
	}
	s->fed_sent = true;
	s->fed_digest = h;
out:
	free(use);
	strv_free(tds, n_tds);
	return ret;
}

void entry_streams_open(struct entry_streams *es, struct grpc_call *call, struct agent_record *a,
			int64_t counter)
{
	const struct authz_index *ix = entry_streams_index(es);
	struct sync_stream *s = xcalloc(1, sizeof(*s));
	s->call = call;
	s->agent = a; /* the stream keeps the record: see entry_streams_refresh */
	s->agent_counter = counter;
	s->es = es;
	s->bundle_sequence = -1;
	stream_set_parents(es, s, ix);
	grpc_call_set_data(call, s);
	s->next = es->streams;
	if (es->streams)
		es->streams->prev = s;
	es->streams = s;
	es->n_streams++;
	ds_agent_touch(es->ds, a->spiffe_id, NULL, a->not_after, now_unix());
	agent_trim(a);
	log_info("node API: agent %s connected (entry stream open)", a->spiffe_id);
	if (es->pend_fed || !es->fed_loaded)
		fed_reload(es); /* pend_fed stays: the other streams learn of it at the refresh */
	if (stream_push(es, s, ix, true) == 0)
		stream_fed_sync(es, s, ix);
}

void entry_streams_call_closed(struct grpc_call *call)
{
	struct sync_stream *s = grpc_call_data(call);
	if (!s)
		return;
	log_info("node API: agent %s disconnected (entry stream closed)", stream_agent_id(s));
	grpc_call_set_data(call, NULL);
	stream_unlink(s->es, s);
	stream_free(s);
}

/* Re-reads the stream's agent; false (and the stream finished) when it was evicted or banned. */
static bool stream_reread_agent(struct entry_streams *es, struct sync_stream *s, int64_t counter)
{
	struct agent_record *a = NULL;
	int r = ds_agent_get(es->ds, stream_agent_id(s), &a);
	if (r == -ENOENT || (r == 0 && a->banned)) {
		log_info("node API: ending the entry stream of agent %s: %s", stream_agent_id(s),
			 r == 0 ? "banned" : "evicted");
		char msg[512];
		snprintf(msg, sizeof(msg), "agent %s is %s", stream_agent_id(s),
			 r == 0 ? "banned" : "no longer attested (evicted)");
		grpc_call_finish(s->call, GRPC_STATUS_PERMISSION_DENIED, msg);
		agent_record_free(a);
		return false;
	}
	if (r < 0) {
		s->agent_stale = true; /* keep the last good record; retried next time */
		es->dirty = true;
		return true;
	}
	agent_record_free(s->agent);
	s->agent = agent_trim(a);
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
	bool fed; /* the federated bundles changed */
};

static void refresh_stream(struct entry_streams *es, struct sync_stream *s,
			   const struct refresh_ctx *c)
{
	bool reread = c->all || s->agent_stale ||
		      pend_agent_counter(c->agents, c->n_agents, stream_agent_id(s)) > s->agent_counter;
	if (reread && !stream_reread_agent(es, s, c->counter))
		return; /* finished: s may be gone */
	int r = 0;
	if (reread || c->aliases || s->full) {
		stream_set_parents(es, s, c->ix);
		r = stream_push(es, s, c->ix, false);
	} else if (c->ix && (c->n_ch || s->bundle_sequence != c->seq || c->fed)) {
		r = stream_delta(es, s, c->ch, c->n_ch, c->seq);
	} else {
		return;
	}
	if (r == 0)
		stream_fed_sync(es, s, c->ix);
}

/* Appends to *v the streams acting as parent not visited yet in this refresh. */
static void collect(struct entry_streams *es, const char *parent, struct sync_stream ***v,
		    size_t *len, size_t *cap)
{
	if (!es->n_buckets)
		return;
	uint64_t h = str_hash(parent);
	for (struct parent_node *p = es->buckets[h & (es->n_buckets - 1)]; p; p = p->next) {
		if (p->hash != h || p->s->mark == es->epoch || strcmp(p->parent, parent) != 0)
			continue;
		p->s->mark = es->epoch;
		if (*len == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*v = xrealloc(*v, *cap * sizeof(**v));
		}
		(*v)[(*len)++] = p->s;
	}
}

void entry_streams_refresh(struct entry_streams *es)
{
	const struct authz_index *ix = entry_streams_index(es);
	/* The pending changes are taken here: a change arriving while the streams are served is
	 * for the next refresh. */
	char **ents = es->pend_entries, **olds = es->pend_parents;
	struct pend_agent *agents = es->pend_agents;
	size_t n_ents = strv_sort_unique(ents, es->n_pend_entries);
	size_t n_olds = strv_sort_unique(olds, es->n_pend_parents);
	size_t n_agents = pend_agents_sort_unique(agents, es->n_pend_agents);
	int64_t seq = ca_bundle_sequence(es->ca);
	/* Every stream is visited when the journal could not say what changed, when who acts as
	 * which parent may have changed, when a stream needs a full comparison, and for a new
	 * bundle; otherwise only the streams of the changed entries' parents (old and new) and of
	 * the changed agents: the others cannot see any difference. */
	bool fed = es->pend_fed;
	if (fed)
		fed_reload(es);
	bool scan = es->pend_all || es->pend_aliases || es->pend_scan || es->dirty ||
		    seq != es->scanned_bundle || fed;
	struct refresh_ctx c = {
		.ix = ix,
		.agents = agents,
		.n_agents = n_agents,
		/* Every change the pending lists hold is at or before this counter value: an
		 * agent record read from now on reflects them all. */
		.counter = es->index_counter,
		.seq = seq,
		.all = es->pend_all,
		.aliases = es->pend_aliases,
		.fed = fed,
	};
	es->pend_entries = es->pend_parents = NULL;
	es->pend_agents = NULL;
	es->n_pend_entries = es->n_pend_parents = es->n_pend_agents = 0;
	es->pend_all = es->pend_aliases = es->pend_scan = es->pend_fed = false;
	struct changed *ch = xcalloc(n_ents + 1, sizeof(*ch));
	for (size_t i = 0; ix && i < n_ents; i++) {
		ch[i].id = ents[i];
		ch[i].packs = entry_id_pack(ents[i], ch[i].packed);
		ch[i].e = authz_find(ix, ents[i], &ch[i].view);
		ch[i].parent_hash = ch[i].e ? str_hash(ch[i].e->parent_id) : 0;
	}
	c.ch = ch;
	c.n_ch = ix ? n_ents : 0;
	if (scan) {
		es->dirty = false; /* set again by any stream that stays behind */
		es->scanned_bundle = seq;
		for (struct sync_stream *s = es->streams, *next; s; s = next) {
			next = s->next;
			refresh_stream(es, s, &c);
		}
	} else {
		struct sync_stream **v = NULL;
		size_t len = 0, cap = 0;
		es->epoch++;
		for (size_t i = 0; i < n_ents; i++)
			if (ch[i].e)
				collect(es, ch[i].e->parent_id, &v, &len, &cap);
		for (size_t i = 0; i < n_olds; i++)
			collect(es, olds[i], &v, &len, &cap);
		/* An agent's own ID is always among its parents. */
		for (size_t i = 0; i < n_agents; i++)
			collect(es, agents[i].id, &v, &len, &cap);
		/* Finishing a stream frees only that one: the others in v stay valid. */
		for (size_t i = 0; i < len; i++)
			refresh_stream(es, v[i], &c);
		free(v);
	}
	free(ch);
	strv_free(ents, n_ents);
	strv_free(olds, n_olds);
	pend_agents_free(agents, n_agents);
}

/* ---- lifetime ---- */

struct entry_streams *entry_streams_new(struct datastore *ds, struct ca *ca,
					const char *trust_domain, const char *server_id)
{
	struct entry_streams *es = xcalloc(1, sizeof(*es));
	es->ds = ds;
	es->ca = ca;
	es->trust_domain = xstrdup(trust_domain);
	es->server_id = xstrdup(server_id);
	es->index_counter = -1;
	es->scanned_bundle = -1;
	return es;
}

unsigned entry_streams_count(const struct entry_streams *es)
{
	return es->n_streams;
}

void entry_streams_shutdown(struct entry_streams *es)
{
	for (struct sync_stream *s = es->streams; s; s = s->next)
		grpc_call_finish(s->call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
}

void entry_streams_free(struct entry_streams *es)
{
	if (!es)
		return;
	authz_index_free(es->index);
	pend_clear(es);
	fed_bundle_array_free(es->fed, es->n_fed);
	free(es->buckets);
	free(es->trust_domain);
	free(es->server_id);
	free(es);
}
