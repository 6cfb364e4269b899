#!/usr/bin/env bash
# `cmake --install` installs both daemons, the systemd units and the sample configurations:
# with --prefix DIR everything stays inside DIR (examples in DIR/etc/lanyard); with the default
# prefix and DESTDIR the examples land in /etc/lanyard, where the units read the configuration.
# The units' ExecStart names the installed binaries, and the sample configs load.
source "$(dirname "$0")/lib.sh"

BUILD=${LANYARD_BUILD:?LANYARD_BUILD must point at the build directory}

# ---- --prefix
cmake --install "$BUILD" --prefix "$T/root" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "cmake --install --prefix"; }
for f in bin/lanyard-server bin/lanyard-agent lib/systemd/system/lanyard-server.service \
	lib/systemd/system/lanyard-agent.service etc/lanyard/server.json.example \
	etc/lanyard/agent.json.example; do
	[ -e "$T/root/$f" ] || fail "--prefix: $f not installed: $(find "$T/root" -type f | head -20)"
done
ok "cmake --install --prefix: binaries, units and examples under the prefix"

# ---- DESTDIR with the system prefix /usr/local
DESTDIR="$T/dest" cmake --install "$BUILD" --prefix /usr/local >"$T/install2.log" 2>&1 ||
	{ cat "$T/install2.log"; fail "DESTDIR install"; }
for f in usr/local/bin/lanyard-server usr/local/bin/lanyard-agent \
	usr/local/lib/systemd/system/lanyard-server.service \
	usr/local/lib/systemd/system/lanyard-agent.service \
	etc/lanyard/server.json.example etc/lanyard/agent.json.example; do
	[ -e "$T/dest/$f" ] || fail "DESTDIR: $f not installed: $(find "$T/dest" -type f | head -20)"
done
ok "DESTDIR + /usr/local: sample configs in /etc/lanyard"

# ---- the units start the installed binaries with the installed config paths
for d in server agent; do
	u="$T/dest/usr/local/lib/systemd/system/lanyard-$d.service"
	exe=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$u")
	[ -x "$T/dest$exe" ] || fail "$d unit: ExecStart $exe is not the installed binary"
	grep -q "^ExecStart=.* --config /etc/lanyard/$d.json$" "$u" || fail "$d unit: config path"
	# A non-root daemon holds only ambient capabilities, each allowed by its bounding set.
	bound=$(sed -n 's/^CapabilityBoundingSet=//p' "$u")
	amb=$(sed -n 's/^AmbientCapabilities=//p' "$u")
	[ "$bound" = "$amb" ] || fail "$d unit: AmbientCapabilities '$amb' differ from the bounding set '$bound'"
done
grep -q '"admin_socket_group": "lanyard"' "$T/dest/etc/lanyard/server.json.example" &&
	grep -q '^Group=lanyard$' "$T/dest/usr/local/lib/systemd/system/lanyard-server.service" ||
	fail "server unit and example disagree on the admin group"
ok "units: installed binaries, /etc/lanyard configs, ambient capabilities match the bounding set"

# ---- the sample configurations are valid for the installed daemons (paths moved into $T)
NODE_PORT=$(free_port)
$PY - "$T" "$NODE_PORT" <<'PY'
import json, sys
t, port = sys.argv[1], int(sys.argv[2])
s = json.load(open(t + "/dest/etc/lanyard/server.json.example"))
s.update(data_dir=t + "/s/data", admin_socket=t + "/s/admin.sock", bind_address="127.0.0.1", bind_port=port, http_port=0,
         admin_socket_group="root")
json.dump(s, open(t + "/s.json", "w"))
a = json.load(open(t + "/dest/etc/lanyard/agent.json.example"))
a.update(server_address="127.0.0.1", server_port=port, data_dir=t + "/a/data", socket_path=t + "/a/api.sock",
         http_port=0, trust_bundle_path=t + "/bundle.pem", join_token_file=t + "/agent.token")
json.dump(a, open(t + "/a.json", "w"))
PY
"$T/root/bin/lanyard-server" run --config "$T/s.json" >"$T/s.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_for 20 "$T/root/bin/lanyard-server" bundle show --socket "$T/s/admin.sock" || fail "server from the example did not start: $(cat "$T/s.log")"
"$T/root/bin/lanyard-server" bundle show --socket "$T/s/admin.sock" >"$T/bundle.pem"
(umask 077; "$T/root/bin/lanyard-server" token generate --socket "$T/s/admin.sock" --output json |
	$PY -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$T/agent.token")
"$T/root/bin/lanyard-agent" run --config "$T/a.json" >"$T/a.log" 2>&1 &
PIDS+=("$!")
wait_for 20 grep -q "attested as" "$T/a.log" || fail "agent from the example did not attest: $(cat "$T/a.log")"
ok "the sample configurations load"
