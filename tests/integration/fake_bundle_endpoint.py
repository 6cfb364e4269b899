#!/usr/bin/python3
"""A bundle endpoint under the test's control (https_spiffe): makes a CA for a trust domain and an
X509-SVID for the endpoint, writes the CA as PEM (the relationship's --trust-bundle), and serves
GET / over TLS with whatever DIR/body holds at the time of the request, so that a test can serve
a valid bundle, then a malformed or oversized one.

usage: fake_bundle_endpoint.py DIR TRUST_DOMAIN ENDPOINT_SPIFFE_ID PORT
Writes DIR/ca.pem and DIR/valid.<seq>.json (valid bundle documents of sequence 1..3, whose only
authority is the CA), then serves until killed."""
import base64, datetime, http.server, json, os, ssl, sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

d, td, spiffe_id, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
now = datetime.datetime.now(datetime.timezone.utc)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder()
      .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake CA")]))
      .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake CA")]))
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(minutes=1))
      .not_valid_after(now + datetime.timedelta(hours=1))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                     critical=True)
      .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://" + td)]),
                     critical=False)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
leaf = (x509.CertificateBuilder()
        .subject_name(x509.Name([])).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                       critical=True)
        .sign(ca_key, hashes.SHA256()))

pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
with open(os.path.join(d, "ca.pem"), "wb") as f:
    f.write(pem(ca))
with open(os.path.join(d, "tls.pem"), "wb") as f:
    f.write(pem(leaf) + key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
b64u = lambda n: base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()
pub = ca_key.public_key().public_numbers()
jwk = {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": b64u(pub.x), "y": b64u(pub.y),
       "x5c": [base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode()]}
for seq in (1, 2, 3):
    with open(os.path.join(d, "valid.%d.json" % seq), "w") as f:
        json.dump({"keys": [jwk], "spiffe_sequence": seq, "spiffe_refresh_hint": 5}, f)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(d, "body"), "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(d, "tls.pem"))
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("ready", flush=True)
srv.serve_forever()
