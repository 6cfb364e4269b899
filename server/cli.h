/* cli.h: the operator commands of lanyard-server ("token", "entry", "agent", "bundle"), clients of
 * the admin API over its Unix socket. */
#ifndef LANYARD_CLI_H
#define LANYARD_CLI_H

#include <stdbool.h>

/* argv[0] is the subcommand group ("token", "entry", "agent", "bundle"), argv[1] the command.
 * Prints results on stdout and errors on stderr. Returns the process exit status (0 or 1). */
int cli_main(int argc, char **argv);
/* True when name is one of the groups cli_main handles: lets main.c route argv[1]. */
bool cli_is_command(const char *name);

#endif
