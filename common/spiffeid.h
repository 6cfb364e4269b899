/* spiffeid.h: SPIFFE ID parsing and validation (SPIFFE-ID.md). */
#ifndef LANYARD_SPIFFEID_H
#define LANYARD_SPIFFEID_H

#include <stdbool.h>
#include <stddef.h>

#define SPIFFEID_MAX 2048
#define TRUST_DOMAIN_MAX 255

/* Validates s as a SPIFFE ID. Returns 0, or -1 with a human reason in err (may be NULL).
 * The trust domain is copied to td (lower case, at most TRUST_DOMAIN_MAX+1 bytes) when td is
 * not NULL; *path_out (when not NULL) points into s at the path ("" for a trust domain ID). */
int spiffeid_parse(const char *s, char *td, const char **path_out, char *err, size_t errlen);
/* A workload (leaf) ID: valid and with a non-empty path. */
int spiffeid_validate_leaf(const char *s, char *err, size_t errlen);
/* True when s is a valid SPIFFE ID in trust domain td ("example.org"). */
bool spiffeid_member_of(const char *s, const char *td);
/* True when s is a valid SPIFFE ID of trust domain td inside the namespace the server keeps for
 * itself and its agents: spiffe://<td>/lanyard and everything under it. Such IDs are never
 * given to workloads (entries) nor used as join token aliases. */
#define SPIFFEID_RESERVED_SEGMENT "lanyard"
bool spiffeid_reserved(const char *s, const char *td);
/* Validates a bare trust domain name ("example.org"). */
int trust_domain_validate(const char *td, char *err, size_t errlen);

#endif
