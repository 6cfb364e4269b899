#!/usr/bin/env bash
# Moving from one server to several: a SQLite server with entries, a join token, an attested
# agent and a banned one is stopped; `lanyard-server datastore migrate` copies its datastore into
# PostgreSQL; the server restarted on PostgreSQL (same data_dir: its CA keys) serves the agent
# again: its SVID renews, the workload keeps fetching, new entries reach it, the ban and the
# unused join token survived; a second server on the database trusts the old authorities. Also: a running
# source, a bad --from-sqlite path and a non-empty target are refused with clear errors, and the
# connection string's password never appears. Skipped (77) without PostgreSQL, except under CI.
source "$(dirname "$0")/lib.sh"

start_pg
PW=Xyzzy-s3cret-pw
# Trust authentication never asks for it: the password is only there to be kept out of output.
CONNSTR="$PG_CONNSTR password=$PW"

# Short agent SVIDs (renewed at half their life): a renewal happens while the test watches.
write_server_config '"agent_svid_ttl": "60s"'
start_server_and_agent
wait_for 30 grep -q "attested as $AGENT_ID" "$T/agent.log" || fail "agent did not attest"
SID="spiffe://$TD/migrate/workload"
srv entry create --spiffe-id "$SID" --parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)" >/dev/null
$PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" until present "$SID" 30 >/dev/null ||
	fail "workload not served before the migration"
srv entry create --spiffe-id "spiffe://$TD/migrate/other" --parent-id "$AGENT_ID" \
	--selector "unix:uid:4242" --dns-name other.example.org --hint h >/dev/null

# A second agent, banned, and a join token nobody used yet.
BAN_TOK=$(new_token)
mkdir -p "$T/banned"
sed -e "s#$T/agent/#$T/banned/#g" -e "s#\"http_port\": [0-9]*#\"http_port\": 0#" \
	"$T/agent.json" >"$T/banned.json"
"$BIN/lanyard-agent" run --config "$T/banned.json" --join-token "$BAN_TOK" >>"$T/banned.log" 2>&1 &
BAN_PID=$!
PIDS+=("$BAN_PID")
BAN_ID="spiffe://$TD/lanyard/agent/join_token/$BAN_TOK"
wait_for 30 grep -q "attested as $BAN_ID" "$T/banned.log" || fail "second agent did not attest"
kill "$BAN_PID"
wait "$BAN_PID" 2>/dev/null || true
srv agent ban --spiffe-id "$BAN_ID" >/dev/null || fail "ban failed"
SPARE_TOK=$(new_token --ttl 3600)

# Federation moves too: a bundle of two.test set by hand, and a relationship with it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=two.test \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	-addext subjectAltName=URI:spiffe://two.test -keyout "$T/two.key" -out "$T/two.pem" \
	>/dev/null 2>&1 || fail "openssl"
srv bundle set --trust-domain two.test --file "$T/two.pem" >/dev/null || fail "bundle set failed"
srv federation create --trust-domain two.test --bundle-endpoint-url https://127.0.0.1:1/ \
	--endpoint-spiffe-id spiffe://two.test/lanyard/server >/dev/null || fail "federation create"

srv entry show --output json >"$T/entries-before.json"
srv agent show --spiffe-id "$AGENT_ID" --output json >"$T/agent-before.json"
srv bundle show >"$T/bundle-before.pem"
OLD_AUTHS=$(grep -c "BEGIN CERTIFICATE" "$T/bundle-before.pem")

# The new configuration: the same server (data_dir, ports, admin socket) on PostgreSQL.
$PY - "$T/server.json" "$T/pg.json" "$CONNSTR" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(database_type="postgres", database_connection_string=sys.argv[3],
         database_max_connections=4)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
DB="$T/server/data/datastore.sqlite3"
migrate() {
	"$BIN/lanyard-server" datastore migrate --config "$T/pg.json" "$@"
}

# Refused while the server still runs on the source.
if migrate --from-sqlite "$DB" >"$T/m.out" 2>&1; then fail "migrated from a running server"; fi
grep -q "still running on $T/server/data" "$T/m.out" || fail "running source: $(cat "$T/m.out")"
ok "a source whose server still runs is refused: $(tail -n 1 "$T/m.out")"
stop_server

# A bad --from-sqlite path: a clear error naming it, nothing written.
for bad in "$T/nowhere.sqlite3" "$T/server" "$T/server.json"; do
	if migrate --from-sqlite "$bad" >"$T/m.out" 2>&1; then fail "migrated from $bad"; fi
	grep -q -- "--from-sqlite: .*$bad" "$T/m.out" || fail "bad path $bad: $(cat "$T/m.out")"
	echo "# $(tail -n 1 "$T/m.out")"
done
ok "a missing file, a directory and a non-database file are clear errors naming the path"

# Into a SQLite target: refused, naming the key.
if "$BIN/lanyard-server" datastore migrate --config "$T/server.json" --from-sqlite "$DB" \
	>"$T/m.out" 2>&1; then fail "migrated into SQLite"; fi
grep -q "key 'database_type'" "$T/m.out" || fail "sqlite target: $(cat "$T/m.out")"

migrate --from-sqlite "$DB" >"$T/m.out" 2>&1 || fail "migrate failed: $(cat "$T/m.out")"
cat "$T/m.out"
grep -q "^  2 entries$" "$T/m.out" && grep -q "^  2 agents (1 banned)$" "$T/m.out" &&
	grep -q "^  1 join tokens$" "$T/m.out" && grep -q "^  1 federated bundles$" "$T/m.out" &&
	grep -q "^  1 federation relationships$" "$T/m.out" || fail "migrate summary: $(cat "$T/m.out")"
ok "datastore migrate copied the SQLite datastore into PostgreSQL"

if migrate --from-sqlite "$DB" >"$T/m2.out" 2>&1; then fail "copied into a non-empty target"; fi
grep -q "not empty (2 entries, 2 agents, 1 join tokens, " "$T/m2.out" && grep -q -- "--force" "$T/m2.out" ||
	fail "non-empty target: $(cat "$T/m2.out")"
ok "a non-empty target is refused: $(tail -n 1 "$T/m2.out")"
migrate --from-sqlite "$DB" --force >"$T/m3.out" 2>&1 || fail "--force failed: $(cat "$T/m3.out")"
grep -q "^  2 entries$" "$T/m3.out" || fail "--force summary: $(cat "$T/m3.out")"
ok "--force replaces what the target holds"
if grep -q -- "$PW" "$T"/m*.out; then fail "the password appeared in migrate's output"; fi

# The same server, now on PostgreSQL: the agent comes back to it.
mark=$(wc -l <"$T/agent.log")
"$BIN/lanyard-server" run --config "$T/pg.json" >>"$T/server-pg.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_for 30 srv bundle show >/dev/null || fail "server on PostgreSQL did not come up"
grep -q "datastore: PostgreSQL" "$T/server-pg.log" || fail "not on PostgreSQL"
srv entry show --output json >"$T/entries-after.json"
$PY - "$T/entries-before.json" "$T/entries-after.json" <<'PY' || fail "entries differ after the copy"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
a = a.get("entries", a); b = b.get("entries", b)
key = lambda e: e["id"]
assert sorted(a, key=key) == sorted(b, key=key), (a, b)
PY
srv agent show --spiffe-id "$BAN_ID" --output json | grep -q '"banned": *true' || fail "ban lost"
ok "entries (ids, revisions, every field) and the ban came across"
srv bundle list --output json | grep -q '"trust_domain": *"two.test"' ||
	fail "the federated bundle did not come across: $(srv bundle list --output json)"
srv federation show --trust-domain two.test --output json |
	grep -q '"endpoint_spiffe_id": *"spiffe://two.test/lanyard/server"' ||
	fail "the federation relationship did not come across"
ok "the federated bundle and the federation relationship came across"

# Its SVID renews against the PostgreSQL server, and the workload is served throughout.
renewed() {
	[ "$(tail -n +"$((mark + 1))" "$T/agent.log" | grep -c "agent SVID $AGENT_ID renewed")" -ge 1 ]
}
wait_for 90 renewed || fail "the agent's SVID did not renew against the migrated server"
before_serial=$($PY -c "import json; print(json.load(open('$T/agent-before.json'))['serial'])")
srv agent show --spiffe-id "$AGENT_ID" --output json >"$T/agent-after.json"
after_serial=$($PY -c "import json; print(json.load(open('$T/agent-after.json'))['serial'])")
[ "$before_serial" != "$after_serial" ] || fail "the agent's serial did not move"
fetch=$($PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" x509)
case "$fetch" in *"$SID"*) ;; *) fail "workload fetch after the migration: $fetch" ;; esac
SID2="spiffe://$TD/migrate/after"
secs=$($PY "$SRC/tests/integration/agent_wl.py" "$AGENT_SOCK" until present "$SID2" 30 -- \
	"$BIN/lanyard-server" entry create --socket "$ADMIN" --spiffe-id "$SID2" \
	--parent-id "$AGENT_ID" --selector "unix:uid:$(id -u)") || fail "new entry not served: $secs"
ok "the agent keeps working against the migrated server: SVID renewed, workload fetches, new entry in ${secs}s"

# The copied join token still admits an agent (its hash came across); the banned one is refused.
mkdir -p "$T/spare"
sed -e "s#$T/agent/#$T/spare/#g" -e "s#\"http_port\": [0-9]*#\"http_port\": 0#" \
	"$T/agent.json" >"$T/spare.json"
"$BIN/lanyard-agent" run --config "$T/spare.json" --join-token "$SPARE_TOK" >>"$T/spare.log" 2>&1 &
PIDS+=("$!")
wait_for 30 grep -q "attested as spiffe://$TD/lanyard/agent/join_token/$SPARE_TOK" "$T/spare.log" ||
	fail "the copied join token did not admit an agent"
ok "the copied join token admitted an agent"

# A second server on the database (its own data_dir): the old authorities are in its bundle.
$PY - "$T/pg.json" "$T/b.json" "$T" "$(free_port)" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
t = sys.argv[3]
c.update(data_dir=t + "/b/data", admin_socket=t + "/b/admin.sock", bind_port=int(sys.argv[4]),
         http_port=0)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
mkdir -p "$T/b"
"$BIN/lanyard-server" run --config "$T/b.json" >>"$T/server-b.log" 2>&1 &
PIDS+=("$!")
wait_for 30 "$BIN/lanyard-server" bundle show --socket "$T/b/admin.sock" >/dev/null ||
	fail "second server did not come up"
"$BIN/lanyard-server" bundle show --socket "$T/b/admin.sock" >"$T/bundle-b.pem"
$PY - "$T/bundle-before.pem" "$T/bundle-b.pem" <<'PY' || fail "B's bundle lacks the old authorities"
import sys
def certs(p):
    t = open(p).read()
    return {c.strip() for c in t.split("-----END CERTIFICATE-----") if "BEGIN CERTIFICATE" in c}
old, b = certs(sys.argv[1]), certs(sys.argv[2])
assert old <= b and len(b) > len(old), (len(old), len(b))
PY
ok "a second server trusts the $OLD_AUTHS authorities of the old server (until they expire) beside its own"
if grep -q -- "$PW" "$T"/*.log; then fail "the password appeared in a log"; fi
ok "the connection password appears in no output and no log"
