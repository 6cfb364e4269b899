#!/usr/bin/env bash
# `lanyard-agent csi`, the CSI node plugin, for real: a real server and agent, the plugin on its
# own socket, and a gRPC client (Debian's python3-grpcio, stubs generated now from
# proto/csi/csi.proto, csiclient.py) calling it as the kubelet does for an ephemeral inline
# volume. Checked: the Identity and Node info calls; NodePublishVolume bind-mounts the agent's
# socket directory read-only (mountinfo says ro, even root cannot create or remove anything
# there, only the socket shows) and a workload of another uid fetches its X509-SVID through
# <target>/api.sock; publishing twice is one mount; the agent restarting is seen
# through the mount; bad requests (relative path, "..", outside the target root, overlapping the
# socket directory, not ephemeral, no volume_id, block access, a multi-node writer mode, no
# capability) get INVALID_ARGUMENT and mount nothing; a file at the target gets
# FAILED_PRECONDITION, another mount there ALREADY_EXISTS (and survives unpublish); calls the
# plugin does not serve get UNIMPLEMENTED; a non-root caller is refused; unpublish unmounts and
# removes the target, twice is OK, and works after a plugin restart (stateless).
# Runs in a private mount namespace (unshare -m), so nothing is left mounted on the host.
if [ ! -x "${LANYARD_BIN:-}/lanyard-server" ] || [ ! -x "${LANYARD_BIN:-}/lanyard-agent" ]; then
	echo "SKIP: lanyard-server or lanyard-agent not built in '${LANYARD_BIN:-}'"
	exit 77
fi
if [ -z "${LANYARD_CSI_NS:-}" ]; then
	if [ "$(id -u)" != 0 ] || ! unshare -m --propagation private true 2>/dev/null; then
		echo "SKIP: needs root and a private mount namespace (unshare -m: CAP_SYS_ADMIN)"
		exit 77
	fi
	LANYARD_CSI_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
# Whatever is still mounted below $T goes before lib.sh's cleanup removes $T (the namespace
# dies with the test anyway; this keeps rm -rf from tripping over busy mount points).
csi_cleanup() {
	local rc=$?
	awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" || true; done
	(exit $rc)
	cleanup
}
trap csi_cleanup EXIT

if ! $PY -c 'import grpc, grpc_tools' 2>/dev/null; then
	skip "$PY lacks grpcio or grpc_tools"
fi
command -v setpriv >/dev/null || skip "needs setpriv to run the workload as another uid"
mkdir -p "$T/probe/a" "$T/probe/b"
mount --bind "$T/probe/a" "$T/probe/b" 2>/dev/null || skip "bind mounts are not permitted here"
umount "$T/probe/b"

CLIENT="$T/csiclient.py"
cp "$SRC/tests/integration/csiclient.py" "$CLIENT"
STUBS="$T/stubs"
mkdir -m 755 "$STUBS"
(cd "$SRC/proto" && $PY -m grpc_tools.protoc -I . --python_out="$STUBS" \
	--grpc_python_out="$STUBS" csi/csi.proto) || fail "stub generation"
export PYTHONDONTWRITEBYTECODE=1

# ---- server, agent (socket in a directory of its own), the plugin
start_server
write_agent_config
SOCK_DIR="$T/run/lanyard"
AGENT_SOCK="$SOCK_DIR/api.sock"
sed -i "s#\"socket_path\": \"[^\"]*\"#\"socket_path\": \"$AGENT_SOCK\"#" "$T/agent.json"
mkdir -m 755 -p "$T/agent" "$T/run"
tok=$(new_token)
start_agent --join-token "$tok"
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
wait_for 20 test -S "$AGENT_SOCK" || fail "agent socket did not appear"

WL_UID=65532
WL_ID="spiffe://$TD/k8s/ns/demo/sa/default"
srv entry create --spiffe-id "$WL_ID" --parent-id "$AGENT_ID" --selector "unix:uid:$WL_UID" >/dev/null

# Short paths: a Unix socket path (target_path/api.sock) has room for 107 bytes.
PODS="$T/kp"
mkdir -p "$PODS"
CSI_SOCK="$T/plugins/csi.lanyard.dev/csi.sock"
start_csi() {
	"$BIN/lanyard-agent" csi --csi-socket "$CSI_SOCK" --workload-socket-dir "$SOCK_DIR" \
		--node-id node-a --target-root "$PODS" --log-level debug >>"$T/csi.log" 2>&1 &
	CSI_PID=$!
	PIDS+=("$CSI_PID")
	wait_for 20 test -S "$CSI_SOCK" || fail "the CSI socket did not appear"
}
start_csi

csi() {
	$PY "$CLIENT" --socket "$CSI_SOCK" --stubs "$STUBS" "$@"
}
# mounts_at PATH: how many mounts have PATH as their mount point (mountinfo field 5).
mounts_at() {
	awk -v p="$1" '$5 == p' /proc/self/mountinfo | wc -l
}
# A target the way the kubelet makes them: the volume's directory exists, "mount" does not.
new_target() {
	local uid=$1
	mkdir -p "$PODS/$uid/volumes/kubernetes.io~csi/spiffe"
	echo "$PODS/$uid/volumes/kubernetes.io~csi/spiffe/mount"
}
fetch_as_workload() {
	setpriv --reuid=$WL_UID --regid=$WL_UID --clear-groups \
		"$BIN/lanyard-agent" api fetch x509 --socket "$1" --output json
}

# ---- Identity and Node info
csi info >"$T/info.json" || fail "info: $(cat "$T/info.json")"
$PY - "$T/info.json" <<'PY' || fail "info: $(cat "$T/info.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["name"] == "csi.lanyard.dev", d
assert d["vendor_version"], d
assert d["probe_has_ready"] and d["ready"], d
assert d["plugin_capabilities"] == 0 and d["node_capabilities"] == 0, d
assert d["node_id"] == "node-a", d
PY
ok "GetPluginInfo, GetPluginCapabilities, Probe (ready), NodeGetCapabilities, NodeGetInfo: $(cat "$T/info.json")"

# ---- publish as the kubelet does; the workload fetches its SVID through the mount
POD_UID=9f1c2a34
TARGET=$(new_target $POD_UID)
VOL="csi-$(printf '%064d' 1)"
csi publish --volume-id "$VOL" --target "$TARGET" --readonly --pod demo/app --pod-uid $POD_UID ||
	fail "NodePublishVolume"
[ "$(mounts_at "$TARGET")" = 1 ] || fail "expected one mount at $TARGET: $(grep "$TARGET" /proc/self/mountinfo)"
awk -v p="$TARGET" '$5 == p { split($6, o, ","); exit (o[1] == "ro" ? 0 : 1) }' /proc/self/mountinfo ||
	fail "the mount is not read-only: $(grep "$TARGET" /proc/self/mountinfo)"
grep -q "published volume $VOL at $TARGET (pod demo/app)" "$T/csi.log" || fail "no publish log line"
ok "NodePublishVolume: $TARGET is a read-only bind of $SOCK_DIR"

wait_for 30 fetch_as_workload "$TARGET/api.sock" >/dev/null || fail "fetch through the mount"
fetch_as_workload "$TARGET/api.sock" >"$T/svid.json" || fail "fetch through the mount"
grep -q "\"$WL_ID\"" "$T/svid.json" || fail "the workload did not get $WL_ID: $(cat "$T/svid.json")"
ok "uid $WL_UID fetched $WL_ID through $TARGET/api.sock"

touch "$TARGET/planted" 2>/dev/null && fail "created a file in the read-only mount"
mkdir "$TARGET/dir" 2>/dev/null && fail "created a directory in the read-only mount"
rm -f "$TARGET/api.sock" 2>/dev/null && fail "removed the socket through the mount"
[ "$(ls -A "$TARGET")" = "api.sock" ] || fail "the mount shows more than the socket: $(ls -A "$TARGET")"
ok "the mount is read-only even for root (no file, no directory, the socket cannot be removed)"

csi publish --volume-id "$VOL" --target "$TARGET" --readonly --pod demo/app ||
	fail "NodePublishVolume again"
[ "$(mounts_at "$TARGET")" = 1 ] || fail "publishing twice stacked mounts"
grep -q "already published volume $VOL" "$T/csi.log" || fail "no 'already published' log line"
ok "NodePublishVolume twice: OK, still one mount"

# A second pod on the node: its own mount, and unpublishing it leaves the first pod's alone.
TARGET_B=$(new_target 0b2d4f61)
csi publish --volume-id "csi-$(printf '%064d' 2)" --target "$TARGET_B" --pod demo/other ||
	fail "NodePublishVolume for a second pod"
fetch_as_workload "$TARGET_B/api.sock" >/dev/null || fail "fetch through the second pod's mount"
csi unpublish --volume-id "csi-$(printf '%064d' 2)" --target "$TARGET_B" ||
	fail "NodeUnpublishVolume for the second pod"
[ -e "$TARGET_B" ] && fail "the second pod's target is still there"
[ "$(mounts_at "$TARGET")" = 1 ] || fail "unpublishing the second pod touched the first"
fetch_as_workload "$TARGET/api.sock" >/dev/null || fail "the first pod lost its socket"
ok "two pods: separate mounts, unpublishing one leaves the other"

# ---- the agent restarts: its new socket appears through the existing mount
stop_agent
[ -S "$TARGET/api.sock" ] && fail "the old socket is still visible after the agent stopped"
start_agent
wait_for 30 fetch_as_workload "$TARGET/api.sock" >/dev/null || fail "fetch after the agent restarted"
ok "the agent restarted: its new socket is served through the same mount"

# ---- bad requests: the right code, nothing mounted or created
bad() {
	local code=$1 what=$2
	shift 2
	csi --expect "$code" publish "$@" >"$T/bad.out" || fail "$what: $(cat "$T/bad.out")"
	echo "   $what: $(cat "$T/bad.out")"
}
T2=$(new_target bad-1)
before=$(wc -l </proc/self/mountinfo)
bad INVALID_ARGUMENT "relative path" --volume-id v1 --target "kp/x/mount"
bad INVALID_ARGUMENT "'..' in the path" --volume-id v1 --target "$PODS/bad-1/../../escape"
bad INVALID_ARGUMENT "'.' in the path" --volume-id v1 --target "$PODS/./bad-1/mount"
bad INVALID_ARGUMENT "'//' in the path" --volume-id v1 --target "$PODS//bad-1/mount"
bad INVALID_ARGUMENT "outside the target root" --volume-id v1 --target "$T/elsewhere"
bad INVALID_ARGUMENT "no target path" --volume-id v1
bad INVALID_ARGUMENT "not ephemeral" --volume-id v1 --target "$T2" --no-ephemeral
bad INVALID_ARGUMENT "ephemeral=false" --volume-id v1 --target "$T2" --ephemeral-value false
bad INVALID_ARGUMENT "no volume_id" --target "$T2"
bad INVALID_ARGUMENT "block access" --volume-id v1 --target "$T2" --access block
bad INVALID_ARGUMENT "no access type" --volume-id v1 --target "$T2" --access none
bad INVALID_ARGUMENT "no volume_capability" --volume-id v1 --target "$T2" --no-capability
bad INVALID_ARGUMENT "MULTI_NODE_MULTI_WRITER" --volume-id v1 --target "$T2" --mode 5
bad INVALID_ARGUMENT "access mode UNKNOWN" --volume-id v1 --target "$T2" --mode 0
[ "$(wc -l </proc/self/mountinfo)" = "$before" ] || fail "a refused request mounted something"
[ -e "$T2" ] && fail "a refused request created $T2"
[ -e "$T/elsewhere" ] && fail "a refused request created $T/elsewhere"
ok "bad requests: INVALID_ARGUMENT, nothing mounted, nothing created"

# The socket directory itself below the target root: a target inside it or above it is refused.
# (This second plugin takes its socket from CSI_ENDPOINT, as the CSI spec has supervisors say.)
CSI_ENDPOINT="unix://$T/csi2.sock" "$BIN/lanyard-agent" csi --workload-socket-dir "$PODS/shared" \
	--node-id node-b --target-root "$PODS" >>"$T/csi2.log" 2>&1 &
CSI2=$!
PIDS+=("$CSI2")
wait_for 20 test -S "$T/csi2.sock" || fail "the second plugin did not start"
for t in "$PODS/shared/mount" "$PODS/shared"; do
	$PY "$CLIENT" --socket "$T/csi2.sock" --stubs "$STUBS" --expect INVALID_ARGUMENT publish \
		--volume-id v1 --target "$t" >"$T/bad.out" || fail "overlap $t: $(cat "$T/bad.out")"
done
[ -e "$PODS/shared/mount" ] && fail "a target inside the socket directory was created"
kill "$CSI2"
wait "$CSI2" || fail "the second plugin did not stop cleanly"
ok "targets overlapping the socket directory: INVALID_ARGUMENT (plugin socket from CSI_ENDPOINT)"

echo data >"$T2"
csi --expect FAILED_PRECONDITION publish --volume-id v1 --target "$T2" >"$T/bad.out" ||
	fail "a file at the target: $(cat "$T/bad.out")"
[ "$(cat "$T2")" = data ] || fail "the file at the target was changed"
rm -f "$T2"
mkdir "$T2"
mount -t tmpfs -o size=1m lanyard-test "$T2"
csi --expect ALREADY_EXISTS publish --volume-id v1 --target "$T2" >"$T/bad.out" ||
	fail "another mount at the target: $(cat "$T/bad.out")"
csi --expect ALREADY_EXISTS unpublish --volume-id v1 --target "$T2" >"$T/bad.out" ||
	fail "unpublish of another mount: $(cat "$T/bad.out")"
[ "$(mounts_at "$T2")" = 1 ] || fail "the other mount at $T2 was touched"
umount "$T2"
ok "a file at the target: FAILED_PRECONDITION; another mount there: ALREADY_EXISTS, left alone"

for m in /csi.v1.Node/NodeStageVolume /csi.v1.Node/NodeGetVolumeStats \
	/csi.v1.Controller/CreateVolume; do
	csi --expect UNIMPLEMENTED raw "$m" >"$T/raw.out" || fail "$m: $(cat "$T/raw.out")"
done
ok "calls the plugin does not serve: UNIMPLEMENTED"

# ---- only root may call (the socket is 0600; the plugin checks SO_PEERCRED as well)
[ "$(stat -c %a "$CSI_SOCK")" = 600 ] || fail "the CSI socket is not 0600"
chmod 755 "$(dirname "$CSI_SOCK")"
chmod 666 "$CSI_SOCK"
setpriv --reuid=$WL_UID --regid=$WL_UID --clear-groups $PY "$CLIENT" --socket "$CSI_SOCK" \
	--stubs "$STUBS" --timeout 5 info >"$T/nonroot.out" 2>&1 &&
	fail "uid $WL_UID called the plugin: $(cat "$T/nonroot.out")"
grep -q "refused a connection from uid $WL_UID" "$T/csi.log" || fail "the refusal was not logged"
chmod 600 "$CSI_SOCK"
chmod 750 "$(dirname "$CSI_SOCK")"
csi info >/dev/null || fail "root can no longer call the plugin"
ok "a non-root caller is refused even on a world-writable socket; root still works"

# ---- the plugin restarts: mounts stay, and the new one unpublishes them
kill "$CSI_PID"
wait "$CSI_PID" || fail "the plugin did not stop cleanly"
[ -e "$CSI_SOCK" ] && fail "the plugin left its socket behind"
[ "$(mounts_at "$TARGET")" = 1 ] || fail "stopping the plugin unmounted the volume"
fetch_as_workload "$TARGET/api.sock" >/dev/null || fail "the workload lost the socket when the plugin stopped"
start_csi
ok "the plugin stopped (SIGTERM) and restarted: the mount stayed in use"

csi unpublish --volume-id "$VOL" --target "$TARGET" || fail "NodeUnpublishVolume"
[ "$(mounts_at "$TARGET")" = 0 ] || fail "still mounted after unpublish"
[ -e "$TARGET" ] && fail "unpublish left $TARGET"
fetch_as_workload "$TARGET/api.sock" >/dev/null 2>&1 && fail "the socket is still reachable at the old target"
csi unpublish --volume-id "$VOL" --target "$TARGET" || fail "NodeUnpublishVolume twice"
grep -q "unpublished volume $VOL from $TARGET (was not mounted)" "$T/csi.log" ||
	fail "no log line for the second unpublish"
csi --expect INVALID_ARGUMENT unpublish --target "$TARGET" >/dev/null || fail "unpublish without volume_id"
csi --expect INVALID_ARGUMENT unpublish --volume-id "$VOL" --target "$PODS/../x" >/dev/null ||
	fail "unpublish with '..'"
ok "NodeUnpublishVolume: unmounted, target removed; twice is OK; bad requests refused"

[ -S "$AGENT_SOCK" ] || fail "the agent's socket is gone"
fetch_as_workload "$AGENT_SOCK" >/dev/null || fail "the agent stopped serving"
echo "PASS"
