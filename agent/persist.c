/* persist.c: the agent's state in data_dir (see persist.h): the JSON of state.json,
 * bundle.json and federated_bundles.json, loading with every check before use, and saving.
 * The checked reads of the files and PEM are in persist_file.c.
 *
 * Threads: the sync thread only; loading verifies the persisted SVIDs on every core
 * (parallel_for), each check touching only its own SVID. */
#include "persist.h"
#include "persist_internal.h"
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "der_pem.h"
#include "jwt.h"
#include "keys.h"
#include "log.h"
#include "parallel.h"
#include "spiffeid.h"
#include "strv.h"
#include "util.h"
#include "x509.h"

#define STATE_VERSION 1

/* ---- JSON helpers ---- */

static char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static int64_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* Decodes a base64 member. Returns 0, or -1 when missing or malformed. */
static int jb64(json_t *o, const char *key, uint8_t **out, size_t *len)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return -1;
	return base64_decode(json_string_value(v), json_string_length(v), out, len);
}

/* Overwrites a JSON string's characters in place before the value is freed. */
static void wipe_jstring(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (json_is_string(v))
		secure_zero((char *)json_string_value(v), json_string_length(v));
}

static int jstrv(json_t *o, const char *key, char ***out, size_t *n)
{
	json_t *a = json_object_get(o, key);
	*out = NULL;
	*n = 0;
	if (!a) {
		*out = xcalloc(1, sizeof(char *));
		return 0;
	}
	if (!json_is_array(a))
		return -1;
	size_t cnt = json_array_size(a);
	char **v = xcalloc(cnt + 1, sizeof(char *));
	for (size_t i = 0; i < cnt; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s)) {
			for (size_t j = 0; j < i; j++)
				free(v[j]);
			free(v);
			return -1;
		}
		v[i] = xstrdup(json_string_value(s));
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp((*(struct entry *const *)a)->id, (*(struct entry *const *)b)->id);
}

static int cmp_svid(const void *a, const void *b)
{
	return strcmp((*(struct svid *const *)a)->entry_id, (*(struct svid *const *)b)->entry_id);
}

/* An entry of state.json: the entry's JSON (entry.h's codec, so that the agent reads what the
 * server writes) with the entry's SVID under "svid". Files written before the agent used that
 * codec hold a subset of its keys, with "" for an absent hint: they load the same. NULL when the
 * entry is malformed (the file is then corrupt). */
static struct entry *state_entry(json_t *o, char *why, size_t whylen)
{
	json_t *copy = json_copy(o); /* shallow: the entry's members without "svid" */
	struct entry *e = NULL;

	snprintf(why, whylen, "not an entry");
	if (!copy)
		return NULL;
	json_object_del(copy, "svid");
	if (entry_from_json(copy, &e, why, whylen) < 0)
		goto fail;
	if (!e->id[0] || !e->spiffe_id) {
		snprintf(why, whylen, "no \"id\" or \"spiffe_id\"");
		goto fail;
	}
	for (size_t i = 0; i < e->n_federates_with; i++)
		if (trust_domain_validate(e->federates_with[i], why, whylen) < 0)
			goto fail;
	/* The agent's entries always have these strings (the Workload API sends the hint). */
	if (!e->parent_id)
		e->parent_id = xstrdup("");
	if (!e->hint)
		e->hint = xstrdup("");
	json_decref(copy);
	return e;
fail:
	json_decref(copy);
	entry_free(e);
	return NULL;
}

/* Only the key, the chain and what the certificate cannot say (hint, renewal time, entry
 * revision) come from the file; everything the certificate says is taken from it by
 * verify_svid. NULL when a member is missing or malformed. */
static struct svid *svid_from_json(json_t *o, const struct entry *e)
{
	struct svid *v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->entry_id = xstrdup(e->id);
	v->hint = jstr(o, "hint");
	v->renew_at = jint(o, "renew_at");
	v->entry_revision = jint(o, "entry_revision");
	int bad = jb64(o, "chain", &v->chain, &v->chain_len) < 0 ||
		  jb64(o, "key", &v->key, &v->key_len) < 0 || !v->chain_len || !v->key_len;
	wipe_jstring(o, "key");
	if (bad) {
		svid_unref(v);
		return NULL;
	}
	if (!v->hint)
		v->hint = xstrdup("");
	return v;
}

/* The checks a persisted SVID (a workload's or the agent's own) must pass before it is used:
 * the chain parses, its leaf is an X509-SVID (one URI SAN, not a CA) naming expect_id (when not
 * NULL), the key is the leaf's, and the chain verifies against the persisted bundle at now (so it
 * has not expired). On success *info describes the leaf (free it with x509_info_free). 0, or -1
 * with the reason in why. */
static int verify_chain_key(const uint8_t *chain, size_t chain_len, const uint8_t *key,
			    size_t key_len, const char *expect_id, const uint8_t *bundle,
			    size_t bundle_len, int64_t now, struct x509_info *info, char *why,
			    size_t whylen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	lkey *k = NULL;
	char r[256];
	int ret = -1;
	if (!bundle || !bundle_len) {
		errorf(why, whylen, "no persisted bundle to verify it against");
		goto out;
	}
	if (x509_split_der(chain, chain_len, &certs, &lens, &n) < 0 || n == 0) {
		errorf(why, whylen, "the chain is not DER certificates");
		goto out;
	}
	if (x509_parse(certs[0], lens[0], info, r, sizeof(r)) < 0) {
		errorf(why, whylen, "unreadable certificate: %s", r);
		goto out;
	}
	if (info->n_uri_sans != 1 || info->is_ca ||
	    (expect_id && strcmp(info->spiffe_id, expect_id) != 0)) {
		errorf(why, whylen, "the certificate names \"%s\"%s%s%s", info->spiffe_id,
		       info->is_ca ? " as a CA" : "", expect_id ? ", not " : "",
		       expect_id ? expect_id : "");
		goto out;
	}
	if (info->not_after <= now) {
		errorf(why, whylen, "the certificate expired at %lld", (long long)info->not_after);
		goto out;
	}
	if (lkey_from_der(key, key_len, &k) < 0 || !lkey_matches_cert(k, certs[0], lens[0])) {
		errorf(why, whylen, "the key does not match the certificate");
		goto out;
	}
	if (x509_verify(chain, chain_len, bundle, bundle_len, now, r, sizeof(r)) < 0) {
		errorf(why, whylen, "the chain does not verify against the persisted bundle: %s", r);
		goto out;
	}
	ret = 0;
out:
	lkey_free(k);
	free(certs);
	free(lens);
	return ret;
}

/* verify_chain_key for the SVID of entry e; on success the SPIFFE ID, serial and validity are
 * set from the certificate, never from the file. */
static int verify_svid(struct svid *v, const struct entry *e, const uint8_t *bundle,
		       size_t bundle_len, int64_t now, char *why, size_t whylen)
{
	struct x509_info info = {0};
	int ret = -1;
	if (!e->spiffe_id || !*e->spiffe_id) {
		errorf(why, whylen, "its entry has no SPIFFE ID");
		goto out;
	}
	if (verify_chain_key(v->chain, v->chain_len, v->key, v->key_len, e->spiffe_id, bundle,
			     bundle_len, now, &info, why, whylen) < 0)
		goto out;
	free(v->spiffe_id);
	v->spiffe_id = xstrdup(info.spiffe_id);
	snprintf(v->serial, sizeof(v->serial), "%s", info.serial);
	v->not_before = info.not_before;
	v->not_after = info.not_after;
	if (v->renew_at < v->not_before || v->renew_at > v->not_after)
		v->renew_at = v->not_before + (v->not_after - v->not_before) / 2;
	ret = 0;
out:
	x509_info_free(&info);
	return ret;
}

/* The SVID of entry e as the file has it, unverified, or NULL when it has none or it is
 * malformed (logged once here). */
static struct svid *state_svid(json_t *o, const struct entry *e, const char *name)
{
	json_t *so = json_object_get(o, "svid");
	if (!so)
		return NULL;
	struct svid *v = json_is_object(so) ? svid_from_json(so, e) : NULL;
	if (!v)
		log_warnx("%s: discarding the SVID of entry %s: malformed; it will be fetched anew",
			 name, e->id);
	return v;
}

/* The persisted SVIDs are verified on every core: a key check and a signature verification
 * each, 10,000 of them after a restart (the Workload API serves once they are done). */
struct svid_check {
	struct svid *v;
	const struct entry *e;
	int rc;
	char why[256];
};

struct svid_checks {
	struct svid_check *c;
	const uint8_t *bundle;
	size_t bundle_len;
	int64_t now;
};

static void svid_check_one(void *ctx, size_t i)
{
	struct svid_checks *cs = ctx;
	struct svid_check *c = &cs->c[i];
	c->rc = verify_svid(c->v, c->e, cs->bundle, cs->bundle_len, cs->now, c->why,
			    sizeof(c->why));
}

/* Verifies the n candidates, moves those that pass into d->svids and logs the others once. */
static void keep_verified(struct svid_checks *cs, size_t n, const char *name,
			  struct persist_data *d)
{
	parallel_for(n, 32, svid_check_one, cs);
	for (size_t i = 0; i < n; i++) {
		struct svid_check *c = &cs->c[i];
		if (c->rc == 0) {
			d->svids[d->n_svids++] = c->v;
			continue;
		}
		/* Expiry is routine after a long stop; anything else means tampering or damage. */
		if (strstr(c->why, "expired") && !strstr(c->why, "verify"))
			log_info("%s: the SVID of entry %s has expired; it will be fetched anew",
				 name, c->e->id);
		else
			log_warnx("%s: discarding the SVID of entry %s: %s; it will be fetched anew",
				 name, c->e->id, c->why);
		svid_unref(c->v);
	}
}

int persist_parse_state(const char *name, const char *text, size_t len, int64_t now,
			const uint8_t *bundle, size_t bundle_len, struct persist_data *d,
			char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, 0, &je);
	if (!root)
		return errorf(err, errlen, "%s:%d:%d: corrupt state file: %s", name, je.line,
			      je.column, je.text);
	int ret = -1;
	struct svid_checks checks = {.bundle = bundle, .bundle_len = bundle_len, .now = now};
	size_t n_checks = 0;
	json_t *entries = json_object_get(root, "entries");
	json_t *tokens = json_object_get(root, "used_tokens");
	if (!json_is_object(root) || jint(root, "version") != STATE_VERSION ||
	    !json_is_array(entries) || (tokens && !json_is_array(tokens))) {
		errorf(err, errlen, "%s: corrupt state file (unknown version or layout)", name);
		goto out;
	}
	if (tokens && jstrv(root, "used_tokens", &d->used_tokens, &d->n_used_tokens) < 0) {
		errorf(err, errlen, "%s: corrupt state file (used_tokens)", name);
		goto out;
	}
	size_t n = json_array_size(entries);
	d->entries = xcalloc(n + 1, sizeof(*d->entries));
	d->svids = xcalloc(n + 1, sizeof(*d->svids));
	checks.c = xcalloc(n + 1, sizeof(*checks.c));
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(entries, i);
		char why[256] = "not an object";
		struct entry *e = json_is_object(o) ? state_entry(o, why, sizeof(why)) : NULL;
		if (!e) {
			errorf(err, errlen, "%s: corrupt state file (entry %zu: %s)", name, i, why);
			goto out;
		}
		d->entries[d->n_entries++] = e;
		struct svid *v = state_svid(o, e, name);
		if (v)
			checks.c[n_checks++] = (struct svid_check){.v = v, .e = e};
	}
	keep_verified(&checks, n_checks, name, d);
	n_checks = 0;
	qsort(d->entries, d->n_entries, sizeof(*d->entries), cmp_entry);
	qsort(d->svids, d->n_svids, sizeof(*d->svids), cmp_svid);
	for (size_t i = 1; i < d->n_entries; i++) {
		if (strcmp(d->entries[i - 1]->id, d->entries[i]->id) == 0) {
			errorf(err, errlen, "%s: corrupt state file (entry %s twice)", name,
			       d->entries[i]->id);
			goto out;
		}
	}
	d->have_state = true;
	ret = 0;
out:
	for (size_t i = 0; i < n_checks; i++) /* a corrupt file: the candidates not kept */
		svid_unref(checks.c[i].v);
	free(checks.c);
	json_decref(root);
	return ret;
}

static int load_state(const char *dir, int64_t now, struct persist_data *d, char *err,
		      size_t errlen)
{
	char path[4096];
	path_of(path, sizeof(path), dir, "state.json");
	uint8_t *buf;
	size_t len;
	if (read_private(path, &buf, &len, err, errlen) < 0)
		return -1;
	if (!buf)
		return 0;
	int r = persist_parse_state(path, (const char *)buf, len, now, d->bundle, d->bundle_len, d,
				    err, errlen);
	secure_zero(buf, len);
	free(buf);
	return r;
}

static int load_bundle(const char *dir, struct persist_data *d, char *err, size_t errlen)
{
	char path[4096];
	path_of(path, sizeof(path), dir, "bundle.pem");
	if (load_pem_certs(path, &d->bundle, &d->bundle_len, err, errlen) < 0)
		return -1;
	path_of(path, sizeof(path), dir, "bundle.json");
	uint8_t *buf;
	size_t len;
	if (read_public(path, &buf, &len, err, errlen) < 0)
		return -1;
	if (!buf)
		return 0;
	json_error_t je;
	json_t *root = json_loadb((const char *)buf, len, 0, &je);
	free(buf);
	if (!root)
		return errorf(err, errlen, "%s:%d:%d: corrupt bundle file: %s", path, je.line,
			    je.column, je.text);
	int ret = -1;
	json_t *jwks = json_object_get(root, "jwt_bundle");
	if (!json_is_object(root) || !json_is_object(jwks)) {
		errorf(err, errlen, "%s: corrupt bundle file", path);
		goto out;
	}
	d->trust_domain = jstr(root, "trust_domain");
	d->bundle_sequence = jint(root, "sequence");
	d->jwt_bundle = json_dumps(jwks, JSON_COMPACT);
	ret = 0;
out:
	json_decref(root);
	return ret;
}

/* After load_bundle: the agent's SVID is verified against the persisted bundle. */
static int load_agent(const char *dir, int64_t now, struct persist_data *d, char *err,
		      size_t errlen)
{
	char path[4096];
	path_of(path, sizeof(path), dir, "agent_key.pem");
	uint8_t *buf;
	size_t len;
	if (read_private(path, &buf, &len, err, errlen) < 0)
		return -1;
	if (!buf)
		return 0;
	int r = pem_decode_concat((const char *)buf, len, "PRIVATE KEY", &d->agent_key,
				  &d->agent_key_len);
	secure_zero(buf, len);
	free(buf);
	if (r < 0 || d->agent_key_len == 0)
		return errorf(err, errlen, "%s: no PKCS#8 PRIVATE KEY block", path);
	path_of(path, sizeof(path), dir, "agent_svid.pem");
	if (load_pem_certs(path, &d->agent_chain, &d->agent_chain_len, err, errlen) < 0)
		return -1;
	struct x509_info info = {0};
	char why[512];
	if (d->agent_chain &&
	    verify_chain_key(d->agent_chain, d->agent_chain_len, d->agent_key, d->agent_key_len,
			     NULL, d->bundle, d->bundle_len, now, &info, why, sizeof(why)) < 0) {
		log_warnx("discarding the persisted agent SVID in %s: %s; the agent attests anew",
			 path, why);
		free(d->agent_chain);
		d->agent_chain = NULL;
		d->agent_chain_len = 0;
	}
	x509_info_free(&info);
	if (!d->agent_chain) {
		/* A key without its certificate is useless: the agent re-attests. */
		secure_zero(d->agent_key, d->agent_key_len);
		free(d->agent_key);
		d->agent_key = NULL;
		d->agent_key_len = 0;
	}
	return 0;
}

/* One federated bundle of federated_bundles.json, checked: a valid trust domain other than ours,
 * X.509 authorities that parse as CA certificates, a JWK Set that parses. */
static int fed_from_json(json_t *o, const char *own_td, struct fed_snap *f, char *why,
			 size_t whylen)
{
	const char *td = json_string_value(json_object_get(o, "trust_domain"));
	const char *pem = json_string_value(json_object_get(o, "x509"));
	json_t *jwks = json_object_get(o, "jwt_bundle");
	struct jwks *keys = NULL;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	int ret = -1;
	if (!td || trust_domain_validate(td, why, whylen) < 0 || (own_td && !strcmp(td, own_td)) ||
	    !pem || !json_is_object(jwks)) {
		errorf(why, whylen, "bundle of \"%.256s\" is malformed", td ? td : "");
		return -1;
	}
	f->trust_domain = xstrdup(td);
	f->sequence = jint(o, "sequence");
	f->jwt_bundle = json_dumps(jwks, JSON_COMPACT);
	if (!f->jwt_bundle ||
	    jwks_from_json(f->jwt_bundle, strlen(f->jwt_bundle), &keys, why, whylen) < 0 ||
	    pem_decode_concat(pem, strlen(pem), "CERTIFICATE", &f->x509, &f->x509_len) < 0 ||
	    x509_split_der(f->x509, f->x509_len, &certs, &lens, &n) < 0) {
		errorf(why, whylen, "bundle of %s: unusable authorities", td);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct x509_info info;
		if (x509_parse(certs[i], lens[i], &info, NULL, 0) < 0) {
			errorf(why, whylen, "bundle of %s: certificate %zu does not parse", td, i + 1);
			goto out;
		}
		bool ca = info.is_ca;
		x509_info_free(&info);
		if (!ca) {
			errorf(why, whylen, "bundle of %s: certificate %zu is not a CA", td, i + 1);
			goto out;
		}
	}
	if (n == 0 && jwks_count(keys) == 0) {
		errorf(why, whylen, "bundle of %s has no authority", td);
		goto out;
	}
	ret = 0;
out:
	jwks_free(keys);
	free(certs);
	free(lens);
	return ret;
}

/* federated_bundles.json: a bundle that fails the checks is discarded (logged); the server
 * sends the set again when the agent connects. */
static int load_fed(const char *dir, struct persist_data *d, char *err, size_t errlen)
{
	char path[4096], why[512];
	uint8_t *buf;
	size_t len;
	path_of(path, sizeof(path), dir, "federated_bundles.json");
	if (read_public(path, &buf, &len, err, errlen) < 0)
		return -1;
	if (!buf)
		return 0;
	if (!d->trust_domain || !*d->trust_domain) {
		/* Without bundle.json there is no trust domain to tell ours from a federated one:
		 * the server sends the current set at the first sync. */
		log_warnx("discarding %s: no bundle.json beside it", path);
		free(buf);
		return 0;
	}
	json_t *root = json_loadb((const char *)buf, len, 0, NULL);
	free(buf);
	json_t *a = json_object_get(root, "bundles");
	if (!json_is_array(a)) {
		log_warnx("discarding %s: not a federated bundle file", path);
		json_decref(root);
		return 0;
	}
	d->fed = xcalloc(json_array_size(a) + 1, sizeof(*d->fed));
	for (size_t i = 0; i < json_array_size(a); i++) {
		struct fed_snap *f = &d->fed[d->n_fed];
		if (fed_from_json(json_array_get(a, i), d->trust_domain, f, why, sizeof(why)) < 0) {
			log_warnx("discarding a persisted federated bundle in %s: %s", path, why);
			fed_snap_clear_one(f);
			continue;
		}
		d->n_fed++;
	}
	json_decref(root);
	return 0;
}

int persist_save_federated(const char *dir, const struct fed_snap *fed, size_t n, char *err,
			   size_t errlen)
{
	char path[4096];
	int ret = -1;
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		char *pem = fed[i].x509_len ? certs_to_pem(fed[i].x509, fed[i].x509_len) : xstrdup("");
		json_t *jwks = json_loads(fed[i].jwt_bundle ? fed[i].jwt_bundle : "{\"keys\":[]}", 0,
					  NULL);
		json_array_append_new(a, json_pack("{s:s, s:I, s:s, s:o}", "trust_domain",
						   fed[i].trust_domain, "sequence",
						   (json_int_t)fed[i].sequence, "x509",
						   pem ? pem : "", "jwt_bundle",
						   jwks ? jwks : json_object()));
		free(pem);
	}
	json_t *root = a ? json_pack("{s:o}", "bundles", a) : NULL;
	char *text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
	if (!text) {
		errorf(err, errlen, "cannot encode federated_bundles.json");
		goto out;
	}
	path_of(path, sizeof(path), dir, "federated_bundles.json");
	int r = file_write_atomic(path, text, strlen(text), 0644);
	if (r < 0) {
		errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	ret = 0;
out:
	free(text);
	json_decref(root);
	return ret;
}

int persist_load(const char *dir, int64_t now, struct persist_data *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (load_bundle(dir, out, err, errlen) < 0 || load_agent(dir, now, out, err, errlen) < 0 ||
	    load_state(dir, now, out, err, errlen) < 0 || load_fed(dir, out, err, errlen) < 0)
		return -1;
	return 0;
}

int persist_save_agent(const char *dir, const uint8_t *key_der, size_t key_len,
		       const uint8_t *chain, size_t chain_len, char *err, size_t errlen)
{
	char path[4096];
	int ret = -1;
	char *kpem = pem_encode("PRIVATE KEY", key_der, key_len);
	char *cpem = certs_to_pem(chain, chain_len);
	if (!kpem || !cpem) {
		errorf(err, errlen, "cannot encode the agent key or SVID as PEM");
		goto out;
	}
	/* The certificate goes first: a key without a certificate is ignored at load, whereas a
	 * new certificate next to the old key would be a mismatch. */
	path_of(path, sizeof(path), dir, "agent_svid.pem.new");
	int r = file_write_atomic(path, cpem, strlen(cpem), 0644);
	if (r == 0) {
		path_of(path, sizeof(path), dir, "agent_key.pem");
		r = file_write_atomic(path, kpem, strlen(kpem), 0600);
	}
	if (r == 0) {
		char from[4096];
		path_of(from, sizeof(from), dir, "agent_svid.pem.new");
		path_of(path, sizeof(path), dir, "agent_svid.pem");
		if (rename(from, path) < 0)
			r = -errno;
	}
	if (r < 0) {
		errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	ret = 0;
out:
	if (kpem) {
		secure_zero(kpem, strlen(kpem));
		free(kpem);
	}
	free(cpem);
	return ret;
}

int persist_save_bundle(const char *dir, const char *trust_domain, const uint8_t *bundle,
			size_t bundle_len, const char *jwt_bundle, int64_t sequence, char *err,
			size_t errlen)
{
	char path[4096];
	int ret = -1;
	char *text = NULL;
	json_t *root = NULL;
	char *pem = certs_to_pem(bundle, bundle_len);
	if (!pem) {
		errorf(err, errlen, "cannot encode the bundle as PEM");
		goto out;
	}
	path_of(path, sizeof(path), dir, "bundle.pem");
	int r = file_write_atomic(path, pem, strlen(pem), 0644);
	if (r < 0) {
		errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	json_t *jwks = json_loads(jwt_bundle ? jwt_bundle : "{\"keys\":[]}", 0, NULL);
	if (!json_is_object(jwks)) {
		json_decref(jwks);
		jwks = json_pack("{s:[]}", "keys");
	}
	root = json_pack("{s:s, s:I, s:o}", "trust_domain", trust_domain ? trust_domain : "",
			 "sequence", (json_int_t)sequence, "jwt_bundle", jwks);
	text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
	if (!text) {
		errorf(err, errlen, "cannot encode bundle.json");
		goto out;
	}
	path_of(path, sizeof(path), dir, "bundle.json");
	r = file_write_atomic(path, text, strlen(text), 0644);
	if (r < 0) {
		errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	ret = 0;
out:
	free(pem);
	free(text);
	json_decref(root);
	return ret;
}

static json_t *entry_json(const struct entry *e, const struct svid *v)
{
	json_t *o = entry_to_json(e);
	if (!o || !v)
		return o;
	char *chain = base64_encode(v->chain, v->chain_len);
	char *key = base64_encode(v->key, v->key_len);
	if (chain && key) {
		json_t *so = json_pack(
			"{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "spiffe_id", v->spiffe_id,
			"hint", v->hint ? v->hint : "", "serial", v->serial, "not_before",
			(json_int_t)v->not_before, "not_after", (json_int_t)v->not_after, "renew_at",
			(json_int_t)v->renew_at, "entry_revision", (json_int_t)v->entry_revision,
			"chain", chain, "key", key);
		if (so)
			json_object_set_new(o, "svid", so);
	}
	if (key) {
		secure_zero(key, strlen(key));
		free(key);
	}
	free(chain);
	return o;
}

/* The text of state.json, built one entry at a time: with thousands of entries a jansson tree of
 * the whole file takes several times the size of the text in small blocks, which the allocator
 * then keeps. The text holds private keys, so it never moves without the old copy being wiped
 * (no realloc). */
struct textbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void textbuf_reserve(struct textbuf *b, size_t more)
{
	if (b->failed || b->cap - b->len >= more)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < more)
		cap *= 2;
	char *p = malloc(cap);
	if (!p) {
		b->failed = true;
		return;
	}
	if (b->p) {
		memcpy(p, b->p, b->len);
		secure_zero(b->p, b->cap);
		free(b->p);
	}
	b->p = p;
	b->cap = cap;
}

static void textbuf_add(struct textbuf *b, const char *s, size_t n)
{
	textbuf_reserve(b, n);
	if (b->failed)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Appends the compact JSON of v. json_dumpb writes straight into the buffer, so no copy of a
 * key is left behind in buffers freed by jansson. */
static void textbuf_json(struct textbuf *b, const json_t *v)
{
	size_t need = json_dumpb(v, NULL, 0, JSON_COMPACT);
	if (need == 0) {
		b->failed = true;
		return;
	}
	textbuf_reserve(b, need);
	if (b->failed)
		return;
	if (json_dumpb(v, b->p + b->len, need, JSON_COMPACT) != need) {
		b->failed = true;
		return;
	}
	b->len += need;
}

static void textbuf_free(struct textbuf *b)
{
	if (b->p) {
		secure_zero(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

/* A guess at the text of one entry, so that the buffer is usually allocated once. */
static size_t entry_size_hint(const struct entry *e, const struct svid *v)
{
	size_t n = 256 + strlen(e->id) + (e->spiffe_id ? strlen(e->spiffe_id) : 0);
	for (size_t i = 0; i < e->n_selectors; i++)
		n += strlen(e->selectors[i]) + 4;
	for (size_t i = 0; i < e->n_dns_names; i++)
		n += strlen(e->dns_names[i]) + 4;
	if (v)
		n += 384 + (v->chain_len + v->key_len) * 4 / 3 + strlen(v->spiffe_id);
	return n;
}

int persist_save_state(const char *dir, char *const *used_tokens, size_t n_used_tokens,
		       struct entry *const *entries, size_t n_entries,
		       struct svid *const *svids, size_t n_svids, char *err, size_t errlen)
{
	char path[4096];
	int ret = -1;
	struct textbuf b = {0};
	char head[64];
	int hl = snprintf(head, sizeof(head), "{\"version\":%d,\"used_tokens\":", STATE_VERSION);
	json_t *tokens = strv_to_json(used_tokens, n_used_tokens);
	if (!tokens) {
		errorf(err, errlen, "cannot encode state.json");
		goto out;
	}
	/* Entries and SVIDs are both sorted by id: walk them together. */
	size_t hint = 64 + (size_t)hl + 70 * n_used_tokens;
	for (size_t i = 0, j = 0; i < n_entries; i++) {
		while (j < n_svids && strcmp(svids[j]->entry_id, entries[i]->id) < 0)
			j++;
		bool has = j < n_svids && strcmp(svids[j]->entry_id, entries[i]->id) == 0;
		hint += entry_size_hint(entries[i], has ? svids[j] : NULL);
	}
	textbuf_reserve(&b, hint);
	textbuf_add(&b, head, (size_t)hl);
	textbuf_json(&b, tokens);
	textbuf_add(&b, ",\"entries\":[", 12);
	for (size_t i = 0, j = 0; i < n_entries && !b.failed; i++) {
		while (j < n_svids && strcmp(svids[j]->entry_id, entries[i]->id) < 0)
			j++;
		const struct svid *v =
			j < n_svids && strcmp(svids[j]->entry_id, entries[i]->id) == 0 ? svids[j] : NULL;
		json_t *o = entry_json(entries[i], v);
		if (!o) {
			b.failed = true;
			break;
		}
		if (i)
			textbuf_add(&b, ",", 1);
		textbuf_json(&b, o);
		wipe_jstring(json_object_get(o, "svid"), "key");
		json_decref(o);
	}
	textbuf_add(&b, "]}", 2);
	if (b.failed) {
		errorf(err, errlen, "cannot encode state.json");
		goto out;
	}
	path_of(path, sizeof(path), dir, "state.json");
	int r = file_write_atomic(path, b.p, b.len, 0600);
	if (r < 0) {
		errorf(err, errlen, "cannot write %s: %s", path, strerror(-r));
		goto out;
	}
	ret = 0;
out:
	textbuf_free(&b);
	json_decref(tokens);
	return ret;
}

void persist_forget_agent(const char *dir)
{
	char path[4096];
	path_of(path, sizeof(path), dir, "agent_key.pem");
	unlink(path);
	path_of(path, sizeof(path), dir, "agent_svid.pem");
	unlink(path);
}

void persist_data_free(struct persist_data *d)
{
	if (!d)
		return;
	if (d->agent_key) {
		secure_zero(d->agent_key, d->agent_key_len);
		free(d->agent_key);
	}
	free(d->agent_chain);
	free(d->trust_domain);
	free(d->bundle);
	free(d->jwt_bundle);
	fed_snap_clear(d->fed, d->n_fed);
	if (d->used_tokens) {
		for (size_t i = 0; i < d->n_used_tokens; i++)
			free(d->used_tokens[i]);
		free(d->used_tokens);
	}
	if (d->entries) {
		for (size_t i = 0; i < d->n_entries; i++)
			cache_entry_free(d->entries[i]);
		free(d->entries);
	}
	if (d->svids) {
		for (size_t i = 0; i < d->n_svids; i++)
			svid_unref(d->svids[i]);
		free(d->svids);
	}
	memset(d, 0, sizeof(*d));
}
