#!/usr/bin/python3
"""A third-party Workload API client for the interop tests: Debian's python3-grpcio with stubs
generated at test time from proto/workload.proto (pass their directory with --stubs), and
python3-cryptography to check what the agent serves against the SPIFFE rules, independently of
Lanyard's own code.

Each subcommand exits 0 when every check passed, 1 with a "FAIL: ..." line otherwise, and prints
a JSON summary on stdout where there is something to report."""

import argparse
import base64
import datetime
import json
import os
import sys
import time


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


HEADER = (("workload.spiffe.io", "true"),)


# ---- DER and certificate checks ----

def split_der(buf):
    """Splits concatenated DER SEQUENCEs (a Workload API chain or bundle)."""
    out, i = [], 0
    while i < len(buf):
        check(buf[i] == 0x30, "DER blob: element at %d is not a SEQUENCE" % i)
        n = buf[i + 1]
        hdr = 2
        if n & 0x80:
            k = n & 0x7F
            check(1 <= k <= 4, "DER blob: bad length at %d" % i)
            n = int.from_bytes(buf[i + 2:i + 2 + k], "big")
            hdr = 2 + k
        check(i + hdr + n <= len(buf), "DER blob: truncated element at %d" % i)
        out.append(bytes(buf[i:i + hdr + n]))
        i += hdr + n
    return out


def load_certs(der):
    from cryptography import x509
    return [x509.load_der_x509_certificate(c) for c in split_der(der)]


def ext(cert, cls):
    from cryptography import x509
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def verify_signature(child, issuer):
    """True when issuer's key signed child."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    pub = issuer.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(child.signature, child.tbs_certificate_bytes,
                       ec.ECDSA(child.signature_hash_algorithm))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(),
                       child.signature_hash_algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def is_ca(cert):
    from cryptography import x509
    bc = ext(cert, x509.BasicConstraints)
    return bool(bc and bc.value.ca)


def verify_chain(chain, roots, now):
    """chain: leaf first, then intermediates. Verifies up to one of roots: signatures, names,
    validity periods, CA flags, and that no certificate outlives its issuer."""
    for c in chain + roots:
        check(c.not_valid_before <= now <= c.not_valid_after,
              "certificate %s not valid now (%s..%s)" % (c.subject.rfc4514_string(),
                                                         c.not_valid_before, c.not_valid_after))
    for child, parent in zip(chain, chain[1:]):
        check(is_ca(parent), "intermediate is not a CA")
        check(child.issuer == parent.subject, "chain order: issuer/subject mismatch")
        check(verify_signature(child, parent), "intermediate signature does not verify")
        check(child.not_valid_after <= parent.not_valid_after, "certificate outlives its issuer")
    top = chain[-1]
    for r in roots:
        if r.subject == top.issuer and verify_signature(top, r):
            check(is_ca(r), "bundle certificate is not a CA")
            check(top.not_valid_after <= r.not_valid_after, "certificate outlives its root")
            return
    fail("chain does not verify against the bundle")


def check_x509_svid(svid, now):
    """The X509-SVID rules (X509-SVID.md) plus what go-spiffe checks."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    check(svid.spiffe_id.startswith("spiffe://"), "spiffe_id %r" % svid.spiffe_id)
    chain = load_certs(svid.x509_svid)
    roots = load_certs(svid.bundle)
    check(len(chain) >= 1, "empty x509_svid")
    check(len(roots) >= 1, "empty bundle")
    leaf = chain[0]

    san = ext(leaf, x509.SubjectAlternativeName)
    check(san is not None, "leaf has no SAN")
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    check(len(uris) == 1, "leaf has %d URI SANs, want exactly 1" % len(uris))
    check(uris[0] == svid.spiffe_id, "URI SAN %s != spiffe_id %s" % (uris[0], svid.spiffe_id))
    if len(leaf.subject) == 0:
        check(san.critical, "empty subject but SAN not critical")

    bc = ext(leaf, x509.BasicConstraints)
    check(bc is not None and not bc.value.ca, "leaf basicConstraints must be CA:FALSE")
    ku = ext(leaf, x509.KeyUsage)
    check(ku is not None and ku.critical, "leaf keyUsage must be present and critical")
    check(ku.value.digital_signature, "leaf keyUsage lacks digitalSignature")
    check(not ku.value.key_cert_sign, "leaf keyUsage has keyCertSign")
    check(not ku.value.crl_sign, "leaf keyUsage has cRLSign")
    eku = ext(leaf, x509.ExtendedKeyUsage)
    if eku is not None:
        check(ExtendedKeyUsageOID.SERVER_AUTH in eku.value, "EKU lacks serverAuth")
        check(ExtendedKeyUsageOID.CLIENT_AUTH in eku.value, "EKU lacks clientAuth")

    for c in chain[1:] + roots:
        check(is_ca(c), "a signing certificate is not a CA")
        cku = ext(c, x509.KeyUsage)
        check(cku is not None and cku.value.key_cert_sign, "CA without keyCertSign")
        csan = ext(c, x509.SubjectAlternativeName)
        if csan is not None:
            for u in csan.value.get_values_for_type(x509.UniformResourceIdentifier):
                check(u.count("/") == 2, "CA SPIFFE ID %s has a path" % u)

    verify_chain(chain, roots, now)

    key = serialization.load_der_private_key(svid.x509_svid_key, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    check(key.public_key().public_bytes(der, spki) == leaf.public_key().public_bytes(der, spki),
          "x509_svid_key does not match the certificate of %s" % svid.spiffe_id)
    return leaf


# ---- JWT checks ----

def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwk_public_key(k):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if k["kty"] == "EC":
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[k["crv"]]
        return ec.EllipticCurvePublicNumbers(int.from_bytes(b64url(k["x"]), "big"),
                                             int.from_bytes(b64url(k["y"]), "big"),
                                             curve).public_key()
    if k["kty"] == "RSA":
        return rsa.RSAPublicNumbers(int.from_bytes(b64url(k["e"]), "big"),
                                    int.from_bytes(b64url(k["n"]), "big")).public_key()
    fail("unsupported JWK kty %s" % k.get("kty"))


def verify_jwt(token, jwks, audience, spiffe_id):
    """Independent JWT-SVID validation (JWT-SVID.md) against a JWK Set."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    parts = token.split(".")
    check(len(parts) == 3, "JWT is not compact JWS")
    hdr = json.loads(b64url(parts[0]))
    claims = json.loads(b64url(parts[1]))
    sig = b64url(parts[2])
    alg = hdr.get("alg")
    check(alg in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384",
                  "PS512"), "JWT alg %r" % alg)
    check("kid" in hdr, "JWT header has no kid")
    check(hdr.get("typ", "JWT") in ("JWT", "JOSE"), "JWT typ %r" % hdr.get("typ"))
    check(set(hdr) <= {"alg", "kid", "typ"}, "JWT header has extra members %s" % sorted(hdr))
    keys = [k for k in jwks["keys"] if k.get("kid") == hdr["kid"]]
    check(len(keys) == 1, "kid %s not in the JWT bundle" % hdr["kid"])
    pub = jwk_public_key(keys[0])
    h = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    data = (parts[0] + "." + parts[1]).encode()
    try:
        if alg.startswith("ES"):
            n = len(sig) // 2
            der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"),
                                             int.from_bytes(sig[n:], "big"))
            pub.verify(der, data, ec.ECDSA(h))
        elif alg.startswith("RS"):
            pub.verify(sig, data, padding.PKCS1v15(), h)
        else:
            pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    except InvalidSignature:
        fail("JWT signature does not verify against the JWT bundle")
    check(claims.get("sub") == spiffe_id, "sub %r != %r" % (claims.get("sub"), spiffe_id))
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    check(audience in auds, "aud %r lacks %r" % (aud, audience))
    check(isinstance(claims.get("exp"), int) and claims["exp"] > time.time(), "exp %r" % claims.get("exp"))
    return claims


# ---- calls ----

def stubs(args):
    sys.path.insert(0, args.stubs)
    import grpc
    import workload_pb2
    import workload_pb2_grpc
    ch = grpc.insecure_channel("unix:" + args.socket)
    return grpc, workload_pb2, workload_pb2_grpc.SpiffeWorkloadAPIStub(ch)


def first(stream):
    for m in stream:
        return m
    fail("stream ended without a message")


def status_name(e):
    return e.code().name


def cmd_x509(args):
    grpc, pb, api = stubs(args)
    resp = first(api.FetchX509SVID(pb.X509SVIDRequest(), metadata=HEADER, timeout=args.timeout))
    check(len(resp.svids) >= 1, "no SVIDs")
    now = datetime.datetime.utcnow()
    out = []
    for s in resp.svids:
        leaf = check_x509_svid(s, now)
        out.append({"spiffe_id": s.spiffe_id, "hint": s.hint, "serial": "%x" % leaf.serial_number,
                    "not_after": int(leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp())})
    ids = [s["spiffe_id"] for s in out]
    for want in args.expect_id or []:
        check(want in ids, "%s not served (got %s)" % (want, ids))
    print(json.dumps({"svids": out}))


def cmd_bundles(args):
    grpc, pb, api = stubs(args)
    td = "spiffe://" + args.trust_domain
    xs = first(api.FetchX509SVID(pb.X509SVIDRequest(), metadata=HEADER, timeout=args.timeout))
    xb = first(api.FetchX509Bundles(pb.X509BundlesRequest(), metadata=HEADER, timeout=args.timeout))
    check(td in xb.bundles, "X.509 bundles lack %s (have %s)" % (td, list(xb.bundles)))
    roots = load_certs(xb.bundles[td])
    check(len(roots) >= 1 and all(is_ca(r) for r in roots), "X.509 bundle holds non-CA certificates")
    check(xb.bundles[td] == xs.svids[0].bundle, "X.509 bundle differs from the SVID's bundle")
    jb = first(api.FetchJWTBundles(pb.JWTBundlesRequest(), metadata=HEADER, timeout=args.timeout))
    check(td in jb.bundles, "JWT bundles lack %s" % td)
    jwks = json.loads(jb.bundles[td])
    check(len(jwks["keys"]) >= 1, "empty JWT bundle")
    for k in jwks["keys"]:
        check(k.get("kid"), "JWT authority without kid")
        jwk_public_key(k)
    print(json.dumps({"x509_roots": len(roots), "jwt_keys": len(jwks["keys"])}))


def cmd_jwt(args):
    grpc, pb, api = stubs(args)
    td = "spiffe://" + args.trust_domain
    req = pb.JWTSVIDRequest(audience=args.audience, spiffe_id=args.spiffe_id or "")
    resp = api.FetchJWTSVID(req, metadata=HEADER, timeout=args.timeout)
    check(len(resp.svids) >= 1, "no JWT-SVIDs")
    jb = first(api.FetchJWTBundles(pb.JWTBundlesRequest(), metadata=HEADER, timeout=args.timeout))
    jwks = json.loads(jb.bundles[td])
    out = []
    for s in resp.svids:
        if args.spiffe_id:
            check(s.spiffe_id == args.spiffe_id, "got %s, asked for %s" % (s.spiffe_id, args.spiffe_id))
        # By the agent...
        v = api.ValidateJWTSVID(pb.ValidateJWTSVIDRequest(audience=args.audience[0], svid=s.svid),
                                metadata=HEADER, timeout=args.timeout)
        check(v.spiffe_id == s.spiffe_id, "ValidateJWTSVID spiffe_id %s" % v.spiffe_id)
        check(v.claims["sub"] == s.spiffe_id, "ValidateJWTSVID claims.sub %r" % v.claims["sub"])
        check("exp" in v.claims and "aud" in v.claims, "ValidateJWTSVID claims lack exp/aud")
        # ...and independently.
        claims = verify_jwt(s.svid, jwks, args.audience[0], s.spiffe_id)
        # A wrong audience is refused with InvalidArgument.
        try:
            api.ValidateJWTSVID(pb.ValidateJWTSVIDRequest(audience="not-" + args.audience[0],
                                                          svid=s.svid),
                                metadata=HEADER, timeout=args.timeout)
            fail("ValidateJWTSVID accepted a wrong audience")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "wrong audience: %s" % status_name(e))
        out.append({"spiffe_id": s.spiffe_id, "exp": claims["exp"]})
    # An empty audience is InvalidArgument.
    try:
        api.FetchJWTSVID(pb.JWTSVIDRequest(), metadata=HEADER, timeout=args.timeout)
        fail("FetchJWTSVID without audience accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "no audience: %s" % status_name(e))
    print(json.dumps({"svids": out}))


METHODS = {
    "FetchX509SVID": ("X509SVIDRequest", True),
    "FetchX509Bundles": ("X509BundlesRequest", True),
    "FetchJWTBundles": ("JWTBundlesRequest", True),
    "FetchJWTSVID": ("JWTSVIDRequest", False),
    "ValidateJWTSVID": ("ValidateJWTSVIDRequest", False),
}


def cmd_expect_status(args):
    """Calls a method (with or without the security header) and expects a status code."""
    grpc, pb, api = stubs(args)
    reqname, streaming = METHODS[args.method]
    kw = {"audience": ["x"]} if args.method == "FetchJWTSVID" else {}
    if args.method == "ValidateJWTSVID":
        kw = {"audience": "x", "svid": "a.b.c"}
    req = getattr(pb, reqname)(**kw)
    md = () if args.no_header else HEADER
    try:
        r = getattr(api, args.method)(req, metadata=md, timeout=args.timeout)
        if streaming:
            first(r)
        fail("%s succeeded, want %s" % (args.method, args.status))
    except grpc.RpcError as e:
        check(e.code().name == args.status, "%s: got %s (%s), want %s" %
              (args.method, e.code().name, e.details(), args.status))
        print(json.dumps({"method": args.method, "status": e.code().name, "message": e.details()}))


def cmd_watch_rotation(args):
    """Waits on an open stream for a new X509-SVID of the same ID, before the old one expires."""
    grpc, pb, api = stubs(args)
    stream = api.FetchX509SVID(pb.X509SVIDRequest(), metadata=HEADER, timeout=args.timeout)
    old = {}
    for resp in stream:
        now = datetime.datetime.utcnow()
        cur = {}
        for s in resp.svids:
            leaf = check_x509_svid(s, now)
            cur[s.spiffe_id] = leaf
        if not old:
            check(args.spiffe_id in cur, "%s not served" % args.spiffe_id)
            old = cur
            print("READY", flush=True)
            continue
        check(args.spiffe_id in cur, "%s vanished from the stream" % args.spiffe_id)
        a, b = old[args.spiffe_id], cur[args.spiffe_id]
        if a.serial_number != b.serial_number:
            check(now < a.not_valid_after, "rotated SVID arrived after the old one expired")
            check(b.not_valid_after > a.not_valid_after, "rotated SVID does not live longer")
            print(json.dumps({"old_serial": "%x" % a.serial_number, "new_serial": "%x" % b.serial_number,
                              "old_not_after": str(a.not_valid_after), "received": str(now)}))
            stream.cancel()
            return
        old = cur
    fail("stream ended before a rotation")


def cmd_expect_end(args):
    """Reads the first message, says READY, then expects the stream to end with a status."""
    grpc, pb, api = stubs(args)
    stream = api.FetchX509SVID(pb.X509SVIDRequest(), metadata=HEADER, timeout=args.timeout)
    try:
        first(stream)
        print("READY", flush=True)
        for _ in stream:
            pass
        fail("stream ended with OK, want %s" % args.status)
    except grpc.RpcError as e:
        check(e.code().name == args.status, "stream ended with %s (%s), want %s" %
              (e.code().name, e.details(), args.status))
        print(json.dumps({"status": e.code().name, "message": e.details()}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--socket", required=True)
    p.add_argument("--stubs", required=True, help="directory of workload_pb2*.py")
    p.add_argument("--trust-domain", default="example.org")
    p.add_argument("--timeout", type=float, default=30)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("x509")
    s.add_argument("--expect-id", action="append")
    s.set_defaults(fn=cmd_x509)
    s = sub.add_parser("bundles")
    s.set_defaults(fn=cmd_bundles)
    s = sub.add_parser("jwt")
    s.add_argument("--audience", action="append", required=True)
    s.add_argument("--spiffe-id")
    s.set_defaults(fn=cmd_jwt)
    s = sub.add_parser("expect-status")
    s.add_argument("--method", choices=sorted(METHODS), default="FetchX509SVID")
    s.add_argument("--status", required=True)
    s.add_argument("--no-header", action="store_true")
    s.set_defaults(fn=cmd_expect_status)
    s = sub.add_parser("watch-rotation")
    s.add_argument("--spiffe-id", required=True)
    s.set_defaults(fn=cmd_watch_rotation)
    s = sub.add_parser("expect-end")
    s.add_argument("--status", default="PERMISSION_DENIED")
    s.set_defaults(fn=cmd_expect_end)
    args = p.parse_args()
    try:
        args.fn(args)
    except SystemExit:
        raise
    except Exception as e:  # an RpcError where none was expected, a parse error...
        fail("%s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    main()
