"""Envoy SDS v3 client for test_sds.sh: python3-grpcio with stubs generated at test time from
proto/envoy (what Envoy itself speaks), checking the secrets with python3-cryptography.

Each subcommand is one scenario; it prints what it saw (JSON or plain lines) and exits 0 when the
scenario's expectation held, 1 when it did not, 2 on usage errors."""
import argparse
import json
import os
import queue
import sys
import threading
import time

SECRET_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
VALIDATOR_URL = ("type.googleapis.com/"
                 "envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig")


def load(stubs):
    sys.path.insert(0, stubs)
    global grpc, x509, serialization, pb, sec_pb, spiffe_pb, sds_grpc, status_pb, base_pb
    import grpc
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from envoy.service.discovery.v3 import discovery_pb2 as pb
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2 as sec_pb
    from envoy.extensions.transport_sockets.tls.v3 import tls_spiffe_validator_config_pb2 as spiffe_pb
    from envoy.service.secret.v3 import sds_pb2_grpc as sds_grpc
    from envoy.config.core.v3 import base_pb2 as base_pb
    from google.rpc import status_pb2 as status_pb


def load_certs(pem):
    """Every CERTIFICATE block (this cryptography predates load_pem_x509_certificates)."""
    end = b"-----END CERTIFICATE-----"
    blocks = [b + end for b in pem.split(end) if b.strip()]
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def spiffe_id_of(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 else None


def pub(k):
    return k.public_bytes(serialization.Encoding.DER,
                          serialization.PublicFormat.SubjectPublicKeyInfo)


def unknown_fields(m, path="Secret"):
    """Paths of fields the stubs do not know (a field number that is not Envoy's shows up here
    when the stubs come from Envoy's own API files)."""
    out = []
    try:
        if len(m.UnknownFields()):
            out.append(path)
    except (AttributeError, NotImplementedError):
        return out
    for fd, v in m.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            for i, sub in enumerate(v if fd.label == fd.LABEL_REPEATED else [v]):
                out += unknown_fields(sub, "%s.%s[%d]" % (path, fd.name, i))
    return out


def describe(any_msg):
    """A JSON-able summary of one resource, with the checks a real Envoy would make."""
    out = {"type_url": any_msg.type_url}
    s = sec_pb.Secret()
    s.ParseFromString(any_msg.value)
    unknown = unknown_fields(s)
    if unknown:
        raise SystemExit("fields unknown to the stubs in %s: %s" % (s.name, unknown))
    out["name"] = s.name
    kind = s.WhichOneof("type")
    out["kind"] = kind
    if kind == "tls_certificate":
        chain = load_certs(s.tls_certificate.certificate_chain.inline_bytes)
        key_pem = s.tls_certificate.private_key.inline_bytes
        key = serialization.load_pem_private_key(key_pem, password=None)
        out["spiffe_id"] = spiffe_id_of(chain[0])
        out["serial"] = format(chain[0].serial_number, "x")
        out["key_matches"] = pub(key.public_key()) == pub(chain[0].public_key())
        out["key_pkcs8"] = key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        out["chain_len"] = len(chain)
    elif kind == "validation_context":
        vc = s.validation_context
        if vc.HasField("trusted_ca"):
            cas = load_certs(vc.trusted_ca.inline_bytes)
            out["trusted_ca"] = len(cas)
            out["ca_is_ca"] = all(
                c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca for c in cas)
        if vc.HasField("custom_validator_config"):
            cv = vc.custom_validator_config
            out["validator"] = cv.name
            out["validator_type_url"] = cv.typed_config.type_url
            cfg = spiffe_pb.SPIFFECertValidatorConfig()
            cfg.ParseFromString(cv.typed_config.value)
            if unknown_fields(cfg, "SPIFFECertValidatorConfig"):
                raise SystemExit("fields unknown to the stubs in the SPIFFE validator config")
            out["trust_domains"] = [
                {"name": td.name,
                 "cas": len(load_certs(td.trust_bundle.inline_bytes))}
                for td in cfg.trust_domains]
    return out


def summary(resp):
    return {"version_info": resp.version_info, "nonce": resp.nonce, "type_url": resp.type_url,
            "resources": [describe(r) for r in resp.resources]}


def node():
    return base_pb.Node(id="sds-test", cluster="lanyard-it", user_agent_name="envoy",
                        user_agent_version="1.30.0")


def request(names, version="", nonce="", error=None):
    r = pb.DiscoveryRequest(version_info=version, node=node(), resource_names=names,
                            type_url=SECRET_URL, response_nonce=nonce)
    if error:
        r.error_detail.CopyFrom(status_pb.Status(code=3, message=error))
    return r


class Stream:
    """A StreamSecrets call with a request queue and a response queue (reads with timeouts)."""

    def __init__(self, stub, timeout):
        self.reqs = queue.Queue()
        self.resps = queue.Queue()
        self.call = stub.StreamSecrets(self._gen(), timeout=timeout)
        threading.Thread(target=self._read, daemon=True).start()

    def _gen(self):
        while True:
            r = self.reqs.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for r in self.call:
                self.resps.put(r)
            self.resps.put(("end", None))
        except grpc.RpcError as e:
            self.resps.put(("error", e))

    def send(self, r):
        self.reqs.put(r)

    def recv(self, timeout):
        """A DiscoveryResponse, None on timeout; raises on an error status."""
        try:
            r = self.resps.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(r, tuple):
            if r[0] == "error":
                raise r[1]
            raise RuntimeError("stream ended without status error")
        return r

    def close(self):
        self.reqs.put(None)
        self.call.cancel()


def first(stream, names, wait):
    stream.send(request(names))
    r = stream.recv(wait)
    if r is None:
        raise SystemExit("no response to the first request within %s s" % wait)
    return r


def ack(stream, r, names):
    stream.send(request(names, version=r.version_info, nonce=r.nonce))


def cmd_stream(a, stub):
    s = Stream(stub, a.timeout)
    try:
        r = first(s, a.name, a.wait)
        print(json.dumps(summary(r)))
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "message": e.details()}))
        return 1
    finally:
        s.close()
    return 0


def cmd_fetch(a, stub):
    try:
        r = stub.FetchSecrets(request(a.name), timeout=a.timeout)
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "message": e.details()}))
        return 1
    print(json.dumps(summary(r)))
    return 0


def cmd_expect_error(a, stub):
    """The stream must fail with a.code and deliver no resource at all."""
    s = Stream(stub, a.timeout)
    try:
        s.send(request(a.name))
        r = s.recv(a.wait)
        if r is not None:
            print("got a response: %s" % json.dumps(summary(r)))
            return 1
        print("no response within %s s" % a.wait)
        return 1
    except grpc.RpcError as e:
        print("%s: %s" % (e.code().name, e.details()))
        return 0 if e.code().name == a.code else 1
    finally:
        s.close()


def cmd_ack_hold(a, stub):
    """After an ACK, nothing more may come while nothing changes."""
    s = Stream(stub, a.timeout)
    try:
        r = first(s, a.name, a.wait)
        ack(s, r, a.name)
        more = s.recv(a.hold)
        print("version %s acked; %s" % (r.version_info,
                                        "then version %s" % more.version_info if more
                                        else "nothing more in %s s" % a.hold))
        return 0 if more is None else 1
    finally:
        s.close()


def cmd_nack(a, stub):
    """A NACK (error_detail) with the current nonce gets no new response with the same version."""
    s = Stream(stub, a.timeout)
    try:
        r = first(s, a.name, a.wait)
        s.send(request(a.name, version="", nonce=r.nonce, error=a.message))
        more = s.recv(a.hold)
        if more is not None and more.version_info == r.version_info:
            print("the NACKed version %s came again" % r.version_info)
            return 1
        print("version %s nacked; %s" % (r.version_info,
                                         "then version %s" % more.version_info if more
                                         else "nothing more in %s s" % a.hold))
        return 0 if more is None else 1
    finally:
        s.close()


def cmd_names_change(a, stub):
    """A changed resource_names list is answered at once; a stale nonce is ignored."""
    s = Stream(stub, a.timeout)
    try:
        r = first(s, a.name, a.wait)
        ack(s, r, a.name)
        # Stale: a nonce never sent, with new names: must be ignored.
        s.send(request(a.name + a.add, version=r.version_info, nonce="stale-nonce"))
        stale = s.recv(a.hold)
        if stale is not None:
            print("a request with a stale nonce was answered: %s" % stale.version_info)
            return 1
        s.send(request(a.name + a.add, version=r.version_info, nonce=r.nonce))
        r2 = s.recv(a.wait)
        if r2 is None:
            print("changed names not answered")
            return 1
        names = sorted(x["name"] for x in summary(r2)["resources"])
        print(json.dumps({"first": r.version_info, "second": r2.version_info, "names": names}))
        return 0 if r2.version_info != r.version_info and r2.nonce != r.nonce else 1
    finally:
        s.close()


def cmd_rotation(a, stub):
    """With ACKs only, a rotation must push a new version with a new certificate."""
    s = Stream(stub, a.timeout)
    try:
        r = first(s, a.name, a.wait)
        d1 = summary(r)
        ack(s, r, a.name)
        start = time.monotonic()
        r2 = s.recv(a.hold)
        if r2 is None:
            print("no push within %s s" % a.hold)
            return 1
        d2 = summary(r2)
        print(json.dumps({"before": d1, "after": d2,
                          "seconds": round(time.monotonic() - start, 1)}))
        c1 = [x for x in d1["resources"] if x["kind"] == "tls_certificate"]
        c2 = [x for x in d2["resources"] if x["kind"] == "tls_certificate"]
        ok = (r2.version_info != r.version_info and c1 and c2 and
              c1[0]["serial"] != c2[0]["serial"] and c2[0]["key_matches"])
        return 0 if ok else 1
    finally:
        s.close()


def cmd_follow(a, stub):
    """Prints every response (one JSON line each, ACKing it) until the stream ends; the end must
    be the status a.end."""
    s = Stream(stub, a.timeout)
    s.send(request(a.name))
    deadline = time.monotonic() + a.timeout
    try:
        while time.monotonic() < deadline:
            r = s.recv(1)
            if r is None:
                continue
            print(json.dumps(summary(r)), flush=True)
            ack(s, r, a.name)
        print("END timeout", flush=True)
        return 1
    except grpc.RpcError as e:
        print("END %s %s" % (e.code().name, e.details()), flush=True)
        return 0 if e.code().name == a.end else 1
    finally:
        s.close()


def cmd_delta(a, stub):
    reqs = iter([pb.DeltaDiscoveryRequest(node=node(), type_url=SECRET_URL,
                                          resource_names_subscribe=["default"])])
    try:
        for r in stub.DeltaSecrets(reqs, timeout=a.timeout):
            print("got a delta response")
            return 1
    except grpc.RpcError as e:
        print("%s: %s" % (e.code().name, e.details()))
        return 0 if e.code() == grpc.StatusCode.UNIMPLEMENTED else 1
    print("delta stream ended without an error")
    return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--stubs", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--wait", type=float, default=20, help="for an expected response")
    p.add_argument("--hold", type=float, default=3, help="for an unexpected response")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("stream", "fetch", "ack-hold", "rotation", "delta"):
        sp = sub.add_parser(name)
        sp.add_argument("name", nargs="*")
    sp = sub.add_parser("expect-error")
    sp.add_argument("code")
    sp.add_argument("name", nargs="*")
    sp = sub.add_parser("nack")
    sp.add_argument("--message", required=True)
    sp.add_argument("name", nargs="*")
    sp = sub.add_parser("follow")
    sp.add_argument("--end", required=True)
    sp.add_argument("name", nargs="*")
    sp = sub.add_parser("names-change")
    sp.add_argument("--add", action="append", default=[])
    sp.add_argument("name", nargs="*")
    a = p.parse_args()
    load(a.stubs)
    ch = grpc.insecure_channel("unix:" + a.socket)
    stub = sds_grpc.SecretDiscoveryServiceStub(ch)
    cmds = {"stream": cmd_stream, "fetch": cmd_fetch, "expect-error": cmd_expect_error,
            "ack-hold": cmd_ack_hold, "nack": cmd_nack, "names-change": cmd_names_change,
            "rotation": cmd_rotation, "delta": cmd_delta, "follow": cmd_follow}
    rc = cmds[a.cmd](a, stub)
    ch.close()
    return rc


if __name__ == "__main__":
    # os._exit: grpcio's teardown at interpreter exit can hang for good once a streaming call was
    # cancelled (seen here, rarely); everything worth keeping is printed and flushed by then.
    try:
        code = main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
