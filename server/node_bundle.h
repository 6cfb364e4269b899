/* node_bundle.h: the Bundle message of the node API (node.proto), built from a trust domain's
 * authorities: the server's own bundle (entry_streams_bundle) and the federated bundles the
 * entry streams push. No state; any thread. */
#ifndef LANYARD_NODE_BUNDLE_H
#define LANYARD_NODE_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"
#include "node.pb-c.h"

/* A Bundle of td's authorities: x509 is concatenated DER certificates, one x509_authority each;
 * jwt_expires_at (NULL: no expiry) one value per key of jwt. Every member is a copy the message
 * owns; tainted is left empty for the caller. Free with node_bundle_free. */
Lanyard__Node__V1__Bundle *node_bundle_pb(const char *td, int64_t sequence, int64_t hint,
					  const uint8_t *x509, size_t x509_len, const struct jwks *jwt,
					  const int64_t *jwt_expires_at);
/* Frees a message of node_bundle_pb, with any tainted authorities the caller added (each
 * member malloc'd). NULL-safe. */
void node_bundle_free(Lanyard__Node__V1__Bundle *pb);

#endif
