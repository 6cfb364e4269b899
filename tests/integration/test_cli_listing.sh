#!/usr/bin/env bash
# "entry show --output json" prints the server's listing as it streams in, and a listing that
# breaks off (the server's mid-stream error: the connection closes before the document ends, or
# the document is not closed, or is not a listing at all) makes the CLI exit 1 with a message
# saying the listing is incomplete, while a complete listing and the server's error answers
# behave as before. The broken answers come from a stand-in admin server on a Unix socket; the
# real server is checked last.
source "$(dirname "$0")/lib.sh"

FAKE="$T/fake.sock"
$PY - "$FAKE" >"$T/fake.log" 2>&1 <<'PY' &
import socket, sys, urllib.parse
path = sys.argv[1]
head = '{"entries":[{"id":"a","spiffe_id":"spiffe://example.org/w","selectors":["unix:uid:1"]},'
answers = {
    # The server's mid-stream error: chunked, and the connection closes without the last chunk.
    "cut": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n%s\r\n" % (len(head), head.encode()),
    # A complete HTTP answer whose document does not end.
    "unclosed": head.encode(),
    "array": b'[{"id":"a"}]',
    "mismatch": b'{"entries":[{"id":"a"}}]}',
    "error": b'{"error":"the datastore is unavailable"}',
    "fine": b'{"entries":[{"id":"a","dns_names":[],"x":{},"hint":null,"n":-1}],"next_page_token":""}\n',
}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(8)
for _ in range(64):
    c, _ = s.accept()
    req = b""
    while b"\r\n\r\n" not in req and len(req) < 65536:
        d = c.recv(4096)
        if not d:
            break
        req += d
    target = req.split(b" ")[1].decode() if req.count(b" ") >= 2 else "/"
    q = urllib.parse.parse_qs(urllib.parse.urlparse(target).query)
    mode = q.get("parent_id", ["spiffe://example.org/fine"])[0].rsplit("/", 1)[-1]
    body = answers.get(mode, answers["fine"])
    if mode == "cut":
        c.sendall(body)
    else:
        status = "500 Internal Server Error" if mode == "error" else "200 OK"
        c.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n%s" % (status.encode(), len(body), body))
    c.close()
PY
PIDS+=($!)
wait_for 20 test -S "$FAKE" || fail "the stand-in server did not start"
fake() { "$BIN/lanyard-server" entry show --output json --socket "$FAKE" --parent-id "spiffe://$TD/$1"; }

expect_rc 0 fake fine
$PY - "$T/out.txt" <<'PY' || fail "complete listing: $(cat "$T/out.txt")"
import json, sys
got = open(sys.argv[1], encoding="utf-8").read()
doc = {"entries": [{"id": "a", "dns_names": [], "x": {}, "hint": None, "n": -1}], "next_page_token": ""}
assert got == json.dumps(doc, indent=2) + "\n", got
PY
ok "a complete listing is printed re-indented, exit 0"

for mode in cut unclosed mismatch array; do
	expect_rc 1 fake "$mode"
	grep -q "error: the server's listing is incomplete or malformed" "$T/err.txt" ||
		fail "$mode: no clear message: $(cat "$T/err.txt")"
	echo "# $mode: $(cat "$T/err.txt")"
done
expect_rc 1 fake cut
grep -q "ended before the document did" "$T/err.txt" || fail "cut: no reason: $(cat "$T/err.txt")"
grep -q '"spiffe_id": "spiffe://example.org/w"' "$T/out.txt" || fail "cut: the entries before the cut"
expect_rc 1 fake unclosed
grep -q "truncated" "$T/err.txt" || fail "unclosed: the reason is not given: $(cat "$T/err.txt")"
expect_rc 1 fake array
grep -q "not a JSON object" "$T/err.txt" || fail "array: $(cat "$T/err.txt")"
[ ! -s "$T/out.txt" ] || fail "array: printed $(cat "$T/out.txt")"
ok "a listing cut short, unclosed, unbalanced or not an object: exit 1, the reason on stderr"

expect_rc 1 fake error
grep -qx "error: the datastore is unavailable" "$T/err.txt" || fail "error answer: $(cat "$T/err.txt")"
[ ! -s "$T/out.txt" ] || fail "error answer printed $(cat "$T/out.txt")"
ok "an error answer prints the server's message, exit 1"

# The real server: the same listing through the CLI and as the server sent it.
start_server
for i in 1 2 3; do
	srv entry create --spiffe-id "spiffe://$TD/w/$i" --parent-id "spiffe://$TD/agent/a" \
		--selector "unix:uid:$i" --hint "caf$(printf '\xc3\xa9') \"$i\"" >/dev/null
done
srv entry show --output json >"$T/cli.json" || fail "entry show --output json"
curl -sf --unix-socket "$ADMIN" http://localhost/v1/entries >"$T/raw.json" || fail "raw listing"
$PY - "$T/raw.json" "$T/cli.json" <<'PY' || fail "the CLI's listing differs from the server's"
import json, sys
raw, cli = (open(p, encoding="utf-8").read() for p in sys.argv[1:3])
want = json.dumps(json.loads(raw), indent=2, ensure_ascii=False) + "\n"
assert cli == want, (cli, want)
assert len(json.loads(cli)["entries"]) == 3
PY
ok "the real server's listing through the CLI: the same document, indented"
