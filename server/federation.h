/* federation.h: the bundle fetcher. For every federation relationship in the datastore it fetches
 * the foreign trust domain's bundle from its bundle endpoint on the schedule of the bundle's
 * spiffe_refresh_hint (bounded to [FED_REFRESH_MIN_S, FED_REFRESH_MAX_S]; failures retry sooner,
 * with backoff) and stores it with ds_fed_bundle_put (source "endpoint").
 *
 * https_spiffe: the endpoint must present an X509-SVID with exactly the relationship's
 * endpoint_spiffe_id that chains to the last bundle stored for that trust domain, or, before any
 * was stored, to the relationship's trust_bundle. https_web: ordinary web PKI (libcurl, the
 * system's CA store, host name checked). A document that is not a valid SPIFFE bundle, larger
 * than BUNDLE_DOC_MAX, without an X.509 authority, or older (lower spiffe_sequence) than the
 * stored one is refused with one log line and the stored bundle is kept. Several servers sharing
 * a database may all fetch: ds_fed_bundle_put never goes back to an older sequence.
 *
 * Threading: one thread of this module does the fetching (blocking I/O with timeouts, never on
 * the server's loop). Every other function may be called from any thread. */
#ifndef LANYARD_FEDERATION_H
#define LANYARD_FEDERATION_H

#include <stdint.h>

#include <jansson.h>

#include "datastore.h"
#include "metrics.h"

#define FED_REFRESH_MIN_S 5
#define FED_REFRESH_MAX_S 3600
#define FED_REFRESH_DEFAULT_S 300

struct federation;

/* changed(ud) is called (on the fetcher's thread) after a fetched bundle was stored, so the
 * server can push it to agents. own_trust_domain and web_ca_file (PEM CAs that authenticate
 * https_web endpoints instead of the system store; NULL: the system store) are copied. NULL on
 * failure (logged). */
struct federation *federation_start(struct datastore *ds, const char *own_trust_domain,
				    const char *web_ca_file, void (*changed)(void *ud), void *ud);
/* Stops the thread (an ongoing fetch ends at its timeout) and frees. NULL-safe. */
void federation_stop(struct federation *f);
/* Fetch trust_domain's bundle as soon as possible (a new or updated relationship, `refresh`). */
void federation_refresh(struct federation *f, const char *trust_domain);
/* The relationship is gone: forget its state and delete the bundle fetched through it (a bundle
 * an operator set by hand stays). */
void federation_forget(struct federation *f, const char *trust_domain);
/* {"last_success", "last_error", "last_error_at", "next_attempt", "sequence", "fetches",
 * "failures"} of one trust domain; NULL when it was never tried. */
json_t *federation_state_json(struct federation *f, const char *trust_domain);
/* {"<td>": state, ...} for /status. */
json_t *federation_status_json(struct federation *f);
/* Adds the lanyard_server_federation_* families to m. */
void federation_metrics(struct federation *f, struct metrics *m, const char *prefix);

#endif
