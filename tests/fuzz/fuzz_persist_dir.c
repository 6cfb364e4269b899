/* fuzz_persist_dir: everything the agent loads from its data_dir at start (persist_load,
 * agent/persist.h): bundle.pem, bundle.json, agent_key.pem, agent_svid.pem, state.json and
 * federated_bundles.json, which whoever could write the directory controls. fuzz_persist feeds
 * state.json alone; this one the files together, so that the agent SVID is checked against the
 * persisted bundle and the federated bundles against the persisted trust domain.
 *
 * Input: 8 bytes big-endian "now" (unix seconds), then the six files in the order above,
 * separated by NUL bytes (none of them holds one); an empty part leaves that file out. The files
 * are written 0600 into a private temporary directory (the loader's ownership and mode checks
 * pass). Invariants on success: the agent key and chain come together and match; every
 * federated bundle names a valid trust domain other than ours and holds CA certificates or JWT
 * keys; the state.json invariants of persist_check.h. On failure: a reason. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "jwt.h"
#include "keys.h"
#include "persist.h"
#include "persist_check.h"
#include "spiffeid.h"
#include "x509.h"

static const char *const files[] = {
	"bundle.pem",	  "bundle.json", "agent_key.pem", "agent_svid.pem",
	"state.json",	  "federated_bundles.json",
};
#define N_FILES (sizeof(files) / sizeof(files[0]))

static char dir[] = "/tmp/fuzz_persist_dir.XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void cleanup(void)
{
	char path[256];
	for (size_t i = 0; i < N_FILES; i++) {
		path_of(path, sizeof(path), files[i]);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_logs();
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
	return 0;
}

static void check_agent(const struct persist_data *d)
{
	FUZZ_CHECK((d->agent_key == NULL) == (d->agent_chain == NULL));
	if (!d->agent_key)
		return;
	lkey *k = NULL;
	FUZZ_CHECK(lkey_from_der(d->agent_key, d->agent_key_len, &k) == 0);
	FUZZ_CHECK(lkey_matches_cert(k, d->agent_chain, d->agent_chain_len));
	lkey_free(k);
}

static void check_fed_one(const struct fed_snap *f, const char *own_td)
{
	FUZZ_CHECK(f->trust_domain && trust_domain_validate(f->trust_domain, NULL, 0) == 0);
	FUZZ_CHECK(!own_td || strcmp(f->trust_domain, own_td) != 0);
	struct jwks *keys = NULL;
	FUZZ_CHECK(f->jwt_bundle &&
		   jwks_from_json(f->jwt_bundle, strlen(f->jwt_bundle), &keys, NULL, 0) == 0);
	size_t n_keys = jwks_count(keys);
	jwks_free(keys);
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	FUZZ_CHECK(x509_split_der(f->x509, f->x509_len, &certs, &lens, &n) == 0);
	FUZZ_CHECK(n > 0 || n_keys > 0);
	for (size_t i = 0; i < n; i++) {
		struct x509_info info;
		FUZZ_CHECK(x509_parse(certs[i], lens[i], &info, NULL, 0) == 0);
		FUZZ_CHECK(info.is_ca);
		x509_info_free(&info);
	}
	free(certs);
	free(lens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	int64_t now = (int64_t)(fuzz_take_u64(&in) & INT64_MAX);
	for (size_t i = 0; i < N_FILES; i++) {
		size_t len;
		const uint8_t *p = fuzz_take_until(&in, 0, &len);
		char path[256];
		path_of(path, sizeof(path), files[i]);
		fuzz_write_file(path, p, len);
	}

	struct persist_data d;
	char err[1024] = "";
	if (persist_load(dir, now, &d, err, sizeof(err)) == 0) {
		check_agent(&d);
		fuzz_persist_check_state(&d, now);
		for (size_t i = 0; i < d.n_fed; i++)
			check_fed_one(&d.fed[i], d.trust_domain);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	persist_data_free(&d);
	return 0;
}
