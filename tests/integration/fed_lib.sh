# Helpers of the federation tests (sourced after lib.sh): servers of several trust domains with
# bundle endpoints on loopback, each with its own data_dir, admin socket and log.
declare -A EP HTTPP
# start_td NAME [extra JSON members]: a server for trust domain NAME with a bundle endpoint
# (refresh hint 5 s); its config in $T/NAME.json, its log in $T/server-NAME.log.
start_td() {
	local n=$1
	mkdir -p "$T/$n"
	EP[$n]=$(free_port)
	HTTPP[$n]=$(free_port)
	cat >"$T/$n.json" <<JSON
{
  "trust_domain": "$n",
  "data_dir": "$T/$n/data",
  "bind_address": "127.0.0.1",
  "bind_port": $(free_port),
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
	PIDS+=("$!")
	wait_for 30 "$BIN/lanyard-server" bundle show --socket "$T/$n/admin.sock" ||
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

