#!/usr/bin/python3
"""An unauthenticated attacker of the node API (issue 14, point 1), over TLS from loopback source
addresses 127.0.0.x (all loopback on Linux).

  node_flood.py PORT hold FIRST_SRC N_SRC PER_SRC SECONDS OUT
        for SECONDS, keeps trying to hold PER_SRC TLS connections from each of N_SRC sources
        (127.0.0.FIRST_SRC...); even ones send the HTTP/2 preface and SETTINGS and then nothing,
        odd ones nothing after the handshake; 6,000 attempts at most. Writes {"attempts",
        "accepted", "refused", "closed_by_server", "max_held", "first_close_seconds"} to OUT.
  node_flood.py PORT big SRC OUT
        one unauthenticated Attest announcing a 16 MiB message: writes {"ended": true if the
        server ended the stream (trailers or RST_STREAM) within 10 s, "sent": bytes sent}
  node_flood.py PORT streams SRC OUT
        two concurrent unauthenticated Attests (streams 1 and 3, requests left open), then
        SignX509 without a certificate: writes {"concurrent_ended": [ids], "sign_ended": [ids]}
"""
import json
import select
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def headers(stream, path):
    block = b"".join(literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "https"), (":path", path),
        (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")])
    return frame(1, 0x4, stream, block)


def tls_connect(port, src):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(5)
    try:
        raw.bind((src, 0))
        raw.connect(("127.0.0.1", port))
        # A refused connection (closed at accept) fails the handshake.
        return ctx.wrap_socket(raw)
    except (OSError, ssl.SSLError):
        raw.close()
        return None


def closed(s):
    """True when the server closed s; drains what is readable (a TLS 1.3 session ticket makes
    the socket readable without application data, hence non-blocking reads)."""
    s.setblocking(False)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError, ValueError):
        return True


def hold(port, first, nsrc, per_src, secs, out):
    st = {"attempts": 0, "accepted": 0, "refused": 0, "closed_by_server": 0, "max_held": 0,
          "first_close_seconds": None}
    held = {i: [] for i in range(nsrc)}
    start = time.monotonic()
    end = start + secs
    while time.monotonic() < end and st["attempts"] < 6000:
        for i in range(nsrc):
            src = "127.0.0.%d" % (first + i)
            for c in list(held[i]):
                if closed(c[0]):
                    st["closed_by_server"] += 1
                    if st["first_close_seconds"] is None:
                        st["first_close_seconds"] = round(time.monotonic() - c[1], 2)
                    c[0].close()
                    held[i].remove(c)
            while len(held[i]) < per_src and st["attempts"] < 6000 and time.monotonic() < end:
                st["attempts"] += 1
                s = tls_connect(port, src)
                if s is None:
                    st["refused"] += 1
                    break  # this source is at its limit for now
                st["accepted"] += 1
                if st["accepted"] % 2 == 0:
                    s.sendall(PREFACE + frame(4, 0, 0, b""))
                held[i].append((s, time.monotonic()))
        st["max_held"] = max(st["max_held"], sum(len(v) for v in held.values()))
        time.sleep(0.2)
    for v in held.values():
        for c in v:
            c[0].close()
    with open(out, "w") as f:
        json.dump(st, f)


def big(port, src, out):
    s = tls_connect(port, src)
    res = {"ended": False, "sent": 0, "connected": s is not None}
    if s:
        msg = struct.pack(">BI", 0, 16 << 20) + b"\0" * 16000
        s.sendall(PREFACE + frame(4, 0, 0, b"") + headers(1, "/lanyard.node.v1.Node/Attest"))
        s.sendall(frame(0, 0, 1, msg))
        res["sent"] = len(msg)
        buf = b""
        deadline = time.monotonic() + 10
        s.settimeout(0.5)
        while time.monotonic() < deadline and not res["ended"]:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 9:
                ln = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + ln:
                    break
                ftype, flags = buf[3], buf[4]
                sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                buf = buf[9 + ln:]
                if sid == 1 and (ftype == 3 or (ftype in (0, 1) and flags & 1)):
                    res["ended"] = True
        s.close()
    with open(out, "w") as f:
        json.dump(res, f)


def ended_streams(s, secs):
    """Stream ids the server ended (END_STREAM or RST_STREAM) within secs."""
    ended, buf = set(), b""
    deadline = time.monotonic() + secs
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            ln, ftype, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
            sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + ln:]
            if ftype == 3 or (ftype in (0, 1) and flags & 1):
                ended.add(sid)
    return ended


def streams(port, src, out):
    """Two concurrent Attests, then an agent-only method, without a client certificate."""
    res = {}
    s = tls_connect(port, src)
    if s:
        s.sendall(PREFACE + frame(4, 0, 0, b"") + headers(1, "/lanyard.node.v1.Node/Attest") +
                  headers(3, "/lanyard.node.v1.Node/Attest"))
        res["concurrent_ended"] = sorted(ended_streams(s, 3))
        s.close()
    s = tls_connect(port, src)
    if s:
        s.sendall(PREFACE + frame(4, 0, 0, b"") + headers(1, "/lanyard.node.v1.Node/SignX509"))
        res["sign_ended"] = sorted(ended_streams(s, 3))
        s.close()
    with open(out, "w") as f:
        json.dump(res, f)


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "hold":
        a = sys.argv[3:]
        hold(port, int(a[0]), int(a[1]), int(a[2]), float(a[3]), a[4])
    elif mode == "big":
        big(port, "127.0.0.%d" % int(sys.argv[3]), sys.argv[4])
    elif mode == "streams":
        streams(port, "127.0.0.%d" % int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
