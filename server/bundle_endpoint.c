/* bundle_endpoint.c: the SPIFFE bundle endpoint over HTTPS (libmicrohttpd with GnuTLS). */
#include "bundle_endpoint.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "bundle.h"
#include "keys.h"
#include "log.h"
#include "opserver.h"
#include "server_svid.h"
#include "util.h"

/* Lifetime asked for the endpoint's X509-SVID (the CA caps it at its active authority's). */
#define ENDPOINT_SVID_TTL 3600
#define CONN_LIMIT 256
#define CONN_TIMEOUT_S 10

struct bundle_endpoint {
	struct ca *ca;
	char *trust_domain;
	char spiffe_id[300];
	int64_t refresh_hint;
	bool https_web;
	int fd; /* the listening socket; owned here while no daemon holds it */
	int family, port;
	struct svid_renewal svid; /* the running daemon and its renewal */
	int64_t published_seq;

	pthread_mutex_t lock;
	char *doc; /* under lock: the bundle document */
};

/* ---- the HTTP side (MHD's thread) ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
			     const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
								 MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct bundle_endpoint *e = cls;
	(void)version;
	(void)upload_data;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	if (strcmp(url, "/") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, xstrdup("{\"error\":\"not found\"}"), NULL);
	if (!get)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
			     xstrdup("{\"error\":\"method not allowed\"}"), "GET, HEAD");
	/* Queuing on the first call would force "Connection: close" (0.9.75). */
	if (!*con_cls) {
		*con_cls = e;
		return MHD_YES;
	}
	if (*upload_data_size)
		return reply(conn, MHD_HTTP_BAD_REQUEST, xstrdup("{\"error\":\"no body allowed\"}"),
			     NULL);
	pthread_mutex_lock(&e->lock);
	char *doc = e->doc ? xstrdup(e->doc) : NULL;
	pthread_mutex_unlock(&e->lock);
	if (!doc)
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
			     xstrdup("{\"error\":\"no bundle yet\"}"), NULL);
	return reply(conn, MHD_HTTP_OK, doc, NULL);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_debug("bundle endpoint: %s", msg);
}

/* Starts a daemon on e->fd with d's PEM. 0 or -1 (MHD says no more than NULL). */
static int tls_daemon_start(void *owner, struct svid_daemon *d)
{
	struct bundle_endpoint *e = owner;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
			 MHD_USE_TLS | MHD_USE_ITC;
	if (e->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, e,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, e,
				  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)e->fd,
				  MHD_OPTION_HTTPS_MEM_CERT, d->cert_pem,
				  MHD_OPTION_HTTPS_MEM_KEY, d->key_pem,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
				  MHD_OPTION_END);
	return d->mhd ? 0 : -1;
}

/* ---- credentials ---- */

/* A fresh key and an X509-SVID for it from the CA (https_spiffe). */
static int mint_svid(struct bundle_endpoint *e, int64_t now, struct svid_daemon *d,
		     int64_t *not_after, char *err, size_t errlen)
{
	return server_svid_mint(e->ca, e->spiffe_id, ENDPOINT_SVID_TTL, now, &d->cert_pem,
				&d->key_pem, not_after, err, errlen);
}

static int read_files(const char *cert_file, const char *key_file, struct svid_daemon *d,
		      char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = file_check_private(key_file);
	if (r < 0)
		return errorf(err, errlen, "bundle_endpoint_key_file %s: %s", key_file,
			      r == -EPERM ? "readable by others (must be 0600)" : strerror(-r));
	r = file_read_all(cert_file, 1 << 20, &buf, &len);
	if (r < 0)
		return errorf(err, errlen, "bundle_endpoint_cert_file %s: %s", cert_file,
			      strerror(-r));
	d->cert_pem = xrealloc(buf, len + 1);
	d->cert_pem[len] = '\0';
	r = file_read_all(key_file, 1 << 20, &buf, &len);
	if (r < 0)
		return errorf(err, errlen, "bundle_endpoint_key_file %s: %s", key_file,
			      strerror(-r));
	d->key_pem = xrealloc(buf, len + 1);
	d->key_pem[len] = '\0';
	return 0;
}

/* ---- the loop side ---- */

static void publish(struct bundle_endpoint *e)
{
	struct ca_bundle b;
	if (ca_bundle_get(e->ca, &b) < 0)
		return;
	char *doc = bundle_to_spiffe_json(b.x509, b.x509_len, b.jwt, b.sequence, e->refresh_hint);
	int64_t seq = b.sequence;
	ca_bundle_free(&b);
	if (!doc)
		return;
	pthread_mutex_lock(&e->lock);
	char *old = e->doc;
	e->doc = doc;
	pthread_mutex_unlock(&e->lock);
	free(old);
	e->published_seq = seq;
}


int bundle_endpoint_start(const struct bundle_endpoint_options *o, struct ca *ca,
			  struct bundle_endpoint **out, char *err, size_t errlen)
{
	int64_t now = now_unix(), not_after = 0;
	char why[256];
	struct bundle_endpoint *e = xcalloc(1, sizeof(*e));
	e->ca = ca;
	e->trust_domain = xstrdup(o->trust_domain);
	e->refresh_hint = o->refresh_hint;
	e->https_web = o->https_web;
	e->published_seq = -1;
	e->fd = -1;
	snprintf(e->spiffe_id, sizeof(e->spiffe_id), "spiffe://%s/lanyard/server", o->trust_domain);
	pthread_mutex_init(&e->lock, NULL);

	struct svid_daemon *d = &e->svid.cur;
	int rc = e->https_web ? read_files(o->cert_file, o->key_file, d, why, sizeof(why))
			      : mint_svid(e, now, d, &not_after, why, sizeof(why));
	if (rc < 0) {
		errorf(err, errlen, "%s", why);
		goto fail;
	}
	e->fd = opserver_listen_tcp(o->address, o->port, "bundle_endpoint_address", &e->family,
				    why, sizeof(why));
	if (e->fd < 0) {
		errorf(err, errlen, "%s port %d: %s", o->address, o->port, why);
		goto fail;
	}
	e->port = opserver_bound_port(e->fd);
	publish(e);
	if (tls_daemon_start(e, &e->svid.cur) < 0) {
		errorf(err, errlen, "cannot start HTTPS on %s port %d (is the certificate or key "
				    "unusable?)", o->address, e->port);
		goto fail;
	}
	e->svid.renew_at = e->https_web ? INT64_MAX : now + (not_after - now) / 2;
	*out = e;
	return 0;
fail:
	bundle_endpoint_stop(e);
	return -1;
}

void bundle_endpoint_tick(struct bundle_endpoint *e, int64_t now)
{
	if (!e)
		return;
	if (ca_bundle_sequence(e->ca) != e->published_seq)
		publish(e);
	svid_renewal_tick(&e->svid, e->ca, e->spiffe_id, ENDPOINT_SVID_TTL, now, "bundle endpoint",
			  tls_daemon_start, e);
}

int bundle_endpoint_port(const struct bundle_endpoint *e)
{
	return e->port;
}

const char *bundle_endpoint_spiffe_id(const struct bundle_endpoint *e)
{
	return e->spiffe_id;
}

void bundle_endpoint_stop(struct bundle_endpoint *e)
{
	if (!e)
		return;
	bool held = e->svid.cur.mhd != NULL;
	svid_daemon_stop(&e->svid.cur); /* closes the socket when a daemon held it */
	if (!held && e->fd >= 0)
		close(e->fd);
	free(e->doc);
	free(e->trust_domain);
	pthread_mutex_destroy(&e->lock);
	free(e);
}
