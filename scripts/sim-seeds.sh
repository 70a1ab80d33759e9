#!/usr/bin/env bash
# Runs the simulator over seeds 1..SEEDS split into JOBS contiguous ranges, one process per
# range at the same time (each run is single-threaded, so on 2 cores two ranges take about
# half as long), prints each range's output in seed order, then the sum of their summaries.
# Exits non-zero if any range did (an anomaly, a crash).
#
# Usage: scripts/sim-seeds.sh SIM_BIN SEEDS JOBS [SIM_ARGS...]   (e.g. --cluster)
set -uo pipefail

bin="$1" seeds="$2" jobs="$3"
shift 3
(( jobs < 1 )) && jobs=1
(( jobs > seeds )) && jobs="$seeds"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

pids=()
first=1
for ((j = 0; j < jobs; j++)); do
    count=$(( seeds / jobs + (j < seeds % jobs ? 1 : 0) ))
    "$bin" "$@" --seeds "$count" --first-seed "$first" >"$logs/$j" 2>&1 &
    pids+=($!)
    first=$(( first + count ))
done

failed=0
for ((j = 0; j < jobs; j++)); do
    wait "${pids[$j]}" || failed=1
    cat "$logs/$j"
done

# "sim: N seeds, F faults injected, A records acknowledged, V verified, X anomalies"
cat "$logs"/* | awk -v jobs="$jobs" '
    /^sim: [0-9]+ seeds, / { n++; s += $2; f += $4; a += $7; v += $10; x += $12 }
    END { if (n == jobs && jobs > 1)
              printf "sim: all %d seeds in %d ranges: %d faults injected, %d records acknowledged, %d verified, %d anomalies\n", s, jobs, f, a, v, x }'
exit "$failed"
