/* helper.h: "lanyard-agent helper": keeps an X509-SVID, its key and the trust bundle in files
 * for programs that only read files (nginx, PostgreSQL, HAProxy...). It follows FetchX509SVID
 * on the agent's socket and, on every renewal, writes the three files atomically, then signals
 * a process (pid or pid file) and/or runs a command. When the agent is away it keeps the last
 * good files and reconnects with backoff. */
#ifndef LANYARD_HELPER_H
#define LANYARD_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct helper_config {
	char *agent_socket;      /* NULL: SPIFFE_ENDPOINT_SOCKET, then the default path */
	char *spiffe_id;         /* the SVID to write; NULL: the first one served */
	char *cert_path;         /* certificate chain PEM, leaf first (0644) */
	char *key_path;          /* PKCS#8 private key PEM (0600) */
	char *bundle_path;       /* CA certificates PEM (0644) */
	bool federated_bundles;  /* also append the federated trust domains' CAs */
	char *pid_file;          /* signal the pid read from this file... */
	int64_t pid;             /* ...or this pid (0 = none) */
	char *signal_name;       /* SIGHUP, SIGUSR1, ... */
	char *cmd;               /* run with /bin/sh -c after each renewal */
	int64_t cmd_timeout;     /* seconds; the command is killed after it */
	char *log_level;
	char *log_format;
};

extern const struct cfg_option helper_config_options[];
extern const size_t helper_config_n_options;

/* Loads and checks a helper config (exclusive options, signal name). 0, or -1 with a message
 * naming the file and key in err; the struct must be freed either way. */
int helper_config_load(const char *path, struct helper_config *cfg, char *err, size_t errlen);
void helper_config_free(struct helper_config *cfg);

/* "lanyard-agent helper --config FILE [--once [--timeout SECONDS]]": argv[0] is "helper".
 * Returns the process exit status. Without --once it runs until SIGTERM/SIGINT and returns 0
 * with its watch thread still blocked on the agent's socket: the caller must end the process
 * at once (return it from main). With --once it writes the files once and returns (0, or 1
 * when no SVID came within the timeout). Bad usage or config: 1. */
int helper_main(int argc, char **argv);

#endif
