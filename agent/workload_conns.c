/* workload_conns.c: admission of Workload API connections and the idle sweep.
 *
 * Every accepted connection pins its caller (caller_from_socket) and is counted against
 * max_conns_per_process and max_conns_per_uid; refusals are logged once per interval with a
 * count. Connections without an open call for idle_timeout_ms are shut down. Loop thread only. */
#include "workload_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "log.h"
#include "util.h"

/* ---- connection accounting ---- */

static struct conn_count *count_slot(struct workload_api *w, const struct conn_count *key,
				     bool create)
{
	struct conn_count *u;

	for (size_t i = 0; i < w->n_counts; i++) {
		u = &w->counts[i];
		if (u->is_process == key->is_process &&
		    (key->is_process ? u->pid == key->pid && u->start_time == key->start_time
				     : u->uid == key->uid))
			return u;
	}
	if (!create)
		return NULL;
	u = realloc(w->counts, (w->n_counts + 1) * sizeof(*u));
	if (!u)
		return NULL;
	w->counts = u;
	u = &w->counts[w->n_counts++];
	*u = *key;
	u->n = 0;
	return u;
}

static void count_release(struct workload_api *w, struct conn_count *u)
{
	if (u && u->n > 0 && --u->n == 0) {
		*u = w->counts[w->n_counts - 1];
		w->n_counts--;
	}
}

/* Logs the refusals counted but not logged in the interval that ended. */
void wl_refusals_flush(struct workload_api *w, uint64_t now)
{
	struct refusal_log *r = &w->refusals;

	if (!r->since_ms || now - r->since_ms < REFUSAL_LOG_INTERVAL_MS)
		return;
	if (r->suppressed)
		log_warnx("workload: %" PRIu64 " more connections refused in the last %u s (last: %s)",
			 r->suppressed, REFUSAL_LOG_INTERVAL_MS / 1000, r->last);
	r->since_ms = 0;
	r->suppressed = 0;
}

static void refuse_log(struct workload_api *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void refuse_log(struct workload_api *w, const char *fmt, ...)
{
	struct refusal_log *r = &w->refusals;
	uint64_t now = uv_now(w->loop);
	va_list ap;

	w->stats.conns_refused++;
	va_start(ap, fmt);
	vsnprintf(r->last, sizeof(r->last), fmt, ap);
	va_end(ap);
	wl_refusals_flush(w, now);
	if (r->since_ms) {
		r->suppressed++;
		return;
	}
	r->since_ms = now ? now : 1;
	log_warnx("workload: refusing connection: %s (further refusals are counted for %u s)",
		 r->last, REFUSAL_LOG_INTERVAL_MS / 1000);
}

static unsigned count_of(struct workload_api *w, const struct conn_count *key)
{
	struct conn_count *u = count_slot(w, key, false);

	return u ? u->n : 0;
}

/* 0 when the caller is within its limits (its counts are then taken), -1 when refused. */
static int admit(struct workload_api *w, const struct caller *c)
{
	struct conn_count pk = {.is_process = true, .pid = c->pid, .start_time = c->start_time};
	struct conn_count uk = {.uid = c->uid};
	unsigned maxp = w->opts.max_conns_per_process, maxu = w->opts.max_conns_per_uid, n;
	struct conn_count *slot;

	if (maxp && (n = count_of(w, &pk)) >= maxp) {
		refuse_log(w, "pid %d (uid %u) already has %u connections (max_conns_per_process)",
			   (int)c->pid, (unsigned)c->uid, n);
		return -1;
	}
	if (maxu && (n = count_of(w, &uk)) >= maxu) {
		refuse_log(w, "uid %u already has %u connections (max_conns_per_uid)",
			   (unsigned)c->uid, n);
		return -1;
	}
	/* Slots are looked up again after each creation: creating one may move the others. */
	slot = count_slot(w, &pk, true);
	if (!slot) {
		refuse_log(w, "out of memory");
		return -1;
	}
	slot->n++;
	if (maxu) {
		slot = count_slot(w, &uk, true);
		if (!slot) {
			count_release(w, count_slot(w, &pk, false));
			refuse_log(w, "out of memory");
			return -1;
		}
		slot->n++;
	}
	return 0;
}

static void release_counts(struct workload_api *w, const struct caller *c)
{
	struct conn_count pk = {.is_process = true, .pid = c->pid, .start_time = c->start_time};
	struct conn_count uk = {.uid = c->uid};

	count_release(w, count_slot(w, &pk, false));
	if (w->opts.max_conns_per_uid)
		count_release(w, count_slot(w, &uk, false));
}

/* Closes connections without an open call for idle_timeout_ms. Shutting the socket down makes
 * the gRPC server see end-of-file and close the connection the ordinary way (wl_on_disconnect). */
void wl_on_idle_sweep(uv_timer_t *t)
{
	struct workload_api *w = t->data;
	uint64_t now = uv_now(w->loop);
	unsigned closed = 0;

	wl_refusals_flush(w, now);
	for (struct wconn *wc = w->conns; wc; wc = wc->next) {
		if (wc->idle_closed)
			continue;
		if (grpc_conn_stream_count(wc->gc) > 0) {
			wc->active_ms = now;
			continue;
		}
		if (now - wc->active_ms < w->opts.idle_timeout_ms)
			continue;
		wc->idle_closed = true;
		shutdown(grpc_conn_fd(wc->gc), SHUT_RDWR);
		closed++;
	}
	if (closed)
		log_debug("workload: closed %u connections idle for %u ms", closed,
			  w->opts.idle_timeout_ms);
}

void wl_on_idle_timer_closed(uv_handle_t *h)
{
	struct workload_api *w = h->data;

	w->pending_async--;
	wl_maybe_free(w);
}

int wl_on_connect(struct grpc_conn *conn, int fd)
{
	struct workload_api *w = grpc_server_ud(grpc_conn_server(conn));
	struct wconn *wc;
	char err[256];

	if (w->stopping)
		return -1;
	wc = calloc(1, sizeof(*wc));
	if (!wc)
		return -1;
	wc->w = w;
	wc->refs = 1;
	/* Pinned now, before the caller could exit and have its pid reused. */
	if (caller_from_socket(fd, w->opts.proc_root, &wc->caller, err, sizeof(err)) < 0) {
		refuse_log(w, "%s", err);
		goto refuse;
	}
	if (admit(w, &wc->caller) < 0)
		goto refuse;
	wc->gc = conn;
	wc->active_ms = uv_now(w->loop);
	wc->next = w->conns;
	if (w->conns)
		w->conns->prev = wc;
	w->conns = wc;
	w->stats.conns++;
	grpc_conn_set_data(conn, wc);
	return 0;
refuse:
	wconn_unref(wc);
	return -1;
}

void wl_on_disconnect(struct grpc_conn *conn)
{
	struct wconn *wc = grpc_conn_data(conn);
	struct workload_api *w;

	if (!wc)
		return;
	grpc_conn_set_data(conn, NULL);
	w = wc->w;
	release_counts(w, &wc->caller);
	if (wc->prev)
		wc->prev->next = wc->next;
	else
		w->conns = wc->next;
	if (wc->next)
		wc->next->prev = wc->prev;
	wc->prev = wc->next = NULL;
	wc->gc = NULL;
	w->stats.conns--;
	wconn_unref(wc);
}
