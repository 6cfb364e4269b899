/* taint_ack.c: agents' acknowledgements of tainted authorities (see taint_ack.h). */
#include "taint_ack.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Authority IDs are 32 lowercase hex digits (ca.c); anything else from an agent is ignored. */
static bool authority_id_ok(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static char *ack_key(const char *authority_id, const char *agent_id)
{
	size_t len = strlen("taint_ack/") + strlen(authority_id) + 1 + strlen(agent_id) + 1;
	char *k = xmalloc(len);
	snprintf(k, len, "taint_ack/%s/%s", authority_id, agent_id);
	return k;
}

void taint_ack_record(struct datastore *ds, const char *agent_id, const char *const *ids,
		      size_t n, int64_t now)
{
	for (size_t i = 0; i < n && i < TAINT_ACK_MAX; i++) {
		if (!authority_id_ok(ids[i]))
			continue;
		char *k = ack_key(ids[i], agent_id);
		if (ds_kv_set_int(ds, k, now) < 0)
			log_warnx("cannot record that agent %s is clear of tainted authority %s",
				  agent_id, ids[i]);
		else
			log_info("agent %s is clear of tainted authority %s", agent_id, ids[i]);
		free(k);
	}
}

int taint_ack_pending(struct datastore *ds, const char *authority_id, char ***pending, size_t *n)
{
	struct agent_record **agents = NULL;
	size_t na = 0;
	*pending = NULL;
	*n = 0;
	int r = ds_agent_list(ds, &agents, &na);
	if (r < 0)
		return r;
	char **out = xcalloc(na + 1, sizeof(*out));
	size_t k = 0;
	for (size_t i = 0; i < na; i++) {
		char *key = ack_key(authority_id, agents[i]->spiffe_id);
		int64_t at;
		if (ds_kv_get_int(ds, key, &at) < 0)
			out[k++] = xstrdup(agents[i]->spiffe_id);
		free(key);
	}
	agent_record_array_free(agents, na);
	*pending = out;
	*n = k;
	return 0;
}
