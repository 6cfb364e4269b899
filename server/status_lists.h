/* status_lists.h: the entries and agents of the server's status page, a page at a time
 * (GET /list/entries and /list/agents on the operator port, opserver's list hook). */
#ifndef LANYARD_STATUS_LISTS_H
#define LANYARD_STATUS_LISTS_H

/* Rows per page. */
#define STATUS_LIST_PAGE 50

/* opserver's list hook; ud is the struct datastore (thread-safe, so any HTTP thread may call).
 *   entries: q "spiffe://..." is an exact SPIFFE ID, any other q a selector "type:value" the
 *            entries must hold; {"entries":[{"id","spiffe_id","parent_id","selectors"}],
 *            "next_page_token"} in the order of "entry show".
 *   agents:  q is a substring of the SPIFFE ID; {"agents":[{"spiffe_id","attestor",
 *            "not_after","last_seen","banned"}], "next_page_token"}.
 * A bad page_token or a datastore error gives {"error": "..."}. NULL for another name. */
char *status_lists_page(void *ud, const char *name, const char *q, const char *page_token);

#endif
