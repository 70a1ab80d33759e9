#!/usr/bin/env python3
"""Measure a broker's start-up time: launch-to-first-answered-request.

Start this before the broker is launched. It polls 127.0.0.1:PORT every
--interval-ms with a real ApiVersions v0 request (a new connection each time)
and stops at the first reply that carries the request's correlation id and
error_code 0. Then it reads the launch time (seconds since the epoch, written
by whoever exec'd the broker just before doing so) from --launched-file and
prints one line of JSON:

    {"ready_ms": ..., "attempts": ..., "launched_epoch": ..., "ready_epoch": ...}

Once its first poll has been sent it creates --started-file, so the caller
can wait for it before launching the broker (Python's own start-up must not
be counted against the broker).

Usage: probe.py --port PORT --launched-file F --started-file F
                [--interval-ms 2] [--timeout 120]
"""

import argparse
import json
import os
import socket
import struct
import sys
import time


def api_versions_v0(correlation_id):
    client_id = b"bench-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def try_once(port, correlation_id, read_timeout):
    """True when the broker answered ApiVersions with error_code 0."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(api_versions_v0(correlation_id))
            head = recv_exact(s, 10)  # size, correlation id, error code
            if head is None:
                return False
            _size, corr, err = struct.unpack(">iih", head)
            return corr == correlation_id and err == 0
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--launched-file", required=True)
    ap.add_argument("--started-file", required=True)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    deadline = time.time() + a.timeout
    attempts = 0
    started = False
    while True:
        attempts += 1
        # A connection the broker accepted but has not answered yet (its
        # listener is bound but request handling has not started) is left
        # waiting: the reply time is then exactly the first answered request.
        ok = try_once(a.port, attempts, read_timeout=max(1.0, deadline - time.time()))
        now = time.time()
        if not started:
            open(a.started_file, "w").close()
            started = True
        if ok:
            break
        if now > deadline:
            print(json.dumps({"error": f"no ApiVersions answer on port {a.port} within {a.timeout} s",
                              "attempts": attempts}))
            return 1
        time.sleep(a.interval_ms / 1000.0)

    for _ in range(1000):  # the launcher writes the file before exec'ing the broker
        if os.path.exists(a.launched_file) and os.path.getsize(a.launched_file) > 0:
            break
        time.sleep(0.01)
    with open(a.launched_file) as f:
        launched = float(f.read().strip())
    print(json.dumps({"ready_ms": round((now - launched) * 1000.0, 1), "attempts": attempts,
                      "launched_epoch": launched, "ready_epoch": now}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
