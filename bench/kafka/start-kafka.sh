#!/usr/bin/env bash
# Start an Apache Kafka 4.3.1 broker (KRaft, combined broker+controller) on
# 127.0.0.1:PORT, in the background: a single node (node.id=1) by default, or
# one node of a cluster given by KAFKA_NODE_ID and KAFKA_QUORUM_VOTERS.
#
# Usage: bench/kafka/start-kafka.sh [PORT]        (default PORT 9192)
#
# Environment:
#   KAFKA_CONTROLLER_PORT  controller listener port (default: a free port)
#   KAFKA_WORK_DIR         directory for config, data and log (default: a new
#                          mktemp dir). If it already holds a broker set up by
#                          this script for the same PORT, that broker is
#                          restarted on its existing data (no formatting).
#   KAFKA_HEAP_OPTS        JVM heap flags (default: -Xms256m -Xmx1g)
#   KAFKA_LOG_LEVEL        slf4j-simple level: trace|debug|info|warn|error (default info)
#   KAFKA_JAVA_OPTS        extra JVM flags, e.g. to log every request:
#                          -Dorg.slf4j.simpleLogger.log.kafka.request.logger=debug
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   KAFKA_NODE_ID          node.id (default 1)
#   KAFKA_QUORUM_VOTERS    controller.quorum.voters of a cluster, ID@HOST:PORT,...
#                          (default: this node alone); its controller port must be
#                          given as KAFKA_CONTROLLER_PORT
#   KAFKA_CLUSTER_ID       the cluster id to format with (default: a random one;
#                          every node of a cluster needs the same)
#   KAFKA_NO_WAIT          1: print the PID as soon as the JVM is launched, without
#                          waiting for readiness (a cluster node is not ready
#                          until a majority of its voters runs)
#   KAFKA_EXTRA_PROPS      extra server properties, one key=value per line,
#                          appended to server.properties of a new broker (a
#                          key given here overrides the same key above it), e.g.
#                          KAFKA_EXTRA_PROPS='log.flush.interval.messages=1'
#
# Prints the broker's PID on stdout once it answers an ApiVersions request.
# Writes <repo>/.deps/kafka-run/PORT.{pid,dir,launched} (launched: the
# wall-clock time, seconds since the epoch, just before the JVM is exec'd;
# the benchmark measures start-up time from it); stop it with
# bench/kafka/stop-kafka.sh [PORT]. The broker's output goes to
# $KAFKA_WORK_DIR/kafka.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${1:-9192}"
libs="$root/.deps/kafka"
run="$root/.deps/kafka-run"

[[ "$port" =~ ^[0-9]+$ ]] || { echo "start-kafka: bad port '$port'" >&2; exit 2; }

"$here/fetch-kafka.sh"
command -v java >/dev/null || { echo "start-kafka: java not found" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if port_open "$port"; then
    echo "start-kafka: 127.0.0.1:$port is already in use" >&2
    exit 1
fi

free_port() {
    # Ask the kernel for an unused port by binding port 0.
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
mkdir -p "$run"
work="${KAFKA_WORK_DIR:-}"
restart=0
if [[ -n "$work" && -f "$work/server.properties" && -f "$work/data/meta.properties" ]]; then
    # Restart of an existing broker (e.g. after a crash test): reuse its
    # config and data; no formatting.
    restart=1
    if ! grep -q "^listeners=PLAINTEXT://127.0.0.1:$port," "$work/server.properties"; then
        echo "start-kafka: $work was set up for another port" >&2
        exit 1
    fi
fi
if [[ -z "$work" ]]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/headwater-kafka-$port.XXXXXX")"
fi
mkdir -p "$work"
props="$work/server.properties"
log="$work/kafka.log"

if (( ! restart )); then
    if [[ -e "$work/data" ]]; then
        echo "start-kafka: $work/data exists but is not a formatted Kafka log dir" >&2
        exit 1
    fi
    cport="${KAFKA_CONTROLLER_PORT:-$(free_port)}"
    node="${KAFKA_NODE_ID:-1}"
    voters="${KAFKA_QUORUM_VOTERS:-$node@127.0.0.1:$cport}"
    cat >"$props" <<PROPS
# Written by bench/kafka/start-kafka.sh
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$work/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# Topics must be created explicitly (as the Headwater tests do).
auto.create.topics.enable=false
# Single node: every internal topic has replication factor 1 (a cluster
# overrides these in KAFKA_EXTRA_PROPS).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
PROPS
    if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then
        { echo "# KAFKA_EXTRA_PROPS"; printf '%s\n' "$KAFKA_EXTRA_PROPS"; } >>"$props"
    fi
fi
cport="$(sed -n 's/^listeners=.*CONTROLLER:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$props")"

cp="$libs/*"
java_opts=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
           -Djava.awt.headless=true
           -Dorg.slf4j.simpleLogger.defaultLogLevel="${KAFKA_LOG_LEVEL:-info}"
           -Dorg.slf4j.simpleLogger.showDateTime=true
           -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS
           ${KAFKA_JAVA_OPTS:-})

if (( ! restart )); then
    # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.
    # Not one starting with '-': the storage tool would take it for an option
    # (Kafka's own Uuid.randomUuid() avoids those for the same reason).
    cluster_id="${KAFKA_CLUSTER_ID:--}"
    while [[ "$cluster_id" == -* ]]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    if ! java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
            --cluster-id "$cluster_id" --config "$props" >"$work/format.log" 2>&1; then
        echo "start-kafka: storage format failed:" >&2
        cat "$work/format.log" >&2
        exit 1
    fi
fi

# setsid: the broker outlives this script and any terminal it ran in.
# The log is appended to, so a restart keeps the earlier run's output.
echo "$EPOCHREALTIME" >"$run/$port.launched"
setsid nohup java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$props" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$run/$port.pid"
echo "$work" >"$run/$port.dir"
if [[ "${KAFKA_NO_WAIT:-}" == 1 ]]; then
    echo "start-kafka: Kafka 4.3.1 launched on 127.0.0.1:$port (controller $cport), dir $work" >&2
    echo "$pid"
    exit 0
fi

# Ready = the listener answers an ApiVersions v0 request with error_code 0.
# (A bare TCP connect can succeed before the broker processes requests.)
api_versions_ok() {
    local reply
    reply="$( { exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
                # size=15, api_key=18, api_version=0, correlation_id=7, client_id="probe"
                printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05probe' >&3
                timeout 2 head -c 10 <&3 | od -An -tx1 | tr -d ' \n'; } 2>/dev/null )" || return 1
    # bytes 4..7 = correlation id 7, bytes 8..9 = error_code 0
    [[ "${reply:8:12}" == "000000070000" ]]
}

deadline=$(( $(date +%s) + ${KAFKA_START_TIMEOUT:-90} ))
until api_versions_ok; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "start-kafka: broker exited during startup; last log lines:" >&2
        tail -n 40 "$log" >&2
        rm -f "$run/$port.pid"
        exit 1
    fi
    if (( $(date +%s) >= deadline )); then
        echo "start-kafka: broker not ready after ${KAFKA_START_TIMEOUT:-90}s; last log lines:" >&2
        tail -n 40 "$log" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.2
done

echo "start-kafka: Kafka 4.3.1 $( ((restart)) && echo re)started, ready on 127.0.0.1:$port (controller $cport), dir $work" >&2
echo "$pid"
