#!/usr/bin/env bash
# Secrets off the command line (issue 14, point 4), from the attacker's side: another local uid
# reads the agent's /proc/PID/cmdline (and root its environ) while the agent runs, looking for the
# join token. The token must not be there whichever way it was given (--join-token, which is
# wiped from argv at start; --join-token-file; LANYARD_JOIN_TOKEN; the join_token_file key), and
# the agent must still attest and serve. Token files that others could read or replace are
# refused with a message naming the file and the reason.
source "$(dirname "$0")/lib.sh"

NOBODY=65534
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups true 2>/dev/null ||
	skip "setpriv cannot switch to uid $NOBODY here"

start_server

# agent_cfg NAME [EXTRA_JSON]: $T/NAME.json, an agent with its own data_dir and socket.
agent_cfg() {
	local name=$1 extra=${2:-}
	srv bundle show >"$T/bootstrap.pem"
	cat >"$T/$name.json" <<JSON
{
  "trust_domain": "$TD",
  "server_address": "127.0.0.1",
  "server_port": $SERVER_PORT,
  "trust_bundle_path": "$T/bootstrap.pem",
  "data_dir": "$T/$name/data",
  "socket_path": "$T/$name/api.sock",
  "http_port": 0,
  "log_level": "debug"${extra:+,
  $extra}
}
JSON
}

# run_agent NAME [ARGS...]: starts the agent NAME in the background (log $T/NAME.log).
run_agent() {
	local name=$1
	shift
	"$BIN/lanyard-agent" run --config "$T/$name.json" "$@" >>"$T/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# refused NAME PATTERN [ARGS...]: the agent NAME exits non-zero and says PATTERN.
refused() {
	local name=$1 pattern=$2 rc=0
	shift 2
	: >"$T/$name.log"
	timeout 20 "$BIN/lanyard-agent" run --config "$T/$name.json" "$@" >>"$T/$name.log" 2>&1 ||
		rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$name: expected a refusal, exit status $rc"
	grep -q -- "$pattern" "$T/$name.log" || fail "$name: no '$pattern' in: $(cat "$T/$name.log")"
}

# serves NAME TOKEN: the agent attested with TOKEN and serves an entry parented to it.
serves() {
	local name=$1 tok=$2 sid="spiffe://$TD/secrets/$1"
	srv entry create --parent-id "spiffe://$TD/lanyard/agent/join_token/$tok" \
		--spiffe-id "$sid" --selector "unix:uid:0" >/dev/null
	wait_for 30 sh -c "'$BIN/lanyard-agent' api fetch x509 --socket '$T/$name/api.sock' \
		--output json | grep -q '$sid'" || fail "$name: $sid is not served"
}

# not_in_proc PID FILE TOKEN AS_UID: the process's /proc file, read by AS_UID, lacks TOKEN.
not_in_proc() {
	local pid=$1 file=$2 tok=$3 uid=$4 text
	text=$(setpriv --reuid="$uid" --regid="$uid" --clear-groups cat "/proc/$pid/$file" |
		tr '\0' ' ') || fail "uid $uid cannot read /proc/$pid/$file"
	[ -n "$text" ] || fail "/proc/$pid/$file read as uid $uid is empty"
	case "$text" in
	*"$tok"*) fail "uid $uid found the join token in /proc/$pid/$file: $text" ;;
	esac
	echo "# /proc/$pid/$file as uid $uid: $text" | cut -c1-200
}

# ---- --join-token VALUE: still works, wiped from argv, warned about
tok=$(new_token)
agent_cfg argv
run_agent argv --join-token "$tok"
ARGV_PID=$LAST_PID
wait_for 20 test -S "$T/argv/api.sock" || fail "agent (--join-token) socket did not appear"
not_in_proc "$ARGV_PID" cmdline "$tok" $NOBODY
not_in_proc "$ARGV_PID" cmdline "$tok" 0
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups cat "/proc/$ARGV_PID/cmdline" |
	tr '\0' ' ' | grep -q -- '--join-token' || fail "the flag itself should remain visible"
grep -q 'use --join-token-file' "$T/argv.log" || fail "no warning about --join-token"
serves argv "$tok"
ok "--join-token: the token is wiped from /proc/PID/cmdline, the agent attests and serves"

tok=$(new_token)
agent_cfg argv2
run_agent argv2 "--join-token=$tok"
wait_for 20 test -S "$T/argv2/api.sock" || fail "agent (--join-token=) socket did not appear"
not_in_proc "$LAST_PID" cmdline "$tok" $NOBODY
serves argv2 "$tok"
ok "--join-token=VALUE: wiped as well"

# ---- --join-token-file: refused unless a private regular file of the agent's uid
tok=$(new_token)
agent_cfg file
printf '%s\n' "$tok" >"$T/token"
chmod 644 "$T/token"
refused file "refusing join token file $T/token: mode 0644" --join-token-file "$T/token"
chmod 600 "$T/token"
chown $NOBODY "$T/token"
refused file "refusing join token file $T/token: owned by uid $NOBODY" --join-token-file "$T/token"
chown 0 "$T/token"
mkdir -p "$T/tokdir"
refused file "refusing join token file $T/tokdir: not a regular file" --join-token-file "$T/tokdir"
refused file "cannot open join token file $T/missing" --join-token-file "$T/missing"
: >"$T/empty"
chmod 600 "$T/empty"
refused file "refusing join token file $T/empty: it is empty" --join-token-file "$T/empty"
refused file "exclude each other" --join-token-file "$T/token" --join-token "$tok"
ok "--join-token-file: group/world-readable, foreign, non-regular, missing and empty files refused"
run_agent file --join-token-file "$T/token"
wait_for 20 test -S "$T/file/api.sock" || fail "agent (--join-token-file) socket did not appear"
not_in_proc "$LAST_PID" cmdline "$tok" $NOBODY
serves file "$tok"
ok "--join-token-file (0600): attests and serves"

# ---- LANYARD_JOIN_TOKEN: read, then removed from the environment and wiped from environ
tok=$(new_token)
agent_cfg env
LANYARD_JOIN_TOKEN="$tok" run_agent env
ENV_PID=$LAST_PID
wait_for 20 test -S "$T/env/api.sock" || fail "agent (LANYARD_JOIN_TOKEN) socket did not appear"
not_in_proc "$ENV_PID" environ "$tok" 0
not_in_proc "$ENV_PID" cmdline "$tok" $NOBODY
serves env "$tok"
ok "LANYARD_JOIN_TOKEN: not left in /proc/PID/environ, the agent attests and serves"

# ---- the join_token_file configuration key
tok=$(new_token)
printf '%s' "$tok" >"$T/token2"
chmod 640 "$T/token2"
agent_cfg conf "\"join_token_file\": \"$T/token2\""
refused conf "key 'join_token_file': refusing join token file $T/token2: mode 0640"
agent_cfg confboth "\"join_token_file\": \"$T/token2\", \"join_token\": \"x\""
refused confboth "keys 'join_token' and 'join_token_file' exclude each other"
chmod 400 "$T/token2"
run_agent conf
wait_for 20 test -S "$T/conf/api.sock" || fail "agent (join_token_file) socket did not appear"
serves conf "$tok"
ok "join_token_file key: checked like the flag, 0400 accepted, attests and serves"

# ---- a client command's secret flag: api validate jwt --svid TOKEN (a bearer token)
# A socket that accepts and never answers keeps the client waiting while its cmdline is read.
$PY -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
c = [s.accept() for _ in range(2)]
time.sleep(30)' "$T/silent.sock" &
PIDS+=("$!")
wait_for 10 test -S "$T/silent.sock" || fail "silent socket did not appear"
JWT="eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LWJlYXJlci10b2tlbg.c2ln"
for form in "--svid $JWT" "--svid=$JWT"; do
	# shellcheck disable=SC2086
	"$BIN/lanyard-agent" api validate jwt --socket "$T/silent.sock" --audience a $form \
		--timeout 20 >/dev/null 2>&1 &
	CLI_PID=$!
	PIDS+=("$CLI_PID")
	wait_for 10 sh -c "tr '\0' ' ' </proc/$CLI_PID/cmdline | grep -q -- '--audience'" ||
		fail "client did not start"
	# The wipe happens at the start of main: give it that long (bounded), then check.
	wait_for 10 sh -c "! tr '\0' ' ' </proc/$CLI_PID/cmdline | grep -q '$JWT'" || true
	not_in_proc "$CLI_PID" cmdline "$JWT" $NOBODY
	kill "$CLI_PID" 2>/dev/null || true
done
ok "api validate jwt --svid: the JWT-SVID is wiped from /proc/PID/cmdline"
