#!/usr/bin/env bash
# Benchmark Headwater against Apache Kafka 4.3.1 on this machine, one broker at
# a time, with the same Java client (kafka-clients 4.3.1, bench/java/src/Bench.java)
# and the same workload; write the raw results to bench/out/ and the summary
# to docs/benchmarks.md.
#
# Systems (each on a fresh data directory under bench/out/work/):
#   headwater     target/release/headwater (fsyncs before answering acks=all)
#   kafka         Kafka 4.3.1 KRaft, default flush policy (no fsync per write)
#   kafka-fsync   Kafka 4.3.1 KRaft, log.flush.interval.messages=1 (fsync per append)
#
# Three-broker clusters (replication factor 3, acks=all, min.insync.replicas=2):
#   headwater-3   three target/release/headwater nodes of one cluster
#   kafka-3       three Kafka 4.3.1 KRaft nodes, each broker+controller, default flush
# Per cluster: the same Bench run against all three (peak RSS and CPU summed over
# the nodes), then Bench's failover phase: SIGKILL of a one-partition topic's
# leader, time to the first acknowledgement from its successor.
#
# Per system: start-up time (launch -> first answered ApiVersions, bench/probe.py),
# then Bench: create the topic, warm up, max-throughput run, fixed-rate latency
# run with a concurrent consumer; then the broker's peak RSS (VmHWM) and CPU time
# from /proc, then stop it.
#
# Assumes scripts/setup-test-deps.sh and `cargo build --release` have run
# (`make bench` does both first). Fetches the Kafka jars if needed.
#
# Environment (defaults are what docs/benchmarks.md is written with):
#   BENCH_SYSTEMS          systems to run, in order
#                          (default "headwater kafka kafka-fsync headwater-3 kafka-3")
#   BENCH_WARMUP_RECORDS   unmeasured records first (default 20000)
#   BENCH_TPUT_RECORDS     records in the throughput run (default 500000)
#   BENCH_TPUT_MAX_SECONDS cut the throughput run after this long (default 30)
#   BENCH_RATE             records/s in the latency run (default 5000)
#   BENCH_LAT_SECONDS      length of the latency run (default 20)
#   BENCH_DOC              where to write the summary (default docs/benchmarks.md)
#   BENCH_SDK_CLIENTS      SDK producers to run after the systems, on a fresh Headwater broker
#                          (default "headwater-python confluent-kafka headwater-go franz-go";
#                          empty for none)
#   BENCH_SDK_TPUT_RECORDS, BENCH_SDK_WARMUP_RECORDS, BENCH_SDK_LAT_SECONDS
#                          their workload (defaults 200000, 10000, 10; the rate is BENCH_RATE)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

systems="${BENCH_SYSTEMS:-headwater kafka kafka-fsync headwater-3 kafka-3}"
warmup="${BENCH_WARMUP_RECORDS:-20000}"
tput_records="${BENCH_TPUT_RECORDS:-500000}"
tput_max="${BENCH_TPUT_MAX_SECONDS:-30}"
rate="${BENCH_RATE:-5000}"
lat_seconds="${BENCH_LAT_SECONDS:-20}"
doc="${BENCH_DOC:-docs/benchmarks.md}"

out="bench/out"
hw_bin="$root/target/release/headwater"
classes=".deps/bench-classes"
run_start="$EPOCHREALTIME"

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }

# --- prerequisites ----------------------------------------------------------------
[[ -x "$hw_bin" ]] || die "$hw_bin missing; run: cargo build --release"
compgen -G ".deps/java/kafka-clients-*.jar" >/dev/null \
    || die ".deps/java has no kafka-clients jar; run: scripts/setup-test-deps.sh"
command -v javac >/dev/null || die "javac not found; run: scripts/setup-test-deps.sh"
command -v python3 >/dev/null || die "python3 not found"
bench/kafka/fetch-kafka.sh

src="bench/java/src/Bench.java"
want="$(cat "$src" .deps/java/.stamp 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$classes/.stamp" 2>/dev/null)" != "$want" ]]; then
    say "compiling $src"
    rm -rf "$classes"
    mkdir -p "$classes"
    javac -nowarn --release 17 -encoding UTF-8 -cp ".deps/java/*" -d "$classes" "$src"
    echo "$want" >"$classes/.stamp"
fi

mkdir -p "$out/logs" "$out/work"
rm -f "$out"/result-*.json "$out"/bench-*.json "$out"/failover-*.json "$out"/ready-*.json "$out/results.json" "$out"/logs/*

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- clean-up of whatever is running when we exit ----------------------------------------
cur_hw_pid=""
cur_kafka_port=""
cur_probe_pid=""
cur_cluster_pids=()
cur_cluster_kafka_ports=()
cleanup() {
    [[ -n "$cur_probe_pid" ]] && kill "$cur_probe_pid" 2>/dev/null || true
    stop_cluster
    if [[ -n "$cur_hw_pid" ]] && kill -0 "$cur_hw_pid" 2>/dev/null; then
        kill -TERM "$cur_hw_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$cur_hw_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$cur_hw_pid" 2>/dev/null || true
    fi
    if [[ -n "$cur_kafka_port" ]]; then
        bench/kafka/stop-kafka.sh "$cur_kafka_port" --keep || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

proc_field() { # proc_field PID KEY -> value in kB from /proc/PID/status
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}
machine_busy_seconds() { # CPU time all CPUs spent busy since boot (not idle, not iowait)
    awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}
cpu_seconds() { # user+system CPU time of PID, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# --- one system ----------------------------------------------------------------------
run_system() {
    local name="$1" port work launched_file pid log bench_rc=0 loadavg
    port="$(free_port)"
    work="$root/$out/work/$name"
    log="$out/logs/$name.log"
    rm -rf "$work"
    mkdir -p "$work"
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
    say "=== $name on 127.0.0.1:$port (load average before: $loadavg)"

    case "$name" in
        headwater) launched_file="$work/launched" ;;
        kafka|kafka-fsync)
            launched_file="$root/.deps/kafka-run/$port.launched"
            rm -f "$launched_file" ;;
        *) die "unknown system '$name'" ;;
    esac

    # The prober is polling before the broker is launched.
    python3 bench/probe.py --port "$port" --launched-file "$launched_file" \
        --started-file "$work/probe-started" --timeout 180 >"$out/ready-$name.json" &
    cur_probe_pid=$!
    for _ in $(seq 1 500); do [[ -e "$work/probe-started" ]] && break; sleep 0.01; done
    [[ -e "$work/probe-started" ]] || die "readiness prober did not start"

    case "$name" in
        headwater)
            # Read the binary once so a cold page cache (e.g. right after a
            # rebuild) is not counted; Kafka's jars are read by its storage
            # format step before its measured launch in the same way.
            "$hw_bin" --version >/dev/null
            echo "$EPOCHREALTIME" >"$launched_file"
            "$hw_bin" serve --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
                --data-dir "$work/data" --node-id 1 >"$log" 2>&1 </dev/null &
            pid=$!
            cur_hw_pid=$pid
            ;;
        kafka|kafka-fsync)
            # Kafka's own defaults for the thread pools (start-kafka.sh trims
            # them for the test suite); -Xmx1g and the JVM's default -Xms.
            local extra=$'num.network.threads=3\nnum.io.threads=8'
            [[ "$name" == kafka-fsync ]] && extra+=$'\nlog.flush.interval.messages=1'
            cur_kafka_port=$port
            pid="$(KAFKA_WORK_DIR="$work/headwater-kafka-$name" KAFKA_HEAP_OPTS="-Xmx1g" \
                   KAFKA_EXTRA_PROPS="$extra" KAFKA_START_TIMEOUT=180 \
                   bench/kafka/start-kafka.sh "$port")" \
                || pid=""
            if [[ -z "$pid" ]]; then
                kill "$cur_probe_pid" 2>/dev/null || true
                wait "$cur_probe_pid" 2>/dev/null || true
                cur_probe_pid=""
                cur_kafka_port=""
                rm -rf "$work"
                say "$name did not start (start-kafka.sh's message is above)"
                return 1
            fi
            ;;
    esac

    if ! wait "$cur_probe_pid"; then
        cur_probe_pid=""
        say "$name never answered ApiVersions: $(cat "$out/ready-$name.json")"
        [[ -f "$log" ]] && tail -n 40 "$log" >&2
        cleanup
        cur_hw_pid=""
        cur_kafka_port=""
        return 1
    fi
    cur_probe_pid=""
    say "$name ready: $(cat "$out/ready-$name.json")"

    # Interference check: the machine's busy CPU time across the client's run,
    # minus what the broker and the client used = what everything else used.
    local busy0 bcpu0 wall0 busy1="" bcpu1="" wall1
    busy0="$(machine_busy_seconds)"
    bcpu0="$(cpu_seconds "$pid")"
    wall0="$EPOCHREALTIME"

    # Client logging: warnings, plus the fetch-session handler's notes.
    timeout 600 java -Xmx1g -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.FetchSessionHandler=info \
        -Dorg.slf4j.simpleLogger.showDateTime=true -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
        -cp "$classes:.deps/java/*" Bench --bootstrap "127.0.0.1:$port" \
        --topic bench --partitions 8 --record-size 1024 --linger-ms 5 --batch-size 65536 \
        --warmup-records "$warmup" --tput-records "$tput_records" --tput-max-seconds "$tput_max" \
        --rate "$rate" --lat-seconds "$lat_seconds" \
        >"$out/bench-$name.json" 2> >(tee "$out/logs/bench-$name.err" >&2) || bench_rc=$?

    wall1="$EPOCHREALTIME"
    busy1="$(machine_busy_seconds)"
    local alive=true hwm="" rss="" cpu="" stopped_cleanly=true
    if kill -0 "$pid" 2>/dev/null; then
        bcpu1="$(cpu_seconds "$pid")"
        hwm="$(proc_field "$pid" VmHWM)"
        rss="$(proc_field "$pid" VmRSS)"
        cpu="$(cpu_seconds "$pid")"
    else
        alive=false
        say "$name: broker process $pid is gone after the run"
    fi
    local du_kb
    du_kb="$(du -sk "$work" | cut -f1)"

    # Stop it.
    case "$name" in
        headwater)
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                say "headwater did not exit within 30 s of SIGTERM; killing it"
                kill -KILL "$pid"
                stopped_cleanly=false
            fi
            wait "$pid" 2>/dev/null || true
            cur_hw_pid=""
            ;;
        kafka|kafka-fsync)
            bench/kafka/stop-kafka.sh "$port" --keep
            cur_kafka_port=""
            cp "$work/headwater-kafka-$name/kafka.log" "$log" 2>/dev/null || true
            cp "$work/headwater-kafka-$name/server.properties" "$out/logs/$name.server.properties" 2>/dev/null || true
            ;;
    esac
    rm -rf "$work"

    # What the broker says it runs with (Kafka logs its effective config), and
    # how often the client noted a fetch response it discarded.
    local effective=""
    if [[ "$name" != headwater && -f "$log" ]]; then
        effective="$(grep -E '^\s*(log\.flush\.interval\.messages|log\.flush\.interval\.ms|num\.io\.threads|num\.network\.threads) = ' "$log" \
                     | sed 's/^\s*//' | sort -u | paste -sd ';' || true)"
    fi
    # The client's "sent an invalid ... fetch response" notes, split into those
    # logged while the latency consumer was still reading and those logged after
    # it had every record and was closing.
    local fetch_notes
    fetch_notes="$(awk '/bench: consumer done/ { closing = 1 }
                        /sent an invalid (full|incremental) fetch response/ { if (closing) c++; else r++ }
                        END { printf "%d %d", r, c }' "$out/logs/bench-$name.err" 2>/dev/null || echo "0 0")"

    BUSY0="$busy0" BUSY1="$busy1" BCPU0="$bcpu0" BCPU1="$bcpu1" WALL0="$wall0" WALL1="$wall1" \
    STOPPED="$stopped_cleanly" EFFECTIVE="$effective" FETCH_NOTES="${fetch_notes:-0 0}" NAME="$name" PORT="$port" PID="$pid" ALIVE="$alive" HWM="$hwm" RSS="$rss" CPU="$cpu" \
    LOADAVG="$loadavg" BENCH_RC="$bench_rc" DU_KB="$du_kb" OUT="$out" python3 - <<'PY'
import json, os, sys
sys.path.insert(0, "bench")
from result import interference, load
o = os.environ
res = {
    "system": o["NAME"],
    "port": int(o["PORT"]),
    "pid": int(o["PID"]),
    "alive_after_run": o["ALIVE"] == "true",
    "stopped_within_30s_of_sigterm": o["STOPPED"] == "true",
    "vmhwm_kb": int(o["HWM"]) if o["HWM"] else None,
    "vmrss_kb": int(o["RSS"]) if o["RSS"] else None,
    "cpu_seconds": float(o["CPU"]) if o["CPU"] else None,
    "data_dir_kb_at_end": int(o["DU_KB"]),
    "loadavg_before": o["LOADAVG"],
    "bench_exit_code": int(o["BENCH_RC"]),
    "broker_effective_config": dict(kv.split(" = ", 1) for kv in o["EFFECTIVE"].split(";") if " = " in kv),
    "client_invalid_fetch_response_notes": {"while_reading": int(o["FETCH_NOTES"].split()[0]),
                                            "while_closing": int(o["FETCH_NOTES"].split()[1])},
    "ready": load(f'{o["OUT"]}/ready-{o["NAME"]}.json'),
    "bench": load(f'{o["OUT"]}/bench-{o["NAME"]}.json'),
}
# Interference: CPU the rest of the machine used while the client ran.
client_cpu = (res["bench"] or {}).get("client_cpu_seconds")
if o["BCPU1"] and client_cpu is not None:
    res["interference"] = interference(o, client_cpu)
with open(f'{o["OUT"]}/result-{o["NAME"]}.json', "w") as f:
    json.dump(res, f, indent=2)
PY
    if (( bench_rc != 0 )); then
        say "$name: Bench exited with $bench_rc (see $out/logs/bench-$name.err and $log)"
    fi
    say "$name: VmHWM ${hwm:-?} kB, CPU ${cpu:-?} s"
}

# --- a three-broker cluster ------------------------------------------------------------
stop_cluster() {
    local p
    for p in "${cur_cluster_kafka_ports[@]}"; do bench/kafka/stop-kafka.sh "$p" --keep || true; done
    cur_cluster_kafka_ports=()
    if (( ${#cur_cluster_pids[@]} )); then
        kill -TERM "${cur_cluster_pids[@]}" 2>/dev/null || true
        for _ in $(seq 1 300); do
            local alive=0
            for p in "${cur_cluster_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            (( alive )) || break
            sleep 0.1
        done
        kill -KILL "${cur_cluster_pids[@]}" 2>/dev/null || true
        cur_cluster_pids=()
    fi
}

run_cluster() {
    local name="$1" nodes=3 work loadavg i bench_rc=0 failover_rc=0
    local -a ports=() cports=() pids=()
    work="$root/$out/work/$name"
    rm -rf "$work"
    mkdir -p "$work"
    for i in $(seq 1 $nodes); do ports+=("$(free_port)"); cports+=("$(free_port)"); done
    local bootstrap="" members="" voters="" pid_list=""
    for i in $(seq 1 $nodes); do
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[i-1]}"
        members+="${members:+,}$i@127.0.0.1:${ports[i-1]}"
        voters+="${voters:+,}$i@127.0.0.1:${cports[i-1]}"
    done
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
    say "=== $name on $bootstrap (load average before: $loadavg)"

    case "$name" in
        headwater-3)
            for i in $(seq 1 $nodes); do
                "$hw_bin" serve --node-id "$i" --listen "127.0.0.1:${ports[i-1]}"                     --advertise "127.0.0.1:${ports[i-1]}" --data-dir "$work/node-$i"                     --cluster-nodes "$members" --cluster-id bench                     >"$out/logs/$name-node-$i.log" 2>&1 </dev/null &
                pids+=($!)
                cur_cluster_pids+=($!)
            done
            ;;
        kafka-3)
            # Kafka's defaults for the thread pools and flush policy, as in the single-node
            # run; every internal topic replicated three times, as a production cluster would.
            local extra cluster_id
            extra=$'num.network.threads=3\nnum.io.threads=8\ndefault.replication.factor=3\nmin.insync.replicas=2'
            extra+=$'\noffsets.topic.replication.factor=3\ntransaction.state.log.replication.factor=3'
            extra+=$'\ntransaction.state.log.min.isr=2\nshare.coordinator.state.topic.replication.factor=3'
            extra+=$'\nshare.coordinator.state.topic.min.isr=2'
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | sed 's/^-/A/')"
            for i in $(seq 1 $nodes); do
                local pid
                cur_cluster_kafka_ports+=("${ports[i-1]}")
                pid="$(KAFKA_WORK_DIR="$work/headwater-kafka-node-$i" KAFKA_HEAP_OPTS="-Xmx1g" \
                       KAFKA_NODE_ID="$i" KAFKA_QUORUM_VOTERS="$voters" KAFKA_CONTROLLER_PORT="${cports[i-1]}" \
                       KAFKA_CLUSTER_ID="$cluster_id" KAFKA_NO_WAIT=1 KAFKA_EXTRA_PROPS="$extra" \
                       bench/kafka/start-kafka.sh "${ports[i-1]}")" || { say "$name: node $i did not start"; stop_cluster; return 1; }
                pids+=("$pid")
            done
            ;;
        *) die "unknown cluster '$name'" ;;
    esac
    for i in $(seq 1 $nodes); do pid_list+="${pid_list:+,}$i=${pids[i-1]}"; done

    # Ready = every node answers ApiVersions (Bench then waits for the brokers to register).
    for i in $(seq 1 $nodes); do
        echo "$EPOCHREALTIME" >"$work/launched"
        if ! python3 bench/probe.py --port "${ports[i-1]}" --launched-file "$work/launched" \
                --started-file "$work/probe-started" --timeout 180 >/dev/null; then
            say "$name: node $i never answered ApiVersions"
            stop_cluster
            return 1
        fi
    done
    say "$name ready"

    local busy0 bcpu0=0 wall0 busy1 bcpu1=0 wall1 p
    busy0="$(machine_busy_seconds)"
    for p in "${pids[@]}"; do bcpu0="$(python3 -c "print($bcpu0 + $(cpu_seconds "$p"))")"; done
    wall0="$EPOCHREALTIME"
    local bench_args=(--bootstrap "$bootstrap" --partitions 8 --record-size 1024 --batch-size 65536
                      --replication-factor 3 --min-insync-replicas 2)
    timeout 600 java -Xmx1g -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$classes:.deps/java/*" Bench "${bench_args[@]}" --topic bench --linger-ms 5 \
        --warmup-records "$warmup" --tput-records "$tput_records" --tput-max-seconds "$tput_max" \
        --rate "$rate" --lat-seconds "$lat_seconds" \
        >"$out/bench-$name.json" 2> >(tee "$out/logs/bench-$name.err" >&2) || bench_rc=$?
    wall1="$EPOCHREALTIME"
    busy1="$(machine_busy_seconds)"
    # Every node's peak RSS and CPU, before the failover phase kills one.
    local hwm_list="" cpu_list="" alive=true
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            hwm_list+="${hwm_list:+,}$(proc_field "$p" VmHWM)"
            cpu_list+="${cpu_list:+,}$(cpu_seconds "$p")"
        else
            alive=false
            say "$name: node process $p is gone after the run"
        fi
    done
    [[ "$alive" == true ]] && for p in "${pids[@]}"; do bcpu1="$(python3 -c "print($bcpu1 + $(cpu_seconds "$p"))")"; done

    say "$name: failover"
    timeout 300 java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$classes:.deps/java/*" Bench "${bench_args[@]}" --topic failover --partitions 1 \
        --linger-ms 0 --rate 1000 --failover-pids "$pid_list" \
        >"$out/failover-$name.json" 2> >(tee "$out/logs/failover-$name.err" >&2) || failover_rc=$?

    stop_cluster
    if [[ "$name" == kafka-3 ]]; then
        for i in $(seq 1 $nodes); do
            cp "$work/headwater-kafka-node-$i/kafka.log" "$out/logs/$name-node-$i.log" 2>/dev/null || true
        done
        cp "$work/headwater-kafka-node-1/server.properties" "$out/logs/$name.server.properties" 2>/dev/null || true
    fi
    rm -rf "$work"

    NAME="$name" LOADAVG="$loadavg" BENCH_RC="$bench_rc" FAILOVER_RC="$failover_rc" HWMS="$hwm_list" \
    CPUS="$cpu_list" ALIVE="$alive" BUSY0="$busy0" BUSY1="$busy1" BCPU0="$bcpu0" BCPU1="$bcpu1" \
    WALL0="$wall0" WALL1="$wall1" OUT="$out" python3 - <<'PY'
import json, os, sys
sys.path.insert(0, "bench")
from result import interference, load
o = os.environ
hwms = [int(x) for x in o["HWMS"].split(",") if x]
cpus = [float(x) for x in o["CPUS"].split(",") if x]
alive = o["ALIVE"] == "true"
res = {
    "system": o["NAME"],
    "nodes": 3,
    "alive_after_run": alive,
    "vmhwm_kb_per_node": hwms,
    "vmhwm_kb": sum(hwms) if alive else None,
    "cpu_seconds": round(sum(cpus), 2) if alive else None,
    "loadavg_before": o["LOADAVG"],
    "bench_exit_code": int(o["BENCH_RC"]),
    "failover_exit_code": int(o["FAILOVER_RC"]),
    "bench": load(f'{o["OUT"]}/bench-{o["NAME"]}.json'),
    "failover": load(f'{o["OUT"]}/failover-{o["NAME"]}.json'),
}
client_cpu = (res["bench"] or {}).get("client_cpu_seconds")
if alive and client_cpu is not None:
    res["interference"] = interference(o, client_cpu)
with open(f'{o["OUT"]}/result-{o["NAME"]}.json', "w") as f:
    json.dump(res, f, indent=2)
PY
    (( bench_rc == 0 )) || say "$name: Bench exited with $bench_rc (see $out/logs/bench-$name.err)"
    (( failover_rc == 0 )) || say "$name: the failover phase exited with $failover_rc (see $out/logs/failover-$name.err)"
}

for s in $systems; do
    case "$s" in
        *-3) run_cluster "$s" || say "$s: failed; continuing with the next system" ;;
        *) run_system "$s" || say "$s: failed; continuing with the next system" ;;
    esac
done

# --- the SDKs' producers, next to the clients their users know, on one Headwater broker ---
# bench/sdk/producer_bench.py (Python: the headwater SDK, confluent-kafka) and
# bench/sdk/go (Go: the headwater SDK, franz-go), one after another on the same broker, each
# on its own topic. Needs the wheel in .venv and bindings/go/lib (make bench does both).
run_sdks() {
    local port work pid c rc
    port="$(free_port)"
    work="$root/$out/work/sdk"
    rm -rf "$work"
    mkdir -p "$work"
    say "=== SDK producers on headwater at 127.0.0.1:$port"
    (cd bench/sdk/go && go build -o "$root/$out/sdk-bench-go" .) || { say "building bench/sdk/go failed"; return 1; }
    "$hw_bin" serve --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
        --data-dir "$work/data" --node-id 1 >"$out/logs/sdk-headwater.log" 2>&1 </dev/null &
    pid=$!
    cur_hw_pid=$pid
    for _ in $(seq 1 500); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
        sleep 0.02
    done
    local common=(--bootstrap "127.0.0.1:$port" --partitions 8 --record-size 1024 --linger-ms 5
                  --batch-size 65536 --warmup-records "$sdk_warmup" --tput-records "$sdk_tput"
                  --rate "$rate" --lat-seconds "$sdk_lat_seconds")
    for c in $sdk_clients; do
        local cmd=()
        case "$c" in
            headwater-python) cmd=(.venv/bin/python bench/sdk/producer_bench.py --client headwater) ;;
            confluent-kafka) cmd=(.venv/bin/python bench/sdk/producer_bench.py --client confluent) ;;
            headwater-go) cmd=("$out/sdk-bench-go" -client headwater) ;;
            franz-go) cmd=("$out/sdk-bench-go" -client franz) ;;
            *) say "unknown SDK client '$c'"; continue ;;
        esac
        say "$c"
        rc=0
        # `times` in the subshell reports the CPU time of this client alone.
        ( timeout 600 "${cmd[@]}" "${common[@]}" --topic "sdk-$c" >"$out/sdk-$c.json" 2>"$out/logs/sdk-$c.err"
          echo "rc $?"; times ) >"$out/sdk-$c.times" || rc=$?
        grep -q '^rc 0$' "$out/sdk-$c.times" || say "$c failed (see $out/logs/sdk-$c.err)"
    done
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cur_hw_pid=""
    rm -rf "$work"
}
sdk_clients="${BENCH_SDK_CLIENTS-headwater-python confluent-kafka headwater-go franz-go}"
sdk_warmup="${BENCH_SDK_WARMUP_RECORDS:-10000}"
sdk_tput="${BENCH_SDK_TPUT_RECORDS:-200000}"
sdk_lat_seconds="${BENCH_SDK_LAT_SECONDS:-10}"
rm -f "$out"/sdk-*.json "$out"/sdk-*.times
[[ -n "$sdk_clients" ]] && { run_sdks || say "SDK benchmarks failed"; }

# --- summary --------------------------------------------------------------------------
if [[ -n "${MAKELEVEL:-}" ]]; then cmd="make bench"; else cmd="bench/run.sh"; fi
overrides="$(env | grep -E '^BENCH_[A-Z_]+=' | sort | tr '\n' ' ' || true)"
[[ -n "$overrides" ]] && cmd="$overrides$cmd"
kafka_jar="$(basename "$(compgen -G ".deps/kafka/kafka_2.13-*.jar" | head -1)")"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"

HW_BUILT="$(date -u -r "$hw_bin" '+%Y-%m-%d %H:%M:%S UTC')" \
CMD="$cmd" RUN_START="$run_start" RUN_END="$EPOCHREALTIME" SYSTEMS="$systems" \
HW_VERSION="$("$hw_bin" --version 2>&1 | head -1)" HW_REV="$rev" \
KAFKA_VERSION="$(basename "${kafka_jar#kafka_2.13-}" .jar)" JAVA_VERSION="$(java -version 2>&1 | head -1)" \
SDK_CLIENTS="$sdk_clients" GO_VERSION="$(go version 2>/dev/null)" PY_VERSION="$(.venv/bin/python --version 2>&1)" \
    python3 bench/report.py --out-dir "$out" --doc "$doc"
say "wrote $doc and $out/results.json in $(python3 -c "print(round($EPOCHREALTIME - $run_start))") s"
