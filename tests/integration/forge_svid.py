#!/usr/bin/env python3
"""Attacker's tool for the identity tests: mints an X509-SVID for any SPIFFE ID with the server's
CA key (the stand-in for a workload SVID that carries an agent's ID, e.g. one issued before the
namespace was reserved), and calls a node API method with it over mutual TLS + HTTP/2 (curl).

usage: forge_svid.py mint CA_CERT_PEM CA_KEY_PEM SPIFFE_ID OUT_CERT OUT_KEY
       forge_svid.py call HOST:PORT CERT KEY METHOD   -> prints "grpc-status N: message"
       forge_svid.py serve CERT KEY PORT_FILE OUT_FILE SECONDS
           a fake node API: TLS 1.3 (ALPN h2) with CERT; everything clients send after the
           handshake is appended to OUT_FILE; the port is written to PORT_FILE
"""
import datetime
import os
import re
import subprocess
import sys
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def mint(ca_cert_path, ca_key_path, spiffe_id, out_cert, out_key):
    ca_cert = x509.load_pem_x509_certificate(open(ca_cert_path, "rb").read())
    ca_key = serialization.load_pem_private_key(open(ca_key_path, "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=10))
            .not_valid_after(now + datetime.timedelta(minutes=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(out_cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(out_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    print(format(cert.serial_number, "x"))


def call(hostport, cert, key, method):
    # An empty protobuf message in one uncompressed gRPC frame; SignJWT needs an audience
    # (field 2, "x") to get as far as authorization.
    msg = b"\x12\x01x" if method == "SignJWT" else b""
    body = os.path.join(os.path.dirname(os.path.abspath(cert)), "request.grpc")
    with open(body, "wb") as f:
        f.write(b"\0" + len(msg).to_bytes(4, "big") + msg)
    # -k: the attacker does not care who the server is; -D -: headers and trailers.
    out = subprocess.run(
        ["curl", "-sS", "-k", "--http2", "--max-time", "15", "--cert", cert, "--key", key,
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--data-binary", "@" + body, "-D", "-", "-o", os.devnull,
         "https://%s/lanyard.node.v1.Node/%s" % (hostport, method)],
        capture_output=True, text=True)
    text = out.stdout + out.stderr
    status = re.search(r"(?im)^grpc-status:\s*(\d+)", text)
    msg = re.search(r"(?im)^grpc-message:\s*(.*?)\s*$", text)
    print("grpc-status %s: %s" % (status.group(1) if status else "none",
                                  urllib.parse.unquote(msg.group(1)) if msg else text.strip()))


def serve(cert, key, port_file, out_file, seconds):
    import socket
    import ssl
    import time
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.5)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        try:
            c.settimeout(2)
            s = ctx.wrap_socket(c, server_side=True)
            while True:
                data = s.recv(65536)
                if not data:
                    break
                with open(out_file, "ab") as f:
                    f.write(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()


def main():
    if len(sys.argv) >= 7 and sys.argv[1] == "mint":
        mint(*sys.argv[2:7])
    elif len(sys.argv) >= 7 and sys.argv[1] == "serve":
        serve(*sys.argv[2:7])
    elif len(sys.argv) >= 6 and sys.argv[1] == "call":
        call(*sys.argv[2:6])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
