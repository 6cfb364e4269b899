/* node_identity.h: node attestation, the agent's side: the credential it presents to the server.
 * node_identity.c attests and renews the agent identity for the sync thread (through
 * node_client_internal.h); what it reads from outside the agent is declared here.
 *
 * Threads: no state; any thread. */
#ifndef LANYARD_NODE_IDENTITY_H
#define LANYARD_NODE_IDENTITY_H

#include <stddef.h>

/* Reads the agent's projected service account token (k8s_psat) from path: trailing whitespace
 * trimmed, checked to have the shape of a JWT (three base64url parts). The file is read anew on
 * every attestation because the kubelet rotates it. 0 with a NUL-terminated token the caller
 * wipes (secure_zero) and frees, or -1 with a reason in err. */
int k8s_psat_token_read(const char *path, char **out, size_t *len, char *err, size_t errlen);

#endif
