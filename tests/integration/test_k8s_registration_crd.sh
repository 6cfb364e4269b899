#!/usr/bin/env bash
# Automatic registration with rules from ClusterSPIFFEID objects (k8s_registration_crd): the
# server lists and watches them on the fake API server next to pods and nodes. An object's spec
# is a rule (a bad one is logged and ignored); editing the object replaces the pods' entries and
# deleting it removes them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAM="$SRC/tests/integration/k8s_reg_stream.py"
UID_WEB=8d2f3b1a-6c4e-4f7a-9b2d-3e5f7a9c1b4d

$PY "$STREAM" init "$T/api"
$PY "$STREAM" pod "$T/api" ADDED --rv 201
cr() { # cr NAME SPIFFE_ID_TEMPLATE RV: a ClusterSPIFFEID object
	printf '{"apiVersion":"lanyard.io/v1alpha1","kind":"ClusterSPIFFEID","metadata":{"name":"%s","uid":"c0ffee00-0000-4000-8000-%012d","resourceVersion":"%s"},"spec":{"spiffe_id":"%s","namespaces":["prod"],"x509_svid_ttl":"10m"}}' \
		"$1" "$3" "$3" "$2"
}
cat >"$T/api/clusterspiffeids-list.json" <<JSON
{"kind": "ClusterSPIFFEIDList", "apiVersion": "lanyard.io/v1alpha1", "metadata": {"resourceVersion": "10"},
 "items": [$(cr web "spiffe://{trust_domain}/crd/{namespace}/{pod_name}" 8),
           $(cr broken "spiffe://other.org/{pod_name}" 9)]}
JSON
: >"$T/api/clusterspiffeids-events.jsonl"
start_fake_k8s_api

write_server_config "\"k8s_psat_cluster\": \"it-cluster\",
  \"k8s_psat_allowed_service_accounts\": [\"lanyard:lanyard-agent\"],
  \"k8s_api_url\": \"$API_URL\",
  \"k8s_api_ca_path\": \"$T/api.crt\",
  \"k8s_api_token_path\": \"$T/server-token\",
  \"k8s_registration_crd\": true"
start_server

ids() { # the SPIFFE IDs of the managed entries
	srv entry show --output json | $PY -c "
import json, sys
print(' '.join(sorted(e['spiffe_id'] for e in json.load(sys.stdin)['entries'] if e.get('managed'))))"
}
ids_are() { [ "$(ids)" = "$1" ]; }

wait_for 20 ids_are "spiffe://$TD/crd/prod/web-7d9f8b6c5d-x2k9p" || fail "entries: $(ids)"
grep -q "ClusterSPIFFEID broken ignored: .*other.org" "$T/server.log" ||
	fail "the bad ClusterSPIFFEID was not logged"
ok "ClusterSPIFFEID web gives the pod its entry; the bad one (another trust domain) is logged and ignored"

$PY "$STREAM" raw "$T/api" clusterspiffeids "{\"type\":\"MODIFIED\",\"object\":$(cr web "spiffe://{trust_domain}/v2/{service_account}" 11)}"
wait_for 20 ids_are "spiffe://$TD/v2/web" || fail "entries after the edit: $(ids)"
ok "editing the ClusterSPIFFEID replaces the entry"

$PY "$STREAM" raw "$T/api" clusterspiffeids "{\"type\":\"DELETED\",\"object\":$(cr web "spiffe://{trust_domain}/v2/{service_account}" 12)}"
wait_for 20 ids_are "" || fail "entries after the delete: $(ids)"
grep -q "GET /apis/lanyard.io/v1alpha1/clusterspiffeids?watch=1&allowWatchBookmarks=true&resourceVersion=10&" \
	"$T/api/requests" || fail "the ClusterSPIFFEIDs were not watched from the list's resourceVersion"
ok "deleting the ClusterSPIFFEID removes its entries"
