"""Broker processes, one per node namespace, each listening on its namespace's address.

`HeadwaterCluster` runs the project's binary. Every process is started through `ip netns exec`,
which execs the broker, so the pid the harness holds is the broker's own (SIGKILL and SIGSTOP
reach it, not a wrapper).
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from . import latency, net

KAFKA_PORT = 9092


class HeadwaterCluster:
    name = "headwater"

    def __init__(self, binary, node_ids, run_dir, clock_files=None, planted=None):
        self.binary = str(binary)
        # Behind a toxiproxy (latency.py) a broker listens on its namespace's loopback and
        # advertises the node's address, where the proxy listens.
        self.proxied = False
        self.node_ids = list(node_ids)
        self.run_dir = Path(run_dir)
        self.procs = {}
        self.clock_files = clock_files or {}
        self.planted = planted

    @property
    def bootstrap(self):
        return ",".join(f"{net.node_addr(n)}:{KAFKA_PORT}" for n in self.node_ids)

    def data_dir(self, node_id):
        return self.run_dir / f"n{node_id}" / "data"

    def log_path(self, node_id):
        return self.run_dir / f"n{node_id}" / "broker.log"

    def listen_host(self, node_id):
        return latency.BROKER_LOOPBACK if self.proxied else net.node_addr(node_id)

    def start_all(self):
        for n in self.node_ids:
            self.start(n)

    def start(self, node_id):
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        self.data_dir(node_id).mkdir(parents=True, exist_ok=True)
        nodes = ",".join(f"{n}@{net.node_addr(n)}:{KAFKA_PORT}" for n in self.node_ids)
        command = ["ip", "netns", "exec", net.node_ns(node_id), self.binary, "serve",
                   "--node-id", str(node_id), "--listen", f"{self.listen_host(node_id)}:{KAFKA_PORT}",
                   "--advertise", f"{net.node_addr(node_id)}:{KAFKA_PORT}",
                   "--data-dir", str(self.data_dir(node_id)), "--cluster-nodes", nodes,
                   "--cluster-id", "jepsen"]
        if self.planted:
            command += ["--planted-bug", self.planted]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        env.update(clock_env(self.clock_files.get(node_id)))
        log = open(self.log_path(node_id), "ab")
        log.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.procs[node_id] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                               env=env, start_new_session=True)
        log.close()

    def alive(self, node_id):
        p = self.procs.get(node_id)
        return p is not None and p.poll() is None

    def signal(self, node_id, sig):
        p = self.procs.get(node_id)
        if p is not None and p.poll() is None:
            p.send_signal(sig)

    def kill(self, node_id):
        self.signal(node_id, signal.SIGKILL)
        p = self.procs.get(node_id)
        if p is not None:
            p.wait()

    def stop_all(self):
        for n in self.node_ids:
            self.signal(n, signal.SIGCONT)
            self.signal(n, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for n in self.node_ids:
            p = self.procs.get(n)
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def exits(self):
        """Nodes that exited without the harness killing them: {node: exit code}."""
        return {n: p.returncode for n, p in self.procs.items()
                if p.poll() is not None and p.returncode not in (-signal.SIGKILL,
                                                                  -signal.SIGTERM, 0)}


def clock_env(clock_file):
    """Runs a broker under libfaketime reading its offset from `clock_file`, re-read each
    second, so the clock nemesis can move the wall clock of a running broker. Only the realtime
    clock moves: the kernel never steps CLOCK_MONOTONIC, and neither does the nemesis."""
    if clock_file is None:
        return {}
    lib = find_libfaketime()
    return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(clock_file),
            "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_DONT_RESET": "1"}


def find_libfaketime():
    for candidate in ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                      "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                      "/usr/lib/faketime/libfaketime.so.1"):
        if Path(candidate).exists():
            return candidate
    raise RuntimeError("libfaketime not found (apt install faketime)")


class KafkaCluster(HeadwaterCluster):
    """Apache Kafka 4.3.1 (KRaft, every node a broker and a controller), from the jars
    bench/kafka/fetch-kafka.sh puts in .deps/kafka, one JVM per node namespace. For showing
    that the checker reports the loss a weak configuration allows (`extra_props`)."""

    name = "kafka"
    CONTROLLER_PORT = 9093

    def __init__(self, repo, node_ids, run_dir, extra_props=()):
        super().__init__("java", node_ids, run_dir)
        self.repo = Path(repo)
        self.extra_props = list(extra_props)
        self.formatted = set()

    def _props(self, node_id):
        voters = ",".join(f"{n}@{net.node_addr(n)}:{self.CONTROLLER_PORT}" for n in self.node_ids)
        addr = net.node_addr(node_id)
        lines = [
            "process.roles=broker,controller", f"node.id={node_id}",
            f"controller.quorum.voters={voters}", "controller.listener.names=CONTROLLER",
            f"listeners=PLAINTEXT://{self.listen_host(node_id)}:{KAFKA_PORT},"
            f"CONTROLLER://{addr}:{self.CONTROLLER_PORT}",
            f"advertised.listeners=PLAINTEXT://{addr}:{KAFKA_PORT}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir(node_id)}", "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=3", "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
            "group.initial.rebalance.delay.ms=0", "num.network.threads=2", "num.io.threads=2",
            *self.extra_props,
        ]
        return "\n".join(lines) + "\n"

    def _java(self, *args):
        return ["java", "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", str(self.repo / ".deps" / "kafka" / "*"), *args]

    def start(self, node_id):
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        node_dir = self.run_dir / f"n{node_id}"
        node_dir.mkdir(parents=True, exist_ok=True)
        props = node_dir / "server.properties"
        if node_id not in self.formatted:
            props.write_text(self._props(node_id))
            subprocess.run(self._java("kafka.tools.StorageTool", "format", "--cluster-id",
                                      "amVwc2VuLWthZmthLXJ1bg", "--config", str(props)),
                           check=True, capture_output=True)
            self.formatted.add(node_id)
        log = open(self.log_path(node_id), "ab")
        log.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        command = ["ip", "netns", "exec", net.node_ns(node_id),
                   *self._java("kafka.Kafka", str(props))]
        self.procs[node_id] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        log.close()

    def exits(self):
        # The JVM exits 143 on SIGTERM and 137 is never seen (SIGKILL): anything else is a crash.
        return {n: p.returncode for n, p in self.procs.items()
                if p.poll() is not None and p.returncode not in (-signal.SIGKILL,
                                                                  -signal.SIGTERM, 0, 143)}
