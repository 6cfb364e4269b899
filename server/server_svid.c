/* server_svid.c: see server_svid.h. */
#include "server_svid.h"

#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "bundle.h"
#include "keys.h"
#include "log.h"
#include "util.h"

/* After a failed renewal. */
#define RENEW_RETRY_S 5

int server_svid_mint(struct ca *ca, const char *spiffe_id, int64_t ttl, int64_t now,
		     char **cert_pem, char **key_pem, int64_t *not_after, char *err, size_t errlen)
{
	lkey *key = NULL;
	uint8_t *spki = NULL, *chain = NULL;
	size_t spki_len = 0, chain_len = 0;
	int ret = -1;

	*cert_pem = NULL;
	*key_pem = NULL;
	if (lkey_generate(KEY_EC_P256, &key) < 0 || lkey_public_der(key, &spki, &spki_len) < 0) {
		errorf(err, errlen, "cannot generate a key");
		goto out;
	}
	if (ca_sign_x509(ca, spiffe_id, NULL, 0, spki, spki_len, ttl, now, &chain, &chain_len,
			 not_after, err, errlen) < 0)
		goto out;
	*cert_pem = bundle_to_pem(chain, chain_len);
	if (!*cert_pem || lkey_to_pem(key, key_pem) < 0) {
		errorf(err, errlen, "cannot encode the SVID");
		free(*cert_pem);
		*cert_pem = NULL;
		goto out;
	}
	ret = 0;
out:
	free(spki);
	free(chain);
	lkey_free(key);
	return ret;
}

void svid_daemon_stop(struct svid_daemon *d)
{
	if (d->mhd)
		MHD_stop_daemon(d->mhd);
	if (d->key_pem) {
		secure_zero(d->key_pem, strlen(d->key_pem));
		free(d->key_pem);
	}
	free(d->cert_pem);
	memset(d, 0, sizeof(*d));
}

static void renewal_failed(struct svid_renewal *r, struct svid_daemon *next, int64_t now)
{
	r->failing = true;
	r->renew_at = now + RENEW_RETRY_S;
	svid_daemon_stop(next);
}

void svid_renewal_tick(struct svid_renewal *r, struct ca *ca, const char *spiffe_id, int64_t ttl,
		       int64_t now, const char *what, svid_daemon_start_fn start, void *owner)
{
	if (now < r->renew_at)
		return;
	struct svid_daemon next = { 0 };
	int64_t not_after = 0;
	char err[256];
	if (server_svid_mint(ca, spiffe_id, ttl, now, &next.cert_pem, &next.key_pem, &not_after,
			     err, sizeof(err)) < 0) {
		if (!r->failing)
			log_error("%s: cannot renew its X509-SVID (will retry): %s", what, err);
		renewal_failed(r, &next, now);
		return;
	}
	if (r->cur.mhd)
		MHD_quiesce_daemon(r->cur.mhd); /* the socket stays open, now the owner's */
	if (start(owner, &next) < 0) {
		/* The old daemon no longer accepts; keep the socket and try again soon. */
		log_error("%s: cannot restart the listener with the new SVID (will retry)", what);
		svid_daemon_stop(&r->cur);
		renewal_failed(r, &next, now);
		return;
	}
	svid_daemon_stop(&r->cur);
	r->cur = next;
	r->failing = false;
	r->renew_at = now + (not_after - now) / 2;
	log_debug("%s: X509-SVID for %s renewed, next at %lld", what, spiffe_id,
		  (long long)r->renew_at);
}
