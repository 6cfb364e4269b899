/* signer.h: the process that alone holds the server's private CA keys.
 *
 * signer_start forks it at the very start of `lanyard-server run`, before the parent has a
 * thread, a listener, a datastore connection or a key, so the network-facing process never had
 * a CA private key in its memory. The child makes itself non-dumpable, dies with its parent
 * (PR_SET_PDEATHSIG), closes every descriptor but its socketpairs and stderr, and serves the
 * fixed-format requests of signer_msg.h: it generates, loads, deletes and signs with the key
 * files under key_dir (and the upstream CA key), and nothing else.
 *
 * Channels: one SOCK_SEQPACKET socketpair per channel and one signer thread per channel; a
 * caller takes a free channel for one blocking round-trip, so as many signatures run in parallel
 * as there are channels (size them to the signing threads: the node API's workers and a few).
 *
 * If the signer dies, the server cannot sign: the first caller to notice (or signer_check, on
 * SIGCHLD) logs one line and ends the process with status 1, for the service manager to restart
 * both. Restarting the signer alone would need the parent to replay every handle it holds, and
 * would hide a signer that crashes on some input behind an endless loop of restarts.
 *
 * Thread-safety: every function but signer_start/signer_stop may be called from any thread. */
#ifndef LANYARD_SIGNER_H
#define LANYARD_SIGNER_H

#include <stddef.h>
#include <sys/types.h>

#include "keys.h"
#include "signer_msg.h"

struct signer_options {
	const char *key_dir;	       /* <data_dir>/ca: the authorities' key files */
	const char *upstream_key_path; /* NULL: no upstream CA */
	enum key_type key_type;	       /* of the keys GENERATE makes */
	size_t channels;	       /* parallel signatures; at least 1 */
};

struct signer;

int signer_start(const struct signer_options *o, struct signer **out, char *err, size_t errlen);
/* Closes the channels (the signer exits on their end) and reaps it. NULL-safe. */
void signer_stop(struct signer *s);
pid_t signer_pid(const struct signer *s);
/* Call on SIGCHLD: when the signer has exited, logs it and exits the process with status 1. */
void signer_check(struct signer *s);

/* One round-trip: 0 with the reply in *rep (whose status may be negative), -EINVAL for a
 * request the codec refuses. Never returns when the signer is gone (see above). */
int signer_call(struct signer *s, const struct signer_req *req, struct signer_rep *rep);

/* The keys below are lkey_remote_new keys: they sign through the signer and hold only the public
 * half. id is an authority id (signer_id_valid); kind X509 or JWT (UPSTREAM for load only, id
 * ignored). Errors: -1 with the signer's message in err. */
int signer_generate(struct signer *s, enum signer_kind kind, const char *id, lkey **out, char *err,
		    size_t errlen);
int signer_load(struct signer *s, enum signer_kind kind, const char *id, lkey **out, char *err,
		size_t errlen);
/* Deletes both key files of authority id and drops its keys from the signer. */
int signer_destroy(struct signer *s, const char *id);

#endif
