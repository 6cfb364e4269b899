#!/usr/bin/env bash
# An issued X509-SVID seen by the OpenSSL CLI, an implementation that shares nothing with Lanyard's
# wolfSSL: the chain verifies against the bundle (and not against another CA with the same name),
# the extensions follow the X509-SVID rules, serial and validity are as configured, the key file
# is private and matches the certificate, the bundle holds a proper CA. The agent's own SVID,
# persisted in its data_dir, is checked the same way.
if [ ! -x "${LANYARD_BIN:-}/lanyard-server" ] || [ ! -x "${LANYARD_BIN:-}/lanyard-agent" ]; then
	echo "SKIP: lanyard-server or lanyard-agent not built in '${LANYARD_BIN:-}'"
	exit 0
fi
source "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null 2>&1 || {
	echo "SKIP: the openssl CLI is not installed"
	exit 0
}

start_server_and_agent

uid=$(id -u)
WEB_ID="spiffe://$TD/interop/web"
TTL=120
D="$T/svid"
t0=$(date +%s)
srv entry create --output json --spiffe-id "$WEB_ID" --parent-id "$AGENT_ID" \
	--selector "unix:uid:$uid" --dns-name web.example.org --x509-svid-ttl $TTL >/dev/null ||
	fail "entry create"
wait_for 30 "$BIN/lanyard-agent" api fetch x509 --socket "$AGENT_SOCK" --write "$D" ||
	fail "the agent serves no X509-SVID for uid $uid"
t_fetch=$(date +%s)
for f in svid.0.pem svid.0.key bundle.0.pem; do
	[ -s "$D/$f" ] || fail "api fetch x509 --write did not write $f"
done
ok "X509-SVID written by 'lanyard-agent api fetch x509 --write'"

# split_pem FILE PREFIX: writes each certificate of FILE to PREFIX.N.pem, prints the count.
split_pem() {
	awk -v p="$2" '/-----BEGIN CERTIFICATE-----/ { n++; f = p "." n ".pem" }
		f { print > f } /-----END CERTIFICATE-----/ { close(f); f = "" }
		END { print n + 0 }' "$1"
}
# ext CERT NAME: the lines of one extension in `openssl x509 -text`, header included.
ext() {
	awk -v h="X509v3 $2:" '{ s = $0; sub(/^ +/, "", s); ind = length($0) - length(s) }
		on && ind > hind { print; next } { on = 0 }
		index(s, h) == 1 { on = 1; hind = ind; print }' "$1.text"
}
# uri_sans CERT: the URI SANs, one a line.
uri_sans() {
	ext "$1" "Subject Alternative Name" | tail -n +2 | tr ',' '\n' | sed -n 's/^ *URI://p'
}
epoch() {
	date -u -d "$1" +%s
}

# ---- the chain verifies against the bundle, strictly, for both TLS purposes and the DNS name
n_chain=$(split_pem "$D/svid.0.pem" "$T/chain")
[ "$n_chain" -ge 1 ] || fail "svid.0.pem holds no certificate"
LEAF="$T/chain.1.pem"
out=$(openssl verify -CAfile "$D/bundle.0.pem" "$D/svid.0.pem" 2>&1) ||
	fail "openssl verify against the bundle: $out"
[ "$out" = "$D/svid.0.pem: OK" ] || fail "openssl verify said: $out"
untrusted=()
[ "$n_chain" -gt 1 ] && untrusted=(-untrusted "$D/svid.0.pem")
for purpose in sslserver sslclient; do
	out=$(openssl verify -x509_strict -purpose $purpose -verify_hostname web.example.org \
		-CAfile "$D/bundle.0.pem" "${untrusted[@]}" "$LEAF" 2>&1) ||
		fail "openssl verify -x509_strict -purpose $purpose: $out"
done
ok "openssl verify: OK against bundle.0.pem (chain of $n_chain), also -x509_strict for sslserver/sslclient and web.example.org"

# ---- the leaf's extensions
openssl x509 -in "$LEAF" -noout -text >"$LEAF.text" || fail "openssl x509 -text on the leaf"
mapfile -t uris < <(uri_sans "$LEAF")
[ "${#uris[@]}" -eq 1 ] || fail "the leaf has ${#uris[@]} URI SANs: ${uris[*]:-none}"
[ "${uris[0]}" = "$WEB_ID" ] || fail "the leaf's URI SAN is ${uris[0]}, expected $WEB_ID"
ext "$LEAF" "Subject Alternative Name" | grep -q 'DNS:web\.example\.org\(,\|$\)' ||
	fail "no DNS:web.example.org SAN: $(ext "$LEAF" "Subject Alternative Name")"
subject=$(openssl x509 -in "$LEAF" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
if [ -z "$subject" ]; then
	ext "$LEAF" "Subject Alternative Name" | head -n 1 | grep -q critical ||
		fail "empty subject but the SAN extension is not critical"
fi
ok "leaf SANs: exactly one URI SAN $WEB_ID, plus DNS:web.example.org (subject '$subject')"

ext "$LEAF" "Basic Constraints" | grep -q '^ *CA:FALSE$' ||
	fail "leaf basicConstraints: $(ext "$LEAF" "Basic Constraints" | tr '\n' ' ')"
ku=$(ext "$LEAF" "Key Usage")
head -n 1 <<<"$ku" | grep -q 'X509v3 Key Usage: critical' || fail "leaf keyUsage not critical: $ku"
grep -q 'Digital Signature' <<<"$ku" || fail "leaf keyUsage lacks Digital Signature: $ku"
if grep -qE 'Certificate Sign|CRL Sign' <<<"$ku"; then
	fail "leaf keyUsage allows signing certificates or CRLs: $ku"
fi
eku=$(ext "$LEAF" "Extended Key Usage" | tail -n +2 | sed 's/^ *//')
[ "$eku" = "TLS Web Server Authentication, TLS Web Client Authentication" ] ||
	fail "leaf extKeyUsage: '$eku'"
ok "leaf: CA:FALSE, keyUsage critical with Digital Signature and no Certificate Sign, EKU serverAuth+clientAuth"

# ---- serial and validity
serial=$(openssl x509 -in "$LEAF" -noout -serial | sed 's/^serial=//')
[[ "$serial" =~ ^[0-9A-F]{32}$ ]] || fail "serial $serial is not 16 bytes"
nb=$(epoch "$(openssl x509 -in "$LEAF" -noout -startdate | sed 's/^notBefore=//')")
na=$(epoch "$(openssl x509 -in "$LEAF" -noout -enddate | sed 's/^notAfter=//')")
now=$(date +%s)
[ "$nb" -le "$now" ] || fail "notBefore is $((nb - now)) s in the future"
# Issued after the entry was created, give or take a backdating of a few seconds for clock skew.
[ "$nb" -ge $((t0 - 30)) ] || fail "notBefore is $((t0 - nb)) s before the entry existed"
life=$((na - nb))
[ "$life" -ge $TTL ] && [ "$life" -le $((TTL + 15)) ] ||
	fail "lifetime is $life s for --x509-svid-ttl $TTL (expected $TTL..$((TTL + 15)))"
[ "$na" -gt "$t_fetch" ] || fail "the served SVID had already expired"
ok "serial $serial (16 bytes); notBefore $((now - nb)) s ago (entry created $((now - t0)) s ago), lifetime $life s for TTL $TTL"

# ---- the key
mode=$(stat -c %a "$D/svid.0.key")
[ "$mode" = 600 ] || fail "svid.0.key has mode $mode, expected 600"
kpub=$(openssl pkey -in "$D/svid.0.key" -pubout) || fail "openssl pkey cannot read svid.0.key"
cpub=$(openssl x509 -in "$LEAF" -pubkey -noout) || fail "openssl x509 -pubkey"
[ -n "$kpub" ] && [ "$kpub" = "$cpub" ] || fail "svid.0.key does not match the leaf's public key"
# A signature made with the key verifies with the certificate's public key.
printf 'lanyard openssl interop' >"$T/msg"
openssl dgst -sha256 -sign "$D/svid.0.key" -out "$T/msg.sig" "$T/msg" || fail "signing with svid.0.key"
openssl x509 -in "$LEAF" -pubkey -noout >"$T/leaf.pub"
openssl dgst -sha256 -verify "$T/leaf.pub" -signature "$T/msg.sig" "$T/msg" >/dev/null ||
	fail "a signature by svid.0.key does not verify with the leaf's key"
ok "svid.0.key: mode 0600, same public key as the certificate, signs for it"

# ---- the bundle: CA certificates of the trust domain
n_ca=$(split_pem "$D/bundle.0.pem" "$T/ca")
[ "$n_ca" -ge 1 ] || fail "bundle.0.pem holds no certificate"
for i in $(seq 1 "$n_ca"); do
	c="$T/ca.$i.pem"
	openssl x509 -in "$c" -noout -text >"$c.text" || fail "bundle certificate $i does not parse"
	ext "$c" "Basic Constraints" | grep -q '^ *CA:TRUE' ||
		fail "bundle certificate $i is not a CA: $(ext "$c" "Basic Constraints" | tr '\n' ' ')"
	mapfile -t uris < <(uri_sans "$c")
	[ "${#uris[@]}" -eq 1 ] && [ "${uris[0]}" = "spiffe://$TD" ] ||
		fail "bundle certificate $i URI SANs: ${uris[*]:-none}, expected spiffe://$TD"
	ku=$(ext "$c" "Key Usage")
	head -n 1 <<<"$ku" | grep -q critical || fail "bundle certificate $i keyUsage not critical: $ku"
	grep -q 'Certificate Sign' <<<"$ku" || fail "bundle certificate $i lacks keyCertSign: $ku"
	ca_na=$(epoch "$(openssl x509 -in "$c" -noout -enddate | sed 's/^notAfter=//')")
	if openssl verify -partial_chain -CAfile "$c" "$LEAF" >/dev/null 2>&1 && [ "$na" -gt "$ca_na" ]; then
		fail "the leaf outlives its issuer (bundle certificate $i) by $((na - ca_na)) s"
	fi
done
ok "bundle: $n_ca CA certificate(s) with URI SAN spiffe://$TD and critical keyCertSign; the leaf does not outlive its issuer"

# ---- another CA with Lanyard's name and key identifier, so OpenSSL takes it for the issuer and
# only the signature can tell them apart, does not verify the SVID
ca_subject=$(openssl x509 -in "$T/ca.1.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
ca_skid=$(ext "$T/ca.1.pem" "Subject Key Identifier" | sed -n '2s/^ *//p')
skid_ext=()
[ -n "$ca_skid" ] && skid_ext=(-addext "subjectKeyIdentifier=$ca_skid")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/${ca_subject:-CN=Other CA}" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" "${skid_ext[@]}" \
	-keyout "$T/other.key" -out "$T/other.pem" >/dev/null 2>&1 || fail "openssl req -x509 for another CA"
if out=$(openssl verify -CAfile "$T/other.pem" "$D/svid.0.pem" 2>&1); then
	fail "openssl verify accepted the SVID with an unrelated CA: $out"
fi
grep -q 'verification failed' <<<"$out" || fail "unexpected output against the other CA: $out"
# With -partial_chain the impostor is an acceptable anchor as it is, so with the same name and key
# identifier only the leaf's signature is left to fail: error 7, certificate signature failure.
if [ -n "$ca_skid" ]; then
	if out2=$(openssl verify -partial_chain -CAfile "$T/other.pem" "$D/svid.0.pem" 2>&1); then
		fail "openssl verify -partial_chain accepted the SVID with an unrelated CA: $out2"
	fi
	grep -q 'error 7 at 0 depth' <<<"$out2" || fail "expected a signature failure: $out2"
	out=$out2
fi
ok "openssl verify fails with another CA named '$ca_subject' (key id ${ca_skid:-none}): $(grep -m1 -o 'error [0-9]* at [^:]*: .*' <<<"$out")"

# ---- the agent's own SVID in its data_dir
DATA="$T/agent/data"
[ "$(stat -c %a "$DATA")" = 700 ] || fail "the agent's data_dir has mode $(stat -c %a "$DATA")"
mapfile -t pems < <(find "$DATA" -maxdepth 1 -type f -name '*.pem' | sort)
[ "${#pems[@]}" -gt 0 ] || fail "no PEM file in the agent's data_dir $DATA"
agent_cert="" agent_key=""
for f in "${pems[@]}"; do
	if grep -q -- '-----BEGIN .*PRIVATE KEY-----' "$f"; then
		m=$(stat -c %a "$f")
		[ "$m" = 600 ] || fail "$f holds a private key and has mode $m"
		[ -z "$agent_key" ] || fail "two key files in the data_dir: $agent_key and $f"
		agent_key=$f
	fi
	if grep -q -- '-----BEGIN CERTIFICATE-----' "$f"; then
		n=$(split_pem "$f" "$T/dd.$(basename "$f")")
		openssl x509 -in "$T/dd.$(basename "$f").1.pem" -noout -text >"$T/dd.$(basename "$f").1.pem.text" ||
			fail "$f: the first certificate does not parse"
		if uri_sans "$T/dd.$(basename "$f").1.pem" | grep -q '/lanyard/agent/'; then
			[ -z "$agent_cert" ] || fail "two agent SVIDs in the data_dir: $agent_cert and $f"
			agent_cert=$f agent_leaf="$T/dd.$(basename "$f").1.pem" agent_n=$n
		fi
	fi
done
[ -n "$agent_cert" ] || fail "no agent SVID among ${pems[*]}"
[ -n "$agent_key" ] || fail "no agent private key among ${pems[*]}"
mapfile -t uris < <(uri_sans "$agent_leaf")
[ "${#uris[@]}" -eq 1 ] && [ "${uris[0]}" = "$AGENT_ID" ] ||
	fail "the agent SVID's URI SANs are ${uris[*]:-none}, expected $AGENT_ID"
untrusted=()
[ "$agent_n" -gt 1 ] && untrusted=(-untrusted "$agent_cert")
out=$(openssl verify -x509_strict -purpose sslclient -CAfile "$D/bundle.0.pem" "${untrusted[@]}" \
	"$agent_leaf" 2>&1) || fail "the agent SVID does not verify against the bundle: $out"
ext "$agent_leaf" "Basic Constraints" | grep -q '^ *CA:FALSE$' || fail "the agent SVID is not CA:FALSE"
[ "$(openssl pkey -in "$agent_key" -pubout)" = "$(openssl x509 -in "$agent_leaf" -pubkey -noout)" ] ||
	fail "$agent_key does not match the agent SVID"
ok "agent SVID $(basename "$agent_cert") in data_dir: $AGENT_ID, verifies against the bundle, key $(basename "$agent_key") is 0600 and matches"

echo "PASS"
