/* taint_set.c: tainted CA authorities and their acknowledgement (see taint_set.h). */
#include "taint_set.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static void clear_list(struct taint_set *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->ids[i]);
		free(t->certs[i]);
	}
	t->n = 0;
}

static bool acked(const struct taint_set *t, const char *id)
{
	for (size_t i = 0; i < t->n_acked; i++)
		if (strcmp(t->acked[i], id) == 0)
			return true;
	return false;
}

bool taint_set_update(struct taint_set *t, const Lanyard__Node__V1__Bundle *b, int64_t now)
{
	clear_list(t);
	bool fresh = false;
	for (size_t i = 0; i < b->n_tainted; i++) {
		const Lanyard__Node__V1__TaintedAuthority *a = b->tainted[i];
		if (!a || !a->id || !*a->id || a->x509_authority.len == 0)
			continue;
		if (t->n == TAINT_SET_MAX) {
			log_warnx("the bundle lists more than %d tainted authorities: ignoring %s",
				  TAINT_SET_MAX, a->id);
			continue;
		}
		t->ids[t->n] = xstrdup(a->id);
		t->certs[t->n] = xmalloc(a->x509_authority.len);
		memcpy(t->certs[t->n], a->x509_authority.data, a->x509_authority.len);
		t->lens[t->n] = a->x509_authority.len;
		t->n++;
		if (!acked(t, a->id))
			fresh = true;
	}
	if (fresh && !t->pending) {
		t->pending = true;
		t->pending_since = now;
		t->next_check = now;
	}
	return fresh;
}

void taint_set_acked(struct taint_set *t)
{
	for (size_t i = 0; i < t->n_acked; i++)
		free(t->acked[i]);
	t->n_acked = 0;
	for (size_t i = 0; i < t->n; i++)
		t->acked[t->n_acked++] = xstrdup(t->ids[i]);
	t->pending = false;
}

void taint_set_free(struct taint_set *t)
{
	clear_list(t);
	for (size_t i = 0; i < t->n_acked; i++)
		free(t->acked[i]);
	t->n_acked = 0;
}
