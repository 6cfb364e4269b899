/* migrate.h: `lanyard-server datastore migrate`, the move from one server (SQLite) to several
 * (PostgreSQL): copies an existing SQLite datastore into the database a server configuration
 * names. Runs on the command's own thread; opens both datastores itself. */
#ifndef LANYARD_MIGRATE_H
#define LANYARD_MIGRATE_H

/* argv[0] is "datastore", argv[1] the command ("migrate"). Prints what it did on stdout and
 * errors on stderr (never a password or a token). Returns the process exit status (0 or 1). */
int datastore_cmd_main(int argc, char **argv);

#endif
