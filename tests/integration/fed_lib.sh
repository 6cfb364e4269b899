# Helpers of the federation tests (sourced after lib.sh): servers of several trust domains with
# bundle endpoints on loopback, each with its own data_dir, admin socket and log.
declare -A EP HTTPP NODEP AGENT_SOCK_OF AGENT_ID_OF
# start_td NAME [extra JSON members]: a server for trust domain NAME with a bundle endpoint
# (refresh hint 5 s); its config in $T/NAME.json, its log in $T/server-NAME.log.
start_td() {
	local n=$1
	mkdir -p "$T/$n"
	EP[$n]=$(free_port)
	HTTPP[$n]=$(free_port)
	NODEP[$n]=$(free_port)
	cat >"$T/$n.json" <<JSON
{
  "trust_domain": "$n",
  "data_dir": "$T/$n/data",
  "bind_address": "127.0.0.1",
  "bind_port": ${NODEP[$n]},
  "admin_socket": "$T/$n/admin.sock",
  "http_address": "127.0.0.1",
  "http_port": ${HTTPP[$n]},
  "log_level": "debug",
  "bundle_endpoint_address": "127.0.0.1",
  "bundle_endpoint_port": ${EP[$n]},
  "bundle_endpoint_refresh_hint": "5s"${2:+,
  $2}
}
JSON
	"$BIN/lanyard-server" run --config "$T/$n.json" >>"$T/server-$n.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	# Bounded (30 s), and at once when the server exits.
	for _ in $(seq 300); do
		s "$n" bundle show >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || fail "server $n exited: $(tail -n 3 "$T/server-$n.log")"
		sleep 0.1
	done
	fail "server $n did not come up"
}

s() { # s NAME args...: the CLI of server NAME
	local n=$1
	shift
	"$BIN/lanyard-server" "$@" --socket "$T/$n/admin.sock"
}

# seq_of NAME TD: the sequence of TD's bundle stored by NAME ("none" when absent).
seq_of() {
	s "$1" bundle list --output json | $PY -c '
import json, sys
b = [x for x in json.load(sys.stdin)["bundles"] if x["trust_domain"] == sys.argv[1]]
print(b[0]["sequence"] if b else "none")' "$2"
}

has_bundle() { [ "$(seq_of "$1" "$2")" != none ]; }
no_bundle() { [ "$(seq_of "$1" "$2")" = none ]; }
seq_is() { [ "$(seq_of "$1" "$2")" = "$3" ]; }
logged() { grep -qF -- "$2" "$T/server-$1.log"; }


# federate A B: A fetches B's bundle from B's bundle endpoint (https_spiffe), B's current bundle
# as the initial one; waits until A stored it.
federate() {
	s "$2" bundle show >"$T/$2.pem"
	s "$1" federation create --trust-domain "$2" \
		--bundle-endpoint-url "https://127.0.0.1:${EP[$2]}/" --profile https_spiffe \
		--endpoint-spiffe-id "spiffe://$2/lanyard/server" --trust-bundle "$T/$2.pem" >/dev/null
	wait_for 30 has_bundle "$1" "$2" || fail "$1 did not fetch $2's bundle"
}

# start_agent_td NAME: an agent of trust domain NAME attested with a join token; sets
# AGENT_SOCK_OF[NAME] and AGENT_ID_OF[NAME].
start_agent_td() {
	local n=$1 tok
	tok=$(s "$n" token generate --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	s "$n" bundle show >"$T/$n-bootstrap.pem"
	AGENT_SOCK_OF[$n]="$T/$n-agent/api.sock"
	AGENT_ID_OF[$n]="spiffe://$n/lanyard/agent/join_token/$tok"
	cat >"$T/$n-agent.json" <<JSON
{
  "trust_domain": "$n",
  "server_address": "127.0.0.1",
  "server_port": ${NODEP[$n]},
  "trust_bundle_path": "$T/$n-bootstrap.pem",
  "data_dir": "$T/$n-agent/data",
  "socket_path": "${AGENT_SOCK_OF[$n]}",
  "http_port": $(free_port),
  "log_level": "debug"
}
JSON
	"$BIN/lanyard-agent" run --config "$T/$n-agent.json" --join-token "$tok" \
		>>"$T/agent-$n.log" 2>&1 &
	PIDS+=("$!")
	wait_for 30 test -S "${AGENT_SOCK_OF[$n]}" || fail "the agent of $n did not start"
}
