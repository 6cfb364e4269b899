#!/usr/bin/env bash
# "x509 mint" and "jwt mint": SVIDs by hand for an admin. The X509-SVID's key is made by the CLI
# (only a CSR reaches the server), the SVID chains to the bundle and names the ID and DNS names
# asked for; --write writes the key 0600; IDs outside the trust domain or in the server's own
# namespace are refused as they are for entries.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || skip "openssl is not installed"

start_server
ID=spiffe://$TD/by-hand

# ---- x509 mint --output json: certificate, private_key, bundle
expect_rc 0 srv x509 mint --spiffe-id "$ID" --dns-name h.example.org --ttl 30m --output json
$PY - "$T/out.txt" "$T" <<'PY' || fail "x509 mint JSON: $(cat "$T/out.txt")"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"certificate", "private_key", "bundle"}, d.keys()
for k, label in (("certificate", "CERTIFICATE"), ("private_key", "PRIVATE KEY"), ("bundle", "CERTIFICATE")):
    assert f"-----BEGIN {label}-----" in d[k], k
    open(f"{sys.argv[2]}/{k}.pem", "w").write(d[k])
PY
openssl verify -CAfile "$T/bundle.pem" "$T/certificate.pem" >/dev/null || fail "minted SVID does not chain to the bundle"
openssl x509 -in "$T/certificate.pem" -noout -ext subjectAltName >"$T/san.txt"
grep -q "URI:$ID" "$T/san.txt" && grep -q "DNS:h.example.org" "$T/san.txt" || fail "SANs: $(cat "$T/san.txt")"
[ "$(openssl x509 -in "$T/certificate.pem" -noout -pubkey)" = "$(openssl pkey -in "$T/private_key.pem" -pubout)" ] ||
	fail "the private key does not match the certificate"
end=$(date -d "$(openssl x509 -in "$T/certificate.pem" -noout -enddate | cut -d= -f2)" +%s)
left=$((end - $(date +%s)))
[ "$left" -le 1800 ] && [ "$left" -ge 1500 ] || fail "--ttl 30m gave $left s"
ok "x509 mint: SVID chains to the bundle, SANs as asked, key matches, TTL honoured"

# ---- --write DIR: files, the key 0600
mkdir "$T/out"
expect_rc 0 srv x509 mint --spiffe-id "$ID" --write "$T/out"
for f in svid.pem key.pem bundle.pem; do [ -s "$T/out/$f" ] || fail "--write: no $f"; done
[ "$(stat -c %a "$T/out/key.pem")" = 600 ] || fail "key.pem mode $(stat -c %a "$T/out/key.pem")"
openssl verify -CAfile "$T/out/bundle.pem" "$T/out/svid.pem" >/dev/null || fail "--write: SVID does not verify"
! grep -q "PRIVATE KEY" "$T/server.log" || fail "key material in the server log"
# The API takes a CSR, never hands out a key: without one it refuses.
code=$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$ADMIN" -X POST http://l/v1/svids/x509 \
	-d "{\"spiffe_id\":\"$ID\"}")
[ "$code" = 400 ] && grep -q 'csr.* is required' "$T/body" || fail "mint without CSR: $code $(cat "$T/body")"
ok "x509 mint --write: svid.pem, key.pem (0600), bundle.pem; no key in the server's log or API"

# ---- refused identities (the attack) while a legitimate mint keeps working
expect_rc 1 srv x509 mint --spiffe-id "spiffe://$TD/lanyard/server"
grep -q "reserved" "$T/err.txt" || fail "reserved ID: $(cat "$T/err.txt")"
expect_rc 1 srv jwt mint --spiffe-id "spiffe://$TD/lanyard/agent/x" --audience a
grep -q "reserved" "$T/err.txt" || fail "reserved ID (jwt): $(cat "$T/err.txt")"
expect_rc 1 srv x509 mint --spiffe-id "spiffe://other.org/w"
grep -q "trust domain" "$T/err.txt" || fail "foreign ID: $(cat "$T/err.txt")"
expect_rc 1 srv x509 mint --spiffe-id "$ID" --dns-name "bad name!"
grep -q "dns" "$T/err.txt" || fail "bad DNS name: $(cat "$T/err.txt")"
expect_rc 1 srv jwt mint --spiffe-id "$ID"
grep -q -- "--audience is required" "$T/err.txt" || fail "no audience: $(cat "$T/err.txt")"
expect_rc 0 srv x509 mint --spiffe-id "$ID" --output json
ok "mint refuses reserved and foreign IDs and bad DNS names; legitimate mints still work"

# ---- jwt mint: {"token": JWT} with sub, aud and exp as asked, signed by a bundle key
expect_rc 0 srv jwt mint --spiffe-id "$ID" --audience svc-a --audience svc-b --ttl 2m --output json
srv bundle show --format spiffe >"$T/jwks.json"
$PY - "$T/out.txt" "$T/jwks.json" "$ID" <<'PY' || fail "jwt mint: $(cat "$T/out.txt")"
import base64, json, sys, time
d = json.load(open(sys.argv[1]))
assert set(d) == {"token"}, d
h, p, s = d["token"].split(".")
dec = lambda x: json.loads(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
hdr, claims = dec(h), dec(p)
assert claims["sub"] == sys.argv[3], claims
assert sorted(claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]) == ["svc-a", "svc-b"], claims
assert 0 < claims["exp"] - time.time() <= 120, claims
kids = [k.get("kid") for k in json.load(open(sys.argv[2]))["keys"]]
assert hdr["kid"] in kids, (hdr, kids)
PY
mkdir "$T/jwt"
expect_rc 0 srv jwt mint --spiffe-id "$ID" --audience svc-a --write "$T/jwt"
[ "$(stat -c %a "$T/jwt/token")" = 600 ] && [ "$(tr -cd . <"$T/jwt/token" | wc -c)" = 2 ] ||
	fail "jwt --write: $(ls -l "$T/jwt")"
srv jwt mint --spiffe-id "$ID" --audience svc-a | grep -qE '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
	fail "jwt mint text output"
ok "jwt mint: sub, aud, exp as asked, kid in the bundle; --write token 0600"
