#!/usr/bin/env python3
"""Turn bench/out/result-*.json (written by bench/run.sh) into
bench/out/results.json and the Markdown summary docs/benchmarks.md.

Run by bench/run.sh, which passes the run's context in the environment:
CMD, RUN_START, RUN_END (epoch seconds), SYSTEMS, HW_VERSION, HW_REV, HW_BUILT,
KAFKA_VERSION, JAVA_VERSION.

Usage: report.py --out-dir bench/out --doc docs/benchmarks.md
"""

import argparse
import datetime
import json
import os
import platform
import sys

LABELS = {
    "headwater": "Headwater",
    "kafka": "Kafka (default flush)",
    "kafka-fsync": "Kafka (flush every message)",
}
BASELINES = ["kafka", "kafka-fsync"]
CLUSTER_LABELS = {
    "headwater-3": "Headwater, 3 brokers",
    "kafka-3": "Kafka, 3 brokers",
}


def machine():
    m = {"nproc": os.cpu_count(), "kernel": platform.release(), "arch": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    m["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    # File system holding the brokers' data directories (bench/out/work).
    try:
        target = os.path.realpath("bench/out")
        best = None
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and (
                        best is None or len(mnt) > len(best[1])):
                    best = (dev, mnt, fstype)
        if best:
            m["data_fs"] = f"{best[2]} on {best[0]}"
    except OSError:
        pass
    return m


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return None
        d = d[p]
    return d


def metric_values(r):
    """The numbers the tables show, from one system's result."""
    b = r.get("bench") or {}
    t = b.get("throughput") or {}
    lat = b.get("latency") or {}
    return {
        "records_per_sec": t.get("records_per_sec"),
        "mb_per_sec": t.get("mb_per_sec"),
        "produce_p50": get(lat, "produce_ms", "p50"),
        "produce_p99": get(lat, "produce_ms", "p99"),
        "produce_p999": get(lat, "produce_ms", "p99.9"),
        "e2e_p50": get(lat, "e2e_ms", "p50"),
        "e2e_p99": get(lat, "e2e_ms", "p99"),
        "e2e_p999": get(lat, "e2e_ms", "p99.9"),
        "vmhwm_mib": r["vmhwm_kb"] / 1024 if r.get("vmhwm_kb") else None,
        "ready_ms": get(r, "ready", "ready_ms"),
        "cpu_seconds": r.get("cpu_seconds"),
        "failover_ms": get(r, "failover", "failover", "failover_ms"),
        "other_avg_cores": get(r, "interference", "other_avg_cores"),
        "client_cpu_seconds": get(r, "interference", "client_cpu_seconds"),
        "broker_run_cpu_seconds": get(r, "interference", "broker_cpu_seconds"),
    }


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:,.0f}"
    if kind == "1":
        return f"{v:,.1f}"
    if kind == "2":
        return f"{v:,.2f}"
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(x):
    if x is None:
        return "—"
    return f"{x:.3f}×" if x < 0.1 else f"{x:.2f}×"


SDK_LABELS = {
    "headwater-python": "Headwater Python SDK",
    "confluent-kafka": "confluent-kafka",
    "headwater-go": "Headwater Go SDK",
    "franz-go": "franz-go",
}
# Each SDK against the client its users would otherwise pick.
SDK_PAIRS = [("headwater-python", "confluent-kafka"), ("headwater-go", "franz-go")]


def minutes_seconds(text):
    """Seconds from bash's `times` notation, e.g. 1m2.345s."""
    m, _, rest = text.partition("m")
    return int(m) * 60 + float(rest.rstrip("s"))


def load_sdk(out_dir, name):
    """One SDK client's result: its JSON, and its CPU time from `times` (children's line)."""
    r = {}
    try:
        with open(os.path.join(out_dir, f"sdk-{name}.json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(out_dir, f"sdk-{name}.times")) as f:
            lines = [line.split() for line in f.read().splitlines() if line.strip()]
        user, system = lines[-1]
        r["client_cpu_seconds"] = minutes_seconds(user) + minutes_seconds(system)
    except (OSError, ValueError, IndexError):
        pass
    return r


def sdk_values(r):
    t = r.get("throughput") or {}
    lat = r.get("latency") or {}
    return {
        "records_per_sec": t.get("records_per_sec"),
        "mb_per_sec": t.get("mb_per_sec"),
        "produce_p50": get(lat, "produce_ms", "p50"),
        "produce_p99": get(lat, "produce_ms", "p99"),
        "produce_p999": get(lat, "produce_ms", "p99.9"),
        "client_cpu_seconds": r.get("client_cpu_seconds"),
    }


def cluster_section(w, clusters, results, cfg):
    """The three-broker runs: the same Bench workload on replicated partitions, plus failover."""
    vals = {s: metric_values(results[s]) if results.get(s) else {} for s in clusters}
    w("## Three brokers, replication factor 3")
    w("")
    w("Three nodes of one cluster on this machine (so on its 2 CPUs and one disk together), every "
      "node a voter of the metadata quorum and a broker: three `headwater serve` processes with "
      "`--cluster-nodes`, and three Kafka KRaft nodes, each a combined broker+controller with "
      "`-Xmx1g`, Kafka's default flush policy and thread pools, and its internal topics "
      "replicated three times. The client is given all three addresses.")
    w("")
    w(f"- Workload: the one above (topic of {cfg.get('partitions', 8)} partitions, same records, "
      f"producer settings, warm-up, throughput and latency runs), on a topic created with "
      f"replication factor 3 and `min.insync.replicas=2`.")
    w("- An `acks=all` answer means: Headwater, a majority (2 of 3) has the write fsynced; Kafka, "
      "every in-sync replica (normally 3, at least 2) has it in its page cache, none fsynced.")
    w("- Peak memory: the sum of the three nodes' `VmHWM` after the latency run. Broker CPU: the "
      "three nodes together over the client's run.")
    w("- Failover: after those runs, a topic of one partition (replication factor 3, "
      "`min.insync.replicas=2`) gets 1,000 records/s from an idempotent `acks=all` producer with "
      "`linger.ms=0`; after 3 s the Admin client names the partition's leader and its process is "
      "sent SIGKILL. Failover time = from the kill to the first acknowledgement of a record sent "
      "after it (that answer can only come from the new leader). Every record sent must be "
      "acknowledged and the log must hold exactly those (no loss, no duplicate).")
    w("")
    head = "| metric | " + " | ".join(CLUSTER_LABELS[s] for s in clusters)
    both = "headwater-3" in clusters and "kafka-3" in clusters
    if both:
        head += " | Headwater / Kafka"
    w(head + " |")
    w("|" + " --- |" * head.count("|"))
    rows = [("throughput, records/s (higher is better)", "records_per_sec", "int"),
            ("throughput, MB/s", "mb_per_sec", "1"),
            (f"produce latency p50 at {cfg.get('rate', 0):,} records/s, ms (lower is better)", "produce_p50", "ms"),
            ("produce latency p99, ms", "produce_p99", "ms"),
            ("produce latency p99.9, ms", "produce_p999", "ms"),
            ("end-to-end latency p50, ms", "e2e_p50", "ms"),
            ("end-to-end latency p99, ms", "e2e_p99", "ms"),
            ("end-to-end latency p99.9, ms", "e2e_p999", "ms"),
            ("peak memory of the three nodes, MiB (lower is better)", "vmhwm_mib", "1"),
            ("failover, ms from SIGKILL of the leader to the first answer (lower is better)", "failover_ms", "ms"),
            ("broker CPU seconds while the client ran, three nodes", "broker_run_cpu_seconds", "1"),
            ("client CPU seconds", "client_cpu_seconds", "1"),
            ("other processes, average cores", "other_avg_cores", "2")]
    for label, key, kind in rows:
        line = f"| {label} | " + " | ".join(fmt(vals[s].get(key), kind) for s in clusters)
        if both:
            line += f" | {fmt_ratio(ratio(vals['headwater-3'].get(key), vals['kafka-3'].get(key)))}"
        w(line + " |")
    w("")
    for s in clusters:
        r = results.get(s)
        b = (r or {}).get("bench") or {}
        f = get(r or {}, "failover", "failover") or {}
        if not r or not b:
            w(f"- {CLUSTER_LABELS[s]}: no results (see `bench/out/logs/`).")
            continue
        t = b.get("throughput") or {}
        lat = b.get("latency") or {}
        probs = (b.get("problems") or []) + (get(r, "failover", "problems") or [])
        w(f"- {CLUSTER_LABELS[s]}: throughput run {t.get('acked', 0):,} of {t.get('sent', 0):,} "
          f"acknowledged in {t.get('seconds', 0):.1f} s; latency run sent at "
          f"{lat.get('achieved_send_rate', 0):,.0f} records/s, {lat.get('consumed', 0):,} consumed, "
          f"{lat.get('duplicates', 0)} duplicates, {lat.get('corrupt', 0)} corrupt; failover: node "
          f"{f.get('killed_node', '?')} killed, node {f.get('new_leader', '?')} led next, "
          f"{f.get('acked', 0):,} of {f.get('sent', 0):,} records acknowledged, the log holds "
          f"{f.get('log_growth_records', 0):,}; per-node peak memory "
          + ", ".join(f"{kb / 1024:.1f}" for kb in r.get("vmhwm_kb_per_node") or []) + " MiB; "
          + ("problems: " + "; ".join(probs) if probs else "no problems") + ".")
    w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default="bench/out")
    ap.add_argument("--doc", default="docs/benchmarks.md")
    a = ap.parse_args()
    env = os.environ

    systems = env.get("SYSTEMS", "headwater kafka kafka-fsync").split()
    results = {}
    for s in systems:
        try:
            with open(os.path.join(a.out_dir, f"result-{s}.json")) as f:
                results[s] = json.load(f)
        except (OSError, ValueError):
            results[s] = None

    start = float(env.get("RUN_START", "0"))
    end = float(env.get("RUN_END", "0"))
    when = datetime.datetime.fromtimestamp(start, datetime.timezone.utc) if start else None
    mach = machine()
    client = java = None
    cfg = {}
    for r in results.values():
        b = (r or {}).get("bench") or {}
        client = client or b.get("client")
        java = java or b.get("java")
        cfg = cfg or b.get("config") or {}

    combined = {
        "command": env.get("CMD"),
        "started_utc": when.isoformat() if when else None,
        "duration_seconds": round(end - start, 1) if start and end else None,
        "machine": mach,
        "headwater": env.get("HW_VERSION", ""),
        "headwater_binary_built": env.get("HW_BUILT"),
        "repository_revision": env.get("HW_REV"),
        "kafka_broker": env.get("KAFKA_VERSION"),
        "client": client,
        "java": env.get("JAVA_VERSION"),
        "results": results,
    }
    sdk_names = env.get("SDK_CLIENTS", "").split()
    sdk = {n: load_sdk(a.out_dir, n) for n in sdk_names}
    combined["sdk_results"] = sdk
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(combined, f, indent=2)

    vals = {s: metric_values(r) if r else {} for s, r in results.items()}
    shown = [s for s in systems if s in LABELS]
    clusters = [s for s in systems if s in CLUSTER_LABELS]
    hw = vals.get("headwater", {})

    L = []
    w = L.append
    w("# Benchmarks: Headwater and Apache Kafka")
    w("")
    w("Written by `bench/run.sh` — do not edit by hand; rerun it (`make bench`) instead. One run,")
    w("no repetitions: treat differences of a few percent as noise.")
    w("")
    w(f"- Command: `{env.get('CMD', 'bench/run.sh')}` (`make bench` runs `scripts/setup-test-deps.sh`, "
      f"`cargo build --release --locked`, `make python-wheel` and `make go-lib`, then `bench/run.sh`)")
    if when:
        w(f"- Date: {when.strftime('%Y-%m-%d %H:%M UTC')}; the whole run took "
          f"{combined['duration_seconds']:.0f} s")
    w(f"- Machine: {mach.get('nproc')} CPUs ({mach.get('cpu', 'unknown model')}), "
      f"{mach.get('ram_gib')} GiB RAM, Linux {mach.get('kernel')} ({mach.get('arch')}); "
      f"data directories on {mach.get('data_fs', 'unknown')}")
    w(f"- Headwater: {combined['headwater']}, `target/release/headwater` built "
      f"{combined['headwater_binary_built'] or 'at an unknown time'}; repository at "
      f"{combined['repository_revision'] or 'unknown'} when the run ended")
    w(f"- Apache Kafka broker: {combined['kafka_broker']} (Maven Central jars, KRaft, each node a "
      f"combined broker+controller), {env.get('JAVA_VERSION', 'java')}")
    w(f"- Client for every system: Java {client or 'kafka-clients'} on {java or 'the same JVM'} "
      f"(`bench/java/src/Bench.java`)")
    every_label = {**LABELS, **CLUSTER_LABELS}
    loads = ", ".join(f"{every_label[s]} {results[s]['loadavg_before']}" for s in shown + clusters
                      if results.get(s))
    w(f"- Load average (1/5/15 min) just before each system started: {loads}. The client and the "
      f"broker share the machine's CPUs; anything else running at the same time (a compile, say) "
      f"competes with both.")
    w("")
    w("## Systems")
    w("")
    w("| system | durability of an `acks=all` answer |")
    w("| --- | --- |")
    w("| Headwater | fsync of the log before the answer (group commit) |")
    w("| Kafka (default flush) | Kafka's default flush policy: the write is in the page cache when "
      "answered, **no fsync per write** (the OS writes it back later; a power loss or kernel crash "
      "can lose acknowledged records on a single node) |")
    w("| Kafka (flush every message) | `log.flush.interval.messages=1`: Kafka fsyncs the partition "
      "log on every append (every produced batch) before answering — durability comparable to "
      "Headwater's |")
    w("")
    w("Kafka runs with `-Xmx1g` (JVM default `-Xms`), G1 with `MaxGCPauseMillis=20` as Kafka's own "
      "start scripts set, and Kafka's defaults otherwise (`num.network.threads=3`, "
      "`num.io.threads=8`); the exact properties are in `bench/out/logs/<system>.server.properties`. "
      "Headwater runs with its defaults. Each system gets a fresh data directory and runs alone.")
    w("")
    w("## Workload")
    w("")
    w(f"- One topic, {cfg.get('partitions', 8)} partitions, replication factor 1, created with the "
      f"Admin client before anything is produced.")
    w(f"- Records of {cfg.get('record_size', 1024)} bytes (value only, null key, random bytes, no "
      f"compression), built-in partitioner.")
    w(f"- Producer: `acks=all`, `enable.idempotence=true`, `linger.ms={cfg.get('linger_ms', 5)}`, "
      f"`batch.size={cfg.get('batch_size', 65536)}`, `compression.type=none`, client defaults "
      f"otherwise (`max.in.flight.requests.per.connection=5`, `buffer.memory=32 MiB`).")
    w(f"- Warm-up: {cfg.get('warmup_records', 0):,} records, not measured.")
    w(f"- Throughput run: {cfg.get('tput_records', 0):,} records sent as fast as the producer "
      f"accepts them (cut after {cfg.get('tput_max_seconds', 0):g} s); rate = acknowledged records / "
      f"(last acknowledgement − first send). MB = 10⁶ bytes of record values. The log's end "
      f"offsets are checked to have grown by exactly the acknowledged count.")
    w(f"- Latency run: {cfg.get('rate', 0):,} records/s for {cfg.get('lat_seconds', 0):g} s "
      f"(paced sends), with a consumer in the same JVM assigned to all partitions (no group, "
      f"client defaults) reading from the end of the log concurrently. Produce latency = "
      f"acknowledgement callback − scheduled send time; end-to-end latency = the moment the "
      f"consumer's `poll()` returns the record − scheduled send time (the scheduled time travels "
      f"in the value). Every record must arrive exactly once with its payload intact.")
    w("- Peak memory: `VmHWM` of the broker process from `/proc/PID/status` after both runs.")
    w("- Start-up: wall time from launching the broker process (for Kafka: the `java kafka.Kafka` "
      "exec after storage formatting, which is not counted) to the first answered ApiVersions "
      "request; `bench/probe.py` sends a real ApiVersions v0 request on a new connection every "
      "2 ms.")
    w("")

    def table(title, note, rows):
        w(f"### {title}")
        w("")
        if note:
            w(note)
            w("")
        head = "| metric | " + " | ".join(LABELS[s] for s in shown)
        base = [s for s in BASELINES if s in shown]
        if "headwater" in shown:
            head += "".join(f" | Headwater / {LABELS[s]}" for s in base)
        w(head + " |")
        w("|" + " --- |" * (head.count("|")))
        for label, key, kind in rows:
            line = f"| {label} | " + " | ".join(fmt(vals[s].get(key), kind) for s in shown)
            if "headwater" in shown:
                line += "".join(f" | {fmt_ratio(ratio(hw.get(key), vals[s].get(key)))}" for s in base)
            w(line + " |")
        w("")

    w("## Results")
    w("")
    table("Throughput (higher is better)", None,
          [("records/s", "records_per_sec", "int"), ("MB/s", "mb_per_sec", "1")])
    table(f"Produce latency at {cfg.get('rate', 0):,} records/s, ms (lower is better)", None,
          [("p50", "produce_p50", "ms"), ("p99", "produce_p99", "ms"), ("p99.9", "produce_p999", "ms")])
    table(f"End-to-end latency at {cfg.get('rate', 0):,} records/s, ms (lower is better)", None,
          [("p50", "e2e_p50", "ms"), ("p99", "e2e_p99", "ms"), ("p99.9", "e2e_p999", "ms")])
    table("Broker peak memory (lower is better)", None, [("VmHWM, MiB", "vmhwm_mib", "1")])
    table("Start-up to first answered request (lower is better)", None, [("ms", "ready_ms", "1")])
    table("Broker CPU time over the whole session (start-up, warm-up, both runs; for context)", None,
          [("CPU seconds", "cpu_seconds", "1")])

    w("### Interference from other processes")
    w("")
    w("CPU time the whole machine spent busy while the client ran (from `/proc/stat`), minus what "
      "the broker and the client used: what everything else on the machine took at the same time. "
      "Near 0 means the run had the machine to itself; on 2 CPUs, 0.5 cores or more means the "
      "numbers of that system are pessimistic and not comparable with a quiet run.")
    w("")
    w("| | " + " | ".join(LABELS[s] for s in shown) + " |")
    w("|" + " --- |" * (len(shown) + 1))
    w("| other processes, average cores | "
      + " | ".join(fmt(vals[s].get("other_avg_cores"), "2") if vals[s].get("other_avg_cores") is not None
                   else "not measured" for s in shown) + " |")
    w("| client CPU seconds | " + " | ".join(fmt(vals[s].get("client_cpu_seconds"), "1") for s in shown) + " |")
    w("| broker CPU seconds while the client ran | "
      + " | ".join(fmt(vals[s].get("broker_run_cpu_seconds"), "1") for s in shown) + " |")
    w("")

    # Detail: anything a reader needs to trust (or distrust) the numbers above.
    w("### Run details")
    w("")
    w("| system | throughput records acked / sent (s) | latency run: sent at | acked | consumed | "
      "errors / duplicates / corrupt | client problems |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for s in shown:
        r = results.get(s)
        b = (r or {}).get("bench") or {}
        t = b.get("throughput") or {}
        lat = b.get("latency") or {}
        if not r or not b:
            w(f"| {LABELS[s]} | no results (see `bench/out/logs/`) | | | | | |")
            continue
        probs = "; ".join(b.get("problems") or []) or "none"
        notes = r.get("client_invalid_fetch_response_notes") or {}
        if notes.get("while_reading"):
            probs += (f"; the Java client logged {notes['while_reading']} “sent an invalid fetch "
                      f"response” note(s) while reading (it discards such a response and fetches "
                      f"again; see `bench/out/logs/bench-{s}.err`)")
        if notes.get("unclassified"):
            probs += (f"; the Java client logged {notes['unclassified']} “sent an invalid full fetch "
                      f"response” note(s) (it discards such a response; not known whether during "
                      f"reading or at close; see `bench/out/logs/bench-{s}.err`)")
        if notes.get("while_closing"):
            probs += (f"; the Java client logged {notes['while_closing']} “sent an invalid full "
                      f"fetch response” note(s) while the consumer closed, after every record had "
                      f"arrived (about the fetch still in flight at close)")
        if not r.get("alive_after_run"):
            probs += "; broker process was gone after the run"
        if r.get("stopped_within_30s_of_sigterm") is False:
            probs += "; broker did not exit within 30 s of SIGTERM and was killed"
        w(f"| {LABELS[s]} | {t.get('acked', 0):,} / {t.get('sent', 0):,} ({t.get('seconds', 0):.1f} s"
          f"{', cut by time limit' if t.get('cut_by_time_limit') else ''}) | "
          f"{lat.get('achieved_send_rate', 0):,.0f} records/s | {lat.get('acked', 0):,} | "
          f"{lat.get('consumed', 0):,} | {lat.get('errors', 0)} / {lat.get('duplicates', 0)} / "
          f"{lat.get('corrupt', 0)} | {probs} |")
    w("")
    for s in shown:
        eff = (results.get(s) or {}).get("broker_effective_config") or {}
        if eff:
            w(f"- {LABELS[s]} logged its effective settings as: "
              + ", ".join(f"`{k} = {v}`" for k, v in sorted(eff.items())) + ".")
    w("")

    # ---- three-broker clusters ------------------------------------------------------
    if clusters:
        cluster_section(w, clusters, results, cfg)

    # ---- the SDKs ------------------------------------------------------------------
    if sdk_names:
        w("## SDK producers against Headwater")
        w("")
        w("Each SDK next to the client its users would otherwise pick, one after another against "
          "one fresh Headwater broker (each on its own topic of 8 partitions), on the same "
          "machine in the same run: the Headwater Python SDK (`Producer.send_async` futures) and "
          "confluent-kafka (librdkafka, `produce` with `on_delivery`, `poll()` between sends), "
          "the Headwater Go SDK and franz-go (both `Produce` with a promise). Every client: "
          "`acks=all`, idempotence on, `linger 5 ms`, `batch 65536 bytes`, no compression, "
          "1024-byte values, null keys. "
          f"{env.get('PY_VERSION', 'Python')}; {env.get('GO_VERSION', 'go')}.")
        w("")
        cfg_sdk = next((r.get("config") for r in sdk.values() if r and r.get("config")), {}) or {}
        w(f"- Throughput run: {cfg_sdk.get('tput_records', 0):,} records sent as fast as the client "
          f"takes them, after {cfg_sdk.get('warmup_records', 0):,} unmeasured; rate = acknowledged "
          f"records / (last acknowledgement − first send).")
        w(f"- Latency run: {cfg_sdk.get('rate', 0):,} records/s for {cfg_sdk.get('lat_seconds', 0):g} s, "
          f"paced; latency = acknowledgement as the application sees it (future resolved, callback "
          f"or promise run) − scheduled send time.")
        w("- Client CPU: user + system CPU seconds of the client process over its whole run "
          "(warm-up, both runs), from bash's `times`.")
        w("")
        sv = {n: sdk_values(r) if r else {} for n, r in sdk.items()}
        pairs = [(x, y) for x, y in SDK_PAIRS if x in sdk and y in sdk]
        head = "| metric |"
        for x, y in pairs:
            head += f" {SDK_LABELS[x]} | {SDK_LABELS[y]} | {SDK_LABELS[x]} / {SDK_LABELS[y]} |"
        w(head)
        w("|" + " --- |" * (1 + 3 * len(pairs)))
        rows = [("throughput, records/s (higher is better)", "records_per_sec", "int"),
                ("throughput, MB/s", "mb_per_sec", "1"),
                ("produce latency p50, ms (lower is better)", "produce_p50", "ms"),
                ("produce latency p99, ms", "produce_p99", "ms"),
                ("produce latency p99.9, ms", "produce_p999", "ms"),
                ("client CPU seconds (lower is better)", "client_cpu_seconds", "1")]
        for label, key, kind in rows:
            line = f"| {label} |"
            for x, y in pairs:
                line += (f" {fmt(sv[x].get(key), kind)} | {fmt(sv[y].get(key), kind)} | "
                         f"{fmt_ratio(ratio(sv[x].get(key), sv[y].get(key)))} |")
            w(line)
        w("")
        for n in sdk_names:
            r = sdk.get(n)
            if not r:
                w(f"- {SDK_LABELS.get(n, n)}: no results (see `bench/out/logs/sdk-{n}.err`).")
            elif not r.get("ok"):
                errs = [x.get("first_error") for x in (r.get("throughput") or {}, r.get("latency") or {})
                        if x.get("first_error")]
                w(f"- {SDK_LABELS.get(n, n)} ({r.get('version')}): **errors** in the run: "
                  + ("; ".join(errs) or "records missing") + ".")
            else:
                lat = r.get("latency") or {}
                w(f"- {SDK_LABELS.get(n, n)} ({r.get('version')}): every record acknowledged without "
                  f"error; the latency run sent at {lat.get('achieved_send_rate', 0):,.0f} records/s.")
        w("")

    # ---- where we stand -----------------------------------------------------------
    w("## Where we stand")
    w("")
    w("One broker (targets: at least Kafka's throughput, at most half its p99 latency, at most a "
      "fifth of its memory, ready in under 100 ms; measured against both Kafka configurations, the "
      "one with comparable durability being *flush every message*):")
    w("")

    def verdict(x, ok):
        if x is None:
            return "no data"
        return "met" if ok(x) else "**not met**"

    def against(key, ok, what, kind, unit):
        parts = []
        for s in BASELINES:
            if s not in shown:
                continue
            x = ratio(hw.get(key), vals[s].get(key))
            if x is None:
                parts.append(f"not comparable with {LABELS[s]} (no data)")
                continue
            parts.append(f"{fmt_ratio(x)} {LABELS[s]}'s {fmt(vals[s].get(key), kind)} {unit} "
                         f"({verdict(x, ok)})")
        return f"- {what}: Headwater's {fmt(hw.get(key), kind)} {unit} is " + " and ".join(parts) + "."

    if "headwater" not in shown or not hw:
        w("- Headwater produced no results in this run; nothing to compare.")
    else:
        w(against("records_per_sec", lambda x: x >= 1.0, "Throughput ≥ Kafka's", "int", "records/s"))
        w(against("produce_p99", lambda x: x <= 0.5, "Produce p99 ≤ ½ Kafka's", "ms", "ms"))
        w(against("e2e_p99", lambda x: x <= 0.5, "End-to-end p99 ≤ ½ Kafka's", "ms", "ms"))
        w(against("vmhwm_mib", lambda x: x <= 0.2, "Peak memory ≤ ⅕ Kafka's", "1", "MiB"))
        rm = hw.get("ready_ms")
        w(f"- Ready < 100 ms: Headwater answered its first request {fmt(rm, '1')} ms after launch "
          f"({verdict(rm, lambda x: x < 100)}).")
        busy = [s for s in shown if (vals[s].get("other_avg_cores") or 0) >= 0.25]
        unknown = [s for s in shown if results.get(s) and vals[s].get("other_avg_cores") is None]
        if busy:
            w("- **Caution:** other processes used "
              + ", ".join(f"{vals[s]['other_avg_cores']:.2f} cores during {LABELS[s]}'s run" for s in busy)
              + " on average (see *Interference* above); those numbers are pessimistic, and the "
              "comparison is only as fair as the interference was even. Rerun on a quiet machine.")
        if unknown:
            w("- Interference from other processes was not measured for "
              + ", ".join(LABELS[s] for s in unknown) + "; the load averages above are the only hint.")
        bad = [s for s in shown if not results.get(s) or not get(results[s], "bench", "ok")]
        if bad:
            w(f"- Runs with errors or missing data: {', '.join(LABELS[s] for s in bad)} — see the run "
              f"details above and `bench/out/logs/`.")
        else:
            w("- Every system delivered every record of the latency run exactly once, intact, and "
              "the throughput run's log growth matched the acknowledged count.")
    if "headwater-3" in clusters and "kafka-3" in clusters:
        cv = {s: metric_values(results[s]) if results.get(s) else {} for s in clusters}
        h3, k3 = cv["headwater-3"], cv["kafka-3"]

        def cluster_goal(key, ok, what, kind, unit):
            x = ratio(h3.get(key), k3.get(key))
            return (f"- {what}: Headwater's {fmt(h3.get(key), kind)} {unit} is "
                    + (f"{fmt_ratio(x)} Kafka's {fmt(k3.get(key), kind)} {unit} ({verdict(x, ok)})."
                       if x is not None else "not comparable (no data)."))
        w("")
        w("Three brokers, replication factor 3 (targets: at least 1.5× Kafka's throughput, at most "
          "half its p99, failover faster than Kafka's):")
        w("")
        w(cluster_goal("records_per_sec", lambda x: x >= 1.5, "Throughput ≥ 1.5× Kafka's", "int",
                       "records/s"))
        w(cluster_goal("produce_p99", lambda x: x <= 0.5, "Produce p99 ≤ ½ Kafka's", "ms", "ms"))
        w(cluster_goal("e2e_p99", lambda x: x <= 0.5, "End-to-end p99 ≤ ½ Kafka's", "ms", "ms"))
        w(cluster_goal("failover_ms", lambda x: x < 1.0, "Failover faster than Kafka's", "ms", "ms"))
        w(cluster_goal("vmhwm_mib", lambda x: x <= 0.2, "Peak memory of the three ≤ ⅕ Kafka's", "1",
                       "MiB"))
    w("")
    w("Raw results: `bench/out/results.json` (per system: `bench/out/result-<system>.json`, "
      "broker and client logs in `bench/out/logs/`).")
    w("")

    os.makedirs(os.path.dirname(a.doc) or ".", exist_ok=True)
    with open(a.doc, "w") as f:
        f.write("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
