# Shared helpers of the integration tests: each test sources this, gets its own temp dir, starts
# the real binaries with inline configs on loopback and Unix sockets, and everything it started
# is stopped when it exits (pass or fail).
set -euo pipefail

BIN="${LANYARD_BIN:?LANYARD_BIN must point at build/bin}"
SRC="${LANYARD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PY=/usr/bin/python3
TD=example.org

T="$(mktemp -d /tmp/lanyard-it.XXXXXX)"
chmod 755 "$T"
PIDS=()
PG_DIR=""

cleanup() {
	local rc=$?
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 40 lines)"
			tail -n 40 "$f"
		done
	fi
	if [ -n "$PG_DIR" ]; then
		bash "$SRC/tests/pg_cluster.sh" stop "$PG_DIR" || true
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok - $*"
}

# start_pg: a throwaway PostgreSQL cluster in $T/pg (Unix socket only), stopped at exit; sets
# PG_CONNSTR. Where PostgreSQL is not installed the test exits 77 (skipped), but fails under CI.
start_pg() {
	PG_DIR="$T/pg"
	local rc=0
	PG_CONNSTR=$(bash "$SRC/tests/pg_cluster.sh" start "$PG_DIR") || rc=$?
	[ $rc -eq 0 ] || exit $rc
}

# skip REASON: the test cannot run here. Exit 77 is registered as SKIP_RETURN_CODE, so ctest
# reports it as skipped, and tests/run.sh fails a CI run in which any test was skipped.
skip() {
	echo "SKIP: $*"
	exit 77
}

# A free TCP port on 127.0.0.1.
free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds or time runs out.
wait_for() {
	local secs=$1
	shift
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	"$@"
}

# write_server_config [extra JSON members]: writes $T/server.json.
write_server_config() {
	SERVER_PORT=${SERVER_PORT:-$(free_port)}
	SERVER_HTTP_PORT=${SERVER_HTTP_PORT:-$(free_port)}
	ADMIN="$T/server/admin.sock"
	cat >"$T/server.json" <<JSON
{
  "trust_domain": "$TD",
  "data_dir": "$T/server/data",
  "bind_address": "127.0.0.1",
  "bind_port": $SERVER_PORT,
  "admin_socket": "$ADMIN",
  "http_port": $SERVER_HTTP_PORT,
  "log_level": "debug"${1:+,
  $1}
}
JSON
}

# start_server: starts lanyard-server with $T/server.json, waits for its admin socket.
start_server() {
	[ -f "$T/server.json" ] || write_server_config
	"$BIN/lanyard-server" run --config "$T/server.json" >>"$T/server.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_for 20 "$BIN/lanyard-server" bundle show --socket "$ADMIN" ||
		fail "server did not come up"
}

stop_server() {
	kill "${1:--TERM}" "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}

# expect_rc RC CMD...: runs CMD, output in $T/out.txt and $T/err.txt, asserts its exit status.
expect_rc() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out.txt" 2>"$T/err.txt" || rc=$?
	[ "$rc" = "$want" ] || fail "$* exited $rc, expected $want: $(cat "$T/err.txt")"
}

srv() {
	"$BIN/lanyard-server" "$@" --socket "$ADMIN"
}

# new_token [args]: prints a fresh join token.
new_token() {
	srv token generate --output json "$@" | $PY -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# write_agent_config [extra JSON members]: writes $T/agent.json (bootstrap bundle from the server).
write_agent_config() {
	AGENT_SOCK="$T/agent/api.sock"
	AGENT_HTTP_PORT=${AGENT_HTTP_PORT:-$(free_port)}
	srv bundle show >"$T/bootstrap.pem"
	cat >"$T/agent.json" <<JSON
{
  "trust_domain": "$TD",
  "server_address": "127.0.0.1",
  "server_port": $SERVER_PORT,
  "trust_bundle_path": "$T/bootstrap.pem",
  "data_dir": "$T/agent/data",
  "socket_path": "$AGENT_SOCK",
  "http_port": $AGENT_HTTP_PORT,
  "log_level": "debug"${1:+,
  $1}
}
JSON
}

# start_agent [args]: starts lanyard-agent with $T/agent.json.
start_agent() {
	"$BIN/lanyard-agent" run --config "$T/agent.json" "$@" >>"$T/agent.log" 2>&1 &
	AGENT_PID=$!
	PIDS+=("$AGENT_PID")
}

stop_agent() {
	kill "${1:--TERM}" "$AGENT_PID" 2>/dev/null || true
	wait "$AGENT_PID" 2>/dev/null || true
}

agent_id() {
	grep -o 'spiffe://[^ ]*/lanyard/agent/[^ ,)]*' "$T/server.log" | tail -n 1
}

# start_server_and_agent: a server, a join token, and an attested agent serving the Workload API.
start_server_and_agent() {
	start_server
	write_agent_config
	local tok
	tok=$(new_token)
	start_agent --join-token "$tok"
	wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"
	AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
}

# start_server_and_agent_file [extra agent JSON]: like start_server_and_agent, with extra agent
# configuration and the join token in a 0600 file (--join-token-file) rather than on argv.
start_server_and_agent_file() {
	start_server
	write_agent_config "${1:-}"
	local tok
	tok=$(new_token)
	printf '%s' "$tok" >"$T/join_token"
	chmod 600 "$T/join_token"
	start_agent --join-token-file "$T/join_token"
	wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"
	AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
}

# fetch_x509_json: the agent CLI's view of what the calling process is served.
fetch_x509_json() {
	"$BIN/lanyard-agent" api fetch x509 --socket "$AGENT_SOCK" --output json
}
