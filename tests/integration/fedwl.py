#!/usr/bin/python3
"""Workload API client for the federated bundle tests (python grpcio; stubs from proto/ at run).

  fedwl.py SOCKET x509                FetchX509SVID, one message: {"svids": [ids],
                                      "federated": {"spiffe://td": certificates}}
  fedwl.py SOCKET x509bundles         FetchX509Bundles, one message: {"spiffe://td": certificates}
  fedwl.py SOCKET jwtbundles          FetchJWTBundles, one message: {"spiffe://td": [kids]}
  fedwl.py SOCKET watch SECONDS       FetchX509Bundles held open: one JSON line per message
                                      (sorted trust domain IDs), for at most SECONDS
  fedwl.py SOCKET validate AUD TOKEN  ValidateJWTSVID: {"spiffe_id"}
Errors are printed as {"error": CODE, "message"} (exit 0).
"""
import json
import os
import sys
import tempfile
import time

import grpc

SRC = os.environ.get("LANYARD_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def stubs():
    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp(prefix="lanyard-fedwl-")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    if protoc.main(["protoc", "-I" + os.path.join(SRC, "proto"), "-I" + wkt,
                    "--python_out=" + out, "--grpc_python_out=" + out,
                    os.path.join(SRC, "proto", "workload.proto")]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    import workload_pb2
    import workload_pb2_grpc
    return workload_pb2, workload_pb2_grpc


def ncerts(buf):
    n = 0
    while buf:
        if buf[1] & 0x80:
            k = buf[1] & 0x7F
            ln = int.from_bytes(buf[2:2 + k], "big") + 2 + k
        else:
            ln = buf[1] + 2
        buf = buf[ln:]
        n += 1
    return n


def main():
    sock, cmd = sys.argv[1], sys.argv[2]
    pb, pbg = stubs()
    stub = pbg.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix://" + sock))
    md = (("workload.spiffe.io", "true"),)
    try:
        if cmd == "x509":
            st = stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=md, timeout=10)
            r = next(st)
            st.cancel()
            out = {"svids": [s.spiffe_id for s in r.svids],
                   "federated": {k: ncerts(v) for k, v in r.federated_bundles.items()}}
        elif cmd == "x509bundles":
            st = stub.FetchX509Bundles(pb.X509BundlesRequest(), metadata=md, timeout=10)
            r = next(st)
            st.cancel()
            out = {k: ncerts(v) for k, v in r.bundles.items()}
        elif cmd == "jwtbundles":
            st = stub.FetchJWTBundles(pb.JWTBundlesRequest(), metadata=md, timeout=10)
            r = next(st)
            st.cancel()
            out = {k: sorted(x.get("kid", "") for x in json.loads(v)["keys"])
                   for k, v in r.bundles.items()}
        elif cmd == "watch":
            secs = float(sys.argv[3])
            st = stub.FetchX509Bundles(pb.X509BundlesRequest(), metadata=md, timeout=secs)
            try:
                for r in st:
                    print(json.dumps(sorted(r.bundles.keys())), flush=True)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            return 0
        elif cmd == "validate":
            r = stub.ValidateJWTSVID(pb.ValidateJWTSVIDRequest(audience=sys.argv[3],
                                                               svid=sys.argv[4]),
                                     metadata=md, timeout=10)
            out = {"spiffe_id": r.spiffe_id}
        else:
            sys.exit(2)
    except grpc.RpcError as e:
        out = {"error": e.code().name, "message": e.details()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
