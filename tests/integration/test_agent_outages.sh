#!/usr/bin/env bash
# lanyard-agent through outages: the server killed (-9) and restarted while the agent keeps
# serving and then resyncs; the agent killed (-9) and restarted (same identity, no new token);
# the agent restarted while the server is down serves the SVIDs it persisted.
source "$(dirname "$0")/lib.sh"

wl() {
	$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}
json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}
serial_now() {
	wl x509 | json_get "d['svids'][0]['serial'] if d.get('svids') else ''"
}
# wait_new_serial OLD SECONDS: waits until a serial other than OLD is served; prints it.
wait_new_serial() {
	local s
	for _ in $(seq 1 $(($2 * 5))); do
		s=$(serial_now)
		if [ -n "$s" ] && [ "$s" != "$1" ]; then
			echo "$s"
			return 0
		fi
		sleep 0.2
	done
	return 1
}
count() {
	grep -c "$1" "$T/agent.log" || true
}
# connections_at_least N: the agent has logged N connections so far.
connections_at_least() {
	[ "$(count "connected to server")" -ge "$1" ]
}

write_server_config '"default_x509_svid_ttl": "30s", "agent_svid_ttl": "1h"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
SID="spiffe://$TD/it/outage"
wl until present "$SID" 20 -- "$BIN/lanyard-server" entry create --socket "$ADMIN" \
	--spiffe-id "$SID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" >/dev/null ||
	fail "entry not served"
ok "serving $SID"

# ---- server killed: the agent keeps serving, logs the outage once, not once per retry
s1=$(serial_now)
stop_server -KILL
sleep 6
[ "$(serial_now)" = "$s1" ] || fail "SVID not served during the outage"
n=$(count "unavailable, serving cached SVIDs")
[ "$n" -ge 1 ] && [ "$n" -le 3 ] || fail "outage logged $n times in 6 s"
ok "server down: cached SVID still served, outage logged $n time(s)"

# ---- server back: reconnect without operator action, rotation resumes
start_server
wait_for 40 connections_at_least 2 || fail "agent did not reconnect"
s2=$(wait_new_serial "$s1" 30) || fail "no rotation after the server came back"
ok "server back: agent reconnected and rotated ($s1 -> $s2)"

# ---- entry created while connected after the restart: resync works both ways
SID2="spiffe://$TD/it/outage2"
wl until present "$SID2" 20 -- "$BIN/lanyard-server" entry create --socket "$ADMIN" \
	--spiffe-id "$SID2" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" >/dev/null ||
	fail "entry created after the server restart not served"
ok "entries created after the restart are served"

# ---- agent killed: restarts with the same identity, without a new token
stop_agent -KILL
start_agent
wait_for 20 grep -q "loaded agent identity $AGENT_ID" "$T/agent.log" || fail "identity not reloaded"
wait_for 20 connections_at_least 3 || fail "restarted agent did not connect"
[ "$(count "attested as")" = 1 ] || fail "agent attested again"
wl until present "$SID2" 10 >/dev/null || fail "restarted agent does not serve"
ok "agent killed and restarted: same agent ID, no new join token"

# ---- agent restarted while the server is down: persisted SVIDs are served at once
s3=$(serial_now)
stop_server -KILL
stop_agent -KILL
start_agent
secs=$(wl until present "$SID" 10) || fail "persisted SVID not served with the server down"
echo "# restarted agent served the persisted SVID after ${secs}s with the server down"
wl x509 | $PY -c "
import json,sys,time
d=json.load(sys.stdin)
ids=sorted(s['spiffe_id'] for s in d['svids'])
assert ids==sorted(['$SID','$SID2']), ids
for s in d['svids']:
    assert s['not_after']>time.time() and s['key_matches'], s" || fail "persisted SVIDs wrong"
ok "agent restarted while the server is down serves its persisted SVIDs"

# ---- and once the server is back, it rotates again
start_server
wait_new_serial "$(serial_now)" 40 >/dev/null || fail "no rotation after both restarts"
ok "server back after both restarts: rotation resumes"
