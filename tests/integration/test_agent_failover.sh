#!/usr/bin/env bash
# lanyard-agent failover between servers (server_addresses):
#  (a) [a closed loopback port, the live server]: the agent attests and serves, whichever
#      candidate it drew first;
#  (b) an agent attested on port P1 with [P1, P2]; the server is killed (-9) and restarted on P2
#      with the same data_dir: the agent moves to P2 and resumes its entry stream with its SVID
#      (its join token is single-use, so a re-attestation would be refused), a workload fetching
#      every 100 ms sees no error, and a short-lived SVID keeps rotating after the move;
#  (c) the server on P2 stopped gracefully (its entry streams end with Unavailable) and started
#      on P1 again: the agent moves back, still without attesting.
# Prints BENCH ha_failover_ms (kill -9 -> entry stream resumed, from the agent's log).
source "$(dirname "$0")/lib.sh"

json_get() {
	$PY -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

# write_failover_agent_config NAME ADDRESSES_JSON: $T/NAME.json, state in $T/NAME/.
write_failover_agent_config() {
	local name=$1 addrs=$2
	srv bundle show >"$T/bootstrap.pem"
	cat >"$T/$name.json" <<JSON
{
  "trust_domain": "$TD",
  "server_addresses": $addrs,
  "trust_bundle_path": "$T/bootstrap.pem",
  "data_dir": "$T/$name/data",
  "socket_path": "$T/$name/api.sock",
  "http_port": $(free_port),
  "log_level": "debug"
}
JSON
}

http_port_of() {
	json_get "d['http_port']" <"$T/$1.json"
}
status_of() {
	curl -sf "http://127.0.0.1:$(http_port_of "$1")/status"
}
# metric NAME AGENT: the value of an unlabelled sample of the agent's /metrics.
metric() {
	curl -sf "http://127.0.0.1:$(http_port_of "$2")/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
metric_is() {
	[ "$(metric "$1" "$2")" = "$3" ]
}
log_has() {
	grep -q -- "$2" "$T/$1.log"
}
count_in() {
	grep -c -- "$2" "$T/$1.log" || true
}
# start_named_agent NAME [args]: lanyard-agent with $T/NAME.json, log $T/NAME.log.
start_named_agent() {
	local name=$1
	shift
	"$BIN/lanyard-agent" run --config "$T/$name.json" "$@" >>"$T/$name.log" 2>&1 &
	PIDS+=("$!")
	eval "PID_$name=$!"
}
# entry_cmd SPIFFE_ID PARENT: the command line that creates an entry for this uid (run by
# agent_wl.py's "until", which then measures how soon it is served).
entry_cmd() {
	ENTRY_CMD=("$BIN/lanyard-server" entry create --socket "$ADMIN" --spiffe-id "$1"
		--parent-id "$2" --selector "unix:uid:$(id -u)")
}
wl() { # AGENT_NAME args...
	local name=$1
	shift
	$PY "$SRC/tests/integration/agent_wl.py" "$T/$name/api.sock" "$@"
}

write_server_config '"agent_svid_ttl": "1h"'
start_server
P1=$SERVER_PORT
CLOSED=$(free_port)

# ---- bad combinations are refused at start, naming key and file
cat >"$T/bad.json" <<JSON
{"trust_domain": "$TD", "server_address": "127.0.0.1",
 "server_addresses": ["127.0.0.1:$P1"], "insecure_bootstrap": true}
JSON
if "$BIN/lanyard-agent" run --config "$T/bad.json" >"$T/bad.out" 2>&1; then
	fail "agent started with both server_address and server_addresses"
fi
grep -q "server_addresses" "$T/bad.out" && grep -q "$T/bad.json" "$T/bad.out" ||
	fail "unclear error: $(cat "$T/bad.out")"
ok "server_address beside server_addresses refused: $(grep -o "key 'server_address'.*" "$T/bad.out" | head -c 100)"

# ---- (a) a closed port and the live server
write_failover_agent_config a "[\"127.0.0.1:$CLOSED\", \"127.0.0.1:$P1\"]"
TOK_A=$(new_token)
start_named_agent a --join-token "$TOK_A"
wait_for 30 log_has a "connected to server 127.0.0.1:$P1" || fail "agent a did not connect to the live server"
ID_A="spiffe://$TD/lanyard/agent/join_token/$TOK_A"
entry_cmd "spiffe://$TD/it/a" "$ID_A"
wl a until present "spiffe://$TD/it/a" 30 -- "${ENTRY_CMD[@]}" >/dev/null ||
	fail "agent a does not serve its entry"
status_of a | json_get "d['server']['address']" | grep -qx "127.0.0.1:$P1" ||
	fail "agent a's status does not name the live server"
if log_has a "server failover: 127.0.0.1:$CLOSED -> 127.0.0.1:$P1"; then
	ok "agent a drew the closed port first, moved to the live server, attested and serves"
else
	ok "agent a drew the live server first, attested and serves"
fi
kill "$PID_a"
wait "$PID_a" 2>/dev/null || true

# ---- (b) the server moves from P1 to P2 under a live agent
P2=$(free_port)
write_failover_agent_config b "[\"127.0.0.1:$P1\", \"127.0.0.1:$P2\"]"
TOK_B=$(new_token)
start_named_agent b --join-token "$TOK_B"
wait_for 30 log_has b "connected to server 127.0.0.1:$P1" || fail "agent b did not connect to P1"
ID_B="spiffe://$TD/lanyard/agent/join_token/$TOK_B"
SID="spiffe://$TD/it/short"
entry_cmd "$SID" "$ID_B"
wl b until present "$SID" 30 -- "${ENTRY_CMD[@]}" --x509-svid-ttl 10 >/dev/null ||
	fail "agent b does not serve the short-lived SVID"
[ "$(count_in b "attested as")" = 1 ] || fail "agent b did not attest exactly once"
ok "agent b attested on P1 ($P1) and serves $SID (10 s SVIDs)"

# A workload fetching every 100 ms, from before the kill until after rotation resumed: every
# answer must carry a valid SVID. It records when each serial was first seen.
STOP="$T/poller.stop"
cat >"$T/poller.py" <<'PY'
import json, os, sys, time
sys.path.insert(0, os.path.join(os.environ["LANYARD_SRC"], "tests", "integration"))
import agent_wl
import grpc
sock, stop, out = sys.argv[1:4]
pb, pbg = agent_wl.stubs()
stub = pbg.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix:" + sock))
md = [("workload.spiffe.io", "true")]
fetches, failures, first_seen = 0, [], {}
end = time.monotonic() + 200
while not os.path.exists(stop) and time.monotonic() < end:
    fetches += 1
    try:
        stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=2)
        resp = next(stream)
        stream.cancel()
        if not resp.svids:
            failures.append("no SVID")
        for s in resp.svids:
            leaf = agent_wl.split_der(s.x509_svid)[0]
            if agent_wl.ts(leaf.not_valid_after) <= time.time():
                failures.append("expired SVID served")
            first_seen.setdefault(str(leaf.serial_number), time.time())
    except grpc.RpcError as e:
        failures.append(e.code().name)
    time.sleep(0.1)
json.dump({"fetches": fetches, "failures": failures, "first_seen": first_seen}, open(out, "w"))
PY
LANYARD_SRC="$SRC" $PY "$T/poller.py" "$T/b/api.sock" "$STOP" "$T/poller.json" 2>"$T/poller.log" &
POLLER=$!
PIDS+=("$POLLER")
sleep 1

KILL_MS=$(date +%s%3N)
stop_server -KILL
SERVER_PORT=$P2 write_server_config '"agent_svid_ttl": "1h"'
start_server
RESUMED="connected to server 127.0.0.1:$P2 as $ID_B: [0-9]* entries (entry stream resumed"
wait_for 60 log_has b "$RESUMED" || fail "agent b did not resume its entry stream on P2"
RESUME_LINE=$(grep -m1 -- "$RESUMED" "$T/b.log")
RESUME_MS=$($PY -c "
import datetime,sys
t=datetime.datetime.strptime(sys.argv[1].split()[0], '%Y-%m-%dT%H:%M:%S.%fZ')
print(int(t.replace(tzinfo=datetime.timezone.utc).timestamp()*1000))" "$RESUME_LINE")
log_has b "server failover: 127.0.0.1:$P1 -> 127.0.0.1:$P2" || fail "the move was not logged"
ok "agent b logged: $(grep -m1 -o "server failover: 127.0.0.1:$P1 -> .*" "$T/b.log" | head -c 160)"

# Resumed, not re-attested: one attestation, at least one resume and one move.
[ "$(count_in b "attested as")" = 1 ] || fail "agent b attested again"
wait_for 10 metric_is lanyard_agent_attestations_total b 1 || fail "attestations_total is not 1"
[ "$(metric lanyard_agent_sync_resumes_total b)" -ge 1 ] || fail "no resume counted"
[ "$(metric lanyard_agent_server_failovers_total b)" -ge 1 ] || fail "no failover counted"
st=$(status_of b)
echo "$st" | json_get "d['server']['address']" | grep -qx "127.0.0.1:$P2" ||
	fail "status does not name P2: $(echo "$st" | json_get "d['server']")"
echo "$st" | json_get "d['server']['state']" | grep -qx connected || fail "status not connected"
# (Read whole first: grep -q stopping early would SIGPIPE curl under pipefail.)
metrics_b=$(curl -sf "http://127.0.0.1:$(http_port_of b)/metrics")
grep -q "^lanyard_agent_server_info{address=\"127.0.0.1:$P2\"} 1" <<<"$metrics_b" ||
	fail "server_info does not name P2"
ok "agent b resumed on P2 with its SVID: attestations 1, resumes $(metric lanyard_agent_sync_resumes_total b), failovers $(metric lanyard_agent_server_failovers_total b)"

# Rotation goes on after the move: the agent renews twice more (10 s SVIDs renew about every
# 5 s), then the poller's record must show two serials first seen after the resume.
rotated_twice() {
	[ "$(metric lanyard_agent_svid_rotations_total b)" -ge "$((ROT0 + 2))" ]
}
ROT0=$(metric lanyard_agent_svid_rotations_total b)
wait_for 60 rotated_twice || fail "rotation did not resume after the move"
sleep 0.5
touch "$STOP"
wait "$POLLER" || fail "the workload poller failed: $(cat "$T/poller.log")"
$PY - "$T/poller.json" "$RESUME_MS" <<'PY' || fail "workload saw errors or no rotation: $(cat "$T/poller.json")"
import json, sys
d = json.load(open(sys.argv[1]))
resume = int(sys.argv[2]) / 1000
after = [s for s, t in d["first_seen"].items() if t > resume]
print("# workload: %d fetches every 100 ms, %d failures, %d serials first seen after the resume"
      % (d["fetches"], len(d["failures"]), len(after)))
assert not d["failures"], d["failures"][:5]
assert len(after) >= 2, after
PY
FAILED=$($PY -c "import json,sys; print(len(json.load(open(sys.argv[1]))['failures']))" "$T/poller.json")
ok "no failed fetch during the move; the short-lived SVID keeps rotating on P2"

# ---- (c) a server that answers Unavailable (SIGTERM ends the entry streams so) is left too
FAILOVERS=$(metric lanyard_agent_server_failovers_total b)
MARK=$(wc -l <"$T/b.log")
since_mark() {
	tail -n +"$((MARK + 1))" "$T/b.log" | grep -m1 -o -- "$1"
}
stop_server -TERM
SERVER_PORT=$P1 write_server_config '"agent_svid_ttl": "1h"'
start_server
RESUMED1="connected to server 127.0.0.1:$P1 as $ID_B: [0-9]* entries (entry stream resumed"
wait_for 60 since_mark "$RESUMED1" || fail "agent b did not move back to P1"
MOVE=$(since_mark "server failover: 127.0.0.1:$P2 -> 127.0.0.1:$P1 .*") ||
	fail "the move back to P1 was not logged"
case "$MOVE" in
*UNAVAILABLE*) ;;
*) fail "the move does not say the server answered Unavailable: $MOVE" ;;
esac
[ "$(count_in b "attested as")" = 1 ] || fail "agent b attested again"
wait_for 10 test "$(metric lanyard_agent_server_failovers_total b)" -gt "$FAILOVERS" ||
	fail "failover not counted"
wl b until present "$SID" 10 >/dev/null || fail "agent b does not serve after moving back"
ok "Unavailable from P2 moves the agent back to P1 without attestation: ${MOVE:0:160}"

echo "BENCH ha_failover_ms $((RESUME_MS - KILL_MS)) ms"
echo "BENCH ha_failover_failed_fetches $FAILED count"
echo "# kill -9 of the server on P1 -> entry stream resumed on P2 (server restarted there with the same data_dir)"
