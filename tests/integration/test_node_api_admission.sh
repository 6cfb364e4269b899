#!/bin/bash
# Node API admission control (issue 14, point 1), from the attacker's side: floods of idle TLS
# connections from several loopback sources (127.0.0.x), connections that send the HTTP/2
# preface and nothing more, an unauthenticated Attest announcing 16 MiB, a second concurrent
# unauthenticated call and an agent-only method without a certificate. All must be turned away
# (counted in /metrics) while a new agent attests and an attested agent keeps renewing.
. "$(dirname "$0")/lib.sh"

FLOOD="$SRC/tests/integration/node_flood.py"
METRICS="$SRC/tests/integration/http_metrics.py"

$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0))' 2>/dev/null ||
	skip "cannot bind 127.0.0.2 (loopback aliases)"

write_server_config '"node_api_max_connections": 200, "node_api_max_connections_per_source": 40,
  "node_api_handshake_timeout": "2s", "agent_svid_ttl": "20s"'
start_server
write_agent_config
tok=$(new_token)
start_agent --join-token "$tok"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent A did not attest"
ok "agent A attested before the attack"

metric() { # NAME [k=v...]: the value now (0 when absent)
	$PY -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
		"http://127.0.0.1:$SERVER_HTTP_PORT/metrics" >"$T/metrics.txt"
	$PY "$METRICS" get "$T/metrics.txt" "$@" 2>/dev/null || echo 0
}
# counted REASON: the refusal counter for REASON is above 0 (the endpoint publishes every second).
counted() {
	local i
	for i in $(seq 1 50); do
		[ "$(metric lanyard_server_node_api_refused_total reason="$1")" != 0 ] && return 0
		sleep 0.1
	done
	return 1
}
renewals() { metric lanyard_server_signing_requests_total kind=agent_renew result=ok; }
renew0=$(renewals)

# Phase 1: 4 sources x 250 attempts against a per-source limit of 40 (held far below the total).
$PY "$FLOOD" "$SERVER_PORT" hold 2 4 250 25 "$T/hold.json" &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")
sleep 3
# A new agent attests during the attack (from 127.0.0.1, a source the attacker does not use).
sed -e "s#$T/agent/#$T/agentB/#g" -e "s#\"http_port\": $AGENT_HTTP_PORT#\"http_port\": $(free_port)#" \
	"$T/agent.json" >"$T/agentB.json"
tokB=$(new_token)
"$BIN/lanyard-agent" run --config "$T/agentB.json" --join-token "$tokB" >>"$T/agentB.log" 2>&1 &
PIDS+=("$!")
wait_for 30 test -S "$T/agentB/api.sock" || fail "agent B could not attest during the flood"
ok "agent B attested during the flood"
for _ in $(seq 1 300); do
	[ "$(renewals)" != "$renew0" ] && break
	sleep 0.1
done
[ "$(renewals)" != "$renew0" ] || fail "agent A did not renew during the flood"
ok "agent A renewed during the flood ($renew0 -> $(renewals) renewals)"
"$BIN/lanyard-agent" api fetch bundle --socket "$AGENT_SOCK" >/dev/null 2>&1 ||
	"$BIN/lanyard-agent" api fetch x509 --socket "$AGENT_SOCK" >/dev/null 2>&1 || true
wait "$FLOOD_PID" || fail "flood script failed"
cat "$T/hold.json"; echo
$PY - "$T/hold.json" <<'PY' || fail "phase 1 figures"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["attempts"] >= 1000, s
assert s["refused"] >= 100, s          # per-source limit (a refused source waits a round)
# max_held is the attacker's view: it may count connections the server just closed.
assert s["closed_by_server"] >= 1, s  # handshake timeout closed idle connections
PY
ok "per-source limit and handshake timeout held (figures above)"
counted per_source ||
	fail "per_source refusals not counted"
counted handshake_timeout ||
	fail "handshake_timeout refusals not counted"

# Phase 2: 8 sources fill the total: /ready shows saturation and refusals are counted. The
# server is restarted with a handshake timeout long enough for the flood to reach the total
# however slow the machine is: with 2 s, a loaded machine's flood could not open 200 TLS
# connections before the first ones were closed. Agent A reconnects to the restarted server.
stop_server
write_server_config '"node_api_max_connections": 200, "node_api_max_connections_per_source": 40,
  "node_api_handshake_timeout": "60s", "agent_svid_ttl": "20s"'
start_server
$PY "$FLOOD" "$SERVER_PORT" hold 10 8 40 15 "$T/sat.json" &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")
sat=0
# Polled for as long as the flood holds its connections (bounded): on a loaded machine the
# flood takes seconds to reach the limit.
for _ in $(seq 1 300); do
	kill -0 "$FLOOD_PID" 2>/dev/null || break
	if $PY -c 'import sys,urllib.request
try: print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except Exception as e: print(e.read().decode())' "http://127.0.0.1:$SERVER_HTTP_PORT/ready" |
		grep -q saturated; then
		sat=1
		break
	fi
	sleep 0.1
done
wait "$FLOOD_PID" || fail "saturation flood failed"
cat "$T/sat.json"; echo
[ $sat = 1 ] || fail "/ready never showed saturation"
ok "/ready showed saturation"
counted max_connections ||
	fail "max_connections refusals not counted"

# Phase 3: an unauthenticated Attest announcing 16 MiB is refused without buffering it.
$PY "$FLOOD" "$SERVER_PORT" big 30 "$T/big.json"
cat "$T/big.json"; echo
$PY -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["connected"] and s["ended"], s' \
	"$T/big.json" || fail "16 MiB Attest not refused"
counted message_too_large ||
	fail "message_too_large refusal not counted"
ok "16 MiB unauthenticated Attest refused"

# Phase 4: without a certificate, one call at a time and only Attest.
$PY "$FLOOD" "$SERVER_PORT" streams 31 "$T/streams.json"
cat "$T/streams.json"; echo
$PY -c 'import json,sys; s=json.load(open(sys.argv[1]))
assert s["concurrent_ended"] == [3], s  # the second Attest refused, the first still open
assert s["sign_ended"] == [1], s' "$T/streams.json" || fail "unauthenticated calls not limited"
counted unauthenticated_streams ||
	fail "unauthenticated_streams refusal not counted"
counted unauthenticated_method ||
	fail "unauthenticated_method refusal not counted"
ok "a second unauthenticated call and SignX509 without a certificate refused"

# After the attack both agents still work.
"$BIN/lanyard-agent" api fetch x509 --socket "$T/agentB/api.sock" --output json >/dev/null 2>&1 ||
	true
kill -0 "$AGENT_PID" || fail "agent A died"
grep -q "admission control refused" "$T/server.log" || fail "no refusal logged"
lines=$(grep -c "admission control refused" "$T/server.log")
echo "refusal log lines: $lines"
[ "$lines" -le 40 ] || fail "refusals not rate-limited ($lines lines)"
ok "refusals logged rate-limited"
