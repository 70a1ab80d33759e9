"""Fixtures for the real-client tests.

Which broker the tests talk to:

* ``HEADWATER_BOOTSTRAP=host:port`` -- an already running broker (Headwater or
  Apache Kafka). Tests that need to kill or restart the broker are skipped.
* ``HEADWATER_KAFKA_REFERENCE=1`` -- a local Apache Kafka started per test
  module with ``bench/kafka/start-kafka.sh`` (kill/start/stop supported). Used
  to check that the tests themselves are right, crash test included.
* otherwise -- the Headwater binary at ``HEADWATER_BIN`` (default
  ``target/release/headwater``), one process per test module, on a free port
  with a temporary data directory.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clientlib import REPO_ROOT
READY_TIMEOUT_S = 10.0
READY_POLL_S = 0.02
DEFAULT_TEST_TIMEOUT_S = 300


def free_port():
    """A port the kernel just handed out for 127.0.0.1 (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text[-lines:])


class ExternalBroker:
    """A broker someone else runs; it cannot be killed or restarted from here."""

    can_restart = False
    kind = "external"

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.log_path = None

    def _unsupported(self):
        pytest.skip("test needs a broker it can kill/restart (HEADWATER_BOOTSTRAP is set)")

    def kill(self):
        self._unsupported()

    def start(self):
        self._unsupported()

    def stop(self):
        self._unsupported()

    def close(self):
        pass


class HeadwaterBroker:
    """A Headwater process on 127.0.0.1:port with its own data directory."""

    can_restart = True
    kind = "headwater"

    def __init__(self, binary, workdir, data_dir=None, log_path=None):
        """Runs in `workdir` (its cwd); data in `data_dir` (default workdir/data), output
        appended to `log_path` (default workdir/headwater.log)."""
        self.binary = str(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_path) if log_path is not None else self.workdir / "headwater.log"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None
        self.extra_args = []
        self.node_id = 1

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return
        cmd = [
            self.binary, "serve",
            "--listen", self.bootstrap,
            "--advertise", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--node-id", str(self.node_id),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"headwater exited with status {self.proc.returncode} during startup; log tail:\n"
                    + log_tail(self.log_path))
            if port_accepts(self.port):
                return
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(
                    f"headwater did not accept connections on {self.bootstrap} within "
                    f"{READY_TIMEOUT_S:.0f}s; log tail:\n" + log_tail(self.log_path))
            time.sleep(READY_POLL_S)

    def kill(self):
        """SIGKILL, as in a crash; returns once the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=15.0):
        """SIGTERM and wait for a clean exit (SIGKILL after `timeout`)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"headwater did not exit within {timeout:.0f}s of SIGTERM")

    def close(self):
        try:
            self.stop()
        finally:
            self.kill()


class HeadwaterCluster:
    """Headwater processes on free ports of 127.0.0.1, each listed in every node's
    cluster_nodes, sharing a cluster id; node ids 1..n, data under workdir/node-N."""

    kind = "headwater"

    def __init__(self, binary, workdir, size=3, cluster_id="hw-test-cluster", extra_args=()):
        self.workdir = Path(workdir)
        self.nodes = {}
        for node_id in range(1, size + 1):
            node = HeadwaterBroker(binary, Path(workdir) / f"node-{node_id}")
            node.node_id = node_id
            self.nodes[node_id] = node
        listed = ",".join(f"{i}@{n.bootstrap}" for i, n in self.nodes.items())
        for node in self.nodes.values():
            node.extra_args = ["--cluster-nodes", listed, "--cluster-id", cluster_id, *extra_args]
        self.bootstrap = ",".join(n.bootstrap for n in self.nodes.values())

    def start(self):
        for node in self.nodes.values():
            node.start()

    def close(self):
        for node in self.nodes.values():
            node.close()


class KafkaReferenceBroker:
    """Apache Kafka started with bench/kafka/start-kafka.sh, restartable."""

    can_restart = True
    kind = "kafka"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"   # log.dirs, as start-kafka.sh writes it
        self.log_path = self.workdir / "kafka.log"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid = None
        self.extra_props = []   # "key=value" server properties (KAFKA_EXTRA_PROPS)

    def start(self):
        if self.pid is not None and self._alive():
            return
        env = dict(os.environ, KAFKA_WORK_DIR=str(self.workdir), KAFKA_LOG_LEVEL="warn")
        if self.extra_props:
            env["KAFKA_EXTRA_PROPS"] = "\n".join(self.extra_props)
        out = subprocess.run([str(REPO_ROOT / "bench/kafka/start-kafka.sh"), str(self.port)],
                             env=env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise RuntimeError(f"start-kafka.sh failed:\n{out.stderr}")
        self.pid = int(out.stdout.split()[-1])

    def _alive(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _wait_gone(self, timeout):
        deadline = time.monotonic() + timeout
        while self._alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self):
        if self.pid is not None and self._alive():
            os.kill(self.pid, signal.SIGKILL)
            self._wait_gone(30)
        self._forget()

    def stop(self, timeout=30.0):
        if self.pid is None or not self._alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        if not self._wait_gone(timeout):
            self.kill()
            raise RuntimeError(f"kafka did not exit within {timeout:.0f}s of SIGTERM")
        self._forget()

    def _forget(self):
        # start-kafka.sh's records for this port (see bench/kafka/stop-kafka.sh)
        for suffix in ("pid", "dir"):
            (REPO_ROOT / ".deps/kafka-run" / f"{self.port}.{suffix}").unlink(missing_ok=True)

    def close(self):
        try:
            self.stop()
        finally:
            self.kill()


def started(b):
    """Starts `b` (a broker or a cluster) for a fixture, yields it, and closes it after."""
    try:
        b.start()
    except RuntimeError as e:
        b.close()
        pytest.fail(str(e), pytrace=False)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory, request):
    """One broker per test module; a module may set BROKER_ARGS (extra `headwater serve` flags)
    and KAFKA_PROPS (the same settings as Apache Kafka server properties, "key=value")."""
    external = os.environ.get("HEADWATER_BOOTSTRAP")
    if external:
        yield ExternalBroker(external)
        return

    workdir = tmp_path_factory.mktemp("broker")
    if os.environ.get("HEADWATER_KAFKA_REFERENCE") == "1":
        b = KafkaReferenceBroker(workdir)
        b.extra_props = list(getattr(request.module, "KAFKA_PROPS", []))
    else:
        binary = Path(os.environ.get("HEADWATER_BIN", REPO_ROOT / "target/release/headwater"))
        if not binary.is_absolute():
            binary = REPO_ROOT / binary
        if not binary.exists():
            pytest.fail(f"Headwater binary not found at {binary} (build it, or set HEADWATER_BIN "
                        f"or HEADWATER_BOOTSTRAP)", pytrace=False)
        b = HeadwaterBroker(binary, workdir)
        b.extra_args = list(getattr(request.module, "BROKER_ARGS", []))
    yield from started(b)


@pytest.fixture
def headwater_cluster(tmp_path, broker):
    """Three Headwater nodes in one cluster, started; skipped against another broker."""
    if broker.kind != "headwater":
        pytest.skip("starts Headwater nodes of its own")
    yield from started(HeadwaterCluster(broker.binary, tmp_path))


@pytest.fixture
def restartable_broker(broker):
    """The module's broker, or a skip when it cannot be killed/restarted."""
    if not broker.can_restart:
        pytest.skip("test needs a broker it can kill/restart (HEADWATER_BOOTSTRAP is set)")
    return broker


def pytest_collection_modifyitems(config, items):
    # A default per-test time limit, so a broker that stops answering fails
    # the run instead of hanging it (needs pytest-timeout).
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        # The module's broker and any a test started itself (a fixture yielding a broker).
        shown = set()
        for b in getattr(item, "funcargs", {}).values():
            brokers = b.nodes.values() if isinstance(b, HeadwaterCluster) else [b]
            for b in brokers:
                if isinstance(b, (HeadwaterBroker, KafkaReferenceBroker)) and b.log_path not in shown:
                    shown.add(b.log_path)
                    report.sections.append((f"{b.kind} broker log tail ({b.log_path})", log_tail(b.log_path)))
    return report
