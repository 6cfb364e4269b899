#!/usr/bin/env bash
# CA rotation with a short ca_ttl: the next authority enters the bundle at half life (prepare),
# signs from five sixths (activate), and the old one leaves once expired (retire).
source "$(dirname "$0")/lib.sh"

write_server_config '"ca_ttl": "30s", "default_x509_svid_ttl": "10s", "agent_svid_ttl": "10s", "default_jwt_svid_ttl": "10s"'
start_server

count() { srv bundle show | grep -c 'BEGIN CERTIFICATE'; }
fps() { srv bundle show | $PY -c '
import sys,re,base64,hashlib
pem=sys.stdin.read()
for b in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S):
    print(hashlib.sha256(base64.b64decode("".join(b.split()))).hexdigest())'; }

count_is() { [ "$(count)" = "$1" ]; }
first_gone() { ! fps | grep -q "$first"; }

first=$(fps)
count_is 1 || fail "expected one authority at start"
wait_for 40 count_is 2 || fail "no authority prepared"
ok "next authority prepared and in the bundle"
wait_for 30 grep -q "is now active" "$T/server.log" || fail "no activation"
ok "prepared authority activated"
wait_for 30 first_gone || fail "old authority never left the bundle"
[ "$(count)" -ge 1 ] || fail "bundle became empty"
ok "old authority retired from the bundle"
