#!/usr/bin/env bash
# lanyard-agent's errors must be clear: bad configuration, no trust source, a bad, expired or
# reused join token, a wrong trust bundle, a server of another trust domain, a key file readable
# by others, and a second agent on the same data_dir.
source "$(dirname "$0")/lib.sh"

# run_agent NAME EXTRA_JSON [ARGS...]: starts an agent with its own data_dir and socket, using
# $T/bootstrap.pem unless EXTRA_JSON sets the trust source, and the server at $RUN_PORT (default
# $SERVER_PORT); its log is $T/NAME.log.
run_agent() {
	local name=$1 extra=$2
	shift 2
	cat >"$T/$name.json" <<JSON
{
  "trust_domain": "$TD",
  "server_address": "127.0.0.1",
  "server_port": ${RUN_PORT:-$SERVER_PORT},
  "data_dir": "$T/$name/data",
  "socket_path": "$T/$name/api.sock",
  "http_port": 0,
  ${extra:-\"trust_bundle_path\": \"$T/bootstrap.pem\"}
}
JSON
	touch "$T/$name.log"
	LOG_FROM=$(($(wc -l <"$T/$name.log") + 1))
	"$BIN/lanyard-agent" run --config "$T/$name.json" "$@" >>"$T/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}
# in_log NAME PATTERN: PATTERN is in what the last started agent logged.
in_log() {
	tail -n +"$LOG_FROM" "$T/$1.log" | grep -q -- "$2"
}
# expect_log NAME PATTERN: waits for PATTERN from the last started agent, then stops it.
expect_log() {
	wait_for 20 in_log "$1" "$2" || fail "$1: no '$2' in its log: $(tail -n 5 "$T/$1.log")"
	kill "$LAST_PID" 2>/dev/null || true
	wait "$LAST_PID" 2>/dev/null || true
}
# exits_refused NAME PATTERN: the last started agent exits with status 1 on its own (a permanent
# refusal), having logged PATTERN and the reason on one error line.
exits_refused() {
	local rc=0 i
	for i in $(seq 1 300); do
		kill -0 "$LAST_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$LAST_PID" 2>/dev/null && fail "$1: still running after a permanent refusal"
	wait "$LAST_PID" || rc=$?
	[ "$rc" = 1 ] || fail "$1: exit status $rc, expected 1: $(tail -n 5 "$T/$1.log")"
	in_log "$1" "error .*refused this agent for good, exiting: .*$2" ||
		fail "$1: no refusal line with '$2': $(tail -n 5 "$T/$1.log")"
}
# refused ARGS...: lanyard-agent must exit 1 at once; its stderr is left in $T/err.txt.
refused() {
	local rc=0
	timeout 20 "$BIN/lanyard-agent" "$@" >"$T/out.txt" 2>"$T/err.txt" || rc=$?
	[ "$rc" = 1 ] || fail "lanyard-agent $* exited with $rc: $(cat "$T/err.txt")"
}

# ---- configuration errors name the key, the value and the file
echo '{"trust_domain":"example.org","rotation_fraction":2}' >"$T/bad.json"
refused run --config "$T/bad.json"
grep -q "rotation_fraction" "$T/err.txt" && grep -q "$T/bad.json" "$T/err.txt" && grep -q 2 "$T/err.txt" ||
	fail "bad value error unclear: $(cat "$T/err.txt")"
echo '{"trust_domain":"example.org","server_prot":1}' >"$T/bad.json"
refused run --config "$T/bad.json"
grep -q "unknown key 'server_prot'" "$T/err.txt" || fail "unknown key error unclear: $(cat "$T/err.txt")"
refused run --config "$T/missing.json"
grep -q "$T/missing.json" "$T/err.txt" || fail "missing file error unclear: $(cat "$T/err.txt")"
refused frobnicate
ok "bad configurations and commands refused with clear errors"

"$BIN/lanyard-agent" --version | grep -q "^lanyard-agent [0-9]" || fail "--version"
grep -q "rotation_fraction" <("$BIN/lanyard-agent" --help) || fail "--help does not list the options"
ok "--version and --help"

start_server
srv bundle show >"$T/bootstrap.pem"

# ---- no trust source at all
cat >"$T/notrust.json" <<JSON
{"trust_domain":"$TD","server_port":$SERVER_PORT,"data_dir":"$T/notrust/data","socket_path":"$T/notrust/api.sock"}
JSON
refused run --config "$T/notrust.json"
grep -q "trust_bundle_path" "$T/err.txt" || fail "missing trust source unclear: $(cat "$T/err.txt")"
ok "no trust bundle and no insecure_bootstrap: refused"

# ---- bad, expired and reused join tokens
run_agent bad "" --join-token not-a-real-token
exits_refused bad "join token is unknown or was already used"
ok "unknown join token: the agent exits 1 with the reason"

tok=$(new_token --ttl 1)
sleep 2.5
# The server prunes expired tokens at its first tick (1 s after start) and every minute: the
# expired one must still be known as expired afterwards.
stop_server
start_server
sleep 1.5
run_agent expired "" --join-token "$tok"
exits_refused expired "join token expired"
ok "expired join token: the agent exits 1 with the reason"

tok=$(new_token)
run_agent first "" --join-token "$tok"
expect_log first "attested as"
run_agent second "" --join-token "$tok"
exits_refused second "join token is unknown or was already used"
ok "reused join token: the agent exits 1 with the reason"

# ---- transient trouble is retried with backoff: no server listening at first, then one
DOWN_PORT=$(free_port)
tok=$(new_token)
RUN_PORT=$DOWN_PORT run_agent transient "" --join-token "$tok"
wait_for 20 in_log transient "unavailable, serving cached SVIDs and retrying" || fail "transient: no retry"
sleep 3
kill -0 "$LAST_PID" 2>/dev/null || fail "transient: the agent exited on a connection failure"
kill "$LAST_PID" 2>/dev/null || true
wait "$LAST_PID" 2>/dev/null || true
ok "server unreachable: the agent keeps retrying"

run_agent notoken ""
expect_log notoken "no valid agent SVID and no unused join token"
ok "no join token: the agent says what it needs"

# ---- the token consumed by 'first' is remembered: a restart with it does not re-attest
run_agent first "" --join-token "$tok"
expect_log first "connected to server"
[ "$(grep -c "attested as" "$T/first.log")" = 1 ] || fail "restart attested again"
ok "restart with an already used token reuses the persisted identity"

# ---- wrong trust bundle: a CA that did not sign the server
$PY - "$T/wrong.pem" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
k = ec.generate_private_key(ec.SECP256R1())
n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not the Lanyard CA")])
now = datetime.datetime.utcnow()
c = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
     .serial_number(x509.random_serial_number()).not_valid_before(now)
     .not_valid_after(now + datetime.timedelta(days=1))
     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
     .sign(k, hashes.SHA256()))
open(sys.argv[1], "wb").write(c.public_bytes(serialization.Encoding.PEM))
PY
tok=$(new_token)
run_agent wrongca "\"trust_bundle_path\": \"$T/wrong.pem\"" --join-token "$tok"
expect_log wrongca "does the trust bundle hold the server's CA"
grep -q "TLS handshake" "$T/wrongca.log" || fail "wrong bundle error does not say TLS"
ok "wrong trust bundle: the handshake is refused with a clear error"

# ---- a server of another trust domain
OTHER_PORT=$(free_port)
cat >"$T/other.json" <<JSON
{"trust_domain":"other.org","data_dir":"$T/other/data","bind_address":"127.0.0.1",
 "bind_port":$OTHER_PORT,"admin_socket":"$T/other/admin.sock","http_port":0}
JSON
"$BIN/lanyard-server" run --config "$T/other.json" >>"$T/other-server.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "$BIN/lanyard-server" bundle show --socket "$T/other/admin.sock" || fail "other server down"
"$BIN/lanyard-server" bundle show --socket "$T/other/admin.sock" >"$T/other.pem"
RUN_PORT=$OTHER_PORT run_agent foreign "\"trust_bundle_path\": \"$T/other.pem\"" --join-token whatever
expect_log foreign "server presented spiffe://other.org/lanyard/server, expected spiffe://$TD/lanyard/server"
ok "server of another trust domain: refused with a clear error"

# ---- a key file readable by others is refused; a second agent on one data_dir is refused
chmod 644 "$T/first/data/agent_key.pem"
refused run --config "$T/first.json"
grep -q "agent_key.pem" "$T/err.txt" && grep -q "chmod 600" "$T/err.txt" ||
	fail "readable key error unclear: $(cat "$T/err.txt")"
chmod 600 "$T/first/data/agent_key.pem"
ok "agent key readable by others: refused"

run_agent first ""
wait_for 20 in_log first "Workload API listening" || fail "first agent did not start"
refused run --config "$T/first.json"
grep -q "in use by another lanyard-agent" "$T/err.txt" || fail "second agent error unclear: $(cat "$T/err.txt")"
ok "second agent on the same data_dir: refused"

# ---- eviction: the running agent drops its identity and says it needs a token; a fresh token
# brings it back under a new agent ID
first_id=$(grep -o "attested as spiffe://[^;]*" "$T/first.log" | head -n 1 | cut -d' ' -f3)
srv agent evict --spiffe-id "$first_id" >/dev/null
wait_for 20 in_log first "no longer accepts agent $first_id" || fail "eviction not noticed"
expect_log first "no valid agent SVID and no unused join token"
[ ! -e "$T/first/data/agent_key.pem" ] || fail "evicted identity still on disk"
tok=$(new_token)
run_agent first "" --join-token "$tok"
expect_log first "attested as spiffe://$TD/lanyard/agent/join_token/$tok"
ok "evicted agent needs a new token and re-attests with it"

# ---- a banned agent exits 1 with the reason
tok=$(new_token)
run_agent banned "" --join-token "$tok"
wait_for 20 in_log banned "connected to server" || fail "banned: the agent did not connect"
srv agent ban --spiffe-id "spiffe://$TD/lanyard/agent/join_token/$tok" >/dev/null
exits_refused banned "is banned"
ok "banned agent: exits 1 with the reason"

# ---- insecure_bootstrap: loud warning on first contact only, the received bundle afterwards
tok=$(new_token)
run_agent insecure '"insecure_bootstrap": true' --join-token "$tok"
expect_log insecure "attested as"
grep -q "INSECURE BOOTSTRAP" "$T/insecure.log" || fail "no loud warning for insecure_bootstrap"
run_agent insecure '"insecure_bootstrap": true'
expect_log insecure "connected to server"
[ "$(grep -c "INSECURE BOOTSTRAP" "$T/insecure.log")" = 1 ] || fail "insecure contact after the bundle was known"
ok "insecure_bootstrap: warned once, then the server's bundle is used"
