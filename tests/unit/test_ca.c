/* The CA: issuance through the signing interface, JWT signing, rotation driven by explicit times,
 * persistence across reopen, key file permissions, and upstream (intermediate) mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ca.h"
#include "datastore.h"
#include "jwt.h"
#include "log.h"
#include "signer.h"
#include "util.h"
#include "x509.h"

#define T0 1800000000LL
#define TTL 6000LL

/* Set (tests/pg_cluster.sh run, ctest's unit/test_ca_pg): the tests of servers sharing a
 * datastore run on that PostgreSQL database, emptied before each. */
static const char *pg_connstr;

static int pg_reset(void)
{
	PGconn *c = PQconnectdb(pg_connstr);
	int ret = -1;
	if (PQstatus(c) == CONNECTION_OK) {
		PQclear(PQexec(c, "SET client_min_messages = warning"));
		PGresult *r = PQexec(c, "DROP SCHEMA public CASCADE; CREATE SCHEMA public");
		ret = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
		PQclear(r);
	}
	if (ret < 0)
		fprintf(stderr, "PostgreSQL: %s\n", PQerrorMessage(c));
	PQfinish(c);
	return ret;
}

struct fx {
	char dir[64];
	struct datastore *ds;
	struct ca_options o;
	/* setup_shared: the signers of servers a (dir) and b (dir/b), started before the
	 * datastore. */
	struct signer *sig_a, *sig_b;
};

/* Starts a signer for the keys of <dir>/ca. */
static int start_signer_for(const char *dir, struct signer **out)
{
	char key_dir[128], err[256];
	snprintf(key_dir, sizeof(key_dir), "%s/ca", dir);
	struct signer_options so = {.key_dir = key_dir, .key_type = KEY_EC_P256, .channels = 2};
	if (signer_start(&so, out, err, sizeof(err)) < 0) {
		fprintf(stderr, "signer: %s\n", err);
		return -1;
	}
	return 0;
}

static int setup_with(void **state, bool signers_first)
{
	log_setup(LOG_LEVEL_WARN, false);
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/lanyard-ca-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	char path[128], err[256];
	/* The signer is a fork of this process, which must have one thread then (the server
	 * starts it before its datastore): PostgreSQL's change-feed thread may hold the
	 * allocator's lock at the fork (AddressSanitizer's is not fork-safe) and the child
	 * would wait for it forever. */
	if (signers_first) {
		snprintf(path, sizeof(path), "%s/b", f->dir);
		if (mkdir(path, 0700) < 0 || start_signer_for(f->dir, &f->sig_a) < 0 ||
		    start_signer_for(path, &f->sig_b) < 0)
			return -1;
	}
	snprintf(path, sizeof(path), "%s/ds.sqlite3", f->dir);
	if (pg_connstr ? pg_reset() < 0 || datastore_open_pg(pg_connstr, 4, &f->ds, err, sizeof(err)) < 0
		       : datastore_open_sqlite(path, &f->ds, err, sizeof(err)) < 0) {
		fprintf(stderr, "datastore: %s\n", err);
		return -1;
	}
	f->o = (struct ca_options){.trust_domain = "example.org", .data_dir = f->dir,
				   .key_type = KEY_EC_P256, .ca_ttl = TTL, .signer = f->sig_a};
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, false);
}

/* For the tests of servers sharing a datastore (also run on PostgreSQL). */
static int setup_shared(void **state)
{
	return setup_with(state, true);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	datastore_close(f->ds);
	signer_stop(f->sig_a);
	signer_stop(f->sig_b);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	int r = system(cmd);
	free(f);
	return r;
}

static void leaf_spki(uint8_t **spki, size_t *len, lkey **key)
{
	assert_int_equal(lkey_generate(KEY_EC_P256, key), 0);
	assert_int_equal(lkey_public_der(*key, spki, len), 0);
}

static size_t bundle_count(struct ca *ca)
{
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(ca, &b), 0);
	const uint8_t **c;
	size_t *l, n;
	assert_int_equal(x509_split_der(b.x509, b.x509_len, &c, &l, &n), 0);
	free(c);
	free(l);
	ca_bundle_free(&b);
	return n;
}

static void issues_valid_svids(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256];
	int64_t now = now_unix();
	assert_int_equal(ca_open(&f->o, f->ds, now, &ca, err, sizeof(err)), 0);
	lkey *k;
	uint8_t *spki, *chain;
	size_t spki_len, chain_len;
	leaf_spki(&spki, &spki_len, &k);
	int64_t na;
	const char *dns[] = {"web.example.org"};
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/web", dns, 1, spki, spki_len, 3600,
				      now, &chain, &chain_len, &na, err, sizeof(err)), 0);
	struct x509_info info;
	assert_int_equal(x509_parse(chain, chain_len, &info, err, sizeof(err)), 0);
	assert_string_equal(info.spiffe_id, "spiffe://example.org/web");
	assert_int_equal(info.n_uri_sans, 1);
	assert_false(info.is_ca);
	assert_true(info.not_before < now && info.not_before >= now - 60);
	assert_int_equal(info.not_after, now + 3600);
	assert_int_equal(na, now + 3600);
	x509_info_free(&info);
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(ca, &b), 0);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, now, err, sizeof(err)), 0);
	/* A TTL longer than the CA's remaining life is capped at the CA's notAfter. */
	free(chain);
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/web", NULL, 0, spki, spki_len,
				      10 * TTL, now, &chain, &chain_len, &na, err, sizeof(err)), 0);
	assert_true(na <= now + TTL);
	/* JWT-SVIDs validate against the bundle's JWT keys. */
	char *tok;
	int64_t exp;
	const char *aud[] = {"db"};
	assert_int_equal(ca_sign_jwt(ca, "spiffe://example.org/web", aud, 1, 300, now, &tok, &exp,
				     err, sizeof(err)), 0);
	struct jwt_claims cl;
	assert_int_equal(jwt_validate(tok, b.jwt, "db", now, &cl, err, sizeof(err)), 0);
	assert_string_equal(cl.sub, "spiffe://example.org/web");
	assert_int_equal(cl.exp, now + 300);
	jwt_claims_free(&cl);
	free(tok);
	free(chain);
	free(spki);
	lkey_free(k);
	ca_bundle_free(&b);
	ca_close(ca);
}

static void rotation_steps(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256];
	assert_int_equal(ca_open(&f->o, f->ds, T0, &ca, err, sizeof(err)), 0);
	assert_int_equal(bundle_count(ca), 1);
	int64_t seq0 = ca_bundle_sequence(ca);
	struct ca_authority_info *ai;
	size_t n;
	ca_authorities(ca, &ai, &n);
	assert_int_equal(n, 1);
	char first[65];
	strcpy(first, ai[0].id);
	int64_t nb = ai[0].not_before, na = ai[0].not_after;
	free(ai);

	/* Before half life nothing happens. */
	assert_int_equal(ca_rotate(ca, nb + (na - nb) / 2 - 1, err, sizeof(err)), 0);
	/* At half life the next authority is prepared and trusted at once. */
	int r = ca_rotate(ca, nb + (na - nb) / 2, err, sizeof(err));
	assert_true(r & CA_CHANGED_BUNDLE);
	assert_false(r & CA_CHANGED_ACTIVE);
	assert_int_equal(bundle_count(ca), 2);
	assert_true(ca_bundle_sequence(ca) > seq0);
	/* At five sixths it becomes the active one. */
	r = ca_rotate(ca, nb + (na - nb) * 5 / 6, err, sizeof(err));
	assert_true(r & CA_CHANGED_ACTIVE);
	ca_authorities(ca, &ai, &n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(ai[i].id, first) == 0)
			assert_string_equal(ai[i].state, "old");
		else if (strcmp(ai[i].state, "active") != 0)
			assert_string_equal(ai[i].state, "prepared");
	free(ai);
	/* New SVIDs chain to the new authority, and still verify against the bundle. */
	lkey *k;
	uint8_t *spki, *chain;
	size_t spki_len, chain_len;
	leaf_spki(&spki, &spki_len, &k);
	int64_t t = nb + (na - nb) * 5 / 6 + 1;
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/w", NULL, 0, spki, spki_len, 60, t,
				      &chain, &chain_len, NULL, err, sizeof(err)), 0);
	struct ca_bundle b;
	ca_bundle_get(ca, &b);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, t, err, sizeof(err)), 0);
	ca_bundle_free(&b);
	/* Reopening keeps the authorities and their states. */
	ca_close(ca);
	assert_int_equal(ca_open(&f->o, f->ds, t, &ca, err, sizeof(err)), 0);
	ca_authorities(ca, &ai, &n);
	bool found_old = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(ai[i].id, first) == 0)
			found_old = strcmp(ai[i].state, "old") == 0;
	assert_true(found_old);
	free(ai);
	ca_bundle_get(ca, &b);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, t, err, sizeof(err)), 0);
	ca_bundle_free(&b);
	/* Once the old authority has expired it leaves the bundle. */
	r = ca_rotate(ca, na, err, sizeof(err));
	assert_true(r & CA_CHANGED_BUNDLE);
	ca_authorities(ca, &ai, &n);
	for (size_t i = 0; i < n; i++)
		assert_string_not_equal(ai[i].id, first);
	free(ai);
	char path[256];
	snprintf(path, sizeof(path), "%s/ca/%s.key", f->dir, first);
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	free(chain);
	free(spki);
	lkey_free(k);
	ca_close(ca);
}

static void long_downtime_recovers(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256];
	assert_int_equal(ca_open(&f->o, f->ds, T0, &ca, err, sizeof(err)), 0);
	ca_close(ca);
	/* The server was off for ten lifetimes: it must come back with a valid active authority. */
	int64_t later = T0 + 10 * TTL;
	assert_int_equal(ca_open(&f->o, f->ds, later, &ca, err, sizeof(err)), 0);
	lkey *k;
	uint8_t *spki, *chain;
	size_t spki_len, chain_len;
	leaf_spki(&spki, &spki_len, &k);
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/w", NULL, 0, spki, spki_len, 60,
				      later, &chain, &chain_len, NULL, err, sizeof(err)), 0);
	struct ca_bundle b;
	ca_bundle_get(ca, &b);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, later, err, sizeof(err)), 0);
	ca_bundle_free(&b);
	free(chain);
	free(spki);
	lkey_free(k);
	ca_close(ca);
}

static void refuses_readable_keys(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256];
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), 0);
	struct ca_authority_info *ai;
	size_t n;
	ca_authorities(ca, &ai, &n);
	char path[256];
	snprintf(path, sizeof(path), "%s/ca/%s.key", f->dir, ai[0].id);
	free(ai);
	ca_close(ca);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	chmod(path, 0640);
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "readable by group or others"));
	chmod(path, 0600);
}

/* Files the CA loads must be the server's own and unchangeable by others, and a key must match
 * its certificate; each refusal names the file. */
static void verifies_files_at_load(void **state)
{
	struct fx *f = *state;
	struct ca *ca = NULL;
	char err[512];
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), 0);
	struct ca_authority_info *ai;
	size_t n;
	ca_authorities(ca, &ai, &n);
	char key[256], jwt[256], saved[256];
	snprintf(key, sizeof(key), "%s/ca/%s.key", f->dir, ai[0].id);
	snprintf(jwt, sizeof(jwt), "%s/ca/%s.jwt.key", f->dir, ai[0].id);
	snprintf(saved, sizeof(saved), "%s/saved.key", f->dir);
	free(ai);
	ca_close(ca);

	/* Another owner. */
	assert_int_equal(chown(key, 65534, 65534), 0);
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), -1);
	assert_non_null(strstr(err, key));
	assert_non_null(strstr(err, "owned by uid 65534"));
	assert_int_equal(chown(key, geteuid(), getegid()), 0);

	/* A key that is not the certificate's: the JWT key put in the X.509 key's place. */
	assert_int_equal(rename(key, saved), 0);
	uint8_t *pem;
	size_t len;
	assert_int_equal(file_read_all(jwt, 1 << 20, &pem, &len), 0);
	assert_int_equal(file_write_atomic(key, pem, len, 0600), 0);
	free(pem);
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), -1);
	assert_non_null(strstr(err, key));
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(rename(saved, key), 0);

	/* A symbolic link in a key's place. */
	assert_int_equal(rename(key, saved), 0);
	assert_int_equal(symlink(saved, key), 0);
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(unlink(key), 0);
	assert_int_equal(rename(saved, key), 0);

	/* A key directory others can write to. */
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/ca", f->dir);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), -1);
	assert_non_null(strstr(err, dir));
	assert_int_equal(chmod(dir, 0700), 0);

	assert_int_equal(ca_open(&f->o, f->ds, now_unix(), &ca, err, sizeof(err)), 0);
	ca_close(ca);
}

static void upstream_mode(void **state)
{
	struct fx *f = *state;
	char err[256];
	lkey *up;
	assert_int_equal(lkey_generate(KEY_EC_P384, &up), 0);
	uint8_t *upder;
	size_t uplen;
	int64_t now = now_unix();
	struct x509_ca_params p = {.common_name = "Upstream Root", .not_before = now - 60,
				   .not_after = now + 10 * TTL};
	assert_int_equal(x509_make_ca(up, NULL, NULL, 0, &p, &upder, &uplen), 0);
	char cert_path[128], key_path[128];
	snprintf(cert_path, sizeof(cert_path), "%s/up.pem", f->dir);
	snprintf(key_path, sizeof(key_path), "%s/up.key", f->dir);
	char *pem = pem_encode("CERTIFICATE", upder, uplen);
	assert_int_equal(file_write_atomic(cert_path, pem, strlen(pem), 0644), 0);
	free(pem);
	assert_int_equal(lkey_to_pem(up, &pem), 0);
	assert_int_equal(file_write_atomic(key_path, pem, strlen(pem), 0600), 0);
	free(pem);

	f->o.upstream_cert_path = cert_path;
	f->o.upstream_key_path = key_path;
	struct ca *ca;
	assert_int_equal(ca_open(&f->o, f->ds, now, &ca, err, sizeof(err)), 0);
	struct ca_bundle b;
	ca_bundle_get(ca, &b);
	assert_int_equal(b.x509_len, uplen);
	assert_memory_equal(b.x509, upder, uplen);
	lkey *k;
	uint8_t *spki, *chain;
	size_t spki_len, chain_len;
	leaf_spki(&spki, &spki_len, &k);
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/w", NULL, 0, spki, spki_len, 60, now,
				      &chain, &chain_len, NULL, err, sizeof(err)), 0);
	const uint8_t **c;
	size_t *l, n;
	assert_int_equal(x509_split_der(chain, chain_len, &c, &l, &n), 0);
	assert_int_equal(n, 2); /* leaf + our intermediate */
	free(c);
	free(l);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, now, err, sizeof(err)), 0);
	ca_bundle_free(&b);
	free(chain);
	free(spki);
	free(upder);
	lkey_free(k);
	lkey_free(up);
	ca_close(ca);
	f->o.upstream_cert_path = f->o.upstream_key_path = NULL;
}

/* The id of this CA's authority in state (the first one). */
static void id_in_state(struct ca *ca, const char *state, char out[65])
{
	struct ca_authority_info *ai;
	size_t n;
	ca_authorities(ca, &ai, &n);
	out[0] = 0;
	for (size_t i = 0; i < n && !out[0]; i++)
		if (strcmp(ai[i].state, state) == 0)
			strcpy(out, ai[i].id);
	free(ai);
}

static size_t tainted_count(struct ca *ca, const char *id)
{
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(ca, &b), 0);
	size_t n = b.n_tainted;
	if (id && n)
		assert_string_equal(b.tainted[0].id, id);
	ca_bundle_free(&b);
	return n;
}

static void operator_rotation(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256], old[65], id[65], again[65];
	assert_int_equal(ca_open(&f->o, f->ds, T0, &ca, err, sizeof(err)), 0);
	id_in_state(ca, "active", old);
	/* Wrong requests are refused with the reason, and change nothing. */
	assert_int_equal(ca_activate(ca, "0123456789abcdef0123456789abcdef", err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "unknown authority"));
	assert_int_equal(ca_activate(ca, old, err, sizeof(err)), -EBUSY);
	assert_int_equal(ca_taint(ca, old, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "is active"));
	assert_int_equal(ca_tainted_check(ca, old, err, sizeof(err)), -EBUSY);
	assert_int_equal(bundle_count(ca), 1);
	/* prepare: a second authority in the bundle at once; only one prepared at a time. */
	int64_t seq = ca_bundle_sequence(ca);
	assert_int_equal(ca_prepare(ca, T0 + 1, id, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_true(ca_bundle_sequence(ca) > seq);
	assert_int_equal(bundle_count(ca), 2);
	assert_int_equal(ca_prepare(ca, T0 + 1, again, err, sizeof(err)), -EEXIST);
	/* activate: the prepared one signs, the active one is old. */
	assert_true(ca_activate(ca, id, err, sizeof(err)) & CA_CHANGED_ACTIVE);
	char now_active[65];
	id_in_state(ca, "active", now_active);
	assert_string_equal(now_active, id);
	id_in_state(ca, "old", again);
	assert_string_equal(again, old);
	/* taint the old one: listed as tainted in the bundle, still trusted until revoked. */
	assert_int_equal(tainted_count(ca, NULL), 0);
	assert_int_equal(ca_taint(ca, old, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_int_equal(ca_taint(ca, old, err, sizeof(err)), 0);
	assert_int_equal(tainted_count(ca, old), 1);
	assert_int_equal(bundle_count(ca), 2);
	/* The taint survives a restart. */
	ca_close(ca);
	assert_int_equal(ca_open(&f->o, f->ds, T0 + 2, &ca, err, sizeof(err)), 0);
	assert_int_equal(tainted_count(ca, old), 1);
	assert_int_equal(ca_tainted_check(ca, id, err, sizeof(err)), -EBUSY);
	/* revoke: out of the bundle, the datastore and the disk. */
	assert_int_equal(ca_revoke(ca, id, err, sizeof(err)), -EBUSY);
	assert_int_equal(ca_revoke(ca, old, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_int_equal(bundle_count(ca), 1);
	assert_int_equal(tainted_count(ca, NULL), 0);
	char path[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/ca/%s.key", f->dir, old);
	assert_int_equal(stat(path, &st), -1);
	ca_close(ca);
	assert_int_equal(ca_open(&f->o, f->ds, T0 + 3, &ca, err, sizeof(err)), 0);
	assert_int_equal(bundle_count(ca), 1);
	ca_close(ca);
}

/* A tainted prepared authority is never activated by the schedule: a fresh one is prepared,
 * then activated. */
static void tainted_prepared_never_activates(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256], id[65], active[65];
	assert_int_equal(ca_open(&f->o, f->ds, T0, &ca, err, sizeof(err)), 0);
	assert_true(ca_prepare(ca, T0 + 1, id, err, sizeof(err)) > 0);
	assert_int_equal(ca_taint(ca, id, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_int_equal(ca_activate(ca, id, err, sizeof(err)), -EBUSY);
	int r = ca_rotate(ca, T0 + TTL * 5 / 6, err, sizeof(err));
	assert_true(r & CA_CHANGED_BUNDLE);
	assert_false(r & CA_CHANGED_ACTIVE);
	assert_true(ca_rotate(ca, T0 + TTL * 5 / 6 + 1, err, sizeof(err)) & CA_CHANGED_ACTIVE);
	id_in_state(ca, "active", active);
	assert_string_not_equal(active, id);
	ca_close(ca);
}

/* Options of two servers a and b sharing f's datastore, b with its keys in dir_b. */
static void shared_options(struct fx *f, struct ca_options *oa, struct ca_options *ob,
			   char *dir_b, size_t len)
{
	snprintf(dir_b, len, "%s/b", f->dir);
	if (!f->sig_b)
		assert_int_equal(mkdir(dir_b, 0700), 0);
	*oa = *ob = f->o;
	oa->shared = ob->shared = true;
	ob->data_dir = dir_b;
	ob->signer = f->sig_b;
}

/* Two servers on one datastore: one taints and revokes the other's old authority; the owner
 * learns both on its sync and drops the key. */
static void shared_taint_and_revoke(void **state)
{
	struct fx *f = *state;
	struct ca *a, *b;
	char err[256], dir_b[128], old[65], id[65];
	struct ca_options oa, ob;
	shared_options(f, &oa, &ob, dir_b, sizeof(dir_b));
	assert_int_equal(ca_open(&oa, f->ds, T0, &a, err, sizeof(err)), 0);
	id_in_state(a, "active", old);
	assert_true(ca_prepare(a, T0 + 1, id, err, sizeof(err)) > 0);
	assert_true(ca_activate(a, id, err, sizeof(err)) > 0);
	assert_int_equal(ca_open(&ob, f->ds, T0 + 2, &b, err, sizeof(err)), 0);
	/* b must not activate a's authority, nor taint a's active one. */
	assert_int_equal(ca_activate(b, id, err, sizeof(err)), -EXDEV);
	assert_int_equal(ca_taint(b, id, err, sizeof(err)), -EBUSY);
	assert_int_equal(ca_taint(b, old, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_int_equal(tainted_count(b, old), 1);
	assert_int_equal(ca_sync(a, T0 + 100), CA_CHANGED_BUNDLE);
	assert_int_equal(tainted_count(a, old), 1);
	assert_int_equal(ca_revoke(b, old, err, sizeof(err)), CA_CHANGED_BUNDLE);
	assert_int_equal(ca_sync(a, T0 + 200), CA_CHANGED_BUNDLE);
	assert_int_equal(tainted_count(a, NULL), 0);
	char path[256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/ca/%s.key", f->dir, old);
	assert_int_equal(stat(path, &st), -1);
	/* Each bundle: a's active one and b's own, nothing of the revoked one. */
	assert_int_equal(bundle_count(a), 2);
	ca_sync(b, T0 + 300);
	assert_int_equal(bundle_count(b), 2);
	ca_close(a);
	ca_close(b);
}

/* Marks authority id's record in the datastore tainted, in the given state, as another server's
 * write racing this one's activation leaves it. */
static void record_tainted(struct datastore *ds, const char *id, int state)
{
	struct ca_record **recs;
	size_t n;
	bool found = false;
	assert_int_equal(ds_ca_list(ds, &recs, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(recs[i]->id, id) == 0) {
			recs[i]->state = state | CA_STATE_TAINTED;
			assert_int_equal(ds_ca_put(ds, recs[i]), 0);
			found = true;
		}
	ca_record_array_free(recs, n);
	assert_true(found);
}

/* What every listing of ca must show: exactly one authority of this server listed active, and
 * it untainted (ca_authorities: the status page; ca_authorities_json: "authority show", other
 * servers' authorities too); tainted_id, when given, listed as tainted and not active. The
 * active one's id in active. */
static void one_untainted_active(struct ca *ca, const char *tainted_id, char active[65])
{
	struct ca_authority_info *ai;
	size_t n, n_active = 0;
	ca_authorities(ca, &ai, &n);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(ai[i].state, "active") == 0) {
			assert_false(ai[i].tainted);
			strcpy(active, ai[i].id);
			n_active++;
		}
		if (tainted_id && strcmp(ai[i].id, tainted_id) == 0)
			assert_true(ai[i].tainted && strcmp(ai[i].state, "active") != 0);
	}
	free(ai);
	assert_int_equal(n_active, 1);
	json_t *doc = ca_authorities_json(ca);
	json_t *au;
	size_t i, x509_active = 0;
	json_array_foreach(json_object_get(doc, "authorities"), i, au) {
		const char *st = json_string_value(json_object_get(au, "state"));
		bool tainted = json_is_true(json_object_get(au, "tainted"));
		if (strcmp(st, "active") == 0)
			assert_false(tainted);
		if (strcmp(st, "active") == 0 &&
		    strcmp(json_string_value(json_object_get(au, "kind")), "x509") == 0 &&
		    strcmp(json_string_value(json_object_get(au, "server")), "this") == 0)
			x509_active++;
		if (tainted_id && strcmp(json_string_value(json_object_get(au, "id")), tainted_id) == 0)
			assert_true(tainted && strcmp(st, "active") != 0);
	}
	json_decref(doc);
	assert_int_equal(x509_active, 1);
}

/* A leaf signed now verifies against the bundle, and not by the authority tainted. */
static void signs_with(struct ca *ca, int64_t now, const char *tainted_id)
{
	lkey *k;
	uint8_t *spki, *chain;
	size_t spki_len, chain_len;
	int64_t na;
	char err[256];
	leaf_spki(&spki, &spki_len, &k);
	assert_int_equal(ca_sign_x509(ca, "spiffe://example.org/web", NULL, 0, spki, spki_len, 600,
				      now, &chain, &chain_len, &na, err, sizeof(err)), 0);
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(ca, &b), 0);
	assert_int_equal(x509_verify(chain, chain_len, b.x509, b.x509_len, now, err, sizeof(err)), 0);
	for (size_t i = 0; i < b.n_tainted; i++)
		if (strcmp(b.tainted[i].id, tainted_id) == 0)
			assert_int_equal(x509_verify(chain, chain_len, b.tainted[i].cert,
						     b.tainted[i].cert_len, now, err, sizeof(err)),
					 -1);
	ca_bundle_free(&b);
	free(chain);
	free(spki);
	lkey_free(k);
}

/* Another server's taint racing this one's activation (shared datastore): the record ends up
 * tainted while this server has just made the authority active. On its sync this server
 * retires it (old, tainted, no longer signing) and activates a new one at once; no listing, on
 * this server or the other, shows a tainted authority as active or two active ones. */
static void shared_taint_races_activation(void **state)
{
	struct fx *f = *state;
	struct ca *a, *b;
	char err[256], dir_b[128], id[65], active[65], b_active[65];
	struct ca_options oa, ob;
	static const int raced[] = { CA_STATE_ACTIVE, CA_STATE_PREPARED };
	shared_options(f, &oa, &ob, dir_b, sizeof(dir_b));
	assert_int_equal(ca_open(&oa, f->ds, T0, &a, err, sizeof(err)), 0);
	assert_int_equal(ca_open(&ob, f->ds, T0, &b, err, sizeof(err)), 0);
	id_in_state(b, "active", b_active);
	for (size_t r = 0; r < 2; r++) {
		int64_t t = T0 + 200 * (int64_t)r;
		assert_true(ca_prepare(a, t + 10, id, err, sizeof(err)) > 0);
		assert_true(ca_activate(a, id, err, sizeof(err)) & CA_CHANGED_ACTIVE);
		/* b's taint, read before the activation, written after it. */
		record_tainted(f->ds, id, raced[r]);
		/* b lists a's authority as tainted, not active, before a has synced. */
		ca_sync(b, t + 50);
		one_untainted_active(b, id, active);
		assert_string_equal(active, b_active);
		int changed = ca_sync(a, t + 100);
		assert_true(changed > 0 && (changed & CA_CHANGED_ACTIVE));
		one_untainted_active(a, id, active);
		assert_string_not_equal(active, id);
		assert_true(tainted_count(a, NULL) >= 1);
		signs_with(a, t + 100, id);
		ca_sync(b, t + 150);
		one_untainted_active(b, id, active);
		assert_string_equal(active, b_active);
	}
	/* The record says old and tainted: a restart keeps one active authority. */
	ca_close(a);
	assert_int_equal(ca_open(&oa, f->ds, T0 + 500, &a, err, sizeof(err)), 0);
	one_untainted_active(a, id, active);
	ca_close(a);
	ca_close(b);
}

/* A record both active and tainted at start (written by an older server, or the race above
 * before this server's sync): loaded as old and tainted, a new authority active, one listed
 * active; it signs, the tainted one does not. */
static void active_tainted_record_at_start(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256], id[65], active[65];
	int64_t now = now_unix();
	assert_int_equal(ca_open(&f->o, f->ds, now, &ca, err, sizeof(err)), 0);
	id_in_state(ca, "active", id);
	ca_close(ca);
	record_tainted(f->ds, id, CA_STATE_ACTIVE);
	assert_int_equal(ca_open(&f->o, f->ds, now + 1, &ca, err, sizeof(err)), 0);
	one_untainted_active(ca, id, active);
	assert_string_not_equal(active, id);
	assert_int_equal(tainted_count(ca, id), 1);
	signs_with(ca, now + 1, id);
	assert_true(ca_next_rotation(ca) > now + 1);
	ca_close(ca);
}

/* Authority id's record as stored (a copy; NULL when absent). */
static struct ca_record *stored_record(struct datastore *ds, const char *id)
{
	struct ca_record **recs, *out = NULL;
	size_t n;
	assert_int_equal(ds_ca_list(ds, &recs, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(recs[i]->id, id) == 0) {
			out = recs[i];
			recs[i] = NULL;
		}
	ca_record_array_free(recs, n);
	return out;
}

static int stored_state(struct datastore *ds, const char *id)
{
	struct ca_record *r = stored_record(ds, id);
	int st = r ? r->state : -1;
	ca_record_free(r);
	return st;
}

/* b (stale view: id prepared) has just tainted, or tainted and revoked, a's prepared authority
 * id, and a, which has not synced, activated it: the taint (or the revocation) survives, id
 * never signs, one untainted authority of a is active and signs, on a and as b lists it. */
static void raced_activation_lost_nothing(struct fx *f, struct ca *a, struct ca *b,
					  const char *id, bool revoked, int64_t now)
{
	char active[65];
	assert_int_equal(stored_state(f->ds, id), revoked ? -1 : CA_STATE_OLD | CA_STATE_TAINTED);
	one_untainted_active(a, id, active);
	assert_string_not_equal(active, id);
	signs_with(a, now, id);
	ca_sync(a, now + 20);
	ca_sync(b, now + 20);
	assert_int_equal(stored_state(f->ds, id), revoked ? -1 : CA_STATE_OLD | CA_STATE_TAINTED);
	one_untainted_active(a, id, active);
	assert_string_not_equal(active, id);
	signs_with(a, now + 20, id);
	one_untainted_active(b, id, active);
}

/* The reverse of shared_taint_races_activation: b's taint of a's prepared authority is written
 * first, a's activation of it (from a's view, not yet synced) second; then the same with b's
 * revocation after its taint; then a's scheduled rotation in place of the operator. The write
 * of the activation must not clear the taint nor re-create the revoked record: the stored
 * record wins, the authority never signs, another one is active at once. A stale write of the
 * record as it was before the taint (prepared, untainted) loses nothing either. */
static void shared_taint_before_activation(void **state)
{
	struct fx *f = *state;
	struct ca *a, *b;
	char err[256], dir_b[128], id[65];
	struct ca_options oa, ob;
	int64_t now = now_unix();
	shared_options(f, &oa, &ob, dir_b, sizeof(dir_b));
	assert_int_equal(ca_open(&oa, f->ds, now, &a, err, sizeof(err)), 0);
	assert_int_equal(ca_open(&ob, f->ds, now, &b, err, sizeof(err)), 0);
	for (int round = 0; round < 3; round++) {
		int64_t t = round < 2 ? now + 100 * round : now + TTL * 5 / 6 + 100;
		assert_true(ca_prepare(a, t, id, err, sizeof(err)) > 0);
		struct ca_record *before = stored_record(f->ds, id);
		assert_non_null(before);
		assert_int_equal(before->state, CA_STATE_PREPARED);
		ca_sync(b, t + 11);
		assert_int_equal(ca_taint(b, id, err, sizeof(err)), CA_CHANGED_BUNDLE);
		if (round == 1)
			assert_int_equal(ca_revoke(b, id, err, sizeof(err)), CA_CHANGED_BUNDLE);
		if (round < 2) {
			assert_int_equal(ca_activate(a, id, err, sizeof(err)), -ESTALE);
		} else {
			/* The prepared one is due (five sixths of the active one's life). */
			assert_true(ca_rotate(a, t + 12, err, sizeof(err)) & CA_CHANGED_ACTIVE);
		}
		raced_activation_lost_nothing(f, a, b, id, round == 1, t + 12);
		/* Another stale writer: the record as it was read before the taint. */
		if (round != 1) {
			assert_int_equal(ds_ca_put(f->ds, before), 0);
			raced_activation_lost_nothing(f, a, b, id, false, t + 40);
		}
		ca_record_free(before);
	}
	ca_close(a);
	ca_close(b);
}

/* A corrupt record of another server (no certificate, or bytes that are not one) stays out of
 * the bundle, which agents could not parse otherwise; the server still starts and syncs. */
static void shared_corrupt_peer_left_out(void **state)
{
	struct fx *f = *state;
	struct ca *a, *b;
	char err[256], dir_b[128];
	static const uint8_t not_cert[] = {0x30, 0x03, 0x02, 0x01, 0x00};
	struct ca_options oa, ob;
	shared_options(f, &oa, &ob, dir_b, sizeof(dir_b));
	assert_int_equal(ca_open(&oa, f->ds, T0, &a, err, sizeof(err)), 0);
	struct ca_record r = {.id = "c0ffee", .state = CA_STATE_ACTIVE, .not_after = T0 + 10 * TTL};
	assert_int_equal(ds_ca_put(f->ds, &r), 0);
	snprintf(r.id, sizeof(r.id), "bad");
	r.cert_der = (uint8_t *)not_cert;
	r.cert_len = sizeof(not_cert);
	assert_int_equal(ds_ca_put(f->ds, &r), 0);
	ca_sync(a, T0 + 100);
	assert_int_equal(bundle_count(a), 1);
	assert_int_equal(ca_open(&ob, f->ds, T0 + 2, &b, err, sizeof(err)), 0);
	assert_int_equal(bundle_count(b), 2);
	ca_close(a);
	ca_close(b);
}

/* A batch larger than one signer message: every good request gets a leaf that verifies against
 * the bundle and carries its own key; a bad name or key fails only its request. */
static void batch_signs_each_and_isolates_errors(void **state)
{
	struct fx *f = *state;
	struct ca *ca;
	char err[256];
	int64_t now = now_unix();
	assert_int_equal(ca_open(&f->o, f->ds, now, &ca, err, sizeof(err)), 0);
	enum { N = 21 };
	lkey *keys[N];
	uint8_t *spkis[N];
	size_t spki_lens[N];
	struct ca_x509_req reqs[N];
	char ids[N][64];
	static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
	for (size_t i = 0; i < N; i++) {
		leaf_spki(&spkis[i], &spki_lens[i], &keys[i]);
		snprintf(ids[i], sizeof(ids[i]), "spiffe://example.org/w%zu", i);
		reqs[i] = (struct ca_x509_req){ .spiffe_id = ids[i], .spki = spkis[i],
						.spki_len = spki_lens[i], .ttl = 600 };
	}
	reqs[3].spiffe_id = "not a spiffe id";
	reqs[17].spki = junk;
	reqs[17].spki_len = sizeof(junk);
	assert_int_equal(ca_sign_x509_batch(ca, reqs, N, now), N - 2);
	struct ca_bundle b;
	assert_int_equal(ca_bundle_get(ca, &b), 0);
	for (size_t i = 0; i < N; i++) {
		if (i == 3 || i == 17) {
			assert_int_equal(reqs[i].status, -1);
			assert_null(reqs[i].chain);
			assert_true(reqs[i].err[0] != 0);
			continue;
		}
		assert_int_equal(reqs[i].status, 0);
		assert_int_equal(x509_verify(reqs[i].chain, reqs[i].chain_len, b.x509, b.x509_len,
					     now, err, sizeof(err)), 0);
		assert_true(lkey_matches_cert(keys[i], reqs[i].chain, reqs[i].chain_len));
		struct x509_info info;
		assert_int_equal(x509_parse(reqs[i].chain, reqs[i].chain_len, &info, err,
					    sizeof(err)), 0);
		assert_string_equal(info.spiffe_id, ids[i]);
		assert_int_equal(info.not_after, now + 600);
		assert_int_equal(reqs[i].not_after, now + 600);
		x509_info_free(&info);
	}
	for (size_t i = 0; i < N; i++) {
		free(reqs[i].chain);
		free(spkis[i]);
		lkey_free(keys[i]);
	}
	ca_bundle_free(&b);
	ca_close(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(issues_valid_svids, setup, teardown),
		cmocka_unit_test_setup_teardown(rotation_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(long_downtime_recovers, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_readable_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(verifies_files_at_load, setup, teardown),
		cmocka_unit_test_setup_teardown(upstream_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(operator_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(tainted_prepared_never_activates, setup, teardown),
		cmocka_unit_test_setup_teardown(shared_taint_and_revoke, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_corrupt_peer_left_out, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_taint_races_activation, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(active_tainted_record_at_start, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_taint_before_activation, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(batch_signs_each_and_isolates_errors, setup,
						teardown),
	};
	/* On PostgreSQL: the tests of servers sharing the datastore (HA). */
	const struct CMUnitTest shared[] = {
		cmocka_unit_test_setup_teardown(shared_taint_and_revoke, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_corrupt_peer_left_out, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_taint_races_activation, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(active_tainted_record_at_start, setup_shared, teardown),
		cmocka_unit_test_setup_teardown(shared_taint_before_activation, setup_shared, teardown),
	};
	pg_connstr = getenv("LANYARD_TEST_PG_CONNSTR");
	if (pg_connstr && *pg_connstr)
		return cmocka_run_group_tests_name("test_ca on PostgreSQL", shared, NULL, NULL);
	pg_connstr = NULL;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
