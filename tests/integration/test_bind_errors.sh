#!/usr/bin/env bash
# Every listen/bind failure of either daemon (node API port, HTTP port, admin socket, Workload API
# socket) is one clear error line naming the config key and the address, exit status 1, no core,
# and nothing half-started left behind (no socket of the failed instance).
source "$(dirname "$0")/lib.sh"

ulimit -c 0

# A listener that holds a TCP port on 127.0.0.1 until killed.
hold_port() {
	$PY -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); print("ready", flush=True); time.sleep(600)' "$1" \
		>"$T/hold-$1.txt" &
	PIDS+=("$!")
	wait_for 10 grep -q ready "$T/hold-$1.txt" || fail "cannot hold port $1"
}

# A Unix socket that a live process answers on.
hold_socket() {
	mkdir -p "$(dirname "$1")"
	$PY -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); print("ready", flush=True); time.sleep(600)' "$1" \
		>"$T/hold-sock.txt" &
	PIDS+=("$!")
	wait_for 10 grep -q ready "$T/hold-sock.txt" || fail "cannot hold socket $1"
}

# must_fail NAME KEY ADDRESS BINARY ARGS...: the daemon exits 1 within 30 s with exactly one
# error line that names KEY and ADDRESS.
must_fail() {
	local name=$1 key=$2 addr=$3
	shift 3
	local rc=0
	timeout 30 "$@" >"$T/$name.log" 2>&1 || rc=$?
	[ "$rc" = 1 ] || fail "$name: exit status $rc, expected 1: $(tail -n 5 "$T/$name.log")"
	local errors
	errors=$(grep -c -E '^[^ ]+ error ' "$T/$name.log" || true)
	grep -q -- "$key" "$T/$name.log" && grep -q -- "$addr" "$T/$name.log" ||
		fail "$name: error does not name $key and $addr: $(tail -n 5 "$T/$name.log")"
	! grep -q -i -E 'assert|abort|sanitizer|core dumped' "$T/$name.log" ||
		fail "$name: crashed: $(tail -n 20 "$T/$name.log")"
	[ ! -e core ] && ! ls "$T"/core* >/dev/null 2>&1 || fail "$name: left a core file"
	echo "  $name: $(grep -m1 -- "$key" "$T/$name.log") (error lines: $errors)"
	[ "$errors" -le 1 ] || fail "$name: $errors error lines, expected one"
}

cd "$T"
SERVER_PORT=$(free_port)
SERVER_HTTP_PORT=$(free_port)
write_server_config

# ---- server: node API port taken
hold_port "$SERVER_PORT"
must_fail server-node bind_port "127.0.0.1:$SERVER_PORT" "$BIN/lanyard-server" run --config "$T/server.json"
[ ! -e "$ADMIN" ] || fail "server-node: admin socket left behind"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
ok "server: node API port in use -> exit 1, one line naming bind_address:bind_port"

# ---- server: HTTP port taken (this used to abort with uv_close: Assertion '0' failed)
hold_port "$SERVER_HTTP_PORT"
must_fail server-http http_port "127.0.0.1:$SERVER_HTTP_PORT" "$BIN/lanyard-server" run --config "$T/server.json"
[ ! -e "$ADMIN" ] || fail "server-http: admin socket left behind"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
ok "server: HTTP port in use -> exit 1, one line naming http_address:http_port"

# ---- server: admin socket served by a live process
hold_socket "$ADMIN"
must_fail server-admin admin_socket "$ADMIN" "$BIN/lanyard-server" run --config "$T/server.json"
[ -S "$ADMIN" ] || fail "server-admin: the live process's socket was removed"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
rm -f "$ADMIN"
ok "server: admin socket in use -> exit 1, one line naming admin_socket"

# ---- server: admin socket path not creatable
sed "s|\"admin_socket\": \"$ADMIN\"|\"admin_socket\": \"/proc/lanyard/admin.sock\"|" "$T/server.json" >"$T/server-proc.json"
must_fail server-admin-dir admin_socket /proc/lanyard/admin.sock "$BIN/lanyard-server" run --config "$T/server-proc.json"
ok "server: admin socket directory not creatable -> exit 1"

# The server runs normally once the ports are free (and stays up for the agent tests).
start_server
write_agent_config

# ---- agent: HTTP port taken
hold_port "$AGENT_HTTP_PORT"
must_fail agent-http http_port "127.0.0.1:$AGENT_HTTP_PORT" "$BIN/lanyard-agent" run --config "$T/agent.json"
[ ! -e "$AGENT_SOCK" ] || fail "agent-http: Workload API socket left behind"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
ok "agent: HTTP port in use -> exit 1, one line naming http_address:http_port"

# ---- agent: Workload API socket served by a live process
hold_socket "$AGENT_SOCK"
must_fail agent-socket socket_path "$AGENT_SOCK" "$BIN/lanyard-agent" run --config "$T/agent.json"
[ -S "$AGENT_SOCK" ] || fail "agent-socket: the live process's socket was removed"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
rm -f "$AGENT_SOCK"
ok "agent: Workload API socket in use -> exit 1, one line naming socket_path"

# ---- and with everything free the agent starts: nothing the failures left blocks it
tok=$(new_token)
start_agent --join-token "$tok"
wait_for 30 test -S "$AGENT_SOCK" || fail "agent did not start after the failures"
wait_for 30 grep -q "attested as" "$T/agent.log" || fail "agent did not attest after the failures"
ok "agent starts and attests once the socket and port are free"
