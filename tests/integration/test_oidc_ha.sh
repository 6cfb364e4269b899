#!/usr/bin/env bash
# OIDC discovery with two servers on one PostgreSQL database (one issuer behind a load balancer):
# each server publishes the JWT keys of both, so a token signed by either validates with the key
# set fetched from either. Skipped (77) where PostgreSQL is not installed, except under CI.
source "$(dirname "$0")/lib.sh"

$PY -c 'import jwt' 2>/dev/null || skip "python3-jwt is missing (deploy/install-deps.sh --test)"
start_pg
ISSUER="https://oidc.example.org"

declare -A OIDC_PORT
for n in a b; do
	OIDC_PORT[$n]=$(free_port)
	pg_server_config "$n" '"oidc_issuer": "'"$ISSUER"'",
  "oidc_discovery_address": "127.0.0.1",
  "oidc_discovery_port": '"${OIDC_PORT[$n]}"
	"$BIN/lanyard-server" run --config "$T/$n.json" >>"$T/server-$n.log" 2>&1 &
	PIDS+=("$!")
done

kids_of() { # SERVER: the sorted kids its /keys serves
	curl -sf --max-time 10 "http://127.0.0.1:${OIDC_PORT[$1]}/keys" |
		$PY -c 'import json,sys; print(" ".join(sorted(k["kid"] for k in json.load(sys.stdin)["keys"])))'
}
both_have_both() {
	local ka kb
	ka=$(kids_of a) && kb=$(kids_of b) && [ "$(wc -w <<<"$ka")" -ge 2 ] && [ "$ka" = "$kb" ]
}
wait_for 60 both_have_both || fail "the servers do not publish each other's keys: a: $(kids_of a); b: $(kids_of b)"
for n in a b; do
	grep -q "JWT kid" "$T/server-$n.log" || fail "no authority logged by $n"
	own=$(grep -o 'JWT kid [^)]*' "$T/server-$n.log" | head -n 1 | cut -d' ' -f3)
	for m in a b; do
		grep -qw -- "$own" <<<"$(kids_of $m)" || fail "server $m does not publish $n's key $own"
	done
done
ok "each server's /keys holds both servers' JWT keys: $(kids_of a)"
# The discovery document is the same on both (one issuer).
for n in a b; do
	curl -sf "http://127.0.0.1:${OIDC_PORT[$n]}/.well-known/openid-configuration" |
		$PY -c 'import json,sys; d=json.load(sys.stdin); assert d["issuer"]==sys.argv[1] and d["jwks_uri"]==sys.argv[1]+"/keys", d' "$ISSUER" ||
		fail "server $n: discovery document"
done
ok "both serve the same issuer and jwks_uri"
