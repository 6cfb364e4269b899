/* admin_routes.h: what the admin API's route modules share (admin_api.c and its route files:
 * admin_entries.c, admin_agents.c, admin_federation.c). Internal to the admin API: nothing else
 * includes it.
 *
 * A route handler runs on one of libmicrohttpd's connection threads, after admin_api.c's
 * handle_request has authorized the caller; it reads the request through struct call and fills
 * struct reply (a status and a JSON document or a text body), which admin_api.c sends. */
#ifndef LANYARD_ADMIN_ROUTES_H
#define LANYARD_ADMIN_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <jansson.h>
#include <microhttpd.h>

#include "admin_api.h"
#include "datastore.h"

/* What a daemon passes admin_api.c's handler as cls: the API and, for the mutual-TLS listener,
 * that listener (admin_tls.c), whose peers are authorized as admin SVID peers; NULL for the Unix
 * socket, whose peers are authorized by uid. */
struct admin_tls;
struct admin_listener {
	struct admin_api *api;
	struct admin_tls *tls;
};
struct admin_api {
	struct MHD_Daemon *daemon;
	struct datastore *ds;
	struct admin_hooks hooks;
	char *trust_domain;
	char *path;
	struct stat sock_st; /* of the socket we created, for unix_socket_remove */
	uid_t euid;
	gid_t group;	/* admin_socket_group, when group_set */
	bool group_set;
	struct admin_listener unix_listener; /* {this API, NULL} */
};

/* What a route produces: a status and either a JSON document, a text body or a response
 * already made (a streamed one). */
struct reply {
	unsigned int status;
	json_t *json;
	char *text;		/* malloc'd */
	struct MHD_Response *resp;	/* sent as it is (headers included), then destroyed */
	const char *content_type;
	const char *allow;	/* for 405 */
};

struct call {
	struct admin_api *api;
	struct MHD_Connection *conn;
	const char *id;		/* the {id} of /v1/entries/{id}, else NULL */
	const char *body;
	size_t body_len;
};

/* admin_api.c's MHD callbacks, for every daemon serving the admin routes (cls: a listener). */
enum MHD_Result admin_api_handle_request(void *cls, struct MHD_Connection *conn, const char *url,
					 const char *method, const char *version,
					 const char *upload_data, size_t *upload_data_size,
					 void **con_cls);
void admin_api_request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				 enum MHD_RequestTerminationCode toe);

/* Helpers of admin_api.c for the route modules. reply_error and reply_json replace any reply
 * already set; parse_body, only_keys and body_string set r on failure. */
void reply_error(struct reply *r, unsigned int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void reply_json(struct reply *r, unsigned int status, json_t *j);
void notify_changed(struct call *c);
json_t *parse_body(struct call *c, struct reply *r, bool empty_ok);
bool only_keys(json_t *o, const char *const *allowed, struct reply *r);
const char *body_string(json_t *o, const char *key, struct reply *r);
const char *query(struct call *c, const char *key);
bool identity_assignable(struct admin_api *api, const char *what, const char *id,
			 struct reply *r);
unsigned int ds_status(int ret);
void reply_count(struct call *c, struct reply *r, int (*count)(struct datastore *, int64_t *),
		 const char *what);

/* admin_entries.c: join tokens and registration entries. */
void h_token_create(struct call *c, struct reply *r);
void h_entry_create(struct call *c, struct reply *r);
void h_entry_list(struct call *c, struct reply *r);
void h_entry_count(struct call *c, struct reply *r);
void h_entry_batch(struct call *c, struct reply *r);
void h_entry_get(struct call *c, struct reply *r);
void h_entry_update(struct call *c, struct reply *r);
void h_entry_delete(struct call *c, struct reply *r);

/* admin_agents.c: agents, servers, CA authorities, SVIDs minted by hand. */
void h_agent_list(struct call *c, struct reply *r);
void h_agent_count(struct call *c, struct reply *r);
void h_server_list(struct call *c, struct reply *r);
void h_agent_show(struct call *c, struct reply *r);
void h_agent_evict(struct call *c, struct reply *r);
void h_agent_ban(struct call *c, struct reply *r);
void h_authority_list(struct call *c, struct reply *r);
void h_authority_prepare(struct call *c, struct reply *r);
void h_authority_activate(struct call *c, struct reply *r);
void h_authority_taint(struct call *c, struct reply *r);
void h_authority_revoke(struct call *c, struct reply *r);
void h_mint_x509(struct call *c, struct reply *r);
void h_mint_jwt(struct call *c, struct reply *r);

/* admin_federation.c: the bundle, federation relationships, federated bundles. */
void h_fed_list(struct call *c, struct reply *r);
void h_fed_create(struct call *c, struct reply *r);
void h_fed_update(struct call *c, struct reply *r);
void h_fed_show(struct call *c, struct reply *r);
void h_fed_delete(struct call *c, struct reply *r);
void h_fed_refresh(struct call *c, struct reply *r);
void h_bundle(struct call *c, struct reply *r);
void h_fed_bundle_list(struct call *c, struct reply *r);
void h_fed_bundle_show(struct call *c, struct reply *r);
void h_fed_bundle_set(struct call *c, struct reply *r);
void h_fed_bundle_delete(struct call *c, struct reply *r);

#endif
