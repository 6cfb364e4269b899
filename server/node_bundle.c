/* node_bundle.c: Bundle messages of the node API (see node_bundle.h). */
#include "node_bundle.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "jwt.h"
#include "x509.h"

Lanyard__Node__V1__Bundle *node_bundle_pb(const char *td, int64_t sequence, int64_t hint,
					  const uint8_t *x509, size_t x509_len, const struct jwks *jwt,
					  const int64_t *jwt_expires_at)
{
	Lanyard__Node__V1__Bundle *pb = xcalloc(1, sizeof(*pb));
	lanyard__node__v1__bundle__init(pb);
	pb->trust_domain = xstrdup(td);
	pb->sequence = sequence;
	pb->refresh_hint = hint;
	const uint8_t **certs = NULL;
	size_t *lens = NULL, nc = 0;
	if (x509_len && x509_split_der(x509, x509_len, &certs, &lens, &nc) == 0) {
		pb->x509_authorities = xcalloc(nc + 1, sizeof(ProtobufCBinaryData));
		pb->n_x509_authorities = nc;
		for (size_t i = 0; i < nc; i++) {
			pb->x509_authorities[i].data = xmalloc(lens[i]);
			memcpy(pb->x509_authorities[i].data, certs[i], lens[i]);
			pb->x509_authorities[i].len = lens[i];
		}
	}
	free(certs);
	free(lens);
	size_t nj = jwks_count(jwt);
	pb->jwt_authorities = xcalloc(nj + 1, sizeof(*pb->jwt_authorities));
	pb->n_jwt_authorities = nj;
	for (size_t i = 0; i < nj; i++) {
		Lanyard__Node__V1__JWTKey *k = xcalloc(1, sizeof(*k));
		lanyard__node__v1__jwtkey__init(k);
		const uint8_t *spki;
		size_t spki_len;
		k->kid = xstrdup(jwks_get(jwt, i, &spki, &spki_len));
		k->public_key.data = xmalloc(spki_len);
		memcpy(k->public_key.data, spki, spki_len);
		k->public_key.len = spki_len;
		k->expires_at = jwt_expires_at ? jwt_expires_at[i] : 0;
		pb->jwt_authorities[i] = k;
	}
	return pb;
}

void node_bundle_free(Lanyard__Node__V1__Bundle *pb)
{
	if (!pb)
		return;
	free(pb->trust_domain);
	for (size_t i = 0; i < pb->n_x509_authorities; i++)
		free(pb->x509_authorities[i].data);
	free(pb->x509_authorities);
	for (size_t i = 0; i < pb->n_jwt_authorities; i++) {
		free(pb->jwt_authorities[i]->kid);
		free(pb->jwt_authorities[i]->public_key.data);
		free(pb->jwt_authorities[i]);
	}
	for (size_t i = 0; i < pb->n_tainted; i++) {
		free(pb->tainted[i]->id);
		free(pb->tainted[i]->jwt_kid);
		free(pb->tainted[i]->x509_authority.data);
		free(pb->tainted[i]);
	}
	free(pb->tainted);
	free(pb->jwt_authorities);
	free(pb);
}
