#!/usr/bin/python3
"""A fake kubelet or Kubernetes API server for the integration tests, serving the recorded-shape
fixtures of tests/integration/fixtures/k8s/ on 127.0.0.1.

  k8s_fake.py kubelet --state DIR [--port N] [--tls CERT KEY] [--token TOKEN] [--pods FILE]
                      [--later FILE --switch-after N]
      GET /pods answers the pod list (FILE, default kubelet-pods.json); after N requests it
      answers --later instead. With --token, a request without "Authorization: Bearer TOKEN"
      gets 401 Unauthorized, as from a kubelet that cannot authenticate the caller.

  k8s_fake.py api --state DIR [--port N] [--tls CERT KEY] --token TOKEN
      POST /apis/authentication.k8s.io/v1/tokenreviews answers tokenreview-<jti>.json, where
      <jti> is the "jti" claim of the reviewed token (unknown: tokenreview-unauthenticated.json);
      GET /api/v1/namespaces/lanyard/pods/lanyard-agent-7xk2p, /api/v1/nodes/node-{1,2} the
      pod and node objects; GET and PATCH (merge) /api/v1/namespaces/lanyard/configmaps/
      lanyard-bundle a ConfigMap kept in DIR/configmap.json. Requests without the server's
      TOKEN get 401.
      GET /api/v1/pods, /api/v1/nodes and /apis/lanyard.io/v1alpha1/clusterspiffeids list
      DIR/<res>-list.json (a PodList/NodeList the test
      writes) in pages (?limit=, ?continue=); with ?watch=1 they stream the lines of
      DIR/<res>-events.jsonl as watch events, from where the previous watch of <res> stopped,
      waiting for lines the test appends. Two control lines: {"type": "DROP"} cuts the
      connection without ending the chunked body (a dropped connection), {"type": "END"} ends
      the watch normally. A recorded {"type": "ERROR", "object": {Status 410}} is sent as it is.

  k8s_fake.py token --jti JTI [--aud AUD]
      Prints a projected-token-shaped JWT (unsigned: the fake API server is the judge).

The server writes DIR/port once it listens and appends one line per request to DIR/requests.
It stops on SIGTERM."""
import argparse
import base64
import http.server
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "k8s")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def claims_of(token):
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-k8s"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self):
        st = self.server.state
        with st["lock"]:
            st["n"] += 1
            n = st["n"]
            with open(os.path.join(st["dir"], "requests"), "a") as f:
                f.write("%s %s %s\n" % (self.command, self.path,
                                        "auth" if self.headers.get("Authorization") else "-"))
        return n

    def authorized(self):
        want = self.server.args.token
        if want and self.headers.get("Authorization") != "Bearer " + want:
            if self.server.args.role == "kubelet":
                self.reply(401, b"Unauthorized\n", "text/plain; charset=utf-8")
            else:
                self.reply(401, fixture("api-status-401.json"))
            return False
        return True

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def handle_any(self):
        n = self.record()
        body = self.body()
        if not self.authorized():
            return
        if self.server.args.role == "kubelet":
            return self.kubelet(n)
        return self.api(body)

    def kubelet(self, n):
        a = self.server.args
        if self.command != "GET" or self.path != "/pods":
            return self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
        name = a.later if a.later and a.switch_after and n > a.switch_after else a.pods
        self.reply(200, fixture(name))

    def api(self, body):
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        if self.command == "GET" and url.path in ("/api/v1/pods", "/api/v1/nodes",
                                                  "/apis/lanyard.io/v1alpha1/clusterspiffeids"):
            res = url.path.rsplit("/", 1)[1]
            q = urllib.parse.parse_qs(url.query)
            if q.get("watch") == ["1"]:
                return self.watch(res, q)
            return self.list(res, q)
        if self.command == "POST" and self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
            review = json.loads(body or b"{}")
            token = review.get("spec", {}).get("token", "")
            jti = claims_of(token).get("jti", "unauthenticated")
            try:
                answer = json.loads(fixture("tokenreview-%s.json" % os.path.basename(jti)))
            except OSError:
                answer = json.loads(fixture("tokenreview-unauthenticated.json"))
            answer["spec"] = review.get("spec", {})
            return self.reply(201, json.dumps(answer).encode())
        if self.command == "GET" and self.path == "/api/v1/namespaces/lanyard/pods/lanyard-agent-7xk2p":
            return self.reply(200, fixture("api-pod-lanyard-agent.json"))
        for node in ("node-1", "node-2"):
            if self.command == "GET" and self.path == "/api/v1/nodes/" + node:
                return self.reply(200, fixture("api-node-%s.json" % node))
        if self.path == "/api/v1/namespaces/lanyard/configmaps/lanyard-bundle":
            path = os.path.join(st["dir"], "configmap.json")
            with st["lock"]:
                try:
                    with open(path) as f:
                        cm = json.load(f)
                except OSError:
                    cm = {"kind": "ConfigMap", "apiVersion": "v1",
                          "metadata": {"name": "lanyard-bundle", "namespace": "lanyard",
                                       "uid": "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
                                       "resourceVersion": "1"}}
                if self.command == "PATCH":
                    patch = json.loads(body or b"{}")
                    cm.setdefault("data", {}).update(patch.get("data", {}))
                    cm["metadata"]["resourceVersion"] = str(int(cm["metadata"]["resourceVersion"]) + 1)
                    with open(path + ".tmp", "w") as f:
                        json.dump(cm, f)
                    os.rename(path + ".tmp", path)
                elif self.command != "GET":
                    return self.reply(405, b"{}")
            return self.reply(200, json.dumps(cm).encode())
        self.reply(404, fixture("api-status-404-pod.json"))


    def list(self, res, q):
        try:
            with open(os.path.join(self.server.state["dir"], res + "-list.json")) as f:
                full = json.load(f)
        except OSError:
            full = {"kind": res.capitalize()[:-1] + "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "1"}, "items": []}
        limit = int(q.get("limit", ["0"])[0])
        start = int(base64.b64decode(q["continue"][0])) if "continue" in q else 0
        items = full["items"]
        page = dict(full)
        page["metadata"] = dict(full.get("metadata", {}))
        if limit and start + limit < len(items):
            page["items"] = items[start:start + limit]
            page["metadata"]["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            page["metadata"]["remainingItemCount"] = len(items) - start - limit
        else:
            page["items"] = items[start:]
        self.reply(200, json.dumps(page).encode())

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, res, q):
        st = self.server.state
        path = os.path.join(st["dir"], res + "-events.jsonl")
        deadline = time.time() + min(int(q.get("timeoutSeconds", ["300"])[0]), 300)
        # The newest watch of a resource takes over: an older one (of a client that went
        # away without the fake noticing) stops before it consumes an event.
        with st["lock"]:
            gen = st.setdefault("gen", {}).get(res, 0) + 1
            st["gen"][res] = gen
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        while time.time() < deadline:
            with st["lock"]:
                if st["gen"][res] != gen:
                    return
                pos = st.setdefault("pos", {}).get(res, 0)
                try:
                    with open(path, "rb") as f:
                        lines = f.read().split(b"\n")
                except OSError:
                    lines = []
                # Only complete lines (the test appends whole lines).
                line = lines[pos] if pos < len(lines) - 1 else None
                if line is not None:
                    st["pos"][res] = pos + 1
            if line is None:
                time.sleep(0.02)
                continue
            if not line.strip():
                continue
            ev = json.loads(line)
            if ev.get("type") == "DROP":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if ev.get("type") == "END":
                break
            self.chunk(line + b"\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def serve(args):
    os.makedirs(args.state, exist_ok=True)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.args = args
    srv.state = {"lock": threading.Lock(), "n": 0, "dir": args.state}
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(os.path.join(args.state, "port.tmp"), "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(os.path.join(args.state, "port.tmp"), os.path.join(args.state, "port"))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()


def token(args):
    now = int(time.time())
    header = {"alg": "RS256", "kid": "7T5Hn2mA1k0"}
    claims = {"aud": [args.aud], "exp": now + 7200, "iat": now, "nbf": now, "jti": args.jti,
              "iss": "https://kubernetes.default.svc.cluster.local",
              "kubernetes.io": {"namespace": "lanyard",
                                "node": {"name": "node-1",
                                         "uid": "4f6c2a1e-8b3d-4e5f-9a0b-1c2d3e4f5a6b"},
                                "pod": {"name": "lanyard-agent-7xk2p",
                                        "uid": "1b9e4c7d-2a3f-4e8b-9c1d-5f6a7b8c9d0e"},
                                "serviceaccount": {"name": "lanyard-agent",
                                                   "uid": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"}},
              "sub": "system:serviceaccount:lanyard:lanyard-agent"}
    print("%s.%s.%s" % (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                        b64url(b"not-checked-by-the-fake")))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    for role in ("kubelet", "api"):
        s = sub.add_parser(role)
        s.add_argument("--state", required=True)
        s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
        s.add_argument("--token")
        s.add_argument("--port", type=int, default=0)
        if role == "kubelet":
            s.add_argument("--pods", default="kubelet-pods.json")
            s.add_argument("--later")
            s.add_argument("--switch-after", type=int, default=0)
    t = sub.add_parser("token")
    t.add_argument("--jti", required=True)
    t.add_argument("--aud", default="lanyard-server")
    args = p.parse_args()
    if args.role == "token":
        token(args)
    else:
        if args.role == "api" and not args.token:
            p.error("api needs --token")
        serve(args)


if __name__ == "__main__":
    sys.exit(main())
