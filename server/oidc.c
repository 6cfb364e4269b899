/* oidc.c: the OIDC discovery document and JWK Set, on libmicrohttpd's thread. */
#include "oidc.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "der_pem.h"
#include "jwt.h"
#include "keys.h"
#include "log.h"
#include "opserver.h"
#include "util.h"
#include "x509.h"

#define CONN_LIMIT 256
#define CONN_TIMEOUT_S 10
#define PEM_MAX (256 * 1024)
/* How often the certificate and key files are looked at for a renewal. */
#define TLS_CHECK_EVERY_S 5

const char *const oidc_route_names[OIDC_ROUTES_N] = { "discovery", "keys", "other" };
const unsigned int oidc_status_codes[OIDC_STATUS_N] = { 200, 400, 404, 405, 500 };

struct oidc {
	struct MHD_Daemon *daemon;
	struct ca *ca;
	char *issuer;
	char *prefix; /* the issuer URL's path ("" or "/lanyard") */
	/* HTTPS: the files, what was loaded from them (the running daemon's; owned until it
	 * stops) and their identity when loaded, to notice a renewal. Loop thread only. */
	char *cert_file, *key_file;
	char *cert_pem, *key_pem;
	char files_sig[256];
	int64_t next_check;
	bool tls;
	int port, family;
	int64_t max_age_s;
	atomic_uint_fast64_t answers[OIDC_ROUTES_N][OIDC_STATUS_N];
	atomic_uint_fast64_t reloads;
	pthread_mutex_t lock;
	/* Rendered for bundle sequence doc_seq; rebuilt under lock when the sequence moves. */
	int64_t doc_seq;
	char *discovery, *jwks;
	size_t n_keys;
};

/* ---- the documents ---- */

int oidc_issuer_check(const char *issuer, char *why, size_t whylen)
{
	const char *host;
	if (strncmp(issuer, "https://", 8) == 0)
		host = issuer + 8;
	else if (strncmp(issuer, "http://", 7) == 0)
		host = issuer + 7;
	else
		return errorf(why, whylen, "must be an https:// URL (http:// for tests)");
	if (!*host || *host == '/')
		return errorf(why, whylen, "has no host");
	if (strpbrk(issuer, "?#"))
		return errorf(why, whylen, "may not have a query or a fragment");
	if (strpbrk(issuer, " \t\r\n\"\\"))
		return errorf(why, whylen, "may not contain spaces, quotes or backslashes");
	if (issuer[strlen(issuer) - 1] == '/')
		return errorf(why, whylen, "may not end with '/' (the discovery document is at "
				  "ISSUER/.well-known/openid-configuration)");
	return 0;
}

/* The JWS algorithm a relying party must use with a key of this SPKI, or NULL. */
static const char *spki_alg(const uint8_t *spki, size_t len)
{
	enum key_type t;
	if (spki_key_type(spki, len, &t, NULL) < 0)
		return NULL;
	return t == KEY_EC_P256 ? "ES256" : t == KEY_EC_P384 ? "ES384" : "RS256";
}

static bool has_string(const json_t *a, const char *s)
{
	size_t i;
	const json_t *v;
	json_array_foreach(a, i, v)
		if (strcmp(json_string_value(v), s) == 0)
			return true;
	return false;
}

/* Renders both documents from the CA's current bundle. Called with o->lock held. */
static int render(struct oidc *o, int64_t seq)
{
	struct ca_bundle b;
	json_t *keys = json_array(), *algs = json_array(), *disc = NULL, *set = NULL;
	char *d = NULL, *k = NULL;
	int ret = -1;
	if (ca_bundle_get(o->ca, &b) < 0)
		goto out;
	for (size_t i = 0; i < jwks_count(b.jwt); i++) {
		const uint8_t *spki;
		size_t len;
		const char *kid = jwks_get(b.jwt, i, &spki, &len);
		const char *alg = spki_alg(spki, len);
		json_t *jwk = jwk_from_spki(spki, len, kid, "sig");
		if (!jwk || !alg) {
			json_decref(jwk);
			continue;
		}
		json_object_set_new(jwk, "alg", json_string(alg));
		json_array_append_new(keys, jwk);
		if (!has_string(algs, alg))
			json_array_append_new(algs, json_string(alg));
	}
	char *jwks_uri = NULL;
	if (asprintf(&jwks_uri, "%s/keys", o->issuer) < 0)
		goto out;
	size_t n_keys = json_array_size(keys);
	disc = json_pack("{s:s,s:s,s:[s],s:[s],s:O}", "issuer", o->issuer, "jwks_uri", jwks_uri,
			 "response_types_supported", "id_token",
			 "subject_types_supported", "public",
			 "id_token_signing_alg_values_supported", algs);
	free(jwks_uri);
	set = json_pack("{s:O}", "keys", keys);
	d = disc ? json_dumps(disc, JSON_INDENT(2)) : NULL;
	k = set ? json_dumps(set, JSON_INDENT(2)) : NULL;
	if (!d || !k)
		goto out;
	free(o->discovery);
	free(o->jwks);
	o->discovery = d;
	o->jwks = k;
	d = k = NULL;
	o->n_keys = n_keys;
	o->doc_seq = seq;
	ret = 0;
out:
	ca_bundle_free(&b);
	json_decref(keys);
	json_decref(algs);
	json_decref(disc);
	json_decref(set);
	free(d);
	free(k);
	return ret;
}

/* Renders the documents again when the bundle changed. Called with o->lock held. */
static void refresh(struct oidc *o)
{
	int64_t seq = ca_bundle_sequence(o->ca);
	if ((seq != o->doc_seq || !o->jwks) && render(o, seq) < 0)
		log_error("oidc: cannot render the discovery documents");
}

/* A copy of the document, as of the current bundle; NULL on failure. */
static char *document(struct oidc *o, enum oidc_route r)
{
	pthread_mutex_lock(&o->lock);
	refresh(o);
	const char *doc = r == OIDC_DISCOVERY ? o->discovery : o->jwks;
	char *copy = doc ? strdup(doc) : NULL;
	pthread_mutex_unlock(&o->lock);
	return copy;
}

/* ---- serving ---- */

/* The route of a request path: as is, or under the issuer's path. */
static enum oidc_route route_of(const struct oidc *o, const char *url)
{
	size_t pl = strlen(o->prefix);
	if (pl && strncmp(url, o->prefix, pl) == 0 && url[pl] == '/')
		url += pl;
	if (strcmp(url, "/.well-known/openid-configuration") == 0)
		return OIDC_DISCOVERY;
	if (strcmp(url, "/keys") == 0)
		return OIDC_KEYS;
	return OIDC_OTHER;
}

static void count(struct oidc *o, enum oidc_route r, unsigned int status)
{
	int c = 0;
	while (c < OIDC_STATUS_N - 1 && oidc_status_codes[c] != status)
		c++;
	atomic_fetch_add(&o->answers[r][c], 1);
}

static enum MHD_Result answer(struct oidc *o, struct MHD_Connection *conn, enum oidc_route r,
			      unsigned int status, char *body)
{
	count(o, r, status);
	if (!body)
		return MHD_NO;
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body,
								    MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	char cc[64];
	if (status == MHD_HTTP_OK)
		snprintf(cc, sizeof(cc), "public, max-age=%lld", (long long)o->max_age_s);
	else
		snprintf(cc, sizeof(cc), "no-store");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static char *error_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *error_body(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *j = json_pack("{s:s}", "error", msg);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **con_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	struct oidc *o = cls;
	enum oidc_route r = route_of(o, url);
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	if (r == OIDC_OTHER)
		return answer(o, conn, r, MHD_HTTP_NOT_FOUND,
			      error_body("no such resource: %.128s", url));
	if (!get)
		return answer(o, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED,
			      error_body("method %.16s not allowed", method));
	/* Answered at once, before the body is read (MHD then closes the connection). */
	if (opserver_request_has_body(conn))
		return answer(o, conn, r, MHD_HTTP_BAD_REQUEST,
			      error_body("a %.16s request takes no body", method));
	/* A good answer waits for the second call: queuing on the first forces "Connection:
	 * close" in 0.9.75 (see STACK-NOTES). */
	if (!*con_cls) {
		*con_cls = o;
		return MHD_YES;
	}
	char *doc = document(o, r);
	if (!doc)
		return answer(o, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR,
			      error_body("cannot render the document"));
	return answer(o, conn, r, MHD_HTTP_OK, doc);
}

/* ---- the certificate and key ---- */

/* Wipes the key, frees both and sets them to NULL. */
static void free_pems(char **cert_pem, char **key_pem)
{
	if (*key_pem)
		secure_zero(*key_pem, strlen(*key_pem));
	free(*key_pem);
	free(*cert_pem);
	*key_pem = *cert_pem = NULL;
}

/* Device, inode, size and modification time of both files: a renewal (written in place, or a
 * Kubernetes Secret volume's symlink swap) changes it. "" when either cannot be read. */
static void files_signature(const char *cert_file, const char *key_file, char *out, size_t len)
{
	struct stat c, k;
	if (stat(cert_file, &c) < 0 || stat(key_file, &k) < 0) {
		out[0] = '\0';
		return;
	}
	snprintf(out, len, "%lx:%lx:%lld:%lld.%ld/%lx:%lx:%lld:%lld.%ld", (unsigned long)c.st_dev,
		 (unsigned long)c.st_ino, (long long)c.st_size, (long long)c.st_mtim.tv_sec,
		 c.st_mtim.tv_nsec, (unsigned long)k.st_dev, (unsigned long)k.st_ino,
		 (long long)k.st_size, (long long)k.st_mtim.tv_sec, k.st_mtim.tv_nsec);
}

static int read_pem(const char *path, const char *key, char **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = file_read_all(path, PEM_MAX, &buf, &len);
	if (r < 0)
		return errorf(err, errlen, "%s %s: cannot read: %s", key, path, strerror(-r));
	*out = (char *)buf;
	return 0;
}

/* Refuses a key file others can read, then checks that the certificate file holds a certificate
 * and that the key is its key, so that a mistake is named here rather than as a TLS failure. */
static int load_tls(const char *cert_file, const char *key_file, char **cert_pem, char **key_pem,
		    char *err, size_t errlen)
{
	struct stat st;
	uint8_t *der = NULL;
	size_t der_len = 0;
	struct x509_info xi = { 0 };
	lkey *k = NULL;
	char why[256];
	int ret = -1;
	if (stat(key_file, &st) == 0 && (st.st_mode & S_IROTH))
		return errorf(err, errlen, "oidc_discovery_key_file %s: others can read it (chmod "
			      "o-rwx)", key_file);
	if (read_pem(cert_file, "oidc_discovery_cert_file", cert_pem, err, errlen) < 0 ||
	    read_pem(key_file, "oidc_discovery_key_file", key_pem, err, errlen) < 0)
		goto out;
	/* The leaf comes first: decode the first certificate only. */
	static const char *const cert_label[] = { "CERTIFICATE" };
	if (pem_decode_first(*cert_pem, strlen(*cert_pem), cert_label, 1, &der, &der_len) < 0 ||
	    x509_parse(der, der_len, &xi, why, sizeof(why)) < 0) {
		errorf(err, errlen, "oidc_discovery_cert_file %s: no PEM certificate in it",
		       cert_file);
		goto out;
	}
	if (lkey_from_pem(*key_pem, strlen(*key_pem), &k) < 0) {
		errorf(err, errlen, "oidc_discovery_key_file %s: no usable PEM private key (EC P-256, "
		       "P-384 or RSA, unencrypted)", key_file);
		goto out;
	}
	if (!lkey_matches_cert(k, der, der_len)) {
		errorf(err, errlen, "oidc_discovery_key_file %s is not the key of the certificate in "
		       "oidc_discovery_cert_file %s", key_file, cert_file);
		goto out;
	}
	if (xi.not_after <= now_unix())
		log_warnx("oidc: the certificate in %s expired", cert_file);
	ret = 0;
out:
	free(der);
	x509_info_free(&xi);
	lkey_free(k);
	if (ret < 0)
		free_pems(cert_pem, key_pem);
	return ret;
}

/* ---- start and stop ---- */

static void oidc_free(struct oidc *o)
{
	free_pems(&o->cert_pem, &o->key_pem);
	free(o->cert_file);
	free(o->key_file);
	free(o->discovery);
	free(o->jwks);
	free(o->issuer);
	free(o->prefix);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* The path of the issuer URL ("" when it has none). */
static char *issuer_path(const char *issuer)
{
	const char *host = strstr(issuer, "://") + 3;
	const char *slash = strchr(host, '/');
	return xstrdup(slash ? slash : "");
}

/* A daemon on the listening socket fd, with cert_pem/key_pem (NULL: plain HTTP), which must stay
 * valid until it stops. MHD_USE_ITC lets oidc_reload_tls hand fd over with MHD_quiesce_daemon. */
static struct MHD_Daemon *start_daemon(struct oidc *o, int fd, const char *cert_pem,
				       const char *key_pem)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
			     MHD_USE_ITC;
	if (o->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cert_pem)
		flags |= MHD_USE_TLS;
	/* Without a certificate the TLS part of the list is skipped. */
	struct MHD_OptionItem tls[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert_pem },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key_pem },
		{ MHD_OPTION_END, 0, NULL },
	};
	return MHD_start_daemon(
		flags, 0, NULL, NULL, handle_request, o, MHD_OPTION_EXTERNAL_LOGGER,
		opserver_mhd_log, (void *)"oidc", MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
		MHD_OPTION_ARRAY, cert_pem ? tls : tls + 2, MHD_OPTION_END);
}

int oidc_start(const struct oidc_options *opt, struct oidc **out, char *err, size_t errlen)
{
	char why[256];
	int fd = -1, family = AF_INET;
	*out = NULL;
	if (oidc_issuer_check(opt->issuer, why, sizeof(why)) < 0)
		return errorf(err, errlen, "oidc_issuer \"%s\": %s", opt->issuer, why);
	if (!!opt->cert_file != !!opt->key_file)
		return errorf(err, errlen, "oidc_discovery_cert_file and oidc_discovery_key_file go "
			      "together");
	struct oidc *o = xcalloc(1, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	o->ca = opt->ca;
	o->issuer = xstrdup(opt->issuer);
	o->prefix = issuer_path(opt->issuer);
	o->max_age_s = opt->max_age_s;
	if (opt->cert_file) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			errorf(err, errlen, "this libmicrohttpd has no TLS: use plain HTTP behind an "
			       "ingress (no oidc_discovery_cert_file)");
			goto fail;
		}
		files_signature(opt->cert_file, opt->key_file, o->files_sig, sizeof(o->files_sig));
		if (load_tls(opt->cert_file, opt->key_file, &o->cert_pem, &o->key_pem, err,
			     errlen) < 0)
			goto fail;
		o->cert_file = xstrdup(opt->cert_file);
		o->key_file = xstrdup(opt->key_file);
		o->tls = true;
		o->next_check = now_unix() + TLS_CHECK_EVERY_S;
	}
	fd = opserver_listen_tcp(opt->address, opt->port < 0 ? 0 : opt->port,
				 "oidc_discovery_address", &family, err, errlen);
	if (fd < 0)
		goto fail;
	o->port = opserver_bound_port(fd);
	o->family = family;
	o->daemon = start_daemon(o, fd, o->cert_pem, o->key_pem);
	if (!o->daemon) {
		errorf(err, errlen, "cannot start the HTTP%s server on %.200s port %d",
		       o->tls ? "S" : "", opt->address, o->port);
		close(fd);
		goto fail;
	}
	log_info("oidc: discovery for issuer %s on %s://%s:%d/.well-known/openid-configuration",
		 o->issuer, o->tls ? "https" : "http", opt->address, o->port);
	*out = o;
	return 0;
fail:
	oidc_free(o);
	return -1;
}

void oidc_stop(struct oidc *o)
{
	if (!o)
		return;
	if (o->daemon)
		MHD_stop_daemon(o->daemon);
	oidc_free(o);
}

int oidc_port(const struct oidc *o)
{
	return o->port;
}

void oidc_stats(struct oidc *o, struct oidc_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int r = 0; r < OIDC_ROUTES_N; r++)
		for (int c = 0; c < OIDC_STATUS_N; c++)
			out->answers[r][c] = atomic_load(&o->answers[r][c]);
	pthread_mutex_lock(&o->lock);
	refresh(o);
	out->keys = o->n_keys;
	pthread_mutex_unlock(&o->lock);
	out->tls = o->tls;
	out->reloads = atomic_load(&o->reloads);
}

/* Hands the listening socket from the running daemon to one with the new certificate: the old
 * daemon stops accepting (MHD_quiesce_daemon), the new one starts on the same socket, then the
 * old one stops (closing its connections, which clients reopen). If the new one cannot start,
 * the old certificate is served again. */
static int swap_daemon(struct oidc *o, char *cert_pem, char *key_pem)
{
	MHD_socket fd = MHD_quiesce_daemon(o->daemon);
	if (fd == MHD_INVALID_SOCKET)
		return -1;
	struct MHD_Daemon *d = start_daemon(o, (int)fd, cert_pem, key_pem);
	bool swapped = d != NULL;
	if (!d)
		d = start_daemon(o, (int)fd, o->cert_pem, o->key_pem);
	MHD_stop_daemon(o->daemon);
	o->daemon = d;
	if (!d) {
		log_error("oidc: the discovery endpoint stopped: cannot restart it on its socket");
		close((int)fd);
	}
	return swapped ? 0 : -1;
}

int oidc_reload_tls(struct oidc *o, int64_t now)
{
	char sig[sizeof(o->files_sig)], err[512];
	if (!o || !o->tls || !o->daemon || now < o->next_check)
		return 0;
	o->next_check = now + TLS_CHECK_EVERY_S;
	files_signature(o->cert_file, o->key_file, sig, sizeof(sig));
	if (!sig[0] || strcmp(sig, o->files_sig) == 0)
		return 0;
	/* Remembered before loading, so that a broken renewal is reported once, not every check. */
	snprintf(o->files_sig, sizeof(o->files_sig), "%s", sig);
	char *cert_pem = NULL, *key_pem = NULL;
	if (load_tls(o->cert_file, o->key_file, &cert_pem, &key_pem, err, sizeof(err)) < 0) {
		log_error("oidc: the renewed certificate is not used (the previous one is served): %s",
			  err);
		return -1;
	}
	if (swap_daemon(o, cert_pem, key_pem) < 0) {
		log_error("oidc: cannot serve the renewed certificate of %s", o->cert_file);
		free_pems(&cert_pem, &key_pem);
		return -1;
	}
	free_pems(&o->cert_pem, &o->key_pem);
	o->cert_pem = cert_pem;
	o->key_pem = key_pem;
	atomic_fetch_add(&o->reloads, 1);
	log_info("oidc: serving the renewed certificate of %s", o->cert_file);
	return 1;
}
