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

# fetch_in_pod CGROUP: runs `api fetch x509` as a process whose fake /proc entry (under $T/proc,
# the agent's proc_root) carries CGROUP; prints its JSON output (or its error) and returns its
# status.
fetch_in_pod() {
	local cgroup=$1 out="$T/fetch.$RANDOM"
	# The process waits until its fake proc entry exists, then execs the client: exec keeps the
	# pid and the start time the agent will compare.
	sh -c 'while [ ! -e "$1/ready" ]; do sleep 0.05; done; exec "$2" api fetch x509 --socket "$3" --output json' \
		sh "$out.d" "$BIN/lanyard-agent" "$AGENT_SOCK" >"$out" 2>&1 &
	local pid=$!
	mkdir -p "$T/proc/$pid" "$out.d"
	cp "/proc/$pid/stat" "/proc/$pid/status" "$T/proc/$pid/"
	printf '%s\n' "$cgroup" >"$T/proc/$pid/cgroup"
	touch "$out.d/ready"
	local rc=0
	wait "$pid" || rc=$?
	cat "$out"
	return $rc
}

# start_fake_k8s_api: the fake Kubernetes API server (k8s_fake.py api) over https in $T/api, with
# a fresh server token in $T/server-token and its certificate in $T/api.crt (key $T/api.key);
# sets API_URL. Files the fake serves (lists, watch streams) may be written to $T/api first.
start_fake_k8s_api() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$T/api.key" -out "$T/api.crt" >/dev/null 2>&1 || fail "openssl"
	printf 'server-sa-token.%s.sig\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" \
		>"$T/server-token"
	$PY "$SRC/tests/integration/k8s_fake.py" api --state "$T/api" --tls "$T/api.crt" \
		"$T/api.key" --token "$(tr -d '\n' <"$T/server-token")" >>"$T/api.log" 2>&1 &
	PIDS+=("$!")
	wait_for 10 test -s "$T/api/port" || fail "fake API server did not start"
	API_URL="https://127.0.0.1:$(cat "$T/api/port")"
}

# pg_server_config NAME [extra JSON members]: $T/NAME.json for one of several servers on the
# PostgreSQL database of start_pg (own data_dir, node API port and admin socket
# $T/NAME/admin.sock; no HTTP endpoint; a pool of PG_SERVER_MAX_CONNECTIONS, default 4).
# start_pg_server NAME: writes it, starts the server and waits for it; on_server NAME ARGS...
# runs a client command against it.
pg_server_config() {
	local n=$1
	mkdir -p "$T/$n"
	cat >"$T/$n.json" <<JSON
{
  "trust_domain": "$TD",
  "data_dir": "$T/$n/data",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
  "admin_socket": "$T/$n/admin.sock",
  "http_port": 0,
  "log_level": "debug",
  "database_type": "postgres",
  "database_connection_string": "$PG_CONNSTR",
  "database_max_connections": ${PG_SERVER_MAX_CONNECTIONS:-4}${2:+,
  $2}
}
JSON
}

start_pg_server() {
	local n=$1
	pg_server_config "$n"
	"$BIN/lanyard-server" run --config "$T/$n.json" >>"$T/server-$n.log" 2>&1 &
	PIDS+=("$!")
	wait_for 30 "$BIN/lanyard-server" bundle show --socket "$T/$n/admin.sock" ||
		fail "server $n did not come up"
}

on_server() {
	local n=$1
	shift
	"$BIN/lanyard-server" "$@" --socket "$T/$n/admin.sock"
}
