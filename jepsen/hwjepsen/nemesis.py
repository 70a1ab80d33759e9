"""The nemesis: faults on a schedule drawn from the run's seed, one at a time, each written to
the history when it starts and when it ends.

Faults (the names `--faults` takes):
  kill       SIGKILL one node (now and then every node at once), restart it when the window ends
  pause      SIGSTOP one node, SIGCONT when the window ends
  partition  drop packets in the kernel between nodes: one node isolated, a majority and a
             minority, a bridge (two sides that cannot see each other, one node that sees
             both), or one way (a node hears nobody while everybody hears it). Clients still
             reach every node.
  loss       every node drops 20% of the packets it receives (from peers and clients)
  latency    one node's listener (now and then every node's) delays each byte in and out by
             20 ms to 1 s, with jitter (toxiproxy, latency.py)
  clock      one node's wall clock jumps forward or back by up to a minute (libfaketime;
             CLOCK_MONOTONIC is left alone, as the kernel does)
  power      one node (now and then every node) loses power: SIGKILL, then its lazyfs drops
             every write not yet fsynced; it restarts when the window ends
  disk       one node's disk is full: writes that grow a file fail with ENOSPC
  eio        one node's disk fails every write, or every fsync, with EIO

The last three need each data directory on lazyfs (disk.py). After a disk or eio window the
node is restarted (SIGKILL, its page cache kept), as an operator would once the disk is fixed.
"""

import random
import signal
import threading
import time

ALL_FAULTS = ("kill", "pause", "partition", "loss", "latency", "clock", "power", "disk", "eio")
DISK_FAULTS = ("power", "disk", "eio")
WINDOW_S = (4.0, 12.0)
GAP_S = (3.0, 8.0)


class Nemesis:
    def __init__(self, cluster, network, faults, seed, emit, clock_files=None, disks=None,
                 proxies=None):
        unknown = set(faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")
        self.cluster = cluster
        self.network = network
        self.faults = list(faults)
        self.rng = random.Random(seed)
        self.emit = emit
        self.clock_files = clock_files or {}
        self.disks = disks if disks is not None else {}
        self.proxies = proxies
        self.failing = {}  # node -> the lazyfs fault switched on
        self.stop_event = threading.Event()
        self.windows = 0
        self.down = set()
        self.paused = set()
        self.reported_exits = set()

    # --- schedule ------------------------------------------------------------------------------

    def run(self, until):
        """Faults until the monotonic time `until` (or `stop`), then heals everything."""
        try:
            while not self.stop_event.is_set() and time.monotonic() < until:
                if self._wait(self.rng.uniform(*GAP_S), until) or not self.faults:
                    continue
                fault = self.rng.choice(self.faults)
                detail = getattr(self, f"_start_{fault}")()
                self.windows += 1
                self.emit("info", "start", dict(detail, fault=fault))
                self._wait(self.rng.uniform(*WINDOW_S), until)
                self.heal(fault)
        finally:
            self.heal("all")

    def stop(self):
        self.stop_event.set()

    def _wait(self, seconds, until):
        """Sleeps, watching for brokers that exit on their own; true if the run is over."""
        end = min(time.monotonic() + seconds, until)
        while time.monotonic() < end:
            if self.stop_event.wait(min(0.5, max(0.0, end - time.monotonic()))):
                return True
            self.watch_exits()
        return time.monotonic() >= until

    def watch_exits(self):
        """A broker that exited without being killed is a crash: reported once and restarted."""
        for node, code in self.cluster.exits().items():
            proc = self.cluster.procs[node]
            if id(proc) in self.reported_exits:
                continue
            self.reported_exits.add(id(proc))
            self.emit("info", "node-exit", {"node": node, "code": code,
                                            "log": str(self.cluster.log_path(node))})
            if node not in self.down:
                self.cluster.start(node)

    # --- faults --------------------------------------------------------------------------------

    def _nodes(self):
        return list(self.cluster.node_ids)

    def _start_kill(self):
        nodes = self._nodes() if self.rng.random() < 0.2 else [self.rng.choice(self._nodes())]
        for n in nodes:
            self.cluster.kill(n)
            self.down.add(n)
        return {"nodes": nodes}

    def _start_pause(self):
        n = self.rng.choice(self._nodes())
        self.cluster.signal(n, signal.SIGSTOP)
        self.paused.add(n)
        return {"nodes": [n]}

    def _start_partition(self):
        nodes = self._nodes()
        self.rng.shuffle(nodes)
        kind = self.rng.choice(["isolate", "halves", "bridge", "one-way"])
        if kind == "isolate":
            lone, rest = nodes[:1], nodes[1:]
            self._cut(lone, rest)
            sides = [lone, rest]
        elif kind == "halves":
            minority = nodes[:(len(nodes) - 1) // 2] or nodes[:1]
            majority = nodes[len(minority):]
            self._cut(minority, majority)
            sides = [minority, majority]
        elif kind == "bridge":
            bridge = nodes[0]
            left = nodes[1:1 + (len(nodes) - 1) // 2]
            right = nodes[1 + len(left):]
            self._cut(left, right)
            sides = [left + [bridge], [bridge] + right]
        else:
            deaf = nodes[0]
            self.network.drop_from(deaf, nodes[1:])
            sides = [[deaf], nodes[1:]]
        return {"kind": kind, "sides": sides}

    def _cut(self, a, b):
        for x in a:
            self.network.drop_from(x, b)
        for y in b:
            self.network.drop_from(y, a)

    def _start_loss(self):
        for n in self._nodes():
            self.network.lose(n, 0.2)
        return {"nodes": self._nodes(), "probability": 0.2}

    def _start_latency(self):
        nodes = self._nodes() if self.rng.random() < 0.3 else [self.rng.choice(self._nodes())]
        latency_ms = self.rng.choice([20, 100, 300, 1000])
        jitter_ms = latency_ms // 2
        for n in nodes:
            self.proxies.slow(n, latency_ms, jitter_ms)
        return {"nodes": nodes, "latency_ms": latency_ms, "jitter_ms": jitter_ms}

    def _start_clock(self):
        n = self.rng.choice(self._nodes())
        offset_s = self.rng.choice([-1, 1]) * self.rng.randint(1, 60)
        set_clock(self.clock_files[n], offset_s)
        return {"nodes": [n], "offset_s": offset_s}

    def _start_power(self):
        nodes = self._nodes() if self.rng.random() < 0.2 else [self.rng.choice(self._nodes())]
        dropped = {}
        for n in nodes:
            self.cluster.kill(n)
            dropped[n] = self.disks[n].command("power-cut")
            self.down.add(n)
        return {"nodes": nodes, "lazyfs": dropped}

    def _start_disk(self):
        n = self.rng.choice(self._nodes())
        self.disks[n].command("enospc on")
        self.failing[n] = "enospc"
        return {"nodes": [n]}

    def _start_eio(self):
        n = self.rng.choice(self._nodes())
        what = self.rng.choice(["fail-write", "fail-fsync"])
        self.disks[n].command(f"{what} on")
        self.failing[n] = what
        return {"nodes": [n], "on": what}

    # --- healing -------------------------------------------------------------------------------

    def heal(self, fault):
        if fault in ("partition", "loss", "all"):
            self.network.heal()
        if fault in ("latency", "all") and self.proxies is not None:
            self.proxies.heal()
        if fault in ("pause", "all"):
            for n in sorted(self.paused):
                self.cluster.signal(n, signal.SIGCONT)
            self.paused.clear()
        if fault in ("disk", "eio", "all"):
            for n, what in sorted(self.failing.items()):
                self.disks[n].command(f"{what} off")
                # Restarted as an operator would once the disk is fixed; its page cache stays.
                self.cluster.kill(n)
                self.down.add(n)
            self.failing.clear()
        if fault in ("kill", "power", "disk", "eio", "all"):
            for n in sorted(self.down):
                self.cluster.start(n)
            self.down.clear()
        if fault in ("clock", "all"):
            for path in self.clock_files.values():
                set_clock(path, 0)
        if fault != "all":
            self.emit("info", "end", {"fault": fault})


def set_clock(path, offset_s):
    """libfaketime's relative form: the process's wall clock is the real one plus `offset_s`."""
    path.write_text(f"{offset_s:+d}s\n")
