#!/usr/bin/env bash
# lanyard-agent's operator endpoints through the states that matter: before attestation (server
# unreachable), ready, Workload API traffic moving the counters, server down with an SVID near
# expiry ("degraded", the SVID named), then out of sync past sync_staleness; the metrics text
# parsed strictly (http_metrics.py) in each, and `healthcheck` exit codes with their reasons.
source "$(dirname "$0")/lib.sh"
M="$PY $SRC/tests/integration/http_metrics.py"

"$BIN/lanyard-agent" healthcheck --help >/dev/null 2>&1 ||
	fail "lanyard-agent has no healthcheck command: agent_http is not wired into agent/main.c"
$PY -c 'import grpc' 2>/dev/null || fail "$PY lacks grpcio (python3-grpcio)"

# The sync staleness bound outlasts the SVID's degraded window (an X509-SVID TTL of 30 s) so that
# "degraded" shows on its own before "out of sync" joins it.
STALE=45
TTL=30
H() { echo "http://127.0.0.1:$AGENT_HTTP_PORT$1"; }
get() { curl -s -o "$T/body" -w '%{http_code}' "$(H "$1")"; }
jq_() { $PY -c "import json,sys; d=json.load(open('$T/body')); $1"; }
hc() { "$BIN/lanyard-agent" healthcheck --config "$T/agent.json" >"$T/hc.out" 2>"$T/hc.err"; }
metrics() { curl -sf "$(H /metrics)" >"$T/$1" && $M check "$T/$1" lanyard_agent_ >/dev/null; }

# ---- before attestation: the server is unreachable
start_server
write_agent_config "\"sync_staleness\": \"${STALE}s\""
tok=$(new_token)
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
srv entry create --spiffe-id "spiffe://$TD/web" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$(id -u)" --x509-svid-ttl $TTL >/dev/null
stop_server
start_agent --join-token "$tok"
wait_for 10 curl -sf "$(H /live)" >/dev/null || fail "agent /live never answered"
sleep 1
[ "$(get /ready)" = 503 ] || fail "/ready before attestation: $(cat "$T/body")"
jq_ '
c=d["checks"]
assert d["ready"] is False and d["status"]=="not_ready", d
assert c["attested"]["ok"] is False and "not attested" in c["attested"]["detail"], c
assert c["server_sync"]["ok"] is False and c["workload_api"]["ok"] is False, c
assert c["bundle"]["ok"] is False, c'
[ "$(get /status)" = 200 ] || fail "/status before attestation"
jq_ '
assert d["daemon"]=="lanyard-agent" and d["agent"]["spiffe_id"] is None, d["agent"]
assert d["server"]["state"] in ("starting","attesting","disconnected"), d["server"]
assert d["svids"]==[] and d["entries"]==0 and d["bundle"]["authorities"]==[], d'
grep -q "$tok" "$T/body" && fail "/status shows the join token before it was used"
metrics m0.txt || fail "metrics before attestation"
[ "$($M get "$T/m0.txt" lanyard_agent_server_connected)" = 0 ] || fail "connected gauge"
[ "$($M get "$T/m0.txt" lanyard_agent_ready)" = 0 ] || fail "ready gauge"
if hc; then fail "healthcheck passed before attestation"; fi
grep -q "not ready (HTTP 503)" "$T/hc.err" && grep -q "attested: not attested" "$T/hc.err" ||
	fail "healthcheck reason: $(cat "$T/hc.err")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$(H /live)")" = 200 ] || fail "/live"
ok "before attestation: /live 200, /ready 503 naming attested/bundle/sync, healthcheck 1"

# ---- the server comes up: the agent attests and gets its SVID
start_server
wait_for 30 curl -sf "$(H /ready)" >/dev/null || { get /ready; fail "never ready: $(cat "$T/body")"; }
hc || fail "healthcheck on a ready agent: $(cat "$T/hc.err")"
[ "$(get /status)" = 200 ] || fail "/status"
cp "$T/body" "$T/status1.json"
jq_ '
import time
now=time.time()
assert d["agent"]["spiffe_id"]=="'"$AGENT_ID"'", d["agent"]
assert d["agent"]["svid_not_after"]>now, d["agent"]
assert d["server"]["state"]=="connected" and d["server"]["last_sync"]>0, d["server"]
assert d["entries"]==1 and d["synced"] is True, d
v=d["svids"][0]
assert v["spiffe_id"]=="spiffe://example.org/web" and v["selectors"]==["unix:uid:'"$(id -u)"'"], v
assert v["not_before"]<v["renew_at"]<v["not_after"] and len(v["serial"])>=16 and v["entry_id"], v
assert v["not_after"]-now<='"$TTL"'+5, v
w=d["workload_api"]
assert w["serving"] is True and w["socket"]=="'"$AGENT_SOCK"'", w
assert len(d["bundle"]["authorities"])>=1, d["bundle"]
for k in ("version","uptime_seconds","trust_domain"): assert k in d, k'
srv bundle show >"$T/bundle.pem"
fp=$(openssl x509 -in "$T/bundle.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
grep -q "\"sha256\":\"$fp\"" "$T/status1.json" || fail "bundle fingerprint $fp not in /status"
grep -qi "PRIVATE KEY\|\"key\"" "$T/status1.json" && fail "key material in /status"
ok "ready: /ready 200, /status with the agent ID, SVID details, bundle fingerprint; healthcheck 0"

# ---- Workload API traffic moves the counters
metrics m1.txt || fail "metrics when ready"
for f in lanyard_agent_workload_api_requests_total lanyard_agent_svids_minted_total \
	lanyard_agent_svid_rotations_total lanyard_agent_sync_errors_total \
	lanyard_agent_server_connection_state lanyard_agent_svid_soonest_expiry_seconds \
	lanyard_agent_workload_api_streams process_resident_memory_bytes \
	process_open_fds lanyard_agent_build_info; do
	grep -q "^# TYPE $f " "$T/m1.txt" || fail "metric family $f missing"
done
[ "$($M get "$T/m1.txt" lanyard_agent_server_connection_state state=connected)" = 1 ] ||
	fail "connection state"
[ "$($M get "$T/m1.txt" lanyard_agent_svids_minted_total)" -ge 1 ] || fail "svids minted"
left=$($M get "$T/m1.txt" lanyard_agent_svid_soonest_expiry_seconds)
[ "$left" -gt 0 ] && [ "$left" -le $((TTL + 5)) ] || fail "soonest expiry $left"
$PY - "$AGENT_SOCK" <<'PY' || fail "Workload API calls"
import grpc, sys
ident = lambda b: b
ch = grpc.insecure_channel("unix:" + sys.argv[1])
hdr = (("workload.spiffe.io", "true"),)
# Without the security header: InvalidArgument.
try:
    ch.unary_unary("/SpiffeWorkloadAPI/FetchJWTSVID", ident, ident)(b"", timeout=5)
    sys.exit("FetchJWTSVID without the header succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
# A stream: its first message, then the client goes away.
st = ch.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID", ident, ident)(b"", metadata=hdr, timeout=10)
assert len(next(st)) > 100
st.cancel()
ch.close()
PY
moved() {
	metrics m2.txt &&
		[ "$($M get "$T/m2.txt" lanyard_agent_workload_api_requests_total method=FetchJWTSVID code=InvalidArgument)" = 1 ] &&
		[ "$($M get "$T/m2.txt" lanyard_agent_workload_api_requests_total method=FetchX509SVID code=OK)" -ge 1 ]
}
wait_for 10 moved || fail "Workload API counters did not move: $(grep requests_total "$T/m2.txt")"
[ "$($M get "$T/m1.txt" lanyard_agent_workload_api_requests_total method=FetchX509SVID code=OK)" = 0 ] ||
	fail "FetchX509SVID counted before any call"
ok "metrics: the families the issue names; Workload API calls counted by method and code"

# ---- the server goes down: the SVID cannot be renewed ("degraded"), then out of sync
wait_for 20 bash -c "curl -s '$(H /metrics)' | grep -q '^lanyard_agent_svid_rotations_total [1-9]'" ||
	fail "no rotation of the $TTL s SVID while the server was up"
stop_server
down_at=$SECONDS
degraded() { [ "$(get /ready)" = 503 ] && jq_ 'assert d["status"]=="degraded", d'; }
wait_for $((TTL + 5)) degraded || fail "never degraded: $(cat "$T/body")"
jq_ '
c=d["checks"]
assert d["ready"] is False and c["svids"]["ok"] is False, c
assert "spiffe://example.org/web" in c["svids"]["detail"], c["svids"]
for k in ("attested","bundle","workload_api","server_sync"): assert c[k]["ok"] is True, (k, c)'
if hc; then fail "healthcheck passed while degraded"; fi
grep -q "degraded (HTTP 503): svids: .*spiffe://example.org/web" "$T/hc.err" ||
	fail "degraded healthcheck reason: $(cat "$T/hc.err")"
get /status >/dev/null
jq_ 'assert any(v["degraded"] for v in d["svids"]) or d["entries_without_svid"], d'
metrics m3.txt || fail "metrics while degraded"
[ "$($M get "$T/m3.txt" lanyard_agent_server_connected)" = 0 ] || fail "still connected"
[ "$($M get "$T/m3.txt" lanyard_agent_sync_errors_total)" -ge 1 ] || fail "sync errors did not move"
[ $((SECONDS - down_at)) -lt $STALE ] || fail "the test was too slow to see degraded alone"
ok "server down: degraded with the SVID named, healthcheck 1 'degraded', sync errors counted"

stale() { [ "$(get /ready)" = 503 ] && jq_ 'assert d["checks"]["server_sync"]["ok"] is False, d'; }
wait_for $((STALE + 15)) stale || fail "sync never went stale: $(cat "$T/body")"
jq_ '
c=d["checks"]
assert d["status"]=="not_ready", d
assert "sync_staleness" in c["server_sync"]["detail"], c["server_sync"]'
[ $((SECONDS - down_at)) -ge $((STALE - 5)) ] || fail "out of sync before the staleness bound"
if hc; then fail "healthcheck passed out of sync"; fi
grep -q "not ready (HTTP 503):.*server_sync: disconnected" "$T/hc.err" ||
	fail "stale healthcheck reason: $(cat "$T/hc.err")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$(H /live)")" = 200 ] || fail "/live while out of sync"
ok "past sync_staleness: /ready 503 naming server_sync, /live still 200"

# ---- the agent stops: healthcheck cannot connect
stop_agent
if hc; then fail "healthcheck passed with the agent stopped"; fi
grep -q "cannot get http://127.0.0.1:$AGENT_HTTP_PORT/ready" "$T/hc.err" ||
	fail "stopped agent reason: $(cat "$T/hc.err")"
ok "agent stopped: healthcheck 1, cannot connect"
