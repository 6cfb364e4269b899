#!/usr/bin/env bash
# spiffe://<td>/lanyard belongs to the server and its agents. From the attacker's side:
# (a) the admin API refuses entries, entry updates and join token aliases inside it or equal to an
#     attested agent's ID;
# (b) an entry with an agent's ID put straight into the database (bypassing the admin API) is
#     never signed, and a workload SVID carrying the agent's ID (minted with the CA key, as one
#     issued before the namespace was reserved would be) is refused by the node API for every
#     method, while the real agent keeps syncing and serving (and renewing: the SVID a renewal
#     replaced stays admitted until it expires, for an agent that could not persist the new one).
source "$(dirname "$0")/lib.sh"

forge() {
	$PY "$SRC/tests/integration/forge_svid.py" "$@"
}
wl() {
	$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" "$@"
}
refused() { # refused WHAT EXPECTED_TEXT COMMAND...
	local what=$1 want=$2
	shift 2
	if "$@" >"$T/out.txt" 2>&1; then fail "$what was accepted: $(cat "$T/out.txt")"; fi
	grep -q "$want" "$T/out.txt" || fail "$what: unclear refusal: $(cat "$T/out.txt")"
}

write_server_config '"agent_svid_ttl": "40s"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
UID_SEL="unix:uid:$(id -u)"

# ---- (a) the admin API
for id in "spiffe://$TD/lanyard/server" "spiffe://$TD/lanyard" "spiffe://$TD/lanyard/agent/x"; do
	refused "entry $id" "reserved" srv entry create --spiffe-id "$id" --parent-id "$AGENT_ID" \
		--selector "$UID_SEL"
done
refused "entry with the agent's ID" "reserved\|attested agent" srv entry create \
	--spiffe-id "$AGENT_ID" --parent-id "$AGENT_ID" --selector "$UID_SEL"
refused "token alias lanyard/server" "reserved" srv token generate \
	--spiffe-id "spiffe://$TD/lanyard/server"
refused "token alias = agent ID" "reserved\|attested agent" srv token generate --spiffe-id "$AGENT_ID"
eid=$(srv entry create --output json --spiffe-id "spiffe://$TD/it/web" --parent-id "$AGENT_ID" \
	--selector "$UID_SEL" | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
refused "update into the namespace" "reserved" srv entry update --id "$eid" \
	--spiffe-id "spiffe://$TD/lanyard/server"
# Look-alikes outside the namespace stay legitimate.
srv entry create --spiffe-id "spiffe://$TD/lanyardx/web" --parent-id "$AGENT_ID" \
	--selector "$UID_SEL" >/dev/null || fail "a look-alike ID outside the namespace was refused"
srv token generate --spiffe-id "spiffe://$TD/node/alias" >/dev/null || fail "plain alias refused"
wl until present "spiffe://$TD/it/web" 20 >/dev/null || fail "legitimate entry not served"
ok "admin API refuses reserved IDs and agent IDs (entries, updates, token aliases)"

# ---- (b) an entry with the agent's ID written straight into the database
stop_server
DB="$T/server/data/datastore.sqlite3"
sqlite3 "$DB" "INSERT INTO entries (id, spiffe_id, parent_id, selectors, revision, created_at)
	VALUES ('00000000-0000-4000-8000-0000000000aa', '$AGENT_ID', '$AGENT_ID',
	'[\"$UID_SEL\"]', 1, strftime('%s','now'));" || fail "cannot insert into $DB"
start_server
wait_for 30 grep -q "reserved namespace" "$T/agent.log" "$T/server.log" ||
	echo "# (no sign refusal logged yet)"
# Give the agent time to sync and try to sign it; it must never serve that ID.
wl until present "spiffe://$TD/it/web" 30 >/dev/null || fail "agent stopped serving after restart"
sleep 3
if wl x509 | grep -q "\"$AGENT_ID\""; then fail "a workload got an SVID with the agent's ID"; fi
ok "an entry with the agent's ID planted in the database is never signed"

# ---- (b) a workload SVID carrying the agent's ID, presented to the node API
CA_ID=$(ls "$T/server/data/ca" | grep -v '\.jwt\.key$' | grep '\.key$' | head -n 1)
srv bundle show >"$T/ca.pem"
forge mint "$T/ca.pem" "$T/server/data/ca/$CA_ID" "$AGENT_ID" "$T/forged.pem" "$T/forged.key" \
	>/dev/null || fail "cannot mint the forged SVID"
# Control: the real agent's SVID passes through the same client.
D="$T/agent/data"
r=$(forge call "127.0.0.1:$SERVER_PORT" "$D/agent_svid.pem" "$D/agent_key.pem" GetBundle)
echo "# real agent SVID, GetBundle: $r"
case "$r" in "grpc-status 0:"*) ;; *) fail "the real agent SVID was refused: $r" ;; esac
for m in GetBundle RenewAgent SyncEntries SignX509 SignJWT; do
	r=$(forge call "127.0.0.1:$SERVER_PORT" "$T/forged.pem" "$T/forged.key" "$m")
	echo "# forged SVID, $m: $r"
	case "$r" in
	"grpc-status 7:"*"not the SVID issued to agent"*) ;;
	*) fail "$m with a forged agent SVID was not refused: $r" ;;
	esac
done
grep -q "refused a certificate for $AGENT_ID" "$T/server.log" || fail "refusal not logged"
ok "a workload SVID with the agent's ID is refused by the node API"

# ---- a server presenting a workload SVID: an agent refuses it before sending its join token
# fake_server NAME SPIFFE_ID: an agent with a fresh token against a fake server holding a
# CA-signed certificate for SPIFFE_ID; sets TOK and leaves what the server received in $T/NAME.rx.
fake_server() {
	local name=$1 id=$2 port http
	forge mint "$T/ca.pem" "$T/server/data/ca/$CA_ID" "$id" "$T/$name.pem" "$T/$name.key" >/dev/null
	forge serve "$T/$name.pem" "$T/$name.key" "$T/$name.port" "$T/$name.rx" 20 &
	PIDS+=($!)
	wait_for 10 test -s "$T/$name.port" || fail "fake server did not start"
	port=$(cat "$T/$name.port")
	http=$(free_port)
	mkdir -p "$T/$name"
	cat >"$T/$name.json" <<JSON
{ "trust_domain": "$TD", "server_address": "127.0.0.1", "server_port": $port,
  "trust_bundle_path": "$T/ca.pem", "data_dir": "$T/$name/data",
  "socket_path": "$T/$name/api.sock", "http_port": $http, "log_level": "debug" }
JSON
	TOK=$(new_token)
	"$BIN/lanyard-agent" run --config "$T/$name.json" --join-token "$TOK" >>"$T/$name.log" 2>&1 &
	PIDS+=($!)
}
fake_server impostor "spiffe://$TD/it/web"
wait_for 20 grep -q "server presented spiffe://$TD/it/web, expected spiffe://$TD/lanyard/server" \
	"$T/impostor.log" || fail "agent did not refuse the impostor: $(tail -n 5 "$T/impostor.log")"
sleep 1
if grep -qa "$TOK" "$T/impostor.rx" 2>/dev/null; then fail "the agent sent its join token to an impostor"; fi
# Control: the same fake server with the server's ID does receive the token, so the check above
# would see it.
fake_server control "spiffe://$TD/lanyard/server"
wait_for 20 grep -qa "$TOK" "$T/control.rx" || fail "control: the token never reached the fake server"
ok "an agent refuses a server presenting a workload SVID, before sending its join token"

# ---- the real agent keeps working
srv entry create --spiffe-id "spiffe://$TD/it/after" --parent-id "$AGENT_ID" \
	--selector "$UID_SEL" >/dev/null
wl until present "spiffe://$TD/it/after" 30 >/dev/null || fail "agent stopped syncing"
if grep -q "not the SVID issued" "$T/agent.log"; then fail "the real agent was refused"; fi
ok "the real agent keeps syncing and serving"

# ---- an agent that could not persist its renewed SVID still gets in with the one it replaced
n0=$(grep -c "renewed; reconnecting" "$T/agent.log" || true)
cp "$D/agent_svid.pem" "$T/old_svid.pem"
cp "$D/agent_key.pem" "$T/old_key.pem"
renewed_since() {
	[ "$(grep -c "renewed; reconnecting" "$T/agent.log")" -gt "$1" ]
}
wait_for 60 renewed_since "$n0" || fail "the agent SVID was not renewed"
cmp -s "$D/agent_svid.pem" "$T/old_svid.pem" && fail "renewed SVID not persisted"
r=$(forge call "127.0.0.1:$SERVER_PORT" "$T/old_svid.pem" "$T/old_key.pem" GetBundle)
echo "# replaced agent SVID, GetBundle: $r"
case "$r" in "grpc-status 0:"*) ;; *) fail "the agent's replaced SVID was refused: $r" ;; esac
r=$(forge call "127.0.0.1:$SERVER_PORT" "$T/forged.pem" "$T/forged.key" GetBundle)
case "$r" in "grpc-status 7:"*) ;; *) fail "forged SVID accepted after a renewal: $r" ;; esac
ok "the SVID a renewal replaced is still admitted until it expires; forged ones are not"
