#!/usr/bin/env bash
# scripts/cluster.sh BINARY N: N Headwater nodes of one cluster on 127.0.0.1:9092.., node N's
# data under ./data/node-N and its output in ./data/node-N.log. Ctrl-C (or SIGTERM) stops every
# node gracefully.
set -euo pipefail
binary=${1:?usage: cluster.sh BINARY N}
count=${2:-3}
cluster_id=${HEADWATER_CLUSTER_ID:-headwater-local}
nodes=""
for i in $(seq 1 "$count"); do
    nodes+="${nodes:+,}$i@127.0.0.1:$((9091 + i))"
done
pids=()
stop() {
    trap - INT TERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait
}
trap stop INT TERM
mkdir -p data
for i in $(seq 1 "$count"); do
    "$binary" serve --node-id "$i" --listen "127.0.0.1:$((9091 + i))" --data-dir "data/node-$i" \
        --cluster-nodes "$nodes" --cluster-id "$cluster_id" >>"data/node-$i.log" 2>&1 &
    pids+=($!)
done
echo "cluster $cluster_id: $nodes (logs in data/node-N.log; Ctrl-C stops it)"
wait
