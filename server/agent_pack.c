/* agent_pack.c: see agent_pack.h. Layout: the struct, then the selector and alias pointers,
 * then the strings (ID, selectors, aliases, serial); the struct and pointers keep their
 * alignment because they come first. */
#include "agent_pack.h"

#include <string.h>

#include "util.h"

static bool keeps_serial(const struct agent_record *a, bool with_serial)
{
	return with_serial && a->serial;
}

size_t agent_pack_size(const struct agent_record *a, bool with_serial)
{
	size_t n = sizeof(*a) + (a->n_selectors + a->n_aliases) * sizeof(char *) +
		   strlen(a->spiffe_id) + 1;
	for (size_t i = 0; i < a->n_selectors; i++)
		n += strlen(a->selectors[i]) + 1;
	for (size_t i = 0; i < a->n_aliases; i++)
		n += strlen(a->aliases[i]) + 1;
	if (keeps_serial(a, with_serial))
		n += strlen(a->serial) + 1;
	return n;
}

char *agent_pack_str(char **at, const char *src)
{
	size_t len = strlen(src) + 1;
	char *r = memcpy(*at, src, len);
	*at += len;
	return r;
}

struct agent_record *agent_pack(const struct agent_record *a, bool with_serial)
{
	struct agent_record *p = xmalloc(agent_pack_size(a, with_serial));
	char **v = (char **)(p + 1);
	char *at = (char *)(v + a->n_selectors + a->n_aliases);
	*p = (struct agent_record){.n_selectors = a->n_selectors, .n_aliases = a->n_aliases,
				   .not_after = a->not_after, .created_at = a->created_at,
				   .last_seen = a->last_seen, .banned = a->banned};
	p->selectors = a->n_selectors ? v : NULL;
	p->aliases = a->n_aliases ? v + a->n_selectors : NULL;
	p->spiffe_id = agent_pack_str(&at, a->spiffe_id);
	for (size_t i = 0; i < a->n_selectors; i++)
		v[i] = agent_pack_str(&at, a->selectors[i]);
	for (size_t i = 0; i < a->n_aliases; i++)
		v[a->n_selectors + i] = agent_pack_str(&at, a->aliases[i]);
	if (keeps_serial(a, with_serial))
		p->serial = agent_pack_str(&at, a->serial);
	return p;
}
