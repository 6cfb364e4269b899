#!/usr/bin/python3
"""One process holding many Workload API connections (issue 14, point 5), with the raw HTTP/2
client of exec_race.py.

  conn_flood.py SOCKET streams N OUT CHECK   opens N connections, each with an open
        FetchX509Bundles stream; writes {"accepted", "refused"} to OUT once every connection got
        its first message or was closed, then holds them until the file CHECK exists and writes
        {"accepted", "refused", "still_open"} to OUT (waits 120 s at most for CHECK)
  conn_flood.py SOCKET idle N OUT            opens N connections with the HTTP/2 preface and no
        call; writes {"closed", "seconds"} to OUT once the agent closed them all (60 s at most)
"""
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exec_race import PREFACE, frame, request  # noqa: E402


def write(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.rename(path + ".tmp", path)


def connect(path, payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    try:
        s.sendall(payload)
    except OSError:
        pass
    return s


def is_closed(s):
    """True when the agent closed s (EOF or reset); drains what is readable."""
    try:
        while True:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                return False
            if not s.recv(65536):
                return True
    except OSError:
        return True


def first_data(s, deadline):
    """'data' when a DATA frame arrived on stream 1, 'closed' on EOF, 'timeout'."""
    buf = b""
    s.setblocking(False)
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        try:
            chunk = s.recv(65536)
        except OSError:
            return "closed"
        if not chunk:
            return "closed"
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, sid = buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            if ftype == 4 and not buf[4] & 1:
                s.sendall(frame(4, 1, 0, b""))
            if ftype == 0 and sid == 1 and length > 5:
                return "data"
            buf = buf[9 + length:]
    return "timeout"


def streams(path, n, out, check):
    hello = PREFACE + frame(4, 0, 0, b"") + request(1, "/SpiffeWorkloadAPI/FetchX509Bundles")
    socks = [connect(path, hello) for _ in range(n)]
    deadline = time.monotonic() + 30
    state = [first_data(s, deadline) for s in socks]
    held = [s for s, st in zip(socks, state) if st == "data"]
    res = {"accepted": len(held), "refused": state.count("closed"),
           "timeout": state.count("timeout")}
    write(out, res)
    end = time.monotonic() + 120
    while not os.path.exists(check) and time.monotonic() < end:
        time.sleep(0.1)
    res["still_open"] = sum(not is_closed(s) for s in held)
    write(out, res)


def idle(path, n, out):
    start = time.monotonic()
    socks = [connect(path, PREFACE + frame(4, 0, 0, b"")) for _ in range(n)]
    open_ = list(socks)
    end = start + 60
    while open_ and time.monotonic() < end:
        time.sleep(0.1)
        open_ = [s for s in open_ if not is_closed(s)]
    write(out, {"closed": n - len(open_), "seconds": round(time.monotonic() - start, 2)})


def main():
    path, mode, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "streams":
        streams(path, n, out, sys.argv[5])
    else:
        idle(path, n, out)


if __name__ == "__main__":
    main()
