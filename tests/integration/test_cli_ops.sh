#!/usr/bin/env bash
# The CLIs' habits: --help on every command and subcommand, a bare group lists its subcommands,
# SPIRE-style single-dash flags get "did you mean", SPIFFE_ENDPOINT_SOCKET in both unix: forms,
# entry/agent count, an update that changes nothing keeps the revision, --downstream refused
# and --admin stored and shown.
source "$(dirname "$0")/lib.sh"

# ---- --help everywhere, exit 0, usage on stdout
for c in "run" "token" "entry" "agent" "bundle" "token generate" "entry create" "entry show" \
	"entry update" "entry delete" "entry count" "agent list" "agent show" "agent count" \
	"agent evict" "agent ban" "bundle show" "x509" "x509 mint" "jwt" "jwt mint"; do
	# shellcheck disable=SC2086
	expect_rc 0 "$BIN/lanyard-server" $c --help
	grep -qi "usage" "$T/out.txt" || fail "lanyard-server $c --help printed no usage"
done
for c in "run" "api" "api fetch" "api fetch x509" "api fetch jwt" "api fetch bundles" \
	"api validate" "api validate jwt" "api watch"; do
	# shellcheck disable=SC2086
	expect_rc 0 "$BIN/lanyard-agent" $c --help
	grep -qi "usage" "$T/out.txt" || fail "lanyard-agent $c --help printed no usage"
done
grep -q -- "--timeout" <("$BIN/lanyard-agent" api fetch x509 --help) || fail "--timeout not in usage"
ok "--help on every command and subcommand"

# ---- a bare group lists its subcommands (exit 1: nothing was done)
expect_rc 1 "$BIN/lanyard-server" entry
for s in create show update delete count; do grep -q "$s" "$T/err.txt" || fail "bare entry: no $s"; done
expect_rc 1 "$BIN/lanyard-agent" api fetch
for s in x509 jwt bundles; do grep -q "fetch $s" "$T/err.txt" || fail "bare api fetch: no $s"; done
ok "bare groups list their subcommands"

start_server

# ---- SPIRE-style flags
expect_rc 1 "$BIN/lanyard-server" entry create -spiffeID spiffe://$TD/w -parentID spiffe://$TD/a \
	-selector unix:uid:0 --socket "$ADMIN"
grep -q "did you mean --spiffe-id" "$T/err.txt" || fail "no suggestion: $(cat "$T/err.txt")"
expect_rc 1 "$BIN/lanyard-server" entry show -entryID x --socket "$ADMIN"
grep -q "did you mean --id" "$T/err.txt" || fail "no suggestion for -entryID: $(cat "$T/err.txt")"
expect_rc 1 "$BIN/lanyard-server" entry show -socketPath "$ADMIN"
grep -q "did you mean --socket" "$T/err.txt" || fail "no suggestion for -socketPath: $(cat "$T/err.txt")"
expect_rc 1 "$BIN/lanyard-agent" api fetch jwt -audience foo
grep -q "did you mean --audience" "$T/err.txt" || fail "agent: no suggestion: $(cat "$T/err.txt")"
ok "single-dash SPIRE flags get 'did you mean'"

# ---- --downstream refused; --admin stored and shown
AGENT=spiffe://$TD/lanyard/agent/join_token/x
expect_rc 1 srv entry create --spiffe-id spiffe://$TD/ds --parent-id "$AGENT" --selector unix:uid:1 --downstream
grep -q "not supported" "$T/err.txt" || fail "--downstream: $(cat "$T/err.txt")"
code=$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$ADMIN" -X POST http://l/v1/entries \
	-d "{\"spiffe_id\":\"spiffe://$TD/ds\",\"parent_id\":\"$AGENT\",\"selectors\":[\"unix:uid:1\"],\"downstream\":true}")
[ "$code" = 400 ] && grep -q "not supported" "$T/body" || fail "API accepted downstream: $code $(cat "$T/body")"
id=$(srv entry create --spiffe-id spiffe://$TD/adm --parent-id "$AGENT" --selector unix:uid:2 --admin \
	--output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
srv entry show --id "$id" --output json | $PY -c 'import json,sys; assert json.load(sys.stdin)["entries"][0]["admin"] is True' ||
	fail "--admin not stored"
srv entry show --id "$id" >"$T/out.txt"
grep -q "Admin *: true" "$T/out.txt" || fail "--admin not shown"
ok "--downstream refused (CLI and API); --admin stored and shown"

# ---- entry update with nothing to change keeps the revision
rev() { srv entry show --id "$id" --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["revision"])'; }
r0=$(rev)
srv entry update --id "$id" --admin >/dev/null
srv entry update --id "$id" --selector unix:uid:2 >/dev/null
[ "$(rev)" = "$r0" ] || fail "a no-op update bumped the revision ($r0 -> $(rev))"
srv entry update --id "$id" --hint changed >/dev/null
[ "$(rev)" != "$r0" ] || fail "a real update did not bump the revision"
ok "no-op entry update keeps the revision; a change bumps it"

# ---- counts
srv entry create --spiffe-id spiffe://$TD/b --parent-id "$AGENT" --selector unix:uid:3 >/dev/null
[ "$(srv entry count --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["count"])')" = 2 ] ||
	fail "entry count: $(srv entry count --output json)"
srv entry count | grep -q "^2 entries" || fail "entry count text: $(srv entry count)"
[ "$(srv agent count --output json)" = "$(printf '{\n  "count": 0\n}')" ] || fail "agent count: $(srv agent count --output json)"
ok "entry count and agent count"

# ---- SPIFFE_ENDPOINT_SOCKET: unix:/path and unix:///path (the agent is not running: the error
# must be about connecting to that path, not about the URI)
for uri in "unix:$T/none.sock" "unix://$T/none.sock"; do
	rc=0
	SPIFFE_ENDPOINT_SOCKET=$uri "$BIN/lanyard-agent" api fetch x509 >"$T/out.txt" 2>"$T/err.txt" || rc=$?
	[ "$rc" = 1 ] || fail "$uri: exit $rc"
	grep -q "$T/none.sock" "$T/err.txt" && ! grep -qi "scheme\|unix URI" "$T/err.txt" ||
		fail "$uri not accepted: $(cat "$T/err.txt")"
done
start_server_and_agent_quiet() { write_agent_config; start_agent --join-token "$(new_token)"; }
start_server_and_agent_quiet
wait_for 30 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
for uri in "unix:$AGENT_SOCK" "unix://$AGENT_SOCK"; do
	rc=0
	SPIFFE_ENDPOINT_SOCKET=$uri "$BIN/lanyard-agent" api fetch bundles >"$T/out.txt" 2>"$T/err.txt" || rc=$?
	# Connected and answered: the bundles, or PermissionDenied (no entry names this caller).
	[ "$rc" = 0 ] || grep -q "PermissionDenied" "$T/err.txt" ||
		fail "$uri: fetch bundles exited $rc: $(cat "$T/err.txt")"
done
ok "SPIFFE_ENDPOINT_SOCKET accepts unix:/path and unix:///path"
