#!/usr/bin/python3
"""A small SPIFFE Workload API client for the agent's integration tests (python grpcio).

  agent_wl.py SOCKET x509            one FetchX509SVID message as JSON:
                                     {"svids": [{"spiffe_id", "serial", "not_before", "not_after",
                                     "key_matches", "bundle_certs", "issuer" (fingerprint of
                                     the bundle CA that signed it)}]}, or {"error": CODE, "message"}
  agent_wl.py SOCKET jwt AUD [ID]    FetchJWTSVID as JSON {"svids": [{"spiffe_id", "svid"}]}
  agent_wl.py SOCKET until present|absent SPIFFE_ID TIMEOUT [-- COMMAND...]
                                     runs COMMAND (if given), then polls FetchX509SVID every 50 ms
                                     until SPIFFE_ID is served (or no longer served); prints the
                                     seconds it took from just before COMMAND; exit 1 on timeout
  agent_wl.py SOCKET watch SECONDS   polls FetchX509SVID every 0.25 s and prints a JSON summary:
                                     {"fetches", "failures": [...], "issuers": [CA fingerprints],
                                     "serials", "bundle_sizes"}; a failure is an answer without
                                     an SVID, an expired one, a key mismatch, or a leaf that no
                                     certificate of the served bundle signed

Stubs are generated from proto/workload.proto into a temp dir at each run. Exit status 0 when an
answer (or a gRPC error, reported as JSON) came back, 2 on usage errors.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SRC = os.environ.get("LANYARD_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def stubs():
    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp(prefix="lanyard-wl-")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + os.path.join(SRC, "proto"), "-I" + wkt,
                      "--python_out=" + out, "--grpc_python_out=" + out,
                      os.path.join(SRC, "proto", "workload.proto")])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    import workload_pb2
    import workload_pb2_grpc
    return workload_pb2, workload_pb2_grpc


def split_der(buf):
    certs = []
    while buf:
        # DER SEQUENCE with a long-form length.
        if buf[1] & 0x80:
            n = buf[1] & 0x7F
            ln = int.from_bytes(buf[2:2 + n], "big") + 2 + n
        else:
            ln = buf[1] + 2
        certs.append(x509.load_der_x509_certificate(buf[:ln]))
        buf = buf[ln:]
    return certs


def ts(dt):
    return int(dt.replace(tzinfo=datetime.timezone.utc).timestamp())


def issuer_fp(leaf, bundle):
    """Fingerprint of the bundle certificate whose key signed leaf, or None."""
    for ca in bundle:
        key = ca.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(leaf.signature, leaf.tbs_certificate_bytes,
                           ec.ECDSA(leaf.signature_hash_algorithm))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                           leaf.signature_hash_algorithm)
            else:
                continue
            return ca.fingerprint(hashes.SHA256()).hex()
        except Exception:
            continue
    return None


def watch(stub, pb, md, secs):
    pub = lambda k: k.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    fetches, failures, issuers, serials, sizes = 0, [], [], set(), set()
    end = time.monotonic() + secs
    while time.monotonic() < end:
        fetches += 1
        try:
            stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=2)
            resp = next(stream)
            stream.cancel()
            if not resp.svids:
                failures.append("no SVID")
            for s in resp.svids:
                chain = split_der(s.x509_svid)
                bundle = split_der(s.bundle)
                sizes.add(len(bundle))
                serials.add(chain[0].serial_number)
                fp = issuer_fp(chain[0], bundle)
                key = serialization.load_der_private_key(s.x509_svid_key, None)
                if ts(chain[0].not_valid_after) <= time.time():
                    failures.append("expired SVID served")
                elif pub(key.public_key()) != pub(chain[0].public_key()):
                    failures.append("key mismatch")
                elif fp is None:
                    failures.append("SVID not signed by the served bundle")
                elif fp not in issuers:
                    issuers.append(fp)
        except grpc.RpcError as e:
            failures.append(e.code().name)
        time.sleep(0.25)
    print(json.dumps({"fetches": fetches, "failures": failures, "issuers": issuers,
                      "serials": len(serials), "bundle_sizes": sorted(sizes)}))
    return 0


def served_ids(stub, pb, md):
    """The SPIFFE IDs served to this process now; an empty set on any gRPC error."""
    try:
        stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=2)
        resp = next(stream)
        stream.cancel()
        return {s.spiffe_id for s in resp.svids}
    except grpc.RpcError:
        return set()


def until(stub, pb, md, args):
    want, sid, timeout = args[0], args[1], float(args[2])
    cmd = args[4:] if len(args) > 3 and args[3] == "--" else []
    t0 = time.monotonic()
    if cmd:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    while time.monotonic() - t0 < timeout:
        if (sid in served_ids(stub, pb, md)) == (want == "present"):
            print("%.2f" % (time.monotonic() - t0))
            return 0
        time.sleep(0.05)
    print("timeout after %.0f s waiting for %s to be %s" % (timeout, sid, want))
    return 1


def main():
    if len(sys.argv) < 3:
        sys.exit(2)
    sock, cmd = sys.argv[1], sys.argv[2]
    pb, pbg = stubs()
    ch = grpc.insecure_channel("unix://" + sock)
    stub = pbg.SpiffeWorkloadAPIStub(ch)
    md = (("workload.spiffe.io", "true"),)
    if cmd == "until":
        return until(stub, pb, md, sys.argv[3:])
    if cmd == "watch":
        return watch(stub, pb, md, float(sys.argv[3]))
    try:
        if cmd == "x509":
            stream = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=10)
            resp = next(stream)
            stream.cancel()
            out = []
            for s in resp.svids:
                chain = split_der(s.x509_svid)
                key = serialization.load_der_private_key(s.x509_svid_key, None)
                pub = lambda k: k.public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
                out.append({
                    "spiffe_id": s.spiffe_id,
                    "serial": format(chain[0].serial_number, "x"),
                    "not_before": ts(chain[0].not_valid_before),
                    "not_after": ts(chain[0].not_valid_after),
                    "key_matches": pub(key.public_key()) == pub(chain[0].public_key()),
                    "bundle_certs": len(split_der(s.bundle)),
                    "issuer": issuer_fp(chain[0], split_der(s.bundle)),
                })
            print(json.dumps({"svids": out}))
        elif cmd == "jwt":
            req = pb.JWTSVIDRequest(audience=[sys.argv[3]],
                                    spiffe_id=sys.argv[4] if len(sys.argv) > 4 else "")
            resp = stub.FetchJWTSVID(req, metadata=md, timeout=10)
            print(json.dumps({"svids": [{"spiffe_id": s.spiffe_id, "svid": s.svid}
                                        for s in resp.svids]}))
        else:
            sys.exit(2)
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "message": e.details()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
