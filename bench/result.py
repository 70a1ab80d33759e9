"""What bench/run.sh's per-system steps share when they write bench/out/result-<system>.json:
reading a Bench JSON line, and the interference estimate (CPU the rest of the machine used
while the client ran). Imported by the Python snippets inside run.sh."""

import json


def load(path):
    """The last non-empty line of `path` as JSON, or None."""
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def interference(env, client_cpu):
    """From run.sh's BUSY0/BUSY1 (machine busy CPU seconds), BCPU0/BCPU1 (the broker's or
    brokers' CPU seconds) and WALL0/WALL1 around the client's run: what else used the CPUs."""
    wall = float(env["WALL1"]) - float(env["WALL0"])
    busy = float(env["BUSY1"]) - float(env["BUSY0"])
    broker = float(env["BCPU1"]) - float(env["BCPU0"])
    other = max(0.0, busy - broker - client_cpu)
    return {
        "wall_seconds": round(wall, 2),
        "machine_busy_cpu_seconds": round(busy, 2),
        "broker_cpu_seconds": round(broker, 2),
        "client_cpu_seconds": round(client_cpu, 2),
        "other_cpu_seconds": round(other, 2),
        "other_avg_cores": round(other / wall, 3) if wall > 0 else None,
    }
