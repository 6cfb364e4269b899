/* bench_sim.h: simulated agents for the server benchmarks (bench_server, bench_fleet): the
 * join-token attestation, mutual TLS with the agent's SVID, and the SyncEntries snapshot, over
 * the blocking grpc_client. A sim_agent is used by one thread at a time; the WOLFSSL_CTXs may be
 * shared between threads (wolfSSL reference-counts them). Setup failures end the program
 * (bench_die). */
#ifndef LANYARD_BENCH_SIM_H
#define LANYARD_BENCH_SIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "grpc_client.h"
#include "keys.h"

#define TD "example.org"
#define NODE_PATH "/lanyard.node.v1.Node/"
#define CALL_TIMEOUT_MS 30000

struct sim_agent {
	char token[128];
	char id[256];
	char **entry_ids;
	size_t n_entries;
	uint8_t **csrs; /* one per entry (issue only) */
	size_t *csr_lens;
	uint8_t *chain; /* the agent's SVID */
	size_t chain_len;
	lkey *key;
	WOLFSSL_CTX *mtls;
	struct grpc_client *gc;
	uint8_t *sign_req; /* packed SignX509Request of all its entries */
	size_t sign_req_len;
	struct grpc_stream *stream;
	_Atomic int64_t last_delta_us;
};

/* A client context trusting the bundle's roots, presenting a's SVID (a == NULL: none, e.g. to
 * attest). */
WOLFSSL_CTX *sim_client_ctx(const uint8_t *roots, size_t roots_len, const struct sim_agent *a);
/* Connects over TLS, retrying a few times. */
struct grpc_client *sim_connect(const char *host, int port, WOLFSSL_CTX *ctx);
/* Attests with the agent's join token on gc (a connection without a client certificate) and
 * keeps the returned SVID (a->key, a->chain). */
void sim_attest(struct grpc_client *gc, struct sim_agent *a);
/* The certificates of a PEM bundle file, concatenated DER. */
void sim_read_bundle(const char *path, uint8_t **der, size_t *len);
/* sim_read_bundle, and a client context trusting them without a client certificate. */
WOLFSSL_CTX *sim_bundle_ctx(const char *path, uint8_t **roots, size_t *roots_len);
/* Opens the agent's entry stream on a->gc (a->stream) and reads its snapshot (reset ...
 * complete), which must hold a->n_entries entries. 0, or -1 with err. */
int sim_open_stream(struct sim_agent *a, char *err, size_t errlen);
/* Cancels the streams, closes the connections and frees n agents and the array. */
void sim_free_agents(struct sim_agent *v, int n);

/* The reader of every agent's entry stream: one thread, one poll() over all connections. */
struct sim_sync {
	struct sim_agent *agents;
	int n;
	atomic_bool stop;
	_Atomic uint64_t messages, upserts;
	atomic_int broken;
};
/* Thread body (arg: struct sim_sync): reads until stop, counting messages and upserts and
 * stamping each agent's last_delta_us. */
void *sim_sync_reader(void *arg);

/* Runs fn(i, ctx) for i in [0, n) on threads threads (an atomic counter hands out i). */
void sim_parallel(size_t n, int threads, void (*fn)(size_t i, void *ctx), void *ctx);

/* How sim_setup_agents prepares agents: join tokens (threads admin connections), entries
 * parented to each agent ("spiffe://example.org/bench/<label>/a<i>/w<j>", selector
 * unix:uid:<10000 + j>) in /v1/entries/batch requests of up to SIM_BATCH_ENTRIES, attestation
 * on threads threads. With port2, agents of odd index use the second server. */
#define SIM_BATCH_ENTRIES 10000
struct sim_setup {
	const char *admin;
	const char *host;
	int port, port2;
	int agents;
	int entries;
	int threads;
	const char *label;
};
struct sim_agent *sim_setup_agents(const struct sim_setup *p, WOLFSSL_CTX *server_only);
/* Mutual TLS for every agent (its context made on first use), and with stream its
 * SyncEntries snapshot, on p->threads threads. */
void sim_connect_agents(const struct sim_setup *p, struct sim_agent *v, const uint8_t *roots,
			size_t roots_len, bool stream);
/* The soft RLIMIT_NOFILE up to the hard one (10,000 agents hold 10,000 connections). */
void sim_raise_nofile(void);

#endif
