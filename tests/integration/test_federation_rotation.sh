#!/usr/bin/env bash
# A CA rotation in a federated trust domain reaches the other side's workloads before the new
# authority signs anything: two.test rotates fast (ca_ttl 120s: the next authority is prepared,
# and published on its bundle endpoint, at 60 s and signs from 100 s); one.test, fetching every
# 5 s (the refresh hint), must store it and a workload of one.test whose entry federates with
# two.test must be served it (FetchX509Bundles) while two.test still lists it as "prepared".
# Figures are printed, not asserted.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fed_lib.sh"

start_td one.test
start_td two.test '"ca_ttl": "120s", "default_x509_svid_ttl": "30s", "agent_svid_ttl": "30s"'
federate one.test two.test
start_agent_td one.test
s one.test entry create --spiffe-id spiffe://one.test/workload \
	--parent-id "${AGENT_ID_OF[one.test]}" --selector "unix:uid:$(id -u)" \
	--federates-with two.test >/dev/null
# wl_two_certs N: the workload is served two.test's bundle with N certificates.
wl_two_certs() {
	[ "$($PY "$SRC/tests/integration/fedwl.py" "${AGENT_SOCK_OF[one.test]}" x509bundles |
		$PY -c 'import json,sys; print(json.load(sys.stdin).get("spiffe://two.test", 0))')" = "$1" ]
}
wait_for 60 wl_two_certs 1 || fail "the workload is not served two.test's bundle"

# prepared_sha: the SHA-256 of two.test's prepared authority ("" while there is none).
prepared_sha() {
	curl -s "http://127.0.0.1:${HTTPP[two.test]}/status" | $PY -c '
import json, sys
a = [x for x in json.load(sys.stdin)["ca"]["authorities"] if x["state"] == "prepared"]
print(a[0]["sha256"] if a else "")'
}
has_prepared() { [ -n "$(prepared_sha)" ]; }
# fetched_has SHA: one.test's stored bundle of two.test holds the certificate with that SHA-256.
fetched_has() {
	s one.test bundle show --trust-domain two.test --output json | $PY -c '
import base64, hashlib, json, re, sys
pem = json.load(sys.stdin)["pem"]
ders = [base64.b64decode("".join(b.split())) for b in
        re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)]
sys.exit(0 if sys.argv[1] in [hashlib.sha256(d).hexdigest() for d in ders] else 1)' "$1"
}

t0=$SECONDS
wait_for 150 has_prepared || fail "two.test prepared no new authority"
sha=$(prepared_sha)
t1=$SECONDS
wait_for 60 fetched_has "$sha" || fail "one.test never stored two.test's new authority"
t2=$SECONDS
wait_for 60 wl_two_certs 2 || fail "one.test's workload was never served two.test's new authority"
t3=$SECONDS
[ "$(prepared_sha)" = "$sha" ] ||
	fail "two.test's new authority was activated before one.test's workload had it"
echo "figures: prepared after $((t1 - t0))s of waiting, in one.test's store $((t2 - t1))s later," \
	"at the workload $((t3 - t2))s after that, still prepared"
ok "a CA rotation in two.test reaches one.test's workloads before the new authority signs"

# two.test's bundle endpoint renewed its SVID (capped by the old authority's end) and restarted
# on the same socket; one.test's fetches go on succeeding.
wait_for 90 logged two.test "bundle endpoint: X509-SVID for spiffe://two.test/lanyard/server renewed" ||
	fail "two.test's bundle endpoint never renewed its SVID"
fetch_state() {
	s one.test federation show --trust-domain two.test --output json |
		$PY -c 'import json,sys; d=json.load(sys.stdin)["state"]; print(d["fetches"], d["failures"])'
}
read -r fetches failures <<<"$(fetch_state)"
more_fetches() { read -r f2 _ <<<"$(fetch_state)"; [ "$f2" -gt "$fetches" ]; }
s one.test federation refresh --trust-domain two.test >/dev/null
wait_for 30 more_fetches || fail "one.test stopped fetching"
read -r _ failures2 <<<"$(fetch_state)"
[ "$failures2" = 0 ] || fail "fetches failed across the endpoint's SVID renewal: $(grep refused "$T/server-one.test.log" | tail -2)"
ok "the bundle endpoint's SVID renewal is seamless for the fetcher ($fetches fetches, 0 failures)"
