/* tls.c: wolfSSL glue. A lanyard_tls owns the WOLFSSL_CTX built from the source's newest
 * context and rebuilds it (lazily, on the next new session) whenever the source moved on; each
 * WOLFSSL session holds a reference on the ctx it was made from, so open connections keep
 * their credentials while new ones get the renewed SVID.
 *
 * Peer verification: no CA is loaded into the ctx, so wolfSSL cannot verify the peer on its own
 * and always hands the leaf (depth 0, the last call) to verify_cb. There the whole chain is
 * verified against the bundle of the peer's own trust domain (as SPIFFE requires, not against
 * the union of all bundles), the leaf is checked as an X509-SVID, and the ID goes through the
 * authorizer. Returning 0 fails the handshake with a certificate alert.
 *
 * Resumption (off unless lanyard_tls_set_resumption): a resumed handshake skips the certificate
 * exchange and so verify_cb. Every session therefore gets hs_done, which re-runs the whole peer
 * check on a resumed one, from the peer chain the session kept (SESSION_CERTS), against the
 * CURRENT authorizer and bundle at the current time, and fails the handshake when it does not
 * pass. Sessions live in a tls_resume table per configuration, emptied whenever the ctx is
 * rebuilt (a new local SVID or new bundles), so nothing resumes across a rotation. A client
 * keeps the last session per peer name (lanyard_tls_ssl_new_peer); a server keeps TLS 1.2
 * sessions by ID through wolfSSL's external cache. The server issues no tickets: wolfSSL 5.5.4
 * restores a TLS 1.3 ticket's peer chain only from its small process-wide cache and resumes
 * without any peer chain once the entry is evicted, leaving nothing to re-check. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "tls_resume.h"
#include "util.h"
#include "x509.h"

struct lanyard_tls {
	lanyard_x509_source *src;
	bool server;
	lanyard_authorizer *authz;
	struct tls_resume *sessions; /* NULL: no resumption; set before the first ctx */
	pthread_mutex_t lock;
	/* Under lock: */
	WOLFSSL_CTX *ctx;
	uint64_t ctx_gen;
	char last_error[512];
};

static void reject(struct lanyard_tls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reject(struct lanyard_tls *t, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("liblanyard: %s refused: %s", t->server ? "client" : "server", msg);
	pthread_mutex_lock(&t->lock);
	snprintf(t->last_error, sizeof(t->last_error), "%s", msg);
	pthread_mutex_unlock(&t->lock);
}

/* Verifies the peer chain (DER pieces, leaf first). 0 to accept. */
static int check_peer(struct lanyard_tls *t, const WOLFSSL_BUFFER_INFO *certs, int n)
{
	char td[TRUST_DOMAIN_MAX + 1], e[256];
	struct lanyard_x509_context *ctx = NULL;
	struct x509_info leaf = {0};
	const struct ly_bundle *b;
	uint8_t *chain = NULL;
	size_t len = 0, pos = 0;
	int ret = -1;

	for (int i = 0; i < n; i++)
		len += certs[i].length;
	chain = malloc(len ? len : 1);
	if (!chain) {
		reject(t, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		memcpy(chain + pos, certs[i].buffer, certs[i].length);
		pos += certs[i].length;
	}
	if (x509_parse(certs[0].buffer, certs[0].length, &leaf, e, sizeof(e)) < 0) {
		reject(t, "malformed certificate: %s", e);
		goto out;
	}
	if (leaf.n_uri_sans != 1 || spiffeid_validate_leaf(leaf.spiffe_id, e, sizeof(e)) < 0) {
		reject(t, "not an X509-SVID: it needs exactly one URI SAN holding a workload "
			  "SPIFFE ID");
		goto out;
	}
	if (leaf.is_ca) {
		reject(t, "%s: the leaf certificate is a CA", leaf.spiffe_id);
		goto out;
	}
	spiffeid_parse(leaf.spiffe_id, td, NULL, NULL, 0);
	ctx = lanyard_x509_source_context(t->src);
	b = ctx ? ly_context_bundle(ctx, td) : NULL;
	if (!b) {
		reject(t, "%s: no trust bundle for trust domain %s", leaf.spiffe_id, td);
		goto out;
	}
	if (x509_verify(chain, len, b->der, b->len, now_unix(), e, sizeof(e)) < 0) {
		reject(t, "%s: certificate does not verify against the bundle of %s: %s",
		       leaf.spiffe_id, td, e);
		goto out;
	}
	if (lanyard_authorizer_check(t->authz, leaf.spiffe_id) != LANYARD_OK) {
		reject(t, "%s is not authorized", leaf.spiffe_id);
		goto out;
	}
	ret = 0;
out:
	lanyard_x509_context_unref(ctx);
	x509_info_free(&leaf);
	free(chain);
	return ret;
}

static int verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *st)
{
	struct lanyard_tls *t = st ? st->userCtx : NULL;

	if (!t || !st->certs || st->totalCerts <= 0)
		return 0;
	/* Intermediates come first; the whole chain is judged once, with the leaf. */
	if (st->error_depth > 0)
		return 1;
	return check_peer(t, st->certs, st->totalCerts) == 0 ? 1 : 0;
}

/* More certificates than wolfSSL keeps of a peer's chain (MAX_CHAIN_DEPTH + 1). */
#define PEER_CHAIN_MAX 16

/* wolfSSL ex_data slots: the lanyard_tls of a ctx, and a client ssl's tls_resume tag. */
static int ctx_ex_index = -1, ssl_ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void)
{
	ctx_ex_index = wolfSSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	ssl_ex_index = wolfSSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The peer chain a (possibly resumed) session holds, checked as in verify_cb. 0 to accept. */
static int recheck_peer(struct lanyard_tls *t, WOLFSSL *ssl)
{
#ifndef SESSION_CERTS
	/* A wolfSSL without SESSION_CERTS (the daemons' sp build, which bench_tls compiles this file
	 * against) keeps no chain to check a resumed session with: refused, a full handshake follows. */
	(void)ssl;
	reject(t, "a resumed session without the peer's certificates (no SESSION_CERTS)");
	return -1;
#else
	WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(ssl);
	WOLFSSL_BUFFER_INFO certs[PEER_CHAIN_MAX];
	int n = chain ? wolfSSL_get_chain_count(chain) : 0;

	if (n <= 0 || n > PEER_CHAIN_MAX) {
		reject(t, "a resumed session without the peer's certificates");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int len = wolfSSL_get_chain_length(chain, i);

		certs[i].buffer = wolfSSL_get_chain_cert(chain, i);
		certs[i].length = len > 0 ? (unsigned int)len : 0;
		if (!certs[i].buffer || len <= 0) {
			reject(t, "a resumed session with an empty peer certificate");
			return -1;
		}
	}
	return check_peer(t, certs, n);
#endif
}

static int peer_leaf(WOLFSSL *ssl, struct x509_info *info);

/* Keeps a verified client session under the ssl's tag, unless the ctx was rebuilt meanwhile
 * (its session was authenticated with the previous SVID). */
static void remember(struct lanyard_tls *t, WOLFSSL *ssl)
{
	uint64_t tag = (uintptr_t)wolfSSL_get_ex_data(ssl, ssl_ex_index);
	struct x509_info leaf = {0};
	WOLFSSL_SESSION *sess;

	if (!tag || peer_leaf(ssl, &leaf) != LANYARD_OK)
		goto out;
	sess = wolfSSL_get1_session(ssl);
	if (!sess)
		goto out;
	pthread_mutex_lock(&t->lock);
	if (wolfSSL_get_SSL_CTX(ssl) == t->ctx)
		tls_resume_put(t->sessions, tag, sess, t->ctx, leaf.not_after);
	else
		wolfSSL_SESSION_free(sess);
	pthread_mutex_unlock(&t->lock);
out:
	x509_info_free(&leaf);
}

/* A refused resumption: the session is not offered (client) or resumed (server) again. */
static void forget_session(struct lanyard_tls *t, WOLFSSL *ssl)
{
	const unsigned char *id;
	unsigned int idlen = 0;

	if (!t->server) {
		tls_resume_drop(t->sessions, (uintptr_t)wolfSSL_get_ex_data(ssl, ssl_ex_index));
		return;
	}
	id = wolfSSL_get_session(ssl) ? wolfSSL_SESSION_get_id(wolfSSL_get_session(ssl), &idlen)
				      : NULL;
	if (id && idlen)
		tls_resume_drop_key(t->sessions, id, idlen);
}

/* Every handshake ends here: a full one was verified by verify_cb (a client keeps its session);
 * a resumed one is checked again. A negative return fails the handshake. */
static int hs_done(WOLFSSL *ssl, void *ud)
{
	struct lanyard_tls *t = ud;

	if (!wolfSSL_session_reused(ssl)) {
		if (!t->server && t->sessions)
			remember(t, ssl);
		return 0;
	}
	if (recheck_peer(t, ssl) == 0)
		return 0;
	if (t->sessions)
		forget_session(t, ssl);
	return VERIFY_CERT_ERROR;
}

/* Client, TLS 1.3: the resumable session exists once the server's ticket arrived, after the
 * handshake (on a later read). The handshake was verified by then. */
static int ticket_cb(WOLFSSL *ssl, const unsigned char *ticket, int len, void *ud)
{
	(void)ticket;
	(void)len;
	remember(ud, ssl);
	return 0;
}

static struct lanyard_tls *tls_of(WOLFSSL *ssl)
{
	return wolfSSL_CTX_get_ex_data(wolfSSL_get_SSL_CTX(ssl), ctx_ex_index);
}

/* Server, TLS 1.2: wolfSSL's external session cache, kept in t->sessions by session ID.
 * Returns 1: the table took the reference. */
static int server_new_session(WOLFSSL *ssl, WOLFSSL_SESSION *sess)
{
	struct lanyard_tls *t = tls_of(ssl);
	struct x509_info leaf = {0};
	const unsigned char *id;
	unsigned int idlen = 0;
	int kept = 0;

	id = wolfSSL_SESSION_get_id(sess, &idlen);
	if (!t || !t->sessions || !id || idlen == 0 || peer_leaf(ssl, &leaf) != LANYARD_OK)
		goto out;
	pthread_mutex_lock(&t->lock);
	if (wolfSSL_get_SSL_CTX(ssl) == t->ctx) {
		tls_resume_put(t->sessions, tls_resume_claim(t->sessions, id, idlen), sess, t->ctx,
			       leaf.not_after);
		kept = 1;
	}
	pthread_mutex_unlock(&t->lock);
out:
	x509_info_free(&leaf);
	return kept;
}

static WOLFSSL_SESSION *server_get_session(WOLFSSL *ssl, const unsigned char *id, int len,
					   int *copy)
{
	struct lanyard_tls *t = tls_of(ssl);

	*copy = 0; /* the reference tls_resume_get took goes to wolfSSL */
	if (!t || !t->sessions || len <= 0)
		return NULL;
	return tls_resume_get(t->sessions, id, (size_t)len, wolfSSL_get_SSL_CTX(ssl), now_unix());
}

static void server_sessions(struct lanyard_tls *t, WOLFSSL_CTX *c)
{
	wolfSSL_CTX_NoTicketTLSv12(c);
	wolfSSL_CTX_no_ticket_TLSv13(c);
	if (!t->sessions) {
		wolfSSL_CTX_set_session_cache_mode(c, WOLFSSL_SESS_CACHE_OFF);
		return;
	}
	/* Only our table, never wolfSSL's process-wide cache (shared by every ctx). */
	wolfSSL_CTX_set_session_cache_mode(c, WOLFSSL_SESS_CACHE_SERVER |
						      WOLFSSL_SESS_CACHE_NO_INTERNAL);
	wolfSSL_CTX_sess_set_new_cb(c, server_new_session);
	wolfSSL_CTX_sess_set_get_cb(c, server_get_session);
}

static WOLFSSL_CTX *build_ctx(struct lanyard_tls *t, const struct lanyard_x509_svid *svid,
			      char *err, size_t errlen)
{
	WOLFSSL_CTX *c;
	char *pem = NULL;

	c = wolfSSL_CTX_new(t->server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
	if (!c) {
		ly_err(err, errlen, LANYARD_ENOMEM, "wolfSSL_CTX_new failed");
		return NULL;
	}
	pem = lanyard_x509_svid_chain_pem(svid);
	if (wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS || !pem ||
	    wolfSSL_CTX_use_certificate_chain_buffer(c, (const unsigned char *)pem,
						     (long)strlen(pem)) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_buffer(c, svid->key, (long)svid->key_len,
					      WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
		ly_err(err, errlen, LANYARD_EINVAL, "wolfSSL refused the SVID %s", svid->spiffe_id);
		goto fail;
	}
	wolfSSL_CTX_set_verify(c, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			       verify_cb);
	wolfSSL_CTX_SetCertCbCtx(c, t);
	pthread_once(&ex_once, ex_init);
	if (wolfSSL_CTX_set_ex_data(c, ctx_ex_index, t) != WOLFSSL_SUCCESS) {
		ly_err(err, errlen, LANYARD_ENOMEM, "wolfSSL_CTX_set_ex_data failed");
		goto fail;
	}
	if (t->server)
		server_sessions(t, c);
	free(pem);
	return c;
fail:
	free(pem);
	wolfSSL_CTX_free(c);
	return NULL;
}

/* The ctx of the newest context, with a reference for the caller. */
static WOLFSSL_CTX *current_ctx(struct lanyard_tls *t, int *code, char *err, size_t errlen)
{
	lanyard_x509_svid *svid = lanyard_x509_source_svid(t->src);
	WOLFSSL_CTX *c = NULL;

	if (!svid) {
		*code = ly_err(err, errlen, LANYARD_ENOTFOUND, "no X.509 SVID yet");
		return NULL;
	}
	pthread_mutex_lock(&t->lock);
	if (!t->ctx || t->ctx_gen != svid->owner->generation) {
		WOLFSSL_CTX *fresh = build_ctx(t, svid, err, errlen);

		if (fresh) {
			wolfSSL_CTX_free(t->ctx); /* open sessions keep their own references */
			t->ctx = fresh;
			/* Sessions of the previous SVID or bundles are not resumed. */
			if (t->sessions)
				tls_resume_clear(t->sessions);
			t->ctx_gen = svid->owner->generation;
			log_debug("liblanyard: TLS %s credentials now %s serial %s",
				  t->server ? "server" : "client", svid->spiffe_id, svid->serial);
		} else if (!t->ctx) {
			*code = LANYARD_EINVAL;
			goto out;
		}
		/* Otherwise the previous credentials stay in use. */
	}
	if (wolfSSL_CTX_up_ref(t->ctx) == WOLFSSL_SUCCESS) {
		c = t->ctx;
		*code = LANYARD_OK;
	} else {
		*code = ly_err(err, errlen, LANYARD_ENOMEM, "wolfSSL_CTX_up_ref failed");
	}
out:
	pthread_mutex_unlock(&t->lock);
	lanyard_x509_svid_unref(svid);
	return c;
}

static int tls_new(lanyard_x509_source *src, const lanyard_authorizer *authz, bool server,
		   lanyard_tls **out, char *err, size_t errlen)
{
	struct lanyard_tls *t;

	if (!out)
		return ly_err(err, errlen, LANYARD_EINVAL, "no output pointer");
	*out = NULL;
	if (!src || !authz)
		return ly_err(err, errlen, LANYARD_EINVAL, "a source and an authorizer are needed");
	t = calloc(1, sizeof(*t));
	if (!t)
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	t->authz = ly_authorizer_dup(authz);
	if (!t->authz) {
		free(t);
		return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	}
	t->src = src;
	t->server = server;
	pthread_mutex_init(&t->lock, NULL);
	ly_wolfssl_init();
	*out = t;
	return LANYARD_OK;
}

LANYARD_API int lanyard_tls_server_new(lanyard_x509_source *src, const lanyard_authorizer *authz,
				       lanyard_tls **out, char *err, size_t errlen)
{
	return tls_new(src, authz, true, out, err, errlen);
}

LANYARD_API int lanyard_tls_client_new(lanyard_x509_source *src, const lanyard_authorizer *authz,
				       lanyard_tls **out, char *err, size_t errlen)
{
	return tls_new(src, authz, false, out, err, errlen);
}

LANYARD_API struct WOLFSSL_CTX *lanyard_tls_ctx(lanyard_tls *t, char *err, size_t errlen)
{
	int code;

	if (!t) {
		ly_err(err, errlen, LANYARD_EINVAL, "no TLS configuration");
		return NULL;
	}
	return current_ctx(t, &code, err, errlen);
}

/* A new session; a client with a peer name offers that peer's last session. */
static int ssl_new(lanyard_tls *t, const char *peer, struct WOLFSSL **out, char *err,
		   size_t errlen)
{
	WOLFSSL_CTX *c;
	WOLFSSL *ssl;
	uint64_t tag = 0;
	int code;

	if (!out)
		return ly_err(err, errlen, LANYARD_EINVAL, "no output pointer");
	*out = NULL;
	if (!t)
		return ly_err(err, errlen, LANYARD_EINVAL, "no TLS configuration");
	if (peer && (t->server || strlen(peer) == 0 || strlen(peer) > TLS_RESUME_KEY_MAX))
		return ly_err(err, errlen, LANYARD_EINVAL,
			      "a peer name is for clients, 1 to %d bytes", TLS_RESUME_KEY_MAX);
	c = current_ctx(t, &code, err, errlen);
	if (!c)
		return code;
	ssl = wolfSSL_new(c);
	/* The session holds its own reference on c. */
	wolfSSL_CTX_free(c);
	if (!ssl)
		return ly_err(err, errlen, LANYARD_ENOMEM, "wolfSSL_new failed");
	wolfSSL_SetHsDoneCb(ssl, hs_done, t);
	if (peer && t->sessions) {
		tag = tls_resume_claim(t->sessions, peer, strlen(peer));
		if (wolfSSL_set_ex_data(ssl, ssl_ex_index, (void *)(uintptr_t)tag) !=
			    WOLFSSL_SUCCESS ||
		    wolfSSL_set_SessionTicket_cb(ssl, ticket_cb, t) != WOLFSSL_SUCCESS) {
			wolfSSL_free(ssl);
			return ly_err(err, errlen, LANYARD_ENOMEM, "wolfSSL_set_ex_data failed");
		}
		tls_resume_offer(t->sessions, tag, ssl, now_unix());
	}
	*out = ssl;
	return LANYARD_OK;
}

LANYARD_API int lanyard_tls_ssl_new(lanyard_tls *t, struct WOLFSSL **out, char *err,
				    size_t errlen)
{
	return ssl_new(t, NULL, out, err, errlen);
}

LANYARD_API int lanyard_tls_ssl_new_peer(lanyard_tls *t, const char *peer, struct WOLFSSL **out,
					 char *err, size_t errlen)
{
	if (!peer)
		return ly_err(err, errlen, LANYARD_EINVAL, "no peer name");
	return ssl_new(t, peer, out, err, errlen);
}

LANYARD_API int lanyard_tls_set_resumption(lanyard_tls *t, size_t max_sessions, char *err,
					   size_t errlen)
{
	struct tls_resume *r = NULL;
	int ret = LANYARD_OK;

	if (!t)
		return ly_err(err, errlen, LANYARD_EINVAL, "no TLS configuration");
	if (max_sessions > LANYARD_TLS_RESUMPTION_MAX)
		return ly_err(err, errlen, LANYARD_EINVAL, "at most %d sessions",
			      LANYARD_TLS_RESUMPTION_MAX);
#ifndef SESSION_CERTS
	/* Debian's wolfSSL has it; the daemons' private sp build (which bench_tls also compiles
	 * this file against) is made without it to save ~37 KB per server connection. */
	if (max_sessions)
		return ly_err(err, errlen, LANYARD_EINVAL,
			      "this wolfSSL is built without SESSION_CERTS: a resumed session would "
			      "carry no peer chain to check again, so resumption is not offered");
#endif
	if (max_sessions) {
		r = tls_resume_new(max_sessions);
		if (!r)
			return ly_err(err, errlen, LANYARD_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&t->lock);
	if (t->ctx) {
		ret = ly_err(err, errlen, LANYARD_EINVAL,
			     "resumption is set before the first session is made");
	} else {
		tls_resume_free(t->sessions);
		t->sessions = r;
		r = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	tls_resume_free(r);
	return ret;
}

LANYARD_API void lanyard_tls_last_error(lanyard_tls *t, char *buf, size_t len)
{
	if (!buf || !len)
		return;
	buf[0] = '\0';
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	snprintf(buf, len, "%s", t->last_error);
	pthread_mutex_unlock(&t->lock);
}

LANYARD_API void lanyard_tls_free(lanyard_tls *t)
{
	if (!t)
		return;
	wolfSSL_CTX_free(t->ctx);
	tls_resume_free(t->sessions);
	lanyard_authorizer_free(t->authz);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Parses the peer's leaf certificate of a finished handshake. liblanyard uses Debian's wolfSSL,
 * whose SESSION_CERTS keeps the peer's chain (also across resumption); a wolfSSL built without it
 * (the daemons' sp build, which bench_tls also compiles this file against: tls_leaf.h) still has
 * the decoded leaf (KEEP_PEER_CERT). */
static int peer_leaf(WOLFSSL *ssl, struct x509_info *info)
{
	const unsigned char *der;
	int len = 0, ret = LANYARD_OK;

	if (!ssl)
		return LANYARD_EINVAL;
#ifdef SESSION_CERTS
	WOLFSSL_X509_CHAIN *chain = wolfSSL_get_peer_chain(ssl);

	if (!chain || wolfSSL_get_chain_count(chain) < 1)
		return LANYARD_ENOTFOUND;
	der = wolfSSL_get_chain_cert(chain, 0);
	len = wolfSSL_get_chain_length(chain, 0);
	if (!der || len <= 0)
		return LANYARD_ENOTFOUND;
	if (x509_parse(der, (size_t)len, info, NULL, 0) < 0)
		ret = LANYARD_EINVAL;
#else
	WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(ssl); /* a copy */

	der = x ? wolfSSL_X509_get_der(x, &len) : NULL;
	if (!der || len <= 0)
		ret = LANYARD_ENOTFOUND;
	else if (x509_parse(der, (size_t)len, info, NULL, 0) < 0)
		ret = LANYARD_EINVAL;
	wolfSSL_X509_free(x);
#endif
	return ret;
}

LANYARD_API int lanyard_tls_peer_id(struct WOLFSSL *ssl, char *buf, size_t len)
{
	struct x509_info leaf = {0};
	int ret = peer_leaf(ssl, &leaf);

	if (ret == LANYARD_OK) {
		if (leaf.n_uri_sans != 1 || !buf || strlen(leaf.spiffe_id) >= len)
			ret = LANYARD_EINVAL;
		else
			snprintf(buf, len, "%s", leaf.spiffe_id);
	}
	x509_info_free(&leaf);
	return ret;
}

LANYARD_API int lanyard_tls_peer_serial(struct WOLFSSL *ssl, char *buf, size_t len)
{
	struct x509_info leaf = {0};
	int ret = peer_leaf(ssl, &leaf);

	if (ret == LANYARD_OK) {
		if (!buf || strlen(leaf.serial) >= len)
			ret = LANYARD_EINVAL;
		else
			snprintf(buf, len, "%s", leaf.serial);
	}
	x509_info_free(&leaf);
	return ret;
}
