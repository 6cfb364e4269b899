#!/usr/bin/env bash
# Workload connection fairness (issue 14, point 5), from the attacker's side: one process opens
# far more Workload API connections than the old per-uid limit (64) and holds them with open
# streams; another process of the same uid must still be served. Refusals are logged once per
# interval with a count, not once each. Connections without an open call are closed after
# workload_idle_timeout; connections with an open stream are not.
source "$(dirname "$0")/lib.sh"

MAXP=8
FLOOD=80
start_server_and_agent_file "\"max_conns_per_process\": $MAXP, \"workload_idle_timeout\": \"3s\""
SID="spiffe://$TD/fair/root"
srv entry create --parent-id "$AGENT_ID" --spiffe-id "$SID" --selector "unix:uid:$(id -u)" \
	>/dev/null
wait_for 30 sh -c "'$BIN/lanyard-agent' api fetch x509 --socket '$AGENT_SOCK' --output json |
	grep -q '$SID'" || fail "not served"

FLOODPY="$SRC/tests/integration/conn_flood.py"
json() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

# ---- one process, 80 connections with open streams
$PY "$FLOODPY" "$AGENT_SOCK" streams $FLOOD "$T/flood.json" "$T/flood.check" \
	>>"$T/flood.log" 2>&1 &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")
wait_for 60 test -f "$T/flood.json" || fail "the flooding process reported nothing"
echo "# flood: $(cat "$T/flood.json")"
[ "$(json "$T/flood.json" '["accepted"]')" = $MAXP ] || fail "expected $MAXP accepted connections"
[ "$(json "$T/flood.json" '["refused"]')" = $((FLOOD - MAXP)) ] ||
	fail "expected $((FLOOD - MAXP)) refused connections"
ok "one process gets max_conns_per_process ($MAXP) connections, the other $((FLOOD - MAXP)) are refused"

for i in 1 2 3; do
	fetch_x509_json | grep -q "$SID" || fail "another process of the same uid is locked out"
done
ok "another process of the same uid is still served while the flood holds its connections"

n=$(grep -c "refusing connection" "$T/agent.log" || true)
[ "$n" -le 2 ] || fail "$((FLOOD - MAXP)) refusals logged in $n lines"
wait_for 30 grep -q "more connections refused in the last" "$T/agent.log" ||
	fail "the refusals counted were never reported"
grep "more connections refused" "$T/agent.log" | head -n 1 | sed 's/^/# /' | cut -c1-200
ok "refusals logged once per interval with a count ($n line(s) for $((FLOOD - MAXP)) refusals)"

# ---- idle connections are closed; the flood's streams (open calls) are not
$PY "$FLOODPY" "$AGENT_SOCK" idle 5 "$T/idle.json" >>"$T/flood.log" 2>&1 ||
	fail "the idle client failed"
echo "# idle: $(cat "$T/idle.json") (workload_idle_timeout 3s)"
[ "$(json "$T/idle.json" '["closed"]')" = 5 ] || fail "idle connections were not closed"
touch "$T/flood.check"
wait_for 30 sh -c "grep -q still_open '$T/flood.json'" || fail "no report from the flood"
[ "$(json "$T/flood.json" '["still_open"]')" = $MAXP ] ||
	fail "connections with an open stream were closed as idle: $(cat "$T/flood.json")"
ok "connections without a call closed after the idle timeout; those with an open stream kept"
wait "$FLOOD_PID" 2>/dev/null || true
fetch_x509_json | grep -q "$SID" || fail "not served after the flood"
ok "served after the flood ended"
