/* api_cli.h: "lanyard-agent api ...": Workload API client commands (fetch x509, fetch jwt,
 * validate jwt, fetch bundles, watch), built on common/workload_client.h. */
#ifndef LANYARD_API_CLI_H
#define LANYARD_API_CLI_H

/* argv[0] is "api", argv[1] the command. Prints results on stdout and errors on stderr. Returns
 * the process exit status: 0, or 1 on any error (usage, transport, gRPC status, invalid token). */
int api_cli_main(int argc, char **argv);

#endif
