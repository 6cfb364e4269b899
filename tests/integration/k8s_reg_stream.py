#!/usr/bin/python3
"""Writes what the fake Kubernetes API server (k8s_fake.py api) serves for pods and nodes: the
lists and the watch streams, from the recorded objects in fixtures/k8s/ (the kubelet's pod list
holds real-shaped Pod objects; api-node-*.json real-shaped Node objects).

  k8s_reg_stream.py init DIR                     nodes node-1, node-2; the recorded pods but
                                                 prod/web-7d9f8b6c5d-x2k9p; empty streams
  k8s_reg_stream.py pods-list DIR --count N --rv RV [--with-web]
                                                 a PodList of N pods cloned from the web pod
                                                 over node-1 and node-2 (plus the web pod)
  k8s_reg_stream.py pod DIR TYPE --rv RV [--name N] [--uid U] [--node NODE] [--phase P]
                                                 appends ADDED/MODIFIED/DELETED of the web pod,
                                                 changed as asked, and applies it to the list as
                                                 the API server's state
  k8s_reg_stream.py node DIR TYPE NAME --uid U --rv RV
                                                 the same for a node (named like node-1)
  k8s_reg_stream.py raw DIR RES JSON             appends one line (BOOKMARK, ERROR, DROP, END)
"""
import argparse
import copy
import json
import os
import sys

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "k8s")
WEB = "web-7d9f8b6c5d-x2k9p"


def load(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def recorded_pods():
    return load("kubelet-pods.json")["items"]


def web_pod():
    return copy.deepcopy([p for p in recorded_pods() if p["metadata"]["name"] == WEB][0])


def write(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(path + ".tmp", path)


def append(d, res, obj):
    with open(os.path.join(d, res + "-events.jsonl"), "a") as f:
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")


def pod_list(items, rv):
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
            "items": items}


def init(a):
    os.makedirs(a.dir, exist_ok=True)
    nodes = [load("api-node-node-1.json"), load("api-node-node-2.json")]
    write(os.path.join(a.dir, "nodes-list.json"),
          {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"},
           "items": nodes})
    pods = [p for p in recorded_pods() if p["metadata"]["name"] != WEB]
    write(os.path.join(a.dir, "pods-list.json"), pod_list(pods, "200"))
    for res in ("pods", "nodes"):
        open(os.path.join(a.dir, res + "-events.jsonl"), "w").close()


def pods_list(a):
    base = web_pod()
    items = []
    for i in range(a.count):
        p = copy.deepcopy(base)
        md = p["metadata"]
        md["name"] = "web-7d9f8b6c5d-%05d" % i
        md["uid"] = "8d2f3b1a-6c4e-4f7a-9b2d-%012x" % (0x100000 + i)
        md["resourceVersion"] = str(1000 + i)
        p["spec"]["nodeName"] = "node-%d" % (1 + i % 2)
        items.append(p)
    if a.with_web:
        items.append(web_pod())
    write(os.path.join(a.dir, "pods-list.json"), pod_list(items, a.rv))


def pod(a):
    p = web_pod()
    md = p["metadata"]
    md["resourceVersion"] = a.rv
    if a.name:
        md["name"] = a.name
    if a.uid:
        md["uid"] = a.uid
    if a.node is not None:
        p["spec"]["nodeName"] = a.node
        if not a.node:
            del p["spec"]["nodeName"]
            p["status"] = {"phase": "Pending"}
    if a.phase:
        p.setdefault("status", {})["phase"] = a.phase
    event(a.dir, "pods", a.type, p, "uid")


def event(d, res, typ, obj, key):
    """Appends the event to the stream and applies it to the list (the API server's state)."""
    append(d, res, {"type": typ, "object": obj})
    path = os.path.join(d, res + "-list.json")
    with open(path) as f:
        lst = json.load(f)
    lst["items"] = [x for x in lst["items"] if x["metadata"][key] != obj["metadata"][key]]
    if typ != "DELETED":
        lst["items"].append(obj)
    lst["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
    write(path, lst)


def node(a):
    n = load("api-node-node-1.json")
    n["metadata"].update({"name": a.name, "uid": a.uid, "resourceVersion": a.rv})
    event(a.dir, "nodes", a.type, n, "name")


def raw(a):
    append(a.dir, a.res, json.loads(a.json))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init")
    s.add_argument("dir")
    s = sub.add_parser("pods-list")
    s.add_argument("dir")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rv", required=True)
    s.add_argument("--with-web", action="store_true")
    s = sub.add_parser("pod")
    s.add_argument("dir")
    s.add_argument("type")
    s.add_argument("--rv", required=True)
    s.add_argument("--name")
    s.add_argument("--uid")
    s.add_argument("--node")
    s.add_argument("--phase")
    s = sub.add_parser("node")
    s.add_argument("dir")
    s.add_argument("type")
    s.add_argument("name")
    s.add_argument("--uid", required=True)
    s.add_argument("--rv", required=True)
    s = sub.add_parser("raw")
    s.add_argument("dir")
    s.add_argument("res")
    s.add_argument("json")
    a = p.parse_args()
    {"init": init, "pods-list": pods_list, "pod": pod, "node": node, "raw": raw}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
