# The CA keys live only in the signer process (server/signer.h), seen from an attacker who can
# read the network-facing process's memory: its /proc/PID/mem (every readable mapping) holds
# neither the private scalar (big- or little-endian, as a bignum stores it) nor the PKCS#8 DER
# nor the PEM of any CA key file, X.509 or JWT, before and after it signed with them, while
# legitimate X.509 and JWT mints keep working and verify against the bundle. The scanner proves
# it can see: it finds the CA certificate (public, held by the server) in the same scan, and the
# PEM in its own memory. Killing the signer makes the server exit non-zero with one clear line.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || skip "openssl is not installed"
$PY -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"

start_server
KEYDIR="$T/server/data/ca"
wait_for 20 sh -c "ls '$KEYDIR'/*.jwt.key" || fail "no CA key files in $KEYDIR"
SIGNER_PID=$(pgrep -P "$SERVER_PID" | head -n 1 || true)
[ -n "$SIGNER_PID" ] || fail "the server has no signer child process"
# It holds no descriptor of the server's but stderr: only its socketpairs.
for fd in /proc/"$SIGNER_PID"/fd/*; do
	n=${fd##*/}
	t=$(readlink "$fd" || true)
	[ "$n" = 2 ] || [[ "$t" == socket:* ]] || fail "the signer holds fd $n -> $t"
done
ok "server $SERVER_PID started its signer $SIGNER_PID (no descriptor but its channels and stderr)"

ID="spiffe://$TD/w/signer"
mint() {
	expect_rc 0 srv x509 mint --spiffe-id "$ID" --output json
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"w").write(d["certificate"])' \
		"$T/out.txt" "$T/leaf.pem"
	srv bundle show >"$T/bundle.pem"
	openssl verify -CAfile "$T/bundle.pem" "$T/leaf.pem" >/dev/null || fail "minted SVID does not verify"
	expect_rc 0 srv jwt mint --spiffe-id "$ID" --audience a --output json
}

# scan PID: fails when a CA private key is in PID's memory; prints what it scanned.
scan() {
	$PY - "$1" "$KEYDIR" "$T/bundle.pem" <<'PY'
import glob, re, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography import x509

pid, keydir, bundle = sys.argv[1], sys.argv[2], sys.argv[3]
needles = {}
for path in sorted(glob.glob(keydir + "/*.key")):
    pem = open(path, "rb").read()
    key = serialization.load_pem_private_key(pem, None)
    der = serialization.load_pem_private_key(pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        n = (key.curve.key_size + 7) // 8
        scalar = key.private_numbers().private_value.to_bytes(n, "big")
    else:
        d = key.private_numbers().d
        scalar = d.to_bytes((d.bit_length() + 7) // 8, "big")
    body = b"".join(l for l in pem.splitlines() if not l.startswith(b"-----"))
    name = path.rsplit("/", 1)[1]
    needles[name + " scalar"] = scalar
    needles[name + " scalar (little-endian)"] = scalar[::-1]
    needles[name + " PKCS#8 DER"] = der
    needles[name + " PEM"] = body[:48]
assert len(needles) >= 8, "expected an X.509 and a JWT key"
certs = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                   open(bundle, "rb").read(), re.S)
ca_der = x509.load_pem_x509_certificate(certs[0]).public_bytes(serialization.Encoding.DER)

def scan(p):
    found, scanned, skipped = set(), 0, 0
    ca_seen = False
    with open(f"/proc/{p}/maps") as maps, open(f"/proc/{p}/mem", "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if f[1][0] != "r" or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
                continue
            # Sanitizer shadow and reserved allocator space span terabytes of untouched
            # pages; the data they mirror is in the heap mappings, which are scanned.
            if hi - lo > (1 << 30):
                skipped += 1
                continue
            off = lo
            while off < hi:
                n = min(hi - off, 16 << 20)
                try:
                    mem.seek(off)
                    buf = mem.read(n)
                except (OSError, ValueError, OverflowError):
                    break
                scanned += len(buf)
                for k, v in needles.items():
                    if v in buf:
                        found.add(k)
                ca_seen = ca_seen or ca_der in buf
                off += n
    return found, scanned, skipped, ca_seen

if pid == "self":
    found, scanned, _, _ = scan("self")
    assert any(k.endswith("PEM") for k in found), f"the scanner cannot see the PEM it read: {found}"
    print(f"self-check: the scanner finds {len(found)} needles in its own memory")
    sys.exit(0)
found, scanned, skipped, ca_seen = scan(pid)
print(f"scanned {scanned >> 20} MiB of process {pid} ({skipped} huge reserved mappings skipped),"
      f" {len(needles)} needles from {len(needles) // 4} key files")
assert ca_seen, "the scanner did not find the CA certificate the server holds: it cannot see"
assert not found, f"CA private key material in process {pid}: {sorted(found)}"
PY
}

mint
scan self || fail "memory scanner self-check"
scan "$SERVER_PID" || fail "the network-facing process holds a CA private key (after start)"
ok "no CA key (X.509 or JWT; scalar, DER or PEM) in the server's memory after start"

for _ in 1 2 3; do mint; done
expect_rc 0 srv authority prepare --output json
new_id=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["prepared"])' "$T/out.txt")
expect_rc 0 srv authority activate --id "$new_id"
mint
scan "$SERVER_PID" || fail "the network-facing process holds a CA private key (after signing and a rotation)"
ok "still no CA key after signing X.509 and JWT SVIDs and rotating to a new authority"

# The attack on availability: the signer is killed. The server says so once and exits non-zero
# (its supervisor restarts both); it does not go on answering without a way to sign.
kill -9 "$SIGNER_PID"
rc=0
for _ in $(seq 1 100); do
	kill -0 "$SERVER_PID" 2>/dev/null || break
	sleep 0.1
done
wait "$SERVER_PID" || rc=$?
[ "$rc" -ne 0 ] || fail "the server exited 0 after losing its signer"
n=$(grep -c "signer: the CA key process (pid $SIGNER_PID) is gone" "$T/server.log" || true)
[ "$n" = 1 ] || fail "expected one log line about the lost signer, got $n: $(tail -n 5 "$T/server.log")"
ok "killing the signer: the server logs one line and exits with status $rc"

# Restarted by its supervisor, it loads the same authorities through a new signer.
start_server
mint
ok "a restarted server signs with the same keys through a new signer"
