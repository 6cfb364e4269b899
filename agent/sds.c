/* sds.c: Envoy SDS v3 (see sds.h for the contract).
 *
 * A stream remembers only what the xDS protocol needs: the resource names of the last accepted
 * request (at most SDS_MAX_NAMES, each bounded by the request size limit), the version and nonce
 * of the last response and a 16-byte digest of its resources, so per-stream memory does not grow
 * with the secrets it serves. Every publication of the svid_cache re-resolves every stream and
 * sends a new version only to the streams whose answer changed.
 *
 * Versions count per stream and every response gets a new one, so a NACKed version is never sent
 * again; nonces are random. A request whose response_nonce is not the last one sent is stale and
 * ignored; a request with the current nonce and the same names is an ACK (or a logged NACK) and
 * gets nothing until something changes; changed names are answered at once. */
#include "sds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "grpc.h"
#include "grpc_server.h"
#include "log.h"
#include "spiffeid.h"
#include "svid_cache.h"
#include "util.h"
#include "x509.h"

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb-c.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

typedef Envoy__Service__Discovery__V3__DiscoveryRequest DiscoveryRequest;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse DiscoveryResponse;
typedef Envoy__Extensions__TransportSockets__Tls__V3__Secret Secret;
typedef Envoy__Extensions__TransportSockets__Tls__V3__TlsCertificate TlsCertificate;
typedef Envoy__Extensions__TransportSockets__Tls__V3__CertificateValidationContext ValidationContext;
typedef Envoy__Extensions__TransportSockets__Tls__V3__SPIFFECertValidatorConfig SpiffeConfig;
typedef Envoy__Extensions__TransportSockets__Tls__V3__SPIFFECertValidatorConfig__TrustDomain
	SpiffeTrustDomain;
typedef Envoy__Config__Core__V3__DataSource DataSource;
typedef Envoy__Config__Core__V3__TypedExtensionConfig TypedExtensionConfig;
typedef Google__Protobuf__Any Any;

#define DIGEST_LEN 16
#define NONCE_BYTES 8
#define NO_IDENTITY "no identity issued"
#define LOG_TEXT_MAX 256

struct sds_stream {
	struct sds *s;
	struct grpc_call *call; /* valid until sds_closed (workload_api holds a reference) */
	struct sds_stream *prev, *next;
	bool streaming, finished, have_req, sent;
	pid_t pid;
	uid_t uid;
	char **sel;
	size_t n_sel;
	void (*finish)(void *ud, int status, const char *message);
	void *finish_ud;
	char **names;
	size_t n_names;
	uint64_t version;
	char nonce[2 * NONCE_BYTES + 1];
	uint8_t digest[DIGEST_LEN];
};

struct sds {
	struct svid_cache *cache;
	struct cache_sub *sub;
	struct snapshot *snap; /* current, referenced */
	char *bundle_pem;      /* of snap, lazily */
	char *td;              /* configured trust domain, when the snapshot has none */
	char *default_svid, *default_bundle, *all_bundles;
	struct sds_stream *streams;
	struct sds_stats stats;
	bool stopping;
};

/* ---- resolution ---- */

static bool seen_before(char *const *names, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(names[j], names[i]) == 0)
			return true;
	return false;
}

static bool is_td_id(const char *name, const char *td)
{
	static const char scheme[] = "spiffe://";

	return strncasecmp(name, scheme, sizeof(scheme) - 1) == 0 &&
	       strcasecmp(name + sizeof(scheme) - 1, td) == 0;
}

/* The first matched entry with that SPIFFE ID (NULL: any) that has an SVID; *entitled tells
 * whether a matched entry has that ID at all. */
static const struct svid *find_svid(const struct snapshot *snap, const size_t *entries, size_t n,
				    const char *spiffe_id, bool *entitled)
{
	*entitled = false;
	for (size_t i = 0; i < n; i++) {
		const struct entry *e = snap->entries[entries[i]];
		const struct svid *v;

		if (spiffe_id && strcmp(e->spiffe_id, spiffe_id) != 0)
			continue;
		*entitled = true;
		v = snapshot_svid(snap, e->id);
		if (v)
			return v;
	}
	return NULL;
}

/* The federated bundle of td ("two.test") when a matched entry federates with it and it has
 * X.509 authorities (what Envoy validates with); NULL otherwise. */
static const struct fed_snap *entitled_fed(const struct snapshot *snap, const size_t *entries,
					   size_t n, const char *td)
{
	const struct fed_snap *f = snapshot_fed(snap, td);

	if (!f || f->x509_len == 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct entry *e = snap->entries[entries[i]];

		for (size_t k = 0; k < e->n_federates_with; k++)
			if (strcmp(e->federates_with[k], td) == 0)
				return f;
	}
	return NULL;
}

/* No names: the bundle, one tls_certificate per SPIFFE ID, and the caller's federated bundles. */
static int resolve_all(const struct snapshot *snap, const size_t *entries, size_t n_entries,
		       struct sds_resource *out, char *err, size_t errlen)
{
	size_t n = 0;

	out[n++] = (struct sds_resource){.name = NULL, .kind = SDS_BUNDLE};
	for (size_t i = 0; i < n_entries && n <= SDS_MAX_NAMES; i++) {
		const struct entry *e = snap->entries[entries[i]];
		const struct svid *v = snapshot_svid(snap, e->id);
		bool dup = false;

		for (size_t j = 1; j < n && !dup; j++)
			dup = strcmp(out[j].svid->spiffe_id, e->spiffe_id) == 0;
		if (v && !dup)
			out[n++] = (struct sds_resource){.name = v->spiffe_id,
							 .kind = SDS_TLS_CERTIFICATE, .svid = v};
	}
	if (n == 1) {
		snprintf(err, errlen, "the caller's SVIDs are being issued");
		return SDS_PENDING;
	}
	for (size_t f = 0; f < snap->n_fed && n <= SDS_MAX_NAMES; f++) {
		const struct fed_snap *fb = entitled_fed(snap, entries, n_entries,
							 snap->fed[f].trust_domain);

		if (fb)
			out[n++] = (struct sds_resource){.kind = SDS_BUNDLE, .fed = fb};
	}
	return (int)n;
}

/* Appends "name" to err for a refusal: the name comes from the caller and ends up in the log, so
 * it is bounded and control characters are shown as '?'. */
static void append_name(char *err, size_t errlen, size_t *pos, const char *sep, const char *name)
{
	size_t i;
	int r = snprintf(err + *pos, errlen - *pos, "%s\"", sep);

	if (r < 0 || (size_t)r >= errlen - *pos) {
		*pos = errlen - 1;
		return;
	}
	*pos += (size_t)r;
	for (i = 0; name[i] && i < 200 && *pos + 2 < errlen; i++)
		err[(*pos)++] = ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) ? '?' : name[i];
	if (*pos + 1 < errlen)
		err[(*pos)++] = '"';
	err[*pos] = '\0';
}

int sds_resolve(const struct sds_names *cfg, const char *td, const struct snapshot *snap,
		const size_t *entries, size_t n_entries, char *const *names, size_t n_names,
		struct sds_resource *out, char *err, size_t errlen)
{
	size_t n = 0, pos = 0, n_denied = 0;
	bool pending = false, any = false;

	if (n_names > SDS_MAX_NAMES) {
		snprintf(err, errlen, "more than %d resource names", SDS_MAX_NAMES);
		return -1;
	}
	for (size_t i = 0; i < n_names; i++)
		any |= names[i][0] != '\0';
	if (!any)
		return resolve_all(snap, entries, n_entries, out, err, errlen);
	err[0] = '\0';
	for (size_t i = 0; i < n_names; i++) {
		const char *name = names[i];
		const struct svid *v;
		bool entitled;

		if (!name[0] || seen_before(names, i))
			continue;
		if (is_td_id(name, td) || strcmp(name, cfg->default_bundle) == 0) {
			out[n++] = (struct sds_resource){.name = name, .kind = SDS_BUNDLE};
			continue;
		}
		if (strcmp(name, cfg->all_bundles) == 0) {
			out[n++] = (struct sds_resource){.name = name, .kind = SDS_ALL_BUNDLES,
							 .entries = entries,
							 .n_entries = n_entries};
			continue;
		}
		if (strncasecmp(name, "spiffe://", 9) == 0) {
			const struct fed_snap *fb = entitled_fed(snap, entries, n_entries, name + 9);

			if (fb) {
				out[n++] = (struct sds_resource){.name = name, .kind = SDS_BUNDLE,
								 .fed = fb};
				continue;
			}
		}
		v = find_svid(snap, entries, n_entries,
			      strcmp(name, cfg->default_svid) == 0 ? NULL : name, &entitled);
		if (v) {
			out[n++] = (struct sds_resource){.name = name, .kind = SDS_TLS_CERTIFICATE,
							 .svid = v};
		} else if (entitled) {
			pending = true;
		} else {
			append_name(err, errlen, &pos, n_denied ? ", " : "", name);
			n_denied++;
		}
	}
	if (n_denied) {
		char names_list[1024];

		snprintf(names_list, sizeof(names_list), "%s", err);
		snprintf(err, errlen, "workload is not authorized for the requested identities [%s]",
			 names_list);
		return SDS_DENIED;
	}
	if (pending) {
		snprintf(err, errlen, "a requested SVID is being issued");
		return SDS_PENDING;
	}
	return (int)n;
}

/* ---- building secrets ---- */

/* Concatenated DER certificates as PEM; NULL on failure. */
static char *certs_pem(const uint8_t *der, size_t len)
{
	const uint8_t **certs = NULL;
	size_t *lens = NULL, n = 0, total = 1;
	char **pems = NULL, *out = NULL;

	if (x509_split_der(der, len, &certs, &lens, &n) < 0 || n == 0)
		goto out;
	pems = calloc(n, sizeof(*pems));
	if (!pems)
		goto out;
	for (size_t i = 0; i < n; i++) {
		pems[i] = pem_encode("CERTIFICATE", certs[i], lens[i]);
		if (!pems[i])
			goto out;
		total += strlen(pems[i]);
	}
	out = malloc(total);
	if (!out)
		goto out;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		strcat(out, pems[i]);
out:
	for (size_t i = 0; pems && i < n; i++)
		free(pems[i]);
	free(pems);
	free(certs);
	free(lens);
	return out;
}

static const char *bundle_pem(struct sds *s)
{
	if (!s->bundle_pem && s->snap->bundle_len)
		s->bundle_pem = certs_pem(s->snap->bundle, s->snap->bundle_len);
	return s->bundle_pem;
}

static const char *td_of(const struct sds *s)
{
	return s->snap->trust_domain && s->snap->trust_domain[0] ? s->snap->trust_domain : s->td;
}

static DataSource inline_pem(const char *pem)
{
	DataSource d = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__INIT;

	d.specifier_case = ENVOY__CONFIG__CORE__V3__DATA_SOURCE__SPECIFIER_INLINE_BYTES;
	d.inline_bytes = (ProtobufCBinaryData){strlen(pem), (uint8_t *)pem};
	return d;
}

/* Packs m into a fresh buffer (*out, *len); -1 on allocation failure. */
static int pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		return -1;
	protobuf_c_message_pack(m, *out);
	return 0;
}

/* The SPIFFE validator listing our trust domain and the federated ones r's entries name. */
static int pack_spiffe_validator(struct sds *s, const struct sds_resource *r, const char *pem,
				 uint8_t **out, size_t *len)
{
	SpiffeConfig cfg = ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SPIFFECERT_VALIDATOR_CONFIG__INIT;
	SpiffeTrustDomain *td = calloc(s->snap->n_fed + 1, sizeof(*td));
	SpiffeTrustDomain **tds = calloc(s->snap->n_fed + 1, sizeof(*tds));
	DataSource *bundles = calloc(s->snap->n_fed + 1, sizeof(*bundles));
	char **pems = calloc(s->snap->n_fed + 1, sizeof(*pems));
	size_t n = 0;
	int ret = -1;

	if (!td || !tds || !bundles || !pems)
		goto out;
	for (size_t f = 0; f <= s->snap->n_fed; f++) {
		SpiffeTrustDomain init =
			ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SPIFFECERT_VALIDATOR_CONFIG__TRUST_DOMAIN__INIT;
		const struct fed_snap *fb = f ? entitled_fed(s->snap, r->entries, r->n_entries,
							     s->snap->fed[f - 1].trust_domain)
					      : NULL;

		if (f && !fb)
			continue;
		if (fb && !(pems[n] = certs_pem(fb->x509, fb->x509_len)))
			goto out;
		td[n] = init;
		td[n].name = (char *)(fb ? fb->trust_domain : td_of(s));
		bundles[n] = inline_pem(fb ? pems[n] : pem);
		td[n].trust_bundle = &bundles[n];
		tds[n] = &td[n];
		n++;
	}
	cfg.n_trust_domains = n;
	cfg.trust_domains = tds;
	ret = pack(&cfg.base, out, len);
out:
	for (size_t i = 0; pems && i < n; i++)
		free(pems[i]);
	free(pems);
	free(td);
	free(tds);
	free(bundles);
	return ret;
}

/* One packed Secret; TLS certificates carry the private key, so the buffer is wiped by the
 * caller (always, for simplicity). */
static int pack_secret(struct sds *s, const struct sds_resource *r, uint8_t **out, size_t *len)
{
	Secret sec = ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SECRET__INIT;
	TlsCertificate tls = ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__TLS_CERTIFICATE__INIT;
	ValidationContext vc =
		ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__CERTIFICATE_VALIDATION_CONTEXT__INIT;
	TypedExtensionConfig ext = ENVOY__CONFIG__CORE__V3__TYPED_EXTENSION_CONFIG__INIT;
	Any typed = GOOGLE__PROTOBUF__ANY__INIT;
	DataSource chain, key, ca;
	char td_id[TRUST_DOMAIN_MAX + 16], *chain_pem = NULL, *key_pem = NULL, *fed_pem = NULL;
	const char *bpem = bundle_pem(s);
	uint8_t *cfg = NULL;
	size_t cfg_len = 0;
	int ret = -1;

	snprintf(td_id, sizeof(td_id), "spiffe://%s", r->fed ? r->fed->trust_domain : td_of(s));
	sec.name = (char *)(r->name ? r->name : td_id);
	if (r->kind == SDS_TLS_CERTIFICATE) {
		chain_pem = certs_pem(r->svid->chain, r->svid->chain_len);
		key_pem = pem_encode("PRIVATE KEY", r->svid->key, r->svid->key_len);
		if (!chain_pem || !key_pem)
			goto out;
		chain = inline_pem(chain_pem);
		key = inline_pem(key_pem);
		tls.certificate_chain = &chain;
		tls.private_key = &key;
		sec.type_case = ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SECRET__TYPE_TLS_CERTIFICATE;
		sec.tls_certificate = &tls;
	} else {
		if (!bpem)
			goto out;
		if (r->kind == SDS_BUNDLE && r->fed) {
			if (!(fed_pem = certs_pem(r->fed->x509, r->fed->x509_len)))
				goto out;
			ca = inline_pem(fed_pem);
			vc.trusted_ca = &ca;
		} else if (r->kind == SDS_BUNDLE) {
			ca = inline_pem(bpem);
			vc.trusted_ca = &ca;
		} else {
			if (pack_spiffe_validator(s, r, bpem, &cfg, &cfg_len) < 0)
				goto out;
			typed.type_url = SDS_SPIFFE_VALIDATOR_TYPE_URL;
			typed.value = (ProtobufCBinaryData){cfg_len, cfg};
			ext.name = SDS_SPIFFE_VALIDATOR;
			ext.typed_config = &typed;
			vc.custom_validator_config = &ext;
		}
		sec.type_case = ENVOY__EXTENSIONS__TRANSPORT_SOCKETS__TLS__V3__SECRET__TYPE_VALIDATION_CONTEXT;
		sec.validation_context = &vc;
	}
	ret = pack(&sec.base, out, len);
out:
	if (key_pem) {
		secure_zero(key_pem, strlen(key_pem));
		free(key_pem);
	}
	free(chain_pem);
	free(fed_pem);
	free(cfg);
	return ret;
}

struct packed {
	Any *any;
	Any **ptrs;
	size_t n;
};

static void packed_free(struct packed *p)
{
	for (size_t i = 0; p->any && i < p->n; i++) {
		secure_zero(p->any[i].value.data, p->any[i].value.len);
		free(p->any[i].value.data);
	}
	free(p->any);
	free(p->ptrs);
}

/* Packs every resource as an Any and digests them (the digest stands for the answer). */
static int pack_all(struct sds *s, const struct sds_resource *res, size_t n, struct packed *p,
		    uint8_t digest[DIGEST_LEN])
{
	uint8_t full[WC_SHA256_DIGEST_SIZE];
	wc_Sha256 sha;

	p->any = calloc(n ? n : 1, sizeof(*p->any));
	p->ptrs = calloc(n ? n : 1, sizeof(*p->ptrs));
	p->n = 0;
	if (!p->any || !p->ptrs)
		return -1;
	wc_InitSha256(&sha);
	for (size_t i = 0; i < n; i++) {
		Any init = GOOGLE__PROTOBUF__ANY__INIT;

		p->any[i] = init;
		p->any[i].type_url = SDS_SECRET_TYPE_URL;
		if (pack_secret(s, &res[i], &p->any[i].value.data, &p->any[i].value.len) < 0) {
			wc_Sha256Free(&sha);
			return -1;
		}
		p->n++;
		p->ptrs[i] = &p->any[i];
		wc_Sha256Update(&sha, p->any[i].value.data, (word32)p->any[i].value.len);
	}
	wc_Sha256Final(&sha, full);
	wc_Sha256Free(&sha);
	memcpy(digest, full, DIGEST_LEN);
	return 0;
}

/* ---- streams ---- */

static void stream_finish(struct sds_stream *st, int status, const char *message)
{
	if (st->finished)
		return;
	st->finished = true;
	st->finish(st->finish_ud, status, message);
}

/* Indexes of the snapshot entries the caller's selectors match. NULL only without memory. */
static size_t *match_entries(const struct snapshot *snap, char *const *sel, size_t n_sel,
			     size_t *n)
{
	size_t *m = malloc((snap->n_entries ? snap->n_entries : 1) * sizeof(*m));

	*n = 0;
	for (size_t i = 0; m && i < snap->n_entries; i++) {
		const struct entry *e = snap->entries[i];

		/* An entry without selectors would match every process on the node. */
		if (e->n_selectors && selectors_subset(e->selectors, e->n_selectors, sel, n_sel))
			m[(*n)++] = i;
	}
	return m;
}

static int send_response(struct sds_stream *st, const struct packed *p)
{
	DiscoveryResponse resp = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
	uint8_t nonce[NONCE_BYTES], *buf = NULL;
	char version[24];
	size_t len;
	int r;

	resp.type_url = SDS_SECRET_TYPE_URL;
	resp.n_resources = p->n;
	resp.resources = p->ptrs;
	if (random_bytes(nonce, sizeof(nonce)) < 0)
		return -1;
	hex_encode(nonce, sizeof(nonce), st->nonce);
	snprintf(version, sizeof(version), "%llu", (unsigned long long)++st->version);
	resp.version_info = version;
	resp.nonce = st->nonce;
	if (pack(&resp.base, &buf, &len) < 0)
		return -1;
	r = grpc_call_send(st->call, buf, len);
	secure_zero(buf, len);
	free(buf);
	if (r == 0)
		st->s->stats.responses++;
	return r;
}

/* Resolves the stream's names against the current snapshot and sends the answer when it is new
 * (or when the names changed, which always gets an answer). Ends the call on a refusal. */
static void stream_refresh(struct sds_stream *st, bool names_changed)
{
	struct sds *s = st->s;
	struct sds_names cfg = {s->default_svid, s->default_bundle, s->all_bundles};
	struct sds_resource res[SDS_MAX_NAMES + 1];
	struct packed p = {0};
	uint8_t digest[DIGEST_LEN];
	size_t n_match = 0, *match;
	char err[1200];
	int n;

	if (st->finished || !st->have_req)
		return;
	match = match_entries(s->snap, st->sel, st->n_sel, &n_match);
	if (!match) {
		stream_finish(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (n_match == 0) {
		log_info("sds: pid %d uid %u: every identity of its SDS %s was removed", (int)st->pid,
			 (unsigned)st->uid, st->streaming ? "stream" : "call");
		stream_finish(st, GRPC_STATUS_PERMISSION_DENIED, NO_IDENTITY);
		goto out;
	}
	n = sds_resolve(&cfg, td_of(s), s->snap, match, n_match, st->names, st->n_names, res, err,
			sizeof(err));
	if (n == SDS_PENDING) {
		log_debug("sds: pid %d: %s; answering when it is", (int)st->pid, err);
		if (!st->streaming)
			stream_finish(st, GRPC_STATUS_UNAVAILABLE, err);
		goto out;
	}
	if (n < 0) {
		log_event(LOG_LEVEL_WARN,
			  LOG_FIELDS(LOG_INT("pid", st->pid), LOG_INT("uid", st->uid)),
			  "sds: pid %d uid %u refused: %s", (int)st->pid, (unsigned)st->uid, err);
		stream_finish(st, GRPC_STATUS_INVALID_ARGUMENT, err);
		goto out;
	}
	if (pack_all(s, res, (size_t)n, &p, digest) < 0) {
		stream_finish(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot build the secrets");
		goto out;
	}
	if (!names_changed && st->sent && memcmp(digest, st->digest, DIGEST_LEN) == 0)
		goto out;
	if (send_response(st, &p) < 0)
		goto out;
	if (st->sent && !names_changed)
		s->stats.pushes++;
	st->sent = true;
	memcpy(st->digest, digest, DIGEST_LEN);
	log_debug("sds: pid %d: sent %d secret%s, version %llu", (int)st->pid, n, n == 1 ? "" : "s",
		  (unsigned long long)st->version);
	if (!st->streaming)
		stream_finish(st, GRPC_STATUS_OK, NULL);
out:
	packed_free(&p);
	free(match);
}

/* Text from the peer, bounded and without control characters, for the log. */
static void printable(const char *in, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; in && in[i] && i + 1 < outlen; i++)
		out[i] = ((unsigned char)in[i] < 0x20 || in[i] == 0x7f) ? '?' : in[i];
	out[i] = '\0';
}

static bool names_differ(const struct sds_stream *st, char *const *names, size_t n)
{
	if (!st->have_req || n != st->n_names)
		return true;
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < st->n_names && strcmp(names[i], st->names[j]) != 0; j++)
			;
		if (j == st->n_names)
			return true;
	}
	for (size_t j = 0; j < st->n_names; j++) {
		size_t i;

		for (i = 0; i < n && strcmp(names[i], st->names[j]) != 0; i++)
			;
		if (i == n)
			return true;
	}
	return false;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void log_nack(struct sds_stream *st, const DiscoveryRequest *req)
{
	char node[LOG_TEXT_MAX], msg[LOG_TEXT_MAX], ver[64];
	const char *node_id = node;

	printable(req->node ? req->node->id : "", node, sizeof(node));
	printable(req->error_detail->message, msg, sizeof(msg));
	printable(req->version_info, ver, sizeof(ver));
	log_event(LOG_LEVEL_WARN,
		  LOG_FIELDS(LOG_INT("pid", st->pid), LOG_INT("uid", st->uid), LOG_STR("node", node_id)),
		  "sds: pid %d uid %u (node \"%s\") rejected the secrets of version %llu (keeps "
		  "version \"%s\"): code %d: %s",
		  (int)st->pid, (unsigned)st->uid, node_id, (unsigned long long)st->version, ver,
		  (int)req->error_detail->code, msg);
}

static void stream_request(struct sds_stream *st, const DiscoveryRequest *req)
{
	struct sds *s = st->s;
	char **names;

	if (st->finished)
		return;
	if (st->nonce[0] && strcmp(req->response_nonce, st->nonce) != 0) {
		char got[64];

		printable(req->response_nonce, got, sizeof(got));
		log_debug("sds: pid %d: ignoring a request with stale nonce \"%s\" (last sent %s)",
			  (int)st->pid, got, st->nonce);
		s->stats.stale_nonces++;
		return;
	}
	if (req->error_detail) {
		s->stats.nacks++;
		log_nack(st, req);
	} else if (st->nonce[0]) {
		s->stats.acks++;
	}
	if (req->n_resource_names > SDS_MAX_NAMES) {
		stream_finish(st, GRPC_STATUS_INVALID_ARGUMENT, "too many resource names");
		return;
	}
	if (!names_differ(st, req->resource_names, req->n_resource_names))
		return;
	names = calloc(req->n_resource_names + 1, sizeof(*names));
	for (size_t i = 0; names && i < req->n_resource_names; i++) {
		names[i] = strdup(req->resource_names[i]);
		if (!names[i]) {
			free_names(names, i);
			names = NULL;
		}
	}
	if (!names) {
		stream_finish(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	free_names(st->names, st->n_names);
	st->names = names;
	st->n_names = req->n_resource_names;
	st->have_req = true;
	stream_refresh(st, true);
}

static void stream_free(struct sds_stream *st)
{
	free_names(st->names, st->n_names);
	free_names(st->sel, st->n_sel);
	free(st);
}

static void stream_unlink(struct sds_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else if (st->s->streams == st)
		st->s->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
}

struct sds_stream *sds_open(struct sds *s, struct grpc_call *call, bool streaming,
			    const struct sds_caller *who, const void *first)
{
	struct sds_stream *st = calloc(1, sizeof(*st));

	if (!st) {
		who->finish(who->finish_ud, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	st->s = s;
	st->call = call;
	st->streaming = streaming;
	st->pid = who->pid;
	st->uid = who->uid;
	st->finish = who->finish;
	st->finish_ud = who->finish_ud;
	st->sel = calloc(who->n_selectors + 1, sizeof(*st->sel));
	for (size_t i = 0; st->sel && i < who->n_selectors; i++) {
		st->sel[i] = strdup(who->selectors[i]);
		if (st->sel[i])
			st->n_sel++;
	}
	if (!st->sel || st->n_sel != who->n_selectors) {
		stream_finish(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		stream_free(st);
		return NULL;
	}
	stream_request(st, first);
	if (!streaming || st->finished) {
		stream_free(st);
		return NULL;
	}
	st->next = s->streams;
	if (s->streams)
		s->streams->prev = st;
	s->streams = st;
	s->stats.streams++;
	return st;
}

void sds_message(struct sds_stream *st, const uint8_t *msg, size_t len)
{
	DiscoveryRequest *req;

	if (st->finished)
		return;
	req = envoy__service__discovery__v3__discovery_request__unpack(NULL, len, msg);
	if (!req) {
		stream_finish(st, GRPC_STATUS_INVALID_ARGUMENT, "malformed DiscoveryRequest");
		return;
	}
	stream_request(st, req);
	envoy__service__discovery__v3__discovery_request__free_unpacked(req, NULL);
}

void sds_closed(struct sds_stream *st)
{
	if (!st)
		return;
	stream_unlink(st);
	st->s->stats.streams--;
	stream_free(st);
}

/* ---- the service ---- */

static void take_snapshot(struct sds *s)
{
	struct snapshot *snap = svid_cache_acquire(s->cache);

	if (snap == s->snap) {
		snapshot_release(snap);
		return;
	}
	snapshot_release(s->snap);
	s->snap = snap;
	free(s->bundle_pem);
	s->bundle_pem = NULL;
}

static void on_cache_update(void *ud)
{
	struct sds *s = ud;
	struct sds_stream *st, *next;

	if (s->stopping)
		return;
	take_snapshot(s);
	/* A finished stream stays listed until sds_closed: next is read first all the same. */
	for (st = s->streams; st; st = next) {
		next = st->next;
		stream_refresh(st, false);
	}
}

struct sds *sds_new(struct svid_cache *cache, const char *trust_domain, const struct sds_names *n)
{
	struct sds *s = xcalloc(1, sizeof(*s));

	s->cache = cache;
	s->td = xstrdup(trust_domain ? trust_domain : "");
	s->default_svid = xstrdup(n->default_svid);
	s->default_bundle = xstrdup(n->default_bundle);
	s->all_bundles = xstrdup(n->all_bundles);
	take_snapshot(s);
	s->sub = svid_cache_subscribe(cache, on_cache_update, s);
	if (!s->sub) {
		sds_free(s);
		return NULL;
	}
	return s;
}

void sds_stop(struct sds *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	svid_cache_unsubscribe(s->cache, s->sub);
	s->sub = NULL;
	for (struct sds_stream *st = s->streams; st; st = st->next)
		stream_finish(st, GRPC_STATUS_UNAVAILABLE, "the agent is shutting down");
}

void sds_free(struct sds *s)
{
	if (!s)
		return;
	if (s->sub)
		svid_cache_unsubscribe(s->cache, s->sub);
	snapshot_release(s->snap);
	free(s->bundle_pem);
	free(s->td);
	free(s->default_svid);
	free(s->default_bundle);
	free(s->all_bundles);
	free(s);
}

void sds_stats(const struct sds *s, struct sds_stats *out)
{
	*out = s->stats;
}
