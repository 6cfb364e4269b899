#!/usr/bin/env bash
# lanyard-server's operator endpoints from outside: /live, /ready, /status, /metrics and /, the
# errors (405 with Allow, 404), the metrics text parsed strictly (http_metrics.py) with counters
# shown to move when an agent attests, no secret in /status, and `healthcheck` exit codes (ready,
# server down, endpoints disabled, bad config).
source "$(dirname "$0")/lib.sh"
M="$PY $SRC/tests/integration/http_metrics.py"

"$BIN/lanyard-server" healthcheck --help >/dev/null 2>&1 ||
	fail "lanyard-server has no healthcheck command: server_http is not wired into server/main.c"

H() { echo "http://127.0.0.1:$SERVER_HTTP_PORT$1"; }
# code METHOD PATH [curl args]: prints the HTTP status, the body goes to $T/body.
code() {
	local m=$1 p=$2
	shift 2
	curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -X "$m" "$@" "$(H "$p")"
}
header() { grep -i "^$1:" "$T/headers" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
jq_() { $PY -c "import json,sys; d=json.load(open('$T/body')); $1"; }

start_server
wait_for 10 curl -sf "$(H /ready)" || fail "server /ready never answered 200: $(cat "$T/body" 2>/dev/null)"

# ---- /live and /ready
[ "$(code GET /live)" = 200 ] || fail "/live"
jq_ 'assert d["live"] is True, d'
[ "$(header Content-Type)" = application/json ] || fail "/live content type $(header Content-Type)"
[ "$(code GET /ready)" = 200 ] || fail "/ready: $(cat "$T/body")"
jq_ '
c=d["checks"]
assert d["ready"] is True and d["status"]=="ready", d
for k in ("datastore","ca","node_api"):
    assert c[k]["ok"] is True and c[k]["detail"], (k, c)
assert "answered in" in c["datastore"]["detail"], c'
ok "/live and /ready answer 200 with each check named"

# ---- /status
[ "$(code GET /status)" = 200 ] || fail "/status"
cp "$T/body" "$T/status0.json"
jq_ '
import time
assert d["daemon"]=="lanyard-server" and d["trust_domain"]=="example.org", d
assert d["version"] and d["uptime_seconds"]>=0 and abs(d["now"]-time.time())<5, d
a=d["ca"]["authorities"]
assert len(a)>=1 and [x for x in a if x["state"]=="active"], a
for x in a:
    assert len(x["sha256"])==64 and x["not_after"]>x["not_before"], x
assert d["counts"]["entries"]==0 and d["counts"]["agents"]==0, d["counts"]
assert d["node_api"]["connected_agents"]==0, d
assert d["datastore"]["ok"] is True and d["datastore"]["latency_seconds"]>=0, d
assert d["ready"]["ready"] is True'
# The active authority is the one in the bundle the admin API hands out.
srv bundle show >"$T/bundle.pem"
fp=$(openssl x509 -in "$T/bundle.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
grep -q "$fp" "$T/status0.json" || fail "bundle fingerprint $fp not in /status"
ok "/status: version, uptime, authorities (fingerprint matches the bundle), counts"

# ---- metrics, before any agent
[ "$(code GET /metrics)" = 200 ] || fail "/metrics"
[ "$(header Content-Type)" = "text/plain; version=0.0.4; charset=utf-8" ] ||
	fail "/metrics content type $(header Content-Type)"
cp "$T/body" "$T/m0.txt"
$M check "$T/m0.txt" lanyard_server_ >"$T/families.json" || fail "metrics text invalid"
for f in lanyard_server_signing_requests_total lanyard_server_signing_duration_seconds \
	lanyard_server_connected_agents lanyard_server_datastore_latency_seconds \
	process_resident_memory_bytes process_open_fds \
	lanyard_server_build_info lanyard_server_uptime_seconds lanyard_server_ready \
	lanyard_server_ca_authority_expiry_timestamp_seconds lanyard_server_registration_entries; do
	grep -q "\"$f\"" "$T/families.json" || fail "metric family $f missing"
done
grep -q '^lanyard_server_build_info{version="[0-9][^"]*"} 1$' "$T/m0.txt" || fail "build_info"
[ "$($M get "$T/m0.txt" lanyard_server_ready)" = 1 ] || fail "ready gauge"
rss=$($M get "$T/m0.txt" process_resident_memory_bytes)
[ "$rss" -gt 1000000 ] || fail "resident memory $rss"
fds=$($M get "$T/m0.txt" process_open_fds)
now_fds=$(ls /proc/"$SERVER_PID"/fd | wc -l)
[ "$fds" -gt 5 ] && [ $((fds - now_fds)) -le 3 ] && [ $((now_fds - fds)) -le 3 ] ||
	fail "open fds $fds, /proc shows $now_fds"
ok "/metrics parses strictly and has the families the issue names"

# ---- an agent attests and gets an SVID: counters move
write_agent_config
tok=$(new_token)
srv entry create --spiffe-id "spiffe://$TD/web" \
	--parent-id "spiffe://$TD/lanyard/agent/join_token/$tok" --selector "unix:uid:$(id -u)" >/dev/null
start_agent --join-token "$tok"
connected() {
	curl -s "$(H /metrics)" >"$T/m1.txt" &&
		[ "$($M get "$T/m1.txt" lanyard_server_connected_agents)" = 1 ] &&
		[ "$($M get "$T/m1.txt" lanyard_server_signing_requests_total kind=x509_svid result=ok)" -ge 1 ]
}
wait_for 20 connected || fail "the agent never showed up in the metrics"
$M check "$T/m1.txt" lanyard_server_ >/dev/null || fail "metrics text invalid after attestation"
a0=$($M get "$T/m0.txt" lanyard_server_signing_requests_total kind=agent_attest result=ok)
a1=$($M get "$T/m1.txt" lanyard_server_signing_requests_total kind=agent_attest result=ok)
[ "$a0" = 0 ] && [ "$a1" = 1 ] || fail "agent_attest counter $a0 -> $a1"
c0=$($M get "$T/m0.txt" lanyard_server_signing_duration_seconds_count)
c1=$($M get "$T/m1.txt" lanyard_server_signing_duration_seconds_count)
[ "$c0" = 0 ] && [ "$c1" -ge 2 ] || fail "signing histogram count $c0 -> $c1"
inf=$($M get "$T/m1.txt" lanyard_server_signing_duration_seconds_bucket le=+Inf)
[ "$inf" = "$c1" ] || fail "+Inf bucket $inf != count $c1"
wait_for 10 bash -c "curl -s '$(H /status)' | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d[\"counts\"][\"agents\"]==1 and d[\"counts\"][\"entries\"]==1 and d[\"node_api\"][\"connected_agents\"]==1, d'" ||
	fail "status counts did not follow"
ok "counters move: attestation, signing histogram, connected agents, counts"

# ---- no secret in /status: no key material, no unused join token
spare=$(new_token)
sleep 6 # the counts refresh every few seconds
code GET /status >/dev/null
grep -q "$spare" "$T/body" && fail "an unused join token appears in /status"
grep -qi "PRIVATE KEY\|\"key\"" "$T/body" && fail "key material in /status"
jq_ 'assert d["counts"]["join_tokens"]==1, d["counts"]'
ok "no private key and no token in /status"

# ---- errors
for m in POST PUT DELETE PATCH; do
	[ "$(code $m /status -d x)" = 405 ] || fail "$m /status"
	[ "$(header Allow)" = "GET, HEAD" ] || fail "$m Allow: $(header Allow)"
	jq_ 'assert "error" in d, d'
done
for p in /nope /status/x /metrics/ /readyz; do
	[ "$(code GET "$p")" = 404 ] || fail "GET $p"
	jq_ 'assert "error" in d, d'
done
[ "$(code HEAD /metrics -I)" = 200 ] || fail "HEAD /metrics"
ok "405 with Allow, 404 with a JSON error, HEAD"

# ---- the page
[ "$(code GET /)" = 200 ] || fail "GET /"
case "$(header Content-Type)" in text/html*) ;; *) fail "/ content type $(header Content-Type)" ;; esac
grep -q "fetch('/status'" "$T/body" || fail "the page does not read /status"
grep -qiE '<(script|link|img)[^>]+(src|href)="?https?:' "$T/body" && fail "the page loads external assets"
header Content-Security-Policy | grep -q "default-src 'none'" || fail "no CSP on the page"
ok "/ serves a self-contained page"

# ---- healthcheck
"$BIN/lanyard-server" healthcheck --config "$T/server.json" >"$T/hc.out" 2>"$T/hc.err" ||
	fail "healthcheck on a ready server: $(cat "$T/hc.err")"
grep -q ready "$T/hc.out" || fail "healthcheck output: $(cat "$T/hc.out")"
sed "s/\"http_port\": $SERVER_HTTP_PORT/\"http_port\": 0/" "$T/server.json" >"$T/off.json"
if "$BIN/lanyard-server" healthcheck --config "$T/off.json" 2>"$T/hc.err"; then fail "healthcheck with http_port 0"; fi
grep -q "disabled" "$T/hc.err" || fail "http_port 0 reason: $(cat "$T/hc.err")"
echo '{"trust_domain": "example.org", "http_port": "x"}' >"$T/bad.json"
if "$BIN/lanyard-server" healthcheck --config "$T/bad.json" 2>"$T/hc.err"; then fail "healthcheck with a bad config"; fi
grep -q "http_port" "$T/hc.err" || fail "bad config reason: $(cat "$T/hc.err")"
if "$BIN/lanyard-server" healthcheck --bogus 2>/dev/null; then fail "healthcheck accepted --bogus"; fi
stop_agent
stop_server
if "$BIN/lanyard-server" healthcheck --config "$T/server.json" 2>"$T/hc.err"; then fail "healthcheck on a stopped server"; fi
grep -q "cannot get http://127.0.0.1:$SERVER_HTTP_PORT/ready" "$T/hc.err" || fail "stopped server reason: $(cat "$T/hc.err")"
ok "healthcheck: 0 when ready, 1 with the reason when down, disabled or misconfigured"
