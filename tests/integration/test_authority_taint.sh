#!/usr/bin/env bash
# Forced CA rotation and revocation (lanyard-server authority ...): a server and 3 agents serving
# 100 entries. prepare + activate + taint: every agent re-issues every SVID the tainted authority
# signed (its own included) within a short jittered window; revoke is refused before the agents
# are clear of it and accepted after, and the bundle loses it. A workload fetches throughout
# without one failure. Prints BENCH the time from taint to every SVID re-issued (target <= 30 s).
source "$(dirname "$0")/lib.sh"

N_AGENTS=3
N_ENTRIES=${N_ENTRIES:-100}
UID_SEL="unix:uid:$(id -u)"

jq_py() { $PY -c "import json,sys; d=json.load(sys.stdin); $1"; }

write_server_config
start_server

# Agent i: its own config, data dir, socket and HTTP port; the join token in a 0600 file.
srv bundle show >"$T/bootstrap.pem"
AGENT_IDS=()
for i in $(seq 1 $N_AGENTS); do
	port=$(free_port)
	cat >"$T/agent$i.json" <<JSON
{
  "trust_domain": "$TD",
  "server_address": "127.0.0.1",
  "server_port": $SERVER_PORT,
  "trust_bundle_path": "$T/bootstrap.pem",
  "data_dir": "$T/agent$i/data",
  "socket_path": "$T/agent$i/api.sock",
  "http_port": $port,
  "log_level": "debug"
}
JSON
	tok=$(new_token)
	printf '%s' "$tok" >"$T/token$i"
	chmod 600 "$T/token$i"
	"$BIN/lanyard-agent" run --config "$T/agent$i.json" --join-token-file "$T/token$i" \
		>>"$T/agent$i.log" 2>&1 &
	PIDS+=("$!")
	AGENT_IDS+=("spiffe://$TD/lanyard/agent/join_token/$tok")
done
for i in $(seq 1 $N_AGENTS); do
	wait_for 30 grep -q "connected to server" "$T/agent$i.log" || fail "agent $i did not connect"
done
ok "$N_AGENTS agents attested"

# The entries, through the admin API in one process (a CLI process per entry is slow under the
# sanitizers); entry k belongs to agent k mod N_AGENTS.
$PY - "$ADMIN" "$TD" "$N_ENTRIES" "$UID_SEL" "${AGENT_IDS[@]}" <<'PY' || fail "entry creation"
import http.client, json, socket, sys
sock, td, n, sel, parents = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)
for k in range(1, n + 1):
    c = Conn("localhost")
    body = {"spiffe_id": "spiffe://%s/wl/%d" % (td, k), "parent_id": parents[(k - 1) % len(parents)],
            "selectors": [sel]}
    c.request("POST", "/v1/entries", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 201:
        sys.exit("entry %d: HTTP %d %s" % (k, r.status, r.read()))
    c.close()
PY

# One process polls the three agents' Workload APIs every 0.2 s (this test runs with the entries'
# uid, so it is served every SVID of each agent) until all N_ENTRIES SVIDs are served and signed
# by the authority of fingerprint FP, or TIMEOUT: "wait_all FP TIMEOUT" prints [served, signed].
cat >"$T/poll.py" <<'PY'
import json, sys, time
sys.path.insert(0, sys.argv[1])
import agent_wl, grpc
pb, pbg = agent_wl.stubs()
md = (("workload.spiffe.io", "true"),)
fp, want, timeout, socks = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
stubs = [pbg.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix://" + s)) for s in socks]
def count():
    total = signed = 0
    for stub in stubs:
        try:
            st = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=5)
            r = next(st); st.cancel()
        except grpc.RpcError as e:
            print("fetch:", e.code().name, e.details(), file=sys.stderr)
            continue
        for v in r.svids:
            total += 1
            if agent_wl.issuer_fp(agent_wl.split_der(v.x509_svid)[0],
                                  agent_wl.split_der(v.bundle)) == fp:
                signed += 1
    return total, signed
end = time.monotonic() + timeout
while True:
    c = count()
    if c == (want, want) or time.monotonic() > end:
        break
    time.sleep(0.2)
print(json.dumps(c))
sys.exit(0 if c == (want, want) else 1)
PY
SOCKS=()
for i in $(seq 1 $N_AGENTS); do SOCKS+=("$T/agent$i/api.sock"); done
wait_all() { $PY "$T/poll.py" "$SRC/tests/integration" "$1" "$N_ENTRIES" "$2" "${SOCKS[@]}"; }

auth_json() { srv authority show --output json; }
# x509 authority field: x509_field STATE FIELD
x509_of() { auth_json | jq_py "print(next((a['$2'] for a in d['authorities'] if a['kind']=='x509' and a['state']=='$1' and not a['tainted']), ''))"; }
fp_of_id() { auth_json | jq_py "
import base64,hashlib,re
pem=next(a['certificate'] for a in d['authorities'] if a['kind']=='x509' and a['id']=='$1')
b=re.search(r'-----BEGIN CERTIFICATE-----(.*?)-----END', pem, re.S).group(1)
print(hashlib.sha256(base64.b64decode(''.join(b.split()))).hexdigest())"; }

OLD=$(x509_of active id)
[ -n "$OLD" ] || fail "no active authority in authority show"
OLD_FP=$(fp_of_id "$OLD")
wait_all "$OLD_FP" 120 >"$T/out" ||
	fail "the agents do not serve $N_ENTRIES SVIDs of the first authority: $(cat "$T/out")"
ok "$N_ENTRIES SVIDs served by $N_AGENTS agents, all signed by $OLD"

# show: both kinds of the active authority, certificate PEM and JWT key.
auth_json | jq_py "
x=[a for a in d['authorities'] if a['id']=='$OLD']
assert sorted(a['kind'] for a in x)==['jwt','x509'], x
assert all(a['state']=='active' and a['tainted'] is False for a in x), x
assert all(k in a for a in x for k in ('not_before','not_after'))
assert next(a for a in x if a['kind']=='x509')['certificate'].startswith('-----BEGIN CERTIFICATE-----')
assert next(a for a in x if a['kind']=='jwt')['public_key'].startswith('-----BEGIN PUBLIC KEY-----')
assert next(a for a in x if a['kind']=='jwt')['key_id']" || fail "authority show --output json"
srv authority show | grep -q "$OLD" || fail "authority show (text)"
ok "authority show lists the active authority (x509 certificate, jwt key)"

# A workload fetches throughout, from agent 1.
$PY "$SRC/tests/integration/agent_wl.py" "$T/agent1/api.sock" watch 75 >"$T/watch.json" &
WATCH_PID=$!
PIDS+=("$WATCH_PID")

expect_refusal() { # expect_refusal PATTERN ARGS...: the command fails and says PATTERN
	local pat=$1; shift
	if srv authority "$@" >"$T/out" 2>&1; then fail "authority $* was accepted"; fi
	grep -q "$pat" "$T/out" || fail "authority $*: $(cat "$T/out")"
}
expect_refusal "is active" taint --id "$OLD"
expect_refusal "unknown authority ID" activate --id 0123456789abcdef0123456789abcdef
expect_refusal "not prepared" activate --id "$OLD"
expect_refusal "required" revoke
ok "taint of the active authority, activation of an unknown or active one refused with the reason"

NEW=$(srv authority prepare --output json | jq_py "print(d['prepared'])")
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] || fail "prepare gave no new authority"
[ "$(x509_of prepared id)" = "$NEW" ] || fail "$NEW is not shown prepared"
expect_refusal "already prepared" prepare
srv authority activate --id "$NEW" >/dev/null || fail "activate $NEW"
[ "$(x509_of active id)" = "$NEW" ] || fail "$NEW is not active"
auth_json | jq_py "assert any(a['id']=='$OLD' and a['state']=='old' for a in d['authorities'])" ||
	fail "$OLD did not become old"
NEW_FP=$(fp_of_id "$NEW")
ok "prepare + activate: $NEW signs, $OLD is old"

expect_refusal "not tainted" revoke --id "$OLD"
t0=$(date +%s.%N)
srv authority taint --id "$OLD" >/dev/null || fail "taint $OLD"
expect_refusal "still needed" revoke --id "$OLD"
ok "revoke refused before the agents re-issued: $(cat "$T/out")"

wait_all "$NEW_FP" 120 >"$T/out" ||
	fail "not every SVID was re-issued by $NEW: [served, signed by it] = $(cat "$T/out")"
t1=$(date +%s.%N)
secs=$($PY -c "print('%.1f' % ($t1 - $t0))")
echo "BENCH authority_taint_reissue_s=$secs svids=$N_ENTRIES agents=$N_AGENTS target<=30"
ok "every one of $N_ENTRIES SVIDs re-issued by $NEW ${secs}s after the taint"

for i in $(seq 1 $N_AGENTS); do
	wait_for 60 grep -q "clear of 1 tainted CA authority" "$T/agent$i.log" ||
		fail "agent $i did not acknowledge the taint"
done
revoked() { srv authority revoke --id "$OLD" >/dev/null; }
wait_for 30 revoked || fail "revoke refused after every agent re-issued: $(srv authority revoke --id "$OLD" 2>&1)"
t2=$(date +%s.%N)
echo "BENCH authority_taint_to_revocable_s=$($PY -c "print('%.1f' % ($t2 - $t0))")"
auth_json | jq_py "assert not any(a['id']=='$OLD' for a in d['authorities'])" ||
	fail "$OLD still in authority show"
srv bundle show --format spiffe | jq_py "assert len([k for k in d['keys'] if k['use']=='x509-svid'])==1, d" ||
	fail "the bundle still holds two X.509 authorities"
ok "revoke accepted once every agent was clear; $OLD left the bundle"

# The agents follow the bundle without the revoked authority, and keep serving.
one_cert() { $PY "$SRC/tests/integration/agent_wl.py" "$T/agent2/api.sock" x509 |
	jq_py "assert d['svids'] and all(s['bundle_certs']==1 for s in d['svids'])"; }
wait_for 30 one_cert || fail "agent 2 still serves the revoked authority in its bundle"
ok "agents serve a bundle without $OLD"

wait "$WATCH_PID" || fail "the watching workload failed"
summary=$(cat "$T/watch.json")
echo "# $summary"
echo "$summary" | jq_py "assert d['fetches'] > 50, d; assert not d['failures'], d['failures'][:5]" ||
	fail "the workload saw failures: $summary"
ok "a workload fetched $(echo "$summary" | jq_py "print(d['fetches'])") times without an error"
