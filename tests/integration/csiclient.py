"""CSI client for test_csi.sh: python3-grpcio with stubs generated at test time from
proto/csi/csi.proto, calling lanyard-agent's CSI node plugin the way the kubelet does for an
ephemeral inline volume.

Subcommands print what they saw and exit 0 when the outcome was the expected one (--expect, a
gRPC status name, OK by default), 1 when not, 2 on usage errors."""
import argparse
import json
import sys

EPHEMERAL = "csi.storage.k8s.io/ephemeral"


def load(stubs):
    sys.path.insert(0, stubs)
    global grpc, pb, pb_grpc
    import grpc
    from csi import csi_pb2 as pb
    from csi import csi_pb2_grpc as pb_grpc


def channel(sock):
    return grpc.insecure_channel("unix:" + sock)


def code_name(e):
    return e.code().name if isinstance(e, grpc.RpcError) else "OK"


def info(args):
    """Every Identity call and the Node calls without side effects, as JSON."""
    ch = channel(args.socket)
    ident = pb_grpc.IdentityStub(ch)
    node = pb_grpc.NodeStub(ch)
    t = args.timeout
    pi = ident.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=t)
    caps = ident.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest(), timeout=t)
    pr = ident.Probe(pb.ProbeRequest(), timeout=t)
    ncaps = node.NodeGetCapabilities(pb.NodeGetCapabilitiesRequest(), timeout=t)
    ni = node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=t)
    print(json.dumps({
        "name": pi.name, "vendor_version": pi.vendor_version,
        "plugin_capabilities": len(caps.capabilities),
        "probe_has_ready": pr.HasField("ready"), "ready": pr.ready.value,
        "node_capabilities": len(ncaps.capabilities),
        "node_id": ni.node_id, "max_volumes_per_node": ni.max_volumes_per_node,
    }))
    return 0


def publish_request(args):
    ctx = {} if args.no_ephemeral else {EPHEMERAL: "true"}
    if args.pod:
        ns, name = args.pod.split("/", 1)
        ctx.update({"csi.storage.k8s.io/pod.namespace": ns,
                    "csi.storage.k8s.io/pod.name": name,
                    "csi.storage.k8s.io/pod.uid": args.pod_uid,
                    "csi.storage.k8s.io/serviceAccount.name": "default"})
    if args.ephemeral_value is not None:
        ctx[EPHEMERAL] = args.ephemeral_value
    cap = pb.VolumeCapability(
        access_mode=pb.VolumeCapability.AccessMode(mode=args.mode))
    if args.access == "block":
        cap.block.SetInParent()
    elif args.access == "mount":
        cap.mount.SetInParent()
    req = pb.NodePublishVolumeRequest(volume_id=args.volume_id, target_path=args.target,
                                      readonly=args.readonly, volume_context=ctx)
    if not args.no_capability:
        req.volume_capability.CopyFrom(cap)
    return req


def expect(args, what, call):
    try:
        call()
        got, msg = "OK", ""
    except grpc.RpcError as e:
        got, msg = e.code().name, e.details()
    print("%s: %s%s" % (what, got, (" (%s)" % msg) if msg else ""))
    return 0 if got == args.expect else 1


def publish(args):
    node = pb_grpc.NodeStub(channel(args.socket))
    req = publish_request(args)
    return expect(args, "NodePublishVolume",
                  lambda: node.NodePublishVolume(req, timeout=args.timeout))


def unpublish(args):
    node = pb_grpc.NodeStub(channel(args.socket))
    req = pb.NodeUnpublishVolumeRequest(volume_id=args.volume_id, target_path=args.target)
    return expect(args, "NodeUnpublishVolume",
                  lambda: node.NodeUnpublishVolume(req, timeout=args.timeout))


def raw(args):
    """A method the plugin does not serve (NodeStageVolume...), with an empty request."""
    call = channel(args.socket).unary_unary(args.path, request_serializer=lambda b: b,
                                            response_deserializer=lambda b: b)
    return expect(args, args.path, lambda: call(b"", timeout=args.timeout))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--expect", default="OK")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info")
    p = sub.add_parser("publish")
    p.add_argument("--volume-id", default="")
    p.add_argument("--target", default="")
    p.add_argument("--readonly", action="store_true")
    p.add_argument("--no-ephemeral", action="store_true")
    p.add_argument("--ephemeral-value")
    p.add_argument("--no-capability", action="store_true")
    p.add_argument("--access", choices=["mount", "block", "none"], default="mount")
    p.add_argument("--mode", type=int, default=1)  # SINGLE_NODE_WRITER, as the kubelet sends
    p.add_argument("--pod", help="namespace/name for the pod info the kubelet adds")
    p.add_argument("--pod-uid", default="00000000-0000-0000-0000-000000000000")
    u = sub.add_parser("unpublish")
    u.add_argument("--volume-id", default="")
    u.add_argument("--target", default="")
    r = sub.add_parser("raw")
    r.add_argument("path")
    args = ap.parse_args()
    load(args.stubs)
    try:
        return {"info": info, "publish": publish, "unpublish": unpublish, "raw": raw}[args.cmd](args)
    except grpc.RpcError as e:
        print("%s: %s (%s)" % (args.cmd, code_name(e), e.details()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
