/* sds.h: Envoy's Secret Discovery Service (SDS v3) on the Workload API socket.
 *
 * envoy.service.secret.v3.SecretDiscoveryService: StreamSecrets (state-of-the-world xDS over a
 * bidirectional stream) and FetchSecrets (unary); DeltaSecrets is not served (Unimplemented).
 * workload_api.c routes the calls, pins and attests the caller exactly as for the Workload API
 * and refuses callers no entry matches; it then hands each call over with sds_open() and tells
 * sds_message() / sds_closed() about the rest of its life. sds.c serves only the SVIDs of the
 * entries the caller's selectors match (re-matched on every publication of the svid_cache) and
 * the bundle.
 *
 * Resource names (SPIRE's): a SPIFFE ID the caller holds -> tls_certificate; default_svid_name
 * -> the caller's first SVID; "spiffe://<td>" and default_bundle_name -> validation_context with
 * the bundle as trusted_ca; all_bundles_name -> validation_context with the SPIFFE certificate
 * validator (envoy.tls.cert_validator.spiffe) listing every trust domain; no names -> every
 * SVID by SPIFFE ID and the bundle by trust domain ID. A name the caller is not entitled to
 * fails the call with INVALID_ARGUMENT naming it (as SPIRE does); it is never answered.
 *
 * Threading: everything on the loop thread. */
#ifndef LANYARD_SDS_H
#define LANYARD_SDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct grpc_call;
struct snapshot;
struct svid;
struct svid_cache;
struct sds;
struct sds_stream;

#define SDS_SECRET_TYPE_URL "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
#define SDS_SPIFFE_VALIDATOR "envoy.tls.cert_validator.spiffe"
#define SDS_SPIFFE_VALIDATOR_TYPE_URL \
	"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
#define SDS_MAX_NAMES 64 /* resource names per request; more is INVALID_ARGUMENT */

struct sds_names {
	const char *default_svid;   /* "default" */
	const char *default_bundle; /* "ROOTCA" */
	const char *all_bundles;    /* "ALL" */
};

struct sds_stats {
	unsigned streams;      /* open StreamSecrets streams */
	uint64_t responses;    /* DiscoveryResponses sent (streams and FetchSecrets) */
	uint64_t pushes;       /* stream responses caused by a change (rotation, bundle, entries) */
	uint64_t acks, nacks;  /* requests acknowledging / rejecting the last response */
	uint64_t stale_nonces; /* requests ignored for a stale response_nonce */
};

/* ---- resolution (pure; exposed for tests) ---- */

enum sds_kind { SDS_TLS_CERTIFICATE, SDS_BUNDLE, SDS_ALL_BUNDLES };

struct sds_resource {
	const char *name;         /* as answered: the requested name, or the SPIFFE / trust domain ID */
	enum sds_kind kind;
	const struct svid *svid;  /* SDS_TLS_CERTIFICATE */
	const struct fed_snap *fed; /* SDS_BUNDLE of a foreign trust domain (NULL: our own) */
	/* SDS_ALL_BUNDLES: the caller's matched entries, for the federated bundles they name. */
	const size_t *entries;
	size_t n_entries;
};

#define SDS_DENIED (-2)  /* a name the caller is not entitled to (named in err) */
#define SDS_PENDING (-3) /* entitled, but its SVID is still being minted: answer later */

/* Resolves names against snap for a caller of trust domain td ("example.org") matching
 * entries[0..n_entries) (indexes into snap->entries, in snapshot order). out has room for
 * SDS_MAX_NAMES + 1 resources and points into snap, entries and names; a NULL name stands for
 * the trust domain ID (no names requested). A foreign trust domain ID names that domain's
 * federated bundle only when a matched entry federates with it (otherwise it is refused like
 * any name the caller is not entitled to); ALL and the empty list include exactly those. Returns the number of resources, SDS_DENIED or SDS_PENDING
 * (reason in err), or -1 for too many names. */
int sds_resolve(const struct sds_names *cfg, const char *td, const struct snapshot *snap,
		const size_t *entries, size_t n_entries, char *const *names, size_t n_names,
		struct sds_resource *out, char *err, size_t errlen);

/* ---- service ---- */

struct sds *sds_new(struct svid_cache *cache, const char *trust_domain, const struct sds_names *n);
/* Ends every open stream with UNAVAILABLE and stops following the cache. */
void sds_stop(struct sds *s);
/* After every call was closed (sds_closed). NULL-safe. */
void sds_free(struct sds *s);
void sds_stats(const struct sds *s, struct sds_stats *out);

struct sds_caller {
	pid_t pid;
	uid_t uid;
	char *const *selectors; /* sorted, copied */
	size_t n_selectors;
	/* Ends the call with a status (workload_api counts it); valid until sds_closed. */
	void (*finish)(void *ud, int status, const char *message);
	void *finish_ud;
};

/* An attested call: first is its first request (a DiscoveryRequest, already decoded). Answers
 * FetchSecrets at once; a stream is answered and kept. Returns the stream handle to pass to
 * sds_message and sds_closed, or NULL when the call was finished already (out of memory, a
 * FetchSecrets answered). */
struct sds_stream *sds_open(struct sds *s, struct grpc_call *call, bool streaming,
			    const struct sds_caller *who, const void *first);
/* A later message of the stream (raw protobuf). */
void sds_message(struct sds_stream *st, const uint8_t *msg, size_t len);
/* The call is gone: frees st. */
void sds_closed(struct sds_stream *st);

#endif
