#!/usr/bin/env python3
"""Attacker's tool for the descriptor tests: opens TLS connections (ALPN h2, HTTP/2 preface sent,
so they count as established) to HOST:PORT until the process PID holds at least TARGET open
descriptors or MAX connections are open, prints "held N (fds F)", then keeps them open until the
file RELEASE exists (at most 120 s).

usage: hold_conns.py HOST PORT PID TARGET MAX RELEASE
"""
import os
import socket
import ssl
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\x04\0\0\0\0\0"


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def main():
    host, port, pid, target, cap, release = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                              int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    held = []
    while len(held) < cap and fds(pid) < target:
        raw = socket.create_connection((host, port), timeout=10)
        try:
            s = ctx.wrap_socket(raw)
            s.sendall(PREFACE)
        except (OSError, ssl.SSLError) as e:
            print("connection %d failed: %s" % (len(held), e), flush=True)
            raw.close()
            break
        held.append(s)
        time.sleep(0.01)
    print("held %d (fds %d)" % (len(held), fds(pid)), flush=True)
    end = time.monotonic() + 120
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.1)
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
