#!/usr/bin/env bash
# Federation between two trust domains (issue #13): one.test and two.test, each a lanyard-server
# with an https_spiffe bundle endpoint, federate both ways and each stores the other's bundle.
# Attacks on the fetcher fail and keep the last good bundle: an endpoint presenting a SPIFFE ID
# other than the configured one; an endpoint (three.test, a fake under the test's control)
# serving a malformed document, an oversized one, an older sequence. `federation delete` removes
# the fetched bundle. The bundle endpoint answers 404/405 off GET /.
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/fed_lib.sh"

start_td one.test
start_td two.test

# The bundle endpoint itself.
code=$(curl -sk -o "$T/doc.json" -w '%{http_code}' "https://127.0.0.1:${EP[one.test]}/")
[ "$code" = 200 ] || fail "GET / answered $code"
$PY - "$T/doc.json" <<'PY' || fail "the bundle document is not a SPIFFE bundle"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["spiffe_refresh_hint"] == 5 and d["spiffe_sequence"] >= 1, d
assert any(k["use"] == "x509-svid" and len(k["x5c"]) == 1 for k in d["keys"]), d
assert any(k["use"] == "jwt-svid" and k["kid"] for k in d["keys"]), d
PY
[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:${EP[one.test]}/other")" = 404 ] ||
	fail "another path is not 404"
[ "$(curl -sk -o /dev/null -w '%{http_code}' -X POST "https://127.0.0.1:${EP[one.test]}/")" = 405 ] ||
	fail "POST is not 405"
echo | openssl s_client -connect "127.0.0.1:${EP[one.test]}" 2>/dev/null |
	openssl x509 -noout -ext subjectAltName | grep -qF 'URI:spiffe://one.test/lanyard/server' ||
	fail "the endpoint does not present spiffe://one.test/lanyard/server"
ok "bundle endpoint: GET / is the bundle, 404 and 405 elsewhere, SVID of the server's ID"

# Federate both ways; the initial bundles come out of band (bundle show).
federate one.test two.test
federate two.test one.test
s one.test federation show --trust-domain two.test --output json | $PY -c '
import json, sys
d = json.load(sys.stdin)
assert d["state"]["last_success"] > 0 and d["state"]["failures"] == 0, d' ||
	fail "federation show has no fetch state"
s one.test federation list | grep -q 'two.test' || fail "federation list does not list two.test"
curl -s "http://127.0.0.1:${HTTPP[one.test]}/metrics" >"$T/metrics"
grep -q 'lanyard_server_federation_fetches_total{trust_domain="two.test",result="ok"}' "$T/metrics" ||
	fail "no federation metrics"
ok "one.test and two.test fetched each other's bundle over https_spiffe"

# A bundle endpoint presenting another SPIFFE ID than configured is refused; the bundle stays.
seq=$(seq_of one.test two.test)
s one.test federation update --trust-domain two.test \
	--endpoint-spiffe-id spiffe://two.test/not-the-server >/dev/null
s one.test federation refresh --trust-domain two.test >/dev/null
wait_for 30 logged one.test "presented SPIFFE ID spiffe://two.test/lanyard/server, not spiffe://two.test/not-the-server" ||
	fail "a wrong endpoint SPIFFE ID was not refused"
seq_is one.test two.test "$seq" || fail "the last good bundle of two.test was not kept"
s one.test federation update --trust-domain two.test \
	--endpoint-spiffe-id spiffe://two.test/lanyard/server >/dev/null
last_ok() {
	s one.test federation show --trust-domain two.test --output json | $PY -c '
import json, sys
d = json.load(sys.stdin)["state"]
sys.exit(0 if "last_error" not in d else 1)'
}
wait_for 30 last_ok || fail "the right endpoint SPIFFE ID does not work again"
ok "a wrong endpoint SPIFFE ID is refused and the last good bundle kept; the right one works"

# three.test: a fake endpoint serving what the test wants.
mkdir -p "$T/fake"
FAKE_PORT=$(free_port)
$PY "$SRC/tests/integration/fake_bundle_endpoint.py" "$T/fake" three.test \
	spiffe://three.test/endpoint "$FAKE_PORT" >"$T/fake.log" 2>&1 &
PIDS+=("$!")
wait_for 20 test -s "$T/fake/valid.3.json" || fail "fake endpoint did not start"
cp "$T/fake/valid.2.json" "$T/fake/body"
wait_for 20 grep -q ready "$T/fake.log" || fail "fake endpoint is not ready"
s one.test federation create --trust-domain three.test \
	--bundle-endpoint-url "https://127.0.0.1:$FAKE_PORT/" \
	--endpoint-spiffe-id spiffe://three.test/endpoint --trust-bundle "$T/fake/ca.pem" >/dev/null
wait_for 30 seq_is one.test three.test 2 || fail "three.test's valid bundle was not fetched"

printf '{"keys":[{"use":"x509-svid","x5c":["not base64!"]}],"spiffe_sequence":9}' >"$T/fake/body"
s one.test federation refresh --trust-domain three.test >/dev/null
wait_for 30 logged one.test "bundle of three.test from https://127.0.0.1:$FAKE_PORT/ refused, last good bundle kept: malformed bundle document" ||
	fail "a malformed document was not refused"
seq_is one.test three.test 2 || fail "a malformed document replaced the bundle"

$PY -c 'import sys; sys.stdout.write("{\"keys\":[]" + " " * (2 << 20) + "}")' >"$T/fake/body"
s one.test federation refresh --trust-domain three.test >/dev/null
wait_for 30 logged one.test "refused, last good bundle kept: the response is larger than" ||
	fail "an oversized document was not refused"
seq_is one.test three.test 2 || fail "an oversized document replaced the bundle"

cp "$T/fake/valid.1.json" "$T/fake/body"
s one.test federation refresh --trust-domain three.test >/dev/null
wait_for 30 logged one.test "sequence 1 is older than the stored one (2)" ||
	fail "an older sequence was not refused"
seq_is one.test three.test 2 || fail "an older sequence replaced the bundle"

cp "$T/fake/valid.3.json" "$T/fake/body"
s one.test federation refresh --trust-domain three.test >/dev/null
wait_for 30 seq_is one.test three.test 3 || fail "a newer valid bundle was not taken after the refusals"
ok "malformed, oversized and older documents are refused with the last good bundle kept"

# Deleting a relationship removes the bundle fetched through it.
s one.test federation delete --trust-domain three.test >/dev/null
wait_for 10 no_bundle one.test three.test || fail "federation delete left the bundle"
s one.test federation show --trust-domain three.test >/dev/null 2>&1 &&
	fail "the deleted relationship is still shown"
has_bundle one.test two.test || fail "deleting three.test touched two.test"
ok "federation delete removes the relationship and its bundle"

# A bundle endpoint port in use: one clear error, exit 1.
mkdir -p "$T/clash"
cat >"$T/clash.json" <<JSON
{
  "trust_domain": "clash.test",
  "data_dir": "$T/clash/data",
  "bind_address": "127.0.0.1",
  "bind_port": 0,
  "admin_socket": "$T/clash/admin.sock",
  "http_port": 0,
  "bundle_endpoint_address": "127.0.0.1",
  "bundle_endpoint_port": ${EP[one.test]}
}
JSON
rc=0
timeout 30 "$BIN/lanyard-server" run --config "$T/clash.json" >"$T/clash.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a bundle endpoint port in use: exit $rc, not 1"
grep -q 'bundle endpoint (bundle_endpoint_address, bundle_endpoint_port): 127.0.0.1 port [0-9]*: cannot listen: Address already in use' "$T/clash.log" ||
	fail "no clear error for the port in use: $(cat "$T/clash.log")"
ok "a bundle endpoint port in use stops the server with one error naming the keys"

# https_web: the endpoint presents the operator's certificate; a key file others can read is
# refused at start.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$T/web.key" -out "$T/web.crt" 2>/dev/null ||
	fail "openssl cannot make a certificate"
chmod 644 "$T/web.key"
web='"bundle_endpoint_profile": "https_web", "bundle_endpoint_cert_file": "'"$T/web.crt"'", "bundle_endpoint_key_file": "'"$T/web.key"'"'
rc=0
( start_td web.test "$web" ) >"$T/web-start.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a bundle_endpoint_key_file readable by others was accepted"
grep -q "bundle_endpoint_key_file $T/web.key: readable by others" "$T/server-web.test.log" ||
	fail "no clear error for the readable key: $(tail -3 "$T/server-web.test.log")"
chmod 600 "$T/web.key"
start_td web2.test "$web"
curl -s --cacert "$T/web.crt" --resolve "localhost:${EP[web2.test]}:127.0.0.1" \
	"https://localhost:${EP[web2.test]}/" >"$T/web.json" || fail "the https_web endpoint is not reachable with its certificate"
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["keys"] and "spiffe_sequence" in d' "$T/web.json" ||
	fail "the https_web endpoint does not serve the bundle"
ok "https_web: the endpoint serves the bundle with the operator's certificate; a readable key is refused"

# Fetching from an https_web endpoint: authenticated by federation_web_ca_file (a private PKI;
# here the endpoint's own certificate) on one server, by the system store on another, where the
# same endpoint is refused and no bundle is stored.
rc=0
( start_td badca.test '"federation_web_ca_file": "'"$T/nowhere.pem"'"' ) >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a missing federation_web_ca_file was accepted"
grep -q "key 'federation_web_ca_file': cannot read $T/nowhere.pem" "$T/server-badca.test.log" ||
	fail "no clear error for federation_web_ca_file: $(tail -3 "$T/server-badca.test.log")"
start_td webfetch.test '"federation_web_ca_file": "'"$T/web.crt"'"'
for n in webfetch.test one.test; do
	s "$n" federation create --trust-domain web2.test --profile https_web \
		--bundle-endpoint-url "https://localhost:${EP[web2.test]}/" >/dev/null ||
		fail "$n: federation create (https_web)"
done
wait_for 30 has_bundle webfetch.test web2.test || fail "the https_web bundle was not fetched"
wait_for 30 logged one.test "federation: bundle of web2.test" ||
	fail "one.test did not report the refused https_web endpoint"
no_bundle one.test web2.test || fail "an endpoint the system store does not trust gave a bundle"
why=$(grep -F "federation: bundle of web2.test" "$T/server-one.test.log" | tail -n 1)
echo "# $why"
case "$why" in *certificate*) ;; *) fail "the refusal does not name the certificate: $why" ;; esac
ok "https_web fetch: trusted through federation_web_ca_file, refused against the system store"

# A relationship switched to https_web drops its https_spiffe members.
s one.test federation update --trust-domain two.test --profile https_web \
	--bundle-endpoint-url "https://localhost:${EP[two.test]}/" >/dev/null ||
	fail "cannot switch a relationship to https_web"
s one.test federation show --trust-domain two.test --output json | $PY -c '
import json, sys
d = json.load(sys.stdin)
assert d["bundle_endpoint_profile"] == "https_web" and "endpoint_spiffe_id" not in d, d' ||
	fail "the switched relationship kept its https_spiffe members"
ok "federation update switches a relationship to https_web"
