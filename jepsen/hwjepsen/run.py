"""One run of the harness: network, brokers, clients, nemesis, final reads, checker, report.

    python -m hwjepsen.run [--time S] [--seed N] [--faults kill,partition,...] [--nodes 3|5]
                           [--bin PATH] [--planted-bug NAME] [--expect-anomalies]

Needs root (network namespaces, iptables). Ends with one line,
`jepsen: <ops> ops, <faults> faults, <n> anomalies`, and exits non-zero when the checker found
anomalies (or, with --expect-anomalies, when it found none).
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import checker, disk, latency, net, report
from .cluster import KAFKA_PORT, HeadwaterCluster, KafkaCluster
from .nemesis import ALL_FAULTS, DISK_FAULTS, Nemesis, set_clock

JEPSEN_DIR = Path(__file__).resolve().parent.parent
REPO = JEPSEN_DIR.parent
LOCK_PATH = "/run/headwater-jepsen.lock"
RECOVERY_S = 10.0
FINAL_TIMEOUT_S = 60.0
FRANZ_BIN = JEPSEN_DIR / ".bin" / "franz"


class History:
    """Events from every worker and the nemesis, appended to history.jsonl as they arrive."""

    def __init__(self, path):
        self.file = open(path, "w")
        self.events = []
        self.lock = threading.Lock()

    def add(self, event):
        with self.lock:
            self.events.append(event)
            self.file.write(json.dumps(event, separators=(",", ":")) + "\n")

    def emit(self, process):
        def emit(type_, f, value=None):
            self.add({"time": time.time_ns(), "process": process, "type": type_, "f": f,
                      "value": value})
        return emit

    def close(self):
        with self.lock:
            self.file.close()


class Worker:
    """A client process in the clients' namespace whose stdout lines are history events."""

    def __init__(self, history, run_dir, name, argv):
        self.name = name
        log = open(run_dir / "clients" / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.CLIENTS, *argv], stdout=subprocess.PIPE, stderr=log,
            cwd=JEPSEN_DIR, start_new_session=True)
        log.close()
        self.thread = threading.Thread(target=self._pump, args=(history,), daemon=True)
        self.thread.start()

    def _pump(self, history):
        for line in self.proc.stdout:
            try:
                history.add(json.loads(line))
            except json.JSONDecodeError:
                pass

    def stop(self, timeout_s=20.0):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)

    def wait(self, timeout_s):
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(1)
            return None


def confluent(role, process, bootstrap, partitions, *extra):
    return [sys.executable, "-m", "hwjepsen.workers.confluent", role, "--bootstrap", bootstrap,
            "--partitions", str(partitions), "--process", process, *map(str, extra)]


def franz(role, process, bootstrap, partitions, *extra):
    return [str(FRANZ_BIN), role, "-bootstrap", bootstrap, "-partitions", str(partitions),
            "-process", process, *map(str, extra)]


def build_franz():
    """The franz-go worker, built by go (whose cache makes a rebuild quick)."""
    FRANZ_BIN.parent.mkdir(exist_ok=True)
    subprocess.run(["go", "build", "-o", str(FRANZ_BIN), "."], cwd=JEPSEN_DIR / "franz",
                   check=True)


def workload_workers(history, run_dir, bootstrap, partitions, seed, acks):
    """Two client libraries side by side: librdkafka (confluent-kafka) and franz-go, each with
    a producer, a reader by assign() and a classic consumer group of two; librdkafka also runs
    a KIP-848 group of two."""
    specs = [
        ("confluent-p0", confluent("producer", "confluent-p0", bootstrap, partitions,
                                   "--index", 1, "--seed", seed, "--acks", acks)),
        ("franz-p0", franz("producer", "franz-p0", bootstrap, partitions,
                           "-index", 2, "-seed", seed + 1, "-acks", acks)),
        ("confluent-a0", confluent("assign", "confluent-a0", bootstrap, partitions,
                                   "--seed", seed)),
        ("franz-a0", franz("assign", "franz-a0", bootstrap, partitions, "-seed", seed + 1)),
    ]
    for i in range(2):
        specs.append((f"confluent-gc{i}", confluent(
            "group", f"confluent-gc{i}", bootstrap, partitions, "--group", "jepsen-classic")))
        specs.append((f"confluent-gk{i}", confluent(
            "group", f"confluent-gk{i}", bootstrap, partitions, "--group", "jepsen-848",
            "--protocol", "consumer")))
        specs.append((f"franz-g{i}", franz(
            "group", f"franz-g{i}", bootstrap, partitions, "-group", "jepsen-franz")))
    return [Worker(history, run_dir, name, argv) for name, argv in specs]


def final_workers(history, run_dir, bootstrap, partitions):
    return [
        Worker(history, run_dir, "confluent-final", confluent(
            "final", "confluent-final", bootstrap, partitions, "--final-timeout",
            FINAL_TIMEOUT_S)),
        Worker(history, run_dir, "franz-final", franz(
            "final", "franz-final", bootstrap, partitions, "-final-timeout",
            f"{FINAL_TIMEOUT_S:.0f}s")),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", type=float, default=300.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS))
    parser.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bin", default=str(REPO / "target/release/headwater"))
    parser.add_argument("--planted-bug", default=None)
    parser.add_argument("--system", choices=["headwater", "kafka-unclean"], default="headwater",
                        help="kafka-unclean: Apache Kafka with unclean.leader.election.enable=true "
                             "and acks=1, a configuration that loses acknowledged writes")
    parser.add_argument("--expect-anomalies", action="store_true",
                        help="succeed only if the checker reports anomalies (planted bugs)")
    parser.add_argument("--store", default=str(JEPSEN_DIR / "store"))
    parser.add_argument("--docs", default=None, help="also write the report to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("jepsen: needs root (network namespaces and iptables)")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
    faults = [f for f in args.faults.split(",") if f and f != "none"]
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        sys.exit(f"jepsen: unknown faults {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}")

    build_franz()
    lock = open(LOCK_PATH, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"jepsen: another run holds {LOCK_PATH}")

    run_dir = Path(args.store) / f"{time.strftime('%Y%m%dT%H%M%S')}-seed{seed}"
    (run_dir / "clients").mkdir(parents=True)
    latest = Path(args.store) / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(run_dir.name)
    mounts_file = run_dir / "mounts"
    guard = subprocess.Popen([sys.executable, "-m", "hwjepsen.guard", str(mounts_file)],
                             stdin=subprocess.PIPE, cwd=JEPSEN_DIR, start_new_session=True)
    config = {"seed": seed, "time_s": args.time, "faults": faults, "nodes": args.nodes,
              "partitions": args.partitions, "planted_bug": args.planted_bug,
              "system": args.system, "binary": args.bin}
    print(f"jepsen: seed {seed}, {args.nodes} nodes, faults {','.join(faults) or 'none'}, "
          f"{args.time:.0f} s; run folder {run_dir}", flush=True)

    history = History(run_dir / "history.jsonl")
    node_ids = list(range(1, args.nodes + 1))
    network = net.Network(node_ids)
    clock_files = {n: run_dir / f"n{n}" / "clock" for n in node_ids}
    for path in clock_files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        set_clock(path, 0)
    if args.system == "kafka-unclean":
        subprocess.run([str(REPO / "bench/kafka/fetch-kafka.sh")], check=True)
        cluster = KafkaCluster(REPO, node_ids, run_dir,
                               extra_props=["unclean.leader.election.enable=true"])
        acks, min_insync = "1", 1
        if "clock" in faults:
            sys.exit("jepsen: the clock fault needs libfaketime under the broker; not with Kafka")
    else:
        cluster = HeadwaterCluster(Path(args.bin).resolve(), node_ids, run_dir,
                                   clock_files=clock_files, planted=args.planted_bug)
        acks, min_insync = "all", 2
    config.update(acks=acks, min_insync=min_insync)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    use_lazyfs = any(f in DISK_FAULTS for f in faults)
    if use_lazyfs and args.system != "headwater":
        sys.exit("jepsen: the power, disk and eio faults run only under Headwater")
    if use_lazyfs:
        disk.build_lazyfs()
    disks = {}
    proxies = None
    if "latency" in faults:
        latency.build()
        proxies = latency.Proxies(node_ids, run_dir, KAFKA_PORT)
        cluster.proxied = True
    nemesis = Nemesis(cluster, network, faults, seed, history.emit("nemesis"), clock_files,
                      disks, proxies)
    workers = []
    try:
        network.create()
        for n in (node_ids if use_lazyfs else []):
            disks[n] = disk.LazyFs(run_dir / f"n{n}", mounts_file)
        if proxies:
            proxies.start()
        cluster.start_all()
        setup = Worker(history, run_dir, "setup", confluent(
            "setup", "setup", cluster.bootstrap, args.partitions, "--min-insync", min_insync))
        if setup.wait(90) != 0:
            raise RuntimeError(f"setup failed; see {run_dir}/clients/setup.log")
        workers = workload_workers(history, run_dir, cluster.bootstrap, args.partitions, seed,
                                   acks)
        nemesis.run(until=time.monotonic() + args.time)
        history.emit("nemesis")("info", "healed", None)
        time.sleep(RECOVERY_S)
        nemesis.watch_exits()
        for w in workers:
            w.stop()
        for final in final_workers(history, run_dir, cluster.bootstrap, args.partitions):
            final.wait(FINAL_TIMEOUT_S + 30)
        nemesis.watch_exits()
    finally:
        for w in workers:
            w.stop(2)
        cluster.stop_all()
        if proxies:
            proxies.stop()
        for d in disks.values():
            d.stop()
        history.close()
        net.destroy_all()
        guard.stdin.close()
        guard.wait(30)

    anomalies, stats = checker.check(history.events)
    bad = checker.invalid(anomalies)
    results = {"config": config, "stats": stats, "faults": nemesis.windows,
               "anomalies": {name: {"count": len(cases), "cases": cases[:checker.CASES_KEPT]}
                             for name, cases in sorted(anomalies.items()) if cases},
               "valid": not bad}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write(run_dir, history.events, results, docs=args.docs)
    for name, cases in sorted(anomalies.items()):
        if not cases:
            continue
        tag = "informational" if name in checker.INFORMATIONAL else "ANOMALY"
        print(f"{tag} {name}: {len(cases)}")
        for case in cases[:3]:
            print("   " + json.dumps(case)[:600])
    count = sum(len(cases) for cases in bad.values())
    print(f"jepsen: {stats['ops']} ops, {nemesis.windows} faults, {count} anomalies", flush=True)
    if args.expect_anomalies:
        sys.exit(0 if count else 1)
    sys.exit(1 if count else 0)


if __name__ == "__main__":
    main()
