#!/usr/bin/env bash
# Stop a broker started by start-kafka.sh: SIGTERM, wait up to 30 s, then SIGKILL.
# Usage: bench/kafka/stop-kafka.sh [PORT] [--keep]   (default PORT 9192)
# Without --keep the broker's work directory (config, data, log) is removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${1:-9192}"
keep="${2:-}"
run="$root/.deps/kafka-run"

if [[ ! -f "$run/$port.pid" ]]; then
    echo "stop-kafka: no broker recorded for port $port" >&2
    exit 0
fi
pid="$(cat "$run/$port.pid")"
work="$(cat "$run/$port.dir" 2>/dev/null || true)"

# Only signal the pid if it is still our Kafka process.
if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop-kafka: pid $pid did not exit after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
fi
rm -f "$run/$port.pid" "$run/$port.dir" "$run/$port.launched"
if [[ "$keep" != "--keep" && -n "$work" && -d "$work" && "$work" == */headwater-kafka-* ]]; then
    rm -rf "$work"
fi
echo "stop-kafka: stopped broker on port $port" >&2
