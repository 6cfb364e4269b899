/* entry_set.c: the agent's entry set and its renewal plan (see entry_set.h). */
#include "entry_set.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "spiffeid.h"
#include "strv.h"
#include "util.h"
#include "x509.h"

/* An upsert waiting to be merged; seq keeps the arrival order so the last copy of an id wins. */
struct entry_staged {
	struct entry *e;
	size_t seq;
};

/* snprintf for messages that may be cut short without harm (by a long SPIFFE ID): they are only
 * logged. Through vsnprintf, GCC does not warn about the cut. */
static __attribute__((format(printf, 3, 4))) void seterr(char *err, size_t errlen,
							  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int cmp_staged(const void *a, const void *b)
{
	const struct entry_staged *x = a, *y = b;
	int c = strcmp(x->e->id, y->e->id);
	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static struct entry *entry_from_proto(const char *trust_domain,
					    const Lanyard__Node__V1__Entry *p)
{
	if (!p->id || !*p->id) {
		log_warnx("ignoring an entry without an id from the server");
		return NULL;
	}
	if (!p->spiffe_id || !spiffeid_member_of(p->spiffe_id, trust_domain) ||
	    spiffeid_validate_leaf(p->spiffe_id, NULL, 0) < 0) {
		log_warnx("ignoring entry \"%s\" from the server: SPIFFE ID \"%s\" is not a workload ID "
			 "of %s",
			 p->id ? p->id : "", p->spiffe_id ? p->spiffe_id : "", trust_domain);
		return NULL;
	}
	if (strlen(p->id) >= sizeof(((struct entry *)0)->id)) {
		log_warnx("ignoring entry \"%.64s...\" from the server: the id is too long", p->id);
		return NULL;
	}
	struct entry e = {
		.spiffe_id = p->spiffe_id,
		.parent_id = p->parent_id ? p->parent_id : "",
		.selectors = p->selectors,
		.n_selectors = p->n_selectors,
		.x509_svid_ttl = p->x509_svid_ttl,
		.jwt_svid_ttl = p->jwt_svid_ttl,
		.dns_names = p->dns_names,
		.n_dns_names = p->n_dns_names,
		.hint = p->hint ? p->hint : "",
		.revision = p->revision,
		.federates_with = p->federates_with,
		.n_federates_with = p->n_federates_with,
	};
	snprintf(e.id, sizeof(e.id), "%s", p->id);
	struct entry *c = cache_entry_dup(&e);
	entry_normalize(c);
	return c;
}

static void drop_svid(struct entry_slot *w)
{
	svid_unref(w->svid);
	w->svid = NULL;
	w->taint_at = 0;
}

/* Sorts staged upserts and keeps the last copy of each id. */
static size_t sort_staged(struct entry_staged *s, size_t cnt)
{
	if (cnt == 0)
		return 0;
	qsort(s, cnt, sizeof(*s), cmp_staged);
	size_t k = 0;
	for (size_t i = 0; i < cnt; i++) {
		if (i + 1 < cnt && strcmp(s[i].e->id, s[i + 1].e->id) == 0) {
			cache_entry_free(s[i].e);
			continue;
		}
		s[k++] = s[i];
	}
	return k;
}

/* Merges sorted upserts and sorted removals into the set. full: a snapshot, so entries absent
 * from ups go away. Takes ownership of the upserts' entries. SVIDs of entries whose SPIFFE ID
 * is unchanged are kept (a changed revision gets them re-signed). */
static void merge(struct entry_set *s, struct entry_staged *ups, size_t n_ups, char **rm,
		  size_t n_rm, bool full)
{
	struct entry_slot *out = xcalloc(s->n + n_ups + 1, sizeof(*out));
	size_t i = 0, j = 0, r = 0, k = 0;
	size_t added = 0, removed = 0, changed = 0;
	while (i < s->n || j < n_ups) {
		int c = i == s->n ? 1 : j == n_ups ? -1 : strcmp(s->slots[i].e->id, ups[j].e->id);
		const char *id = c <= 0 ? s->slots[i].e->id : ups[j].e->id;
		while (r < n_rm && strcmp(rm[r], id) < 0)
			r++;
		bool in_rm = r < n_rm && strcmp(rm[r], id) == 0;
		if (c < 0) {
			if (full || in_rm) {
				drop_svid(&s->slots[i]);
				cache_entry_free(s->slots[i].e);
				removed++;
			} else {
				out[k++] = s->slots[i];
			}
			i++;
		} else if (c > 0) {
			if (in_rm)
				cache_entry_free(ups[j].e);
			else
				out[k++] = (struct entry_slot){.e = ups[j].e};
			added += !in_rm;
			j++;
		} else {
			struct entry_slot w = s->slots[i];
			if (in_rm) {
				drop_svid(&w);
				cache_entry_free(w.e);
				cache_entry_free(ups[j].e);
				removed++;
			} else {
				if (w.svid && strcmp(w.svid->spiffe_id, ups[j].e->spiffe_id) != 0)
					drop_svid(&w);
				if (w.e->revision != ups[j].e->revision) {
					w.retry_at = 0;
					changed++;
				}
				cache_entry_free(w.e);
				w.e = ups[j].e;
				out[k++] = w;
			}
			i++;
			j++;
		}
	}
	free(s->slots);
	s->slots = out;
	s->n = k;
	if (added || removed || changed)
		log_debug("entries: %zu added, %zu changed, %zu removed, %zu in all", added, changed,
			  removed, k);
}

static void staging_clear(struct entry_set *s)
{
	for (size_t i = 0; i < s->n_staging; i++)
		cache_entry_free(s->staging[i].e);
	s->n_staging = 0;
	s->staging_seq = 0;
}

static void staging_add(struct entry_set *s, struct entry *e)
{
	if (s->n_staging == s->cap_staging) {
		s->cap_staging = s->cap_staging ? s->cap_staging * 2 : 64;
		s->staging = xrealloc(s->staging, s->cap_staging * sizeof(*s->staging));
	}
	s->staging[s->n_staging++] = (struct entry_staged){.e = e, .seq = s->staging_seq++};
}

static void staging_remove(struct entry_set *s, const char *id)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n_staging; i++) {
		if (strcmp(s->staging[i].e->id, id) == 0)
			cache_entry_free(s->staging[i].e);
		else
			s->staging[k++] = s->staging[i];
	}
	s->n_staging = k;
}

enum entry_set_change entry_set_apply(struct entry_set *s, const char *trust_domain,
				      const Lanyard__Node__V1__SyncResponse *m)
{
	if (m->reset) {
		staging_clear(s);
		s->in_snapshot = true;
	}
	if (s->in_snapshot) {
		for (size_t i = 0; i < m->n_upserts; i++) {
			struct entry *e = entry_from_proto(trust_domain, m->upserts[i]);
			if (e)
				staging_add(s, e);
		}
		for (size_t i = 0; i < m->n_removed_ids; i++)
			staging_remove(s, m->removed_ids[i]);
		if (!m->complete)
			return ENTRY_SET_UNCHANGED;
		size_t cnt = sort_staged(s->staging, s->n_staging);
		merge(s, s->staging, cnt, NULL, 0, true);
		s->n_staging = 0;
		s->staging_seq = 0;
		s->in_snapshot = false;
		return ENTRY_SET_SNAPSHOT;
	}
	if (!m->n_upserts && !m->n_removed_ids)
		return ENTRY_SET_UNCHANGED;
	struct entry_staged *ups = xcalloc(m->n_upserts + 1, sizeof(*ups));
	size_t cnt = 0;
	for (size_t i = 0; i < m->n_upserts; i++) {
		struct entry *e = entry_from_proto(trust_domain, m->upserts[i]);
		if (e)
			ups[cnt++] = (struct entry_staged){.e = e, .seq = i};
	}
	cnt = sort_staged(ups, cnt);
	char **rm = xcalloc(m->n_removed_ids + 1, sizeof(char *));
	for (size_t i = 0; i < m->n_removed_ids; i++)
		rm[i] = m->removed_ids[i];
	qsort(rm, m->n_removed_ids, sizeof(char *), strv_cmp);
	merge(s, ups, cnt, rm, m->n_removed_ids, false);
	free(rm);
	free(ups);
	return ENTRY_SET_MERGED;
}

void entry_set_restart(struct entry_set *s)
{
	s->in_snapshot = false;
	staging_clear(s);
}

void entry_set_adopt(struct entry_set *s, struct entry **entries, size_t n_entries,
		     struct svid **svids, size_t n_svids)
{
	s->slots = xcalloc(n_entries + 1, sizeof(*s->slots));
	size_t j = 0;
	for (size_t i = 0; i < n_entries; i++) {
		struct entry_slot *w = &s->slots[s->n++];
		w->e = entries[i];
		entries[i] = NULL;
		while (j < n_svids && strcmp(svids[j]->entry_id, w->e->id) < 0)
			j++;
		if (j < n_svids && strcmp(svids[j]->entry_id, w->e->id) == 0) {
			w->svid = svids[j];
			svids[j++] = NULL;
		}
	}
}

void entry_set_free(struct entry_set *s)
{
	if (!s)
		return;
	staging_clear(s);
	free(s->staging);
	for (size_t i = 0; i < s->n; i++) {
		drop_svid(&s->slots[i]);
		cache_entry_free(s->slots[i].e);
	}
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

bool entry_set_plan(struct entry_set *s, int64_t now, bool synced, int64_t *next_due,
		    int64_t *next_expiry)
{
	int64_t due = INT64_MAX, expiry = INT64_MAX;
	bool dropped = false;
	for (size_t i = 0; i < s->n; i++) {
		struct entry_slot *w = &s->slots[i];
		if (w->svid && w->svid->not_after <= now) {
			log_warnx("X509-SVID %s of entry %s expired before it could be renewed",
				 w->svid->spiffe_id, w->e->id);
			drop_svid(w);
			dropped = true;
		}
		if (w->svid && w->svid->not_after < expiry)
			expiry = w->svid->not_after;
		if (!synced)
			continue;
		int64_t t = w->retry_at > now ? w->retry_at
			    : !w->svid || w->svid->entry_revision != w->e->revision ? now
										    : w->svid->renew_at;
		if (w->svid && w->taint_at && w->taint_at < t && w->retry_at <= now)
			t = w->taint_at;
		if (t < due)
			due = t;
	}
	*next_due = due < expiry ? due : expiry;
	*next_expiry = expiry;
	return dropped;
}

size_t entry_set_list(const struct entry_set *s, int64_t now, bool refs,
		      struct entry ***entries, struct svid ***svids)
{
	struct entry **es = xcalloc(s->n + 1, sizeof(*es));
	struct svid **vs = xcalloc(s->n + 1, sizeof(*vs));
	size_t nv = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct svid *v = s->slots[i].svid;
		es[i] = refs ? cache_entry_ref(s->slots[i].e) : s->slots[i].e;
		if (v && v->not_after > now)
			vs[nv++] = refs ? svid_ref(v) : v;
	}
	*entries = es;
	*svids = vs;
	return nv;
}

bool entry_set_needs_signing(const struct entry_slot *w, int64_t now)
{
	if (w->retry_at > now)
		return false;
	return !w->svid || w->svid->entry_revision != w->e->revision || w->svid->renew_at <= now ||
	       (w->taint_at && w->taint_at <= now);
}

void entry_set_install(struct entry_slot *w, struct svid *v)
{
	drop_svid(w);
	w->svid = v;
	w->retry_at = 0;
	w->taint_at = 0;
}

bool entry_set_signed_by_any(const uint8_t *chain, size_t chain_len, const uint8_t *const *certs,
			     const size_t *lens, size_t n, int64_t now)
{
	const uint8_t **cc = NULL;
	size_t *cl = NULL, nc = 0;
	bool hit = false;
	if (x509_split_der(chain, chain_len, &cc, &cl, &nc) == 0 && nc > 0)
		for (size_t i = 0; i < n && !hit; i++)
			hit = x509_verify(cc[0], cl[0], certs[i], lens[i], now, NULL, 0) == 0;
	free(cc);
	free(cl);
	return hit;
}

size_t entry_set_tainted_left(const struct entry_set *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++)
		n += s->slots[i].svid && s->slots[i].taint_at;
	return n;
}

size_t entry_set_taint(struct entry_set *s, const uint8_t *const *certs, const size_t *lens,
		       size_t n, int64_t now, int64_t window)
{
	size_t hits = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct entry_slot *w = &s->slots[i];
		if (!w->svid || !entry_set_signed_by_any(w->svid->chain, w->svid->chain_len, certs,
							 lens, n, now))
			continue;
		hits++;
		if (w->taint_at && w->taint_at < now + window)
			continue;
		uint32_t r = 0;
		random_bytes(&r, sizeof(r));
		w->taint_at = now + (window > 0 ? (int64_t)(r % (uint64_t)window) : 0);
	}
	return hits;
}

/* A workload key waiting for its certificate. Only its encodings are kept, not the wolfSSL key:
 * an lkey is about 9 KB (room for the largest RSA key) against some 230 bytes here, which
 * matters with a full batch of keys in flight. */
struct batch_key {
	uint8_t *key; /* unencrypted PKCS#8 DER; wiped when freed */
	size_t key_len;
	uint8_t *spki; /* its SubjectPublicKeyInfo DER */
	size_t spki_len;
};

static void batch_key_clear(struct batch_key *k)
{
	if (k->key) {
		secure_zero(k->key, k->key_len);
		free(k->key);
	}
	free(k->spki);
	memset(k, 0, sizeof(*k));
}

/* A new key of the configured type with its CSR; 0, or -1 with nothing allocated. */
static int batch_key_new(enum key_type kt, struct batch_key *bk, uint8_t **csr, size_t *csr_len)
{
	lkey *key = NULL;
	int r = -1;
	*csr = NULL;
	if (lkey_generate(kt, &key) < 0 || x509_csr_create(key, csr, csr_len) < 0 ||
	    lkey_to_pkcs8_der(key, &bk->key, &bk->key_len) < 0 ||
	    lkey_public_der(key, &bk->spki, &bk->spki_len) < 0)
		goto out;
	r = 0;
out:
	lkey_free(key);
	if (r < 0) {
		batch_key_clear(bk);
		free(*csr);
		*csr = NULL;
	}
	return r;
}

/* Whether the certificate's public key is the batch key's. Equal bytes are the rule (the server
 * copies the CSR's key); anything else gets the full comparison, which re-encodes both sides. */
static bool batch_key_matches(const struct batch_key *bk, const struct x509_info *info,
			      const uint8_t *cert, size_t cert_len)
{
	if (info->spki && info->spki_len == bk->spki_len &&
	    memcmp(info->spki, bk->spki, bk->spki_len) == 0)
		return true;
	lkey *key = NULL;
	bool ok = lkey_from_der(bk->key, bk->key_len, &key) == 0 &&
		  lkey_matches_cert(key, cert, cert_len);
	lkey_free(key);
	return ok;
}

/* Checks a signed chain for entry e with the batch key and builds the SVID, which takes the key
 * over. NULL with err on failure. */
static struct svid *make_svid(const struct entry_set_signing *how, const struct entry *e,
			      struct batch_key *bk, const uint8_t *chain, size_t chain_len, char *err,
			      size_t errlen)
{
	struct x509_info info = {0};
	const uint8_t **certs = NULL;
	size_t *lens = NULL, cnt = 0;
	struct svid *v = NULL;
	char why[256];
	if (x509_split_der(chain, chain_len, &certs, &lens, &cnt) < 0 || cnt == 0 ||
	    x509_parse(certs[0], lens[0], &info, why, sizeof(why)) < 0) {
		seterr(err, errlen, "the server returned an unreadable certificate");
		goto out;
	}
	if (info.n_uri_sans != 1 || info.is_ca || strcmp(info.spiffe_id, e->spiffe_id) != 0) {
		seterr(err, errlen, "the server returned a certificate for \"%s\", expected %s",
		       info.spiffe_id, e->spiffe_id);
		goto out;
	}
	if (!batch_key_matches(bk, &info, certs[0], lens[0])) {
		seterr(err, errlen, "the server returned a certificate for another key");
		goto out;
	}
	if (how->bundle && x509_verify(chain, chain_len, how->bundle, how->bundle_len, now_unix(),
				       why, sizeof(why)) < 0) {
		seterr(err, errlen, "the returned certificate does not verify: %s", why);
		goto out;
	}
	v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->key = bk->key;
	v->key_len = bk->key_len;
	bk->key = NULL;
	bk->key_len = 0;
	v->entry_id = xstrdup(e->id);
	v->spiffe_id = xstrdup(e->spiffe_id);
	v->hint = xstrdup(e->hint ? e->hint : "");
	v->chain = xmalloc(chain_len);
	memcpy(v->chain, chain, chain_len);
	v->chain_len = chain_len;
	snprintf(v->serial, sizeof(v->serial), "%s", info.serial);
	v->not_before = info.not_before;
	v->not_after = info.not_after;
	v->renew_at = entry_set_renew_time(how->rotation_fraction, now_unix(), info.not_before,
					   info.not_after);
	v->entry_revision = e->revision;
out:
	x509_info_free(&info);
	free(certs);
	free(lens);
	return v;
}

struct batch_item {
	size_t slot;
	bool have; /* a key and CSR were made */
	struct batch_key key;
	Lanyard__Node__V1__X509SignItem item;
};

struct entry_set_batch {
	size_t cnt;
	struct batch_item *it;
	Lanyard__Node__V1__X509SignItem **itemp; /* the request's items: those with a key */
	size_t n_items;
	int64_t now, retry_at;
};

struct entry_set_batch *entry_set_batch_new(struct entry_set *s, enum key_type kt, size_t max,
					    int64_t now, int64_t retry_at,
					    Lanyard__Node__V1__SignX509Request *req)
{
	size_t *idx = xcalloc((max < s->n ? max : s->n) + 1, sizeof(*idx));
	size_t cnt = 0;
	for (size_t i = 0; i < s->n && cnt < max; i++)
		if (entry_set_needs_signing(&s->slots[i], now))
			idx[cnt++] = i;
	if (cnt == 0) {
		free(idx);
		return NULL;
	}
	struct entry_set_batch *b = xcalloc(1, sizeof(*b));
	b->cnt = cnt;
	b->now = now;
	b->retry_at = retry_at;
	b->it = xcalloc(cnt, sizeof(*b->it));
	b->itemp = xcalloc(cnt, sizeof(*b->itemp));
	for (size_t i = 0; i < cnt; i++) {
		struct batch_item *it = &b->it[i];
		it->slot = idx[i];
		struct entry_slot *w = &s->slots[it->slot];
		uint8_t *csr = NULL;
		size_t csr_len = 0;
		if (batch_key_new(kt, &it->key, &csr, &csr_len) < 0) {
			log_error("cannot create a %s key and CSR for entry %s", key_type_name(kt),
				  w->e->id);
			w->retry_at = retry_at;
			continue;
		}
		it->have = true;
		lanyard__node__v1__x509_sign_item__init(&it->item);
		it->item.entry_id = w->e->id;
		it->item.csr.data = csr;
		it->item.csr.len = csr_len;
		b->itemp[b->n_items++] = &it->item;
	}
	free(idx);
	req->items = b->itemp;
	req->n_items = b->n_items;
	return b;
}

void entry_set_batch_sent(struct entry_set_batch *b)
{
	for (size_t i = 0; i < b->cnt; i++) {
		free(b->it[i].item.csr.data);
		b->it[i].item.csr.data = NULL;
	}
}

void entry_set_batch_retry(struct entry_set *s, struct entry_set_batch *b)
{
	for (size_t i = 0; i < b->cnt; i++)
		s->slots[b->it[i].slot].retry_at = b->retry_at;
}

void entry_set_batch_accept(struct entry_set *s, struct entry_set_batch *b,
			    const Lanyard__Node__V1__SignX509Response *sr,
			    const struct entry_set_signing *how, struct entry_set_minted *out)
{
	char err[512];
	int64_t now = b->now;
	*out = (struct entry_set_minted){0};
	for (size_t i = 0; i < b->cnt; i++) {
		if (!b->it[i].have)
			continue;
		struct entry_slot *w = &s->slots[b->it[i].slot];
		const Lanyard__Node__V1__X509SignResult *res = NULL;
		/* One result per item in order; look further only if the server reordered. */
		if (i < sr->n_results && sr->results[i]->entry_id &&
		    strcmp(sr->results[i]->entry_id, w->e->id) == 0)
			res = sr->results[i];
		for (size_t j = 0; !res && j < sr->n_results; j++)
			if (sr->results[j]->entry_id && strcmp(sr->results[j]->entry_id, w->e->id) == 0)
				res = sr->results[j];
		struct svid *v = NULL;
		if (!res)
			seterr(err, sizeof(err), "the server returned no result for it");
		else if (res->error && *res->error)
			seterr(err, sizeof(err), "%s", res->error);
		else
			v = make_svid(how, w->e, &b->it[i].key, res->svid.data, res->svid.len, err,
				      sizeof(err));
		if (!v) {
			log_error("cannot get an X509-SVID for entry %s (%s): %s", w->e->id,
				  w->e->spiffe_id, err);
			w->retry_at = b->retry_at;
			continue;
		}
		if (w->svid) {
			log_debug("rotated X509-SVID %s of entry %s: serial %s -> %s", v->spiffe_id,
				  w->e->id, w->svid->serial, v->serial);
			int64_t by = now + (w->svid->not_after - now) / 2;
			if (!out->rotated || by < out->persist_by)
				out->persist_by = by;
			out->rotated++;
		} else {
			log_debug("new X509-SVID %s for entry %s, serial %s", v->spiffe_id, w->e->id,
				  v->serial);
		}
		out->minted++;
		entry_set_install(w, v);
	}
}

void entry_set_batch_free(struct entry_set_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->cnt; i++) {
		batch_key_clear(&b->it[i].key);
		free(b->it[i].item.csr.data);
	}
	free(b->it);
	free(b->itemp);
	free(b);
}

/* The window is moved by up to 10% either way (drawn once per SVID) so that a fleet does not
 * renew in the same second. The lifetime counts from issued, the later of notBefore and the
 * time we received the certificate: the server backdates notBefore for clock skew, which would
 * otherwise make short lifetimes renew far too early. */
int64_t entry_set_renew_time(double fraction, int64_t issued, int64_t not_before,
			     int64_t not_after)
{
	if (issued < not_before)
		issued = not_before;
	double life = (double)(not_after - issued);
	if (life < 1)
		life = 1;
	double window = fraction * life;
	uint32_t r = 0;
	random_bytes(&r, sizeof(r));
	double jitter = ((double)r / (double)UINT32_MAX * 2.0 - 1.0) * 0.1 * window;
	return not_after - (int64_t)llround(window + jitter);
}
