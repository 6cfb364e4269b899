#!/usr/bin/env bash
# Quick start: builds Lanyard, starts a server and an agent on this machine with all their state
# under ./.lanyard-quickstart, registers the invoking user's uid, and fetches its SVID through the
# SPIFFE Workload API. Run it again to start over; `deploy/quickstart.sh stop` stops everything.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${LANYARD_QUICKSTART_DIR:-$src/.lanyard-quickstart}"
build="$src/build"
td=example.org

stop_all() {
	for name in agent server; do
		local pidf="$state/$name.pid"
		if [ -f "$pidf" ]; then
			local pid
			pid=$(cat "$pidf")
			if kill -0 "$pid" 2>/dev/null; then
				kill "$pid" 2>/dev/null || true
				for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			fi
			rm -f "$pidf"
		fi
	done
}

if [ "${1:-}" = stop ]; then
	stop_all
	echo "Lanyard quick start stopped (state kept in $state; remove it to start from scratch)."
	exit 0
fi

"$src/deploy/install-deps.sh"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
bin="$build/bin"

stop_all
rm -rf "$state"
mkdir -p "$state"
chmod 755 "$state"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
server_port=$(free_port)
server_http=$(free_port)
agent_http=$(free_port)
admin="$state/server/admin.sock"
sock="$state/agent/api.sock"

cat >"$state/server.json" <<JSON
{
  "trust_domain": "$td",
  "data_dir": "$state/server/data",
  "bind_address": "127.0.0.1",
  "bind_port": $server_port,
  "admin_socket": "$admin",
  "http_port": $server_http
}
JSON

nohup "$bin/lanyard-server" run --config "$state/server.json" >"$state/server.log" 2>&1 &
echo $! >"$state/server.pid"
for _ in $(seq 100); do
	"$bin/lanyard-server" bundle show --socket "$admin" >"$state/bootstrap.pem" 2>/dev/null && break
	sleep 0.1
done
[ -s "$state/bootstrap.pem" ] || { echo "the server did not start; see $state/server.log" >&2; exit 1; }

token=$("$bin/lanyard-server" token generate --socket "$admin" --output json |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
agent_id="spiffe://$td/lanyard/agent/join_token/$token"
workload_id="spiffe://$td/quickstart/$(id -un)"

cat >"$state/agent.json" <<JSON
{
  "trust_domain": "$td",
  "server_address": "127.0.0.1",
  "server_port": $server_port,
  "trust_bundle_path": "$state/bootstrap.pem",
  "data_dir": "$state/agent/data",
  "socket_path": "$sock",
  "http_port": $agent_http
}
JSON

"$bin/lanyard-server" entry create --socket "$admin" --spiffe-id "$workload_id" \
	--parent-id "$agent_id" --selector "unix:uid:$(id -u)" >/dev/null

nohup "$bin/lanyard-agent" run --config "$state/agent.json" --join-token "$token" \
	>"$state/agent.log" 2>&1 &
echo $! >"$state/agent.pid"

out=""
for _ in $(seq 150); do
	if out=$("$bin/lanyard-agent" api fetch x509 --socket "$sock" --output json 2>/dev/null); then
		break
	fi
	out=""
	sleep 0.2
done
[ -n "$out" ] || { echo "the agent did not serve an SVID; see $state/agent.log" >&2; exit 1; }

echo "$out" | python3 -c '
import json, sys, datetime
for s in json.load(sys.stdin)["svids"]:
    exp = datetime.datetime.fromtimestamp(s["not_after"], datetime.timezone.utc)
    print("SPIFFE ID:  " + s["spiffe_id"])
    print("expires:    " + exp.strftime("%Y-%m-%d %H:%M:%S UTC") + " (renewed automatically)")'
cat <<TXT
Workload API: unix://$sock   (export SPIFFE_ENDPOINT_SOCKET=unix://$sock)
status:       http://127.0.0.1:$agent_http/   (server: http://127.0.0.1:$server_http/)
try:          $bin/lanyard-agent api watch --socket $sock
logs:         $state/server.log, $state/agent.log
stop:         deploy/quickstart.sh stop
TXT
