#!/usr/bin/python3
"""Writes the seed corpus of the fuzz harnesses: tests/fuzz/corpus/<harness>/<seed>.

Seeds are valid and near-valid inputs, made with an implementation other than ours (the
cryptography package) so that the harnesses start next to the paths worth reaching. The output is
checked in; run this again only to change the seeds:

    /usr/bin/python3 tests/fuzz/gen_corpus.py [CORPUS_DIR]

Keys are derived from fixed numbers, so certificates, CSRs and keys come out the same on every run
except for their ECDSA signatures (random by nature). Files under corpus/*/regress-* are
regression seeds (inputs that once failed), corpus/*/cov-* inputs that libFuzzer campaigns found
and merged in (they reach code the seeds do not); this script never touches either.
"""

import base64
import datetime
import hashlib
import json
import os
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")

NOT_BEFORE = datetime.datetime(2025, 1, 1)
NOT_AFTER = datetime.datetime(2035, 1, 1)


def write(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clear(harness):
    d = os.path.join(OUT, harness)
    if not os.path.isdir(d):
        return
    for n in os.listdir(d):
        if not n.startswith(("regress-", "cov-")):
            os.unlink(os.path.join(d, n))


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ec_key(curve, n):
    return ec.derive_private_key(n, curve)


# RSA keys cannot be derived from a number; generating one takes a moment and varies.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC256 = ec_key(ec.SECP256R1(), 0x1234567890ABCDEF)
EC384 = ec_key(ec.SECP384R1(), 0xFEDCBA0987654321)
EC256_B = ec_key(ec.SECP256R1(), 0x42)
ED = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def sign_hash(key):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size == 384:
        return hashes.SHA384()
    return hashes.SHA256()


def ski(pub):
    return x509.SubjectKeyIdentifier.from_public_key(pub)


def make_ca(key, cn, spiffe_id=None, issuer=None, issuer_key=None, path_len=None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder()
         .subject_name(name)
         .issuer_name(issuer.subject if issuer else name)
         .public_key(key.public_key())
         .serial_number(int.from_bytes(hashlib.sha256(cn.encode()).digest()[:15], "big"))
         .not_valid_before(NOT_BEFORE)
         .not_valid_after(NOT_AFTER)
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(ski(key.public_key()), critical=False))
    if spiffe_id:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
    signer = issuer_key or key
    return b.sign(signer, sign_hash(signer))


def make_leaf(key, spiffe_id, ca, ca_key, dns=(), extra_uri=None):
    sans = [x509.UniformResourceIdentifier(spiffe_id)]
    if extra_uri:
        sans.append(x509.UniformResourceIdentifier(extra_uri))
    sans += [x509.DNSName(d) for d in dns]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([]) if not dns else
                       x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
         .issuer_name(ca.subject)
         .public_key(key.public_key())
         .serial_number(0x1122334455667788)
         .not_valid_before(NOT_BEFORE)
         .not_valid_after(NOT_AFTER)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=True, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                               ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.SubjectAlternativeName(sans), critical=not dns)
         .add_extension(ski(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    return b.sign(ca_key, sign_hash(ca_key))


def make_csr(key, with_attrs=False):
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lanyard")]))
    if with_attrs:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier("spiffe://example.org/x")]), critical=False)
    return b.sign(key, sign_hash(key)).public_bytes(serialization.Encoding.DER)


def key_der(key, fmt):
    return key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())


def key_pem(key, fmt):
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key, kid=None, use=None):
    pub = key.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        n = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        j = {"kty": "EC", "crv": "P-%d" % pub.curve.key_size,
             "x": b64u(nums.x.to_bytes(n, "big")), "y": b64u(nums.y.to_bytes(n, "big"))}
    else:
        nums = pub.public_numbers()
        j = {"kty": "RSA", "n": b64u(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
             "e": b64u(nums.e.to_bytes(3, "big"))}
    if kid:
        j["kid"] = kid
    if use:
        j["use"] = use
    return j


def jws(key, header, claims):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    data = (h + "." + c).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(sign_hash(key))))
        n = (key.curve.key_size + 7) // 8
        sig = r.to_bytes(n, "big") + s.to_bytes(n, "big")
    else:
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return h + "." + c + "." + b64u(sig)


# ---- protobuf wire format, by hand (no generated Python code needed) ----

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, n):
    return varint(field << 3) + varint(n & 0xFFFFFFFFFFFFFFFF)


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


# The message types of fuzz_proto.c, in the order of its table (the first input byte).
PROTO_TYPES = [
    "AttestRequest", "RenewAgentRequest", "SyncRequest", "SignX509Request", "SignJWTRequest",
    "GetBundleRequest",
    "AttestResponse", "RenewAgentResponse", "SyncResponse", "SignX509Response", "SignJWTResponse",
    "Bundle",
    "X509SVIDRequest", "X509BundlesRequest", "JWTSVIDRequest", "JWTBundlesRequest",
    "ValidateJWTSVIDRequest", "HealthCheckRequest",
    "X509SVIDResponse", "X509BundlesResponse", "JWTSVIDResponse", "JWTBundlesResponse",
    "ValidateJWTSVIDResponse", "HealthCheckResponse",
    "DiscoveryRequest",
    "NodePublishVolumeRequest", "NodeUnpublishVolumeRequest",
]


def proto_seed(type_name, body):
    return bytes([PROTO_TYPES.index(type_name)]) + body


def grpc_frame(msg, flag=0):
    return bytes([flag]) + struct.pack(">I", len(msg)) + msg


# ---- HTTP/2 (for fuzz_grpc_server): frames and HPACK literals without Huffman coding ----

def h2_frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    # Literal header field without indexing, new name (0x00), no Huffman.
    def s(x):
        x = x.encode()
        assert len(x) < 127
        return bytes([len(x)]) + x
    return b"\x00" + s(name) + s(value)


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_request(stream, path, msg, extra=(), end=True, split_data=False):
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "localhost"), ("content-type", "application/grpc"),
            ("te", "trailers")] + list(extra)
    block = b"".join(hpack_literal(n, v) for n, v in hdrs)
    out = h2_frame(1, 0x4, stream, block)  # HEADERS, END_HEADERS
    body = grpc_frame(msg)
    if split_data and len(body) > 2:
        out += h2_frame(0, 0, stream, body[:2])
        body = body[2:]
    out += h2_frame(0, 0x1 if end else 0, stream, body)  # DATA, END_STREAM
    return out


def csi_publish_seeds():
    """NodePublishVolume and NodeUnpublishVolume as the kubelet sends them for an ephemeral
    inline volume (CSI v1 field numbers), and the target paths of fuzz_csi_path."""
    target = "/var/lib/kubelet/pods/9f1c2a34/volumes/kubernetes.io~csi/spiffe/mount"
    ctx = b"".join(pb_bytes(8, pb_bytes(1, k) + pb_bytes(2, v)) for k, v in [
        ("csi.storage.k8s.io/ephemeral", "true"), ("csi.storage.k8s.io/pod.name", "app"),
        ("csi.storage.k8s.io/pod.namespace", "demo")])
    cap = pb_bytes(2, b"") + pb_bytes(3, pb_varint(1, 1))
    write("proto", "csi-publish", proto_seed("NodePublishVolumeRequest", pb_bytes(1, "csi-1") +
                                             pb_bytes(4, target) + pb_bytes(5, cap) +
                                             pb_varint(6, 1) + ctx))
    write("proto", "csi-unpublish", proto_seed("NodeUnpublishVolumeRequest",
                                               pb_bytes(1, "csi-1") + pb_bytes(2, target)))
    clear("csi_path")
    for name, text in [("kubelet-target", target),
                       ("dotdot", "/var/lib/kubelet/pods/x/../../../../etc"),
                       ("unclean", "/var/lib/kubelet/pods//x/./mount/"),
                       ("relative", "var/lib/kubelet/pods/x"),
                       ("overlap-inside", "/run/lanyard/agent/x|/run/lanyard/agent"),
                       ("overlap-above", "/run/lanyard|/run/lanyard/agent"),
                       ("overlap-prefix-only", "/run/lanyardx|/run/lanyard"),
                       ("control-char", "/var/lib/kubelet/pods/a\nb"),
                       ("dots", "/..|/.")]:
        write("csi_path", name, text)


def persist_seeds():
    """fuzz_persist: 8-byte now, 2-byte bundle length, bundle DER, state.json text."""
    clear("persist")
    ca = make_ca(EC256, "Lanyard CA", "spiffe://example.org")
    leaf = make_leaf(EC256_B, "spiffe://example.org/workload", ca, EC256)
    other = make_leaf(EC384, "spiffe://example.org/web", ca, EC256, dns=("web.example.org",))
    now = int(datetime.datetime(2030, 1, 1).timestamp())

    def b64(b):
        return base64.b64encode(b).decode()

    def entry(eid, sid, cert, key, **svid_extra):
        svid = {"spiffe_id": sid, "hint": "", "serial": "1122334455667788",
                "not_before": 0, "not_after": now + 3600, "renew_at": now + 1800,
                "entry_revision": 1, "chain": b64(der(cert)),
                "key": b64(key_der(key, serialization.PrivateFormat.PKCS8))}
        svid.update(svid_extra)
        return {"id": eid, "spiffe_id": sid, "parent_id": "spiffe://example.org/lanyard/agent/x",
                "selectors": ["unix:uid:1000"], "x509_svid_ttl": 3600, "jwt_svid_ttl": 300,
                "dns_names": [], "hint": "", "revision": 1, "svid": svid}

    def seed(name, entries, bundle=der(ca), at=now, tokens=("ab" * 32,)):
        state = json.dumps({"version": 1, "used_tokens": list(tokens), "entries": entries})
        write("persist", name, struct.pack(">QH", at, len(bundle)) + bundle + state.encode())

    good = entry("e1", "spiffe://example.org/workload", leaf, EC256_B)
    web = entry("e2", "spiffe://example.org/web", other, EC384)
    seed("valid", [good, web])
    seed("expired", [good], at=int(NOT_AFTER.timestamp()) + 1)
    seed("no-bundle", [good], bundle=b"")
    seed("swapped-key", [entry("e1", "spiffe://example.org/workload", leaf, EC384)])
    seed("wrong-id", [entry("e1", "spiffe://example.org/other", leaf, EC256_B)])
    seed("meta-id", [entry("e1", "spiffe://example.org/workload", leaf, EC256_B,
                           spiffe_id="spiffe://example.org/lanyard/server",
                           not_after=2 ** 62)])
    seed("garbage-chain", [entry("e1", "spiffe://example.org/workload", leaf, EC256_B,
                                 chain=b64(b"\x30\x03\x02\x01\x00"))])
    seed("bad-b64", [entry("e1", "spiffe://example.org/workload", leaf, EC256_B, chain="!!")])
    seed("dup", [good, good])
    seed("no-svid", [{"id": "e3", "spiffe_id": "spiffe://example.org/x", "selectors": []}])
    seed("bad-version", [], tokens=())
    write("persist", "not-json", struct.pack(">QH", now, 0) + b"{\"version\":1,")


def persist_dir_seeds():
    """fuzz_persist_dir: 8-byte now, then bundle.pem, bundle.json, agent_key.pem,
    agent_svid.pem, state.json, federated_bundles.json separated by NUL (empty: absent)."""
    clear("persist_dir")
    ca = make_ca(EC256, "Lanyard CA", "spiffe://example.org")
    agent = make_leaf(EC256_B, "spiffe://example.org/lanyard/agent/join_token/t", ca, EC256)
    leaf = make_leaf(EC384, "spiffe://example.org/workload", ca, EC256)
    fed_ca = make_ca(EC384, "Two CA", "spiffe://two.test")
    now = int(datetime.datetime(2030, 1, 1).timestamp())
    pkcs8 = serialization.PrivateFormat.PKCS8
    jwks = {"keys": [dict(jwk(EC256_B, kid="k1"), use="jwt-svid")]}
    bundle_json = json.dumps({"trust_domain": "example.org", "sequence": 3, "jwt_bundle": jwks})
    svid = {"spiffe_id": "spiffe://example.org/workload", "not_after": now + 3600,
            "chain": base64.b64encode(der(leaf)).decode(),
            "key": base64.b64encode(key_der(EC384, pkcs8)).decode()}
    state = json.dumps({"version": 1, "used_tokens": ["cd" * 32], "entries": [
        {"id": "e1", "spiffe_id": "spiffe://example.org/workload",
         "parent_id": "spiffe://example.org/lanyard/agent/join_token/t",
         "selectors": ["unix:uid:1000"], "x509_svid_ttl": 3600, "revision": 1, "svid": svid}]})
    fed = {"trust_domain": "two.test", "sequence": 7, "x509": pem(fed_ca).decode(),
           "jwt_bundle": {"keys": [dict(jwk(EC384, kid="t1"), use="jwt-svid")]}}

    def seed(name, parts, at=now):
        files = [parts.get(k, b"") for k in ("bundle.pem", "bundle.json", "agent_key.pem",
                                              "agent_svid.pem", "state.json", "fed")]
        files = [f.encode() if isinstance(f, str) else f for f in files]
        write("persist_dir", name, struct.pack(">Q", at) + b"\0".join(files))

    full = {"bundle.pem": pem(ca), "bundle.json": bundle_json,
            "agent_key.pem": key_pem(EC256_B, pkcs8), "agent_svid.pem": pem(agent),
            "state.json": state, "fed": json.dumps({"bundles": [fed]})}
    seed("full", full)
    seed("expired", full, at=int(NOT_AFTER.timestamp()) + 1)
    seed("empty", {})
    seed("agent-only", {k: full[k] for k in ("bundle.pem", "agent_key.pem", "agent_svid.pem")})
    seed("agent-wrong-key", dict(full, **{"agent_key.pem": key_pem(EC384, pkcs8)}))
    seed("agent-no-bundle", dict(full, **{"bundle.pem": ""}))
    seed("key-not-pkcs8", dict(full, **{"agent_key.pem": key_pem(
        EC256_B, serialization.PrivateFormat.TraditionalOpenSSL)}))
    seed("bundle-json-bad", dict(full, **{"bundle.json": '{"trust_domain":"example.org"}'}))
    seed("fed-own-td", dict(full, fed=json.dumps({"bundles": [dict(fed,
                                                                  trust_domain="example.org")]})))
    seed("fed-leaf", dict(full, fed=json.dumps({"bundles": [dict(fed, x509=pem(leaf).decode(),
                                                                 jwt_bundle={"keys": []})]})))
    seed("fed-jwt-only", dict(full, fed=json.dumps({"bundles": [dict(fed, x509="")]})))
    seed("fed-not-array", dict(full, fed='{"bundles": {}}'))


def k8s_reg_seeds():
    """fuzz_k8s_reg: the k8s_registration rules (JSON array), NUL, a pod or a PodList."""
    clear("k8s_reg")

    def pod(ns="default", name="web-1", uid="0f3c-11", sa="web", node="node-a", labels=None,
            annotations=None, phase="Running"):
        meta = {"namespace": ns, "name": name, "uid": uid, "labels": labels or {"app": "web"}}
        if annotations is not None:
            meta["annotations"] = annotations
        return {"metadata": meta, "spec": {"serviceAccountName": sa, "nodeName": node},
                "status": {"phase": phase}}

    def seed(name, rules, pods):
        write("k8s_reg", name, json.dumps(rules).encode() + b"\0" + json.dumps(pods).encode())

    basic = [{"spiffe_id": "spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"}]
    full = [{"spiffe_id": "spiffe://example.org/k8s/{cluster}/{namespace}/{label:app}",
             "namespaces": ["default", "prod"], "pod_labels": {"app": "web"},
             "dns_names": ["{pod_name}.{namespace}.svc", "{annotation:lanyard/dns}"],
             "x509_svid_ttl": "1h"},
            {"spiffe_id": "spiffe://example.org/pod/{pod_uid}/{node_name}"}]
    seed("basic", basic, pod())
    seed("full", full, {"kind": "PodList", "items": [
        pod(annotations={"lanyard/dns": "web.example.org"}), pod(ns="prod", name="db-0",
                                                                 labels={"app": "db"})]})
    seed("label-dotdot", full, pod(labels={"app": ".."}))
    seed("label-reserved", [{"spiffe_id": "spiffe://example.org/{label:app}/x"}],
         pod(labels={"app": "lanyard"}))
    seed("label-slash", full, pod(labels={"app": "a/b"}))
    seed("missing-label", full, pod(labels={}))
    seed("unscheduled", basic, pod(node=""))
    seed("no-uid", basic, {"metadata": {"namespace": "a", "name": "b"}})
    seed("other-td", [{"spiffe_id": "spiffe://other.org/{pod_name}"}], pod())
    seed("unknown-field", [{"spiffe_id": "spiffe://example.org/{nope}"}], pod())
    seed("unbalanced", [{"spiffe_id": "spiffe://example.org/{pod_name"}], pod())
    seed("bad-ttl", [{"spiffe_id": "spiffe://example.org/x", "x509_svid_ttl": "-1s"}], pod())
    seed("not-array", {"spiffe_id": "spiffe://example.org/x"}, pod())
    seed("long", [{"spiffe_id": "spiffe://example.org/" + "{pod_name}" * 300}],
         pod(name="n" * 250))


def ca_state_seeds():
    """fuzz_ca_state: 8-byte now, flags, state, then 2-byte-length parts: id, cert DER, JWT
    SPKI DER, key file, JWT key file, upstream cert file; the rest is the upstream key file."""
    clear("ca_state")
    pkcs8 = serialization.PrivateFormat.PKCS8
    auth = make_ca(EC256, "Lanyard CA", "spiffe://example.org")
    upstream = make_ca(EC384, "Upstream CA")
    inter = make_ca(EC256, "Lanyard CA", "spiffe://example.org", issuer=upstream,
                    issuer_key=EC384)
    now = int(datetime.datetime(2025, 1, 2).timestamp())
    late = int(datetime.datetime(2034, 12, 1).timestamp())

    def part(b):
        return struct.pack(">H", len(b)) + b

    def seed(name, flags=0, state=1, at=now, rid=b"0123456789abcdef", cert=der(auth),
             jwt_spki=spki(EC256_B), key=key_pem(EC256, pkcs8), jwt_key=key_pem(EC256_B, pkcs8),
             up=b"", up_key=b""):
        write("ca_state", name, struct.pack(">QBB", at, flags, state) + part(rid) + part(cert) +
              part(jwt_spki) + part(key) + part(jwt_key) + part(up) + up_key)

    seed("active")
    seed("active-spki", flags=4)
    seed("prepared", state=0)
    seed("old", state=2)
    seed("tainted", flags=8)
    seed("half-life", at=late)
    seed("shared-peer", flags=1, key=b"", jwt_key=b"")
    seed("wrong-key", key=key_pem(EC384, pkcs8))
    seed("wrong-spki", flags=4, jwt_spki=spki(EC384))
    seed("sec1-key", key=key_pem(EC256, serialization.PrivateFormat.TraditionalOpenSSL))
    seed("no-jwt-key", jwt_key=b"")
    seed("bad-cert", cert=b"\x30\x03\x02\x01\x00")
    seed("empty", rid=b"", cert=b"", jwt_spki=b"", key=b"", jwt_key=b"")
    seed("upstream", flags=2, rid=b"", up=pem(upstream), up_key=key_pem(EC384, pkcs8))
    seed("upstream-inter", flags=2, cert=der(inter), up=pem(upstream),
         up_key=key_pem(EC384, pkcs8))
    seed("upstream-not-ca", flags=2, rid=b"",
         up=pem(make_leaf(EC256_B, "spiffe://example.org/x", auth, EC256)),
         up_key=key_pem(EC256_B, pkcs8))
    seed("upstream-wrong-key", flags=2, rid=b"", up=pem(upstream), up_key=key_pem(EC256, pkcs8))


def server_rows_seeds():
    """fuzz_server_rows: a federation relationship document, or a string list row."""
    clear("server_rows")
    two = make_ca(EC384, "Two CA", "spiffe://two.test")
    rel = {"trust_domain": "two.test", "bundle_endpoint_url": "https://two.test:8443/bundle",
           "bundle_endpoint_profile": "https_spiffe",
           "endpoint_spiffe_id": "spiffe://two.test/lanyard/server",
           "trust_bundle": pem(two).decode(), "created_at": 1735689600,
           "updated_at": 1735689601}
    web = {"trust_domain": "three.test", "bundle_endpoint_url": "https://three.test/",
           "bundle_endpoint_profile": "https_web"}
    for name, doc in [
            ("spiffe", rel), ("web", web),
            ("no-bundle", {k: v for k, v in rel.items() if k != "trust_bundle"}),
            ("id-other-td", dict(rel, endpoint_spiffe_id="spiffe://other.test/x")),
            ("http", dict(web, bundle_endpoint_url="http://three.test/")),
            ("userinfo", dict(web, bundle_endpoint_url="https://u:p@three.test/")),
            ("fragment", dict(web, bundle_endpoint_url="https://three.test/#x")),
            ("bad-profile", dict(web, bundle_endpoint_profile="https_bogus")),
            ("unknown-member", dict(web, extra=1)),
            ("pem-cut", dict(rel, trust_bundle=pem(two).decode()[:200])),
            ("td-uri", dict(web, trust_domain="spiffe://three.test"))]:
        write("server_rows", name, json.dumps(doc))
    write("server_rows", "strv", '["unix:uid:1000","k8s:ns:default"]')
    write("server_rows", "strv-mixed", '["a", 1, null, {"b": 2}, "\\u0000x"]')
    write("server_rows", "strv-empty", "[]")


def main():
    for h in ["spiffeid", "config", "csr", "x509", "jwt", "grpc_deframe", "entry_json", "proto",
              "proc", "kubelet", "grpc_server"]:
        clear(h)
    persist_seeds()
    persist_dir_seeds()
    k8s_reg_seeds()
    ca_state_seeds()
    server_rows_seeds()

    # ---- PKI shared by several harnesses ----
    ca = make_ca(EC256, "Lanyard CA", "spiffe://example.org")
    ca384 = make_ca(EC384, "Lanyard CA 384", "spiffe://example.org")
    rsa_ca = make_ca(RSA_KEY, "RSA CA")
    inter = make_ca(EC256_B, "Intermediate", "spiffe://example.org", issuer=ca, issuer_key=EC256,
                    path_len=0)
    leaf = make_leaf(EC256_B, "spiffe://example.org/workload", ca, EC256)
    leaf_dns = make_leaf(EC384, "spiffe://example.org/web", ca, EC256, dns=("web.example.org",
                                                                             "*.example.org"))
    leaf_inter = make_leaf(EC384, "spiffe://example.org/deep", inter, EC256_B)
    leaf_two_uris = make_leaf(EC256_B, "spiffe://example.org/a", ca, EC256,
                              extra_uri="spiffe://example.org/b")
    ed_ca = make_ca(ED, "Ed25519 CA")

    # ---- spiffeid ----
    for i, s in enumerate([
        "spiffe://example.org", "spiffe://example.org/workload", "spiffe://example.org/ns/a/sa/b",
        "spiffe://a.b-c_d.example/x.y-z_W/0", "SPIFFE://example.org/x", "spiffe://Example.org/x",
        "spiffe://example.org/", "spiffe://example.org//x", "spiffe://example.org/./x",
        "spiffe://example.org/../x", "spiffe://example.org/x?q=1", "spiffe://example.org/x#f",
        "spiffe://example.org:8443/x", "spiffe://user@example.org/x", "spiffe://ex%41mple.org/x",
        "spiffe://example.org/%2e", "spiffe:///x", "https://example.org/x", "spiffe://" + "a" * 255,
        "spiffe://" + "a" * 256 + "/x", "spiffe://example.org/" + "s" * 2030, "example.org",
        "spiffe://example.org/x\x00/y",
    ]):
        write("spiffeid", "id%02d" % i, s)

    # ---- config: the server's and the agent's files, and "key=value\0file" overrides ----
    server_full = {
        "trust_domain": "example.org", "data_dir": "/var/lib/lanyard/server",
        "bind_address": "0.0.0.0", "bind_port": 8081, "admin_socket": "/run/lanyard/admin.sock",
        "http_address": "127.0.0.1", "http_port": 8080, "ca_key_type": "ec-p256",
        "ca_ttl": "30d", "default_x509_svid_ttl": "1h", "default_jwt_svid_ttl": "5m",
        "agent_svid_ttl": "1h", "join_token_ttl": 600, "log_level": "info", "log_format": "json",
    }
    agent_full = {
        "trust_domain": "example.org", "server_address": "lanyard-server", "server_port": 8081,
        "trust_bundle_path": "/etc/lanyard/bundle.pem", "data_dir": "/var/lib/lanyard/agent",
        "socket_path": "/run/lanyard/agent.sock", "http_address": "127.0.0.1", "http_port": 8082,
        "join_token": "abc", "workload_key_type": "ec-p256", "rotation_fraction": 0.5,
        "log_level": "debug", "log_format": "text", "unix_workload_path_selectors": True,
        "sha256_max_size": 104857600, "max_conns_per_uid": 64, "sync_staleness": "10m",
    }
    write("config", "server", json.dumps(server_full, indent=1))
    write("config", "server-min", '{"trust_domain": "example.org"}')
    write("config", "server-upstream", json.dumps(dict(server_full, upstream_ca_cert="/a.pem",
                                                       upstream_ca_key="/a.key")))
    write("config", "server-bad-range", '{"trust_domain":"example.org","bind_port":70000,'
                                        '"ca_ttl":"1h","default_x509_svid_ttl":"2h"}')
    write("config", "server-unknown", '{"trust_domain":"example.org","no_such":1}')
    write("config", "server-dup", '{"trust_domain":"a.org","trust_domain":"b.org"}')
    write("config", "agent", json.dumps(agent_full, indent=1))
    write("config", "agent-insecure", json.dumps(dict(agent_full, insecure_bootstrap=True,
                                                      trust_bundle_path=None)))
    write("config", "agent-failover", json.dumps(dict(
        agent_full, server_address=None, server_port=None,
        server_addresses=["10.0.0.1:8081", "[fd00::1]:8081", "lanyard-server.lanyard.svc:8081"])))
    write("config", "agent-types", '{"rotation_fraction":"0.5","http_port":"8082",'
                                   '"insecure_bootstrap":"true","sync_staleness":-1}')
    write("config", "override-ttl", b"ca_ttl=24h\x00" + json.dumps(server_full).encode())
    write("config", "override-port", b"http_port=65536\x00{}")
    write("config", "override-enum", b"log_level=verbose\x00{\"trust_domain\":\"x\"}")
    write("config", "override-double", b"rotation_fraction=1e309\x00{}")
    write("config", "override-key-only", b"trust_domain\x00{}")
    write("config", "not-object", "[1, 2, 3]")
    write("config", "empty", "")

    # ---- csr ----
    write("csr", "ec256", make_csr(EC256))
    write("csr", "ec384", make_csr(EC384))
    write("csr", "rsa2048", make_csr(RSA_KEY))
    write("csr", "ec256-attrs", make_csr(EC256_B, with_attrs=True))
    write("csr", "ed25519", make_csr(ED))
    bad = bytearray(make_csr(EC256))
    bad[-5] ^= 0xFF
    write("csr", "ec256-badsig", bytes(bad))
    write("csr", "truncated", make_csr(EC256)[:60])

    # ---- x509: mode byte, then data ----
    write("x509", "0-ca", b"0" + der(ca))
    write("x509", "0-ca384", b"0" + der(ca384))
    write("x509", "0-rsa-ca", b"0" + der(rsa_ca))
    write("x509", "0-leaf", b"0" + der(leaf))
    write("x509", "0-leaf-dns", b"0" + der(leaf_dns))
    write("x509", "0-leaf-two-uris", b"0" + der(leaf_two_uris))
    write("x509", "0-ed25519-ca", b"0" + der(ed_ca))
    write("x509", "1-chain", b"1" + der(leaf_inter) + der(inter) + der(ca))
    write("x509", "1-trailing", b"1" + der(leaf) + b"\x30\x03\x02\x01")
    write("x509", "2-pem", b"2" + pem(leaf) + b"junk\n" + pem(ca))
    write("x509", "2-pem-labels", b"2-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
          + pem(ca384) + b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    write("x509", "2-pem-unterminated", b"2" + pem(ca)[:-30])

    def verify_seed(chain, roots):
        return b"3" + struct.pack(">H", len(chain)) + chain + roots
    write("x509", "3-verify-leaf", verify_seed(der(leaf), der(ca) + der(ca384)))
    write("x509", "3-verify-inter", verify_seed(der(leaf_inter) + der(inter), der(ca)))
    write("x509", "3-verify-dns", verify_seed(der(leaf_dns), der(ca)))
    write("x509", "3-verify-wrong-root", verify_seed(der(leaf), der(rsa_ca)))
    write("x509", "3-verify-rsa-self", verify_seed(der(rsa_ca), der(rsa_ca)))
    write("x509", "4-pkcs8-ec", b"4" + key_der(EC256, serialization.PrivateFormat.PKCS8))
    write("x509", "4-pkcs8-ec384", b"4" + key_der(EC384, serialization.PrivateFormat.PKCS8))
    write("x509", "4-sec1-ec", b"4" + key_der(EC256, serialization.PrivateFormat.TraditionalOpenSSL))
    write("x509", "4-pkcs8-rsa", b"4" + key_der(RSA_KEY, serialization.PrivateFormat.PKCS8))
    write("x509", "4-pkcs1-rsa", b"4" + key_der(RSA_KEY,
                                                serialization.PrivateFormat.TraditionalOpenSSL))
    write("x509", "4-pkcs8-ed25519", b"4" + key_der(ED, serialization.PrivateFormat.PKCS8))
    write("x509", "5-pem-ec", b"5" + key_pem(EC256, serialization.PrivateFormat.PKCS8))
    write("x509", "5-pem-sec1", b"5" + key_pem(EC384, serialization.PrivateFormat.TraditionalOpenSSL))
    write("x509", "5-pem-rsa", b"5" + key_pem(RSA_KEY, serialization.PrivateFormat.TraditionalOpenSSL))

    # ---- jwt: '0' token, '1' JWK Set, '2' SPIFFE bundle, '3' header\nclaims signed by the
    # harness (kid "k1", ES256) ----
    claims = {"sub": "spiffe://example.org/workload", "aud": ["spiffe://example.org/audience"],
              "exp": 1900000000, "iat": 1700000000}
    write("jwt", "0-es256", "0" + jws(EC256, {"alg": "ES256", "kid": "k1", "typ": "JWT"}, claims))
    write("jwt", "0-es384", "0" + jws(EC384, {"alg": "ES384", "kid": "k1"}, claims))
    write("jwt", "0-rs256", "0" + jws(RSA_KEY, {"alg": "RS256", "kid": "k1", "typ": "JOSE"}, claims))
    write("jwt", "0-none", "0" + b64u(b'{"alg":"none","kid":"k1"}') + "." +
          b64u(json.dumps(claims).encode()) + ".")
    write("jwt", "0-crit", "0" + jws(EC256, {"alg": "ES256", "kid": "k1", "crit": ["x"]}, claims))
    write("jwt", "0-two-dots", "0a.b")
    write("jwt", "1-jwks", "1" + json.dumps({"keys": [jwk(EC256, "k1", "jwt-svid"),
                                                      jwk(EC384, "k2", "jwt-svid"),
                                                      jwk(RSA_KEY, "k3", "jwt-svid"),
                                                      jwk(EC256_B, "k4")]}))
    write("jwt", "1-jwks-mixed", "1" + json.dumps({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes(32)), "kid": "ed", "use": "jwt-svid"},
        dict(jwk(EC256, "k1", "jwt-svid"), crv="P-521"),
        jwk(EC256, None, "x509-svid"),
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "short"}]}))
    write("jwt", "1-jwks-dup", "1" + json.dumps({"keys": [jwk(EC256, "k1"), jwk(EC384, "k1")]}))
    x509_key = jwk(EC256, None, "x509-svid")
    x509_key["x5c"] = [base64.b64encode(der(ca)).decode()]
    x509_key384 = jwk(EC384, None, "x509-svid")
    x509_key384["x5c"] = [base64.b64encode(der(ca384)).decode()]
    rsa_x509 = jwk(RSA_KEY, None, "x509-svid")
    rsa_x509["x5c"] = [base64.b64encode(der(rsa_ca)).decode()]
    write("jwt", "2-bundle", "2" + json.dumps({
        "keys": [x509_key, x509_key384, rsa_x509, jwk(EC256_B, "k1", "jwt-svid")],
        "spiffe_sequence": 7, "spiffe_refresh_hint": 300}, indent=1))
    write("jwt", "2-bundle-empty", '2{"keys": []}')
    two = dict(x509_key)
    two["x5c"] = [two["x5c"][0], two["x5c"][0]]
    write("jwt", "2-bundle-two-x5c", "2" + json.dumps({"keys": [two]}))
    trailing = dict(x509_key)
    trailing["x5c"] = [base64.b64encode(der(ca) + b"\x00\x00").decode()]
    write("jwt", "2-bundle-trailing", "2" + json.dumps({"keys": [trailing]}))
    write("jwt", "3-valid", '3{"alg":"ES256","kid":"k1","typ":"JWT"}\n' + json.dumps(claims))
    write("jwt", "3-aud-string", '3{"alg":"ES256","kid":"k1"}\n' + json.dumps(
        dict(claims, aud="spiffe://example.org/audience", nbf=1700000000)))
    write("jwt", "3-expired", '3{"alg":"ES256","kid":"k1"}\n' + json.dumps(dict(claims,
                                                                               exp=1700000000)))
    write("jwt", "3-bad-sub", '3{"alg":"ES256","kid":"k1"}\n' + json.dumps(
        dict(claims, sub="spiffe://EXAMPLE.org/x", iat="yesterday")))
    write("jwt", "3-float-exp", '3{"alg":"ES256","kid":"k1"}\n{"sub":"spiffe://example.org/x",'
                                '"aud":"spiffe://example.org/audience","exp":1.9e9}')
    write("jwt", "3-wrong-alg", '3{"alg":"RS256","kid":"k1"}\n' + json.dumps(claims))

    # ---- grpc_deframe: max byte, split seed, body ----
    frames = grpc_frame(b"hello") + grpc_frame(b"") + grpc_frame(bytes(300))
    write("grpc_deframe", "three", b"\x05\x07" + frames)
    write("grpc_deframe", "partial", b"\x06\x01" + grpc_frame(b"x" * 100)[:50])
    write("grpc_deframe", "compressed", b"\x04\x02" + grpc_frame(b"abc", flag=1))
    write("grpc_deframe", "bad-flag", b"\x04\x03" + grpc_frame(b"abc", flag=7))
    write("grpc_deframe", "too-large", b"\x03\x04" + grpc_frame(b"x" * 40))
    write("grpc_deframe", "percent", b"\x00\x00" + b"bad%20request%zz%4%e2%82%ac%")
    write("grpc_deframe", "timeout-m", b"\x00\x00" + b"100m")
    write("grpc_deframe", "timeout-H", b"\x00\x00" + b"99999999H")
    write("grpc_deframe", "timeout-n", b"\x00\x00" + b"1n")

    # ---- entry_json ----
    entry = {"spiffe_id": "spiffe://example.org/web", "parent_id": "spiffe://example.org/agent/n1",
             "selectors": ["unix:uid:1000", "k8s:ns:default", "unix:uid:1000"],
             "x509_svid_ttl": 3600, "jwt_svid_ttl": 300, "dns_names": ["web.example.org",
                                                                      "*.example.org"],
             "hint": "web", "admin": False, "downstream": False, "expires_at": 0}
    write("entry_json", "full", json.dumps(entry, indent=1))
    write("entry_json", "feedback", json.dumps(dict(entry, id="6f1f3f3e-9a9b-4c4d-8e8f-0a0b0c0d0e0f",
                                                    revision=3, created_at=1700000000,
                                                    hint=None)))
    write("entry_json", "node", json.dumps({"spiffe_id": "spiffe://example.org/agent/n1",
                                            "parent_id": "spiffe://example.org",
                                            "selectors": ["join_token:abc"]}))
    write("entry_json", "bad-selector", json.dumps(dict(entry, selectors=[":x", "a:", "nocolon"])))
    write("entry_json", "bad-dns", json.dumps(dict(entry, dns_names=["a..b", "-x", "*.*.x",
                                                                     "x" * 300])))
    write("entry_json", "bad-types", '{"spiffe_id": 1, "admin": "yes", "x509_svid_ttl": 1e3}')
    write("entry_json", "ttl-range", json.dumps(dict(entry, x509_svid_ttl=315360001,
                                                     expires_at=-1)))
    write("entry_json", "nul", '{"spiffe_id": "spiffe://example.org/a\\u0000b", '
                               '"selectors": ["a:b\\u0000"]}')
    write("entry_json", "unknown", json.dumps(dict(entry, color="blue")))

    # ---- proto ----
    csr_der = make_csr(EC256)
    write("proto", "attest", proto_seed("AttestRequest", pb_bytes(1, "join_token") +
                                        pb_bytes(2, "tok-123") + pb_bytes(3, csr_der)))
    write("proto", "renew", proto_seed("RenewAgentRequest", pb_bytes(1, make_csr(RSA_KEY))))
    write("proto", "sync-req", proto_seed("SyncRequest", pb_varint(1, 5)))
    write("proto", "sync-req-neg", proto_seed("SyncRequest", pb_varint(1, -1)))
    item = pb_bytes(1, "entry-1") + pb_bytes(2, make_csr(EC384))
    write("proto", "sign-x509", proto_seed("SignX509Request", pb_bytes(1, item) * 2))
    write("proto", "sign-jwt", proto_seed("SignJWTRequest", pb_bytes(1, "entry-1") +
                                          pb_bytes(2, "aud1") + pb_bytes(2, "aud2")))
    write("proto", "get-bundle", proto_seed("GetBundleRequest", b""))
    bundle = (pb_bytes(1, "example.org") + pb_varint(2, 3) + pb_bytes(3, der(ca)) +
              pb_bytes(3, der(ca384)) +
              pb_bytes(4, pb_bytes(1, "k1") + pb_bytes(2, spki(EC256)) + pb_varint(3, 1900000000)) +
              pb_varint(5, 300))
    write("proto", "attest-resp", proto_seed("AttestResponse", pb_bytes(1, "spiffe://example.org/agent")
                                             + pb_bytes(2, der(leaf) + der(ca)) +
                                             pb_bytes(3, bundle)))
    write("proto", "renew-resp", proto_seed("RenewAgentResponse", pb_bytes(1, der(leaf)) +
                                            pb_bytes(2, bundle)))
    pb_entry = (pb_bytes(1, "entry-1") + pb_bytes(2, "spiffe://example.org/web") +
                pb_bytes(3, "spiffe://example.org/agent") + pb_bytes(4, "unix:uid:0") +
                pb_bytes(4, "k8s:ns:x") + pb_varint(5, 3600) + pb_varint(6, 300) +
                pb_bytes(7, "web.example.org") + pb_bytes(8, "hint") + pb_varint(9, 1) +
                pb_varint(10, 0) + pb_varint(11, 0) + pb_varint(12, 9))
    write("proto", "sync-resp", proto_seed("SyncResponse", pb_varint(1, 1) + pb_bytes(2, pb_entry) +
                                           pb_bytes(3, "gone-1") + pb_varint(4, 1) +
                                           pb_bytes(5, bundle)))
    write("proto", "sign-x509-resp", proto_seed("SignX509Response", pb_bytes(
        1, pb_bytes(1, "entry-1") + pb_bytes(2, der(leaf)) + pb_bytes(3, ""))))
    write("proto", "sign-jwt-resp", proto_seed("SignJWTResponse", pb_bytes(1, "a.b.c") +
                                               pb_varint(2, 1900000000)))
    write("proto", "bundle", proto_seed("Bundle", bundle))
    write("proto", "x509svid-req", proto_seed("X509SVIDRequest", b""))
    write("proto", "jwtsvid-req", proto_seed("JWTSVIDRequest", pb_bytes(1, "aud") +
                                             pb_bytes(2, "spiffe://example.org/web")))
    write("proto", "validate-req", proto_seed("ValidateJWTSVIDRequest", pb_bytes(1, "aud") +
                                              pb_bytes(2, "a.b.c")))
    write("proto", "health-req", proto_seed("HealthCheckRequest", pb_bytes(1, "")))
    csi_publish_seeds()
    svid = (pb_bytes(1, "spiffe://example.org/web") + pb_bytes(2, der(leaf)) +
            pb_bytes(3, key_der(EC256_B, serialization.PrivateFormat.PKCS8)) +
            pb_bytes(4, der(ca)) + pb_bytes(5, "hint"))
    fed = pb_bytes(1, "spiffe://other.org") + pb_bytes(2, der(ca384))
    write("proto", "x509svid-resp", proto_seed("X509SVIDResponse", pb_bytes(1, svid) +
                                               pb_bytes(3, fed)))
    write("proto", "x509bundles-resp", proto_seed("X509BundlesResponse", pb_bytes(2, fed)))
    write("proto", "jwtsvid-resp", proto_seed("JWTSVIDResponse", pb_bytes(1, pb_bytes(
        1, "spiffe://example.org/web") + pb_bytes(2, "a.b.c"))))
    write("proto", "jwtbundles-resp", proto_seed("JWTBundlesResponse", pb_bytes(
        1, pb_bytes(1, "spiffe://example.org") + pb_bytes(2, '{"keys":[]}'))))
    # google.protobuf.Struct claims: {"sub": "x", "n": 1.5, "l": [true, null], "o": {"a": "b"}}
    def value_str(s):
        return pb_bytes(3, s)
    lst = pb_bytes(1, pb_varint(4, 1)) + pb_bytes(1, pb_varint(1, 0))
    inner = pb_bytes(1, pb_bytes(1, "a") + pb_bytes(2, value_str("b")))
    struct_fields = (pb_bytes(1, pb_bytes(1, "sub") + pb_bytes(2, value_str("x"))) +
                     pb_bytes(1, pb_bytes(1, "n") + pb_bytes(2, varint(2 << 3 | 1) +
                                                             struct.pack("<d", 1.5))) +
                     pb_bytes(1, pb_bytes(1, "l") + pb_bytes(2, pb_bytes(6, lst))) +
                     pb_bytes(1, pb_bytes(1, "o") + pb_bytes(2, pb_bytes(5, inner))))
    write("proto", "validate-resp", proto_seed("ValidateJWTSVIDResponse",
                                               pb_bytes(1, "spiffe://example.org/web") +
                                               pb_bytes(2, struct_fields)))
    write("proto", "health-resp", proto_seed("HealthCheckResponse", pb_varint(1, 1)))
    # An Envoy NACK: version, node {id}, names, type_url, nonce, error_detail {code, message}.
    write("proto", "sds-nack", proto_seed("DiscoveryRequest", pb_bytes(1, "3") +
          pb_bytes(2, pb_bytes(1, "sidecar")) + pb_bytes(3, "default") + pb_bytes(3, "ALL") +
          pb_bytes(4, "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret") +
          pb_bytes(5, "0a1b") + pb_bytes(6, pb_varint(1, 3) + pb_bytes(2, "bad key"))))

    # ---- proc: '0' stat, '1' cgroup file, '2' cgroup path ----
    stat_fields = " ".join(str(i) for i in range(4, 53))
    write("proc", "0-stat", "0" + "1234 (bash) S " + stat_fields + "\n")
    write("proc", "0-stat-paren", "0" + "77 (a) b) (c ) R " + stat_fields + "\n")
    write("proc", "0-stat-short", "0" + "1 (x) S 1 2 3")
    write("proc", "0-stat-big", "0" + "1 (x) S " + " ".join(["18446744073709551615"] * 30))
    cid = hashlib.sha256(b"c").hexdigest()
    cid2 = hashlib.sha256(b"d").hexdigest()
    uid = "0b4a1c2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d"
    uidu = uid.replace("-", "_")
    static_uid = hashlib.md5(b"static").hexdigest()
    paths = [
        "/kubepods/burstable/pod%s/%s" % (uid, cid),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/docker-%s.scope"
        % (uidu, cid),
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/"
        "cri-containerd-%s.scope" % (uidu, cid),
        "/kubepods-besteffort-pod%s.slice:cri-containerd:%s" % (uidu, cid),
        "/docker/%s/kubepods/besteffort/pod%s/%s" % (cid2, uid, cid),
        "/../../pod%s/%s" % (uid, cid),
        "/../crio-%s.scope" % cid,
        "/kubepods/pod%s/%s" % (static_uid, cid),
        "/kubepods/pod%s/pod%s/%s" % (uid, uid, cid),
        "/user.slice/user-1000.slice/session-2.scope",
        "/docker/%s" % cid,
        "/",
    ]
    for i, p in enumerate(paths):
        write("proc", "2-path%02d" % i, "2" + p)
    write("proc", "1-v2", "1" + "0::" + paths[1] + "\n")
    write("proc", "1-v1", "1" + "".join("%d:%s:%s\n" % (i, c, paths[0]) for i, c in enumerate(
        ["cpu,cpuacct", "memory", "pids", "name=systemd", "devices"], start=1)))
    write("proc", "1-conflict", "1" + "1:cpu:%s\n2:memory:%s\n" % (paths[0], paths[4].replace(
        cid, cid2, 2)[:-64] + cid2))
    write("proc", "1-host", "1" + "0::/init.scope\n")
    write("proc", "1-malformed", "1" + "0:/no-second-colon\n")

    # ---- kubelet: PodList bodies ----
    def pod(name, uid_, cids, labels=None, owners=None, node="node-1"):
        return {
            "metadata": {"name": name, "namespace": "default", "uid": uid_,
                         "labels": labels or {"app": name},
                         "ownerReferences": owners or [{"kind": "ReplicaSet", "name": name + "-rs",
                                                        "uid": "x", "controller": True}]},
            "spec": {"serviceAccountName": "sa-" + name, "nodeName": node,
                     "containers": [{"name": "c%d" % i, "image": "img:%d" % i}
                                    for i in range(len(cids))]},
            "status": {
                "containerStatuses": [{"name": "c%d" % i, "image": "img:%d" % i,
                                       "imageID": "docker.io/img@sha256:" + c,
                                       "containerID": "containerd://" + c}
                                      for i, c in enumerate(cids)],
                "initContainerStatuses": [{"name": "init", "image": "busybox",
                                           "imageID": "busybox", "containerID": "cri-o://" + cid2}],
                "ephemeralContainerStatuses": [],
            },
        }
    write("kubelet", "two-pods", json.dumps({"kind": "PodList", "apiVersion": "v1", "items": [
        pod("web", uid, [cid]), pod("db", static_uid, [hashlib.sha256(b"e").hexdigest()])]},
        indent=1))
    write("kubelet", "conflict", json.dumps({"kind": "PodList", "items": [
        pod("a", uid, [cid]), pod("b", "1" + uid[1:], [cid])]}))
    write("kubelet", "no-uid", json.dumps({"kind": "PodList", "items": [
        {"metadata": {"name": "x"}}, {"metadata": {"uid": uid},
                                      "status": {"containerStatuses": [{"name": "c"}]}}]}))
    write("kubelet", "empty", '{"kind":"PodList","items":null}')
    write("kubelet", "kind-only", '{"kind":"PodList"}')
    write("kubelet", "types", json.dumps({"items": [{"metadata": {"uid": 5, "labels": [1],
                                                                  "ownerReferences": {}},
                                                     "status": {"containerStatuses": {}}}]}))

    # ---- grpc_server: a write size byte (0 = all at once), then a client's bytes on one
    # connection (see fuzz_grpc_server.c) ----
    def gs(name, data, chunk=0):
        write("grpc_server", name, bytes([chunk]) + data)
    settings = h2_frame(4, 0, 0, b"")
    unary = h2_request(1, "/fuzz.Test/Unary", b"hello")
    gs("unary", H2_PREFACE + settings + unary)
    gs("stream", H2_PREFACE + settings + h2_request(1, "/fuzz.Test/Stream",
                                                                      b"\x08\x03"))
    gs("later", H2_PREFACE + settings + h2_request(1, "/fuzz.Test/Later", b"x"))
    gs("later-split", H2_PREFACE + settings + h2_request(1, "/fuzz.Test/Later", b"x"), chunk=1)
    gs("two-calls", H2_PREFACE + settings + unary +
          h2_request(3, "/fuzz.Test/Stream", b"\x08\x02", split_data=True) +
          h2_frame(6, 0, 0, b"12345678"), chunk=7)  # PING
    # Bidirectional: two messages in one DATA frame, a third later, the empty one ends it.
    bidi = h2_request(1, "/fuzz.Test/Bidi", b"first", end=False)
    gs("bidi", H2_PREFACE + settings + bidi +
          h2_frame(0, 0, 1, grpc_frame(b"second") + grpc_frame(b"third")) +
          h2_frame(0, 0, 1, grpc_frame(b"")))
    gs("bidi-half-close", H2_PREFACE + settings + bidi + h2_frame(0, 1, 1, grpc_frame(b"x")),
       chunk=5)
    gs("unknown-method", H2_PREFACE + settings +
          h2_request(1, "/fuzz.Test/Nope", b""))
    gs("timeout", H2_PREFACE + settings +
          h2_request(1, "/fuzz.Test/Later", b"", extra=[("grpc-timeout", "1m")]))
    gs("bad-content-type", H2_PREFACE + settings + h2_frame(
        1, 0x5, 1, hpack_literal(":method", "POST") + hpack_literal(":path", "/fuzz.Test/Unary") +
        hpack_literal(":scheme", "http") + hpack_literal("content-type", "text/plain")))
    gs("compressed", H2_PREFACE + settings + h2_frame(
        1, 0x4, 1, b"".join(hpack_literal(n, v) for n, v in [
            (":method", "POST"), (":scheme", "http"), (":path", "/fuzz.Test/Unary"),
            ("content-type", "application/grpc"), ("grpc-encoding", "gzip")])) +
        h2_frame(0, 1, 1, grpc_frame(b"abc", flag=1)))
    gs("too-large", H2_PREFACE + settings + h2_frame(
        1, 0x4, 1, b"".join(hpack_literal(n, v) for n, v in [
            (":method", "POST"), (":scheme", "http"), (":path", "/fuzz.Test/Unary"),
            ("content-type", "application/grpc")])) + h2_frame(0, 1, 1, b"\x00\x7f\xff\xff\xff"))
    gs("rst", H2_PREFACE + settings + h2_request(1, "/fuzz.Test/Later", b"x") +
          h2_frame(3, 0, 1, b"\x00\x00\x00\x08"))
    gs("goaway", H2_PREFACE + settings + unary +
          h2_frame(7, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00"))
    gs("no-preface", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


if __name__ == "__main__":
    main()
