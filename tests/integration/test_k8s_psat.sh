#!/usr/bin/env bash
# k8s_psat node attestation end to end: lanyard-server validates the agent's projected service
# account token with a fake Kubernetes API server (https, TokenReview + pod + node, recorded-shape
# answers), the agent is named after its node and carries the k8s_psat node selectors, a node
# alias entry serves workloads to it (and an alias for another cluster does not), the trust bundle
# lands in the ConfigMap, evicted agents re-attest with a fresh token under the same ID, and
# tokens for a wrong audience or a service account outside the allow-list are refused with
# the reason.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAKE="$SRC/tests/integration/k8s_fake.py"
NODE1_UID=4f6c2a1e-8b3d-4e5f-9a0b-1c2d3e4f5a6b
CLUSTER=it-cluster
PSAT_ID="spiffe://$TD/lanyard/agent/k8s_psat/$CLUSTER/$NODE1_UID"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$T/api.key" -out "$T/api.crt" >/dev/null 2>&1 || fail "openssl"
printf 'server-sa-token.%s.sig\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$T/server-token"
$PY "$FAKE" api --state "$T/api" --tls "$T/api.crt" "$T/api.key" \
	--token "$(tr -d '\n' <"$T/server-token")" >>"$T/api.log" 2>&1 &
PIDS+=("$!")
wait_for 10 test -s "$T/api/port" || fail "fake API server did not start"
API_URL="https://127.0.0.1:$(cat "$T/api/port")"

write_server_config "\"k8s_psat_cluster\": \"$CLUSTER\",
  \"k8s_psat_allowed_service_accounts\": [\"lanyard:lanyard-agent\"],
  \"k8s_api_url\": \"$API_URL\",
  \"k8s_api_ca_path\": \"$T/api.crt\",
  \"k8s_api_token_path\": \"$T/server-token\",
  \"k8s_bundle_configmap\": \"lanyard/lanyard-bundle\""
start_server

token() {
	$PY "$FAKE" token --jti "$1" ${2:+--aud "$2"} >"$T/agent-token"
}

agent_list() {
	srv agent list --output json
}

token authenticated
write_agent_config "\"node_attestor\": \"k8s_psat\", \"psat_token_path\": \"$T/agent-token\""
start_agent
wait_for 20 grep -q "attested as $PSAT_ID" "$T/agent.log" ||
	fail "agent did not attest as $PSAT_ID"
agent_list | $PY -c "
import json, sys
a = [x for x in json.load(sys.stdin)['agents'] if x['spiffe_id'] == '$PSAT_ID']
assert len(a) == 1, a
a = a[0]
assert a['attestor'] == 'k8s_psat', a
want = {'k8s_psat:cluster:$CLUSTER', 'k8s_psat:agent_ns:lanyard',
        'k8s_psat:agent_sa:lanyard-agent', 'k8s_psat:agent_node_name:node-1',
        'k8s_psat:agent_node_uid:$NODE1_UID'}
assert want <= set(a['selectors']), a['selectors']" || fail "agent record: $(agent_list)"
grep -q "POST /apis/authentication.k8s.io/v1/tokenreviews auth" "$T/api/requests" ||
	fail "no TokenReview with the server's token"
ok "agent attested with k8s_psat as $PSAT_ID, with node selectors"

# ---- the trust bundle published to the ConfigMap
wait_for 20 $PY -c "
import json, sys
cm = json.load(open('$T/api/configmap.json'))
sys.exit(0 if cm.get('data', {}).get('bundle.crt', '').strip() == open('$T/bootstrap.pem').read().strip() else 1)" ||
	fail "bundle ConfigMap not updated: $(cat "$T/api/configmap.json" 2>/dev/null)"
ok "trust bundle published to ConfigMap lanyard/lanyard-bundle"

# ---- node aliases: an entry for the whole cluster serves workloads on every agent in it
srv entry create --spiffe-id "spiffe://$TD/k8s/$CLUSTER" --parent-id "spiffe://$TD/lanyard/server" \
	--selector "k8s_psat:cluster:$CLUSTER" >/dev/null
srv entry create --spiffe-id "spiffe://$TD/k8s/other" --parent-id "spiffe://$TD/lanyard/server" \
	--selector "k8s_psat:cluster:other-cluster" >/dev/null
srv entry create --spiffe-id "spiffe://$TD/wl/in-cluster" --parent-id "spiffe://$TD/k8s/$CLUSTER" \
	--selector "unix:uid:$(id -u)" >/dev/null
srv entry create --spiffe-id "spiffe://$TD/wl/other-cluster" --parent-id "spiffe://$TD/k8s/other" \
	--selector "unix:uid:$(id -u)" >/dev/null
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"
got=""
for _ in $(seq 1 100); do
	got=$(fetch_x509_json 2>/dev/null || true)
	grep -q "spiffe://$TD/wl/in-cluster" <<<"$got" && break
	sleep 0.2
done
echo "$got" | $PY -c "
import json, sys
ids = sorted(s['spiffe_id'] for s in json.load(sys.stdin)['svids'])
assert ids == ['spiffe://$TD/wl/in-cluster'], ids" || fail "alias entries served: $got"
ok "node alias k8s_psat:cluster:$CLUSTER serves its workloads, another cluster's alias does not"

# ---- re-attestation with a fresh token after eviction: same agent ID
token authenticated
srv agent evict --spiffe-id "$PSAT_ID" >/dev/null
wait_for 30 bash -c "[ \$(grep -c 'attested as $PSAT_ID' '$T/agent.log') -ge 2 ]" ||
	fail "agent did not re-attest after eviction"
[ "$(grep -c "POST /apis/authentication.k8s.io/v1/tokenreviews" "$T/api/requests")" -ge 2 ] ||
	fail "re-attestation did not review the new token"
ok "evicted agent re-attested with a fresh token as the same $PSAT_ID"
stop_agent

# ---- refused tokens, with the reason in the agent's log
refused() {
	local jti=$1 aud=$2 why=$3
	rm -rf "$T/agent/data"
	: >"$T/agent.log"
	token "$jti" "$aud"
	start_agent
	wait_for 20 grep -q "$why" "$T/agent.log" || {
		stop_agent
		fail "token $jti/$aud: no \"$why\" in the agent log"
	}
	grep -q "attested as" "$T/agent.log" && fail "token $jti/$aud was accepted"
	stop_agent
	ok "token $jti (audience $aud) refused: $why"
}
refused authenticated vault "wrong audience"
refused other-sa lanyard-server "service account prod:default is not allowed"
refused other-node lanyard-server "issued for a pod on node node-2"
refused unauthenticated lanyard-server "did not authenticate the token"
grep -q "k8s_psat" "$T/server.log" || fail "server log does not mention k8s_psat"
