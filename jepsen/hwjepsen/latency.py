"""Added latency through toxiproxy (v2.5.0, built from the Go module proxy).

When a run uses the latency fault, each node's namespace gets a toxiproxy server: the proxy
listens on the node's address (10.77.0.N:9092, the address every client and peer is told) and
forwards to the broker, which then listens on the namespace's loopback. Every connection the node
accepts, from a client or from a peer fetching from it, crosses the proxy. The fault adds a
latency toxic to both directions of a node's proxy; toxiproxy delays each chunk in turn, so a
connection stays in order. Partitions and loss still work: their iptables rules drop packets on
the way to the proxy's address.

The proxy's API listens on the namespace's loopback; the harness reaches it with curl run inside
the namespace. Its processes live in the node namespaces, so the guard's cleanup kills them with
everything else.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import net

VERSION = "v2.5.0"
MODULE = f"github.com/Shopify/toxiproxy/v2/cmd/server@{VERSION}"
BIN = Path(__file__).resolve().parent.parent / ".bin" / f"toxiproxy-server-{VERSION}"
API_PORT = 8474
PROXY = "kafka"
BROKER_LOOPBACK = "127.0.0.1"


def build():
    """`go install`s the server once; the binary's name carries the version."""
    if BIN.exists():
        return
    BIN.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        subprocess.run(["go", "install", MODULE], check=True, env=dict(os.environ, GOBIN=gobin))
        shutil.move(str(Path(gobin) / "server"), str(BIN))


class Proxies:
    """One toxiproxy per node, in front of a broker listening on `BROKER_LOOPBACK:port`."""

    def __init__(self, node_ids, run_dir, port):
        self.node_ids = list(node_ids)
        self.run_dir = Path(run_dir)
        self.port = port
        self.procs = {}
        self.slowed = set()

    def start(self):
        for n in self.node_ids:
            log = open(self.run_dir / f"n{n}" / "toxiproxy.log", "ab")
            self.procs[n] = subprocess.Popen(
                ["ip", "netns", "exec", net.node_ns(n), str(BIN), "-host", "127.0.0.1",
                 "-port", str(API_PORT)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, LOG_LEVEL="info"))
            log.close()
        for n in self.node_ids:
            self._wait_ready(n)
            self._api(n, "POST", "/proxies", {
                "name": PROXY, "listen": f"{net.node_addr(n)}:{self.port}",
                "upstream": f"{BROKER_LOOPBACK}:{self.port}", "enabled": True})

    def _wait_ready(self, n, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while True:
            if self.procs[n].poll() is not None:
                raise RuntimeError(f"toxiproxy of node {n} exited; see {self.run_dir}/n{n}/toxiproxy.log")
            if self._api(n, "GET", "/version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"toxiproxy of node {n} did not answer within {timeout_s:.0f} s")
            time.sleep(0.1)

    def _api(self, n, method, path, body=None, check=True):
        args = ["curl", "-sS", "-f", "-X", method, f"http://127.0.0.1:{API_PORT}{path}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        return net.in_ns(net.node_ns(n), *args, check=check)

    def slow(self, n, latency_ms, jitter_ms):
        """Every byte into and out of node `n`'s listener waits `latency_ms` +- `jitter_ms`."""
        for stream in ("upstream", "downstream"):
            self._api(n, "POST", f"/proxies/{PROXY}/toxics", {
                "name": f"latency-{stream}", "type": "latency", "stream": stream,
                "toxicity": 1.0, "attributes": {"latency": latency_ms, "jitter": jitter_ms}})
        self.slowed.add(n)

    def heal(self):
        for n in sorted(self.slowed):
            for stream in ("upstream", "downstream"):
                self._api(n, "DELETE", f"/proxies/{PROXY}/toxics/latency-{stream}", check=False)
        self.slowed.clear()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
