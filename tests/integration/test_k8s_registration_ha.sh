#!/usr/bin/env bash
# Automatic registration with two servers on one PostgreSQL database: only the holder of the
# lease follows the (fake) Kubernetes API and writes entries; the other stands by. When the
# holder stops, the other takes the lease over, lists again and reconciles without duplicating
# the entries the first one made, then follows new pods. Skipped (77) where PostgreSQL is not
# installed, except under CI.
source "$(dirname "$0")/lib.sh"

STREAM="$SRC/tests/integration/k8s_reg_stream.py"
UID_WEB=8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d
UID_WEB2=0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e

start_pg
$PY "$STREAM" init "$T/api"
start_fake_k8s_api

K8S_CONFIG="\"k8s_psat_cluster\": \"it-cluster\",
  \"k8s_psat_allowed_service_accounts\": [\"lanyard:lanyard-agent\"],
  \"k8s_api_url\": \"$API_URL\",
  \"k8s_api_ca_path\": \"$T/api.crt\",
  \"k8s_api_token_path\": \"$T/server-token\",
  \"k8s_registration\": [{\"spiffe_id\": \"spiffe://{trust_domain}/ns/{namespace}/pod/{pod_name}\",
                        \"namespaces\": [\"prod\"]}]"

declare -A HA_PID
ha_start() {
	"$BIN/lanyard-server" run --config "$T/$1.json" >>"$T/server-$1.log" 2>&1 &
	HA_PID[$1]=$!
	PIDS+=("$!")
	wait_for 30 "$BIN/lanyard-server" bundle show --socket "$T/$1/admin.sock" ||
		fail "server $1 did not come up"
}

managed() { # the managed entries seen through server $1: "id pod-uid" lines
	"$BIN/lanyard-server" entry show --output json --socket "$T/$1/admin.sock" | $PY -c "
import json, sys
for e in json.load(sys.stdin)['entries']:
    if e.get('managed'):
        print(e['id'], [s for s in e['selectors'] if s.startswith('k8s:pod-uid:')][0][12:])"
}
has_managed() { managed "$1" | grep -q "$2"; }

pg_server_config a "$K8S_CONFIG"
pg_server_config b "$K8S_CONFIG"
ha_start a
wait_for 20 grep -q "this server holds the lease" "$T/server-a.log" || fail "a did not take the lease"
ha_start b
wait_for 20 grep -q "another server holds the lease; standing by" "$T/server-b.log" ||
	fail "b did not stand by"
wait_for 20 grep -q "k8s_registration: reconciled 4 pods" "$T/server-a.log" || fail "a did not list"

$PY "$STREAM" pod "$T/api" ADDED --rv 201
wait_for 20 has_managed b "$UID_WEB" || fail "no entry for the web pod (seen through b)"
sleep 2
grep -q "k8s_registration: reconciled" "$T/server-b.log" && fail "b reconciled without the lease"
[ "$(grep -c "GET /api/v1/pods" "$T/api/requests")" -ge 2 ] || fail "a did not list and watch"
[ "$(managed a | wc -l)" -eq 1 ] || fail "entries: $(managed a)"
ok "a holds the lease and keeps the pod's entry; b stands by and does not touch the API"

before=$(managed b)
kill -TERM "${HA_PID[a]}"
wait "${HA_PID[a]}" 2>/dev/null || true
wait_for 30 grep -q "this server holds the lease" "$T/server-b.log" || fail "b did not take over"
wait_for 30 grep -q "k8s_registration: reconciled 5 pods (1 with entries before, 1 after, 0 entries" \
	"$T/server-b.log" || fail "b's reconciliation changed entries: $(grep reconciled "$T/server-b.log")"
[ "$(managed b)" = "$before" ] || fail "entries changed on takeover: $before -> $(managed b)"
ok "a stopped (lease given up): b took over and reconciled without a duplicate"

$PY "$STREAM" pod "$T/api" ADDED --rv 202 --name web-7d9f8b6c5d-b7m4q --uid "$UID_WEB2" --node node-2
wait_for 20 has_managed b "$UID_WEB2" || fail "b did not follow a new pod: $(managed b)"
[ "$(managed b | wc -l)" -eq 2 ] || fail "entries: $(managed b)"
ok "b follows new pods"
