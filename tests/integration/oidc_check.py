#!/usr/bin/python3
"""A relying party, as a cloud provider is one: validates a JWT-SVID with an independent JOSE
implementation (PyJWT, Debian's python3-jwt) using only what OIDC discovery publishes.

Usage:
  oidc_check.py validate ISSUER AUDIENCE TOKEN_FILE [--cafile PEM] [--keys-file JSON]
      fetches ISSUER/.well-known/openid-configuration, checks it, fetches its jwks_uri (or reads
      a JWK Set saved earlier with --keys-file), checks signature, issuer, audience and expiry;
      prints {"kid", "sub", "iss"}; also checks that a wrong audience, a wrong issuer and a
      tampered signature are refused. Exit 1 with a message on any failure.
  oidc_check.py keys ISSUER [--cafile PEM]    prints the JWK Set (after checking it)
  oidc_check.py status URL METHOD [--cafile PEM]   prints the HTTP status code
"""
import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request

import jwt


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def context(cafile):
    if not cafile:
        return None
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


def get(url, cafile, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context(cafile)) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url, cafile):
    status, headers, body = get(url, cafile)
    if status != 200:
        fail("%s answered %d: %r" % (url, status, body[:200]))
    if not headers.get("Content-Type", "").startswith("application/json"):
        fail("%s: Content-Type %r" % (url, headers.get("Content-Type")))
    return json.loads(body)


def discovery(issuer, cafile):
    doc = get_json(issuer + "/.well-known/openid-configuration", cafile)
    if doc.get("issuer") != issuer:
        fail("discovery issuer %r, expected %r" % (doc.get("issuer"), issuer))
    for k, v in (("response_types_supported", ["id_token"]),
                 ("subject_types_supported", ["public"])):
        if doc.get(k) != v:
            fail("discovery %s = %r" % (k, doc.get(k)))
    algs = doc.get("id_token_signing_alg_values_supported") or []
    if not algs or any(a in ("none",) or a.startswith("HS") for a in algs):
        fail("id_token_signing_alg_values_supported = %r" % algs)
    if not doc.get("jwks_uri", "").startswith(issuer + "/"):
        fail("jwks_uri %r is not under the issuer" % doc.get("jwks_uri"))
    return doc


def key_set(doc, cafile):
    keys = get_json(doc["jwks_uri"], cafile)
    if not keys.get("keys"):
        fail("empty JWK Set")
    for k in keys["keys"]:
        if not k.get("kid") or k.get("use") != "sig" or "d" in k:
            fail("bad JWK %r" % k)
    return keys


def must_refuse(what, fn):
    try:
        fn()
    except jwt.PyJWTError:
        return
    fail("PyJWT accepted a token with " + what)


def validate(args):
    token = open(args.token_file).read().strip()
    doc = discovery(args.issuer, args.cafile)
    keys = json.load(open(args.keys_file)) if args.keys_file else key_set(doc, args.cafile)
    kid = jwt.get_unverified_header(token).get("kid")
    jwks = jwt.PyJWKSet.from_dict(keys)
    match = [k for k in jwks.keys if k.key_id == kid]
    if not match:
        fail("kid %r is not in the JWK Set (%s)" % (kid, [k.key_id for k in jwks.keys]))
    key = match[0].key
    algs = doc["id_token_signing_alg_values_supported"]

    def decode(aud=args.audience, iss=args.issuer, tok=token):
        return jwt.decode(tok, key, algorithms=algs, audience=aud, issuer=iss,
                          options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    claims = decode()
    if not claims["sub"].startswith("spiffe://"):
        fail("sub %r" % claims["sub"])
    must_refuse("the wrong audience", lambda: decode(aud="someone-else"))
    must_refuse("the wrong issuer", lambda: decode(iss="https://evil.example"))
    head, body, sig = token.split(".")
    bad = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    must_refuse("a tampered signature", lambda: decode(tok="%s.%s.%s" % (head, body, bad)))
    print(json.dumps({"kid": kid, "sub": claims["sub"], "iss": claims["iss"]}))


def keys(args):
    print(json.dumps(key_set(discovery(args.issuer, args.cafile), args.cafile)))


def status(args):
    code, headers, _ = get(args.url, args.cafile, args.method)
    print(code, headers.get("Allow", ""))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(required=True)
    v = sub.add_parser("validate")
    v.add_argument("issuer")
    v.add_argument("audience")
    v.add_argument("token_file")
    v.add_argument("--keys-file")
    v.set_defaults(fn=validate)
    k = sub.add_parser("keys")
    k.add_argument("issuer")
    k.set_defaults(fn=keys)
    s = sub.add_parser("status")
    s.add_argument("url")
    s.add_argument("method")
    s.set_defaults(fn=status)
    for x in (v, k, s):
        x.add_argument("--cafile")
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
