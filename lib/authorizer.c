/* authorizer.c: which peer SPIFFE IDs a TLS configuration accepts. The IDs are validated when
 * the authorizer is made, so a typo fails at start-up rather than refusing every peer. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum authz_kind { AUTHZ_ANY, AUTHZ_IDS, AUTHZ_MEMBER_OF, AUTHZ_FUNC };

struct lanyard_authorizer {
	enum authz_kind kind;
	char **ids; /* AUTHZ_IDS */
	size_t n_ids;
	char td[TRUST_DOMAIN_MAX + 1]; /* AUTHZ_MEMBER_OF */
	lanyard_authorize_fn fn;       /* AUTHZ_FUNC */
	void *ud;
};

static struct lanyard_authorizer *authz_new(enum authz_kind kind)
{
	struct lanyard_authorizer *a = calloc(1, sizeof(*a));

	if (a)
		a->kind = kind;
	return a;
}

LANYARD_API lanyard_authorizer *lanyard_authorize_any(void)
{
	return authz_new(AUTHZ_ANY);
}

LANYARD_API lanyard_authorizer *lanyard_authorize_one_of(const char *const *ids, size_t n)
{
	struct lanyard_authorizer *a;

	if (!ids || n == 0)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (spiffeid_parse(ids[i], NULL, NULL, NULL, 0) < 0)
			return NULL;
	a = authz_new(AUTHZ_IDS);
	if (!a)
		return NULL;
	a->ids = calloc(n, sizeof(*a->ids));
	if (!a->ids)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		a->ids[i] = strdup(ids[i]);
		a->n_ids++;
		if (!a->ids[i])
			goto fail;
	}
	return a;
fail:
	lanyard_authorizer_free(a);
	return NULL;
}

LANYARD_API lanyard_authorizer *lanyard_authorize_id(const char *id)
{
	return lanyard_authorize_one_of(&id, 1);
}

LANYARD_API lanyard_authorizer *lanyard_authorize_member_of(const char *trust_domain)
{
	struct lanyard_authorizer *a;
	char td[TRUST_DOMAIN_MAX + 1];

	if (ly_trust_domain(trust_domain, td) < 0)
		return NULL;
	a = authz_new(AUTHZ_MEMBER_OF);
	if (a)
		memcpy(a->td, td, sizeof(td));
	return a;
}

LANYARD_API lanyard_authorizer *lanyard_authorize_func(lanyard_authorize_fn fn, void *ud)
{
	struct lanyard_authorizer *a;

	if (!fn)
		return NULL;
	a = authz_new(AUTHZ_FUNC);
	if (a) {
		a->fn = fn;
		a->ud = ud;
	}
	return a;
}

lanyard_authorizer *ly_authorizer_dup(const lanyard_authorizer *a)
{
	struct lanyard_authorizer *c;

	switch (a->kind) {
	case AUTHZ_IDS:
		return lanyard_authorize_one_of((const char *const *)a->ids, a->n_ids);
	case AUTHZ_MEMBER_OF:
		return lanyard_authorize_member_of(a->td);
	case AUTHZ_FUNC:
		return lanyard_authorize_func(a->fn, a->ud);
	case AUTHZ_ANY:
	default:
		c = authz_new(a->kind);
		return c;
	}
}

LANYARD_API int lanyard_authorizer_check(const lanyard_authorizer *a, const char *peer_id)
{
	char td[TRUST_DOMAIN_MAX + 1];

	if (!a || !peer_id || spiffeid_parse(peer_id, td, NULL, NULL, 0) < 0)
		return LANYARD_EREJECTED;
	switch (a->kind) {
	case AUTHZ_ANY:
		return LANYARD_OK;
	case AUTHZ_IDS:
		/* The scheme and trust domain compare case-insensitively (SPIFFE-ID.md), but
		 * spiffeid_parse accepts only lower-case ones, so an exact comparison is right. */
		for (size_t i = 0; i < a->n_ids; i++)
			if (strcmp(a->ids[i], peer_id) == 0)
				return LANYARD_OK;
		return LANYARD_EREJECTED;
	case AUTHZ_MEMBER_OF:
		return strcmp(td, a->td) == 0 ? LANYARD_OK : LANYARD_EREJECTED;
	case AUTHZ_FUNC:
		return a->fn(a->ud, peer_id) == 0 ? LANYARD_OK : LANYARD_EREJECTED;
	}
	return LANYARD_EREJECTED;
}

LANYARD_API void lanyard_authorizer_free(lanyard_authorizer *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n_ids; i++)
		free(a->ids[i]);
	free(a->ids);
	free(a);
}
