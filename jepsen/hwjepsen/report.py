"""The run's report: report.md and timeline.png in the run folder (and, with `docs`, a copy of
the report whose picture points at a copy of the plot beside it)."""

import shutil
from collections import defaultdict
from pathlib import Path

FAULT_COLOURS = {"kill": "#d62728", "pause": "#9467bd", "partition": "#ff7f0e",
                 "loss": "#8c564b", "clock": "#17becf", "power": "#e377c2", "disk": "#bcbd22",
                 "eio": "#7f7f7f"}


def fault_windows(events, t0):
    """[(fault, start s, end s, detail)] from the nemesis's start and end events."""
    windows = []
    open_window = None
    for e in sorted(events, key=lambda e: e["time"]):
        if e["process"] != "nemesis":
            continue
        t = (e["time"] - t0) / 1e9
        if e["f"] == "start":
            open_window = (e["value"]["fault"], t, e["value"])
        elif e["f"] in ("end", "healed") and open_window is not None:
            windows.append((open_window[0], open_window[1], t, open_window[2]))
            open_window = None
    return windows


def timeline(events):
    """Per second: acknowledged sends and records polled; and each ok send's latency."""
    t0 = min(e["time"] for e in events)
    sends = defaultdict(int)
    polled = defaultdict(int)
    latency = []
    invoked = {}
    for e in sorted(events, key=lambda e: e["time"]):
        key = (e["process"], e["f"])
        if e["type"] == "invoke":
            invoked[key] = e["time"]
            continue
        t = (e["time"] - t0) / 1e9
        if e["f"] == "send" and e["type"] == "ok":
            sends[int(t)] += len(e["value"])
            if key in invoked:
                latency.append((t, (e["time"] - invoked.pop(key)) / 1e6))
        elif e["f"] == "poll" and e["type"] == "ok":
            polled[int(t)] += len(e["value"])
    return t0, sends, polled, latency


def plot(events, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t0, sends, polled, latency = timeline(events)
    windows = fault_windows(events, t0)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    seconds = sorted(set(sends) | set(polled))
    top.plot(seconds, [sends.get(s, 0) for s in seconds], label="records acknowledged/s",
             linewidth=1)
    top.plot(seconds, [polled.get(s, 0) for s in seconds], label="records polled/s",
             linewidth=1, alpha=0.7)
    top.set_ylabel("records/s")
    # Readers that restart from the beginning poll in bursts far above the send rate.
    top.set_yscale("symlog", linthresh=100)
    if latency:
        bottom.scatter([t for t, _ in latency], [ms for _, ms in latency], s=2, alpha=0.5,
                       label="send latency (acks=all)")
        bottom.set_yscale("log")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("seconds since start")
    shown = set()
    for fault, start, end, _ in windows:
        for ax in (top, bottom):
            ax.axvspan(start, end, color=FAULT_COLOURS.get(fault, "grey"), alpha=0.15,
                       label=fault if ax is top and fault not in shown else None)
        shown.add(fault)
    top.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def markdown(results, windows, picture):
    config = results["config"]
    stats = results["stats"]
    lines = [f"# Jepsen run, seed {config['seed']}", "",
             f"- system: {config['system']}, {config['nodes']} nodes, topic of "
             f"{config['partitions']} partitions, replication factor 3, min.insync.replicas "
             f"{config.get('min_insync', 2)}, producers with acks={config.get('acks', 'all')}"
             + (f", planted bug `{config['planted_bug']}`" if config.get("planted_bug") else ""),
             f"- faults: {', '.join(config['faults']) or 'none'}; {results['faults']} windows "
             f"in {config['time_s']:.0f} s",
             f"- operations: {stats['ops']} ({stats['sends_ok']} sends ok, {stats['sends_info']} "
             f"indeterminate; {stats['acked_values']} values acknowledged, "
             f"{stats['values_read']} read; {stats['commits_ok']} commits)",
             f"- result: **{'valid' if results['valid'] else 'INVALID'}**",
             f"- reproduce: `{reproduce(config)}` (the same faults in the same order; "
             "the history itself depends on timing)", ""]
    if picture:
        lines += [f"![throughput and latency, fault windows shaded]({picture})", ""]
    lines += ["| anomaly | count |", "|---|---|"]
    if results["anomalies"]:
        for name, found in results["anomalies"].items():
            lines.append(f"| {name} | {found['count']} |")
    else:
        lines.append("| (none) | 0 |")
    lines += ["", "| fault | start s | end s | detail |", "|---|---|---|---|"]
    for fault, start, end, detail in windows:
        what = {k: v for k, v in detail.items() if k != "fault"}
        lines.append(f"| {fault} | {start:.1f} | {end:.1f} | {what} |")
    return "\n".join(lines) + "\n"


def reproduce(config):
    if config["system"] == "kafka-unclean":
        return f"make jepsen-kafka SEED={config['seed']} TIME={config['time_s']:.0f}"
    target = "jepsen-planted" if config.get("planted_bug") else "jepsen"
    command = (f"make {target} SEED={config['seed']} TIME={config['time_s']:.0f} "
               f"FAULTS={','.join(config['faults']) or 'none'}")
    if config["nodes"] != 3:
        command += f" NODES={config['nodes']}"
    return command


def write(run_dir, events, results, docs=None):
    run_dir = Path(run_dir)
    if not events:
        return
    picture = "timeline.png" if plot(events, run_dir / "timeline.png") else None
    t0 = min(e["time"] for e in events)
    windows = fault_windows(events, t0)
    (run_dir / "report.md").write_text(markdown(results, windows, picture))
    if docs:
        docs = Path(docs)
        docs_picture = None
        if picture:
            docs_picture = f"{docs.stem}-timeline.png"
            shutil.copy(run_dir / "timeline.png", docs.parent / docs_picture)
        docs.write_text(markdown(results, windows, docs_picture) + DOCS_FOOTER)


DOCS_FOOTER = """
Written by the harness (jepsen/README.md) at the end of a run: `make jepsen` writes
docs/jepsen.md, `make jepsen-planted` docs/jepsen-planted-BUG.md for each planted bug, and
`make jepsen-kafka` docs/jepsen-kafka.md (Apache Kafka with unclean leader election and acks=1).
"""


def main():
    """Writes the report of a run folder again (after a change to the report, say):
    python -m hwjepsen.report RUN_DIR [--docs FILE]"""
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--docs", default=None)
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    events = [json.loads(line) for line in open(run_dir / "history.jsonl")]
    results = json.loads((run_dir / "results.json").read_text())
    write(run_dir, events, results, docs=args.docs)


if __name__ == "__main__":
    main()
