/* federation.c: fetches federated trust domains' bundles from their bundle endpoints. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>

#include "federation.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bundle.h"
#include "der_pem.h"
#include "fed_bundle.h"
#include "http_response.h"
#include "k8s_http.h"
#include "log.h"
#include "tls_leaf.h"
#include "util.h"
#include "x509.h"

#define RELIST_S 5
#define TIMEOUT_MS 10000
#define BACKOFF_MAX_S 300
/* Headers are small; the body is bounded by BUNDLE_DOC_MAX. */
#define HEADERS_MAX (16 * 1024)
#define RESPONSE_MAX (BUNDLE_DOC_MAX + HEADERS_MAX)

struct fed_state {
	char td[256];
	int64_t last_success, last_error_at, next_attempt, sequence;
	char last_error[512];
	uint64_t fetches, failures;
	unsigned backoff;
	bool refresh;
};

struct federation {
	struct datastore *ds;
	char *own_td;
	char *web_ca_file; /* NULL: the system store */
	void (*changed)(void *ud);
	void *ud;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;                /* under lock */
	bool relist;              /* under lock */
	struct fed_state *st;     /* under lock */
	size_t n_st;
};

/* ---- state (callers hold the lock) ---- */

static struct fed_state *state_find(struct federation *f, const char *td)
{
	for (size_t i = 0; i < f->n_st; i++)
		if (strcmp(f->st[i].td, td) == 0)
			return &f->st[i];
	return NULL;
}

static struct fed_state *state_get(struct federation *f, const char *td)
{
	struct fed_state *s = state_find(f, td);
	if (s)
		return s;
	f->st = xrealloc(f->st, (f->n_st + 1) * sizeof(*f->st));
	s = &f->st[f->n_st++];
	memset(s, 0, sizeof(*s));
	snprintf(s->td, sizeof(s->td), "%s", td);
	s->sequence = -1;
	return s;
}

static void state_remove(struct federation *f, const char *td)
{
	struct fed_state *s = state_find(f, td);
	if (!s)
		return;
	size_t i = (size_t)(s - f->st);
	memmove(&f->st[i], &f->st[i + 1], (f->n_st - i - 1) * sizeof(*f->st));
	f->n_st--;
}

/* ---- HTTP/1.1 over TLS (https_spiffe) ---- */

struct url {
	char host[300];
	char port[8];
	char path[2048];
};

static int url_split(const char *u, struct url *out, char *err, size_t errlen)
{
	const char *h = u + strlen("https://");
	size_t hl = strcspn(h, "/?");
	const char *rest = h + hl;
	char hostport[300];
	if (hl == 0 || hl >= sizeof(hostport))
		return errorf(err, errlen, "bad URL %s", u);
	memcpy(hostport, h, hl);
	hostport[hl] = '\0';
	char *colon = strrchr(hostport, ':');
	char *bracket = strrchr(hostport, ']');
	snprintf(out->port, sizeof(out->port), "443");
	if (colon && (!bracket || colon > bracket)) {
		*colon = '\0';
		snprintf(out->port, sizeof(out->port), "%.7s", colon + 1);
	}
	char *host = hostport;
	if (*host == '[') {
		host++;
		if (bracket)
			*bracket = '\0';
	}
	snprintf(out->host, sizeof(out->host), "%s", host);
	snprintf(out->path, sizeof(out->path), "%s%s", *rest == '/' ? "" : "/", rest);
	return 0;
}

static int tcp_connect(const struct url *u, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(u->host, u->port, &hints, &ai);
	if (rc != 0)
		return errorf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
	int fd = -1;
	for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			int soerr = ETIMEDOUT;
			socklen_t sl = sizeof(soerr);
			if (poll(&p, 1, TIMEOUT_MS) == 1)
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			errno = soerr;
		} else {
			errno = 0;
		}
		if (errno) {
			errorf(err, errlen, "cannot connect to %s port %s: %s", u->host, u->port,
			       strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return -1;
	/* Blocking from here, every read and write bounded. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	struct timeval tv = { .tv_sec = TIMEOUT_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static WOLFSSL_CTX *tls_ctx(const uint8_t *roots, size_t roots_len, char *err, size_t errlen)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0;
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (!ctx) {
		errorf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	if (x509_split_der(roots, roots_len, &certs, &lens, &n) < 0 || n == 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (wolfSSL_CTX_load_verify_buffer(ctx, certs[i], (long)lens[i],
						   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
			goto fail;
	tls_leaf_ctx_verify(ctx, WOLFSSL_VERIFY_PEER);
	free(certs);
	free(lens);
	return ctx;
fail:
	errorf(err, errlen, "the bundle that authenticates the endpoint holds no usable CA");
	free(certs);
	free(lens);
	wolfSSL_CTX_free(ctx);
	return NULL;
}

/* The endpoint's leaf (copied while wolfSSL verified it: tls_leaf.h) must be an X509-SVID with
 * exactly the expected SPIFFE ID. */
static int check_peer(const struct tls_leaf *leaf, const char *want, char *err, size_t errlen)
{
	struct x509_info info = { 0 };
	char why[256];
	if (!leaf->der)
		return errorf(err, errlen, "the endpoint presented no certificate");
	if (x509_parse(leaf->der, leaf->len, &info, why, sizeof(why)) < 0)
		return errorf(err, errlen, "the endpoint's certificate is unreadable");
	int ret = 0;
	if (info.is_ca || info.n_uri_sans != 1)
		ret = errorf(err, errlen, "the endpoint's certificate is not an X509-SVID");
	else if (strcmp(info.spiffe_id, want) != 0)
		ret = errorf(err, errlen, "the endpoint presented SPIFFE ID %.300s, not %.300s",
			     info.spiffe_id, want);
	x509_info_free(&info);
	return ret;
}

/* Reads until the peer closes (Connection: close), at most RESPONSE_MAX bytes. */
static int tls_read_all(WOLFSSL *ssl, char **out, size_t *len, char *err, size_t errlen)
{
	size_t cap = 8192, n = 0;
	char *buf = xmalloc(cap + 1);
	for (;;) {
		if (n == cap) {
			if (cap >= RESPONSE_MAX + 1) {
				free(buf);
				return errorf(err, errlen, "the response is larger than %d bytes",
					      RESPONSE_MAX);
			}
			cap = cap * 2 > RESPONSE_MAX + 1 ? RESPONSE_MAX + 1 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		int r = wolfSSL_read(ssl, buf + n, (int)(cap - n));
		if (r > 0) {
			n += (size_t)r;
			continue;
		}
		int e = wolfSSL_get_error(ssl, r);
		if (e == WOLFSSL_ERROR_ZERO_RETURN || e == SOCKET_PEER_CLOSED_E || r == 0)
			break;
		free(buf);
		return errorf(err, errlen, "reading the response failed (TLS error %d)", e);
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static int fetch_spiffe(const struct fed_relationship *rel, const uint8_t *roots,
			size_t roots_len, char **body, size_t *body_len, char *err, size_t errlen)
{
	struct url u;
	WOLFSSL_CTX *ctx = NULL;
	WOLFSSL *ssl = NULL;
	struct tls_leaf leaf = { 0 };
	char *resp = NULL, req[2600];
	size_t len = 0;
	long status = 0;
	int fd = -1, ret = -1;
	if (url_split(rel->bundle_endpoint_url, &u, err, errlen) < 0 ||
	    !(ctx = tls_ctx(roots, roots_len, err, errlen)) ||
	    (fd = tcp_connect(&u, err, errlen)) < 0)
		goto out;
	ssl = wolfSSL_new(ctx);
	if (!ssl || wolfSSL_set_fd(ssl, fd) != WOLFSSL_SUCCESS) {
		errorf(err, errlen, "cannot set up TLS");
		goto out;
	}
	tls_leaf_capture(ssl, &leaf);
	if (wolfSSL_connect(ssl) != WOLFSSL_SUCCESS) {
		char e[80];
		wolfSSL_ERR_error_string_n((unsigned long)wolfSSL_get_error(ssl, 0), e, sizeof(e));
		errorf(err, errlen, "TLS handshake with %s failed: %s (is the endpoint's SVID from "
		       "the trust domain's last known bundle?)", rel->bundle_endpoint_url, e);
		goto out;
	}
	if (check_peer(&leaf, rel->endpoint_spiffe_id, err, errlen) < 0)
		goto out;
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: "
			 "application/json\r\nConnection: close\r\n\r\n", u.path, u.host);
	if (n >= (int)sizeof(req) || wolfSSL_write(ssl, req, n) != n) {
		errorf(err, errlen, "cannot send the request");
		goto out;
	}
	if (tls_read_all(ssl, &resp, &len, err, errlen) < 0 ||
	    http_response_parse(resp, len, &status, &len, err, errlen) < 0)
		goto out;
	if (status != 200) {
		errorf(err, errlen, "%s answered HTTP %ld", rel->bundle_endpoint_url, status);
		goto out;
	}
	*body = resp;
	*body_len = len;
	resp = NULL;
	ret = 0;
out:
	free(resp);
	if (ssl)
		wolfSSL_free(ssl);
	tls_leaf_free(&leaf);
	if (fd >= 0)
		close(fd);
	if (ctx)
		wolfSSL_CTX_free(ctx);
	return ret;
}

static int fetch_web(const struct federation *f, const struct fed_relationship *rel, char **body,
		     size_t *body_len, char *err, size_t errlen)
{
	struct k8s_http_opts o = { .ca_path = f->web_ca_file, .timeout_ms = TIMEOUT_MS,
				   .max_response = BUNDLE_DOC_MAX };
	struct k8s_http_resp r = { 0 };
	if (k8s_http_request(NULL, &o, "GET", rel->bundle_endpoint_url, NULL, NULL, &r, err,
			     errlen) < 0)
		return -1;
	if (r.status != 200) {
		errorf(err, errlen, "%s answered HTTP %ld", rel->bundle_endpoint_url, r.status);
		k8s_http_resp_free(&r);
		return -1;
	}
	*body = r.body;
	*body_len = r.len;
	return 0;
}

/* ---- one fetch ---- */

/* The X.509 authorities that authenticate an https_spiffe endpoint: the stored bundle of its
 * trust domain, else the relationship's initial bundle. */
static int endpoint_roots(struct federation *f, const struct fed_relationship *rel,
			  uint8_t **der, size_t *len, char *err, size_t errlen)
{
	struct fed_bundle *b = NULL;
	*der = NULL;
	*len = 0;
	if (ds_fed_bundle_get(f->ds, rel->trust_domain, &b) == 0 && b->x509_len) {
		*der = b->x509;
		*len = b->x509_len;
		b->x509 = NULL;
	}
	fed_bundle_free(b);
	if (!*der && rel->trust_bundle_pem)
		pem_decode_concat(rel->trust_bundle_pem, strlen(rel->trust_bundle_pem),
				  "CERTIFICATE", der, len);
	if (!*der || !*len)
		return errorf(err, errlen, "no bundle of %s to authenticate its endpoint with "
			      "(give the relationship a --trust-bundle)", rel->trust_domain);
	return 0;
}

/* Fetches, checks and stores. 0 with the stored sequence and refresh hint, or -1 with the
 * reason; *changed when the stored bundle is new or different. */
static int fetch_one(struct federation *f, const struct fed_relationship *rel, int64_t *seq,
		     int64_t *hint, bool *changed, char *err, size_t errlen)
{
	uint8_t *roots = NULL, *x509 = NULL;
	size_t roots_len = 0, x509_len = 0, len = 0;
	char *body = NULL, why[512], *before = NULL, *after = NULL;
	struct fed_bundle *b = NULL, *old = NULL;
	int ret = -1;
	*changed = false;
	if (rel->profile == FED_PROFILE_HTTPS_SPIFFE) {
		if (endpoint_roots(f, rel, &roots, &roots_len, err, errlen) < 0 ||
		    fetch_spiffe(rel, roots, roots_len, &body, &len, err, errlen) < 0)
			goto out;
	} else if (fetch_web(f, rel, &body, &len, err, errlen) < 0) {
		goto out;
	}
	if (bundle_from_spiffe_json(body, len, &x509, &x509_len, NULL, seq, hint, why,
				    sizeof(why)) < 0) {
		errorf(err, errlen, "malformed bundle document: %s", why);
		goto out;
	}
	if (x509_len == 0) {
		errorf(err, errlen, "the bundle document has no X.509 authority");
		goto out;
	}
	if (fed_bundle_parse(rel->trust_domain, body, len, &b, NULL, why, sizeof(why)) < 0) {
		errorf(err, errlen, "unusable bundle document: %s", why);
		goto out;
	}
	b->source = FED_SOURCE_ENDPOINT;
	/* The relationship may have been deleted (through any server) while we fetched: a bundle
	 * stored now would outlive it. */
	struct fed_relationship *still = NULL;
	if (ds_fed_rel_get(f->ds, rel->trust_domain, &still) < 0) {
		errorf(err, errlen, "the relationship was deleted during the fetch");
		goto out;
	}
	fed_relationship_free(still);
	if (ds_fed_bundle_get(f->ds, rel->trust_domain, &old) == 0)
		before = fed_bundle_to_spiffe_json(old);
	after = fed_bundle_to_spiffe_json(b);
	int r = ds_fed_bundle_put(f->ds, b, why, sizeof(why));
	if (r < 0) {
		errorf(err, errlen, "%s", r == -ESTALE ? why : "cannot store the bundle");
		goto out;
	}
	*changed = !before || !after || strcmp(before, after) != 0;
	*seq = b->sequence;
	ret = 0;
out:
	free(roots);
	free(x509);
	free(body);
	free(before);
	free(after);
	fed_bundle_free(b);
	fed_bundle_free(old);
	return ret;
}

/* ---- the thread ---- */

static int64_t next_after_success(int64_t hint)
{
	if (hint <= 0)
		hint = FED_REFRESH_DEFAULT_S;
	return hint < FED_REFRESH_MIN_S ? FED_REFRESH_MIN_S
	       : hint > FED_REFRESH_MAX_S ? FED_REFRESH_MAX_S : hint;
}

static void run_one(struct federation *f, const struct fed_relationship *rel)
{
	char err[512];
	int64_t seq = -1, hint = -1;
	bool changed = false;
	int r = fetch_one(f, rel, &seq, &hint, &changed, err, sizeof(err));
	int64_t now = now_unix();
	pthread_mutex_lock(&f->lock);
	struct fed_state *s = state_get(f, rel->trust_domain);
	s->fetches++;
	if (r == 0) {
		s->last_success = now;
		s->last_error[0] = '\0';
		s->sequence = seq;
		s->backoff = 0;
		s->next_attempt = now + next_after_success(hint);
	} else {
		s->failures++;
		s->last_error_at = now;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		s->backoff = s->backoff ? s->backoff * 2 : FED_REFRESH_MIN_S;
		if (s->backoff > BACKOFF_MAX_S)
			s->backoff = BACKOFF_MAX_S;
		s->next_attempt = now + s->backoff;
	}
	pthread_mutex_unlock(&f->lock);
	if (r < 0) {
		log_warnx("federation: bundle of %s from %s refused, last good bundle kept: %s",
			  rel->trust_domain, rel->bundle_endpoint_url, err);
		return;
	}
	if (changed) {
		log_info("federation: bundle of %s (sequence %lld) fetched from %s",
			 rel->trust_domain, (long long)seq, rel->bundle_endpoint_url);
		if (f->changed)
			f->changed(f->ud);
	}
}

/* Which relationships are due; forgets the state of those gone. Under the lock. */
static bool due(struct federation *f, const struct fed_relationship *rel, int64_t now)
{
	struct fed_state *s = state_get(f, rel->trust_domain);
	bool go = s->refresh || now >= s->next_attempt;
	s->refresh = false;
	return go;
}

/* Forgets the state of relationships deleted (through any server). Under the lock. */
static void prune(struct federation *f, struct fed_relationship *const *rels, size_t n)
{
	for (size_t i = f->n_st; i-- > 0;) {
		size_t j = 0;
		while (j < n && strcmp(rels[j]->trust_domain, f->st[i].td) != 0)
			j++;
		if (j == n && !f->st[i].refresh)
			state_remove(f, f->st[i].td);
	}
}

static void *thread_main(void *arg)
{
	struct federation *f = arg;
	struct fed_relationship **rels = NULL;
	size_t n = 0;
	int64_t next_list = 0;
	pthread_mutex_lock(&f->lock);
	while (!f->stop) {
		int64_t now = now_unix();
		if (f->relist || now >= next_list) {
			f->relist = false;
			pthread_mutex_unlock(&f->lock);
			fed_relationship_array_free(rels, n);
			rels = NULL;
			n = 0;
			ds_fed_rel_list(f->ds, &rels, &n);
			next_list = now + RELIST_S;
			pthread_mutex_lock(&f->lock);
			prune(f, rels, n);
		}
		for (size_t i = 0; i < n && !f->stop; i++) {
			if (!due(f, rels[i], now))
				continue;
			pthread_mutex_unlock(&f->lock);
			run_one(f, rels[i]);
			pthread_mutex_lock(&f->lock);
		}
		if (f->stop || f->relist)
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
	}
	pthread_mutex_unlock(&f->lock);
	fed_relationship_array_free(rels, n);
	return NULL;
}

struct federation *federation_start(struct datastore *ds, const char *own_trust_domain,
				    const char *web_ca_file, void (*changed)(void *ud), void *ud)
{
	/* https_web uses libcurl, loaded by the first fetch (k8s_http_request), not here: loading
	 * it maps some thirty libraries and initialises OpenSSL, ~2.6 MB of resident memory a
	 * server without https_web relationships never needs. Loading it on this thread later is
	 * safe: Debian's libcurl (>= 7.84, feature "threadsafe") has a thread-safe
	 * curl_global_init, and curl_dyn.c runs it once under pthread_once. */
	struct federation *f = xcalloc(1, sizeof(*f));
	f->ds = ds;
	f->own_td = xstrdup(own_trust_domain);
	f->web_ca_file = web_ca_file && *web_ca_file ? xstrdup(web_ca_file) : NULL;
	f->changed = changed;
	f->ud = ud;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	if (pthread_create(&f->thread, NULL, thread_main, f) != 0) {
		log_error("federation: cannot start the fetcher thread");
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->lock);
		free(f->own_td);
		free(f->web_ca_file);
		free(f);
		return NULL;
	}
	return f;
}

void federation_stop(struct federation *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f->st);
	free(f->own_td);
	free(f->web_ca_file);
	free(f);
}

void federation_refresh(struct federation *f, const char *trust_domain)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	state_get(f, trust_domain)->refresh = true;
	f->relist = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

void federation_forget(struct federation *f, const char *trust_domain)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	state_remove(f, trust_domain);
	f->relist = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	struct fed_bundle *b = NULL;
	if (ds_fed_bundle_get(f->ds, trust_domain, &b) == 0 && b->source == FED_SOURCE_ENDPOINT &&
	    ds_fed_bundle_delete(f->ds, trust_domain) == 0)
		log_info("federation: bundle of %s deleted with its relationship", trust_domain);
	fed_bundle_free(b);
}

static json_t *state_json(const struct fed_state *s)
{
	json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I}", "last_success",
			      (json_int_t)s->last_success, "last_error_at",
			      (json_int_t)s->last_error_at, "next_attempt",
			      (json_int_t)s->next_attempt, "fetches", (json_int_t)s->fetches,
			      "failures", (json_int_t)s->failures);
	if (j && s->last_error[0])
		json_object_set_new(j, "last_error", json_string(s->last_error));
	if (j && s->sequence >= 0)
		json_object_set_new(j, "sequence", json_integer(s->sequence));
	return j;
}

json_t *federation_state_json(struct federation *f, const char *trust_domain)
{
	if (!f)
		return NULL;
	pthread_mutex_lock(&f->lock);
	const struct fed_state *s = state_find(f, trust_domain);
	json_t *j = s ? state_json(s) : NULL;
	pthread_mutex_unlock(&f->lock);
	return j;
}

json_t *federation_status_json(struct federation *f)
{
	json_t *o = json_object();
	if (!f || !o)
		return o;
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_st; i++)
		json_object_set_new(o, f->st[i].td, state_json(&f->st[i]));
	pthread_mutex_unlock(&f->lock);
	return o;
}

void federation_metrics(struct federation *f, struct metrics *m, const char *prefix)
{
	char name[3][128];
	if (!f)
		return;
	snprintf(name[0], sizeof(name[0]), "%s_federation_last_success_timestamp_seconds", prefix);
	snprintf(name[1], sizeof(name[1]), "%s_federation_fetches_total", prefix);
	snprintf(name[2], sizeof(name[2]), "%s_federation_bundle_sequence", prefix);
	pthread_mutex_lock(&f->lock);
	metrics_family(m, name[0], METRIC_GAUGE,
		       "Unix time of the last successful bundle fetch, by trust domain (0: never).");
	for (size_t i = 0; i < f->n_st; i++)
		metrics_sample(m, name[0], (double)f->st[i].last_success, "trust_domain",
			       f->st[i].td, NULL);
	metrics_family(m, name[1], METRIC_COUNTER,
		       "Bundle fetches from federated bundle endpoints, by trust domain and result.");
	for (size_t i = 0; i < f->n_st; i++) {
		metrics_sample(m, name[1], (double)(f->st[i].fetches - f->st[i].failures),
			       "trust_domain", f->st[i].td, "result", "ok", NULL);
		metrics_sample(m, name[1], (double)f->st[i].failures, "trust_domain", f->st[i].td,
			       "result", "error", NULL);
	}
	metrics_family(m, name[2], METRIC_GAUGE,
		       "spiffe_sequence of the last bundle fetched, by trust domain.");
	for (size_t i = 0; i < f->n_st; i++)
		if (f->st[i].sequence >= 0)
			metrics_sample(m, name[2], (double)f->st[i].sequence, "trust_domain",
				       f->st[i].td, NULL);
	pthread_mutex_unlock(&f->lock);
}
