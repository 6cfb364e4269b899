/* cli_mtls.h: the CLI's credentials for the admin API over mutual TLS (--server-url).
 *
 * The caller's X509-SVID comes from the Workload API (--workload-socket, else
 * SPIFFE_ENDPOINT_SOCKET): the one --client-spiffe-id names, else the first. Certificate, key and
 * bundle stay in memory and reach libcurl as blobs (Debian's libcurl uses OpenSSL, which takes
 * them); nothing is written to disk. The server must present an X509-SVID for
 * spiffe://<td>/lanyard/server chaining to that bundle: curl checks the chain, and
 * cli_mtls_pin_server, before any request is sent, opens a connection without sending anything,
 * checks the SPIFFE ID of the certificate it got and pins its key, so every later connection
 * must present that very key.
 *
 * Single-threaded, like the rest of the CLI. Functions print their errors ("error: ...") and
 * return 0 or -1. */
#ifndef LANYARD_CLI_MTLS_H
#define LANYARD_CLI_MTLS_H

#include "curl_dyn.h"

struct cli_mtls;

/* Fetches the SVID and bundle. workload_socket may be NULL (environment, then default). */
int cli_mtls_load(const char *workload_socket, const char *client_id, struct cli_mtls **out);
/* Connects to server_url (https://HOST:PORT) once and pins the server's key (see above). */
int cli_mtls_pin_server(struct cli_mtls *m, const struct curl_fns *cu, const char *server_url,
			long timeout_s);
/* Sets the client certificate, key, CA bundle and the pinned key on a request. */
void cli_mtls_apply(const struct cli_mtls *m, const struct curl_fns *cu, CURL *c);
/* Wipes the key and frees. NULL-safe. */
void cli_mtls_free(struct cli_mtls *m);

#endif
