/* ca.c: the CA's authorities: load, rotation in time, signing, bundles and the sync with other
 * servers (ca.h); the operator's rotation is in ca_admin.c, the shared state in ca_internal.h. */
#include "ca_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "ca_files.h"
#include "der_pem.h"
#include "log.h"
#include "refcount.h"
#include "signer.h"
#include "util.h"
#include "x509.h"

/* Leaves are backdated this much, as SPIRE does, so a peer whose clock is a little behind
 * accepts them. */
#define BACKDATE_SECONDS 10
/* Shared datastore: the authorities are re-read when the change feed says they changed, and at
 * least this often. */
#define CA_FULL_SYNC_S 10

static void authority_unref(struct authority *a)
{
	if (!a || !ref_put(&a->refs))
		return;
	lkey_free(a->key);
	lkey_free(a->jwt_key);
	free(a->cert);
	free(a->jwt_spki);
	free(a);
}

const char *ca__state_name(int s)
{
	return s == CA_STATE_ACTIVE ? "active" : s == CA_STATE_PREPARED ? "prepared" : "old";
}

static void key_path(const struct ca *ca, const char *id, const char *suffix, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%s.key", ca->key_dir, id, suffix);
}

int ca__record_authority(struct ca *ca, const struct authority *a)
{
	struct ca_record r = {0};
	snprintf(r.id, sizeof(r.id), "%s", a->id);
	r.state = a->state | (a->tainted ? CA_STATE_TAINTED : 0);
	r.cert_der = a->cert;
	r.cert_len = a->cert_len;
	r.jwt_kid = (char *)a->jwt_kid;
	r.jwt_spki = a->jwt_spki;
	r.jwt_spki_len = a->jwt_spki_len;
	r.not_before = a->not_before;
	r.not_after = a->not_after;
	r.created_at = now_unix();
	return ds_ca_put(ca->ds, &r);
}

static int fill_cert_facts(struct authority *a, char *err, size_t errlen)
{
	struct x509_info info;
	if (x509_parse(a->cert, a->cert_len, &info, err, errlen) < 0)
		return -1;
	a->not_before = info.not_before;
	a->not_after = info.not_after;
	memcpy(a->sha256, info.sha256, sizeof(a->sha256));
	x509_info_free(&info);
	return 0;
}

/* Makes a new authority valid from now for ca_ttl (capped by the upstream CA) and writes its
 * keys to disk before it is recorded, so a crash leaves no authority without its key. */
struct authority *ca__authority_create(struct ca *ca, int state, int64_t now, char *err,
					  size_t errlen)
{
	struct authority *a = xcalloc(1, sizeof(*a));
	a->refs = 1;
	a->state = state;
	uint8_t idb[16];
	if (random_bytes(idb, sizeof(idb)) < 0) {
		errorf(err, errlen, "random generator failed");
		goto fail;
	}
	hex_encode(idb, sizeof(idb), a->id);
	/* The signer writes the key files before the authority is recorded, so a crash leaves
	 * no authority without its keys; they are deleted again when a later step fails. */
	if (signer_generate(ca->signer, SIGNER_KIND_X509, a->id, &a->key, err, errlen) < 0)
		goto fail;
	if (signer_generate(ca->signer, SIGNER_KIND_JWT, a->id, &a->jwt_key, err, errlen) < 0)
		goto fail_keys;
	char td_id[300];
	snprintf(td_id, sizeof(td_id), "spiffe://%s", ca->trust_domain);
	int64_t not_after = now + ca->ca_ttl;
	if (ca->upstream_key && not_after > ca->upstream_not_after)
		not_after = ca->upstream_not_after;
	if (not_after <= now) {
		errorf(err, errlen, "the upstream CA certificate has expired");
		goto fail;
	}
	struct x509_ca_params p = {
		.spiffe_id = td_id,
		.common_name = "Lanyard CA",
		.not_before = now - BACKDATE_SECONDS,
		.not_after = not_after,
	};
	if (x509_make_ca(a->key, ca->upstream_key, ca->upstream_cert, ca->upstream_cert_len, &p,
			 &a->cert, &a->cert_len) < 0) {
		errorf(err, errlen, "cannot make the CA certificate");
		goto fail_keys;
	}
	if (fill_cert_facts(a, err, errlen) < 0)
		goto fail_keys;
	if (lkey_public_der(a->jwt_key, &a->jwt_spki, &a->jwt_spki_len) < 0) {
		errorf(err, errlen, "cannot encode the JWT key");
		goto fail_keys;
	}
	char *kid = base64url_encode(idb, 12);
	snprintf(a->jwt_kid, sizeof(a->jwt_kid), "%.64s", kid ? kid : a->id);
	free(kid);
	if (ca__record_authority(ca, a) < 0) {
		errorf(err, errlen, "cannot record the new CA authority in the datastore");
		goto fail_keys;
	}
	char until[32];
	time_format_rfc3339(a->not_after, until, sizeof(until));
	log_info("CA: new %s authority %s (JWT kid %s), valid until %s", ca__state_name(state), a->id,
		 a->jwt_kid, until);
	return a;
fail_keys:
	signer_destroy(ca->signer, a->id);
fail:
	authority_unref(a);
	return NULL;
}

static int authority_load(struct ca *ca, const struct ca_record *r, struct authority **out,
			  char *err, size_t errlen)
{
	struct authority *a = xcalloc(1, sizeof(*a));
	a->refs = 1;
	snprintf(a->id, sizeof(a->id), "%s", r->id);
	a->state = r->state & ~CA_STATE_TAINTED;
	a->tainted = (r->state & CA_STATE_TAINTED) != 0;
	a->cert = xmalloc(r->cert_len);
	if (r->cert_len) /* a corrupt record's empty certificate reads back as NULL */
		memcpy(a->cert, r->cert_der, r->cert_len);
	a->cert_len = r->cert_len;
	snprintf(a->jwt_kid, sizeof(a->jwt_kid), "%.64s", r->jwt_kid ? r->jwt_kid : r->id);
	char path[PATH_MAX], why[256];
	if (fill_cert_facts(a, why, sizeof(why)) < 0) {
		errorf(err, errlen, "the certificate of CA authority %s (in the datastore) does not "
		       "parse: %s", a->id, why);
		goto fail;
	}
	key_path(ca, a->id, "", path, sizeof(path));
	if (signer_load(ca->signer, SIGNER_KIND_X509, a->id, &a->key, err, errlen) < 0)
		goto fail;
	if (!lkey_matches_cert(a->key, a->cert, a->cert_len)) {
		errorf(err, errlen, "key file %s does not match the certificate of CA authority %s",
		       path, a->id);
		goto fail;
	}
	key_path(ca, a->id, ".jwt", path, sizeof(path));
	if (signer_load(ca->signer, SIGNER_KIND_JWT, a->id, &a->jwt_key, err, errlen) < 0)
		goto fail;
	if (lkey_public_der(a->jwt_key, &a->jwt_spki, &a->jwt_spki_len) < 0) {
		errorf(err, errlen, "cannot encode the JWT key of authority %s (%s)", a->id, path);
		goto fail;
	}
	if (r->jwt_spki_len && (r->jwt_spki_len != a->jwt_spki_len ||
				memcmp(r->jwt_spki, a->jwt_spki, a->jwt_spki_len) != 0)) {
		errorf(err, errlen, "key file %s does not match the JWT public key recorded for CA "
		       "authority %s", path, a->id);
		goto fail;
	}
	*out = a;
	return 0;
fail:
	authority_unref(a);
	return -1;
}

void ca__remove_key_files(const struct ca *ca, const char *id)
{
	signer_destroy(ca->signer, id);
}

static int load_upstream(struct ca *ca, const struct ca_options *o, int64_t now, char *err,
			 size_t errlen)
{
	uint8_t *pem = NULL;
	size_t len;
	if (ca_file_check(o->upstream_cert_path, "upstream_ca_cert", false, err, errlen) < 0)
		return -1;
	int r = file_read_all(o->upstream_cert_path, 1 << 20, &pem, &len);
	if (r < 0)
		return errorf(err, errlen, "cannot read upstream_ca_cert %s: %s", o->upstream_cert_path,
			    strerror(-r));
	uint8_t *der = NULL;
	size_t der_len = 0;
	r = pem_decode_concat((const char *)pem, len, "CERTIFICATE", &der, &der_len);
	free(pem);
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	if (r < 0 || der_len == 0 || x509_split_der(der, der_len, &certs, &lens, &n) < 0 || n == 0) {
		free(der);
		free(certs);
		free(lens);
		return errorf(err, errlen, "upstream_ca_cert %s holds no PEM certificate",
			    o->upstream_cert_path);
	}
	/* The first certificate is the upstream CA itself. */
	ca->upstream_cert = xmalloc(lens[0]);
	memcpy(ca->upstream_cert, certs[0], lens[0]);
	ca->upstream_cert_len = lens[0];
	free(der);
	free(certs);
	free(lens);
	struct x509_info info;
	char why[256];
	if (x509_parse(ca->upstream_cert, ca->upstream_cert_len, &info, why, sizeof(why)) < 0)
		return errorf(err, errlen, "upstream_ca_cert %s does not parse: %s",
			      o->upstream_cert_path, why);
	bool is_ca = info.is_ca;
	ca->upstream_not_after = info.not_after;
	x509_info_free(&info);
	if (!is_ca)
		return errorf(err, errlen, "upstream_ca_cert %s is not a CA certificate",
			    o->upstream_cert_path);
	if (ca->upstream_not_after <= now)
		return errorf(err, errlen, "upstream_ca_cert %s has expired", o->upstream_cert_path);
	if (signer_load(ca->signer, SIGNER_KIND_UPSTREAM, NULL, &ca->upstream_key, err, errlen) < 0)
		return -1;
	if (!lkey_matches_cert(ca->upstream_key, ca->upstream_cert, ca->upstream_cert_len))
		return errorf(err, errlen, "upstream_ca_key %s does not match upstream_ca_cert %s",
			    o->upstream_key_path, o->upstream_cert_path);
	return 0;
}

static void peers_free(struct peer *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].cert);
		free(v[i].jwt_spki);
	}
	free(v);
}

static void peer_from_record(struct peer *p, const struct ca_record *r)
{
	snprintf(p->id, sizeof(p->id), "%s", r->id);
	p->cert = xmalloc(r->cert_len ? r->cert_len : 1);
	if (r->cert_len)
		memcpy(p->cert, r->cert_der, r->cert_len);
	p->cert_len = r->cert_len;
	snprintf(p->jwt_kid, sizeof(p->jwt_kid), "%.64s", r->jwt_kid ? r->jwt_kid : r->id);
	if (r->jwt_spki_len) {
		p->jwt_spki = xmalloc(r->jwt_spki_len);
		memcpy(p->jwt_spki, r->jwt_spki, r->jwt_spki_len);
		p->jwt_spki_len = r->jwt_spki_len;
	}
	p->state = r->state & ~CA_STATE_TAINTED;
	p->tainted = (r->state & CA_STATE_TAINTED) != 0;
	/* Active and tainted: a taint that raced its server's activation. It signs nothing any
	 * more (its server retires it on its next sync), so it is not listed as active. */
	if (p->tainted && p->state == CA_STATE_ACTIVE)
		p->state = CA_STATE_OLD;
	p->not_before = r->not_before;
	p->not_after = r->not_after;
}

/* Another server's record: shared mode, and no key of ours for it. */
static bool is_peer_record(const struct ca *ca, const struct ca_record *r)
{
	if (!ca->shared)
		return false;
	char path[PATH_MAX];
	key_path(ca, r->id, "", path, sizeof(path));
	return access(path, F_OK) != 0;
}

/* Another server's certificate goes into the bundle as it is: a record without a CA certificate
 * (a corrupt row) would make the whole bundle unusable for agents, so it is left out. */
static bool peer_cert_usable(const struct ca_record *r)
{
	struct x509_info info;
	if (x509_parse(r->cert_der, r->cert_len, &info, NULL, 0) < 0)
		return false;
	bool ok = info.is_ca;
	x509_info_free(&info);
	return ok;
}

/* The bundle sequence moves past every value any server wrote: agents switching servers never
 * see it go back for a newer set. */
void ca__bump_sequence(struct ca *ca)
{
	int64_t stored = 0;
	if (ds_kv_get_int(ca->ds, "bundle_sequence", &stored) == 0 && stored > ca->sequence)
		ca->sequence = stored;
	ca->sequence++;
	ds_kv_set_int(ca->ds, "bundle_sequence", ca->sequence);
}

static bool own_id(const struct ca *ca, const char *id)
{
	for (size_t i = 0; i < ca->n_auth; i++)
		if (strcmp(ca->auth[i]->id, id) == 0)
			return true;
	return false;
}

void ca__drop_authority_at(struct ca *ca, size_t i)
{
	struct authority *a = ca->auth[i];
	memmove(&ca->auth[i], &ca->auth[i + 1], (ca->n_auth - i - 1) * sizeof(*ca->auth));
	ca->n_auth--;
	authority_unref(a);
}

/* Shared datastore, under the lock: an operator on another server may have tainted or revoked
 * one of this server's authorities. True when the bundle changed. The active authority is never
 * dropped here (taint refuses it, so it cannot be revoked). */
static bool sync_own_locked(struct ca *ca, struct ca_record **recs, size_t n)
{
	bool changed = false;
	for (size_t i = 0; i < ca->n_auth;) {
		struct authority *a = ca->auth[i];
		const struct ca_record *r = NULL;
		for (size_t j = 0; j < n && !r; j++)
			if (strcmp(recs[j]->id, a->id) == 0)
				r = recs[j];
		if (!r && a->state != CA_STATE_ACTIVE && a->tainted) {
			log_info("CA: authority %s was revoked (on another server)", a->id);
			ca__remove_key_files(ca, a->id);
			ca__drop_authority_at(ca, i);
			changed = true;
			continue;
		}
		if (r && (r->state & CA_STATE_TAINTED) && !a->tainted) {
			log_warnx("CA: authority %s was tainted (on another server)", a->id);
			a->tainted = true;
			changed = true;
		}
		i++;
	}
	return changed;
}

int ca_sync(struct ca *ca, int64_t now)
{
	if (!ca->shared)
		return 0;
	int64_t gen = ds_bundle_generation(ca->ds);
	if (gen == ca->synced_gen && now < ca->next_full_sync)
		return 0;
	struct ca_record **recs = NULL;
	size_t n = 0;
	if (ds_ca_list(ca->ds, &recs, &n) < 0)
		return -1;
	ca->synced_gen = gen;
	ca->next_full_sync = now + CA_FULL_SYNC_S;
	struct peer *v = xcalloc(n + 1, sizeof(*v));
	size_t len = 0;
	pthread_mutex_lock(&ca->lock);
	for (size_t i = 0; i < n; i++) {
		/* A corrupt record was logged by ca_open, or is left out quietly on every sync. */
		if (own_id(ca, recs[i]->id) || !peer_cert_usable(recs[i]))
			continue;
		if (now >= recs[i]->not_after) {
			/* Expired: nothing it signed is valid any more (its server may be gone);
			 * deleted below, outside the lock. */
			recs[i]->state = -1;
			continue;
		}
		peer_from_record(&v[len++], recs[i]);
	}
	bool same = len == ca->n_peers;
	for (size_t i = 0; same && i < len; i++)
		same = strcmp(v[i].id, ca->peers[i].id) == 0 && v[i].tainted == ca->peers[i].tainted;
	bool own_changed = sync_own_locked(ca, recs, n);
	int ret = 0;
	if (own_changed) {
		/* A taint may have hit the active authority (racing its activation): the rotation
		 * retires it and puts another one in its place now, not at the next scheduled step. */
		char err[256];
		int r = ca__rotate_locked(ca, now, err, sizeof(err));
		if (r < 0)
			log_error("CA rotation after a taint failed (will retry): %s", err);
		ret = (r > 0 ? r : 0) | (same ? CA_CHANGED_BUNDLE : 0);
		if (same)
			ca__bump_sequence(ca);
	}
	if (!same) {
		peers_free(ca->peers, ca->n_peers);
		ca->peers = v;
		ca->n_peers = len;
		v = NULL;
		ca__bump_sequence(ca);
		log_info("CA: the bundle now holds %zu authorities of other servers", len);
		ret |= CA_CHANGED_BUNDLE;
	}
	pthread_mutex_unlock(&ca->lock);
	for (size_t i = 0; i < n; i++)
		if (recs[i]->state == -1)
			ds_ca_delete(ca->ds, recs[i]->id);
	if (v)
		peers_free(v, len);
	ca_record_array_free(recs, n);
	return ret;
}

int ca_open(const struct ca_options *o, struct datastore *ds, int64_t now, struct ca **out,
	    char *err, size_t errlen)
{
	struct ca *ca = xcalloc(1, sizeof(*ca));
	pthread_mutex_init(&ca->lock, NULL);
	ca->ds = ds;
	ca->signer = o->signer;
	ca->shared = o->shared;
	ca->trust_domain = xstrdup(o->trust_domain);
	ca->jwt_issuer = o->jwt_issuer ? xstrdup(o->jwt_issuer) : NULL;
	ca->key_type = o->key_type;
	ca->ca_ttl = o->ca_ttl;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/ca", o->data_dir);
	ca->key_dir = xstrdup(dir);
	int r = mkdir_p(dir, 0700);
	if (r < 0) {
		errorf(err, errlen, "cannot create %s: %s", dir, strerror(-r));
		goto fail;
	}
	if (ca_key_dir_check(dir, err, errlen) < 0)
		goto fail;
	if (!ca->signer) {
		struct signer_options so = { .key_dir = dir, .upstream_key_path = o->upstream_key_path,
					     .key_type = o->key_type, .channels = 4 };
		if (signer_start(&so, &ca->signer, err, errlen) < 0)
			goto fail;
		ca->own_signer = true;
	}
	if (o->upstream_cert_path && load_upstream(ca, o, now, err, errlen) < 0)
		goto fail;

	struct ca_record **recs = NULL;
	size_t n = 0;
	if (ds_ca_list(ds, &recs, &n) < 0) {
		errorf(err, errlen, "cannot read CA authorities from the datastore");
		goto fail;
	}
	ca->auth = xcalloc(n + 3, sizeof(*ca->auth));
	ca->peers = xcalloc(n + 1, sizeof(*ca->peers));
	for (size_t i = 0; i < n; i++) {
		if (is_peer_record(ca, recs[i])) {
			if (!peer_cert_usable(recs[i]))
				log_warnx("CA: ignoring authority %s of another server: its record in "
					  "the datastore holds no CA certificate", recs[i]->id);
			else if (now < recs[i]->not_after)
				peer_from_record(&ca->peers[ca->n_peers++], recs[i]);
			continue;
		}
		if (authority_load(ca, recs[i], &ca->auth[ca->n_auth], err, errlen) < 0) {
			ca_record_array_free(recs, n);
			goto fail;
		}
		ca->n_auth++;
	}
	ca_record_array_free(recs, n);
	if (ds_kv_get_int(ds, "bundle_sequence", &ca->sequence) < 0)
		ca->sequence = 0;
	if (ca_rotate(ca, now, err, errlen) < 0)
		goto fail;
	*out = ca;
	return 0;
fail:
	ca_close(ca);
	return -1;
}

void ca_close(struct ca *ca)
{
	if (!ca)
		return;
	for (size_t i = 0; i < ca->n_auth; i++)
		authority_unref(ca->auth[i]);
	free(ca->auth);
	peers_free(ca->peers, ca->n_peers);
	lkey_free(ca->upstream_key);
	free(ca->upstream_cert);
	free(ca->trust_domain);
	free(ca->jwt_issuer);
	free(ca->key_dir);
	if (ca->own_signer)
		signer_stop(ca->signer);
	pthread_mutex_destroy(&ca->lock);
	free(ca);
}

/* A tainted authority is never activated, so it never counts as the prepared one either. */
struct authority *ca__find_state(struct ca *ca, int state)
{
	for (size_t i = 0; i < ca->n_auth; i++)
		if (ca->auth[i]->state == state && !ca->auth[i]->tainted)
			return ca->auth[i];
	return NULL;
}

void ca__add_authority(struct ca *ca, struct authority *a)
{
	ca->auth = xrealloc(ca->auth, (ca->n_auth + 1) * sizeof(*ca->auth));
	ca->auth[ca->n_auth++] = a;
}

int ca__store_state(struct ca *ca, struct authority *a)
{
	int st = a->state | (a->tainted ? CA_STATE_TAINTED : 0);
	int ret = ds_ca_set_state(ca->ds, a->id, &st);
	if (ret == -ENOENT) {
		log_warnx("CA: authority %s is gone from the datastore (revoked, or expired and "
			  "dropped, by another server): "
			  "it never signs again", a->id);
		st = CA_STATE_OLD | CA_STATE_TAINTED;
	} else if (ret < 0) {
		return ret;
	} else if ((st & CA_STATE_TAINTED) && !a->tainted) {
		log_warnx("CA: authority %s was tainted on another server (its record says so as "
			  "this server writes it)", a->id);
	}
	a->state = st & ~CA_STATE_TAINTED;
	a->tainted = (st & CA_STATE_TAINTED) != 0;
	return 0;
}

int ca__set_state(struct ca *ca, struct authority *a, int state)
{
	a->state = state;
	return ca__store_state(ca, a);
}

static int64_t at_fraction(const struct authority *a, int num, int den)
{
	return a->not_before + (a->not_after - a->not_before) * num / den;
}

/* A tainted authority never signs: one still marked active (in a shared datastore, a taint
 * by another server that raced this one's activation) is recorded as old, so no listing shows
 * it as a second active authority; the rotation then activates or makes another. */
static int retire_tainted_active_locked(struct ca *ca, char *err, size_t errlen)
{
	int changed = 0;
	for (size_t i = 0; i < ca->n_auth; i++) {
		struct authority *a = ca->auth[i];
		if (a->state != CA_STATE_ACTIVE || !a->tainted)
			continue;
		log_warnx("CA: authority %s is active and tainted (a taint racing its activation): "
			  "it no longer signs and is now old", a->id);
		if (ca__set_state(ca, a, CA_STATE_OLD) < 0)
			return errorf(err, errlen, "cannot record tainted authority %s as old", a->id);
		changed |= CA_CHANGED_ACTIVE | CA_CHANGED_BUNDLE;
	}
	return changed;
}

/* The rotation steps, under the lock. */
int ca__rotate_locked(struct ca *ca, int64_t now, char *err, size_t errlen)
{
	int changed = retire_tainted_active_locked(ca, err, errlen);
	if (changed < 0)
		return -1;
	struct authority *active = ca__find_state(ca, CA_STATE_ACTIVE);
	struct authority *prepared = ca__find_state(ca, CA_STATE_PREPARED);

	/* Activate the prepared authority at five sixths of the active one's life, or at once when
	 * the active one is gone or has expired (a server that was down for long). */
	if (prepared && (!active || now >= at_fraction(active, 5, 6) || now >= active->not_after)) {
		if (active && ca__set_state(ca, active, CA_STATE_OLD) < 0)
			return errorf(err, errlen, "cannot record the CA rotation");
		if (ca__set_state(ca, prepared, CA_STATE_ACTIVE) < 0 ||
		    retire_tainted_active_locked(ca, err, errlen) < 0)
			return errorf(err, errlen, "cannot record the CA rotation");
		/* Another server's taint or revocation that raced the activation: the stored
		 * record wins, the authority is retired and another one made below. */
		bool took = prepared->state == CA_STATE_ACTIVE && !prepared->tainted;
		if (took)
			log_info("CA: authority %s is now active%s%s", prepared->id,
				 active ? ", replacing " : "", active ? active->id : "");
		active = took ? prepared : NULL;
		prepared = NULL;
		changed |= CA_CHANGED_ACTIVE | (took ? 0 : CA_CHANGED_BUNDLE);
	}
	if (!active || now >= active->not_after) {
		if (active && ca__set_state(ca, active, CA_STATE_OLD) < 0)
			return errorf(err, errlen, "cannot record the CA rotation");
		struct authority *a = ca__authority_create(ca, CA_STATE_ACTIVE, now, err, errlen);
		if (!a)
			return -1;
		ca__add_authority(ca, a);
		active = a;
		changed |= CA_CHANGED_ACTIVE | CA_CHANGED_BUNDLE;
	}
	/* Prepare the next authority at half the active one's life: it enters the bundle now, so
	 * every agent and workload trusts it before it signs anything. */
	if (!prepared && now >= at_fraction(active, 1, 2)) {
		struct authority *a = ca__authority_create(ca, CA_STATE_PREPARED, now, err, errlen);
		if (!a)
			return -1;
		ca__add_authority(ca, a);
		changed |= CA_CHANGED_BUNDLE;
	}
	/* Drop old (and tainted prepared) authorities once expired: nothing they signed can still
	 * be valid, since every leaf's notAfter is capped at its issuer's. */
	for (size_t i = 0; i < ca->n_auth;) {
		struct authority *a = ca->auth[i];
		if (a != active && now >= a->not_after) {
			if (ds_ca_delete(ca->ds, a->id) < 0 && 0)
				return -1;
			ca__remove_key_files(ca, a->id);
			log_info("CA: authority %s expired and left the bundle", a->id);
			memmove(&ca->auth[i], &ca->auth[i + 1], (ca->n_auth - i - 1) * sizeof(*ca->auth));
			ca->n_auth--;
			authority_unref(a);
			changed |= CA_CHANGED_BUNDLE;
			continue;
		}
		i++;
	}
	if (changed & CA_CHANGED_BUNDLE)
		ca__bump_sequence(ca);
	return changed;
}

int ca_rotate(struct ca *ca, int64_t now, char *err, size_t errlen)
{
	pthread_mutex_lock(&ca->lock);
	int r = ca__rotate_locked(ca, now, err, errlen);
	pthread_mutex_unlock(&ca->lock);
	return r;
}

int64_t ca_next_rotation(struct ca *ca)
{
	pthread_mutex_lock(&ca->lock);
	int64_t next = INT64_MAX;
	struct authority *active = ca__find_state(ca, CA_STATE_ACTIVE);
	if (!active)
		next = 0; /* a rotation that failed, or a retired tainted one: rotate now */
	if (active) {
		if (ca__find_state(ca, CA_STATE_PREPARED))
			next = at_fraction(active, 5, 6);
		else
			next = at_fraction(active, 1, 2);
		if (active->not_after < next)
			next = active->not_after;
	}
	for (size_t i = 0; i < ca->n_auth; i++)
		if (ca->auth[i] != active && ca->auth[i]->not_after < next)
			next = ca->auth[i]->not_after;
	pthread_mutex_unlock(&ca->lock);
	return next;
}

static struct authority *active_ref(struct ca *ca)
{
	pthread_mutex_lock(&ca->lock);
	struct authority *a = ca__find_state(ca, CA_STATE_ACTIVE);
	if (a)
		ref_get(&a->refs);
	pthread_mutex_unlock(&ca->lock);
	return a;
}

static void req_fail(struct ca_x509_req *r, const char *msg)
{
	r->status = -1;
	snprintf(r->err, sizeof(r->err), "%s", msg);
}

/* One ca_sign_x509_batch: the authority (referenced), its parsed certificate, and per request
 * the body to sign and its digest. */
struct batch {
	struct ca *ca;
	struct authority *a;
	struct x509_issuer *iss;
	struct ca_x509_req *reqs;
	size_t n, dlen;
	uint8_t **tbs;
	size_t *tbs_len;
	uint8_t (*digests)[LKEY_DIGEST_MAX];
};

/* The body of request i's leaf and its digest, or the request failed. */
static void leaf_prepare(struct batch *b, size_t i, int64_t now)
{
	struct ca_x509_req *r = &b->reqs[i];
	struct x509_leaf_params p = {
		.spiffe_id = r->spiffe_id,
		.dns_names = r->dns_names,
		.n_dns = r->n_dns,
		.not_before = now - BACKDATE_SECONDS,
		.not_after = now + r->ttl,
		.spki = r->spki,
		.spki_len = r->spki_len,
	};
	if (p.not_after > b->a->not_after)
		p.not_after = b->a->not_after;
	r->not_after = p.not_after;
	if (p.not_after <= now)
		req_fail(r, "the active CA authority has expired");
	else if (x509_leaf_tbs(b->iss, &p, &b->tbs[i], &b->tbs_len[i]) < 0 ||
		 lkey_cert_digest(b->a->key, b->tbs[i], b->tbs_len[i], b->digests[i], &b->dlen) < 0)
		req_fail(r, "signing failed");
}

/* Request i's signed leaf, followed by the authority when it is an intermediate (upstream
 * mode), which peers need in the chain. Takes the body. */
static void leaf_finish(struct batch *b, size_t i, const uint8_t *sig, size_t siglen)
{
	struct ca_x509_req *r = &b->reqs[i];
	uint8_t *leaf;
	size_t leaf_len;
	int rc = x509_leaf_finish(b->iss, b->tbs[i], b->tbs_len[i], sig, siglen, &leaf, &leaf_len);
	b->tbs[i] = NULL;
	if (rc < 0) {
		req_fail(r, "signing failed");
		return;
	}
	size_t extra = b->ca->upstream_key ? b->a->cert_len : 0;
	if (extra) {
		leaf = xrealloc(leaf, leaf_len + extra);
		memcpy(leaf + leaf_len, b->a->cert, b->a->cert_len);
	}
	r->chain = leaf;
	r->chain_len = leaf_len + extra;
}

/* Signs every prepared body in one lkey_sign_digests call; returns how many leaves were made. */
static size_t sign_prepared(struct batch *b)
{
	size_t n = b->n, m = 0, ok = 0;
	const uint8_t **dp = xcalloc(n + 1, sizeof(*dp));
	uint8_t (*sigs)[LKEY_SIG_MAX] = xcalloc(n + 1, sizeof(*sigs));
	size_t *siglens = xcalloc(n + 1, sizeof(*siglens)), *idx = xcalloc(n + 1, sizeof(*idx));
	for (size_t i = 0; i < n; i++)
		if (b->reqs[i].status == 0) {
			idx[m] = i;
			dp[m++] = b->digests[i];
		}
	int r = m ? lkey_sign_digests(b->a->key, m, dp, b->dlen, sigs, siglens) : 0;
	for (size_t j = 0; j < m; j++) {
		if (r < 0)
			req_fail(&b->reqs[idx[j]], "signing failed");
		else
			leaf_finish(b, idx[j], sigs[j], siglens[j]);
		ok += b->reqs[idx[j]].status == 0;
	}
	free(dp);
	free(sigs);
	free(siglens);
	free(idx);
	return ok;
}

size_t ca_sign_x509_batch(struct ca *ca, struct ca_x509_req *reqs, size_t n, int64_t now)
{
	struct batch b = { .ca = ca, .reqs = reqs, .n = n, .a = active_ref(ca) };
	size_t ok = 0;
	/* Once per batch, not per leaf: the authority's certificate is parsed (and checked to be
	 * of its key). */
	if (b.a)
		b.iss = x509_issuer_new(b.a->key, b.a->cert, b.a->cert_len);
	for (size_t i = 0; i < n; i++) {
		reqs[i] = (struct ca_x509_req){ .spiffe_id = reqs[i].spiffe_id,
						.dns_names = reqs[i].dns_names,
						.n_dns = reqs[i].n_dns, .spki = reqs[i].spki,
						.spki_len = reqs[i].spki_len, .ttl = reqs[i].ttl };
		if (!b.iss)
			req_fail(&reqs[i], b.a ? "signing failed" : "no active CA authority");
	}
	if (!b.iss)
		goto out;
	b.tbs = xcalloc(n + 1, sizeof(*b.tbs));
	b.tbs_len = xcalloc(n + 1, sizeof(*b.tbs_len));
	b.digests = xcalloc(n + 1, sizeof(*b.digests));
	for (size_t i = 0; i < n; i++)
		if (reqs[i].status == 0)
			leaf_prepare(&b, i, now);
	ok = sign_prepared(&b);
	for (size_t i = 0; i < n; i++)
		free(b.tbs[i]);
	free(b.tbs);
	free(b.tbs_len);
	free(b.digests);
out:
	x509_issuer_free(b.iss);
	authority_unref(b.a);
	return ok;
}

int ca_sign_x509(struct ca *ca, const char *spiffe_id, const char *const *dns_names, size_t n_dns,
		 const uint8_t *spki, size_t spki_len, int64_t ttl, int64_t now, uint8_t **chain,
		 size_t *chain_len, int64_t *not_after, char *err, size_t errlen)
{
	struct ca_x509_req r = { .spiffe_id = spiffe_id, .dns_names = dns_names, .n_dns = n_dns,
				 .spki = spki, .spki_len = spki_len, .ttl = ttl };
	if (ca_sign_x509_batch(ca, &r, 1, now) != 1)
		return errorf(err, errlen, "%s", r.err);
	*chain = r.chain;
	*chain_len = r.chain_len;
	if (not_after)
		*not_after = r.not_after;
	return 0;
}

int ca_sign_jwt(struct ca *ca, const char *sub, const char *const *aud, size_t n_aud, int64_t ttl,
		int64_t now, char **token, int64_t *exp, char *err, size_t errlen)
{
	struct authority *a = active_ref(ca);
	if (!a)
		return errorf(err, errlen, "no active CA authority");
	int64_t e = now + ttl;
	if (e > a->not_after)
		e = a->not_after;
	int r = jwt_sign_iss(a->jwt_key, a->jwt_kid, ca->jwt_issuer, sub, aud, n_aud, now, e, token);
	authority_unref(a);
	if (r < 0)
		return errorf(err, errlen, "JWT signing failed");
	if (exp)
		*exp = e;
	return 0;
}

static void add_tainted(struct ca_bundle *out, const char *id, const uint8_t *cert, size_t len,
			const char *kid)
{
	struct ca_tainted *t = &out->tainted[out->n_tainted++];
	snprintf(t->id, sizeof(t->id), "%s", id);
	t->cert = xmalloc(len ? len : 1);
	memcpy(t->cert, cert, len);
	t->cert_len = len;
	snprintf(t->jwt_kid, sizeof(t->jwt_kid), "%s", kid);
}

static void bundle_tainted_locked(struct ca *ca, struct ca_bundle *out)
{
	out->tainted = xcalloc(ca->n_auth + ca->n_peers + 1, sizeof(*out->tainted));
	for (size_t i = 0; i < ca->n_auth; i++) {
		const struct authority *a = ca->auth[i];
		if (a->tainted)
			add_tainted(out, a->id, a->cert, a->cert_len, a->jwt_kid);
	}
	for (size_t i = 0; i < ca->n_peers; i++) {
		const struct peer *p = &ca->peers[i];
		if (p->tainted)
			add_tainted(out, p->id, p->cert, p->cert_len, p->jwt_kid);
	}
}

int ca_bundle_get(struct ca *ca, struct ca_bundle *out)
{
	memset(out, 0, sizeof(*out));
	out->jwt = jwks_new();
	pthread_mutex_lock(&ca->lock);
	size_t total = 0;
	for (size_t i = 0; i < ca->n_auth; i++)
		total += ca->auth[i]->cert_len;
	for (size_t i = 0; i < ca->n_peers; i++)
		total += ca->peers[i].cert_len;
	out->jwt_expires_at = xcalloc(ca->n_auth + ca->n_peers + 1, sizeof(int64_t));
	if (ca->upstream_key) {
		/* The upstream CA is the root every peer trusts; our authorities are intermediates
		 * that travel in the SVID chains. */
		out->x509 = xmalloc(ca->upstream_cert_len);
		memcpy(out->x509, ca->upstream_cert, ca->upstream_cert_len);
		out->x509_len = ca->upstream_cert_len;
	} else {
		out->x509 = xmalloc(total ? total : 1);
		for (size_t i = 0; i < ca->n_auth; i++) {
			memcpy(out->x509 + out->x509_len, ca->auth[i]->cert, ca->auth[i]->cert_len);
			out->x509_len += ca->auth[i]->cert_len;
		}
		for (size_t i = 0; i < ca->n_peers; i++) {
			memcpy(out->x509 + out->x509_len, ca->peers[i].cert, ca->peers[i].cert_len);
			out->x509_len += ca->peers[i].cert_len;
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < ca->n_auth; i++) {
		struct authority *a = ca->auth[i];
		if (jwks_add(out->jwt, a->jwt_kid, a->jwt_spki, a->jwt_spki_len) == 0)
			out->jwt_expires_at[k++] = a->not_after;
	}
	for (size_t i = 0; i < ca->n_peers; i++) {
		const struct peer *p = &ca->peers[i];
		if (p->jwt_spki && jwks_add(out->jwt, p->jwt_kid, p->jwt_spki, p->jwt_spki_len) == 0)
			out->jwt_expires_at[k++] = p->not_after;
	}
	out->sequence = ca->sequence;
	bundle_tainted_locked(ca, out);
	pthread_mutex_unlock(&ca->lock);
	return 0;
}

void ca_bundle_free(struct ca_bundle *b)
{
	if (!b)
		return;
	free(b->x509);
	jwks_free(b->jwt);
	free(b->jwt_expires_at);
	for (size_t i = 0; i < b->n_tainted; i++)
		free(b->tainted[i].cert);
	free(b->tainted);
	memset(b, 0, sizeof(*b));
}

int64_t ca_bundle_sequence(struct ca *ca)
{
	pthread_mutex_lock(&ca->lock);
	int64_t s = ca->sequence;
	pthread_mutex_unlock(&ca->lock);
	return s;
}

int ca_authorities(struct ca *ca, struct ca_authority_info **out, size_t *n)
{
	pthread_mutex_lock(&ca->lock);
	*out = xcalloc(ca->n_auth + 1, sizeof(**out));
	*n = ca->n_auth;
	for (size_t i = 0; i < ca->n_auth; i++) {
		struct authority *a = ca->auth[i];
		struct ca_authority_info *o = &(*out)[i];
		snprintf(o->id, sizeof(o->id), "%s", a->id);
		o->state = ca__state_name(a->state);
		o->not_before = a->not_before;
		o->not_after = a->not_after;
		memcpy(o->sha256, a->sha256, sizeof(o->sha256));
		snprintf(o->jwt_kid, sizeof(o->jwt_kid), "%s", a->jwt_kid);
		o->tainted = a->tainted;
	}
	pthread_mutex_unlock(&ca->lock);
	return 0;
}
