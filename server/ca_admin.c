/* ca_admin.c: the operator's rotation of the CA (ca.h: ca_prepare, ca_activate, ca_taint,
 * ca_tainted_check, ca_revoke, ca_authorities_json), on the state of ca_internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_internal.h"
#include "der_pem.h"
#include "log.h"
#include "util.h"
#include "x509.h"

/* ---- the operator's rotation (admin API) ---- */

static struct authority *find_own(struct ca *ca, const char *id)
{
	for (size_t i = 0; i < ca->n_auth; i++)
		if (strcmp(ca->auth[i]->id, id) == 0)
			return ca->auth[i];
	return NULL;
}

static struct peer *find_peer(struct ca *ca, const char *id)
{
	for (size_t i = 0; i < ca->n_peers; i++)
		if (strcmp(ca->peers[i].id, id) == 0)
			return &ca->peers[i];
	return NULL;
}

int ca_prepare(struct ca *ca, int64_t now, char id_out[65], char *err, size_t errlen)
{
	pthread_mutex_lock(&ca->lock);
	int ret = -EEXIST;
	struct authority *p = ca__find_state(ca, CA_STATE_PREPARED);
	if (p) {
		errorf(err, errlen, "authority %s is already prepared (activate it with "
		       "\"authority activate --id %s\")", p->id, p->id);
		goto out;
	}
	ret = -EIO;
	p = ca__authority_create(ca, CA_STATE_PREPARED, now, err, errlen);
	if (!p)
		goto out;
	ca__add_authority(ca, p);
	ca__bump_sequence(ca);
	snprintf(id_out, 65, "%s", p->id);
	ret = CA_CHANGED_BUNDLE;
out:
	pthread_mutex_unlock(&ca->lock);
	return ret;
}

/* Not one of ours: the operator asked the wrong server, or a typo. */
static int not_own(struct ca *ca, const char *id, const char *verb, char *err, size_t errlen)
{
	if (find_peer(ca, id)) {
		errorf(err, errlen, "authority %s belongs to another server sharing this database: "
		       "%s it there", id, verb);
		return -EXDEV;
	}
	errorf(err, errlen, "unknown authority ID \"%s\" (see \"authority show\")", id);
	return -ENOENT;
}

int ca_activate(struct ca *ca, const char *id, char *err, size_t errlen)
{
	pthread_mutex_lock(&ca->lock);
	int ret;
	struct authority *a = find_own(ca, id);
	if (!a) {
		ret = not_own(ca, id, "activate", err, errlen);
		goto out;
	}
	ret = -EBUSY;
	if (a->tainted) {
		errorf(err, errlen, "authority %s is tainted: it can never become active again", id);
		goto out;
	}
	if (a->state != CA_STATE_PREPARED) {
		errorf(err, errlen, "authority %s is %s, not prepared: only a prepared authority can "
		       "be activated (\"authority prepare\" makes one)", id, ca__state_name(a->state));
		goto out;
	}
	ret = -EIO;
	struct authority *active = ca__find_state(ca, CA_STATE_ACTIVE);
	if ((active && ca__set_state(ca, active, CA_STATE_OLD) < 0) ||
	    ca__set_state(ca, a, CA_STATE_ACTIVE) < 0) {
		errorf(err, errlen, "cannot record the activation in the datastore");
		goto out;
	}
	if (a->state != CA_STATE_ACTIVE || a->tainted) {
		/* Another server's taint or revocation raced the activation: the stored record
		 * wins; the rotation retires it and makes a new active authority at once. */
		char rerr[256];
		int r = ca__rotate_locked(ca, now_unix(), rerr, sizeof(rerr));
		if (r < 0)
			log_error("CA rotation after a raced activation failed (will retry): %s", rerr);
		errorf(err, errlen, "authority %s was tainted or revoked on another server as it was "
		       "activated: it never signs; %s", id,
		       r < 0 ? "making a new active authority failed (the rotation retries)"
			     : "a new authority is active instead");
		ret = -ESTALE;
		goto out;
	}
	log_info("CA: authority %s is now active (operator)%s%s", id, active ? ", replacing " : "",
		 active ? active->id : "");
	ca__bump_sequence(ca);
	ret = CA_CHANGED_ACTIVE | CA_CHANGED_BUNDLE;
out:
	pthread_mutex_unlock(&ca->lock);
	return ret;
}

/* Another server's authority: the flag goes into its record, which that server and every other
 * one read back on their next sync. */
static int taint_peer(struct ca *ca, const char *id, char *err, size_t errlen)
{
	struct ca_record **recs = NULL;
	size_t n = 0;
	if (ds_ca_list(ca->ds, &recs, &n) < 0) {
		errorf(err, errlen, "cannot read the authorities from the datastore");
		return -EIO;
	}
	int ret = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		struct ca_record *r = recs[i];
		if (strcmp(r->id, id) != 0)
			continue;
		if ((r->state & ~CA_STATE_TAINTED) == CA_STATE_ACTIVE) {
			errorf(err, errlen, "authority %s is the active authority of another server: "
			       "prepare and activate a new one there first", id);
			ret = -EBUSY;
		} else {
			/* Merged into the stored record: a state its server wrote since the listing
			 * is kept (an activation: that server retires the authority on its sync). */
			int st = r->state | CA_STATE_TAINTED;
			ret = ds_ca_set_state(ca->ds, id, &st);
			ret = ret == -ENOENT ? 0 : ret < 0 ? -EIO : 0; /* revoked meanwhile */
			if (ret < 0)
				errorf(err, errlen, "cannot record the taint in the datastore");
		}
		break;
	}
	if (ret == -ENOENT)
		errorf(err, errlen, "unknown authority ID \"%s\" (see \"authority show\")", id);
	ca_record_array_free(recs, n);
	return ret;
}

int ca_taint(struct ca *ca, const char *id, char *err, size_t errlen)
{
	pthread_mutex_lock(&ca->lock);
	int ret = 0;
	struct authority *a = find_own(ca, id);
	struct peer *p = a ? NULL : find_peer(ca, id);
	if (!a && !p) {
		ret = not_own(ca, id, "taint", err, errlen);
		goto out;
	}
	if ((a && a->tainted) || (p && p->tainted))
		goto out; /* already: nothing changes */
	if (a && a->state == CA_STATE_ACTIVE) {
		errorf(err, errlen, "authority %s is active: prepare and activate a new authority "
		       "first (\"authority prepare\", then \"authority activate\"), then taint %s",
		       id, id);
		ret = -EBUSY;
		goto out;
	}
	if (p) {
		ret = taint_peer(ca, id, err, errlen);
		if (ret == 0)
			p->tainted = true;
	} else {
		a->tainted = true;
		if (ca__store_state(ca, a) < 0) {
			a->tainted = false;
			errorf(err, errlen, "cannot record the taint in the datastore");
			ret = -EIO;
		}
	}
	if (ret < 0)
		goto out;
	log_warnx("CA: authority %s tainted by the operator: agents re-issue what it signed", id);
	ca__bump_sequence(ca);
	ret = CA_CHANGED_BUNDLE;
out:
	pthread_mutex_unlock(&ca->lock);
	return ret;
}

int ca_tainted_check(struct ca *ca, const char *id, char *err, size_t errlen)
{
	pthread_mutex_lock(&ca->lock);
	int ret = 0;
	struct authority *a = find_own(ca, id);
	struct peer *p = a ? NULL : find_peer(ca, id);
	if (!a && !p) {
		ret = not_own(ca, id, "revoke", err, errlen);
	} else if (!(a ? a->tainted : p->tainted)) {
		errorf(err, errlen, "authority %s is not tainted: taint it first (\"authority taint "
		       "--id %s\"), so that agents re-issue what it signed", id, id);
		ret = -EBUSY;
	}
	pthread_mutex_unlock(&ca->lock);
	return ret;
}

int ca_revoke(struct ca *ca, const char *id, char *err, size_t errlen)
{
	int ret = ca_tainted_check(ca, id, err, errlen);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&ca->lock);
	ret = -EIO;
	if (ds_ca_delete(ca->ds, id) < 0 && find_own(ca, id)) {
		errorf(err, errlen, "cannot delete authority %s from the datastore", id);
		goto out;
	}
	for (size_t i = 0; i < ca->n_auth; i++)
		if (strcmp(ca->auth[i]->id, id) == 0) {
			ca__remove_key_files(ca, id);
			ca__drop_authority_at(ca, i);
			break;
		}
	for (size_t i = 0; i < ca->n_peers; i++)
		if (strcmp(ca->peers[i].id, id) == 0) {
			free(ca->peers[i].cert);
			free(ca->peers[i].jwt_spki);
			memmove(&ca->peers[i], &ca->peers[i + 1],
				(ca->n_peers - i - 1) * sizeof(*ca->peers));
			ca->n_peers--;
			break;
		}
	log_warnx("CA: authority %s revoked by the operator: it left the bundle", id);
	ca__bump_sequence(ca);
	ret = CA_CHANGED_BUNDLE;
out:
	pthread_mutex_unlock(&ca->lock);
	return ret;
}

static json_t *authority_json(const char *id, const char *kind, int state, bool tainted,
			      int64_t not_before, int64_t not_after, bool own)
{
	char nb[32], na[32];
	time_format_rfc3339(not_before, nb, sizeof(nb));
	time_format_rfc3339(not_after, na, sizeof(na));
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:b,s:s}", "id", id, "kind", kind, "state",
			 ca__state_name(state), "not_before", nb, "not_after", na, "not_before_unix",
			 (json_int_t)not_before, "not_after_unix", (json_int_t)not_after, "tainted",
			 tainted, "server", own ? "this" : "other");
}

static void add_kinds(json_t *arr, const char *id, int state, bool tainted, int64_t nb,
		      int64_t na, bool own, const uint8_t *cert, size_t cert_len, const char *kid,
		      const uint8_t *spki, size_t spki_len)
{
	json_t *x = authority_json(id, "x509", state, tainted, nb, na, own);
	char *pem = pem_encode("CERTIFICATE", cert, cert_len);
	json_object_set_new(x, "certificate", json_string(pem ? pem : ""));
	free(pem);
	json_array_append_new(arr, x);
	if (!spki)
		return;
	json_t *j = authority_json(id, "jwt", state, tainted, nb, na, own);
	pem = pem_encode("PUBLIC KEY", spki, spki_len);
	json_object_set_new(j, "key_id", json_string(kid));
	json_object_set_new(j, "public_key", json_string(pem ? pem : ""));
	free(pem);
	json_array_append_new(arr, j);
}

json_t *ca_authorities_json(struct ca *ca)
{
	json_t *arr = json_array();
	pthread_mutex_lock(&ca->lock);
	for (size_t i = 0; i < ca->n_auth; i++) {
		const struct authority *a = ca->auth[i];
		add_kinds(arr, a->id, a->state, a->tainted, a->not_before, a->not_after, true,
			  a->cert, a->cert_len, a->jwt_kid, a->jwt_spki, a->jwt_spki_len);
	}
	for (size_t i = 0; i < ca->n_peers; i++) {
		const struct peer *p = &ca->peers[i];
		add_kinds(arr, p->id, p->state, p->tainted, p->not_before, p->not_after, false,
			  p->cert, p->cert_len, p->jwt_kid, p->jwt_spki, p->jwt_spki_len);
	}
	pthread_mutex_unlock(&ca->lock);
	return json_pack("{s:o}", "authorities", arr);
}
