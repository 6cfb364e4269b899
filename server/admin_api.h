/* admin_api.h: the operator's HTTP/JSON API on a Unix socket (libmicrohttpd, its own thread).
 * Only callers with uid 0 or the server's own effective uid are served; others get 403. */
#ifndef LANYARD_ADMIN_API_H
#define LANYARD_ADMIN_API_H

#include <stddef.h>
#include <stdint.h>

#include "datastore.h"

struct ca;

#define ADMIN_SOCKET_DEFAULT "/run/lanyard/server/admin.sock"
#define ADMIN_MAX_BODY (1024 * 1024)
/* POST /v1/entries/batch: at most this many entries, in a body of at most this size. */
#define ENTRY_BATCH_MAX 50000
#define ADMIN_MAX_BATCH_BODY (64u * 1024 * 1024)
/* GET /v1/entries?page_size=N: the default and the largest N. */
#define ENTRY_PAGE_SIZE_DEFAULT 1000
#define ENTRY_PAGE_SIZE_MAX 10000
/* POST /v1/svids/x509 and /v1/svids/jwt: lifetimes by default and at most. */
#define MINT_X509_TTL_DEFAULT 3600
#define MINT_JWT_TTL_DEFAULT 300
#define MINT_TTL_MAX (7 * 86400)
#define MINT_MAX_AUDIENCES 16

/* What the admin API needs from the rest of the server. The callbacks run on the admin API's
 * thread(s): they must be thread-safe. Any of them may be NULL (the bundle routes then answer 503). */
struct admin_hooks {
	void *ud;
	const char *trust_domain;		/* "example.org"; copied by admin_api_start */
	/* PEM of the X.509 authorities, malloc'd, caller frees. 0 or negative. */
	int (*bundle_pem)(void *ud, char **out);
	/* SPIFFE bundle (JWK Set) JSON text, malloc'd, caller frees. 0 or negative. */
	int (*bundle_spiffe_json)(void *ud, char **out);
	/* Called after any successful entry/agent/token change (e.g. uv_async_send). */
	void (*changed)(void *ud);
	/* Federation (federation.c): fetch that trust domain's bundle soon; forget a deleted
	 * relationship (and the bundle fetched through it); the fetch state as a JSON object
	 * (NULL when unknown). */
	void (*fed_refresh)(void *ud, const char *trust_domain);
	void (*fed_deleted)(void *ud, const char *trust_domain);
	json_t *(*fed_state)(void *ud, const char *trust_domain);
	int64_t default_token_ttl;		/* seconds; <= 0 means 600 */
	/* admin_socket_group: a group name whose members may use the API too (the socket is then
	 * 0660 and owned by that group); NULL: root and the server's uid only (0600). */
	const char *socket_group;
	/* The CA, for "authority show|prepare|activate|taint|revoke" (its functions are
	 * thread-safe); NULL: those routes answer 503. After a change the API calls changed(). */
	struct ca *ca;
	/* "x509 mint" / "jwt mint" (NULL: those routes answer 503). They sign with the CA's active
	 * authority; ttl is in seconds and the CA caps it. Outputs malloc'd; the caller frees (and
	 * wipes the token). 0, or negative with a message in err. */
	int (*mint_x509)(void *ud, const char *spiffe_id, const char *const *dns, size_t n_dns,
			 const uint8_t *spki, size_t spki_len, int64_t ttl, uint8_t **chain,
			 size_t *chain_len, int64_t *not_after, char *err, size_t errlen);
	int (*mint_jwt)(void *ud, const char *spiffe_id, const char *const *aud, size_t n_aud,
			int64_t ttl, char **token, int64_t *exp, char *err, size_t errlen);
	/* Tests only: reads the entries of GET /v1/entries (with ud) instead of ds_entry_list,
	 * to provoke a datastore error in the middle of a streamed listing. NULL in the server. */
	int (*entry_fetch)(void *ud, const struct entry_filter *f, struct entry ***out, size_t *n);
};

struct admin_api;

/* Creates socket_path safely (parent directory 0700 if missing, 0750 with a socket group; refuses
 * when a live server answers on it; replaces a stale socket; mode 0600, or 0660 with the socket
 * group) and starts serving. hooks is copied. Returns 0, or a
 * negative errno with a message in err ("another lanyard-server is already serving on <path>"). */
int admin_api_start(const char *socket_path, struct datastore *ds, const struct admin_hooks *hooks,
		    struct admin_api **out, char *err, size_t errlen);
/* Finishes in-flight requests, stops the thread, closes and unlinks the socket. NULL-safe. */
void admin_api_stop(struct admin_api *a);

#endif
