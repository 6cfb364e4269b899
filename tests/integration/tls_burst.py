#!/usr/bin/env python3
"""tls_burst.py PORT THREADS SECONDS OUT: THREADS threads each make complete TLS 1.3 handshakes
(no client certificate, ALPN h2) with 127.0.0.1:PORT one after another for SECONDS (at most 400
each), closing each connection at once. Writes {"attempts", "ok", "reset", "refused", "other",
"reset_max_s"} to OUT: "reset" counts handshakes the server cut short (reset or closed before
the handshake finished, as its handshake cap does), "refused" connects refused (server down),
reset_max_s the longest time such a cut-short attempt took (printed, never asserted)."""
import errno
import json
import socket
import ssl
import sys
import threading
import time


def one(ctx, port, st, lock):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(10)
    t0 = time.monotonic()
    kind = "other"
    try:
        raw.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        kind = "refused"
    except OSError:
        pass
    else:
        try:
            s = ctx.wrap_socket(raw)
            s.close()
            kind = "ok"
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            kind = "reset"
        except ssl.SSLEOFError:
            kind = "reset"
        except ssl.SSLError as e:
            kind = "reset" if "EOF" in str(e) or "reset" in str(e).lower() else "other"
        except OSError as e:
            kind = "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "other"
    raw.close()
    with lock:
        st["attempts"] += 1
        st[kind] += 1
        if kind == "reset":
            st["reset_max_s"] = max(st["reset_max_s"], round(time.monotonic() - t0, 3))


def main():
    port, threads, secs, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    st = {"attempts": 0, "ok": 0, "reset": 0, "refused": 0, "other": 0, "reset_max_s": 0.0}
    lock = threading.Lock()
    end = time.monotonic() + secs

    def run():
        for _ in range(400):
            if time.monotonic() >= end:
                break
            one(ctx, port, st, lock)
            if st["refused"]:
                time.sleep(0.01)  # the server is down: do not spin

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with open(out, "w") as f:
        json.dump(st, f)


main()
