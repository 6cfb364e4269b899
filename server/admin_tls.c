/* admin_tls.c: the admin API over mutual TLS; see admin_tls.h for the contract. */
#include "admin_tls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "admin_routes.h"
#include "ca.h"
#include "entry.h"
#include "log.h"
#include "opserver.h"
#include "server_svid.h"
#include "spiffeid.h"
#include "util.h"
#include "x509.h"

#define CONN_LIMIT 64
#define CONN_TIMEOUT_S 30
#define MAX_PEER_CHAIN (64 * 1024)

const char *const admin_tls_result_names[ADMIN_TLS_RESULT_N] = {
	[ADMIN_TLS_OK] = "ok",
	[ADMIN_TLS_NO_CERTIFICATE] = "no_certificate",
	[ADMIN_TLS_WRONG_TRUST_DOMAIN] = "wrong_trust_domain",
	[ADMIN_TLS_UNTRUSTED_CHAIN] = "untrusted_chain",
	[ADMIN_TLS_RESERVED_ID] = "reserved_identity",
	[ADMIN_TLS_NOT_ADMIN] = "not_admin",
	[ADMIN_TLS_INTERNAL] = "internal_error",
};

struct admin_tls {
	struct admin_listener listener; /* what the daemons pass admin_api.c's handler */
	struct ca *ca;
	char spiffe_id[300];
	int fd; /* the listening socket; owned here while no daemon holds it */
	int family, port;
	struct svid_renewal svid; /* the running daemon and its renewal */
	_Atomic uint64_t requests[ADMIN_TLS_RESULT_N];
	_Atomic int64_t logged_at[ADMIN_TLS_RESULT_N];
	_Atomic uint64_t unlogged[ADMIN_TLS_RESULT_N];
};

/* MHD asks for a client certificate only when given trusted CAs, and then lets a client without
 * one through. Requiring it here, before the handshake, makes a certificate-less client fail the
 * handshake; whether the certificate is acceptable is decided per request (admin_tls_authorize),
 * against the bundle of that moment. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	(void)cls;
	(void)socket_context;
	if (code != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci && ci->tls_session)
		gnutls_certificate_server_set_request((gnutls_session_t)ci->tls_session,
						      GNUTLS_CERT_REQUIRE);
}

static int tls_daemon_start(void *owner, struct svid_daemon *d)
{
	struct admin_tls *t = owner;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_TLS | MHD_USE_ITC;
	if (t->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d->mhd = MHD_start_daemon(flags, 0, NULL, NULL, admin_api_handle_request, &t->listener,
				  MHD_OPTION_EXTERNAL_LOGGER, opserver_mhd_log, "admin_tls",
				  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)t->fd,
				  MHD_OPTION_HTTPS_MEM_CERT, d->cert_pem,
				  MHD_OPTION_HTTPS_MEM_KEY, d->key_pem,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, t,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
				  MHD_OPTION_NOTIFY_COMPLETED, admin_api_request_completed, NULL,
				  MHD_OPTION_END);
	return d->mhd ? 0 : -1;
}

static int mint(struct admin_tls *t, int64_t now, struct svid_daemon *d, int64_t *not_after,
		char *err, size_t errlen)
{
	return server_svid_mint(t->ca, t->spiffe_id, ADMIN_TLS_SVID_TTL, now, &d->cert_pem,
				&d->key_pem, not_after, err, errlen);
}

/* ---- the peer (connection threads) ---- */

/* The peer's certificates as concatenated DER, leaf first (caller frees); NULL when none. */
static uint8_t *peer_chain(struct MHD_Connection *conn, size_t *len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	unsigned int n = 0;
	const gnutls_datum_t *certs =
		ci && ci->tls_session
			? gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n)
			: NULL;
	size_t total = 0;
	*len = 0;
	if (!certs || n == 0)
		return NULL;
	for (unsigned int i = 0; i < n; i++)
		total += certs[i].size;
	if (total == 0 || total > MAX_PEER_CHAIN)
		return NULL;
	uint8_t *out = xmalloc(total);
	for (unsigned int i = 0; i < n; i++) {
		memcpy(out + *len, certs[i].data, certs[i].size);
		*len += certs[i].size;
	}
	return out;
}

/* An unexpired entry for id marked admin. 1 yes, 0 no, -1 the datastore failed. */
static int admin_entry_exists(struct datastore *ds, const char *id, int64_t now)
{
	struct entry_filter f = { .spiffe_id = id };
	struct entry **v = NULL;
	size_t n = 0;
	int found = 0;
	if (ds_entry_list(ds, &f, &v, &n) < 0)
		return -1;
	for (size_t i = 0; i < n && !found; i++)
		found = v[i]->admin && (v[i]->expires_at == 0 || v[i]->expires_at > now);
	entry_array_free(v, n);
	return found;
}

static enum admin_tls_result check_peer(struct admin_tls *t, struct MHD_Connection *conn,
					char *why, size_t whylen)
{
	const char *td = t->listener.api->trust_domain;
	struct x509_info leaf = { 0 };
	struct ca_bundle b = { 0 };
	char err[256] = "";
	size_t len = 0;
	int64_t now = now_unix();
	enum admin_tls_result res = ADMIN_TLS_INTERNAL;
	uint8_t *chain = peer_chain(conn, &len);

	if (!chain) {
		snprintf(why, whylen, "no client certificate");
		return ADMIN_TLS_NO_CERTIFICATE;
	}
	res = ADMIN_TLS_UNTRUSTED_CHAIN;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	int bad = x509_split_der(chain, len, &certs, &lens, &n) < 0 || n == 0 ||
		  x509_parse(certs[0], lens[0], &leaf, err, sizeof(err)) < 0;
	free(certs);
	free(lens);
	if (bad || leaf.is_ca || !*leaf.spiffe_id) {
		snprintf(why, whylen, "untrusted chain: the client certificate is not an X509-SVID%s%s",
			 *err ? ": " : "", err);
		goto out;
	}
	if (!spiffeid_member_of(leaf.spiffe_id, td)) {
		res = ADMIN_TLS_WRONG_TRUST_DOMAIN;
		snprintf(why, whylen, "wrong trust domain: %.256s is not of spiffe://%s",
			 leaf.spiffe_id, td);
		goto out;
	}
	if (ca_bundle_get(t->ca, &b) < 0) {
		res = ADMIN_TLS_INTERNAL;
		snprintf(why, whylen, "cannot read the trust bundle");
		goto out;
	}
	if (x509_verify(chain, len, b.x509, b.x509_len, now, err, sizeof(err)) < 0) {
		snprintf(why, whylen, "untrusted chain: %.256s does not chain to the bundle of %s: %s",
			 leaf.spiffe_id, td, err);
		goto out;
	}
	if (spiffeid_reserved(leaf.spiffe_id, td)) {
		res = ADMIN_TLS_RESERVED_ID;
		snprintf(why, whylen, "%.256s belongs to the server or an agent and is never admin",
			 leaf.spiffe_id);
		goto out;
	}
	int admin = admin_entry_exists(t->listener.api->ds, leaf.spiffe_id, now);
	if (admin < 0) {
		res = ADMIN_TLS_INTERNAL;
		snprintf(why, whylen, "cannot read the registration entries");
		goto out;
	}
	if (!admin) {
		res = ADMIN_TLS_NOT_ADMIN;
		snprintf(why, whylen, "not an admin entry: no entry marked admin has the SPIFFE ID "
			 "%.256s", leaf.spiffe_id);
		goto out;
	}
	snprintf(why, whylen, "%s", leaf.spiffe_id);
	res = ADMIN_TLS_OK;
out:
	ca_bundle_free(&b);
	x509_info_free(&leaf);
	free(chain);
	return res;
}

/* At most one line per reason every ADMIN_TLS_LOG_INTERVAL_S: a scanner must not flood the log. */
static void log_refusal(struct admin_tls *t, enum admin_tls_result res, const char *why)
{
	int64_t now = now_unix();
	int64_t last = atomic_load(&t->logged_at[res]);
	if (now - last < ADMIN_TLS_LOG_INTERVAL_S ||
	    !atomic_compare_exchange_strong(&t->logged_at[res], &last, now)) {
		atomic_fetch_add(&t->unlogged[res], 1);
		return;
	}
	uint64_t more = atomic_exchange(&t->unlogged[res], 0);
	if (more)
		log_warnx("admin TLS: refused a client: %s (and %llu more refusals of this kind)",
			  why, (unsigned long long)more);
	else
		log_warnx("admin TLS: refused a client: %s", why);
}

enum admin_tls_result admin_tls_authorize(struct admin_tls *t, struct MHD_Connection *conn,
					  char *why, size_t whylen)
{
	enum admin_tls_result res = check_peer(t, conn, why, whylen);
	atomic_fetch_add(&t->requests[res], 1);
	if (res != ADMIN_TLS_OK)
		log_refusal(t, res, why);
	return res;
}

/* ---- the loop side ---- */

void admin_tls_tick(struct admin_tls *t, int64_t now)
{
	if (t)
		svid_renewal_tick(&t->svid, t->ca, t->spiffe_id, ADMIN_TLS_SVID_TTL, now, "admin TLS",
				  tls_daemon_start, t);
}

int admin_tls_start(struct admin_api *api, struct ca *ca, const char *address, int port,
		    struct admin_tls **out, char *err, size_t errlen)
{
	int64_t now = now_unix(), not_after = 0;
	char why[256];
	struct admin_tls *t = xcalloc(1, sizeof(*t));
	t->listener.api = api;
	t->listener.tls = t;
	t->ca = ca;
	t->fd = -1;
	snprintf(t->spiffe_id, sizeof(t->spiffe_id), "spiffe://%s/%s/server", api->trust_domain,
		 SPIFFEID_RESERVED_SEGMENT);
	if (mint(t, now, &t->svid.cur, &not_after, why, sizeof(why)) < 0) {
		errorf(err, errlen, "cannot mint the listener's X509-SVID: %s", why);
		goto fail;
	}
	t->fd = opserver_listen_tcp(address, port, "admin_bind_address", &t->family, why,
				    sizeof(why));
	if (t->fd < 0) {
		errorf(err, errlen, "%s port %d: %s", address, port, why);
		goto fail;
	}
	t->port = opserver_bound_port(t->fd);
	if (tls_daemon_start(t, &t->svid.cur) < 0) {
		errorf(err, errlen, "cannot start HTTPS on %s port %d", address, t->port);
		goto fail;
	}
	t->svid.renew_at = now + (not_after - now) / 2;
	log_info("admin: API over mutual TLS on https://%s:%d/ (admin entries' X509-SVIDs)",
		 address, t->port);
	*out = t;
	return 0;
fail:
	admin_tls_stop(t);
	return -1;
}

int admin_tls_port(const struct admin_tls *t)
{
	return t->port;
}

void admin_tls_get_stats(const struct admin_tls *t, struct admin_tls_stats *out)
{
	for (int i = 0; i < ADMIN_TLS_RESULT_N; i++)
		out->requests[i] = atomic_load(&t->requests[i]);
}

void admin_tls_stop(struct admin_tls *t)
{
	if (!t)
		return;
	bool held = t->svid.cur.mhd != NULL;
	svid_daemon_stop(&t->svid.cur); /* joins the connection threads; closes the socket it held */
	if (!held && t->fd >= 0)
		close(t->fd);
	free(t);
}
