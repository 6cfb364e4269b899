#!/usr/bin/env bash
# The admin API over mutual TLS (admin_bind_port, issue #16 "Make --admin real"): a workload whose
# entry is marked admin manages entries with its own X509-SVID, fetched by the CLI from a real
# agent's Workload API (--server-url). The attacks are performed and fail: a non-admin workload
# SVID (403, named reason), the agent's own SVID, a client without a certificate, a certificate
# of another CA; removing --admin (then deleting the entry) refuses the same workload within a
# bounded wait. The Unix socket keeps working throughout, and /metrics counts the refusals.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to run a second workload as another uid"
command -v setpriv >/dev/null || skip "setpriv missing"
command -v openssl >/dev/null || skip "openssl missing"
command -v curl >/dev/null || skip "curl missing"

NOBODY=65534
ADMIN_PORT=$(free_port)
mkdir -p "$T/server" && chmod 755 "$T/server"
write_server_config "\"admin_bind_address\": \"127.0.0.1\", \"admin_bind_port\": $ADMIN_PORT"
start_server_and_agent
chmod 755 "$T/agent" 2>/dev/null || true
URL="https://127.0.0.1:$ADMIN_PORT"
ADMIN_ID="spiffe://$TD/ci/controller"
USER_ID="spiffe://$TD/ci/nobody"

srv entry create --spiffe-id "$ADMIN_ID" --parent-id "$AGENT_ID" --selector "unix:uid:0" \
	--admin >/dev/null || fail "cannot create the admin entry"
srv entry create --spiffe-id "$USER_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$NOBODY" >/dev/null || fail "cannot create the non-admin entry"
export SPIFFE_ENDPOINT_SOCKET="unix://$AGENT_SOCK"

remote() { "$BIN/lanyard-server" "$@" --server-url "$URL"; }
wait_for 30 remote entry count >/dev/null || fail "the admin workload never got through"

# ---- the admin workload manages entries over mutual TLS
out=$(remote entry create --spiffe-id "spiffe://$TD/ci/made-remotely" --parent-id "$AGENT_ID" \
	--selector unix:uid:4242 --output json) || fail "remote entry create failed"
rid=$(echo "$out" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
remote entry show --output json | grep -q "spiffe://$TD/ci/made-remotely" ||
	fail "remote entry show does not list the new entry"
srv entry show --output json | grep -q "spiffe://$TD/ci/made-remotely" ||
	fail "the entry made remotely is not seen on the socket"
remote entry delete --id "$rid" >/dev/null || fail "remote entry delete failed"
! srv entry show --output json | grep -q "made-remotely" || fail "the deleted entry is still there"
ok "an admin entry's workload creates, lists and deletes entries over --server-url"

# ---- --client-spiffe-id: the named SVID, or a clear error
remote entry count --client-spiffe-id "$ADMIN_ID" >/dev/null || fail "--client-spiffe-id refused"
expect_rc 1 remote entry count --client-spiffe-id "spiffe://$TD/ci/not-mine"
grep -q "no such X509-SVID" "$T/err.txt" || fail "unclear error: $(cat "$T/err.txt")"
expect_rc 1 env -u SPIFFE_ENDPOINT_SOCKET "$BIN/lanyard-server" entry count --server-url "$URL" \
	--workload-socket "$T/nonexistent.sock"
grep -q "Workload API" "$T/err.txt" || fail "unclear no-socket error: $(cat "$T/err.txt")"
ok "--client-spiffe-id selects, a missing SVID or socket is a clear error"

# ---- attack: a workload whose entry is not admin
rc=0
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$BIN/lanyard-server" entry create \
	--spiffe-id "spiffe://$TD/ci/evil" --parent-id "$AGENT_ID" --selector unix:uid:0 \
	--server-url "$URL" >"$T/out.txt" 2>"$T/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "a non-admin workload was served: $(cat "$T/out.txt")"
grep -q "not an admin entry" "$T/err.txt" || fail "no named reason: $(cat "$T/err.txt")"
echo "  non-admin: $(cat "$T/err.txt")"
! srv entry show --output json | grep -q "ci/evil" || fail "the non-admin created an entry"
ok "a non-admin workload SVID is refused (403, not an admin entry)"

# ---- attack: the agent's own SVID
AD="$T/agent/data"
code=$(curl -sk -o "$T/agent_try.json" -w '%{http_code}' --cert "$AD/agent_svid.pem" \
	--key "$AD/agent_key.pem" "$URL/v1/entries") || true
[ "$code" = 403 ] || fail "the agent's SVID got HTTP $code: $(cat "$T/agent_try.json")"
grep -q "never admin" "$T/agent_try.json" || fail "no named reason: $(cat "$T/agent_try.json")"
ok "an agent SVID is refused (403: $(cat "$T/agent_try.json"))"

# ---- attack: no client certificate
rc=0
curl -sk -o "$T/nocert.json" -w '%{http_code}' "$URL/v1/entries" >"$T/nocert.code" 2>&1 || rc=$?
code=$(cat "$T/nocert.code")
[ "$rc" != 0 ] || fail "a client without a certificate got HTTP $code"
! grep -q "spiffe://" "$T/nocert.json" 2>/dev/null || fail "entries leaked without a certificate"
# TLS 1.3: the client's side of the handshake ends before the server has read its (missing)
# certificate, so curl learns of the abort on its first read (exit 52 or 56), never a 403.
ok "a client without a certificate fails the handshake (curl exit $rc, HTTP '$code')"

# ---- attack: a certificate of another CA with an admin's SPIFFE ID
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil_ca.key" \
	-out "$T/evil_ca.pem" -subj "/CN=evil" -days 1 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" \
	-out "$T/evil.csr" -subj "/CN=x" 2>/dev/null
printf 'subjectAltName=URI:%s\nbasicConstraints=CA:FALSE\n' "$ADMIN_ID" >"$T/evil.ext"
openssl x509 -req -in "$T/evil.csr" -CA "$T/evil_ca.pem" -CAkey "$T/evil_ca.key" \
	-CAcreateserial -days 1 -extfile "$T/evil.ext" -out "$T/evil.pem" 2>/dev/null
code=$(curl -sk -o "$T/evil_try.json" -w '%{http_code}' --cert "$T/evil.pem" --key "$T/evil.key" \
	"$URL/v1/entries") || true
[ "$code" = 403 ] || fail "a certificate of another CA got HTTP $code"
grep -q "untrusted chain" "$T/evil_try.json" || fail "no named reason: $(cat "$T/evil_try.json")"
ok "a certificate of another CA is refused (403, untrusted chain)"

# ---- legitimate clients keep working after the attacks
remote entry count >/dev/null || fail "the admin workload was refused after the attacks"
srv entry count >/dev/null || fail "the socket stopped working"
ok "the admin workload and the socket keep working"

# ---- revocation: --admin=false, then deleting the entry
aid=$(srv entry show --spiffe-id "$ADMIN_ID" --output json |
	$PY -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["id"])')
srv entry update --id "$aid" --admin=false >/dev/null || fail "entry update --admin=false failed"
refused() { ! remote entry count >/dev/null 2>&1; }
start=$SECONDS
wait_for 30 refused || fail "still served 30 s after --admin=false"
echo "  refused $((SECONDS - start)) s after --admin=false"
msg=$(remote entry count 2>&1) && fail "served after revocation"
echo "$msg" | grep -q "not an admin entry" || fail "no named reason after revocation: $msg"
srv entry update --id "$aid" --admin >/dev/null
wait_for 30 remote entry count >/dev/null || fail "not served again after --admin"
srv entry delete --id "$aid" >/dev/null || fail "entry delete failed"
start=$SECONDS
wait_for 30 refused || fail "still served 30 s after the entry was deleted"
echo "  refused $((SECONDS - start)) s after entry delete"
srv entry count >/dev/null || fail "the socket stopped working"
ok "removing --admin or the entry revokes access; the socket keeps working"

# ---- /metrics counts the refusals by reason
m=$(curl -s "http://127.0.0.1:$SERVER_HTTP_PORT/metrics")
for r in ok not_admin reserved_identity untrusted_chain; do
	v=$(echo "$m" | grep "^lanyard_server_admin_tls_requests_total{result=\"$r\"}" | awk '{print $2}')
	[ -n "$v" ] && [ "$v" != 0 ] || fail "metric for $r is '${v}'"
done
echo "$m" | grep '^lanyard_server_admin_tls_requests_total' | sed 's/^/  /'
grep -q "admin TLS: refused a client" "$T/server.log" || fail "refusals not logged"
ok "refusals counted in /metrics by reason and logged"

# ---- bind failure: one clear error naming the keys, exit 1 (the port: the running server's
# operator port, so it is surely taken)
mkdir -p "$T/second"
cat >"$T/second.json" <<JSON
{
  "trust_domain": "$TD",
  "data_dir": "$T/second/data",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
  "admin_socket": "$T/second/admin.sock",
  "admin_bind_address": "127.0.0.1",
  "admin_bind_port": $SERVER_HTTP_PORT
}
JSON
rc=0
timeout 60 "$BIN/lanyard-server" run --config "$T/second.json" >"$T/bad.log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "admin_bind_address, admin_bind_port" "$T/bad.log" ||
	fail "port taken: exit $rc: $(cat "$T/bad.log")"
[ ! -S "$T/second/admin.sock" ] || fail "the admin socket was left behind"
ok "admin port taken: exit 1 naming the keys ($(grep -m1 admin_bind "$T/bad.log"))"
