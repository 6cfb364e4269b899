#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "keys.h"
#include "persist.h"
#include "util.h"
#include "x509.h"

static char root[64];
static char dir[128];

static int setup(void **state)
{
	strcpy(root, "/tmp/lanyard-persist-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	snprintf(dir, sizeof(dir), "%s/data/agent", root);
	return 0;
}

static int teardown(void **state)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd);
}

static mode_t mode_of(const char *name)
{
	char p[256];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_int_equal(stat(p, &st), 0);
	return st.st_mode & 07777;
}

static void chmod_file(const char *name, mode_t m)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_int_equal(chmod(p, m), 0);
}

/* The trust domain's CA (the persisted bundle) for the whole test program. */
static lkey *ca_key;
static uint8_t *ca_der;
static size_t ca_len;

static int ca_setup(void **state)
{
	struct x509_ca_params p = {.spiffe_id = "spiffe://example.org", .common_name = "test CA",
				   .not_before = now_unix() - 60, .not_after = now_unix() + 86400};
	if (lkey_generate(KEY_EC_P256, &ca_key) < 0)
		return -1;
	return x509_make_ca(ca_key, NULL, NULL, 0, &p, &ca_der, &ca_len);
}

static int ca_teardown(void **state)
{
	lkey_free(ca_key);
	free(ca_der);
	return 0;
}

/* An X509-SVID for id signed by the test CA, and its key. */
static void make_leaf(const char *id, int64_t not_before, int64_t not_after, lkey **key,
		      uint8_t **der, size_t *len)
{
	uint8_t *spki;
	size_t spki_len;
	assert_int_equal(lkey_generate(KEY_EC_P256, key), 0);
	assert_int_equal(lkey_public_der(*key, &spki, &spki_len), 0);
	struct x509_leaf_params p = {.spiffe_id = id, .not_before = not_before,
				     .not_after = not_after, .spki = spki, .spki_len = spki_len};
	assert_int_equal(x509_sign_leaf(ca_key, ca_der, ca_len, &p, der, len), 0);
	free(spki);
}

static struct svid *mk_svid(const char *entry_id, int64_t not_after)
{
	struct svid *v = xcalloc(1, sizeof(*v));
	v->refs = 1;
	v->entry_id = xstrdup(entry_id);
	v->spiffe_id = xstrdup("spiffe://example.org/w");
	v->hint = xstrdup("h");
	lkey *k;
	make_leaf(v->spiffe_id, now_unix() - 10, not_after, &k, &v->chain, &v->chain_len);
	assert_int_equal(lkey_to_pkcs8_der(k, &v->key, &v->key_len), 0);
	lkey_free(k);
	struct x509_info info;
	char err[256];
	assert_int_equal(x509_parse(v->chain, v->chain_len, &info, err, sizeof(err)), 0);
	snprintf(v->serial, sizeof(v->serial), "%s", info.serial);
	x509_info_free(&info);
	v->not_before = now_unix() - 10;
	v->not_after = not_after;
	v->renew_at = not_after - 100;
	v->entry_revision = 7;
	return v;
}

static struct entry *mk_entry(const char *id)
{
	char *sel[] = {"unix:gid:5", "unix:uid:1000"};
	char *dns[] = {"a.example"};
	struct entry e = {.spiffe_id = "spiffe://example.org/w",
				.parent_id = "spiffe://example.org/agent", .hint = "h",
				.selectors = sel, .n_selectors = 2, .dns_names = dns,
				.n_dns_names = 1, .x509_svid_ttl = 60, .jwt_svid_ttl = 30,
				.revision = 7};
	snprintf(e.id, sizeof(e.id), "%s", id);
	return cache_entry_dup(&e);
}

static void save_all(void)
{
	char err[512] = "";
	assert_int_equal(persist_prepare_dir(dir, err, sizeof(err)), 0);

	lkey *ak;
	uint8_t *achain, *akey;
	size_t achain_len, akey_len;
	make_leaf("spiffe://example.org/lanyard/agent/x", now_unix() - 10, now_unix() + 3600, &ak,
		  &achain, &achain_len);
	assert_int_equal(lkey_to_pkcs8_der(ak, &akey, &akey_len), 0);
	assert_int_equal(persist_save_agent(dir, akey, akey_len, achain, achain_len, err,
					    sizeof(err)), 0);
	assert_int_equal(persist_save_bundle(dir, "example.org", ca_der, ca_len,
					     "{\"keys\":[{\"kid\":\"k1\"}]}", 42, err, sizeof(err)),
			 0);
	secure_zero(akey, akey_len);
	free(akey);
	free(achain);
	lkey_free(ak);

	/* Sorted by id, as the node client keeps them; the SVID of "c" has expired. */
	struct entry *entries[] = {mk_entry("a"), mk_entry("b"), mk_entry("c")};
	struct svid *svids[] = {mk_svid("a", now_unix() + 3600), mk_svid("c", now_unix() - 1)};
	char *tokens[] = {"deadbeef"};
	assert_int_equal(persist_save_state(dir, tokens, 1, entries, 3, svids, 2, err, sizeof(err)),
			 0);
	for (int i = 0; i < 3; i++)
		cache_entry_free(entries[i]);
	for (int i = 0; i < 2; i++)
		svid_unref(svids[i]);
}

static void round_trip(void **state)
{
	save_all();
	assert_int_equal(mode_of("."), 0700);
	assert_int_equal(mode_of("agent_key.pem"), 0600);
	assert_int_equal(mode_of("state.json"), 0600);

	struct persist_data d;
	char err[512] = "";
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_non_null(d.agent_key);
	assert_non_null(d.agent_chain);
	lkey *k;
	assert_int_equal(lkey_from_der(d.agent_key, d.agent_key_len, &k), 0);
	assert_true(lkey_matches_cert(k, d.agent_chain, d.agent_chain_len));
	lkey_free(k);
	assert_string_equal(d.trust_domain, "example.org");
	assert_int_equal(d.bundle_sequence, 42);
	assert_non_null(strstr(d.jwt_bundle, "k1"));
	assert_int_equal(d.bundle_len, ca_len);
	assert_memory_equal(d.bundle, ca_der, d.bundle_len);

	assert_true(d.have_state);
	assert_int_equal(d.n_used_tokens, 1);
	assert_string_equal(d.used_tokens[0], "deadbeef");
	assert_int_equal(d.n_entries, 3);
	assert_string_equal(d.entries[0]->id, "a");
	assert_string_equal(d.entries[2]->id, "c");
	assert_int_equal(d.entries[1]->n_selectors, 2);
	assert_string_equal(d.entries[1]->selectors[1], "unix:uid:1000");
	assert_string_equal(d.entries[1]->dns_names[0], "a.example");
	assert_int_equal(d.entries[1]->x509_svid_ttl, 60);
	assert_int_equal(d.entries[1]->revision, 7);

	/* The expired SVID of "c" is not loaded. */
	assert_int_equal(d.n_svids, 1);
	struct svid *v = d.svids[0];
	assert_string_equal(v->entry_id, "a");
	assert_int_equal(strlen(v->serial) > 0, 1);
	assert_int_equal(v->entry_revision, 7);
	assert_int_equal(v->refs, 1);
	assert_int_equal(lkey_from_der(v->key, v->key_len, &k), 0);
	assert_true(lkey_matches_cert(k, v->chain, v->chain_len));
	lkey_free(k);
	persist_data_free(&d);
	persist_data_free(NULL);

	/* Loading later drops the SVID that expired meanwhile. */
	assert_int_equal(persist_load(dir, now_unix() + 7200, &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_svids, 0);
	assert_int_equal(d.n_entries, 3);
	persist_data_free(&d);
}

/* state.json is written entry by entry into a buffer sized from a guess; control characters
 * take six bytes each in JSON, so these entries outgrow the guess many times over and the buffer
 * must grow (copying the SVID's key along) without losing or garbling anything. */
static void state_outgrows_its_size_guess(void **state)
{
	char err[512] = "";
	enum { N = 40, SEL = 3000 };
	assert_int_equal(persist_prepare_dir(dir, err, sizeof(err)), 0);
	char *sel = xmalloc(SEL + 1);
	memset(sel, 0x01, SEL);
	memcpy(sel, "unix:uid:", 9);
	sel[SEL] = 0;
	struct entry *entries[N];
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof(id), "e%03d", i);
		char *sv[] = {sel};
		struct entry e = {.spiffe_id = "spiffe://example.org/w",
					.parent_id = "spiffe://example.org/agent", .hint = "",
					.selectors = sv, .n_selectors = 1, .revision = i};
		snprintf(e.id, sizeof(e.id), "%s", id);
		entries[i] = cache_entry_dup(&e);
	}
	struct svid *v = mk_svid("e039", now_unix() + 3600);
	assert_int_equal(persist_save_state(dir, NULL, 0, entries, N, &v, 1, err, sizeof(err)), 0);
	assert_int_equal(persist_save_bundle(dir, "example.org", ca_der, ca_len, NULL, 1, err,
					     sizeof(err)), 0);

	struct persist_data d;
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_entries, N);
	for (int i = 0; i < N; i++) {
		assert_string_equal(d.entries[i]->id, entries[i]->id);
		assert_int_equal(d.entries[i]->revision, i);
		assert_int_equal(d.entries[i]->n_selectors, 1);
		assert_string_equal(d.entries[i]->selectors[0], sel);
	}
	assert_int_equal(d.n_svids, 1);
	assert_string_equal(d.svids[0]->entry_id, "e039");
	assert_int_equal(d.svids[0]->key_len, v->key_len);
	assert_memory_equal(d.svids[0]->key, v->key, v->key_len);
	assert_int_equal(d.svids[0]->chain_len, v->chain_len);
	assert_memory_equal(d.svids[0]->chain, v->chain, v->chain_len);
	persist_data_free(&d);
	for (int i = 0; i < N; i++)
		cache_entry_free(entries[i]);
	svid_unref(v);
	free(sel);
}

static void refuses_readable_key_files(void **state)
{
	save_all();
	struct persist_data d;
	char err[512] = "";
	chmod_file("agent_key.pem", 0644);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "agent_key.pem"));
	assert_non_null(strstr(err, "0644"));
	assert_non_null(strstr(err, "chmod 600"));
	persist_data_free(&d);
	chmod_file("agent_key.pem", 0600);

	chmod_file("state.json", 0640);
	err[0] = 0;
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "state.json"));
	persist_data_free(&d);
	chmod_file("state.json", 0600);

	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	persist_data_free(&d);
}

static void empty_dir_and_forget(void **state)
{
	char err[512] = "";
	struct persist_data d;
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/empty", root);
	assert_int_equal(persist_prepare_dir(sub, err, sizeof(err)), 0);
	assert_int_equal(persist_load(sub, now_unix(), &d, err, sizeof(err)), 0);
	assert_null(d.agent_key);
	assert_null(d.bundle);
	assert_false(d.have_state);
	assert_int_equal(d.n_entries, 0);
	persist_data_free(&d);

	save_all();
	persist_forget_agent(dir);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_null(d.agent_key);
	assert_non_null(d.bundle);
	persist_data_free(&d);
}

static void corrupt_state_is_an_error(void **state)
{
	save_all();
	char p[256], err[512] = "";
	snprintf(p, sizeof(p), "%s/state.json", dir);
	const char *bad[] = {"{\"version\":1,\"entries\":[{\"id\":5}]}", "{\"version\":99}",
			     "not json"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		assert_int_equal(file_write_atomic(p, bad[i], strlen(bad[i]), 0600), 0);
		struct persist_data d;
		err[0] = 0;
		assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "state.json"));
		persist_data_free(&d);
	}
}

/* Rewrites member key of the SVID of entry "a" in state.json (the entry itself when svid is
 * false) with value (taken over). */
static void edit_state(bool svid, const char *key, json_t *value)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/state.json", dir);
	json_t *doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "id")), "a");
	json_object_set_new(svid ? json_object_get(e, "svid") : e, key, value);
	char *text = json_dumps(doc, JSON_COMPACT);
	assert_int_equal(file_write_atomic(p, text, strlen(text), 0600), 0);
	free(text);
	json_decref(doc);
}

static json_t *b64_json(const uint8_t *der, size_t len)
{
	char *b = base64_encode(der, len);
	json_t *j = json_string(b);
	free(b);
	return j;
}

/* Loads dir and returns how many SVIDs survived (and, with one, checks it is the real one). */
static size_t load_svids(int64_t expect_not_after)
{
	struct persist_data d;
	char err[512] = "";
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	size_t n = d.n_svids;
	if (n == 1) {
		assert_string_equal(d.svids[0]->spiffe_id, "spiffe://example.org/w");
		assert_int_equal(d.svids[0]->not_after, expect_not_after);
		assert_true(d.svids[0]->renew_at <= d.svids[0]->not_after);
	}
	persist_data_free(&d);
	return n;
}

/* state.json as agents wrote it before the entry codec was shared with the server (entry.h):
 * only these keys, "" for an absent hint, federates_with only when not empty. Such a file
 * still loads: the same entries, and the SVIDs in it. */
static void old_state_format_loads(void **state)
{
	static const char *const old_keys[] = {"id", "spiffe_id", "parent_id", "selectors",
					       "x509_svid_ttl", "jwt_svid_ttl", "dns_names", "hint",
					       "revision", "svid"};
	char p[256];
	save_all();
	snprintf(p, sizeof(p), "%s/state.json", dir);
	json_t *doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	json_t *entries = json_object_get(doc, "entries"), *o;
	size_t i;
	json_array_foreach(entries, i, o) {
		json_t *old = json_object();
		for (size_t k = 0; k < ARRAY_LEN(old_keys); k++) {
			json_t *v = json_object_get(o, old_keys[k]);
			if (v)
				json_object_set(old, old_keys[k], v);
		}
		json_object_set_new(old, "hint", json_string("")); /* never null in old files */
		assert_null(json_object_get(old, "admin"));
		json_array_set_new(entries, i, old);
	}
	char *text = json_dumps(doc, JSON_COMPACT);
	assert_null(strstr(text, "federates_with"));
	assert_int_equal(file_write_atomic(p, text, strlen(text), 0600), 0);
	free(text);
	json_decref(doc);

	struct persist_data d;
	char err[512] = "";
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_true(d.have_state);
	assert_int_equal(d.n_entries, 3);
	assert_string_equal(d.entries[1]->id, "b");
	assert_string_equal(d.entries[1]->spiffe_id, "spiffe://example.org/w");
	assert_string_equal(d.entries[1]->parent_id, "spiffe://example.org/agent");
	assert_string_equal(d.entries[1]->hint, "");
	assert_int_equal(d.entries[1]->n_selectors, 2);
	assert_string_equal(d.entries[1]->selectors[0], "unix:gid:5");
	assert_string_equal(d.entries[1]->dns_names[0], "a.example");
	assert_int_equal(d.entries[1]->x509_svid_ttl, 60);
	assert_int_equal(d.entries[1]->jwt_svid_ttl, 30);
	assert_int_equal(d.entries[1]->revision, 7);
	assert_int_equal(d.entries[1]->n_federates_with, 0);
	assert_int_equal(d.n_svids, 1);
	assert_string_equal(d.svids[0]->entry_id, "a");
	persist_data_free(&d);

	/* And a file written now carries the server's entry keys, which load too. */
	save_all();
	doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	o = json_array_get(json_object_get(doc, "entries"), 0);
	assert_non_null(json_object_get(o, "managed"));
	assert_non_null(json_object_get(o, "svid"));
	json_decref(doc);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_entries, 3);
	assert_string_equal(d.entries[0]->hint, "h");
	persist_data_free(&d);
}

static void tampered_svids_are_discarded(void **state)
{
	save_all();
	struct persist_data d;
	char err[512] = "";
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_svids, 1);
	int64_t real_not_after = d.svids[0]->not_after;
	char real_serial[80];
	snprintf(real_serial, sizeof(real_serial), "%s", d.svids[0]->serial);
	persist_data_free(&d);

	/* Metadata is ignored: ID, serial and times come from the certificate. */
	edit_state(true, "spiffe_id", json_string("spiffe://example.org/evil"));
	edit_state(true, "not_after", json_integer(now_unix() + 100000000));
	edit_state(true, "renew_at", json_integer(now_unix() + 100000000));
	edit_state(true, "serial", json_string("01"));
	assert_int_equal(load_svids(real_not_after), 1);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_string_equal(d.svids[0]->serial, real_serial);
	persist_data_free(&d);
	/* Past the certificate's notAfter, an edited not_after does not keep it alive. */
	assert_int_equal(persist_load(dir, real_not_after + 1, &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_svids, 0);
	persist_data_free(&d);

	/* Another key than the certificate's. */
	lkey *k;
	uint8_t *der, *other_chain;
	size_t len, other_len;
	assert_int_equal(lkey_generate(KEY_EC_P256, &k), 0);
	assert_int_equal(lkey_to_pkcs8_der(k, &der, &len), 0);
	lkey_free(k);
	save_all();
	edit_state(true, "key", b64_json(der, len));
	assert_int_equal(load_svids(0), 0);
	secure_zero(der, len);
	free(der);

	/* Garbage chains, valid base64 or not. */
	save_all();
	edit_state(true, "chain", json_string("AAAAAAAA"));
	assert_int_equal(load_svids(0), 0);
	edit_state(true, "chain", json_string("!!"));
	assert_int_equal(load_svids(0), 0);

	/* The entry's ID is not the certificate's. */
	save_all();
	edit_state(false, "spiffe_id", json_string("spiffe://example.org/other"));
	assert_int_equal(load_svids(0), 0);

	/* A certificate with the right ID from another CA, with its own key. */
	save_all();
	lkey *real_ca = ca_key;
	uint8_t *real_der = ca_der;
	size_t real_len = ca_len;
	assert_int_equal(ca_setup(NULL), 0);
	make_leaf("spiffe://example.org/w", now_unix() - 10, now_unix() + 3600, &k, &other_chain,
		  &other_len);
	ca_teardown(NULL);
	ca_key = real_ca;
	ca_der = real_der;
	ca_len = real_len;
	assert_int_equal(lkey_to_pkcs8_der(k, &der, &len), 0);
	lkey_free(k);
	edit_state(true, "chain", b64_json(other_chain, other_len));
	edit_state(true, "key", b64_json(der, len));
	assert_int_equal(load_svids(0), 0);
	secure_zero(der, len);
	free(der);
	free(other_chain);
}

static void chown_file(const char *name, uid_t uid)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	assert_int_equal(chown(p, uid, (gid_t)-1), 0);
}

static void untrusted_files_are_discarded(void **state)
{
	struct persist_data d;
	char err[512] = "";
	save_all();
	/* A bundle others could write: no trust anchor, so nothing can be verified. */
	chmod_file("bundle.pem", 0646);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_null(d.bundle);
	assert_null(d.agent_key);
	assert_int_equal(d.n_svids, 0);
	assert_int_equal(d.n_entries, 3);
	persist_data_free(&d);
	chmod_file("bundle.pem", 0644);

	/* An agent certificate others could write: the agent re-attests. */
	chmod_file("agent_svid.pem", 0664);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_null(d.agent_key);
	assert_non_null(d.bundle);
	assert_int_equal(d.n_svids, 1);
	persist_data_free(&d);
	chmod_file("agent_svid.pem", 0644);

	/* The agent certificate of another key. */
	lkey *k;
	uint8_t *chain;
	size_t chain_len;
	make_leaf("spiffe://example.org/lanyard/agent/x", now_unix() - 10, now_unix() + 3600, &k,
		  &chain, &chain_len);
	lkey_free(k);
	char *pem = pem_encode("CERTIFICATE", chain, chain_len), p[256];
	snprintf(p, sizeof(p), "%s/agent_svid.pem", dir);
	assert_int_equal(file_write_atomic(p, pem, strlen(pem), 0644), 0);
	free(pem);
	free(chain);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_null(d.agent_key);
	assert_int_equal(d.n_svids, 1);
	persist_data_free(&d);

	/* Files of another uid (only root can hand a file to another uid). */
	if (geteuid() != 0)
		return;
	save_all();
	chown_file("state.json", 65534);
	chown_file("bundle.json", 65534);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_false(d.have_state);
	assert_int_equal(d.n_entries, 0);
	assert_null(d.jwt_bundle);
	assert_non_null(d.bundle);
	persist_data_free(&d);
}

/* Federated bundles and entries' federates_with survive a restart; a persisted bundle for our
 * own trust domain, or whose "CA" is a leaf, is discarded at load. */
static void federated_bundles_persisted(void **state)
{
	char err[512] = "";
	save_all();
	lkey *k;
	uint8_t *leaf;
	size_t leaf_len;
	make_leaf("spiffe://three.test/w", now_unix() - 10, now_unix() + 3600, &k, &leaf, &leaf_len);
	char jwks[] = "{\"keys\":[]}";
	struct fed_snap fed[] = {
		{.trust_domain = "two.test", .x509 = ca_der, .x509_len = ca_len, .jwt_bundle = jwks,
		 .sequence = 9},
		{.trust_domain = "example.org", .x509 = ca_der, .x509_len = ca_len, .jwt_bundle = jwks},
		{.trust_domain = "three.test", .x509 = leaf, .x509_len = leaf_len, .jwt_bundle = jwks},
	};
	assert_int_equal(persist_save_federated(dir, fed, 3, err, sizeof(err)), 0);
	char *tds[] = {"two.test"};
	struct entry e = {.id = "f", .spiffe_id = "spiffe://example.org/f", .parent_id = "p",
				.hint = "", .federates_with = tds, .n_federates_with = 1};
	struct entry *ep = &e;
	assert_int_equal(persist_save_state(dir, NULL, 0, &ep, 1, NULL, 0, err, sizeof(err)), 0);

	struct persist_data d;
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_fed, 1);
	assert_string_equal(d.fed[0].trust_domain, "two.test");
	assert_int_equal(d.fed[0].sequence, 9);
	assert_int_equal(d.fed[0].x509_len, ca_len);
	assert_memory_equal(d.fed[0].x509, ca_der, ca_len);
	assert_int_equal(d.n_entries, 1);
	assert_int_equal(d.entries[0]->n_federates_with, 1);
	assert_string_equal(d.entries[0]->federates_with[0], "two.test");
	persist_data_free(&d);

	/* Without bundle.json, nothing says which trust domain is ours: even example.org's
	 * "federated" bundle would pass, so the whole file is left to the server's next sync. */
	char path[512];
	snprintf(path, sizeof(path), "%s/bundle.json", dir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(persist_load(dir, now_unix(), &d, err, sizeof(err)), 0);
	assert_int_equal(d.n_fed, 0);
	persist_data_free(&d);
	free(leaf);
	lkey_free(k);
}

static void prepare_dir_tightens_mode(void **state)
{
	char sub[256], err[512] = "";
	snprintf(sub, sizeof(sub), "%s/loose", root);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(chmod(sub, 0755), 0);
	assert_int_equal(persist_prepare_dir(sub, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* A regular file where the directory should be. */
	snprintf(sub, sizeof(sub), "%s/file", root);
	assert_int_equal(file_write_atomic(sub, "x", 1, 0600), 0);
	assert_int_equal(persist_prepare_dir(sub, err, sizeof(err)), -1);
	assert_non_null(strstr(err, sub));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(state_outgrows_its_size_guess, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_readable_key_files, setup, teardown),
		cmocka_unit_test_setup_teardown(empty_dir_and_forget, setup, teardown),
		cmocka_unit_test_setup_teardown(corrupt_state_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_dir_tightens_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(federated_bundles_persisted, setup, teardown),
		cmocka_unit_test_setup_teardown(old_state_format_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(tampered_svids_are_discarded, setup, teardown),
		cmocka_unit_test_setup_teardown(untrusted_files_are_discarded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, ca_setup, ca_teardown);
}
