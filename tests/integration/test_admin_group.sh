#!/usr/bin/env bash
# admin_socket_group: the admin socket becomes 0660 owned by that group; a caller in the group
# (primary or supplementary) may use the CLI, another user may not (the attack is performed and
# fails) while root and the group keep working. Without the key the socket stays 0600.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to run clients as other users"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: setpriv missing"; exit 77; }

G=$(getent group 4 | cut -d: -f1)   # "adm" on Debian: any existing group not of the test user
GID=4
NOBODY=65534
mkdir -p "$T/server" && chmod 755 "$T/server"
write_server_config "\"admin_socket_group\": \"$G\""
start_server

mode=$(stat -c '%a %g' "$ADMIN")
[ "$mode" = "660 $GID" ] || fail "admin socket is '$mode', expected '660 $GID'"
ok "admin socket is 0660, group $G"

as() { # as UID GID GROUPS CMD...: runs CMD as that user (GROUPS: comma list or "-")
	local u=$1 g=$2 gs=$3
	shift 3
	if [ "$gs" = - ]; then
		setpriv --reuid="$u" --regid="$g" --clear-groups "$@"
	else
		setpriv --reuid="$u" --regid="$g" --groups="$gs" "$@"
	fi
}
cli() { "$BIN/lanyard-server" bundle show --socket "$ADMIN"; }

# ---- the attack: a user outside the group
rc=0
as $NOBODY $NOBODY - "$BIN/lanyard-server" token generate --socket "$ADMIN" >"$T/out.txt" 2>"$T/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "a user outside $G got a token: $(cat "$T/out.txt")"
! grep -q "Token:" "$T/out.txt" || fail "token printed to an outsider"
echo "  outsider: $(cat "$T/err.txt")"
ok "a user outside the group is refused"

# ---- group members: supplementary and primary
as $NOBODY $NOBODY $GID "$BIN/lanyard-server" bundle show --socket "$ADMIN" >"$T/out.txt" ||
	fail "a member (supplementary group) was refused"
grep -q "BEGIN CERTIFICATE" "$T/out.txt" || fail "member got no bundle"
as $NOBODY $GID - "$BIN/lanyard-server" token generate --socket "$ADMIN" >"$T/out.txt" ||
	fail "a member (primary group) was refused"
grep -q "Token:" "$T/out.txt" || fail "member got no token"
cli >/dev/null || fail "root refused"
ok "members of $G (primary or supplementary) and root are served"

# ---- an unknown group is a clear error naming the key
stop_server
rm -f "$T/server.json"
write_server_config '"admin_socket_group": "no-such-group-lanyard"'
rc=0
timeout 30 "$BIN/lanyard-server" run --config "$T/server.json" >"$T/bad.log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "admin_socket_group 'no-such-group-lanyard': no such group" "$T/bad.log" ||
	fail "unknown group: exit $rc: $(cat "$T/bad.log")"
ok "unknown admin_socket_group: exit 1 naming the key"

# ---- without the key: 0600, and group members are refused
rm -f "$T/server.json"
write_server_config
start_server
[ "$(stat -c '%a' "$ADMIN")" = 600 ] || fail "default admin socket mode $(stat -c '%a' "$ADMIN")"
rc=0
as $NOBODY $GID $GID "$BIN/lanyard-server" bundle show --socket "$ADMIN" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "without admin_socket_group a group member was served"
ok "without admin_socket_group: 0600, root and the server's uid only"
