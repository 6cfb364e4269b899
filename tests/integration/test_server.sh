#!/usr/bin/env bash
# lanyard-server end to end through its CLI and curl: tokens, entries, bundle, restart, a second
# instance refused, bad config refused.
source "$(dirname "$0")/lib.sh"

# ---- bad configuration is refused with the key, the value and the file named
echo '{"trust_domain":"example.org","bind_port":99999}' >"$T/bad.json"
if "$BIN/lanyard-server" run --config "$T/bad.json" 2>"$T/err.txt"; then fail "bad config accepted"; fi
grep -q "bind_port" "$T/err.txt" && grep -q 99999 "$T/err.txt" && grep -q "$T/bad.json" "$T/err.txt" ||
	fail "bad config error unclear: $(cat "$T/err.txt")"
echo '{"trust_domain":"example.org","bogus":1}' >"$T/bad.json"
if "$BIN/lanyard-server" run --config "$T/bad.json" 2>"$T/err.txt"; then fail "unknown key accepted"; fi
grep -q "unknown key 'bogus'" "$T/err.txt" || fail "unknown key error unclear: $(cat "$T/err.txt")"
ok "bad configs refused with clear errors"

start_server
[ "$(stat -c %a "$ADMIN")" = 600 ] || fail "admin socket mode is $(stat -c %a "$ADMIN")"
for f in "$T"/server/data/ca/*.key; do
	[ "$(stat -c %a "$f")" = 600 ] || fail "key file $f mode $(stat -c %a "$f")"
done
ok "admin socket and CA keys are 0600"

# ---- a second server on the same admin socket is refused cleanly
sed "s#$T/server/data#$T/server/data2#; s#\"bind_port\": $SERVER_PORT#\"bind_port\": 0#" "$T/server.json" >"$T/server2.json"
if timeout 20 "$BIN/lanyard-server" run --config "$T/server2.json" 2>"$T/err2.txt"; then
	fail "second server started"
fi
grep -q "already serving" "$T/err2.txt" || fail "second server error unclear: $(cat "$T/err2.txt")"
srv bundle show >/dev/null || fail "first server hurt by the second"
ok "second server on the same admin socket refused"

# ---- tokens
tok_json=$(srv token generate --output json --spiffe-id "spiffe://$TD/node/alias" --ttl 120)
echo "$tok_json" | $PY -c '
import json,sys,time
d=json.load(sys.stdin)
assert len(d["token"])>=16, d
assert d["spiffe_id"]=="spiffe://example.org/node/alias", d
assert abs(d["expires_at"]-time.time()-120)<10, d'
srv token generate | grep -q '^Token: ' || fail "text token output"
ok "join tokens"

# ---- entries
e=$(srv entry create --output json --spiffe-id "spiffe://$TD/web" --parent-id "spiffe://$TD/node/alias" \
	--selector unix:uid:1000 --selector unix:gid:1000 --x509-svid-ttl 120 --dns-name web.example.org --hint web)
id=$(echo "$e" | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d["selectors"]==["unix:gid:1000","unix:uid:1000"], d; assert d["x509_svid_ttl"]==120; print(d["id"])')
srv entry show --output json --id "$id" | $PY -c 'import json,sys; d=json.load(sys.stdin); assert len(d["entries"])==1 and d["entries"][0]["hint"]=="web", d'
srv entry show --output json --selector unix:uid:1000 | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==1'
srv entry show --output json --selector unix:uid:9 | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==0'
srv entry show --output json --parent-id "spiffe://$TD/node/alias" | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==1'
if srv entry create --spiffe-id "spiffe://$TD/web" --parent-id "spiffe://$TD/node/alias" \
	--selector unix:uid:1000 --selector unix:gid:1000 2>"$T/err.txt"; then fail "duplicate entry accepted"; fi
grep -qi "already exists" "$T/err.txt" || fail "duplicate error unclear: $(cat "$T/err.txt")"
if srv entry create --spiffe-id "spiffe://$TD/bad path" --parent-id "spiffe://$TD/x" --selector a:b 2>"$T/err.txt"; then
	fail "invalid SPIFFE ID accepted"; fi
grep -q "spiffe_id\|SPIFFE ID" "$T/err.txt" || fail "invalid ID error unclear: $(cat "$T/err.txt")"
if srv entry create --spiffe-id "spiffe://other.org/x" --parent-id "spiffe://$TD/x" --selector a:b 2>"$T/err.txt"; then
	fail "foreign trust domain accepted"; fi
if srv entry create --spiffe-id "spiffe://$TD/x" --parent-id "spiffe://$TD/x" 2>"$T/err.txt"; then
	fail "entry without selectors accepted"; fi
rev1=$(srv entry show --output json --id "$id" | $PY -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["revision"])')
srv entry update --output json --id "$id" --x509-svid-ttl 300 | $PY -c 'import json,sys; d=json.load(sys.stdin); assert d["x509_svid_ttl"]==300, d'
rev2=$(srv entry show --output json --id "$id" | $PY -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["revision"])')
[ "$rev1" != "$rev2" ] || fail "revision did not change on update"
ok "entry create/show/update with validation"

# ---- the admin API with curl
code=$(curl -s -o "$T/out.json" -w '%{http_code}' --unix-socket "$ADMIN" -X POST -d '{"spiffe_id":' http://localhost/v1/entries)
[ "$code" = 400 ] || fail "bad JSON gave $code"
$PY -c 'import json,sys; assert "error" in json.load(open(sys.argv[1]))' "$T/out.json"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$ADMIN" http://localhost/v1/entries/nonexistent)
[ "$code" = 404 ] || fail "missing entry gave $code"
curl -sf --unix-socket "$ADMIN" http://localhost/v1/entries | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==1'
ok "admin API over curl"

# ---- the bundle
srv bundle show >"$T/bundle.pem"
openssl x509 -in "$T/bundle.pem" -noout -text >"$T/bundle.txt" || fail "bundle is not PEM"
grep -q "CA:TRUE" "$T/bundle.txt" || fail "bundle cert is not a CA"
grep -q "URI:spiffe://$TD" "$T/bundle.txt" || fail "bundle cert lacks the trust domain URI SAN"
grep -q "Certificate Sign" "$T/bundle.txt" || fail "bundle cert lacks keyCertSign"
srv bundle show --format spiffe | $PY -c '
import json,sys
d=json.load(sys.stdin)
uses=sorted(k["use"] for k in d["keys"])
assert uses==["jwt-svid","x509-svid"], uses
for k in d["keys"]:
    if k["use"]=="x509-svid": assert "kid" not in k and len(k["x5c"])==1, k
    else: assert k["kid"], k
assert isinstance(d["spiffe_sequence"], int)'
ok "bundle show (PEM checked with openssl, SPIFFE JSON)"

# ---- restart keeps everything
fp1=$(openssl x509 -in "$T/bundle.pem" -noout -fingerprint -sha256)
stop_server
start_server
srv entry show --output json --id "$id" | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==1'
fp2=$(srv bundle show | openssl x509 -noout -fingerprint -sha256)
[ "$fp1" = "$fp2" ] || fail "CA changed across restart"
ok "restart keeps entries and the CA"

# ---- a key file readable by others is refused
stop_server
chmod 644 "$T"/server/data/ca/*.jwt.key
if timeout 20 "$BIN/lanyard-server" run --config "$T/server.json" 2>"$T/err.txt"; then fail "started with a 0644 key"; fi
grep -q "readable by group or others" "$T/err.txt" || fail "key mode error unclear: $(cat "$T/err.txt")"
chmod 600 "$T"/server/data/ca/*.key
start_server
ok "world-readable CA key refused"

srv entry delete --id "$id" >/dev/null
srv entry show --output json | $PY -c 'import json,sys; assert len(json.load(sys.stdin)["entries"])==0'
ok "entry delete"

stop_server -TERM
grep -q "lanyard-server stopped" "$T/server.log" || fail "no clean shutdown"
ok "SIGTERM stops cleanly"
