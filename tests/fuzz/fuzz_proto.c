/* fuzz_proto: protobuf-c decoding of every message that crosses a trust boundary (the node API
 * between agent and server, the Workload API and Envoy SDS between workload and agent, health
 * checks, the CSI node calls between kubelet and agent), and the parsers the daemons run first on the decoded fields (CSRs, certificates,
 * keys, SPIFFE IDs).
 *
 * The first input byte picks the message type; the rest is its wire form. A decoded message must
 * pass protobuf_c_message_check, encode to exactly its reported size, and decode again to the
 * same encoding. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "csi/csi.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "fuzz.h"
#include "health.pb-c.h"
#include "keys.h"
#include "node.pb-c.h"
#include "spiffeid.h"
#include "workload.pb-c.h"
#include "x509.h"

static const ProtobufCMessageDescriptor *const types[] = {
	/* Requests the server decodes. */
	&lanyard__node__v1__attest_request__descriptor,
	&lanyard__node__v1__renew_agent_request__descriptor,
	&lanyard__node__v1__sync_request__descriptor,
	&lanyard__node__v1__sign_x509_request__descriptor,
	&lanyard__node__v1__sign_jwtrequest__descriptor,
	&lanyard__node__v1__get_bundle_request__descriptor,
	/* Responses the agent decodes. */
	&lanyard__node__v1__attest_response__descriptor,
	&lanyard__node__v1__renew_agent_response__descriptor,
	&lanyard__node__v1__sync_response__descriptor,
	&lanyard__node__v1__sign_x509_response__descriptor,
	&lanyard__node__v1__sign_jwtresponse__descriptor,
	&lanyard__node__v1__bundle__descriptor,
	/* Requests the agent decodes (from any local process). */
	&x509_svidrequest__descriptor,
	&x509_bundles_request__descriptor,
	&jwtsvidrequest__descriptor,
	&jwtbundles_request__descriptor,
	&validate_jwtsvidrequest__descriptor,
	&grpc__health__v1__health_check_request__descriptor,
	/* Responses workload clients decode (common/workload_client.c). */
	&x509_svidresponse__descriptor,
	&x509_bundles_response__descriptor,
	&jwtsvidresponse__descriptor,
	&jwtbundles_response__descriptor,
	&validate_jwtsvidresponse__descriptor,
	&grpc__health__v1__health_check_response__descriptor,
	/* Envoy SDS requests the agent decodes (from any local process). */
	&envoy__service__discovery__v3__discovery_request__descriptor,
	/* CSI requests the agent's CSI plugin decodes (from the kubelet). */
	&csi__v1__node_publish_volume_request__descriptor,
	&csi__v1__node_unpublish_volume_request__descriptor,
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

static void csr(ProtobufCBinaryData b)
{
	struct csr_info ci;
	char err[256];
	if (x509_csr_parse(b.data, b.len, &ci, err, sizeof(err)) == 0)
		FUZZ_CHECK(ci.spki != NULL);
	csr_info_free(&ci);
}

static void chain(ProtobufCBinaryData b)
{
	const uint8_t **certs;
	size_t *lens, n;
	if (x509_split_der(b.data, b.len, &certs, &lens, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct x509_info xi;
		if (x509_parse(certs[i], lens[i], &xi, NULL, 0) == 0)
			x509_info_free(&xi);
	}
	free(certs);
	free(lens);
}

static void id(const char *s)
{
	char td[TRUST_DOMAIN_MAX + 1];
	FUZZ_CHECK(s != NULL);
	(void)spiffeid_parse(s, td, NULL, NULL, 0);
}

static void bundle(const Lanyard__Node__V1__Bundle *b)
{
	if (!b)
		return;
	(void)trust_domain_validate(b->trust_domain, NULL, 0);
	for (size_t i = 0; i < b->n_x509_authorities; i++)
		chain(b->x509_authorities[i]);
	for (size_t i = 0; i < b->n_jwt_authorities; i++) {
		enum key_type t;
		int bits;
		FUZZ_CHECK(b->jwt_authorities[i] && b->jwt_authorities[i]->kid);
		(void)spki_key_type(b->jwt_authorities[i]->public_key.data,
				    b->jwt_authorities[i]->public_key.len, &t, &bits);
	}
}

/* What the daemons look at first in each decoded message. */
static void fields(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	if (d == &lanyard__node__v1__attest_request__descriptor) {
		const Lanyard__Node__V1__AttestRequest *r = (const void *)m;
		FUZZ_CHECK(r->attestor != NULL);
		csr(r->csr);
	} else if (d == &lanyard__node__v1__renew_agent_request__descriptor) {
		csr(((const Lanyard__Node__V1__RenewAgentRequest *)(const void *)m)->csr);
	} else if (d == &lanyard__node__v1__sign_x509_request__descriptor) {
		const Lanyard__Node__V1__SignX509Request *r = (const void *)m;
		for (size_t i = 0; i < r->n_items; i++) {
			FUZZ_CHECK(r->items[i] && r->items[i]->entry_id);
			csr(r->items[i]->csr);
		}
	} else if (d == &lanyard__node__v1__attest_response__descriptor) {
		const Lanyard__Node__V1__AttestResponse *r = (const void *)m;
		id(r->spiffe_id);
		chain(r->svid);
		bundle(r->bundle);
	} else if (d == &lanyard__node__v1__renew_agent_response__descriptor) {
		const Lanyard__Node__V1__RenewAgentResponse *r = (const void *)m;
		chain(r->svid);
		bundle(r->bundle);
	} else if (d == &lanyard__node__v1__sync_response__descriptor) {
		const Lanyard__Node__V1__SyncResponse *r = (const void *)m;
		for (size_t i = 0; i < r->n_upserts; i++) {
			FUZZ_CHECK(r->upserts[i]);
			id(r->upserts[i]->spiffe_id);
			id(r->upserts[i]->parent_id);
			for (size_t j = 0; j < r->upserts[i]->n_selectors; j++)
				FUZZ_CHECK(r->upserts[i]->selectors[j] != NULL);
		}
		for (size_t i = 0; i < r->n_removed_ids; i++)
			FUZZ_CHECK(r->removed_ids[i] != NULL);
		bundle(r->bundle);
	} else if (d == &lanyard__node__v1__sign_x509_response__descriptor) {
		const Lanyard__Node__V1__SignX509Response *r = (const void *)m;
		for (size_t i = 0; i < r->n_results; i++) {
			FUZZ_CHECK(r->results[i] && r->results[i]->entry_id && r->results[i]->error);
			chain(r->results[i]->svid);
		}
	} else if (d == &lanyard__node__v1__bundle__descriptor) {
		bundle((const void *)m);
	} else if (d == &jwtsvidrequest__descriptor) {
		const JWTSVIDRequest *r = (const void *)m;
		for (size_t i = 0; i < r->n_audience; i++)
			FUZZ_CHECK(r->audience[i] != NULL);
		id(r->spiffe_id);
	} else if (d == &x509_svidresponse__descriptor) {
		const X509SVIDResponse *r = (const void *)m;
		for (size_t i = 0; i < r->n_svids; i++) {
			FUZZ_CHECK(r->svids[i]);
			id(r->svids[i]->spiffe_id);
			chain(r->svids[i]->x509_svid);
			chain(r->svids[i]->bundle);
		}
		for (size_t i = 0; i < r->n_federated_bundles; i++) {
			FUZZ_CHECK(r->federated_bundles[i] && r->federated_bundles[i]->key);
			chain(r->federated_bundles[i]->value);
		}
	} else if (d == &x509_bundles_response__descriptor) {
		const X509BundlesResponse *r = (const void *)m;
		for (size_t i = 0; i < r->n_bundles; i++) {
			FUZZ_CHECK(r->bundles[i] && r->bundles[i]->key);
			chain(r->bundles[i]->value);
		}
	}
}

/* Unknown fields anywhere in the tree of sub-messages. */
static bool has_unknown_fields(const ProtobufCMessage *m)
{
	if (m->n_unknown_fields)
		return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		/* A oneof member shares its storage with the others: only the set one is valid. */
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t j = 0; j < n; j++)
				if (v[j] && has_unknown_fields(v[j]))
					return true;
		} else {
			const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
			if (sub && has_unknown_fields(sub))
				return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *d = types[data[0] % N_TYPES];
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
	if (!m)
		return 0;
	FUZZ_CHECK(m->descriptor == d);
	FUZZ_CHECK(protobuf_c_message_check(m));
	fields(m);

	/* Encoding is canonical: what decodes encodes to its reported size, and that encoding
	 * decodes and encodes to the same bytes. Unknown fields are kept verbatim, including ones
	 * protobuf-c itself would refuse on the way back in (field number 0 written as a
	 * non-minimal varint): the round trip is only checked without them. */
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	FUZZ_CHECK(buf != NULL);
	FUZZ_CHECK(protobuf_c_message_pack(m, buf) == len);
	if (has_unknown_fields(m)) {
		free(buf);
		protobuf_c_message_free_unpacked(m, NULL);
		return 0;
	}
	ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, len, buf);
	FUZZ_CHECK(again != NULL);
	size_t len2 = protobuf_c_message_get_packed_size(again);
	uint8_t *buf2 = malloc(len2 ? len2 : 1);
	FUZZ_CHECK(buf2 != NULL);
	FUZZ_CHECK(protobuf_c_message_pack(again, buf2) == len2);
	FUZZ_CHECK(len2 == len && (len == 0 || memcmp(buf, buf2, len) == 0));
	free(buf2);
	protobuf_c_message_free_unpacked(again, NULL);
	free(buf);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
