#!/usr/bin/env bash
# The HTML status pages of both daemons in a real browser (headless Chromium from Debian's
# packages): the page renders what /status says (SPIFFE IDs, readiness, authorities), counts each
# lifetime down every second, and shows an agent that is not attested yet as such.
# Set LANYARD_SCREENSHOT_DIR to keep screenshots of the pages.
source "$(dirname "$0")/lib.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || fail "chromium is not installed (Debian package: chromium)"
"$BIN/lanyard-agent" healthcheck --help >/dev/null 2>&1 ||
	fail "lanyard-agent has no healthcheck command: agent_http is not wired into agent/main.c"

# browse URL OUT [extra flags]: the DOM after 5 s of the page's (virtual) time.
browse() {
	local url=$1 out=$2
	shift 2
	local prof
	prof=$(mktemp -d "$T/chromium.XXXXXX")
	timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--disable-dev-shm-usage --enable-logging=stderr --v=0 --user-data-dir="$prof" \
		--virtual-time-budget=5000 "$@" \
		--dump-dom "$url" >"$out" 2>>"$T/chromium.log" || fail "chromium failed on $url"
	[ -s "$out" ] || fail "chromium gave an empty DOM for $url"
}
screenshot() {
	[ -n "${LANYARD_SCREENSHOT_DIR:-}" ] || return 0
	local prof
	prof=$(mktemp -d "$T/chromium.XXXXXX")
	timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--disable-dev-shm-usage --user-data-dir="$prof" --virtual-time-budget=5000 \
		--window-size=1400,1100 --screenshot="$LANYARD_SCREENSHOT_DIR/$2" "$1" \
		2>>"$T/chromium.log" || true
}
# text_of FILE: the visible text of a DOM dump, one element per line.
text_of() { sed -e 's/<[^>]*>/\n/g' "$1" | sed -e '/^[[:space:]]*$/d'; }
# left_of FILE SUBSTRING: the seconds a countdown shows in the SVID table row holding SUBSTRING.
left_of() {
	$PY - "$1" "$2" <<'PY'
import re, sys
dom = open(sys.argv[1]).read()
row = [r for r in re.findall(r"<tr>.*?</tr>", dom, re.S) if sys.argv[2] in r]
assert row, "no row with " + sys.argv[2]
m = re.search(r'class="badge countdown[^"]*"[^>]*>(\d+[dhms](?: \d+[dhms])*) left<', row[0])
assert m, "no countdown in " + row[0]
secs = 0
for n, u in re.findall(r"(\d+)([dhms])", m.group(1)):
    secs += int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u]
print(secs)
PY
}

# ---- an agent that is not attested yet (its server is down)
start_server
write_agent_config
tok=$(new_token)
AGENT_ID="spiffe://$TD/lanyard/agent/join_token/$tok"
srv entry create --spiffe-id "spiffe://$TD/web" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$(id -u)" --x509-svid-ttl 600 --dns-name web.example.org \
	--dns-name www.example.org --hint web-frontend >/dev/null
srv entry create --spiffe-id "spiffe://$TD/db" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$(id -u)" --selector "unix:gid:$(id -g)" >/dev/null
stop_server
start_agent --join-token "$tok"
wait_for 10 curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/live" >/dev/null || fail "agent /live"
sleep 1
browse "http://127.0.0.1:$AGENT_HTTP_PORT/" "$T/agent0.html"
text_of "$T/agent0.html" >"$T/agent0.txt"
grep -qx "not ready" "$T/agent0.txt" || fail "the page does not say 'not ready': $(head -20 "$T/agent0.txt")"
grep -q "not attested yet" "$T/agent0.txt" || fail "the page does not say 'not attested yet'"
grep -qx "failing" "$T/agent0.txt" || fail "no failing check shown"
grep -q "No SVID held" "$T/agent0.txt" || fail "the page does not say 'No SVID held'"
grep -q "No trust bundle yet" "$T/agent0.txt" || fail "the page does not say 'No trust bundle yet'"
screenshot "http://127.0.0.1:$AGENT_HTTP_PORT/" agent-not-attested.png
ok "agent page before attestation: not ready, not attested, no SVID, no bundle"

# ---- ready: SPIFFE IDs, selectors, countdowns
start_server
wait_for 30 curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/ready" >/dev/null || fail "agent never ready"
wait_for 10 bash -c "curl -s http://127.0.0.1:$AGENT_HTTP_PORT/status | $PY -c 'import json,sys; assert len(json.load(sys.stdin)[\"svids\"])==2'" ||
	fail "the agent does not hold both SVIDs"
t1=$(date +%s)
browse "http://127.0.0.1:$AGENT_HTTP_PORT/" "$T/agent1.html"
text_of "$T/agent1.html" >"$T/agent1.txt"
grep -qx "ready" "$T/agent1.txt" || fail "the page does not say 'ready'"
grep -qx "Lanyard agent" "$T/agent1.txt" || fail "no title"
for id in "$AGENT_ID" "spiffe://$TD/web" "spiffe://$TD/db" "unix:uid:$(id -u)" "unix:gid:$(id -g)"; do
	grep -qxF "$id" "$T/agent1.txt" || fail "the page does not show $id"
done
grep -q "X509-SVIDs (2)" "$T/agent1.txt" || fail "SVID count"
grep -qxF "DNS: web.example.org, www.example.org" "$T/agent1.txt" || fail "DNS names not shown"
grep -qxF "hint: web-frontend" "$T/agent1.txt" || fail "hint not shown"
[ "$(grep -c "^hint: " "$T/agent1.txt")" = 1 ] || fail "a hint shown for an SVID without one"
grep -qE '^[0-9]+m [0-9]{2}s left$' "$T/agent1.txt" || fail "no countdown: $(grep left "$T/agent1.txt")"
grep -qE '^2[0-3]h [0-9]{2}m [0-9]{2}s left$' "$T/agent1.txt" || fail "no bundle authority countdown"
grep -q "connected" "$T/agent1.txt" || fail "server state not shown"
fp=$(srv bundle show | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
grep -qxF "$fp" "$T/agent1.txt" || fail "bundle fingerprint $fp not on the page"
l1=$(left_of "$T/agent1.html" "spiffe://$TD/web") || fail "no countdown for spiffe://$TD/web"
[ "$l1" -gt 500 ] && [ "$l1" -le 600 ] || fail "web SVID countdown shows $l1 s for a 600 s TTL"
# The countdown follows the clock: a page loaded later shows less time left, by about the time
# that passed (each load runs 5 s of the page's virtual time, which its clock also sees).
sleep 3
browse "http://127.0.0.1:$AGENT_HTTP_PORT/" "$T/agent2.html"
t2=$(date +%s)
l2=$(left_of "$T/agent2.html" "spiffe://$TD/web") || fail "no countdown on the second load"
[ "$l2" -lt "$l1" ] && [ $((l1 - l2)) -le $((t2 - t1 + 6)) ] ||
	fail "countdown went from $l1 to $l2 in $((t2 - t1)) s"
# A caller no entry names (uid 65534) is refused; the page says who and why.
setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null ||
	fail "setpriv cannot switch to uid 65534 (run as root)"
chmod o+x "$T" "$T/agent"
setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN/lanyard-agent" api fetch x509 \
	--socket "$AGENT_SOCK" >"$T/nobody.out" 2>&1 && fail "uid 65534 got an SVID"
grep -q "PermissionDenied\|no identity" "$T/nobody.out" || fail "uid 65534: $(cat "$T/nobody.out")"
browse "http://127.0.0.1:$AGENT_HTTP_PORT/" "$T/denied.html"
text_of "$T/denied.html" >"$T/denied.txt"
grep -qx "Recent refusals: no identity issued (1)" "$T/denied.txt" || fail "no refusal section"
grep -qx "pid [0-9]* uid 65534 gid 65534" "$T/denied.txt" || fail "the refused caller is not shown"
grep -q "unix:uid:65534" "$T/denied.txt" || fail "the refused caller's selectors are not shown"
grep -q "lacks \[unix:uid:$(id -u)" "$T/denied.txt" || fail "why: $(grep lacks "$T/denied.txt")"
grep -qxF "spiffe://$TD/web" "$T/denied.txt" || fail "the entitled SVIDs vanished from the page"
screenshot "http://127.0.0.1:$AGENT_HTTP_PORT/" agent-ready.png
ok "agent page: ready, agent and workload SPIFFE IDs, DNS names and hints, selectors, fingerprint, countdowns that run, recent 'no identity' refusals with the reason"

# ---- the server's page
# A refused attestation (an unknown join token) must appear among the recent refusals.
sed -e "s#$T/agent/#$T/agent2/#g" -e "s#\"http_port\": $AGENT_HTTP_PORT#\"http_port\": 0#" \
	"$T/agent.json" >"$T/agent2.json"
timeout 60 "$BIN/lanyard-agent" run --config "$T/agent2.json" --join-token bogus-token \
	>"$T/agent2.log" 2>&1 && fail "an agent with an unknown join token kept running or succeeded"
grep -q "attestation refused: unknown or reused join token" "$T/server.log" ||
	fail "the server did not log the refusal"
browse "http://127.0.0.1:$SERVER_HTTP_PORT/" "$T/server.html"
text_of "$T/server.html" >"$T/server.txt"
grep -qx "Lanyard server" "$T/server.txt" || fail "server page title"
grep -qx "ready" "$T/server.txt" || fail "server page not ready"
grep -qx "active" "$T/server.txt" || fail "no active authority shown"
grep -qxF "$fp" "$T/server.txt" || fail "authority fingerprint not on the server page"
grep -qE '^2[0-3]h [0-9]{2}m [0-9]{2}s left$' "$T/server.txt" || fail "no authority countdown"
for k in datastore ca node_api; do grep -qx "$k" "$T/server.txt" || fail "check $k not shown"; done
grep -qF "node API: attestation refused: unknown or reused join token" "$T/server.txt" ||
	fail "the refused attestation is not among the recent refusals: $(grep -A3 'Recent refusals' "$T/server.txt")"
grep -qx "Live servers (1)" "$T/server.txt" && grep -qxF "127.0.0.1:$SERVER_PORT" "$T/server.txt" ||
	fail "the live servers and their node API address are not shown"
screenshot "http://127.0.0.1:$SERVER_HTTP_PORT/" server.png
ok "server page: ready, active authority with fingerprint and countdown, checks, live servers with their node API address, recent refusals with their reasons"

# ---- the server's entries and agents: listed, searchable, a page at a time
grep -qxF "spiffe://$TD/web" "$T/server.txt" && grep -qxF "spiffe://$TD/db" "$T/server.txt" ||
	fail "entries not listed on the server page"
grep -qxF "$AGENT_ID" "$T/server.txt" || fail "the agent is not listed on the server page"
browse "http://127.0.0.1:$SERVER_HTTP_PORT/#q=unix:gid:$(id -g)" "$T/search.html"
text_of "$T/search.html" >"$T/search.txt"
grep -qxF "spiffe://$TD/db" "$T/search.txt" || fail "search by selector did not find db"
! grep -qxF "spiffe://$TD/web" "$T/search.txt" || fail "search by selector shows web too"
for i in $(seq 1 60); do echo "{\"spiffe_id\":\"spiffe://$TD/many/$i\",\"parent_id\":\"$AGENT_ID\",\"selectors\":[\"k8s:ns:many\"]}"; done |
	$PY -c 'import json,sys; print(json.dumps({"entries": [json.loads(l) for l in sys.stdin]}))' >"$T/many.json"
srv entry create --data "$T/many.json" >/dev/null || fail "cannot create 60 entries"
browse "http://127.0.0.1:$SERVER_HTTP_PORT/#q=k8s:ns:many" "$T/many.html"
[ "$(grep -c "spiffe://$TD/many/" <(text_of "$T/many.html"))" = 50 ] || fail "a page is not 50 rows"
grep -q "<button>Next</button>" "$T/many.html" || fail "no enabled Next button: $(grep -o '<button[^>]*>Next' "$T/many.html")"
# The pages of /list/entries hold every entry once; a bad token is an error, not a crash.
$PY - "$SERVER_HTTP_PORT" "$TD" <<'PY' || fail "/list/entries paging"
import json, sys, urllib.parse, urllib.request
port, td = sys.argv[1:3]
seen, tok = [], ""
for _ in range(10):
    q = urllib.parse.urlencode({"q": "k8s:ns:many", "page_token": tok})
    d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/list/entries?{q}"))
    seen += [e["spiffe_id"] for e in d["entries"]]
    tok = d["next_page_token"]
    if not tok:
        break
assert sorted(seen) == sorted(f"spiffe://{td}/many/{i}" for i in range(1, 61)), seen
d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/list/entries?page_token=zz"))
assert "error" in d, d
d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/list/agents?q=join_token"))
assert len(d["agents"]) == 1 and d["next_page_token"] == "", d
PY
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SERVER_HTTP_PORT/list/nothing")" = 404 ] ||
	fail "unknown list not 404"
screenshot "http://127.0.0.1:$SERVER_HTTP_PORT/#q=k8s:ns:many" server-lists.png
ok "server page: entries and agents listed, searchable (selector, SPIFFE ID), 50 a page"

# ---- the browser logged no script error on any page (console messages go to its log)
# Console lines look like: INFO:CONSOLE(1)] "Uncaught TypeError: ...", source: http://...
if grep -E 'CONSOLE.*(Uncaught|Refused|Error)' "$T/chromium.log" >"$T/js-errors.txt"; then
	fail "errors in the page: $(head -n 3 "$T/js-errors.txt")"
fi
ok "no script error or refused resource in the browser's console"
