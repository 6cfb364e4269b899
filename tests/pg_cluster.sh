#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: initdb into a temporary directory, the server listening
# only on a Unix socket in that directory (no TCP), trust authentication, stopped and removed at
# the end. Used by the datastore unit test (through `run`) and by integration tests (lib.sh).
#
#   pg_cluster.sh run CMD [ARGS...]  start a cluster, run CMD with LANYARD_TEST_PG_CONNSTR set to
#                                     its connection string, stop it; exits with CMD's status
#   pg_cluster.sh start DIR           start a cluster in DIR (created); prints the connection string
#   pg_cluster.sh restart DIR         start a stopped cluster of DIR again (same data)
#   pg_cluster.sh stop DIR            stop it (DIR is left for the caller to remove)
#
# When PostgreSQL is not installed: exit 77 (the test is skipped), except under CI (CI=true),
# where these tests must run, so the missing server is a failure.
set -euo pipefail

pg_bin() {
	local d
	for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

unavailable() {
	if [ "${CI:-}" = true ]; then
		echo "pg_cluster: $* (CI must run the PostgreSQL tests: install the postgresql package)" >&2
		exit 1
	fi
	echo "pg_cluster: $*: skipping" >&2
	exit 77
}

# as_owner CMD...: runs CMD as the cluster's owner (postgres when we are root: initdb refuses root).
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# postmaster_start DIR BIN: starts the initialised cluster in DIR.
postmaster_start() {
	local dir=$1 bin=$2
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
		-o "-k $dir/sock -c listen_addresses='' -p 5432 -c fsync=off -c max_connections=200" \
		start >"$dir/pg_ctl.log" 2>&1 ||
		{ cat "$dir/pg_ctl.log" "$dir/data/server.log" >&2 2>/dev/null; return 1; }
}

cluster_start() {
	local dir=$1 bin
	bin=$(pg_bin) || unavailable "PostgreSQL server binaries not found under /usr/lib/postgresql"
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		unavailable "no postgres user to run the server as"
	fi
	mkdir -p "$dir/data" "$dir/sock"
	chmod 700 "$dir/data"
	chmod 755 "$dir" "$dir/sock"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir/data" "$dir/sock"
	as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; return 1; }
	# Only a Unix socket in our own directory: the port number just names the socket file.
	postmaster_start "$dir" "$bin" || return 1
	as_owner "$bin/psql" -h "$dir/sock" -p 5432 -U postgres -d postgres -qAt \
		-c "CREATE DATABASE lanyard" >/dev/null
	echo "host=$dir/sock port=5432 user=postgres dbname=lanyard"
}

cluster_stop() {
	local dir=$1 bin
	bin=$(pg_bin) || return 0
	[ -f "$dir/data/postmaster.pid" ] || return 0
	as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

case "${1:-}" in
start)
	cluster_start "${2:?usage: pg_cluster.sh start DIR}"
	;;
restart)
	cluster_stop "${2:?usage: pg_cluster.sh restart DIR}"
	postmaster_start "$2" "$(pg_bin)"
	;;
stop)
	cluster_stop "${2:?usage: pg_cluster.sh stop DIR}"
	;;
run)
	shift
	[ $# -gt 0 ] || { echo "usage: pg_cluster.sh run CMD [ARGS...]" >&2; exit 2; }
	dir=$(mktemp -d /tmp/lanyard-pg.XXXXXX)
	trap 'cluster_stop "$dir"; rm -rf "$dir"' EXIT
	LANYARD_TEST_PG_CONNSTR=$(cluster_start "$dir")
	export LANYARD_TEST_PG_CONNSTR
	set +e
	"$@"
	rc=$?
	set -e
	exit $rc
	;;
*)
	echo "usage: pg_cluster.sh run CMD... | start DIR | stop DIR" >&2
	exit 2
	;;
esac
