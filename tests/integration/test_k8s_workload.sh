#!/usr/bin/env bash
# The k8s workload attestor in the real agent: callers are pinned in a fake proc tree (copies of
# their real stat and status, and a cgroup file naming a pod container), the agent asks a fake
# kubelet (https, bearer token) for the pod list, and entries with k8s selectors are served. A
# container that the kubelet lists only after a few requests is still served within the retry
# budget; a host process gets no k8s selectors; a kubelet that refuses the token gives a clear
# error.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAKE="$SRC/tests/integration/k8s_fake.py"
CID_WEB=57ad2393e04aaaa660c9a27225deaee5264f2857495f766b512dd1fcf8b1ff2e
UID_WEB=8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d
CID_WORKER=2a64d2857bdd09a25b4b3f83d354123c5d1aa0ef8c992de58e00e2cb32c2b0a1
UID_JOB=a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$T/kubelet.key" -out "$T/kubelet.crt" >/dev/null 2>&1 || fail "openssl"
echo "agent-sa-token.eyJzdWIiOiJhZ2VudCJ9.sig" >"$T/agent-sa-token"

KUBELET_PID=""
start_kubelet() {
	rm -rf "$T/kubelet"
	$PY "$FAKE" kubelet --state "$T/kubelet" --tls "$T/kubelet.crt" "$T/kubelet.key" "$@" \
		>>"$T/kubelet.log" 2>&1 &
	KUBELET_PID=$!
	PIDS+=("$KUBELET_PID")
	wait_for 10 test -s "$T/kubelet/port" || fail "fake kubelet did not start"
}
stop_kubelet() {
	kill "$KUBELET_PID" 2>/dev/null || true
	wait "$KUBELET_PID" 2>/dev/null || true
}

# The port is fixed once: the agent's config names it.
start_kubelet --token agent-sa-token.eyJzdWIiOiJhZ2VudCJ9.sig \
	--later kubelet-pods-later.json --switch-after 3
KPORT=$(cat "$T/kubelet/port")
mkdir -p "$T/proc"

start_server
write_agent_config "\"k8s_workload_attestor\": true,
  \"kubelet_url\": \"https://127.0.0.1:$KPORT\",
  \"kubelet_token_path\": \"$T/agent-sa-token\",
  \"kubelet_ca_path\": \"$T/kubelet.crt\",
  \"proc_root\": \"$T/proc\""
tok=$(new_token)
start_agent --join-token "$tok"
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"


# Entries with k8s selectors, parented to this agent.
srv entry create --spiffe-id "spiffe://$TD/prod/web" --parent-id "$AGENT_ID" \
	--selector k8s:ns:prod --selector k8s:sa:web --selector k8s:pod-label:app:web \
	--selector k8s:container-name:web >/dev/null
srv entry create --spiffe-id "spiffe://$TD/jobs/report" --parent-id "$AGENT_ID" \
	--selector k8s:ns:jobs --selector k8s:pod-owner:Job:report-28591230 >/dev/null
sleep 1

out=$(fetch_in_pod "0::/kubepods/burstable/pod$UID_WEB/$CID_WEB") || fail "web fetch: $out"
echo "$out" | $PY -c "
import json, sys
ids = [s['spiffe_id'] for s in json.load(sys.stdin)['svids']]
assert ids == ['spiffe://$TD/prod/web'], ids" || fail "web container got: $out"
grep -q "GET /pods auth" "$T/kubelet/requests" || fail "the kubelet was not asked with the token"
ok "a container of pod prod/web-7d9f8b6c5d-x2k9p gets spiffe://$TD/prod/web (cgroup v2)"

out=$(fetch_in_pod "12:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_WEB//-/_}.slice/docker-$CID_WEB.scope
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_WEB//-/_}.slice/docker-$CID_WEB.scope") ||
	fail "web fetch (systemd cgroup v1): $out"
grep -q "spiffe://$TD/prod/web" <<<"$out" || fail "systemd layout: $out"
ok "the same container through the systemd cgroup v1 layout"

# The job's container is not listed before the kubelet's 4th answer: the attestor retries.
out=$(fetch_in_pod "0::/kubepods/besteffort/pod$UID_JOB/$CID_WORKER") ||
	fail "job fetch: $out"
grep -q "spiffe://$TD/jobs/report" <<<"$out" || fail "job container got: $out"
ok "a container still starting is served once the kubelet lists it"

if out=$(fetch_in_pod "0::/user.slice/user-1000.slice/session-3.scope"); then
	grep -q "spiffe://$TD/prod/web" <<<"$out" && fail "a host process got a pod's SVID"
fi
grep -q "PermissionDenied" <<<"$out" || fail "host process: $out"
ok "a host process gets no k8s selectors"

# A kubelet that does not know the agent's token: the refusal is logged with the reason.
stop_kubelet
$PY "$FAKE" kubelet --state "$T/kubelet2" --port "$KPORT" --tls "$T/kubelet.crt" \
	"$T/kubelet.key" --token some-other-token >>"$T/kubelet.log" 2>&1 &
PIDS+=("$!")
wait_for 10 test -s "$T/kubelet2/port" || fail "second fake kubelet did not start on $KPORT"
# A container the table does not hold yet, so the agent has to ask the kubelet again.
out=$(fetch_in_pod "0::/kubepods/burstable/pod00000000-1111-2222-3333-444444444444/$(printf '%064d' 7)") &&
	fail "unknown pod was served: $out"
grep -q "PermissionDenied" <<<"$out" || fail "unknown pod: $out"
wait_for 10 grep -q "kubelet refused the agent's token" "$T/agent.log" ||
	fail "no clear 401 error in the agent log"
ok "a kubelet that refuses the token: clear error"
