#!/usr/bin/env bash
# Automatic registration from pods (k8s_registration) end to end: lanyard-server lists and
# watches pods and nodes on a fake Kubernetes API server (https, recorded-shape objects, list
# pages, watch streams the test appends to). A pod bound to node-1 gets a managed entry parented
# to node-1's k8s_psat agent, and that agent (attested with k8s_psat, attesting workloads through
# a fake kubelet) serves the pod's container its SVID. The CLI shows managed entries and refuses
# to edit or delete them. Deleted pods lose their entries; a dropped watch resumes from the last
# resourceVersion (a BOOKMARK's included); a 410 Gone relists and reconciles without
# duplicates and removes orphans; a restart keeps the same entries; a bad render is logged once
# and skipped. A list of 5,000 pods is reconciled (the time is printed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAKE="$SRC/tests/integration/k8s_fake.py"
STREAM="$SRC/tests/integration/k8s_reg_stream.py"
CLUSTER=it-cluster
NODE1_UID=4f6c2a1e-8b3d-4e5f-9a0b-1c2d3e4f5a6b
NODE2_UID=9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4
PSAT1="spiffe://$TD/lanyard/agent/k8s_psat/$CLUSTER/$NODE1_UID"
PSAT2="spiffe://$TD/lanyard/agent/k8s_psat/$CLUSTER/$NODE2_UID"
UID_WEB=8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d
CID_WEB=57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2e
UID_WEB2=0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e
UID_WEB3=1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f
WEB_ID="spiffe://$TD/ns/prod/sa/web"

[ "$($PY -c 'import json; print(json.load(open("'"$SRC"'/tests/integration/fixtures/k8s/api-node-node-2.json"))["metadata"]["uid"])')" = "$NODE2_UID" ] ||
	fail "fixture api-node-node-2.json does not have uid $NODE2_UID"

echo "agent-sa-token.eyJzdWIiOiJhZ2VudCJ9.sig" >"$T/agent-sa-token"
$PY "$STREAM" init "$T/api"
start_fake_k8s_api
$PY "$FAKE" kubelet --state "$T/kubelet" --tls "$T/api.crt" "$T/api.key" \
	--token agent-sa-token.eyJzdWIiOiJhZ2VudCJ9.sig >>"$T/kubelet.log" 2>&1 &
PIDS+=("$!")
wait_for 10 test -s "$T/kubelet/port" || fail "fake kubelet did not start"

write_server_config "\"k8s_psat_cluster\": \"$CLUSTER\",
  \"k8s_psat_allowed_service_accounts\": [\"lanyard:lanyard-agent\"],
  \"k8s_api_url\": \"$API_URL\",
  \"k8s_api_ca_path\": \"$T/api.crt\",
  \"k8s_api_token_path\": \"$T/server-token\",
  \"k8s_registration\": [
    {\"spiffe_id\": \"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}\",
     \"namespaces\": [\"prod\"], \"pod_labels\": {\"app\": \"web\"},
     \"dns_names\": [\"{pod_name}.{namespace}.pod.{cluster}\"], \"x509_svid_ttl\": \"30m\"},
    {\"spiffe_id\": \"spiffe://{trust_domain}/version/{label:version}\", \"namespaces\": [\"prod\"]}
  ]"

# ---- a bad rule is refused at load, naming the rule, the key and the value
cp "$T/server.json" "$T/good.json"
sed 's/"x509_svid_ttl": "30m"/"x509_svid_ttl": "soon"/' "$T/good.json" >"$T/bad.json"
out=$("$BIN/lanyard-server" run --config "$T/bad.json" 2>&1) && fail "bad rule accepted"
grep -q "k8s_registration\[0\]: key 'x509_svid_ttl': value \"soon\"" <<<"$out" ||
	fail "bad rule error: $out"
ok "a bad rule is refused at load: $(grep -o "k8s_registration\[0\].*" <<<"$out" | head -c 120)"

start_server
wait_for 20 grep -q "k8s_registration: reconciled 4 pods" "$T/server.log" ||
	fail "initial list not reconciled"

managed() { # prints the managed entries as JSON lines [id, spiffe_id, parent_id, pod uid]
	srv entry show --output json | $PY -c "
import json, sys
for e in json.load(sys.stdin)['entries']:
    if e.get('managed'):
        uid = [s for s in e['selectors'] if s.startswith('k8s:pod-uid:')]
        print(json.dumps([e['id'], e['spiffe_id'], e['parent_id'], uid[0][12:] if uid else '']))"
}
n_managed() { managed | wc -l; }
has_managed() { managed | grep -q "$1"; }
lacks_managed() { ! managed | grep -q "$1"; }
[ "$(n_managed)" -eq 0 ] || fail "entries for pods no rule matches: $(managed)"
ok "the recorded pods (kube-system, lanyard, jobs) match no rule: no entries"

# ---- the agent of node-1 (k8s_psat) with the k8s workload attestor
$PY "$FAKE" token --jti authenticated >"$T/agent-token"
mkdir -p "$T/proc"
write_agent_config "\"node_attestor\": \"k8s_psat\", \"psat_token_path\": \"$T/agent-token\",
  \"k8s_workload_attestor\": true,
  \"kubelet_url\": \"https://127.0.0.1:$(cat "$T/kubelet/port")\",
  \"kubelet_token_path\": \"$T/agent-sa-token\",
  \"kubelet_ca_path\": \"$T/api.crt\",
  \"proc_root\": \"$T/proc\""
start_agent
wait_for 20 grep -q "attested as $PSAT1" "$T/agent.log" || fail "agent did not attest as $PSAT1"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"

# ---- the web pod is bound to node-1: entry, then its SVID on the node
t0=$($PY -c 'import time; print(time.time())')
$PY "$STREAM" pod "$T/api" ADDED --rv 201
got=""
for _ in $(seq 1 200); do
	if got=$(fetch_in_pod "0::/kubepods/burstable/pod$UID_WEB/$CID_WEB" 2>/dev/null) &&
		grep -q "$WEB_ID" <<<"$got"; then
		break
	fi
	sleep 0.05
done
t1=$($PY -c 'import time; print(time.time())')
grep -q "$WEB_ID" <<<"$got" || fail "the web pod's container did not get $WEB_ID: $got"
echo "# pod bound -> SVID served on its node: $($PY -c "print('%.0f ms' % (($t1 - $t0) * 1000))") (target <= 2000 ms)"
managed | $PY -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert len(rows) == 1, rows
assert rows[0][1:] == ['$WEB_ID', '$PSAT1', '$UID_WEB'], rows" || fail "managed entries: $(managed)"
id=$(managed | $PY -c 'import json,sys; print(json.loads(sys.stdin.readline())[0])')
srv entry show --id "$id" --output json | $PY -c "
import json, sys
e = json.load(sys.stdin)['entries'][0]
assert e['managed'] is True, e
assert e['selectors'] == ['k8s:ns:prod', 'k8s:pod-uid:$UID_WEB', 'k8s:sa:web'], e
assert e['dns_names'] == ['web-7d9f8b6c5d-x2k9p.prod.pod.$CLUSTER'], e
assert e['x509_svid_ttl'] == 1800, e" || fail "entry: $(srv entry show --id "$id" --output json)"
srv entry show --id "$id" | grep -q "^Managed *: true" || fail "the CLI does not show Managed"
ok "pod prod/web on node-1: managed entry $WEB_ID (parent node-1's agent, ns/sa/pod-uid, DNS, TTL), SVID served"
[ "$(grep -c 'skipped for rule 1: the pod has no label "version"' "$T/server.log")" -eq 1 ] ||
	fail "the bad render of rule 1 was not logged exactly once"
ok "rule 1 ({label:version}) skips the pod with one log line"

# ---- the CLI refuses to edit managed entries, and they stay
out=$(srv entry update --id "$id" --x509-svid-ttl 60 2>&1) && fail "managed entry updated: $out"
grep -q "managed by the server (k8s_registration" <<<"$out" || fail "update refusal: $out"
out=$(srv entry delete --id "$id" 2>&1) && fail "managed entry deleted: $out"
grep -q "managed by the server (k8s_registration" <<<"$out" || fail "delete refusal: $out"
[ "$(n_managed)" -eq 1 ] || fail "managed entries changed: $(managed)"
ok "the CLI refuses to update or delete managed entries: $(head -c 140 <<<"$out")"

# ---- a MODIFIED event without change, a BOOKMARK, then a dropped connection
$PY "$STREAM" pod "$T/api" MODIFIED --rv 202
$PY "$STREAM" raw "$T/api" pods '{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"300"}}}'
$PY "$STREAM" raw "$T/api" pods '{"type":"DROP"}'
wait_for 20 grep -q "watch of pods dropped" "$T/server.log" || fail "the drop was not seen"
wait_for 20 grep -q "GET /api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=300&" "$T/api/requests" ||
	fail "the watch did not resume from the bookmark's resourceVersion 300: $(grep watch "$T/api/requests")"
$PY "$STREAM" pod "$T/api" ADDED --rv 301 --name web-7d9f8b6c5d-b7m4q --uid "$UID_WEB2" --node node-2
wait_for 20 has_managed "$UID_WEB2" ||
	fail "the pod added after the drop got no entry"
managed | grep "$UID_WEB2" | grep -q "\"$PSAT2\"" || fail "web-2 parent is not node-2's agent: $(managed)"
[ "$(n_managed)" -eq 2 ] || fail "entries after MODIFIED and the drop: $(managed)"
ok "watch resumed from the bookmark's resourceVersion after a dropped connection; MODIFIED made no duplicate; a pod on node-2 is parented to node-2's agent"

# ---- a pod deleted, and a pod not yet scheduled
$PY "$STREAM" pod "$T/api" DELETED --rv 302 --name web-7d9f8b6c5d-b7m4q --uid "$UID_WEB2" --node node-2
$PY "$STREAM" pod "$T/api" ADDED --rv 303 --name web-7d9f8b6c5d-p3n8v --uid "$UID_WEB3" --node ""
wait_for 20 lacks_managed "$UID_WEB2" ||
	fail "the deleted pod's entry stayed: $(managed)"
[ "$(n_managed)" -eq 1 ] || fail "a pod without a node got an entry: $(managed)"
ok "a deleted pod loses its entry; an unscheduled pod gets none"

# ---- 410 Gone: list again; the new list lacks the web pod and has web-3 bound to node-1
$PY - "$T/api" <<EOF
import json, sys, copy
d = sys.argv[1]
lst = json.load(open(d + "/pods-list.json"))
web = json.load(open("$SRC/tests/integration/fixtures/k8s/kubelet-pods.json"))["items"]
web3 = copy.deepcopy([p for p in web if p["metadata"]["name"] == "web-7d9f8b6c5d-x2k9p"][0])
web3["metadata"].update({"name": "web-7d9f8b6c5d-p3n8v", "uid": "$UID_WEB3", "resourceVersion": "400"})
# In the gap the web pod went and web-3 was bound to node-1.
lst["items"] = [p for p in lst["items"] if p["metadata"]["uid"] not in ("$UID_WEB", "$UID_WEB3")]
lst["items"].append(web3)
lst["metadata"]["resourceVersion"] = "400"
json.dump(lst, open(d + "/pods-list.json", "w"))
EOF
$PY "$STREAM" raw "$T/api" pods '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 303 (400)","reason":"Expired","code":410}}'
wait_for 20 grep -q "watch of pods from resourceVersion 303 expired (410 Gone)" "$T/server.log" ||
	fail "410 not handled"
wait_for 20 has_managed "$UID_WEB3" ||
	fail "relist did not add web-3: $(managed)"
wait_for 20 lacks_managed "\"$UID_WEB\"" ||
	fail "relist did not remove the web pod's entry: $(managed)"
[ "$(n_managed)" -eq 1 ] || fail "after the relist: $(managed)"
grep -q "GET /api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=400&" "$T/api/requests" ||
	wait_for 10 grep -q "resourceVersion=400&" "$T/api/requests" || fail "no watch from the new list's resourceVersion"
ok "410 Gone: listed again, the gone pod's entry removed, the new pod's added, no duplicate"

# ---- node-1 is re-created (same name, new uid): its pods' entries follow its new agent ID
NEW_UID=5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9
$PY "$STREAM" node "$T/api" DELETED node-1 --uid "$NODE1_UID" --rv 110
$PY "$STREAM" node "$T/api" ADDED node-1 --uid "$NEW_UID" --rv 111
wait_for 20 has_managed "lanyard/agent/k8s_psat/$CLUSTER/$NEW_UID" ||
	fail "web-3's entry did not follow node-1's new uid: $(managed)"
[ "$(n_managed)" -eq 1 ] || fail "after the node change: $(managed)"
ok "a node re-created under a new uid: its pods' entries are parented to its new agent ID"

# ---- a restart reconciles against the stored entries: same entries, same IDs
before=$(managed | sort)
stop_server
start_server
wait_for 20 bash -c "[ \$(grep -c 'k8s_registration: reconciled' '$T/server.log') -ge 3 ]" ||
	fail "no reconciliation after the restart"
after=$(managed | sort)
[ "$before" = "$after" ] || fail "entries changed across a restart: before $before after $after"
ok "a restart resyncs without duplicates (same entry IDs)"

# ---- 5,000 pods in one list (pages of 500), reached by a 410 relist
$PY "$STREAM" pods-list "$T/api" --count "${K8S_REG_PODS:-5000}" --rv 500 --with-web
$PY "$STREAM" raw "$T/api" pods '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version","reason":"Expired","code":410}}'
wait_for 240 grep -q "k8s_registration: reconciled $((${K8S_REG_PODS:-5000} + 1)) pods" "$T/server.log" ||
	fail "the 5,000-pod list was not reconciled"
line=$(grep "k8s_registration: reconciled $((${K8S_REG_PODS:-5000} + 1)) pods" "$T/server.log" | tail -n 1)
echo "# ${K8S_REG_PODS:-5000} pods: ${line#*k8s_registration: }"
[ "$(srv entry count --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["count"])')" -eq $((${K8S_REG_PODS:-5000} + 1)) ] ||
	fail "entries for 5,001 pods: $(srv entry count)"
ok "$((${K8S_REG_PODS:-5000} + 1)) pods listed in pages and reconciled into as many managed entries"
grep -q "resourceVersion=500&" "$T/api/requests" || wait_for 10 grep -q "resourceVersion=500&" "$T/api/requests" ||
	fail "no watch from resourceVersion 500"
