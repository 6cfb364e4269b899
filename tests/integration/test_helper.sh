#!/usr/bin/env bash
# The file helper (`lanyard-agent helper`) with a real server and agent, 15 s SVIDs: two helper
# instances write a server identity and a client identity; after every renewal of the server's
# files, OpenSSL's s_server and s_client make a mutual TLS handshake with them, each verifying
# the other against the bundle file. Also: the key file is 0600, the pid in pid_file gets
# SIGHUP and the command runs on every renewal, the files are kept while the agent is down and
# renewed when it is back, SIGTERM stops the helper cleanly.
source "$(dirname "$0")/lib.sh"

RENEWALS=${LANYARD_HELPER_RENEWALS:-3}

HELPER=("$BIN/lanyard-agent" helper)

write_server_config '"default_x509_svid_ttl": "15s"'
start_server_and_agent
wait_for 20 grep -q "connected to server" "$T/agent.log" || fail "agent did not connect"
for name in web client; do
	srv entry create --spiffe-id "spiffe://$TD/$name" --parent-id "$AGENT_ID" \
		--selector "unix:uid:$(id -u)" --x509-svid-ttl 15 >/dev/null
done

# A process that counts the SIGHUPs it gets, found through a pid file.
bash -c "trap 'echo hup >>\"$T/hups\"' HUP; echo \$\$ >\"$T/app.pid\"; while :; do sleep 0.1; done" &
PIDS+=($!)
wait_for 5 test -s "$T/app.pid" || fail "no app.pid"

# helper_config NAME EXTRA: one helper instance's config, files in $T/NAME/.
helper_config() {
	mkdir -p "$T/$1"
	cat >"$T/$1.json" <<JSON
{
  "agent_socket": "unix://$AGENT_SOCK",
  "spiffe_id": "spiffe://$TD/$1",
  "cert_path": "$T/$1/svid.pem",
  "key_path": "$T/$1/svid_key.pem",
  "bundle_path": "$T/$1/bundle.pem",
  "cmd": "echo renewed >>$T/$1.renewals",
  "log_level": "debug"${2:+,
  $2}
}
JSON
}
helper_config web "\"pid_file\": \"$T/app.pid\", \"signal\": \"SIGHUP\""
helper_config client
"${HELPER[@]}" --config "$T/web.json" >>"$T/helper-web.log" 2>&1 &
HWEB=$!
PIDS+=($HWEB)
"${HELPER[@]}" --config "$T/client.json" >>"$T/helper-client.log" 2>&1 &
PIDS+=($!)
for name in web client; do
	wait_for 20 test -s "$T/$name/svid.pem" || fail "$name: no certificate written"
	for f in svid.pem svid_key.pem bundle.pem; do
		[ -s "$T/$name/$f" ] || fail "$name: $f missing"
	done
done
[ "$(stat -c %a "$T/web/svid_key.pem")" = 600 ] || fail "key mode $(stat -c %a "$T/web/svid_key.pem")"
[ "$(stat -c %a "$T/web/svid.pem")" = 644 ] || fail "cert mode $(stat -c %a "$T/web/svid.pem")"
uri=$(openssl x509 -in "$T/web/svid.pem" -noout -ext subjectAltName | grep -o 'URI:[^, ]*')
[ "$uri" = "URI:spiffe://$TD/web" ] || fail "web certificate holds $uri"
ok "both helpers wrote chain, key (0600) and bundle"

serial_of() {
	openssl x509 -in "$1/svid.pem" -noout -serial 2>/dev/null | cut -d= -f2
}

# snapshot NAME DIR: a consistent copy of a helper's three files (the helper writes the
# certificate last; a renewal landing between two copies is caught by the key check).
snapshot() {
	local src="$T/$1" dst=$2 i
	mkdir -p "$dst"
	for i in 1 2 3 4 5; do
		cp "$src/bundle.pem" "$src/svid_key.pem" "$src/svid.pem" "$dst/"
		if [ "$(openssl x509 -in "$dst/svid.pem" -noout -pubkey 2>/dev/null)" = \
			"$(openssl pkey -in "$dst/svid_key.pem" -pubout 2>/dev/null)" ]; then
			return 0
		fi
		sleep 0.2
	done
	fail "$1: key and certificate do not match"
}

# start_s_server DIR: s_server with DIR's files, requiring a client certificate verified
# against DIR's bundle (-Verify 1 -verify_return_error); one connection. Sets SPID and PORT.
start_s_server() {
	PORT=$(free_port)
	# s_server quits when its stdin ends: keep it open for the exchange.
	timeout 20 openssl s_server -accept "127.0.0.1:$PORT" -naccept 1 -cert "$1/svid.pem" \
		-key "$1/svid_key.pem" -CAfile "$1/bundle.pem" -Verify 1 -verify_return_error \
		-brief >"$1/s_server.out" 2>&1 < <(sleep 20 2>/dev/null) &
	SPID=$!
	PIDS+=("$SPID")
	wait_for 5 sh -c "ss -ltn | grep -q '127.0.0.1:$PORT '" || fail "s_server did not listen"
}

# s_client DIR: connects to PORT with DIR's files, verifying the server against DIR's bundle,
# and sends one line.
s_client() {
	echo "hello over mTLS" | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" \
		-cert "$1/svid.pem" -key "$1/svid_key.pem" -CAfile "$1/bundle.pem" \
		-verify_return_error -brief >"$1/s_client.out" 2>&1
}

# handshake DIR_SERVER DIR_CLIENT: a mutual TLS exchange that must succeed, each side having
# verified the other.
handshake() {
	local s=$1 c=$2
	start_s_server "$s"
	s_client "$c" || { cat "$c/s_client.out" "$s/s_server.out"; fail "s_client failed"; }
	wait "$SPID" || { cat "$s/s_server.out"; fail "s_server failed"; }
	grep -q "Verification: OK" "$c/s_client.out" || fail "s_client did not verify the server"
	grep -q "hello over mTLS" "$s/s_server.out" || {
		cat "$s/s_server.out"
		fail "s_server got no data from the client"
	}
	grep -q "Verification: OK" "$s/s_server.out" || {
		cat "$s/s_server.out"
		fail "s_server did not verify the client"
	}
}

# Renewals: each time the web certificate changes, the files make a working mTLS pair.
seen=("$(serial_of "$T/web")")
snapshot web "$T/snap0/web"
snapshot client "$T/snap0/client"
handshake "$T/snap0/web" "$T/snap0/client"
ok "s_server and s_client: mutual TLS with the first files"
for n in $(seq 1 "$RENEWALS"); do
	cur=${seen[-1]}
	end=$((SECONDS + 20))
	while [ "$(serial_of "$T/web")" = "$cur" ] || [ -z "$(serial_of "$T/web")" ]; do
		[ $SECONDS -lt $end ] || fail "renewal $n: the web certificate did not change in 20 s"
		sleep 0.2
	done
	seen+=("$(serial_of "$T/web")")
	snapshot web "$T/snap$n/web"
	snapshot client "$T/snap$n/client"
	handshake "$T/snap$n/web" "$T/snap$n/client"
	[ "$(stat -c %a "$T/web/svid_key.pem")" = 600 ] || fail "key mode after renewal"
	ok "renewal $n (serial ${seen[-1]}): s_server and s_client handshake with the new files"
done
uniq_serials=$(printf '%s\n' "${seen[@]}" | sort -u | wc -l)
[ "$uniq_serials" -eq $((RENEWALS + 1)) ] || fail "serials not all different: ${seen[*]}"

# The checks are real: s_server refuses a client certificate its bundle does not cover (a
# self-signed one with the right SPIFFE ID, the client trusting the real bundle).
mkdir -p "$T/rogue"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$T/rogue/svid_key.pem" -out "$T/rogue/svid.pem" -days 1 -subj /CN=rogue \
	-addext "subjectAltName=URI:spiffe://$TD/client" >/dev/null 2>&1
cp "$T/snap$RENEWALS/client/bundle.pem" "$T/rogue/bundle.pem"
start_s_server "$T/snap$RENEWALS/web"
s_client "$T/rogue" || true
wait_for 5 grep -q "ERROR" "$T/snap$RENEWALS/web/s_server.out" || {
	cat "$T/snap$RENEWALS/web/s_server.out"
	fail "s_server did not refuse a client outside its bundle"
}
kill "$SPID" 2>/dev/null || true
wait "$SPID" 2>/dev/null || true
! grep -q "hello over mTLS" "$T/snap$RENEWALS/web/s_server.out" || fail "rogue client's data accepted"
ok "s_server refuses a client certificate outside the bundle"

hups=$(wc -l <"$T/hups" 2>/dev/null || echo 0)
runs=$(wc -l <"$T/web.renewals" 2>/dev/null || echo 0)
[ "$hups" -ge $((RENEWALS + 1)) ] || fail "pid_file process got $hups SIGHUPs"
[ "$runs" -ge $((RENEWALS + 1)) ] || fail "cmd ran $runs times"
[ "$hups" -eq "$runs" ] || fail "$hups SIGHUPs but $runs cmd runs"
ok "on every renewal: SIGHUP to the pid in pid_file ($hups) and cmd run ($runs)"

# The agent goes away: the files stay (unchanged) and the helper keeps trying.
stop_agent
before=$(sha256sum "$T/web/svid.pem" "$T/web/svid_key.pem" "$T/web/bundle.pem")
sleep 3
[ "$(sha256sum "$T/web/svid.pem" "$T/web/svid_key.pem" "$T/web/bundle.pem")" = "$before" ] ||
	fail "files changed while the agent was away"
kill -0 "$HWEB" || fail "the helper exited when the agent went away"
grep -q "keeping the current files" "$T/helper-web.log" || fail "no warning about the agent"
ok "agent down: the files are kept and the helper keeps retrying"

# The agent comes back (from its data_dir): the helper writes a fresh SVID by itself.
last=$(serial_of "$T/web")
start_agent
end=$((SECONDS + 30))
while [ "$(serial_of "$T/web")" = "$last" ]; do
	[ $SECONDS -lt $end ] || fail "no new certificate after the agent came back"
	sleep 0.2
done
ok "agent back: the helper reconnected and wrote a new SVID"

kill -TERM "$HWEB"
rc=0
timeout 5 tail --pid="$HWEB" -f /dev/null || fail "the helper did not stop on SIGTERM"
wait "$HWEB" || rc=$?
[ "$rc" -eq 0 ] || fail "the helper exited with $rc on SIGTERM"
ok "SIGTERM: the helper stops with status 0"
