/* fuzz_ca_state: what the server's CA (server/ca.h) loads at start: the authorities recorded in
 * the datastore (certificate, JWT public key, state), their key files in <data_dir>/ca/, and
 * the upstream CA's certificate and key files (upstream_ca_cert, upstream_ca_key). A corrupt
 * record or file must give an error naming it, never a crash, and never an authority whose key
 * does not match what is published.
 *
 * Input: 8 bytes big-endian "now", a flags byte (1: shared datastore, 2: upstream CA, 4: record
 * the JWT public key, 8: the record is tainted), a state byte (prepared, active, old), then
 * 2-byte big-endian lengths each followed by that many bytes: the record's id (mapped to hex
 * digits: ids name files), its certificate (DER), its JWT SubjectPublicKeyInfo (DER), its X.509
 * key file, its JWT key file, the upstream certificate file; the rest is the upstream key file.
 * An empty file part leaves the file out. The datastore (SQLite) and the data_dir live in
 * /dev/shm (a tmpfs: no disk writes) for the whole run and are emptied before each input. Invariants on
 * success: exactly one authority listed active, and it untainted (a record both active and
 * tainted, which another server's taint racing this one's activation leaves, loads as old); the
 * bundle's certificates split (a corrupt record of another server is left out), and are the
 * upstream CA alone in upstream mode, else at least one per authority of ours; at least one JWT
 * key per authority of ours. On failure: a reason. */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "ca.h"
#include "datastore.h"
#include "fuzz.h"
#include "jwt.h"
#include "x509.h"

static char base[] = "/dev/shm/fuzz_ca_state.XXXXXX";
static char key_dir[300];
static struct datastore *ds;

static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[600];
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

static void cleanup(void)
{
	datastore_close(ds);
	clear_dir(key_dir);
	rmdir(key_dir);
	clear_dir(base);
	rmdir(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	if (!mkdtemp(base))
		abort();
	snprintf(key_dir, sizeof(key_dir), "%s/ca", base);
	char path[400], err[512];
	snprintf(path, sizeof(path), "%s/datastore.sqlite3", base);
	if (datastore_open_sqlite(path, &ds, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_ca_state: %s\n", err);
		abort();
	}
	atexit(cleanup);
	return 0;
}

static const uint8_t *take_len16(struct fuzz_input *in, size_t *len)
{
	size_t l = (size_t)fuzz_take_u8(in) << 8;
	l |= fuzz_take_u8(in);
	if (l > in->n)
		l = in->n;
	const uint8_t *p = in->p;
	in->p += l;
	in->n -= l;
	*len = l;
	return p;
}

static void reset_datastore(void)
{
	struct ca_record **recs = NULL;
	size_t n = 0;
	if (ds_ca_list(ds, &recs, &n) < 0)
		abort();
	for (size_t i = 0; i < n; i++)
		ds_ca_delete(ds, recs[i]->id);
	ca_record_array_free(recs, n);
	ds_kv_set_int(ds, "bundle_sequence", 0);
}

static void check_ca(struct ca *ca, bool upstream)
{
	struct ca_authority_info *info = NULL;
	size_t n = 0, active = 0;
	FUZZ_CHECK(ca_authorities(ca, &info, &n) == 0);
	for (size_t i = 0; i < n; i++) {
		bool is_active = strcmp(info[i].state, "active") == 0;
		FUZZ_CHECK(!(is_active && info[i].tainted));
		active += is_active;
	}
	FUZZ_CHECK(active == 1);
	struct ca_bundle b;
	memset(&b, 0, sizeof(b));
	FUZZ_CHECK(ca_bundle_get(ca, &b) == 0);
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n_certs = 0;
	FUZZ_CHECK(x509_split_der(b.x509, b.x509_len, &certs, &lens, &n_certs) == 0);
	FUZZ_CHECK(upstream ? n_certs == 1 : n_certs >= n);
	FUZZ_CHECK(jwks_count(b.jwt) >= n);
	free(certs);
	free(lens);
	ca_bundle_free(&b);
	free(info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	/* Certificates hold dates up to the year 9999; beyond, there is nothing to find. */
	int64_t now = (int64_t)(fuzz_take_u64(&in) % 253402300800ULL);
	uint8_t flags = fuzz_take_u8(&in), state = fuzz_take_u8(&in);
	size_t id_len, cert_len, spki_len, key_len, jwt_key_len, up_len;
	const uint8_t *id = take_len16(&in, &id_len);
	const uint8_t *cert = take_len16(&in, &cert_len);
	const uint8_t *spki = take_len16(&in, &spki_len);
	const uint8_t *key = take_len16(&in, &key_len);
	const uint8_t *jwt_key = take_len16(&in, &jwt_key_len);
	const uint8_t *up = take_len16(&in, &up_len);

	reset_datastore();
	clear_dir(key_dir);
	struct ca_record r = {.state = state % 3 | (flags & 8 ? CA_STATE_TAINTED : 0)};
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < id_len && i < sizeof(r.id) - 1; i++)
		r.id[i] = hex[id[i] & 15];
	char path[600], up_cert[400], up_key[400];
	if (r.id[0]) {
		r.cert_der = (uint8_t *)cert;
		r.cert_len = cert_len;
		if (flags & 4) {
			r.jwt_spki = (uint8_t *)spki;
			r.jwt_spki_len = spki_len;
		}
		r.not_after = INT64_MAX;
		if (ds_ca_put(ds, &r) < 0)
			abort();
		mkdir(key_dir, 0700);
		snprintf(path, sizeof(path), "%s/%s.key", key_dir, r.id);
		fuzz_write_file(path, key, key_len);
		snprintf(path, sizeof(path), "%s/%s.jwt.key", key_dir, r.id);
		fuzz_write_file(path, jwt_key, jwt_key_len);
	}
	snprintf(up_cert, sizeof(up_cert), "%s/upstream.pem", base);
	snprintf(up_key, sizeof(up_key), "%s/upstream.key", base);
	fuzz_write_file(up_cert, up, up_len);
	fuzz_write_file(up_key, in.p, in.n);

	struct ca_options o = {
		.trust_domain = "example.org",
		.data_dir = base,
		.key_type = KEY_EC_P256,
		.ca_ttl = 30 * 86400,
		.upstream_cert_path = flags & 2 ? up_cert : NULL,
		.upstream_key_path = flags & 2 ? up_key : NULL,
		.shared = flags & 1,
	};
	struct ca *ca = NULL;
	char err[1024] = "";
	if (ca_open(&o, ds, now, &ca, err, sizeof(err)) == 0)
		check_ca(ca, flags & 2);
	else
		FUZZ_CHECK(err[0] != '\0' && ca == NULL);
	ca_close(ca);
	return 0;
}
