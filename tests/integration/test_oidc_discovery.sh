#!/usr/bin/env bash
# OIDC discovery: a JWT-SVID fetched from the Workload API is validated by an independent JOSE
# implementation (PyJWT) that knows nothing but the issuer URL, over plain HTTP (with the issuer
# under a path, as behind an ingress) and over HTTPS; wrong paths and methods are refused; a
# prepared JWT key is published before it signs; bad certificate or key files and a port in use
# stop the server with a message naming them.
source "$(dirname "$0")/lib.sh"

$PY -c 'import jwt' 2>/dev/null || skip "python3-jwt is missing (deploy/install-deps.sh --test)"
command -v openssl >/dev/null || skip "openssl is missing"
CHECK="$SRC/tests/integration/oidc_check.py"
OIDC_PORT=$(free_port)
SHORT_CA='"ca_ttl": "30s", "default_x509_svid_ttl": "10s", "agent_svid_ttl": "10s", "default_jwt_svid_ttl": "10s"'

jwt_fetch() { # AUDIENCE: the token the agent serves for it, into $T/token
	"$BIN/lanyard-agent" api fetch jwt --socket "$AGENT_SOCK" --audience "$1" --output json |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["svids"][0]["svid"])' >"$T/token"
}
kids() { # the kids of the JWK Set
	$PY "$CHECK" keys "$ISSUER" ${CAFILE:+--cafile "$CAFILE"} |
		$PY -c 'import json,sys; print(" ".join(k["kid"] for k in json.load(sys.stdin)["keys"]))'
}
token_kid() {
	$PY -c 'import jwt,sys; print(jwt.get_unverified_header(open(sys.argv[1]).read().strip())["kid"])' "$T/token"
}

ID="spiffe://$TD/oidc/web"
fresh_start() { # SERVER-CONFIG: a new server and agent, an entry for this uid
	rm -rf "$T/server" "$T/agent"
	write_server_config "$1"
	start_server_and_agent
	srv entry create --spiffe-id "$ID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" \
		>/dev/null
}

# ---- plain HTTP, the issuer under a path (an ingress in front, TLS terminated there)
ISSUER="http://127.0.0.1:$OIDC_PORT/lanyard"
fresh_start "$SHORT_CA, \"oidc_issuer\": \"$ISSUER\", \"oidc_discovery_address\": \"127.0.0.1\", \"oidc_discovery_port\": $OIDC_PORT"
wait_for 30 jwt_fetch aud-http || fail "no JWT-SVID from the Workload API"
out=$($PY "$CHECK" validate "$ISSUER" aud-http "$T/token") || fail "PyJWT refused the JWT-SVID"
grep -q "\"sub\": \"$ID\"" <<<"$out" || fail "unexpected claims: $out"
ok "HTTP: PyJWT validates the JWT-SVID from discovery + JWKS (iss, aud, signature): $out"
# The same documents at the root (an ingress that strips the prefix).
st=$($PY "$CHECK" status "http://127.0.0.1:$OIDC_PORT/keys" GET)
[ "${st%% *}" = 200 ] || fail "/keys at the root: $st"

# ---- refusals
st=$($PY "$CHECK" status "http://127.0.0.1:$OIDC_PORT/lanyard/secret" GET)
[ "${st%% *}" = 404 ] || fail "unknown path answered $st"
st=$($PY "$CHECK" status "http://127.0.0.1:$OIDC_PORT/.well-known/openid-configuration" POST)
[ "$st" = "405 GET, HEAD" ] || fail "POST answered $st"
st=$($PY "$CHECK" status "http://127.0.0.1:$OIDC_PORT/keys" DELETE)
[ "${st%% *}" = 405 ] || fail "DELETE answered $st"
st=$($PY "$CHECK" status "http://127.0.0.1:$OIDC_PORT/keys" HEAD)
[ "${st%% *}" = 200 ] || fail "HEAD answered $st"
ok "unknown paths 404, other methods 405 with Allow, HEAD 200"
# /metrics is rebuilt every second.
metric_is() { curl -sf "http://127.0.0.1:$SERVER_HTTP_PORT/metrics" | grep -Eq "$1"; }
wait_for 10 metric_is '^lanyard_server_oidc_requests_total\{path="keys",code="405"\} 1$' ||
	fail "no 405 counted"
metric_is '^lanyard_server_oidc_jwks_keys [1-9]' || fail "no JWKS key gauge"
ok "/metrics counts the answers and the published keys"

# ---- rotation: the next authority's JWT key is in the JWK Set before it signs. Each round
# fetches the key set, then a fresh token (a new audience: never from the agent's cache). A kid
# that is in the set while a token fetched after it is signed by another key was published
# before it signed; once a token of that kid appears, it must validate with that earlier set.
declare -A signed=() prepared=()
rotated=""
for i in $(seq 1 90); do
	$PY "$CHECK" keys "$ISSUER" >"$T/keys-$i.json" || fail "cannot fetch the key set"
	jwt_fetch "aud-rot-$i" || fail "no JWT-SVID in round $i"
	k=$(token_kid)
	if [ -n "${prepared[$k]:-}" ]; then
		$PY "$CHECK" validate "$ISSUER" "aud-rot-$i" "$T/token" \
			--keys-file "${prepared[$k]}" >/dev/null ||
			fail "a token of key $k fails with the key set published before it signed"
		rotated=$k
		break
	fi
	signed[$k]=1
	for kid in $($PY -c 'import json,sys; print(" ".join(k["kid"] for k in json.load(open(sys.argv[1]))["keys"]))' "$T/keys-$i.json"); do
		[ -z "${signed[$kid]:-}" ] && [ -z "${prepared[$kid]:-}" ] && prepared[$kid]="$T/keys-$i.json"
	done
	sleep 1
done
[ -n "$rotated" ] || fail "no prepared key was seen in the key set and then signing"
ok "rotation: key $rotated published before it signed; its tokens validate with that key set"
stop_agent
stop_server

# ---- HTTPS
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$T/oidc.key" -out "$T/oidc.crt" 2>/dev/null
chmod 600 "$T/oidc.key"
ISSUER="https://127.0.0.1:$OIDC_PORT"
CAFILE="$T/oidc.crt"
tls_cfg() { # CERT KEY
	echo "\"oidc_issuer\": \"$ISSUER\", \"oidc_discovery_address\": \"127.0.0.1\", \"oidc_discovery_port\": $OIDC_PORT, \"oidc_discovery_cert_file\": \"$1\", \"oidc_discovery_key_file\": \"$2\""
}
fresh_start "$(tls_cfg "$T/oidc.crt" "$T/oidc.key")"
wait_for 30 jwt_fetch aud-https || fail "no JWT-SVID over HTTPS"
out=$($PY "$CHECK" validate "$ISSUER" aud-https "$T/token" --cafile "$CAFILE") ||
	fail "PyJWT refused the JWT-SVID over HTTPS"
ok "HTTPS: PyJWT validates the JWT-SVID over TLS: $out"
# A renewed certificate (the files replaced, as cert-manager or a Secret update does) is served
# without a restart.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=renewed \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$T/new.key" -out "$T/new.crt" 2>/dev/null
chmod 600 "$T/new.key"
cp "$T/new.key" "$T/oidc.key.tmp" && mv "$T/oidc.key.tmp" "$T/oidc.key"
cp "$T/new.crt" "$T/oidc.crt.tmp" && mv "$T/oidc.crt.tmp" "$T/oidc.crt"
renewed() { $PY "$CHECK" validate "$ISSUER" aud-https "$T/token" --cafile "$T/new.crt"; }
wait_for 30 renewed >/dev/null || fail "the renewed certificate is not served"
grep -q "serving the renewed certificate" "$T/server.log" || fail "no log line for the renewal"
wait_for 10 metric_is '^lanyard_server_oidc_certificate_reloads_total 1$' ||
	fail "reload not counted"
ok "HTTPS: a renewed certificate is served without a restart"
if curl -s "http://127.0.0.1:$OIDC_PORT/keys" -o /dev/null --max-time 5 -w '%{http_code}' |
	grep -q 200; then
	fail "the HTTPS endpoint answered plain HTTP"
fi
stop_agent
stop_server

# ---- bad files and a busy port stop the server, naming the problem
expect_refusal() { # WHAT PATTERN EXTRA-CONFIG
	write_server_config "$3"
	local rc=0
	timeout 30 "$BIN/lanyard-server" run --config "$T/server.json" >"$T/refused.log" 2>&1 || rc=$?
	[ $rc = 1 ] || fail "$1: exit status $rc, expected 1: $(tail -n 3 "$T/refused.log")"
	grep -q -- "$2" "$T/refused.log" || fail "$1: no message matching '$2': $(tail -n 3 "$T/refused.log")"
}
openssl ecparam -name prime256v1 -genkey -noout -out "$T/other.key" 2>/dev/null
chmod 600 "$T/other.key"
echo "not a certificate" >"$T/garbage.crt"
cp "$T/oidc.key" "$T/open.key"
chmod 644 "$T/open.key"
expect_refusal "missing cert" "oidc_discovery_cert_file $T/nope.crt: cannot read" \
	"$(tls_cfg "$T/nope.crt" "$T/oidc.key")"
expect_refusal "garbage cert" "oidc_discovery_cert_file $T/garbage.crt: no PEM certificate" \
	"$(tls_cfg "$T/garbage.crt" "$T/oidc.key")"
expect_refusal "mismatched key" "is not the key of the certificate" \
	"$(tls_cfg "$T/oidc.crt" "$T/other.key")"
expect_refusal "world-readable key" "others can read it" "$(tls_cfg "$T/oidc.crt" "$T/open.key")"
expect_refusal "no issuer" "'oidc_issuer' is required" "\"oidc_discovery_port\": $OIDC_PORT"
expect_refusal "bad issuer" "key 'oidc_issuer'" "\"oidc_issuer\": \"ftp://x\""
expect_refusal "cert without a port" "only used with oidc_discovery_port" \
	"\"oidc_discovery_cert_file\": \"$T/oidc.crt\", \"oidc_discovery_key_file\": \"$T/oidc.key\""
expect_refusal "cert without key" "go together" \
	"\"oidc_issuer\": \"$ISSUER\", \"oidc_discovery_port\": $OIDC_PORT, \"oidc_discovery_cert_file\": \"$T/oidc.crt\""
$PY -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$OIDC_PORT" &
PIDS+=("$!")
sleep 0.5
expect_refusal "port in use" "OIDC discovery: cannot listen" \
	"\"oidc_issuer\": \"http://127.0.0.1:$OIDC_PORT\", \"oidc_discovery_address\": \"127.0.0.1\", \"oidc_discovery_port\": $OIDC_PORT"
ok "bad cert/key files, a missing or bad issuer and a busy port: exit 1 naming the cause"
