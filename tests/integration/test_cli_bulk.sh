#!/usr/bin/env bash
# Entries by the thousand: "entry create --data FILE" (one transaction, errors by index, stdin),
# "entry count" / "agent count", "entry show --page-size/--page-token" over 100,000 entries, and
# text tables that fit 120 columns while --output json keeps the full values.
source "$(dirname "$0")/lib.sh"
count() { srv entry count --output json | $PY -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }

start_server
AG=spiffe://$TD/agent/a
LONG=spiffe://$TD/$(printf 'very-long-path-segment/%.0s' 1 2 3 4 5)workload

# ---- a batch from a file: created together, shown in a table that fits 120 columns
cat >"$T/batch.json" <<JSON
{"entries": [
 {"spiffe_id": "spiffe://$TD/b/1", "parent_id": "$AG", "selectors": ["unix:uid:1"]},
 {"spiffe_id": "$LONG", "parent_id": "$AG", "selectors": ["unix:uid:2", "unix:gid:2"],
  "dns_names": ["w.example.org"], "x509_svid_ttl": 600},
 {"spiffe_id": "spiffe://$TD/b/3", "parent_id": "$AG", "selectors": ["unix:uid:3"], "hint": "three"}
]}
JSON
expect_rc 0 srv entry create --data "$T/batch.json"
grep -q "Created 3 entries in one transaction" "$T/out.txt" || fail "batch: $(cat "$T/out.txt")"
[ "$(count)" = 3 ] || fail "count after batch: $(count)"
srv entry show >"$T/table.txt"
$PY -c 'import sys
bad = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if len(l) > 120]
sys.exit("too wide: %r" % bad if bad else 0)' "$T/table.txt" || fail "table wider than 120 columns"
grep -q "…" "$T/table.txt" || fail "long SPIFFE ID not shortened: $(cat "$T/table.txt")"
srv entry show --output json | grep -q "\"$LONG\"" || fail "JSON does not carry the full SPIFFE ID"
ok "entry create --data: 3 entries, table within 120 columns, full IDs in JSON"

# ---- refused entries are named by index and nothing is created
cat >"$T/bad.json" <<JSON
{"entries": [
 {"spiffe_id": "spiffe://$TD/fine", "parent_id": "$AG", "selectors": ["unix:uid:9"]},
 {"spiffe_id": "spiffe://$TD/lanyard/impostor", "parent_id": "$AG", "selectors": ["unix:uid:9"]},
 {"spiffe_id": "spiffe://other.org/x", "parent_id": "$AG", "selectors": ["unix:uid:9"]},
 {"spiffe_id": "spiffe://$TD/nosel", "parent_id": "$AG"},
 {"spiffe_id": "spiffe://$TD/x", "parent_id": "$AG", "selectors": ["unix:uid:9"], "colour": "red"},
 {"spiffe_id": "spiffe://$TD/forged", "parent_id": "$AG", "selectors": ["unix:uid:9"], "managed": true}
]}
JSON
expect_rc 1 srv entry create --data "$T/bad.json"
grep -q 'entries\[5\]: "managed"' "$T/err.txt" || fail "a managed entry by hand: $(cat "$T/err.txt")"
for i in 1 2 3 4 5; do grep -q "entries\[$i\]" "$T/err.txt" || fail "entry $i not named: $(cat "$T/err.txt")"; done
grep -q "entries\[0\]" "$T/err.txt" && fail "the valid entry was reported: $(cat "$T/err.txt")"
grep -q "reserved" "$T/err.txt" && grep -q "colour" "$T/err.txt" || fail "reasons missing: $(cat "$T/err.txt")"
[ "$(count)" = 3 ] || fail "a refused batch created entries: $(count)"
# A duplicate of a stored entry, found inside the transaction, and one within the batch.
printf '{"entries":[{"spiffe_id":"spiffe://%s/new","parent_id":"%s","selectors":["unix:uid:5"]},
 {"spiffe_id":"spiffe://%s/b/3","parent_id":"%s","selectors":["unix:uid:3"]}]}' "$TD" "$AG" "$TD" "$AG" >"$T/dup.json"
expect_rc 1 srv entry create --data "$T/dup.json"
grep -q "entries\[1\]: .*already exists" "$T/err.txt" || fail "stored duplicate: $(cat "$T/err.txt")"
printf '{"entries":[{"spiffe_id":"spiffe://%s/d","parent_id":"%s","selectors":["unix:uid:5"]},
 {"spiffe_id":"spiffe://%s/d","parent_id":"%s","selectors":["unix:uid:5"]}]}' "$TD" "$AG" "$TD" "$AG" >"$T/dup2.json"
expect_rc 1 srv entry create --data "$T/dup2.json"
grep -q "entries\[1\]: same SPIFFE ID, parent ID and selectors as entry 0" "$T/err.txt" ||
	fail "duplicate within the batch: $(cat "$T/err.txt")"
[ "$(count)" = 3 ] || fail "a refused batch created entries: $(count)"
echo '{"entries": [' >"$T/broken.json"
expect_rc 1 srv entry create --data "$T/broken.json"
grep -q "broken.json.*line" "$T/err.txt" || fail "bad JSON not located: $(cat "$T/err.txt")"
expect_rc 1 srv entry create --data "$T/batch.json" --hint x
grep -q -- "--data cannot be combined with --hint" "$T/err.txt" || fail "flag mix: $(cat "$T/err.txt")"
ok "refused entries named by index (validation and duplicates); nothing created"

# ---- round trip: what "entry show --output json" prints is what --data reads (stdin)
srv entry show --output json >"$T/dump.json"
for id in $($PY -c 'import json,sys; print(" ".join(e["id"] for e in json.load(open(sys.argv[1]))["entries"]))' "$T/dump.json"); do
	srv entry delete --id "$id" >/dev/null
done
[ "$(count)" = 0 ] || fail "entries left after delete"
srv entry create --data - --output json <"$T/dump.json" >"$T/re.json" || fail "re-create from stdin"
$PY - "$T/dump.json" "$T/re.json" <<'PY' || fail "round trip changed the entries"
import json, sys
a, b = (json.load(open(p))["entries"] for p in sys.argv[1:3])
key = lambda e: {k: v for k, v in e.items() if k not in ("id", "revision", "created_at")}
assert sorted(map(json.dumps, map(key, a))) == sorted(map(json.dumps, map(key, b))), (a, b)
assert not set(e["id"] for e in a) & set(e["id"] for e in b)
PY
ok "entry show --output json | entry create --data - recreates the same entries"

# ---- counts
[ "$(srv entry count --output json | tr -d ' \n')" = '{"count":3}' ] || fail "entry count json"
srv entry count | grep -qx "3 entries" || fail "entry count text: $(srv entry count)"
[ "$(srv agent count --output json | tr -d ' \n')" = '{"count":0}' ] || fail "agent count json"
ok "entry count and agent count"

# ---- 100,000 entries, created in ten batches, read a page at a time
N=100000
$PY - "$T" "$TD" "$AG" <<'PY'
import json, sys
t, td, ag = sys.argv[1:4]
for part in range(10):
    es = [{"spiffe_id": f"spiffe://{td}/bulk/{i}", "parent_id": ag,
           "selectors": [f"unix:uid:{i}"] + (["tag:seventh"] if i % 7 == 0 else [])}
          for i in range(part * 10000, (part + 1) * 10000)]
    json.dump({"entries": es}, open(f"{t}/bulk{part}.json", "w"))
PY
t0=$(date +%s.%N)
for part in 0 1 2 3 4 5 6 7 8 9; do
	srv entry create --data "$T/bulk$part.json" --output json >/dev/null || fail "bulk batch $part"
done
t1=$(date +%s.%N)
[ "$(count)" = $((N + 3)) ] || fail "count after bulk: $(count)"
echo "# created $N entries in 10 batches in $(echo "$t1 - $t0" | bc) s"

# Every page through the CLI; the pages together hold every entry once.
tok="" pages=0
: >"$T/ids.txt"
while :; do
	pages=$((pages + 1))
	[ $pages -le 200 ] || fail "paging did not end"
	srv entry show --page-size 2000 ${tok:+--page-token "$tok"} --output json >"$T/page.json" ||
		fail "page $pages"
	tok=$($PY - "$T/page.json" "$T/ids.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert len(d["entries"]) <= 2000, len(d["entries"])
assert "next_page_token" in d
with open(sys.argv[2], "a") as f:
    for e in d["entries"]:
        f.write(e["id"] + "\n")
print(d["next_page_token"])
PY
) || fail "page $pages malformed"
	[ -n "$tok" ] || break
done
t2=$(date +%s.%N)
[ "$(wc -l <"$T/ids.txt")" = $((N + 3)) ] || fail "pages held $(wc -l <"$T/ids.txt") entries"
[ "$(sort -u "$T/ids.txt" | wc -l)" = $((N + 3)) ] || fail "an entry was repeated across pages"
echo "# read $((N + 3)) entries in $pages pages of 2000 in $(echo "$t2 - $t1" | bc) s"
# A filtered listing pages too; the text form says how to get the next page.
srv entry show --selector tag:seventh --page-size 500 >"$T/out.txt"
grep -q "^500 entries" "$T/out.txt" && grep -q "Next page: --page-token " "$T/out.txt" ||
	fail "filtered text page: $(tail -3 "$T/out.txt")"
expect_rc 1 srv entry show --page-token not-a-token
grep -q "invalid page_token" "$T/err.txt" || fail "bad token: $(cat "$T/err.txt")"
expect_rc 1 srv entry show --page-size 0
grep -q -- "--page-size" "$T/err.txt" || fail "bad page size: $(cat "$T/err.txt")"
ok "100,000 entries read in pages: each once, in order; bad tokens refused"

# ---- all of them at once: "entry show --output json" prints the listing as it streams in, in
# bounded memory (not the ~30 MB document held and re-indented), byte for byte the server's
# document indented as jansson's JSON_INDENT(2) (Python's indent=2 is the same form here).
curl -sf --unix-socket "$ADMIN" http://localhost/v1/entries >"$T/raw.json" || fail "raw listing"
$PY - "$BIN/lanyard-server" "$ADMIN" "$T" <<'PY' || fail "the full listing through the CLI"
import json, os, resource, subprocess, sys
srv, admin, t = sys.argv[1:4]
def peak_kib(args, out):
    # ru_maxrss of the children so far: the small listing runs first, so the second figure is
    # the larger of the two.
    with open(out, "wb") as f:
        subprocess.run([srv, "entry", "show", "--output", "json", "--socket", admin] + args,
                       stdout=f, check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
small = peak_kib(["--page-size", "1"], t + "/one.json")
large = peak_kib([], t + "/all.json")
raw = open(t + "/raw.json", encoding="utf-8").read()
got = open(t + "/all.json", encoding="utf-8").read()
doc = json.loads(raw)
assert len(doc["entries"]) == 100003, len(doc["entries"])
assert got == json.dumps(doc, indent=2) + "\n", "the CLI's output differs"
print("# the CLI's peak RSS: %d KiB for one entry, %d KiB for %d (document %d KiB, printed %d KiB)"
      % (small, large, len(doc["entries"]), len(raw) // 1024, len(got) // 1024))
assert large - small < len(raw) // 1024 // 4, "the CLI's memory grew with the listing"
PY
ok "100,003 entries in one listing: the CLI's JSON is the server's document indented, its memory bounded"
